/* smtp_client: sends one or more messages to an SMTP server (RFC 5321, 3207, 4954, 1870, 2920).
 * Works with any standards-compliant server, not only ternd. */
#ifndef TERN_SMTP_CLIENT_H
#define TERN_SMTP_CLIENT_H

#include <stddef.h>

#include "client/conn.h"

struct smtp_client;

struct smtp_client_options {
	struct conn_options conn;
	const char *helo; /* our name in EHLO; NULL: the local host name */
	const char *user; /* NULL: no AUTH */
	const char *password;
};

/* Greeting, EHLO, STARTTLS when asked (error if the server does not offer it; EHLO again after),
 * AUTH PLAIN (or LOGIN if PLAIN is not offered) when a user is given. Returns 0 or -1 with an
 * error that quotes the server's reply ("server refused login: 535 5.7.8 ..."). */
int smtp_client_open(const struct smtp_client_options *options, struct smtp_client **client_r,
                     char *error, size_t errsize);
/* For tests and fuzzing: smtp_client_open over an already connected socket (see conn_from_fd;
 * fd is owned by the client from here on, closed also when this fails). */
int smtp_client_open_fd(int fd, const struct smtp_client_options *options,
                        struct smtp_client **client_r, char *error, size_t errsize);
/* Sends one message: MAIL (with SIZE= when offered, and refused up front if larger than the
 * server's SIZE), RCPT for each recipient, DATA with dot-stuffing (data must use CRLF line
 * endings; bare LFs are converted), pipelined when PIPELINING is offered. Every reply is
 * checked. Returns 0, or -1 with an error naming the refused recipient or step and quoting the
 * server ("recipient <x@y> refused: 550 5.1.1 ..."). */
int smtp_client_send(struct smtp_client *client, const char *from, const char *const *rcpts,
                     size_t nrcpts, const char *data, size_t len, char *error, size_t errsize);
/* QUIT and close. */
void smtp_client_close(struct smtp_client **client);

#endif
