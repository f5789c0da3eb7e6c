/* buf: the one growable byte string, and the one way to grow an array.
 *
 * A struct buf is length-counted (it may hold NUL bytes) and always NUL-terminated once anything
 * was added, so data can be used as a C string when it holds text. Zero-initialised is empty
 * ({0} or BUF_INIT); allocation failure aborts (xrealloc). Writers that need a bound check
 * buf->len themselves before adding: a buf never refuses. */
#ifndef TERN_BUF_H
#define TERN_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* NULL until the first byte; NUL-terminated after */
	size_t len;
	size_t cap;
};

#define BUF_INIT                                                                                   \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Makes room for n more bytes (and the NUL) without adding them. */
void buf_reserve(struct buf *b, size_t n);
/* Cuts the content to len bytes (len <= b->len). */
void buf_truncate(struct buf *b, size_t len);
/* The content as a C string: "" when empty. Valid until the next change. */
const char *buf_cstr(const struct buf *b);
/* Hands the content to the caller (free() it; never NULL, "" when empty); b becomes empty. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

/* Grows an array *p of elements of elem_size so that it holds at least need elements: capacity
 * doubles from a first size of 8, and *cap is updated. Usage:
 *     array_grow((void **)&v->items, &v->cap, v->n + 1, sizeof(*v->items)); */
void array_grow(void **p, size_t *cap, size_t need, size_t elem_size);

#endif
