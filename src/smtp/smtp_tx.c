/* smtp_tx: one mail transaction (RFC 5321 3.3): MAIL, RCPT, DATA or BDAT chunks (RFC 3030), the
 * message written through the deliver service as it arrives, and the commit whose durability the
 * 250 reports. The command table in smtp_session.c calls these only in the states that allow them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "deliver/deliver.h"
#include "lib/log.h"
#include "lib/util.h"
#include "smtp/smtp_private.h"

void
smtp_cmd_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_path path;
	struct smtp_mail_params params;
	struct smtp_reply err;
	char esc[600];

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
	    (path.null_path ||
	     !deliver_sender_allowed(s->server->deliver, s->account_id, path.address))) {
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

void
smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_path path;
	struct smtp_reply err;
	struct smtp_tx *tx = s->tx;
	int64_t account_id = 0;
	enum deliver_rcpt verdict;
	char esc[600];

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
	verdict =
	    deliver_check_rcpt(s->server->deliver, path.address, s->account_id != 0, &account_id);
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

void
smtp_cmd_data(struct smtp_session *s, const struct smtp_command *cmd)
{
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

void
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

bool
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

void
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

bool
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
		smtp_reply(s, "503 5.5.1 Error: %s",
		           had_mail ? "need RCPT command" : "need MAIL command");
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
