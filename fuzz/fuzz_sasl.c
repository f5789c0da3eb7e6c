/* Fuzz target: SASL base64 and PLAIN. Whatever decodes must re-encode to the same text (the
 * decoder accepts only canonical base64), and raw bytes must survive encode then decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char z[SASL_FIELD_MAX + 1], c[SASL_FIELD_MAX + 1], p[SASL_FIELD_MAX + 1];
	size_t encsize = (size + 2) / 3 * 4 + 1;
	char *dec, *enc, *back;
	long n;

	if (size > 8192)
		return 0;
	dec = malloc(size + 1);
	enc = malloc(encsize);
	back = malloc(size + 1);
	if (dec == NULL || enc == NULL || back == NULL)
		abort();

	n = base64_decode((const char *)data, size, dec, size + 1);
	if (n > 0) {
		char *again = malloc((size_t)n / 3 * 4 + 5);

		if (again == NULL)
			abort();
		if (base64_encode(dec, (size_t)n, again, (size_t)n / 3 * 4 + 5) < 0)
			abort();
		if (strlen(again) != size || memcmp(again, data, size) != 0)
			abort();
		free(again);
		if (sasl_plain_parse(dec, (size_t)n, z, c, p) == 0 &&
		    (c[0] == '\0' || p[0] == '\0'))
			abort();
	}

	if (base64_encode(data, size, enc, encsize) < 0)
		abort();
	n = base64_decode(enc, strlen(enc), back, size + 1);
	if (n != (long)size || memcmp(back, data, size) != 0)
		abort();

	if (sasl_plain_parse((const char *)data, size, z, c, p) == 0) {
		if (strlen(z) + strlen(c) + strlen(p) + 2 != size)
			abort();
	}
	free(dec);
	free(enc);
	free(back);
	return 0;
}
