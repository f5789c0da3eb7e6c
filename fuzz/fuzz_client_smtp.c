/* Fuzz target: the tern client's SMTP side (smtp_client.c) against a hostile server. The input is
 * the server's whole transcript; a thread writes it into one end of a socketpair (then shuts
 * its write side, so the client sees EOF rather than a timeout) and reads and discards what the
 * client sends, so neither side can block the other. The client runs smtp_client_open (with
 * AUTH when the transcript mentions "AUTH") and smtp_client_send of a small message with two
 * recipients, then closes. Short inputs run a second time with the transcript sent one byte per
 * write: the outcome (return codes and error text) must be the same. FUZZ_CLIENT_VERBOSE=1 in
 * the environment prints the outcome of each input (for replaying one). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 65536
#define FUZZ_BYTEWISE_MAX 1024

#include "client_harness.h"

/* Runs the client against the transcript and describes what happened in out. */
static void
fuzz_run(const uint8_t *data, size_t size, size_t chunk, char *out, size_t outsize)
{
	static const char message[] = "Subject: fuzz\r\n\r\n.dot\nbare LF\r\n..two\r\nlast";
	const char *rcpts[] = {"bob@example.test", "carol@example.test"};
	struct smtp_client_options o = {.conn = {.host = "fuzz",
	                                         .security = CONN_SECURITY_NONE,
	                                         .timeout_ms = 2000,
	                                         .max_line = 512},
	                                .helo = "tern.test"};
	struct fuzz_server s;
	struct smtp_client *c = NULL;
	char error[512] = "";
	int fd = fuzz_server_start(&s, data, size, chunk), r;

	if (memmem(data, size, "AUTH", 4) != NULL) {
		o.user = "alice";
		o.password = "secret";
	}
	r = smtp_client_open_fd(fd, &o, &c, error, sizeof(error));
	if (strlen(error) >= sizeof(error))
		abort();
	int n = snprintf(out, outsize, "open=%d [%s]", r, r == 0 ? "" : error);
	if (r == 0) {
		error[0] = '\0';
		r = smtp_client_send(c, "alice@example.test", rcpts, 2, message,
		                     sizeof(message) - 1, error, sizeof(error));
		snprintf(out + n, outsize - (size_t)n, " send=%d [%s]", r, r == 0 ? "" : error);
		smtp_client_close(&c);
	} else if (c != NULL) {
		abort(); /* a failed open hands back no client */
	}
	pthread_join(s.thread, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char whole[1200], bytewise[1200];

	if (size > FUZZ_MAX_INPUT)
		return 0;
	fuzz_run(data, size, FUZZ_MAX_INPUT, whole, sizeof(whole));
	if (getenv("FUZZ_CLIENT_VERBOSE") != NULL)
		fprintf(stderr, "%s\n", whole);
	if (size <= FUZZ_BYTEWISE_MAX) {
		fuzz_run(data, size, 1, bytewise, sizeof(bytewise));
		if (strcmp(whole, bytewise) != 0) {
			fprintf(stderr, "whole:    %s\nbytewise: %s\n", whole, bytewise);
			abort();
		}
	}
	return 0;
}
