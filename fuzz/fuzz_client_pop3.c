/* Fuzz target: the tern client's POP3 side (pop3_client.c) against a hostile server. The input
 * is the server's whole transcript; a thread writes it into one end of a socketpair (then shuts
 * its write side, so the client sees EOF rather than a timeout) and reads and discards what the
 * client sends, so neither side can block the other. The client runs pop3_client_open (logging
 * in), pop3_client_list, pop3_client_retr of the first message listed into a memfd with a small
 * size limit, pop3_client_dele and pop3_client_quit. Beyond "no crash": the stored message stays
 * within the limit and is made of CRLF-terminated lines, and short inputs run a second time with
 * the transcript sent one byte per write, which must give the same outcome and bytes. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/pop3_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 65536
#define FUZZ_BYTEWISE_MAX 1024

#include "client_harness.h"

#define FUZZ_MAX_MESSAGE 8192

/* Reads back what the client stored (at most FUZZ_MAX_MESSAGE + 1 bytes) and empties the file. */
static size_t
fuzz_sink_take(int sink, char *buf)
{
	ssize_t n = pread(sink, buf, FUZZ_MAX_MESSAGE + 1, 0);

	if (n < 0 || ftruncate(sink, 0) != 0 || lseek(sink, 0, SEEK_SET) != 0)
		abort();
	return (size_t)n;
}

/* Runs the client against the transcript and describes what happened in out (the stored message
 * in body). */
static void
fuzz_run(const uint8_t *data, size_t size, size_t chunk, int sink, char *out, size_t outsize,
         char *body, size_t *body_len)
{
	struct conn_options o = {
	    .host = "fuzz", .security = CONN_SECURITY_NONE, .timeout_ms = 2000, .max_line = 512};
	struct fuzz_server s;
	struct pop3_client *c = NULL;
	struct pop3_client_entry *e = NULL;
	size_t n = 0, len;
	char error[512] = "";
	int fd = fuzz_server_start(&s, data, size, chunk), r;

	*body_len = 0;
	r = pop3_client_open_fd(fd, &o, "alice", "secret", &c, error, sizeof(error));
	len = (size_t)snprintf(out, outsize, "open=%d [%s]", r, r == 0 ? "" : error);
	if (r != 0) {
		if (c != NULL)
			abort(); /* a failed open hands back no client */
		pthread_join(s.thread, NULL);
		return;
	}
	r = pop3_client_list(c, &e, &n, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " list=%d/%zu [%s]", r, n,
	                        r == 0 ? "" : error);
	for (size_t i = 0; r == 0 && i < n; i++) {
		/* Sorted, numbered 1..2^32-1, and a UIDL of 1..70 printable characters. */
		size_t ul = strlen(e[i].uidl);
		if (e[i].number == 0 || (i > 0 && e[i].number < e[i - 1].number) || ul == 0 ||
		    ul > 70)
			abort();
		for (size_t k = 0; k < ul; k++)
			if (e[i].uidl[k] < 0x21 || e[i].uidl[k] > 0x7e)
				abort();
	}
	unsigned number = r == 0 && n > 0 ? e[0].number : 1;
	free(e);
	r = pop3_client_retr(c, number, sink, FUZZ_MAX_MESSAGE, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " retr=%d [%s]", r, r == 0 ? "" : error);
	*body_len = fuzz_sink_take(sink, body);
	if (*body_len > FUZZ_MAX_MESSAGE)
		abort();
	if (r == 0) {
		/* Every line the client stored ends with CRLF. */
		if (*body_len > 0 &&
		    (*body_len < 2 || body[*body_len - 2] != '\r' || body[*body_len - 1] != '\n'))
			abort();
		r = pop3_client_dele(c, number, error, sizeof(error));
		len += (size_t)snprintf(out + len, outsize - len, " dele=%d [%s]", r,
		                        r == 0 ? "" : error);
	}
	r = pop3_client_quit(&c, error, sizeof(error));
	snprintf(out + len, outsize - len, " quit=%d [%s]", r, r == 0 ? "" : error);
	if (c != NULL)
		abort();
	pthread_join(s.thread, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int sink = -1;
	static char whole[2048], bytewise[2048], body1[FUZZ_MAX_MESSAGE + 1],
	    body2[FUZZ_MAX_MESSAGE + 1];
	size_t len1, len2;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	if (sink < 0 && (sink = memfd_create("fuzz_client_pop3", MFD_CLOEXEC)) < 0)
		abort();
	fuzz_run(data, size, FUZZ_MAX_INPUT, sink, whole, sizeof(whole), body1, &len1);
	if (getenv("FUZZ_CLIENT_VERBOSE") != NULL)
		fprintf(stderr, "%s\n", whole);
	if (size <= FUZZ_BYTEWISE_MAX) {
		fuzz_run(data, size, 1, sink, bytewise, sizeof(bytewise), body2, &len2);
		if (strcmp(whole, bytewise) != 0 || len1 != len2 ||
		    memcmp(body1, body2, len1) != 0) {
			fprintf(stderr, "whole:    %s (%zu bytes)\nbytewise: %s (%zu bytes)\n",
			        whole, len1, bytewise, len2);
			abort();
		}
	}
	return 0;
}
