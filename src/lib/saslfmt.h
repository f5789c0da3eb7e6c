/* saslfmt: base64 as SASL uses it and the PLAIN message: what the server's SASL exchange
 * (auth/sasl.h) and the clients both need, so src/client never includes auth/. */
#ifndef TERN_SASLFMT_H
#define TERN_SASLFMT_H

#include <stddef.h>

/* The longest authzid, login or password a PLAIN or LOGIN exchange takes. */
#define SASL_FIELD_MAX 512

/* Decodes base64 (RFC 4648, padding required, no whitespace) into out; returns the decoded length
 * or -1 on bad input or when it does not fit in outsize-1 bytes (out is NUL-terminated, but may
 * hold NULs: use the length). "=" alone decodes to an empty string (RFC 4954). */
long base64_decode(const char *in, size_t inlen, char *out, size_t outsize);
/* Encodes len bytes as base64 into out (NUL-terminated). Returns 0 or -1 if it does not fit. */
int base64_encode(const void *in, size_t len, char *out, size_t outsize);

/* The base64 of the PLAIN message "\0user\0password" (no authzid) into out. Returns -1 when
 * user is empty, a field is longer than SASL_FIELD_MAX or out is too small. password may be
 * NULL (empty). The plaintext copy is wiped. */
int sasl_plain_encode(const char *user, const char *password, char *out, size_t outsize);

#endif
