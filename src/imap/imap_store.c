/* imap_store: changes to the selected mailbox: STORE (system flags and keywords, CONDSTORE
 * UNCHANGEDSINCE), EXPUNGE, UID EXPUNGE and CLOSE, and the store update they share (FETCH's
 * \Seen too), finished on the loop thread by imap_update_done. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <inttypes.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "notify/notify.h"
#include "lib/util.h"
#include "store/store.h"

/* --- flags and keywords --- */

/* A keyword is an atom without '\' (RFC 3501 flag-keyword); atom-specials are refused. */
static bool
imap_keyword_valid(const char *kw)
{
	size_t len = strlen(kw);

	if (len == 0 || len >= STORE_KEYWORD_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)kw; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p) != NULL)
			return false;
	return true;
}

int
imap_flags_parse(const struct imap_arg *args, size_t nargs, uint32_t *flags_r, char *kw,
                 size_t kwsize)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} names[] = {
	    {"\\Seen", STORE_FLAG_SEEN},       {"\\Answered", STORE_FLAG_ANSWERED},
	    {"\\Flagged", STORE_FLAG_FLAGGED}, {"\\Deleted", STORE_FLAG_DELETED},
	    {"\\Draft", STORE_FLAG_DRAFT},
	};
	size_t kwlen = 0;

	*flags_r = 0;
	kw[0] = '\0';
	if (nargs == 1 && args[0].type == IMAP_ARG_LIST) {
		nargs = args[0].list_count;
		args = args[0].list;
	}
	for (size_t i = 0; i < nargs; i++) {
		const char *name = args[i].str;
		size_t j, len;

		if (args[i].type != IMAP_ARG_ATOM && args[i].type != IMAP_ARG_NUMBER &&
		    args[i].type != IMAP_ARG_NIL)
			return -1;
		for (j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
			if (strcasecmp(name, names[j].name) == 0) {
				*flags_r |= names[j].bit;
				break;
			}
		}
		if (j < sizeof(names) / sizeof(names[0]))
			continue;
		if (strcasecmp(name, "\\Recent") == 0)
			continue; /* not settable by clients (RFC 3501 2.3.2): ignored */
		if (name[0] == '\\' || !imap_keyword_valid(name))
			return -1;
		len = strlen(name);
		if (kwlen + len + 2 > kwsize)
			return -2;
		kwlen += (size_t)snprintf(kw + kwlen, kwsize - kwlen, "%s%s", kwlen > 0 ? " " : "",
		                          name);
	}
	return 0;
}

/* --- STORE --- */

/* Reads "(UNCHANGEDSINCE n)" at args[*pos] when present. 0, or -1 after replying. */
static int
imap_store_modifiers(struct imap_session *s, const struct imap_command *cmd, size_t *pos,
                     uint64_t *unchangedsince_r)
{
	const struct imap_arg *a = &cmd->args[*pos];

	*unchangedsince_r = 0;
	if (a->type != IMAP_ARG_LIST)
		return 0;
	if (a->list_count != 2 || !imap_arg_atom_equals(&a->list[0], "UNCHANGEDSINCE") ||
	    a->list[1].type != IMAP_ARG_NUMBER) {
		imap_bad(s, cmd->tag, "Unknown STORE modifier");
		return -1;
	}
	*unchangedsince_r = a->list[1].number;
	imap_condstore_enable(s); /* RFC 7162 3.1: a CONDSTORE-enabling command */
	(*pos)++;
	return 0;
}

void
imap_cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
	char kw[STORE_KEYWORDS_MAX];
	uint64_t unchangedsince;
	bool has_unchangedsince;
	const char *item;
	uint32_t flags, *idx;
	size_t pos = 1, len;
	long nidx;
	int mode = 0; /* 0 replace, 1 add, -1 remove */
	bool silent = false;
	int r;

	if (cmd->nargs < 3) {
		imap_bad(s, cmd->tag, "syntax: STORE sequence-set [(UNCHANGEDSINCE n)] item flags");
		return;
	}
	if (imap_store_modifiers(s, cmd, &pos, &unchangedsince) < 0)
		return;
	has_unchangedsince = pos > 1;
	if (pos + 1 >= cmd->nargs || !imap_arg_get_atom(&cmd->args[pos], &item)) {
		imap_bad(s, cmd->tag, "syntax: STORE sequence-set [(UNCHANGEDSINCE n)] item flags");
		return;
	}
	if (*item == '+' || *item == '-') {
		mode = *item == '+' ? 1 : -1;
		item++;
	}
	len = strlen(item);
	if (len >= 7 && strcasecmp(item + len - 7, ".SILENT") == 0) {
		silent = true;
		len -= 7;
	}
	if (len != 5 || strncasecmp(item, "FLAGS", 5) != 0) {
		imap_bad(s, cmd->tag, "Invalid STORE item (FLAGS, +FLAGS, -FLAGS, with .SILENT)");
		return;
	}
	pos++;
	r = imap_flags_parse(&cmd->args[pos], cmd->nargs - pos, &flags, kw, sizeof(kw));
	if (r == -1) {
		imap_bad(s, cmd->tag, "Invalid flag");
		return;
	}
	if (r == -2) {
		imap_reply(s, "%s NO [LIMIT] Too many keywords", cmd->tag);
		return;
	}
	if (s->read_only) {
		imap_reply(s, "%s NO [READ-ONLY] Mailbox is read-only", cmd->tag);
		return;
	}
	if ((nidx = imap_seqset_expand(s, cmd->tag, &cmd->args[0], cmd->uid, &idx)) < 0)
		return;
	if (nidx == 0) {
		free(idx);
		imap_reply(s, "%s OK %sSTORE completed", cmd->tag, cmd->uid ? "UID " : "");
		return;
	}
	if (has_unchangedsince && unchangedsince == 0) {
		/* RFC 7162 3.2: no message has a MODSEQ <= 0, so every one fails the test. */
		struct evbuffer *out = bufferevent_get_output(s->conn.bev);
		uint32_t *set = xcalloc((size_t)nidx, sizeof(*set));

		for (long i = 0; i < nidx; i++)
			set[i] = cmd->uid ? s->msgs[idx[i]].uid : idx[i] + 1;
		evbuffer_add_printf(out, "%s OK [MODIFIED ", cmd->tag);
		imap_write_uidset(s, set, (size_t)nidx);
		imap_reply(s, "] Conditional %sSTORE failed", cmd->uid ? "UID " : "");
		free(set);
		free(idx);
		return;
	}
	imap_update_clear(s);
	s->update_kw = xstrdup(kw);
	s->update_changes = xcalloc((size_t)nidx, sizeof(*s->update_changes));
	for (long i = 0; i < nidx; i++) {
		struct store_flag_change *c = &s->update_changes[i];

		c->uid = s->msgs[idx[i]].uid;
		c->unchangedsince = unchangedsince;
		if (mode >= 0)
			c->add = flags;
		if (mode == 0) {
			c->remove = IMAP_SYSTEM_FLAGS & ~flags;
			c->kw_replace = s->update_kw;
		} else if (s->update_kw[0] != '\0') {
			if (mode > 0)
				c->kw_add = s->update_kw;
			else
				c->kw_remove = s->update_kw;
		}
		if (mode < 0)
			c->remove = flags;
	}
	s->update_nchanges = (size_t)nidx;
	/* The UIDs asked for: FETCH responses go to each of them (RFC 3501 6.4.6). */
	s->update_uids = xcalloc((size_t)nidx, sizeof(*s->update_uids));
	for (long i = 0; i < nidx; i++)
		s->update_uids[i] = s->msgs[idx[i]].uid;
	s->update_nuids = (size_t)nidx;
	free(idx);
	s->update_silent = silent;
	s->update_uid = cmd->uid;
	s->update_unchangedsince = unchangedsince;
	imap_set_tag(s, cmd->tag);
	imap_update_start(s, IMAP_UPDATE_STORE);
}

/* --- store updates --- */

void
imap_publish_expunges(struct imap_session *s, const uint32_t *uids, size_t n)
{
	if (s->server->hub == NULL)
		return;
	s->publishing = true;
	for (size_t i = 0; i < n; i++) {
		struct notify_event ev = {.kind = NOTIFY_EXPUNGE,
		                          .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id,
		                          .uid = uids[i]};

		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), s->mailbox);
		notify_publish(s->server->hub, &ev);
	}
	s->publishing = false;
}

/* Tells the hub what our committed update changed; our own subscription ignores it. */
static void
imap_publish_changes(struct imap_session *s, const struct store_update_result *r)
{
	if (s->server->hub == NULL)
		return;
	imap_publish_expunges(s, r->expunged, r->nexpunged);
	s->publishing = true;
	for (size_t i = 0; i < r->nchanged; i++) {
		struct notify_event ev = {.kind = NOTIFY_FLAGS,
		                          .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id,
		                          .uid = r->changed[i].uid,
		                          .flags = r->changed[i].flags,
		                          .modseq = r->changed[i].modseq};

		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), s->mailbox);
		str_copy(ev.keywords, r->changed[i].keywords, sizeof(ev.keywords));
		notify_publish(s->server->hub, &ev);
	}
	s->publishing = false;
}

void
imap_update_clear(struct imap_session *s)
{
	free(s->update_changes);
	s->update_changes = NULL;
	s->update_nchanges = 0;
	free(s->update_uids);
	s->update_uids = NULL;
	s->update_nuids = 0;
	free(s->update_kw);
	s->update_kw = NULL;
	free(s->update_dst);
	s->update_dst = NULL;
	s->update_unchangedsince = 0;
	s->update_kind = IMAP_UPDATE_NONE;
}

void
imap_expunge_uids(struct imap_session *s, const uint32_t *uids, size_t n, bool silent)
{
	for (uint32_t i = s->nmsgs; i-- > 0 && n > 0;) {
		uint32_t uid = s->msgs[i].uid;
		bool hit = false;

		for (size_t j = 0; j < n && !hit; j++)
			hit = uids[j] == uid;
		if (!hit)
			continue;
		if (s->msgs[i].recent && s->recent > 0)
			s->recent--;
		imap_msg_remove(s, i);
		if (i < s->exists_announced) {
			if (!silent)
				imap_expunge_reply(s, i + 1, uid);
			s->exists_announced--;
		}
	}
}

/* Applies the changed messages to the snapshot. */
static void
imap_changes_apply(struct imap_session *s, const struct store_update_result *r)
{
	for (size_t i = 0; i < r->nchanged; i++) {
		const struct store_changed *c = &r->changed[i];
		long idx = imap_msg_find(s, c->uid);
		struct imap_msg *m;

		if (idx < 0)
			continue;
		m = &s->msgs[idx];
		if (c->modseq < m->modseq)
			continue; /* a newer change is already known (never report older flags) */
		m->flags = c->flags & IMAP_SYSTEM_FLAGS;
		m->modseq = c->modseq;
		free(m->keywords);
		m->keywords = c->keywords[0] != '\0' ? xstrdup(c->keywords) : NULL;
		imap_keywords_note(s, c->keywords);
	}
}

static bool
imap_uid_in(const uint32_t *uids, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++)
		if (uids[i] == uid)
			return true;
	return false;
}

/* The untagged FETCH responses and the tagged reply of a STORE. */
static void
imap_store_reply(struct imap_session *s, const struct store_update_result *r)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	uint32_t *modified = NULL;
	size_t nmodified = 0;

	for (size_t i = 0; i < s->update_nuids; i++) {
		long idx = imap_msg_find(s, s->update_uids[i]);
		bool changed = false;
		const struct imap_msg *m;

		if (idx < 0 || (uint32_t)idx >= s->exists_announced)
			continue;
		m = &s->msgs[idx];
		if (imap_uid_in(r->modified, r->nmodified, m->uid)) {
			modified = xrealloc(modified, (nmodified + 1) * sizeof(*modified));
			modified[nmodified++] = s->update_uid ? m->uid : (uint32_t)idx + 1;
			continue;
		}
		for (size_t j = 0; j < r->nchanged && !changed; j++)
			changed = r->changed[j].uid == m->uid;
		/* .SILENT: no FLAGS, but with CONDSTORE the new MODSEQ of what changed
		 * (RFC 7162 3.2). */
		if (s->update_silent && !(s->condstore && changed))
			continue;
		evbuffer_add_printf(out, "* %ld FETCH (", idx + 1);
		if (s->update_uid)
			evbuffer_add_printf(out, "UID %u ", m->uid);
		if (!s->update_silent) {
			evbuffer_add_printf(out, "FLAGS ");
			imap_msg_flags_write(s, m);
		}
		if (s->condstore)
			evbuffer_add_printf(out, "%sMODSEQ (%" PRIu64 ")",
			                    s->update_silent ? "" : " ", m->modseq);
		evbuffer_add(out, ")\r\n", 3);
	}
	imap_context_update(s); /* this session's own changes (RFC 5267 4.3) */
	if (nmodified > 0) {
		evbuffer_add_printf(out, "%s OK [MODIFIED ", s->tag);
		imap_write_uidset(s, modified, nmodified);
		imap_reply(s, "] Conditional %sSTORE failed for some messages",
		           s->update_uid ? "UID " : "");
	} else if (r->nmissing > 0) {
		/* RFC 2180 4.2.1, RFC 5530: the others are stored; these are gone. */
		imap_reply(s,
		           "%s NO [EXPUNGEISSUED] Some messages were expunged by another session",
		           s->tag);
	} else {
		imap_reply(s, "%s OK %sSTORE completed", s->tag, s->update_uid ? "UID " : "");
	}
	free(modified);
}

static void
imap_update_done(bool ok, const char *error, const struct store_update_result *r, void *arg)
{
	struct imap_session *s = arg;
	enum imap_update_kind kind = s->update_kind;

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
		imap_changes_apply(s, r);
		if (r->highestmodseq > s->highestmodseq)
			s->highestmodseq = r->highestmodseq;
		imap_publish_changes(s, r);
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	switch (kind) {
	case IMAP_UPDATE_STORE:
		if (!ok)
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot change flags; try again later",
			           s->tag);
		else
			imap_store_reply(s, r);
		break;
	case IMAP_UPDATE_EXPUNGE:
		if (!ok) {
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot expunge; try again later",
			           s->tag);
			break;
		}
		imap_expunge_uids(s, r->expunged, r->nexpunged, false);
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
	default:
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
	bool expunge = kind == IMAP_UPDATE_EXPUNGE || kind == IMAP_UPDATE_CLOSE;

	/* The arrays are copied; the callback may run before this returns (no workers).
	 * update_uids are the UIDs to expunge, or (STORE) the UIDs the command named. */
	store_mailbox_update_r(s->server->store, s->account_id, s->mailbox, s->update_changes,
	                       s->update_nchanges, expunge ? s->update_uids : NULL,
	                       expunge ? s->update_nuids : 0, imap_update_done, s);
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
		imap_bad(s, cmd->tag,
		         cmd->uid ? "syntax: UID EXPUNGE uid-set"
		                  : "EXPUNGE takes no "
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
