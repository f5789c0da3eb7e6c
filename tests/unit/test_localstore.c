/* test_localstore: adding, duplicates, listing, flags, search (every field, free text, phrases,
 * malformed and hostile queries), reopening, tmp/ cleanup and a failed commit, on a store in a
 * temporary directory filled with messages built here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "tern/localstore.h"

static char test_root[] = "/tmp/test_localstore.XXXXXX";

/* The shared store every search test reads: see fill_store for what it holds. */
struct fixture {
	char home[600];
	struct lstore *store;
	int64_t ids[5];
};

static const char msg_report[] = "From: Alice <alice@example.org>\r\n"
                                 "To: Bob <bob@example.com>\r\n"
                                 "Subject: Quarterly report\r\n"
                                 "Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
                                 "Message-ID: <m1@example.org>\r\n"
                                 "\r\n"
                                 "the quick brown fox jumps over the lazy dog\r\n";

static const char msg_gruss[] = "From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>\r\n"
                                "To: alice@example.org\r\n"
                                "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
                                "Date: Sun, 15 Jun 2025 08:00:00 +0200\r\n"
                                "\r\n"
                                "bis bald\r\n";

static const char msg_alternative[] = "From: news@example.net\r\n"
                                      "To: alice@example.org\r\n"
                                      "Subject: Newsletter\r\n"
                                      "Date: Fri, 1 Aug 2025 12:00:00 +0000\r\n"
                                      "MIME-Version: 1.0\r\n"
                                      "Content-Type: multipart/alternative; boundary=\"A\"\r\n"
                                      "\r\n"
                                      "--A\r\n"
                                      "Content-Type: text/plain\r\n"
                                      "\r\n"
                                      "plain words only\r\n"
                                      "--A\r\n"
                                      "Content-Type: text/html\r\n"
                                      "\r\n"
                                      "<p>hidden <b>zebracorn</b></p>\r\n"
                                      "--A--\r\n";

static const char msg_invoice[] = "From: Alice <alice@example.org>\r\n"
                                  "To: billing@example.com\r\n"
                                  "Subject: x' OR 1=1 -- invoice\r\n"
                                  "Date: Tue, 31 Dec 2024 23:59:59 +0000\r\n"
                                  "MIME-Version: 1.0\r\n"
                                  "Content-Type: multipart/mixed; boundary=\"M\"\r\n"
                                  "\r\n"
                                  "--M\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "\r\n"
                                  "invoice attached\r\n"
                                  "--M\r\n"
                                  "Content-Type: application/pdf\r\n"
                                  "Content-Disposition: attachment; filename=\"inv.pdf\"\r\n"
                                  "\r\n"
                                  "%PDF\r\n"
                                  "--M--\r\n";

static const char msg_html_only[] = "From: shop@example.com\r\n"
                                    "To: alice@example.org\r\n"
                                    "Subject: Offer\r\n"
                                    "MIME-Version: 1.0\r\n"
                                    "Content-Type: text/html; charset=utf-8\r\n"
                                    "\r\n"
                                    "<html><body><p>a rare platypus</p>"
                                    "<script>scriptword</script></body></html>\r\n";

/* Adds data with the given source; returns lstore_new_commit's result. */
static int
add_message(struct lstore *store, const char *data, const char *account, const char *folder,
            const char *remote_key, uint32_t flags, int64_t *id_r)
{
	struct lstore_source source = {account, folder, remote_key, flags};
	struct lstore_new *n = NULL;
	char error[256] = "";
	int64_t id = 0;
	int fd, ret;

	assert_int_equal(lstore_new_begin(store, &n, &fd, error, sizeof(error)), 0);
	assert_non_null(n);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	ret = lstore_new_commit(store, &n, &source, &id, error, sizeof(error));
	assert_null(n);
	if (ret < 0)
		print_message("# commit error: %s\n", error);
	if (id_r != NULL)
		*id_r = id;
	return ret;
}

static int file_count;

static int
count_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F)
		file_count++;
	return 0;
}

/* Regular files under home/sub. */
static int
count_files(const char *home, const char *sub)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/%s", home, sub);
	file_count = 0;
	nftw(path, count_one, 16, FTW_PHYS);
	return file_count;
}

/* Collects listed ids in order. */
struct collected {
	int64_t ids[32];
	int n;
};

static void
collect_cb(const struct lstore_message *m, void *arg)
{
	struct collected *c = arg;

	if (c->n < 32)
		c->ids[c->n++] = m->id;
}

static int
fixture_setup(void **state)
{
	static int serial;
	struct fixture *f = calloc(1, sizeof(*f));
	char error[256];

	snprintf(f->home, sizeof(f->home), "%s/home%d", test_root, ++serial);
	if (lstore_open(f->home, &f->store, error, sizeof(error)) < 0) {
		print_error("lstore_open: %s\n", error);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
fixture_teardown(void **state)
{
	struct fixture *f = *state;

	lstore_close(&f->store);
	free(f);
	return 0;
}

/* Five messages: ids[0] report (work/INBOX), ids[1] gruss (work/INBOX, seen), ids[2]
 * newsletter (home/Archive), ids[3] invoice (local Sent, attachment), ids[4] html only, no date
 * (home/INBOX). Newest first: 2, 0, 1, 3, 4. */
static int
filled_setup(void **state)
{
	struct fixture *f;

	if (fixture_setup(state) < 0)
		return -1;
	f = *state;
	if (add_message(f->store, msg_report, "work", "INBOX", "pop3:1", 0, &f->ids[0]) != 1 ||
	    add_message(f->store, msg_gruss, "work", "INBOX", "pop3:2", LSTORE_FLAG_SEEN,
	                &f->ids[1]) != 1 ||
	    add_message(f->store, msg_alternative, "home", "Archive", "imap:Archive:7:1", 0,
	                &f->ids[2]) != 1 ||
	    add_message(f->store, msg_invoice, "", "Sent", NULL, LSTORE_FLAG_SEEN, &f->ids[3]) !=
	        1 ||
	    add_message(f->store, msg_html_only, "home", "INBOX", "imap:INBOX:7:9", 0,
	                &f->ids[4]) != 1)
		return -1;
	return 0;
}

static void
test_add_and_get(void **state)
{
	struct fixture *f = *state;
	struct lstore_message m;
	char *data = NULL;
	size_t len = 0;
	FILE *in;
	int64_t id;

	assert_int_equal(add_message(f->store, msg_report, "work", "INBOX", "pop3:1", 0, &id), 1);
	assert_true(id > 0);
	assert_int_equal(lstore_get(f->store, id, &m), 1);
	assert_int_equal(m.id, id);
	assert_string_equal(m.account, "work");
	assert_string_equal(m.folder, "INBOX");
	assert_string_equal(m.remote_key, "pop3:1");
	assert_string_equal(m.message_id, "m1@example.org");
	assert_string_equal(m.from, "Alice <alice@example.org>");
	assert_string_equal(m.to, "Bob <bob@example.com>");
	assert_string_equal(m.subject, "Quarterly report");
	assert_int_equal(m.date, 1751364000);
	assert_int_equal(m.size, strlen(msg_report));
	assert_false(m.has_attachments);
	assert_int_equal(m.flags, 0);
	assert_true(m.path[0] == '/');
	assert_non_null(strstr(m.path, "/mail/work/INBOX/"));
	assert_non_null(strstr(m.path, ".eml"));
	/* The exact bytes are kept. */
	in = fopen(m.path, "rb");
	assert_non_null(in);
	data = malloc(sizeof(msg_report));
	len = fread(data, 1, sizeof(msg_report), in);
	fclose(in);
	assert_int_equal(len, strlen(msg_report));
	assert_memory_equal(data, msg_report, len);
	free(data);
	assert_int_equal(count_files(f->home, "tmp"), 0);
	assert_int_equal(lstore_get(f->store, id + 100, &m), 0);
}

static void
test_add_attachment_flag(void **state)
{
	struct fixture *f = *state;
	struct lstore_message m;
	int64_t id;

	assert_int_equal(add_message(f->store, msg_invoice, "", "", NULL, 0, &id), 1);
	assert_int_equal(lstore_get(f->store, id, &m), 1);
	assert_true(m.has_attachments);
	assert_string_equal(m.account, "");
	assert_string_equal(m.folder, "INBOX");
	assert_string_equal(m.remote_key, "");
	assert_non_null(strstr(m.path, "/mail/local/INBOX/"));
}

static void
test_duplicate_remote_key(void **state)
{
	struct fixture *f = *state;
	int64_t id;

	assert_int_equal(add_message(f->store, msg_report, "work", "INBOX", "pop3:1", 0, &id), 1);
	assert_int_equal(lstore_has_remote(f->store, "work", "pop3:1"), 1);
	assert_int_equal(lstore_has_remote(f->store, "home", "pop3:1"), 0);
	assert_int_equal(lstore_has_remote(f->store, "work", "pop3:2"), 0);
	assert_int_equal(add_message(f->store, msg_gruss, "work", "INBOX", "pop3:1", 0, NULL), 0);
	assert_int_equal(count_files(f->home, "mail"), 1);
	assert_int_equal(count_files(f->home, "tmp"), 0);
	/* The same key on another account is another message. */
	assert_int_equal(add_message(f->store, msg_report, "home", "INBOX", "pop3:1", 0, NULL), 1);
	assert_int_equal(count_files(f->home, "mail"), 2);
}

/* The same message over another protocol: matched by account, folder, Message-ID and size; the
 * match is remembered as an alias that lstore_has_remote finds (issue 10: POP3 then IMAP fetched
 * everything twice). */
static void
test_message_id_alias(void **state)
{
	struct fixture *f = *state;
	uint64_t size = strlen(msg_report);

	assert_int_equal(add_message(f->store, msg_report, "work", "INBOX", "pop3:AB12", 0, NULL),
	                 1);
	assert_int_equal(lstore_has_size(f->store, "work", size), 1);
	assert_int_equal(lstore_has_size(f->store, "work", size + 1), 0);
	assert_int_equal(lstore_has_size(f->store, "home", size), 0);
	/* Not the same: another size, another folder, another account, another id, no id. */
	assert_int_equal(lstore_match_message_id(f->store, "work", "INBOX", "m1@example.org",
	                                         size + 1, "imap:INBOX:5:1"),
	                 0);
	assert_int_equal(lstore_match_message_id(f->store, "work", "Archive", "m1@example.org",
	                                         size, "imap:Archive:5:1"),
	                 0);
	assert_int_equal(lstore_match_message_id(f->store, "home", "INBOX", "m1@example.org", size,
	                                         "imap:INBOX:5:1"),
	                 0);
	assert_int_equal(lstore_match_message_id(f->store, "work", "INBOX", "m2@example.org", size,
	                                         "imap:INBOX:5:1"),
	                 0);
	assert_int_equal(
	    lstore_match_message_id(f->store, "work", "INBOX", "", size, "imap:INBOX:5:1"), 0);
	assert_int_equal(lstore_has_remote(f->store, "work", "imap:INBOX:5:1"), 0);
	/* The same: remembered. */
	assert_int_equal(lstore_match_message_id(f->store, "work", "INBOX", "m1@example.org", size,
	                                         "imap:INBOX:5:1"),
	                 1);
	assert_int_equal(lstore_has_remote(f->store, "work", "imap:INBOX:5:1"), 1);
	assert_int_equal(lstore_has_remote(f->store, "home", "imap:INBOX:5:1"), 0);
	assert_int_equal(lstore_match_message_id(f->store, "work", "INBOX", "m1@example.org", size,
	                                         "imap:INBOX:5:1"),
	                 1);
	assert_int_equal(lstore_list(f->store, NULL, NULL, NULL), 1);
}

static void
test_null_remote_keys(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 3; i++)
		assert_int_equal(add_message(f->store, msg_report, "", "Sent", NULL, 0, NULL), 1);
	assert_int_equal(lstore_list(f->store, NULL, NULL, NULL), 3);
}

static void
test_abort(void **state)
{
	struct fixture *f = *state;
	struct lstore_new *n = NULL;
	char error[256];
	int fd;

	assert_int_equal(lstore_new_begin(f->store, &n, &fd, error, sizeof(error)), 0);
	assert_int_equal(write(fd, "partial", 7), 7);
	assert_int_equal(count_files(f->home, "tmp"), 1);
	lstore_new_abort(&n);
	assert_null(n);
	assert_int_equal(count_files(f->home, "tmp"), 0);
	lstore_new_abort(&n);
}

static void
test_hostile_folder_name(void **state)
{
	struct fixture *f = *state;
	struct lstore_message m;
	char real[4200], home[4200];
	int slashes = 0;
	int64_t id;

	assert_int_equal(add_message(f->store, msg_report, "../..", "../../../etc", "k", 0, &id),
	                 1);
	assert_int_equal(lstore_get(f->store, id, &m), 1);
	assert_string_equal(m.folder, "../../../etc");
	assert_string_equal(m.account, "../..");
	assert_non_null(realpath(m.path, real));
	assert_non_null(realpath(f->home, home));
	strcat(home, "/mail/");
	assert_int_equal(strncmp(real, home, strlen(home)), 0);
	/* Exactly account/folder/file below mail/. */
	for (const char *p = real + strlen(home); *p != '\0'; p++)
		slashes += *p == '/';
	assert_int_equal(slashes, 2);
	assert_int_equal(count_files(f->home, "mail"), 1);
}

static void
test_list_order(void **state)
{
	struct fixture *f = *state;
	struct collected c = {{0}, 0};

	assert_int_equal(lstore_list(f->store, NULL, collect_cb, &c), 5);
	assert_int_equal(c.ids[0], f->ids[2]);
	assert_int_equal(c.ids[1], f->ids[0]);
	assert_int_equal(c.ids[2], f->ids[1]);
	assert_int_equal(c.ids[3], f->ids[3]);
	assert_int_equal(c.ids[4], f->ids[4]);
}

static void
test_list_filters(void **state)
{
	struct fixture *f = *state;
	struct lstore_filter filter = {0};
	struct collected c = {{0}, 0};

	filter.account = "work";
	assert_int_equal(lstore_list(f->store, &filter, collect_cb, &c), 2);
	assert_int_equal(c.ids[0], f->ids[0]);
	filter.account = "home";
	filter.folder = "INBOX";
	assert_int_equal(lstore_list(f->store, &filter, NULL, NULL), 1);
	filter.account = NULL;
	assert_int_equal(lstore_list(f->store, &filter, NULL, NULL), 3);
	filter.folder = NULL;
	filter.unread_only = true;
	assert_int_equal(lstore_list(f->store, &filter, NULL, NULL), 3);
	filter.unread_only = false;
	filter.limit = 2;
	c.n = 0;
	assert_int_equal(lstore_list(f->store, &filter, collect_cb, &c), 2);
	assert_int_equal(c.ids[0], f->ids[2]);
	assert_int_equal(c.ids[1], f->ids[0]);
	filter.account = "nobody";
	assert_int_equal(lstore_list(f->store, &filter, NULL, NULL), 0);
}

static void
test_flags(void **state)
{
	struct fixture *f = *state;
	struct lstore_filter unread = {.unread_only = true};
	struct lstore_message m;

	assert_int_equal(
	    lstore_set_flags(f->store, f->ids[0], LSTORE_FLAG_SEEN | LSTORE_FLAG_FLAGGED, 0), 1);
	assert_int_equal(lstore_get(f->store, f->ids[0], &m), 1);
	assert_int_equal(m.flags, LSTORE_FLAG_SEEN | LSTORE_FLAG_FLAGGED);
	assert_int_equal(lstore_list(f->store, &unread, NULL, NULL), 2);
	assert_int_equal(
	    lstore_set_flags(f->store, f->ids[0], LSTORE_FLAG_ANSWERED, LSTORE_FLAG_SEEN), 1);
	assert_int_equal(lstore_get(f->store, f->ids[0], &m), 1);
	assert_int_equal(m.flags, LSTORE_FLAG_FLAGGED | LSTORE_FLAG_ANSWERED);
	assert_int_equal(lstore_list(f->store, &unread, NULL, NULL), 3);
	assert_int_equal(lstore_set_flags(f->store, 999999, LSTORE_FLAG_SEEN, 0), 0);
}

/* One search and the ids it must return, newest first (-1 ends the list). */
struct search_case {
	const char *name;
	const char *query;
	int expect[6]; /* indexes into fixture ids */
};

static const struct search_case search_cases[] = {
    {"search_from", "from:alice", {0, 3, -1}},
    {"search_from_case", "from:ALICE@EXAMPLE", {0, 3, -1}},
    {"search_from_decoded", "from:jörg", {1, -1}},
    {"search_to", "to:billing", {3, -1}},
    {"search_subject", "subject:report", {0, -1}},
    {"search_subject_quoted", "subject:\"quarterly report\"", {0, -1}},
    {"search_subject_unicode_case", "subject:GRÜSSE", {1, -1}},
    {"search_subject_unicode", "subject:GRÜẞE", {1, -1}},
    {"search_before", "before:2025-01-01", {3, -1}},
    {"search_after", "after:2025-07-01", {2, 0, -1}},
    {"search_after_before", "after:2025-06-01 before:2025-07-01", {1, -1}},
    {"search_has_attachment", "has:attachment", {3, -1}},
    {"search_is_unread", "is:unread", {2, 0, 4, -1}},
    {"search_is_read", "is:read", {1, 3, -1}},
    {"search_folder", "folder:archive", {2, -1}},
    {"search_account", "account:home", {2, 4, -1}},
    {"search_free_body", "lazy", {0, -1}},
    {"search_free_html_alternative", "zebracorn", {2, -1}},
    {"search_free_html_only", "platypus", {4, -1}},
    {"search_free_script_not_indexed", "scriptword", {-1}},
    {"search_free_rfc2047_subject", "Grüße", {1, -1}},
    {"search_free_diacritics", "koln", {1, -1}},
    {"search_free_header", "billing", {3, -1}},
    {"search_phrase", "\"quick brown fox\"", {0, -1}},
    {"search_phrase_order", "\"brown quick\"", {-1}},
    {"search_and", "quick lazy", {0, -1}},
    {"search_and_none", "quick zebracorn", {-1}},
    {"search_prefix", "zebra*", {2, -1}},
    {"search_mixed", "from:alice invoice has:attachment", {3, -1}},
    {"search_case_fields", "FROM:alice IS:UNREAD", {0, -1}},
    {"search_injection_subject", "subject:\"x' OR 1=1 --\"", {3, -1}},
    {"search_injection_none", "subject:\"' OR '1'='1\"", {-1}},
    {"search_injection_fts", "\"a\" OR \"b\" NEAR(x y) ^lazy", {-1}},
    {"search_fts_syntax_chars", "lazy) (* ^dog -fox +x", {-1}},
    {"search_fts_quote_inside", "la\"zy", {-1}},
    {"search_punctuation_only", "lazy ... --", {0, -1}},
    {"search_sql_comment", "quick'; DROP TABLE messages; --", {-1}},
};

static void
test_search_case(void **state)
{
	const struct search_case *c = *state;
	struct fixture *f;
	struct collected got = {{0}, 0};
	char error[256] = "";
	int n = 0, ret;

	assert_int_equal(filled_setup((void **)&f), 0);
	ret = lstore_search(f->store, c->query, 0, collect_cb, &got, error, sizeof(error));
	if (ret < 0)
		print_message("# %s: %s\n", c->query, error);
	while (c->expect[n] >= 0)
		n++;
	assert_int_equal(ret, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(got.ids[i], f->ids[c->expect[i]]);
	/* Whatever the query, the store is intact. */
	assert_int_equal(lstore_list(f->store, NULL, NULL, NULL), 5);
	fixture_teardown((void **)&f);
}

struct bad_query {
	const char *name;
	const char *query;
	const char *error;
};

static const struct bad_query bad_queries[] = {
    {"bad_unknown_field", "form:alice", "unknown field 'form:'; fields are from:"},
    {"bad_body_field", "body:x", "unknown field 'body:'"},
    {"bad_date_month", "before:2025-13-01", "bad date '2025-13-01' for 'before:'"},
    {"bad_date_day", "after:2025-02-29", "bad date '2025-02-29'"},
    {"bad_date_word", "after:yesterday", "use YYYY-MM-DD"},
    {"bad_date_short", "before:2025-1-1", "bad date"},
    {"bad_date_quoted_junk", "before:\"2025-01-01 x\"", "bad date"},
    {"bad_unterminated", "subject:\"open", "unterminated quote"},
    {"bad_unterminated_phrase", "\"open phrase", "unterminated quote"},
    {"bad_missing_value", "from:", "missing value after 'from:'"},
    {"bad_missing_quoted_value", "from:\"\"", "missing value"},
    {"bad_has", "has:pictures", "unknown value 'has:pictures'"},
    {"bad_is", "is:deleted", "unknown value 'is:deleted'"},
    {"bad_empty", "", "empty query"},
    {"bad_blank", "   \t ", "empty query"},
    {"bad_punctuation", "...", "empty query"},
    {"bad_utf8", "from:\xc3", "not valid UTF-8"},
};

static void
test_bad_query(void **state)
{
	const struct bad_query *c = *state;
	struct fixture *f;
	char error[256] = "";

	assert_int_equal(filled_setup((void **)&f), 0);
	assert_int_equal(lstore_search(f->store, c->query, 0, NULL, NULL, error, sizeof(error)),
	                 -1);
	if (strstr(error, c->error) == NULL)
		print_message("# got error: %s\n", error);
	assert_non_null(strstr(error, c->error));
	fixture_teardown((void **)&f);
}

static void
test_search_limit(void **state)
{
	struct fixture *f = *state;
	struct collected c = {{0}, 0};
	char error[256];

	assert_int_equal(
	    lstore_search(f->store, "to:alice", 1, collect_cb, &c, error, sizeof(error)), 1);
	assert_int_equal(c.ids[0], f->ids[2]);
}

static void
test_search_long_query(void **state)
{
	struct fixture *f = *state;
	char error[256] = "";
	char *q = malloc(70 * 3 + 1);

	q[0] = '\0';
	for (int i = 0; i < 70; i++)
		strcat(q, "ab ");
	assert_int_equal(lstore_search(f->store, q, 0, NULL, NULL, error, sizeof(error)), -1);
	assert_non_null(strstr(error, "too many terms"));
	free(q);
}

static void
test_reopen(void **state)
{
	struct fixture *f = *state;
	struct collected c = {{0}, 0};
	struct lstore_message m;
	char error[256];

	assert_int_equal(lstore_set_flags(f->store, f->ids[4], LSTORE_FLAG_FLAGGED, 0), 1);
	lstore_close(&f->store);
	assert_null(f->store);
	assert_int_equal(lstore_open(f->home, &f->store, error, sizeof(error)), 0);
	assert_int_equal(lstore_list(f->store, NULL, collect_cb, &c), 5);
	assert_int_equal(c.ids[0], f->ids[2]);
	assert_int_equal(lstore_get(f->store, f->ids[4], &m), 1);
	assert_int_equal(m.flags, LSTORE_FLAG_FLAGGED);
	assert_int_equal(lstore_search(f->store, "zebracorn", 0, NULL, NULL, error, sizeof(error)),
	                 1);
	assert_int_equal(lstore_has_remote(f->store, "work", "pop3:2"), 1);
	assert_int_equal(add_message(f->store, msg_gruss, "work", "INBOX", "pop3:2", 0, NULL), 0);
	assert_int_equal(count_files(f->home, "mail"), 5);
}

static void
test_tmp_leftover_removed(void **state)
{
	struct fixture *f = *state;
	struct lstore *other = NULL;
	struct lstore_new *live = NULL;
	struct timespec old[2] = {{0, 0}, {0, 0}};
	char path[700], error[256];
	int fd, livefd;

	/* A crashed writer's file, an hour old and unlocked. */
	snprintf(path, sizeof(path), "%s/tmp/1.2.3.deadbeef", f->home);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "half", 4), 4);
	close(fd);
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 3600;
	assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
	/* A live writer's file, also old, but locked. */
	assert_int_equal(lstore_new_begin(f->store, &live, &livefd, error, sizeof(error)), 0);
	assert_int_equal(futimens(livefd, old), 0);
	assert_int_equal(count_files(f->home, "tmp"), 2);
	assert_int_equal(lstore_open(f->home, &other, error, sizeof(error)), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_files(f->home, "tmp"), 1);
	lstore_close(&other);
	lstore_new_abort(&live);
	assert_int_equal(count_files(f->home, "tmp"), 0);
}

static void
test_failed_insert_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	char db_path[700];
	sqlite3 *db = NULL;

	assert_int_equal(add_message(f->store, msg_report, "work", "INBOX", "pop3:1", 0, NULL), 1);
	/* Another connection makes the next insert fail after the file was renamed into place. */
	snprintf(db_path, sizeof(db_path), "%s/index.db", f->home);
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "CREATE TRIGGER fail_insert BEFORE INSERT ON messages "
	                              "WHEN NEW.remote_key = 'pop3:boom' BEGIN "
	                              "SELECT RAISE(ABORT, 'simulated crash'); END;",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(add_message(f->store, msg_gruss, "work", "INBOX", "pop3:boom", 0, NULL),
	                 -1);
	assert_int_equal(lstore_list(f->store, NULL, NULL, NULL), 1);
	assert_int_equal(lstore_has_remote(f->store, "work", "pop3:boom"), 0);
	assert_int_equal(count_files(f->home, "mail"), 1);
	assert_int_equal(count_files(f->home, "tmp"), 0);
	{
		char error[256];
		assert_int_equal(
		    lstore_search(f->store, "bald", 0, NULL, NULL, error, sizeof(error)), 0);
	}
}

static void
test_open_bad_home(void **state)
{
	struct lstore *store = NULL;
	char error[256] = "";
	char path[700];
	int fd;

	snprintf(path, sizeof(path), "%s/a-file", test_root);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(lstore_open(path, &store, error, sizeof(error)), -1);
	assert_null(store);
	assert_true(error[0] != '\0');
}

static int
group_setup(void **state)
{
	return mkdtemp(test_root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_root);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
	    cmocka_unit_test_setup_teardown(test_add_and_get, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_add_attachment_flag, fixture_setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_remote_key, fixture_setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_null_remote_keys, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_message_id_alias, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_abort, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_folder_name, fixture_setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_list_order, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_list_filters, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_flags, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_search_limit, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_search_long_query, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_reopen, filled_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_tmp_leftover_removed, fixture_setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_insert_leaves_nothing, fixture_setup,
	                                    fixture_teardown),
	    cmocka_unit_test(test_open_bad_home),
	};
	size_t nsearch = sizeof(search_cases) / sizeof(search_cases[0]);
	size_t nbad = sizeof(bad_queries) / sizeof(bad_queries[0]);
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(nfixed + nsearch + nbad, sizeof(*tests));
	size_t n = 0;
	int ret;

	memcpy(tests, fixed, sizeof(fixed));
	n = nfixed;
	/* One named test per table row. */
	for (size_t i = 0; i < nsearch; i++, n++) {
		tests[n].name = search_cases[i].name;
		tests[n].test_func = test_search_case;
		tests[n].initial_state = (void *)&search_cases[i];
	}
	for (size_t i = 0; i < nbad; i++, n++) {
		tests[n].name = bad_queries[i].name;
		tests[n].test_func = test_bad_query;
		tests[n].initial_state = (void *)&bad_queries[i];
	}
	ret = _cmocka_run_group_tests("localstore", tests, n, group_setup, group_teardown);
	free(tests);
	return ret;
}
