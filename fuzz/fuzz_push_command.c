/* Fuzz target: one push command line through push_command_parse, then WATCH's arguments through
 * push_watch_parse, and every parsed argument back through push_name_quote and the parser,
 * checking what a successful parse promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "push/push_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A name quoted by push_name_quote parses back to itself. */
static void
fuzz_check_quote(const char *name)
{
	char quoted[2 * PUSH_LINE_MAX + 16], line[2 * PUSH_LINE_MAX + 32];
	struct push_command cmd;
	const char *error;
	size_t n = push_name_quote(name, quoted, sizeof(quoted));

	if (n >= sizeof(quoted) || strlen(quoted) != n)
		abort();
	memcpy(line, "WATCH ", 6);
	memcpy(line + 6, quoted, n + 1);
	/* Long names make long lines: only those within the limit must parse. */
	if (push_command_parse(line, n + 6, &cmd, &error) < 0) {
		if (n + 6 <= PUSH_LINE_MAX)
			abort();
		return;
	}
	if (cmd.nargs != 1 || strcmp(cmd.args[0], name) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct push_command cmd;
	struct push_watch w;
	const char *error = NULL;
	char *line;

	if (size > 2 * PUSH_LINE_MAX)
		return 0;
	line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	if (push_command_parse(line, size, &cmd, &error) < 0) {
		if (error == NULL || memchr(cmd.verb_text, '\0', sizeof(cmd.verb_text)) == NULL)
			abort();
		free(line);
		return 0;
	}
	if (size > PUSH_LINE_MAX || cmd.nargs > PUSH_ARGS_MAX)
		abort();
	for (size_t i = 0; i < cmd.nargs; i++) {
		const char *a = cmd.args[i];

		if (a < line || a > line + size || a + strlen(a) > line + size)
			abort();
		for (const char *p = a; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
			if (*p == ' ' && !cmd.quoted[i])
				abort();
		}
		fuzz_check_quote(a);
	}
	if (cmd.verb == PUSH_VERB_WATCH && push_watch_parse(&cmd, &w, &error) == 0) {
		if (w.n == 0 || w.n > PUSH_WATCH_MAX)
			abort();
		for (size_t i = 0; i < w.n; i++) {
			size_t len = strlen(w.mailboxes[i]);

			if (len == 0 || len > PUSH_MAILBOX_NAME_MAX ||
			    !push_utf8_valid(w.mailboxes[i], len))
				abort();
			for (size_t j = 0; j < i; j++) {
				if (strcmp(w.mailboxes[i], w.mailboxes[j]) == 0)
					abort();
			}
		}
	}
	free(line);
	return 0;
}
