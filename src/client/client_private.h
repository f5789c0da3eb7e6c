/* client_private: helpers shared by the SMTP, POP3 and IMAP clients, implemented in conn.c. */
#ifndef TERN_CLIENT_PRIVATE_H
#define TERN_CLIENT_PRIVATE_H

#include <stddef.h>

#include "client/conn.h"

/* Longest piece of server text quoted in an error message (escaped, then cut with "..."). */
#define CLIENT_QUOTE_MAX 300

/* "host:port" ("[::1]:143" for IPv6 literals), for error messages; lives as long as conn. */
const char *conn_peer(const struct conn *conn);
/* Escapes untrusted server bytes for an error message into dst (see log_escape) and returns dst. */
const char *client_quote(char *dst, size_t dstsize, const char *src, size_t len);
/* Puts "formatted text: " in front of the message already in error (names the failed step). */
void client_error_prefix(char *error, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
