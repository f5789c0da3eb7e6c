/* sasl: the PLAIN (RFC 4616) and LOGIN mechanisms' byte formats, shared by SMTP, POP3 and IMAP. */
#ifndef TERN_SASL_H
#define TERN_SASL_H

#include <stddef.h>

#define SASL_FIELD_MAX 512

/* Decodes base64 (RFC 4648, padding required, no whitespace) into out; returns the decoded length
 * or -1 on bad input or when it does not fit in outsize-1 bytes (out is NUL-terminated, but may
 * hold NULs: use the length). "=" alone decodes to an empty string (RFC 4954). */
long sasl_base64_decode(const char *in, size_t inlen, char *out, size_t outsize);
/* Encodes len bytes as base64 into out (NUL-terminated). Returns 0 or -1 if it does not fit. */
int sasl_base64_encode(const void *in, size_t len, char *out, size_t outsize);

/* Splits a decoded PLAIN message "authzid\0authcid\0passwd". Each field must be valid UTF-8 without
 * NULs and fit SASL_FIELD_MAX; authcid and passwd must be non-empty. Returns 0 or -1. */
int sasl_plain_parse(const char *msg, size_t len, char authzid[SASL_FIELD_MAX + 1],
		     char authcid[SASL_FIELD_MAX + 1], char passwd[SASL_FIELD_MAX + 1]);

#endif
