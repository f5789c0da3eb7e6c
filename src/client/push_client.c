/* push_client: tern's push protocol on a blocking conn. The first half is the event parser (a
 * small, bounded JSON reader that knows the members of an event); the second is the session:
 * status lines, AUTH PLAIN, WATCH, and events handed to the caller whenever they arrive. */
#include "client/push_client.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/saslfmt.h"
#include "client/client_private.h"
#include "lib/util.h"

#define PUSH_JSON_MAX_DEPTH 32
#define PUSH_CLIENT_LINE_OUT 1000 /* the longest line the server takes from a client */
#define PUSH_MAILBOX_MAX 900

/* --- the event parser --- */

/* A position in one line, and where the first error goes. */
struct pjson {
	const char *p, *end;
	char *error;
	size_t errsize;
};

/* A bounded output buffer for a decoded string: whole characters only, the rest dropped. */
struct pjson_out {
	char *buf;
	size_t size, len;
	bool full;
};

static int __attribute__((format(printf, 2, 3))) pjson_fail(struct pjson *pj, const char *fmt, ...)
{
	va_list ap;

	if (pj->error != NULL && pj->errsize > 0 && pj->error[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(pj->error, pj->errsize, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void
pjson_ws(struct pjson *pj)
{
	while (pj->p < pj->end &&
	       (*pj->p == ' ' || *pj->p == '\t' || *pj->p == '\r' || *pj->p == '\n'))
		pj->p++;
}

/* Appends one code point as UTF-8 unless it would not fit (then nothing more is appended). */
static void
pjson_put(struct pjson_out *o, uint32_t cp)
{
	char b[4];
	size_t n;

	if (o == NULL || o->full)
		return;
	if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		cp = 0xfffd; /* a NUL would cut the C string; lone surrogates are not text */
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (o->len + n + 1 > o->size) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, b, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* Decodes one raw UTF-8 character at p (at most avail bytes): its code point and length, or
 * U+FFFD and 1 for a malformed, overlong or surrogate sequence. */
static uint32_t
pjson_utf8(const unsigned char *p, size_t avail, size_t *len_r)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80) {
		*len_r = 1;
		return p[0];
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		*len_r = 1;
		return 0xfffd;
	}
	*len_r = 1;
	if (avail < n)
		return 0xfffd;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0xfffd;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0xfffd;
	*len_r = n;
	return cp;
}

/* Four hex digits of a \u escape. */
static int
pjson_hex4(struct pjson *pj, uint32_t *v_r)
{
	uint32_t v = 0;

	if (pj->end - pj->p < 4)
		return pjson_fail(pj, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		char ch = *pj->p++;

		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (uint32_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (uint32_t)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (uint32_t)(ch - 'A' + 10);
		else
			return pjson_fail(pj, "bad \\u escape");
	}
	*v_r = v;
	return 0;
}

/* A string at p (which must be '"'), decoded into o (NULL: skipped). */
static int
pjson_string(struct pjson *pj, struct pjson_out *o)
{
	static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";

	if (pj->p >= pj->end || *pj->p != '"')
		return pjson_fail(pj, "expected a string");
	pj->p++;
	if (o != NULL) {
		o->len = 0;
		o->full = false;
		o->buf[0] = '\0';
	}
	while (pj->p < pj->end) {
		unsigned char ch = (unsigned char)*pj->p;
		uint32_t cp, lo;
		size_t n;

		if (ch == '"') {
			pj->p++;
			return 0;
		}
		if (ch < 0x20)
			return pjson_fail(pj, "control character in a string");
		if (ch != '\\') {
			cp =
			    pjson_utf8((const unsigned char *)pj->p, (size_t)(pj->end - pj->p), &n);
			pj->p += n;
			pjson_put(o, cp);
			continue;
		}
		if (++pj->p >= pj->end)
			break;
		const char *e = *pj->p != '\0' ? strchr(esc_in, *pj->p) : NULL;
		if (e != NULL) {
			pj->p++;
			pjson_put(o, (unsigned char)esc_out[e - esc_in]);
			continue;
		}
		if (*pj->p != 'u')
			return pjson_fail(pj, "bad escape in a string");
		pj->p++;
		if (pjson_hex4(pj, &cp) < 0)
			return -1;
		/* A high surrogate followed by a low one is one character; alone, U+FFFD. */
		if (cp >= 0xd800 && cp <= 0xdbff && pj->end - pj->p >= 6 && pj->p[0] == '\\' &&
		    pj->p[1] == 'u') {
			const char *save = pj->p;

			pj->p += 2;
			if (pjson_hex4(pj, &lo) < 0)
				return -1;
			if (lo >= 0xdc00 && lo <= 0xdfff)
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			else
				pj->p = save;
		}
		pjson_put(o, cp);
	}
	return pjson_fail(pj, "unterminated string");
}

/* A number; *u_r and true in *is_uint when it is a plain non-negative integer that fits. */
static int
pjson_number(struct pjson *pj, uint64_t *u_r, bool *is_uint)
{
	uint64_t v = 0;
	bool overflow = false, integer = true;

	if (pj->p < pj->end && *pj->p == '-') {
		pj->p++;
		integer = false;
	}
	if (pj->p >= pj->end || *pj->p < '0' || *pj->p > '9')
		return pjson_fail(pj, "bad number");
	if (*pj->p == '0' && pj->p + 1 < pj->end && pj->p[1] >= '0' && pj->p[1] <= '9')
		return pjson_fail(pj, "number with a leading zero");
	for (; pj->p < pj->end && *pj->p >= '0' && *pj->p <= '9'; pj->p++) {
		unsigned d = (unsigned)(*pj->p - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	if (pj->p < pj->end && *pj->p == '.') {
		integer = false;
		pj->p++;
		if (pj->p >= pj->end || *pj->p < '0' || *pj->p > '9')
			return pjson_fail(pj, "bad number");
		while (pj->p < pj->end && *pj->p >= '0' && *pj->p <= '9')
			pj->p++;
	}
	if (pj->p < pj->end && (*pj->p == 'e' || *pj->p == 'E')) {
		integer = false;
		pj->p++;
		if (pj->p < pj->end && (*pj->p == '+' || *pj->p == '-'))
			pj->p++;
		if (pj->p >= pj->end || *pj->p < '0' || *pj->p > '9')
			return pjson_fail(pj, "bad number");
		while (pj->p < pj->end && *pj->p >= '0' && *pj->p <= '9')
			pj->p++;
	}
	*u_r = v;
	*is_uint = integer && !overflow;
	return 0;
}

/* A literal word (true, false, null). */
static int
pjson_word(struct pjson *pj, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(pj->end - pj->p) < n || memcmp(pj->p, word, n) != 0)
		return pjson_fail(pj, "unexpected character");
	pj->p += n;
	return 0;
}

/* Skips any value, nesting at most PUSH_JSON_MAX_DEPTH deep. */
static int
pjson_skip(struct pjson *pj, int depth)
{
	uint64_t u;
	bool is_uint;

	pjson_ws(pj);
	if (pj->p >= pj->end)
		return pjson_fail(pj, "missing value");
	switch (*pj->p) {
	case '"':
		return pjson_string(pj, NULL);
	case 't':
		return pjson_word(pj, "true");
	case 'f':
		return pjson_word(pj, "false");
	case 'n':
		return pjson_word(pj, "null");
	case '{':
	case '[': {
		char close = *pj->p == '{' ? '}' : ']';
		bool object = close == '}';

		if (depth >= PUSH_JSON_MAX_DEPTH)
			return pjson_fail(pj, "nested too deep");
		pj->p++;
		pjson_ws(pj);
		if (pj->p < pj->end && *pj->p == close) {
			pj->p++;
			return 0;
		}
		for (;;) {
			pjson_ws(pj);
			if (object) {
				if (pjson_string(pj, NULL) < 0)
					return -1;
				pjson_ws(pj);
				if (pj->p >= pj->end || *pj->p != ':')
					return pjson_fail(pj, "expected ':'");
				pj->p++;
			}
			if (pjson_skip(pj, depth + 1) < 0)
				return -1;
			pjson_ws(pj);
			if (pj->p < pj->end && *pj->p == ',') {
				pj->p++;
				continue;
			}
			if (pj->p < pj->end && *pj->p == close) {
				pj->p++;
				return 0;
			}
			return pjson_fail(pj, "expected ',' or '%c'", close);
		}
	}
	default:
		return pjson_number(pj, &u, &is_uint);
	}
}

/* A string member's value into buf (null counts as ""). */
static int
pjson_text(struct pjson *pj, char *buf, size_t size)
{
	struct pjson_out o = {buf, size, 0, false};

	buf[0] = '\0';
	if (pj->p < pj->end && *pj->p == 'n')
		return pjson_word(pj, "null");
	return pjson_string(pj, &o);
}

/* An integer member's value, at most max. */
static int
pjson_uint(struct pjson *pj, const char *name, uint64_t max, uint64_t *v_r)
{
	bool is_uint;

	if (pjson_number(pj, v_r, &is_uint) < 0)
		return -1;
	if (!is_uint || *v_r > max)
		return pjson_fail(pj, "\"%s\" is not an integer in range", name);
	return 0;
}

/* The flags array: strings joined by spaces, cut to the buffer. */
static int
pjson_flags(struct pjson *pj, struct push_event *ev)
{
	char one[128];
	size_t len = 0;

	if (pj->p >= pj->end || *pj->p != '[')
		return pjson_fail(pj, "\"flags\" is not an array");
	pj->p++;
	pjson_ws(pj);
	if (pj->p < pj->end && *pj->p == ']') {
		pj->p++;
		return 0;
	}
	for (;;) {
		struct pjson_out o = {one, sizeof(one), 0, false};

		pjson_ws(pj);
		if (pjson_string(pj, &o) < 0)
			return -1;
		if (len + o.len + 2 <= sizeof(ev->flags)) {
			if (len > 0)
				ev->flags[len++] = ' ';
			memcpy(ev->flags + len, one, o.len + 1);
			len += o.len;
		}
		pjson_ws(pj);
		if (pj->p < pj->end && *pj->p == ',') {
			pj->p++;
			continue;
		}
		if (pj->p < pj->end && *pj->p == ']') {
			pj->p++;
			return 0;
		}
		return pjson_fail(pj, "expected ',' or ']' in \"flags\"");
	}
}

static const struct {
	const char *name;
	enum push_event_type type;
} push_event_types[] = {
    {"new", PUSH_EVENT_NEW},
    {"expunge", PUSH_EVENT_EXPUNGE},
    {"flags", PUSH_EVENT_FLAGS},
    {"mailbox", PUSH_EVENT_MAILBOX},
    {"keepalive", PUSH_EVENT_KEEPALIVE},
    {"resync", PUSH_EVENT_RESYNC},
};

const char *
push_event_type_name(enum push_event_type type)
{
	for (size_t i = 0; i < sizeof(push_event_types) / sizeof(push_event_types[0]); i++)
		if (push_event_types[i].type == type)
			return push_event_types[i].name;
	return "other";
}

/* One member of the event object: the value after the ':' for the key. */
static int
pjson_member(struct pjson *pj, const char *key, bool key_cut, struct push_event *ev)
{
	char time_buf[64];
	uint64_t v;

	if (key_cut)
		return pjson_skip(pj, 1);
	if (strcmp(key, "type") == 0)
		return pjson_text(pj, ev->type_name, sizeof(ev->type_name));
	if (strcmp(key, "mailbox") == 0)
		return pjson_text(pj, ev->mailbox, sizeof(ev->mailbox));
	if (strcmp(key, "old") == 0)
		return pjson_text(pj, ev->old, sizeof(ev->old));
	if (strcmp(key, "event") == 0)
		return pjson_text(pj, ev->event, sizeof(ev->event));
	if (strcmp(key, "from") == 0)
		return pjson_text(pj, ev->from, sizeof(ev->from));
	if (strcmp(key, "subject") == 0)
		return pjson_text(pj, ev->subject, sizeof(ev->subject));
	if (strcmp(key, "date") == 0)
		return pjson_text(pj, ev->date, sizeof(ev->date));
	if (strcmp(key, "reason") == 0)
		return pjson_text(pj, ev->reason, sizeof(ev->reason));
	if (strcmp(key, "time") == 0) {
		if (pjson_text(pj, time_buf, sizeof(time_buf)) < 0)
			return -1;
		if (ev->date[0] == '\0')
			str_copy(ev->date, time_buf, sizeof(ev->date));
		return 0;
	}
	if (strcmp(key, "uidvalidity") == 0) {
		if (pjson_uint(pj, key, UINT32_MAX, &v) < 0)
			return -1;
		ev->uidvalidity = (uint32_t)v;
		ev->has_uidvalidity = true;
		return 0;
	}
	if (strcmp(key, "uid") == 0) {
		if (pjson_uint(pj, key, UINT32_MAX, &v) < 0)
			return -1;
		ev->uid = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "size") == 0)
		return pjson_uint(pj, key, UINT64_MAX, &ev->size);
	if (strcmp(key, "replay") == 0) {
		if (pj->p < pj->end && *pj->p == 't') {
			ev->replay = true;
			return pjson_word(pj, "true");
		}
		ev->replay = false;
		return pjson_word(pj, "false") < 0 ? pjson_fail(pj, "\"replay\" is not a boolean")
		                                   : 0;
	}
	if (strcmp(key, "flags") == 0) {
		ev->flags[0] = '\0';
		return pjson_flags(pj, ev);
	}
	return pjson_skip(pj, 1);
}

int
push_event_parse(const char *line, size_t len, struct push_event *ev, char *error, size_t errsize)
{
	struct pjson pj = {line, line + len, error, errsize};
	char key[32];

	if (error != NULL && errsize > 0)
		error[0] = '\0';
	memset(ev, 0, sizeof(*ev));
	pjson_ws(&pj);
	if (pj.p >= pj.end || *pj.p != '{')
		return pjson_fail(&pj, "an event is not a JSON object");
	pj.p++;
	pjson_ws(&pj);
	if (pj.p < pj.end && *pj.p == '}') {
		pj.p++;
	} else {
		for (;;) {
			struct pjson_out o = {key, sizeof(key), 0, false};

			pjson_ws(&pj);
			if (pjson_string(&pj, &o) < 0)
				return -1;
			pjson_ws(&pj);
			if (pj.p >= pj.end || *pj.p != ':')
				return pjson_fail(&pj, "expected ':'");
			pj.p++;
			pjson_ws(&pj);
			if (pjson_member(&pj, key, o.full, ev) < 0)
				return -1;
			pjson_ws(&pj);
			if (pj.p < pj.end && *pj.p == ',') {
				pj.p++;
				continue;
			}
			if (pj.p < pj.end && *pj.p == '}') {
				pj.p++;
				break;
			}
			return pjson_fail(&pj, "expected ',' or '}'");
		}
	}
	pjson_ws(&pj);
	if (pj.p != pj.end)
		return pjson_fail(&pj, "bytes after the event object");
	ev->type = PUSH_EVENT_OTHER;
	for (size_t i = 0; i < sizeof(push_event_types) / sizeof(push_event_types[0]); i++)
		if (strcmp(ev->type_name, push_event_types[i].name) == 0)
			ev->type = push_event_types[i].type;
	if (ev->type_name[0] == '\0')
		return pjson_fail(&pj, "an event without a \"type\"");
	if (ev->type == PUSH_EVENT_NEW && (ev->mailbox[0] == '\0' || ev->uid == 0))
		return pjson_fail(&pj, "a \"new\" event without a mailbox or a nonzero uid");
	return 0;
}

/* --- the session --- */

struct push_client {
	struct conn *conn;
	bool broken; /* out of step or failed: only close is safe */
	push_event_cb *cb;
	void *arg;
	char caps[256];
	char reply[CLIENT_QUOTE_MAX + 4]; /* the last status line, escaped */
	struct push_event event;          /* scratch for the line being handled */
};

enum push_status { PUSH_STATUS_ERR = 0, PUSH_STATUS_OK, PUSH_STATUS_CONT };

/* Parses an event line and hands it over. -1 with error for a malformed one. */
static int
push_client_event(struct push_client *c, const char *line, size_t len, char *error, size_t errsize)
{
	char why[256], q[CLIENT_QUOTE_MAX];

	if (push_event_parse(line, len, &c->event, why, sizeof(why)) < 0) {
		snprintf(error, errsize, "malformed event from %s (%s): \"%s\"", conn_peer(c->conn),
		         why, client_quote(q, sizeof(q), line, len));
		c->broken = true;
		return -1;
	}
	if (c->cb != NULL)
		c->cb(&c->event, c->arg);
	return 0;
}

/* Reads lines up to a status line, handing events over on the way: PUSH_STATUS_OK (+OK, its
 * text kept in c->reply), PUSH_STATUS_ERR (-ERR, the same), PUSH_STATUS_CONT ("+"), or -1 with
 * error. */
static int
push_client_status(struct push_client *c, char *error, size_t errsize)
{
	for (;;) {
		const char *line;
		size_t len;

		if (conn_read_line(c->conn, &line, &len, error, errsize) < 0) {
			c->broken = true;
			return -1;
		}
		if (len == 0)
			continue;
		if (line[0] == '{') {
			if (push_client_event(c, line, len, error, errsize) < 0)
				return -1;
			continue;
		}
		client_quote(c->reply, sizeof(c->reply), line, len);
		if (strncmp(line, "+OK", 3) == 0 && (len == 3 || line[3] == ' '))
			return PUSH_STATUS_OK;
		if (strncmp(line, "-ERR", 4) == 0 && (len == 4 || line[4] == ' '))
			return PUSH_STATUS_ERR;
		if (line[0] == '+' && (len == 1 || line[1] == ' '))
			return PUSH_STATUS_CONT;
		snprintf(error, errsize, "malformed response from %s: \"%s\"", conn_peer(c->conn),
		         c->reply);
		c->broken = true;
		return -1;
	}
}

/* Sends one command line and reads its status; on -ERR, error is "what: -ERR ...". */
static int
push_client_command(struct push_client *c, const char *what, const char *line, char *error,
                    size_t errsize)
{
	int r;

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	if (conn_printf(c->conn, error, errsize, "%s\r\n", line) != 0) {
		c->broken = true;
		return -1;
	}
	r = push_client_status(c, error, errsize);
	if (r == PUSH_STATUS_ERR)
		snprintf(error, errsize, "%s: %s", what, c->reply);
	if (r == PUSH_STATUS_CONT) {
		snprintf(error, errsize, "unexpected continuation from %s after %s",
		         conn_peer(c->conn), what);
		c->broken = true;
		return -1;
	}
	return r;
}

/* CAPA: keeps the words after +OK. */
static int
push_client_capa(struct push_client *c, char *error, size_t errsize)
{
	int r = push_client_command(c, "CAPA", "CAPA", error, errsize);

	if (r != PUSH_STATUS_OK)
		return -1;
	/* c->reply is escaped server text: fine for matching whole words. */
	str_copy(c->caps, c->reply[3] == ' ' ? c->reply + 4 : "", sizeof(c->caps));
	return 0;
}

/* True when the capability list has word (whole, case-insensitive). */
static bool
push_client_has_cap(const struct push_client *c, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = c->caps; *p != '\0';) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e != '\0' && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && strncasecmp(p, word, n) == 0)
			return true;
		p = e;
	}
	return false;
}

/* AUTH PLAIN with the initial response. 0, -1, or -2 when refused. */
static int
push_client_auth(struct push_client *c, const char *user, const char *password, char *error,
                 size_t errsize)
{
	char b64[4 * SASL_FIELD_MAX], line[4 * SASL_FIELD_MAX + 16];
	size_t ulen = strlen(user), plen = password != NULL ? strlen(password) : 0;
	int r;

	if (ulen == 0 || ulen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX ||
	    4 * ((2 + ulen + plen + 2) / 3) + 11 > PUSH_CLIENT_LINE_OUT) {
		snprintf(error, errsize, "user name empty or user name and password too long");
		return -2;
	}
	sasl_plain_encode(user, password, b64, sizeof(b64));
	snprintf(line, sizeof(line), "AUTH PLAIN %s", b64);
	r = push_client_command(c, "server refused login", line, error, errsize);
	explicit_bzero(b64, sizeof(b64));
	explicit_bzero(line, sizeof(line));
	if (r == PUSH_STATUS_OK)
		return 0;
	return r == PUSH_STATUS_ERR ? -2 : -1;
}

/* The session on a connected conn (owned from here on). */
static int
push_client_start(struct conn *conn, const struct conn_options *options, const char *user,
                  const char *password, push_event_cb *cb, void *arg, struct push_client **client_r,
                  char *error, size_t errsize)
{
	struct push_client *c = xcalloc(1, sizeof(*c));
	int r;

	c->conn = conn;
	c->cb = cb;
	c->arg = arg;
	r = push_client_status(c, error, errsize);
	if (r < 0) {
		client_error_prefix(error, errsize, "reading the push greeting");
		goto fail;
	}
	if (r != PUSH_STATUS_OK) {
		snprintf(error, errsize, "%s refused the session: \"%s\"", conn_peer(c->conn),
		         c->reply);
		c->broken = true;
		goto fail;
	}
	if (push_client_capa(c, error, errsize) < 0)
		goto fail;
	if (options->security == CONN_SECURITY_STARTTLS) {
		if (!push_client_has_cap(c, "STARTTLS")) {
			snprintf(error, errsize, "%s does not offer STARTTLS", conn_peer(c->conn));
			r = -2;
			goto fail;
		}
		if (push_client_command(c, "STARTTLS refused", "STARTTLS", error, errsize) !=
		        PUSH_STATUS_OK ||
		    conn_starttls(c->conn, error, errsize) != 0) {
			c->broken = true;
			goto fail;
		}
		/* What was said before TLS may have been forged: ask again. */
		if (push_client_capa(c, error, errsize) < 0)
			goto fail;
	}
	if (user != NULL && (r = push_client_auth(c, user, password, error, errsize)) < 0)
		goto fail;
	*client_r = c;
	return 0;
fail:
	push_client_logout(&c);
	return r == -2 ? -2 : -1;
}

int
push_client_open_conn(struct conn *conn, const struct conn_options *options, const char *user,
                      const char *password, push_event_cb *cb, void *arg,
                      struct push_client **client_r, char *error, size_t errsize)
{
	*client_r = NULL;
	return push_client_start(conn, options, user, password, cb, arg, client_r, error, errsize);
}

int
push_client_open_fd(int fd, const struct conn_options *options, const char *user,
                    const char *password, push_event_cb *cb, void *arg,
                    struct push_client **client_r, char *error, size_t errsize)
{
	struct conn *conn;

	*client_r = NULL;
	if (conn_from_fd(fd, options, &conn, error, errsize) != 0)
		return -1;
	return push_client_start(conn, options, user, password, cb, arg, client_r, error, errsize);
}

/* Writes mailbox as the protocol's argument: bare, or "quoted" with \ before " and \ when it
 * holds a space, a quote or a backslash. -1 for a name that cannot be sent. */
static int
push_client_mailbox_arg(const char *mailbox, char *out, size_t outsize)
{
	size_t len = strlen(mailbox), o = 0;
	bool quote = len == 0;

	if (len > PUSH_MAILBOX_MAX)
		return -1;
	for (const char *p = mailbox; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -1;
		quote |= *p == ' ' || *p == '"' || *p == '\\';
	}
	if (!quote)
		return str_copy(out, mailbox, outsize) < outsize ? 0 : -1;
	if (2 * len + 3 > outsize)
		return -1;
	out[o++] = '"';
	for (const char *p = mailbox; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o++] = '"';
	out[o] = '\0';
	return 0;
}

int
push_client_watch(struct push_client *c, const char *mailbox, bool since, uint32_t since_uid,
                  char *error, size_t errsize)
{
	char arg[2 * PUSH_MAILBOX_MAX + 3], line[2 * PUSH_MAILBOX_MAX + 40];
	int r;

	if (push_client_mailbox_arg(mailbox, arg, sizeof(arg)) < 0) {
		snprintf(error, errsize, "invalid mailbox name (control characters or too long)");
		return -2;
	}
	if (since)
		snprintf(line, sizeof(line), "WATCH %s SINCE %" PRIu32, arg, since_uid);
	else
		snprintf(line, sizeof(line), "WATCH %s", arg);
	r = push_client_command(c, "server refused WATCH", line, error, errsize);
	if (r == PUSH_STATUS_OK)
		return 0;
	return r == PUSH_STATUS_ERR ? -2 : -1;
}

int
push_client_read(struct push_client *c, char *error, size_t errsize)
{
	char q[CLIENT_QUOTE_MAX];

	if (c->broken) {
		snprintf(error, errsize, "the connection to %s is no longer usable",
		         conn_peer(c->conn));
		return -1;
	}
	for (;;) {
		const char *line;
		size_t len;

		if (conn_read_line(c->conn, &line, &len, error, errsize) < 0) {
			c->broken = true;
			return -1;
		}
		if (len == 0)
			continue;
		if (line[0] == '{')
			return push_client_event(c, line, len, error, errsize) < 0 ? -1 : 1;
		/* A status line nobody asked for (a server going away says why with -ERR), or
		 * neither a status nor an event. */
		client_quote(q, sizeof(q), line, len);
		if (strncmp(line, "-ERR", 4) == 0 || strncmp(line, "+OK", 3) == 0)
			snprintf(error, errsize, "%s said: \"%s\"", conn_peer(c->conn), q);
		else
			snprintf(error, errsize, "malformed line from %s: \"%s\"",
			         conn_peer(c->conn), q);
		c->broken = true;
		return -1;
	}
}

int
push_client_noop(struct push_client *c, char *error, size_t errsize)
{
	int r = push_client_command(c, "NOOP", "NOOP", error, errsize);

	if (r == PUSH_STATUS_OK)
		return 0;
	c->broken = true;
	return -1;
}

size_t
push_client_buffered(const struct push_client *c)
{
	return conn_buffered(c->conn);
}

const char *
push_client_capabilities(const struct push_client *c)
{
	return c->caps;
}

void
push_client_logout(struct push_client **clientp)
{
	struct push_client *c = *clientp;

	if (c == NULL)
		return;
	if (c->conn != NULL && !c->broken) {
		char ignored[256];

		c->cb = NULL; /* events racing the LOGOUT are not reported any more */
		push_client_command(c, "LOGOUT", "LOGOUT", ignored, sizeof(ignored));
	}
	conn_close(&c->conn);
	free(c);
	*clientp = NULL;
}
