/* store_reader: a message's bytes read off the event loop (see store_reader.h).
 *
 * A stream is touched by one thread at a time: the loop thread while no read is in flight,
 * the I/O thread running its read job otherwise (the workers' queue lock orders the two).
 * The job writes into the stream's private evbuffers; the loop moves them into the client's
 * output, so the connection's own buffers never see another thread. */
#include "store/store_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "mime/mimestruct.h"
#include "store/store.h"

struct store_reader {
	int fd;
	unsigned refs; /* the opener and every stream; loop thread only */
};

struct store_reader_stream {
	struct store_reader *reader;
	struct workers *io;
	struct store_reader_range range;
	store_reader_ready_fn *ready;
	void *arg;
	/* The read position and conversion state: the job's while a read is in flight. */
	uint64_t pos, end; /* file: next byte to read, end of the range (UINT64_MAX: file end) */
	uint64_t skip;     /* output bytes still to drop */
	uint64_t left;     /* output bytes still to deliver (UINT64_MAX: unbounded) */
	bool prev_cr;      /* CRLF: the last byte read was CR */
	bool eof;          /* nothing more to read: the last output is in ahead */
	bool failed;       /* a read error, or the file ended before the range */
	char *in;          /* one chunk of file bytes */
	struct evbuffer *conv;  /* the conversion's output, before the window */
	struct evbuffer *ahead; /* read and converted, waiting for the loop thread */
	/* Loop thread. */
	bool inflight; /* a read job runs */
	bool orphaned; /* freed while a job ran: its completion frees the stream */
	uint64_t delivered;
};

int
store_reader_open(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid,
                  struct store_reader **reader_r)
{
	int fd = store_message_open(store, account_id, mailbox, uid);

	*reader_r = NULL;
	/* The row was there but the file not: an expunge committed (and unlinked) between the
	 * lookup and the open. Asking again tells a gone message from a broken one. */
	if (fd == -1)
		fd = store_message_open(store, account_id, mailbox, uid);
	if (fd < 0)
		return fd == -2 ? -2 : -1;
	*reader_r = store_reader_from_fd(fd);
	return 1;
}

struct store_reader *
store_reader_from_fd(int fd)
{
	struct store_reader *r = xcalloc(1, sizeof(*r));

	r->fd = fd;
	r->refs = 1;
	return r;
}

static void
store_reader_unref(struct store_reader *r)
{
	if (--r->refs > 0)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

void
store_reader_free(struct store_reader **rp)
{
	if (*rp == NULL)
		return;
	store_reader_unref(*rp);
	*rp = NULL;
}

int
store_reader_structure(struct store_reader *r, unsigned char **blob_r, size_t *len_r)
{
	return mimestruct_build_fd(r->fd, blob_r, len_r);
}

/* The built-in conversion: bare LF as CRLF, NUL as range.nul_to. */
static bool
store_reader_crlf(struct store_reader_stream *st, const char *in, size_t len, struct evbuffer *out)
{
	struct evbuffer_iovec vec;
	char *o;
	size_t n = 0;

	if (in == NULL || len == 0)
		return false;
	if (evbuffer_reserve_space(out, (ev_ssize_t)(2 * len), &vec, 1) < 1)
		fatalx("store event=reader-oom");
	o = vec.iov_base;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && !st->prev_cr)
			o[n++] = '\r';
		o[n++] = in[i] != '\0' ? in[i] : (char)st->range.nul_to;
		st->prev_cr = in[i] == '\r';
	}
	vec.iov_len = n;
	evbuffer_commit_space(out, &vec, 1);
	return false;
}

/* Runs the stream's conversion over in[0..len) (in NULL: the end) into st->conv. */
static bool
store_reader_convert(struct store_reader_stream *st, const char *in, size_t len)
{
	if (st->range.filter != NULL)
		return st->range.filter(st->range.filter_state, in, len, st->conv);
	if (st->range.conv == STORE_READER_CRLF)
		return store_reader_crlf(st, in, len, st->conv);
	if (in != NULL)
		evbuffer_add(st->conv, in, len);
	return false;
}

/* Applies the output window to what the conversion produced: into ahead. */
static void
store_reader_window(struct store_reader_stream *st)
{
	size_t n = evbuffer_get_length(st->conv);

	if (st->skip > 0 && n > 0) {
		size_t drop = st->skip < n ? (size_t)st->skip : n;

		evbuffer_drain(st->conv, drop);
		st->skip -= drop;
		n -= drop;
	}
	if (st->left == UINT64_MAX) {
		evbuffer_add_buffer(st->ahead, st->conv);
		return;
	}
	if (n > st->left)
		n = (size_t)st->left;
	evbuffer_remove_buffer(st->conv, st->ahead, n);
	st->left -= n;
	evbuffer_drain(st->conv, evbuffer_get_length(st->conv));
}

/* Fills the rest of the window with spaces, so a literal keeps its announced length. */
static void
store_reader_pad(struct store_reader_stream *st)
{
	static const char spaces[256] = {[0 ... 255] = ' '};

	if (!st->range.pad || st->left == UINT64_MAX || st->left == 0)
		return;
	st->failed = true; /* the file ended before the window did */
	while (st->left > 0) {
		size_t n = st->left < sizeof(spaces) ? (size_t)st->left : sizeof(spaces);

		evbuffer_add(st->ahead, spaces, n);
		st->left -= n;
	}
}

/* One chunk: read, convert, window (the I/O thread, or the loop thread without a pool). */
static void
store_reader_stream_read(void *arg)
{
	struct store_reader_stream *st = arg;
	size_t want = st->range.chunk;
	ssize_t got = 0;
	bool last = false;

	if (st->eof)
		return;
	if (st->end != UINT64_MAX && st->end - st->pos < want)
		want = (size_t)(st->end - st->pos);
	while (want > 0 && (got = pread(st->reader->fd, st->in, want, (off_t)st->pos)) < 0 &&
	       errno == EINTR)
		;
	if (got < 0) {
		st->failed = true;
		got = 0;
	} else if (got == 0 && want > 0 && st->end != UINT64_MAX) {
		st->failed = true; /* the file is shorter than the range (truncated?) */
	}
	if (got > 0) {
		st->pos += (uint64_t)got;
		last = store_reader_convert(st, st->in, (size_t)got) || st->pos == st->end;
	} else {
		last = true;
	}
	if (last)
		store_reader_convert(st, NULL, 0);
	store_reader_window(st);
	if (last)
		store_reader_pad(st);
	if (last || st->left == 0)
		st->eof = true;
}

static void
store_reader_stream_destroy(struct store_reader_stream *st)
{
	store_reader_unref(st->reader);
	evbuffer_free(st->conv);
	evbuffer_free(st->ahead);
	free(st->range.filter_state);
	free(st->in);
	free(st);
}

/* The loop thread, after a read job. */
static void
store_reader_stream_done(void *arg)
{
	struct store_reader_stream *st = arg;

	st->inflight = false;
	if (st->orphaned) {
		store_reader_stream_destroy(st);
		return;
	}
	if (st->ready != NULL)
		st->ready(st->arg);
}

struct store_reader_stream *
store_reader_stream_new(struct store_reader *reader, struct workers *io,
                        const struct store_reader_range *range, store_reader_ready_fn *ready,
                        void *arg)
{
	struct store_reader_stream *st = xcalloc(1, sizeof(*st));

	st->reader = reader;
	reader->refs++;
	st->io = io;
	st->range = *range;
	if (st->range.chunk == 0)
		st->range.chunk = STORE_READER_CHUNK;
	st->ready = ready;
	st->arg = arg;
	st->pos = range->offset;
	st->end = range->len == UINT64_MAX || range->len > UINT64_MAX - range->offset
	              ? UINT64_MAX
	              : range->offset + range->len;
	st->skip = range->skip;
	st->left = range->limit;
	st->in = xmalloc(st->range.chunk);
	st->conv = evbuffer_new();
	st->ahead = evbuffer_new();
	if (st->conv == NULL || st->ahead == NULL)
		fatalx("store event=reader-oom");
	return st;
}

int
store_reader_stream_pump(struct store_reader_stream *st, struct evbuffer *out, size_t high)
{
	for (;;) {
		size_t n = evbuffer_get_length(st->ahead);

		if (n > 0) {
			evbuffer_add_buffer(out, st->ahead);
			st->delivered += n;
		}
		if (st->inflight)
			return 0;
		if (st->eof)
			return st->failed ? -1 : 1;
		if (evbuffer_get_length(out) >= high)
			return 0;
		if (st->io == NULL) {
			store_reader_stream_read(st);
			continue;
		}
		st->inflight = true;
		workers_submit(st->io, store_reader_stream_read, store_reader_stream_done, st);
		return 0;
	}
}

void *
store_reader_stream_filter_state(const struct store_reader_stream *st)
{
	return st->range.filter_state;
}

uint64_t
store_reader_stream_delivered(const struct store_reader_stream *st)
{
	return st->delivered;
}

void
store_reader_stream_free(struct store_reader_stream **stp)
{
	struct store_reader_stream *st = *stp;

	if (st == NULL)
		return;
	*stp = NULL;
	if (st->inflight) {
		st->orphaned = true;
		return;
	}
	store_reader_stream_destroy(st);
}
