/* deliver: the one way a message enters a mailbox or the outbound queue.
 *
 * Protocol sessions ask deliver who may receive (recipient policy), which senders an account
 * may use, and hand it the message; deliver writes the trace headers, runs the filters (a plugin
 * point: none are registered yet) and commits through the store. Once a commit is durable it
 * publishes a NOTIFY_NEW event per local target on the notify hub. */
#ifndef TERN_DELIVER_H
#define TERN_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct config;
struct notify_hub;
struct deliver;
struct deliver_tx;

enum deliver_rcpt {
	DELIVER_RCPT_LOCAL,        /* a local account: account_id set */
	DELIVER_RCPT_REMOTE,       /* another domain, and the sender may relay: outbound queue */
	DELIVER_RCPT_UNKNOWN_USER, /* a local domain without such a user */
	DELIVER_RCPT_RELAY_DENIED, /* another domain, and the sender may not relay */
	DELIVER_RCPT_TEMPFAIL,     /* the store could not be read */
};

/* hub may be NULL (no events published); it must outlive the deliver and its commits in flight. */
struct deliver *deliver_new(struct store *store, struct notify_hub *hub,
                            const struct config *config);
void deliver_free(struct deliver **deliver);

/* True when address's domain is one of server.domains. */
bool deliver_domain_is_local(const struct deliver *deliver, const char *address);
/* Decides a recipient. authenticated: the sender logged in (and so may relay). "postmaster"
 * without a domain (any case) is taken as postmaster@ the first local domain; postmaster@ a
 * local domain that no account or alias has goes to the first account (RFC 5321 4.5.1). */
enum deliver_rcpt deliver_check_rcpt(struct deliver *deliver, const char *address,
                                     bool authenticated, int64_t *account_id_r);
/* True when the logged-in account may use address as its envelope sender (its own address or one
 * of its aliases). */
bool deliver_sender_allowed(struct deliver *deliver, int64_t account_id, const char *address);

/* What the trace header says about where the message came from. */
struct deliver_origin {
	const char *helo; /* as the client gave it (logged escaped, written sanitized) */
	const char *client_ip;
	const char *protocol;         /* RFC 3848: "SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" */
	const char *tls_info;         /* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" or NULL */
	const char *authenticated_as; /* or NULL; not written to the header */
};

/* Starts a transaction: a blob with Return-Path and Received already written. rcpts are the
 * envelope recipients (the Received header names one when there is exactly one). Returns NULL
 * with error when the store cannot make a blob. */
struct deliver_tx *deliver_tx_begin(struct deliver *deliver, const char *mail_from,
                                    const struct deliver_origin *origin, const char *const *rcpts,
                                    size_t nrcpts, char *error, size_t errsize);
/* Appends message bytes (the message as received, after any transfer decoding). In an SMTP
 * transaction (deliver_tx_begin) every bare LF and bare CR becomes CRLF (BDAT takes chunks as
 * sent; DATA's are CRLF already); APPEND's bytes are stored as given. The From:, Subject: and
 * Sender: header lines are noted on the way for the notify event and deliver_tx_refusal. -1 on
 * a write error (the transaction can then only be aborted). */
int deliver_tx_write(struct deliver_tx *tx, const void *data, size_t len);
/* Whether the message written so far must be refused, checked once the whole message is in
 * and before deliver_tx_commit: NULL to go on, else the SMTP reply to give (valid until the
 * transaction ends). Refused: a header section over smtp.max_header_size; for an authenticated
 * sender (origin.authenticated_as) unless smtp.allow_any_from, a From: or Sender: header with an
 * address that is not the account's or one of its aliases, more than one From: or Sender:,
 * one without any address or too long to check. A message without From: passes. */
const char *deliver_tx_refusal(struct deliver *deliver, struct deliver_tx *tx);
/* Starts an IMAP APPEND: a blob without trace headers (the client gives the whole message) whose
 * rows get internal_date (seconds since the epoch, 0: now) instead of the arrival time. */
struct deliver_tx *deliver_tx_begin_append(struct deliver *deliver, int64_t internal_date,
                                           char *error, size_t errsize);
/* Sets the internal date the rows get (APPEND: the date-time argument arrives after the message
 * data has been streamed). 0: now. */
void deliver_tx_set_internal_date(struct deliver_tx *tx, int64_t internal_date);
/* Appends what src holds so far to dst (IMAP CATENATE's TEXT parts); may run on a worker thread
 * while nothing else uses either. 0, or -1 on a read or write error. */
int deliver_tx_append_tx(struct deliver_tx *dst, const struct deliver_tx *src);
/* Bytes written to the transaction so far. */
uint64_t deliver_tx_size(const struct deliver_tx *tx);
/* The transaction's id, as written in the Received header and logged ("queued as"). */
const char *deliver_tx_id(const struct deliver_tx *tx);
void deliver_tx_abort(struct deliver_tx **tx);

typedef void deliver_cb(bool ok, const char *error, void *arg);
/* Commits to every target (copied). *tx becomes NULL; cb runs on the loop thread once the
 * message is on stable storage (ok) or nothing of it is visible (!ok). On success a NOTIFY_NEW
 * event for each local target is published just before cb runs. */
void deliver_tx_commit(struct deliver *deliver, struct deliver_tx **tx,
                       const struct store_target *targets, size_t ntargets,
                       int64_t sender_account_id, deliver_cb *cb, void *arg);
/* deliver_tx_commit with the store's results (UIDs, UIDVALIDITY, MODSEQ for APPENDUID);
 * results is NULL when !ok. */
typedef void deliver_result_cb(bool ok, const char *error, const struct store_result *results,
                               void *arg);
void deliver_tx_commit_r(struct deliver *deliver, struct deliver_tx **tx,
                         const struct store_target *targets, size_t ntargets,
                         int64_t sender_account_id, deliver_result_cb *cb, void *arg);

/* Commits several messages all or nothing (IMAP MULTIAPPEND): txs[i] (each set to NULL) goes to
 * targets[i]; n is at most STORE_GROUP_MAX. cb runs once on the loop thread: ok with results[i]
 * for message i when every one is on stable storage (NOTIFY_NEW published for each just before),
 * or !ok with error when none of them is visible. */
typedef void deliver_group_cb(bool ok, const char *error, const struct store_result *results,
                              size_t n, void *arg);
void deliver_tx_commit_group(struct deliver *deliver, struct deliver_tx **txs,
                             const struct store_target *targets, size_t n,
                             int64_t sender_account_id, deliver_group_cb *cb, void *arg);

#endif
