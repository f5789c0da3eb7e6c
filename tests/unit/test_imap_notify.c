/* Unit tests for imap_notify_parse, NOTIFY's grammar (RFC 5465 section 8) over the argument tree:
 * a table of commands with the result rendered as text. Each row goes through the real
 * imap_parser, fed whole and one byte at a time (the parser turns MessageNew's BODY.PEEK[...]
 * into a section for NOTIFY as for FETCH), and both must give the same result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_notify.h"
#include "imap/imap_parser.h"

struct notify_case {
	const char *input; /* one command line */
	const char *want;  /* the rendering of the result */
};

static const struct notify_case cases[] = {
    {"a NOTIFY NONE\r\n", "NONE"},
    {"a notify none\r\n", "NONE"},
    {"a NOTIFY NONE x\r\n", "BAD"},
    {"a NOTIFY\r\n", "BAD"},
    {"a NOTIFY SET\r\n", "BAD"},
    {"a NOTIFY SET STATUS\r\n", "BAD"},
    {"a NOTIFY GET (personal NONE)\r\n", "BAD"},
    {"a NOTIFY SET (personal NONE)\r\n", "SET personal:-"},
    {"a NOTIFY SET STATUS (personal (MessageNew MessageExpunge))\r\n",
     "SET STATUS personal:new,exp"},
    {"a NOTIFY SET (selected (MessageNew (uid flags modseq internaldate rfc822.size) "
     "MessageExpunge FlagChange)) (inboxes (MessageNew MessageExpunge))\r\n",
     "SET selected:new,exp,flags atts=0,1,2,3,4 inboxes:new,exp"},
    {"a NOTIFY SET (Selected-Delayed (messagenew messageexpunge)) (subscribed (MailboxName "
     "SubscriptionChange))\r\n",
     "SET selected-delayed:new,exp subscribed:name,subs"},
    {"a NOTIFY SET (subtree Lists (MessageNew MessageExpunge))\r\n", "SET subtree[Lists]:new,exp"},
    {"a NOTIFY SET (subtree (Lists \"Work Stuff\" {3+}\r\nabc) (MailboxName))\r\n",
     "SET subtree[Lists|Work Stuff|abc]:name"},
    {"a NOTIFY SET (mailboxes INBOX (MessageNew MessageExpunge)) (personal NONE)\r\n",
     "SET mailboxes[INBOX]:new,exp personal:-"},
    /* MessageNew's fetch-att elsewhere than SELECTED: valid, unused */
    {"a NOTIFY SET (personal (MessageNew (UID) MessageExpunge))\r\n", "SET personal:new,exp"},
    /* syntax */
    {"a NOTIFY SET (personal)\r\n", "BAD"},
    {"a NOTIFY SET personal (MessageNew MessageExpunge)\r\n", "BAD"},
    {"a NOTIFY SET (nosuch (MessageNew MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (subtree (MessageNew MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (subtree () (MessageNew MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (subtree ((a)) (MessageNew MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (personal ())\r\n", "BAD"},
    {"a NOTIFY SET (personal \"MessageNew\")\r\n", "BAD"},
    {"a NOTIFY SET (personal (\"MessageNew\" MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (selected (MessageNew () MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (selected (MessageNew (nosuchatt) MessageExpunge))\r\n", "BAD"},
    /* the rules of section 5 and 6.1 */
    {"a NOTIFY SET (personal (MessageNew))\r\n", "BAD"},
    {"a NOTIFY SET (personal (MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (personal (FlagChange))\r\n", "BAD"},
    {"a NOTIFY SET (personal (AnnotationChange))\r\n", "BAD"},
    {"a NOTIFY SET (personal (MessageExpunge FlagChange))\r\n", "BAD"},
    {"a NOTIFY SET (selected (MailboxName))\r\n", "BAD"},
    {"a NOTIFY SET (selected-delayed (SubscriptionChange))\r\n", "BAD"},
    {"a NOTIFY SET (selected (MailboxMetadataChange))\r\n", "BAD"},
    {"a NOTIFY SET (selected NONE) (selected-delayed NONE)\r\n", "BAD"},
    {"a NOTIFY SET (selected NONE) (selected NONE)\r\n", "BAD"},
    /* events we do not have: NO [BADEVENT] */
    {"a NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))\r\n", "BADEVENT"},
    {"a NOTIFY SET (personal (MailboxMetadataChange))\r\n", "BADEVENT"},
    {"a NOTIFY SET (personal (ServerMetadataChange))\r\n", "BADEVENT"},
    {"a NOTIFY SET (personal (SomeFutureEvent))\r\n", "BADEVENT"},
    {"a NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))\r\n", "BADEVENT"},
    /* RFC 5465 5.2's useful fetch-att: structures and header fields */
    {"a NOTIFY SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) "
     "MessageExpunge))\r\n",
     "SET selected:new,exp atts=0,8"},
    {"a NOTIFY SET (selected (MessageNew (ENVELOPE BODY BODYSTRUCTURE "
     "BODY.PEEK[1.HEADER.FIELDS.NOT (Received)]<0.100>) MessageExpunge))\r\n",
     "SET selected:new,exp atts=5,6,7,8"},
    /* fetch-att not sent unsolicited: \Seen-setting, streamed sections, macros */
    {"a NOTIFY SET (selected (MessageNew (BODY[HEADER.FIELDS (From)]) MessageExpunge))\r\n",
     "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (BODY.PEEK[TEXT]) MessageExpunge))\r\n", "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (BODY.PEEK[]) MessageExpunge))\r\n", "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (BINARY.PEEK[1]) MessageExpunge))\r\n", "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (RFC822) MessageExpunge))\r\n", "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (ALL) MessageExpunge))\r\n", "CANNOT"},
    {"a NOTIFY SET (selected (MessageNew (BODY.PEEK[NOSUCH]) MessageExpunge))\r\n", "BAD"},
    {"a NOTIFY SET (selected (MessageNew (X.PEEK[HEADER]) MessageExpunge))\r\n", "BAD"},
};

static const char *const filter_names[] = {"selected",   "selected-delayed", "inboxes",  "personal",
                                           "subscribed", "subtree",          "mailboxes"};

static void
render(int r, const struct imap_notify_spec *spec, char *out, size_t size)
{
	size_t n = 0;

#define PUT(...) (n += (size_t)snprintf(out + n, n < size ? size - n : 0, __VA_ARGS__))
	out[0] = '\0';
	if (r == IMAP_NOTIFY_PARSE_BAD) {
		PUT("BAD");
		return;
	}
	if (r == IMAP_NOTIFY_PARSE_BADEVENT) {
		PUT("BADEVENT");
		return;
	}
	if (r == IMAP_NOTIFY_PARSE_CANNOT) {
		PUT("CANNOT");
		return;
	}
	if (spec->none) {
		PUT("NONE");
		return;
	}
	PUT("SET%s", spec->status ? " STATUS" : "");
	for (size_t i = 0; i < spec->ngroups; i++) {
		const struct imap_notify_group *g = &spec->groups[i];
		const char *sep = "";

		PUT(" %s", filter_names[g->filter]);
		if (g->nnames > 0) {
			PUT("[");
			for (size_t j = 0; j < g->nnames; j++) {
				const char *str = "";

				imap_arg_get_astring(spec->names[g->first + j], &str);
				PUT("%s%s", j > 0 ? "|" : "", str);
			}
			PUT("]");
		}
		PUT(":");
		if (g->events == 0)
			PUT("-");
		if (g->events & IMAP_NOTIFY_EV_NEW)
			PUT("%snew", sep), sep = ",";
		if (g->events & IMAP_NOTIFY_EV_EXPUNGE)
			PUT("%sexp", sep), sep = ",";
		if (g->events & IMAP_NOTIFY_EV_FLAGS)
			PUT("%sflags", sep), sep = ",";
		if (g->events & IMAP_NOTIFY_EV_MAILBOXNAME)
			PUT("%sname", sep), sep = ",";
		if (g->events & IMAP_NOTIFY_EV_SUBSCRIPTION)
			PUT("%ssubs", sep), sep = ",";
		if (g->filter <= IMAP_NOTIFY_SELECTED_DELAYED && spec->natts > 0) {
			PUT(" atts=");
			for (size_t k = 0; k < spec->natts; k++)
				PUT("%s%d", k > 0 ? "," : "", (int)spec->atts[k]);
		}
	}
#undef PUT
}

/* Feeds input in chunks of step bytes (0: whole) and renders what NOTIFY's grammar makes of the
 * command. */
static void
run_case(const char *input, size_t step, char *out, size_t size)
{
	struct imap_parser *p = imap_parser_new(NULL);
	size_t len = strlen(input), pos = 0;
	struct imap_notify_spec spec;
	const char *error;
	int ev = IMAP_PARSE_NEED_MORE;

	out[0] = '\0';
	while (pos < len) {
		size_t chunk = step == 0 ? len - pos : (len - pos < step ? len - pos : step);
		size_t used = 0;

		ev = imap_parser_feed(p, input + pos, chunk, &used);
		pos += used;
		if (ev == IMAP_PARSE_COMMAND || ev == IMAP_PARSE_ERROR)
			break;
	}
	if (ev == IMAP_PARSE_COMMAND) {
		const struct imap_command *cmd = imap_parser_command(p);

		assert_string_equal(cmd->name, "NOTIFY");
		render(imap_notify_parse(cmd->args, cmd->nargs, &spec, &error), &spec, out, size);
	} else {
		snprintf(out, size, "parser event %d", ev);
	}
	imap_parser_free(&p);
}

static void
test_table(void **state)
{
	char whole[512], bytewise[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_case(cases[i].input, 0, whole, sizeof(whole));
		run_case(cases[i].input, 1, bytewise, sizeof(bytewise));
		print_message("# %-8s <- %.*s\n", cases[i].want, (int)strcspn(cases[i].input, "\r"),
		              cases[i].input);
		if (strcmp(whole, cases[i].want) != 0 || strcmp(bytewise, cases[i].want) != 0)
			fail_msg("row %zu: %s\n  want %s\n  whole %s\n  bytes %s", i,
			         cases[i].input, cases[i].want, whole, bytewise);
	}
}

/* Hostile sizes: past the group, name and fetch-att caps the command is refused, not stored. */
static void
test_caps(void **state)
{
	char *cmd = malloc(65536), out[512];
	size_t n;

	(void)state;
	assert_non_null(cmd);
	n = (size_t)snprintf(cmd, 65536, "a NOTIFY SET");
	for (int i = 0; i < IMAP_NOTIFY_GROUPS_MAX + 1; i++)
		n += (size_t)snprintf(cmd + n, 65536 - n, " (personal NONE)");
	snprintf(cmd + n, 65536 - n, "\r\n");
	run_case(cmd, 0, out, sizeof(out));
	assert_string_equal(out, "BAD");

	n = (size_t)snprintf(cmd, 65536, "a NOTIFY SET (mailboxes (");
	for (int i = 0; i < IMAP_NOTIFY_NAMES_MAX + 1; i++)
		n += (size_t)snprintf(cmd + n, 65536 - n, "%sm%d", i > 0 ? " " : "", i);
	snprintf(cmd + n, 65536 - n, ") (MailboxName))\r\n");
	run_case(cmd, 0, out, sizeof(out));
	assert_string_equal(out, "BAD");

	n = (size_t)snprintf(cmd, 65536, "a NOTIFY SET (selected (MessageNew (");
	for (int i = 0; i < IMAP_NOTIFY_ATTS_MAX + 1; i++)
		n += (size_t)snprintf(cmd + n, 65536 - n, "%sUID", i > 0 ? " " : "");
	snprintf(cmd + n, 65536 - n, ") MessageExpunge))\r\n");
	run_case(cmd, 0, out, sizeof(out));
	assert_string_equal(out, "BAD");
	free(cmd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_caps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
