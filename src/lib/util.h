/* util: allocation that never returns NULL, and small string helpers. */
#ifndef TERN_UTIL_H
#define TERN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation failure is handled here, once: the process logs and aborts. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies at most dstsize-1 bytes and always terminates; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t dstsize);
/* ASCII case-insensitive prefix test: returns a pointer past the prefix or NULL. */
const char *str_skip_prefix_ci(const char *s, const char *prefix);
/* Lower-cases ASCII in place and returns s. */
char *str_lower(char *s);

/* Wall clock in seconds and monotonic clock in microseconds. */
int64_t time_now(void);
int64_t time_mono_usec(void);
/* Formats t as "2026-11-24T21:10:26Z" (ISO 8601, UTC). */
void time_format_iso8601(int64_t t, char *buf, size_t bufsize);

/* Writes the whole buffer, retrying on EINTR and short writes. Returns 0 or -1 (errno set). */
int write_full(int fd, const void *buf, size_t len);
/* fsync()s the directory at path. Returns 0 or -1 (errno set). */
int fsync_dir(const char *path);
/* mkdir -p with the given mode; 0 or -1 (errno set). */
int mkdir_p(const char *path, unsigned mode);

#endif
