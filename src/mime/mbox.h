/* mbox: splits an mbox file (mboxrd or mboxo) into messages, fed in chunks of any size.
 *
 * A message starts at a "From " line at the start of the input or after a blank line; that blank
 * line is the separator, not part of the message before it (a blank line at the very end too). In
 * the messages' lines, ">From ", ">>From " ... lose one '>' (mboxrd; mboxo only escaped ">From ",
 * which this reads the same way). Status: (R) and X-Status: (A F T D) header fields, as mutt and
 * Dovecot write them, give the flags. The line endings are kept (LF or CRLF).
 *
 * Memory is bounded: only the first MBOX_PREFIX bytes of a line are held (enough to recognize it);
 * the rest of a longer line streams through. Any thread; a reader is used by one at a time. */
#ifndef TERN_MBOX_H
#define TERN_MBOX_H

#include <stddef.h>
#include <stdint.h>

#define MBOX_PREFIX 1024

enum mbox_flag {
	MBOX_SEEN = 1 << 0,
	MBOX_ANSWERED = 1 << 1,
	MBOX_FLAGGED = 1 << 2,
	MBOX_DELETED = 1 << 3,
	MBOX_DRAFT = 1 << 4,
};

/* Each returns 0 to go on or -1 to stop the reader (mbox_reader_feed then returns -1). */
struct mbox_callbacks {
	/* A message starts; date is the "From " line's asctime date (UTC), 0 when it has none. */
	int (*begin)(int64_t date, void *arg);
	/* Bytes of the current message, in order. */
	int (*data)(const char *buf, size_t len, void *arg);
	/* The current message is complete; flags are enum mbox_flag bits. */
	int (*end)(uint32_t flags, void *arg);
};

struct mbox_reader;

struct mbox_reader *mbox_reader_new(const struct mbox_callbacks *cb, void *arg);
void mbox_reader_free(struct mbox_reader **reader);
/* Feeds the next len bytes. Returns 0, -1 when a callback stopped the reader, or -2 when the input
 * is not an mbox (it does not start with a "From " line). After a negative return the reader takes
 * nothing more (the same value is returned again). */
int mbox_reader_feed(struct mbox_reader *reader, const char *buf, size_t len);
/* The input ended: the last message ends (its trailing blank line dropped). Same returns. */
int mbox_reader_finish(struct mbox_reader *reader);

#endif
