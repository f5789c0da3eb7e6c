/* imap_client: downloads and watches mail on an IMAP4rev1 server (RFC 3501, 2595, 4959, 4315,
 * 2177). Only what fetching and watching need: login, SELECT/EXAMINE, listing UIDs with sizes and
 * flags, fetching bodies and header fields, deleting, NOOP and IDLE. Works with Dovecot, Gmail,
 * and ternd. */
#ifndef TERN_IMAP_CLIENT_H
#define TERN_IMAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/conn.h"

struct imap_client;

struct imap_client_entry {
	uint32_t uid;
	uint64_t size; /* RFC822.SIZE */
	bool seen;     /* \Seen among FLAGS */
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
/* imap_client_open over a conn the caller connected (and, for implicit TLS, already upgraded
 * with conn_starttls): with options->security CONN_SECURITY_STARTTLS the STARTTLS exchange runs
 * here. conn is owned by the client from here on (closed also when this fails). Returns 0, -1
 * with error, or -2 with error when the server refused the login (NO/BAD to AUTHENTICATE or
 * LOGIN): retrying the same credentials will not help. */
int imap_client_open_conn(struct conn *conn, const struct conn_options *options, const char *user,
                          const char *password, struct imap_client **client_r, char *error,
                          size_t errsize);
/* SELECT (readonly: EXAMINE) a mailbox; reports UIDVALIDITY and the number of messages. Returns
 * 0, -1 with error, or -2 with error when the server refused (NO/BAD: no such mailbox, say; the
 * session stays usable). */
int imap_client_select(struct imap_client *client, const char *mailbox, bool readonly,
                       uint32_t *uidvalidity_r, uint32_t *exists_r, char *error, size_t errsize);
/* UID FETCH first_uid:* (UID RFC822.SIZE FLAGS); *entries_r malloc'ed, in UID order. */
int imap_client_list(struct imap_client *client, uint32_t first_uid,
                     struct imap_client_entry **entries_r, size_t *n_r, char *error,
                     size_t errsize);
/* UID FETCH uid BODY.PEEK[] into fd (the literal, exactly; at most max_size bytes). */
int imap_client_fetch(struct imap_client *client, uint32_t uid, int fd, uint64_t max_size,
                      char *error, size_t errsize);
/* UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE (UIDPLUS) or EXPUNGE. */
int imap_client_delete(struct imap_client *client, const uint32_t *uids, size_t n, char *error,
                       size_t errsize);

/* The header fields of one message, as imap_client_headers returns them. */
struct imap_client_header {
	uint32_t uid;
	uint64_t size;         /* RFC822.SIZE, 0 when the server sent none */
	char internaldate[40]; /* INTERNALDATE as sent ("24-Nov-2026 23:10:00 +0000"), or "" */
	char *fields;          /* the header fields as sent (CRLF lines, NUL-terminated), or "" */
	size_t fields_len;
};

/* UID FETCH first:last (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT
 * DATE MESSAGE-ID)]), last 0 meaning "*"; a server that refuses HEADER.FIELDS is asked for
 * BODY.PEEK[HEADER] instead. *list_r is malloc'ed, in UID order, one entry per UID in [first, last]
 * that has header fields (at most IMAP_CLIENT_MAX_HEADERS: ask for narrower ranges); free it with
 * imap_client_headers_free. Returns 0 or -1 with error. */
#define IMAP_CLIENT_MAX_HEADERS 1000
int imap_client_headers(struct imap_client *client, uint32_t first, uint32_t last,
                        struct imap_client_header **list_r, size_t *n_r, char *error,
                        size_t errsize);
void imap_client_headers_free(struct imap_client_header **list, size_t n);
/* The highest UID in the selected mailbox (UID FETCH * (UID)), 0 when it is empty (exists 0 from
 * the SELECT: the command is not sent). Returns 0 or -1 with error. */
int imap_client_highest_uid(struct imap_client *client, uint32_t exists, uint32_t *uid_r,
                            char *error, size_t errsize);
/* NOOP; *exists_r is set when the server reported EXISTS meanwhile (new mail may be there). */
int imap_client_noop(struct imap_client *client, bool *exists_r, char *error, size_t errsize);

/* IDLE (RFC 2177), for a selected mailbox. imap_client_idle_start sends IDLE and waits for the
 * continuation: 1 idling, 0 when the server refused IDLE (NO/BAD: the client stays usable, poll
 * with NOOP instead), -1 with error. *exists_r as for NOOP, for what came before the continuation.
 * While idling, the caller waits for the socket to be readable (or imap_client_buffered > 0) and
 * then calls imap_client_idle_read, which reads one whole response: 1 when it was EXISTS, 0 for
 * anything else ("* OK Still here", EXPUNGE, FETCH), -1 with error (the server said BYE, sent a
 * tagged reply, or the connection failed). imap_client_idle_done sends DONE and reads up to the
 * IDLE's tagged OK (RFC 2177 asks to do that and idle again at least every 29 minutes); *exists_r
 * as above. No other command may be sent while idling. */
int imap_client_idle_start(struct imap_client *client, bool *exists_r, char *error, size_t errsize);
int imap_client_idle_read(struct imap_client *client, char *error, size_t errsize);
int imap_client_idle_done(struct imap_client *client, bool *exists_r, char *error, size_t errsize);
bool imap_client_idling(const struct imap_client *client);
/* Bytes received and not consumed yet: a response may be waiting without the socket being
 * readable. */
size_t imap_client_buffered(const struct imap_client *client);
/* LOGOUT (after DONE when idling) and close; NULL is fine. */
void imap_client_logout(struct imap_client **client);

#endif
