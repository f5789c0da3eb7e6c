/* imap_search: SEARCH and UID SEARCH over the selected mailbox's snapshot. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "lib/util.h"
#include "store/store.h"

/* --- SEARCH --- */

/* Evaluates one search key at args[*pos] into match (nmsgs bools, ANDed into it). Returns 0,
 * or -1 after replying. */
static int imap_search_key(struct imap_session *s, const char *tag, const struct imap_arg *args,
                           size_t nargs, size_t *pos, bool *match);

static int
imap_search_keys(struct imap_session *s, const char *tag, const struct imap_arg *args,
                 size_t nargs, bool *match)
{
	size_t pos = 0;

	while (pos < nargs) {
		if (imap_search_key(s, tag, args, nargs, &pos, match) < 0)
			return -1;
	}
	return 0;
}

static int
imap_search_key(struct imap_session *s, const char *tag, const struct imap_arg *args,
                size_t nargs, size_t *pos, bool *match)
{
	static const struct {
		const char *name;
		uint32_t flag;
		bool set;
	} flagkeys[] = {
	    {"SEEN", STORE_FLAG_SEEN, true},          {"UNSEEN", STORE_FLAG_SEEN, false},
	    {"DELETED", STORE_FLAG_DELETED, true},    {"UNDELETED", STORE_FLAG_DELETED, false},
	    {"FLAGGED", STORE_FLAG_FLAGGED, true},    {"UNFLAGGED", STORE_FLAG_FLAGGED, false},
	    {"ANSWERED", STORE_FLAG_ANSWERED, true},  {"UNANSWERED", STORE_FLAG_ANSWERED, false},
	    {"DRAFT", STORE_FLAG_DRAFT, true},        {"UNDRAFT", STORE_FLAG_DRAFT, false},
	};
	const struct imap_arg *a = &args[(*pos)++];
	bool *sub;
	uint32_t *idx;
	long n;

	if (a->type == IMAP_ARG_LIST) {
		sub = xcalloc(s->nmsgs + 1, sizeof(*sub));
		for (uint32_t i = 0; i < s->nmsgs; i++)
			sub[i] = true;
		if (imap_search_keys(s, tag, a->list, a->list_count, sub) < 0) {
			free(sub);
			return -1;
		}
		for (uint32_t i = 0; i < s->nmsgs; i++)
			match[i] = match[i] && sub[i];
		free(sub);
		return 0;
	}
	if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NUMBER) {
		imap_bad(s, tag, "Invalid SEARCH key");
		return -1;
	}
	for (size_t k = 0; k < sizeof(flagkeys) / sizeof(flagkeys[0]); k++) {
		if (!imap_arg_atom_equals(a, flagkeys[k].name))
			continue;
		for (uint32_t i = 0; i < s->nmsgs; i++)
			if (((s->msgs[i].flags & flagkeys[k].flag) != 0) != flagkeys[k].set)
				match[i] = false;
		return 0;
	}
	if (imap_arg_atom_equals(a, "ALL") || imap_arg_atom_equals(a, "OLD"))
		return 0;
	if (imap_arg_atom_equals(a, "NEW") || imap_arg_atom_equals(a, "RECENT")) {
		/* Nothing is \Recent in this server yet. */
		for (uint32_t i = 0; i < s->nmsgs; i++)
			match[i] = false;
		return 0;
	}
	if (imap_arg_atom_equals(a, "NOT") || imap_arg_atom_equals(a, "OR")) {
		bool or = imap_arg_atom_equals(a, "OR");
		bool *x = xcalloc(s->nmsgs + 1, sizeof(*x)), *y = xcalloc(s->nmsgs + 1, sizeof(*y));
		int r = 0;

		for (uint32_t i = 0; i < s->nmsgs; i++)
			x[i] = y[i] = true;
		if (*pos >= nargs || (or && *pos + 1 >= nargs)) {
			imap_bad(s, tag, "Missing SEARCH argument");
			r = -1;
		} else if (imap_search_key(s, tag, args, nargs, pos, x) < 0 ||
		           (or && imap_search_key(s, tag, args, nargs, pos, y) < 0)) {
			r = -1;
		} else {
			for (uint32_t i = 0; i < s->nmsgs; i++)
				match[i] = match[i] && (or ? (x[i] || y[i]) : !x[i]);
		}
		free(x);
		free(y);
		return r;
	}
	if (imap_arg_atom_equals(a, "UID")) {
		if (*pos >= nargs) {
			imap_bad(s, tag, "Missing SEARCH argument");
			return -1;
		}
		a = &args[(*pos)++];
		if ((n = imap_seqset_expand(s, tag, a, true, &idx)) < 0)
			return -1;
	} else if ((a->str[0] >= '0' && a->str[0] <= '9') || a->str[0] == '*') {
		if ((n = imap_seqset_expand(s, tag, a, false, &idx)) < 0)
			return -1;
	} else {
		imap_reply(s, "%s NO [CANNOT] SEARCH key not supported yet", tag);
		return -1;
	}
	sub = xcalloc(s->nmsgs + 1, sizeof(*sub));
	for (long i = 0; i < n; i++)
		sub[idx[i]] = true;
	for (uint32_t i = 0; i < s->nmsgs; i++)
		match[i] = match[i] && sub[i];
	free(sub);
	free(idx);
	return 0;
}

void
imap_cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	const struct imap_arg *args = cmd->args;
	size_t nargs = cmd->nargs;
	bool *match;

	if (nargs >= 2 && imap_arg_atom_equals(&args[0], "CHARSET")) {
		const char *cs;

		if (!imap_arg_get_astring(&args[1], &cs)) {
			imap_bad(s, cmd->tag, "Invalid CHARSET");
			return;
		}
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			imap_reply(s, "%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset",
			           cmd->tag);
			return;
		}
		args += 2;
		nargs -= 2;
	}
	if (nargs == 0) {
		imap_bad(s, cmd->tag, "syntax: SEARCH keys");
		return;
	}
	match = xcalloc(s->nmsgs + 1, sizeof(*match));
	for (uint32_t i = 0; i < s->nmsgs; i++)
		match[i] = true;
	if (imap_search_keys(s, cmd->tag, args, nargs, match) < 0) {
		free(match);
		return;
	}
	evbuffer_add_printf(out, "* SEARCH");
	for (uint32_t i = 0; i < s->nmsgs; i++)
		if (match[i])
			evbuffer_add_printf(out, " %u", cmd->uid ? s->msgs[i].uid : i + 1);
	evbuffer_add(out, "\r\n", 2);
	free(match);
	imap_reply(s, "%s OK %sSEARCH completed", cmd->tag, cmd->uid ? "UID " : "");
}
