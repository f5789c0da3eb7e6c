/* fuzz_mime_summary: the index summary of a stored message (mime_summary_from_fd: the scan that
 * cuts over-long runs of header lines, then GMime through substreams) and mime_addresses on the
 * input as a header value. Every string of the summary must be valid, NUL-terminated UTF-8;
 * nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mime/summary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_summary s;
	char *addrs[4], *value;
	size_t n;
	int fd = memfd_create("fuzz_mime_summary", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	if (mime_summary_from_fd(fd, &s) != 0)
		abort();
	if (strnlen(s.from, sizeof(s.from)) == sizeof(s.from) ||
	    strnlen(s.to, sizeof(s.to)) == sizeof(s.to) ||
	    strnlen(s.subject, sizeof(s.subject)) == sizeof(s.subject) ||
	    strnlen(s.message_id, sizeof(s.message_id)) == sizeof(s.message_id))
		abort();
	close(fd);

	value = malloc(size + 1);
	if (value == NULL)
		abort();
	memcpy(value, data, size);
	value[size] = '\0';
	n = mime_addresses(value, addrs, 4);
	for (size_t i = 0; i < n && i < 4; i++)
		free(addrs[i]);
	free(value);
	return 0;
}
