/* imap_subject: the base subject of RFC 5256 2.1, which SORT SUBJECT orders by and THREAD groups
 * by. Pure: no sessions, no store; any thread (GMime decodes encoded words: mime_init first).
 *
 * Steps, as the RFC gives them: (1) encoded words decoded to UTF-8 (invalid bytes replaced),
 * tabs and line breaks made spaces, runs of spaces collapsed; (2) trailing "(fwd)" and spaces
 * removed, repeatedly; (3) leading subj-leader text ("Re:", "Fwd:", "Fw:", "[blob] Re:" and
 * spaces) removed; (4) a leading "[blob]" removed when something is left after it; (5) (3) and
 * (4) repeated until neither applies; (6) "[fwd: ... ]" unwrapped and back to (2). Matching is
 * case-insensitive. The input is at most IMAP_SUBJECT_MAX bytes (the rest is ignored). */
#ifndef TERN_IMAP_SUBJECT_H
#define TERN_IMAP_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

#define IMAP_SUBJECT_MAX 8192

/* The base subject of the raw (possibly RFC 2047-encoded, folded) Subject value s[0..len), as
 * UTF-8 (malloc'd, never NULL; "" for none). *reply_r (may be NULL) tells whether anything of
 * (2), (3) or (6) was removed: the message is a reply or forward (RFC 5256 2.1, used by THREAD). */
char *imap_subject_base(const char *s, size_t len, bool *reply_r);

/* The same for text already decoded to UTF-8 (steps 2 to 6 plus the space rules of 1): valid
 * UTF-8 in gives valid UTF-8 out (cut at a character boundary). */
char *imap_subject_base_decoded(const char *s, size_t len, bool *reply_r);

#endif
