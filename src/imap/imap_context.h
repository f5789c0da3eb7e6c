/* imap_context: RFC 5267 section 4 (CONTEXT=SEARCH, CONTEXT=SORT) -- the RETURN options of
 * SEARCH and SORT (with RFC 4731's MIN MAX ALL COUNT, RFC 5267's CONTEXT, UPDATE and PARTIAL),
 * the PARTIAL and ADDTO/REMOVEFROM sets, and the updating contexts a session keeps.
 *
 * A context is created by a successful SEARCH or SORT with RETURN (UPDATE ...). It holds the
 * command's tag, the search program (imap_match), for SORT a comparator, and its result as
 * UIDs: in mailbox order for SEARCH, in the requested order for SORT. At most
 * IMAP_CONTEXT_MAX per session (Dovecot keeps 10 too). Past it, and for programs that need
 * the text together with sequence or UID sets (their answer for a message changes when others
 * come and go), the command still succeeds with its other options and says
 * "* NO [NOUPDATE "tag"]" (RFC 5267 4.3.1). Contexts end with CANCELUPDATE or when the mailbox
 * is deselected (SELECT, EXAMINE, CLOSE, UNSELECT, logout, the mailbox deleted).
 *
 * A program that needs the header or body (SUBJECT, BODY, TEXT, ...) keeps a verdict per
 * message: the answer its text gave and the state (flags, keywords, MODSEQ, \Recent) it gave it
 * for, first from the search itself. A message that is new or whose state changed, and that the
 * snapshot alone cannot decide, is read on the worker threads (CONTEXT_BATCH files at a time,
 * as SEARCH does); the context is updated when they come back -- at once between commands or in
 * IDLE, else at the next flush -- so its updates may follow the response that announced the
 * change. A SORT by header keys (DATE, SUBJECT, FROM, ...) keeps its members' sort data (from
 * the SORT, then read the same way for each new member). A context that ends while its files
 * are read leaves the program to the job.
 *
 * Updates are computed from the session's snapshot (and the verdicts), not the store: after every
 * flush of the notify queue (before each command, in IDLE, after this session's own STORE, APPEND,
 * COPY), imap_context_update re-evaluates each program over the messages the client has been
 * told of (after EXISTS, so the sequence numbers of an ADDTO are valid, RFC 5267 4.3.3) and
 * sends "* ESEARCH (TAG "t") [UID] REMOVEFROM (pos set) ADDTO (pos set)" for the difference.
 * An expunged member is removed by imap_context_expunged just before its EXPUNGE (or VANISHED)
 * response, while its sequence number is still valid (RFC 5267 4.3.4); so a context that counts
 * sequence numbers never gets an update while a FETCH, STORE or SEARCH runs that it could not
 * read (expunges are queued then, RFC 3501 7.4.1). SEARCH contexts use position 0 and
 * mailbox order; SORT contexts give each removal the position it has in the list as it
 * shrinks, and each addition, in ascending order, the position it takes (RFC 5267 4.3.3).
 * Loop thread only. */
#ifndef TERN_IMAP_CONTEXT_H
#define TERN_IMAP_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_arg;
struct imap_match;
struct imap_msg;
struct imap_session;
struct evbuffer;

#define IMAP_CONTEXT_MAX 10 /* updating contexts per session */

/* RETURN options (RFC 4731, RFC 5267). */
#define IMAP_SEARCH_RET_MIN 1u
#define IMAP_SEARCH_RET_MAX 2u
#define IMAP_SEARCH_RET_ALL 4u
#define IMAP_SEARCH_RET_COUNT 8u
#define IMAP_SEARCH_RET_CONTEXT 16u /* a hint; accepted and ignored (RFC 5267 4.2) */
#define IMAP_SEARCH_RET_UPDATE 32u
#define IMAP_SEARCH_RET_PARTIAL 64u

/* What "RETURN (...)" asked for. */
struct imap_search_ret {
	bool esearch;    /* RETURN was given: the answer is an ESEARCH response */
	unsigned bits;   /* IMAP_SEARCH_RET_* */
	uint32_t lo, hi; /* PARTIAL: the range, lo <= hi (500:400 is 400:500) */
	char range[24];  /* PARTIAL: the range as sent, echoed in the response */
};

/* Parses the range of "PARTIAL m:n" (RFC 5267 5: nz-number ":" nz-number, no "*", either order)
 * into *lo_r <= *hi_r. Returns 0, or -1 when text is not such a range. */
int imap_context_range_parse(const char *text, uint32_t *lo_r, uint32_t *hi_r);

/* Parses the list after RETURN into *r (r->esearch set; "()" means ALL). Returns 0, or -1 with a
 * text for BAD in *error_r: an unknown option, PARTIAL without a valid range, more than one
 * PARTIAL or ALL (RFC 5267 4.4). */
int imap_context_return_parse(const struct imap_arg *list, struct imap_search_ret *r,
                              const char **error_r);

/* Writes ids[0..n) as a sequence set in that order: runs of ascending consecutive numbers as
 * "a:b", the rest comma-separated (RFC 5267 3.2: a range is never descending). */
void imap_context_write_set(struct evbuffer *out, const uint32_t *ids, size_t n);

/* Writes " PARTIAL (range set)" for the results ids[0..n) (in the answer's order): those at
 * positions r->lo..r->hi, or NIL when there are none (RFC 5267 4.4). */
void imap_context_write_partial(struct evbuffer *out, const struct imap_search_ret *r,
                                const uint32_t *ids, size_t n);

/* True when tag names a live updating context (a SEARCH or SORT with UPDATE under that tag is
 * then answered BAD, RFC 5267 4.3). */
bool imap_context_tag_in_use(const struct imap_session *s, const char *tag);

/* Orders two snapshot messages for a SORT context (<0, 0, >0), from what the snapshot holds and
 * the reader's data of each (NULL for keys the snapshot answers, or when unreadable). */
typedef int imap_context_cmp_fn(const struct imap_msg *a, const void *da, const struct imap_msg *b,
                                const void *db, const void *arg);
struct imap_search_reader;

/* Keeps an updating context for the command tag whose program is *m and whose result is the
 * snapshot messages with match[i] (i < nmsgs, the snapshot unchanged since the search): takes *m
 * (sets it NULL) and arg (freed with free()); cmp NULL for SEARCH. A SORT whose keys need the
 * header passes its reader (read, free_data) and data[i] by snapshot index: the members' data
 * are taken (when kept, the caller must set data[i] of every match NULL once it has used them),
 * new members' are read on the workers. When the session has
 * IMAP_CONTEXT_MAX already, or the program needs the text and has sequence or UID sets, sends
 * "* NO [NOUPDATE "tag"]" and keeps nothing (*m and arg are then still the caller's). Returns 1
 * kept, 0 refused. */
int imap_context_add(struct imap_session *s, const char *tag, bool uid, struct imap_match **m,
                     const bool *match, uint32_t nmsgs, imap_context_cmp_fn *cmp, void *arg,
                     const struct imap_search_reader *reader, void **data);

/* After the snapshot changed and the client was told (EXISTS, FETCH FLAGS): sends the
 * ADDTO/REMOVEFROM updates of every context. */
void imap_context_update(struct imap_session *s);

/* Message seq (UID uid) is about to be reported expunged: REMOVEFROM for the contexts that hold
 * it, before the EXPUNGE response. */
void imap_context_expunged(struct imap_session *s, uint32_t seq, uint32_t uid);

/* Drops every context (the mailbox is deselected, the session ends). */
void imap_context_clear(struct imap_session *s);

/* CANCELUPDATE "tag" ... (RFC 5267 4.3.5). */
struct imap_command;
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_command *cmd);

#endif
