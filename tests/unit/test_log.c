/* Unit tests for lib/log: log_escape() and the shape of a log line on stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

struct escape_case {
	const char *src;
	size_t srclen;
	size_t dstsize;
	const char *want;
};

#define E(s, size, w)                                                                              \
	{                                                                                          \
		s, sizeof(s) - 1, size, w                                                          \
	}

static const struct escape_case escape_cases[] = {
    E("", 64, ""),
    E("plain text 123", 64, "plain text 123"),
    E("a\rb", 64, "a\\rb"),
    E("a\nb", 64, "a\\nb"),
    E("a\r\nb", 64, "a\\r\\nb"),
    E("tab\there", 64, "tab\\there"),
    E("nul\0byte", 64, "nul\\x00byte"),
    E("say \"hi\"", 64, "say \\\"hi\\\""),
    E("back\\slash", 64, "back\\\\slash"),
    E("\x01\x1f\x7f", 64, "\\x01\\x1f\\x7f"),
    E("caf\xc3\xa9", 64, "caf\\xc3\\xa9"),
    E("\xff\x80", 64, "\\xff\\x80"),
    E("key=value <a@b>", 64, "key=value <a@b>"),
    /* Truncation: what fits, then "...", always terminated within dstsize. */
    E("abcdefghijklmnopqrstuvwxyz", 12, "abcdefgh..."),
    E("abcdefghijklmnopqrstuvwxyz", 8, "abcd..."),
    E("\n\n\n\n\n\n\n\n", 10, "\\n\\n\\n..."),
    E("\xff\xff\xff\xff", 11, "\\xff..."),
    E("abcdef", 4, "..."),
    E("abcdef", 3, ""),
    E("abcdef", 1, ""),
};

static void
test_escape_table(void **state)
{
	for (size_t i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
		const struct escape_case *c = &escape_cases[i];
		char dst[128];

		memset(dst, 'Z', sizeof(dst));
		assert_ptr_equal(log_escape(dst, c->dstsize, c->src, c->srclen), dst);
		if (strcmp(dst, c->want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, dst, c->want);
		/* Nothing written past dstsize. */
		assert_int_equal(dst[c->dstsize], 'Z');
	}
}

static void
test_escape_properties(void **state)
{
	char src[256], dst[2048];

	for (int i = 0; i < 256; i++)
		src[i] = (char)i;
	log_escape(dst, sizeof(dst), src, sizeof(src));
	/* Every byte was kept: no "..." and only printable ASCII out. */
	assert_null(strstr(dst, "..."));
	for (const char *p = dst; *p != '\0'; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
	/* A quote only ever appears escaped, so it cannot end a quoted log value. */
	for (const char *p = dst; (p = strchr(p, '"')) != NULL; p++)
		assert_true(p > dst && p[-1] == '\\');

	/* Every size from 1 up, never past the end, always terminated. */
	for (size_t size = 1; size < 64; size++) {
		char out[80];

		memset(out, 'Z', sizeof(out));
		log_escape(out, size, src, sizeof(src));
		assert_true(strlen(out) < size);
		assert_int_equal(out[size], 'Z');
	}
	/* dstsize 0 writes nothing. */
	dst[0] = 'Z';
	log_escape(dst, 0, "abc", 3);
	assert_int_equal(dst[0], 'Z');
}

/* Runs fn with stderr sent to a temporary file and returns what it wrote (caller frees). */
static char *
capture_stderr(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *buf;
	long len;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	fflush(stderr);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	fn();
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);

	/* The log wrote through the shared file description: its offset is the length. */
	len = lseek(fileno(tmp), 0, SEEK_END);
	assert_true(len >= 0);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fileno(tmp), buf, (size_t)len, 0), len);
	fclose(tmp);
	return buf;
}

static void
emit_info(void)
{
	char esc[64];

	log_info("smtp session=abc event=mail-from from=<%s>",
	         log_escape(esc, sizeof(esc), "evil\r\nlevel=error", 17));
}

static void
emit_levels(void)
{
	log_set_level(LOG_WARN);
	log_debug("test event=debug");
	log_info("test event=info");
	log_warnx("test event=warnx");
	log_error("test event=error");
	log_set_level(LOG_INFO);
}

static void
emit_warn(void)
{
	errno = ENOENT;
	log_warn("test event=open path=/x");
}

static void
emit_long(void)
{
	char big[10000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_info("test big=%s", big);
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static void
test_info_line(void **state)
{
	char *out = capture_stderr(emit_info);

	assert_int_equal(count_lines(out), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_int_equal(strncmp(out, "ts=", 3), 0);
	assert_non_null(strstr(out, " prog=test_log level=info smtp session=abc event=mail-from "
	                            "from=<evil\\r\\nlevel=error>\n"));
	free(out);
}

static void
test_levels(void **state)
{
	char *out = capture_stderr(emit_levels);

	assert_int_equal(count_lines(out), 2);
	assert_null(strstr(out, "event=debug"));
	assert_null(strstr(out, "event=info"));
	assert_non_null(strstr(out, "level=warn test event=warnx\n"));
	assert_non_null(strstr(out, "level=error test event=error\n"));
	free(out);

	out = capture_stderr(emit_warn);
	assert_int_equal(count_lines(out), 1);
	assert_non_null(strstr(out, "test event=open path=/x errno=2 error=\""));
	free(out);
}

static void
test_long_line(void **state)
{
	char *out = capture_stderr(emit_long);

	/* Cut to the line buffer, but still exactly one line. */
	assert_int_equal(count_lines(out), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_true(strlen(out) <= 4096);
	free(out);
}

static void
test_level_parse(void **state)
{
	enum log_level level;

	assert_int_equal(log_level_parse("debug", &level), 1);
	assert_int_equal(level, LOG_DEBUG);
	assert_int_equal(log_level_parse("error", &level), 1);
	assert_int_equal(level, LOG_ERROR);
	assert_int_equal(log_level_parse("verbose", &level), 0);
	assert_int_equal(log_level_parse("INFO", &level), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_table), cmocka_unit_test(test_escape_properties),
	    cmocka_unit_test(test_info_line),    cmocka_unit_test(test_levels),
	    cmocka_unit_test(test_long_line),    cmocka_unit_test(test_level_parse),
	};

	log_init("test_log");
	log_set_level(LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
