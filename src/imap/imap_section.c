/* imap_section: FETCH body sections (see imap_section.h). */
#include "imap/imap_section.h"

#include <ctype.h>
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
#include "store/store.h"

/* A header-fld-name (astring) at *pp: an atom or a quoted string. */
static char *
imap_section_astring(const char **pp)
{
	const char *p = *pp;
	char *out;
	size_t n = 0;

	if (*p == '"') {
		out = xmalloc(strlen(p) + 1);
		for (p++; *p != '"'; p++) {
			if (*p == '\0' || *p == '\r' || *p == '\n') {
				free(out);
				return NULL;
			}
			if (*p == '\\') {
				p++;
				if (*p != '\\' && *p != '"') {
					free(out);
					return NULL;
				}
			}
			out[n++] = *p;
		}
		*pp = p + 1;
		out[n] = '\0';
		return out;
	}
	while (p[n] != '\0' && (unsigned char)p[n] > ' ' && (unsigned char)p[n] < 0x7f &&
	       strchr("(){\"\\%*]", p[n]) == NULL)
		n++;
	if (n == 0)
		return NULL;
	out = xmalloc(n + 1);
	memcpy(out, p, n);
	out[n] = '\0';
	*pp = p + n;
	return out;
}

/* " (name name ...)" after HEADER.FIELDS[.NOT]; false when malformed. */
static bool
imap_section_names(const char *p, struct imap_section *sec)
{
	if (p[0] != ' ' || p[1] != '(')
		return false;
	p += 2;
	for (;;) {
		char *name;

		if (sec->nnames == IMAP_SECTION_NAMES_MAX)
			return false;
		name = imap_section_astring(&p);
		if (name == NULL)
			return false;
		sec->names = xrealloc(sec->names, (sec->nnames + 1) * sizeof(*sec->names));
		sec->names[sec->nnames++] = name;
		if (*p == ')')
			return p[1] == '\0';
		if (*p != ' ')
			return false;
		p++;
	}
}

bool
imap_section_parse(const char *text, struct imap_section *sec)
{
	const char *p = text;

	memset(sec, 0, sizeof(*sec));
	sec->spec = MIMESTRUCT_ALL;
	/* section-part: nz-number *("." nz-number) */
	while (*p >= '0' && *p <= '9') {
		uint64_t v = 0;

		if (*p == '0' || sec->depth == IMAP_SECTION_DEPTH_MAX)
			return false;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (uint64_t)(*p++ - '0');
			if (v > UINT32_MAX)
				return false;
		}
		sec->path[sec->depth++] = (uint32_t)v;
		if (*p == '\0')
			return true;
		if (*p != '.')
			return false;
		p++;
		if (*p == '\0')
			return false;
	}
	if (*p == '\0')
		return sec->depth == 0;
	if (strcasecmp(p, "HEADER") == 0) {
		sec->spec = MIMESTRUCT_HEADER;
		return true;
	}
	if (strcasecmp(p, "TEXT") == 0) {
		sec->spec = MIMESTRUCT_TEXT;
		return true;
	}
	if (strcasecmp(p, "MIME") == 0) {
		sec->spec = MIMESTRUCT_MIME;
		return sec->depth > 0;
	}
	sec->spec = MIMESTRUCT_HEADER;
	if (strncasecmp(p, "HEADER.FIELDS.NOT", 17) == 0) {
		sec->fields = IMAP_SECTION_FIELDS_NOT;
		return imap_section_names(p + 17, sec);
	}
	if (strncasecmp(p, "HEADER.FIELDS", 13) == 0) {
		sec->fields = IMAP_SECTION_FIELDS;
		return imap_section_names(p + 13, sec);
	}
	return false;
}

void
imap_section_clear(struct imap_section *sec)
{
	for (size_t i = 0; i < sec->nnames; i++)
		free(sec->names[i]);
	free(sec->names);
	sec->names = NULL;
	sec->nnames = 0;
}

void
imap_section_name(struct imap_section_item *it, const char *prefix, const char *text, bool brackets)
{
	size_t n = strlen(prefix) + strlen(text) + 32;
	char *name = xmalloc(n), *q;

	snprintf(name, n, brackets ? "%s[%s]" : "%s", prefix, text);
	for (q = name; *q != '\0'; q++)
		*q = (char)toupper((unsigned char)*q);
	if (it->partial) {
		size_t len = strlen(name);

		snprintf(name + len, n - len, "<%u>", it->offset);
	}
	free(it->name);
	it->name = name;
}

void
imap_section_stream_close(struct imap_section_stream *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}

/* Reads [offset, offset + len) of fd (len at most IMAP_SECTION_HEADER_MAX) into a new buffer. */
static char *
imap_section_read(int fd, uint64_t offset, size_t len, size_t *got_r)
{
	char *buf = xmalloc(len + 1);
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)(offset + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	*got_r = got;
	return buf;
}

/* Applies <offset.size> to a section of len wire bytes: where to start and how many. */
static void
imap_section_partial(const struct imap_section_item *it, uint64_t len, uint64_t *skip_r,
                     uint64_t *count_r)
{
	*skip_r = 0;
	*count_r = len;
	if (!it->partial)
		return;
	if (it->offset >= len) {
		*skip_r = len;
		*count_r = 0;
		return;
	}
	*skip_r = it->offset;
	*count_r = len - it->offset;
	if (*count_r > it->size)
		*count_r = it->size;
}

void
imap_section_start(struct imap_session *s, const struct imap_msg *m,
                   const struct imap_section_item *it, const struct mimestruct *ms, int msg_fd,
                   struct imap_section_stream *st)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct mimestruct_range r = {.offset = 0, .len = UINT64_MAX, .wire_len = m->size};
	uint64_t skip, count;
	int fd, found = 1;

	st->fd = -1;
	if (ms != NULL)
		found = mimestruct_section(ms, it->sec.path, it->sec.depth, it->sec.spec, &r);
	if (found < 0) {
		evbuffer_add_printf(out, "%s NIL", it->name);
		return;
	}
	if (found == 0) {
		/* No such part: an empty string, as Dovecot answers. */
		evbuffer_add_printf(out, "%s {0}\r\n", it->name);
		return;
	}
	fd = msg_fd >= 0 ? dup(msg_fd) : -1;
	if (fd < 0) {
		log_warn("imap session=%s event=fetch-dup-failed uid=%u", s->conn.id, m->uid);
		evbuffer_add_printf(out, "%s NIL", it->name);
		return;
	}
	if (it->sec.fields != IMAP_SECTION_NO_FIELDS) {
		char *hdr, *fields = NULL;
		size_t got, flen = 0, fcap = 0;

		hdr = imap_section_read(fd, r.offset,
		                        r.len > IMAP_SECTION_HEADER_MAX ? IMAP_SECTION_HEADER_MAX
		                                                        : (size_t)r.len,
		                        &got);
		close(fd);
		mimestruct_header_fields(hdr, got, (const char *const *)it->sec.names,
		                         it->sec.nnames, it->sec.fields == IMAP_SECTION_FIELDS_NOT,
		                         &fields, &flen, &fcap);
		free(hdr);
		imap_section_nul(fields, flen);
		imap_section_partial(it, flen, &skip, &count);
		evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)count);
		evbuffer_add(out, fields + skip, (size_t)count);
		free(fields);
		return;
	}
	imap_section_partial(it, r.wire_len, &skip, &count);
	evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)count);
	if (count == 0) {
		close(fd);
		return;
	}
	st->fd = fd;
	st->prev_cr = false;
	st->file_left = r.len;
	if (lseek(fd, (off_t)r.offset, SEEK_SET) < 0)
		st->file_left = 0; /* the stream pads */
	st->skip = skip;
	st->len = count;
	st->written = 0;
}

void
imap_section_nul(char *buf, size_t len)
{
	for (char *p = memchr(buf, '\0', len); p != NULL;
	     p = memchr(p + 1, '\0', len - (size_t)(p + 1 - buf)))
		*p = (char)IMAP_NUL_REPLACEMENT;
}

/* Converts in[0..len) to the wire form (bare LF -> CRLF, NUL -> IMAP_NUL_REPLACEMENT) into out
 * (room for 2 * len). */
static size_t
imap_section_crlf(bool *prev_cr, const char *in, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && !*prev_cr)
			out[n++] = '\r';
		out[n++] = in[i] != '\0' ? in[i] : (char)IMAP_NUL_REPLACEMENT;
		*prev_cr = in[i] == '\r';
	}
	return n;
}

bool
imap_section_stream(struct imap_session *s, struct imap_section_stream *st)
{
	static char in[IMAP_CHUNK];
	static char conv[2 * IMAP_CHUNK];
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	size_t want = sizeof(in), n, from = 0;
	ssize_t got;

	if (st->file_left < want)
		want = (size_t)st->file_left;
	got = want > 0 ? read(st->fd, in, want) : 0;
	if (got < 0 && errno == EINTR)
		return false;
	if (got <= 0) {
		/* The file is shorter than its structure says: pad so the client stays in sync. */
		log_warnx("imap session=%s event=fetch-short-read", s->conn.id);
		while (st->written < st->len) {
			evbuffer_add(out, " ", 1);
			st->written++;
		}
	} else {
		st->file_left -= (uint64_t)got;
		n = imap_section_crlf(&st->prev_cr, in, (size_t)got, conv);
		if (st->skip > 0) {
			from = st->skip < n ? (size_t)st->skip : n;
			st->skip -= from;
		}
		if (n - from > st->len - st->written)
			n = from + (size_t)(st->len - st->written);
		evbuffer_add(out, conv + from, n - from);
		st->written += n - from;
	}
	if (st->written < st->len)
		return false;
	imap_section_stream_close(st);
	return true;
}
