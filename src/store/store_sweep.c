/* store_sweep: at the daemon's start, removes what crashes left behind: every file in DIR/tmp
 * (a message being received), and every file in DIR/mail/<account>/ and DIR/queue/ that no row
 * refers to (renamed into place but its transaction never committed, or expunged rows whose
 * files were not unlinked yet). A file that a committed row names is never touched: each row has
 * its own name (hard links give one name per row), so an unreferenced name is garbage even when
 * its inode lives on under other names. */
#include "store/store_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

/* A message file found on disk, by its path relative to the data directory. */
struct sweep_file {
	char *path;
	struct timespec mtime;
	off_t size;
};

struct sweep_files {
	struct sweep_file *f;
	size_t n, cap;
};

/* Removes every file left in DIR/tmp by a crash mid-receive: nothing refers to them. */
static int
store_clean_tmp(struct store *store, char *error, size_t errsize)
{
	DIR *dir = opendir(store->tmp_dir);
	struct dirent *de;
	int removed = 0;

	if (dir == NULL) {
		snprintf(error, errsize, "cannot open %s: %s", store->tmp_dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(dirfd(dir), de->d_name, 0) == 0)
			removed++;
		else
			log_warn("store event=tmp-clean file=%s/%s", store->tmp_dir, de->d_name);
	}
	closedir(dir);
	if (removed > 0)
		log_info("store event=tmp-clean removed=%d", removed);
	return 0;
}

/* Adds the regular files of DIR/rel to files. A directory that cannot be read is logged and
 * skipped (its files are then all kept). */
static void
store_sweep_list(struct store *store, const char *rel, struct sweep_files *files)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/%s", store->dir, rel);
	dir = opendir(path);
	if (dir == NULL) {
		if (errno != ENOENT)
			log_warn("store event=orphan-sweep dir=%s", path);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (files->n == files->cap) {
			files->cap = files->cap ? files->cap * 2 : 256;
			files->f = xrealloc(files->f, files->cap * sizeof(*files->f));
		}
		files->f[files->n].path = xasprintf("%s/%s", rel, de->d_name);
		files->f[files->n].mtime = st.st_mtim;
		files->f[files->n].size = st.st_size;
		files->n++;
	}
	closedir(dir);
}

static int
store_sweep_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sweep_file *)a)->path, ((const struct sweep_file *)b)->path);
}

/* True when a is strictly before b. */
static bool
store_sweep_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* Lists DIR/queue and DIR/mail/<account>/ into files, sorted by path. */
static void
store_sweep_collect(struct store *store, struct sweep_files *files)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	store_sweep_list(store, "queue", files);
	snprintf(path, sizeof(path), "%s/mail", store->dir);
	dir = opendir(path);
	if (dir != NULL) {
		while ((de = readdir(dir)) != NULL) {
			char rel[300];

			if (de->d_name[0] == '.' || de->d_type == DT_REG)
				continue;
			snprintf(rel, sizeof(rel), "mail/%s", de->d_name);
			store_sweep_list(store, rel, files);
		}
		closedir(dir);
	}
	if (files->n > 0)
		qsort(files->f, files->n, sizeof(*files->f), store_sweep_cmp);
}

/* Removes the files of DIR/mail and DIR/queue that no row names and that are older than this
 * call: a merge of the sorted listing with the sorted paths of every row. */
static int
store_sweep_orphans(struct store *store, char *error, size_t errsize)
{
	struct sweep_files files = {0};
	struct timespec started;
	sqlite3_stmt *st = NULL;
	const char *ref = NULL;
	unsigned long long bytes = 0;
	int removed = 0, rc = SQLITE_ROW, ret = -1;

	clock_gettime(CLOCK_REALTIME, &started);
	store_sweep_collect(store, &files);
	if (files.n == 0)
		return 0;
	st = store_prepare(store->db,
	                   "SELECT path FROM messages UNION SELECT path FROM queue ORDER BY 1",
	                   error, errsize);
	if (st == NULL)
		goto out;
	rc = sqlite3_step(st);
	for (size_t i = 0; i < files.n; i++) {
		const struct sweep_file *f = &files.f[i];
		char abs[PATH_MAX];
		int cmp = 1;

		/* Advance the rows' paths up to this file's (both in byte order). */
		while (rc == SQLITE_ROW) {
			ref = (const char *)sqlite3_column_text(st, 0);
			cmp = ref != NULL ? strcmp(ref, f->path) : -1;
			if (cmp >= 0)
				break;
			rc = sqlite3_step(st);
		}
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			snprintf(error, errsize, "listing message paths: %s",
			         sqlite3_errmsg(store->db));
			goto out;
		}
		if ((rc == SQLITE_ROW && cmp == 0) || !store_sweep_before(f->mtime, started))
			continue;
		snprintf(abs, sizeof(abs), "%s/%s", store->dir, f->path);
		if (unlink(abs) == 0) {
			removed++;
			bytes += (unsigned long long)f->size;
		} else {
			log_warn("store event=orphan-sweep file=%s", abs);
		}
	}
	if (removed > 0)
		log_info("store event=orphan-sweep removed=%d bytes=%llu", removed, bytes);
	ret = 0;
out:
	sqlite3_finalize(st);
	for (size_t i = 0; i < files.n; i++)
		free(files.f[i].path);
	free(files.f);
	return ret;
}

int
store_sweep(struct store *store, char *error, size_t errsize)
{
	if (store_clean_tmp(store, error, errsize) < 0)
		return -1;
	return store_sweep_orphans(store, error, errsize);
}
