/* Fuzz target: the RETR/TOP streamer. The first byte picks RETR or TOP and the TOP line count,
 * the next two a split point; the rest is the stored message. It is fed whole, in two pieces and
 * (when short) a byte at a time: all runs must agree exactly, each feed must stay within its
 * 2 * len bound, and the output must be well formed (CRLF only, stuffed dots, one terminator). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	char *out;
	size_t out_len;
	uint64_t size;
};

/* Feeds one chunk through a buffer of exactly 2 * len bytes, so ASan sees any overrun. */
static void
fuzz_feed(struct pop3_stuffer *st, struct fuzz_run *run, const char *in, size_t len)
{
	char *out = malloc(2 * len + 1);
	size_t n;

	if (out == NULL)
		abort();
	n = pop3_stuff_feed(st, in, len, out);
	if (n > 2 * len)
		abort();
	memcpy(run->out + run->out_len, out, n);
	run->out_len += n;
	free(out);
}

static void
fuzz_run(struct fuzz_run *run, bool top, uint32_t lines, const char *in, size_t len,
         const size_t *chunks, size_t nchunks)
{
	struct pop3_stuffer st;
	size_t off = 0;

	memset(run, 0, sizeof(*run));
	run->out = malloc(2 * len + POP3_STUFF_END_MAX + 1);
	if (run->out == NULL)
		abort();
	pop3_stuff_init(&st, top, lines);
	for (size_t c = 0; c < nchunks; c++) {
		fuzz_feed(&st, run, in + off, chunks[c]);
		off += chunks[c];
	}
	run->out_len += pop3_stuff_finish(&st, run->out + run->out_len);
	run->size = st.size;
}

static void
fuzz_same(const struct fuzz_run *a, const struct fuzz_run *b)
{
	if (a->out_len != b->out_len || memcmp(a->out, b->out, a->out_len) != 0 ||
	    a->size != b->size)
		abort();
}

/* Every LF is preceded by CR; a line starting with '.' is either stuffed ("..") or the
 * terminator, which comes exactly once, at the end. The size excludes stuffed dots. */
static void
fuzz_check_wire(const struct fuzz_run *run, bool top, const char *in, size_t len)
{
	const char *o = run->out;
	size_t n = run->out_len, dots = 0;
	uint64_t crlf = len;

	if (n < 3 || memcmp(o + n - 3, ".\r\n", 3) != 0)
		abort();
	if (n > 3 && (n < 5 || memcmp(o + n - 5, "\r\n", 2) != 0))
		abort();
	for (size_t i = 0; i < n; i++) {
		if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r'))
			abort();
		if (o[i] == '.' && (i == 0 || o[i - 1] == '\n') && i != n - 3) {
			if (i + 1 >= n || o[i + 1] != '.')
				abort();
			dots++;
			i++;
		}
	}
	/* Output = size + stuffed dots + end (".\r\n", plus a CRLF when the data lacked one). */
	if (run->size + dots + 3 != n && run->size + dots + 5 != n)
		abort();
	if (top)
		return;
	for (size_t i = 0; i < len; i++)
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			crlf++;
	if (run->size != crlf)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run whole, split, bytes;
	size_t len, cut, chunks[2];
	bool top;
	uint32_t lines;
	const char *in;

	if (size < 3)
		return 0;
	top = (data[0] & 0x80) != 0;
	lines = data[0] & 0x7f;
	in = (const char *)data + 3;
	len = size - 3;
	cut = ((size_t)data[1] << 8 | data[2]) % (len + 1);

	chunks[0] = len;
	fuzz_run(&whole, top, lines, in, len, chunks, 1);
	fuzz_check_wire(&whole, top, in, len);
	chunks[0] = cut;
	chunks[1] = len - cut;
	fuzz_run(&split, top, lines, in, len, chunks, 2);
	fuzz_same(&whole, &split);
	free(split.out);

	if (len <= 1024) {
		size_t *ones = malloc((len + 1) * sizeof(*ones));

		if (ones == NULL)
			abort();
		for (size_t i = 0; i < len; i++)
			ones[i] = 1;
		fuzz_run(&bytes, top, lines, in, len, ones, len);
		fuzz_same(&whole, &bytes);
		free(bytes.out);
		free(ones);
	}
	free(whole.out);
	return 0;
}
