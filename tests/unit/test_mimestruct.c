/* test_mimestruct: placeholder until the module lands. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mime/mimestruct.h"

static void
test_placeholder(void **state)
{
	(void)state;
	assert_null(mimestruct_load(NULL, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_placeholder)};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
