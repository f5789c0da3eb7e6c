/* imap_session: one IMAP4rev1 server connection (RFC 3501, with IDLE 2177, UIDPLUS 4315,
 * MOVE 6851, LITERAL+ 7888, SASL-IR 4959, ENABLE 5161, UNSELECT 3691, NAMESPACE 2342, ID 2971,
 * CHILDREN 3348, SPECIAL-USE 6154, CONDSTORE and QRESYNC 7162, ESEARCH 4731, MULTIAPPEND 3502,
 * BINARY 3516, CATENATE 4469, SORT and THREAD=ORDEREDSUBJECT / THREAD=REFERENCES 5256,
 * SORT=DISPLAY 5957, ESORT and CONTEXT=SEARCH/SORT 5267, LIST-EXTENDED 5258, LIST-STATUS 5819,
 * COMPRESS=DEFLATE 4978, UTF8=ACCEPT 6855 for mailbox names).
 *
 * Built on netconn (connection plumbing), imap_parser (commands and literals), sasl_server
 * (AUTHENTICATE), auth (passwords), the store (mailboxes and messages) and the notify hub
 * (changes from other sessions and new deliveries, for IDLE and NOOP). A protocol session: it
 * never opens SQLite or files itself. */
#ifndef TERN_IMAP_SESSION_H
#define TERN_IMAP_SESSION_H

#include <stdbool.h>

#include "net/listener.h"

struct event_base;
struct config;
struct store;
struct auth;
struct notify_hub;
struct deliver;
struct workers;
struct imap_server;

/* deliver is the path APPEND takes (as SMTP does); workers run SEARCH's reading of message
 * files off the loop thread. Both must outlive the server. */
struct imap_server *imap_server_new(struct event_base *base, const struct config *config,
                                    struct store *store, struct auth *auth, struct notify_hub *hub,
                                    struct deliver *deliver, struct workers *workers);
/* Every session must be gone (imap_server_close_all, then the store's callbacks drained). */
/* The I/O pool FETCH reads message files on (store/store_reader.h); without one it reads on
 * the loop thread. Must outlive the sessions. Defined in imap_fetch.c. */
void imap_server_set_io(struct imap_server *server, struct workers *io);
void imap_server_free(struct imap_server **server);

/* listener_accept_cb; arg is the struct imap_server. tls says implicit TLS (IMAPS). */
void imap_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls,
                        void *arg);
/* Graceful stop: every session gets "* BYE" and closes once its current command is done. */
void imap_server_shutdown(struct imap_server *server);
void imap_server_close_all(struct imap_server *server);
unsigned imap_server_session_count(const struct imap_server *server);

#endif
