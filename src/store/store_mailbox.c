/* store_mailbox: mailbox management (IMAP CREATE, DELETE, RENAME, SUBSCRIBE) and the
 * UIDVALIDITY counter. These run synchronously on the store's own connection, each in one
 * transaction; the writer thread may be committing at the same time on its connection, and
 * SQLite's lock (BEGIN IMMEDIATE, busy timeout) orders the two. In the daemon that connection
 * belongs to the loop thread, so the wait for the lock is kept short (STORE_MAILBOX_BUSY_MS):
 * past it the call fails with STORE_BUSY and IMAP answers NO [INUSE], rather than every session
 * freezing while another process holds the database's write lock. */
#include "store/store_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define STORE_MAILBOX_BUSY_MS 100    /* the daemon's wait for the write lock, on the loop thread */
#define STORE_MAILBOX_BUSY_CLI 10000 /* store_db_open's timeout, put back afterwards */

/* Sets how long the store's own connection waits for the write lock: short in the daemon
 * (workers: the loop thread's connection), the usual timeout for command-line tools. */
static void
store_mailbox_wait(struct store *store, bool brief)
{
	sqlite3_busy_timeout(store->db, brief && store->workers != NULL ? STORE_MAILBOX_BUSY_MS
									: STORE_MAILBOX_BUSY_CLI);
}

/* BEGIN IMMEDIATE with the daemon's short wait: 0, STORE_BUSY (another writer holds the lock
 * longer than that) or -1, with error. */
static int
store_mailbox_begin(struct store *store, char *error, size_t errsize)
{
	int rc;

	store_mailbox_wait(store, true);
	rc = store_exec(store->db, "BEGIN IMMEDIATE", error, errsize);
	store_mailbox_wait(store, false);
	if (rc == 0)
		return 0;
	if ((sqlite3_errcode(store->db) & 0xff) == SQLITE_BUSY) {
		log_info("store event=mailbox-busy wait_ms=%d", STORE_MAILBOX_BUSY_MS);
		snprintf(error, errsize, "The mailbox list is in use; try again");
		return STORE_BUSY;
	}
	return -1;
}

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

/* Inserts a mailbox with a fresh UIDVALIDITY inside the caller's transaction. 0 or -1. */
static int
store_mailbox_insert(sqlite3 *db, int64_t account_id, const char *name, const char *special_use,
                     int64_t uidnext, int64_t modseq, int64_t *id_r, char *error, size_t errsize)
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
		if (found == 0 && store_mailbox_insert(db, account_id, parent, "", 1, 0, NULL,
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

int
store_mailbox_create(struct store *store, int64_t account_id, const char *name,
                     const char *special_use, char *error, size_t errsize)
{
	int found;

	if (store_mailbox_check_name(name, error, errsize) < 0 ||
	    store_mailbox_check_special_use(special_use, &special_use, error, errsize) < 0)
		return -1;
	name = store_mailbox_name(name);
	if ((found = store_mailbox_begin(store, error, errsize)) < 0)
		return found;
	found = store_mailbox_find(store->db, account_id, name, NULL, NULL, NULL, error, errsize);
	if (found != 0) {
		if (found > 0)
			snprintf(error, errsize, "Mailbox already exists");
		goto rollback;
	}
	if (store_mailbox_make_parents(store->db, account_id, name, error, errsize) < 0 ||
	    store_mailbox_insert(store->db, account_id, name, special_use, 1, 0, NULL, error,
	                         errsize) < 0 ||
	    store_exec(store->db, "COMMIT", error, errsize) < 0) {
		found = -1;
		goto rollback;
	}
	log_info("store event=mailbox-create account=%lld", (long long)account_id);
	return 1;
rollback:
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
	return found > 0 ? 0 : -1;
}

/* Collects the files of a mailbox's messages (to unlink after its rows are gone). 0 or -1. */
static int
store_mailbox_paths(sqlite3 *db, int64_t mailbox_id, char ***paths_r, size_t *n_r, char *error,
                    size_t errsize)
{
	sqlite3_stmt *st =
	    store_prepare(db, "SELECT path FROM messages WHERE mailbox_id = ?", error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mailbox_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*paths_r = xrealloc(*paths_r, (*n_r + 1) * sizeof(**paths_r));
		(*paths_r)[(*n_r)++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

int
store_mailbox_delete(struct store *store, int64_t account_id, const char *name, char *error,
                     size_t errsize)
{
	char **paths = NULL, path[PATH_MAX];
	size_t npaths = 0;
	int64_t id = 0;
	int ret = -1, found;

	if (store_mailbox_check_name(name, error, errsize) < 0)
		return -1;
	name = store_mailbox_name(name);
	if (strcmp(name, "INBOX") == 0) {
		snprintf(error, errsize, "INBOX cannot be deleted");
		return 0;
	}
	if ((found = store_mailbox_begin(store, error, errsize)) < 0)
		return found;
	found = store_mailbox_find(store->db, account_id, name, &id, NULL, NULL, error, errsize);
	if (found <= 0) {
		if (found == 0)
			snprintf(error, errsize, "No such mailbox");
		ret = found;
		goto rollback;
	}
	/* The messages go with the mailbox (ON DELETE CASCADE); children are other rows. */
	if (store_mailbox_paths(store->db, id, &paths, &npaths, error, errsize) < 0 ||
	    store_mailbox_exec(store->db,
	                       "DELETE FROM mailboxes WHERE account_id = ?1 AND name = ?2",
	                       account_id, name, NULL, error, errsize) != SQLITE_DONE ||
	    store_exec(store->db, "COMMIT", error, errsize) < 0)
		goto rollback;
	/* Only after the commit: a crash in between leaves orphan files, never a row without its
	 * file. A session still reading one keeps its open descriptor. */
	for (size_t i = 0; i < npaths; i++) {
		snprintf(path, sizeof(path), "%s/%s", store->dir, paths[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("store event=mailbox-delete file=%s", path);
	}
	log_info("store event=mailbox-delete account=%lld mailbox=%lld messages=%zu",
	         (long long)account_id, (long long)id, npaths);
	ret = 1;
	goto out;
rollback:
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
out:
	for (size_t i = 0; i < npaths; i++)
		free(paths[i]);
	free(paths);
	return ret;
}

/* RENAME INBOX (RFC 3501 6.3.5): a new mailbox to takes INBOX's messages, with their UIDs (its
 * UIDVALIDITY is new) and INBOX's UIDNEXT; INBOX stays, empty, its UIDNEXT unchanged so no UID
 * comes back, its HIGHESTMODSEQ raised for the expunges. Its children are not touched. */
static int
store_mailbox_rename_inbox(sqlite3 *db, int64_t account_id, const char *to, char *error,
                           size_t errsize)
{
	int64_t inbox = 0, uidnext = 1, modseq = 0, id = 0;
	sqlite3_stmt *st;
	int rc;

	if (store_mailbox_find(db, account_id, "INBOX", &inbox, &uidnext, &modseq, error,
	                       errsize) <= 0 ||
	    store_mailbox_insert(db, account_id, to, "", uidnext, modseq, &id, error, errsize) < 0)
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

int
store_mailbox_rename(struct store *store, int64_t account_id, const char *from, const char *to,
                     char *error, size_t errsize)
{
	size_t fromlen;
	int found, ret = -1;

	if (store_mailbox_check_name(from, error, errsize) < 0 ||
	    store_mailbox_check_name(to, error, errsize) < 0)
		return -1;
	from = store_mailbox_name(from);
	to = store_mailbox_name(to);
	fromlen = strlen(from);
	if (strcmp(to, "INBOX") == 0 || strcmp(from, to) == 0) {
		snprintf(error, errsize, "Mailbox already exists");
		return -2;
	}
	if (strncmp(to, from, fromlen) == 0 && to[fromlen] == '/' && strcmp(from, "INBOX") != 0) {
		snprintf(error, errsize, "Cannot rename a mailbox into itself");
		return -1;
	}
	if ((found = store_mailbox_begin(store, error, errsize)) < 0)
		return found;
	found = store_mailbox_find(store->db, account_id, from, NULL, NULL, NULL, error, errsize);
	if (found <= 0) {
		if (found == 0)
			snprintf(error, errsize, "No such mailbox");
		ret = found;
		goto rollback;
	}
	found = store_mailbox_find(store->db, account_id, to, NULL, NULL, NULL, error, errsize);
	if (found != 0) {
		if (found > 0)
			snprintf(error, errsize, "Mailbox already exists");
		ret = found > 0 ? -2 : -1;
		goto rollback;
	}
	if (store_mailbox_make_parents(store->db, account_id, to, error, errsize) < 0)
		goto rollback;
	if (strcmp(from, "INBOX") == 0)
		ret = store_mailbox_rename_inbox(store->db, account_id, to, error, errsize) < 0 ? -1
		                                                                                : 1;
	else
		ret = store_mailbox_rename_tree(store->db, account_id, from, to, error, errsize);
	if (ret != 1 || store_exec(store->db, "COMMIT", error, errsize) < 0) {
		if (ret == 1)
			ret = -1;
		goto rollback;
	}
	log_info("store event=mailbox-rename account=%lld inbox=%s", (long long)account_id,
	         strcmp(from, "INBOX") == 0 ? "yes" : "no");
	return 1;
rollback:
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

int
store_subscription_set(struct store *store, int64_t account_id, const char *name, bool subscribed,
                       char *error, size_t errsize)
{
	const char *sql = subscribed
	                      ? "INSERT OR IGNORE INTO subscriptions (account_id, name) "
	                        "VALUES (?1, ?2)"
	                      : "DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2";
	int rc;

	if (store_mailbox_check_name(name, error, errsize) < 0)
		return -1;
	name = store_mailbox_name(name);
	store_mailbox_wait(store, true);
	rc = store_mailbox_exec(store->db, sql, account_id, name, NULL, error, errsize);
	store_mailbox_wait(store, false);
	if ((rc & 0xff) == SQLITE_BUSY) {
		snprintf(error, errsize, "The mailbox list is in use; try again");
		return STORE_BUSY;
	}
	return rc == SQLITE_DONE ? 1 : -1;
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
