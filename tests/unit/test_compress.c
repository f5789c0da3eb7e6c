/* test_compress: the COMPRESS=DEFLATE filter (net/compress.c) on a real libevent bufferevent
 * pair: deflate both ways with zlib as the peer, one sync flush per burst, and the bound on
 * inflated input that keeps a decompression bomb from filling memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <zlib.h>

#include "net/compress.h"

#define READ_HIGH (256 * 1024) /* what netconn sets on a session's bufferevent */

struct pair {
	struct event_base *base;
	struct bufferevent *under, *peer, *filter;
};

static void
pair_open(struct pair *p)
{
	struct bufferevent *bevs[2];

	p->base = event_base_new();
	assert_non_null(p->base);
	assert_int_equal(bufferevent_pair_new(p->base, BEV_OPT_DEFER_CALLBACKS, bevs), 0);
	p->under = bevs[0];
	p->peer = bevs[1];
	p->filter = compress_wrap(p->under);
	assert_non_null(p->filter);
	bufferevent_setwatermark(p->filter, EV_READ, 0, READ_HIGH);
	bufferevent_enable(p->filter, EV_READ | EV_WRITE);
	bufferevent_enable(p->peer, EV_READ | EV_WRITE);
}

static void
pair_run(struct pair *p)
{
	for (int i = 0; i < 50; i++)
		event_base_loop(p->base, EVLOOP_NONBLOCK);
}

static void
pair_close(struct pair *p)
{
	struct bufferevent *under = compress_unwrap(p->filter);

	bufferevent_free(under);
	bufferevent_free(p->peer);
	pair_run(p);
	event_base_free(p->base);
}

/* Raw deflate of data with a sync flush at the end (what a client sends). */
static unsigned char *
deflate_raw(const void *data, size_t len, size_t *out_len)
{
	z_stream z = {0};
	size_t cap = compressBound((uLong)len) + 64;
	unsigned char *out = malloc(cap);

	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
	*out_len = cap - z.avail_out;
	deflateEnd(&z);
	return out;
}

static void
test_compress_input(void **state)
{
	struct pair p;
	const char *cmds = "a1 NOOP\r\na2 CAPABILITY\r\n";
	size_t zlen;
	unsigned char *z = deflate_raw(cmds, strlen(cmds), &zlen);
	char got[64] = "";

	(void)state;
	pair_open(&p);
	printf("# %zu bytes of deflate from the client arrive as the plain commands\n", zlen);
	bufferevent_write(p.peer, z, zlen);
	pair_run(&p);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(p.filter)), strlen(cmds));
	bufferevent_read(p.filter, got, sizeof(got) - 1);
	assert_string_equal(got, cmds);
	free(z);
	pair_close(&p);
}

static void
test_compress_output(void **state)
{
	struct pair p;
	unsigned char raw[4096], plain[4096];
	z_stream z = {0};
	size_t n;

	(void)state;
	pair_open(&p);
	printf(
	    "# replies queued in one burst leave deflated and inflate completely (sync flush)\n");
	bufferevent_write(p.filter, "* OK one\r\n", 10);
	bufferevent_write(p.filter, "a1 OK two\r\n", 11);
	pair_run(&p);
	n = bufferevent_read(p.peer, raw, sizeof(raw));
	assert_true(n > 0);
	assert_null(memmem(raw, n, "OK", 2));
	/* A sync flush ends in an empty stored block: 00 00 ff ff. */
	assert_true(n >= 4 && memcmp(raw + n - 4, "\x00\x00\xff\xff", 4) == 0);
	assert_int_equal(inflateInit2(&z, -15), Z_OK);
	z.next_in = raw;
	z.avail_in = (uInt)n;
	z.next_out = plain;
	z.avail_out = sizeof(plain);
	assert_int_equal(inflate(&z, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(sizeof(plain) - z.avail_out, 21);
	assert_memory_equal(plain, "* OK one\r\na1 OK two\r\n", 21);
	inflateEnd(&z);
	pair_close(&p);
}

/* 64 MiB of one byte deflates to about 64 KB: the filter must inflate only up to its read mark
 * while nobody reads, and go on as the reader drains. */
static void
test_compress_bomb(void **state)
{
	const size_t plain_len = (size_t)64 << 20;
	unsigned char *plain = malloc(plain_len);
	struct pair p;
	size_t zlen, total = 0, max_held = 0;
	unsigned char *z;
	char buf[65536];

	(void)state;
	memset(plain, 'a', plain_len);
	z = deflate_raw(plain, plain_len, &zlen);
	free(plain);
	pair_open(&p);
	printf("# a %zu-byte bomb that inflates to 64 MiB\n", zlen);
	bufferevent_write(p.peer, z, zlen);
	for (int round = 0; round < 100000 && total < plain_len; round++) {
		size_t held;

		pair_run(&p);
		held = evbuffer_get_length(bufferevent_get_input(p.filter));
		if (held > max_held)
			max_held = held;
		assert_true(held <= READ_HIGH + 64 * 1024);
		total += bufferevent_read(p.filter, buf, sizeof(buf));
	}
	printf("# inflated %zu bytes, at most %zu held at once (mark %d)\n", total, max_held,
	       READ_HIGH);
	assert_int_equal(total, plain_len);
	free(z);
	pair_close(&p);
}

static void
compress_event(struct bufferevent *bev, short what, void *arg)
{
	short *seen = arg;

	(void)bev;
	*seen |= what;
}

static void
test_compress_corrupt(void **state)
{
	struct pair p;
	short seen = 0;

	(void)state;
	pair_open(&p);
	printf("# bytes that are not deflate are a read error on the filter\n");
	bufferevent_setcb(p.filter, NULL, NULL, compress_event, &seen);
	bufferevent_write(p.peer, "\xff\xff\xff\xff garbage\r\n", 14);
	pair_run(&p);
	assert_true((seen & BEV_EVENT_ERROR) != 0);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(p.filter)), 0);
	pair_close(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compress_input),
	    cmocka_unit_test(test_compress_output),
	    cmocka_unit_test(test_compress_bomb),
	    cmocka_unit_test(test_compress_corrupt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
