/* Unit tests for imap_match: IMAP dates, search programs that must be refused (with BAD or
 * BAD [LIMIT]), and a table of searches evaluated against four real messages (RFC 2047
 * headers, quoted-printable ISO-8859-1, base64 UTF-8, multipart with an attachment and HTML,
 * an embedded message/rfc822) with the sequence numbers each must match. Every search is run
 * the way the server runs it (index first, then the header, then the whole message, only while
 * undecided) and checked against a full evaluation, so the three-valued shortcut never changes
 * an answer. Search commands are parsed by the real imap_parser. The content functions are also
 * run from several threads at once over shared programs (as ternd's workers do), with the same
 * answers as on one thread. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "imap/imap_match.h"
#include "imap/imap_parser.h"
#include "store/store.h"

#include "table.h"

/* ---- dates ---- */

struct date_case {
	const char *text;
	int ret;
	int32_t day;
};

/* clang-format off */
static const struct date_case date_cases[] = {
    {"1-Jan-1970", 0, 0},
    {"2-jan-1970", 0, 1},
    {"01-MAR-2000", 0, 11017},
    {"29-Feb-2024", 0, 19782},
    {"31-Dec-1969", 0, -1},
    {"29-Feb-2023", -1, 0},
    {"29-Feb-1900", -1, 0},
    {"29-Feb-2000", 0, 11016},
    {"31-Apr-2024", -1, 0},
    {"0-Feb-1994", -1, 0},
    {"123-Feb-1994", -1, 0},
    {"1-Foo-1994", -1, 0},
    {"1-Feb-94", -1, 0},
    {"1-Feb-19940", -1, 0},
    {"1-Feb-1994x", -1, 0},
    {"1 Feb 1994", -1, 0},
    {"-Feb-1994", -1, 0},
    {"", -1, 0},
};
/* clang-format on */

static void
test_date(void **state)
{
	const struct date_case *tc = *state;
	int32_t day = 12345;

	assert_int_equal(imap_match_date_parse(tc->text, &day), tc->ret);
	if (tc->ret == 0)
		assert_int_equal(day, tc->day);
}

/* ---- parsing search programs ---- */

/* Parses "t SEARCH <keys>" with the real command parser (8-bit quoted strings allowed, as with
 * RFC 6855, so the tables can quote UTF-8; literals work either way). */
static const struct imap_command *
parse_search(struct imap_parser **p_r, const char *keys)
{
	static const struct imap_parser_limits limits = {.utf8 = true};
	size_t len = strlen("t SEARCH ") + strlen(keys) + 2, off = 0, used;
	char *in = malloc(len + 1);
	int ret;

	snprintf(in, len + 1, "t SEARCH %s\r\n", keys);
	*p_r = imap_parser_new(&limits);
	for (;;) {
		ret = imap_parser_feed(*p_r, in + off, len - off, &used);
		off += used;
		if (ret != IMAP_PARSE_LITERAL_CONTINUE)
			break;
	}
	free(in);
	assert_int_equal(ret, IMAP_PARSE_COMMAND);
	return imap_parser_command(*p_r);
}

struct bad_case {
	const char *keys;
	enum imap_match_error kind;
	const char *text; /* part of the error message */
};

static const struct bad_case bad_cases[] = {
    {"FROBNICATE", IMAP_MATCH_ERR_SYNTAX, "Unknown search key FROBNICATE"},
    {"SEEN FOO", IMAP_MATCH_ERR_SYNTAX, "Unknown search key FOO"},
    {"BEFORE", IMAP_MATCH_ERR_SYNTAX, "Missing argument for BEFORE"},
    {"BEFORE 32-Jan-2024", IMAP_MATCH_ERR_SYNTAX, "BEFORE needs a date"},
    {"SENTON \"29-Feb-2023\"", IMAP_MATCH_ERR_SYNTAX, "SENTON needs a date"},
    {"SINCE (1-Jan-2024)", IMAP_MATCH_ERR_SYNTAX, "SINCE needs a date"},
    {"LARGER x", IMAP_MATCH_ERR_SYNTAX, "LARGER needs a number"},
    {"SMALLER", IMAP_MATCH_ERR_SYNTAX, "Missing argument for SMALLER"},
    {"HEADER X-Foo", IMAP_MATCH_ERR_SYNTAX, "Missing argument for HEADER"},
    {"HEADER \"\" x", IMAP_MATCH_ERR_SYNTAX, "field name"},
    {"HEADER \"a:b\" x", IMAP_MATCH_ERR_SYNTAX, "field name"},
    {"SUBJECT", IMAP_MATCH_ERR_SYNTAX, "Missing argument for SUBJECT"},
    {"SUBJECT (x)", IMAP_MATCH_ERR_SYNTAX, "SUBJECT needs a string"},
    {"BODY {3}\r\n\xff\xfe\xfd", IMAP_MATCH_ERR_SYNTAX, "not valid UTF-8"},
    {"KEYWORD", IMAP_MATCH_ERR_SYNTAX, "Missing argument for KEYWORD"},
    {"NOT", IMAP_MATCH_ERR_SYNTAX, "Missing argument for NOT"},
    {"OR SEEN", IMAP_MATCH_ERR_SYNTAX, "Missing argument for OR"},
    {"OR", IMAP_MATCH_ERR_SYNTAX, "Missing argument for OR"},
    {"()", IMAP_MATCH_ERR_SYNTAX, "Empty search key list"},
    {"(SEEN ())", IMAP_MATCH_ERR_SYNTAX, "Empty search key list"},
    {"\"SEEN\"", IMAP_MATCH_ERR_SYNTAX, "Invalid search key"},
    {"NIL", IMAP_MATCH_ERR_SYNTAX, "Invalid search key"},
    {"UID", IMAP_MATCH_ERR_SYNTAX, "Missing argument for UID"},
    {"UID 0", IMAP_MATCH_ERR_SYNTAX, ""},
    {"UID x", IMAP_MATCH_ERR_SYNTAX, ""},
    {"1:*:*", IMAP_MATCH_ERR_SYNTAX, ""},
    {"0", IMAP_MATCH_ERR_SYNTAX, ""},
    {"1,", IMAP_MATCH_ERR_SYNTAX, ""},
    {"MODSEQ", IMAP_MATCH_ERR_SYNTAX, "Missing argument for MODSEQ"},
    {"MODSEQ x", IMAP_MATCH_ERR_SYNTAX, "MODSEQ needs a number"},
    {"MODSEQ 9223372036854775808", IMAP_MATCH_ERR_SYNTAX, "MODSEQ needs a number"},
    {"MODSEQ \"/flags/\\\\Seen\" bogus 5", IMAP_MATCH_ERR_SYNTAX, "entry type"},
    {"MODSEQ \"/flags/\\\\Seen\" all", IMAP_MATCH_ERR_SYNTAX, "entry type"},
    {"MODSEQ \"/other\" all 5", IMAP_MATCH_ERR_SYNTAX, "invalid entry name"},
};

static void
test_bad(void **state)
{
	const struct bad_case *tc = *state;
	struct imap_parser *p;
	const struct imap_command *cmd = parse_search(&p, tc->keys);
	struct imap_match *m = (struct imap_match *)1;
	enum imap_match_error kind = 99;
	char error[128];

	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)),
	                 -1);
	assert_null(m);
	assert_int_equal(kind, tc->kind);
	assert_true(error[0] != '\0');
	if (strstr(error, tc->text) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", error, tc->text);
	imap_parser_free(&p);
}

/* Builds prefix, count times unit, then suffix, and checks the outcome. */
static void
check_repeat(const char *prefix, const char *unit, size_t count, const char *suffix, int want,
             enum imap_match_error kind)
{
	size_t size = strlen(prefix) + strlen(unit) * count + strlen(suffix) + 1;
	char *keys = malloc(size);
	struct imap_parser *p;
	const struct imap_command *cmd;
	struct imap_match *m;
	enum imap_match_error k = 99;
	char error[128];

	strcpy(keys, prefix);
	for (size_t i = 0; i < count; i++)
		strcat(keys, unit);
	strcat(keys, suffix);
	cmd = parse_search(&p, keys);
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &k, error, sizeof(error)),
	                 want);
	if (want < 0)
		assert_int_equal(k, kind);
	imap_match_free(&m);
	imap_parser_free(&p);
	free(keys);
}

static void
test_limits(void **state)
{
	(void)state;
	/* NOT NOT ... NOT ALL: nesting without parentheses is bounded too. */
	check_repeat("", "NOT ", IMAP_MATCH_DEPTH_MAX, "ALL", 0, 0);
	check_repeat("", "NOT ", IMAP_MATCH_DEPTH_MAX + 1, "ALL", -1, IMAP_MATCH_ERR_LIMIT);
	check_repeat("", "NOT ", 5000, "ALL", -1, IMAP_MATCH_ERR_LIMIT);
	check_repeat("", "OR ALL ", 2000, "ALL", -1, IMAP_MATCH_ERR_LIMIT);
	check_repeat("SEEN", " 1", IMAP_MATCH_NODES_MAX - 2, "", 0, 0);
	check_repeat("SEEN", " 1", IMAP_MATCH_NODES_MAX + 10, "", -1, IMAP_MATCH_ERR_LIMIT);
	check_repeat("SEEN", " BODY x", IMAP_MATCH_TEXT_KEYS_MAX, "", 0, 0);
	check_repeat("SEEN", " TEXT x", IMAP_MATCH_TEXT_KEYS_MAX + 1, "", -1, IMAP_MATCH_ERR_LIMIT);
}

static void
test_limits_depth_ok(void **state)
{
	struct imap_parser *p;
	const struct imap_command *cmd = parse_search(&p, "NOT NOT NOT (NOT (OR SEEN (NOT ALL)))");
	struct imap_match *m;
	enum imap_match_error k;
	char error[128];

	(void)state;
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &k, error, sizeof(error)), 0);
	imap_match_free(&m);
	imap_parser_free(&p);
}

/* ---- evaluation against real messages ---- */

static const char msg1[] = "From: Alice Example <alice@example.test>\r\n"
                           "To: Bob <bob@example.test>\r\n"
                           "Cc: carol@example.test\r\n"
                           "Subject: Hello world\r\n"
                           "Date: Mon, 1 Jan 2024 23:30:00 -0500\r\n"
                           "Message-ID: <m1@example.test>\r\n"
                           "X-Mailer: TestMailer 1.0\r\n"
                           "\r\n"
                           "The quick brown fox\r\njumps over the lazy dog.\r\n";

static const char msg2[] = "From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@example.de>\r\n"
                           "To: alice@example.test\r\n"
                           "Bcc: secret@example.test\r\n"
                           "Subject: =?UTF-8?B?R3LDvMOfZQ==?= aus =?ISO-8859-1?Q?K=F6ln?=\r\n"
                           "Date: Thu, 15 Feb 2024 10:00:00 +0100\r\n"
                           "MIME-Version: 1.0\r\n"
                           "Content-Type: text/plain; charset=iso-8859-1\r\n"
                           "Content-Transfer-Encoding: quoted-printable\r\n"
                           "\r\n"
                           "Un caf=E9 na=EFve =\r\n"
                           "au cr=E8me br=FBl=E9e.\r\n";

/* Base64 of "Straße Ωμέγα and more text\r\n" (UTF-8) and of "needle-in-attachment\r\n". */
static const char msg3[] = "From: dave (the boss) @ (dept) example.test\r\n"
                           "To: alice@example.test\r\n"
                           "Subject: Report\r\n"
                           "X-Priority: 1\r\n"
                           "MIME-Version: 1.0\r\n"
                           "Content-Type: multipart/mixed; boundary=\"BOUND\"\r\n"
                           "\r\n"
                           "preamble is not searched\r\n"
                           "--BOUND\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n"
                           "Content-Transfer-Encoding: base64\r\n"
                           "\r\n"
                           "U3RyYcOfZSDOqc68zq3Os86xIGFuZCBtb3JlIHRleHQNCg==\r\n"
                           "--BOUND\r\n"
                           "Content-Type: text/html; charset=us-ascii\r\n"
                           "\r\n"
                           "<p><b>bold words</b></p>\r\n"
                           "--BOUND\r\n"
                           "Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
                           "Content-Disposition: attachment; filename=\"a.bin\"\r\n"
                           "Content-Transfer-Encoding: base64\r\n"
                           "\r\n"
                           "bmVlZGxlLWluLWF0dGFjaG1lbnQNCg==\r\n"
                           "--BOUND--\r\n";

static const char msg4[] = "From: erin@example.test\r\n"
                           "To: alice@example.test\r\n"
                           "Subject: Fwd: inner\r\n"
                           "Date: Sun, 31 Mar 2024 01:00:00 +1400\r\n"
                           "MIME-Version: 1.0\r\n"
                           "Content-Type: multipart/mixed; boundary=\"B4\"\r\n"
                           "\r\n"
                           "--B4\r\n"
                           "Content-Type: text/plain\r\n"
                           "\r\n"
                           "See below.\r\n"
                           "--B4\r\n"
                           "Content-Type: message/rfc822\r\n"
                           "\r\n"
                           "From: frank@example.test\r\n"
                           "Subject: Inner subject\r\n"
                           "\r\n"
                           "inner body text\r\n"
                           "--B4--\r\n";

static const char *const messages[] = {msg1, msg2, msg3, msg4};
#define NMSG 4

/* Index data (internal dates in UTC; the test runs with TZ=UTC). */
static const struct imap_match_msg index_data[NMSG] = {
    {1, 10, STORE_FLAG_SEEN, false, true, 1000, 1704196800 /* 2024-01-02 12:00 */, 5,
     "$Forwarded Work"},
    {2, 20, STORE_FLAG_FLAGGED | STORE_FLAG_ANSWERED, true, true, 5000,
     1707991200 /* 2024-02-15 10:00 */, 9, NULL},
    {3, 30, STORE_FLAG_DELETED | STORE_FLAG_DRAFT, false, true, 20000,
     1707955200 /* 2024-02-15 00:00 */, 2, "work"},
    {4, 40, 0, true, true, 300, 1711843199 /* 2024-03-30 23:59:59 */, 7, NULL},
};

struct eval_case {
	const char *keys;
	const char *want; /* matching sequence numbers, "1 3" */
};

static const struct eval_case eval_cases[] = {
    {"ALL", "1 2 3 4"},
    {"SEEN", "1"},
    {"UNSEEN", "2 3 4"},
    {"ANSWERED", "2"},
    {"UNANSWERED", "1 3 4"},
    {"FLAGGED", "2"},
    {"UNFLAGGED", "1 3 4"},
    {"DELETED", "3"},
    {"UNDELETED", "1 2 4"},
    {"DRAFT", "3"},
    {"UNDRAFT", "1 2 4"},
    {"RECENT", "2 4"},
    {"OLD", "1 3"},
    {"NEW", "2 4"},
    {"NEW FLAGGED", "2"},
    {"KEYWORD work", "1 3"},
    {"KEYWORD $forwarded", "1"},
    {"UNKEYWORD Work", "2 4"},
    {"KEYWORD Wor", ""},
    {"LARGER 1000", "2 3"},
    {"SMALLER 1000", "4"},
    {"LARGER 999 SMALLER 1001", "1"},
    {"1", "1"},
    {"2:3", "2 3"},
    {"*", "4"},
    {"3:*", "3 4"},
    {"1,4", "1 4"},
    {"5:9", ""},
    {"4:9", "4"},
    {"UID 20", "2"},
    {"UID 25:35", "3"},
    {"UID 100:*", "4"},
    {"UID *", "4"},
    {"UID 1:15,40", "1 4"},
    {"MODSEQ 7", "2 4"},
    {"MODSEQ 0", "1 2 3 4"},
    {"MODSEQ \"/flags/\\\\Seen\" all 9", "2"},
    {"MODSEQ \"/flags/$work\" priv 3", "1 2 4"},
    {"BEFORE 15-Feb-2024", "1"},
    {"ON 15-Feb-2024", "2 3"},
    {"SINCE 15-Feb-2024", "2 3 4"},
    {"ON 30-Mar-2024", "4"},
    {"ON \"2-Jan-2024\"", "1"},
    {"SENTBEFORE 2-Jan-2024", "1"},
    {"SENTON 1-Jan-2024", "1"},
    {"SENTON 2-Jan-2024", ""},
    {"SENTSINCE 15-Feb-2024", "2 4"},
    {"SENTON 31-Mar-2024", "4"},
    {"SENTON 30-Mar-2024", ""},
    {"NOT SENTON 1-Jan-2024", "2 3 4"},
    {"FROM alice", "1"},
    {"FROM ALICE@EXAMPLE.TEST", "1"},
    {"FROM \"Alice Example\"", "1"},
    {"FROM dave@example.test", "3"}, /* the parsed address, comments dropped */
    {"FROM boss", ""},
    {"HEADER From boss", "3"}, /* HEADER still matches the field's text */
    {"FROM \"jörg müller\"", "2"},
    {"FROM \"JÖRG\"", "2"},
    {"FROM joerg@example", "2"},
    {"FROM \"=?iso\"", ""},
    {"TO alice@example.test", "2 3 4"},
    {"TO bob", "1"},
    {"CC carol", "1"},
    {"CC \"\"", "1"},
    {"BCC secret", "2"},
    {"SUBJECT \"grüße\"", "2"},
    {"SUBJECT \"GRÜSSE\"", "2"},
    {"SUBJECT \"aus köln\"", "2"},
    {"SUBJECT hello", "1"},
    {"SUBJECT inner", "4"},
    {"SUBJECT \"\"", "1 2 3 4"},
    {"HEADER X-Mailer testmailer", "1"},
    {"HEADER x-priority \"\"", "3"},
    {"HEADER X-Priority 2", ""},
    {"HEADER Message-ID m1@", "1"},
    {"HEADER Content-Type multipart", "3 4"},
    {"HEADER X-Absent \"\"", ""},
    {"BODY fox", "1"},
    {"BODY \"QUICK BROWN\"", "1"},
    {"BODY \"café\"", "2"},
    {"BODY \"crème brûlée\"", "2"},
    {"BODY =E9", ""},
    {"BODY \"straße\"", "3"},
    {"BODY STRASSE", "3"},
    {"BODY \"ωμέγα\"", "3"},
    {"BODY \"ΩΜΈΓΑ\"", "3"},
    {"BODY \"bold words\"", "3"},
    {"BODY needle-in-attachment", ""},
    {"BODY preamble", ""},
    {"BODY U3RyYcOfZSDOqc68", ""},
    {"BODY \"inner body\"", "4"},
    {"BODY \"inner subject\"", "4"},
    {"BODY \"see below\"", "4"},
    {"BODY hello", ""},
    {"BODY \"\"", "1 2 3 4"},
    {"TEXT hello", "1"},
    {"TEXT fox", "1"},
    {"TEXT \"köln\"", "2"},
    {"TEXT x-priority", "3"},
    {"TEXT \"naïve\"", "2"},
    {"TEXT nothing-anywhere", ""},
    {"BODY {5}\r\ncafé", "2"},
    {"OR SEEN FLAGGED", "1 2"},
    {"OR BODY fox SUBJECT report", "1 3"},
    {"OR (SEEN BODY fox) (DELETED BODY nothing)", "1"},
    {"NOT BODY fox", "2 3 4"},
    {"NOT (OR SEEN DELETED)", "2 4"},
    {"NOT NOT SEEN", "1"},
    {"SEEN BODY fox", "1"},
    {"UNSEEN BODY fox", ""},
    {"OR OR FROM dave TO bob SUBJECT \"grüße\"", "1 2 3"},
    {"(1:2) (2:3)", "2"},
    {"UNDELETED TEXT alice", "1 2 4"},
    {"uid 10:30 not seen larger 4000 body \"ω\"", "3"},
};

/* Evaluates as the server does: index, then header, then whole message while undecided. */
static int
eval_staged(const struct imap_match *m, int i)
{
	struct imap_match_content *c;
	int r = imap_match_eval(m, &index_data[i], NULL);

	if (r >= 0)
		return r;
	c = imap_match_content_from_buffer(messages[i], strlen(messages[i]),
	                                   IMAP_MATCH_NEED_HEADER);
	r = imap_match_eval(m, &index_data[i], c);
	imap_match_content_free(&c);
	if (r >= 0)
		return r;
	c = imap_match_content_from_buffer(messages[i], strlen(messages[i]),
	                                   IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
	r = imap_match_eval(m, &index_data[i], c);
	imap_match_content_free(&c);
	return r;
}

static void
test_eval(void **state)
{
	const struct eval_case *tc = *state;
	struct imap_parser *p;
	const struct imap_command *cmd = parse_search(&p, tc->keys);
	struct imap_match *m;
	enum imap_match_error kind;
	char error[128], got[64] = "";

	if (imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)) < 0)
		fail_msg("parse failed: %s", error);
	imap_match_bind(m, NMSG, 40);
	for (int i = 0; i < NMSG; i++) {
		struct imap_match_content *full =
		    imap_match_content_from_buffer(messages[i], strlen(messages[i]),
		                                   IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
		int staged = eval_staged(m, i), direct = imap_match_eval(m, &index_data[i], full);

		imap_match_content_free(&full);
		assert_true(staged >= 0);
		assert_int_equal(staged, direct);
		if (staged)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%d",
			         got[0] ? " " : "", i + 1);
	}
	assert_string_equal(got, tc->want);
	imap_match_free(&m);
	imap_parser_free(&p);
}

static void
test_needs(void **state)
{
	static const struct {
		const char *keys;
		unsigned needs;
	} cases[] = {
	    {"SEEN 1:* UID 5", 0},
	    {"LARGER 5", IMAP_MATCH_NEED_META},
	    {"NOT ON 1-Jan-2024", IMAP_MATCH_NEED_META},
	    {"SUBJECT x", IMAP_MATCH_NEED_HEADER},
	    {"SENTON 1-Jan-2024", IMAP_MATCH_NEED_HEADER},
	    {"OR SEEN BODY x", IMAP_MATCH_NEED_BODY},
	    {"TEXT x", IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY},
	    {"(MODSEQ 5)", IMAP_MATCH_NEED_MODSEQ},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser *p;
		const struct imap_command *cmd = parse_search(&p, cases[i].keys);
		struct imap_match *m;
		enum imap_match_error kind;
		char error[128];

		assert_int_equal(
		    imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)), 0);
		assert_int_equal(imap_match_needs(m), cases[i].needs);
		imap_match_free(&m);
		imap_parser_free(&p);
	}
}

/* The key the store's search index narrows by: a conjunct every match needs, never under OR or
 * NOT, at least three characters, the longest; none otherwise (the scan then reads every
 * message). */
static void
test_index_key(void **state)
{
	static const struct {
		const char *keys;
		int key; /* -1: none */
		const char *needle;
	} cases[] = {
	    {"SUBJECT hello", STORE_SEARCH_SUBJECT, "hello"},
	    {"SUBJECT HeLLo", STORE_SEARCH_SUBJECT, "hello"},
	    {"SUBJECT STRASSE", STORE_SEARCH_SUBJECT, "strasse"},
	    {"SUBJECT \"Stra\xc3\x9f"
	     "e\"",
	     STORE_SEARCH_SUBJECT, "strasse"},
	    {"FROM carol", STORE_SEARCH_FROM, "carol"},
	    {"TO abc", STORE_SEARCH_TO, "abc"},
	    {"CC abc", STORE_SEARCH_CC, "abc"},
	    {"BCC abc", STORE_SEARCH_BCC, "abc"},
	    {"BODY abc", STORE_SEARCH_BODY, "abc"},
	    {"TEXT abc", STORE_SEARCH_TEXT, "abc"},
	    {"HEADER Subject abc", STORE_SEARCH_SUBJECT, "abc"},
	    {"HEADER From abc", -1, NULL}, /* the text, not the rendered addresses */
	    {"HEADER X-Custom abc", -1, NULL},
	    {"SUBJECT ab", -1, NULL},                   /* two characters */
	    {"SUBJECT \"\xc3\xa9\xc3\xa9\"", -1, NULL}, /* two characters, four bytes */
	    {"SUBJECT \"\"", -1, NULL},
	    {"NOT SUBJECT hello", -1, NULL},
	    {"OR SUBJECT hello BODY hello", -1, NULL},
	    {"SEEN SUBJECT hello", STORE_SEARCH_SUBJECT, "hello"},
	    {"(SEEN (BODY worlds)) UID 1:*", STORE_SEARCH_BODY, "worlds"},
	    {"SUBJECT abc BODY longer NOT TEXT longest", STORE_SEARCH_BODY, "longer"},
	    {"OR SEEN BODY x SUBJECT abcd", STORE_SEARCH_SUBJECT, "abcd"},
	    {"NEW UNSEEN", -1, NULL},
	    {"ALL", -1, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser *p;
		const struct imap_command *cmd = parse_search(&p, cases[i].keys);
		struct imap_match *m;
		enum imap_match_error kind;
		const char *needle;
		char error[128];
		int key, r;

		assert_int_equal(
		    imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)), 0);
		r = imap_match_index_key(m, &key, &needle);
		print_message("# %s -> %d %s\n", cases[i].keys, r ? key : -1,
		              r ? needle : "(none)");
		assert_int_equal(r, cases[i].key >= 0);
		if (r) {
			assert_int_equal(key, cases[i].key);
			assert_string_equal(needle, cases[i].needle);
		}
		imap_match_free(&m);
		imap_parser_free(&p);
	}
}

/* The file path: the header alone from an fd stops at the blank line; the body is bounded. */
static void
test_content_fd(void **state)
{
	char path[] = "/tmp/tern-test-imap-match-XXXXXX";
	int fd = mkstemp(path);
	struct imap_parser *p;
	const struct imap_command *cmd;
	struct imap_match *m;
	struct imap_match_content *c;
	enum imap_match_error kind;
	char error[128];

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, msg2, strlen(msg2)), (ssize_t)strlen(msg2));
	cmd = parse_search(&p, "OR SUBJECT \"köln\" BODY nothing");
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)),
	                 0);
	imap_match_bind(m, NMSG, 40);
	c = imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER);
	assert_non_null(c);
	assert_int_equal(imap_match_eval(m, &index_data[1], c), 1);
	imap_match_content_free(&c);
	imap_match_free(&m);
	imap_parser_free(&p);

	cmd = parse_search(&p, "BODY \"brûlée\"");
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)),
	                 0);
	c = imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER);
	assert_int_equal(imap_match_eval(m, &index_data[1], c), -1);
	imap_match_content_free(&c);
	c = imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
	assert_int_equal(imap_match_eval(m, &index_data[1], c), 1);
	imap_match_content_free(&c);
	imap_match_free(&m);
	imap_parser_free(&p);
	close(fd);
	/* A closed descriptor cannot be read. */
	assert_null(imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER));
}

/* A body past IMAP_MATCH_BODY_MAX: text beyond the bound is not searched, text before is. */
static void
test_body_bound(void **state)
{
	const char *head = "Subject: big\r\n\r\nstart-marker ";
	size_t fill = IMAP_MATCH_BODY_MAX + 1024, hlen = strlen(head);
	char *data = malloc(hlen + fill + 32);
	struct imap_match_content *c;
	struct imap_parser *p;
	const struct imap_command *cmd;
	struct imap_match *m;
	enum imap_match_error kind;
	char error[128];
	struct imap_match_msg msg = {1, 1, 0, false, true, 1, 0, 1, NULL};

	(void)state;
	memcpy(data, head, hlen);
	memset(data + hlen, 'a', fill);
	memcpy(data + hlen + fill, " end-marker\r\n", 14);
	c = imap_match_content_from_buffer(data, hlen + fill + 13,
	                                   IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
	cmd = parse_search(&p, "BODY start-marker");
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)),
	                 0);
	assert_int_equal(imap_match_eval(m, &msg, c), 1);
	imap_match_free(&m);
	imap_parser_free(&p);
	cmd = parse_search(&p, "BODY end-marker");
	assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)),
	                 0);
	assert_int_equal(imap_match_eval(m, &msg, c), 0);
	imap_match_free(&m);
	imap_parser_free(&p);
	imap_match_content_free(&c);
	free(data);
}

/* ---- several threads at once (ternd reads message files on its worker threads) ---- */

#define THREADS 4
#define THREAD_ROUNDS 25
#define NEVAL (sizeof(eval_cases) / sizeof(eval_cases[0]))

struct thread_ctx {
	struct imap_match *const *programs; /* NEVAL, shared by every thread, read-only */
	const int *fds;                     /* NMSG files, shared */
	int want[NEVAL][NMSG];
	unsigned mismatches;
	unsigned evaluations;
};

/* eval_staged, but from the message file as the server reads it. */
static int
eval_staged_fd(const struct imap_match *m, int i, int fd)
{
	struct imap_match_content *c;
	int r = imap_match_eval(m, &index_data[i], NULL);

	if (r >= 0)
		return r;
	c = imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER);
	r = c != NULL ? imap_match_eval(m, &index_data[i], c) : -2;
	imap_match_content_free(&c);
	if (r != -1)
		return r;
	c = imap_match_content_from_fd(fd, IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
	r = c != NULL ? imap_match_eval(m, &index_data[i], c) : -2;
	imap_match_content_free(&c);
	return r;
}

static void *
thread_main(void *arg)
{
	struct thread_ctx *ctx = arg;

	for (int round = 0; round < THREAD_ROUNDS; round++)
		for (size_t k = 0; k < NEVAL; k++)
			for (int i = 0; i < NMSG; i++) {
				ctx->evaluations++;
				if (eval_staged_fd(ctx->programs[k], i, ctx->fds[i]) !=
				    ctx->want[k][i])
					ctx->mismatches++;
			}
	return NULL;
}

static void
test_threads(void **state)
{
	struct imap_match *programs[NEVAL];
	struct imap_parser *parsers[NEVAL];
	struct thread_ctx ctx[THREADS];
	pthread_t tid[THREADS];
	int fds[NMSG], want[NEVAL][NMSG];

	(void)state;
	for (int i = 0; i < NMSG; i++) {
		char path[] = "/tmp/tern-test-imap-match-XXXXXX";

		fds[i] = mkstemp(path);
		assert_true(fds[i] >= 0);
		unlink(path);
		assert_int_equal(write(fds[i], messages[i], strlen(messages[i])),
		                 (ssize_t)strlen(messages[i]));
	}
	for (size_t k = 0; k < NEVAL; k++) {
		const struct imap_command *cmd = parse_search(&parsers[k], eval_cases[k].keys);
		enum imap_match_error kind;
		char error[128];

		assert_int_equal(imap_match_parse(cmd->args, cmd->nargs, &programs[k], &kind, error,
		                                  sizeof(error)),
		                 0);
		imap_match_bind(programs[k], NMSG, 40);
		/* The answers on this thread alone first. */
		for (int i = 0; i < NMSG; i++) {
			want[k][i] = eval_staged_fd(programs[k], i, fds[i]);
			assert_true(want[k][i] >= 0);
		}
	}
	for (int t = 0; t < THREADS; t++) {
		ctx[t] = (struct thread_ctx){.programs = programs, .fds = fds};
		memcpy(ctx[t].want, want, sizeof(want));
		assert_int_equal(pthread_create(&tid[t], NULL, thread_main, &ctx[t]), 0);
	}
	for (int t = 0; t < THREADS; t++) {
		assert_int_equal(pthread_join(tid[t], NULL), 0);
		assert_int_equal(ctx[t].evaluations, THREAD_ROUNDS * NEVAL * NMSG);
		assert_int_equal(ctx[t].mismatches, 0);
	}
	for (size_t k = 0; k < NEVAL; k++) {
		imap_match_free(&programs[k]);
		imap_parser_free(&parsers[k]);
	}
	for (int i = 0; i < NMSG; i++)
		close(fds[i]);
}

int
main(void)
{
	char esc[128];

	setenv("TZ", "UTC", 1);
	tzset();
	for (size_t i = 0; i < sizeof(date_cases) / sizeof(date_cases[0]); i++) {
		escape(esc, sizeof(esc), date_cases[i].text, strlen(date_cases[i].text));
		add_test(test_date, (void *)&date_cases[i], "date \"%s\" -> %s", esc,
		         date_cases[i].ret == 0 ? "valid" : "invalid");
	}
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		escape(esc, sizeof(esc), bad_cases[i].keys, strlen(bad_cases[i].keys));
		add_test(test_bad, (void *)&bad_cases[i], "SEARCH %s -> BAD%s", esc,
		         bad_cases[i].kind == IMAP_MATCH_ERR_LIMIT ? " [LIMIT]" : "");
	}
	add_test(test_limits, NULL, "nesting, key count and text key count are bounded");
	add_test(test_limits_depth_ok, NULL, "moderate nesting of NOT, OR and lists is fine");
	for (size_t i = 0; i < sizeof(eval_cases) / sizeof(eval_cases[0]); i++) {
		escape(esc, sizeof(esc), eval_cases[i].keys, strlen(eval_cases[i].keys));
		add_test(test_eval, (void *)&eval_cases[i], "SEARCH %s -> (%s)", esc,
		         eval_cases[i].want);
	}
	add_test(test_needs, NULL, "what each program needs beyond the index");
	add_test(test_index_key, NULL,
	         "the key the search index narrows by, only when every match needs it");
	add_test(test_content_fd, NULL, "content from a file: header only, then the body");
	add_test(test_body_bound, NULL, "decoded body text is searched up to IMAP_MATCH_BODY_MAX");
	add_test(test_threads, NULL,
	         "%d threads evaluate every table search from the files at once: same answers",
	         THREADS);
	return _cmocka_run_group_tests("imap_match", tests, ntests, NULL, NULL);
}
