/* test_store: the SQLite store in a temporary data dir: accounts and aliases, synchronous and
 * threaded commits, reads, deletion, migrations and tmp cleanup, CRLF sizes, mailbox updates
 * (flags, expunge) alone and interleaved with deliveries; for IMAP: keywords, update results and
 * UNCHANGEDSINCE, COPY/MOVE, mailbox CREATE/DELETE/RENAME, subscriptions, the UIDVALIDITY
 * counter, the kept MIME structure, and APPEND through deliver. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <sqlite3.h>

#include "deliver/deliver.h"
#include "lib/config.h"
#include "lib/workers.h"
#include "mime/mimestruct.h"
#include "mime/mimetext.h"
#include "mime/summary.h"
#include "notify/notify.h"
#include "store/store.h"

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaA"

static const char message1[] = "From: Carol <carol@example.net>\r\n"
                               "To: alice@example.org\r\n"
                               "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
                               "Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
                               "Message-ID: <m1@example.net>\r\n"
                               "\r\n"
                               "Hello Alice.\r\n";

struct test_dir {
	char path[64];
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup_dir(void **state)
{
	struct test_dir *d = calloc(1, sizeof(*d));

	strcpy(d->path, "/tmp/test_store_XXXXXX");
	if (mkdtemp(d->path) == NULL)
		return -1;
	*state = d;
	return 0;
}

static int
teardown_dir(void **state)
{
	struct test_dir *d = *state;

	nftw(d->path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(d);
	return 0;
}

static int count_files_n;

static int
count_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	if (flag == FTW_F)
		count_files_n++;
	return 0;
}

/* Regular files under dir/sub (recursively); 0 when it does not exist. */
static int
count_files(const char *dir, const char *sub)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	count_files_n = 0;
	nftw(path, count_entry, 16, FTW_PHYS);
	return count_files_n;
}

static struct store *
open_store(const char *dir, bool create, struct workers *workers)
{
	char error[256] = "";
	struct store *store = NULL;

	if (store_open(dir, create, workers, &store, error, sizeof(error)) < 0)
		fail_msg("store_open: %s", error);
	return store;
}

static int64_t
account_id(struct store *store, const char *address)
{
	struct store_account a;

	assert_int_equal(store_account_lookup(store, address, &a), 1);
	return a.id;
}

/* Result of one commit, filled by commit_cb. */
struct commit_result {
	int calls;
	bool ok;
	char error[256];
	struct store_result results[4];
	size_t n;
};

static void
commit_cb(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct commit_result *r = arg;

	r->calls++;
	r->ok = ok;
	snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : "");
	if (ok)
		memcpy(r->results, results, r->n * sizeof(*results));
}

/* Writes data into a new blob and commits it synchronously to targets. */
static void
deliver(struct store *store, const char *data, size_t len, const struct store_target *targets,
        size_t n, struct commit_result *r)
{
	struct store_delivery d = {"carol@example.net", 0, 1751364000, targets, n};
	struct store_blob *blob = NULL;
	char error[256];

	memset(r, 0, sizeof(*r));
	r->n = n;
	assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
	/* Two writes, to exercise appending. */
	assert_int_equal(store_blob_write(blob, data, len / 2), 0);
	assert_int_equal(store_blob_write(blob, data + len / 2, len - len / 2), 0);
	assert_int_equal(store_blob_size(blob), len);
	store_blob_commit(store, &blob, &d, commit_cb, r);
	assert_null(blob);
	assert_int_equal(r->calls, 1);
}

#define LIST_MAX 128

struct list_acc {
	int n;
	struct store_message m[LIST_MAX];
};

static void
list_cb(const struct store_message *m, void *arg)
{
	struct list_acc *acc = arg;

	if (acc->n < LIST_MAX)
		acc->m[acc->n] = *m;
	acc->n++;
}

/* Lists account's mailbox into acc (zeroed first) and returns the count. */
static int
list_mailbox(struct store *store, int64_t account, const char *mailbox, struct list_acc *acc)
{
	memset(acc, 0, sizeof(*acc));
	assert_int_equal(store_message_list(store, account, mailbox, list_cb, acc), 1);
	return acc->n;
}

/* The listed message with uid, or NULL. */
static const struct store_message *
list_find(const struct list_acc *acc, uint32_t uid)
{
	for (int i = 0; i < acc->n && i < LIST_MAX; i++) {
		if (acc->m[i].uid == uid)
			return &acc->m[i];
	}
	return NULL;
}

static void
count_cb(const void *item, void *arg)
{
	(*(int *)arg)++;
}

static void
account_count_cb(const struct store_account *a, void *arg)
{
	count_cb(a, arg);
}

static void
alias_count_cb(const char *alias, void *arg)
{
	count_cb(alias, arg);
}

static void
queue_cb(const struct store_queue_entry *e, void *arg)
{
	*(struct store_queue_entry *)arg = *e;
}

static void
mailbox_cb(const struct store_mailbox *mb, void *arg)
{
	struct store_mailbox *out = arg;

	if (strcmp(mb->name, "INBOX") == 0)
		*out = *mb;
}

static void
test_store_accounts(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_account a;
	char error[256];
	int n = 0;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	/* Duplicates, in any case, are refused. */
	assert_int_equal(store_account_add(store, "ALICE@example.org", HASH, error, sizeof(error)),
	                 0);
	assert_int_equal(store_alias_add(store, "Postmaster@Example.org", "alice@example.org",
	                                 error, sizeof(error)),
	                 1);
	assert_int_equal(store_alias_add(store, "postmaster@example.org", "bob@example.org", error,
	                                 sizeof(error)),
	                 0);
	assert_int_equal(
	    store_alias_add(store, "bob@example.org", "alice@example.org", error, sizeof(error)),
	    0);
	assert_int_equal(
	    store_alias_add(store, "x@example.org", "nobody@example.org", error, sizeof(error)), 0);
	assert_int_equal(
	    store_account_add(store, "postmaster@example.org", HASH, error, sizeof(error)), 0);

	assert_int_equal(store_account_lookup(store, "Alice@EXAMPLE.ORG", &a), 1);
	assert_string_equal(a.address, "alice@example.org");
	assert_string_equal(a.password_hash, HASH);
	assert_true(a.created > 0);
	assert_int_equal(store_account_lookup(store, "POSTMASTER@example.org", &a), 1);
	assert_string_equal(a.address, "alice@example.org");
	assert_int_equal(store_account_lookup(store, "carol@example.org", &a), 0);

	assert_int_equal(store_account_set_password(store, "bob@example.org", "$argon2id$new",
	                                            error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_lookup(store, "bob@example.org", &a), 1);
	assert_string_equal(a.password_hash, "$argon2id$new");
	assert_int_equal(
	    store_account_set_password(store, "nobody@example.org", "x", error, sizeof(error)), 0);

	assert_int_equal(store_account_list(store, account_count_cb, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(
	    store_alias_list(store, account_id(store, "alice@example.org"), alias_count_cb, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_alias_del(store, "postmaster@example.org", error, sizeof(error)), 1);
	assert_int_equal(store_alias_del(store, "postmaster@example.org", error, sizeof(error)), 0);
	assert_int_equal(store_account_lookup(store, "postmaster@example.org", &a), 0);
	store_free(&store);
	assert_null(store);
}

static void
test_store_commit_sync(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_queue_entry qe;
	struct store_mailbox mb;
	struct commit_result r;
	struct list_acc acc;
	char error[256], buf[4096];
	int64_t alice, bob;
	ssize_t got;
	int fd;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	bob = account_id(store, "bob@example.org");
	{
		struct store_target t[3] = {
		    {alice, "INBOX", 0, "alice@example.org", NULL},
		    {bob, "inbox", STORE_FLAG_SEEN, "bob@example.org", NULL},
		    {0, NULL, 0, "dave@elsewhere.test", NULL},
		};
		deliver(store, message1, sizeof(message1) - 1, t, 3, &r);
		assert_true(r.ok);
		assert_int_equal(r.results[0].uid, 1);
		assert_int_equal(r.results[1].uid, 1);
		assert_true(r.results[2].queue_id > 0);
		assert_true(r.results[0].mailbox_id != r.results[1].mailbox_id);
		deliver(store, "Subject: two\r\n\r\nx\r\n", 19, t, 1, &r);
		assert_true(r.ok);
		assert_int_equal(r.results[0].uid, 2);
	}
	/* One file per target (hard links), nothing left in tmp. */
	assert_int_equal(count_files(d->path, "mail"), 3);
	assert_int_equal(count_files(d->path, "queue"), 1);
	assert_int_equal(count_files(d->path, "tmp"), 0);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(store_message_list(store, alice, "INBOX", list_cb, &acc), 1);
	assert_int_equal(acc.n, 2);
	assert_int_equal(acc.m[0].uid, 1);
	assert_int_equal(acc.m[1].uid, 2);
	assert_true(acc.m[0].modseq < acc.m[1].modseq);
	assert_int_equal(acc.m[0].size, sizeof(message1) - 1);
	assert_int_equal(acc.m[0].internal_date, 1751364000);
	assert_string_equal(acc.m[0].subject, "Grüße");
	assert_string_equal(acc.m[0].from, "Carol <carol@example.net>");
	assert_string_equal(acc.m[0].to, "alice@example.org");
	assert_string_equal(acc.m[0].message_id, "m1@example.net");
	assert_int_equal(acc.m[0].date, 1751364000);
	assert_string_equal(acc.m[1].subject, "two");
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(store_message_list(store, bob, "INBOX", list_cb, &acc), 1);
	assert_int_equal(acc.n, 1);
	assert_int_equal(acc.m[0].flags, STORE_FLAG_SEEN);
	assert_int_equal(store_message_list(store, bob, "Nope", list_cb, &acc), 0);

	fd = store_message_open(store, bob, "INBOX", 1);
	assert_true(fd >= 0);
	got = read(fd, buf, sizeof(buf));
	assert_int_equal(got, sizeof(message1) - 1);
	assert_memory_equal(buf, message1, sizeof(message1) - 1);
	close(fd);
	assert_int_equal(store_message_open(store, bob, "INBOX", 7), -2);
	assert_int_equal(store_message_open(store, bob, "Nope", 1), -2);

	memset(&mb, 0, sizeof(mb));
	assert_int_equal(store_mailbox_list(store, alice, mailbox_cb, &mb), 0);
	assert_int_equal(mb.messages, 2);
	assert_int_equal(mb.uidnext, 3);
	assert_int_equal(mb.highestmodseq, 2);
	assert_true(mb.uidvalidity > 0);

	memset(&qe, 0, sizeof(qe));
	assert_int_equal(store_queue_list(store, queue_cb, &qe), 0);
	assert_string_equal(qe.rcpt, "dave@elsewhere.test");
	assert_string_equal(qe.mail_from, "carol@example.net");
	assert_string_equal(qe.status, "queued");
	assert_int_equal(qe.size, sizeof(message1) - 1);

	/* An unknown mailbox fails the whole delivery and leaves no file behind. */
	{
		struct store_target t[2] = {
		    {alice, "INBOX", 0, "alice@example.org", NULL},
		    {bob, "NoSuchBox", 0, "bob@example.org", NULL},
		};
		deliver(store, message1, sizeof(message1) - 1, t, 2, &r);
		assert_false(r.ok);
		assert_non_null(strstr(r.error, "NoSuchBox"));
	}
	assert_int_equal(count_files(d->path, "mail"), 3);
	assert_int_equal(count_files(d->path, "tmp"), 0);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(store_message_list(store, alice, "INBOX", list_cb, &acc), 1);
	assert_int_equal(acc.n, 2);

	/* Deleting an account removes its rows and its files; the queue copy stays. */
	assert_int_equal(store_account_del(store, "bob@example.org", error, sizeof(error)), 1);
	assert_int_equal(store_account_del(store, "bob@example.org", error, sizeof(error)), 0);
	assert_int_equal(count_files(d->path, "mail"), 2);
	assert_int_equal(count_files(d->path, "queue"), 1);
	assert_int_equal(store_message_open(store, bob, "INBOX", 1), -2);
	store_free(&store);
}

/* Opens and closes the store as the daemon does (with workers), which sweeps leftovers. */
static void
sweep_open_daemon(const char *dir)
{
	struct event_base *base = event_base_new();
	struct workers *workers;
	struct store *store;

	assert_non_null(base);
	workers = workers_new(base, 1);
	store = open_store(dir, false, workers);
	store_free(&store);
	workers_free(&workers);
	event_base_free(base);
}

/* The relative path of the first file (by name) in dir/mail/<account>. */
static void
sweep_first_file(const char *dir, int64_t account, char *rel, size_t relsize)
{
	char path[512];
	struct dirent **names;
	int n;

	snprintf(path, sizeof(path), "%s/mail/%lld", dir, (long long)account);
	n = scandir(path, &names, NULL, alphasort);
	assert_true(n > 2);
	rel[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (rel[0] == '\0' && names[i]->d_name[0] != '.')
			snprintf(rel, relsize, "mail/%lld/%s", (long long)account,
			         names[i]->d_name);
		free(names[i]);
	}
	free(names);
}

static void
test_store_abort_and_tmp(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_blob *blob = NULL;
	char error[256], path[256];
	FILE *fp;

	assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
	assert_int_equal(store_blob_write(blob, "abc", 3), 0);
	assert_int_equal(count_files(d->path, "tmp"), 1);
	store_blob_abort(&blob);
	assert_null(blob);
	assert_int_equal(count_files(d->path, "tmp"), 0);
	store_free(&store);

	/* A leftover from a crash mid-receive is removed when the daemon opens the store (with
	 * workers), never by a command-line tool (the daemon may be writing it). */
	snprintf(path, sizeof(path), "%s/tmp/leftover", d->path);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("partial", fp);
	fclose(fp);
	store = open_store(d->path, false, NULL);
	assert_int_equal(count_files(d->path, "tmp"), 1);
	store_free(&store);
	sweep_open_daemon(d->path);
	assert_int_equal(count_files(d->path, "tmp"), 0);
}

/* Writes a small file at dir/rel. */
static void
sweep_write(const char *dir, const char *rel)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("Subject: orphan\r\n\r\nleft by a crash\r\n", fp);
	fclose(fp);
}

/* Files of a crash (renamed into place, no row; an expunged row's file; a stray hard link of
 * a live message) are removed when the daemon opens the store; every file a row names stays,
 * including each name of a message delivered to several accounts, and a copy's. */
static void
test_store_sweep_orphans(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct commit_result r;
	struct list_acc acc;
	char error[256], from[512], to[512];
	int64_t alice, bob;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	bob = account_id(store, "bob@example.org");
	struct store_target t[3] = {
	    {alice, "INBOX", 0, "alice@example.org", NULL},
	    {bob, "INBOX", 0, "bob@example.org", NULL},
	    {0, NULL, 0, "dave@elsewhere.test", NULL},
	};
	for (int i = 0; i < 3; i++) {
		deliver(store, "Subject: kept\r\n\r\nbody\r\n", 23, t, 3, &r);
		assert_true(r.ok);
	}
	assert_int_equal(count_files(d->path, "mail"), 6);
	assert_int_equal(count_files(d->path, "queue"), 3);
	store_free(&store);

	snprintf(to, sizeof(to), "mail/%lld/0000-orphan.eml", (long long)alice);
	sweep_write(d->path, to);
	snprintf(to, sizeof(to), "mail/%lld/zzzz-orphan.eml", (long long)bob);
	sweep_write(d->path, to);
	sweep_write(d->path, "queue/orphan.eml");
	/* A second name for a live message's inode: the name goes, the message stays. */
	{
		char src[600], dst[600];
		sweep_first_file(d->path, alice, from, sizeof(from));
		snprintf(src, sizeof(src), "%s/%s", d->path, from);
		snprintf(dst, sizeof(dst), "%s/mail/%lld/link-orphan.eml", d->path,
		         (long long)alice);
		assert_int_equal(link(src, dst), 0);
	}
	assert_int_equal(count_files(d->path, "mail"), 9);
	assert_int_equal(count_files(d->path, "queue"), 4);

	/* A command-line tool leaves them. */
	store = open_store(d->path, false, NULL);
	store_free(&store);
	assert_int_equal(count_files(d->path, "mail"), 9);

	sweep_open_daemon(d->path);
	assert_int_equal(count_files(d->path, "mail"), 6);
	assert_int_equal(count_files(d->path, "queue"), 3);
	store = open_store(d->path, false, NULL);
	for (int64_t *a = (int64_t[]){alice, bob, 0}; *a != 0; a++) {
		assert_int_equal(list_mailbox(store, *a, "INBOX", &acc), 3);
		for (int i = 0; i < 3; i++) {
			int fd = store_message_open(store, *a, "INBOX", acc.m[i].uid);
			char buf[64];
			assert_true(fd >= 0);
			assert_int_equal(read(fd, buf, sizeof(buf)), 23);
			close(fd);
		}
	}
	store_free(&store);
}

static void
test_store_reopen(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	char error[256], path[256];
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	store_free(&store);
	store = open_store(d->path, false, NULL);
	assert_int_equal(account_id(store, "alice@example.org"), 1);
	store_free(&store);
	store = open_store(d->path, true, NULL);
	store_free(&store);

	/* One version row, at the latest version, and the data intact. */
	snprintf(path, sizeof(path), "%s/tern.db", d->path);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), max(version) FROM schema_version",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	assert_true(sqlite3_column_int(st, 1) >= 1);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM mailboxes", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 5);
	sqlite3_finalize(st);
	sqlite3_close(db);

	/* Opening a missing store without create fails with a reason. */
	{
		struct store *none = NULL;
		snprintf(path, sizeof(path), "%s/mail", d->path);
		assert_int_equal(store_open(path, false, NULL, &none, error, sizeof(error)), -1);
		assert_null(none);
		assert_true(strlen(error) > 0);
	}
}

#define NTHREADED 200

struct threaded {
	struct event_base *base;
	int done;
	int ok;
	bool seen[NTHREADED + 1];
	bool dup;
};

static void
threaded_cb(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct threaded *t = arg;

	t->done++;
	if (!ok) {
		print_message("# commit failed: %s\n", error);
		return;
	}
	t->ok++;
	if (results[0].uid < 1 || results[0].uid > NTHREADED || t->seen[results[0].uid])
		t->dup = true;
	else
		t->seen[results[0].uid] = true;
	if (t->done == NTHREADED)
		event_base_loopbreak(t->base);
}

static void
test_store_threaded(void **state)
{
	struct test_dir *d = *state;
	struct threaded t;
	struct workers *workers;
	struct store *store;
	struct store_target target = {0, "INBOX", 0, "alice@example.org", NULL};
	struct store_delivery delivery = {"carol@example.net", 0, 1751364000, &target, 1};
	struct list_acc acc;
	char error[256], body[4096];

	memset(&t, 0, sizeof(t));
	assert_int_equal(evthread_use_pthreads(), 0);
	t.base = event_base_new();
	assert_non_null(t.base);
	workers = workers_new(t.base, 2);
	store = open_store(d->path, true, workers);
	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	target.account_id = account_id(store, "alice@example.org");
	memset(body, 'x', sizeof(body));
	memcpy(body, message1, sizeof(message1) - 1);

	for (int i = 0; i < NTHREADED; i++) {
		struct store_blob *blob = NULL;
		assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
		assert_int_equal(store_blob_write(blob, body, sizeof(body)), 0);
		store_blob_commit(store, &blob, &delivery, threaded_cb, &t);
		assert_null(blob);
	}
	while (t.done < NTHREADED)
		event_base_loop(t.base, EVLOOP_ONCE);
	assert_int_equal(t.ok, NTHREADED);
	assert_false(t.dup);
	for (int uid = 1; uid <= NTHREADED; uid++)
		assert_true(t.seen[uid]);

	/* Visible on the loop thread's own connection right after the callbacks. */
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(store_message_list(store, target.account_id, "INBOX", list_cb, &acc), 1);
	assert_int_equal(acc.n, NTHREADED);
	assert_int_equal(count_files(d->path, "mail"), NTHREADED);
	assert_int_equal(count_files(d->path, "tmp"), 0);

	/* A failing job inside the pipeline reports ok=false without hurting later ones. */
	{
		struct store_target bad = {target.account_id, "NoSuchBox", 0, "x", NULL};
		struct store_delivery d2 = {"", 0, 0, &bad, 1};
		struct store_blob *blob = NULL;
		int before = t.done;
		assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
		assert_int_equal(store_blob_write(blob, "x\r\n", 3), 0);
		store_blob_commit(store, &blob, &d2, threaded_cb, &t);
		while (t.done == before)
			event_base_loop(t.base, EVLOOP_ONCE);
		assert_int_equal(t.ok, NTHREADED);
	}
	store_free(&store);
	workers_free(&workers);
	event_base_free(t.base);
}

/* One message of a group commit, as its callback saw it. */
struct group_part {
	int calls;
	bool ok;
	uint32_t uid;
	int order;
	int *counter;
};

static void
group_cb(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct group_part *p = arg;

	p->calls++;
	p->ok = ok;
	p->uid = ok ? results[0].uid : 0;
	p->order = ++*p->counter;
}

/* Commits n blobs as one group; target bad (or -1 for none) goes to a mailbox that does not
 * exist. Waits for every callback when base is given. */
static void
group_commit(struct store *store, struct event_base *base, int64_t account, size_t n, int bad,
             struct group_part *parts, int *counter)
{
	struct store_blob *blobs[8];
	struct store_target targets[8];
	struct store_delivery ds[8];
	void *args[8];
	char error[256];

	*counter = 0;
	for (size_t i = 0; i < n; i++) {
		memset(&parts[i], 0, sizeof(parts[i]));
		parts[i].counter = counter;
		targets[i] = (struct store_target){account, (int)i == bad ? "NoSuchBox" : "INBOX",
		                                   0, "alice@example.org", NULL};
		ds[i] = (struct store_delivery){"carol@example.net", 0, 1751364000, &targets[i], 1};
		args[i] = &parts[i];
		assert_int_equal(store_blob_new(store, &blobs[i], error, sizeof(error)), 0);
		assert_int_equal(store_blob_write(blobs[i], message1, sizeof(message1) - 1), 0);
	}
	store_blob_commit_group(store, blobs, ds, n, group_cb, args);
	for (size_t i = 0; i < n; i++)
		assert_null(blobs[i]);
	while (base != NULL && *counter < (int)n)
		event_base_loop(base, EVLOOP_ONCE);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(parts[i].calls, 1);
		assert_int_equal(parts[i].order, (int)i + 1);
	}
}

/* Sets the INBOX's next UID behind the store's back. */
static void
uidnext_set(const char *dir, int64_t account, long long uidnext)
{
	char path[256], sql[256];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/tern.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	snprintf(sql, sizeof(sql),
	         "UPDATE mailboxes SET uidnext = %lld WHERE account_id = %lld AND name = 'INBOX'",
	         uidnext, (long long)account);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* store_blob_commit_group (IMAP MULTIAPPEND): all the messages or none, with and without the
 * pipeline's threads. */
static void
test_store_group(void **state)
{
	struct test_dir *d = *state;
	struct group_part parts[8];
	struct list_acc acc;
	struct event_base *base = NULL;
	struct workers *workers = NULL;
	char error[256];
	int counter;

	for (int threaded = 0; threaded <= 1; threaded++) {
		struct store *store;
		int64_t alice;

		print_message("# group commit, %s\n",
		              threaded ? "pipeline threads" : "synchronous");
		if (threaded) {
			assert_int_equal(evthread_use_pthreads(), 0);
			base = event_base_new();
			workers = workers_new(base, 2);
		}
		store = open_store(d->path, !threaded, workers);
		if (!threaded)
			assert_int_equal(store_account_add(store, "alice@example.org", HASH, error,
			                                   sizeof(error)),
			                 1);
		alice = account_id(store, "alice@example.org");
		int before = list_mailbox(store, alice, "INBOX", &acc);
		int files = count_files(d->path, "mail");

		print_message("# three messages: all ok, consecutive UIDs, callbacks in order\n");
		group_commit(store, base, alice, 3, -1, parts, &counter);
		for (int i = 0; i < 3; i++) {
			assert_true(parts[i].ok);
			assert_int_equal(parts[i].uid, parts[0].uid + (uint32_t)i);
		}
		assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), before + 3);
		assert_int_equal(count_files(d->path, "mail"), files + 3);

		print_message(
		    "# the second of three fails: none of them is visible, no file left\n");
		for (int bad = 0; bad < 3; bad++) {
			group_commit(store, base, alice, 3, bad, parts, &counter);
			for (int i = 0; i < 3; i++)
				assert_false(parts[i].ok);
			assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), before + 3);
			assert_int_equal(count_files(d->path, "mail"), files + 3);
			assert_int_equal(count_files(d->path, "tmp"), 0);
		}

		print_message("# a group of one, and the next group works again\n");
		group_commit(store, base, alice, 1, -1, parts, &counter);
		assert_true(parts[0].ok);
		group_commit(store, base, alice, 2, -1, parts, &counter);
		assert_true(parts[0].ok && parts[1].ok);
		assert_int_equal(parts[1].uid, parts[0].uid + 1);
		assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), before + 6);

		print_message("# the second row fails inside the transaction (out of UIDs): the "
		              "first row is rolled back with it\n");
		uidnext_set(d->path, alice, 4294967294LL);
		group_commit(store, base, alice, 2, -1, parts, &counter);
		assert_false(parts[0].ok || parts[1].ok);
		uidnext_set(d->path, alice, 1000);
		assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), before + 6);
		assert_int_equal(count_files(d->path, "mail"), files + 6);
		store_free(&store);
		if (threaded) {
			workers_free(&workers);
			event_base_free(base);
		}
	}
}

/* The CRLF size computed the simple way, one byte at a time over the whole message. */
static uint64_t
crlf_size_reference(const char *data, size_t len)
{
	uint64_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) ? 2 : 1;
	return n;
}

static void
test_store_size_crlf(void **state)
{
	static const struct {
		const char *data;
		uint64_t size_crlf;
	} cases[] = {
	    {"Subject: crlf\r\n\r\nbody\r\n", 23},   /* CRLF only: unchanged */
	    {"Subject: lf\n\nbody\n", 21},           /* three bare LFs */
	    {"Subject: mixed\r\n\nbody\n", 24},      /* two of four line ends bare */
	    {"Subject: none\r\n\r\nno newline", 27}, /* nothing added at the end */
	    {"Subject: none\n\nno newline", 27},
	    {"\nleading", 9},       /* an LF as the first byte */
	    {"cr\ronly\r", 8},      /* bare CRs count as they are */
	    {"cr cr lf\r\r\n", 11}, /* the LF follows a CR */
	    {"x", 1},
	};
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct commit_result r;
	struct list_acc acc;
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	char error[256];
	size_t n = sizeof(cases) / sizeof(cases[0]);

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(cases[i].data);

		assert_int_equal(crlf_size_reference(cases[i].data, len), cases[i].size_crlf);
		deliver(store, cases[i].data, len, &t, 1, &r);
		assert_true(r.ok);
	}
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), (int)n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(acc.m[i].size, strlen(cases[i].data));
		assert_int_equal(acc.m[i].size_crlf, cases[i].size_crlf);
		assert_false(acc.m[i].recalled);
	}
	store_free(&store);
}

/* The pipeline reads the file in chunks of 64 KiB (STORE_READ_CHUNK in store_blob.c). */
#define TEST_CHUNK 65536

static void
test_store_size_crlf_chunks(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	size_t len = 3 * TEST_CHUNK + 100;
	char *big = malloc(len);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct commit_result r;
	struct list_acc acc;
	char error[256];

	assert_non_null(big);
	memset(big, 'x', len);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	big[TEST_CHUNK - 1] = '\r'; /* CR the last byte of chunk 1, its LF opens chunk 2 */
	big[TEST_CHUNK] = '\n';
	big[2 * TEST_CHUNK] = '\n';     /* a bare LF opening chunk 3 */
	big[3 * TEST_CHUNK - 1] = '\n'; /* a bare LF closing chunk 3 */
	big[3 * TEST_CHUNK] = '\r';     /* a CR opening chunk 4, then no LF */
	big[len - 1] = '\r';            /* a bare CR at the very end */
	assert_int_equal(crlf_size_reference(big, len), len + 2);

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	deliver(store, big, len, &t, 1, &r);
	assert_true(r.ok);
	/* Exactly one chunk, ending in CR with no LF after it. */
	big[TEST_CHUNK - 1] = '\r';
	deliver(store, big, TEST_CHUNK, &t, 1, &r);
	assert_true(r.ok);
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), 2);
	assert_int_equal(acc.m[0].size, len);
	assert_int_equal(acc.m[0].size_crlf, len + 2);
	assert_int_equal(acc.m[1].size, TEST_CHUNK);
	assert_int_equal(acc.m[1].size_crlf, crlf_size_reference(big, TEST_CHUNK));
	free(big);
	store_free(&store);
}

static void
test_store_mailbox_get(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct store_mailbox mb;
	struct commit_result r;
	char error[256];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	t.account_id = alice;
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);

	memset(&mb, 0xff, sizeof(mb));
	assert_int_equal(store_mailbox_get(store, alice, "inbox", &mb), 1);
	assert_string_equal(mb.name, "INBOX");
	assert_string_equal(mb.special_use, "");
	assert_true(mb.id > 0);
	assert_true(mb.uidvalidity > 0);
	assert_int_equal(mb.uidnext, 3);
	assert_int_equal(mb.highestmodseq, 2);
	assert_int_equal(mb.messages, 2);
	assert_int_equal(store_mailbox_get(store, alice, "Sent", &mb), 1);
	assert_string_equal(mb.name, "Sent");
	assert_string_equal(mb.special_use, "\\Sent");
	assert_int_equal(mb.uidnext, 1);
	assert_int_equal(mb.messages, 0);
	assert_int_equal(store_mailbox_get(store, alice, "sent", &mb), 0); /* only INBOX folds */
	assert_int_equal(store_mailbox_get(store, alice, "NoSuchBox", &mb), 0);
	assert_int_equal(store_mailbox_get(store, alice + 100, "INBOX", &mb), 0);
	store_free(&store);
}

/* Result of one store_mailbox_update, filled by update_cb. */
struct update_result {
	int calls;
	bool ok;
	char error[256];
};

static void
update_cb(bool ok, const char *error, void *arg)
{
	struct update_result *u = arg;

	u->calls++;
	u->ok = ok;
	snprintf(u->error, sizeof(u->error), "%s", error != NULL ? error : "");
}

/* Five messages in alice's INBOX (uid 2 \Seen, uid 4 \Flagged; uid 5 also in Sent, a hard link
 * of the same file), committed synchronously or through the pipeline. Returns alice's id. */
static int64_t
update_fixture(struct store *store)
{
	static const uint32_t flags[5] = {0, STORE_FLAG_SEEN, 0, STORE_FLAG_FLAGGED, 0};
	struct commit_result r;
	char error[256];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	for (int i = 0; i < 5; i++) {
		struct store_target t[2] = {{alice, "INBOX", flags[i], "alice@example.org", NULL},
		                            {alice, "Sent", 0, "alice@example.org", NULL}};
		deliver(store, message1, sizeof(message1) - 1, t, i == 4 ? 2 : 1, &r);
		assert_true(r.ok);
		assert_int_equal(r.results[0].uid, i + 1);
	}
	return alice;
}

/* The flag changes and expunges of the update tests: every kind of change and no-op. */
static const struct store_flag_change update_changes[] = {
    {1, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},    /* set: changes */
    {2, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},    /* already set: no change */
    {3, 0, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 0}, /* already clear: no change */
    {4, STORE_FLAG_ANSWERED, STORE_FLAG_FLAGGED, NULL, NULL, NULL,
     0},                                           /* set one, clear another: changes */
    {99, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0}, /* no such UID: skipped */
};
static const uint32_t update_expunge[] = {3, 5, 77};

/* Checks the state after update_changes and update_expunge were applied to update_fixture. */
static void
update_check(struct store *store, const char *dir, int64_t alice)
{
	struct store_mailbox mb;
	struct list_acc acc;
	char buf[4096];
	ssize_t got;
	int fd;

	assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), 3);
	assert_int_equal(acc.m[0].uid, 1);
	assert_int_equal(acc.m[0].flags, STORE_FLAG_SEEN);
	assert_int_equal(acc.m[0].modseq, 6);
	assert_int_equal(acc.m[1].uid, 2);
	assert_int_equal(acc.m[1].flags, STORE_FLAG_SEEN);
	assert_int_equal(acc.m[1].modseq, 2); /* unchanged row keeps its MODSEQ */
	assert_int_equal(acc.m[2].uid, 4);
	assert_int_equal(acc.m[2].flags, STORE_FLAG_ANSWERED);
	assert_int_equal(acc.m[2].modseq, 6);
	/* One new MODSEQ for the whole update (RFC 7162 allows it): both flag changes and the
	 * expunge. */
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &mb), 1);
	assert_int_equal(mb.highestmodseq, 6);
	assert_int_equal(mb.messages, 3);
	assert_int_equal(mb.uidnext, 6);
	assert_int_equal(store_message_open(store, alice, "INBOX", 3), -2);
	assert_int_equal(store_message_open(store, alice, "INBOX", 5), -2);
	/* The files went with the rows; the Sent copy of uid 5 (a hard link) is intact. */
	assert_int_equal(count_files(dir, "mail"), 4);
	fd = store_message_open(store, alice, "Sent", 1);
	assert_true(fd >= 0);
	got = read(fd, buf, sizeof(buf));
	assert_int_equal(got, sizeof(message1) - 1);
	assert_memory_equal(buf, message1, sizeof(message1) - 1);
	close(fd);
}

/* Snapshot of a mailbox, to check that a failed update changed nothing. */
struct mailbox_snapshot {
	struct store_mailbox mb;
	struct list_acc acc;
	int files;
};

static void
snapshot(struct store *store, const char *dir, int64_t account, struct mailbox_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(store_mailbox_get(store, account, "INBOX", &s->mb), 1);
	list_mailbox(store, account, "INBOX", &s->acc);
	s->files = count_files(dir, "mail");
}

static void
snapshot_equal(const struct mailbox_snapshot *a, const struct mailbox_snapshot *b)
{
	assert_memory_equal(&a->mb, &b->mb, sizeof(a->mb));
	assert_int_equal(a->acc.n, b->acc.n);
	for (int i = 0; i < a->acc.n && i < LIST_MAX; i++) {
		assert_int_equal(a->acc.m[i].uid, b->acc.m[i].uid);
		assert_int_equal(a->acc.m[i].flags, b->acc.m[i].flags);
		assert_int_equal(a->acc.m[i].modseq, b->acc.m[i].modseq);
	}
	assert_int_equal(a->files, b->files);
}

static void
test_store_update_sync(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct mailbox_snapshot before, after;
	struct update_result u;
	int64_t alice = update_fixture(store);
	uint32_t gone = 1;

	assert_int_equal(count_files(d->path, "mail"), 6);
	memset(&u, 0, sizeof(u));
	store_mailbox_update(store, alice, "inbox", update_changes,
	                     sizeof(update_changes) / sizeof(update_changes[0]), update_expunge,
	                     sizeof(update_expunge) / sizeof(update_expunge[0]), update_cb, &u);
	assert_int_equal(u.calls, 1); /* synchronous: before the return */
	assert_true(u.ok);
	assert_string_equal(u.error, "");
	update_check(store, d->path, alice);

	/* Only no-ops (set and clear the same bit: clear wins; gone UIDs): nothing moves. */
	snapshot(store, d->path, alice, &before);
	{
		struct store_flag_change c[2] = {
		    {1, STORE_FLAG_FLAGGED, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 0},
		    {3, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0}};
		memset(&u, 0, sizeof(u));
		store_mailbox_update(store, alice, "INBOX", c, 2, update_expunge, 3, update_cb, &u);
		assert_int_equal(u.calls, 1);
		assert_true(u.ok);
		memset(&u, 0, sizeof(u));
		store_mailbox_update(store, alice, "INBOX", NULL, 0, NULL, 0, update_cb, &u);
		assert_int_equal(u.calls, 1);
		assert_true(u.ok);
	}
	snapshot(store, d->path, alice, &after);
	snapshot_equal(&before, &after);

	/* An unknown mailbox or account fails and changes nothing. */
	memset(&u, 0, sizeof(u));
	store_mailbox_update(store, alice, "NoSuchBox", update_changes, 1, &gone, 1, update_cb, &u);
	assert_int_equal(u.calls, 1);
	assert_false(u.ok);
	assert_string_equal(u.error, "no such mailbox");
	memset(&u, 0, sizeof(u));
	store_mailbox_update(store, alice + 100, "INBOX", update_changes, 1, &gone, 1, update_cb,
	                     &u);
	assert_int_equal(u.calls, 1);
	assert_false(u.ok);
	snapshot(store, d->path, alice, &after);
	snapshot_equal(&before, &after);
	store_free(&store);

	/* Durable: the same state after reopening. */
	store = open_store(d->path, false, NULL);
	update_check(store, d->path, alice);
	store_free(&store);
}

/* An event base, workers and a store using them. */
struct loop_env {
	struct event_base *base;
	struct workers *workers;
	struct store *store;
};

static void
loop_env_open(struct loop_env *env, const char *dir, bool create)
{
	assert_int_equal(evthread_use_pthreads(), 0);
	env->base = event_base_new();
	assert_non_null(env->base);
	env->workers = workers_new(env->base, 2);
	env->store = open_store(dir, create, env->workers);
}

static void
loop_env_close(struct loop_env *env)
{
	store_free(&env->store);
	workers_free(&env->workers);
	event_base_free(env->base);
}

/* Runs the loop until *counter reaches target. */
static void
loop_until(struct loop_env *env, const int *counter, int target)
{
	while (*counter < target)
		event_base_loop(env->base, EVLOOP_ONCE);
}

static void
test_store_update_threaded(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct mailbox_snapshot before, after;
	struct update_result u;
	struct loop_env env;
	int64_t alice = update_fixture(store);
	uint32_t gone = 1;

	store_free(&store);
	loop_env_open(&env, d->path, false);
	memset(&u, 0, sizeof(u));
	store_mailbox_update(env.store, alice, "INBOX", update_changes,
	                     sizeof(update_changes) / sizeof(update_changes[0]), update_expunge,
	                     sizeof(update_expunge) / sizeof(update_expunge[0]), update_cb, &u);
	assert_int_equal(u.calls, 0); /* the callback comes through the loop */
	loop_until(&env, &u.calls, 1);
	assert_int_equal(u.calls, 1);
	assert_true(u.ok);
	update_check(env.store, d->path, alice);

	snapshot(env.store, d->path, alice, &before);
	memset(&u, 0, sizeof(u));
	store_mailbox_update(env.store, alice, "Nope", update_changes, 1, &gone, 1, update_cb, &u);
	loop_until(&env, &u.calls, 1);
	assert_false(u.ok);
	assert_string_equal(u.error, "no such mailbox");
	snapshot(env.store, d->path, alice, &after);
	snapshot_equal(&before, &after);
	loop_env_close(&env);
}

#define MIX_FIRST 20       /* delivered before the mix; the updates touch only these */
#define MIX_DELIVERIES 100 /* delivered while the updates run */
#define MIX_UPDATES 20

struct mix {
	int delivered, delivered_ok;
	int updated, updated_ok;
};

static void
mix_commit_cb(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct mix *m = arg;

	m->delivered++;
	if (ok)
		m->delivered_ok++;
	else
		print_message("# commit failed: %s\n", error);
}

static void
mix_update_cb(bool ok, const char *error, void *arg)
{
	struct mix *m = arg;

	m->updated++;
	if (ok)
		m->updated_ok++;
	else
		print_message("# update failed: %s\n", error);
}

/* Hands one message to the pipeline. */
static void
mix_deliver(struct store *store, const struct store_delivery *delivery, const char *body,
            size_t len, struct mix *m)
{
	struct store_blob *blob = NULL;
	char error[256];

	assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
	assert_int_equal(store_blob_write(blob, body, len), 0);
	store_blob_commit(store, &blob, delivery, mix_commit_cb, m);
}

/* Update k sets \Seen on UID k and expunges it when k is even: the outcome does not depend on
 * how it interleaves with the deliveries, which never touch UIDs 1..MIX_FIRST. */
static void
mix_update(struct store *store, int64_t account, uint32_t k, struct mix *m)
{
	struct store_flag_change c = {k, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0};

	store_mailbox_update(store, account, "INBOX", &c, 1, &k, k % 2 == 0 ? 1 : 0, mix_update_cb,
	                     m);
}

static void
test_store_update_concurrent(void **state)
{
	static const char body[] = "Subject: mix\n\nbare LF body\n";
	struct test_dir *d = *state;
	struct store_target target = {0, "INBOX", 0, "alice@example.org", NULL};
	struct store_delivery delivery = {"carol@example.net", 0, 1751364000, &target, 1};
	struct store_mailbox mb;
	struct list_acc acc;
	struct loop_env env;
	struct mix m;
	char error[256];
	bool modseq_seen[MIX_FIRST + MIX_DELIVERIES + MIX_UPDATES * 2] = {false};
	int k = 0;

	memset(&m, 0, sizeof(m));
	loop_env_open(&env, d->path, true);
	assert_int_equal(
	    store_account_add(env.store, "alice@example.org", HASH, error, sizeof(error)), 1);
	target.account_id = account_id(env.store, "alice@example.org");
	for (int i = 0; i < MIX_FIRST; i++)
		mix_deliver(env.store, &delivery, body, sizeof(body) - 1, &m);
	loop_until(&env, &m.delivered, MIX_FIRST);

	for (int i = 0; i < MIX_DELIVERIES; i++) {
		mix_deliver(env.store, &delivery, body, sizeof(body) - 1, &m);
		if (i % (MIX_DELIVERIES / MIX_UPDATES) == 0)
			mix_update(env.store, target.account_id, (uint32_t)++k, &m);
		event_base_loop(env.base, EVLOOP_NONBLOCK);
	}
	assert_int_equal(k, MIX_UPDATES);
	loop_until(&env, &m.delivered, MIX_FIRST + MIX_DELIVERIES);
	loop_until(&env, &m.updated, MIX_UPDATES);
	assert_int_equal(m.delivered_ok, MIX_FIRST + MIX_DELIVERIES);
	assert_int_equal(m.updated_ok, MIX_UPDATES);

	/* Every delivery and every update (its change and its expunge) took exactly one MODSEQ,
	 * none twice, even when the committer ran several updates in one transaction. */
	assert_int_equal(store_mailbox_get(env.store, target.account_id, "INBOX", &mb), 1);
	assert_int_equal(mb.uidnext, MIX_FIRST + MIX_DELIVERIES + 1);
	assert_int_equal(mb.highestmodseq, MIX_FIRST + MIX_DELIVERIES + MIX_UPDATES);
	assert_int_equal(mb.messages, MIX_FIRST + MIX_DELIVERIES - MIX_UPDATES / 2);
	assert_int_equal(list_mailbox(env.store, target.account_id, "INBOX", &acc), mb.messages);
	for (uint32_t uid = 1; uid <= MIX_FIRST + MIX_DELIVERIES; uid++) {
		const struct store_message *msg = list_find(&acc, uid);
		bool expunged = uid <= MIX_FIRST && uid % 2 == 0;

		if (expunged) {
			assert_null(msg);
			continue;
		}
		assert_non_null(msg);
		assert_int_equal(msg->flags, uid <= MIX_FIRST ? STORE_FLAG_SEEN : 0);
		assert_int_equal(msg->size_crlf, sizeof(body) - 1 + 3);
		assert_true(msg->modseq >= 1 && msg->modseq <= mb.highestmodseq);
		assert_false(modseq_seen[msg->modseq - 1]);
		modseq_seen[msg->modseq - 1] = true;
	}
	assert_int_equal(count_files(d->path, "mail"), mb.messages);
	assert_int_equal(count_files(d->path, "tmp"), 0);
	loop_env_close(&env);
}

/* Runs sql on the store's database file directly (to fake an older schema). */
static void
raw_exec(const char *dir, const char *sql)
{
	char path[256];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/tern.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* Reads one integer with sql from the store's database file. */
static int64_t
raw_int(const char *dir, const char *sql)
{
	char path[256];
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v;

	snprintf(path, sizeof(path), "%s/tern.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* What migration 5 added: the counter triggers and columns. */
#define UNDO_MIGRATION_6                                                                           \
	"DROP TRIGGER messages_text_insert; DROP TRIGGER messages_text_delete;"                    \
	"DROP TABLE message_text; DROP TABLE message_text_pending;"

#define UNDO_MIGRATION_5                                                                           \
	UNDO_MIGRATION_6                                                                           \
	"DROP TRIGGER messages_count_insert; DROP TRIGGER messages_count_delete;"                  \
	"DROP TRIGGER messages_count_update; ALTER TABLE mailboxes DROP COLUMN messages_count;"    \
	"ALTER TABLE mailboxes DROP COLUMN unseen_count;"                                          \
	"ALTER TABLE mailboxes DROP COLUMN size_sum;"

/* What migrations 4 (and 5) added beside the rebuilt mailboxes table (which older migrations
 * accept). */
#define UNDO_MIGRATION_4                                                                           \
	UNDO_MIGRATION_5                                                                           \
	"DROP TRIGGER messages_expunged; DROP TRIGGER messages_moved;"                             \
	"DROP TRIGGER mailboxes_expunged; DROP TABLE expunged;"

static void
test_store_migration_2(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct commit_result r;
	struct list_acc acc;
	char error[256];

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	store_free(&store);
	assert_true(raw_int(d->path, "SELECT version FROM schema_version") >= 2);

	/* Back to version 1: the schema of migration 1 alone, with a row from that time. */
	raw_exec(d->path, UNDO_MIGRATION_4 "ALTER TABLE messages DROP COLUMN size_crlf;"
	                                   "ALTER TABLE messages DROP COLUMN mime;"
	                                   "DROP TABLE counters; DROP TABLE subscriptions;"
	                                   "UPDATE schema_version SET version = 1;");
	store = open_store(d->path, false, NULL);
	store_free(&store);
	assert_true(raw_int(d->path, "SELECT version FROM schema_version") >= 2);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM schema_version"), 1);
	/* Applied once: a second open does not add the column again (that would fail). */
	store = open_store(d->path, false, NULL);
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), 1);
	assert_int_equal(acc.m[0].size, sizeof(message1) - 1);
	assert_int_equal(acc.m[0].size_crlf, acc.m[0].size);
	/* New rows get their own CRLF size. */
	deliver(store, "a\nb\n", 4, &t, 1, &r);
	assert_true(r.ok);
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), 2);
	assert_int_equal(acc.m[1].size_crlf, 6);
	store_free(&store);
}

/* --- IMAP completion: migration 3, UIDVALIDITY, keywords, results, COPY/MOVE --- */

static void
sub_cb(const char *name, void *arg)
{
	char *buf = arg;

	if (buf[0] != '\0')
		strcat(buf, ",");
	strcat(buf, name);
}

/* The account's subscriptions as "a,b,c" (sorted by name). */
static void
subscriptions(struct store *store, int64_t account, char *buf)
{
	buf[0] = '\0';
	assert_int_equal(store_subscription_list(store, account, sub_cb, buf), 1);
}

static uint32_t
uidvalidity_of(struct store *store, int64_t account, const char *name)
{
	struct store_mailbox mb;

	assert_int_equal(store_mailbox_get(store, account, name, &mb), 1);
	return mb.uidvalidity;
}

static void
test_store_migration_3(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct commit_result r;
	unsigned char *blob = NULL;
	size_t len = 99;
	char error[256], subs[512];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = t.account_id = account_id(store, "alice@example.org");
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	store_free(&store);

	print_message("# migration 3 from a version 2 database: mime NULL, counter past the "
	              "largest UIDVALIDITY, subscriptions from mailboxes.subscribed\n");
	raw_exec(d->path, UNDO_MIGRATION_4
	         "ALTER TABLE messages DROP COLUMN mime;"
	         "DROP TABLE counters; DROP TABLE subscriptions;"
	         "UPDATE mailboxes SET subscribed = 0 WHERE name = 'Junk';"
	         "UPDATE mailboxes SET uidvalidity = 4000000000 WHERE name = 'Trash';"
	         "UPDATE schema_version SET version = 2;");
	store = open_store(d->path, false, NULL);
	assert_int_equal(raw_int(d->path, "SELECT version FROM schema_version"), 6);
	assert_int_equal(raw_int(d->path, "SELECT value FROM counters WHERE name = 'uidvalidity'"),
	                 4000000000LL);
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Drafts,INBOX,Sent,Trash");
	/* An old row has no structure: found, NULL, the caller builds it from the file. */
	assert_int_equal(store_message_mime(store, alice, "INBOX", 1, &blob, &len), 1);
	assert_null(blob);
	assert_int_equal(len, 0);
	assert_int_equal(store_message_mime(store, alice, "INBOX", 2, &blob, &len), 0);
	assert_int_equal(store_message_mime(store, alice, "Nope", 1, &blob, &len), 0);
	/* The next mailbox is past every value given before the counter existed. */
	assert_int_equal(store_mailbox_create(store, alice, "New", NULL, error, sizeof(error)), 1);
	assert_int_equal(uidvalidity_of(store, alice, "New"), 4000000001U);
	store_free(&store);
}

static void
test_store_uidvalidity(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	uint32_t seen[16], u;
	int64_t now = time(NULL), alice, bob;
	char error[256];
	size_t n = 0;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	bob = account_id(store, "bob@example.org");
	print_message(
	    "# every default mailbox of every account gets its own UIDVALIDITY, >= now\n");
	for (int a = 0; a < 2; a++) {
		static const char *const names[] = {"INBOX", "Sent", "Drafts", "Junk", "Trash"};
		for (size_t i = 0; i < 5; i++) {
			u = uidvalidity_of(store, a == 0 ? alice : bob, names[i]);
			assert_true(u >= now);
			for (size_t j = 0; j < n; j++)
				assert_int_not_equal(seen[j], u);
			seen[n++] = u;
		}
	}
	print_message("# a name deleted and created again in the same second: a new value each "
	              "time\n");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(
		    store_mailbox_create(store, alice, "Again", NULL, error, sizeof(error)), 1);
		u = uidvalidity_of(store, alice, "Again");
		for (size_t j = 0; j < n; j++)
			assert_int_not_equal(u, seen[j]);
		assert_true(u > seen[n - 1]);
		seen[n++] = u;
		assert_int_equal(store_mailbox_delete(store, alice, "Again", error, sizeof(error)),
		                 1);
	}
	store_free(&store);
	/* Durable: the counter survives a reopen. */
	store = open_store(d->path, false, NULL);
	assert_int_equal(store_mailbox_create(store, alice, "Again", NULL, error, sizeof(error)),
	                 1);
	assert_true(uidvalidity_of(store, alice, "Again") > seen[n - 1]);
	store_free(&store);
}

/* Mailbox ids are never reused (migration 4, AUTOINCREMENT): a mailbox deleted and created
 * again, by the same account or another, gets a new id, also across a reopen. */
static void
test_store_mailbox_ids(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_mailbox mb;
	int64_t alice, bob, last;
	char error[256];

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	bob = account_id(store, "bob@example.org");
	print_message(
	    "# the newest mailbox deleted: the next CREATE (any account) gets a new id\n");
	assert_int_equal(store_mailbox_create(store, alice, "Box", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, alice, "Box", &mb), 1);
	last = mb.id;
	assert_int_equal(store_mailbox_delete(store, alice, "Box", error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_create(store, alice, "Box", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, alice, "Box", &mb), 1);
	assert_true(mb.id > last);
	last = mb.id;
	assert_int_equal(store_mailbox_delete(store, alice, "Box", error, sizeof(error)), 1);
	store_free(&store);
	store = open_store(d->path, false, NULL);
	assert_int_equal(store_mailbox_create(store, bob, "Other", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, bob, "Other", &mb), 1);
	assert_true(mb.id > last);
	store_free(&store);
}

/* Keyword lists given to a delivery: normalized, or refused with an error. */
static const struct {
	const char *in;
	const char *want; /* NULL: refused */
} keyword_cases[] = {
    {NULL, ""},
    {"", ""},
    {"   ", ""},
    {"$Forwarded", "$Forwarded"},
    {"  $Forwarded   Work  ", "$Forwarded Work"},
    {"Work work WORK $junk", "Work $junk"}, /* case-insensitive unique, first case kept */
    {"a\\b", NULL},
    {"\\Seen", NULL}, /* a system flag is not a keyword */
    {"a(b", NULL},
    {"a)b", NULL},
    {"a{b", NULL},
    {"a%b", NULL},
    {"a*b", NULL},
    {"a\"b", NULL},
    {"a]b", NULL},
    {"a\tb", NULL},
    {"a\x7f", NULL},
    {"caf\xc3\xa9", NULL}, /* 8-bit: not an atom */
    {"[ok]", NULL},        /* ']' is a resp-special */
    {"[ok", "[ok"},
    {"a+b-c.d_e!f#g&h'i/j:k;l<m=n>o?p@q^r`s|t~u", "a+b-c.d_e!f#g&h'i/j:k;l<m=n>o?p@q^r`s|t~u"},
};

/* "k00 k01 ... " with n keywords of width bytes each (padded with x). */
static void
keyword_list(char *buf, size_t size, int n, int width)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && o + (size_t)width + 2 < size; i++) {
		int w = snprintf(buf + o, size - o, "%s%04d", i > 0 ? " " : "", i);
		o += (size_t)w;
		for (int j = 4; j < width; j++)
			buf[o++] = 'x';
		buf[o] = '\0';
	}
}

static void
test_store_keywords_delivery(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", STORE_FLAG_SEEN, "alice@example.org", NULL};
	struct commit_result r;
	struct list_acc acc;
	char error[256], big[4096];
	int rows = 0;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	for (size_t i = 0; i < sizeof(keyword_cases) / sizeof(keyword_cases[0]); i++) {
		print_message("# delivery keywords \"%s\" -> %s\n",
		              keyword_cases[i].in ? keyword_cases[i].in : "(null)",
		              keyword_cases[i].want ? keyword_cases[i].want : "refused");
		t.keywords = keyword_cases[i].in;
		deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
		if (keyword_cases[i].want == NULL) {
			assert_false(r.ok);
			assert_true(strstr(r.error, "keyword") != NULL);
			continue;
		}
		assert_true(r.ok);
		rows++;
		assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), rows);
		assert_string_equal(acc.m[rows - 1].keywords, keyword_cases[i].want);
		assert_int_equal(acc.m[rows - 1].flags, STORE_FLAG_SEEN);
	}
	print_message("# a keyword of STORE_KEYWORD_MAX bytes is kept, one more byte refused\n");
	keyword_list(big, sizeof(big), 1, STORE_KEYWORD_MAX);
	t.keywords = big;
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	rows++;
	keyword_list(big, sizeof(big), 1, STORE_KEYWORD_MAX + 1);
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_false(r.ok);
	print_message("# a list of exactly STORE_KEYWORDS_MAX - 1 bytes is kept, more refused\n");
	/* 16 keywords of 63 bytes + 15 spaces = 1023 bytes. */
	keyword_list(big, sizeof(big), 16, 63);
	assert_int_equal(strlen(big), STORE_KEYWORDS_MAX - 1);
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	rows++;
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), rows);
	assert_string_equal(acc.m[rows - 1].keywords, big);
	keyword_list(big, sizeof(big), 17, 63);
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_false(r.ok);
	assert_true(strstr(r.error, "too many keywords") != NULL);
	/* Refused deliveries left nothing: no row, no file, no tmp file. */
	assert_int_equal(list_mailbox(store, t.account_id, "INBOX", &acc), rows);
	assert_int_equal(count_files(d->path, "mail"), rows);
	assert_int_equal(count_files(d->path, "tmp"), 0);
	store_free(&store);
}

/* Result of one store_mailbox_update_r, copied out of the callback. */
struct update_r {
	int calls;
	bool ok;
	char error[256];
	uint64_t highestmodseq;
	struct store_changed changed[8];
	char keywords[8][STORE_KEYWORDS_MAX]; /* changed[i].keywords point here */
	size_t nchanged;
	uint32_t modified[8], expunged[8];
	size_t nmodified, nexpunged;
};

static void
update_r_cb(bool ok, const char *error, const struct store_update_result *r, void *arg)
{
	struct update_r *u = arg;

	memset(u, 0, sizeof(*u));
	u->calls = 1;
	u->ok = ok;
	snprintf(u->error, sizeof(u->error), "%s", error != NULL ? error : "");
	if (!ok) {
		assert_null(r);
		return;
	}
	assert_non_null(r);
	u->highestmodseq = r->highestmodseq;
	assert_true(r->nchanged <= 8 && r->nmodified <= 8 && r->nexpunged <= 8);
	/* Empty arrays may be NULL: copy only what is there. */
	u->nchanged = r->nchanged;
	if (r->nchanged > 0)
		memcpy(u->changed, r->changed, r->nchanged * sizeof(*r->changed));
	/* The strings are the store's only during the callback: keep copies. */
	for (size_t i = 0; i < r->nchanged; i++) {
		snprintf(u->keywords[i], sizeof(u->keywords[i]), "%s", r->changed[i].keywords);
		u->changed[i].keywords = u->keywords[i];
	}
	u->nmodified = r->nmodified;
	if (r->nmodified > 0)
		memcpy(u->modified, r->modified, r->nmodified * sizeof(*r->modified));
	u->nexpunged = r->nexpunged;
	if (r->nexpunged > 0)
		memcpy(u->expunged, r->expunged, r->nexpunged * sizeof(*r->expunged));
}

static void
test_store_update_results(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct mailbox_snapshot before, after;
	int64_t alice = update_fixture(store); /* INBOX uids 1..5, highestmodseq 5 */
	struct update_r u;
	struct list_acc acc;

	print_message(
	    "# results: changed in UID order with flags, keywords and the one new MODSEQ; "
	    "no-ops left out; expunged ascending\n");
	{
		struct store_flag_change c[] = {
		    {4, STORE_FLAG_ANSWERED, 0, NULL, "Work $Label1", NULL, 0},
		    {2, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0}, /* already \Seen: no change */
		    {1, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},
		    {3, STORE_FLAG_SEEN, 0, NULL, NULL, NULL,
		     0}, /* expunged below: not in changed */
		    {99, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},
		};
		uint32_t expunge[] = {5, 3, 77, 5};

		store_mailbox_update_r(store, alice, "INBOX", c, 5, expunge, 4, update_r_cb, &u);
		assert_int_equal(u.calls, 1);
		assert_true(u.ok);
		assert_int_equal(u.highestmodseq, 6);
		assert_int_equal(u.nchanged, 2);
		assert_int_equal(u.changed[0].uid, 1);
		assert_int_equal(u.changed[0].flags, STORE_FLAG_SEEN);
		assert_int_equal(u.changed[0].modseq, 6);
		assert_string_equal(u.changed[0].keywords, "");
		assert_int_equal(u.changed[1].uid, 4);
		assert_int_equal(u.changed[1].flags, STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED);
		assert_int_equal(u.changed[1].modseq, 6);
		assert_string_equal(u.changed[1].keywords, "Work $Label1");
		assert_int_equal(u.nmodified, 0);
		assert_int_equal(u.nexpunged, 2);
		assert_int_equal(u.expunged[0], 3);
		assert_int_equal(u.expunged[1], 5);
	}
	print_message("# keywords: add (case-insensitive no-op), remove, replace; the set, not the "
	              "order, decides whether a message changed\n");
	{
		struct store_flag_change c[] = {{4, 0, 0, NULL, "work", NULL, 0}};

		store_mailbox_update_r(store, alice, "INBOX", c, 1, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 0);
		assert_int_equal(u.highestmodseq, 6);
		c[0].kw_add = NULL;
		c[0].kw_replace = "$label1 WORK";
		store_mailbox_update_r(store, alice, "INBOX", c, 1, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 0);
		c[0].kw_replace = NULL;
		c[0].kw_remove = "WORK";
		c[0].kw_add = "Urgent";
		store_mailbox_update_r(store, alice, "INBOX", c, 1, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 1);
		assert_string_equal(u.changed[0].keywords, "$Label1 Urgent");
		assert_int_equal(u.changed[0].modseq, 7);
		assert_int_equal(u.highestmodseq, 7);
		c[0].kw_add = NULL;
		c[0].kw_remove = NULL;
		c[0].kw_replace = "";
		store_mailbox_update_r(store, alice, "INBOX", c, 1, NULL, 0, update_r_cb, &u);
		assert_int_equal(u.nchanged, 1);
		assert_string_equal(u.changed[0].keywords, "");
		assert_int_equal(u.highestmodseq, 8);
	}
	print_message("# a UID given twice: one entry with its final state\n");
	{
		struct store_flag_change c[] = {{1, STORE_FLAG_FLAGGED, 0, NULL, "A", NULL, 0},
		                                {1, 0, STORE_FLAG_SEEN, NULL, "B", NULL, 0}};

		store_mailbox_update_r(store, alice, "INBOX", c, 2, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 1);
		assert_int_equal(u.changed[0].uid, 1);
		assert_int_equal(u.changed[0].flags, STORE_FLAG_FLAGGED);
		assert_string_equal(u.changed[0].keywords, "A B");
		assert_int_equal(u.changed[0].modseq, 9);
	}
	print_message("# a keyword error fails the whole update: nothing changes\n");
	snapshot(store, d->path, alice, &before);
	{
		static const char *const bad[][3] = {
		    {NULL, "ok bad\\kw", NULL},
		    {NULL, NULL, "(x"},
		    {"a]", NULL, NULL},
		};
		char big[2048];

		for (size_t i = 0; i < 3; i++) {
			struct store_flag_change c[] = {
			    {2, STORE_FLAG_DELETED, 0, NULL, NULL, NULL, 0},
			    {1, STORE_FLAG_DRAFT, 0, bad[i][0], bad[i][1], bad[i][2], 0}};
			uint32_t x = 2;

			store_mailbox_update_r(store, alice, "INBOX", c, 2, &x, 1, update_r_cb, &u);
			assert_int_equal(u.calls, 1);
			assert_false(u.ok);
			assert_true(strstr(u.error, "uid 1: ") == u.error);
		}
		/* Adding past STORE_KEYWORDS_MAX is refused, not cut. */
		keyword_list(big, sizeof(big), 16, 63);
		{
			struct store_flag_change c[] = {{1, 0, 0, NULL, big, NULL, 0}};

			store_mailbox_update_r(store, alice, "INBOX", c, 1, NULL, 0, update_r_cb,
			                       &u);
			assert_false(u.ok);
			assert_true(strstr(u.error, "too many keywords") != NULL);
		}
	}
	snapshot(store, d->path, alice, &after);
	snapshot_equal(&before, &after);
	assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), 3);
	assert_string_equal(acc.m[0].keywords, "A B");

	print_message("# an update of a missing mailbox: not ok, r NULL\n");
	store_mailbox_update_r(store, alice, "Gone", NULL, 0, NULL, 0, update_r_cb, &u);
	assert_int_equal(u.calls, 1);
	assert_false(u.ok);
	assert_string_equal(u.error, "no such mailbox");
	store_free(&store);
}

static void
test_store_unchangedsince(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store); /* uid n has MODSEQ n */
	struct update_r u;
	struct list_acc acc;

	print_message("# UNCHANGEDSINCE: messages with MODSEQ <= the value change, newer ones are "
	              "reported in modified[] and left alone\n");
	{
		struct store_flag_change c[] = {
		    {1, STORE_FLAG_FLAGGED, 0, NULL, NULL, NULL, 3},
		    {3, STORE_FLAG_FLAGGED, 0, NULL, NULL, NULL, 3},
		    {5, STORE_FLAG_FLAGGED, 0, NULL, NULL, NULL, 3},
		    {4, 0, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 3}, /* would change: modified */
		    {2, 0, 0, NULL, NULL, NULL, 0},                  /* no condition, no change */
		};

		store_mailbox_update_r(store, alice, "INBOX", c, 5, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 2);
		assert_int_equal(u.changed[0].uid, 1);
		assert_int_equal(u.changed[1].uid, 3);
		assert_int_equal(u.changed[1].modseq, 6);
		assert_int_equal(u.nmodified, 2);
		assert_int_equal(u.modified[0], 4);
		assert_int_equal(u.modified[1], 5);
		assert_int_equal(u.highestmodseq, 6);
	}
	print_message("# the same STORE again with the old value: now every message is modified\n");
	{
		struct store_flag_change c[] = {{1, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 3},
		                                {3, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 5}};

		store_mailbox_update_r(store, alice, "INBOX", c, 2, NULL, 0, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nchanged, 0);
		assert_int_equal(u.nmodified, 2);
		assert_int_equal(u.highestmodseq, 6);
		/* With the current value it applies. */
		c[0].unchangedsince = 6;
		c[1].unchangedsince = 6;
		store_mailbox_update_r(store, alice, "INBOX", c, 2, NULL, 0, update_r_cb, &u);
		assert_int_equal(u.nchanged, 2);
		assert_int_equal(u.nmodified, 0);
		assert_int_equal(u.highestmodseq, 7);
	}
	assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), 5);
	assert_int_equal(acc.m[3].flags, STORE_FLAG_FLAGGED); /* uid 4 left alone */
	assert_int_equal(acc.m[3].modseq, 4);
	assert_int_equal(acc.m[4].flags, 0); /* uid 5 left alone */
	store_free(&store);
}

/* Result of one store_message_copy, copied out of the callback. */
struct copy_r {
	int calls;
	int result;
	char error[256];
	bool have_r;
	int64_t dst_mailbox_id;
	uint32_t dst_uidvalidity;
	uint32_t src[8], dst[8];
	size_t n;
	size_t missing;
	uint64_t dst_modseq;
};

static void
copy_cb(int result, const char *error, const struct store_copy_result *r, void *arg)
{
	struct copy_r *c = arg;

	memset(c, 0, sizeof(*c));
	c->calls = 1;
	c->result = result;
	snprintf(c->error, sizeof(c->error), "%s", error != NULL ? error : "");
	c->have_r = r != NULL;
	if (r == NULL)
		return;
	assert_true(r->n <= 8);
	c->dst_mailbox_id = r->dst_mailbox_id;
	c->dst_uidvalidity = r->dst_uidvalidity;
	c->n = r->n;
	c->missing = r->missing;
	if (r->n > 0) { /* no copies: the arrays may be NULL */
		memcpy(c->src, r->src_uids, r->n * sizeof(uint32_t));
		memcpy(c->dst, r->dst_uids, r->n * sizeof(uint32_t));
	}
	c->dst_modseq = r->dst_modseq;
}

/* Reads the whole message (up to size bytes) of uid into buf; returns its length, -2 none. */
static ssize_t
read_message(struct store *store, int64_t account, const char *mailbox, uint32_t uid, char *buf,
             size_t size, struct stat *sb)
{
	int fd = store_message_open(store, account, mailbox, uid);
	ssize_t got;

	if (fd == -2)
		return -2;
	assert_true(fd >= 0);
	if (sb != NULL)
		assert_int_equal(fstat(fd, sb), 0);
	got = read(fd, buf, size);
	close(fd);
	return got;
}

/* Copies uids of INBOX to Trash; the copy must be done (result 1) with missing as given. */
static void
copy_done(struct store *store, int64_t alice, const uint32_t *uids, size_t n, struct copy_r *c,
          size_t missing)
{
	store_message_copy(store, alice, "inbox", uids, n, "Trash", false, copy_cb, c);
	assert_int_equal(c->calls, 1);
	assert_int_equal(c->result, 1);
	assert_true(c->have_r);
	assert_int_equal(c->missing, missing);
}

static void
test_store_copy(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	struct store_flag_change kw = {2, STORE_FLAG_FLAGGED, 0, NULL, "$Forwarded Work", NULL, 0};
	struct store_mailbox trash, inbox;
	struct list_acc src, dst;
	struct update_r u;
	struct copy_r c;
	struct stat sa, sb;
	unsigned char *blob = NULL;
	size_t len = 0;
	char buf[4096];
	uint32_t uids[] = {4, 2, 2, 99};
	int files = count_files(d->path, "mail");

	store_mailbox_update_r(store, alice, "INBOX", &kw, 1, NULL, 0, update_r_cb, &u);
	assert_true(u.ok);
	/* A structure kept with the source row must travel with the copy. */
	raw_exec(d->path, "UPDATE messages SET mime = x'01020304' WHERE uid = 2 AND mailbox_id = "
	                  "(SELECT id FROM mailboxes WHERE name = 'INBOX')");
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);

	print_message("# COPY 4,2,2,99 INBOX -> Trash: 99 is gone, so nothing is copied (all or "
	              "nothing, RFC 3501 6.4.7), missing 1, no UID, MODSEQ or file used\n");
	copy_done(store, alice, uids, 4, &c, 1);
	assert_int_equal(c.n, 0);
	assert_int_equal(store_mailbox_get(store, alice, "Trash", &trash), 1);
	assert_int_equal(trash.uidnext, 1);
	assert_int_equal(count_files(d->path, "mail"), files);

	print_message("# COPY 4,2,2 INBOX -> Trash: UIDs once, ascending, new UIDs in that order, "
	              "one new MODSEQ\n");
	copy_done(store, alice, uids, 3, &c, 0);
	assert_int_equal(store_mailbox_get(store, alice, "Trash", &trash), 1);
	assert_int_equal(c.dst_mailbox_id, trash.id);
	assert_int_equal(c.dst_uidvalidity, trash.uidvalidity);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.src[0], 2);
	assert_int_equal(c.src[1], 4);
	assert_int_equal(c.dst[0], 1);
	assert_int_equal(c.dst[1], 2);
	assert_int_equal(c.dst_modseq, 1);
	assert_int_equal(trash.uidnext, 3);
	assert_int_equal(trash.highestmodseq, 1);

	print_message(
	    "# the copies keep flags, keywords, internal date, summary, CRLF size and the "
	    "MIME structure\n");
	assert_int_equal(list_mailbox(store, alice, "INBOX", &src), 5);
	assert_int_equal(list_mailbox(store, alice, "Trash", &dst), 2);
	for (int i = 0; i < 2; i++) {
		const struct store_message *s = list_find(&src, c.src[i]);

		assert_int_equal(dst.m[i].uid, c.dst[i]);
		assert_int_equal(dst.m[i].flags, s->flags);
		assert_string_equal(dst.m[i].keywords, s->keywords);
		assert_int_equal(dst.m[i].internal_date, s->internal_date);
		assert_int_equal(dst.m[i].size, s->size);
		assert_int_equal(dst.m[i].size_crlf, s->size_crlf);
		assert_string_equal(dst.m[i].subject, s->subject);
		assert_string_equal(dst.m[i].message_id, s->message_id);
		assert_int_equal(dst.m[i].modseq, 1);
	}
	assert_int_equal(dst.m[0].flags, STORE_FLAG_SEEN | STORE_FLAG_FLAGGED);
	assert_string_equal(dst.m[0].keywords, "$Forwarded Work");
	assert_int_equal(store_message_mime(store, alice, "Trash", 1, &blob, &len), 1);
	assert_int_equal(len, 4);
	assert_memory_equal(blob, "\x01\x02\x03\x04", 4);
	free(blob);
	/* The source mailbox did not move. */
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &trash), 1);
	assert_int_equal(trash.highestmodseq, inbox.highestmodseq);

	/* Crash safety rests on this: a copy never shares a name with its source, so expunging
	 * either unlinks only its own name, and a crash between link and commit can only leave an
	 * extra name (an orphan), never a row whose file is gone. */
	print_message("# each copy is a second hard link of the same file; expunging the source "
	              "leaves the copy readable\n");
	assert_int_equal(count_files(d->path, "mail"), files + 2);
	assert_int_equal(read_message(store, alice, "INBOX", 2, buf, sizeof(buf), &sa),
	                 sizeof(message1) - 1);
	assert_int_equal(read_message(store, alice, "Trash", 1, buf, sizeof(buf), &sb),
	                 sizeof(message1) - 1);
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sb.st_nlink, 2);
	{
		uint32_t x = 2;

		store_mailbox_update_r(store, alice, "INBOX", NULL, 0, &x, 1, update_r_cb, &u);
		assert_true(u.ok);
		assert_int_equal(u.nexpunged, 1);
	}
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read_message(store, alice, "Trash", 1, buf, sizeof(buf), &sb),
	                 sizeof(message1) - 1);
	assert_memory_equal(buf, message1, sizeof(message1) - 1);
	assert_int_equal(sb.st_nlink, 1);
	assert_int_equal(count_files(d->path, "mail"), files + 1);

	print_message("# no such destination (TRYCREATE) or source: result 0, r NULL, nothing "
	              "changes\n");
	store_message_copy(store, alice, "INBOX", uids, 1, "NoSuch", false, copy_cb, &c);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.result, 0);
	assert_false(c.have_r);
	store_message_copy(store, alice, "NoSuch", uids, 1, "Trash", true, copy_cb, &c);
	assert_int_equal(c.result, 0);
	assert_false(c.have_r);
	print_message("# only gone UIDs: done, n 0, missing 2, no MODSEQ or UID used\n");
	{
		uint32_t gone[] = {2, 55};

		store_message_copy(store, alice, "INBOX", gone, 2, "Trash", false, copy_cb, &c);
		assert_int_equal(c.result, 1);
		assert_int_equal(c.n, 0);
		assert_int_equal(c.missing, 2);
		assert_int_equal(store_mailbox_get(store, alice, "Trash", &trash), 1);
		assert_int_equal(trash.uidnext, 3);
		assert_int_equal(trash.highestmodseq, 1);
	}
	assert_int_equal(count_files(d->path, "mail"), files + 1);
	store_free(&store);
	/* Durable. */
	store = open_store(d->path, false, NULL);
	assert_int_equal(list_mailbox(store, alice, "Trash", &dst), 2);
	assert_int_equal(read_message(store, alice, "Trash", 2, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	store_free(&store);
}

/* QRESYNC's tombstones (schema 4): what left a mailbox, with the MODSEQ of that update. */
struct expunged_acc {
	char text[256];
	size_t len;
};

static void
expunged_one(uint32_t uid, uint64_t modseq, void *arg)
{
	struct expunged_acc *acc = arg;

	acc->len +=
	    (size_t)snprintf(acc->text + acc->len, sizeof(acc->text) - acc->len, "%s%u@%llu",
	                     acc->len > 0 ? " " : "", uid, (unsigned long long)modseq);
}

static const char *
expunged_list(struct store *store, int64_t account, const char *mailbox, uint64_t since,
              struct expunged_acc *acc)
{
	memset(acc, 0, sizeof(*acc));
	assert_int_equal(store_expunged_list(store, account, mailbox, since, expunged_one, acc), 1);
	return acc->text;
}

static void
test_store_expunged(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store); /* INBOX uids 1..5, highestmodseq 5 */
	struct store_mailbox inbox;
	struct expunged_acc acc;
	struct update_r u;
	struct copy_r c;
	char error[256];
	uint32_t expunge[] = {2, 4}, move[] = {1}, move_same[] = {3};

	print_message("# EXPUNGE 2,4: both recorded with the update's MODSEQ (6)\n");
	assert_string_equal(expunged_list(store, alice, "INBOX", 0, &acc), "");
	store_mailbox_update_r(store, alice, "INBOX", NULL, 0, expunge, 2, update_r_cb, &u);
	assert_true(u.ok);
	assert_int_equal(u.highestmodseq, 6);
	assert_string_equal(expunged_list(store, alice, "INBOX", 0, &acc), "2@6 4@6");
	assert_string_equal(expunged_list(store, alice, "INBOX", 6, &acc), "");
	print_message(
	    "# MOVE 1 to Junk: INBOX records 1 with its new HIGHESTMODSEQ; Junk nothing\n");
	store_message_copy(store, alice, "INBOX", move, 1, "Junk", true, copy_cb, &c);
	assert_int_equal(c.result, 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);
	assert_int_equal(inbox.highestmodseq, 7);
	assert_string_equal(expunged_list(store, alice, "INBOX", 5, &acc), "1@7 2@6 4@6");
	assert_string_equal(expunged_list(store, alice, "INBOX", 6, &acc), "1@7");
	assert_string_equal(expunged_list(store, alice, "Junk", 0, &acc), "");
	print_message("# MOVE 3 within INBOX: 3 left with the moved row's MODSEQ\n");
	store_message_copy(store, alice, "INBOX", move_same, 1, "INBOX", true, copy_cb, &c);
	assert_int_equal(c.result, 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);
	assert_string_equal(expunged_list(store, alice, "INBOX", 7, &acc), "3@8");
	assert_int_equal(inbox.highestmodseq, 8);
	print_message(
	    "# deleting a mailbox drops its tombstones with it; a missing mailbox is 0\n");
	assert_int_equal(store_mailbox_delete(store, alice, "Junk", error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_create(store, alice, "Gone", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_delete(store, alice, "Gone", error, sizeof(error)), 1);
	assert_int_equal(store_expunged_list(store, alice, "Gone", 0, expunged_one, &acc), 0);
	assert_string_equal(expunged_list(store, alice, "INBOX", 0, &acc), "1@7 2@6 3@8 4@6");
	store_free(&store);
}

static void
test_store_move(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	struct store_mailbox inbox, junk;
	struct list_acc acc;
	struct copy_r c;
	char buf[4096];
	uint32_t uids[] = {5, 1, 3};
	int files = count_files(d->path, "mail");

	print_message("# MOVE 5,1,3 INBOX -> Junk: rows move with new UIDs, no file work, INBOX's "
	              "HIGHESTMODSEQ raised\n");
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);
	store_message_copy(store, alice, "INBOX", uids, 3, "Junk", true, copy_cb, &c);
	assert_int_equal(c.result, 1);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.src[0], 1);
	assert_int_equal(c.src[1], 3);
	assert_int_equal(c.src[2], 5);
	assert_int_equal(c.dst[0], 1);
	assert_int_equal(c.dst[2], 3);
	assert_int_equal(store_mailbox_get(store, alice, "Junk", &junk), 1);
	assert_int_equal(c.dst_uidvalidity, junk.uidvalidity);
	assert_int_equal(junk.messages, 3);
	assert_int_equal(junk.uidnext, 4);
	assert_int_equal(junk.highestmodseq, c.dst_modseq);
	assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), 2);
	assert_int_equal(acc.m[0].uid, 2);
	assert_int_equal(acc.m[1].uid, 4);
	{
		struct store_mailbox after;

		assert_int_equal(store_mailbox_get(store, alice, "INBOX", &after), 1);
		assert_int_equal(after.highestmodseq, inbox.highestmodseq + 1);
		assert_int_equal(after.uidnext, inbox.uidnext);
	}
	assert_int_equal(count_files(d->path, "mail"), files);
	assert_int_equal(read_message(store, alice, "Junk", 3, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	assert_int_equal(read_message(store, alice, "INBOX", 5, buf, sizeof(buf), NULL), -2);
	assert_int_equal(list_mailbox(store, alice, "Junk", &acc), 3);
	assert_int_equal(acc.m[0].flags, 0);
	assert_int_equal(acc.m[0].modseq, c.dst_modseq);

	print_message("# MOVE within one mailbox: new UIDs, one new MODSEQ\n");
	{
		uint32_t one = 2;

		store_message_copy(store, alice, "Junk", &one, 1, "Junk", true, copy_cb, &c);
		assert_int_equal(c.result, 1);
		assert_int_equal(c.n, 1);
		assert_int_equal(c.dst[0], 4);
		assert_int_equal(store_mailbox_get(store, alice, "Junk", &inbox), 1);
		assert_int_equal(inbox.messages, 3);
		assert_int_equal(inbox.highestmodseq, junk.highestmodseq + 1);
	}
	store_free(&store);
}

/* Copies and updates through the pipeline: grouped into one transaction, each result right. */
static void
test_store_copy_threaded(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	struct loop_env env;
	struct copy_r c1, c2;
	struct update_r u;
	struct list_acc acc;
	uint32_t a[] = {1, 2}, b[] = {3};
	struct store_flag_change f = {4, 0, 0, NULL, "Later", NULL, 0};
	char buf[4096];

	store_free(&store);
	loop_env_open(&env, d->path, false);
	print_message("# pipeline: COPY, MOVE and STORE queued together, callbacks through the "
	              "loop\n");
	memset(&c1, 0, sizeof(c1));
	memset(&c2, 0, sizeof(c2));
	memset(&u, 0, sizeof(u));
	store_message_copy(env.store, alice, "INBOX", a, 2, "Trash", false, copy_cb, &c1);
	store_message_copy(env.store, alice, "INBOX", b, 1, "Trash", true, copy_cb, &c2);
	store_mailbox_update_r(env.store, alice, "INBOX", &f, 1, NULL, 0, update_r_cb, &u);
	assert_int_equal(c1.calls + c2.calls + u.calls, 0);
	loop_until(&env, &c1.calls, 1);
	loop_until(&env, &c2.calls, 1);
	loop_until(&env, &u.calls, 1);
	assert_int_equal(c1.result, 1);
	assert_int_equal(c1.n, 2);
	assert_int_equal(c1.dst[0], 1);
	assert_int_equal(c2.result, 1);
	assert_int_equal(c2.dst[0], 3);
	assert_true(u.ok);
	assert_int_equal(u.nchanged, 1);
	assert_string_equal(u.changed[0].keywords, "Later");
	assert_int_equal(list_mailbox(env.store, alice, "Trash", &acc), 3);
	assert_int_equal(list_mailbox(env.store, alice, "INBOX", &acc), 4);
	assert_int_equal(read_message(env.store, alice, "Trash", 2, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	/* A failing copy in the group (no such mailbox) does not sink the others. */
	memset(&c1, 0, sizeof(c1));
	memset(&c2, 0, sizeof(c2));
	store_message_copy(env.store, alice, "INBOX", a, 2, "Nope", false, copy_cb, &c1);
	store_message_copy(env.store, alice, "INBOX", a, 2, "Junk", false, copy_cb, &c2);
	loop_until(&env, &c1.calls, 1);
	loop_until(&env, &c2.calls, 1);
	assert_int_equal(c1.result, 0);
	assert_int_equal(c2.result, 1);
	assert_int_equal(c2.n, 2);
	assert_int_equal(count_files(d->path, "mail"), 6 + 2 + 2);
	assert_int_equal(count_files(d->path, "tmp"), 0);
	loop_env_close(&env);
}

static void
mailbox_name_cb(const struct store_mailbox *mb, void *arg)
{
	sub_cb(mb->name, arg);
}

/* The account's mailboxes as "a,b,c" in creation order. */
static void
mailboxes(struct store *store, int64_t account, char *buf)
{
	buf[0] = '\0';
	assert_int_equal(store_mailbox_list(store, account, mailbox_name_cb, buf), 0);
}

/* Delivers message1 into account's mailbox (synchronously). */
static void
deliver_to(struct store *store, int64_t account, const char *mailbox)
{
	struct store_target t = {account, mailbox, 0, "alice@example.org", NULL};
	struct commit_result r;

	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
}

/* Names every mailbox call must refuse, with the reason an IMAP server passes on. */
static const struct {
	const char *name;
	const char *error;
} bad_names[] = {
    {"", "empty"},
    {"/Work", "empty level"},
    {"Work/", "empty level"},
    {"Work//Sub", "empty level"},
    {"/", "empty level"},
    {"Wo\x01rk", "control character"},
    {"Work\r\nA1 LOGOUT", "control character"},
    {"Del\x7f", "control character"},
    {"Wo*rk", "wildcard"},
    {"Wo%rk", "wildcard"},
    {"Caf\xe9", "UTF-8"},
    {"\xc0\xaf", "UTF-8"},     /* overlong '/' */
    {"\xed\xa0\x80", "UTF-8"}, /* a surrogate */
};

static void
test_store_mailbox_create(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_mailbox mb;
	char error[256], names[1024], longname[300];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	print_message("# CREATE Work/Projects/2026 makes the missing parents too\n");
	assert_int_equal(
	    store_mailbox_create(store, alice, "Work/Projects/2026", NULL, error, sizeof(error)),
	    1);
	mailboxes(store, alice, names);
	assert_string_equal(names, "INBOX,Sent,Drafts,Junk,Trash,Work,Work/Projects,"
	                           "Work/Projects/2026");
	assert_int_equal(store_mailbox_get(store, alice, "Work/Projects/2026", &mb), 1);
	assert_int_equal(mb.uidnext, 1);
	assert_int_equal(mb.highestmodseq, 0);
	assert_int_equal(mb.messages, 0);
	assert_string_equal(mb.special_use, "");
	print_message("# an existing name (INBOX in any case too): 0 with an error\n");
	assert_int_equal(store_mailbox_create(store, alice, "Work", NULL, error, sizeof(error)), 0);
	assert_string_equal(error, "Mailbox already exists");
	assert_int_equal(store_mailbox_create(store, alice, "iNbOx", NULL, error, sizeof(error)),
	                 0);
	print_message("# CREATE with a special use (RFC 6154), known ones only\n");
	assert_int_equal(
	    store_mailbox_create(store, alice, "Archive", "\\ARCHIVE", error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, alice, "Archive", &mb), 1);
	assert_string_equal(mb.special_use, "\\Archive");
	assert_int_equal(store_mailbox_create(store, alice, "B", "\\Bogus", error, sizeof(error)),
	                 -1);
	assert_int_equal(store_mailbox_get(store, alice, "B", &mb), 0);
	print_message("# 255 bytes are fine, 256 refused; UTF-8 names are fine\n");
	memset(longname, 'a', 255);
	longname[255] = '\0';
	assert_int_equal(store_mailbox_create(store, alice, longname, NULL, error, sizeof(error)),
	                 1);
	longname[255] = 'a';
	longname[256] = '\0';
	assert_int_equal(store_mailbox_create(store, alice, longname, NULL, error, sizeof(error)),
	                 -1);
	assert_true(strstr(error, "too long") != NULL);
	assert_int_equal(store_mailbox_create(store, alice, "Caf\xc3\xa9/\xe2\x82\xac", NULL, error,
	                                      sizeof(error)),
	                 1);
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		print_message("# refused name %zu: %s\n", i, bad_names[i].error);
		error[0] = '\0';
		assert_int_equal(store_mailbox_create(store, alice, bad_names[i].name, NULL, error,
		                                      sizeof(error)),
		                 -1);
		assert_true(strstr(error, bad_names[i].error) != NULL);
		assert_int_equal(
		    store_mailbox_delete(store, alice, bad_names[i].name, error, sizeof(error)),
		    -1);
		assert_int_equal(store_mailbox_rename(store, alice, "Work", bad_names[i].name,
		                                      error, sizeof(error)),
		                 -1);
		assert_int_equal(store_subscription_set(store, alice, bad_names[i].name, true,
		                                        error, sizeof(error)),
		                 -1);
	}
	/* Nothing of the refused ones exists. */
	mailboxes(store, alice, names);
	assert_string_equal(names,
	                    "INBOX,Sent,Drafts,Junk,Trash,Work,Work/Projects,"
	                    "Work/Projects/2026,Archive,"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,"
	                    "Caf\xc3\xa9,Caf\xc3\xa9/\xe2\x82\xac");
	/* A new mailbox takes deliveries from UID 1. */
	deliver_to(store, alice, "Work/Projects");
	assert_int_equal(store_mailbox_get(store, alice, "Work/Projects", &mb), 1);
	assert_int_equal(mb.messages, 1);
	assert_int_equal(mb.uidnext, 2);
	store_free(&store);
}

static void
test_store_mailbox_delete(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_mailbox mb;
	char error[256], names[1024], buf[4096];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	assert_int_equal(store_mailbox_create(store, alice, "Work/Sub", NULL, error, sizeof(error)),
	                 1);
	deliver_to(store, alice, "Work");
	deliver_to(store, alice, "Work");
	deliver_to(store, alice, "Work/Sub");
	deliver_to(store, alice, "INBOX");
	assert_int_equal(count_files(d->path, "mail"), 4);

	print_message("# DELETE Work: its rows and files go, the child Work/Sub stays\n");
	assert_int_equal(store_mailbox_delete(store, alice, "Work", error, sizeof(error)), 1);
	assert_int_equal(count_files(d->path, "mail"), 2);
	mailboxes(store, alice, names);
	assert_string_equal(names, "INBOX,Sent,Drafts,Junk,Trash,Work/Sub");
	assert_int_equal(store_mailbox_get(store, alice, "Work", &mb), 0);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(read_message(store, alice, "Work/Sub", 1, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	print_message("# DELETE again, of a name that is only a parent now, of INBOX: 0\n");
	assert_int_equal(store_mailbox_delete(store, alice, "Work", error, sizeof(error)), 0);
	assert_string_equal(error, "No such mailbox");
	assert_int_equal(store_mailbox_delete(store, alice, "inbox", error, sizeof(error)), 0);
	assert_string_equal(error, "INBOX cannot be deleted");
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &mb), 1);
	assert_int_equal(mb.messages, 1);
	print_message("# a delivery to a deleted mailbox fails; nothing is left behind\n");
	{
		struct store_target t = {alice, "Work", 0, "alice@example.org", NULL};
		struct commit_result r;

		deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
		assert_false(r.ok);
		assert_int_equal(count_files(d->path, "mail"), 2);
		assert_int_equal(count_files(d->path, "tmp"), 0);
	}
	print_message("# CREATE Work again: empty, UIDs from 1, a new UIDVALIDITY\n");
	assert_int_equal(store_mailbox_create(store, alice, "Work", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, alice, "Work", &mb), 1);
	assert_int_equal(mb.messages, 0);
	assert_int_equal(mb.uidnext, 1);
	store_free(&store);
}

static void
test_store_mailbox_rename(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_mailbox before, after, inbox;
	char error[256], names[1024], subs[1024], buf[4096];
	struct list_acc acc;
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	assert_int_equal(store_mailbox_create(store, alice, "Work/Sub", NULL, error, sizeof(error)),
	                 1);
	assert_int_equal(store_mailbox_create(store, alice, "Workshop", NULL, error, sizeof(error)),
	                 1);
	assert_int_equal(
	    store_subscription_set(store, alice, "Work/Sub", true, error, sizeof(error)), 1);
	deliver_to(store, alice, "Work");
	deliver_to(store, alice, "Work/Sub");
	deliver_to(store, alice, "Work/Sub");
	assert_int_equal(store_mailbox_get(store, alice, "Work/Sub", &before), 1);

	print_message("# RENAME Work Archive/2026: children follow (not Workshop), missing parents "
	              "made, UIDs and UIDVALIDITY kept, subscriptions follow\n");
	assert_int_equal(
	    store_mailbox_rename(store, alice, "Work", "Archive/2026", error, sizeof(error)), 1);
	mailboxes(store, alice, names);
	assert_string_equal(names, "INBOX,Sent,Drafts,Junk,Trash,Archive/2026,Archive/2026/Sub,"
	                           "Workshop,Archive");
	assert_int_equal(store_mailbox_get(store, alice, "Archive/2026/Sub", &after), 1);
	assert_int_equal(after.id, before.id);
	assert_int_equal(after.uidvalidity, before.uidvalidity);
	assert_int_equal(after.uidnext, before.uidnext);
	assert_int_equal(after.messages, 2);
	assert_int_equal(read_message(store, alice, "Archive/2026/Sub", 2, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	assert_int_equal(read_message(store, alice, "Work/Sub", 2, buf, sizeof(buf), NULL), -2);
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Archive/2026/Sub,Drafts,INBOX,Junk,Sent,Trash");

	print_message("# refusals: no such mailbox 0, target exists -2, into itself -1\n");
	assert_int_equal(store_mailbox_rename(store, alice, "Work", "X", error, sizeof(error)), 0);
	assert_int_equal(
	    store_mailbox_rename(store, alice, "Workshop", "Sent", error, sizeof(error)), -2);
	assert_int_equal(
	    store_mailbox_rename(store, alice, "Workshop", "inbox", error, sizeof(error)), -2);
	assert_int_equal(
	    store_mailbox_rename(store, alice, "Workshop", "Workshop", error, sizeof(error)), -2);
	assert_int_equal(store_mailbox_rename(store, alice, "Archive", "Archive/2026/Deep", error,
	                                      sizeof(error)),
	                 -1);
	/* A child's new name taken (B/Sub, left after DELETE B): -2 and nothing moved. */
	assert_int_equal(store_mailbox_create(store, alice, "B/Sub", NULL, error, sizeof(error)),
	                 1);
	assert_int_equal(store_mailbox_delete(store, alice, "B", error, sizeof(error)), 1);
	assert_int_equal(
	    store_mailbox_rename(store, alice, "Archive/2026", "B", error, sizeof(error)), -2);
	assert_int_equal(store_mailbox_get(store, alice, "Archive/2026/Sub", &after), 1);
	assert_int_equal(store_mailbox_get(store, alice, "B", &after), 0);

	print_message("# RENAME INBOX Old: messages move with their UIDs into a new mailbox; INBOX "
	              "stays, empty, its UIDNEXT kept; INBOX/Kid untouched\n");
	deliver_to(store, alice, "INBOX");
	deliver_to(store, alice, "INBOX");
	assert_int_equal(
	    store_mailbox_create(store, alice, "INBOX/Kid", NULL, error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);
	assert_int_equal(store_mailbox_rename(store, alice, "inbox", "Old", error, sizeof(error)),
	                 1);
	assert_int_equal(store_mailbox_get(store, alice, "Old", &after), 1);
	assert_int_not_equal(after.id, inbox.id);
	assert_true(after.uidvalidity > inbox.uidvalidity);
	assert_int_equal(after.uidnext, inbox.uidnext);
	assert_int_equal(after.messages, 2);
	assert_int_equal(list_mailbox(store, alice, "Old", &acc), 2);
	assert_int_equal(acc.m[0].uid, 1);
	assert_int_equal(acc.m[1].uid, 2);
	assert_int_equal(read_message(store, alice, "Old", 2, buf, sizeof(buf), NULL),
	                 sizeof(message1) - 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &after), 1);
	assert_int_equal(after.id, inbox.id);
	assert_int_equal(after.uidvalidity, inbox.uidvalidity);
	assert_int_equal(after.messages, 0);
	assert_int_equal(after.uidnext, inbox.uidnext);
	assert_int_equal(after.highestmodseq, inbox.highestmodseq + 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX/Kid", &after), 1);
	/* The next delivery to INBOX does not reuse a UID. */
	deliver_to(store, alice, "INBOX");
	assert_int_equal(list_mailbox(store, alice, "INBOX", &acc), 1);
	assert_int_equal(acc.m[0].uid, 3);
	store_free(&store);
}

/* What one store_mailbox_op callback saw (copied: the result is valid only during it). */
struct mbox_seen {
	int calls;
	int result;
	bool invalid;
	bool on_loop; /* ran on the thread that runs the event loop */
	int64_t mailbox_id, inbox_id;
	uint32_t uidvalidity;
	size_t nmessages, nrenamed, nuids;
	char old[2][64];
	uint32_t uids[4];
	int *pending;
};

static pthread_t mbox_loop_thread;

static void
mbox_seen_cb(const struct store_mbox_result *r, void *arg)
{
	struct mbox_seen *m = arg;

	m->calls++;
	m->result = r->result;
	m->invalid = r->invalid;
	m->on_loop = pthread_equal(pthread_self(), mbox_loop_thread);
	m->mailbox_id = r->mailbox_id;
	m->inbox_id = r->inbox_id;
	m->uidvalidity = r->uidvalidity;
	m->nmessages = r->nmessages;
	m->nrenamed = r->nrenamed;
	m->nuids = r->nuids;
	for (size_t i = 0; i < r->nrenamed && i < 2; i++)
		snprintf(m->old[i], sizeof(m->old[i]), "%s", r->old_names[i]);
	for (size_t i = 0; i < r->nuids && i < 4; i++)
		m->uids[i] = r->uids[i];
	(*m->pending)--;
}

/* store_mailbox_op with workers: jobs queued together run on the committer (one transaction,
 * a savepoint each: one failing does not sink the others) and call back on the loop thread with
 * what the transaction found; a deleted mailbox's files are gone by then. */
static void
test_store_mailbox_op_threaded(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_mailbox work, inbox;
	struct mbox_seen seen[8];
	struct event_base *base;
	struct workers *workers;
	char error[256];
	int64_t alice;
	int pending;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	assert_int_equal(store_mailbox_create(store, alice, "Work/Sub", NULL, error, sizeof(error)),
	                 1);
	deliver_to(store, alice, "INBOX");
	deliver_to(store, alice, "INBOX");
	deliver_to(store, alice, "Junk");
	deliver_to(store, alice, "Junk");
	deliver_to(store, alice, "Junk");
	assert_int_equal(store_mailbox_get(store, alice, "Work", &work), 1);
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &inbox), 1);
	store_free(&store);
	assert_int_equal(count_files(d->path, "mail"), 5);

	assert_int_equal(evthread_use_pthreads(), 0);
	base = event_base_new();
	workers = workers_new(base, 1);
	store = open_store(d->path, false, workers);
	mbox_loop_thread = pthread_self();
	memset(seen, 0, sizeof(seen));
	pending = 8;
	for (int i = 0; i < 8; i++)
		seen[i].pending = &pending;
	{
		const struct store_mbox_op ops[8] = {
		    {STORE_MBOX_CREATE, alice, "New/Box", NULL, "\\Archive"},
		    {STORE_MBOX_CREATE, alice, "Sent", NULL, NULL},
		    {STORE_MBOX_RENAME, alice, "Work", "Job", NULL},
		    {STORE_MBOX_DELETE, alice, "Junk", NULL, NULL},
		    {STORE_MBOX_RENAME, alice, "INBOX", "Old", NULL},
		    {STORE_MBOX_SUBSCRIBE, alice, "Job/Sub", NULL, NULL},
		    {STORE_MBOX_DELETE, alice, "Nope", NULL, NULL},
		    {STORE_MBOX_CREATE, alice, "Bad*", NULL, NULL},
		};
		for (int i = 0; i < 8; i++)
			store_mailbox_op(store, &ops[i], mbox_seen_cb, &seen[i]);
	}
	/* Nothing runs before the loop does. */
	for (int i = 0; i < 8; i++)
		assert_int_equal(seen[i].calls, 0);
	while (pending > 0)
		event_base_loop(base, EVLOOP_ONCE);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(seen[i].calls, 1);
		assert_true(seen[i].on_loop);
	}
	print_message("# CREATE: the new mailbox's id and UIDVALIDITY\n");
	assert_int_equal(seen[0].result, 1);
	assert_true(seen[0].mailbox_id > 0 && seen[0].uidvalidity > 0);
	assert_int_equal(seen[1].result, 0);
	print_message("# RENAME: the mailboxes renamed with their old names\n");
	assert_int_equal(seen[2].result, 1);
	assert_int_equal(seen[2].nrenamed, 2);
	assert_true(
	    (strcmp(seen[2].old[0], "Work") == 0 && strcmp(seen[2].old[1], "Work/Sub") == 0) ||
	    (strcmp(seen[2].old[1], "Work") == 0 && strcmp(seen[2].old[0], "Work/Sub") == 0));
	print_message("# DELETE: the messages removed, their files unlinked before the callback\n");
	assert_int_equal(seen[3].result, 1);
	assert_int_equal(seen[3].nmessages, 3);
	assert_int_equal(count_files(d->path, "mail"), 2);
	print_message("# RENAME INBOX: INBOX's id and the UIDs that left it\n");
	assert_int_equal(seen[4].result, 1);
	assert_int_equal(seen[4].inbox_id, inbox.id);
	assert_int_not_equal(seen[4].mailbox_id, inbox.id);
	assert_int_equal(seen[4].nuids, 2);
	assert_int_equal(seen[4].uids[0], 1);
	assert_int_equal(seen[4].uids[1], 2);
	assert_int_equal(seen[5].result, 1);
	assert_int_equal(seen[6].result, 0);
	assert_int_equal(seen[7].result, -1);
	assert_true(seen[7].invalid);
	/* Visible on the loop thread's own connection right after the callbacks. */
	assert_int_equal(store_mailbox_get(store, alice, "Job", &work), 1);
	assert_int_equal(store_mailbox_get(store, alice, "New/Box", &work), 1);
	assert_string_equal(work.special_use, "\\Archive");
	assert_int_equal(store_mailbox_get(store, alice, "Junk", &work), 0);
	assert_int_equal(store_mailbox_get(store, alice, "Old", &work), 1);
	assert_int_equal(work.messages, 2);
	store_free(&store);
	workers_free(&workers);
	event_base_free(base);
}

static void
test_store_subscriptions(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	char error[256], subs[1024];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = account_id(store, "alice@example.org");
	print_message("# a new account is subscribed to its five mailboxes\n");
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Drafts,INBOX,Junk,Sent,Trash");
	print_message("# subscriptions are names: kept without a mailbox, set twice is once, "
	              "inbox is INBOX\n");
	assert_int_equal(
	    store_subscription_set(store, alice, "Not/There", true, error, sizeof(error)), 1);
	assert_int_equal(
	    store_subscription_set(store, alice, "Not/There", true, error, sizeof(error)), 1);
	assert_int_equal(store_subscription_set(store, alice, "Junk", false, error, sizeof(error)),
	                 1);
	assert_int_equal(store_subscription_set(store, alice, "Junk", false, error, sizeof(error)),
	                 1);
	assert_int_equal(store_subscription_set(store, alice, "inbox", false, error, sizeof(error)),
	                 1);
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Drafts,Not/There,Sent,Trash");
	/* A deleted mailbox keeps its subscription (RFC 3501 LSUB). */
	assert_int_equal(store_mailbox_delete(store, alice, "Sent", error, sizeof(error)), 1);
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Drafts,Not/There,Sent,Trash");
	store_free(&store);
	/* Durable, and they go with the account. */
	store = open_store(d->path, false, NULL);
	subscriptions(store, alice, subs);
	assert_string_equal(subs, "Drafts,Not/There,Sent,Trash");
	assert_int_equal(store_account_del(store, "alice@example.org", error, sizeof(error)), 1);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM subscriptions"), 0);
	store_free(&store);
}

/* Events seen by the deliver test's subscriber. */
struct events {
	int n;
	struct notify_event ev[4];
};

static void
event_cb(const struct notify_event *ev, void *arg)
{
	struct events *e = arg;

	if (e->n < 4)
		e->ev[e->n] = *ev;
	e->n++;
}

/* Result of deliver_tx_commit_r / deliver_tx_commit. */
struct deliver_r {
	int calls;
	bool ok;
	char error[256];
	struct store_result results[2];
};

static void
deliver_r_cb(bool ok, const char *error, const struct store_result *results, void *arg)
{
	struct deliver_r *r = arg;

	r->calls++;
	r->ok = ok;
	snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : "");
	if (ok)
		memcpy(r->results, results, sizeof(r->results[0]));
	else
		assert_null(results);
}

static void
deliver_plain_cb(bool ok, const char *error, void *arg)
{
	struct deliver_r *r = arg;

	r->calls++;
	r->ok = ok;
}

static void
test_store_deliver_append(void **state)
{
	static const char msg[] = "From: Alice <alice@example.org>\r\n"
	                          "Subject: draft\r\n"
	                          "\r\n"
	                          "Unfinished.\r\n";
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct config *config = config_new();
	struct notify_hub *hub = notify_hub_new();
	struct deliver *dl = deliver_new(store, hub, config);
	struct store_target t = {0, "Drafts", STORE_FLAG_SEEN | STORE_FLAG_DRAFT, "",
	                         "$Draft Work"};
	struct store_mailbox drafts;
	struct notify_sub *sub;
	struct deliver_tx *tx;
	struct deliver_r r;
	struct events e;
	struct list_acc acc;
	char error[256], buf[4096];
	int64_t alice;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	alice = t.account_id = account_id(store, "alice@example.org");
	memset(&e, 0, sizeof(e));
	sub = notify_subscribe(hub, alice, 0, event_cb, &e);

	print_message("# APPEND through deliver: no trace headers, the given internal date, "
	              "flags and keywords; results and the NEW event carry UID, UIDVALIDITY, "
	              "MODSEQ, keywords\n");
	tx = deliver_tx_begin_append(dl, 1700000000, error, sizeof(error));
	assert_non_null(tx);
	assert_int_equal(deliver_tx_write(tx, msg, sizeof(msg) - 1), 0);
	memset(&r, 0, sizeof(r));
	deliver_tx_commit_r(dl, &tx, &t, 1, alice, deliver_r_cb, &r);
	assert_null(tx);
	assert_int_equal(r.calls, 1);
	assert_true(r.ok);
	assert_int_equal(store_mailbox_get(store, alice, "Drafts", &drafts), 1);
	assert_int_equal(r.results[0].mailbox_id, drafts.id);
	assert_int_equal(r.results[0].uid, 1);
	assert_int_equal(r.results[0].uidvalidity, drafts.uidvalidity);
	assert_int_equal(r.results[0].modseq, 1);
	assert_int_equal(list_mailbox(store, alice, "Drafts", &acc), 1);
	assert_int_equal(acc.m[0].internal_date, 1700000000);
	assert_int_equal(acc.m[0].flags, STORE_FLAG_SEEN | STORE_FLAG_DRAFT);
	assert_string_equal(acc.m[0].keywords, "$Draft Work");
	assert_int_equal(acc.m[0].size, sizeof(msg) - 1);
	assert_int_equal(read_message(store, alice, "Drafts", 1, buf, sizeof(buf), NULL),
	                 sizeof(msg) - 1);
	assert_memory_equal(buf, msg, sizeof(msg) - 1); /* byte for byte: no Return-Path */
	assert_int_equal(e.n, 1);
	assert_int_equal(e.ev[0].kind, NOTIFY_NEW);
	assert_int_equal(e.ev[0].uid, 1);
	assert_int_equal(e.ev[0].modseq, 1);
	assert_int_equal(e.ev[0].internal_date, 1700000000);
	assert_string_equal(e.ev[0].keywords, "$Draft Work");
	assert_string_equal(e.ev[0].mailbox, "Drafts");
	assert_string_equal(e.ev[0].subject, "draft");

	print_message("# internal date 0 is now; deliver_tx_commit still works as before\n");
	t.keywords = NULL;
	tx = deliver_tx_begin_append(dl, 0, error, sizeof(error));
	assert_int_equal(deliver_tx_write(tx, msg, sizeof(msg) - 1), 0);
	memset(&r, 0, sizeof(r));
	deliver_tx_commit(dl, &tx, &t, 1, alice, deliver_plain_cb, &r);
	assert_true(r.ok);
	assert_int_equal(list_mailbox(store, alice, "Drafts", &acc), 2);
	assert_true(acc.m[1].internal_date >= time(NULL) - 5);
	assert_string_equal(acc.m[1].keywords, "");
	assert_int_equal(e.n, 2);
	assert_string_equal(e.ev[1].keywords, "");

	print_message(
	    "# the internal date set after the data streamed (APPEND's date-time) wins\n");
	tx = deliver_tx_begin_append(dl, 0, error, sizeof(error));
	assert_int_equal(deliver_tx_write(tx, msg, sizeof(msg) - 1), 0);
	deliver_tx_set_internal_date(tx, 1600000000);
	memset(&r, 0, sizeof(r));
	deliver_tx_commit_r(dl, &tx, &t, 1, alice, deliver_r_cb, &r);
	assert_true(r.ok);
	assert_int_equal(r.results[0].uid, 3);
	assert_int_equal(list_mailbox(store, alice, "Drafts", &acc), 3);
	assert_int_equal(acc.m[2].internal_date, 1600000000);
	assert_int_equal(e.n, 3);
	assert_int_equal(e.ev[2].internal_date, 1600000000);

	print_message("# bad keywords or a missing mailbox: not ok, results NULL, no event\n");
	t.keywords = "bad]kw";
	tx = deliver_tx_begin_append(dl, 0, error, sizeof(error));
	assert_int_equal(deliver_tx_write(tx, msg, sizeof(msg) - 1), 0);
	memset(&r, 0, sizeof(r));
	deliver_tx_commit_r(dl, &tx, &t, 1, alice, deliver_r_cb, &r);
	assert_int_equal(r.calls, 1);
	assert_false(r.ok);
	assert_true(strstr(r.error, "keyword") != NULL);
	t.keywords = NULL;
	t.mailbox = "Nope";
	tx = deliver_tx_begin_append(dl, 0, error, sizeof(error));
	assert_int_equal(deliver_tx_write(tx, msg, sizeof(msg) - 1), 0);
	memset(&r, 0, sizeof(r));
	deliver_tx_commit_r(dl, &tx, &t, 1, alice, deliver_r_cb, &r);
	assert_false(r.ok);
	assert_int_equal(e.n, 3);
	assert_int_equal(count_files(d->path, "mail"), 3);
	assert_int_equal(count_files(d->path, "tmp"), 0);

	notify_unsubscribe(&sub);
	deliver_free(&dl);
	notify_hub_free(&hub);
	config_free(&config);
	store_free(&store);
}

/* SMTP transactions through deliver, fed one byte at a time: bare LF and bare CR become CRLF
 * (also a CR that ends one write and the LF that starts the next); a logged-in sender's From: and
 * Sender: are checked (folding, display names, groups, several fields); a header section over
 * smtp.max_header_size is refused. */
static void
test_store_deliver_smtp(void **state)
{
	static const struct {
		const char *in;
		const char *refusal; /* prefix of the reply, NULL: accepted */
		const char *stored;  /* what follows the trace headers when accepted */
	} cases[] = {
	    {"Subject: a\nFrom: alice@example.org\n\nline\rtwo\r\nthree\n", NULL,
	     "Subject: a\r\nFrom: alice@example.org\r\n\r\nline\r\ntwo\r\nthree\r\n"},
	    {"From: Ally\r\n <ally@example.org>, alice@Example.ORG\r\n\r\nx\r", NULL,
	     "From: Ally\r\n <ally@example.org>, alice@Example.ORG\r\n\r\nx\r\n"},
	    {"Subject: no from\r\n\r\nx\r\n", NULL, "Subject: no from\r\n\r\nx\r\n"},
	    {"From: bob@example.org\r\n\r\nx\r\n", "550 5.7.1 <bob@example.org>", NULL},
	    {"From: \"alice@example.org\" <bob@example.org>\r\n\r\n", "550 5.7.1 <bob", NULL},
	    {"From: alice@example.org,\r\n\tbob@example.org\r\n\r\n", "550 5.7.1 <bob", NULL},
	    {"From: g: alice@example.org, bob@example.org;\r\n\r\n", "550 5.7.1 <bob", NULL},
	    {"From: alice@example.org\r\nfrom: alice@example.org\r\n\r\n", "550 5.7.1 Error: more",
	     NULL},
	    {"From: alice@example.org\r\nSender: bob@example.org\r\n\r\n", "550 5.7.1 <bob", NULL},
	    {"From: g:;\r\n\r\n", "550 5.7.1 Error: From: header without", NULL},
	};
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct config *config = config_new();
	struct deliver *dl;
	struct deliver_origin origin = {"client.test", "192.0.2.1", "ESMTPA", NULL,
	                                "alice@example.org"};
	const char *rcpts[] = {"bob@example.org"};
	struct deliver_tx *tx;
	char error[256], buf[4096], big[2048];
	int64_t bob;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", HASH, error, sizeof(error)),
	                 1);
	assert_int_equal(
	    store_alias_add(store, "ally@example.org", "alice@example.org", error, sizeof(error)),
	    1);
	bob = account_id(store, "bob@example.org");
	assert_int_equal(config_set(config, "smtp.max_header_size", "1024", error, sizeof(error)),
	                 0);
	dl = deliver_new(store, NULL, config);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_target t = {bob, "INBOX", 0, "bob@example.org", NULL};
		const char *refusal;
		struct deliver_r r = {0};
		ssize_t n;
		int fd;

		print_message("# case %zu\n", i);
		tx = deliver_tx_begin(dl, "alice@example.org", &origin, rcpts, 1, error,
		                      sizeof(error));
		assert_non_null(tx);
		for (const char *p = cases[i].in; *p != '\0'; p++)
			assert_int_equal(deliver_tx_write(tx, p, 1), 0);
		refusal = deliver_tx_refusal(dl, tx);
		if (cases[i].refusal != NULL) {
			assert_non_null(refusal);
			assert_true(strncmp(refusal, cases[i].refusal, strlen(cases[i].refusal)) ==
			            0);
			deliver_tx_abort(&tx);
			continue;
		}
		assert_null(refusal);
		deliver_tx_commit_r(dl, &tx, &t, 1, 0, deliver_r_cb, &r);
		assert_true(r.ok);
		fd = store_message_open(store, bob, "INBOX", r.results[0].uid);
		assert_true(fd >= 0);
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		assert_true(n > 0);
		buf[n] = '\0';
		/* The trace headers end with the Received line's date; the message follows. */
		assert_non_null(strstr(buf, " +0000\r\n"));
		assert_string_equal(strstr(buf, " +0000\r\n") + 8, cases[i].stored);
	}

	/* Past smtp.max_header_size (1024 here): 552, whoever sends it. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "X-Long: ", 8);
	tx = deliver_tx_begin(dl, "", &origin, rcpts, 1, error, sizeof(error));
	assert_int_equal(deliver_tx_write(tx, big, sizeof(big)), 0);
	assert_int_equal(deliver_tx_write(tx, "\r\n\r\nbody\r\n", 10), 0);
	assert_non_null(deliver_tx_refusal(dl, tx));
	assert_true(strncmp(deliver_tx_refusal(dl, tx), "552 5.3.4", 9) == 0);
	deliver_tx_abort(&tx);

	deliver_free(&dl);
	config_free(&config);
	store_free(&store);
}

/* The MIME structure a delivery keeps: what mimestruct_build gives for the message (NULL while
 * it cannot build one), read back by store_message_mime. */
static void
test_store_message_mime(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct commit_result r;
	unsigned char *want = NULL, *blob = NULL;
	size_t wantlen = 0, len = 0;
	char error[256];
	int built;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	built = mimestruct_build_buffer(message1, sizeof(message1) - 1, &want, &wantlen);
	print_message("# store_message_mime returns what mimestruct builds (builder %s)\n",
	              built == 0 ? "available" : "not yet available: NULL expected");
	assert_int_equal(store_message_mime(store, t.account_id, "inbox", 1, &blob, &len), 1);
	if (built == 0) {
		assert_non_null(blob);
		assert_int_equal(len, wantlen);
		assert_memory_equal(blob, want, len);
	} else {
		assert_null(blob);
		assert_int_equal(len, 0);
	}
	free(blob);
	free(want);
	store_free(&store);
}

/* --- mailbox counters (schema version 5) and the lean reads --- */

/* Mailboxes whose counters differ from a count of their rows: must be 0 after every change. */
#define COUNTERS_DRIFT                                                                             \
	"SELECT count(*) FROM mailboxes b WHERE messages_count != (SELECT count(*) FROM "          \
	"messages m WHERE m.mailbox_id = b.id AND m.recalled = 0) OR unseen_count != (SELECT "     \
	"count(*) FROM messages m WHERE m.mailbox_id = b.id AND m.recalled = 0 AND "               \
	"(m.flags & 1) = 0) OR size_sum != (SELECT coalesce(sum(m.size_crlf), 0) FROM "            \
	"messages m WHERE m.mailbox_id = b.id AND m.recalled = 0)"

/* name's counters (read from its row) are as given, and no mailbox's counters drifted. */
static void
counts_expect(struct store *store, const char *dir, int64_t account, const char *name,
              uint32_t messages, uint32_t unseen, uint64_t size)
{
	struct store_mailbox mb;
	struct store_mailbox_counts c;

	assert_int_equal(store_mailbox_get(store, account, name, &mb), 1);
	assert_int_equal(store_mailbox_counts(store, mb.id, UINT32_MAX, &c), 0);
	print_message("# %s: MESSAGES %u UNSEEN %u size %llu (want %u %u %llu), recent 0\n", name,
	              c.messages, c.unseen, (unsigned long long)c.size, messages, unseen,
	              (unsigned long long)size);
	assert_int_equal(c.messages, messages);
	assert_int_equal(mb.messages, messages);
	assert_int_equal(c.unseen, unseen);
	assert_int_equal(c.size, size);
	assert_int_equal(c.recent, 0);
	assert_int_equal(raw_int(dir, COUNTERS_DRIFT), 0);
}

/* A synchronous flag change or expunge of one mailbox; must succeed. */
static void
update_one(struct store *store, int64_t account, const char *mailbox,
           const struct store_flag_change *changes, size_t n, const uint32_t *expunge,
           size_t nexpunge)
{
	struct update_result u = {0};

	store_mailbox_update(store, account, mailbox, changes, n, expunge, nexpunge, update_cb, &u);
	assert_int_equal(u.calls, 1);
	assert_true(u.ok);
}

static void
test_store_counters(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	const uint64_t S = sizeof(message1) - 1;
	struct store_target seen = {alice, "INBOX", STORE_FLAG_SEEN, "alice@example.org", NULL};
	struct store_target lf = {alice, "INBOX", 0, "alice@example.org", NULL};
	const struct store_flag_change flags[] = {
	    {1, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},
	    {3, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},
	    {2, 0, STORE_FLAG_SEEN, NULL, NULL, NULL, 0},
	    {4, STORE_FLAG_FLAGGED, 0, NULL, "Work", NULL, 0}, /* leaves \Seen alone */
	};
	const uint32_t expunge[] = {4, 6}, copy[] = {1, 2}, move[] = {5, 7};
	struct store_mailbox_counts c;
	struct store_mailbox mb;
	struct commit_result r;
	struct copy_r cr;
	char error[256];

	print_message("# five deliveries (uid 2 \\Seen), one also to Sent\n");
	counts_expect(store, d->path, alice, "INBOX", 5, 4, 5 * S);
	counts_expect(store, d->path, alice, "Sent", 1, 1, S);
	print_message(
	    "# APPEND-like delivery with \\Seen; a bare-LF message counts its CRLF size\n");
	deliver(store, message1, S, &seen, 1, &r);
	assert_true(r.ok);
	deliver(store, "a\nb\n", 4, &lf, 1, &r);
	assert_true(r.ok);
	counts_expect(store, d->path, alice, "INBOX", 7, 5, 6 * S + 6);
	print_message("# \\Recent: counted above recent_after through the UID index\n");
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &mb), 1);
	assert_int_equal(store_mailbox_counts(store, mb.id, 5, &c), 0);
	assert_int_equal(c.recent, 2);
	assert_int_equal(store_mailbox_counts(store, mb.id, 7, &c), 0);
	assert_int_equal(c.recent, 0);
	print_message("# STORE +\\Seen 1,3, -\\Seen 2, +\\Flagged 4\n");
	update_one(store, alice, "INBOX", flags, 4, NULL, 0);
	counts_expect(store, d->path, alice, "INBOX", 7, 4, 6 * S + 6);
	print_message("# EXPUNGE 4 (unseen) and 6 (seen)\n");
	update_one(store, alice, "INBOX", NULL, 0, expunge, 2);
	counts_expect(store, d->path, alice, "INBOX", 5, 3, 4 * S + 6);
	print_message("# COPY 1,2 -> Trash\n");
	store_message_copy(store, alice, "INBOX", copy, 2, "Trash", false, copy_cb, &cr);
	assert_int_equal(cr.result, 1);
	counts_expect(store, d->path, alice, "Trash", 2, 1, 2 * S);
	counts_expect(store, d->path, alice, "INBOX", 5, 3, 4 * S + 6);
	print_message("# MOVE 5,7 -> Junk\n");
	store_message_copy(store, alice, "INBOX", move, 2, "Junk", true, copy_cb, &cr);
	assert_int_equal(cr.result, 1);
	counts_expect(store, d->path, alice, "Junk", 2, 2, S + 6);
	counts_expect(store, d->path, alice, "INBOX", 3, 1, 3 * S);
	print_message("# RENAME Junk Spam, RENAME INBOX Old (the messages move, INBOX empty)\n");
	assert_int_equal(store_mailbox_rename(store, alice, "Junk", "Spam", error, sizeof(error)),
	                 1);
	counts_expect(store, d->path, alice, "Spam", 2, 2, S + 6);
	assert_int_equal(store_mailbox_rename(store, alice, "INBOX", "Old", error, sizeof(error)),
	                 1);
	counts_expect(store, d->path, alice, "Old", 3, 1, 3 * S);
	counts_expect(store, d->path, alice, "INBOX", 0, 0, 0);
	print_message("# DELETE Old and Spam, then a delivery to a new INBOX message\n");
	assert_int_equal(store_mailbox_delete(store, alice, "Old", error, sizeof(error)), 1);
	assert_int_equal(store_mailbox_delete(store, alice, "Spam", error, sizeof(error)), 1);
	deliver(store, message1, S, &lf, 1, &r);
	assert_true(r.ok);
	counts_expect(store, d->path, alice, "INBOX", 1, 1, S);
	counts_expect(store, d->path, alice, "Trash", 2, 1, 2 * S);
	store_free(&store);
}

static void
test_store_migration_5(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	const uint64_t S = sizeof(message1) - 1;
	const uint32_t expunge[] = {1};

	update_one(store, alice, "INBOX", NULL, 0, expunge, 1);
	store_free(&store);
	print_message("# a version 4 database (no counters) with rows: migration 5 counts them\n");
	raw_exec(d->path, UNDO_MIGRATION_5 "UPDATE schema_version SET version = 4;");
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM pragma_table_info('mailboxes') "
	                                  "WHERE name = 'messages_count'"),
	                 0);
	store = open_store(d->path, false, NULL);
	assert_int_equal(raw_int(d->path, "SELECT version FROM schema_version"), 6);
	counts_expect(store, d->path, alice, "INBOX", 4, 3, 4 * S);
	counts_expect(store, d->path, alice, "Sent", 1, 1, S);
	counts_expect(store, d->path, alice, "Trash", 0, 0, 0);
	print_message("# ... and the triggers keep them from then on\n");
	update_one(store, alice, "INBOX", NULL, 0, (const uint32_t[]){2}, 1);
	counts_expect(store, d->path, alice, "INBOX", 3, 3, 3 * S);
	store_free(&store);
}

#define SCAN_MAX 16

struct scan_acc {
	int n;
	struct {
		uint32_t uid, flags;
		uint64_t modseq, size;
		int64_t internal_date;
		char keywords[64];
	} m[SCAN_MAX];
};

static void
scan_cb(const struct store_message_meta *m, void *arg)
{
	struct scan_acc *acc = arg;

	assert_true(acc->n < SCAN_MAX);
	acc->m[acc->n].uid = m->uid;
	acc->m[acc->n].flags = m->flags;
	acc->m[acc->n].modseq = m->modseq;
	acc->m[acc->n].size = m->size;
	acc->m[acc->n].internal_date = m->internal_date;
	snprintf(acc->m[acc->n].keywords, sizeof(acc->m[0].keywords), "%s", m->keywords);
	acc->n++;
}

/* Scans alice's mailbox into acc; returns the count. */
static int
scan(struct store *store, int64_t alice, const char *mailbox, unsigned fields, uint32_t uid_after,
     uint64_t modseq_after, struct scan_acc *acc)
{
	struct store_scan q = {fields, uid_after, modseq_after};

	memset(acc, 0, sizeof(*acc));
	assert_int_equal(store_message_scan(store, alice, mailbox, &q, scan_cb, acc), 1);
	return acc->n;
}

static void
test_store_scan(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	int64_t alice = update_fixture(store);
	const unsigned all = STORE_SCAN_FLAGS | STORE_SCAN_KEYWORDS | STORE_SCAN_SIZE;
	const struct store_flag_change kw = {4, 0, 0, NULL, "Work", NULL, 0};
	struct store_target t = {alice, "INBOX", 0, "alice@example.org", NULL};
	struct store_scan q = {all, 0, 0};
	struct store_mailbox mb;
	struct commit_result r;
	struct scan_acc acc;
	struct list_acc list;
	uint64_t modseq;

	print_message("# every field: what store_message_list says, in UID order\n");
	assert_int_equal(list_mailbox(store, alice, "INBOX", &list), 5);
	assert_int_equal(scan(store, alice, "INBOX", all, 0, 0, &acc), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(acc.m[i].uid, list.m[i].uid);
		assert_int_equal(acc.m[i].flags, list.m[i].flags);
		assert_int_equal(acc.m[i].modseq, list.m[i].modseq);
		assert_int_equal(acc.m[i].size, list.m[i].size_crlf);
		assert_int_equal(acc.m[i].internal_date, list.m[i].internal_date);
	}
	print_message("# no fields: UIDs only, the rest 0 / \"\"\n");
	assert_int_equal(scan(store, alice, "INBOX", 0, 0, 0, &acc), 5);
	assert_int_equal(acc.m[1].uid, 2);
	assert_int_equal(acc.m[1].flags, 0);
	assert_int_equal(acc.m[1].size, 0);
	assert_string_equal(acc.m[1].keywords, "");
	print_message("# uid > 3\n");
	assert_int_equal(scan(store, alice, "INBOX", STORE_SCAN_FLAGS, 3, 0, &acc), 2);
	assert_int_equal(acc.m[0].uid, 4);
	assert_int_equal(acc.m[0].flags, STORE_FLAG_FLAGGED);
	assert_int_equal(acc.m[1].uid, 5);
	print_message(
	    "# modseq > the mailbox's: only what changed since (a keyword, a delivery)\n");
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &mb), 1);
	modseq = mb.highestmodseq;
	assert_int_equal(scan(store, alice, "INBOX", all, 0, modseq, &acc), 0);
	update_one(store, alice, "INBOX", &kw, 1, NULL, 0);
	deliver(store, message1, sizeof(message1) - 1, &t, 1, &r);
	assert_true(r.ok);
	assert_int_equal(scan(store, alice, "INBOX", all, 0, modseq, &acc), 2);
	assert_int_equal(acc.m[0].uid, 4);
	assert_string_equal(acc.m[0].keywords, "Work");
	assert_true(acc.m[0].modseq > modseq);
	assert_int_equal(acc.m[1].uid, 6);
	assert_int_equal(scan(store, alice, "INBOX", all, 5, modseq, &acc), 1);
	assert_int_equal(acc.m[0].uid, 6);
	print_message("# list_range: 1 < uid < 5, at most 2, with the summaries\n");
	memset(&list, 0, sizeof(list));
	assert_int_equal(store_message_list_range(store, alice, "INBOX", 1, 5, 2, list_cb, &list),
	                 1);
	assert_int_equal(list.n, 2);
	assert_int_equal(list.m[0].uid, 2);
	assert_int_equal(list.m[1].uid, 3);
	assert_string_equal(list.m[0].from, "Carol <carol@example.net>");
	assert_true(list.m[0].mailbox_id > 0);
	print_message("# no such mailbox: 0\n");
	assert_int_equal(store_message_scan(store, alice, "Nope", &q, scan_cb, &acc), 0);
	assert_int_equal(store_message_list_range(store, alice, "Nope", 0, 0, 0, list_cb, &list),
	                 0);
	store_free(&store);
}

/* --- the search index (store_search.c) --- */

/* The FTS5 query: a column filter and one quoted phrase; every byte of the needle is data. */
static void
test_store_search_query(void **state)
{
	static const struct {
		enum store_search_key key;
		const char *needle;
		const char *query; /* NULL: not narrowed */
	} cases[] = {
	    {STORE_SEARCH_SUBJECT, "abc", "{subject} : (\"abc\")"},
	    {STORE_SEARCH_FROM, "a\"b", "{addr_from} : (\"a\"\"b\")"},
	    {STORE_SEARCH_TO, "\"\"\"", "{addr_to} : (\"\"\"\"\"\"\"\")"},
	    {STORE_SEARCH_CC, "x* NEAR(a b)",
	     "{addr_cc} : (\"x* \" AND \"* N\" AND \" NE\" AND \"NEA\" AND \"EAR\" AND \"AR(\" AND "
	     "\"R(a\" AND \"(a \" AND \"a b\" AND \" b)\")"},
	    {STORE_SEARCH_BCC, "subject: x",
	     "{addr_bcc} : (\"sub\" AND \"ubj\" AND \"bje\" AND \"jec\" AND \"ect\" AND \"ct:\" "
	     "AND \"t: \" AND \": x\")"},
	    {STORE_SEARCH_BODY, "^a OR b AND NOT (c)",
	     "{body} : (\"^a \" AND \"a O\" AND \" OR\" AND \"OR \" AND \"R b\" AND \" b \" AND "
	     "\"b A\" AND \" AN\" AND \"AND\" AND \"ND \" AND \"D N\" AND \" NO\" AND \"NOT\" AND "
	     "\"OT \" AND \"T (\" AND \" (c\" AND \"(c)\")"},
	    {STORE_SEARCH_TEXT,
	     "gr\xc3\xbc\xc3\x9f"
	     "e",
	     "{headers body} : (\"gr\xc3\xbc\" AND \"r\xc3\xbc\xc3\x9f\" AND \"\xc3\xbc\xc3\x9f"
	     "e\")"},
	    {STORE_SEARCH_SUBJECT, "{body}:x",
	     "{subject} : (\"{bo\" AND \"bod\" AND \"ody\" AND \"dy}\" AND \"y}:\" AND \"}:x\")"},
	    {STORE_SEARCH_SUBJECT, "a\r\nb", "{subject} : (\"a\r\n\" AND \"\r\nb\")"},
	    {STORE_SEARCH_SUBJECT, "\xc3\xa9\xe2\x82\xacx",
	     "{subject} : (\"\xc3\xa9\xe2\x82\xacx\")"},
	    {STORE_SEARCH_SUBJECT, "ab", NULL},                   /* two characters */
	    {STORE_SEARCH_SUBJECT, "\xc3\xa9\xe2\x82\xac", NULL}, /* two characters, 5 bytes */
	    {STORE_SEARCH_SUBJECT, "", NULL},
	    {STORE_SEARCH_SUBJECT, "ab\0cd", NULL}, /* a C string: "ab" */
	    {STORE_SEARCH_SUBJECT,
	     "\xff\xfe"
	     "abc",
	     NULL},                                 /* not UTF-8 */
	    {STORE_SEARCH_SUBJECT, "ab\xc3", NULL}, /* cut character */
	    {(enum store_search_key)99, "abc", NULL},
	};
	char long_needle[600], *cut;

	print_message("# a long needle is cut to 256 bytes of whole characters\n");
	memset(long_needle, 'q', 255);
	strcpy(long_needle + 255, "\xc3\xa9 and more text after it");
	cut = store_search_query(STORE_SEARCH_BODY, long_needle);
	assert_non_null(cut);
	/* 255 characters: 253 trigrams "qqq", joined by " AND " */
	assert_int_equal(strlen(cut), strlen("{body} : ()") + 253 * 5 + 252 * 5);
	free(cut);
	memset(long_needle, '"', 599);
	long_needle[599] = '\0';
	cut = store_search_query(STORE_SEARCH_BODY, long_needle);
	/* 256 quotes: 254 trigrams of three doubled quotes, each quoted */
	assert_int_equal(strlen(cut), strlen("{body} : ()") + 254 * 8 + 253 * 5);
	free(cut);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *q = store_search_query(cases[i].key, cases[i].needle);

		print_message("# query for key %d needle \"%s\": %s\n", (int)cases[i].key,
		              cases[i].needle, q != NULL ? q : "(none)");
		if (cases[i].query == NULL)
			assert_null(q);
		else
			assert_string_equal(q, cases[i].query);
		free(q);
	}
}

static const char search_msg1[] = "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.net>\r\n"
                                  "To: alice@example.org\r\n"
                                  "Subject: =?UTF-8?Q?GR=C3=9C=C3=9FE_aus_K=C3=B6ln?=\r\n"
                                  "Message-ID: <s1@example.net>\r\n"
                                  "\r\n"
                                  "Hello Alice.\r\n";
static const char search_msg2[] = "From: Eve <eve@example.com>\r\n"
                                  "To: alice@example.org\r\n"
                                  "Cc: Bob (a comment) <bob@example.com>\r\n"
                                  "Subject: say \"hi\" NEAR(x y) subject:z* ^AND\r\n"
                                  "MIME-Version: 1.0\r\n"
                                  "Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Transfer-Encoding: base64\r\n"
                                  "\r\n"
                                  "RGllIFN0cmHDn2UgdW5kIG1laHI=\r\n"; /* "Die Straße und mehr" */
static const char search_msg3[] = "From: Zed <zed@example.com>\r\n"
                                  "To: alice@example.org\r\n"
                                  "Subject: plain\r\n"
                                  "\r\n"
                                  "nothing to see\r\n";

/* The candidates for key/needle (folded as the matcher folds) in mailbox as a bit set of UIDs. */
static unsigned
search_cands(struct store *store, int64_t mailbox_id, enum store_search_key key, const char *needle)
{
	size_t flen, n = 0;
	char *folded = mime_text_fold(needle, strlen(needle), &flen);
	uint32_t *uids = NULL;
	unsigned set = 0;
	char error[256];
	struct store_search_snap *ss = store_search_begin(store, error, sizeof(error));

	assert_int_equal(
	    store_search_candidates(ss, mailbox_id, key, folded, &uids, &n, error, sizeof(error)),
	    1);
	store_search_end(&ss);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(uids[i] > uids[i - 1]);
		set |= 1u << uids[i];
	}
	print_message("# key %d \"%s\": candidates 0x%x\n", (int)key, needle, set);
	free(uids);
	g_free(folded);
	return set;
}

#define U(n) (1u << (n))

/* Deliveries are indexed in their transaction; the index narrows by column, decoded and folded;
 * rows it lacks are candidates; expunged rows leave it; the daemon's committer backfills. */
static void
test_store_search_candidates(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	const char *msgs[] = {search_msg1, search_msg2, search_msg3};
	struct commit_result r;
	struct event_base *base;
	struct workers *workers;
	int64_t inbox;
	char error[256], sql[256], *bomb;
	struct store_search_snap *ss;
	uint32_t *uids = NULL;
	size_t n = 0;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	for (int i = 0; i < 3; i++) {
		deliver(store, msgs[i], strlen(msgs[i]), &t, 1, &r);
		assert_true(r.ok);
	}
	snprintf(sql, sizeof(sql),
	         "SELECT id FROM mailboxes WHERE account_id = %lld AND name = 'INBOX'",
	         (long long)t.account_id);
	inbox = raw_int(d->path, sql);
	print_message("# every delivery is indexed at once: nothing left to do\n");
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text"), 3);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text_pending"), 0);

	print_message("# decoded, case-folded (GRÜßE found as grüsse), by column\n");
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "Gr\xc3\xbcsse"), U(1));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "K\xc3\x96LN"), U(1));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_FROM, "j\xc3\xbcrgen m"), U(1));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_FROM, "alice@"), 0);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_TO, "alice@"), U(1) | U(2) | U(3));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_CC, "<bob@example.com>"), U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_CC, "comment"), 0);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BCC, "example"), 0);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "STRASSE"), U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "hello alice"), U(1));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "hello"), 0);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_TEXT, "s1@example.net"), U(1));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_TEXT, "nothing to"), U(3));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "subject"), 0);
	print_message("# query syntax in the needle is text\n");
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "\"hi\" NEAR(x y)"),
	                 U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "subject:z*"), U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "^AND"), U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "y) s"), U(2));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "NEAR(x z)"), 0);
	print_message("# a needle of two characters is not narrowed\n");
	ss = store_search_begin(store, error, sizeof(error));
	assert_non_null(ss);
	assert_int_equal(store_search_candidates(ss, inbox, STORE_SEARCH_SUBJECT, "hi", &uids, &n,
	                                         error, sizeof(error)),
	                 0);
	assert_null(uids);
	store_search_end(&ss);
	assert_null(ss);

	print_message("# a row the index lacks (stored before it) is a candidate of every key\n");
	raw_exec(d->path, "DELETE FROM message_text WHERE rowid = (SELECT id FROM messages "
	                  "WHERE uid = 3); INSERT INTO message_text_pending (id) "
	                  "SELECT id FROM messages WHERE uid = 3;");
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "gr\xc3\xbcsse"),
	                 U(1) | U(3));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "xyz"), U(3));
	print_message("# a row with its body indexed in part: a candidate of BODY and TEXT only\n");
	raw_exec(d->path, "INSERT OR REPLACE INTO message_text_pending (id, state) "
	                  "SELECT id, 1 FROM messages WHERE uid = 2;");
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "xyz"), U(2) | U(3));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_TEXT, "xyz"), U(2) | U(3));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "xyz"), U(3));
	raw_exec(d->path, "DELETE FROM message_text_pending WHERE id = (SELECT id FROM messages "
	                  "WHERE uid = 2);");

	print_message("# an expunged message leaves the index in the same transaction\n");
	update_one(store, t.account_id, "INBOX", NULL, 0, (const uint32_t[]){1}, 1);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text"), 1);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "gr\xc3\xbcsse"), U(3));

	print_message("# a header bomb is never parsed at delivery: it stays to do, a candidate\n");
	bomb = malloc(2000 * 8 + 64);
	strcpy(bomb, "From: b@example.com\r\nSubject: bomb\r\n");
	for (int i = 0; i < 2000; i++)
		strcat(bomb, "X-A: b\r\n");
	strcat(bomb, "\r\nbody\r\n");
	deliver(store, bomb, strlen(bomb), &t, 1, &r);
	assert_true(r.ok);
	free(bomb);
	assert_int_equal(raw_int(d->path,
	                         "SELECT count(*) FROM message_text_pending t JOIN messages m "
	                         "ON m.id = t.id WHERE m.uid = 4 AND t.state = 2"),
	                 1);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "gr\xc3\xbcsse"),
	                 U(3) | U(4));
	store_free(&store);

	print_message("# the daemon's committer indexes the rows left to do while idle\n");
	base = event_base_new();
	assert_non_null(base);
	workers = workers_new(base, 1);
	store = open_store(d->path, false, workers);
	for (int i = 0;
	     i < 500 && raw_int(d->path, "SELECT count(*) FROM message_text_pending") > 1; i++)
		usleep(20000);
	/* The bomb stays: the backfill does not parse it either (and does not loop on it). */
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text_pending"), 1);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text"), 2);
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_SUBJECT, "gr\xc3\xbcsse"), U(4));
	assert_int_equal(search_cands(store, inbox, STORE_SEARCH_BODY, "nothing to"), U(3) | U(4));
	store_free(&store);
	workers_free(&workers);
	event_base_free(base);
}

/* A snapshot answers as the index was when it began (a message expunged since is still a
 * candidate, as it is in the searching session's view), and outlives the store. */
static void
test_store_search_snapshot(void **state)
{
	struct test_dir *d = *state;
	struct store *store = open_store(d->path, true, NULL);
	struct store_target t = {0, "INBOX", 0, "alice@example.org", NULL};
	struct store_search_snap *snap, *later;
	struct commit_result r;
	char error[256], sql[160];
	uint32_t *uids = NULL;
	size_t n = 0;
	int64_t inbox;

	assert_int_equal(store_account_add(store, "alice@example.org", HASH, error, sizeof(error)),
	                 1);
	t.account_id = account_id(store, "alice@example.org");
	deliver(store, search_msg3, strlen(search_msg3), &t, 1, &r);
	assert_true(r.ok);
	snprintf(sql, sizeof(sql),
	         "SELECT id FROM mailboxes WHERE account_id = %lld AND name = 'INBOX'",
	         (long long)t.account_id);
	inbox = raw_int(d->path, sql);
	snap = store_search_begin(store, error, sizeof(error));
	assert_non_null(snap);
	later = store_search_begin(store, error, sizeof(error));
	assert_non_null(later);
	print_message("# expunged after the snapshot began: still its candidate\n");
	update_one(store, t.account_id, "INBOX", NULL, 0, (const uint32_t[]){1}, 1);
	assert_int_equal(raw_int(d->path, "SELECT count(*) FROM message_text"), 0);
	assert_int_equal(store_search_candidates(snap, inbox, STORE_SEARCH_BODY, "nothing to",
	                                         &uids, &n, error, sizeof(error)),
	                 1);
	assert_int_equal(n, 1);
	assert_int_equal(uids[0], 1);
	free(uids);
	store_search_end(&snap);
	print_message("# a snapshot begun after the expunge: no candidate\n");
	snap = store_search_begin(store, error, sizeof(error));
	assert_int_equal(store_search_candidates(snap, inbox, STORE_SEARCH_BODY, "nothing to",
	                                         &uids, &n, error, sizeof(error)),
	                 1);
	assert_int_equal(n, 0);
	store_search_end(&snap);
	print_message("# a snapshot outlives the store (a worker still querying at shutdown)\n");
	store_free(&store);
	assert_int_equal(store_search_candidates(later, inbox, STORE_SEARCH_TEXT, "plain", &uids,
	                                         &n, error, sizeof(error)),
	                 1);
	assert_int_equal(n, 1);
	free(uids);
	store_search_end(&later);
	assert_null(later);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_store_accounts, setup_dir, teardown_dir),
	    cmocka_unit_test(test_store_search_query),
	    cmocka_unit_test_setup_teardown(test_store_search_candidates, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_search_snapshot, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_commit_sync, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_abort_and_tmp, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_sweep_orphans, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_deliver_smtp, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_reopen, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_threaded, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_group, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_size_crlf, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_size_crlf_chunks, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_get, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_sync, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_threaded, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_concurrent, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_migration_2, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_migration_3, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_ids, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_expunged, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_uidvalidity, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_keywords_delivery, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_results, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_unchangedsince, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_copy, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_move, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_copy_threaded, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_create, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_delete, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_rename, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_op_threaded, setup_dir,
	                                    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_subscriptions, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_deliver_append, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_message_mime, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_counters, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_migration_5, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_scan, setup_dir, teardown_dir),
	};
	int rc;

	mime_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	mime_deinit();
	return rc;
}
