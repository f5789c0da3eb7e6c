/* tern shell: an interactive prompt over the tern commands, with line editing, history and
 * completion (libedit); reads plain lines when stdin is not a terminal, so commands can be
 * piped in. */
#include <errno.h>
#include <getopt.h>
#include <histedit.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"
#include "tern/accounts.h"
#include "tern/cli.h"
#include "tern/tern.h"

#define SHELL_MAX_ARGS 256
#define SHELL_HISTORY_SIZE 1000

struct shell {
	EditLine *el;
	History *hist;
	bool tty;
	bool quit;
	const char *prompt; /* what the prompt function shows now */
	char history_path[PATH_MAX];
	struct cli_screen_map map;
	char *line; /* getline buffer when not on a terminal */
	size_t line_cap;
};

struct shell_command {
	const char *name;
	int (*fn)(struct shell *sh, int argc, char **argv);
	const char *args;
	const char *help;
	const char *options; /* completed after the command name, space-separated */
};

static volatile sig_atomic_t shell_interrupted;

static int shell_cmd_help(struct shell *sh, int argc, char **argv);

static void
shell_sigint(int sig)
{
	shell_interrupted = 1;
}

static char *
shell_prompt_fn(EditLine *el)
{
	struct shell *sh = NULL;

	el_get(el, EL_CLIENTDATA, &sh);
	return (char *)(sh != NULL ? sh->prompt : "tern> ");
}

/* Reads one line with prompt, without its newline. NULL at end of input or when Ctrl-C was
 * pressed (shell_interrupted set); the line lives until the next call. */
static const char *
shell_read_line(struct shell *sh, const char *prompt)
{
	const char *s;
	ssize_t len;
	int count = 0;

	shell_interrupted = 0;
	if (!sh->tty) {
		len = getline(&sh->line, &sh->line_cap, stdin);
		if (len < 0)
			return NULL;
		while (len > 0 && (sh->line[len - 1] == '\n' || sh->line[len - 1] == '\r'))
			sh->line[--len] = '\0';
		return sh->line;
	}
	sh->prompt = prompt;
	s = el_gets(sh->el, &count);
	if (s == NULL || count <= 0) {
		if (count < 0 && (errno == EINTR || shell_interrupted)) {
			shell_interrupted = 1;
			fputc('\n', stdout);
		}
		return NULL;
	}
	free(sh->line);
	sh->line = xstrdup(s);
	sh->line_cap = strlen(s) + 1;
	len = (ssize_t)strlen(sh->line);
	while (len > 0 && (sh->line[len - 1] == '\n' || sh->line[len - 1] == '\r'))
		sh->line[--len] = '\0';
	return sh->line;
}

/* Splits a line into words: blanks separate, "..." and '...' group (with \" and \\ inside
 * double quotes), a backslash outside quotes takes the next character. Returns the count, or
 * -1 with error for an unterminated quote or too many words. */
static int
shell_tokenize(const char *line, char **argv, int max, const char **error_r)
{
	size_t len = strlen(line);
	char *word = xmalloc(len + 1);
	int argc = 0;
	const char *p = line;

	for (;;) {
		size_t w = 0;
		bool have = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		while (*p != '\0' && *p != ' ' && *p != '\t') {
			have = true;
			if (*p == '\'' || *p == '"') {
				char q = *p++;
				while (*p != '\0' && *p != q) {
					if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
						p++;
					word[w++] = *p++;
				}
				if (*p != q) {
					*error_r = "unterminated quote";
					goto fail;
				}
				p++;
			} else if (*p == '\\' && p[1] != '\0') {
				word[w++] = p[1];
				p += 2;
			} else {
				word[w++] = *p++;
			}
		}
		if (have) {
			if (argc >= max - 1) {
				*error_r = "too many words";
				goto fail;
			}
			argv[argc++] = xstrndup(word, w);
		}
	}
	argv[argc] = NULL;
	free(word);
	return argc;
fail:
	while (argc > 0)
		free(argv[--argc]);
	free(word);
	return -1;
}

/* Runs a tern command with fresh getopt state, keeping the shell's own Ctrl-C handling. */
static int
shell_run(int (*fn)(int, char **), int argc, char **argv)
{
	int ret;

	optind = 0;
	opterr = 1;
	ret = fn(argc, argv);
	fflush(stdout);
	fflush(stderr);
	return ret;
}

static int
shell_cmd_list(struct shell *sh, int argc, char **argv)
{
	int ret;

	cli_screen_map = &sh->map;
	ret = shell_run(strcmp(argv[0], "search") == 0 ? cmd_search : cmd_list, argc, argv);
	cli_screen_map = NULL;
	return ret;
}

/* Replaces the message argument at argv[i]: a screen number from the last list, or #ID. */
static int
shell_map_message(struct shell *sh, char **argv, int i)
{
	int64_t n;
	char *end;

	if (argv[i][0] == '#')
		return 0;
	n = strtoll(argv[i], &end, 10);
	if (*end != '\0' || n <= 0) {
		fprintf(stderr,
		        "'%s' is not a message number: use the number 'list' shows, or #ID "
		        "for a store id\n",
		        argv[i]);
		return -1;
	}
	if (sh->map.n == 0) {
		fprintf(stderr, "no list yet: run 'list' or 'search' first, or use #ID\n");
		return -1;
	}
	if ((uint64_t)n > sh->map.n) {
		fprintf(stderr, "no message %" PRId64 " in the last list (1-%zu)\n", n, sh->map.n);
		return -1;
	}
	free(argv[i]);
	argv[i] = xasprintf("#%" PRId64, sh->map.ids[n - 1]);
	return 0;
}

static int
shell_cmd_show(struct shell *sh, int argc, char **argv)
{
	int target = -1;

	for (int i = 1; i < argc; i++) {
		if (argv[i][0] != '-') {
			target = i;
			break;
		}
	}
	if (target < 0) {
		fprintf(stderr, "usage: %s N|#ID%s\n", argv[0],
		        strcmp(argv[0], "show") == 0 ? " [--html|--raw|--headers]" : " DIR");
		return CLI_USAGE;
	}
	if (shell_map_message(sh, argv, target) < 0)
		return CLI_USAGE;
	return shell_run(strcmp(argv[0], "show") == 0 ? cmd_show : cmd_save_attachments, argc,
	                 argv);
}

static int
shell_cmd_pass(struct shell *sh, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} pass[] = {
	    {"fetch", cmd_fetch},   {"account", cmd_account}, {"import", cmd_import},
	    {"export", cmd_export}, {"send", cmd_send},
	};

	for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
		if (strcmp(argv[0], pass[i].name) == 0)
			return shell_run(pass[i].fn, argc, argv);
	return CLI_USAGE;
}

static int
shell_cmd_accounts(struct shell *sh, int argc, char **argv)
{
	char *args[] = {(char *)"account", (char *)"list", NULL};

	if (argc > 1) {
		fprintf(stderr, "usage: accounts   (see 'account --help' for the rest)\n");
		return CLI_USAGE;
	}
	return shell_run(cmd_account, 2, args);
}

/* Splits "a@x, b@y" into --to arguments appended to args. */
static void
shell_add_addresses(const char *list, const char *option, char **args, int *n, int max)
{
	char *copy = xstrdup(list), *save = NULL;

	for (char *tok = strtok_r(copy, ", \t", &save); tok != NULL && *n < max - 3;
	     tok = strtok_r(NULL, ", \t", &save)) {
		args[(*n)++] = xstrdup(option);
		args[(*n)++] = xstrdup(tok);
	}
	free(copy);
}

/* Interactive send: prompts for recipients and subject, reads the body up to a line holding
 * only ".", then hands a temporary file to `tern send --text`. */
static int
shell_cmd_send(struct shell *sh, int argc, char **argv)
{
	char *args[64], tmp[] = "/tmp/tern-body-XXXXXX";
	const char *s;
	FILE *body;
	int n = 0, fd, ret = CLI_ERROR;

	if (argc > 1)
		return shell_cmd_pass(sh, argc, argv);
	args[n++] = xstrdup("send");
	if ((s = shell_read_line(sh, "To: ")) == NULL || *s == '\0')
		goto cancel;
	shell_add_addresses(s, "--to", args, &n, 60);
	if ((s = shell_read_line(sh, "Cc: ")) == NULL)
		goto cancel;
	shell_add_addresses(s, "--cc", args, &n, 60);
	if ((s = shell_read_line(sh, "Subject: ")) == NULL)
		goto cancel;
	args[n++] = xstrdup("--subject");
	args[n++] = xstrdup(s);
	fd = mkstemp(tmp);
	if (fd < 0 || (body = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "send: cannot make a temporary file: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (sh->tty)
		printf("Type the message; end it with a line holding only '.'\n");
	while ((s = shell_read_line(sh, "")) != NULL && strcmp(s, ".") != 0)
		fprintf(body, "%s\n", s);
	if (fclose(body) != 0 || (s == NULL && shell_interrupted)) {
		unlink(tmp);
		goto cancel;
	}
	args[n++] = xstrdup("--text");
	args[n++] = xstrdup(tmp);
	args[n] = NULL;
	ret = shell_run(cmd_send, n, args);
	unlink(tmp);
	goto out;
cancel:
	fprintf(stderr, "send: cancelled\n");
out:
	while (n > 0)
		free(args[--n]);
	return ret;
}

static int
shell_cmd_quit(struct shell *sh, int argc, char **argv)
{
	sh->quit = true;
	return CLI_OK;
}

static const struct shell_command shell_commands[] = {
    {"list", shell_cmd_list, "[--folder F] [--unread] [-n N]", "list messages, numbered",
     "--folder --account --unread --limit --json --help"},
    {"show", shell_cmd_show, "N|#ID [--html|--raw|--headers]", "read a message",
     "--html --raw --headers --help"},
    {"search", shell_cmd_list, "QUERY...", "search (from: subject: is:unread ...)",
     "--limit --json --help"},
    {"fetch", shell_cmd_pass, "[--account A] [--delete] ...", "download new mail",
     "--account --protocol --keep --delete --folder --json --help"},
    {"send", shell_cmd_send, "[--to A --subject S ...]", "write a message (prompts)",
     "--to --cc --bcc --subject --text --html --attach --account --raw --help"},
    {"save-attachments", shell_cmd_show, "N|#ID DIR", "save a message's attachments", ""},
    {"accounts", shell_cmd_accounts, "", "list the accounts", ""},
    {"account", shell_cmd_pass, "add|list|show|remove|test ...", "manage accounts",
     "add list show remove test --help"},
    {"import", shell_cmd_pass, "FILE.eml|DIR [--folder F]", "copy messages in", "--folder --help"},
    {"export", shell_cmd_pass, "DIR | --mbox FILE", "copy messages out",
     "--folder --account --mbox --help"},
    {"help", shell_cmd_help, "", "this list", ""},
    {"quit", shell_cmd_quit, "", "leave (also exit, Ctrl-D)", ""},
    {"exit", shell_cmd_quit, "", "leave", ""},
};
static const size_t shell_ncommands = sizeof(shell_commands) / sizeof(shell_commands[0]);

static int
shell_cmd_help(struct shell *sh, int argc, char **argv)
{
	printf("Commands (each CLI command also takes --help):\n");
	for (size_t i = 0; i < shell_ncommands; i++) {
		char *usage = xasprintf("%s %s", shell_commands[i].name, shell_commands[i].args);
		printf("  %-36s %s\n", usage, shell_commands[i].help);
		free(usage);
	}
	printf("Words group with \"double\" or 'single' quotes. 'list' and 'search' number the\n"
	       "messages 1..N; 'show N' reads the Nth, 'show #ID' the message with store id ID.\n");
	return CLI_OK;
}

static const struct shell_command *
shell_find(const char *name)
{
	for (size_t i = 0; i < shell_ncommands; i++)
		if (strcmp(shell_commands[i].name, name) == 0)
			return &shell_commands[i];
	return NULL;
}

/* Tab: completes the command name, or after it one of the command's options. */
static unsigned char
shell_complete(EditLine *el, int ch)
{
	const LineInfo *li = el_line(el);
	const char *start = li->cursor, *cands[64];
	char first[64], words[512];
	size_t plen, ncands = 0, common;
	bool at_first;

	while (start > li->buffer && start[-1] != ' ' && start[-1] != '\t')
		start--;
	plen = (size_t)(li->cursor - start);
	at_first = true;
	for (const char *p = li->buffer; p < start; p++)
		if (*p != ' ' && *p != '\t')
			at_first = false;
	if (at_first) {
		for (size_t i = 0; i < shell_ncommands && ncands < 64; i++)
			if (strncmp(shell_commands[i].name, start, plen) == 0)
				cands[ncands++] = shell_commands[i].name;
	} else {
		const struct shell_command *cmd;
		const char *b = li->buffer;
		size_t flen;
		char *save = NULL;

		while (*b == ' ' || *b == '\t')
			b++;
		flen = strcspn(b, " \t");
		if (flen >= sizeof(first))
			return CC_ERROR;
		memcpy(first, b, flen);
		first[flen] = '\0';
		if ((cmd = shell_find(first)) == NULL)
			return CC_ERROR;
		str_copy(words, cmd->options, sizeof(words));
		for (char *w = strtok_r(words, " ", &save); w != NULL && ncands < 64;
		     w = strtok_r(NULL, " ", &save))
			if (strncmp(w, start, plen) == 0)
				cands[ncands++] = w;
	}
	if (ncands == 0)
		return CC_ERROR;
	if (ncands == 1) {
		char *rest = xasprintf("%s ", cands[0] + plen);
		el_insertstr(el, rest);
		free(rest);
		return CC_REFRESH;
	}
	common = strlen(cands[0]);
	for (size_t i = 1; i < ncands; i++) {
		size_t j = 0;
		while (j < common && cands[i][j] == cands[0][j])
			j++;
		common = j;
	}
	if (common > plen) {
		char *rest = xstrndup(cands[0] + plen, common - plen);
		el_insertstr(el, rest);
		free(rest);
		return CC_REFRESH;
	}
	fputc('\n', stdout);
	for (size_t i = 0; i < ncands; i++)
		printf("%s%s", cands[i], i + 1 < ncands ? "  " : "\n");
	fflush(stdout);
	return CC_REDISPLAY;
}

/* Sets up libedit, history (DATA/history) and completion. Returns 0 or -1. */
static int
shell_init_editor(struct shell *sh)
{
	HistEvent ev;

	sh->el = el_init("tern", stdin, stdout, stderr);
	sh->hist = history_init();
	if (sh->el == NULL || sh->hist == NULL)
		return -1;
	history(sh->hist, &ev, H_SETSIZE, SHELL_HISTORY_SIZE);
	history(sh->hist, &ev, H_SETUNIQUE, 1);
	if (sh->history_path[0] != '\0')
		history(sh->hist, &ev, H_LOAD, sh->history_path);
	el_set(sh->el, EL_CLIENTDATA, sh);
	el_set(sh->el, EL_EDITOR, "emacs");
	el_set(sh->el, EL_SIGNAL, 1);
	el_set(sh->el, EL_PROMPT, shell_prompt_fn);
	el_set(sh->el, EL_HIST, history, sh->hist);
	el_set(sh->el, EL_ADDFN, "tern-complete", "complete a command or option", shell_complete);
	el_set(sh->el, EL_BIND, "^I", "tern-complete", NULL);
	el_source(sh->el, NULL);
	return 0;
}

/* Runs one command line. */
static void
shell_execute(struct shell *sh, const char *line)
{
	char *argv[SHELL_MAX_ARGS];
	const struct shell_command *cmd;
	const char *error = NULL;
	int argc = shell_tokenize(line, argv, SHELL_MAX_ARGS, &error);

	if (argc < 0) {
		fprintf(stderr, "%s\n", error);
		return;
	}
	if (argc == 0)
		return;
	cmd = shell_find(argv[0]);
	if (cmd == NULL)
		fprintf(stderr, "unknown command '%s'; 'help' lists them\n", argv[0]);
	else
		cmd->fn(sh, argc, argv);
	fflush(stdout);
	while (argc > 0)
		free(argv[--argc]);
}

int
cmd_shell(int argc, char **argv)
{
	struct shell sh;
	struct tern_paths paths;
	struct sigaction sa, old_sa;
	char error[512];
	HistEvent ev;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf(
		    "usage: tern shell\n"
		    "  An interactive prompt: list, show N, search, fetch, send, accounts, help,\n"
		    "  quit. Line editing, history (kept in the data directory) and Tab\n"
		    "  completion on a terminal; commands are read line by line from a pipe.\n");
		return CLI_OK;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: tern shell\n");
		return CLI_USAGE;
	}
	memset(&sh, 0, sizeof(sh));
	sh.prompt = "tern> ";
	sh.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	if (tern_paths_get(&paths, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern shell: %s\n", error);
		return CLI_ERROR;
	}
	if (sh.tty) {
		if (strlen(paths.data_dir) + sizeof("/history") <= sizeof(sh.history_path)) {
			memcpy(sh.history_path, paths.data_dir, strlen(paths.data_dir));
			strcat(sh.history_path, "/history");
		}
		if (shell_init_editor(&sh) < 0) {
			fprintf(stderr, "tern shell: cannot set up line editing\n");
			return CLI_ERROR;
		}
		printf("tern %s shell: 'help' lists the commands, 'quit' or Ctrl-D leaves.\n",
		       "0.1.0");
	}
	/* Ctrl-C abandons the line being typed, not the shell (no SA_RESTART: reads return). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = shell_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_sa);
	while (!sh.quit) {
		const char *line = shell_read_line(&sh, "tern> ");

		if (line == NULL) {
			if (shell_interrupted && sh.tty)
				continue;
			if (sh.tty)
				fputc('\n', stdout);
			break;
		}
		if (sh.tty && line[strspn(line, " \t")] != '\0') {
			history(sh.hist, &ev, H_ENTER, line);
			history(sh.hist, &ev, H_SAVE, sh.history_path);
		}
		shell_execute(&sh, line);
	}
	sigaction(SIGINT, &old_sa, NULL);
	if (sh.el != NULL)
		el_end(sh.el);
	if (sh.hist != NULL)
		history_end(sh.hist);
	free(sh.line);
	free(sh.map.ids);
	return CLI_OK;
}
