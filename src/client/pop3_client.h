/* pop3_client: downloads mail from a POP3 server (RFC 1939, 2449, 2595, 5034). */
#ifndef TERN_POP3_CLIENT_H
#define TERN_POP3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "client/conn.h"

struct pop3_client;

struct pop3_client_entry {
	unsigned number; /* message number in this session */
	uint64_t size;   /* octets from LIST */
	char uidl[71];   /* unique id from UIDL (1..70 printable characters) */
};

/* Greeting, CAPA, STLS when asked (error if not offered), then AUTH PLAIN if SASL PLAIN is
 * advertised, else USER/PASS. Returns 0 or -1 with an error quoting the server. */
int pop3_client_open(const struct conn_options *conn, const char *user, const char *password,
                     struct pop3_client **client_r, char *error, size_t errsize);
/* For tests and fuzzing: pop3_client_open over an already connected socket (see conn_from_fd;
 * fd is owned by the client from here on, closed also when this fails). */
int pop3_client_open_fd(int fd, const struct conn_options *conn, const char *user,
                        const char *password, struct pop3_client **client_r, char *error,
                        size_t errsize);
/* UIDL and LIST merged; *entries_r is malloc'ed (caller frees). Refuses a server without UIDL
 * (incremental fetching needs it). */
int pop3_client_list(struct pop3_client *client, struct pop3_client_entry **entries_r, size_t *n_r,
                     char *error, size_t errsize);
/* RETR into fd: dot-stuffing undone, CRLF line endings kept, exactly the message bytes. At most
 * max_size bytes are accepted (more is an error). Returns 0 or -1 with error; a truncated
 * response is an error. */
int pop3_client_retr(struct pop3_client *client, unsigned number, int fd, uint64_t max_size,
                     char *error, size_t errsize);
/* TOP n 0 into fd: the header section (and the empty line after it), as RETR. A refusal (-ERR:
 * TOP is optional) leaves the connection usable. */
int pop3_client_top(struct pop3_client *client, unsigned number, int fd, uint64_t max_size,
                    char *error, size_t errsize);
int pop3_client_dele(struct pop3_client *client, unsigned number, char *error, size_t errsize);
/* QUIT (which makes DELEs take effect) and close. Returns 0 or -1 when the server refused the
 * update. */
int pop3_client_quit(struct pop3_client **client, char *error, size_t errsize);
/* Close without QUIT (nothing deleted). */
void pop3_client_abort(struct pop3_client **client);

#endif
