/* Fuzz target: the tern client's push protocol side (push_client.c: status lines, the JSON event
 * parser) against a hostile server. The input is the server's whole transcript, played by the
 * shared fake-server thread (client_harness.h) into a socketpair. The client runs
 * push_client_open_fd (CAPA, AUTH PLAIN), push_client_watch with SINCE, push_client_read until it
 * fails (at most 10,000 events), and push_client_logout. Beyond "no crash": every event handed
 * over has a known-or-other type, NUL-terminated strings within their buffers and valid UTF-8, a
 * "new" event has a mailbox and a nonzero UID; and short inputs run a second time with the
 * transcript sent one byte per write, which must give the same outcome and events.
 * FUZZ_CLIENT_VERBOSE=1 prints the outcome of each input. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/push_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 65536
#define FUZZ_BYTEWISE_MAX 1024
#define FUZZ_MAX_EVENTS 10000

#include "client_harness.h"

/* A digest of the events seen, to compare the two runs. */
struct fuzz_seen {
	uint64_t hash;
	unsigned n;
};

static void
fuzz_hash(struct fuzz_seen *s, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		s->hash = (s->hash ^ b[i]) * 1099511628211ULL;
}

/* Aborts unless s is a NUL-terminated, valid UTF-8 string inside size bytes. */
static void
fuzz_check_text(const char *s, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strnlen(s, size);

	if (len == size)
		abort();
	for (size_t i = 0; i < len;) {
		size_t n = p[i] < 0x80 ? 1 : p[i] >= 0xf0 ? 4 : p[i] >= 0xe0 ? 3 : 2;

		if (p[i] >= 0x80 && (p[i] < 0xc2 || p[i] > 0xf4))
			abort();
		if (i + n > len)
			abort();
		for (size_t k = 1; k < n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				abort();
		i += n;
	}
}

static void
fuzz_event(const struct push_event *ev, void *arg)
{
	struct fuzz_seen *s = arg;

	if (ev->type > PUSH_EVENT_RESYNC)
		abort();
	fuzz_check_text(ev->mailbox, sizeof(ev->mailbox));
	fuzz_check_text(ev->from, sizeof(ev->from));
	fuzz_check_text(ev->subject, sizeof(ev->subject));
	fuzz_check_text(ev->old, sizeof(ev->old));
	fuzz_check_text(ev->date, sizeof(ev->date));
	fuzz_check_text(ev->flags, sizeof(ev->flags));
	fuzz_check_text(ev->reason, sizeof(ev->reason));
	if (ev->type == PUSH_EVENT_NEW && (ev->mailbox[0] == '\0' || ev->uid == 0))
		abort();
	fuzz_hash(s, &ev->type, sizeof(ev->type));
	fuzz_hash(s, &ev->uid, sizeof(ev->uid));
	fuzz_hash(s, ev->mailbox, strlen(ev->mailbox));
	fuzz_hash(s, ev->from, strlen(ev->from));
	fuzz_hash(s, ev->subject, strlen(ev->subject));
	s->n++;
}

/* Runs the client against the transcript and describes what happened in out. */
static void
fuzz_run(const uint8_t *data, size_t size, size_t chunk, char *out, size_t outsize)
{
	struct conn_options o = {
	    .host = "fuzz", .security = CONN_SECURITY_NONE, .timeout_ms = 2000, .max_line = 2048};
	struct fuzz_seen seen = {14695981039346656037ULL, 0};
	struct fuzz_server s;
	struct push_client *c = NULL;
	size_t len;
	char error[512] = "";
	int fd = fuzz_server_start(&s, data, size, chunk), r;

	r = push_client_open_fd(fd, &o, "alice", "secret", fuzz_event, &seen, &c, error,
	                        sizeof(error));
	len = (size_t)snprintf(out, outsize, "open=%d [%s]", r, r == 0 ? "" : error);
	if (r != 0) {
		if (c != NULL)
			abort();
		pthread_join(s.thread, NULL);
		return;
	}
	r = push_client_watch(c, "INBOX", true, 41, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " watch=%d [%s]", r, r == 0 ? "" : error);
	for (unsigned i = 0; r == 0 && i < FUZZ_MAX_EVENTS; i++)
		if (push_client_read(c, error, sizeof(error)) < 0)
			break;
	if (r == 0)
		len += (size_t)snprintf(out + len, outsize - len, " read [%s]", error);
	snprintf(out + len, outsize - len, " events=%u/%016" PRIx64, seen.n, seen.hash);
	push_client_logout(&c);
	if (c != NULL)
		abort();
	pthread_join(s.thread, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char whole[2048], bytewise[2048];

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
