/* fuzz_mimestruct: placeholder until the module lands. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "mime/mimestruct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *blob;
	size_t len;

	if (mimestruct_build_buffer((const char *)data, size, &blob, &len) == 0)
		free(blob);
	return 0;
}
