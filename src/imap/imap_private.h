/* imap_private: what the IMAP server's files share. Not for use outside src/imap.
 *
 * imap_session.c owns the session on its netconn, the command table, the not-authenticated
 * state (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE) and the session's lifetime;
 * imap_mailbox.c the selected state (SELECT, STATUS, the snapshot, the notify queue, \Recent,
 * resync, IDLE); imap_mbox.c the mailbox namespace (CREATE, DELETE, RENAME, SUBSCRIBE) and
 * name arguments; imap_list.c LIST and LSUB; imap_condstore.c CONDSTORE and QRESYNC
 * (HIGHESTMODSEQ, SELECT's parameters, VANISHED); imap_fetch.c FETCH with imap_section.c resolving
 * body sections and imap_binary.c BINARY; imap_store.c STORE, EXPUNGE, CLOSE and the store
 * update they share; imap_append.c APPEND (with imap_catenate.c), COPY and MOVE; imap_search.c
 * SEARCH over imap_match.c, and imap_sort.c (SORT) and imap_thread.c (THREAD) on top of it;
 * imap_context.c the RETURN options and RFC 5267's updating contexts of SEARCH and SORT.
 * imap_notify.c NOTIFY (RFC 5465, its own header imap_notify.h).
 * Everything runs on the loop thread (but SEARCH's file reading, on the workers, and FETCH's,
 * by the store reader on its I/O pool). */
#ifndef TERN_IMAP_PRIVATE_H
#define TERN_IMAP_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "imap/imap_context.h"
#include "imap/imap_parser.h"
#include "net/listener.h"
#include "net/netconn.h"
#include "store/store.h"

struct auth;
struct auth_request;
struct store;
struct notify_hub;
struct notify_sub;
struct notify_event;
struct event;
struct deliver;
struct deliver_tx;
struct workers;

#define IMAP_FETCH_HIGH (256 * 1024) /* a FETCH pauses while this much waits for the client */
#define IMAP_FETCH_LOW (64 * 1024)   /* ... and goes on when the output drains below this */
#define IMAP_CHUNK 16384             /* bytes read from a message file at a time */
#define IMAP_EVENTS_MAX 4096         /* queued notify events; past it the session resyncs */
#define IMAP_IDLE_KEEPALIVE 120      /* seconds between "* OK Still here" */

/* The store flag bits IMAP shows as system flags (\Recent is per session, not stored). */
#define IMAP_SYSTEM_FLAGS                                                                          \
	(STORE_FLAG_SEEN | STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED | STORE_FLAG_DELETED |         \
	 STORE_FLAG_DRAFT)

enum imap_state {
	IMAP_STATE_NOT_AUTH = 0, /* greeted, not logged in */
	IMAP_STATE_SASL,         /* waiting for an AUTHENTICATE response line */
	IMAP_STATE_WAIT,     /* a password check, a store operation or SEARCH's file reading runs */
	IMAP_STATE_AUTH,     /* logged in, no mailbox selected */
	IMAP_STATE_SELECTED, /* a mailbox is selected */
	IMAP_STATE_FETCH,    /* streaming a FETCH response; commands wait */
	IMAP_STATE_IDLE,     /* IDLE: waiting for DONE */
	IMAP_STATE_CLOSING,  /* last reply queued; close once it is written */
};

/* \Recent (RFC 3501 2.3.2): a message is recent in the first read-write session that sees it.
 * The server remembers per mailbox the highest UID handed out as recent: struct imap_server's
 * recent table maps a mailbox id to a uint32_t (lib/hash.h, made at the first use). */

struct imap_server {
	struct event_base *base;
	struct store *store;
	struct auth *auth;
	struct notify_hub *hub;
	struct deliver *deliver;
	struct workers *workers; /* SEARCH reads message files on these (lib/workers.h) */
	struct workers *io;      /* FETCH's store reader pool (imap_server_set_io; may be NULL) */
	struct notify_sub *recent_sub; /* imap_recent_event */
	struct hash *recent;
	unsigned max_errors;
	uint64_t append_max; /* bytes of one APPENDed message (smtp.max_message_size) */
	struct netconn_params conn_params;
	struct netconn_list conns; /* every live session, for shutdown */
	bool shutting_down;
};

/* One message of the selected mailbox's snapshot: sequence number n is msgs[n - 1]. */
struct imap_msg {
	uint32_t uid;
	uint32_t flags; /* IMAP_SYSTEM_FLAGS bits */
	bool recent;    /* \Recent in this session */
	bool meta;      /* size and date below are known */
	uint64_t size;  /* size_crlf */
	int64_t internal_date;
	uint64_t modseq; /* CONDSTORE; 0 until known */
	char *keywords;  /* space-separated, malloc'd; NULL when none */
};

/* A queued notify event (only what the session needs). */
struct imap_event {
	int kind; /* enum notify_kind */
	uint32_t uid;
	uint32_t flags;
	uint64_t modseq;
	char *keywords; /* malloc'd or NULL */
	bool recent;    /* NEW: this session claimed it as \Recent */
};

struct imap_fetch;  /* imap_fetch.c */
struct imap_append; /* imap_append.c */
struct imap_notify; /* imap_notify.c */

/* What to do once the store update in flight completes. */
enum imap_update_kind {
	IMAP_UPDATE_NONE = 0,
	IMAP_UPDATE_STORE,   /* STORE: reply with FETCH FLAGS and OK */
	IMAP_UPDATE_EXPUNGE, /* EXPUNGE / UID EXPUNGE: EXPUNGE responses and OK */
	IMAP_UPDATE_CLOSE,   /* CLOSE: silent expunge, then OK */
	IMAP_UPDATE_FETCH,   /* \Seen for a FETCH, then the FETCH streams */
	IMAP_UPDATE_COPY,    /* COPY: COPYUID and OK */
	IMAP_UPDATE_MOVE,    /* MOVE: COPYUID, EXPUNGE responses and OK */
	IMAP_UPDATE_APPEND,  /* APPEND: APPENDUID and OK */
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
	bool condstore;         /* CONDSTORE enabled (RFC 7162 3.1) */
	bool utf8;              /* UTF8=ACCEPT enabled: names are UTF-8 on the wire (RFC 6855) */
	bool qresync;           /* QRESYNC enabled (RFC 7162 3.2): VANISHED instead of EXPUNGE */
	bool mailbox_gone;      /* the selected mailbox was deleted by another session */
	uint64_t highestmodseq; /* of the selected mailbox, as the client was told */
	uint64_t sync_modseq;   /* msgs[] holds every change with a MODSEQ up to this (a resync
	                         * reads only what is newer) */
	char *keywords;         /* keywords announced in FLAGS, space-separated, or NULL */
	uint32_t recent;        /* messages \Recent in this session, as announced */
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
	char *update_kw;                /* the keyword lists the changes point into */
	uint64_t update_unchangedsince; /* STORE (UNCHANGEDSINCE n), 0 when none */
	char *update_dst;               /* COPY/MOVE destination */
	/* APPEND in progress (imap_append.c): message literals stream into deliver transactions. */
	struct imap_append *append;
	struct imap_fetch *fetch;      /* a FETCH in progress */
	struct imap_context *contexts; /* RFC 5267 updating contexts (imap_context.c) */
	struct event *idle_timer;
	struct imap_notify *notify; /* NOTIFY's state (imap_notify.c); NULL before NOTIFY */
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
/* The server's own notify subscription (every account): notes new mail for \Recent. */
void imap_recent_event(const struct notify_event *ev, void *arg);
/* The \Recent boundary of a mailbox: UIDs above it are \Recent for the next session that selects
 * it (what STATUS RECENT counts); UINT32_MAX when the server has seen no new mail there since it
 * started. */
uint32_t imap_recent_after(struct imap_server *server, int64_t mailbox_id);
/* STATUS items (RFC 3501 6.3.10, RFC 7162): NULL when every item is known (HIGHESTMODSEQ enables
 * CONDSTORE), else the text for BAD. */
const char *imap_status_items_check(struct imap_session *s, const struct imap_arg *items,
                                    size_t nitems);
/* Writes "* STATUS name (items)" for mbox, counted by one aggregate store query (STATUS and
 * LIST-STATUS). 0, or -1 when the store cannot be read (nothing written). */
struct store_mailbox;
int imap_status_write(struct imap_session *s, const char *name, const struct store_mailbox *mbox,
                      const struct imap_arg *items, size_t nitems);
/* Frees the server's \Recent table. */
void imap_recent_free(struct imap_server *server);
/* Drops the selected mailbox (snapshot, subscription, queue). */
void imap_mailbox_deselect(struct imap_session *s);
/* Compares the snapshot with the store and tells the client the difference (after the event
 * queue overflowed): EXPUNGE, FETCH FLAGS, EXISTS. */
void imap_mailbox_resync(struct imap_session *s);
/* Sends the queued changes as untagged responses; with expunges false only EXISTS and FLAGS
 * (during FETCH, STORE, SEARCH), leaving expunges queued. */
void imap_mailbox_flush(struct imap_session *s, bool expunges);
/* Starts a store update with s->update_* filled; the callback finishes the command. */
void imap_update_start(struct imap_session *s, enum imap_update_kind kind);
/* Frees what s->update_* hold. */
void imap_update_clear(struct imap_session *s);
/* Removes snapshot message idx (sequence number idx + 1) and frees what it holds. */
void imap_msg_remove(struct imap_session *s, size_t idx);
/* Sends "* n EXPUNGE" (unless silent) for each of uids[0..n) in the snapshot, highest sequence
 * number first, and removes them. */
void imap_expunge_uids(struct imap_session *s, const uint32_t *uids, size_t n, bool silent);
/* Publishes NOTIFY_EXPUNGE for uids of the selected mailbox (ignored by this session). */
void imap_publish_expunges(struct imap_session *s, const uint32_t *uids, size_t n);
/* Adds the keywords (space-separated) the client has not been told of to s->keywords and
 * announces the new FLAGS and PERMANENTFLAGS (RFC 3501 7.2.6). */
void imap_keywords_note(struct imap_session *s, const char *keywords);
/* Writes a UID set in its shortest form ("3:5,9") to the output. */
void imap_write_uidset(struct imap_session *s, const uint32_t *uids, size_t n);
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

/* imap_condstore.c: CONDSTORE and QRESYNC (RFC 7162) */
/* A CONDSTORE-enabling command (RFC 7162 3.1): turns CONDSTORE on and, the first time with a
 * mailbox selected, sends "* OK [HIGHESTMODSEQ n]". */
void imap_condstore_enable(struct imap_session *s);
/* SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids [seq-match]])), RFC 7162 3.2.5. */
struct imap_qresync_param {
	bool present;
	uint32_t uidvalidity;
	uint64_t modseq;
	const char *known_uids; /* a UID set, or NULL for all */
};
/* Reads SELECT's optional "(CONDSTORE)" / "(QRESYNC (...))" into q. 0, or -1 after replying. */
int imap_select_params(struct imap_session *s, const struct imap_command *cmd,
                       struct imap_qresync_param *q);
/* After SELECT (QRESYNC ...): VANISHED (EARLIER) and the changed flags (RFC 7162 3.2.5.1). */
void imap_select_resync(struct imap_session *s, const struct imap_qresync_param *q);
/* Sends one message's changed flags as an untagged FETCH (UID, FLAGS, MODSEQ with CONDSTORE). */
void imap_flags_changed(struct imap_session *s, long idx);

/* Tells the client that message seq (UID uid) is gone: "* seq EXPUNGE", or "* VANISHED uid"
 * once QRESYNC is enabled (RFC 7162 3.2.10). */
void imap_expunge_reply(struct imap_session *s, uint32_t seq, uint32_t uid);
/* Sends "* VANISHED (EARLIER) uids" for the UIDs that left the selected mailbox by an update
 * with a MODSEQ above since and lie in uidset (a valid UID set; all when NULL). Nothing when
 * there are none. 0, or -1 when the store cannot be read. */
int imap_vanished_earlier(struct imap_session *s, uint64_t since, const char *uidset);

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
/* Parses flags (one list, or nargs atoms) into store flag bits and keywords (space-separated in
 * kw). \Recent is ignored. 0, -1 an invalid flag, -2 the keywords do not fit kwsize. */
int imap_flags_parse(const struct imap_arg *args, size_t nargs, uint32_t *flags_r, char *kw,
                     size_t kwsize);

/* imap_search.c */
void imap_cmd_search(struct imap_session *s, const struct imap_command *cmd);
/* Parses "RETURN (...)" at args[*pos] (nothing there: 0, *r untouched) into *r
 * (imap_context.h); UPDATE under a tag that has a live context is refused (RFC 5267 4.3).
 * Returns 0, or -1 after replying BAD. */
int imap_search_return_opts(struct imap_session *s, const char *tag, const struct imap_arg *args,
                            size_t nargs, size_t *pos, struct imap_search_ret *r);
/* Fills mm from snapshot message i (sequence number i + 1). */
struct imap_match_msg;
void imap_search_msg(const struct imap_session *s, uint32_t i, struct imap_match_msg *mm);
/* 0 for UTF-8 and US-ASCII, or -1 after replying NO [BADCHARSET (UTF-8 US-ASCII)]. */
int imap_search_charset_check(struct imap_session *s, const char *tag, const char *charset);
/* A command built on SEARCH (SORT, THREAD): the keys are evaluated as for SEARCH, then read()
 * runs on a worker for each matching message with its file (opened read-only; fd -1 when it
 * could not be opened; the fd stays SEARCH's) and returns the reader's data for it; reply() then
 * answers on the loop thread with match[i] and data[i] by snapshot index (data NULL for a message
 * not read). read NULL: nothing is read. free_data frees one datum, free_ctx the context (both
 * also when the command fails or the session dies). */
struct imap_search_reader {
	void *(*read)(int fd, void *ctx);
	void (*reply)(struct imap_session *s, const char *tag, uint32_t nmsgs, const bool *match,
	              void *const *data, void *ctx);
	void (*free_data)(void *data);
	void (*free_ctx)(void *ctx);
};
/* Runs the search keys cmd->args[pos..] for reader (ctx is the reader's from now on). */
void imap_search_run(struct imap_session *s, const struct imap_command *cmd, size_t pos,
                     const struct imap_search_reader *reader, void *ctx);
/* The same with RETURN options (SORT): UPDATE keeps a context (imap_context.h) ordered by cmp
 * with cmp_arg (malloc'd, taken: free()d with the context or the command) over the snapshot and
 * the reader's data, which the context takes over for the matches. */
void imap_search_run_ret(struct imap_session *s, const struct imap_command *cmd, size_t pos,
                         const struct imap_search_ret *ret, const struct imap_search_reader *reader,
                         void *ctx, imap_context_cmp_fn *cmp, void *cmp_arg);

/* imap_sort.c */
void imap_cmd_sort(struct imap_session *s, const struct imap_command *cmd);

/* imap_thread.c */
void imap_cmd_thread(struct imap_session *s, const struct imap_command *cmd);

/* imap_mbox.c: the mailbox namespace */
#define IMAP_MAILBOX_MAX 1024      /* a mailbox name in UTF-8, with its NUL */
#define IMAP_MAILBOX_WIRE_MAX 4096 /* the same in modified UTF-7 */
void imap_cmd_list(struct imap_session *s, const struct imap_command *cmd); /* and LSUB */
void imap_cmd_create(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd); /* UNSUBSCRIBE */
/* Reads a mailbox name argument into out as UTF-8 ("INBOX" in any case becomes "INBOX"):
 * canonical modified UTF-7, or UTF-8 as sent after ENABLE UTF8=ACCEPT. Returns 0, or -1 after
 * replying BAD/NO. */
int imap_mailbox_arg(struct imap_session *s, const char *tag, const struct imap_arg *arg, char *out,
                     size_t outsize);
/* Writes a store (UTF-8) mailbox name as an IMAP astring in modified UTF-7, or after ENABLE
 * UTF8=ACCEPT as a quoted UTF-8 string. */
void imap_write_mailbox(struct imap_session *s, const char *name);
/* ENABLE: when cmd asks for UTF8=ACCEPT, names are UTF-8 on the wire from now on (both ways) and
 * quoted strings may hold UTF-8 (RFC 6855 3). True when it was asked for. */
bool imap_utf8_enable(struct imap_session *s, const struct imap_command *cmd);

/* imap_append.c: APPEND, COPY, MOVE */
void imap_cmd_append(struct imap_session *s, const struct imap_command *cmd);
void imap_cmd_copy(struct imap_session *s, const struct imap_command *cmd); /* and MOVE */
/* APPEND's literal was announced: true to send the continuation, false after refusing. */
bool imap_append_continue(struct imap_session *s);
/* A chunk of APPEND's streamed literal. */
void imap_append_data(struct imap_session *s, const char *data, size_t len);
/* Drops an APPEND in progress (parse error, session end). */
void imap_append_abort(struct imap_session *s);

#endif
