/* compose: builds the bytes of an outgoing message with GMime 3, and the SMTP envelope that goes
 * with it.
 *
 * A composed message has From (display name and address, RFC 2047 encoded when non-ASCII),
 * To, Cc, Subject (RFC 2047), Date (now), Message-ID (@ the sender's domain) and MIME-Version.
 * The body is text/plain, text/html, or both as multipart/alternative (UTF-8; quoted-printable
 * unless plain ASCII with short lines); with attachments the whole is multipart/mixed and each
 * file is base64 with a Content-Type from its extension and an RFC 2231 file name. Bcc
 * addresses go only into the envelope, never into a header. Output uses CRLF line endings. */
#ifndef TERN_COMPOSE_H
#define TERN_COMPOSE_H

#include <stddef.h>
#include <stdint.h>

struct compose_request {
	const char *from_address; /* required */
	const char *from_name;    /* display name, NULL or "" for none */
	/* Each entry is an address list ("a@b", "Name <a@b>, c@d"), parsed with GMime. */
	const char *const *to;
	size_t nto;
	const char *const *cc;
	size_t ncc;
	const char *const *bcc;
	size_t nbcc;
	const char *subject; /* UTF-8; NULL for none */
	const char *text;    /* UTF-8 body or NULL; LF or CRLF line endings */
	size_t text_len;
	const char *html; /* UTF-8 HTML body or NULL */
	size_t html_len;
	const char *const *attachments; /* file paths */
	size_t nattachments;
	int64_t date; /* seconds since the epoch; 0 means now */
};

struct compose_message {
	char *data; /* the message, CRLF line endings, NUL-terminated after len */
	size_t len;
	char *sender; /* envelope MAIL FROM address */
	char **rcpts; /* envelope RCPT TO addresses (To, Cc, Bcc), without duplicates */
	size_t nrcpts;
	char *message_id; /* without angle brackets; NULL when the message has none */
};

/* Builds a message. Returns 0 with *msg_r set (free with compose_message_free), or -1 with
 * error ("cannot read /x.pdf: No such file or directory", "bad address in --to: ...",
 * "the text body is not valid UTF-8", "no recipients"). */
int compose_build(const struct compose_request *request, struct compose_message **msg_r,
                  char *error, size_t errsize);

/* Takes a complete message as sendmail -t does: the recipients are the addresses in its To,
 * Cc and Bcc headers plus extra_to (address lists), the Bcc header is removed, and every other
 * byte is kept as it is, except that a bare LF becomes CRLF (as it would on the wire).
 * sender is the envelope MAIL FROM. Returns 0 with *msg_r set, or -1 with error ("no
 * recipients: the message has no To, Cc or Bcc header and no --to was given"). */
int compose_raw(const char *data, size_t len, const char *sender, const char *const *extra_to,
                size_t nextra, struct compose_message **msg_r, char *error, size_t errsize);

void compose_message_free(struct compose_message **msg);

/* The Content-Type for a file name from its extension ("application/pdf"), or
 * "application/octet-stream". */
const char *compose_content_type(const char *filename);

#endif
