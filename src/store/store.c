/* store: opening the data directory, accounts, aliases and the read side of mailboxes, single
 * messages and the queue. Lists and scans of a mailbox's messages live in store_read.c, the
 * commit pipeline for incoming mail in store_blob.c. */
#include "store/store_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "mime/summary.h"

/* The mailboxes every account starts with, and their RFC 6154 special use. */
static const struct {
	const char *name;
	const char *special_use;
} store_default_mailboxes[] = {
    {"INBOX", ""},      {"Sent", "\\Sent"},   {"Drafts", "\\Drafts"},
    {"Junk", "\\Junk"}, {"Trash", "\\Trash"},
};

const char *
store_mailbox_name(const char *name)
{
	if (strcasecmp(name, "INBOX") == 0)
		return "INBOX";
	return name;
}

sqlite3_stmt *
store_prepare(sqlite3 *db, const char *sql, char *error, size_t errsize)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		log_warnx("store event=prepare error=\"%s\"", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

void
store_column_text(sqlite3_stmt *st, int col, char *dst, size_t dstsize)
{
	const unsigned char *text = sqlite3_column_text(st, col);

	str_copy(dst, text != NULL ? (const char *)text : "", dstsize);
}

/* Makes DIR/tmp, DIR/mail and DIR/queue (create), or checks they exist. */
static int
store_make_dirs(struct store *store, bool create, char *error, size_t errsize)
{
	static const char *const subdirs[] = {"tmp", "mail", "queue"};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", store->dir, subdirs[i]);
		/* Created on open as well: a data dir from an older layout gains new subdirs. */
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			snprintf(error, errsize, "cannot create %s: %s", path, strerror(errno));
			return -1;
		}
	}
	if (create && fsync_dir(store->dir) < 0) {
		snprintf(error, errsize, "cannot fsync %s: %s", store->dir, strerror(errno));
		return -1;
	}
	return 0;
}

int
store_open(const char *data_dir, bool create, struct workers *workers, struct store **store_r,
           char *error, size_t errsize)
{
	struct store *store;
	char dbpath[PATH_MAX];
	struct stat sb;

	*store_r = NULL;
	if (stat(data_dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(error, errsize, "data directory %s does not exist", data_dir);
		return -1;
	}
	if (strlen(data_dir) >= STORE_DIR_MAX) {
		snprintf(error, errsize, "data directory path too long");
		return -1;
	}
	snprintf(dbpath, sizeof(dbpath), "%s/tern.db", data_dir);
	if (!create && access(dbpath, F_OK) < 0) {
		snprintf(error, errsize, "no database at %s (run 'ternd init' first)", dbpath);
		return -1;
	}
	mime_init();
	store = xcalloc(1, sizeof(*store));
	str_copy(store->dir, data_dir, sizeof(store->dir));
	snprintf(store->tmp_dir, sizeof(store->tmp_dir), "%s/tmp", data_dir);
	store->workers = workers;
	if (store_make_dirs(store, create, error, errsize) < 0 ||
	    store_db_open(dbpath, create, &store->db, error, errsize) < 0 ||
	    store_schema_migrate(store->db, error, errsize) < 0)
		goto fail;
	store->search = store_search_new(dbpath);
	/* Only the daemon writes message files: a command-line tool opening the store while it
	 * runs must not take its files in flight for leftovers. */
	if (workers != NULL && store_sweep(store, error, errsize) < 0)
		goto fail;
	if (workers != NULL && store_pipeline_start(store, error, errsize) < 0)
		goto fail;
	*store_r = store;
	return 0;
fail:
	store_search_unref(&store->search);
	sqlite3_close(store->db);
	free(store);
	return -1;
}

void
store_free(struct store **storep)
{
	struct store *store = *storep;

	if (store == NULL)
		return;
	if (store->pipeline != NULL)
		store_pipeline_stop(store);
	store_writer_free(&store->sync_writer);
	store_search_unref(&store->search);
	if (sqlite3_close(store->db) != SQLITE_OK)
		log_warnx("store event=close error=\"%s\"", sqlite3_errmsg(store->db));
	free(store);
	*storep = NULL;
}

/* --- accounts --- */

/* 1 when address is an account or an alias, 0 when free, -1 on error. */
static int
store_address_taken(struct store *store, const char *address, char *error, size_t errsize)
{
	sqlite3_stmt *st = store_prepare(store->db,
	                                 "SELECT 1 FROM accounts WHERE address = ?1 "
	                                 "UNION ALL SELECT 1 FROM aliases WHERE address = ?1",
	                                 error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		return -1;
	}
	return 0;
}

/* Inserts the account row and its default mailboxes inside the caller's transaction. */
static int
store_account_insert(struct store *store, const char *address, const char *password_hash,
                     int64_t *id_r, char *error, size_t errsize)
{
	sqlite3_stmt *st, *sub = NULL;
	uint32_t uidvalidity;
	int64_t id;

	st = store_prepare(
	    store->db, "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
	    error, errsize);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, password_hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, time_now());
	if (sqlite3_step(st) != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	id = sqlite3_last_insert_rowid(store->db);

	/* Each default mailbox gets its own value from the counter, and is subscribed. */
	st = store_prepare(store->db,
	                   "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) "
	                   "VALUES (?, ?, ?, ?)",
	                   error, errsize);
	sub = store_prepare(store->db,
	                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
	                    error, errsize);
	if (st == NULL || sub == NULL)
		goto fail;
	for (size_t i = 0; i < sizeof(store_default_mailboxes) / sizeof(store_default_mailboxes[0]);
	     i++) {
		if (store_uidvalidity_next(store->db, &uidvalidity, error, errsize) < 0)
			goto fail;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, store_default_mailboxes[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, store_default_mailboxes[i].special_use, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, uidvalidity);
		sqlite3_bind_int64(sub, 1, id);
		sqlite3_bind_text(sub, 2, store_default_mailboxes[i].name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE || sqlite3_step(sub) != SQLITE_DONE) {
			snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
			goto fail;
		}
		sqlite3_reset(st);
		sqlite3_reset(sub);
	}
	sqlite3_finalize(st);
	sqlite3_finalize(sub);
	*id_r = id;
	return 0;
fail:
	sqlite3_finalize(st);
	sqlite3_finalize(sub);
	return -1;
}

/* Creates DIR/mail/<id> and makes its entry durable. */
static int
store_account_mkdir(struct store *store, int64_t id, char *error, size_t errsize)
{
	char path[PATH_MAX], parent[PATH_MAX];

	snprintf(parent, sizeof(parent), "%s/mail", store->dir);
	snprintf(path, sizeof(path), "%s/mail/%lld", store->dir, (long long)id);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(error, errsize, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (fsync_dir(parent) < 0) {
		snprintf(error, errsize, "cannot fsync %s: %s", parent, strerror(errno));
		return -1;
	}
	return 0;
}

int
store_account_add(struct store *store, const char *address, const char *password_hash, char *error,
                  size_t errsize)
{
	int64_t id = 0;
	int taken;

	if (store_exec(store->db, "BEGIN IMMEDIATE", error, errsize) < 0)
		return -1;
	taken = store_address_taken(store, address, error, errsize);
	if (taken != 0) {
		sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
		if (taken > 0)
			snprintf(error, errsize, "address %s is already taken", address);
		return taken > 0 ? 0 : -1;
	}
	if (store_account_insert(store, address, password_hash, &id, error, errsize) < 0 ||
	    store_account_mkdir(store, id, error, errsize) < 0 ||
	    store_exec(store->db, "COMMIT", error, errsize) < 0) {
		sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	log_info("store event=account-add account=%lld address=%s", (long long)id, address);
	return 1;
}

/* Collects the relative paths of every message of account id (to unlink after the delete). */
static int
store_account_paths(struct store *store, int64_t id, char ***paths_r, size_t *npaths_r, char *error,
                    size_t errsize)
{
	sqlite3_stmt *st = store_prepare(store->db,
	                                 "SELECT m.path FROM messages m JOIN mailboxes b "
	                                 "ON m.mailbox_id = b.id WHERE b.account_id = ?",
	                                 error, errsize);
	char **paths = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			paths = xrealloc(paths, cap * sizeof(*paths));
		}
		paths[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	*paths_r = paths;
	*npaths_r = n;
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		return -1;
	}
	return 0;
}

/* Finds the id of an account by its primary address. 1 found, 0 none, -1 error. */
static int
store_account_id(struct store *store, const char *address, int64_t *id_r, char *error,
                 size_t errsize)
{
	sqlite3_stmt *st =
	    store_prepare(store->db, "SELECT id FROM accounts WHERE address = ?", error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*id_r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
	return -1;
}

int
store_account_del(struct store *store, const char *address, char *error, size_t errsize)
{
	char **paths = NULL;
	size_t npaths = 0;
	char path[PATH_MAX];
	sqlite3_stmt *st;
	int64_t id = 0;
	int ret = -1, found;

	if (store_exec(store->db, "BEGIN IMMEDIATE", error, errsize) < 0)
		return -1;
	found = store_account_id(store, address, &id, error, errsize);
	if (found <= 0) {
		if (found == 0)
			snprintf(error, errsize, "no account %s", address);
		ret = found;
		goto rollback;
	}
	if (store_account_paths(store, id, &paths, &npaths, error, errsize) < 0)
		goto rollback;
	st = store_prepare(store->db, "DELETE FROM accounts WHERE id = ?", error, errsize);
	if (st == NULL)
		goto rollback;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		sqlite3_finalize(st);
		goto rollback;
	}
	sqlite3_finalize(st);
	if (store_exec(store->db, "COMMIT", error, errsize) < 0)
		goto rollback;
	/* The rows are gone; the files are now unreachable and can go. */
	for (size_t i = 0; i < npaths; i++) {
		snprintf(path, sizeof(path), "%s/%s", store->dir, paths[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("store event=account-del file=%s", path);
	}
	snprintf(path, sizeof(path), "%s/mail/%lld", store->dir, (long long)id);
	if (rmdir(path) < 0 && errno != ENOENT)
		log_warn("store event=account-del dir=%s", path);
	log_info("store event=account-del account=%lld address=%s messages=%zu", (long long)id,
	         address, npaths);
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

int
store_account_set_password(struct store *store, const char *address, const char *password_hash,
                           char *error, size_t errsize)
{
	sqlite3_stmt *st = store_prepare(
	    store->db, "UPDATE accounts SET password_hash = ? WHERE address = ?", error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, password_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		return -1;
	}
	if (sqlite3_changes(store->db) == 0) {
		snprintf(error, errsize, "no account %s", address);
		return 0;
	}
	log_info("store event=account-passwd address=%s", address);
	return 1;
}

/* Fills account from a row of (id, address, password_hash, created). */
static void
store_account_from_row(sqlite3_stmt *st, struct store_account *account)
{
	memset(account, 0, sizeof(*account));
	account->id = sqlite3_column_int64(st, 0);
	store_column_text(st, 1, account->address, sizeof(account->address));
	store_column_text(st, 2, account->password_hash, sizeof(account->password_hash));
	account->created = sqlite3_column_int64(st, 3);
}

/* Steps st (which selects an account's columns) once, finalizes it: 1 a row in *account_r, 0
 * none, -1 error (logged as event). */
static int
store_account_step(struct store *store, sqlite3_stmt *st, struct store_account *account_r,
                   const char *event)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		store_account_from_row(st, account_r);
	else if (rc != SQLITE_DONE)
		log_warnx("store event=%s error=\"%s\"", event, sqlite3_errmsg(store->db));
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_account_lookup(struct store *store, const char *address, struct store_account *account_r)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(
	    store->db,
	    "SELECT id, address, password_hash, created FROM accounts "
	    "WHERE address = ?1 AND disabled = 0 "
	    "UNION ALL SELECT a.id, a.address, a.password_hash, a.created FROM aliases l "
	    "JOIN accounts a ON a.id = l.account_id WHERE l.address = ?1 AND a.disabled = 0 "
	    "LIMIT 1",
	    error, sizeof(error));

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	return store_account_step(store, st, account_r, "account-lookup");
}

int
store_account_get(struct store *store, int64_t id, struct store_account *account_r)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(store->db,
	                                 "SELECT id, address, password_hash, created FROM accounts "
	                                 "WHERE id = ?1",
	                                 error, sizeof(error));

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	return store_account_step(store, st, account_r, "account-get");
}

int
store_account_first(struct store *store, struct store_account *account_r)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(store->db,
	                                 "SELECT id, address, password_hash, created FROM accounts "
	                                 "WHERE disabled = 0 ORDER BY id LIMIT 1",
	                                 error, sizeof(error));

	if (st == NULL)
		return -1;
	return store_account_step(store, st, account_r, "account-first");
}

int
store_account_list(struct store *store, store_account_cb *cb, void *arg)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(
	    store->db, "SELECT id, address, password_hash, created FROM accounts ORDER BY address",
	    error, sizeof(error));
	struct store_account account;
	int rc;

	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		store_account_from_row(st, &account);
		cb(&account, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* --- aliases --- */

int
store_alias_add(struct store *store, const char *alias, const char *account_address, char *error,
                size_t errsize)
{
	sqlite3_stmt *st;
	int64_t id = 0;
	int rc;

	if (store_exec(store->db, "BEGIN IMMEDIATE", error, errsize) < 0)
		return -1;
	rc = store_account_id(store, account_address, &id, error, errsize);
	if (rc == 0)
		snprintf(error, errsize, "no account %s", account_address);
	if (rc <= 0)
		goto rollback;
	rc = store_address_taken(store, alias, error, errsize);
	if (rc > 0)
		snprintf(error, errsize, "address %s is already taken", alias);
	if (rc != 0) {
		rc = rc > 0 ? 0 : -1;
		goto rollback;
	}
	rc = -1;
	st = store_prepare(store->db, "INSERT INTO aliases (address, account_id) VALUES (?, ?)",
	                   error, errsize);
	if (st == NULL)
		goto rollback;
	sqlite3_bind_text(st, 1, alias, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, id);
	if (sqlite3_step(st) != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		sqlite3_finalize(st);
		goto rollback;
	}
	sqlite3_finalize(st);
	if (store_exec(store->db, "COMMIT", error, errsize) < 0)
		goto rollback;
	log_info("store event=alias-add alias=%s account=%lld", alias, (long long)id);
	return 1;
rollback:
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int
store_alias_del(struct store *store, const char *alias, char *error, size_t errsize)
{
	sqlite3_stmt *st =
	    store_prepare(store->db, "DELETE FROM aliases WHERE address = ?", error, errsize);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, alias, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		return -1;
	}
	if (sqlite3_changes(store->db) == 0) {
		snprintf(error, errsize, "no alias %s", alias);
		return 0;
	}
	log_info("store event=alias-del alias=%s", alias);
	return 1;
}

int
store_alias_list(struct store *store, int64_t account_id, store_alias_cb *cb, void *arg)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(
	    store->db, "SELECT address FROM aliases WHERE account_id = ? ORDER BY address", error,
	    sizeof(error));
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb((const char *)sqlite3_column_text(st, 0), arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* --- reading --- */

int
store_message_mime(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid,
                   unsigned char **blob_r, size_t *len_r)
{
	char error[256];
	sqlite3_stmt *st =
	    store_prepare(store->db,
	                  "SELECT m.mime FROM messages m JOIN mailboxes b ON m.mailbox_id = b.id "
	                  "WHERE b.account_id = ? AND b.name = ? AND m.uid = ?",
	                  error, sizeof(error));
	int rc;

	*blob_r = NULL;
	*len_r = 0;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(mailbox), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB) {
		const void *data = sqlite3_column_blob(st, 0);
		int len = sqlite3_column_bytes(st, 0);

		if (data != NULL && len > 0) {
			*blob_r = xmalloc((size_t)len);
			memcpy(*blob_r, data, (size_t)len);
			*len_r = (size_t)len;
		}
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_warnx("store event=message-mime error=\"%s\"", sqlite3_errmsg(store->db));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_message_open(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid)
{
	char error[256], path[PATH_MAX];
	sqlite3_stmt *st =
	    store_prepare(store->db,
	                  "SELECT m.path FROM messages m JOIN mailboxes b ON m.mailbox_id = b.id "
	                  "WHERE b.account_id = ? AND b.name = ? AND m.uid = ?",
	                  error, sizeof(error));
	int rc, fd;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(mailbox), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(path, sizeof(path), "%s/%s", store->dir, sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return -2;
	if (rc != SQLITE_ROW)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		log_warn("store event=message-open file=%s", path);
	return fd;
}

/* The columns store_mailbox_from_row() reads, for "FROM mailboxes b". */
#define STORE_MAILBOX_COLUMNS                                                                      \
	"SELECT b.id, b.name, b.special_use, b.uidvalidity, b.uidnext, b.highestmodseq, "          \
	"b.messages_count FROM mailboxes b "

/* Fills mb from a row of STORE_MAILBOX_COLUMNS. */
static void
store_mailbox_from_row(sqlite3_stmt *st, struct store_mailbox *mb)
{
	memset(mb, 0, sizeof(*mb));
	mb->id = sqlite3_column_int64(st, 0);
	store_column_text(st, 1, mb->name, sizeof(mb->name));
	store_column_text(st, 2, mb->special_use, sizeof(mb->special_use));
	mb->uidvalidity = (uint32_t)sqlite3_column_int64(st, 3);
	mb->uidnext = (uint32_t)sqlite3_column_int64(st, 4);
	mb->highestmodseq = (uint64_t)sqlite3_column_int64(st, 5);
	mb->messages = (uint32_t)sqlite3_column_int64(st, 6);
}

int
store_mailbox_get(struct store *store, int64_t account_id, const char *name,
                  struct store_mailbox *mailbox_r)
{
	char error[256];
	sqlite3_stmt *st =
	    store_prepare(store->db, STORE_MAILBOX_COLUMNS "WHERE b.account_id = ? AND b.name = ?",
	                  error, sizeof(error));
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(name), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		store_mailbox_from_row(st, mailbox_r);
	else if (rc != SQLITE_DONE)
		log_warnx("store event=mailbox-get error=\"%s\"", sqlite3_errmsg(store->db));
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_mailbox_list(struct store *store, int64_t account_id, store_mailbox_cb *cb, void *arg)
{
	char error[256];
	sqlite3_stmt *st =
	    store_prepare(store->db, STORE_MAILBOX_COLUMNS "WHERE b.account_id = ? ORDER BY b.id",
	                  error, sizeof(error));
	struct store_mailbox mb;
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		store_mailbox_from_row(st, &mb);
		cb(&mb, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_queue_list(struct store *store, store_queue_cb *cb, void *arg)
{
	char error[256];
	sqlite3_stmt *st = store_prepare(
	    store->db,
	    "SELECT id, mail_from, rcpt, created, next_attempt, attempts, status, size "
	    "FROM queue ORDER BY id",
	    error, sizeof(error));
	struct store_queue_entry e;
	int rc;

	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&e, 0, sizeof(e));
		e.id = sqlite3_column_int64(st, 0);
		store_column_text(st, 1, e.mail_from, sizeof(e.mail_from));
		store_column_text(st, 2, e.rcpt, sizeof(e.rcpt));
		e.created = sqlite3_column_int64(st, 3);
		e.next_attempt = sqlite3_column_int64(st, 4);
		e.attempts = sqlite3_column_int(st, 5);
		store_column_text(st, 6, e.status, sizeof(e.status));
		e.size = (uint64_t)sqlite3_column_int64(st, 7);
		cb(&e, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}
