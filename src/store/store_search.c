/* store_search: the full-text index that narrows IMAP SEARCH (SQLite FTS5, trigram tokenizer).
 *
 * What is indexed: for each message row (rowid = messages.id) the text mime_text gives the
 * matcher (mime/mimetext.h: decoded, case-folded), in columns
 *   subject                every Subject field's value (header section read alone, as the
 *                          matcher first reads it), one per line
 *   addr_from .. addr_bcc  every From/To/Cc/Bcc field's rendered addresses (mimeaddr_render)
 *   headers                the whole header section as "name: value" lines (TEXT)
 *   body                   the decoded text parts (BODY, TEXT), at most STORE_SEARCH_BODY_MAX
 *                          bytes; when the matcher's own parse of the whole message gives a
 *                          different header text (a header section past MIME_TEXT_HEADER_MAX),
 *                          that text is added too.
 * The tokenizer is trigram and the table keeps no positions (detail = column: 2.4 times smaller
 * than detail = full and a third faster to write, measured on bench/gen_mail.py's messages), so
 * a query asks for every trigram of the folded needle in the column, which finds every row
 * holding it as a substring (and some more): the index only narrows, the matcher confirms every
 * candidate (RFC 3501 substring semantics and full Unicode case folding stay the matcher's; the
 * text is folded before it is indexed and the needle is folded the same way, so trigram's own
 * simpler folding never hides a row).
 *
 * Rows not (fully) indexed, kept in message_text_pending (migration 6; a trigger adds every new
 * messages row with state 0 and the writer takes it out once indexed):
 *   state 0  not indexed yet: rows from before migration 6 until the backfill reaches them, a
 *            message whose file could not be read (tried again by each backfill pass);
 *            candidates of every search;
 *   state 1  headers indexed, body text longer than STORE_SEARCH_BODY_MAX: candidates of
 *            BODY and TEXT searches;
 *   state 2  never indexed: a header bomb (mime_header_capped), which is not parsed in full
 *            where any sender can make that happen (a SEARCH reads it like any candidate);
 *            candidates of every search, never tried again.
 * Deleting a messages row (expunge, MOVE out, mailbox or account deletion) deletes its index
 * rows by trigger in the same transaction; a MOVE keeps the row id, so the index row follows.
 *
 * Writes happen on the committer's connection only: deliveries (store_blob.c, every path that
 * stores a new message: SMTP, LMTP, APPEND, the importer), COPY (store_update.c, the source
 * row's text is copied) and the backfill, which the committer runs while it has nothing else to
 * do, STORE_SEARCH_BACKFILL_BATCH messages per transaction (reading those files on the
 * committer thread, never on the loop).
 *
 * Reads (store_search_candidates) come from SEARCH's worker jobs: they use a read-only
 * connection of their own, opened on first use and shared under a mutex. */
#include "store/store_private.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <glib.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/mimestruct.h"
#include "mime/mimetext.h"
#include "mime/summary.h"

/* The longest prefix of a needle the index is asked for (bytes, cut on a character). */
#define STORE_SEARCH_QUERY_BYTES 256

/* The per-message cap of indexed body text; longer bodies keep state 1 (see above). */
#define STORE_SEARCH_BODY_MAX (1024 * 1024)

enum store_text_col {
	COL_SUBJECT = 0,
	COL_FROM,
	COL_TO,
	COL_CC,
	COL_BCC,
	COL_HEADERS,
	COL_BODY,
	COL_N,
};

struct store_search_text {
	struct buf col[COL_N];
	int state; /* 0 complete, else the message_text_pending state it leaves (1 or 2) */
};

/* The read side: read-only connections for SEARCH, kept in a small pool. Reference-counted: the
 * store holds one reference and each search in flight another (through its snapshot), so a
 * worker still querying when the daemon closes the store (a session dropped at the shutdown
 * timeout) uses objects that live. */
struct store_search_conn {
	sqlite3 *db;
	sqlite3_stmt *pin;
	sqlite3_stmt *candidates;
	struct store_search_conn *next;
};

struct store_search {
	pthread_mutex_t lock;
	unsigned refs;
	char path[PATH_MAX];
	struct store_search_conn *idle; /* connections between searches */
	unsigned nidle;
};

/* One search's view of the index: a connection holding an open read transaction. */
struct store_search_snap {
	struct store_search *ss;
	struct store_search_conn *conn;
};

/* Connections kept open between searches; more searches at once open more, closed after. */
#define STORE_SEARCH_IDLE_MAX 4

struct store_search *
store_search_new(const char *dbpath)
{
	struct store_search *ss = xcalloc(1, sizeof(*ss));

	pthread_mutex_init(&ss->lock, NULL);
	ss->refs = 1;
	str_copy(ss->path, dbpath, sizeof(ss->path));
	return ss;
}

static void
store_search_conn_free(struct store_search_conn *conn)
{
	if (conn == NULL)
		return;
	sqlite3_finalize(conn->pin);
	sqlite3_finalize(conn->candidates);
	sqlite3_close(conn->db);
	free(conn);
}

void
store_search_unref(struct store_search **ssp)
{
	struct store_search *ss = *ssp;
	bool last;

	if (ss == NULL)
		return;
	*ssp = NULL;
	pthread_mutex_lock(&ss->lock);
	last = --ss->refs == 0;
	pthread_mutex_unlock(&ss->lock);
	if (!last)
		return;
	while (ss->idle != NULL) {
		struct store_search_conn *next = ss->idle->next;

		store_search_conn_free(ss->idle);
		ss->idle = next;
	}
	pthread_mutex_destroy(&ss->lock);
	free(ss);
}

/* ---- building the text of a message ---- */

/* Adds a line to a column (a separator only adds candidates: never a missed match). */
static void
text_add(struct buf *b, const char *s, size_t len)
{
	if (b->len > 0)
		buf_addc(b, '\n');
	buf_add(b, s, len);
}

/* The column of an address field, or -1. */
static int
text_addr_col(const char *name)
{
	static const char *const names[] = {"From", "To", "Cc", "Bcc"};

	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, names[i]) == 0)
			return COL_FROM + i;
	return -1;
}

/* Cuts len so that s[0..len) ends on a UTF-8 character boundary. */
static size_t
text_utf8_cut(const char *s, size_t len)
{
	while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
		len--;
	return len;
}

struct store_search_text *
store_search_text_build(int fd)
{
	struct mime_text *head, *all;
	struct store_search_text *t;

	/* A header bomb is not parsed here (where any sender can make it happen): the row stays
	 * to do, a candidate of every search, and only a SEARCH reads it. */
	switch (mime_header_capped(fd)) {
	case 0:
		break;
	case 1:
		t = xcalloc(1, sizeof(*t));
		t->state = 2;
		return t;
	default:
		return NULL;
	}
	head = mime_text_from_fd(fd, false);
	if (head == NULL)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	for (size_t i = 0; i < head->nheaders; i++) {
		const struct mime_text_header *h = &head->headers[i];
		int col = text_addr_col(h->name);

		if (strcasecmp(h->name, "Subject") == 0)
			text_add(&t->col[COL_SUBJECT], h->value, h->len);
		else if (col >= 0 && h->addr != NULL)
			text_add(&t->col[col], h->addr, h->addr_len);
	}
	if (head->header_text != NULL)
		buf_add(&t->col[COL_HEADERS], head->header_text, head->header_len);
	all = mime_text_from_fd(fd, true);
	if (all != NULL) {
		size_t len = all->body_len;

		if (len > STORE_SEARCH_BODY_MAX) {
			len = text_utf8_cut(all->body, STORE_SEARCH_BODY_MAX);
			t->state = 1;
		}
		if (all->body != NULL)
			buf_add(&t->col[COL_BODY], all->body, len);
		if (all->header_text != NULL &&
		    (all->header_len != head->header_len ||
		     memcmp(all->header_text, head->header_text, head->header_len) != 0))
			text_add(&t->col[COL_BODY], all->header_text, all->header_len);
	} else {
		t->state = 1;
	}
	mime_text_free(&all);
	mime_text_free(&head);
	return t;
}

void
store_search_text_free(struct store_search_text **tp)
{
	struct store_search_text *t = *tp;

	if (t == NULL)
		return;
	for (int i = 0; i < COL_N; i++)
		buf_free(&t->col[i]);
	free(t);
	*tp = NULL;
}

/* ---- writing (the committer's connection) ---- */

int
store_search_text_insert(struct store_writer *w, int64_t id, const struct store_search_text *t)
{
	sqlite3_stmt *st = w->text_insert;
	int rc;

	if (t->state != 2) {
		sqlite3_bind_int64(st, 1, id);
		for (int i = 0; i < COL_N; i++)
			sqlite3_bind_text(st, 2 + i, buf_cstr(&t->col[i]), (int)t->col[i].len,
			                  SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (rc != SQLITE_DONE)
			return -1;
	}
	if (t->state == 0) {
		st = w->pending_clear;
		sqlite3_bind_int64(st, 1, id);
	} else {
		st = w->pending_set;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int(st, 2, t->state);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Runs a statement taking (src_id, dst_id). */
static int
store_search_step2(sqlite3_stmt *st, int64_t a, int64_t b)
{
	int rc;

	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_search_copy(struct store_writer *w, int64_t src_id, int64_t dst_id)
{
	/* The source's index row if it has one, and its to-do state, whichever it is. */
	if (store_search_step2(w->text_copy, src_id, dst_id) < 0)
		return -1;
	sqlite3_bind_int64(w->pending_clear, 1, dst_id);
	if (sqlite3_step(w->pending_clear) != SQLITE_DONE) {
		sqlite3_reset(w->pending_clear);
		return -1;
	}
	sqlite3_reset(w->pending_clear);
	return store_search_step2(w->pending_copy, src_id, dst_id);
}

/* A row stored before MIME structures were kept (schema version 3) gets one now, so FETCH never
 * has to build it on the event loop. Best effort: a file it cannot parse keeps the old way. */
static void
store_backfill_mime(struct store_writer *w, int64_t id, int fd)
{
	unsigned char *blob = NULL;
	size_t len = 0;

	if (mimestruct_build_fd(fd, &blob, &len) == 0) {
		sqlite3_bind_int64(w->mime_set, 1, id);
		sqlite3_bind_blob(w->mime_set, 2, blob, (int)len, SQLITE_STATIC);
		if (sqlite3_step(w->mime_set) != SQLITE_DONE)
			log_warnx("store event=mime-backfill id=%lld error=\"%s\"", (long long)id,
			          sqlite3_errmsg(w->db));
		sqlite3_reset(w->mime_set);
		sqlite3_clear_bindings(w->mime_set);
	}
	free(blob);
}

/* Indexes one pending row from its file (and gives it the MIME structure it lacks). 1 indexed, 0
 * left as it is (file unreadable), -1 error. */
static int
store_backfill_one(struct store *store, struct store_writer *w, int64_t id, const char *path,
                   bool mime_missing)
{
	struct store_search_text *t;
	char full[PATH_MAX];
	int fd, r;

	snprintf(full, sizeof(full), "%s/%s", store->dir, path);
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("store event=search-backfill-open id=%lld file=%s", (long long)id, path);
		return 0;
	}
	if (mime_missing)
		store_backfill_mime(w, id, fd);
	t = store_search_text_build(fd);
	close(fd);
	if (t == NULL)
		return 0;
	r = store_search_text_insert(w, id, t) < 0 ? -1 : 1;
	store_search_text_free(&t);
	return r;
}

int
store_search_backfill(struct store *store, struct store_writer *w, size_t max)
{
	sqlite3_stmt *st = w->pending_list;
	int64_t *ids = xcalloc(max, sizeof(*ids));
	char **paths = xcalloc(max, sizeof(*paths));
	bool *no_mime = xcalloc(max, sizeof(*no_mime));
	size_t n = 0;
	int done = 0, r = 0;
	char error[256];

	/* A pass walks the rows in id order from a cursor, so a row whose file cannot be read
	 * is tried once per pass and never holds the others up. */
	sqlite3_bind_int64(st, 1, w->pending_after);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while (n < max && sqlite3_step(st) == SQLITE_ROW) {
		ids[n] = sqlite3_column_int64(st, 0);
		paths[n] = xstrdup((const char *)sqlite3_column_text(st, 1));
		no_mime[n] = sqlite3_column_int(st, 2) != 0;
		n++;
	}
	sqlite3_reset(st);
	if (n == 0) {
		w->pending_after = 0; /* the pass is over; the next one starts from the beginning */
		goto out;
	}
	if (store_exec(w->db, "BEGIN IMMEDIATE", error, sizeof(error)) < 0) {
		log_warnx("store event=search-backfill error=\"%s\"", error);
		r = -1;
		goto out;
	}
	for (size_t i = 0; i < n && r >= 0; i++) {
		r = store_backfill_one(store, w, ids[i], paths[i], no_mime[i]);
		done += r > 0;
	}
	if (r < 0 || store_exec(w->db, "COMMIT", error, sizeof(error)) < 0) {
		log_warnx("store event=search-backfill error=\"%s\"", sqlite3_errmsg(w->db));
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
		r = -1;
		goto out;
	}
	w->pending_after = ids[n - 1];
	log_debug("store event=search-backfill indexed=%d of=%zu", done, n);
	r = (int)n;
out:
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	free(no_mime);
	free(ids);
	return r;
}

/* ---- reading (SEARCH's workers) ---- */

/* The FTS5 query for key: a column filter and each trigram of the needle as a quoted string,
 * ANDed, every '"' doubled (FTS5's only escape inside a string), so no byte of the needle is
 * ever read as query syntax (NEAR, AND, '*', '^', "col:", parentheses). */
char *
store_search_query(enum store_search_key key, const char *needle)
{
	static const char *const filters[] = {
	    [STORE_SEARCH_SUBJECT] = "{subject}",   [STORE_SEARCH_FROM] = "{addr_from}",
	    [STORE_SEARCH_TO] = "{addr_to}",        [STORE_SEARCH_CC] = "{addr_cc}",
	    [STORE_SEARCH_BCC] = "{addr_bcc}",      [STORE_SEARCH_BODY] = "{body}",
	    [STORE_SEARCH_TEXT] = "{headers body}",
	};
	struct buf q = BUF_INIT;
	const char *end;

	if ((unsigned)key >= sizeof(filters) / sizeof(filters[0]) || needle == NULL ||
	    !g_utf8_validate(needle, -1, NULL) ||
	    g_utf8_strlen(needle, -1) < STORE_SEARCH_MIN_CHARS)
		return NULL;
	/* A prefix of the needle finds every row the whole would (and a few more, which the
	 * matcher drops), while bounding the query a client can make the index run. */
	end = g_utf8_offset_to_pointer(needle, g_utf8_strlen(needle, STORE_SEARCH_QUERY_BYTES));
	/* The table keeps no positions (detail = column: a third of the size, faster to write),
	 * so no phrase: every trigram of the needle must be in the column. A superset of the
	 * rows holding the needle, which the matcher narrows to the exact answer. */
	buf_adds(&q, filters[key]);
	buf_adds(&q, " : (");
	for (const char *a = needle, *b = g_utf8_next_char(g_utf8_next_char(needle)); b < end;
	     a = g_utf8_next_char(a), b = g_utf8_next_char(b)) {
		const char *c = g_utf8_next_char(b); /* the trigram is a..c */

		if (a != needle)
			buf_adds(&q, " AND ");
		buf_addc(&q, '"');
		for (const char *p = a; p < c; p++) {
			if (*p == '"')
				buf_addc(&q, '"');
			buf_addc(&q, *p);
		}
		buf_addc(&q, '"');
	}
	buf_addc(&q, ')');
	return buf_steal(&q);
}

/* A new read-only connection with its statements, or NULL with error. */
static struct store_search_conn *
store_search_conn_open(const char *path, char *error, size_t errsize)
{
	/* The FTS rows, then the rows the index cannot answer for (see the top of this file).
	 * CROSS JOIN keeps the FTS hits as the outer loop: a lookup of each by row id. */
	static const char sql[] =
	    "SELECT m.uid FROM message_text f CROSS JOIN messages m ON m.id = f.rowid "
	    "  WHERE message_text MATCH ?2 AND m.mailbox_id = ?1 "
	    "UNION "
	    "SELECT m.uid FROM message_text_pending t CROSS JOIN messages m ON m.id = t.id "
	    "  WHERE (t.state != 1 OR ?3) AND m.mailbox_id = ?1 "
	    "ORDER BY 1";
	struct store_search_conn *conn = xcalloc(1, sizeof(*conn));

	if (sqlite3_open_v2(path, &conn->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(error, errsize, "cannot open %s: %s", path,
		         conn->db != NULL ? sqlite3_errmsg(conn->db) : "out of memory");
		store_search_conn_free(conn);
		return NULL;
	}
	sqlite3_busy_timeout(conn->db, 10000);
	conn->pin =
	    store_prepare(conn->db, "SELECT 1 FROM message_text_pending LIMIT 1", error, errsize);
	if (conn->pin != NULL)
		conn->candidates = store_prepare(conn->db, sql, error, errsize);
	if (conn->candidates == NULL) {
		store_search_conn_free(conn);
		return NULL;
	}
	return conn;
}

struct store_search_snap *
store_search_begin(struct store *store, char *error, size_t errsize)
{
	struct store_search *ss = store->search;
	struct store_search_snap *snap;
	struct store_search_conn *conn;
	int rc;

	pthread_mutex_lock(&ss->lock);
	conn = ss->idle;
	if (conn != NULL) {
		ss->idle = conn->next;
		ss->nidle--;
	}
	pthread_mutex_unlock(&ss->lock);
	if (conn == NULL && (conn = store_search_conn_open(ss->path, error, errsize)) == NULL)
		return NULL;
	/* A read transaction opened by a read: the view stays the one of this moment (WAL) until
	 * store_search_end, whatever commits meanwhile. */
	if (store_exec(conn->db, "BEGIN", error, errsize) < 0) {
		store_search_conn_free(conn);
		return NULL;
	}
	/* This runs on the loop thread: wait little for a lock (the search then scans). */
	sqlite3_busy_timeout(conn->db, 100);
	rc = sqlite3_step(conn->pin);
	sqlite3_reset(conn->pin);
	sqlite3_busy_timeout(conn->db, 10000);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(conn->db));
		store_search_conn_free(conn);
		return NULL;
	}
	snap = xcalloc(1, sizeof(*snap));
	snap->conn = conn;
	pthread_mutex_lock(&ss->lock);
	ss->refs++;
	pthread_mutex_unlock(&ss->lock);
	snap->ss = ss;
	return snap;
}

void
store_search_end(struct store_search_snap **snapp)
{
	struct store_search_snap *snap = *snapp;
	struct store_search *ss;
	struct store_search_conn *conn;

	if (snap == NULL)
		return;
	*snapp = NULL;
	ss = snap->ss;
	conn = snap->conn;
	free(snap);
	if (sqlite3_exec(conn->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		store_search_conn_free(conn);
		conn = NULL;
	}
	pthread_mutex_lock(&ss->lock);
	if (conn != NULL && ss->nidle < STORE_SEARCH_IDLE_MAX && ss->refs > 1) {
		conn->next = ss->idle;
		ss->idle = conn;
		ss->nidle++;
		conn = NULL;
	}
	pthread_mutex_unlock(&ss->lock);
	store_search_conn_free(conn);
	store_search_unref(&ss);
}

int
store_search_candidates(struct store_search_snap *snap, int64_t mailbox_id,
                        enum store_search_key key, const char *needle, uint32_t **uids_r,
                        size_t *n_r, char *error, size_t errsize)
{
	char *query = store_search_query(key, needle);
	sqlite3_stmt *st = snap->conn->candidates;
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*uids_r = NULL;
	*n_r = 0;
	if (query == NULL) {
		snprintf(error, errsize, "search string too short for the index");
		return 0;
	}
	sqlite3_bind_int64(st, 1, mailbox_id);
	sqlite3_bind_text(st, 2, query, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, key == STORE_SEARCH_BODY || key == STORE_SEARCH_TEXT ? 1 : 0);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		array_grow((void **)&uids, &cap, n + 1, sizeof(*uids));
		uids[n++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE)
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(snap->conn->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	free(query);
	if (rc != SQLITE_DONE) {
		free(uids);
		return -1;
	}
	*uids_r = uids;
	*n_r = n;
	return 1;
}
