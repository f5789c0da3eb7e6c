/* tern account: add, list, show, remove and test the client's accounts.
 * Exit codes: 0 done, 1 error (said on stderr), 2 usage. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "client/conn.h"
#include "client/imap_client.h"
#include "client/pop3_client.h"
#include "client/smtp_client.h"
#include "lib/json.h"
#include "lib/util.h"
#include "tern/accounts.h"
#include "tern/tern.h"

/* Parsed command line of one subcommand. */
struct account_args {
	const char *name; /* the positional NAME */
	bool json;
	const char *address, *display_name, *provider, *user, *password_command, *ca_file;
	const char *server[3];   /* --smtp, --pop3, --imap */
	const char *security[3]; /* --smtp-security ... */
	const char *security_all;
	bool password_stdin, insecure, is_default;
};

struct account_cmd {
	const char *name;
	const char *usage;
	int (*fn)(struct account_args *args);
};

static int account_add(struct account_args *args);
static int account_list(struct account_args *args);
static int account_show(struct account_args *args);
static int account_remove(struct account_args *args);
static int account_test(struct account_args *args);

static const char *const account_protocols[3] = {"smtp", "pop3", "imap"};

static const struct account_cmd account_cmds[] = {
    {"add",
     "usage: tern account add NAME --address ADDR [options]\n"
     "  Adds an account. Servers come from --provider and/or --smtp/--pop3/--imap.\n"
     "  --name TEXT               display name for From:\n"
     "  --provider P              presets: %s\n"
     "  --smtp HOST[:PORT]        outgoing server\n"
     "  --pop3 HOST[:PORT]        POP3 server\n"
     "  --imap HOST[:PORT]        IMAP server\n"
     "  --security tls|starttls|none\n"
     "                            for the servers given on this command line; without it,\n"
     "                            ports 25, 587, 110 and 143 mean starttls, 465, 995 and\n"
     "                            993 tls; on other ports tern connects and looks: a\n"
     "                            plain-text greeting means starttls, silence tls\n"
     "  --smtp-security S, --pop3-security S, --imap-security S   per server\n"
     "  --user LOGIN              login name (default: the address)\n"
     "  --password-command CMD    run CMD with /bin/sh -c; its first line is the password\n"
     "                            (recommended, e.g. 'pass show mail/work')\n"
     "  --password-stdin          read the password from stdin and store it in the\n"
     "                            accounts file (mode 0600)\n"
     "  --ca-file FILE            trust this PEM file instead of the system CAs\n"
     "  --insecure                do not verify certificates (warned about at every use)\n"
     "  --default                 use this account when --account is not given\n",
     account_add},
    {"list",
     "usage: tern account list [--json]\n"
     "  Lists the accounts; '*' marks the default one.\n",
     account_list},
    {"show",
     "usage: tern account show NAME [--json]\n"
     "  Shows one account. A stored password is never printed.\n",
     account_show},
    {"remove",
     "usage: tern account remove NAME\n"
     "  Removes an account from the accounts file (mail already fetched stays).\n",
     account_remove},
    {"test",
     "usage: tern account test [NAME]\n"
     "  Connects to each of the account's servers and logs in; prints one line per\n"
     "  server and exits 1 if any failed.\n",
     account_test},
};

#define ACCOUNT_NCMDS (sizeof(account_cmds) / sizeof(account_cmds[0]))

static void
account_usage(FILE *fp)
{
	fputs("usage: tern account COMMAND [ARGS]\n"
	      "\n"
	      "Commands:\n"
	      "  add NAME --address ADDR [--provider P | --smtp H:P --pop3 H:P --imap H:P] ...\n"
	      "  list [--json]\n"
	      "  show NAME [--json]\n"
	      "  remove NAME\n"
	      "  test [NAME]\n"
	      "\n"
	      "'tern account COMMAND --help' describes one command. Accounts live in\n"
	      "CONFIG/accounts.conf (mode 0600); CONFIG is $TERN_HOME or $XDG_CONFIG_HOME/tern.\n"
	      "Exit status: 0 done, 1 error, 2 usage.\n",
	      fp);
}

/* Prints one subcommand's usage, with the provider names filled in for add. */
static void
account_cmd_usage(const struct account_cmd *cmd, FILE *fp)
{
	char names[256] = "";

	for (const struct provider *p = accounts_providers(); p->name != NULL; p++) {
		if (names[0] != '\0')
			strncat(names, ", ", sizeof(names) - strlen(names) - 1);
		strncat(names, p->name, sizeof(names) - strlen(names) - 1);
	}
	fprintf(fp, cmd->usage, names);
}

/* Matches "--opt VALUE" or "--opt=VALUE" at argv[*i]: 1 with *value_r, 0 when it is another
 * option, -1 when the value is missing. */
static int
account_opt(int argc, char **argv, int *i, const char *opt, const char **value_r)
{
	size_t len = strlen(opt);

	if (strncmp(argv[*i], opt, len) != 0)
		return 0;
	if (argv[*i][len] == '=') {
		*value_r = argv[*i] + len + 1;
		return 1;
	}
	if (argv[*i][len] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "tern account: %s needs a value\n", opt);
		return -1;
	}
	*value_r = argv[++*i];
	return 1;
}

/* Parses the options after the subcommand; returns 0, 1 for --help shown, or 2 for usage. */
static int
account_parse(const struct account_cmd *cmd, int argc, char **argv, struct account_args *args)
{
	static const char *const value_opts[] = {
	    "--address",       "--name",          "--provider", "--user", "--password-command",
	    "--ca-file",       "--smtp",          "--pop3",     "--imap", "--smtp-security",
	    "--pop3-security", "--imap-security", "--security"};
	const char **value_slots[] = {
	    &args->address,          &args->display_name, &args->provider,    &args->user,
	    &args->password_command, &args->ca_file,      &args->server[0],   &args->server[1],
	    &args->server[2],        &args->security[0],  &args->security[1], &args->security[2],
	    &args->security_all};
	bool is_add = strcmp(cmd->name, "add") == 0;
	bool takes_json = strcmp(cmd->name, "list") == 0 || strcmp(cmd->name, "show") == 0;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int matched = 0;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			account_cmd_usage(cmd, stdout);
			return 1;
		}
		if (takes_json && strcmp(a, "--json") == 0) {
			args->json = true;
			continue;
		}
		if (is_add) {
			if (strcmp(a, "--password-stdin") == 0) {
				args->password_stdin = true;
				continue;
			}
			if (strcmp(a, "--insecure") == 0) {
				args->insecure = true;
				continue;
			}
			if (strcmp(a, "--default") == 0) {
				args->is_default = true;
				continue;
			}
			for (size_t k = 0; k < sizeof(value_opts) / sizeof(value_opts[0]); k++) {
				matched =
				    account_opt(argc, argv, &i, value_opts[k], value_slots[k]);
				if (matched != 0)
					break;
			}
			if (matched < 0)
				return 2;
			if (matched > 0)
				continue;
		}
		if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "tern account %s: unknown option %s\n", cmd->name, a);
			account_cmd_usage(cmd, stderr);
			return 2;
		}
		if (args->name != NULL) {
			fprintf(stderr, "tern account %s: unexpected argument '%s'\n", cmd->name,
			        a);
			return 2;
		}
		args->name = a;
	}
	return 0;
}

int
cmd_account(int argc, char **argv)
{
	struct account_args args;
	int r;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		account_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < ACCOUNT_NCMDS; i++) {
		if (strcmp(argv[1], account_cmds[i].name) != 0)
			continue;
		memset(&args, 0, sizeof(args));
		r = account_parse(&account_cmds[i], argc, argv, &args);
		if (r == 1)
			return 0;
		if (r != 0)
			return r;
		return account_cmds[i].fn(&args);
	}
	fprintf(stderr, "tern account: unknown command '%s'\n", argv[1]);
	account_usage(stderr);
	return 2;
}

/* Loads the paths and accounts; prints the error and returns -1 on failure. */
static int
account_load_all(struct tern_paths *paths, struct account **list_r, size_t *n_r)
{
	char error[1024];

	if (tern_paths_get(paths, error, sizeof(error)) < 0 ||
	    accounts_load(paths, list_r, n_r, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern: %s\n", error);
		return -1;
	}
	return 0;
}

#define ACCOUNT_PROBE_TIMEOUT_MS 2500

/* A port that says nothing about its security (not 25/587/110/143, not 465/995/993, such as
 * ternd's demo ports 2587 and 2465): ask the server. A plain-text greeting means STARTTLS; silence
 * means implicit TLS (such a server waits for the client's TLS hello); no connection leaves the
 * guess to the port (implicit TLS), said on stderr. */
static enum conn_security
account_probe_security(int k, const struct account_server *server)
{
	struct conn_options o = {.host = server->host,
	                         .port = server->port,
	                         .security = CONN_SECURITY_NONE,
	                         .timeout_ms = ACCOUNT_PROBE_TIMEOUT_MS};
	struct conn *conn = NULL;
	char error[512];
	const char *line;
	size_t len;
	int r;

	if (conn_open(&o, &conn, error, sizeof(error)) < 0) {
		fprintf(stderr,
		        "tern account add: %s: could not reach %s:%d to see whether it speaks TLS "
		        "(%s); assuming implicit TLS (choose with --%s-security)\n",
		        account_protocols[k], server->host, server->port, error,
		        account_protocols[k]);
		return CONN_SECURITY_TLS;
	}
	r = conn_read_line(conn, &line, &len, error, sizeof(error));
	conn_close(&conn);
	if (r == 1 && len > 0) {
		fprintf(stderr,
		        "tern account add: %s: %s:%d greets in plain text: using starttls "
		        "(choose with --%s-security)\n",
		        account_protocols[k], server->host, server->port, account_protocols[k]);
		return CONN_SECURITY_STARTTLS;
	}
	return CONN_SECURITY_TLS;
}

/* The security a server gets when none is named: STARTTLS on the plaintext-then-STARTTLS ports,
 * implicit TLS on 465/995/993, and for other ports what the server shows. */
static enum conn_security
account_security_for_port(int k, const struct account_server *server)
{
	int port = server->port;

	if (port == 25 || port == 587 || port == 110 || port == 143)
		return CONN_SECURITY_STARTTLS;
	if (port == 465 || port == 995 || port == 993)
		return CONN_SECURITY_TLS;
	return account_probe_security(k, server);
}

/* Fills one server from --smtp/--pop3/--imap and its security option; -1 on a bad value. */
static int
account_set_server(struct account_args *args, int k, struct account_server *server)
{
	static const int tls_ports[3] = {465, 995, 993}, plain_ports[3] = {587, 110, 143};
	const char *sec = args->security[k] != NULL ? args->security[k] : args->security_all;
	enum conn_security security = CONN_SECURITY_TLS;
	char error[300];

	if (sec != NULL && accounts_security_parse(sec, &security) == 0) {
		fprintf(stderr,
		        "tern account add: security must be tls, starttls or none, not '%s'\n",
		        sec);
		return -1;
	}
	if (accounts_parse_server(args->server[k],
	                          security == CONN_SECURITY_TLS ? tls_ports[k] : plain_ports[k],
	                          server, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern account add: --%s: %s\n", account_protocols[k], error);
		return -1;
	}
	server->security = sec != NULL ? security : account_security_for_port(k, server);
	return 0;
}

/* Reads one line from stdin into out (echo off on a terminal); -1 with a message. */
static int
account_read_password(char *out, size_t outsize)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	size_t len;

	if (tty) {
		fputs("Password: ", stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(out, (int)outsize, stdin) == NULL)
		out[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	len = strlen(out);
	if (len == outsize - 1 && out[len - 1] != '\n') {
		fprintf(stderr, "tern account add: password longer than %zu bytes\n", outsize - 2);
		return -1;
	}
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
		out[--len] = '\0';
	if (len == 0) {
		fputs("tern account add: no password on stdin\n", stderr);
		return -1;
	}
	return 0;
}

/* Checks add's options and builds the account from them; -1 after printing why. */
static int
account_build(struct account_args *args, struct account *a)
{
	struct account_server *servers[3] = {&a->smtp, &a->pop3, &a->imap};

	memset(a, 0, sizeof(*a));
	if (args->name == NULL || args->address == NULL) {
		fputs("tern account add: NAME and --address are required\n", stderr);
		return -1;
	}
	if (str_copy(a->name, args->name, sizeof(a->name)) >= sizeof(a->name) ||
	    strspn(args->name,
	           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@+") !=
	        strlen(args->name)) {
		fputs("tern account add: NAME: up to 63 letters, digits and . _ - @ +\n", stderr);
		return -1;
	}
	if (strchr(args->address, '@') == NULL || strpbrk(args->address, " \t\r\n<>") != NULL ||
	    str_copy(a->address, args->address, sizeof(a->address)) >= sizeof(a->address)) {
		fprintf(stderr, "tern account add: bad address '%s'\n", args->address);
		return -1;
	}
	if (args->password_stdin && args->password_command != NULL) {
		fputs("tern account add: give --password-stdin or --password-command, not both\n",
		      stderr);
		return -1;
	}
	if (args->provider != NULL) {
		const struct provider *p = accounts_provider(args->provider);
		if (p == NULL) {
			fprintf(stderr,
			        "tern account add: unknown provider '%s'; known: ", args->provider);
			for (p = accounts_providers(); p->name != NULL; p++)
				fprintf(stderr, "%s%s", p->name, p[1].name != NULL ? ", " : "\n");
			return -1;
		}
		a->smtp = p->smtp;
		a->pop3 = p->pop3;
		a->imap = p->imap;
	}
	for (int k = 0; k < 3; k++) {
		if (args->server[k] != NULL && account_set_server(args, k, servers[k]) < 0)
			return -1;
		if (args->server[k] == NULL && args->security[k] != NULL) {
			fprintf(stderr, "tern account add: --%s-security needs --%s\n",
			        account_protocols[k], account_protocols[k]);
			return -1;
		}
	}
	if (a->smtp.host[0] == '\0' && a->pop3.host[0] == '\0' && a->imap.host[0] == '\0') {
		fputs("tern account add: no servers: give --provider or --smtp/--pop3/--imap\n",
		      stderr);
		return -1;
	}
	if ((args->display_name != NULL &&
	     (strpbrk(args->display_name, "\r\n") != NULL ||
	      str_copy(a->display_name, args->display_name, sizeof(a->display_name)) >=
	          sizeof(a->display_name))) ||
	    (args->user != NULL &&
	     str_copy(a->user, args->user, sizeof(a->user)) >= sizeof(a->user)) ||
	    (args->password_command != NULL &&
	     str_copy(a->password_command, args->password_command, sizeof(a->password_command)) >=
	         sizeof(a->password_command))) {
		fputs("tern account add: a value is too long or has a line break\n", stderr);
		return -1;
	}
	if (args->ca_file != NULL) {
		char resolved[PATH_MAX];
		if (realpath(args->ca_file, resolved) == NULL || access(resolved, R_OK) < 0) {
			fprintf(stderr, "tern account add: --ca-file %s: %s\n", args->ca_file,
			        strerror(errno));
			return -1;
		}
		str_copy(a->ca_file, resolved, sizeof(a->ca_file));
	}
	if (a->user[0] == '\0')
		str_copy(a->user, a->address, sizeof(a->user));
	a->insecure = args->insecure;
	a->is_default = args->is_default;
	return 0;
}

/* Warns about choices that expose the password or the mail. */
static void
account_warn(const struct account *a)
{
	const struct account_server *servers[3] = {&a->smtp, &a->pop3, &a->imap};

	if (a->insecure)
		fprintf(stderr,
		        "tern: warning: account %s does not verify certificates "
		        "(--insecure): anyone on the network path can read the password "
		        "and the mail\n",
		        a->name);
	for (int k = 0; k < 3; k++) {
		if (servers[k]->host[0] != '\0' && servers[k]->security == CONN_SECURITY_NONE)
			fprintf(stderr,
			        "tern: warning: account %s: %s without TLS (security none) "
			        "sends the password and the mail in plain text\n",
			        a->name, account_protocols[k]);
	}
}

static int
account_add(struct account_args *args)
{
	struct tern_paths paths;
	struct account *list = NULL, a;
	size_t n = 0;
	char error[1024], path[PATH_MAX + 32];

	if (account_build(args, &a) < 0)
		return 2;
	if (account_load_all(&paths, &list, &n) < 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, a.name) == 0) {
			fprintf(stderr, "tern: account '%s' exists: remove it first\n", a.name);
			free(list);
			return 1;
		}
	}
	if (args->password_stdin && account_read_password(a.password, sizeof(a.password)) < 0) {
		free(list);
		return 1;
	}
	list = xrealloc(list, (n + 1) * sizeof(*list));
	if (a.is_default) {
		for (size_t i = 0; i < n; i++)
			list[i].is_default = false;
	}
	list[n++] = a;
	explicit_bzero(&a.password, sizeof(a.password));
	if (accounts_save(&paths, list, n, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern: %s\n", error);
		explicit_bzero(list, n * sizeof(*list));
		free(list);
		return 1;
	}
	account_warn(&list[n - 1]);
	accounts_file_path(&paths, path, sizeof(path));
	if (list[n - 1].password[0] != '\0')
		fprintf(
		    stderr,
		    "tern: the password is stored in %s (mode 0600: only you can read it).\n"
		    "      --password-command (e.g. 'pass show mail/%s') keeps it out of files.\n",
		    path, list[n - 1].name);
	printf("account %s added (%s)\n", list[n - 1].name, path);
	explicit_bzero(list, n * sizeof(*list));
	free(list);
	return 0;
}

/* Writes one server as a JSON object, or null when it is not configured. */
static void
account_json_server(const struct account_server *s)
{
	if (s->host[0] == '\0') {
		fputs("null", stdout);
		return;
	}
	fputs("{\"host\": ", stdout);
	json_write_string(stdout, s->host);
	printf(", \"port\": %d, \"security\": \"%s\"}", s->port,
	       accounts_security_name(s->security));
}

/* Writes one account as a JSON object; the password is only described. */
static void
account_json(const struct account *a)
{
	const struct {
		const char *key, *value;
	} texts[] = {{"name", a->name},
	             {"address", a->address},
	             {"display_name", a->display_name},
	             {"user", a->user},
	             {"password_command", a->password_command},
	             {"ca_file", a->ca_file}};

	fputc('{', stdout);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		printf("\"%s\": ", texts[i].key);
		json_write_string(stdout, texts[i].value);
		fputs(", ", stdout);
	}
	printf("\"password\": \"%s\", ", a->password_command[0] != '\0' ? "command"
	                                 : a->password[0] != '\0'       ? "stored"
	                                                                : "none");
	for (int k = 0; k < 3; k++) {
		const struct account_server *s = k == 0 ? &a->smtp : k == 1 ? &a->pop3 : &a->imap;
		printf("\"%s\": ", account_protocols[k]);
		account_json_server(s);
		fputs(", ", stdout);
	}
	printf("\"insecure\": %s, \"default\": %s}", a->insecure ? "true" : "false",
	       a->is_default ? "true" : "false");
}

/* "host:port security" or "-". */
static void
account_server_text(const struct account_server *s, char *buf, size_t bufsize)
{
	char hp[300];

	if (s->host[0] == '\0') {
		str_copy(buf, "-", bufsize);
		return;
	}
	accounts_format_server(s, hp, sizeof(hp));
	snprintf(buf, bufsize, "%s %s", hp, accounts_security_name(s->security));
}

static int
account_list(struct account_args *args)
{
	struct tern_paths paths;
	struct account *list = NULL;
	size_t n = 0;

	if (args->name != NULL) {
		fputs("tern account list: takes no NAME\n", stderr);
		return 2;
	}
	if (account_load_all(&paths, &list, &n) < 0)
		return 1;
	if (args->json) {
		fputc('[', stdout);
		for (size_t i = 0; i < n; i++) {
			fputs(i ? ",\n " : "", stdout);
			account_json(&list[i]);
		}
		fputs("]\n", stdout);
	} else if (n == 0) {
		fputs("no accounts: add one with tern account add\n", stderr);
	} else {
		for (size_t i = 0; i < n; i++) {
			char smtp[320], pop3[320], imap[320];
			account_server_text(&list[i].smtp, smtp, sizeof(smtp));
			account_server_text(&list[i].pop3, pop3, sizeof(pop3));
			account_server_text(&list[i].imap, imap, sizeof(imap));
			printf("%c %-12s %-28s smtp %s, pop3 %s, imap %s\n",
			       list[i].is_default ? '*' : ' ', list[i].name, list[i].address, smtp,
			       pop3, imap);
		}
	}
	free(list);
	return 0;
}

/* Finds NAME (or the default account when name is NULL); prints why not. */
static const struct account *
account_pick(const struct account *list, size_t n, const char *name)
{
	char error[512];
	const struct account *a = accounts_find(list, n, name, error, sizeof(error));

	if (a == NULL)
		fprintf(stderr, "tern: %s\n", error);
	return a;
}

static int
account_show(struct account_args *args)
{
	struct tern_paths paths;
	struct account *list = NULL;
	const struct account *a;
	size_t n = 0;
	char smtp[320], pop3[320], imap[320];

	if (args->name == NULL) {
		fputs("tern account show: NAME is required\n", stderr);
		return 2;
	}
	if (account_load_all(&paths, &list, &n) < 0)
		return 1;
	a = account_pick(list, n, args->name);
	if (a == NULL) {
		free(list);
		return 1;
	}
	if (args->json) {
		account_json(a);
		fputc('\n', stdout);
		free(list);
		return 0;
	}
	account_server_text(&a->smtp, smtp, sizeof(smtp));
	account_server_text(&a->pop3, pop3, sizeof(pop3));
	account_server_text(&a->imap, imap, sizeof(imap));
	printf("name:      %s\naddress:   %s\n", a->name, a->address);
	printf("from name: %s\n", a->display_name[0] != '\0' ? a->display_name : "-");
	printf("smtp:      %s\npop3:      %s\nimap:      %s\n", smtp, pop3, imap);
	printf("user:      %s\n", a->user);
	if (a->password_command[0] != '\0')
		printf("password:  command: %s\n", a->password_command);
	else if (a->password[0] != '\0')
		printf("password:  stored (mode 0600)\n");
	else
		printf("password:  none\n");
	printf("ca file:   %s\n", a->ca_file[0] != '\0' ? a->ca_file : "system CAs");
	printf("verify:    %s\n", a->insecure ? "no (insecure)" : "yes");
	printf("default:   %s\n", a->is_default ? "yes" : "no");
	free(list);
	return 0;
}

static int
account_remove(struct account_args *args)
{
	struct tern_paths paths;
	struct account *list = NULL;
	const struct account *a;
	size_t n = 0, at;
	char error[1024];

	if (args->name == NULL) {
		fputs("tern account remove: NAME is required\n", stderr);
		return 2;
	}
	if (account_load_all(&paths, &list, &n) < 0)
		return 1;
	a = account_pick(list, n, args->name);
	if (a == NULL) {
		free(list);
		return 1;
	}
	at = (size_t)(a - list);
	memmove(&list[at], &list[at + 1], (n - at - 1) * sizeof(*list));
	n--;
	if (accounts_save(&paths, list, n, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern: %s\n", error);
		explicit_bzero(list, (n + 1) * sizeof(*list));
		free(list);
		return 1;
	}
	printf("account %s removed\n", args->name);
	explicit_bzero(list, (n + 1) * sizeof(*list));
	free(list);
	return 0;
}

/* Connects to one server with its protocol's client and logs in; 0 or -1 with error. */
static int
account_test_one(const struct account *a, int k, const char *password, char *error, size_t errsize)
{
	const struct account_server *s = k == 0 ? &a->smtp : k == 1 ? &a->pop3 : &a->imap;
	struct conn_options conn;

	account_conn_options(a, s, &conn);
	if (k == 0) {
		struct smtp_client_options o = {.conn = conn};
		struct smtp_client *client = NULL;
		if (password[0] != '\0') {
			o.user = a->user;
			o.password = password;
		}
		if (smtp_client_open(&o, &client, error, errsize) < 0)
			return -1;
		smtp_client_close(&client);
		if (password[0] == '\0')
			snprintf(error, errsize, "connected (no password: login not tried)");
		return 0;
	}
	if (password[0] == '\0') {
		snprintf(error, errsize, "no password configured");
		return -1;
	}
	if (k == 1) {
		struct pop3_client *client = NULL;
		if (pop3_client_open(&conn, a->user, password, &client, error, errsize) < 0)
			return -1;
		if (pop3_client_quit(&client, error, errsize) < 0)
			return -1;
	} else {
		struct imap_client *client = NULL;
		if (imap_client_open(&conn, a->user, password, &client, error, errsize) < 0)
			return -1;
		imap_client_logout(&client);
	}
	return 0;
}

static int
account_test(struct account_args *args)
{
	struct tern_paths paths;
	struct account *list = NULL;
	const struct account *a;
	size_t n = 0;
	char password[256], error[1024];
	int failed = 0;

	if (account_load_all(&paths, &list, &n) < 0)
		return 1;
	a = account_pick(list, n, args->name);
	if (a == NULL) {
		free(list);
		return 1;
	}
	account_warn(a);
	if (account_password(a, password, sizeof(password), error, sizeof(error)) < 0) {
		fprintf(stderr, "tern: account %s: %s\n", a->name, error);
		free(list);
		return 1;
	}
	for (int k = 0; k < 3; k++) {
		const struct account_server *s = k == 0 ? &a->smtp : k == 1 ? &a->pop3 : &a->imap;
		char hp[300];

		if (s->host[0] == '\0')
			continue;
		accounts_format_server(s, hp, sizeof(hp));
		error[0] = '\0';
		if (account_test_one(a, k, password, error, sizeof(error)) < 0) {
			printf("%-5s %s  %s  error: %s\n", account_protocols[k], hp,
			       accounts_security_name(s->security), error);
			failed = 1;
		} else {
			printf("%-5s %s  %s  %s\n", account_protocols[k], hp,
			       accounts_security_name(s->security),
			       error[0] != '\0' ? error : "login ok");
		}
		fflush(stdout);
	}
	explicit_bzero(password, sizeof(password));
	free(list);
	return failed;
}
