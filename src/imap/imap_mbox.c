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
			str_copy(wire, name,
			         sizeof(wire)); /* the store refuses invalid UTF-8 names */
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
	struct notify_event ev = {
	    .kind = kind, .account_id = s->account_id, .mailbox_id = mailbox_id};

	if (s->server->hub == NULL)
		return;
	notify_copy_text(ev.mailbox, sizeof(ev.mailbox), name);
	notify_copy_text(ev.old_mailbox, sizeof(ev.old_mailbox), old);
	imap_notify_own(s, true); /* NOTIFY does not tell the session what it did */
	notify_publish(s->server->hub, &ev);
	imap_notify_own(s, false);
}

/* --- CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE: jobs of the store's writer --- */

/* After the commit, the other sessions (and our own, through its subscription) hear of it. */
static void
imap_mbox_publish(struct imap_session *s, const struct store_mbox_result *r)
{
	switch (r->kind) {
	case STORE_MBOX_CREATE:
		imap_publish_mailbox(s, NOTIFY_MAILBOX_CREATED, r->mailbox_id, r->name, NULL);
		break;
	case STORE_MBOX_DELETE:
		imap_publish_mailbox(s, NOTIFY_MAILBOX_DELETED, r->mailbox_id, r->name, NULL);
		break;
	case STORE_MBOX_RENAME:
		if (r->inbox_id != 0) {
			/* RENAME INBOX: the messages leave INBOX (sessions watching it see them
			 * expunged) for a new mailbox. */
			for (size_t i = 0; s->server->hub != NULL && i < r->nuids; i++) {
				struct notify_event ev = {.kind = NOTIFY_EXPUNGE,
				                          .account_id = s->account_id,
				                          .mailbox_id = r->inbox_id,
				                          .uid = r->uids[i]};

				str_copy(ev.mailbox, "INBOX", sizeof(ev.mailbox));
				notify_publish(s->server->hub, &ev);
			}
			imap_publish_mailbox(s, NOTIFY_MAILBOX_CREATED, r->mailbox_id, r->to, NULL);
			break;
		}
		for (size_t i = 0; i < r->nrenamed; i++) {
			char *now = xasprintf("%s%s", r->to, r->old_names[i] + strlen(r->name));

			/* Our own session follows too (through its subscription). */
			imap_publish_mailbox(s, NOTIFY_MAILBOX_RENAMED, r->ids[i], now,
			                     r->old_names[i]);
			free(now);
		}
		break;
	case STORE_MBOX_SUBSCRIBE:
	case STORE_MBOX_UNSUBSCRIBE:
		/* For NOTIFY's SubscriptionChange (RFC 5465 5.5). */
		imap_publish_mailbox(
		    s, r->kind == STORE_MBOX_SUBSCRIBE ? NOTIFY_SUBSCRIBED : NOTIFY_UNSUBSCRIBED, 0,
		    r->name, NULL);
		break;
	default:
		break;
	}
}

static const char *const imap_mbox_cmd_names[] = {
    [STORE_MBOX_CREATE] = "CREATE",           [STORE_MBOX_DELETE] = "DELETE",
    [STORE_MBOX_RENAME] = "RENAME",           [STORE_MBOX_SUBSCRIBE] = "SUBSCRIBE",
    [STORE_MBOX_UNSUBSCRIBE] = "UNSUBSCRIBE",
};

/* The tagged answer (RFC 5530 response codes). */
static void
imap_mbox_reply(struct imap_session *s, const struct store_mbox_result *r)
{
	const char *cmd = imap_mbox_cmd_names[r->kind];

	if (r->result == 1) {
		imap_reply(s, "%s OK %s completed", s->tag, cmd);
	} else if (r->result == STORE_BUSY) {
		imap_reply(s, "%s NO [INUSE] %s", s->tag, r->error);
	} else if (r->result == 0 && r->kind == STORE_MBOX_CREATE) {
		imap_reply(s, "%s NO [ALREADYEXISTS] Mailbox already exists", s->tag);
	} else if (r->result == 0 || (r->invalid && r->kind == STORE_MBOX_DELETE)) {
		/* No mailbox can have a name the store refuses. */
		imap_reply(s, "%s NO [NONEXISTENT] Mailbox does not exist", s->tag);
	} else if (r->result == -2) {
		imap_reply(s, "%s NO [ALREADYEXISTS] Mailbox already exists", s->tag);
	} else if (r->kind == STORE_MBOX_DELETE) {
		log_warnx("imap session=%s event=delete result=failed error=\"%s\"", s->conn.id,
		          r->error);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot delete the mailbox; try again later",
		           s->tag);
	} else {
		log_info("imap session=%s event=%s result=failed error=\"%s\"", s->conn.id, cmd,
		         r->error);
		imap_reply(s, "%s NO [CANNOT] %s", s->tag,
		           r->error[0] != '\0' ? r->error : "Cannot do that");
	}
}

/* The store's callback, on the loop thread after the commit: tell the others, answer, and go
 * on reading the client's (maybe pipelined) commands. */
static void
imap_mbox_done(const struct store_mbox_result *r, void *arg)
{
	struct imap_session *s = arg;

	s->update_pending--;
	/* Deleting the mailbox this session has selected closes it (no expunge). */
	if (r->result == 1 && r->kind == STORE_MBOX_DELETE && s->mailbox != NULL &&
	    s->mailbox_id == r->mailbox_id)
		imap_mailbox_deselect(s);
	/* Done is done, whether or not the client is still there. */
	if (r->result == 1)
		imap_mbox_publish(s, r);
	if (s->conn.dead) {
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	imap_enter_state(s, s->mailbox != NULL ? IMAP_STATE_SELECTED : IMAP_STATE_AUTH);
	imap_mbox_reply(s, r);
	netconn_run(&s->conn);
}

/* Hands op to the store's writer; the session waits (IMAP_STATE_WAIT: no command runs
 * meanwhile) and imap_mbox_done answers. */
static void
imap_mbox_start(struct imap_session *s, const char *tag, const struct store_mbox_op *op)
{
	imap_set_tag(s, tag);
	s->update_pending++;
	imap_enter_state(s, IMAP_STATE_WAIT);
	/* The strings are copied; without workers the callback runs before this returns. */
	store_mailbox_op(s->server->store, op, imap_mbox_done, s);
}

void
imap_cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	char name[IMAP_MAILBOX_MAX];
	size_t len;

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
	imap_mbox_start(
	    s, cmd->tag,
	    &(struct store_mbox_op){STORE_MBOX_CREATE, s->account_id, name, NULL, NULL});
}

void
imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	char name[IMAP_MAILBOX_MAX];

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
	imap_mbox_start(
	    s, cmd->tag,
	    &(struct store_mbox_op){STORE_MBOX_DELETE, s->account_id, name, NULL, NULL});
}

void
imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	char from[IMAP_MAILBOX_MAX], to[IMAP_MAILBOX_MAX];

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
	imap_mbox_start(s, cmd->tag,
	                &(struct store_mbox_op){STORE_MBOX_RENAME, s->account_id, from, to, NULL});
}

void
imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	bool on = strcmp(cmd->name, "SUBSCRIBE") == 0;
	char name[IMAP_MAILBOX_MAX];

	if (cmd->nargs != 1) {
		imap_bad(s, cmd->tag,
		         on ? "syntax: SUBSCRIBE mailbox" : "syntax: UNSUBSCRIBE mailbox");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		return;
	imap_mbox_start(s, cmd->tag,
	                &(struct store_mbox_op){on ? STORE_MBOX_SUBSCRIBE : STORE_MBOX_UNSUBSCRIBE,
	                                        s->account_id, name, NULL, NULL});
}
