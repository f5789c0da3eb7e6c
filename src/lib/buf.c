/* buf: the growable byte string (see buf.h). */
#include "lib/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

void
buf_reserve(struct buf *b, size_t n)
{
	size_t cap;

	if (n > SIZE_MAX / 2 - b->len)
		fatalx("buf event=overflow len=%zu add=%zu", b->len, n);
	if (b->len + n + 1 <= b->cap)
		return;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < b->len + n + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

void
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list again;
	int n;

	buf_reserve(b, 64);
	va_copy(again, ap);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	if (n < 0)
		fatalx("buf event=printf-failed");
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
	}
	va_end(again);
	b->len += (size_t)n;
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
buf_truncate(struct buf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->data[len] = '\0';
}

const char *
buf_cstr(const struct buf *b)
{
	return b->data != NULL ? b->data : "";
}

char *
buf_steal(struct buf *b)
{
	char *s = b->data != NULL ? b->data : xstrdup("");

	*b = (struct buf)BUF_INIT;
	return s;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf)BUF_INIT;
}

void
array_grow(void **p, size_t *cap, size_t need, size_t elem_size)
{
	size_t n;

	if (need <= *cap)
		return;
	n = *cap < 8 ? 8 : *cap;
	while (n < need) {
		if (n > SIZE_MAX / 2 / elem_size)
			fatalx("array event=overflow need=%zu size=%zu", need, elem_size);
		n *= 2;
	}
	*p = xrealloc(*p, n * elem_size);
	*cap = n;
}
