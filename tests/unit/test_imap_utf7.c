/* test_imap_utf7: modified UTF-7 mailbox names (RFC 3501 5.1.3), both ways, with the RFC's own
 * example and the invalid forms a server must refuse. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_utf7.h"

static const struct {
	const char *utf8, *utf7;
} pairs[] = {
    {"INBOX", "INBOX"},
    {"", ""},
    {"a&b", "a&-b"},
    {"&", "&-"},
    {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "~peter/mail/&U,BTFw-/&ZeVnLIqe-"}, /* RFC 3501 5.1.3 */
    {"Entw\xc3\xbc"
     "rfe",
     "Entw&APw-rfe"},
    {"\xc3\xa9t\xc3\xa9", "&AOk-t&AOk-"},
    {"\xf0\x9f\x93\xa7 mail", "&2D3c5w- mail"}, /* U+1F4E7: a surrogate pair */
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "&BB8EQAQ4BDIENQRC-"},
};

static void
test_utf7_pairs(void **state)
{
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		printf("# encode \"%s\" -> \"%s\"\n", pairs[i].utf8, pairs[i].utf7);
		assert_int_equal(imap_utf7_encode(pairs[i].utf8, buf, sizeof(buf)), 0);
		assert_string_equal(buf, pairs[i].utf7);
		printf("# decode \"%s\" -> \"%s\"\n", pairs[i].utf7, pairs[i].utf8);
		assert_int_equal(imap_utf7_decode(pairs[i].utf7, buf, sizeof(buf)), 0);
		assert_string_equal(buf, pairs[i].utf8);
	}
}

static void
test_utf7_invalid(void **state)
{
	static const char *const bad[] = {
	    "&",         /* unterminated */
	    "&AOk",      /* no '-' */
	    "&-&",       /* unterminated after a valid escape */
	    "&AGE-",     /* encodes 'a': printable ASCII must be direct */
	    "&2D0-",     /* a lone high surrogate */
	    "&3D0-",     /* a lone low surrogate */
	    "&AOl-",     /* leftover bits not zero */
	    "&AAk-",     /* a control character (TAB) */
	    "a\xc3\xa9", /* 8-bit bytes are not modified UTF-7 */
	    "a\tb",      /* control characters */
	    "&A-",       /* too few bits for one unit */
	    "&AO/-",     /* '/' is not in the modified alphabet */
	    /* Non-canonical spellings (issue 10): each would re-encode differently. */
	    "&j,I-&,,I-",     /* two adjacent shifts: one shift "&j,L,8g-" is canonical */
	    "&AOk-&AOk-",     /* "\xc3\xa9\xc3\xa9" is "&AOkA6Q-" */
	    "a&AOk-&2D3c5w-", /* a BMP shift next to a surrogate-pair shift */
	    "&AGEAYg-",       /* "ab" in base64 */
	    "&AOkAYQ-",       /* 'a' after U+00E9 inside the shift */
	    "&AOn-",          /* padding bits not zero */
	    "&AOkA-",         /* a partial unit: 6 bits more than the padding */
	    "&AOkAAA-",       /* U+0000 inside the shift */
	    "&-&",            /* an unterminated shift after "&-" */
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		printf("# refuse \"%s\"\n", bad[i]);
		assert_int_equal(imap_utf7_decode(bad[i], buf, sizeof(buf)), -1);
	}
	printf("# refuse invalid UTF-8 when encoding\n");
	assert_int_equal(imap_utf7_encode("\xc3(", buf, sizeof(buf)), -1);
	assert_int_equal(imap_utf7_encode("\xed\xa0\x80", buf, sizeof(buf)), -1); /* surrogate */
	assert_int_equal(imap_utf7_encode("\xc0\xaf", buf, sizeof(buf)), -1);     /* overlong */
	printf("# refuse control characters when encoding (found by fuzz_imap_utf7)\n");
	assert_int_equal(imap_utf7_encode("\n", buf, sizeof(buf)), -1);
	assert_int_equal(imap_utf7_encode("a\x7f", buf, sizeof(buf)), -1);
}

static void
test_utf7_bounds(void **state)
{
	char small[6];

	(void)state;
	printf("# output buffer bounds are kept both ways\n");
	assert_int_equal(imap_utf7_encode("abcde", small, sizeof(small)), 0);
	assert_int_equal(imap_utf7_encode("abcdef", small, sizeof(small)), -1);
	assert_int_equal(imap_utf7_encode("\xc3\xa9\xc3\xa9", small, sizeof(small)), -1);
	assert_int_equal(imap_utf7_decode("&AOk-&AOk-&AOk-", small, sizeof(small)), -1);
	assert_int_equal(imap_utf7_decode("abc", small, 0), -1);
}

/* Every byte string of length <= 3 over an interesting alphabet: decode never crashes and what
 * decodes re-encodes to the same text (the encoding is canonical). */
static void
test_utf7_roundtrip_exhaustive(void **state)
{
	static const char alpha[] = "&-AOkw2D3c5,+a";
	const size_t n = sizeof(alpha) - 1;
	char in[8], out[64], back[64];
	unsigned ok = 0;

	(void)state;
	for (size_t len = 1; len <= 5; len++) {
		size_t total = 1;

		for (size_t i = 0; i < len; i++)
			total *= n;
		for (size_t k = 0; k < total; k++) {
			size_t v = k;

			for (size_t i = 0; i < len; i++) {
				in[i] = alpha[v % n];
				v /= n;
			}
			in[len] = '\0';
			if (imap_utf7_decode(in, out, sizeof(out)) < 0)
				continue;
			ok++;
			assert_int_equal(imap_utf7_encode(out, back, sizeof(back)), 0);
			assert_string_equal(back, in);
		}
	}
	printf("# %u valid names re-encode to themselves\n", ok);
	assert_true(ok > 100);
}

/* Names built from two canonical pieces: the concatenation decodes only when it is canonical,
 * i.e. when it re-encodes to itself (issue 10: "&j,I-&,,I-" decoded and LIST showed another
 * spelling). */
static void
test_utf7_roundtrip_pairs(void **state)
{
	static const char *const pieces[] = {
	    "a", "&-", "&AOk-", "&j,I-", "&,,I-", "&2D3c5w-", "&AOkA6Q-", "-", "&U,BTFw-", "/",
	};
	const size_t n = sizeof(pieces) / sizeof(pieces[0]);
	char in[64], out[64], back[64];
	unsigned ok = 0, refused = 0;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			for (size_t k = 0; k < n; k++) {
				snprintf(in, sizeof(in), "%s%s%s", pieces[i], pieces[j], pieces[k]);
				if (imap_utf7_decode(in, out, sizeof(out)) < 0) {
					refused++;
					continue;
				}
				ok++;
				assert_int_equal(imap_utf7_encode(out, back, sizeof(back)), 0);
				assert_string_equal(back, in);
			}
		}
	}
	printf("# %u names re-encode to themselves, %u non-canonical refused\n", ok, refused);
	assert_true(refused > 0 && ok > 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf7_pairs),
	    cmocka_unit_test(test_utf7_invalid),
	    cmocka_unit_test(test_utf7_bounds),
	    cmocka_unit_test(test_utf7_roundtrip_exhaustive),
	    cmocka_unit_test(test_utf7_roundtrip_pairs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
