/* sasl: the PLAIN message format (RFC 4616) and the server side of the PLAIN and LOGIN exchanges;
 * base64 is in lib/saslfmt.c. */
#include "auth/sasl.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

/* Checks for well-formed UTF-8 (RFC 3629): no overlong forms, surrogates or values past
 * U+10FFFF, and no NUL. */
static bool
sasl_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Copies one PLAIN field after checking its size and encoding. */
static int
sasl_plain_field(const char *src, size_t len, char dst[SASL_FIELD_MAX + 1])
{
	if (len > SASL_FIELD_MAX || !sasl_utf8_valid((const unsigned char *)src, len))
		return -1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

/* Splits at the first two NULs; a third one ends up in passwd, where the UTF-8 check refuses it. */
int
sasl_plain_parse(const char *msg, size_t len, char authzid[SASL_FIELD_MAX + 1],
                 char authcid[SASL_FIELD_MAX + 1], char passwd[SASL_FIELD_MAX + 1])
{
	const char *nul1, *nul2, *end = msg + len;
	size_t zlen, clen, plen;

	authzid[0] = authcid[0] = passwd[0] = '\0';
	if (len == 0)
		return -1;
	nul1 = memchr(msg, '\0', len);
	if (nul1 == NULL)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - (nul1 + 1)));
	if (nul2 == NULL)
		return -1;
	zlen = (size_t)(nul1 - msg);
	clen = (size_t)(nul2 - (nul1 + 1));
	plen = (size_t)(end - (nul2 + 1));
	if (clen == 0 || plen == 0)
		return -1;
	if (sasl_plain_field(msg, zlen, authzid) < 0 ||
	    sasl_plain_field(nul1 + 1, clen, authcid) < 0 ||
	    sasl_plain_field(nul2 + 1, plen, passwd) < 0) {
		authzid[0] = authcid[0] = passwd[0] = '\0';
		return -1;
	}
	return 0;
}

/* ---- the server side of an exchange ---- */

/* LOGIN's challenges, base64 of "Username:" and "Password:" as clients expect them. */
#define SASL_LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define SASL_LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

void
sasl_server_reset(struct sasl_server *srv)
{
	sodium_memzero(srv, sizeof(*srv));
	srv->mech = SASL_MECH_NONE;
}

static enum sasl_result
sasl_server_challenge(struct sasl_step *step_r, const char *challenge)
{
	step_r->challenge = challenge;
	return SASL_CHALLENGE;
}

/* Ends the exchange with an error; the server is reset. */
static enum sasl_result
sasl_server_fail(struct sasl_server *srv, struct sasl_step *step_r, enum sasl_error error,
                 const char *reason)
{
	sasl_server_reset(srv);
	step_r->error = error;
	step_r->reason = reason;
	return SASL_ERROR;
}

static enum sasl_result
sasl_server_credentials(struct sasl_server *srv, struct sasl_step *step_r)
{
	srv->mech = SASL_MECH_NONE;
	step_r->login = srv->login;
	step_r->password = srv->password;
	return SASL_CREDENTIALS;
}

/* PLAIN: one message with everything; an authzid other than the authcid is refused, since
 * nobody may act for another account. */
static enum sasl_result
sasl_server_plain(struct sasl_server *srv, const char *decoded, size_t len,
                  struct sasl_step *step_r)
{
	char authzid[SASL_FIELD_MAX + 1];
	int r = sasl_plain_parse(decoded, len, authzid, srv->login, srv->password);
	bool other = authzid[0] != '\0' && strcasecmp(authzid, srv->login) != 0;

	sodium_memzero(authzid, sizeof(authzid));
	if (r < 0)
		return sasl_server_fail(srv, step_r, SASL_ERROR_PLAIN, "malformed PLAIN response");
	if (other)
		return sasl_server_fail(srv, step_r, SASL_ERROR_AUTHZID,
		                        "authorization identity not permitted");
	return sasl_server_credentials(srv, step_r);
}

/* LOGIN: the user name, then the password, each a response of its own. */
static enum sasl_result
sasl_server_login(struct sasl_server *srv, const char *decoded, size_t len,
                  struct sasl_step *step_r)
{
	if (memchr(decoded, '\0', len) != NULL || len > SASL_FIELD_MAX)
		return sasl_server_fail(srv, step_r, SASL_ERROR_LOGIN, "malformed LOGIN response");
	if (srv->stage == 0) {
		if (len == 0)
			return sasl_server_fail(srv, step_r, SASL_ERROR_EMPTY_LOGIN,
			                        "empty user name");
		memcpy(srv->login, decoded, len + 1);
		srv->stage = 1;
		return sasl_server_challenge(step_r, SASL_LOGIN_PASS_CHALLENGE);
	}
	/* An empty password is passed on: the password check refuses it, not the parser. */
	memcpy(srv->password, decoded, len + 1);
	return sasl_server_credentials(srv, step_r);
}

/* Decodes one response and hands it to the mechanism; the decoded copy is always wiped. */
enum sasl_result
sasl_server_step(struct sasl_server *srv, const char *line, struct sasl_step *step_r)
{
	char decoded[SASL_DECODED_MAX + 1];
	enum sasl_result r;
	long len;

	memset(step_r, 0, sizeof(*step_r));
	if (srv->mech == SASL_MECH_NONE)
		return sasl_server_fail(srv, step_r, SASL_ERROR_STATE, "no exchange in progress");
	if (strcmp(line, "*") == 0) {
		sasl_server_reset(srv);
		return SASL_ABORTED;
	}
	len = base64_decode(line, strlen(line), decoded, sizeof(decoded));
	if (len < 0)
		return sasl_server_fail(srv, step_r, SASL_ERROR_DECODE, "cannot decode response");
	if (srv->mech == SASL_MECH_PLAIN)
		r = sasl_server_plain(srv, decoded, (size_t)len, step_r);
	else
		r = sasl_server_login(srv, decoded, (size_t)len, step_r);
	sodium_memzero(decoded, sizeof(decoded));
	return r;
}

/* Picks the mechanism, then either answers the initial response or sends the first challenge. */
enum sasl_result
sasl_server_start(struct sasl_server *srv, const char *mech, const char *initial_response,
                  struct sasl_step *step_r)
{
	sasl_server_reset(srv);
	memset(step_r, 0, sizeof(*step_r));
	if (strcasecmp(mech, "PLAIN") == 0)
		srv->mech = SASL_MECH_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0)
		srv->mech = SASL_MECH_LOGIN;
	else
		return sasl_server_fail(srv, step_r, SASL_ERROR_MECHANISM,
		                        "unsupported authentication mechanism");
	if (initial_response != NULL)
		return sasl_server_step(srv, initial_response, step_r);
	/* RFC 4616 sends an empty challenge for PLAIN; LOGIN asks for the user name. */
	return sasl_server_challenge(step_r,
	                             srv->mech == SASL_MECH_PLAIN ? "" : SASL_LOGIN_USER_CHALLENGE);
}
