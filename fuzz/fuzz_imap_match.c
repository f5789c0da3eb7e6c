/* fuzz_imap_match: SEARCH programs and message content.
 *
 * The input's first line is a search program ("t SEARCH <line>" through the real imap_parser,
 * 8-bit quoted strings allowed); the rest is a message. When the program parses it is bound to
 * a four-message mailbox and evaluated against index records in the three stages the server
 * uses (index only, header, whole message). Checks beyond "no crash": the whole message always
 * decides (never -1), an earlier stage that decides agrees with it, and the line also goes
 * through imap_match_date_parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_match.h"
#include "imap/imap_parser.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct imap_match_msg fuzz_msgs[] = {
    {1, 3, STORE_FLAG_SEEN, false, true, 1000, 1704196800, 5, "$Forwarded Work"},
    {2, 7, STORE_FLAG_FLAGGED | STORE_FLAG_ANSWERED, true, true, 5000, 1707991200, 9, NULL},
    {3, 8, STORE_FLAG_DELETED | STORE_FLAG_DRAFT, false, false, 0, 0, 2, "work"},
    {4, 50, 0, true, true, 300, -86400, 0, ""},
};

static void
fuzz_eval(const struct imap_match *m, const char *msg, size_t len)
{
	struct imap_match_content *head =
	    imap_match_content_from_buffer(msg, len, IMAP_MATCH_NEED_HEADER);
	struct imap_match_content *full =
	    imap_match_content_from_buffer(msg, len, IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY);

	for (size_t i = 0; i < sizeof(fuzz_msgs) / sizeof(fuzz_msgs[0]); i++) {
		int r0 = imap_match_eval(m, &fuzz_msgs[i], NULL);
		int r1 = imap_match_eval(m, &fuzz_msgs[i], head);
		int r2 = imap_match_eval(m, &fuzz_msgs[i], full);

		if (r2 < 0 || (r0 >= 0 && r0 != r2) || (r1 >= 0 && r1 != r2))
			abort();
	}
	imap_match_content_free(&head);
	imap_match_content_free(&full);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct imap_parser_limits limits = {.utf8 = true};
	const char *nl = memchr(data, '\n', size);
	size_t keys_len = nl != NULL ? (size_t)(nl - (const char *)data) : size;
	const char *msg = nl != NULL ? nl + 1 : "";
	size_t msg_len = nl != NULL ? size - keys_len - 1 : 0;
	char *line = malloc(keys_len + 16), *date = malloc(keys_len + 1);
	struct imap_parser *p = imap_parser_new(&limits);
	size_t len = 0, off = 0, used;
	int32_t day;
	int ret;

	memcpy(date, data, keys_len);
	date[keys_len] = '\0';
	imap_match_date_parse(date, &day);
	len = (size_t)snprintf(line, keys_len + 16, "t SEARCH ");
	memcpy(line + len, data, keys_len);
	len += keys_len;
	memcpy(line + len, "\r\n", 2);
	len += 2;
	do {
		ret = imap_parser_feed(p, line + off, len - off, &used);
		off += used;
	} while ((ret == IMAP_PARSE_LITERAL_CONTINUE || ret == IMAP_PARSE_ERROR) && used > 0 &&
	         off < len);
	if (ret == IMAP_PARSE_COMMAND) {
		const struct imap_command *cmd = imap_parser_command(p);
		enum imap_match_error kind;
		struct imap_match *m;
		char error[160];

		if (imap_match_parse(cmd->args, cmd->nargs, &m, &kind, error, sizeof(error)) == 0) {
			imap_match_bind(m, 4, 50);
			fuzz_eval(m, msg, msg_len);
			imap_match_free(&m);
		} else if (error[0] == '\0' || strlen(error) >= sizeof(error)) {
			abort();
		}
	}
	imap_parser_free(&p);
	free(line);
	free(date);
	return 0;
}
