/* imap_mailbox: the authenticated and selected states: LIST/LSUB, STATUS, SELECT/EXAMINE, the
 * snapshot that fixes sequence numbers, the notify queue that changes it only at the moments
 * RFC 3501 7.4.1 allows, store updates (STORE, EXPUNGE, CLOSE, FETCH's \Seen), and IDLE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "imap/imap_private.h"
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

/* "INBOX" in any case names INBOX (RFC 3501 5.1). */
static const char *
imap_mailbox_name(const char *name)
{
	return strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
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

static void
imap_msg_remove(struct imap_session *s, size_t idx)
{
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

/* IMAP LIST wildcards: '*' matches anything, '%' anything but the hierarchy delimiter. */
static bool
imap_list_match(const char *pattern, const char *name)
{
	for (; *pattern != '\0'; pattern++, name++) {
		if (*pattern == '*' || *pattern == '%') {
			for (const char *p = name;; p++) {
				if (imap_list_match(pattern + 1, p))
					return true;
				if (*p == '\0' || (*pattern == '%' && *p == '/'))
					return false;
			}
		}
		if (*name == '\0' || *pattern != *name)
			return false;
	}
	return *name == '\0';
}

struct imap_list_ctx {
	struct imap_session *s;
	const char *pattern;
	const char *verb;
	unsigned count;
};

static void
imap_list_one(const struct store_mailbox *mbox, void *arg)
{
	struct imap_list_ctx *ctx = arg;
	struct imap_session *s = ctx->s;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	bool match;

	if (strcmp(mbox->name, "INBOX") == 0)
		match = imap_list_match(ctx->pattern, "INBOX") ||
		        (strncasecmp(ctx->pattern, "INBOX", 5) == 0 &&
		         imap_list_match(ctx->pattern + 5, ""));
	else
		match = imap_list_match(ctx->pattern, mbox->name);
	if (!match)
		return;
	evbuffer_add_printf(out, "* %s (\\HasNoChildren%s%s) \"/\" ", ctx->verb,
	                    mbox->special_use[0] != '\0' ? " " : "", mbox->special_use);
	imap_write_astring(s, mbox->name);
	evbuffer_add(out, "\r\n", 2);
	ctx->count++;
}

void
imap_cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_list_ctx ctx = {.s = s, .verb = cmd->name};
	const char *ref, *pattern;
	char *full;

	if (cmd->nargs != 2 || !imap_arg_get_astring(&cmd->args[0], &ref) ||
	    !imap_arg_get_astring(&cmd->args[1], &pattern)) {
		imap_bad(s, cmd->tag, "syntax: LIST reference pattern");
		return;
	}
	if (*pattern == '\0') {
		if (strcmp(cmd->name, "LIST") == 0)
			imap_reply(s, "* LIST (\\Noselect) \"/\" \"\"");
		imap_reply(s, "%s OK %s completed", cmd->tag, cmd->name);
		return;
	}
	full = xasprintf("%s%s", ref, pattern);
	ctx.pattern = full;
	if (store_mailbox_list(s->server->store, s->account_id, imap_list_one, &ctx) < 0) {
		free(full);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot list mailboxes", cmd->tag);
		return;
	}
	free(full);
	imap_reply(s, "%s OK %s completed", cmd->tag, cmd->name);
}

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

/* --- STATUS --- */

struct imap_count_ctx {
	uint32_t messages, unseen;
};

static void
imap_count_one(const struct store_message *m, void *arg)
{
	struct imap_count_ctx *ctx = arg;

	if (m->recalled)
		return;
	ctx->messages++;
	if ((m->flags & STORE_FLAG_SEEN) == 0)
		ctx->unseen++;
}

void
imap_cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_count_ctx ctx = {0};
	struct store_mailbox mbox;
	const char *name;
	char buf[256];
	size_t n = 0;
	int r;

	if (cmd->nargs != 2 || !imap_arg_get_astring(&cmd->args[0], &name) ||
	    cmd->args[1].type != IMAP_ARG_LIST || cmd->args[1].list_count == 0) {
		imap_bad(s, cmd->tag, "syntax: STATUS mailbox (items)");
		return;
	}
	name = imap_mailbox_name(name);
	for (size_t i = 0; i < cmd->args[1].list_count; i++) {
		const struct imap_arg *a = &cmd->args[1].list[i];

		if (!imap_arg_atom_equals(a, "MESSAGES") && !imap_arg_atom_equals(a, "UIDNEXT") &&
		    !imap_arg_atom_equals(a, "UIDVALIDITY") && !imap_arg_atom_equals(a, "UNSEEN") &&
		    !imap_arg_atom_equals(a, "RECENT")) {
			imap_bad(s, cmd->tag, "Unknown STATUS item");
			return;
		}
	}
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	if (r < 0 || store_message_list(s->server->store, s->account_id, name, imap_count_one,
	                                &ctx) < 0) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox", cmd->tag);
		return;
	}
	for (size_t i = 0; i < cmd->args[1].list_count && n < sizeof(buf) - 40; i++) {
		const struct imap_arg *a = &cmd->args[1].list[i];
		const char *sep = n > 0 ? " " : "";

		if (imap_arg_atom_equals(a, "MESSAGES"))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sMESSAGES %u", sep,
			                      ctx.messages);
		else if (imap_arg_atom_equals(a, "UIDNEXT"))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sUIDNEXT %u", sep,
			                      mbox.uidnext);
		else if (imap_arg_atom_equals(a, "UIDVALIDITY"))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sUIDVALIDITY %u", sep,
			                      mbox.uidvalidity);
		else if (imap_arg_atom_equals(a, "UNSEEN"))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sUNSEEN %u", sep,
			                      ctx.unseen);
		else
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sRECENT 0", sep);
	}
	evbuffer_add_printf(bufferevent_get_output(s->conn.bev), "* STATUS ");
	imap_write_astring(s, name);
	imap_reply(s, " (%s)", buf);
	imap_reply(s, "%s OK STATUS completed", cmd->tag);
}

/* --- SELECT, EXAMINE and the snapshot --- */

static void
imap_snapshot_add(const struct store_message *m, void *arg)
{
	struct imap_session *s = arg;
	struct imap_msg *msg;

	if (m->recalled || s->nmsgs == UINT32_MAX)
		return;
	msg = imap_msg_append(s, m->uid);
	msg->flags = m->flags & IMAP_SYSTEM_FLAGS;
	msg->meta = true;
	msg->size = m->size_crlf;
	msg->internal_date = m->internal_date;
}

static void
imap_meta_one(const struct store_message *m, void *arg)
{
	struct imap_session *s = arg;
	long idx = imap_msg_find(s, m->uid);

	if (idx < 0)
		return;
	s->msgs[idx].meta = true;
	s->msgs[idx].size = m->size_crlf;
	s->msgs[idx].internal_date = m->internal_date;
}

int
imap_mailbox_load_meta(struct imap_session *s)
{
	bool need = false;

	for (uint32_t i = 0; i < s->nmsgs && !need; i++)
		need = !s->msgs[i].meta;
	if (!need)
		return 0;
	return store_message_list(s->server->store, s->account_id, s->mailbox, imap_meta_one, s) ==
	               1
	           ? 0
	           : -1;
}

void
imap_mailbox_deselect(struct imap_session *s)
{
	notify_unsubscribe(&s->sub);
	free(s->msgs);
	s->msgs = NULL;
	s->nmsgs = 0;
	s->msgs_cap = 0;
	s->exists_announced = 0;
	free(s->events);
	s->events = NULL;
	s->nevents = s->events_cap = 0;
	s->events_overflow = false;
	free(s->mailbox);
	s->mailbox = NULL;
	s->mailbox_id = 0;
}

/* The hub's callback: copy the event into the session's bounded queue; an idling client gets
 * it at once. */
static void
imap_notify_cb(const struct notify_event *ev, void *arg)
{
	struct imap_session *s = arg;

	if (s->publishing || s->conn.dead)
		return;
	if (s->nevents >= IMAP_EVENTS_MAX) {
		s->events_overflow = true;
	} else {
		if (s->nevents == s->events_cap) {
			s->events_cap = s->events_cap == 0 ? 8 : 2 * s->events_cap;
			s->events = xrealloc(s->events, s->events_cap * sizeof(*s->events));
		}
		s->events[s->nevents++] =
		    (struct imap_event){.kind = ev->kind, .uid = ev->uid, .flags = ev->flags};
	}
	if (s->state == IMAP_STATE_IDLE && !netconn_output_full(&s->conn))
		imap_mailbox_flush(s, true);
}

static void
imap_announce_exists(struct imap_session *s)
{
	if (s->exists_announced != s->nmsgs) {
		imap_reply(s, "* %u EXISTS", s->nmsgs);
		s->exists_announced = s->nmsgs;
	}
}

void
imap_mailbox_flush(struct imap_session *s, bool expunges)
{
	size_t kept = 0;
	char flags[96];

	if (s->mailbox == NULL)
		return;
	if (s->events_overflow) {
		imap_reply(s, "* BYE [ALERT] Too many changes to this mailbox; please reconnect");
		netconn_close(&s->conn, "notify-overflow");
		return;
	}
	for (size_t i = 0; i < s->nevents; i++) {
		struct imap_event *ev = &s->events[i];
		long idx;

		switch (ev->kind) {
		case NOTIFY_NEW:
			if (imap_msg_find(s, ev->uid) >= 0 ||
			    (s->nmsgs > 0 && ev->uid <= s->msgs[s->nmsgs - 1].uid))
				break;
			imap_msg_append(s, ev->uid)->flags = ev->flags & IMAP_SYSTEM_FLAGS;
			if (ev->uid >= s->uidnext)
				s->uidnext = ev->uid + 1;
			break;
		case NOTIFY_FLAGS:
			idx = imap_msg_find(s, ev->uid);
			if (idx < 0 || s->msgs[idx].flags == (ev->flags & IMAP_SYSTEM_FLAGS))
				break;
			s->msgs[idx].flags = ev->flags & IMAP_SYSTEM_FLAGS;
			if ((uint32_t)idx >= s->exists_announced)
				break; /* the EXISTS below tells it */
			imap_flags_format(s->msgs[idx].flags, flags, sizeof(flags));
			imap_reply(s, "* %ld FETCH (UID %u FLAGS %s)", idx + 1, ev->uid, flags);
			break;
		case NOTIFY_EXPUNGE:
			if (!expunges) {
				s->events[kept++] = *ev;
				break;
			}
			idx = imap_msg_find(s, ev->uid);
			if (idx < 0)
				break;
			imap_msg_remove(s, (size_t)idx);
			if ((uint32_t)idx < s->exists_announced) {
				imap_reply(s, "* %ld EXPUNGE", idx + 1);
				s->exists_announced--;
			}
			break;
		}
	}
	s->nevents = kept;
	imap_announce_exists(s);
}

void
imap_cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	bool examine = strcmp(cmd->name, "EXAMINE") == 0;
	struct store_mailbox mbox;
	const char *name;
	uint32_t unseen = 0;
	int r;

	if (cmd->nargs != 1 || !imap_arg_get_astring(&cmd->args[0], &name)) {
		imap_bad(s, cmd->tag, examine ? "syntax: EXAMINE mailbox" : "syntax: SELECT mailbox");
		return;
	}
	name = imap_mailbox_name(name);
	/* RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected. */
	imap_mailbox_deselect(s);
	imap_enter_state(s, IMAP_STATE_AUTH);
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	s->mailbox = xstrdup(name);
	if (r < 0 ||
	    store_message_list(s->server->store, s->account_id, name, imap_snapshot_add, s) != 1) {
		imap_mailbox_deselect(s);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot open the mailbox; try again later",
		           cmd->tag);
		return;
	}
	s->mailbox_id = mbox.id;
	s->uidvalidity = mbox.uidvalidity;
	s->uidnext = mbox.uidnext;
	s->read_only = examine;
	if (s->server->hub != NULL)
		s->sub = notify_subscribe(s->server->hub, s->account_id, mbox.id, imap_notify_cb, s);
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		if ((s->msgs[i].flags & STORE_FLAG_SEEN) == 0) {
			unseen = i + 1;
			break;
		}
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	log_debug("imap session=%s event=select mailbox=%s messages=%u", s->conn.id, name,
	          s->nmsgs);
	imap_reply(s, "* %u EXISTS", s->nmsgs);
	s->exists_announced = s->nmsgs;
	imap_reply(s, "* 0 RECENT");
	imap_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
	if (unseen > 0)
		imap_reply(s, "* OK [UNSEEN %u] First unseen", unseen);
	imap_reply(s, "* OK [UIDVALIDITY %u] UIDs valid", s->uidvalidity);
	imap_reply(s, "* OK [UIDNEXT %u] Predicted next UID", s->uidnext);
	if (examine)
		imap_reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
	else
		imap_reply(s, "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)] "
			      "Keywords are not stored yet");
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

/* --- store updates --- */

/* Tells the hub what our committed update changed; our own subscription ignores it. */
static void
imap_publish_update(struct imap_session *s)
{
	if (s->server->hub == NULL)
		return;
	s->publishing = true;
	for (size_t i = 0; i < s->update_nuids; i++) {
		struct notify_event ev = {.kind = NOTIFY_EXPUNGE, .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id, .uid = s->update_uids[i]};

		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), s->mailbox);
		notify_publish(s->server->hub, &ev);
	}
	for (size_t i = 0; i < s->update_nchanges; i++) {
		struct notify_event ev = {.kind = NOTIFY_FLAGS, .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id, .uid = s->update_changes[i].uid};
		long idx = imap_msg_find(s, ev.uid);

		if (idx < 0)
			continue;
		ev.flags = s->msgs[idx].flags;
		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), s->mailbox);
		notify_publish(s->server->hub, &ev);
	}
	s->publishing = false;
}

static void
imap_update_clear(struct imap_session *s)
{
	free(s->update_changes);
	s->update_changes = NULL;
	s->update_nchanges = 0;
	free(s->update_uids);
	s->update_uids = NULL;
	s->update_nuids = 0;
	s->update_kind = IMAP_UPDATE_NONE;
}

/* Sends "* n EXPUNGE" for the expunged UIDs, highest sequence number first. */
static void
imap_expunge_apply(struct imap_session *s, bool silent)
{
	for (uint32_t i = s->nmsgs; i-- > 0;) {
		bool hit = false;

		for (size_t j = 0; j < s->update_nuids && !hit; j++)
			hit = s->update_uids[j] == s->msgs[i].uid;
		if (!hit)
			continue;
		imap_msg_remove(s, i);
		if (i < s->exists_announced) {
			if (!silent)
				imap_reply(s, "* %u EXPUNGE", i + 1);
			s->exists_announced--;
		}
	}
}

static void
imap_update_done(bool ok, const char *error, void *arg)
{
	struct imap_session *s = arg;
	enum imap_update_kind kind = s->update_kind;
	char flags[96];

	s->update_pending--;
	if (s->conn.dead) {
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	if (!ok)
		log_warnx("imap session=%s event=update result=failed error=\"%s\"", s->conn.id,
		          error != NULL ? error : "");
	if (ok && s->mailbox != NULL) {
		for (size_t i = 0; i < s->update_nchanges; i++) {
			const struct store_flag_change *c = &s->update_changes[i];
			long idx = imap_msg_find(s, c->uid);

			if (idx >= 0)
				s->msgs[idx].flags = (s->msgs[idx].flags | c->add) & ~c->remove;
		}
		imap_publish_update(s);
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	switch (kind) {
	case IMAP_UPDATE_STORE:
		if (!ok) {
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot change flags; try again later",
			           s->tag);
			break;
		}
		for (size_t i = 0; i < s->update_nchanges && !s->update_silent; i++) {
			long idx = imap_msg_find(s, s->update_changes[i].uid);

			if (idx < 0)
				continue;
			imap_flags_format(s->msgs[idx].flags, flags, sizeof(flags));
			if (s->update_uid)
				imap_reply(s, "* %ld FETCH (UID %u FLAGS %s)", idx + 1,
				           s->msgs[idx].uid, flags);
			else
				imap_reply(s, "* %ld FETCH (FLAGS %s)", idx + 1, flags);
		}
		imap_reply(s, "%s OK %sSTORE completed", s->tag, s->update_uid ? "UID " : "");
		break;
	case IMAP_UPDATE_EXPUNGE:
		if (!ok) {
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot expunge; try again later", s->tag);
			break;
		}
		imap_expunge_apply(s, false);
		imap_reply(s, "%s OK %sEXPUNGE completed", s->tag, s->update_uid ? "UID " : "");
		break;
	case IMAP_UPDATE_CLOSE:
		imap_mailbox_deselect(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
		if (ok)
			imap_reply(s, "%s OK CLOSE completed", s->tag);
		else
			imap_reply(s, "%s NO [UNAVAILABLE] Closed, but could not expunge", s->tag);
		break;
	case IMAP_UPDATE_FETCH:
		imap_update_clear(s);
		imap_fetch_begin(s);
		netconn_run(&s->conn);
		return;
	case IMAP_UPDATE_NONE:
		break;
	}
	imap_update_clear(s);
	netconn_run(&s->conn);
}

void
imap_update_start(struct imap_session *s, enum imap_update_kind kind)
{
	s->update_kind = kind;
	s->update_pending++;
	imap_enter_state(s, IMAP_STATE_WAIT);
	/* The arrays are copied; the callback may run before this returns (no workers). */
	store_mailbox_update(s->server->store, s->account_id, s->mailbox, s->update_changes,
	                     s->update_nchanges, s->update_uids, s->update_nuids, imap_update_done,
	                     s);
}

/* Collects the \Deleted UIDs (within idx when given) into s->update_uids. */
static size_t
imap_collect_deleted(struct imap_session *s, const uint32_t *idx, long nidx)
{
	size_t n = 0;

	s->update_uids = xcalloc(s->nmsgs + 1, sizeof(*s->update_uids));
	for (uint32_t i = 0; i < (idx != NULL ? (uint32_t)nidx : s->nmsgs); i++) {
		const struct imap_msg *m = &s->msgs[idx != NULL ? idx[i] : i];

		if (m->flags & STORE_FLAG_DELETED)
			s->update_uids[n++] = m->uid;
	}
	s->update_nuids = n;
	return n;
}

void
imap_cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
	uint32_t *idx = NULL;
	long nidx = 0;

	if (cmd->nargs != (cmd->uid ? 1u : 0u)) {
		imap_bad(s, cmd->tag, cmd->uid ? "syntax: UID EXPUNGE uid-set" : "EXPUNGE takes no "
		                                                                  "arguments");
		return;
	}
	if (s->read_only) {
		imap_reply(s, "%s NO [READ-ONLY] Mailbox is read-only", cmd->tag);
		return;
	}
	if (cmd->uid && (nidx = imap_seqset_expand(s, cmd->tag, &cmd->args[0], true, &idx)) < 0)
		return;
	imap_update_clear(s);
	if (imap_collect_deleted(s, cmd->uid ? idx : NULL, nidx) == 0) {
		free(idx);
		imap_update_clear(s);
		imap_reply(s, "%s OK %sEXPUNGE completed", cmd->tag, cmd->uid ? "UID " : "");
		return;
	}
	free(idx);
	imap_set_tag(s, cmd->tag);
	s->update_uid = cmd->uid;
	imap_update_start(s, IMAP_UPDATE_EXPUNGE);
}

void
imap_cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs != 0) {
		imap_bad(s, cmd->tag, "CLOSE takes no arguments");
		return;
	}
	imap_update_clear(s);
	if (s->read_only || imap_collect_deleted(s, NULL, 0) == 0) {
		imap_update_clear(s);
		imap_mailbox_deselect(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
		imap_reply(s, "%s OK CLOSE completed", cmd->tag);
		return;
	}
	imap_set_tag(s, cmd->tag);
	imap_update_start(s, IMAP_UPDATE_CLOSE);
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
