/* smtp_session: one SMTP server connection, from greeting to QUIT (RFC 5321, 3207, 4954, 6409,
 * 8314, 1870, 2920, 3030, 6152, 2034).
 *
 * A session parses bytes (smtp_parser), decides nothing about mailboxes itself and asks the
 * deliver and auth services; slow work (password checks, durable commits) answers through
 * callbacks while the loop serves other sessions. */
#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H

#include <stdbool.h>

#include "net/listener.h"

struct event_base;
struct config;
struct deliver;
struct auth;
struct smtp_server;

enum smtp_role {
	SMTP_ROLE_MX = 0,      /* port 25: mail for local users from anyone; no relaying */
	SMTP_ROLE_SUBMISSION,  /* port 587: STARTTLS, AUTH required (RFC 6409) */
	SMTP_ROLE_SUBMISSIONS, /* port 465: implicit TLS, AUTH required (RFC 8314) */
	SMTP_ROLE_COUNT,
};

struct smtp_server *smtp_server_new(struct event_base *base, const struct config *config,
                                    struct deliver *deliver, struct auth *auth);
/* Frees the server; every session must be gone (see smtp_server_close_all). */
void smtp_server_free(struct smtp_server **server);

/* The listener argument for a role: pass it with smtp_server_accept to listener_new(). */
void *smtp_server_role_arg(struct smtp_server *server, enum smtp_role role);
/* listener_accept_cb: starts a session on bev. */
void smtp_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls,
                        void *arg);

/* Graceful stop: idle sessions get 421 and close now; sessions in a transaction close after it
 * ends. */
void smtp_server_shutdown(struct smtp_server *server);
/* Closes every session at once (after the shutdown bound). Commits in flight still finish. */
void smtp_server_close_all(struct smtp_server *server);
unsigned smtp_server_session_count(const struct smtp_server *server);

#endif
