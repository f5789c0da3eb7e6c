/* imap_search: SEARCH and UID SEARCH (RFC 3501 6.4.4) over the selected mailbox's snapshot,
 * with ESEARCH's RETURN (MIN MAX ALL COUNT) (RFC 4731), RFC 5267's CONTEXT, UPDATE and PARTIAL
 * (the updating contexts live in imap_context.c) and CONDSTORE's MODSEQ key and "(MODSEQ n)"
 * response tail (RFC 7162 3.1.5).
 *
 * The program is built and evaluated by imap_match (every key, the semantics are documented
 * there). Each message is first decided from the snapshot (flags, UID, sequence number, size,
 * internal date, MODSEQ, keywords); only messages still undecided are read: the header section
 * alone when that can decide them, then the whole message (bounded by IMAP_MATCH_FILE_MAX and
 * IMAP_MATCH_BODY_MAX).
 *
 * That reading runs on the daemon's worker threads (lib/workers.h), SEARCH_BATCH messages per
 * job, so a body search over a large mailbox does not hold up the other sessions. The files are
 * opened on the loop thread (the store is loop-thread only) just before each batch is handed
 * over; the worker parses them with GMime (its own objects per message: thread-safe once
 * mime_init has run) and evaluates the read-only program. Meanwhile the session waits in WAIT
 * like a store update (update_pending), so no command runs and the snapshot does not change; a
 * connection that dies mid-search is freed by the batch's completion. Everything the worker
 * touches is owned by the job, none of it by the session. Without workers (tools) the batches
 * are read inline.
 *
 * SORT and THREAD run the same way with a reader (imap_search_run): every match, also one the
 * snapshot decided, is read on the workers by the reader's read(), and the reader answers. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_match.h"
#include "imap/imap_private.h"
#include "imap/imap_search_index.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "store/store.h"

/* Message files opened for one worker job: bounds the descriptors a search holds and how long
 * one job keeps a worker from other sessions' work. */
#define SEARCH_BATCH 32

/* A message the snapshot could not decide: what the worker needs, owned by the job. */
struct search_item {
	uint32_t idx;             /* in the snapshot: sequence number idx + 1 */
	struct imap_match_msg mm; /* keywords point to the copy below */
	char *keywords;           /* the snapshot's may be freed meanwhile */
	int fd;                   /* opened on the loop thread for the current batch, or -1 */
	bool decided;             /* matched from the snapshot; read only for the reader */
	bool match;
	void *data; /* the reader's, for a match */
};

/* One SEARCH: the program, the answers so far, and the undecided messages. Everything a worker
 * touches (m, items, fds) belongs to the job, so a session that dies mid-search can be freed
 * without waiting for anything but the batch in flight. */
struct search_job {
	struct imap_session *s;
	struct imap_match *m;
	uint32_t nmsgs;
	bool *match; /* nmsgs answers, by snapshot index */
	uint32_t count;
	uint32_t first, last; /* indexes of the first and last match */
	uint32_t files;       /* message files read */
	struct search_item *items;
	size_t nitems;
	size_t next;        /* the first item not opened yet */
	size_t batch_begin; /* the batch the worker reads: items[batch_begin, next) */
	bool uid, modseq;
	struct imap_search_ret ret;
	const struct imap_search_reader *reader; /* SORT, THREAD; NULL for SEARCH */
	void *ctx;                               /* the reader's */
	void **data;                             /* the reader's per match, by snapshot index */
	imap_context_cmp_fn *cmp;                /* SORT's order for RETURN (UPDATE) */
	void *cmp_arg;                           /* cmp's (owned until a context takes it) */
	struct imap_search_index *index; /* narrowing by the store's search index, or NULL */
};

int
imap_search_return_opts(struct imap_session *s, const char *tag, const struct imap_arg *args,
                        size_t nargs, size_t *pos, struct imap_search_ret *r)
{
	const char *error;

	if (*pos >= nargs || !imap_arg_atom_equals(&args[*pos], "RETURN"))
		return 0;
	if (*pos + 1 >= nargs || args[*pos + 1].type != IMAP_ARG_LIST) {
		imap_bad(s, tag,
		         "syntax: RETURN (MIN MAX ALL COUNT CONTEXT UPDATE PARTIAL m:n) keys");
		return -1;
	}
	if (imap_context_return_parse(&args[*pos + 1], r, &error) < 0) {
		imap_bad(s, tag, error);
		return -1;
	}
	/* RFC 5267 4.3: UPDATE under a tag whose context lives SHALL be refused with BAD. */
	if ((r->bits & IMAP_SEARCH_RET_UPDATE) && imap_context_tag_in_use(s, tag)) {
		imap_bad(s, tag, "Tag reuse: an updating context has this tag");
		return -1;
	}
	*pos += 2;
	return 0;
}

/* Parses "CHARSET name" at args[*pos]. Returns 0 or -1 after replying. */
static int
search_charset(struct imap_session *s, const char *tag, const struct imap_arg *args, size_t nargs,
               size_t *pos)
{
	const char *cs;

	if (*pos >= nargs || !imap_arg_atom_equals(&args[*pos], "CHARSET"))
		return 0;
	if (*pos + 1 >= nargs || !imap_arg_get_astring(&args[*pos + 1], &cs)) {
		imap_bad(s, tag, "syntax: SEARCH CHARSET name keys");
		return -1;
	}
	if (s->utf8) {
		/* RFC 6855 3 (erratum 4029): the client MUST NOT send a charset any more. */
		imap_bad(s, tag, "SEARCH CHARSET is not allowed after ENABLE UTF8=ACCEPT");
		return -1;
	}
	if (imap_search_charset_check(s, tag, cs) < 0)
		return -1;
	*pos += 2;
	return 0;
}

int
imap_search_charset_check(struct imap_session *s, const char *tag, const char *charset)
{
	if (s->utf8 && strcasecmp(charset, "UTF-8") != 0) {
		/* RFC 6855 3 (erratum 4029): SORT and THREAD take only UTF-8 then. */
		imap_bad(s, tag, "Only the UTF-8 charset is allowed after ENABLE UTF8=ACCEPT");
		return -1;
	}
	if (strcasecmp(charset, "UTF-8") != 0 && strcasecmp(charset, "US-ASCII") != 0) {
		imap_reply(s, "%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset", tag);
		return -1;
	}
	return 0;
}

void
imap_search_msg(const struct imap_session *s, uint32_t i, struct imap_match_msg *mm)
{
	const struct imap_msg *m = &s->msgs[i];

	mm->seq = i + 1;
	mm->uid = m->uid;
	mm->flags = m->flags;
	mm->recent = m->recent;
	mm->meta = m->meta;
	mm->size = m->size;
	mm->internal_date = m->internal_date;
	mm->modseq = m->modseq;
	mm->keywords = m->keywords;
}

static void
search_job_free(struct search_job **jobp)
{
	struct search_job *job = *jobp;

	if (job == NULL)
		return;
	for (size_t i = 0; i < job->nitems; i++) {
		if (job->items[i].fd >= 0)
			close(job->items[i].fd);
		free(job->items[i].keywords);
		/* Data of a batch read but not taken (the session died meanwhile). */
		if (job->items[i].data != NULL && job->reader != NULL)
			job->reader->free_data(job->items[i].data);
	}
	for (uint32_t i = 0; job->data != NULL && i < job->nmsgs; i++)
		if (job->data[i] != NULL)
			job->reader->free_data(job->data[i]);
	if (job->reader != NULL && job->reader->free_ctx != NULL)
		job->reader->free_ctx(job->ctx);
	free(job->cmp_arg);
	imap_search_index_free(&job->index);
	free(job->data);
	free(job->items);
	free(job->match);
	imap_match_free(&job->m);
	free(job);
	*jobp = NULL;
}

/* Decides every message it can from the snapshot; the others become job->items, and so do the
 * matches when a reader wants their files. */
static struct search_job *
search_job_new(struct imap_session *s, struct imap_match *m,
               const struct imap_search_reader *reader, void *ctx)
{
	struct search_job *job = xcalloc(1, sizeof(*job));
	bool read_matches = reader != NULL && reader->read != NULL;
	struct imap_match_msg mm;
	int r;

	job->s = s;
	job->m = m;
	job->reader = reader;
	job->ctx = ctx;
	job->nmsgs = s->nmsgs;
	job->match = xcalloc(s->nmsgs + 1, sizeof(*job->match));
	if (reader != NULL)
		job->data = xcalloc(s->nmsgs + 1, sizeof(*job->data));
	imap_match_bind(m, s->nmsgs, s->nmsgs > 0 ? s->msgs[s->nmsgs - 1].uid : 0);
	for (uint32_t i = 0; i < s->nmsgs; i++) {
		struct search_item *it;

		imap_search_msg(s, i, &mm);
		r = imap_match_eval(m, &mm, NULL);
		if (r >= 0) {
			job->match[i] = r == 1;
			if (r == 0 || !read_matches)
				continue;
		}
		if (job->items == NULL)
			job->items = xcalloc(s->nmsgs - i, sizeof(*job->items));
		it = &job->items[job->nitems++];
		it->idx = i;
		it->mm = mm;
		it->keywords = mm.keywords != NULL ? xstrdup(mm.keywords) : NULL;
		it->mm.keywords = it->keywords;
		it->fd = -1;
		it->decided = r >= 0;
		it->match = r == 1;
	}
	return job;
}

/* Loop thread: opens the files of the next batch of undecided messages (the store is not
 * thread-safe). A message that cannot be opened (expunged meanwhile, the mailbox deleted) does
 * not match. */
static void
search_open_batch(struct imap_session *s, struct search_job *job)
{
	size_t opened = 0;

	job->batch_begin = job->next;
	/* With the index, batches after the first skip what it excludes (the first job queries
	 * it, then reads only the candidates of its batch). */
	for (; job->next < job->nitems && opened < SEARCH_BATCH; job->next++) {
		struct search_item *it = &job->items[job->next];

		if (s->mailbox == NULL || s->mailbox_gone ||
		    (job->index != NULL && imap_search_index_ready(job->index) && !it->decided &&
		     !imap_search_index_candidate(job->index, it->mm.uid)))
			continue;
		opened++;
		it->fd =
		    store_message_open(s->server->store, s->account_id, s->mailbox, it->mm.uid);
		if (it->fd == -1)
			log_warnx("imap session=%s event=search-open-failed uid=%u", s->conn.id,
			          it->mm.uid);
		if (it->fd < 0)
			it->fd = -1;
	}
}

/* Any thread: decides one opened message from its header, then (if still undecided) from the
 * whole message, lets the reader read a match, and closes its file. Touches only the item, the
 * (read-only) program and the reader's context. */
static void
search_read(const struct search_job *job, struct search_item *it)
{
	const struct imap_match *m = job->m;
	unsigned needs = imap_match_needs(m);
	struct imap_match_content *c = NULL;
	int r = -1;

	if (it->decided)
		goto matched;
	if ((needs & IMAP_MATCH_NEED_HEADER) != 0) {
		c = imap_match_content_from_fd(it->fd, IMAP_MATCH_NEED_HEADER);
		if (c != NULL)
			r = imap_match_eval(m, &it->mm, c);
		imap_match_content_free(&c);
	}
	if (r < 0 && (needs & IMAP_MATCH_NEED_BODY) != 0) {
		c = imap_match_content_from_fd(it->fd,
		                               IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);
		if (c != NULL)
			r = imap_match_eval(m, &it->mm, c);
		imap_match_content_free(&c);
	}
	it->match = r == 1;
matched:
	if (it->match && job->reader != NULL && job->reader->read != NULL)
		it->data = job->reader->read(it->fd, job->ctx);
	close(it->fd);
	it->fd = -1;
}

/* A worker (or the loop thread without workers): reads the batch opened last. */
static void
search_work(void *arg)
{
	struct search_job *job = arg;

	if (job->index != NULL)
		imap_search_index_run(job->index);
	for (size_t i = job->batch_begin; i < job->next; i++) {
		struct search_item *it = &job->items[i];

		if (it->fd < 0)
			continue;
		if (job->index != NULL && !it->decided &&
		    !imap_search_index_candidate(job->index, it->mm.uid)) {
			close(it->fd);
			it->fd = -1;
			continue;
		}
		job->files++;
		search_read(job, it);
	}
}

/* Loop thread: takes the answers of the batch just read. */
static void
search_take_batch(struct search_job *job)
{
	for (size_t i = job->batch_begin; i < job->next; i++) {
		struct search_item *it = &job->items[i];

		job->match[it->idx] = it->match;
		if (job->data != NULL) {
			job->data[it->idx] = it->data;
			it->data = NULL;
		}
	}
}

/* Counts the matches once every message is decided. */
static void
search_count(struct search_job *job)
{
	for (uint32_t i = 0; i < job->nmsgs; i++) {
		if (!job->match[i])
			continue;
		if (job->count++ == 0)
			job->first = i;
		job->last = i;
	}
}

static uint32_t
search_id(const struct imap_session *s, bool uid, uint32_t i)
{
	return uid ? s->msgs[i].uid : i + 1;
}

/* "* SEARCH n n n" with RFC 7162's "(MODSEQ n)" when the program used MODSEQ. */
static void
search_reply_plain(struct imap_session *s, const struct search_job *job)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	uint64_t highest = 0;

	evbuffer_add_printf(out, "* SEARCH");
	for (uint32_t i = 0; i < job->nmsgs; i++) {
		if (!job->match[i])
			continue;
		evbuffer_add_printf(out, " %u", search_id(s, job->uid, i));
		if (s->msgs[i].modseq > highest)
			highest = s->msgs[i].modseq;
	}
	if (job->modseq && job->count > 0)
		evbuffer_add_printf(out, " (MODSEQ %llu)", (unsigned long long)highest);
	evbuffer_add(out, "\r\n", 2);
}

/* "* ESEARCH (TAG "t") [UID] MIN a MAX b COUNT n ALL set|PARTIAL (m:n set) [MODSEQ m]" (RFC
 * 4731, RFC 5267 4.4; no MIN, MAX or ALL when nothing matched). */
static void
search_reply_esearch(struct imap_session *s, const char *tag, const struct search_job *job)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	unsigned ret = job->ret.bits;
	bool uid = job->uid;
	uint64_t highest = 0;
	bool any = false;
	uint32_t *ids = xcalloc(job->count + 1, sizeof(*ids));
	uint32_t *idx = xcalloc(job->count + 1, sizeof(*idx));
	size_t n = 0;

	/* The matches in mailbox order (RFC 5267 4.1: CONTEXT=SEARCH results are). */
	for (uint32_t i = 0; i < job->nmsgs; i++) {
		if (!job->match[i])
			continue;
		idx[n] = i;
		ids[n++] = search_id(s, uid, i);
	}
	evbuffer_add_printf(out, "* ESEARCH (TAG \"%s\")%s", tag, uid ? " UID" : "");
	if ((ret & IMAP_SEARCH_RET_MIN) && n > 0)
		evbuffer_add_printf(out, " MIN %u", ids[0]);
	if ((ret & IMAP_SEARCH_RET_MAX) && n > 0)
		evbuffer_add_printf(out, " MAX %u", ids[n - 1]);
	if (ret & IMAP_SEARCH_RET_COUNT)
		evbuffer_add_printf(out, " COUNT %zu", n);
	if ((ret & IMAP_SEARCH_RET_ALL) && n > 0) {
		evbuffer_add_printf(out, " ALL ");
		imap_context_write_set(out, ids, n);
	}
	if (ret & IMAP_SEARCH_RET_PARTIAL)
		imap_context_write_partial(out, &job->ret, ids, n);
	if (job->modseq && n > 0) {
		/* RFC 4731 3.2: with ALL or COUNT the highest of every match, otherwise of the
		 * messages returned (MIN, MAX, PARTIAL's). */
		for (size_t k = 0; k < n; k++) {
			bool returned = (ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT)) ||
			                ((ret & IMAP_SEARCH_RET_MIN) && k == 0) ||
			                ((ret & IMAP_SEARCH_RET_MAX) && k == n - 1) ||
			                ((ret & IMAP_SEARCH_RET_PARTIAL) && k + 1 >= job->ret.lo &&
			                 k + 1 <= job->ret.hi);

			any = any || returned;
			if (returned && s->msgs[idx[k]].modseq > highest)
				highest = s->msgs[idx[k]].modseq;
		}
		if (any)
			evbuffer_add_printf(out, " MODSEQ %llu", (unsigned long long)highest);
	}
	evbuffer_add(out, "\r\n", 2);
	free(idx);
	free(ids);
}

/* RETURN (UPDATE): keeps the search as a context, or says NOUPDATE (imap_context.h). True
 * when kept: the context then owns the reader's data of the matches. */
static bool
search_keep_context(struct imap_session *s, const char *tag, struct search_job *job)
{
	if ((job->ret.bits & IMAP_SEARCH_RET_UPDATE) == 0)
		return false;
	/* A SORT hands over its order and the data it read. */
	if (imap_context_add(s, tag, job->uid, &job->m, job->match, job->nmsgs, job->cmp,
	                     job->cmp_arg, job->reader, job->data) == 0)
		return false;
	job->cmp_arg = NULL;
	return true;
}

/* Every message is decided: the untagged answer and the tagged OK. */
static void
search_reply(struct imap_session *s, const char *tag, struct search_job *job)
{
	bool kept;

	search_count(job);
	log_debug("imap session=%s event=search messages=%u matched=%u files=%u", s->conn.id,
	          job->nmsgs, job->count, job->files);
	kept = search_keep_context(s, tag, job);
	if (job->reader != NULL) {
		job->reader->reply(s, tag, job->nmsgs, job->match, job->data, job->ctx);
		for (uint32_t i = 0; kept && job->data != NULL && i < job->nmsgs; i++)
			if (job->match[i])
				job->data[i] = NULL; /* the context's now */
		return;
	}
	if (job->ret.esearch)
		search_reply_esearch(s, tag, job);
	else
		search_reply_plain(s, job);
	imap_reply(s, "%s OK %sSEARCH completed", tag, job->uid ? "UID " : "");
}

static void search_done(void *arg);

/* Opens the next batch and hands it to a worker; search_done comes back on the loop thread. */
static void
search_submit(struct imap_session *s, struct search_job *job)
{
	search_open_batch(s, job);
	s->update_pending++;
	workers_submit(s->server->workers, search_work, search_done, job);
}

/* Loop thread: a batch was read. The session waited in WAIT meanwhile: no command ran and
 * notify events only queued, so the snapshot is the one the search began with; unless the
 * connection died, which freed the snapshot (only the job is left to free). */
static void
search_done(void *arg)
{
	struct search_job *job = arg;
	struct imap_session *s = job->s;

	s->update_pending--;
	if (s->conn.dead) {
		log_debug("imap session=%s event=search result=abandoned read=%zu of=%zu",
		          s->conn.id, job->next, job->nitems);
		search_job_free(&job);
		if (s->update_pending == 0)
			imap_session_free(s);
		return;
	}
	search_take_batch(job);
	if (job->next < job->nitems) {
		search_submit(s, job);
		return;
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	if (s->nmsgs != job->nmsgs) {
		/* Impossible while in WAIT; answer rather than send numbers that are wrong. */
		log_warnx("imap session=%s event=search-snapshot-changed messages=%u was=%u",
		          s->conn.id, s->nmsgs, job->nmsgs);
		imap_reply(s, "%s NO [UNAVAILABLE] The mailbox changed; search again", s->tag);
	} else {
		search_reply(s, s->tag, job);
	}
	search_job_free(&job);
	netconn_run(&s->conn);
}

/* Runs the search program args[pos..] for SEARCH, or for a reader (SORT, THREAD). Replies. */
static void
search_run(struct imap_session *s, const struct imap_command *cmd, size_t pos,
           const struct imap_search_ret *ret, const struct imap_search_reader *reader, void *ctx,
           imap_context_cmp_fn *cmp, void *cmp_arg)
{
	enum imap_match_error kind;
	struct search_job *job;
	struct imap_match *m;
	char error[160];

	if (pos >= cmd->nargs) {
		imap_bad(s, cmd->tag, "syntax: missing search keys");
		goto fail;
	}
	if (imap_match_parse(cmd->args + pos, cmd->nargs - pos, &m, &kind, error, sizeof(error)) <
	    0) {
		if (kind == IMAP_MATCH_ERR_LIMIT) {
			imap_reply(s, "%s BAD [LIMIT] %s", cmd->tag, error);
			imap_error(s);
		} else {
			imap_bad(s, cmd->tag, error);
		}
		goto fail;
	}
	if (((imap_match_needs(m) & IMAP_MATCH_NEED_META) || reader != NULL) &&
	    imap_mailbox_load_meta(s) < 0) {
		imap_match_free(&m);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot read the mailbox; try again later",
		           cmd->tag);
		goto fail;
	}
	/* RFC 7162 3.1: SEARCH with the MODSEQ key is a CONDSTORE enabling command. */
	if (imap_match_needs(m) & IMAP_MATCH_NEED_MODSEQ)
		imap_condstore_enable(s);
	job = search_job_new(s, m, reader, ctx);
	if (job->nitems > 0)
		job->index = imap_search_index_new(s, m);
	job->uid = cmd->uid;
	if (ret != NULL)
		job->ret = *ret;
	job->cmp = cmp;
	job->cmp_arg = cmp_arg;
	cmp_arg = NULL;
	job->modseq = (imap_match_needs(m) & IMAP_MATCH_NEED_MODSEQ) != 0;
	if (job->nitems > 0 && s->server->workers != NULL) {
		/* The files are read on the workers; the session waits (SEARCH sends no EXPUNGE,
		 * RFC 3501 7.4.1: whatever arrives meanwhile stays queued). */
		imap_set_tag(s, cmd->tag);
		imap_enter_state(s, IMAP_STATE_WAIT);
		search_submit(s, job);
		return;
	}
	/* Without workers (tools, tests) the files are read here. */
	while (job->next < job->nitems) {
		search_open_batch(s, job);
		search_work(job);
		search_take_batch(job);
	}
	search_reply(s, cmd->tag, job);
	search_job_free(&job);
	return;
fail:
	free(cmp_arg);
	if (reader != NULL && reader->free_ctx != NULL)
		reader->free_ctx(ctx);
}

void
imap_search_run(struct imap_session *s, const struct imap_command *cmd, size_t pos,
                const struct imap_search_reader *reader, void *ctx)
{
	search_run(s, cmd, pos, NULL, reader, ctx, NULL, NULL);
}

void
imap_search_run_ret(struct imap_session *s, const struct imap_command *cmd, size_t pos,
                    const struct imap_search_ret *ret, const struct imap_search_reader *reader,
                    void *ctx, imap_context_cmp_fn *cmp, void *cmp_arg)
{
	search_run(s, cmd, pos, ret, reader, ctx, cmp, cmp_arg);
}

void
imap_cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_search_ret ret = {0};
	size_t pos = 0;

	/* The flush before the command may have said BYE (the mailbox was deleted). */
	if (s->conn.closing)
		return;
	if (imap_search_return_opts(s, cmd->tag, cmd->args, cmd->nargs, &pos, &ret) < 0 ||
	    search_charset(s, cmd->tag, cmd->args, cmd->nargs, &pos) < 0)
		return;
	if (pos >= cmd->nargs) {
		imap_bad(s, cmd->tag, "syntax: SEARCH [RETURN (...)] [CHARSET name] keys");
		return;
	}
	search_run(s, cmd, pos, &ret, NULL, NULL, NULL, NULL);
}
