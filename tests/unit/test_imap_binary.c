/* test_imap_binary: the BINARY decoder (RFC 3516 over RFC 2045's base64 and quoted-printable),
 * each case fed whole, in every two-way split and one byte at a time: the output never depends
 * on how the part is chunked (FETCH decodes it one file read at a time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_binary.h"

#define B(s) s, sizeof(s) - 1

static const struct {
	const char *what;
	const char *cte;
	const char *in;
	size_t inlen;
	const char *out;
	size_t outlen;
} cases[] = {
    {"identity: CRLF kept", "7bit", B("a\r\nb\r\n"), B("a\r\nb\r\n")},
    {"identity: bare LF becomes CRLF", "", B("a\nb\n"), B("a\r\nb\r\n")},
    {"identity: 8bit and NUL as they are", "binary", B("\xff\0x"), B("\xff\0x")},
    {"base64: NULs", "base64", B("AAECAw=="), B("\0\1\2\3")},
    {"base64: line breaks and junk ignored", "base64", B("QU\r\nIA\nQ0\t Q=\r\n"), B("AB\0CD")},
    {"base64: nothing after padding", "base64", B("QQ==QUJD"), B("A")},
    {"base64: unpadded tail", "base64", B("QUJDRA"), B("ABCD")},
    {"qp: escapes in any case", "quoted-printable", B("=C3=a9=3D"), B("\xc3\xa9=")},
    {"qp: soft line break", "quoted-printable", B("soft=\r\nbreak=\nx"), B("softbreakx")},
    {"qp: soft break after whitespace", "quoted-printable", B("a= \t\r\nb"), B("ab")},
    {"qp: trailing whitespace dropped", "quoted-printable", B("a  \r\nb\t\nc "), B("a\r\nb\r\nc ")},
    {"qp: inner whitespace kept", "quoted-printable", B("a  b\r\n"), B("a  b\r\n")},
    {"qp: bare LF becomes CRLF", "quoted-printable", B("a\nb"), B("a\r\nb")},
    {"qp: bare CR kept", "quoted-printable", B("a\rb"), B("a\rb")},
    {"qp: malformed escapes kept", "quoted-printable", B("=G1=4x=\t y"), B("=G1=4x=\t y")},
    {"qp: '=' and whitespace at the end", "quoted-printable", B("ab= "), B("ab= ")},
    {"qp: escape cut at the end", "quoted-printable", B("ab=4"), B("ab=4")},
    {"qp: '=' at the end", "quoted-printable", B("ab="), B("ab=")},
    {"qp: encoded NUL", "quoted-printable", B("=00"), B("\0")},
};

/* Decodes in as the given chunk sizes (0: whole). */
static char *
decode(const char *cte, const char *in, size_t len, size_t chunk, size_t *outlen_r)
{
	struct imap_binary_dec d;
	char *out = malloc(IMAP_BINARY_OUT(len) + 16), *tmp = malloc(IMAP_BINARY_OUT(len) + 16);
	size_t n = 0;

	assert_non_null(out);
	imap_binary_dec_init(&d, imap_binary_cte(cte));
	for (size_t off = 0; off < len;) {
		size_t step = chunk == 0 || chunk > len - off ? len - off : chunk;
		size_t got = imap_binary_dec_feed(&d, in + off, step, tmp);

		assert_true(got <= IMAP_BINARY_OUT(step));
		memcpy(out + n, tmp, got);
		n += got;
		off += step;
	}
	n += imap_binary_dec_end(&d, out + n);
	free(tmp);
	*outlen_r = n;
	return out;
}

static void
check(size_t i, size_t chunk, const char *got, size_t n)
{
	if (n != cases[i].outlen || memcmp(got, cases[i].out, n) != 0)
		fail_msg("%s (chunk %zu): %zu bytes, want %zu", cases[i].what, chunk, n,
		         cases[i].outlen);
}

static void
test_cases(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		char *got;

		print_message("# %s\n", cases[i].what);
		for (size_t chunk = 0; chunk <= cases[i].inlen; chunk++) {
			got = decode(cases[i].cte, cases[i].in, cases[i].inlen, chunk, &n);
			check(i, chunk, got, n);
			free(got);
		}
	}
}

static void
test_cte_names(void **state)
{
	assert_int_equal(imap_binary_cte(""), IMAP_CTE_IDENTITY);
	assert_int_equal(imap_binary_cte("7bit"), IMAP_CTE_IDENTITY);
	assert_int_equal(imap_binary_cte("8bit"), IMAP_CTE_IDENTITY);
	assert_int_equal(imap_binary_cte("binary"), IMAP_CTE_IDENTITY);
	assert_int_equal(imap_binary_cte("base64"), IMAP_CTE_BASE64);
	assert_int_equal(imap_binary_cte("quoted-printable"), IMAP_CTE_QP);
	assert_int_equal(imap_binary_cte("x-uuencode"), IMAP_CTE_UNKNOWN);
}

/* A long quoted-printable run of whitespace never grows the held-back buffer past its size. */
static void
test_qp_long_whitespace(void **state)
{
	char in[1000], *got;
	size_t n;

	memset(in, ' ', sizeof(in));
	in[sizeof(in) - 1] = 'x';
	for (size_t chunk = 1; chunk <= sizeof(in); chunk *= 3) {
		got = decode("quoted-printable", in, sizeof(in), chunk, &n);
		assert_int_equal(n, sizeof(in));
		assert_memory_equal(got, in, n);
		free(got);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_cte_names),
	    cmocka_unit_test(test_qp_long_whitespace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
