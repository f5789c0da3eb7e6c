/* imap_sort: SORT and UID SORT (RFC 5256) with SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267:
 * SORT RETURN (MIN MAX COUNT ALL) answered with ESEARCH; CONTEXT=SORT's PARTIAL and UPDATE
 * contexts, see imap_context.h), and the per-message sort data that THREAD uses too.
 *
 * SORT runs as a SEARCH (imap_search_run) whose reader collects, on the workers, what the sort
 * keys need from each matching message's header section (imap_sort_msg_read); the loop thread
 * then orders the matches. Keys that the snapshot answers (ARRIVAL, SIZE) read no file.
 *
 * Semantics (RFC 5256 3, as Dovecot): strings compare case-insensitively (upper-cased and
 * NFKD-decomposed UTF-8, bytewise: close to i;unicode-casemap); a missing field is the empty string
 * and sorts first; DATE is the Date: header in UTC, or the internal date when it is missing or
 * invalid; FROM/TO/CC the first address's mailbox; DISPLAYFROM/DISPLAYTO its decoded display name,
 * or mailbox@host without one; SUBJECT the base subject (imap_subject.h). Messages equal by every
 * key stay in sequence order; REVERSE reverses only the key after it. */
#ifndef TERN_IMAP_SORT_H
#define TERN_IMAP_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What SORT and THREAD need of one message (from its header section). */
struct imap_sort_msg {
	bool has_date;
	int64_t date;         /* the Date: header in seconds since the epoch (UTC), when has_date */
	char *subject;        /* base subject, as compared ("" when none) */
	bool reply;           /* the subject was a reply or forward (RFC 5256 2.1) */
	char *from, *to, *cc; /* first address's mailbox, as compared, or NULL */
	char *display_from, *display_to; /* RFC 5957 display form, as compared, or NULL */
	char *message_id;                /* "<...>" or NULL */
	char **refs;                     /* References (or the In-Reply-To's first id) */
	size_t nrefs;
};

#define IMAP_SORT_REFS_MAX 64 /* references kept per message (the last ones) */

/* Reads and parses the header section of the message in fd (any thread); with refs also the
 * Message-ID and references (THREAD REFERENCES only: they are the bulk). NULL when the file
 * cannot be read. */
struct imap_sort_msg *imap_sort_msg_read(int fd, bool refs);
void imap_sort_msg_free(struct imap_sort_msg **m);

/* imap_search_reader callbacks (imap_private.h) for SORT and THREAD: read() gives the
 * imap_sort_msg of the message (ctx unused) without or with its references, free_data frees
 * one. */
void *imap_sort_reader_read(int fd, void *ctx);
void *imap_sort_reader_read_refs(int fd, void *ctx);
void imap_sort_reader_free(void *data);

/* The Message-IDs ("<...@...>") in text[0..len), in order, at most max (the last ones kept when
 * keep_last, else the first ones): malloc'd array of malloc'd strings (count in *n_r). */
char **imap_sort_msgids(const char *text, size_t len, size_t max, bool keep_last, size_t *n_r);

#endif
