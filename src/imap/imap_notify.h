/* imap_notify: IMAP NOTIFY (RFC 5465). A session asks for events in its selected mailbox and in
 * others (by filter: inboxes, personal, subscribed, subtree, mailboxes) and gets them as they
 * happen, between commands and while idling: EXISTS/EXPUNGE/FETCH for the selected mailbox,
 * STATUS for the others, LIST for mailboxes created, deleted, renamed, subscribed.
 *
 * imap_notify_parse() (imap_notify_parse.c) is the command's grammar over the argument tree
 * imap_parser builds (RFC 5465 section 8), free of sessions so it can be unit-tested and fuzzed;
 * imap_notify.c keeps a session's NOTIFY state and dispatches the hub's events to it. Everything
 * runs on the loop thread. Events for other mailboxes are collected per mailbox in a bounded queue
 * and written by a deferred flush, one STATUS per changed mailbox counted with store_mailbox_counts
 * (one aggregate query); a session that falls behind gets "* OK [NOTIFICATIONOVERFLOW]" and is set
 * to NOTIFY NONE (RFC 5465 5.8). */
#ifndef TERN_IMAP_NOTIFY_H
#define TERN_IMAP_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_arg;
struct imap_command;
struct imap_session;

enum imap_notify_filter {
	IMAP_NOTIFY_SELECTED = 0,
	IMAP_NOTIFY_SELECTED_DELAYED,
	IMAP_NOTIFY_INBOXES,
	IMAP_NOTIFY_PERSONAL,
	IMAP_NOTIFY_SUBSCRIBED,
	IMAP_NOTIFY_SUBTREE,
	IMAP_NOTIFY_MAILBOXES,
};

/* Events (bits). */
#define IMAP_NOTIFY_EV_NEW 1u
#define IMAP_NOTIFY_EV_EXPUNGE 2u
#define IMAP_NOTIFY_EV_FLAGS 4u
#define IMAP_NOTIFY_EV_MAILBOXNAME 8u
#define IMAP_NOTIFY_EV_SUBSCRIPTION 16u
#define IMAP_NOTIFY_EV_MESSAGE (IMAP_NOTIFY_EV_NEW | IMAP_NOTIFY_EV_EXPUNGE | IMAP_NOTIFY_EV_FLAGS)

/* MessageNew's fetch-att for the selected mailbox (RFC 5465 5.2 names UID, MODSEQ, FLAGS,
 * ENVELOPE, BODY.PEEK[HEADER.FIELDS...], BODY and BODYSTRUCTURE as the useful ones): what the
 * snapshot, the structure kept with the row and the header answer at once. */
enum imap_notify_att {
	IMAP_NOTIFY_ATT_UID = 0,
	IMAP_NOTIFY_ATT_FLAGS,
	IMAP_NOTIFY_ATT_MODSEQ,
	IMAP_NOTIFY_ATT_INTERNALDATE,
	IMAP_NOTIFY_ATT_SIZE,
	IMAP_NOTIFY_ATT_ENVELOPE,
	IMAP_NOTIFY_ATT_BODY,
	IMAP_NOTIFY_ATT_BODYSTRUCTURE,
	IMAP_NOTIFY_ATT_SECTION, /* BODY.PEEK[...HEADER.FIELDS(.NOT) (...)]<partial> */
};

#define IMAP_NOTIFY_GROUPS_MAX 32 /* event groups in one NOTIFY SET */
#define IMAP_NOTIFY_NAMES_MAX 256 /* mailbox names over all its groups */
#define IMAP_NOTIFY_ATTS_MAX 8    /* fetch-att items */

struct imap_notify_group {
	enum imap_notify_filter filter;
	unsigned events;      /* IMAP_NOTIFY_EV_*; 0 for NONE */
	size_t first, nnames; /* SUBTREE, MAILBOXES: its names, spec->names[first...] */
};

struct imap_notify_spec {
	bool none;   /* NOTIFY NONE */
	bool status; /* NOTIFY SET STATUS */
	struct imap_notify_group groups[IMAP_NOTIFY_GROUPS_MAX];
	size_t ngroups;
	/* the names as sent (astrings, still encoded), pointing into the command's arguments */
	const struct imap_arg *names[IMAP_NOTIFY_NAMES_MAX];
	size_t nnames;
	/* the SELECTED/SELECTED-DELAYED group's MessageNew fetch-att, in order */
	enum imap_notify_att atts[IMAP_NOTIFY_ATTS_MAX];
	const struct imap_arg *att_args[IMAP_NOTIFY_ATTS_MAX]; /* SECTION: its argument */
	size_t natts;
};

enum imap_notify_parse_result {
	IMAP_NOTIFY_PARSE_OK = 0,
	IMAP_NOTIFY_PARSE_BAD = -1,      /* syntax or a rule of RFC 5465: tagged BAD */
	IMAP_NOTIFY_PARSE_BADEVENT = -2, /* an event we do not support: NO [BADEVENT (...)] */
	IMAP_NOTIFY_PARSE_CANNOT = -3,   /* a fetch-att we do not send unsolicited: NO */
};

/* The events this server supports, as BADEVENT lists them. */
#define IMAP_NOTIFY_SUPPORTED "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"

/* Reads NOTIFY's arguments into *spec (zeroed first). Returns an imap_notify_parse_result, with
 * *error_r a static text for the reply when it is not OK. */
int imap_notify_parse(const struct imap_arg *args, size_t nargs, struct imap_notify_spec *spec,
                      const char **error_r);

/* NOTIFY SET / NOTIFY NONE (authenticated and selected states). */
void imap_cmd_notify(struct imap_session *s, const struct imap_command *cmd);
/* Drops the session's NOTIFY state (session end). */
void imap_notify_free(struct imap_session *s);
/* A selected-mailbox event (enum notify_kind) was queued by the IDLE/snapshot path: sends the
 * queue now when the client asked for it (NOTIFY SELECTED, or IDLE without NOTIFY). */
void imap_notify_selected(struct imap_session *s, int kind);
/* True when the selected mailbox's changes of this kind (IMAP_NOTIFY_EV_*) are told: always
 * before NOTIFY, then only when its SELECTED group asks for them. */
bool imap_notify_selected_wants(const struct imap_session *s, unsigned event);
/* After the snapshot's queue was applied: MessageNew's FETCH for the messages above last_uid. */
void imap_notify_new_messages(struct imap_session *s, uint32_t last_uid);
/* While on, mailbox events this session publishes are not told to itself (RFC 5465 5: the
 * server SHOULD omit notifying the client of what it caused). */
void imap_notify_own(struct imap_session *s, bool on);

#endif
