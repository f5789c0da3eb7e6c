/* imap_response: the tokenizer and parsers for IMAP4rev1 server responses (RFC 3501 section 7)
 * that the tern client needs. It works on one whole response held in memory: the response lines
 * joined, each literal inline as "{n}\r\n" followed by its n bytes (imap_client reads responses
 * that way, line by line through conn, so resuming after a partial read happens there). Nothing
 * here does I/O or allocates; tokens point into the caller's buffer. */
#ifndef TERN_IMAP_RESPONSE_H
#define TERN_IMAP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_tok_type {
	IMAP_TOK_ATOM,   /* also "*", "+", tags, numbers, NIL, and "[...]" response codes whole */
	IMAP_TOK_STRING, /* a quoted string (unescaped in place) or a literal */
	IMAP_TOK_LPAREN,
	IMAP_TOK_RPAREN,
	IMAP_TOK_END, /* no more input */
	IMAP_TOK_BAD, /* malformed (unterminated string, bad literal, stray byte): stop parsing */
};

struct imap_tok {
	enum imap_tok_type type;
	char *s; /* into the parser's buffer; for END, where the input ended */
	size_t len;
};

/* A position in a response buffer; [p, end) is still to be read. */
struct imap_parser {
	char *p, *end;
};

/* Capabilities tern acts on. */
struct imap_caps {
	bool starttls, logindisabled, auth_plain, sasl_ir, uidplus, literal_plus;
};

/* What a "[...]" response code after OK/NO/BAD/PREAUTH told us. */
struct imap_resp_code {
	bool has_caps; /* [CAPABILITY ...]: caps holds them */
	struct imap_caps caps;
	bool has_uidvalidity; /* [UIDVALIDITY n] with 0 < n < 2^32 */
	uint32_t uidvalidity;
};

/* The items of one "* n FETCH (...)" that tern asks for; the others are skipped. */
struct imap_fetch {
	bool has_uid, has_size, has_flags;
	uint32_t uid; /* nonzero when has_uid */
	uint64_t size;
	bool seen; /* \Seen among FLAGS */
	/* The last BODY[] value: IMAP_TOK_STRING (points into the buffer), an IMAP_TOK_ATOM "NIL",
	 * or IMAP_TOK_END when there was none. */
	struct imap_tok body;
};

/* Starts parsing buf[0..len). The buffer must stay writable (quoted strings are unescaped in
 * place) and alive as long as the tokens are used. */
void imap_response_init(struct imap_parser *ps, char *buf, size_t len);
/* Returns the next token and moves past it. Quoted strings are unescaped in place; literals
 * point into the buffer; an atom holding "[...]" keeps its brackets with their spaces and
 * parentheses. After IMAP_TOK_END or IMAP_TOK_BAD the parser does not advance. */
struct imap_tok imap_response_next(struct imap_parser *ps);
/* True when t is an atom equal to word, ignoring ASCII case. */
bool imap_response_tok_is(const struct imap_tok *t, const char *word);
/* Parses an atom made only of digits (at most 20) into *n_r; true when it is no larger than max.
 * *n_r is set whenever the digits fit in 64 bits, even when the result is false. */
bool imap_response_tok_number(const struct imap_tok *t, uint64_t max, uint64_t *n_r);
/* Skips one value that started with t: an atom, a string, or a parenthesized list with what it
 * holds. False when t cannot start a value or the list is not closed. */
bool imap_response_skip_value(struct imap_parser *ps, struct imap_tok t);
/* Reads space-separated capability atoms up to the first token that is not an atom; *caps_r is
 * reset first. */
void imap_response_caps(struct imap_parser *ps, struct imap_caps *caps_r);
/* Reads the token after OK/NO/BAD/PREAUTH and, when it is a "[...]" response code, reports what
 * it says in *code_r (cleared first). Consumes that one token either way. */
void imap_response_code(struct imap_parser *ps, struct imap_resp_code *code_r);
/* Parses "(UID n RFC822.SIZE n FLAGS (...) BODY[] ...)" after "* n FETCH", items in any order.
 * Returns 0, or -1 when the list is malformed. */
int imap_response_fetch(struct imap_parser *ps, struct imap_fetch *fetch_r);

/* Looks for a literal announcement "{n}" or "{n+}" that closes a response line of len bytes.
 * Returns the offset of its '{' with *n_r set, -1 when the line ends otherwise, or -2 when the
 * size does not fit in 64 bits. */
long imap_response_literal_at_end(const char *line, size_t len, uint64_t *n_r);
/* True when the literal announced at offset at of line is the value of "BODY[]" ("BODY[] {n}"
 * or "BODY[]{n}", any case). */
bool imap_response_literal_is_body(const char *line, size_t at);

#endif
