/* imap_mailbox: the authenticated and selected states: LIST/LSUB, STATUS, SELECT/EXAMINE, the
 * snapshot that fixes sequence numbers, the notify queue that changes it only at the moments
 * RFC 3501 7.4.1 allows, store updates (STORE, EXPUNGE, CLOSE, FETCH's \Seen), and IDLE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "imap/imap_notify.h"
#include "imap/imap_private.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "store/store.h"

void
imap_flags_format(uint32_t flags, char *buf, size_t size)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
	    {STORE_FLAG_SEEN, "\\Seen"},       {STORE_FLAG_ANSWERED, "\\Answered"},
	    {STORE_FLAG_FLAGGED, "\\Flagged"}, {STORE_FLAG_DELETED, "\\Deleted"},
	    {STORE_FLAG_DRAFT, "\\Draft"},
	};
	size_t n = 0;

	n += (size_t)snprintf(buf, size, "(");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((flags & names[i].bit) == 0)
			continue;
		n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 1 ? " " : "", names[i].name);
	}
	snprintf(buf + n, size - n, ")");
}

void
imap_msg_flags_write(struct imap_session *s, const struct imap_msg *m)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	char buf[128];
	size_t n;

	imap_flags_format(m->flags, buf, sizeof(buf));
	n = strlen(buf) - 1; /* without the ')' */
	evbuffer_add(out, buf, n);
	if (m->recent) {
		evbuffer_add_printf(out, "%s\\Recent", n > 1 ? " " : "");
		n++;
	}
	if (m->keywords != NULL && m->keywords[0] != '\0')
		evbuffer_add_printf(out, "%s%s", n > 1 ? " " : "", m->keywords);
	evbuffer_add(out, ")", 1);
}

long
imap_msg_find(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->nmsgs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (s->msgs[mid].uid == uid)
			return (long)mid;
		if (s->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void
imap_msg_remove(struct imap_session *s, size_t idx)
{
	free(s->msgs[idx].keywords);
	memmove(&s->msgs[idx], &s->msgs[idx + 1], (s->nmsgs - idx - 1) * sizeof(*s->msgs));
	s->nmsgs--;
}

static struct imap_msg *
imap_msg_append(struct imap_session *s, uint32_t uid)
{
	struct imap_msg *m;

	if (s->nmsgs == s->msgs_cap) {
		s->msgs_cap = s->msgs_cap == 0 ? 16 : 2 * s->msgs_cap;
		s->msgs = xrealloc(s->msgs, s->msgs_cap * sizeof(*s->msgs));
	}
	m = &s->msgs[s->nmsgs++];
	memset(m, 0, sizeof(*m));
	m->uid = uid;
	return m;
}

/* --- LIST, LSUB, NAMESPACE --- */

void
imap_cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "NAMESPACE takes no arguments");
		return;
	}
	imap_reply(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_reply(s, "%s OK NAMESPACE completed", cmd->tag);
}

/* --- \Recent --- */

/* The highest UID of mailbox_id handed out as \Recent. A mailbox the server has not heard of
 * since it started gets initial_uid: the caller knows that everything up to it is old (SELECT:
 * its last UID, since new mail would have created the entry; a NEW event: the UID before it). */
static uint32_t
imap_recent_claimed(struct imap_server *server, int64_t mailbox_id, uint32_t initial_uid)
{
	uint32_t *uid;

	if (server->recent == NULL)
		server->recent = hash_new();
	uid = hash_get_int(server->recent, mailbox_id);
	if (uid == NULL) {
		uid = xmalloc(sizeof(*uid));
		*uid = initial_uid;
		hash_put_int(server->recent, mailbox_id, uid);
	}
	return *uid;
}

void
imap_recent_event(const struct notify_event *ev, void *arg)
{
	struct imap_server *server = arg;

	if (ev->kind == NOTIFY_NEW && ev->uid > 0)
		imap_recent_claimed(server, ev->mailbox_id, ev->uid - 1);
	/* The mailbox is gone with its messages (ids are never reused, store_schema.c 4). */
	if (ev->kind == NOTIFY_MAILBOX_DELETED && server->recent != NULL)
		free(hash_remove_int(server->recent, ev->mailbox_id));
}

static void
imap_recent_claim(struct imap_server *server, int64_t mailbox_id, uint32_t uid)
{
	uint32_t *claimed =
	    server->recent != NULL ? hash_get_int(server->recent, mailbox_id) : NULL;

	if (claimed != NULL && *claimed < uid)
		*claimed = uid;
}

static bool
imap_recent_drop(const void *key, size_t keylen, void *value, void *arg)
{
	free(value);
	return true;
}

void
imap_recent_free(struct imap_server *server)
{
	if (server->recent == NULL)
		return;
	hash_foreach(server->recent, imap_recent_drop, NULL);
	hash_free(&server->recent);
}

/* --- keywords and UID sets --- */

static bool
imap_keyword_known(const char *list, const char *kw, size_t len)
{
	for (const char *p = list; p != NULL && *p != '\0';) {
		size_t n = strcspn(p, " ");

		if (n == len && strncasecmp(p, kw, len) == 0)
			return true;
		p += n;
		p += *p == ' ';
	}
	return false;
}

static void
imap_flags_announce(struct imap_session *s)
{
	const char *kw = s->keywords != NULL ? s->keywords : "";
	const char *sep = kw[0] != '\0' ? " " : "";

	imap_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)", sep, kw);
	if (s->read_only)
		imap_reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
	else
		imap_reply(
		    s,
		    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s "
		    "\\*)] Flags permitted",
		    sep, kw);
}

/* Adds unknown keywords to s->keywords; true when any was new. */
static bool
imap_keywords_add(struct imap_session *s, const char *keywords)
{
	bool added = false;

	for (const char *p = keywords; p != NULL && *p != '\0';) {
		size_t n = strcspn(p, " ");

		if (n > 0 && !imap_keyword_known(s->keywords, p, n)) {
			char *joined = xasprintf("%s%s%.*s", s->keywords != NULL ? s->keywords : "",
			                         s->keywords != NULL ? " " : "", (int)n, p);

			free(s->keywords);
			s->keywords = joined;
			added = true;
		}
		p += n;
		p += *p == ' ';
	}
	return added;
}

void
imap_keywords_note(struct imap_session *s, const char *keywords)
{
	if (imap_keywords_add(s, keywords))
		imap_flags_announce(s);
}

void
imap_write_uidset(struct imap_session *s, const uint32_t *uids, size_t n)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);

	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (j > i)
			evbuffer_add_printf(out, "%s%u:%u", i > 0 ? "," : "", uids[i], uids[j]);
		else
			evbuffer_add_printf(out, "%s%u", i > 0 ? "," : "", uids[i]);
		i = j + 1;
	}
}

/* --- STATUS --- */

uint32_t
imap_recent_after(struct imap_server *server, int64_t mailbox_id)
{
	const uint32_t *uid =
	    server->recent != NULL ? hash_get_int(server->recent, mailbox_id) : NULL;

	return uid != NULL ? *uid : UINT32_MAX;
}

static const char *const imap_status_items[] = {
    "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ",
};

const char *
imap_status_items_check(struct imap_session *s, const struct imap_arg *items, size_t nitems)
{
	const size_t n = sizeof(imap_status_items) / sizeof(imap_status_items[0]);

	for (size_t i = 0; i < nitems; i++) {
		size_t k = 0;

		while (k < n && !imap_arg_atom_equals(&items[i], imap_status_items[k]))
			k++;
		if (k == n)
			return "Unknown STATUS item";
		if (k == 5)
			imap_condstore_enable(s); /* RFC 7162 3.1 */
	}
	return NULL;
}

int
imap_status_write(struct imap_session *s, const char *name, const struct store_mailbox *mbox,
                  const struct imap_arg *items, size_t nitems)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct store_mailbox_counts c;

	if (store_mailbox_counts(s->server->store, mbox->id, imap_recent_after(s->server, mbox->id),
	                         &c) < 0)
		return -1;
	evbuffer_add_printf(out, "* STATUS ");
	imap_write_mailbox(s, name);
	evbuffer_add_printf(out, " (");
	for (size_t i = 0; i < nitems; i++) {
		const struct imap_arg *a = &items[i];
		const char *sep = i > 0 ? " " : "";

		if (imap_arg_atom_equals(a, "MESSAGES"))
			evbuffer_add_printf(out, "%sMESSAGES %u", sep, c.messages);
		else if (imap_arg_atom_equals(a, "RECENT"))
			evbuffer_add_printf(out, "%sRECENT %u", sep, c.recent);
		else if (imap_arg_atom_equals(a, "UIDNEXT"))
			evbuffer_add_printf(out, "%sUIDNEXT %u", sep, mbox->uidnext);
		else if (imap_arg_atom_equals(a, "UIDVALIDITY"))
			evbuffer_add_printf(out, "%sUIDVALIDITY %u", sep, mbox->uidvalidity);
		else if (imap_arg_atom_equals(a, "UNSEEN"))
			evbuffer_add_printf(out, "%sUNSEEN %u", sep, c.unseen);
		else
			evbuffer_add_printf(out, "%sHIGHESTMODSEQ %" PRIu64, sep,
			                    mbox->highestmodseq > 0 ? mbox->highestmodseq : 1);
	}
	evbuffer_add(out, ")\r\n", 3);
	return 0;
}

void
imap_cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_mailbox mbox;
	char name[IMAP_MAILBOX_MAX];
	const char *error;
	int r;

	if (cmd->nargs != 2 || cmd->args[1].type != IMAP_ARG_LIST || cmd->args[1].list_count == 0) {
		imap_bad(s, cmd->tag, "syntax: STATUS mailbox (items)");
		return;
	}
	if ((error = imap_status_items_check(s, cmd->args[1].list, cmd->args[1].list_count)) !=
	    NULL) {
		imap_bad(s, cmd->tag, error);
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	if (r < 0 ||
	    imap_status_write(s, name, &mbox, cmd->args[1].list, cmd->args[1].list_count) < 0) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox", cmd->tag);
		return;
	}
	imap_reply(s, "%s OK STATUS completed", cmd->tag);
}

/* --- SELECT, EXAMINE and the snapshot --- */

/* SELECT's snapshot reads the lean scan: no header is copied. The size and internal date come
 * with it (two integers of the same row) since COPY's events carry them. */
#define IMAP_SNAPSHOT_FIELDS (STORE_SCAN_FLAGS | STORE_SCAN_KEYWORDS | STORE_SCAN_SIZE)

static void
imap_snapshot_add(const struct store_message_meta *m, void *arg)
{
	struct imap_session *s = arg;
	struct imap_msg *msg;

	if (m->recalled || s->nmsgs == UINT32_MAX)
		return;
	msg = imap_msg_append(s, m->uid);
	msg->flags = m->flags & IMAP_SYSTEM_FLAGS;
	msg->meta = true;
	msg->size = m->size;
	msg->internal_date = m->internal_date;
	msg->modseq = m->modseq;
	if (m->keywords[0] != '\0') {
		msg->keywords = xstrdup(m->keywords);
		imap_keywords_add(s, m->keywords);
	}
}

static void
imap_meta_one(const struct store_message_meta *m, void *arg)
{
	struct imap_session *s = arg;
	long idx = imap_msg_find(s, m->uid);

	if (idx < 0)
		return;
	s->msgs[idx].meta = true;
	s->msgs[idx].size = m->size;
	s->msgs[idx].internal_date = m->internal_date;
	/* Not the MODSEQ: the store's may be newer than the flags this session knows, and
	 * taking it would label old flags with it and make the session ignore the event that
	 * brings the change (the view would stay behind for good). */
}

int
imap_mailbox_load_meta(struct imap_session *s)
{
	struct store_scan q = {.fields = STORE_SCAN_SIZE};
	uint32_t i = 0;

	while (i < s->nmsgs && s->msgs[i].meta)
		i++;
	if (i == s->nmsgs)
		return 0;
	/* Only from the first message without them (those came by notify events, after the
	 * snapshot): the size and date of the rows from there on. */
	q.uid_after = s->msgs[i].uid - 1;
	return store_message_scan(s->server->store, s->account_id, s->mailbox, &q, imap_meta_one,
	                          s) == 1
	           ? 0
	           : -1;
}

static void
imap_event_free(struct imap_event *ev)
{
	free(ev->keywords);
	ev->keywords = NULL;
}

void
imap_mailbox_deselect(struct imap_session *s)
{
	imap_context_clear(s);
	notify_unsubscribe(&s->sub);
	for (uint32_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].keywords);
	free(s->msgs);
	s->msgs = NULL;
	s->nmsgs = 0;
	s->msgs_cap = 0;
	s->exists_announced = 0;
	s->recent = 0;
	for (size_t i = 0; i < s->nevents; i++)
		imap_event_free(&s->events[i]);
	free(s->events);
	s->events = NULL;
	s->nevents = s->events_cap = 0;
	s->events_overflow = false;
	s->mailbox_gone = false;
	free(s->keywords);
	s->keywords = NULL;
	free(s->mailbox);
	s->mailbox = NULL;
	s->mailbox_id = 0;
	s->highestmodseq = 0;
}

/* The hub's callback: copy the event into the session's bounded queue; an idling client gets
 * it at once. */
static void
imap_notify_cb(const struct notify_event *ev, void *arg)
{
	struct imap_session *s = arg;
	struct imap_event *qe;

	if (s->publishing || s->conn.dead || s->mailbox == NULL)
		return;
	if (ev->kind == NOTIFY_MAILBOX_RENAMED) {
		/* The selected mailbox has a new name; it stays selected (RFC 3501 6.3.5). */
		free(s->mailbox);
		s->mailbox = xstrdup(ev->mailbox);
		return;
	}
	if (ev->kind == NOTIFY_MAILBOX_DELETED) {
		s->mailbox_gone = true;
	} else if (ev->kind == NOTIFY_MAILBOX_CREATED) {
		return;
	} else if (s->nevents >= IMAP_EVENTS_MAX) {
		/* Too many changes queued (a client that does not read, a mass update): drop
		 * them and resync from the store at the next flush. Memory stays bounded. */
		for (size_t i = 0; i < s->nevents; i++)
			imap_event_free(&s->events[i]);
		s->nevents = 0;
		s->events_overflow = true;
	} else if (s->events_overflow) {
		/* Already resyncing: the store has this change too. */
	} else {
		if (s->nevents == s->events_cap) {
			s->events_cap = s->events_cap == 0 ? 8 : 2 * s->events_cap;
			s->events = xrealloc(s->events, s->events_cap * sizeof(*s->events));
		}
		qe = &s->events[s->nevents++];
		*qe = (struct imap_event){
		    .kind = ev->kind, .uid = ev->uid, .flags = ev->flags, .modseq = ev->modseq};
		if (ev->keywords[0] != '\0')
			qe->keywords = xstrdup(ev->keywords);
		/* \Recent goes to the first read-write session that hears of the message; a
		 * read-only one shows it while nobody has claimed it, claiming nothing. */
		if (ev->kind == NOTIFY_NEW && ev->uid > 0 &&
		    ev->uid > imap_recent_claimed(s->server, s->mailbox_id, ev->uid - 1)) {
			if (!s->read_only)
				imap_recent_claim(s->server, s->mailbox_id, ev->uid);
			qe->recent = true;
		}
	}
	imap_notify_selected(s, ev->kind); /* IDLE, NOTIFY SELECTED */
}

static void
imap_announce_exists(struct imap_session *s)
{
	uint32_t recent = 0;

	if (s->exists_announced == s->nmsgs)
		return;
	imap_reply(s, "* %u EXISTS", s->nmsgs);
	s->exists_announced = s->nmsgs;
	for (uint32_t i = 0; i < s->nmsgs; i++)
		recent += s->msgs[i].recent;
	/* RECENT goes with EXISTS whenever new mail arrives (RFC 3501 7.3.2). */
	imap_reply(s, "* %u RECENT", recent);
	s->recent = recent;
}

void
imap_flags_changed(struct imap_session *s, long idx)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct imap_msg *m = &s->msgs[idx];

	evbuffer_add_printf(out, "* %ld FETCH (UID %u FLAGS ", idx + 1, m->uid);
	imap_msg_flags_write(s, m);
	if (s->condstore)
		evbuffer_add_printf(out, " MODSEQ (%" PRIu64 ")", m->modseq);
	evbuffer_add(out, ")\r\n", 3);
}

struct imap_resync_ctx {
	struct imap_session *s;
	struct imap_msg *msgs; /* rows changed since sync_modseq, UID order */
	uint32_t n, cap;
	uint32_t *gone; /* UIDs that left (or were recalled) since sync_modseq */
	size_t ngone, gone_cap;
};

static void
imap_resync_gone(uint32_t uid, uint64_t modseq, void *arg)
{
	struct imap_resync_ctx *ctx = arg;

	(void)modseq;
	if (ctx->ngone == ctx->gone_cap) {
		ctx->gone_cap = ctx->gone_cap == 0 ? 64 : 2 * ctx->gone_cap;
		ctx->gone = xrealloc(ctx->gone, ctx->gone_cap * sizeof(*ctx->gone));
	}
	ctx->gone[ctx->ngone++] = uid;
}

static void
imap_resync_one(const struct store_message_meta *m, void *arg)
{
	struct imap_resync_ctx *ctx = arg;
	struct imap_msg *msg;

	if (m->recalled) {
		imap_resync_gone(m->uid, m->modseq, ctx);
		return;
	}
	if (ctx->n == UINT32_MAX)
		return;
	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap == 0 ? 64 : 2 * ctx->cap;
		ctx->msgs = xrealloc(ctx->msgs, ctx->cap * sizeof(*ctx->msgs));
	}
	msg = &ctx->msgs[ctx->n++];
	*msg = (struct imap_msg){.uid = m->uid,
	                         .flags = m->flags & IMAP_SYSTEM_FLAGS,
	                         .meta = true,
	                         .size = m->size,
	                         .internal_date = m->internal_date,
	                         .modseq = m->modseq};
	if (m->keywords[0] != '\0')
		msg->keywords = xstrdup(m->keywords);
}

static int
imap_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
imap_resync_ctx_free(struct imap_resync_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->n; i++)
		free(ctx->msgs[i].keywords);
	free(ctx->msgs);
	free(ctx->gone);
}

/* After a notify-queue overflow: reads only what changed since the session last knew the
 * mailbox whole (sync_modseq: its SELECT or the last resync), i.e. the UIDs that left
 * (store_expunged_list) and the rows with a newer MODSEQ (new messages and flag changes),
 * and tells the client the difference. */
void
imap_mailbox_resync(struct imap_session *s)
{
	struct imap_resync_ctx ctx = {.s = s};
	struct store_scan q = {.fields = IMAP_SNAPSHOT_FIELDS, .modseq_after = s->sync_modseq};
	struct store_mailbox mbox;
	uint32_t j = 0;

	/* The HIGHESTMODSEQ first: what commits while the rest is read is read again next
	 * time (the events that follow are idempotent). */
	if (store_mailbox_get(s->server->store, s->account_id, s->mailbox, &mbox) != 1 ||
	    store_expunged_list(s->server->store, s->account_id, s->mailbox, s->sync_modseq,
	                        imap_resync_gone, &ctx) != 1 ||
	    store_message_scan(s->server->store, s->account_id, s->mailbox, &q, imap_resync_one,
	                       &ctx) != 1) {
		imap_resync_ctx_free(&ctx);
		imap_reply(s, "* BYE [UNAVAILABLE] Cannot read the mailbox; please reconnect");
		netconn_close(&s->conn, "resync-failed");
		return;
	}
	log_info("imap session=%s event=resync mailbox=\"%s\" since=%" PRIu64
	         " changed=%u gone=%zu",
	         s->conn.id, s->mailbox, s->sync_modseq, ctx.n, ctx.ngone);
	s->events_overflow = false;
	if (mbox.highestmodseq > s->sync_modseq)
		s->sync_modseq = mbox.highestmodseq;
	/* Expunged: the snapshot's UIDs that left (highest sequence number first). */
	if (ctx.ngone > 1)
		qsort(ctx.gone, ctx.ngone, sizeof(*ctx.gone), imap_uid_cmp);
	for (size_t g = ctx.ngone; g-- > 0;) {
		long i = imap_msg_find(s, ctx.gone[g]);

		if (i < 0)
			continue;
		imap_msg_remove(s, (size_t)i);
		if ((uint32_t)i < s->exists_announced) {
			imap_expunge_reply(s, (uint32_t)i + 1, ctx.gone[g]);
			s->exists_announced--;
		}
	}
	/* Changed flags on the rest; new messages after the last known UID. */
	for (uint32_t i = 0; i < ctx.n; i++) {
		struct imap_msg *fresh = &ctx.msgs[i];

		while (j < s->nmsgs && s->msgs[j].uid < fresh->uid)
			j++;
		if (j < s->nmsgs && s->msgs[j].uid == fresh->uid) {
			struct imap_msg *m = &s->msgs[j];
			bool same = m->flags == fresh->flags &&
			            strcmp(m->keywords != NULL ? m->keywords : "",
			                   fresh->keywords != NULL ? fresh->keywords : "") == 0;

			m->modseq = fresh->modseq;
			if (!same) {
				m->flags = fresh->flags;
				free(m->keywords);
				m->keywords = fresh->keywords;
				fresh->keywords = NULL;
				if (m->keywords != NULL)
					imap_keywords_note(s, m->keywords);
				if (j < s->exists_announced)
					imap_flags_changed(s, (long)j);
			}
		} else if (s->nmsgs == 0 || fresh->uid > s->msgs[s->nmsgs - 1].uid) {
			struct imap_msg *m = imap_msg_append(s, fresh->uid);

			*m = *fresh;
			fresh->keywords = NULL;
			if (m->keywords != NULL)
				imap_keywords_note(s, m->keywords);
			if (fresh->uid >= s->uidnext)
				s->uidnext = fresh->uid + 1;
			j = s->nmsgs;
		}
		free(fresh->keywords);
		fresh->keywords = NULL;
	}
	imap_resync_ctx_free(&ctx);
	imap_announce_exists(s);
	imap_context_update(s);
}

void
imap_mailbox_flush(struct imap_session *s, bool expunges)
{
	uint32_t last_uid = s->nmsgs > 0 ? s->msgs[s->nmsgs - 1].uid : 0;
	size_t kept = 0;

	if (s->mailbox == NULL)
		return;
	if (s->mailbox_gone) {
		imap_reply(s, "* BYE [ALERT] The selected mailbox was deleted");
		netconn_close(&s->conn, "mailbox-deleted");
		return;
	}
	/* NOTIFY without MessageNew/MessageExpunge for the selected mailbox: the client wants no
	 * message events there (RFC 5465 3.1, as Dovecot); they wait for NOTIFY to ask again. */
	if (!imap_notify_selected_wants(s, IMAP_NOTIFY_EV_NEW))
		return;
	if (s->events_overflow) {
		/* The queue overflowed: what it held is stale. Compare with the store instead,
		 * once expunges may be told. */
		if (!expunges)
			return;
		imap_mailbox_resync(s);
		return;
	}
	for (size_t i = 0; i < s->nevents; i++) {
		struct imap_event *ev = &s->events[i];
		struct imap_msg *m;
		long idx;

		switch (ev->kind) {
		case NOTIFY_NEW:
			if (imap_msg_find(s, ev->uid) >= 0 ||
			    (s->nmsgs > 0 && ev->uid <= s->msgs[s->nmsgs - 1].uid))
				break;
			m = imap_msg_append(s, ev->uid);
			m->flags = ev->flags & IMAP_SYSTEM_FLAGS;
			m->recent = ev->recent;
			m->modseq = ev->modseq;
			m->keywords = ev->keywords;
			ev->keywords = NULL;
			if (m->keywords != NULL)
				imap_keywords_note(s, m->keywords);
			if (ev->uid >= s->uidnext)
				s->uidnext = ev->uid + 1;
			break;
		case NOTIFY_FLAGS:
			idx = imap_msg_find(s, ev->uid);
			if (idx < 0)
				break;
			m = &s->msgs[idx];
			/* Older than (or as old as) what the session already knows, e.g. another
			 * session's change committed before ours but queued behind our STORE's
			 * answer: applying it would report an older state (RFC 7162 3.1: MODSEQ
			 * orders them). POP3 does not know the MODSEQ (0): applied as it comes. */
			if (ev->modseq != 0 && ev->modseq <= m->modseq)
				break;
			if (ev->modseq > m->modseq)
				m->modseq = ev->modseq;
			if (m->flags == (ev->flags & IMAP_SYSTEM_FLAGS) &&
			    strcmp(m->keywords != NULL ? m->keywords : "",
			           ev->keywords != NULL ? ev->keywords : "") == 0)
				break;
			m->flags = ev->flags & IMAP_SYSTEM_FLAGS;
			free(m->keywords);
			m->keywords = ev->keywords;
			ev->keywords = NULL;
			if (m->keywords != NULL)
				imap_keywords_note(s, m->keywords);
			if ((uint32_t)idx >= s->exists_announced ||
			    !imap_notify_selected_wants(s, IMAP_NOTIFY_EV_FLAGS))
				break; /* the EXISTS below tells it; NOTIFY without FlagChange */
			imap_flags_changed(s, idx);
			break;
		case NOTIFY_EXPUNGE:
			if (!expunges) {
				s->events[kept++] = *ev;
				ev->keywords = NULL;
				break;
			}
			idx = imap_msg_find(s, ev->uid);
			if (idx < 0)
				break;
			imap_msg_remove(s, (size_t)idx);
			if ((uint32_t)idx < s->exists_announced) {
				imap_expunge_reply(s, (uint32_t)idx + 1, ev->uid);
				s->exists_announced--;
			}
			break;
		default:
			break;
		}
		imap_event_free(ev);
	}
	s->nevents = kept;
	imap_announce_exists(s);
	imap_notify_new_messages(s, last_uid); /* NOTIFY's MessageNew fetch-att */
	imap_context_update(s);
}

/* Marks the messages that are \Recent for this session and claims them (RFC 3501 2.3.2).
 * EXAMINE marks the same messages (its RECENT count, FETCH FLAGS and SEARCH RECENT agree) but
 * claims none, so the next SELECT still sees them as \Recent. */
static void
imap_select_recent(struct imap_session *s)
{
	uint32_t last = s->nmsgs > 0 ? s->msgs[s->nmsgs - 1].uid : 0;
	uint32_t claimed = imap_recent_claimed(s->server, s->mailbox_id, last);

	s->recent = 0;
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		s->msgs[i].recent = s->msgs[i].uid > claimed;
		s->recent += s->msgs[i].recent;
	}
	if (!s->read_only)
		imap_recent_claim(s->server, s->mailbox_id, last);
}

void
imap_cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	bool examine = strcmp(cmd->name, "EXAMINE") == 0;
	struct imap_qresync_param qr = {0};
	char name[IMAP_MAILBOX_MAX];
	struct store_mailbox mbox;
	uint32_t unseen = 0;
	int r;

	if (cmd->nargs < 1 || cmd->nargs > 2) {
		imap_bad(s, cmd->tag,
		         examine ? "syntax: EXAMINE mailbox" : "syntax: SELECT mailbox");
		return;
	}
	/* RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected; RFC 7162 3.2.11: with
	 * QRESYNC, say where the old mailbox's responses end. */
	if (s->mailbox != NULL && s->qresync)
		imap_reply(s, "* OK [CLOSED] Previous mailbox closed");
	imap_mailbox_deselect(s);
	imap_enter_state(s, IMAP_STATE_AUTH);
	if (imap_select_params(s, cmd, &qr) < 0 ||
	    imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	s->mailbox = xstrdup(name);
	s->read_only = examine;
	/* mbox was read before the rows: every change up to its HIGHESTMODSEQ is in them. */
	s->sync_modseq = r > 0 ? mbox.highestmodseq : 0;
	if (r < 0 || store_message_scan(s->server->store, s->account_id, name,
	                                &(struct store_scan){.fields = IMAP_SNAPSHOT_FIELDS},
	                                imap_snapshot_add, s) != 1) {
		imap_mailbox_deselect(s);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot open the mailbox; try again later",
		           cmd->tag);
		return;
	}
	s->mailbox_id = mbox.id;
	s->uidvalidity = mbox.uidvalidity;
	s->uidnext = mbox.uidnext;
	s->highestmodseq = mbox.highestmodseq > 0 ? mbox.highestmodseq : 1;
	if (s->server->hub != NULL)
		s->sub =
		    notify_subscribe(s->server->hub, s->account_id, mbox.id, imap_notify_cb, s);
	imap_select_recent(s);
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		if ((s->msgs[i].flags & STORE_FLAG_SEEN) == 0) {
			unseen = i + 1;
			break;
		}
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	log_debug("imap session=%s event=select mailbox=%s messages=%u", s->conn.id, name,
	          s->nmsgs);
	imap_flags_announce(s);
	imap_reply(s, "* %u EXISTS", s->nmsgs);
	s->exists_announced = s->nmsgs;
	imap_reply(s, "* %u RECENT", s->recent);
	if (unseen > 0)
		imap_reply(s, "* OK [UNSEEN %u] First unseen", unseen);
	imap_reply(s, "* OK [UIDVALIDITY %u] UIDs valid", s->uidvalidity);
	imap_reply(s, "* OK [UIDNEXT %u] Predicted next UID", s->uidnext);
	/* RFC 7162 3.1.2.1: with every successful SELECT/EXAMINE, CONDSTORE enabled or not. */
	imap_reply(s, "* OK [HIGHESTMODSEQ %" PRIu64 "] Highest", s->highestmodseq);
	imap_select_resync(s, &qr);
	imap_reply(s, "%s OK [%s] %s completed", cmd->tag, examine ? "READ-ONLY" : "READ-WRITE",
	           cmd->name);
}

void
imap_cmd_unselect(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "UNSELECT takes no arguments");
		return;
	}
	imap_mailbox_deselect(s);
	imap_enter_state(s, IMAP_STATE_AUTH);
	imap_reply(s, "%s OK UNSELECT completed", cmd->tag);
}

void
imap_cmd_check(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "CHECK takes no arguments");
		return;
	}
	imap_reply(s, "%s OK CHECK completed", cmd->tag);
}

/* --- sequence sets --- */

long
imap_seqset_expand(struct imap_session *s, const char *tag, const struct imap_arg *arg, bool uid,
                   uint32_t **idx_r)
{
	struct imap_seq_range *ranges;
	const char *text, *error;
	size_t count;
	uint32_t max;
	uint32_t *idx;
	long n = 0;

	*idx_r = NULL;
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NUMBER) {
		imap_bad(s, tag, "Invalid sequence set");
		return -1;
	}
	text = arg->str;
	ranges = xcalloc(IMAP_SEQSET_MAX_RANGES, sizeof(*ranges));
	if (imap_parse_seqset(text, ranges, IMAP_SEQSET_MAX_RANGES, &count, &error) < 0) {
		free(ranges);
		imap_bad(s, tag, error);
		return -1;
	}
	max = uid ? (s->nmsgs > 0 ? s->msgs[s->nmsgs - 1].uid : 0) : s->nmsgs;
	for (size_t i = 0; i < count; i++) {
		uint32_t lo = ranges[i].lo == IMAP_SEQ_STAR ? max : ranges[i].lo;
		uint32_t hi = ranges[i].hi == IMAP_SEQ_STAR ? max : ranges[i].hi;

		ranges[i].lo = lo < hi ? lo : hi;
		ranges[i].hi = lo < hi ? hi : lo;
		if (!uid && (ranges[i].hi > s->nmsgs || ranges[i].lo == 0)) {
			free(ranges);
			imap_bad(s, tag, "Invalid sequence number (out of range)");
			return -1;
		}
	}
	idx = xcalloc(s->nmsgs + 1, sizeof(*idx));
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		uint32_t key = uid ? s->msgs[i].uid : i + 1;

		for (size_t j = 0; j < count; j++) {
			if (key >= ranges[j].lo && key <= ranges[j].hi) {
				idx[n++] = i;
				break;
			}
		}
	}
	free(ranges);
	*idx_r = idx;
	return n;
}

/* --- IDLE (RFC 2177) --- */

static void
imap_idle_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;

	if (s->state == IMAP_STATE_IDLE && !netconn_output_full(&s->conn))
		imap_reply(s, "* OK Still here");
}

void
imap_cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
	struct timeval tv = {IMAP_IDLE_KEEPALIVE, 0};

	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "IDLE takes no arguments");
		return;
	}
	imap_set_tag(s, cmd->tag);
	imap_enter_state(s, IMAP_STATE_IDLE);
	imap_reply(s, "+ idling");
	imap_parser_expect_line(s->parser);
	imap_mailbox_flush(s, true);
	if (s->idle_timer == NULL)
		s->idle_timer = event_new(s->server->base, -1, EV_PERSIST, imap_idle_keepalive, s);
	event_add(s->idle_timer, &tv);
}

void
imap_idle_line(struct imap_session *s, const char *line)
{
	if (s->idle_timer != NULL)
		event_del(s->idle_timer);
	imap_enter_state(s, s->mailbox != NULL ? IMAP_STATE_SELECTED : IMAP_STATE_AUTH);
	if (strcasecmp(line, "DONE") != 0) {
		imap_bad(s, s->tag, "Expected DONE");
		return;
	}
	imap_mailbox_flush(s, true);
	imap_reply(s, "%s OK IDLE terminated", s->tag);
}
