/* imap_catenate: APPEND's CATENATE (RFC 4469) over imap_url (RFC 5092). Used by imap_append.c. */
#ifndef TERN_IMAP_CATENATE_H
#define TERN_IMAP_CATENATE_H

#include <stdbool.h>
#include <stddef.h>

struct imap_session;
struct imap_arg;
struct deliver_tx;
struct imap_catenate;

/* Reads CATENATE's list for one message: each TEXT literal takes the next streamed transaction
 * (streamed[*next], which becomes NULL; an empty literal takes none), each URL is resolved to a
 * range of this account's message file, opened now. Returns 0, or -1 after replying (BAD, NO
 * [BADURL url]); *cat_r is set either way, for imap_catenate_free. Loop thread. */
int imap_catenate_parse(struct imap_session *s, const char *tag, const struct imap_arg *list,
                        struct deliver_tx **streamed, size_t nstreamed, size_t *next,
                        struct imap_catenate **cat_r);
/* Assembles the message, part by part in order, into its transaction. Runs on a worker. */
void imap_catenate_build(struct imap_catenate *cat);
/* After the build: the assembled message's transaction (now the caller's), or NULL when it could
 * not be made (*too_big_r: over the message size limit). */
struct deliver_tx *imap_catenate_take(struct imap_catenate *cat, bool *too_big_r);
void imap_catenate_free(struct imap_catenate **cat);

#endif
