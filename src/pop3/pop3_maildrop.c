/* pop3_maildrop: the session's snapshot of INBOX, the TRANSACTION commands, RETR/TOP streaming
 * with backpressure (the store reader reads the file on its I/O pool), and the one store update of
 * the UPDATE state (RFC 1939 5, 6). */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "lib/log.h"
#include "lib/util.h"
#include "pop3/pop3_private.h"
#include "notify/notify.h"
#include "store/store.h"
#include "store/store_reader.h"

/* True when a session (perhaps one whose client is gone but whose update still runs) holds
 * the account's maildrop. */
bool
pop3_maildrop_locked(const struct pop3_server *server, int64_t account_id)
{
	for (const struct netconn *nc = server->conns.head; nc != NULL; nc = nc->list_next) {
		const struct pop3_session *s = nc->arg;

		if (s->account_id == account_id)
			return true;
	}
	return false;
}

static void
pop3_snapshot_add(const struct store_message_meta *m, void *arg)
{
	struct pop3_session *s = arg;
	struct pop3_msg *msg;

	if (m->recalled || s->nmsgs == UINT32_MAX)
		return;
	if (s->nmsgs == s->msgs_cap) {
		s->msgs_cap = s->msgs_cap == 0 ? 16 : 2 * s->msgs_cap;
		s->msgs = xrealloc(s->msgs, s->msgs_cap * sizeof(*s->msgs));
	}
	msg = &s->msgs[s->nmsgs++];
	msg->uid = m->uid;
	msg->flags = m->flags;
	msg->size = m->size;
	msg->deleted = false;
	msg->seen = false;
	s->live_count++;
	s->live_size += m->size;
}

/* Takes the snapshot of INBOX that fixes the message numbers for the session. */
int
pop3_snapshot(struct pop3_session *s, int64_t account_id)
{
	struct store_mailbox mbox;

	if (store_mailbox_get(s->server->store, account_id, POP3_MAILBOX, &mbox) != 1)
		return -1;
	s->uidvalidity = mbox.uidvalidity;
	s->mailbox_id = mbox.id;
	/* The lean scan: UID, flags and size of each row, no header copied. */
	if (store_message_scan(s->server->store, account_id, POP3_MAILBOX,
	                       &(struct store_scan){.fields = STORE_SCAN_FLAGS | STORE_SCAN_SIZE},
	                       pop3_snapshot_add, s) != 1) {
		free(s->msgs);
		s->msgs = NULL;
		s->msgs_cap = 0;
		s->nmsgs = s->live_count = 0;
		s->live_size = 0;
		return -1;
	}
	return 0;
}

/* The message a number argument names, or NULL after replying -ERR. */
static struct pop3_msg *
pop3_msg_arg(struct pop3_session *s, const char *arg, uint32_t *num_r)
{
	uint32_t n;

	if (pop3_parse_msgnum(arg, &n) < 0) {
		pop3_reply(s, "-ERR invalid message number");
		pop3_error(s);
		return NULL;
	}
	if (n > s->nmsgs) {
		pop3_reply(s, "-ERR no such message");
		return NULL;
	}
	if (s->msgs[n - 1].deleted) {
		pop3_reply(s, "-ERR message %u already deleted", n);
		return NULL;
	}
	*num_r = n;
	return &s->msgs[n - 1];
}

/* Tells the notify hub (IMAP IDLE, push) what the committed update changed, as the store
 * committed it: the expunged UIDs, and each changed message with its new MODSEQ and its full
 * flags and keywords (an event without them would read as "no keywords" to IMAP sessions). */
static void
pop3_publish_update(struct pop3_session *s, const struct store_update_result *r)
{
	if (s->server->hub == NULL)
		return;
	for (size_t i = 0; i < r->nexpunged; i++) {
		struct notify_event ev = {.kind = NOTIFY_EXPUNGE,
		                          .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id,
		                          .uid = r->expunged[i]};

		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), POP3_MAILBOX);
		notify_publish(s->server->hub, &ev);
	}
	for (size_t i = 0; i < r->nchanged; i++) {
		struct notify_event ev = {.kind = NOTIFY_FLAGS,
		                          .account_id = s->account_id,
		                          .mailbox_id = s->mailbox_id,
		                          .uid = r->changed[i].uid,
		                          .flags = r->changed[i].flags,
		                          .modseq = r->changed[i].modseq};

		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), POP3_MAILBOX);
		str_copy(ev.keywords, r->changed[i].keywords, sizeof(ev.keywords));
		notify_publish(s->server->hub, &ev);
	}
}

static void
pop3_update_done(bool ok, const char *error, const struct store_update_result *r, void *arg)
{
	struct pop3_session *s = arg;
	unsigned deleted = 0;

	s->update_pending = false;
	for (uint32_t i = 0; i < s->nmsgs; i++)
		deleted += s->state == POP3_STATE_UPDATE && s->msgs[i].deleted;
	if (ok) {
		log_info("pop3 session=%s event=update account=%s deleted=%u result=ok", s->conn.id,
		         s->account, deleted);
		pop3_publish_update(s, r);
	} else
		log_warnx("pop3 session=%s event=update account=%s result=failed error=\"%s\"",
		          s->conn.id, s->account, error != NULL ? error : "");
	if (s->conn.dead) {
		pop3_session_free(s);
		return;
	}
	if (ok)
		pop3_reply(s, "+OK Logging out, %u message%s deleted", deleted,
		           deleted == 1 ? "" : "s");
	else
		pop3_reply(s, "-ERR [SYS/TEMP] Could not update the maildrop; nothing was deleted");
	netconn_close(&s->conn, "quit");
}

/* Starts the one store update of the session: the \Seen flags of what RETR sent and, with
 * expunge (QUIT), the DELE'd messages. Returns false when there was nothing to do. */
bool
pop3_update_start(struct pop3_session *s, bool expunge)
{
	struct store_flag_change *changes;
	uint32_t *uids;
	size_t nchanges = 0, nuids = 0;

	if (s->account_id == 0 || s->updated)
		return false;
	s->updated = true;
	changes = xcalloc(s->nmsgs + 1, sizeof(*changes));
	uids = xcalloc(s->nmsgs + 1, sizeof(*uids));
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		const struct pop3_msg *m = &s->msgs[i];

		if (expunge && m->deleted) {
			uids[nuids++] = m->uid;
			continue;
		}
		if (m->seen && (m->flags & STORE_FLAG_SEEN) == 0) {
			changes[nchanges].uid = m->uid;
			changes[nchanges].add = STORE_FLAG_SEEN;
			nchanges++;
		}
	}
	if (nchanges == 0 && nuids == 0) {
		free(changes);
		free(uids);
		return false;
	}
	s->update_pending = true;
	/* The arrays are copied; the callback may run before this returns (no workers). */
	store_mailbox_update_r(s->server->store, s->account_id, POP3_MAILBOX, changes, nchanges,
	                       uids, nuids, pop3_update_done, s);
	free(changes);
	free(uids);
	return true;
}

/* --- TRANSACTION --- */

void
pop3_cmd_noop(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_reply(s, "+OK");
}

void
pop3_cmd_stat(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_reply(s, "+OK %u %llu", s->live_count, (unsigned long long)s->live_size);
}

/* LIST and UIDL: one line per message, or the one message named. */
void
pop3_cmd_list(struct pop3_session *s, const struct pop3_command *cmd)
{
	bool uidl = cmd->verb == POP3_VERB_UIDL;
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct pop3_msg *m;
	uint32_t n;

	if (cmd->nargs > 1) {
		pop3_reply(s, "-ERR syntax: %s [message]", uidl ? "UIDL" : "LIST");
		pop3_error(s);
		return;
	}
	if (cmd->nargs == 1) {
		if ((m = pop3_msg_arg(s, cmd->args[0], &n)) == NULL)
			return;
		if (uidl)
			pop3_reply(s, "+OK %u %u.%u", n, s->uidvalidity, m->uid);
		else
			pop3_reply(s, "+OK %u %llu", n, (unsigned long long)m->size);
		return;
	}
	if (uidl)
		pop3_reply(s, "+OK");
	else
		pop3_reply(s, "+OK %u messages (%llu octets)", s->live_count,
		           (unsigned long long)s->live_size);
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		m = &s->msgs[i];
		if (m->deleted)
			continue;
		/* UIDL: RFC 1939 7 unique-id, stable and never reused: UIDVALIDITY.UID. */
		if (uidl)
			evbuffer_add_printf(out, "%u %u.%u\r\n", i + 1, s->uidvalidity, m->uid);
		else
			evbuffer_add_printf(out, "%u %llu\r\n", i + 1, (unsigned long long)m->size);
	}
	pop3_reply(s, ".");
}

void
pop3_cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
	struct pop3_msg *m;
	uint32_t n;

	if (cmd->nargs != 1) {
		pop3_reply(s, "-ERR syntax: DELE message");
		pop3_error(s);
		return;
	}
	if ((m = pop3_msg_arg(s, cmd->args[0], &n)) == NULL)
		return;
	m->deleted = true;
	s->live_count--;
	s->live_size -= m->size;
	log_debug("pop3 session=%s event=dele msg=%u uid=%u", s->conn.id, n, m->uid);
	pop3_reply(s, "+OK message %u deleted", n);
}

void
pop3_cmd_rset(struct pop3_session *s, const struct pop3_command *cmd)
{
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		if (s->msgs[i].deleted) {
			s->msgs[i].deleted = false;
			s->live_count++;
			s->live_size += s->msgs[i].size;
		}
	}
	pop3_reply(s, "+OK maildrop has %u message%s (%llu octets)", s->live_count,
	           s->live_count == 1 ? "" : "s", (unsigned long long)s->live_size);
}

/* The store reader finished a read: the session goes on (pop3_retr_pump). */
static void
pop3_retr_ready(void *arg)
{
	struct pop3_session *s = arg;

	netconn_run(&s->conn);
}

void
pop3_retr_free(struct pop3_session *s)
{
	store_reader_stream_free(&s->retr.stream);
}

/* RETR n and TOP n lines: opens the message (held open for the whole response: an expunge by
 * another session cannot take it away now) and starts its stream; pop3_retr_pump sends it. */
void
pop3_cmd_retr(struct pop3_session *s, const struct pop3_command *cmd)
{
	bool top = cmd->verb == POP3_VERB_TOP;
	struct store_reader_range range = {.len = UINT64_MAX, .limit = UINT64_MAX};
	struct store_reader *reader;
	struct pop3_stuffer *stuffer;
	struct pop3_msg *m;
	uint32_t n, lines = 0;
	int r;

	if (cmd->nargs != (top ? 2u : 1u)) {
		pop3_reply(s, top ? "-ERR syntax: TOP message lines" : "-ERR syntax: RETR message");
		pop3_error(s);
		return;
	}
	if (top && pop3_parse_uint(cmd->args[1], &lines) < 0) {
		pop3_reply(s, "-ERR invalid number of lines");
		pop3_error(s);
		return;
	}
	if ((m = pop3_msg_arg(s, cmd->args[0], &n)) == NULL)
		return;
	r = store_reader_open(s->server->store, s->account_id, POP3_MAILBOX, m->uid, &reader);
	if (r == -2) {
		pop3_reply(s, "-ERR message %u was removed by another session", n);
		return;
	}
	if (r < 0) {
		log_warnx("pop3 session=%s event=retr-open-failed uid=%u", s->conn.id, m->uid);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot read the message; try again later");
		return;
	}
	stuffer = xcalloc(1, sizeof(*stuffer));
	pop3_stuff_init(stuffer, top, lines);
	range.filter = pop3_stuff_filter;
	range.filter_state = stuffer;
	s->retr.stream = store_reader_stream_new(reader, s->server->io, &range, pop3_retr_ready, s);
	store_reader_free(&reader); /* the stream holds it */
	s->retr.num = n;
	s->retr.top = top;
	if (top)
		pop3_reply(s, "+OK");
	else
		pop3_reply(s, "+OK %llu octets", (unsigned long long)m->size);
	/* A slow reader of a large message sends no commands meanwhile: only the write
	 * timeout (no progress) applies while streaming. */
	netconn_set_timeouts(&s->conn, false);
	pop3_enter_state(s, POP3_STATE_RETR);
}

/* Moves what the reader has read into the output while it is below the mark. Returns true
 * when the response is complete (the state is TRANSACTION again). */
bool
pop3_retr_pump(struct pop3_session *s)
{
	struct pop3_retr *r = &s->retr;
	struct pop3_msg *m = &s->msgs[r->num - 1];
	const struct pop3_stuffer *stuffer;
	int rc = store_reader_stream_pump(r->stream, bufferevent_get_output(s->conn.bev),
	                                  POP3_RETR_HIGH);

	if (rc == 0)
		return false; /* the output drains or the read completes: we are run again */
	if (rc < 0) {
		log_warnx("pop3 session=%s event=retr-read-failed uid=%u", s->conn.id, m->uid);
		/* The +OK is out: closing without the final "." tells the client. */
		pop3_retr_free(s);
		netconn_close(&s->conn, "read-error");
		return false;
	}
	stuffer = store_reader_stream_filter_state(r->stream);
	if (!r->top) {
		m->seen = true;
		s->retrieved++;
		if (stuffer->size != m->size)
			log_warnx("pop3 session=%s event=retr-size-mismatch uid=%u listed=%llu "
			          "sent=%llu",
			          s->conn.id, m->uid, (unsigned long long)m->size,
			          (unsigned long long)stuffer->size);
	}
	log_debug("pop3 session=%s event=%s msg=%u uid=%u size=%llu", s->conn.id,
	          r->top ? "top" : "retr", r->num, m->uid, (unsigned long long)stuffer->size);
	pop3_retr_free(s);
	netconn_set_timeouts(&s->conn, true);
	pop3_enter_state(s, POP3_STATE_TRANSACTION);
	return true;
}
