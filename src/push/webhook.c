/* webhook: the hub's new-message events, queued on the loop thread and POSTed by a thread of
 * our own with libcurl. */
#include "push/webhook.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "lib/config.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "push/push_json.h"
#include "store/store.h"

/* One event waiting to be POSTed. */
struct webhook_item {
	struct webhook_item *next;
	uint32_t uid;
	char *json;
};

struct webhook {
	/* Loop thread only. */
	struct store *store; /* NULL once webhook_store_closing was called */
	struct notify_sub *sub;
	/* Caches, each filled by one indexed read on a miss: account id -> its address (char *),
	 * mailbox id -> its UIDVALIDITY (uint32_t *). */
	struct hash *accounts;
	struct hash *mailboxes;

	/* Set before the thread starts, then read-only. */
	char *url;
	char *where; /* scheme://host:port, for logs (the URL may hold a secret) */
	char *ca_file;
	long timeout;
	unsigned retries;
	size_t queue_max;
	pthread_t thread;

	/* Under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct webhook_item *head, *tail;
	size_t qlen;
	bool stopping;
	struct timespec deadline; /* CLOCK_MONOTONIC: when stopping, give up after this */
	struct webhook_stats stats;
};

/* --- the loop thread: events into the queue --- */

static bool
webhook_cache_drop(const void *key, size_t keylen, void *value, void *arg)
{
	(void)key;
	(void)keylen;
	(void)arg;
	free(value);
	return true;
}

/* The address of account id, read from the store (one indexed row) the first time. */
static const char *
webhook_account_address(struct webhook *wh, int64_t id)
{
	struct store_account account;
	char *address = hash_get_int(wh->accounts, id);

	if (address != NULL || wh->store == NULL)
		return address;
	if (store_account_get(wh->store, id, &account) != 1) {
		log_warnx("webhook event=account-lookup-failed account_id=%lld", (long long)id);
		return NULL;
	}
	address = xstrdup(account.address);
	hash_put_int(wh->accounts, id, address);
	return address;
}

/* The UIDVALIDITY of the event's mailbox: cached by id, read from the store on a miss. */
static uint32_t
webhook_uidvalidity(struct webhook *wh, const struct notify_event *ev)
{
	struct store_mailbox mbox;
	uint32_t *cached = hash_get_int(wh->mailboxes, ev->mailbox_id);

	if (cached != NULL)
		return *cached;
	if (wh->store == NULL ||
	    store_mailbox_get(wh->store, ev->account_id, ev->mailbox, &mbox) != 1 ||
	    mbox.id != ev->mailbox_id)
		return 0;
	cached = xmalloc(sizeof(*cached));
	*cached = mbox.uidvalidity;
	hash_put_int(wh->mailboxes, mbox.id, cached);
	return mbox.uidvalidity;
}

/* The hub's callback: format, queue, return. Never waits for the sender. */
static void
webhook_notify_cb(const struct notify_event *ev, void *arg)
{
	struct webhook *wh = arg;
	struct push_json_message m;
	struct webhook_item *item;
	const char *address;
	bool full;

	if (ev->kind != NOTIFY_NEW) {
		/* A mailbox deleted or renamed: look it up next time. */
		if (ev->kind >= NOTIFY_MAILBOX_CREATED)
			free(hash_remove_int(wh->mailboxes, ev->mailbox_id));
		return;
	}
	address = webhook_account_address(wh, ev->account_id);
	m = (struct push_json_message){
	    .mailbox = ev->mailbox,
	    .uid = ev->uid,
	    .from = ev->from,
	    .subject = ev->subject,
	    .date = ev->internal_date,
	    .size = ev->size,
	    .account = address != NULL ? address : "",
	};
	m.uidvalidity = webhook_uidvalidity(wh, ev);

	pthread_mutex_lock(&wh->lock);
	full = wh->qlen >= wh->queue_max;
	if (full) {
		wh->stats.dropped++;
	} else {
		wh->stats.queued++;
		item = xcalloc(1, sizeof(*item));
		item->uid = ev->uid;
		item->json = push_json_new(&m);
		if (wh->tail != NULL)
			wh->tail->next = item;
		else
			wh->head = item;
		wh->tail = item;
		wh->qlen++;
		pthread_cond_signal(&wh->cond);
	}
	pthread_mutex_unlock(&wh->lock);
	if (full)
		log_warnx("webhook event=overflow account=%s mailbox=%s uid=%u queue=%zu",
		          m.account, ev->mailbox, ev->uid, wh->queue_max);
}

/* --- the sender thread --- */

static bool
webhook_past(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* True when shutdown's drain time is over: every wait and transfer ends. Under lock. */
static bool
webhook_give_up_locked(struct webhook *wh)
{
	return wh->stopping && webhook_past(&wh->deadline);
}

static bool
webhook_give_up(struct webhook *wh)
{
	bool r;

	pthread_mutex_lock(&wh->lock);
	r = webhook_give_up_locked(wh);
	pthread_mutex_unlock(&wh->lock);
	return r;
}

/* libcurl's progress callback: non-zero aborts the transfer. */
static int
webhook_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                 curl_off_t ulnow)
{
	return webhook_give_up(arg) ? 1 : 0;
}

/* The answer's body is not needed. */
static size_t
webhook_discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
	return size * nmemb;
}

/* One POST. Returns the HTTP status, or 0 with error filled on a transport failure. */
static long
webhook_post(struct webhook *wh, CURL *curl, struct curl_slist *headers, const char *json,
             char error[CURL_ERROR_SIZE])
{
	CURLcode rc;
	long status = 0;

	curl_easy_reset(curl);
	error[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, wh->url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "tern");
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, wh->timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, wh->timeout);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (wh->ca_file != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, wh->ca_file);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, webhook_discard);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, webhook_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, wh);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
	rc = curl_easy_perform(curl);
	if (rc != CURLE_OK) {
		if (error[0] == '\0')
			str_copy(error, curl_easy_strerror(rc), CURL_ERROR_SIZE);
		return 0;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* Waits seconds before a retry; false when shutdown's drain time ran out first. */
static bool
webhook_backoff(struct webhook *wh, unsigned seconds)
{
	struct timespec until;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += seconds;
	pthread_mutex_lock(&wh->lock);
	while (!webhook_past(&until) && !webhook_give_up_locked(wh)) {
		const struct timespec *t = &until;

		if (wh->stopping &&
		    (wh->deadline.tv_sec < until.tv_sec ||
		     (wh->deadline.tv_sec == until.tv_sec && wh->deadline.tv_nsec < until.tv_nsec)))
			t = &wh->deadline;
		pthread_cond_timedwait(&wh->cond, &wh->lock, t);
	}
	ok = !webhook_give_up_locked(wh);
	pthread_mutex_unlock(&wh->lock);
	return ok;
}

/* Delivers one event with its retries. */
static void
webhook_deliver(struct webhook *wh, CURL *curl, struct curl_slist *headers,
                const struct webhook_item *item)
{
	char error[CURL_ERROR_SIZE];
	unsigned attempt = 0;
	int64_t start;
	long status;

	for (;;) {
		bool retry;

		start = time_mono_usec();
		status = webhook_post(wh, curl, headers, item->json, error);
		attempt++;
		if (status >= 200 && status < 300) {
			log_info(
			    "webhook event=delivered to=%s uid=%u status=%ld attempts=%u ms=%lld",
			    wh->where, item->uid, status, attempt,
			    (long long)((time_mono_usec() - start) / 1000));
			pthread_mutex_lock(&wh->lock);
			wh->stats.delivered++;
			pthread_mutex_unlock(&wh->lock);
			return;
		}
		retry = status == 0 || status == 408 || status == 429 || status >= 500;
		if (status == 0)
			log_info(
			    "webhook event=attempt-failed to=%s uid=%u attempt=%u error=\"%s\"",
			    wh->where, item->uid, attempt, error);
		else
			log_info("webhook event=attempt-failed to=%s uid=%u attempt=%u status=%ld",
			         wh->where, item->uid, attempt, status);
		if (!retry || attempt > wh->retries)
			break;
		if (!webhook_backoff(wh,
		                     attempt - 1 < 6 ? 1u << (attempt - 1) : WEBHOOK_BACKOFF_MAX))
			break;
		pthread_mutex_lock(&wh->lock);
		wh->stats.retries++;
		pthread_mutex_unlock(&wh->lock);
	}
	log_warnx("webhook event=failed to=%s uid=%u attempts=%u", wh->where, item->uid, attempt);
	pthread_mutex_lock(&wh->lock);
	wh->stats.failed++;
	pthread_mutex_unlock(&wh->lock);
}

static void *
webhook_thread(void *arg)
{
	struct webhook *wh = arg;
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	CURL *curl = curl_easy_init();

	if (curl == NULL || headers == NULL)
		fatalx("webhook event=curl-init-failed");
	for (;;) {
		struct webhook_item *item;

		pthread_mutex_lock(&wh->lock);
		while (wh->head == NULL && !wh->stopping)
			pthread_cond_wait(&wh->cond, &wh->lock);
		item = webhook_give_up_locked(wh) ? NULL : wh->head;
		if (item != NULL) {
			wh->head = item->next;
			if (wh->head == NULL)
				wh->tail = NULL;
			wh->qlen--;
		}
		pthread_mutex_unlock(&wh->lock);
		if (item == NULL)
			break; /* stopping with nothing left, or out of time */
		webhook_deliver(wh, curl, headers, item);
		free(item->json);
		free(item);
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return NULL;
}

/* --- lifetime --- */

/* Checks the URL and keeps scheme://host:port of it for logs. */
static int
webhook_parse_url(struct webhook *wh, char *error, size_t errsize)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int ret = -1;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, wh->url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(error, errsize, "push.webhook: not a URL");
		goto out;
	}
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
		snprintf(error, errsize,
		         "push.webhook: the URL must start with https:// or http://");
		goto out;
	}
	curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	wh->where = xasprintf("%s://%s:%s", scheme, host, port != NULL ? port : "?");
	ret = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ret;
}

static void
webhook_destroy(struct webhook *wh)
{
	if (wh->accounts != NULL)
		hash_foreach(wh->accounts, webhook_cache_drop, NULL);
	hash_free(&wh->accounts);
	if (wh->mailboxes != NULL)
		hash_foreach(wh->mailboxes, webhook_cache_drop, NULL);
	hash_free(&wh->mailboxes);
	pthread_mutex_destroy(&wh->lock);
	pthread_cond_destroy(&wh->cond);
	free(wh->url);
	free(wh->where);
	free(wh->ca_file);
	free(wh);
}

int
webhook_new(const struct config *config, const char *data_dir, struct store *store,
            struct notify_hub *hub, struct webhook **webhook_r, char *error, size_t errsize)
{
	const char *url = config_get(config, "push.webhook");
	pthread_condattr_t attr;
	struct webhook *wh;
	int err;

	*webhook_r = NULL;
	if (url[0] == '\0')
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(error, errsize, "libcurl cannot be initialised");
		return -1;
	}
	wh = xcalloc(1, sizeof(*wh));
	wh->store = store;
	wh->accounts = hash_new();
	wh->mailboxes = hash_new();
	wh->url = xstrdup(url);
	wh->timeout = (long)config_get_int(config, "push.webhook_timeout");
	wh->retries = (unsigned)config_get_int(config, "push.webhook_retries");
	wh->queue_max = (size_t)config_get_int(config, "push.webhook_queue");
	if (config_get(config, "push.webhook_ca")[0] != '\0')
		wh->ca_file = config_get_path(config, "push.webhook_ca", data_dir);
	pthread_mutex_init(&wh->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wh->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (webhook_parse_url(wh, error, errsize) < 0) {
		webhook_destroy(wh);
		curl_global_cleanup();
		return -1;
	}
	err = pthread_create(&wh->thread, NULL, webhook_thread, wh);
	if (err != 0) {
		snprintf(error, errsize, "webhook thread: %s", strerror(err));
		webhook_destroy(wh);
		curl_global_cleanup();
		return -1;
	}
	wh->sub = notify_subscribe(hub, 0, 0, webhook_notify_cb, wh);
	log_info("webhook event=enabled to=%s queue=%zu retries=%u timeout=%ld ca=%s", wh->where,
	         wh->queue_max, wh->retries, wh->timeout,
	         wh->ca_file != NULL ? wh->ca_file : "system");
	*webhook_r = wh;
	return 0;
}

void
webhook_store_closing(struct webhook *wh)
{
	if (wh != NULL)
		wh->store = NULL;
}

void
webhook_free(struct webhook **webhookp)
{
	struct webhook *wh = *webhookp;
	struct webhook_item *item, *next;
	size_t left;

	if (wh == NULL)
		return;
	notify_unsubscribe(&wh->sub);
	pthread_mutex_lock(&wh->lock);
	wh->stopping = true;
	left = wh->qlen;
	clock_gettime(CLOCK_MONOTONIC, &wh->deadline);
	wh->deadline.tv_sec += WEBHOOK_DRAIN_SECONDS;
	pthread_cond_broadcast(&wh->cond);
	pthread_mutex_unlock(&wh->lock);
	if (left > 0)
		log_info("webhook event=draining queued=%zu seconds=%d", left,
		         WEBHOOK_DRAIN_SECONDS);
	pthread_join(wh->thread, NULL);
	left = wh->qlen;
	for (item = wh->head; item != NULL; item = next) {
		next = item->next;
		free(item->json);
		free(item);
	}
	if (left > 0)
		log_warnx("webhook event=abandoned queued=%zu", left);
	log_info("webhook event=stopped queued=%llu delivered=%llu failed=%llu dropped=%llu "
	         "retries=%llu",
	         (unsigned long long)wh->stats.queued, (unsigned long long)wh->stats.delivered,
	         (unsigned long long)wh->stats.failed, (unsigned long long)wh->stats.dropped,
	         (unsigned long long)wh->stats.retries);
	webhook_destroy(wh);
	curl_global_cleanup();
	*webhookp = NULL;
}

void
webhook_get_stats(struct webhook *wh, struct webhook_stats *stats_r)
{
	pthread_mutex_lock(&wh->lock);
	*stats_r = wh->stats;
	pthread_mutex_unlock(&wh->lock);
}
