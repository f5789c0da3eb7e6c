/* store internals shared by store.c (accounts, reads), store_blob.c (the commit pipeline) and
 * store_schema.c (connections and migrations). Nothing outside src/store includes this. */
#ifndef TERN_STORE_PRIVATE_H
#define TERN_STORE_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

struct store_pipeline;

/* Room left under PATH_MAX for "/mail/<id>/<unique>-<n>.eml" and the like. */
#define STORE_DIR_MAX (PATH_MAX - 256)

/* Prepared statements of a connection that writes messages (the committer thread's, or the main
 * one when commits are synchronous). */
struct store_writer {
	sqlite3 *db;
	sqlite3_stmt *mailbox_find; /* (account_id, name) -> id, highestmodseq */
	sqlite3_stmt *mailbox_bump; /* id -> uid, modseq */
	sqlite3_stmt *message_insert;
	sqlite3_stmt *queue_insert;
	sqlite3_stmt *flags_set;       /* (mailbox_id, uid, add, remove, modseq), only on change */
	sqlite3_stmt *message_expunge; /* (mailbox_id, uid) -> path */
	sqlite3_stmt *modseq_set;      /* (mailbox_id, highestmodseq) */
};

struct store {
	char dir[STORE_DIR_MAX];
	char tmp_dir[STORE_DIR_MAX + 8];
	sqlite3 *db; /* the owning thread's connection: reads, account writes, sync commits */
	struct workers *workers;
	struct store_writer *sync_writer; /* lazily prepared on db when workers == NULL */
	struct store_pipeline *pipeline;  /* NULL when workers == NULL */
};

/* Opens (or creates) the database file at path with the store's pragmas (WAL, synchronous=FULL,
 * foreign keys, busy timeout). Returns 0 or -1 with error. */
int store_db_open(const char *path, bool create, sqlite3 **db_r, char *error, size_t errsize);
/* Applies every migration newer than the database's schema_version, one transaction each. */
int store_schema_migrate(sqlite3 *db, char *error, size_t errsize);
/* The schema version the code knows (the number of migrations). */
int store_schema_latest(void);

/* Prepares the writer statements on db. Returns NULL with error on failure. */
struct store_writer *store_writer_new(sqlite3 *db, char *error, size_t errsize);
void store_writer_free(struct store_writer **writer);

/* Starts the sync threads and the committer (workers != NULL). Returns 0 or -1 with error. */
int store_pipeline_start(struct store *store, char *error, size_t errsize);
/* Waits until every commit handed over has been posted back, then stops the threads. */
void store_pipeline_stop(struct store *store);

/* Canonical mailbox name: "INBOX" in any case becomes "INBOX"; other names are kept. */
const char *store_mailbox_name(const char *name);
/* Runs one SQL statement without results; 0 or -1 with error (sqlite's message). */
int store_exec(sqlite3 *db, const char *sql, char *error, size_t errsize);

#endif
