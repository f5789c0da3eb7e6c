/* Unit tests for lib/buf (the growable string and array_grow) and lib/hash (the keyed hash
 * table): contents, growth across many sizes, NUL bytes, removal while iterating, and a
 * comparison of the table against a plain array over random operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/hash.h"

static void
test_buf_add(void **state)
{
	struct buf b = BUF_INIT;
	char *s;

	(void)state;
	assert_string_equal(buf_cstr(&b), "");
	buf_adds(&b, "hello");
	buf_addc(&b, ' ');
	buf_printf(&b, "%s %d", "world", 42);
	assert_string_equal(b.data, "hello world 42");
	assert_int_equal(b.len, 14);
	buf_add(&b, "a\0b", 3);
	assert_int_equal(b.len, 17);
	assert_memory_equal(b.data + 14, "a\0b", 4); /* and the terminating NUL */
	buf_truncate(&b, 5);
	assert_string_equal(buf_cstr(&b), "hello");
	buf_truncate(&b, 99); /* longer than the content: no change */
	assert_int_equal(b.len, 5);
	s = buf_steal(&b);
	assert_string_equal(s, "hello");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);
	s = buf_steal(&b); /* empty: "" and never NULL */
	assert_string_equal(s, "");
	free(s);
}

static void
test_buf_grow(void **state)
{
	struct buf b = BUF_INIT;
	char want[5000];

	(void)state;
	/* Every length from 0 to 5000 through printf's two paths (fits / needs a second pass). */
	for (size_t i = 0; i < sizeof(want); i++) {
		want[i] = (char)('a' + i % 26);
		buf_printf(&b, "%c", want[i]);
		assert_int_equal(b.len, i + 1);
		assert_true(b.cap > b.len);
		assert_int_equal(b.data[b.len], '\0');
	}
	assert_memory_equal(b.data, want, sizeof(want));
	buf_truncate(&b, 0);
	buf_printf(&b, "%.*s", 4000, want); /* one long printf into a big buffer */
	assert_int_equal(b.len, 4000);
	buf_free(&b);
	buf_printf(&b, "%.*s", 3000, want); /* one long printf into an empty buffer */
	assert_memory_equal(b.data, want, 3000);
	assert_int_equal(b.len, 3000);
	buf_free(&b);
	assert_null(b.data);
}

static void
test_array_grow(void **state)
{
	int *v = NULL;
	size_t cap = 0;

	(void)state;
	for (size_t n = 0; n < 1000; n++) {
		array_grow((void **)&v, &cap, n + 1, sizeof(*v));
		assert_true(cap >= n + 1);
		v[n] = (int)n;
	}
	for (size_t n = 0; n < 1000; n++)
		assert_int_equal(v[n], (int)n);
	array_grow((void **)&v, &cap, 10, sizeof(*v)); /* never shrinks */
	assert_true(cap >= 1000);
	free(v);
}

static void
test_hash_basic(void **state)
{
	struct hash *h = hash_new();
	int a = 1, b = 2, c = 3;

	(void)state;
	assert_null(hash_get_str(h, "alice"));
	assert_null(hash_put_str(h, "alice", &a));
	assert_null(hash_put_str(h, "bob", &b));
	assert_ptr_equal(hash_get_str(h, "alice"), &a);
	assert_ptr_equal(hash_put_str(h, "alice", &c), &a); /* replaced, old value returned */
	assert_ptr_equal(hash_get_str(h, "alice"), &c);
	assert_int_equal(hash_count(h), 2);
	/* Keys are bytes: a prefix, NUL bytes and an int are different keys. */
	assert_null(hash_get_str(h, "alic"));
	assert_null(hash_get(h, "alice\0", 6));
	assert_null(hash_put(h, "alice\0", 6, &a));
	assert_null(hash_put_int(h, 7, &b));
	assert_ptr_equal(hash_get_int(h, 7), &b);
	assert_null(hash_get_int(h, 8));
	assert_null(hash_get(h, "", 0));
	assert_null(hash_put(h, "", 0, &c)); /* the empty key is a key */
	assert_ptr_equal(hash_get(h, "", 0), &c);
	assert_ptr_equal(hash_remove_str(h, "bob"), &b);
	assert_null(hash_remove_str(h, "bob"));
	assert_ptr_equal(hash_remove_int(h, 7), &b);
	assert_int_equal(hash_count(h), 3);
	hash_free(&h);
	assert_null(h);
	hash_free(&h); /* NULL is fine */
}

static bool
drop_odd(const void *key, size_t keylen, void *value, void *arg)
{
	size_t *seen = arg;
	int64_t k;

	assert_int_equal(keylen, sizeof(k));
	memcpy(&k, key, sizeof(k));
	assert_int_equal(*(int64_t *)value, k);
	(*seen)++;
	return k % 2 == 1;
}

/* Random puts and removes against a plain array of what should be there; the table grows
 * through many sizes; foreach removes half while iterating and visits each entry once. */
static void
test_hash_random(void **state)
{
	enum { N = 20000 };
	static int64_t vals[N];
	static bool in[N];
	struct hash *h = hash_new();
	size_t count = 0, seen = 0;

	(void)state;
	srand(1);
	for (int64_t i = 0; i < N; i++)
		vals[i] = i;
	for (int round = 0; round < 100000; round++) {
		int64_t k = rand() % N;

		if (rand() % 3 != 0) {
			void *old = hash_put_int(h, k, &vals[k]);
			assert_true(old == (in[k] ? &vals[k] : NULL));
			count += !in[k];
			in[k] = true;
		} else {
			void *old = hash_remove_int(h, k);
			assert_true(old == (in[k] ? &vals[k] : NULL));
			count -= in[k];
			in[k] = false;
		}
		assert_int_equal(hash_count(h), count);
	}
	for (int64_t k = 0; k < N; k++)
		assert_true(hash_get_int(h, k) == (in[k] ? &vals[k] : NULL));
	hash_foreach(h, drop_odd, &seen);
	assert_int_equal(seen, count);
	for (int64_t k = 0; k < N; k++)
		assert_true(hash_get_int(h, k) == (in[k] && k % 2 == 0 ? &vals[k] : NULL));
	hash_free(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_add),     cmocka_unit_test(test_buf_grow),
	    cmocka_unit_test(test_array_grow),  cmocka_unit_test(test_hash_basic),
	    cmocka_unit_test(test_hash_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
