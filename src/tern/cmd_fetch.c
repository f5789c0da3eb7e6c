/* tern fetch: downloads an account's new mail into the local store (the work is in fetch.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "tern/cli.h"
#include "tern/fetch.h"
#include "tern/tern.h"

static const char fetch_usage[] =
    "usage: tern fetch [--account NAME] [--protocol pop3|imap] [--keep|--delete]\n"
    "                  [--folder NAME] [--json]\n"
    "  Downloads the messages not yet in the local store (POP3 UIDL or IMAP UIDVALIDITY/UID\n"
    "  tell which), each saved as it arrives, so an interrupted fetch resumes where it\n"
    "  stopped. POP3 is used when the account has a POP3 server, else IMAP.\n"
    "  --keep      leave the messages on the server (the default)\n"
    "  --delete    delete them on the server once they are stored here\n"
    "  --folder    IMAP: the mailbox to fetch (default INBOX), also the local folder;\n"
    "              POP3: the local folder the messages go to\n"
    "  --json      print the counts as a JSON object\n"
    "  Exit status: 0 done, 1 error, 2 usage, 130 interrupted (what was saved stays).\n";

/* Prints the outcome, as text or JSON; error is NULL on success. */
static void
fetch_report(const struct account *account, const struct fetch_result *r, bool json,
             const char *error)
{
	char bytes[32];

	if (json) {
		printf("{\"account\": ");
		json_write_string(stdout, account->name);
		printf(", \"protocol\": \"%s\", \"remote\": %u, \"new\": %u, \"skipped\": %u, "
		       "\"deleted\": %u, \"too_large\": %u, \"bytes\": %llu, \"interrupted\": %s",
		       fetch_protocol_name(r->protocol), r->remote, r->fetched, r->skipped,
		       r->deleted, r->too_large, (unsigned long long)r->bytes,
		       r->interrupted ? "true" : "false");
		if (error != NULL) {
			printf(", \"error\": ");
			json_write_string(stdout, error);
		}
		printf("}\n");
		return;
	}
	/* A failure before anything happened is said once, on stderr. */
	if (error != NULL && r->fetched == 0 && r->skipped == 0 && !r->interrupted)
		return;
	fetch_format_bytes(r->bytes, bytes, sizeof(bytes));
	if (r->fetched == 0 && error == NULL && !r->interrupted)
		printf("%s: no new messages", account->name);
	else
		printf("%s: %u new message%s (%s)", account->name, r->fetched,
		       r->fetched == 1 ? "" : "s", bytes);
	if (r->skipped > 0)
		printf(", %u already here", r->skipped);
	if (r->deleted > 0)
		printf(", %u deleted on the server", r->deleted);
	printf("\n");
	if (r->too_large > 0)
		printf("%s: %u message%s over %llu MB left on the server\n", account->name,
		       r->too_large, r->too_large == 1 ? "" : "s",
		       (unsigned long long)(FETCH_MAX_SIZE / (1024 * 1024)));
	if (r->interrupted)
		printf("interrupted: what was saved stays; 'tern fetch' gets the rest\n");
}

int
cmd_fetch(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"account", required_argument, NULL, 'a'}, {"protocol", required_argument, NULL, 'p'},
	    {"keep", no_argument, NULL, 'k'},          {"delete", no_argument, NULL, 'd'},
	    {"folder", required_argument, NULL, 'f'},  {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	struct fetch_options options = {.progress = true};
	struct fetch_result result;
	struct tern_paths paths;
	struct lstore *store = NULL;
	struct account *accounts = NULL;
	const struct account *account;
	const char *account_name = NULL;
	char error[1024];
	bool json = false;
	int c, ret;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+a:p:kdf:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			account_name = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "pop3") == 0) {
				options.protocol = FETCH_PROTOCOL_POP3;
			} else if (strcmp(optarg, "imap") == 0) {
				options.protocol = FETCH_PROTOCOL_IMAP;
			} else {
				fprintf(stderr,
				        "tern fetch: --protocol takes pop3 or imap, not '%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			break;
		case 'k':
			options.delete_after = false;
			break;
		case 'd':
			options.delete_after = true;
			break;
		case 'f':
			options.folder = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(fetch_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("fetch", argv, optind);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tern fetch: unexpected argument '%s'\n%s", argv[optind],
		        fetch_usage);
		return CLI_USAGE;
	}
	if (cli_open_store("fetch", &paths, &store) < 0)
		return CLI_ERROR;
	if (cli_load_account("fetch", &paths, account_name, &accounts, &account) < 0) {
		lstore_close(&store);
		return CLI_ERROR;
	}
	ret = fetch_run(store, account, &options, &result, error, sizeof(error));
	fflush(stderr);
	fetch_report(account, &result, json, ret < 0 ? error : NULL);
	if (ret < 0 && !result.interrupted)
		fprintf(stderr, "tern fetch: %s: %s\n", account->name, error);
	free(accounts);
	lstore_close(&store);
	if (result.interrupted)
		return CLI_INTERRUPTED;
	return ret < 0 ? CLI_ERROR : CLI_OK;
}
