/* test_imap_context: RFC 5267's RETURN options as imap_context reads them from parsed commands
 * (each command fed to the IMAP parser one byte at a time): valid lists and what they ask for,
 * invalid ones refused; the PARTIAL range grammar (nz-number ":" nz-number, either order, no
 * "*", 32 bits); the sequence sets and PARTIAL windows it writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "imap/imap_context.h"
#include "imap/imap_parser.h"

/* Feeds line one byte at a time; returns the parser holding the command (free it). */
static struct imap_parser *
parse_bytewise(const char *line)
{
	struct imap_parser *p = imap_parser_new(NULL);
	size_t len = strlen(line), used;
	int ret = IMAP_PARSE_NEED_MORE;

	for (size_t i = 0; i < len; i++) {
		ret = imap_parser_feed(p, line + i, 1, &used);
		assert_int_equal(used, 1);
		if (i + 1 < len)
			assert_int_equal(ret, IMAP_PARSE_NEED_MORE);
	}
	assert_int_equal(ret, IMAP_PARSE_COMMAND);
	return p;
}

/* Parses the RETURN list of "t SEARCH RETURN (opts) ALL". */
static int
return_of(const char *opts, struct imap_search_ret *r, const char **error_r)
{
	char line[256];
	struct imap_parser *p;
	const struct imap_command *cmd;
	int ret;

	snprintf(line, sizeof(line), "t SEARCH RETURN (%s) ALL\r\n", opts);
	p = parse_bytewise(line);
	cmd = imap_parser_command(p);
	assert_true(cmd->nargs >= 2);
	assert_int_equal(cmd->args[1].type, IMAP_ARG_LIST);
	ret = imap_context_return_parse(&cmd->args[1], r, error_r);
	imap_parser_free(&p);
	return ret;
}

static const struct {
	const char *opts;
	unsigned bits;
	uint32_t lo, hi;
	const char *range;
} valid[] = {
    {"", IMAP_SEARCH_RET_ALL, 0, 0, ""},
    {"MIN MAX", IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX, 0, 0, ""},
    {"update", IMAP_SEARCH_RET_UPDATE, 0, 0, ""},
    {"CONTEXT COUNT", IMAP_SEARCH_RET_CONTEXT | IMAP_SEARCH_RET_COUNT, 0, 0, ""},
    {"UPDATE ALL", IMAP_SEARCH_RET_UPDATE | IMAP_SEARCH_RET_ALL, 0, 0, ""},
    {"PARTIAL 1:500", IMAP_SEARCH_RET_PARTIAL, 1, 500, "1:500"},
    {"PARTIAL 500:400", IMAP_SEARCH_RET_PARTIAL, 400, 500, "500:400"},
    {"partial 7:7 MIN", IMAP_SEARCH_RET_PARTIAL | IMAP_SEARCH_RET_MIN, 7, 7, "7:7"},
    {"UPDATE PARTIAL 1:4294967295 COUNT",
     IMAP_SEARCH_RET_UPDATE | IMAP_SEARCH_RET_PARTIAL | IMAP_SEARCH_RET_COUNT, 1, 4294967295u,
     "1:4294967295"},
};

static const char *const invalid[] = {
    "FROB",
    "PARTIAL",         /* no range */
    "PARTIAL 1:2 ALL", /* 4.4: one PARTIAL or one ALL */
    "ALL PARTIAL 1:2",
    "PARTIAL 1:2 PARTIAL 3:4", /* twice */
    "PARTIAL 0:5",             /* nz-number */
    "PARTIAL 5:0",
    "PARTIAL 1:*", /* no "*" */
    "PARTIAL *:1",
    "PARTIAL 5", /* a number, not a range */
    "PARTIAL 1:2:3",
    "PARTIAL 1:2x",
    "PARTIAL 01:2",         /* nz-number has no leading zero */
    "PARTIAL 1:4294967296", /* past 32 bits */
    "PARTIAL \"1:2\"",      /* a string, not an atom */
    "PARTIAL (1:2)",
    "MIN (MAX)",
};

static void
test_return_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		struct imap_search_ret r;
		const char *error = NULL;

		assert_int_equal(return_of(valid[i].opts, &r, &error), 0);
		assert_true(r.esearch);
		assert_int_equal(r.bits, valid[i].bits);
		if (r.bits & IMAP_SEARCH_RET_PARTIAL) {
			assert_int_equal(r.lo, valid[i].lo);
			assert_int_equal(r.hi, valid[i].hi);
			assert_string_equal(r.range, valid[i].range);
		}
	}
}

static void
test_return_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		struct imap_search_ret r;
		const char *error = NULL;

		if (return_of(invalid[i], &r, &error) != -1)
			fail_msg("accepted: RETURN (%s)", invalid[i]);
		assert_non_null(error);
	}
}

static void
test_range(void **state)
{
	static const char *const bad[] = {
	    "",    ":",    "1",    "1:",   ":1",   "0:1",           "1:0",
	    "a:b", "1:2 ", " 1:2", "1::2", "1:-2", "99999999999:1", "4294967296:1"};
	uint32_t lo, hi;

	(void)state;
	assert_int_equal(imap_context_range_parse("3:9", &lo, &hi), 0);
	assert_int_equal(lo, 3);
	assert_int_equal(hi, 9);
	assert_int_equal(imap_context_range_parse("9:3", &lo, &hi), 0);
	assert_int_equal(lo, 3);
	assert_int_equal(hi, 9);
	assert_int_equal(imap_context_range_parse("4294967295:4294967295", &lo, &hi), 0);
	assert_int_equal(lo, 4294967295u);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (imap_context_range_parse(bad[i], &lo, &hi) != -1)
			fail_msg("range accepted: \"%s\"", bad[i]);
}

static char *
drain(struct evbuffer *out)
{
	size_t n = evbuffer_get_length(out);
	char *s = calloc(1, n + 1);

	evbuffer_remove(out, s, n);
	return s;
}

/* Writes ids as the answer to "PARTIAL range" and compares with want. */
static void
check_partial(const char *range, const uint32_t *ids, size_t n, const char *want)
{
	struct evbuffer *out = evbuffer_new();
	struct imap_search_ret r = {0};
	char *s;

	assert_int_equal(imap_context_range_parse(range, &r.lo, &r.hi), 0);
	strcpy(r.range, range);
	imap_context_write_partial(out, &r, ids, n);
	s = drain(out);
	assert_string_equal(s, want);
	free(s);
	evbuffer_free(out);
}

static void
test_write(void **state)
{
	static const uint32_t sorted[] = {1, 2, 3, 5, 7, 8};
	static const uint32_t order[] = {5, 4, 3, 9, 10, 4294967294u, 4294967295u};
	struct evbuffer *out = evbuffer_new();
	char *s;

	(void)state;
	imap_context_write_set(out, sorted, 6);
	s = drain(out);
	assert_string_equal(s, "1:3,5,7:8");
	free(s);
	/* Sort order: a descending run stays a list (RFC 5267 3.2). */
	imap_context_write_set(out, order, 7);
	s = drain(out);
	assert_string_equal(s, "5,4,3,9:10,4294967294:4294967295");
	free(s);
	evbuffer_free(out);
	/* The window in the answer's order, the range echoed as sent, NIL past the end. */
	check_partial("4:2", sorted, 6, " PARTIAL (4:2 2:3,5)");
	check_partial("5:100", sorted, 6, " PARTIAL (5:100 7:8)");
	check_partial("7:9", sorted, 6, " PARTIAL (7:9 NIL)");
	check_partial("1:1", NULL, 0, " PARTIAL (1:1 NIL)");
	check_partial("2:3", order, 7, " PARTIAL (2:3 4,3)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_return_valid),
	    cmocka_unit_test(test_return_invalid),
	    cmocka_unit_test(test_range),
	    cmocka_unit_test(test_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
