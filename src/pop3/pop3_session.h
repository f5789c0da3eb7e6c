/* pop3_session: one POP3 server connection (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL, 8314).
 *
 * The maildrop is the account's INBOX. A session takes a snapshot of it at login (message numbers
 * fixed for the session), streams RETR/TOP from the stored files with dot-stuffing and CRLF line
 * endings (read by the store reader on an I/O pool, never on the loop thread), and applies \Seen
 * flags and DELE marks in one store_mailbox_update at QUIT (UPDATE state). Only one session per
 * maildrop at a time (RFC 1939 exclusive access: -ERR [IN-USE]). */
#ifndef TERN_POP3_SESSION_H
#define TERN_POP3_SESSION_H

#include <stdbool.h>

#include "net/listener.h"

struct event_base;
struct config;
struct store;
struct auth;
struct pop3_server;

struct notify_hub;

/* hub (may be NULL) is told of the expunges and \Seen flags each QUIT commits. */
struct pop3_server *pop3_server_new(struct event_base *base, const struct config *config,
                                    struct store *store, struct auth *auth, struct notify_hub *hub);
struct workers;
/* The I/O pool RETR and TOP read message files on (store/store_reader.h); without one they
 * read on the loop thread. Must outlive the sessions. */
void pop3_server_set_io(struct pop3_server *server, struct workers *io);
/* Every session must be gone (pop3_server_close_all, then the store's callbacks drained). */
void pop3_server_free(struct pop3_server **server);

/* listener_accept_cb; arg is the struct pop3_server. tls says implicit TLS (POP3S). */
void pop3_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls,
                        void *arg);
/* Graceful stop: sessions not in the middle of an update get "-ERR [SYS/TEMP]" and close; a
 * QUIT in progress finishes its update first. */
void pop3_server_shutdown(struct pop3_server *server);
void pop3_server_close_all(struct pop3_server *server);
unsigned pop3_server_session_count(const struct pop3_server *server);

#endif
