/* imap_section: FETCH's body sections (RFC 3501 6.4.5): parsing BODY[section]<partial>, finding
 * the bytes with the message's MIME structure, and streaming them from the message in wire
 * form (bare LF sent as CRLF) under the FETCH's output backpressure. The store reader reads
 * the file on its I/O pool (store/store_reader.h); this runs on the loop thread. Used by
 * imap_fetch.c only. */
#ifndef TERN_IMAP_SECTION_H
#define TERN_IMAP_SECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mime/mimestruct.h"

#define IMAP_SECTION_DEPTH_MAX 64      /* numbers in one part path (1.2.3...) */
#define IMAP_SECTION_NAMES_MAX 256     /* field names in one HEADER.FIELDS list */
#define IMAP_SECTION_HEADER_MAX 262144 /* bytes of a header read for HEADER.FIELDS */

struct evbuffer;
struct imap_session;
struct imap_msg;
struct store_reader;
struct workers;
struct store_reader_stream;

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

/* An item being read by the store reader: a literal streaming into the output, or a
 * HEADER.FIELDS header being read whole (into header) before it is filtered and sent. */
struct imap_section_stream {
	struct store_reader_stream *stream; /* NULL when none */
	const struct imap_section_item *it;
	struct evbuffer *header; /* HEADER.FIELDS: the header read so far; NULL otherwise */
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
 * the item is the whole message; reader the open message (FETCH holds it for the whole
 * response), NULL when it could not be opened. When bytes remain to be sent, st->stream is
 * set afterwards and imap_section_stream() must be called until it returns 1. */
void imap_section_start(struct imap_session *s, const struct imap_msg *m,
                        const struct imap_section_item *it, const struct mimestruct *ms,
                        struct store_reader *reader, struct workers *io,
                        struct imap_section_stream *st);
/* Moves what was read into the output: 1 when the item is complete (the stream is closed), 0
 * while the output is full or a read runs (its completion runs the session again). */
int imap_section_stream(struct imap_session *s, struct imap_section_stream *st);
void imap_section_stream_close(struct imap_section_stream *st);
/* The store reader's ready callback for a FETCH stream: arg is the session. */
void imap_section_ready(void *arg);
/* A NUL byte may not appear in an IMAP literal (RFC 3501 4.3; only BINARY's literal8 carries
 * it) but SMTP may have delivered one: FETCH sends this byte in its place, as Dovecot does,
 * so sizes (RFC822.SIZE, section lengths, partials) stay exact. */
#define IMAP_NUL_REPLACEMENT 0x80
/* Replaces every NUL of buf[0..len) with IMAP_NUL_REPLACEMENT. */
void imap_section_nul(char *buf, size_t len);

#endif
