/* store_schema: SQLite connections with the store's pragmas, and versioned schema migrations.
 *
 * Each entry of store_migrations[] moves the schema from version i to i + 1 and runs in one
 * transaction together with the schema_version update, so a crash never leaves a half-applied
 * migration. Never edit a released migration: append a new one. */
#include "store/store_private.h"

#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

static const char *const store_migrations[] = {
    /* 1: accounts, aliases, mailboxes, messages, outbound queue */
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY,"
    "  address TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  password_hash TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE aliases ("
    "  address TEXT PRIMARY KEY COLLATE NOCASE,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE);"
    "CREATE INDEX aliases_account ON aliases(account_id);"
    "CREATE TABLE mailboxes ("
    "  id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  special_use TEXT NOT NULL DEFAULT '',"
    "  uidvalidity INTEGER NOT NULL,"
    "  uidnext INTEGER NOT NULL DEFAULT 1,"
    "  highestmodseq INTEGER NOT NULL DEFAULT 0,"
    "  subscribed INTEGER NOT NULL DEFAULT 1,"
    "  UNIQUE(account_id, name));"
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  keywords TEXT NOT NULL DEFAULT '',"
    "  internal_date INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  from_addr TEXT NOT NULL DEFAULT '',"
    "  to_addr TEXT NOT NULL DEFAULT '',"
    "  subject TEXT NOT NULL DEFAULT '',"
    "  date_hdr INTEGER NOT NULL DEFAULT 0,"
    "  message_id TEXT NOT NULL DEFAULT '',"
    "  has_attachments INTEGER NOT NULL DEFAULT 0,"
    "  recalled INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE(mailbox_id, uid));"
    "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);"
    "CREATE INDEX messages_message_id ON messages(message_id);"
    "CREATE TABLE queue ("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT NOT NULL,"
    "  mail_from TEXT NOT NULL,"
    "  rcpt TEXT NOT NULL,"
    "  account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,"
    "  created INTEGER NOT NULL,"
    "  next_attempt INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  status TEXT NOT NULL DEFAULT 'queued',"
    "  size INTEGER NOT NULL);"
    "CREATE INDEX queue_due ON queue(status, next_attempt);"
    "CREATE INDEX queue_account ON queue(account_id);",
    /* 2: the size as POP3 and IMAP send it (bare LF counted as CRLF); older rows were stored
     * with CRLF line ends (SMTP refuses bare LF), so their size is that size. */
    "ALTER TABLE messages ADD COLUMN size_crlf INTEGER NOT NULL DEFAULT 0;"
    "UPDATE messages SET size_crlf = size;",
    /* 3: IMAP completion. The MIME structure kept with each row (mimestruct's serialized form;
     * NULL for rows stored before, which readers rebuild from the file). A store-wide counter
     * for UIDVALIDITY, started past every value given so far, so a mailbox deleted and created
     * again never sees an old value even within one second. Subscriptions by name (RFC 3501
     * LSUB: they outlive the mailbox), seeded from mailboxes.subscribed, which is no longer
     * read. */
    "ALTER TABLE messages ADD COLUMN mime BLOB;"
    "CREATE TABLE counters ("
    "  name TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL);"
    "INSERT INTO counters (name, value) "
    "  SELECT 'uidvalidity', coalesce(max(uidvalidity), 0) FROM mailboxes;"
    "CREATE TABLE subscriptions ("
    "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  PRIMARY KEY (account_id, name));"
    "INSERT INTO subscriptions (account_id, name) "
    "  SELECT account_id, name FROM mailboxes WHERE subscribed = 1;",
    /* 4: mailbox ids are never reused (AUTOINCREMENT). Without it SQLite gave a deleted
     * mailbox's id to the next CREATE of any account, and what is kept per mailbox id outside
     * the row (IMAP's Recent flag, sessions' notify subscriptions) followed it. SQLite cannot add
     * AUTOINCREMENT to a table: rebuild it (foreign keys are off while migrating, so dropping
     * the old table cascades nothing and messages keep referring to "mailboxes"). */
    "CREATE TABLE mailboxes_new ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  special_use TEXT NOT NULL DEFAULT '',"
    "  uidvalidity INTEGER NOT NULL,"
    "  uidnext INTEGER NOT NULL DEFAULT 1,"
    "  highestmodseq INTEGER NOT NULL DEFAULT 0,"
    "  subscribed INTEGER NOT NULL DEFAULT 1,"
    "  UNIQUE(account_id, name));"
    "INSERT INTO mailboxes_new (id, account_id, name, special_use, uidvalidity, uidnext,"
    "  highestmodseq, subscribed) SELECT id, account_id, name, special_use, uidvalidity,"
    "  uidnext, highestmodseq, subscribed FROM mailboxes;"
    "DROP TABLE mailboxes;"
    "ALTER TABLE mailboxes_new RENAME TO mailboxes;"
    /* ... and the UIDs that left a mailbox, with the MODSEQ of the update that removed them,
     * for QRESYNC's VANISHED (EARLIER) (RFC 7162 3.2.5): kept by triggers, so every path that
     * deletes or moves a row (IMAP EXPUNGE/MOVE, POP3) records it. The update raises
     * HIGHESTMODSEQ to highestmodseq + 1 after deleting (a move within one mailbox gives the
     * row that new value first). No foreign key: rows of a mailbox being deleted are not
     * recorded (its row is already gone when the cascade runs) and the rest go with it. */
    "CREATE TABLE expunged ("
    "  mailbox_id INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;"
    "CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);"
    "CREATE TRIGGER messages_expunged AFTER DELETE ON messages "
    "  WHEN EXISTS (SELECT 1 FROM mailboxes WHERE id = OLD.mailbox_id) BEGIN"
    "  INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq)"
    "    SELECT OLD.mailbox_id, OLD.uid, highestmodseq + 1 FROM mailboxes"
    "    WHERE id = OLD.mailbox_id;"
    "  END;"
    "CREATE TRIGGER messages_moved AFTER UPDATE OF mailbox_id, uid ON messages "
    "  WHEN OLD.mailbox_id != NEW.mailbox_id OR OLD.uid != NEW.uid BEGIN"
    "  INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq)"
    "    SELECT OLD.mailbox_id, OLD.uid,"
    "      CASE WHEN OLD.mailbox_id = NEW.mailbox_id THEN NEW.modseq"
    "      ELSE highestmodseq + 1 END FROM mailboxes WHERE id = OLD.mailbox_id;"
    "  END;"
    "CREATE TRIGGER mailboxes_expunged AFTER DELETE ON mailboxes BEGIN"
    "  DELETE FROM expunged WHERE mailbox_id = OLD.id;"
    "  END;",
    /* 5: counters on the mailbox row, so STATUS, LIST-STATUS and LIST read one row instead of
     * every message: messages not recalled, those of them without \Seen (flag bit 1,
     * STORE_FLAG_SEEN) and the sum of their sizes as IMAP and POP3 send them (size_crlf).
     * (UIDNEXT and HIGHESTMODSEQ already live on the row.) Kept by triggers in the transaction
     * of each change, as the expunged table is, so every path that writes messages (deliveries,
     * COPY/MOVE, STORE, EXPUNGE, POP3, RENAME INBOX, the CLI) keeps them exact; a flag change
     * that leaves \Seen alone does not fire. Rows of a mailbox being deleted update nothing
     * (its row is gone). Existing data is counted once here. */
    "ALTER TABLE mailboxes ADD COLUMN messages_count INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE mailboxes ADD COLUMN unseen_count INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE mailboxes ADD COLUMN size_sum INTEGER NOT NULL DEFAULT 0;"
    "UPDATE mailboxes SET"
    "  messages_count = (SELECT count(*) FROM messages m"
    "    WHERE m.mailbox_id = mailboxes.id AND m.recalled = 0),"
    "  unseen_count = (SELECT count(*) FROM messages m"
    "    WHERE m.mailbox_id = mailboxes.id AND m.recalled = 0 AND (m.flags & 1) = 0),"
    "  size_sum = (SELECT coalesce(sum(m.size_crlf), 0) FROM messages m"
    "    WHERE m.mailbox_id = mailboxes.id AND m.recalled = 0);"
    "CREATE TRIGGER messages_count_insert AFTER INSERT ON messages"
    "  WHEN NEW.recalled = 0 BEGIN"
    "  UPDATE mailboxes SET messages_count = messages_count + 1,"
    "    unseen_count = unseen_count + ((NEW.flags & 1) = 0),"
    "    size_sum = size_sum + NEW.size_crlf WHERE id = NEW.mailbox_id;"
    "  END;"
    "CREATE TRIGGER messages_count_delete AFTER DELETE ON messages"
    "  WHEN OLD.recalled = 0 BEGIN"
    "  UPDATE mailboxes SET messages_count = messages_count - 1,"
    "    unseen_count = unseen_count - ((OLD.flags & 1) = 0),"
    "    size_sum = size_sum - OLD.size_crlf WHERE id = OLD.mailbox_id;"
    "  END;"
    "CREATE TRIGGER messages_count_update"
    "  AFTER UPDATE OF mailbox_id, flags, recalled, size_crlf ON messages"
    "  WHEN OLD.mailbox_id != NEW.mailbox_id OR OLD.recalled != NEW.recalled"
    "    OR OLD.size_crlf != NEW.size_crlf OR (OLD.flags & 1) != (NEW.flags & 1) BEGIN"
    "  UPDATE mailboxes SET messages_count = messages_count - (OLD.recalled = 0),"
    "    unseen_count = unseen_count - (OLD.recalled = 0 AND (OLD.flags & 1) = 0),"
    "    size_sum = size_sum - (OLD.recalled = 0) * OLD.size_crlf WHERE id = OLD.mailbox_id;"
    "  UPDATE mailboxes SET messages_count = messages_count + (NEW.recalled = 0),"
    "    unseen_count = unseen_count + (NEW.recalled = 0 AND (NEW.flags & 1) = 0),"
    "    size_sum = size_sum + (NEW.recalled = 0) * NEW.size_crlf WHERE id = NEW.mailbox_id;"
    "  END;",
    /* 6: the search index (store_search.c): the decoded, case-folded text of each message in
     * an FTS5 table with the trigram tokenizer (substring queries; no positions: a query asks
     * for every trigram of the needle, a superset that the matcher narrows), keyed by
     * messages.id, and
     * the rows it cannot answer for (state 0: not indexed, every row stored before this
     * migration until the committer's backfill reaches it; 1: body indexed in part; 2: never
     * indexed, a header bomb). Triggers
     * put every new row on that list (the writer that indexes it takes it off in the same
     * transaction) and delete a row's index entries with the row. */
    "CREATE VIRTUAL TABLE message_text USING fts5("
    "  subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body,"
    "  tokenize = 'trigram case_sensitive 0', detail = column);"
    "CREATE TABLE message_text_pending ("
    "  id INTEGER PRIMARY KEY,"
    "  state INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO message_text_pending (id) SELECT id FROM messages;"
    "CREATE TRIGGER messages_text_insert AFTER INSERT ON messages BEGIN"
    "  INSERT OR REPLACE INTO message_text_pending (id, state) VALUES (NEW.id, 0);"
    "  END;"
    "CREATE TRIGGER messages_text_delete AFTER DELETE ON messages BEGIN"
    "  DELETE FROM message_text WHERE rowid = OLD.id;"
    "  DELETE FROM message_text_pending WHERE id = OLD.id;"
    "  END;",
};

#define STORE_NMIGRATIONS (sizeof(store_migrations) / sizeof(store_migrations[0]))

int
store_schema_latest(void)
{
	return (int)STORE_NMIGRATIONS;
}

int
store_exec(sqlite3 *db, const char *sql, char *error, size_t errsize)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(error, errsize, "sqlite: %s", msg != NULL ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

int
store_db_open(const char *path, bool create, sqlite3 **db_r, char *error, size_t errsize)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	sqlite3 *db = NULL;

	*db_r = NULL;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		snprintf(error, errsize, "cannot open %s: %s", path,
		         db != NULL ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 10000);
	sqlite3_extended_result_codes(db, 1);
	/* synchronous=FULL: a commit that returned is on disk (durability contract). */
	if (store_exec(db,
	               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
	               error, errsize) < 0) {
		sqlite3_close(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

/* Reads the current version; creates the version table (version 0) on a new database. */
static int
store_schema_version(sqlite3 *db, int *version_r, char *error, size_t errsize)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (store_exec(db,
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
	rc = sqlite3_step(st);
	*version_r = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return 0;
}

/* After a migration, inside its transaction: every foreign key still holds (they are off
 * while migrating, see store_schema_migrate). 0 or -1. */
static int
store_schema_fk_check(sqlite3 *db, char *error, size_t errsize)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK) {
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(error, errsize, "migration broke a foreign key in table %s",
		         (const char *)sqlite3_column_text(st, 0));
	else if (rc != SQLITE_DONE)
		snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int store_schema_migrate_steps(sqlite3 *db, char *error, size_t errsize);

/* Foreign keys are off while migrating (SQLite's procedure for rebuilding a table: the pragma
 * is a no-op inside a transaction, so it is set around them) and checked before each commit. */
int
store_schema_migrate(sqlite3 *db, char *error, size_t errsize)
{
	int r;

	if (store_exec(db, "PRAGMA foreign_keys=OFF", error, errsize) < 0)
		return -1;
	r = store_schema_migrate_steps(db, error, errsize);
	if (store_exec(db, "PRAGMA foreign_keys=ON", error, errsize) < 0)
		return -1;
	return r;
}

static int
store_schema_migrate_steps(sqlite3 *db, char *error, size_t errsize)
{
	int version;

	if (store_exec(db, "BEGIN IMMEDIATE", error, errsize) < 0)
		return -1;
	if (store_schema_version(db, &version, error, errsize) < 0 ||
	    store_exec(db, "COMMIT", error, errsize) < 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (version > (int)STORE_NMIGRATIONS) {
		snprintf(error, errsize,
		         "database schema version %d is newer than this program knows (%d)",
		         version, (int)STORE_NMIGRATIONS);
		return -1;
	}
	while (version < (int)STORE_NMIGRATIONS) {
		char sql[64];
		int current;

		if (store_exec(db, "BEGIN IMMEDIATE", error, errsize) < 0)
			return -1;
		/* Another process may have migrated between our read and this lock. */
		if (store_schema_version(db, &current, error, errsize) < 0)
			goto fail;
		if (current != version) {
			if (store_exec(db, "COMMIT", error, errsize) < 0)
				goto fail;
			version = current;
			continue;
		}
		snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", version + 1);
		if (store_exec(db, store_migrations[version], error, errsize) < 0 ||
		    store_schema_fk_check(db, error, errsize) < 0 ||
		    store_exec(db, sql, error, errsize) < 0 ||
		    store_exec(db, "COMMIT", error, errsize) < 0)
			goto fail;
		log_info("store event=migrate version=%d", version + 1);
		version++;
	}
	return 0;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}
