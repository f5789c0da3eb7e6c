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

typedef const char *log_fn(char *dst, size_t dstsize, const char *src, size_t srclen);

/* Runs a table of cases through fn: exact output, nothing written past dstsize. */
static void
run_cases(log_fn *fn, const struct escape_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct escape_case *c = &cases[i];
		char dst[128];

		memset(dst, 'Z', sizeof(dst));
		assert_ptr_equal(fn(dst, c->dstsize, c->src, c->srclen), dst);
		if (strcmp(dst, c->want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, dst, c->want);
		assert_int_equal(dst[c->dstsize], 'Z');
	}
}

static void
test_escape_table(void **state)
{
	run_cases(log_escape, escape_cases, sizeof(escape_cases) / sizeof(escape_cases[0]));
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

static const struct escape_case value_cases[] = {
    E("", 64, "\"\""),
    E("alice@example.test", 64, "alice@example.test"),
    E("<a@b>", 64, "<a@b>"),
    /* The attack: a quoted local part with spaces and '=' stays one value. */
    E("\"a b=c x=y\"@example.test", 64, "\"\\\"a b=c x=y\\\"@example.test\""),
    E("a=b", 64, "\"a=b\""),
    E("two words", 64, "\"two words\""),
    E("back\\slash", 64, "\"back\\\\slash\""),
    E("a\r\nlevel=error", 64, "\"a\\x0d\\x0alevel=error\""),
    E("tab\t", 64, "\"tab\\x09\""),
    E("nul\0", 64, "\"nul\\x00\""),
    E("\x7f", 64, "\"\\x7f\""),
    /* Valid UTF-8 stays (quoted: not ASCII); C1 controls, overlongs, surrogates, bad
     * sequences and code points past U+10FFFF do not. */
    E("caf\xc3\xa9", 64, "\"caf\xc3\xa9\""),
    E("\xe2\x82\xac\xf0\x9f\x98\x80", 64, "\"\xe2\x82\xac\xf0\x9f\x98\x80\""),
    E("\xc2\x85", 64, "\"\\xc2\\x85\""),
    E("\xc0\xaf", 64, "\"\\xc0\\xaf\""),
    E("\xed\xa0\x80", 64, "\"\\xed\\xa0\\x80\""),
    E("\xf4\x90\x80\x80", 64, "\"\\xf4\\x90\\x80\\x80\""),
    E("\xe2\x82", 64, "\"\\xe2\\x82\""),
    E("\xff", 64, "\"\\xff\""),
    /* Truncation keeps the closing quote. */
    E("abcdefghijklmnopqrstuvwxyz", 12, "abcdefgh..."),
    E("a b c d e f g h i j", 12, "\"a b c ...\""),
    E("\"\"\"\"\"\"", 12, "\"\\\"\\\"\\\"...\""),
    E("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 12, "\"\xe2\x82\xac\xe2\x82\xac...\""),
    E("abc", 4, ""),
};

static void
test_value_table(void **state)
{
	run_cases(log_value, value_cases, sizeof(value_cases) / sizeof(value_cases[0]));
}

/* Splits a log value at the start of s the way a reader of key=value lines does; returns the
 * character after it. */
static const char *
skip_value(const char *s)
{
	if (*s != '"')
		return s + strcspn(s, " \n");
	for (s++; *s != '\0' && *s != '"'; s++) {
		if (*s == '\\' && s[1] != '\0')
			s++;
	}
	return *s == '"' ? s + 1 : s;
}

static void
test_value_properties(void **state)
{
	char src[256], dst[2048];

	/* Every byte value, one at a time and all together: one value, nothing after it. */
	for (int i = 0; i < 256; i++) {
		char one = (char)i;

		src[i] = (char)i;
		log_value(dst, sizeof(dst), &one, 1);
		assert_int_equal(*skip_value(dst), '\0');
	}
	log_value(dst, sizeof(dst), src, sizeof(src));
	assert_int_equal(*skip_value(dst), '\0');
	for (const char *p = dst; *p != '\0'; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
	/* Every size from 8 up, never past the end, always terminated and still one value. */
	for (size_t size = 8; size < 80; size++) {
		char out[96];

		memset(out, 'Z', sizeof(out));
		log_value(out, size, src, sizeof(src));
		assert_true(strlen(out) < size);
		assert_int_equal(out[size], 'Z');
		assert_int_equal(*skip_value(out), '\0');
	}
}

static void
emit_injection(void)
{
	char esc[128];
	const char *from = "\"a b=c x=y\"@example.test";

	log_info("smtp session=abc event=mail-from from=%s result=ok",
	         log_str(esc, sizeof(esc), from));
}

/* The keys of a log line, as a reader of key=value lines sees them. */
static void
test_injection_line(void **state)
{
	char *out = capture_stderr(emit_injection);
	const char *p = out;
	char keys[16][32];
	size_t n = 0;

	while (*p != '\0' && *p != '\n' && n < 16) {
		size_t klen = strcspn(p, "= \n");

		if (p[klen] != '=') { /* a bare word: the module name */
			p += klen;
			while (*p == ' ')
				p++;
			continue;
		}
		assert_true(klen < sizeof(keys[0]));
		memcpy(keys[n], p, klen);
		keys[n++][klen] = '\0';
		p = skip_value(p + klen + 1);
		while (*p == ' ')
			p++;
	}
	/* ts prog level session event from result: no key of the client's. */
	assert_int_equal(n, 7);
	assert_string_equal(keys[5], "from");
	assert_string_equal(keys[6], "result");
	assert_non_null(strstr(out, " from=\"\\\"a b=c x=y\\\"@example.test\" result=ok\n"));
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
	    cmocka_unit_test(test_escape_table),   cmocka_unit_test(test_escape_properties),
	    cmocka_unit_test(test_info_line),      cmocka_unit_test(test_levels),
	    cmocka_unit_test(test_long_line),      cmocka_unit_test(test_level_parse),
	    cmocka_unit_test(test_value_table),    cmocka_unit_test(test_value_properties),
	    cmocka_unit_test(test_injection_line),
	};

	log_init("test_log");
	log_set_level(LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
