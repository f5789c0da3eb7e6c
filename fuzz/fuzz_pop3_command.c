/* Fuzz target: one POP3 command line through pop3_command_parse, then its arguments through the
 * number parsers, checking what a successful parse promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A parsed number must print back to the digits it came from (leading zeros aside). */
static void
fuzz_check_number(const char *arg)
{
	uint32_t n, m;
	int u = pop3_parse_uint(arg, &n);
	int msg = pop3_parse_msgnum(arg, &m);

	if (msg == 0 && (u != 0 || m != n || m == 0))
		abort();
	if (u == 0 && msg != 0 && n != 0)
		abort();
	if (u == 0) {
		uint64_t check = 0;

		if (arg[0] == '\0' || strlen(arg) > 10)
			abort();
		for (const char *p = arg; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				abort();
			check = check * 10 + (uint64_t)(*p - '0');
		}
		if (check != n)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_command cmd;
	const char *error = NULL;
	char *line;

	if (size > 2 * POP3_SASL_LINE_MAX)
		return 0;
	line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	if (pop3_command_parse(line, size, &cmd, &error) < 0) {
		if (error == NULL || memchr(cmd.verb_text, '\0', sizeof(cmd.verb_text)) == NULL)
			abort();
		free(line);
		return 0;
	}
	if (size + 2 > POP3_SASL_LINE_MAX || cmd.nargs > 2)
		abort();
	if (cmd.verb != POP3_VERB_AUTH && size + 2 > POP3_LINE_MAX)
		abort();
	for (size_t i = 0; i < 2; i++) {
		const char *a = cmd.args[i];
		size_t len = strlen(a);

		if ((i < cmd.nargs) != (len > 0))
			abort();
		/* No control bytes survive; arguments other than PASS's hold no spaces. */
		for (const char *p = a; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
			if (*p == ' ' && cmd.verb != POP3_VERB_PASS)
				abort();
		}
		if (len > POP3_ARG_MAX && cmd.verb != POP3_VERB_PASS &&
		    cmd.verb != POP3_VERB_USER && !(cmd.verb == POP3_VERB_AUTH && i == 1))
			abort();
		/* Arguments point into the line. */
		if (len > 0 && (a < line || a + len > line + size))
			abort();
		fuzz_check_number(a);
	}
	free(line);
	return 0;
}
