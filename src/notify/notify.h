/* notify: the hub through which mailbox events (new message, expunge, flags changed) reach the
 * sessions that watch mailboxes.
 *
 * Publishers are the paths that change a mailbox: deliver (NEW, after the commit is durable) and
 * the sessions that apply flag changes and expunges (POP3 at QUIT, IMAP STORE/EXPUNGE). Subscribers
 * are IMAP IDLE, the push service, webhooks and the web UI's live updates.
 *
 * Threads: a hub belongs to the loop thread; every function here is called there, and callbacks
 * run there, synchronously inside notify_publish(). That keeps an event's latency to a function
 * call, so a callback MUST NOT block or do slow work: it copies what it needs into its own bounded
 * queue (and, when that is full, drops the queue and tells its client to resync) and returns. One
 * consumer's backpressure is its own business and never delays the others or the publisher.
 *
 * Several nodes: a later relay through PostgreSQL LISTEN/NOTIFY hooks in below this interface
 * (publish also forwards, events from other nodes are dispatched as if published here), so
 * publishers and subscribers do not change. */
#ifndef TERN_NOTIFY_H
#define TERN_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct notify_hub;
struct notify_sub;

enum notify_kind {
	NOTIFY_NEW,             /* a message was added (delivery, APPEND, COPY/MOVE target) */
	NOTIFY_EXPUNGE,         /* a message was removed; may name a UID that is already gone */
	NOTIFY_FLAGS,           /* a message's flags changed */
	NOTIFY_MAILBOX_CREATED, /* mailbox names the new mailbox; uid etc. 0 */
	NOTIFY_MAILBOX_DELETED, /* mailbox_id and mailbox name the mailbox that is gone */
	NOTIFY_MAILBOX_RENAMED, /* mailbox is the new name, old_mailbox the old */
	/* The account's subscription list changed (IMAP SUBSCRIBE/UNSUBSCRIBE): mailbox is the
	 * name (which may not exist), mailbox_id 0. Only subscriptions that ask for these kinds
	 * with notify_subscribe_kinds() receive them. */
	NOTIFY_SUBSCRIBED,
	NOTIFY_UNSUBSCRIBED,
};

/* Sets of kinds for notify_subscribe_kinds(). */
#define NOTIFY_KIND_BIT(kind) (1u << (kind))
/* What notify_subscribe() delivers: message and mailbox events, not subscription changes. */
#define NOTIFY_KINDS_DEFAULT                                                                       \
	(NOTIFY_KIND_BIT(NOTIFY_NEW) | NOTIFY_KIND_BIT(NOTIFY_EXPUNGE) |                           \
	 NOTIFY_KIND_BIT(NOTIFY_FLAGS) | NOTIFY_KIND_BIT(NOTIFY_MAILBOX_CREATED) |                 \
	 NOTIFY_KIND_BIT(NOTIFY_MAILBOX_DELETED) | NOTIFY_KIND_BIT(NOTIFY_MAILBOX_RENAMED))
#define NOTIFY_KINDS_ALL                                                                           \
	(NOTIFY_KINDS_DEFAULT | NOTIFY_KIND_BIT(NOTIFY_SUBSCRIBED) |                               \
	 NOTIFY_KIND_BIT(NOTIFY_UNSUBSCRIBED))

/* Text fields are copied into the event, truncated on a UTF-8 character boundary. */
#define NOTIFY_MAILBOX_MAX 256
#define NOTIFY_FROM_MAX 256
#define NOTIFY_SUBJECT_MAX 256
#define NOTIFY_KEYWORDS_MAX 1024

struct notify_event {
	enum notify_kind kind;
	uint64_t seq;       /* set by notify_publish: strictly increasing over the hub's events */
	int64_t account_id; /* > 0 */
	int64_t mailbox_id; /* > 0 (0 for NOTIFY_SUBSCRIBED/UNSUBSCRIBED) */
	uint32_t uid;
	uint64_t modseq; /* the message's MODSEQ after the change; 0 when the publisher does not
	                  * know it (consumers that need it read the store) */
	uint32_t flags;  /* enum store_flag bits: NEW the delivered flags, FLAGS the flags after the
	                  * change as the publisher knows them; 0 for EXPUNGE */
	char mailbox[NOTIFY_MAILBOX_MAX];     /* the mailbox's name when known, else "" */
	char old_mailbox[NOTIFY_MAILBOX_MAX]; /* RENAMED: the old name */
	char keywords[NOTIFY_KEYWORDS_MAX];   /* NEW, FLAGS: IMAP keywords, space-separated */
	/* NEW only: a summary for push clients ("" / 0 when unknown). */
	char from[NOTIFY_FROM_MAX];       /* decoded From: header, or the envelope sender */
	char subject[NOTIFY_SUBJECT_MAX]; /* decoded Subject: header */
	uint64_t size;                    /* bytes of the stored message */
	int64_t internal_date;            /* seconds since the epoch */
};

/* The event is valid only during the call; copy what must outlive it. */
typedef void notify_cb(const struct notify_event *event, void *arg);

struct notify_hub *notify_hub_new(void);
/* Frees the hub; *hub becomes NULL. Every subscription should be gone first (consumers are freed
 * before the hub): any left is logged as a warning and freed with the hub, so its handle must not
 * be used again. Must not be called from inside a callback (fatal). */
void notify_hub_free(struct notify_hub **hub);

/* Registers cb for events of account_id (0: every account, for webhooks and relays) in
 * mailbox_id (0: every mailbox of the account). Returns the handle to unsubscribe with. May be
 * called from inside a callback: the new subscription starts with the next event published. */
struct notify_sub *notify_subscribe(struct notify_hub *hub, int64_t account_id, int64_t mailbox_id,
                                    notify_cb *cb, void *arg);
/* The same for the kinds in the set kinds (NOTIFY_KIND_BIT()s); notify_subscribe() is this with
 * NOTIFY_KINDS_DEFAULT, so kinds added later never surprise an older subscriber. */
struct notify_sub *notify_subscribe_kinds(struct notify_hub *hub, int64_t account_id,
                                          int64_t mailbox_id, unsigned kinds, notify_cb *cb,
                                          void *arg);
/* Ends a subscription; *sub becomes NULL (NULL is ignored). cb is never called again, even for an
 * event being dispatched right now: this may be called from inside any callback, for its own
 * subscription or another. */
void notify_unsubscribe(struct notify_sub **sub);

/* Copies event, stamps it with the next sequence number and calls every matching subscriber, in
 * the order they subscribed (account's own first, then every-account ones). Returns the sequence
 * number. A callback may publish in turn (dispatched at once, nested). */
uint64_t notify_publish(struct notify_hub *hub, const struct notify_event *event);

/* True when an event for account_id would reach someone: lets a publisher skip preparing a
 * costly summary nobody reads. */
bool notify_has_subscribers(const struct notify_hub *hub, int64_t account_id);
/* Live subscriptions, for statistics and tests. */
size_t notify_subscriber_count(const struct notify_hub *hub);

/* Copies src into an event's text field of dstsize bytes, truncated on a UTF-8 character
 * boundary; NULL gives "". */
void notify_copy_text(char *dst, size_t dstsize, const char *src);

#endif
