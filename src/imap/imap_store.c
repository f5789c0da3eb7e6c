/* imap_store: STORE and UID STORE (system flags and keywords, CONDSTORE UNCHANGEDSINCE). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_private.h"
#include "lib/util.h"
#include "store/store.h"

/* --- STORE --- */

int
imap_flags_parse(const struct imap_arg *arg, uint32_t *flags_r)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} names[] = {
	    {"\\Seen", STORE_FLAG_SEEN},       {"\\Answered", STORE_FLAG_ANSWERED},
	    {"\\Flagged", STORE_FLAG_FLAGGED}, {"\\Deleted", STORE_FLAG_DELETED},
	    {"\\Draft", STORE_FLAG_DRAFT},
	};
	const struct imap_arg *list = arg;
	size_t n = 1;

	*flags_r = 0;
	if (arg->type == IMAP_ARG_LIST) {
		list = arg->list;
		n = arg->list_count;
	}
	for (size_t i = 0; i < n; i++) {
		size_t j;

		if (list[i].type != IMAP_ARG_ATOM)
			return -1;
		for (j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
			if (strcasecmp(list[i].str, names[j].name) == 0) {
				*flags_r |= names[j].bit;
				break;
			}
		}
		if (j == sizeof(names) / sizeof(names[0]))
			return list[i].str[0] == '\\' ? -1 : -2;
	}
	return 0;
}

void
imap_cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
	const char *item;
	uint32_t flags, *idx;
	long nidx;
	int mode = 0; /* 0 replace, 1 add, -1 remove */
	bool silent = false;
	size_t len;
	int r;

	if (cmd->nargs != 3 || !imap_arg_get_atom(&cmd->args[1], &item)) {
		imap_bad(s, cmd->tag, "syntax: STORE sequence-set item flags");
		return;
	}
	if (*item == '+' || *item == '-') {
		mode = *item == '+' ? 1 : -1;
		item++;
	}
	len = strlen(item);
	if (len >= 7 && strcasecmp(item + len - 7, ".SILENT") == 0) {
		silent = true;
		len -= 7;
	}
	if (len != 5 || strncasecmp(item, "FLAGS", 5) != 0) {
		imap_bad(s, cmd->tag, "Invalid STORE item");
		return;
	}
	r = imap_flags_parse(&cmd->args[2], &flags);
	if (r == -1) {
		imap_bad(s, cmd->tag, "Invalid flag");
		return;
	}
	if (r == -2) {
		imap_reply(s, "%s NO [CANNOT] Keywords are not supported yet", cmd->tag);
		return;
	}
	if (s->read_only) {
		imap_reply(s, "%s NO [READ-ONLY] Mailbox is read-only", cmd->tag);
		return;
	}
	if ((nidx = imap_seqset_expand(s, cmd->tag, &cmd->args[0], cmd->uid, &idx)) < 0)
		return;
	if (nidx == 0) {
		free(idx);
		imap_reply(s, "%s OK %sSTORE completed", cmd->tag, cmd->uid ? "UID " : "");
		return;
	}
	free(s->update_changes);
	free(s->update_uids);
	s->update_uids = NULL;
	s->update_nuids = 0;
	s->update_changes = xcalloc((size_t)nidx, sizeof(*s->update_changes));
	for (long i = 0; i < nidx; i++) {
		struct store_flag_change *c = &s->update_changes[i];

		c->uid = s->msgs[idx[i]].uid;
		if (mode >= 0)
			c->add = flags;
		if (mode == 0)
			c->remove = IMAP_SYSTEM_FLAGS & ~flags;
		if (mode < 0)
			c->remove = flags;
	}
	s->update_nchanges = (size_t)nidx;
	free(idx);
	s->update_silent = silent;
	s->update_uid = cmd->uid;
	imap_set_tag(s, cmd->tag);
	imap_update_start(s, IMAP_UPDATE_STORE);
}
