/* fuzz_imap_utf7: modified UTF-7 mailbox names. Any input either fails to decode, or decodes to
 * UTF-8 that encodes back to the very same text (the encoding is canonical); any UTF-8 that
 * encodes decodes back to itself. Output buffers are tight to catch overruns. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in, *out, *back;
	size_t cap = 4 * size + 8;

	if (size > 4096)
		return 0;
	in = malloc(size + 1);
	out = malloc(cap);
	back = malloc(cap);
	memcpy(in, data, size);
	in[size] = '\0';
	if (imap_utf7_decode(in, out, cap) == 0) {
		if (imap_utf7_encode(out, back, cap) != 0 || strcmp(back, in) != 0)
			abort();
	}
	if (imap_utf7_encode(in, out, cap) == 0) {
		if (imap_utf7_decode(out, back, cap) != 0 || strcmp(back, in) != 0)
			abort();
	}
	free(in);
	free(out);
	free(back);
	return 0;
}
