/* table: what the table-driven unit tests share: byte strings that may hold NULs, printable
 * names for TAP, and a registry of named tests built at run time (one per table row).
 * Include after <cmocka.h>. Everything is static: each test file gets its own copy. */
#ifndef TERN_TEST_TABLE_H
#define TERN_TEST_TABLE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* A byte string that may hold NULs. */
struct bytes {
	const char *s;
	size_t len;
};
/* clang-format off */
#define B(lit) {lit, sizeof(lit) - 1}
/* clang-format on */

#define TESTS_MAX 1024 /* named tests per file */
static struct CMUnitTest tests[TESTS_MAX];
static size_t ntests;

/* Renders s printably (\r, \n, \xNN; '#' too, which TAP reads as a directive), cut at about
 * 70 bytes. */
static void
escape(char *dst, size_t dstsize, const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 8 < dstsize; i++) {
		unsigned char c = (unsigned char)s[i];

		if (n > 70) {
			n += (size_t)snprintf(dst + n, dstsize - n, "...");
			break;
		}
		if (c == '\r')
			n += (size_t)snprintf(dst + n, dstsize - n, "\\r");
		else if (c == '\n')
			n += (size_t)snprintf(dst + n, dstsize - n, "\\n");
		else if (c < 0x20 || c >= 0x7f || c == '\\' || c == '#')
			n += (size_t)snprintf(dst + n, dstsize - n, "\\x%02x", c);
		else
			dst[n++] = (char)c;
	}
	dst[n] = '\0';
}

/* Registers one test; the name is what the TAP output prints. */
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

#endif
