/* mime_summary: the header facts kept in the index (from, to, subject, date, message-id,
 * attachments), parsed with GMime 3. Input is hostile: any byte sequence gives a summary,
 * possibly with empty fields, and every string comes out as valid UTF-8 without control
 * characters, truncated on a character boundary. */
#include "mime/summary.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "lib/log.h"
#include "lib/util.h"

/* What GMime is given of one run of header lines (a message's or a part's header): a header
 * bomb (a million To: lines) would otherwise cost tens of times its size in GMime objects. The
 * fields past the cap are not summarized (From, To, Subject, Date and Message-ID come first in
 * real mail). */
#define MIME_SUMMARY_HEADER_MAX (256 * 1024)
#define MIME_SUMMARY_FIELDS_MAX 1000
#define MIME_SUMMARY_FIELD_MAX 8192 /* bytes of one field (the summary keeps 512) */
#define MIME_ADDRESS_GROUP_DEPTH 2

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;
static bool mime_initialized;

static void
mime_init_once(void)
{
	g_mime_init();
	mime_initialized = true;
}

/* Safe to call more than once and from any thread: only the first call initialises GMime. */
void
mime_init(void)
{
	pthread_once(&mime_once, mime_init_once);
}

void
mime_deinit(void)
{
	if (!mime_initialized)
		return;
	g_mime_shutdown();
	mime_initialized = false;
}

/* Copies src to dst as valid UTF-8 with control characters turned into spaces, cut on a
 * character boundary so that it fits dstsize. */
static void
mime_copy_text(char *dst, size_t dstsize, const char *src)
{
	gchar *valid;
	size_t len, n;

	if (dstsize == 0)
		return;
	dst[0] = '\0';
	if (src == NULL)
		return;
	valid = g_utf8_make_valid(src, -1);
	len = strlen(valid);
	n = len < dstsize - 1 ? len : dstsize - 1;
	/* Back up over continuation bytes so the last character is whole. */
	if (n < len) {
		while (n > 0 && ((unsigned char)valid[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, valid, n);
	dst[n] = '\0';
	g_free(valid);
	for (char *p = dst; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	/* Trim what the unfolding left at the ends. */
	len = strlen(dst);
	while (len > 0 && dst[len - 1] == ' ')
		dst[--len] = '\0';
	n = strspn(dst, " ");
	if (n > 0)
		memmove(dst, dst + n, len - n + 1);
}

/* Formats an address list in its decoded display form. */
static void
mime_copy_addresses(char *dst, size_t dstsize, InternetAddressList *list)
{
	char *text;

	dst[0] = '\0';
	if (list == NULL || internet_address_list_length(list) == 0)
		return;
	text = internet_address_list_to_string(list, NULL, FALSE);
	mime_copy_text(dst, dstsize, text);
	g_free(text);
}

/* g_mime_message_foreach callback: notes a part that is an attachment. */
static void
mime_find_attachment(GMimeObject *parent, GMimeObject *part, gpointer user_data)
{
	bool *found = user_data;
	GMimeContentDisposition *disposition;

	if (*found)
		return;
	disposition = g_mime_object_get_content_disposition(part);
	if (disposition != NULL && g_mime_content_disposition_is_attachment(disposition)) {
		*found = true;
		return;
	}
	if (GMIME_IS_PART(part) && g_mime_part_get_filename(GMIME_PART(part)) != NULL) {
		GMimeContentType *type = g_mime_object_get_content_type(part);
		if (type == NULL || !g_mime_content_type_is_type(type, "text", "*"))
			*found = true;
	}
}

/* Parses one message from stream into summary. */
static void
mime_summary_parse(GMimeStream *stream, struct mime_summary *summary)
{
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *message;
	GDateTime *date;
	const char *s;

	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	message = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	if (message == NULL)
		return;
	mime_copy_addresses(summary->from, sizeof(summary->from), g_mime_message_get_from(message));
	mime_copy_addresses(summary->to, sizeof(summary->to), g_mime_message_get_to(message));
	mime_copy_text(summary->subject, sizeof(summary->subject),
	               g_mime_message_get_subject(message));
	s = g_mime_message_get_message_id(message);
	mime_copy_text(summary->message_id, sizeof(summary->message_id), s);
	date = g_mime_message_get_date(message);
	/* NULL when the header is absent or unparsable: date stays 0. */
	if (date != NULL)
		summary->date = g_date_time_to_unix(date);
	g_mime_message_foreach(message, mime_find_attachment, &summary->has_attachments);
	g_object_unref(message);
}

/* A byte range of the file that GMime is not given. */
struct mime_cut {
	off_t start, end;
	bool midline; /* start is inside a line: GMime gets a line end there */
};

/* The runs of header lines (a field-name and ':' at the start of a line, or a continuation
 * line inside such a run) anywhere in the file: the top-level header, each part's MIME header,
 * and header-looking lines of bodies. Past MIME_SUMMARY_FIELDS_MAX lines or
 * MIME_SUMMARY_HEADER_MAX bytes of one run, the rest of that run (up to the line that ends
 * it: the blank line, a boundary, body text) is cut; past MIME_SUMMARY_FIELD_MAX bytes of one
 * field, the rest of that field (GMime's address parser recurses once per ':' and overflows a
 * thread's stack on a To: of 60,000 of them). Boundaries and blank lines never look like
 * header lines, so the MIME structure GMime sees is the message's. */
struct mime_scan {
	struct mime_cut *cuts;
	size_t ncuts, cap;
	off_t run_start;   /* -1: not in a run */
	off_t field_start; /* the current field's first line */
	off_t cut_at;      /* where the rest of the run is cut, -1 none */
	bool midline;      /* cut_at is inside a line */
	off_t field_cut;   /* where the rest of the current field is cut, -1 none */
	size_t run_lines;  /* lines of the run so far */
	enum { MIME_BOL, MIME_NAME, MIME_HEADER, MIME_OTHER } state;
};

static void
mime_scan_add_cut(struct mime_scan *sc, off_t start, off_t end, bool midline)
{
	if (end <= start)
		return;
	if (sc->ncuts == sc->cap) {
		sc->cap = sc->cap ? 2 * sc->cap : 16;
		sc->cuts = xrealloc(sc->cuts, sc->cap * sizeof(*sc->cuts));
	}
	sc->cuts[sc->ncuts++] = (struct mime_cut){start, end, midline};
}

/* The current field ends at off (a line start): closes its cut. */
static void
mime_scan_end_field(struct mime_scan *sc, off_t off)
{
	if (sc->field_cut >= 0)
		mime_scan_add_cut(sc, sc->field_cut, off, true);
	sc->field_cut = -1;
	sc->field_start = off;
}

/* Ends the current run at off (the start of the line that is not part of it). */
static void
mime_scan_end_run(struct mime_scan *sc, off_t off)
{
	mime_scan_end_field(sc, off);
	if (sc->run_start >= 0 && sc->cut_at >= 0)
		mime_scan_add_cut(sc, sc->cut_at, off, sc->midline);
	sc->midline = false;
	sc->run_start = -1;
	sc->cut_at = -1;
	sc->run_lines = 0;
}

/* Cuts the rest of the run from off on; a field cut still open becomes its start. */
static void
mime_scan_cut_run(struct mime_scan *sc, off_t off, bool midline)
{
	sc->cut_at = sc->field_cut >= 0 ? sc->field_cut : off;
	sc->midline = sc->field_cut >= 0 || midline;
	sc->field_cut = -1;
}

/* A line that belongs to the run starts at off (continuation: it continues a field). */
static void
mime_scan_run_line(struct mime_scan *sc, off_t off, bool continuation)
{
	if (sc->run_start < 0)
		sc->run_start = off;
	if (!continuation && sc->cut_at < 0)
		mime_scan_end_field(sc, off);
	if (sc->cut_at < 0 && (++sc->run_lines > MIME_SUMMARY_FIELDS_MAX ||
	                       off - sc->run_start >= MIME_SUMMARY_HEADER_MAX))
		mime_scan_cut_run(sc, off, false);
}

/* Feeds one byte at offset off. */
static void
mime_scan_byte(struct mime_scan *sc, char c, off_t off)
{
	unsigned char u = (unsigned char)c;

	switch (sc->state) {
	case MIME_BOL:
		if ((c == ' ' || c == '\t') && sc->run_start >= 0) {
			mime_scan_run_line(sc, off, true); /* a continuation line */
			sc->state = MIME_HEADER;
		} else if (u > 32 && u < 127 && c != ':') {
			sc->state = MIME_NAME; /* maybe a field-name */
		} else {
			mime_scan_end_run(sc, off);
			sc->state = c == '\n' ? MIME_BOL : MIME_OTHER;
		}
		return;
	case MIME_NAME:
		if (c == ':') {
			/* The line started at the first byte of its name. */
			sc->state = MIME_HEADER;
			return;
		}
		if (u > 32 && u < 127)
			return;
		sc->state = c == '\n' ? MIME_BOL : MIME_OTHER;
		return;
	case MIME_HEADER:
		if (c == '\n') {
			sc->state = MIME_BOL;
		} else if (sc->cut_at >= 0 || sc->run_start < 0) {
			return;
		} else if (off - sc->run_start >= MIME_SUMMARY_HEADER_MAX) {
			/* One line (a To: with a million addresses) past the run's cap. */
			mime_scan_cut_run(sc, off, true);
		} else if (sc->field_cut < 0 && off - sc->field_start >= MIME_SUMMARY_FIELD_MAX) {
			sc->field_cut = off;
		}
		return;
	case MIME_OTHER:
		if (c == '\n')
			sc->state = MIME_BOL;
		return;
	}
}

/* Reads the file at fd once and records in sc the ranges to cut. -1 on a read error. */
static int
mime_scan_file(int fd, struct mime_scan *sc)
{
	char buf[65536];
	off_t off = 0, line = 0;
	ssize_t n;

	sc->run_start = sc->cut_at = sc->field_cut = -1;
	sc->state = MIME_BOL;
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++, off++) {
			int before = sc->state;

			if (before == MIME_BOL)
				line = off;
			mime_scan_byte(sc, buf[i], off);
			/* A field-name turned out to be one: its line joins (or starts) the run;
			 * one that did not ends the run at its start. */
			if (before == MIME_NAME && sc->state == MIME_HEADER)
				mime_scan_run_line(sc, line, false);
			else if (before == MIME_NAME && sc->state != MIME_NAME)
				mime_scan_end_run(sc, line);
		}
	}
	if (n < 0)
		return -1;
	mime_scan_end_run(sc, off);
	return 0;
}

/* A stream of the file at fd2 (owned) for GMime: the file itself, or, when some run of header
 * lines is past the caps, the file without the cut ranges (substreams of it, no copy), so that
 * GMime's per-field objects (tens of times a header's size) stay bounded. */
static GMimeStream *
mime_file_stream(int fd2)
{
	struct mime_scan sc = {0};
	GMimeStream *fs, *cat;
	off_t at = 0;

	fs = g_mime_stream_fs_new_with_bounds(fd2, 0, -1); /* owns fd2 */
	if (mime_scan_file(fd2, &sc) < 0 || sc.ncuts == 0) {
		free(sc.cuts);
		return fs;
	}
	cat = g_mime_stream_cat_new();
	for (size_t i = 0; i <= sc.ncuts; i++) {
		off_t end = i < sc.ncuts ? sc.cuts[i].start : -1;
		GMimeStream *part;

		if (end >= 0 && end <= at) {
			at = sc.cuts[i].end;
			continue;
		}
		part = g_mime_stream_substream(fs, at, end);
		g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), part);
		g_object_unref(part);
		if (i < sc.ncuts && sc.cuts[i].midline) {
			part = g_mime_stream_mem_new_with_buffer("\r\n", 2);
			g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), part);
			g_object_unref(part);
		}
		if (i < sc.ncuts)
			at = sc.cuts[i].end;
	}
	log_debug("mime event=header-cut runs=%zu", sc.ncuts);
	free(sc.cuts);
	g_object_unref(fs);
	return cat;
}

int
mime_header_capped(int fd)
{
	struct mime_scan sc = {0};
	int r = mime_scan_file(fd, &sc);

	free(sc.cuts);
	return r < 0 ? -1 : sc.ncuts > 0;
}

int
mime_summary_from_fd(int fd, struct mime_summary *summary_r)
{
	GMimeStream *stream;
	off_t saved;
	int fd2;

	memset(summary_r, 0, sizeof(*summary_r));
	mime_init();
	/* The duplicate shares the offset: remember it and put it back afterwards. */
	saved = lseek(fd, 0, SEEK_CUR);
	fd2 = dup(fd);
	if (fd2 < 0)
		return -1;
	if (lseek(fd2, 0, SEEK_SET) < 0) {
		close(fd2);
		return -1;
	}
	stream = mime_file_stream(fd2);
	mime_summary_parse(stream, summary_r);
	g_object_unref(stream);
	if (saved >= 0)
		lseek(fd, saved, SEEK_SET);
	return 0;
}

int
mime_summary_from_buffer(const char *data, size_t len, struct mime_summary *summary_r)
{
	GMimeStream *stream;

	memset(summary_r, 0, sizeof(*summary_r));
	mime_init();
	stream =
	    g_mime_stream_mem_new_with_buffer(data != NULL ? data : "", data != NULL ? len : 0);
	mime_summary_parse(stream, summary_r);
	g_object_unref(stream);
	return 0;
}

/* Appends the addr-spec of every mailbox of list (groups flattened) to addrs[*n], counting past
 * max without storing. */
static void
mime_collect_addresses(InternetAddressList *list, int depth, char **addrs, size_t max, size_t *n)
{
	int len = list != NULL ? internet_address_list_length(list) : 0;

	for (int i = 0; i < len; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);

		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *addr =
			    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			if (*n < max)
				addrs[*n] = xstrdup(addr != NULL ? addr : "");
			(*n)++;
		} else if (INTERNET_ADDRESS_IS_GROUP(ia) && depth < MIME_ADDRESS_GROUP_DEPTH) {
			mime_collect_addresses(
			    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
			    depth + 1, addrs, max, n);
		}
	}
}

size_t
mime_addresses(const char *value, char **addrs, size_t max)
{
	InternetAddressList *list;
	size_t n = 0;

	/* GMime's parser recurses per ':' (a group): a long value could overflow the stack. */
	if (strlen(value) > MIME_SUMMARY_FIELD_MAX)
		return 0;
	mime_init();
	list = internet_address_list_parse(NULL, value);
	if (list == NULL)
		return 0;
	mime_collect_addresses(list, 0, addrs, max, &n);
	g_object_unref(list);
	return n;
}
