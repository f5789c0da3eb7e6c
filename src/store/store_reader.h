/* store_reader: a message's bytes read off the event loop.
 *
 * A protocol never reads a message file itself. It opens the message (store_reader_open, on
 * the loop thread: one row lookup and one open(), so an expunge whose unlink comes later
 * cannot take the bytes away: the open reader keeps the file readable), then starts streams
 * over it: the whole message, a byte range of it, or a MIME part given by the offsets the
 * protocol took from the stored MIME structure. A stream reads the file one chunk at a time
 * on an I/O thread pool (lib/workers.h; its own pool, not the one that hashes passwords or
 * runs SEARCH), passes the bytes through its conversion (bare LF sent as CRLF, a NUL byte
 * replaced, or a filter the protocol supplies, such as POP3's dot-stuffing and TOP cut, or
 * BINARY's decoder; filters run on the I/O thread), applies the output window (skip, limit,
 * padding so an IMAP literal keeps its announced length) and hands the result to the loop
 * thread, where store_reader_stream_pump moves it into the client's output evbuffer. One read
 * is in flight per stream, and only while less than the caller's high-water mark is queued,
 * so a connection holds at most that mark plus one converted chunk, and a cold-cache read
 * stalls only the client that asked.
 *
 * Without an I/O pool (tools, tests) the stream reads on the calling thread.
 * Everything but the filter runs on the loop thread. */
#ifndef TERN_STORE_READER_H
#define TERN_STORE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_READER_CHUNK (64 * 1024) /* bytes read from a file at a time */

struct evbuffer;
struct store;
struct store_reader;
struct store_reader_stream;
struct workers;

/* Opens the stored bytes of one message. 1 with *reader_r set, -2 when the message is gone
 * (no row, or expunged and unlinked between the lookup and the open), -1 on error. */
int store_reader_open(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid,
                      struct store_reader **reader_r);
/* A reader over an open file (fd is owned by the reader from now on). */
struct store_reader *store_reader_from_fd(int fd);
/* Drops the caller's reference; streams keep their own, so a stream may outlive this. */
void store_reader_free(struct store_reader **reader);
/* Builds the MIME structure (mimestruct's serialized form, malloc'd) from the file, for rows
 * stored before structures were kept. 0 or -1. Runs on the calling thread. */
int store_reader_structure(struct store_reader *reader, unsigned char **blob_r, size_t *len_r);

/* A conversion stage run on the I/O thread: appends the output for in[0..len) to out and
 * returns true when it needs no more input. At the end (the range is read, the file ended or
 * it returned true) it is called once more with in NULL and len 0 to flush. */
typedef bool store_reader_filter_fn(void *state, const char *in, size_t len, struct evbuffer *out);

enum store_reader_conv {
	STORE_READER_RAW = 0, /* the bytes as stored */
	STORE_READER_CRLF,    /* every LF not preceded by CR sent as CRLF (IMAP's wire form) */
};

struct store_reader_range {
	uint64_t offset; /* first byte of the file */
	uint64_t len;    /* bytes of the file; UINT64_MAX: to its end */
	enum store_reader_conv conv;
	unsigned char nul_to; /* with CRLF: a NUL byte is sent as this byte (0 keeps it) */
	store_reader_filter_fn *filter; /* instead of conv when not NULL */
	void *filter_state; /* malloc'd; owned by the stream from store_reader_stream_new on */
	uint64_t skip;      /* output bytes dropped first (an IMAP partial's origin) */
	uint64_t limit;     /* output bytes delivered at most; UINT64_MAX: all */
	bool pad;     /* a file shorter than the range: spaces up to limit (a literal's length) */
	size_t chunk; /* bytes per read; 0: STORE_READER_CHUNK (tests use tiny ones) */
};

/* Called on the loop thread when a read finished: call store_reader_stream_pump again. Never
 * called after store_reader_stream_free. */
typedef void store_reader_ready_fn(void *arg);

/* Starts a stream over range of reader; io NULL reads on the calling thread. The range is
 * copied; its filter_state is the stream's (freed with it, even when the call fails). */
struct store_reader_stream *store_reader_stream_new(struct store_reader *reader, struct workers *io,
                                                    const struct store_reader_range *range,
                                                    store_reader_ready_fn *ready, void *arg);
/* Moves what was read into out and, while out holds less than high bytes, starts the next
 * read. 1: the stream is complete (every byte is in out); 0: not yet, ready() comes when the
 * read in flight is done, or call again once out has drained below high; -1: complete, but
 * the file could not be read whole (a read error or a file shorter than the range; with pad
 * the window was filled with spaces). */
int store_reader_stream_pump(struct store_reader_stream *st, struct evbuffer *out, size_t high);
/* The filter's state, for what the caller reads back once the stream is complete. */
void *store_reader_stream_filter_state(const struct store_reader_stream *st);
/* Output bytes moved into out so far. */
uint64_t store_reader_stream_delivered(const struct store_reader_stream *st);
/* Drops the stream; a read in flight finishes on its own and is freed by its completion. */
void store_reader_stream_free(struct store_reader_stream **st);

#endif
