/* test_compose: messages built by compose_build parsed back with GMime (structure, types,
 * encodings, attachment bytes, RFC 2047/2231 round-trips, CRLF), and compose_raw's envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/summary.h"
#include "tern/compose.h"

static char test_dir[] = "/tmp/test_compose.XXXXXX";

/* Checks that every LF is preceded by CR and every CR followed by LF. */
static void
assert_crlf_only(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n')
			assert_true(i > 0 && data[i - 1] == '\r');
		if (data[i] == '\r')
			assert_true(i + 1 < len && data[i + 1] == '\n');
	}
}

/* The header block of a message (up to the first empty line), NUL-terminated, malloc'ed. */
static char *
header_block(const struct compose_message *msg)
{
	const char *end = strstr(msg->data, "\r\n\r\n");

	assert_non_null(end);
	return xstrndup(msg->data, (size_t)(end - msg->data) + 2);
}

static GMimeMessage *
parse_back(const struct compose_message *msg)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(msg->data, msg->len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *message = g_mime_parser_construct_message(parser, NULL);

	g_object_unref(parser);
	g_object_unref(stream);
	assert_non_null(message);
	return message;
}

/* The decoded content of a leaf part, malloc'ed, with its length. */
static char *
part_bytes(GMimeObject *object, size_t *len_r)
{
	GMimeStream *out = g_mime_stream_mem_new();
	GMimeDataWrapper *wrapper = g_mime_part_get_content(GMIME_PART(object));
	GByteArray *bytes;
	char *data;

	assert_non_null(wrapper);
	g_mime_data_wrapper_write_to_stream(wrapper, out);
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	data = xmalloc(bytes->len + 1);
	memcpy(data, bytes->data, bytes->len);
	data[bytes->len] = '\0';
	*len_r = bytes->len;
	g_object_unref(out);
	return data;
}

static void
assert_type(GMimeObject *object, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(object);

	assert_non_null(ct);
	if (!g_mime_content_type_is_type(ct, type, subtype))
		fail_msg("expected %s/%s, got %s/%s", type, subtype,
		         g_mime_content_type_get_media_type(ct),
		         g_mime_content_type_get_media_subtype(ct));
}

static const char *const one_to[] = {"Bob <bob@example.com>"};

/* A request with the usual headers; the caller fills in the body. */
static struct compose_request
base_request(void)
{
	struct compose_request req = {
	    .from_address = "alice@example.org",
	    .from_name = "Alice",
	    .to = one_to,
	    .nto = 1,
	    .subject = "Hello",
	};
	return req;
}

static struct compose_message *
build_ok(const struct compose_request *req)
{
	struct compose_message *msg = NULL;
	char error[512] = "";

	if (compose_build(req, &msg, error, sizeof(error)) != 0)
		fail_msg("compose_build: %s", error);
	assert_non_null(msg);
	assert_crlf_only(msg->data, msg->len);
	assert_int_equal(strlen(msg->data), msg->len);
	return msg;
}

static void
test_plain(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	GMimeObject *body;
	char *headers, *text;
	size_t len;

	req.text = "Hi Bob,\nsee you.\n";
	req.text_len = strlen(req.text);
	msg = build_ok(&req);
	headers = header_block(msg);
	assert_non_null(strstr(headers, "MIME-Version: 1.0\r\n"));
	assert_non_null(strstr(headers, "Content-Transfer-Encoding: 7bit"));
	assert_non_null(strstr(headers, "charset=utf-8"));
	m = parse_back(msg);
	body = g_mime_message_get_mime_part(m);
	assert_type(body, "text", "plain");
	assert_string_equal(g_mime_object_get_content_type_parameter(body, "charset"), "utf-8");
	text = part_bytes(body, &len);
	assert_string_equal(text, "Hi Bob,\r\nsee you.\r\n");
	assert_string_equal(g_mime_message_get_subject(m), "Hello");
	assert_string_equal(msg->sender, "alice@example.org");
	assert_int_equal(msg->nrcpts, 1);
	assert_string_equal(msg->rcpts[0], "bob@example.com");
	free(text);
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
	assert_null(msg);
}

static void
test_plain_non_ascii_is_qp(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	char *headers, *text;
	size_t len;

	req.text = "Grüße aus Köln\r\n你好\r\n";
	req.text_len = strlen(req.text);
	msg = build_ok(&req);
	headers = header_block(msg);
	assert_non_null(strstr(headers, "Content-Transfer-Encoding: quoted-printable"));
	for (size_t i = 0; i < msg->len; i++)
		assert_true((unsigned char)msg->data[i] < 0x80);
	m = parse_back(msg);
	text = part_bytes(g_mime_message_get_mime_part(m), &len);
	assert_string_equal(text, "Grüße aus Köln\r\n你好\r\n");
	free(text);
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_html_only(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	GMimeObject *body;
	char *html;
	size_t len;

	req.html = "<p>Hello <b>Bob</b></p>\n";
	req.html_len = strlen(req.html);
	msg = build_ok(&req);
	m = parse_back(msg);
	body = g_mime_message_get_mime_part(m);
	assert_type(body, "text", "html");
	html = part_bytes(body, &len);
	assert_string_equal(html, "<p>Hello <b>Bob</b></p>\r\n");
	free(html);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_alternative(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	GMimeMultipart *alt;

	req.text = "plain\n";
	req.text_len = strlen(req.text);
	req.html = "<p>html</p>\n";
	req.html_len = strlen(req.html);
	msg = build_ok(&req);
	m = parse_back(msg);
	assert_type(g_mime_message_get_mime_part(m), "multipart", "alternative");
	alt = GMIME_MULTIPART(g_mime_message_get_mime_part(m));
	assert_int_equal(g_mime_multipart_get_count(alt), 2);
	/* RFC 2046: the preferred (richer) form comes last. */
	assert_type(g_mime_multipart_get_part(alt, 0), "text", "plain");
	assert_type(g_mime_multipart_get_part(alt, 1), "text", "html");
	g_object_unref(m);
	compose_message_free(&msg);
}

/* Writes a file in the test directory; returns its malloc'ed path. */
static char *
write_file(const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", test_dir, name);
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
	return path;
}

static void
test_attachments(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	unsigned char binary[512];
	const char pdf[] = "%PDF-1.4\n% fake\n";
	const char *files[2];
	char *bin_path, *pdf_path, *got, *headers;
	GMimeMessage *m;
	GMimeMultipart *mixed;
	GMimeObject *att;
	size_t len;

	for (size_t i = 0; i < sizeof(binary); i++)
		binary[i] = (unsigned char)(i % 256);
	bin_path = write_file("all-bytes.bin", binary, sizeof(binary));
	pdf_path = write_file("résumé.pdf", pdf, strlen(pdf));
	files[0] = bin_path;
	files[1] = pdf_path;
	req.text = "see attached\n";
	req.text_len = strlen(req.text);
	req.html = "<p>see attached</p>\n";
	req.html_len = strlen(req.html);
	req.attachments = files;
	req.nattachments = 2;
	msg = build_ok(&req);
	/* RFC 2231, not RFC 2047 inside a parameter. */
	assert_non_null(strcasestr(msg->data, "filename*=utf-8''r%C3%A9sum%C3%A9.pdf"));
	m = parse_back(msg);
	assert_type(g_mime_message_get_mime_part(m), "multipart", "mixed");
	mixed = GMIME_MULTIPART(g_mime_message_get_mime_part(m));
	assert_int_equal(g_mime_multipart_get_count(mixed), 3);
	assert_type(g_mime_multipart_get_part(mixed, 0), "multipart", "alternative");

	att = g_mime_multipart_get_part(mixed, 1);
	assert_type(att, "application", "octet-stream");
	assert_int_equal(g_mime_part_get_content_encoding(GMIME_PART(att)),
	                 GMIME_CONTENT_ENCODING_BASE64);
	assert_string_equal(g_mime_object_get_disposition(att), "attachment");
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)), "all-bytes.bin");
	got = part_bytes(att, &len);
	assert_int_equal(len, sizeof(binary));
	assert_memory_equal(got, binary, sizeof(binary));
	free(got);

	att = g_mime_multipart_get_part(mixed, 2);
	assert_type(att, "application", "pdf");
	assert_true(g_mime_part_is_attachment(GMIME_PART(att)));
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)), "résumé.pdf");
	got = part_bytes(att, &len);
	assert_int_equal(len, strlen(pdf));
	assert_memory_equal(got, pdf, len);
	free(got);

	headers = header_block(msg);
	assert_non_null(strstr(headers, "multipart/mixed"));
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
	unlink(bin_path);
	unlink(pdf_path);
	free(bin_path);
	free(pdf_path);
}

static void
test_attachment_missing(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg = NULL;
	const char *files[] = {"/nonexistent/file.pdf"};
	char error[512] = "";

	req.attachments = files;
	req.nattachments = 1;
	assert_int_equal(compose_build(&req, &msg, error, sizeof(error)), -1);
	assert_null(msg);
	assert_non_null(strstr(error, "/nonexistent/file.pdf"));
}

static void
test_subject_rfc2047(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	char *headers;

	req.subject = "Grüße 你好";
	msg = build_ok(&req);
	headers = header_block(msg);
	for (const char *p = headers; *p != '\0'; p++)
		assert_true((unsigned char)*p < 0x80);
	assert_non_null(strstr(headers, "Subject: =?"));
	m = parse_back(msg);
	assert_string_equal(g_mime_message_get_subject(m), "Grüße 你好");
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_display_name_non_ascii(void **state)
{
	struct compose_request req = base_request();
	const char *to[] = {"\"Zoë Ångström\" <zoe@example.net>, carl@example.net"};
	struct compose_message *msg;
	InternetAddressList *list;
	InternetAddress *ia;
	GMimeMessage *m;
	char *headers;

	req.from_name = "Jörg Müller";
	req.to = to;
	msg = build_ok(&req);
	headers = header_block(msg);
	for (const char *p = headers; *p != '\0'; p++)
		assert_true((unsigned char)*p < 0x80);
	m = parse_back(msg);
	list = g_mime_message_get_from(m);
	assert_int_equal(internet_address_list_length(list), 1);
	ia = internet_address_list_get_address(list, 0);
	assert_string_equal(internet_address_get_name(ia), "Jörg Müller");
	assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)),
	                    "alice@example.org");
	list = g_mime_message_get_to(m);
	assert_int_equal(internet_address_list_length(list), 2);
	assert_string_equal(internet_address_get_name(internet_address_list_get_address(list, 0)),
	                    "Zoë Ångström");
	assert_int_equal(msg->nrcpts, 2);
	assert_string_equal(msg->rcpts[0], "zoe@example.net");
	assert_string_equal(msg->rcpts[1], "carl@example.net");
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_bcc_never_in_headers(void **state)
{
	struct compose_request req = base_request();
	const char *cc[] = {"cc@example.com", "Bob <BOB@example.com>"};
	const char *bcc[] = {"Secret Person <secret@example.com>", "hidden@example.com"};
	struct compose_message *msg;
	GMimeMessage *m;

	req.cc = cc;
	req.ncc = 2;
	req.bcc = bcc;
	req.nbcc = 2;
	req.text = "x\n";
	req.text_len = 2;
	msg = build_ok(&req);
	assert_null(strcasestr(msg->data, "\r\nBcc:"));
	assert_null(strstr(msg->data, "secret@example.com"));
	assert_null(strstr(msg->data, "hidden@example.com"));
	assert_null(strstr(msg->data, "Secret Person"));
	/* Envelope: To, Cc, Bcc, duplicates (case-insensitive) dropped. */
	assert_int_equal(msg->nrcpts, 4);
	assert_string_equal(msg->rcpts[0], "bob@example.com");
	assert_string_equal(msg->rcpts[1], "cc@example.com");
	assert_string_equal(msg->rcpts[2], "secret@example.com");
	assert_string_equal(msg->rcpts[3], "hidden@example.com");
	m = parse_back(msg);
	assert_int_equal(internet_address_list_length(g_mime_message_get_cc(m)), 2);
	assert_int_equal(internet_address_list_length(g_mime_message_get_bcc(m)), 0);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_message_id_and_date(void **state)
{
	struct compose_request req = base_request();
	struct compose_message *msg;
	GMimeMessage *m;
	GDateTime *date;
	const char *id;
	char *headers;

	req.date = 1751364000; /* 2025-07-01 10:00:00 UTC */
	msg = build_ok(&req);
	headers = header_block(msg);
	assert_true(strncmp(headers, "Date: ", 6) == 0 || strstr(headers, "\r\nDate: ") != NULL);
	assert_non_null(strcasestr(headers, "\r\nMessage-Id: <"));
	m = parse_back(msg);
	id = g_mime_message_get_message_id(m);
	assert_non_null(id);
	assert_non_null(msg->message_id);
	assert_string_equal(id, msg->message_id);
	assert_true(g_str_has_suffix(id, "@example.org"));
	date = g_mime_message_get_date(m);
	assert_non_null(date);
	assert_int_equal(g_date_time_to_unix(date), 1751364000);
	free(headers);
	g_object_unref(m);
	compose_message_free(&msg);
}

static void
test_bad_inputs(void **state)
{
	static const struct {
		const char *name;
		const char *from;
		const char *to;
		const char *subject;
		const char *text;
		const char *error;
	} cases[] = {
	    {"no-rcpt", "a@example.org", NULL, "s", "x", "no recipients"},
	    {"bad-to", "a@example.org", "<<<", "s", "x", "--to"},
	    {"bad-from", "nobody", "b@example.org", "s", "x", "sender"},
	    {"subject-crlf", "a@example.org", "b@example.org", "a\r\nBcc: x@y", "x", "subject"},
	    {"bad-utf8", "a@example.org", "b@example.org", "s", "\xff\xfe", "UTF-8"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct compose_request req = base_request();
		struct compose_message *msg = NULL;
		const char *to[1] = {cases[i].to};
		char error[512] = "";

		req.from_address = cases[i].from;
		req.to = to;
		req.nto = cases[i].to != NULL ? 1 : 0;
		req.subject = cases[i].subject;
		req.text = cases[i].text;
		req.text_len = strlen(cases[i].text);
		if (compose_build(&req, &msg, error, sizeof(error)) != -1)
			fail_msg("case %s: accepted", cases[i].name);
		assert_null(msg);
		if (strstr(error, cases[i].error) == NULL)
			fail_msg("case %s: error '%s' lacks '%s'", cases[i].name, error,
			         cases[i].error);
	}
}

static void
test_content_types(void **state)
{
	static const char *const table[][2] = {
	    {"a.pdf", "application/pdf"},
	    {"b.PNG", "image/png"},
	    {"c.jpg", "image/jpeg"},
	    {"d.gif", "image/gif"},
	    {"e.txt", "text/plain"},
	    {"f.html", "text/html"},
	    {"g.zip", "application/zip"},
	    {"h.tar.gz", "application/gzip"},
	    {"i.tar", "application/x-tar"},
	    {"j.csv", "text/csv"},
	    {"k.json", "application/json"},
	    {"l.doc", "application/msword"},
	    {"m.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
	    {"n.eml", "message/rfc822"},
	    {"noext", "application/octet-stream"},
	    {"dir.d/file", "application/octet-stream"},
	    {"x.unknown", "application/octet-stream"},
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		assert_string_equal(compose_content_type(table[i][0]), table[i][1]);
}

static void
test_raw_recipients_and_bcc(void **state)
{
	const char raw[] = "From: Alice <alice@example.org>\r\n"
	                   "To: Bob <bob@example.com>,\r\n"
	                   "  carol@example.com\r\n"
	                   "cc: team: dan@example.com, erin@example.com;\r\n"
	                   "Subject: raw\r\n"
	                   "Message-ID: <raw.1@example.org>\r\n"
	                   "BCC: secret@example.com,\r\n"
	                   "\thidden@example.com\r\n"
	                   "X-Keep: To: not@example.com\r\n"
	                   "\r\n"
	                   "Bcc: in the body stays\r\n";
	const char expect[] = "From: Alice <alice@example.org>\r\n"
	                      "To: Bob <bob@example.com>,\r\n"
	                      "  carol@example.com\r\n"
	                      "cc: team: dan@example.com, erin@example.com;\r\n"
	                      "Subject: raw\r\n"
	                      "Message-ID: <raw.1@example.org>\r\n"
	                      "X-Keep: To: not@example.com\r\n"
	                      "\r\n"
	                      "Bcc: in the body stays\r\n";
	const char *extra[] = {"extra@example.com, bob@example.com"};
	const char *want[] = {"bob@example.com",  "carol@example.com",  "dan@example.com",
	                      "erin@example.com", "secret@example.com", "hidden@example.com",
	                      "extra@example.com"};
	struct compose_message *msg = NULL;
	char error[512] = "";

	if (compose_raw(raw, strlen(raw), "alice@example.org", extra, 1, &msg, error,
	                sizeof(error)) != 0)
		fail_msg("compose_raw: %s", error);
	assert_string_equal(msg->data, expect);
	assert_int_equal(msg->len, strlen(expect));
	assert_string_equal(msg->sender, "alice@example.org");
	assert_string_equal(msg->message_id, "raw.1@example.org");
	assert_int_equal(msg->nrcpts, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < msg->nrcpts; i++)
		assert_string_equal(msg->rcpts[i], want[i]);
	compose_message_free(&msg);
}

static void
test_raw_lf_becomes_crlf(void **state)
{
	const char raw[] = "To: bob@example.com\nBcc: x@example.com\nSubject: lf\n\nline\n";
	struct compose_message *msg = NULL;
	char error[512] = "";

	assert_int_equal(
	    compose_raw(raw, strlen(raw), "a@example.org", NULL, 0, &msg, error, sizeof(error)), 0);
	assert_string_equal(msg->data, "To: bob@example.com\r\nSubject: lf\r\n\r\nline\r\n");
	assert_int_equal(msg->nrcpts, 2);
	compose_message_free(&msg);
}

static void
test_raw_no_recipients(void **state)
{
	const char raw[] = "Subject: nobody\r\n\r\nbody\r\n";
	const char *extra[] = {"only@example.com"};
	struct compose_message *msg = NULL;
	char error[512] = "";

	assert_int_equal(
	    compose_raw(raw, strlen(raw), "a@example.org", NULL, 0, &msg, error, sizeof(error)),
	    -1);
	assert_null(msg);
	assert_non_null(strstr(error, "no recipients"));
	/* --to alone is enough, and the message is then kept byte for byte. */
	assert_int_equal(
	    compose_raw(raw, strlen(raw), "a@example.org", extra, 1, &msg, error, sizeof(error)),
	    0);
	assert_string_equal(msg->data, raw);
	assert_int_equal(msg->nrcpts, 1);
	compose_message_free(&msg);
}

static int
setup(void **state)
{
	mime_init();
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	rmdir(test_dir);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_plain_non_ascii_is_qp),
	    cmocka_unit_test(test_html_only),
	    cmocka_unit_test(test_alternative),
	    cmocka_unit_test(test_attachments),
	    cmocka_unit_test(test_attachment_missing),
	    cmocka_unit_test(test_subject_rfc2047),
	    cmocka_unit_test(test_display_name_non_ascii),
	    cmocka_unit_test(test_bcc_never_in_headers),
	    cmocka_unit_test(test_message_id_and_date),
	    cmocka_unit_test(test_bad_inputs),
	    cmocka_unit_test(test_content_types),
	    cmocka_unit_test(test_raw_recipients_and_bcc),
	    cmocka_unit_test(test_raw_lf_becomes_crlf),
	    cmocka_unit_test(test_raw_no_recipients),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
