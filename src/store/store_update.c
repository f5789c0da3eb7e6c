/* store_update: placeholder until it lands. */
#include "store/store_private.h"

typedef int store_update_placeholder;
