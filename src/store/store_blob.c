/* store_blob: receiving a message into DIR/tmp and committing it durably.
 *
 * The pipeline, when the store has workers:
 *   loop thread    store_blob_commit() copies the delivery into a job and queues it;
 *   sync threads   (STORE_SYNC_THREADS) parse the MIME summary and structure (mimestruct) and
 *                  fdatasync the tmp file, in parallel, then hand the job to the committer;
 *   committer      one thread with its own SQLite connection takes every job waiting (a batch),
 *                  renames each job's file into its first target and hard-links it to the
 *                  others (one name per target), fsyncs each directory it
 *                  touched once, runs one transaction for the batch's rows (a SAVEPOINT per job,
 *                  so one bad job does not sink the others) and posts every callback to the loop
 * thread with workers_post(). The cost of an fsync is so paid once per batch rather than once per
 * message. Without workers the same steps run inline with a batch of one on the store's own
 * connection.
 *
 * Mailbox updates (flag changes, expunges, COPY/MOVE: store_update.c) skip the sync threads: they
 * are queued straight to the committer, which runs every one waiting in one transaction after
 * the batch of deliveries it took, so every write to the database goes through the one writer
 * connection. Mailbox management (CREATE, DELETE, RENAME, subscriptions: store_mailbox.c) is
 * queued the same way and runs after the updates, in a transaction of its own. */
#include "store/store_private.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "mime/mimestruct.h"
#include "mime/summary.h"

#define STORE_SYNC_THREADS 4
#define STORE_NAME_MAX 64
#define STORE_BATCH_MAX 512    /* jobs per transaction; more wait for the next batch */
#define STORE_READ_CHUNK 65536 /* bytes per read when sizing a message */
/* Rows the committer indexes per backfill step while idle (store_search.c): what a delivery
 * arriving meanwhile may wait for. */
#define STORE_BACKFILL_BATCH 16

struct store_blob {
	struct store *store;
	int fd;
	bool failed;
	uint64_t size;
	char name[STORE_NAME_MAX];
	char tmp_path[PATH_MAX];
};

/* One target of a job: the caller's copy plus what the committer resolved for it. */
struct store_job_target {
	int64_t account_id;
	char *mailbox;
	uint32_t flags;
	char *keywords; /* normalized */
	char *rcpt;
	int64_t mailbox_id;
	char path[160]; /* relative to the data dir, e.g. "mail/3/<name>.eml" */
	int dir;        /* index into the batch's directory list */
	bool linked;
};

struct store_job {
	struct store *store;
	int fd;
	uint64_t size;
	uint64_t size_crlf; /* filled by the sync stage */
	char name[STORE_NAME_MAX];
	char tmp_path[PATH_MAX];
	char *mail_from;
	int64_t sender_account_id;
	int64_t internal_date;
	struct store_job_target *targets;
	size_t ntargets;
	struct store_result *results;
	struct mime_summary summary;
	unsigned char *mime; /* mimestruct's serialized form, NULL when it could not be built */
	size_t mime_len;
	struct store_search_text *text; /* for the search index; NULL: the row stays to do */
	bool renamed;                   /* tmp_path now lives as targets[0].path */
	bool ok;
	char error[256];
	store_commit_cb *cb;
	void *arg;
	struct store_group *group; /* all-or-nothing with the other jobs of a group, or NULL */
	size_t group_index;
	struct store_job *next;
};

/* Jobs committed all or nothing (store_blob_commit_group). The sync threads hand its jobs to
 * the committer together, once the last one is synced, so one batch always holds all of them. */
struct store_group {
	size_t n;
	size_t synced;    /* under the pipeline lock */
	size_t remaining; /* callbacks not yet run (loop thread) */
	struct store_job **jobs;
};

struct store_job_queue {
	struct store_job *head, *tail;
};

struct store_update_queue {
	struct store_update *head, *tail;
};

struct store_pipeline {
	pthread_mutex_t lock;
	pthread_cond_t sync_cond;   /* jobs waiting for a sync thread, or stopping */
	pthread_cond_t commit_cond; /* jobs waiting for the committer, or stopping */
	pthread_cond_t idle_cond;   /* inflight dropped to 0 */
	struct store_job_queue sync_jobs;
	struct store_job_queue commit_jobs;
	struct store_update_queue updates;            /* for the committer too, after its batch */
	struct store_mbox_job *mbox_head, *mbox_tail; /* mailbox management, after the updates */
	unsigned inflight; /* handed to the pipeline, callback not yet posted */
	bool stopping;
	bool backfill; /* the search index may have rows to do (from the start, after an update) */
	pthread_t sync_threads[STORE_SYNC_THREADS];
	unsigned nsync;
	pthread_t committer;
	bool committer_started;
	struct store_writer *writer; /* the committer's own connection */
};

/* Directories touched by one batch, each fsynced once. */
struct store_dir {
	char path[48]; /* relative: "queue" or "mail/<account_id>" */
	bool failed;
};

struct store_dirs {
	struct store_dir *dir;
	int n, cap;
};

static void
store_job_queue_push(struct store_job_queue *q, struct store_job *job)
{
	job->next = NULL;
	if (q->tail != NULL)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
}

/* --- writer connections --- */

struct store_writer *
store_writer_new(sqlite3 *db, char *error, size_t errsize)
{
	struct store_writer *w = xcalloc(1, sizeof(*w));
	const struct {
		sqlite3_stmt **st;
		const char *sql;
	} stmts[] = {
	    {&w->mailbox_find, "SELECT id, highestmodseq, uidvalidity FROM mailboxes "
	                       "WHERE account_id = ? AND name = ?"},
	    {&w->mailbox_bump, "UPDATE mailboxes SET uidnext = uidnext + ?2, "
	                       "highestmodseq = highestmodseq + 1 "
	                       "WHERE id = ?1 RETURNING uidnext - ?2, highestmodseq, uidvalidity"},
	    {&w->message_insert,
	     "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, path, "
	     "from_addr, to_addr, subject, date_hdr, message_id, has_attachments, size_crlf, "
	     "keywords, mime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
	    {&w->queue_insert,
	     "INSERT INTO queue (path, mail_from, rcpt, account_id, created, next_attempt, size) "
	     "VALUES (?, ?, ?, ?, ?, ?, ?)"},
	    {&w->message_get, "SELECT flags, keywords, modseq FROM messages "
	                      "WHERE mailbox_id = ? AND uid = ?"},
	    {&w->message_set, "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5 "
	                      "WHERE mailbox_id = ?1 AND uid = ?2"},
	    {&w->message_expunge, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ? "
	                          "RETURNING path"},
	    {&w->modseq_set, "UPDATE mailboxes SET highestmodseq = ?2 WHERE id = ?1"},
	    {&w->copy_source, "SELECT id, path FROM messages WHERE mailbox_id = ? AND uid = ?"},
	    {&w->copy_insert,
	     "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, "
	     "path, from_addr, to_addr, subject, date_hdr, message_id, has_attachments, recalled, "
	     "size_crlf, mime) SELECT ?2, ?3, ?4, flags, keywords, internal_date, size, ?5, "
	     "from_addr, to_addr, subject, date_hdr, message_id, has_attachments, recalled, "
	     "size_crlf, mime FROM messages WHERE id = ?1"},
	    {&w->move_row, "UPDATE messages SET mailbox_id = ?2, uid = ?3, modseq = ?4 "
	                   "WHERE id = ?1"},
	    {&w->text_insert, "INSERT INTO message_text (rowid, subject, addr_from, addr_to, "
	                      "addr_cc, addr_bcc, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
	    {&w->text_copy,
	     "INSERT INTO message_text (rowid, subject, addr_from, addr_to, addr_cc, "
	     "addr_bcc, headers, body) SELECT ?2, subject, addr_from, addr_to, "
	     "addr_cc, addr_bcc, headers, body FROM message_text WHERE rowid = ?1"},
	    {&w->pending_clear, "DELETE FROM message_text_pending WHERE id = ?1"},
	    {&w->pending_set,
	     "INSERT OR REPLACE INTO message_text_pending (id, state) VALUES (?1, ?2)"},
	    {&w->pending_copy, "INSERT OR REPLACE INTO message_text_pending (id, state) "
	                       "SELECT ?2, state FROM message_text_pending WHERE id = ?1"},
	    {&w->pending_list, "SELECT t.id, m.path, m.mime IS NULL FROM message_text_pending t "
	                       "JOIN messages m ON m.id = t.id WHERE t.state = 0 AND t.id > ?1 "
	                       "ORDER BY t.id LIMIT ?2"},
	    {&w->mime_set, "UPDATE messages SET mime = ?2 WHERE id = ?1 AND mime IS NULL"},
	};

	w->db = db;
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		if (sqlite3_prepare_v3(db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st,
		                       NULL) != SQLITE_OK) {
			snprintf(error, errsize, "sqlite: %s", sqlite3_errmsg(db));
			w->db = NULL;
			store_writer_free(&w);
			return NULL;
		}
	}
	return w;
}

/* Finalizes the statements; the connection itself belongs to whoever opened it. */
void
store_writer_free(struct store_writer **wp)
{
	struct store_writer *w = *wp;

	if (w == NULL)
		return;
	sqlite3_finalize(w->mailbox_find);
	sqlite3_finalize(w->mailbox_bump);
	sqlite3_finalize(w->message_insert);
	sqlite3_finalize(w->queue_insert);
	sqlite3_finalize(w->message_get);
	sqlite3_finalize(w->message_set);
	sqlite3_finalize(w->message_expunge);
	sqlite3_finalize(w->modseq_set);
	sqlite3_finalize(w->copy_source);
	sqlite3_finalize(w->copy_insert);
	sqlite3_finalize(w->move_row);
	sqlite3_finalize(w->text_insert);
	sqlite3_finalize(w->text_copy);
	sqlite3_finalize(w->pending_clear);
	sqlite3_finalize(w->pending_set);
	sqlite3_finalize(w->pending_copy);
	sqlite3_finalize(w->pending_list);
	sqlite3_finalize(w->mime_set);
	free(w);
	*wp = NULL;
}

/* --- blobs --- */

/* Time, pid, a process-wide counter, randomness. */
void
store_unique_name(char *buf, size_t bufsize)
{
	static unsigned long long counter;
	unsigned long long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	uint32_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		rnd = (uint32_t)time_mono_usec();
	snprintf(buf, bufsize, "%lld.%d.%llu.%08x", (long long)time_now(), (int)getpid(), n,
	         (unsigned)rnd);
}

int
store_blob_new(struct store *store, struct store_blob **blob_r, char *error, size_t errsize)
{
	struct store_blob *blob = xcalloc(1, sizeof(*blob));

	blob->store = store;
	store_unique_name(blob->name, sizeof(blob->name));
	snprintf(blob->tmp_path, sizeof(blob->tmp_path), "%s/%s", store->tmp_dir, blob->name);
	blob->fd = open(blob->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (blob->fd < 0) {
		snprintf(error, errsize, "cannot create %s: %s", blob->tmp_path, strerror(errno));
		log_warn("store event=blob-new file=%s", blob->tmp_path);
		free(blob);
		*blob_r = NULL;
		return -1;
	}
	*blob_r = blob;
	return 0;
}

int
store_blob_write(struct store_blob *blob, const void *data, size_t len)
{
	if (blob->failed) {
		errno = EIO;
		return -1;
	}
	if (write_full(blob->fd, data, len) < 0) {
		blob->failed = true;
		return -1;
	}
	blob->size += len;
	return 0;
}

uint64_t
store_blob_size(const struct store_blob *blob)
{
	return blob->size;
}

ssize_t
store_blob_pread(const struct store_blob *blob, void *buf, size_t len, uint64_t offset)
{
	ssize_t got;

	if (offset >= blob->size)
		return 0;
	if (len > blob->size - offset)
		len = (size_t)(blob->size - offset);
	do
		got = pread(blob->fd, buf, len, (off_t)offset);
	while (got < 0 && errno == EINTR);
	return got;
}

void
store_blob_abort(struct store_blob **blobp)
{
	struct store_blob *blob = *blobp;

	if (blob == NULL)
		return;
	close(blob->fd);
	if (unlink(blob->tmp_path) < 0)
		log_warn("store event=blob-abort file=%s", blob->tmp_path);
	free(blob);
	*blobp = NULL;
}

/* --- jobs --- */

/* Marks a job failed with a reason (the first reason wins). */
static void store_job_fail(struct store_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies the blob and the delivery into a job that owns everything it points to. */
static struct store_job *
store_job_new(struct store *store, struct store_blob *blob, const struct store_delivery *d,
              store_commit_cb *cb, void *arg)
{
	struct store_job *job = xcalloc(1, sizeof(*job));

	job->store = store;
	job->fd = blob->fd;
	job->size = blob->size;
	job->ok = !blob->failed;
	if (blob->failed)
		snprintf(job->error, sizeof(job->error), "writing the message failed");
	memcpy(job->name, blob->name, sizeof(job->name));
	memcpy(job->tmp_path, blob->tmp_path, sizeof(job->tmp_path));
	job->mail_from = xstrdup(d->mail_from != NULL ? d->mail_from : "");
	job->sender_account_id = d->sender_account_id;
	job->internal_date = d->internal_date;
	job->ntargets = d->ntargets;
	job->targets = xcalloc(d->ntargets, sizeof(*job->targets));
	job->results = xcalloc(d->ntargets, sizeof(*job->results));
	for (size_t i = 0; i < d->ntargets; i++) {
		const struct store_target *t = &d->targets[i];
		char kw[STORE_KEYWORDS_MAX], error[200];

		job->targets[i].account_id = t->account_id;
		job->targets[i].mailbox =
		    xstrdup(store_mailbox_name(t->mailbox != NULL ? t->mailbox : "INBOX"));
		job->targets[i].flags = t->flags;
		job->targets[i].rcpt = xstrdup(t->rcpt != NULL ? t->rcpt : "");
		job->targets[i].dir = -1;
		/* Refused rather than cut: the whole delivery fails and says why. */
		if (store_keywords_normalize(t->keywords, kw, error, sizeof(error)) < 0) {
			store_job_fail(job, "%s", error);
			kw[0] = '\0';
		}
		job->targets[i].keywords = xstrdup(kw);
	}
	if (job->ok && d->ntargets == 0) {
		job->ok = false;
		snprintf(job->error, sizeof(job->error), "no targets");
	}
	job->cb = cb;
	job->arg = arg;
	return job;
}

static void
store_job_free(struct store_job *job)
{
	for (size_t i = 0; i < job->ntargets; i++) {
		free(job->targets[i].mailbox);
		free(job->targets[i].keywords);
		free(job->targets[i].rcpt);
	}
	free(job->mime);
	store_search_text_free(&job->text);
	free(job->targets);
	free(job->results);
	free(job->mail_from);
	free(job);
}

static void
store_job_fail(struct store_job *job, const char *fmt, ...)
{
	va_list ap;

	if (!job->ok)
		return;
	job->ok = false;
	va_start(ap, fmt);
	vsnprintf(job->error, sizeof(job->error), fmt, ap);
	va_end(ap);
}

/* Counts the bytes of buf as sent with CRLF line ends (a bare LF counts 2); *cr carries "the byte
 * before buf was CR" from the previous chunk and is updated for the next. */
static uint64_t
store_crlf_count(const char *buf, size_t len, bool *cr)
{
	const char *p = buf, *end = buf + len, *lf;
	uint64_t n = len;

	while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf == buf ? !*cr : lf[-1] != '\r')
			n++;
		p = lf + 1;
	}
	if (len > 0)
		*cr = buf[len - 1] == '\r';
	return n;
}

/* Reads the file at fd (from offset 0) in chunks and returns its CRLF size in *size_r.
 * Returns 0, or -1 with errno set. */
static int
store_crlf_size(int fd, uint64_t *size_r)
{
	char *buf = xmalloc(STORE_READ_CHUNK);
	bool cr = false;
	off_t off = 0;
	ssize_t got;

	*size_r = 0;
	while ((got = pread(fd, buf, STORE_READ_CHUNK, off)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			break;
		*size_r += store_crlf_count(buf, (size_t)got, &cr);
		off += got;
	}
	free(buf);
	return got < 0 ? -1 : 0;
}

/* The sync stage: summary, MIME structure, CRLF size and fdatasync; the file descriptor is
 * closed afterwards. */
static void
store_job_sync(struct store_job *job)
{
	if (job->ok) {
		if (mime_summary_from_fd(job->fd, &job->summary) < 0)
			memset(&job->summary, 0, sizeof(job->summary));
		/* No structure (-1) is not an error: the row keeps NULL and readers build it. */
		if (mimestruct_build_fd(job->fd, &job->mime, &job->mime_len) < 0) {
			free(job->mime);
			job->mime = NULL;
			job->mime_len = 0;
		}
		/* The search index's text, for mailbox targets (queue rows are not searched). */
		for (size_t i = 0; i < job->ntargets && job->text == NULL; i++)
			if (job->targets[i].account_id > 0)
				job->text = store_search_text_build(job->fd);
		if (store_crlf_size(job->fd, &job->size_crlf) < 0)
			store_job_fail(job, "read: %s", strerror(errno));
		if (fdatasync(job->fd) < 0)
			store_job_fail(job, "fdatasync: %s", strerror(errno));
	}
	if (close(job->fd) < 0)
		store_job_fail(job, "close: %s", strerror(errno));
	job->fd = -1;
}

/* Removes the links a job made so far. */
static void
store_job_unlink_targets(struct store_job *job)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < job->ntargets; i++) {
		if (!job->targets[i].linked)
			continue;
		snprintf(path, sizeof(path), "%s/%s", job->store->dir, job->targets[i].path);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("store event=unlink file=%s", path);
		job->targets[i].linked = false;
	}
}

/* Returns the index of dir in the batch's list, adding it. */
static int
store_dirs_add(struct store_dirs *dirs, const char *dir)
{
	for (int i = 0; i < dirs->n; i++) {
		if (strcmp(dirs->dir[i].path, dir) == 0)
			return i;
	}
	if (dirs->n == dirs->cap) {
		dirs->cap = dirs->cap ? dirs->cap * 2 : 8;
		dirs->dir = xrealloc(dirs->dir, (size_t)dirs->cap * sizeof(*dirs->dir));
	}
	str_copy(dirs->dir[dirs->n].path, dir, sizeof(dirs->dir[0].path));
	dirs->dir[dirs->n].failed = false;
	return dirs->n++;
}

/* Finds the mailbox id of each local target. */
static void
store_job_resolve(struct store_job *job, struct store_writer *w)
{
	for (size_t i = 0; i < job->ntargets && job->ok; i++) {
		struct store_job_target *t = &job->targets[i];
		int rc;

		if (t->account_id <= 0)
			continue;
		sqlite3_bind_int64(w->mailbox_find, 1, t->account_id);
		sqlite3_bind_text(w->mailbox_find, 2, t->mailbox, -1, SQLITE_STATIC);
		rc = sqlite3_step(w->mailbox_find);
		if (rc == SQLITE_ROW)
			t->mailbox_id = sqlite3_column_int64(w->mailbox_find, 0);
		else if (rc == SQLITE_DONE)
			store_job_fail(job, "no mailbox %s for account %lld", t->mailbox,
			               (long long)t->account_id);
		else
			store_job_fail(job, "sqlite: %s", sqlite3_errmsg(w->db));
		sqlite3_reset(w->mailbox_find);
		sqlite3_clear_bindings(w->mailbox_find);
	}
}

/* Moves the tmp file to the first target's name, or links the first target's name to a further
 * target's; makes the account directory if needed. */
static int
store_job_link_one(struct store_job *job, size_t i, const char *dir)
{
	struct store *store = job->store;
	char path[PATH_MAX], first[PATH_MAX], dirpath[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", store->dir, job->targets[i].path);
	snprintf(first, sizeof(first), "%s/%s", store->dir, job->targets[0].path);
	if ((i == 0 ? rename(job->tmp_path, path) : link(first, path)) == 0)
		return 0;
	if (errno != ENOENT)
		return -1;
	/* An account directory lost (or made before this layout): recreate, fsync its parent. */
	snprintf(dirpath, sizeof(dirpath), "%s/%s", store->dir, dir);
	if (mkdir(dirpath, 0700) < 0 && errno != EEXIST)
		return -1;
	snprintf(dirpath, sizeof(dirpath), "%s/mail", store->dir);
	if (fsync_dir(dirpath) < 0)
		return -1;
	return i == 0 ? rename(job->tmp_path, path) : link(first, path);
}

/* Gives each target of the job its final name and links it there. */
static void
store_job_link(struct store_job *job, struct store_dirs *dirs)
{
	char dir[48];

	for (size_t i = 0; i < job->ntargets && job->ok; i++) {
		struct store_job_target *t = &job->targets[i];

		if (t->account_id > 0)
			snprintf(dir, sizeof(dir), "mail/%lld", (long long)t->account_id);
		else
			snprintf(dir, sizeof(dir), "queue");
		if (i == 0)
			snprintf(t->path, sizeof(t->path), "%s/%s.eml", dir, job->name);
		else
			snprintf(t->path, sizeof(t->path), "%s/%s-%zu.eml", dir, job->name, i);
		t->dir = store_dirs_add(dirs, dir);
		if (store_job_link_one(job, i, dir) < 0) {
			store_job_fail(job, "link %s: %s", t->path, strerror(errno));
			log_warn("store event=link file=%s", t->path);
			break;
		}
		t->linked = true;
		if (i == 0)
			job->renamed = true;
	}
	if (!job->ok)
		store_job_unlink_targets(job);
}

/* Binds text, NULL-safe. */
static void
store_bind_text(sqlite3_stmt *st, int col, const char *s)
{
	sqlite3_bind_text(st, col, s != NULL ? s : "", -1, SQLITE_STATIC);
}

/* Inserts one local target's message row, allocating its UID and modseq. */
static int
store_job_insert_local(struct store_job *job, struct store_writer *w, size_t i)
{
	struct store_job_target *t = &job->targets[i];
	const struct mime_summary *s = &job->summary;
	sqlite3_stmt *st = w->mailbox_bump;
	int64_t uid, modseq, uidvalidity;
	int rc;

	sqlite3_bind_int64(st, 1, t->mailbox_id);
	sqlite3_bind_int64(st, 2, 1);
	rc = sqlite3_step(st);
	uid = sqlite3_column_int64(st, 0);
	modseq = sqlite3_column_int64(st, 1);
	uidvalidity = sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		store_job_fail(job, "allocating a UID: %s",
		               rc == SQLITE_DONE ? "mailbox vanished" : sqlite3_errmsg(w->db));
		return -1;
	}
	if (uid <= 0 || uid > (int64_t)UINT32_MAX - 1) {
		store_job_fail(job, "mailbox %s has run out of UIDs", t->mailbox);
		return -1;
	}
	st = w->message_insert;
	sqlite3_bind_int64(st, 1, t->mailbox_id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_int64(st, 3, modseq);
	sqlite3_bind_int64(st, 4, t->flags);
	sqlite3_bind_int64(st, 5, job->internal_date);
	sqlite3_bind_int64(st, 6, (int64_t)job->size);
	store_bind_text(st, 7, t->path);
	store_bind_text(st, 8, s->from);
	store_bind_text(st, 9, s->to);
	store_bind_text(st, 10, s->subject);
	sqlite3_bind_int64(st, 11, s->date);
	store_bind_text(st, 12, s->message_id);
	sqlite3_bind_int(st, 13, s->has_attachments ? 1 : 0);
	sqlite3_bind_int64(st, 14, (int64_t)job->size_crlf);
	store_bind_text(st, 15, t->keywords);
	if (job->mime != NULL)
		sqlite3_bind_blob(st, 16, job->mime, (int)job->mime_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 16);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE ||
	    (job->text != NULL &&
	     store_search_text_insert(w, sqlite3_last_insert_rowid(w->db), job->text) < 0)) {
		store_job_fail(job, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	job->results[i].mailbox_id = t->mailbox_id;
	job->results[i].uid = (uint32_t)uid;
	job->results[i].uidvalidity = (uint32_t)uidvalidity;
	job->results[i].modseq = (uint64_t)modseq;
	return 0;
}

/* Inserts one outbound-queue row. */
static int
store_job_insert_queue(struct store_job *job, struct store_writer *w, size_t i)
{
	struct store_job_target *t = &job->targets[i];
	sqlite3_stmt *st = w->queue_insert;
	int64_t now = time_now();
	int rc;

	store_bind_text(st, 1, t->path);
	store_bind_text(st, 2, job->mail_from);
	store_bind_text(st, 3, t->rcpt);
	if (job->sender_account_id > 0)
		sqlite3_bind_int64(st, 4, job->sender_account_id);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, now);
	sqlite3_bind_int64(st, 6, now);
	sqlite3_bind_int64(st, 7, (int64_t)job->size);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		store_job_fail(job, "sqlite: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	job->results[i].queue_id = sqlite3_last_insert_rowid(w->db);
	return 0;
}

/* Inserts a job's rows inside a savepoint; on failure only that job is rolled back. */
static void
store_job_insert(struct store_job *job, struct store_writer *w)
{
	char error[256];

	if (store_exec(w->db, "SAVEPOINT job", error, sizeof(error)) < 0) {
		store_job_fail(job, "%s", error);
		return;
	}
	for (size_t i = 0; i < job->ntargets; i++) {
		int rc = job->targets[i].account_id > 0 ? store_job_insert_local(job, w, i)
		                                        : store_job_insert_queue(job, w, i);
		if (rc < 0)
			break;
	}
	if (!job->ok)
		sqlite3_exec(w->db, "ROLLBACK TO job", NULL, NULL, NULL);
	sqlite3_exec(w->db, "RELEASE job", NULL, NULL, NULL);
}

/* Fails every job still ok (a transaction-wide error). */
static void
store_batch_fail(struct store_job **jobs, size_t n, const char *error)
{
	for (size_t i = 0; i < n; i++)
		store_job_fail(jobs[i], "%s", error);
}

/* A group whose job failed fails as a whole: the others say why. */
static void
store_groups_settle(struct store_job **jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct store_group *g = jobs[i]->group;

		if (g == NULL || jobs[i]->ok)
			continue;
		for (size_t k = 0; k < g->n; k++)
			store_job_fail(g->jobs[k], "message %zu of the same group failed: %s",
			               jobs[i]->group_index + 1, jobs[i]->error);
	}
}

/* Inserts the rows of the group starting at jobs[0] (or of the single job) under one savepoint:
 * if any job fails, none of the group's rows stay. Returns the number of jobs taken. */
static size_t
store_group_insert(struct store_job **jobs, size_t n, struct store_writer *w)
{
	const struct store_group *g = jobs[0]->group;
	size_t count = g != NULL ? g->n : 1, failed = count;
	char error[256];

	if (count > n)
		count = n; /* cannot happen: a batch holds whole groups */
	if (g == NULL) {
		if (jobs[0]->ok)
			store_job_insert(jobs[0], w);
		return 1;
	}
	if (!jobs[0]->ok)
		return count; /* settled: every job of the group failed */
	if (store_exec(w->db, "SAVEPOINT grp", error, sizeof(error)) < 0) {
		for (size_t i = 0; i < count; i++)
			store_job_fail(jobs[i], "%s", error);
		return count;
	}
	for (size_t i = 0; i < count && failed == count; i++) {
		store_job_insert(jobs[i], w);
		if (!jobs[i]->ok)
			failed = i;
	}
	if (failed < count) {
		sqlite3_exec(w->db, "ROLLBACK TO grp", NULL, NULL, NULL);
		for (size_t i = 0; i < count; i++)
			store_job_fail(jobs[i], "message %zu of the same group failed: %s",
			               failed + 1, jobs[failed]->error);
	}
	sqlite3_exec(w->db, "RELEASE grp", NULL, NULL, NULL);
	return count;
}

/* Runs the commit steps for a batch of synced jobs: resolve, link, fsync dirs, one transaction,
 * then cleanup. Every job ends with ok set and, when ok, its results filled. */
static void
store_batch_commit(struct store *store, struct store_writer *w, struct store_job **jobs, size_t n)
{
	struct store_dirs dirs = {NULL, 0, 0};
	char path[PATH_MAX], error[256];
	size_t nok = 0;

	for (size_t i = 0; i < n; i++) {
		if (jobs[i]->ok)
			store_job_resolve(jobs[i], w);
		if (jobs[i]->ok)
			store_job_link(jobs[i], &dirs);
	}
	for (int d = 0; d < dirs.n; d++) {
		snprintf(path, sizeof(path), "%s/%s", store->dir, dirs.dir[d].path);
		if (fsync_dir(path) < 0) {
			log_warn("store event=fsync-dir dir=%s", path);
			dirs.dir[d].failed = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t t = 0; t < jobs[i]->ntargets && jobs[i]->ok; t++) {
			int d = jobs[i]->targets[t].dir;
			if (d >= 0 && dirs.dir[d].failed)
				store_job_fail(jobs[i], "fsync of %s failed", dirs.dir[d].path);
		}
	}
	free(dirs.dir);
	store_groups_settle(jobs, n);
	for (size_t i = 0; i < n; i++)
		if (jobs[i]->ok)
			nok++;

	if (nok > 0) {
		if (store_exec(w->db, "BEGIN IMMEDIATE", error, sizeof(error)) < 0) {
			store_batch_fail(jobs, n, error);
		} else {
			for (size_t i = 0; i < n;) {
				i += store_group_insert(jobs + i, n - i, w);
				/* Some errors (disk full, I/O) roll the whole transaction back. */
				if (sqlite3_get_autocommit(w->db)) {
					store_batch_fail(jobs, n, "transaction aborted");
					break;
				}
			}
			if (!sqlite3_get_autocommit(w->db) &&
			    store_exec(w->db, "COMMIT", error, sizeof(error)) < 0) {
				sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
				store_batch_fail(jobs, n, error);
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct store_job *job = jobs[i];

		if (!job->ok) {
			store_job_unlink_targets(job);
			log_warnx("store event=commit-failed file=%s error=\"%s\"", job->name,
			          job->error);
		}
		if (!job->renamed && unlink(job->tmp_path) < 0)
			log_warn("store event=tmp-unlink file=%s", job->tmp_path);
	}
	if (log_enabled(LOG_DEBUG))
		log_debug("store event=batch jobs=%zu ok=%zu", n, nok);
}

/* Runs the job's callback (on the loop thread) and frees the job. */
static void
store_job_done(void *arg)
{
	struct store_job *job = arg;

	struct store_group *g = job->group;

	if (job->cb != NULL)
		job->cb(job->ok, job->ok ? job->results : NULL, job->ok ? "" : job->error,
		        job->arg);
	store_job_free(job);
	if (g != NULL && --g->remaining == 0) {
		free(g->jobs);
		free(g);
	}
}

/* --- threads --- */

static void *
store_sync_thread(void *arg)
{
	struct store *store = arg;
	struct store_pipeline *p = store->pipeline;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct store_job *job = p->sync_jobs.head;

		if (job == NULL) {
			if (p->stopping)
				break;
			pthread_cond_wait(&p->sync_cond, &p->lock);
			continue;
		}
		p->sync_jobs.head = job->next;
		if (p->sync_jobs.head == NULL)
			p->sync_jobs.tail = NULL;
		pthread_mutex_unlock(&p->lock);
		store_job_sync(job);
		pthread_mutex_lock(&p->lock);
		if (job->group == NULL) {
			store_job_queue_push(&p->commit_jobs, job);
		} else if (++job->group->synced == job->group->n) {
			/* The group's last job: all of them go to the committer, in order. */
			for (size_t i = 0; i < job->group->n; i++)
				store_job_queue_push(&p->commit_jobs, job->group->jobs[i]);
		}
		pthread_cond_signal(&p->commit_cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *
store_committer_thread(void *arg)
{
	struct store *store = arg;
	struct store_pipeline *p = store->pipeline;
	struct store_job **batch = xcalloc(STORE_BATCH_MAX, sizeof(*batch));

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct store_update *updates;
		struct store_mbox_job *mbox;
		size_t n = 0, nupdates = 0, nmbox = 0;

		if (p->commit_jobs.head == NULL && p->updates.head == NULL &&
		    p->mbox_head == NULL) {
			if (p->stopping)
				break;
			if (p->backfill) {
				/* Idle: index a few rows the search index lacks, then look again.
				 */
				pthread_mutex_unlock(&p->lock);
				int r =
				    store_search_backfill(store, p->writer, STORE_BACKFILL_BATCH);
				pthread_mutex_lock(&p->lock);
				if (r <= 0)
					p->backfill = false;
				continue;
			}
			pthread_cond_wait(&p->commit_cond, &p->lock);
			continue;
		}
		while (p->commit_jobs.head != NULL && n < STORE_BATCH_MAX) {
			const struct store_group *g = p->commit_jobs.head->group;

			/* A group is never split between two batches (it fits in an empty one). */
			if (g != NULL && p->commit_jobs.head->group_index == 0 &&
			    n + g->n > STORE_BATCH_MAX)
				break;
			batch[n++] = p->commit_jobs.head;
			p->commit_jobs.head = p->commit_jobs.head->next;
		}
		if (p->commit_jobs.head == NULL)
			p->commit_jobs.tail = NULL;
		updates = p->updates.head;
		p->updates.head = p->updates.tail = NULL;
		mbox = p->mbox_head;
		p->mbox_head = p->mbox_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		if (n > 0)
			store_batch_commit(store, p->writer, batch, n);
		for (size_t i = 0; i < n; i++)
			workers_post(store->workers, store_job_done, batch[i]);
		if (updates != NULL)
			nupdates = store_update_run_list(store, p->writer, updates);
		if (mbox != NULL)
			nmbox = store_mbox_run_list(store, p->writer->db, mbox, true);

		pthread_mutex_lock(&p->lock);
		/* A COPY of a row not indexed yet leaves one more to do. */
		if (nupdates > 0)
			p->backfill = true;
		p->inflight -= (unsigned)(n + nupdates + nmbox);
		if (p->inflight == 0)
			pthread_cond_broadcast(&p->idle_cond);
	}
	pthread_mutex_unlock(&p->lock);
	free(batch);
	return NULL;
}

int
store_pipeline_start(struct store *store, char *error, size_t errsize)
{
	struct store_pipeline *p = xcalloc(1, sizeof(*p));
	char dbpath[PATH_MAX];
	sqlite3 *db;

	snprintf(dbpath, sizeof(dbpath), "%s/tern.db", store->dir);
	if (store_db_open(dbpath, false, &db, error, errsize) < 0) {
		free(p);
		return -1;
	}
	p->writer = store_writer_new(db, error, errsize);
	if (p->writer == NULL) {
		sqlite3_close(db);
		free(p);
		return -1;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->sync_cond, NULL);
	pthread_cond_init(&p->commit_cond, NULL);
	pthread_cond_init(&p->idle_cond, NULL);
	p->backfill = true;
	store->pipeline = p;
	if (pthread_create(&p->committer, NULL, store_committer_thread, store) != 0) {
		snprintf(error, errsize, "cannot start the committer thread");
		store_pipeline_stop(store);
		return -1;
	}
	p->committer_started = true;
	for (; p->nsync < STORE_SYNC_THREADS; p->nsync++) {
		if (pthread_create(&p->sync_threads[p->nsync], NULL, store_sync_thread, store) !=
		    0) {
			snprintf(error, errsize, "cannot start the sync threads");
			store_pipeline_stop(store);
			return -1;
		}
	}
	return 0;
}

void
store_pipeline_stop(struct store *store)
{
	struct store_pipeline *p = store->pipeline;
	sqlite3 *db;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	while (p->inflight > 0)
		pthread_cond_wait(&p->idle_cond, &p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->sync_cond);
	pthread_cond_broadcast(&p->commit_cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nsync; i++)
		pthread_join(p->sync_threads[i], NULL);
	if (p->committer_started)
		pthread_join(p->committer, NULL);
	db = p->writer->db;
	store_writer_free(&p->writer);
	sqlite3_close(db);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->sync_cond);
	pthread_cond_destroy(&p->commit_cond);
	pthread_cond_destroy(&p->idle_cond);
	free(p);
	store->pipeline = NULL;
}

struct store_writer *
store_sync_writer(struct store *store, char *error, size_t errsize)
{
	if (store->sync_writer == NULL)
		store->sync_writer = store_writer_new(store->db, error, errsize);
	return store->sync_writer;
}

/* Commits on the calling thread (no workers): one batch (a job, or a group's jobs) on the
 * store's connection. */
static void
store_commit_sync(struct store *store, struct store_job **jobs, size_t n)
{
	char error[256];

	for (size_t i = 0; i < n; i++)
		store_job_sync(jobs[i]);
	if (store_sync_writer(store, error, sizeof(error)) == NULL)
		store_batch_fail(jobs, n, error);
	/* Failed jobs are only cleaned up there (their tmp files removed). */
	store_batch_commit(store, store->sync_writer, jobs, n);
	for (size_t i = 0; i < n; i++)
		store_job_done(jobs[i]);
}

void
store_blob_commit(struct store *store, struct store_blob **blobp, const struct store_delivery *d,
                  store_commit_cb *cb, void *arg)
{
	struct store_blob *blob = *blobp;
	struct store_pipeline *p = store->pipeline;
	struct store_job *job;

	*blobp = NULL;
	job = store_job_new(store, blob, d, cb, arg);
	free(blob);
	if (p == NULL) {
		store_commit_sync(store, &job, 1);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->inflight++;
	store_job_queue_push(&p->sync_jobs, job);
	pthread_cond_signal(&p->sync_cond);
	pthread_mutex_unlock(&p->lock);
}

void
store_blob_commit_group(struct store *store, struct store_blob **blobs,
                        const struct store_delivery *deliveries, size_t n, store_commit_cb *cb,
                        void *const *args)
{
	struct store_pipeline *p = store->pipeline;
	struct store_group *g = xcalloc(1, sizeof(*g));

	if (n == 0 || n > STORE_GROUP_MAX)
		fatalx("store_blob_commit_group: %zu messages", n);
	g->n = g->remaining = n;
	g->jobs = xcalloc(n, sizeof(*g->jobs));
	for (size_t i = 0; i < n; i++) {
		g->jobs[i] = store_job_new(store, blobs[i], &deliveries[i], cb, args[i]);
		g->jobs[i]->group = g;
		g->jobs[i]->group_index = i;
		free(blobs[i]);
		blobs[i] = NULL;
	}
	if (p == NULL) {
		store_commit_sync(store, g->jobs, n);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->inflight += (unsigned)n;
	for (size_t i = 0; i < n; i++)
		store_job_queue_push(&p->sync_jobs, g->jobs[i]);
	pthread_cond_broadcast(&p->sync_cond);
	pthread_mutex_unlock(&p->lock);
}

void
store_pipeline_push_update(struct store *store, struct store_update *u)
{
	struct store_pipeline *p = store->pipeline;
	struct store_update_queue *q = &p->updates;

	pthread_mutex_lock(&p->lock);
	p->inflight++;
	*store_update_nextp(u) = NULL;
	if (q->tail != NULL)
		*store_update_nextp(q->tail) = u;
	else
		q->head = u;
	q->tail = u;
	pthread_cond_signal(&p->commit_cond);
	pthread_mutex_unlock(&p->lock);
}

void
store_pipeline_push_mbox(struct store *store, struct store_mbox_job *job)
{
	struct store_pipeline *p = store->pipeline;

	pthread_mutex_lock(&p->lock);
	p->inflight++;
	*store_mbox_nextp(job) = NULL;
	if (p->mbox_tail != NULL)
		*store_mbox_nextp(p->mbox_tail) = job;
	else
		p->mbox_head = job;
	p->mbox_tail = job;
	pthread_cond_signal(&p->commit_cond);
	pthread_mutex_unlock(&p->lock);
}
