/* test_mbox: the mbox reader (mime/mbox.c) from a table of files: messages cut at "From " lines
 * after a blank line (or at the start), the separator blank line dropped, ">From" unescaped once,
 * Status:/X-Status: flags, the From line's date; every row fed whole, one byte at a time and in
 * chunks, with the same result. Lines longer than the reader's prefix stream through. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "table.h"
#include "mime/mbox.h"

/* What the callbacks saw, rendered: "<date>,<flags>[" bytes "]" per message. */
struct seen {
	char *out;
	size_t len, cap;
	int stop_after; /* stop at the begin of this message (1-based), 0 never */
	int begins;
};

static void
seen_add(struct seen *s, const char *buf, size_t len)
{
	if (s->len + len + 1 > s->cap) {
		s->cap = (s->len + len + 1) * 2;
		s->out = realloc(s->out, s->cap);
		assert_non_null(s->out);
	}
	memcpy(s->out + s->len, buf, len);
	s->len += len;
	s->out[s->len] = '\0';
}

static int
cb_begin(int64_t date, void *arg)
{
	struct seen *s = arg;
	char head[64];

	if (++s->begins == s->stop_after)
		return -1;
	snprintf(head, sizeof(head), "%lld[", (long long)date);
	seen_add(s, head, strlen(head));
	return 0;
}

static int
cb_data(const char *buf, size_t len, void *arg)
{
	seen_add(arg, buf, len);
	return 0;
}

static int
cb_end(uint32_t flags, void *arg)
{
	char tail[32];

	snprintf(tail, sizeof(tail), "]%u;", (unsigned)flags);
	seen_add(arg, tail, strlen(tail));
	return 0;
}

static const struct mbox_callbacks callbacks = {cb_begin, cb_data, cb_end};

/* Feeds input in chunks of step bytes (0: whole); returns the result and fills s. */
static int
run(const char *input, size_t len, size_t step, struct seen *s)
{
	struct mbox_reader *r = mbox_reader_new(&callbacks, s);
	int rc = 0;

	seen_add(s, "", 0);
	for (size_t off = 0; off < len && rc == 0;) {
		size_t n = step == 0 || step > len - off ? len - off : step;
		rc = mbox_reader_feed(r, input + off, n);
		off += n;
	}
	if (rc == 0)
		rc = mbox_reader_finish(r);
	mbox_reader_free(&r);
	return rc;
}

static const struct row {
	const char *name;
	struct bytes in;
	int rc;
	struct bytes out;
} rows[] = {
    {"empty input: no message", B(""), 0, B("")},
    {"one message, LF, date from the From line",
     B("From a@b Sat Jan  3 01:05:34 1996\nSubject: x\n\nbody\n\n"), 0,
     B("820631134[Subject: x\n\nbody\n]0;")},
    {"two messages; the blank separator dropped",
     B("From a Thu Jan  1 00:00:00 1970\nA: 1\n\none\n\nFrom b Thu Jan  1 00:00:01 1970\nA: "
       "2\n\ntwo\n"),
     0, B("0[A: 1\n\none\n]0;1[A: 2\n\ntwo\n]0;")},
    {"CRLF file",
     B("From a Thu Jan  1 00:00:00 1970\r\nA: 1\r\n\r\none\r\n\r\nFrom b Thu Jan  1 00:00:02 "
       "1970\r\n\r\ntwo\r\n\r\n"),
     0, B("0[A: 1\r\n\r\none\r\n]0;2[\r\ntwo\r\n]0;")},
    {"From inside a body without a blank line before stays",
     B("From a Thu Jan  1 00:00:00 1970\n\nx\nFrom here on\n"), 0, B("0[\nx\nFrom here on\n]0;")},
    {">From unescaped once, >>From too, >x and > From kept",
     B("From a Thu Jan  1 00:00:00 1970\n\n>From a\n>>From b\n>x\n> From c\n>From\n"), 0,
     B("0[\nFrom a\n>From b\n>x\n> From c\n>From\n]0;")},
    {"Status and X-Status flags, header only",
     B("From a Thu Jan  1 00:00:00 1970\nStatus: RO\nX-Status: AFTD\n\nStatus: R\n"), 0,
     B("0[Status: RO\nX-Status: AFTD\n\nStatus: R\n]31;")},
    {"a From line without a date: 0", B("From nobody\n\nx\n"), 0, B("0[\nx\n]0;")},
    {"no newline at the end", B("From a Thu Jan  1 00:00:00 1970\n\nlast"), 0, B("0[\nlast]0;")},
    {"two blank lines: one kept in the message",
     B("From a Thu Jan  1 00:00:00 1970\n\nx\n\n\nFrom b Thu Jan  1 00:00:00 1970\n\ny\n"), 0,
     B("0[\nx\n\n]0;0[\ny\n]0;")},
    {"not an mbox", B("Subject: hi\n\nbody\n"), -2, B("")},
    {"NUL bytes pass", B("From a Thu Jan  1 00:00:00 1970\n\na\0b\n"), 0, B("0[\na\0b\n]0;")},
};

static void
test_row(void **state)
{
	const struct row *row = *state;
	size_t steps[] = {0, 1, 2, 3, 7, 64};
	size_t outlen = row->out.len;
	char shown[128];

	escape(shown, sizeof(shown), row->in.s, row->in.len);
	printf("# input \"%s\"\n", shown);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct seen s = {0};
		int rc = run(row->in.s, row->in.len, steps[i], &s);

		printf("# step %zu: rc %d, %zu bytes seen\n", steps[i], rc, s.len);
		assert_int_equal(rc, row->rc);
		assert_int_equal(s.len, outlen);
		assert_memory_equal(s.out, row->out.s, outlen);
		free(s.out);
	}
}

/* A line far longer than the prefix: a message line streams through whole, a From separator
 * that long is dropped whole, and ">From" at its start is still unescaped. */
static void
test_long_lines(void **state)
{
	size_t big = 3 * MBOX_PREFIX + 17, len = 0;
	char *in = malloc(2 * big + 200), *want = malloc(2 * big + 200);
	struct seen s = {0};

	(void)state;
	len += (size_t)sprintf(in + len, "From a ");
	memset(in + len, 'f', big);
	len += big;
	len += (size_t)sprintf(in + len, "\n\n>From ");
	memset(in + len, 'x', big);
	len += big;
	len += (size_t)sprintf(in + len, "\n");
	for (size_t step = 0; step < 4; step++) {
		size_t w = 0;
		s.len = 0;
		assert_int_equal(run(in, len, step == 0 ? 0 : step * 333, &s), 0);
		w += (size_t)sprintf(want + w, "0[\nFrom ");
		memset(want + w, 'x', big);
		w += big;
		w += (size_t)sprintf(want + w, "\n]0;");
		printf("# step %zu: %zu bytes seen, %zu expected\n", step * 333, s.len, w);
		assert_int_equal(s.len, w);
		assert_memory_equal(s.out, want, w);
	}
	free(s.out);
	free(in);
	free(want);
}

/* A callback's -1 stops the reader, which then takes nothing more. */
static void
test_stop(void **state)
{
	static const char in[] = "From a Thu Jan  1 00:00:00 1970\n\none\n\n"
	                         "From b Thu Jan  1 00:00:00 1970\n\ntwo\n";
	struct seen s = {.stop_after = 2};
	struct mbox_reader *r = mbox_reader_new(&callbacks, &s);

	(void)state;
	seen_add(&s, "", 0);
	assert_int_equal(mbox_reader_feed(r, in, sizeof(in) - 1), -1);
	assert_int_equal(mbox_reader_feed(r, "x\n", 2), -1);
	assert_int_equal(mbox_reader_finish(r), -1);
	assert_string_equal(s.out, "0[\none\n]0;");
	mbox_reader_free(&r);
	free(s.out);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		add_test(test_row, (void *)&rows[i], "%s", rows[i].name);
	add_test(test_long_lines, NULL, "lines over the prefix stream through");
	add_test(test_stop, NULL, "a callback stops the reader");
	return _cmocka_run_group_tests("mbox", tests, ntests, NULL, NULL);
}
