/* push_private: what push.c and push_watch.c share. Not for use outside src/push.
 *
 * push.c owns the session on its netconn (net/netconn.h): greeting, the command table, CAPA,
 * STARTTLS, AUTH, NOOP, LOGOUT and the session's lifetime. push_watch.c owns WATCH, the replay
 * of WATCH ... SINCE, the hub subscription, the bounded event queue and the keepalive.
 * Everything runs on the loop thread. */
#ifndef TERN_PUSH_PRIVATE_H
#define TERN_PUSH_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "auth/sasl.h"
#include "net/netconn.h"
#include "push/push_parser.h"

struct auth;
struct auth_request;
struct event;
struct notify_hub;
struct notify_sub;
struct store;

#define PUSH_OUTPUT_HIGH (64 * 1024) /* above this in the output, events wait in the queue */
#define PUSH_OUTPUT_LOW (16 * 1024)  /* the write callback comes once output drains to this */
#define PUSH_REPLAY_CHUNK 256        /* messages replayed per walk of a mailbox */

enum push_state {
	PUSH_STATE_GREETED = 0, /* not authenticated */
	PUSH_STATE_SASL,        /* waiting for the AUTH PLAIN response line */
	PUSH_STATE_WAIT,        /* the password check is running */
	PUSH_STATE_READY,       /* authenticated: commands and events */
	PUSH_STATE_REPLAY,      /* WATCH ... SINCE is replaying; commands wait, events queue */
	PUSH_STATE_CLOSING,     /* last reply queued */
};

struct push_server {
	struct event_base *base;
	struct store *store;
	struct auth *auth;
	struct notify_hub *hub;
	unsigned max_errors;
	size_t queue_max;         /* push.queue */
	struct timeval keepalive; /* push.keepalive */
	struct netconn_params conn_params;
	struct netconn_list conns;    /* every live session, for shutdown */
	struct push_session *zombies; /* closed, freed by reap on the loop's next turn */
	struct event *reap;
	bool shutting_down;
	unsigned long long events;    /* event lines sent, every session */
	unsigned long long overflows; /* queues dropped, every session */
};

/* A mailbox the session watches. Events are matched by id, so a rename keeps it watched. */
struct push_watched {
	int64_t id;
	uint32_t uidvalidity;
	uint32_t replay_below; /* SINCE: live NEW events below this UID were replayed already */
	char name[PUSH_MAILBOX_NAME_MAX + 1];
};

/* One event line waiting for the client (without CRLF). */
struct push_line {
	struct push_line *next;
	size_t len;
	char text[];
};

/* A WATCH ... SINCE being replayed: each mailbox in turn, PUSH_REPLAY_CHUNK messages a step. */
struct push_replay {
	int64_t ids[PUSH_WATCH_MAX]; /* the mailboxes' ids (one may be deleted meanwhile) */
	size_t n, cur;
	uint32_t since;     /* the UID given with SINCE */
	uint32_t after;     /* the current mailbox's next message has a UID above this */
	unsigned long sent; /* messages replayed, for the log */
	char *reply;        /* the "+OK watching ..." line sent at the end */
};

struct push_session {
	struct push_server *server;
	struct netconn conn;
	enum push_state state;
	unsigned errors;
	struct sasl_server sasl;
	struct auth_request *auth_req;
	int64_t account_id; /* 0 until authenticated */
	char *account;
	struct notify_sub *sub; /* from the first WATCH on */
	struct push_watched watched[PUSH_WATCH_MAX];
	size_t nwatched;
	struct push_line *qhead, *qtail;
	size_t qlen;
	bool resync_pending; /* the queue overflowed: send "resync" before anything queued */
	struct push_replay *replay;
	struct event *keepalive;
	unsigned long long events;
	unsigned overflows;
	struct push_session *next; /* the zombie list */
};

/* push.c */
#define push_reply(s, ...) netconn_reply(&(s)->conn, __VA_ARGS__)
void push_enter_state(struct push_session *s, enum push_state state);
/* Counts a protocol error; past push.max_errors the session is closed. */
void push_error(struct push_session *s);

/* push_watch.c */
void push_cmd_watch(struct push_session *s, const struct push_command *cmd);
/* After login: the keepalive timer starts. */
void push_watch_start(struct push_session *s);
/* Releases the subscription, the queue and the replay, and stops the timer. */
void push_watch_free(struct push_session *s);
/* Sends what is queued (resync first) while the output has room. True when nothing is left. */
bool push_queue_flush(struct push_session *s);
/* Replays the next chunk of a WATCH ... SINCE. False when waiting for the client to read. */
bool push_replay_step(struct push_session *s);

#endif
