/* smtp_private: what the SMTP session's files share (smtp_session.c: the connection, the
 * command table and the server; smtp_tx.c: one mail transaction, MAIL to the commit; smtp_auth.c:
 * STARTTLS and AUTH). Nothing outside src/smtp includes it. */
#ifndef TERN_SMTP_PRIVATE_H
#define TERN_SMTP_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "net/netconn.h"
#include "smtp/smtp_parser.h"
#include "smtp/smtp_session.h"

#define SMTP_AUTH_LINE_MAX 4096 /* RFC 4954 4: SASL lines may exceed 512 octets */
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
	SMTP_STATE_COUNT,
};

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
	struct deliver_tx *dtx; /* the message being written, from DATA/BDAT on */
	struct smtp_data_decoder dec;
	char id[32]; /* the deliver transaction's id, for logs */
	bool oversize;
	bool write_failed;
	bool bdat;          /* CHUNKING in use: DATA is no longer allowed */
	uint64_t bdat_size; /* bytes received through BDAT */
	uint64_t bdat_left; /* bytes of the current chunk still to read */
	bool bdat_last;
	bool bdat_failed; /* a chunk was refused: read the rest and reply 5xx */
};

struct smtp_session {
	struct smtp_server *server;
	enum smtp_role role;
	struct netconn conn; /* id, peer, tls, dead */
	enum smtp_state state;
	bool esmtp;
	char *helo;
	int64_t account_id; /* 0: not logged in */
	char *account;      /* primary address when logged in */
	unsigned errors;
	struct smtp_tx *tx;
	struct sasl_server sasl; /* the AUTH exchange; holds secrets until reset */
	struct auth_request *auth_req;
	bool commit_pending; /* the session may only be freed by the commit callback */
};

#define smtp_reply(s, ...) netconn_reply(&(s)->conn, __VA_ARGS__)

/* smtp_session.c */
void smtp_enter_state(struct smtp_session *s, enum smtp_state state);
void smtp_tx_free(struct smtp_tx **txp);
/* Ends the transaction and returns to the ready state (or closes during shutdown). */
void smtp_tx_reset(struct smtp_session *s);
/* Counts a protocol error; past smtp.max_errors the client is told goodbye. */
void smtp_error(struct smtp_session *s);
/* A path for the log, as one value: <address> quoted and escaped when it needs to be. */
const char *smtp_esc_path(char *buf, size_t size, const char *address);
void smtp_session_free(struct smtp_session *s);

/* smtp_tx.c: the transaction's commands; each runs only in the states the command table allows. */
void smtp_cmd_mail(struct smtp_session *s, const struct smtp_command *cmd);
void smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd);
void smtp_cmd_data(struct smtp_session *s, const struct smtp_command *cmd);
void smtp_cmd_bdat(struct smtp_session *s, const struct smtp_command *cmd);
/* DATA state: feeds buffered input to the decoder; true when the end was reached. */
bool smtp_data_consume(struct smtp_session *s);
/* BDAT state: reads the current chunk; true when it is complete (and answered). */
bool smtp_bdat_consume(struct smtp_session *s);
/* The whole message is in: refuse it, or commit it and wait for stable storage. */
void smtp_tx_finish(struct smtp_session *s);

/* smtp_auth.c */
void smtp_cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd);
void smtp_cmd_auth(struct smtp_session *s, const struct smtp_command *cmd);
/* AUTH state: one SASL response line. */
void smtp_auth_line(struct smtp_session *s, char *line, size_t len);

#endif
