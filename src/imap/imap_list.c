/* imap_list: LIST and LSUB (RFC 3501 6.3.8-9) with LIST-EXTENDED (RFC 5258: selection options
 * SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE; return options SUBSCRIBED, CHILDREN,
 * SPECIAL-USE; several patterns; CHILDINFO), LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154).
 *
 * One LIST reads the account's mailbox rows (and subscriptions when asked) once; STATUS counts
 * for LIST-STATUS come from one aggregate query per listed mailbox (store_mailbox_counts), not
 * from reading the messages. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "imap/imap_private.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

#define IMAP_LIST_MAX 100000      /* mailbox names considered by one LIST */
#define IMAP_LIST_PATTERNS_MAX 32 /* patterns in one LIST-EXTENDED command */

/* --- the account's names --- */

struct imap_name {
	char *name; /* UTF-8 */
	char *wire; /* modified UTF-7 */
	char special_use[32];
	int64_t id;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	bool exists;   /* a mailbox (else only a parent of one, or a subscription) */
	bool children; /* some other name lies below it */
	bool subscribed;
	bool sub_children; /* some subscribed name lies below it */
};

struct imap_names {
	struct imap_name *v; /* in the order they were added: parents before children */
	size_t n, cap;
	struct hash *index; /* name -> (void *)(uintptr_t)(i + 1), i its place in v */
	bool overflow;
};

static struct imap_name *
imap_names_find(struct imap_names *names, const char *name)
{
	uintptr_t i;

	if (names->index == NULL)
		return NULL;
	i = (uintptr_t)hash_get_str(names->index, name);
	return i != 0 ? &names->v[i - 1] : NULL;
}

/* Adds name (after its parents, as names that do not exist) unless present. NULL when the
 * list is full or the name cannot be encoded. */
static struct imap_name *
imap_names_add(struct imap_names *names, const char *name)
{
	struct imap_name *nm = imap_names_find(names, name);
	char wire[IMAP_MAILBOX_WIRE_MAX];
	const char *slash = strrchr(name, '/');

	if (nm != NULL)
		return nm;
	if (slash != NULL && slash != name) {
		char *parent = xstrndup(name, (size_t)(slash - name));

		imap_names_add(names, parent);
		free(parent);
	}
	if (names->n >= IMAP_LIST_MAX || imap_utf7_encode(name, wire, sizeof(wire)) < 0) {
		names->overflow = true;
		return NULL;
	}
	array_grow((void **)&names->v, &names->cap, names->n + 1, sizeof(*names->v));
	if (names->index == NULL)
		names->index = hash_new();
	nm = &names->v[names->n++];
	*nm = (struct imap_name){.name = xstrdup(name), .wire = xstrdup(wire)};
	hash_put_str(names->index, name, (void *)(uintptr_t)names->n);
	return nm;
}

static void
imap_names_free(struct imap_names *names)
{
	for (size_t i = 0; i < names->n; i++) {
		free(names->v[i].name);
		free(names->v[i].wire);
	}
	free(names->v);
	hash_free(&names->index);
	*names = (struct imap_names){0};
}

static void
imap_names_mailbox(const struct store_mailbox *mbox, void *arg)
{
	struct imap_names *names = arg;
	struct imap_name *nm = imap_names_add(names, mbox->name);

	if (nm == NULL)
		return;
	nm->exists = true;
	nm->id = mbox->id;
	nm->uidvalidity = mbox->uidvalidity;
	nm->uidnext = mbox->uidnext;
	nm->highestmodseq = mbox->highestmodseq;
	str_copy(nm->special_use, mbox->special_use, sizeof(nm->special_use));
}

static void
imap_names_subscription(const char *name, void *arg)
{
	struct imap_names *names = arg;
	struct imap_name *nm = imap_names_add(names, name);

	if (nm != NULL)
		nm->subscribed = true;
}

/* Sets flag (children or sub_children) on every ancestor of the names for which pick is true. */
static void
imap_names_mark_parents(struct imap_names *names, bool sub)
{
	for (size_t i = 0; i < names->n; i++) {
		char *up;

		if (sub ? !names->v[i].subscribed : !names->v[i].exists)
			continue;
		up = xstrdup(names->v[i].name);
		for (char *slash = strrchr(up, '/'); slash != NULL && slash != up;
		     slash = strrchr(up, '/')) {
			struct imap_name *parent;

			*slash = '\0';
			if ((parent = imap_names_find(names, up)) == NULL)
				continue;
			if (sub)
				parent->sub_children = true;
			else
				parent->children = true;
		}
		free(up);
	}
}

/* Loads every mailbox (and, with subscriptions, every subscribed name) and marks children. */
static int
imap_names_load(struct imap_session *s, struct imap_names *names, bool subscriptions)
{
	if (store_mailbox_list(s->server->store, s->account_id, imap_names_mailbox, names) < 0)
		return -1;
	if (subscriptions && store_subscription_list(s->server->store, s->account_id,
	                                             imap_names_subscription, names) < 0)
		return -1;
	/* A parent counts as having children only through names that exist (RFC 3348). */
	imap_names_mark_parents(names, false);
	/* Parents of subscribed names, for LSUB's '%' rule (RFC 3501 6.3.9) and CHILDINFO. */
	if (subscriptions)
		imap_names_mark_parents(names, true);
	return 0;
}

/* --- matching --- */

/* IMAP LIST wildcards: '*' matches anything, '%' anything but the hierarchy delimiter. */
static bool
imap_list_match(const char *pattern, const char *name)
{
	for (; *pattern != '\0'; pattern++, name++) {
		if (*pattern == '*' || *pattern == '%') {
			for (const char *p = name;; p++) {
				if (imap_list_match(pattern + 1, p))
					return true;
				if (*p == '\0' || (*pattern == '%' && *p == '/'))
					return false;
			}
		}
		if (*name == '\0' || *pattern != *name)
			return false;
	}
	return *name == '\0';
}

static bool
imap_list_matches(const char *pattern, const char *name)
{
	if (strcmp(name, "INBOX") == 0)
		return imap_list_match(pattern, "INBOX") ||
		       (strncasecmp(pattern, "INBOX", 5) == 0 && imap_list_match(pattern + 5, ""));
	return imap_list_match(pattern, name);
}

/* --- the command --- */

struct imap_list_opts {
	bool lsub;
	bool extended; /* LIST-EXTENDED syntax: selection or return options, a pattern list */
	bool sel_subscribed, sel_recursive, sel_special;
	bool ret_subscribed, ret_special;
	const struct imap_arg *status; /* RETURN (STATUS (items)): the items, or NULL */
	size_t nstatus;
	char *patterns[IMAP_LIST_PATTERNS_MAX]; /* reference + pattern, malloc'd */
	size_t npatterns;
	bool empty_pattern; /* one pattern, given as "" (not in a list) */
};

/* Parses "(SUBSCRIBED REMOTE ...)". NULL, or the error text for BAD. */
static const char *
imap_list_parse_select(struct imap_list_opts *o, const struct imap_arg *list)
{
	bool other = false;

	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];

		if (imap_arg_atom_equals(a, "SUBSCRIBED"))
			o->sel_subscribed = other = true;
		else if (imap_arg_atom_equals(a, "SPECIAL-USE"))
			o->sel_special = other = true;
		else if (imap_arg_atom_equals(a, "RECURSIVEMATCH"))
			o->sel_recursive = true;
		else if (!imap_arg_atom_equals(a, "REMOTE")) /* no remote mailboxes here */
			return "Unknown LIST selection option";
	}
	/* RFC 5258 3.1: RECURSIVEMATCH needs a selection option it can apply to. */
	if (o->sel_recursive && !other)
		return "RECURSIVEMATCH needs another selection option";
	/* The SUBSCRIBED selection implies the SUBSCRIBED return option. */
	o->ret_subscribed = o->sel_subscribed;
	return NULL;
}

/* Parses the list after RETURN. NULL, or the error text for BAD. */
static const char *
imap_list_parse_return(struct imap_session *s, struct imap_list_opts *o,
                       const struct imap_arg *list)
{
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];

		if (imap_arg_atom_equals(a, "SUBSCRIBED")) {
			o->ret_subscribed = true;
		} else if (imap_arg_atom_equals(a, "SPECIAL-USE")) {
			o->ret_special = true;
		} else if (imap_arg_atom_equals(a, "CHILDREN")) {
			/* \HasChildren / \HasNoChildren are always sent (CHILDREN, RFC 3348). */
		} else if (imap_arg_atom_equals(a, "STATUS") && i + 1 < list->list_count &&
		           list->list[i + 1].type == IMAP_ARG_LIST &&
		           list->list[i + 1].list_count > 0 && o->status == NULL) {
			o->status = list->list[++i].list;
			o->nstatus = list->list[i].list_count;
		} else {
			return "Unknown LIST return option";
		}
	}
	return imap_status_items_check(s, o->status, o->nstatus);
}

static bool
imap_list_add_pattern(struct imap_list_opts *o, const char *ref, const struct imap_arg *arg)
{
	const char *pattern;

	if (!imap_arg_get_astring(arg, &pattern) || o->npatterns == IMAP_LIST_PATTERNS_MAX)
		return false;
	o->patterns[o->npatterns++] = xasprintf("%s%s", ref, pattern);
	return true;
}

/* Parses LIST [(selection)] reference (pattern | (patterns)) [RETURN (options)], or LSUB
 * reference pattern. NULL, or the error text for BAD. */
static const char *
imap_list_parse(struct imap_session *s, const struct imap_command *cmd, struct imap_list_opts *o)
{
	const struct imap_arg *args = cmd->args;
	size_t i = 0;
	const char *ref, *err;

	if (!o->lsub && cmd->nargs > 0 && args[0].type == IMAP_ARG_LIST) {
		o->extended = true;
		if ((err = imap_list_parse_select(o, &args[i++])) != NULL)
			return err;
	}
	if (i + 2 > cmd->nargs || !imap_arg_get_astring(&args[i++], &ref))
		return o->lsub ? "syntax: LSUB reference pattern"
		               : "syntax: LIST reference pattern";
	if (!o->lsub && args[i].type == IMAP_ARG_LIST) {
		o->extended = true;
		if (args[i].list_count == 0)
			return "Empty pattern list";
		for (size_t k = 0; k < args[i].list_count; k++)
			if (!imap_list_add_pattern(o, ref, &args[i].list[k]))
				return "Invalid pattern list";
	} else if (!imap_list_add_pattern(o, ref, &args[i])) {
		return "Invalid pattern";
	} else {
		o->empty_pattern = args[i].len == 0;
	}
	i++;
	if (i == cmd->nargs)
		return NULL;
	if (o->lsub || i + 2 != cmd->nargs || !imap_arg_atom_equals(&args[i], "RETURN") ||
	    args[i + 1].type != IMAP_ARG_LIST)
		return "syntax: LIST [(options)] reference pattern [RETURN (options)]";
	o->extended = true;
	return imap_list_parse_return(s, o, &args[i + 1]);
}

static void
imap_list_opts_free(struct imap_list_opts *o)
{
	for (size_t i = 0; i < o->npatterns; i++)
		free(o->patterns[i]);
	o->npatterns = 0;
}

/* The name as this session sees it on the wire: UTF-8 after ENABLE UTF8=ACCEPT. */
static const char *
imap_name_spelling(const struct imap_session *s, const struct imap_name *nm)
{
	return s->utf8 ? nm->name : nm->wire;
}

static bool
imap_list_any_match(const struct imap_session *s, const struct imap_list_opts *o,
                    const struct imap_name *nm)
{
	for (size_t i = 0; i < o->npatterns; i++)
		if (imap_list_matches(o->patterns[i], imap_name_spelling(s, nm)))
			return true;
	return false;
}

/* Writes "* STATUS name (items)" for a listed mailbox (RFC 5819). false when the store
 * cannot be read. */
static bool
imap_list_write_status(struct imap_session *s, const struct imap_list_opts *o,
                       const struct imap_name *nm)
{
	struct store_mailbox mbox = {.id = nm->id,
	                             .uidvalidity = nm->uidvalidity,
	                             .uidnext = nm->uidnext,
	                             .highestmodseq = nm->highestmodseq};

	return imap_status_write(s, nm->name, &mbox, o->status, o->nstatus) == 0;
}

/* Appends " word" to the attribute list in buf. */
static void
imap_attr_add(char *buf, size_t size, const char *word)
{
	size_t len = strlen(buf);

	snprintf(buf + len, size - len, " %s", word);
}

/* Writes one LIST response for nm if the selection takes it. */
static void
imap_list_one(struct imap_session *s, const struct imap_list_opts *o, const struct imap_name *nm)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	/* RECURSIVEMATCH: a name that fails the selection but has a subscribed descendant is
	 * listed with CHILDINFO (RFC 5258 3.5). */
	bool childinfo = o->sel_recursive && o->sel_subscribed && nm->sub_children;
	char attrs[128] = "";

	if (o->sel_subscribed && !nm->subscribed && !childinfo)
		return;
	if (o->sel_special && (!nm->exists || nm->special_use[0] == '\0'))
		return;
	if (!o->sel_subscribed && !nm->exists && !nm->children)
		return; /* only a subscription */
	if (!nm->exists)
		imap_attr_add(attrs, sizeof(attrs), nm->children ? "\\Noselect" : "\\NonExistent");
	imap_attr_add(attrs, sizeof(attrs), nm->children ? "\\HasChildren" : "\\HasNoChildren");
	if (o->ret_subscribed && nm->subscribed)
		imap_attr_add(attrs, sizeof(attrs), "\\Subscribed");
	if (nm->exists && nm->special_use[0] != '\0')
		imap_attr_add(attrs, sizeof(attrs), nm->special_use);
	evbuffer_add_printf(out, "* LIST (%s) \"/\" ", attrs + 1);
	imap_write_mailbox(s, nm->name);
	if (childinfo)
		evbuffer_add_printf(out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	evbuffer_add(out, "\r\n", 2);
	if (o->status != NULL && nm->exists && !imap_list_write_status(s, o, nm))
		log_warnx("imap session=%s event=list-status result=failed", s->conn.id);
}

/* LSUB: subscribed names; a parent of subscribed names only when '%' ends the pattern, as
 * \Noselect (RFC 3501 6.3.9). */
static void
imap_lsub_one(struct imap_session *s, const char *pattern, const struct imap_name *nm)
{
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	bool parent = !nm->subscribed && nm->sub_children && pattern[strlen(pattern) - 1] == '%';

	if (!nm->subscribed && !parent)
		return;
	evbuffer_add_printf(out, "* LSUB (%s) \"/\" ", parent || !nm->exists ? "\\Noselect" : "");
	imap_write_mailbox(s, nm->name);
	evbuffer_add(out, "\r\n", 2);
}

void
imap_cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_list_opts o = {.lsub = strcmp(cmd->name, "LSUB") == 0};
	struct imap_names names = {0};
	const char *err = imap_list_parse(s, cmd, &o);

	if (err != NULL) {
		imap_list_opts_free(&o);
		imap_bad(s, cmd->tag, err);
		return;
	}
	if (o.empty_pattern && !o.sel_subscribed && !o.sel_special) {
		/* RFC 3501 6.3.8: the empty pattern asks for the delimiter and the reference's
		 * root. */
		if (!o.lsub)
			imap_reply(s, "* LIST (\\Noselect) \"/\" \"\"");
		imap_list_opts_free(&o);
		imap_reply(s, "%s OK %s completed", cmd->tag, cmd->name);
		return;
	}
	if (imap_names_load(s, &names, o.lsub || o.sel_subscribed || o.ret_subscribed) < 0) {
		imap_names_free(&names);
		imap_list_opts_free(&o);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot list mailboxes", cmd->tag);
		return;
	}
	for (size_t i = 0; i < names.n; i++) {
		if (!imap_list_any_match(s, &o, &names.v[i]))
			continue;
		if (o.lsub)
			imap_lsub_one(s, o.patterns[0], &names.v[i]);
		else
			imap_list_one(s, &o, &names.v[i]);
	}
	if (names.overflow)
		log_warnx("imap session=%s event=list-truncated max=%d", s->conn.id, IMAP_LIST_MAX);
	imap_names_free(&names);
	imap_list_opts_free(&o);
	imap_reply(s, "%s OK %s completed", cmd->tag, cmd->name);
}
