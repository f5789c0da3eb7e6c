/* tern import and export: .eml files and mbox in and out of the local store. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "tern/cli.h"
#include "tern/localstore.h"
#include "tern/tern.h"

#define IMPORT_MAX_DEPTH 64

static const char import_usage[] =
    "usage: tern import FILE.eml|DIR... [--folder NAME]\n"
    "  Copies messages into the local store (folder INBOX unless --folder). A directory is\n"
    "  searched recursively for *.eml files. A file that is not a message (nothing with a\n"
    "  header) is reported and skipped. Importing the same file twice stores it twice.\n";

static const char export_usage[] =
    "usage: tern export [--folder NAME] [--account NAME] DIR\n"
    "       tern export [--folder NAME] [--account NAME] --mbox FILE\n"
    "  Copies stored messages out: into DIR as ID.eml (the bytes exactly as stored), or\n"
    "  into one new mbox FILE ('-' for stdout) with From_ lines, LF line endings and\n"
    "  mboxrd >From quoting. An existing mbox FILE is not overwritten.\n";

struct import_ctx {
	struct lstore *store;
	const char *folder;
	unsigned imported, skipped, failed;
};

/* True when GMime finds a message with at least one header in the file. */
static bool
import_is_message(int fd)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *message;
	bool ok = false;
	int copy = dup(fd);

	if (copy < 0)
		return false;
	stream = g_mime_stream_fs_new(copy);
	parser = g_mime_parser_new_with_stream(stream);
	message = g_mime_parser_construct_message(parser, NULL);
	if (message != NULL) {
		GMimeHeaderList *headers = g_mime_object_get_header_list(GMIME_OBJECT(message));
		ok = headers != NULL && g_mime_header_list_get_count(headers) > 0;
		g_object_unref(message);
	}
	g_object_unref(parser);
	g_object_unref(stream);
	return ok;
}

/* Copies the rest of in to out. Returns 0 or -1 (errno set). */
static int
import_copy_fd(int in, int out)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (write_full(out, buf, (size_t)n) < 0)
			return -1;
	}
	return 0;
}

/* Imports one file; problems are reported on stderr and counted. */
static void
import_file(struct import_ctx *ctx, const char *path)
{
	struct lstore_source source = {.account = "", .folder = ctx->folder};
	struct lstore_new *nw = NULL;
	char error[512];
	int64_t id;
	int fd, out;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "tern import: %s: %s\n", path, strerror(errno));
		ctx->failed++;
		return;
	}
	if (!import_is_message(fd)) {
		fprintf(stderr, "tern import: %s: not a message (no headers), skipped\n", path);
		ctx->skipped++;
		close(fd);
		return;
	}
	if (lseek(fd, 0, SEEK_SET) < 0 ||
	    lstore_new_begin(ctx->store, &nw, &out, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern import: %s: %s\n", path,
		        nw == NULL ? error : strerror(errno));
		ctx->failed++;
		close(fd);
		return;
	}
	if (import_copy_fd(fd, out) < 0) {
		fprintf(stderr, "tern import: %s: %s\n", path, strerror(errno));
		lstore_new_abort(&nw);
		ctx->failed++;
		close(fd);
		return;
	}
	close(fd);
	if (lstore_new_commit(ctx->store, &nw, &source, &id, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern import: %s: %s\n", path, error);
		ctx->failed++;
		return;
	}
	ctx->imported++;
}

static bool
import_has_eml_suffix(const char *name)
{
	size_t len = strlen(name);

	return len > 4 && strcasecmp(name + len - 4, ".eml") == 0;
}

/* Imports every *.eml under dir, in name order, without following symbolic links to
 * directories (no loops). */
static void
import_dir(struct import_ctx *ctx, const char *dir, int depth)
{
	struct dirent **names;
	int n;

	if (depth > IMPORT_MAX_DEPTH) {
		fprintf(stderr, "tern import: %s: too deep, skipped\n", dir);
		return;
	}
	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "tern import: %s: %s\n", dir, strerror(errno));
		ctx->failed++;
		return;
	}
	for (int i = 0; i < n; i++) {
		char *path;
		struct stat st;

		if (names[i]->d_name[0] == '.') {
			free(names[i]);
			continue;
		}
		path = xasprintf("%s/%s", dir, names[i]->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			import_dir(ctx, path, depth + 1);
		else if (import_has_eml_suffix(names[i]->d_name) && stat(path, &st) == 0 &&
		         S_ISREG(st.st_mode))
			import_file(ctx, path);
		free(path);
		free(names[i]);
	}
	free(names);
}

int
cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"folder", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct import_ctx ctx = {.folder = "INBOX"};
	struct tern_paths paths;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			ctx.folder = optarg;
			break;
		case 'h':
			fputs(import_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("import", argv, optind);
		}
	}
	if (optind >= argc) {
		fputs(import_usage, stderr);
		return CLI_USAGE;
	}
	if (cli_open_store("import", &paths, &ctx.store) < 0)
		return CLI_ERROR;
	for (int i = optind; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "tern import: %s: %s\n", argv[i], strerror(errno));
			ctx.failed++;
		} else if (S_ISDIR(st.st_mode)) {
			import_dir(&ctx, argv[i], 0);
		} else {
			import_file(&ctx, argv[i]);
		}
	}
	lstore_close(&ctx.store);
	printf("imported %u message%s", ctx.imported, ctx.imported == 1 ? "" : "s");
	if (ctx.skipped > 0)
		printf(", skipped %u file%s that %s", ctx.skipped, ctx.skipped == 1 ? "" : "s",
		       ctx.skipped == 1 ? "is not a message" : "are not messages");
	if (ctx.failed > 0)
		printf(", %u error%s", ctx.failed, ctx.failed == 1 ? "" : "s");
	printf("\n");
	if (ctx.failed > 0 || (ctx.imported == 0 && ctx.skipped > 0))
		return CLI_ERROR;
	return CLI_OK;
}

struct export_ctx {
	const char *dir; /* DIR for .eml files, or NULL */
	FILE *mbox;      /* the mbox being written, or NULL */
	unsigned exported;
	bool failed; /* stop at the first error */
	char error[PATH_MAX + 256];
};

/* The envelope sender for a From_ line: the address in From:, or MAILER-DAEMON. */
static void
export_envelope_sender(const char *from, char *out, size_t outsize)
{
	const char *lt = strrchr(from, '<');
	const char *start = lt != NULL ? lt + 1 : from;
	size_t len = strcspn(start, lt != NULL ? ">" : " \t");

	if (len == 0 || len >= outsize || memchr(start, '@', len) == NULL ||
	    strcspn(start, " \t") < len) {
		str_copy(out, "MAILER-DAEMON", outsize);
		return;
	}
	memcpy(out, start, len);
	out[len] = '\0';
}

/* Appends one message to the mbox: From_ line, CRLF made LF, ">From " quoting (mboxrd). */
static int
export_mbox_message(struct export_ctx *ctx, const struct lstore_message *m)
{
	char sender[320], date[64];
	time_t t = m->date != 0 ? (time_t)m->date : time(NULL);
	struct tm tm;
	FILE *in = fopen(m->path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (in == NULL)
		return -1;
	export_envelope_sender(m->from, sender, sizeof(sender));
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	fprintf(ctx->mbox, "From %s %s\n", sender, date);
	while ((len = getline(&line, &cap, in)) > 0) {
		size_t n = (size_t)len;
		size_t gt = strspn(line, ">");

		if (line[n - 1] == '\n') {
			n--;
			if (n > 0 && line[n - 1] == '\r')
				n--;
		}
		if (n - gt >= 5 && memcmp(line + gt, "From ", 5) == 0)
			fputc('>', ctx->mbox);
		fwrite(line, 1, n, ctx->mbox);
		fputc('\n', ctx->mbox);
	}
	free(line);
	fclose(in);
	fputc('\n', ctx->mbox);
	return ferror(ctx->mbox) ? -1 : 0;
}

/* Copies one message to DIR/ID.eml, exactly. */
static int
export_eml_message(struct export_ctx *ctx, const struct lstore_message *m)
{
	char *path = xasprintf("%s/%" PRId64 ".eml", ctx->dir, m->id);
	int in, out, ret = 0;

	in = open(m->path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		free(path);
		return -1;
	}
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0 || import_copy_fd(in, out) < 0)
		ret = -1;
	if (out >= 0 && close(out) < 0)
		ret = -1;
	if (ret < 0)
		snprintf(ctx->error, sizeof(ctx->error), "%s: %s", path, strerror(errno));
	close(in);
	free(path);
	return ret;
}

static void
export_cb(const struct lstore_message *m, void *arg)
{
	struct export_ctx *ctx = arg;
	int ret;

	if (ctx->failed)
		return;
	ctx->error[0] = '\0';
	ret = ctx->mbox != NULL ? export_mbox_message(ctx, m) : export_eml_message(ctx, m);
	if (ret < 0) {
		if (ctx->error[0] == '\0')
			snprintf(ctx->error, sizeof(ctx->error), "message %" PRId64 ": %s", m->id,
			         strerror(errno));
		ctx->failed = true;
		return;
	}
	ctx->exported++;
}

/* Opens the mbox target: stdout for "-", else a new file (never overwriting one). */
static FILE *
export_open_mbox(const char *path)
{
	int fd;
	FILE *fp;

	if (strcmp(path, "-") == 0)
		return stdout;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "tern export: %s: %s%s\n", path, strerror(errno),
		        errno == EEXIST ? " (an existing mbox is not overwritten)" : "");
		return NULL;
	}
	fp = fdopen(fd, "w");
	if (fp == NULL)
		close(fd);
	return fp;
}

int
cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"folder", required_argument, NULL, 'f'},
	    {"account", required_argument, NULL, 'a'},
	    {"mbox", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct lstore_filter filter = {0};
	struct export_ctx ctx = {0};
	struct tern_paths paths;
	struct lstore *store = NULL;
	const char *mbox = NULL;
	int c, n, ret = CLI_OK;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:a:m:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			filter.folder = optarg;
			break;
		case 'a':
			filter.account = optarg;
			break;
		case 'm':
			mbox = optarg;
			break;
		case 'h':
			fputs(export_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("export", argv, optind);
		}
	}
	if ((mbox == NULL && argc - optind != 1) || (mbox != NULL && argc - optind != 0)) {
		fputs(export_usage, stderr);
		return CLI_USAGE;
	}
	if (mbox == NULL) {
		ctx.dir = argv[optind];
		if (mkdir_p(ctx.dir, 0700) < 0) {
			fprintf(stderr, "tern export: cannot make %s: %s\n", ctx.dir,
			        strerror(errno));
			return CLI_ERROR;
		}
	}
	if (cli_open_store("export", &paths, &store) < 0)
		return CLI_ERROR;
	if (mbox != NULL && (ctx.mbox = export_open_mbox(mbox)) == NULL) {
		lstore_close(&store);
		return CLI_ERROR;
	}
	n = lstore_list(store, &filter, export_cb, &ctx);
	lstore_close(&store);
	if (ctx.mbox != NULL && ctx.mbox != stdout && fclose(ctx.mbox) != 0 && !ctx.failed) {
		snprintf(ctx.error, sizeof(ctx.error), "%s: %s", mbox, strerror(errno));
		ctx.failed = true;
	}
	if (n < 0) {
		fprintf(stderr, "tern export: cannot read the local index in %s\n", paths.data_dir);
		ret = CLI_ERROR;
	} else if (ctx.failed) {
		fprintf(stderr, "tern export: %s (stopped after %u messages)\n", ctx.error,
		        ctx.exported);
		ret = CLI_ERROR;
	}
	if (ret == CLI_OK)
		fprintf(mbox != NULL && strcmp(mbox, "-") == 0 ? stderr : stdout,
		        "exported %u message%s to %s\n", ctx.exported, ctx.exported == 1 ? "" : "s",
		        mbox != NULL ? (strcmp(mbox, "-") == 0 ? "stdout" : mbox) : ctx.dir);
	return ret;
}
