/* Unit tests for pop3_parser: tables of command lines, message numbers and RETR/TOP streams.
 * Every table row becomes its own named cmocka test, and every stream row is fed whole, in every
 * two-way split and one byte at a time, with identical output required. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/pop3_parser.h"

#include "table.h"

/* Expands "{N:c}" into N copies of c, for rows about length limits. */
static char *
expand(const char *pattern, size_t *len_r)
{
	char *out = malloc(8192);
	size_t n = 0;

	if (out == NULL)
		abort();
	for (const char *p = pattern; *p != '\0'; p++) {
		unsigned count;
		char c;
		int used;

		if (*p == '{' && sscanf(p, "{%u:%c}%n", &count, &c, &used) == 2) {
			for (unsigned i = 0; i < count && n < 8000; i++)
				out[n++] = c;
			p += used - 1;
			continue;
		}
		if (n < 8000)
			out[n++] = *p;
	}
	out[n] = '\0';
	*len_r = n;
	return out;
}

/* ---- command lines ---- */

struct command_case {
	struct bytes line; /* may use {N:c} when expand is set */
	bool expand;
	int ret;
	enum pop3_verb verb;
	const char *verb_text;
	size_t nargs;
	const char *arg0, *arg1;
	const char *error; /* for ret -1 */
};

/* clang-format off */
static const struct command_case command_cases[] = {
	{B("USER alice@example.test"), false, 0, POP3_VERB_USER, "USER", 1, "alice@example.test", "", NULL},
	{B("user a"), false, 0, POP3_VERB_USER, "USER", 1, "a", "", NULL},
	{B("USER"), false, 0, POP3_VERB_USER, "USER", 0, "", "", NULL},
	{B("USER "), false, 0, POP3_VERB_USER, "USER", 0, "", "", NULL},
	{B("USER   a   "), false, 0, POP3_VERB_USER, "USER", 1, "a", "", NULL},
	{B("PASS secret"), false, 0, POP3_VERB_PASS, "PASS", 1, "secret", "", NULL},
	{B("pass two words "), false, 0, POP3_VERB_PASS, "PASS", 1, "two words ", "", NULL},
	{B("PASS  lead"), false, 0, POP3_VERB_PASS, "PASS", 1, " lead", "", NULL},
	{B("PASS"), false, 0, POP3_VERB_PASS, "PASS", 0, "", "", NULL},
	{B("PASS "), false, 0, POP3_VERB_PASS, "PASS", 0, "", "", NULL},
	{B("PASS {100:p}"), true, 0, POP3_VERB_PASS, "PASS", 1, "{100:p}", "", NULL},
	{B("STAT"), false, 0, POP3_VERB_STAT, "STAT", 0, "", "", NULL},
	{B("list"), false, 0, POP3_VERB_LIST, "LIST", 0, "", "", NULL},
	{B("LIST 3"), false, 0, POP3_VERB_LIST, "LIST", 1, "3", "", NULL},
	{B("RETR 1"), false, 0, POP3_VERB_RETR, "RETR", 1, "1", "", NULL},
	{B("DeLe 12"), false, 0, POP3_VERB_DELE, "DELE", 1, "12", "", NULL},
	{B("NOOP"), false, 0, POP3_VERB_NOOP, "NOOP", 0, "", "", NULL},
	{B("RSET"), false, 0, POP3_VERB_RSET, "RSET", 0, "", "", NULL},
	{B("QUIT"), false, 0, POP3_VERB_QUIT, "QUIT", 0, "", "", NULL},
	{B("TOP 1 10"), false, 0, POP3_VERB_TOP, "TOP", 2, "1", "10", NULL},
	{B("top  1  0  "), false, 0, POP3_VERB_TOP, "TOP", 2, "1", "0", NULL},
	{B("UIDL"), false, 0, POP3_VERB_UIDL, "UIDL", 0, "", "", NULL},
	{B("CAPA"), false, 0, POP3_VERB_CAPA, "CAPA", 0, "", "", NULL},
	{B("stls"), false, 0, POP3_VERB_STLS, "STLS", 0, "", "", NULL},
	{B("APOP a 0123456789abcdef0123456789abcdef"), false, 0, POP3_VERB_APOP, "APOP", 2, "a",
	 "0123456789abcdef0123456789abcdef", NULL},
	{B("AUTH"), false, 0, POP3_VERB_AUTH, "AUTH", 0, "", "", NULL},
	{B("AUTH PLAIN"), false, 0, POP3_VERB_AUTH, "AUTH", 1, "PLAIN", "", NULL},
	{B("AUTH PLAIN AGEAYg=="), false, 0, POP3_VERB_AUTH, "AUTH", 2, "PLAIN", "AGEAYg==", NULL},
	{B("AUTH PLAIN {2000:Q}"), true, 0, POP3_VERB_AUTH, "AUTH", 2, "PLAIN", "{2000:Q}", NULL},
	{B("AUTH PLAIN {4093:Q}"), true, -1, POP3_VERB_AUTH, "AUTH", 0, "", "", "line too long"},
	{B("AUTH {41:P} x"), true, -1, POP3_VERB_AUTH, "AUTH", 0, "", "", "argument too long"},
	{B("LIST {40:1}"), true, 0, POP3_VERB_LIST, "LIST", 1, "{40:1}", "", NULL},
	{B("LIST {41:1}"), true, -1, POP3_VERB_LIST, "LIST", 0, "", "", "argument too long"},
	{B("USER {505:u}"), true, 0, POP3_VERB_USER, "USER", 1, "{505:u}", "", NULL},
	{B("USER {506:u}"), true, -1, POP3_VERB_USER, "USER", 0, "", "", "line too long"},
	{B("USER a b"), false, 0, POP3_VERB_USER, "USER", 2, "a", "b", NULL},
	{B("NOOP{506:x}"), true, 0, POP3_VERB_UNKNOWN, "NOOPXXXXXXXXXXX", 0, "", "", NULL},
	{B("NOOP{507:x}"), true, -1, POP3_VERB_UNKNOWN, "NOOPXXXXXXXXXXX", 0, "", "", "line too long"},
	{B("PASS {505:p}"), true, 0, POP3_VERB_PASS, "PASS", 1, "{505:p}", "", NULL},
	{B("PASS {506:p}"), true, -1, POP3_VERB_PASS, "PASS", 0, "", "", "line too long"},
	{B("TOP 1 2 3"), false, -1, POP3_VERB_TOP, "TOP", 0, "", "", "too many arguments"},
	{B("RETRX 1"), false, 0, POP3_VERB_UNKNOWN, "RETRX", 1, "1", "", NULL},
	{B("RET"), false, 0, POP3_VERB_UNKNOWN, "RET", 0, "", "", NULL},
	{B(" RETR 1"), false, 0, POP3_VERB_UNKNOWN, "", 2, "RETR", "1", NULL},
	{B(""), false, 0, POP3_VERB_UNKNOWN, "", 0, "", "", NULL},
	{B("USER \xc3\xa9t\xc3\xa9"), false, 0, POP3_VERB_USER, "USER", 1, "\xc3\xa9t\xc3\xa9", "", NULL},
	{B("RETR 1\0"), false, -1, POP3_VERB_RETR, "RETR", 0, "", "", "invalid characters in command"},
	{B("\0QUIT"), false, -1, POP3_VERB_UNKNOWN, "?QUIT", 0, "", "", "invalid characters in command"},
	{B("PASS a\tb"), false, -1, POP3_VERB_PASS, "PASS", 0, "", "", "invalid characters in command"},
	{B("LIST\t1"), false, -1, POP3_VERB_UNKNOWN, "LIST?1", 0, "", "", "invalid characters in command"},
	{B("NOOP \x7f"), false, -1, POP3_VERB_NOOP, "NOOP", 0, "", "", "invalid characters in command"},
	{B("NOOP a\rb"), false, -1, POP3_VERB_NOOP, "NOOP", 0, "", "", "invalid characters in command"},
	{B("\x1b[31mQUIT"), false, -1, POP3_VERB_UNKNOWN, "?[31MQUIT", 0, "", "", "invalid characters in command"},
};
/* clang-format on */

/* Parses one command line (copied into a buffer with room for the NUL). */
static void
test_command(void **state)
{
	const struct command_case *tc = *state;
	struct pop3_command cmd;
	const char *error = NULL;
	size_t len, alen;
	char *line, *arg0, *arg1;

	if (tc->expand) {
		line = expand(tc->line.s, &len);
	} else {
		len = tc->line.len;
		line = malloc(len + 1);
		assert_non_null(line);
		memcpy(line, tc->line.s, len);
	}
	arg0 = expand(tc->arg0, &alen);
	arg1 = expand(tc->arg1, &alen);
	assert_int_equal(pop3_command_parse(line, len, &cmd, &error), tc->ret);
	assert_string_equal(cmd.verb_text, tc->verb_text);
	if (tc->ret == 0) {
		assert_int_equal(cmd.verb, tc->verb);
		assert_int_equal(cmd.nargs, tc->nargs);
		assert_string_equal(cmd.args[0], arg0);
		assert_string_equal(cmd.args[1], arg1);
	} else {
		assert_non_null(error);
		assert_string_equal(error, tc->error);
	}
	free(arg0);
	free(arg1);
	free(line);
}

/* ---- numbers ---- */

struct number_case {
	const char *text;
	int uint_ret;   /* pop3_parse_uint */
	int msgnum_ret; /* pop3_parse_msgnum */
	uint32_t value;
};

/* clang-format off */
static const struct number_case number_cases[] = {
	{"1", 0, 0, 1},
	{"42", 0, 0, 42},
	{"007", 0, 0, 7},
	{"0", 0, -1, 0},
	{"00", 0, -1, 0},
	{"4294967295", 0, 0, 4294967295u},
	{"4294967296", -1, -1, 0},
	{"99999999999", -1, -1, 0},
	{"18446744073709551617", -1, -1, 0},
	{"", -1, -1, 0},
	{"+1", -1, -1, 0},
	{"-1", -1, -1, 0},
	{" 1", -1, -1, 0},
	{"1 ", -1, -1, 0},
	{"1a", -1, -1, 0},
	{"0x10", -1, -1, 0},
	{"1.0", -1, -1, 0},
	{"\xd9\xa1", -1, -1, 0},
};
/* clang-format on */

static void
test_number(void **state)
{
	const struct number_case *tc = *state;
	uint32_t n = 12345;

	assert_int_equal(pop3_parse_uint(tc->text, &n), tc->uint_ret);
	if (tc->uint_ret == 0)
		assert_int_equal(n, tc->value);
	n = 12345;
	assert_int_equal(pop3_parse_msgnum(tc->text, &n), tc->msgnum_ret);
	if (tc->msgnum_ret == 0)
		assert_int_equal(n, tc->value);
}

/* ---- the RETR/TOP streamer ---- */

struct stuff_case {
	const char *what;
	bool top;
	uint32_t lines;
	struct bytes in;
	struct bytes out; /* including the end the finish call writes */
	uint64_t size;    /* for RETR: the stored file's bytes + LFs not preceded by CR */
};

/* clang-format off */
static const struct stuff_case stuff_cases[] = {
	{"empty message", false, 0, B(""), B(".\r\n"), 0},
	{"CRLF message", false, 0, B("A: b\r\n\r\nbody\r\n"), B("A: b\r\n\r\nbody\r\n.\r\n"), 14},
	{"bare LFs become CRLF", false, 0, B("A: b\n\nbody\n"), B("A: b\r\n\r\nbody\r\n.\r\n"), 14},
	{"mixed endings", false, 0, B("A: b\r\n\nx\ny\r\n"), B("A: b\r\n\r\nx\r\ny\r\n.\r\n"), 14},
	{"LF first", false, 0, B("\nx"), B("\r\nx\r\n.\r\n"), 3},
	{"no final newline gets CRLF", false, 0, B("A: b\r\n\r\nbody"), B("A: b\r\n\r\nbody\r\n.\r\n"), 12},
	{"bare CR kept", false, 0, B("a\rb\r\n"), B("a\rb\r\n.\r\n"), 5},
	{"CR CR LF", false, 0, B("a\r\r\n"), B("a\r\r\n.\r\n"), 4},
	{"trailing bare CR", false, 0, B("a\r"), B("a\r\r\n.\r\n"), 2},
	{"dot line stuffed", false, 0, B("a\r\n.\r\nb\r\n"), B("a\r\n..\r\nb\r\n.\r\n"), 9},
	{"dot first byte stuffed", false, 0, B(".x\n"), B("..x\r\n.\r\n"), 4},
	{"dot after bare LF stuffed", false, 0, B("a\n..\n"), B("a\r\n...\r\n.\r\n"), 7},
	{"dot after bare CR not stuffed", false, 0, B("a\r.b\r\n"), B("a\r.b\r\n.\r\n"), 6},
	{"dot mid-line kept", false, 0, B("a.b\r\n"), B("a.b\r\n.\r\n"), 5},
	{"CRLF.CRLF inside the message", false, 0, B("x\r\n.\r\ny"), B("x\r\n..\r\ny\r\n.\r\n"), 7},
	{"last line a lone dot", false, 0, B("x\n."), B("x\r\n..\r\n.\r\n"), 4},
	{"NUL and 8-bit pass", false, 0, B("a\0\xff\n"), B("a\0\xff\r\n.\r\n"), 5},
	{"0 lines: headers and blank line", true, 0, B("A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n"),
	 B("A: b\r\nC: d\r\n\r\n.\r\n"), 14},
	{"1 line", true, 1, B("A: b\r\n\r\nl1\r\nl2\r\n"), B("A: b\r\n\r\nl1\r\n.\r\n"), 12},
	{"2 lines with bare LFs", true, 2, B("A: b\n\nl1\nl2\nl3\n"), B("A: b\r\n\r\nl1\r\nl2\r\n.\r\n"), 16},
	{"more lines than the body", true, 10, B("A: b\n\nl1\nl2"), B("A: b\r\n\r\nl1\r\nl2\r\n.\r\n"), 14},
	{"without blank line: all headers", true, 0, B("A: b\r\nC: d\r\n"), B("A: b\r\nC: d\r\n.\r\n"), 12},
	{"blank line first", true, 0, B("\r\nbody\r\n"), B("\r\n.\r\n"), 2},
	{"bare-LF blank line", true, 0, B("A: b\n\nbody\n"), B("A: b\r\n\r\n.\r\n"), 8},
	{"CR CR LF is not blank", true, 0, B("A: b\r\n\r\r\nC: d\r\n\r\nx\r\n"),
	 B("A: b\r\n\r\r\nC: d\r\n\r\n.\r\n"), 17},
	{"dot lines in the body stuffed", true, 2, B("A: b\r\n\r\n.\r\n..x\r\ny\r\n"),
	 B("A: b\r\n\r\n..\r\n...x\r\n.\r\n"), 16},
	{"body line without newline", true, 5, B("A: b\r\n\r\nend"), B("A: b\r\n\r\nend\r\n.\r\n"), 11},
};
/* clang-format on */

/* Feeds input in the given chunks (sizes summing to len), finishes, and compares with the row;
 * the output bound (2 * len per feed) is checked with exactly sized buffers. */
static void
stuff_check(const struct stuff_case *tc, const size_t *chunks, size_t nchunks, const char *how)
{
	char res[512], end[POP3_STUFF_END_MAX];
	struct pop3_stuffer st;
	size_t off = 0, n = 0, e;

	pop3_stuff_init(&st, tc->top, tc->lines);
	for (size_t c = 0; c < nchunks; c++) {
		char *out = malloc(2 * chunks[c] + 1);
		size_t out_len;

		assert_non_null(out);
		out_len = pop3_stuff_feed(&st, tc->in.s + off, chunks[c], out);
		assert_true(out_len <= 2 * chunks[c]);
		assert_true(n + out_len <= sizeof(res));
		memcpy(res + n, out, out_len);
		n += out_len;
		off += chunks[c];
		free(out);
	}
	e = pop3_stuff_finish(&st, end);
	assert_true(e <= POP3_STUFF_END_MAX);
	memcpy(res + n, end, e);
	n += e;
	if (n != tc->out.len || memcmp(res, tc->out.s, n) != 0) {
		char got[512], want[512];

		escape(got, sizeof(got), res, n);
		escape(want, sizeof(want), tc->out.s, tc->out.len);
		fail_msg("%s: got \"%s\", want \"%s\"", how, got, want);
	}
	assert_int_equal(st.size, tc->size);
	if (tc->top)
		return;
	/* A full RETR: what the store's size_crlf counts, file bytes plus bare LFs. */
	{
		uint64_t crlf = tc->in.len;

		for (size_t i = 0; i < tc->in.len; i++)
			if (tc->in.s[i] == '\n' && (i == 0 || tc->in.s[i - 1] != '\r'))
				crlf++;
		assert_int_equal(st.size, crlf);
	}
}

/* Feeds one row whole, in every two-way split and one byte at a time. */
static void
test_stuff(void **state)
{
	const struct stuff_case *tc = *state;
	size_t len = tc->in.len, chunks[256];
	char how[64];

	assert_true(len < 256);
	chunks[0] = len;
	stuff_check(tc, chunks, 1, "whole");
	for (size_t split = 0; split <= len; split++) {
		chunks[0] = split;
		chunks[1] = len - split;
		snprintf(how, sizeof(how), "split at %zu", split);
		stuff_check(tc, chunks, 2, how);
	}
	for (size_t i = 0; i < len; i++)
		chunks[i] = 1;
	stuff_check(tc, chunks, len, "byte at a time");
}

/* TOP says it is done once the cut is reached, and writes nothing after. */
static void
test_stuff_done(void **state)
{
	struct pop3_stuffer st;
	char out[64];

	pop3_stuff_init(&st, true, 1);
	assert_false(pop3_stuff_done(&st));
	assert_int_equal(pop3_stuff_feed(&st, "A: b\r\n\r\n", 8, out), 8);
	assert_false(pop3_stuff_done(&st));
	assert_int_equal(pop3_stuff_feed(&st, "x\r\ny", 4, out), 3);
	assert_true(pop3_stuff_done(&st));
	assert_int_equal(pop3_stuff_feed(&st, "more\r\n", 6, out), 0);
	assert_int_equal(st.size, 11);

	pop3_stuff_init(&st, false, 0);
	assert_int_equal(pop3_stuff_feed(&st, "a\n\nb\n", 5, out), 8);
	assert_false(pop3_stuff_done(&st));
}

int
main(void)
{
	char esc[128], esc2[128];

	for (size_t i = 0; i < sizeof(command_cases) / sizeof(command_cases[0]); i++) {
		const struct command_case *tc = &command_cases[i];

		escape(esc, sizeof(esc), tc->line.s, tc->line.len);
		if (tc->ret == 0)
			add_test(test_command, (void *)tc, "command \"%s\" -> verb=%s nargs=%zu",
			         esc, tc->verb_text, tc->nargs);
		else
			add_test(test_command, (void *)tc, "command \"%s\" -> -ERR %s", esc,
			         tc->error);
	}
	for (size_t i = 0; i < sizeof(number_cases) / sizeof(number_cases[0]); i++) {
		const struct number_case *tc = &number_cases[i];

		escape(esc, sizeof(esc), tc->text, strlen(tc->text));
		add_test(test_number, (void *)tc, "number \"%s\" -> %s, message number %s", esc,
		         tc->uint_ret == 0 ? "ok" : "refused",
		         tc->msgnum_ret == 0 ? "ok" : "refused");
	}
	for (size_t i = 0; i < sizeof(stuff_cases) / sizeof(stuff_cases[0]); i++) {
		const struct stuff_case *tc = &stuff_cases[i];

		escape(esc, sizeof(esc), tc->in.s, tc->in.len);
		escape(esc2, sizeof(esc2), tc->what, strlen(tc->what));
		add_test(test_stuff, (void *)tc, "%s %s: \"%s\" (whole, every split, bytewise)",
		         tc->top ? "TOP" : "RETR", esc2, esc);
	}
	add_test(test_stuff_done, NULL, "TOP stops at the cut and reports done");
	return _cmocka_run_group_tests("pop3_parser", tests, ntests, NULL, NULL);
}
