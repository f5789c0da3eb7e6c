/* ternd mail import: bulk import of mbox files and Maildirs into a mailbox.
 *
 * Each message becomes a blob written as it is read (mbox: "From " lines cut messages, ">From"
 * unescaped; Maildir: the file's bytes), groups of STORE_GROUP_MAX go to
 * store_blob_commit_group() after one syncfs for the group, and the store's pipeline (started by
 * store_import_start(), nothing swept) parses, fsyncs and commits them as it does deliveries: a
 * message is visible only once its file and its row (summary, MIME structure) are durable, and
 * every group waiting goes into one transaction with one directory fsync. A crash or kill leaves
 * whole groups imported or not at all; the leftovers in tmp/ and mail/ are removed when the
 * daemon next starts. It may run while the daemon runs (SQLite serializes the two writers);
 * sessions see the messages at their next SELECT (no event reaches a running daemon from
 * another process yet).
 * Exit codes: 0 done, 1 error (said on stderr), 2 usage. */
#include "ternd/ternd.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "mime/mbox.h"
#include "store/store.h"

#define IMPORT_INFLIGHT (2 * STORE_GROUP_MAX) /* messages handed over, not yet committed */
#define IMPORT_PROGRESS 10000                 /* messages between two progress lines */
#define IMPORT_CHUNK 65536

static const char import_usage[] =
    "usage: ternd mail import USER [--mailbox NAME] [--json] [--progress N] PATH...\n"
    "  Appends every message of each PATH to USER's mailbox (default INBOX; created when it\n"
    "  does not exist). A PATH is an mbox file (mboxrd or mboxo: messages start at \"From \"\n"
    "  lines, \">From \" lines are unescaped, Status:/X-Status: give the flags) or a Maildir\n"
    "  (cur/ and new/, in file name order; the :2, flags S R F T D become \\Seen \\Answered\n"
    "  \\Flagged \\Deleted \\Draft, the letters a-z the keywords dovecot-keywords names; the\n"
    "  file's time is the internal date). Messages are committed as deliveries are, in\n"
    "  groups of 256: a kill leaves whole messages or none; running it again imports them\n"
    "  again. It may run while ternd serves; open sessions see the messages when they next\n"
    "  SELECT. Progress goes to stderr every N messages (default 10000, 0 for none); --json\n"
    "  prints a summary object.\n";

struct import_source {
	const char *path;
	bool maildir;
	uint64_t messages;
};

struct import {
	struct store *store;
	struct event_base *base;
	int64_t account_id;
	const char *mailbox;
	/* the group being filled */
	struct store_blob *blobs[STORE_GROUP_MAX];
	struct store_delivery deliveries[STORE_GROUP_MAX];
	struct store_target targets[STORE_GROUP_MAX];
	void *args[STORE_GROUP_MAX];
	char keywords[STORE_GROUP_MAX][STORE_KEYWORDS_MAX];
	size_t n;
	/* the message being read */
	struct store_blob *cur;
	uint32_t cur_flags;
	int64_t cur_date;
	char cur_keywords[STORE_KEYWORDS_MAX];
	/* Maildir: the keywords of dovecot-keywords by letter (a-z), "" when none or invalid */
	char maildir_keywords[26][STORE_KEYWORD_MAX + 1];
	/* counts */
	size_t inflight;
	uint64_t submitted, imported, failed, bytes;
	uint32_t first_uid, last_uid;
	unsigned progress;
	uint64_t next_progress;
	int64_t start_us;
	char error[PATH_MAX + 512]; /* the first failure; import stops */
};

/* Commit callback, on this thread (the workers' loop): counts, and keeps the first error. */
static void
import_done(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct import *imp = arg;

	imp->inflight--;
	if (!ok) {
		imp->failed++;
		if (imp->error[0] == '\0')
			snprintf(imp->error, sizeof(imp->error), "commit failed: %s", error);
		return;
	}
	imp->imported++;
	if (imp->first_uid == 0 || results[0].uid < imp->first_uid)
		imp->first_uid = results[0].uid;
	if (results[0].uid > imp->last_uid)
		imp->last_uid = results[0].uid;
	if (imp->progress > 0 && imp->imported >= imp->next_progress) {
		double s = (double)(time_mono_usec() - imp->start_us) / 1e6;
		fprintf(stderr, "ternd: import: %" PRIu64 " messages in %.1f s (%.0f/s)\n",
		        imp->imported, s, s > 0 ? (double)imp->imported / s : 0.0);
		imp->next_progress += imp->progress;
	}
}

/* Runs the loop until at most max messages are in flight. */
static void
import_wait(struct import *imp, size_t max)
{
	while (imp->inflight > max)
		event_base_loop(imp->base, EVLOOP_ONCE);
}

/* Hands the group over: one syncfs for its files, then the pipeline. */
static void
import_flush(struct import *imp)
{
	if (imp->n == 0)
		return;
	if (store_import_sync(imp->store) < 0 && imp->error[0] == '\0')
		snprintf(imp->error, sizeof(imp->error), "syncfs: %s", strerror(errno));
	if (imp->error[0] != '\0') {
		for (size_t i = 0; i < imp->n; i++)
			store_blob_abort(&imp->blobs[i]);
		imp->n = 0;
		return;
	}
	for (size_t i = 0; i < imp->n; i++)
		imp->args[i] = imp;
	imp->inflight += imp->n;
	imp->submitted += imp->n;
	store_blob_commit_group(imp->store, imp->blobs, imp->deliveries, imp->n, import_done,
	                        imp->args);
	imp->n = 0;
	import_wait(imp, IMPORT_INFLIGHT);
}

static int
import_begin(struct import *imp, int64_t date)
{
	char error[256];

	if (store_blob_new(imp->store, &imp->cur, error, sizeof(error)) < 0) {
		snprintf(imp->error, sizeof(imp->error), "%s", error);
		return -1;
	}
	imp->cur_flags = 0;
	imp->cur_keywords[0] = '\0';
	imp->cur_date = date > 0 ? date : time_now();
	return 0;
}

static int
import_write(struct import *imp, const void *data, size_t len)
{
	if (store_blob_write(imp->cur, data, len) == 0)
		return 0;
	snprintf(imp->error, sizeof(imp->error), "writing a message: %s", strerror(errno));
	return -1;
}

/* The message is complete: it joins the group, which goes when full. */
static void
import_end(struct import *imp, struct import_source *src)
{
	size_t i = imp->n++;

	imp->bytes += store_blob_size(imp->cur);
	memcpy(imp->keywords[i], imp->cur_keywords, sizeof(imp->keywords[i]));
	imp->targets[i] = (struct store_target){.account_id = imp->account_id,
	                                        .mailbox = imp->mailbox,
	                                        .flags = imp->cur_flags,
	                                        .rcpt = "",
	                                        .keywords = imp->keywords[i]};
	imp->deliveries[i] = (struct store_delivery){.mail_from = "",
	                                             .internal_date = imp->cur_date,
	                                             .targets = &imp->targets[i],
	                                             .ntargets = 1};
	imp->blobs[i] = imp->cur;
	imp->cur = NULL;
	src->messages++;
	if (imp->n == STORE_GROUP_MAX)
		import_flush(imp);
}

/* --- mbox --- */

struct import_mbox {
	struct import *imp;
	struct import_source *src;
};

static int
import_mbox_begin(int64_t date, void *arg)
{
	struct import_mbox *m = arg;

	return import_begin(m->imp, date);
}

static int
import_mbox_data(const char *buf, size_t len, void *arg)
{
	struct import_mbox *m = arg;

	return import_write(m->imp, buf, len);
}

static int
import_mbox_end(uint32_t flags, void *arg)
{
	static const struct {
		uint32_t mbox, store;
	} map[] = {
	    {MBOX_SEEN, STORE_FLAG_SEEN},       {MBOX_ANSWERED, STORE_FLAG_ANSWERED},
	    {MBOX_FLAGGED, STORE_FLAG_FLAGGED}, {MBOX_DELETED, STORE_FLAG_DELETED},
	    {MBOX_DRAFT, STORE_FLAG_DRAFT},
	};
	struct import_mbox *m = arg;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (flags & map[i].mbox)
			m->imp->cur_flags |= map[i].store;
	import_end(m->imp, m->src);
	return m->imp->error[0] != '\0' ? -1 : 0;
}

/* Reads an mbox file through the mbox reader (mime/mbox.c). */
static int
import_mbox(struct import *imp, struct import_source *src)
{
	static const struct mbox_callbacks cb = {import_mbox_begin, import_mbox_data,
	                                         import_mbox_end};
	struct import_mbox m = {imp, src};
	struct mbox_reader *reader;
	char *buf;
	ssize_t got;
	int fd, rc = 0;

	fd = open(src->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(imp->error, sizeof(imp->error), "cannot open %s: %s", src->path,
		         strerror(errno));
		return -1;
	}
	buf = xmalloc(IMPORT_CHUNK);
	reader = mbox_reader_new(&cb, &m);
	while (rc == 0 && (got = read(fd, buf, IMPORT_CHUNK)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(imp->error, sizeof(imp->error), "reading %s: %s", src->path,
			         strerror(errno));
			rc = -1;
			break;
		}
		rc = mbox_reader_feed(reader, buf, (size_t)got);
	}
	if (rc == 0)
		rc = mbox_reader_finish(reader);
	if (rc == -2)
		snprintf(imp->error, sizeof(imp->error),
		         "%s is not an mbox file (it does not start with a \"From \" line)",
		         src->path);
	store_blob_abort(&imp->cur);
	mbox_reader_free(&reader);
	free(buf);
	close(fd);
	return rc < 0 ? -1 : 0;
}

/* --- Maildir --- */

struct import_entry {
	char *name; /* "cur/<name>" or "new/<name>" */
};

static int
import_entry_cmp(const void *a, const void *b)
{
	const struct import_entry *x = a, *y = b;

	/* By the file name itself (it starts with the delivery time), not by cur/new. */
	return strcmp(x->name + 4, y->name + 4);
}

/* Maildir flags after ":2," (or "!2,", as some systems write): S R F T D, and the letters a-z
 * of the keywords dovecot-keywords names. Sets the current message's flags and keywords. */
static void
import_maildir_info(struct import *imp, const char *name)
{
	const char *info = strstr(name, ":2,");
	char list[STORE_KEYWORDS_MAX], error[200];
	size_t len = 0;

	if (info == NULL)
		info = strstr(name, "!2,");
	if (info == NULL || strncmp(name, "cur/", 4) != 0)
		return;
	list[0] = '\0';
	for (const char *p = info + 3; *p != '\0'; p++) {
		switch (*p) {
		case 'S':
			imp->cur_flags |= STORE_FLAG_SEEN;
			break;
		case 'R':
			imp->cur_flags |= STORE_FLAG_ANSWERED;
			break;
		case 'F':
			imp->cur_flags |= STORE_FLAG_FLAGGED;
			break;
		case 'T':
			imp->cur_flags |= STORE_FLAG_DELETED;
			break;
		case 'D':
			imp->cur_flags |= STORE_FLAG_DRAFT;
			break;
		default:
			if (*p >= 'a' && *p <= 'z' && imp->maildir_keywords[*p - 'a'][0] != '\0' &&
			    len < sizeof(list))
				len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
				                        len > 0 ? " " : "",
				                        imp->maildir_keywords[*p - 'a']);
			break;
		}
	}
	/* Too many for a message (a delivery would be refused): the message comes without them. */
	if (len >= sizeof(list) ||
	    store_import_keywords(list, imp->cur_keywords, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd: %s: keywords left out (%s)\n", name,
		        len >= sizeof(list) ? "too many" : error);
		imp->cur_keywords[0] = '\0';
	}
}

/* Reads MAILDIR/dovecot-keywords ("N keyword" lines, N 0-25 for the letters a-z); a keyword a
 * delivery would refuse is left out with a warning. No file: no keywords. */
static void
import_maildir_keywords(struct import *imp, const char *path)
{
	char file[PATH_MAX], line[512], kw[STORE_KEYWORDS_MAX], error[200];
	FILE *fp;

	memset(imp->maildir_keywords, 0, sizeof(imp->maildir_keywords));
	snprintf(file, sizeof(file), "%s/dovecot-keywords", path);
	fp = fopen(file, "r");
	if (fp == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *end, *name;
		long n = strtol(line, &end, 10);

		line[strcspn(line, "\r\n")] = '\0';
		if (end == line || *end != ' ' || n < 0 || n > 25)
			continue;
		name = end + 1;
		if (strchr(name, ' ') != NULL ||
		    store_import_keywords(name, kw, error, sizeof(error)) < 0 ||
		    strlen(kw) > STORE_KEYWORD_MAX) {
			fprintf(stderr, "ternd: %s: keyword \"%s\" left out (%s)\n", file, name,
			        strchr(name, ' ') != NULL ? "a space in it" : error);
			continue;
		}
		str_copy(imp->maildir_keywords[n], kw, sizeof(imp->maildir_keywords[n]));
	}
	fclose(fp);
}

/* Appends the entries of path/sub (files not starting with '.') to *entries. */
static int
import_maildir_list(struct import *imp, const char *path, const char *sub,
                    struct import_entry **entries, size_t *n, size_t *cap)
{
	char dirpath[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	snprintf(dirpath, sizeof(dirpath), "%s/%s", path, sub);
	dir = opendir(dirpath);
	if (dir == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(imp->error, sizeof(imp->error), "cannot read %s: %s", dirpath,
		         strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 1024;
			*entries = xrealloc(*entries, *cap * sizeof(**entries));
		}
		(*entries)[*n].name = xmalloc(strlen(de->d_name) + 5);
		snprintf((*entries)[*n].name, strlen(de->d_name) + 5, "%s/%s", sub, de->d_name);
		(*n)++;
	}
	closedir(dir);
	return 0;
}

/* Copies one Maildir file into a new message. */
static int
import_maildir_file(struct import *imp, struct import_source *src, const char *name, char *buf)
{
	char path[PATH_MAX];
	struct stat st;
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", src->path, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(imp->error, sizeof(imp->error), "cannot read %s: %s", path,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	if (import_begin(imp, (int64_t)st.st_mtime) < 0) {
		close(fd);
		return -1;
	}
	import_maildir_info(imp, name);
	while ((got = read(fd, buf, IMPORT_CHUNK)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(imp->error, sizeof(imp->error), "reading %s: %s", path,
			         strerror(errno));
			break;
		}
		if (import_write(imp, buf, (size_t)got) < 0)
			break;
	}
	close(fd);
	if (imp->error[0] != '\0') {
		store_blob_abort(&imp->cur);
		return -1;
	}
	import_end(imp, src);
	return 0;
}

static int
import_maildir(struct import *imp, struct import_source *src)
{
	struct import_entry *entries = NULL;
	size_t n = 0, cap = 0;
	char *buf = xmalloc(IMPORT_CHUNK);
	int ret = 0;

	import_maildir_keywords(imp, src->path);
	if (import_maildir_list(imp, src->path, "cur", &entries, &n, &cap) < 0 ||
	    import_maildir_list(imp, src->path, "new", &entries, &n, &cap) < 0)
		ret = -1;
	if (ret == 0 && n > 1)
		qsort(entries, n, sizeof(*entries), import_entry_cmp);
	for (size_t i = 0; i < n && ret == 0 && imp->error[0] == '\0'; i++)
		ret = import_maildir_file(imp, src, entries[i].name, buf);
	for (size_t i = 0; i < n; i++)
		free(entries[i].name);
	free(entries);
	free(buf);
	return imp->error[0] != '\0' ? -1 : ret;
}

/* --- command --- */

/* Says what PATH is before anything is imported: a Maildir, an mbox file, or an error. */
static int
import_check_source(struct import_source *src)
{
	char sub[PATH_MAX], head[5];
	struct stat st;
	ssize_t got;
	int fd;

	if (stat(src->path, &st) < 0) {
		fprintf(stderr, "ternd: cannot read %s: %s\n", src->path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		struct stat cur, new;
		snprintf(sub, sizeof(sub), "%s/cur", src->path);
		bool has_cur = stat(sub, &cur) == 0 && S_ISDIR(cur.st_mode);
		snprintf(sub, sizeof(sub), "%s/new", src->path);
		if (!has_cur && !(stat(sub, &new) == 0 && S_ISDIR(new.st_mode))) {
			fprintf(stderr,
			        "ternd: %s is a directory but not a Maildir (no cur/ or new/)\n",
			        src->path);
			return -1;
		}
		src->maildir = true;
		return 0;
	}
	fd = open(src->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ternd: cannot read %s: %s\n", src->path, strerror(errno));
		return -1;
	}
	got = read(fd, head, sizeof(head));
	close(fd);
	if (got == 0)
		return 0; /* an empty mbox: no messages */
	if (got != (ssize_t)sizeof(head) || memcmp(head, "From ", 5) != 0) {
		fprintf(
		    stderr,
		    "ternd: %s is not an mbox file (it does not start with a \"From \" line) nor "
		    "a Maildir\n",
		    src->path);
		return -1;
	}
	return 0;
}

/* Room for the blobs in flight: one descriptor each until its sync thread closes it. */
static void
import_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
import_report(const struct import *imp, const struct store_account *account,
              const struct import_source *srcs, size_t nsrcs, bool json)
{
	double s = (double)(time_mono_usec() - imp->start_us) / 1e6;
	double rate = s > 0 ? (double)imp->imported / s : 0.0;

	if (!json) {
		printf("imported %" PRIu64 " messages into %s of %s", imp->imported, imp->mailbox,
		       account->address);
		if (imp->imported > 0)
			printf(" (UIDs %" PRIu32 "-%" PRIu32 ")", imp->first_uid, imp->last_uid);
		printf(" in %.1f s (%.0f messages/s)\n", s, rate);
		return;
	}
	printf("{\"user\": ");
	json_write_string(stdout, account->address);
	printf(", \"mailbox\": ");
	json_write_string(stdout, imp->mailbox);
	printf(", \"imported\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"bytes\": %" PRIu64
	       ", \"first_uid\": %" PRIu32 ", \"last_uid\": %" PRIu32
	       ", \"seconds\": %.3f, \"messages_per_s\": %.1f, \"sources\": [",
	       imp->imported, imp->failed, imp->bytes, imp->first_uid, imp->last_uid, s, rate);
	for (size_t i = 0; i < nsrcs; i++) {
		printf("%s{\"path\": ", i > 0 ? ", " : "");
		json_write_string(stdout, srcs[i].path);
		printf(", \"format\": \"%s\", \"messages\": %" PRIu64 "}",
		       srcs[i].maildir ? "maildir" : "mbox", srcs[i].messages);
	}
	printf("]");
	if (imp->error[0] != '\0') {
		printf(", \"error\": ");
		json_write_string(stdout, imp->error);
	}
	printf("}\n");
}

/* Opens the store, finds the user, makes the mailbox if needed, runs the import. */
static int
import_run(struct ternd_ctx *ctx, const char *user, struct import *imp, struct import_source *srcs,
           size_t nsrcs, bool json)
{
	struct store_account account;
	struct store_mailbox mbox;
	struct workers *workers = NULL;
	char error[512];
	int rc, ret = 1;

	if (ternd_open_store(ctx, &imp->store) < 0)
		return 1;
	rc = store_account_lookup(imp->store, user, &account);
	if (rc <= 0) {
		fprintf(stderr,
		        rc == 0 ? "ternd: no such user %s\n"
		                : "ternd: cannot look %s up in the store\n",
		        user);
		goto out;
	}
	imp->account_id = account.id;
	rc = store_mailbox_get(imp->store, account.id, imp->mailbox, &mbox);
	if (rc == 0)
		rc = store_mailbox_create(imp->store, account.id, imp->mailbox, NULL, error,
		                          sizeof(error));
	if (rc < 0) {
		fprintf(stderr, "ternd: mailbox %s of %s: %s\n", imp->mailbox, account.address,
		        rc == -1 ? error : "busy, try again");
		goto out;
	}
	if (evthread_use_pthreads() < 0 || (imp->base = event_base_new()) == NULL) {
		fprintf(stderr, "ternd: cannot make an event loop\n");
		goto out;
	}
	workers = workers_new(imp->base, 1);
	if (store_import_start(imp->store, workers, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd: %s\n", error);
		goto out;
	}
	import_raise_nofile();
	imp->start_us = time_mono_usec();
	imp->next_progress = imp->progress;
	for (size_t i = 0; i < nsrcs && imp->error[0] == '\0'; i++) {
		if (srcs[i].maildir)
			import_maildir(imp, &srcs[i]);
		else
			import_mbox(imp, &srcs[i]);
	}
	import_flush(imp);
	import_wait(imp, 0);
	import_report(imp, &account, srcs, nsrcs, json);
	if (imp->error[0] != '\0') {
		fprintf(stderr, "ternd: import stopped: %s (%" PRIu64 " messages imported)\n",
		        imp->error, imp->imported);
		goto out;
	}
	ret = 0;
out:
	/* Commits in flight end first (store_free waits for them); their callbacks then run. */
	store_free(&imp->store);
	if (workers != NULL) {
		workers_free(&workers);
	}
	if (imp->base != NULL)
		event_base_free(imp->base);
	if (fflush(stdout) != 0 && errno != EPIPE)
		ret = 1;
	return ret;
}

int
cmd_mail_import(int argc, char **argv)
{
	struct ternd_ctx ctx;
	struct import_source *srcs;
	struct import *imp;
	const char *user = NULL;
	size_t nsrcs = 0;
	bool json = false;
	int ret = 2;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(import_usage, stdout);
			return 0;
		}
	}
	if (ternd_ctx_load(&argc, argv, &ctx) < 0)
		return 1;
	imp = xcalloc(1, sizeof(*imp));
	imp->mailbox = "INBOX";
	imp->progress = IMPORT_PROGRESS;
	srcs = xcalloc((size_t)argc, sizeof(*srcs));
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--mailbox") == 0 && i + 1 < argc) {
			imp->mailbox = argv[++i];
		} else if (strncmp(a, "--mailbox=", 10) == 0) {
			imp->mailbox = a + 10;
		} else if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--progress") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || argv[i][0] == '\0' || v > UINT32_MAX) {
				fprintf(stderr, "ternd: --progress needs a number of messages\n");
				goto usage;
			}
			imp->progress = (unsigned)v;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "ternd: mail import: unknown option or missing value %s\n",
			        a);
			goto usage;
		} else if (user == NULL) {
			user = a;
		} else {
			srcs[nsrcs++].path = a;
		}
	}
	if (user == NULL || nsrcs == 0) {
		fprintf(stderr, "ternd: mail import: %s\n",
		        user == NULL ? "missing USER and PATH" : "missing PATH");
		goto usage;
	}
	if (imp->mailbox[0] == '\0') {
		fprintf(stderr, "ternd: --mailbox needs a name\n");
		goto usage;
	}
	ret = 1;
	for (size_t i = 0; i < nsrcs; i++) {
		if (import_check_source(&srcs[i]) < 0)
			goto out;
	}
	ret = import_run(&ctx, user, imp, srcs, nsrcs, json);
	goto out;
usage:
	fputs(import_usage, stderr);
out:
	free(srcs);
	free(imp);
	ternd_ctx_free(&ctx);
	return ret;
}
