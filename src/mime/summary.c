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

/* What GMime is given of a message's top-level header: a header bomb (a million To: lines)
 * would otherwise cost tens of times its size in GMime objects. The fields past the cap are not
 * summarized (From, To, Subject, Date and Message-ID come first in real mail). */
#define MIME_SUMMARY_HEADER_MAX (256 * 1024)
#define MIME_SUMMARY_FIELDS_MAX 1000
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

/* Where the top-level header of the file at fd would have to be cut for GMime: *keep_r is the
 * offset of the first field past MIME_SUMMARY_HEADER_MAX bytes or MIME_SUMMARY_FIELDS_MAX
 * fields (the header is kept up to there), *blank_r that of the blank line ending the header
 * (or the end of the file). Returns 1 when the header must be cut, 0 when it fits, -1 on a read
 * error. Reads the header in chunks: constant memory whatever its size. */
static int
mime_header_cut(int fd, off_t *keep_r, off_t *blank_r)
{
	char buf[65536];
	off_t off = 0, keep = -1;
	size_t fields = 0;
	bool bol = true, cr_only = false; /* at the start of a line; the line so far is "\r" */
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++, off++) {
			char c = buf[i];

			if (bol) {
				if (c == '\n') {
					*keep_r = keep;
					*blank_r = off;
					return keep >= 0;
				}
				if (c != ' ' && c != '\t' && c != '\r') {
					/* A new field (a line starting "\r" is treated as one
					 * unless it is the blank line). */
					if (keep < 0 && (++fields > MIME_SUMMARY_FIELDS_MAX ||
							 off >= MIME_SUMMARY_HEADER_MAX))
						keep = off;
				}
				cr_only = c == '\r';
				bol = false;
				if (cr_only)
					continue;
			}
			if (c == '\n') {
				if (cr_only) {
					*keep_r = keep;
					*blank_r = off - 1;
					return keep >= 0;
				}
				bol = true;
			}
			cr_only = false;
		}
	}
	if (n < 0)
		return -1;
	*keep_r = keep;
	*blank_r = off;
	return keep >= 0;
}

/* A stream of the file at fd2 (owned) for GMime: the file itself, or, when its header is
 * larger than the caps, the first fields that fit followed by the file from the blank line on,
 * so that GMime's per-field objects (tens of times the header's size) stay bounded. */
static GMimeStream *
mime_file_stream(int fd2)
{
	off_t keep, blank;
	GMimeStream *cat, *head, *rest;
	GByteArray *kept;

	if (mime_header_cut(fd2, &keep, &blank) <= 0)
		return g_mime_stream_fs_new_with_bounds(fd2, 0, -1); /* owns fd2 */
	kept = g_byte_array_sized_new((guint)keep);
	g_byte_array_set_size(kept, (guint)keep);
	if (keep > 0 && pread(fd2, kept->data, (size_t)keep, 0) != keep)
		g_byte_array_set_size(kept, 0);
	head = g_mime_stream_mem_new_with_byte_array(kept); /* owns kept */
	rest = g_mime_stream_fs_new_with_bounds(fd2, blank, -1);
	cat = g_mime_stream_cat_new();
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), head);
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), rest);
	g_object_unref(head);
	g_object_unref(rest);
	log_debug("mime event=header-cut kept=%lld header=%lld", (long long)keep, (long long)blank);
	return cat;
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
			const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			if (*n < max)
				addrs[*n] = xstrdup(addr != NULL ? addr : "");
			(*n)++;
		} else if (INTERNET_ADDRESS_IS_GROUP(ia) && depth < MIME_ADDRESS_GROUP_DEPTH) {
			mime_collect_addresses(
			    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), depth + 1,
			    addrs, max, n);
		}
	}
}

size_t
mime_addresses(const char *value, char **addrs, size_t max)
{
	InternetAddressList *list;
	size_t n = 0;

	mime_init();
	list = internet_address_list_parse(NULL, value);
	if (list == NULL)
		return 0;
	mime_collect_addresses(list, 0, addrs, max, &n);
	g_object_unref(list);
	return n;
}
