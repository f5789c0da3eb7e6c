/* test_imap_url: RFC 5092 IMAP URLs as CATENATE uses them: valid forms and what they name,
 * invalid ones refused; every proper prefix of a valid URL is parsed without reading past its
 * end (fed as its own buffer, one byte shorter at a time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_url.h"

static const struct {
	const char *url;
	const char *user, *mailbox;
	uint32_t uidvalidity, uid;
	const char *section;
	bool partial;
	uint32_t poff, plen;
} valid[] = {
    {"/INBOX;UIDVALIDITY=1234/;UID=7", "", "INBOX", 1234, 7, "", false, 0, 0},
    {"/INBOX/;UID=7", "", "INBOX", 0, 7, "", false, 0, 0},
    {"/Sent%20Items;UIDVALIDITY=9/;UID=3/;SECTION=1.2", "", "Sent Items", 9, 3, "1.2", false, 0, 0},
    {"/a/b/c;UIDVALIDITY=1/;UID=4294967295/;SECTION=HEADER.FIELDS%20(From%20To)", "", "a/b/c", 1,
     4294967295u, "HEADER.FIELDS (From To)", false, 0, 0},
    {"/INBOX;UIDVALIDITY=5/;UID=2/;SECTION=TEXT/;PARTIAL=0.1024", "", "INBOX", 5, 2, "TEXT", true,
     0, 1024},
    {"/INBOX;UIDVALIDITY=5/;UID=2/;PARTIAL=17", "", "INBOX", 5, 2, "", true, 17, 0},
    {"imap://alice@mail.example.org/INBOX;UIDVALIDITY=5/;UID=2", "alice", "INBOX", 5, 2, "", false,
     0, 0},
    {"imap://a%40b;AUTH=*@[::1]:143/Dr%C3%A4fte/;UID=9", "a@b",
     "Dr\xc3\xa4"
     "fte",
     0, 9, "", false, 0, 0},
    {"IMAP://host/x;uidvalidity=1/;uid=1/;section=1.mime", "", "x", 1, 1, "1.mime", false, 0, 0},
};

static const char *const invalid[] = {
    "",
    "INBOX;UIDVALIDITY=1/;UID=1",   /* not a path */
    "/INBOX",                       /* no UID */
    "/INBOX;UIDVALIDITY=1",         /* no UID */
    "/INBOX;UIDVALIDITY=1/;UID=0",  /* UID 0 */
    "/INBOX;UIDVALIDITY=1/;UID=01", /* leading zero */
    "/INBOX;UIDVALIDITY=0/;UID=1",  /* UIDVALIDITY 0 */
    "/INBOX;UIDVALIDITY=1/;UID=4294967296",
    "/;UID=1",          /* no mailbox */
    "//;UID=1",         /* mailbox "" */
    "/IN BOX/;UID=1",   /* a space */
    "/IN%2/;UID=1",     /* a short escape */
    "/IN%00BOX/;UID=1", /* NUL */
    "/INBOX%2F;UID=1",  /* the separator escaped */
    "/INBOX;UIDVALIDITY=1/;UID=1/;SECTION=",
    "/INBOX;UIDVALIDITY=1/;UID=1/;SECTION=/;PARTIAL=1",
    "/INBOX;UIDVALIDITY=1/;UID=1/;PARTIAL=",
    "/INBOX;UIDVALIDITY=1/;UID=1/;PARTIAL=1.0",
    "/INBOX;UIDVALIDITY=1/;UID=1;URLAUTH=anonymous:internal:0123",
    "/INBOX;UIDVALIDITY=1/;UID=1;EXPIRE=2030-01-01T00:00:00Z",
    "/INBOX;UIDVALIDITY=1/;UID=1x",
    "/INBOX?SUBJECT%20x",            /* a search URL */
    "imap://host",                   /* no path */
    "imap:///INBOX/;UID=1",          /* no host */
    "imap://u;AUTH=@h/INBOX/;UID=1", /* empty auth type */
    "http://host/INBOX/;UID=1",
};

static void
test_valid(void **state)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		struct imap_url u;
		const char *error = NULL;

		print_message("# %s\n", valid[i].url);
		if (imap_url_parse(valid[i].url, strlen(valid[i].url), &u, &error) != 0)
			fail_msg("%s: refused (%s)", valid[i].url, error);
		assert_string_equal(u.user, valid[i].user);
		assert_string_equal(u.mailbox, valid[i].mailbox);
		assert_int_equal(u.uidvalidity, valid[i].uidvalidity);
		assert_int_equal(u.uid, valid[i].uid);
		assert_string_equal(u.section, valid[i].section);
		assert_int_equal(u.partial, valid[i].partial);
		assert_int_equal(u.partial_offset, valid[i].poff);
		assert_int_equal(u.partial_len, valid[i].plen);
	}
}

static void
test_invalid(void **state)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		struct imap_url u;
		const char *error = NULL;

		if (imap_url_parse(invalid[i], strlen(invalid[i]), &u, &error) != -1)
			fail_msg("accepted: %s", invalid[i]);
		assert_non_null(error);
	}
}

/* Each prefix in a buffer of exactly its length (ASan catches a read past it); those that parse
 * name a UID. */
static void
test_prefixes(void **state)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		size_t len = strlen(valid[i].url);

		for (size_t n = 0; n <= len; n++) {
			char *buf = malloc(n > 0 ? n : 1);
			struct imap_url u;
			const char *error;

			memcpy(buf, valid[i].url, n);
			if (imap_url_parse(buf, n, &u, &error) == 0)
				assert_true(u.uid > 0 && u.mailbox[0] != '\0');
			free(buf);
		}
	}
}

static void
test_limits(void **state)
{
	char *big = malloc(IMAP_URL_MAX + 32);
	struct imap_url u;
	const char *error;

	memset(big, 'a', IMAP_URL_MAX + 32);
	big[0] = '/';
	memcpy(big + IMAP_URL_MAX - 8, "/;UID=1", 7);
	assert_int_equal(imap_url_parse(big, IMAP_URL_MAX - 1, &u, &error),
	                 -1); /* mailbox too long */
	assert_int_equal(imap_url_parse(big, IMAP_URL_MAX + 32, &u, &error), -1);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_prefixes),
	    cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
