/* auth: checks a login and password without blocking the event loop, and throttles guessing.
 *
 * The account is looked up in the store on the loop thread; the argon2id verification runs on a
 * worker thread of a pool given to auth alone. Attempts are counted when their check starts
 * (a success gives its attempt back), per (client address, login), per client address and per
 * login, within auth.failure_window: an address is refused (AUTH_LOCKED, without a hash) for a
 * login after auth.max_failures attempts, and for every login after auth.max_failures_per_ip. A
 * login's own count never refuses: past auth.max_failures attempts its checks are spaced
 * auth.login_interval apart. Checks wait in a fair queue by client address (at most
 * auth.max_checks_per_ip running per address and one per login; quiet addresses first), so a
 * flood from some addresses does not delay logins from others. Every failed or refused attempt
 * is answered only after auth.failure_delay seconds (a timer, not a sleep).
 *
 * A successful check is remembered for auth.cache_ttl seconds as a keyed BLAKE2b of the stored
 * hash and the password (the key is random per process), so a mail client polling every few
 * minutes costs one argon2id hash per TTL, not one per connection. A changed password or a deleted
 * account never matches a stale entry. */
#ifndef TERN_AUTH_H
#define TERN_AUTH_H

#include <stdint.h>

struct event_base;
struct config;
struct store;
struct workers;
struct auth;
struct auth_request;

enum auth_result {
	AUTH_OK = 0,
	AUTH_FAILED,   /* bad login or password */
	AUTH_LOCKED,   /* too many failures: refused without checking */
	AUTH_TEMPFAIL, /* the store could not be read */
};

/* account_id and address (the account's primary address) are set for AUTH_OK. */
typedef void auth_cb(enum auth_result result, int64_t account_id, const char *address, void *arg);

struct auth *auth_new(struct event_base *base, struct store *store, struct workers *workers,
                      const struct config *config);
void auth_free(struct auth **auth);

/* Starts checking; cb runs later on the loop thread, never before this returns. The strings are
 * copied (and the password wiped after use). The request lives until cb runs or it is
 * cancelled. workers (given to auth_new) should run nothing else: auth keeps one check per
 * thread in flight. */
struct auth_request *auth_verify(struct auth *auth, const char *client_ip, const char *login,
                                 const char *password, auth_cb *cb, void *arg);
/* The callback will not run; *req becomes NULL. For sessions that close while waiting. */
void auth_cancel(struct auth_request **req);

/* Counters since auth_new, for logs and tests. */
struct auth_stats {
	uint64_t hashes;     /* argon2id verifications started */
	uint64_t cache_hits; /* logins accepted from the cache */
	uint64_t failures;   /* AUTH_FAILED answers */
	uint64_t locked;     /* AUTH_LOCKED answers */
};
void auth_get_stats(const struct auth *auth, struct auth_stats *stats_r);

#endif
