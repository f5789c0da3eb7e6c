/* store: accounts, mailboxes, messages and the outbound queue.
 *
 * The one module that speaks SQL or names files under the data directory. Today its backend is
 * SQLite (WAL) plus one .eml file per message; nothing above this header may assume that, so a
 * PostgreSQL backend with shared blob storage can replace it later.
 *
 * Threads: a struct store is used from one thread (the loop thread of the daemon, or a CLI's
 * main thread). Reads run inline (small indexed SQLite reads). Writes of mail go through
 * store_blob_commit(), which does the slow part (fdatasync, rename, directory fsync, SQLite
 * commit) on the store's own threads, grouping concurrent deliveries into one SQLite transaction
 * and one fsync per directory, and calls back on the loop thread through the struct workers
 * given to store_open(). With workers == NULL (command-line tools) the commit is synchronous and
 * the callback runs before store_blob_commit() returns.
 *
 * Durability contract: when a commit callback reports success, the message bytes and their
 * metadata are on stable storage. Before that, a crash leaves nothing visible.
 *
 * What any backend must provide (the SQLite one does; a PostgreSQL one must, issue 15):
 * - Atomic groups: a commit job (a delivery to all its recipients, one flag update, one
 *   COPY/MOVE, one mailbox operation) is wholly visible or not at all, and its callback runs only
 *   after it is durable. Jobs may share a transaction (group commit) but never a fate: one failing
 *   job (a savepoint) leaves the others committed.
 * - Allocation inside the transaction: UIDs and MODSEQs strictly ascend per mailbox in commit
 *   order, are never reused (also after DELETE and a CREATE of the same name: UIDVALIDITY comes
 *   from a store-wide counter), and mailbox ids are never reused.
 * - Counters on the mailbox (messages, unseen, size, uidnext, highestmodseq) change in the same
 *   transaction as the rows; expunges leave a tombstone with their MODSEQ (QRESYNC, resync).
 * - Reads on the loop thread see every commit whose callback has run (read-your-writes for the
 *   session that asked), never a half-applied one. store_search_begin's snapshots see the store
 *   as of their start.
 * - Blobs are immutable once committed: a message's bytes never change, so readers may keep one
 *   open while it is expunged (store_reader_open pins it) and copies may share it.
 * - The notify hub is told after the commit, by the caller of the commit, never before.
 * Callers must not learn where or how a message is kept: message bytes are read through
 *   store_reader.h. (store_message_open's fd, still used by SEARCH, CATENATE, NOTIFY's
 *   MessageNew and `ternd mail cat`, goes when they move to the reader.) */
#ifndef TERN_STORE_H
#define TERN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct workers;
struct store;
struct store_blob;
struct store_mailbox;

/* Flags, as a bit set (IMAP system flags). */
enum store_flag {
	STORE_FLAG_SEEN = 1 << 0,
	STORE_FLAG_ANSWERED = 1 << 1,
	STORE_FLAG_FLAGGED = 1 << 2,
	STORE_FLAG_DELETED = 1 << 3,
	STORE_FLAG_DRAFT = 1 << 4,
	STORE_FLAG_RECENT = 1 << 5,
};

#define STORE_ADDRESS_MAX 320 /* 64 local + @ + 255 domain */
/* Keywords (IMAP flag-keywords) are kept as a space-separated list, unique case-insensitively
 * (the case first given is kept). Each must be an IMAP atom without '\\' (printable ASCII except
 * ( ) { % * " \\ ] and space) of 1..STORE_KEYWORD_MAX bytes, and the list must fit in
 * STORE_KEYWORDS_MAX with its NUL; a list that breaks a rule is refused with an error (the
 * delivery or the whole update fails), never cut. */
#define STORE_KEYWORDS_MAX 1024 /* a message's keywords, space-separated, with the NUL */
#define STORE_KEYWORD_MAX 64    /* bytes of one keyword (an IMAP atom) */

struct store_account {
	int64_t id;
	char address[STORE_ADDRESS_MAX + 1]; /* the primary address, lower-cased domain */
	char password_hash[256];             /* argon2id encoded string */
	int64_t created;
};

/* Creates DIR's layout and the database when create is true (the directory must exist),
 * otherwise opens an existing one and runs pending migrations. With workers (the daemon: the
 * only writer of message files) it removes what crashes left: every file in DIR/tmp, and the
 * files of DIR/mail and DIR/queue that no row names. workers may be NULL (synchronous commits,
 * command-line tools: nothing is swept). Returns 0 or -1 with error. */
int store_open(const char *data_dir, bool create, struct workers *workers, struct store **store_r,
               char *error, size_t errsize);
/* Waits for commits in flight, then closes. */
void store_free(struct store **store);

/* --- accounts (CLI and auth) --- */

/* Adds an account with its five mailboxes: INBOX, Sent (\Sent), Drafts (\Drafts), Junk (\Junk),
 * Trash (\Trash). Returns 1 added, 0 the address is taken (as account or alias), -1 error. */
int store_account_add(struct store *store, const char *address, const char *password_hash,
                      char *error, size_t errsize);
/* Deletes the account, its aliases, mailboxes, messages and files. 1 done, 0 no such, -1 error. */
int store_account_del(struct store *store, const char *address, char *error, size_t errsize);
int store_account_set_password(struct store *store, const char *address, const char *password_hash,
                               char *error, size_t errsize);
/* Looks an address up among accounts and aliases (case-insensitive domain; local part
 * compared case-insensitively too, as users expect). 1 found, 0 none, -1 error. */
int store_account_lookup(struct store *store, const char *address, struct store_account *account_r);
/* The account with this id (enabled or not): one indexed read. 1 found, 0 none, -1 error. */
int store_account_get(struct store *store, int64_t id, struct store_account *account_r);
/* The oldest enabled account (the first one added: the admin's), which receives postmaster@
 * mail when no account or alias has that address. 1 found, 0 no account, -1 error. */
int store_account_first(struct store *store, struct store_account *account_r);
typedef void store_account_cb(const struct store_account *account, void *arg);
int store_account_list(struct store *store, store_account_cb *cb, void *arg);

/* Aliases: another address delivered to (and usable as MAIL FROM by) an account.
 * 1 done, 0 no such account / alias taken / no such alias, -1 error. */
int store_alias_add(struct store *store, const char *alias, const char *account_address,
                    char *error, size_t errsize);
int store_alias_del(struct store *store, const char *alias, char *error, size_t errsize);
typedef void store_alias_cb(const char *alias, void *arg);
int store_alias_list(struct store *store, int64_t account_id, store_alias_cb *cb, void *arg);

/* --- receiving a message --- */

/* Starts a message: a new file under DIR/tmp. Returns 0 or -1 with error. */
int store_blob_new(struct store *store, struct store_blob **blob_r, char *error, size_t errsize);
/* Appends bytes. Returns 0 or -1 (errno set, e.g. ENOSPC); after -1 the blob can only be aborted.
 */
int store_blob_write(struct store_blob *blob, const void *data, size_t len);
uint64_t store_blob_size(const struct store_blob *blob);
/* Reads back up to len bytes written so far from offset (IMAP CATENATE assembles a message from
 * parts held in blobs). Returns the bytes read (0 at the end) or -1 with errno set. May run on
 * another thread while nothing else uses the blob. */
ssize_t store_blob_pread(const struct store_blob *blob, void *buf, size_t len, uint64_t offset);
/* Discards the message and its file. *blob becomes NULL. */
void store_blob_abort(struct store_blob **blob);

/* One place a message goes: a mailbox of a local account, or the outbound queue. */
struct store_target {
	int64_t account_id;   /* > 0: local delivery into mailbox; 0: outbound queue */
	const char *mailbox;  /* "INBOX" etc. for local delivery */
	uint32_t flags;       /* enum store_flag bits for local delivery */
	const char *rcpt;     /* envelope recipient (both kinds; logged, kept in the queue) */
	const char *keywords; /* IMAP keywords for local delivery (APPEND), space-separated, or
	                       * NULL */
};

struct store_delivery {
	const char *mail_from;     /* envelope sender, "" for the null sender */
	int64_t sender_account_id; /* authenticated submitter, 0 when none (queue owner) */
	int64_t internal_date;     /* seconds since the epoch */
	const struct store_target *targets;
	size_t ntargets;
};

/* Result for one target, in the order given. */
struct store_result {
	int64_t mailbox_id;   /* local delivery */
	uint32_t uid;         /* local delivery */
	uint32_t uidvalidity; /* local delivery: the mailbox's (for APPENDUID) */
	uint64_t modseq;      /* local delivery: the new message's MODSEQ */
	int64_t queue_id;     /* outbound queue */
};

/* ok is true when every target is durably stored; on failure nothing is visible and error
 * says why. results has ntargets entries when ok. Runs on the loop thread. */
typedef void store_commit_cb(bool ok, const struct store_result *results, const char *error,
                             void *arg);

/* Takes the blob (*blob becomes NULL): parses its summary (mime_summary) and its MIME structure
 * (mimestruct_build, kept with the row), fdatasyncs the file,
 * links it into place once per target, fsyncs the directories, and commits the rows in one
 * transaction with others in flight. The delivery struct and what it points to are copied. */
void store_blob_commit(struct store *store, struct store_blob **blob,
                       const struct store_delivery *delivery, store_commit_cb *cb, void *arg);

/* store_blob_commit for several messages at once, all or nothing (IMAP MULTIAPPEND): blobs[i]
 * (taken, each set to NULL) goes with deliveries[i] and cb(..., args[i]). Either every message is
 * durable and each callback reports ok, or none of them is visible and every callback reports
 * the failure; the callbacks run in order, one after another. n is at most STORE_GROUP_MAX. */
#define STORE_GROUP_MAX 256
void store_blob_commit_group(struct store *store, struct store_blob **blobs,
                             const struct store_delivery *deliveries, size_t n, store_commit_cb *cb,
                             void *const *args);

/* --- reading (admin tools now, POP3/IMAP later) --- */

struct store_message {
	int64_t id;
	int64_t mailbox_id;
	uint32_t uid;
	uint64_t modseq;
	uint32_t flags;
	int64_t internal_date;
	uint64_t size;      /* bytes of the stored file */
	uint64_t size_crlf; /* bytes with every bare LF counted as CRLF: what POP3 RETR and IMAP
	                     * RFC822 send, so LIST/STAT/RFC822.SIZE are exact */
	bool recalled;      /* withdrawn by its sender: hidden from POP3/IMAP (later issue) */
	char from[512];     /* decoded, display form */
	char to[512];       /* decoded, display form */
	char subject[512];  /* decoded from RFC 2047 to UTF-8 */
	int64_t date;       /* Date: header, 0 when absent or bad */
	char message_id[256];
	bool has_attachments;
	char keywords[STORE_KEYWORDS_MAX]; /* IMAP keywords, space-separated, "" when none */
};

typedef void store_message_cb(const struct store_message *message, void *arg);
/* Messages of account's mailbox in UID order, with their summaries (from, to, subject: each row
 * is copied into a struct store_message; for what needs the headers, such as `ternd mail list`;
 * protocol snapshots use store_message_scan). 1 done, 0 no such mailbox, -1 error. */
int store_message_list(struct store *store, int64_t account_id, const char *mailbox,
                       store_message_cb *cb, void *arg);
/* store_message_list for the UIDs above uid_after and below uid_below (0: no bound), at most
 * limit of them (0: all), in UID order: reads only those rows (push replay, a chunk at a time). */
int store_message_list_range(struct store *store, int64_t account_id, const char *mailbox,
                             uint32_t uid_after, uint32_t uid_below, size_t limit,
                             store_message_cb *cb, void *arg);

/* --- lean reads: the snapshots of IMAP SELECT, POP3 login, resyncs (no header copies) ---
 * A row as store_message_scan gives it: only the fields asked for are read, the others are 0
 * (keywords ""). uid and recalled are always there. */
struct store_message_meta {
	uint32_t uid;
	bool recalled;         /* withdrawn by its sender: callers hide it (a resync: as gone) */
	uint32_t flags;        /* STORE_SCAN_FLAGS */
	uint64_t modseq;       /* STORE_SCAN_FLAGS */
	const char *keywords;  /* STORE_SCAN_KEYWORDS: space-separated, "" when none; valid
	                        * during the callback only */
	uint64_t size;         /* STORE_SCAN_SIZE: RFC822.SIZE (store_message.size_crlf) */
	int64_t internal_date; /* STORE_SCAN_SIZE */
};
enum store_scan_fields {
	STORE_SCAN_FLAGS = 1 << 0,
	STORE_SCAN_KEYWORDS = 1 << 1,
	STORE_SCAN_SIZE = 1 << 2,
};
/* Which rows: those with a UID above uid_after and a MODSEQ above modseq_after (0: all), in
 * UID order. With modseq_after the rows come through the (mailbox, MODSEQ) index: a resync
 * reads what changed since it last knew the mailbox (new messages and flag changes take a new
 * MODSEQ; what left is in store_expunged_list). */
struct store_scan {
	unsigned fields; /* enum store_scan_fields */
	uint32_t uid_after;
	uint64_t modseq_after;
};
typedef void store_meta_cb(const struct store_message_meta *m, void *arg);
/* Calls cb for each row of account's mailbox that scan selects. 1 done, 0 no such mailbox, -1
 * error. */
int store_message_scan(struct store *store, int64_t account_id, const char *mailbox,
                       const struct store_scan *scan, store_meta_cb *cb, void *arg);
typedef void store_expunged_cb(uint32_t uid, uint64_t modseq, void *arg);
/* The UIDs that left account's mailbox (expunged or moved away) by an update with a MODSEQ above
 * since, ascending, with that MODSEQ (QRESYNC's VANISHED (EARLIER)). Recorded from schema
 * version 4 on. 1 done, 0 no such mailbox, -1 error. */
int store_expunged_list(struct store *store, int64_t account_id, const char *mailbox,
                        uint64_t since, store_expunged_cb *cb, void *arg);
/* The MIME structure kept for a message (mimestruct's serialized form): *blob_r is malloc'd
 * (free()), or NULL with *len_r 0 when the row has none (stored before it was kept: the caller
 * builds it from the file). 1 found, 0 no such message, -1 error. */
int store_message_mime(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid,
                       unsigned char **blob_r, size_t *len_r);
/* Opens the stored bytes of one message read-only. Returns an fd (>= 0), -2 when there is no such
 * message, -1 on error. */
int store_message_open(struct store *store, int64_t account_id, const char *mailbox, uint32_t uid);

/* --- changing a mailbox (POP3 UPDATE state now, IMAP STORE/EXPUNGE later) --- */

struct store_flag_change {
	uint32_t uid;
	uint32_t add;    /* enum store_flag bits to set */
	uint32_t remove; /* enum store_flag bits to clear */
	/* IMAP keywords, each a space-separated list or NULL: kw_replace (when not NULL) replaces
	 * the message's keywords, then kw_add are added and kw_remove removed. Compared
	 * case-insensitively, kept in the case first given. */
	const char *kw_replace;
	const char *kw_add;
	const char *kw_remove;
	/* CONDSTORE (RFC 7162): when not 0, the change applies only if the message's MODSEQ is
	 * <= unchangedsince; otherwise the message is reported in modified[] and left alone.
	 * (UNCHANGEDSINCE 0 from a client fails for every message, as MODSEQs start at 1: the
	 * session answers that itself.) */
	uint64_t unchangedsince;
};

/* Result of store_mailbox_update: ok, or nothing changed at all. Runs on the loop thread. */
typedef void store_update_cb(bool ok, const char *error, void *arg);

/* A message whose flags or keywords changed, as it is after the update. */
struct store_changed {
	uint32_t uid;
	uint32_t flags;
	uint64_t modseq;
	const char *keywords; /* space-separated, "" when none; valid during the callback */
};

/* What an update did (valid only during the callback). */
struct store_update_result {
	uint64_t highestmodseq;              /* the mailbox's after the update */
	const struct store_changed *changed; /* messages actually changed (a change that sets what
	                                      * is already set changes nothing), in UID order */
	size_t nchanged;
	const uint32_t *modified; /* UNCHANGEDSINCE failed: left alone */
	size_t nmodified;
	const uint32_t *expunged; /* UIDs actually expunged, ascending */
	size_t nexpunged;
	const uint32_t *missing; /* UIDs of changes whose message no longer exists, ascending */
	size_t nmissing;
};
/* r is NULL when !ok. */
typedef void store_update_result_cb(bool ok, const char *error, const struct store_update_result *r,
                                    void *arg);

/* In one transaction on the store's writer thread: applies the flag changes and expunges the
 * listed UIDs (rows deleted, HIGHESTMODSEQ raised; the files are unlinked after the commit). An
 * update that changes anything takes one new MODSEQ (the mailbox's HIGHESTMODSEQ + 1), given to
 * every message it changes and to its expunges (RFC 7162 allows one per command). Updates
 * waiting together run in one transaction, each in its own savepoint (one failing does not sink
 * the others). UIDs that no longer exist are skipped (another session may have expunged
 * them) and listed in the result's missing. The arrays are copied. Either all of it is durable when
 * cb reports ok, or none of it happened. With workers == NULL it runs synchronously. */
void store_mailbox_update(struct store *store, int64_t account_id, const char *mailbox,
                          const struct store_flag_change *changes, size_t nchanges,
                          const uint32_t *expunge, size_t nexpunge, store_update_cb *cb, void *arg);
/* store_mailbox_update with the full result (IMAP STORE/EXPUNGE, CONDSTORE). An update of a
 * mailbox that does not exist is !ok with "no such mailbox". */
void store_mailbox_update_r(struct store *store, int64_t account_id, const char *mailbox,
                            const struct store_flag_change *changes, size_t nchanges,
                            const uint32_t *expunge, size_t nexpunge, store_update_result_cb *cb,
                            void *arg);

/* COPY and MOVE (RFC 6851): copies the listed messages of src (duplicates count once; when any
 * of them no longer exists nothing is copied and the result's missing says how many are gone, as
 * an IMAP COPY that fails must leave dst as it was, RFC 3501 6.4.7) into dst with new UIDs in
 * ascending source UID order, keeping flags, keywords, internal date, summary and MIME structure
 * (each copy is a new hard link of the file, never rewritten, fsynced into its directory before the
 * rows commit; expunging the source later leaves the copy). The copies share one new MODSEQ of dst.
 * move: the source rows become dst's rows in the same transaction (no file work; src's
 * HIGHESTMODSEQ raised). Durable when cb reports ok. Runs on the store's writer thread like
 * store_mailbox_update (synchronously with workers == NULL). */
struct store_copy_result {
	int64_t dst_mailbox_id;
	uint32_t dst_uidvalidity;
	const uint32_t *src_uids; /* the messages copied, ascending */
	const uint32_t *dst_uids; /* their new UIDs, same order */
	size_t n;
	uint64_t dst_modseq;         /* the highest MODSEQ given in dst */
	const uint32_t *flags;       /* the copies' flags (enum store_flag) as committed */
	const char *const *keywords; /* ... and keywords, space-separated, same order */
	size_t missing; /* listed UIDs that no longer exist; when > 0, n is 0 (nothing copied) */
};
/* result: 1 done, 0 no such destination mailbox (IMAP [TRYCREATE]) or source mailbox, -1 error.
 * r is NULL unless result is 1. */
typedef void store_copy_cb(int result, const char *error, const struct store_copy_result *r,
                           void *arg);
void store_message_copy(struct store *store, int64_t account_id, const char *src,
                        const uint32_t *uids, size_t nuids, const char *dst, bool move,
                        store_copy_cb *cb, void *arg);

/* --- mailbox management (IMAP CREATE, DELETE, RENAME, SUBSCRIBE) ---
 * Names are UTF-8 (IMAP sessions convert modified UTF-7), '/' is the hierarchy delimiter, and
 * "INBOX" is matched case-insensitively. UIDVALIDITY values come from a store-wide counter
 * (max(last + 1, now)), so a name deleted and created again never sees an old UIDVALIDITY, even
 * within one second. Every operation here refuses (-1, with an error an IMAP server can pass on)
 * an empty name, one over 255 bytes, with a control character, a wildcard ('*', '%'), an empty
 * level (leading, trailing or doubled '/') or invalid UTF-8.
 *
 * Each operation is a job of the store's one writer: with workers (the daemon) store_mailbox_op
 * queues it to the committer thread, which runs it in one transaction with the other mailbox
 * jobs waiting (a savepoint each), after the deliveries and updates it took, and waits for
 * SQLite's write lock as it does for them (10 s; past that: STORE_BUSY, nothing changed); the
 * callback runs on the loop thread after the commit. A deleted mailbox's message files are
 * unlinked after the commit on the committer thread (a crash in between leaves orphan files,
 * which the start-up sweep removes). The synchronous functions below run the same job on the
 * calling thread's connection (command-line tools; never the daemon's loop). */
#define STORE_BUSY (-3)

enum store_mbox_kind {
	STORE_MBOX_CREATE,
	STORE_MBOX_DELETE,
	STORE_MBOX_RENAME,
	STORE_MBOX_SUBSCRIBE,
	STORE_MBOX_UNSUBSCRIBE,
};

/* What to do; the strings are copied. */
struct store_mbox_op {
	enum store_mbox_kind kind;
	int64_t account_id;
	const char *name;        /* the mailbox (RENAME: the old name) */
	const char *to;          /* RENAME: the new name */
	const char *special_use; /* CREATE: NULL, "" or one of RFC 6154's */
};

/* What a job did; valid during the callback only. */
struct store_mbox_result {
	enum store_mbox_kind kind;
	int result;           /* as the synchronous function of the kind returns */
	const char *error;    /* "" when result is 1 */
	bool invalid;         /* result -1: a name (or the special use) was refused, unlooked-up */
	const char *name;     /* canonical ("INBOX" in any case is "INBOX") */
	const char *to;       /* RENAME: canonical; otherwise NULL */
	int64_t mailbox_id;   /* CREATE: the new mailbox; DELETE: the deleted one; RENAME INBOX: the
	                       * new mailbox that took INBOX's messages */
	uint32_t uidvalidity; /* CREATE, RENAME INBOX: the new mailbox's */
	size_t nmessages;     /* DELETE: messages removed with the mailbox */
	/* RENAME (not INBOX): the mailboxes renamed (name and its children), by id and old name;
	 * each new name is to followed by what came after name in the old one. */
	const int64_t *ids;
	const char *const *old_names;
	size_t nrenamed;
	/* RENAME INBOX: INBOX's id and the UIDs that left it, ascending. */
	int64_t inbox_id;
	const uint32_t *uids;
	size_t nuids;
};
typedef void store_mbox_cb(const struct store_mbox_result *r, void *arg);
/* Runs op as a job of the writer; cb gets the result on the loop thread after the commit (at
 * once, before this returns, when the store has no workers). */
void store_mailbox_op(struct store *store, const struct store_mbox_op *op, store_mbox_cb *cb,
                      void *arg);

/* Creates name (and any missing parents, as RFC 3501 suggests). special_use may be NULL or ""
 * or one of RFC 6154's (\\All \\Archive \\Drafts \\Flagged \\Junk \\Sent \\Trash).
 * 1 created, 0 it exists, -1 error, STORE_BUSY. */
int store_mailbox_create(struct store *store, int64_t account_id, const char *name,
                         const char *special_use, char *error, size_t errsize);
/* Deletes name with its messages (rows in one transaction, then the files). INBOX cannot be
 * deleted (0). Children stay (RFC 3501: the name then exists only as a parent).
 * 1 deleted, 0 no such mailbox or INBOX, -1 error, STORE_BUSY. */
int store_mailbox_delete(struct store *store, int64_t account_id, const char *name, char *error,
                         size_t errsize);
/* Renames from to to, with its children ("from/x" becomes "to/x") and their subscriptions,
 * keeping UIDs and UIDVALIDITY; missing parents of to are created. Renaming INBOX moves its
 * messages (with their UIDs) into a new mailbox to with a new UIDVALIDITY and leaves INBOX empty
 * with its UIDNEXT (RFC 3501); INBOX's children stay. 1 done, 0 no such mailbox, -2 to (or a new
 * child name) exists, -1 error (also: to is inside from), STORE_BUSY. */
int store_mailbox_rename(struct store *store, int64_t account_id, const char *from, const char *to,
                         char *error, size_t errsize);
/* Subscriptions are names, kept whether or not such a mailbox exists (RFC 3501 LSUB); a new
 * account is subscribed to its five mailboxes. Setting what is already set is fine.
 * 1 done, -1 error, STORE_BUSY. store_subscription_list calls cb in name order: 1 done, -1
 * error. */
int store_subscription_set(struct store *store, int64_t account_id, const char *name,
                           bool subscribed, char *error, size_t errsize);
typedef void store_subscription_cb(const char *name, void *arg);
int store_subscription_list(struct store *store, int64_t account_id, store_subscription_cb *cb,
                            void *arg);

/* Looks a mailbox up by name. 1 found, 0 none, -1 error. */
int store_mailbox_get(struct store *store, int64_t account_id, const char *name,
                      struct store_mailbox *mailbox_r);

struct store_mailbox {
	int64_t id;
	char name[256];
	char special_use[32]; /* "\\Sent" or "" */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint32_t messages; /* not recalled (the row's counter, see store_mailbox_counts) */
};
typedef void store_mailbox_cb(const struct store_mailbox *mailbox, void *arg);
int store_mailbox_list(struct store *store, int64_t account_id, store_mailbox_cb *cb, void *arg);

/* STATUS counts of one mailbox, read from counters kept on its row in the transaction of each
 * change (O(1) in the mailbox's size): messages not recalled, those without \Seen, the sum of
 * their RFC822.SIZEs, and those with a UID above recent_after (pass UINT32_MAX for none: this
 * one counts the rows above it, through the UID index, only when there can be any). 0, or -1
 * on an SQLite error (a mailbox that no longer exists counts zeros). */
struct store_mailbox_counts {
	uint32_t messages, unseen, recent;
	uint64_t size;
};
int store_mailbox_counts(struct store *store, int64_t mailbox_id, uint32_t recent_after,
                         struct store_mailbox_counts *counts_r);

/* --- bulk import (ternd mail import; store_import.c) ---
 * store_import_start starts the commit pipeline on a store opened without workers (a command-line
 * tool), so that store_blob_commit_group() runs as in the daemon: summaries, MIME structures and
 * fdatasyncs on the sync threads, every group waiting committed by one transaction with one fsync
 * per directory, callbacks posted through workers (run them with the workers' event loop). It
 * sweeps nothing (the daemon may be running), and mailbox management functions then wait 100 ms
 * for SQLite's lock, as in the daemon: call them first. 0, or -1 with error.
 * store_import_sync writes every file the data directory's filesystem holds dirty to stable
 * storage (syncfs): one flush for a whole group of blobs, after which each message's own
 * fdatasync in the pipeline has nothing left to write. 0, or -1 with errno set. */
int store_import_start(struct store *store, struct workers *workers, char *error, size_t errsize);
int store_import_sync(struct store *store);
/* Normalizes a space-separated list of IMAP keywords as a delivery does (into out, of
 * STORE_KEYWORDS_MAX bytes), so an importer can leave out what a delivery would refuse: 0, or -1
 * with error (a keyword that is not an atom or is too long, too many). */
int store_import_keywords(const char *list, char *out, char *error, size_t errsize);

/* --- search index (IMAP SEARCH's narrowing; store_search.c) ---
 * The store keeps a full-text index of each message's searchable text (mime/mimetext.h: the
 * text IMAP SEARCH's matcher reads, decoded and case-folded), written with the message. It
 * answers with CANDIDATES: a superset of the messages whose field holds the needle as a
 * substring (every message the index cannot answer for, e.g. stored before the index existed,
 * is a candidate too). The caller confirms each candidate on the message itself. */

enum store_search_key {
	STORE_SEARCH_SUBJECT = 0, /* every Subject field's decoded value */
	STORE_SEARCH_FROM,        /* the From, To, Cc, Bcc fields' addresses as mimeaddr_render */
	STORE_SEARCH_TO,          /* renders them */
	STORE_SEARCH_CC,
	STORE_SEARCH_BCC,
	STORE_SEARCH_BODY, /* the decoded text parts */
	STORE_SEARCH_TEXT, /* the header section and the body */
};

/* The index finds substrings of at least this many characters (trigrams); shorter needles
 * cannot be narrowed. */
#define STORE_SEARCH_MIN_CHARS 3

/* The query the index runs for needle (case-folded UTF-8 as mime_text_fold makes it, without
 * NUL): malloc'd, or NULL when needle is not valid UTF-8 or shorter than
 * STORE_SEARCH_MIN_CHARS characters. Every byte of needle is data, never query syntax; a long
 * needle is cut to its first 256 bytes (whole characters), which finds a superset. */
char *store_search_query(enum store_search_key key, const char *needle);
/* A view of the index as it is now, for one search: a read-only connection of its own (from a
 * small pool) holding a read transaction, so the candidates are those of the moment the search
 * began even if the query runs later on another thread. Take it on the store's thread
 * (cheap: no query runs); it stays valid after store_free (a worker may still be querying while
 * the daemon closes). NULL with error when no connection can be opened. End it on any thread. */
struct store_search_snap;
struct store_search_snap *store_search_begin(struct store *store, char *error, size_t errsize);
void store_search_end(struct store_search_snap **snap);
/* The candidates for key/needle among the messages of mailbox mailbox_id: their UIDs in
 * ascending order in *uids_r (malloc'd, *n_r of them; NULL when none). Any thread, one at a time
 * per snapshot; may be slow: never on an event loop. Returns 1, 0 when the needle cannot be
 * narrowed (too short: search without the index), or -1 with error. */
int store_search_candidates(struct store_search_snap *snap, int64_t mailbox_id,
                            enum store_search_key key, const char *needle, uint32_t **uids_r,
                            size_t *n_r, char *error, size_t errsize);

/* --- outbound queue --- */
struct store_queue_entry {
	int64_t id;
	char mail_from[STORE_ADDRESS_MAX + 1];
	char rcpt[STORE_ADDRESS_MAX + 1];
	int64_t created;
	int64_t next_attempt;
	int attempts;
	char status[16]; /* "queued", "sent", "failed", "recalled" */
	uint64_t size;
};
typedef void store_queue_cb(const struct store_queue_entry *entry, void *arg);
int store_queue_list(struct store *store, store_queue_cb *cb, void *arg);

#endif
