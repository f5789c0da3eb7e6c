/* imap_sort: SORT, UID SORT and ESORT (see imap_sort.h). */
#include "imap/imap_sort.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <gmime/gmime.h>

#include "imap/imap_match.h"
#include "imap/imap_private.h"
#include "imap/imap_subject.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/mimeaddr.h"
#include "mime/summary.h"

#define SORT_KEYS_MAX 16 /* sort criteria in one command */

enum sort_key {
	SORT_ARRIVAL = 0,
	SORT_CC,
	SORT_DATE,
	SORT_FROM,
	SORT_SIZE,
	SORT_SUBJECT,
	SORT_TO,
	SORT_DISPLAYFROM,
	SORT_DISPLAYTO,
};

static const struct {
	const char *name;
	enum sort_key key;
	bool file; /* needs the message's header */
} sort_keys[] = {
    {"ARRIVAL", SORT_ARRIVAL, false},
    {"CC", SORT_CC, true},
    {"DATE", SORT_DATE, true},
    {"FROM", SORT_FROM, true},
    {"SIZE", SORT_SIZE, false},
    {"SUBJECT", SORT_SUBJECT, true},
    {"TO", SORT_TO, true},
    {"DISPLAYFROM", SORT_DISPLAYFROM, true},
    {"DISPLAYTO", SORT_DISPLAYTO, true},
};

/* One SORT command, owned by the search job as the reader's context. */
struct sort_ctx {
	enum sort_key keys[SORT_KEYS_MAX];
	bool reverse[SORT_KEYS_MAX];
	size_t nkeys;
	bool uid;
	struct imap_search_ret ret; /* ESORT's and RFC 5267's RETURN options */
};

/* ---- per-message data (workers) ---- */

/* s as compared: upper-cased and decomposed (NFKD), close to i;unicode-casemap (RFC 5051) as
 * Dovecot applies it, so "Änne" sorts with the A's. Invalid bytes replaced. malloc'd. */
static char *
sort_upper(const char *s)
{
	char *valid = g_utf8_make_valid(s, -1);
	char *up = g_utf8_strup(valid, -1);
	char *norm = g_utf8_normalize(up, -1, G_NORMALIZE_ALL);
	char *out = xstrdup(norm != NULL ? norm : up);

	g_free(norm);
	g_free(up);
	g_free(valid);
	return out;
}

char **
imap_sort_msgids(const char *text, size_t len, size_t max, bool keep_last, size_t *n_r)
{
	char **ids = NULL;
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		size_t j;
		bool at = false;

		if (text[i] != '<')
			continue;
		for (j = i + 1; j < len && text[j] != '>' && text[j] != '<'; j++) {
			if (text[j] == '@')
				at = true;
			if (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' || text[j] == '\n')
				break;
		}
		if (j >= len || text[j] != '>' || !at || j == i + 1)
			continue;
		if (n == max) {
			if (!keep_last || max == 0)
				break;
			free(ids[0]);
			memmove(ids, ids + 1, (n - 1) * sizeof(*ids));
			n--;
		}
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = xstrndup(text + i, j + 1 - i);
		i = j;
	}
	*n_r = n;
	return ids;
}

/* The raw value of the first field called name, or NULL. */
static const char *
sort_field(GMimeHeaderList *list, const char *name)
{
	GMimeHeader *h = list != NULL ? g_mime_header_list_get_header(list, name) : NULL;

	return h != NULL ? g_mime_header_get_raw_value(h) : NULL;
}

static void
sort_address(GMimeHeaderList *list, const char *name, char **mailbox_r, char **display_r)
{
	const char *raw = sort_field(list, name);
	char *mbox, *display;

	*mailbox_r = NULL;
	if (display_r != NULL)
		*display_r = NULL;
	if (raw == NULL || mimeaddr_first(raw, strlen(raw), &mbox, &display) == 0)
		return;
	*mailbox_r = sort_upper(mbox);
	if (display_r != NULL)
		*display_r = sort_upper(display);
	free(mbox);
	free(display);
}

static void
sort_msg_parse(struct imap_sort_msg *m, GMimeMessage *message, bool refs)
{
	GMimeHeaderList *list = g_mime_object_get_header_list(GMIME_OBJECT(message));
	const char *raw;
	char *base;
	GDateTime *date;

	raw = sort_field(list, "Subject");
	base = imap_subject_base(raw != NULL ? raw : "", raw != NULL ? strlen(raw) : 0, &m->reply);
	m->subject = sort_upper(base);
	free(base);
	if ((date = g_mime_message_get_date(message)) != NULL) {
		m->has_date = true;
		m->date = g_date_time_to_unix(date);
	}
	sort_address(list, "From", &m->from, &m->display_from);
	sort_address(list, "To", &m->to, &m->display_to);
	sort_address(list, "Cc", &m->cc, NULL);
	if ((raw = sort_field(list, "Message-ID")) != NULL) {
		size_t n;
		char **ids = imap_sort_msgids(raw, strlen(raw), 1, false, &n);

		if (n == 1)
			m->message_id = ids[0];
		free(ids);
	}
	/* RFC 5256 2.2 (1): References, or else the In-Reply-To's first valid Message-ID. */
	if (!refs)
		return;
	if ((raw = sort_field(list, "References")) != NULL)
		m->refs = imap_sort_msgids(raw, strlen(raw), IMAP_SORT_REFS_MAX, true, &m->nrefs);
	if (m->nrefs == 0 && (raw = sort_field(list, "In-Reply-To")) != NULL) {
		free(m->refs);
		m->refs = imap_sort_msgids(raw, strlen(raw), 1, false, &m->nrefs);
	}
}

struct imap_sort_msg *
imap_sort_msg_read(int fd, bool refs)
{
	struct imap_sort_msg *m;
	GMimeParser *parser;
	GMimeStream *stream;
	GMimeMessage *message;
	size_t len;
	char *hdr;

	if (fd < 0 || (hdr = imap_match_read_header(fd, &len)) == NULL)
		return NULL;
	mime_init();
	m = xcalloc(1, sizeof(*m));
	stream = g_mime_stream_mem_new_with_buffer(hdr, len);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	message = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	free(hdr);
	if (message != NULL) {
		sort_msg_parse(m, message, refs);
		g_object_unref(message);
	}
	if (m->subject == NULL)
		m->subject = xstrdup("");
	return m;
}

void
imap_sort_msg_free(struct imap_sort_msg **mp)
{
	struct imap_sort_msg *m = *mp;

	if (m == NULL)
		return;
	free(m->subject);
	free(m->from);
	free(m->to);
	free(m->cc);
	free(m->display_from);
	free(m->display_to);
	free(m->message_id);
	for (size_t i = 0; i < m->nrefs; i++)
		free(m->refs[i]);
	free(m->refs);
	free(m);
	*mp = NULL;
}

void *
imap_sort_reader_read(int fd, void *ctx)
{
	(void)ctx;
	return imap_sort_msg_read(fd, false);
}

void *
imap_sort_reader_read_refs(int fd, void *ctx)
{
	(void)ctx;
	return imap_sort_msg_read(fd, true);
}

void
imap_sort_reader_free(void *data)
{
	struct imap_sort_msg *m = data;

	imap_sort_msg_free(&m);
}

/* ---- ordering (loop thread) ---- */

/* One match being ordered. */
struct sort_item {
	uint32_t idx; /* snapshot index */
	const struct imap_msg *msg;
	const struct imap_sort_msg *data; /* NULL: the file could not be read */
};

static int
sort_cmp_str(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static int
sort_cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int64_t
sort_date(const struct sort_item *it)
{
	return it->data != NULL && it->data->has_date ? it->data->date : it->msg->internal_date;
}

static int
sort_cmp_key(enum sort_key key, const struct sort_item *a, const struct sort_item *b)
{
	const struct imap_sort_msg *da = a->data, *db = b->data;

	switch (key) {
	case SORT_ARRIVAL:
		return sort_cmp_num(a->msg->internal_date, b->msg->internal_date);
	case SORT_SIZE:
		return sort_cmp_num((int64_t)a->msg->size, (int64_t)b->msg->size);
	case SORT_DATE:
		return sort_cmp_num(sort_date(a), sort_date(b));
	case SORT_CC:
		return sort_cmp_str(da ? da->cc : NULL, db ? db->cc : NULL);
	case SORT_FROM:
		return sort_cmp_str(da ? da->from : NULL, db ? db->from : NULL);
	case SORT_TO:
		return sort_cmp_str(da ? da->to : NULL, db ? db->to : NULL);
	case SORT_SUBJECT:
		return sort_cmp_str(da ? da->subject : NULL, db ? db->subject : NULL);
	case SORT_DISPLAYFROM:
		return sort_cmp_str(da ? da->display_from : NULL, db ? db->display_from : NULL);
	case SORT_DISPLAYTO:
		return sort_cmp_str(da ? da->display_to : NULL, db ? db->display_to : NULL);
	}
	return 0;
}

static int
sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct sort_ctx *ctx = arg;
	const struct sort_item *a = pa, *b = pb;

	for (size_t i = 0; i < ctx->nkeys; i++) {
		int r = sort_cmp_key(ctx->keys[i], a, b);

		if (r != 0)
			return ctx->reverse[i] ? -r : r;
	}
	/* RFC 5256 3: equal messages stay in sequence order (not reversed). */
	return sort_cmp_num(a->idx, b->idx);
}

static uint32_t
sort_id(const struct imap_session *s, const struct sort_ctx *ctx, const struct sort_item *it)
{
	return ctx->uid ? s->msgs[it->idx].uid : it->idx + 1;
}

/* "* ESEARCH (TAG "t") [UID] MIN a MAX b ALL set|PARTIAL (m:n set) COUNT n" (Dovecot's order)
 * in sort order (RFC 5267 3.1: MIN/MAX are the first and last in sort order, ALL and PARTIAL
 * keep the order). */
static void
sort_reply_esearch(struct imap_session *s, const char *tag, const struct sort_ctx *ctx,
                   const struct sort_item *items, size_t n)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	unsigned ret = ctx->ret.bits;
	uint32_t *ids = xcalloc(n + 1, sizeof(*ids));

	for (size_t i = 0; i < n; i++)
		ids[i] = sort_id(s, ctx, &items[i]);
	evbuffer_add_printf(out, "* ESEARCH (TAG \"%s\")%s", tag, ctx->uid ? " UID" : "");
	if ((ret & IMAP_SEARCH_RET_MIN) && n > 0)
		evbuffer_add_printf(out, " MIN %u", ids[0]);
	if ((ret & IMAP_SEARCH_RET_MAX) && n > 0)
		evbuffer_add_printf(out, " MAX %u", ids[n - 1]);
	if ((ret & IMAP_SEARCH_RET_ALL) && n > 0) {
		evbuffer_add_printf(out, " ALL ");
		imap_context_write_set(out, ids, n);
	}
	if (ret & IMAP_SEARCH_RET_PARTIAL)
		imap_context_write_partial(out, &ctx->ret, ids, n);
	if (ret & IMAP_SEARCH_RET_COUNT)
		evbuffer_add_printf(out, " COUNT %zu", n);
	evbuffer_add(out, "\r\n", 2);
	free(ids);
}

static void
sort_reply(struct imap_session *s, const char *tag, uint32_t nmsgs, const bool *match,
           void *const *data, void *arg)
{
	struct sort_ctx *ctx = arg;
	struct sort_item *items = xcalloc(nmsgs + 1, sizeof(*items));
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	size_t n = 0;

	for (uint32_t i = 0; i < nmsgs; i++) {
		if (!match[i])
			continue;
		items[n].idx = i;
		items[n].msg = &s->msgs[i];
		items[n].data = data != NULL ? data[i] : NULL;
		n++;
	}
	qsort_r(items, n, sizeof(*items), sort_cmp, ctx);
	if (ctx->ret.esearch) {
		sort_reply_esearch(s, tag, ctx, items, n);
	} else {
		evbuffer_add_printf(out, "* SORT");
		for (size_t i = 0; i < n; i++)
			evbuffer_add_printf(out, " %u", sort_id(s, ctx, &items[i]));
		evbuffer_add(out, "\r\n", 2);
	}
	log_debug("imap session=%s event=sort messages=%u matched=%zu", s->conn.id, nmsgs, n);
	free(items);
	imap_reply(s, "%s OK %sSORT completed", tag, ctx->uid ? "UID " : "");
}

/* imap_context_cmp_fn of a SORT context: as sort_cmp, with the data the context keeps (read by
 * sort_reader) and ties in UID (= sequence) order. */
static int
sort_context_cmp(const struct imap_msg *a, const void *da, const struct imap_msg *b, const void *db,
                 const void *arg)
{
	struct sort_item ia = {.idx = a->uid, .msg = a, .data = da};
	struct sort_item ib = {.idx = b->uid, .msg = b, .data = db};

	return sort_cmp(&ia, &ib, (void *)arg);
}

static void *
sort_context_arg(const void *ctx)
{
	struct sort_ctx *copy = xmalloc(sizeof(*copy));

	memcpy(copy, ctx, sizeof(*copy));
	return copy;
}

static const struct imap_search_reader sort_reader = {imap_sort_reader_read, sort_reply,
                                                      imap_sort_reader_free, free};
static const struct imap_search_reader sort_reader_index = {NULL, sort_reply, imap_sort_reader_free,
                                                            free};

/* Parses the sort criteria list a into ctx. Returns 0, or -1 after replying BAD. */
static int
sort_criteria(struct imap_session *s, const char *tag, const struct imap_arg *a,
              struct sort_ctx *ctx, bool *file_r)
{
	bool reverse = false;

	*file_r = false;
	if (a->type != IMAP_ARG_LIST || a->list_count == 0) {
		imap_bad(s, tag, "syntax: SORT (criteria) charset keys");
		return -1;
	}
	for (size_t i = 0; i < a->list_count; i++) {
		const struct imap_arg *c = &a->list[i];
		size_t k;

		if (imap_arg_atom_equals(c, "REVERSE")) {
			if (reverse)
				break;
			reverse = true;
			continue;
		}
		for (k = 0; k < sizeof(sort_keys) / sizeof(sort_keys[0]); k++)
			if (imap_arg_atom_equals(c, sort_keys[k].name))
				break;
		if (k == sizeof(sort_keys) / sizeof(sort_keys[0]) || ctx->nkeys == SORT_KEYS_MAX) {
			imap_bad(s, tag, "Unknown or too many SORT criteria");
			return -1;
		}
		ctx->keys[ctx->nkeys] = sort_keys[k].key;
		ctx->reverse[ctx->nkeys++] = reverse;
		*file_r = *file_r || sort_keys[k].file;
		reverse = false;
	}
	if (reverse) {
		imap_bad(s, tag, "REVERSE must come before a sort key");
		return -1;
	}
	return 0;
}

void
imap_cmd_sort(struct imap_session *s, const struct imap_command *cmd)
{
	struct sort_ctx *ctx;
	size_t pos = 0;
	const char *cs;
	bool file;

	if (s->conn.closing)
		return;
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->uid = cmd->uid;
	if (imap_search_return_opts(s, cmd->tag, cmd->args, cmd->nargs, &pos, &ctx->ret) < 0)
		goto fail;
	if (pos + 2 >= cmd->nargs) {
		imap_bad(s, cmd->tag, "syntax: SORT [RETURN (...)] (criteria) charset keys");
		goto fail;
	}
	if (sort_criteria(s, cmd->tag, &cmd->args[pos], ctx, &file) < 0)
		goto fail;
	if (!imap_arg_get_astring(&cmd->args[pos + 1], &cs)) {
		imap_bad(s, cmd->tag, "syntax: SORT (criteria) charset keys");
		goto fail;
	}
	if (imap_search_charset_check(s, cmd->tag, cs) < 0)
		goto fail;
	imap_search_run_ret(s, cmd, pos + 2, &ctx->ret, file ? &sort_reader : &sort_reader_index,
	                    ctx, sort_context_cmp,
	                    ctx->ret.bits & IMAP_SEARCH_RET_UPDATE ? sort_context_arg(ctx) : NULL);
	return;
fail:
	free(ctx);
}
