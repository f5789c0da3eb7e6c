/* localstore: the client's mail as .eml files under HOME/mail/<account>/<folder>/, indexed in
 * HOME/index.db (SQLite in WAL mode, synchronous=FULL, versioned migrations).
 *
 * Adding a message: lstore_new_begin creates HOME/tmp/<unique> (O_EXCL, 0600, flock'ed while it
 * is being written) and hands out its descriptor, which stays owned by the lstore_new: callers
 * write into it but never close it. lstore_new_commit fsyncs the file, skips it when the remote
 * key is already known, parses it, renames it into place, fsyncs the directory and inserts the
 * row and its full-text entry in one transaction; if that transaction fails the file is removed
 * again. A crash leaves at most a file in tmp/ (removed by the next open once nobody holds its
 * lock) or a renamed file no row points to, never a row without its file.
 *
 * Paths are stored relative to HOME so the store can be moved. Search builds its SQL from fixed
 * fragments only; every user string is a bound parameter, and full-text terms are quoted as
 * FTS5 strings, so a query can never change the statement. */
#include "tern/localstore.h"
#include "tern/localstore_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <sqlite3.h>

#include "lib/log.h"
#include "lib/util.h"
#include "mime/summary.h"
#include "tern/render.h"

/* tmp/ files younger than this may belong to a writer that has not locked them yet. */
#define LSTORE_TMP_GRACE 60
#define LSTORE_MAX_TERMS 64
#define LSTORE_MAX_QUERY 4096

struct lstore_new {
	char name[96];
	char tmp_path[PATH_MAX];
	int fd;
};

static const char *const lstore_migrations[] = {
    /* 1: messages and their full-text index */
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  account TEXT NOT NULL DEFAULT '',"
    "  folder TEXT NOT NULL DEFAULT '',"
    "  remote_key TEXT,"
    "  message_id TEXT NOT NULL DEFAULT '',"
    "  from_addr TEXT NOT NULL DEFAULT '',"
    "  to_addr TEXT NOT NULL DEFAULT '',"
    "  subject TEXT NOT NULL DEFAULT '',"
    "  date INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  has_attachments INTEGER NOT NULL DEFAULT 0,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  path TEXT NOT NULL,"
    "  added INTEGER NOT NULL,"
    "  UNIQUE(account, remote_key));"
    "CREATE INDEX messages_date ON messages(date DESC, id DESC);"
    "CREATE INDEX messages_folder ON messages(account, folder, date DESC, id DESC);"
    "CREATE INDEX messages_message_id ON messages(message_id);"
    "CREATE VIRTUAL TABLE messages_fts USING fts5(subject, from_addr, to_addr, body,"
    "  tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
    "  DELETE FROM messages_fts WHERE rowid = old.id;"
    "END;",
    /* 2: more remote keys for a stored message (the same message seen over another protocol) */
    "CREATE TABLE remote_aliases ("
    "  account TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  message INTEGER NOT NULL,"
    "  PRIMARY KEY(account, remote_key));"
    "CREATE INDEX messages_account_size ON messages(account, size);"
    "CREATE TRIGGER messages_alias_delete AFTER DELETE ON messages BEGIN"
    "  DELETE FROM remote_aliases WHERE message = old.id;"
    "END;",
};

#define LSTORE_NMIGRATIONS ((int)(sizeof(lstore_migrations) / sizeof(lstore_migrations[0])))

#define LSTORE_COLUMNS                                                                             \
	"id, account, folder, remote_key, message_id, from_addr, to_addr, subject, date, size, "   \
	"has_attachments, flags, path"

/* Writes "a/b" into dst; -1 (ENAMETOOLONG) when it does not fit. */
static int
lstore_join(char *dst, size_t dstsize, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la + 1 + lb + 1 > dstsize) {
		errno = ENAMETOOLONG;
		if (dstsize > 0)
			dst[0] = '\0';
		return -1;
	}
	memcpy(dst, a, la);
	dst[la] = '/';
	memcpy(dst + la + 1, b, lb + 1);
	return 0;
}

static int
lstore_exec(sqlite3 *db, const char *sql, char *error, size_t errsize)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(error, errsize, "sqlite: %s", msg != NULL ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/* Reads the schema version, creating the version table (version 0) on a new database. */
static int
lstore_schema_version(sqlite3 *db, int *version_r, char *error, size_t errsize)
{
	sqlite3_stmt *st = NULL;

	if (lstore_exec(db,
	                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
	                "INSERT INTO schema_version (version) SELECT 0 "
	                "WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
	                error, errsize) < 0)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &st, NULL) !=
	    SQLITE_OK) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	*version_r = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return 0;
}

/* Applies each missing migration in its own transaction together with the version bump. */
static int
lstore_migrate(sqlite3 *db, char *error, size_t errsize)
{
	for (;;) {
		char sql[64];
		int version;

		if (lstore_exec(db, "BEGIN IMMEDIATE", error, errsize) < 0)
			return -1;
		if (lstore_schema_version(db, &version, error, errsize) < 0)
			goto fail;
		if (version > LSTORE_NMIGRATIONS) {
			snprintf(error, errsize,
			         "index schema version %d is newer than this program knows (%d)",
			         version, LSTORE_NMIGRATIONS);
			goto fail;
		}
		if (version == LSTORE_NMIGRATIONS)
			return lstore_exec(db, "COMMIT", error, errsize);
		snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", version + 1);
		if (lstore_exec(db, lstore_migrations[version], error, errsize) < 0 ||
		    lstore_exec(db, sql, error, errsize) < 0 ||
		    lstore_exec(db, "COMMIT", error, errsize) < 0)
			goto fail;
		log_debug("lstore event=migrate version=%d", version + 1);
	}
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* SQL function contains(haystack, needle): Unicode case-insensitive substring test. */
static void
lstore_sql_contains(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *hay = (const char *)sqlite3_value_text(argv[0]);
	const char *needle = (const char *)sqlite3_value_text(argv[1]);
	gchar *h, *n;

	/* GLib's case folding reads past the end of invalid UTF-8. */
	if (hay == NULL || needle == NULL || !g_utf8_validate(hay, -1, NULL) ||
	    !g_utf8_validate(needle, -1, NULL)) {
		sqlite3_result_int(ctx, 0);
		return;
	}
	h = g_utf8_casefold(hay, -1);
	n = g_utf8_casefold(needle, -1);
	sqlite3_result_int(ctx, strstr(h, n) != NULL);
	g_free(h);
	g_free(n);
}

/* Removes tmp/ files left by a crash: old enough and not locked by a live writer. */
static void
lstore_clean_tmp(const char *tmpdir)
{
	DIR *dir = opendir(tmpdir);
	struct dirent *de;
	int64_t now = time_now();

	if (dir == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		struct stat st;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(dir), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			/* A symlink or something else odd: not ours to keep either. */
			if (errno == ELOOP)
				unlinkat(dirfd(dir), de->d_name, 0);
			continue;
		}
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    now - (int64_t)st.st_mtime >= LSTORE_TMP_GRACE &&
		    flock(fd, LOCK_EX | LOCK_NB) == 0) {
			if (unlinkat(dirfd(dir), de->d_name, 0) == 0)
				log_debug("lstore event=tmp-removed file=%s", de->d_name);
		}
		close(fd);
	}
	closedir(dir);
}

int
lstore_open(const char *home, struct lstore **store_r, char *error, size_t errsize)
{
	struct lstore *store;
	char path[PATH_MAX + 32];

	*store_r = NULL;
	if (mkdir_p(home, 0700) < 0) {
		snprintf(error, errsize, "cannot create %s: %s", home, strerror(errno));
		return -1;
	}
	store = xcalloc(1, sizeof(*store));
	if (realpath(home, store->home) == NULL) {
		snprintf(error, errsize, "cannot resolve %s: %s", home, strerror(errno));
		free(store);
		return -1;
	}
	(void)lstore_join(path, sizeof(path), store->home, "tmp");
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(error, errsize, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	lstore_clean_tmp(path);
	(void)lstore_join(path, sizeof(path), store->home, "mail");
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(error, errsize, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	(void)lstore_join(path, sizeof(path), store->home, "index.db");
	if (sqlite3_open_v2(path, &store->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(error, errsize, "cannot open %s: %s", path,
		         store->db != NULL ? sqlite3_errmsg(store->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(store->db, 10000);
	sqlite3_extended_result_codes(store->db, 1);
	/* synchronous=FULL: a commit that returned survives a power cut. */
	if (lstore_exec(store->db,
	                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
	                error, errsize) < 0 ||
	    lstore_migrate(store->db, error, errsize) < 0)
		goto fail;
	if (sqlite3_create_function(store->db, "contains", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
	                            NULL, lstore_sql_contains, NULL, NULL) != SQLITE_OK) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
		goto fail;
	}
	*store_r = store;
	return 0;
fail:
	sqlite3_close(store->db);
	free(store);
	return -1;
}

void
lstore_close(struct lstore **store)
{
	if (*store == NULL)
		return;
	sqlite3_close((*store)->db);
	free(*store);
	*store = NULL;
}

int
lstore_new_begin(struct lstore *store, struct lstore_new **new_r, int *fd_r, char *error,
                 size_t errsize)
{
	static unsigned counter;
	struct lstore_new *n = xcalloc(1, sizeof(*n));

	*new_r = NULL;
	*fd_r = -1;
	/* Time, pid, a counter and randomness: unique across processes and restarts. */
	snprintf(n->name, sizeof(n->name), "%lld.%ld.%u.%08x", (long long)time_now(),
	         (long)getpid(), __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED),
	         (unsigned)g_random_int());
	if (lstore_join(n->tmp_path, sizeof(n->tmp_path), store->home, "tmp") < 0 ||
	    lstore_join(n->tmp_path, sizeof(n->tmp_path), n->tmp_path, n->name) < 0) {
		snprintf(error, errsize, "path too long under %s", store->home);
		free(n);
		return -1;
	}
	n->fd = open(n->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (n->fd < 0) {
		snprintf(error, errsize, "cannot create %s: %s", n->tmp_path, strerror(errno));
		free(n);
		return -1;
	}
	/* The lock tells lstore_clean_tmp in another process that this file is alive. */
	(void)flock(n->fd, LOCK_EX | LOCK_NB);
	*new_r = n;
	*fd_r = n->fd;
	return 0;
}

void
lstore_new_abort(struct lstore_new **new)
{
	if (*new == NULL)
		return;
	unlink((*new)->tmp_path);
	close((*new)->fd);
	free(*new);
	*new = NULL;
}

/* Turns an account or folder name into one safe directory name. */
static void
lstore_dir_name(const char *name, const char *fallback, char *dst, size_t dstsize)
{
	size_t n = 0;

	for (const char *p = name != NULL ? name : ""; *p != '\0' && n + 1 < dstsize; p++) {
		unsigned char c = (unsigned char)*p;
		bool ok = g_ascii_isalnum(c) || c == '-' || c == '_' || c == '+' || c == '@' ||
		          (c == '.' && n > 0);
		dst[n++] = ok ? (char)c : '_';
	}
	dst[n] = '\0';
	if (n == 0)
		str_copy(dst, fallback, dstsize);
}

/* Creates home/rel/a/b one level at a time, fsyncing a parent whenever it gains an entry. */
static int
lstore_make_dirs(const char *home, const char *a, const char *b, char *dir_r, size_t dirsize)
{
	char parent[PATH_MAX];

	if (lstore_join(parent, sizeof(parent), home, "mail") < 0 ||
	    lstore_join(dir_r, dirsize, parent, a) < 0)
		return -1;
	if (mkdir(dir_r, 0700) == 0) {
		if (fsync_dir(parent) < 0)
			return -1;
	} else if (errno != EEXIST) {
		return -1;
	}
	str_copy(parent, dir_r, sizeof(parent));
	if (lstore_join(dir_r, dirsize, parent, b) < 0)
		return -1;
	if (mkdir(dir_r, 0700) == 0) {
		if (fsync_dir(parent) < 0)
			return -1;
	} else if (errno != EEXIST) {
		return -1;
	}
	return 0;
}

/* Inserts the row and its search text in one transaction. Returns 1, 0 when the remote key
 * appeared meanwhile, or -1. */
static int
lstore_insert(struct lstore *store, const struct lstore_source *source, const char *folder,
              const struct mime_summary *sum, uint64_t size, const char *relpath, const char *body,
              int64_t *id_r, char *error, size_t errsize)
{
	static const char insert_sql[] =
	    "INSERT INTO messages (account, folder, remote_key, message_id, from_addr, to_addr,"
	    " subject, date, size, has_attachments, flags, path, added)"
	    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	static const char fts_sql[] =
	    "INSERT INTO messages_fts (rowid, subject, from_addr, to_addr, body)"
	    " VALUES (?, ?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	int rc, ret = -1;

	if (lstore_exec(store->db, "BEGIN IMMEDIATE", error, errsize) < 0)
		return -1;
	if (sqlite3_prepare_v2(store->db, insert_sql, -1, &st, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(st, 1, source->account != NULL ? source->account : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, folder, -1, SQLITE_STATIC);
	if (source->remote_key != NULL)
		sqlite3_bind_text(st, 3, source->remote_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sum->message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sum->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, sum->to, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, sum->subject, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, sum->date);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)size);
	sqlite3_bind_int(st, 10, sum->has_attachments);
	sqlite3_bind_int64(st, 11, source->flags);
	sqlite3_bind_text(st, 12, relpath, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 13, time_now());
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT_UNIQUE) {
		ret = 0;
		goto fail;
	}
	if (rc != SQLITE_DONE)
		goto sqlfail;
	*id_r = sqlite3_last_insert_rowid(store->db);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(store->db, fts_sql, -1, &st, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(st, 1, *id_r);
	sqlite3_bind_text(st, 2, sum->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sum->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sum->to, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, body, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(st);
	st = NULL;
	if (lstore_exec(store->db, "COMMIT", error, errsize) < 0)
		goto fail;
	return 1;
sqlfail:
	snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
fail:
	sqlite3_finalize(st);
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

int
lstore_new_commit(struct lstore *store, struct lstore_new **new, const struct lstore_source *source,
                  int64_t *id_r, char *error, size_t errsize)
{
	struct lstore_new *n = *new;
	struct mime_summary sum;
	char acct[64], fold[128], dir[PATH_MAX], final[PATH_MAX + 128];
	const char *folder;
	struct stat st;
	int64_t id = 0;
	char *body;
	int ret;

	*new = NULL;
	if (n == NULL || source == NULL) {
		snprintf(error, errsize, "no message in progress or no source");
		lstore_new_abort(&n);
		return -1;
	}
	folder = source->folder != NULL && source->folder[0] != '\0' ? source->folder : "INBOX";
	if (fsync(n->fd) < 0 || fstat(n->fd, &st) < 0) {
		snprintf(error, errsize, "cannot sync %s: %s", n->tmp_path, strerror(errno));
		goto drop;
	}
	if (source->remote_key != NULL) {
		ret = lstore_has_remote(store, source->account != NULL ? source->account : "",
		                        source->remote_key);
		if (ret != 0) {
			if (ret < 0)
				snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
			lstore_new_abort(&n);
			return ret > 0 ? 0 : -1;
		}
	}
	if (mime_summary_from_fd(n->fd, &sum) < 0) {
		snprintf(error, errsize, "cannot read %s: %s", n->tmp_path, strerror(errno));
		goto drop;
	}
	lstore_dir_name(source->account, "local", acct, sizeof(acct));
	lstore_dir_name(folder, "INBOX", fold, sizeof(fold));
	if (lstore_make_dirs(store->home, acct, fold, dir, sizeof(dir)) < 0) {
		snprintf(error, errsize, "cannot create %s: %s", dir, strerror(errno));
		goto drop;
	}
	if (lstore_join(final, sizeof(final), dir, n->name) < 0 ||
	    strlen(final) + 5 > sizeof(final)) {
		snprintf(error, errsize, "path too long under %s", dir);
		goto drop;
	}
	strcat(final, ".eml");
	if (rename(n->tmp_path, final) < 0) {
		snprintf(error, errsize, "cannot move %s into place: %s", n->tmp_path,
		         strerror(errno));
		goto drop;
	}
	if (fsync_dir(dir) < 0) {
		snprintf(error, errsize, "cannot sync %s: %s", dir, strerror(errno));
		unlink(final);
		goto drop;
	}
	body = render_index_text(final);
	ret = lstore_insert(store, source, folder, &sum, (uint64_t)st.st_size,
	                    final + strlen(store->home) + 1, body, &id, error, errsize);
	free(body);
	if (ret > 0 && id_r != NULL)
		*id_r = id;
	if (ret <= 0) {
		/* No row will ever point at the file: take it back out. */
		unlink(final);
		fsync_dir(dir);
	}
	close(n->fd);
	free(n);
	return ret;
drop:
	lstore_new_abort(&n);
	return -1;
}

/* Copies a text column, "" for NULL. */
static void
lstore_column_text(sqlite3_stmt *st, int col, char *dst, size_t dstsize)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	str_copy(dst, s != NULL ? s : "", dstsize);
}

/* Fills m from a row of LSTORE_COLUMNS. */
static void
lstore_row(struct lstore *store, sqlite3_stmt *st, struct lstore_message *m)
{
	const char *rel = (const char *)sqlite3_column_text(st, 12);

	memset(m, 0, sizeof(*m));
	m->id = sqlite3_column_int64(st, 0);
	lstore_column_text(st, 1, m->account, sizeof(m->account));
	lstore_column_text(st, 2, m->folder, sizeof(m->folder));
	lstore_column_text(st, 3, m->remote_key, sizeof(m->remote_key));
	lstore_column_text(st, 4, m->message_id, sizeof(m->message_id));
	lstore_column_text(st, 5, m->from, sizeof(m->from));
	lstore_column_text(st, 6, m->to, sizeof(m->to));
	lstore_column_text(st, 7, m->subject, sizeof(m->subject));
	m->date = sqlite3_column_int64(st, 8);
	m->size = (uint64_t)sqlite3_column_int64(st, 9);
	m->has_attachments = sqlite3_column_int(st, 10) != 0;
	m->flags = (uint32_t)sqlite3_column_int64(st, 11);
	if (rel != NULL && rel[0] == '/')
		str_copy(m->path, rel, sizeof(m->path));
	else
		(void)lstore_join(m->path, sizeof(m->path), store->home, rel != NULL ? rel : "");
}

/* A statement under construction: fixed SQL fragments and the values bound to them. */
struct lstore_query {
	GString *sql;
	GString *match; /* the FTS5 expression, "" when there are no free terms */
	struct {
		bool is_int;
		int64_t i;
		char *s;
	} params[LSTORE_MAX_TERMS + 4];
	int nparams;
};

static void
lstore_query_init(struct lstore_query *q)
{
	memset(q, 0, sizeof(*q));
	q->sql = g_string_new("SELECT " LSTORE_COLUMNS " FROM messages WHERE 1");
	q->match = g_string_new("");
}

static void
lstore_query_free(struct lstore_query *q)
{
	for (int i = 0; i < q->nparams; i++)
		g_free(q->params[i].s);
	g_string_free(q->sql, TRUE);
	g_string_free(q->match, TRUE);
}

/* Appends a fragment with one '?' bound to the text s. */
static void
lstore_query_text(struct lstore_query *q, const char *fragment, const char *s, size_t len)
{
	g_string_append(q->sql, fragment);
	q->params[q->nparams].is_int = false;
	q->params[q->nparams].s = g_strndup(s, len);
	q->nparams++;
}

static void
lstore_query_int(struct lstore_query *q, const char *fragment, int64_t v)
{
	g_string_append(q->sql, fragment);
	q->params[q->nparams].is_int = true;
	q->params[q->nparams].i = v;
	q->nparams++;
}

/* Runs the statement, newest first, calling cb per row. Returns the count or -1. */
static int
lstore_query_run(struct lstore *store, struct lstore_query *q, int limit, lstore_message_cb *cb,
                 void *arg, char *error, size_t errsize)
{
	struct lstore_message m;
	sqlite3_stmt *st = NULL;
	int rc, count = 0;

	if (q->match->len > 0)
		lstore_query_text(q,
		                  " AND id IN (SELECT rowid FROM messages_fts WHERE messages_fts "
		                  "MATCH ?)",
		                  q->match->str, q->match->len);
	g_string_append(q->sql, " ORDER BY date DESC, id DESC");
	if (limit > 0)
		lstore_query_int(q, " LIMIT ?", limit);
	if (sqlite3_prepare_v2(store->db, q->sql->str, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	for (int i = 0; i < q->nparams; i++) {
		if (q->params[i].is_int)
			sqlite3_bind_int64(st, i + 1, q->params[i].i);
		else
			sqlite3_bind_text(st, i + 1, q->params[i].s, -1, SQLITE_STATIC);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		lstore_row(store, st, &m);
		if (cb != NULL)
			cb(&m, arg);
		count++;
	}
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	return count;
fail:
	snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(store->db));
	sqlite3_finalize(st);
	return -1;
}

int
lstore_list(struct lstore *store, const struct lstore_filter *filter, lstore_message_cb *cb,
            void *arg)
{
	struct lstore_query q;
	char error[256];
	int ret;

	lstore_query_init(&q);
	if (filter != NULL && filter->account != NULL)
		lstore_query_text(&q, " AND account = ?", filter->account, strlen(filter->account));
	if (filter != NULL && filter->folder != NULL)
		lstore_query_text(&q, " AND folder = ?", filter->folder, strlen(filter->folder));
	if (filter != NULL && filter->unread_only)
		lstore_query_int(&q, " AND (flags & ?) = 0", LSTORE_FLAG_SEEN);
	ret = lstore_query_run(store, &q, filter != NULL ? filter->limit : 0, cb, arg, error,
	                       sizeof(error));
	if (ret < 0)
		log_warnx("lstore event=list-failed error=\"%s\"", error);
	lstore_query_free(&q);
	return ret;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t
lstore_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Parses exactly YYYY-MM-DD into seconds at UTC midnight; false when malformed. */
static bool
lstore_parse_date(const char *s, size_t len, int64_t *t_r)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, m, d, max;

	if (len != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (size_t i = 0; i < 10; i++) {
		if (i != 4 && i != 7 && !g_ascii_isdigit(s[i]))
			return false;
	}
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	m = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	if (m < 1 || m > 12 || d < 1)
		return false;
	max = mdays[m - 1];
	if (m == 2 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		max = 28;
	if (d > max)
		return false;
	*t_r = lstore_days_from_civil(y, m, d) * 86400;
	return true;
}

/* Adds one free word or phrase to the FTS5 expression as a quoted string ("" doubled). */
static bool
lstore_query_free_text(struct lstore_query *q, const char *s, size_t len, bool prefix)
{
	bool searchable = false;

	for (const char *p = s; p < s + len; p = g_utf8_next_char(p)) {
		if (g_unichar_isalnum(g_utf8_get_char_validated(p, s + len - p)))
			searchable = true;
	}
	/* Punctuation alone makes no token and would match nothing at all. */
	if (!searchable)
		return false;
	if (q->match->len > 0)
		g_string_append(q->match, " AND ");
	g_string_append_c(q->match, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			g_string_append_c(q->match, '"');
		g_string_append_c(q->match, s[i]);
	}
	g_string_append_c(q->match, '"');
	if (prefix)
		g_string_append_c(q->match, '*');
	return true;
}

#define LSTORE_FIELDS                                                                              \
	"from: to: subject: before: after: has:attachment is:unread is:read "                      \
	"folder: account:"

/* Adds the condition of field:value to q; -1 with error when field or value is not valid. */
static int
lstore_query_field(struct lstore_query *q, const char *field, size_t flen, const char *v,
                   size_t vlen, char *error, size_t errsize)
{
	static const struct {
		const char *name, *sql;
	} text_fields[] = {
	    {"from", " AND contains(from_addr, ?)"},  {"to", " AND contains(to_addr, ?)"},
	    {"subject", " AND contains(subject, ?)"}, {"folder", " AND folder = ? COLLATE NOCASE"},
	    {"account", " AND account = ?"},
	};
	int64_t t;

	for (size_t i = 0; i < G_N_ELEMENTS(text_fields); i++) {
		if (strlen(text_fields[i].name) == flen &&
		    g_ascii_strncasecmp(field, text_fields[i].name, flen) == 0) {
			lstore_query_text(q, text_fields[i].sql, v, vlen);
			return 0;
		}
	}
	if ((flen == 6 && g_ascii_strncasecmp(field, "before", 6) == 0) ||
	    (flen == 5 && g_ascii_strncasecmp(field, "after", 5) == 0)) {
		if (!lstore_parse_date(v, vlen, &t)) {
			snprintf(error, errsize, "bad date '%.*s' for '%.*s:'; use YYYY-MM-DD",
			         (int)MIN(vlen, 64), v, (int)flen, field);
			return -1;
		}
		/* after: includes its day, before: excludes it and undated messages (date 0). */
		lstore_query_int(q, flen == 6 ? " AND date != 0 AND date < ?" : " AND date >= ?",
		                 t);
		return 0;
	}
	if (flen == 3 && g_ascii_strncasecmp(field, "has", 3) == 0) {
		if ((vlen == 10 && g_ascii_strncasecmp(v, "attachment", 10) == 0) ||
		    (vlen == 11 && g_ascii_strncasecmp(v, "attachments", 11) == 0)) {
			g_string_append(q->sql, " AND has_attachments != 0");
			return 0;
		}
		snprintf(error, errsize, "unknown value 'has:%.*s'; use has:attachment",
		         (int)MIN(vlen, 64), v);
		return -1;
	}
	if (flen == 2 && g_ascii_strncasecmp(field, "is", 2) == 0) {
		static const struct {
			const char *name;
			uint32_t flag;
			bool set;
		} states[] = {
		    {"unread", LSTORE_FLAG_SEEN, false},
		    {"read", LSTORE_FLAG_SEEN, true},
		    {"seen", LSTORE_FLAG_SEEN, true},
		    {"flagged", LSTORE_FLAG_FLAGGED, true},
		    {"answered", LSTORE_FLAG_ANSWERED, true},
		};
		for (size_t i = 0; i < G_N_ELEMENTS(states); i++) {
			if (strlen(states[i].name) == vlen &&
			    g_ascii_strncasecmp(v, states[i].name, vlen) == 0) {
				lstore_query_int(q,
				                 states[i].set ? " AND (flags & ?) != 0"
				                               : " AND (flags & ?) = 0",
				                 states[i].flag);
				return 0;
			}
		}
		snprintf(
		    error, errsize,
		    "unknown value 'is:%.*s'; use is:unread, is:read, is:flagged or is:answered",
		    (int)MIN(vlen, 64), v);
		return -1;
	}
	snprintf(error, errsize, "unknown field '%.*s:'; fields are " LSTORE_FIELDS,
	         (int)MIN(flen, 64), field);
	return -1;
}

/* Parses query into q: a list of words, "phrases", field:value and field:"value". */
static int
lstore_query_parse(struct lstore_query *q, const char *query, char *error, size_t errsize)
{
	const char *p = query;
	int terms = 0, conditions = 0;

	if (strlen(query) > LSTORE_MAX_QUERY) {
		snprintf(error, errsize, "query too long (over %d bytes)", LSTORE_MAX_QUERY);
		return -1;
	}
	if (!g_utf8_validate(query, -1, NULL)) {
		snprintf(error, errsize, "query is not valid UTF-8");
		return -1;
	}
	for (;;) {
		const char *start, *field = NULL, *v;
		size_t flen = 0, vlen;
		bool quoted = false;

		while (g_ascii_isspace(*p))
			p++;
		if (*p == '\0')
			break;
		if (++terms > LSTORE_MAX_TERMS) {
			snprintf(error, errsize, "too many terms (over %d)", LSTORE_MAX_TERMS);
			return -1;
		}
		start = p;
		while (g_ascii_isalpha(*p))
			p++;
		if (p > start && *p == ':') {
			field = start;
			flen = (size_t)(p - start);
			p++;
		} else {
			p = start;
		}
		if (*p == '"') {
			const char *end = strchr(p + 1, '"');
			if (end == NULL) {
				snprintf(error, errsize, "unterminated quote in query");
				return -1;
			}
			v = p + 1;
			vlen = (size_t)(end - v);
			p = end + 1;
			quoted = true;
		} else {
			v = p;
			while (*p != '\0' && !g_ascii_isspace(*p))
				p++;
			vlen = (size_t)(p - v);
		}
		if (field != NULL) {
			if (vlen == 0) {
				snprintf(error, errsize, "missing value after '%.*s:'",
				         (int)MIN(flen, 64), field);
				return -1;
			}
			if (lstore_query_field(q, field, flen, v, vlen, error, errsize) < 0)
				return -1;
			conditions++;
		} else if (!quoted && vlen > 1 && v[vlen - 1] == '*') {
			conditions += lstore_query_free_text(q, v, vlen - 1, true);
		} else {
			conditions += lstore_query_free_text(q, v, vlen, false);
		}
	}
	if (conditions == 0) {
		snprintf(error, errsize,
		         "empty query: give words to find or fields (" LSTORE_FIELDS ")");
		return -1;
	}
	return 0;
}

int
lstore_search(struct lstore *store, const char *query, int limit, lstore_message_cb *cb, void *arg,
              char *error, size_t errsize)
{
	struct lstore_query q;
	int ret = -1;

	if (query == NULL)
		query = "";
	lstore_query_init(&q);
	if (lstore_query_parse(&q, query, error, errsize) == 0)
		ret = lstore_query_run(store, &q, limit, cb, arg, error, errsize);
	lstore_query_free(&q);
	return ret;
}

int
lstore_get(struct lstore *store, int64_t id, struct lstore_message *message_r)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(store->db, "SELECT " LSTORE_COLUMNS " FROM messages WHERE id = ?",
	                       -1, &st, NULL) != SQLITE_OK) {
		log_warnx("lstore event=get-failed error=\"%s\"", sqlite3_errmsg(store->db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		lstore_row(store, st, message_r);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Returns 1 changed (or already so), 0 no such id, -1 error. */
int
lstore_set_flags(struct lstore *store, int64_t id, uint32_t add, uint32_t remove)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(store->db,
	                       "UPDATE messages SET flags = (flags | ?) & ~? WHERE id = ?", -1, &st,
	                       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, add);
	sqlite3_bind_int64(st, 2, remove);
	sqlite3_bind_int64(st, 3, id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_warnx("lstore event=set-flags-failed id=%lld error=\"%s\"", (long long)id,
		          sqlite3_errmsg(store->db));
		return -1;
	}
	return sqlite3_changes(store->db) > 0 ? 1 : 0;
}
