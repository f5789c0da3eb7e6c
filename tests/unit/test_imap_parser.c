/* Unit tests for imap_parser: a table of client input (valid commands of every RFC 3501 shape,
 * broken ones and hostile floods) with the events the parser must produce, written as a
 * transcript. Every row is its own named cmocka test and is fed whole, in every two-way split
 * (or 97 spread ones for long inputs) and one byte at a time, with identical transcripts and
 * memory within the bound. Then the argument types, the helpers and sequence sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_parser.h"

#include "table.h"

/* ---- the transcript driver ---- */

enum limits_id { LIM_DEFAULT = 0, LIM_SMALL, LIM_UTF8 };

static const struct imap_parser_limits limits_small = {
    .line_max = 64,
    .literal_max = 16,
    .command_max = 128,
    .max_args = 8,
    .max_depth = 4,
    .discard_max = 256,
    .stream_min = 8,
    .stream_max = 32,
};
static const struct imap_parser_limits limits_utf8 = {.utf8 = true, .literal_nul = true};

static const struct imap_parser_limits *
limits_of(enum limits_id id)
{
	return id == LIM_SMALL ? &limits_small : id == LIM_UTF8 ? &limits_utf8 : NULL;
}

struct strbuf {
	char *s;
	size_t len, cap;
};

static void
sb_put(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		assert_non_null(b->s);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(struct strbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* Appends one event to the transcript, " | " between events. */
static void
event(struct strbuf *t, const char *s)
{
	if (t->len > 0)
		sb_str(t, " | ");
	sb_str(t, s);
}

/* Writes the streamed literal data collected so far as D:"..." */
static void
flush_data(struct strbuf *t, struct strbuf *data, bool *have)
{
	char esc[4096];
	size_t n = 0;

	if (!*have)
		return;
	for (size_t i = 0; i < data->len && n + 8 < sizeof(esc); i++) {
		unsigned char c = (unsigned char)data->s[i];

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			n += (size_t)snprintf(esc + n, sizeof(esc) - n, "\\x%02x", c);
		else
			esc[n++] = (char)c;
	}
	esc[n] = '\0';
	if (t->len > 0)
		sb_str(t, " | ");
	sb_str(t, "D:\"");
	sb_str(t, esc);
	sb_str(t, "\"");
	data->len = 0;
	*have = false;
}

/* Feeds in as the given chunks and returns the transcript (to free). The driver plays the
 * server: after an IDLE command it asks for a raw line, and it refuses the literal of a command
 * tagged "refuse". */
static char *
run(enum limits_id lim, const char *in, size_t len, const size_t *chunks, size_t nchunks)
{
	struct imap_parser *p = imap_parser_new(limits_of(lim));
	size_t bound = imap_parser_memory_bound(limits_of(lim));
	struct strbuf t = {NULL, 0, 0}, data = {NULL, 0, 0};
	bool have_data = false, dead = false;
	size_t off = 0;

	sb_str(&t, "");
	for (size_t c = 0; c < nchunks && !dead; c++) {
		const char *chunk = in + off;
		size_t left = chunks[c];

		off += chunks[c];
		for (;;) {
			size_t used = 0;
			int ret = imap_parser_feed(p, chunk, left, &used);

			assert_true(used <= left);
			assert_true(imap_parser_memory(p) <= bound);
			chunk += used;
			left -= used;
			if (ret == IMAP_PARSE_NEED_MORE) {
				assert_int_equal(left, 0);
				break;
			}
			if (ret == IMAP_PARSE_LITERAL_DATA) {
				const char *d;
				size_t dlen;

				imap_parser_literal_data(p, &d, &dlen);
				/* The chunk is the end of what was consumed. */
				assert_true(dlen > 0 && dlen <= used && d + dlen == chunk);
				sb_put(&data, d, dlen);
				have_data = true;
				continue;
			}
			flush_data(&t, &data, &have_data);
			if (ret == IMAP_PARSE_COMMAND) {
				const struct imap_command *cmd = imap_parser_command(p);
				char *dump;

				assert_non_null(cmd);
				dump = imap_command_dump(cmd);
				event(&t, "C:");
				sb_str(&t, dump);
				if (strcmp(cmd->name, "IDLE") == 0)
					imap_parser_expect_line(p);
				free(dump);
			} else if (ret == IMAP_PARSE_LITERAL_CONTINUE) {
				if (strcmp(imap_parser_tag(p), "refuse") == 0) {
					imap_parser_literal_refuse(p);
					event(&t, "refused");
				} else {
					event(&t, "+");
				}
			} else if (ret == IMAP_PARSE_LINE) {
				size_t llen;
				const char *l = imap_parser_line(p, &llen);
				char esc[256];

				escape(esc, sizeof(esc), l, llen);
				event(&t, "L:");
				sb_str(&t, esc);
			} else {
				const struct imap_parse_error *e = imap_parser_error(p);
				char msg[512];

				assert_int_equal(ret, IMAP_PARSE_ERROR);
				snprintf(msg, sizeof(msg), "E:%s%s%s%s %s %s%s", e->reply,
				         e->resp_code != NULL ? " [" : "",
				         e->resp_code != NULL ? e->resp_code : "",
				         e->resp_code != NULL ? "]" : "",
				         e->tag != NULL ? e->tag : "*", e->text,
				         e->fatal ? " fatal" : "");
				event(&t, msg);
				if (e->fatal) {
					/* A dead parser takes nothing more. */
					assert_int_equal(imap_parser_feed(p, "a", 1, &used),
					                 IMAP_PARSE_ERROR);
					assert_int_equal(used, 0);
					dead = true;
					break;
				}
			}
		}
	}
	flush_data(&t, &data, &have_data);
	imap_parser_free(&p);
	assert_null(p);
	free(data.s);
	return t.s;
}

/* ---- the table ---- */

struct feed_case {
	const char *what;
	enum limits_id lim;
	struct bytes pre;
	struct bytes rep; /* repeated count times after pre */
	size_t count;
	struct bytes post;
	const char *want;
};

#define NONE                                                                                       \
	{                                                                                          \
		"", 0                                                                              \
	}

/* clang-format off */
static const struct feed_case feed_cases[] = {
	/* Valid commands of every shape. */
	{"LOGIN quoted", LIM_DEFAULT, B("a1 LOGIN \"joe\" \"pa ss\\\"w\\\\\"\r\n"), NONE, 0, NONE,
	 "C:a1 LOGIN \"joe\" \"pa ss\\\"w\\\\\""},
	{"LOGIN atoms, lower case", LIM_DEFAULT, B("a1 login joe secret\r\n"), NONE, 0, NONE,
	 "C:a1 LOGIN joe secret"},
	{"LOGIN synchronizing literals", LIM_DEFAULT, B("a2 LOGIN {3}\r\njoe {4}\r\npass\r\n"), NONE, 0,
	 NONE, "+ | + | C:a2 LOGIN {3}\"joe\" {4}\"pass\""},
	{"LOGIN LITERAL+ with CRLF in the data", LIM_DEFAULT,
	 B("a3 LOGIN {3+}\r\njoe {4+}\r\np\r\nx\r\n"), NONE, 0, NONE,
	 "C:a3 LOGIN {3+}\"joe\" {4+}\"p\\x0d\\x0ax\""},
	{"empty literals", LIM_DEFAULT, B("a LOGIN {0}\r\n {0+}\r\n\r\n"), NONE, 0, NONE,
	 "+ | C:a LOGIN {0}\"\" {0+}\"\""},
	{"SELECT quoted INBOX", LIM_DEFAULT, B("a4 select \"INBOX\"\r\n"), NONE, 0, NONE,
	 "C:a4 SELECT \"INBOX\""},
	{"SELECT with brackets in an atom", LIM_DEFAULT, B("a SELECT [Gmail]/Sent\r\n"), NONE, 0, NONE,
	 "C:a SELECT [Gmail]/Sent"},
	{"FETCH header fields with partial", LIM_DEFAULT,
	 B("a5 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512>)\r\n"), NONE, 0, NONE,
	 "C:a5 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512>)"},
	{"UID FETCH", LIM_DEFAULT, B("a6 uid fetch 100:200 (UID FLAGS BODY[] RFC822.SIZE)\r\n"), NONE,
	 0, NONE, "C:a6 UID FETCH 100:200 (UID FLAGS BODY[] RFC822.SIZE)"},
	{"FETCH sections with quoted names and MIME", LIM_DEFAULT,
	 B("a FETCH 2 (BODY[HEADER.FIELDS.NOT (\"X-A]\" Y)] BODY[1.2.MIME] BINARY[1]<5.10>)\r\n"),
	 NONE, 0, NONE,
	 "C:a FETCH 2 (BODY[HEADER.FIELDS.NOT (\"X-A]\" Y)] BODY[1.2.MIME] BINARY[1]<5.10>)"},
	{"FETCH single item", LIM_DEFAULT, B("a FETCH 3 body[text]\r\n"), NONE, 0, NONE,
	 "C:a FETCH 3 body[text]"},
	{"STORE +FLAGS.SILENT", LIM_DEFAULT, B("a7 STORE 2,4:7,9 +FLAGS.SILENT (\\Seen \\Deleted)\r\n"),
	 NONE, 0, NONE, "C:a7 STORE 2,4:7,9 +FLAGS.SILENT (\\Seen \\Deleted)"},
	{"UID STORE with empty flag list", LIM_DEFAULT, B("a UID STORE 5 FLAGS ()\r\n"), NONE, 0, NONE,
	 "C:a UID STORE 5 FLAGS ()"},
	{"SEARCH nested OR/NOT", LIM_DEFAULT,
	 B("a8 SEARCH CHARSET UTF-8 OR (FROM \"bob\" NOT SEEN) (SINCE 1-Feb-1994 (LARGER 100)) "
	   "UNDELETED\r\n"), NONE, 0, NONE,
	 "C:a8 SEARCH CHARSET UTF-8 OR (FROM \"bob\" NOT SEEN) (SINCE 1-Feb-1994 (LARGER 100)) "
	 "UNDELETED"},
	{"UID SEARCH with a literal", LIM_DEFAULT, B("a UID SEARCH SUBJECT {4}\r\nh\xc3\xa9!\r\n"),
	 NONE, 0, NONE, "+ | C:a UID SEARCH SUBJECT {4}\"h\\xc3\\xa9!\""},
	{"APPEND flags, date-time, literal", LIM_DEFAULT,
	 B("a9 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {12}\r\n"
	   "Hello\r\nWorld\r\n"), NONE, 0, NONE,
	 "+ | C:a9 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" "
	 "{12}\"Hello\\x0d\\x0aWorld\""},
	{"APPEND empty flags, LITERAL+", LIM_DEFAULT, B("a APPEND box () {1+}\r\nx\r\n"), NONE, 0,
	 NONE, "C:a APPEND box () {1+}\"x\""},
	{"APPEND streamed literal", LIM_SMALL, B("a APPEND INBOX {10}\r\n0123456789\r\nb NOOP\r\n"),
	 NONE, 0, NONE, "+ | D:\"0123456789\" | C:a APPEND INBOX {10 stream} | C:b NOOP"},
	{"APPEND streamed LITERAL+, small one buffered", LIM_SMALL,
	 B("a APPEND INBOX (\\Seen) {2+}\r\nab {9+}\r\n12\r\n45\r\n9\r\n"), NONE, 0, NONE,
	 "D:\"12\\x0d\\x0a45\\x0d\\x0a9\" | C:a APPEND INBOX (\\Seen) {2+}\"ab\" {9 stream}"},
	{"APPEND streamed over stream_max", LIM_SMALL, B("a APPEND INBOX {33}\r\nb NOOP\r\n"), NONE, 0,
	 NONE, "E:NO [TOOBIG] a Literal too large | C:b NOOP"},
	{"literal refused by the caller", LIM_DEFAULT, B("refuse APPEND nobox {5}\r\nb NOOP\r\n"), NONE,
	 0, NONE, "refused | C:b NOOP"},
	{"AUTHENTICATE PLAIN with SASL-IR", LIM_DEFAULT, B("a10 AUTHENTICATE PLAIN AGpvZQBwYXNz\r\n"),
	 NONE, 0, NONE, "C:a10 AUTHENTICATE PLAIN AGpvZQBwYXNz"},
	{"AUTHENTICATE PLAIN empty initial response", LIM_DEFAULT, B("a AUTHENTICATE PLAIN =\r\n"),
	 NONE, 0, NONE, "C:a AUTHENTICATE PLAIN ="},
	{"IDLE then DONE as a raw line", LIM_DEFAULT, B("a12 IDLE\r\nDONE\r\na13 NOOP\r\n"), NONE, 0,
	 NONE, "C:a12 IDLE | L:DONE | C:a13 NOOP"},
	{"LIST with quoted pattern", LIM_DEFAULT, B("a14 LIST \"\" \"*\"\r\n"), NONE, 0, NONE,
	 "C:a14 LIST \"\" \"*\""},
	{"LIST with atom wildcards", LIM_DEFAULT, B("a LIST \"\" %/*\r\n"), NONE, 0, NONE,
	 "C:a LIST \"\" %/*"},
	{"STATUS", LIM_DEFAULT, B("a16 STATUS INBOX (MESSAGES UIDNEXT)\r\n"), NONE, 0, NONE,
	 "C:a16 STATUS INBOX (MESSAGES UIDNEXT)"},
	{"ENABLE", LIM_DEFAULT, B("a17 ENABLE CONDSTORE UTF8=ACCEPT\r\n"), NONE, 0, NONE,
	 "C:a17 ENABLE CONDSTORE UTF8=ACCEPT"},
	{"ID list", LIM_DEFAULT, B("a18 ID (\"name\" \"x\")\r\n"), NONE, 0, NONE,
	 "C:a18 ID (\"name\" \"x\")"},
	{"ID NIL", LIM_DEFAULT, B("a19 ID nil\r\n"), NONE, 0, NONE, "C:a19 ID nil"},
	{"UID COPY, UID EXPUNGE, MOVE", LIM_DEFAULT,
	 B("a UID COPY 1:3 Trash\r\nb UID EXPUNGE 1:3\r\nc MOVE 4 \"Sent Items\"\r\n"), NONE, 0, NONE,
	 "C:a UID COPY 1:3 Trash | C:b UID EXPUNGE 1:3 | C:c MOVE 4 \"Sent Items\""},
	{"pipelined, blank lines, bare LF", LIM_DEFAULT,
	 B("\r\na1 NOOP\r\n\r\n\na2 CAPABILITY\na3 LOGOUT\r\n"), NONE, 0, NONE,
	 "C:a1 NOOP | C:a2 CAPABILITY | C:a3 LOGOUT"},
	{"tag with brackets and dots", LIM_DEFAULT, B("A.1[x] CHECK\r\n"), NONE, 0, NONE,
	 "C:A.1[x] CHECK"},
	{"nesting at the limit (32)", LIM_DEFAULT, B("a SEARCH "), B("("), 32, B("ALL"), NULL},
	{"UTF-8 quoted with utf8 on", LIM_UTF8, B("a SELECT \"\xc3\x9cn\xc3\xaf" "code\"\r\n"), NONE, 0,
	 NONE, "C:a SELECT \"\\xc3\\x9cn\\xc3\\xafcode\""},
	{"NUL in literal with literal_nul on", LIM_UTF8, B("a X {3+}\r\na\0b\r\n"), NONE, 0, NONE,
	 "C:a X {3+}\"a\\x00b\""},
	/* literal8 (RFC 3516): ~{n} and ~{n+}, NULs allowed even with literal_nul off. */
	{"literal8 LITERAL+ with NUL", LIM_DEFAULT, B("a X ~{3+}\r\na\0b\r\n"), NONE, 0, NONE,
	 "C:a X ~{3+}\"a\\x00b\""},
	{"literal8 synchronizing", LIM_DEFAULT, B("a X ~{2}\r\n\0\0 y\r\n"), NONE, 0, NONE,
	 "+ | C:a X ~{2}\"\\x00\\x00\" y"},
	{"literal8 in a list, empty", LIM_DEFAULT, B("a X (~{0+}\r\n)\r\n"), NONE, 0, NONE,
	 "C:a X (~{0+}\"\")"},
	{"atoms starting with ~ stay atoms", LIM_DEFAULT, B("a SELECT ~box ~\r\n"), NONE, 0, NONE,
	 "C:a SELECT ~box ~"},
	{"~ then { after more atom chars", LIM_DEFAULT, B("a SELECT ~x{3}\r\nb NOOP\r\n"), NONE, 0,
	 NONE, "E:BAD a Invalid character in atom | C:b NOOP"},
	{"NUL in a plain literal still refused", LIM_DEFAULT, B("a X {3+}\r\na\0b\r\nb NOOP\r\n"), NONE,
	 0, NONE, "E:BAD a NUL in literal | C:b NOOP"},
	{"APPEND literal8 message streamed", LIM_SMALL,
	 B("a APPEND box ~{9+}\r\n\0message!\r\n"), NONE, 0, NONE,
	 "D:\"\\x00message!\" | C:a APPEND box ~{9 stream}"},
	/* APPEND: only message literals stream, not a mailbox name given as a literal; CATENATE's
	 * TEXT literals stream, its URLs do not. */
	{"APPEND mailbox literal not streamed", LIM_SMALL,
	 B("a APPEND {9+}\r\nSent Mail {9+}\r\nmessage!!\r\n"), NONE, 0, NONE,
	 "D:\"message!!\" | C:a APPEND {9+}\"Sent Mail\" {9 stream}"},
	{"APPEND two messages stream", LIM_SMALL,
	 B("a APPEND box {9+}\r\nmessage!1 (\\Seen) {9+}\r\nmessage!2\r\n"), NONE, 0, NONE,
	 "D:\"message!1message!2\" | C:a APPEND box {9 stream} (\\Seen) {9 stream}"},
	{"CATENATE: TEXT streams, a URL literal does not", LIM_SMALL,
	 B("a APPEND b CATENATE (TEXT {9+}\r\nmessage!! URL {9+}\r\n/x/;UID=1)\r\n"), NONE, 0,
	 NONE, "D:\"message!!\" | C:a APPEND b CATENATE (TEXT {9 stream} URL {9+}\"/x/;UID=1\")"},
	/* RFC 6855 4: APPEND's UTF8 (literal8) streams its literal8; other lists' literals do not. */
	{"APPEND UTF8 (literal8) streams", LIM_SMALL,
	 B("a APPEND box (\\Seen) UTF8 (~{8+}\r\nm\xc3\xa9ssage)\r\n"), NONE, 0, NONE,
	 "D:\"m\\xc3\\xa9ssage\" | C:a APPEND box (\\Seen) UTF8 (~{8 stream})"},
	{"APPEND: a literal in a list not after UTF8 does not stream", LIM_SMALL,
	 B("a APPEND box X (~{9+}\r\nmessage!!)\r\n"), NONE, 0, NONE,
	 "C:a APPEND box X (~{9+}\"message!!\")"},
	{"APPEND: the second literal of UTF8 (...) does not stream", LIM_SMALL,
	 B("a APPEND box UTF8 (x ~{9+}\r\nmessage!!)\r\n"), NONE, 0, NONE,
	 "C:a APPEND box UTF8 (x ~{9+}\"message!!\")"},
	{"CATENATE: UTF8 (literal8) streams", LIM_SMALL,
	 B("a APPEND b CATENATE (UTF8 (~{9+}\r\nmessage!!) TEXT {9+}\r\nmessage!2)\r\n"), NONE, 0,
	 NONE, "D:\"message!!message!2\" | C:a APPEND b CATENATE (UTF8 (~{9 stream}) TEXT {9 stream})"},
	{"UTF8 (...) outside APPEND's message positions does not stream", LIM_SMALL,
	 B("a APPEND b X (UTF8 (~{9+}\r\nmessage!!))\r\n"), NONE, 0, NONE,
	 "C:a APPEND b X (UTF8 (~{9+}\"message!!\"))"},
	{"many small literals under the limit", LIM_DEFAULT, B("a1 X"), B(" {1+}\r\nx"), 2000,
	 B("\r\n"), NULL},

	/* Broken commands: each is answered and the parser resynchronizes on the next line. */
	{"bad tag char *", LIM_DEFAULT, B("a*1 NOOP\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD * Invalid tag | C:b NOOP"},
	{"bad tag +", LIM_DEFAULT, B("+ NOOP\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD * Invalid tag | C:b NOOP"},
	{"tag too long", LIM_DEFAULT, B(""), B("t"), 65, B(" NOOP\r\nb NOOP\r\n"),
	 "E:BAD * Tag too long | C:b NOOP"},
	{"leading space", LIM_DEFAULT, B(" a NOOP\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD * Missing tag | C:b NOOP"},
	{"missing command", LIM_DEFAULT, B("a1\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Missing command | C:b NOOP"},
	{"UID without command", LIM_DEFAULT, B("a1 UID \r\n"), NONE, 0, NONE,
	 "E:BAD a1 Missing command"},
	{"bad command name", LIM_DEFAULT, B("a1 NO*OP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid command name"},
	{"command name too long", LIM_DEFAULT, B("a1 "), B("X"), 33, B("\r\n"),
	 "E:BAD a1 Command name too long"},
	{"missing space between strings", LIM_DEFAULT, B("a1 LOGIN \"a\"\"b\"\r\nb NOOP\r\n"), NONE, 0,
	 NONE, "E:BAD a1 Missing space | C:b NOOP"},
	{"missing space after list", LIM_DEFAULT, B("a1 STATUS INBOX (MESSAGES)UIDNEXT\r\n"), NONE, 0,
	 NONE, "E:BAD a1 Missing space"},
	{"paren inside an atom", LIM_DEFAULT, B("a1 FETCH 1(FLAGS)\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in atom"},
	{"double space", LIM_DEFAULT, B("a1 SELECT  INBOX\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Missing argument"},
	{"trailing space", LIM_DEFAULT, B("a1 NOOP \r\n"), NONE, 0, NONE, "E:BAD a1 Missing argument"},
	{"space before )", LIM_DEFAULT, B("a1 X (a )\r\n"), NONE, 0, NONE, "E:BAD a1 Missing argument"},
	{"unclosed paren", LIM_DEFAULT, B("a1 FETCH 1 (FLAGS\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Unbalanced parentheses | C:b NOOP"},
	{"extra close paren", LIM_DEFAULT, B("a1 FETCH 1 FLAGS)\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Unbalanced parentheses"},
	{"unterminated quoted", LIM_DEFAULT, B("a1 LOGIN \"joe\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Unterminated string | C:b NOOP"},
	{"bad escape in quoted", LIM_DEFAULT, B("a1 LOGIN \"a\\b\" x\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid escape in string"},
	{"8-bit atom", LIM_DEFAULT, B("a1 SELECT Inb\xc3\xb6x\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 8-bit character in atom | C:b NOOP"},
	{"8-bit atom with utf8 on", LIM_UTF8, B("a1 SELECT Inb\xc3\xb6x\r\n"), NONE, 0, NONE,
	 "E:BAD a1 8-bit character in atom"},
	{"8-bit quoted", LIM_DEFAULT, B("a1 SELECT \"Inb\xc3\xb6x\"\r\n"), NONE, 0, NONE,
	 "E:BAD a1 8-bit character in string"},
	{"NUL in atom", LIM_DEFAULT, B("a1 SELECT IN\0BOX\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in atom | C:b NOOP"},
	{"NUL in quoted", LIM_DEFAULT, B("a1 SELECT \"IN\0BOX\"\r\n"), NONE, 0, NONE,
	 "E:BAD a1 NUL in string"},
	{"NUL in literal", LIM_DEFAULT, B("a1 LOGIN {3}\r\na\0b x\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "+ | E:BAD a1 NUL in literal | C:b NOOP"},
	{"NUL in streamed literal", LIM_SMALL, B("a APPEND INBOX {10+}\r\n0123\0""56789\r\nb NOOP\r\n"),
	 NONE, 0, NONE, "D:\"0123\" | E:BAD a NUL in literal | C:b NOOP"},
	{"control char in argument", LIM_DEFAULT, B("a1 LOGIN \x01 x\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in argument | C:b NOOP"},
	{"bare CR", LIM_DEFAULT, B("a1 NOOP\rb\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Bare CR | C:b NOOP"},
	{"bare CR before a tag", LIM_DEFAULT, B("\rx\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD * Bare CR | C:b NOOP"},
	{"bad literal size", LIM_DEFAULT, B("a1 LOGIN {x}\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid literal size"},
	{"literal size without CRLF", LIM_DEFAULT, B("a1 LOGIN {3} joe\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Missing CRLF after literal size"},
	{"partial without size", LIM_DEFAULT, B("a1 FETCH 1 BODY[]<0>\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid partial"},
	{"partial of size 0", LIM_DEFAULT, B("a1 FETCH 1 BODY[]<0.0>\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid partial"},
	{"partial over 32 bits", LIM_DEFAULT, B("a1 FETCH 1 BODY[]<4294967296.1>\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid partial"},
	{"junk after section", LIM_DEFAULT, B("a1 FETCH 1 BODY[]x\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character after section"},
	{"unclosed section", LIM_DEFAULT, B("a1 FETCH 1 BODY[TEXT\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in section | C:b NOOP"},
	{"literal inside a section", LIM_DEFAULT,
	 B("a1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Literal in section | C:b NOOP"},
	{"error before a trailing LITERAL+: its data is skipped", LIM_DEFAULT,
	 B("a1 LOGIN \x01 {5+}\r\nab\r\nc\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in argument | C:b NOOP"},
	{"error before a trailing sync literal: next line is a command", LIM_DEFAULT,
	 B("a1 LOGIN \x01 {5}\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD a1 Invalid character in argument | C:b NOOP"},

	/* Limits and floods. */
	{"nesting over the limit (33)", LIM_DEFAULT, B("a SEARCH "), B("("), 33, B("ALL\r\nb NOOP\r\n"),
	 "E:BAD [LIMIT] a Too deeply nested | C:b NOOP"},
	{"nesting in a section over the limit", LIM_SMALL, B("a FETCH 1 BODY[((((("), NONE, 0,
	 B(")))))]\r\n"), "E:BAD [LIMIT] a Too deeply nested"},
	{"line too long", LIM_SMALL, B("a1 SELECT "), B("x"), 70, B("\r\nb NOOP\r\n"),
	 "E:BAD [TOOBIG] a1 Line too long | C:b NOOP"},
	{"line too long, skipped until discard_max", LIM_SMALL, B("a1 SELECT "), B("x"), 400,
	 B("\r\nb NOOP\r\n"), "E:BAD [TOOBIG] a1 Line too long | "
	 "E:BAD [TOOBIG] a1 Too much data after an error fatal"},
	{"raw line too long", LIM_SMALL, B("a IDLE\r\n"), B("x"), 70, B("\r\nb NOOP\r\n"),
	 "C:a IDLE | E:BAD [TOOBIG] * Line too long | C:b NOOP"},
	{"sync literal over literal_max", LIM_SMALL, B("a1 LOGIN {17}\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:NO [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"LITERAL+ over literal_max is read and dropped", LIM_SMALL,
	 B("a1 LOGIN {17+}\r\n01234567890123456 x\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"LITERAL+ over literal_max, then more LITERAL+ in the command", LIM_SMALL,
	 B("a1 LOGIN {17+}\r\n01234567890123456 {3+}\r\nabc\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"LITERAL+ over discard_max is fatal", LIM_SMALL, B("a1 LOGIN {257+}\r\nxxxx"), NONE, 0, NONE,
	 "E:BAD [TOOBIG] a1 Literal too large fatal"},
	{"{4294967295} announcement", LIM_DEFAULT, B("a1 APPEND INBOX {4294967295}\r\nb NOOP\r\n"),
	 NONE, 0, NONE, "E:NO [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"{4294967295+} announcement", LIM_DEFAULT, B("a1 APPEND INBOX {4294967295+}\r\nxxxx"), NONE, 0,
	 NONE, "E:BAD [TOOBIG] a1 Literal too large fatal"},
	{"{99999999999} announcement", LIM_DEFAULT, B("a1 LOGIN {99999999999}\r\nb NOOP\r\n"), NONE, 0,
	 NONE, "E:NO [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"literals over command_max", LIM_SMALL, B("a1 X"), B(" {10+}\r\n0123456789"), 12,
	 B("\r\nb NOOP\r\n"), "E:BAD [TOOBIG] a1 Literal too large | C:b NOOP"},
	{"too many arguments", LIM_SMALL, B("a1 X 1 2 3 4 5 6 7 8 9\r\nb NOOP\r\n"), NONE, 0, NONE,
	 "E:BAD [LIMIT] a1 Too many arguments | C:b NOOP"},
	{"thousands of small literals", LIM_DEFAULT, B("a1 X"), B(" {1+}\r\nx"), 10001,
	 B("\r\nb NOOP\r\n"), "E:BAD [LIMIT] a1 Too many arguments | C:b NOOP"},
	{"thousands of small literals in a list", LIM_DEFAULT, B("a1 X ("), B("{1+}\r\nx "), 12000,
	 B(")\r\nb NOOP\r\n"), "E:BAD [LIMIT] a1 Too many arguments | C:b NOOP"},
};
/* clang-format on */

/* Builds a row's input: pre, rep count times, post. */
static char *
feed_input(const struct feed_case *tc, size_t *len_r)
{
	size_t len = tc->pre.len + tc->rep.len * tc->count + tc->post.len, n = 0;
	char *in = malloc(len + 1);

	assert_non_null(in);
	memcpy(in, tc->pre.s, tc->pre.len);
	n = tc->pre.len;
	for (size_t i = 0; i < tc->count; i++, n += tc->rep.len)
		memcpy(in + n, tc->rep.s, tc->rep.len);
	memcpy(in + n, tc->post.s, tc->post.len);
	*len_r = len;
	return in;
}

/* The expected transcript of rows that compute it. */
static char *
feed_want(const struct feed_case *tc)
{
	struct strbuf b = {NULL, 0, 0};

	if (tc->want != NULL) {
		sb_str(&b, tc->want);
	} else if (strncmp(tc->what, "nesting at", 10) == 0) {
		sb_str(&b, "C:a SEARCH ");
		for (size_t i = 0; i < 32; i++)
			sb_str(&b, "(");
		sb_str(&b, "ALL");
		for (size_t i = 0; i < 32; i++)
			sb_str(&b, ")");
	} else {
		sb_str(&b, "C:a1 X");
		for (size_t i = 0; i < tc->count; i++)
			sb_str(&b, " {1+}\"x\"");
	}
	return b.s;
}

/* Feeds one row whole, in two-way splits and one byte at a time. */
static void
test_feed(void **state)
{
	const struct feed_case *tc = *state;
	size_t len, chunks[2], *ones, step;
	char *in = feed_input(tc, &len), *want, *got;

	/* The nesting rows need their closing parens and CRLF after the repeated part. */
	if (strncmp(tc->what, "nesting at", 10) == 0) {
		in = realloc(in, len + 64);
		assert_non_null(in);
		for (size_t i = 0; i < 32; i++)
			in[len++] = ')';
		in[len++] = '\r';
		in[len++] = '\n';
	}
	want = feed_want(tc);

	chunks[0] = len;
	got = run(tc->lim, in, len, chunks, 1);
	if (strcmp(got, want) != 0)
		fail_msg("whole:\n got  %s\n want %s", got, want);
	free(got);

	step = len < 2048 ? 1 : len / 97;
	for (size_t split = 0; split <= len; split += step) {
		chunks[0] = split;
		chunks[1] = len - split;
		got = run(tc->lim, in, len, chunks, 2);
		if (strcmp(got, want) != 0)
			fail_msg("split at %zu:\n got  %s\n want %s", split, got, want);
		free(got);
	}

	ones = malloc(len * sizeof(*ones) + 1);
	assert_non_null(ones);
	for (size_t i = 0; i < len; i++)
		ones[i] = 1;
	got = run(tc->lim, in, len, ones, len);
	if (strcmp(got, want) != 0)
		fail_msg("byte at a time:\n got  %s\n want %s", got, want);
	free(got);
	free(ones);
	free(want);
	free(in);
}

/* ---- argument types and helpers ---- */

/* Parses one whole command with default limits; the parser is returned for freeing. */
static const struct imap_command *
parse_one(struct imap_parser **p_r, const char *in)
{
	size_t used = 0, len = strlen(in), off = 0;
	int ret;

	*p_r = imap_parser_new(NULL);
	for (;;) {
		ret = imap_parser_feed(*p_r, in + off, len - off, &used);
		off += used;
		if (ret != IMAP_PARSE_LITERAL_CONTINUE)
			break;
	}
	assert_int_equal(ret, IMAP_PARSE_COMMAND);
	assert_int_equal(off, len);
	return imap_parser_command(*p_r);
}

static void
test_arg_types(void **state)
{
	struct imap_parser *p;
	const struct imap_command *cmd = parse_one(
	    &p, "t1 uid X 12 nil NIL0 \"s\" {1}\r\nx 18446744073709551616 (a (b)) Nil 007\r\n");
	const char *s;

	assert_string_equal(cmd->tag, "t1");
	assert_string_equal(cmd->name, "X");
	assert_true(cmd->uid);
	assert_int_equal(cmd->nargs, 9);
	assert_int_equal(cmd->args[8].type, IMAP_ARG_NUMBER);
	assert_int_equal(cmd->args[8].number, 7);
	assert_int_equal(cmd->args[0].type, IMAP_ARG_NUMBER);
	assert_int_equal(cmd->args[0].number, 12);
	assert_int_equal(cmd->args[1].type, IMAP_ARG_NIL);
	assert_int_equal(cmd->args[2].type, IMAP_ARG_ATOM);
	assert_int_equal(cmd->args[3].type, IMAP_ARG_STRING);
	assert_int_equal(cmd->args[4].type, IMAP_ARG_LITERAL);
	assert_false(cmd->args[4].literal_plus);
	assert_int_equal(cmd->args[5].type, IMAP_ARG_ATOM); /* 2^64 does not fit */
	assert_int_equal(cmd->args[6].type, IMAP_ARG_LIST);
	assert_int_equal(cmd->args[6].list_count, 2);
	assert_string_equal(cmd->args[6].list[0].str, "a");
	assert_int_equal(cmd->args[6].list[1].type, IMAP_ARG_LIST);
	assert_int_equal(cmd->args[6].list[1].list_count, 1);
	assert_string_equal(cmd->args[6].list[1].list[0].str, "b");
	assert_int_equal(cmd->args[7].type, IMAP_ARG_NIL);
	assert_string_equal(cmd->args[7].str, "Nil");

	assert_true(imap_arg_get_astring(&cmd->args[1], &s));
	assert_string_equal(s, "nil");
	assert_true(imap_arg_get_nstring(&cmd->args[1], &s));
	assert_null(s);
	assert_true(imap_arg_get_astring(&cmd->args[0], &s));
	assert_string_equal(s, "12");
	assert_true(imap_arg_get_string(&cmd->args[4], &s));
	assert_string_equal(s, "x");
	assert_false(imap_arg_get_string(&cmd->args[2], &s));
	assert_false(imap_arg_get_atom(&cmd->args[3], &s));
	assert_false(imap_arg_get_astring(&cmd->args[6], &s));
	assert_true(imap_arg_atom_equals(&cmd->args[2], "nil0"));
	assert_false(imap_arg_atom_equals(&cmd->args[3], "s"));
	imap_parser_reset_command(p);
	assert_null(imap_parser_command(p));
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL is fine */
}

static void
test_section(void **state)
{
	struct imap_parser *p;
	const struct imap_command *cmd =
	    parse_one(&p, "f FETCH 1 (BODY.PEEK[HEADER.FIELDS (From Subject)]<10.512> BODY[])\r\n");
	const struct imap_arg *a;

	assert_int_equal(cmd->nargs, 2);
	assert_int_equal(cmd->args[1].type, IMAP_ARG_LIST);
	a = &cmd->args[1].list[0];
	assert_int_equal(a->type, IMAP_ARG_SECTION);
	assert_string_equal(a->str, "BODY.PEEK");
	assert_int_equal(a->len, 9);
	assert_string_equal(a->section, "HEADER.FIELDS (From Subject)");
	assert_int_equal(a->section_len, strlen("HEADER.FIELDS (From Subject)"));
	assert_true(a->partial);
	assert_int_equal(a->partial_offset, 10);
	assert_int_equal(a->partial_size, 512);
	a = &cmd->args[1].list[1];
	assert_int_equal(a->type, IMAP_ARG_SECTION);
	assert_string_equal(a->str, "BODY");
	assert_string_equal(a->section, "");
	assert_false(a->partial);
	imap_parser_free(&p);

	/* Outside FETCH a '[' is an atom byte. */
	cmd = parse_one(&p, "s SELECT BODY[x]\r\n");
	assert_int_equal(cmd->args[0].type, IMAP_ARG_ATOM);
	assert_string_equal(cmd->args[0].str, "BODY[x]");
	imap_parser_free(&p);
}

/* The literal size and tag are known when the continuation is asked for. */
static void
test_literal_info(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char *in = "q7 UID APPEND box {42}\r\n";
	size_t used;
	bool uid = false;

	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSE_LITERAL_CONTINUE);
	assert_int_equal(used, strlen(in));
	assert_int_equal(imap_parser_literal_size(p), 42);
	assert_string_equal(imap_parser_tag(p), "q7");
	assert_string_equal(imap_parser_command_name(p, &uid), "APPEND");
	assert_true(uid);
	imap_parser_free(&p);
}

/* Limits can change between commands; mid-command, set_limits and reset_command do nothing. */
static void
test_set_limits(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char *big = "a2 LOGIN {17}\r\n", *rest = "01234567890123456 x\r\n";
	size_t used;

	imap_parser_set_limits(p, &limits_small);
	assert_int_equal(imap_parser_feed(p, "a1 LOGIN {17}\r\n", 15, &used), IMAP_PARSE_ERROR);
	assert_int_equal(used, 15);
	assert_string_equal(imap_parser_error(p)->resp_code, "TOOBIG");
	assert_string_equal(imap_parser_error(p)->reply, "NO");
	imap_parser_set_limits(p, NULL);
	assert_int_equal(imap_parser_feed(p, big, strlen(big), &used), IMAP_PARSE_LITERAL_CONTINUE);
	imap_parser_set_limits(p, &limits_small);
	imap_parser_reset_command(p);
	assert_int_equal(imap_parser_feed(p, rest, strlen(rest), &used), IMAP_PARSE_COMMAND);
	assert_int_equal(used, strlen(rest));
	assert_int_equal(imap_parser_command(p)->nargs, 2);
	assert_string_equal(imap_parser_command(p)->args[0].str, "01234567890123456");
	imap_parser_free(&p);
}

/* ---- sequence sets ---- */

struct seqset_case {
	const char *text;
	int ret;
	const char *want; /* ranges as "lo:hi,..." with * for IMAP_SEQ_STAR */
};

/* clang-format off */
static const struct seqset_case seqset_cases[] = {
	{"1", 0, "1:1"},
	{"1:*", 0, "1:*"},
	{"*", 0, "*:*"},
	{"2,4:7,9", 0, "2:2,4:7,9:9"},
	{"7:3", 0, "3:7"},
	{"*:5", 0, "5:*"},
	{"4294967295", 0, "4294967295:4294967295"},
	{"4294967295:*", 0, "4294967295:*"},
	{"*:4294967295", 0, "4294967295:*"},
	{"1:4294967294", 0, "1:4294967294"},
	{"10,1:2,10", 0, "10:10,1:2,10:10"},
	{"", -1, NULL},
	{"0", -1, NULL},
	{"0:5", -1, NULL},
	{"1:0", -1, NULL},
	{"01", -1, NULL},
	{"1:*:*", -1, NULL},
	{"1:2:3", -1, NULL},
	{"1,", -1, NULL},
	{",1", -1, NULL},
	{"1,,2", -1, NULL},
	{"1:", -1, NULL},
	{":1", -1, NULL},
	{"4294967296", -1, NULL},
	{"99999999999999999999", -1, NULL},
	{"a", -1, NULL},
	{"1 2", -1, NULL},
	{"-1", -1, NULL},
	{"+1", -1, NULL},
	{"**", -1, NULL},
	{"$", -1, NULL},
};
/* clang-format on */

static void
test_seqset(void **state)
{
	const struct seqset_case *tc = *state;
	struct imap_seq_range r[16];
	size_t count = 99;
	const char *error = NULL;
	int ret = imap_parse_seqset(tc->text, r, 16, &count, &error);

	assert_int_equal(ret, tc->ret);
	if (ret < 0) {
		assert_non_null(error);
		assert_int_equal(count, 0);
		return;
	}
	{
		char got[256];
		size_t n = 0;

		for (size_t i = 0; i < count; i++) {
			char lo[24], hi[24];

			snprintf(lo, sizeof(lo), "%" PRIu64, r[i].lo);
			snprintf(hi, sizeof(hi), "%" PRIu64, r[i].hi);
			n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s:%s", i > 0 ? "," : "",
			                      r[i].lo == IMAP_SEQ_STAR ? "*" : lo,
			                      r[i].hi == IMAP_SEQ_STAR ? "*" : hi);
		}
		assert_string_equal(got, tc->want);
	}
	/* Validating only (no array) agrees. */
	assert_int_equal(imap_parse_seqset(tc->text, NULL, 16, &count, &error), 0);
}

/* More ranges than asked for, or than IMAP_SEQSET_MAX_RANGES, are refused. */
static void
test_seqset_limits(void **state)
{
	struct imap_seq_range r[4];
	char *text = malloc(8 * 2000);
	size_t count, n = 0;
	const char *error;

	assert_non_null(text);
	assert_int_equal(imap_parse_seqset("1,2,3,4", r, 4, &count, &error), 0);
	assert_int_equal(count, 4);
	assert_int_equal(imap_parse_seqset("1,2,3,4,5", r, 4, &count, &error), -1);
	for (size_t i = 0; i < IMAP_SEQSET_MAX_RANGES + 1; i++)
		n += (size_t)sprintf(text + n, "%s%zu", i > 0 ? "," : "", i + 1);
	assert_int_equal(imap_parse_seqset(text, NULL, SIZE_MAX, &count, &error), -1);
	assert_string_equal(error, "Too many ranges in sequence set");
	free(text);
}

int
main(void)
{
	char esc[128];

	for (size_t i = 0; i < sizeof(feed_cases) / sizeof(feed_cases[0]); i++) {
		const struct feed_case *tc = &feed_cases[i];
		char want[96];
		const char *w = tc->want != NULL ? tc->want : "(computed)";

		escape(esc, sizeof(esc), tc->pre.s, tc->pre.len);
		escape(want, sizeof(want), w, strlen(w));
		add_test(test_feed, (void *)tc, "%s: \"%s\"%s -> %s", tc->what, esc,
		         tc->count > 0 ? "..." : "", want);
	}
	add_test(test_arg_types, NULL, "argument types, NIL and numbers keep their text, helpers");
	add_test(test_section, NULL, "FETCH section structure; brackets are atom bytes elsewhere");
	add_test(test_set_limits, NULL, "limits change between commands only");
	add_test(test_literal_info, NULL, "tag, name and literal size at LITERAL_CONTINUE");
	for (size_t i = 0; i < sizeof(seqset_cases) / sizeof(seqset_cases[0]); i++) {
		const struct seqset_case *tc = &seqset_cases[i];

		escape(esc, sizeof(esc), tc->text, strlen(tc->text));
		add_test(test_seqset, (void *)tc, "seqset \"%s\" -> %s", esc,
		         tc->ret == 0 ? tc->want : "invalid");
	}
	add_test(test_seqset_limits, NULL, "seqset range count limits");
	return _cmocka_run_group_tests("imap_parser", tests, ntests, NULL, NULL);
}
