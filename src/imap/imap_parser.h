/* imap_parser: the client -> server half of IMAP, free of sockets and sessions.
 *
 * An incremental parser for RFC 3501 section 9 command lines with LITERAL+ (RFC 7888): feed it
 * bytes as they arrive, in chunks of any size, and it hands back one complete command at a time
 * as a tag, an upper-cased command name ("UID FETCH" becomes uid = true, name "FETCH") and a tree
 * of arguments. It stops to let the caller send "+ Ready for literal data" when a synchronizing
 * literal is announced, can stream APPEND's message literal instead of buffering it, and
 * enforces limits on literal sizes, line length, command size, argument count and nesting.
 * Every byte is taken one at a time by a state machine, so results never depend on how the input
 * was split (unit-tested whole, in every two-way split and one byte at a time; fuzzed).
 *
 * Choices a caller should know:
 * - Arguments are separated by exactly one space, none after "(" or before ")"; a line ends in
 *   CRLF or a bare LF. Empty lines between commands are ignored.
 * - Atoms may hold any printable ASCII except ( ) { " and, in a tag, also + * % \.
 *   ']' and '[' are atom bytes (astring chars: "SELECT [Gmail]/Sent"), '*' and '%' too (sequence
 *   sets, LIST patterns) and '\' (flags). 8-bit bytes are refused in atoms.
 * - FETCH only (also UID FETCH): an atom that reaches a '[' becomes an IMAP_ARG_SECTION:
 *   "BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512>" gives str "BODY.PEEK", section
 *   "HEADER.FIELDS (From Subject)" verbatim (spaces, parenthesized lists and quoted strings
 *   inside the brackets kept as sent, literals refused) and the partial <offset.size>. The
 *   section's own grammar is left to the FETCH code.
 * - Sequence sets stay atoms (or numbers); imap_parse_seqset() validates and expands them.
 * - An atom of 1 to 20 digits that fits 64 bits is an IMAP_ARG_NUMBER; an atom "NIL" (any case)
 *   is IMAP_ARG_NIL. Both keep their text, so a mailbox called "NIL" or "2024" still reads as an
 *   astring through imap_arg_get_astring().
 */
#ifndef TERN_IMAP_PARSER_H
#define TERN_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_TAG_MAX 64  /* longer tags are refused (the error then has no tag) */
#define IMAP_NAME_MAX 32 /* command names */

/* Limits; a zero field takes the default shown. */
struct imap_parser_limits {
	size_t line_max;      /* one line of text, literals excluded; default 65536 */
	size_t literal_max;   /* one buffered literal; default 65536 */
	size_t command_max;   /* text plus buffered literals of one command; default 1 MiB */
	size_t max_args;      /* arguments in one command, list members included; 10000 */
	size_t max_depth;     /* parenthesis nesting; default 32 */
	uint64_t discard_max; /* bytes skipped after an error in one command (LITERAL+ data,
	                       * the rest of a refused line) before the error turns fatal;
	                       * default 4 MiB */
	/* APPEND's message literals (every top-level literal but the mailbox name, and CATENATE's
	 * TEXT literals) of at least stream_min bytes (0: never) are not buffered but handed
	 * over as IMAP_PARSE_LITERAL_DATA chunks, up to stream_max bytes each (default 64 MiB,
	 * the message size limit); they count against neither literal_max nor command_max. */
	size_t stream_min;
	uint64_t stream_max;
	bool utf8;        /* allow 8-bit bytes in quoted strings (RFC 6855 UTF8=ACCEPT) */
	bool literal_nul; /* allow NUL in literals (refused in IMAP4rev1) */
};

enum imap_arg_type {
	IMAP_ARG_ATOM = 0,
	IMAP_ARG_NUMBER,  /* an atom of digits; number holds its value */
	IMAP_ARG_NIL,     /* the atom NIL, any case */
	IMAP_ARG_STRING,  /* a quoted string, escapes undone */
	IMAP_ARG_LITERAL, /* {n} or {n+}; may hold NULs (literal_nul) and CRLFs; or a literal8
	                   * ~{n} / ~{n+} (RFC 3516), which may always hold NULs */
	IMAP_ARG_LIST,    /* ( ... ) */
	IMAP_ARG_SECTION, /* FETCH's name[section]<partial>, see above */
};

struct imap_arg {
	enum imap_arg_type type;
	const char *str;   /* text, NUL-terminated; atom, number, NIL as sent. For a SECTION the
	                    * part before '[' ("BODY.PEEK"); for a streamed literal "" */
	size_t len;        /* bytes in str (a literal's size even when streamed) */
	uint64_t number;   /* IMAP_ARG_NUMBER */
	bool literal_plus; /* IMAP_ARG_LITERAL: was {n+} */
	bool streamed;     /* IMAP_ARG_LITERAL: data went out as IMAP_PARSE_LITERAL_DATA */
	bool binary;       /* IMAP_ARG_LITERAL: a literal8, ~{n} */
	const struct imap_arg *list; /* IMAP_ARG_LIST: members, list_count of them */
	size_t list_count;
	const char *section; /* IMAP_ARG_SECTION: text between the brackets, NUL-terminated */
	size_t section_len;
	bool partial;            /* IMAP_ARG_SECTION: <offset.size> was given */
	uint32_t partial_offset; /* its offset (a number) */
	uint32_t partial_size;   /* its size (a nonzero number) */
};

struct imap_command {
	const char *tag;
	const char *name; /* upper-cased; the sub-command after UID */
	bool uid;
	const struct imap_arg *args;
	size_t nargs;
};

enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,           /* see imap_parser_error() */
	IMAP_PARSE_NEED_MORE = 0,        /* all input consumed, no event */
	IMAP_PARSE_COMMAND = 1,          /* imap_parser_command() is ready */
	IMAP_PARSE_LITERAL_CONTINUE = 2, /* send "+ Ready for literal data\r\n" now */
	IMAP_PARSE_LITERAL_DATA = 3,     /* imap_parser_literal_data() holds a chunk */
	IMAP_PARSE_LINE = 4,             /* imap_parser_line() holds the line asked for */
};

enum imap_parse_error_kind {
	IMAP_PARSE_ERR_SYNTAX = 0, /* reply "BAD" */
	IMAP_PARSE_ERR_TOOBIG,     /* reply "NO [TOOBIG]" (literal) or "BAD [TOOBIG]" (line) */
	IMAP_PARSE_ERR_LIMIT,      /* reply "BAD [LIMIT]": too many arguments, too deep */
};

struct imap_parse_error {
	enum imap_parse_error_kind kind;
	const char *resp_code; /* "TOOBIG", "LIMIT" or NULL */
	const char *reply;     /* "BAD" or "NO" */
	const char *text;      /* static, e.g. "Missing space after tag" */
	const char *tag;       /* the command's tag, or NULL when it was not read (reply "* BAD") */
	bool fatal;            /* the connection cannot be resynchronized: send "* BYE" and close */
};

struct imap_parser;

/* Creates a parser; limits may be NULL for all defaults. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
/* Frees the parser and sets *p to NULL; NULL is fine. */
void imap_parser_free(struct imap_parser **p);

/* Consumes input up to the next event and returns it, with *consumed_r (always set) the bytes
 * taken; call again with the rest. The events:
 * - NEED_MORE: all len bytes consumed.
 * - COMMAND: imap_parser_command() is complete. It and everything it points to stay valid until
 *   the next call to imap_parser_feed(), imap_parser_reset_command() or imap_parser_free().
 * - LITERAL_CONTINUE: "{n}" CRLF was read; send the continuation (or refuse with
 *   imap_parser_literal_refuse()) before the client will send the data.
 * - LITERAL_DATA: a chunk of a streamed APPEND literal: the last bytes of the *consumed_r taken,
 *   pointing into data (valid as long as the caller's buffer). The command arrives afterwards
 *   with the literal marked streamed; if an ERROR comes instead, drop what was streamed. Each
 *   streamed literal is capped at stream_max, their number only by max_args (MULTIAPPEND).
 * - LINE: the raw line asked for with imap_parser_expect_line().
 * - ERROR: imap_parser_error() says why. After a non-fatal error keep feeding: the parser skips
 *   the rest of the failed command itself (a refused synchronizing literal ends it, since the
 *   client will not send the data; the data of a LITERAL+ literal and of any {n+} that ends a
 *   skipped line is read and dropped, counted against discard_max). After a fatal error every
 *   call returns ERROR again without consuming anything.
 * Memory stays within imap_parser_memory_bound(limits). */
int imap_parser_feed(struct imap_parser *p, const char *data, size_t len, size_t *consumed_r);

/* The command after IMAP_PARSE_COMMAND, else NULL. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);
/* The error after IMAP_PARSE_ERROR (valid until the next feed). */
const struct imap_parse_error *imap_parser_error(const struct imap_parser *p);
/* The chunk after IMAP_PARSE_LITERAL_DATA. */
void imap_parser_literal_data(const struct imap_parser *p, const char **data_r, size_t *len_r);
/* The line after IMAP_PARSE_LINE, without its CRLF, NUL-terminated (it may hold NULs). */
const char *imap_parser_line(const struct imap_parser *p, size_t *len_r);

/* While a command is being read (after LITERAL_CONTINUE, LITERAL_DATA or an ERROR): its tag
 * ("" before it is known), its name so far ("" before it is known) and whether it is a UID
 * command, and the size of the literal last announced. */
const char *imap_parser_tag(const struct imap_parser *p);
const char *imap_parser_command_name(const struct imap_parser *p, bool *uid_r);
uint64_t imap_parser_literal_size(const struct imap_parser *p);

/* After LITERAL_CONTINUE, instead of sending "+": the caller answers the command itself (e.g.
 * "NO [TRYCREATE]"), the client will not send the literal, and the parser waits for the next
 * command. */
void imap_parser_literal_refuse(struct imap_parser *p);
/* Frees the finished command's arguments and shrinks buffers grown past their usual size
 * (feeding more does this too). Does nothing while a command is still being read. */
void imap_parser_reset_command(struct imap_parser *p);
/* Overwrites the text of the command or line just returned with zeros (passwords in LOGIN,
 * AUTHENTICATE and SASL responses); its arguments must not be used afterwards. */
void imap_parser_wipe(struct imap_parser *p);
/* Changes the limits (e.g. larger ones after login) between commands; ignored mid-command. */
void imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *limits);
/* Allows (or not) 8-bit bytes in quoted strings from the next byte on, keeping everything else:
 * after ENABLE UTF8=ACCEPT (RFC 6855 3), while that command's arguments are still in use. */
void imap_parser_set_utf8(struct imap_parser *p, bool on);
/* The next feed reads one raw line (IDLE's "DONE", an AUTHENTICATE response) of up to line_max
 * bytes and returns IMAP_PARSE_LINE. Call only between commands. */
void imap_parser_expect_line(struct imap_parser *p);

/* True when a command line (or an expected line) has begun and is not yet whole; false between
 * commands, and inside literal data unless with_literals (literal data only has to keep coming,
 * after login; before it, the whole command is held to one deadline). */
bool imap_parser_mid_line(const struct imap_parser *p, bool with_literals);

/* Bytes the parser has allocated now, and the most it can ever hold under these limits. */
size_t imap_parser_memory(const struct imap_parser *p);
size_t imap_parser_memory_bound(const struct imap_parser_limits *limits);

/* Argument helpers: return true and set *str_r when arg has that shape. An astring is an atom,
 * number, NIL (as text), quoted string or literal; a string only quoted or literal; an
 * nstring a string or NIL (*str_r = NULL). */
bool imap_arg_get_atom(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_string(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r);
/* True when arg is an atom (or number, NIL) equal to word, case-insensitively. */
bool imap_arg_atom_equals(const struct imap_arg *arg, const char *word);

/* The command in a canonical, printable form for logs, tests and the fuzzer: tag, "UID " if
 * set, name, then each argument: atoms as sent, quoted strings and literals as "..." (literals
 * prefixed {n} or {n+}, streamed ones {n stream}; a literal8 with ~ before) with \\, \" and \xNN
 * escapes, lists in parentheses, sections as name[section]<o.s>. Returns a string to free(). */
char *imap_command_dump(const struct imap_command *cmd);

/* Sequence sets (RFC 3501 sequence-set, RFC 9051 9): "1:*,2,4:7". '*' is IMAP_SEQ_STAR, a
 * value past every nz-number, so 4294967295 stays a number (only '*' means "the largest").
 * Ranges are normalized low:high, kept in the order given (not merged). */
#define IMAP_SEQ_STAR ((uint64_t)UINT32_MAX + 1)
#define IMAP_SEQSET_MAX_RANGES 1024 /* more ranges are refused (LIMIT) */
struct imap_seq_range {
	uint64_t lo, hi; /* 1..4294967295 or IMAP_SEQ_STAR */
};
/* Parses text into up to max ranges in ranges_r (may be NULL to only validate) and sets
 * *count_r. Numbers are nz-number (1..4294967295, no leading zero) or '*'. Returns 0, or -1
 * with a static *error_r for bad syntax ("0", "1:*:*", "1,", "", ...) or more than max
 * ranges. */
int imap_parse_seqset(const char *text, struct imap_seq_range *ranges_r, size_t max,
                      size_t *count_r, const char **error_r);

#endif
