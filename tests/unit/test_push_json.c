/* Unit tests for push_json: each kind of event against the exact line a client gets, escaping of
 * hostile text (quotes, backslashes, control bytes, invalid UTF-8), webhook payloads, keepalive and
 * resync lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notify/notify.h"
#include "push/push_json.h"
#include "push/push_parser.h"
#include "store/store.h"

#include "table.h"

#define T0 1795562217 /* 2026-11-24T23:16:57Z */

/* ---- "new" events (push and webhook) ---- */

struct new_case {
	const char *what;
	struct push_json_message m;
	const char *want;
};

/* clang-format off */
static const struct new_case new_cases[] = {
	{"plain", {"INBOX", 7, 42, "Bob <bob@example.org>", "Hello", T0, 1234, false, NULL},
	 "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":7,\"uid\":42,"
	 "\"from\":\"Bob <bob@example.org>\",\"subject\":\"Hello\",\"date\":\"2026-11-24T23:16:57Z\","
	 "\"size\":1234}"},
	{"replay", {"Sent Items", 1, 1, "", "", 0, 0, true, NULL},
	 "{\"type\":\"new\",\"mailbox\":\"Sent Items\",\"uidvalidity\":1,\"uid\":1,\"from\":\"\","
	 "\"subject\":\"\",\"date\":\"1970-01-01T00:00:00Z\",\"size\":0,\"replay\":true}"},
	{"webhook", {"INBOX", 4294967295u, 4294967295u, "a", "b", T0, 18446744073709551615ull, false,
		     "alice@example.test"},
	 "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":4294967295,\"uid\":4294967295,"
	 "\"from\":\"a\",\"subject\":\"b\",\"date\":\"2026-11-24T23:16:57Z\","
	 "\"size\":18446744073709551615,\"account\":\"alice@example.test\"}"},
	{"escapes", {"a\"b\\c", 1, 2, "\"Q\" <q@x>", "tab\there\nnew\rline \x01\x1f\x7f", T0, 3, false,
		     NULL},
	 "{\"type\":\"new\",\"mailbox\":\"a\\\"b\\\\c\",\"uidvalidity\":1,\"uid\":2,"
	 "\"from\":\"\\\"Q\\\" <q@x>\",\"subject\":\"tab\\there\\nnew\\rline \\u0001\\u001f\\u007f\","
	 "\"date\":\"2026-11-24T23:16:57Z\",\"size\":3}"},
	{"utf-8 kept", {"\xc3\xa9t\xc3\xa9", 1, 2, "\xe2\x82\xac", "\xf0\x9f\x93\xa8 mail", T0, 3, false,
			NULL},
	 "{\"type\":\"new\",\"mailbox\":\"\xc3\xa9t\xc3\xa9\",\"uidvalidity\":1,\"uid\":2,"
	 "\"from\":\"\xe2\x82\xac\",\"subject\":\"\xf0\x9f\x93\xa8 mail\","
	 "\"date\":\"2026-11-24T23:16:57Z\",\"size\":3}"},
	{"invalid utf-8 replaced", {"INBOX", 1, 2, "caf\xe9", "\xc3(\xff\xed\xa0\x80ok\xe2\x82", T0, 3,
				    false, NULL},
	 "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":1,\"uid\":2,"
	 "\"from\":\"caf\xef\xbf\xbd\","
	 "\"subject\":\"\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdok"
	 "\xef\xbf\xbd\xef\xbf\xbd\",\"date\":\"2026-11-24T23:16:57Z\",\"size\":3}"},
};
/* clang-format on */

static void
test_new(void **state)
{
	const struct new_case *tc = *state;
	char *line = push_json_new(&tc->m);

	assert_string_equal(line, tc->want);
	assert_true(push_utf8_valid(line, strlen(line)));
	free(line);
}

/* ---- events from the hub ---- */

struct event_case {
	const char *what;
	enum notify_kind kind;
	uint32_t uid;
	uint32_t flags;
	const char *keywords;
	const char *ev_mailbox; /* the event's mailbox field */
	const char *old;
	const char *mailbox; /* the watched name passed in */
	const char *want;
};

/* clang-format off */
static const struct event_case event_cases[] = {
	{"new", NOTIFY_NEW, 5, 0, "", "INBOX", "", "INBOX",
	 "{\"type\":\"new\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":5,\"from\":\"F\","
	 "\"subject\":\"S\",\"date\":\"2026-11-24T23:16:57Z\",\"size\":10}"},
	{"new named by the watched entry", NOTIFY_NEW, 5, 0, "", "", "", "Renamed",
	 "{\"type\":\"new\",\"mailbox\":\"Renamed\",\"uidvalidity\":9,\"uid\":5,\"from\":\"F\","
	 "\"subject\":\"S\",\"date\":\"2026-11-24T23:16:57Z\",\"size\":10}"},
	{"expunge", NOTIFY_EXPUNGE, 40, 0, "", "INBOX", "", "INBOX",
	 "{\"type\":\"expunge\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":40}"},
	{"flags none", NOTIFY_FLAGS, 41, 0, "", "INBOX", "", "INBOX",
	 "{\"type\":\"flags\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":41,\"flags\":[]}"},
	{"flags seen", NOTIFY_FLAGS, 41, STORE_FLAG_SEEN, "", "INBOX", "", "INBOX",
	 "{\"type\":\"flags\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":41,"
	 "\"flags\":[\"\\\\Seen\"]}"},
	{"flags all and keywords", NOTIFY_FLAGS, 41,
	 STORE_FLAG_SEEN | STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED | STORE_FLAG_DELETED |
	 STORE_FLAG_DRAFT | STORE_FLAG_RECENT, "$Label1  Work", "INBOX", "", "INBOX",
	 "{\"type\":\"flags\",\"mailbox\":\"INBOX\",\"uidvalidity\":9,\"uid\":41,\"flags\":"
	 "[\"\\\\Seen\",\"\\\\Answered\",\"\\\\Flagged\",\"\\\\Deleted\",\"\\\\Draft\",\"$Label1\","
	 "\"Work\"]}"},
	{"mailbox created", NOTIFY_MAILBOX_CREATED, 0, 0, "", "Projects", "", "Projects",
	 "{\"type\":\"mailbox\",\"event\":\"created\",\"mailbox\":\"Projects\"}"},
	{"mailbox deleted", NOTIFY_MAILBOX_DELETED, 0, 0, "", "Old \"one\"", "", "Old \"one\"",
	 "{\"type\":\"mailbox\",\"event\":\"deleted\",\"mailbox\":\"Old \\\"one\\\"\"}"},
	{"mailbox renamed", NOTIFY_MAILBOX_RENAMED, 0, 0, "", "New", "Old", "New",
	 "{\"type\":\"mailbox\",\"event\":\"renamed\",\"mailbox\":\"New\",\"old\":\"Old\"}"},
};
/* clang-format on */

static void
test_event(void **state)
{
	const struct event_case *tc = *state;
	struct notify_event ev = {
	    .kind = tc->kind,
	    .account_id = 1,
	    .mailbox_id = 2,
	    .uid = tc->uid,
	    .flags = tc->flags,
	    .size = 10,
	    .internal_date = T0,
	};
	char *line;

	notify_copy_text(ev.mailbox, sizeof(ev.mailbox), tc->ev_mailbox);
	notify_copy_text(ev.old_mailbox, sizeof(ev.old_mailbox), tc->old);
	notify_copy_text(ev.keywords, sizeof(ev.keywords), tc->keywords);
	notify_copy_text(ev.from, sizeof(ev.from), "F");
	notify_copy_text(ev.subject, sizeof(ev.subject), "S");
	line = push_json_event(&ev, tc->mailbox, 9);
	assert_string_equal(line, tc->want);
	free(line);
}

/* ---- keepalive, resync ---- */

static void
test_keepalive(void **state)
{
	char *line = push_json_keepalive(T0);

	assert_string_equal(line, "{\"type\":\"keepalive\",\"time\":\"2026-11-24T23:16:57Z\"}");
	free(line);
}

static void
test_resync(void **state)
{
	char *line = push_json_resync("overflow");

	assert_string_equal(line, "{\"type\":\"resync\",\"reason\":\"overflow\"}");
	free(line);
}

/* The longest texts an event can carry still make one valid line. */
static void
test_longest(void **state)
{
	struct notify_event ev = {.kind = NOTIFY_NEW, .account_id = 1, .mailbox_id = 2, .uid = 1};
	char big[1024];
	char *line;

	memset(big, '"', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	notify_copy_text(ev.from, sizeof(ev.from), big);
	notify_copy_text(ev.subject, sizeof(ev.subject), big);
	line = push_json_event(&ev, big, 1);
	assert_non_null(line);
	assert_null(strchr(line, '\n'));
	assert_true(push_utf8_valid(line, strlen(line)));
	assert_true(strlen(line) > 2 * 2 * (NOTIFY_FROM_MAX - 1));
	free(line);
}

int
main(void)
{
	char esc[128];

	for (size_t i = 0; i < sizeof(new_cases) / sizeof(new_cases[0]); i++) {
		escape(esc, sizeof(esc), new_cases[i].m.subject, strlen(new_cases[i].m.subject));
		add_test(test_new, (void *)&new_cases[i], "new event: %s (subject \"%s\")",
		         new_cases[i].what, esc);
	}
	for (size_t i = 0; i < sizeof(event_cases) / sizeof(event_cases[0]); i++)
		add_test(test_event, (void *)&event_cases[i], "hub event: %s", event_cases[i].what);
	add_test(test_keepalive, NULL, "keepalive line");
	add_test(test_resync, NULL, "resync line");
	add_test(test_longest, NULL, "longest texts, all escaped: one valid line");
	return _cmocka_run_group_tests("push_json", tests, ntests, NULL, NULL);
}
