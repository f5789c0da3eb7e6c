/* mime_summary: the parsed facts about a message kept in the index, made with GMime. */
#ifndef TERN_MIME_SUMMARY_H
#define TERN_MIME_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_summary {
	char from[512]; /* "Name <addr>" decoded to UTF-8, truncated on a character boundary */
	char to[512];
	char subject[512];    /* RFC 2047 decoded to UTF-8 */
	int64_t date;         /* Date: as seconds since the epoch, 0 when absent or unparsable */
	char message_id[256]; /* without angle brackets */
	bool has_attachments; /* any part with Content-Disposition attachment, or a named
	                       * non-text part */
};

/* Call once per process before any other mime_ function (g_mime_init). Thread-safe after. */
void mime_init(void);
void mime_deinit(void);
/* Parses the message in the file at fd (from offset 0; fd position is not relied upon). Never
 * fails on malformed input: fields stay empty. Returns 0, or -1 if the file cannot be read. */
int mime_summary_from_fd(int fd, struct mime_summary *summary_r);
int mime_summary_from_buffer(const char *data, size_t len, struct mime_summary *summary_r);
/* Whether the message in fd (pread) has a run of header lines (its header, a part's, or
 * header-looking body lines) or one field past the caps the summary cuts at: a header bomb,
 * which a full GMime parse would turn into gigabytes of objects or a stack overflow. 1 yes,
 * 0 no, -1 when the file cannot be read. Any thread. */
int mime_header_capped(int fd);

/* Parses an address-list header value (RFC 5322: folded, display names, comments, groups,
 * which are flattened into their members) and stores the addr-spec of each mailbox in
 * addrs[0..max) (malloc'd strings; the caller frees those stored). Returns how many there are,
 * which may exceed max (the rest are not stored); 0 when nothing parses as an address, or when
 * value is over 8 KiB (not parsed: GMime's parser recurses and could overflow the stack). */
size_t mime_addresses(const char *value, char **addrs, size_t max);

#endif
