/* Fuzz target: MAIL/RCPT arguments, bare addresses and xtext, with cross-checks between the
 * address validator and the path parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ASCII lower-casing, as the parser does for domains. */
static char
fuzz_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* A valid bare address wrapped as "TO:<...>" must parse to itself with the domain lowered. */
static void
fuzz_check_roundtrip(const char *address, size_t len)
{
	char args[SMTP_PATH_MAX + 8];
	struct smtp_path path;
	struct smtp_reply reply;
	const char *domain;
	size_t local_len;

	memcpy(args, "TO:<", 4);
	memcpy(args + 4, address, len);
	memcpy(args + 4 + len, ">", 2);
	if (smtp_parse_rcpt(args, &path, &reply) < 0)
		abort();
	if (strlen(path.address) != len)
		abort();
	domain = smtp_address_domain(address);
	local_len = (size_t)(domain - address) - 1;
	if (path.local_len != local_len || memcmp(path.address, address, local_len) != 0)
		abort();
	for (size_t i = local_len; i < len; i++) {
		if (path.address[i] != fuzz_lower(address[i]))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_path path;
	struct smtp_mail_params params;
	struct smtp_reply reply;
	char *args, xtext[SMTP_PATH_MAX + 1];

	if (size > 2 * SMTP_LINE_MAX)
		return 0;
	args = malloc(size + 1);
	if (args == NULL)
		return 0;
	memcpy(args, data, size);
	args[size] = '\0';

	if (smtp_address_valid(args, size))
		fuzz_check_roundtrip(args, size);
	if (smtp_parse_mail(args, &path, &params, &reply) == 0) {
		if (!path.null_path && !smtp_address_valid(path.address, strlen(path.address)))
			abort();
		if (strlen(params.auth) > SMTP_PATH_MAX)
			abort();
	} else if (reply.code != 501 && reply.code != 555) {
		abort();
	}
	if (smtp_parse_rcpt(args, &path, &reply) == 0) {
		if (path.null_path)
			abort();
	} else if (reply.code != 501 && reply.code != 555) {
		abort();
	}
	if (smtp_xtext_decode(args, xtext, sizeof(xtext)) == 0 && strlen(xtext) > strlen(args))
		abort();
	free(args);
	return 0;
}
