/* mime_text: the searchable text of a message (see mimetext.h). Moved out of imap_match.c so
 * that the matcher and the store's full-text index read a message the same way. */
#include "mime/mimetext.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/mimeaddr.h"
#include "mime/summary.h"

/* s (len bytes, any bytes) as valid UTF-8, case-folded, NULs turned into spaces. g_free(). */
char *
mime_text_fold(const char *s, size_t len, size_t *len_r)
{
	char *tmp = g_malloc(len + 1), *valid, *folded;

	memcpy(tmp, s, len);
	tmp[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (tmp[i] == '\0')
			tmp[i] = ' ';
	valid = g_utf8_make_valid(tmp, (gssize)len);
	g_free(tmp);
	folded = g_utf8_casefold(valid, -1);
	g_free(valid);
	*len_r = strlen(folded);
	return folded;
}

/* The header's addresses, rendered and folded for FROM/TO/CC/BCC (as Dovecot matches them:
 * "name <mailbox@host>", comments dropped, names decoded), or NULL for another field. */
static char *
content_address(GMimeHeader *h, const char *name, size_t *len_r)
{
	static const char *const fields[] = {"From", "To", "Cc", "Bcc"};
	const char *raw = g_mime_header_get_raw_value(h);
	char *text, *folded;

	*len_r = 0;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strcasecmp(name, fields[i]) != 0)
			continue;
		text = mimeaddr_render(raw != NULL ? raw : "", raw != NULL ? strlen(raw) : 0);
		folded = mime_text_fold(text, strlen(text), len_r);
		free(text);
		return folded;
	}
	return NULL;
}

/* Appends "name: value\n" of every header in list to text (raw, folded later) and the folded
 * values to c->headers, within MIME_TEXT_HEADER_MAX bytes. */
static void
content_headers(struct mime_text *c, GMimeHeaderList *list, GString *text, bool index)
{
	int count = list != NULL ? g_mime_header_list_get_count(list) : 0;

	for (int i = 0; i < count && text->len < MIME_TEXT_HEADER_MAX; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
		const char *name = g_mime_header_get_name(h);
		const char *value = g_mime_header_get_value(h);

		if (name == NULL)
			continue;
		if (value == NULL)
			value = "";
		g_string_append(text, name);
		g_string_append(text, ": ");
		g_string_append(text, value);
		g_string_append_c(text, '\n');
		if (!index)
			continue;
		c->headers = xrealloc(c->headers, (c->nheaders + 1) * sizeof(*c->headers));
		c->headers[c->nheaders].name = xstrdup(name);
		c->headers[c->nheaders].value =
		    mime_text_fold(value, strlen(value), &c->headers[c->nheaders].len);
		c->headers[c->nheaders].addr =
		    content_address(h, name, &c->headers[c->nheaders].addr_len);
		c->nheaders++;
	}
}

/* content_headers for a whole message: GMime keeps the Content-* fields with the top-level
 * part, apart from the rest. */
static void
content_message_headers(struct mime_text *c, GMimeMessage *message, GString *text, bool index)
{
	GMimeObject *part = g_mime_message_get_mime_part(message);

	content_headers(c, g_mime_object_get_header_list(GMIME_OBJECT(message)), text, index);
	if (part != NULL)
		content_headers(c, g_mime_object_get_header_list(part), text, index);
}

/* Appends the decoded text of one leaf part to out, up to MIME_TEXT_BODY_MAX in all. */
static void
content_part_text(GMimePart *part, GString *out)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part);
	GMimeStream *src, *filtered;
	GMimeContentEncoding enc;
	const char *charset;
	char buf[16384];
	ssize_t n;

	if (w == NULL || (src = g_mime_data_wrapper_get_stream(w)) == NULL)
		return;
	enc = g_mime_data_wrapper_get_encoding(w);
	charset = g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
	g_mime_stream_reset(src);
	filtered = g_mime_stream_filter_new(src);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
	    enc == GMIME_CONTENT_ENCODING_UUENCODE) {
		GMimeFilter *f = g_mime_filter_basic_new(enc, FALSE);

		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
		g_object_unref(f);
	}
	if (charset != NULL && g_ascii_strcasecmp(charset, "utf-8") != 0 &&
	    g_ascii_strcasecmp(charset, "us-ascii") != 0) {
		GMimeFilter *f = g_mime_filter_charset_new(charset, "UTF-8");

		/* NULL for a charset iconv does not know: the bytes are kept as they are. */
		if (f != NULL) {
			g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
			g_object_unref(f);
		}
	}
	if (out->len > 0)
		g_string_append_c(out, '\n');
	while (out->len < MIME_TEXT_BODY_MAX &&
	       (n = g_mime_stream_read(filtered, buf, sizeof(buf))) > 0) {
		size_t room = MIME_TEXT_BODY_MAX - out->len;

		g_string_append_len(out, buf, (size_t)n < room ? (size_t)n : room);
	}
	g_object_unref(filtered);
}

/* Collects the searchable text below obj: text/ parts and embedded messages' headers. */
static void
content_walk(struct mime_text *c, GMimeObject *obj, GString *out, unsigned depth)
{
	if (obj == NULL || depth > 32 || out->len >= MIME_TEXT_BODY_MAX)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		int count = g_mime_multipart_get_count(GMIME_MULTIPART(obj));

		for (int i = 0; i < count; i++)
			content_walk(c, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i), out,
			             depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (inner == NULL)
			return;
		content_message_headers(c, inner, out, false);
		content_walk(c, g_mime_message_get_mime_part(inner), out, depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		GMimeContentType *type = g_mime_object_get_content_type(obj);

		if (type == NULL || g_mime_content_type_is_type(type, "text", "*"))
			content_part_text(GMIME_PART(obj), out);
	}
}

static struct mime_text *
content_from_stream(GMimeStream *stream, bool body)
{
	struct mime_text *c = xcalloc(1, sizeof(*c));
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *message;
	GString *text;
	GDateTime *date;

	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	message = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	c->have_body = body;
	if (message == NULL)
		return c;
	text = g_string_new(NULL);
	content_message_headers(c, message, text, true);
	c->header_text = mime_text_fold(text->str, text->len, &c->header_len);
	if ((date = g_mime_message_get_date(message)) != NULL) {
		int y, m, d;

		g_date_time_get_ymd(date, &y, &m, &d);
		c->has_date = true;
		c->date_year = y;
		c->date_month = m;
		c->date_day = d;
	}
	if (body) {
		g_string_truncate(text, 0);
		content_walk(c, g_mime_message_get_mime_part(message), text, 0);
		c->body = mime_text_fold(text->str, text->len, &c->body_len);
	}
	g_string_free(text, TRUE);
	g_object_unref(message);
	return c;
}

/* Where the header section of data ends (after its blank line), or len. */
static size_t
content_header_end(const char *data, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (data[i] != '\n')
			continue;
		if (data[i + 1] == '\n')
			return i + 2;
		if (data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

struct mime_text *
mime_text_from_buffer(const char *data, size_t len, bool body)
{
	struct mime_text *c;
	GMimeStream *stream;

	mime_init();
	if (!body)
		len = content_header_end(data, len);
	stream = g_mime_stream_mem_new_with_buffer(data, len);
	c = content_from_stream(stream, body);
	g_object_unref(stream);
	return c;
}

char *
mime_text_read_header(int fd, size_t *len_r)
{
	size_t cap = 65536, len = 0, end;
	char *buf = xmalloc(cap + 1);
	ssize_t n;

	for (;;) {
		n = pread(fd, buf + len, cap - len, (off_t)len);
		if (n < 0) {
			free(buf);
			return NULL;
		}
		len += (size_t)n;
		end = content_header_end(buf, len);
		if (n == 0 || end < len || len >= MIME_TEXT_HEADER_MAX)
			break;
		if (len == cap) {
			cap = cap * 2 > MIME_TEXT_HEADER_MAX ? MIME_TEXT_HEADER_MAX : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
	}
	buf[end] = '\0';
	*len_r = end;
	return buf;
}

/* Reads the header section of fd (up to MIME_TEXT_HEADER_MAX) and parses it. */
static struct mime_text *
content_header_from_fd(int fd)
{
	struct mime_text *c;
	size_t len;
	char *buf = mime_text_read_header(fd, &len);

	if (buf == NULL)
		return NULL;
	c = mime_text_from_buffer(buf, len, false);
	free(buf);
	return c;
}

/* A descriptor of fd's file with a file offset of its own: GMime moves the offset as it reads
 * (lseek, read), and a dup() would share it with fd and with every other reader of fd. Opening
 * /proc/self/fd/N makes a new open file description (deleted files too); dup() is the fallback
 * where /proc is not mounted. */
static int
content_reopen(int fd)
{
	char path[64];
	int fd2;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDONLY | O_CLOEXEC);
	if (fd2 >= 0)
		return fd2;
	return dup(fd);
}

struct mime_text *
mime_text_from_fd(int fd, bool body)
{
	struct mime_text *c;
	GMimeStream *stream;
	struct stat st;
	int fd2;

	mime_init();
	if (!body)
		return content_header_from_fd(fd);
	if (fstat(fd, &st) < 0 || (fd2 = content_reopen(fd)) < 0)
		return NULL;
	/* GMime reads through its own descriptor, at most MIME_TEXT_FILE_MAX bytes of the file. */
	stream = g_mime_stream_fs_new_with_bounds(
	    fd2, 0, st.st_size > MIME_TEXT_FILE_MAX ? MIME_TEXT_FILE_MAX : st.st_size);
	c = content_from_stream(stream, true);
	g_object_unref(stream);
	return c;
}

void
mime_text_free(struct mime_text **c)
{
	if (*c == NULL)
		return;
	for (size_t i = 0; i < (*c)->nheaders; i++) {
		free((*c)->headers[i].name);
		g_free((*c)->headers[i].value);
		g_free((*c)->headers[i].addr);
	}
	free((*c)->headers);
	g_free((*c)->header_text);
	g_free((*c)->body);
	free(*c);
	*c = NULL;
}
