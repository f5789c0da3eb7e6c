/* smtp_auth: STARTTLS (RFC 3207) and AUTH (RFC 4954) for an SMTP session: the TLS upgrade and the
 * SASL exchange through the shared SASL server (src/auth/sasl.h), the password check through the
 * auth service, and SMTP's replies for each outcome. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/log.h"
#include "lib/util.h"
#include "net/listener.h"
#include "smtp/smtp_private.h"

void
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

void
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

void
smtp_auth_line(struct smtp_session *s, char *line, size_t len)
{
	struct sasl_step step;

	if (len > SMTP_AUTH_LINE_MAX) {
		smtp_auth_bad(s, "response too long");
		return;
	}
	smtp_auth_next(s, sasl_server_step(&s->sasl, line, &step), &step);
	sodium_memzero(line, len);
}
