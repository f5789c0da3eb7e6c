/* imap_client: downloads mail from an IMAP4rev1 server (RFC 3501, 2595, 4959, 4315). Only what
 * fetching needs: login, SELECT/EXAMINE, listing UIDs with sizes and flags, fetching bodies,
 * deleting. Works with Dovecot, Gmail, and ternd once it speaks IMAP. */
#ifndef TERN_IMAP_CLIENT_H
#define TERN_IMAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/conn.h"

struct imap_client;

struct imap_client_entry {
	uint32_t uid;
	uint64_t size;	/* RFC822.SIZE */
	bool seen;	/* \Seen among FLAGS */
};

/* Greeting, CAPABILITY, STARTTLS when asked, AUTHENTICATE PLAIN (with SASL-IR when offered) or
 * LOGIN. Returns 0 or -1 with an error quoting the server. */
int imap_client_open(const struct conn_options *conn, const char *user, const char *password,
		     struct imap_client **client_r, char *error, size_t errsize);
/* For tests and fuzzing: imap_client_open over an already connected socket (see conn_from_fd;
 * fd is owned by the client from here on, closed also when this fails). */
int imap_client_open_fd(int fd, const struct conn_options *conn, const char *user,
			const char *password, struct imap_client **client_r, char *error,
			size_t errsize);
/* SELECT (readonly: EXAMINE) a mailbox; reports UIDVALIDITY and the number of messages. */
int imap_client_select(struct imap_client *client, const char *mailbox, bool readonly,
		       uint32_t *uidvalidity_r, uint32_t *exists_r, char *error, size_t errsize);
/* UID FETCH first_uid:* (UID RFC822.SIZE FLAGS); *entries_r malloc'ed, in UID order. */
int imap_client_list(struct imap_client *client, uint32_t first_uid,
		     struct imap_client_entry **entries_r, size_t *n_r, char *error, size_t errsize);
/* UID FETCH uid BODY.PEEK[] into fd (the literal, exactly; at most max_size bytes). */
int imap_client_fetch(struct imap_client *client, uint32_t uid, int fd, uint64_t max_size,
		      char *error, size_t errsize);
/* UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE (UIDPLUS) or EXPUNGE. */
int imap_client_delete(struct imap_client *client, const uint32_t *uids, size_t n, char *error,
		       size_t errsize);
void imap_client_logout(struct imap_client **client);

#endif
