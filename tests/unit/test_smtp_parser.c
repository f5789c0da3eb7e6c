/* Unit tests for smtp_parser: tables of valid and invalid command lines, MAIL/RCPT arguments,
 * addresses and DATA streams. Every table row becomes its own named cmocka test, and every DATA
 * row is fed whole, in every two-way split and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_parser.h"

#include "table.h"

/* Expands "{N:c}" into N copies of c, so the tables can name 64-byte local parts. */
static char *
expand(const char *pattern)
{
	char *out = malloc(2048);
	size_t n = 0;

	if (out == NULL)
		abort();
	for (const char *p = pattern; *p != '\0'; p++) {
		unsigned count;
		char c;
		int used;

		if (*p == '{' && sscanf(p, "{%u:%c}%n", &count, &c, &used) == 2) {
			for (unsigned i = 0; i < count && n < 2000; i++)
				out[n++] = c;
			p += used - 1;
			continue;
		}
		if (n < 2000)
			out[n++] = *p;
	}
	out[n] = '\0';
	return out;
}

/* ---- command lines ---- */

struct command_case {
	struct bytes line;
	int ret;
	enum smtp_verb verb;
	const char *verb_text;
	const char *args;
};

/* clang-format off */
static const struct command_case command_cases[] = {
	{B("MAIL FROM:<a@b>"), 0, SMTP_VERB_MAIL, "MAIL", "FROM:<a@b>"},
	{B("mail from:<a@b>   "), 0, SMTP_VERB_MAIL, "MAIL", "from:<a@b>"},
	{B("MaIl   FROM:<a@b> \t "), 0, SMTP_VERB_MAIL, "MAIL", "FROM:<a@b>"},
	{B("RCPT TO:<a@b>"), 0, SMTP_VERB_RCPT, "RCPT", "TO:<a@b>"},
	{B("EHLO client.example"), 0, SMTP_VERB_EHLO, "EHLO", "client.example"},
	{B("helo x"), 0, SMTP_VERB_HELO, "HELO", "x"},
	{B("DATA"), 0, SMTP_VERB_DATA, "DATA", ""},
	{B("BDAT 100 LAST"), 0, SMTP_VERB_BDAT, "BDAT", "100 LAST"},
	{B("RSET"), 0, SMTP_VERB_RSET, "RSET", ""},
	{B("NOOP  hello  there "), 0, SMTP_VERB_NOOP, "NOOP", "hello  there"},
	{B("quit"), 0, SMTP_VERB_QUIT, "QUIT", ""},
	{B("QUIT    "), 0, SMTP_VERB_QUIT, "QUIT", ""},
	{B("VRFY postmaster"), 0, SMTP_VERB_VRFY, "VRFY", "postmaster"},
	{B("EXPN list"), 0, SMTP_VERB_EXPN, "EXPN", "list"},
	{B("HELP"), 0, SMTP_VERB_HELP, "HELP", ""},
	{B("starttls"), 0, SMTP_VERB_STARTTLS, "STARTTLS", ""},
	{B("AUTH PLAIN AGEAYg=="), 0, SMTP_VERB_AUTH, "AUTH", "PLAIN AGEAYg=="},
	{B("HELO \xc3\xa9t\xc3\xa9"), 0, SMTP_VERB_HELO, "HELO", "\xc3\xa9t\xc3\xa9"},
	{B("NOOP a\tb"), 0, SMTP_VERB_NOOP, "NOOP", "a\tb"},
	{B("MAILX FROM:<a@b>"), 0, SMTP_VERB_UNKNOWN, "MAILX", "FROM:<a@b>"},
	{B("MAI"), 0, SMTP_VERB_UNKNOWN, "MAI", ""},
	{B("MAIL\tFROM:<a@b>"), 0, SMTP_VERB_UNKNOWN, "MAIL?FROM:<A@B>", ""},
	{B("VERYLONGVERBNAMEEXCEEDING x"), 0, SMTP_VERB_UNKNOWN, "VERYLONGVERBNAM", "x"},
	{B(" MAIL FROM:<a@b>"), 0, SMTP_VERB_UNKNOWN, "", "MAIL FROM:<a@b>"},
	{B(""), 0, SMTP_VERB_UNKNOWN, "", ""},
	{B("MAIL FROM:<a@b>\0x"), -1, SMTP_VERB_UNKNOWN, "MAIL", ""},
	{B("\0"), -1, SMTP_VERB_UNKNOWN, "?", ""},
	{B("NOOP \x01"), -1, SMTP_VERB_UNKNOWN, "NOOP", ""},
	{B("NOOP \x7f"), -1, SMTP_VERB_UNKNOWN, "NOOP", ""},
	{B("NOOP a\rb"), -1, SMTP_VERB_UNKNOWN, "NOOP", ""},
	{B("NOOP a\nb"), -1, SMTP_VERB_UNKNOWN, "NOOP", ""},
	{B("\x1b[31mQUIT"), -1, SMTP_VERB_UNKNOWN, "?[31MQUIT", ""},
};
/* clang-format on */

/* Parses one command line (copied into a buffer with room for the NUL). */
static void
test_command(void **state)
{
	const struct command_case *tc = *state;
	struct smtp_command cmd;
	char *line = malloc(tc->line.len + 1);

	assert_non_null(line);
	memcpy(line, tc->line.s, tc->line.len);
	assert_int_equal(smtp_command_parse(line, tc->line.len, &cmd), tc->ret);
	assert_string_equal(cmd.verb_text, tc->verb_text);
	if (tc->ret == 0) {
		assert_int_equal(cmd.verb, tc->verb);
		assert_string_equal(cmd.args, tc->args);
	}
	free(line);
}

/* ---- MAIL FROM ---- */

struct mail_case {
	const char *args;
	int code; /* 0 for success */
	const char *status;
	const char *address; /* NULL for the null path */
	size_t local_len;
	bool size_given;
	uint64_t size;
	enum smtp_body body;
	const char *auth;
};

/* clang-format off */
static const struct mail_case mail_cases[] = {
	{"FROM:<a@b.example>", 0, NULL, "a@b.example", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"from:<>", 0, NULL, NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM: <a@b>", 0, NULL, "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<User.Name+tag@Example.COM>", 0, NULL, "User.Name+tag@example.com", 13, false, 0,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<\"john doe\"@example.com>", 0, NULL, "\"john doe\"@example.com", 10, false, 0,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<\"a\\\"b@c\"@example.com>", 0, NULL, "\"a\\\"b@c\"@example.com", 8, false, 0,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<a@[127.0.0.1]>", 0, NULL, "a@[127.0.0.1]", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@[IPv6:::1]>", 0, NULL, "a@[ipv6:::1]", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<@relay1.example,@Relay2.example:a@B.example>", 0, NULL, "a@b.example", 1, false, 0,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=1000", 0, NULL, "a@b", 1, true, 1000, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=0", 0, NULL, "a@b", 1, true, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> size=18446744073709551615", 0, NULL, "a@b", 1, true, UINT64_MAX,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=99999999999999999999", 0, NULL, "a@b", 1, true, UINT64_MAX,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=00000000000000000042", 0, NULL, "a@b", 1, true, 42, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> BODY=8BITMIME", 0, NULL, "a@b", 1, false, 0, SMTP_BODY_8BITMIME, ""},
	{"FROM:<a@b> body=7bit", 0, NULL, "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> AUTH=<>", 0, NULL, "a@b", 1, false, 0, SMTP_BODY_7BIT, "<>"},
	{"FROM:<a@b> AUTH=a+2Bb@example.com", 0, NULL, "a@b", 1, false, 0, SMTP_BODY_7BIT,
	 "a+b@example.com"},
	{"FROM:<a@b>  SIZE=10   BODY=8BITMIME AUTH=<>", 0, NULL, "a@b", 1, true, 10,
	 SMTP_BODY_8BITMIME, "<>"},
	{"", 501, "5.5.4", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM", 501, "5.5.4", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:", 501, "5.5.4", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"TO:<a@b>", 501, "5.5.4", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM <a@b>", 501, "5.5.4", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:a@b", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b>x", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a b@c>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<<a@b>>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<\xc3\xa9@example.com>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@\xc3\xa9.example>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<@relay:>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<@relay,a@b>", 501, "5.1.7", NULL, 0, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=12a", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=-1", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=123456789012345678901", 501, "5.5.4", "a@b", 1, false, 0,
	 SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE==1", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=1 SIZE=2", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> BODY=8BITMIME body=7BIT", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT,
	 ""},
	{"FROM:<a@b> BODY=BINARYMIME", 555, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> BODY=9BIT", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> BODY", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SMTPUTF8", 555, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> RET=FULL", 555, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> AUTH=a+2b", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> AUTH=+00", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> AUTH=+0A", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> AUTH=a+2", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> =x", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> -X=1", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
	{"FROM:<a@b> SIZE=1\xff", 501, "5.5.4", "a@b", 1, false, 0, SMTP_BODY_7BIT, ""},
};
/* clang-format on */

/* Parses one MAIL argument string and checks the path, parameters or reply. */
static void
test_mail(void **state)
{
	const struct mail_case *tc = *state;
	struct smtp_path path;
	struct smtp_mail_params params;
	struct smtp_reply reply = {0, NULL, NULL};
	int ret = smtp_parse_mail(tc->args, &path, &params, &reply);

	if (tc->code != 0) {
		assert_int_equal(ret, -1);
		assert_int_equal(reply.code, tc->code);
		assert_string_equal(reply.status, tc->status);
		assert_non_null(reply.text);
		return;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(path.null_path, tc->address == NULL);
	assert_string_equal(path.address, tc->address == NULL ? "" : tc->address);
	assert_int_equal(path.local_len, tc->local_len);
	assert_int_equal(params.size_given, tc->size_given);
	assert_true(params.size == tc->size);
	assert_int_equal(params.body, tc->body);
	assert_string_equal(params.auth, tc->auth);
}

/* ---- RCPT TO ---- */

struct rcpt_case {
	const char *args;
	int code;
	const char *status;
	const char *address;
	size_t local_len;
};

/* clang-format off */
static const struct rcpt_case rcpt_cases[] = {
	{"TO:<a@b.example>", 0, NULL, "a@b.example", 1},
	{"to: <A@B.Example>", 0, NULL, "A@b.example", 1},
	{"TO:<Postmaster>", 0, NULL, "postmaster", 10},
	{"TO:<postmaster@Example.com>", 0, NULL, "postmaster@example.com", 10},
	{"TO:<@r.example:a@b>", 0, NULL, "a@b", 1},
	{"TO:<\"x y\"@b>", 0, NULL, "\"x y\"@b", 5},
	{"TO:<a@[IPv6:2001:db8::1]>", 0, NULL, "a@[ipv6:2001:db8::1]", 1},
	{"TO:<>", 501, "5.1.3", NULL, 0},
	{"TO:<Postmaster>x", 501, "5.1.3", NULL, 0},
	{"TO:<postmaster>>", 501, "5.1.3", NULL, 0},
	{"TO:a@b", 501, "5.1.3", NULL, 0},
	{"TO:<a@@b>", 501, "5.1.3", NULL, 0},
	{"TO:<a@b..c>", 501, "5.1.3", NULL, 0},
	{"TO:<a>", 501, "5.1.3", NULL, 0},
	{"FROM:<a@b>", 501, "5.5.4", NULL, 0},
	{"TO", 501, "5.5.4", NULL, 0},
	{"", 501, "5.5.4", NULL, 0},
	{"TO:<a@b> NOTIFY=NEVER", 555, "5.5.4", NULL, 0},
	{"TO:<a@b> ORCPT=rfc822;a@b", 555, "5.5.4", NULL, 0},
	{"TO:<Postmaster> X", 555, "5.5.4", NULL, 0},
};
/* clang-format on */

/* Parses one RCPT argument string. */
static void
test_rcpt(void **state)
{
	const struct rcpt_case *tc = *state;
	struct smtp_path path;
	struct smtp_reply reply = {0, NULL, NULL};
	int ret = smtp_parse_rcpt(tc->args, &path, &reply);

	if (tc->code != 0) {
		assert_int_equal(ret, -1);
		assert_int_equal(reply.code, tc->code);
		assert_string_equal(reply.status, tc->status);
		return;
	}
	assert_int_equal(ret, 0);
	assert_false(path.null_path);
	assert_string_equal(path.address, tc->address);
	assert_int_equal(path.local_len, tc->local_len);
}

/* ---- bare addresses ---- */

struct address_case {
	const char *pattern; /* see expand() */
	bool valid;
	const char *domain; /* smtp_address_domain() for valid ones */
};

/* clang-format off */
static const struct address_case address_cases[] = {
	{"a@b", true, "b"},
	{"user.name@example.com", true, "example.com"},
	{"!#$%&'*+-/=?^_`{|}~@example.com", true, "example.com"},
	{"\"quoted local\"@example.com", true, "example.com"},
	{"\"a@b\"@example.com", true, "example.com"},
	{"\"a\\\\b\"@example.com", true, "example.com"},
	{"\"\"@example.com", true, "example.com"},
	{"a@[127.0.0.1]", true, "[127.0.0.1]"},
	{"a@[255.255.255.255]", true, "[255.255.255.255]"},
	{"a@[IPv6:::1]", true, "[IPv6:::1]"},
	{"a@[IPv6:2001:db8::1]", true, "[IPv6:2001:db8::1]"},
	{"a@[IPv6:::ffff:1.2.3.4]", true, "[IPv6:::ffff:1.2.3.4]"},
	{"a@xn--bcher-kva.example", true, "xn--bcher-kva.example"},
	{"1@2.3", true, "2.3"},
	{"a@a-b.c", true, "a-b.c"},
	{"{64:l}@example.com", true, "example.com"},
	{"a@{63:d}.com", true, NULL},
	{"{64:l}@{63:d}.{63:e}.{61:f}", true, NULL},
	{"{65:l}@example.com", false, NULL},
	{"a@{64:d}.com", false, NULL},
	{"a@{63:b}.{63:c}.{63:d}.{62:e}.f", false, NULL},
	{"{64:l}@{63:d}.{63:e}.{62:f}", false, NULL},
	{"ab.example", false, NULL},
	{"", false, NULL},
	{"@b", false, NULL},
	{"a@", false, NULL},
	{"a@b@c", false, NULL},
	{"a@b..c", false, NULL},
	{"a@.b", false, NULL},
	{"a@b.", false, NULL},
	{"a@-b", false, NULL},
	{"a@b-", false, NULL},
	{"a@b_c", false, NULL},
	{".a@b", false, NULL},
	{"a.@b", false, NULL},
	{"a..b@c", false, NULL},
	{"\xc3\xa9@b", false, NULL},
	{"a@b\xc3\xa9", false, NULL},
	{"\"\xc3\xa9\"@b", false, NULL},
	{"a b@c", false, NULL},
	{"a@b c", false, NULL},
	{"a@[127.0.0.1", false, NULL},
	{"a@127.0.0.1]", false, NULL},
	{"a@[[127.0.0.1]]", false, NULL},
	{"a@[256.0.0.1]", false, NULL},
	{"a@[1.2.3]", false, NULL},
	{"a@[1.2.3.4.5]", false, NULL},
	{"a@[0001.2.3.4]", false, NULL},
	{"a@[IPv6:zz::1]", false, NULL},
	{"a@[IPv6:1:2:3:4:5:6:7:8:9]", false, NULL},
	{"a@[IPv6:]", false, NULL},
	{"a@[tag:foo]", false, NULL},
	{"\"unterminated@b", false, NULL},
	{"\"a\"b@c", false, NULL},
	{"\"a\\\"@b", false, NULL},
	{"<a@b>", false, NULL},
};
/* clang-format on */

/* Validates one address built from its pattern. */
static void
test_address(void **state)
{
	const struct address_case *tc = *state;
	char *address = expand(tc->pattern);

	assert_int_equal(smtp_address_valid(address, strlen(address)), tc->valid);
	if (tc->valid && tc->domain != NULL)
		assert_string_equal(smtp_address_domain(address), tc->domain);
	free(address);
}

/* An address with a NUL in it is refused even though the bytes around it are fine. */
static void
test_address_nul(void **state)
{
	assert_false(smtp_address_valid("a\0@b", 4));
	assert_true(smtp_address_valid("a@b\0junk", 3));
	assert_string_equal(smtp_address_domain("postmaster"), "");
	assert_string_equal(smtp_address_domain("\"a@b\"@c.example"), "c.example");
}

/* HELO/EHLO arguments: printable tokens up to 255 bytes. */
static void
test_helo(void **state)
{
	char *long_ok = expand("{255:h}"), *long_bad = expand("{256:h}");

	assert_true(smtp_helo_valid("mail.example.com"));
	assert_true(smtp_helo_valid("[127.0.0.1]"));
	assert_true(smtp_helo_valid("localhost"));
	assert_true(smtp_helo_valid(long_ok));
	assert_false(smtp_helo_valid(long_bad));
	assert_false(smtp_helo_valid(""));
	assert_false(smtp_helo_valid("a b"));
	assert_false(smtp_helo_valid("a\tb"));
	assert_false(smtp_helo_valid("\xc3\xa9"));
	free(long_ok);
	free(long_bad);
}

/* xtext (RFC 3461): "+XX" with upper-case hex, no '=', no controls, bounded output. */
static void
test_xtext(void **state)
{
	char out[8];

	assert_int_equal(smtp_xtext_decode("a+2Bb+3D", out, sizeof(out)), 0);
	assert_string_equal(out, "a+b=");
	assert_int_equal(smtp_xtext_decode("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(smtp_xtext_decode("+7e", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("+", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("+4", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("a=b", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("a b", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("\xc3\xa9", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("1234567", out, sizeof(out)), 0);
	assert_int_equal(smtp_xtext_decode("12345678", out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("a", out, 0), -1);
}

/* ---- DATA ---- */

struct data_case {
	const char *what;
	struct bytes in;
	struct bytes out;
	long end; /* offset just past the terminating CRLF.CRLF, or -1 when data has not ended */
	bool bare_cr, bare_lf, nul;
	size_t max_line;
};

/* clang-format off */
static const struct data_case data_cases[] = {
	{"empty message right after 354", B(".\r\n"), B(""), 3, false, false, false, 0},
	{"one line", B("a\r\n.\r\n"), B("a\r\n"), 6, false, false, false, 1},
	{"empty first line", B("\r\n.\r\n"), B("\r\n"), 5, false, false, false, 0},
	{"pipelined command left unconsumed", B("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"),
	 B("Subject: x\r\n\r\nbody\r\n"), 23, false, false, false, 10},
	{"dot-stuffed first line", B("..a\r\n.\r\n"), B(".a\r\n"), 8, false, false, false, 2},
	{"line of one stuffed dot", B("a\r\n..\r\n.\r\n"), B("a\r\n.\r\n"), 10, false, false,
	 false, 1},
	{"lone dot at line start is removed", B("a\r\n.b\r\n.\r\n"), B("a\r\nb\r\n"), 10, false,
	 false, false, 1},
	{"dot inside a line kept", B("a.b\r\n.\r\n"), B("a.b\r\n"), 8, false, false, false, 3},
	{"dots at end of line kept", B("a..\r\n.\r\n"), B("a..\r\n"), 8, false, false, false, 3},
	{"no end yet", B("a\r\nb"), B("a\r\nb"), -1, false, false, false, 1},
	{"'.CR' held back at the end of input", B("a\r\n.\r"), B("a\r\n"), -1, false, false, false,
	 1},
	{"'CRLF.' at the end of input", B("a\r\n."), B("a\r\n"), -1, false, false, false, 1},
	{"smuggling LF.LF does not end data", B("a\n.\nMAIL FROM:<x>\r\n.\r\n"),
	 B("a\n.\nMAIL FROM:<x>\r\n"), 22, false, true, false, 17},
	{"smuggling CRLF.LF does not end data", B("a\r\n.\nRSET\r\n.\r\n"), B("a\r\n\nRSET\r\n"),
	 14, false, true, false, 5},
	{"smuggling LF.CRLF does not end data", B("a\n.\r\nRSET\r\n.\r\n"),
	 B("a\n.\r\nRSET\r\n"), 14, false, true, false, 4},
	{"smuggling CR.CR does not end data", B("a\r.\rb\r\n.\r\n"), B("a\r.\rb\r\n"), 10, true,
	 false, false, 5},
	{"smuggling CRLF.CR does not end data", B("a\r\n.\rX\r\n.\r\n"), B("a\r\n\rX\r\n"), 11,
	 true, false, false, 2},
	{"smuggling CR.CRLF does not end data", B("a\r.\r\nRSET\r\n.\r\n"), B("a\r.\r\nRSET\r\n"),
	 14, true, false, false, 4},
	{"lone LF.LF never ends", B("\n.\n"), B("\n.\n"), -1, false, true, false, 3},
	{"LF.CRLF at the start never ends", B("\n.\r\n"), B("\n.\r\n"), -1, false, true, false, 2},
	{"CR CRLF is a bare CR then CRLF", B("a\r\r\n.\r\n"), B("a\r\r\n"), 7, true, false, false,
	 2},
	{"'.CR CR LF' then the end", B("a\r\n.\r\r\n.\r\n"), B("a\r\n\r\r\n"), 10, true, false,
	 false, 1},
	{"NUL byte recorded", B("a\0b\r\n.\r\n"), B("a\0b\r\n"), 8, false, false, true, 3},
	{"longest line measured without CRLF", B("abc\r\nabcdef\r\nab\r\n.\r\n"),
	 B("abc\r\nabcdef\r\nab\r\n"), 20, false, false, false, 6},
	{"stuffed dot not counted in line length", B("...\r\n.\r\n"), B("..\r\n"), 8, false, false,
	 false, 2},
	{"8-bit bytes pass through", B("\xc3\xa9\xff\r\n.\r\n"), B("\xc3\xa9\xff\r\n"), 8, false,
	 false, false, 3},
	{"end then more data left alone", B(".\r\nMAIL FROM:<a@b>\r\n.\r\n"), B(""), 3, false, false,
	 false, 0},
};
/* clang-format on */

struct data_result {
	char out[256];
	size_t out_len;
	long end;
	struct smtp_data_decoder dec;
};

/* Feeds input in the given chunks (sizes summing to len), checking the output bound. */
static void
data_run(const struct bytes *in, const size_t *chunks, size_t nchunks, struct data_result *res)
{
	size_t off = 0;

	memset(res, 0, sizeof(*res));
	res->end = -1;
	smtp_data_init(&res->dec);
	for (size_t c = 0; c < nchunks; c++) {
		char *out = malloc(chunks[c] + 2);
		size_t out_len = 0, used;
		bool end = false;

		assert_non_null(out);
		used = smtp_data_feed(&res->dec, in->s + off, chunks[c], out, &out_len, &end);
		assert_true(out_len <= chunks[c] + 2);
		assert_true(used <= chunks[c]);
		assert_true(res->out_len + out_len <= sizeof(res->out));
		memcpy(res->out + res->out_len, out, out_len);
		res->out_len += out_len;
		free(out);
		off += used;
		if (end) {
			res->end = (long)off;
			break;
		}
		assert_int_equal(used, chunks[c]);
	}
	if (res->end >= 0) {
		/* Once ended, the decoder takes nothing more. */
		char out[8];
		size_t out_len = 99;
		bool end = false;

		assert_int_equal(smtp_data_feed(&res->dec, "x\r\n", 3, out, &out_len, &end), 0);
		assert_true(end);
		assert_int_equal(out_len, 0);
	}
}

/* Compares one run's results with the table row. */
static void
data_check(const struct data_case *tc, const struct data_result *res, const char *how)
{
	if (res->out_len != tc->out.len || memcmp(res->out, tc->out.s, tc->out.len) != 0 ||
	    res->end != tc->end) {
		char got[512], want[512];

		escape(got, sizeof(got), res->out, res->out_len);
		escape(want, sizeof(want), tc->out.s, tc->out.len);
		fail_msg("%s: got \"%s\" end %ld, want \"%s\" end %ld", how, got, res->end, want,
		         tc->end);
	}
	assert_int_equal(res->dec.size, tc->out.len);
	assert_int_equal(res->dec.bare_cr, tc->bare_cr);
	assert_int_equal(res->dec.bare_lf, tc->bare_lf);
	assert_int_equal(res->dec.nul, tc->nul);
	assert_int_equal(res->dec.max_line, tc->max_line);
}

/* Feeds one DATA row whole, in every two-way split and one byte at a time. */
static void
test_data(void **state)
{
	const struct data_case *tc = *state;
	struct data_result res;
	size_t len = tc->in.len, chunks[256];
	char how[64];

	assert_true(len < 256);
	chunks[0] = len;
	data_run(&tc->in, chunks, 1, &res);
	data_check(tc, &res, "whole");

	for (size_t split = 0; split <= len; split++) {
		chunks[0] = split;
		chunks[1] = len - split;
		data_run(&tc->in, chunks, 2, &res);
		snprintf(how, sizeof(how), "split at %zu", split);
		data_check(tc, &res, how);
	}

	for (size_t i = 0; i < len; i++)
		chunks[i] = 1;
	data_run(&tc->in, chunks, len, &res);
	data_check(tc, &res, "byte at a time");
}

int
main(void)
{
	char esc[128], esc2[128];

	for (size_t i = 0; i < sizeof(command_cases) / sizeof(command_cases[0]); i++) {
		const struct command_case *tc = &command_cases[i];

		escape(esc, sizeof(esc), tc->line.s, tc->line.len);
		escape(esc2, sizeof(esc2), tc->args, strlen(tc->args));
		add_test(test_command, (void *)tc, "command \"%s\" -> %s verb=%s args=\"%s\"", esc,
		         tc->ret == 0 ? "ok" : "500 5.5.2", tc->verb_text, esc2);
	}
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		const struct mail_case *tc = &mail_cases[i];

		escape(esc, sizeof(esc), tc->args, strlen(tc->args));
		if (tc->code == 0)
			add_test(test_mail, (void *)tc, "MAIL \"%s\" -> ok <%s>", esc,
			         tc->address == NULL ? "" : tc->address);
		else
			add_test(test_mail, (void *)tc, "MAIL \"%s\" -> %d %s", esc, tc->code,
			         tc->status);
	}
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *tc = &rcpt_cases[i];

		escape(esc, sizeof(esc), tc->args, strlen(tc->args));
		if (tc->code == 0)
			add_test(test_rcpt, (void *)tc, "RCPT \"%s\" -> ok <%s>", esc, tc->address);
		else
			add_test(test_rcpt, (void *)tc, "RCPT \"%s\" -> %d %s", esc, tc->code,
			         tc->status);
	}
	for (size_t i = 0; i < sizeof(address_cases) / sizeof(address_cases[0]); i++) {
		const struct address_case *tc = &address_cases[i];

		escape(esc, sizeof(esc), tc->pattern, strlen(tc->pattern));
		add_test(test_address, (void *)tc, "address \"%s\" is %s", esc,
		         tc->valid ? "valid" : "invalid");
	}
	add_test(test_address_nul, NULL, "address with NUL refused; domain of validated addresses");
	add_test(test_helo, NULL, "HELO argument: printable token up to 255 bytes");
	add_test(test_xtext, NULL, "xtext decoding (RFC 3461) and its bounds");
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *tc = &data_cases[i];

		char where[32] = "never ends";

		if (tc->end >= 0)
			snprintf(where, sizeof(where), "ends at %ld", tc->end);
		escape(esc, sizeof(esc), tc->in.s, tc->in.len);
		add_test(test_data, (void *)tc, "DATA %s: \"%s\" %s (whole, every split, bytewise)",
		         tc->what, esc, where);
	}
	return _cmocka_run_group_tests("smtp_parser", tests, ntests, NULL, NULL);
}
