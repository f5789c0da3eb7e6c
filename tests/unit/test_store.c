/* test_store: the SQLite store in a temporary data dir: accounts and aliases, synchronous and
 * threaded commits, reads, deletion, migrations and tmp cleanup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <sqlite3.h>

#include "lib/workers.h"
#include "mime/summary.h"
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

struct list_acc {
	int n;
	struct store_message m[8];
};

static void
list_cb(const struct store_message *m, void *arg)
{
	struct list_acc *acc = arg;

	if (acc->n < 8)
		acc->m[acc->n] = *m;
	acc->n++;
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
		    {alice, "INBOX", 0, "alice@example.org"},
		    {bob, "inbox", STORE_FLAG_SEEN, "bob@example.org"},
		    {0, NULL, 0, "dave@elsewhere.test"},
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
		    {alice, "INBOX", 0, "alice@example.org"},
		    {bob, "NoSuchBox", 0, "bob@example.org"},
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

	/* A leftover from a crash mid-receive is removed on open. */
	snprintf(path, sizeof(path), "%s/tmp/leftover", d->path);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("partial", fp);
	fclose(fp);
	store = open_store(d->path, false, NULL);
	assert_int_equal(count_files(d->path, "tmp"), 0);
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
	struct store_target target = {0, "INBOX", 0, "alice@example.org"};
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
		struct store_target bad = {target.account_id, "NoSuchBox", 0, "x"};
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_store_accounts, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_commit_sync, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_abort_and_tmp, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_reopen, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_threaded, setup_dir, teardown_dir),
	};
	int rc;

	mime_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	mime_deinit();
	return rc;
}
