/* tern: the mail client: accounts, sending, fetching, the local store and the shell.
 * Exit statuses: 0 done, 1 error (said on stderr), 2 usage, 130 interrupted. */
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "mime/summary.h"
#include "tern/tern.h"

static void
tern_usage(FILE *fp)
{
	fputs(
	    "usage: tern COMMAND [OPTIONS]\n"
	    "\n"
	    "Commands:\n"
	    "  account add|list|show|remove|test ...   manage mail accounts\n"
	    "  send --to ADDR --subject TEXT [...]    send a message\n"
	    "  fetch [--account NAME] [--protocol pop3|imap] [--keep|--delete] [--folder NAME]\n"
	    "        [--json]                         download new mail into the local store\n"
	    "  list [--folder NAME] [--account NAME] [--unread] [--limit N] [--json]\n"
	    "                                         list stored messages, newest first\n"
	    "  show ID [--html|--raw|--headers]       read a message\n"
	    "  search QUERY... [--limit N] [--json]   search (from: to: subject: before: after:\n"
	    "                                         has:attachment is:unread, free words)\n"
	    "  save-attachments ID DIR                write a message's attachments into DIR\n"
	    "  import FILE.eml|DIR [--folder NAME]    copy .eml files into the store\n"
	    "  export [--folder NAME] [--account NAME] DIR | --mbox FILE\n"
	    "                                         copy messages out as .eml files or an mbox\n"
	    "  watch [--account NAME] [--via idle|push] [--mailbox NAME] [--notify] [--fetch]\n"
	    "        [--exec CMD] [--json]            stay connected and report new mail as it\n"
	    "                                         arrives (IMAP IDLE or tern push)\n"
	    "  shell                                  interactive prompt with history and "
	    "completion\n"
	    "\n"
	    "'tern COMMAND --help' describes one command. Accounts live in\n"
	    "$XDG_CONFIG_HOME/tern, mail in $XDG_DATA_HOME/tern, or both in $TERN_HOME.\n",
	    fp);
}

/* Character handling follows the environment (LC_CTYPE only: numbers, dates and messages stay
 * in the C locale). libedit reads what is typed at the shell's prompt as multibyte characters of
 * that locale, so in the plain C/POSIX locale, where every byte above 127 is invalid, it would
 * drop "ü" from "search Grüße". tern's text is UTF-8 everywhere, so a C/POSIX (ASCII) or unknown
 * locale falls back to C.UTF-8 when the system has it. */
static void
tern_locale_init(void)
{
	const char *codeset;

	if (setlocale(LC_CTYPE, "") != NULL) {
		codeset = nl_langinfo(CODESET);
		if (strcmp(codeset, "ANSI_X3.4-1968") != 0 && strcmp(codeset, "US-ASCII") != 0 &&
		    strcmp(codeset, "ASCII") != 0)
			return;
	}
	if (setlocale(LC_CTYPE, "C.UTF-8") == NULL && setlocale(LC_CTYPE, "C.utf8") == NULL)
		setlocale(LC_CTYPE, "C");
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} commands[] = {
	    {"account", cmd_account},
	    {"send", cmd_send},
	    {"fetch", cmd_fetch},
	    {"list", cmd_list},
	    {"show", cmd_show},
	    {"search", cmd_search},
	    {"save-attachments", cmd_save_attachments},
	    {"import", cmd_import},
	    {"export", cmd_export},
	    {"shell", cmd_shell},
	    {"watch", cmd_watch},
	};
	int ret;

	/* A closed pipe (tern list | head) is a write error, not a silent death mid-commit. */
	signal(SIGPIPE, SIG_IGN);
	tern_locale_init();
	log_init("tern");
	log_set_level(LOG_WARN);
	if (argc < 2) {
		tern_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		tern_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("tern 0.1.0\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		mime_init();
		ret = commands[i].fn(argc - 1, argv + 1);
		if (fflush(stdout) != 0 && ret == 0)
			ret = 1;
		mime_deinit();
		return ret;
	}
	if (argv[1][0] == '-')
		fprintf(stderr, "tern: unknown option '%s'; see 'tern --help'\n", argv[1]);
	else
		fprintf(stderr, "tern: unknown command '%s'; see 'tern --help'\n", argv[1]);
	return 2;
}
