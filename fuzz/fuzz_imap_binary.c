/* fuzz_imap_binary: the BINARY decoder (base64, quoted-printable, identity). The first byte picks
 * the encoding and a chunk size; the rest is decoded whole and in chunks, which must give the
 * same bytes, never more than IMAP_BINARY_OUT allows. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_binary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
decode(enum imap_binary_cte cte, const char *in, size_t len, size_t chunk, char *out)
{
	struct imap_binary_dec d;
	size_t n = 0;

	imap_binary_dec_init(&d, cte);
	for (size_t off = 0; off < len;) {
		size_t step = chunk > len - off ? len - off : chunk;
		size_t got = imap_binary_dec_feed(&d, in + off, step, out + n);

		if (got > IMAP_BINARY_OUT(step))
			abort();
		n += got;
		off += step;
	}
	return n + imap_binary_dec_end(&d, out + n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum imap_binary_cte ctes[] = {IMAP_CTE_IDENTITY, IMAP_CTE_BASE64,
	                                            IMAP_CTE_QP};
	char *whole, *parts;
	size_t a, b, chunk;

	if (size < 1 || size > 4096)
		return 0;
	chunk = (size_t)(data[0] >> 2) + 1;
	whole = malloc(IMAP_BINARY_OUT(size));
	parts = malloc(IMAP_BINARY_OUT(size) + 256 * size);
	a = decode(ctes[data[0] % 3], (const char *)data + 1, size - 1, size, whole);
	b = decode(ctes[data[0] % 3], (const char *)data + 1, size - 1, chunk, parts);
	if (a != b || memcmp(whole, parts, a) != 0)
		abort();
	free(whole);
	free(parts);
	return 0;
}
