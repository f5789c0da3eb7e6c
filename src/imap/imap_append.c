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
#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "store/store.h"

/* --- APPEND --- */

void
imap_append_abort(struct imap_session *s)
{
	if (s->append_tx != NULL)
		deliver_tx_abort(&s->append_tx);
	s->append_literals = 0;
	s->append_remaining = 0;
	s->append_failed = false;
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
	if (s->append_literals > 0) {
		imap_reply(s, "%s NO [CANNOT] One message per APPEND (no MULTIAPPEND)", tag);
		return false;
	}
	return true;
}

void
imap_append_data(struct imap_session *s, const char *data, size_t len)
{
	char error[256];

	if (s->append_remaining == 0) {
		/* A literal begins (a {n+} one arrives without a continuation request). */
		s->append_literals++;
		s->append_remaining = imap_parser_literal_size(s->parser);
		if (s->append_literals > 1 ||
		    (s->state != IMAP_STATE_AUTH && s->state != IMAP_STATE_SELECTED))
			s->append_failed = true;
	}
	s->append_remaining -= len < s->append_remaining ? len : s->append_remaining;
	if (s->append_failed)
		return;
	if (s->append_tx == NULL) {
		s->append_tx = deliver_tx_begin_append(s->server->deliver, 0, error, sizeof(error));
		if (s->append_tx == NULL) {
			log_warnx("imap session=%s event=append result=failed error=\"%s\"",
			          s->conn.id, error);
			s->append_failed = true;
			return;
		}
	}
	if (deliver_tx_write(s->append_tx, data, len) < 0) {
		log_warnx("imap session=%s event=append result=write-failed", s->conn.id);
		deliver_tx_abort(&s->append_tx);
		s->append_failed = true;
	}
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
imap_append_done(bool ok, const char *error, const struct store_result *results, void *arg)
{
	struct imap_session *s = arg;

	s->update_pending--;
	if (s->conn.dead) {
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	imap_enter_state(s, s->mailbox != NULL ? IMAP_STATE_SELECTED : IMAP_STATE_AUTH);
	if (!ok) {
		log_warnx("imap session=%s event=append result=failed error=\"%s\"", s->conn.id,
		          error != NULL ? error : "");
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message; try again later", s->tag);
	} else {
		/* An APPEND to the selected mailbox shows up as EXISTS before the OK. */
		imap_mailbox_flush(s, true);
		log_info("imap session=%s event=append mailbox=\"%s\" uid=%u", s->conn.id,
		         s->update_dst, results[0].uid);
		imap_reply(s, "%s OK [APPENDUID %u %u] APPEND completed", s->tag,
		           results[0].uidvalidity, results[0].uid);
	}
	imap_update_clear(s);
	netconn_run(&s->conn);
}

void
imap_cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
	char name[IMAP_MAILBOX_MAX], kw[STORE_KEYWORDS_MAX];
	const struct imap_arg *msg = &cmd->args[cmd->nargs > 0 ? cmd->nargs - 1 : 0];
	struct store_target target = {0};
	struct store_mailbox mbox;
	int64_t date = 0;
	uint32_t flags = 0;
	size_t pos = 1;
	int r;

	kw[0] = '\0';
	if (s->append_literals > 1) {
		imap_append_abort(s);
		imap_reply(s, "%s NO [CANNOT] One message per APPEND (no MULTIAPPEND)", cmd->tag);
		return;
	}
	if (cmd->nargs < 2 || cmd->nargs > 4 || msg->type != IMAP_ARG_LITERAL) {
		imap_append_abort(s);
		imap_bad(s, cmd->tag, "syntax: APPEND mailbox [(flags)] [date-time] {size}");
		return;
	}
	if (pos < cmd->nargs - 1 && cmd->args[pos].type == IMAP_ARG_LIST) {
		r = imap_flags_parse(&cmd->args[pos], 1, &flags, kw, sizeof(kw));
		if (r < 0) {
			imap_append_abort(s);
			if (r == -2)
				imap_reply(s, "%s NO [LIMIT] Too many keywords", cmd->tag);
			else
				imap_bad(s, cmd->tag, "Invalid flag");
			return;
		}
		pos++;
	}
	if (pos < cmd->nargs - 1) {
		const char *str;

		if (!imap_arg_get_string(&cmd->args[pos], &str) ||
		    (date = imap_date_time_parse(str)) < 0) {
			imap_append_abort(s);
			imap_bad(s, cmd->tag, "Invalid date-time");
			return;
		}
		pos++;
	}
	if (pos != cmd->nargs - 1) {
		imap_append_abort(s);
		imap_bad(s, cmd->tag, "syntax: APPEND mailbox [(flags)] [date-time] {size}");
		return;
	}
	if (imap_mailbox_arg(s, cmd->tag, &cmd->args[0], name, sizeof(name)) < 0) {
		imap_append_abort(s);
		return;
	}
	if (s->append_failed) {
		imap_append_abort(s);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message; try again later",
		           cmd->tag);
		return;
	}
	if (msg->len == 0) {
		imap_append_abort(s);
		imap_reply(s, "%s NO [CANNOT] Cannot store an empty message", cmd->tag);
		return;
	}
	if (!msg->streamed) {
		/* A small literal the parser buffered (e.g. sent before login limits changed). */
		imap_append_data(s, msg->str, msg->len);
		if (s->append_failed) {
			imap_append_abort(s);
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message", cmd->tag);
			return;
		}
	}
	r = store_mailbox_get(s->server->store, s->account_id, name, &mbox);
	if (r <= 0) {
		imap_append_abort(s);
		if (r == 0)
			imap_reply(s, "%s NO [TRYCREATE] Mailbox does not exist", cmd->tag);
		else
			imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox", cmd->tag);
		return;
	}
	deliver_tx_set_internal_date(s->append_tx, date);
	imap_update_clear(s);
	s->update_dst = xstrdup(name);
	s->update_kw = xstrdup(kw);
	target.account_id = s->account_id;
	target.mailbox = s->update_dst;
	target.flags = flags;
	target.rcpt = s->account;
	target.keywords = s->update_kw[0] != '\0' ? s->update_kw : NULL;
	imap_set_tag(s, cmd->tag);
	s->update_kind = IMAP_UPDATE_APPEND;
	s->update_pending++;
	s->append_literals = 0;
	s->append_remaining = 0;
	imap_enter_state(s, IMAP_STATE_WAIT);
	deliver_tx_commit_r(s->server->deliver, &s->append_tx, &target, 1, s->account_id,
	                    imap_append_done, s);
}

/* --- COPY, MOVE --- */

/* Tells the hub about the copies (flags and keywords as the source had them). */
static void
imap_copy_publish(struct imap_session *s, const struct store_copy_result *r)
{
	if (s->server->hub == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		struct notify_event ev = {.kind = NOTIFY_NEW, .account_id = s->account_id,
		                          .mailbox_id = r->dst_mailbox_id, .uid = r->dst_uids[i],
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
	} else if (r->n == 0) {
		/* Every message was expunged meanwhile. */
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
			imap_reply(s, "%s OK %sMOVE completed", s->tag, s->update_uid ? "UID " : "");
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
		imap_bad(s, cmd->tag, move ? "syntax: MOVE sequence-set mailbox"
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
