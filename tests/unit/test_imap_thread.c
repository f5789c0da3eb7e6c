/* test_imap_thread: the RFC 5256 threading algorithms on tables of messages (Message-ID,
 * references, base subject, reply flag, date) and the THREAD response data they give. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_sort.h"
#include "imap/imap_thread.h"

/* One message of a case: refs is a space-separated list of ids ("" none). */
struct tmsg {
	const char *id, *refs, *subject;
	bool reply;
	int64_t date;
};

struct tcase {
	const char *what;
	enum imap_thread_algo algo;
	struct tmsg msgs[8];
	size_t n;
	const char *expect;
};

#define R IMAP_THREAD_REFERENCES
#define O IMAP_THREAD_ORDEREDSUBJECT

static const struct tcase cases[] = {
    {"no messages", R, {{0}}, 0, ""},
    {"a chain",
     R,
     {{"<a@x>", "", "s", false, 1},
      {"<b@x>", "<a@x>", "s", true, 2},
      {"<c@x>", "<a@x> <b@x>", "s", true, 3}},
     3,
     "(1 2 3)"},
    {"siblings by date",
     R,
     {{"<a@x>", "", "s", false, 1},
      {"<b@x>", "<a@x>", "t", true, 5},
      {"<c@x>", "<a@x>", "u", true, 3}},
     3,
     "(1 (3)(2))"},
    {"a missing parent of two: a dummy root",
     R,
     {{"<a@x>", "<m@x>", "s", false, 1}, {"<b@x>", "<m@x>", "t", false, 2}},
     2,
     "((1)(2))"},
    {"a missing parent of one: pruned", R, {{"<a@x>", "<m@x>", "s", false, 1}}, 1, "(1)"},
    {"a dummy inside a thread is spliced out",
     R,
     {{"<a@x>", "", "s", false, 1},
      {"<b@x>", "<a@x> <m@x>", "s", true, 2},
      {"<c@x>", "<a@x> <m@x>", "s", true, 3}},
     3,
     "(1 (2)(3))"},
    {"a reference loop is not made",
     R,
     {{"<a@x>", "<b@x>", "s", false, 1}, {"<b@x>", "<a@x>", "t", false, 2}},
     2,
     "(2 1)"},
    {"a self reference is ignored", R, {{"<a@x>", "<a@x>", "s", false, 1}}, 1, "(1)"},
    {"a duplicate Message-ID is as none",
     R,
     {{"<a@x>", "", "s", false, 1}, {"<a@x>", "", "t", false, 2}, {"<c@x>", "<a@x>", "u", true, 3}},
     3,
     "(1 3)(2)"},
    {"the last reference wins over an earlier parent",
     R,
     {{"<a@x>", "", "s", false, 1},
      {"<b@x>", "", "t", false, 2},
      {"<c@x>", "<a@x>", "s", true, 3},
      {"<c2@x>", "<b@x> <c@x>", "s", true, 4}},
     4,
     "(1 3 4)(2)"},
    {"no Message-ID at all",
     R,
     {{NULL, "", "s", false, 2}, {NULL, "", "t", false, 1}},
     2,
     "(2)(1)"},
    {"subject: a reply joins the original",
     R,
     {{"<a@x>", "", "hello", false, 1}, {"<b@x>", "", "hello", true, 2}},
     2,
     "(1 2)"},
    {"subject: a reply seen first still joins the original",
     R,
     {{"<b@x>", "", "hello", true, 1}, {"<a@x>", "", "hello", false, 2}},
     2,
     "(2 1)"},
    {"subject: two originals become siblings under a dummy",
     R,
     {{"<a@x>", "", "hello", false, 1},
      {"<b@x>", "", "hello", false, 2},
      {"<c@x>", "", "other", false, 3}},
     3,
     "((1)(2))(3)"},
    {"subject: two replies too",
     R,
     {{"<a@x>", "", "hello", true, 1}, {"<b@x>", "", "hello", true, 2}},
     2,
     "((1)(2))"},
    {"subject: an empty subject is not gathered",
     R,
     {{"<a@x>", "", "", false, 1}, {"<b@x>", "", "", false, 2}},
     2,
     "(1)(2)"},
    {"subject: a dummy root takes the subject's messages",
     R,
     {{"<a@x>", "<m@x>", "hello", true, 1},
      {"<b@x>", "<m@x>", "hello", true, 3},
      {"<c@x>", "", "hello", false, 2}},
     3,
     "((1)(3)(2))"},
    {"dates tie in sequence order",
     R,
     {{"<a@x>", "", "s", false, 5}, {"<b@x>", "", "t", false, 5}},
     2,
     "(1)(2)"},
    {"orderedsubject",
     O,
     {{"<1@x>", "", "b", false, 3},
      {"<2@x>", "", "a", false, 1},
      {"<3@x>", "", "b", true, 2},
      {"<4@x>", "", "a", false, 4},
      {"<5@x>", "", "a", false, 2}},
     5,
     "(2 (5)(4))(3 1)"},
    {"orderedsubject ignores references",
     O,
     {{"<a@x>", "", "s", false, 1}, {"<b@x>", "<a@x>", "t", true, 2}},
     2,
     "(1)(2)"},
};

static char *
run_case(const struct tcase *c)
{
	struct imap_thread_msg msgs[8];
	char **refs[8];
	char *out;

	for (size_t i = 0; i < c->n; i++) {
		const struct tmsg *t = &c->msgs[i];

		refs[i] = imap_sort_msgids(t->refs, strlen(t->refs), 16, true, &msgs[i].nrefs);
		msgs[i].refs = refs[i];
		msgs[i].id = (uint32_t)i + 1;
		msgs[i].seq = (uint32_t)i + 1;
		msgs[i].date = t->date;
		msgs[i].subject = t->subject;
		msgs[i].reply = t->reply;
		msgs[i].message_id = t->id;
	}
	out = imap_thread_build(c->algo, msgs, c->n);
	for (size_t i = 0; i < c->n; i++) {
		for (size_t r = 0; r < msgs[i].nrefs; r++)
			free(refs[i][r]);
		free(refs[i]);
	}
	return out;
}

static void
test_thread_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = run_case(&cases[i]);

		printf("# %s: \"%s\" (expected \"%s\")\n", cases[i].what, out, cases[i].expect);
		assert_string_equal(out, cases[i].expect);
		free(out);
	}
}

/* Message-IDs: "<...@...>" tokens; the last ones are kept when there are too many. */
static void
test_thread_msgids(void **state)
{
	static const char text[] = "junk <a@x> <no-at> < b@x> <c@x><d@x>\r\n <e@x> <@> <f@>";
	size_t n;
	char **ids;

	(void)state;
	ids = imap_sort_msgids(text, strlen(text), 16, true, &n);
	assert_int_equal(n, 6);
	assert_string_equal(ids[0], "<a@x>");
	assert_string_equal(ids[1], "<c@x>");
	assert_string_equal(ids[2], "<d@x>");
	assert_string_equal(ids[3], "<e@x>");
	assert_string_equal(ids[4], "<@>");
	assert_string_equal(ids[5], "<f@>");
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	ids = imap_sort_msgids(text, strlen(text), 2, true, &n);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0], "<@>");
	assert_string_equal(ids[1], "<f@>");
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	ids = imap_sort_msgids(text, strlen(text), 1, false, &n);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], "<a@x>");
	free(ids[0]);
	free(ids);
}

/* A reply chain longer than the depth bound, built top-down and bottom-up: it is cut into
 * threads of 1,000 levels, fast, and every message is named once. */
static void
test_thread_deep(void **state)
{
	enum { N = 3000 };
	struct imap_thread_msg *msgs = calloc(N, sizeof(*msgs));
	char(*ids)[32] = calloc(N, sizeof(*ids));
	char **refp = calloc(N, sizeof(*refp));

	(void)state;
	for (int dir = 0; dir < 2; dir++) {
		size_t opens = 0;
		char *out;

		for (size_t i = 0; i < N; i++) {
			snprintf(ids[i], sizeof(ids[i]), "<m%zu@x>", i);
			msgs[i] = (struct imap_thread_msg){(uint32_t)i + 1,
			                                   (uint32_t)i + 1,
			                                   (int64_t)i,
			                                   ids[i],
			                                   true,
			                                   ids[i],
			                                   NULL,
			                                   0};
		}
		for (size_t i = 0; i < N; i++) {
			/* dir 0: each refers to the one before; dir 1: to the one after. */
			size_t r = dir == 0 ? i - 1 : i + 1;

			if ((dir == 0 && i == 0) || (dir == 1 && i == N - 1))
				continue;
			refp[i] = ids[r];
			msgs[i].refs = &refp[i];
			msgs[i].nrefs = 1;
		}
		out = imap_thread_build(IMAP_THREAD_REFERENCES, msgs, N);
		for (const char *p = out; *p != '\0'; p++)
			opens += *p == '(';
		printf("# chain of %d (%s): %zu threads, %zu bytes\n", N,
		       dir == 0 ? "top-down" : "bottom-up", opens, strlen(out));
		assert_int_equal(opens, 3);
		free(out);
	}
	free(refp);
	free(ids);
	free(msgs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_thread_table),
	    cmocka_unit_test(test_thread_msgids),
	    cmocka_unit_test(test_thread_deep),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
