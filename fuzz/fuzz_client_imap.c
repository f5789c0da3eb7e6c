/* Fuzz target: the tern client's IMAP side (imap_client.c, imap_response.c) against a hostile
 * server. The input is the server's whole transcript; a thread writes it into one end of a
 * socketpair (then shuts its write side, so the client sees EOF rather than a timeout) and reads
 * and discards what the client sends, so neither side can block the other. The client runs
 * imap_client_open (logging in), imap_client_select, imap_client_list, imap_client_fetch of the
 * first UID listed into a memfd with a small size limit, imap_client_delete and imap_client_logout.
 * Beyond "no crash": listed UIDs are nonzero, increasing and no lower than asked for, the stored
 * body stays within the limit, and short inputs run a second time with the transcript sent one byte
 * per write, which must give the same outcome and bytes. FUZZ_CLIENT_VERBOSE=1 in the environment
 * prints the outcome of each input (for replaying one). */
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

#include "client/imap_client.h"

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

/* Runs the client against the transcript and describes what happened in out (the stored body in
 * body). */
static void
fuzz_run(const uint8_t *data, size_t size, size_t chunk, int sink, char *out, size_t outsize,
         char *body, size_t *body_len)
{
	struct conn_options o = {
	    .host = "fuzz", .security = CONN_SECURITY_NONE, .timeout_ms = 2000, .max_line = 512};
	struct fuzz_server s;
	struct imap_client *c = NULL;
	struct imap_client_entry *e = NULL;
	uint32_t uidvalidity = 0, exists = 0, uids[2] = {1, 2};
	size_t n = 0, len;
	char error[512] = "";
	int fd = fuzz_server_start(&s, data, size, chunk), r;

	*body_len = 0;
	r = imap_client_open_fd(fd, &o, "alice", "secret", &c, error, sizeof(error));
	len = (size_t)snprintf(out, outsize, "open=%d [%s]", r, r == 0 ? "" : error);
	if (r != 0) {
		if (c != NULL)
			abort(); /* a failed open hands back no client */
		pthread_join(s.thread, NULL);
		return;
	}
	r = imap_client_select(c, "INBOX", false, &uidvalidity, &exists, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " select=%d/%" PRIu32 "/%" PRIu32 " [%s]",
	                        r, uidvalidity, exists, r == 0 ? "" : error);
	if (r == 0 && uidvalidity == 0)
		abort();
	r = imap_client_list(c, 2, &e, &n, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " list=%d/%zu [%s]", r, n,
	                        r == 0 ? "" : error);
	for (size_t i = 0; r == 0 && i < n; i++)
		if (e[i].uid < 2 || (i > 0 && e[i].uid <= e[i - 1].uid))
			abort();
	uint32_t uid = r == 0 && n > 0 ? e[0].uid : 7;
	free(e);
	r = imap_client_fetch(c, uid, sink, FUZZ_MAX_MESSAGE, error, sizeof(error));
	len += (size_t)snprintf(out + len, outsize - len, " fetch=%d [%s]", r, r == 0 ? "" : error);
	*body_len = fuzz_sink_take(sink, body);
	if (*body_len > FUZZ_MAX_MESSAGE)
		abort();
	uids[0] = uid;
	r = imap_client_delete(c, uids, 2, error, sizeof(error));
	snprintf(out + len, outsize - len, " delete=%d [%s]", r, r == 0 ? "" : error);
	imap_client_logout(&c);
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
	if (sink < 0 && (sink = memfd_create("fuzz_client_imap", MFD_CLOEXEC)) < 0)
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
