/* push: the push service, a small line protocol that tells a logged-in client about changes to
 * its mailboxes the moment they happen (docs/push-protocol.md).
 *
 * A session greets, offers STARTTLS on plaintext listeners, authenticates with AUTH PLAIN
 * (src/auth: asynchronous argon2id, brute-force throttle, the auth.allow_plaintext rule), then
 * WATCHes mailboxes of its own account: one subscription on the notify hub per session, filtered
 * by mailbox id. Each event becomes one JSON line (src/push/push_json.h). WATCH ... SINCE uid
 * first replays the messages above uid from the store, in chunks that wait for the client.
 *
 * Memory per session is bounded: events go straight into the connection's output while less than
 * PUSH_OUTPUT_HIGH is queued there; above it they wait in a queue of at most push.queue events;
 * when that overflows, the queue is dropped and the client gets a "resync" event once it reads
 * again. A client that stops reading is closed by the write timeout (push.idle_timeout).
 * Everything runs on the loop thread. */
#ifndef TERN_PUSH_H
#define TERN_PUSH_H

#include <stdbool.h>

#include "net/listener.h"

struct event_base;
struct config;
struct store;
struct auth;
struct notify_hub;
struct push_server;

/* Statistics for logs and tests. */
struct push_stats {
	unsigned sessions;            /* live sessions */
	unsigned long long events;    /* event lines sent */
	unsigned long long overflows; /* queues dropped (resync sent) */
};

struct push_server *push_server_new(struct event_base *base, const struct config *config,
                                    struct store *store, struct auth *auth, struct notify_hub *hub);
/* Every session must be gone (push_server_close_all). *server becomes NULL. */
void push_server_free(struct push_server **server);

/* listener_accept_cb; arg is the struct push_server. tls: an implicit-TLS listener. */
void push_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls,
                        void *arg);
/* Graceful stop: every session gets "-ERR server shutting down" and closes. */
void push_server_shutdown(struct push_server *server);
void push_server_close_all(struct push_server *server);
unsigned push_server_session_count(const struct push_server *server);
void push_server_stats(const struct push_server *server, struct push_stats *stats_r);

#endif
