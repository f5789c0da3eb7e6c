/* mimeaddr: address-list header values as mail programs show them, on top of mimestruct's
 * ENVELOPE address parser (one parser for both): SEARCH FROM/TO/CC/BCC match against the
 * rendering, SORT takes its FROM/TO/CC and DISPLAYFROM/DISPLAYTO keys from the first address.
 *
 * Display names are decoded from RFC 2047 to UTF-8 (GMime; call mime_init() first). Any thread. */
#ifndef TERN_MIME_MIMEADDR_H
#define TERN_MIME_MIMEADDR_H

#include <stddef.h>

/* The raw value v[0..len) rendered as Dovecot renders it for searching: each address as
 * "display name <mailbox@host>" (or "mailbox@host" without a name), comments dropped, names
 * decoded, separated by ", "; a group as "name: addresses;". malloc'd, never NULL. */
char *mimeaddr_render(const char *v, size_t len);

/* The first address (not a group marker) of v[0..len): its mailbox (local part, as in the
 * ENVELOPE, *mailbox_r) and its display form (RFC 5957 3: the decoded display name, or
 * "mailbox@host" without one, *display_r). Both malloc'd; 1 found, 0 none (both NULL). */
int mimeaddr_first(const char *v, size_t len, char **mailbox_r, char **display_r);

#endif
