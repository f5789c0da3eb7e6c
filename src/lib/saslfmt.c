/* saslfmt: base64 as SASL uses it (RFC 4954) and the PLAIN message (RFC 4616): the byte formats
 * that the server (auth/sasl.c) and the clients (src/client) share. */
#include "lib/saslfmt.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

/* sodium_init() is idempotent and thread-safe, so calling it on every use is the "once". */
static void
saslfmt_sodium_init(void)
{
	/* A failure (no entropy source) does not matter here: base64 needs no randomness. */
	if (sodium_init() < 0)
		return;
}

/* Checks the alphabet and padding placement: libsodium 1.0.18 takes some 8-bit bytes for
 * base64 digits (found by fuzz/fuzz_sasl.c), so it cannot be the only check. */
static bool
base64_chars_valid(const char *in, size_t inlen)
{
	size_t pad = 0;

	while (pad < 2 && pad < inlen && in[inlen - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < inlen - pad; i++) {
		char c = in[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return false;
	}
	return true;
}

/* Checks shape and alphabet here, then lets libsodium decode and reject non-canonical tails. */
long
base64_decode(const char *in, size_t inlen, char *out, size_t outsize)
{
	size_t binlen = 0;
	const char *end = NULL;

	if (outsize == 0 || inlen > (size_t)LONG_MAX)
		return -1;
	/* RFC 4954 4: a lone "=" is an empty response, distinct from no response at all. */
	if (inlen == 0 || (inlen == 1 && in[0] == '=')) {
		out[0] = '\0';
		return 0;
	}
	/* Padding is required, so anything but whole quanta is malformed. */
	if (inlen % 4 != 0 || !base64_chars_valid(in, inlen))
		return -1;
	saslfmt_sodium_init();
	if (sodium_base642bin((unsigned char *)out, outsize - 1, in, inlen, NULL, &binlen, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	if (end != in + inlen)
		return -1;
	out[binlen] = '\0';
	return (long)binlen;
}

/* Refuses up front what would not fit, since sodium_bin2base64() aborts on a short buffer. */
int
base64_encode(const void *in, size_t len, char *out, size_t outsize)
{
	/* Keeps sodium_base64_ENCODED_LEN() from overflowing. */
	if (len > (SIZE_MAX / 4) * 3 - 3)
		return -1;
	if (sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL) > outsize)
		return -1;
	saslfmt_sodium_init();
	sodium_bin2base64(out, outsize, in, len, sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

int
sasl_plain_encode(const char *user, const char *password, char *out, size_t outsize)
{
	char msg[2 * SASL_FIELD_MAX + 2];
	size_t ulen = strlen(user), plen = password != NULL ? strlen(password) : 0;
	int r;

	if (ulen == 0 || ulen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX)
		return -1;
	msg[0] = '\0';
	memcpy(msg + 1, user, ulen);
	msg[1 + ulen] = '\0';
	if (plen > 0)
		memcpy(msg + 2 + ulen, password, plen);
	r = base64_encode(msg, 2 + ulen + plen, out, outsize);
	sodium_memzero(msg, sizeof(msg));
	return r;
}
