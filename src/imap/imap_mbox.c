/* imap_mbox: the mailbox namespace: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, and the
 * translation of mailbox names between the wire (modified UTF-7, RFC 3501 5.1.3, or UTF-8 after
 * ENABLE UTF8=ACCEPT) and the store (UTF-8). The hierarchy delimiter is '/'. LIST and LSUB are
 * in imap_list.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_notify.h"
#include "imap/imap_private.h"
#include "imap/imap_utf7.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "store/store.h"

int
imap_mailbox_arg(struct imap_session *s, const char *tag, const struct imap_arg *arg, char *out,
                 size_t outsize)
{
	char wire[IMAP_MAILBOX_WIRE_MAX];
	const char *name;

	if (!imap_arg_get_astring(arg, &name)) {
		imap_bad(s, tag, "Invalid mailbox name");
		return -1;
	}
	if (strcasecmp(name, "INBOX") == 0)
		name = "INBOX";
	if (s->utf8) {
		/* UTF8=ACCEPT (RFC 6855 3): the name is UTF-8 as sent, '&' is just '&'. Encoding
		 * checks it is valid UTF-8 without control characters. */
		if (strlen(name) != arg->len || strlen(name) >= outsize ||
		    imap_utf7_encode(name, wire, sizeof(wire)) < 0) {
			imap_reply(s, "%s NO [CANNOT] Invalid mailbox name (UTF-8 expected)", tag);
			return -1;
		}
		str_copy(out, name, outsize);
		return 0;
	}
	if (strlen(name) != arg->len || imap_utf7_decode(name, out, outsize) < 0) {
		imap_reply(s, "%s NO [CANNOT] Invalid mailbox name (modified UTF-7 expected)", tag);
		return -1;
	}
	return 0;
}

void
imap_write_mailbox(struct imap_session *s, const char *name)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	char wire[IMAP_MAILBOX_WIRE_MAX];

	if (!s->utf8) {
		if (imap_utf7_encode(name, wire, sizeof(wire)) < 0)
			str_copy(wire, name, sizeof(wire)); /* the store refuses invalid UTF-8 names */
		imap_write_astring(s, wire);
		return;
	}
	/* UTF8=ACCEPT: a quoted string may hold UTF-8 (RFC 6855 3); names hold no CR or LF. */
	evbuffer_add(out, "\"", 1);
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add(out, "\\", 1);
		evbuffer_add(out, p, 1);
	}
	evbuffer_add(out, "\"", 1);
}

bool
imap_utf8_enable(struct imap_session *s, const struct imap_command *cmd)
{
	for (size_t i = 0; i < cmd->nargs; i++) {
		if (imap_arg_atom_equals(&cmd->args[i], "UTF8=ACCEPT")) {
			s->utf8 = true;
			imap_parser_set_utf8(s->parser, true);
			return true;
		}
	}
	return false;
}

/* Publishes a mailbox event for the account. */
static void
imap_publish_mailbox(struct imap_session *s, enum notify_kind kind, int64_t mailbox_id,
                     const char *name, const char *old)
{
	struct notify_event ev = {.kind = kind, .account_id = s->account_id,
	                          .mailbox_id = mailbox_id};

	if (s->server->hub == NULL)
		return;
	notify_copy_text(ev.mailbox, sizeof(ev.mailbox), name);
	notify_copy_text(ev.old_mailbox, sizeof(ev.old_mailbox), old);
	imap_notify_own(s, true); /* NOTIFY does not tell the session what it did */
	notify_publish(s->server->hub, &ev);
	imap_notify_own(s, false);
}

/* --- CREATE, DELETE, RENAME --- */

void
imap_cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	char name[IMAP_MAILBOX_MAX], error[256];
	struct store_mailbox mbox;
	size_t len;
	int r;

	if (cmd->nargs != 1) {
		imap_bad(s, cmd->tag, "syntax: CREATE mailbox");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	/* A trailing delimiter declares the intent to create names below (RFC 3501 6.3.3). */
	len = strlen(name);
	if (len > 1 && name[len - 1] == '/')
		name[len - 1] = '\0';
	if (strcasecmp(name, "INBOX") == 0) {
		imap_reply(s, "%s NO [ALREADYEXISTS] INBOX always exists", cmd->tag);
		return;
	}
	r = store_mailbox_create(s->server->store, s->account_id, name, NULL, error,
	                         sizeof(error));
	if (r == STORE_BUSY) {
		imap_reply(s, "%s NO [INUSE] %s", cmd->tag, error);
		return;
	}
	if (r == 0) {
		imap_reply(s, "%s NO [ALREADYEXISTS] Mailbox already exists", cmd->tag);
		return;
	}
	if (r < 0) {
		log_info("imap session=%s event=create result=failed error=\"%s\"", s->conn.id,
		         error);
		imap_reply(s, "%s NO [CANNOT] %s", cmd->tag, error[0] != '\0' ? error : "Cannot create");
		return;
	}
	if (store_mailbox_get(s->server->store, s->account_id, name, &mbox) == 1)
		imap_publish_mailbox(s, NOTIFY_MAILBOX_CREATED, mbox.id, name, NULL);
	imap_reply(s, "%s OK CREATE completed", cmd->tag);
}

void
imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	char name[IMAP_MAILBOX_MAX], error[256];
	struct store_mailbox mbox;
	int r;

	if (cmd->nargs != 1) {
		imap_bad(s, cmd->tag, "syntax: DELETE mailbox");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	if (strcmp(name, "INBOX") == 0) {
		imap_reply(s, "%s NO [CANNOT] INBOX cannot be deleted", cmd->tag);
		return;
	}
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	if (r < 0) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox list", cmd->tag);
		return;
	}
	/* Deleting the mailbox this session has selected closes it first (no expunge). */
	if (s->mailbox != NULL && s->mailbox_id == mbox.id) {
		imap_mailbox_deselect(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
	}
	r = store_mailbox_delete(s->server->store, s->account_id, name, error, sizeof(error));
	if (r == STORE_BUSY) {
		imap_reply(s, "%s NO [INUSE] %s", cmd->tag, error);
		return;
	}
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	if (r < 0) {
		log_warnx("imap session=%s event=delete result=failed error=\"%s\"", s->conn.id,
		          error);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot delete the mailbox; try again later",
		           cmd->tag);
		return;
	}
	imap_publish_mailbox(s, NOTIFY_MAILBOX_DELETED, mbox.id, name, NULL);
	imap_reply(s, "%s OK DELETE completed", cmd->tag);
}

struct imap_rename_ctx {
	const char *from;
	size_t from_len;
	int64_t *ids;
	char **old;
	size_t n, cap;
};

static void
imap_rename_collect(const struct store_mailbox *mbox, void *arg)
{
	struct imap_rename_ctx *ctx = arg;

	if (strcmp(mbox->name, ctx->from) != 0 &&
	    !(strncmp(mbox->name, ctx->from, ctx->from_len) == 0 &&
	      mbox->name[ctx->from_len] == '/'))
		return;
	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap == 0 ? 8 : 2 * ctx->cap;
		ctx->ids = xrealloc(ctx->ids, ctx->cap * sizeof(*ctx->ids));
		ctx->old = xrealloc(ctx->old, ctx->cap * sizeof(*ctx->old));
	}
	ctx->ids[ctx->n] = mbox->id;
	ctx->old[ctx->n++] = xstrdup(mbox->name);
}

static void
imap_rename_uids(const struct store_message *m, void *arg)
{
	struct imap_rename_ctx *ctx = arg;

	/* Reuses ids[] for the INBOX's UIDs. */
	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap == 0 ? 64 : 2 * ctx->cap;
		ctx->ids = xrealloc(ctx->ids, ctx->cap * sizeof(*ctx->ids));
	}
	ctx->ids[ctx->n++] = m->uid;
}

/* RENAME INBOX: the messages leave INBOX (sessions watching it see them expunged). */
static void
imap_rename_inbox_events(struct imap_session *s, struct imap_rename_ctx *uids, int64_t inbox_id,
                         const char *to)
{
	struct store_mailbox mbox;

	for (size_t i = 0; s->server->hub != NULL && i < uids->n; i++) {
		struct notify_event ev = {.kind = NOTIFY_EXPUNGE, .account_id = s->account_id,
		                          .mailbox_id = inbox_id, .uid = (uint32_t)uids->ids[i]};

		str_copy(ev.mailbox, "INBOX", sizeof(ev.mailbox));
		notify_publish(s->server->hub, &ev);
	}
	if (store_mailbox_get(s->server->store, s->account_id, to, &mbox) == 1)
		imap_publish_mailbox(s, NOTIFY_MAILBOX_CREATED, mbox.id, to, NULL);
}

void
imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	char from[IMAP_MAILBOX_MAX], to[IMAP_MAILBOX_MAX], error[256];
	struct imap_rename_ctx ctx = {0};
	struct store_mailbox mbox;
	int r;

	if (cmd->nargs != 2) {
		imap_bad(s, cmd->tag, "syntax: RENAME from to");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], from, sizeof(from)) < 0 ||
	    imap_mailbox_arg(s, cmd->tag, &cmd->args[1], to, sizeof(to)) < 0)
		return;
	if (strcasecmp(to, "INBOX") == 0) {
		imap_reply(s, "%s NO [ALREADYEXISTS] INBOX already exists", cmd->tag);
		return;
	}
	r = store_mailbox_get(s->server->store, s->account_id, from, &mbox);
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		return;
	}
	ctx.from = from;
	ctx.from_len = strlen(from);
	if (r < 0 ||
	    (strcmp(from, "INBOX") == 0
	         ? store_message_list(s->server->store, s->account_id, "INBOX", imap_rename_uids,
	                              &ctx) < 0
	         : store_mailbox_list(s->server->store, s->account_id, imap_rename_collect, &ctx) <
	               0)) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox list", cmd->tag);
		goto done;
	}
	r = store_mailbox_rename(s->server->store, s->account_id, from, to, error, sizeof(error));
	if (r == STORE_BUSY) {
		imap_reply(s, "%s NO [INUSE] %s", cmd->tag, error);
		goto done;
	}
	if (r == 0) {
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", cmd->tag);
		goto done;
	}
	if (r == -2) {
		imap_reply(s, "%s NO [ALREADYEXISTS] Mailbox already exists", cmd->tag);
		goto done;
	}
	if (r < 0) {
		log_info("imap session=%s event=rename result=failed error=\"%s\"", s->conn.id, error);
		imap_reply(s, "%s NO [CANNOT] %s", cmd->tag, error[0] != '\0' ? error : "Cannot rename");
		goto done;
	}
	if (strcmp(from, "INBOX") == 0) {
		imap_rename_inbox_events(s, &ctx, mbox.id, to);
	} else {
		for (size_t i = 0; i < ctx.n; i++) {
			char *now = xasprintf("%s%s", to, ctx.old[i] + ctx.from_len);

			/* Our own session follows too (through its subscription). */
			imap_publish_mailbox(s, NOTIFY_MAILBOX_RENAMED, ctx.ids[i], now, ctx.old[i]);
			free(now);
		}
	}
	imap_reply(s, "%s OK RENAME completed", cmd->tag);
done:
	for (size_t i = 0; ctx.old != NULL && i < ctx.n; i++)
		free(ctx.old[i]);
	free(ctx.old);
	free(ctx.ids);
}

/* --- SUBSCRIBE, UNSUBSCRIBE --- */

void
imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	bool on = strcmp(cmd->name, "SUBSCRIBE") == 0;
	char name[IMAP_MAILBOX_MAX], error[256];
	int r;

	if (cmd->nargs != 1) {
		imap_bad(s, cmd->tag, on ? "syntax: SUBSCRIBE mailbox" : "syntax: UNSUBSCRIBE mailbox");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	r = store_subscription_set(s->server->store, s->account_id, name, on, error, sizeof(error));
	if (r < 0) {
		imap_reply(s, "%s NO [%s] %s", cmd->tag, r == STORE_BUSY ? "INUSE" : "CANNOT", error);
		return;
	}
	/* For NOTIFY's SubscriptionChange (RFC 5465 5.5). */
	imap_publish_mailbox(s, on ? NOTIFY_SUBSCRIBED : NOTIFY_UNSUBSCRIBED, 0, name, NULL);
	imap_reply(s, "%s OK %s completed", cmd->tag, cmd->name);
}
