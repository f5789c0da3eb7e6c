/* fuzz_mbox: the mbox reader (mime/mbox.c) fed a file. The first byte picks a chunk size; the
 * rest is fed whole, in those chunks and one byte at a time, and the three must agree on the
 * result and on every message's date, flags and bytes. The bytes handed out never exceed the
 * input's, and there are never more messages than "From " lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	unsigned char *out;
	size_t len, cap;
	size_t data_bytes, messages;
};

static void
trace_add(struct trace *t, const void *buf, size_t len)
{
	if (t->len + len > t->cap) {
		t->cap = (t->len + len) * 2 + 64;
		t->out = realloc(t->out, t->cap);
		if (t->out == NULL)
			abort();
	}
	memcpy(t->out + t->len, buf, len);
	t->len += len;
}

static int
fz_begin(int64_t date, void *arg)
{
	struct trace *t = arg;

	t->messages++;
	trace_add(t, "B", 1);
	trace_add(t, &date, sizeof(date));
	return 0;
}

static int
fz_data(const char *buf, size_t len, void *arg)
{
	struct trace *t = arg;

	t->data_bytes += len;
	trace_add(t, buf, len);
	return 0;
}

static int
fz_end(uint32_t flags, void *arg)
{
	trace_add(arg, "E", 1);
	trace_add(arg, &flags, sizeof(flags));
	return 0;
}

static const struct mbox_callbacks fz_cb = {fz_begin, fz_data, fz_end};

static int
fz_run(const char *in, size_t len, size_t step, struct trace *t)
{
	struct mbox_reader *r = mbox_reader_new(&fz_cb, t);
	int rc = 0;

	for (size_t off = 0; off < len && rc == 0;) {
		size_t n = step == 0 || step > len - off ? len - off : step;
		rc = mbox_reader_feed(r, in + off, n);
		off += n;
	}
	if (rc == 0)
		rc = mbox_reader_finish(r);
	mbox_reader_free(&r);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace whole = {0}, chunks = {0}, bytes = {0};
	const char *in = (const char *)data + 1;
	size_t len, froms = 0;
	int rc;

	if (size < 1 || size > 65536)
		return 0;
	len = size - 1;
	rc = fz_run(in, len, 0, &whole);
	if (fz_run(in, len, (size_t)data[0] % 61 + 1, &chunks) != rc ||
	    fz_run(in, len, 1, &bytes) != rc)
		abort();
	if (chunks.len != whole.len || bytes.len != whole.len ||
	    (whole.len > 0 && (memcmp(chunks.out, whole.out, whole.len) != 0 ||
	                       memcmp(bytes.out, whole.out, whole.len) != 0)))
		abort();
	for (size_t i = 0; i + 5 <= len; i++)
		if (memcmp(in + i, "From ", 5) == 0)
			froms++;
	if (whole.data_bytes > len || whole.messages > froms)
		abort();
	free(whole.out);
	free(chunks.out);
	free(bytes.out);
	return 0;
}
