/* netconn: the connection plumbing a line-based protocol session sits on (SMTP, POP3, IMAP).
 *
 * A netconn owns one accepted bufferevent and its listener_peer: callbacks, read high-water mark,
 * idle timeouts, queued replies, capped line reading (over-long lines are thrown away as they
 * arrive), the per-wake command budget with output backpressure, STARTTLS and closing. The
 * session keeps its states, commands and replies and learns about the connection through
 * struct netconn_ops. Everything runs on the loop thread.
 *
 * The session embeds its struct netconn (as Dovecot embeds struct connection) and reads its
 * fields; only netconn.c writes them. Lifetime: netconn_close() stops reading and lets what is
 * queued reach the client; the write callback then destroys, never a handler. netconn_destroy()
 * (also on EOF, error or write timeout) releases the bufferevent with listener_bev_close, calls
 * listener_conn_closed exactly once, marks the netconn dead and calls ops->closed, which frees
 * the session at once or, with an operation in flight (a password check, a store commit or
 * update), leaves that to the operation's callback. A dead netconn has no bufferevent: only its
 * id, peer and dead fields may be used, and there is nothing else to free. */
#ifndef TERN_NETCONN_H
#define TERN_NETCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "net/listener.h"

struct netconn_ops {
	/* Handles one unit of buffered input (a line, a chunk of data, a step of a download);
	 * false stops until more input arrives or the output drains. */
	bool (*step)(void *arg);
	/* netconn_close has begun (after its debug line): the session enters its closing state. */
	void (*closing)(void *arg);
	/* Optional: an idle timeout on a connection that is not closing (writing: the write
	 * timeout). True when handled; false for the default: only the write timeout stays armed,
	 * params->timeout_reply is queued and the connection closed with reason "timeout". */
	bool (*timeout)(void *arg, bool writing);
	/* The connection is gone: log it, and free the session unless an operation in flight will.
	 * reason: "closed", "quit", "eof", "error", "tls-error", "write-timeout", or
	 * netconn_destroy's. */
	void (*closed)(void *arg, const char *reason);
};

#define NETCONN_INPUT_HIGH (256 * 1024) /* stop reading the socket above this */
#define NETCONN_OUTPUT_HIGH (64 * 1024) /* stop handling commands while replies pile up */
#define NETCONN_DISCARD_MAX (64 * 1024) /* junk without a newline before we hang up */
#define NETCONN_CMDS_PER_WAKE 64        /* fairness between sessions */
/* Before login (netconn_set_authenticated) a client needs little: less is read ahead, and a
 * client that does not read its replies gets no more commands handled once this much waits. */
#define NETCONN_PREAUTH_INPUT_HIGH (16 * 1024)
#define NETCONN_PREAUTH_OUTPUT_HIGH (4 * 1024)

/* auth.allow_plaintext: where a password may be sent readable without TLS. */
enum netconn_plaintext { NETCONN_PLAIN_LOOPBACK, NETCONN_PLAIN_NEVER, NETCONN_PLAIN_ALWAYS };

/* Set once by a protocol server for all its connections; must outlive them. */
struct netconn_params {
	const char *proto; /* log prefix: "smtp", "pop3" */
	const struct netconn_ops *ops;
	struct timeval idle_timeout; /* read and write */
	/* Deadlines that bytes trickling in do not push back (netconn_params_deadlines):
	 * a command line must be whole this long after its first byte (server.command_timeout),
	 * a TLS handshake done this long after it began (server.tls_handshake_timeout). */
	struct timeval line_timeout;
	struct timeval tls_timeout;
	size_t write_low; /* write callback once output drains to this (0: empty) */
	enum netconn_plaintext plaintext;
	/* netconn_read_line: whether the CRLF (two octets) counts against the limit. */
	bool limit_counts_crlf;
	const char *too_long_reply; /* last line once discard_max is passed (no CRLF) */
	const char *timeout_reply;  /* last line of the default timeout (no CRLF) */
};

struct netconn_list;
struct config;
struct event;

enum netconn_deadline { NETCONN_DEADLINE_NONE = 0, NETCONN_DEADLINE_LINE, NETCONN_DEADLINE_TLS };

struct netconn {
	const struct netconn_params *params;
	struct netconn_list *list; /* the server's connections; NULL once unlinked */
	struct netconn *list_prev, *list_next;
	void *arg;               /* passed to every ops callback */
	struct bufferevent *bev; /* NULL once dead */
	struct listener_peer peer;
	char id[17];     /* the session id in logs: 16 hex digits */
	bool tls;        /* implicit TLS or after netconn_starttls */
	bool compressed; /* after netconn_compress: bev is a deflate filter */
	bool closing;    /* netconn_close began */
	bool dead;       /* the connection is gone */
	bool discarding; /* throwing away an over-long line */
	size_t discarded;
	bool read_timeout;      /* netconn_set_timeouts' mode */
	bool busy;              /* netconn_set_busy: the server works for the session */
	bool authenticated;     /* netconn_set_authenticated: the pre-login marks are lifted */
	struct event *deadline; /* the line or handshake deadline; NULL until first armed */
	enum netconn_deadline deadline_kind;
};

/* Every connection of one protocol server, for shutdown, statistics and ids. Zero-initialised
 * by the server; the sessions unlink themselves before they are freed. */
struct netconn_list {
	struct netconn *head;
	unsigned count;
	uint64_t next_id;
};

/* Takes bev (from the listener's accept callback), copies peer, makes the id from the list's
 * next id and random bits, adds the connection to list, sets callbacks, watermarks and
 * timeouts and enables reading and writing. */
void netconn_init(struct netconn *nc, struct bufferevent *bev, const struct listener_peer *peer,
                  bool tls, const struct netconn_params *params, struct netconn_list *list,
                  void *arg);
/* Takes the connection out of its list (the session is about to be freed); idempotent. */
void netconn_unlink(struct netconn *nc);

/* A session's answer to a graceful shutdown: queue its goodbye and return true to be closed
 * now, or false to be left to finish what it is doing (it says goodbye itself later). */
typedef bool netconn_bye_fn(void *arg);
/* Calls bye for every connection of list that is neither dead nor closing, and closes those
 * for which it returns true (reason "shutdown"). */
void netconn_list_shutdown(struct netconn_list *list, netconn_bye_fn *bye);
/* Destroys every connection of list (netconn_destroy with reason). */
void netconn_list_destroy(struct netconn_list *list, const char *reason);
/* The session (ops arg) of the first connection, or NULL: for freeing leftovers at exit. */
void *netconn_list_first(const struct netconn_list *list);

/* Fills params->line_timeout and tls_timeout from server.command_timeout and
 * server.tls_handshake_timeout. */
void netconn_params_deadlines(struct netconn_params *params, const struct config *config);

/* "never", "always", anything else: loopback. */
enum netconn_plaintext netconn_plaintext_parse(const char *value);
/* Whether USER/PASS, AUTH PLAIN/LOGIN may be used: under TLS, or as params->plaintext permits. */
bool netconn_plaintext_ok(const struct netconn *nc);

/* Queues fmt and a CRLF. */
void netconn_reply(struct netconn *nc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when more than NETCONN_OUTPUT_HIGH (before login NETCONN_PREAUTH_OUTPUT_HIGH) is
 * queued: stop until the write callback. */
bool netconn_output_full(const struct netconn *nc);
/* The client has logged in: the read high-water mark goes from NETCONN_PREAUTH_INPUT_HIGH to
 * NETCONN_INPUT_HIGH and the output mark to NETCONN_OUTPUT_HIGH. */
void netconn_set_authenticated(struct netconn *nc);
/* Read and write idle timeouts, or only the write timeout (no progress while output waits).
 * While busy this only records the mode, applied when the session is no longer busy. The
 * timers are set on the socket's bufferevent, under any STARTTLS or COMPRESS filter. */
void netconn_set_timeouts(struct netconn *nc, bool read);
/* busy: the server is working for the session (a password check, a commit, a store update,
 * a search): no idle timeout and no line deadline may end it meanwhile, whatever the client
 * does. Back to not busy, the idle timeouts start afresh. Sessions call this from their
 * enter_state for their waiting states. */
void netconn_set_busy(struct netconn *nc, bool busy);
/* For sessions that parse their own input (IMAP): whether a command line has begun and is not
 * yet whole. The first true arms the line deadline (params->line_timeout), false disarms it;
 * literal data in between is not part of a line (only the idle timeout applies to it). When
 * the deadline passes without a whole line the client gets params->timeout_reply and the
 * connection is closed (reason "command-timeout"). netconn_read_line does this itself. */
void netconn_line_partial(struct netconn *nc, bool partial);

enum netconn_line {
	NETCONN_LINE_MORE = 0,   /* no whole line yet */
	NETCONN_LINE_OK,         /* *line_r (CRLF removed, NUL-terminated; free() it) and *len_r */
	NETCONN_LINE_TOO_LONG,   /* a line over the limit was dropped: the session replies */
	NETCONN_LINE_DISCARDING, /* began dropping an over-long line: call again */
};

/* Reads one line of at most limit octets. Without a line end past limit, the input is thrown
 * away as it arrives; past NETCONN_DISCARD_MAX of it the client gets params->too_long_reply,
 * the connection is closed (reason "line-too-long") and NETCONN_LINE_MORE is returned. */
enum netconn_line netconn_read_line(struct netconn *nc, size_t limit, char **line_r, size_t *len_r);

/* Calls ops->step until it returns false, the connection is dead, or NETCONN_CMDS_PER_WAKE
 * steps are spent; then, with input left and not closing, comes back on the next loop
 * iteration (other sessions first). Also for the session when an operation completes. */
void netconn_run(struct netconn *nc);

/* Stops reading and destroys once what is queued is written; never frees at once. Nothing
 * when already closing or dead. */
void netconn_close(struct netconn *nc, const char *reason);
/* Drops the connection now (see the lifetime above); nothing when already dead. The session may
 * be freed by ops->closed before this returns. */
void netconn_destroy(struct netconn *nc, const char *reason);

/* STARTTLS/STLS, after the go-ahead is queued: wraps the connection in TLS and sets it up again.
 * The handshake (like that of implicit TLS, from netconn_init) must be done within
 * params->tls_timeout, else the connection is dropped (reason "tls-timeout").
 * What the client sent after the command is dropped (CVE-2011-0411) and counted in
 * *discarded_r for the session to log. False when TLS cannot be set up (the session closes). */
bool netconn_starttls(struct netconn *nc, size_t *discarded_r);

/* Whether the connection is compressed already: by netconn_compress or by TLS itself. */
bool netconn_compression_active(const struct netconn *nc);
/* COMPRESS=DEFLATE (RFC 4978), after the OK is queued: from now on both directions go through
 * raw deflate (net/compress.h); bev becomes the filter. Returns NULL, or why not: compression
 * is already active, or zlib failed. */
const char *netconn_compress(struct netconn *nc);

#endif
