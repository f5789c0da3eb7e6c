/* localstore_remote: which remote messages the local store already has. A message's own remote
 * key is in messages.remote_key; the same message reached over another protocol or server (found
 * by fetch.c through ternd's twin keys or by Message-ID and size) gets more keys in the
 * remote_aliases table, removed with the message by a trigger. */
#include "tern/localstore.h"
#include "tern/localstore_private.h"

#include <stdint.h>

#include <sqlite3.h>

int
lstore_has_remote(struct lstore *store, const char *account, const char *remote_key)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(store->db,
	                       "SELECT 1 FROM messages WHERE account = ?1 AND remote_key = ?2"
	                       " UNION ALL SELECT 1 FROM remote_aliases"
	                       " WHERE account = ?1 AND remote_key = ?2 LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, account != NULL ? account : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, remote_key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
lstore_has_size(struct lstore *store, const char *account, uint64_t size)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(store->db,
	                       "SELECT 1 FROM messages WHERE account = ? AND size = ?"
	                       " AND message_id != '' LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
lstore_match_message_id(struct lstore *store, const char *account, const char *folder,
                        const char *message_id, uint64_t size, const char *remote_key)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (message_id[0] == '\0')
		return 0;
	if (sqlite3_prepare_v2(store->db,
	                       "INSERT OR IGNORE INTO remote_aliases (account, remote_key, message)"
	                       " SELECT account, ?3, id FROM messages"
	                       " WHERE account = ?1 AND message_id = ?2 AND size = ?4"
	                       " AND folder = ?5 ORDER BY id LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, remote_key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
	sqlite3_bind_text(st, 5, folder, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -1;
	return sqlite3_changes(store->db) > 0 ? 1 : lstore_has_remote(store, account, remote_key);
}
