/* ternd mail: look at stored mail from the command line (list a mailbox, print a message).
 * Exit codes: 0 done, 1 error (said on stderr), 2 usage. */
#include "ternd/ternd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/util.h"
#include "store/store.h"

#define MAIL_FROM_WIDTH 30

static const char mail_list_usage[] =
    "usage: ternd mail list USER [--mailbox NAME] [--json]\n"
    "  Lists the messages of USER's mailbox (default INBOX) in UID order: UID, size,\n"
    "  date received (ISO 8601, UTC), sender and subject. --json prints an array of objects\n"
    "  with uid, size, size_crlf (the size as POP3/IMAP send it, bare LF counted as CRLF),\n"
    "  internal_date, date (the Date: header, null when absent), from, to, subject,\n"
    "  message_id, flags and has_attachments; times in ISO 8601 UTC.\n";

static const char mail_cat_usage[] =
    "usage: ternd mail cat USER UID [--mailbox NAME]\n"
    "  Writes the stored bytes of one message (default mailbox INBOX) to stdout, unchanged.\n";

static void
mail_usage(FILE *fp)
{
	fputs("usage: ternd mail COMMAND [ARGS] [--data-dir DIR | --config FILE]\n"
	      "\n"
	      "Commands:\n"
	      "  list USER [--mailbox NAME] [--json]   list the messages of a mailbox\n"
	      "  cat USER UID [--mailbox NAME]         print one message as stored\n"
	      "  import USER [--mailbox NAME] PATH...  import mbox files and Maildirs\n"
	      "\n"
	      "USER is an account address or one of its aliases. 'ternd mail COMMAND --help'\n"
	      "describes one command. Exit status: 0 done, 1 error, 2 usage.\n",
	      fp);
}

struct mail_args {
	const char *user;
	const char *uid;
	const char *mailbox;
	bool json;
};

/* Prints s cut to width characters (UTF-8 aware) and padded with spaces to width. */
static void
mail_print_column(const char *s, int width)
{
	const unsigned char *p = (const unsigned char *)s;
	int chars = 0;

	while (*p != '\0' && chars < width) {
		const unsigned char *start = p++;
		while ((*p & 0xC0) == 0x80)
			p++;
		if (chars == width - 1 && *p != '\0') {
			fputs("…", stdout);
			chars++;
			break;
		}
		fwrite(start, 1, (size_t)(p - start), stdout);
		chars++;
	}
	for (; chars < width; chars++)
		fputc(' ', stdout);
}

struct mail_list {
	bool json;
	unsigned n;
};

/* Prints the flags of a message as a JSON array of IMAP flag names. */
static void
mail_json_flags(uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
	    {STORE_FLAG_SEEN, "\\\\Seen"},       {STORE_FLAG_ANSWERED, "\\\\Answered"},
	    {STORE_FLAG_FLAGGED, "\\\\Flagged"}, {STORE_FLAG_DELETED, "\\\\Deleted"},
	    {STORE_FLAG_DRAFT, "\\\\Draft"},     {STORE_FLAG_RECENT, "\\\\Recent"},
	};
	bool first = true;

	fputc('[', stdout);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((flags & names[i].bit) == 0)
			continue;
		printf("%s\"%s\"", first ? "" : ", ", names[i].name);
		first = false;
	}
	fputc(']', stdout);
}

static void
mail_list_cb(const struct store_message *m, void *arg)
{
	struct mail_list *l = arg;
	char received[32], date[32];

	time_format_iso8601(m->internal_date, received, sizeof(received));
	if (!l->json) {
		if (l->n == 0)
			printf("%10s  %10s  %-20s  %-*s  %s\n", "UID", "SIZE", "DATE",
			       MAIL_FROM_WIDTH, "FROM", "SUBJECT");
		printf("%10" PRIu32 "  %10" PRIu64 "  %-20s  ", m->uid, m->size, received);
		mail_print_column(m->from[0] != '\0' ? m->from : "-", MAIL_FROM_WIDTH);
		printf("  %s\n", m->subject);
		l->n++;
		return;
	}
	printf("%s\n  {\"uid\": %" PRIu32 ", \"size\": %" PRIu64 ", \"size_crlf\": %" PRIu64
	       ", \"internal_date\": \"%s\", \"date\": ",
	       l->n > 0 ? "," : "[", m->uid, m->size, m->size_crlf, received);
	if (m->date != 0) {
		time_format_iso8601(m->date, date, sizeof(date));
		printf("\"%s\"", date);
	} else {
		printf("null");
	}
	printf(", \"from\": ");
	json_write_string(stdout, m->from);
	printf(", \"to\": ");
	json_write_string(stdout, m->to);
	printf(", \"subject\": ");
	json_write_string(stdout, m->subject);
	printf(", \"message_id\": ");
	json_write_string(stdout, m->message_id);
	printf(", \"flags\": ");
	mail_json_flags(m->flags);
	printf(", \"has_attachments\": %s}", m->has_attachments ? "true" : "false");
	l->n++;
}

/* Opens the store and finds USER (address or alias). Prints the problem and returns -1. */
static int
mail_open_user(const struct ternd_ctx *ctx, const char *user, struct store **store_r,
               struct store_account *account_r)
{
	int rc;

	if (ternd_open_store(ctx, store_r) < 0)
		return -1;
	rc = store_account_lookup(*store_r, user, account_r);
	if (rc > 0)
		return 0;
	if (rc == 0)
		fprintf(stderr, "ternd: no such user %s\n", user);
	else
		fprintf(stderr, "ternd: cannot look %s up in the store\n", user);
	store_free(store_r);
	return -1;
}

static int
mail_list(struct ternd_ctx *ctx, struct mail_args *args)
{
	struct mail_list l = {args->json, 0};
	struct store_account account;
	struct store *store = NULL;
	int rc, ret = 1;

	if (mail_open_user(ctx, args->user, &store, &account) < 0)
		return 1;
	rc = store_message_list(store, account.id, args->mailbox, mail_list_cb, &l);
	if (rc == 0) {
		fflush(stdout);
		fprintf(stderr, "ternd: %s has no mailbox %s\n", account.address, args->mailbox);
		goto out;
	}
	if (rc < 0) {
		fflush(stdout);
		fprintf(stderr, "ternd: cannot list %s of %s\n", args->mailbox, account.address);
		goto out;
	}
	if (l.json)
		printf("%s]\n", l.n > 0 ? "\n" : "[");
	else if (l.n == 0)
		printf("no messages in %s of %s\n", args->mailbox, account.address);
	ret = 0;
out:
	if (fflush(stdout) != 0 && errno != EPIPE) {
		fprintf(stderr, "ternd: writing to stdout: %s\n", strerror(errno));
		ret = 1;
	}
	store_free(&store);
	return ret;
}

/* Parses a UID: decimal, 1 to 2^32-1. */
static int
mail_parse_uid(const char *s, uint32_t *uid_r)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX)
		return -1;
	*uid_r = (uint32_t)v;
	return 0;
}

static int
mail_cat(struct ternd_ctx *ctx, struct mail_args *args)
{
	struct store_account account;
	struct store *store = NULL;
	char buf[65536];
	uint32_t uid;
	ssize_t n;
	int fd, ret = 1;

	if (mail_parse_uid(args->uid, &uid) < 0) {
		fprintf(stderr, "ternd: '%s' is not a UID (a number from 1 to 4294967295)\n",
		        args->uid);
		return 2;
	}
	if (mail_open_user(ctx, args->user, &store, &account) < 0)
		return 1;
	fd = store_message_open(store, account.id, args->mailbox, uid);
	if (fd == -2) {
		fprintf(stderr, "ternd: no message with UID %" PRIu32 " in %s of %s\n", uid,
		        args->mailbox, account.address);
		goto out;
	}
	if (fd < 0) {
		fprintf(stderr, "ternd: cannot open message %" PRIu32 " in %s: %s\n", uid,
		        args->mailbox, strerror(errno));
		goto out;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "ternd: reading message %" PRIu32 ": %s\n", uid,
			        strerror(errno));
			goto close;
		}
		if (write_full(STDOUT_FILENO, buf, (size_t)n) < 0) {
			/* The reader went away (| head): it has what it wanted. */
			if (errno == EPIPE) {
				ret = 0;
				goto close;
			}
			fprintf(stderr, "ternd: writing to stdout: %s\n", strerror(errno));
			goto close;
		}
	}
	ret = 0;
close:
	close(fd);
out:
	store_free(&store);
	return ret;
}

/* Parses "list USER [--mailbox NAME] [--json]" or "cat USER UID [--mailbox NAME]" from
 * argv[2..]. Returns 0, or prints the problem and returns -1. */
static int
mail_parse_args(bool is_cat, int argc, char **argv, struct mail_args *args)
{
	const char *usage = is_cat ? mail_cat_usage : mail_list_usage;
	int npos = 0;

	memset(args, 0, sizeof(*args));
	args->mailbox = "INBOX";
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--mailbox") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ternd: --mailbox needs a name\n");
				goto usage;
			}
			args->mailbox = argv[++i];
		} else if (strncmp(a, "--mailbox=", 10) == 0) {
			args->mailbox = a + 10;
		} else if (!is_cat && strcmp(a, "--json") == 0) {
			args->json = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "ternd: mail %s: unknown option %s\n", argv[1], a);
			goto usage;
		} else if (npos == 0) {
			args->user = a;
			npos++;
		} else if (npos == 1 && is_cat) {
			args->uid = a;
			npos++;
		} else {
			fprintf(stderr, "ternd: mail %s: unexpected argument '%s'\n", argv[1], a);
			goto usage;
		}
	}
	if (npos < (is_cat ? 2 : 1)) {
		fprintf(stderr, "ternd: mail %s: missing argument\n", argv[1]);
		goto usage;
	}
	if (args->mailbox[0] == '\0') {
		fprintf(stderr, "ternd: --mailbox needs a name\n");
		goto usage;
	}
	return 0;
usage:
	fputs(usage, stderr);
	return -1;
}

int
cmd_mail(int argc, char **argv)
{
	struct ternd_ctx ctx;
	struct mail_args args;
	bool is_cat;
	int ret;

	if (argc >= 2 && strcmp(argv[1], "import") == 0)
		return cmd_mail_import(argc, argv);
	/* Help needs no data directory: answer it before loading one. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") != 0 && strcmp(argv[i], "-h") != 0)
			continue;
		for (int j = 1; j < argc; j++) {
			if (strcmp(argv[j], "list") == 0 || strcmp(argv[j], "cat") == 0) {
				fputs(argv[j][0] == 'l' ? mail_list_usage : mail_cat_usage, stdout);
				return 0;
			}
		}
		mail_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		mail_usage(stderr);
		return 2;
	}
	if (ternd_ctx_load(&argc, argv, &ctx) < 0)
		return 1;
	if (argc < 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "cat") != 0)) {
		if (argc >= 2)
			fprintf(stderr, "ternd: mail: unknown command '%s'\n\n", argv[1]);
		mail_usage(stderr);
		ternd_ctx_free(&ctx);
		return 2;
	}
	is_cat = strcmp(argv[1], "cat") == 0;
	if (mail_parse_args(is_cat, argc, argv, &args) < 0) {
		ternd_ctx_free(&ctx);
		return 2;
	}
	ret = is_cat ? mail_cat(&ctx, &args) : mail_list(&ctx, &args);
	ternd_ctx_free(&ctx);
	return ret;
}
