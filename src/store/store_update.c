/* store_update: changes to existing messages, all on the store's writer connection: flag and
 * keyword changes (with CONDSTORE's UNCHANGEDSINCE), expunges, COPY and MOVE; and the keyword
 * lists they use. */
#include "store/store_private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"

/* --- keywords --- */

/* IMAP atom-char (RFC 3501 9) minus '\\': printable ASCII except atom-specials. */
static bool
store_keyword_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

/* Checks the keyword at p (len bytes). 0 or -1 with error. */
static int
store_keyword_check(const char *p, size_t len, char *error, size_t errsize)
{
	if (len > STORE_KEYWORD_MAX) {
		snprintf(error, errsize, "keyword longer than %d bytes", STORE_KEYWORD_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!store_keyword_char((unsigned char)p[i])) {
			snprintf(error, errsize, "invalid character in keyword");
			return -1;
		}
	}
	return 0;
}

/* Finds the keyword (len bytes, case-insensitively) in the normalized list kw: its offset, or
 * -1. */
static ssize_t
store_keyword_find(const char *kw, const char *p, size_t len)
{
	const char *s = kw;

	while (*s != '\0') {
		const char *e = strchr(s, ' ');
		size_t n = e != NULL ? (size_t)(e - s) : strlen(s);

		if (n == len && strncasecmp(s, p, len) == 0)
			return s - kw;
		s += n;
		if (*s == ' ')
			s++;
	}
	return -1;
}

/* Adds one keyword to kw unless there (the first case given is kept). 0 or -1 with error. */
static int
store_keyword_add(char *kw, const char *p, size_t len, char *error, size_t errsize)
{
	size_t have = strlen(kw);

	if (store_keyword_find(kw, p, len) >= 0)
		return 0;
	if (have + (have > 0) + len + 1 > STORE_KEYWORDS_MAX) {
		snprintf(error, errsize, "too many keywords (at most %d bytes)",
		         STORE_KEYWORDS_MAX - 1);
		return -1;
	}
	if (have > 0)
		kw[have++] = ' ';
	memcpy(kw + have, p, len);
	kw[have + len] = '\0';
	return 0;
}

/* Removes one keyword from kw if there. */
static void
store_keyword_remove(char *kw, const char *p, size_t len)
{
	ssize_t off = store_keyword_find(kw, p, len);
	char *s, *end;

	if (off < 0)
		return;
	s = kw + off;
	end = s + len;
	if (*end == ' ')
		end++;
	else if (s > kw)
		s--; /* the last one: drop the space before it */
	memmove(s, end, strlen(end) + 1);
}

/* Calls fn for each keyword of a space-separated list (runs of spaces allowed); stops at the
 * first error. 0 or -1. */
static int
store_keywords_each(const char *list,
                    int (*fn)(char *kw, const char *p, size_t len, char *error, size_t errsize),
                    char *kw, char *error, size_t errsize)
{
	const char *p = list != NULL ? list : "";

	for (;;) {
		size_t len;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 0;
		len = strcspn(p, " ");
		if (store_keyword_check(p, len, error, errsize) < 0 ||
		    fn(kw, p, len, error, errsize) < 0)
			return -1;
		p += len;
	}
}

static int
store_keyword_remove_cb(char *kw, const char *p, size_t len, char *error, size_t errsize)
{
	(void)error;
	(void)errsize;
	store_keyword_remove(kw, p, len);
	return 0;
}

int
store_keywords_normalize(const char *list, char *out, char *error, size_t errsize)
{
	out[0] = '\0';
	if (store_keywords_each(list, store_keyword_add, out, error, errsize) < 0) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

int
store_keywords_apply(char *kw, const char *replace, const char *add, const char *remove,
                     char *error, size_t errsize)
{
	char next[STORE_KEYWORDS_MAX];

	if (replace != NULL) {
		if (store_keywords_normalize(replace, next, error, errsize) < 0)
			return -1;
	} else {
		str_copy(next, kw, sizeof(next));
	}
	if (store_keywords_each(add, store_keyword_add, next, error, errsize) < 0 ||
	    store_keywords_each(remove, store_keyword_remove_cb, next, error, errsize) < 0)
		return -1;
	memcpy(kw, next, strlen(next) + 1);
	return 0;
}

/* Whether two normalized keyword lists hold the same set. */
static bool
store_keywords_equal(const char *a, const char *b)
{
	size_t na = 0, nb = 0;
	const char *p;

	for (p = a; *p != '\0'; p++)
		na += *p == ' ';
	for (p = b; *p != '\0'; p++)
		nb += *p == ' ';
	if ((*a == '\0') != (*b == '\0') || na != nb)
		return false;
	for (p = a; *p != '\0';) {
		size_t len = strcspn(p, " ");

		if (store_keyword_find(b, p, len) < 0)
			return false;
		p += len;
		if (*p == ' ')
			p++;
	}
	return true;
}

/* --- updates and copies: one queue, one writer --- */

enum store_update_kind {
	STORE_UPDATE_CHANGE, /* flags, keywords, expunges */
	STORE_UPDATE_COPY,   /* COPY or MOVE */
};

/* An update waiting for (or run by) the writer; owns copies of everything the caller gave. */
struct store_update {
	enum store_update_kind kind;
	struct store *store;
	int64_t account_id;
	char *mailbox; /* the mailbox changed, or the source of a copy */
	char *dst;     /* copy: the destination */
	bool move;
	struct store_flag_change *changes; /* keyword strings owned */
	size_t nchanges;
	uint32_t *uids; /* expunge, or the copy's sources */
	size_t nuids;
	/* Files: the expunged rows' (unlinked after the commit), or the links a copy made
	 * (unlinked when its transaction fails). Relative to the data dir. */
	char **paths;
	size_t npaths;
	bool fsync_dir; /* a copy made links in mail/<account_id> */

	int result; /* 1 done, 0 no such mailbox, -1 error */
	char error[256];
	/* change results */
	uint64_t highestmodseq;
	struct store_changed *changed;
	size_t nchanged, changed_cap;
	uint32_t *modified;
	size_t nmodified, modified_cap;
	uint32_t *missing; /* changes whose row is gone (expunged by someone else) */
	size_t nmissing, missing_cap;
	uint32_t *expunged;
	size_t nexpunged;
	/* copy results */
	int64_t dst_id;
	uint32_t dst_uidvalidity;
	uint64_t dst_modseq;
	uint32_t *dst_uids;   /* same order as uids (sorted ascending, only those copied) */
	uint32_t *copy_flags; /* the copies' flags and keywords as committed, same order */
	char **copy_keywords;
	size_t ncopied;
	size_t copy_missing; /* listed UIDs that no longer exist (then nothing is copied) */

	store_update_cb *cb;
	store_update_result_cb *rcb;
	store_copy_cb *ccb;
	void *arg;
	struct store_update *next;
};

struct store_update **
store_update_nextp(struct store_update *u)
{
	return &u->next;
}

static char *
store_strdup_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static int
store_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts uids ascending and drops duplicates; returns the new count. */
static size_t
store_uids_sort(uint32_t *uids, size_t n)
{
	size_t o = 0;

	if (n == 0)
		return 0;
	qsort(uids, n, sizeof(*uids), store_uid_cmp);
	for (size_t i = 1; i < n; i++) {
		if (uids[i] != uids[o])
			uids[++o] = uids[i];
	}
	return o + 1;
}

static struct store_update *
store_update_new(struct store *store, enum store_update_kind kind, int64_t account_id,
                 const char *mailbox, const uint32_t *uids, size_t nuids)
{
	struct store_update *u = xcalloc(1, sizeof(*u));

	u->kind = kind;
	u->store = store;
	u->account_id = account_id;
	u->mailbox = xstrdup(store_mailbox_name(mailbox != NULL ? mailbox : "INBOX"));
	u->uids = xcalloc(nuids > 0 ? nuids : 1, sizeof(*u->uids));
	if (nuids > 0)
		memcpy(u->uids, uids, nuids * sizeof(*uids));
	u->nuids = nuids;
	u->result = 1;
	return u;
}

/* Forgets the files (after unlinking them, or when there is nothing to unlink). */
static void
store_update_clear_paths(struct store_update *u)
{
	for (size_t i = 0; i < u->npaths; i++)
		free(u->paths[i]);
	free(u->paths);
	u->paths = NULL;
	u->npaths = 0;
}

static void
store_update_add_path(struct store_update *u, const char *path)
{
	/* Grows by doubling: the capacity is the next power of two at or above npaths. */
	if ((u->npaths & (u->npaths - 1)) == 0)
		u->paths = xrealloc(u->paths, (u->npaths ? u->npaths * 2 : 1) * sizeof(*u->paths));
	u->paths[u->npaths++] = xstrdup(path);
}

/* Frees the keyword strings of n changed entries (not the array). */
static void
store_changed_free_kw(struct store_changed *changed, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (changed[i].keywords != NULL && changed[i].keywords[0] != '\0')
			free((char *)changed[i].keywords);
		changed[i].keywords = "";
	}
}

static void
store_update_free(struct store_update *u)
{
	store_update_clear_paths(u);
	for (size_t i = 0; i < u->nchanges; i++) {
		free((char *)u->changes[i].kw_replace);
		free((char *)u->changes[i].kw_add);
		free((char *)u->changes[i].kw_remove);
	}
	free(u->changes);
	free(u->mailbox);
	free(u->dst);
	free(u->uids);
	if (u->changed != NULL)
		store_changed_free_kw(u->changed, u->nchanged);
	free(u->changed);
	free(u->modified);
	free(u->missing);
	if (u->copy_keywords != NULL)
		for (size_t i = 0; i < u->ncopied; i++)
			free(u->copy_keywords[i]);
	free(u->copy_keywords);
	free(u->copy_flags);
	free(u->expunged);
	free(u->dst_uids);
	free(u);
}

/* Marks an update failed (result -1, or 0 for "no such mailbox"); the first reason wins. */
static void store_update_fail(struct store_update *u, int result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
store_update_fail(struct store_update *u, int result, const char *fmt, ...)
{
	va_list ap;

	if (u->result != 1)
		return;
	u->result = result;
	va_start(ap, fmt);
	vsnprintf(u->error, sizeof(u->error), fmt, ap);
	va_end(ap);
}

/* Finds a mailbox inside the transaction. 1 found, 0 none (the update fails with result 0 and
 * "no such mailbox"), -1 error. */
static int
store_update_find(struct store_update *u, struct store_writer *w, const char *name, int64_t *id_r,
                  uint64_t *modseq_r, uint32_t *uidvalidity_r)
{
	sqlite3_stmt *st = w->mailbox_find;
	int rc;

	sqlite3_bind_int64(st, 1, u->account_id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id_r = sqlite3_column_int64(st, 0);
		*modseq_r = (uint64_t)sqlite3_column_int64(st, 1);
		*uidvalidity_r = (uint32_t)sqlite3_column_int64(st, 2);
	} else if (rc == SQLITE_DONE) {
		store_update_fail(u, 0, "no such mailbox");
	} else {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Stores a mailbox's new HIGHESTMODSEQ. 0 or -1. */
static int
store_update_set_modseq(struct store_update *u, struct store_writer *w, int64_t mailbox_id,
                        uint64_t modseq)
{
	sqlite3_stmt *st = w->modseq_set;
	int rc;

	sqlite3_bind_int64(st, 1, mailbox_id);
	sqlite3_bind_int64(st, 2, (int64_t)modseq);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
}

static void
store_uids_push(uint32_t **uids, size_t *n, size_t *cap, uint32_t uid)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*uids = xrealloc(*uids, *cap * sizeof(**uids));
	}
	(*uids)[(*n)++] = uid;
}

/* Applies one flag/keyword change to its row with MODSEQ modseq (the update's one new value).
 * 0 (applied, unchanged, skipped or reported in modified) or -1. */
static int
store_update_change_one(struct store_update *u, struct store_writer *w, int64_t mailbox_id,
                        const struct store_flag_change *c, uint64_t modseq)
{
	sqlite3_stmt *st = w->message_get;
	char kw[STORE_KEYWORDS_MAX], next[STORE_KEYWORDS_MAX];
	uint32_t flags, nflags;
	uint64_t row_modseq;
	struct store_changed *ch;
	int rc;

	sqlite3_bind_int64(st, 1, mailbox_id);
	sqlite3_bind_int64(st, 2, c->uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		flags = (uint32_t)sqlite3_column_int64(st, 0);
		store_column_text(st, 1, kw, sizeof(kw));
		row_modseq = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE) {
		/* Expunged meanwhile: skipped, and said (IMAP answers NO, RFC 2180 4.2). */
		store_uids_push(&u->missing, &u->nmissing, &u->missing_cap, c->uid);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	/* RFC 7162 3.1.3; a row this very update changed already (a UID given twice) has the new
	 * value and is not "modified since". */
	if (c->unchangedsince != 0 && row_modseq > c->unchangedsince && row_modseq != modseq) {
		store_uids_push(&u->modified, &u->nmodified, &u->modified_cap, c->uid);
		return 0;
	}
	nflags = (flags | c->add) & ~c->remove;
	str_copy(next, kw, sizeof(next));
	if (store_keywords_apply(next, c->kw_replace, c->kw_add, c->kw_remove, u->error,
	                         sizeof(u->error)) < 0) {
		char reason[200];

		str_copy(reason, u->error, sizeof(reason));
		u->error[0] = '\0';
		store_update_fail(u, -1, "uid %u: %s", c->uid, reason);
		return -1;
	}
	if (nflags == flags && store_keywords_equal(next, kw))
		return 0;
	st = w->message_set;
	sqlite3_bind_int64(st, 1, mailbox_id);
	sqlite3_bind_int64(st, 2, c->uid);
	sqlite3_bind_int64(st, 3, nflags);
	sqlite3_bind_text(st, 4, next, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)modseq);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	/* Doubling: a STORE over a whole mailbox changes many rows. */
	if (u->nchanged == u->changed_cap) {
		u->changed_cap = u->changed_cap ? u->changed_cap * 2 : 16;
		u->changed = xrealloc(u->changed, u->changed_cap * sizeof(*u->changed));
	}
	ch = &u->changed[u->nchanged++];
	ch->uid = c->uid;
	ch->flags = nflags;
	ch->modseq = modseq;
	/* Most messages have no keywords: only the others cost an allocation (a STORE over a
	 * mailbox of 100,000 messages must not hold 100 MB of empty strings). */
	ch->keywords = next[0] != '\0' ? xstrdup(next) : "";
	return 0;
}

/* Deletes the expunged rows, keeping their UIDs and paths. 0 or -1. */
static int
store_update_expunge(struct store_update *u, struct store_writer *w, int64_t mailbox_id)
{
	sqlite3_stmt *st = w->message_expunge;
	int rc = SQLITE_DONE;

	u->expunged = xcalloc(u->nuids > 0 ? u->nuids : 1, sizeof(*u->expunged));
	for (size_t i = 0; i < u->nuids && rc == SQLITE_DONE; i++) {
		sqlite3_bind_int64(st, 1, mailbox_id);
		sqlite3_bind_int64(st, 2, u->uids[i]);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			store_update_add_path(u, (const char *)sqlite3_column_text(st, 0));
			u->expunged[u->nexpunged++] = u->uids[i];
		}
		sqlite3_reset(st);
	}
	if (rc != SQLITE_DONE) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
}

/* Orders indices into the changed array (arg) by (uid, position). */
static int
store_changed_idx_cmp(const void *a, const void *b, void *arg)
{
	const struct store_changed *changed = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	uint32_t ux = changed[x].uid, uy = changed[y].uid;

	if (ux != uy)
		return ux < uy ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* Puts the results in the contract's shape: changed in UID order, one entry per UID (its last
 * state: a UID may be given twice) and none for a UID expunged by the same update; modified
 * ascending and unique. */
static void
store_update_tidy(struct store_update *u)
{
	struct store_changed *out;
	size_t *idx, o = 0;

	if (u->nchanged > 0) {
		idx = xcalloc(u->nchanged, sizeof(*idx));
		out = xcalloc(u->nchanged, sizeof(*out));
		for (size_t i = 0; i < u->nchanged; i++)
			idx[i] = i;
		qsort_r(idx, u->nchanged, sizeof(*idx), store_changed_idx_cmp, u->changed);
		for (size_t i = 0; i < u->nchanged; i++) {
			const struct store_changed *c = &u->changed[idx[i]];

			if ((i + 1 < u->nchanged && u->changed[idx[i + 1]].uid == c->uid) ||
			    bsearch(&c->uid, u->expunged, u->nexpunged, sizeof(uint32_t),
			            store_uid_cmp) != NULL) {
				/* A later change of the same UID follows, or it is expunged. */
				store_changed_free_kw(&u->changed[idx[i]], 1);
				continue;
			}
			out[o++] = *c;
		}
		free(idx);
		free(u->changed);
		u->changed = out;
		u->nchanged = o;
		u->changed_cap = o;
	}
	u->nmodified = store_uids_sort(u->modified, u->nmodified);
	u->nmissing = store_uids_sort(u->missing, u->nmissing);
}

/* Runs a flag/keyword change and expunge inside the caller's savepoint: one new MODSEQ for every
 * row it changes and for the expunges. */
static void
store_update_change(struct store_update *u, struct store_writer *w)
{
	uint64_t modseq = 0;
	uint32_t uidvalidity;
	int64_t mailbox_id = 0;

	if (store_update_find(u, w, u->mailbox, &mailbox_id, &modseq, &uidvalidity) <= 0)
		return;
	u->highestmodseq = modseq;
	/* Expunged UIDs ascending, each once (the DELETE finds a row only once anyway). */
	u->nuids = store_uids_sort(u->uids, u->nuids);
	for (size_t i = 0; i < u->nchanges; i++) {
		if (store_update_change_one(u, w, mailbox_id, &u->changes[i], modseq + 1) < 0)
			return;
	}
	if (store_update_expunge(u, w, mailbox_id) < 0)
		return;
	if (u->nchanged > 0 || u->nexpunged > 0) {
		if (store_update_set_modseq(u, w, mailbox_id, modseq + 1) < 0)
			return;
		u->highestmodseq = modseq + 1;
	}
	store_update_tidy(u);
}

/* Makes the copy's new name for a source file: a hard link in the account's directory. 0 or -1
 * with errno. */
static int
store_copy_link(struct store_update *u, const char *src_path, char *path, size_t pathsize)
{
	char name[64], from[PATH_MAX], to[PATH_MAX];

	store_unique_name(name, sizeof(name));
	snprintf(path, pathsize, "mail/%lld/%s.eml", (long long)u->account_id, name);
	snprintf(from, sizeof(from), "%s/%s", u->store->dir, src_path);
	snprintf(to, sizeof(to), "%s/%s", u->store->dir, path);
	if (link(from, to) < 0)
		return -1;
	store_update_add_path(u, path);
	u->fsync_dir = true;
	return 0;
}

/* Gives one source row its place in dst: a new row on a new link (copy), or the same row moved
 * (move). 0 or -1. */
static int
store_copy_one(struct store_update *u, struct store_writer *w, int64_t id, const char *src_path,
               uint32_t uid, uint64_t modseq)
{
	char path[160];
	sqlite3_stmt *st;
	int rc;

	if (u->move) {
		st = w->move_row;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, u->dst_id);
		sqlite3_bind_int64(st, 3, uid);
		sqlite3_bind_int64(st, 4, (int64_t)modseq);
	} else {
		if (store_copy_link(u, src_path, path, sizeof(path)) < 0) {
			store_update_fail(u, -1, "link %s: %s", src_path, strerror(errno));
			log_warn("store event=copy-link file=%s", src_path);
			return -1;
		}
		st = w->copy_insert;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, u->dst_id);
		sqlite3_bind_int64(st, 3, uid);
		sqlite3_bind_int64(st, 4, (int64_t)modseq);
		sqlite3_bind_text(st, 5, path, -1, SQLITE_TRANSIENT);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	/* A copy is searched like its source: it gets the source's index rows. */
	if (rc == SQLITE_DONE && !u->move &&
	    store_search_copy(w, id, sqlite3_last_insert_rowid(w->db)) < 0)
		rc = SQLITE_ERROR;
	if (rc != SQLITE_DONE) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
}

/* The flags and keywords a copy gets (the source row's, in this transaction): the copying
 * session's snapshot may be older, and what is published must be what was committed. Returns
 * SQLITE_ROW, or another code on error. */
static int
store_copy_source_flags(struct store_writer *w, int64_t src_id, uint32_t uid, uint32_t *flags_r,
                        char **keywords_r)
{
	sqlite3_stmt *st = w->message_get;
	int rc;

	sqlite3_bind_int64(st, 1, src_id);
	sqlite3_bind_int64(st, 2, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*flags_r = (uint32_t)sqlite3_column_int64(st, 0);
		*keywords_r = xstrdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	return rc;
}

/* Finds the source rows still there (uids sorted, kept in u->uids); their ids and paths in
 * *ids_r / *paths_r. 0 or -1. */
static int
store_copy_sources(struct store_update *u, struct store_writer *w, int64_t src_id, int64_t **ids_r,
                   char ***paths_r)
{
	sqlite3_stmt *st = w->copy_source;
	int64_t *ids = xcalloc(u->nuids > 0 ? u->nuids : 1, sizeof(*ids));
	char **paths = xcalloc(u->nuids > 0 ? u->nuids : 1, sizeof(*paths));
	size_t n = 0;
	int rc = SQLITE_DONE;

	u->nuids = store_uids_sort(u->uids, u->nuids);
	u->copy_flags = xcalloc(u->nuids > 0 ? u->nuids : 1, sizeof(*u->copy_flags));
	u->copy_keywords = xcalloc(u->nuids > 0 ? u->nuids : 1, sizeof(*u->copy_keywords));
	for (size_t i = 0; i < u->nuids; i++) {
		sqlite3_bind_int64(st, 1, src_id);
		sqlite3_bind_int64(st, 2, u->uids[i]);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			ids[n] = sqlite3_column_int64(st, 0);
			paths[n] = xstrdup((const char *)sqlite3_column_text(st, 1));
			u->uids[n++] = u->uids[i]; /* n <= i: compacts in place */
		}
		sqlite3_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			break;
		if (rc == SQLITE_ROW)
			rc = store_copy_source_flags(w, src_id, u->uids[n - 1],
			                             &u->copy_flags[n - 1],
			                             &u->copy_keywords[n - 1]);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			break;
	}
	u->ncopied = n;
	*ids_r = ids;
	*paths_r = paths;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
}

/* Runs a COPY or MOVE inside the caller's savepoint. The new UIDs come from one bump of dst's
 * UIDNEXT and share one new MODSEQ.
 *
 * Crash safety: a copy links its files (new names, same inodes) before its rows exist, and the
 * group fsyncs the directory before COMMIT. A crash before the commit leaves links no row points
 * to (disk only, never visible: the same window as a delivery's); a crash after it leaves rows
 * whose names are durable. A move only rewrites rows, so it is all or nothing. */
static void
store_update_copy(struct store_update *u, struct store_writer *w)
{
	sqlite3_stmt *st = w->mailbox_bump;
	int64_t src_id = 0, *ids = NULL, first = 0;
	uint64_t src_modseq = 0, dst_modseq = 0;
	uint32_t src_uidvalidity;
	char **paths = NULL;
	int rc;

	if (store_update_find(u, w, u->mailbox, &src_id, &src_modseq, &src_uidvalidity) <= 0 ||
	    store_update_find(u, w, u->dst, &u->dst_id, &dst_modseq, &u->dst_uidvalidity) <= 0)
		return;
	u->dst_modseq = dst_modseq;
	if (store_copy_sources(u, w, src_id, &ids, &paths) < 0)
		goto out;
	if (u->ncopied < u->nuids) {
		/* Some are gone: the copy is all or nothing (IMAP COPY, RFC 3501 6.4.7). */
		u->copy_missing = u->nuids - u->ncopied;
		for (size_t i = 0; i < u->ncopied; i++) {
			free(u->copy_keywords[i]);
			u->copy_keywords[i] = NULL;
		}
		u->ncopied = 0;
	}
	if (u->ncopied == 0)
		goto out;
	sqlite3_bind_int64(st, 1, u->dst_id);
	sqlite3_bind_int64(st, 2, (int64_t)u->ncopied);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		first = sqlite3_column_int64(st, 0);
		u->dst_modseq = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW) {
		store_update_fail(u, -1, "sqlite: %s", sqlite3_errmsg(w->db));
		goto out;
	}
	if (first <= 0 || first + (int64_t)u->ncopied - 1 > (int64_t)UINT32_MAX - 1) {
		store_update_fail(u, -1, "mailbox %s has run out of UIDs", u->dst);
		goto out;
	}
	u->dst_uids = xcalloc(u->ncopied, sizeof(*u->dst_uids));
	for (size_t i = 0; i < u->ncopied; i++) {
		u->dst_uids[i] = (uint32_t)(first + (int64_t)i);
		if (store_copy_one(u, w, ids[i], paths[i], u->dst_uids[i], u->dst_modseq) < 0)
			goto out;
	}
	/* The moved rows are expunged from src: its HIGHESTMODSEQ moves on (RFC 7162 3.2.10). When
	 * src is dst the bump above did that already. */
	if (u->move && src_id != u->dst_id)
		store_update_set_modseq(u, w, src_id, src_modseq + 1);
out:
	for (size_t i = 0; paths != NULL && i < u->nuids; i++)
		free(paths[i]);
	free(paths);
	free(ids);
}

/* Unlinks u's files: an ok change's expunged rows (only after the commit, so a crash can leave
 * an orphan file but never a row without its file; each row has its own name), or a failed
 * copy's new links (nothing points to them). */
static void
store_update_unlink(struct store_update *u)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < u->npaths; i++) {
		snprintf(path, sizeof(path), "%s/%s", u->store->dir, u->paths[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("store event=update-unlink file=%s", path);
	}
	store_update_clear_paths(u);
}

/* Runs u's callback and frees it (on the loop thread). */
static void
store_update_done(void *arg)
{
	struct store_update *u = arg;
	bool ok = u->result == 1;
	const char *error = ok ? "" : u->error;

	if (u->cb != NULL) {
		u->cb(ok, error, u->arg);
	} else if (u->rcb != NULL) {
		struct store_update_result r = {
		    .highestmodseq = u->highestmodseq,
		    .changed = u->changed,
		    .nchanged = u->nchanged,
		    .modified = u->modified,
		    .nmodified = u->nmodified,
		    .expunged = u->expunged,
		    .nexpunged = u->nexpunged,
		    .missing = u->missing,
		    .nmissing = u->nmissing,
		};
		/* A missing mailbox is an error for an update (result 0 is a copy's TRYCREATE). */
		u->rcb(ok, error, ok ? &r : NULL, u->arg);
	} else if (u->ccb != NULL) {
		struct store_copy_result r = {
		    .dst_mailbox_id = u->dst_id,
		    .dst_uidvalidity = u->dst_uidvalidity,
		    .src_uids = u->uids,
		    .dst_uids = u->dst_uids,
		    .n = u->ncopied,
		    .missing = u->copy_missing,
		    .dst_modseq = u->dst_modseq,
		    .flags = u->copy_flags,
		    .keywords = (const char *const *)u->copy_keywords,
		};
		u->ccb(u->result, error, ok ? &r : NULL, u->arg);
	}
	store_update_free(u);
}

static const char *
store_update_kind_name(const struct store_update *u)
{
	if (u->kind == STORE_UPDATE_CHANGE)
		return "change";
	return u->move ? "move" : "copy";
}

/* Marks every update of the group failed after a transaction-wide error. */
static void
store_update_fail_all(struct store_update **group, size_t n, const char *error)
{
	for (size_t i = 0; i < n; i++)
		store_update_fail(group[i], -1, "%s", error);
}

/* Fsyncs the directories the group's copies linked into, before the commit: a row never
 * commits before its file's name is durable. 0 or -1. */
static int
store_update_fsync(struct store *store, struct store_update **group, size_t n)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		if (group[i]->result != 1 || !group[i]->fsync_dir)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = group[j]->result == 1 && group[j]->fsync_dir &&
			       group[j]->account_id == group[i]->account_id;
		if (seen)
			continue;
		snprintf(path, sizeof(path), "%s/mail/%lld", store->dir,
		         (long long)group[i]->account_id);
		if (fsync_dir(path) < 0) {
			log_warn("store event=fsync-dir dir=%s", path);
			return -1;
		}
	}
	return 0;
}

size_t
store_update_run_list(struct store *store, struct store_writer *w, struct store_update *list)
{
	struct store_update **group = NULL;
	size_t n = 0, ok = 0;
	char error[256];

	for (struct store_update *u = list; u != NULL; u = u->next) {
		group = xrealloc(group, (n + 1) * sizeof(*group));
		group[n++] = u;
	}
	if (store_exec(w->db, "BEGIN IMMEDIATE", error, sizeof(error)) < 0) {
		store_update_fail_all(group, n, error);
	} else {
		for (size_t i = 0; i < n; i++) {
			struct store_update *u = group[i];

			if (store_exec(w->db, "SAVEPOINT upd", u->error, sizeof(u->error)) < 0) {
				store_update_fail(u, -1, "savepoint failed");
				continue;
			}
			if (u->kind == STORE_UPDATE_CHANGE)
				store_update_change(u, w);
			else
				store_update_copy(u, w);
			if (u->result != 1)
				sqlite3_exec(w->db, "ROLLBACK TO upd", NULL, NULL, NULL);
			sqlite3_exec(w->db, "RELEASE upd", NULL, NULL, NULL);
			/* Some errors (disk full, I/O) roll the whole transaction back. */
			if (sqlite3_get_autocommit(w->db)) {
				store_update_fail_all(group, n, "transaction aborted");
				break;
			}
		}
		if (!sqlite3_get_autocommit(w->db)) {
			if (store_update_fsync(store, group, n) < 0) {
				sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
				store_update_fail_all(group, n, "fsync of a mail directory failed");
			} else if (store_exec(w->db, "COMMIT", error, sizeof(error)) < 0) {
				sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
				store_update_fail_all(group, n, error);
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct store_update *u = group[i];
		char name[128]; /* a client's mailbox name: escaped for the log */

		if (u->result == 1) {
			ok++;
			/* An update's expunged files go; a copy's links now belong to rows. */
			if (u->kind == STORE_UPDATE_CHANGE)
				store_update_unlink(u);
			else
				store_update_clear_paths(u);
		} else {
			/* A copy's links have no row; an update's rows are still there. */
			if (u->kind == STORE_UPDATE_COPY)
				store_update_unlink(u);
			else
				store_update_clear_paths(u);
			if (u->result < 0)
				log_warnx(
				    "store event=update-failed account=%lld mailbox=\"%s\" "
				    "error=\"%s\"",
				    (long long)u->account_id,
				    log_escape(name, sizeof(name), u->mailbox, strlen(u->mailbox)),
				    u->error);
		}
		if (log_enabled(LOG_DEBUG))
			log_debug("store event=update kind=%s account=%lld result=%d changed=%zu "
			          "expunged=%zu copied=%zu modseq=%llu",
			          store_update_kind_name(u), (long long)u->account_id, u->result,
			          u->nchanged, u->nexpunged, u->ncopied,
			          (unsigned long long)u->highestmodseq);
	}
	if (log_enabled(LOG_DEBUG))
		log_debug("store event=update-group updates=%zu ok=%zu", n, ok);
	/* Each u belongs to the loop thread once posted. */
	for (size_t i = 0; i < n; i++) {
		if (store->pipeline != NULL)
			workers_post(store->workers, store_update_done, group[i]);
		else
			store_update_done(group[i]);
	}
	free(group);
	return n;
}

/* Runs u on the writer: queued to the committer, or at once on the store's connection. */
static void
store_update_submit(struct store *store, struct store_update *u)
{
	struct store_writer *w;
	char error[256];

	if (store->pipeline != NULL) {
		store_pipeline_push_update(store, u);
		return;
	}
	w = store_sync_writer(store, error, sizeof(error));
	if (w == NULL) {
		store_update_fail(u, -1, "%s", error);
		store_update_done(u);
		return;
	}
	u->next = NULL;
	store_update_run_list(store, w, u);
}

/* Copies the caller's changes (keyword strings included) into u. */
static void
store_update_set_changes(struct store_update *u, const struct store_flag_change *changes,
                         size_t nchanges)
{
	u->changes = xcalloc(nchanges > 0 ? nchanges : 1, sizeof(*u->changes));
	for (size_t i = 0; i < nchanges; i++) {
		u->changes[i] = changes[i];
		u->changes[i].kw_replace = store_strdup_null(changes[i].kw_replace);
		u->changes[i].kw_add = store_strdup_null(changes[i].kw_add);
		u->changes[i].kw_remove = store_strdup_null(changes[i].kw_remove);
	}
	u->nchanges = nchanges;
}

void
store_mailbox_update(struct store *store, int64_t account_id, const char *mailbox,
                     const struct store_flag_change *changes, size_t nchanges,
                     const uint32_t *expunge, size_t nexpunge, store_update_cb *cb, void *arg)
{
	struct store_update *u =
	    store_update_new(store, STORE_UPDATE_CHANGE, account_id, mailbox, expunge, nexpunge);

	store_update_set_changes(u, changes, nchanges);
	u->cb = cb;
	u->arg = arg;
	store_update_submit(store, u);
}

void
store_mailbox_update_r(struct store *store, int64_t account_id, const char *mailbox,
                       const struct store_flag_change *changes, size_t nchanges,
                       const uint32_t *expunge, size_t nexpunge, store_update_result_cb *cb,
                       void *arg)
{
	struct store_update *u =
	    store_update_new(store, STORE_UPDATE_CHANGE, account_id, mailbox, expunge, nexpunge);

	store_update_set_changes(u, changes, nchanges);
	u->rcb = cb;
	u->arg = arg;
	store_update_submit(store, u);
}

void
store_message_copy(struct store *store, int64_t account_id, const char *src, const uint32_t *uids,
                   size_t nuids, const char *dst, bool move, store_copy_cb *cb, void *arg)
{
	struct store_update *u =
	    store_update_new(store, STORE_UPDATE_COPY, account_id, src, uids, nuids);

	u->dst = xstrdup(store_mailbox_name(dst != NULL ? dst : "INBOX"));
	u->move = move;
	u->ccb = cb;
	u->arg = arg;
	store_update_submit(store, u);
}
