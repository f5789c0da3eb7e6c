/* pop3_private: what pop3_session.c and pop3_maildrop.c share. Not for use outside src/pop3.
 *
 * pop3_session.c owns the session on its netconn (net/netconn.h), the command table,
 * AUTHORIZATION and the session's lifetime; pop3_maildrop.c owns the snapshot of INBOX, the
 * TRANSACTION commands, RETR/TOP streaming and the store update of the UPDATE state. Everything
 * runs on the loop thread but the reading of message files (store/store_reader.h). */
#ifndef TERN_POP3_PRIVATE_H
#define TERN_POP3_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "auth/sasl.h"
#include "net/listener.h"
#include "net/netconn.h"
#include "pop3/pop3_parser.h"

struct auth;
struct auth_request;
struct store;
struct store_reader_stream;
struct workers;

#define POP3_RETR_HIGH (256 * 1024) /* a RETR pauses while this much waits for the client */
#define POP3_RETR_LOW (64 * 1024)   /* ... and goes on when the output drains below this */
#define POP3_MAILBOX "INBOX"        /* the maildrop */

enum pop3_state {
	POP3_STATE_AUTHORIZATION = 0, /* greeted, not logged in */
	POP3_STATE_SASL,              /* waiting for a SASL response line */
	POP3_STATE_WAIT,              /* a password check is running */
	POP3_STATE_TRANSACTION,       /* logged in, maildrop locked */
	POP3_STATE_RETR,              /* streaming a RETR/TOP response; commands wait */
	POP3_STATE_UPDATE,            /* QUIT: the store update is running */
	POP3_STATE_CLOSING,           /* last reply queued; close once it is written */
};

struct pop3_server {
	struct event_base *base;
	struct store *store;
	struct auth *auth;
	struct notify_hub *hub;
	struct workers *io; /* the store reader's I/O pool (NULL: read on the loop thread) */
	unsigned max_errors;
	struct netconn_params conn_params;
	struct netconn_list conns; /* every session not yet freed, for shutdown and locks */
	bool shutting_down;
};

/* One message of the session's snapshot of the maildrop. */
struct pop3_msg {
	uint32_t uid;
	uint32_t flags; /* as listed at login */
	uint64_t size;  /* size_crlf: what RETR sends before dot-stuffing */
	bool deleted;   /* DELE: expunged at QUIT */
	bool seen;      /* RETR: \Seen to be set */
};

/* A RETR or TOP being streamed by the store reader, through a pop3_stuffer (the stream's
 * filter, running on the I/O pool). */
struct pop3_retr {
	struct store_reader_stream *stream; /* NULL when none */
	uint32_t num;
	bool top;
};

struct pop3_session {
	struct pop3_server *server;
	struct netconn conn; /* id, peer, tls, dead */
	enum pop3_state state;
	unsigned errors;
	char *user;              /* USER argument, waiting for PASS */
	struct sasl_server sasl; /* the AUTH exchange; holds secrets until reset */
	struct auth_request *auth_req;
	int64_t account_id; /* 0: not logged in; else this session holds the maildrop lock */
	char *account;
	uint32_t uidvalidity;
	int64_t mailbox_id;    /* INBOX, for the events the update publishes */
	struct pop3_msg *msgs; /* the snapshot: message n is msgs[n - 1] */
	uint32_t nmsgs;
	size_t msgs_cap;
	uint32_t live_count; /* messages not marked deleted, and their size */
	uint64_t live_size;
	unsigned retrieved;
	struct pop3_retr retr;
	bool updated;        /* the one store update was started */
	bool update_pending; /* the session may only be freed by the update callback */
};

/* pop3_session.c */
#define pop3_reply(s, ...) netconn_reply(&(s)->conn, __VA_ARGS__)
void pop3_enter_state(struct pop3_session *s, enum pop3_state state);
/* Counts a protocol error; past pop3.max_errors the session is closed. */
void pop3_error(struct pop3_session *s);
/* Unlinks and frees; for a session that is dead (conn.dead). */
void pop3_session_free(struct pop3_session *s);

/* pop3_maildrop.c */
/* True when a live session, or a dead one whose update still runs, holds the maildrop. */
bool pop3_maildrop_locked(const struct pop3_server *server, int64_t account_id);
/* Takes the snapshot of INBOX that fixes the message numbers. 0 or -1 (store error). */
int pop3_snapshot(struct pop3_session *s, int64_t account_id);
/* Starts the session's one store update: \Seen for what RETR sent and, with expunge (QUIT),
 * the DELE'd messages. Returns false when there was nothing to do. Otherwise the callback
 * replies (UPDATE state) or frees the session (dead), perhaps before this returns. */
bool pop3_update_start(struct pop3_session *s, bool expunge);
/* Streams the RETR/TOP in progress until the output is above POP3_RETR_HIGH or the response
 * is complete (then true, and the state is TRANSACTION again). False also while a read runs
 * on the I/O pool: its completion runs the session again. */
bool pop3_retr_pump(struct pop3_session *s);
/* Drops the RETR/TOP in progress (the session closes). */
void pop3_retr_free(struct pop3_session *s);
void pop3_cmd_noop(struct pop3_session *s, const struct pop3_command *cmd);
void pop3_cmd_stat(struct pop3_session *s, const struct pop3_command *cmd);
void pop3_cmd_list(struct pop3_session *s, const struct pop3_command *cmd); /* and UIDL */
void pop3_cmd_dele(struct pop3_session *s, const struct pop3_command *cmd);
void pop3_cmd_rset(struct pop3_session *s, const struct pop3_command *cmd);
void pop3_cmd_retr(struct pop3_session *s, const struct pop3_command *cmd); /* and TOP */

#endif
