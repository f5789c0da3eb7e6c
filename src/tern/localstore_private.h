/* localstore_private: the store handle, shared by localstore.c and localstore_remote.c only. */
#ifndef TERN_LOCALSTORE_PRIVATE_H
#define TERN_LOCALSTORE_PRIVATE_H

#include <limits.h>

#include <sqlite3.h>

struct lstore {
	char home[PATH_MAX];
	sqlite3 *db;
};

#endif
