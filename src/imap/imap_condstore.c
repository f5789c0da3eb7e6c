/* imap_condstore: CONDSTORE and QRESYNC (RFC 7162) pieces the other files share: enabling
 * CONDSTORE with its HIGHESTMODSEQ, SELECT/EXAMINE's (CONDSTORE) and (QRESYNC (...))
 * parameters and the resync that follows, VANISHED instead of EXPUNGE and VANISHED (EARLIER)
 * from the store's tombstones (store_expunged_list). */
#include <inttypes.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

/* Reads the QRESYNC parameter's list into q. 0, or -1 after replying BAD. */
static int
imap_select_qresync(struct imap_session *s, const char *tag, const struct imap_arg *a,
                    struct imap_qresync_param *q)
{
	size_t count;
	const char *error;

	if (!s->qresync) {
		imap_bad(s, tag, "QRESYNC is not enabled (ENABLE QRESYNC first)");
		return -1;
	}
	if (a->type != IMAP_ARG_LIST || a->list_count < 2 || a->list_count > 4 ||
	    a->list[0].type != IMAP_ARG_NUMBER || a->list[0].number == 0 ||
	    a->list[0].number > UINT32_MAX || a->list[1].type != IMAP_ARG_NUMBER ||
	    a->list[1].number == 0 || a->list[1].number > INT64_MAX ||
	    (a->list_count > 2 &&
	     ((a->list[2].type != IMAP_ARG_ATOM && a->list[2].type != IMAP_ARG_NUMBER) ||
	      imap_parse_seqset(a->list[2].str, NULL, IMAP_SEQSET_MAX_RANGES, &count, &error) <
	          0)) ||
	    (a->list_count > 3 && a->list[3].type != IMAP_ARG_LIST)) {
		imap_bad(s, tag, "syntax: QRESYNC (uidvalidity modseq [known-uids [seq-match]])");
		return -1;
	}
	q->present = true;
	q->uidvalidity = (uint32_t)a->list[0].number;
	q->modseq = a->list[1].number;
	q->known_uids = a->list_count > 2 ? a->list[2].str : NULL;
	/* seq-match only helps a server without tombstones: ignored. */
	return 0;
}

/* Reads SELECT's optional "(CONDSTORE)" / "(QRESYNC (...))". 0, or -1 after replying. */
int
imap_select_params(struct imap_session *s, const struct imap_command *cmd,
                   struct imap_qresync_param *q)
{
	const struct imap_arg *a;

	if (cmd->nargs == 1)
		return 0;
	a = &cmd->args[1];
	if (cmd->nargs != 2 || a->type != IMAP_ARG_LIST) {
		imap_bad(s, cmd->tag, "syntax: SELECT mailbox [(CONDSTORE | QRESYNC (...))]");
		return -1;
	}
	for (size_t i = 0; i < a->list_count; i++) {
		if (imap_arg_atom_equals(&a->list[i], "QRESYNC") && i + 1 < a->list_count) {
			if (imap_select_qresync(s, cmd->tag, &a->list[++i], q) < 0)
				return -1;
		} else if (!imap_arg_atom_equals(&a->list[i], "CONDSTORE")) {
			imap_bad(s, cmd->tag, "Unknown SELECT parameter");
			return -1;
		}
		s->condstore = true;
	}
	return 0;
}

/* After SELECT (QRESYNC ...) with a matching UIDVALIDITY (RFC 7162 3.2.5.1): what was expunged
 * since the client's MODSEQ (within its known UIDs), then the flags of what changed. */
void
imap_select_resync(struct imap_session *s, const struct imap_qresync_param *q)
{
	if (!q->present || q->uidvalidity != s->uidvalidity)
		return;
	if (imap_vanished_earlier(s, q->modseq, q->known_uids) < 0)
		log_warnx("imap session=%s event=vanished-failed", s->conn.id);
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		if (s->msgs[i].modseq <= q->modseq)
			continue;
		imap_flags_changed(s, (long)i);
	}
}

void
imap_condstore_enable(struct imap_session *s)
{
	uint64_t highest;

	if (s->condstore)
		return;
	s->condstore = true;
	if (s->mailbox == NULL)
		return;
	/* What this session's view reflects: never more than the client has been told of. */
	highest = s->highestmodseq;
	for (uint32_t i = 0; i < s->nmsgs; i++)
		if (s->msgs[i].modseq > highest)
			highest = s->msgs[i].modseq;
	imap_reply(s, "* OK [HIGHESTMODSEQ %" PRIu64 "] Highest", highest > 0 ? highest : 1);
}

void
imap_expunge_reply(struct imap_session *s, uint32_t seq, uint32_t uid)
{
	imap_context_expunged(s, seq, uid); /* RFC 5267 4.3.4: REMOVEFROM first */
	if (s->qresync)
		imap_reply(s, "* VANISHED %u", uid);
	else
		imap_reply(s, "* %u EXPUNGE", seq);
}

struct imap_vanished_ctx {
	const struct imap_seq_range *ranges;
	size_t nranges;
	uint32_t *uids;
	size_t n, cap;
};

static void
imap_vanished_one(uint32_t uid, uint64_t modseq, void *arg)
{
	struct imap_vanished_ctx *ctx = arg;
	bool in = ctx->ranges == NULL;

	(void)modseq;
	for (size_t i = 0; i < ctx->nranges && !in; i++)
		in = uid >= ctx->ranges[i].lo && uid <= ctx->ranges[i].hi; /* '*' is above all */
	if (!in)
		return;
	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap == 0 ? 64 : 2 * ctx->cap;
		ctx->uids = xrealloc(ctx->uids, ctx->cap * sizeof(*ctx->uids));
	}
	ctx->uids[ctx->n++] = uid;
}

int
imap_vanished_earlier(struct imap_session *s, uint64_t since, const char *uidset)
{
	struct imap_vanished_ctx ctx = {0};
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	struct imap_seq_range *ranges = NULL;
	const char *error;
	int r;

	if (uidset != NULL) {
		ranges = xcalloc(IMAP_SEQSET_MAX_RANGES, sizeof(*ranges));
		if (imap_parse_seqset(uidset, ranges, IMAP_SEQSET_MAX_RANGES, &ctx.nranges,
		                      &error) < 0)
			ctx.nranges = 0;
		ctx.ranges = ranges;
	}
	r = store_expunged_list(s->server->store, s->account_id, s->mailbox, since,
	                        imap_vanished_one, &ctx);
	free(ranges);
	if (r < 0) {
		free(ctx.uids);
		return -1;
	}
	/* Ascending from the store; one line (RFC 7162 3.2.10: a known-uids set, shortest form). */
	if (ctx.n > 0) {
		evbuffer_add_printf(out, "* VANISHED (EARLIER) ");
		imap_write_uidset(s, ctx.uids, ctx.n);
		evbuffer_add(out, "\r\n", 2);
	}
	free(ctx.uids);
	return 0;
}
