/* mbox: an mbox file split into messages, chunk by chunk (see mbox.h). */
#include "mime/mbox.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/util.h"

enum mbox_mode {
	MBOX_COLLECT, /* gathering a line's first bytes */
	MBOX_PASS,    /* the rest of a long message line: straight through */
	MBOX_SKIP,    /* the rest of a long "From " separator line: dropped */
};

struct mbox_reader {
	const struct mbox_callbacks *cb;
	void *arg;
	char line[MBOX_PREFIX + 1];
	size_t len;
	enum mbox_mode mode;
	bool in_msg, in_header;
	char pending[2]; /* a blank line held back: a separator if a "From " line follows */
	size_t pending_len;
	uint32_t flags;
	int status; /* 0, or the negative value returned from now on */
};

struct mbox_reader *
mbox_reader_new(const struct mbox_callbacks *cb, void *arg)
{
	struct mbox_reader *r = xcalloc(1, sizeof(*r));

	r->cb = cb;
	r->arg = arg;
	return r;
}

void
mbox_reader_free(struct mbox_reader **rp)
{
	free(*rp);
	*rp = NULL;
}

/* The date of "From sender Www Mmm dd hh:mm:ss yyyy" (asctime, UTC), or 0. line is terminated. */
static int64_t
mbox_from_date(const char *line)
{
	const char *p = line + 5;
	struct tm tm;

	while (*p == ' ')
		p++;
	while (*p != ' ' && *p != '\0')
		p++;
	memset(&tm, 0, sizeof(tm));
	if (strptime(p, " %a %b %d %H:%M:%S %Y", &tm) == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}

/* Status: (R seen) and X-Status: (A answered, F flagged, T draft, D deleted). */
static uint32_t
mbox_status_flags(const char *line, size_t len)
{
	static const struct {
		const char *name;
		const char *letters;
		const uint32_t flags[4];
	} fields[] = {
	    {"Status:", "R", {MBOX_SEEN}},
	    {"X-Status:", "AFTD", {MBOX_ANSWERED, MBOX_FLAGGED, MBOX_DRAFT, MBOX_DELETED}},
	};
	uint32_t flags = 0;

	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		size_t n = strlen(fields[f].name);

		if (len < n || strncasecmp(line, fields[f].name, n) != 0)
			continue;
		for (size_t i = n; i < len; i++) {
			const char *c = line[i] != '\0' ? strchr(fields[f].letters, line[i]) : NULL;
			if (c != NULL)
				flags |= fields[f].flags[c - fields[f].letters];
		}
	}
	return flags;
}

static int
mbox_stop(struct mbox_reader *r, int status)
{
	r->status = status;
	return status;
}

/* Handles the first bytes of a line (all of it when complete). */
static int
mbox_line(struct mbox_reader *r, bool complete)
{
	const char *line = r->line;
	size_t n = r->len, skip = 0;
	bool blank = complete && ((n == 1 && line[0] == '\n') ||
	                          (n == 2 && line[0] == '\r' && line[1] == '\n'));

	r->len = 0;
	if (n >= 5 && memcmp(line, "From ", 5) == 0 && (!r->in_msg || r->pending_len > 0)) {
		if (r->in_msg && r->cb->end(r->flags, r->arg) < 0)
			return mbox_stop(r, -1);
		r->line[n] = '\0';
		r->pending_len = 0;
		r->in_msg = r->in_header = true;
		r->flags = 0;
		r->mode = complete ? MBOX_COLLECT : MBOX_SKIP;
		return r->cb->begin(mbox_from_date(r->line), r->arg) < 0 ? mbox_stop(r, -1) : 0;
	}
	if (!r->in_msg)
		return mbox_stop(r, -2);
	if (r->pending_len > 0 && r->cb->data(r->pending, r->pending_len, r->arg) < 0)
		return mbox_stop(r, -1);
	r->pending_len = 0;
	if (blank) {
		memcpy(r->pending, line, n);
		r->pending_len = n;
		r->in_header = false;
		return 0;
	}
	if (r->in_header)
		r->flags |= mbox_status_flags(line, n);
	while (skip < n && line[skip] == '>')
		skip++;
	skip = skip > 0 && n - skip >= 5 && memcmp(line + skip, "From ", 5) == 0 ? 1 : 0;
	r->mode = complete ? MBOX_COLLECT : MBOX_PASS;
	return r->cb->data(line + skip, n - skip, r->arg) < 0 ? mbox_stop(r, -1) : 0;
}

int
mbox_reader_feed(struct mbox_reader *r, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	while (r->status == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = nl != NULL ? (size_t)(nl + 1 - p) : (size_t)(end - p);

		if (r->mode == MBOX_PASS && take > 0 && r->cb->data(p, take, r->arg) < 0)
			return mbox_stop(r, -1);
		if (r->mode != MBOX_COLLECT) {
			p += take;
			if (nl != NULL)
				r->mode = MBOX_COLLECT;
			continue;
		}
		if (take > MBOX_PREFIX - r->len)
			take = MBOX_PREFIX - r->len;
		memcpy(r->line + r->len, p, take);
		r->len += take;
		p += take;
		if (r->line[r->len - 1] == '\n')
			mbox_line(r, true);
		else if (r->len == MBOX_PREFIX)
			mbox_line(r, false);
	}
	return r->status;
}

int
mbox_reader_finish(struct mbox_reader *r)
{
	if (r->status != 0)
		return r->status;
	/* A last line without a newline is still a line. */
	if (r->mode == MBOX_COLLECT && r->len > 0 && mbox_line(r, true) < 0)
		return r->status;
	if (r->in_msg && r->cb->end(r->flags, r->arg) < 0)
		return mbox_stop(r, -1);
	r->in_msg = false;
	return 0;
}
