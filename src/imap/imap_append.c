/* imap_append: APPEND, COPY and MOVE (placeholder until it lands). */
#include "imap/imap_private.h"

typedef int imap_append_placeholder;
