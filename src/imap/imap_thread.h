/* imap_thread: THREAD and UID THREAD (RFC 5256) with the ORDEREDSUBJECT and REFERENCES
 * algorithms. The command runs as a SEARCH whose reader is SORT's (imap_sort_msg_read: base
 * subject, sent date, Message-ID, References or In-Reply-To); the threading itself is a pure
 * function over those (imap_thread_build), unit-tested in tests/unit/test_imap_thread.c.
 *
 * Message-IDs compare as strings, exactly ("<...@...>" tokens, see imap_sort_msgids). A message
 * without a Message-ID, or with one an earlier message already has, gets a container of its own
 * (RFC 5256 2.2 (1)). Dates tie in sequence order. Threads are at most 1,000 levels deep: a
 * deeper reply chain (or a forged one) continues as a new thread, so hostile References cannot
 * make the work quadratic or the recursion deep. */
#ifndef TERN_IMAP_THREAD_H
#define TERN_IMAP_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_thread_algo {
	IMAP_THREAD_ORDEREDSUBJECT = 0,
	IMAP_THREAD_REFERENCES,
};

/* One message to thread, in mailbox order (seq ascending). Strings are borrowed. */
struct imap_thread_msg {
	uint32_t id;            /* written in the response: sequence number or UID */
	uint32_t seq;           /* breaks ties of dates */
	int64_t date;           /* the sent date (RFC 5256 2.2) */
	const char *subject;    /* base subject, as compared ("" none) */
	bool reply;             /* the subject was a reply or forward */
	const char *message_id; /* or NULL */
	char *const *refs;      /* References (oldest first), or the In-Reply-To's id */
	size_t nrefs;
};

/* The threads of msgs[0..n) as the THREAD response's data ("(1 2 (3)(4))(5)"; "" for no
 * message). malloc'd. */
char *imap_thread_build(enum imap_thread_algo algo, const struct imap_thread_msg *msgs, size_t n);

#endif
