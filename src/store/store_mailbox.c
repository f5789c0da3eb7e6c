/* store_mailbox: placeholder until it lands. */
#include "store/store_private.h"

typedef int store_mailbox_placeholder;
