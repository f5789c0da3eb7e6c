/* store_read: the read side of a mailbox's messages: lists with their summaries
 * (store_message_list and UID ranges of it), the lean scans that protocol snapshots and resyncs
 * use (store_message_scan: no header copies; UID or MODSEQ ranges through an index), the UIDs
 * that left (store_expunged_list) and the counters kept on the mailbox row
 * (store_mailbox_counts). Everything here runs on the connection of the store's own thread. */
#include "store/store_private.h"

#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

/* Finds the id of account's mailbox. 1 found, 0 none, -1 error. */
static int
store_mailbox_id(struct store *store, int64_t account_id, const char *mailbox, int64_t *id_r)
{
	char error[256];
	sqlite3_stmt *st =
	    store_prepare(store->db, "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?",
	                  error, sizeof(error));
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, account_id);
	sqlite3_bind_text(st, 2, store_mailbox_name(mailbox), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*id_r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Prepares sql for account's mailbox, its id bound to the first parameter (and stored in
 * *id_r). 1, 0 no such mailbox, -1 error. */
static int
store_mailbox_prepare(struct store *store, int64_t account_id, const char *mailbox, int64_t *id_r,
                      const char *sql, sqlite3_stmt **st_r)
{
	char error[256];
	int64_t mailbox_id = 0;
	int rc;

	*st_r = NULL;
	rc = store_mailbox_id(store, account_id, mailbox, &mailbox_id);
	if (rc <= 0)
		return rc;
	*id_r = mailbox_id;
	*st_r = store_prepare(store->db, sql, error, sizeof(error));
	if (*st_r == NULL)
		return -1;
	sqlite3_bind_int64(*st_r, 1, mailbox_id);
	return 1;
}

int
store_expunged_list(struct store *store, int64_t account_id, const char *mailbox, uint64_t since,
                    store_expunged_cb *cb, void *arg)
{
	sqlite3_stmt *st;
	int64_t mailbox_id;
	int rc;

	rc = store_mailbox_prepare(store, account_id, mailbox, &mailbox_id,
	                           "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND "
	                           "modseq > ? ORDER BY uid",
	                           &st);
	if (rc <= 0)
		return rc;
	sqlite3_bind_int64(st, 2, since > INT64_MAX ? INT64_MAX : (int64_t)since);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb((uint32_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
		   arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 1 : -1;
}

/* SQLite's LIMIT for "no limit", and a UID bound above every UID. */
#define STORE_NO_LIMIT (-1)
#define STORE_UID_NONE ((int64_t)UINT32_MAX + 1)

int
store_message_list_range(struct store *store, int64_t account_id, const char *mailbox,
                         uint32_t uid_after, uint32_t uid_below, size_t limit, store_message_cb *cb,
                         void *arg)
{
	struct store_message m;
	sqlite3_stmt *st;
	int64_t mailbox_id;
	int rc;

	rc = store_mailbox_prepare(
	    store, account_id, mailbox, &mailbox_id,
	    "SELECT id, uid, modseq, flags, internal_date, size, from_addr, to_addr, subject, "
	    "date_hdr, message_id, has_attachments, size_crlf, recalled, keywords FROM messages "
	    "WHERE mailbox_id = ?1 AND uid > ?2 AND uid < ?3 ORDER BY uid LIMIT ?4",
	    &st);
	if (rc <= 0)
		return rc;
	sqlite3_bind_int64(st, 2, uid_after);
	sqlite3_bind_int64(st, 3, uid_below > 0 ? (int64_t)uid_below : STORE_UID_NONE);
	sqlite3_bind_int64(st, 4, limit > 0 && limit < INT64_MAX ? (int64_t)limit : STORE_NO_LIMIT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&m, 0, sizeof(m));
		m.id = sqlite3_column_int64(st, 0);
		m.mailbox_id = mailbox_id;
		m.uid = (uint32_t)sqlite3_column_int64(st, 1);
		m.modseq = (uint64_t)sqlite3_column_int64(st, 2);
		m.flags = (uint32_t)sqlite3_column_int64(st, 3);
		m.internal_date = sqlite3_column_int64(st, 4);
		m.size = (uint64_t)sqlite3_column_int64(st, 5);
		store_column_text(st, 6, m.from, sizeof(m.from));
		store_column_text(st, 7, m.to, sizeof(m.to));
		store_column_text(st, 8, m.subject, sizeof(m.subject));
		m.date = sqlite3_column_int64(st, 9);
		store_column_text(st, 10, m.message_id, sizeof(m.message_id));
		m.has_attachments = sqlite3_column_int(st, 11) != 0;
		m.size_crlf = (uint64_t)sqlite3_column_int64(st, 12);
		m.recalled = sqlite3_column_int(st, 13) != 0;
		store_column_text(st, 14, m.keywords, sizeof(m.keywords));
		cb(&m, arg);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_warnx("store event=message-list error=\"%s\"", sqlite3_errmsg(store->db));
		return -1;
	}
	return 1;
}

int
store_message_list(struct store *store, int64_t account_id, const char *mailbox,
                   store_message_cb *cb, void *arg)
{
	return store_message_list_range(store, account_id, mailbox, 0, 0, 0, cb, arg);
}

/* The SELECT of a scan: the columns asked for, the rows of the range (a MODSEQ range through
 * the (mailbox, MODSEQ) index, whatever the planner would guess without statistics). */
static void
store_scan_sql(const struct store_scan *scan, char *sql, size_t size)
{
	snprintf(sql, size,
	         "SELECT uid, recalled%s%s%s FROM messages%s WHERE mailbox_id = ?1 AND uid > ?2%s "
	         "ORDER BY uid",
	         scan->fields & STORE_SCAN_FLAGS ? ", flags, modseq" : "",
	         scan->fields & STORE_SCAN_KEYWORDS ? ", keywords" : "",
	         scan->fields & STORE_SCAN_SIZE ? ", size_crlf, internal_date" : "",
	         scan->modseq_after > 0 ? " INDEXED BY messages_modseq" : "",
	         scan->modseq_after > 0 ? " AND modseq > ?3" : "");
}

int
store_message_scan(struct store *store, int64_t account_id, const char *mailbox,
                   const struct store_scan *scan, store_meta_cb *cb, void *arg)
{
	struct store_message_meta m;
	sqlite3_stmt *st;
	int64_t mailbox_id;
	char sql[256];
	int rc;

	store_scan_sql(scan, sql, sizeof(sql));
	rc = store_mailbox_prepare(store, account_id, mailbox, &mailbox_id, sql, &st);
	if (rc <= 0)
		return rc;
	sqlite3_bind_int64(st, 2, scan->uid_after);
	if (scan->modseq_after > 0)
		sqlite3_bind_int64(st, 3,
		                   scan->modseq_after > INT64_MAX ? INT64_MAX
		                                                  : (int64_t)scan->modseq_after);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int col = 2;

		memset(&m, 0, sizeof(m));
		m.uid = (uint32_t)sqlite3_column_int64(st, 0);
		m.recalled = sqlite3_column_int(st, 1) != 0;
		m.keywords = "";
		if (scan->fields & STORE_SCAN_FLAGS) {
			m.flags = (uint32_t)sqlite3_column_int64(st, col++);
			m.modseq = (uint64_t)sqlite3_column_int64(st, col++);
		}
		if (scan->fields & STORE_SCAN_KEYWORDS) {
			const unsigned char *kw = sqlite3_column_text(st, col++);

			m.keywords = kw != NULL ? (const char *)kw : "";
		}
		if (scan->fields & STORE_SCAN_SIZE) {
			m.size = (uint64_t)sqlite3_column_int64(st, col++);
			m.internal_date = sqlite3_column_int64(st, col++);
		}
		cb(&m, arg);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_warnx("store event=message-scan error=\"%s\"", sqlite3_errmsg(store->db));
		return -1;
	}
	return 1;
}

int
store_mailbox_counts(struct store *store, int64_t mailbox_id, uint32_t recent_after,
                     struct store_mailbox_counts *counts_r)
{
	char error[256];
	/* The counters are the row's; \Recent depends on what this server handed out (kept in
	 * memory by IMAP), so it is counted, through the UID index, only when UIDs above
	 * recent_after can exist. */
	sqlite3_stmt *st =
	    store_prepare(store->db,
	                  "SELECT messages_count, unseen_count, size_sum, "
	                  "CASE WHEN ?2 < uidnext - 1 THEN (SELECT count(*) FROM messages m "
	                  "WHERE m.mailbox_id = b.id AND m.uid > ?2 AND m.recalled = 0) ELSE 0 END "
	                  "FROM mailboxes b WHERE b.id = ?1",
	                  error, sizeof(error));
	int rc;

	memset(counts_r, 0, sizeof(*counts_r));
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mailbox_id);
	sqlite3_bind_int64(st, 2, recent_after);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		counts_r->messages = (uint32_t)sqlite3_column_int64(st, 0);
		counts_r->unseen = (uint32_t)sqlite3_column_int64(st, 1);
		counts_r->size = (uint64_t)sqlite3_column_int64(st, 2);
		counts_r->recent = (uint32_t)sqlite3_column_int64(st, 3);
	} else if (rc != SQLITE_DONE) {
		log_warnx("store event=mailbox-counts error=\"%s\"", sqlite3_errmsg(store->db));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}
