/* webhook: POSTs every new message of every account to [push] webhook as JSON.
 *
 * The payload is the push service's "new" event (src/push/push_json.h) with "account", the
 * account's address, added. The hub's callback runs on the loop thread and only formats the line
 * and appends it to a bounded queue (push.webhook_queue; when it is full the event is dropped,
 * counted and logged: delivery never waits). One thread of our own takes the queue in order and
 * POSTs each event with libcurl (Content-Type: application/json, User-Agent: tern), with a
 * timeout (push.webhook_timeout), certificate and host verification on (the system CA store, or
 * push.webhook_ca), no redirects, and up to push.webhook_retries retries with exponential backoff
 * (1 s, 2 s, 4 s ... at most 60 s) after a network error, a timeout, 408, 429 or 5xx. Other
 * answers are final: 2xx delivered, the rest failed.
 *
 * webhook_free drains what is queued for at most WEBHOOK_DRAIN_SECONDS, then abandons the rest
 * (logged) and joins the thread. */
#ifndef TERN_WEBHOOK_H
#define TERN_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct store;
struct notify_hub;
struct webhook;

#define WEBHOOK_DRAIN_SECONDS 5
#define WEBHOOK_BACKOFF_MAX 60 /* seconds */

/* Starts the sender when push.webhook is set: subscribes to every account on hub and starts the
 * thread. *webhook_r is NULL when no webhook is configured. Returns 0, or -1 with error (a URL
 * that is not http:// or https://, or a thread that cannot start). Call on the loop thread,
 * before it runs, with store and hub outliving the sender. */
int webhook_new(const struct config *config, const char *data_dir, struct store *store,
                struct notify_hub *hub, struct webhook **webhook_r, char *error, size_t errsize);
/* The store is about to close, but commits in flight may still publish: from now on events are
 * described from what is cached (an unknown account or mailbox gives "" or 0). NULL ignored. */
void webhook_store_closing(struct webhook *webhook);
/* Unsubscribes, drains (see above), joins and frees; *webhook becomes NULL (NULL is ignored). */
void webhook_free(struct webhook **webhook);

struct webhook_stats {
	uint64_t queued;    /* events taken into the queue */
	uint64_t dropped;   /* events refused because the queue was full */
	uint64_t delivered; /* POSTs answered 2xx */
	uint64_t failed;    /* events given up on */
	uint64_t retries;   /* attempts after the first */
};
/* A consistent snapshot; any thread. */
void webhook_get_stats(struct webhook *webhook, struct webhook_stats *stats_r);

#endif
