/* Unit tests for auth against a real store and worker threads: verification, the login cache,
 * the lock-out per client address and per login, and the failure delay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "lib/config.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

struct fixture {
	char dir[64];
	struct event_base *base;
	struct workers *workers;
	struct store *store;
	struct config *config;
	struct auth *auth;
	enum auth_result result;
	int64_t account_id;
	bool answered;
};

static void
set(struct config *c, const char *key, const char *value)
{
	char error[256];

	if (config_set(c, key, value, error, sizeof(error)) < 0)
		fail_msg("config_set %s: %s", key, error);
}

static void
add_user(struct fixture *f, const char *address, const char *password)
{
	char hash[PASSWORD_HASH_MAX], error[256];

	assert_int_equal(password_hash(password, hash), 0);
	if (store_account_add(f->store, address, hash, error, sizeof(error)) != 1)
		fail_msg("account_add %s: %s", address, error);
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char error[256];

	evthread_use_pthreads();
	assert_int_equal(password_init(), 0);
	str_copy(f->dir, "/tmp/tern-test-auth-XXXXXX", sizeof(f->dir));
	assert_non_null(mkdtemp(f->dir));
	f->base = event_base_new();
	f->workers = workers_new(f->base, 2);
	if (store_open(f->dir, true, f->workers, &f->store, error, sizeof(error)) < 0)
		fail_msg("store_open: %s", error);
	f->config = config_new();
	set(f->config, "auth.max_failures", "3");
	set(f->config, "auth.failure_delay", "0");
	f->auth = auth_new(f->base, f->store, f->workers, f->config);
	add_user(f, "alice@example.test", "right horse battery");
	add_user(f, "bob@example.test", "bob's password");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	auth_free(&f->auth);
	store_free(&f->store);
	workers_free(&f->workers);
	event_base_free(f->base);
	config_free(&f->config);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void
on_answer(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct fixture *f = arg;

	f->result = result;
	f->account_id = account_id;
	f->answered = true;
	event_base_loopbreak(f->base);
}

/* Runs one verification to its answer and returns the result. */
static enum auth_result
verify(struct fixture *f, const char *ip, const char *login, const char *password)
{
	f->answered = false;
	auth_verify(f->auth, ip, login, password, on_answer, f);
	while (!f->answered)
		event_base_loop(f->base, EVLOOP_ONCE);
	return f->result;
}

static void
test_right_and_wrong_passwords(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(verify(f, "192.0.2.1", "alice@example.test", "right horse battery"),
			 AUTH_OK);
	assert_true(f->account_id > 0);
	assert_int_equal(verify(f, "192.0.2.1", "ALICE@example.test", "right horse battery"),
			 AUTH_OK);
	assert_int_equal(verify(f, "192.0.2.1", "alice@example.test", "wrong"), AUTH_FAILED);
	assert_int_equal(verify(f, "192.0.2.1", "nobody@example.test", "x"), AUTH_FAILED);
}

static void
test_cache_skips_hash_but_never_accepts_another_password(void **state)
{
	struct fixture *f = *state;
	struct auth_stats st;
	char hash[PASSWORD_HASH_MAX], error[256];

	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "bob's password"), AUTH_OK);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, 1);
	assert_int_equal(st.cache_hits, 0);
	/* The same password again: from the cache, no second hash. */
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "bob's password"), AUTH_OK);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, 1);
	assert_int_equal(st.cache_hits, 1);
	/* Another password is checked for real and refused. */
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "bob's passwore"), AUTH_FAILED);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, 2);
	/* After a password change the old one no longer works, cache or not. */
	assert_int_equal(password_hash("new secret", hash), 0);
	assert_int_equal(store_account_set_password(f->store, "bob@example.test", hash, error,
						    sizeof(error)), 1);
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "bob's password"), AUTH_FAILED);
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "new secret"), AUTH_OK);
}

static void
test_lockout_per_address_and_per_login(void **state)
{
	struct fixture *f = *state;
	struct auth_stats st;

	for (int i = 0; i < 3; i++)
		assert_int_equal(verify(f, "198.51.100.7", "alice@example.test", "guess"),
				 AUTH_FAILED);
	/* Locked for this address even with the right password, and without a hash. */
	auth_get_stats(f->auth, &st);
	uint64_t hashes = st.hashes;
	assert_int_equal(verify(f, "198.51.100.7", "bob@example.test", "bob's password"),
			 AUTH_LOCKED);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, hashes);
	/* The login alice is locked too (3 failures), from any address. */
	assert_int_equal(verify(f, "203.0.113.9", "alice@example.test", "right horse battery"),
			 AUTH_LOCKED);
	/* Others from other addresses are served. */
	assert_int_equal(verify(f, "203.0.113.9", "bob@example.test", "bob's password"), AUTH_OK);
}

static void
test_failure_answer_is_delayed(void **state)
{
	struct fixture *f = *state;
	int64_t start;

	auth_free(&f->auth);
	set(f->config, "auth.failure_delay", "1");
	f->auth = auth_new(f->base, f->store, f->workers, f->config);
	start = time_mono_usec();
	assert_int_equal(verify(f, "192.0.2.3", "alice@example.test", "nope"), AUTH_FAILED);
	assert_true(time_mono_usec() - start >= 1000000);
	start = time_mono_usec();
	assert_int_equal(verify(f, "192.0.2.3", "alice@example.test", "right horse battery"),
			 AUTH_OK);
	assert_true(time_mono_usec() - start < 1000000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_right_and_wrong_passwords, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_skips_hash_but_never_accepts_another_password,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_lockout_per_address_and_per_login, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failure_answer_is_delayed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
