/* imap_private: what the IMAP server's files share. Not for use outside src/imap.
 *
 * imap_session.c owns the session on its netconn, the command table, the not-authenticated
 * state (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE) and the session's lifetime;
 * imap_mailbox.c the authenticated and selected states (LIST, STATUS, SELECT, EXPUNGE, IDLE,
 * the snapshot and the notify queue); imap_fetch.c FETCH, STORE and SEARCH. Everything runs
 * on the loop thread. */
#ifndef TERN_IMAP_PRIVATE_H
#define TERN_IMAP_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "imap/imap_parser.h"
#include "net/listener.h"
#include "net/netconn.h"
#include "store/store.h"

struct auth;
struct auth_request;
struct store;
struct notify_hub;
struct notify_sub;
struct event;

#define IMAP_FETCH_HIGH (256 * 1024) /* a FETCH pauses while this much waits for the client */
#define IMAP_FETCH_LOW (64 * 1024)   /* ... and goes on when the output drains below this */
#define IMAP_CHUNK 16384             /* bytes read from a message file at a time */
#define IMAP_EVENTS_MAX 4096         /* queued notify events before the session gives up */
#define IMAP_IDLE_KEEPALIVE 120      /* seconds between "* OK Still here" */

/* The store flag bits IMAP shows as system flags (\Recent is per session, not stored). */
#define IMAP_SYSTEM_FLAGS                                                                      \
	(STORE_FLAG_SEEN | STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED | STORE_FLAG_DELETED |         \
	 STORE_FLAG_DRAFT)

enum imap_state {
	IMAP_STATE_NOT_AUTH = 0, /* greeted, not logged in */
	IMAP_STATE_SASL,         /* waiting for an AUTHENTICATE response line */
	IMAP_STATE_WAIT,         /* a password check or a store update is running */
	IMAP_STATE_AUTH,         /* logged in, no mailbox selected */
	IMAP_STATE_SELECTED,     /* a mailbox is selected */
	IMAP_STATE_FETCH,        /* streaming a FETCH response; commands wait */
	IMAP_STATE_IDLE,         /* IDLE: waiting for DONE */
	IMAP_STATE_CLOSING,      /* last reply queued; close once it is written */
};

struct imap_server {
	struct event_base *base;
	struct store *store;
	struct auth *auth;
	struct notify_hub *hub;
	unsigned max_errors;
	struct netconn_params conn_params;
	struct imap_session *sessions;
	unsigned nsessions;
	bool shutting_down;
	uint64_t next_id;
};

/* One message of the selected mailbox's snapshot: sequence number n is msgs[n - 1]. */
struct imap_msg {
	uint32_t uid;
	uint32_t flags;	  /* IMAP_SYSTEM_FLAGS bits */
	bool recent;	  /* \Recent in this session */
	bool meta;	  /* size and date below are known */
	uint64_t size;	  /* size_crlf */
	int64_t internal_date;
	uint64_t modseq;  /* CONDSTORE; 0 until known */
	char *keywords;	  /* space-separated, malloc'd; NULL when none */
};

/* A queued notify event (only what the session needs). */
struct imap_event {
	int kind; /* enum notify_kind */
	uint32_t uid;
	uint32_t flags;
	uint64_t modseq;
	char *keywords; /* malloc'd or NULL */
};

struct imap_fetch; /* imap_fetch.c */

/* What to do once the store update in flight completes. */
enum imap_update_kind {
	IMAP_UPDATE_NONE = 0,
	IMAP_UPDATE_STORE,   /* STORE: reply with FETCH FLAGS and OK */
	IMAP_UPDATE_EXPUNGE, /* EXPUNGE / UID EXPUNGE: EXPUNGE responses and OK */
	IMAP_UPDATE_CLOSE,   /* CLOSE: silent expunge, then OK */
	IMAP_UPDATE_FETCH,   /* \Seen for a FETCH, then the FETCH streams */
};

struct imap_session {
	struct imap_server *server;
	struct netconn conn;
	enum imap_state state;
	struct imap_parser *parser;
	unsigned errors;
	char *tag; /* the command in progress (WAIT, FETCH, IDLE, SASL) */
	struct sasl_server sasl;
	struct auth_request *auth_req;
	int64_t account_id; /* 0: not logged in */
	char *account;
	/* The selected mailbox. */
	char *mailbox;
	int64_t mailbox_id;
	uint32_t uidvalidity;
	uint32_t uidnext;
	bool read_only;
	struct imap_msg *msgs;
	uint32_t nmsgs;
	size_t msgs_cap;
	uint32_t exists_announced; /* the EXISTS count the client knows */
	struct notify_sub *sub;
	struct imap_event *events;
	size_t nevents, events_cap;
	bool events_overflow;
	bool publishing; /* our own events are being published: ignore them */
	/* A store update in flight. */
	int update_pending;
	enum imap_update_kind update_kind;
	struct store_flag_change *update_changes;
	size_t update_nchanges;
	uint32_t *update_uids;
	size_t update_nuids;
	bool update_silent;
	bool update_uid;
	struct imap_fetch *fetch; /* a FETCH in progress */
	struct event *idle_timer;
	struct imap_session *prev, *next;
};

/* imap_session.c */
#define imap_reply(s, ...) netconn_reply(&(s)->conn, __VA_ARGS__)
void imap_enter_state(struct imap_session *s, enum imap_state state);
/* Counts a protocol error; past imap.max_errors the session is closed. */
void imap_error(struct imap_session *s);
/* Replies "tag BAD text" and counts the error. */
void imap_bad(struct imap_session *s, const char *tag, const char *text);
/* Sets s->tag to a copy of tag (for replies sent later). */
void imap_set_tag(struct imap_session *s, const char *tag);
void imap_session_free(struct imap_session *s);
/* Quotes str as an IMAP quoted string (or a literal when needed) into the output. */
void imap_write_astring(struct imap_session *s, const char *str);

/* imap_mailbox.c */
void imap_cmd_list(struct imap_session *s, const struct imap_command *cmd); /* and LSUB */
void imap_cmd_status(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_select(struct imap_session *s, const struct imap_command *cmd); /* EXAMINE */
void imap_cmd_namespace(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_unselect(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_close(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_check(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_expunge(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_idle(struct imap_session *s, const struct imap_command *cmd);
/* The IDLE continuation line arrived. */
void imap_idle_line(struct imap_session *s, const char *line);
/* Drops the selected mailbox (snapshot, subscription, queue). */
void imap_mailbox_deselect(struct imap_session *s);
/* Sends the queued changes as untagged responses; with expunges false only EXISTS and FLAGS
 * (during FETCH, STORE, SEARCH), leaving expunges queued. */
void imap_mailbox_flush(struct imap_session *s, bool expunges);
/* Starts a store update with s->update_* filled; the callback finishes the command. */
void imap_update_start(struct imap_session *s, enum imap_update_kind kind);
/* The index in s->msgs of uid, or -1. */
long imap_msg_find(const struct imap_session *s, uint32_t uid);
/* Writes "(\Seen \Deleted ...)" flags into buf. */
void imap_flags_format(uint32_t flags, char *buf, size_t size);
/* Appends a message's whole flag list to the output: system flags, \Recent, keywords. */
void imap_msg_flags_write(struct imap_session *s, const struct imap_msg *m);
/* Fills the size and date of snapshot messages that lack them. 0 or -1. */
int imap_mailbox_load_meta(struct imap_session *s);
/* Expands a sequence set argument into snapshot indexes (sorted, unique) in *idx_r (free()).
 * Returns the count, or -1 after replying BAD. uid: the set names UIDs. */
long imap_seqset_expand(struct imap_session *s, const char *tag, const struct imap_arg *arg,
                        bool uid, uint32_t **idx_r);

/* imap_fetch.c */
void imap_cmd_fetch(struct imap_session *s, const struct imap_command *cmd);
/* The \Seen update for a FETCH is done (ok or not): start streaming. */
void imap_fetch_begin(struct imap_session *s);
/* Streams the FETCH in progress until the output is above IMAP_FETCH_HIGH or it is done
 * (then true, with the state SELECTED again). */
bool imap_fetch_pump(struct imap_session *s);
void imap_fetch_free(struct imap_session *s);

/* imap_store.c */
void imap_cmd_store(struct imap_session *s, const struct imap_command *cmd);
/* Parses a flag list (atom or list of atoms) into store flag bits. -1 on unknown flags. */
int imap_flags_parse(const struct imap_arg *arg, uint32_t *flags_r);

/* imap_search.c */
void imap_cmd_search(struct imap_session *s, const struct imap_command *cmd);

/* imap_mbox.c: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE */

/* imap_append.c: APPEND, COPY, MOVE */

#endif
