/* compose: outgoing messages built with GMime 3 (headers, alternative and mixed bodies,
 * attachments) and raw messages taken as sendmail -t does. */
#include "tern/compose.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/summary.h"

/* Attachments larger than this are refused before they are read into memory. */
#define COMPOSE_ATTACHMENT_MAX ((off_t)256 * 1024 * 1024)
/* Longest line sent as 7bit; longer ones (or non-ASCII) make the part quoted-printable. */
#define COMPOSE_7BIT_LINE_MAX 76

static const struct {
	const char *ext;
	const char *type;
} compose_types[] = {
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"svg", "image/svg+xml"},
    {"txt", "text/plain"},
    {"md", "text/markdown"},
    {"html", "text/html"},
    {"htm", "text/html"},
    {"csv", "text/csv"},
    {"ics", "text/calendar"},
    {"xml", "application/xml"},
    {"json", "application/json"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tgz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"eml", "message/rfc822"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
};

const char *
compose_content_type(const char *filename)
{
	const char *slash = strrchr(filename, '/');
	const char *dot = strrchr(slash != NULL ? slash + 1 : filename, '.');

	if (dot == NULL || dot[1] == '\0')
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(compose_types) / sizeof(compose_types[0]); i++) {
		if (strcasecmp(dot + 1, compose_types[i].ext) == 0)
			return compose_types[i].type;
	}
	return "application/octet-stream";
}

void
compose_message_free(struct compose_message **msg)
{
	if (*msg == NULL)
		return;
	free((*msg)->data);
	free((*msg)->sender);
	for (size_t i = 0; i < (*msg)->nrcpts; i++)
		free((*msg)->rcpts[i]);
	free((*msg)->rcpts);
	free((*msg)->message_id);
	free(*msg);
	*msg = NULL;
}

/* Checks an envelope address: non-empty, no blanks, controls or angle brackets. */
static bool
compose_addr_ok(const char *addr)
{
	if (addr == NULL || addr[0] == '\0' || strlen(addr) > 320)
		return false;
	for (const unsigned char *p = (const unsigned char *)addr; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	}
	return true;
}

/* Adds an envelope recipient unless it is already there (compared case-insensitively). */
static void
compose_add_rcpt(struct compose_message *msg, const char *addr)
{
	for (size_t i = 0; i < msg->nrcpts; i++) {
		if (strcasecmp(msg->rcpts[i], addr) == 0)
			return;
	}
	msg->rcpts = xrealloc(msg->rcpts, (msg->nrcpts + 1) * sizeof(char *));
	msg->rcpts[msg->nrcpts++] = xstrdup(addr);
}

/* Adds every mailbox of list (groups flattened) to the envelope; -1 on a bad address. */
static int
compose_collect(struct compose_message *msg, InternetAddressList *list, const char **bad_r)
{
	int n = internet_address_list_length(list);

	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressList *members =
			    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
			if (members != NULL && compose_collect(msg, members, bad_r) < 0)
				return -1;
			continue;
		}
		const char *addr =
		    internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia));
		if (!compose_addr_ok(addr)) {
			*bad_r = addr != NULL ? addr : "";
			return -1;
		}
		compose_add_rcpt(msg, addr);
	}
	return 0;
}

/* Parses one address-list argument; NULL with error when it holds no usable address. */
static InternetAddressList *
compose_parse_list(const char *text, const char *what, char *error, size_t errsize)
{
	InternetAddressList *list;

	if (strpbrk(text, "\r\n") != NULL) {
		snprintf(error, errsize, "bad address in %s: it contains a line break", what);
		return NULL;
	}
	list = internet_address_list_parse(NULL, text);
	if (list == NULL || internet_address_list_length(list) == 0) {
		if (list != NULL)
			g_object_unref(list);
		snprintf(error, errsize, "bad address in %s: '%s'", what, text);
		return NULL;
	}
	return list;
}

/* Parses each argument of one recipient kind, adds it to the envelope and, when header is
 * non-NULL, to that header's list. */
static int
compose_recipients(struct compose_message *msg, const char *const *args, size_t n, const char *what,
                   InternetAddressList *header, char *error, size_t errsize)
{
	for (size_t i = 0; i < n; i++) {
		InternetAddressList *list = compose_parse_list(args[i], what, error, errsize);
		const char *bad = NULL;

		if (list == NULL)
			return -1;
		if (compose_collect(msg, list, &bad) < 0) {
			snprintf(error, errsize, "bad address in %s: '%s'", what, args[i]);
			g_object_unref(list);
			return -1;
		}
		if (header != NULL)
			internet_address_list_append(header, list);
		g_object_unref(list);
	}
	return 0;
}

/* A text/SUBTYPE part in UTF-8: 7bit when plain ASCII with short lines, else quoted-printable.
 * CRLF in the input becomes LF here and CRLF again when written. */
static GMimeObject *
compose_text_part(const char *subtype, const char *text, size_t len, const char *what, char *error,
                  size_t errsize)
{
	char *norm = xmalloc(len + 1);
	bool ascii = true;
	size_t o = 0, linelen = 0, maxline = 0;
	GMimeTextPart *part;
	GMimeStream *stream;
	GMimeDataWrapper *wrapper;

	if (memchr(text, '\0', len) != NULL || !g_utf8_validate(text, (gssize)len, NULL)) {
		snprintf(error, errsize, "the %s body is not valid UTF-8 text", what);
		free(norm);
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '\r' && i + 1 < len && text[i + 1] == '\n')
			continue;
		norm[o++] = (char)c;
		if (c == '\n') {
			linelen = 0;
			continue;
		}
		if (c >= 0x80 || c == '\r')
			ascii = false;
		if (++linelen > maxline)
			maxline = linelen;
	}
	part = g_mime_text_part_new_with_subtype(subtype);
	g_mime_text_part_set_charset(part, "utf-8");
	stream = g_mime_stream_mem_new_with_buffer(norm, o);
	wrapper = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(GMIME_PART(part), wrapper);
	g_object_unref(wrapper);
	g_object_unref(stream);
	free(norm);
	g_mime_part_set_content_encoding(GMIME_PART(part),
	                                 ascii && maxline <= COMPOSE_7BIT_LINE_MAX
	                                     ? GMIME_CONTENT_ENCODING_7BIT
	                                     : GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
	return GMIME_OBJECT(part);
}

/* Reads a whole file into a malloc'ed buffer; -1 with error. */
static int
compose_read_file(const char *path, char **data_r, size_t *len_r, char *error, size_t errsize)
{
	struct stat st;
	size_t got = 0;
	char *data;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(error, errsize, "cannot read %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > COMPOSE_ATTACHMENT_MAX) {
		snprintf(error, errsize, "cannot attach %s: %s", path,
		         S_ISREG(st.st_mode) ? "larger than 256 MiB" : "not a regular file");
		close(fd);
		return -1;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(error, errsize, "cannot read %s: %s", path, strerror(errno));
			free(data);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*data_r = data;
	*len_r = got;
	return 0;
}

/* Makes a parameter's RFC 2231 encoding use UTF-8. */
static void
compose_param_utf8(GMimeParamList *params, const char *name)
{
	GMimeParam *param = params != NULL ? g_mime_param_list_get_parameter(params, name) : NULL;

	if (param != NULL)
		g_mime_param_set_charset(param, "utf-8");
}

/* An attachment part: base64, type from the extension, disposition attachment with the file's
 * base name (RFC 2231 encoded on output when non-ASCII). */
static GMimeObject *
compose_attachment(const char *path, char *error, size_t errsize)
{
	char *data, *base, *name, mime[128], *slash;
	size_t len;
	GMimePart *part;
	GMimeStream *stream;
	GMimeDataWrapper *wrapper;

	if (compose_read_file(path, &data, &len, error, errsize) < 0)
		return NULL;
	str_copy(mime, compose_content_type(path), sizeof(mime));
	slash = strchr(mime, '/');
	*slash = '\0';
	part = g_mime_part_new_with_type(mime, slash + 1);
	stream = g_mime_stream_mem_new_with_buffer(data, len);
	wrapper = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(part, wrapper);
	g_object_unref(wrapper);
	g_object_unref(stream);
	free(data);
	g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
	g_mime_object_set_disposition(GMIME_OBJECT(part), "attachment");
	base = g_path_get_basename(path);
	name = g_utf8_make_valid(base, -1);
	g_mime_part_set_filename(part, name);
	g_free(name);
	/* GMime would pick the smallest charset (often iso-8859-1); say UTF-8 everywhere. */
	compose_param_utf8(g_mime_content_disposition_get_parameters(
	                       g_mime_object_get_content_disposition(GMIME_OBJECT(part))),
	                   "filename");
	compose_param_utf8(
	    g_mime_content_type_get_parameters(g_mime_object_get_content_type(GMIME_OBJECT(part))),
	    "name");
	g_free(base);
	return GMIME_OBJECT(part);
}

/* The body: text, html, or both as multipart/alternative; wrapped in multipart/mixed with the
 * attachments when there are any. */
static GMimeObject *
compose_body(const struct compose_request *req, char *error, size_t errsize)
{
	GMimeObject *text = NULL, *html = NULL, *body = NULL;

	if (req->text != NULL || (req->html == NULL && req->nattachments == 0)) {
		text = compose_text_part("plain", req->text != NULL ? req->text : "",
		                         req->text != NULL ? req->text_len : 0, "text", error,
		                         errsize);
		if (text == NULL)
			return NULL;
	}
	if (req->html != NULL) {
		html = compose_text_part("html", req->html, req->html_len, "HTML", error, errsize);
		if (html == NULL) {
			if (text != NULL)
				g_object_unref(text);
			return NULL;
		}
	}
	if (text != NULL && html != NULL) {
		GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
		g_mime_multipart_add(alt, text);
		g_mime_multipart_add(alt, html);
		g_object_unref(text);
		g_object_unref(html);
		body = GMIME_OBJECT(alt);
	} else {
		body = text != NULL ? text : html;
	}
	if (req->nattachments == 0)
		return body;

	GMimeMultipart *mixed = g_mime_multipart_new_with_subtype("mixed");
	if (body != NULL) {
		g_mime_multipart_add(mixed, body);
		g_object_unref(body);
	}
	for (size_t i = 0; i < req->nattachments; i++) {
		GMimeObject *att = compose_attachment(req->attachments[i], error, errsize);
		if (att == NULL) {
			g_object_unref(mixed);
			return NULL;
		}
		g_mime_multipart_add(mixed, att);
		g_object_unref(att);
	}
	return GMIME_OBJECT(mixed);
}

/* Checks a header text given by the user: UTF-8 without line breaks or other controls. */
static int
compose_header_text_ok(const char *s, const char *what, char *error, size_t errsize)
{
	if (!g_utf8_validate(s, -1, NULL)) {
		snprintf(error, errsize, "the %s is not valid UTF-8", what);
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < ' ' && *p != '\t') {
			snprintf(error, errsize, "the %s contains a control character", what);
			return -1;
		}
	}
	return 0;
}

/* Writes message with CRLF line endings and RFC 2231 parameters into msg->data. */
static void
compose_serialize(GMimeMessage *message, struct compose_message *msg)
{
	GMimeFormatOptions *fo = g_mime_format_options_new();
	GMimeStream *out = g_mime_stream_mem_new();
	GByteArray *bytes;

	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	g_mime_format_options_set_param_encoding_method(fo, GMIME_PARAM_ENCODING_METHOD_RFC2231);
	g_mime_object_write_to_stream(GMIME_OBJECT(message), fo, out);
	g_mime_stream_flush(out);
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	msg->len = bytes->len;
	msg->data = xmalloc(bytes->len + 1);
	memcpy(msg->data, bytes->data, bytes->len);
	msg->data[bytes->len] = '\0';
	g_object_unref(out);
	g_mime_format_options_free(fo);
}

int
compose_build(const struct compose_request *req, struct compose_message **msg_r, char *error,
              size_t errsize)
{
	struct compose_message *msg;
	GMimeMessage *message;
	GMimeObject *body;
	InternetAddress *from;
	GDateTime *date;
	const char *at;
	char *id;

	*msg_r = NULL;
	mime_init();
	at = req->from_address != NULL ? strrchr(req->from_address, '@') : NULL;
	if (at == NULL || at == req->from_address || at[1] == '\0' ||
	    !compose_addr_ok(req->from_address)) {
		snprintf(error, errsize, "bad sender address '%s'",
		         req->from_address != NULL ? req->from_address : "");
		return -1;
	}
	if ((req->from_name != NULL &&
	     compose_header_text_ok(req->from_name, "display name", error, errsize) < 0) ||
	    (req->subject != NULL &&
	     compose_header_text_ok(req->subject, "subject", error, errsize) < 0))
		return -1;

	msg = xcalloc(1, sizeof(*msg));
	msg->sender = xstrdup(req->from_address);
	message = g_mime_message_new(TRUE);
	if (compose_recipients(msg, req->to, req->nto, "--to", g_mime_message_get_to(message),
	                       error, errsize) < 0 ||
	    compose_recipients(msg, req->cc, req->ncc, "--cc", g_mime_message_get_cc(message),
	                       error, errsize) < 0 ||
	    compose_recipients(msg, req->bcc, req->nbcc, "--bcc", NULL, error, errsize) < 0)
		goto fail;
	if (msg->nrcpts == 0) {
		snprintf(error, errsize, "no recipients: give --to, --cc or --bcc");
		goto fail;
	}

	from = internet_address_mailbox_new(
	    req->from_name != NULL && req->from_name[0] != '\0' ? req->from_name : NULL,
	    req->from_address);
	internet_address_set_charset(from, "utf-8");
	internet_address_list_add(g_mime_message_get_from(message), from);
	g_object_unref(from);
	if (req->subject != NULL)
		g_mime_message_set_subject(message, req->subject, "utf-8");
	date = req->date != 0 ? g_date_time_new_from_unix_local(req->date)
	                      : g_date_time_new_now_local();
	g_mime_message_set_date(message, date);
	g_date_time_unref(date);
	id = g_mime_utils_generate_message_id(at + 1);
	g_mime_message_set_message_id(message, id);
	msg->message_id = xstrdup(id);
	g_free(id);
	g_mime_object_set_header(GMIME_OBJECT(message), "MIME-Version", "1.0", NULL);

	body = compose_body(req, error, errsize);
	if (body == NULL)
		goto fail;
	g_mime_message_set_mime_part(message, body);
	g_object_unref(body);

	compose_serialize(message, msg);
	g_object_unref(message);
	*msg_r = msg;
	return 0;
fail:
	g_object_unref(message);
	compose_message_free(&msg);
	return -1;
}

/* Copies data to out with every bare LF turned into CRLF, skipping [skip_start, skip_end)
 * ranges; returns the new length. */
static size_t
compose_copy_crlf(const char *data, size_t len, const size_t *skips, size_t nskips, char *out)
{
	size_t o = 0, s = 0;

	for (size_t i = 0; i < len; i++) {
		while (s < nskips && i >= skips[2 * s + 1])
			s++;
		if (s < nskips && i >= skips[2 * s] && i < skips[2 * s + 1])
			continue;
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = data[i];
	}
	return o;
}

/* Adds the addresses of one unfolded header value to the envelope. */
static int
compose_raw_header(struct compose_message *msg, const char *name, const char *value, char *error,
                   size_t errsize)
{
	InternetAddressList *list = internet_address_list_parse(NULL, value);
	const char *bad = NULL;
	int ret = 0;

	if (list == NULL)
		return 0; /* an empty or unparsable list adds nobody */
	if (compose_collect(msg, list, &bad) < 0) {
		snprintf(error, errsize, "bad address in the %s header: '%s'", name, bad);
		ret = -1;
	}
	g_object_unref(list);
	return ret;
}

int
compose_raw(const char *data, size_t len, const char *sender, const char *const *extra_to,
            size_t nextra, struct compose_message **msg_r, char *error, size_t errsize)
{
	struct compose_message *msg = xcalloc(1, sizeof(*msg));
	size_t *skips = NULL, nskips = 0, pos = 0;

	*msg_r = NULL;
	mime_init();
	msg->sender = xstrdup(sender);
	/* Walk the header fields: each starts at a non-blank line and runs over its
	 * continuation lines; the header ends at the first empty line (or a non-field line). */
	while (pos < len) {
		size_t start = pos, end = pos, colon;
		const char *name_end;

		if (data[pos] == '\n' ||
		    (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n'))
			break;
		name_end = memchr(data + pos, ':', len - pos);
		colon = name_end != NULL ? (size_t)(name_end - data) : len;
		for (size_t i = pos; i < colon; i++) {
			if (data[i] == '\n' || data[i] == ' ' || data[i] == '\t') {
				colon = len;
				break;
			}
		}
		if (colon >= len || colon == pos)
			break;
		do {
			const char *nl = memchr(data + end, '\n', len - end);
			end = nl != NULL ? (size_t)(nl - data) + 1 : len;
		} while (end < len && (data[end] == ' ' || data[end] == '\t'));
		pos = end;

		size_t namelen = colon - start;
		const char *kinds[] = {"To", "Cc", "Bcc"};
		if (namelen == 10 && strncasecmp(data + start, "Message-ID", 10) == 0 &&
		    msg->message_id == NULL) {
			char *raw = xstrndup(data + colon + 1, end - colon - 1);
			char *id = g_mime_utils_decode_message_id(raw);
			if (id != NULL && id[0] != '\0')
				msg->message_id = xstrdup(id);
			g_free(id);
			free(raw);
		}
		for (size_t k = 0; k < 3; k++) {
			if (namelen != strlen(kinds[k]) ||
			    strncasecmp(data + start, kinds[k], namelen))
				continue;
			char *raw = xstrndup(data + colon + 1, end - colon - 1);
			char *value = g_mime_utils_header_unfold(raw);
			int r = compose_raw_header(msg, kinds[k], value, error, errsize);
			g_free(value);
			free(raw);
			if (r < 0)
				goto fail;
			if (k == 2) {
				skips = xrealloc(skips, (nskips + 1) * 2 * sizeof(size_t));
				skips[2 * nskips] = start;
				skips[2 * nskips + 1] = end;
				nskips++;
			}
		}
	}
	if (compose_recipients(msg, extra_to, nextra, "--to", NULL, error, errsize) < 0)
		goto fail;
	if (msg->nrcpts == 0) {
		snprintf(error, errsize,
		         "no recipients: the message has no To, Cc or Bcc header and no --to was "
		         "given");
		goto fail;
	}
	msg->data = xmalloc(2 * len + 1);
	msg->len = compose_copy_crlf(data, len, skips, nskips, msg->data);
	msg->data[msg->len] = '\0';
	free(skips);
	*msg_r = msg;
	return 0;
fail:
	free(skips);
	compose_message_free(&msg);
	return -1;
}
