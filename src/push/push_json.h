/* push_json: the JSON lines of push events (docs/push-protocol.md), shared by the push service
 * and the webhook sender, so that both say exactly the same thing about a message.
 *
 * Each function returns one JSON object on one line, without CRLF, malloc'd (free() it). Text
 * fields are escaped with json_write_string (src/lib/json.h) after any invalid UTF-8 in them is
 * replaced by U+FFFD, so every line is valid UTF-8 JSON whatever a message's headers held. */
#ifndef TERN_PUSH_JSON_H
#define TERN_PUSH_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "notify/notify.h"

/* What a "new" event says about a message. */
struct push_json_message {
	const char *mailbox;
	uint32_t uidvalidity;
	uint32_t uid;
	const char *from;    /* decoded, "" when unknown */
	const char *subject; /* decoded, "" when unknown */
	int64_t date;        /* internal date, seconds since the epoch */
	uint64_t size;
	bool replay;         /* adds "replay":true (WATCH ... SINCE) */
	const char *account; /* adds "account" when not NULL (webhooks) */
};

/* {"type":"new","mailbox":...,"uidvalidity":...,"uid":...,"from":...,"subject":...,"date":
 * "2026-11-24T23:10:00Z","size":...} */
char *push_json_new(const struct push_json_message *m);
/* The event as the push service sends it: NEW (as push_json_new, not a replay), EXPUNGE,
 * FLAGS ("flags": system flags then keywords) and the MAILBOX_* kinds. mailbox is the watched
 * mailbox's current name (the event's may be ""); uidvalidity is the watched mailbox's. */
char *push_json_event(const struct notify_event *ev, const char *mailbox, uint32_t uidvalidity);
/* {"type":"keepalive","time":"..."} */
char *push_json_keepalive(int64_t now);
/* {"type":"resync","reason":reason} */
char *push_json_resync(const char *reason);

#endif
