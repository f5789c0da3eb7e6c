/* notify: subscriptions by account id (lib/hash), dispatched synchronously on the loop thread. */
#include "notify/notify.h"

#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"

/* The subscriptions of one account (or, for hub->all, of every account), in subscription order. */
struct notify_account {
	int64_t account_id;
	struct notify_sub *head, *tail;
	size_t nlive; /* subscriptions not yet unsubscribed */
};

struct notify_sub {
	struct notify_hub *hub;
	struct notify_account *account;
	int64_t mailbox_id;
	unsigned kinds; /* NOTIFY_KIND_BIT()s delivered */
	notify_cb *cb;  /* NULL once unsubscribed while a dispatch may still walk past it */
	void *arg;
	uint64_t since; /* events with seq <= since were published before this subscription */
	struct notify_sub *prev, *next;
	struct notify_sub *dead_next; /* in hub->dead, waiting for the dispatch to end */
};

struct notify_hub {
	struct hash *accounts;     /* account id -> struct notify_account */
	struct notify_account all; /* account_id 0: every account */
	size_t nlive;
	uint64_t seq;
	unsigned depth;          /* nested notify_publish calls running */
	struct notify_sub *dead; /* unsubscribed during a dispatch, freed when it ends */
};

struct notify_hub *
notify_hub_new(void)
{
	struct notify_hub *hub = xcalloc(1, sizeof(*hub));

	hub->accounts = hash_new();
	return hub;
}

static void
notify_free_list(struct notify_account *acct)
{
	struct notify_sub *sub, *next;

	for (sub = acct->head; sub != NULL; sub = next) {
		next = sub->next;
		free(sub);
	}
	acct->head = acct->tail = NULL;
}

static bool
notify_account_free(const void *key, size_t keylen, void *value, void *arg)
{
	notify_free_list(value);
	free(value);
	return true;
}

void
notify_hub_free(struct notify_hub **hubp)
{
	struct notify_hub *hub = *hubp;

	if (hub == NULL)
		return;
	if (hub->depth > 0)
		fatalx("notify event=free-during-dispatch");
	if (hub->nlive > 0)
		log_warnx("notify event=free-with-subscribers count=%zu", hub->nlive);
	hash_foreach(hub->accounts, notify_account_free, NULL);
	hash_free(&hub->accounts);
	notify_free_list(&hub->all);
	free(hub);
	*hubp = NULL;
}

static struct notify_account *
notify_account_find(const struct notify_hub *hub, int64_t account_id)
{
	return hash_get_int(hub->accounts, account_id);
}

static struct notify_account *
notify_account_get(struct notify_hub *hub, int64_t account_id)
{
	struct notify_account *acct;

	if (account_id == 0)
		return &hub->all;
	acct = notify_account_find(hub, account_id);
	if (acct != NULL)
		return acct;
	acct = xcalloc(1, sizeof(*acct));
	acct->account_id = account_id;
	hash_put_int(hub->accounts, account_id, acct);
	return acct;
}

/* Removes an account entry once its last subscription is gone, so idle accounts cost nothing. */
static void
notify_account_drop_if_empty(struct notify_hub *hub, struct notify_account *acct)
{
	if (acct == &hub->all || acct->head != NULL)
		return;
	hash_remove_int(hub->accounts, acct->account_id);
	free(acct);
}

struct notify_sub *
notify_subscribe(struct notify_hub *hub, int64_t account_id, int64_t mailbox_id, notify_cb *cb,
                 void *arg)
{
	return notify_subscribe_kinds(hub, account_id, mailbox_id, NOTIFY_KINDS_DEFAULT, cb, arg);
}

struct notify_sub *
notify_subscribe_kinds(struct notify_hub *hub, int64_t account_id, int64_t mailbox_id,
                       unsigned kinds, notify_cb *cb, void *arg)
{
	struct notify_sub *sub = xcalloc(1, sizeof(*sub));
	struct notify_account *acct = notify_account_get(hub, account_id);

	sub->hub = hub;
	sub->account = acct;
	sub->mailbox_id = mailbox_id;
	sub->kinds = kinds;
	sub->cb = cb;
	sub->arg = arg;
	sub->since = hub->seq;
	sub->prev = acct->tail;
	if (acct->tail != NULL)
		acct->tail->next = sub;
	else
		acct->head = sub;
	acct->tail = sub;
	acct->nlive++;
	hub->nlive++;
	return sub;
}

static void
notify_unlink(struct notify_sub *sub)
{
	struct notify_account *acct = sub->account;

	if (sub->prev != NULL)
		sub->prev->next = sub->next;
	else
		acct->head = sub->next;
	if (sub->next != NULL)
		sub->next->prev = sub->prev;
	else
		acct->tail = sub->prev;
	notify_account_drop_if_empty(sub->hub, acct);
	free(sub);
}

void
notify_unsubscribe(struct notify_sub **subp)
{
	struct notify_sub *sub = *subp;
	struct notify_hub *hub;

	if (sub == NULL)
		return;
	*subp = NULL;
	hub = sub->hub;
	sub->cb = NULL;
	sub->account->nlive--;
	hub->nlive--;
	if (hub->depth > 0) {
		/* A dispatch may be standing on this entry or about to step to it: keep it linked
		 * (silent) until the outermost dispatch ends. */
		sub->dead_next = hub->dead;
		hub->dead = sub;
		return;
	}
	notify_unlink(sub);
}

/* Calls the matching live subscriptions of one list; new entries appended meanwhile are walked
 * but skipped by their since stamp. */
static void
notify_dispatch(struct notify_account *acct, const struct notify_event *ev)
{
	for (struct notify_sub *sub = acct->head; sub != NULL; sub = sub->next) {
		if (sub->cb == NULL || sub->since >= ev->seq ||
		    (sub->kinds & NOTIFY_KIND_BIT(ev->kind)) == 0)
			continue;
		if (sub->mailbox_id != 0 && sub->mailbox_id != ev->mailbox_id)
			continue;
		sub->cb(ev, sub->arg);
	}
}

uint64_t
notify_publish(struct notify_hub *hub, const struct notify_event *event)
{
	struct notify_event ev = *event;
	struct notify_account *acct;

	ev.seq = ++hub->seq;
	hub->depth++;
	acct = notify_account_find(hub, ev.account_id);
	if (acct != NULL)
		notify_dispatch(acct, &ev);
	notify_dispatch(&hub->all, &ev);
	if (--hub->depth == 0) {
		while (hub->dead != NULL) {
			struct notify_sub *sub = hub->dead;
			hub->dead = sub->dead_next;
			notify_unlink(sub);
		}
	}
	return ev.seq;
}

bool
notify_has_subscribers(const struct notify_hub *hub, int64_t account_id)
{
	const struct notify_account *acct;

	if (hub->all.nlive > 0)
		return true;
	acct = notify_account_find(hub, account_id);
	return acct != NULL && acct->nlive > 0;
}

size_t
notify_subscriber_count(const struct notify_hub *hub)
{
	return hub->nlive;
}

void
notify_copy_text(char *dst, size_t dstsize, const char *src)
{
	size_t n;

	if (dstsize == 0)
		return;
	if (src == NULL)
		src = "";
	n = strlen(src);
	if (n >= dstsize) {
		n = dstsize - 1;
		/* Back off over continuation bytes so a multi-byte character is not cut. */
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}
