/* test_render: HTML to text over a table of documents, and render_message, render_attachments
 * and render_save_attachments over messages built here (plain, alternative, HTML only, Latin-1,
 * RFC 2231 names, hostile names, binary content, name collisions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "tern/render.h"

static char test_dir[] = "/tmp/test_render.XXXXXX";

struct html_case {
	const char *name;
	const char *html;
	const char *text;
};

static const struct html_case html_cases[] = {
    {"html_paragraphs", "<p>one</p><p>two</p>", "one\n\ntwo"},
    {"html_br", "a<br>b<br/>c", "a\nb\nc"},
    {"html_double_br", "a<br><br>b", "a\n\nb"},
    {"html_list", "<ul><li>one</li><li>two</li></ul>", "* one\n* two"},
    {"html_nested_list", "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "* a\n  * b\n* c"},
    {"html_link", "see <a href=\"https://x.test/\">the site</a>.",
     "see the site <https://x.test/>."},
    {"html_link_same_text", "<a href=\"https://x.test/\">https://x.test/</a>", "https://x.test/"},
    {"html_link_mailto", "<a href=\"mailto:a@b.test\">a@b.test</a>", "a@b.test"},
    {"html_link_fragment", "<a href=\"#top\">top</a>", "top"},
    {"html_entities", "&amp; &lt; &gt; &quot; &#x263A; &eacute;", "& < > \" \xe2\x98\xba \xc3\xa9"},
    {"html_script_style_head",
     "<html><head><title>T</title><style>p{color:red}</style></head>"
     "<body><script>alert(1)</script>x<style>y</style></body></html>",
     "x"},
    {"html_whitespace", "  a \n\t b  <b> c </b>d", "a b c d"},
    {"html_pre", "<p>x</p><pre>a\n  b   c</pre><p>y</p>", "x\n\na\n  b   c\n\ny"},
    {"html_unclosed", "<p>one<p>two<div>three", "one\n\ntwo\n\nthree"},
    {"html_unclosed_inline", "<b>bold <i>both</b> after", "bold both after"},
    {"html_blockquote", "<p>hi</p><blockquote>quoted<br>more</blockquote>",
     "hi\n\n> quoted\n> more"},
    {"html_table", "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>",
     "a b\nc d"},
    {"html_headings", "<h1>Title</h1>text<h2>Sub</h2>more", "Title\n\ntext\n\nSub\n\nmore"},
    {"html_nbsp", "a&nbsp;&nbsp;b", "a  b"},
    {"html_empty", "", ""},
    {"html_only_tags", "<div><span></span></div>", ""},
    {"html_img_alt", "<img src=\"x.png\" alt=\"logo\"> text", "[logo] text"},
    {"html_meta_charset_ignored",
     "<meta charset=\"iso-8859-1\"><p>Gr\xc3\xbc\xc3\x9f"
     "e</p>",
     "Gr\xc3\xbc\xc3\x9f"
     "e"},
    {"html_invalid_utf8", "a\xff\xfe b", "a\xef\xbf\xbd\xef\xbf\xbd b"},
    {"html_comment", "a<!-- hidden -->b", "ab"},
};

static void
test_html_case(void **state)
{
	const struct html_case *c = *state;
	char *text = render_html_to_text(c->html, strlen(c->html));

	assert_non_null(text);
	assert_string_equal(text, c->text);
	free(text);
}

static void
test_html_deep_nesting(void **state)
{
	GString *html = g_string_new("");
	char *text;

	for (int i = 0; i < 20000; i++)
		g_string_append(html, "<div><b>");
	g_string_append(html, "deep");
	text = render_html_to_text(html->str, html->len);
	assert_non_null(text);
	free(text);
	g_string_free(html, TRUE);
}

static void
test_html_null(void **state)
{
	char *text = render_html_to_text(NULL, 0);
	assert_string_equal(text, "");
	free(text);
}

/* Writes data to a fresh file under test_dir and returns its path (static buffer). */
static const char *
write_fixture(const char *name, const char *data, size_t len)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.eml", test_dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

/* Renders path in mode into a malloc'ed string; asserts the return value. */
static char *
render_to_string(const char *path, enum render_mode mode, int expect, char *error, size_t errsize)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	assert_int_equal(render_message(out, path, mode, error, errsize), expect);
	fclose(out);
	return buf;
}

static const char plain_msg[] = "From: Alice <alice@example.org>\r\n"
                                "To: Bob <bob@example.com>\r\n"
                                "Cc: carol@example.net\r\n"
                                "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \x1b[31mred\r\n"
                                "Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
                                "Message-ID: <p1@example.org>\r\n"
                                "X-Custom: =?iso-8859-1?q?K=F6ln?=\r\n"
                                "\r\n"
                                "Hello Bob,\r\n"
                                "plain body\r\n";

static void
test_render_plain(void **state)
{
	const char *path = write_fixture("plain", plain_msg, strlen(plain_msg));
	char error[256];
	char *out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));

	assert_string_equal(out, "From: Alice <alice@example.org>\n"
	                         "To: Bob <bob@example.com>\n"
	                         "Cc: carol@example.net\n"
	                         "Date: Tue, 1 Jul 2025 10:00:00 +0000\n"
	                         "Subject: Gr\xc3\xbc\xc3\x9f"
	                         "e [31mred\n"
	                         "\n"
	                         "Hello Bob,\n"
	                         "plain body\n");
	free(out);
}

static void
test_render_raw(void **state)
{
	const char *path = write_fixture("raw", plain_msg, strlen(plain_msg));
	char error[256];
	char *out = render_to_string(path, RENDER_RAW, 0, error, sizeof(error));

	assert_memory_equal(out, plain_msg, strlen(plain_msg));
	assert_int_equal(strlen(out), strlen(plain_msg));
	free(out);
}

static void
test_render_headers(void **state)
{
	const char *path = write_fixture("headers", plain_msg, strlen(plain_msg));
	char error[256];
	char *out = render_to_string(path, RENDER_HEADERS, 0, error, sizeof(error));

	assert_non_null(strstr(out, "From: Alice <alice@example.org>\n"));
	assert_non_null(strstr(out, "Subject: Gr\xc3\xbc\xc3\x9f"
	                            "e"));
	assert_non_null(strstr(out, "X-Custom: K\xc3\xb6ln\n"));
	assert_non_null(strstr(out, "Message-ID: <p1@example.org>\n"));
	assert_null(strchr(out, '\x1b'));
	assert_null(strstr(out, "plain body"));
	free(out);
}

static void
test_render_missing_file(void **state)
{
	char error[256] = "";
	char *out = render_to_string("/nonexistent/x.eml", RENDER_TEXT, -1, error, sizeof(error));

	assert_non_null(strstr(error, "cannot open"));
	free(out);
	out = render_to_string("/nonexistent/x.eml", RENDER_RAW, -1, error, sizeof(error));
	free(out);
}

static const char alternative_msg[] = "From: a@example.org\r\n"
                                      "To: b@example.org\r\n"
                                      "Subject: alt\r\n"
                                      "MIME-Version: 1.0\r\n"
                                      "Content-Type: multipart/alternative; boundary=\"XX\"\r\n"
                                      "\r\n"
                                      "--XX\r\n"
                                      "Content-Type: text/plain; charset=utf-8\r\n"
                                      "\r\n"
                                      "the plain version\r\n"
                                      "--XX\r\n"
                                      "Content-Type: text/html; charset=utf-8\r\n"
                                      "\r\n"
                                      "<p>the <b>html</b> version</p>\r\n"
                                      "--XX--\r\n";

static void
test_render_alternative(void **state)
{
	const char *path = write_fixture("alt", alternative_msg, strlen(alternative_msg));
	char error[256];
	char *out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));

	assert_non_null(strstr(out, "\n\nthe plain version\n"));
	assert_null(strstr(out, "html"));
	assert_null(strstr(out, "Attachments:"));
	free(out);
	out = render_to_string(path, RENDER_HTML, 0, error, sizeof(error));
	assert_string_equal(out, "<p>the <b>html</b> version</p>\n");
	free(out);
}

static const char html_only_msg[] = "From: a@example.org\r\n"
                                    "Subject: html\r\n"
                                    "MIME-Version: 1.0\r\n"
                                    "Content-Type: text/html; charset=\"utf-8\"\r\n"
                                    "Content-Transfer-Encoding: quoted-printable\r\n"
                                    "\r\n"
                                    "<html><head><style>p {}</style></head><body><p>First =\r\n"
                                    "para &amp; more</p><ul><li>item</li></ul>"
                                    "<a href=3D\"https://x.test/\">link</a></body></html>\r\n";

static void
test_render_html_only(void **state)
{
	const char *path = write_fixture("htmlonly", html_only_msg, strlen(html_only_msg));
	char error[256];
	char *out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));

	assert_non_null(strstr(out, "\n\nFirst para & more\n\n* item\n\nlink <https://x.test/>\n"));
	assert_null(strstr(out, "<p>"));
	free(out);
	out = render_to_string(path, RENDER_HTML, 0, error, sizeof(error));
	assert_non_null(strstr(out, "<p>First para &amp; more</p>"));
	free(out);
}

static void
test_render_no_html_part(void **state)
{
	const char *path = write_fixture("nohtml", plain_msg, strlen(plain_msg));
	char error[256] = "";
	char *out = render_to_string(path, RENDER_HTML, -1, error, sizeof(error));

	assert_string_equal(error, "no HTML part");
	free(out);
}

static void
test_render_latin1(void **state)
{
	static const char msg[] = "From: a@example.org\r\n"
	                          "Subject: latin\r\n"
	                          "MIME-Version: 1.0\r\n"
	                          "Content-Type: text/plain; charset=iso-8859-1\r\n"
	                          "Content-Transfer-Encoding: 8bit\r\n"
	                          "\r\n"
	                          "Gr\xfc\xdf"
	                          "e aus K\xf6ln\r\n";
	const char *path = write_fixture("latin1", msg, strlen(msg));
	char error[256];
	char *out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));

	assert_non_null(strstr(out, "\n\nGr\xc3\xbc\xc3\x9f"
	                            "e aus K\xc3\xb6ln\n"));
	free(out);
}

static void
test_render_latin1_qp_undeclared(void **state)
{
	static const char msg[] = "From: a@example.org\r\n"
	                          "MIME-Version: 1.0\r\n"
	                          "Content-Transfer-Encoding: quoted-printable\r\n"
	                          "\r\n"
	                          "K=F6ln\r\n";
	const char *path = write_fixture("latin1qp", msg, strlen(msg));
	char error[256];
	char *out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));

	assert_non_null(strstr(out, "\n\nK\xc3\xb6ln\n"));
	free(out);
}

/* Builds a multipart/mixed message: a text body and the given attachment parts. */
static char *
build_mixed(const char *const *parts, size_t nparts)
{
	GString *s = g_string_new("From: a@example.org\r\n"
	                          "To: b@example.org\r\n"
	                          "Subject: files\r\n"
	                          "MIME-Version: 1.0\r\n"
	                          "Content-Type: multipart/mixed; boundary=\"MIX\"\r\n"
	                          "\r\n"
	                          "--MIX\r\n"
	                          "Content-Type: text/plain\r\n"
	                          "\r\n"
	                          "see attached\r\n");
	for (size_t i = 0; i < nparts; i++) {
		g_string_append(s, "--MIX\r\n");
		g_string_append(s, parts[i]);
	}
	g_string_append(s, "--MIX--\r\n");
	return g_string_free(s, FALSE);
}

static const char pdf_part[] = "Content-Type: application/pdf\r\n"
                               "Content-Disposition: attachment;\r\n"
                               " filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n"
                               "Content-Transfer-Encoding: base64\r\n"
                               "\r\n"
                               "JVBERi0xLjQK\r\n";

static void
test_render_rfc2231_attachment(void **state)
{
	const char *parts[] = {pdf_part};
	char *msg = build_mixed(parts, 1);
	const char *path = write_fixture("rfc2231", msg, strlen(msg));
	struct render_attachment *list = NULL;
	char error[256];
	char *out;

	assert_int_equal(render_attachments(path, &list, error, sizeof(error)), 1);
	assert_string_equal(list[0].filename, "r\xc3\xa9sum\xc3\xa9.pdf");
	assert_string_equal(list[0].content_type, "application/pdf");
	assert_int_equal(list[0].size, 9); /* "%PDF-1.4\n" */
	free(list);
	out = render_to_string(path, RENDER_TEXT, 0, error, sizeof(error));
	assert_non_null(strstr(out, "see attached\n\nAttachments:\n"
	                            "  r\xc3\xa9sum\xc3\xa9.pdf (application/pdf, 9 bytes)\n"));
	free(out);
	g_free(msg);
}

/* Creates an empty directory under test_dir and returns its path (static buffer). */
static const char *
make_dir(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
	return path;
}

/* Reads a whole file into a GByteArray-like buffer; NULL when it does not exist. */
static gchar *
read_file(const char *dir, const char *name, gsize *len_r)
{
	char path[1024];
	gchar *data = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!g_file_get_contents(path, &data, len_r, NULL))
		return NULL;
	return data;
}

static void
test_render_hostile_filename(void **state)
{
	const char *parts[] = {"Content-Type: text/plain\r\n"
	                       "Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n"
	                       "\r\n"
	                       "root:x:0:0\r\n",
	                       "Content-Type: application/octet-stream\r\n"
	                       "Content-Disposition: attachment; filename=\"..\"\r\n"
	                       "\r\n"
	                       "dots\r\n",
	                       "Content-Type: application/octet-stream\r\n"
	                       "Content-Disposition: attachment; filename=\"C:\\\\tmp\\\\a\x01"
	                       "b.txt\"\r\n"
	                       "\r\n"
	                       "win\r\n"};
	char *msg = build_mixed(parts, 3);
	const char *path = write_fixture("hostile", msg, strlen(msg));
	char dir[512], outside[600], error[256];
	gchar *data;
	gsize len;

	snprintf(dir, sizeof(dir), "%s", make_dir("hostile_out"));
	assert_int_equal(render_save_attachments(path, dir, error, sizeof(error)), 3);
	data = read_file(dir, "passwd", &len);
	assert_non_null(data);
	assert_string_equal(data, "root:x:0:0");
	g_free(data);
	data = read_file(dir, "attachment-2", &len);
	assert_non_null(data);
	g_free(data);
	data = read_file(dir, "ab.txt", &len);
	assert_non_null(data);
	g_free(data);
	snprintf(outside, sizeof(outside), "%s/etc", test_dir);
	assert_int_equal(access(outside, F_OK), -1);
	g_free(msg);
}

static void
test_render_binary_attachment(void **state)
{
	unsigned char bin[4096];
	gchar *b64, *msg, *part, *data;
	const char *path;
	char dir[512], error[256];
	gsize len;

	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 7 + (i >> 8));
	bin[100] = '\r';
	bin[101] = '\n';
	bin[200] = '\0';
	b64 = g_base64_encode(bin, sizeof(bin));
	part = g_strdup_printf("Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
	                       "Content-Disposition: attachment; filename=\"blob.bin\"\r\n"
	                       "Content-Transfer-Encoding: base64\r\n"
	                       "\r\n"
	                       "%s\r\n",
	                       b64);
	const char *parts[] = {part};
	msg = build_mixed(parts, 1);
	path = write_fixture("binary", msg, strlen(msg));
	snprintf(dir, sizeof(dir), "%s", make_dir("binary_out"));
	assert_int_equal(render_save_attachments(path, dir, error, sizeof(error)), 1);
	data = read_file(dir, "blob.bin", &len);
	assert_non_null(data);
	assert_int_equal(len, sizeof(bin));
	assert_memory_equal(data, bin, sizeof(bin));
	g_free(data);
	g_free(msg);
	g_free(part);
	g_free(b64);
}

static void
test_render_same_names(void **state)
{
	const char *parts[] = {"Content-Type: application/octet-stream\r\n"
	                       "Content-Disposition: attachment; filename=\"x.bin\"\r\n"
	                       "\r\n"
	                       "one\r\n",
	                       "Content-Type: application/octet-stream\r\n"
	                       "Content-Disposition: attachment; filename=\"x.bin\"\r\n"
	                       "\r\n"
	                       "two\r\n"};
	char *msg = build_mixed(parts, 2);
	const char *path = write_fixture("same", msg, strlen(msg));
	char dir[512], error[256], link_path[700], victim[600];
	gchar *data;
	gsize len;

	snprintf(dir, sizeof(dir), "%s", make_dir("same_out"));
	assert_int_equal(render_save_attachments(path, dir, error, sizeof(error)), 2);
	data = read_file(dir, "x.bin", &len);
	assert_string_equal(data, "one");
	g_free(data);
	data = read_file(dir, "x (2).bin", &len);
	assert_string_equal(data, "two");
	g_free(data);
	/* A dangling symlink at the next name is skipped, not followed. */
	snprintf(victim, sizeof(victim), "%s/victim", test_dir);
	snprintf(link_path, sizeof(link_path), "%s/x (3).bin", dir);
	assert_int_equal(symlink(victim, link_path), 0);
	assert_int_equal(render_save_attachments(path, dir, error, sizeof(error)), 2);
	assert_int_equal(access(victim, F_OK), -1);
	data = read_file(dir, "x (4).bin", &len);
	assert_string_equal(data, "one");
	g_free(data);
	data = read_file(dir, "x (5).bin", &len);
	assert_string_equal(data, "two");
	g_free(data);
	g_free(msg);
}

static void
test_render_unnamed_attachment(void **state)
{
	const char *parts[] = {"Content-Type: image/png\r\n"
	                       "Content-Disposition: attachment\r\n"
	                       "Content-Transfer-Encoding: base64\r\n"
	                       "\r\n"
	                       "iVBORw0K\r\n",
	                       "Content-Type: message/rfc822\r\n"
	                       "\r\n"
	                       "Subject: inner\r\n"
	                       "\r\n"
	                       "inner body\r\n"};
	char *msg = build_mixed(parts, 2);
	const char *path = write_fixture("unnamed", msg, strlen(msg));
	struct render_attachment *list = NULL;
	char error[256];

	assert_int_equal(render_attachments(path, &list, error, sizeof(error)), 2);
	assert_string_equal(list[0].filename, "attachment-1");
	assert_string_equal(list[0].content_type, "image/png");
	assert_int_equal(list[0].size, 6);
	assert_string_equal(list[1].filename, "attachment-2");
	assert_string_equal(list[1].content_type, "message/rfc822");
	free(list);
	g_free(msg);
}

static void
test_render_index_text(void **state)
{
	const char *path = write_fixture("index_html", html_only_msg, strlen(html_only_msg));
	char *text = render_index_text(path);

	assert_non_null(strstr(text, "html"));
	assert_non_null(strstr(text, "a@example.org"));
	assert_non_null(strstr(text, "First para & more"));
	assert_null(strstr(text, "<p>"));
	free(text);
	text = render_index_text("/nonexistent/x.eml");
	assert_string_equal(text, "");
	free(text);
}

static int
setup(void **state)
{
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
	    cmocka_unit_test(test_html_deep_nesting),
	    cmocka_unit_test(test_html_null),
	    cmocka_unit_test(test_render_plain),
	    cmocka_unit_test(test_render_raw),
	    cmocka_unit_test(test_render_headers),
	    cmocka_unit_test(test_render_missing_file),
	    cmocka_unit_test(test_render_alternative),
	    cmocka_unit_test(test_render_html_only),
	    cmocka_unit_test(test_render_no_html_part),
	    cmocka_unit_test(test_render_latin1),
	    cmocka_unit_test(test_render_latin1_qp_undeclared),
	    cmocka_unit_test(test_render_rfc2231_attachment),
	    cmocka_unit_test(test_render_hostile_filename),
	    cmocka_unit_test(test_render_binary_attachment),
	    cmocka_unit_test(test_render_same_names),
	    cmocka_unit_test(test_render_unnamed_attachment),
	    cmocka_unit_test(test_render_index_text),
	};
	size_t nhtml = sizeof(html_cases) / sizeof(html_cases[0]);
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(nhtml + nfixed, sizeof(*tests));
	int ret;

	/* One named test per table row. */
	for (size_t i = 0; i < nhtml; i++) {
		tests[i].name = html_cases[i].name;
		tests[i].test_func = test_html_case;
		tests[i].initial_state = (void *)&html_cases[i];
	}
	memcpy(tests + nhtml, fixed, sizeof(fixed));
	ret = _cmocka_run_group_tests("render", tests, nhtml + nfixed, setup, teardown);
	free(tests);
	return ret;
}
