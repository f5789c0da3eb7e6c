/* Unit tests for auth against a real store and worker threads: verification, the login cache,
 * the throttle per (address, login) and per address, counting before hashing, the fair queue of
 * checks, and the failure delay. */
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
	assert_int_equal(
	    store_account_set_password(f->store, "bob@example.test", hash, error, sizeof(error)),
	    1);
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "bob's password"), AUTH_FAILED);
	assert_int_equal(verify(f, "192.0.2.2", "bob@example.test", "new secret"), AUTH_OK);
}

static void
test_lockout_per_address_and_login(void **state)
{
	struct fixture *f = *state;
	struct auth_stats st;

	for (int i = 0; i < 3; i++)
		assert_int_equal(verify(f, "198.51.100.7", "alice@example.test", "guess"),
		                 AUTH_FAILED);
	/* Locked for alice from this address even with the right password, and without a hash. */
	auth_get_stats(f->auth, &st);
	uint64_t hashes = st.hashes;
	assert_int_equal(verify(f, "198.51.100.7", "alice@example.test", "right horse battery"),
	                 AUTH_LOCKED);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, hashes);
	/* Another user behind the same address (a NAT) is not locked out by alice's typos. */
	assert_int_equal(verify(f, "198.51.100.7", "bob@example.test", "bob's password"), AUTH_OK);
	/* alice herself, from a clean address, is slowed but never refused. */
	assert_int_equal(verify(f, "203.0.113.9", "alice@example.test", "right horse battery"),
	                 AUTH_OK);
}

static void
test_address_cap_over_logins(void **state)
{
	struct fixture *f = *state;
	char login[64];

	auth_free(&f->auth);
	set(f->config, "auth.max_failures_per_ip", "4");
	f->auth = auth_new(f->base, f->store, f->workers, f->config);
	for (int i = 0; i < 4; i++) {
		snprintf(login, sizeof(login), "nobody%d@example.test", i);
		assert_int_equal(verify(f, "198.51.100.8", login, "x"), AUTH_FAILED);
	}
	/* Unknown logins count like known ones: the address is now refused for anyone. */
	assert_int_equal(verify(f, "198.51.100.8", "bob@example.test", "bob's password"),
	                 AUTH_LOCKED);
	assert_int_equal(verify(f, "198.51.100.9", "bob@example.test", "bob's password"), AUTH_OK);
}

struct answers {
	struct event_base *base;
	int pending;
	int n[4];     /* by enum auth_result */
	int order;    /* answers so far */
	int ok_order; /* position of the AUTH_OK answer */
};

static void
on_count(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct answers *a = arg;

	a->n[result]++;
	a->order++;
	if (result == AUTH_OK)
		a->ok_order = a->order;
	if (--a->pending == 0)
		event_base_loopbreak(a->base);
}

static void
wait_answers(struct fixture *f, struct answers *a)
{
	while (a->pending > 0)
		event_base_loop(f->base, EVLOOP_ONCE);
}

/* Many guesses at once, before any check has finished: each is charged when it starts, so only
 * max_failures are hashed, and the right password sent after them is refused. */
static void
test_parallel_guesses_counted_before_hashing(void **state)
{
	struct fixture *f = *state;
	struct answers a = {.base = f->base};
	struct auth_stats st;

	for (int i = 0; i < 20; i++) {
		a.pending++;
		auth_verify(f->auth, "198.51.100.10", "alice@example.test", "guess", on_count, &a);
	}
	a.pending++;
	auth_verify(f->auth, "198.51.100.10", "alice@example.test", "right horse battery", on_count,
	            &a);
	wait_answers(f, &a);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, 3);
	assert_int_equal(a.n[AUTH_FAILED], 3);
	assert_int_equal(a.n[AUTH_LOCKED], 18);
	assert_int_equal(a.n[AUTH_OK], 0);
}

/* A flood of unknown logins from one address waits behind a login from another address, which
 * goes next to a worker (the fair queue), not after the whole flood. */
static void
test_flood_does_not_starve_another_address(void **state)
{
	struct fixture *f = *state;
	struct answers a = {.base = f->base};
	char login[64];

	/* 12 unknown logins: under auth.max_failures_per_ip (50), so all are checked. */
	for (int i = 0; i < 12; i++) {
		snprintf(login, sizeof(login), "flood%d@example.test", i);
		a.pending++;
		auth_verify(f->auth, "198.51.100.11", login, "x", on_count, &a);
	}
	a.pending++;
	auth_verify(f->auth, "192.0.2.50", "bob@example.test", "bob's password", on_count, &a);
	wait_answers(f, &a);
	assert_int_equal(a.n[AUTH_OK], 1);
	assert_int_equal(a.n[AUTH_FAILED], 12);
	/* Two threads, at most two checks per address at once: bob is at worst the third. */
	assert_true(a.ok_order <= 3);
}

/* Parallel logins of one mail client with the right password cost one hash: checks of one login
 * run one at a time and the later ones find the cache. */
static void
test_parallel_logins_share_one_hash(void **state)
{
	struct fixture *f = *state;
	struct answers a = {.base = f->base};
	struct auth_stats st;

	for (int i = 0; i < 4; i++) {
		a.pending++;
		auth_verify(f->auth, "192.0.2.60", "bob@example.test", "bob's password", on_count,
		            &a);
	}
	wait_answers(f, &a);
	auth_get_stats(f->auth, &st);
	assert_int_equal(a.n[AUTH_OK], 4);
	assert_int_equal(st.hashes, 1);
	assert_int_equal(st.cache_hits, 3);
}

/* A request cancelled while waiting (its connection closed) is neither hashed nor counted. */
static void
test_cancel_while_waiting(void **state)
{
	struct fixture *f = *state;
	struct answers a = {.base = f->base};
	struct auth_request *reqs[6];
	struct auth_stats st;

	for (int i = 0; i < 6; i++) {
		a.pending++;
		reqs[i] =
		    auth_verify(f->auth, "198.51.100.12", "nobody@example.test", "x", on_count, &a);
	}
	/* One login runs one check at a time: reqs[1..5] wait. */
	auth_cancel(&reqs[1]);
	auth_cancel(&reqs[2]);
	assert_null(reqs[1]);
	a.pending -= 2;
	wait_answers(f, &a);
	auth_get_stats(f->auth, &st);
	assert_int_equal(st.hashes, 3);
	assert_int_equal(a.n[AUTH_FAILED], 3);
	assert_int_equal(a.n[AUTH_LOCKED], 1);
	assert_int_equal(verify(f, "198.51.100.12", "nobody@example.test", "x"), AUTH_LOCKED);
}

static void
test_failure_answer_is_delayed(void **state)
{
	struct fixture *f = *state;
	int64_t start;

	/* A delay well above one hash on a loaded machine, so the success is told apart. */
	auth_free(&f->auth);
	set(f->config, "auth.failure_delay", "6");
	f->auth = auth_new(f->base, f->store, f->workers, f->config);
	start = time_mono_usec();
	assert_int_equal(verify(f, "192.0.2.3", "alice@example.test", "nope"), AUTH_FAILED);
	assert_true(time_mono_usec() - start >= 6000000);
	start = time_mono_usec();
	assert_int_equal(verify(f, "192.0.2.3", "alice@example.test", "right horse battery"),
	                 AUTH_OK);
	assert_true(time_mono_usec() - start < 6000000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_right_and_wrong_passwords, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_cache_skips_hash_but_never_accepts_another_password, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lockout_per_address_and_login, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_address_cap_over_logins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parallel_guesses_counted_before_hashing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_flood_does_not_starve_another_address, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_parallel_logins_share_one_hash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_while_waiting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure_answer_is_delayed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
