/* push: the push service's sessions on a netconn: greeting, the command table, CAPA, STARTTLS,
 * AUTH PLAIN, NOOP, LOGOUT, and the server. WATCH and events are in push_watch.c. */
#include "push/push.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "push/push_parser.h"
#include "push/push_private.h"

static const char *const push_state_names[] = {
    "greeted", "sasl", "wait", "ready", "replay", "closing",
};

void
push_enter_state(struct push_session *s, enum push_state state)
{
	if (s->state == state)
		return;
	log_debug("push session=%s event=state from=%s to=%s", s->conn.id,
	          push_state_names[s->state], push_state_names[state]);
	s->state = state;
	netconn_set_busy(&s->conn, state == PUSH_STATE_WAIT);
}

void
push_error(struct push_session *s)
{
	if (++s->errors < s->server->max_errors)
		return;
	push_reply(s, "-ERR too many errors");
	netconn_close(&s->conn, "too-many-errors");
}

static bool
push_starttls_offered(const struct push_session *s)
{
	return !s->conn.tls && listener_get_ssl_ctx() != NULL && s->state == PUSH_STATE_GREETED;
}

/* "STARTTLS AUTH=PLAIN WATCH SINCE" as this connection offers them. */
static void
push_capabilities(const struct push_session *s, char *buf, size_t size)
{
	snprintf(buf, size, "%s%sWATCH SINCE", push_starttls_offered(s) ? "STARTTLS " : "",
	         s->state == PUSH_STATE_GREETED && netconn_plaintext_ok(&s->conn) ? "AUTH=PLAIN "
	                                                                          : "");
}

/* --- session lifetime --- */

/* Releases what the session holds and unlinks it; the struct itself is left to the caller. */
static void
push_session_release(struct push_session *s)
{
	netconn_unlink(&s->conn);
	auth_cancel(&s->auth_req);
	push_watch_free(s);
	sasl_server_reset(&s->sasl);
	free(s->account);
	s->account = NULL;
}

/* Frees a released session. */
static void
push_session_destroy(struct push_session *s)
{
	if (s->keepalive != NULL)
		event_free(s->keepalive);
	free(s);
}

static void
push_reap(evutil_socket_t fd, short what, void *arg)
{
	struct push_server *server = arg;
	struct push_session *s;

	while ((s = server->zombies) != NULL) {
		server->zombies = s->next;
		push_session_destroy(s);
	}
}

/* netconn ops->closed. A connection can die inside any write (libevent reports a failed TLS
 * write synchronously), so code up the stack (a hub callback, the keepalive, a replay, the
 * command loop) may still look at conn.dead: everything is released now, but the struct is
 * freed on the loop's next turn. */
static void
push_session_closed(void *arg, const char *reason)
{
	struct push_session *s = arg;
	struct push_server *server = s->server;
	struct timeval now = {0, 0};

	log_info(
	    "push session=%s event=disconnect ip=%s reason=%s account=%s errors=%u events=%llu "
	    "overflows=%u",
	    s->conn.id, s->conn.peer.ip, reason, s->account != NULL ? s->account : "-", s->errors,
	    s->events, s->overflows);
	push_session_release(s);
	s->next = server->zombies;
	server->zombies = s;
	evtimer_add(server->reap, &now);
}

static void
push_session_closing(void *arg)
{
	push_enter_state(arg, PUSH_STATE_CLOSING);
}

/* netconn ops->timeout: a client that stops reading is dropped; a silent one before login is
 * told goodbye (after login only the write timeout is armed: listening is what clients do). */
static bool
push_session_timeout(void *arg, bool writing)
{
	struct push_session *s = arg;

	if (writing) {
		log_info("push session=%s event=write-timeout queued=%zu", s->conn.id, s->qlen);
		netconn_destroy(&s->conn, "write-timeout");
		return true;
	}
	return false;
}

static bool push_session_step(void *arg);

static const struct netconn_ops push_netconn_ops = {
    .step = push_session_step,
    .closing = push_session_closing,
    .timeout = push_session_timeout,
    .closed = push_session_closed,
};

void
push_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls, void *arg)
{
	struct push_server *server = arg;
	struct push_session *s = xcalloc(1, sizeof(*s));
	char caps[64];

	s->server = server;
	netconn_init(&s->conn, bev, peer, tls, &server->conn_params, &server->conns, s);

	log_info("push session=%s event=connect ip=%s port=%d tls=%s", s->conn.id, peer->ip,
	         peer->port, tls ? "yes" : "no");
	if (server->shutting_down) {
		push_reply(s, "-ERR server shutting down");
		netconn_close(&s->conn, "shutdown");
		return;
	}
	push_capabilities(s, caps, sizeof(caps));
	push_reply(s, "+OK tern push ready (capabilities: %s)", caps);
}

/* --- commands --- */

static void
push_cmd_capa(struct push_session *s, const struct push_command *cmd)
{
	char caps[64];

	push_capabilities(s, caps, sizeof(caps));
	push_reply(s, "+OK %s", caps);
}

static void
push_cmd_noop(struct push_session *s, const struct push_command *cmd)
{
	push_reply(s, "+OK");
}

static void
push_cmd_logout(struct push_session *s, const struct push_command *cmd)
{
	push_reply(s, "+OK bye");
	netconn_close(&s->conn, "logout");
}

static void
push_cmd_starttls(struct push_session *s, const struct push_command *cmd)
{
	size_t discarded;
	bool ok;

	if (s->conn.tls) {
		push_reply(s, "-ERR TLS already active");
		push_error(s);
		return;
	}
	if (cmd->nargs != 0) {
		push_reply(s, "-ERR syntax: STARTTLS");
		push_error(s);
		return;
	}
	if (listener_get_ssl_ctx() == NULL) {
		push_reply(s, "-ERR TLS not available");
		return;
	}
	push_reply(s, "+OK begin TLS");
	/* CVE-2011-0411: what the client pipelined after STARTTLS came in the clear; it is
	 * dropped, never run inside TLS. */
	ok = netconn_starttls(&s->conn, &discarded);
	if (discarded > 0)
		log_info("push session=%s event=starttls-injection discarded=%zu", s->conn.id,
		         discarded);
	if (!ok) {
		netconn_close(&s->conn, "tls-setup-failed");
		return;
	}
	sasl_server_reset(&s->sasl);
}

static void
push_auth_done(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct push_session *s = arg;

	s->auth_req = NULL;
	push_enter_state(s, PUSH_STATE_GREETED);
	switch (result) {
	case AUTH_OK:
		s->account_id = account_id;
		s->account = xstrdup(address);
		push_enter_state(s, PUSH_STATE_READY);
		log_info("push session=%s event=auth result=ok account=%s", s->conn.id, address);
		netconn_set_authenticated(&s->conn);
		push_reply(s, "+OK authenticated as %s", address);
		/* From now on the client mostly listens: only a stuck write times out. */
		netconn_set_timeouts(&s->conn, false);
		push_watch_start(s);
		break;
	case AUTH_FAILED:
		log_info("push session=%s event=auth result=failed ip=%s", s->conn.id,
		         s->conn.peer.ip);
		push_reply(s, "-ERR authentication failed");
		push_error(s);
		break;
	case AUTH_LOCKED:
		log_warnx("push session=%s event=auth result=locked ip=%s", s->conn.id,
		          s->conn.peer.ip);
		push_reply(s, "-ERR authentication failed (too many attempts; try again later)");
		push_error(s);
		break;
	case AUTH_TEMPFAIL:
		push_reply(s, "-ERR temporary failure; try again later");
		break;
	}
	netconn_run(&s->conn);
}

/* Maps one result of the SASL exchange (src/auth/sasl.h) to the session. */
static void
push_auth_next(struct push_session *s, enum sasl_result r, const struct sasl_step *step)
{
	switch (r) {
	case SASL_CHALLENGE:
		push_enter_state(s, PUSH_STATE_SASL);
		if (step->challenge[0] == '\0')
			push_reply(s, "+");
		else
			push_reply(s, "+ %s", step->challenge);
		return;
	case SASL_CREDENTIALS:
		push_enter_state(s, PUSH_STATE_WAIT);
		s->auth_req = auth_verify(s->server->auth, s->conn.peer.ip, step->login,
		                          step->password, push_auth_done, s);
		sasl_server_reset(&s->sasl);
		return;
	case SASL_ABORTED:
		push_enter_state(s, PUSH_STATE_GREETED);
		push_reply(s, "-ERR authentication aborted");
		return;
	case SASL_ERROR:
		break;
	}
	sasl_server_reset(&s->sasl);
	push_enter_state(s, PUSH_STATE_GREETED);
	if (step->error == SASL_ERROR_AUTHZID)
		push_reply(s, "-ERR authentication failed (authorization identity not permitted)");
	else
		push_reply(s, "-ERR syntax error: %s", step->reason);
	push_error(s);
}

static void
push_cmd_auth(struct push_session *s, const struct push_command *cmd)
{
	struct sasl_step step;

	if (!netconn_plaintext_ok(&s->conn)) {
		push_reply(s, "-ERR TLS required");
		push_error(s);
		return;
	}
	if (cmd->nargs == 0 || cmd->nargs > 2 || cmd->quoted[0] ||
	    (cmd->nargs == 2 && cmd->quoted[1])) {
		push_reply(s, "-ERR syntax: AUTH PLAIN [initial-response]");
		push_error(s);
		return;
	}
	if (strcasecmp(cmd->args[0], "PLAIN") != 0) {
		push_reply(s, "-ERR unsupported mechanism (AUTH PLAIN)");
		push_error(s);
		return;
	}
	push_auth_next(
	    s, sasl_server_start(&s->sasl, "PLAIN", cmd->nargs == 2 ? cmd->args[1] : NULL, &step),
	    &step);
}

typedef void push_cmd_fn(struct push_session *s, const struct push_command *cmd);

#define PUSH_IN_GREETED (1u << PUSH_STATE_GREETED)
#define PUSH_IN_READY (1u << PUSH_STATE_READY)

/* Which states accept a command, and the reply when the state does not. */
struct push_cmd_entry {
	enum push_verb verb;
	unsigned states;
	const char *refused;
	push_cmd_fn *fn;
};

static const struct push_cmd_entry push_commands[] = {
    {PUSH_VERB_CAPA, PUSH_IN_GREETED | PUSH_IN_READY, NULL, push_cmd_capa},
    {PUSH_VERB_NOOP, PUSH_IN_GREETED | PUSH_IN_READY, NULL, push_cmd_noop},
    {PUSH_VERB_LOGOUT, PUSH_IN_GREETED | PUSH_IN_READY, NULL, push_cmd_logout},
    {PUSH_VERB_STARTTLS, PUSH_IN_GREETED, "-ERR already authenticated", push_cmd_starttls},
    {PUSH_VERB_AUTH, PUSH_IN_GREETED, "-ERR already authenticated", push_cmd_auth},
    {PUSH_VERB_WATCH, PUSH_IN_READY, "-ERR authenticate first", push_cmd_watch},
};

/* Handles one complete line (CRLF removed). */
static void
push_session_line(struct push_session *s, char *line, size_t len)
{
	struct push_command cmd;
	struct sasl_step step;
	const char *error;
	char esc[64];

	if (s->state == PUSH_STATE_SASL) {
		push_auth_next(s, sasl_server_step(&s->sasl, line, &step), &step);
		return;
	}
	if (push_command_parse(line, len, &cmd, &error) < 0) {
		log_info("push session=%s event=bad-command verb=%s error=\"%s\"", s->conn.id,
		         log_str(esc, sizeof(esc), cmd.verb_text), error);
		push_reply(s, "-ERR %s", error);
		push_error(s);
		return;
	}
	for (size_t i = 0; i < sizeof(push_commands) / sizeof(push_commands[0]); i++) {
		const struct push_cmd_entry *e = &push_commands[i];

		if (e->verb != cmd.verb)
			continue;
		log_debug("push session=%s event=command verb=%s", s->conn.id, cmd.verb_text);
		if ((e->states & (1u << s->state)) == 0) {
			push_reply(s, "%s", e->refused);
			push_error(s);
			return;
		}
		e->fn(s, &cmd);
		return;
	}
	log_info("push session=%s event=unknown-command verb=%s", s->conn.id,
	         log_str(esc, sizeof(esc), cmd.verb_text));
	push_reply(s, "-ERR unknown command");
	push_error(s);
}

/* Reads and handles one line if a whole one is buffered; false when more input is needed. */
static bool
push_session_read_line(struct push_session *s)
{
	char *line;
	size_t len;

	switch (netconn_read_line(&s->conn, PUSH_LINE_MAX, &line, &len)) {
	case NETCONN_LINE_MORE:
		return false;
	case NETCONN_LINE_DISCARDING:
		return true;
	case NETCONN_LINE_TOO_LONG:
		if (s->state == PUSH_STATE_SASL) {
			sasl_server_reset(&s->sasl);
			push_enter_state(s, PUSH_STATE_GREETED);
		}
		log_info("push session=%s event=line-too-long", s->conn.id);
		push_reply(s, "-ERR line too long");
		push_error(s);
		return true;
	case NETCONN_LINE_OK:
		break;
	}
	push_session_line(s, line, len);
	/* It may have held a password (AUTH PLAIN with an initial response, a SASL line). */
	sodium_memzero(line, len);
	free(line);
	return true;
}

/* netconn ops->step: events first, then one command line. */
static bool
push_session_step(void *arg)
{
	struct push_session *s = arg;

	switch (s->state) {
	case PUSH_STATE_CLOSING:
	case PUSH_STATE_WAIT:
		return false;
	case PUSH_STATE_REPLAY:
		return push_replay_step(s);
	case PUSH_STATE_READY:
		/* Events queued while the client was slow go out before any reply. */
		if (!push_queue_flush(s))
			return false;
		break;
	case PUSH_STATE_GREETED:
	case PUSH_STATE_SASL:
		break;
	}
	if (s->server->shutting_down) {
		push_reply(s, "-ERR server shutting down");
		netconn_close(&s->conn, "shutdown");
		return false;
	}
	if (netconn_output_full(&s->conn))
		return false;
	return push_session_read_line(s);
}

/* --- the server --- */

struct push_server *
push_server_new(struct event_base *base, const struct config *config, struct store *store,
                struct auth *auth, struct notify_hub *hub)
{
	struct push_server *server = xcalloc(1, sizeof(*server));

	server->base = base;
	server->store = store;
	server->auth = auth;
	server->hub = hub;
	server->reap = evtimer_new(base, push_reap, server);
	server->max_errors = (unsigned)config_get_int(config, "push.max_errors");
	server->queue_max = (size_t)config_get_int(config, "push.queue");
	server->keepalive.tv_sec = config_get_int(config, "push.keepalive");
	server->conn_params = (struct netconn_params){
	    .proto = "push",
	    .ops = &push_netconn_ops,
	    .idle_timeout.tv_sec = config_get_int(config, "push.idle_timeout"),
	    .write_low = PUSH_OUTPUT_LOW,
	    .plaintext = netconn_plaintext_parse(config_get(config, "auth.allow_plaintext")),
	    .limit_counts_crlf = false,
	    .too_long_reply = "-ERR line too long",
	    .timeout_reply = "-ERR disconnected for inactivity",
	};
	netconn_params_deadlines(&server->conn_params, config);
	return server;
}

void
push_server_free(struct push_server **serverp)
{
	struct push_server *server = *serverp;
	struct push_session *s;

	if (server == NULL)
		return;
	while ((s = netconn_list_first(&server->conns)) != NULL) {
		log_warnx("push session=%s event=leaked-at-exit", s->conn.id);
		push_session_release(s);
		push_session_destroy(s);
	}
	push_reap(-1, 0, server);
	event_free(server->reap);
	log_info("push event=stats events=%llu overflows=%llu", server->events, server->overflows);
	free(server);
	*serverp = NULL;
}

static bool
push_session_bye(void *arg)
{
	struct push_session *s = arg;

	auth_cancel(&s->auth_req);
	push_reply(s, "-ERR server shutting down");
	return true;
}

void
push_server_shutdown(struct push_server *server)
{
	server->shutting_down = true;
	netconn_list_shutdown(&server->conns, push_session_bye);
}

void
push_server_close_all(struct push_server *server)
{
	netconn_list_destroy(&server->conns, "shutdown-timeout");
}

unsigned
push_server_session_count(const struct push_server *server)
{
	return server->conns.count;
}

void
push_server_stats(const struct push_server *server, struct push_stats *stats_r)
{
	stats_r->sessions = server->conns.count;
	stats_r->events = server->events;
	stats_r->overflows = server->overflows;
}
