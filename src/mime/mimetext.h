/* mime_text: the searchable text of a message, decoded and case-folded, made with GMime.
 *
 * One definition of "the text SEARCH looks at", shared by IMAP SEARCH's matcher (imap_match.c,
 * which confirms every match on it) and the store's full-text index (store_search.c, which is
 * written from it at delivery), so the index can never miss what the matcher would find:
 * - every header field (unfolded, RFC 2047 decoded to UTF-8) with its case-folded value, and for
 *   From, To, Cc and Bcc the field's parsed addresses rendered as Dovecot renders them for
 *   searching (mimeaddr_render), case-folded;
 * - the whole header section as "name: value" lines, case-folded;
 * - the body: the decoded text of every text/ part (transfer encoding undone, converted from its
 *   charset to UTF-8), in embedded messages too, with their headers; case-folded.
 * Case folding is g_utf8_casefold (full folding, "STRASSE" finds "Straße") of valid UTF-8, NULs
 * turned into spaces (mime_text_fold).
 *
 * Bounds: a header section is read up to MIME_TEXT_HEADER_MAX bytes, a message file up to
 * MIME_TEXT_FILE_MAX, decoded body text up to MIME_TEXT_BODY_MAX (the rest is not searched).
 * Every function is thread-safe once mime_init() has run. */
#ifndef TERN_MIME_TEXT_H
#define TERN_MIME_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIME_TEXT_HEADER_MAX (1024 * 1024)
#define MIME_TEXT_FILE_MAX (64 * 1024 * 1024)
#define MIME_TEXT_BODY_MAX (16 * 1024 * 1024)

struct mime_text_header {
	char *name;  /* as in the message (malloc'd) */
	char *value; /* decoded, case-folded (g_malloc'd) */
	size_t len;
	char *addr; /* From, To, Cc, Bcc: rendered addresses, case-folded (g_malloc'd); or NULL */
	size_t addr_len;
};

struct mime_text {
	bool have_body; /* body was asked for (it may still be empty) */
	struct mime_text_header *headers;
	size_t nheaders;
	char *header_text; /* every "name: value" line, case-folded (g_malloc'd) */
	size_t header_len;
	char *body; /* decoded text parts, case-folded (g_malloc'd), or NULL */
	size_t body_len;
	bool has_date; /* a valid Date: header, its calendar day as written: */
	int date_year, date_month, date_day;
};

/* Parses the message: its header section only (body false) or all of it. From a file
 * descriptor (pread from offset 0; the fd's offset is neither used nor moved and the fd stays
 * the caller's) or a buffer. Returns NULL only when the file cannot be read; a malformed
 * message gives what could be parsed. Free with mime_text_free. */
struct mime_text *mime_text_from_fd(int fd, bool body);
struct mime_text *mime_text_from_buffer(const char *data, size_t len, bool body);
void mime_text_free(struct mime_text **t);

/* The header section of the message in fd (pread from offset 0, up to its blank line included
 * or MIME_TEXT_HEADER_MAX bytes), NUL-terminated (malloc'd, length in *len_r); NULL when fd
 * cannot be read. */
char *mime_text_read_header(int fd, size_t *len_r);

/* s (len bytes, any bytes) as valid UTF-8, case-folded, NULs turned into spaces; the length in
 * *len_r. g_free() the result. */
char *mime_text_fold(const char *s, size_t len, size_t *len_r);

#endif
