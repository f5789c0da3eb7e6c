/* push_client: the client side of tern's push protocol (docs/push-protocol.md): a line-based
 * session like POP3 whose status lines start "+OK" or "-ERR" and whose events are one-line JSON
 * objects the server sends at any time.
 *
 *   S: +OK tern push ready (capabilities: STARTTLS AUTH=PLAIN WATCH SINCE)
 *   C: CAPA / STARTTLS / AUTH PLAIN <base64> / WATCH INBOX SINCE 41 / NOOP / LOGOUT
 *   S: {"type":"new","mailbox":"INBOX","uidvalidity":1764000000,"uid":42,"from":"Bob <b@x>",...}
 *
 * Blocking, on a conn (timeouts and line caps there). Every event line, whenever it comes (also
 * between a command and its status line), is parsed and handed to the callback given at open.
 * Every byte from the server is hostile: lines are capped, JSON nesting is bounded, strings are
 * cut to fixed buffers on a UTF-8 boundary and invalid UTF-8 becomes U+FFFD. */
#ifndef TERN_PUSH_CLIENT_H
#define TERN_PUSH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/conn.h"

#define PUSH_CLIENT_PORT 5050     /* implicit TLS */
#define PUSH_CLIENT_TEXT_MAX 1024 /* bytes kept of a decoded string, NUL included */
#define PUSH_CLIENT_MAX_LINE 65536

enum push_event_type {
	PUSH_EVENT_OTHER = 0, /* a type this client does not know: ignore it */
	PUSH_EVENT_NEW,
	PUSH_EVENT_EXPUNGE,
	PUSH_EVENT_FLAGS,
	PUSH_EVENT_MAILBOX,
	PUSH_EVENT_KEEPALIVE,
	PUSH_EVENT_RESYNC,
};

/* One event. Strings are "" when absent, numbers 0. */
struct push_event {
	enum push_event_type type;
	char type_name[32]; /* as sent, cut */
	char mailbox[PUSH_CLIENT_TEXT_MAX];
	char old[PUSH_CLIENT_TEXT_MAX]; /* mailbox events: the old name of a renamed one */
	char event[32];                 /* mailbox events: created, deleted, renamed */
	bool has_uidvalidity;
	uint32_t uidvalidity;
	uint32_t uid;
	char from[PUSH_CLIENT_TEXT_MAX]; /* decoded UTF-8 */
	char subject[PUSH_CLIENT_TEXT_MAX];
	char date[64]; /* RFC 3339 ("date", or a keepalive's "time") */
	uint64_t size;
	bool replay;      /* sent for WATCH ... SINCE, not live */
	char flags[256];  /* flags events: the flags joined by spaces */
	char reason[128]; /* resync events */
};

/* Parses one event line (a JSON object, without its line end). Known members of the wrong type,
 * a "new" event without a mailbox or with uid 0, and malformed JSON are errors; unknown members
 * and types are not. Returns 0, or -1 with error. */
int push_event_parse(const char *line, size_t len, struct push_event *event_r, char *error,
                     size_t errsize);
/* "new", "expunge", ... for a type (PUSH_EVENT_OTHER: "other"). */
const char *push_event_type_name(enum push_event_type type);

/* Called for every event the server sends, on the caller's thread, inside whichever push_client
 * call read it. It must not call back into the client. */
typedef void push_event_cb(const struct push_event *event, void *arg);

struct push_client;

/* Greeting, CAPA, STARTTLS when options->security is CONN_SECURITY_STARTTLS (refused when not
 * offered), AUTH PLAIN. conn was connected by the caller and, for implicit TLS, upgraded with
 * conn_starttls already; it is owned by the client from here on (closed also when this fails).
 * Returns 0, -1 with error, or -2 with error when the server refused the login or asked for TLS
 * (retrying will not help). */
int push_client_open_conn(struct conn *conn, const struct conn_options *options, const char *user,
                          const char *password, push_event_cb *cb, void *arg,
                          struct push_client **client_r, char *error, size_t errsize);
/* The same on an already connected plaintext socket (tests and fuzzing; see conn_from_fd). */
int push_client_open_fd(int fd, const struct conn_options *options, const char *user,
                        const char *password, push_event_cb *cb, void *arg,
                        struct push_client **client_r, char *error, size_t errsize);
/* WATCH mailbox [SINCE since_uid]: replayed events reach the callback before this returns.
 * Returns 0, -1 with error, or -2 with error when the server refused (no such mailbox). */
int push_client_watch(struct push_client *client, const char *mailbox, bool since,
                      uint32_t since_uid, char *error, size_t errsize);
/* Reads one line and handles it: 1 after an event went to the callback, -1 with error (the
 * connection failed or closed, or the server sent a status line nobody asked for or garbage).
 * Call it when the socket is readable or push_client_buffered > 0; it blocks until a whole line
 * is there (up to the conn's timeout). */
int push_client_read(struct push_client *client, char *error, size_t errsize);
/* NOOP: 0 when the server answered, -1 with error. */
int push_client_noop(struct push_client *client, char *error, size_t errsize);
size_t push_client_buffered(const struct push_client *client);
/* The capabilities the server announced last ("STARTTLS AUTH=PLAIN WATCH SINCE"). */
const char *push_client_capabilities(const struct push_client *client);
/* LOGOUT (unless the connection failed) and close; NULL is fine. */
void push_client_logout(struct push_client **client);

#endif
