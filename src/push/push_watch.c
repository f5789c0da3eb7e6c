/* push_watch: WATCH, the replay of WATCH ... SINCE, the hub subscription, the bounded event
 * queue with its resync, and the keepalive. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "push/push.h"
#include "push/push_json.h"
#include "push/push_private.h"
#include "store/store.h"

/* --- the queue --- */

static size_t
push_output_length(const struct push_session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->conn.bev));
}

static bool
push_output_room(const struct push_session *s)
{
	return push_output_length(s) <= PUSH_OUTPUT_HIGH;
}

/* Writes one event line (and its CRLF) to the client. The connection may die inside the write
 * (the session then lives on until the loop's next turn): callers check conn.dead after it. */
static void
push_write_line(struct push_session *s, const char *text, size_t len)
{
	s->events++;
	s->server->events++;
	evbuffer_add(bufferevent_get_output(s->conn.bev), text, len);
	if (!s->conn.dead)
		evbuffer_add(bufferevent_get_output(s->conn.bev), "\r\n", 2);
}

static void
push_queue_clear(struct push_session *s)
{
	struct push_line *l, *next;

	for (l = s->qhead; l != NULL; l = next) {
		next = l->next;
		free(l);
	}
	s->qhead = s->qtail = NULL;
	s->qlen = 0;
}

bool
push_queue_flush(struct push_session *s)
{
	while (!s->conn.dead && push_output_room(s)) {
		struct push_line *l = s->qhead;

		if (s->resync_pending) {
			char *line = push_json_resync("overflow");

			push_write_line(s, line, strlen(line));
			free(line);
			s->resync_pending = false;
			continue;
		}
		if (l == NULL)
			return true;
		s->qhead = l->next;
		if (s->qhead == NULL)
			s->qtail = NULL;
		s->qlen--;
		push_write_line(s, l->text, l->len);
		free(l);
	}
	return false;
}

/* Takes line (malloc'd): straight to the client when nothing waits and the output has room,
 * else into the bounded queue; a full queue is dropped and a resync promised instead. */
static void
push_emit(struct push_session *s, char *line)
{
	size_t len = strlen(line);
	struct push_line *l;

	if (s->state == PUSH_STATE_READY && s->qlen == 0 && !s->resync_pending &&
	    push_output_room(s)) {
		push_write_line(s, line, len);
		free(line);
		return;
	}
	if (s->qlen >= s->server->queue_max) {
		/* Once per session at info: a client that never reads overflows again and again
		 * (the disconnect line counts them). */
		if (s->overflows == 0)
			log_info("push session=%s event=overflow account=%s dropped=%zu output=%zu",
			         s->conn.id, s->account, s->qlen, push_output_length(s));
		else
			log_debug(
			    "push session=%s event=overflow account=%s dropped=%zu output=%zu",
			    s->conn.id, s->account, s->qlen, push_output_length(s));
		push_queue_clear(s);
		s->resync_pending = true;
		s->overflows++;
		s->server->overflows++;
	}
	l = xmalloc(sizeof(*l) + len + 1);
	l->next = NULL;
	l->len = len;
	memcpy(l->text, line, len + 1);
	free(line);
	if (s->qtail != NULL)
		s->qtail->next = l;
	else
		s->qhead = l;
	s->qtail = l;
	s->qlen++;
}

/* --- events from the hub --- */

static struct push_watched *
push_watched_find(struct push_session *s, int64_t mailbox_id)
{
	for (size_t i = 0; i < s->nwatched; i++) {
		if (s->watched[i].id == mailbox_id)
			return &s->watched[i];
	}
	return NULL;
}

static void
push_watched_remove(struct push_session *s, struct push_watched *w)
{
	size_t i = (size_t)(w - s->watched);

	memmove(&s->watched[i], &s->watched[i + 1], (s->nwatched - i - 1) * sizeof(*w));
	s->nwatched--;
}

/* Keeps the watched list in step with mailbox events of the account. */
static void
push_mailbox_event(struct push_session *s, const struct notify_event *ev)
{
	struct push_watched *w = ev->mailbox_id > 0 ? push_watched_find(s, ev->mailbox_id) : NULL;

	if (ev->kind == NOTIFY_MAILBOX_RENAMED) {
		for (size_t i = 0; w == NULL && i < s->nwatched; i++) {
			if (strcmp(s->watched[i].name, ev->old_mailbox) == 0)
				w = &s->watched[i];
		}
		if (w != NULL)
			str_copy(w->name, ev->mailbox, sizeof(w->name));
	} else if (ev->kind == NOTIFY_MAILBOX_DELETED) {
		for (size_t i = 0; w == NULL && i < s->nwatched; i++) {
			if (strcmp(s->watched[i].name, ev->mailbox) == 0)
				w = &s->watched[i];
		}
		if (w != NULL)
			push_watched_remove(s, w);
	}
	push_emit(s, push_json_event(ev, ev->mailbox, 0));
}

/* The hub's callback: only this account's events arrive (the subscription is per account). */
static void
push_notify_cb(const struct notify_event *ev, void *arg)
{
	struct push_session *s = arg;
	struct push_watched *w;

	if (s->conn.dead || s->state == PUSH_STATE_CLOSING || ev->account_id != s->account_id)
		return;
	if (ev->kind >= NOTIFY_MAILBOX_CREATED) {
		push_mailbox_event(s, ev);
		return;
	}
	w = push_watched_find(s, ev->mailbox_id);
	if (w == NULL)
		return;
	/* Already sent by the replay of WATCH ... SINCE (committed before its snapshot). */
	if (ev->kind == NOTIFY_NEW && ev->uid < w->replay_below)
		return;
	push_emit(s, push_json_event(ev, w->name, w->uidvalidity));
}

/* --- keepalive --- */

static void
push_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_session *s = arg;

	if (s->conn.dead || s->state == PUSH_STATE_CLOSING)
		return;
	/* A client that does not read gets no more lines: the write timeout deals with it. */
	if (s->qlen > 0 || !push_output_room(s))
		return;
	push_emit(s, push_json_keepalive(time_now()));
}

void
push_watch_start(struct push_session *s)
{
	s->keepalive = event_new(s->server->base, -1, EV_PERSIST, push_keepalive_cb, s);
	evtimer_add(s->keepalive, &s->server->keepalive);
}

void
push_watch_free(struct push_session *s)
{
	notify_unsubscribe(&s->sub);
	push_queue_clear(s);
	if (s->replay != NULL) {
		free(s->replay->reply);
		free(s->replay);
		s->replay = NULL;
	}
	/* Only stopped: this may run inside the keepalive's own callback (push_session_destroy
	 * frees it). */
	if (s->keepalive != NULL)
		event_del(s->keepalive);
}

/* --- replay (WATCH ... SINCE) --- */

struct push_replay_walk {
	struct push_session *s;
	struct push_watched *w;
	unsigned rows; /* rows read (recalled ones too: they advance the replay) */
};

static void
push_replay_one(const struct store_message *m, void *arg)
{
	struct push_replay_walk *walk = arg;
	struct push_session *s = walk->s;
	struct push_replay *r = s->replay;
	struct push_json_message jm;
	char *line;

	if (s->conn.dead)
		return;
	walk->rows++;
	r->after = m->uid;
	if (m->recalled)
		return;
	jm = (struct push_json_message){
	    .mailbox = walk->w->name,
	    .uidvalidity = walk->w->uidvalidity,
	    .uid = m->uid,
	    .from = m->from,
	    .subject = m->subject,
	    .date = m->internal_date,
	    .size = m->size,
	    .replay = true,
	};
	line = push_json_new(&jm);
	push_write_line(s, line, strlen(line));
	free(line);
	r->sent++;
}

/* Ends the replay: the WATCH reply, then what queued up meanwhile. */
static void
push_replay_end(struct push_session *s)
{
	struct push_replay *r = s->replay;

	log_info("push session=%s event=replay-done account=%s messages=%lu", s->conn.id,
	         s->account, r->sent);
	push_reply(s, "%s", r->reply);
	free(r->reply);
	free(r);
	s->replay = NULL;
	push_enter_state(s, PUSH_STATE_READY);
}

bool
push_replay_step(struct push_session *s)
{
	struct push_replay *r = s->replay;
	struct push_replay_walk walk = {.s = s};
	int ret;

	if (!push_output_room(s))
		return false; /* the write callback brings us back */
	if (r->cur == r->n) {
		push_replay_end(s);
		return true;
	}
	walk.w = push_watched_find(s, r->ids[r->cur]);
	/* Only the next chunk's rows: UIDs after the last one sent, below the live events'. */
	ret = walk.w == NULL || walk.w->replay_below == 0
	          ? 0
	          : store_message_list_range(s->server->store, s->account_id, walk.w->name,
	                                     r->after, walk.w->replay_below, PUSH_REPLAY_CHUNK,
	                                     push_replay_one, &walk);
	if (s->conn.dead)
		return false;
	if (ret < 0) {
		log_warnx("push session=%s event=replay-failed account=%s mailbox=%s", s->conn.id,
		          s->account, walk.w->name);
		free(r->reply);
		r->reply = xstrdup("-ERR temporary failure; try again later");
		r->cur = r->n;
		return true;
	}
	if (ret == 0 || walk.rows < PUSH_REPLAY_CHUNK) {
		/* This mailbox is done (or gone): the next one from its SINCE. */
		r->cur++;
		r->after = r->since;
	}
	return true;
}

/* --- WATCH --- */

/* Looks every named mailbox up before anything changes; -1 after replying. */
static int
push_watch_lookup(struct push_session *s, const struct push_watch *w,
                  struct store_mailbox mboxes[PUSH_WATCH_MAX])
{
	size_t added = 0;
	char name[2 * PUSH_MAILBOX_NAME_MAX + 3];

	for (size_t i = 0; i < w->n; i++) {
		int ret =
		    store_mailbox_get(s->server->store, s->account_id, w->mailboxes[i], &mboxes[i]);

		if (ret < 0) {
			push_reply(s, "-ERR temporary failure; try again later");
			return -1;
		}
		if (ret == 0) {
			push_name_quote(w->mailboxes[i], name, sizeof(name));
			push_reply(s, "-ERR no such mailbox %s", name);
			push_error(s);
			return -1;
		}
		if (push_watched_find(s, mboxes[i].id) == NULL)
			added++;
	}
	if (s->nwatched + added > PUSH_WATCH_MAX) {
		push_reply(s, "-ERR too many mailboxes watched (at most %d)", PUSH_WATCH_MAX);
		push_error(s);
		return -1;
	}
	return 0;
}

void
push_cmd_watch(struct push_session *s, const struct push_command *cmd)
{
	struct store_mailbox mboxes[PUSH_WATCH_MAX];
	struct push_replay *r = NULL;
	struct push_watch w;
	const char *error;
	char reply[PUSH_WATCH_MAX * (2 * PUSH_MAILBOX_NAME_MAX + 3) + 32];
	size_t n;

	if (push_watch_parse(cmd, &w, &error) < 0) {
		push_reply(s, "-ERR %s", error);
		push_error(s);
		return;
	}
	if (push_watch_lookup(s, &w, mboxes) < 0)
		return;
	if (s->sub == NULL)
		s->sub = notify_subscribe(s->server->hub, s->account_id, 0, push_notify_cb, s);
	if (w.since) {
		r = xcalloc(1, sizeof(*r));
		r->since = r->after = w.since_uid;
	}
	n = (size_t)snprintf(reply, sizeof(reply), "+OK watching");
	for (size_t i = 0; i < w.n; i++) {
		struct push_watched *pw = push_watched_find(s, mboxes[i].id);

		if (pw == NULL) {
			pw = &s->watched[s->nwatched++];
			memset(pw, 0, sizeof(*pw));
			pw->id = mboxes[i].id;
		}
		pw->uidvalidity = mboxes[i].uidvalidity;
		str_copy(pw->name, mboxes[i].name, sizeof(pw->name));
		if (r != NULL) {
			/* Live NEW events below the current UIDNEXT are in the replay. */
			pw->replay_below = mboxes[i].uidnext;
			r->ids[r->n++] = pw->id;
		}
		reply[n++] = ' ';
		n += push_name_quote(pw->name, reply + n, sizeof(reply) - n);
	}
	log_info("push session=%s event=watch account=%s mailboxes=%zu watched=%zu since=%s",
	         s->conn.id, s->account, w.n, s->nwatched,
	         w.since ? cmd->args[cmd->nargs - 1] : "-");
	if (r == NULL) {
		push_reply(s, "%s", reply);
		return;
	}
	/* The reply comes after the replayed events; live ones queue meanwhile. */
	r->reply = xstrdup(reply);
	s->replay = r;
	push_enter_state(s, PUSH_STATE_REPLAY);
}
