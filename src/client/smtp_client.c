/* smtp_client: the submission side of SMTP on a blocking conn. Replies are parsed strictly
 * (one code per reply, "-" continuations, a cap on lines); every reply is checked, and errors
 * quote the server's text, escaped. */
#include "client/smtp_client.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/saslfmt.h"
#include "client/client_private.h"
#include "lib/util.h"

#define SMTP_CLIENT_MAX_REPLY_LINES 1000
#define SMTP_CLIENT_MAX_PATH 256
#define SMTP_CLIENT_OUTBUF 65536

struct smtp_client {
	struct conn *conn;
	char helo[256];
	bool broken; /* an I/O error or a half-finished exchange: only close is safe */
	/* EHLO capabilities */
	bool pipelining, starttls, eightbitmime, has_size, auth_plain, auth_login, auth_any;
	uint64_t size_max;
	/* The last reply: its code and its text, escaped for quoting. */
	int code;
	char reply[CLIENT_QUOTE_MAX + 4];
};

/* Records one EHLO keyword line ("SIZE 1000", "AUTH PLAIN LOGIN", "AUTH=LOGIN"). */
static void
smtp_client_capability(struct smtp_client *c, const char *text)
{
	char word[32];
	size_t n = 0;
	const char *p = text;

	while (*p != '\0' && *p != ' ' && *p != '=' && n + 1 < sizeof(word))
		word[n++] = (char)toupper((unsigned char)*p++);
	word[n] = '\0';
	if (strcmp(word, "PIPELINING") == 0) {
		c->pipelining = true;
	} else if (strcmp(word, "STARTTLS") == 0) {
		c->starttls = true;
	} else if (strcmp(word, "8BITMIME") == 0) {
		c->eightbitmime = true;
	} else if (strcmp(word, "SIZE") == 0) {
		c->has_size = true;
		c->size_max = *p == ' ' ? strtoull(p + 1, NULL, 10) : 0;
	} else if (strcmp(word, "AUTH") == 0) {
		c->auth_any = true;
		while (*p == ' ' || *p == '=') {
			const char *m = ++p;

			while (*p != '\0' && *p != ' ')
				p++;
			if ((size_t)(p - m) == 5 && strncasecmp(m, "PLAIN", 5) == 0)
				c->auth_plain = true;
			else if ((size_t)(p - m) == 5 && strncasecmp(m, "LOGIN", 5) == 0)
				c->auth_login = true;
		}
	}
}

/* Reads one reply, maybe multi-line; returns its code or -1 on I/O error or a malformed reply.
 * With ehlo set, the lines after the first are read as capabilities. */
static int
smtp_client_reply(struct smtp_client *c, bool ehlo, char *error, size_t errsize)
{
	char raw[CLIENT_QUOTE_MAX + 1];
	size_t rawlen = 0;
	int code = 0;

	c->reply[0] = '\0';
	for (unsigned nlines = 0;; nlines++) {
		const char *line;
		size_t len;
		char q[CLIENT_QUOTE_MAX];

		if (nlines == SMTP_CLIENT_MAX_REPLY_LINES) {
			snprintf(error, errsize, "reply from %s has more than %d lines",
			         conn_peer(c->conn), SMTP_CLIENT_MAX_REPLY_LINES);
			goto broken;
		}
		if (conn_read_line(c->conn, &line, &len, error, errsize) < 0)
			goto broken;
		bool digits = len >= 3 && line[0] >= '2' && line[0] <= '5' &&
		              isdigit((unsigned char)line[1]) && isdigit((unsigned char)line[2]);
		char sep = len > 3 ? line[3] : ' ';
		if (!digits || (sep != ' ' && sep != '-')) {
			snprintf(error, errsize, "malformed reply from %s: \"%s\"",
			         conn_peer(c->conn), client_quote(q, sizeof(q), line, len));
			goto broken;
		}
		int this = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (nlines > 0 && this != code) {
			snprintf(error, errsize,
			         "malformed reply from %s: code %d changed to %d midway: \"%s\"",
			         conn_peer(c->conn), code, this,
			         client_quote(q, sizeof(q), line, len));
			goto broken;
		}
		code = this;
		/* Keep the first line whole and the text of the others, joined by " / ". */
		const char *text = nlines == 0 ? line : line + 4;
		size_t tlen = nlines == 0 ? len : (len > 4 ? len - 4 : 0);
		if (nlines > 0 && rawlen + 3 < sizeof(raw)) {
			memcpy(raw + rawlen, " / ", 3);
			rawlen += 3;
		}
		size_t room = sizeof(raw) - rawlen;
		memcpy(raw + rawlen, text, tlen < room ? tlen : room);
		rawlen += tlen < room ? tlen : room;
		if (ehlo && nlines > 0 && len > 4)
			smtp_client_capability(c, line + 4);
		if (sep == ' ')
			break;
	}
	client_quote(c->reply, sizeof(c->reply), raw, rawlen);
	c->code = code;
	return code;
broken:
	c->broken = true;
	return -1;
}

/* Sends a command line and reads its reply: 1 if the code is want, 0 if another code (error
 * says "what: <reply>"), -1 on I/O failure. */
static int
smtp_client_command(struct smtp_client *c, int want, const char *what, char *error, size_t errsize,
                    const char *line)
{
	int code;

	if (conn_printf(c->conn, error, errsize, "%s\r\n", line) != 0) {
		c->broken = true;
		return -1;
	}
	code = smtp_client_reply(c, false, error, errsize);
	if (code < 0)
		return -1;
	if (code != want) {
		snprintf(error, errsize, "%s: %s", what, c->reply);
		return 0;
	}
	return 1;
}

/* EHLO, with HELO as the fallback for a server that does not know EHLO. */
static int
smtp_client_ehlo(struct smtp_client *c, char *error, size_t errsize)
{
	char line[300];
	int code;

	c->pipelining = c->starttls = c->eightbitmime = c->has_size = false;
	c->auth_plain = c->auth_login = c->auth_any = false;
	c->size_max = 0;
	snprintf(line, sizeof(line), "EHLO %s\r\n", c->helo);
	if (conn_write(c->conn, line, strlen(line), error, errsize) != 0) {
		c->broken = true;
		return -1;
	}
	code = smtp_client_reply(c, true, error, errsize);
	if (code < 0)
		return -1;
	if (code == 250)
		return 0;
	if (code == 500 || code == 502) {
		snprintf(line, sizeof(line), "HELO %s", c->helo);
		if (smtp_client_command(c, 250, "HELO refused", error, errsize, line) == 1)
			return 0;
		return -1;
	}
	snprintf(error, errsize, "EHLO refused: %s", c->reply);
	return -1;
}

/* AUTH PLAIN with an initial response, or LOGIN's two challenges. */
static int
smtp_client_auth(struct smtp_client *c, const char *user, const char *password, char *error,
                 size_t errsize)
{
	char b64[4 * SASL_FIELD_MAX], line[4 * SASL_FIELD_MAX + 16];
	size_t ulen = strlen(user), plen = password != NULL ? strlen(password) : 0;
	int r;

	if (ulen == 0 || ulen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX) {
		snprintf(error, errsize, "user name or password empty or too long for AUTH");
		return -1;
	}
	if (!c->auth_any) {
		snprintf(error, errsize, "%s does not offer AUTH (a user name was given)",
		         conn_peer(c->conn));
		return -1;
	}
	if (c->auth_plain) {
		sasl_plain_encode(user, password, b64, sizeof(b64));
		snprintf(line, sizeof(line), "AUTH PLAIN %s", b64);
		r = smtp_client_command(c, 235, "server refused login", error, errsize, line);
		explicit_bzero(line, sizeof(line));
		explicit_bzero(b64, sizeof(b64));
		return r == 1 ? 0 : -1;
	}
	if (!c->auth_login) {
		snprintf(error, errsize, "%s offers no AUTH mechanism tern supports (PLAIN, LOGIN)",
		         conn_peer(c->conn));
		return -1;
	}
	if (smtp_client_command(c, 334, "server refused AUTH LOGIN", error, errsize,
	                        "AUTH LOGIN") != 1)
		return -1;
	base64_encode(user, ulen, b64, sizeof(b64));
	if (smtp_client_command(c, 334, "server refused login", error, errsize, b64) != 1)
		return -1;
	base64_encode(password, plen, b64, sizeof(b64));
	r = smtp_client_command(c, 235, "server refused login", error, errsize,
	                        plen > 0 ? b64 : "=");
	explicit_bzero(b64, sizeof(b64));
	return r == 1 ? 0 : -1;
}

/* Our EHLO name: the option, else the host name when it is a plain domain, else "localhost". */
static void
smtp_client_helo_name(struct smtp_client *c, const char *helo)
{
	char host[256] = "";

	if (helo == NULL && gethostname(host, sizeof(host) - 1) == 0)
		helo = host;
	if (helo == NULL || helo[0] == '\0' || strlen(helo) >= sizeof(c->helo) ||
	    strspn(helo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:") !=
	        strlen(helo))
		helo = "localhost";
	str_copy(c->helo, helo, sizeof(c->helo));
}

/* The session on a connected conn (owned from here on): greeting, EHLO, STARTTLS, AUTH. */
static int
smtp_client_start(struct conn *conn, const struct smtp_client_options *options,
                  struct smtp_client **client_r, char *error, size_t errsize)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	int code;

	c->conn = conn;
	smtp_client_helo_name(c, options->helo);
	code = smtp_client_reply(c, false, error, errsize);
	if (code < 0) {
		client_error_prefix(error, errsize, "reading the SMTP greeting");
		goto fail;
	}
	if (code != 220) {
		snprintf(error, errsize, "%s refused the session: %s", conn_peer(c->conn),
		         c->reply);
		goto fail;
	}
	if (smtp_client_ehlo(c, error, errsize) != 0)
		goto fail;
	if (options->conn.security == CONN_SECURITY_STARTTLS) {
		if (!c->starttls) {
			snprintf(error, errsize, "%s does not offer STARTTLS", conn_peer(c->conn));
			goto fail;
		}
		if (smtp_client_command(c, 220, "STARTTLS refused", error, errsize, "STARTTLS") !=
		        1 ||
		    conn_starttls(c->conn, error, errsize) != 0) {
			c->broken = true;
			goto fail;
		}
		if (smtp_client_ehlo(c, error, errsize) != 0)
			goto fail;
	}
	if (options->user != NULL &&
	    smtp_client_auth(c, options->user, options->password, error, errsize) != 0)
		goto fail;
	*client_r = c;
	return 0;
fail:
	smtp_client_close(&c);
	return -1;
}

int
smtp_client_open(const struct smtp_client_options *options, struct smtp_client **client_r,
                 char *error, size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_open(&options->conn, &conn, error, errsize) != 0)
		return -1;
	return smtp_client_start(conn, options, client_r, error, errsize);
}

int
smtp_client_open_fd(int fd, const struct smtp_client_options *options,
                    struct smtp_client **client_r, char *error, size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_from_fd(fd, &options->conn, &conn, error, errsize) != 0)
		return -1;
	return smtp_client_start(conn, options, client_r, error, errsize);
}

/* An address we can put between angle brackets without changing the command: printable, no
 * brackets, no line breaks. */
static bool
smtp_client_path_ok(const char *addr)
{
	size_t len = strlen(addr);

	if (len > SMTP_CLIENT_MAX_PATH)
		return false;
	for (const char *p = addr; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

/* The size the server will count (RFC 1870: CRLF line ends, no stuffing dots), and whether the
 * data holds 8-bit bytes. */
static uint64_t
smtp_client_wire_size(const char *data, size_t len, bool *eightbit_r)
{
	uint64_t size = len;
	bool eightbit = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)data[i];

		if (ch >= 0x80)
			eightbit = true;
		else if (ch == '\n' && (i == 0 || data[i - 1] != '\r'))
			size++;
		else if (ch == '\r' && (i + 1 == len || data[i + 1] != '\n'))
			size++;
	}
	if (len > 0 && data[len - 1] != '\n' && data[len - 1] != '\r')
		size += 2;
	*eightbit_r = eightbit;
	return size;
}

/* Streams the message body: bare LF and bare CR become CRLF, lines starting with '.' get one
 * more, and the data ends with CRLF "." CRLF. */
static int
smtp_client_write_data(struct smtp_client *c, const char *data, size_t len, char *error,
                       size_t errsize)
{
	char *out = xmalloc(SMTP_CLIENT_OUTBUF);
	size_t o = 0;
	bool bol = true;
	int ret = 0;

	for (size_t i = 0; i < len && ret == 0; i++) {
		char ch = data[i];

		if (ch == '\r' || ch == '\n') {
			if (ch == '\r' && i + 1 < len && data[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			bol = true;
		} else {
			if (bol && ch == '.')
				out[o++] = '.';
			out[o++] = ch;
			bol = false;
		}
		if (o + 8 > SMTP_CLIENT_OUTBUF) {
			ret = conn_write(c->conn, out, o, error, errsize);
			o = 0;
		}
	}
	if (ret == 0) {
		if (!bol) {
			memcpy(out + o, "\r\n", 2);
			o += 2;
		}
		memcpy(out + o, ".\r\n", 3);
		ret = conn_write(c->conn, out, o + 3, error, errsize);
	}
	free(out);
	if (ret != 0)
		c->broken = true;
	return ret;
}

/* Reads the replies to a pipelined MAIL, RCPTs and DATA in order; returns the DATA code, or -1
 * on I/O error, with the first refusal in error and *refused_r set. */
static int
smtp_client_pipelined_replies(struct smtp_client *c, const char *from, const char *const *rcpts,
                              size_t nrcpts, bool *refused_r, char *error, size_t errsize)
{
	int code;

	*refused_r = false;
	for (size_t i = 0;; i++) {
		char local[512];

		code = smtp_client_reply(c, false, local, sizeof(local));
		if (code < 0) {
			str_copy(error, local, errsize);
			return -1;
		}
		if (i == nrcpts + 1)
			return code;
		if (*refused_r || code == 250 || (i > 0 && code == 251))
			continue;
		*refused_r = true;
		if (i == 0)
			snprintf(error, errsize, "sender <%s> refused: %s", from, c->reply);
		else
			snprintf(error, errsize, "recipient <%s> refused: %s", rcpts[i - 1],
			         c->reply);
	}
}

int
smtp_client_send(struct smtp_client *c, const char *from, const char *const *rcpts, size_t nrcpts,
                 const char *data, size_t len, char *error, size_t errsize)
{
	char mail[SMTP_CLIENT_MAX_PATH + 64], line[SMTP_CLIENT_MAX_PATH + 16];
	bool eightbit, refused = false;
	uint64_t size;
	int code;

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	if (nrcpts == 0) {
		snprintf(error, errsize, "no recipients");
		return -1;
	}
	if (!smtp_client_path_ok(from)) {
		snprintf(error, errsize, "invalid sender address");
		return -1;
	}
	for (size_t i = 0; i < nrcpts; i++) {
		if (!smtp_client_path_ok(rcpts[i]) || rcpts[i][0] == '\0') {
			snprintf(error, errsize, "invalid recipient address");
			return -1;
		}
	}
	size = smtp_client_wire_size(data, len, &eightbit);
	if (c->has_size && c->size_max > 0 && size > c->size_max) {
		snprintf(error, errsize,
		         "message of %" PRIu64 " bytes exceeds %s's limit of %" PRIu64 " bytes",
		         size, conn_peer(c->conn), c->size_max);
		return -1;
	}
	snprintf(mail, sizeof(mail), "MAIL FROM:<%s>", from);
	if (c->has_size)
		snprintf(mail + strlen(mail), sizeof(mail) - strlen(mail), " SIZE=%" PRIu64, size);
	if (eightbit && c->eightbitmime)
		snprintf(mail + strlen(mail), sizeof(mail) - strlen(mail), " BODY=8BITMIME");

	if (c->pipelining) {
		/* One write for MAIL, every RCPT and DATA (RFC 2920), then the replies in order. */
		size_t cap = strlen(mail) + 16 + nrcpts * (SMTP_CLIENT_MAX_PATH + 16), o = 0;
		char *batch = xmalloc(cap);

		o += (size_t)snprintf(batch + o, cap - o, "%s\r\n", mail);
		for (size_t i = 0; i < nrcpts; i++)
			o += (size_t)snprintf(batch + o, cap - o, "RCPT TO:<%s>\r\n", rcpts[i]);
		o += (size_t)snprintf(batch + o, cap - o, "DATA\r\n");
		int w = conn_write(c->conn, batch, o, error, errsize);
		free(batch);
		if (w != 0) {
			c->broken = true;
			return -1;
		}
		code =
		    smtp_client_pipelined_replies(c, from, rcpts, nrcpts, &refused, error, errsize);
		if (code < 0)
			return -1;
		if (refused && code == 354) {
			/* The server wants the data anyway; an empty message would be delivered to
			 * the accepted recipients, so drop the connection instead. */
			c->broken = true;
			return -1;
		}
		if (!refused && code != 354) {
			snprintf(error, errsize, "DATA refused: %s", c->reply);
			refused = true;
		}
	} else {
		int r = smtp_client_command(c, 250, "sender refused", error, errsize, mail);

		if (r == 0)
			snprintf(error, errsize, "sender <%s> refused: %s", from, c->reply);

		for (size_t i = 0; r == 1 && i < nrcpts; i++) {
			snprintf(line, sizeof(line), "RCPT TO:<%s>", rcpts[i]);
			r = smtp_client_command(c, 250, "recipient refused", error, errsize, line);
			if (r == 0 && c->code == 251)
				r = 1;
			else if (r == 0)
				snprintf(error, errsize, "recipient <%s> refused: %s", rcpts[i],
				         c->reply);
		}
		if (r == 1)
			r = smtp_client_command(c, 354, "DATA refused", error, errsize, "DATA");
		if (r < 0)
			return -1;
		refused = r == 0;
	}
	if (refused) {
		char ignored[256];

		if (smtp_client_command(c, 250, "RSET", ignored, sizeof(ignored), "RSET") < 0)
			c->broken = true;
		return -1;
	}
	if (smtp_client_write_data(c, data, len, error, errsize) != 0)
		return -1;
	code = smtp_client_reply(c, false, error, errsize);
	if (code < 0)
		return -1;
	if (code != 250) {
		snprintf(error, errsize, "message refused: %s", c->reply);
		return -1;
	}
	return 0;
}

void
smtp_client_close(struct smtp_client **clientp)
{
	struct smtp_client *c = *clientp;

	if (c == NULL)
		return;
	if (c->conn != NULL && !c->broken) {
		char ignored[256];

		smtp_client_command(c, 221, "QUIT", ignored, sizeof(ignored), "QUIT");
	}
	conn_close(&c->conn);
	free(c);
	*clientp = NULL;
}
