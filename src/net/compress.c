/* compress: COMPRESS=DEFLATE as a filter bufferevent (see compress.h). */
#include "net/compress.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <zlib.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMPRESS_STEP (16 * 1024)       /* bytes inflated or deflated per zlib call */
#define COMPRESS_IN_DEFAULT (64 * 1024) /* inflated per filter call without a read mark */

struct compress {
	struct bufferevent *filter;
	z_stream in;  /* inflate: client to server */
	z_stream out; /* deflate: server to client */
	bool in_ok, out_ok;
	bool failed; /* the input stream is corrupt: nothing more is read */
};

/* libevent ignores a filter's BEV_ERROR on input: report the error to the filter's owner. */
static enum bufferevent_filter_result
compress_fail(struct compress *c)
{
	if (!c->failed) {
		c->failed = true;
		bufferevent_trigger_event(c->filter, BEV_EVENT_READING | BEV_EVENT_ERROR,
		                          BEV_TRIG_DEFER_CALLBACKS);
	}
	return BEV_ERROR;
}

static void
compress_free_ctx(void *arg)
{
	struct compress *c = arg;

	if (c->in_ok)
		inflateEnd(&c->in);
	if (c->out_ok)
		deflateEnd(&c->out);
	free(c);
}

/* Inflates from src into dst, at most limit bytes of output (the room below the filter's read
 * high-water mark). What cannot be inflated now stays in src. */
static enum bufferevent_filter_result
compress_input(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t dst_limit,
               enum bufferevent_flush_mode mode, void *arg)
{
	struct compress *c = arg;
	size_t room = dst_limit < 0 ? COMPRESS_IN_DEFAULT : (size_t)dst_limit;

	(void)mode;
	if (c->failed)
		return BEV_ERROR;
	while (room > 0 && evbuffer_get_length(src) > 0) {
		struct evbuffer_iovec in, out;
		size_t want = room < COMPRESS_STEP ? room : COMPRESS_STEP;
		size_t used_in, made;
		int rc;

		if (evbuffer_peek(src, -1, NULL, &in, 1) < 1 ||
		    evbuffer_reserve_space(dst, (ev_ssize_t)want, &out, 1) < 1)
			return compress_fail(c);
		if (out.iov_len > want)
			out.iov_len = want;
		c->in.next_in = in.iov_base;
		c->in.avail_in = (uInt)(in.iov_len > UINT32_MAX ? UINT32_MAX : in.iov_len);
		c->in.next_out = out.iov_base;
		c->in.avail_out = (uInt)out.iov_len;
		rc = inflate(&c->in, Z_SYNC_FLUSH);
		used_in = (size_t)(c->in.next_in - (Bytef *)in.iov_base);
		made = out.iov_len - c->in.avail_out;
		out.iov_len = made;
		evbuffer_commit_space(dst, &out, 1);
		evbuffer_drain(src, used_in);
		room -= made;
		/* The client has no business ending the stream: anything after it is not ours. */
		if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR))
			return compress_fail(c);
		if (used_in == 0 && made == 0)
			break; /* zlib wants more input than this chunk gave: next read */
	}
	return BEV_OK;
}

/* Deflates src into dst (up to about dst_limit when the socket side has a write mark) and ends
 * with a sync flush once src is empty, so the client can read every reply it was sent. */
static enum bufferevent_filter_result
compress_output(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t dst_limit,
                enum bufferevent_flush_mode mode, void *arg)
{
	struct compress *c = arg;
	size_t start = evbuffer_get_length(dst);
	unsigned char buf[COMPRESS_STEP];

	(void)mode;
	if (evbuffer_get_length(src) == 0)
		return BEV_OK; /* every burst already ended with a sync flush */
	for (;;) {
		struct evbuffer_iovec in = {NULL, 0};
		int flush = Z_NO_FLUSH;
		int rc;

		if (dst_limit >= 0 && evbuffer_get_length(dst) - start >= (size_t)dst_limit)
			return BEV_OK; /* the socket side is full: the rest waits here */
		if (evbuffer_get_length(src) > 0)
			evbuffer_peek(src, COMPRESS_STEP, NULL, &in, 1);
		if (in.iov_len > COMPRESS_STEP)
			in.iov_len = COMPRESS_STEP;
		if (in.iov_len == evbuffer_get_length(src))
			flush = Z_SYNC_FLUSH; /* the last of this burst */
		c->out.next_in = in.iov_base;
		c->out.avail_in = (uInt)in.iov_len;
		do {
			c->out.next_out = buf;
			c->out.avail_out = sizeof(buf);
			rc = deflate(&c->out, flush);
			if (rc == Z_STREAM_ERROR) /* Z_BUF_ERROR: nothing to do, not an error */
				return BEV_ERROR;
			if (evbuffer_add(dst, buf, sizeof(buf) - c->out.avail_out) < 0)
				return BEV_ERROR;
		} while (c->out.avail_out == 0);
		evbuffer_drain(src, in.iov_len);
		if (flush == Z_SYNC_FLUSH)
			return BEV_OK;
	}
}

struct bufferevent *
compress_wrap(struct bufferevent *under)
{
	struct compress *c = xcalloc(1, sizeof(*c));
	struct bufferevent *filter;

	if (inflateInit2(&c->in, -15) != Z_OK) {
		free(c);
		return NULL;
	}
	c->in_ok = true;
	if (deflateInit2(&c->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		compress_free_ctx(c);
		return NULL;
	}
	c->out_ok = true;
	/* Not BEV_OPT_CLOSE_ON_FREE: compress_unwrap hands the underlying one back for closing. */
	filter = bufferevent_filter_new(under, compress_input, compress_output,
	                                BEV_OPT_DEFER_CALLBACKS, compress_free_ctx, c);
	if (filter == NULL) {
		compress_free_ctx(c);
		return NULL;
	}
	c->filter = filter;
	/* One sync flush per burst of replies, not per evbuffer_add: the filter runs from the
	 * loop after the handler has queued everything. */
	evbuffer_defer_callbacks(bufferevent_get_output(filter), bufferevent_get_base(filter));
	/* Compressed input and output wait below the filter in bounded amounts: reading the socket
	 * stops above the read mark, and the filter keeps plain output (which the session sees
	 * for backpressure) while the socket side is above the write mark. */
	/* No timers of its own here: netconn keeps the session's idle timers on the socket at the
	 * bottom of the chain (and sets them again once the filter is in place). */
	bufferevent_set_timeouts(under, NULL, NULL);
	bufferevent_setwatermark(under, EV_READ, 0, COMPRESS_UNDER_HIGH);
	bufferevent_setwatermark(under, EV_WRITE, 0, COMPRESS_UNDER_HIGH);
	/* What the client sent right after the command is already compressed. */
	if (evbuffer_get_length(bufferevent_get_input(under)) > 0)
		bufferevent_trigger(under, EV_READ,
		                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	return filter;
}

struct bufferevent *
compress_unwrap(struct bufferevent *filter)
{
	struct bufferevent *under = bufferevent_get_underlying(filter);

	bufferevent_flush(filter, EV_WRITE, BEV_FLUSH);
	/* Freed from inside its own callback, the filter is destroyed later, and then lets its
	 * underlying bufferevent read again: by then a TLS one has lost its SSL (the caller closes
	 * it now). Nothing is read below a closed connection anyway. */
	bufferevent_disable(under, EV_READ);
	bufferevent_free(filter);
	return under;
}
