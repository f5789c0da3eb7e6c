/* imap_section: FETCH's body sections (RFC 3501 6.4.5): parsing BODY[section]<partial>, finding
 * the bytes with the message's MIME structure, and streaming them from the message file in wire
 * form (bare LF sent as CRLF) under the FETCH's output backpressure. Used by imap_fetch.c only;
 * runs on the loop thread. */
#ifndef TERN_IMAP_SECTION_H
#define TERN_IMAP_SECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mime/mimestruct.h"

#define IMAP_SECTION_DEPTH_MAX 64      /* numbers in one part path (1.2.3...) */
#define IMAP_SECTION_NAMES_MAX 256     /* field names in one HEADER.FIELDS list */
#define IMAP_SECTION_HEADER_MAX 262144 /* bytes of a header read for HEADER.FIELDS */

struct imap_session;
struct imap_msg;

enum imap_section_fields {
	IMAP_SECTION_NO_FIELDS = 0,
	IMAP_SECTION_FIELDS,     /* HEADER.FIELDS (names) */
	IMAP_SECTION_FIELDS_NOT, /* HEADER.FIELDS.NOT (names) */
};

/* A parsed section-spec. spec is MIMESTRUCT_HEADER for HEADER.FIELDS(.NOT). */
struct imap_section {
	enum mimestruct_section spec;
	uint32_t path[IMAP_SECTION_DEPTH_MAX];
	size_t depth;
	enum imap_section_fields fields;
	char **names; /* malloc'd, nnames of them */
	size_t nnames;
};

/* A body item of a FETCH: BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT. */
struct imap_section_item {
	struct imap_section sec;
	bool partial;
	uint32_t offset, size;
	char *name; /* the response's name, malloc'd: "BODY[1.HEADER.FIELDS (FROM)]<0>" */
};

/* The literal being streamed from a message file. */
struct imap_section_stream {
	int fd;             /* -1 when none */
	bool prev_cr;       /* the last byte read was CR */
	uint64_t file_left; /* bytes of the range not read yet */
	uint64_t skip;      /* wire bytes still to drop (the partial's origin) */
	uint64_t len;       /* wire bytes to send */
	uint64_t written;
};

/* Parses the text between the brackets ("1.2.HEADER.FIELDS (From To)", "" for BODY[]). Returns
 * false when it is not a valid section-spec (the caller answers BAD). */
bool imap_section_parse(const char *text, struct imap_section *sec);
void imap_section_clear(struct imap_section *sec);
/* Fills it->name from the item's name ("BODY", "RFC822...") and section text, upper-cased as
 * Dovecot does, with "<origin>" for a partial. */
void imap_section_name(struct imap_section_item *it, const char *prefix, const char *text,
                       bool brackets);

/* Writes the item for message m ("NAME {n}\r\n" and, unless a stream is started, its bytes;
 * "NAME NIL" when the message cannot be read). ms is the message's structure, or NULL when
 * the item is the whole message; msg_fd its open file (FETCH holds it for the whole response;
 * the stream reads a dup of it). When bytes remain to be sent, st->fd >= 0 afterwards and
 * imap_section_stream() must be called until it returns true. */
void imap_section_start(struct imap_session *s, const struct imap_msg *m,
                        const struct imap_section_item *it, const struct mimestruct *ms,
                        int msg_fd, struct imap_section_stream *st);
/* Sends the next chunk of the stream; true when the literal is complete (fd closed). */
bool imap_section_stream(struct imap_session *s, struct imap_section_stream *st);
void imap_section_stream_close(struct imap_section_stream *st);
/* A NUL byte may not appear in an IMAP literal (RFC 3501 4.3; only BINARY's literal8 carries
 * it) but SMTP may have delivered one: FETCH sends this byte in its place, as Dovecot does,
 * so sizes (RFC822.SIZE, section lengths, partials) stay exact. */
#define IMAP_NUL_REPLACEMENT 0x80
/* Replaces every NUL of buf[0..len) with IMAP_NUL_REPLACEMENT. */
void imap_section_nul(char *buf, size_t len);

#endif
