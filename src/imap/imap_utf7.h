/* imap_utf7: IMAP's modified UTF-7 for mailbox names (RFC 3501 5.1.3).
 *
 * The store keeps names in UTF-8; IMAP4rev1 clients send and receive them in modified UTF-7:
 * printable ASCII stands for itself except '&', written "&-"; everything else is UTF-16 in a
 * modified base64 (',' for '/', no padding) between '&' and '-'. */
#ifndef TERN_IMAP_UTF7_H
#define TERN_IMAP_UTF7_H

#include <stddef.h>

/* Encodes the UTF-8 name into out (NUL-terminated). Returns 0, or -1 when name is not valid
 * UTF-8, holds a control character, or out is too small. */
int imap_utf7_encode(const char *name, char *out, size_t outsize);
/* Decodes a modified UTF-7 name into UTF-8 in out. Returns 0, or -1 when it is not valid
 * modified UTF-7 (8-bit bytes, an unterminated or empty shift, base64 that encodes printable
 * ASCII or has leftover bits, unpaired surrogates, control characters, two shifts in a row) or
 * out is too small. Only the canonical spelling decodes: when it succeeds, encoding the result
 * gives back name byte for byte, so each mailbox has exactly one name on the wire. */
int imap_utf7_decode(const char *name, char *out, size_t outsize);

#endif
