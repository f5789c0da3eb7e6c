/* tern list, show, search, save-attachments: reading the local store. (import and export, which
 * move mail in and out of it, are in cmd_transfer.c.) */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "tern/cli.h"
#include "tern/localstore.h"
#include "tern/render.h"
#include "tern/tern.h"

static const char list_usage[] =
    "usage: tern list [--folder NAME] [--account NAME] [--unread] [--limit N] [--json]\n"
    "  Lists stored messages, newest first: ID (what 'tern show' takes), date, folder,\n"
    "  sender and subject. N marks an unread message, @ one with attachments. --json prints\n"
    "  an array of objects with id, account, folder, from, to, subject, date (ISO 8601, UTC),\n"
    "  size, flags and has_attachments.\n";

static const char show_usage[] =
    "usage: tern show ID [--html|--raw|--headers]\n"
    "  Prints a message for reading: its headers, the text part (or the HTML part as text)\n"
    "  and the list of attachments; marks it read.\n"
    "  --html     the HTML part as it is\n"
    "  --raw      the stored bytes, exactly\n"
    "  --headers  every header, decoded\n";

static const char search_usage[] =
    "usage: tern search QUERY... [--limit N] [--json]\n"
    "  Finds messages: free words and \"quoted phrases\" (in subject, sender, recipients and\n"
    "  text), from:X to:X subject:X, before:YYYY-MM-DD after:YYYY-MM-DD, has:attachment,\n"
    "  is:unread, is:read, folder:X, account:X. Every term must match. Prints the same table\n"
    "  as 'tern list'.\n";

static const char save_usage[] =
    "usage: tern save-attachments ID DIR\n"
    "  Writes every attachment of message ID into DIR (made when missing), decoded, under its\n"
    "  own file name; an existing file is never overwritten (\"name (2).pdf\").\n";

/* Rows of list and search: numbered by store id, or by screen position inside the shell. */
static void
read_row_cb(const struct lstore_message *m, void *arg)
{
	struct cli_table *table = arg;
	struct cli_screen_map *map = cli_screen_map;

	if (map == NULL) {
		cli_table_row(table, m, m->id);
		return;
	}
	if (map->n == map->cap) {
		map->cap = map->cap == 0 ? 64 : map->cap * 2;
		map->ids = xrealloc(map->ids, map->cap * sizeof(int64_t));
	}
	map->ids[map->n++] = m->id;
	cli_table_row(table, m, (int64_t)map->n);
}

int
cmd_list(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"folder", required_argument, NULL, 'f'},
	    {"account", required_argument, NULL, 'a'},
	    {"unread", no_argument, NULL, 'u'},
	    {"limit", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct lstore_filter filter = {0};
	struct tern_paths paths;
	struct lstore *store = NULL;
	struct cli_table table;
	bool json = false;
	int c, n;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:a:un:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			filter.folder = optarg;
			break;
		case 'a':
			filter.account = optarg;
			break;
		case 'u':
			filter.unread_only = true;
			break;
		case 'n':
			if (cli_parse_count(optarg, &filter.limit) < 0) {
				fprintf(stderr, "tern list: --limit takes a number, not '%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(list_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("list", argv, optind);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tern list: unexpected argument '%s'\n%s", argv[optind],
		        list_usage);
		return CLI_USAGE;
	}
	if (cli_open_store("list", &paths, &store) < 0)
		return CLI_ERROR;
	if (cli_screen_map != NULL)
		cli_screen_map->n = 0;
	cli_table_begin(&table, json);
	n = lstore_list(store, &filter, read_row_cb, &table);
	cli_table_end(&table, n < 0 ? NULL : "no messages");
	lstore_close(&store);
	if (n < 0) {
		fprintf(stderr, "tern list: cannot read the local index in %s\n", paths.data_dir);
		return CLI_ERROR;
	}
	return CLI_OK;
}

int
cmd_show(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"html", no_argument, NULL, 'H'},
	    {"raw", no_argument, NULL, 'r'},
	    {"headers", no_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	enum render_mode mode = RENDER_TEXT;
	struct tern_paths paths;
	struct lstore *store = NULL;
	struct lstore_message m;
	char error[512];
	int64_t id;
	int c, found, ret = CLI_OK;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'H':
			mode = RENDER_HTML;
			break;
		case 'r':
			mode = RENDER_RAW;
			break;
		case 'e':
			mode = RENDER_HEADERS;
			break;
		case 'h':
			fputs(show_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("show", argv, optind);
		}
	}
	if (argc - optind != 1) {
		fputs(show_usage, stderr);
		return CLI_USAGE;
	}
	if (cli_parse_id(argv[optind], &id) < 0) {
		fprintf(stderr, "tern show: '%s' is not a message id (see 'tern list')\n",
		        argv[optind]);
		return CLI_USAGE;
	}
	if (cli_open_store("show", &paths, &store) < 0)
		return CLI_ERROR;
	found = lstore_get(store, id, &m);
	if (found <= 0) {
		if (found == 0)
			fprintf(stderr, "tern show: no message %lld (see 'tern list')\n",
			        (long long)id);
		else
			fprintf(stderr, "tern show: cannot read the local index\n");
		lstore_close(&store);
		return CLI_ERROR;
	}
	if (render_message(stdout, m.path, mode, error, sizeof(error)) < 0) {
		/* A reader that went away (tern show --raw 1 | head) is no error to report. */
		bool closed = errno == EPIPE;
		fflush(stdout);
		if (!closed)
			fprintf(stderr, "tern show: message %lld: %s\n", (long long)id, error);
		ret = CLI_ERROR;
	} else if ((m.flags & LSTORE_FLAG_SEEN) == 0 &&
	           lstore_set_flags(store, id, LSTORE_FLAG_SEEN, 0) < 0) {
		fprintf(stderr, "tern show: could not mark message %lld read\n", (long long)id);
	}
	lstore_close(&store);
	return ret;
}

/* Appends one search word to the query; a word with spaces (one quoted shell argument) becomes a
 * phrase, "field:some words" becoming field:"some words". */
static void
read_query_append(char **query, size_t *len, const char *word)
{
	bool spaced = strpbrk(word, " \t") != NULL && strchr(word, '"') == NULL;
	const char *colon = strchr(word, ':');
	size_t field = 0;
	size_t need;

	if (spaced && colon != NULL &&
	    strspn(word, "abcdefghijklmnopqrstuvwxyz") == (size_t)(colon - word))
		field = (size_t)(colon - word) + 1;
	need = *len + strlen(word) + 4;
	*query = xrealloc(*query, need + 1);
	if (*len > 0)
		(*query)[(*len)++] = ' ';
	if (!spaced) {
		memcpy(*query + *len, word, strlen(word));
		*len += strlen(word);
	} else {
		memcpy(*query + *len, word, field);
		*len += field;
		(*query)[(*len)++] = '"';
		memcpy(*query + *len, word + field, strlen(word + field));
		*len += strlen(word + field);
		(*query)[(*len)++] = '"';
	}
	(*query)[*len] = '\0';
}

int
cmd_search(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"limit", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct tern_paths paths;
	struct lstore *store = NULL;
	struct cli_table table;
	char error[512], *query = NULL;
	size_t qlen = 0;
	bool json = false;
	int c, n, limit = 0;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "n:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_parse_count(optarg, &limit) < 0) {
				fprintf(stderr, "tern search: --limit takes a number, not '%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(search_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("search", argv, optind);
		}
	}
	if (optind >= argc) {
		fputs(search_usage, stderr);
		return CLI_USAGE;
	}
	for (int i = optind; i < argc; i++)
		read_query_append(&query, &qlen, argv[i]);
	if (cli_open_store("search", &paths, &store) < 0) {
		free(query);
		return CLI_ERROR;
	}
	if (cli_screen_map != NULL)
		cli_screen_map->n = 0;
	cli_table_begin(&table, json);
	n = lstore_search(store, query, limit, read_row_cb, &table, error, sizeof(error));
	if (n < 0 && json && table.rows == 0) {
		/* Keep stdout valid JSON even when the query is refused. */
		cli_table_end(&table, NULL);
	} else if (n >= 0) {
		cli_table_end(&table, "no matches");
	}
	lstore_close(&store);
	free(query);
	if (n < 0) {
		fprintf(stderr, "tern search: %s\n", error);
		return CLI_ERROR;
	}
	return CLI_OK;
}

int
cmd_save_attachments(int argc, char **argv)
{
	struct tern_paths paths;
	struct lstore *store = NULL;
	struct lstore_message m;
	struct render_attachment *list = NULL;
	char error[512];
	int64_t id;
	int found, n, listed;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(save_usage, stdout);
		return CLI_OK;
	}
	if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
		fputs(save_usage, stderr);
		return CLI_USAGE;
	}
	if (cli_parse_id(argv[1], &id) < 0) {
		fprintf(stderr,
		        "tern save-attachments: '%s' is not a message id (see 'tern list')\n",
		        argv[1]);
		return CLI_USAGE;
	}
	if (cli_open_store("save-attachments", &paths, &store) < 0)
		return CLI_ERROR;
	found = lstore_get(store, id, &m);
	lstore_close(&store);
	if (found <= 0) {
		fprintf(stderr, "tern save-attachments: %s %lld\n",
		        found == 0 ? "no message" : "cannot read the index for message",
		        (long long)id);
		return CLI_ERROR;
	}
	listed = render_attachments(m.path, &list, error, sizeof(error));
	if (listed == 0) {
		printf("message %lld has no attachments\n", (long long)id);
		free(list);
		return CLI_OK;
	}
	if (mkdir_p(argv[2], 0777) < 0) {
		fprintf(stderr, "tern save-attachments: cannot make %s: %s\n", argv[2],
		        strerror(errno));
		free(list);
		return CLI_ERROR;
	}
	n = render_save_attachments(m.path, argv[2], error, sizeof(error));
	if (n < 0) {
		fprintf(stderr, "tern save-attachments: %s\n", error);
		free(list);
		return CLI_ERROR;
	}
	for (int i = 0; i < listed; i++) {
		fputs("  ", stdout);
		cli_print_safe(stdout, list[i].filename);
		fputs("  (", stdout);
		cli_print_safe(stdout, list[i].content_type);
		printf(", %llu bytes)\n", (unsigned long long)list[i].size);
	}
	printf("saved %d attachment%s to %s\n", n, n == 1 ? "" : "s", argv[2]);
	free(list);
	return CLI_OK;
}
