/* imap_session: the IMAP4rev1 server state machine on a netconn: the parser loop, the command
 * table, the not-authenticated state (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE) and the
 * session's lifetime. Mailbox commands are in imap_mailbox.c, FETCH/STORE/SEARCH in
 * imap_fetch.c. */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "imap/imap_notify.h"
#include "imap/imap_private.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"

static const char *const imap_state_names[] = {
    "not-authenticated", "sasl", "wait", "authenticated", "selected", "fetch", "idle", "closing",
};

/* --- states and errors --- */

void
imap_enter_state(struct imap_session *s, enum imap_state state)
{
	if (s->state == state)
		return;
	log_debug("imap session=%s event=state from=%s to=%s", s->conn.id,
	          imap_state_names[s->state], imap_state_names[state]);
	s->state = state;
	netconn_set_busy(&s->conn, state == IMAP_STATE_WAIT);
}

void
imap_error(struct imap_session *s)
{
	if (++s->errors < s->server->max_errors)
		return;
	imap_reply(s, "* BYE Too many errors");
	netconn_close(&s->conn, "too-many-errors");
}

void
imap_bad(struct imap_session *s, const char *tag, const char *text)
{
	imap_reply(s, "%s BAD %s", tag, text);
	imap_error(s);
}

void
imap_set_tag(struct imap_session *s, const char *tag)
{
	free(s->tag);
	s->tag = xstrdup(tag);
}

/* Writes str as a quoted string, or as a literal when it holds bytes a quoted string cannot. */
void
imap_write_astring(struct imap_session *s, const char *str)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	size_t len = strlen(str);
	bool literal = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];

		if (c == '\r' || c == '\n' || c >= 0x80)
			literal = true;
	}
	if (literal) {
		evbuffer_add_printf(out, "{%zu}\r\n", len);
		evbuffer_add(out, str, len);
		return;
	}
	evbuffer_add(out, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\')
			evbuffer_add(out, "\\", 1);
		evbuffer_add(out, &str[i], 1);
	}
	evbuffer_add(out, "\"", 1);
}

static bool
imap_starttls_offered(const struct imap_session *s)
{
	return !s->conn.tls && listener_get_ssl_ctx() != NULL;
}

/* Room for every capability we may list (a truncated list drops the last ones silently). */
#define IMAP_CAPS_MAX 1024

/* The capability list for the current state, without the leading "CAPABILITY". */
static void
imap_capabilities(const struct imap_session *s, char *buf, size_t size)
{
	str_copy(
	    buf,
	    "IMAP4rev1 LITERAL+ SASL-IR ENABLE IDLE UIDPLUS MOVE UNSELECT NAMESPACE ID CHILDREN "
	    "SPECIAL-USE CONDSTORE QRESYNC ESEARCH MULTIAPPEND BINARY CATENATE SORT SORT=DISPLAY "
	    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT LIST-EXTENDED LIST-STATUS UTF8=ACCEPT "
	    "COMPRESS=DEFLATE CONTEXT=SEARCH CONTEXT=SORT NOTIFY",
	    size);
	if (s->state != IMAP_STATE_NOT_AUTH)
		return;
	if (imap_starttls_offered(s))
		strncat(buf, " STARTTLS", size - strlen(buf) - 1);
	if (netconn_plaintext_ok(&s->conn))
		strncat(buf, " AUTH=PLAIN AUTH=LOGIN", size - strlen(buf) - 1);
	else
		strncat(buf, " LOGINDISABLED", size - strlen(buf) - 1);
}

static void
imap_forget_auth(struct imap_session *s)
{
	sasl_server_reset(&s->sasl);
}

/* --- session lifetime --- */

void
imap_session_free(struct imap_session *s)
{
	netconn_unlink(&s->conn);
	imap_fetch_free(s);
	imap_mailbox_deselect(s);
	imap_notify_free(s);
	if (s->idle_timer != NULL)
		event_free(s->idle_timer);
	imap_forget_auth(s);
	imap_parser_free(&s->parser);
	imap_append_abort(s);
	imap_update_clear(s);
	free(s->tag);
	free(s->account);
	free(s);
}

static void
imap_session_closed(void *arg, const char *reason)
{
	struct imap_session *s = arg;

	log_info("imap session=%s event=disconnect ip=%s reason=%s errors=%u", s->conn.id,
	         s->conn.peer.ip, reason, s->errors);
	auth_cancel(&s->auth_req);
	imap_fetch_free(s);
	imap_mailbox_deselect(s);
	imap_notify_free(s);
	if (s->idle_timer != NULL) {
		event_free(s->idle_timer);
		s->idle_timer = NULL;
	}
	if (s->update_pending > 0)
		return; /* the update callback frees the session */
	imap_session_free(s);
}

static void
imap_session_closing(void *arg)
{
	imap_enter_state(arg, IMAP_STATE_CLOSING);
}

static bool
imap_session_timeout(void *arg, bool writing)
{
	struct imap_session *s = arg;

	if (s->state == IMAP_STATE_FETCH || writing) {
		netconn_destroy(&s->conn, "write-timeout");
		return true;
	}
	return false;
}

static bool imap_session_step(void *arg);

static const struct netconn_ops imap_netconn_ops = {
    .step = imap_session_step,
    .closing = imap_session_closing,
    .timeout = imap_session_timeout,
    .closed = imap_session_closed,
};

/* Before login a client needs only LOGIN, AUTHENTICATE, ID and the like: input is held to a
 * few KiB per connection (Dovecot's login process does the same), so unauthenticated
 * connections cannot pin memory. A LITERAL+ literal over the limit is read and dropped only
 * up to discard_max, then the connection is closed. imap_auth_done lifts the limits. */
static const struct imap_parser_limits imap_preauth_limits = {
    .line_max = 8192,
    .literal_max = 4096, /* LOGIN user and password are at most SASL_FIELD_MAX */
    .command_max = 8192,
    .max_args = 128, /* ID: 30 field/value pairs */
    .max_depth = 4,
    .discard_max = 65536,
};

void
imap_server_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls, void *arg)
{
	struct imap_server *server = arg;
	struct imap_session *s = xcalloc(1, sizeof(*s));
	char caps[IMAP_CAPS_MAX];

	s->server = server;
	s->parser = imap_parser_new(&imap_preauth_limits);
	netconn_init(&s->conn, bev, peer, tls, &server->conn_params, &server->conns, s);

	log_info("imap session=%s event=connect ip=%s port=%d tls=%s", s->conn.id, peer->ip,
	         peer->port, tls ? "yes" : "no");
	if (server->shutting_down) {
		imap_reply(s, "* BYE [UNAVAILABLE] Server shutting down");
		netconn_close(&s->conn, "shutdown");
		return;
	}
	imap_capabilities(s, caps, sizeof(caps));
	imap_reply(s, "* OK [CAPABILITY %s] tern IMAP4rev1 ready", caps);
}

/* --- any state --- */

static void
imap_cmd_capability(struct imap_session *s, const struct imap_command *cmd)
{
	char caps[IMAP_CAPS_MAX];

	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "CAPABILITY takes no arguments");
		return;
	}
	imap_capabilities(s, caps, sizeof(caps));
	imap_reply(s, "* CAPABILITY %s", caps);
	imap_reply(s, "%s OK CAPABILITY completed", cmd->tag);
}

static void
imap_cmd_noop(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "NOOP takes no arguments");
		return;
	}
	imap_reply(s, "%s OK NOOP completed", cmd->tag);
}

static void
imap_cmd_logout(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "LOGOUT takes no arguments");
		return;
	}
	imap_reply(s, "* BYE Logging out");
	imap_reply(s, "%s OK LOGOUT completed", cmd->tag);
	netconn_close(&s->conn, "logout");
}

static void
imap_cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_arg *list = &cmd->args[0];
	bool ok = cmd->nargs == 1 && (list->type == IMAP_ARG_NIL || list->type == IMAP_ARG_LIST);

	/* RFC 2971 3.3: field/value pairs of strings (values may be NIL), at most 30 of them,
	 * fields at most 30 octets. */
	if (ok && list->type == IMAP_ARG_LIST) {
		const char *str;

		ok = list->list_count % 2 == 0 && list->list_count <= 60;
		for (size_t i = 0; ok && i < list->list_count; i++) {
			if (i % 2 == 0)
				ok = imap_arg_get_string(&list->list[i], &str) && strlen(str) <= 30;
			else
				ok = imap_arg_get_nstring(&list->list[i], &str);
		}
	}
	if (!ok) {
		imap_bad(s, cmd->tag, "syntax: ID (\"field\" \"value\" ...) or ID NIL");
		return;
	}
	imap_reply(s, "* ID (\"name\" \"tern\")");
	imap_reply(s, "%s OK ID completed", cmd->tag);
}

static void
imap_cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	bool condstore = false, qresync = false, utf8;

	if (cmd->nargs == 0) {
		imap_bad(s, cmd->tag, "syntax: ENABLE capability...");
		return;
	}
	/* RFC 5161: list what got enabled; unknown capabilities are ignored. QRESYNC implies
	 * CONDSTORE (RFC 7162 3.2.3). */
	for (size_t i = 0; i < cmd->nargs; i++) {
		if (imap_arg_atom_equals(&cmd->args[i], "CONDSTORE"))
			condstore = true;
		else if (imap_arg_atom_equals(&cmd->args[i], "QRESYNC"))
			qresync = true;
	}
	utf8 = imap_utf8_enable(s, cmd);
	imap_reply(s, "* ENABLED%s%s%s", condstore ? " CONDSTORE" : "", qresync ? " QRESYNC" : "",
	           utf8 ? " UTF8=ACCEPT" : "");
	if (qresync)
		s->qresync = true;
	if (condstore || qresync)
		imap_condstore_enable(s);
	imap_reply(s, "%s OK ENABLE completed", cmd->tag);
}

/* COMPRESS DEFLATE (RFC 4978): the OK goes out plain, everything after it deflated. */
static void
imap_cmd_compress(struct imap_session *s, const struct imap_command *cmd)
{
	const char *why;

	if (cmd->nargs != 1) {
		imap_bad(s, cmd->tag, "syntax: COMPRESS DEFLATE");
		return;
	}
	if (!imap_arg_atom_equals(&cmd->args[0], "DEFLATE")) {
		imap_reply(s, "%s NO Unknown compression mechanism", cmd->tag);
		return;
	}
	if (netconn_compression_active(&s->conn)) {
		imap_reply(s, "%s NO [COMPRESSIONACTIVE] Compression is already active", cmd->tag);
		return;
	}
	imap_reply(s, "%s OK DEFLATE active", cmd->tag);
	if ((why = netconn_compress(&s->conn)) != NULL) {
		log_warnx("imap session=%s event=compress result=failed error=\"%s\"", s->conn.id,
		          why);
		netconn_close(&s->conn, "compress-failed");
		return;
	}
	log_debug("imap session=%s event=compress", s->conn.id);
}

/* --- not authenticated --- */

static void
imap_cmd_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	size_t discarded;
	bool ok;

	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "STARTTLS takes no arguments");
		return;
	}
	if (s->conn.tls) {
		imap_bad(s, cmd->tag, "TLS already active");
		return;
	}
	if (listener_get_ssl_ctx() == NULL) {
		imap_reply(s, "%s NO [UNAVAILABLE] TLS not available", cmd->tag);
		return;
	}
	imap_reply(s, "%s OK Begin TLS negotiation now", cmd->tag);
	ok = netconn_starttls(&s->conn, &discarded);
	if (discarded > 0)
		log_info("imap session=%s event=starttls-injection discarded=%zu", s->conn.id,
		         discarded);
	if (!ok) {
		netconn_close(&s->conn, "tls-setup-failed");
		return;
	}
	/* RFC 3501 6.2.1: forget what was learnt before TLS; the parser starts afresh too. */
	imap_forget_auth(s);
	imap_parser_free(&s->parser);
	s->parser = imap_parser_new(&imap_preauth_limits);
}

static void
imap_auth_done(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct imap_session *s = arg;
	struct imap_parser_limits limits = {0};
	char caps[IMAP_CAPS_MAX];

	s->auth_req = NULL;
	imap_enter_state(s, IMAP_STATE_NOT_AUTH);
	imap_forget_auth(s);
	switch (result) {
	case AUTH_OK:
		log_info("imap session=%s event=auth result=ok account=%s", s->conn.id, address);
		netconn_set_authenticated(&s->conn);
		s->account_id = account_id;
		free(s->account);
		s->account = xstrdup(address);
		/* Logged in: APPEND literals stream into the store instead of memory. */
		limits.stream_min = 1;
		limits.stream_max = s->server->append_max;
		imap_parser_set_limits(s->parser, &limits);
		imap_enter_state(s, IMAP_STATE_AUTH);
		imap_capabilities(s, caps, sizeof(caps));
		imap_reply(s, "%s OK [CAPABILITY %s] Logged in", s->tag, caps);
		break;
	case AUTH_FAILED:
		log_info("imap session=%s event=auth result=failed ip=%s", s->conn.id,
		         s->conn.peer.ip);
		imap_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed", s->tag);
		imap_error(s);
		break;
	case AUTH_LOCKED:
		log_warnx("imap session=%s event=auth result=locked ip=%s", s->conn.id,
		          s->conn.peer.ip);
		imap_reply(s,
		           "%s NO [UNAVAILABLE] Too many failed authentication attempts; try "
		           "again later",
		           s->tag);
		imap_error(s);
		break;
	case AUTH_TEMPFAIL:
		imap_reply(s,
		           "%s NO [UNAVAILABLE] Temporary authentication failure; try again "
		           "later",
		           s->tag);
		break;
	}
	netconn_run(&s->conn);
}

static void
imap_auth_check(struct imap_session *s, const char *login, const char *password)
{
	imap_enter_state(s, IMAP_STATE_WAIT);
	s->auth_req =
	    auth_verify(s->server->auth, s->conn.peer.ip, login, password, imap_auth_done, s);
}

static void
imap_cmd_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *pass;

	if (!netconn_plaintext_ok(&s->conn)) {
		imap_reply(s,
		           "%s NO [PRIVACYREQUIRED] Plaintext authentication is disabled on "
		           "this connection; use STARTTLS",
		           cmd->tag);
		imap_error(s);
		return;
	}
	if (cmd->nargs != 2 || !imap_arg_get_astring(&cmd->args[0], &user) ||
	    !imap_arg_get_astring(&cmd->args[1], &pass)) {
		imap_bad(s, cmd->tag, "syntax: LOGIN user password");
		return;
	}
	if (strlen(user) > SASL_FIELD_MAX || strlen(pass) > SASL_FIELD_MAX || *user == '\0') {
		imap_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed", cmd->tag);
		imap_error(s);
		return;
	}
	imap_set_tag(s, cmd->tag);
	imap_auth_check(s, user, pass);
}

/* Maps one result of the SASL exchange to IMAP's states and replies. */
static void
imap_auth_next(struct imap_session *s, enum sasl_result r, const struct sasl_step *step)
{
	switch (r) {
	case SASL_CHALLENGE:
		imap_enter_state(s, IMAP_STATE_SASL);
		imap_reply(s, "+ %s", step->challenge);
		imap_parser_expect_line(s->parser);
		return;
	case SASL_CREDENTIALS:
		imap_auth_check(s, step->login, step->password);
		sasl_server_reset(&s->sasl);
		return;
	case SASL_ABORTED:
		imap_forget_auth(s);
		imap_enter_state(s, IMAP_STATE_NOT_AUTH);
		imap_reply(s, "%s BAD Authentication aborted", s->tag);
		return;
	case SASL_ERROR:
		break;
	}
	imap_forget_auth(s);
	imap_enter_state(s, IMAP_STATE_NOT_AUTH);
	switch (step->error) {
	case SASL_ERROR_MECHANISM:
		imap_reply(s, "%s NO Unsupported authentication mechanism", s->tag);
		break;
	case SASL_ERROR_DECODE:
		imap_reply(s, "%s BAD %s", s->tag, step->reason);
		break;
	default:
		imap_reply(s, "%s NO [AUTHENTICATIONFAILED] %s", s->tag, step->reason);
		break;
	}
	imap_error(s);
}

static void
imap_cmd_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mech, *ir = NULL;
	struct sasl_step step;

	if (cmd->nargs < 1 || cmd->nargs > 2 || !imap_arg_get_atom(&cmd->args[0], &mech) ||
	    (cmd->nargs == 2 && !imap_arg_get_atom(&cmd->args[1], &ir))) {
		imap_bad(s, cmd->tag, "syntax: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (!netconn_plaintext_ok(&s->conn)) {
		imap_reply(s,
		           "%s NO [PRIVACYREQUIRED] Plaintext authentication is disabled on "
		           "this connection; use STARTTLS",
		           cmd->tag);
		imap_error(s);
		return;
	}
	imap_set_tag(s, cmd->tag);
	imap_auth_next(s, sasl_server_start(&s->sasl, mech, ir, &step), &step);
}

/* --- the command table --- */

typedef void imap_cmd_fn(struct imap_session *s, const struct imap_command *cmd);

#define IN_NOT_AUTH (1u << IMAP_STATE_NOT_AUTH)
#define IN_AUTH (1u << IMAP_STATE_AUTH)
#define IN_SELECTED (1u << IMAP_STATE_SELECTED)
#define IN_ANY (IN_NOT_AUTH | IN_AUTH | IN_SELECTED)
#define IN_LOGGED (IN_AUTH | IN_SELECTED)

struct imap_cmd_entry {
	const char *name;
	unsigned states;
	bool uid; /* also as UID <name> */
	/* FETCH, STORE, SEARCH (RFC 3501 7.4.1), and COPY, MOVE: no EXPUNGE responses before
	 * them, so their sequence numbers mean what the client saw when it sent them. */
	bool no_expunge;
	imap_cmd_fn *fn;
};

static const struct imap_cmd_entry imap_commands[] = {
    {"CAPABILITY", IN_ANY, false, false, imap_cmd_capability},
    {"NOOP", IN_ANY, false, false, imap_cmd_noop},
    {"LOGOUT", IN_ANY, false, false, imap_cmd_logout},
    {"ID", IN_ANY, false, false, imap_cmd_id},
    {"STARTTLS", IN_NOT_AUTH, false, false, imap_cmd_starttls},
    {"LOGIN", IN_NOT_AUTH, false, false, imap_cmd_login},
    {"AUTHENTICATE", IN_NOT_AUTH, false, false, imap_cmd_authenticate},
    {"ENABLE", IN_LOGGED, false, false, imap_cmd_enable},
    {"COMPRESS", IN_LOGGED, false, false, imap_cmd_compress},
    {"LIST", IN_LOGGED, false, false, imap_cmd_list},
    {"LSUB", IN_LOGGED, false, false, imap_cmd_list},
    {"STATUS", IN_LOGGED, false, false, imap_cmd_status},
    {"SELECT", IN_LOGGED, false, false, imap_cmd_select},
    {"EXAMINE", IN_LOGGED, false, false, imap_cmd_select},
    {"NAMESPACE", IN_LOGGED, false, false, imap_cmd_namespace},
    {"IDLE", IN_LOGGED, false, false, imap_cmd_idle},
    {"NOTIFY", IN_LOGGED, false, false, imap_cmd_notify},
    {"CREATE", IN_LOGGED, false, false, imap_cmd_create},
    {"DELETE", IN_LOGGED, false, false, imap_cmd_delete},
    {"RENAME", IN_LOGGED, false, false, imap_cmd_rename},
    {"SUBSCRIBE", IN_LOGGED, false, false, imap_cmd_subscribe},
    {"UNSUBSCRIBE", IN_LOGGED, false, false, imap_cmd_subscribe},
    {"APPEND", IN_LOGGED, false, false, imap_cmd_append},
    {"UNSELECT", IN_SELECTED, false, false, imap_cmd_unselect},
    {"CLOSE", IN_SELECTED, false, false, imap_cmd_close},
    {"CHECK", IN_SELECTED, false, false, imap_cmd_check},
    {"EXPUNGE", IN_SELECTED, true, false, imap_cmd_expunge},
    {"FETCH", IN_SELECTED, true, true, imap_cmd_fetch},
    {"STORE", IN_SELECTED, true, true, imap_cmd_store},
    {"SEARCH", IN_SELECTED, true, true, imap_cmd_search},
    {"SORT", IN_SELECTED, true, true, imap_cmd_sort},
    {"THREAD", IN_SELECTED, true, true, imap_cmd_thread},
    {"COPY", IN_SELECTED, true, true, imap_cmd_copy},
    {"MOVE", IN_SELECTED, true, true, imap_cmd_copy},
    {"CANCELUPDATE", IN_SELECTED, false, false, imap_cmd_cancelupdate},
};

static void
imap_dispatch(struct imap_session *s, const struct imap_command *cmd)
{
	char esc[64];

	log_debug("imap session=%s event=command name=%s uid=%s", s->conn.id,
	          log_str(esc, sizeof(esc), cmd->name), cmd->uid ? "yes" : "no");
	for (size_t i = 0; i < sizeof(imap_commands) / sizeof(imap_commands[0]); i++) {
		const struct imap_cmd_entry *e = &imap_commands[i];

		if (strcmp(e->name, cmd->name) != 0)
			continue;
		if (cmd->uid && !e->uid)
			break;
		if ((e->states & (1u << s->state)) == 0) {
			imap_reply(s, "%s BAD %s%s not allowed in the %s state", cmd->tag,
			           cmd->uid ? "UID " : "", cmd->name, imap_state_names[s->state]);
			imap_error(s);
			return;
		}
		/* RFC 3501 7.4.1: no EXPUNGE while FETCH, STORE or SEARCH runs (UID ones may). */
		if (s->state == IMAP_STATE_SELECTED)
			imap_mailbox_flush(s, !e->no_expunge || cmd->uid);
		e->fn(s, cmd);
		/* Credentials do not linger in the parser's buffer (auth copied them). */
		if (e->fn == imap_cmd_login || e->fn == imap_cmd_authenticate)
			imap_parser_wipe(s->parser);
		return;
	}
	log_info("imap session=%s event=unknown-command name=%s", s->conn.id,
	         log_str(esc, sizeof(esc), cmd->name));
	imap_bad(s, cmd->tag, "Unknown command");
}

/* A raw line asked for with imap_parser_expect_line: a SASL response or IDLE's DONE. */
static void
imap_session_line(struct imap_session *s, const char *line, size_t len)
{
	struct sasl_step step;

	if (s->state == IMAP_STATE_SASL) {
		if (strlen(line) != len) {
			imap_forget_auth(s);
			imap_enter_state(s, IMAP_STATE_NOT_AUTH);
			imap_bad(s, s->tag, "NUL in response");
			return;
		}
		imap_auth_next(s, sasl_server_step(&s->sasl, line, &step), &step);
		imap_parser_wipe(s->parser);
		return;
	}
	if (s->state == IMAP_STATE_IDLE) {
		imap_idle_line(s, line);
		return;
	}
}

static void
imap_session_parse_error(struct imap_session *s)
{
	const struct imap_parse_error *err = imap_parser_error(s->parser);

	imap_append_abort(s); /* what was streamed of a failed APPEND is dropped */
	if (err->fatal) {
		imap_reply(s, "* BYE %s", err->text);
		netconn_close(&s->conn, "parse-error");
		return;
	}
	if (s->state == IMAP_STATE_SASL || s->state == IMAP_STATE_IDLE) {
		/* The expected line was too long. */
		if (s->state == IMAP_STATE_SASL) {
			imap_forget_auth(s);
			imap_enter_state(s, IMAP_STATE_NOT_AUTH);
		} else {
			imap_idle_line(s, "");
			return;
		}
		imap_reply(s, "%s BAD %s", s->tag, err->text);
		imap_error(s);
		return;
	}
	if (err->resp_code != NULL)
		imap_reply(s, "%s %s [%s] %s", err->tag != NULL ? err->tag : "*", err->reply,
		           err->resp_code, err->text);
	else
		imap_reply(s, "%s %s %s", err->tag != NULL ? err->tag : "*", err->reply, err->text);
	imap_error(s);
}

/* Feeds buffered input to the parser up to its next event and handles that. */
static bool
imap_session_feed(struct imap_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->conn.bev);
	struct evbuffer_iovec vec;
	const struct imap_command *cmd;
	const char *line;
	size_t consumed = 0, len;
	bool uid;
	int r;

	if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1 || vec.iov_len == 0)
		return false;
	r = imap_parser_feed(s->parser, vec.iov_base, vec.iov_len, &consumed);
	/* APPEND's literal data points into the input buffer: use it before draining. */
	if (r == IMAP_PARSE_LITERAL_DATA) {
		imap_parser_literal_data(s->parser, &line, &len);
		imap_append_data(s, line, len);
	}
	/* Commands and lines live in the parser: drain now, before a handler (STARTTLS) may
	 * replace the bufferevent. */
	evbuffer_drain(in, consumed);
	/* Before login a literal is part of the command's deadline: slowly trickled LOGIN
	 * literals must not hold a connection for hours. */
	netconn_line_partial(&s->conn, imap_parser_mid_line(s->parser, s->account_id == 0));
	switch (r) {
	case IMAP_PARSE_NEED_MORE:
		return evbuffer_get_length(in) > 0;
	case IMAP_PARSE_COMMAND:
		cmd = imap_parser_command(s->parser);
		imap_dispatch(s, cmd);
		return true;
	case IMAP_PARSE_LITERAL_CONTINUE:
		if (strcmp(imap_parser_command_name(s->parser, &uid), "APPEND") == 0 &&
		    !imap_append_continue(s)) {
			/* The command ends here: drop what an earlier literal streamed. */
			imap_parser_literal_refuse(s->parser);
			imap_append_abort(s);
			return true;
		}
		imap_reply(s, "+ Ready for literal data");
		return true;
	case IMAP_PARSE_LITERAL_DATA:
		return true; /* handled above */
	case IMAP_PARSE_LINE:
		line = imap_parser_line(s->parser, &len);
		imap_session_line(s, line, len);
		return true;
	case IMAP_PARSE_ERROR:
	default:
		imap_session_parse_error(s);
		return !s->conn.closing && !s->conn.dead;
	}
}

static bool
imap_session_step(void *arg)
{
	struct imap_session *s = arg;

	switch (s->state) {
	case IMAP_STATE_CLOSING:
	case IMAP_STATE_WAIT:
		return false;
	case IMAP_STATE_FETCH:
		return imap_fetch_pump(s);
	default:
		break;
	}
	if (s->server->shutting_down) {
		imap_reply(s, "* BYE [UNAVAILABLE] Server shutting down");
		netconn_close(&s->conn, "shutdown");
		return false;
	}
	if (netconn_output_full(&s->conn))
		return false;
	return imap_session_feed(s);
}

/* --- the server --- */

struct imap_server *
imap_server_new(struct event_base *base, const struct config *config, struct store *store,
                struct auth *auth, struct notify_hub *hub, struct deliver *deliver,
                struct workers *workers)
{
	struct imap_server *server = xcalloc(1, sizeof(*server));

	server->workers = workers;
	server->base = base;
	server->deliver = deliver;
	if (hub != NULL)
		server->recent_sub = notify_subscribe(hub, 0, 0, imap_recent_event, server);
	server->store = store;
	server->auth = auth;
	server->hub = hub;
	server->max_errors = (unsigned)config_get_int(config, "imap.max_errors");
	server->append_max = (uint64_t)config_get_int(config, "smtp.max_message_size");
	server->conn_params = (struct netconn_params){
	    .proto = "imap",
	    .ops = &imap_netconn_ops,
	    .idle_timeout.tv_sec = config_get_int(config, "imap.idle_timeout"),
	    .write_low = IMAP_FETCH_LOW,
	    .plaintext = netconn_plaintext_parse(config_get(config, "auth.allow_plaintext")),
	    .limit_counts_crlf = true,
	    .too_long_reply = "* BYE Line too long",
	    .timeout_reply = "* BYE Autologout; idle for too long",
	};
	netconn_params_deadlines(&server->conn_params, config);
	return server;
}

void
imap_server_free(struct imap_server **serverp)
{
	struct imap_server *server = *serverp;
	struct imap_session *s;

	if (server == NULL)
		return;
	while ((s = netconn_list_first(&server->conns)) != NULL) {
		log_warnx("imap session=%s event=leaked-at-exit", s->conn.id);
		imap_session_free(s);
	}
	notify_unsubscribe(&server->recent_sub);
	imap_recent_free(server);
	free(server);
	*serverp = NULL;
}

/* Sessions between commands say goodbye now; one waiting for the store or streaming a FETCH
 * finishes first, and its next step says it (imap_session_step). */
static bool
imap_session_bye(void *arg)
{
	struct imap_session *s = arg;

	if (s->state == IMAP_STATE_WAIT || s->state == IMAP_STATE_FETCH ||
	    s->state == IMAP_STATE_CLOSING)
		return false;
	imap_reply(s, "* BYE [UNAVAILABLE] Server shutting down");
	return true;
}

void
imap_server_shutdown(struct imap_server *server)
{
	server->shutting_down = true;
	netconn_list_shutdown(&server->conns, imap_session_bye);
}

void
imap_server_close_all(struct imap_server *server)
{
	netconn_list_destroy(&server->conns, "shutdown-timeout");
}

unsigned
imap_server_session_count(const struct imap_server *server)
{
	return server->conns.count;
}
