/* imap_binary: FETCH BINARY, BINARY.PEEK, BINARY.SIZE (see imap_binary.h). */
#include "imap/imap_binary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"
#include "store/store_reader.h"

/* --- the decoder --- */

enum imap_binary_cte
imap_binary_cte(const char *value)
{
	if (value[0] == '\0' || strcmp(value, "7bit") == 0 || strcmp(value, "8bit") == 0 ||
	    strcmp(value, "binary") == 0)
		return IMAP_CTE_IDENTITY;
	if (strcmp(value, "base64") == 0)
		return IMAP_CTE_BASE64;
	if (strcmp(value, "quoted-printable") == 0)
		return IMAP_CTE_QP;
	return IMAP_CTE_UNKNOWN;
}

void
imap_binary_dec_init(struct imap_binary_dec *d, enum imap_binary_cte cte)
{
	memset(d, 0, sizeof(*d));
	d->cte = cte;
}

static int
imap_binary_b64(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int
imap_binary_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Quoted-printable: pending whitespace goes out before any other byte. */
static size_t
imap_binary_qp_ws(struct imap_binary_dec *d, char *out)
{
	size_t n = d->nws;

	memcpy(out, d->ws, n);
	d->nws = 0;
	return n;
}

/* One byte of quoted-printable (RFC 2045 6.7): =XX, soft line breaks ("=" [whitespace] line
 * end), trailing whitespace dropped, every line end CRLF. Malformed escapes are kept as they
 * are, as Dovecot does. */
static size_t
imap_binary_qp_byte(struct imap_binary_dec *d, char c, char *out)
{
	size_t n = 0;

	switch (d->qp) {
	case 1: /* after '=' */
		if (c == '\n') {
			d->qp = 0; /* soft line break */
			return 0;
		}
		if (c == '\r' || c == ' ' || c == '\t') {
			d->ws[d->nws++] = c; /* empty: '=' flushed it */
			d->qp = 3;
			return 0;
		}
		if (imap_binary_hex(c) >= 0) {
			d->qph = c;
			d->qp = 2;
			return 0;
		}
		d->qp = 0;
		out[n++] = '=';
		return n + imap_binary_qp_byte(d, c, out + n);
	case 2: /* after "=X" */
		d->qp = 0;
		if (imap_binary_hex(c) >= 0) {
			out[n++] = (char)(imap_binary_hex(d->qph) * 16 + imap_binary_hex(c));
			return n;
		}
		out[n++] = '=';
		out[n++] = d->qph;
		return n + imap_binary_qp_byte(d, c, out + n);
	case 3: /* after '=' and whitespace or CR (held in ws): a line end makes a soft break */
		if (c == '\n') {
			d->nws = 0;
			d->qp = 0;
			return 0;
		}
		if ((c == ' ' || c == '\t' || c == '\r') && d->nws < sizeof(d->ws)) {
			d->ws[d->nws++] = c;
			return 0;
		}
		d->qp = 0;
		out[n++] = '=';
		n += imap_binary_qp_ws(d, out + n);
		return n + imap_binary_qp_byte(d, c, out + n);
	case 4: /* after CR */
		d->qp = 0;
		if (c == '\n') {
			d->nws = 0;
			out[n++] = '\r';
			out[n++] = '\n';
			return n;
		}
		n += imap_binary_qp_ws(d, out);
		out[n++] = '\r';
		return n + imap_binary_qp_byte(d, c, out + n);
	default:
		break;
	}
	if (c == '=') {
		n += imap_binary_qp_ws(d, out);
		d->qp = 1;
		return n;
	}
	if (c == '\r') {
		d->qp = 4;
		return 0;
	}
	if (c == '\n') {
		d->nws = 0; /* trailing whitespace is transport padding */
		out[n++] = '\r';
		out[n++] = '\n';
		return n;
	}
	if (c == ' ' || c == '\t') {
		if (d->nws == sizeof(d->ws))
			n += imap_binary_qp_ws(d, out);
		d->ws[d->nws++] = c;
		return n;
	}
	n += imap_binary_qp_ws(d, out);
	out[n++] = c;
	return n;
}

size_t
imap_binary_dec_feed(struct imap_binary_dec *d, const char *in, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		int v;

		switch (d->cte) {
		case IMAP_CTE_BASE64:
			if (d->end)
				break;
			if (c == '=') {
				d->end = true;
				break;
			}
			if ((v = imap_binary_b64((unsigned char)c)) < 0)
				break; /* line ends and anything else outside the alphabet */
			d->bits = (d->bits << 6) | (uint32_t)v;
			d->nbits += 6;
			if (d->nbits >= 8) {
				d->nbits -= 8;
				out[n++] = (char)(d->bits >> d->nbits);
				d->bits &= (1u << d->nbits) - 1;
			}
			break;
		case IMAP_CTE_QP:
			n += imap_binary_qp_byte(d, c, out + n);
			break;
		default:
			if (c == '\n' && !d->prev_cr)
				out[n++] = '\r';
			out[n++] = c;
			d->prev_cr = c == '\r';
			break;
		}
	}
	return n;
}

size_t
imap_binary_dec_end(struct imap_binary_dec *d, char *out)
{
	size_t n = 0;

	if (d->cte != IMAP_CTE_QP)
		return 0;
	/* A part's text ends with its last line (no line end): keep what is held back. */
	if (d->qp == 1 || d->qp == 3)
		out[n++] = '='; /* and the whitespace after it, below */
	else if (d->qp == 2) {
		out[n++] = '=';
		out[n++] = d->qph;
	}
	n += imap_binary_qp_ws(d, out + n);
	if (d->qp == 4)
		out[n++] = '\r';
	d->qp = 0;
	return n;
}

/* --- FETCH items --- */

bool
imap_binary_item_parse(const char *name, const char *section, bool partial, uint32_t offset,
                       uint32_t size, struct imap_section_item *it, bool *peek_r, bool *size_r)
{
	const char *prefix = "BINARY";

	*peek_r = *size_r = false;
	if (strcasecmp(name, "BINARY.PEEK") == 0)
		*peek_r = true;
	else if (strcasecmp(name, "BINARY.SIZE") == 0)
		*peek_r = *size_r = true;
	else if (strcasecmp(name, "BINARY") != 0)
		return false;
	/* section-binary: only a part number list (RFC 3516 5), no partial for the size. */
	if (!imap_section_parse(section, &it->sec) || it->sec.spec != MIMESTRUCT_ALL ||
	    (*size_r && partial)) {
		imap_section_clear(&it->sec);
		return false;
	}
	if (*size_r)
		prefix = "BINARY.SIZE";
	it->partial = partial;
	it->offset = offset;
	it->size = size;
	imap_section_name(it, prefix, section, true);
	return true;
}

/* The decoder as a store reader filter (running on the I/O pool). The counting pass outputs
 * nothing: it notes the decoded size and whether the window holds a NUL. */
struct imap_binary_filter {
	struct imap_binary_dec dec;
	bool count;
	bool partial; /* the item's window, copied: the item may go first */
	uint64_t offset, size;
	uint64_t total; /* counting: decoded bytes */
	bool nul;       /* counting: a NUL inside the window */
	char scratch[]; /* counting: IMAP_BINARY_OUT(STORE_READER_CHUNK) */
};

static bool
imap_binary_filter(void *state, const char *in, size_t len, struct evbuffer *out)
{
	struct imap_binary_filter *bf = state;
	struct evbuffer_iovec vec;
	char *o = bf->scratch;
	size_t n;

	if (!bf->count) {
		if (evbuffer_reserve_space(out, (ev_ssize_t)IMAP_BINARY_OUT(len), &vec, 1) < 1)
			fatalx("imap event=oom");
		o = vec.iov_base;
	}
	n = in != NULL ? imap_binary_dec_feed(&bf->dec, in, len, o)
	               : imap_binary_dec_end(&bf->dec, o);
	if (!bf->count) {
		vec.iov_len = n;
		evbuffer_commit_space(out, &vec, 1);
		return false;
	}
	for (const char *p = o; !bf->nul && (p = memchr(p, '\0', n - (size_t)(p - o))) != NULL;
	     p++) {
		uint64_t at = bf->total + (uint64_t)(p - o);

		if (!bf->partial || (at >= bf->offset && at - bf->offset < bf->size))
			bf->nul = true;
	}
	bf->total += n;
	return false;
}

struct imap_binary {
	const struct imap_section_item *it;
	bool size_only;
	struct store_reader *reader; /* FETCH's, held for the message's whole response */
	uint64_t offset, len;        /* the encoded part in the file */
	enum imap_binary_cte cte;
	struct store_reader_stream *stream; /* the counting pass, then the bytes */
	struct evbuffer *sink;              /* the counting pass's (empty) output */
	bool streaming;
};

void
imap_binary_free(struct imap_binary **bp)
{
	struct imap_binary *b = *bp;

	if (b == NULL)
		return;
	*bp = NULL;
	store_reader_stream_free(&b->stream);
	evbuffer_free(b->sink);
	free(b);
}

/* The decoded window [offset, offset + size) of a part of total bytes. */
static void
imap_binary_window(const struct imap_section_item *it, uint64_t total, uint64_t *skip_r,
                   uint64_t *count_r)
{
	*skip_r = 0;
	*count_r = total;
	if (!it->partial)
		return;
	*skip_r = it->offset < total ? it->offset : total;
	*count_r = total - *skip_r;
	if (*count_r > it->size)
		*count_r = it->size;
}

/* A stream of the part through the decoder: counting, or the window of the bytes. */
static struct store_reader_stream *
imap_binary_stream_new(struct imap_session *s, struct imap_binary *b, bool count, uint64_t skip,
                       uint64_t limit)
{
	struct store_reader_range range = {
	    .offset = b->offset, .len = b->len, .skip = skip, .limit = limit, .pad = !count};
	struct imap_binary_filter *bf =
	    xcalloc(1, sizeof(*bf) + (count ? IMAP_BINARY_OUT(STORE_READER_CHUNK) : 0));

	imap_binary_dec_init(&bf->dec, b->cte);
	bf->count = count;
	bf->partial = b->it->partial;
	bf->offset = b->it->offset;
	bf->size = b->it->size;
	range.filter = imap_binary_filter;
	range.filter_state = bf;
	return store_reader_stream_new(b->reader, s->server->io, &range, imap_section_ready, s);
}

int
imap_binary_start(struct imap_session *s, const struct imap_msg *m,
                  const struct imap_section_item *it, const struct mimestruct *ms, bool size_only,
                  struct store_reader *reader, struct imap_binary **bp)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct mimestruct_range r = {.offset = 0, .len = UINT64_MAX};
	enum imap_binary_cte cte = IMAP_CTE_IDENTITY;
	struct imap_binary *b;
	bool multipart = false;
	char enc[64] = "";
	int found = 1;

	*bp = NULL;
	if (ms != NULL && it->sec.depth > 0) {
		found = mimestruct_section(ms, it->sec.path, it->sec.depth, MIMESTRUCT_ALL, &r);
		if (found > 0 &&
		    mimestruct_part_encoding(ms, it->sec.path, it->sec.depth, enc, sizeof(enc),
		                             &multipart) > 0 &&
		    !multipart)
			cte = imap_binary_cte(enc);
	}
	if (found <= 0) {
		/* No such part: an empty string (as BODY[] does). */
		if (size_only)
			evbuffer_add_printf(out, "%s 0", it->name);
		else
			evbuffer_add_printf(out, "%s {0}\r\n", it->name);
		return 1;
	}
	if (cte == IMAP_CTE_UNKNOWN) {
		log_info("imap session=%s event=binary-unknown-cte uid=%u", s->conn.id, m->uid);
		evbuffer_add_printf(out, size_only ? "%s 0" : "%s NIL", it->name);
		return -1;
	}
	if (reader == NULL) {
		evbuffer_add_printf(out, size_only ? "%s 0" : "%s NIL", it->name);
		return 1;
	}
	b = xcalloc(1, sizeof(*b));
	b->it = it;
	b->size_only = size_only;
	b->reader = reader;
	b->offset = r.offset;
	b->len = r.len;
	b->cte = cte;
	b->sink = evbuffer_new();
	if (b->sink == NULL)
		fatalx("imap event=oom");
	b->stream = imap_binary_stream_new(s, b, true, 0, UINT64_MAX);
	*bp = b;
	return 0;
}

/* The counting pass is done: the item's head ("NAME n", "NAME {n}\r\n" or "NAME ~{n}\r\n"),
 * and the stream of its bytes. True when the item is complete. */
static bool
imap_binary_counted(struct imap_session *s, struct imap_binary *b)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct imap_binary_filter *bf = store_reader_stream_filter_state(b->stream);
	uint64_t total = bf->total, skip, count;
	bool nul = bf->nul;

	store_reader_stream_free(&b->stream);
	if (b->size_only) {
		evbuffer_add_printf(out, "%s %llu", b->it->name, (unsigned long long)total);
		return true;
	}
	imap_binary_window(b->it, total, &skip, &count);
	/* RFC 3516 4.3: a literal8 when the bytes hold a NUL. */
	evbuffer_add_printf(out, "%s %s{%llu}\r\n", b->it->name, nul ? "~" : "",
	                    (unsigned long long)count);
	if (count == 0)
		return true;
	b->stream = imap_binary_stream_new(s, b, false, skip, count);
	b->streaming = true;
	return false;
}

int
imap_binary_pump(struct imap_session *s, struct imap_binary **bp)
{
	struct imap_binary *b = *bp;
	int r;

	if (!b->streaming) {
		r = store_reader_stream_pump(b->stream, b->sink, SIZE_MAX);
		if (r == 0)
			return 0;
		if (r < 0)
			log_warnx("imap session=%s event=binary-read-failed", s->conn.id);
		if (imap_binary_counted(s, b)) {
			imap_binary_free(bp);
			return 1;
		}
	}
	r = store_reader_stream_pump(b->stream, bufferevent_get_output(s->conn.bev),
	                             IMAP_FETCH_HIGH);
	if (r == 0)
		return 0;
	if (r < 0)
		log_warnx("imap session=%s event=binary-short-read", s->conn.id);
	imap_binary_free(bp);
	return 1;
}
