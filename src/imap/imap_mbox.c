/* imap_mbox: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (placeholder until it lands). */
#include "imap/imap_private.h"

typedef int imap_mbox_placeholder;
