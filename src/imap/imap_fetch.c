/* imap_fetch: FETCH (items, body sections streamed from the message file with bare LF turned
 * into CRLF, under output backpressure) over the selected mailbox's
 * snapshot. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

enum imap_fetch_kind {
	IMAP_FETCH_FLAGS,
	IMAP_FETCH_UID,
	IMAP_FETCH_SIZE,
	IMAP_FETCH_DATE,
	IMAP_FETCH_BODY, /* a section */
};

enum imap_section { IMAP_SECTION_ALL, IMAP_SECTION_HEADER, IMAP_SECTION_TEXT };

struct imap_fetch_item {
	enum imap_fetch_kind kind;
	enum imap_section section;
	bool peek;
	bool partial;
	uint32_t offset, size;
	char name[32]; /* the response's name: "BODY[HEADER]", "RFC822" */
};

struct imap_fetch {
	struct imap_fetch_item *items;
	size_t nitems;
	uint32_t *idx;
	long nidx;
	long pos;
	size_t item;
	bool in_msg;
	bool uid;
	/* The body literal being streamed. */
	int fd;
	bool prev_cr;
	uint64_t conv_pos; /* converted bytes produced so far */
	uint64_t start, len, written;
};

void
imap_fetch_free(struct imap_session *s)
{
	struct imap_fetch *f = s->fetch;

	if (f == NULL)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->items);
	free(f->idx);
	free(f);
	s->fetch = NULL;
}

/* Converts in[0..len) to the wire form (bare LF -> CRLF) into out (room for 2 * len). */
static size_t
imap_crlf_convert(bool *prev_cr, const char *in, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && !*prev_cr)
			out[n++] = '\r';
		out[n++] = in[i];
		*prev_cr = in[i] == '\r';
	}
	return n;
}

/* The size of the header block (through the empty line) in wire form; the fd is rewound. */
static int
imap_header_size(int fd, uint64_t *size_r)
{
	char buf[IMAP_CHUNK];
	bool prev_cr = false, empty = true;
	uint64_t pos = 0;
	ssize_t got;

	while ((got = read(fd, buf, sizeof(buf))) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (ssize_t i = 0; i < got; i++) {
			char c = buf[i];

			pos += (c == '\n' && !prev_cr) ? 2 : 1;
			prev_cr = c == '\r';
			if (c == '\n') {
				if (empty) {
					*size_r = pos;
					return lseek(fd, 0, SEEK_SET) < 0 ? -1 : 0;
				}
				empty = true;
			} else if (c != '\r') {
				empty = false;
			}
		}
	}
	*size_r = pos;
	return lseek(fd, 0, SEEK_SET) < 0 ? -1 : 0;
}

/* Parses one FETCH item; false after replying. */
static bool
imap_fetch_item_parse(struct imap_session *s, const char *tag, const struct imap_arg *a,
                      struct imap_fetch_item *it)
{
	memset(it, 0, sizeof(*it));
	if (a->type == IMAP_ARG_SECTION) {
		bool rfc822 = false;

		if (strcasecmp(a->str, "BODY.PEEK") == 0)
			it->peek = true;
		else if (strcasecmp(a->str, "BODY") != 0)
			rfc822 = true;
		if (rfc822) {
			imap_bad(s, tag, "Invalid FETCH item");
			return false;
		}
		if (a->section_len == 0) {
			it->section = IMAP_SECTION_ALL;
			str_copy(it->name, "BODY[]", sizeof(it->name));
		} else if (strcasecmp(a->section, "HEADER") == 0) {
			it->section = IMAP_SECTION_HEADER;
			str_copy(it->name, "BODY[HEADER]", sizeof(it->name));
		} else if (strcasecmp(a->section, "TEXT") == 0) {
			it->section = IMAP_SECTION_TEXT;
			str_copy(it->name, "BODY[TEXT]", sizeof(it->name));
		} else {
			imap_reply(s, "%s NO [CANNOT] FETCH section not supported yet", tag);
			return false;
		}
		it->kind = IMAP_FETCH_BODY;
		it->partial = a->partial;
		it->offset = a->partial_offset;
		it->size = a->partial_size;
		if (it->partial) {
			size_t n = strlen(it->name);

			snprintf(it->name + n, sizeof(it->name) - n, "<%u>", it->offset);
		}
		return true;
	}
	if (imap_arg_atom_equals(a, "FLAGS"))
		it->kind = IMAP_FETCH_FLAGS;
	else if (imap_arg_atom_equals(a, "UID"))
		it->kind = IMAP_FETCH_UID;
	else if (imap_arg_atom_equals(a, "RFC822.SIZE"))
		it->kind = IMAP_FETCH_SIZE;
	else if (imap_arg_atom_equals(a, "INTERNALDATE"))
		it->kind = IMAP_FETCH_DATE;
	else if (imap_arg_atom_equals(a, "RFC822")) {
		it->kind = IMAP_FETCH_BODY;
		str_copy(it->name, "RFC822", sizeof(it->name));
	} else if (imap_arg_atom_equals(a, "RFC822.HEADER")) {
		it->kind = IMAP_FETCH_BODY;
		it->section = IMAP_SECTION_HEADER;
		it->peek = true;
		str_copy(it->name, "RFC822.HEADER", sizeof(it->name));
	} else if (imap_arg_atom_equals(a, "RFC822.TEXT")) {
		it->kind = IMAP_FETCH_BODY;
		it->section = IMAP_SECTION_TEXT;
		str_copy(it->name, "RFC822.TEXT", sizeof(it->name));
	} else if (imap_arg_atom_equals(a, "ENVELOPE") || imap_arg_atom_equals(a, "BODY") ||
	           imap_arg_atom_equals(a, "BODYSTRUCTURE")) {
		imap_reply(s, "%s NO [CANNOT] FETCH %s not supported yet", tag, a->str);
		return false;
	} else {
		imap_bad(s, tag, "Invalid FETCH item");
		return false;
	}
	return true;
}

static void
imap_fetch_add(struct imap_fetch *f, size_t *cap, const struct imap_fetch_item *it)
{
	if (f->nitems == *cap) {
		*cap = *cap == 0 ? 8 : 2 * *cap;
		f->items = xrealloc(f->items, *cap * sizeof(*f->items));
	}
	f->items[f->nitems++] = *it;
}

static bool
imap_fetch_has(const struct imap_fetch *f, enum imap_fetch_kind kind)
{
	for (size_t i = 0; i < f->nitems; i++)
		if (f->items[i].kind == kind)
			return true;
	return false;
}

void
imap_cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_fetch *f;
	struct imap_fetch_item it;
	const struct imap_arg *items;
	size_t nitems, cap = 0;
	bool seen = false, meta = false;

	if (cmd->nargs != 2) {
		imap_bad(s, cmd->tag, "syntax: FETCH sequence-set items");
		return;
	}
	f = xcalloc(1, sizeof(*f));
	f->fd = -1;
	f->uid = cmd->uid;
	s->fetch = f;
	if (cmd->uid) {
		it = (struct imap_fetch_item){.kind = IMAP_FETCH_UID};
		imap_fetch_add(f, &cap, &it);
	}
	if (cmd->args[1].type == IMAP_ARG_LIST) {
		items = cmd->args[1].list;
		nitems = cmd->args[1].list_count;
	} else {
		items = &cmd->args[1];
		nitems = 1;
	}
	if (nitems == 0) {
		imap_fetch_free(s);
		imap_bad(s, cmd->tag, "Empty FETCH item list");
		return;
	}
	for (size_t i = 0; i < nitems; i++) {
		if (cmd->args[1].type != IMAP_ARG_LIST && imap_arg_atom_equals(&items[i], "FAST")) {
			it = (struct imap_fetch_item){.kind = IMAP_FETCH_FLAGS};
			imap_fetch_add(f, &cap, &it);
			it.kind = IMAP_FETCH_DATE;
			imap_fetch_add(f, &cap, &it);
			it.kind = IMAP_FETCH_SIZE;
			imap_fetch_add(f, &cap, &it);
			continue;
		}
		if (cmd->args[1].type != IMAP_ARG_LIST && (imap_arg_atom_equals(&items[i], "ALL") ||
		                                           imap_arg_atom_equals(&items[i], "FULL"))) {
			imap_fetch_free(s);
			imap_reply(s, "%s NO [CANNOT] FETCH %s needs ENVELOPE, not supported yet",
			           cmd->tag, items[i].str);
			return;
		}
		if (!imap_fetch_item_parse(s, cmd->tag, &items[i], &it)) {
			imap_fetch_free(s);
			return;
		}
		if (it.kind == IMAP_FETCH_UID && cmd->uid)
			continue;
		if (it.kind == IMAP_FETCH_BODY && !it.peek)
			seen = true;
		if (it.kind != IMAP_FETCH_FLAGS && it.kind != IMAP_FETCH_UID)
			meta = true;
		imap_fetch_add(f, &cap, &it);
	}
	if (seen && !s->read_only && !imap_fetch_has(f, IMAP_FETCH_FLAGS)) {
		it = (struct imap_fetch_item){.kind = IMAP_FETCH_FLAGS};
		imap_fetch_add(f, &cap, &it);
	}
	f->nidx = imap_seqset_expand(s, cmd->tag, &cmd->args[0], cmd->uid, &f->idx);
	if (f->nidx < 0) {
		imap_fetch_free(s);
		return;
	}
	if (meta && imap_mailbox_load_meta(s) < 0) {
		imap_fetch_free(s);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox; try again later",
		           cmd->tag);
		return;
	}
	imap_set_tag(s, cmd->tag);
	if (seen && !s->read_only) {
		size_t n = 0;

		free(s->update_changes);
		free(s->update_uids);
		s->update_uids = NULL;
		s->update_nuids = 0;
		s->update_changes = xcalloc((size_t)f->nidx + 1, sizeof(*s->update_changes));
		for (long i = 0; i < f->nidx; i++) {
			const struct imap_msg *m = &s->msgs[f->idx[i]];

			if (m->flags & STORE_FLAG_SEEN)
				continue;
			s->update_changes[n].uid = m->uid;
			s->update_changes[n].add = STORE_FLAG_SEEN;
			n++;
		}
		s->update_nchanges = n;
		if (n > 0) {
			imap_update_start(s, IMAP_UPDATE_FETCH);
			return;
		}
		free(s->update_changes);
		s->update_changes = NULL;
		s->update_nchanges = 0;
	}
	imap_fetch_begin(s);
}

void
imap_fetch_begin(struct imap_session *s)
{
	netconn_set_timeouts(&s->conn, false);
	imap_enter_state(s, IMAP_STATE_FETCH);
}

/* Opens the message and writes "NAME {len}\r\n"; starts the stream. */
static void
imap_fetch_body_start(struct imap_session *s, const struct imap_msg *m,
                      const struct imap_fetch_item *it)
{
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	uint64_t start = 0, len = m->size, hsize;
	int fd;

	fd = store_message_open(s->server->store, s->account_id, s->mailbox, m->uid);
	if (fd < 0) {
		if (fd != -2)
			log_warnx("imap session=%s event=fetch-open-failed uid=%u", s->conn.id,
			          m->uid);
		evbuffer_add_printf(out, "%s NIL", it->name);
		return;
	}
	if (it->section != IMAP_SECTION_ALL) {
		if (imap_header_size(fd, &hsize) < 0) {
			close(fd);
			evbuffer_add_printf(out, "%s NIL", it->name);
			return;
		}
		if (hsize > m->size)
			hsize = m->size;
		if (it->section == IMAP_SECTION_HEADER) {
			len = hsize;
		} else {
			start = hsize;
			len = m->size - hsize;
		}
	}
	if (it->partial) {
		if (it->offset >= len) {
			len = 0;
		} else {
			start += it->offset;
			len -= it->offset;
			if (len > it->size)
				len = it->size;
		}
	}
	evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)len);
	if (len == 0) {
		close(fd);
		return;
	}
	f->fd = fd;
	f->prev_cr = false;
	f->conv_pos = 0;
	f->start = start;
	f->len = len;
	f->written = 0;
}

/* Streams the current body literal; true when it is complete. */
static bool
imap_fetch_stream(struct imap_session *s)
{
	static char in[IMAP_CHUNK];
	static char conv[2 * IMAP_CHUNK];
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	ssize_t got;
	size_t n;

	got = read(f->fd, in, sizeof(in));
	if (got < 0 && errno == EINTR)
		return false;
	if (got <= 0) {
		/* The file is shorter than listed: pad so the client stays in sync. */
		log_warnx("imap session=%s event=fetch-short-read", s->conn.id);
		while (f->written < f->len) {
			evbuffer_add(out, " ", 1);
			f->written++;
		}
	} else {
		uint64_t base = f->conv_pos, lo, hi;

		n = imap_crlf_convert(&f->prev_cr, in, (size_t)got, conv);
		f->conv_pos += n;
		lo = f->start + f->written;
		hi = f->start + f->len;
		if (f->conv_pos > lo && base < hi) {
			uint64_t from = lo > base ? lo - base : 0;
			uint64_t to = (hi < f->conv_pos ? hi : f->conv_pos) - base;

			evbuffer_add(out, conv + from, (size_t)(to - from));
			f->written += to - from;
		}
	}
	if (f->written < f->len)
		return false;
	close(f->fd);
	f->fd = -1;
	return true;
}

bool
imap_fetch_pump(struct imap_session *s)
{
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	char buf[96], date[64];

	while (evbuffer_get_length(out) < IMAP_FETCH_HIGH) {
		const struct imap_msg *m;
		const struct imap_fetch_item *it;

		if (f->fd >= 0) {
			if (imap_fetch_stream(s))
				f->item++;
			continue;
		}
		if (f->pos == f->nidx) {
			imap_reply(s, "%s OK %sFETCH completed", s->tag, f->uid ? "UID " : "");
			imap_fetch_free(s);
			netconn_set_timeouts(&s->conn, true);
			imap_enter_state(s, IMAP_STATE_SELECTED);
			return true;
		}
		m = &s->msgs[f->idx[f->pos]];
		if (!f->in_msg) {
			evbuffer_add_printf(out, "* %u FETCH (", f->idx[f->pos] + 1);
			f->in_msg = true;
			f->item = 0;
		}
		if (f->item == f->nitems) {
			evbuffer_add(out, ")\r\n", 3);
			f->in_msg = false;
			f->pos++;
			continue;
		}
		it = &f->items[f->item];
		if (f->item > 0)
			evbuffer_add(out, " ", 1);
		switch (it->kind) {
		case IMAP_FETCH_FLAGS:
			imap_flags_format(m->flags, buf, sizeof(buf));
			evbuffer_add_printf(out, "FLAGS %s", buf);
			break;
		case IMAP_FETCH_UID:
			evbuffer_add_printf(out, "UID %u", m->uid);
			break;
		case IMAP_FETCH_SIZE:
			evbuffer_add_printf(out, "RFC822.SIZE %llu", (unsigned long long)m->size);
			break;
		case IMAP_FETCH_DATE: {
			time_t t = (time_t)m->internal_date;
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(date, sizeof(date), "%d-%b-%Y %H:%M:%S +0000", &tm);
			evbuffer_add_printf(out, "INTERNALDATE \"%s\"", date);
			break;
		}
		case IMAP_FETCH_BODY:
			imap_fetch_body_start(s, m, it);
			if (f->fd >= 0)
				continue; /* item advances when the stream is done */
			break;
		}
		f->item++;
	}
	return false;
}
