/* mimestruct: a message's MIME structure (see mimestruct.h): the scanner that finds every part's
 * header and body, the versioned serialization, section lookup and the IMAP strings (ENVELOPE,
 * BODY, BODYSTRUCTURE, HEADER.FIELDS). Every input byte is hostile: nesting, part count, stored
 * value sizes and parameter counts are capped, and a blob is checked whole before it is used. */
#include "mime/mimestruct.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/util.h"

#define MS_MAGIC "TMS"
#define MS_VERSION 1
#define MS_BOUNDARY_MAX 200          /* longer boundaries are ignored (RFC 2046 says 70) */
#define MS_STRINGS_MAX (1024 * 1024) /* stored header values of one message, together */
#define MS_PARAMS_MAX 64             /* parameters of one Content-Type/-Disposition */
#define MS_WORDS_MAX 128             /* tokens of one address */
#define MS_QUOTED_MAX 1024           /* longer strings are sent as literals */

enum ms_kind { MS_LEAF = 0, MS_MULTIPART = 1, MS_MESSAGE = 2 };

/* Where a part's type comes from when its Content-Type is absent or invalid (or ignored). */
enum ms_mode {
	MS_MODE_PLAIN = 0,  /* text/plain; charset=us-ascii */
	MS_MODE_DIGEST = 1, /* message/rfc822: a part of multipart/digest */
	MS_MODE_OPAQUE = 2, /* application/octet-stream whatever it says: past the nesting limit */
};

/* The MIME fields kept for every part, and the envelope fields of a message's header. */
enum ms_field {
	MSF_TYPE,
	MSF_ENCODING,
	MSF_ID,
	MSF_DESC,
	MSF_DISP,
	MSF_LANG,
	MSF_LOC,
	MSF_MD5,
	MSF_N
};
enum ms_env {
	MSE_DATE,
	MSE_SUBJECT,
	MSE_FROM,
	MSE_SENDER,
	MSE_REPLY_TO,
	MSE_TO,
	MSE_CC,
	MSE_BCC,
	MSE_IN_REPLY_TO,
	MSE_MESSAGE_ID,
	MSE_N
};

static const char *const ms_field_names[MSF_N] = {
    "Content-Type",        "Content-Transfer-Encoding", "Content-ID",       "Content-Description",
    "Content-Disposition", "Content-Language",          "Content-Location", "Content-MD5"};
static const char *const ms_env_names[MSE_N] = {"Date",        "Subject",   "From", "Sender",
                                                "Reply-To",    "To",        "Cc",   "Bcc",
                                                "In-Reply-To", "Message-ID"};

/* A string kept in ms->strs; absent when !set. */
struct ms_str {
	uint32_t off, len;
	bool set;
};

struct ms_part {
	uint8_t kind, mode;
	bool env; /* a message's header: e[] holds its envelope fields */
	uint32_t nchildren;
	uint32_t first, next; /* first child, next sibling (0: none; part 0 is the root) */
	struct mimestruct_range header, body;
	struct ms_str f[MSF_N];
	struct ms_str e[MSE_N];
};

struct mimestruct {
	struct buf strs; /* the strings (built) or a copy of the blob (loaded) */
	struct ms_part *parts;
	size_t nparts, partscap;
};

/* ---------- output helpers ---------- */

/* An IMAP string: quoted when it can be, a literal when it holds CR, LF, NUL or 8-bit bytes. */
static void
ms_put_string(struct buf *out, const char *s, size_t n)
{
	bool literal = n > MS_QUOTED_MAX;
	char num[32];

	for (size_t i = 0; i < n && !literal; i++) {
		unsigned char c = (unsigned char)s[i];

		literal = c == '\0' || c == '\r' || c == '\n' || c >= 0x80;
	}
	if (literal) {
		snprintf(num, sizeof(num), "{%zu}\r\n", n);
		buf_adds(out, num);
		buf_add(out, s, n);
		return;
	}
	buf_add(out, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_add(out, "\\", 1);
		buf_add(out, s + i, 1);
	}
	buf_add(out, "\"", 1);
}

static const char *
ms_sp(const struct mimestruct *ms, const struct ms_str *s)
{
	return ms->strs.data + s->off;
}

static void
ms_put_nstring(const struct mimestruct *ms, const struct ms_str *s, struct buf *out)
{
	if (!s->set)
		buf_adds(out, "NIL");
	else
		ms_put_string(out, ms_sp(ms, s), s->len);
}

/* ---------- RFC 822 lexing ---------- */

static bool
ms_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips white space and (nested) comments; the last comment's text goes to *comment_r. */
static const char *
ms_cfws(const char *p, const char *end, const char **comment_r, size_t *clen_r)
{
	while (p < end) {
		if (ms_is_space(*p)) {
			p++;
			continue;
		}
		if (*p != '(')
			break;
		const char *start = ++p;
		unsigned level = 1;

		while (p < end && level > 0) {
			if (*p == '\\' && p + 1 < end)
				p++;
			else if (*p == '(')
				level++;
			else if (*p == ')')
				level--;
			p++;
		}
		if (comment_r != NULL) {
			*comment_r = start;
			*clen_r = (size_t)(p - start) - (level == 0 ? 1 : 0);
		}
	}
	return p;
}

/* An RFC 2045 token (8-bit bytes allowed, as mail has them). */
static bool
ms_is_token_char(char c)
{
	return (unsigned char)c > ' ' && c != 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static const char *
ms_token(const char *p, const char *end)
{
	while (p < end && ms_is_token_char(*p))
		p++;
	return p;
}

/* A quoted string at p (*p == '"'): appends its content unescaped to out; returns the end. */
static const char *
ms_quoted(const char *p, const char *end, struct buf *out)
{
	for (p++; p < end && *p != '"'; p++) {
		if (*p == '\\' && p + 1 < end)
			p++;
		if (*p == '\r' || *p == '\n')
			continue;
		buf_add(out, p, 1);
	}
	return p < end ? p + 1 : p;
}

/* ---------- Content-Type and parameters ---------- */

struct ms_ctype {
	const char *type, *sub, *params, *end;
	size_t tlen, slen;
};

/* type "/" subtype; false when either is missing (the RFC 2045 default then applies). */
static bool
ms_ctype_parse(const char *v, size_t n, struct ms_ctype *ct)
{
	const char *end = v + n, *p;

	p = ms_cfws(v, end, NULL, NULL);
	ct->type = p;
	p = ms_token(p, end);
	ct->tlen = (size_t)(p - ct->type);
	p = ms_cfws(p, end, NULL, NULL);
	if (ct->tlen == 0 || p >= end || *p != '/')
		return false;
	p = ms_cfws(p + 1, end, NULL, NULL);
	ct->sub = p;
	p = ms_token(p, end);
	ct->slen = (size_t)(p - ct->sub);
	ct->params = p;
	ct->end = end;
	return ct->slen > 0;
}

struct ms_param {
	const char *name;
	size_t nlen;
	size_t voff, vlen; /* in the values buffer */
	int section;       /* RFC 2231 continuation number, -1 for none */
	bool extended;     /* name*0* or name* */
};

static const char *
ms_skip_param(const char *p, const char *end)
{
	while (p < end && *p != ';') {
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\' && p + 1 < end)
					p++;
		}
		if (p < end)
			p++;
	}
	return p;
}

/* Parses "; name=value" parameters (values unescaped into vals); those without a value are
 * dropped, as Dovecot does. Returns the count (at most MS_PARAMS_MAX). */
static size_t
ms_params_parse(const char *p, const char *end, struct ms_param *prm, struct buf *vals)
{
	size_t n = 0;

	buf_add(vals, "", 0); /* never NULL, even with no value */
	while (n < MS_PARAMS_MAX) {
		const char *name, *q;
		size_t voff;

		p = ms_cfws(p, end, NULL, NULL);
		if (p >= end)
			break;
		if (*p != ';') {
			p = ms_skip_param(p, end);
			continue;
		}
		p = ms_cfws(p + 1, end, NULL, NULL);
		name = p;
		p = ms_token(p, end);
		if (p == name)
			continue;
		prm[n].name = name;
		prm[n].nlen = (size_t)(p - name);
		p = ms_cfws(p, end, NULL, NULL);
		if (p >= end || *p != '=')
			continue;
		p = ms_cfws(p + 1, end, NULL, NULL);
		voff = vals->len;
		if (p < end && *p == '"') {
			p = ms_quoted(p, end, vals);
		} else {
			for (q = p;
			     q < end && *q != ';' && !ms_is_space(*q) && *q != '"' && *q != '(';)
				q++;
			buf_add(vals, p, (size_t)(q - p));
			p = q;
			if (q == name + prm[n].nlen + 1 || vals->len == voff)
				continue; /* "b=" */
		}
		prm[n].voff = voff;
		prm[n].vlen = vals->len - voff;
		prm[n].section = -1;
		prm[n].extended = false;
		/* RFC 2231: name*N, name*N*, name* */
		q = memchr(name, '*', prm[n].nlen);
		if (q != NULL) {
			const char *ne = name + prm[n].nlen, *d = q + 1;
			int sec = 0;
			bool digits = false;

			while (d < ne && *d >= '0' && *d <= '9' && sec < 10000) {
				sec = sec * 10 + (*d++ - '0');
				digits = true;
			}
			if (digits && (d == ne || (d + 1 == ne && *d == '*'))) {
				prm[n].section = sec;
				prm[n].extended = d < ne;
				prm[n].nlen = (size_t)(q - name);
			}
		}
		n++;
	}
	return n;
}

/* The value of the parameter called name (first one), or NULL. */
static const char *
ms_param_find(const struct ms_param *prm, size_t n, const char *vals, const char *name,
              size_t *len_r)
{
	for (size_t i = 0; i < n; i++) {
		if (prm[i].section < 0 && prm[i].nlen == strlen(name) &&
		    strncasecmp(prm[i].name, name, prm[i].nlen) == 0) {
			*len_r = prm[i].vlen;
			return vals + prm[i].voff;
		}
	}
	return NULL;
}

static bool
ms_param_star(const struct ms_param *p)
{
	return p->section >= 0 || memchr(p->name, '*', p->nlen) != NULL;
}

/* Plain parameters first in their order (by position), then the RFC 2231 ones by name. */
static int
ms_param_cmp(const void *a, const void *b)
{
	const struct ms_param *x = a, *y = b;
	bool sx = ms_param_star(x), sy = ms_param_star(y);
	int c;

	if (sx != sy)
		return sx ? 1 : -1;
	if (sx) {
		c = strncasecmp(x->name, y->name, x->nlen < y->nlen ? x->nlen : y->nlen);
		if (c != 0)
			return c;
		if (x->nlen != y->nlen)
			return x->nlen < y->nlen ? -1 : 1;
	}
	return x->name < y->name ? -1 : x->name > y->name;
}

/* Writes a parameter list "(name value ...)" or NIL: plain parameters in order, then RFC 2231
 * continuations joined (name* when any piece is extended), then charset=us-ascii for a text
 * type that has none. */
static void
ms_params_write(const char *p, const char *end, bool text, struct buf *out)
{
	struct ms_param prm[MS_PARAMS_MAX];
	struct buf vals = BUF_INIT, joined = BUF_INIT;
	size_t n, count = 0;
	bool charset = false, done[MS_PARAMS_MAX] = {false};

	n = p != NULL ? ms_params_parse(p, end, prm, &vals) : 0;
	/* Plain ones in order; then RFC 2231 ones (name*, name*N) by name, as Dovecot does. */
	qsort(prm, n, sizeof(prm[0]), ms_param_cmp);
	for (size_t i = 0; i < n; i++) {
		if (ms_param_star(&prm[i]))
			continue;
		buf_adds(out, count++ == 0 ? "(" : " ");
		ms_put_string(out, prm[i].name, prm[i].nlen);
		buf_adds(out, " ");
		ms_put_string(out, vals.data + prm[i].voff, prm[i].vlen);
		if (prm[i].nlen >= 7 && strncasecmp(prm[i].name, "charset", 7) == 0 &&
		    (prm[i].nlen == 7 || prm[i].name[7] == '*'))
			charset = true;
	}
	for (size_t i = 0; i < n; i++) {
		bool ext = false, found = false;

		if (!ms_param_star(&prm[i]) || done[i])
			continue;
		if (prm[i].section < 0) {
			buf_adds(out, count++ == 0 ? "(" : " ");
			ms_put_string(out, prm[i].name, prm[i].nlen);
			buf_adds(out, " ");
			ms_put_string(out, vals.data + prm[i].voff, prm[i].vlen);
			if (prm[i].nlen == 8 && strncasecmp(prm[i].name, "charset*", 8) == 0)
				charset = true;
			continue;
		}
		buf_truncate(&joined, 0);
		/* Pieces 0, 1, 2, ... in order, as long as they follow each other. */
		for (int sec = 0;; sec++) {
			size_t k;

			for (k = i; k < n; k++)
				if (!done[k] && prm[k].section == sec &&
				    prm[k].nlen == prm[i].nlen &&
				    strncasecmp(prm[k].name, prm[i].name, prm[i].nlen) == 0)
					break;
			if (k == n)
				break;
			done[k] = true;
			found = true;
			ext = ext || prm[k].extended;
			buf_add(&joined, vals.data + prm[k].voff, prm[k].vlen);
		}
		done[i] = true;
		if (!found)
			continue; /* no piece 0 */
		buf_adds(out, count++ == 0 ? "(" : " ");
		buf_add(&joined, "", 0);
		{
			char name[MIMESTRUCT_VALUE_MAX + 2];
			size_t nl = prm[i].nlen < MIMESTRUCT_VALUE_MAX ? prm[i].nlen : 0;

			memcpy(name, prm[i].name, nl);
			if (ext)
				name[nl++] = '*';
			ms_put_string(out, name, nl);
		}
		buf_adds(out, " ");
		ms_put_string(out, joined.data, joined.len);
		if (prm[i].nlen == 7 && strncasecmp(prm[i].name, "charset", 7) == 0)
			charset = true;
	}
	if (text && !charset) {
		buf_adds(out, count++ == 0 ? "(" : " ");
		buf_adds(out, "\"charset\" \"us-ascii\"");
	}
	buf_adds(out, count > 0 ? ")" : "NIL");
	buf_free(&vals);
	buf_free(&joined);
}

/* ---------- the scanner ---------- */

static bool ms_is(const char *s, size_t n, const char *word);

struct ms_builder {
	struct mimestruct ms;
	const char *d;
	size_t n;
	char bnd[MIMESTRUCT_MAX_DEPTH + 1][MS_BOUNDARY_MAX];
	size_t bndlen[MIMESTRUCT_MAX_DEPTH + 1];
	size_t nbnd;
};

/* How a part's content ended: at a boundary line of an enclosing multipart or at the end. */
struct ms_scan {
	size_t end;  /* content end: before the line end that belongs to the boundary */
	size_t next; /* where the boundary line starts (n at the end) */
	int bidx;    /* the boundary's level, -1 at the end */
	bool close;  /* "--boundary--" */
};

/* The active boundary whose "--boundary" starts the line at q (the longest match; the innermost
 * of equal ones), or -1. */
static int
ms_boundary_at(const struct ms_builder *b, size_t q, bool *close_r)
{
	const char *d = b->d + q;
	size_t left = b->n - q;
	int best = -1;

	if (left < 2 || d[0] != '-' || d[1] != '-')
		return -1;
	for (int i = (int)b->nbnd - 1; i >= 0; i--) {
		size_t bl = b->bndlen[i];

		if (bl + 2 > left || memcmp(d + 2, b->bnd[i], bl) != 0)
			continue;
		if (best < 0 || bl > b->bndlen[best])
			best = i;
	}
	if (best >= 0) {
		size_t e = 2 + b->bndlen[best];

		*close_r = e + 2 <= left && d[e] == '-' && d[e + 1] == '-';
	}
	return best;
}

/* Scans from the line start pos to the next boundary line, or the end. */
static struct ms_scan
ms_find_boundary(const struct ms_builder *b, size_t pos, size_t content_start)
{
	struct ms_scan s = {.end = b->n, .next = b->n, .bidx = -1, .close = false};
	size_t q = pos;

	while (b->nbnd > 0 && q < b->n) {
		const char *nl;

		s.bidx = ms_boundary_at(b, q, &s.close);
		if (s.bidx >= 0) {
			s.next = q;
			s.end = q;
			if (s.end > content_start && b->d[s.end - 1] == '\n')
				s.end--;
			if (s.end > content_start && b->d[s.end - 1] == '\r')
				s.end--;
			return s;
		}
		nl = memchr(b->d + q, '\n', b->n - q);
		if (nl == NULL)
			break;
		q = (size_t)(nl - b->d) + 1;
	}
	s.bidx = -1;
	s.close = false;
	return s;
}

static size_t
ms_line_after(const struct ms_builder *b, size_t q)
{
	const char *nl = memchr(b->d + q, '\n', b->n - q);

	return nl == NULL ? b->n : (size_t)(nl - b->d) + 1;
}

/* Counts the lines and bare LFs of a range. */
static void
ms_measure(const char *d, struct mimestruct_range *r)
{
	const char *p = d + r->offset, *end = p + r->len, *nl;

	r->wire_len = r->len;
	r->lines = 0;
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		r->lines++;
		if (nl == d + r->offset || nl[-1] != '\r')
			r->wire_len++;
		p = nl + 1;
	}
}

/* Stores s[0..n) (capped) as a string of ms->strs. */
static void
ms_store(struct mimestruct *ms, struct ms_str *dst, const char *s, size_t n)
{
	if (n > MIMESTRUCT_VALUE_MAX)
		n = MIMESTRUCT_VALUE_MAX;
	if (ms->strs.len + n > MS_STRINGS_MAX)
		n = 0;
	dst->off = (uint32_t)ms->strs.len;
	dst->len = (uint32_t)n;
	dst->set = true;
	buf_add(&ms->strs, s, n);
}

/* Stores one header field's unfolded value (line ends removed, leading white space skipped). */
static void
ms_store_value(struct mimestruct *ms, struct ms_str *dst, const char *v, const char *end)
{
	char tmp[MIMESTRUCT_VALUE_MAX];
	size_t n = 0;

	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	for (; v < end && n < sizeof(tmp); v++) {
		if (*v == '\n' || (*v == '\r' && v + 1 < end && v[1] == '\n'))
			continue;
		tmp[n++] = *v;
	}
	while (n > 0 && (tmp[n - 1] == '\r' || tmp[n - 1] == ' ' || tmp[n - 1] == '\t'))
		n--;
	ms_store(ms, dst, tmp, n);
}

static uint32_t
ms_part_new(struct ms_builder *b)
{
	struct mimestruct *ms = &b->ms;

	if (ms->nparts == ms->partscap) {
		ms->partscap = ms->partscap == 0 ? 8 : 2 * ms->partscap;
		ms->parts = xrealloc(ms->parts, ms->partscap * sizeof(*ms->parts));
	}
	memset(&ms->parts[ms->nparts], 0, sizeof(ms->parts[0]));
	return (uint32_t)ms->nparts++;
}

/* Reads the header block at pos into part pi's fields; returns where the body starts: after the
 * blank line, or the end, or (*cut_r set) the start of a boundary line that cut it short. */
static size_t
ms_header_parse(struct ms_builder *b, size_t pos, uint32_t pi, bool *cut_r)
{
	const char *d = b->d;
	size_t q = pos, n = b->n;
	bool close, mime = false;

	while (q < n) {
		size_t le = ms_line_after(b, q), fe = le, nlen;
		const char *colon;
		struct ms_part *p = &b->ms.parts[pi];

		if (d[q] == '\n' || (d[q] == '\r' && (q + 1 == n || d[q + 1] == '\n'))) {
			q = le;
			break;
		}
		if (ms_boundary_at(b, q, &close) >= 0) {
			*cut_r = true;
			break;
		}
		while (fe < n && (d[fe] == ' ' || d[fe] == '\t'))
			fe = ms_line_after(b, fe);
		colon = memchr(d + q, ':', le - q);
		if (colon == NULL) {
			q = fe;
			continue;
		}
		nlen = (size_t)(colon - (d + q));
		while (nlen > 0 && (d[q + nlen - 1] == ' ' || d[q + nlen - 1] == '\t'))
			nlen--;
		mime = mime || ms_is(d + q, nlen, "MIME-Version");
		for (int i = 0; i < MSF_N; i++) {
			if (strlen(ms_field_names[i]) == nlen && !p->f[i].set &&
			    strncasecmp(d + q, ms_field_names[i], nlen) == 0)
				ms_store_value(&b->ms, &p->f[i], colon + 1, d + fe);
		}
		for (int i = 0; p->env && i < MSE_N; i++) {
			if (strlen(ms_env_names[i]) == nlen &&
			    strncasecmp(d + q, ms_env_names[i], nlen) == 0)
				ms_store_value(&b->ms, &p->e[i], colon + 1, d + fe); /* last wins */
		}
		q = fe;
	}
	/* A message header without MIME-Version or Content-Type is not MIME (RFC 2045 4): its
	 * Content-* fields are ignored, as Dovecot does. */
	if (b->ms.parts[pi].env && !mime && !b->ms.parts[pi].f[MSF_TYPE].set)
		memset(b->ms.parts[pi].f, 0, sizeof(b->ms.parts[pi].f));
	return q;
}

/* The type a part is described with (Content-Type, or the default of its mode). */
static void
ms_part_type(const struct mimestruct *ms, const struct ms_part *p, struct ms_ctype *ct)
{
	static const char plain[] = "text/plain", digest[] = "message/rfc822";

	if (p->mode != MS_MODE_OPAQUE && p->f[MSF_TYPE].set &&
	    ms_ctype_parse(ms_sp(ms, &p->f[MSF_TYPE]), p->f[MSF_TYPE].len, ct))
		return;
	if (p->mode == MS_MODE_OPAQUE) {
		ms_ctype_parse("application/octet-stream", 24, ct);
		ct->params = NULL;
		return;
	}
	if (p->mode == MS_MODE_DIGEST)
		ms_ctype_parse(digest, sizeof(digest) - 1, ct);
	else
		ms_ctype_parse(plain, sizeof(plain) - 1, ct);
}

static bool
ms_is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* Parses the entity (header and body) at pos; returns how its content ended. */
static struct ms_scan
ms_parse_part(struct ms_builder *b, size_t pos, unsigned depth, enum ms_mode mode, bool env)
{
	uint32_t pi = ms_part_new(b);
	struct ms_part *p = &b->ms.parts[pi];
	struct ms_ctype ct;
	struct ms_scan s;
	size_t hend, q;
	unsigned mine;
	bool cut = false;

	p->mode = (uint8_t)mode;
	p->env = env;
	hend = q = ms_header_parse(b, pos, pi, &cut);
	if (cut) { /* the line end before the boundary is the boundary's, as in a body */
		if (hend > pos && b->d[hend - 1] == '\n')
			hend--;
		if (hend > pos && b->d[hend - 1] == '\r')
			hend--;
	}
	p = &b->ms.parts[pi];
	p->header.offset = pos;
	p->header.len = hend - pos;
	p->body.offset = hend;
	ms_part_type(&b->ms, p, &ct);
	if (ms_is(ct.type, ct.tlen, "multipart")) {
		if (depth >= MIMESTRUCT_MAX_DEPTH)
			p->mode = MS_MODE_OPAQUE;
		else
			p->kind = MS_MULTIPART;
	} else if (ms_is(ct.type, ct.tlen, "message") && ms_is(ct.sub, ct.slen, "rfc822")) {
		if (depth >= MIMESTRUCT_MAX_DEPTH || b->ms.nparts >= MIMESTRUCT_MAX_PARTS)
			p->mode = MS_MODE_OPAQUE;
		else
			p->kind = MS_MESSAGE;
	}
	if (cut) {
		/* A boundary cut the header short: no body (and no message inside). */
		if (p->kind == MS_MESSAGE) {
			p->kind = MS_LEAF;
			p->mode = MS_MODE_OPAQUE;
		}
		s = ms_find_boundary(b, q, q);
		s.end = hend;
	} else if (p->kind == MS_MESSAGE) {
		p->nchildren = 1;
		p->first = (uint32_t)b->ms.nparts;
		s = ms_parse_part(b, hend, depth + 1, MS_MODE_PLAIN, true);
	} else if (p->kind == MS_MULTIPART) {
		struct ms_param prm[MS_PARAMS_MAX];
		struct buf vals = BUF_INIT;
		size_t blen = 0, np;
		const char *bv;
		bool is_digest = ms_is(ct.sub, ct.slen, "digest");
		uint32_t last = 0;

		np = ms_params_parse(ct.params, ct.end, prm, &vals);
		bv = ms_param_find(prm, np, vals.data, "boundary", &blen);
		if (bv == NULL || blen == 0 || blen > MS_BOUNDARY_MAX) {
			buf_free(&vals);
			s = ms_find_boundary(b, hend, hend);
			goto done;
		}
		mine = (unsigned)b->nbnd++;
		memcpy(b->bnd[mine], bv, blen);
		b->bndlen[mine] = blen;
		buf_free(&vals);
		s = ms_find_boundary(b, hend, hend); /* the preamble */
		while (s.bidx == (int)mine && !s.close) {
			size_t start = ms_line_after(b, s.next);
			uint32_t ci;

			if (b->ms.nparts >= MIMESTRUCT_MAX_PARTS) {
				s = ms_find_boundary(b, start, start);
				continue;
			}
			ci = (uint32_t)b->ms.nparts;
			if (last == 0)
				b->ms.parts[pi].first = ci;
			else
				b->ms.parts[last].next = ci;
			last = ci;
			b->ms.parts[pi].nchildren++;
			s = ms_parse_part(b, start, depth + 1,
			                  is_digest ? MS_MODE_DIGEST : MS_MODE_PLAIN, false);
		}
		b->nbnd = mine;
		if (s.bidx == (int)mine) { /* the close delimiter: the epilogue follows */
			size_t ep = ms_line_after(b, s.next);

			s = ms_find_boundary(b, ep, ep);
		}
	} else {
		s = ms_find_boundary(b, hend, hend);
	}
done:
	p = &b->ms.parts[pi];
	if (s.end < hend)
		s.end = hend;
	p->body.len = s.end - hend;
	ms_measure(b->d, &p->header);
	ms_measure(b->d, &p->body);
	return s;
}

/* ---------- serialization ---------- */

static void
ms_put_varint(struct buf *out, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;

	do {
		tmp[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			tmp[n] |= 0x80;
		n++;
	} while (v != 0);
	buf_add(out, tmp, n);
}

static void
ms_put_str(const struct mimestruct *ms, const struct ms_str *s, struct buf *out)
{
	ms_put_varint(out, s->set ? (uint64_t)s->len + 1 : 0);
	if (s->set)
		buf_add(out, ms_sp(ms, s), s->len);
}

static void
ms_put_range(const struct mimestruct_range *r, struct buf *out)
{
	ms_put_varint(out, r->offset);
	ms_put_varint(out, r->len);
	ms_put_varint(out, r->wire_len - r->len);
	ms_put_varint(out, r->lines);
}

static void
ms_serialize(const struct mimestruct *ms, unsigned char **blob_r, size_t *len_r)
{
	struct buf out = BUF_INIT;

	buf_adds(&out, MS_MAGIC);
	ms_put_varint(&out, MS_VERSION);
	ms_put_varint(&out, ms->nparts);
	for (size_t i = 0; i < ms->nparts; i++) {
		const struct ms_part *p = &ms->parts[i];

		ms_put_varint(&out,
		              (uint64_t)p->kind | (uint64_t)p->mode << 2 | (uint64_t)p->env << 4);
		ms_put_varint(&out, p->nchildren);
		ms_put_range(&p->header, &out);
		ms_put_range(&p->body, &out);
		for (int f = 0; f < MSF_N; f++)
			ms_put_str(ms, &p->f[f], &out);
		for (int f = 0; p->env && f < MSE_N; f++)
			ms_put_str(ms, &p->e[f], &out);
	}
	*len_r = out.len;
	*blob_r = (unsigned char *)buf_steal(&out);
}

static void
ms_clear(struct mimestruct *ms)
{
	buf_free(&ms->strs);
	free(ms->parts);
	memset(ms, 0, sizeof(*ms));
}

int
mimestruct_build_buffer(const char *data, size_t len, unsigned char **blob_r, size_t *len_r)
{
	struct ms_builder *b = xcalloc(1, sizeof(*b));

	b->d = data != NULL ? data : "";
	b->n = data != NULL ? len : 0;
	ms_parse_part(b, 0, 0, MS_MODE_PLAIN, true);
	ms_serialize(&b->ms, blob_r, len_r);
	ms_clear(&b->ms);
	free(b);
	return 0;
}

int
mimestruct_build_fd(int fd, unsigned char **blob_r, size_t *len_r)
{
	struct stat st;
	void *map;
	int ret;

	*blob_r = NULL;
	*len_r = 0;
	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size == 0)
		return mimestruct_build_buffer("", 0, blob_r, len_r);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	ret = mimestruct_build_buffer(map, (size_t)st.st_size, blob_r, len_r);
	munmap(map, (size_t)st.st_size);
	return ret;
}

/* ---------- loading ---------- */

struct ms_reader {
	const unsigned char *p, *end;
	bool bad;
};

static uint64_t
ms_get_varint(struct ms_reader *r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		unsigned char c = *r->p++;

		if (shift == 63 && (c & 0x7e) != 0) {
			r->bad = true;
			return 0;
		}
		v |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0)
			return v;
	}
	r->bad = true;
	return 0;
}

static void
ms_get_str(struct ms_reader *r, const unsigned char *base, struct ms_str *s)
{
	uint64_t n = ms_get_varint(r);

	s->set = n > 0;
	s->len = 0;
	s->off = 0;
	if (n == 0)
		return;
	n--;
	if (n > MIMESTRUCT_VALUE_MAX || n > (uint64_t)(r->end - r->p)) {
		r->bad = true;
		s->set = false;
		return;
	}
	s->off = (uint32_t)(r->p - base);
	s->len = (uint32_t)n;
	r->p += n;
}

static void
ms_get_range(struct ms_reader *r, struct mimestruct_range *range)
{
	uint64_t extra;

	range->offset = ms_get_varint(r);
	range->len = ms_get_varint(r);
	extra = ms_get_varint(r);
	range->lines = ms_get_varint(r);
	if (range->offset > UINT64_MAX / 4 || range->len > UINT64_MAX / 4 || extra > range->len ||
	    range->lines > range->len)
		r->bad = true;
	range->wire_len = range->len + extra;
}

/* Links part i's children (preorder: each child follows its parent or previous sibling's
 * subtree); returns the index after i's subtree, or 0 when the tree is inconsistent. */
static size_t
ms_link(struct mimestruct *ms, size_t i, unsigned depth)
{
	struct ms_part *p = &ms->parts[i];
	size_t next = i + 1, prev = 0;

	if (depth > MIMESTRUCT_MAX_DEPTH + 1)
		return 0;
	if ((p->kind == MS_LEAF && p->nchildren != 0) ||
	    (p->kind == MS_MESSAGE && p->nchildren != 1))
		return 0;
	for (uint32_t c = 0; c < p->nchildren; c++) {
		if (next >= ms->nparts)
			return 0;
		if (p->kind == MS_MESSAGE && !ms->parts[next].env)
			return 0;
		if (prev == 0)
			p->first = (uint32_t)next;
		else
			ms->parts[prev].next = (uint32_t)next;
		prev = next;
		next = ms_link(ms, next, depth + 1);
		if (next == 0)
			return 0;
	}
	return next;
}

struct mimestruct *
mimestruct_load(const unsigned char *blob, size_t len)
{
	struct mimestruct *ms;
	struct ms_reader r;
	uint64_t nparts;

	if (blob == NULL || len < 4 || memcmp(blob, MS_MAGIC, 3) != 0)
		return NULL;
	ms = xcalloc(1, sizeof(*ms));
	buf_add(&ms->strs, blob, len);
	r.p = (const unsigned char *)ms->strs.data + 3;
	r.end = (const unsigned char *)ms->strs.data + len;
	r.bad = false;
	if (ms_get_varint(&r) != MS_VERSION)
		goto bad;
	nparts = ms_get_varint(&r);
	if (r.bad || nparts == 0 || nparts > MIMESTRUCT_MAX_PARTS)
		goto bad;
	ms->parts = xcalloc((size_t)nparts, sizeof(*ms->parts));
	ms->nparts = (size_t)nparts;
	for (size_t i = 0; i < ms->nparts && !r.bad; i++) {
		struct ms_part *p = &ms->parts[i];
		uint64_t flags = ms_get_varint(&r), nc = ms_get_varint(&r);

		if (flags > 0x1f || (flags & 3) > MS_MESSAGE ||
		    ((flags >> 2) & 3) > MS_MODE_OPAQUE || nc > MIMESTRUCT_MAX_PARTS)
			goto bad;
		p->kind = (uint8_t)(flags & 3);
		p->mode = (uint8_t)((flags >> 2) & 3);
		p->env = (flags >> 4) & 1;
		p->nchildren = (uint32_t)nc;
		ms_get_range(&r, &p->header);
		ms_get_range(&r, &p->body);
		if (p->body.offset != p->header.offset + p->header.len)
			goto bad;
		for (int f = 0; f < MSF_N; f++)
			ms_get_str(&r, (const unsigned char *)ms->strs.data, &p->f[f]);
		for (int f = 0; p->env && f < MSE_N; f++)
			ms_get_str(&r, (const unsigned char *)ms->strs.data, &p->e[f]);
	}
	if (r.bad || r.p != r.end || !ms->parts[0].env || ms_link(ms, 0, 0) != ms->nparts)
		goto bad;
	return ms;
bad:
	mimestruct_free(&ms);
	return NULL;
}

void
mimestruct_free(struct mimestruct **ms)
{
	if (*ms == NULL)
		return;
	ms_clear(*ms);
	free(*ms);
	*ms = NULL;
}

/* ---------- sections ---------- */

/* The part a path names (as mimestruct_section walks it), or NULL when there is none. */
static const struct ms_part *
ms_part_find(const struct mimestruct *ms, const uint32_t *path, size_t depth)
{
	const struct ms_part *p = &ms->parts[0];
	bool one = false;

	/* As Dovecot: a number picks a child of a multipart; 1 is the part itself otherwise, once;
	 * a message/rfc822 part followed by more numbers is entered. */
	for (size_t i = 0; i < depth; i++) {
		uint32_t num = path[i];

		if (num == 0)
			return NULL;
		if (p->kind == MS_MULTIPART) {
			one = false;
			uint32_t c = p->nchildren > 0 ? p->first : 0;

			if (num > p->nchildren)
				return NULL;
			while (--num > 0)
				c = ms->parts[c].next;
			p = &ms->parts[c];
		} else if (num != 1 || one) {
			return NULL;
		} else {
			one = true;
		}
		if (i + 1 < depth && p->kind == MS_MESSAGE) {
			p = &ms->parts[p->first];
			one = false;
		}
	}
	return p;
}

int
mimestruct_part_encoding(const struct mimestruct *ms, const uint32_t *path, size_t depth, char *enc,
                         size_t encsize, bool *multipart_r)
{
	const struct ms_part *p = ms_part_find(ms, path, depth);
	const struct ms_str *e;
	const char *v, *end;
	size_t n = 0;

	if (p == NULL)
		return 0;
	*multipart_r = p->kind == MS_MULTIPART;
	e = &p->f[MSF_ENCODING];
	v = e->set ? ms_sp(ms, e) : "";
	end = v + (e->set ? e->len : 0);
	v = ms_cfws(v, end, NULL, NULL);
	while (v < end && ms_is_token_char(*v) && n + 1 < encsize)
		enc[n++] = (char)tolower((unsigned char)*v++);
	enc[n] = '\0';
	return 1;
}

int
mimestruct_section(const struct mimestruct *ms, const uint32_t *path, size_t depth,
                   enum mimestruct_section section, struct mimestruct_range *range_r)
{
	const struct ms_part *p = ms_part_find(ms, path, depth);

	if (p == NULL)
		return 0;
	if (depth == 0) {
		switch (section) {
		case MIMESTRUCT_ALL:
			range_r->offset = p->header.offset;
			range_r->len = p->header.len + p->body.len;
			range_r->wire_len = p->header.wire_len + p->body.wire_len;
			range_r->lines = p->header.lines + p->body.lines;
			return 1;
		case MIMESTRUCT_HEADER:
			*range_r = p->header;
			return 1;
		case MIMESTRUCT_TEXT:
			*range_r = p->body;
			return 1;
		case MIMESTRUCT_MIME:
			return -1;
		}
		return -1;
	}
	switch (section) {
	case MIMESTRUCT_ALL:
		*range_r = p->body;
		return 1;
	case MIMESTRUCT_MIME:
		*range_r = p->header;
		return 1;
	case MIMESTRUCT_HEADER:
	case MIMESTRUCT_TEXT:
		if (p->kind != MS_MESSAGE)
			return 0;
		p = &ms->parts[p->first];
		*range_r = section == MIMESTRUCT_HEADER ? p->header : p->body;
		return 1;
	}
	return -1;
}

/* ---------- ENVELOPE ---------- */

struct ms_word {
	const char *s; /* raw token */
	size_t n;
	bool quoted; /* a quoted string (s, n include the quotes) */
	bool space;  /* white space or a comment came before it */
};

/* Reads words (atoms, quoted strings, dots, domain literals) up to a special; returns the count. */
static size_t
ms_words(const char **pp, const char *end, struct ms_word *w, const char **comment, size_t *clen)
{
	const char *p = *pp;
	size_t n = 0;

	for (;;) {
		const char *q = ms_cfws(p, end, comment, clen);
		bool space = q != p;

		p = q;
		if (p >= end || strchr(",;:<>@", *p) != NULL)
			break;
		q = p;
		if (*p == '"') {
			for (q++; q < end && *q != '"'; q++)
				if (*q == '\\' && q + 1 < end)
					q++;
			if (q < end)
				q++;
		} else if (*p == '[') {
			while (q < end && *q != ']')
				q++;
			if (q < end)
				q++;
		} else if (*p == '.') {
			q++;
		} else {
			while (q < end && !ms_is_space(*q) && strchr(",;:<>@\"().[]", *q) == NULL)
				q++;
			if (q == p)
				q++; /* a stray special: take it as a word */
		}
		if (n < MS_WORDS_MAX) {
			w[n] = (struct ms_word){p, (size_t)(q - p), *p == '"', space && n > 0};
			n++;
		}
		p = q;
	}
	*pp = p;
	return n;
}

/* Joins words: display form (quotes removed, words separated by one space) or raw form. */
static void
ms_words_join(const struct ms_word *w, size_t n, bool display, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (display && i > 0 && w[i].space)
			buf_add(out, " ", 1);
		if (display && w[i].quoted)
			ms_quoted(w[i].s, w[i].s + w[i].n, out);
		else
			buf_add(out, w[i].s, w[i].n);
	}
}

struct ms_addr_out {
	mimestruct_address_cb *cb;
	void *ctx;
	unsigned count;
};

static void
ms_addr_put(struct ms_addr_out *o, const char *name, size_t nl, const char *adl, size_t al,
            const char *mbox, size_t ml, const char *host, size_t hl)
{
	const struct mimestruct_address a = {name, nl, adl, al, mbox, ml, host, hl};

	o->count++;
	o->cb(&a, o->ctx);
}

/* addr-spec after the local part's words: "@" domain, or a missing domain. Without a name, the
 * last comment around it stands for one (as Dovecot does). */
static void
ms_addr_spec(struct ms_addr_out *o, const char **pp, const char *end, const struct ms_word *lw,
             size_t ln, const char *name, size_t nl, const char *adl, size_t al, bool bare)
{
	struct ms_word w[MS_WORDS_MAX];
	const char *cm = NULL;
	size_t cl = 0;
	struct buf local = BUF_INIT, host = BUF_INIT;
	size_t n;
	const char *p = *pp;

	ms_words_join(lw, ln, true, &local);
	if (p < end && *p == '@') {
		p++;
		n = ms_words(&p, end, w, &cm, &cl);
		ms_words_join(w, n, false, &host);
	}
	if (bare && cm != NULL) {
		name = cm;
		nl = cl;
	}
	ms_addr_put(o, name, nl, adl, al, local.len > 0 ? local.data : "MISSING_MAILBOX",
	            local.len > 0 ? local.len : 15, host.len > 0 ? host.data : "MISSING_DOMAIN",
	            host.len > 0 ? host.len : 14);
	buf_free(&local);
	buf_free(&host);
	*pp = p;
}

size_t
mimestruct_addresses(const char *v, size_t vlen, mimestruct_address_cb *cb, void *ctx)
{
	struct ms_addr_out o = {cb, ctx, 0};
	struct ms_word w[MS_WORDS_MAX];
	const char *p = v, *end = v + vlen, *comment;
	bool group = false;

	while (p < end) {
		struct buf name = BUF_INIT;
		size_t n, clen = 0;

		comment = NULL;
		p = ms_cfws(p, end, NULL, NULL);
		if (p >= end)
			break;
		if (*p == ',' || (*p == ';' && !group) || *p == '>') {
			p++;
			continue;
		}
		if (*p == ';') {
			ms_addr_put(&o, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
			group = false;
			p++;
			continue;
		}
		n = ms_words(&p, end, w, &comment, &clen);
		if (p < end && *p == '<') {
			const char *adl = NULL, *q;
			size_t al = 0, ln;
			struct ms_word lw[MS_WORDS_MAX];

			ms_words_join(w, n, true, &name);
			p = ms_cfws(p + 1, end, NULL, NULL);
			if (p < end && *p == '@') { /* a source route */
				for (q = p; q < end && *q != ':' && *q != '>'; q++)
					;
				if (q < end && *q == ':') {
					adl = p;
					al = (size_t)(q - p);
					p = q + 1;
				}
			}
			ln = ms_words(&p, end, lw, NULL, NULL);
			ms_addr_spec(&o, &p, end, lw, ln, name.len > 0 ? name.data : NULL, name.len,
			             adl, al, false);
			while (p < end && *p != '>' && *p != ',' && *p != ';')
				p++;
			if (p < end && *p == '>')
				p++;
		} else if (p < end && *p == ':' && !group) {
			ms_words_join(w, n, true, &name);
			ms_addr_put(&o, NULL, 0, NULL, 0, buf_cstr(&name), name.len, NULL, 0);
			group = true;
			p++;
		} else if (n > 0) {
			ms_addr_spec(&o, &p, end, w, n, comment, clen, NULL, 0, true);
		} else {
			p++; /* a stray special */
		}
		buf_free(&name);
	}
	if (group)
		ms_addr_put(&o, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
	return o.count;
}

struct ms_imap_out {
	struct buf *out;
	unsigned count;
};

static void
ms_nstring(struct ms_imap_out *o, const char *s, size_t n)
{
	if (s != NULL)
		ms_put_string(o->out, s, n);
	else
		buf_adds(o->out, "NIL");
}

/* mimestruct_address_cb: one address as IMAP's (name adl mailbox host). */
static void
ms_address_imap(const struct mimestruct_address *a, void *ctx)
{
	struct ms_imap_out *o = ctx;

	buf_adds(o->out, o->count++ == 0 ? "((" : "(");
	ms_nstring(o, a->name, a->name_len);
	buf_adds(o->out, " ");
	ms_nstring(o, a->adl, a->adl_len);
	buf_adds(o->out, " ");
	ms_nstring(o, a->mailbox, a->mailbox_len);
	buf_adds(o->out, " ");
	ms_nstring(o, a->host, a->host_len);
	buf_adds(o->out, ")");
}

/* Writes an address list as IMAP's ((name adl mailbox host) ...) or NIL. */
static void
ms_addresses_write(const char *v, size_t vlen, struct buf *out)
{
	struct ms_imap_out o = {out, 0};

	mimestruct_addresses(v, vlen, ms_address_imap, &o);
	buf_adds(out, o.count > 0 ? ")" : "NIL");
}

/* An address field; returns false (writing nothing) when it holds no address. */
static bool
ms_address_field(const struct mimestruct *ms, const struct ms_str *s, struct buf *out)
{
	size_t before = out->len;

	if (!s->set)
		return false;
	ms_addresses_write(ms_sp(ms, s), s->len, out);
	if (out->len - before == 3 && memcmp(out->data + before, "NIL", 3) == 0) {
		buf_truncate(out, before);
		return false;
	}
	return true;
}

static void
ms_envelope_write(const struct mimestruct *ms, const struct ms_part *p, struct buf *out)
{
	buf_adds(out, "(");
	ms_put_nstring(ms, &p->e[MSE_DATE], out);
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->e[MSE_SUBJECT], out);
	for (int f = MSE_FROM; f <= MSE_BCC; f++) {
		buf_adds(out, " ");
		if (ms_address_field(ms, &p->e[f], out))
			continue;
		/* RFC 3501: an absent or empty Sender or Reply-To is the From. */
		if ((f == MSE_SENDER || f == MSE_REPLY_TO) &&
		    ms_address_field(ms, &p->e[MSE_FROM], out))
			continue;
		buf_adds(out, "NIL");
	}
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->e[MSE_IN_REPLY_TO], out);
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->e[MSE_MESSAGE_ID], out);
	buf_adds(out, ")");
}

void
mimestruct_imap_envelope(const struct mimestruct *ms, struct buf *out)
{
	ms_envelope_write(ms, &ms->parts[0], out);
}

/* ---------- BODY / BODYSTRUCTURE ---------- */

static void
ms_put_num(struct buf *out, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), " %llu", (unsigned long long)v);
	buf_adds(out, num);
}

/* Content-Disposition: (type params) or NIL. */
static void
ms_disposition_write(const struct mimestruct *ms, const struct ms_part *p, struct buf *out)
{
	const struct ms_str *s = &p->f[MSF_DISP];
	const char *v = ms_sp(ms, s), *end = v + s->len, *t, *te;

	t = ms_cfws(v, end, NULL, NULL);
	if (!s->set || t >= end) {
		buf_adds(out, "NIL");
		return;
	}
	te = ms_token(t, end);
	buf_adds(out, "(");
	ms_put_string(out, t, (size_t)(te - t));
	buf_adds(out, " ");
	ms_params_write(te, end, false, out);
	buf_adds(out, ")");
}

/* Content-Language: ("en" "fr") or NIL. */
static void
ms_language_write(const struct mimestruct *ms, const struct ms_part *p, struct buf *out)
{
	const struct ms_str *s = &p->f[MSF_LANG];
	const char *v = ms_sp(ms, s), *end = v + s->len;
	unsigned n = 0;

	while (s->set && v < end) {
		const char *t;

		v = ms_cfws(v, end, NULL, NULL);
		for (t = v; t < end && *t != ',' && !ms_is_space(*t) && *t != '(';)
			t++;
		if (t > v) {
			buf_adds(out, n++ == 0 ? "(" : " ");
			ms_put_string(out, v, (size_t)(t - v));
		}
		v = t;
		if (v < end && (*v == ',' || ms_is_space(*v)))
			v++;
	}
	buf_adds(out, n > 0 ? ")" : "NIL");
}

/* The extension data common to both forms: disposition, language, location. */
static void
ms_ext_write(const struct mimestruct *ms, const struct ms_part *p, struct buf *out)
{
	buf_adds(out, " ");
	ms_disposition_write(ms, p, out);
	buf_adds(out, " ");
	ms_language_write(ms, p, out);
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->f[MSF_LOC], out);
}

static void
ms_body_write(const struct mimestruct *ms, const struct ms_part *p, bool ext, struct buf *out)
{
	struct ms_ctype ct;
	bool text;

	ms_part_type(ms, p, &ct);
	buf_adds(out, "(");
	if (p->kind == MS_MULTIPART) {
		if (p->nchildren == 0) {
			/* RFC 3501 wants at least one part: an empty text/plain, as Dovecot. */
			buf_adds(
			    out,
			    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
			buf_adds(out, ext ? " NIL NIL NIL NIL)" : ")");
		}
		for (uint32_t c = p->nchildren > 0 ? p->first : 0, i = 0; i < p->nchildren;
		     i++, c = ms->parts[c].next)
			ms_body_write(ms, &ms->parts[c], ext, out);
		buf_adds(out, " ");
		ms_put_string(out, ct.sub, ct.slen);
		if (ext) {
			buf_adds(out, " ");
			ms_params_write(ct.params, ct.end, false, out);
			ms_ext_write(ms, p, out);
		}
		buf_adds(out, ")");
		return;
	}
	text = ms_is(ct.type, ct.tlen, "text");
	ms_put_string(out, ct.type, ct.tlen);
	buf_adds(out, " ");
	ms_put_string(out, ct.sub, ct.slen);
	buf_adds(out, " ");
	ms_params_write(ct.params, ct.end, text, out);
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->f[MSF_ID], out);
	buf_adds(out, " ");
	ms_put_nstring(ms, &p->f[MSF_DESC], out);
	buf_adds(out, " ");
	{
		const struct ms_str *e = &p->f[MSF_ENCODING];
		const char *v = ms_sp(ms, e), *end = v + e->len, *t;

		v = e->set ? ms_cfws(v, end, NULL, NULL) : end;
		t = ms_token(v, end);
		if (t > v)
			ms_put_string(out, v, (size_t)(t - v));
		else
			buf_adds(out, "\"7bit\"");
	}
	ms_put_num(out, p->body.wire_len);
	if (p->kind == MS_MESSAGE) {
		const struct ms_part *c = &ms->parts[p->first];

		buf_adds(out, " ");
		ms_envelope_write(ms, c, out);
		buf_adds(out, " ");
		ms_body_write(ms, c, ext, out);
		ms_put_num(out, p->body.lines);
	} else if (text) {
		ms_put_num(out, p->body.lines);
	}
	if (ext) {
		buf_adds(out, " ");
		ms_put_nstring(ms, &p->f[MSF_MD5], out);
		ms_ext_write(ms, p, out);
	}
	buf_adds(out, ")");
}

void
mimestruct_imap_body(const struct mimestruct *ms, bool extended, struct buf *out)
{
	ms_body_write(ms, &ms->parts[0], extended, out);
}

/* ---------- HEADER.FIELDS ---------- */

void
mimestruct_header_fields(const char *hdr, size_t len, const char *const *names, size_t nnames,
                         bool not, struct buf *out)
{
	const char *p = hdr, *end = hdr + len;

	while (p < end) {
		const char *le, *fe, *colon;
		size_t nl;
		bool match = false;

		if (*p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n')))
			break; /* the blank line */
		le = memchr(p, '\n', (size_t)(end - p));
		fe = le == NULL ? end : le + 1;
		while (fe < end && (*fe == ' ' || *fe == '\t')) {
			le = memchr(fe, '\n', (size_t)(end - fe));
			fe = le == NULL ? end : le + 1;
		}
		colon = memchr(p, ':', (size_t)(fe - p));
		nl = colon != NULL ? (size_t)(colon - p) : 0;
		while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
			nl--;
		for (size_t i = 0; colon != NULL && i < nnames && !match; i++)
			match = strlen(names[i]) == nl && strncasecmp(names[i], p, nl) == 0;
		if (match != not &&(colon != NULL || not )) {
			/* In wire form: every line end CRLF, a last line without one gets one. */
			const char *q = p;

			while (q < fe) {
				const char *nlp = memchr(q, '\n', (size_t)(fe - q));
				const char *stop = nlp != NULL ? nlp : fe;
				size_t n = (size_t)(stop - q);

				if (n > 0 && q[n - 1] == '\r')
					n--;
				buf_add(out, q, n);
				buf_add(out, "\r\n", 2);
				q = nlp != NULL ? nlp + 1 : fe;
			}
		}
		p = fe;
	}
	buf_add(out, "\r\n", 2);
}
