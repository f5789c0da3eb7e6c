/* imap_binary: FETCH BINARY[section]<partial>, BINARY.PEEK[...] and BINARY.SIZE[section] (RFC
 * 3516): a part's content with its Content-Transfer-Encoding undone (base64, quoted-printable;
 * 7bit/8bit/binary as they are), sent as a literal8 (~{n}) when it holds a NUL.
 *
 * The decoded size is needed before the first byte is sent, so each item first runs a counting
 * pass over the part: a store reader stream (store/store_reader.h) with the decoder as its
 * filter, on the reader's I/O pool, outputting nothing; the FETCH waits for it. The bytes then
 * stream through a second such stream under the FETCH's output backpressure. Nothing here
 * reads a file on the loop thread. Used by imap_fetch.c only. */
#ifndef TERN_IMAP_BINARY_H
#define TERN_IMAP_BINARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap_section.h"

struct imap_session;
struct imap_msg;
struct imap_binary;
struct store_reader;

enum imap_binary_cte {
	IMAP_CTE_IDENTITY = 0, /* 7bit, 8bit, binary, none (and multiparts): bare LF sent as CRLF */
	IMAP_CTE_BASE64,
	IMAP_CTE_QP,
	IMAP_CTE_UNKNOWN,
};

/* The decoder: feed it chunks of the encoded part in order. */
struct imap_binary_dec {
	enum imap_binary_cte cte;
	bool prev_cr;   /* identity: the last byte was CR */
	uint32_t bits;  /* base64: bits not yet output */
	unsigned nbits; /* ... how many */
	bool end;       /* base64: padding seen */
	int qp;         /* quoted-printable: 0 text, 1 after '=', 2 after "=X", 3 after '=' and
	                 * whitespace (a soft line break may follow), 4 after CR */
	char qph;       /* the X of "=X" */
	size_t nws;     /* quoted-printable: pending whitespace, dropped at a line end */
	char ws[128];
};

/* The encoding named by a Content-Transfer-Encoding value (lower case, "" when absent). */
enum imap_binary_cte imap_binary_cte(const char *value);
void imap_binary_dec_init(struct imap_binary_dec *d, enum imap_binary_cte cte);
/* Decodes in[0..len) into out, which has room for IMAP_BINARY_OUT(len) bytes; returns the bytes
 * written. imap_binary_dec_end flushes what is held back at the end (into the same room). */
#define IMAP_BINARY_OUT(len) (2 * (len) + 256)
size_t imap_binary_dec_feed(struct imap_binary_dec *d, const char *in, size_t len, char *out);
size_t imap_binary_dec_end(struct imap_binary_dec *d, char *out);

/* BINARY[...]<o.n>, BINARY.PEEK[...], BINARY.SIZE[...]: fills it (section path, partial, name)
 * and *peek_r, *size_r. False when a is not one (or its section is not a part number list). */
bool imap_binary_item_parse(const char *name, const char *section, bool partial, uint32_t offset,
                            uint32_t size, struct imap_section_item *it, bool *peek_r,
                            bool *size_r);

/* Starts the item for message m (structure ms, NULL for a whole message; reader the open
 * message, held by the FETCH until the item is done, NULL when it could not be opened) into
 * *bp. Returns 1 when the item was written whole (NIL, an empty string), 0 when it goes on in
 * imap_binary_pump, -1 when the part's encoding is unknown (the item was written as NIL; the
 * FETCH ends NO [UNKNOWN-CTE]). */
int imap_binary_start(struct imap_session *s, const struct imap_msg *m,
                      const struct imap_section_item *it, const struct mimestruct *ms,
                      bool size_only, struct store_reader *reader, struct imap_binary **bp);
/* Goes on with the item: 0 while a read runs or the output is full (the read's completion or
 * the drained output runs the session again), 1 when the item is complete (*bp is then NULL). */
int imap_binary_pump(struct imap_session *s, struct imap_binary **bp);
/* Drops an item in progress (the FETCH ends early, the session closes). A read still running
 * finishes on its own and is freed by its completion. */
void imap_binary_free(struct imap_binary **bp);

#endif
