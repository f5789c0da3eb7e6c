/* Fuzz target: the DATA decoder. The first two bytes pick a split point; the rest is fed whole,
 * in two pieces and (when short) a byte at a time, and all runs must agree exactly. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	char *out;
	size_t out_len;
	size_t consumed;
	bool end;
	struct smtp_data_decoder dec;
};

/* Feeds one chunk through a buffer of exactly len + 2 bytes, so ASan sees any overrun. */
static void
fuzz_feed(struct fuzz_run *run, const char *in, size_t len)
{
	char *out = malloc(len + 2);
	size_t out_len = 0, used;
	bool end = false;

	if (out == NULL)
		abort();
	used = smtp_data_feed(&run->dec, in, len, out, &out_len, &end);
	if (used > len || out_len > len + 2 || (used < len && !end))
		abort();
	memcpy(run->out + run->out_len, out, out_len);
	run->out_len += out_len;
	run->consumed += used;
	run->end = end;
	free(out);
}

/* Runs the input as the given chunks, stopping at the end of data. */
static void
fuzz_run(struct fuzz_run *run, const char *in, size_t len, const size_t *chunks, size_t nchunks)
{
	memset(run, 0, sizeof(*run));
	run->out = malloc(len + 2 * nchunks + 1);
	if (run->out == NULL)
		abort();
	smtp_data_init(&run->dec);
	for (size_t c = 0; c < nchunks && !run->end; c++)
		fuzz_feed(run, in + run->consumed, chunks[c]);
	/* Dot removal and CRLF.CRLF only ever shrink the data. */
	if (run->out_len > run->consumed || run->dec.size != run->out_len)
		abort();
	if (!run->end && run->consumed != len)
		abort();
}

/* Two runs must produce the same bytes, offsets and flags. */
static void
fuzz_same(const struct fuzz_run *a, const struct fuzz_run *b)
{
	if (a->out_len != b->out_len || memcmp(a->out, b->out, a->out_len) != 0)
		abort();
	if (a->consumed != b->consumed || a->end != b->end)
		abort();
	if (a->dec.bare_cr != b->dec.bare_cr || a->dec.bare_lf != b->dec.bare_lf ||
	    a->dec.nul != b->dec.nul || a->dec.max_line != b->dec.max_line ||
	    a->dec.size != b->dec.size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run whole, split, bytes;
	size_t len, cut, chunks[2];
	const char *in;

	if (size < 2)
		return 0;
	in = (const char *)data + 2;
	len = size - 2;
	cut = ((size_t)data[0] << 8 | data[1]) % (len + 1);

	chunks[0] = len;
	fuzz_run(&whole, in, len, chunks, 1);
	chunks[0] = cut;
	chunks[1] = len - cut;
	fuzz_run(&split, in, len, chunks, 2);
	fuzz_same(&whole, &split);
	free(split.out);

	if (len <= 1024) {
		size_t *ones = malloc((len + 1) * sizeof(*ones));

		if (ones == NULL)
			abort();
		for (size_t i = 0; i < len; i++)
			ones[i] = 1;
		fuzz_run(&bytes, in, len, ones, len);
		fuzz_same(&whole, &bytes);
		free(bytes.out);
		free(ones);
	}

	/* The end is exactly one CRLF "." CRLF, starting at the data's start or after a CRLF. */
	if (whole.end) {
		size_t e = whole.consumed;

		if (e < 3 || memcmp(in + e - 3, ".\r\n", 3) != 0)
			abort();
		if (e > 3 && (e < 5 || memcmp(in + e - 5, "\r\n", 2) != 0))
			abort();
	}
	free(whole.out);
	return 0;
}
