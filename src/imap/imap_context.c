/* imap_context: RFC 5267 contexts (see imap_context.h). */
#include "imap/imap_context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_match.h"
#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"

/* One updating context. */
struct imap_context {
	struct imap_context *next;
	char *tag;
	bool uid; /* UID SEARCH / UID SORT: updates name UIDs, else sequence numbers */
	struct imap_match *m;
	imap_context_cmp_fn *cmp; /* SORT; NULL for SEARCH */
	void *arg;                /* cmp's, free()d */
	uint32_t *uids;           /* the result: mailbox order (SEARCH) or sort order (SORT) */
	size_t n, cap;
};

int
imap_context_range_parse(const char *text, uint32_t *lo_r, uint32_t *hi_r)
{
	uint64_t v[2] = {0, 0};
	const char *p = text;

	for (int k = 0; k < 2; k++) {
		if (*p < '1' || *p > '9')
			return -1; /* nz-number: no leading zero, no "*" */
		for (; *p >= '0' && *p <= '9'; p++) {
			v[k] = v[k] * 10 + (uint64_t)(*p - '0');
			if (v[k] > UINT32_MAX)
				return -1;
		}
		if (k == 0 && *p++ != ':')
			return -1;
	}
	if (*p != '\0')
		return -1;
	*lo_r = (uint32_t)(v[0] < v[1] ? v[0] : v[1]);
	*hi_r = (uint32_t)(v[0] < v[1] ? v[1] : v[0]);
	return 0;
}

int
imap_context_return_parse(const struct imap_arg *list, struct imap_search_ret *r,
                          const char **error_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {{"MIN", IMAP_SEARCH_RET_MIN},         {"MAX", IMAP_SEARCH_RET_MAX},
	            {"ALL", IMAP_SEARCH_RET_ALL},         {"COUNT", IMAP_SEARCH_RET_COUNT},
	            {"CONTEXT", IMAP_SEARCH_RET_CONTEXT}, {"UPDATE", IMAP_SEARCH_RET_UPDATE},
	            {"PARTIAL", IMAP_SEARCH_RET_PARTIAL}};
	const char *range;

	memset(r, 0, sizeof(*r));
	r->esearch = true;
	for (size_t i = 0; i < list->list_count; i++) {
		unsigned bit = 0;

		for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (imap_arg_atom_equals(&list->list[i], opts[k].name))
				bit = opts[k].bit;
		if (bit == 0) {
			*error_r = "Unknown RETURN option (MIN MAX ALL COUNT CONTEXT UPDATE PARTIAL)";
			return -1;
		}
		if (bit == IMAP_SEARCH_RET_PARTIAL || bit == IMAP_SEARCH_RET_ALL) {
			/* RFC 5267 4.4: one PARTIAL, one ALL, or neither. */
			if ((r->bits & (IMAP_SEARCH_RET_PARTIAL | IMAP_SEARCH_RET_ALL)) != 0) {
				*error_r = "RETURN takes one PARTIAL or one ALL, not both or twice";
				return -1;
			}
		}
		if (bit == IMAP_SEARCH_RET_PARTIAL) {
			if (i + 1 >= list->list_count ||
			    list->list[i + 1].type != IMAP_ARG_ATOM ||
			    !imap_arg_get_atom(&list->list[i + 1], &range) ||
			    strlen(range) >= sizeof(r->range) ||
			    imap_context_range_parse(range, &r->lo, &r->hi) < 0) {
				*error_r = "syntax: RETURN (PARTIAL m:n) with 1 <= m, n";
				return -1;
			}
			str_copy(r->range, range, sizeof(r->range));
			i++;
		}
		r->bits |= bit;
	}
	/* RFC 4731 3.1: RETURN () means ALL. */
	if (r->bits == 0)
		r->bits = IMAP_SEARCH_RET_ALL;
	return 0;
}

void
imap_context_write_set(struct evbuffer *out, const uint32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t lo = ids[i], hi = lo;
		bool first = i == 0;

		while (i + 1 < n && hi != UINT32_MAX && ids[i + 1] == hi + 1) {
			hi++;
			i++;
		}
		evbuffer_add_printf(out, "%s%u", first ? "" : ",", lo);
		if (hi != lo)
			evbuffer_add_printf(out, ":%u", hi);
	}
}

void
imap_context_write_partial(struct evbuffer *out, const struct imap_search_ret *r,
                           const uint32_t *ids, size_t n)
{
	evbuffer_add_printf(out, " PARTIAL (%s ", r->range);
	if (r->lo > n)
		evbuffer_add_printf(out, "NIL");
	else
		imap_context_write_set(out, ids + (r->lo - 1),
		                       (r->hi < n ? r->hi : n) - (r->lo - 1));
	evbuffer_add(out, ")", 1);
}

static struct imap_context *
context_find(const struct imap_session *s, const char *tag)
{
	for (struct imap_context *c = s->contexts; c != NULL; c = c->next)
		if (strcmp(c->tag, tag) == 0)
			return c;
	return NULL;
}

bool
imap_context_tag_in_use(const struct imap_session *s, const char *tag)
{
	return context_find(s, tag) != NULL;
}

static void
context_free(struct imap_context **cp)
{
	struct imap_context *c = *cp;

	if (c == NULL)
		return;
	imap_match_free(&c->m);
	free(c->arg);
	free(c->uids);
	free(c->tag);
	free(c);
	*cp = NULL;
}

static size_t
context_count(const struct imap_session *s)
{
	size_t n = 0;

	for (const struct imap_context *c = s->contexts; c != NULL; c = c->next)
		n++;
	return n;
}

/* The snapshot message of uid (it is in the snapshot: contexts hold only such UIDs). */
static const struct imap_msg *
context_msg(const struct imap_session *s, uint32_t uid)
{
	long idx = imap_msg_find(s, uid);

	return idx >= 0 ? &s->msgs[idx] : NULL;
}

struct context_sort_arg {
	const struct imap_session *s;
	const struct imap_context *c;
};

static int
context_sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct context_sort_arg *a = arg;

	return a->c->cmp(context_msg(a->s, *(const uint32_t *)pa),
	                 context_msg(a->s, *(const uint32_t *)pb), a->c->arg);
}

/* Puts c->uids in c->cmp's order (every UID is in the snapshot). */
static void
context_sort(const struct imap_session *s, struct imap_context *c)
{
	struct context_sort_arg a = {s, c};

	qsort_r(c->uids, c->n, sizeof(*c->uids), context_sort_cmp, &a);
}

int
imap_context_add(struct imap_session *s, const char *tag, bool uid, bool needs_text,
                 struct imap_match **m, const bool *match, uint32_t nmsgs,
                 imap_context_cmp_fn *cmp, void *arg)
{
	struct imap_context *c;
	char esc[64];

	if (needs_text || context_count(s) >= IMAP_CONTEXT_MAX) {
		imap_reply(s, "* NO [NOUPDATE \"%s\"] %s", tag,
		           needs_text ? "Updates of this search would need the message text"
		                      : "Too many updating contexts; CANCELUPDATE one");
		log_debug("imap session=%s event=context-refused tag=%s", s->conn.id,
	          log_str(esc, sizeof(esc), tag));
		return 0;
	}
	c = xcalloc(1, sizeof(*c));
	c->tag = xstrdup(tag);
	c->uid = uid;
	c->m = *m;
	*m = NULL;
	c->cmp = cmp;
	c->arg = arg;
	for (uint32_t i = 0; i < nmsgs && i < s->nmsgs; i++) {
		if (!match[i])
			continue;
		if (c->n == c->cap) {
			c->cap = c->cap == 0 ? 16 : 2 * c->cap;
			c->uids = xrealloc(c->uids, c->cap * sizeof(*c->uids));
		}
		c->uids[c->n++] = s->msgs[i].uid;
	}
	if (cmp != NULL)
		context_sort(s, c);
	c->next = s->contexts;
	s->contexts = c;
	log_debug("imap session=%s event=context-added tag=%s results=%zu", s->conn.id,
	          log_str(esc, sizeof(esc), tag), c->n);
	return 1;
}

/* The number the client knows message uid by in context c (sequence number or UID). */
static uint32_t
context_id(const struct imap_session *s, const struct imap_context *c, uint32_t uid)
{
	return c->uid ? uid : (uint32_t)imap_msg_find(s, uid) + 1;
}

/* One (position set) pair of an update being written: consecutive ids at one position. */
struct context_pair {
	uint32_t pos;
	uint32_t *ids;
	size_t n, cap;
};

/* Collects the ADDTO or REMOVEFROM items of one update, merging an item into the previous
 * pair when it continues it (RFC 5267 4.3.3's preferred, shortest representation). */
struct context_items {
	struct context_pair *pairs;
	size_t n, cap;
};

static void
items_add(struct context_items *it, uint32_t pos, uint32_t id, bool removal)
{
	struct context_pair *p = it->n > 0 ? &it->pairs[it->n - 1] : NULL;

	/* SEARCH (position 0) is one set; a removal at the position where the last one was,
	 * or an addition right after the last one added, continues the pair. */
	if (p == NULL || !(pos == 0 ? p->pos == 0
	                            : removal ? p->pos == pos : p->pos + p->n == pos)) {
		if (it->n == it->cap) {
			it->cap = it->cap == 0 ? 4 : 2 * it->cap;
			it->pairs = xrealloc(it->pairs, it->cap * sizeof(*it->pairs));
		}
		p = &it->pairs[it->n++];
		*p = (struct context_pair){.pos = pos};
	}
	if (p->n == p->cap) {
		p->cap = p->cap == 0 ? 8 : 2 * p->cap;
		p->ids = xrealloc(p->ids, p->cap * sizeof(*p->ids));
	}
	p->ids[p->n++] = id;
}

static void
items_write(struct evbuffer *out, const char *name, struct context_items *it)
{
	if (it->n == 0)
		return;
	evbuffer_add_printf(out, " %s (", name);
	for (size_t i = 0; i < it->n; i++) {
		evbuffer_add_printf(out, "%s%u ", i > 0 ? " " : "", it->pairs[i].pos);
		imap_context_write_set(out, it->pairs[i].ids, it->pairs[i].n);
		free(it->pairs[i].ids);
	}
	evbuffer_add(out, ")", 1);
	free(it->pairs);
	it->pairs = NULL;
	it->n = it->cap = 0;
}

static void
context_send(struct imap_session *s, const struct imap_context *c, struct context_items *removed,
             struct context_items *added)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);

	if (removed->n == 0 && added->n == 0)
		return;
	evbuffer_add_printf(out, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
	items_write(out, "REMOVEFROM", removed);
	items_write(out, "ADDTO", added);
	evbuffer_add(out, "\r\n", 2);
}

/* Index of uid in the ascending uids[0..n), or -1. */
static long
uid_index(const uint32_t *uids, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (uids[mid] == uid)
			return (long)mid;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void
imap_context_expunged(struct imap_session *s, uint32_t seq, uint32_t uid)
{
	for (struct imap_context *c = s->contexts; c != NULL; c = c->next) {
		struct context_items removed = {0}, added = {0};
		long found = -1;
		size_t i;

		/* SEARCH results are in UID order; SORT's are not. */
		if (c->cmp == NULL)
			found = uid_index(c->uids, c->n, uid);
		for (size_t j = 0; c->cmp != NULL && j < c->n && found < 0; j++)
			if (c->uids[j] == uid)
				found = (long)j;
		if (found < 0)
			continue;
		i = (size_t)found;
		memmove(&c->uids[i], &c->uids[i + 1], (c->n - i - 1) * sizeof(*c->uids));
		c->n--;
		items_add(&removed, c->cmp != NULL ? (uint32_t)i + 1 : 0, c->uid ? uid : seq, true);
		context_send(s, c, &removed, &added);
	}
}

/* SEARCH: the survivors kept[0..nkept) and the additions fresh[0..nfresh), both ascending,
 * become the result in mailbox order; the additions are reported at position 0. */
static void
context_merge(struct imap_session *s, struct imap_context *c, const uint32_t *kept, size_t nkept,
              const uint32_t *fresh, size_t nfresh, struct context_items *added)
{
	uint32_t *out = xcalloc(nkept + nfresh + 1, sizeof(*out));
	size_t i = 0, j = 0, n = 0;

	for (size_t k = 0; k < nfresh; k++)
		items_add(added, 0, context_id(s, c, fresh[k]), false);
	while (i < nkept || j < nfresh)
		out[n++] = j >= nfresh || (i < nkept && kept[i] < fresh[j]) ? kept[i++] : fresh[j++];
	free(c->uids);
	c->uids = out;
	c->n = n;
	c->cap = nkept + nfresh + 1;
}

/* SORT: the survivors (in order) and the additions become the result in the requested order;
 * each addition is reported at the position it takes, in ascending order, so that each
 * insertion finds every result before it already in place (RFC 5267 4.3.3). */
static void
context_insert(struct imap_session *s, struct imap_context *c, const uint32_t *kept, size_t nkept,
               const uint32_t *fresh, size_t nfresh, struct context_items *added)
{
	uint32_t *out = xcalloc(nkept + nfresh + 1, sizeof(*out));

	memcpy(out, kept, nkept * sizeof(*out));
	memcpy(out + nkept, fresh, nfresh * sizeof(*out));
	free(c->uids);
	c->uids = out;
	c->n = nkept + nfresh;
	c->cap = nkept + nfresh + 1;
	if (nfresh == 0)
		return;
	context_sort(s, c);
	for (size_t j = 0; j < c->n; j++)
		if (uid_index(fresh, nfresh, c->uids[j]) >= 0)
			items_add(added, (uint32_t)j + 1, context_id(s, c, c->uids[j]), false);
}

/* Re-evaluates c over the messages the client knows and sends the difference. */
static void
context_update(struct imap_session *s, struct imap_context *c, uint32_t known)
{
	struct context_items removed = {0}, added = {0};
	bool *match = xcalloc((size_t)known + 1, sizeof(*match));
	uint32_t *kept = xcalloc(c->n + 1, sizeof(*kept));
	uint32_t *fresh = xcalloc((size_t)known + 1, sizeof(*fresh));
	size_t nkept = 0, nfresh = 0;

	imap_match_bind(c->m, known, known > 0 ? s->msgs[known - 1].uid : 0);
	for (uint32_t i = 0; i < known; i++) {
		struct imap_match_msg mm;

		imap_search_msg(s, i, &mm);
		match[i] = imap_match_eval(c->m, &mm, NULL) == 1;
	}
	/* Removals, in the context's order; a SORT position counts the list as it shrinks. */
	for (size_t j = 0; j < c->n; j++) {
		long idx = imap_msg_find(s, c->uids[j]);
		uint32_t pos = c->cmp != NULL ? (uint32_t)nkept + 1 : 0;

		if (idx >= 0 && (uint32_t)idx < known && match[idx]) {
			kept[nkept++] = c->uids[j];
			match[idx] = false; /* already in */
		} else if (idx >= 0 && (uint32_t)idx < known) {
			items_add(&removed, pos, context_id(s, c, c->uids[j]), true);
		} else if (c->uid) {
			/* Gone without an EXPUNGE response: only its UID names it now. */
			items_add(&removed, pos, c->uids[j], true);
		}
	}
	for (uint32_t i = 0; i < known; i++)
		if (match[i])
			fresh[nfresh++] = s->msgs[i].uid;
	if (c->cmp == NULL)
		context_merge(s, c, kept, nkept, fresh, nfresh, &added);
	else
		context_insert(s, c, kept, nkept, fresh, nfresh, &added);
	context_send(s, c, &removed, &added);
	free(fresh);
	free(kept);
	free(match);
}

void
imap_context_update(struct imap_session *s)
{
	uint32_t known = s->exists_announced < s->nmsgs ? s->exists_announced : s->nmsgs;

	bool meta = false;

	if (s->contexts == NULL || s->mailbox == NULL || s->conn.closing)
		return;
	/* New messages come from notify events without size and date: SORT's keys and SEARCH's
	 * LARGER, SINCE, ... need them (the same store read SEARCH does). */
	for (const struct imap_context *c = s->contexts; c != NULL; c = c->next)
		meta = meta || c->cmp != NULL || (imap_match_needs(c->m) & IMAP_MATCH_NEED_META);
	if (meta && imap_mailbox_load_meta(s) < 0) {
		log_warnx("imap session=%s event=context-update result=deferred error=meta",
		          s->conn.id);
		return;
	}
	for (struct imap_context *c = s->contexts; c != NULL; c = c->next)
		context_update(s, c, known);
}

void
imap_context_clear(struct imap_session *s)
{
	while (s->contexts != NULL) {
		struct imap_context *c = s->contexts;

		s->contexts = c->next;
		context_free(&c);
	}
}

void
imap_cmd_cancelupdate(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->nargs == 0) {
		imap_bad(s, cmd->tag, "syntax: CANCELUPDATE \"tag\" ...");
		return;
	}
	for (size_t i = 0; i < cmd->nargs; i++) {
		if (cmd->args[i].type != IMAP_ARG_STRING) {
			imap_bad(s, cmd->tag, "syntax: CANCELUPDATE \"tag\" ... (quoted tags)");
			return;
		}
	}
	/* All or nothing: an unknown tag cancels none. */
	for (size_t i = 0; i < cmd->nargs; i++) {
		if (context_find(s, cmd->args[i].str) == NULL) {
			imap_reply(s, "%s NO Unknown search UPDATE tag", cmd->tag);
			return;
		}
	}
	for (size_t i = 0; i < cmd->nargs; i++) {
		struct imap_context **pp = &s->contexts;

		while (*pp != NULL && strcmp((*pp)->tag, cmd->args[i].str) != 0)
			pp = &(*pp)->next;
		if (*pp != NULL) {
			struct imap_context *c = *pp;

			*pp = c->next;
			context_free(&c);
		}
	}
	imap_reply(s, "%s OK CANCELUPDATE completed", cmd->tag);
}
