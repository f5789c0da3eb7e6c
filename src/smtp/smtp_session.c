/* smtp_session: the SMTP server state machine on a libevent bufferevent. */
#include "smtp/smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "deliver/deliver.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "net/netconn.h"
#include "smtp/smtp_parser.h"

#define SMTP_AUTH_LINE_MAX 4096	    /* RFC 4954 4: SASL lines may exceed 512 octets */
#define SMTP_CHUNK 16384

enum smtp_state {
	SMTP_STATE_INIT = 0, /* greeted; waiting for EHLO/HELO */
	SMTP_STATE_READY,    /* EHLO done, no transaction */
	SMTP_STATE_MAIL,     /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,     /* at least one recipient accepted */
	SMTP_STATE_DATA,     /* reading message data after 354 */
	SMTP_STATE_BDAT,     /* reading a BDAT chunk */
	SMTP_STATE_AUTH,     /* waiting for a SASL response line */
	SMTP_STATE_WAIT,     /* a password check or a commit is running */
	SMTP_STATE_CLOSING,  /* last reply queued; close once it is written */
};

static const char *const smtp_state_names[] = {
	"init", "ready", "mail", "rcpt", "data", "bdat", "auth", "wait", "closing",
};

static const char *const smtp_role_names[] = {"smtp", "submission", "submissions"};

struct smtp_server;

/* The listener argument: which server and role a connection belongs to. */
struct smtp_role_arg {
	struct smtp_server *server;
	enum smtp_role role;
};

struct smtp_server {
	struct event_base *base;
	struct deliver *deliver;
	struct auth *auth;
	char *hostname;
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned max_errors;
	struct netconn_params conn_params;
	char *timeout_reply;
	struct smtp_role_arg roles[SMTP_ROLE_COUNT];
	struct netconn_list conns; /* every live session, for shutdown */
	bool shutting_down;
};

struct smtp_rcpt {
	char *address;
	int64_t account_id; /* 0: outbound queue */
};

/* One mail transaction: RSET and the end of DATA free it whole. */
struct smtp_tx {
	char *mail_from;
	struct smtp_mail_params params;
	struct smtp_rcpt *rcpts;
	size_t nrcpts;
	struct deliver_tx *dtx;	/* the message being written, from DATA/BDAT on */
	struct smtp_data_decoder dec;
	char id[32];		/* the deliver transaction's id, for logs */
	bool oversize;
	bool write_failed;
	bool bdat;		/* CHUNKING in use: DATA is no longer allowed */
	uint64_t bdat_size;	/* bytes received through BDAT */
	uint64_t bdat_left;	/* bytes of the current chunk still to read */
	bool bdat_last;
	bool bdat_failed;	/* a chunk was refused: read the rest and reply 5xx */
};

struct smtp_session {
	struct smtp_server *server;
	enum smtp_role role;
	struct netconn conn; /* id, peer, tls, dead */
	enum smtp_state state;
	bool esmtp;
	char *helo;
	int64_t account_id; /* 0: not logged in */
	char *account;	    /* primary address when logged in */
	unsigned errors;
	struct smtp_tx *tx;
	struct sasl_server sasl; /* the AUTH exchange; holds secrets until reset */
	struct auth_request *auth_req;
	bool commit_pending; /* the session may only be freed by the commit callback */
};

/* --- replies, states and transactions --- */

#define smtp_reply(s, ...) netconn_reply(&(s)->conn, __VA_ARGS__)

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == state)
		return;
	log_debug("smtp session=%s event=state from=%s to=%s", s->conn.id,
		  smtp_state_names[s->state], smtp_state_names[state]);
	s->state = state;
	netconn_set_busy(&s->conn, state == SMTP_STATE_WAIT);
}

static void
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

/* Ends the transaction and returns to the ready state (or closes during shutdown). */
static void
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

/* Counts a protocol error; past smtp.max_errors the client is told goodbye. */
static void
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

/* A path for the log, as one value: <address> quoted and escaped when it needs to be. */
static const char *
smtp_esc_path(char *buf, size_t size, const char *address)
{
	char path[SMTP_LINE_MAX + 3];

	snprintf(path, sizeof(path), "<%s>", address);
	return log_str(buf, size, path);
}

/* --- session lifetime --- */

static void
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
smtp_cmd_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_path path;
	struct smtp_mail_params params;
	struct smtp_reply err;
	char esc[600];

	if (s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		smtp_error(s);
		return;
	}
	if (s->role != SMTP_ROLE_MX && s->account_id == 0) {
		smtp_reply(s, "530 5.7.0 Authentication required");
		smtp_error(s);
		return;
	}
	if (smtp_parse_mail(cmd->args, &path, &params, &err) < 0) {
		smtp_reply(s, "%d %s %s", err.code, err.status, err.text);
		smtp_error(s);
		return;
	}
	if (params.size_given && params.size > s->server->max_message_size) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	if (s->account_id != 0 &&
	    (path.null_path || !deliver_sender_allowed(s->server->deliver, s->account_id,
						       path.address))) {
		log_info("smtp session=%s event=mail-from from=%s result=not-owned account=%s",
			 s->conn.id, smtp_esc_path(esc, sizeof(esc), path.address), s->account);
		smtp_reply(s, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
			   path.address, s->account);
		smtp_error(s);
		return;
	}
	s->tx = xcalloc(1, sizeof(*s->tx));
	s->tx->mail_from = xstrdup(path.null_path ? "" : path.address);
	s->tx->params = params;
	smtp_enter_state(s, SMTP_STATE_MAIL);
	log_info("smtp session=%s event=mail-from from=%s result=ok", s->conn.id,
		 smtp_esc_path(esc, sizeof(esc), s->tx->mail_from));
	smtp_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_path path;
	struct smtp_reply err;
	struct smtp_tx *tx = s->tx;
	int64_t account_id = 0;
	enum deliver_rcpt verdict;
	char esc[600];

	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		smtp_error(s);
		return;
	}
	if (tx->nrcpts >= s->server->max_recipients) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (smtp_parse_rcpt(cmd->args, &path, &err) < 0) {
		smtp_reply(s, "%d %s %s", err.code, err.status, err.text);
		smtp_error(s);
		return;
	}
	smtp_esc_path(esc, sizeof(esc), path.address);
	verdict = deliver_check_rcpt(s->server->deliver, path.address, s->account_id != 0,
				     &account_id);
	switch (verdict) {
	case DELIVER_RCPT_UNKNOWN_USER:
		log_info("smtp session=%s event=rcpt-to to=%s result=unknown-user", s->conn.id,
			 esc);
		smtp_reply(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
			   path.address);
		smtp_error(s);
		return;
	case DELIVER_RCPT_RELAY_DENIED:
		log_info("smtp session=%s event=rcpt-to to=%s result=relay-denied", s->conn.id,
			 esc);
		smtp_reply(s, "550 5.7.1 <%s>: Relay access denied", path.address);
		smtp_error(s);
		return;
	case DELIVER_RCPT_TEMPFAIL:
		smtp_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", path.address);
		return;
	case DELIVER_RCPT_LOCAL:
	case DELIVER_RCPT_REMOTE:
		break;
	}
	/* The same mailbox named twice (or through an alias) gets one copy. */
	for (size_t i = 0; i < tx->nrcpts; i++) {
		bool same = account_id != 0 ? tx->rcpts[i].account_id == account_id
					    : strcasecmp(tx->rcpts[i].address, path.address) == 0;
		if (same) {
			smtp_reply(s, "250 2.1.5 Ok");
			return;
		}
	}
	tx->rcpts = xrealloc(tx->rcpts, (tx->nrcpts + 1) * sizeof(*tx->rcpts));
	tx->rcpts[tx->nrcpts].address = xstrdup(path.address);
	tx->rcpts[tx->nrcpts].account_id = account_id;
	tx->nrcpts++;
	smtp_enter_state(s, SMTP_STATE_RCPT);
	log_info("smtp session=%s event=rcpt-to to=%s result=ok target=%s", s->conn.id, esc,
		 account_id != 0 ? "local" : "queue");
	smtp_reply(s, "250 2.1.5 Ok");
}

/* Opens the message file with its trace headers; false when that fails. */
static bool
smtp_tx_open(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	const char *rcpts[1];
	char tls_info[128], error[256];
	const char *proto;
	struct deliver_origin origin;
	SSL *ssl = s->conn.tls ? bufferevent_openssl_get_ssl(s->conn.bev) : NULL;

	if (ssl != NULL)
		snprintf(tls_info, sizeof(tls_info), "%s with cipher %s", SSL_get_version(ssl),
			 SSL_get_cipher_name(ssl));
	/* RFC 3848 protocol names. */
	if (!s->esmtp)
		proto = "SMTP";
	else if (s->conn.tls)
		proto = s->account_id != 0 ? "ESMTPSA" : "ESMTPS";
	else
		proto = s->account_id != 0 ? "ESMTPA" : "ESMTP";
	origin = (struct deliver_origin){
		.helo = s->helo,
		.client_ip = s->conn.peer.ip,
		.protocol = proto,
		.tls_info = ssl != NULL ? tls_info : NULL,
		.authenticated_as = s->account,
	};
	rcpts[0] = tx->rcpts[0].address;
	tx->dtx = deliver_tx_begin(s->server->deliver, tx->mail_from, &origin, rcpts, tx->nrcpts,
				   error, sizeof(error));
	if (tx->dtx == NULL) {
		log_warnx("smtp session=%s event=tx-open-failed error=\"%s\"", s->conn.id, error);
		return false;
	}
	return true;
}

static void
smtp_cmd_data(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (s->state == SMTP_STATE_MAIL) {
		smtp_reply(s, "554 5.5.1 Error: no valid recipients");
		smtp_error(s);
		return;
	}
	if (s->state != SMTP_STATE_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need RCPT command");
		smtp_error(s);
		return;
	}
	if (s->tx->bdat) {
		smtp_reply(s, "503 5.5.1 Error: DATA after BDAT");
		smtp_error(s);
		return;
	}
	if (cmd->args[0] != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		smtp_error(s);
		return;
	}
	if (!smtp_tx_open(s)) {
		smtp_reply(s, "451 4.3.0 Error: local error in processing");
		return;
	}
	smtp_data_init(&s->tx->dec);
	smtp_enter_state(s, SMTP_STATE_DATA);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_commit_done(bool ok, const char *error, void *arg)
{
	struct smtp_session *s = arg;
	uint64_t size;

	s->commit_pending = false;
	if (s->conn.dead) {
		smtp_session_free(s);
		return;
	}
	size = s->tx->bdat ? s->tx->bdat_size : s->tx->dec.size;
	if (ok) {
		log_info("smtp session=%s event=queued id=%s size=%llu rcpts=%zu", s->conn.id,
			 s->tx->id, (unsigned long long)size, s->tx->nrcpts);
		smtp_reply(s, "250 2.0.0 Ok: %llu octets queued", (unsigned long long)size);
	} else {
		smtp_reply(s, "451 4.3.0 Error: could not store the message, try again later");
	}
	smtp_tx_reset(s);
	netconn_run(&s->conn);
}

/* The whole message is in: refuse it, or commit it and wait for stable storage. */
static void
smtp_tx_finish(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct store_target *targets;
	const char *refusal;

	if (tx->oversize) {
		smtp_reply(s, "552 5.3.4 Error: message file too big");
		smtp_tx_reset(s);
		return;
	}
	if (tx->write_failed || tx->dtx == NULL) {
		smtp_reply(s, "451 4.3.0 Error: local error in processing");
		smtp_tx_reset(s);
		return;
	}
	if (!tx->bdat && (tx->dec.bare_cr || tx->dec.bare_lf)) {
		log_info("smtp session=%s event=data-refused reason=bare-%s", s->conn.id,
			 tx->dec.bare_lf ? "lf" : "cr");
		smtp_reply(s, "550 5.5.2 Error: bare <%s> received; lines must end with CRLF",
			   tx->dec.bare_lf ? "LF" : "CR");
		smtp_tx_reset(s);
		return;
	}
	if ((refusal = deliver_tx_refusal(s->server->deliver, tx->dtx)) != NULL) {
		log_info("smtp session=%s event=data-refused reason=deliver reply=\"%.3s\"",
			 s->conn.id, refusal);
		smtp_reply(s, "%s", refusal);
		smtp_tx_reset(s);
		return;
	}
	targets = xcalloc(tx->nrcpts, sizeof(*targets));
	for (size_t i = 0; i < tx->nrcpts; i++) {
		targets[i].account_id = tx->rcpts[i].account_id;
		targets[i].mailbox = tx->rcpts[i].account_id != 0 ? "INBOX" : NULL;
		targets[i].rcpt = tx->rcpts[i].address;
	}
	str_copy(tx->id, deliver_tx_id(tx->dtx), sizeof(tx->id));
	smtp_enter_state(s, SMTP_STATE_WAIT);
	s->commit_pending = true;
	deliver_tx_commit(s->server->deliver, &tx->dtx, targets, tx->nrcpts, s->account_id,
			  smtp_commit_done, s);
	free(targets);
}

/* Writes decoded message bytes, tracking the size limit. */
static void
smtp_tx_append(struct smtp_session *s, const char *data, size_t len, uint64_t total)
{
	struct smtp_tx *tx = s->tx;

	if (tx->oversize || tx->write_failed || len == 0)
		return;
	if (total > s->server->max_message_size) {
		tx->oversize = true;
		deliver_tx_abort(&tx->dtx);
		return;
	}
	if (deliver_tx_write(tx->dtx, data, len) < 0) {
		log_warn("smtp session=%s event=write-failed", s->conn.id);
		tx->write_failed = true;
		deliver_tx_abort(&tx->dtx);
	}
}

/* Feeds buffered input to the DATA decoder. Returns true when the end was reached. */
static bool
smtp_data_consume(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->conn.bev);
	static char out[SMTP_CHUNK + 2];

	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec vec;
		size_t n, used, outlen;
		bool end = false;

		if (evbuffer_peek(in, SMTP_CHUNK, NULL, &vec, 1) < 1)
			break;
		n = vec.iov_len < SMTP_CHUNK ? vec.iov_len : SMTP_CHUNK;
		used = smtp_data_feed(&s->tx->dec, vec.iov_base, n, out, &outlen, &end);
		smtp_tx_append(s, out, outlen, s->tx->dec.size);
		evbuffer_drain(in, used);
		if (end)
			return true;
	}
	return false;
}

static void
smtp_cmd_bdat(struct smtp_session *s, const struct smtp_command *cmd)
{
	char *end;
	unsigned long long size;
	bool last = false;
	const char *p = cmd->args;

	/* RFC 3030: "BDAT" SP chunk-size [ SP end-marker ]. */
	if (*p < '0' || *p > '9') {
		smtp_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		smtp_error(s);
		netconn_close(&s->conn, "bad-bdat");
		return;
	}
	size = strtoull(p, &end, 10);
	if (*end == ' ' && strcasecmp(end + 1, "LAST") == 0)
		last = true;
	else if (*end != '\0' || end - p > 19) {
		/* Without a size we cannot find the next command: hang up. */
		smtp_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		netconn_close(&s->conn, "bad-bdat");
		return;
	}
	if (size > s->server->max_message_size) {
		/* Reading that much only to throw it away helps nobody. */
		smtp_reply(s, "552 5.3.4 Error: message file too big");
		netconn_close(&s->conn, "bdat-too-big");
		return;
	}
	if (s->state != SMTP_STATE_RCPT) {
		/* The chunk still has to be read and thrown away. */
		if (s->tx == NULL)
			s->tx = xcalloc(1, sizeof(*s->tx));
		s->tx->bdat_failed = true;
	} else if (!s->tx->bdat) {
		s->tx->bdat = true;
		if (!smtp_tx_open(s))
			s->tx->write_failed = true; /* answered with 451 after the last chunk */
	}
	s->tx->bdat_left = size;
	s->tx->bdat_last = last;
	smtp_enter_state(s, SMTP_STATE_BDAT);
}

/* Reads the current BDAT chunk; true when it is complete (and answered). */
static bool
smtp_bdat_consume(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->conn.bev);
	struct smtp_tx *tx = s->tx;

	while (tx->bdat_left > 0 && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec vec;
		size_t n;

		if (evbuffer_peek(in, SMTP_CHUNK, NULL, &vec, 1) < 1)
			break;
		n = vec.iov_len < SMTP_CHUNK ? vec.iov_len : SMTP_CHUNK;
		if (n > tx->bdat_left)
			n = (size_t)tx->bdat_left;
		if (!tx->bdat_failed) {
			tx->bdat_size += n;
			smtp_tx_append(s, vec.iov_base, n, tx->bdat_size);
		}
		evbuffer_drain(in, n);
		tx->bdat_left -= n;
	}
	if (tx->bdat_left > 0)
		return false;
	if (tx->bdat_failed) {
		bool had_mail = tx->mail_from != NULL;
		smtp_reply(s, "503 5.5.1 Error: %s", had_mail ? "need RCPT command"
							      : "need MAIL command");
		smtp_error(s);
		if (had_mail) {
			tx->bdat_failed = false;
			smtp_enter_state(s, tx->nrcpts > 0 ? SMTP_STATE_RCPT : SMTP_STATE_MAIL);
		} else {
			smtp_tx_free(&s->tx);
			smtp_enter_state(s, s->helo != NULL ? SMTP_STATE_READY : SMTP_STATE_INIT);
		}
		return true;
	}
	if (tx->bdat_last) {
		smtp_tx_finish(s);
		return true;
	}
	smtp_enter_state(s, SMTP_STATE_RCPT);
	if (tx->oversize) {
		/* Keep the state so the client's remaining chunks are read, then refuse. */
		smtp_reply(s, "552 5.3.4 Error: message file too big");
		smtp_tx_reset(s);
		return true;
	}
	smtp_reply(s, "250 2.0.0 Ok: %llu octets received", (unsigned long long)tx->bdat_size);
	return true;
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

static void
smtp_cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd)
{
	size_t discarded;
	bool ok;

	if (s->conn.tls) {
		smtp_reply(s, "554 5.5.1 Error: TLS already active");
		smtp_error(s);
		return;
	}
	if (cmd->args[0] != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
		smtp_error(s);
		return;
	}
	if (listener_get_ssl_ctx() == NULL) {
		smtp_reply(s, "454 4.7.0 TLS not available due to local problem");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	/* CVE-2011-0411: whatever the client pipelined after STARTTLS was sent in the clear and
	 * is discarded by listener_starttls, never executed inside TLS. */
	ok = netconn_starttls(&s->conn, &discarded);
	if (discarded > 0)
		log_info("smtp session=%s event=starttls-injection discarded=%zu", s->conn.id,
			 discarded);
	if (!ok) {
		netconn_close(&s->conn, "tls-setup-failed");
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS: EHLO, the transaction, a SASL
	 * exchange, and a login made in the clear (the client must AUTH again inside TLS). */
	smtp_tx_free(&s->tx);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	sasl_server_reset(&s->sasl);
	if (s->account_id != 0)
		log_info("smtp session=%s event=starttls-forget-auth account=%s", s->conn.id,
			 s->account);
	s->account_id = 0;
	free(s->account);
	s->account = NULL;
	smtp_enter_state(s, SMTP_STATE_INIT);
}

static void
smtp_auth_done(enum auth_result result, int64_t account_id, const char *address, void *arg)
{
	struct smtp_session *s = arg;

	s->auth_req = NULL;
	smtp_enter_state(s, SMTP_STATE_READY);
	switch (result) {
	case AUTH_OK:
		s->account_id = account_id;
		free(s->account);
		s->account = xstrdup(address);
		log_info("smtp session=%s event=auth result=ok account=%s", s->conn.id, address);
		netconn_set_authenticated(&s->conn);
		smtp_reply(s, "235 2.7.0 Authentication successful");
		break;
	case AUTH_FAILED:
		log_info("smtp session=%s event=auth result=failed ip=%s", s->conn.id,
			 s->conn.peer.ip);
		smtp_reply(s, "535 5.7.8 Error: authentication failed");
		smtp_error(s);
		break;
	case AUTH_LOCKED:
		log_warnx("smtp session=%s event=auth result=locked ip=%s", s->conn.id,
			  s->conn.peer.ip);
		smtp_reply(s, "454 4.7.0 Error: too many failed authentication attempts, try "
			      "again later");
		smtp_error(s);
		break;
	case AUTH_TEMPFAIL:
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	}
	netconn_run(&s->conn);
}

/* Starts the password check for decoded credentials. */
static void
smtp_auth_check(struct smtp_session *s, const char *login, const char *password)
{
	smtp_enter_state(s, SMTP_STATE_WAIT);
	s->auth_req =
	    auth_verify(s->server->auth, s->conn.peer.ip, login, password, smtp_auth_done, s);
}

static void
smtp_auth_bad(struct smtp_session *s, const char *why)
{
	sasl_server_reset(&s->sasl);
	smtp_enter_state(s, SMTP_STATE_READY);
	smtp_reply(s, "501 5.5.2 Error: %s", why);
	smtp_error(s);
}

/* Maps one result of the SASL exchange (src/auth/sasl.h) to SMTP's states and replies. */
static void
smtp_auth_next(struct smtp_session *s, enum sasl_result r, const struct sasl_step *step)
{
	switch (r) {
	case SASL_CHALLENGE:
		smtp_enter_state(s, SMTP_STATE_AUTH);
		smtp_reply(s, "334 %s", step->challenge);
		return;
	case SASL_CREDENTIALS:
		smtp_auth_check(s, step->login, step->password);
		sasl_server_reset(&s->sasl);
		return;
	case SASL_ABORTED:
		smtp_enter_state(s, SMTP_STATE_READY);
		smtp_reply(s, "501 5.7.0 Authentication aborted");
		return;
	case SASL_ERROR:
		break;
	}
	switch (step->error) {
	case SASL_ERROR_MECHANISM:
		smtp_reply(s, "504 5.5.4 Error: unsupported authentication mechanism");
		smtp_error(s);
		return;
	case SASL_ERROR_AUTHZID:
		smtp_enter_state(s, SMTP_STATE_READY);
		smtp_reply(s, "535 5.7.8 Error: authorization identity not permitted");
		smtp_error(s);
		return;
	default:
		smtp_auth_bad(s, step->reason);
		return;
	}
}

static void
smtp_cmd_auth(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct sasl_step step;
	enum sasl_result r;
	char mech[16];
	const char *ir;
	size_t mlen;

	if (!netconn_plaintext_ok(&s->conn)) {
		smtp_reply(s, "538 5.7.11 Encryption required for requested authentication "
			      "mechanism");
		smtp_error(s);
		return;
	}
	if (s->account_id != 0) {
		smtp_reply(s, "503 5.5.1 Error: already authenticated");
		smtp_error(s);
		return;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_reply(s, "503 5.5.1 Error: %s", s->state == SMTP_STATE_INIT
							 ? "send EHLO first"
							 : "MAIL transaction in progress");
		smtp_error(s);
		return;
	}
	mlen = strcspn(cmd->args, " ");
	ir = cmd->args[mlen] == ' ' ? cmd->args + mlen + 1 : NULL;
	if (mlen == 0 || mlen >= sizeof(mech)) {
		smtp_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		smtp_error(s);
		return;
	}
	memcpy(mech, cmd->args, mlen);
	mech[mlen] = '\0';
	r = sasl_server_start(&s->sasl, mech, ir, &step);
	smtp_auth_next(s, r, &step);
}

typedef void smtp_cmd_fn(struct smtp_session *s, const struct smtp_command *cmd);

/* Which commands are allowed before EHLO; the rest check their own states. */
struct smtp_cmd_entry {
	enum smtp_verb verb;
	bool before_helo;
	smtp_cmd_fn *fn;
};

static const struct smtp_cmd_entry smtp_commands[] = {
	{SMTP_VERB_HELO, true, smtp_cmd_helo},	   {SMTP_VERB_EHLO, true, smtp_cmd_helo},
	{SMTP_VERB_MAIL, false, smtp_cmd_mail},	   {SMTP_VERB_RCPT, false, smtp_cmd_rcpt},
	{SMTP_VERB_DATA, false, smtp_cmd_data},	   {SMTP_VERB_BDAT, true, smtp_cmd_bdat},
	{SMTP_VERB_RSET, true, smtp_cmd_rset},	   {SMTP_VERB_NOOP, true, smtp_cmd_noop},
	{SMTP_VERB_QUIT, true, smtp_cmd_quit},	   {SMTP_VERB_VRFY, true, smtp_cmd_vrfy},
	{SMTP_VERB_EXPN, true, smtp_cmd_expn},	   {SMTP_VERB_HELP, true, smtp_cmd_help},
	{SMTP_VERB_STARTTLS, true, smtp_cmd_starttls}, {SMTP_VERB_AUTH, false, smtp_cmd_auth},
};

/* Handles one complete command line (CRLF removed). */
static void
smtp_session_line(struct smtp_session *s, char *line, size_t len)
{
	struct smtp_command cmd;
	struct sasl_step step;
	char esc[128];

	if (s->state == SMTP_STATE_AUTH) {
		if (len > SMTP_AUTH_LINE_MAX) {
			smtp_auth_bad(s, "response too long");
			return;
		}
		smtp_auth_next(s, sasl_server_step(&s->sasl, line, &step), &step);
		sodium_memzero(line, len);
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
		if (!e->before_helo && s->state == SMTP_STATE_INIT) {
			smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
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
