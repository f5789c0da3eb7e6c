/* Unit tests for the notify hub: filters, re-entrancy from callbacks, no loss and no cross-talk. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "deliver/deliver.h"
#include "lib/config.h"
#include "lib/util.h"
#include "mime/summary.h"
#include "notify/notify.h"
#include "store/store.h"

/* What one subscriber saw. */
struct seen {
	int count;
	int wrong; /* events outside the subscriber's filter */
	int64_t account_id, mailbox_id;
	uint64_t last_seq;
	int unordered;
	struct notify_event last;
};

static void
on_event(const struct notify_event *ev, void *arg)
{
	struct seen *s = arg;

	s->count++;
	if (ev->account_id != s->account_id ||
	    (s->mailbox_id != 0 && ev->mailbox_id != s->mailbox_id))
		s->wrong++;
	if (ev->seq <= s->last_seq)
		s->unordered++;
	s->last_seq = ev->seq;
	s->last = *ev;
}

static uint64_t
publish(struct notify_hub *hub, enum notify_kind kind, int64_t account_id, int64_t mailbox_id,
        uint32_t uid)
{
	struct notify_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.account_id = account_id;
	ev.mailbox_id = mailbox_id;
	ev.uid = uid;
	return notify_publish(hub, &ev);
}

static void
test_subscribe_publish_unsubscribe(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen s = {.account_id = 7};
	struct notify_sub *sub = notify_subscribe(hub, 7, 0, on_event, &s);
	struct notify_event ev;

	assert_int_equal(notify_subscriber_count(hub), 1);
	assert_true(notify_has_subscribers(hub, 7));
	assert_false(notify_has_subscribers(hub, 8));
	memset(&ev, 0, sizeof(ev));
	ev.kind = NOTIFY_NEW;
	ev.account_id = 7;
	ev.mailbox_id = 70;
	ev.uid = 12;
	ev.size = 1234;
	notify_copy_text(ev.subject, sizeof(ev.subject), "hello");
	notify_copy_text(ev.from, sizeof(ev.from), "Ann <ann@example.org>");
	notify_publish(hub, &ev);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.last.kind, NOTIFY_NEW);
	assert_int_equal(s.last.uid, 12);
	assert_int_equal(s.last.size, 1234);
	assert_string_equal(s.last.subject, "hello");
	assert_string_equal(s.last.from, "Ann <ann@example.org>");
	assert_int_equal(ev.seq, 0); /* the publisher's copy is left alone */

	publish(hub, NOTIFY_EXPUNGE, 8, 80, 1); /* another account */
	assert_int_equal(s.count, 1);

	notify_unsubscribe(&sub);
	assert_null(sub);
	notify_unsubscribe(&sub); /* NULL is ignored */
	assert_int_equal(notify_subscriber_count(hub), 0);
	assert_false(notify_has_subscribers(hub, 7));
	publish(hub, NOTIFY_FLAGS, 7, 70, 12);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.wrong, 0);
	notify_hub_free(&hub);
	assert_null(hub);
}

static void
test_mailbox_filter_and_whole_account(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen inbox = {.account_id = 1, .mailbox_id = 10};
	struct seen junk = {.account_id = 1, .mailbox_id = 11};
	struct seen whole = {.account_id = 1};
	struct notify_sub *a = notify_subscribe(hub, 1, 10, on_event, &inbox);
	struct notify_sub *b = notify_subscribe(hub, 1, 11, on_event, &junk);
	struct notify_sub *c = notify_subscribe(hub, 1, 0, on_event, &whole);

	publish(hub, NOTIFY_NEW, 1, 10, 1);
	publish(hub, NOTIFY_NEW, 1, 10, 2);
	publish(hub, NOTIFY_NEW, 1, 11, 1);
	publish(hub, NOTIFY_NEW, 1, 12, 1);
	publish(hub, NOTIFY_NEW, 2, 10, 1); /* same mailbox id, other account: nobody */
	assert_int_equal(inbox.count, 2);
	assert_int_equal(junk.count, 1);
	assert_int_equal(whole.count, 4);
	assert_int_equal(inbox.wrong + junk.wrong + whole.wrong, 0);
	notify_unsubscribe(&a);
	notify_unsubscribe(&b);
	notify_unsubscribe(&c);
	notify_hub_free(&hub);
}

static int every_count;

static void
on_every(const struct notify_event *ev, void *arg)
{
	every_count++;
}

static void
test_every_account_subscriber(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct notify_sub *sub;

	every_count = 0;
	assert_false(notify_has_subscribers(hub, 5));
	sub = notify_subscribe(hub, 0, 0, on_every, NULL);
	assert_true(notify_has_subscribers(hub, 5));
	publish(hub, NOTIFY_NEW, 5, 1, 1);
	publish(hub, NOTIFY_NEW, 6, 2, 1);
	assert_int_equal(every_count, 2);
	notify_unsubscribe(&sub);
	assert_false(notify_has_subscribers(hub, 5));
	notify_hub_free(&hub);
}

/* A subscriber that acts on the hub from inside its callback. */
struct actor {
	struct notify_hub *hub;
	struct notify_sub *self;
	struct notify_sub **victim; /* unsubscribed at the first event */
	struct seen *child_seen;    /* subscribed at the first event */
	struct notify_sub *child;
	int count;
};

static void
on_actor(const struct notify_event *ev, void *arg)
{
	struct actor *a = arg;

	a->count++;
	if (a->victim != NULL) {
		notify_unsubscribe(a->victim);
		a->victim = NULL;
	}
	if (a->child_seen != NULL && a->child == NULL) {
		a->child = notify_subscribe(a->hub, ev->account_id, 0, on_event, a->child_seen);
		/* Enough new accounts to make the table grow in the middle of a dispatch. */
		for (int64_t id = 1000; id < 1300; id++) {
			struct notify_sub *tmp = notify_subscribe(a->hub, id, 0, on_every, NULL);
			notify_unsubscribe(&tmp);
		}
	}
}

static void
test_unsubscribe_self_in_callback(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct actor a = {.hub = hub};
	struct seen after = {.account_id = 3};
	struct notify_sub *other;

	a.self = notify_subscribe(hub, 3, 0, on_actor, &a);
	a.victim = &a.self;
	other = notify_subscribe(hub, 3, 0, on_event, &after);
	publish(hub, NOTIFY_NEW, 3, 1, 1);
	assert_null(a.self);
	assert_int_equal(a.count, 1);
	assert_int_equal(after.count, 1); /* the next one in the list still got it */
	publish(hub, NOTIFY_NEW, 3, 1, 2);
	assert_int_equal(a.count, 1);
	assert_int_equal(after.count, 2);
	assert_int_equal(notify_subscriber_count(hub), 1);
	notify_unsubscribe(&other);
	notify_hub_free(&hub);
}

static void
test_unsubscribe_another_in_callback(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen before = {.account_id = 3}, later = {.account_id = 3};
	struct notify_sub *first = notify_subscribe(hub, 3, 0, on_event, &before);
	struct actor a = {.hub = hub};
	struct notify_sub *next;

	a.self = notify_subscribe(hub, 3, 0, on_actor, &a);
	next = notify_subscribe(hub, 3, 0, on_event, &later);
	a.victim = &next; /* later in the list: must not see the event being dispatched */
	publish(hub, NOTIFY_NEW, 3, 1, 1);
	assert_null(next);
	assert_int_equal(before.count, 1);
	assert_int_equal(later.count, 0);

	a.victim = &first; /* earlier in the list, already called */
	publish(hub, NOTIFY_NEW, 3, 1, 2);
	assert_null(first);
	assert_int_equal(before.count, 2);
	publish(hub, NOTIFY_NEW, 3, 1, 3);
	assert_int_equal(before.count, 2);
	assert_int_equal(a.count, 3);
	assert_int_equal(notify_subscriber_count(hub), 1);
	notify_unsubscribe(&a.self);
	assert_false(notify_has_subscribers(hub, 3));
	notify_hub_free(&hub);
}

static void
test_subscribe_in_callback_starts_with_next_event(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen child = {.account_id = 4};
	struct actor a = {.hub = hub, .child_seen = &child};

	a.self = notify_subscribe(hub, 4, 0, on_actor, &a);
	publish(hub, NOTIFY_NEW, 4, 1, 1);
	assert_non_null(a.child);
	assert_int_equal(child.count, 0);
	publish(hub, NOTIFY_NEW, 4, 1, 2);
	assert_int_equal(child.count, 1);
	assert_int_equal(child.last.uid, 2);
	assert_int_equal(a.count, 2);
	assert_int_equal(notify_subscriber_count(hub), 2);
	notify_unsubscribe(&a.child);
	notify_unsubscribe(&a.self);
	notify_hub_free(&hub);
}

/* Publishes a second event from inside a callback, once. */
struct relay {
	struct notify_hub *hub;
	int count;
};

static void
on_relay(const struct notify_event *ev, void *arg)
{
	struct relay *r = arg;

	if (r->count++ == 0)
		publish(r->hub, NOTIFY_FLAGS, ev->account_id, ev->mailbox_id, ev->uid);
}

static void
test_publish_in_callback(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct relay r = {.hub = hub};
	struct seen s = {.account_id = 9};
	struct notify_sub *a = notify_subscribe(hub, 9, 0, on_relay, &r);
	struct notify_sub *b = notify_subscribe(hub, 9, 0, on_event, &s);

	publish(hub, NOTIFY_NEW, 9, 1, 1);
	assert_int_equal(r.count, 2);
	assert_int_equal(s.count, 2);
	/* b saw the nested event first: its seq is the higher one. */
	assert_int_equal(s.unordered, 1);
	assert_int_equal(s.last.kind, NOTIFY_NEW);
	notify_unsubscribe(&a);
	notify_unsubscribe(&b);
	notify_hub_free(&hub);
}

static void
test_sequence_numbers_increase(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen s = {.account_id = 1};
	struct notify_sub *sub = notify_subscribe(hub, 1, 0, on_event, &s);
	uint64_t prev = 0;

	for (uint32_t i = 1; i <= 100; i++) {
		uint64_t seq = publish(hub, NOTIFY_NEW, 1 + (i % 2), 1, i);
		assert_true(seq > prev);
		prev = seq;
	}
	assert_int_equal(s.count, 50);
	assert_int_equal(s.unordered, 0);
	assert_int_equal(prev, 100);
	notify_unsubscribe(&sub);
	notify_hub_free(&hub);
}

#define NACCOUNTS 100
#define NSUBS 2000
#define NPUBLISH 2000
#define NMAILBOXES 5

static void
test_many_subscribers_no_loss_no_crosstalk(void **state)
{
	static struct seen seen[NSUBS];
	static struct notify_sub *subs[NSUBS];
	static int expected[NSUBS];
	struct notify_hub *hub = notify_hub_new();
	int64_t t0, elapsed;
	long total = 0, want = 0;

	memset(seen, 0, sizeof(seen));
	/* 20 per account: even ones watch the whole account, odd ones one of its mailboxes. */
	for (int i = 0; i < NSUBS; i++) {
		seen[i].account_id = 1 + i % NACCOUNTS;
		seen[i].mailbox_id =
		    (i / NACCOUNTS) % 2 == 0 ? 0 : 1 + (i / NACCOUNTS) % NMAILBOXES;
		subs[i] = notify_subscribe(hub, seen[i].account_id, seen[i].mailbox_id, on_event,
		                           &seen[i]);
	}
	assert_int_equal(notify_subscriber_count(hub), NSUBS);
	memset(expected, 0, sizeof(expected));
	for (int p = 0; p < NPUBLISH; p++) {
		for (int i = 0; i < NSUBS; i++) {
			if (seen[i].account_id == 1 + (p * 7) % NACCOUNTS &&
			    (seen[i].mailbox_id == 0 ||
			     seen[i].mailbox_id == 1 + (p / 3) % NMAILBOXES))
				expected[i]++;
		}
	}
	t0 = time_mono_usec();
	for (int p = 0; p < NPUBLISH; p++)
		publish(hub, NOTIFY_NEW, 1 + (p * 7) % NACCOUNTS, 1 + (p / 3) % NMAILBOXES,
		        (uint32_t)p + 1);
	elapsed = time_mono_usec() - t0;
	for (int i = 0; i < NSUBS; i++) {
		assert_int_equal(seen[i].count, expected[i]);
		assert_int_equal(seen[i].wrong, 0);
		assert_int_equal(seen[i].unordered, 0);
		total += seen[i].count;
		want += expected[i];
		notify_unsubscribe(&subs[i]);
	}
	assert_int_equal(total, want);
	assert_true(total > NPUBLISH); /* every publish reached several subscribers */
	assert_int_equal(notify_subscriber_count(hub), 0);
	print_message(
	    "# %d publishes to %d subscribers over %d accounts: %ld callbacks in %lld us\n",
	    NPUBLISH, NSUBS, NACCOUNTS, total, (long long)elapsed);
	notify_hub_free(&hub);
}

static void
test_free_with_live_subscriptions(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen s = {.account_id = 1};

	/* Handles are abandoned on purpose: the hub warns and frees them (ASan checks no leak). */
	(void)notify_subscribe(hub, 1, 0, on_event, &s);
	(void)notify_subscribe(hub, 2, 5, on_event, &s);
	(void)notify_subscribe(hub, 0, 0, on_event, &s);
	notify_hub_free(&hub);
	assert_null(hub);
	notify_hub_free(&hub); /* NULL is ignored */
}

/* Subscription changes reach only those who ask for them (IMAP NOTIFY's SubscriptionChange);
 * older subscribers (IDLE, push, webhooks) keep getting exactly what they always got. */
static void
test_subscription_kinds_opt_in(void **state)
{
	struct notify_hub *hub = notify_hub_new();
	struct seen legacy = {.account_id = 7}, all = {.account_id = 7};
	struct seen only_subs = {.account_id = 7};
	struct notify_sub *a = notify_subscribe(hub, 7, 0, on_event, &legacy);
	struct notify_sub *b = notify_subscribe_kinds(hub, 7, 0, NOTIFY_KINDS_ALL, on_event, &all);
	struct notify_sub *c = notify_subscribe_kinds(
	    hub, 7, 0, NOTIFY_KIND_BIT(NOTIFY_SUBSCRIBED) | NOTIFY_KIND_BIT(NOTIFY_UNSUBSCRIBED),
	    on_event, &only_subs);

	(void)state;
	publish(hub, NOTIFY_SUBSCRIBED, 7, 0, 0);
	publish(hub, NOTIFY_UNSUBSCRIBED, 7, 0, 0);
	publish(hub, NOTIFY_NEW, 7, 70, 1);
	publish(hub, NOTIFY_MAILBOX_RENAMED, 7, 70, 0);
	assert_int_equal(legacy.count, 2);
	assert_int_equal(legacy.last.kind, NOTIFY_MAILBOX_RENAMED);
	assert_int_equal(all.count, 4);
	assert_int_equal(only_subs.count, 2);
	assert_int_equal(only_subs.last.kind, NOTIFY_UNSUBSCRIBED);
	notify_unsubscribe(&a);
	notify_unsubscribe(&b);
	notify_unsubscribe(&c);
	notify_hub_free(&hub);
}

static void
test_copy_text_bounded_on_utf8_boundary(void **state)
{
	char buf[6];

	notify_copy_text(buf, sizeof(buf), "abc");
	assert_string_equal(buf, "abc");
	notify_copy_text(buf, sizeof(buf), "abcdefgh");
	assert_string_equal(buf, "abcde");
	notify_copy_text(buf, sizeof(buf), "abc\xc3\xa9\xc3\xa9"); /* "abcéé": é would be cut */
	assert_string_equal(buf, "abc\xc3\xa9");
	notify_copy_text(buf, sizeof(buf), "ab\xe2\x82\xac\xe2\x82\xac"); /* "ab€€" */
	assert_string_equal(buf, "ab\xe2\x82\xac");
	notify_copy_text(buf, sizeof(buf), NULL);
	assert_string_equal(buf, "");
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
deliver_done(bool ok, const char *error, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

/* Runs one message through deliver (the store commits synchronously without workers) and
 * returns the commit's result. */
static int
deliver_message(struct deliver *d, const char *mail_from, const char *msg,
                const struct store_target *targets, size_t ntargets)
{
	struct deliver_origin origin = {
	    .helo = "client.example", .client_ip = "127.0.0.1", .protocol = "ESMTP"};
	const char *rcpts[] = {"x@example.org"};
	char error[256];
	struct deliver_tx *tx =
	    deliver_tx_begin(d, mail_from, &origin, rcpts, 1, error, sizeof(error));
	int done = 0;

	assert_non_null(tx);
	/* One byte at a time: the header scanner must not depend on chunk boundaries. */
	for (const char *p = msg; *p != '\0'; p++)
		assert_int_equal(deliver_tx_write(tx, p, 1), 0);
	deliver_tx_commit(d, &tx, targets, ntargets, 0, deliver_done, &done);
	assert_null(tx);
	return done;
}

static void
test_deliver_publishes_new_for_local_targets(void **state)
{
	char dir[] = "/tmp/test_notify_XXXXXX", error[256];
	struct store *store = NULL;
	struct config *config = config_new();
	struct notify_hub *hub = notify_hub_new();
	struct store_account alice, bob;
	struct seen sa = {0}, sb = {0};
	struct notify_sub *suba, *subb = NULL;
	struct deliver *d;
	const char *msg = "Received: from elsewhere\r\n"
	                  "From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.net>\r\n"
	                  "Subject: =?UTF-8?Q?caf=C3=A9?=\r\n"
	                  " and more\r\n"
	                  "Subject: a second one is ignored\r\n"
	                  "\r\n"
	                  "Subject: not a header\r\n";

	mime_init();
	assert_non_null(mkdtemp(dir));
	if (store_open(dir, true, NULL, &store, error, sizeof(error)) < 0)
		fail_msg("store_open: %s", error);
	assert_int_equal(store_account_add(store, "alice@example.org", "x", error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_add(store, "bob@example.org", "x", error, sizeof(error)), 1);
	assert_int_equal(store_account_lookup(store, "alice@example.org", &alice), 1);
	assert_int_equal(store_account_lookup(store, "bob@example.org", &bob), 1);
	assert_int_equal(config_set(config, "server.domains", "example.org", error, sizeof(error)),
	                 0);
	d = deliver_new(store, hub, config);
	sa.account_id = alice.id;
	sb.account_id = bob.id;
	suba = notify_subscribe(hub, alice.id, 0, on_event, &sa);

	const struct store_target targets[] = {
	    {.account_id = alice.id, .mailbox = "INBOX", .rcpt = "alice@example.org"},
	    {.account_id = bob.id, .mailbox = "INBOX", .rcpt = "bob@example.org"},
	    {.account_id = 0, .rcpt = "carol@example.net"},
	};
	assert_int_equal(deliver_message(d, "sender@example.net", msg, targets, 3), 1);
	assert_int_equal(sa.count, 1);
	assert_int_equal(sa.wrong, 0);
	assert_int_equal(sa.last.kind, NOTIFY_NEW);
	assert_true(sa.last.mailbox_id > 0);
	assert_int_equal(sa.last.uid, 1);
	assert_string_equal(sa.last.mailbox, "INBOX");
	assert_string_equal(sa.last.subject, "caf\xc3\xa9 and more");
	assert_non_null(strstr(sa.last.from, "Ren\xc3\xa9"
	                                     "e"));
	assert_non_null(strstr(sa.last.from, "renee@example.net"));
	assert_true(sa.last.size > strlen(msg)); /* the stored file, trace headers included */
	assert_true(sa.last.internal_date > 0);

	/* Bob listens now; a message without From: names the envelope sender. */
	subb = notify_subscribe(hub, bob.id, 0, on_event, &sb);
	assert_int_equal(deliver_message(d, "bounce@example.net", "Subject: plain\r\n\r\nbody\r\n",
	                                 &targets[1], 1),
	                 1);
	assert_int_equal(sa.count, 1);
	assert_int_equal(sb.count, 1);
	assert_int_equal(sb.last.uid, 2);
	assert_string_equal(sb.last.subject, "plain");
	assert_string_equal(sb.last.from, "bounce@example.net");
	assert_true(sb.last.seq > sa.last.seq);

	notify_unsubscribe(&suba);
	notify_unsubscribe(&subb);
	deliver_free(&d);
	store_free(&store);
	notify_hub_free(&hub);
	config_free(&config);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	mime_deinit();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_subscribe_publish_unsubscribe),
	    cmocka_unit_test(test_mailbox_filter_and_whole_account),
	    cmocka_unit_test(test_every_account_subscriber),
	    cmocka_unit_test(test_unsubscribe_self_in_callback),
	    cmocka_unit_test(test_unsubscribe_another_in_callback),
	    cmocka_unit_test(test_subscribe_in_callback_starts_with_next_event),
	    cmocka_unit_test(test_publish_in_callback),
	    cmocka_unit_test(test_sequence_numbers_increase),
	    cmocka_unit_test(test_many_subscribers_no_loss_no_crosstalk),
	    cmocka_unit_test(test_free_with_live_subscriptions),
	    cmocka_unit_test(test_copy_text_bounded_on_utf8_boundary),
	    cmocka_unit_test(test_subscription_kinds_opt_in),
	    cmocka_unit_test(test_deliver_publishes_new_for_local_targets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
