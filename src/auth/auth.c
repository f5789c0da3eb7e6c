/* auth: asynchronous password checks and the failure throttle. */
#include "auth/auth.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "auth/password.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

#define AUTH_BUCKETS 4096
#define AUTH_MAX_ENTRIES 100000
#define AUTH_CACHE_MAX 100000
#define AUTH_MAC_BYTES crypto_generichash_BYTES

/* Failure counts for one key: "ip:1.2.3.4" or "user:alice@example.test". */
struct auth_failures {
	char key[STORE_ADDRESS_MAX + 8];
	unsigned count;
	int64_t window_start;
	struct auth_failures *next;
};

/* A login verified recently: a keyed hash of (stored argon2id string, password). A new password
 * hash (passwd) or another password gives another value, so stale entries never match. */
struct auth_cached {
	char login[STORE_ADDRESS_MAX + 1];
	int64_t account_id;
	unsigned char mac[AUTH_MAC_BYTES];
	int64_t expires;
	struct auth_cached *next;
};

struct auth {
	struct event_base *base;
	struct store *store;
	struct workers *workers;
	unsigned max_failures;
	int64_t window;
	struct timeval delay;
	struct auth_failures *buckets[AUTH_BUCKETS];
	size_t nentries;
	char dummy_hash[PASSWORD_HASH_MAX]; /* verified against for unknown logins */
	int64_t cache_ttl;
	unsigned char cache_key[crypto_generichash_KEYBYTES]; /* random, per process */
	struct auth_cached *cache[AUTH_BUCKETS];
	size_t ncached;
	struct auth_stats stats;
};

struct auth_request {
	struct auth *auth;
	auth_cb *cb;
	void *arg;
	bool cancelled;
	bool in_worker;
	char ip[64];
	char login[STORE_ADDRESS_MAX + 1];
	char password[1024];
	char hash[256];
	bool matched;
	unsigned char mac[AUTH_MAC_BYTES];
	enum auth_result result;
	struct store_account account;
	struct event *timer;
};

static unsigned
auth_hash_key(const char *key)
{
	unsigned h = 2166136261u;

	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % AUTH_BUCKETS;
}

/* Drops entries whose window has passed, so memory stays bounded under a spray of addresses. */
static void
auth_expire(struct auth *auth, int64_t now)
{
	for (size_t i = 0; i < AUTH_BUCKETS; i++) {
		struct auth_failures **pp = &auth->buckets[i];
		while (*pp != NULL) {
			if (now - (*pp)->window_start >= auth->window) {
				struct auth_failures *dead = *pp;
				*pp = dead->next;
				free(dead);
				auth->nentries--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
}

static struct auth_failures **
auth_find(struct auth *auth, const char *key)
{
	struct auth_failures **pp = &auth->buckets[auth_hash_key(key)];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned
auth_failures_get(struct auth *auth, const char *key, int64_t now)
{
	struct auth_failures *f = *auth_find(auth, key);

	if (f == NULL || now - f->window_start >= auth->window)
		return 0;
	return f->count;
}

static void
auth_failures_add(struct auth *auth, const char *key, int64_t now)
{
	struct auth_failures **pp = auth_find(auth, key);

	if (*pp == NULL) {
		if (auth->nentries >= AUTH_MAX_ENTRIES) {
			auth_expire(auth, now);
			if (auth->nentries >= AUTH_MAX_ENTRIES)
				return; /* still full: the per-login count still applies */
			pp = auth_find(auth, key);
		}
		*pp = xcalloc(1, sizeof(**pp));
		str_copy((*pp)->key, key, sizeof((*pp)->key));
		(*pp)->window_start = now;
		auth->nentries++;
	}
	if (now - (*pp)->window_start >= auth->window) {
		(*pp)->window_start = now;
		(*pp)->count = 0;
	}
	(*pp)->count++;
}

static void
auth_failures_clear(struct auth *auth, const char *key)
{
	struct auth_failures **pp = auth_find(auth, key);
	struct auth_failures *f = *pp;

	if (f == NULL)
		return;
	*pp = f->next;
	free(f);
	auth->nentries--;
}

struct auth *
auth_new(struct event_base *base, struct store *store, struct workers *workers,
	 const struct config *config)
{
	struct auth *auth = xcalloc(1, sizeof(*auth));

	auth->base = base;
	auth->store = store;
	auth->workers = workers;
	auth->max_failures = (unsigned)config_get_int(config, "auth.max_failures");
	auth->window = config_get_int(config, "auth.failure_window");
	auth->delay.tv_sec = config_get_int(config, "auth.failure_delay");
	auth->cache_ttl = config_get_int(config, "auth.cache_ttl");
	crypto_generichash_keygen(auth->cache_key);
	if (password_hash("tern-dummy-password-for-timing", auth->dummy_hash) < 0)
		fatalx("auth event=init error=\"cannot hash\"");
	return auth;
}

void
auth_free(struct auth **authp)
{
	struct auth *auth = *authp;

	if (auth == NULL)
		return;
	for (size_t i = 0; i < AUTH_BUCKETS; i++) {
		while (auth->buckets[i] != NULL) {
			struct auth_failures *f = auth->buckets[i];
			auth->buckets[i] = f->next;
			free(f);
		}
		while (auth->cache[i] != NULL) {
			struct auth_cached *c = auth->cache[i];
			auth->cache[i] = c->next;
			sodium_memzero(c, sizeof(*c));
			free(c);
		}
	}
	sodium_memzero(auth->cache_key, sizeof(auth->cache_key));
	free(auth);
	*authp = NULL;
}

/* The cache entry for login, if any, with expired entries of its chain dropped on the way. */
static struct auth_cached **
auth_cache_find(struct auth *auth, const char *login, int64_t now)
{
	struct auth_cached **pp = &auth->cache[auth_hash_key(login)];

	while (*pp != NULL) {
		if ((*pp)->expires <= now) {
			struct auth_cached *dead = *pp;
			*pp = dead->next;
			sodium_memzero(dead, sizeof(*dead));
			free(dead);
			auth->ncached--;
			continue;
		}
		if (strcmp((*pp)->login, login) == 0)
			break;
		pp = &(*pp)->next;
	}
	return pp;
}

/* True when login was verified with this very password (and stored hash) within the TTL. */
static bool
auth_cache_hit(struct auth *auth, const struct auth_request *req, int64_t now)
{
	struct auth_cached *c;

	if (auth->cache_ttl == 0)
		return false;
	c = *auth_cache_find(auth, req->login, now);
	return c != NULL && c->account_id == req->account.id &&
	       sodium_memcmp(c->mac, req->mac, sizeof(c->mac)) == 0;
}

static void
auth_cache_store(struct auth *auth, const struct auth_request *req, int64_t now)
{
	struct auth_cached **pp;

	if (auth->cache_ttl == 0)
		return;
	pp = auth_cache_find(auth, req->login, now);
	if (*pp == NULL) {
		if (auth->ncached >= AUTH_CACHE_MAX)
			return; /* full of live entries: this login just pays for its hash */
		*pp = xcalloc(1, sizeof(**pp));
		str_copy((*pp)->login, req->login, sizeof((*pp)->login));
		auth->ncached++;
	}
	(*pp)->account_id = req->account.id;
	memcpy((*pp)->mac, req->mac, sizeof(req->mac));
	(*pp)->expires = now + auth->cache_ttl;
}

static void
auth_request_free(struct auth_request *req)
{
	if (req->timer != NULL)
		event_free(req->timer);
	sodium_memzero(req->password, sizeof(req->password));
	free(req);
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

/* Records the outcome and schedules the answer: at once for success, delayed otherwise. */
static void
auth_finish(struct auth_request *req, enum auth_result result)
{
	struct auth *auth = req->auth;
	int64_t now = time_now();
	char key[STORE_ADDRESS_MAX + 8];

	req->result = result;
	if (result == AUTH_FAILED)
		auth->stats.failures++;
	else if (result == AUTH_LOCKED)
		auth->stats.locked++;
	if (result == AUTH_OK) {
		snprintf(key, sizeof(key), "ip:%s", req->ip);
		auth_failures_clear(auth, key);
		snprintf(key, sizeof(key), "user:%s", req->login);
		auth_failures_clear(auth, key);
	} else if (result == AUTH_FAILED) {
		snprintf(key, sizeof(key), "ip:%s", req->ip);
		auth_failures_add(auth, key, now);
		snprintf(key, sizeof(key), "user:%s", req->login);
		auth_failures_add(auth, key, now);
	}
	log_info("auth event=verify ip=%s result=%s", req->ip,
		 result == AUTH_OK ? "ok" : result == AUTH_FAILED ? "failed"
					: result == AUTH_LOCKED ? "locked" : "tempfail");
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
	bool known = req->account.id != 0;

	req->in_worker = false;
	if (known && req->matched)
		auth_cache_store(req->auth, req, time_now());
	auth_finish(req, known && req->matched ? AUTH_OK : AUTH_FAILED);
}

struct auth_request *
auth_verify(struct auth *auth, const char *client_ip, const char *login, const char *password,
	    auth_cb *cb, void *arg)
{
	struct auth_request *req = xcalloc(1, sizeof(*req));
	int64_t now = time_now();
	char key[STORE_ADDRESS_MAX + 8];
	int found;

	req->auth = auth;
	req->cb = cb;
	req->arg = arg;
	str_copy(req->ip, client_ip, sizeof(req->ip));
	str_copy(req->login, login, sizeof(req->login));
	str_lower(req->login);
	str_copy(req->password, password, sizeof(req->password));

	snprintf(key, sizeof(key), "ip:%s", req->ip);
	if (auth_failures_get(auth, key, now) >= auth->max_failures) {
		auth_finish(req, AUTH_LOCKED);
		return req;
	}
	snprintf(key, sizeof(key), "user:%s", req->login);
	if (auth_failures_get(auth, key, now) >= auth->max_failures) {
		auth_finish(req, AUTH_LOCKED);
		return req;
	}

	found = store_account_lookup(auth->store, req->login, &req->account);
	if (found < 0) {
		auth_finish(req, AUTH_TEMPFAIL);
		return req;
	}
	/* Only the primary address logs in; an unknown login still costs one hash, so timing does
	 * not tell which accounts exist. */
	if (found == 0 || strcasecmp(req->account.address, req->login) != 0) {
		memset(&req->account, 0, sizeof(req->account));
		str_copy(req->hash, auth->dummy_hash, sizeof(req->hash));
	} else {
		str_copy(req->hash, req->account.password_hash, sizeof(req->hash));
		crypto_generichash_state st;
		crypto_generichash_init(&st, auth->cache_key, sizeof(auth->cache_key),
					sizeof(req->mac));
		crypto_generichash_update(&st, (const unsigned char *)req->hash,
					  strlen(req->hash) + 1);
		crypto_generichash_update(&st, (const unsigned char *)req->password,
					  strlen(req->password));
		crypto_generichash_final(&st, req->mac, sizeof(req->mac));
		if (auth_cache_hit(auth, req, now)) {
			auth->stats.cache_hits++;
			sodium_memzero(req->password, sizeof(req->password));
			auth_finish(req, AUTH_OK);
			return req;
		}
	}
	req->in_worker = true;
	auth->stats.hashes++;
	workers_submit(auth->workers, auth_work, auth_work_done, req);
	return req;
}

void
auth_cancel(struct auth_request **reqp)
{
	struct auth_request *req = *reqp;

	if (req == NULL)
		return;
	/* The worker or the timer still holds it: it frees itself when they finish. */
	req->cancelled = true;
	*reqp = NULL;
}

void
auth_get_stats(const struct auth *auth, struct auth_stats *stats_r)
{
	*stats_r = auth->stats;
}
