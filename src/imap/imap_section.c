/* imap_section: FETCH body sections (see imap_section.h). */
#include "imap/imap_section.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"
#include "store/store_reader.h"

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
	store_reader_stream_free(&st->stream);
	if (st->header != NULL)
		evbuffer_free(st->header);
	st->header = NULL;
	st->it = NULL;
}

void
imap_section_ready(void *arg)
{
	struct imap_session *s = arg;

	netconn_run(&s->conn);
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
                   const struct imap_section_item *it, const struct mimestruct *ms,
                   struct store_reader *reader, struct workers *io, struct imap_section_stream *st)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct mimestruct_range r = {.offset = 0, .len = UINT64_MAX, .wire_len = m->size};
	struct store_reader_range range = {.conv = STORE_READER_CRLF,
	                                   .nul_to = IMAP_NUL_REPLACEMENT};
	uint64_t skip, count;
	int found = 1;

	st->stream = NULL;
	st->header = NULL;
	st->it = it;
	if (ms != NULL)
		found = mimestruct_section(ms, it->sec.path, it->sec.depth, it->sec.spec, &r);
	if (found < 0 || reader == NULL) {
		evbuffer_add_printf(out, "%s NIL", it->name);
		return;
	}
	if (found == 0) {
		/* No such part: an empty string, as Dovecot answers. */
		evbuffer_add_printf(out, "%s {0}\r\n", it->name);
		return;
	}
	range.offset = r.offset;
	range.len = r.len;
	if (it->sec.fields != IMAP_SECTION_NO_FIELDS) {
		/* The header is read whole (bounded), then filtered: the literal's length is
		 * only known then. */
		range.conv = STORE_READER_RAW;
		range.nul_to = 0;
		range.limit = r.len > IMAP_SECTION_HEADER_MAX ? IMAP_SECTION_HEADER_MAX : r.len;
		st->header = evbuffer_new();
		if (st->header == NULL)
			fatalx("imap event=oom");
		st->stream = store_reader_stream_new(reader, io, &range, imap_section_ready, s);
		return;
	}
	imap_section_partial(it, r.wire_len, &skip, &count);
	evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)count);
	if (count == 0)
		return;
	/* The literal's length is announced: a file shorter than its structure says is padded
	 * so the client stays in sync. */
	range.skip = skip;
	range.limit = count;
	range.pad = true;
	st->stream = store_reader_stream_new(reader, io, &range, imap_section_ready, s);
}

void
imap_section_nul(char *buf, size_t len)
{
	for (char *p = memchr(buf, '\0', len); p != NULL;
	     p = memchr(p + 1, '\0', len - (size_t)(p + 1 - buf)))
		*p = (char)IMAP_NUL_REPLACEMENT;
}

/* The header of a HEADER.FIELDS item is whole: filter it and send it. */
static void
imap_section_fields(struct imap_session *s, struct imap_section_stream *st)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct imap_section_item *it = st->it;
	size_t got = evbuffer_get_length(st->header);
	const char *hdr = got > 0 ? (const char *)evbuffer_pullup(st->header, -1) : "";
	struct buf fields = BUF_INIT;
	uint64_t skip, count;

	mimestruct_header_fields(hdr, got, (const char *const *)it->sec.names, it->sec.nnames,
	                         it->sec.fields == IMAP_SECTION_FIELDS_NOT, &fields);
	imap_section_nul(fields.data, fields.len);
	imap_section_partial(it, fields.len, &skip, &count);
	evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)count);
	evbuffer_add(out, fields.data + skip, (size_t)count);
	buf_free(&fields);
}

int
imap_section_stream(struct imap_session *s, struct imap_section_stream *st)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	int r;

	if (st->header != NULL)
		r = store_reader_stream_pump(st->stream, st->header, SIZE_MAX);
	else
		r = store_reader_stream_pump(st->stream, out, IMAP_FETCH_HIGH);
	if (r == 0)
		return 0;
	if (r < 0)
		log_warnx("imap session=%s event=fetch-short-read", s->conn.id);
	if (st->header != NULL)
		imap_section_fields(s, st);
	imap_section_stream_close(st);
	return 1;
}
