/* smtp_session: the SMTP server's connections: greeting, the command table (which verbs run in
 * which state, and the reply in every other state), line reading, EHLO and the small commands, and
 * the server object. The mail transaction is in smtp_tx.c, STARTTLS and AUTH in smtp_auth.c. */
#include "smtp/smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "deliver/deliver.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "smtp/smtp_private.h"

static const char *const smtp_state_names[] = {
    "init", "ready", "mail", "rcpt", "data", "bdat", "auth", "wait", "closing",
};

static const char *const smtp_role_names[] = {"smtp", "submission", "submissions"};

/* --- replies, states and transactions --- */

void
smtp_enter_state(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == state)
		return;
	log_debug("smtp session=%s event=state from=%s to=%s", s->conn.id,
	          smtp_state_names[s->state], smtp_state_names[state]);
	s->state = state;
	netconn_set_busy(&s->conn, state == SMTP_STATE_WAIT);
}

void
smtp_tx_free(struct smtp_tx **txp)
{
	struct smtp_tx *tx = *txp;

	if (tx == NULL)
		return;
	deliver_tx_abort(&tx->dtx);
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpts[i].address);
	free(tx->rcpts);
	free(tx->mail_from);
	free(tx);
	*txp = NULL;
}

void
smtp_tx_reset(struct smtp_session *s)
{
	smtp_tx_free(&s->tx);
	if (s->state != SMTP_STATE_INIT && s->state != SMTP_STATE_CLOSING)
		smtp_enter_state(s, SMTP_STATE_READY);
	if (s->server->shutting_down && s->state != SMTP_STATE_CLOSING) {
		smtp_reply(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
		           s->server->hostname);
		netconn_close(&s->conn, "shutdown");
	}
}

void
smtp_error(struct smtp_session *s)
{
	if (++s->errors < s->server->max_errors)
		return;
	smtp_reply(s, "421 4.7.0 %s Error: too many errors", s->server->hostname);
	netconn_close(&s->conn, "too-many-errors");
}

static bool
smtp_starttls_offered(const struct smtp_session *s)
{
	return !s->conn.tls && listener_get_ssl_ctx() != NULL;
}

const char *
smtp_esc_path(char *buf, size_t size, const char *address)
{
	char path[SMTP_LINE_MAX + 3];

	snprintf(path, sizeof(path), "<%s>", address);
	return log_str(buf, size, path);
}

/* --- session lifetime --- */

void
smtp_session_free(struct smtp_session *s)
{
	netconn_unlink(&s->conn);
	smtp_tx_free(&s->tx);
	free(s->helo);
	free(s->account);
	sasl_server_reset(&s->sasl);
	free(s);
}

/* netconn ops->closed: the connection is gone. The struct lives on while a commit is in flight. */
static void
smtp_session_closed(void *arg, const char *reason)
{
	struct smtp_session *s = arg;

	log_info("smtp session=%s event=disconnect ip=%s reason=%s errors=%u", s->conn.id,
	         s->conn.peer.ip, reason, s->errors);
	auth_cancel(&s->auth_req);
	if (!s->commit_pending)
		smtp_session_free(s);
}

/* netconn ops->closing: the last reply is queued. */
static void
smtp_session_closing(void *arg)
{
	smtp_enter_state(arg, SMTP_STATE_CLOSING);
}

static bool smtp_session_step(void *arg);

static const struct netconn_ops smtp_netconn_ops = {
    .step = smtp_session_step,
    .closing = smtp_session_closing,
    .closed = smtp_session_closed,
};

void
smtp_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls, void *arg)
{
	struct smtp_role_arg *ra = arg;
	struct smtp_server *server = ra->server;
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->server = server;
	s->role = ra->role;
	netconn_init(&s->conn, bev, peer, tls, &server->conn_params, &server->conns, s);

	log_info("smtp session=%s event=connect role=%s ip=%s port=%d tls=%s", s->conn.id,
	         smtp_role_names[s->role], peer->ip, peer->port, tls ? "yes" : "no");
	if (server->shutting_down) {
		smtp_reply(s, "421 4.3.2 %s Service shutting down", server->hostname);
		netconn_close(&s->conn, "shutdown");
		return;
	}
	smtp_reply(s, "220 %s ESMTP tern", server->hostname);
}

/* --- commands --- */

static void
smtp_cmd_helo(struct smtp_session *s, const struct smtp_command *cmd)
{
	char esc[300];
	bool ehlo = cmd->verb == SMTP_VERB_EHLO;

	if (!smtp_helo_valid(cmd->args)) {
		smtp_reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		smtp_error(s);
		return;
	}
	free(s->helo);
	s->helo = xstrdup(cmd->args);
	s->esmtp = ehlo;
	smtp_tx_free(&s->tx);
	smtp_enter_state(s, SMTP_STATE_READY);
	log_info("smtp session=%s event=helo verb=%s helo=%s", s->conn.id, cmd->verb_text,
	         log_str(esc, sizeof(esc), cmd->args));
	if (!ehlo) {
		smtp_reply(s, "250 %s", s->server->hostname);
		return;
	}
	smtp_reply(s, "250-%s", s->server->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu", (unsigned long long)s->server->max_message_size);
	if (smtp_starttls_offered(s))
		smtp_reply(s, "250-STARTTLS");
	if (netconn_plaintext_ok(&s->conn) && s->account_id == 0)
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250 CHUNKING");
}

static void
smtp_cmd_rset(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_tx_free(&s->tx);
	if (s->state != SMTP_STATE_INIT)
		smtp_enter_state(s, SMTP_STATE_READY);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_noop(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_quit(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_reply(s, "221 2.0.0 Bye");
	netconn_close(&s->conn, "quit");
}

static void
smtp_cmd_vrfy(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_reply(s, "252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery");
}

static void
smtp_cmd_expn(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_reply(s, "502 5.5.1 EXPN command is disabled");
}

static void
smtp_cmd_help(struct smtp_session *s, const struct smtp_command *cmd)
{
	smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY "
	              "HELP STARTTLS AUTH; see RFC 5321");
}

typedef void smtp_cmd_fn(struct smtp_session *s, const struct smtp_command *cmd);

#define SMTP_HELO_FIRST "503 5.5.1 Error: send HELO/EHLO first"

/* The command table: each verb, its handler, and for each state in which commands are read the
 * reply when the verb is out of sequence there (RFC 5321 4.1.4: 503; DATA without an accepted
 * recipient: 554, 3.3). NULL: the verb runs in that state. Handlers check arguments, not states. */
struct smtp_cmd_entry {
	enum smtp_verb verb;
	smtp_cmd_fn *fn;
	const char *refused[SMTP_STATE_RCPT + 1]; /* INIT, READY, MAIL, RCPT */
};

static const struct smtp_cmd_entry smtp_commands[] = {
    {SMTP_VERB_HELO, smtp_cmd_helo, {NULL}},
    {SMTP_VERB_EHLO, smtp_cmd_helo, {NULL}},
    {SMTP_VERB_MAIL,
     smtp_cmd_mail,
     {[SMTP_STATE_INIT] = SMTP_HELO_FIRST,
      [SMTP_STATE_MAIL] = "503 5.5.1 Error: nested MAIL command",
      [SMTP_STATE_RCPT] = "503 5.5.1 Error: nested MAIL command"}},
    {SMTP_VERB_RCPT,
     smtp_cmd_rcpt,
     {[SMTP_STATE_INIT] = SMTP_HELO_FIRST,
      [SMTP_STATE_READY] = "503 5.5.1 Error: need MAIL command"}},
    {SMTP_VERB_DATA,
     smtp_cmd_data,
     {[SMTP_STATE_INIT] = SMTP_HELO_FIRST,
      [SMTP_STATE_READY] = "503 5.5.1 Error: need RCPT command",
      [SMTP_STATE_MAIL] = "554 5.5.1 Error: no valid recipients"}},
    /* BDAT's chunk must be read whatever the state (its size finds the next command): the
     * handler reads it and answers 503 after it when the state is wrong. */
    {SMTP_VERB_BDAT, smtp_cmd_bdat, {NULL}},
    {SMTP_VERB_RSET, smtp_cmd_rset, {NULL}},
    {SMTP_VERB_NOOP, smtp_cmd_noop, {NULL}},
    {SMTP_VERB_QUIT, smtp_cmd_quit, {NULL}},
    {SMTP_VERB_VRFY, smtp_cmd_vrfy, {NULL}},
    {SMTP_VERB_EXPN, smtp_cmd_expn, {NULL}},
    {SMTP_VERB_HELP, smtp_cmd_help, {NULL}},
    {SMTP_VERB_STARTTLS, smtp_cmd_starttls, {NULL}},
    {SMTP_VERB_AUTH,
     smtp_cmd_auth,
     {[SMTP_STATE_INIT] = SMTP_HELO_FIRST,
      [SMTP_STATE_MAIL] = "503 5.5.1 Error: MAIL transaction in progress",
      [SMTP_STATE_RCPT] = "503 5.5.1 Error: MAIL transaction in progress"}},
};

/* Handles one complete command line (CRLF removed). */
static void
smtp_session_line(struct smtp_session *s, char *line, size_t len)
{
	struct smtp_command cmd;
	char esc[128];

	if (s->state == SMTP_STATE_AUTH) {
		smtp_auth_line(s, line, len);
		return;
	}
	if (smtp_command_parse(line, len, &cmd) < 0) {
		smtp_reply(s, "500 5.5.2 Error: bad syntax");
		smtp_error(s);
		return;
	}
	if (len + 2 > SMTP_LINE_MAX && cmd.verb != SMTP_VERB_AUTH) {
		smtp_reply(s, "500 5.5.2 Error: line too long");
		smtp_error(s);
		return;
	}
	log_debug("smtp session=%s event=command verb=%s", s->conn.id,
	          log_str(esc, sizeof(esc), cmd.verb_text));
	for (size_t i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]); i++) {
		const struct smtp_cmd_entry *e = &smtp_commands[i];

		if (e->verb != cmd.verb)
			continue;
		if (s->state <= SMTP_STATE_RCPT && e->refused[s->state] != NULL) {
			smtp_reply(s, "%s", e->refused[s->state]);
			smtp_error(s);
			return;
		}
		e->fn(s, &cmd);
		return;
	}
	log_info("smtp session=%s event=unknown-command verb=%s", s->conn.id,
	         log_str(esc, sizeof(esc), cmd.verb_text));
	smtp_reply(s, "500 5.5.2 Error: command not recognized");
	smtp_error(s);
}

/* Line mode: handles one line if a whole one is buffered. Returns false when more input is
 * needed. Over-long lines are thrown away as they arrive, so memory stays bounded. */
static bool
smtp_session_read_line(struct smtp_session *s)
{
	char *line;
	size_t len;

	/* Commands other than AUTH are held to 512 later. */
	switch (netconn_read_line(&s->conn, SMTP_AUTH_LINE_MAX, &line, &len)) {
	case NETCONN_LINE_MORE:
		return false;
	case NETCONN_LINE_DISCARDING:
		return true;
	case NETCONN_LINE_TOO_LONG:
		smtp_reply(s, "500 5.5.2 Error: line too long");
		smtp_error(s);
		return true;
	case NETCONN_LINE_OK:
		break;
	}
	smtp_session_line(s, line, len);
	free(line);
	return true;
}

/* netconn ops->step: handles buffered input as far as the state allows. */
static bool
smtp_session_step(void *arg)
{
	struct smtp_session *s = arg;

	switch (s->state) {
	case SMTP_STATE_CLOSING:
	case SMTP_STATE_WAIT:
		return false;
	case SMTP_STATE_DATA:
		if (!smtp_data_consume(s))
			return false;
		smtp_tx_finish(s);
		return true;
	case SMTP_STATE_BDAT:
		return smtp_bdat_consume(s);
	default:
		break;
	}
	/* Backpressure: a client that pipelines without reading our replies waits. */
	if (netconn_output_full(&s->conn))
		return false;
	return smtp_session_read_line(s);
}

/* --- the server --- */

struct smtp_server *
smtp_server_new(struct event_base *base, const struct config *config, struct deliver *deliver,
                struct auth *auth)
{
	struct smtp_server *server = xcalloc(1, sizeof(*server));

	server->base = base;
	server->deliver = deliver;
	server->auth = auth;
	server->hostname = xstrdup(config_get(config, "server.hostname"));
	server->max_message_size = (uint64_t)config_get_int(config, "smtp.max_message_size");
	server->max_recipients = (unsigned)config_get_int(config, "smtp.max_recipients");
	server->max_errors = (unsigned)config_get_int(config, "smtp.max_errors");
	server->timeout_reply = xasprintf("421 4.4.2 %s Error: timeout exceeded", server->hostname);
	server->conn_params = (struct netconn_params){
	    .proto = "smtp",
	    .ops = &smtp_netconn_ops,
	    .idle_timeout.tv_sec = config_get_int(config, "smtp.idle_timeout"),
	    .plaintext = netconn_plaintext_parse(config_get(config, "auth.allow_plaintext")),
	    .too_long_reply = "500 5.5.2 Error: line too long",
	    .timeout_reply = server->timeout_reply,
	};
	netconn_params_deadlines(&server->conn_params, config);
	for (int i = 0; i < SMTP_ROLE_COUNT; i++) {
		server->roles[i].server = server;
		server->roles[i].role = (enum smtp_role)i;
	}
	return server;
}

void
smtp_server_free(struct smtp_server **serverp)
{
	struct smtp_server *server = *serverp;

	if (server == NULL)
		return;
	free(server->hostname);
	free(server->timeout_reply);
	free(server);
	*serverp = NULL;
}

void *
smtp_server_role_arg(struct smtp_server *server, enum smtp_role role)
{
	return &server->roles[role];
}

/* Sessions between transactions say goodbye now; the others when their transaction ends. */
static bool
smtp_session_bye(void *arg)
{
	struct smtp_session *s = arg;

	if (s->state != SMTP_STATE_INIT && s->state != SMTP_STATE_READY)
		return false;
	smtp_reply(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
	           s->server->hostname);
	return true;
}

void
smtp_server_shutdown(struct smtp_server *server)
{
	server->shutting_down = true;
	netconn_list_shutdown(&server->conns, smtp_session_bye);
}

void
smtp_server_close_all(struct smtp_server *server)
{
	netconn_list_destroy(&server->conns, "shutdown-timeout");
}

unsigned
smtp_server_session_count(const struct smtp_server *server)
{
	return server->conns.count;
}
