/* imap_binary: FETCH BINARY, BINARY.PEEK, BINARY.SIZE (see imap_binary.h). */
#include "imap/imap_binary.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

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

struct imap_binary {
	struct imap_session *s;
	const struct imap_section_item *it;
	bool size_only;
	bool running;  /* the counting pass is on a worker */
	bool orphaned; /* freed by the FETCH while running: the completion frees it */
	int fd;
	uint64_t offset, len; /* the encoded part in the file */
	enum imap_binary_cte cte;
	/* The counting pass: the decoded size, and whether the bytes to send hold a NUL. */
	uint64_t total;
	bool nul;
	bool read_error;
	/* Streaming. */
	struct imap_binary_dec dec;
	uint64_t file_left;
	uint64_t skip, count, written; /* decoded bytes to skip, to send, sent */
	bool streaming;
};

void
imap_binary_free(struct imap_binary **bp)
{
	struct imap_binary *b = *bp;

	if (b == NULL)
		return;
	*bp = NULL;
	if (b->running) {
		b->orphaned = true;
		return;
	}
	if (b->fd >= 0)
		close(b->fd);
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

/* The worker: decodes the whole part to count it, noting a NUL inside the window. */
static void
imap_binary_count(void *arg)
{
	struct imap_binary *b = arg;
	char *in = xmalloc(IMAP_CHUNK), *out = xmalloc(IMAP_BINARY_OUT(IMAP_CHUNK));
	struct imap_binary_dec dec;
	uint64_t pos = 0, done = 0;
	bool last = false;

	imap_binary_dec_init(&dec, b->cte);
	while (!last) {
		size_t want = b->len - done < IMAP_CHUNK ? (size_t)(b->len - done) : IMAP_CHUNK;
		ssize_t got = want > 0 ? pread(b->fd, in, want, (off_t)(b->offset + done)) : 0;
		size_t n;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 || (got == 0 && want > 0))
			b->read_error = true;
		if (got <= 0) {
			n = imap_binary_dec_end(&dec, out);
			last = true;
		} else {
			done += (uint64_t)got;
			n = imap_binary_dec_feed(&dec, in, (size_t)got, out);
		}
		for (const char *p = out; (p = memchr(p, '\0', n - (size_t)(p - out))) != NULL;
		     p++) {
			uint64_t at = pos + (uint64_t)(p - out);

			if (!b->it->partial || (at >= b->it->offset &&
			                        at - b->it->offset < b->it->size))
				b->nul = true;
			if (b->nul)
				break;
		}
		pos += n;
	}
	b->total = pos;
	free(in);
	free(out);
}

static void
imap_binary_counted(void *arg)
{
	struct imap_binary *b = arg;
	struct imap_session *s = b->s;

	b->running = false;
	s->update_pending--;
	if (b->orphaned) {
		imap_binary_free(&b);
		if (s->conn.dead && s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	if (s->conn.dead)
		return; /* freed with the FETCH */
	netconn_run(&s->conn);
}

int
imap_binary_start(struct imap_session *s, const struct imap_msg *m,
                  const struct imap_section_item *it, const struct mimestruct *ms, bool size_only,
                  struct imap_binary **bp)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct mimestruct_range r = {.offset = 0, .len = UINT64_MAX};
	enum imap_binary_cte cte = IMAP_CTE_IDENTITY;
	struct imap_binary *b;
	bool multipart = false;
	char enc[64] = "";
	int found = 1, fd;

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
	fd = store_message_open(s->server->store, s->account_id, s->mailbox, m->uid);
	if (fd < 0) {
		evbuffer_add_printf(out, size_only ? "%s 0" : "%s NIL", it->name);
		return 1;
	}
	if (r.len == UINT64_MAX) {
		off_t end = lseek(fd, 0, SEEK_END);

		r.len = end > 0 ? (uint64_t)end : 0;
	}
	b = xcalloc(1, sizeof(*b));
	b->s = s;
	b->it = it;
	b->size_only = size_only;
	b->fd = fd;
	b->offset = r.offset;
	b->len = r.len;
	b->cte = cte;
	b->running = true;
	s->update_pending++;
	*bp = b;
	workers_submit(s->server->workers, imap_binary_count, imap_binary_counted, b);
	return 0;
}

/* Sends the next decoded chunk of the window. */
static void
imap_binary_stream(struct imap_session *s, struct imap_binary *b)
{
	static char in[IMAP_CHUNK];
	static char dec[IMAP_BINARY_OUT(IMAP_CHUNK)];
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	size_t want = b->file_left < sizeof(in) ? (size_t)b->file_left : sizeof(in), n, from = 0;
	ssize_t got = want > 0 ? read(b->fd, in, want) : 0;

	if (got < 0 && errno == EINTR)
		return;
	if (got > 0) {
		b->file_left -= (uint64_t)got;
		n = imap_binary_dec_feed(&b->dec, in, (size_t)got, dec);
	} else {
		n = imap_binary_dec_end(&b->dec, dec);
		b->file_left = 0;
	}
	if (b->skip > 0) {
		from = b->skip < n ? (size_t)b->skip : n;
		b->skip -= from;
	}
	if (n - from > b->count - b->written)
		n = from + (size_t)(b->count - b->written);
	evbuffer_add(out, dec + from, n - from);
	b->written += n - from;
	if (got <= 0 && b->written < b->count) {
		/* The file changed under us: pad so the client stays in sync. */
		log_warnx("imap session=%s event=binary-short-read", s->conn.id);
		while (b->written < b->count) {
			evbuffer_add(out, " ", 1);
			b->written++;
		}
	}
}

int
imap_binary_pump(struct imap_session *s, struct imap_binary **bp)
{
	struct imap_binary *b = *bp;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);

	if (b->running)
		return 0;
	if (!b->streaming) {
		if (b->read_error)
			log_warnx("imap session=%s event=binary-read-failed", s->conn.id);
		if (b->size_only) {
			evbuffer_add_printf(out, "%s %llu", b->it->name,
			                    (unsigned long long)b->total);
			imap_binary_free(bp);
			return 2;
		}
		imap_binary_window(b->it, b->total, &b->skip, &b->count);
		/* RFC 3516 4.3: a literal8 when the bytes hold a NUL. */
		evbuffer_add_printf(out, "%s %s{%llu}\r\n", b->it->name, b->nul ? "~" : "",
		                    (unsigned long long)b->count);
		if (b->count == 0 || lseek(b->fd, (off_t)b->offset, SEEK_SET) < 0) {
			while (b->written < b->count) {
				evbuffer_add(out, " ", 1);
				b->written++;
			}
			imap_binary_free(bp);
			return 2;
		}
		imap_binary_dec_init(&b->dec, b->cte);
		b->file_left = b->len;
		b->streaming = true;
	}
	imap_binary_stream(s, b);
	if (b->written < b->count)
		return 1;
	imap_binary_free(bp);
	return 2;
}
