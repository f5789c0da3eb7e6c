/* auth: asynchronous password checks and the failure throttle. */
#include "auth/auth.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "auth/password.h"
#include "lib/config.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

#define AUTH_MAX_ENTRIES 100000
#define AUTH_CACHE_MAX 100000
#define AUTH_MAC_BYTES crypto_generichash_BYTES
#define AUTH_IP_MAX 64
#define AUTH_KEY_MAX (STORE_ADDRESS_MAX + AUTH_IP_MAX + 8)
/* Checks of one login running at once: a mail client's parallel connections then cost one hash
 * (the others find the cache), and a login under attack is checked one guess at a time. */
#define AUTH_CHECKS_PER_LOGIN 1

/* Throttle state for one key: "ip:1.2.3.4" (a client address), "user:alice@example.test" (a
 * login) or "al:1.2.3.4 alice@example.test" (a login from one address). */
struct auth_count {
	char key[AUTH_KEY_MAX];
	unsigned count; /* checks started within the window (a success is refunded) */
	int64_t window_start;
	unsigned waiting;  /* "ip:": requests in the queue, for the fair queue */
	unsigned inflight; /* checks running on a worker now */
	unsigned refs;     /* requests waiting or running that point here: never expired */
	int64_t next_usec; /* "user:" under attack: earliest start (monotonic) of its next check */
};

/* A login verified recently: a keyed hash of (stored argon2id string, password). A new password
 * hash (passwd) or another password gives another value, so stale entries never match. */
struct auth_cached {
	char login[STORE_ADDRESS_MAX + 1];
	int64_t account_id;
	unsigned char mac[AUTH_MAC_BYTES];
	int64_t expires;
};

struct auth {
	struct event_base *base;
	struct store *store;
	struct workers *workers;
	unsigned nthreads;           /* checks run at once, one per hash worker */
	unsigned max_failures;       /* per (address, login); also "under attack" for a login */
	unsigned max_failures_ip;    /* per address, any login */
	unsigned max_checks_ip;      /* checks from one address running at once */
	int64_t login_interval_usec; /* spacing of checks for a login under attack */
	int64_t window;
	struct timeval delay;
	struct hash *counts; /* key -> struct auth_count; keys come from clients (keyed hash) */
	/* Requests waiting for a worker (pinned, counted when they start), in arrival order. */
	struct auth_request *wait_head, *wait_tail;
	unsigned inflight;
	struct event *kick; /* runs auth_dispatch() when a spaced login may be checked again */
	char dummy_hash[PASSWORD_HASH_MAX]; /* verified against for unknown logins */
	int64_t cache_ttl;
	unsigned char cache_key[crypto_generichash_KEYBYTES]; /* random, per process */
	struct hash *cache;                                   /* login -> struct auth_cached */
	struct auth_stats stats;
};

struct auth_request {
	struct auth *auth;
	auth_cb *cb;
	void *arg;
	bool cancelled;
	bool in_worker;
	bool queued;
	char ip[AUTH_IP_MAX];
	char login[STORE_ADDRESS_MAX + 1];
	char password[1024];
	char hash[256];
	bool matched;
	unsigned char mac[AUTH_MAC_BYTES];
	enum auth_result result;
	struct store_account account;
	struct event *timer;
	/* Set while the request waits or runs; charged once its check starts. */
	struct auth_count *ip_c, *user_c, *al_c;
	bool charged;
	struct auth_request *qprev, *qnext;
};

static void auth_dispatch(struct auth *auth);

struct auth_expire_ctx {
	const struct auth *auth;
	int64_t now;
};

static bool
auth_count_expired(const void *key, size_t keylen, void *value, void *arg)
{
	const struct auth_expire_ctx *ctx = arg;
	struct auth_count *c = value;

	(void)key;
	(void)keylen;
	if (c->refs != 0 || ctx->now - c->window_start < ctx->auth->window)
		return false;
	free(c);
	return true;
}

/* Drops idle entries whose window has passed, so memory stays bounded under a spray of
 * addresses. */
static void
auth_expire(struct auth *auth, int64_t now)
{
	struct auth_expire_ctx ctx = {.auth = auth, .now = now};

	hash_foreach(auth->counts, auth_count_expired, &ctx);
}

/* The entry for key in the current window, made if missing; NULL when the table is full. */
static struct auth_count *
auth_count_get(struct auth *auth, const char *key, int64_t now)
{
	struct auth_count *c = hash_get_str(auth->counts, key);

	if (c == NULL) {
		if (hash_count(auth->counts) >= AUTH_MAX_ENTRIES) {
			auth_expire(auth, now);
			if (hash_count(auth->counts) >= AUTH_MAX_ENTRIES)
				return NULL;
		}
		c = xcalloc(1, sizeof(*c));
		str_copy(c->key, key, sizeof(c->key));
		c->window_start = now;
		hash_put_str(auth->counts, c->key, c);
	}
	if (now - c->window_start >= auth->window) {
		c->window_start = now;
		c->count = 0;
	}
	return c;
}

static void
auth_kick(evutil_socket_t fd, short what, void *arg)
{
	auth_dispatch(arg);
}

struct auth *
auth_new(struct event_base *base, struct store *store, struct workers *workers,
         const struct config *config)
{
	struct auth *auth = xcalloc(1, sizeof(*auth));

	auth->base = base;
	auth->store = store;
	auth->workers = workers;
	auth->counts = hash_new();
	auth->cache = hash_new();
	auth->nthreads = workers_threads(workers);
	auth->max_failures = (unsigned)config_get_int(config, "auth.max_failures");
	auth->max_failures_ip = (unsigned)config_get_int(config, "auth.max_failures_per_ip");
	auth->max_checks_ip = (unsigned)config_get_int(config, "auth.max_checks_per_ip");
	auth->login_interval_usec = config_get_int(config, "auth.login_interval") * 1000000;
	auth->window = config_get_int(config, "auth.failure_window");
	auth->delay.tv_sec = config_get_int(config, "auth.failure_delay");
	auth->cache_ttl = config_get_int(config, "auth.cache_ttl");
	auth->kick = evtimer_new(base, auth_kick, auth);
	if (auth->kick == NULL)
		fatalx("auth event=init error=evtimer_new");
	crypto_generichash_keygen(auth->cache_key);
	if (password_hash("tern-dummy-password-for-timing", auth->dummy_hash) < 0)
		fatalx("auth event=init error=\"cannot hash\"");
	return auth;
}

static void
auth_request_free(struct auth_request *req)
{
	if (req->timer != NULL)
		event_free(req->timer);
	sodium_memzero(req->password, sizeof(req->password));
	free(req);
}

/* hash_foreach callbacks: every entry, and cache entries expired at *(int64_t *)arg. */
static bool
auth_count_drop(const void *key, size_t keylen, void *value, void *arg)
{
	(void)key;
	(void)keylen;
	(void)arg;
	free(value);
	return true;
}

static bool
auth_cached_drop(const void *key, size_t keylen, void *value, void *arg)
{
	struct auth_cached *c = value;

	(void)key;
	(void)keylen;
	if (c->expires > *(const int64_t *)arg)
		return false;
	sodium_memzero(c, sizeof(*c));
	free(c);
	return true;
}

void
auth_free(struct auth **authp)
{
	struct auth *auth = *authp;

	if (auth == NULL)
		return;
	/* Requests still waiting belong to nobody now: their sessions are gone. */
	while (auth->wait_head != NULL) {
		struct auth_request *req = auth->wait_head;
		auth->wait_head = req->qnext;
		auth_request_free(req);
	}
	hash_foreach(auth->counts, auth_count_drop, NULL);
	hash_free(&auth->counts);
	hash_foreach(auth->cache, auth_cached_drop, &(int64_t){INT64_MAX});
	hash_free(&auth->cache);
	event_free(auth->kick);
	sodium_memzero(auth->cache_key, sizeof(auth->cache_key));
	free(auth);
	*authp = NULL;
}

/* The live cache entry for login, if any (an expired one is dropped). */
static struct auth_cached *
auth_cache_find(struct auth *auth, const char *login, int64_t now)
{
	struct auth_cached *c = hash_get_str(auth->cache, login);

	if (c != NULL && c->expires <= now) {
		hash_remove_str(auth->cache, login);
		sodium_memzero(c, sizeof(*c));
		free(c);
		c = NULL;
	}
	return c;
}

/* True when login was verified with this very password (and stored hash) within the TTL. */
static bool
auth_cache_hit(struct auth *auth, const struct auth_request *req, int64_t now)
{
	struct auth_cached *c;

	if (auth->cache_ttl == 0)
		return false;
	c = auth_cache_find(auth, req->login, now);
	return c != NULL && c->account_id == req->account.id &&
	       sodium_memcmp(c->mac, req->mac, sizeof(c->mac)) == 0;
}

static void
auth_cache_store(struct auth *auth, const struct auth_request *req, int64_t now)
{
	struct auth_cached *c;

	if (auth->cache_ttl == 0)
		return;
	c = auth_cache_find(auth, req->login, now);
	if (c == NULL) {
		if (hash_count(auth->cache) >= AUTH_CACHE_MAX)
			hash_foreach(auth->cache, auth_cached_drop, &now);
		if (hash_count(auth->cache) >= AUTH_CACHE_MAX)
			return; /* full of live entries: this login just pays for its hash */
		c = xcalloc(1, sizeof(*c));
		str_copy(c->login, req->login, sizeof(c->login));
		hash_put_str(auth->cache, c->login, c);
	}
	c->account_id = req->account.id;
	memcpy(c->mac, req->mac, sizeof(req->mac));
	c->expires = now + auth->cache_ttl;
}

/* Pins the three throttle entries of a request while it waits or runs. */
static void
auth_pin(struct auth_request *req, struct auth_count *ip_c, struct auth_count *user_c,
         struct auth_count *al_c)
{
	req->ip_c = ip_c;
	req->user_c = user_c;
	req->al_c = al_c;
	ip_c->refs++;
	user_c->refs++;
	al_c->refs++;
}

/* True when the address is refused for this login: its started checks (failed or running) for
 * the login, or for all logins, have reached their caps. */
static bool
auth_capped(const struct auth *auth, const struct auth_count *ip_c, const struct auth_count *al_c)
{
	return al_c->count >= auth->max_failures || ip_c->count >= auth->max_failures_ip;
}

/* The answer is known: a success gives the attempt back (and clears the address's count for this
 * login, which has proven the password); a failure stays charged. */
static void
auth_settle(struct auth_request *req, enum auth_result result)
{
	if (req->ip_c == NULL)
		return;
	if (req->charged && result == AUTH_OK) {
		if (req->ip_c->count > 0)
			req->ip_c->count--;
		if (req->user_c->count > 0)
			req->user_c->count--;
		req->al_c->count = 0;
	}
	req->ip_c->refs--;
	req->user_c->refs--;
	req->al_c->refs--;
	req->ip_c = req->user_c = req->al_c = NULL;
}

static const char *
auth_result_name(enum auth_result result)
{
	switch (result) {
	case AUTH_OK:
		return "ok";
	case AUTH_FAILED:
		return "failed";
	case AUTH_LOCKED:
		return "locked";
	case AUTH_TEMPFAIL:
		break;
	}
	return "tempfail";
}

/* Runs on the loop thread when the answer may be given (after the delay for failures). */
static void
auth_answer(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *req = arg;

	if (!req->cancelled)
		req->cb(req->result, req->result == AUTH_OK ? req->account.id : 0,
		        req->result == AUTH_OK ? req->account.address : NULL, req->arg);
	auth_request_free(req);
}

/* Records the outcome and schedules the answer: at once for success, delayed otherwise.
 * hashed says whether an argon2id verification ran for this answer. */
static void
auth_finish(struct auth_request *req, enum auth_result result, bool hashed)
{
	struct auth *auth = req->auth;

	req->result = result;
	if (result == AUTH_FAILED)
		auth->stats.failures++;
	else if (result == AUTH_LOCKED)
		auth->stats.locked++;
	auth_settle(req, result);
	log_info("auth event=verify ip=%s result=%s hashed=%s", req->ip, auth_result_name(result),
	         hashed ? "yes" : "no");
	req->timer = evtimer_new(auth->base, auth_answer, req);
	if (req->timer == NULL)
		fatalx("auth event=timer error=evtimer_new");
	if (result == AUTH_OK || result == AUTH_TEMPFAIL) {
		struct timeval zero = {0, 0};
		evtimer_add(req->timer, &zero);
	} else {
		evtimer_add(req->timer, &auth->delay);
	}
}

/* Worker thread: the slow part. Touches only the request. */
static void
auth_work(void *arg)
{
	struct auth_request *req = arg;

	req->matched = password_verify(req->hash, req->password);
	sodium_memzero(req->password, sizeof(req->password));
}

/* Loop thread: the worker is done. */
static void
auth_work_done(void *arg)
{
	struct auth_request *req = arg;
	struct auth *auth = req->auth;
	bool ok = req->account.id != 0 && req->matched;

	req->in_worker = false;
	req->ip_c->inflight--;
	req->user_c->inflight--;
	auth->inflight--;
	if (ok)
		auth_cache_store(auth, req, time_now());
	auth_finish(req, ok ? AUTH_OK : AUTH_FAILED, true);
	auth_dispatch(auth);
}

static void
auth_enqueue(struct auth *auth, struct auth_request *req)
{
	req->qnext = NULL;
	req->qprev = auth->wait_tail;
	if (auth->wait_tail != NULL)
		auth->wait_tail->qnext = req;
	else
		auth->wait_head = req;
	auth->wait_tail = req;
	req->queued = true;
	req->ip_c->waiting++;
}

static void
auth_unqueue(struct auth *auth, struct auth_request *req)
{
	if (req->qprev != NULL)
		req->qprev->qnext = req->qnext;
	else
		auth->wait_head = req->qnext;
	if (req->qnext != NULL)
		req->qnext->qprev = req->qprev;
	else
		auth->wait_tail = req->qprev;
	req->qprev = req->qnext = NULL;
	req->queued = false;
	req->ip_c->waiting--;
}

/* The attempts of r's address: failed or running within the window, plus waiting. */
static unsigned
auth_load(const struct auth_request *r)
{
	return r->ip_c->count + r->ip_c->waiting;
}

/* True when r, queued after best, should still be checked before it: its address has a smaller
 * load, so an address with a backlog of guesses yields to one with a single login; or as large,
 * but fewer failed or running, which takes equal addresses in turn. Otherwise the earlier arrival
 * goes first (and one address's requests always go in order). */
static bool
auth_better(const struct auth_request *r, const struct auth_request *best)
{
	unsigned load_r = auth_load(r);
	unsigned load_best = auth_load(best);

	if (load_r != load_best)
		return load_r < load_best;
	return r->ip_c->count < best->ip_c->count;
}

/* The next request to check: of those whose address and login are under their caps of running
 * checks (and whose login, if under attack, is due), the best by auth_better(). So a flood from
 * some addresses cannot starve another address. The last free worker (of two or more) is kept
 * for addresses with at most max_failures attempts, so a login from a quiet address never waits
 * for the checks of a busy one to finish. *wake_r gets the earliest time a spaced login becomes
 * due, or stays 0. */
static struct auth_request *
auth_pick(struct auth *auth, int64_t now_usec, int64_t *wake_r)
{
	struct auth_request *best = NULL;
	bool reserve = auth->nthreads >= 2 && auth->inflight + 1 == auth->nthreads;

	for (struct auth_request *r = auth->wait_head; r != NULL; r = r->qnext) {
		if (r->ip_c->inflight >= auth->max_checks_ip ||
		    r->user_c->inflight >= AUTH_CHECKS_PER_LOGIN ||
		    (reserve && auth_load(r) > auth->max_failures))
			continue;
		if (r->user_c->next_usec > now_usec) {
			if (*wake_r == 0 || r->user_c->next_usec < *wake_r)
				*wake_r = r->user_c->next_usec;
			continue;
		}
		if (best == NULL || auth_better(r, best))
			best = r;
	}
	return best;
}

/* Refuses the waiting requests whose address reached its caps while they waited (the checks
 * started before them failed), without hashing. */
static void
auth_refuse_capped(struct auth *auth)
{
	struct auth_request *next;

	for (struct auth_request *r = auth->wait_head; r != NULL; r = next) {
		next = r->qnext;
		if (!auth_capped(auth, r->ip_c, r->al_c))
			continue;
		auth_unqueue(auth, r);
		auth_finish(r, AUTH_LOCKED, false);
	}
}

/* Starts the check of a request taken off the queue: from the cache if a check of the same
 * login that just finished proved this password, else charged and sent to a worker. */
static void
auth_start(struct auth *auth, struct auth_request *req, int64_t now_usec)
{
	if (req->account.id != 0 && auth_cache_hit(auth, req, time_now())) {
		auth->stats.cache_hits++;
		sodium_memzero(req->password, sizeof(req->password));
		auth_finish(req, AUTH_OK, false);
		return;
	}
	req->charged = true;
	req->ip_c->count++;
	req->user_c->count++;
	req->al_c->count++;
	/* A login with more than max_failures checks in the window is under attack: its checks are
	 * spaced, so guesses from many addresses are slow, and its owner waits, never refused. */
	if (req->user_c->count > auth->max_failures)
		req->user_c->next_usec = now_usec + auth->login_interval_usec;
	req->ip_c->inflight++;
	req->user_c->inflight++;
	auth->inflight++;
	req->in_worker = true;
	auth->stats.hashes++;
	workers_submit(auth->workers, auth_work, auth_work_done, req);
}

/* Fills the hash workers from the queue. */
static void
auth_dispatch(struct auth *auth)
{
	auth_refuse_capped(auth);
	while (auth->inflight < auth->nthreads && auth->wait_head != NULL) {
		int64_t now_usec = time_mono_usec(), wake = 0;
		struct auth_request *req = auth_pick(auth, now_usec, &wake);

		if (req == NULL) {
			if (wake != 0) {
				struct timeval tv = {(wake - now_usec) / 1000000,
				                     (wake - now_usec) % 1000000};
				evtimer_add(auth->kick, &tv);
			}
			return;
		}
		auth_unqueue(auth, req);
		auth_start(auth, req, now_usec);
	}
}

/* Computes req->mac, the cache key of (stored hash, password). */
static void
auth_request_mac(struct auth *auth, struct auth_request *req)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, auth->cache_key, sizeof(auth->cache_key), sizeof(req->mac));
	crypto_generichash_update(&st, (const unsigned char *)req->hash, strlen(req->hash) + 1);
	crypto_generichash_update(&st, (const unsigned char *)req->password, strlen(req->password));
	crypto_generichash_final(&st, req->mac, sizeof(req->mac));
}

struct auth_request *
auth_verify(struct auth *auth, const char *client_ip, const char *login, const char *password,
            auth_cb *cb, void *arg)
{
	struct auth_request *req = xcalloc(1, sizeof(*req));
	struct auth_count *ip_c, *user_c, *al_c;
	int64_t now = time_now();
	char key[AUTH_KEY_MAX];
	int found;

	req->auth = auth;
	req->cb = cb;
	req->arg = arg;
	str_copy(req->ip, client_ip, sizeof(req->ip));
	str_copy(req->login, login, sizeof(req->login));
	str_lower(req->login);
	str_copy(req->password, password, sizeof(req->password));

	snprintf(key, sizeof(key), "ip:%s", req->ip);
	ip_c = auth_count_get(auth, key, now);
	snprintf(key, sizeof(key), "user:%s", req->login);
	user_c = ip_c != NULL ? auth_count_get(auth, key, now) : NULL;
	snprintf(key, sizeof(key), "al:%s %s", req->ip, req->login);
	al_c = user_c != NULL ? auth_count_get(auth, key, now) : NULL;
	if (al_c == NULL) {
		log_warnx("auth event=throttle-full ip=%s", req->ip);
		auth_finish(req, AUTH_TEMPFAIL, false);
		return req;
	}
	/* Checks are counted when they start, and a waiting request is refused as soon as the
	 * checks started before it reach the caps (auth_refuse_capped), so parallel guesses cannot
	 * outrun the count. A login's own count never refuses: its owner from a clean address is
	 * slowed, not locked out (see auth_start). */
	if (auth_capped(auth, ip_c, al_c)) {
		auth_finish(req, AUTH_LOCKED, false);
		return req;
	}

	found = store_account_lookup(auth->store, req->login, &req->account);
	if (found < 0) {
		auth_finish(req, AUTH_TEMPFAIL, false);
		return req;
	}
	/* Only the primary address logs in; an unknown login still costs one hash (and is charged
	 * like any other), so timing does not tell which accounts exist. */
	if (found == 0 || strcasecmp(req->account.address, req->login) != 0) {
		memset(&req->account, 0, sizeof(req->account));
		str_copy(req->hash, auth->dummy_hash, sizeof(req->hash));
	} else {
		str_copy(req->hash, req->account.password_hash, sizeof(req->hash));
		auth_request_mac(auth, req);
		if (auth_cache_hit(auth, req, now)) {
			auth->stats.cache_hits++;
			sodium_memzero(req->password, sizeof(req->password));
			auth_finish(req, AUTH_OK, false);
			return req;
		}
	}
	auth_pin(req, ip_c, user_c, al_c);
	auth_enqueue(auth, req);
	auth_dispatch(auth);
	return req;
}

void
auth_cancel(struct auth_request **reqp)
{
	struct auth_request *req = *reqp;

	if (req == NULL)
		return;
	*reqp = NULL;
	if (req->queued) {
		/* Not started: never hashed, nor counted. */
		auth_unqueue(req->auth, req);
		auth_settle(req, AUTH_FAILED);
		auth_request_free(req);
		return;
	}
	/* The worker or the timer still holds it: it frees itself when they finish. */
	req->cancelled = true;
}

void
auth_get_stats(const struct auth *auth, struct auth_stats *stats_r)
{
	*stats_r = auth->stats;
}
