/* smtp_parser: the byte-level parts of SMTP, free of sockets and sessions.
 *
 * Command lines, MAIL/RCPT paths and parameters (RFC 5321 4.1.2, RFC 1870 SIZE, RFC 6152
 * 8BITMIME, RFC 4954 AUTH=), and the DATA decoder that finds the end of data and undoes dot
 * stuffing. Every function here takes hostile input and is unit-tested one byte at a time and
 * fuzzed (fuzz/). */
#ifndef TERN_SMTP_PARSER_H
#define TERN_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LINE_MAX 512   /* RFC 5321 4.5.3.1.4: command line including CRLF */
#define SMTP_LOCAL_MAX 64   /* 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255 /* 4.5.3.1.2 */
#define SMTP_PATH_MAX 256   /* 4.5.3.1.3, including the angle brackets */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

struct smtp_command {
	enum smtp_verb verb;
	char verb_text[16]; /* the verb as sent, upper-cased and truncated, for logs */
	const char *args;   /* after the verb and one or more spaces; "" when none. Points into the
	                     * parsed line. Trailing spaces removed. */
};

/* Parses one command line (without its CRLF; len bytes, which may contain NULs). The verb is
 * matched case-insensitively and must be followed by a space or the end of the line. Returns 0
 * (cmd_r->verb may be SMTP_VERB_UNKNOWN), or -1 when the line holds a NUL byte or control
 * characters other than TAB (reply 500 5.5.2). The line buffer is modified in place and must
 * have room for a terminating NUL at line[len] (evbuffer_readln's buffers do); verb_text is
 * filled (unprintable bytes as '?') even when -1 is returned. */
int smtp_command_parse(char *line, size_t len, struct smtp_command *cmd_r);

/* A reply for a parse failure: code, enhanced status and text, e.g. 501 "5.1.7" "Bad sender
 * address syntax". Strings are static. */
struct smtp_reply {
	int code;
	const char *status;
	const char *text;
};

enum smtp_body { SMTP_BODY_7BIT = 0, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_path {
	bool null_path;                  /* "<>": only allowed for MAIL FROM */
	char address[SMTP_PATH_MAX + 1]; /* "local@domain" with the domain lower-cased; quoted
	                                  * local parts kept as sent; source route dropped */
	size_t local_len;                /* address[0..local_len) is the local part; '@' follows */
};

struct smtp_mail_params {
	bool size_given;
	uint64_t size;                /* SIZE=n */
	enum smtp_body body;          /* BODY=7BIT|8BITMIME (BINARYMIME refused unless allowed) */
	char auth[SMTP_PATH_MAX + 1]; /* AUTH=<...> as given (xtext decoded), "" when absent */
};

/* Parses the arguments of MAIL ("FROM:<a@b> SIZE=10 BODY=8BITMIME"). "FROM:" is matched
 * case-insensitively; a space after the colon is tolerated (as Postfix does) unless strict.
 * Unknown or repeated parameters, bad values and bad addresses are errors with their reply
 * (501 5.5.4, 501 5.1.7, 555 5.5.4). Returns 0 or -1 with *reply_r set. */
int smtp_parse_mail(const char *args, struct smtp_path *path_r, struct smtp_mail_params *params_r,
                    struct smtp_reply *reply_r);
/* Parses the arguments of RCPT ("TO:<a@b>"), no parameters accepted (555 5.5.4), "<>" refused
 * (501 5.1.3). "<Postmaster>" without a domain is accepted (address "postmaster"). Returns 0 or
 * -1 with *reply_r. */
int smtp_parse_rcpt(const char *args, struct smtp_path *path_r, struct smtp_reply *reply_r);

/* Validates a bare "local@domain" mailbox (Dot-string or Quoted-string local part, a domain of
 * LDH labels or an address literal [1.2.3.4] / [IPv6:...]), with RFC 5321 length limits. */
bool smtp_address_valid(const char *address, size_t len);
/* The domain part of a validated address (after the last '@'), or "" when there is none. */
const char *smtp_address_domain(const char *address);

/* Parses a HELO/EHLO argument: a domain or address literal. Returns true if acceptable (we are
 * lenient as Postfix is by default: any printable token up to 255 bytes without spaces). */
bool smtp_helo_valid(const char *arg);

/* The DATA decoder: feed the bytes that follow "354" and it writes the message (dot stuffing
 * undone, CRLFs kept) to an output buffer until it sees CRLF "." CRLF. Only that sequence ends
 * the data: "\n.\n", "\r\n.\n", "\n.\r\n" and a bare CR do not (RFC 5321 4.1.1.4, SMTP
 * smuggling), and any bare CR or LF is recorded so the session can refuse the message.
 * The struct is public so it can be embedded; treat its fields as private except the results. */
struct smtp_data_decoder {
	int state;       /* private */
	uint64_t size;   /* result: bytes of message written so far */
	bool bare_cr;    /* result: a CR not followed by LF was seen */
	bool bare_lf;    /* result: an LF not preceded by CR was seen */
	bool nul;        /* result: a NUL byte was seen */
	size_t line_len; /* private: current line length */
	size_t max_line; /* result: longest line, without CRLF */
};

void smtp_data_init(struct smtp_data_decoder *decoder);
/* Consumes up to len bytes of in. Writes the decoded bytes to out, which must have room for
 * len + 2 bytes, and sets *out_len_r. Returns the number of input bytes consumed: fewer than
 * len only when the end of data was found, in which case *end_r is true and the bytes after the
 * terminating CRLF.CRLF are left unconsumed (a pipelined next command). */
size_t smtp_data_feed(struct smtp_data_decoder *decoder, const char *in, size_t len, char *out,
                      size_t *out_len_r, bool *end_r);

/* xtext decoding (RFC 3461 4): "+2B" -> "+". Returns 0 or -1 on bad encoding. */
int smtp_xtext_decode(const char *in, char *out, size_t outsize);

#endif
