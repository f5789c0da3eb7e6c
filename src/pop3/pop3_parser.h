/* pop3_parser: the byte-level parts of POP3, free of sockets and sessions.
 *
 * Command lines (RFC 1939 3, RFC 2449 4 limits), message numbers, and the RETR/TOP streamer that
 * turns stored message bytes into their wire form (CRLF line endings, dot-stuffing, the TOP cut).
 * Every function here takes hostile input (or stored bytes that came from one) and is
 * unit-tested one byte at a time and fuzzed (fuzz/). */
#ifndef TERN_POP3_PARSER_H
#define TERN_POP3_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2449 4 caps command lines at 255 octets with CRLF and arguments at 40 octets. We allow
 * twice as much for lines (some clients send long user names), but no more. */
#define POP3_LINE_MAX 512
#define POP3_ARG_MAX 40
/* RFC 5034 4: SASL responses (and AUTH with an initial response) may be longer. */
#define POP3_SASL_LINE_MAX 4096

enum pop3_verb {
	POP3_VERB_UNKNOWN = 0,
	POP3_VERB_USER,
	POP3_VERB_PASS,
	POP3_VERB_APOP,
	POP3_VERB_AUTH,
	POP3_VERB_STAT,
	POP3_VERB_LIST,
	POP3_VERB_RETR,
	POP3_VERB_DELE,
	POP3_VERB_NOOP,
	POP3_VERB_RSET,
	POP3_VERB_QUIT,
	POP3_VERB_TOP,
	POP3_VERB_UIDL,
	POP3_VERB_CAPA,
	POP3_VERB_STLS,
};

struct pop3_command {
	enum pop3_verb verb;
	char verb_text[16];  /* the verb as sent, upper-cased and truncated, for logs */
	size_t nargs;        /* 0..2 */
	const char *args[2]; /* space-separated arguments; point into the line. For PASS, args[0]
	                      * is everything after "PASS " unchanged (passwords may hold spaces) */
};

/* Parses one command line (without its CRLF; len bytes, which may contain NULs). The verb is
 * matched case-insensitively and must be followed by a space or the end of the line; arguments
 * are separated by one or more spaces, trailing spaces ignored. Returns 0 (cmd_r->verb may be
 * POP3_VERB_UNKNOWN) or -1 with *error_r set to a static reply text when the line holds a NUL
 * or a control byte, is longer than POP3_LINE_MAX with CRLF (AUTH: POP3_SASL_LINE_MAX), has
 * more than two arguments, or an argument over POP3_ARG_MAX octets (not for USER and PASS,
 * nor AUTH's initial response). The line buffer is modified in place and must have room for a NUL
 * at line[len]; verb_text is filled (unprintable bytes as '?') even when -1 is returned. */
int pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r, const char **error_r);

/* Parses a decimal number of 1 to 10 digits that fits in 32 bits: no sign, no '+', no spaces.
 * Returns 0 or -1. */
int pop3_parse_uint(const char *s, uint32_t *n_r);
/* A message number: as pop3_parse_uint, and not 0. Returns 0 or -1. */
int pop3_parse_msgnum(const char *s, uint32_t *n_r);

/* The RETR/TOP streamer. Feed it the stored message in chunks of any size and it writes the
 * wire form: every LF not preceded by CR becomes CRLF (a CR ending one chunk and the LF starting
 * the next are one CRLF; a CR not followed by LF is passed on as it is), and a '.' starting a
 * line gets another '.' in front. For TOP it stops after the header block, the empty line and
 * n body lines; a message without an empty line is all header. When the input is done (or
 * pop3_stuff_done says the TOP cut was reached), pop3_stuff_finish writes the end: CRLF if the
 * output did not end with one, then ".\r\n". The struct is public so it can be embedded; treat
 * its fields as private except size. */
struct pop3_stuffer {
	uint64_t size;       /* result: bytes written, not counting the added dots nor the end */
	bool top;            /* private */
	bool in_body;        /* private: the empty line after the headers was seen */
	bool done;           /* private: the TOP cut was reached */
	bool prev_cr;        /* private: the last input byte was CR */
	bool line_start;     /* private: at the start of a line (the output ends with CRLF) */
	uint32_t lines_left; /* private: body lines TOP still sends */
	uint64_t line_len;   /* private: bytes of the current input line so far */
};

#define POP3_STUFF_END_MAX 5 /* room pop3_stuff_finish needs */

/* top: stop after the headers and lines body lines (RETR: false, lines ignored). */
void pop3_stuff_init(struct pop3_stuffer *st, bool top, uint32_t lines);
/* Consumes all len bytes of in and writes their wire form to out, which must have room for
 * 2 * len bytes. Returns the number of bytes written (0 once the TOP cut is reached). */
size_t pop3_stuff_feed(struct pop3_stuffer *st, const char *in, size_t len, char *out);
/* True once TOP has written all it will: the caller may stop reading the file. */
bool pop3_stuff_done(const struct pop3_stuffer *st);
/* Writes the end of the multi-line response into out (room for POP3_STUFF_END_MAX bytes) and
 * returns its length. */
size_t pop3_stuff_finish(struct pop3_stuffer *st, char *out);
/* The streamer as a store_reader filter (store/store_reader.h; state is the pop3_stuffer): it
 * runs on the reader's I/O thread, and its end (in NULL) is pop3_stuff_finish. */
struct evbuffer;
bool pop3_stuff_filter(void *state, const char *in, size_t len, struct evbuffer *out);

#endif
