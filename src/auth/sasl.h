/* sasl: the PLAIN (RFC 4616) and LOGIN mechanisms' byte formats and the server side of their
 * exchange, shared by SMTP (RFC 4954), POP3 (RFC 5034) and IMAP (RFC 3501 AUTHENTICATE). */
#ifndef TERN_SASL_H
#define TERN_SASL_H

#include <stddef.h>

#include "lib/saslfmt.h"

/* Splits a decoded PLAIN message "authzid\0authcid\0passwd". Each field must be valid UTF-8 without
 * NULs and fit SASL_FIELD_MAX; authcid and passwd must be non-empty. Returns 0 or -1. */
int sasl_plain_parse(const char *msg, size_t len, char authzid[SASL_FIELD_MAX + 1],
                     char authcid[SASL_FIELD_MAX + 1], char passwd[SASL_FIELD_MAX + 1]);

/* ---- the server side of a SASL exchange ----
 *
 * Protocol-independent: the session frames the lines (its own challenge prefix, "334 " or "+ ",
 * and its own line-length cap), keeps its own states and replies, and maps each result below to
 * them. The exchange only decodes, parses and checks the client's responses.
 *
 *   struct sasl_server sasl = {0};          (zeroed = idle; no _new/_free, it holds no pointers)
 *   r = sasl_server_start(&sasl, "PLAIN", ir_or_NULL, &step);
 *   while (r == SASL_CHALLENGE) { send prefix + step.challenge; read line;
 *                                 r = sasl_server_step(&sasl, line, &step); }
 *   SASL_CREDENTIALS: auth_verify(step.login, step.password), then sasl_server_reset(&sasl).
 *
 * Secrets: every decoded buffer is wiped before a call returns. The login and password of
 * SASL_CREDENTIALS (and LOGIN's user name between its two steps) live inside struct sasl_server
 * until sasl_server_reset(), which wipes them; a session calls it when it frees or forgets its
 * state too. After SASL_ABORTED and SASL_ERROR the server has already been reset. */

/* Longest base64 response decoded: three PLAIN fields, their two NULs, and slack. Longer
 * responses fail with SASL_ERROR_DECODE (the session's line cap usually comes first). */
#define SASL_DECODED_MAX (3 * SASL_FIELD_MAX + 7)

enum sasl_result {
	SASL_CHALLENGE,   /* send step.challenge after the protocol's prefix; wait for a line */
	SASL_CREDENTIALS, /* step.login / step.password are ready for auth_verify */
	SASL_ABORTED,     /* the client sent "*" (RFC 4954 4, RFC 5034 4, RFC 3501 6.2.2) */
	SASL_ERROR,       /* step.error / step.reason say why; the exchange is over */
};

enum sasl_error {
	SASL_ERROR_NONE = 0,
	SASL_ERROR_MECHANISM,   /* not PLAIN or LOGIN (sasl_server_start only) */
	SASL_ERROR_DECODE,      /* not base64, or decodes to more than SASL_DECODED_MAX bytes */
	SASL_ERROR_PLAIN,       /* not a valid PLAIN message (sasl_plain_parse refused it) */
	SASL_ERROR_LOGIN,       /* a LOGIN response with a NUL or over SASL_FIELD_MAX bytes */
	SASL_ERROR_EMPTY_LOGIN, /* LOGIN's user name is empty */
	SASL_ERROR_AUTHZID,     /* PLAIN authzid given and not the authcid (case-insensitive) */
	SASL_ERROR_STATE,       /* sasl_server_step without an exchange in progress (a bug) */
};

enum sasl_mech { SASL_MECH_NONE = 0, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

/* Only sasl.c looks inside; it is public so that sessions can embed it. */
struct sasl_server {
	enum sasl_mech mech; /* SASL_MECH_NONE: idle */
	int stage;           /* LOGIN: 0 waits for the user name, 1 for the password */
	char login[SASL_FIELD_MAX + 1];
	char password[SASL_FIELD_MAX + 1];
};

/* What one call produced. The pointers stay valid until the next call on the same server or
 * sasl_server_reset(); challenge and reason are static strings. */
struct sasl_step {
	const char *challenge; /* SASL_CHALLENGE: base64 text, "" for an empty challenge */
	const char *login;     /* SASL_CREDENTIALS: the authentication identity */
	const char *password;  /* SASL_CREDENTIALS: may be "" for LOGIN */
	enum sasl_error error; /* SASL_ERROR */
	const char *reason;    /* SASL_ERROR: lower-case text for a reply, e.g. "cannot decode
	                        * response" */
};

/* Starts an exchange with mechanism mech (case-insensitive). initial_response is the client's
 * initial response (RFC 4954 "=" for empty) or NULL when it sent none; it is handled as
 * sasl_server_step would. Resets srv first. Returns the result, with step_r filled. */
enum sasl_result sasl_server_start(struct sasl_server *srv, const char *mech,
                                   const char *initial_response, struct sasl_step *step_r);
/* Handles one response line (CRLF removed, NUL-terminated): "*" aborts, anything else must be
 * base64. Returns the result, with step_r filled. */
enum sasl_result sasl_server_step(struct sasl_server *srv, const char *line,
                                  struct sasl_step *step_r);
/* Wipes the credentials and returns srv to idle. Safe on an idle or zeroed server. */
void sasl_server_reset(struct sasl_server *srv);

#endif
