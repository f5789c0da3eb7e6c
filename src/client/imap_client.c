/* imap_client: the part of IMAP4rev1 a fetching and watching client needs, on a blocking conn. A
 * response is read whole (lines and their literals, each capped) into one buffer and then
 * tokenized by imap_response; only a FETCH BODY[] literal bypasses the buffer and streams into the
 * caller's file descriptor. IDLE leaves a command open: its tag is kept until DONE. */
#include "client/imap_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/saslfmt.h"
#include "client/client_private.h"
#include "client/imap_response.h"
#include "lib/util.h"

#define IMAP_CLIENT_MAX_LITERAL 65536          /* literals other than message bodies */
#define IMAP_CLIENT_MAX_RESPONSE (1024 * 1024) /* one response, lines and literals */
#define IMAP_CLIENT_MAX_ENTRIES 1000000
#define IMAP_CLIENT_CHUNK 65536
#define IMAP_CLIENT_SET_MAX 1000 /* characters of a UID set per command */

struct imap_client {
	struct conn *conn;
	unsigned tag;
	bool broken; /* out of step with the server: only close is safe */
	bool caps_known, preauth;
	struct imap_caps caps;
	char *resp; /* the current response, literals inline as "{n}\r\n" + bytes */
	size_t resp_len, resp_cap, first_len;
	bool resp_streamed; /* this response's BODY[] literal went to the sink */
	bool idling;        /* IDLE is running under idle_tag until DONE */
	char idle_tag[16];
};

/* What one command collects from the responses it gets. */
struct imap_cmd {
	const char *what; /* names the step in errors ("SELECT", "login") */
	bool logout, auth, collect;
	bool has_uidvalidity;
	uint32_t uidvalidity, exists;
	/* list: every FETCH seen */
	struct imap_item *items;
	size_t nitems, items_cap;
	/* fetch: where BODY[] goes */
	int fd;
	uint64_t max_size;
	uint32_t want_uid;
	bool body_done;
	bool body_pending; /* a BODY[] literal was streamed; its FETCH has not been parsed yet */
	bool saw_exists;   /* an untagged EXISTS came during the command */
	/* IDLE: stop at the continuation instead of sending a next piece */
	bool idle, idling;
	/* headers: every FETCH with header fields of a UID in [hdr_first, hdr_last] */
	bool headers;
	uint32_t hdr_first, hdr_last;
	struct imap_client_header *hdrs;
	size_t nhdrs, hdrs_cap;
	char error[512]; /* set by a handler that failed; the command then fails with it */
};

struct imap_item {
	uint32_t uid;
	uint64_t size;
	bool seen, has_size, has_flags;
};

/* Applies what a response code said: capabilities to the client, UIDVALIDITY to the command. */
static void
imap_client_resp_code(struct imap_client *c, struct imap_cmd *cmd, struct imap_parser *ps)
{
	struct imap_resp_code code;

	imap_response_code(ps, &code);
	if (code.has_caps) {
		c->caps = code.caps;
		c->caps_known = true;
	}
	if (code.has_uidvalidity && cmd != NULL) {
		cmd->uidvalidity = code.uidvalidity;
		cmd->has_uidvalidity = true;
	}
}

/* Appends bytes (or, with data NULL, room for them) to the response, within the cap. */
static int
imap_client_append(struct imap_client *c, const void *data, size_t len, char *error, size_t errsize)
{
	if (c->resp_len + len + 1 > IMAP_CLIENT_MAX_RESPONSE) {
		snprintf(error, errsize, "response from %s is longer than %d bytes",
		         conn_peer(c->conn), IMAP_CLIENT_MAX_RESPONSE);
		return -1;
	}
	if (c->resp_len + len + 1 > c->resp_cap) {
		c->resp_cap = c->resp_len + len + 1 + 4096;
		c->resp = xrealloc(c->resp, c->resp_cap);
	}
	if (data != NULL)
		memcpy(c->resp + c->resp_len, data, len);
	c->resp_len += len;
	c->resp[c->resp_len] = '\0';
	return 0;
}

/* Copies a BODY[] literal of n bytes from the connection into the command's fd. */
static int
imap_client_stream_body(struct imap_client *c, struct imap_cmd *cmd, uint64_t n, char *error,
                        size_t errsize)
{
	char *buf;

	if (cmd->body_done || cmd->body_pending) {
		snprintf(error, errsize, "%s sent more than one body for UID %" PRIu32,
		         conn_peer(c->conn), cmd->want_uid);
		return -1;
	}
	if (n > cmd->max_size) {
		snprintf(error, errsize,
		         "message UID %" PRIu32 " from %s is larger than the limit of %" PRIu64
		         " bytes (%" PRIu64 " announced)",
		         cmd->want_uid, conn_peer(c->conn), cmd->max_size, n);
		return -1;
	}
	buf = xmalloc(IMAP_CLIENT_CHUNK);
	for (uint64_t done = 0; done < n;) {
		size_t take = n - done < IMAP_CLIENT_CHUNK ? (size_t)(n - done) : IMAP_CLIENT_CHUNK;

		if (conn_read_exact(c->conn, buf, take, error, errsize) < 0) {
			free(buf);
			client_error_prefix(error, errsize, "truncated body of UID %" PRIu32,
			                    cmd->want_uid);
			return -1;
		}
		if (write_full(cmd->fd, buf, take) != 0) {
			snprintf(error, errsize, "cannot write message UID %" PRIu32 ": %s",
			         cmd->want_uid, strerror(errno));
			free(buf);
			return -1;
		}
		done += take;
	}
	free(buf);
	/* Done only once the response it came in parses as a FETCH of the UID we asked for. */
	cmd->body_pending = true;
	c->resp_streamed = true;
	return 0;
}

/* Reads one whole response (a line, and for each literal it announces, the literal and the
 * line after it). Returns 0, or -1 with error; the client is then out of step. */
static int
imap_client_read(struct imap_client *c, struct imap_cmd *cmd, char *error, size_t errsize)
{
	c->resp_len = 0;
	c->first_len = 0;
	c->resp_streamed = false;
	for (;;) {
		const char *line;
		size_t len;
		uint64_t n;
		long at;

		if (conn_read_line(c->conn, &line, &len, error, errsize) < 0)
			goto fail;
		if (c->first_len == 0)
			c->first_len = len;
		at = imap_response_literal_at_end(line, len, &n);
		if (at == -2) {
			snprintf(error, errsize, "literal size overflows");
			goto fail;
		}
		if (at < 0)
			return imap_client_append(c, line, len, error, errsize) == 0 ? 0 : -1;
		bool body =
		    cmd != NULL && cmd->fd >= 0 && imap_response_literal_is_body(line, (size_t)at);
		if (imap_client_append(c, line, (size_t)at, error, errsize) != 0)
			goto fail;
		if (body) {
			if (imap_client_stream_body(c, cmd, n, error, errsize) != 0 ||
			    imap_client_append(c, "{0}\r\n", 5, error, errsize) != 0)
				goto fail;
			continue;
		}
		if (n > IMAP_CLIENT_MAX_LITERAL) {
			snprintf(error, errsize,
			         "literal of %" PRIu64 " bytes from %s exceeds the limit of %d", n,
			         conn_peer(c->conn), IMAP_CLIENT_MAX_LITERAL);
			goto fail;
		}
		char head[32];
		int hl = snprintf(head, sizeof(head), "{%" PRIu64 "}\r\n", n);
		if (imap_client_append(c, head, (size_t)hl, error, errsize) != 0 ||
		    imap_client_append(c, NULL, (size_t)n, error, errsize) != 0)
			goto fail;
		if (conn_read_exact(c->conn, c->resp + c->resp_len - n, (size_t)n, error, errsize) <
		    0)
			goto fail;
	}
fail:
	c->broken = true;
	return -1;
}

/* Handles the item list of "* n FETCH": stores a body for fetch, collects UID, size and flags
 * for list. */
static int
imap_client_fetch_items(struct imap_client *c, struct imap_cmd *cmd, struct imap_parser *ps)
{
	struct imap_fetch f;
	struct imap_item item;

	if (imap_response_fetch(ps, &f) != 0)
		return -1;
	if (cmd->fd >= 0 && f.body.type == IMAP_TOK_STRING) {
		if (!f.has_uid || f.uid != cmd->want_uid) {
			snprintf(cmd->error, sizeof(cmd->error),
			         "%s sent a body for another message", conn_peer(c->conn));
			return -1;
		}
		/* A streamed body is now known to be this message's; one sent as a quoted string
		 * was not stored yet. */
		if (c->resp_streamed) {
			cmd->body_pending = false;
			cmd->body_done = true;
		} else {
			if (cmd->body_done || f.body.len > cmd->max_size ||
			    write_full(cmd->fd, f.body.s, f.body.len) != 0) {
				snprintf(cmd->error, sizeof(cmd->error),
				         "cannot store the body of UID %" PRIu32, cmd->want_uid);
				return -1;
			}
			cmd->body_done = true;
		}
	} else if (cmd->collect && f.has_uid) {
		if (cmd->nitems == IMAP_CLIENT_MAX_ENTRIES) {
			snprintf(cmd->error, sizeof(cmd->error), "%s lists more than %d messages",
			         conn_peer(c->conn), IMAP_CLIENT_MAX_ENTRIES);
			return -1;
		}
		if (cmd->nitems == cmd->items_cap) {
			cmd->items_cap = cmd->items_cap == 0 ? 64 : cmd->items_cap * 2;
			cmd->items = xrealloc(cmd->items, cmd->items_cap * sizeof(*cmd->items));
		}
		item = (struct imap_item){.uid = f.uid,
		                          .size = f.size,
		                          .seen = f.seen,
		                          .has_size = f.has_size,
		                          .has_flags = f.has_flags};
		cmd->items[cmd->nitems++] = item;
	}
	return 0;
}
/* Keeps one string value (a quoted string or literal, or NIL as "") as a malloc'ed C string. */
static bool
imap_client_header_value(const struct imap_tok *v, char **out_r, size_t *len_r)
{
	if (imap_response_tok_is(v, "NIL")) {
		*out_r = xstrdup("");
		*len_r = 0;
		return true;
	}
	if (v->type != IMAP_TOK_STRING)
		return false;
	*out_r = xstrndup(v->s, v->len);
	*len_r = v->len;
	return true;
}

/* Handles the item list of "* n FETCH" for imap_client_headers: UID, RFC822.SIZE, INTERNALDATE
 * and a BODY[HEADER...] or RFC822.HEADER value, items in any order; the rest is skipped. A FETCH
 * without UID or header fields (an unsolicited flag update) is ignored; so is a UID outside the
 * range asked for or one already seen. */
static int
imap_client_header_items(struct imap_client *c, struct imap_cmd *cmd, struct imap_parser *ps)
{
	struct imap_client_header h = {0};
	struct imap_tok t = imap_response_next(ps);
	bool has_uid = false;
	char *fields = NULL;
	uint64_t n;

	if (t.type != IMAP_TOK_LPAREN)
		return -1;
	while ((t = imap_response_next(ps)).type == IMAP_TOK_ATOM) {
		struct imap_tok v = imap_response_next(ps);

		if (imap_response_tok_is(&t, "UID")) {
			if (!imap_response_tok_number(&v, UINT32_MAX, &n) || n == 0)
				goto bad;
			h.uid = (uint32_t)n;
			has_uid = true;
		} else if (imap_response_tok_is(&t, "RFC822.SIZE")) {
			if (!imap_response_tok_number(&v, UINT64_MAX, &h.size))
				goto bad;
		} else if (imap_response_tok_is(&t, "INTERNALDATE")) {
			if (v.type != IMAP_TOK_STRING || v.len >= sizeof(h.internaldate))
				goto bad;
			memcpy(h.internaldate, v.s, v.len);
			h.internaldate[v.len] = '\0';
		} else if ((t.len > 11 && strncasecmp(t.s, "BODY[HEADER", 11) == 0) ||
		           imap_response_tok_is(&t, "RFC822.HEADER")) {
			free(fields);
			fields = NULL;
			if (!imap_client_header_value(&v, &fields, &h.fields_len))
				goto bad;
		} else if (!imap_response_skip_value(ps, v)) {
			goto bad;
		}
	}
	if (t.type != IMAP_TOK_RPAREN)
		goto bad;
	if (!has_uid || fields == NULL || h.uid < cmd->hdr_first ||
	    (cmd->hdr_last != 0 && h.uid > cmd->hdr_last)) {
		free(fields);
		return 0;
	}
	for (size_t i = 0; i < cmd->nhdrs; i++) {
		if (cmd->hdrs[i].uid == h.uid) {
			free(fields);
			return 0;
		}
	}
	if (cmd->nhdrs == IMAP_CLIENT_MAX_HEADERS) {
		free(fields);
		snprintf(cmd->error, sizeof(cmd->error), "%s sent more than %d header sets",
		         conn_peer(c->conn), IMAP_CLIENT_MAX_HEADERS);
		return -1;
	}
	if (cmd->nhdrs == cmd->hdrs_cap) {
		cmd->hdrs_cap = cmd->hdrs_cap == 0 ? 16 : cmd->hdrs_cap * 2;
		cmd->hdrs = xrealloc(cmd->hdrs, cmd->hdrs_cap * sizeof(*cmd->hdrs));
	}
	h.fields = fields;
	cmd->hdrs[cmd->nhdrs++] = h;
	return 0;
bad:
	free(fields);
	return -1;
}

/* Handles one untagged response; -1 when it ends the command with an error. */
static int
imap_client_untagged(struct imap_client *c, struct imap_cmd *cmd, struct imap_parser *ps,
                     char *error, size_t errsize)
{
	struct imap_tok t = imap_response_next(ps), kw;
	char q[CLIENT_QUOTE_MAX];
	uint64_t n;

	if (imap_response_tok_is(&t, "BYE")) {
		if (cmd->logout)
			return 0;
		snprintf(error, errsize, "%s closed the session: \"%s\"", conn_peer(c->conn),
		         client_quote(q, sizeof(q), c->resp + 2, c->first_len - 2));
		c->broken = true;
		return -1;
	}
	if (imap_response_tok_is(&t, "OK") || imap_response_tok_is(&t, "NO") ||
	    imap_response_tok_is(&t, "BAD") || imap_response_tok_is(&t, "PREAUTH")) {
		imap_client_resp_code(c, cmd, ps);
		return 0;
	}
	if (imap_response_tok_is(&t, "CAPABILITY")) {
		imap_response_caps(ps, &c->caps);
		c->caps_known = true;
		return 0;
	}
	if (!imap_response_tok_number(&t, UINT32_MAX, &n))
		return 0; /* FLAGS, LIST, SEARCH...: not needed here */
	kw = imap_response_next(ps);
	if (imap_response_tok_is(&kw, "EXISTS")) {
		cmd->exists = (uint32_t)n;
		cmd->saw_exists = true;
	} else if (imap_response_tok_is(&kw, "FETCH") &&
	           (cmd->headers ? imap_client_header_items(c, cmd, ps)
	                         : imap_client_fetch_items(c, cmd, ps)) != 0) {
		if (cmd->error[0] == '\0')
			snprintf(cmd->error, sizeof(cmd->error), "malformed FETCH from %s: \"%s\"",
			         conn_peer(c->conn),
			         client_quote(q, sizeof(q), c->resp, c->first_len));
		str_copy(error, cmd->error, errsize);
		c->broken = true; /* the rest of the command's responses are not read */
		return -1;
	}
	return 0;
}

/* Reads responses up to the tagged completion of the command sent as tag; each "+"
 * continuation gets the next of pieces (an IDLE command stops there instead). Returns 0 on OK (or
 * idling), -1 on NO/BAD (quoted in error) or failure. */
static int
imap_client_finish(struct imap_client *c, struct imap_cmd *cmd, const char *tag,
                   const char *const *pieces, size_t npieces, char *error, size_t errsize)
{
	char q[CLIENT_QUOTE_MAX];
	size_t next = 1;

	for (;;) {
		struct imap_parser ps;
		struct imap_tok t;

		if (imap_client_read(c, cmd, error, errsize) != 0)
			goto broken;
		imap_response_init(&ps, c->resp, c->resp_len);
		t = imap_response_next(&ps);
		if (imap_response_tok_is(&t, "+") && cmd->idle) {
			cmd->idling = true;
			return 0;
		}
		if (imap_response_tok_is(&t, "+")) {
			const char *piece = next < npieces ? pieces[next++]
			                    : cmd->auth    ? "*\r\n"
			                                   : NULL;

			if (piece == NULL) {
				snprintf(error, errsize,
				         "unexpected continuation from %s during %s",
				         conn_peer(c->conn), cmd->what);
				goto broken;
			}
			if (conn_write(c->conn, piece, strlen(piece), error, errsize) != 0)
				goto broken;
			continue;
		}
		if (imap_response_tok_is(&t, "*") &&
		    imap_client_untagged(c, cmd, &ps, error, errsize) != 0)
			return -1;
		if (cmd->body_pending) {
			snprintf(error, errsize,
			         "%s sent a message body outside a FETCH response for UID %" PRIu32,
			         conn_peer(c->conn), cmd->want_uid);
			goto broken;
		}
		if (imap_response_tok_is(&t, "*"))
			continue;
		if (t.type != IMAP_TOK_ATOM || t.len != strlen(tag) ||
		    memcmp(t.s, tag, t.len) != 0) {
			snprintf(error, errsize, "unexpected response from %s during %s: \"%s\"",
			         conn_peer(c->conn), cmd->what,
			         client_quote(q, sizeof(q), c->resp, c->first_len));
			goto broken;
		}
		t = imap_response_next(&ps);
		size_t off = (size_t)(t.s - c->resp);
		client_quote(q, sizeof(q), t.s, off < c->first_len ? c->first_len - off : 0);
		if (imap_response_tok_is(&t, "OK")) {
			imap_client_resp_code(c, cmd, &ps);
			return 0;
		}
		if (imap_response_tok_is(&t, "NO") || imap_response_tok_is(&t, "BAD")) {
			snprintf(error, errsize, "%s refused: %s", cmd->what, q);
			return -1;
		}
		snprintf(error, errsize, "malformed response from %s: \"%s\"", conn_peer(c->conn),
		         client_quote(q, sizeof(q), c->resp, c->first_len));
		goto broken;
	}
broken:
	c->broken = true;
	return -1;
}

/* Sends a command and reads responses up to its tagged completion. The text is split at
 * synchronizing literals and AUTHENTICATE steps: each piece after the first waits for a "+"
 * continuation. Returns 0 on OK, -1 on NO/BAD (quoted in error) or failure. */
static int
imap_client_run(struct imap_client *c, struct imap_cmd *cmd, const char *const *pieces,
                size_t npieces, char *error, size_t errsize)
{
	char tag[16];

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	if (c->idling) {
		snprintf(error, errsize, "IDLE is running on the connection to %s",
		         conn_peer(c->conn));
		return -1;
	}
	snprintf(tag, sizeof(tag), "a%03u", ++c->tag);
	if (conn_printf(c->conn, error, errsize, "%s %s", tag, pieces[0]) != 0) {
		c->broken = true;
		return -1;
	}
	if (cmd->idle)
		str_copy(c->idle_tag, tag, sizeof(c->idle_tag));
	return imap_client_finish(c, cmd, tag, pieces, npieces, error, errsize);
}

/* Runs a one-line command. */
static int
imap_client_simple(struct imap_client *c, struct imap_cmd *cmd, const char *line, char *error,
                   size_t errsize)
{
	char *text = xasprintf("%s\r\n", line);
	const char *pieces[1] = {text};
	int r = imap_client_run(c, cmd, pieces, 1, error, errsize);

	free(text);
	return r;
}

/* Appends s to text as an IMAP astring: quoted when it can be, else a literal ("{n+}" with
 * LITERAL+; a synchronizing "{n}" ends the current piece, and s starts the next one). */
static void
imap_client_astring(struct imap_client *c, char *text, size_t *o, const char **pieces,
                    size_t *npieces, const char *s)
{
	size_t len = strlen(s);
	bool quotable = true;

	for (const char *p = s; *p != '\0'; p++)
		quotable &= (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
	if (quotable) {
		text[(*o)++] = '"';
		for (const char *p = s; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				text[(*o)++] = '\\';
			text[(*o)++] = *p;
		}
		text[(*o)++] = '"';
		return;
	}
	*o += (size_t)sprintf(text + *o, c->caps.literal_plus ? "{%zu+}\r\n" : "{%zu}\r\n", len);
	if (!c->caps.literal_plus) {
		text[(*o)++] = '\0';
		pieces[(*npieces)++] = text + *o;
	}
	memcpy(text + *o, s, len);
	*o += len;
}

/* Runs "VERB a1 [a2]" with astring arguments of at most 1024 bytes each (LOGIN, SELECT). */
static int
imap_client_strings(struct imap_client *c, struct imap_cmd *cmd, const char *verb, const char *a1,
                    const char *a2, char *error, size_t errsize)
{
	char text[4 * 1024 + 128];
	const char *pieces[3] = {text};
	size_t o = (size_t)sprintf(text, "%s ", verb), npieces = 1;
	int r;

	imap_client_astring(c, text, &o, pieces, &npieces, a1);
	if (a2 != NULL) {
		text[o++] = ' ';
		imap_client_astring(c, text, &o, pieces, &npieces, a2);
	}
	memcpy(text + o, "\r\n", 3);
	r = imap_client_run(c, cmd, pieces, npieces, error, errsize);
	explicit_bzero(text, sizeof(text));
	return r;
}

/* AUTHENTICATE PLAIN (initial response with SASL-IR) or LOGIN. */
static int
imap_client_login(struct imap_client *c, const char *user, const char *password, char *error,
                  size_t errsize)
{
	char b64[4 * SASL_FIELD_MAX], line[4 * SASL_FIELD_MAX + 32];
	size_t ulen = strlen(user), plen = password != NULL ? strlen(password) : 0;
	struct imap_cmd cmd = {.what = "login", .fd = -1, .auth = true};
	int r;

	if (ulen == 0 || ulen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX) {
		snprintf(error, errsize, "user name empty or user name or password too long");
		return -1;
	}
	c->caps_known = false; /* the server may announce new ones in the tagged OK */
	if (c->caps.auth_plain) {
		sasl_plain_encode(user, password, b64, sizeof(b64));
		if (c->caps.sasl_ir) {
			snprintf(line, sizeof(line), "AUTHENTICATE PLAIN %s\r\n", b64);
			const char *pieces[1] = {line};
			r = imap_client_run(c, &cmd, pieces, 1, error, errsize);
		} else {
			snprintf(line, sizeof(line), "%s\r\n", b64);
			const char *pieces[2] = {"AUTHENTICATE PLAIN\r\n", line};
			r = imap_client_run(c, &cmd, pieces, 2, error, errsize);
		}
		explicit_bzero(b64, sizeof(b64));
		explicit_bzero(line, sizeof(line));
	} else if (c->caps.logindisabled) {
		snprintf(error, errsize, "%s does not allow LOGIN and offers no AUTH=PLAIN",
		         conn_peer(c->conn));
		return -1;
	} else {
		cmd.auth = false;
		r = imap_client_strings(c, &cmd, "LOGIN", user, plen > 0 ? password : "", error,
		                        errsize);
	}
	return r;
}

/* The session on a connected conn (owned from here on): greeting, CAPABILITY, STARTTLS,
 * login. */
static int
imap_client_start(struct conn *conn, const struct conn_options *options, const char *user,
                  const char *password, struct imap_client **client_r, char *error, size_t errsize)
{
	struct imap_client *c = xcalloc(1, sizeof(*c));
	struct imap_cmd cmd = {.what = "CAPABILITY", .fd = -1};
	struct imap_parser ps;
	struct imap_tok t;
	char q[CLIENT_QUOTE_MAX];
	bool refused = false;

	c->conn = conn;
	if (imap_client_read(c, NULL, error, errsize) != 0) {
		client_error_prefix(error, errsize, "reading the IMAP greeting");
		goto fail;
	}
	imap_response_init(&ps, c->resp, c->resp_len);
	t = imap_response_next(&ps);
	if (imap_response_tok_is(&t, "*")) {
		t = imap_response_next(&ps);
		c->preauth = imap_response_tok_is(&t, "PREAUTH");
		if (imap_response_tok_is(&t, "BYE")) {
			snprintf(error, errsize, "%s refused the session: \"%s\"",
			         conn_peer(c->conn),
			         client_quote(q, sizeof(q), c->resp, c->first_len));
			goto fail;
		}
	}
	if (!imap_response_tok_is(&t, "OK") && !c->preauth) {
		snprintf(error, errsize, "malformed greeting from %s: \"%s\"", conn_peer(c->conn),
		         client_quote(q, sizeof(q), c->resp, c->first_len));
		goto fail;
	}
	imap_client_resp_code(c, NULL, &ps);
	if (!c->caps_known && imap_client_simple(c, &cmd, "CAPABILITY", error, errsize) != 0)
		goto fail;
	if (options->security == CONN_SECURITY_STARTTLS) {
		if (!c->caps.starttls || c->preauth) {
			snprintf(error, errsize, "%s does not offer STARTTLS", conn_peer(c->conn));
			goto fail;
		}
		cmd.what = "STARTTLS";
		if (imap_client_simple(c, &cmd, "STARTTLS", error, errsize) != 0 ||
		    conn_starttls(c->conn, error, errsize) != 0)
			goto fail;
		/* Capabilities seen before TLS may have been forged; ask again. */
		cmd.what = "CAPABILITY";
		if (imap_client_simple(c, &cmd, "CAPABILITY", error, errsize) != 0)
			goto fail;
	}
	if (user != NULL && !c->preauth) {
		if (imap_client_login(c, user, password, error, errsize) != 0) {
			refused = !c->broken;
			goto fail;
		}
		cmd.what = "CAPABILITY";
		if (!c->caps_known &&
		    imap_client_simple(c, &cmd, "CAPABILITY", error, errsize) != 0)
			goto fail;
	}
	*client_r = c;
	return 0;
fail:
	c->broken = true;
	imap_client_logout(&c);
	return refused ? -2 : -1;
}

int
imap_client_open(const struct conn_options *options, const char *user, const char *password,
                 struct imap_client **client_r, char *error, size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_open(options, &conn, error, errsize) != 0)
		return -1;
	return imap_client_start(conn, options, user, password, client_r, error, errsize) == 0 ? 0
	                                                                                       : -1;
}

int
imap_client_open_conn(struct conn *conn, const struct conn_options *options, const char *user,
                      const char *password, struct imap_client **client_r, char *error,
                      size_t errsize)
{
	*client_r = NULL;
	return imap_client_start(conn, options, user, password, client_r, error, errsize);
}

int
imap_client_open_fd(int fd, const struct conn_options *options, const char *user,
                    const char *password, struct imap_client **client_r, char *error,
                    size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_from_fd(fd, options, &conn, error, errsize) != 0)
		return -1;
	return imap_client_start(conn, options, user, password, client_r, error, errsize) == 0 ? 0
	                                                                                       : -1;
}

int
imap_client_select(struct imap_client *c, const char *mailbox, bool readonly,
                   uint32_t *uidvalidity_r, uint32_t *exists_r, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = readonly ? "EXAMINE" : "SELECT", .fd = -1};

	if (strpbrk(mailbox, "\r\n") != NULL || mailbox[0] == '\0' || strlen(mailbox) > 1024) {
		snprintf(error, errsize, "invalid mailbox name");
		return -2;
	}
	if (imap_client_strings(c, &cmd, cmd.what, mailbox, NULL, error, errsize) != 0)
		return c->broken ? -1 : -2;
	if (!cmd.has_uidvalidity) {
		snprintf(error, errsize, "%s did not report the UIDVALIDITY of %s",
		         conn_peer(c->conn), mailbox);
		return -1;
	}
	*uidvalidity_r = cmd.uidvalidity;
	*exists_r = cmd.exists;
	return 0;
}

static int
imap_item_cmp(const void *a, const void *b)
{
	const struct imap_item *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

int
imap_client_list(struct imap_client *c, uint32_t first_uid, struct imap_client_entry **entries_r,
                 size_t *n_r, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = "UID FETCH", .fd = -1, .collect = true};
	struct imap_client_entry *out;
	char line[80];
	size_t n = 0;

	*entries_r = NULL;
	*n_r = 0;
	if (first_uid == 0)
		first_uid = 1;
	snprintf(line, sizeof(line), "UID FETCH %" PRIu32 ":* (UID RFC822.SIZE FLAGS)", first_uid);
	if (imap_client_simple(c, &cmd, line, error, errsize) != 0) {
		free(cmd.items);
		return -1;
	}
	/* "n:*" always matches the highest UID, even below n; unsolicited FETCHes may repeat a
	 * UID with only some items: merge them. */
	if (cmd.nitems > 0) /* items is NULL for none, and qsort's base must not be */
		qsort(cmd.items, cmd.nitems, sizeof(*cmd.items), imap_item_cmp);
	out = xcalloc(cmd.nitems + 1, sizeof(*out));
	for (size_t i = 0; i < cmd.nitems; i++) {
		const struct imap_item *it = &cmd.items[i];

		if (it->uid < first_uid)
			continue;
		if (n == 0 || out[n - 1].uid != it->uid) {
			out[n].uid = it->uid;
			n++;
		}
		if (it->has_size)
			out[n - 1].size = it->size;
		if (it->has_flags)
			out[n - 1].seen = it->seen;
	}
	free(cmd.items);
	*entries_r = out;
	*n_r = n;
	return 0;
}

int
imap_client_fetch(struct imap_client *c, uint32_t uid, int fd, uint64_t max_size, char *error,
                  size_t errsize)
{
	struct imap_cmd cmd = {.what = "FETCH", .fd = fd, .max_size = max_size, .want_uid = uid};
	char line[64];

	snprintf(line, sizeof(line), "UID FETCH %" PRIu32 " BODY.PEEK[]", uid);
	if (imap_client_simple(c, &cmd, line, error, errsize) != 0)
		return -1;
	if (!cmd.body_done) {
		snprintf(error, errsize, "%s returned no body for UID %" PRIu32 " (expunged?)",
		         conn_peer(c->conn), uid);
		return -1;
	}
	return 0;
}

static int
imap_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int
imap_client_delete(struct imap_client *c, const uint32_t *uids, size_t n, char *error,
                   size_t errsize)
{
	uint32_t *sorted;
	char set[IMAP_CLIENT_SET_MAX + 32], line[IMAP_CLIENT_SET_MAX + 96];
	size_t i = 0;
	int r = 0;

	if (n == 0)
		return 0;
	sorted = xmalloc(n * sizeof(*sorted));
	memcpy(sorted, uids, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), imap_uid_cmp);
	/* Runs of UIDs become "a:b"; a set that grows past the cap goes out as its own command. */
	while (i < n && r == 0) {
		size_t len = 0;

		while (i < n && len < IMAP_CLIENT_SET_MAX) {
			size_t j = i;

			while (j + 1 < n && sorted[j + 1] <= sorted[j] + 1)
				j++;
			len += (size_t)snprintf(set + len, sizeof(set) - len,
			                        len > 0 ? ",%" PRIu32 : "%" PRIu32, sorted[i]);
			if (sorted[j] != sorted[i])
				len += (size_t)snprintf(set + len, sizeof(set) - len, ":%" PRIu32,
				                        sorted[j]);
			i = j + 1;
		}
		struct imap_cmd store = {.what = "STORE", .fd = -1};
		snprintf(line, sizeof(line), "UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
		r = imap_client_simple(c, &store, line, error, errsize);
		if (r == 0 && c->caps.uidplus) {
			struct imap_cmd expunge = {.what = "UID EXPUNGE", .fd = -1};
			snprintf(line, sizeof(line), "UID EXPUNGE %s", set);
			r = imap_client_simple(c, &expunge, line, error, errsize);
		}
	}
	free(sorted);
	if (r == 0 && !c->caps.uidplus) {
		struct imap_cmd expunge = {.what = "EXPUNGE", .fd = -1};
		r = imap_client_simple(c, &expunge, "EXPUNGE", error, errsize);
	}
	return r;
}

static int
imap_header_cmp(const void *a, const void *b)
{
	const struct imap_client_header *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

int
imap_client_headers(struct imap_client *c, uint32_t first, uint32_t last,
                    struct imap_client_header **list_r, size_t *n_r, char *error, size_t errsize)
{
	static const char *const sections[] = {"HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)",
	                                       "HEADER"};
	struct imap_cmd cmd = {0};
	char range[32], line[160];
	int r = -1;

	*list_r = NULL;
	*n_r = 0;
	if (first == 0)
		first = 1;
	if (last != 0 && last < first) {
		snprintf(error, errsize, "empty UID range %" PRIu32 ":%" PRIu32, first, last);
		return -1;
	}
	if (last != 0)
		snprintf(range, sizeof(range), "%" PRIu32 ":%" PRIu32, first, last);
	else
		snprintf(range, sizeof(range), "%" PRIu32 ":*", first);
	/* HEADER.FIELDS is what is needed; BODY[HEADER] is the fallback for a server without it
	 * (the whole header section, still within the literal cap). */
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		imap_client_headers_free(&cmd.hdrs, cmd.nhdrs);
		cmd = (struct imap_cmd){.what = "UID FETCH",
		                        .fd = -1,
		                        .headers = true,
		                        .hdr_first = first,
		                        .hdr_last = last};
		snprintf(line, sizeof(line),
		         "UID FETCH %s (UID RFC822.SIZE INTERNALDATE BODY.PEEK[%s])", range,
		         sections[i]);
		r = imap_client_simple(c, &cmd, line, error, errsize);
		if (r == 0 || c->broken)
			break;
	}
	if (r != 0) {
		imap_client_headers_free(&cmd.hdrs, cmd.nhdrs);
		return -1;
	}
	if (cmd.nhdrs > 0)
		qsort(cmd.hdrs, cmd.nhdrs, sizeof(*cmd.hdrs), imap_header_cmp);
	*list_r = cmd.hdrs;
	*n_r = cmd.nhdrs;
	return 0;
}

void
imap_client_headers_free(struct imap_client_header **list, size_t n)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*list)[i].fields);
	free(*list);
	*list = NULL;
}

int
imap_client_highest_uid(struct imap_client *c, uint32_t exists, uint32_t *uid_r, char *error,
                        size_t errsize)
{
	struct imap_cmd cmd = {.what = "UID FETCH", .fd = -1, .collect = true};

	*uid_r = 0;
	if (exists == 0)
		return 0;
	if (imap_client_simple(c, &cmd, "UID FETCH * (UID)", error, errsize) != 0) {
		free(cmd.items);
		return -1;
	}
	for (size_t i = 0; i < cmd.nitems; i++)
		if (cmd.items[i].uid > *uid_r)
			*uid_r = cmd.items[i].uid;
	free(cmd.items);
	return 0;
}

int
imap_client_noop(struct imap_client *c, bool *exists_r, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = "NOOP", .fd = -1};
	int r = imap_client_simple(c, &cmd, "NOOP", error, errsize);

	*exists_r = cmd.saw_exists;
	return r;
}

int
imap_client_idle_start(struct imap_client *c, bool *exists_r, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = "IDLE", .fd = -1, .idle = true};
	int r = imap_client_simple(c, &cmd, "IDLE", error, errsize);

	*exists_r = cmd.saw_exists;
	if (r == 0 && cmd.idling) {
		c->idling = true;
		return 1;
	}
	if (c->broken)
		return -1;
	/* NO/BAD (or an OK without the continuation): no IDLE here, the session goes on. */
	return 0;
}

int
imap_client_idle_read(struct imap_client *c, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = "IDLE", .fd = -1};
	struct imap_parser ps;
	struct imap_tok t;
	char q[CLIENT_QUOTE_MAX];

	if (!c->idling || c->broken) {
		snprintf(error, errsize, "not idling on the connection to %s", conn_peer(c->conn));
		return -1;
	}
	if (imap_client_read(c, &cmd, error, errsize) != 0)
		return -1;
	imap_response_init(&ps, c->resp, c->resp_len);
	t = imap_response_next(&ps);
	if (imap_response_tok_is(&t, "*")) {
		if (imap_client_untagged(c, &cmd, &ps, error, errsize) != 0)
			return -1;
		return cmd.saw_exists ? 1 : 0;
	}
	/* Only DONE ends IDLE: a tagged reply (or a continuation) now is out of step. */
	snprintf(error, errsize, "unexpected response from %s during IDLE: \"%s\"",
	         conn_peer(c->conn), client_quote(q, sizeof(q), c->resp, c->first_len));
	c->broken = true;
	return -1;
}

int
imap_client_idle_done(struct imap_client *c, bool *exists_r, char *error, size_t errsize)
{
	struct imap_cmd cmd = {.what = "IDLE", .fd = -1};
	int r;

	*exists_r = false;
	if (!c->idling || c->broken) {
		snprintf(error, errsize, "not idling on the connection to %s", conn_peer(c->conn));
		return -1;
	}
	c->idling = false;
	if (conn_write(c->conn, "DONE\r\n", 6, error, errsize) != 0) {
		c->broken = true;
		return -1;
	}
	r = imap_client_finish(c, &cmd, c->idle_tag, NULL, 0, error, errsize);
	*exists_r = cmd.saw_exists;
	return r;
}

bool
imap_client_idling(const struct imap_client *c)
{
	return c->idling;
}

size_t
imap_client_buffered(const struct imap_client *c)
{
	return conn_buffered(c->conn);
}

void
imap_client_logout(struct imap_client **clientp)
{
	struct imap_client *c = *clientp;

	if (c == NULL)
		return;
	if (c->conn != NULL && !c->broken) {
		struct imap_cmd cmd = {.what = "LOGOUT", .fd = -1, .logout = true};
		char ignored[256];
		bool exists;

		if (!c->idling || imap_client_idle_done(c, &exists, ignored, sizeof(ignored)) == 0)
			imap_client_simple(c, &cmd, "LOGOUT", ignored, sizeof(ignored));
	}
	conn_close(&c->conn);
	free(c->resp);
	free(c);
	*clientp = NULL;
}
