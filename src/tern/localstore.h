/* localstore: the tern client's own mail: one .eml file per message under HOME/mail/, indexed in
 * HOME/index.db (SQLite, WAL) with FTS5 full-text search over headers and text bodies.
 *
 * A message is added in two steps: lstore_new_begin gives a temporary file to write the exact
 * bytes into (a download streams straight into it), lstore_new_commit fsyncs it, renames it into
 * place, parses it (GMime) and inserts its row, its search text and its remote key in one
 * transaction. A crash or an interrupted fetch leaves either the whole message or nothing, and
 * the remote key makes the next fetch skip what is already here (no duplicates, no losses). */
#ifndef TERN_LOCALSTORE_H
#define TERN_LOCALSTORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lstore_flag {
	LSTORE_FLAG_SEEN = 1 << 0,
	LSTORE_FLAG_ANSWERED = 1 << 1,
	LSTORE_FLAG_FLAGGED = 1 << 2,
	LSTORE_FLAG_DRAFT = 1 << 3,
};

struct lstore;
struct lstore_new;

/* Opens (creating when needed) the store in home (mode 0700). Returns 0 or -1 with error. */
int lstore_open(const char *home, struct lstore **store_r, char *error, size_t errsize);
void lstore_close(struct lstore **store);

/* Where a message came from. remote_key identifies it on its server for incremental fetching:
 * "pop3:<UIDL>" or "imap:<mailbox>:<UIDVALIDITY>:<UID>"; NULL for imported and sent mail. */
struct lstore_source {
	const char *account; /* account name, "" for imports */
	const char *folder;  /* "INBOX", "Sent", ... */
	const char *remote_key;
	uint32_t flags; /* enum lstore_flag */
};

int lstore_new_begin(struct lstore *store, struct lstore_new **new_r, int *fd_r, char *error,
                     size_t errsize);
void lstore_new_abort(struct lstore_new **new);
/* Returns 1 added (*id_r set), 0 already present (same account and remote_key; the temporary file
 * is dropped), -1 error (nothing added). *new becomes NULL in every case. */
int lstore_new_commit(struct lstore *store, struct lstore_new **new,
                      const struct lstore_source *source, int64_t *id_r, char *error,
                      size_t errsize);
/* 1 when account already has remote_key (as a message's own key or as an alias), 0 when not, -1
 * on error. */
int lstore_has_remote(struct lstore *store, const char *account, const char *remote_key);
/* 1 when account has a message of exactly size bytes with a Message-ID (worth asking the server
 * for the Message-ID of a message of that size), 0 when not, -1 on error. */
int lstore_has_size(struct lstore *store, const char *account, uint64_t size);
/* The same message reached over another protocol or server: when account has a message in folder
 * with this Message-ID (without <>) and exactly size bytes, remote_key is recorded as an alias of
 * it (so lstore_has_remote finds it from now on) and 1 is returned; 0 when there is none, -1 on
 * error. */
int lstore_match_message_id(struct lstore *store, const char *account, const char *folder,
                            const char *message_id, uint64_t size, const char *remote_key);

struct lstore_message {
	int64_t id; /* what `tern show ID` takes */
	char account[64];
	char folder[128];
	char remote_key[256];
	char message_id[256];
	char from[512]; /* decoded to UTF-8 */
	char to[512];
	char subject[512];
	int64_t date; /* Date: header, seconds since the epoch; 0 when absent */
	uint64_t size;
	bool has_attachments;
	uint32_t flags;
	char path[PATH_MAX]; /* absolute path of the .eml file */
};

typedef void lstore_message_cb(const struct lstore_message *message, void *arg);

struct lstore_filter {
	const char *account; /* NULL: all */
	const char *folder;  /* NULL: all */
	bool unread_only;
	int limit; /* 0: no limit */
};

/* Newest first. Returns the number listed or -1. */
int lstore_list(struct lstore *store, const struct lstore_filter *filter, lstore_message_cb *cb,
                void *arg);
/* Query language: free words and "quoted phrases" (FTS5 over subject, from, to and text bodies),
 * from:X to:X subject:X (substring, case-insensitive), before:YYYY-MM-DD after:YYYY-MM-DD,
 * has:attachment, is:unread, is:read, folder:X, account:X; terms are ANDed. Returns the number of
 * matches, or -1 with error for a malformed query ("unknown field 'form:'; fields are ..."). */
int lstore_search(struct lstore *store, const char *query, int limit, lstore_message_cb *cb,
                  void *arg, char *error, size_t errsize);
/* 1 found, 0 no such id, -1 error. */
int lstore_get(struct lstore *store, int64_t id, struct lstore_message *message_r);
int lstore_set_flags(struct lstore *store, int64_t id, uint32_t add, uint32_t remove);

#endif
