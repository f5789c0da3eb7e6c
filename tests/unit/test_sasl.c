/* Unit tests for sasl: tables of base64 inputs (RFC 4648 / RFC 4954) and PLAIN messages
 * (RFC 4616); every row is its own named cmocka test. */
#include <setjmp.h>
#include <stdarg.h>
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
	ret = sasl_base64_decode(tc->in.s, tc->in.len, out, tc->outsize);
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

	assert_int_equal(sasl_base64_encode("", 0, out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(sasl_base64_encode("", 0, out, 0), -1);
	assert_int_equal(sasl_base64_encode("a", 1, out, sizeof(out)), 0);
	assert_string_equal(out, "YQ==");
	assert_int_equal(sasl_base64_encode("\0a\0b", 4, out, sizeof(out)), 0);
	assert_string_equal(out, "AGEAYg==");
	assert_int_equal(sasl_base64_encode("abc", 3, out, 5), 0);
	assert_string_equal(out, "YWJj");
	assert_int_equal(sasl_base64_encode("abc", 3, out, 4), -1);
	assert_int_equal(sasl_base64_encode("abcd", 4, out, 8), -1);
	assert_int_equal(sasl_base64_encode("abcd", 4, out, 9), 0);
	assert_string_equal(out, "YWJjZA==");
	assert_int_equal(sasl_base64_encode("x", SIZE_MAX, out, sizeof(out)), -1);
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

		assert_int_equal(sasl_base64_encode(bin, len, enc, sizeof(enc)), 0);
		ret = sasl_base64_decode(enc, strlen(enc), dec, sizeof(dec));
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
	return _cmocka_run_group_tests("sasl", tests, ntests, NULL, NULL);
}
