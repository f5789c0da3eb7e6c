/* imap_search_index: SEARCH narrowed by the store's full-text index.
 *
 * When the program has a key the index can answer for (imap_match_index_key: SUBJECT, FROM, TO,
 * CC, BCC, BODY or TEXT with 3 characters or more, required by every match), the store gives
 * the candidates among the mailbox's messages (store_search_candidates) and only those are read
 * and confirmed by the matcher; every other message cannot match. The index never decides a
 * match: it only spares reading the messages that cannot match, so the results are those of
 * the scan. When the query fails the search reads every message, as without the index.
 *
 * The candidates are those of the index as it was when the search began (a store snapshot taken
 * by imap_search_index_new), like the session's own view of the mailbox: a message another
 * session expunges meanwhile is still judged, as the scan judged the files it had opened.
 *
 * Threads: made and freed on the loop thread; imap_search_index_run (the store query, which may
 * be slow) runs on the search's worker, while the session waits; the candidates are read there
 * and on the loop thread once it has run. */
#ifndef TERN_IMAP_SEARCH_INDEX_H
#define TERN_IMAP_SEARCH_INDEX_H

#include <stdbool.h>
#include <stdint.h>

struct imap_session;
struct imap_match;
struct imap_search_index;

/* Loop thread: the narrowing for program m in s's selected mailbox, or NULL when the program
 * has no key the index can answer for. */
struct imap_search_index *imap_search_index_new(struct imap_session *s, const struct imap_match *m);
/* Any thread, once: queries the store. */
void imap_search_index_run(struct imap_search_index *x);
/* Whether imap_search_index_run has run. */
bool imap_search_index_ready(const struct imap_search_index *x);
/* After the run: false when the message with uid cannot match (it is not a candidate); true for
 * a candidate, and for every message when the query failed. */
bool imap_search_index_candidate(const struct imap_search_index *x, uint32_t uid);
void imap_search_index_free(struct imap_search_index **x);

#endif
