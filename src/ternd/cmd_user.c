/* ternd user: add, delete, re-password and list accounts, and manage their aliases.
 * Exit codes: 0 done, 1 error (said on stderr), 2 usage. */
#include "ternd/ternd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "auth/password.h"
#include "lib/json.h"
#include "lib/util.h"
#include "store/store.h"

#define USER_ALIASES_MAX 64
#define USER_PASSWORD_MAX 1024

struct user_args {
	const char *pos[3]; /* positional arguments after the subcommand */
	int npos;
	bool password_stdin;
	bool json;
	const char *aliases[USER_ALIASES_MAX];
	int naliases;
};

struct user_cmd {
	const char *name;
	const char *usage;
	int npos;         /* positional arguments required */
	bool takes_stdin; /* --password-stdin */
	bool takes_alias; /* --alias ADDR */
	bool takes_json;  /* --json */
	int (*fn)(struct ternd_ctx *ctx, struct user_args *args);
};

static int user_add(struct ternd_ctx *ctx, struct user_args *args);
static int user_del(struct ternd_ctx *ctx, struct user_args *args);
static int user_passwd(struct ternd_ctx *ctx, struct user_args *args);
static int user_list(struct ternd_ctx *ctx, struct user_args *args);
static int user_alias_add(struct ternd_ctx *ctx, struct user_args *args);
static int user_alias_del(struct ternd_ctx *ctx, struct user_args *args);

static const struct user_cmd user_cmds[] = {
    {"add",
     "usage: ternd user add ADDRESS [--password-stdin] [--alias ADDR]...\n"
     "  Creates an account with the mailboxes INBOX, Sent, Drafts, Junk and Trash.\n"
     "  The password is asked twice on the terminal, or read as one line from stdin with\n"
     "  --password-stdin. Each --alias adds another address delivered to the account.\n",
     1, true, true, false, user_add},
    {"del",
     "usage: ternd user del ADDRESS\n"
     "  Deletes the account with its aliases, mailboxes and stored messages.\n",
     1, false, false, false, user_del},
    {"passwd",
     "usage: ternd user passwd ADDRESS [--password-stdin]\n"
     "  Sets a new password (asked twice on the terminal, or one line from stdin).\n",
     1, true, false, false, user_passwd},
    {"list",
     "usage: ternd user list [--json]\n"
     "  Lists accounts with their aliases and creation time (UTC). --json prints an array of\n"
     "  {\"address\", \"aliases\", \"created\"} objects, created in ISO 8601.\n",
     0, false, false, true, user_list},
    {"alias add",
     "usage: ternd user alias add ALIAS ADDRESS\n"
     "  Makes ALIAS another address of the account ADDRESS.\n",
     2, false, false, false, user_alias_add},
    {"alias del",
     "usage: ternd user alias del ALIAS\n"
     "  Removes an alias.\n",
     1, false, false, false, user_alias_del},
};

#define USER_NCMDS (sizeof(user_cmds) / sizeof(user_cmds[0]))

static void
user_usage(FILE *fp)
{
	fputs(
	    "usage: ternd user COMMAND [ARGS] [--data-dir DIR | --config FILE]\n"
	    "\n"
	    "Commands:\n"
	    "  add ADDRESS [--password-stdin] [--alias ADDR]...   create an account\n"
	    "  del ADDRESS                                        delete an account and its mail\n"
	    "  passwd ADDRESS [--password-stdin]                  set a new password\n"
	    "  list [--json]                                      list accounts\n"
	    "  alias add ALIAS ADDRESS                            add an alias to an account\n"
	    "  alias del ALIAS                                    remove an alias\n"
	    "\n"
	    "'ternd user COMMAND --help' describes one command. Exit status: 0 done, 1 error,\n"
	    "2 usage.\n",
	    fp);
}

/* Checks a mail address (a simple local@domain form) and copies it with the domain
 * lower-cased. Returns 0, or -1 with why set. */
static int
user_address_normalize(const char *in, char out[STORE_ADDRESS_MAX + 1], const char **why)
{
	const char *at = strchr(in, '@');
	size_t local, domain;

	if (at == NULL || strchr(at + 1, '@') != NULL) {
		*why = "it must have the form local@domain";
		return -1;
	}
	local = (size_t)(at - in);
	domain = strlen(at + 1);
	if (local == 0 || local > 64) {
		*why = "the local part must have 1 to 64 characters";
		return -1;
	}
	for (const char *p = in; p < at; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || strchr("\"(),:;<>[\\]", c) != NULL) {
			*why = "the local part has a character not allowed in an address";
			return -1;
		}
	}
	if (in[0] == '.' || at[-1] == '.' || strstr(in, "..") != NULL) {
		*why = "the local part has a misplaced dot";
		return -1;
	}
	if (domain == 0 || domain > 255 || at[1] == '.' || at[1] == '-' || at[domain] == '.' ||
	    strstr(at + 1, "..") != NULL) {
		*why = "the domain is not a valid name";
		return -1;
	}
	for (const char *p = at + 1; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.')) {
			*why = "the domain is not a valid name";
			return -1;
		}
	}
	str_copy(out, in, STORE_ADDRESS_MAX + 1);
	str_lower(out + local + 1);
	return 0;
}

/* Normalizes an address given on the command line and, when must_be_local, checks its domain
 * against server.domains. Prints the problem and returns -1 when it does not pass. */
static int
user_check_address(const struct ternd_ctx *ctx, const char *in, bool must_be_local,
                   char out[STORE_ADDRESS_MAX + 1])
{
	const char *why = NULL;

	if (user_address_normalize(in, out, &why) < 0) {
		fprintf(stderr, "ternd: '%s' is not a valid address: %s\n", in, why);
		return -1;
	}
	if (must_be_local && !ternd_domain_is_local(ctx, out)) {
		fprintf(stderr,
		        "ternd: domain %s is not one of server.domains in %s; add it there or use "
		        "--domain at init\n",
		        strchr(out, '@') + 1, ctx->config_path);
		return -1;
	}
	return 0;
}

/* Reads one line from fp into buf without its line ending. Returns 0, or -1 at EOF. */
static int
user_read_line(FILE *fp, char *buf, size_t bufsize)
{
	size_t len;

	if (fgets(buf, (int)bufsize, fp) == NULL)
		return -1;
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return 0;
}

/* Prompts on the terminal with echo off and reads one line. */
static int
user_prompt_hidden(const char *prompt, char *buf, size_t bufsize)
{
	struct termios saved, quiet;
	int rc;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return -1;
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return -1;
	rc = user_read_line(stdin, buf, bufsize);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	return rc;
}

/* Gets a new password from stdin (--password-stdin) or twice from the terminal, and hashes it.
 * Prints the problem and returns -1 on failure. */
static int
user_get_password_hash(bool from_stdin, char hash[PASSWORD_HASH_MAX])
{
	char pw[USER_PASSWORD_MAX], again[USER_PASSWORD_MAX];
	int ret = -1;

	if (from_stdin) {
		if (user_read_line(stdin, pw, sizeof(pw)) < 0) {
			fprintf(stderr, "ternd: no password on stdin\n");
			return -1;
		}
	} else {
		if (!isatty(STDIN_FILENO)) {
			fprintf(stderr,
			        "ternd: stdin is not a terminal: pipe the password in and add "
			        "--password-stdin\n");
			return -1;
		}
		if (user_prompt_hidden("Password: ", pw, sizeof(pw)) < 0 ||
		    user_prompt_hidden("Password again: ", again, sizeof(again)) < 0) {
			fprintf(stderr, "ternd: cannot read the password from the terminal\n");
			goto out;
		}
		if (strcmp(pw, again) != 0) {
			fprintf(stderr, "ternd: the passwords do not match\n");
			goto out;
		}
	}
	if (pw[0] == '\0') {
		fprintf(stderr, "ternd: an empty password is not allowed\n");
		goto out;
	}
	if (password_init() < 0 || password_hash(pw, hash) < 0) {
		fprintf(stderr, "ternd: cannot hash the password (out of memory?)\n");
		goto out;
	}
	ret = 0;
out:
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	return ret;
}

static int
user_add(struct ternd_ctx *ctx, struct user_args *args)
{
	char address[STORE_ADDRESS_MAX + 1], hash[PASSWORD_HASH_MAX], error[512];
	char aliases[USER_ALIASES_MAX][STORE_ADDRESS_MAX + 1];
	struct store_account existing;
	struct store *store = NULL;
	int ret = 1, rc;

	if (user_check_address(ctx, args->pos[0], true, address) < 0)
		return 1;
	for (int i = 0; i < args->naliases; i++) {
		if (user_check_address(ctx, args->aliases[i], true, aliases[i]) < 0)
			return 1;
	}
	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	/* Check every address before asking for a password. */
	for (int i = -1; i < args->naliases; i++) {
		const char *a = i < 0 ? address : aliases[i];
		rc = store_account_lookup(store, a, &existing);
		if (rc != 0) {
			if (rc > 0)
				fprintf(stderr, "ternd: %s is already taken (by account %s)\n", a,
				        existing.address);
			else
				fprintf(stderr, "ternd: cannot look %s up in the store\n", a);
			goto out;
		}
	}
	if (user_get_password_hash(args->password_stdin, hash) < 0)
		goto out;
	rc = store_account_add(store, address, hash, error, sizeof(error));
	if (rc <= 0) {
		fprintf(stderr, "ternd: cannot add %s: %s\n", address, error);
		goto out;
	}
	for (int i = 0; i < args->naliases; i++) {
		if (store_alias_add(store, aliases[i], address, error, sizeof(error)) <= 0) {
			fprintf(stderr, "ternd: account %s added, but alias %s failed: %s\n",
			        address, aliases[i], error);
			goto out;
		}
	}
	printf("added %s", address);
	for (int i = 0; i < args->naliases; i++)
		printf("%s%s", i == 0 ? " with aliases " : ", ", aliases[i]);
	printf("\n");
	ret = 0;
out:
	store_free(&store);
	return ret;
}

static int
user_del(struct ternd_ctx *ctx, struct user_args *args)
{
	char address[STORE_ADDRESS_MAX + 1], error[512];
	struct store *store = NULL;
	int rc;

	if (user_check_address(ctx, args->pos[0], false, address) < 0)
		return 1;
	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	rc = store_account_del(store, address, error, sizeof(error));
	if (rc == 0) {
		struct store_account account;
		if (store_account_lookup(store, address, &account) > 0)
			fprintf(stderr,
			        "ternd: %s is an alias of %s: delete the account by its address, "
			        "or the alias with 'ternd user alias del %s'\n",
			        address, account.address, address);
		else
			fprintf(stderr, "ternd: no such user %s\n", address);
		store_free(&store);
		return 1;
	}
	store_free(&store);
	if (rc < 0) {
		fprintf(stderr, "ternd: cannot delete %s: %s\n", address, error);
		return 1;
	}
	printf("deleted %s\n", address);
	return 0;
}

static int
user_passwd(struct ternd_ctx *ctx, struct user_args *args)
{
	char address[STORE_ADDRESS_MAX + 1], hash[PASSWORD_HASH_MAX], error[512];
	struct store_account account;
	struct store *store = NULL;
	int ret = 1, rc;

	if (user_check_address(ctx, args->pos[0], false, address) < 0)
		return 1;
	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	rc = store_account_lookup(store, address, &account);
	if (rc <= 0) {
		fprintf(stderr, rc == 0 ? "ternd: no such user %s\n" : "ternd: cannot look %s up\n",
		        address);
		goto out;
	}
	if (user_get_password_hash(args->password_stdin, hash) < 0)
		goto out;
	/* The lookup may have gone through an alias: set it on the account itself. */
	if (store_account_set_password(store, account.address, hash, error, sizeof(error)) <= 0) {
		fprintf(stderr, "ternd: cannot set the password of %s: %s\n", account.address,
		        error);
		goto out;
	}
	printf("password of %s changed\n", account.address);
	ret = 0;
out:
	store_free(&store);
	return ret;
}

/* Accounts collected by user_list_cb, with their aliases. */
struct user_list {
	struct store_account *accounts;
	size_t n, cap;
	FILE *fp;
	int nalias; /* aliases printed so far for the current account */
	bool json;
};

static void
user_list_cb(const struct store_account *account, void *arg)
{
	struct user_list *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->accounts = xrealloc(l->accounts, l->cap * sizeof(*l->accounts));
	}
	l->accounts[l->n++] = *account;
}

static void
user_list_alias_cb(const char *alias, void *arg)
{
	struct user_list *l = arg;

	if (l->json) {
		fputs(l->nalias > 0 ? ", " : "", l->fp);
		json_write_string(l->fp, alias);
	} else {
		fprintf(l->fp, "%s%s", l->nalias > 0 ? "," : "", alias);
	}
	l->nalias++;
}

static int
user_list(struct ternd_ctx *ctx, struct user_args *args)
{
	struct user_list l = {NULL, 0, 0, stdout, 0, args->json};
	struct store *store = NULL;
	char created[32];
	int ret = 1;

	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	if (store_account_list(store, user_list_cb, &l) < 0) {
		fprintf(stderr, "ternd: cannot list the accounts\n");
		goto out;
	}
	if (l.json)
		printf("[");
	else if (l.n > 0)
		printf("%-20s  %-40s  %s\n", "CREATED", "ADDRESS", "ALIASES");
	for (size_t i = 0; i < l.n; i++) {
		const struct store_account *a = &l.accounts[i];

		time_format_iso8601(a->created, created, sizeof(created));
		l.nalias = 0;
		if (l.json) {
			printf("%s\n  {\"address\": ", i > 0 ? "," : "");
			json_write_string(stdout, a->address);
			printf(", \"aliases\": [");
		} else {
			printf("%-20s  %-40s  ", created, a->address);
		}
		if (store_alias_list(store, a->id, user_list_alias_cb, &l) < 0) {
			fprintf(stderr, "\nternd: cannot list the aliases of %s\n", a->address);
			goto out;
		}
		if (l.json)
			printf("], \"created\": \"%s\"}", created);
		else
			printf("%s\n", l.nalias == 0 ? "-" : "");
	}
	if (l.json)
		printf("%s]\n", l.n > 0 ? "\n" : "");
	ret = 0;
out:
	/* A reader that stopped early (| head) has what it wanted: a quiet end, as in mail cat. */
	if (fflush(stdout) != 0 && errno != EPIPE) {
		fprintf(stderr, "ternd: writing to stdout: %s\n", strerror(errno));
		ret = 1;
	}
	free(l.accounts);
	store_free(&store);
	return ret;
}

static int
user_alias_add(struct ternd_ctx *ctx, struct user_args *args)
{
	char alias[STORE_ADDRESS_MAX + 1], address[STORE_ADDRESS_MAX + 1], error[512];
	struct store *store = NULL;
	int rc;

	if (user_check_address(ctx, args->pos[0], true, alias) < 0 ||
	    user_check_address(ctx, args->pos[1], false, address) < 0)
		return 1;
	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	rc = store_alias_add(store, alias, address, error, sizeof(error));
	store_free(&store);
	if (rc <= 0) {
		fprintf(stderr, "ternd: cannot add alias %s: %s\n", alias, error);
		return 1;
	}
	printf("%s is now an alias of %s\n", alias, address);
	return 0;
}

static int
user_alias_del(struct ternd_ctx *ctx, struct user_args *args)
{
	char alias[STORE_ADDRESS_MAX + 1], error[512];
	struct store *store = NULL;
	int rc;

	if (user_check_address(ctx, args->pos[0], false, alias) < 0)
		return 1;
	if (ternd_open_store(ctx, &store) < 0)
		return 1;
	rc = store_alias_del(store, alias, error, sizeof(error));
	store_free(&store);
	if (rc == 0) {
		fprintf(stderr, "ternd: no such alias %s\n", alias);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "ternd: cannot delete alias %s: %s\n", alias, error);
		return 1;
	}
	printf("removed alias %s\n", alias);
	return 0;
}

/* Finds the command named by argv[first] (and argv[first + 1] for "alias add|del"); sets *next
 * to the index after the name. NULL when there is none. */
static const struct user_cmd *
user_find_cmd(int argc, char **argv, int first, int *next)
{
	char name[32];

	if (first >= argc)
		return NULL;
	if (strcmp(argv[first], "alias") == 0) {
		if (first + 1 >= argc)
			return NULL;
		snprintf(name, sizeof(name), "alias %s", argv[first + 1]);
		*next = first + 2;
	} else {
		snprintf(name, sizeof(name), "%s", argv[first]);
		*next = first + 1;
	}
	for (size_t i = 0; i < USER_NCMDS; i++) {
		if (strcmp(user_cmds[i].name, name) == 0)
			return &user_cmds[i];
	}
	return NULL;
}

/* Parses the command's own options and positional arguments. Returns 0, or prints the
 * problem with the usage and returns -1. */
static int
user_parse_args(const struct user_cmd *cmd, int argc, char **argv, int first,
                struct user_args *args)
{
	memset(args, 0, sizeof(*args));
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];

		if (cmd->takes_stdin && strcmp(a, "--password-stdin") == 0) {
			args->password_stdin = true;
		} else if (cmd->takes_json && strcmp(a, "--json") == 0) {
			args->json = true;
		} else if (cmd->takes_alias && strcmp(a, "--alias") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ternd: --alias needs an address\n");
				goto usage;
			}
			if (args->naliases == USER_ALIASES_MAX) {
				fprintf(stderr, "ternd: at most %d aliases at once\n",
				        USER_ALIASES_MAX);
				goto usage;
			}
			args->aliases[args->naliases++] = argv[++i];
		} else if (cmd->takes_alias && strncmp(a, "--alias=", 8) == 0) {
			if (args->naliases == USER_ALIASES_MAX)
				goto usage;
			args->aliases[args->naliases++] = a + 8;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "ternd: user %s: unknown option %s\n", cmd->name, a);
			goto usage;
		} else {
			if (args->npos == cmd->npos) {
				fprintf(stderr, "ternd: user %s: unexpected argument '%s'\n",
				        cmd->name, a);
				goto usage;
			}
			args->pos[args->npos++] = a;
		}
	}
	if (args->npos < cmd->npos) {
		fprintf(stderr, "ternd: user %s: missing argument\n", cmd->name);
		goto usage;
	}
	return 0;
usage:
	fputs(cmd->usage, stderr);
	return -1;
}

/* True when argv holds --help or -h. */
static bool
user_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

int
cmd_user(int argc, char **argv)
{
	const struct user_cmd *cmd;
	struct user_args args;
	struct ternd_ctx ctx;
	int next = 0, ret;

	/* Help needs no data directory: answer it before loading one. */
	if (user_wants_help(argc, argv)) {
		for (int i = 1; i < argc; i++) {
			cmd = user_find_cmd(argc, argv, i, &next);
			if (cmd != NULL) {
				fputs(cmd->usage, stdout);
				return 0;
			}
		}
		user_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		user_usage(stderr);
		return 2;
	}
	if (ternd_ctx_load(&argc, argv, &ctx) < 0)
		return 1;
	cmd = user_find_cmd(argc, argv, 1, &next);
	if (cmd == NULL) {
		if (argc > 1)
			fprintf(stderr, "ternd: user: unknown command '%s'\n\n", argv[1]);
		user_usage(stderr);
		ternd_ctx_free(&ctx);
		return 2;
	}
	if (user_parse_args(cmd, argc, argv, next, &args) < 0) {
		ternd_ctx_free(&ctx);
		return 2;
	}
	ret = cmd->fn(&ctx, &args);
	ternd_ctx_free(&ctx);
	return ret;
}
