/* Unit tests for the push protocol client (push_client.c): the event parser from tables of valid
 * and invalid lines (each valid line also cut at every byte, which must fail cleanly), and whole
 * sessions against a scripted fake server on a socketpair, with the server's bytes sent whole and
 * then one byte per write, which must give the same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/push_client.h"
#include "table.h"

/* --- the parser --- */

struct good_row {
	const char *line;
	enum push_event_type type;
	const char *mailbox;
	uint32_t uidvalidity, uid;
	const char *from, *subject, *date;
	uint64_t size;
	bool replay;
	const char *extra; /* flags, reason or old, by type */
};

static const struct good_row good_rows[] = {
    {"{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":1764000000,\"uid\":42,"
     "\"from\":\"Bob <bob@example.org>\",\"subject\":\"Hello\","
     "\"date\":\"2026-11-24T23:10:00Z\",\"size\":1234}",
     PUSH_EVENT_NEW, "INBOX", 1764000000, 42, "Bob <bob@example.org>", "Hello",
     "2026-11-24T23:10:00Z", 1234, false, ""},
    {" { \"uid\" : 7 , \"type\" : \"new\" , \"mailbox\" : \"Sent Items\" , \"replay\" : true ,"
     " \"size\" : 0 } ",
     PUSH_EVENT_NEW, "Sent Items", 0, 7, "", "", "", 0, true, ""},
    {"{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":4294967295,\"uidvalidity\":4294967295,"
     "\"size\":18446744073709551615,\"replay\":false}",
     PUSH_EVENT_NEW, "INBOX", 4294967295u, 4294967295u, "", "", "", UINT64_MAX, false, ""},
    /* escapes: quote, backslash, slash, controls, BMP, a surrogate pair */
    {"{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"subject\":\"a\\\"b\\\\c\\/d\\te\\u00e9"
     "\\u4f60\\ud83d\\ude00\"}",
     PUSH_EVENT_NEW, "INBOX", 0, 1, "", "a\"b\\c/d\te\xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80", "", 0,
     false, ""},
    /* raw UTF-8 kept; invalid bytes, lone surrogates and \u0000 become U+FFFD */
    {"{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":2,\"from\":\"Gr\xc3\xbc\xc3\x9f"
     "e\",\"subject\":\"x\xff\xc0\xafy\\ud800z\\u0000\"}",
     PUSH_EVENT_NEW, "INBOX", 0, 2,
     "Gr\xc3\xbc\xc3\x9f"
     "e",
     "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd", "", 0, false, ""},
    /* unknown members of every shape are skipped; null strings are empty */
    {"{\"type\":\"new\",\"x\":{\"a\":[1,2.5e3,-0.5,true,false,null,{\"b\":\"}\"}]},"
     "\"mailbox\":\"INBOX\",\"uid\":3,\"from\":null,\"a-very-long-member-name-that-is-cut\":1}",
     PUSH_EVENT_NEW, "INBOX", 0, 3, "", "", "", 0, false, ""},
    {"{\"type\":\"expunge\",\"mailbox\":\"INBOX\",\"uid\":40}", PUSH_EVENT_EXPUNGE, "INBOX", 0, 40,
     "", "", "", 0, false, ""},
    {"{\"type\":\"flags\",\"mailbox\":\"INBOX\",\"uid\":41,\"flags\":[\"\\\\Seen\",\"$Junk\"]}",
     PUSH_EVENT_FLAGS, "INBOX", 0, 41, "", "", "", 0, false, "\\Seen $Junk"},
    {"{\"type\":\"flags\",\"mailbox\":\"INBOX\",\"uid\":41,\"flags\":[]}", PUSH_EVENT_FLAGS,
     "INBOX", 0, 41, "", "", "", 0, false, ""},
    {"{\"type\":\"mailbox\",\"event\":\"renamed\",\"mailbox\":\"X\",\"old\":\"Y\"}",
     PUSH_EVENT_MAILBOX, "X", 0, 0, "", "", "", 0, false, "Y"},
    {"{\"type\":\"keepalive\",\"time\":\"2026-11-24T23:11:00Z\"}", PUSH_EVENT_KEEPALIVE, "", 0, 0,
     "", "", "2026-11-24T23:11:00Z", 0, false, ""},
    {"{\"type\":\"resync\",\"reason\":\"overflow\"}", PUSH_EVENT_RESYNC, "", 0, 0, "", "", "", 0,
     false, "overflow"},
    {"{\"type\":\"something-new\",\"mailbox\":\"INBOX\"}", PUSH_EVENT_OTHER, "INBOX", 0, 0, "", "",
     "", 0, false, ""},
};

static const char *const bad_rows[] = {
    "",
    "[]",
    "\"new\"",
    "{",
    "{}",                 /* no type */
    "{\"type\":\"new\"}", /* no mailbox, no uid */
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":0}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":4294967296}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":-1}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1.5}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":\"1\"}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":01}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"size\":18446744073709551616}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"replay\":1}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"flags\":\"\\\\Seen\"}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1}x",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,}",
    "{\"type\":\"new\" \"mailbox\":\"INBOX\",\"uid\":1}",
    "{\"type\":\"new\",\"mailbox\":\"IN\tBOX\",\"uid\":1}", /* raw control character */
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"subject\":\"\\x41\"}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"subject\":\"\\u12\"}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"x\":tru}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"x\":[1,2}",
    "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"x\":1e}",
    "{'type':'new'}",
};

static void
check_event(const struct good_row *row, const struct push_event *ev)
{
	assert_int_equal(ev->type, row->type);
	assert_string_equal(ev->mailbox, row->mailbox);
	assert_int_equal(ev->uidvalidity, row->uidvalidity);
	assert_int_equal(ev->uid, row->uid);
	assert_string_equal(ev->from, row->from);
	assert_string_equal(ev->subject, row->subject);
	assert_string_equal(ev->date, row->date);
	assert_true(ev->size == row->size);
	assert_int_equal(ev->replay, row->replay);
	if (row->type == PUSH_EVENT_FLAGS)
		assert_string_equal(ev->flags, row->extra);
	if (row->type == PUSH_EVENT_RESYNC)
		assert_string_equal(ev->reason, row->extra);
	if (row->type == PUSH_EVENT_MAILBOX)
		assert_string_equal(ev->old, row->extra);
}

/* A valid line parses to its fields; each of its proper prefixes (a line cut anywhere) fails
 * with an error and no crash, read from a copy of exactly that many bytes (ASan sees overreads). */
static void
test_parse_good(void **state)
{
	const struct good_row *row = *state;
	size_t len = strlen(row->line);
	struct push_event *ev = malloc(sizeof(*ev));
	char error[256];

	assert_non_null(ev);
	assert_int_equal(push_event_parse(row->line, len, ev, error, sizeof(error)), 0);
	check_event(row, ev);
	for (size_t cut = 0; cut < len; cut++) {
		char *copy = malloc(cut + 1);

		assert_non_null(copy);
		memcpy(copy, row->line, cut);
		/* Trailing whitespace after a complete object is the only cut that may parse. */
		int r = push_event_parse(copy, cut, ev, error, sizeof(error));
		bool only_ws = true;
		for (size_t i = cut; i < len; i++)
			only_ws &= row->line[i] == ' ';
		if (!only_ws) {
			assert_int_equal(r, -1);
			assert_true(error[0] != '\0');
		}
		free(copy);
	}
	free(ev);
}

static void
test_parse_bad(void **state)
{
	const char *line = *state;
	struct push_event ev;
	char error[256];

	assert_int_equal(push_event_parse(line, strlen(line), &ev, error, sizeof(error)), -1);
	assert_true(error[0] != '\0');
}

/* Deep nesting is refused, not recursed into without bound. */
static void
test_parse_deep(void **state)
{
	char line[4096];
	size_t n = (size_t)snprintf(line, sizeof(line), "{\"type\":\"new\",\"x\":");
	struct push_event ev;
	char error[256];

	for (int i = 0; i < 1000; i++)
		line[n++] = '[';
	for (int i = 0; i < 1000; i++)
		line[n++] = ']';
	n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"mailbox\":\"INBOX\",\"uid\":1}");
	assert_int_equal(push_event_parse(line, n, &ev, error, sizeof(error)), -1);
	assert_non_null(strstr(error, "deep"));
}

/* A long string is cut to the buffer on a character boundary. */
static void
test_parse_long(void **state)
{
	size_t cap = 3 * PUSH_CLIENT_TEXT_MAX + 200;
	char *line = malloc(cap);
	struct push_event ev;
	char error[256];
	size_t n;

	assert_non_null(line);
	n = (size_t)snprintf(line, cap,
	                     "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uid\":1,\"subject\":\"a");
	for (int i = 0; i < PUSH_CLIENT_TEXT_MAX; i++) {
		memcpy(line + n, "\xe2\x82\xac", 3); /* the euro sign, 3 bytes */
		n += 3;
	}
	n += (size_t)snprintf(line + n, cap - n, "\"}");
	assert_int_equal(push_event_parse(line, n, &ev, error, sizeof(error)), 0);
	size_t len = strlen(ev.subject);
	assert_true(len < PUSH_CLIENT_TEXT_MAX);
	assert_true(len > PUSH_CLIENT_TEXT_MAX - 4);
	assert_int_equal((len - 1) % 3, 0); /* "a" and whole euro signs only */
	free(line);
}

/* --- sessions against a scripted server --- */

enum step_kind { EXPECT, SEND, END };

struct step {
	enum step_kind kind;
	const char *text;
};

struct fake {
	int fd;
	const struct step *script;
	bool bytewise;
	pthread_t thread;
	char failure[512];
};

static int
fake_line(struct fake *f, char *line, size_t size)
{
	size_t n = 0;
	char ch;

	while (n + 1 < size) {
		if (recv(f->fd, &ch, 1, 0) != 1)
			return -1;
		if (ch == '\n') {
			if (n > 0 && line[n - 1] == '\r')
				n--;
			line[n] = '\0';
			return 0;
		}
		line[n++] = ch;
	}
	return -1;
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	char line[2048];

	for (const struct step *s = f->script; s->kind != END && f->failure[0] == '\0'; s++) {
		if (s->kind == EXPECT) {
			if (fake_line(f, line, sizeof(line)) != 0)
				snprintf(f->failure, sizeof(f->failure), "EOF, expected '%s'",
				         s->text);
			else if (strcmp(line, s->text) != 0)
				snprintf(f->failure, sizeof(f->failure),
				         "got '%.200s', expected '%.200s'", line, s->text);
			continue;
		}
		size_t len = strlen(s->text);
		for (size_t i = 0; i < len; i += f->bytewise ? 1 : len) {
			if (send(f->fd, s->text + i, f->bytewise ? 1 : len, MSG_NOSIGNAL) < 0)
				break;
			if (f->bytewise)
				usleep(50);
		}
	}
	/* Drain until the client closes, so its last writes never fail. */
	while (recv(f->fd, line, sizeof(line), 0) > 0)
		;
	close(f->fd);
	return NULL;
}

static int
fake_start(struct fake *f, const struct step *script, bool bytewise)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	f->script = script;
	f->bytewise = bytewise;
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return sv[0];
}

static void
fake_finish(struct fake *f)
{
	pthread_join(f->thread, NULL);
	if (f->failure[0] != '\0')
		fail_msg("fake server: %s", f->failure);
}

/* What the callback saw: "type:mailbox:uid:from:subject:replay" per event, joined by '|'. */
struct seen {
	char text[4096];
	unsigned n;
};

static void
record(const struct push_event *ev, void *arg)
{
	struct seen *s = arg;
	size_t len = strlen(s->text);

	snprintf(s->text + len, sizeof(s->text) - len, "%s%s:%s:%u:%s:%s:%d", len > 0 ? "|" : "",
	         push_event_type_name(ev->type), ev->mailbox, ev->uid, ev->from, ev->subject,
	         ev->replay);
	s->n++;
}

static const struct conn_options fake_options = {
    .host = "fake", .security = CONN_SECURITY_NONE, .timeout_ms = 5000, .max_line = 4096};

#define GREETING "+OK tern push ready (capabilities: STARTTLS AUTH=PLAIN WATCH SINCE)\r\n"
/* base64("\0alice@example.test\0secret") */
#define AUTH_LINE "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ="

static const struct step session_script[] = {
    {SEND, GREETING},
    {EXPECT, "CAPA"},
    {SEND, "+OK STARTTLS AUTH=PLAIN WATCH SINCE\r\n"},
    {EXPECT, AUTH_LINE},
    {SEND, "+OK authenticated as alice@example.test\r\n"},
    {EXPECT, "WATCH INBOX SINCE 41"},
    {SEND, "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":42,\"from\":\"Bob\","
           "\"subject\":\"one\",\"replay\":true}\r\n"
           "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":43,\"from\":\"Bob\","
           "\"subject\":\"two\",\"replay\":true}\n"
           "+OK watching INBOX\r\n"
           "{\"type\":\"keepalive\",\"time\":\"2026-11-24T23:11:00Z\"}\r\n"
           "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":44,"
           "\"from\":\"Carol \\u00e9\",\"subject\":\"three\"}\r\n"},
    {EXPECT, "NOOP"},
    {SEND, "{\"type\":\"expunge\",\"mailbox\":\"INBOX\",\"uid\":42}\r\n+OK\r\n"},
    {EXPECT, "LOGOUT"},
    {SEND, "+OK bye\r\n"},
    {END, NULL},
};

/* The whole session; the same events whether the server's bytes come whole or one by one. */
static void
test_session(void **state)
{
	bool bytewise = *state != NULL;
	struct fake f;
	struct seen seen = {"", 0};
	struct push_client *c = NULL;
	char error[512] = "";
	int fd = fake_start(&f, session_script, bytewise);

	assert_int_equal(push_client_open_fd(fd, &fake_options, "alice@example.test", "secret",
	                                     record, &seen, &c, error, sizeof(error)),
	                 0);
	assert_string_equal(push_client_capabilities(c), "STARTTLS AUTH=PLAIN WATCH SINCE");
	assert_int_equal(push_client_watch(c, "INBOX", true, 41, error, sizeof(error)), 0);
	assert_string_equal(seen.text, "new:INBOX:42:Bob:one:1|new:INBOX:43:Bob:two:1");
	assert_int_equal(push_client_read(c, error, sizeof(error)), 1); /* keepalive */
	assert_int_equal(push_client_read(c, error, sizeof(error)), 1);
	assert_string_equal(seen.text, "new:INBOX:42:Bob:one:1|new:INBOX:43:Bob:two:1|"
	                               "keepalive::0:::0|new:INBOX:44:Carol \xc3\xa9:three:0");
	assert_int_equal(push_client_buffered(c), 0);
	assert_int_equal(push_client_noop(c, error, sizeof(error)), 0);
	assert_int_equal(seen.n, 5); /* the expunge came before NOOP's +OK */
	push_client_logout(&c);
	assert_null(c);
	fake_finish(&f);
}

static const struct step refused_script[] = {
    {SEND, GREETING},
    {EXPECT, "CAPA"},
    {SEND, "+OK AUTH=PLAIN WATCH SINCE\r\n"},
    {EXPECT, AUTH_LINE},
    {SEND, "-ERR authentication failed\r\n"},
    {END, NULL},
};

/* A refused login is -2 (not worth retrying) with the server's words. */
static void
test_auth_refused(void **state)
{
	struct fake f;
	struct push_client *c = NULL;
	char error[512] = "";
	int fd = fake_start(&f, refused_script, false);

	assert_int_equal(push_client_open_fd(fd, &fake_options, "alice@example.test", "secret",
	                                     NULL, NULL, &c, error, sizeof(error)),
	                 -2);
	assert_null(c);
	assert_non_null(strstr(error, "-ERR authentication failed"));
	fake_finish(&f);
}

static const struct step mailbox_script[] = {
    {SEND, GREETING},
    {EXPECT, "CAPA"},
    {SEND, "+OK WATCH SINCE\r\n"},
    {EXPECT, "WATCH \"My \\\"Box\\\\\""},
    {SEND, "-ERR no such mailbox My \"Box\\\r\n"},
    {EXPECT, "LOGOUT"},
    {SEND, "+OK bye\r\n"},
    {END, NULL},
};

/* Names with spaces, quotes and backslashes are quoted; a refused WATCH is -2; a name that
 * cannot be sent is refused before anything goes out. */
static void
test_watch_refused(void **state)
{
	struct fake f;
	struct push_client *c = NULL;
	char error[512] = "";
	int fd = fake_start(&f, mailbox_script, false);

	assert_int_equal(push_client_open_fd(fd, &fake_options, NULL, NULL, NULL, NULL, &c, error,
	                                     sizeof(error)),
	                 0);
	assert_int_equal(push_client_watch(c, "In\r\nLOGOUT", false, 0, error, sizeof(error)), -2);
	assert_int_equal(push_client_watch(c, "My \"Box\\", false, 0, error, sizeof(error)), -2);
	assert_non_null(strstr(error, "no such mailbox"));
	push_client_logout(&c);
	fake_finish(&f);
}

/* Hostile servers: each transcript ends the session with a clear error, never a crash. */
struct hostile_row {
	const char *name;
	const char *after_watch; /* what the server sends after "+OK watching" */
	const char *error_has;
};

static const struct hostile_row hostile_rows[] = {
    {"garbage line", "hello\r\n", "malformed"},
    {"malformed event", "{\"type\":\"new\",\"mailbox\":\"INBOX\"}\r\n", "malformed event"},
    {"unsolicited -ERR", "-ERR server shutting down\r\n", "shutting down"},
    {"unsolicited +OK", "+OK what\r\n", "+OK what"},
    {"closed", "", "closed"},
    {"event line over the cap", NULL, "too long"},
};

static void
test_hostile(void **state)
{
	const struct hostile_row *row = *state;
	char *flood = NULL;
	const char *text = row->after_watch;

	if (text == NULL) {
		flood = malloc(8192);
		assert_non_null(flood);
		memset(flood, 'x', 8190);
		flood[0] = '{';
		flood[8190] = '\n';
		flood[8191] = '\0';
		text = flood;
	}
	struct step script[] = {
	    {SEND, GREETING},
	    {EXPECT, "CAPA"},
	    {SEND, "+OK WATCH\r\n"},
	    {EXPECT, "WATCH INBOX"},
	    {SEND, "+OK watching INBOX\r\n"},
	    {SEND, text},
	    {END, NULL},
	};
	struct fake f;
	struct push_client *c = NULL;
	char error[512] = "";
	int fd = fake_start(&f, script, false);

	assert_int_equal(push_client_open_fd(fd, &fake_options, NULL, NULL, NULL, NULL, &c, error,
	                                     sizeof(error)),
	                 0);
	assert_int_equal(push_client_watch(c, "INBOX", false, 0, error, sizeof(error)), 0);
	if (row->after_watch != NULL && row->after_watch[0] == '\0')
		shutdown(f.fd, SHUT_WR);
	assert_int_equal(push_client_read(c, error, sizeof(error)), -1);
	if (strstr(error, row->error_has) == NULL)
		fail_msg("error '%s' does not mention '%s'", error, row->error_has);
	push_client_logout(&c); /* no LOGOUT on a broken connection */
	fake_finish(&f);
	free(flood);
}

static const struct step starttls_missing_script[] = {
    {SEND, GREETING},
    {EXPECT, "CAPA"},
    {SEND, "+OK AUTH=PLAIN WATCH SINCE\r\n"},
    {END, NULL},
};

/* STARTTLS asked for but not offered: refused before any credentials go out. */
static void
test_starttls_missing(void **state)
{
	struct conn_options o = fake_options;
	struct fake f;
	struct push_client *c = NULL;
	char error[512] = "";
	int fd = fake_start(&f, starttls_missing_script, false);

	o.security = CONN_SECURITY_STARTTLS;
	assert_int_equal(
	    push_client_open_fd(fd, &o, "alice", "secret", NULL, NULL, &c, error, sizeof(error)),
	    -2);
	assert_non_null(strstr(error, "STARTTLS"));
	fake_finish(&f);
}

int
main(void)
{
	static const int bytewise = 1;

	for (size_t i = 0; i < sizeof(good_rows) / sizeof(good_rows[0]); i++) {
		char name[128];

		escape(name, sizeof(name), good_rows[i].line, strlen(good_rows[i].line));
		add_test(test_parse_good, (void *)&good_rows[i], "parse %s", name);
	}
	for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		char name[128];

		escape(name, sizeof(name), bad_rows[i], strlen(bad_rows[i]));
		add_test(test_parse_bad, (void *)bad_rows[i], "refuse '%s'", name);
	}
	add_test(test_parse_deep, NULL, "refuse nesting 1000 deep");
	add_test(test_parse_long, NULL, "cut a long subject on a UTF-8 boundary");
	add_test(test_session, NULL,
	         "session: AUTH, WATCH SINCE replays, live events, NOOP, LOGOUT");
	add_test(test_session, (void *)&bytewise, "the same session, one byte per write");
	add_test(test_auth_refused, NULL, "a refused AUTH is final (-2) and quotes the server");
	add_test(test_watch_refused, NULL, "WATCH quotes names; a refused WATCH is -2");
	add_test(test_starttls_missing, NULL, "STARTTLS required but not offered: refused");
	for (size_t i = 0; i < sizeof(hostile_rows) / sizeof(hostile_rows[0]); i++)
		add_test(test_hostile, (void *)&hostile_rows[i], "hostile server: %s",
		         hostile_rows[i].name);
	return _cmocka_run_group_tests("push_client", tests, ntests, NULL, NULL);
}
