/* imap_append: APPEND (RFC 3501 6.3.11 with UIDPLUS APPENDUID), COPY and MOVE (RFC 6851, with
 * COPYUID).
 *
 * APPEND's message literal is streamed by the parser (IMAP_PARSE_LITERAL_DATA) into a deliver
 * transaction as it arrives: the same path SMTP takes, so filters run and NEW is published once
 * the message is durable. The command itself (mailbox, flags, date) is known only after the
 * data, so the mailbox is checked at the end ([TRYCREATE]). COPY and MOVE run on the store's
 * writer thread; the session waits (IMAP_STATE_WAIT) and answers from the callback. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "deliver/deliver.h"
#include "imap/imap_catenate.h"
#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "notify/notify.h"
#include "store/store.h"

/* --- APPEND --- */

#define IMAP_APPEND_MAX STORE_GROUP_MAX /* messages in one MULTIAPPEND */

/* An APPEND being read and committed: one deliver transaction per streamed message literal, in
 * the order they arrived. */
struct imap_append {
	struct deliver_tx *txs[IMAP_APPEND_MAX];
	size_t ntx;
	unsigned literals;  /* streamed literals begun */
	uint64_t remaining; /* bytes of the current streamed literal still to come */
	bool failed;        /* a write failed, or the APPEND came in the wrong state */
	bool too_many;      /* more than IMAP_APPEND_MAX messages */
};

/* One message of the command: its options and its literal. */
struct imap_append_msg {
	uint32_t flags;
	char kw[STORE_KEYWORDS_MAX];
	int64_t date;
	const struct imap_arg *data; /* the message literal, or NULL with cat */
	const struct imap_arg *cat;  /* CATENATE's list (RFC 4469) */
};

void
imap_append_abort(struct imap_session *s)
{
	struct imap_append *a = s->append;

	if (a == NULL)
		return;
	for (size_t i = 0; i < a->ntx; i++)
		deliver_tx_abort(&a->txs[i]);
	free(a);
	s->append = NULL;
}

static struct imap_append *
imap_append_get(struct imap_session *s)
{
	if (s->append == NULL)
		s->append = xcalloc(1, sizeof(*s->append));
	return s->append;
}

bool
imap_append_continue(struct imap_session *s)
{
	const char *tag = imap_parser_tag(s->parser);
	uint64_t size = imap_parser_literal_size(s->parser);

	if (s->state != IMAP_STATE_AUTH && s->state != IMAP_STATE_SELECTED) {
		imap_reply(s, "%s BAD APPEND not allowed now", tag);
		imap_error(s);
		return false;
	}
	if (size > s->server->append_max) {
		imap_reply(s, "%s NO [TOOBIG] Message too large (at most %" PRIu64 " bytes)", tag,
		           s->server->append_max);
		return false;
	}
	if (s->append != NULL && s->append->literals >= IMAP_APPEND_MAX) {
		imap_reply(s, "%s NO [LIMIT] At most %d messages in one APPEND", tag,
		           IMAP_APPEND_MAX);
		return false;
	}
	return true;
}

void
imap_append_data(struct imap_session *s, const char *data, size_t len)
{
	struct imap_append *a = imap_append_get(s);
	char error[256];

	if (a->remaining == 0) {
		/* A literal begins (a {n+} one arrives without a continuation request). */
		a->literals++;
		a->remaining = imap_parser_literal_size(s->parser);
		if (s->state != IMAP_STATE_AUTH && s->state != IMAP_STATE_SELECTED)
			a->failed = true;
		else if (a->ntx == IMAP_APPEND_MAX)
			a->too_many = true;
		if (a->failed || a->too_many)
			goto count;
		a->txs[a->ntx] =
		    deliver_tx_begin_append(s->server->deliver, 0, error, sizeof(error));
		if (a->txs[a->ntx] == NULL) {
			log_warnx("imap session=%s event=append result=failed error=\"%s\"",
			          s->conn.id, error);
			a->failed = true;
			goto count;
		}
		a->ntx++;
	}
	if (!a->failed && !a->too_many && deliver_tx_write(a->txs[a->ntx - 1], data, len) < 0) {
		log_warnx("imap session=%s event=append result=write-failed", s->conn.id);
		a->failed = true;
	}
count:
	a->remaining -= len < a->remaining ? len : a->remaining;
}

/* Parses an IMAP date-time ("17-Jul-1996 02:44:25 -0700"; day may be " 7"). -1 when invalid. */
static int64_t
imap_date_time_parse(const char *str)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm = {0};
	char mon[4];
	int day, year, hh, mm, ss, zone, consumed = 0;
	const char *m;

	if (sscanf(str, "%2d-%3[A-Za-z]-%4d %2d:%2d:%2d %5d%n", &day, mon, &year, &hh, &mm, &ss,
	           &zone, &consumed) != 7 ||
	    str[consumed] != '\0' || strlen(str) < 26 || (str[21] != '+' && str[21] != '-'))
		return -1;
	for (m = months; *m != '\0'; m += 3)
		if (strncasecmp(m, mon, 3) == 0)
			break;
	if (*m == '\0' || day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60 ||
	    hh < 0 || mm < 0 || ss < 0 || zone % 100 > 59 || zone > 1400 || zone < -1400)
		return -1;
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	return (int64_t)timegm(&tm) - (zone / 100 * 3600 + zone % 100 * 60);
}

static void
imap_append_done(bool ok, const char *error, const struct store_result *results, size_t n,
                 void *arg)
{
	struct imap_session *s = arg;
	struct evbuffer *out;
	uint32_t *uids;

	s->update_pending--;
	if (s->conn.dead) {
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	imap_enter_state(s, s->mailbox != NULL ? IMAP_STATE_SELECTED : IMAP_STATE_AUTH);
	if (!ok) {
		log_warnx("imap session=%s event=append result=failed messages=%zu error=\"%s\"",
		          s->conn.id, n, error != NULL ? error : "");
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message%s; try again later",
		           s->tag, n > 1 ? "s" : "");
	} else {
		/* An APPEND to the selected mailbox shows up as EXISTS before the OK. */
		imap_mailbox_flush(s, true);
		uids = xcalloc(n, sizeof(*uids));
		for (size_t i = 0; i < n; i++)
			uids[i] = results[i].uid;
		log_info("imap session=%s event=append mailbox=\"%s\" messages=%zu uid=%u",
		         s->conn.id, s->update_dst, n, uids[0]);
		/* RFC 4315/3502: the UIDs of every message, in order, as a uid-set. */
		out = bufferevent_get_output(s->conn.bev);
		evbuffer_add_printf(out, "%s OK [APPENDUID %u ", s->tag, results[0].uidvalidity);
		imap_write_uidset(s, uids, n);
		imap_reply(s, "] APPEND completed");
		free(uids);
	}
	imap_update_clear(s);
	netconn_run(&s->conn);
}

/* Reads the messages after the mailbox: each [(flags)] [date-time] and a literal, CATENATE
 * (parts) (RFC 4469) or UTF8 (literal8) (RFC 6855 4). Returns the count, or -1 after replying. */
static long
imap_append_parse(struct imap_session *s, const struct imap_command *cmd,
                  struct imap_append_msg *msgs, size_t max)
{
	static const char syntax[] = "syntax: APPEND mailbox [(flags)] [date-time] message ...";
	size_t pos = 1, n = 0;
	const char *str;
	int r;

	if (cmd->nargs < 2) {
		imap_bad(s, cmd->tag, syntax);
		return -1;
	}
	while (pos < cmd->nargs) {
		struct imap_append_msg *m = &msgs[n];

		if (n == max || n == IMAP_APPEND_MAX) {
			imap_reply(s, "%s NO [LIMIT] At most %d messages in one APPEND", cmd->tag,
			           IMAP_APPEND_MAX);
			return -1;
		}
		memset(m, 0, sizeof(*m));
		if (cmd->args[pos].type == IMAP_ARG_LIST) {
			r = imap_flags_parse(&cmd->args[pos], 1, &m->flags, m->kw, sizeof(m->kw));
			if (r == -2) {
				imap_reply(s, "%s NO [LIMIT] Too many keywords", cmd->tag);
				return -1;
			}
			if (r < 0) {
				imap_bad(s, cmd->tag, "Invalid flag");
				return -1;
			}
			pos++;
		}
		if (pos < cmd->nargs && cmd->args[pos].type == IMAP_ARG_STRING) {
			if (!imap_arg_get_string(&cmd->args[pos], &str) ||
			    (m->date = imap_date_time_parse(str)) < 0) {
				imap_bad(s, cmd->tag, "Invalid date-time");
				return -1;
			}
			pos++;
		}
		if (pos + 1 < cmd->nargs && imap_arg_atom_equals(&cmd->args[pos], "CATENATE") &&
		    cmd->args[pos + 1].type == IMAP_ARG_LIST) {
			m->cat = &cmd->args[pos + 1];
			pos += 2;
			n++;
			continue;
		}
		if (pos < cmd->nargs && imap_arg_atom_equals(&cmd->args[pos], "UTF8")) {
			/* RFC 6855 4: UTF8 (literal8), the message as a literal8 in a list. */
			const struct imap_arg *l =
			    pos + 1 < cmd->nargs ? &cmd->args[pos + 1] : NULL;

			if (l == NULL || l->type != IMAP_ARG_LIST || l->list_count != 1 ||
			    l->list[0].type != IMAP_ARG_LITERAL || !l->list[0].binary) {
				imap_bad(s, cmd->tag,
				         "syntax: APPEND mailbox [(flags)] [date-time] "
				         "UTF8 (~{n}message)");
				return -1;
			}
			m->data = &l->list[0];
			pos += 2;
			n++;
			continue;
		}
		if (pos == cmd->nargs || cmd->args[pos].type != IMAP_ARG_LITERAL) {
			imap_bad(s, cmd->tag, syntax);
			return -1;
		}
		m->data = &cmd->args[pos++];
		n++;
	}
	return (long)n;
}

/* An APPEND between its parse and its commit (CATENATE's assembly runs on a worker). */
struct imap_append_cmd {
	struct imap_session *s;
	struct imap_append_msg *msgs;
	struct deliver_tx **txs;
	struct imap_catenate **cats; /* per message; NULL when not CATENATE */
	size_t n;
	char *mailbox;
};

static void
imap_append_cmd_free(struct imap_append_cmd *c)
{
	for (size_t i = 0; i < c->n; i++) {
		deliver_tx_abort(&c->txs[i]);
		imap_catenate_free(&c->cats[i]);
	}
	free(c->msgs);
	free(c->txs);
	free(c->cats);
	free(c->mailbox);
	free(c);
}

/* Gives each message its transaction: the streamed literals in order (an empty one has none),
 * buffered ones (small literals read before the login limits applied) written now; CATENATE
 * messages get their parts. Returns 0, or -1 after replying. */
static int
imap_append_txs(struct imap_session *s, const char *tag, struct imap_append_cmd *c)
{
	struct imap_append *a = imap_append_get(s);
	size_t next = 0;
	char error[256];

	for (size_t i = 0; i < c->n; i++) {
		const struct imap_arg *data = c->msgs[i].data;

		if (c->msgs[i].cat != NULL) {
			if (imap_catenate_parse(s, tag, c->msgs[i].cat, a->txs, a->ntx, &next,
			                        &c->cats[i]) < 0)
				return -1;
			continue;
		}
		if (data->streamed) {
			if (next == a->ntx)
				break; /* cannot happen: one transaction per streamed literal */
			c->txs[i] = a->txs[next];
			a->txs[next++] = NULL;
			continue;
		}
		c->txs[i] = deliver_tx_begin_append(s->server->deliver, 0, error, sizeof(error));
		if (c->txs[i] == NULL || deliver_tx_write(c->txs[i], data->str, data->len) < 0)
			break;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (c->txs[i] == NULL && c->cats[i] == NULL) {
			log_warnx("imap session=%s event=append result=failed", s->conn.id);
			imap_reply(s,
			           "%s NO [UNAVAILABLE] Cannot store the message; try again later",
			           tag);
			return -1;
		}
	}
	return 0;
}

/* Hands the messages to deliver, all or nothing; imap_append_done answers. */
static void
imap_append_commit(struct imap_session *s, struct imap_append_cmd *c)
{
	struct store_target *targets = xcalloc(c->n, sizeof(*targets));

	imap_update_clear(s);
	s->update_dst = xstrdup(c->mailbox);
	for (size_t i = 0; i < c->n; i++) {
		deliver_tx_set_internal_date(c->txs[i], c->msgs[i].date);
		targets[i].account_id = s->account_id;
		targets[i].mailbox = s->update_dst;
		targets[i].flags = c->msgs[i].flags;
		targets[i].rcpt = s->account;
		targets[i].keywords = c->msgs[i].kw[0] != '\0' ? c->msgs[i].kw : NULL;
	}
	s->update_kind = IMAP_UPDATE_APPEND;
	s->update_pending++;
	imap_enter_state(s, IMAP_STATE_WAIT);
	/* Targets and keywords are copied before this returns. */
	deliver_tx_commit_group(s->server->deliver, c->txs, targets, c->n, s->account_id,
	                        imap_append_done, s);
	free(targets);
	imap_append_cmd_free(c);
}

/* The worker: assembles every CATENATE message of the command. */
static void
imap_append_catenate_work(void *arg)
{
	struct imap_append_cmd *c = arg;

	for (size_t i = 0; i < c->n; i++)
		if (c->cats[i] != NULL)
			imap_catenate_build(c->cats[i]);
}

static void
imap_append_catenate_done(void *arg)
{
	struct imap_append_cmd *c = arg;
	struct imap_session *s = c->s;
	bool too_big = false;

	s->update_pending--;
	if (s->conn.dead) {
		imap_append_cmd_free(c);
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (c->cats[i] == NULL)
			continue;
		c->txs[i] = imap_catenate_take(c->cats[i], &too_big);
		if (c->txs[i] != NULL)
			continue;
		imap_enter_state(s, s->mailbox != NULL ? IMAP_STATE_SELECTED : IMAP_STATE_AUTH);
		if (too_big)
			imap_reply(s,
			           "%s NO [TOOBIG] Message too large (at most %" PRIu64 " bytes)",
			           s->tag, s->server->append_max);
		else
			imap_reply(s,
			           "%s NO [UNAVAILABLE] Cannot store the message; try again later",
			           s->tag);
		imap_append_cmd_free(c);
		netconn_run(&s->conn);
		return;
	}
	imap_append_commit(s, c);
}

void
imap_cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_append_cmd *c = xcalloc(1, sizeof(*c));
	struct imap_append *a = imap_append_get(s);
	char name[IMAP_MAILBOX_MAX];
	struct store_mailbox mbox;
	bool catenate = false;
	size_t max = 1;
	long n;
	int r;

	for (size_t i = 1; i < cmd->nargs; i++)
		max += cmd->args[i].type == IMAP_ARG_LITERAL ||
		       imap_arg_atom_equals(&cmd->args[i], "CATENATE") ||
		       imap_arg_atom_equals(&cmd->args[i], "UTF8");
	c->s = s;
	c->msgs = xcalloc(max, sizeof(*c->msgs));
	if (a->too_many) {
		imap_reply(s, "%s NO [LIMIT] At most %d messages in one APPEND", cmd->tag,
		           IMAP_APPEND_MAX);
		goto out;
	}
	if ((n = imap_append_parse(s, cmd, c->msgs, max)) < 0)
		goto out;
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0)
		goto out;
	if (a->failed) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message; try again later",
		           cmd->tag);
		goto out;
	}
	for (long i = 0; i < n; i++) {
		catenate = catenate || c->msgs[i].cat != NULL;
		if (c->msgs[i].data != NULL && c->msgs[i].data->len == 0) {
			imap_reply(s, "%s NO [CANNOT] Cannot store an empty message", cmd->tag);
			goto out;
		}
	}
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r <= 0) {
		if (r == 0)
			imap_reply(s, "%s NO [TRYCREATE] Mailbox does not exist", cmd->tag);
		else
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox", cmd->tag);
		goto out;
	}
	c->n = (size_t)n;
	c->txs = xcalloc(c->n, sizeof(*c->txs));
	c->cats = xcalloc(c->n, sizeof(*c->cats));
	c->mailbox = xstrdup(name);
	if (imap_append_txs(s, cmd->tag, c) < 0)
		goto out;
	imap_append_abort(s);
	imap_set_tag(s, cmd->tag);
	if (!catenate) {
		imap_append_commit(s, c);
		return;
	}
	/* The parts are copied off the loop thread; the session waits. */
	s->update_pending++;
	imap_enter_state(s, IMAP_STATE_WAIT);
	workers_submit(s->server->workers, imap_append_catenate_work, imap_append_catenate_done, c);
	return;
out:
	imap_append_abort(s);
	imap_append_cmd_free(c);
}

/* --- COPY, MOVE --- */

/* Tells the hub about the copies (flags and keywords as the source had them). */
static void
imap_copy_publish(struct imap_session *s, const struct store_copy_result *r)
{
	if (s->server->hub == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		struct notify_event ev = {.kind = NOTIFY_NEW,
		                          .account_id = s->account_id,
		                          .mailbox_id = r->dst_mailbox_id,
		                          .uid = r->dst_uids[i],
		                          .modseq = r->dst_modseq};
		long idx = imap_msg_find(s, r->src_uids[i]);

		/* The flags committed, not this session's view of the source (maybe older). */
		ev.flags = r->flags[i];
		str_copy(ev.keywords, r->keywords[i], sizeof(ev.keywords));
		if (idx >= 0) {
			ev.size = s->msgs[idx].size;
			ev.internal_date = s->msgs[idx].internal_date;
		}
		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), s->update_dst);
		notify_publish(s->server->hub, &ev);
	}
}

static void
imap_copyuid_write(struct imap_session *s, const char *tag, const struct store_copy_result *r)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);

	evbuffer_add_printf(out, "%s OK [COPYUID %u ", tag, r->dst_uidvalidity);
	imap_write_uidset(s, r->src_uids, r->n);
	evbuffer_add(out, " ", 1);
	imap_write_uidset(s, r->dst_uids, r->n);
}

static void
imap_copy_done(int result, const char *error, const struct store_copy_result *r, void *arg)
{
	struct imap_session *s = arg;
	bool move = s->update_kind == IMAP_UPDATE_MOVE;
	const char *verb = move ? "MOVE" : "COPY";

	s->update_pending--;
	if (s->conn.dead) {
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	if (result == 0) {
		imap_reply(s, "%s NO [TRYCREATE] Mailbox does not exist", s->tag);
	} else if (result < 0) {
		log_warnx("imap session=%s event=%s result=failed error=\"%s\"", s->conn.id,
		          move ? "move" : "copy", error != NULL ? error : "");
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot %s the messages; try again later", s->tag,
		           move ? "move" : "copy");
	} else if (r->missing > 0) {
		/* Another session expunged some of them: nothing was copied (RFC 3501 6.4.7 wants a
		 * failed COPY to leave the destination alone; RFC 2180 4.4, RFC 5530). Pending
		 * EXPUNGEs go first, as Dovecot sends them, so the client can tell which. */
		imap_mailbox_flush(s, true);
		imap_reply(s,
		           "%s NO [EXPUNGEISSUED] Some of the requested messages no longer exist",
		           s->tag);
	} else if (r->n == 0) {
		imap_reply(s, "%s OK %s%s completed", s->tag, s->update_uid ? "UID " : "", verb);
	} else {
		imap_copy_publish(s, r);
		if (move) {
			/* RFC 6851 4.3: COPYUID in an untagged OK before the EXPUNGE responses. */
			imap_copyuid_write(s, "*", r);
			imap_reply(s, "] Moved");
			imap_publish_expunges(s, r->src_uids, r->n);
			imap_expunge_uids(s, r->src_uids, r->n, false);
			imap_mailbox_flush(s, true);
			imap_reply(s, "%s OK %sMOVE completed", s->tag,
			           s->update_uid ? "UID " : "");
		} else {
			/* A copy into the selected mailbox shows up as EXISTS before the OK. */
			imap_mailbox_flush(s, true);
			imap_copyuid_write(s, s->tag, r);
			imap_reply(s, "] %sCOPY completed", s->update_uid ? "UID " : "");
		}
	}
	imap_update_clear(s);
	netconn_run(&s->conn);
}

void
imap_cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
	bool move = strcmp(cmd->name, "MOVE") == 0;
	char name[IMAP_MAILBOX_MAX];
	uint32_t *idx;
	long nidx;

	if (cmd->nargs != 2) {
		imap_bad(s, cmd->tag,
		         move ? "syntax: MOVE sequence-set mailbox"
		              : "syntax: COPY sequence-set mailbox");
		return;
	}
	if (move && s->read_only) {
		imap_reply(s, "%s NO [READ-ONLY] Mailbox is read-only", cmd->tag);
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[1], name, sizeof(name)) < 0)
		return;
	if ((nidx = imap_seqset_expand(s, cmd->tag, &cmd->args[0], cmd->uid, &idx)) < 0)
		return;
	if (nidx == 0) {
		free(idx);
		imap_reply(s, "%s OK %s%s completed", cmd->tag, cmd->uid ? "UID " : "", cmd->name);
		return;
	}
	imap_update_clear(s);
	s->update_uids = xcalloc((size_t)nidx, sizeof(*s->update_uids));
	for (long i = 0; i < nidx; i++)
		s->update_uids[i] = s->msgs[idx[i]].uid;
	s->update_nuids = (size_t)nidx;
	free(idx);
	s->update_dst = xstrdup(name);
	s->update_uid = cmd->uid;
	s->update_kind = move ? IMAP_UPDATE_MOVE : IMAP_UPDATE_COPY;
	s->update_pending++;
	imap_set_tag(s, cmd->tag);
	imap_enter_state(s, IMAP_STATE_WAIT);
	store_message_copy(s->server->store, s->account_id, s->mailbox, s->update_uids,
	                   s->update_nuids, s->update_dst, move, imap_copy_done, s);
}
