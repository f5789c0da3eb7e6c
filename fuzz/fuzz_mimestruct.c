/* fuzz_mimestruct: a message's MIME structure. Builds the structure of the input, loads the blob
 * back, and runs every section lookup and string writer on it (ENVELOPE, BODY, BODYSTRUCTURE,
 * HEADER.FIELDS over every header range found); then loads the input itself as a blob, which
 * must be refused or be harmless. Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/mimestruct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
exercise(const struct mimestruct *ms, const char *data, size_t size)
{
	static const char *const names[] = {"Subject", "FROM", "content-type", "x"};
	static const uint32_t paths[][4] = {{1, 0, 0, 0}, {2, 0, 0, 0}, {1, 1, 0, 0},
	                                    {2, 1, 0, 0}, {1, 2, 1, 0}, {3, 1, 2, 1}};
	struct buf out = BUF_INIT;

	mimestruct_imap_envelope(ms, &out);
	mimestruct_imap_body(ms, false, &out);
	mimestruct_imap_body(ms, true, &out);
	for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
		for (size_t depth = 0; depth <= 4; depth++) {
			for (int sec = MIMESTRUCT_ALL; sec <= MIMESTRUCT_MIME; sec++) {
				struct mimestruct_range r;

				if (mimestruct_section(ms, paths[p], depth, sec, &r) != 1)
					continue;
				if (data == NULL || r.offset > size || r.len > size - r.offset)
					continue; /* a loaded (not built) blob may point anywhere */
				if (sec == MIMESTRUCT_HEADER || sec == MIMESTRUCT_MIME) {
					mimestruct_header_fields(data + r.offset, (size_t)r.len,
					                         names, 4, false, &out);
					mimestruct_header_fields(data + r.offset, (size_t)r.len,
					                         names, 1, true, &out);
				}
			}
		}
	}
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *blob;
	size_t len;
	struct mimestruct *ms;

	if (mimestruct_build_buffer((const char *)data, size, &blob, &len) == 0) {
		ms = mimestruct_load(blob, len);
		if (ms == NULL)
			abort(); /* a blob just built must load */
		exercise(ms, (const char *)data, size);
		mimestruct_free(&ms);
		free(blob);
	}
	ms = mimestruct_load(data, size);
	if (ms != NULL) {
		exercise(ms, NULL, 0);
		mimestruct_free(&ms);
	}
	return 0;
}
