/* imap_fetch: FETCH and UID FETCH over the selected mailbox's snapshot: the items of RFC 3501
 * 6.4.5 (macros, FLAGS, INTERNALDATE, RFC822.SIZE, UID, ENVELOPE, BODY, BODYSTRUCTURE, body
 * sections with partials, RFC822*) and CONDSTORE's MODSEQ and (CHANGEDSINCE n) (RFC 7162).
 * The MIME structure comes from the store (built at delivery), or is built from the file for
 * rows that have none; body sections stream from the message (imap_section.c, read by the
 * store reader on its I/O pool) under output backpressure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_binary.h"
#include "imap/imap_private.h"
#include "imap/imap_section.h"
#include "imap/imap_session.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/mimestruct.h"
#include "store/store.h"
#include "store/store_reader.h"

#define IMAP_FETCH_ITEMS_MAX 256 /* items in one FETCH (after macro expansion) */

enum imap_fetch_kind {
	IMAP_FETCH_FLAGS,
	IMAP_FETCH_UID,
	IMAP_FETCH_SIZE,
	IMAP_FETCH_DATE,
	IMAP_FETCH_MODSEQ,
	IMAP_FETCH_ENVELOPE,
	IMAP_FETCH_BODY,          /* BODY: the structure without extension data */
	IMAP_FETCH_BODYSTRUCTURE, /* with it */
	IMAP_FETCH_SECTION,       /* BODY[...], RFC822, RFC822.HEADER, RFC822.TEXT */
	IMAP_FETCH_BINARY,        /* BINARY[...], BINARY.PEEK[...] (imap_binary.c) */
	IMAP_FETCH_BINARY_SIZE,   /* BINARY.SIZE[...] */
};

struct imap_fetch_item {
	enum imap_fetch_kind kind;
	bool peek; /* a section that does not set \Seen */
	struct imap_section_item body;
};

struct imap_fetch {
	struct imap_fetch_item *items;
	size_t nitems, items_cap;
	uint32_t *idx;
	long nidx;
	long pos;
	size_t item;
	bool in_msg;
	bool uid;
	uint64_t changedsince; /* (CHANGEDSINCE n); 0 when not given */
	bool vanished;         /* (... VANISHED): VANISHED (EARLIER) first (RFC 7162 3.2.6) */
	/* The structure of the message at ms_pos, loaded when an item needs it. */
	struct mimestruct *ms;
	long ms_pos;
	struct buf text; /* ENVELOPE/BODYSTRUCTURE text being built */
	struct imap_section_stream st;
	struct imap_binary *bin; /* a BINARY item in progress */
	bool unknown_cte;        /* a BINARY part had an unknown encoding: NO [UNKNOWN-CTE] */
	/* The message at pos, open while its response is written when an item needs it:
	 * another session's EXPUNGE unlinks the file, and the open reader keeps it readable, so
	 * every item of the response is real data (RFC 2180 4.1.1). NULL when closed. */
	struct store_reader *msg;
	bool needs_file;      /* a section was asked for */
	bool needs_structure; /* ENVELOPE, BODY or BODYSTRUCTURE (kept with the row) */
	int ms_result;        /* of the last structure load: 1, -2 the row is gone, -1 error */
	bool gone;            /* a message was already expunged: skipped, NO [EXPUNGEISSUED] */
	bool unreadable;      /* a message file could not be opened: skipped, NO */
};

static void
imap_fetch_msg_close(struct imap_fetch *f)
{
	store_reader_free(&f->msg);
}

void
imap_fetch_free(struct imap_session *s)
{
	struct imap_fetch *f = s->fetch;

	if (f == NULL)
		return;
	imap_section_stream_close(&f->st);
	imap_binary_free(&f->bin);
	imap_fetch_msg_close(f);
	for (size_t i = 0; i < f->nitems; i++) {
		imap_section_clear(&f->items[i].body.sec);
		free(f->items[i].body.name);
	}
	mimestruct_free(&f->ms);
	buf_free(&f->text);
	free(f->items);
	free(f->idx);
	free(f);
	s->fetch = NULL;
}

static bool
imap_fetch_add(struct imap_fetch *f, const struct imap_fetch_item *it)
{
	if (f->nitems == IMAP_FETCH_ITEMS_MAX)
		return false;
	if (f->nitems == f->items_cap) {
		f->items_cap = f->items_cap == 0 ? 8 : 2 * f->items_cap;
		f->items = xrealloc(f->items, f->items_cap * sizeof(*f->items));
	}
	f->items[f->nitems++] = *it;
	return true;
}

static bool
imap_fetch_add_kind(struct imap_fetch *f, enum imap_fetch_kind kind)
{
	struct imap_fetch_item it = {.kind = kind};

	return imap_fetch_add(f, &it);
}

static bool
imap_fetch_has(const struct imap_fetch *f, enum imap_fetch_kind kind)
{
	for (size_t i = 0; i < f->nitems; i++)
		if (f->items[i].kind == kind)
			return true;
	return false;
}

/* BODY[section]<partial> / BODY.PEEK[...]; false when invalid. */
static bool
imap_fetch_section_parse(const struct imap_arg *a, struct imap_fetch_item *it)
{
	const char *prefix;
	bool size;

	if (imap_binary_item_parse(a->str, a->section, a->partial, a->partial_offset,
	                           a->partial_size, &it->body, &it->peek, &size)) {
		it->kind = size ? IMAP_FETCH_BINARY_SIZE : IMAP_FETCH_BINARY;
		return true;
	}
	if (strcasecmp(a->str, "BODY.PEEK") == 0)
		it->peek = true;
	else if (strcasecmp(a->str, "BODY") != 0)
		return false;
	if (!imap_section_parse(a->section, &it->body.sec)) {
		imap_section_clear(&it->body.sec);
		return false;
	}
	it->kind = IMAP_FETCH_SECTION;
	it->body.partial = a->partial;
	it->body.offset = a->partial_offset;
	it->body.size = a->partial_size;
	prefix = "BODY"; /* the response never says .PEEK */
	imap_section_name(&it->body, prefix, a->section, true);
	return true;
}

/* One FETCH item; false when it is not one. */
static bool
imap_fetch_item_parse(const struct imap_arg *a, struct imap_fetch_item *it)
{
	static const struct {
		const char *word;
		enum imap_fetch_kind kind;
	} simple[] = {
	    {"FLAGS", IMAP_FETCH_FLAGS},      {"UID", IMAP_FETCH_UID},
	    {"RFC822.SIZE", IMAP_FETCH_SIZE}, {"INTERNALDATE", IMAP_FETCH_DATE},
	    {"MODSEQ", IMAP_FETCH_MODSEQ},    {"ENVELOPE", IMAP_FETCH_ENVELOPE},
	    {"BODY", IMAP_FETCH_BODY},        {"BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE},
	};

	memset(it, 0, sizeof(*it));
	if (a->type == IMAP_ARG_SECTION)
		return imap_fetch_section_parse(a, it);
	if (a->type != IMAP_ARG_ATOM)
		return false;
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (imap_arg_atom_equals(a, simple[i].word)) {
			it->kind = simple[i].kind;
			return true;
		}
	}
	it->kind = IMAP_FETCH_SECTION;
	it->body.sec.spec = MIMESTRUCT_ALL;
	if (imap_arg_atom_equals(a, "RFC822")) {
		imap_section_name(&it->body, "RFC822", "", false);
	} else if (imap_arg_atom_equals(a, "RFC822.HEADER")) {
		it->body.sec.spec = MIMESTRUCT_HEADER;
		it->peek = true; /* RFC 3501: like BODY.PEEK[HEADER] */
		imap_section_name(&it->body, "RFC822.HEADER", "", false);
	} else if (imap_arg_atom_equals(a, "RFC822.TEXT")) {
		it->body.sec.spec = MIMESTRUCT_TEXT;
		imap_section_name(&it->body, "RFC822.TEXT", "", false);
	} else {
		return false;
	}
	return true;
}

/* The items argument: a macro, one item, or a parenthesized list of items (not nested). */
static bool
imap_fetch_items_parse(struct imap_fetch *f, const struct imap_arg *arg)
{
	static const enum imap_fetch_kind fast[] = {IMAP_FETCH_FLAGS, IMAP_FETCH_DATE,
	                                            IMAP_FETCH_SIZE, IMAP_FETCH_ENVELOPE,
	                                            IMAP_FETCH_BODY};
	const struct imap_arg *items = arg;
	size_t nitems = 1, nmacro = 0;
	struct imap_fetch_item it;

	if (imap_arg_atom_equals(arg, "FAST"))
		nmacro = 3;
	else if (imap_arg_atom_equals(arg, "ALL"))
		nmacro = 4;
	else if (imap_arg_atom_equals(arg, "FULL"))
		nmacro = 5;
	for (size_t i = 0; i < nmacro; i++)
		imap_fetch_add_kind(f, fast[i]);
	if (nmacro > 0)
		return true;
	if (arg->type == IMAP_ARG_LIST) {
		items = arg->list;
		nitems = arg->list_count;
		if (nitems == 0)
			return false;
	}
	for (size_t i = 0; i < nitems; i++) {
		if (!imap_fetch_item_parse(&items[i], &it)) {
			imap_section_clear(&it.body.sec);
			free(it.body.name);
			return false;
		}
		if (it.kind == IMAP_FETCH_UID && imap_fetch_has(f, IMAP_FETCH_UID))
			continue;
		if (!imap_fetch_add(f, &it)) {
			imap_section_clear(&it.body.sec);
			free(it.body.name);
			return false;
		}
	}
	return true;
}

/* The FETCH modifiers (RFC 4466): (CHANGEDSINCE n [VANISHED]) of RFC 7162 (VANISHED: UID
 * FETCH with QRESYNC enabled only, 3.2.6). */
static bool
imap_fetch_modifiers_parse(struct imap_session *s, bool uid, struct imap_fetch *f,
                           const struct imap_arg *arg)
{
	bool vanished = arg->type == IMAP_ARG_LIST && arg->list_count == 3 &&
	                imap_arg_atom_equals(&arg->list[2], "VANISHED");

	if (arg->type != IMAP_ARG_LIST || (arg->list_count != 2 && !vanished) ||
	    !imap_arg_atom_equals(&arg->list[0], "CHANGEDSINCE") ||
	    arg->list[1].type != IMAP_ARG_NUMBER || arg->list[1].number > INT64_MAX)
		return false;
	if (vanished && (!uid || !s->qresync))
		return false;
	f->changedsince = arg->list[1].number;
	f->vanished = vanished;
	return true;
}

void
imap_cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_fetch *f;
	bool seen = false, meta = false;

	if (cmd->nargs != 2 && cmd->nargs != 3) {
		imap_bad(s, cmd->tag, "syntax: FETCH sequence-set items [(CHANGEDSINCE n)]");
		return;
	}
	f = xcalloc(1, sizeof(*f));
	f->ms_pos = -1;
	f->uid = cmd->uid;
	s->fetch = f;
	if (cmd->uid)
		imap_fetch_add_kind(f, IMAP_FETCH_UID);
	if (!imap_fetch_items_parse(f, &cmd->args[1])) {
		imap_fetch_free(s);
		imap_bad(s, cmd->tag, "Invalid FETCH item or section");
		return;
	}
	if (cmd->nargs == 3 && !imap_fetch_modifiers_parse(s, cmd->uid, f, &cmd->args[2])) {
		imap_fetch_free(s);
		imap_bad(s, cmd->tag, "Invalid FETCH modifier");
		return;
	}
	/* RFC 7162 3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE; CHANGEDSINCE implies MODSEQ. */
	if (cmd->nargs == 3 || imap_fetch_has(f, IMAP_FETCH_MODSEQ))
		imap_condstore_enable(s);
	if (cmd->nargs == 3 && !imap_fetch_has(f, IMAP_FETCH_MODSEQ))
		imap_fetch_add_kind(f, IMAP_FETCH_MODSEQ);
	for (size_t i = 0; i < f->nitems; i++) {
		enum imap_fetch_kind k = f->items[i].kind;

		if (k == IMAP_FETCH_ENVELOPE || k == IMAP_FETCH_BODY ||
		    k == IMAP_FETCH_BODYSTRUCTURE)
			f->needs_structure = true;
		/* BINARY of a part needs the structure too (NIL is valid there, but real data
		 * is better than an expunge race). */
		if ((k == IMAP_FETCH_BINARY || k == IMAP_FETCH_BINARY_SIZE) &&
		    f->items[i].body.sec.depth > 0)
			f->needs_structure = true;
		if (k == IMAP_FETCH_SECTION || k == IMAP_FETCH_BINARY ||
		    k == IMAP_FETCH_BINARY_SIZE)
			f->needs_file = true;
		if ((k == IMAP_FETCH_SECTION || k == IMAP_FETCH_BINARY) && !f->items[i].peek)
			seen = true;
		if (k == IMAP_FETCH_SIZE || k == IMAP_FETCH_DATE || k == IMAP_FETCH_SECTION)
			meta = true;
	}
	if (seen && !s->read_only && !imap_fetch_has(f, IMAP_FETCH_FLAGS))
		imap_fetch_add_kind(f, IMAP_FETCH_FLAGS);
	if (seen && !s->read_only && s->condstore && !imap_fetch_has(f, IMAP_FETCH_MODSEQ))
		imap_fetch_add_kind(f, IMAP_FETCH_MODSEQ);
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
	if (f->vanished && imap_vanished_earlier(s, f->changedsince, cmd->args[0].str) < 0)
		log_warnx("imap session=%s event=vanished-failed", s->conn.id);
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
imap_server_set_io(struct imap_server *server, struct workers *io)
{
	server->io = io;
}

void
imap_fetch_begin(struct imap_session *s)
{
	netconn_set_timeouts(&s->conn, false);
	imap_enter_state(s, IMAP_STATE_FETCH);
}

/* Opens the message at f->pos for the rest of its response (f->msg). 1, -2 when it is gone
 * (expunged by another session), -1 when it cannot be opened. */
static int
imap_fetch_msg_open(struct imap_session *s, const struct imap_msg *m)
{
	struct imap_fetch *f = s->fetch;

	if (f->msg != NULL)
		return 1;
	return store_reader_open(s->server->store, s->account_id, s->mailbox, m->uid, &f->msg);
}

/* The structure of the message at f->pos: kept with its row, or built from its file. NULL with
 * f->ms_result -2 when the row is gone and no file is open, -1 when it cannot be read. */
static const struct mimestruct *
imap_fetch_structure(struct imap_session *s, const struct imap_msg *m)
{
	struct imap_fetch *f = s->fetch;
	unsigned char *blob = NULL;
	size_t len = 0;
	int r;

	if (f->ms_pos == f->pos)
		return f->ms;
	mimestruct_free(&f->ms);
	f->ms_pos = f->pos;
	f->ms_result = 1;
	r = store_message_mime(s->server->store, s->account_id, s->mailbox, m->uid, &blob, &len);
	if (r == 1 && blob != NULL)
		f->ms = mimestruct_load(blob, len);
	free(blob);
	if (f->ms != NULL)
		return f->ms;
	if (r == 0 && f->msg == NULL) {
		f->ms_result = -2;
		return NULL;
	}
	/* Stored before structures were kept (or not understood), or the row is gone since the
	 * file was opened (expunged by another session): build it from the file. */
	if ((f->ms_result = imap_fetch_msg_open(s, m)) < 0)
		return NULL;
	if (store_reader_structure(f->msg, &blob, &len) == 0)
		f->ms = mimestruct_load(blob, len);
	free(blob);
	if (f->ms == NULL)
		log_warnx("imap session=%s event=fetch-structure-failed uid=%u", s->conn.id,
		          m->uid);
	return f->ms;
}

/* ENVELOPE, BODY or BODYSTRUCTURE of m. */
static void
imap_fetch_structure_write(struct imap_session *s, const struct imap_msg *m,
                           enum imap_fetch_kind kind)
{
	static const char *const names[] = {[IMAP_FETCH_ENVELOPE] = "ENVELOPE",
	                                    [IMAP_FETCH_BODY] = "BODY",
	                                    [IMAP_FETCH_BODYSTRUCTURE] = "BODYSTRUCTURE"};
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct mimestruct *ms = imap_fetch_structure(s, m);

	evbuffer_add_printf(out, "%s ", names[kind]);
	if (ms == NULL) {
		evbuffer_add(out, "NIL", 3);
		return;
	}
	buf_truncate(&f->text, 0);
	if (kind == IMAP_FETCH_ENVELOPE)
		mimestruct_imap_envelope(ms, &f->text);
	else
		mimestruct_imap_body(ms, kind == IMAP_FETCH_BODYSTRUCTURE, &f->text);
	imap_section_nul(f->text.data, f->text.len); /* raw header bytes end up in its literals */
	evbuffer_add(out, f->text.data, f->text.len);
}

/* BINARY[...] / BINARY.SIZE[...] of m; true when it goes on in imap_binary_pump. */
static bool
imap_fetch_binary_write(struct imap_session *s, const struct imap_msg *m,
                        const struct imap_fetch_item *it)
{
	struct imap_fetch *f = s->fetch;
	const struct mimestruct *ms = NULL;
	int r;

	if (it->body.sec.depth > 0 && (ms = imap_fetch_structure(s, m)) == NULL) {
		evbuffer_add_printf(bufferevent_get_output(s->conn.bev), "%s NIL", it->body.name);
		return false;
	}
	r = imap_binary_start(s, m, &it->body, ms, it->kind == IMAP_FETCH_BINARY_SIZE, f->msg,
	                      &f->bin);
	if (r < 0)
		f->unknown_cte = true;
	return r == 0;
}

/* Writes one item of m; true when a body stream was started (the item ends with it). */
static bool
imap_fetch_item_write(struct imap_session *s, const struct imap_msg *m,
                      const struct imap_fetch_item *it)
{
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct mimestruct *ms = NULL;
	char date[64];

	switch (it->kind) {
	case IMAP_FETCH_FLAGS:
		evbuffer_add(out, "FLAGS ", 6);
		imap_msg_flags_write(s, m);
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
	case IMAP_FETCH_MODSEQ:
		evbuffer_add_printf(out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case IMAP_FETCH_ENVELOPE:
	case IMAP_FETCH_BODY:
	case IMAP_FETCH_BODYSTRUCTURE:
		imap_fetch_structure_write(s, m, it->kind);
		break;
	case IMAP_FETCH_SECTION:
		/* The whole message needs no structure. */
		if (it->body.sec.depth > 0 || it->body.sec.spec != MIMESTRUCT_ALL) {
			ms = imap_fetch_structure(s, m);
			if (ms == NULL) {
				evbuffer_add_printf(out, "%s NIL", it->body.name);
				break;
			}
		}
		imap_section_start(s, m, &it->body, ms, f->msg, s->server->io, &f->st);
		return f->st.stream != NULL;
	case IMAP_FETCH_BINARY:
	case IMAP_FETCH_BINARY_SIZE:
		return imap_fetch_binary_write(s, m, it);
	}
	return false;
}

bool
imap_fetch_pump(struct imap_session *s)
{
	struct imap_fetch *f = s->fetch;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);

	while (evbuffer_get_length(out) < IMAP_FETCH_HIGH) {
		const struct imap_msg *m;
		int r;

		if (f->st.stream != NULL) {
			if (imap_section_stream(s, &f->st) == 0)
				return false; /* the output drains or the read completes */
			f->item++;
			continue;
		}
		if (f->bin != NULL) {
			if (imap_binary_pump(s, &f->bin) == 0)
				return false; /* the output drains or the read completes */
			f->item++;
			continue;
		}
		if (f->pos == f->nidx) {
			/* RFC 2180 4.1.2, RFC 5530: what could be sent was; say what was not. */
			if (f->gone)
				imap_reply(s,
				           "%s NO [EXPUNGEISSUED] Some messages were expunged by "
				           "another session",
				           s->tag);
			else if (f->unreadable)
				imap_reply(s, "%s NO [UNAVAILABLE] Some messages could not be read",
				           s->tag);
			else if (f->unknown_cte)
				imap_reply(s,
				           "%s NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding",
				           s->tag);
			else
				imap_reply(s, "%s OK %sFETCH completed", s->tag,
				           f->uid ? "UID " : "");
			imap_fetch_free(s);
			netconn_set_timeouts(&s->conn, true);
			imap_enter_state(s, IMAP_STATE_SELECTED);
			return true;
		}
		m = &s->msgs[f->idx[f->pos]];
		if (!f->in_msg) {
			if (f->changedsince > 0 && m->modseq <= f->changedsince) {
				f->pos++;
				continue;
			}
			/* What the items need is secured before the response starts: the
			 * file (held open, readable even if another session expunges it now)
			 * or the structure. A message already expunged by another session (-2)
			 * or unreadable gets no response rather than NIL items. */
			r = 1;
			if (f->needs_file)
				r = imap_fetch_msg_open(s, m);
			if (r == 1 && f->needs_structure && imap_fetch_structure(s, m) == NULL)
				r = f->ms_result < 0 ? f->ms_result : 1;
			if (r < 0) {
				if (r == -2)
					f->gone = true;
				else
					f->unreadable = true;
				log_info("imap session=%s event=fetch-skipped uid=%u reason=%s",
				         s->conn.id, m->uid, r == -2 ? "expunged" : "unreadable");
				mimestruct_free(&f->ms);
				f->ms_pos = -1;
				f->pos++;
				continue;
			}
			evbuffer_add_printf(out, "* %u FETCH (", f->idx[f->pos] + 1);
			f->in_msg = true;
			f->item = 0;
		}
		if (f->item == f->nitems) {
			evbuffer_add(out, ")\r\n", 3);
			imap_fetch_msg_close(f);
			f->in_msg = false;
			f->pos++;
			mimestruct_free(&f->ms);
			f->ms_pos = -1;
			continue;
		}
		if (f->item > 0)
			evbuffer_add(out, " ", 1);
		if (imap_fetch_item_write(s, m, &f->items[f->item]))
			continue; /* the item advances when the stream is done */
		f->item++;
	}
	return false;
}
