/* imap_thread: THREAD (see imap_thread.h). The REFERENCES steps are numbered as in RFC 5256
 * section 3. */
#include "imap/imap_thread.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <glib.h>

#include "imap/imap_private.h"
#include "imap/imap_sort.h"
#include "lib/log.h"
#include "lib/util.h"

/* The deepest thread built (see thread_cut), and the most ancestors looked at for a loop. */
#define THREAD_DEPTH_MAX 1000
#define THREAD_WALK_MAX 4096

/* A container (RFC 5256 3 (1)): a message, or a dummy (msg NULL) for a referenced Message-ID
 * that is not among the messages. */
struct tnode {
	const struct imap_thread_msg *msg;
	long depth; /* thread_cut: parents above it, -1 unknown */
	struct tnode *parent;
	struct tnode *child; /* first child */
	struct tnode *next;  /* next sibling */
};

struct thread_ctx {
	struct tnode **nodes; /* every container, to free */
	size_t nnodes, cap;
	GHashTable *ids; /* Message-ID -> container */
};

static struct tnode *
thread_node(struct thread_ctx *t, const struct imap_thread_msg *msg)
{
	struct tnode *n = xcalloc(1, sizeof(*n));

	if (t->nnodes == t->cap) {
		t->cap = t->cap == 0 ? 64 : t->cap * 2;
		t->nodes = xrealloc(t->nodes, t->cap * sizeof(*t->nodes));
	}
	t->nodes[t->nnodes++] = n;
	n->msg = msg;
	return n;
}

static void
thread_unlink(struct tnode *n)
{
	struct tnode **pp;

	if (n->parent == NULL)
		return;
	for (pp = &n->parent->child; *pp != NULL; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	n->parent = NULL;
	n->next = NULL;
}

/* Makes child the last child of parent (child has no parent). */
static void
thread_adopt(struct tnode *parent, struct tnode *child)
{
	struct tnode **pp = &parent->child;

	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = child;
	child->parent = parent;
	child->next = NULL;
}

/* Whether a is b or one of b's ancestors (linking a under b would make a loop). Past
 * THREAD_WALK_MAX ancestors it answers yes: the link is not made, which bounds the work a
 * hostile set of References can cause. */
static bool
thread_is_ancestor(const struct tnode *a, const struct tnode *b)
{
	for (unsigned steps = 0; b != NULL; b = b->parent, steps++)
		if (a == b || steps > THREAD_WALK_MAX)
			return true;
	return false;
}

/* Cuts the trees so that none is deeper than THREAD_DEPTH_MAX: a container at a depth that is
 * a multiple of it becomes a root. Chains built bottom-up (each message referring to a later
 * one) pass thread_is_ancestor's bound; the later steps recurse by depth. */
static void
thread_cut(struct thread_ctx *t)
{
	struct tnode **path = xcalloc(t->nnodes + 1, sizeof(*path));

	for (size_t i = 0; i < t->nnodes; i++)
		t->nodes[i]->depth = -1;
	for (size_t i = 0; i < t->nnodes; i++) {
		struct tnode *n = t->nodes[i];
		size_t len = 0;
		long d;

		/* Up to a container of known depth (or a root), then down again. */
		while (n->depth < 0 && n->parent != NULL) {
			path[len++] = n;
			n = n->parent;
		}
		if (n->depth < 0)
			n->depth = 0;
		d = n->depth;
		while (len > 0)
			path[--len]->depth = ++d;
	}
	free(path);
	for (size_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i]->depth > 0 && t->nodes[i]->depth % THREAD_DEPTH_MAX == 0)
			thread_unlink(t->nodes[i]);
}

/* The container of a referenced Message-ID, a dummy when it is new. */
static struct tnode *
thread_ref(struct thread_ctx *t, const char *id)
{
	struct tnode *n = g_hash_table_lookup(t->ids, id);

	if (n == NULL) {
		n = thread_node(t, NULL);
		g_hash_table_insert(t->ids, (gpointer)id, n);
	}
	return n;
}

/* (1) The containers and their parent/child links from the references. */
static void
thread_link(struct thread_ctx *t, const struct imap_thread_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct imap_thread_msg *m = &msgs[i];
		struct tnode *c = NULL, *prev = NULL;

		if (m->message_id != NULL) {
			c = g_hash_table_lookup(t->ids, m->message_id);
			if (c == NULL) {
				c = thread_node(t, m);
				g_hash_table_insert(t->ids, (gpointer)m->message_id, c);
			} else if (c->msg == NULL) {
				c->msg = m;
			} else {
				c = NULL; /* a duplicate Message-ID: as if it had none */
			}
		}
		if (c == NULL)
			c = thread_node(t, m);
		/* (1.A) Link the references in order; an existing parent stays, no loops. */
		for (size_t r = 0; r < m->nrefs; r++) {
			struct tnode *ref = thread_ref(t, m->refs[r]);

			if (prev != NULL && ref->parent == NULL && !thread_is_ancestor(ref, prev))
				thread_adopt(prev, ref);
			prev = ref;
		}
		/* (1.B) The last reference is the message's parent, replacing any it had. */
		if (prev != NULL && thread_is_ancestor(c, prev))
			continue;
		thread_unlink(c);
		if (prev != NULL)
			thread_adopt(prev, c);
	}
}

/* (3) Prunes dummies below parent (NULL: the root set, given as *list). */
static void
thread_prune(struct tnode **list, struct tnode *parent)
{
	struct tnode **pp = list;

	while (*pp != NULL) {
		struct tnode *c = *pp;

		thread_prune(&c->child, c);
		if (c->msg != NULL) {
			pp = &c->next;
			continue;
		}
		if (c->child == NULL) { /* (3.A) a dummy without children goes */
			*pp = c->next;
			continue;
		}
		/* (3.B) a dummy's children take its place, except at the root with several. */
		if (parent == NULL && c->child->next != NULL) {
			pp = &c->next;
			continue;
		}
		struct tnode *last = c->child;

		for (struct tnode *k = c->child; k != NULL; k = k->next) {
			k->parent = parent;
			last = k;
		}
		last->next = c->next;
		*pp = c->child;
		c->child = NULL;
		/* The promoted children were pruned already: go on after them. */
		pp = &last->next;
	}
}

/* A container's date and order for sorting: a dummy's are its first child's. */
static const struct imap_thread_msg *
thread_first_msg(const struct tnode *n)
{
	while (n != NULL && n->msg == NULL)
		n = n->child;
	return n != NULL ? n->msg : NULL;
}

static int
thread_cmp_date(const void *pa, const void *pb)
{
	const struct imap_thread_msg *a = thread_first_msg(*(struct tnode *const *)pa);
	const struct imap_thread_msg *b = thread_first_msg(*(struct tnode *const *)pb);

	if (a == NULL || b == NULL)
		return (a == NULL) - (b == NULL);
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Sorts the sibling list *list by date; with deep, every level below first (6). */
static void
thread_sort(struct tnode **list, bool deep)
{
	struct tnode **arr = NULL;
	size_t n = 0, cap = 0;

	for (struct tnode *c = *list; c != NULL; c = c->next) {
		if (deep)
			thread_sort(&c->child, true);
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			arr = xrealloc(arr, cap * sizeof(*arr));
		}
		arr[n++] = c;
	}
	if (n > 1) {
		qsort(arr, n, sizeof(*arr), thread_cmp_date);
		for (size_t i = 0; i + 1 < n; i++)
			arr[i]->next = arr[i + 1];
		arr[n - 1]->next = NULL;
		*list = arr[0];
	}
	free(arr);
}

/* (5) Gathers root containers with the same base subject. */
static void
thread_subjects(struct thread_ctx *t, struct tnode **root)
{
	GHashTable *subj = g_hash_table_new(g_str_hash, g_str_equal);
	struct tnode **pp;

	/* (5.B) The table: a dummy beats a message, a non-reply beats a reply. */
	for (struct tnode *c = *root; c != NULL; c = c->next) {
		const struct imap_thread_msg *m = thread_first_msg(c);
		struct tnode *old;

		if (m == NULL || m->subject[0] == '\0')
			continue;
		old = g_hash_table_lookup(subj, m->subject);
		if (old == NULL || (c->msg == NULL && old->msg != NULL) ||
		    (old->msg != NULL && old->msg->reply && c->msg != NULL && !c->msg->reply))
			g_hash_table_insert(subj, (gpointer)m->subject, c);
	}
	/* (5.C) Merges each root container with the table's. */
	pp = root;
	while (*pp != NULL) {
		struct tnode *c = *pp, *old;
		const struct imap_thread_msg *m = thread_first_msg(c);

		if (m == NULL || m->subject[0] == '\0' ||
		    (old = g_hash_table_lookup(subj, m->subject)) == NULL || old == c) {
			pp = &c->next;
			continue;
		}
		*pp = c->next; /* out of the root set */
		c->next = NULL;
		if (old->msg == NULL && c->msg == NULL) {
			/* Both dummies: the current one's children join the table's. */
			while (c->child != NULL) {
				struct tnode *k = c->child;

				c->child = k->next;
				thread_adopt(old, k);
			}
		} else if (old->msg == NULL ||
		           (c->msg != NULL && c->msg->reply && !old->msg->reply)) {
			thread_adopt(old, c);
		} else {
			/* Neither is the other's reply: siblings under a new dummy, which takes
			 * old's place (old's contents move to a new container). */
			struct tnode *copy = thread_node(t, old->msg);

			copy->child = old->child;
			for (struct tnode *k = copy->child; k != NULL; k = k->next)
				k->parent = copy;
			old->msg = NULL;
			old->child = NULL;
			thread_adopt(old, copy);
			thread_adopt(old, c);
		}
	}
	g_hash_table_destroy(subj);
}

/* Writes one thread's members: "1 2 (3)(4)". */
static void
thread_write(GString *out, const struct tnode *n)
{
	bool space = false;

	while (n != NULL) {
		if (n->msg != NULL) {
			g_string_append_printf(out, "%s%u", space ? " " : "", n->msg->id);
			space = true;
		}
		if (n->child == NULL)
			return;
		if (n->child->next == NULL) {
			n = n->child;
			continue;
		}
		if (space)
			g_string_append_c(out, ' ');
		for (const struct tnode *k = n->child; k != NULL; k = k->next) {
			g_string_append_c(out, '(');
			thread_write(out, k);
			g_string_append_c(out, ')');
		}
		return;
	}
}

static struct tnode *
thread_references(struct thread_ctx *t, const struct imap_thread_msg *msgs, size_t n)
{
	struct tnode *root = NULL, **tail = &root;

	thread_link(t, msgs, n);
	thread_cut(t);
	/* (2) The root set: containers without a parent. */
	for (size_t i = 0; i < t->nnodes; i++) {
		if (t->nodes[i]->parent != NULL)
			continue;
		*tail = t->nodes[i];
		tail = &t->nodes[i]->next;
	}
	*tail = NULL;
	thread_prune(&root, NULL);
	/* (4) The root set by date (a dummy by its first child's, its children sorted). */
	for (struct tnode *c = root; c != NULL; c = c->next)
		if (c->msg == NULL)
			thread_sort(&c->child, false);
	thread_sort(&root, false);
	thread_subjects(t, &root);
	/* (6) Every level by date, the deepest first, the root set last. */
	thread_sort(&root, true);
	return root;
}

static int
thread_cmp_subject(const void *pa, const void *pb)
{
	const struct tnode *a = *(struct tnode *const *)pa, *b = *(struct tnode *const *)pb;
	int r = strcmp(a->msg->subject, b->msg->subject);

	return r != 0 ? r : thread_cmp_date(pa, pb);
}

/* ORDEREDSUBJECT: by base subject then date; each subject's first message is the parent of the
 * others; threads by their first message's date. */
static struct tnode *
thread_ordered_subject(struct thread_ctx *t, const struct imap_thread_msg *msgs, size_t n)
{
	struct tnode **arr = xcalloc(n + 1, sizeof(*arr)), *root = NULL, *top = NULL;

	for (size_t i = 0; i < n; i++)
		arr[i] = thread_node(t, &msgs[i]);
	qsort(arr, n, sizeof(*arr), thread_cmp_subject);
	for (size_t i = 0; i < n; i++) {
		if (top != NULL && strcmp(top->msg->subject, arr[i]->msg->subject) == 0) {
			thread_adopt(top, arr[i]);
			continue;
		}
		top = arr[i];
		top->next = root;
		root = top;
	}
	free(arr);
	thread_sort(&root, false);
	return root;
}

char *
imap_thread_build(enum imap_thread_algo algo, const struct imap_thread_msg *msgs, size_t n)
{
	struct thread_ctx t = {NULL, 0, 0, g_hash_table_new(g_str_hash, g_str_equal)};
	struct tnode *root;
	GString *out = g_string_new(NULL);
	char *res;

	if (algo == IMAP_THREAD_REFERENCES)
		root = thread_references(&t, msgs, n);
	else
		root = thread_ordered_subject(&t, msgs, n);
	for (struct tnode *c = root; c != NULL; c = c->next) {
		g_string_append_c(out, '(');
		thread_write(out, c);
		g_string_append_c(out, ')');
	}
	res = xstrdup(out->str);
	g_string_free(out, TRUE);
	for (size_t i = 0; i < t.nnodes; i++)
		free(t.nodes[i]);
	free(t.nodes);
	g_hash_table_destroy(t.ids);
	return res;
}

/* ---- the command ---- */

struct thread_cmd {
	enum imap_thread_algo algo;
	bool uid;
};

static void
thread_reply(struct imap_session *s, const char *tag, uint32_t nmsgs, const bool *match,
             void *const *data, void *arg)
{
	struct thread_cmd *cmd = arg;
	struct imap_thread_msg *msgs = xcalloc(nmsgs + 1, sizeof(*msgs));
	struct evbuffer *out = bufferevent_get_output(s->conn.bev);
	size_t n = 0;
	char *threads;

	for (uint32_t i = 0; i < nmsgs; i++) {
		const struct imap_sort_msg *d = data != NULL ? data[i] : NULL;
		struct imap_thread_msg *m = &msgs[n];

		if (!match[i])
			continue;
		m->id = cmd->uid ? s->msgs[i].uid : i + 1;
		m->seq = i + 1;
		/* RFC 5256 2.2: without a valid Date: the internal date. */
		m->date = d != NULL && d->has_date ? d->date : s->msgs[i].internal_date;
		m->subject = d != NULL ? d->subject : "";
		if (d != NULL) {
			m->reply = d->reply;
			m->message_id = d->message_id;
			m->refs = d->refs;
			m->nrefs = d->nrefs;
		}
		n++;
	}
	threads = imap_thread_build(cmd->algo, msgs, n);
	/* RFC 5256 thread-data: "THREAD" [SP 1*thread-list], no space when nothing matched. */
	evbuffer_add_printf(out, "* THREAD%s%s\r\n", threads[0] != '\0' ? " " : "", threads);
	log_debug("imap session=%s event=thread messages=%u matched=%zu", s->conn.id, nmsgs, n);
	free(threads);
	free(msgs);
	imap_reply(s, "%s OK %sTHREAD completed", tag, cmd->uid ? "UID " : "");
}

static const struct imap_search_reader thread_reader = {imap_sort_reader_read, thread_reply,
                                                        imap_sort_reader_free, free};
static const struct imap_search_reader thread_reader_refs = {
    imap_sort_reader_read_refs, thread_reply, imap_sort_reader_free, free};

void
imap_cmd_thread(struct imap_session *s, const struct imap_command *cmd)
{
	struct thread_cmd *tc;
	const char *cs;

	if (s->conn.closing)
		return;
	if (cmd->nargs < 3 || !imap_arg_get_astring(&cmd->args[1], &cs)) {
		imap_bad(s, cmd->tag, "syntax: THREAD algorithm charset keys");
		return;
	}
	tc = xcalloc(1, sizeof(*tc));
	tc->uid = cmd->uid;
	if (imap_arg_atom_equals(&cmd->args[0], "REFERENCES")) {
		tc->algo = IMAP_THREAD_REFERENCES;
	} else if (imap_arg_atom_equals(&cmd->args[0], "ORDEREDSUBJECT")) {
		tc->algo = IMAP_THREAD_ORDEREDSUBJECT;
	} else {
		free(tc);
		imap_bad(s, cmd->tag, "Unknown THREAD algorithm (ORDEREDSUBJECT REFERENCES)");
		return;
	}
	if (imap_search_charset_check(s, cmd->tag, cs) < 0) {
		free(tc);
		return;
	}
	imap_search_run(s, cmd, 2,
	                tc->algo == IMAP_THREAD_REFERENCES ? &thread_reader_refs : &thread_reader,
	                tc);
}
