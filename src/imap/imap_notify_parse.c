/* imap_notify_parse: NOTIFY's grammar (RFC 5465 section 8) over the argument tree imap_parser
 * builds; no session, no I/O (unit-tested in tests/unit/test_imap_notify.c, fuzzed in
 * fuzz_imap_command). See imap_notify.h. */
#include "imap/imap_notify.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_parser.h"
#include "imap/imap_section.h"

static const struct {
	const char *name;
	enum imap_notify_filter filter;
	bool names;
} imap_notify_filters[] = {
    {"SELECTED", IMAP_NOTIFY_SELECTED, false},
    {"SELECTED-DELAYED", IMAP_NOTIFY_SELECTED_DELAYED, false},
    {"INBOXES", IMAP_NOTIFY_INBOXES, false},
    {"PERSONAL", IMAP_NOTIFY_PERSONAL, false},
    {"SUBSCRIBED", IMAP_NOTIFY_SUBSCRIBED, false},
    {"SUBTREE", IMAP_NOTIFY_SUBTREE, true},
    {"MAILBOXES", IMAP_NOTIFY_MAILBOXES, true},
};

static const struct {
	const char *name;
	unsigned event; /* 0: known, not supported here (no ANNOTATE, no METADATA) */
} imap_notify_events[] = {
    {"MessageNew", IMAP_NOTIFY_EV_NEW},
    {"MessageExpunge", IMAP_NOTIFY_EV_EXPUNGE},
    {"FlagChange", IMAP_NOTIFY_EV_FLAGS},
    {"MailboxName", IMAP_NOTIFY_EV_MAILBOXNAME},
    {"SubscriptionChange", IMAP_NOTIFY_EV_SUBSCRIPTION},
    {"AnnotationChange", 0},
    {"MailboxMetadataChange", 0},
    {"ServerMetadataChange", 0},
};

static const char *const imap_notify_att_names[] = {
    [IMAP_NOTIFY_ATT_UID] = "UID",          [IMAP_NOTIFY_ATT_FLAGS] = "FLAGS",
    [IMAP_NOTIFY_ATT_MODSEQ] = "MODSEQ",    [IMAP_NOTIFY_ATT_INTERNALDATE] = "INTERNALDATE",
    [IMAP_NOTIFY_ATT_SIZE] = "RFC822.SIZE", [IMAP_NOTIFY_ATT_ENVELOPE] = "ENVELOPE",
    [IMAP_NOTIFY_ATT_BODY] = "BODY",        [IMAP_NOTIFY_ATT_BODYSTRUCTURE] = "BODYSTRUCTURE",
};

/* FETCH items that are valid but not sent unsolicited here: the macros, and what needs the
 * whole message or a part streamed (RFC 5465 5.2: a client SHOULD NOT ask for them). */
static const char *const imap_notify_atts_unsent[] = {
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "FAST", "ALL", "FULL", "EMAILID", "THREADID",
};

/* BODY.PEEK[...]: only HEADER.FIELDS(.NOT), which is read at once; a BODY[...] would set \Seen
 * (RFC 5465 5.2: SHOULD NOT). */
static int
imap_notify_parse_section(const struct imap_arg *a, const char **error_r)
{
	struct imap_section sec = {0};
	bool valid = imap_section_parse(a->section, &sec);
	bool fields = valid && sec.fields != IMAP_SECTION_NO_FIELDS;

	imap_section_clear(&sec);
	if (strcasecmp(a->str, "BODY") != 0 && strcasecmp(a->str, "BODY.PEEK") != 0 &&
	    strcasecmp(a->str, "BINARY") != 0 && strcasecmp(a->str, "BINARY.PEEK") != 0 &&
	    strcasecmp(a->str, "BINARY.SIZE") != 0) {
		*error_r = "Invalid fetch-att";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (!valid && strncasecmp(a->str, "BINARY", 6) != 0) {
		*error_r = "Invalid section";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (strcasecmp(a->str, "BODY.PEEK") != 0 || !fields) {
		*error_r = "MessageNew sends BODY.PEEK[HEADER.FIELDS (...)] and "
		           "BODY.PEEK[HEADER.FIELDS.NOT (...)], not other sections; fetch them "
		           "with UID FETCH";
		return IMAP_NOTIFY_PARSE_CANNOT;
	}
	return IMAP_NOTIFY_PARSE_OK;
}

/* MessageNew's fetch-att list. */
static int
imap_notify_parse_atts(const struct imap_arg *list, struct imap_notify_spec *spec, bool keep,
                       const char **error_r)
{
	if (list->list_count == 0) {
		*error_r = "Empty fetch-att list";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		size_t k = 0, nk = sizeof(imap_notify_att_names) / sizeof(imap_notify_att_names[0]);
		int r;

		if (a->type == IMAP_ARG_SECTION) {
			if ((r = imap_notify_parse_section(a, error_r)) != IMAP_NOTIFY_PARSE_OK)
				return r;
			k = IMAP_NOTIFY_ATT_SECTION;
		} else {
			while (k < nk && !imap_arg_atom_equals(a, imap_notify_att_names[k]))
				k++;
		}
		if (a->type != IMAP_ARG_SECTION && k == nk) {
			for (size_t j = 0; j < sizeof(imap_notify_atts_unsent) /
			                           sizeof(imap_notify_atts_unsent[0]);
			     j++) {
				if (imap_arg_atom_equals(a, imap_notify_atts_unsent[j])) {
					*error_r = "MessageNew does not send whole messages or "
					           "macros; use UID FETCH";
					return IMAP_NOTIFY_PARSE_CANNOT;
				}
			}
			*error_r = "Invalid fetch-att";
			return IMAP_NOTIFY_PARSE_BAD;
		}
		if (!keep)
			continue;
		if (spec->natts == IMAP_NOTIFY_ATTS_MAX) {
			*error_r = "Too many fetch-att items";
			return IMAP_NOTIFY_PARSE_BAD;
		}
		spec->att_args[spec->natts] = a;
		spec->atts[spec->natts++] = (enum imap_notify_att)k;
	}
	return IMAP_NOTIFY_PARSE_OK;
}

/* One group's events: NONE or "(" event *(SP event) ")". *unsupported is set for a known or
 * unknown event this server does not have (NO [BADEVENT], once the syntax is known good). */
static int
imap_notify_parse_events(const struct imap_arg *a, struct imap_notify_group *g,
                         struct imap_notify_spec *spec, bool *unsupported, const char **error_r)
{
	bool selected =
	    g->filter == IMAP_NOTIFY_SELECTED || g->filter == IMAP_NOTIFY_SELECTED_DELAYED;
	bool annotation = false;
	int r;

	g->events = 0;
	if (imap_arg_atom_equals(a, "NONE"))
		return IMAP_NOTIFY_PARSE_OK;
	if (a->type != IMAP_ARG_LIST || a->list_count == 0) {
		*error_r = "Expected an event list or NONE";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	for (size_t i = 0; i < a->list_count; i++) {
		const struct imap_arg *e = &a->list[i];
		size_t k = 0, nk = sizeof(imap_notify_events) / sizeof(imap_notify_events[0]);

		if (e->type != IMAP_ARG_ATOM) {
			*error_r = "Invalid event";
			return IMAP_NOTIFY_PARSE_BAD;
		}
		while (k < nk && strcasecmp(e->str, imap_notify_events[k].name) != 0)
			k++;
		if (k == nk || imap_notify_events[k].event == 0) {
			/* event-ext is any atom: valid syntax, refused with NO below */
			*unsupported = true;
			if (k < nk && strcasecmp(e->str, "AnnotationChange") == 0)
				annotation = true;
			if (k < nk && strcasecmp(e->str, "AnnotationChange") != 0 && selected) {
				*error_r = "Only message events may be used with SELECTED";
				return IMAP_NOTIFY_PARSE_BAD;
			}
			continue;
		}
		if (selected && (imap_notify_events[k].event & IMAP_NOTIFY_EV_MESSAGE) == 0) {
			*error_r = "Only message events may be used with SELECTED";
			return IMAP_NOTIFY_PARSE_BAD;
		}
		g->events |= imap_notify_events[k].event;
		if (imap_notify_events[k].event == IMAP_NOTIFY_EV_NEW && i + 1 < a->list_count &&
		    a->list[i + 1].type == IMAP_ARG_LIST) {
			i++;
			r = imap_notify_parse_atts(&a->list[i], spec, selected, error_r);
			if (r != IMAP_NOTIFY_PARSE_OK)
				return r;
		}
	}
	/* RFC 5465 5: MessageNew and MessageExpunge go together; FlagChange and
	 * AnnotationChange need both. */
	if (((g->events & IMAP_NOTIFY_EV_NEW) != 0) !=
	    ((g->events & IMAP_NOTIFY_EV_EXPUNGE) != 0)) {
		*error_r = "MessageNew and MessageExpunge must be given together";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (((g->events & IMAP_NOTIFY_EV_FLAGS) != 0 || annotation) &&
	    (g->events & IMAP_NOTIFY_EV_NEW) == 0) {
		*error_r = "FlagChange and AnnotationChange need MessageNew and MessageExpunge";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	return IMAP_NOTIFY_PARSE_OK;
}

/* "(" filter-mailboxes SP events ")" */
static int
imap_notify_parse_group(const struct imap_arg *a, struct imap_notify_spec *spec, bool *unsupported,
                        const char **error_r)
{
	struct imap_notify_group *g;
	size_t k = 0, nk = sizeof(imap_notify_filters) / sizeof(imap_notify_filters[0]);
	const struct imap_arg *names;

	if (a->type != IMAP_ARG_LIST || a->list_count < 2) {
		*error_r = "Expected (filter events)";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	while (k < nk && !imap_arg_atom_equals(&a->list[0], imap_notify_filters[k].name))
		k++;
	if (k == nk) {
		*error_r = "Unknown mailbox filter";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (a->list_count != (imap_notify_filters[k].names ? 3u : 2u)) {
		*error_r = imap_notify_filters[k].names ? "Expected (filter mailboxes events)"
		                                        : "Expected (filter events)";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (spec->ngroups == IMAP_NOTIFY_GROUPS_MAX) {
		*error_r = "Too many event groups";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	g = &spec->groups[spec->ngroups++];
	*g = (struct imap_notify_group){.filter = imap_notify_filters[k].filter,
	                                .first = spec->nnames};
	if (imap_notify_filters[k].names) {
		const struct imap_arg *one = &a->list[1];
		size_t n = 1;
		const char *str;

		names = one;
		if (one->type == IMAP_ARG_LIST) {
			names = one->list;
			n = one->list_count;
		}
		if (n == 0) {
			*error_r = "Empty mailbox list";
			return IMAP_NOTIFY_PARSE_BAD;
		}
		for (size_t i = 0; i < n; i++) {
			if (!imap_arg_get_astring(&names[i], &str)) {
				*error_r = "Invalid mailbox name";
				return IMAP_NOTIFY_PARSE_BAD;
			}
			if (spec->nnames == IMAP_NOTIFY_NAMES_MAX) {
				*error_r = "Too many mailbox names";
				return IMAP_NOTIFY_PARSE_BAD;
			}
			spec->names[spec->nnames++] = &names[i];
		}
		g->nnames = n;
	}
	return imap_notify_parse_events(&a->list[a->list_count - 1], g, spec, unsupported, error_r);
}

int
imap_notify_parse(const struct imap_arg *args, size_t nargs, struct imap_notify_spec *spec,
                  const char **error_r)
{
	bool unsupported = false, selected = false;
	size_t i = 1;
	int r;

	memset(spec, 0, sizeof(*spec));
	*error_r = NULL;
	if (nargs == 1 && imap_arg_atom_equals(&args[0], "NONE")) {
		spec->none = true;
		return IMAP_NOTIFY_PARSE_OK;
	}
	if (nargs < 2 || !imap_arg_atom_equals(&args[0], "SET")) {
		*error_r = "syntax: NOTIFY SET [STATUS] (filter events)... or NOTIFY NONE";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (imap_arg_atom_equals(&args[1], "STATUS")) {
		spec->status = true;
		i = 2;
	}
	if (i == nargs) {
		*error_r = "NOTIFY SET needs at least one event group";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	for (; i < nargs; i++) {
		r = imap_notify_parse_group(&args[i], spec, &unsupported, error_r);
		if (r != IMAP_NOTIFY_PARSE_OK)
			return r;
		if (spec->groups[spec->ngroups - 1].filter <= IMAP_NOTIFY_SELECTED_DELAYED) {
			/* RFC 5465 6.1: one of SELECTED and SELECTED-DELAYED, once */
			if (selected) {
				*error_r = "SELECTED or SELECTED-DELAYED may be given only once";
				return IMAP_NOTIFY_PARSE_BAD;
			}
			selected = true;
		}
	}
	if (unsupported) {
		*error_r = "Unsupported event";
		return IMAP_NOTIFY_PARSE_BADEVENT;
	}
	return IMAP_NOTIFY_PARSE_OK;
}
