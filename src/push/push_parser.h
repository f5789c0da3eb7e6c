/* push_parser: the command lines of the push protocol (docs/push-protocol.md), free of sockets.
 *
 * A command line is a verb and arguments separated by spaces; an argument may be a quoted
 * string ("Sent Items", with \" and \\ as the only escapes) so that mailbox names can hold
 * spaces. Every byte comes from the network: the parser is unit-tested one byte at a time
 * (tests/unit/test_push_parser.c) and fuzzed (fuzz/fuzz_push_command.c). */
#ifndef TERN_PUSH_PARSER_H
#define TERN_PUSH_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PUSH_LINE_MAX 1000        /* octets of a client line, CRLF not counted */
#define PUSH_ARGS_MAX 40          /* arguments of one command */
#define PUSH_WATCH_MAX 32         /* mailboxes named in one WATCH (and watched at once) */
#define PUSH_MAILBOX_NAME_MAX 255 /* octets of a mailbox name */

enum push_verb {
	PUSH_VERB_UNKNOWN = 0,
	PUSH_VERB_CAPA,
	PUSH_VERB_STARTTLS,
	PUSH_VERB_AUTH,
	PUSH_VERB_WATCH,
	PUSH_VERB_NOOP,
	PUSH_VERB_LOGOUT,
};

struct push_command {
	enum push_verb verb;
	char verb_text[16]; /* the verb upper-cased, cut, '?' for odd bytes: for logs */
	size_t nargs;
	const char *args[PUSH_ARGS_MAX]; /* NUL-terminated, unquoted; point into the line */
	bool quoted[PUSH_ARGS_MAX];      /* the argument was a quoted string */
};

/* Parses one line (CRLF removed; len bytes, which may hold NULs) in place: the buffer needs room
 * for a NUL at line[len]. The verb is matched case-insensitively. Returns 0 (cmd_r->verb may be
 * PUSH_VERB_UNKNOWN) or -1 with *error_r a static reply text ("syntax error: ...") when the line
 * is longer than PUSH_LINE_MAX, holds a NUL or another control byte (tab and DEL included),
 * has an unterminated quoted string, a bad escape, text right after a closing quote, or more
 * than PUSH_ARGS_MAX arguments. Arguments are separated by one or more spaces; leading and
 * trailing spaces are ignored. verb_text is set even on -1. */
int push_command_parse(char *line, size_t len, struct push_command *cmd_r, const char **error_r);

/* WATCH's arguments: [mailbox ...] [SINCE uid]. */
struct push_watch {
	const char *mailboxes[PUSH_WATCH_MAX]; /* duplicates removed; "INBOX" when none named */
	size_t n;
	bool since;         /* SINCE was given */
	uint32_t since_uid; /* replay UIDs greater than this */
};

/* Reads WATCH's arguments from cmd. An unquoted SINCE (any case) followed by a decimal UID
 * (0 to 4294967295, no sign) must come last; a mailbox named SINCE is written quoted. Names must
 * be 1 to PUSH_MAILBOX_NAME_MAX octets of valid UTF-8. "inbox" in any case becomes "INBOX".
 * Returns 0 or -1 with *error_r a static reply text. */
int push_watch_parse(const struct push_command *cmd, struct push_watch *watch_r,
                     const char **error_r);

/* True when name can be written bare in a reply (no space, quote, backslash or control
 * byte, not empty, not "SINCE"); otherwise it is written quoted with \" and \\. */
bool push_name_is_atom(const char *name);
/* Writes name as push_command_parse reads it (bare or quoted) into out (NUL-terminated, cut to
 * fit). Returns the length it needed, as snprintf does. */
size_t push_name_quote(const char *name, char *out, size_t outsize);

/* True when s (len octets) is valid UTF-8 without overlongs, surrogates or code points past
 * U+10FFFF. */
bool push_utf8_valid(const char *s, size_t len);

#endif
