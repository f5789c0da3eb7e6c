/* pop3_client: the client side of POP3 on a blocking conn. Multi-line responses end only at a
 * "." line (a closed connection before it is a truncated response) and are dot-unstuffed; RETR
 * streams into a file descriptor so a message is never held in memory whole. */
#include "client/pop3_client.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/saslfmt.h"
#include "client/client_private.h"
#include "lib/util.h"

#define POP3_CLIENT_MAX_CAPA_LINES 1000
#define POP3_CLIENT_MAX_MESSAGES 1000000
#define POP3_CLIENT_OUTBUF 65536

struct pop3_client {
	struct conn *conn;
	bool broken; /* mid-response or after an I/O error: only abort is safe */
	bool capa_ok, stls, uidl, user, sasl_plain;
	char reply[CLIENT_QUOTE_MAX + 4]; /* the last status line, escaped */
};

/* Reads a status line: 1 for +OK, 0 for -ERR (both kept in c->reply), -1 on I/O error or a
 * line that is neither. */
static int
pop3_client_status(struct pop3_client *c, char *error, size_t errsize)
{
	const char *line;
	size_t len;
	int ok;

	if (conn_read_line(c->conn, &line, &len, error, errsize) < 0) {
		c->broken = true;
		return -1;
	}
	client_quote(c->reply, sizeof(c->reply), line, len);
	if (strncmp(line, "+OK", 3) == 0 && (len == 3 || line[3] == ' '))
		ok = 1;
	else if (strncmp(line, "-ERR", 4) == 0 && (len == 4 || line[4] == ' '))
		ok = 0;
	else {
		snprintf(error, errsize, "malformed response from %s: \"%s\"", conn_peer(c->conn),
		         c->reply);
		c->broken = true;
		return -1;
	}
	return ok;
}

/* Sends a command and reads its status: 1 on +OK, 0 on -ERR (error is "what: -ERR ..."), -1 on
 * I/O failure. */
static int
pop3_client_command(struct pop3_client *c, const char *what, char *error, size_t errsize,
                    const char *line)
{
	int r;

	if (conn_printf(c->conn, error, errsize, "%s\r\n", line) != 0) {
		c->broken = true;
		return -1;
	}
	r = pop3_client_status(c, error, errsize);
	if (r == 0)
		snprintf(error, errsize, "%s: %s", what, c->reply);
	return r;
}

/* Reads one line of a multi-line response: 1 with the unstuffed line, 0 at the "." end, -1 on
 * error (a connection closed before the end is a truncated response). */
static int
pop3_client_data_line(struct pop3_client *c, const char *what, const char **line_r, size_t *len_r,
                      char *error, size_t errsize)
{
	const char *line;
	size_t len;

	if (conn_read_line(c->conn, &line, &len, error, errsize) < 0) {
		client_error_prefix(error, errsize, "truncated response to %s", what);
		c->broken = true;
		return -1;
	}
	if (len > 0 && line[0] == '.') {
		if (len == 1)
			return 0;
		line++;
		len--;
	}
	*line_r = line;
	*len_r = len;
	return 1;
}

/* CAPA: records STLS, UIDL, USER and SASL PLAIN; a -ERR means an old server, assumed to know
 * USER and UIDL (UIDL is still checked when it is used). */
static int
pop3_client_capa(struct pop3_client *c, char *error, size_t errsize)
{
	const char *line;
	size_t len;
	int r;

	c->stls = c->uidl = c->user = c->sasl_plain = false;
	r = pop3_client_command(c, "CAPA", error, errsize, "CAPA");
	if (r < 0)
		return -1;
	c->capa_ok = r == 1;
	if (r == 0) {
		c->uidl = c->user = true;
		return 0;
	}
	for (unsigned n = 0;
	     (r = pop3_client_data_line(c, "CAPA", &line, &len, error, errsize)) > 0; n++) {
		if (n == POP3_CLIENT_MAX_CAPA_LINES) {
			snprintf(error, errsize, "CAPA response from %s is too long",
			         conn_peer(c->conn));
			c->broken = true;
			return -1;
		}
		if (strcasecmp(line, "STLS") == 0)
			c->stls = true;
		else if (strcasecmp(line, "UIDL") == 0)
			c->uidl = true;
		else if (strcasecmp(line, "USER") == 0)
			c->user = true;
		else if (str_skip_prefix_ci(line, "SASL ") != NULL) {
			for (const char *p = line + 5; *p != '\0';) {
				size_t wl = strcspn(p, " ");

				if (wl == 5 && strncasecmp(p, "PLAIN", 5) == 0)
					c->sasl_plain = true;
				p += wl + (p[wl] == ' ');
			}
		}
	}
	return r;
}

/* AUTH PLAIN with an initial response (RFC 5034) or USER/PASS. */
static int
pop3_client_login(struct pop3_client *c, const char *user, const char *password, char *error,
                  size_t errsize)
{
	char b64[4 * SASL_FIELD_MAX], line[4 * SASL_FIELD_MAX + 16];
	size_t ulen = strlen(user), plen = password != NULL ? strlen(password) : 0;
	int r;

	if (ulen == 0 || ulen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX ||
	    strpbrk(user, "\r\n") != NULL || (plen > 0 && strpbrk(password, "\r\n") != NULL)) {
		snprintf(error, errsize,
		         "user name or password empty, too long or with a line break");
		return -1;
	}
	if (c->sasl_plain) {
		sasl_plain_encode(user, password, b64, sizeof(b64));
		snprintf(line, sizeof(line), "AUTH PLAIN %s", b64);
		r = pop3_client_command(c, "server refused login", error, errsize, line);
		explicit_bzero(line, sizeof(line));
		explicit_bzero(b64, sizeof(b64));
		return r == 1 ? 0 : -1;
	}
	snprintf(line, sizeof(line), "USER %s", user);
	if (pop3_client_command(c, "server refused user name", error, errsize, line) != 1)
		return -1;
	snprintf(line, sizeof(line), "PASS %s", plen > 0 ? password : "");
	r = pop3_client_command(c, "server refused login", error, errsize, line);
	explicit_bzero(line, sizeof(line));
	return r == 1 ? 0 : -1;
}

/* The session on a connected conn (owned from here on): greeting, CAPA, STLS, login. */
static int
pop3_client_start(struct conn *conn, const struct conn_options *options, const char *user,
                  const char *password, struct pop3_client **client_r, char *error, size_t errsize)
{
	struct pop3_client *c = xcalloc(1, sizeof(*c));
	int r;

	c->conn = conn;
	r = pop3_client_status(c, error, errsize);
	if (r < 0) {
		client_error_prefix(error, errsize, "reading the POP3 greeting");
		goto fail;
	}
	if (r == 0) {
		snprintf(error, errsize, "%s refused the session: %s", conn_peer(c->conn),
		         c->reply);
		goto fail;
	}
	if (pop3_client_capa(c, error, errsize) < 0)
		goto fail;
	if (options->security == CONN_SECURITY_STARTTLS) {
		/* Without CAPA we cannot know; try STLS and let the server answer. */
		if (c->capa_ok && !c->stls) {
			snprintf(error, errsize, "%s does not offer STLS", conn_peer(c->conn));
			goto fail;
		}
		if (pop3_client_command(c, "STLS refused", error, errsize, "STLS") != 1 ||
		    conn_starttls(c->conn, error, errsize) != 0) {
			c->broken = true;
			goto fail;
		}
		if (pop3_client_capa(c, error, errsize) < 0)
			goto fail;
	}
	if (user != NULL && pop3_client_login(c, user, password, error, errsize) != 0)
		goto fail;
	*client_r = c;
	return 0;
fail:
	pop3_client_abort(&c);
	return -1;
}

int
pop3_client_open(const struct conn_options *options, const char *user, const char *password,
                 struct pop3_client **client_r, char *error, size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_open(options, &conn, error, errsize) != 0)
		return -1;
	return pop3_client_start(conn, options, user, password, client_r, error, errsize);
}

int
pop3_client_open_fd(int fd, const struct conn_options *options, const char *user,
                    const char *password, struct pop3_client **client_r, char *error,
                    size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_from_fd(fd, options, &conn, error, errsize) != 0)
		return -1;
	return pop3_client_start(conn, options, user, password, client_r, error, errsize);
}

static int
pop3_client_entry_cmp(const void *a, const void *b)
{
	const struct pop3_client_entry *x = a, *y = b;

	return x->number < y->number ? -1 : x->number > y->number;
}

/* Reads the "n value" lines of UIDL (uidl set) or LIST into a growing array. */
static int
pop3_client_scan(struct pop3_client *c, bool uidl, struct pop3_client_entry **v, size_t *n,
                 char *error, size_t errsize)
{
	const char *what = uidl ? "UIDL" : "LIST", *line;
	size_t len, cap = 0;
	int r;

	*v = NULL;
	*n = 0;
	while ((r = pop3_client_data_line(c, what, &line, &len, error, errsize)) > 0) {
		struct pop3_client_entry e = {0};
		char *end, q[CLIENT_QUOTE_MAX];
		unsigned long num;

		errno = 0;
		num = strtoul(line, &end, 10);
		bool ok = errno == 0 && end != line && num > 0 && num <= UINT32_MAX && *end == ' ';
		if (ok && uidl) {
			const char *u = end + 1;
			size_t ul = strlen(u);
			ok = ul >= 1 && ul <= 70;
			for (size_t i = 0; ok && i < ul; i++)
				ok = u[i] >= 0x21 && u[i] <= 0x7e;
			if (ok)
				memcpy(e.uidl, u, ul + 1);
		} else if (ok) {
			const char *s = end + 1;
			errno = 0;
			e.size = strtoull(s, &end, 10);
			ok = errno == 0 && end != s && isdigit((unsigned char)*s) &&
			     (*end == '\0' || *end == ' ');
		}
		if (!ok) {
			snprintf(error, errsize, "malformed %s line from %s: \"%s\"", what,
			         conn_peer(c->conn), client_quote(q, sizeof(q), line, len));
			break;
		}
		if (*n == POP3_CLIENT_MAX_MESSAGES) {
			snprintf(error, errsize, "%s lists more than %d messages",
			         conn_peer(c->conn), POP3_CLIENT_MAX_MESSAGES);
			break;
		}
		if (*n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			*v = xrealloc(*v, cap * sizeof(**v));
		}
		e.number = (unsigned)num;
		(*v)[(*n)++] = e;
	}
	if (r > 0)
		c->broken = true; /* stopped mid-response */
	if (r != 0) {
		free(*v);
		*v = NULL;
		return -1;
	}
	if (*n > 0) /* *v is NULL for an empty list, and qsort's base must not be */
		qsort(*v, *n, sizeof(**v), pop3_client_entry_cmp);
	return 0;
}

int
pop3_client_list(struct pop3_client *c, struct pop3_client_entry **entries_r, size_t *n_r,
                 char *error, size_t errsize)
{
	struct pop3_client_entry *uids, *sizes;
	size_t nuids, nsizes, j = 0;
	int r;

	*entries_r = NULL;
	*n_r = 0;
	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	r = pop3_client_command(c, "server does not support UIDL", error, errsize, "UIDL");
	if (r != 1 || pop3_client_scan(c, true, &uids, &nuids, error, errsize) != 0)
		return -1;
	r = pop3_client_command(c, "LIST refused", error, errsize, "LIST");
	if (r != 1 || pop3_client_scan(c, false, &sizes, &nsizes, error, errsize) != 0) {
		free(uids);
		return -1;
	}
	/* Both are sorted by number: a merge join; a message missing from LIST keeps size 0. */
	for (size_t i = 0; i < nuids; i++) {
		while (j < nsizes && sizes[j].number < uids[i].number)
			j++;
		if (j < nsizes && sizes[j].number == uids[i].number)
			uids[i].size = sizes[j].size;
	}
	free(sizes);
	*entries_r = uids;
	*n_r = nuids;
	return 0;
}

/* RETR n or TOP n 0 (top set): the multi-line answer into fd, as pop3_client_retr says. */
static int
pop3_client_message(struct pop3_client *c, unsigned number, bool top, int fd, uint64_t max_size,
                    char *error, size_t errsize)
{
	char cmd[32], *out;
	const char *line;
	size_t len, o = 0;
	uint64_t total = 0;
	int r;

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	if (top)
		snprintf(cmd, sizeof(cmd), "TOP %u 0", number);
	else
		snprintf(cmd, sizeof(cmd), "RETR %u", number);
	r = pop3_client_command(c, top ? "TOP refused" : "RETR refused", error, errsize, cmd);
	if (r != 1)
		return -1;
	out = xmalloc(POP3_CLIENT_OUTBUF);
	while ((r = pop3_client_data_line(c, cmd, &line, &len, error, errsize)) > 0) {
		total += len + 2;
		if (total > max_size) {
			snprintf(error, errsize,
			         "message %u from %s is larger than the limit of %" PRIu64 " bytes",
			         number, conn_peer(c->conn), max_size);
			break;
		}
		/* Lines longer than the buffer go straight out; the rest are gathered. */
		if (o + len + 2 > POP3_CLIENT_OUTBUF) {
			if (write_full(fd, out, o) != 0)
				goto write_error;
			o = 0;
		}
		if (len + 2 > POP3_CLIENT_OUTBUF) {
			if (write_full(fd, line, len) != 0 || write_full(fd, "\r\n", 2) != 0)
				goto write_error;
			continue;
		}
		memcpy(out + o, line, len);
		memcpy(out + o + len, "\r\n", 2);
		o += len + 2;
	}
	if (r == 0 && o > 0 && write_full(fd, out, o) != 0)
		goto write_error;
	free(out);
	if (r > 0)
		c->broken = true; /* stopped mid-message */
	return r == 0 ? 0 : -1;
write_error:
	snprintf(error, errsize, "cannot write message %u: %s", number, strerror(errno));
	free(out);
	c->broken = true;
	return -1;
}

int
pop3_client_retr(struct pop3_client *c, unsigned number, int fd, uint64_t max_size, char *error,
                 size_t errsize)
{
	return pop3_client_message(c, number, false, fd, max_size, error, errsize);
}

int
pop3_client_top(struct pop3_client *c, unsigned number, int fd, uint64_t max_size, char *error,
                size_t errsize)
{
	return pop3_client_message(c, number, true, fd, max_size, error, errsize);
}

int
pop3_client_dele(struct pop3_client *c, unsigned number, char *error, size_t errsize)
{
	char cmd[32];

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "DELE %u", number);
	return pop3_client_command(c, "DELE refused", error, errsize, cmd) == 1 ? 0 : -1;
}

int
pop3_client_quit(struct pop3_client **clientp, char *error, size_t errsize)
{
	struct pop3_client *c = *clientp;
	int r = -1;

	if (c == NULL)
		return 0;
	if (c->broken)
		snprintf(error, errsize,
		         "the connection to %s is no longer usable; nothing deleted",
		         conn_peer(c->conn));
	else
		r = pop3_client_command(c, "server refused the update", error, errsize, "QUIT");
	pop3_client_abort(clientp);
	return r == 1 ? 0 : -1;
}

void
pop3_client_abort(struct pop3_client **clientp)
{
	struct pop3_client *c = *clientp;

	if (c == NULL)
		return;
	conn_close(&c->conn);
	free(c);
	*clientp = NULL;
}
