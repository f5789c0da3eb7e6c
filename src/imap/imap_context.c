/* imap_context: RFC 5267 contexts (see imap_context.h). */
#include "imap/imap_context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_match.h"
#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

/* Message files opened for one worker job (as SEARCH_BATCH). */
#define CONTEXT_BATCH 32

/* What a program that needs the message text answered for one message, and the state of the
 * message (flags, keywords, MODSEQ, \Recent) it answered for: valid while that state is. */
struct context_verdict {
	uint32_t uid;
	uint64_t key;
	bool match;
};

/* A SORT context's data of one message (its reader's, e.g. imap_sort_msg), by UID. */
struct context_data {
	uint32_t uid;
	void *data; /* NULL: the file could not be read (it sorts as empty) */
};

struct context_job;

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
	uint64_t id;               /* unique in the process: a job finds its context by it */
	struct context_verdict *v; /* text programs: verdicts by UID (ascending) */
	size_t nv;
	struct context_job *job; /* text programs: files being read for it, or NULL */
	const struct imap_search_reader *reader; /* SORT by header keys: reads the data below */
	struct context_data *sd;                 /* ... of every member, by UID (ascending) */
	size_t nsd, sdcap;
};

/* Text programs: a message whose verdict is unknown or stale, read on the workers. */
struct context_read {
	uint32_t uid;
	uint64_t key;
	struct imap_match_msg mm;
	char *keywords; /* mm.keywords points here */
	int fd;
	bool match;
	void *data; /* a data job's: the reader's data of the message */
};

/* The reading for one context. Everything a worker touches (m, items) is the job's while it
 * runs: the context does not evaluate its program until the job is back. */
struct context_job {
	struct imap_session *s;
	uint64_t ctx_id;
	struct imap_match *m; /* the context's program; the job's own once the context ended */
	bool orphan;          /* the context ended (CANCELUPDATE, deselect, session gone) */
	const struct imap_search_reader *reader; /* a data job (SORT data), else NULL (verdicts) */
	struct context_read *items;
	size_t n, next, batch_begin;
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
			*error_r =
			    "Unknown RETURN option (MIN MAX ALL COUNT CONTEXT UPDATE PARTIAL)";
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
			if (i + 1 >= list->list_count || list->list[i + 1].type != IMAP_ARG_ATOM ||
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

/* Index of the element whose first member (a uint32_t UID) is uid in base[0..n) of elements of
 * size bytes, ascending by UID; or -1. */
static long
uid_bsearch(const void *base, size_t n, size_t size, uint32_t uid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t at;

		memcpy(&at, (const char *)base + mid * size, sizeof(at));
		if (at == uid)
			return (long)mid;
		if (at < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
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
	if (c->job != NULL) {
		/* A worker may be reading with the program: the job frees it when it comes back. */
		c->job->orphan = true;
		c->m = NULL;
	}
	imap_match_free(&c->m);
	for (size_t i = 0; i < c->nsd; i++)
		if (c->sd[i].data != NULL)
			c->reader->free_data(c->sd[i].data);
	free(c->sd);
	free(c->v);
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

/* Index of uid in c->sd, or -1. */
static long
sd_find(const struct imap_context *c, uint32_t uid)
{
	return uid_bsearch(c->sd, c->nsd, sizeof(*c->sd), uid);
}

static const void *
sd_get(const struct imap_context *c, uint32_t uid)
{
	long k = c->reader != NULL ? sd_find(c, uid) : -1;

	return k >= 0 ? c->sd[k].data : NULL;
}

/* Keeps data for uid (taken; replaces what was there). */
static void
sd_put(struct imap_context *c, uint32_t uid, void *data)
{
	long k = sd_find(c, uid);
	size_t at = 0;

	if (k >= 0) {
		if (c->sd[k].data != NULL)
			c->reader->free_data(c->sd[k].data);
		c->sd[k].data = data;
		return;
	}
	if (c->nsd == c->sdcap) {
		c->sdcap = c->sdcap == 0 ? 16 : 2 * c->sdcap;
		c->sd = xrealloc(c->sd, c->sdcap * sizeof(*c->sd));
	}
	while (at < c->nsd && c->sd[c->nsd - 1 - at].uid > uid)
		at++;
	memmove(&c->sd[c->nsd - at + 1], &c->sd[c->nsd - at], at * sizeof(*c->sd));
	c->sd[c->nsd - at] = (struct context_data){.uid = uid, .data = data};
	c->nsd++;
}

/* Drops the data of uid. */
static void
sd_drop(struct imap_context *c, uint32_t uid)
{
	long k = c->reader != NULL ? sd_find(c, uid) : -1;

	if (k < 0)
		return;
	if (c->sd[k].data != NULL)
		c->reader->free_data(c->sd[k].data);
	memmove(&c->sd[k], &c->sd[k + 1], (c->nsd - (size_t)k - 1) * sizeof(*c->sd));
	c->nsd--;
}

struct context_sort_arg {
	const struct imap_session *s;
	const struct imap_context *c;
};

static int
context_sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct context_sort_arg *a = arg;
	uint32_t ua = *(const uint32_t *)pa, ub = *(const uint32_t *)pb;

	return a->c->cmp(context_msg(a->s, ua), sd_get(a->c, ua), context_msg(a->s, ub),
	                 sd_get(a->c, ub), a->c->arg);
}

/* Puts c->uids in c->cmp's order (every UID is in the snapshot). */
static void
context_sort(const struct imap_session *s, struct imap_context *c)
{
	struct context_sort_arg a = {s, c};

	if (c->n < 2)
		return;
	qsort_r(c->uids, c->n, sizeof(*c->uids), context_sort_cmp, &a);
}

/* The state of a message a text program's verdict depends on besides its (fixed) text, size
 * and dates: flags, \Recent, MODSEQ, keywords (FNV-1a). Programs with sequence or UID sets
 * are not kept with text keys, so the sequence number is not part of it. */
static uint64_t
verdict_key(const struct imap_match_msg *mm)
{
	const uint64_t prime = 1099511628211ull;
	uint64_t h = 1469598103934665603ull;

	h = (h ^ mm->flags) * prime;
	h = (h ^ (uint64_t)mm->recent) * prime;
	h = (h ^ mm->modseq) * prime;
	for (const char *k = mm->keywords != NULL ? mm->keywords : ""; *k != '\0'; k++)
		h = (h ^ (unsigned char)*k) * prime;
	return h;
}

/* Index of uid in c->v, or -1. */
static long
verdict_find(const struct imap_context *c, uint32_t uid)
{
	return uid_bsearch(c->v, c->nv, sizeof(*c->v), uid);
}

static void
verdict_push(struct context_verdict **v, size_t *n, size_t *cap, uint32_t uid, uint64_t key,
             bool match)
{
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : 2 * *cap;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[(*n)++] = (struct context_verdict){.uid = uid, .key = key, .match = match};
}

int
imap_context_add(struct imap_session *s, const char *tag, bool uid, struct imap_match **m,
                 const bool *match, uint32_t nmsgs, imap_context_cmp_fn *cmp, void *arg,
                 const struct imap_search_reader *reader, void **data)
{
	static uint64_t next_id;
	struct imap_context *c;
	bool text = (imap_match_needs(*m) & (IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY)) != 0;
	const char *refuse = NULL;
	size_t vcap = 0;
	char esc[64];

	if (text && imap_match_uses_numbers(*m))
		refuse = "A search of the message text with sequence or UID sets is not kept";
	else if (context_count(s) >= IMAP_CONTEXT_MAX)
		refuse = "Too many updating contexts; CANCELUPDATE one";
	if (refuse != NULL) {
		imap_reply(s, "* NO [NOUPDATE \"%s\"] %s", tag, refuse);
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
	c->id = ++next_id;
	c->reader =
	    cmp != NULL && reader != NULL && reader->read != NULL && data != NULL ? reader : NULL;
	for (uint32_t i = 0; i < nmsgs && i < s->nmsgs; i++) {
		struct imap_match_msg mm;

		/* The search read the text of the messages the snapshot could not decide: their
		 * answers are the first verdicts (the snapshot has not changed since). */
		if (text) {
			imap_search_msg(s, i, &mm);
			if (imap_match_eval(c->m, &mm, NULL) < 0)
				verdict_push(&c->v, &c->nv, &vcap, mm.uid, verdict_key(&mm),
				             match[i]);
		}
		if (!match[i])
			continue;
		if (c->reader != NULL)
			sd_put(c, s->msgs[i].uid, data[i]); /* the caller forgets it (see .h) */
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
	if (p == NULL || !(pos == 0  ? p->pos == 0
	                   : removal ? p->pos == pos
	                             : p->pos + p->n == pos)) {
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
	return uid_bsearch(uids, n, sizeof(*uids), uid);
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
		sd_drop(c, uid);
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
		out[n++] =
		    j >= nfresh || (i < nkept && kept[i] < fresh[j]) ? kept[i++] : fresh[j++];
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

/* ---- reading the text for a text program (as SEARCH does, see imap_search.c) ---- */

static void
context_job_free(struct context_job **jp)
{
	struct context_job *job = *jp;

	for (size_t i = 0; i < job->n; i++) {
		if (job->items[i].fd >= 0)
			close(job->items[i].fd);
		if (job->items[i].data != NULL)
			job->reader->free_data(job->items[i].data);
		free(job->items[i].keywords);
	}
	if (job->orphan)
		imap_match_free(&job->m);
	free(job->items);
	free(job);
	*jp = NULL;
}

/* Loop thread: opens the files of the next batch (the store is loop-thread only). A message
 * that cannot be opened (expunged meanwhile) does not match. */
static void
context_open_batch(struct imap_session *s, struct context_job *job)
{
	job->batch_begin = job->next;
	for (; job->next < job->n && job->next - job->batch_begin < CONTEXT_BATCH; job->next++) {
		struct context_read *it = &job->items[job->next];

		it->fd = s->mailbox == NULL ? -1
		                            : store_message_open(s->server->store, s->account_id,
		                                                 s->mailbox, it->uid);
		if (it->fd < 0)
			it->fd = -1;
	}
}

/* A worker (or the loop thread without workers): decides the batch opened last from the text,
 * or (a data job) reads the SORT data. Touches only the job's items and its read-only program. */
static void
context_work(void *arg)
{
	struct context_job *job = arg;
	unsigned need = imap_match_needs(job->m) & (IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);

	for (size_t i = job->batch_begin; i < job->next; i++) {
		struct context_read *it = &job->items[i];
		struct imap_match_content *content;

		if (it->fd < 0)
			continue;
		if (job->reader != NULL) {
			it->data = job->reader->read(it->fd, NULL);
			close(it->fd);
			it->fd = -1;
			continue;
		}
		content = imap_match_content_from_fd(it->fd, need);
		it->match = content != NULL && imap_match_eval(job->m, &it->mm, content) == 1;
		imap_match_content_free(&content);
		close(it->fd);
		it->fd = -1;
	}
}

/* The job's answers become verdicts of c (merged by UID; both lists are ascending). */
static void
context_take_verdicts(struct imap_context *c, const struct context_job *job)
{
	struct context_verdict *v = NULL;
	size_t n = 0, cap = 0, i = 0, j = 0;

	while (i < c->nv || j < job->n) {
		if (j >= job->n || (i < c->nv && c->v[i].uid < job->items[j].uid)) {
			verdict_push(&v, &n, &cap, c->v[i].uid, c->v[i].key, c->v[i].match);
			i++;
			continue;
		}
		if (i < c->nv && c->v[i].uid == job->items[j].uid)
			i++; /* replaced */
		verdict_push(&v, &n, &cap, job->items[j].uid, job->items[j].key,
		             job->items[j].match);
		j++;
	}
	free(c->v);
	c->v = v;
	c->nv = n;
}

/* The job's results become c's: SORT data, or verdicts. */
static void
context_take(struct imap_context *c, struct context_job *job)
{
	if (job->reader == NULL) {
		context_take_verdicts(c, job);
		return;
	}
	for (size_t i = 0; i < job->n; i++) {
		sd_put(c, job->items[i].uid, job->items[i].data);
		job->items[i].data = NULL;
	}
}

static struct imap_context *
context_by_id(const struct imap_session *s, uint64_t id)
{
	for (struct imap_context *c = s->contexts; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void context_done(void *arg);

static void
context_submit(struct imap_session *s, struct context_job *job)
{
	context_open_batch(s, job);
	s->update_pending++;
	workers_submit(s->server->workers, context_work, context_done, job);
}

/* Loop thread: a batch was read. The session went on meanwhile (this is no command); a context
 * that ended, or a session that died, leaves only the job to free. Otherwise the verdicts are
 * taken and, when the session may be told now (between commands or in IDLE), the contexts are
 * updated; else the next flush does it. */
static void
context_done(void *arg)
{
	struct context_job *job = arg;
	struct imap_session *s = job->s;
	struct imap_context *c;

	s->update_pending--;
	if (job->orphan || s->conn.dead) {
		if (!job->orphan && (c = context_by_id(s, job->ctx_id)) != NULL)
			c->job = NULL;
		context_job_free(&job);
		if (s->conn.dead && s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	if (job->next < job->n) {
		context_submit(s, job);
		return;
	}
	c = context_by_id(s, job->ctx_id);
	c->job = NULL;
	context_take(c, job);
	log_debug("imap session=%s event=context-read messages=%zu", s->conn.id, job->n);
	context_job_free(&job);
	/* Only output: the session's input was never held up by the reading. */
	if (s->state == IMAP_STATE_SELECTED || s->state == IMAP_STATE_IDLE)
		imap_context_update(s);
}

/* Reads the text (or with data, the SORT data) of snapshot messages need[0..n) for c: on the
 * workers (c->job until it is back), or here without them. */
static void
context_read_start(struct imap_session *s, struct imap_context *c, const uint32_t *need, size_t n,
                   bool data)
{
	struct context_job *job = xcalloc(1, sizeof(*job));

	job->s = s;
	job->ctx_id = c->id;
	job->m = c->m;
	job->reader = data ? c->reader : NULL;
	job->items = xcalloc(n, sizeof(*job->items));
	job->n = n;
	for (size_t i = 0; i < n; i++) {
		struct context_read *it = &job->items[i];

		imap_search_msg(s, need[i], &it->mm);
		it->uid = it->mm.uid;
		it->key = verdict_key(&it->mm);
		it->keywords = it->mm.keywords != NULL ? xstrdup(it->mm.keywords) : NULL;
		it->mm.keywords = it->keywords;
		it->fd = -1;
	}
	if (s->server->workers != NULL) {
		c->job = job;
		context_submit(s, job);
		return;
	}
	while (job->next < job->n) {
		context_open_batch(s, job);
		context_work(job);
	}
	context_take(c, job);
	context_job_free(&job);
}

/* Decides snapshot messages 0..known-1 for c into match[]: from the snapshot, else from a
 * verdict still valid. Returns the messages that need their text read (need[], count). */
static size_t
context_eval(struct imap_session *s, struct imap_context *c, uint32_t known, bool *match,
             uint32_t *need)
{
	size_t nneed = 0;

	imap_match_bind(c->m, known, known > 0 ? s->msgs[known - 1].uid : 0);
	for (uint32_t i = 0; i < known; i++) {
		struct imap_match_msg mm;
		int r;
		long k;

		imap_search_msg(s, i, &mm);
		r = imap_match_eval(c->m, &mm, NULL);
		if (r < 0) {
			k = verdict_find(c, mm.uid);
			if (k >= 0 && c->v[k].key == verdict_key(&mm))
				r = c->v[k].match;
			else
				need[nneed++] = i;
		}
		match[i] = r == 1;
	}
	return nneed;
}

/* Re-evaluates c over the messages the client knows and sends the difference. A text program
 * whose verdicts are missing or stale for some messages reads those first and comes back. */
static void
context_update(struct imap_session *s, struct imap_context *c, uint32_t known)
{
	struct context_items removed = {0}, added = {0};
	bool *match;
	uint32_t *kept, *fresh, *need;
	size_t nkept = 0, nfresh = 0, nneed;

	if (c->job != NULL)
		return; /* its completion updates c */
	match = xcalloc((size_t)known + 1, sizeof(*match));
	need = xcalloc((size_t)known + 1, sizeof(*need));
	nneed = context_eval(s, c, known, match, need);
	if (nneed > 0) {
		context_read_start(s, c, need, nneed, false);
		if (c->job == NULL) /* read here (no workers) */
			nneed = context_eval(s, c, known, match, need);
	}
	if (nneed == 0 && c->reader != NULL) {
		/* New members of a SORT by header keys: their data first (members have theirs). */
		for (uint32_t i = 0; i < known; i++)
			if (match[i] && sd_find(c, s->msgs[i].uid) < 0)
				need[nneed++] = i;
		if (nneed > 0) {
			context_read_start(s, c, need, nneed, true);
			if (c->job == NULL)
				nneed = 0;
		}
	}
	free(need);
	if (nneed > 0) {
		free(match);
		return;
	}
	/* Verdicts of messages no longer in the mailbox go. */
	nkept = 0;
	for (size_t i = 0; i < c->nv; i++)
		if (imap_msg_find(s, c->v[i].uid) >= 0)
			c->v[nkept++] = c->v[i];
	c->nv = nkept;
	nkept = 0;
	kept = xcalloc(c->n + 1, sizeof(*kept));
	fresh = xcalloc((size_t)known + 1, sizeof(*fresh));
	/* Removals, in the context's order; a SORT position counts the list as it shrinks. */
	for (size_t j = 0; j < c->n; j++) {
		long idx = imap_msg_find(s, c->uids[j]);
		uint32_t pos = c->cmp != NULL ? (uint32_t)nkept + 1 : 0;

		if (idx >= 0 && (uint32_t)idx < known && match[idx]) {
			kept[nkept++] = c->uids[j];
			match[idx] = false; /* already in */
		} else if (idx >= 0 && (uint32_t)idx < known) {
			items_add(&removed, pos, context_id(s, c, c->uids[j]), true);
			sd_drop(c, c->uids[j]);
		} else {
			/* Gone without an EXPUNGE response: only its UID names it now. */
			if (c->uid)
				items_add(&removed, pos, c->uids[j], true);
			sd_drop(c, c->uids[j]);
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
