/* Unit tests for push_parser: tables of command lines, WATCH arguments, mailbox-name quoting and
 * UTF-8 checks. Every table row is its own named cmocka test. Lines are also parsed cut at every
 * length (a line that arrives one byte at a time and is cut short must still parse cleanly), and
 * quoting is checked to round-trip through the parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "push/push_parser.h"

#include "table.h"

/* Expands "{N:text}" into N copies of text (text holds no '}'), for rows about limits. */
static char *
expand(const char *pattern, size_t len, size_t *len_r)
{
	char *out = malloc(8192);
	size_t n = 0;

	if (out == NULL)
		abort();
	for (size_t i = 0; i < len; i++) {
		const char *colon, *close;
		char *end;
		unsigned long count;

		if (pattern[i] == '{' && (count = strtoul(pattern + i + 1, &end, 10)) > 0 &&
		    *end == ':' &&
		    (close = memchr(end, '}', (size_t)(pattern + len - end))) != NULL) {
			colon = end;
			for (unsigned long k = 0; k < count; k++) {
				for (const char *t = colon + 1; t < close && n < 8000; t++)
					out[n++] = *t;
			}
			i = (size_t)(close - pattern);
			continue;
		}
		if (n < 8000)
			out[n++] = pattern[i];
	}
	out[n] = '\0';
	*len_r = n;
	return out;
}

/* ---- command lines ---- */

struct command_case {
	struct bytes line; /* {N:c} expanded */
	int ret;
	enum push_verb verb;
	const char *verb_text;
	size_t nargs;
	const char *args[3];
	bool quoted[3];
	const char *error; /* ret -1 */
};

/* clang-format off */
static const struct command_case command_cases[] = {
	{B("CAPA"), 0, PUSH_VERB_CAPA, "CAPA", 0, {NULL}, {false}, NULL},
	{B("capa"), 0, PUSH_VERB_CAPA, "CAPA", 0, {NULL}, {false}, NULL},
	{B("StartTLS"), 0, PUSH_VERB_STARTTLS, "STARTTLS", 0, {NULL}, {false}, NULL},
	{B("NOOP"), 0, PUSH_VERB_NOOP, "NOOP", 0, {NULL}, {false}, NULL},
	{B("LOGOUT"), 0, PUSH_VERB_LOGOUT, "LOGOUT", 0, {NULL}, {false}, NULL},
	{B("AUTH PLAIN"), 0, PUSH_VERB_AUTH, "AUTH", 1, {"PLAIN"}, {false}, NULL},
	{B("AUTH PLAIN AGFAYgBj"), 0, PUSH_VERB_AUTH, "AUTH", 2, {"PLAIN", "AGFAYgBj"}, {false}, NULL},
	{B("WATCH"), 0, PUSH_VERB_WATCH, "WATCH", 0, {NULL}, {false}, NULL},
	{B("WATCH INBOX Sent"), 0, PUSH_VERB_WATCH, "WATCH", 2, {"INBOX", "Sent"}, {false}, NULL},
	{B("  WATCH   INBOX   Sent  "), 0, PUSH_VERB_WATCH, "WATCH", 2, {"INBOX", "Sent"}, {false}, NULL},
	{B("WATCH \"Sent Items\" INBOX"), 0, PUSH_VERB_WATCH, "WATCH", 2, {"Sent Items", "INBOX"},
	 {true, false}, NULL},
	{B("WATCH \"a\\\"b\\\\c\""), 0, PUSH_VERB_WATCH, "WATCH", 1, {"a\"b\\c"}, {true}, NULL},
	{B("WATCH \"\""), 0, PUSH_VERB_WATCH, "WATCH", 1, {""}, {true}, NULL},
	{B("WATCH \"SINCE\" SINCE 5"), 0, PUSH_VERB_WATCH, "WATCH", 3, {"SINCE", "SINCE", "5"},
	 {true, false, false}, NULL},
	{B("WATCH a\"b"), 0, PUSH_VERB_WATCH, "WATCH", 1, {"a\"b"}, {false}, NULL},
	{B("WATCH \xc3\xa9t\xc3\xa9"), 0, PUSH_VERB_WATCH, "WATCH", 1, {"\xc3\xa9t\xc3\xa9"}, {false}, NULL},
	{B("FROB x"), 0, PUSH_VERB_UNKNOWN, "FROB", 1, {"x"}, {false}, NULL},
	{B("WATCHX"), 0, PUSH_VERB_UNKNOWN, "WATCHX", 0, {NULL}, {false}, NULL},
	{B(""), 0, PUSH_VERB_UNKNOWN, "", 0, {NULL}, {false}, NULL},
	{B("   "), 0, PUSH_VERB_UNKNOWN, "", 0, {NULL}, {false}, NULL},
	{B("\"CAPA\""), 0, PUSH_VERB_UNKNOWN, "?CAPA?", 0, {NULL}, {false}, NULL},
	{B("NOOP{996: }"), 0, PUSH_VERB_NOOP, "NOOP", 0, {NULL}, {false}, NULL},
	{B("NOOP{997: }"), -1, PUSH_VERB_UNKNOWN, "NOOP", 0, {NULL}, {false}, "line too long"},
	{B("{2000:X}"), -1, PUSH_VERB_UNKNOWN, "XXXXXXXXXXXXXXX", 0, {NULL}, {false}, "line too long"},
	{B("WATCH {40:a }"), 0, PUSH_VERB_WATCH, "WATCH", 40, {"a", "a", "a"}, {false}, NULL},
	{B("WATCH {41:a }"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: too many arguments"},
	{B("NO\0OP"), -1, PUSH_VERB_UNKNOWN, "NO?OP", 0, {NULL}, {false},
	 "syntax error: control character in the line"},
	{B("NOOP\t"), -1, PUSH_VERB_UNKNOWN, "NOOP?", 0, {NULL}, {false},
	 "syntax error: control character in the line"},
	{B("WATCH a\x7f"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: control character in the line"},
	{B("WATCH a\rb"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: control character in the line"},
	{B("\x1b[2JCAPA"), -1, PUSH_VERB_UNKNOWN, "?[2JCAPA", 0, {NULL}, {false},
	 "syntax error: control character in the line"},
	{B("WATCH \"open"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: unterminated quoted string"},
	{B("WATCH \"a\\"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: only \\\" and \\\\ may follow a backslash"},
	{B("WATCH \"a\\n\""), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: only \\\" and \\\\ may follow a backslash"},
	{B("WATCH \"a\"b"), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: text after a closing quote"},
	{B("WATCH \"a\"\"b\""), -1, PUSH_VERB_UNKNOWN, "WATCH", 0, {NULL}, {false},
	 "syntax error: text after a closing quote"},
};
/* clang-format on */

static void
test_command(void **state)
{
	const struct command_case *tc = *state;
	struct push_command cmd;
	const char *error = NULL;
	size_t len;
	char *line = expand(tc->line.s, tc->line.len, &len);

	assert_int_equal(push_command_parse(line, len, &cmd, &error), tc->ret);
	assert_string_equal(cmd.verb_text, tc->verb_text);
	if (tc->ret < 0) {
		assert_non_null(error);
		assert_string_equal(error, tc->error);
		free(line);
		return;
	}
	assert_int_equal(cmd.verb, tc->verb);
	assert_int_equal(cmd.nargs, tc->nargs);
	for (size_t i = 0; i < 3 && i < tc->nargs; i++) {
		assert_string_equal(cmd.args[i], tc->args[i]);
		assert_int_equal(cmd.quoted[i], tc->quoted[i]);
	}
	free(line);
}

/* Every cut of the line (what a client that stops mid-line would leave) parses or fails cleanly,
 * with every argument inside the line and free of control bytes. */
static void
test_command_prefixes(void **state)
{
	const struct command_case *tc = *state;
	size_t len;
	char *full = expand(tc->line.s, tc->line.len, &len);

	for (size_t cut = 0; cut <= len; cut++) {
		struct push_command cmd;
		const char *error = NULL;
		char *line = malloc(cut + 1);

		assert_non_null(line);
		memcpy(line, full, cut);
		if (push_command_parse(line, cut, &cmd, &error) < 0) {
			assert_non_null(error);
		} else {
			assert_true(cmd.nargs <= PUSH_ARGS_MAX);
			for (size_t i = 0; i < cmd.nargs; i++) {
				assert_true(cmd.args[i] >= line && cmd.args[i] <= line + cut);
				for (const char *p = cmd.args[i]; *p != '\0'; p++)
					assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
			}
		}
		free(line);
	}
	free(full);
}

/* ---- WATCH arguments ---- */

struct watch_case {
	const char *line;
	int ret;
	size_t n;
	const char *mailboxes[3];
	bool since;
	uint32_t since_uid;
	const char *error;
};

/* clang-format off */
static const struct watch_case watch_cases[] = {
	{"WATCH", 0, 1, {"INBOX"}, false, 0, NULL},
	{"WATCH inbox", 0, 1, {"INBOX"}, false, 0, NULL},
	{"WATCH INBOX Sent", 0, 2, {"INBOX", "Sent"}, false, 0, NULL},
	{"WATCH INBOX inbox Inbox Sent Sent", 0, 2, {"INBOX", "Sent"}, false, 0, NULL},
	{"WATCH SINCE 41", 0, 1, {"INBOX"}, true, 41, NULL},
	{"WATCH INBOX since 0", 0, 1, {"INBOX"}, true, 0, NULL},
	{"WATCH INBOX Sent SINCE 4294967295", 0, 2, {"INBOX", "Sent"}, true, 4294967295u, NULL},
	{"WATCH \"SINCE\"", 0, 1, {"SINCE"}, false, 0, NULL},
	{"WATCH \"Sent Items\" SINCE 007", 0, 1, {"Sent Items"}, true, 7, NULL},
	{"WATCH INBOX SINCE 4294967296", -1, 0, {NULL}, false, 0,
	 "syntax: SINCE takes a UID (0 to 4294967295)"},
	{"WATCH INBOX SINCE", -1, 0, {NULL}, false, 0, "syntax: WATCH [mailbox ...] [SINCE uid]"},
	{"WATCH SINCE 1 INBOX", -1, 0, {NULL}, false, 0, "syntax: WATCH [mailbox ...] [SINCE uid]"},
	{"WATCH SINCE 1 SINCE 2", -1, 0, {NULL}, false, 0, "syntax: WATCH [mailbox ...] [SINCE uid]"},
	{"WATCH SINCE -1", -1, 0, {NULL}, false, 0, "syntax: SINCE takes a UID (0 to 4294967295)"},
	{"WATCH SINCE +1", -1, 0, {NULL}, false, 0, "syntax: SINCE takes a UID (0 to 4294967295)"},
	{"WATCH SINCE \"1\"", -1, 0, {NULL}, false, 0, "syntax: SINCE takes a UID (0 to 4294967295)"},
	{"WATCH SINCE 1x", -1, 0, {NULL}, false, 0, "syntax: SINCE takes a UID (0 to 4294967295)"},
	{"WATCH \"\"", -1, 0, {NULL}, false, 0,
	 "syntax error: a mailbox name is 1 to 255 octets of UTF-8"},
	{"WATCH \xff\xfe", -1, 0, {NULL}, false, 0,
	 "syntax error: a mailbox name is 1 to 255 octets of UTF-8"},
	{"WATCH {256:m}", -1, 0, {NULL}, false, 0,
	 "syntax error: a mailbox name is 1 to 255 octets of UTF-8"},
	{"WATCH {255:m}", 0, 1, {"{255:m}"}, false, 0, NULL},
	{"WATCH {33:m }", -1, 0, {NULL}, false, 0, "too many mailboxes in one WATCH (at most 32)"},
	{"WATCH {32:m } SINCE 1", 0, 1, {"m"}, true, 1, NULL},
};
/* clang-format on */

static void
test_watch(void **state)
{
	const struct watch_case *tc = *state;
	struct push_command cmd;
	struct push_watch w;
	const char *error = NULL;
	size_t len, elen;
	char *line = expand(tc->line, strlen(tc->line), &len);

	assert_int_equal(push_command_parse(line, len, &cmd, &error), 0);
	assert_int_equal(cmd.verb, PUSH_VERB_WATCH);
	assert_int_equal(push_watch_parse(&cmd, &w, &error), tc->ret);
	if (tc->ret < 0) {
		assert_string_equal(error, tc->error);
		free(line);
		return;
	}
	assert_int_equal(w.n, tc->n);
	assert_int_equal(w.since, tc->since);
	assert_int_equal(w.since_uid, tc->since_uid);
	for (size_t i = 0; i < 3 && i < tc->n; i++) {
		char *want = expand(tc->mailboxes[i], strlen(tc->mailboxes[i]), &elen);

		assert_string_equal(w.mailboxes[i], want);
		free(want);
	}
	free(line);
}

/* ---- quoting ---- */

struct quote_case {
	const char *name;
	const char *quoted;
};

/* clang-format off */
static const struct quote_case quote_cases[] = {
	{"INBOX", "INBOX"},
	{"Sent Items", "\"Sent Items\""},
	{"a\"b", "\"a\\\"b\""},
	{"back\\slash", "\"back\\\\slash\""},
	{"SINCE", "\"SINCE\""},
	{"since", "\"since\""},
	{"", "\"\""},
	{"\xc3\xa9t\xc3\xa9/2026", "\xc3\xa9t\xc3\xa9/2026"},
	{"Archive/Old Stuff", "\"Archive/Old Stuff\""},
};
/* clang-format on */

static void
test_quote(void **state)
{
	const struct quote_case *tc = *state;
	char out[64], line[80];
	struct push_command cmd;
	const char *error;
	size_t n = push_name_quote(tc->name, out, sizeof(out));

	assert_string_equal(out, tc->quoted);
	assert_int_equal(n, strlen(tc->quoted));
	/* What we write, the parser reads back as the same name. */
	snprintf(line, sizeof(line), "WATCH %s", out);
	assert_int_equal(push_command_parse(line, strlen(line), &cmd, &error), 0);
	assert_int_equal(cmd.nargs, 1);
	assert_string_equal(cmd.args[0], tc->name);
	/* Cut output stays terminated and reports the length it needed. */
	assert_int_equal(push_name_quote(tc->name, out, 3), strlen(tc->quoted));
	assert_true(strlen(out) <= 2);
}

/* ---- UTF-8 ---- */

struct utf8_case {
	struct bytes s;
	bool valid;
};

/* clang-format off */
static const struct utf8_case utf8_cases[] = {
	{B(""), true},
	{B("plain ascii"), true},
	{B("\xc3\xa9"), true},
	{B("\xe2\x82\xac"), true},
	{B("\xf0\x9f\x93\xa8"), true},
	{B("\xf4\x8f\xbf\xbf"), true},
	{B("a\0b"), true},
	{B("\xc3"), false},
	{B("\xe2\x82"), false},
	{B("\x80"), false},
	{B("\xc0\xaf"), false},
	{B("\xe0\x80\xaf"), false},
	{B("\xed\xa0\x80"), false},
	{B("\xf4\x90\x80\x80"), false},
	{B("\xf8\x88\x80\x80\x80"), false},
	{B("\xff"), false},
	{B("ok\xc3\xa9\xc3"), false},
};
/* clang-format on */

static void
test_utf8(void **state)
{
	const struct utf8_case *tc = *state;

	assert_int_equal(push_utf8_valid(tc->s.s, tc->s.len), tc->valid);
}

int
main(void)
{
	char esc[128];

	for (size_t i = 0; i < sizeof(command_cases) / sizeof(command_cases[0]); i++) {
		const struct command_case *tc = &command_cases[i];

		escape(esc, sizeof(esc), tc->line.s, tc->line.len);
		if (tc->ret == 0)
			add_test(test_command, (void *)tc, "command \"%s\" -> verb=%s nargs=%zu",
			         esc, tc->verb_text, tc->nargs);
		else
			add_test(test_command, (void *)tc, "command \"%s\" -> -ERR %s", esc,
			         tc->error);
		add_test(test_command_prefixes, (void *)tc, "command \"%s\" cut at every length",
		         esc);
	}
	for (size_t i = 0; i < sizeof(watch_cases) / sizeof(watch_cases[0]); i++) {
		const struct watch_case *tc = &watch_cases[i];

		escape(esc, sizeof(esc), tc->line, strlen(tc->line));
		add_test(test_watch, (void *)tc, "watch \"%s\" -> %s", esc,
		         tc->ret == 0 ? "ok" : tc->error);
	}
	for (size_t i = 0; i < sizeof(quote_cases) / sizeof(quote_cases[0]); i++) {
		const struct quote_case *tc = &quote_cases[i];

		escape(esc, sizeof(esc), tc->name, strlen(tc->name));
		add_test(test_quote, (void *)tc, "quote \"%s\" and read it back", esc);
	}
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		const struct utf8_case *tc = &utf8_cases[i];

		escape(esc, sizeof(esc), tc->s.s, tc->s.len);
		add_test(test_utf8, (void *)tc, "utf8 \"%s\" -> %s", esc,
		         tc->valid ? "valid" : "invalid");
	}
	return _cmocka_run_group_tests("push_parser", tests, ntests, NULL, NULL);
}
