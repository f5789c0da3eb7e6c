/* test_mimeaddr: address lists rendered for SEARCH (as Dovecot matches them) and the first
 * address's mailbox and display form for SORT, from a table of raw header values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mime/mimeaddr.h"

static const struct {
	const char *raw, *render, *mailbox, *display;
} cases[] = {
    {"", "", NULL, NULL},
    {"alice@example.test", "alice@example.test", "alice", "alice@example.test"},
    {"Alice <alice@example.test>", "Alice <alice@example.test>", "alice", "Alice"},
    {"Alice Example <alice@example.test>", "\"Alice Example\" <alice@example.test>", "alice",
     "Alice Example"},
    {"\"Quoted, Name\" <q@example.test>", "\"Quoted, Name\" <q@example.test>", "q", "Quoted, Name"},
    /* comments are not part of the address */
    {"<user-from (comment)@ (comment) domain.org>", "user-from@domain.org", "user-from",
     "user-from@domain.org"},
    {"(a remark) plain@example.test", "plain@example.test", "plain", "plain@example.test"},
    /* an encoded word is one atom: decoded in place, not quoted */
    {"=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.test>",
     "J\xc3\xbcrgen M\xc3\xbcller <j@example.test>", "j", "J\xc3\xbcrgen M\xc3\xbcller"},
    {"a@x.test, B <b@y.test>", "a@x.test, B <b@y.test>", "a", "a@x.test"},
    /* groups: the name, the members, ";" */
    {"Undisclosed: hidden@example.test;", "Undisclosed: hidden@example.test;", "hidden",
     "hidden@example.test"},
    {"Empty:;", "Empty: ;", NULL, NULL},
    /* folded values and missing parts (as the ENVELOPE fills them) */
    {"Folded\r\n Name <f@example.test>", "\"Folded Name\" <f@example.test>", "f", "Folded Name"},
    {"nohost", "nohost@MISSING_DOMAIN", "nohost", "nohost@MISSING_DOMAIN"},
};

static void
test_mimeaddr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *r = mimeaddr_render(cases[i].raw, strlen(cases[i].raw));
		char *mbox = NULL, *display = NULL;
		int found = mimeaddr_first(cases[i].raw, strlen(cases[i].raw), &mbox, &display);

		printf("# [%zu] render \"%s\", first %s / %s\n", i, r, mbox ? mbox : "(none)",
		       display ? display : "(none)");
		assert_string_equal(r, cases[i].render);
		assert_int_equal(found, cases[i].mailbox != NULL);
		if (cases[i].mailbox != NULL) {
			assert_string_equal(mbox, cases[i].mailbox);
			assert_string_equal(display, cases[i].display);
		} else {
			assert_null(mbox);
			assert_null(display);
		}
		free(r);
		free(mbox);
		free(display);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mimeaddr_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
