/* fuzz_imap_url: RFC 5092 IMAP URLs (imap_url.c), from a buffer of exactly the input's length.
 * A URL that parses names a UID and a mailbox, and every decoded field is NUL-terminated within
 * its array. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_url u;
	const char *error = NULL;

	if (imap_url_parse((const char *)data, size, &u, &error) == 0) {
		if (u.uid == 0 || u.mailbox[0] == '\0' ||
		    memchr(u.mailbox, '\0', sizeof(u.mailbox)) == NULL ||
		    memchr(u.section, '\0', sizeof(u.section)) == NULL ||
		    memchr(u.user, '\0', sizeof(u.user)) == NULL)
			abort();
	} else if (error == NULL) {
		abort();
	}
	return 0;
}
