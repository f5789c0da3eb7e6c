/* Unit tests for sasl: tables of base64 inputs (RFC 4648 / RFC 4954), PLAIN messages
 * (RFC 4616) and whole server exchanges (PLAIN, LOGIN); every row is its own named cmocka
 * test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/sasl.h"

struct bytes {
	const char *s;
	size_t len;
};
/* clang-format off */
#define B(lit) {lit, sizeof(lit) - 1}
/* clang-format on */

#define TESTS_MAX 256
static struct CMUnitTest tests[TESTS_MAX];
static size_t ntests;

/* Renders s printably (\xNN for anything else) for a test name. */
static void
escape(char *dst, size_t dstsize, const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 8 < dstsize; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '#')
			n += (size_t)snprintf(dst + n, dstsize - n, "\\x%02x", c);
		else
			dst[n++] = (char)c;
	}
	dst[n] = '\0';
}

/* Registers one test under a descriptive name. */
static void
add_test(CMUnitTestFunction fn, void *state, const char *fmt, ...)
{
	char *name = malloc(256);
	va_list ap;

	if (name == NULL || ntests >= TESTS_MAX)
		abort();
	va_start(ap, fmt);
	vsnprintf(name, 256, fmt, ap);
	va_end(ap);
	tests[ntests].name = name;
	tests[ntests].test_func = fn;
	tests[ntests].setup_func = NULL;
	tests[ntests].teardown_func = NULL;
	tests[ntests].initial_state = state;
	ntests++;
}

/* ---- base64 ---- */

struct b64_case {
	struct bytes in;
	size_t outsize;
	long ret;
	struct bytes out;
};

/* clang-format off */
static const struct b64_case b64_cases[] = {
	{B(""), 16, 0, B("")},
	{B("="), 16, 0, B("")},
	{B("YQ=="), 16, 1, B("a")},
	{B("YWI="), 16, 2, B("ab")},
	{B("YWJj"), 16, 3, B("abc")},
	{B("AGEAYg=="), 16, 4, B("\0a\0b")},
	{B("dGVzdAB0ZXN0AHRlc3Q="), 16, 14, B("test\0test\0test")},
	{B("YWJj"), 4, 3, B("abc")},
	{B("YWJj"), 3, -1, B("")},
	{B("YQ=="), 0, -1, B("")},
	{B("YQ"), 16, -1, B("")},
	{B("YQ="), 16, -1, B("")},
	{B("YQ==="), 16, -1, B("")},
	{B("YWJj===="), 16, -1, B("")},
	{B("Y Q=="), 16, -1, B("")},
	{B(" YQ=="), 16, -1, B("")},
	{B("YQ==\r\n"), 16, -1, B("")},
	{B("YQ==\n"), 16, -1, B("")},
	{B("YR=="), 16, -1, B("")},
	{B("YQ==YQ=="), 16, -1, B("")},
	{B("===="), 16, -1, B("")},
	{B("=="), 16, -1, B("")},
	{B("=YQ="), 16, -1, B("")},
	{B("YQ!="), 16, -1, B("")},
	{B("Y-_="), 16, -1, B("")},
	{B("YQ=\0"), 16, -1, B("")},
	{B("YWJj\0"), 16, -1, B("")},
	{B("*"), 16, -1, B("")},
	{B("++/\xc8"), 16, -1, B("")},
	{B("QQQ\x80"), 16, -1, B("")},
	{B("\xff\xff\xff\xff"), 16, -1, B("")},
};
/* clang-format on */

/* Decodes one base64 row and checks length, bytes and the terminating NUL. */
static void
test_b64_decode(void **state)
{
	const struct b64_case *tc = *state;
	char out[64];
	long ret;

	memset(out, 'X', sizeof(out));
	ret = base64_decode(tc->in.s, tc->in.len, out, tc->outsize);
	assert_int_equal(ret, tc->ret);
	if (ret < 0)
		return;
	assert_int_equal((size_t)ret, tc->out.len);
	assert_memory_equal(out, tc->out.s, tc->out.len);
	assert_int_equal(out[ret], '\0');
}

/* Encoding: known vectors and the exact-fit boundary. */
static void
test_b64_encode(void **state)
{
	char out[16];

	assert_int_equal(base64_encode("", 0, out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(base64_encode("", 0, out, 0), -1);
	assert_int_equal(base64_encode("a", 1, out, sizeof(out)), 0);
	assert_string_equal(out, "YQ==");
	assert_int_equal(base64_encode("\0a\0b", 4, out, sizeof(out)), 0);
	assert_string_equal(out, "AGEAYg==");
	assert_int_equal(base64_encode("abc", 3, out, 5), 0);
	assert_string_equal(out, "YWJj");
	assert_int_equal(base64_encode("abc", 3, out, 4), -1);
	assert_int_equal(base64_encode("abcd", 4, out, 8), -1);
	assert_int_equal(base64_encode("abcd", 4, out, 9), 0);
	assert_string_equal(out, "YWJjZA==");
	assert_int_equal(base64_encode("x", SIZE_MAX, out, sizeof(out)), -1);
}

/* Every byte value and every length up to 256 survives encode then decode. */
static void
test_b64_roundtrip(void **state)
{
	unsigned char bin[256];
	char enc[400], dec[260];

	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(255 - i);
	for (size_t len = 0; len <= sizeof(bin); len++) {
		long ret;

		assert_int_equal(base64_encode(bin, len, enc, sizeof(enc)), 0);
		ret = base64_decode(enc, strlen(enc), dec, sizeof(dec));
		assert_int_equal(ret, (long)len);
		assert_memory_equal(dec, bin, len);
	}
}

/* ---- PLAIN ---- */

struct plain_case {
	const char *what;
	struct bytes msg;
	int ret;
	const char *authzid, *authcid, *passwd;
};

/* clang-format off */
static const struct plain_case plain_cases[] = {
	{"no authzid", B("\0user\0pass"), 0, "", "user", "pass"},
	{"with authzid", B("admin\0user\0pass"), 0, "admin", "user", "pass"},
	{"UTF-8 fields", B("\0us\xc3\xa9r\0p\xc3\xa4ss"), 0, "", "us\xc3\xa9r", "p\xc3\xa4ss"},
	{"4-byte UTF-8", B("\0\xf0\x9f\x98\x80\0pass"), 0, "", "\xf0\x9f\x98\x80", "pass"},
	{"spaces kept", B("\0a user\0a pass "), 0, "", "a user", "a pass "},
	{"empty authcid", B("\0\0pass"), -1, NULL, NULL, NULL},
	{"empty passwd", B("\0user\0"), -1, NULL, NULL, NULL},
	{"one NUL only", B("user\0pass"), -1, NULL, NULL, NULL},
	{"no NUL", B("userpass"), -1, NULL, NULL, NULL},
	{"third NUL", B("\0user\0pa\0ss"), -1, NULL, NULL, NULL},
	{"empty message", B(""), -1, NULL, NULL, NULL},
	{"invalid byte 0xff", B("\0\xff\0pass"), -1, NULL, NULL, NULL},
	{"overlong '/'", B("\0\xc0\xaf\0pass"), -1, NULL, NULL, NULL},
	{"overlong 3-byte", B("\0\xe0\x80\xaf\0pass"), -1, NULL, NULL, NULL},
	{"surrogate", B("\0\xed\xa0\x80\0pass"), -1, NULL, NULL, NULL},
	{"past U+10FFFF", B("\0\xf4\x90\x80\x80\0pass"), -1, NULL, NULL, NULL},
	{"truncated sequence", B("\0user\0\xe2\x82"), -1, NULL, NULL, NULL},
	{"lone continuation", B("\x80\0user\0pass"), -1, NULL, NULL, NULL},
};
/* clang-format on */

/* Splits one PLAIN message. */
static void
test_plain(void **state)
{
	const struct plain_case *tc = *state;
	char z[SASL_FIELD_MAX + 1], c[SASL_FIELD_MAX + 1], p[SASL_FIELD_MAX + 1];

	assert_int_equal(sasl_plain_parse(tc->msg.s, tc->msg.len, z, c, p), tc->ret);
	if (tc->ret < 0)
		return;
	assert_string_equal(z, tc->authzid);
	assert_string_equal(c, tc->authcid);
	assert_string_equal(p, tc->passwd);
}

/* Fields of exactly SASL_FIELD_MAX bytes fit; one more does not. */
static void
test_plain_limits(void **state)
{
	char msg[3 * SASL_FIELD_MAX + 8];
	char z[SASL_FIELD_MAX + 1], c[SASL_FIELD_MAX + 1], p[SASL_FIELD_MAX + 1];
	size_t n;

	for (int field = 0; field < 3; field++) {
		for (size_t extra = 0; extra <= 1; extra++) {
			size_t sizes[3] = {1, 1, 1};

			sizes[field] = SASL_FIELD_MAX + extra;
			n = 0;
			for (int f = 0; f < 3; f++) {
				if (f > 0)
					msg[n++] = '\0';
				memset(msg + n, 'a' + f, sizes[f]);
				n += sizes[f];
			}
			assert_int_equal(sasl_plain_parse(msg, n, z, c, p), extra ? -1 : 0);
			if (!extra)
				assert_int_equal(strlen(field == 0   ? z
				                        : field == 1 ? c
				                                     : p),
				                 SASL_FIELD_MAX);
		}
	}
}

/* ---- the server exchange ---- */

#define XCHG_LINES 3

/* One exchange: the start, then each response line in turn; results[i] and challenges[i] are
 * what call i must produce (call 0 is sasl_server_start). The last call's error or credentials
 * are checked too. */
struct xchg_case {
	const char *what;
	const char *mech;
	const char *ir; /* NULL: no initial response */
	const char *lines[XCHG_LINES];
	enum sasl_result results[XCHG_LINES + 1];
	const char *challenges[XCHG_LINES + 1];
	enum sasl_error error;
	const char *login, *password;
};

#define CH SASL_CHALLENGE
#define CR SASL_CREDENTIALS
#define AB SASL_ABORTED
#define ER SASL_ERROR
#define USER_CH "VXNlcm5hbWU6"
#define PASS_CH "UGFzc3dvcmQ6"

/* clang-format off */
static const struct xchg_case xchg_cases[] = {
	{"PLAIN without initial response", "PLAIN", NULL, {"AHVzZXIAcGFzcw=="},
	 {CH, CR}, {""}, SASL_ERROR_NONE, "user", "pass"},
	{"PLAIN with initial response", "PLAIN", "AHVzZXIAcGFzcw==", {NULL},
	 {CR}, {NULL}, SASL_ERROR_NONE, "user", "pass"},
	{"mechanism name is case-insensitive", "plain", "AHVzZXIAcGFzcw==", {NULL},
	 {CR}, {NULL}, SASL_ERROR_NONE, "user", "pass"},
	{"PLAIN authzid equal to authcid", "PLAIN", "dXNlcgB1c2VyAHBhc3M=", {NULL},
	 {CR}, {NULL}, SASL_ERROR_NONE, "user", "pass"},
	{"PLAIN authzid equal but for case", "PLAIN", "VVNFUgB1c2VyAHBhc3M=", {NULL},
	 {CR}, {NULL}, SASL_ERROR_NONE, "user", "pass"},
	{"PLAIN UTF-8 credentials", "PLAIN", "AMOpdMOpAHDDpHNz", {NULL},
	 {CR}, {NULL}, SASL_ERROR_NONE, "\xc3\xa9t\xc3\xa9", "p\xc3\xa4ss"},
	{"PLAIN authzid mismatch", "PLAIN", "YWRtaW4AdXNlcgBwYXNz", {NULL},
	 {ER}, {NULL}, SASL_ERROR_AUTHZID, NULL, NULL},
	{"PLAIN authzid mismatch after challenge", "PLAIN", NULL, {"YWRtaW4AdXNlcgBwYXNz"},
	 {CH, ER}, {""}, SASL_ERROR_AUTHZID, NULL, NULL},
	{"PLAIN \"=\" empty initial response", "PLAIN", "=", {NULL},
	 {ER}, {NULL}, SASL_ERROR_PLAIN, NULL, NULL},
	{"PLAIN empty initial response", "PLAIN", "", {NULL},
	 {ER}, {NULL}, SASL_ERROR_PLAIN, NULL, NULL},
	{"PLAIN \"=\" empty response", "PLAIN", NULL, {"="},
	 {CH, ER}, {""}, SASL_ERROR_PLAIN, NULL, NULL},
	{"PLAIN empty password", "PLAIN", "AHVzZXIA", {NULL},
	 {ER}, {NULL}, SASL_ERROR_PLAIN, NULL, NULL},
	{"PLAIN one NUL only", "PLAIN", "dXNlcgBwYXNz", {NULL},
	 {ER}, {NULL}, SASL_ERROR_PLAIN, NULL, NULL},
	{"PLAIN bad base64", "PLAIN", NULL, {"AHVzZXIAcGFzcw"},
	 {CH, ER}, {""}, SASL_ERROR_DECODE, NULL, NULL},
	{"PLAIN bad base64 initial response", "PLAIN", "!!!!", {NULL},
	 {ER}, {NULL}, SASL_ERROR_DECODE, NULL, NULL},
	{"PLAIN \"*\" abort", "PLAIN", NULL, {"*"},
	 {CH, AB}, {""}, SASL_ERROR_NONE, NULL, NULL},
	{"PLAIN \"*\" as initial response aborts", "PLAIN", "*", {NULL},
	 {AB}, {NULL}, SASL_ERROR_NONE, NULL, NULL},
	{"LOGIN two steps", "LOGIN", NULL, {"dXNlcg==", "cGFzcw=="},
	 {CH, CH, CR}, {USER_CH, PASS_CH}, SASL_ERROR_NONE, "user", "pass"},
	{"LOGIN with initial response", "LOGIN", "dXNlcg==", {"cGFzcw=="},
	 {CH, CR}, {PASS_CH}, SASL_ERROR_NONE, "user", "pass"},
	{"LOGIN empty password is passed on", "LOGIN", NULL, {"dXNlcg==", "="},
	 {CH, CH, CR}, {USER_CH, PASS_CH}, SASL_ERROR_NONE, "user", ""},
	{"LOGIN \"=\" empty user name", "LOGIN", NULL, {"="},
	 {CH, ER}, {USER_CH}, SASL_ERROR_EMPTY_LOGIN, NULL, NULL},
	{"LOGIN \"=\" empty initial response", "LOGIN", "=", {NULL},
	 {ER}, {NULL}, SASL_ERROR_EMPTY_LOGIN, NULL, NULL},
	{"LOGIN NUL in user name", "LOGIN", NULL, {"dXMAZXI="},
	 {CH, ER}, {USER_CH}, SASL_ERROR_LOGIN, NULL, NULL},
	{"LOGIN NUL in password", "LOGIN", NULL, {"dXNlcg==", "cABzcw=="},
	 {CH, CH, ER}, {USER_CH, PASS_CH}, SASL_ERROR_LOGIN, NULL, NULL},
	{"LOGIN bad base64 password", "LOGIN", NULL, {"dXNlcg==", "cGFzcw"},
	 {CH, CH, ER}, {USER_CH, PASS_CH}, SASL_ERROR_DECODE, NULL, NULL},
	{"LOGIN \"*\" abort at user name", "LOGIN", NULL, {"*"},
	 {CH, AB}, {USER_CH}, SASL_ERROR_NONE, NULL, NULL},
	{"LOGIN \"*\" abort at password", "LOGIN", NULL, {"dXNlcg==", "*"},
	 {CH, CH, AB}, {USER_CH, PASS_CH}, SASL_ERROR_NONE, NULL, NULL},
	{"unsupported mechanism", "CRAM-MD5", NULL, {NULL},
	 {ER}, {NULL}, SASL_ERROR_MECHANISM, NULL, NULL},
	{"unsupported mechanism with initial response", "XOAUTH2", "AHVzZXIAcGFzcw==", {NULL},
	 {ER}, {NULL}, SASL_ERROR_MECHANISM, NULL, NULL},
	{"step after credentials", "PLAIN", "AHVzZXIAcGFzcw==", {"AHVzZXIAcGFzcw=="},
	 {CR, ER}, {NULL}, SASL_ERROR_STATE, NULL, NULL},
};
/* clang-format on */

/* True when the whole struct is zero: no secret is left behind. */
static bool
xchg_wiped(const struct sasl_server *srv)
{
	const unsigned char *p = (const unsigned char *)srv;

	for (size_t i = 0; i < sizeof(*srv); i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Runs one exchange row and checks every result, the challenges, the outcome and the wiping. */
static void
test_xchg(void **state)
{
	const struct xchg_case *tc = *state;
	struct sasl_server srv;
	struct sasl_step step;
	enum sasl_result r;
	size_t i = 0;

	memset(&srv, 0xa5, sizeof(srv)); /* start must not depend on a zeroed server */
	r = sasl_server_start(&srv, tc->mech, tc->ir, &step);
	for (;;) {
		assert_int_equal(r, tc->results[i]);
		if (r == SASL_CHALLENGE)
			assert_string_equal(step.challenge, tc->challenges[i]);
		if (i >= XCHG_LINES || tc->lines[i] == NULL)
			break;
		r = sasl_server_step(&srv, tc->lines[i], &step);
		i++;
	}
	switch (r) {
	case SASL_CREDENTIALS:
		assert_string_equal(step.login, tc->login);
		assert_string_equal(step.password, tc->password);
		sasl_server_reset(&srv);
		break;
	case SASL_ERROR:
		assert_int_equal(step.error, tc->error);
		assert_non_null(step.reason);
		assert_true(step.reason[0] != '\0');
		break;
	case SASL_ABORTED:
	case SASL_CHALLENGE:
		break;
	}
	if (r != SASL_CHALLENGE)
		assert_true(xchg_wiped(&srv));
}

/* Builds a base64 line from len bytes of msg. */
static void
xchg_encode(char *out, size_t outsize, const char *msg, size_t len)
{
	assert_int_equal(base64_encode(msg, len, out, outsize), 0);
}

/* Over-long fields and responses: PLAIN fields and LOGIN lines of SASL_FIELD_MAX bytes fit, one
 * more does not; a response decoding past SASL_DECODED_MAX fails to decode. */
static void
test_xchg_limits(void **state)
{
	static char msg[SASL_DECODED_MAX + 16], b64[2 * (SASL_DECODED_MAX + 16)];
	struct sasl_server srv = {0};
	struct sasl_step step;
	size_t n;

	(void)state;
	for (size_t extra = 0; extra <= 1; extra++) {
		/* PLAIN: "\0" + authcid of 512 (+1) + "\0" + "p" */
		n = 0;
		msg[n++] = '\0';
		memset(msg + n, 'u', SASL_FIELD_MAX + extra);
		n += SASL_FIELD_MAX + extra;
		msg[n++] = '\0';
		msg[n++] = 'p';
		xchg_encode(b64, sizeof(b64), msg, n);
		if (!extra) {
			assert_int_equal(sasl_server_start(&srv, "PLAIN", b64, &step),
			                 SASL_CREDENTIALS);
			assert_int_equal(strlen(step.login), SASL_FIELD_MAX);
			sasl_server_reset(&srv);
		} else {
			assert_int_equal(sasl_server_start(&srv, "PLAIN", b64, &step), SASL_ERROR);
			assert_int_equal(step.error, SASL_ERROR_PLAIN);
		}

		/* LOGIN: a user name, then a password, of 512 (+1) bytes */
		memset(msg, 'l', SASL_FIELD_MAX + extra);
		xchg_encode(b64, sizeof(b64), msg, SASL_FIELD_MAX + extra);
		assert_int_equal(sasl_server_start(&srv, "LOGIN", NULL, &step), SASL_CHALLENGE);
		if (!extra) {
			assert_int_equal(sasl_server_step(&srv, b64, &step), SASL_CHALLENGE);
			assert_int_equal(sasl_server_step(&srv, b64, &step), SASL_CREDENTIALS);
			assert_int_equal(strlen(step.login), SASL_FIELD_MAX);
			assert_int_equal(strlen(step.password), SASL_FIELD_MAX);
			sasl_server_reset(&srv);
		} else {
			assert_int_equal(sasl_server_step(&srv, b64, &step), SASL_ERROR);
			assert_int_equal(step.error, SASL_ERROR_LOGIN);
			assert_int_equal(sasl_server_start(&srv, "LOGIN", "dXNlcg==", &step),
			                 SASL_CHALLENGE);
			assert_int_equal(sasl_server_step(&srv, b64, &step), SASL_ERROR);
			assert_int_equal(step.error, SASL_ERROR_LOGIN);
		}
		assert_true(xchg_wiped(&srv));

		/* Any response: SASL_DECODED_MAX bytes decode, one more does not. */
		memset(msg, 'x', SASL_DECODED_MAX + extra);
		xchg_encode(b64, sizeof(b64), msg, SASL_DECODED_MAX + extra);
		assert_int_equal(sasl_server_start(&srv, "LOGIN", NULL, &step), SASL_CHALLENGE);
		assert_int_equal(sasl_server_step(&srv, b64, &step), SASL_ERROR);
		assert_int_equal(step.error, extra ? SASL_ERROR_DECODE : SASL_ERROR_LOGIN);
	}
}

/* A zeroed server is idle: a step is refused; reset is safe at any time. */
static void
test_xchg_idle(void **state)
{
	struct sasl_server srv = {0};
	struct sasl_step step;

	(void)state;
	assert_int_equal(sasl_server_step(&srv, "AHVzZXIAcGFzcw==", &step), SASL_ERROR);
	assert_int_equal(step.error, SASL_ERROR_STATE);
	sasl_server_reset(&srv);
	sasl_server_reset(&srv);
	assert_true(xchg_wiped(&srv));
	/* The user name held between LOGIN's steps is wiped by a reset. */
	assert_int_equal(sasl_server_start(&srv, "LOGIN", "dXNlcg==", &step), SASL_CHALLENGE);
	assert_false(xchg_wiped(&srv));
	sasl_server_reset(&srv);
	assert_true(xchg_wiped(&srv));
}

int
main(void)
{
	char esc[128];

	for (size_t i = 0; i < sizeof(b64_cases) / sizeof(b64_cases[0]); i++) {
		const struct b64_case *tc = &b64_cases[i];

		escape(esc, sizeof(esc), tc->in.s, tc->in.len);
		add_test(test_b64_decode, (void *)tc, "base64 decode \"%s\" (outsize %zu) -> %ld",
		         esc, tc->outsize, tc->ret);
	}
	add_test(test_b64_encode, NULL, "base64 encode vectors and exact-fit output size");
	add_test(test_b64_roundtrip, NULL, "base64 round trip of every length 0..256");
	for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
		const struct plain_case *tc = &plain_cases[i];

		add_test(test_plain, (void *)tc, "PLAIN %s -> %s", tc->what,
		         tc->ret == 0 ? "ok" : "refused");
	}
	add_test(test_plain_limits, NULL, "PLAIN fields of 512 bytes fit, 513 do not");
	for (size_t i = 0; i < sizeof(xchg_cases) / sizeof(xchg_cases[0]); i++) {
		const struct xchg_case *tc = &xchg_cases[i];

		add_test(test_xchg, (void *)tc, "exchange: %s", tc->what);
	}
	add_test(test_xchg_limits, NULL,
	         "exchange: 512-byte fields fit, 513 do not; responses over %d bytes do not decode",
	         SASL_DECODED_MAX);
	add_test(test_xchg_idle, NULL, "exchange: an idle server refuses a step; reset wipes");
	return _cmocka_run_group_tests("sasl", tests, ntests, NULL, NULL);
}
