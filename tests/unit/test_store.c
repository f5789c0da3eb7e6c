/* test_store: the SQLite store in a temporary data dir: accounts and aliases, synchronous and
 * threaded commits, reads, deletion, migrations and tmp cleanup, CRLF sizes, mailbox updates
 * (flags, expunge) alone and interleaved with deliveries. */
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
    {1, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},                      /* set: changes */
    {2, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},                      /* already set: no change */
    {3, 0, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 0},                   /* already clear: no change */
    {4, STORE_FLAG_ANSWERED, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 0}, /* set one, clear another: changes */
    {99, STORE_FLAG_SEEN, 0, NULL, NULL, NULL, 0},                     /* no such UID: skipped */
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
	assert_int_equal(acc.m[2].modseq, 7);
	/* Two flag changes, then one MODSEQ for the expunge. */
	assert_int_equal(store_mailbox_get(store, alice, "INBOX", &mb), 1);
	assert_int_equal(mb.highestmodseq, 8);
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
		struct store_flag_change c[2] = {{1, STORE_FLAG_FLAGGED, STORE_FLAG_FLAGGED, NULL, NULL, NULL, 0},
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

	/* Every delivery and every change took exactly one MODSEQ, none twice. */
	assert_int_equal(store_mailbox_get(env.store, target.account_id, "INBOX", &mb), 1);
	assert_int_equal(mb.uidnext, MIX_FIRST + MIX_DELIVERIES + 1);
	assert_int_equal(mb.highestmodseq,
	                 MIX_FIRST + MIX_DELIVERIES + MIX_UPDATES + MIX_UPDATES / 2);
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
	raw_exec(d->path, "ALTER TABLE messages DROP COLUMN size_crlf;"
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_store_accounts, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_commit_sync, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_abort_and_tmp, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_reopen, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_threaded, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_size_crlf, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_size_crlf_chunks, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_mailbox_get, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_sync, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_threaded, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_update_concurrent, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_store_migration_2, setup_dir, teardown_dir),
	};
	int rc;

	mime_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	mime_deinit();
	return rc;
}
