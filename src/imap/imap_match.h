/* imap_match: the SEARCH program (RFC 3501 6.4.4, RFC 7162 MODSEQ) as a tree, and its
 * evaluation against one message. No sockets, no sessions, no store: the caller describes each
 * message with struct imap_match_msg (what the index knows) and, when the program needs it,
 * with the decoded content read from the message file (imap_match_content_*).
 *
 * Semantics chosen (and tested in tests/unit/test_imap_match.c):
 * - Strings match as case-insensitive substrings after Unicode case folding (g_utf8_casefold,
 *   full folding: "STRASSE" finds "Straße") of valid UTF-8; a search string that is not valid
 *   UTF-8 is refused. The empty string matches everything, except as a header key (HEADER,
 *   FROM, TO, CC, BCC, SUBJECT) where it matches messages that have that field.
 * - Headers are unfolded and decoded from RFC 2047 to UTF-8 (GMime); every occurrence of a
 *   field is searched. TEXT searches the decoded header section and the body.
 * - FROM, TO, CC and BCC match the field's parsed addresses, not its text: the value goes through
 *   the ENVELOPE's address parser and is rendered as Dovecot renders it for searching
 *   (mimeaddr_render: "Display Name" <mailbox@host>, comments dropped, encoded words decoded),
 *   so a comment inside an address neither hides it nor matches. HEADER From matches the text.
 * - The body is the text of every text/ part (transfer encoding undone, converted from its
 *   charset to UTF-8), in embedded messages too, and their headers; other parts (images,
 *   application/...) are not searched.
 * - BEFORE/ON/SINCE compare the internal date's calendar day in the server's local time zone
 *   (as Dovecot does); SENTBEFORE/SENTON/SENTSINCE the Date: header's day as written (its own
 *   zone, time ignored). A message without a valid Date: header matches no SENT* key.
 * - Sequence numbers past the last message match nothing (no error); '*' is the last message
 *   (or the highest UID), so "UID 100:*" always holds the last message (RFC 3501 6.4.8).
 * - MODSEQ's optional entry name and type are checked and ignored: the store keeps one
 *   MODSEQ per message (RFC 7162 3.1.5 allows that).
 *
 * Bounds: at most IMAP_MATCH_DEPTH_MAX nested NOT/OR/parentheses, IMAP_MATCH_NODES_MAX keys,
 * IMAP_MATCH_TEXT_KEYS_MAX keys that read content; a header section is read up to
 * IMAP_MATCH_HEADER_MAX bytes, a message file up to IMAP_MATCH_FILE_MAX, decoded body text up
 * to IMAP_MATCH_BODY_MAX per message (the rest is not searched). Content functions are
 * thread-safe (no shared state beyond GMime, initialised through mime_init()). */
#ifndef TERN_IMAP_MATCH_H
#define TERN_IMAP_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap_parser.h"
#include "mime/mimetext.h"

#define IMAP_MATCH_DEPTH_MAX 64
#define IMAP_MATCH_NODES_MAX 1024
#define IMAP_MATCH_TEXT_KEYS_MAX 32
/* The content bounds are mime_text's (mime/mimetext.h), which reads the text for the matcher
 * and for the store's full-text index alike. */
#define IMAP_MATCH_HEADER_MAX MIME_TEXT_HEADER_MAX
#define IMAP_MATCH_FILE_MAX MIME_TEXT_FILE_MAX
#define IMAP_MATCH_BODY_MAX MIME_TEXT_BODY_MAX

/* What a program reads beyond the index (bits). */
#define IMAP_MATCH_NEED_HEADER 1u /* header keys, SENT*, TEXT */
#define IMAP_MATCH_NEED_BODY 2u   /* BODY, TEXT */
#define IMAP_MATCH_NEED_META 4u   /* LARGER, SMALLER, BEFORE, ON, SINCE: size and date */
#define IMAP_MATCH_NEED_MODSEQ 8u /* the MODSEQ key: the response carries (MODSEQ n) */

/* The store flag bits are the ones of store.h (enum store_flag). */
struct imap_match_msg {
	uint32_t seq; /* 1-based */
	uint32_t uid;
	uint32_t flags; /* enum store_flag bits */
	bool recent;
	bool meta;             /* size and internal_date are known */
	uint64_t size;         /* RFC822.SIZE */
	int64_t internal_date; /* seconds since the epoch */
	uint64_t modseq;
	const char *keywords; /* space-separated, or NULL */
};

struct imap_match;
struct imap_match_content;

enum imap_match_error {
	IMAP_MATCH_ERR_SYNTAX = 0, /* reply BAD text */
	IMAP_MATCH_ERR_LIMIT,      /* reply BAD [LIMIT] text */
};

/* Builds the program from the search keys (after SEARCH's RETURN and CHARSET), all of them
 * ANDed. Returns 0 with *m_r (free with imap_match_free), or -1 with a message in error
 * (printable, for the BAD reply) and *kind_r. */
int imap_match_parse(const struct imap_arg *args, size_t nargs, struct imap_match **m_r,
                     enum imap_match_error *kind_r, char *error, size_t errsize);
void imap_match_free(struct imap_match **m);
/* IMAP_MATCH_NEED_* bits of the program. */
unsigned imap_match_needs(const struct imap_match *m);
/* True when the program has a sequence set or UID set key (its answer for a message may change
 * when messages are expunged or arrive, not only when the message changes). */
bool imap_match_uses_numbers(const struct imap_match *m);
/* Resolves '*' in sequence sets against the mailbox: nmsgs messages, the last one's UID max_uid
 * (0 when empty). Call before imap_match_eval, again when the snapshot changes. */
void imap_match_bind(struct imap_match *m, uint32_t nmsgs, uint32_t max_uid);

/* A key of the program that the store's search index can narrow by (store_search_candidates):
 * SUBJECT, FROM, TO, CC, BCC, BODY or TEXT with a string of at least STORE_SEARCH_MIN_CHARS
 * characters that every match must satisfy (a conjunct of the top-level AND, parentheses
 * included; never under OR or NOT), the longest such string when there are several. Returns 1
 * with the store key and the case-folded needle (owned by the program), or 0 when there is
 * none: the program must then be evaluated on every message. */
int imap_match_index_key(const struct imap_match *m, int *key_r, const char **needle_r);

/* Evaluates the program for one message. content may be NULL (nothing read) or hold only the
 * header. Returns 1 match, 0 no match, -1 undecided: content that was not given is needed. */
int imap_match_eval(const struct imap_match *m, const struct imap_match_msg *msg,
                    const struct imap_match_content *content);

/* Reads a message's content for evaluation: the header section only (need without
 * IMAP_MATCH_NEED_BODY), or header and body. From a file descriptor (read from offset 0; the
 * fd's file offset is neither used nor moved, so threads may read one fd at once; the fd stays
 * the caller's) or a buffer. Returns NULL only when the file cannot be read; malformed messages
 * give what could be parsed. Any thread (see the top of this file). */
struct imap_match_content *imap_match_content_from_fd(int fd, unsigned need);
struct imap_match_content *imap_match_content_from_buffer(const char *data, size_t len,
                                                          unsigned need);
void imap_match_content_free(struct imap_match_content **c);
/* The header section of the message in fd (pread from offset 0, up to its blank line included
 * or IMAP_MATCH_HEADER_MAX bytes), NUL-terminated (malloc'd, length in *len_r); NULL when fd
 * cannot be read. Any thread. */
char *imap_match_read_header(int fd, size_t *len_r);

/* Parses an IMAP date ("1-Feb-1994", day of one or two digits, month any case) into a day
 * number (days since 1970-01-01). Returns 0, or -1 when it is not a valid date. */
int imap_match_date_parse(const char *text, int32_t *day_r);

#endif
