/* mimestruct: a message's MIME structure, parsed once (at delivery) and kept with the
 * message's row as a compact, versioned byte string, so that IMAP FETCH ENVELOPE, BODY,
 * BODYSTRUCTURE and BODY[1.2.MIME] never re-parse the message: they read the structure and
 * stream byte ranges of the stored file.
 *
 * Offsets and lengths are bytes of the stored file as it is (it may use bare LF line ends); each
 * range also carries its size in the wire form (every bare LF counted as CRLF) and its line
 * count, which is what IMAP reports.
 *
 * The parser is our own byte scanner rather than GMime's: IMAP needs exact byte offsets of every
 * part's MIME header and body (GMime does not expose where a part's header ends) and the raw,
 * undecoded header values (GMime decodes RFC 2047/2231 and normalizes addresses). Its behaviour
 * follows Dovecot's, checked against Dovecot's output (tests/unit/test_mimestruct.c). */
#ifndef TERN_MIME_MIMESTRUCT_H
#define TERN_MIME_MIMESTRUCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct mimestruct;

#define MIMESTRUCT_MAX_PARTS 1000 /* parts described; the rest of a multipart is skipped */
#define MIMESTRUCT_MAX_DEPTH                                                                       \
	32                        /* multipart/message nesting; deeper ones are opaque             \
	                           * application/octet-stream leaves */
#define MIMESTRUCT_VALUE_MAX 8192 /* bytes kept of one header value (unfolded) */

/* Parses the message in the file at fd (from offset 0) / in data, and serializes its structure
 * into *blob_r (malloc'd, free()). One pass over the bytes (boundaries are found the way Dovecot
 * finds them: a line "--boundary" of any enclosing multipart, the longest match winning; the
 * line end before it belongs to it; a missing close delimiter ends at the enclosing boundary or
 * at the end). Never fails on malformed MIME; -1 only when fd cannot be read. */
int mimestruct_build_fd(int fd, unsigned char **blob_r, size_t *len_r);
int mimestruct_build_buffer(const char *data, size_t len, unsigned char **blob_r, size_t *len_r);

/* Decodes a serialized structure. NULL when blob is not one this version understands (the
 * caller rebuilds it from the file). */
struct mimestruct *mimestruct_load(const unsigned char *blob, size_t len);
void mimestruct_free(struct mimestruct **ms);

/* A byte range of the stored file. */
struct mimestruct_range {
	uint64_t offset;   /* from the start of the file */
	uint64_t len;      /* bytes in the file */
	uint64_t wire_len; /* bytes on the wire (bare LF as CRLF) */
	uint64_t lines;    /* line count */
};

enum mimestruct_section {
	MIMESTRUCT_ALL,    /* BODY[1]: the part's content (for the top level: the whole message) */
	MIMESTRUCT_HEADER, /* BODY[HEADER], BODY[1.HEADER] (part 1 a message/rfc822): the header
	                    * with its blank line */
	MIMESTRUCT_TEXT,   /* BODY[TEXT], BODY[1.TEXT] */
	MIMESTRUCT_MIME,   /* BODY[1.MIME]: the part's MIME header with its blank line */
};

/* Locates the section named by the part path (path[0..depth): BODY[2.1.3] is {2, 1, 3}, depth 0
 * is the top level) in the sense of RFC 3501 6.4.5, including parts nested in message/rfc822
 * parts and the rule that a non-multipart message has a part 1. 1 found (*range_r set), 0 no
 * such part (IMAP answers an empty string), -1 the section is invalid for that part (MIME of the
 * top level). */
int mimestruct_section(const struct mimestruct *ms, const uint32_t *path, size_t depth,
                       enum mimestruct_section section, struct mimestruct_range *range_r);

/* The Content-Transfer-Encoding of the part the path names (depth 0: the message), lower-cased,
 * "" when absent, into enc; *multipart_r says whether the part is a multipart. 1 found, 0 no
 * such part. For IMAP BINARY (RFC 3516). */
int mimestruct_part_encoding(const struct mimestruct *ms, const uint32_t *path, size_t depth,
                             char *enc, size_t encsize, bool *multipart_r);
/* IMAP response values, appended to out (lib/buf.h): the ENVELOPE of the message, and BODY
 * (extended false) or BODYSTRUCTURE (extended true, with the extension data of RFC 3501 7.4.2:
 * MD5 NIL, disposition, language, location). Strings are written quoted, or as literals when they
 * contain CR, LF, NUL, 8-bit bytes or more than a few hundred bytes; header values are given raw as
 * RFC 3501 asks (not decoded). */
void mimestruct_imap_envelope(const struct mimestruct *ms, struct buf *out);
void mimestruct_imap_body(const struct mimestruct *ms, bool extended, struct buf *out);

/* One address of an address-list field, as the ENVELOPE shows it (RFC 3501 7.4.2): pointers
 * into the value or into temporary buffers (valid during the callback only), NULL for NIL.
 * The name is the phrase with quotes removed and comments dropped, still RFC 2047-encoded; a
 * missing mailbox or host is "MISSING_MAILBOX" / "MISSING_DOMAIN" (as Dovecot). A group starts
 * with an address whose mailbox is the group name and host NULL, and ends with one that is
 * all NULL. */
struct mimestruct_address {
	const char *name;
	size_t name_len;
	const char *adl;
	size_t adl_len;
	const char *mailbox;
	size_t mailbox_len;
	const char *host;
	size_t host_len;
};
typedef void mimestruct_address_cb(const struct mimestruct_address *a, void *ctx);

/* Parses the raw (unfolded or folded) value v[0..len) of an address-list field (From, To, ...)
 * with the ENVELOPE's parser and calls cb for each address, in order. Returns the count. */
size_t mimestruct_addresses(const char *v, size_t len, mimestruct_address_cb *cb, void *ctx);

/* BODY[HEADER.FIELDS (names)] / BODY[...HEADER.FIELDS.NOT (names)]: appends the fields of the
 * header block hdr[0..len) (as stored: bare LF or CRLF, with or without its blank line) whose
 * names are (not) among names (compared case-insensitively), in their order, each with its
 * continuation lines, in wire form (every line end CRLF), then the blank line "\r\n". */
void mimestruct_header_fields(const char *hdr, size_t len, const char *const *names, size_t nnames,
                              bool not, struct buf *out);

#endif
