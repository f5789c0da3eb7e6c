/* test_imap_subject: RFC 5256 2.1 base subject extraction, step by step, from a table (raw
 * Subject values, encoded words included), with the reply/forward flag THREAD uses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_subject.h"

static const struct {
	const char *raw, *base;
	bool reply;
} cases[] = {
    {"", "", false},
    {"hello", "hello", false},
    /* (1) white space: tabs and line breaks are spaces, runs collapse */
    {"  lots   of \t spaces  ", "lots of spaces", false},
    {"folded\r\n line", "folded line", false},
    /* (2) trailers */
    {"hello (fwd)", "hello", true},
    {"hello (FWD) (fwd)  ", "hello", true},
    {"hello(fwd)", "hello", true},
    {"(fwd)", "", true},
    /* (3) leaders */
    {"Re: hello", "hello", true},
    {"RE:hello", "hello", true},
    {"re : hello", "hello", true},
    {"Fw: hello", "hello", true},
    {"FWD: hello", "hello", true},
    {"Re[2]: hello", "hello", true},
    {"Re [list]: hello", "hello", true},
    {"[list] Re: hello", "hello", true},
    {"[a][b] Re: hello", "hello", true},
    {"Re: Re: Fwd: hello", "hello", true},
    {"Re:", "", true},
    {"Reply: hello", "Reply: hello", false},
    {"Ref: hello", "Ref: hello", false},
    {"Fwdx: hello", "Fwdx: hello", false},
    /* (4) a leading blob, unless nothing would be left */
    {"[list] hello", "hello", false},
    {"[list]", "[list]", false},
    {"[a] [b]", "[b]", false},
    {"[list] [other] Re: hello", "hello", true},
    {"[unclosed hello", "[unclosed hello", false},
    /* (5) repeated */
    {"Re: [list] Re: [list2] hello", "hello", true},
    /* (6) [fwd: ...] */
    {"[fwd: hello]", "hello", true},
    {"[Fwd: Re: hello] (fwd)", "hello", true},
    {"Re: [fwd: [list] hello]", "hello", true},
    {"[fwd: hello", "[fwd: hello", false},
    {"[list] Re: [Fwd: Lunch]  (fwd)", "Lunch", true},
    /* (1) encoded words decoded first */
    {"=?UTF-8?B?UmU6IGx1bmNo?=", "lunch", true},
    {"=?ISO-8859-1?Q?Gr=FC=DFe?=",
     "Gr\xc3\xbc\xc3\x9f"
     "e",
     false},
    {"Re: =?UTF-8?Q?=5Blist=5D?= hi", "hi", true},
    /* raw 8-bit text that is not UTF-8 is converted (GMime's fallback charsets) */
    {"Re: caf\xe9", "caf\xc3\xa9", true},
};

/* s with control characters escaped, for a TAP comment line. */
static const char *
printable(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	for (; *s != '\0' && o + 5 < size; s++) {
		if ((unsigned char)*s < 0x20)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", (unsigned char)*s);
		else
			buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

static void
test_subject_table(void **state)
{
	char esc[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool reply = !cases[i].reply;
		char *base = imap_subject_base(cases[i].raw, strlen(cases[i].raw), &reply);

		printf("# \"%s\" -> \"%s\" (%s)\n", printable(cases[i].raw, esc, sizeof(esc)), base,
		       reply ? "reply" : "not a reply");
		assert_string_equal(base, cases[i].base);
		assert_int_equal(reply, cases[i].reply);
		free(base);
	}
}

/* Decoded input: encoded words stay as they are; NUL ends the text; the size is bounded. */
static void
test_subject_decoded(void **state)
{
	static const char nul[] = "Re: a\0b";
	char *big = malloc(IMAP_SUBJECT_MAX * 2 + 1), *base;

	(void)state;
	base = imap_subject_base_decoded("=?UTF-8?B?UmU6IGx1bmNo?=", 24, NULL);
	assert_string_equal(base, "=?UTF-8?B?UmU6IGx1bmNo?=");
	free(base);
	base = imap_subject_base_decoded(nul, sizeof(nul) - 1, NULL);
	assert_string_equal(base, "a");
	free(base);
	memset(big, 'x', IMAP_SUBJECT_MAX * 2);
	memcpy(big, "Re: ", 4);
	big[IMAP_SUBJECT_MAX * 2] = '\0';
	base = imap_subject_base_decoded(big, IMAP_SUBJECT_MAX * 2, NULL);
	printf("# a %d-byte subject gives %zu bytes\n", IMAP_SUBJECT_MAX * 2, strlen(base));
	assert_int_equal(strlen(base), IMAP_SUBJECT_MAX - 4);
	free(base);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_subject_table),
	    cmocka_unit_test(test_subject_decoded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
