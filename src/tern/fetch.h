/* fetch: downloads an account's new mail into the local store, over POP3 or IMAP; shared by
 * `tern fetch` and the shell.
 *
 * Incremental: each message's remote key ("pop3:<UIDL>", "imap:<mailbox>:<UIDVALIDITY>:<UID>")
 * is checked with lstore_has_remote first, so only what is new is downloaded. Each message is
 * streamed straight into the store's temporary file and committed on its own; with delete set a
 * message is removed from the server only once its local copy is committed (POP3: DELE, applied
 * by the QUIT at the end; IMAP: one delete of the committed UIDs at the end). Messages already
 * stored by an earlier fetch are deleted too when delete is set, so an interrupted `--delete`
 * run finishes its job the next time. An interrupted fetch keeps what was committed. */
#ifndef TERN_FETCH_H
#define TERN_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tern/accounts.h"
#include "tern/localstore.h"

#define FETCH_MAX_SIZE (100ULL * 1024 * 1024) /* largest message accepted by default */

enum fetch_protocol {
	FETCH_PROTOCOL_AUTO = 0, /* POP3 when the account has a POP3 server, else IMAP */
	FETCH_PROTOCOL_POP3,
	FETCH_PROTOCOL_IMAP,
};

struct fetch_options {
	enum fetch_protocol protocol;
	const char *folder; /* NULL: INBOX. IMAP: the mailbox fetched and the local folder; POP3:
	                     * the local folder only */
	bool delete_after;  /* remove from the server what is safely stored here */
	bool progress;      /* draw a progress bar on stderr (only done when it is a terminal) */
	uint64_t max_size;  /* 0: FETCH_MAX_SIZE */
};

struct fetch_result {
	enum fetch_protocol protocol; /* the one used */
	unsigned remote;              /* messages on the server */
	unsigned fetched;             /* new messages stored */
	unsigned skipped;             /* already here */
	unsigned deleted;             /* removed from the server */
	unsigned too_large;           /* over max_size by the server's count: left there */
	uint64_t bytes;               /* bytes downloaded into the store */
	bool interrupted;             /* stopped by Ctrl-C (what was committed stays) */
};

/* Runs one fetch of account into store. While it runs, a first SIGINT asks it to stop after the
 * current message and a second one ends the process. Returns 0, or -1 with error (the server's
 * text when it refused something); result_r is filled in either case. */
int fetch_run(struct lstore *store, const struct account *account,
              const struct fetch_options *options, struct fetch_result *result_r, char *error,
              size_t errsize);

/* "pop3" or "imap". */
const char *fetch_protocol_name(enum fetch_protocol protocol);
/* Formats a byte count for people: "512 B", "4.2 KB", "12.0 MB", "1.3 GB". */
void fetch_format_bytes(uint64_t bytes, char *buf, size_t bufsize);

#endif
