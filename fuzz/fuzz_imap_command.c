/* Fuzz target: the IMAP command parser. The first byte picks the limits (defaults, small ones
 * that make every limit reachable, UTF-8 and NUL allowed), the next two seed the chunk sizes;
 * the rest is client input, fed whole, in random chunks and (when short) one byte at a time.
 * Every run must produce the same transcript of events (commands serialized with
 * imap_command_dump, errors with their reply, code, tag and text, streamed literal data
 * concatenated), and the parser's memory must stay within imap_parser_memory_bound(). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_context.h"
#include "imap/imap_notify.h"
#include "imap/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct imap_parser_limits fuzz_limits[4] = {
    {0},
    {.line_max = 64,
     .literal_max = 16,
     .command_max = 128,
     .max_args = 8,
     .max_depth = 4,
     .discard_max = 256,
     .stream_min = 8,
     .stream_max = 32},
    {.utf8 = true, .literal_nul = true},
    {.line_max = 200,
     .literal_max = 100,
     .command_max = 300,
     .max_args = 50,
     .max_depth = 8,
     .discard_max = 1000,
     .stream_min = 1,
     .stream_max = 500,
     .utf8 = true},
};

struct fuzz_buf {
	char *s;
	size_t len, cap;
};

static void
fuzz_put(struct fuzz_buf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (b->s == NULL)
			abort();
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
fuzz_str(struct fuzz_buf *b, const char *s)
{
	fuzz_put(b, s, strlen(s));
}

/* Streamed data is written as one event however it was chunked. */
static void
fuzz_flush(struct fuzz_buf *t, struct fuzz_buf *data)
{
	if (data->len == 0)
		return;
	fuzz_str(t, "D:");
	fuzz_put(t, data->s, data->len);
	fuzz_str(t, "\n");
	data->len = 0;
}

/* RFC 5267's RETURN options (imap_context_return_parse) of every "RETURN (list)" in a command
 * go into the transcript: accepted ones must be consistent (one PARTIAL or ALL, a range
 * 1 <= lo <= hi that reads back the same), refused ones must say why. */
static void
fuzz_return_opts(struct fuzz_buf *t, const struct imap_command *cmd)
{
	for (size_t i = 0; i + 1 < cmd->nargs; i++) {
		struct imap_search_ret r;
		const char *error = NULL;
		char line[96];
		uint32_t lo, hi;

		if (!imap_arg_atom_equals(&cmd->args[i], "RETURN") ||
		    cmd->args[i + 1].type != IMAP_ARG_LIST)
			continue;
		if (imap_context_return_parse(&cmd->args[i + 1], &r, &error) < 0) {
			if (error == NULL)
				abort();
			fuzz_str(t, "R:refused\n");
			continue;
		}
		if (!r.esearch || r.bits == 0 ||
		    ((r.bits & IMAP_SEARCH_RET_PARTIAL) && (r.bits & IMAP_SEARCH_RET_ALL)))
			abort();
		if (r.bits & IMAP_SEARCH_RET_PARTIAL) {
			if (r.lo == 0 || r.lo > r.hi ||
			    memchr(r.range, '\0', sizeof(r.range)) == NULL ||
			    imap_context_range_parse(r.range, &lo, &hi) != 0 || lo != r.lo ||
			    hi != r.hi)
				abort();
		}
		snprintf(line, sizeof(line), "R:%u %u %u %s\n", r.bits, r.lo, r.hi, r.range);
		fuzz_str(t, line);
	}
}

/* NOTIFY's grammar (imap_notify_parse) over the parsed arguments: its result joins the
 * transcript, so it must not depend on the chunking either, and must stay within its caps. */
static void
fuzz_notify(struct fuzz_buf *t, const struct imap_command *cmd)
{
	struct imap_notify_spec *spec = malloc(sizeof(*spec));
	const char *error = NULL;
	char line[128];
	int r;

	if (spec == NULL)
		abort();
	r = imap_notify_parse(cmd->args, cmd->nargs, spec, &error);
	if ((r != IMAP_NOTIFY_PARSE_OK) != (error != NULL) ||
	    spec->ngroups > IMAP_NOTIFY_GROUPS_MAX || spec->nnames > IMAP_NOTIFY_NAMES_MAX ||
	    spec->natts > IMAP_NOTIFY_ATTS_MAX)
		abort();
	for (size_t i = 0; r == IMAP_NOTIFY_PARSE_OK && i < spec->ngroups; i++)
		if (spec->groups[i].first + spec->groups[i].nnames > spec->nnames)
			abort();
	snprintf(line, sizeof(line), "N:%d %zu %zu %zu\n", r, spec->ngroups, spec->nnames,
	         spec->natts);
	fuzz_str(t, line);
	free(spec);
}

/* Plays the input as the given chunks, as a session would, and returns the transcript. */
static char *
fuzz_run(const struct imap_parser_limits *lim, const char *in, const size_t *chunks, size_t nchunks)
{
	struct imap_parser *p = imap_parser_new(lim);
	size_t bound = imap_parser_memory_bound(lim), off = 0;
	struct fuzz_buf t = {NULL, 0, 0}, data = {NULL, 0, 0};
	bool dead = false;

	fuzz_str(&t, "");
	for (size_t c = 0; c < nchunks && !dead; c++) {
		const char *chunk = in + off;
		size_t left = chunks[c];

		off += chunks[c];
		for (;;) {
			size_t used = 99;
			int ret = imap_parser_feed(p, chunk, left, &used);
			char line[512];

			if (used > left || imap_parser_memory(p) > bound)
				abort();
			chunk += used;
			left -= used;
			if (ret == IMAP_PARSE_NEED_MORE) {
				if (left != 0)
					abort();
				break;
			}
			if (ret == IMAP_PARSE_LITERAL_DATA) {
				const char *d;
				size_t dlen;

				imap_parser_literal_data(p, &d, &dlen);
				if (dlen == 0 || dlen > used || d + dlen != chunk)
					abort();
				fuzz_put(&data, d, dlen);
				continue;
			}
			fuzz_flush(&t, &data);
			if (ret == IMAP_PARSE_COMMAND) {
				const struct imap_command *cmd = imap_parser_command(p);
				char *dump;

				if (cmd == NULL)
					abort();
				dump = imap_command_dump(cmd);
				fuzz_str(&t, "C:");
				fuzz_str(&t, dump);
				fuzz_str(&t, "\n");
				free(dump);
				fuzz_return_opts(&t, cmd);
				if (strcmp(cmd->name, "IDLE") == 0)
					imap_parser_expect_line(p);
				if (strcmp(cmd->name, "NOTIFY") == 0)
					fuzz_notify(&t, cmd);
			} else if (ret == IMAP_PARSE_LITERAL_CONTINUE) {
				if (strcmp(imap_parser_tag(p), "refuse") == 0) {
					imap_parser_literal_refuse(p);
					fuzz_str(&t, "refused\n");
				} else {
					fuzz_str(&t, "+\n");
				}
			} else if (ret == IMAP_PARSE_LINE) {
				size_t llen;
				const char *l = imap_parser_line(p, &llen);

				if (l[llen] != '\0')
					abort();
				fuzz_str(&t, "L:");
				fuzz_put(&t, l, llen);
				fuzz_str(&t, "\n");
			} else if (ret == IMAP_PARSE_ERROR) {
				const struct imap_parse_error *e = imap_parser_error(p);

				snprintf(line, sizeof(line), "E:%s %s %s %s%s\n", e->reply,
				         e->resp_code != NULL ? e->resp_code : "-",
				         e->tag != NULL ? e->tag : "*", e->text,
				         e->fatal ? " fatal" : "");
				fuzz_str(&t, line);
				if (e->fatal) {
					if (imap_parser_feed(p, "a", 1, &used) !=
					        IMAP_PARSE_ERROR ||
					    used != 0)
						abort();
					dead = true;
					break;
				}
			} else {
				abort();
			}
		}
	}
	fuzz_flush(&t, &data);
	free(data.s);
	imap_parser_free(&p);
	return t.s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct imap_parser_limits *lim;
	const char *in;
	size_t len, *chunks, n = 0, off = 0;
	uint32_t seed;
	char *whole, *other;

	if (size < 3)
		return 0;
	lim = &fuzz_limits[data[0] & 3];
	seed = (uint32_t)data[1] << 8 | data[2];
	in = (const char *)data + 3;
	len = size - 3;
	chunks = malloc((len + 1) * sizeof(*chunks));
	if (chunks == NULL)
		abort();

	chunks[0] = len;
	whole = fuzz_run(lim, in, chunks, 1);

	/* Random chunks: a small LCG seeded by the input, sizes up to 1..64 (or 1..4096 for
	 * seeds with the top bit set). */
	while (off < len) {
		size_t max = (seed & 0x8000) ? 4096 : 64, c;

		seed = seed * 1103515245u + 12345u;
		c = 1 + (seed >> 16) % max;
		if (c > len - off)
			c = len - off;
		chunks[n++] = c;
		off += c;
	}
	other = fuzz_run(lim, in, chunks, n);
	if (strcmp(whole, other) != 0)
		abort();
	free(other);

	if (len <= 4096) {
		for (size_t i = 0; i < len; i++)
			chunks[i] = 1;
		other = fuzz_run(lim, in, chunks, len);
		if (strcmp(whole, other) != 0)
			abort();
		free(other);
	}
	free(whole);
	free(chunks);
	return 0;
}
