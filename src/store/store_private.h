/* store internals shared by store.c (accounts, reads), store_read.c (message lists and scans,
 * counters), store_blob.c (the commit pipeline),
 * store_update.c (flag changes, expunges, COPY/MOVE, keywords), store_mailbox.c (mailbox
 * management, also a job of the committer) and store_schema.c (connections and migrations). Nothing
 * outside src/store includes this. */
#ifndef TERN_STORE_PRIVATE_H
#define TERN_STORE_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

struct store_pipeline;
struct store_search;
struct store_search_text;

/* Room left under PATH_MAX for "/mail/<id>/<unique>-<n>.eml" and the like. */
#define STORE_DIR_MAX (PATH_MAX - 256)

/* Prepared statements of a connection that writes messages (the committer thread's, or the main
 * one when commits are synchronous). */
struct store_writer {
	sqlite3 *db;
	sqlite3_stmt *mailbox_find; /* (account_id, name) -> id, highestmodseq, uidvalidity */
	sqlite3_stmt
	    *mailbox_bump; /* (id, n) -> first of n new UIDs, the new MODSEQ, uidvalidity */
	sqlite3_stmt *message_insert;
	sqlite3_stmt *queue_insert;
	sqlite3_stmt *message_get;     /* (mailbox_id, uid) -> flags, keywords, modseq */
	sqlite3_stmt *message_set;     /* (mailbox_id, uid, flags, keywords, modseq) */
	sqlite3_stmt *message_expunge; /* (mailbox_id, uid) -> path */
	sqlite3_stmt *modseq_set;      /* (mailbox_id, highestmodseq) */
	sqlite3_stmt *copy_source;     /* (mailbox_id, uid) -> id, path */
	sqlite3_stmt *copy_insert;     /* (source id, dst mailbox, uid, modseq, path) */
	sqlite3_stmt *move_row;        /* (id, dst mailbox, uid, modseq) */
	/* The search index (store_search.c). */
	sqlite3_stmt *text_insert;   /* (id, subject, from, to, cc, bcc, headers, body) */
	sqlite3_stmt *text_copy;     /* (source id, copy's id) */
	sqlite3_stmt *pending_clear; /* (id): indexed in full */
	sqlite3_stmt *pending_set;   /* (id, state): indexed in part, or never */
	sqlite3_stmt *pending_copy;  /* (source id, copy's id): the source's state */
	sqlite3_stmt *pending_list;  /* (after id, limit) -> id, path, mime IS NULL of rows not
	                              * indexed */
	sqlite3_stmt *mime_set;      /* (id, mime): a structure the row lacked (backfill) */
	int64_t pending_after;       /* the backfill's cursor */
};

/* A write for the committer other than a delivery: flag changes and expunges, COPY/MOVE
 * (store_update.c). */
struct store_update;

struct store {
	char dir[STORE_DIR_MAX];
	char tmp_dir[STORE_DIR_MAX + 8];
	sqlite3 *db; /* the owning thread's connection: reads, account writes, sync commits */
	struct workers *workers;
	struct store_writer *sync_writer; /* lazily prepared on db when workers == NULL */
	struct store_pipeline *pipeline;  /* NULL when workers == NULL */
	struct store_search *search;      /* the search index's read side (any thread) */
};

/* Opens (or creates) the database file at path with the store's pragmas (WAL, synchronous=FULL,
 * foreign keys, busy timeout). Returns 0 or -1 with error. */
int store_db_open(const char *path, bool create, sqlite3 **db_r, char *error, size_t errsize);
/* Applies every migration newer than the database's schema_version, one transaction each. */
int store_schema_migrate(sqlite3 *db, char *error, size_t errsize);
/* The schema version the code knows (the number of migrations). */
int store_schema_latest(void);

/* At the daemon's start (store_sweep.c): removes every file in DIR/tmp and every file of
 * DIR/mail/<account>/ and DIR/queue/ that no row names, logging the counts. 0 or -1 with error. */
int store_sweep(struct store *store, char *error, size_t errsize);

/* Prepares the writer statements on db. Returns NULL with error on failure. */
struct store_writer *store_writer_new(sqlite3 *db, char *error, size_t errsize);
void store_writer_free(struct store_writer **writer);

/* Starts the sync threads and the committer (workers != NULL). Returns 0 or -1 with error. */
int store_pipeline_start(struct store *store, char *error, size_t errsize);
/* Waits until every commit handed over has been posted back, then stops the threads. */
void store_pipeline_stop(struct store *store);

/* The writer for synchronous work (no workers) on the store's own connection, prepared on first
 * use. NULL with error on failure. */
struct store_writer *store_sync_writer(struct store *store, char *error, size_t errsize);
/* Hands an update to the committer's queue (store->pipeline != NULL). */
void store_pipeline_push_update(struct store *store, struct store_update *u);
/* The link of u in the committer's queue. */
struct store_update **store_update_nextp(struct store_update *u);
/* Runs the updates linked from list in one transaction on w (a savepoint each, so one failing
 * update does not sink the others), then posts each callback to the loop thread (runs it at
 * once without workers); the updates then belong to their callbacks. Returns how many ran. */
size_t store_update_run_list(struct store *store, struct store_writer *w,
                             struct store_update *list);

/* A mailbox-management job (store_mailbox.c): CREATE, DELETE, RENAME, (UN)SUBSCRIBE. */
struct store_mbox_job;
/* Hands a mailbox job to the committer's queue (store->pipeline != NULL). */
void store_pipeline_push_mbox(struct store *store, struct store_mbox_job *job);
/* The link of job in the committer's queue. */
struct store_mbox_job **store_mbox_nextp(struct store_mbox_job *job);
/* Runs the jobs linked from list in one transaction on db (a savepoint each), unlinks deleted
 * mailboxes' files after the commit, then posts each callback to the loop thread (post) or runs
 * it at once; the jobs are freed after their callbacks. Returns how many ran. */
size_t store_mbox_run_list(struct store *store, sqlite3 *db, struct store_mbox_job *list,
                           bool post);

/* Keywords (IMAP flag-keywords): a space-separated list, unique case-insensitively, each an atom
 * without '\\' of at most STORE_KEYWORD_MAX bytes, the whole under STORE_KEYWORDS_MAX.
 * Normalizes list (NULL is "") into out (STORE_KEYWORDS_MAX bytes): one space between
 * keywords, duplicates dropped. 0, or -1 with error (an invalid keyword, too many). */
int store_keywords_normalize(const char *list, char *out, char *error, size_t errsize);
/* Applies kw_replace/kw_add/kw_remove to kw (STORE_KEYWORDS_MAX bytes, normalized) in place.
 * 0, or -1 with error (kw is then unchanged). */
int store_keywords_apply(char *kw, const char *replace, const char *add, const char *remove,
                         char *error, size_t errsize);

/* Takes the next UIDVALIDITY from the store-wide counter inside the caller's transaction:
 * max(counter + 1, now), stored back, so no value is ever given twice. 0 or -1 with error. */
int store_uidvalidity_next(sqlite3 *db, uint32_t *uidvalidity_r, char *error, size_t errsize);
/* Prepares sql on db; on failure writes sqlite's message to error and returns NULL. */
sqlite3_stmt *store_prepare(sqlite3 *db, const char *sql, char *error, size_t errsize);
/* Copies a text column into a fixed buffer ("" for NULL). */
void store_column_text(sqlite3_stmt *st, int col, char *dst, size_t dstsize);
/* A name never used before in this data dir (for blob files and copies' links). */
void store_unique_name(char *buf, size_t bufsize);

/* The search index (store_search.c; the design is described at the top of that file). */
/* The read side for SEARCH's workers on the database at dbpath (opened on first use). */
struct store_search *store_search_new(const char *dbpath);
/* Drops a reference (the store's, or a snapshot's); the last one closes the connections. */
void store_search_unref(struct store_search **ss);
/* The searchable text of the message in fd (pread; any thread), or NULL when its header
 * cannot be read. */
struct store_search_text *store_search_text_build(int fd);
void store_search_text_free(struct store_search_text **t);
/* In the writer's transaction: indexes message row id with t (and takes it off the to-do
 * list, or marks it indexed in part). 0 or -1 (sqlite's error on w->db). */
int store_search_text_insert(struct store_writer *w, int64_t id, const struct store_search_text *t);
/* In the writer's transaction: gives a copied row (dst_id) the index rows of its source. */
int store_search_copy(struct store_writer *w, int64_t src_id, int64_t dst_id);
/* Indexes up to max rows not indexed yet (from before the index existed), in one transaction
 * of its own on w, reading their files. Returns how many rows it looked at (0: a pass over
 * every row is complete), or -1 on error. The committer's thread. */
int store_search_backfill(struct store *store, struct store_writer *w, size_t max);

/* Canonical mailbox name: "INBOX" in any case becomes "INBOX"; other names are kept. */
const char *store_mailbox_name(const char *name);
/* Runs one SQL statement without results; 0 or -1 with error (sqlite's message). */
int store_exec(sqlite3 *db, const char *sql, char *error, size_t errsize);

#endif
