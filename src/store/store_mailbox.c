/* store_mailbox: mailbox management (IMAP CREATE, DELETE, RENAME, SUBSCRIBE) and the
 * UIDVALIDITY counter. Each operation is a job of the store's one writer (struct
 * store_mbox_job): in the daemon the committer thread (store_blob.c) takes every job waiting
 * and runs them in one transaction, a savepoint each, on its own connection, then unlinks a
 * deleted mailbox's files and posts each callback to the loop thread; without workers the same
 * code runs at once on the store's connection (the synchronous functions, for command-line
 * tools). The loop thread never writes here, so it never waits for SQLite's write lock. */
#include "store/store_private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"

int
store_uidvalidity_next(sqlite3 *db, uint32_t *uidvalidity_r, char *error, size_t errsize)
{
	sqlite3_stmt *st = store_prepare(db,
	                                 "UPDATE counters SET value = max(value + 1, ?) "
	                                 "WHERE name = 'uidvalidity' RETURNING value",
	                                 error, errsize);
	int64_t value = 0;
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, time_now());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		value = sqlite3_column_int64(st, 0);
	else
		snprintf(error, errsize, "sqlite: %s",
		         rc == SQLITE_DONE ? "no uidvalidity counter" : sqlite3_errmsg(db));
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return -1;
	/* Seconds since 1970 fit in 32 bits until 2106; a counter past that has nothing left. */
	if (value <= 0 || value > (int64_t)UINT32_MAX) {
		snprintf(error, errsize, "the UIDVALIDITY counter is exhausted");
		return -1;
	}
	*uidvalidity_r = (uint32_t)value;
	return 0;
}

#define STORE_MAILBOX_NAME_MAX 255

/* Whether s is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static bool
store_utf8_valid(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned char c = *s;
		uint32_t cp;
		int n;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (int i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		s += n + 1;
	}
	return true;
}

/* Checks a mailbox name a client gave; the error is fit to pass on to the client. 0 or -1. */
static int
store_mailbox_check_name(const char *name, char *error, size_t errsize)
{
	size_t len = strlen(name);

	if (len == 0) {
		snprintf(error, errsize, "Mailbox name is empty");
		return -1;
	}
	if (len > STORE_MAILBOX_NAME_MAX) {
		snprintf(error, errsize, "Mailbox name is too long (at most %d bytes)",
		         STORE_MAILBOX_NAME_MAX);
		return -1;
	}
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f) {
			snprintf(error, errsize, "Mailbox name contains a control character");
			return -1;
		}
		/* LIST patterns could never name such a mailbox on its own. */
		if (c == '*' || c == '%') {
			snprintf(error, errsize, "Mailbox name contains a wildcard (* or %%)");
			return -1;
		}
	}
	if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//") != NULL) {
		snprintf(error, errsize,
		         "Mailbox name has an empty level (leading, trailing or "
		         "double /)");
		return -1;
	}
	if (!store_utf8_valid((const unsigned char *)name)) {
		snprintf(error, errsize, "Mailbox name is not valid UTF-8");
		return -1;
	}
	return 0;
}

/* A special-use attribute (RFC 6154) as CREATE (RFC 6154 USE) may give it: "\Name". Sets
 * *canonical_r to its spelling in RFC 6154 ("" for none). */
static int
store_mailbox_check_special_use(const char *special_use, const char **canonical_r, char *error,
                                size_t errsize)
{
	static const char *const known[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
	                                    "\\Junk", "\\Sent",    "\\Trash"};

	*canonical_r = "";
	if (special_use == NULL || special_use[0] == '\0')
		return 0;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcasecmp(special_use, known[i]) == 0) {
			*canonical_r = known[i];
			return 0;
		}
	}
	snprintf(error, errsize, "Unknown special-use attribute");
	return -1;
}

/* Finds account's mailbox name (canonical). 1 found (id, uidnext, highestmodseq set when not
 * NULL), 0 none, -1 error. */
static int
store_mailbox_find(sqlite3 *db, int64_t account_id, const char *name, int64_t *id_r,
                   int64_t *uidnext_r, int64_t *modseq_r, char *error, size_t errsize)
{
	sqlite3_stmt *st = store_prepare(db,
	                                 "SELECT id, uidnext, highestmodseq FROM mailboxes "
	                                 "WHERE account_id = ? AND name = ?",
	                                 error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(name), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (id_r != NULL)
			*id_r = sqlite3_column_int64(st, 0);
		if (uidnext_r != NULL)
			*uidnext_r = sqlite3_column_int64(st, 1);
		if (modseq_r != NULL)
			*modseq_r = sqlite3_column_int64(st, 2);
	} else if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Inserts a mailbox with a fresh UIDVALIDITY inside the caller's transaction (its id and
 * UIDVALIDITY set when not NULL). 0 or -1. */
static int
store_mailbox_insert(sqlite3 *db, int64_t account_id, const char *name, const char *special_use,
                     int64_t uidnext, int64_t modseq, int64_t *id_r, uint32_t *uidvalidity_r,
                     char *error, size_t errsize)
{
	sqlite3_stmt *st;
	uint32_t uidvalidity;
	int rc;

	if (store_uidvalidity_next(db, &uidvalidity, error, errsize) < 0)
		return -1;
	st = store_prepare(db,
	                   "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, "
	                   "uidnext, highestmodseq) VALUES (?, ?, ?, ?, ?, ?)",
	                   error, errsize);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(name), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, special_use != NULL ? special_use : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, uidvalidity);
	sqlite3_bind_int64(st, 5, uidnext);
	sqlite3_bind_int64(st, 6, modseq);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	if (id_r != NULL)
		*id_r = sqlite3_last_insert_rowid(db);
	if (uidvalidity_r != NULL)
		*uidvalidity_r = uidvalidity;
	return 0;
}

/* Creates every missing parent of name ("a" and "a/b" for "a/b/c"). 0 or -1. */
static int
store_mailbox_make_parents(sqlite3 *db, int64_t account_id, const char *name, char *error,
                           size_t errsize)
{
	char parent[STORE_MAILBOX_NAME_MAX + 1];

	for (const char *slash = strchr(name, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		int found;

		memcpy(parent, name, (size_t)(slash - name));
		parent[slash - name] = '\0';
		found =
		    store_mailbox_find(db, account_id, parent, NULL, NULL, NULL, error, errsize);
		if (found < 0)
			return -1;
		if (found == 0 && store_mailbox_insert(db, account_id, parent, "", 1, 0, NULL, NULL,
		                                       error, errsize) < 0)
			return -1;
	}
	return 0;
}

/* Runs one statement with (account_id, a, b) bound as ?1, ?2, ?3 (b may be NULL). Returns the
 * sqlite result code (SQLITE_DONE on success), with error set otherwise. */
static int
store_mailbox_exec(sqlite3 *db, const char *sql, int64_t account_id, const char *a, const char *b,
                   char *error, size_t errsize)
{
	sqlite3_stmt *st = store_prepare(db, sql, error, errsize);
	int rc;

	if (st == NULL)
		return SQLITE_ERROR;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, a, -1, SQLITE_STATIC);
	if (b != NULL)
		sqlite3_bind_text(st, 3, b, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc;
}

/* RENAME INBOX (RFC 3501 6.3.5): a new mailbox to takes INBOX's messages, with their UIDs (its
 * UIDVALIDITY is new) and INBOX's UIDNEXT; INBOX stays, empty, its UIDNEXT unchanged so no UID
 * comes back, its HIGHESTMODSEQ raised for the expunges. Its children are not touched. The new
 * mailbox's id and UIDVALIDITY are set. */
static int
store_mailbox_rename_inbox(sqlite3 *db, int64_t account_id, const char *to, int64_t *id_r,
                           uint32_t *uidvalidity_r, char *error, size_t errsize)
{
	int64_t inbox = 0, uidnext = 1, modseq = 0, id = 0;
	sqlite3_stmt *st;
	int rc;

	if (store_mailbox_find(db, account_id, "INBOX", &inbox, &uidnext, &modseq, error,
	                       errsize) <= 0 ||
	    store_mailbox_insert(db, account_id, to, "", uidnext, modseq, &id, uidvalidity_r, error,
	                         errsize) < 0)
		return -1;
	st = store_prepare(db, "UPDATE messages SET mailbox_id = ?2 WHERE mailbox_id = ?1;", error,
	                   errsize);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, inbox);
	sqlite3_bind_int64(st, 2, id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	st =
	    store_prepare(db, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?",
	                  error, errsize);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, inbox);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	*id_r = id;
	return 0;
}

/* Renames from and its children ("from/x" becomes "to/x"), and their subscriptions. Character
 * counts (length, substr) are consistent for valid UTF-8. 1, -2 a new name exists, -1 error. */
static int
store_mailbox_rename_tree(sqlite3 *db, int64_t account_id, const char *from, const char *to,
                          char *error, size_t errsize)
{
	int rc;

	rc = store_mailbox_exec(db,
	                        "UPDATE mailboxes SET name = ?3 || substr(name, length(?2) + 1) "
	                        "WHERE account_id = ?1 AND (name = ?2 OR "
	                        "substr(name, 1, length(?2) + 1) = ?2 || '/')",
	                        account_id, from, to, error, errsize);
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		snprintf(error, errsize, "A mailbox under the new name already exists");
		return -2;
	}
	if (rc != SQLITE_DONE)
		return -1;
	/* Subscriptions follow the mailboxes (as Dovecot does); one that is already there for a
	 * new name stays, once. */
	rc = store_mailbox_exec(db,
	                        "UPDATE OR REPLACE subscriptions SET name = "
	                        "?3 || substr(name, length(?2) + 1) "
	                        "WHERE account_id = ?1 AND (name = ?2 OR "
	                        "substr(name, 1, length(?2) + 1) = ?2 || '/')",
	                        account_id, from, to, error, errsize);
	return rc == SQLITE_DONE ? 1 : -1;
}

/* --- the jobs --- */

/* A mailbox-management job for the writer; owns copies of what the caller gave and what the
 * transaction found. */
struct store_mbox_job {
	struct store *store;
	enum store_mbox_kind kind;
	int64_t account_id;
	char *name;              /* canonical; RENAME: the old name */
	char *to;                /* RENAME: canonical */
	const char *special_use; /* CREATE: RFC 6154's spelling (static), "" for none */
	int result;              /* 1 (so far, then done), or the failure */
	bool invalid;            /* refused by store_mbox_check */
	char error[256];
	int64_t mailbox_id;
	uint32_t uidvalidity;
	char **paths; /* DELETE: the messages' files, unlinked after the commit */
	size_t npaths, paths_cap;
	int64_t *ids; /* RENAME: the mailboxes renamed and their old names */
	char **old;
	size_t nrenamed, ids_cap, old_cap;
	int64_t inbox_id; /* RENAME INBOX: the UIDs that left INBOX */
	uint32_t *uids;
	size_t nuids, uids_cap;
	store_mbox_cb *cb;
	void *arg;
	struct store_mbox_job *next;
};

struct store_mbox_job **
store_mbox_nextp(struct store_mbox_job *job)
{
	return &job->next;
}

/* Marks the job failed with result (0, -2, -1, STORE_BUSY); the first reason wins. */
static void store_mbox_fail(struct store_mbox_job *job, int result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
store_mbox_fail(struct store_mbox_job *job, int result, const char *fmt, ...)
{
	va_list ap;

	if (job->result != 1)
		return;
	job->result = result;
	va_start(ap, fmt);
	vsnprintf(job->error, sizeof(job->error), fmt, ap);
	va_end(ap);
}

/* Checks the names (and CREATE's special use) before any lookup: a job that fails here is only
 * answered. */
static void
store_mbox_check(struct store_mbox_job *job, const char *special_use)
{
	if (store_mailbox_check_name(job->name, job->error, sizeof(job->error)) < 0 ||
	    (job->to != NULL &&
	     store_mailbox_check_name(job->to, job->error, sizeof(job->error)) < 0) ||
	    (job->kind == STORE_MBOX_CREATE &&
	     store_mailbox_check_special_use(special_use, &job->special_use, job->error,
	                                     sizeof(job->error)) < 0)) {
		job->result = -1;
		job->invalid = true;
		return;
	}
	if (job->kind == STORE_MBOX_DELETE && strcmp(job->name, "INBOX") == 0)
		store_mbox_fail(job, 0, "INBOX cannot be deleted");
}

static struct store_mbox_job *
store_mbox_job_new(struct store *store, const struct store_mbox_op *op, store_mbox_cb *cb,
                   void *arg)
{
	struct store_mbox_job *job = xcalloc(1, sizeof(*job));

	job->store = store;
	job->kind = op->kind;
	job->account_id = op->account_id;
	job->name = xstrdup(store_mailbox_name(op->name != NULL ? op->name : ""));
	if (op->kind == STORE_MBOX_RENAME)
		job->to = xstrdup(store_mailbox_name(op->to != NULL ? op->to : ""));
	job->special_use = "";
	job->result = 1;
	job->cb = cb;
	job->arg = arg;
	store_mbox_check(job, op->special_use);
	return job;
}

static void
store_mbox_job_free(struct store_mbox_job *job)
{
	for (size_t i = 0; i < job->npaths; i++)
		free(job->paths[i]);
	for (size_t i = 0; i < job->nrenamed; i++)
		free(job->old[i]);
	free(job->paths);
	free(job->old);
	free(job->ids);
	free(job->uids);
	free(job->name);
	free(job->to);
	free(job);
}

/* Runs a query of one integer (or integer and text) column per row with (?1, ?2) bound to
 * (a, text b or NULL), calling fn for each row. 0 or -1 with the job failed. */
static int
store_mbox_rows(struct store_mbox_job *job, sqlite3 *db, const char *sql, int64_t a, const char *b,
                void (*fn)(struct store_mbox_job *job, sqlite3_stmt *st))
{
	sqlite3_stmt *st = store_prepare(db, sql, job->error, sizeof(job->error));
	int rc;

	if (st == NULL) {
		job->result = -1;
		return -1;
	}
	sqlite3_bind_int64(st, 1, a);
	if (b != NULL)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(job, st);
	if (rc != SQLITE_DONE)
		store_mbox_fail(job, -1, "sqlite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void
store_mbox_add_path(struct store_mbox_job *job, sqlite3_stmt *st)
{
	array_grow((void **)&job->paths, &job->paths_cap, job->npaths + 1, sizeof(*job->paths));
	job->paths[job->npaths++] = xstrdup((const char *)sqlite3_column_text(st, 0));
}

static void
store_mbox_add_renamed(struct store_mbox_job *job, sqlite3_stmt *st)
{
	array_grow((void **)&job->ids, &job->ids_cap, job->nrenamed + 1, sizeof(*job->ids));
	array_grow((void **)&job->old, &job->old_cap, job->nrenamed + 1, sizeof(*job->old));
	job->ids[job->nrenamed] = sqlite3_column_int64(st, 0);
	job->old[job->nrenamed++] = xstrdup((const char *)sqlite3_column_text(st, 1));
}

static void
store_mbox_add_uid(struct store_mbox_job *job, sqlite3_stmt *st)
{
	array_grow((void **)&job->uids, &job->uids_cap, job->nuids + 1, sizeof(*job->uids));
	job->uids[job->nuids++] = (uint32_t)sqlite3_column_int64(st, 0);
}

/* Finds job's mailbox (name) in the transaction: 1 found (its id in mailbox_id), else the job
 * failed (0: no such mailbox). */
static int
store_mbox_find_name(struct store_mbox_job *job, sqlite3 *db)
{
	int found = store_mailbox_find(db, job->account_id, job->name, &job->mailbox_id, NULL, NULL,
	                               job->error, sizeof(job->error));

	if (found == 0)
		store_mbox_fail(job, 0, "No such mailbox");
	else if (found < 0)
		job->result = -1;
	return found;
}

static void
store_mbox_create(struct store_mbox_job *job, sqlite3 *db)
{
	int found = store_mailbox_find(db, job->account_id, job->name, NULL, NULL, NULL, job->error,
	                               sizeof(job->error));

	if (found != 0) {
		if (found > 0)
			store_mbox_fail(job, 0, "Mailbox already exists");
		job->result = found > 0 ? 0 : -1;
		return;
	}
	if (store_mailbox_make_parents(db, job->account_id, job->name, job->error,
	                               sizeof(job->error)) < 0 ||
	    store_mailbox_insert(db, job->account_id, job->name, job->special_use, 1, 0,
	                         &job->mailbox_id, &job->uidvalidity, job->error,
	                         sizeof(job->error)) < 0)
		job->result = -1;
}

/* The messages go with the mailbox (ON DELETE CASCADE); children are other rows. The files
 * are collected here and unlinked after the commit. */
static void
store_mbox_delete(struct store_mbox_job *job, sqlite3 *db)
{
	if (store_mbox_find_name(job, db) <= 0 ||
	    store_mbox_rows(job, db, "SELECT path FROM messages WHERE mailbox_id = ?1",
	                    job->mailbox_id, NULL, store_mbox_add_path) < 0)
		return;
	if (store_mailbox_exec(db, "DELETE FROM mailboxes WHERE account_id = ?1 AND name = ?2",
	                       job->account_id, job->name, NULL, job->error,
	                       sizeof(job->error)) != SQLITE_DONE)
		job->result = -1;
}

static void
store_mbox_rename(struct store_mbox_job *job, sqlite3 *db)
{
	size_t fromlen = strlen(job->name);
	int found;

	if (store_mbox_find_name(job, db) <= 0)
		return;
	/* A new name that exists (INBOX, from itself) is -2 below. */
	if (strncmp(job->to, job->name, fromlen) == 0 && job->to[fromlen] == '/' &&
	    strcmp(job->name, "INBOX") != 0) {
		store_mbox_fail(job, -1, "Cannot rename a mailbox into itself");
		return;
	}
	found = store_mailbox_find(db, job->account_id, job->to, NULL, NULL, NULL, job->error,
	                           sizeof(job->error));
	if (found != 0) {
		if (found > 0)
			store_mbox_fail(job, -2, "Mailbox already exists");
		job->result = found > 0 ? -2 : -1;
		return;
	}
	if (store_mailbox_make_parents(db, job->account_id, job->to, job->error,
	                               sizeof(job->error)) < 0) {
		job->result = -1;
		return;
	}
	if (strcmp(job->name, "INBOX") == 0) {
		job->inbox_id = job->mailbox_id;
		if (store_mbox_rows(job, db,
		                    "SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid",
		                    job->inbox_id, NULL, store_mbox_add_uid) == 0 &&
		    store_mailbox_rename_inbox(db, job->account_id, job->to, &job->mailbox_id,
		                               &job->uidvalidity, job->error,
		                               sizeof(job->error)) < 0)
			job->result = -1;
		return;
	}
	if (store_mbox_rows(job, db,
	                    "SELECT id, name FROM mailboxes WHERE account_id = ?1 AND (name = ?2 "
	                    "OR substr(name, 1, length(?2) + 1) = ?2 || '/')",
	                    job->account_id, job->name, store_mbox_add_renamed) < 0)
		return;
	found = store_mailbox_rename_tree(db, job->account_id, job->name, job->to, job->error,
	                                  sizeof(job->error));
	if (found != 1)
		job->result = found;
}

static void
store_mbox_subscribe(struct store_mbox_job *job, sqlite3 *db)
{
	const char *sql = job->kind == STORE_MBOX_SUBSCRIBE
	                      ? "INSERT OR IGNORE INTO subscriptions (account_id, name) "
	                        "VALUES (?1, ?2)"
	                      : "DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2";

	if (store_mailbox_exec(db, sql, job->account_id, job->name, NULL, job->error,
	                       sizeof(job->error)) != SQLITE_DONE)
		job->result = -1;
}

/* Runs one job inside the transaction. */
static void
store_mbox_apply(struct store_mbox_job *job, sqlite3 *db)
{
	switch (job->kind) {
	case STORE_MBOX_CREATE:
		store_mbox_create(job, db);
		break;
	case STORE_MBOX_DELETE:
		store_mbox_delete(job, db);
		break;
	case STORE_MBOX_RENAME:
		store_mbox_rename(job, db);
		break;
	case STORE_MBOX_SUBSCRIBE:
	case STORE_MBOX_UNSUBSCRIBE:
		store_mbox_subscribe(job, db);
		break;
	}
}

/* Fails every job of the group still ok (a transaction-wide error). */
static void
store_mbox_fail_all(struct store_mbox_job **group, size_t n, int result, const char *error)
{
	for (size_t i = 0; i < n; i++)
		store_mbox_fail(group[i], result, "%s", error);
}

/* Runs the jobs still ok in one transaction on db, a savepoint each. */
static void
store_mbox_transaction(struct store_mbox_job **group, size_t n, sqlite3 *db)
{
	char error[256];

	if (store_exec(db, "BEGIN IMMEDIATE", error, sizeof(error)) < 0) {
		if ((sqlite3_errcode(db) & 0xff) == SQLITE_BUSY) {
			log_info("store event=mailbox-busy jobs=%zu", n);
			store_mbox_fail_all(group, n, STORE_BUSY,
			                    "The mailbox list is in use; try again");
		} else {
			store_mbox_fail_all(group, n, -1, error);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (group[i]->result != 1)
			continue;
		if (store_exec(db, "SAVEPOINT mbox", error, sizeof(error)) < 0) {
			store_mbox_fail(group[i], -1, "%s", error);
			continue;
		}
		store_mbox_apply(group[i], db);
		if (group[i]->result != 1)
			sqlite3_exec(db, "ROLLBACK TO mbox", NULL, NULL, NULL);
		sqlite3_exec(db, "RELEASE mbox", NULL, NULL, NULL);
		/* Some errors (disk full, I/O) roll the whole transaction back. */
		if (sqlite3_get_autocommit(db)) {
			store_mbox_fail_all(group, n, -1, "transaction aborted");
			return;
		}
	}
	if (store_exec(db, "COMMIT", error, sizeof(error)) < 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		store_mbox_fail_all(group, n, -1, error);
	}
}

/* After the commit: a deleted mailbox's files go (a crash before leaves orphan files, which the
 * start-up sweep removes, never a row without its file; a session still reading one keeps its
 * open descriptor). */
static void
store_mbox_finish(struct store_mbox_job *job)
{
	char path[PATH_MAX], name[128];

	for (size_t i = 0; job->result == 1 && i < job->npaths; i++) {
		snprintf(path, sizeof(path), "%s/%s", job->store->dir, job->paths[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("store event=mailbox-delete file=%s", path);
	}
	if (job->result == 1)
		log_info("store event=mailbox-%s account=%lld mailbox=%lld messages=%zu",
		         job->kind == STORE_MBOX_CREATE   ? "create"
		         : job->kind == STORE_MBOX_DELETE ? "delete"
		         : job->kind == STORE_MBOX_RENAME ? "rename"
		                                          : "subscription",
		         (long long)job->account_id, (long long)job->mailbox_id,
		         job->npaths + job->nuids);
	else if (job->result == -1)
		log_info("store event=mailbox-failed account=%lld mailbox=\"%s\" error=\"%s\"",
		         (long long)job->account_id,
		         log_escape(name, sizeof(name), job->name, strlen(job->name)), job->error);
}

/* Runs job's callback and frees it (on the loop thread, or at once without workers). */
static void
store_mbox_done(void *arg)
{
	struct store_mbox_job *job = arg;
	struct store_mbox_result r = {
	    .kind = job->kind,
	    .result = job->result,
	    .invalid = job->invalid,
	    .error = job->result == 1 ? "" : job->error,
	    .name = job->name,
	    .to = job->to,
	    .mailbox_id = job->mailbox_id,
	    .uidvalidity = job->uidvalidity,
	    .nmessages = job->npaths,
	    .ids = job->ids,
	    .old_names = (const char *const *)job->old,
	    .nrenamed = job->nrenamed,
	    .inbox_id = job->inbox_id,
	    .uids = job->uids,
	    .nuids = job->nuids,
	};

	if (job->cb != NULL)
		job->cb(&r, job->arg);
	store_mbox_job_free(job);
}

size_t
store_mbox_run_list(struct store *store, sqlite3 *db, struct store_mbox_job *list, bool post)
{
	struct store_mbox_job **group = NULL;
	size_t n = 0, cap = 0, pending = 0;

	for (struct store_mbox_job *job = list; job != NULL; job = job->next) {
		array_grow((void **)&group, &cap, n + 1, sizeof(*group));
		group[n++] = job;
		pending += job->result == 1;
	}
	if (pending > 0)
		store_mbox_transaction(group, n, db);
	for (size_t i = 0; i < n; i++) {
		store_mbox_finish(group[i]);
		/* Each job belongs to the loop thread once posted. */
		if (post)
			workers_post(store->workers, store_mbox_done, group[i]);
		else
			store_mbox_done(group[i]);
	}
	free(group);
	return n;
}

void
store_mailbox_op(struct store *store, const struct store_mbox_op *op, store_mbox_cb *cb, void *arg)
{
	struct store_mbox_job *job = store_mbox_job_new(store, op, cb, arg);

	if (store->pipeline != NULL) {
		store_pipeline_push_mbox(store, job);
		return;
	}
	job->next = NULL;
	store_mbox_run_list(store, store->db, job, false);
}

/* --- the synchronous functions (command-line tools) --- */

struct store_mbox_sync {
	int result;
	char *error;
	size_t errsize;
};

static void
store_mbox_sync_cb(const struct store_mbox_result *r, void *arg)
{
	struct store_mbox_sync *out = arg;

	out->result = r->result;
	if (r->result != 1)
		snprintf(out->error, out->errsize, "%s", r->error);
}

/* Runs op at once on the store's own connection (whatever the store's workers). */
static int
store_mbox_run_sync(struct store *store, const struct store_mbox_op *op, char *error,
                    size_t errsize)
{
	struct store_mbox_sync out = {-1, error, errsize};
	struct store_mbox_job *job = store_mbox_job_new(store, op, store_mbox_sync_cb, &out);

	store_mbox_run_list(store, store->db, job, false);
	return out.result;
}

int
store_mailbox_create(struct store *store, int64_t account_id, const char *name,
                     const char *special_use, char *error, size_t errsize)
{
	struct store_mbox_op op = {STORE_MBOX_CREATE, account_id, name, NULL, special_use};

	return store_mbox_run_sync(store, &op, error, errsize);
}

int
store_mailbox_delete(struct store *store, int64_t account_id, const char *name, char *error,
                     size_t errsize)
{
	struct store_mbox_op op = {STORE_MBOX_DELETE, account_id, name, NULL, NULL};

	return store_mbox_run_sync(store, &op, error, errsize);
}

int
store_mailbox_rename(struct store *store, int64_t account_id, const char *from, const char *to,
                     char *error, size_t errsize)
{
	struct store_mbox_op op = {STORE_MBOX_RENAME, account_id, from, to, NULL};

	return store_mbox_run_sync(store, &op, error, errsize);
}

int
store_subscription_set(struct store *store, int64_t account_id, const char *name, bool subscribed,
                       char *error, size_t errsize)
{
	struct store_mbox_op op = {subscribed ? STORE_MBOX_SUBSCRIBE : STORE_MBOX_UNSUBSCRIBE,
	                           account_id, name, NULL, NULL};

	return store_mbox_run_sync(store, &op, error, errsize);
}

int
store_subscription_list(struct store *store, int64_t account_id, store_subscription_cb *cb,
                        void *arg)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(
	    store->db, "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", error,
	    sizeof(error));
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb((const char *)sqlite3_column_text(st, 0), arg);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_warnx("store event=subscription-list error=\"%s\"", sqlite3_errmsg(store->db));
		return -1;
	}
	return 1;
}
