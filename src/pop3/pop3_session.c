/* pop3_session: the POP3 server state machine on a libevent bufferevent: connections, lines,
 * the command table, AUTHORIZATION (USER/PASS, SASL, STLS) and QUIT. The maildrop and the
 * TRANSACTION commands are in pop3_maildrop.c. */
#include "pop3/pop3_session.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "pop3/pop3_parser.h"
#include "pop3/pop3_private.h"

static const char *const pop3_state_names[] = {
    "authorization", "sasl", "wait", "transaction", "retr", "update", "closing",
};

/* --- states --- */

void
pop3_enter_state(struct pop3_session *s, enum pop3_state state)
{
	if (s->state == state)
		return;
	log_debug("pop3 session=%s event=state from=%s to=%s", s->conn.id,
	          pop3_state_names[s->state], pop3_state_names[state]);
	s->state = state;
	netconn_set_busy(&s->conn, state == POP3_STATE_WAIT || state == POP3_STATE_UPDATE);
}

/* Counts a protocol error; past pop3.max_errors the client is told goodbye. */
void
pop3_error(struct pop3_session *s)
{
	if (++s->errors < s->server->max_errors)
		return;
	pop3_reply(s, "-ERR too many errors");
	netconn_close(&s->conn, "too-many-errors");
}

static void
pop3_reply_plaintext_refused(struct pop3_session *s)
{
	pop3_reply(s, "-ERR [AUTH] Plaintext authentication is disabled on this connection; use "
	              "STLS");
	pop3_error(s);
}

static bool
pop3_stls_offered(const struct pop3_session *s)
{
	return !s->conn.tls && listener_get_ssl_ctx() != NULL &&
	       s->state == POP3_STATE_AUTHORIZATION;
}

static void
pop3_forget_user(struct pop3_session *s)
{
	if (s->user != NULL) {
		sodium_memzero(s->user, strlen(s->user));
		free(s->user);
		s->user = NULL;
	}
	sasl_server_reset(&s->sasl);
}

/* --- session lifetime --- */

void
pop3_session_free(struct pop3_session *s)
{
	netconn_unlink(&s->conn);
	pop3_retr_free(s);
	pop3_forget_user(s);
	free(s->msgs);
	free(s->account);
	free(s);
}

/* netconn ops->closed: the connection is gone. A session that was logged in still applies its
 * \Seen flags (but deletes nothing) and keeps the maildrop locked until that update is done. */
static void
pop3_session_closed(void *arg, const char *reason)
{
	struct pop3_session *s = arg;

	log_info("pop3 session=%s event=disconnect ip=%s reason=%s errors=%u retrieved=%u",
	         s->conn.id, s->conn.peer.ip, reason, s->errors, s->retrieved);
	auth_cancel(&s->auth_req);
	pop3_retr_free(s);
	if (s->update_pending)
		return; /* the update callback frees the session */
	if (pop3_update_start(s, false))
		return; /* s may already be freed: the callback runs it */
	pop3_session_free(s);
}

/* netconn ops->closing: the last reply is queued. */
static void
pop3_session_closing(void *arg)
{
	pop3_enter_state(arg, POP3_STATE_CLOSING);
}

/* netconn ops->timeout: true when handled here rather than by the autologout reply. */
static bool
pop3_session_timeout(void *arg, bool writing)
{
	struct pop3_session *s = arg;

	if (s->state == POP3_STATE_RETR || writing) {
		/* The client stopped reading. */
		netconn_destroy(&s->conn, "write-timeout");
		return true;
	}
	/* RFC 1939 3: the autologout timer closes without entering UPDATE. */
	return false;
}

static bool pop3_session_step(void *arg);

static const struct netconn_ops pop3_netconn_ops = {
    .step = pop3_session_step,
    .closing = pop3_session_closing,
    .timeout = pop3_session_timeout,
    .closed = pop3_session_closed,
};

void
pop3_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls, void *arg)
{
	struct pop3_server *server = arg;
	struct pop3_session *s = xcalloc(1, sizeof(*s));

	s->server = server;
	netconn_init(&s->conn, bev, peer, tls, &server->conn_params, &server->conns, s);

	log_info("pop3 session=%s event=connect ip=%s port=%d tls=%s", s->conn.id, peer->ip,
	         peer->port, tls ? "yes" : "no");
	if (server->shutting_down) {
		pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down");
		netconn_close(&s->conn, "shutdown");
		return;
	}
	/* No APOP timestamp in the greeting: see pop3_cmd_apop. */
	pop3_reply(s, "+OK tern POP3 server ready");
}

/* --- AUTHORIZATION --- */

static void
pop3_cmd_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_reply(s, "+OK Capability list follows");
	pop3_reply(s, "TOP");
	pop3_reply(s, "UIDL");
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	/* Neither EXPIRE nor LOGIN-DELAY: we enforce no retention or login-rate policy. */
	if (pop3_stls_offered(s))
		pop3_reply(s, "STLS");
	if (netconn_plaintext_ok(&s->conn)) {
		pop3_reply(s, "USER");
		pop3_reply(s, "SASL PLAIN LOGIN");
	}
	pop3_reply(s, "IMPLEMENTATION tern");
	pop3_reply(s, ".");
}

/* APOP (RFC 1939 7) needs the plaintext password on the server to compute MD5(timestamp +
 * secret). tern keeps only argon2id hashes, so the shared secret APOP relies on does not exist;
 * it is not offered (no timestamp in the greeting) and refused here. */
static void
pop3_cmd_apop(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_reply(s, "-ERR [AUTH] APOP is not supported; use USER/PASS or AUTH over TLS");
	pop3_error(s);
}

static void
pop3_cmd_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t discarded;
	bool ok;

	if (s->conn.tls) {
		pop3_reply(s, "-ERR TLS already active");
		pop3_error(s);
		return;
	}
	if (cmd->nargs != 0) {
		pop3_reply(s, "-ERR syntax: STLS");
		pop3_error(s);
		return;
	}
	if (listener_get_ssl_ctx() == NULL) {
		pop3_reply(s, "-ERR [SYS/TEMP] TLS not available");
		return;
	}
	pop3_reply(s, "+OK Begin TLS negotiation");
	/* CVE-2011-0411: whatever the client pipelined after STLS was sent in the clear and is
	 * discarded by listener_starttls, never executed inside TLS. */
	ok = netconn_starttls(&s->conn, &discarded);
	if (discarded > 0)
		log_info("pop3 session=%s event=stls-injection discarded=%zu", s->conn.id,
		         discarded);
	if (!ok) {
		netconn_close(&s->conn, "tls-setup-failed");
		return;
	}
	/* RFC 2595 4: forget what was learnt before TLS. */
	pop3_forget_user(s);
}

static void
pop3_cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!netconn_plaintext_ok(&s->conn)) {
		pop3_reply_plaintext_refused(s);
		return;
	}
	if (cmd->nargs != 1 || strlen(cmd->args[0]) > SASL_FIELD_MAX) {
		pop3_reply(s, "-ERR syntax: USER name");
		pop3_error(s);
		return;
	}
	pop3_forget_user(s);
	s->user = xstrdup(cmd->args[0]);
	pop3_reply(s, "+OK send PASS");
}

/* A logged-in account: lock the maildrop and take its snapshot, or stay in AUTHORIZATION. */
static void
pop3_login(struct pop3_session *s, int64_t account_id, const char *address)
{
	if (pop3_maildrop_locked(s->server, account_id)) {
		log_info("pop3 session=%s event=login result=in-use account=%s", s->conn.id,
		         address);
		pop3_reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session");
		return;
	}
	if (pop3_snapshot(s, account_id) < 0) {
		log_warnx("pop3 session=%s event=login result=store-error account=%s", s->conn.id,
		          address);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot open the maildrop; try again later");
		return;
	}
	s->account_id = account_id;
	free(s->account);
	s->account = xstrdup(address);
	pop3_enter_state(s, POP3_STATE_TRANSACTION);
	log_info("pop3 session=%s event=login result=ok account=%s messages=%u size=%llu",
	         s->conn.id, address, s->nmsgs, (unsigned long long)s->live_size);
	pop3_reply(s, "+OK Logged in, %u message%s (%llu octets)", s->nmsgs,
	           s->nmsgs == 1 ? "" : "s", (unsigned long long)s->live_size);
}

static void
pop3_auth_done(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct pop3_session *s = arg;

	s->auth_req = NULL;
	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
	pop3_forget_user(s);
	switch (result) {
	case AUTH_OK:
		log_info("pop3 session=%s event=auth result=ok account=%s", s->conn.id, address);
		netconn_set_authenticated(&s->conn);
		pop3_login(s, account_id, address);
		break;
	case AUTH_FAILED:
		log_info("pop3 session=%s event=auth result=failed ip=%s", s->conn.id,
		         s->conn.peer.ip);
		pop3_reply(s, "-ERR [AUTH] Authentication failed");
		pop3_error(s);
		break;
	case AUTH_LOCKED:
		log_warnx("pop3 session=%s event=auth result=locked ip=%s", s->conn.id,
		          s->conn.peer.ip);
		/* Temporary, not a credentials problem: [SYS/TEMP] (RFC 3206), so clients retry
		 * later rather than tell the user the password is wrong. */
		pop3_reply(s, "-ERR [SYS/TEMP] Too many failed authentication attempts; try again "
		              "later");
		pop3_error(s);
		break;
	case AUTH_TEMPFAIL:
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure; try again later");
		break;
	}
	netconn_run(&s->conn);
}

/* Starts the password check for decoded credentials. */
static void
pop3_auth_check(struct pop3_session *s, const char *login, const char *password)
{
	pop3_enter_state(s, POP3_STATE_WAIT);
	s->auth_req =
	    auth_verify(s->server->auth, s->conn.peer.ip, login, password, pop3_auth_done, s);
}

static void
pop3_cmd_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!netconn_plaintext_ok(&s->conn)) {
		pop3_reply_plaintext_refused(s);
		return;
	}
	if (s->user == NULL) {
		pop3_reply(s, "-ERR send USER first");
		pop3_error(s);
		return;
	}
	if (cmd->nargs != 1 || strlen(cmd->args[0]) > SASL_FIELD_MAX) {
		pop3_forget_user(s);
		pop3_reply(s, "-ERR syntax: PASS password");
		pop3_error(s);
		return;
	}
	pop3_auth_check(s, s->user, cmd->args[0]);
}

static void
pop3_auth_bad(struct pop3_session *s, const char *why)
{
	pop3_forget_user(s);
	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
	pop3_reply(s, "-ERR %s", why);
	pop3_error(s);
}

/* Maps one result of the SASL exchange (src/auth/sasl.h) to POP3's states and replies. */
static void
pop3_auth_next(struct pop3_session *s, enum sasl_result r, const struct sasl_step *step)
{
	switch (r) {
	case SASL_CHALLENGE:
		pop3_enter_state(s, POP3_STATE_SASL);
		pop3_reply(s, "+ %s", step->challenge);
		return;
	case SASL_CREDENTIALS:
		pop3_auth_check(s, step->login, step->password);
		sasl_server_reset(&s->sasl);
		return;
	case SASL_ABORTED:
		pop3_forget_user(s);
		pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
		pop3_reply(s, "-ERR Authentication aborted");
		return;
	case SASL_ERROR:
		break;
	}
	switch (step->error) {
	case SASL_ERROR_MECHANISM:
		pop3_reply(s, "-ERR Unsupported authentication mechanism");
		pop3_error(s);
		return;
	case SASL_ERROR_AUTHZID:
		pop3_forget_user(s);
		pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
		pop3_reply(s, "-ERR [AUTH] Authorization identity not permitted");
		pop3_error(s);
		return;
	default:
		pop3_auth_bad(s, step->reason);
		return;
	}
}

static void
pop3_cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	struct sasl_step step;
	enum sasl_result r;

	if (!netconn_plaintext_ok(&s->conn)) {
		pop3_reply_plaintext_refused(s);
		return;
	}
	if (cmd->nargs == 0) {
		/* The pre-CAPA way to ask for mechanisms (RFC 1734 practice, still used). */
		pop3_reply(s, "+OK");
		pop3_reply(s, "PLAIN");
		pop3_reply(s, "LOGIN");
		pop3_reply(s, ".");
		return;
	}
	pop3_forget_user(s);
	/* A second argument is the initial response (RFC 5034 4). */
	r = sasl_server_start(&s->sasl, cmd->args[0], cmd->nargs == 2 ? cmd->args[1] : NULL, &step);
	pop3_auth_next(s, r, &step);
}

static void
pop3_cmd_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->state == POP3_STATE_AUTHORIZATION) {
		pop3_reply(s, "+OK Logging out");
		netconn_close(&s->conn, "quit");
		return;
	}
	/* RFC 1939 6: the UPDATE state. The reply waits for the store. */
	pop3_enter_state(s, POP3_STATE_UPDATE);
	if (!pop3_update_start(s, true)) {
		pop3_reply(s, "+OK Logging out, 0 messages deleted");
		netconn_close(&s->conn, "quit");
	}
}

typedef void pop3_cmd_fn(struct pop3_session *s, const struct pop3_command *cmd);

#define POP3_IN_AUTHORIZATION (1u << POP3_STATE_AUTHORIZATION)
#define POP3_IN_TRANSACTION (1u << POP3_STATE_TRANSACTION)

/* Which states accept a command (RFC 1939, 2449, 2595, 5034). */
struct pop3_cmd_entry {
	enum pop3_verb verb;
	unsigned states;
	pop3_cmd_fn *fn;
};

static const struct pop3_cmd_entry pop3_commands[] = {
    {POP3_VERB_CAPA, POP3_IN_AUTHORIZATION | POP3_IN_TRANSACTION, pop3_cmd_capa},
    {POP3_VERB_QUIT, POP3_IN_AUTHORIZATION | POP3_IN_TRANSACTION, pop3_cmd_quit},
    {POP3_VERB_USER, POP3_IN_AUTHORIZATION, pop3_cmd_user},
    {POP3_VERB_PASS, POP3_IN_AUTHORIZATION, pop3_cmd_pass},
    {POP3_VERB_AUTH, POP3_IN_AUTHORIZATION, pop3_cmd_auth},
    {POP3_VERB_APOP, POP3_IN_AUTHORIZATION, pop3_cmd_apop},
    {POP3_VERB_STLS, POP3_IN_AUTHORIZATION, pop3_cmd_stls},
    {POP3_VERB_STAT, POP3_IN_TRANSACTION, pop3_cmd_stat},
    {POP3_VERB_LIST, POP3_IN_TRANSACTION, pop3_cmd_list},
    {POP3_VERB_UIDL, POP3_IN_TRANSACTION, pop3_cmd_list},
    {POP3_VERB_RETR, POP3_IN_TRANSACTION, pop3_cmd_retr},
    {POP3_VERB_TOP, POP3_IN_TRANSACTION, pop3_cmd_retr},
    {POP3_VERB_DELE, POP3_IN_TRANSACTION, pop3_cmd_dele},
    {POP3_VERB_NOOP, POP3_IN_TRANSACTION, pop3_cmd_noop},
    {POP3_VERB_RSET, POP3_IN_TRANSACTION, pop3_cmd_rset},
};

/* Handles one complete command line (CRLF removed). */
static void
pop3_session_line(struct pop3_session *s, char *line, size_t len)
{
	struct pop3_command cmd;
	struct sasl_step step;
	const char *error;
	char esc[64];

	if (s->state == POP3_STATE_SASL) {
		pop3_auth_next(s, sasl_server_step(&s->sasl, line, &step), &step);
		return;
	}
	if (pop3_command_parse(line, len, &cmd, &error) < 0) {
		log_info("pop3 session=%s event=bad-command verb=%s error=\"%s\"", s->conn.id,
		         log_str(esc, sizeof(esc), cmd.verb_text), error);
		pop3_reply(s, "-ERR %s", error);
		pop3_error(s);
		return;
	}
	log_debug("pop3 session=%s event=command verb=%s", s->conn.id,
	          log_str(esc, sizeof(esc), cmd.verb_text));
	for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]); i++) {
		const struct pop3_cmd_entry *e = &pop3_commands[i];

		if (e->verb != cmd.verb)
			continue;
		if ((e->states & (1u << s->state)) == 0) {
			pop3_reply(s, "-ERR %s not allowed in the %s state", cmd.verb_text,
			           s->state == POP3_STATE_AUTHORIZATION ? "AUTHORIZATION"
			                                                : "TRANSACTION");
			pop3_error(s);
			return;
		}
		e->fn(s, &cmd);
		return;
	}
	log_info("pop3 session=%s event=unknown-command verb=%s", s->conn.id,
	         log_str(esc, sizeof(esc), cmd.verb_text));
	pop3_reply(s, "-ERR unknown command");
	pop3_error(s);
}

/* Line mode: handles one line if a whole one is buffered. Returns false when more input is
 * needed. Over-long lines are thrown away as they arrive, so memory stays bounded. */
static bool
pop3_session_read_line(struct pop3_session *s)
{
	char *line;
	size_t len;

	/* The parser holds commands other than AUTH to 512. */
	switch (netconn_read_line(&s->conn, POP3_SASL_LINE_MAX, &line, &len)) {
	case NETCONN_LINE_MORE:
		return false;
	case NETCONN_LINE_DISCARDING:
		return true;
	case NETCONN_LINE_TOO_LONG:
		if (s->state == POP3_STATE_SASL)
			pop3_auth_bad(s, "line too long");
		else {
			pop3_reply(s, "-ERR line too long");
			pop3_error(s);
		}
		return true;
	case NETCONN_LINE_OK:
		break;
	}
	pop3_session_line(s, line, len);
	/* It may have held a password (PASS, AUTH, a SASL response). */
	sodium_memzero(line, len);
	free(line);
	return true;
}

/* netconn ops->step: handles buffered input as far as the state allows. */
static bool
pop3_session_step(void *arg)
{
	struct pop3_session *s = arg;

	switch (s->state) {
	case POP3_STATE_CLOSING:
	case POP3_STATE_WAIT:
	case POP3_STATE_UPDATE:
		return false;
	case POP3_STATE_RETR:
		return pop3_retr_pump(s);
	case POP3_STATE_AUTHORIZATION:
	case POP3_STATE_SASL:
	case POP3_STATE_TRANSACTION:
		break;
	}
	if (s->server->shutting_down) {
		pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down");
		netconn_close(&s->conn, "shutdown");
		return false;
	}
	/* Backpressure: a client that pipelines without reading our replies waits. */
	if (netconn_output_full(&s->conn))
		return false;
	return pop3_session_read_line(s);
}

/* --- the server --- */

struct pop3_server *
pop3_server_new(struct event_base *base, const struct config *config, struct store *store,
                struct auth *auth, struct notify_hub *hub)
{
	struct pop3_server *server = xcalloc(1, sizeof(*server));

	server->hub = hub;

	server->base = base;
	server->store = store;
	server->auth = auth;
	server->max_errors = (unsigned)config_get_int(config, "pop3.max_errors");
	server->conn_params = (struct netconn_params){
	    .proto = "pop3",
	    .ops = &pop3_netconn_ops,
	    .idle_timeout.tv_sec = config_get_int(config, "pop3.idle_timeout"),
	    .write_low = POP3_RETR_LOW,
	    .plaintext = netconn_plaintext_parse(config_get(config, "auth.allow_plaintext")),
	    .limit_counts_crlf = true,
	    .too_long_reply = "-ERR line too long",
	    .timeout_reply = "-ERR Disconnected for inactivity",
	};
	netconn_params_deadlines(&server->conn_params, config);
	return server;
}

void
pop3_server_set_io(struct pop3_server *server, struct workers *io)
{
	server->io = io;
}

void
pop3_server_free(struct pop3_server **serverp)
{
	struct pop3_server *server = *serverp;
	struct pop3_session *s;

	if (server == NULL)
		return;
	/* Only sessions whose update callback can no longer come (the store is gone). */
	while ((s = netconn_list_first(&server->conns)) != NULL) {
		log_warnx("pop3 session=%s event=leaked-at-exit", s->conn.id);
		pop3_session_free(s);
	}
	free(server);
	*serverp = NULL;
}

/* Sessions not in the middle of an update say goodbye now: closing without QUIT deletes
 * nothing, and \Seen flags are still applied. */
static bool
pop3_session_bye(void *arg)
{
	struct pop3_session *s = arg;

	if (s->state != POP3_STATE_AUTHORIZATION && s->state != POP3_STATE_SASL &&
	    s->state != POP3_STATE_TRANSACTION)
		return false;
	pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down");
	return true;
}

void
pop3_server_shutdown(struct pop3_server *server)
{
	server->shutting_down = true;
	netconn_list_shutdown(&server->conns, pop3_session_bye);
}

void
pop3_server_close_all(struct pop3_server *server)
{
	netconn_list_destroy(&server->conns, "shutdown-timeout");
}

unsigned
pop3_server_session_count(const struct pop3_server *server)
{
	return server->conns.count;
}
