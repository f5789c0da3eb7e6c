/* test_mimestruct: the MIME structure module. A table of messages (bare LF and CRLF, preamble and
 * epilogue, nested multiparts, message/rfc822 inside multipart, missing close delimiters, no
 * body, header only, 8-bit headers, RFC 2231 parameters, groups) whose ENVELOPE, BODYSTRUCTURE,
 * BODY and body sections are compared byte for byte with what Dovecot 2.3.19 answers for the
 * same file; every prefix of every message (the parser on truncated input); every prefix and
 * byte flips of a serialized blob; HEADER.FIELDS(.NOT); the part and depth limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "table.h"
#include "lib/buf.h"
#include "mime/mimestruct.h"

struct ms_case {
	const char *name;
	struct bytes msg;
	const char *want; /* "ENVELOPE ... BODYSTRUCTURE ... BODY ..." */
	struct bytes sections[18];
};

/* Generated from messages whose output was checked byte for byte against Dovecot 2.3.19's
 * FETCH (ENVELOPE BODYSTRUCTURE BODY) and BODY.PEEK[section] for each section below. */
static const char *const section_names[] = {
    "",    "HEADER",   "TEXT", "1", "1.MIME", "2",   "2.MIME", "2.HEADER", "2.TEXT",
    "2.1", "2.1.MIME", "2.2",  "3", "3.MIME", "3.1", "1.1",    "1.2",      "4"};
#define NSECTIONS 18
static const struct ms_case ms_cases[] = {
    {"plain",
     B("From: a@b.c\n"
       "Subject: hi\n"
       "\n"
       "body\n"),
     "ENVELOPE (NIL \"hi\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 6 1)",
     {B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"
        "body\r\n"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B("body\r\n"), B("body\r\n"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"nolf",
     B("From: a@b.c\n"
       "Subject: hi\n"
       "\n"
       "body"),
     "ENVELOPE (NIL \"hi\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 4 0)",
     {B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"
        "body"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B("body"), B("body"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"hdronly",
     B("From: a@b.c\n"
       "Subject: hi\n"),
     "ENVELOPE (NIL \"hi\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 0 0)",
     {B("From: a@b.c\r\n"
        "Subject: hi\r\n"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"),
      B(""), B(""),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"nobody",
     B("From: a@b.c\n"
       "Subject: hi\n"
       "\n"),
     "ENVELOPE (NIL \"hi\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 0 0)",
     {B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B(""), B(""),
      B("From: a@b.c\r\n"
        "Subject: hi\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"empty",
     B(""),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) BODY (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)",
     {B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B(""), B(""), B(""), B(""), B("")}},
    {"hdrs",
     B("From: \"Joe Q.\" <joe@x.org>, foo, <@r1,@r2:bar@y>, Grp: a@b, \"c d\" <c@d>;, "
       "undisclosed:;\n"
       "To: =?utf-8?q?J=C3=B6?= <jo@x>\n"
       "Date: Mon, 1 Jan\n"
       "  2024 10:00 +0000\n"
       "Subject: two\n"
       "\x09"
       "lines\n"
       "Content-Type: TEXT/Plain; CHARSET=\"UTF-8\"; format=flowed\n"
       "Content-Transfer-Encoding: Quoted-Printable\n"
       "Content-Language: en, fr\n"
       "Content-Location: http://x/y\n"
       "Content-ID: <id@x>\n"
       "Content-Description: desc here\n"
       "Content-Disposition: inline; filename=\"a b.txt\"\n"
       "Message-ID: <m1@x>\n"
       "In-Reply-To: <p@x>\n"
       "Subject: second\n"
       "\n"
       "hello\n"
       "world\n"),
     "ENVELOPE (\"Mon, 1 Jan  2024 10:00 +0000\" \"second\" ((\"Joe Q.\" NIL \"joe\" "
     "\"x.org\")(NIL NIL \"foo\" \"MISSING_DOMAIN\")(NIL \"@r1,@r2\" \"bar\" \"y\")(NIL NIL "
     "\"Grp\" NIL)(NIL NIL \"a\" \"b\")(\"c d\" NIL \"c\" \"d\")(NIL NIL NIL NIL)(NIL NIL "
     "\"undisclosed\" NIL)(NIL NIL NIL NIL)) ((\"Joe Q.\" NIL \"joe\" \"x.org\")(NIL NIL \"foo\" "
     "\"MISSING_DOMAIN\")(NIL \"@r1,@r2\" \"bar\" \"y\")(NIL NIL \"Grp\" NIL)(NIL NIL \"a\" "
     "\"b\")(\"c d\" NIL \"c\" \"d\")(NIL NIL NIL NIL)(NIL NIL \"undisclosed\" NIL)(NIL NIL NIL "
     "NIL)) ((\"Joe Q.\" NIL \"joe\" \"x.org\")(NIL NIL \"foo\" \"MISSING_DOMAIN\")(NIL "
     "\"@r1,@r2\" \"bar\" \"y\")(NIL NIL \"Grp\" NIL)(NIL NIL \"a\" \"b\")(\"c d\" NIL \"c\" "
     "\"d\")(NIL NIL NIL NIL)(NIL NIL \"undisclosed\" NIL)(NIL NIL NIL NIL)) "
     "((\"=?utf-8?q?J=C3=B6?=\" NIL \"jo\" \"x\")) NIL NIL \"<p@x>\" \"<m1@x>\") BODYSTRUCTURE "
     "(\"TEXT\" \"Plain\" (\"CHARSET\" \"UTF-8\" \"format\" \"flowed\") \"<id@x>\" \"desc here\" "
     "\"Quoted-Printable\" 14 2 NIL (\"inline\" (\"filename\" \"a b.txt\")) (\"en\" \"fr\") "
     "\"http://x/y\") BODY (\"TEXT\" \"Plain\" (\"CHARSET\" \"UTF-8\" \"format\" \"flowed\") "
     "\"<id@x>\" \"desc here\" \"Quoted-Printable\" 14 2)",
     {B("From: \"Joe Q.\" <joe@x.org>, foo, <@r1,@r2:bar@y>, Grp: a@b, \"c d\" <c@d>;, "
        "undisclosed:;\r\n"
        "To: =?utf-8?q?J=C3=B6?= <jo@x>\r\n"
        "Date: Mon, 1 Jan\r\n"
        "  2024 10:00 +0000\r\n"
        "Subject: two\r\n"
        "\x09"
        "lines\r\n"
        "Content-Type: TEXT/Plain; CHARSET=\"UTF-8\"; format=flowed\r\n"
        "Content-Transfer-Encoding: Quoted-Printable\r\n"
        "Content-Language: en, fr\r\n"
        "Content-Location: http://x/y\r\n"
        "Content-ID: <id@x>\r\n"
        "Content-Description: desc here\r\n"
        "Content-Disposition: inline; filename=\"a b.txt\"\r\n"
        "Message-ID: <m1@x>\r\n"
        "In-Reply-To: <p@x>\r\n"
        "Subject: second\r\n"
        "\r\n"
        "hello\r\n"
        "world\r\n"),
      B("From: \"Joe Q.\" <joe@x.org>, foo, <@r1,@r2:bar@y>, Grp: a@b, \"c d\" <c@d>;, "
        "undisclosed:;\r\n"
        "To: =?utf-8?q?J=C3=B6?= <jo@x>\r\n"
        "Date: Mon, 1 Jan\r\n"
        "  2024 10:00 +0000\r\n"
        "Subject: two\r\n"
        "\x09"
        "lines\r\n"
        "Content-Type: TEXT/Plain; CHARSET=\"UTF-8\"; format=flowed\r\n"
        "Content-Transfer-Encoding: Quoted-Printable\r\n"
        "Content-Language: en, fr\r\n"
        "Content-Location: http://x/y\r\n"
        "Content-ID: <id@x>\r\n"
        "Content-Description: desc here\r\n"
        "Content-Disposition: inline; filename=\"a b.txt\"\r\n"
        "Message-ID: <m1@x>\r\n"
        "In-Reply-To: <p@x>\r\n"
        "Subject: second\r\n"
        "\r\n"),
      B("hello\r\n"
        "world\r\n"),
      B("hello\r\n"
        "world\r\n"),
      B("From: \"Joe Q.\" <joe@x.org>, foo, <@r1,@r2:bar@y>, Grp: a@b, \"c d\" <c@d>;, "
        "undisclosed:;\r\n"
        "To: =?utf-8?q?J=C3=B6?= <jo@x>\r\n"
        "Date: Mon, 1 Jan\r\n"
        "  2024 10:00 +0000\r\n"
        "Subject: two\r\n"
        "\x09"
        "lines\r\n"
        "Content-Type: TEXT/Plain; CHARSET=\"UTF-8\"; format=flowed\r\n"
        "Content-Transfer-Encoding: Quoted-Printable\r\n"
        "Content-Language: en, fr\r\n"
        "Content-Location: http://x/y\r\n"
        "Content-ID: <id@x>\r\n"
        "Content-Description: desc here\r\n"
        "Content-Disposition: inline; filename=\"a b.txt\"\r\n"
        "Message-ID: <m1@x>\r\n"
        "In-Reply-To: <p@x>\r\n"
        "Subject: second\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"nested",
     B("Content-Type: multipart/mixed; boundary=b1\n"
       "\n"
       "preamble\n"
       "--b1\n"
       "\n"
       "part1\n"
       "--b1\n"
       "Content-Type: message/rfc822\n"
       "\n"
       "Subject: inner\n"
       "Content-Type: multipart/alternative; boundary=\"b2\"\n"
       "\n"
       "--b2\n"
       "Content-Type: text/plain\n"
       "\n"
       "alt1\n"
       "--b2\n"
       "Content-Type: text/html\n"
       "\n"
       "<b>x</b>\n"
       "--b2--\n"
       "\n"
       "--b1\n"
       "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\n"
       "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\n"
       "Content-Transfer-Encoding: base64\n"
       "\n"
       "AAAA\n"
       "--b1--\n"
       "epilogue\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL "
     "NIL NIL \"7bit\" 161 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL)(\"text\" \"html\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) \"alternative\" "
     "(\"boundary\" \"b2\") NIL NIL NIL) 12 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name*\" "
     "\"utf-8''a%20b.pdf\") NIL NIL \"base64\" 4 NIL (\"attachment\" (\"filename\" \"xy.pdf\")) "
     "NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 5 0)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 161 (NIL "
     "\"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 4 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0) "
     "\"alternative\") 12)(\"application\" \"pdf\" (\"name*\" \"utf-8''a%20b.pdf\") NIL NIL "
     "\"base64\" 4) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b1\r\n"
        "\r\n"
        "preamble\r\n"
        "--b1\r\n"
        "\r\n"
        "part1\r\n"
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "AAAA\r\n"
        "--b1--\r\n"
        "epilogue\r\n"),
      B("Content-Type: multipart/mixed; boundary=b1\r\n"
        "\r\n"),
      B("preamble\r\n"
        "--b1\r\n"
        "\r\n"
        "part1\r\n"
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "AAAA\r\n"
        "--b1--\r\n"
        "epilogue\r\n"),
      B("part1"), B("\r\n"),
      B("Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"),
      B("Content-Type: message/rfc822\r\n"
        "\r\n"),
      B("Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"),
      B("--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"),
      B("alt1"),
      B("Content-Type: text/plain\r\n"
        "\r\n"),
      B("<b>x</b>"), B("AAAA"),
      B("Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"),
      B("AAAA"), B("part1"), B(""), B("")}},
    {"nested_crlf",
     B("Content-Type: multipart/mixed; boundary=b1\r\n"
       "\r\n"
       "preamble\r\n"
       "--b1\r\n"
       "\r\n"
       "part1\r\n"
       "--b1\r\n"
       "Content-Type: message/rfc822\r\n"
       "\r\n"
       "Subject: inner\r\n"
       "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
       "\r\n"
       "--b2\r\n"
       "Content-Type: text/plain\r\n"
       "\r\n"
       "alt1\r\n"
       "--b2\r\n"
       "Content-Type: text/html\r\n"
       "\r\n"
       "<b>x</b>\r\n"
       "--b2--\r\n"
       "\r\n"
       "--b1\r\n"
       "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
       "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
       "Content-Transfer-Encoding: base64\r\n"
       "\r\n"
       "AAAA\r\n"
       "--b1--\r\n"
       "epilogue\r\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL "
     "NIL NIL \"7bit\" 161 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL)(\"text\" \"html\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) \"alternative\" "
     "(\"boundary\" \"b2\") NIL NIL NIL) 12 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name*\" "
     "\"utf-8''a%20b.pdf\") NIL NIL \"base64\" 4 NIL (\"attachment\" (\"filename\" \"xy.pdf\")) "
     "NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 5 0)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 161 (NIL "
     "\"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 4 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0) "
     "\"alternative\") 12)(\"application\" \"pdf\" (\"name*\" \"utf-8''a%20b.pdf\") NIL NIL "
     "\"base64\" 4) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b1\r\n"
        "\r\n"
        "preamble\r\n"
        "--b1\r\n"
        "\r\n"
        "part1\r\n"
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "AAAA\r\n"
        "--b1--\r\n"
        "epilogue\r\n"),
      B("Content-Type: multipart/mixed; boundary=b1\r\n"
        "\r\n"),
      B("preamble\r\n"
        "--b1\r\n"
        "\r\n"
        "part1\r\n"
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "AAAA\r\n"
        "--b1--\r\n"
        "epilogue\r\n"),
      B("part1"), B("\r\n"),
      B("Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"
        "--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"),
      B("Content-Type: message/rfc822\r\n"
        "\r\n"),
      B("Subject: inner\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
        "\r\n"),
      B("--b2\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "alt1\r\n"
        "--b2\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<b>x</b>\r\n"
        "--b2--\r\n"),
      B("alt1"),
      B("Content-Type: text/plain\r\n"
        "\r\n"),
      B("<b>x</b>"), B("AAAA"),
      B("Content-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
        "Content-Disposition: attachment; filename*0=\"x\"; filename*1=\"y.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"),
      B("AAAA"), B("part1"), B(""), B("")}},
    {"digest",
     B("Content-Type: multipart/digest; boundary=d\n"
       "\n"
       "--d\n"
       "\n"
       "Subject: d1\n"
       "\n"
       "x\n"
       "--d\n"
       "Content-Type: text/plain\n"
       "\n"
       "y\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"message\" \"rfc822\" "
     "NIL NIL NIL \"7bit\" 16 (NIL \"d1\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) \"digest\" "
     "(\"boundary\" \"d\") NIL NIL NIL) BODY ((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 16 (NIL "
     "\"d1\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
     "NIL \"7bit\" 1 0) 2)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) "
     "\"digest\")",
     {B("Content-Type: multipart/digest; boundary=d\r\n"
        "\r\n"
        "--d\r\n"
        "\r\n"
        "Subject: d1\r\n"
        "\r\n"
        "x\r\n"
        "--d\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "y\r\n"),
      B("Content-Type: multipart/digest; boundary=d\r\n"
        "\r\n"),
      B("--d\r\n"
        "\r\n"
        "Subject: d1\r\n"
        "\r\n"
        "x\r\n"
        "--d\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "y\r\n"),
      B("Subject: d1\r\n"
        "\r\n"
        "x"),
      B("\r\n"), B("y\r\n"),
      B("Content-Type: text/plain\r\n"
        "\r\n"),
      B(""), B(""), B("y\r\n"),
      B("Content-Type: text/plain\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B("x"), B(""), B("")}},
    {"dup",
     B("Content-Type: text/plain; charset=x\n"
       "Content-Type: text/html\n"
       "Content-Language: en\n"
       "Content-Disposition: attachment\n"
       "Subject: caf\xc3"
       "\xa9"
       " \"q\" \\ x\n"
       "From: Caf\xc3"
       "\xa9"
       " <c@x>\n"
       "\n"
       "b\n"),
     "ENVELOPE (NIL {13}\r\n"
     "caf\xc3"
     "\xa9"
     " \"q\" \\ x (({5}\r\n"
     "Caf\xc3"
     "\xa9"
     " NIL \"c\" \"x\")) (({5}\r\n"
     "Caf\xc3"
     "\xa9"
     " NIL \"c\" \"x\")) (({5}\r\n"
     "Caf\xc3"
     "\xa9"
     " NIL \"c\" \"x\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" "
     "\"x\") NIL NIL \"7bit\" 3 1 NIL (\"attachment\" NIL) (\"en\") NIL) BODY (\"text\" \"plain\" "
     "(\"charset\" \"x\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Type: text/plain; charset=x\r\n"
        "Content-Type: text/html\r\n"
        "Content-Language: en\r\n"
        "Content-Disposition: attachment\r\n"
        "Subject: caf\xc3"
        "\xa9"
        " \"q\" \\ x\r\n"
        "From: Caf\xc3"
        "\xa9"
        " <c@x>\r\n"
        "\r\n"
        "b\r\n"),
      B("Content-Type: text/plain; charset=x\r\n"
        "Content-Type: text/html\r\n"
        "Content-Language: en\r\n"
        "Content-Disposition: attachment\r\n"
        "Subject: caf\xc3"
        "\xa9"
        " \"q\" \\ x\r\n"
        "From: Caf\xc3"
        "\xa9"
        " <c@x>\r\n"
        "\r\n"),
      B("b\r\n"), B("b\r\n"),
      B("Content-Type: text/plain; charset=x\r\n"
        "Content-Type: text/html\r\n"
        "Content-Language: en\r\n"
        "Content-Disposition: attachment\r\n"
        "Subject: caf\xc3"
        "\xa9"
        " \"q\" \\ x\r\n"
        "From: Caf\xc3"
        "\xa9"
        " <c@x>\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"noboundary",
     B("Content-Type: multipart/mixed\n"
       "\n"
       "--x\n"
       "\n"
       "b\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL) "
     "BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")",
     {B("Content-Type: multipart/mixed\r\n"
        "\r\n"
        "--x\r\n"
        "\r\n"
        "b\r\n"),
      B("Content-Type: multipart/mixed\r\n"
        "\r\n"),
      B("--x\r\n"
        "\r\n"
        "b\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B(""), B("")}},
    {"params",
     B("Content-Type: text/plain; a; b=; c=\"x\\\"y\"; d=(comment) e\n"
       "Content-Disposition: ; filename=x\n"
       "\n"
       "b\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"c\" "
     "\"x\\\"y\" \"d\" \"e\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL (\"\" "
     "(\"filename\" \"x\")) NIL NIL) BODY (\"text\" \"plain\" (\"c\" \"x\\\"y\" \"d\" \"e\" "
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Type: text/plain; a; b=; c=\"x\\\"y\"; d=(comment) e\r\n"
        "Content-Disposition: ; filename=x\r\n"
        "\r\n"
        "b\r\n"),
      B("Content-Type: text/plain; a; b=; c=\"x\\\"y\"; d=(comment) e\r\n"
        "Content-Disposition: ; filename=x\r\n"
        "\r\n"),
      B("b\r\n"), B("b\r\n"),
      B("Content-Type: text/plain; a; b=; c=\"x\\\"y\"; d=(comment) e\r\n"
        "Content-Disposition: ; filename=x\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"toprfc",
     B("Content-Type: message/rfc822\n"
       "\n"
       "From: x@y\n"
       "Content-Type: text/plain\n"
       "\n"
       "inner\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"message\" \"rfc822\" NIL "
     "NIL NIL \"7bit\" 46 (NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" "
     "\"y\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
     "7 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) BODY (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 46 "
     "(NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) NIL NIL NIL "
     "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1) 4)",
     {B("Content-Type: message/rfc822\r\n"
        "\r\n"
        "From: x@y\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "inner\r\n"),
      B("Content-Type: message/rfc822\r\n"
        "\r\n"),
      B("From: x@y\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "inner\r\n"),
      B("From: x@y\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "inner\r\n"),
      B("Content-Type: message/rfc822\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("inner\r\n"), B(""),
      B("")}},
    {"prefix",
     B("Content-Type: multipart/mixed; boundary=a\n"
       "\n"
       "--a\n"
       "Content-Type: multipart/mixed; boundary=ab\n"
       "\n"
       "--ab\n"
       "\n"
       "inner\n"
       "--a\n"
       "\n"
       "outer2\n"
       "--a--\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"ab\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 0 NIL "
     "NIL NIL NIL) \"mixed\" (\"boundary\" \"a\") NIL NIL NIL) BODY (((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) \"mixed\")(\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 6 0) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=a\r\n"
        "\r\n"
        "--a\r\n"
        "Content-Type: multipart/mixed; boundary=ab\r\n"
        "\r\n"
        "--ab\r\n"
        "\r\n"
        "inner\r\n"
        "--a\r\n"
        "\r\n"
        "outer2\r\n"
        "--a--\r\n"),
      B("Content-Type: multipart/mixed; boundary=a\r\n"
        "\r\n"),
      B("--a\r\n"
        "Content-Type: multipart/mixed; boundary=ab\r\n"
        "\r\n"
        "--ab\r\n"
        "\r\n"
        "inner\r\n"
        "--a\r\n"
        "\r\n"
        "outer2\r\n"
        "--a--\r\n"),
      B("--ab\r\n"
        "\r\n"
        "inner"),
      B("Content-Type: multipart/mixed; boundary=ab\r\n"
        "\r\n"),
      B("outer2"), B("\r\n"), B(""), B(""), B("outer2"), B("\r\n"), B(""), B(""), B(""), B(""),
      B("inner"), B(""), B("")}},
    {"emptymp",
     B("Content-Type: multipart/mixed; boundary=a\n"
       "\n"
       "--a--\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"a\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 "
     "0) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=a\r\n"
        "\r\n"
        "--a--\r\n"),
      B("Content-Type: multipart/mixed; boundary=a\r\n"
        "\r\n"),
      B("--a--\r\n"), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B(""), B(""), B(""), B("")}},
    {"addr",
     B("To: group:;, \"\" <x@y>\n"
       "Cc: (comment) a@b (c), a.b@c.d, \"a b\"@c.d, Joe Public <jp@x>\n"
       "Sender:\n"
       "Reply-To: \n"
       "From: f@x\n"
       "\n"
       "b\n"),
     "ENVELOPE (NIL NIL ((NIL NIL \"f\" \"x\")) ((NIL NIL \"f\" \"x\")) ((NIL NIL \"f\" \"x\")) "
     "((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"x\" \"y\")) ((\"c\" NIL \"a\" \"b\")(NIL "
     "NIL \"a.b\" \"c.d\")(NIL NIL \"a b\" \"c.d\")(\"Joe Public\" NIL \"jp\" \"x\")) NIL NIL NIL) "
     "BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL "
     "NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("To: group:;, \"\" <x@y>\r\n"
        "Cc: (comment) a@b (c), a.b@c.d, \"a b\"@c.d, Joe Public <jp@x>\r\n"
        "Sender:\r\n"
        "Reply-To: \r\n"
        "From: f@x\r\n"
        "\r\n"
        "b\r\n"),
      B("To: group:;, \"\" <x@y>\r\n"
        "Cc: (comment) a@b (c), a.b@c.d, \"a b\"@c.d, Joe Public <jp@x>\r\n"
        "Sender:\r\n"
        "Reply-To: \r\n"
        "From: f@x\r\n"
        "\r\n"),
      B("b\r\n"), B("b\r\n"),
      B("To: group:;, \"\" <x@y>\r\n"
        "Cc: (comment) a@b (c), a.b@c.d, \"a b\"@c.d, Joe Public <jp@x>\r\n"
        "Sender:\r\n"
        "Reply-To: \r\n"
        "From: f@x\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"missing_final",
     B("Content-Type: multipart/mixed; boundary=\"q\"\r\n"
       "\r\n"
       "--q\r\n"
       "Content-Type: text/plain\r\n"
       "\r\n"
       "line1\r\n"
       "line2\r\n"
       "--q\r\n"
       "Content-Type: image/png\r\n"
       "Content-Transfer-Encoding: base64\r\n"
       "\r\n"
       "iVBOR\r\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)(\"image\" \"png\" NIL NIL "
     "NIL \"base64\" 7 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"q\") NIL NIL NIL) BODY "
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1)(\"image\" \"png\" NIL "
     "NIL NIL \"base64\" 7) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=\"q\"\r\n"
        "\r\n"
        "--q\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "line1\r\n"
        "line2\r\n"
        "--q\r\n"
        "Content-Type: image/png\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "iVBOR\r\n"),
      B("Content-Type: multipart/mixed; boundary=\"q\"\r\n"
        "\r\n"),
      B("--q\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "line1\r\n"
        "line2\r\n"
        "--q\r\n"
        "Content-Type: image/png\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "iVBOR\r\n"),
      B("line1\r\n"
        "line2"),
      B("Content-Type: text/plain\r\n"
        "\r\n"),
      B("iVBOR\r\n"),
      B("Content-Type: image/png\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"),
      B(""), B(""), B("iVBOR\r\n"),
      B("Content-Type: image/png\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""),
      B("line1\r\n"
        "line2"),
      B(""), B("")}},
    {"alt_attach",
     B("From: Alice <alice@example.com>\r\n"
       "To: bob@example.com, carol@example.com\r\n"
       "Cc: dave@example.com\r\n"
       "Subject: report\r\n"
       "Date: Tue, 2 Jan 2024 09:00:00 +0100\r\n"
       "Message-ID: <r@example.com>\r\n"
       "MIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
       "\r\n"
       "This is a multi-part message.\r\n"
       "--outer\r\n"
       "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
       "\r\n"
       "--inner\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\n"
       "\r\n"
       "Hello \xc3"
       "\xa9"
       "\r\n"
       "--inner\r\n"
       "Content-Type: text/html; charset=utf-8\r\n"
       "\r\n"
       "<p>Hello</p>\r\n"
       "--inner--\r\n"
       "--outer\r\n"
       "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
       "Content-Disposition: attachment; filename=\"r.pdf\"; size=4\r\n"
       "Content-Transfer-Encoding: base64\r\n"
       "Content-Language: de\r\n"
       "Content-Location: r.pdf\r\n"
       "\r\n"
       "JVBERi0=\r\n"
       "--outer\r\n"
       "Content-Type: message/rfc822; name=\"fw.eml\"\r\n"
       "Content-Disposition: inline\r\n"
       "\r\n"
       "From: x@y\r\n"
       "Subject: fw\r\n"
       "\r\n"
       "fw body\r\n"
       "--outer--\r\n"),
     "ENVELOPE (\"Tue, 2 Jan 2024 09:00:00 +0100\" \"report\" ((\"Alice\" NIL \"alice\" "
     "\"example.com\")) ((\"Alice\" NIL \"alice\" \"example.com\")) ((\"Alice\" NIL \"alice\" "
     "\"example.com\")) ((NIL NIL \"bob\" \"example.com\")(NIL NIL \"carol\" \"example.com\")) "
     "((NIL NIL \"dave\" \"example.com\")) NIL NIL \"<r@example.com>\") BODYSTRUCTURE (((\"text\" "
     "\"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 8 0 NIL NIL NIL NIL)(\"text\" \"html\" "
     "(\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" "
     "\"inner\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 8 "
     "NIL (\"attachment\" (\"filename\" \"r.pdf\" \"size\" \"4\")) (\"de\") \"r.pdf\")(\"message\" "
     "\"rfc822\" (\"name\" \"fw.eml\") NIL NIL \"7bit\" 33 (NIL \"fw\" ((NIL NIL \"x\" \"y\")) "
     "((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 0 NIL NIL NIL NIL) 3 NIL (\"inline\" NIL) NIL "
     "NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL) BODY (((\"text\" \"plain\" (\"charset\" "
     "\"utf-8\") NIL NIL \"8bit\" 8 0)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" "
     "12 0) \"alternative\")(\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" "
     "8)(\"message\" \"rfc822\" (\"name\" \"fw.eml\") NIL NIL \"7bit\" 33 (NIL \"fw\" ((NIL NIL "
     "\"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL) (\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 0) 3) \"mixed\")",
     {B("From: Alice <alice@example.com>\r\n"
        "To: bob@example.com, carol@example.com\r\n"
        "Cc: dave@example.com\r\n"
        "Subject: report\r\n"
        "Date: Tue, 2 Jan 2024 09:00:00 +0100\r\n"
        "Message-ID: <r@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
        "\r\n"
        "This is a multi-part message.\r\n"
        "--outer\r\n"
        "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
        "\r\n"
        "--inner\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Hello \xc3"
        "\xa9"
        "\r\n"
        "--inner\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<p>Hello</p>\r\n"
        "--inner--\r\n"
        "--outer\r\n"
        "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"r.pdf\"; size=4\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Language: de\r\n"
        "Content-Location: r.pdf\r\n"
        "\r\n"
        "JVBERi0=\r\n"
        "--outer\r\n"
        "Content-Type: message/rfc822; name=\"fw.eml\"\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        "From: x@y\r\n"
        "Subject: fw\r\n"
        "\r\n"
        "fw body\r\n"
        "--outer--\r\n"),
      B("From: Alice <alice@example.com>\r\n"
        "To: bob@example.com, carol@example.com\r\n"
        "Cc: dave@example.com\r\n"
        "Subject: report\r\n"
        "Date: Tue, 2 Jan 2024 09:00:00 +0100\r\n"
        "Message-ID: <r@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
        "\r\n"),
      B("This is a multi-part message.\r\n"
        "--outer\r\n"
        "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
        "\r\n"
        "--inner\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Hello \xc3"
        "\xa9"
        "\r\n"
        "--inner\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<p>Hello</p>\r\n"
        "--inner--\r\n"
        "--outer\r\n"
        "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"r.pdf\"; size=4\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Language: de\r\n"
        "Content-Location: r.pdf\r\n"
        "\r\n"
        "JVBERi0=\r\n"
        "--outer\r\n"
        "Content-Type: message/rfc822; name=\"fw.eml\"\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        "From: x@y\r\n"
        "Subject: fw\r\n"
        "\r\n"
        "fw body\r\n"
        "--outer--\r\n"),
      B("--inner\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Hello \xc3"
        "\xa9"
        "\r\n"
        "--inner\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<p>Hello</p>\r\n"
        "--inner--\r\n"),
      B("Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
        "\r\n"),
      B("JVBERi0="),
      B("Content-Type: application/pdf; name=\"r.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"r.pdf\"; size=4\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Language: de\r\n"
        "Content-Location: r.pdf\r\n"
        "\r\n"),
      B(""), B(""), B("JVBERi0="),
      B("Content-Type: application/pdf; name=\"r.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"r.pdf\"; size=4\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Language: de\r\n"
        "Content-Location: r.pdf\r\n"
        "\r\n"),
      B(""),
      B("From: x@y\r\n"
        "Subject: fw\r\n"
        "\r\n"
        "fw body"),
      B("Content-Type: message/rfc822; name=\"fw.eml\"\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"),
      B("fw body"),
      B("Hello \xc3"
        "\xa9"
        ""),
      B("<p>Hello</p>"), B("")}},
    {"mixed_le",
     B("Subject: m\r\n"
       "Content-Type: multipart/mixed; boundary=z\n"
       "\n"
       "--z\r\n"
       "X: 1\n"
       "\n"
       "bare\n"
       "lf\r\n"
       "crlf\n"
       "--z--"),
     "ENVELOPE (NIL \"m\" NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"z\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 "
     "2) \"mixed\")",
     {B("Subject: m\r\n"
        "Content-Type: multipart/mixed; boundary=z\r\n"
        "\r\n"
        "--z\r\n"
        "X: 1\r\n"
        "\r\n"
        "bare\r\n"
        "lf\r\n"
        "crlf\r\n"
        "--z--"),
      B("Subject: m\r\n"
        "Content-Type: multipart/mixed; boundary=z\r\n"
        "\r\n"),
      B("--z\r\n"
        "X: 1\r\n"
        "\r\n"
        "bare\r\n"
        "lf\r\n"
        "crlf\r\n"
        "--z--"),
      B("bare\r\n"
        "lf\r\n"
        "crlf"),
      B("X: 1\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B("bare\r\n"
        "lf\r\n"
        "crlf"),
      B(""), B("")}},
    {"nomime",
     B("Content-ID: <a>\n"
       "Content-Transfer-Encoding: base64\n"
       "Content-Disposition: inline\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        "x\r\n"),
      B("Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"mimever",
     B("MIME-Version: 1.0\n"
       "Content-ID: <a>\n"
       "Content-Transfer-Encoding: base64\n"
       "Content-Disposition: inline\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") \"<a>\" NIL \"base64\" 3 1 NIL (\"inline\" NIL) NIL NIL) BODY "
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") \"<a>\" NIL \"base64\" 3 1)",
     {B("MIME-Version: 1.0\r\n"
        "Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        "x\r\n"),
      B("MIME-Version: 1.0\r\n"
        "Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("MIME-Version: 1.0\r\n"
        "Content-ID: <a>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"boundary_first",
     B("Content-Type: multipart/mixed; boundary=b\n"
       "\n"
       "--b\n"
       "\n"
       "x\n"
       "--b--"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"b\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 "
     "0) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "\r\n"
        "x\r\n"
        "--b--"),
      B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"),
      B("--b\r\n"
        "\r\n"
        "x\r\n"
        "--b--"),
      B("x"), B("\r\n"), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B("x"), B(""), B("")}},
    {"mp_in_hdrless",
     B("Content-Type: multipart/mixed; boundary=b\n"
       "\n"
       "--b\n"
       "Content-Type: text/plain\n"
       "--b\n"
       "\n"
       "y\n"
       "--b--\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"b\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 "
     "0)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Type: text/plain\r\n"
        "--b\r\n"
        "\r\n"
        "y\r\n"
        "--b--\r\n"),
      B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"),
      B("--b\r\n"
        "Content-Type: text/plain\r\n"
        "--b\r\n"
        "\r\n"
        "y\r\n"
        "--b--\r\n"),
      B(""), B("Content-Type: text/plain"), B("y"), B("\r\n"), B(""), B(""), B("y"), B("\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"rfc822_in_mp_noclose",
     B("Content-Type: multipart/mixed; boundary=b\n"
       "\n"
       "--b\n"
       "Content-Type: message/rfc822\n"
       "\n"
       "Subject: in\n"
       "\n"
       "body\n"
       "--b--\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"message\" \"rfc822\" "
     "NIL NIL NIL \"7bit\" 19 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "
     "\"mixed\" (\"boundary\" \"b\") NIL NIL NIL) BODY ((\"message\" \"rfc822\" NIL NIL NIL "
     "\"7bit\" 19 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 4 0) 2) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: in\r\n"
        "\r\n"
        "body\r\n"
        "--b--\r\n"),
      B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"),
      B("--b\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: in\r\n"
        "\r\n"
        "body\r\n"
        "--b--\r\n"),
      B("Subject: in\r\n"
        "\r\n"
        "body"),
      B("Content-Type: message/rfc822\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("body"), B(""),
      B("")}},
    {"encoded_params",
     B("Content-Type: text/plain; name=\"=?utf-8?q?x?=\"; title*=us-ascii'en'This%20is; "
       "t*0*=utf-8''a; t*1=b\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"name\" \"=?utf-8?q?x?=\" \"t*\" \"utf-8''ab\" \"title*\" \"us-ascii'en'This%20is\" "
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" \"plain\" "
     "(\"name\" \"=?utf-8?q?x?=\" \"t*\" \"utf-8''ab\" \"title*\" \"us-ascii'en'This%20is\" "
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Type: text/plain; name=\"=?utf-8?q?x?=\"; title*=us-ascii'en'This%20is; "
        "t*0*=utf-8''a; t*1=b\r\n"
        "\r\n"
        "x\r\n"),
      B("Content-Type: text/plain; name=\"=?utf-8?q?x?=\"; title*=us-ascii'en'This%20is; "
        "t*0*=utf-8''a; t*1=b\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Content-Type: text/plain; name=\"=?utf-8?q?x?=\"; title*=us-ascii'en'This%20is; "
        "t*0*=utf-8''a; t*1=b\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"transport_pad",
     B("Content-Type: multipart/mixed; boundary=b\n"
       "\n"
       "--b   \n"
       "\n"
       "x\n"
       "--b--  trailing\n"
       "epi\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE ((\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"b\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 "
     "0) \"mixed\")",
     {B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"
        "--b   \r\n"
        "\r\n"
        "x\r\n"
        "--b--  trailing\r\n"
        "epi\r\n"),
      B("Content-Type: multipart/mixed; boundary=b\r\n"
        "\r\n"),
      B("--b   \r\n"
        "\r\n"
        "x\r\n"
        "--b--  trailing\r\n"
        "epi\r\n"),
      B("x"), B("\r\n"), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""),
      B("x"), B(""), B("")}},
    {"ctype_comment",
     B("Content-Type: (c) text (d) / html (e) ; charset = \"utf-8\" (f)\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"html\" "
     "(\"charset\" \"utf-8\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" \"html\" "
     "(\"charset\" \"utf-8\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Type: (c) text (d) / html (e) ; charset = \"utf-8\" (f)\r\n"
        "\r\n"
        "x\r\n"),
      B("Content-Type: (c) text (d) / html (e) ; charset = \"utf-8\" (f)\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Content-Type: (c) text (d) / html (e) ; charset = \"utf-8\" (f)\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"bcc_group",
     B("Bcc: Undisclosed recipients:;\n"
       "In-Reply-To: <a@b> <c@d>\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL ((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL "
     "NIL)) \"<a@b> <c@d>\" NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
     "NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
     "NIL \"7bit\" 3 1)",
     {B("Bcc: Undisclosed recipients:;\r\n"
        "In-Reply-To: <a@b> <c@d>\r\n"
        "\r\n"
        "x\r\n"),
      B("Bcc: Undisclosed recipients:;\r\n"
        "In-Reply-To: <a@b> <c@d>\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Bcc: Undisclosed recipients:;\r\n"
        "In-Reply-To: <a@b> <c@d>\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"eightbit_param",
     B("Content-Type: text/plain; name=\"na\xc3"
       "\xaf"
       "ve.txt\"\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"name\" {10}\r\n"
     "na\xc3"
     "\xaf"
     "ve.txt \"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" "
     "\"plain\" (\"name\" {10}\r\n"
     "na\xc3"
     "\xaf"
     "ve.txt \"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Type: text/plain; name=\"na\xc3"
        "\xaf"
        "ve.txt\"\r\n"
        "\r\n"
        "x\r\n"),
      B("Content-Type: text/plain; name=\"na\xc3"
        "\xaf"
        "ve.txt\"\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Content-Type: text/plain; name=\"na\xc3"
        "\xaf"
        "ve.txt\"\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
    {"lang_single",
     B("Content-Language: en-US\n"
       "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
       "\n"
       "x\n"),
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) BODY (\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
     {B("Content-Language: en-US\r\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        "\r\n"
        "x\r\n"),
      B("Content-Language: en-US\r\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        "\r\n"),
      B("x\r\n"), B("x\r\n"),
      B("Content-Language: en-US\r\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        "\r\n"),
      B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B(""), B("")}},
};

static struct mimestruct *
build(const char *data, size_t len)
{
	unsigned char *blob;
	size_t blen;
	struct mimestruct *ms;

	assert_int_equal(mimestruct_build_buffer(data, len, &blob, &blen), 0);
	ms = mimestruct_load(blob, blen);
	free(blob);
	assert_non_null(ms);
	return ms;
}

static char *
describe(const struct mimestruct *ms)
{
	struct buf out = BUF_INIT;

	buf_adds(&out, "ENVELOPE ");
	mimestruct_imap_envelope(ms, &out);
	buf_adds(&out, " BODYSTRUCTURE ");
	mimestruct_imap_body(ms, true, &out);
	buf_adds(&out, " BODY ");
	mimestruct_imap_body(ms, false, &out);
	return buf_steal(&out);
}

/* "2.1.MIME" into a path and a section. */
static void
section_parse(const char *text, uint32_t *path, size_t *depth, enum mimestruct_section *sec)
{
	const char *p = text;

	*depth = 0;
	*sec = MIMESTRUCT_ALL;
	while (*p >= '0' && *p <= '9') {
		path[(*depth)++] = (uint32_t)strtoul(p, (char **)&p, 10);
		if (*p == '.')
			p++;
	}
	if (strcmp(p, "HEADER") == 0)
		*sec = MIMESTRUCT_HEADER;
	else if (strcmp(p, "TEXT") == 0)
		*sec = MIMESTRUCT_TEXT;
	else if (strcmp(p, "MIME") == 0)
		*sec = MIMESTRUCT_MIME;
}

/* The range's bytes in wire form (bare LF as CRLF). */
static char *
wire(const char *data, const struct mimestruct_range *r, size_t *len_r)
{
	char *out = malloc(2 * r->len + 1);
	size_t n = 0;

	assert_non_null(out);
	for (uint64_t i = 0; i < r->len; i++) {
		char c = data[r->offset + i];

		if (c == '\n' && (i == 0 || data[r->offset + i - 1] != '\r'))
			out[n++] = '\r';
		out[n++] = c;
	}
	*len_r = n;
	return out;
}

static void
test_case(void **state)
{
	const struct ms_case *tc = *state;
	struct mimestruct *ms = build(tc->msg.s, tc->msg.len);
	char *got = describe(ms);

	assert_string_equal(got, tc->want);
	free(got);
	for (size_t i = 0; i < NSECTIONS; i++) {
		uint32_t path[8];
		size_t depth, wlen;
		enum mimestruct_section sec;
		struct mimestruct_range r;
		int rc;
		char *w;

		section_parse(section_names[i], path, &depth, &sec);
		rc = mimestruct_section(ms, path, depth, sec, &r);
		if (rc != 1) {
			/* Dovecot answers an empty string for a part that does not exist. */
			assert_int_equal(rc, 0);
			assert_int_equal(tc->sections[i].len, 0);
			continue;
		}
		assert_true(r.offset + r.len <= tc->msg.len);
		w = wire(tc->msg.s, &r, &wlen);
		if (wlen != tc->sections[i].len || memcmp(w, tc->sections[i].s, wlen) != 0)
			fail_msg("section [%s] of %s differs", section_names[i], tc->name);
		assert_int_equal(r.wire_len, wlen);
		{
			uint64_t lines = 0;

			for (size_t k = 0; k < wlen; k++)
				lines += w[k] == '\n';
			assert_int_equal(r.lines, lines);
		}
		free(w);
	}
	mimestruct_free(&ms);
	assert_null(ms);
}

/* The parser on every prefix of the message: never fails, every range inside the prefix. */
static void
test_prefixes(void **state)
{
	const struct ms_case *tc = *state;

	for (size_t n = 0; n <= tc->msg.len; n++) {
		struct mimestruct *ms = build(tc->msg.s, n);
		char *got = describe(ms);
		static const char *const secs[] = {"",    "HEADER",   "TEXT", "1",  "1.MIME",
		                                   "2.1", "2.HEADER", "3",    "1.1"};

		for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
			uint32_t path[8];
			size_t depth;
			enum mimestruct_section sec;
			struct mimestruct_range r;

			section_parse(secs[i], path, &depth, &sec);
			if (mimestruct_section(ms, path, depth, sec, &r) == 1)
				assert_true(r.offset + r.len <= n);
		}
		free(got);
		mimestruct_free(&ms);
	}
}

/* A blob cut anywhere is refused; flipped bytes never crash the loader or the writers. */
static void
test_blob_damage(void **state)
{
	const struct ms_case *tc = *state;
	unsigned char *blob, *copy;
	size_t blen;
	uint32_t seed = 12345;

	assert_int_equal(mimestruct_build_buffer(tc->msg.s, tc->msg.len, &blob, &blen), 0);
	for (size_t n = 0; n < blen; n++)
		assert_null(mimestruct_load(blob, n));
	copy = malloc(blen);
	assert_non_null(copy);
	for (int round = 0; round < 2000; round++) {
		struct mimestruct *ms;

		memcpy(copy, blob, blen);
		for (int k = 0; k < 1 + round % 3; k++) {
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % blen] ^= (unsigned char)(1u << ((seed >> 4) % 8));
		}
		ms = mimestruct_load(copy, blen);
		if (ms != NULL) {
			uint32_t path[2] = {1, 1};
			struct mimestruct_range r;

			free(describe(ms));
			mimestruct_section(ms, path, 2, MIMESTRUCT_ALL, &r);
			mimestruct_free(&ms);
		}
	}
	free(copy);
	free(blob);
}

static void
test_load_invalid(void **state)
{
	static const unsigned char wrong_version[] = {'T', 'M', 'S', 9, 1};

	(void)state;
	assert_null(mimestruct_load(NULL, 0));
	assert_null(mimestruct_load((const unsigned char *)"", 0));
	assert_null(mimestruct_load((const unsigned char *)"garbage!", 8));
	assert_null(mimestruct_load(wrong_version, sizeof(wrong_version)));
}

struct fields_case {
	const char *hdr;
	const char *names[3];
	bool not ;
	const char *want;
};

static const struct fields_case fields_cases[] = {
    {"From: a\nSubject: s\nX-Other: o\n\n",
     {"subject", "FROM"},
     false,
     "From: a\r\nSubject: s\r\n\r\n"},
    {"From: a\nSubject: s\nX-Other: o\n\n", {"subject"}, true, "From: a\r\nX-Other: o\r\n\r\n"},
    {"Subject: folded\n\tline\r\nTo: t\n\n",
     {"subject"},
     false,
     "Subject: folded\r\n\tline\r\n\r\n"},
    {"Subject : spaced\nSubject: twice\n",
     {"Subject"},
     false,
     "Subject : spaced\r\nSubject: twice\r\n\r\n"},
    {"no colon line\nA: 1\n\nbody: not a header\n", {"a"}, true, "no colon line\r\n\r\n"},
    {"A: 1\nB: 2", {"b"}, false, "B: 2\r\n\r\n"},
    {"", {"a"}, false, "\r\n"},
    {"A: 1\n", {"x-none"}, false, "\r\n"},
};

static void
test_fields(void **state)
{
	const struct fields_case *tc = *state;
	size_t n = 0;
	struct buf out = BUF_INIT;

	while (n < 3 && tc->names[n] != NULL)
		n++;
	mimestruct_header_fields(tc->hdr, strlen(tc->hdr), tc->names, n, tc->not, &out);
	assert_non_null(out.data);
	assert_int_equal(out.len, strlen(tc->want));
	assert_memory_equal(out.data, tc->want, out.len);
	buf_free(&out);
}

/* 40 nested multiparts: from depth 32 on a part is an opaque application/octet-stream. */
static void
test_depth_limit(void **state)
{
	char *msg = malloc(8192), *got;
	size_t len = 0;
	struct mimestruct *ms;
	uint32_t path[64];
	struct mimestruct_range r;

	(void)state;
	assert_non_null(msg);
	for (int i = 0; i < 40; i++)
		len += (size_t)sprintf(
		    msg + len,
		    "Content-Type: multipart/mixed; boundary=\"=_%02d_x\"\n\n--=_%02d_x\n", i, i);
	len += (size_t)sprintf(msg + len, "\nleaf\n");
	ms = build(msg, len);
	got = describe(ms);
	assert_non_null(strstr(got, "((\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" "));
	assert_null(strstr(got, "\"=_32_x\""));
	assert_non_null(strstr(got, "\"=_31_x\""));
	for (size_t i = 0; i < 32; i++)
		path[i] = 1;
	assert_int_equal(mimestruct_section(ms, path, 32, MIMESTRUCT_ALL, &r), 1);
	assert_int_equal(r.offset + r.len, len); /* the opaque part runs to the end */
	assert_int_equal(mimestruct_section(ms, path, 33, MIMESTRUCT_ALL, &r), 0);
	free(got);
	mimestruct_free(&ms);
	free(msg);
}

/* 1100 parts: the first 999 are described (1000 with the multipart), the rest skipped. */
static void
test_part_limit(void **state)
{
	char *msg = malloc(16384), *got, *p;
	size_t len = 0, count = 0;
	struct mimestruct *ms;
	uint32_t path[1];
	struct mimestruct_range r;

	(void)state;
	assert_non_null(msg);
	len += (size_t)sprintf(msg, "Content-Type: multipart/mixed; boundary=m\n\n");
	for (int i = 0; i < 1100; i++)
		len += (size_t)sprintf(msg + len, "--m\n\np%d\n", i);
	len += (size_t)sprintf(msg + len, "--m--\n");
	ms = build(msg, len);
	got = describe(ms);
	for (p = got; (p = strstr(p, "(\"text\" \"plain\"")) != NULL; p++)
		count++;
	assert_int_equal(count, 2 * 999);
	path[0] = 999;
	assert_int_equal(mimestruct_section(ms, path, 1, MIMESTRUCT_ALL, &r), 1);
	assert_int_equal(r.len, 4);
	assert_memory_equal(msg + r.offset, "p998", 4);
	path[0] = 1000;
	assert_int_equal(mimestruct_section(ms, path, 1, MIMESTRUCT_ALL, &r), 0);
	free(got);
	mimestruct_free(&ms);
	free(msg);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(ms_cases) / sizeof(ms_cases[0]); i++) {
		add_test(test_case, (void *)&ms_cases[i],
		         "%s: ENVELOPE, BODYSTRUCTURE, BODY and %d sections as Dovecot",
		         ms_cases[i].name, NSECTIONS);
		add_test(test_prefixes, (void *)&ms_cases[i],
		         "%s: every prefix parses, ranges inside it", ms_cases[i].name);
		add_test(test_blob_damage, (void *)&ms_cases[i],
		         "%s: blob prefixes refused, flipped bytes harmless", ms_cases[i].name);
	}
	add_test(test_load_invalid, NULL, "load refuses NULL, empty, wrong magic and version");
	for (size_t i = 0; i < sizeof(fields_cases) / sizeof(fields_cases[0]); i++) {
		char esc[128];

		escape(esc, sizeof(esc), fields_cases[i].hdr, strlen(fields_cases[i].hdr));
		add_test(test_fields, (void *)&fields_cases[i], "HEADER.FIELDS%s of \"%s\"",
		         fields_cases[i].not ? ".NOT" : "", esc);
	}
	add_test(test_depth_limit, NULL, "nesting past 32 is an opaque part");
	add_test(test_part_limit, NULL, "parts past 1000 are skipped");
	return _cmocka_run_group_tests("mimestruct", tests, ntests, NULL, NULL);
}
