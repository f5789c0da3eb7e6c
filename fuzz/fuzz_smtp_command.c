/* Fuzz target: one SMTP command line through smtp_command_parse and on to the MAIL, RCPT and
 * HELO argument parsers, checking what a successful parse promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A parsed path must hold an address that the validator accepts, split where it says. */
static void
fuzz_check_path(const struct smtp_path *path)
{
	size_t len = strlen(path->address);

	if (path->null_path) {
		if (len != 0)
			abort();
		return;
	}
	if (len > SMTP_PATH_MAX - 2 || path->local_len >= len + 1)
		abort();
	if (strcmp(path->address, "postmaster") == 0)
		return;
	if (path->address[path->local_len] != '@' || !smtp_address_valid(path->address, len))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_command cmd;
	struct smtp_path path;
	struct smtp_mail_params params;
	struct smtp_reply reply;
	char *line;

	if (size > 4 * SMTP_LINE_MAX)
		return 0;
	line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	if (smtp_command_parse(line, size, &cmd) < 0) {
		if (memchr(cmd.verb_text, '\0', sizeof(cmd.verb_text)) == NULL)
			abort();
		free(line);
		return 0;
	}
	/* After a successful parse the line holds no control bytes other than TAB. */
	for (const char *p = cmd.args; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 && *p != '\t')
			abort();
	}
	switch (cmd.verb) {
	case SMTP_VERB_MAIL:
		if (smtp_parse_mail(cmd.args, &path, &params, &reply) == 0)
			fuzz_check_path(&path);
		else if (reply.code == 0 || reply.status == NULL || reply.text == NULL)
			abort();
		break;
	case SMTP_VERB_RCPT:
		if (smtp_parse_rcpt(cmd.args, &path, &reply) == 0)
			fuzz_check_path(&path);
		else if (reply.code == 0 || reply.status == NULL || reply.text == NULL)
			abort();
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		(void)smtp_helo_valid(cmd.args);
		break;
	default:
		break;
	}
	free(line);
	return 0;
}
