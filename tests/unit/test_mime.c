/* test_mime: mime_summary over a table of well-formed, encoded, odd and hostile messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "mime/summary.h"

struct mime_case {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen(data) */
	const char *from;
	const char *to;
	const char *subject;
	int64_t date;
	const char *message_id;
	bool has_attachments;
};

static const char garbage[] = "\xff\xfe\x00\x01:::\r\n\x80\x81\x82 Subject\x00: \xc3\x28\r\n\r\n"
                              "--\x00\xff\xff\r\n\tcontinuation\r\n";

static const struct mime_case mime_cases[] = {
    {
        "plain",
        "From: Alice <alice@example.org>\r\n"
        "To: bob@example.com\r\n"
        "Subject: Hello\r\n"
        "Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
        "Message-ID: <abc@example.org>\r\n"
        "\r\n"
        "body\r\n",
        0,
        "Alice <alice@example.org>",
        "bob@example.com",
        "Hello",
        1751364000,
        "abc@example.org",
        false,
    },
    {
        "rfc2047-q",
        "From: =?ISO-8859-1?Q?J=F6rg?= <j@example.org>\r\n"
        "To: a@example.com, b@example.com\r\n"
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        "Date: Tue, 01 Jul 2025 12:00:00 +0200\r\n"
        "\r\n"
        "body\r\n",
        0,
        "Jörg <j@example.org>",
        "a@example.com, b@example.com",
        "Grüße",
        1751364000,
        "",
        false,
    },
    {
        "rfc2047-b",
        "From: x@example.org\n"
        "Subject: =?utf-8?B?R3LDvMOfZQ==?=\n"
        "Message-Id: <b64@x>\n"
        "\n"
        "body\n",
        0,
        "x@example.org",
        "",
        "Grüße",
        0,
        "b64@x",
        false,
    },
    {
        "folded-subject",
        "Subject: a long\r\n subject\r\n\tfolded\r\n\r\nbody\r\n",
        0,
        "",
        "",
        "a long subject folded",
        0,
        "",
        false,
    },
    {
        "multipart-attachment",
        "From: a@example.org\r\n"
        "Subject: Report\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        "\r\n"
        "--XX\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "see attached\r\n"
        "--XX\r\n"
        "Content-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "JVBERi0xLjQK\r\n"
        "--XX--\r\n",
        0,
        "a@example.org",
        "",
        "Report",
        0,
        "",
        true,
    },
    {
        "multipart-inline-named-image",
        "Subject: Pic\r\n"
        "Content-Type: multipart/related; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<img src=cid:x>\r\n"
        "--b\r\n"
        "Content-Type: image/png; name=x.png\r\n"
        "\r\n"
        "PNG\r\n"
        "--b--\r\n",
        0,
        "",
        "",
        "Pic",
        0,
        "",
        true,
    },
    {
        "multipart-alternative-no-attachment",
        "Subject: Alt\r\n"
        "Content-Type: multipart/alternative; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "hi\r\n"
        "--b\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<p>hi</p>\r\n"
        "--b--\r\n",
        0,
        "",
        "",
        "Alt",
        0,
        "",
        false,
    },
    {
        "truncated-multipart",
        "Subject: Cut\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        "\r\n"
        "--XX\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "text\r\n"
        "--XX\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=a.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "AAAA",
        0,
        "",
        "",
        "Cut",
        0,
        "",
        true,
    },
    {
        "bad-date",
        "Subject: When\r\nDate: not a date at all\r\n\r\nx\r\n",
        0,
        "",
        "",
        "When",
        0,
        "",
        false,
    },
    {
        "no-headers",
        "\r\njust a body, no headers\r\n",
        0,
        "",
        "",
        "",
        0,
        "",
        false,
    },
    {
        "empty",
        "",
        0,
        "",
        "",
        "",
        0,
        "",
        false,
    },
};

/* Asserts s is valid UTF-8 without control characters. */
static void
assert_clean_text(const char *s)
{
	assert_true(g_utf8_validate(s, -1, NULL));
	for (const char *p = s; *p != '\0'; p++)
		assert_false((unsigned char)*p < 0x20);
}

static void
assert_summary(const struct mime_case *c, const struct mime_summary *s)
{
	print_message("# case %s\n", c->name);
	assert_string_equal(s->from, c->from);
	assert_string_equal(s->to, c->to);
	assert_string_equal(s->subject, c->subject);
	assert_int_equal(s->date, c->date);
	assert_string_equal(s->message_id, c->message_id);
	assert_int_equal(s->has_attachments, c->has_attachments);
}

static void
test_mime_table_buffer(void **state)
{
	for (size_t i = 0; i < sizeof(mime_cases) / sizeof(mime_cases[0]); i++) {
		const struct mime_case *c = &mime_cases[i];
		struct mime_summary s;

		assert_int_equal(
		    mime_summary_from_buffer(c->data, c->len ? c->len : strlen(c->data), &s), 0);
		assert_summary(c, &s);
	}
}

static void
test_mime_table_fd(void **state)
{
	for (size_t i = 0; i < sizeof(mime_cases) / sizeof(mime_cases[0]); i++) {
		const struct mime_case *c = &mime_cases[i];
		size_t len = c->len ? c->len : strlen(c->data);
		char path[] = "/tmp/test_mime_XXXXXX";
		struct mime_summary s;
		int fd = mkstemp(path);

		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, c->data, len), (ssize_t)len);
		/* The offset is left at the end by the write and must be put back there. */
		assert_int_equal(mime_summary_from_fd(fd, &s), 0);
		assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)len);
		close(fd);
		assert_summary(c, &s);
	}
}

static void
test_mime_bad_fd(void **state)
{
	struct mime_summary s;

	assert_int_equal(mime_summary_from_fd(-1, &s), -1);
}

static void
test_mime_garbage(void **state)
{
	struct mime_summary s;
	unsigned char buf[4096];
	unsigned seed = 12345;
	static const char multipart[] = "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n";

	assert_int_equal(mime_summary_from_buffer(garbage, sizeof(garbage) - 1, &s), 0);
	assert_clean_text(s.from);
	assert_clean_text(s.subject);
	/* Pseudo-random bytes, with header-ish and boundary-ish lines mixed in. */
	for (int round = 0; round < 200; round++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)rand_r(&seed);
		if (round % 2 == 0 && len > sizeof(multipart))
			memcpy(buf, multipart, sizeof(multipart) - 1);
		assert_int_equal(mime_summary_from_buffer((const char *)buf, len, &s), 0);
		assert_clean_text(s.from);
		assert_clean_text(s.to);
		assert_clean_text(s.subject);
		assert_clean_text(s.message_id);
	}
}

static void
test_mime_truncate_utf8(void **state)
{
	struct mime_summary s;
	GString *msg = g_string_new("Subject: ");

	/* 600 two-byte characters: the 511-byte field must end on a whole character. */
	for (int i = 0; i < 600; i++)
		g_string_append(msg, "\xc3\xbc");
	g_string_append(msg, "\r\n\r\nbody\r\n");
	assert_int_equal(mime_summary_from_buffer(msg->str, msg->len, &s), 0);
	assert_true(strlen(s.subject) <= sizeof(s.subject) - 1);
	assert_true(strlen(s.subject) >= sizeof(s.subject) - 3);
	assert_int_equal(strlen(s.subject) % 2, 0);
	assert_true(g_utf8_validate(s.subject, -1, NULL));
	g_string_free(msg, TRUE);
}

static void
test_mime_raw_8bit(void **state)
{
	static const char msg[] =
	    "Subject: caf\xe9 \xff\r\nFrom: \xc3\xa9l\xc3\xa8ve <e@x>\r\n\r\nx\r\n";
	struct mime_summary s;

	assert_int_equal(mime_summary_from_buffer(msg, sizeof(msg) - 1, &s), 0);
	assert_clean_text(s.subject);
	assert_clean_text(s.from);
	assert_non_null(strstr(s.from, "e@x"));
}

static int
setup(void **state)
{
	mime_init();
	return 0;
}

static int
teardown(void **state)
{
	mime_deinit();
	return 0;
}

/* VmHWM of this process in KiB. */
static long
test_mime_hwm(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kib = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = atol(line + 6);
	}
	fclose(fp);
	return kib;
}

/* Writes a header bomb of kind into fd: 0 8 MiB of To: lines in the top-level header, 1 the
 * same in the MIME header of the first part, 2 one 8 MiB To: line; each multipart with an
 * attachment in its last part. */
static void
test_mime_write_bomb(int fd, int kind)
{
	FILE *fp = fdopen(dup(fd), "w");
	size_t total = 0;
	char line[64];

	assert_non_null(fp);
	fputs("From: Alice <alice@example.org>\r\nSubject: bomb\r\n"
	      "Message-ID: <bomb@example.org>\r\n"
	      "Content-Type: multipart/mixed; boundary=\"b\"\r\n",
	      fp);
	if (kind == 1)
		fputs("To: user0000000@example.test\r\n\r\n--b\r\nContent-Type: text/plain\r\n",
		      fp);
	if (kind == 2)
		fputs("To: ", fp);
	for (unsigned i = 0; total < 8 * 1024 * 1024; i++) {
		int n = snprintf(
		    line, sizeof(line),
		    kind == 2 ? "user%07u@example.test, " : "To: user%07u@example.test\r\n", i);
		fputs(line, fp);
		total += (size_t)n;
	}
	fputs(kind == 2 ? "x@example.test\r\n" : "", fp);
	fputs("Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n\r\n", fp);
	if (kind != 1)
		fputs("--b\r\nContent-Type: text/plain\r\n\r\n", fp);
	fputs("hello\r\n"
	      "--b\r\nContent-Type: application/pdf\r\n"
	      "Content-Disposition: attachment; filename=a.pdf\r\n\r\nJVBE\r\n"
	      "--b--\r\n",
	      fp);
	assert_int_equal(fclose(fp), 0);
}

/* Header bombs (8 MiB of header lines, in the message's header, in a part's header, or in one
 * line): the summary comes from the fields before the cap, the structure is still seen (the
 * attachment after the bomb), and parsing takes a small multiple of the message, not the 15 to
 * 30 times GMime spends on every field. */
static void
test_mime_header_bomb(void **state)
{
	for (int kind = 0; kind < 3; kind++) {
		char path[] = "/tmp/test_mime_XXXXXX";
		struct mime_summary s;
		long before, grown;
		int fd = mkstemp(path);

		assert_true(fd >= 0);
		unlink(path);
		test_mime_write_bomb(fd, kind);
		before = test_mime_hwm();
		assert_int_equal(mime_summary_from_fd(fd, &s), 0);
		grown = test_mime_hwm() - before;
		close(fd);
		print_message("header bomb %d: VmHWM grew %ld KiB for 8 MiB of header\n", kind,
		              grown);
		assert_true(grown < 3 * 8 * 1024); /* before the cap: 130 to 250 MiB */
		assert_string_equal(s.from, "Alice <alice@example.org>");
		assert_string_equal(s.subject, "bomb");
		assert_string_equal(s.message_id, "bomb@example.org");
		assert_true(strncmp(s.to, "user0000000@example.test", 24) == 0);
		assert_true(s.has_attachments);
	}
}

/* A To: of 60,000 ':' (each a nested group for GMime's recursive address parser) used to
 * overflow the stack; the field is now cut at 8 KiB before GMime sees it. */
static void
test_mime_colon_bomb(void **state)
{
	char path[] = "/tmp/test_mime_XXXXXX";
	struct mime_summary s;
	int fd = mkstemp(path);
	FILE *fp;

	assert_true(fd >= 0);
	unlink(path);
	fp = fdopen(dup(fd), "w");
	assert_non_null(fp);
	fputs("Subject: colons\r\nTo: ", fp);
	for (int i = 0; i < 60000; i++)
		fputs(i % 2000 == 1999 ? "a:\r\n " : "a:", fp);
	fputs("b\r\nMessage-ID: <colons@example.org>\r\n\r\nbody\r\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(mime_summary_from_fd(fd, &s), 0);
	close(fd);
	assert_string_equal(s.subject, "colons");
	assert_string_equal(s.message_id, "colons@example.org");
}

/* mime_addresses: what the submission From check sees of a header value. */
static void
test_mime_addresses(void **state)
{
	static const struct {
		const char *value;
		size_t n;
		const char *addrs[3];
	} cases[] = {
	    {"alice@example.org", 1, {"alice@example.org"}},
	    {" Alice Smith <alice@example.org>", 1, {"alice@example.org"}},
	    {" \"bob@example.org\" <eve@evil.test>", 1, {"eve@evil.test"}},
	    {" Alice\r\n <alice@example.org>,\r\n\tbob@example.org (Bob)",
	     2,
	     {"alice@example.org", "bob@example.org"}},
	    {" friends: a@example.org, Bob <b@example.org>;, c@example.org",
	     3,
	     {"a@example.org", "b@example.org", "c@example.org"}},
	    {" undisclosed-recipients:;", 0, {NULL}},
	    {"", 0, {NULL}},
	    {" a@x.test, b@x.test, c@x.test, d@x.test", 4, {"a@x.test", "b@x.test", "c@x.test"}},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *addrs[3] = {NULL, NULL, NULL};
		size_t n = mime_addresses(cases[i].value, addrs, 3);

		assert_int_equal(n, cases[i].n);
		for (size_t j = 0; j < 3 && j < n; j++) {
			assert_string_equal(addrs[j], cases[i].addrs[j]);
			free(addrs[j]);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mime_table_buffer),  cmocka_unit_test(test_mime_table_fd),
	    cmocka_unit_test(test_mime_bad_fd),        cmocka_unit_test(test_mime_garbage),
	    cmocka_unit_test(test_mime_truncate_utf8), cmocka_unit_test(test_mime_raw_8bit),
	    cmocka_unit_test(test_mime_header_bomb),   cmocka_unit_test(test_mime_addresses),
	    cmocka_unit_test(test_mime_colon_bomb),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
