/* store_import: what a bulk import (ternd mail import) needs beyond store_blob_commit_group.
 *
 * A command-line tool normally opens the store without workers, so each commit runs inline: one
 * message (or one group) per transaction, its fdatasync on the calling thread. An import of a
 * hundred thousand messages wants the daemon's pipeline instead: the sync threads parse the
 * summaries and MIME structures and fdatasync the files in parallel, and the committer takes
 * every group waiting into one transaction with one fsync per directory. store_import_start()
 * starts that pipeline on a store opened without workers, and, unlike store_open() with workers,
 * sweeps nothing: the daemon may be running and its files in DIR/tmp are alive. */
#include "store/store_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
store_import_start(struct store *store, struct workers *workers, char *error, size_t errsize)
{
	if (store->pipeline != NULL || store->workers != NULL) {
		snprintf(error, errsize, "the store already has a commit pipeline");
		return -1;
	}
	store->workers = workers;
	if (store_pipeline_start(store, error, errsize) < 0) {
		store->workers = NULL;
		return -1;
	}
	return 0;
}

int
store_import_sync(struct store *store)
{
	int fd = open(store->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = syncfs(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int
store_import_keywords(const char *list, char *out, char *error, size_t errsize)
{
	return store_keywords_normalize(list, out, error, errsize);
}
