/* imap_notify: NOTIFY (RFC 5465): a session's filters and the dispatch of the hub's events to it
 * (the command's grammar is imap_notify_parse.c). See imap_notify.h. */
#include "imap/imap_notify.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imap/imap_private.h"
#include "imap/imap_section.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/mimestruct.h"
#include "notify/notify.h"
#include "store/store_reader.h"

/* A session's pending notifications for other mailboxes. Past these it has fallen behind: the
 * queue is dropped and NOTIFICATIONOVERFLOW sent (RFC 5465 5.8). */
#define IMAP_NOTIFY_PENDING_MAX 512 /* mailboxes with changes not yet told */
#define IMAP_NOTIFY_LISTS_MAX 256   /* mailbox name and subscription changes not yet told */
#define IMAP_NOTIFY_RETRY_MS 200    /* flush again while a FETCH streams or output is full */

/* --- a session's NOTIFY state --- */

struct imap_notify_rule {
	enum imap_notify_filter filter;
	unsigned events;
	char **names; /* SUBTREE, MAILBOXES: UTF-8 store names */
	size_t nnames;
};

struct imap_notify_pending {
	int64_t mailbox_id;
	char *name;      /* as the first event named it; checked against the id at the flush */
	unsigned events; /* IMAP_NOTIFY_EV_* that happened there */
};

struct imap_notify_list {
	int kind; /* enum notify_kind: mailbox or subscription event */
	char *name;
	char *old; /* RENAMED */
};

struct imap_notify {
	struct imap_session *s;
	struct imap_notify_rule *rules; /* the groups for other mailboxes */
	size_t nrules;
	unsigned other_events;    /* union of the rules' events */
	unsigned selected_events; /* the SELECTED/SELECTED-DELAYED group's; 0 without one */
	bool delayed;             /* SELECTED-DELAYED */
	enum imap_notify_att atts[IMAP_NOTIFY_ATTS_MAX];
	struct imap_section_item sections[IMAP_NOTIFY_ATTS_MAX]; /* for ATT_SECTION */
	size_t natts;
	struct notify_sub *sub; /* every mailbox of the account, when a rule wants events */
	struct imap_notify_pending *pending;
	size_t npending, pending_cap;
	struct imap_notify_list *lists;
	size_t nlists, lists_cap;
	bool overflow;
	bool own;              /* the session is publishing its own mailbox events */
	bool selected_pending; /* the selected mailbox's queue waits for the command to end */
	struct event *flush_ev;
};

/* The account's subscriptions (read once per flush) and, for NOTIFY SET STATUS only, its
 * mailboxes: a flush looks up just the mailboxes that changed, never the whole list (whose rows
 * each carry a message count). */
struct imap_notify_view {
	struct store_mailbox *mbox;
	size_t n, cap;
	char **subs;
	size_t nsubs, subs_cap;
};

static void
imap_notify_clear_queue(struct imap_notify *n)
{
	for (size_t i = 0; i < n->nlists; i++) {
		free(n->lists[i].name);
		free(n->lists[i].old);
	}
	free(n->lists);
	n->lists = NULL;
	n->nlists = n->lists_cap = 0;
	for (size_t i = 0; i < n->npending; i++)
		free(n->pending[i].name);
	free(n->pending);
	n->pending = NULL;
	n->npending = n->pending_cap = 0;
}

/* Back to "no NOTIFY rules" (NOTIFY NONE, a new NOTIFY SET, overflow); the struct stays, so
 * IDLE keeps following NOTIFY (RFC 5465 4). */
static void
imap_notify_reset(struct imap_notify *n)
{
	notify_unsubscribe(&n->sub);
	for (size_t i = 0; i < n->nrules; i++) {
		for (size_t j = 0; j < n->rules[i].nnames; j++)
			free(n->rules[i].names[j]);
		free(n->rules[i].names);
	}
	free(n->rules);
	n->rules = NULL;
	n->nrules = 0;
	n->other_events = n->selected_events = 0;
	n->delayed = false;
	n->selected_pending = false;
	for (size_t i = 0; i < n->natts; i++) {
		imap_section_clear(&n->sections[i].sec);
		free(n->sections[i].name);
	}
	memset(n->sections, 0, sizeof(n->sections));
	n->natts = 0;
	n->overflow = false;
	imap_notify_clear_queue(n);
}

void
imap_notify_free(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	if (n == NULL)
		return;
	imap_notify_reset(n);
	if (n->flush_ev != NULL)
		event_free(n->flush_ev);
	free(n);
	s->notify = NULL;
}

void
imap_notify_own(struct imap_session *s, bool on)
{
	if (s->notify != NULL)
		s->notify->own = on;
}

static bool
imap_notify_subscribed(const struct imap_notify_view *v, const char *name)
{
	for (size_t i = 0; i < v->nsubs; i++)
		if (strcmp(v->subs[i], name) == 0)
			return true;
	return false;
}

/* The events the rules ask for in the mailbox called name (RFC 5465 6). */
static unsigned
imap_notify_match(const struct imap_notify *n, const struct imap_notify_view *v, const char *name)
{
	unsigned events = 0;

	for (size_t i = 0; i < n->nrules; i++) {
		const struct imap_notify_rule *r = &n->rules[i];
		bool hit = false;

		switch (r->filter) {
		case IMAP_NOTIFY_INBOXES:
			hit = strcmp(name, "INBOX") == 0; /* the only mailbox delivery writes to */
			break;
		case IMAP_NOTIFY_PERSONAL:
			hit = true;
			break;
		case IMAP_NOTIFY_SUBSCRIBED:
			hit = imap_notify_subscribed(v, name);
			break;
		case IMAP_NOTIFY_SUBTREE:
			for (size_t j = 0; j < r->nnames && !hit; j++) {
				size_t len = strlen(r->names[j]);

				hit = strncmp(name, r->names[j], len) == 0 &&
				      (name[len] == '\0' || name[len] == '/');
			}
			break;
		case IMAP_NOTIFY_MAILBOXES:
			for (size_t j = 0; j < r->nnames && !hit; j++)
				hit = strcmp(name, r->names[j]) == 0;
			break;
		default:
			break;
		}
		if (hit)
			events |= r->events;
	}
	return events;
}

static void
imap_notify_view_mailbox(const struct store_mailbox *mbox, void *arg)
{
	struct imap_notify_view *v = arg;

	if (v->n == v->cap) {
		v->cap = v->cap == 0 ? 16 : 2 * v->cap;
		v->mbox = xrealloc(v->mbox, v->cap * sizeof(*v->mbox));
	}
	v->mbox[v->n++] = *mbox;
}

static void
imap_notify_view_sub(const char *name, void *arg)
{
	struct imap_notify_view *v = arg;

	if (v->nsubs == v->subs_cap) {
		v->subs_cap = v->subs_cap == 0 ? 16 : 2 * v->subs_cap;
		v->subs = xrealloc(v->subs, v->subs_cap * sizeof(*v->subs));
	}
	v->subs[v->nsubs++] = xstrdup(name);
}

static void
imap_notify_view_free(struct imap_notify_view *v)
{
	for (size_t i = 0; i < v->nsubs; i++)
		free(v->subs[i]);
	free(v->subs);
	free(v->mbox);
	memset(v, 0, sizeof(*v));
}

/* Reads the subscriptions, and the mailbox list when mailboxes is true. */
static int
imap_notify_view_load(struct imap_session *s, struct imap_notify_view *v, bool mailboxes)
{
	memset(v, 0, sizeof(*v));
	if (store_subscription_list(s->server->store, s->account_id, imap_notify_view_sub, v) < 0 ||
	    (mailboxes && store_mailbox_list(s->server->store, s->account_id,
	                                     imap_notify_view_mailbox, v) < 0)) {
		imap_notify_view_free(v);
		return -1;
	}
	return 0;
}

/* What RFC 5465 5.1-5.3 ask of a STATUS for another mailbox, all at once: MESSAGES, UIDNEXT,
 * UIDVALIDITY (MessageNew, MessageExpunge), UNSEEN (flag changes), HIGHESTMODSEQ with
 * CONDSTORE. */
static const struct imap_arg imap_notify_status_items[] = {
    {.type = IMAP_ARG_ATOM, .str = "MESSAGES", .len = 8},
    {.type = IMAP_ARG_ATOM, .str = "UIDNEXT", .len = 7},
    {.type = IMAP_ARG_ATOM, .str = "UIDVALIDITY", .len = 11},
    {.type = IMAP_ARG_ATOM, .str = "UNSEEN", .len = 6},
    {.type = IMAP_ARG_ATOM, .str = "HIGHESTMODSEQ", .len = 13},
};

static void
imap_notify_status(struct imap_session *s, const struct store_mailbox *mbox)
{
	size_t nitems = s->condstore ? 5 : 4;

	if (imap_status_write(s, mbox->name, mbox, imap_notify_status_items, nitems) < 0)
		log_warnx("imap session=%s event=notify-status-failed mailbox_id=%" PRId64,
		          s->conn.id, mbox->id);
}

/* "* LIST (attributes) "/" name [("OLDNAME" (old))]" (RFC 5465 5.4, 5.5; RFC 5258 extended
 * data, sent whether or not the client uses LIST-EXTENDED, as 5465 section 3 says). */
static void
imap_notify_list_write(struct imap_session *s, const struct imap_notify_view *v,
                       const struct imap_notify_list *l)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct store_mailbox mbox;
	bool subscribed = imap_notify_subscribed(v, l->name);
	const char *sep = "";

	evbuffer_add_printf(out, "* LIST (");
	/* As the mailbox is now (it may have changed again since the event). */
	if (store_mailbox_get(s->server->store, s->account_id, l->name, &mbox) != 1) {
		evbuffer_add_printf(out, "\\NonExistent");
		sep = " ";
	}
	if (subscribed)
		evbuffer_add_printf(out, "%s\\Subscribed", sep);
	evbuffer_add_printf(out, ") \"/\" ");
	imap_write_mailbox(s, l->name);
	if (l->old != NULL) {
		evbuffer_add_printf(out, " (\"OLDNAME\" (");
		imap_write_mailbox(s, l->old);
		evbuffer_add_printf(out, "))");
	}
	evbuffer_add(out, "\r\n", 2);
}

static bool
imap_notify_can_write(const struct imap_session *s)
{
	/* Untagged responses go between whole lines: not inside a FETCH being streamed, not in
	 * a SASL exchange, not once closing. */
	return (s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED ||
	        s->state == IMAP_STATE_IDLE || s->state == IMAP_STATE_WAIT) &&
	       !netconn_output_full(&s->conn);
}

static void
imap_notify_schedule(struct imap_notify *n, bool later)
{
	struct timeval tv = {0, later ? IMAP_NOTIFY_RETRY_MS * 1000 : 0};

	if (!evtimer_pending(n->flush_ev, NULL) || !later)
		evtimer_add(n->flush_ev, &tv);
}

/* Sends what is queued for other mailboxes: LIST lines in order, then one STATUS per mailbox. */
static void
imap_notify_flush(evutil_socket_t fd, short what, void *arg)
{
	struct imap_notify *n = arg;
	struct imap_session *s = n->s;
	struct imap_notify_view v;

	(void)fd;
	(void)what;
	if (s->conn.dead)
		return;
	if (n->selected_pending)
		imap_notify_selected(s, NOTIFY_NEW);
	if (n->npending == 0 && n->nlists == 0 && !n->overflow)
		return;
	if (!imap_notify_can_write(s)) {
		imap_notify_schedule(n, true);
		return;
	}
	if (n->overflow) {
		imap_reply(s,
		           "* OK [NOTIFICATIONOVERFLOW] Too many changes to tell; NOTIFY NONE is "
		           "in effect");
		log_info("imap session=%s event=notify-overflow", s->conn.id);
		imap_notify_reset(n);
		return;
	}
	if (imap_notify_view_load(s, &v, false) < 0) {
		log_warnx("imap session=%s event=notify-list-failed", s->conn.id);
		imap_notify_schedule(n, true);
		return;
	}
	for (size_t i = 0; i < n->nlists; i++) {
		const struct imap_notify_list *l = &n->lists[i];
		unsigned want = l->kind == NOTIFY_SUBSCRIBED || l->kind == NOTIFY_UNSUBSCRIBED
		                    ? IMAP_NOTIFY_EV_SUBSCRIPTION
		                    : IMAP_NOTIFY_EV_MAILBOXNAME;
		unsigned events = imap_notify_match(n, &v, l->name);

		if (l->old != NULL)
			events |= imap_notify_match(n, &v, l->old);
		if (events & want)
			imap_notify_list_write(s, &v, l);
	}
	for (size_t i = 0; i < n->npending; i++) {
		const struct imap_notify_pending *p = &n->pending[i];
		struct store_mailbox mbox;

		/* Gone or renamed meanwhile (a LIST says so), or selected since (SELECTED rules
		 * it). */
		if (store_mailbox_get(s->server->store, s->account_id, p->name, &mbox) != 1 ||
		    mbox.id != p->mailbox_id || (s->mailbox != NULL && mbox.id == s->mailbox_id))
			continue;
		if (imap_notify_match(n, &v, mbox.name) & p->events)
			imap_notify_status(s, &mbox);
	}
	imap_notify_view_free(&v);
	imap_notify_clear_queue(n);
}

static void
imap_notify_overflow(struct imap_notify *n)
{
	imap_notify_clear_queue(n);
	notify_unsubscribe(&n->sub);
	n->overflow = true;
}

/* The hub's callback for the account's other mailboxes: notes the change, bounded, and leaves
 * the writing to the deferred flush (a burst of deliveries gives one STATUS). */
static void
imap_notify_event(const struct notify_event *ev, void *arg)
{
	struct imap_notify *n = arg;
	struct imap_session *s = n->s;
	unsigned event = 0;

	if (s->conn.dead || n->overflow)
		return;
	switch (ev->kind) {
	case NOTIFY_NEW:
		event = IMAP_NOTIFY_EV_NEW;
		break;
	case NOTIFY_EXPUNGE:
		event = IMAP_NOTIFY_EV_EXPUNGE;
		break;
	case NOTIFY_FLAGS:
		event = IMAP_NOTIFY_EV_FLAGS;
		break;
	case NOTIFY_MAILBOX_CREATED:
	case NOTIFY_MAILBOX_DELETED:
	case NOTIFY_MAILBOX_RENAMED:
		event = IMAP_NOTIFY_EV_MAILBOXNAME;
		break;
	case NOTIFY_SUBSCRIBED:
	case NOTIFY_UNSUBSCRIBED:
		event = IMAP_NOTIFY_EV_SUBSCRIPTION;
		break;
	default:
		return;
	}
	if ((n->other_events & event) == 0)
		return;
	if (event & IMAP_NOTIFY_EV_MESSAGE) {
		size_t i = 0;

		/* The selected mailbox is SELECTED's (RFC 5465 6.1), even with no such group. */
		if (s->mailbox != NULL && ev->mailbox_id == s->mailbox_id)
			return;
		while (i < n->npending && n->pending[i].mailbox_id != ev->mailbox_id)
			i++;
		if (i == n->npending) {
			if (n->npending == IMAP_NOTIFY_PENDING_MAX) {
				imap_notify_overflow(n);
				imap_notify_schedule(n, false);
				return;
			}
			if (n->npending == n->pending_cap) {
				n->pending_cap = n->pending_cap == 0 ? 4 : 2 * n->pending_cap;
				n->pending =
				    xrealloc(n->pending, n->pending_cap * sizeof(*n->pending));
			}
			n->pending[n->npending++] = (struct imap_notify_pending){
			    .mailbox_id = ev->mailbox_id, .name = xstrdup(ev->mailbox)};
		}
		n->pending[i].events |= event;
	} else {
		struct imap_notify_list *l;

		if (n->own)
			return;
		if (n->nlists == IMAP_NOTIFY_LISTS_MAX) {
			imap_notify_overflow(n);
			imap_notify_schedule(n, false);
			return;
		}
		if (n->nlists == n->lists_cap) {
			n->lists_cap = n->lists_cap == 0 ? 4 : 2 * n->lists_cap;
			n->lists = xrealloc(n->lists, n->lists_cap * sizeof(*n->lists));
		}
		l = &n->lists[n->nlists++];
		l->kind = ev->kind;
		l->name = xstrdup(ev->mailbox);
		l->old = ev->kind == NOTIFY_MAILBOX_RENAMED ? xstrdup(ev->old_mailbox) : NULL;
	}
	imap_notify_schedule(n, false);
}

/* --- the selected mailbox --- */

bool
imap_notify_selected_wants(const struct imap_session *s, unsigned event)
{
	return s->notify == NULL || (s->notify->selected_events & event) != 0;
}

void
imap_notify_selected(struct imap_session *s, int kind)
{
	struct imap_notify *n = s->notify;
	bool idle = s->state == IMAP_STATE_IDLE;
	unsigned event;

	/* Without NOTIFY, IDLE tells everything at once (RFC 2177). A deleted mailbox ends the
	 * session (the flush sends BYE): at once while idling, and with NOTIFY between
	 * commands too. */
	if (n == NULL || kind == NOTIFY_MAILBOX_DELETED) {
		if ((idle || (n != NULL && s->state == IMAP_STATE_SELECTED)) &&
		    !netconn_output_full(&s->conn))
			imap_mailbox_flush(s, true);
		return;
	}
	event = kind == NOTIFY_NEW       ? IMAP_NOTIFY_EV_NEW
	        : kind == NOTIFY_EXPUNGE ? IMAP_NOTIFY_EV_EXPUNGE
	        : kind == NOTIFY_FLAGS   ? IMAP_NOTIFY_EV_FLAGS
	                                 : 0;
	/* With NOTIFY, exactly what it asked for, idle or not (RFC 5465 4), and only between
	 * commands: a command in progress tells the rest when it ends. SELECTED-DELAYED keeps
	 * expunges for a command that may send them (RFC 3501 7.4.1), IDLE being one. */
	if ((n->selected_events & event) == 0)
		return;
	if ((!idle && s->state != IMAP_STATE_SELECTED) || netconn_output_full(&s->conn)) {
		/* A command runs (its end tells what it may) or the client does not read: look
		 * again shortly, so what came meanwhile is not left for the next command. */
		if (s->mailbox != NULL && s->state != IMAP_STATE_CLOSING) {
			n->selected_pending = true;
			imap_notify_schedule(n, true);
		}
		return;
	}
	n->selected_pending = false;
	imap_mailbox_flush(s, idle || !n->delayed);
}

/* What one message's MessageNew FETCH reads: its structure (kept with the row) and, for a
 * HEADER.FIELDS section, its file. */
struct imap_notify_msg {
	struct mimestruct *ms;
	int fd;
	struct buf text; /* ENVELOPE/BODY/BODYSTRUCTURE being built */
};

/* Loads what n's fetch-att need for m. 1, 0 when the message is already gone (its EXPUNGE
 * will tell), -1 when it cannot be read. */
static int
imap_notify_msg_open(struct imap_session *s, const struct imap_notify *n, const struct imap_msg *m,
                     struct imap_notify_msg *nm)
{
	bool need_ms = false, need_fd = false;
	unsigned char *blob = NULL;
	size_t len = 0;
	int r;

	for (size_t k = 0; k < n->natts; k++) {
		need_ms |= n->atts[k] >= IMAP_NOTIFY_ATT_ENVELOPE;
		need_fd |= n->atts[k] == IMAP_NOTIFY_ATT_SECTION;
	}
	if (need_fd) {
		/* Held while the response is written: readable even if expunged meanwhile. */
		nm->fd = store_message_open(s->server->store, s->account_id, s->mailbox, m->uid);
		if (nm->fd < 0)
			return nm->fd == -2 ? 0 : -1;
	}
	if (!need_ms)
		return 1;
	r = store_message_mime(s->server->store, s->account_id, s->mailbox, m->uid, &blob, &len);
	if (r == 1 && blob != NULL)
		nm->ms = mimestruct_load(blob, len);
	free(blob);
	if (nm->ms != NULL)
		return 1;
	if (r == 0 && nm->fd < 0)
		return 0;
	/* Stored without a structure: build it from the file, as FETCH does. */
	if (nm->fd < 0 &&
	    (nm->fd = store_message_open(s->server->store, s->account_id, s->mailbox, m->uid)) < 0)
		return nm->fd == -2 ? 0 : -1;
	blob = NULL;
	if (mimestruct_build_fd(nm->fd, &blob, &len) == 0)
		nm->ms = mimestruct_load(blob, len);
	free(blob);
	return nm->ms != NULL ? 1 : -1;
}

static void
imap_notify_msg_close(struct imap_notify_msg *nm)
{
	mimestruct_free(&nm->ms);
	if (nm->fd >= 0)
		close(nm->fd);
	nm->fd = -1;
	buf_free(&nm->text);
}

static void
imap_notify_write_att(struct imap_session *s, const struct imap_msg *m, struct imap_notify *n,
                      size_t k, struct imap_notify_msg *nm)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct imap_section_stream st = {0};
	struct store_reader *rd;
	int dfd;
	enum imap_notify_att att = n->atts[k];
	char date[64];
	struct tm tm;
	time_t t;

	switch (att) {
	case IMAP_NOTIFY_ATT_UID:
		evbuffer_add_printf(out, "UID %u", m->uid);
		break;
	case IMAP_NOTIFY_ATT_FLAGS:
		evbuffer_add_printf(out, "FLAGS ");
		imap_msg_flags_write(s, m);
		break;
	case IMAP_NOTIFY_ATT_MODSEQ:
		evbuffer_add_printf(out, "MODSEQ (%" PRIu64 ")", m->modseq > 0 ? m->modseq : 1);
		break;
	case IMAP_NOTIFY_ATT_INTERNALDATE:
		t = (time_t)m->internal_date;
		gmtime_r(&t, &tm);
		strftime(date, sizeof(date), "%d-%b-%Y %H:%M:%S +0000", &tm);
		evbuffer_add_printf(out, "INTERNALDATE \"%s\"", date);
		break;
	case IMAP_NOTIFY_ATT_SIZE:
		evbuffer_add_printf(out, "RFC822.SIZE %" PRIu64, m->size);
		break;
	case IMAP_NOTIFY_ATT_ENVELOPE:
	case IMAP_NOTIFY_ATT_BODY:
	case IMAP_NOTIFY_ATT_BODYSTRUCTURE:
		buf_truncate(&nm->text, 0);
		if (att == IMAP_NOTIFY_ATT_ENVELOPE)
			mimestruct_imap_envelope(nm->ms, &nm->text);
		else
			mimestruct_imap_body(nm->ms, att == IMAP_NOTIFY_ATT_BODYSTRUCTURE,
			                     &nm->text);
		imap_section_nul(nm->text.data, nm->text.len);
		evbuffer_add_printf(out, "%s ",
		                    att == IMAP_NOTIFY_ATT_ENVELOPE ? "ENVELOPE"
		                    : att == IMAP_NOTIFY_ATT_BODY   ? "BODY"
		                                                    : "BODYSTRUCTURE");
		evbuffer_add(out, nm->text.data, nm->text.len);
		break;
	case IMAP_NOTIFY_ATT_SECTION:
		/* HEADER.FIELDS: read (at most IMAP_SECTION_HEADER_MAX) and written at once, on
		 * this thread (no I/O pool): an unsolicited FETCH cannot wait for a read. */
		dfd = nm->fd >= 0 ? dup(nm->fd) : -1;
		rd = dfd >= 0 ? store_reader_from_fd(dfd) : NULL;
		imap_section_start(s, m, &n->sections[k], nm->ms, rd, NULL, &st);
		while (st.stream != NULL && imap_section_stream(s, &st) == 0)
			;
		store_reader_free(&rd);
		break;
	}
}

void
imap_notify_new_messages(struct imap_session *s, uint32_t last_uid)
{
	struct imap_notify *n = s->notify;
	struct evbuffer *out;
	uint32_t i;

	if (n == NULL || n->natts == 0 || (n->selected_events & IMAP_NOTIFY_EV_NEW) == 0)
		return;
	i = s->exists_announced;
	while (i > 0 && s->msgs[i - 1].uid > last_uid)
		i--;
	if (i == s->exists_announced)
		return;
	if (imap_mailbox_load_meta(s) < 0) {
		log_warnx("imap session=%s event=notify-fetch-failed", s->conn.id);
		return;
	}
	out = bufferevent_get_output(s->conn.bev);
	for (; i < s->exists_announced; i++) {
		struct imap_notify_msg nm = {.fd = -1};
		int r = imap_notify_msg_open(s, n, &s->msgs[i], &nm);

		if (r <= 0) {
			/* Gone already: its EXPUNGE follows; unreadable: said in the log. */
			if (r < 0)
				log_warnx("imap session=%s event=notify-fetch-failed uid=%u",
				          s->conn.id, s->msgs[i].uid);
			imap_notify_msg_close(&nm);
			continue;
		}
		evbuffer_add_printf(out, "* %u FETCH (", i + 1);
		for (size_t k = 0; k < n->natts; k++) {
			if (k > 0)
				evbuffer_add(out, " ", 1);
			imap_notify_write_att(s, &s->msgs[i], n, k, &nm);
		}
		evbuffer_add(out, ")\r\n", 3);
		imap_notify_msg_close(&nm);
	}
}

/* --- NOTIFY --- */

/* Turns the parsed groups into the session's rules (names decoded; replies and returns -1 on a
 * bad name). */
static int
imap_notify_install(struct imap_session *s, const char *tag, struct imap_notify *n,
                    const struct imap_notify_spec *spec)
{
	char name[IMAP_MAILBOX_MAX];

	n->rules = xcalloc(spec->ngroups + 1, sizeof(*n->rules));
	for (size_t i = 0; i < spec->ngroups; i++) {
		const struct imap_notify_group *g = &spec->groups[i];
		struct imap_notify_rule *r;

		if (g->filter <= IMAP_NOTIFY_SELECTED_DELAYED) {
			n->selected_events = g->events;
			n->delayed = g->filter == IMAP_NOTIFY_SELECTED_DELAYED;
			continue;
		}
		r = &n->rules[n->nrules++];
		r->filter = g->filter;
		r->events = g->events;
		n->other_events |= g->events;
		if (g->nnames == 0)
			continue;
		r->names = xcalloc(g->nnames, sizeof(*r->names));
		for (size_t j = 0; j < g->nnames; j++) {
			if (imap_mailbox_arg(s, tag, spec->names[g->first + j], name,
			                     sizeof(name)) < 0)
				return -1;
			r->names[r->nnames++] = xstrdup(name);
		}
	}
	for (size_t i = 0; i < spec->natts; i++) {
		const struct imap_arg *a = spec->att_args[i];
		struct imap_section_item *it = &n->sections[i];

		n->atts[i] = spec->atts[i];
		n->natts = i + 1;
		if (spec->atts[i] != IMAP_NOTIFY_ATT_SECTION)
			continue;
		imap_section_parse(a->section, &it->sec); /* checked by imap_notify_parse */
		it->partial = a->partial;
		it->offset = a->partial_offset;
		it->size = a->partial_size;
		imap_section_name(it, "BODY", a->section, true); /* the response never says .PEEK */
	}
	return 0;
}

/* NOTIFY SET STATUS: a STATUS for each mailbox whose message events are asked for, the
 * selected one excepted (RFC 5465 3.1). */
static int
imap_notify_initial_status(struct imap_session *s, struct imap_notify *n)
{
	struct imap_notify_view v;

	if ((n->other_events & IMAP_NOTIFY_EV_MESSAGE) == 0)
		return 0;
	if (imap_notify_view_load(s, &v, true) < 0)
		return -1;
	for (size_t i = 0; i < v.n; i++) {
		if (s->mailbox != NULL && v.mbox[i].id == s->mailbox_id)
			continue;
		if (imap_notify_match(n, &v, v.mbox[i].name) & IMAP_NOTIFY_EV_MESSAGE)
			imap_notify_status(s, &v.mbox[i]);
	}
	imap_notify_view_free(&v);
	return 0;
}

void
imap_cmd_notify(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_notify_spec *spec = xcalloc(1, sizeof(*spec));
	struct imap_notify *n;
	const char *error;
	int r;

	r = imap_notify_parse(cmd->args, cmd->nargs, spec, &error);
	if (r == IMAP_NOTIFY_PARSE_BAD) {
		imap_bad(s, cmd->tag, error);
		goto done;
	}
	if (r == IMAP_NOTIFY_PARSE_BADEVENT) {
		imap_reply(s, "%s NO [BADEVENT (" IMAP_NOTIFY_SUPPORTED ")] Unsupported event",
		           cmd->tag);
		goto done;
	}
	if (r == IMAP_NOTIFY_PARSE_CANNOT) {
		imap_reply(s, "%s NO [CANNOT] %s", cmd->tag, error);
		goto done;
	}
	if (s->notify == NULL) {
		s->notify = xcalloc(1, sizeof(*s->notify));
		s->notify->s = s;
		s->notify->flush_ev = evtimer_new(s->server->base, imap_notify_flush, s->notify);
	}
	n = s->notify;
	imap_notify_reset(n);
	if (!spec->none && imap_notify_install(s, cmd->tag, n, spec) < 0) {
		imap_notify_reset(n);
		goto done;
	}
	/* MODSEQ in MessageNew's fetch-att enables CONDSTORE as in FETCH (RFC 7162 3.1). */
	for (size_t i = 0; i < n->natts; i++)
		if (n->atts[i] == IMAP_NOTIFY_ATT_MODSEQ)
			imap_condstore_enable(s);
	if (n->other_events != 0 && s->server->hub != NULL)
		n->sub = notify_subscribe_kinds(s->server->hub, s->account_id, 0, NOTIFY_KINDS_ALL,
		                                imap_notify_event, n);
	if (spec->status && imap_notify_initial_status(s, n) < 0) {
		imap_notify_reset(n);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailboxes; try again later",
		           cmd->tag);
		goto done;
	}
	log_debug("imap session=%s event=notify rules=%zu selected=%u other=%u", s->conn.id,
	          n->nrules, n->selected_events, n->other_events);
	/* The implicit NOOP (RFC 5465 3.1), under the new rules: what they ask for and was held
	 * comes now. */
	if (s->state == IMAP_STATE_SELECTED)
		imap_mailbox_flush(s, true);
	imap_reply(s, "%s OK NOTIFY completed", cmd->tag);
done:
	free(spec);
}
