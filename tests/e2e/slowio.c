/* slowio: an LD_PRELOAD shim for tests/e2e/test_io_responsive.py that makes the disk slow.
 *
 * While the file named by $TERN_SLOWIO_FLAG exists, every read(), pread() and pread64() of a
 * message file (an fd whose path holds ".eml") first sleeps $TERN_SLOWIO_MS milliseconds. It
 * stands in for a cold page cache on a busy disk, which a test cannot otherwise make (dropping
 * the cache or a dm-delay device needs root). Every other read (sockets, SQLite) is untouched.
 * Built by the test with the system's cc; not part of ternd. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static bool
slowio_slow(int fd)
{
	const char *flag = getenv("TERN_SLOWIO_FLAG");
	char link[64], target[4096];
	ssize_t n;

	if (flag == NULL || access(flag, F_OK) != 0)
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	return strstr(target, ".eml") != NULL;
}

static void
slowio_wait(int fd)
{
	const char *ms = getenv("TERN_SLOWIO_MS");
	long v = ms != NULL ? atol(ms) : 100;
	struct timespec ts = {.tv_sec = v / 1000, .tv_nsec = (v % 1000) * 1000000L};

	if (slowio_slow(fd))
		nanosleep(&ts, NULL);
}

ssize_t
read(int fd, void *buf, size_t n)
{
	static ssize_t (*real)(int, void *, size_t);

	if (real == NULL)
		real = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	slowio_wait(fd);
	return real(fd, buf, n);
}

ssize_t
pread(int fd, void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, void *, size_t, off_t);

	if (real == NULL)
		real = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
	slowio_wait(fd);
	return real(fd, buf, n, off);
}

ssize_t
pread64(int fd, void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, void *, size_t, off_t);

	if (real == NULL)
		real = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
	slowio_wait(fd);
	return real(fd, buf, n, off);
}
