/* conn: a blocking client connection with TLS, for the tern command-line client.
 *
 * TCP to host:port (IPv4/IPv6 through getaddrinfo), implicit TLS or a later STARTTLS upgrade,
 * certificate verification on by default (system CAs, or ca_file), hostname checked. Every read
 * has a timeout and every line a length cap: a server that lies or floods gets a clear error,
 * never unbounded memory. */
#ifndef TERN_CONN_H
#define TERN_CONN_H

#include <stdbool.h>
#include <stddef.h>

enum conn_security {
	CONN_SECURITY_TLS = 0,  /* implicit TLS from the first byte */
	CONN_SECURITY_STARTTLS, /* plaintext, then the protocol's STARTTLS/STLS; refuse if absent */
	CONN_SECURITY_NONE,     /* plaintext throughout (explicit choice; warned about) */
};

struct conn_options {
	const char *host;
	int port;
	enum conn_security security;
	const char *ca_file; /* PEM bundle to trust instead of the system CAs, or NULL */
	bool insecure;       /* skip certificate verification (explicit flag only) */
	int timeout_ms;      /* per read/write/connect; 0 means 30000 */
	size_t max_line;     /* longest line accepted; 0 means 65536 */
};

struct conn;

/* Connects (and for CONN_SECURITY_TLS completes the handshake). Returns 0 or -1 with error
 * ("cannot connect to mail.example.org:465: Connection refused", "certificate verify failed:
 * ..."). */
int conn_open(const struct conn_options *options, struct conn **conn_r, char *error,
              size_t errsize);
/* For tests and fuzzing: wraps an already connected stream socket (a socketpair end, say) in a
 * plaintext conn, as conn_open would after connecting. Takes ownership of fd (closed by
 * conn_close, also when this fails) and makes it non-blocking. From options it uses host (the
 * peer's name in messages and for a later conn_starttls; NULL means "peer"), port (in messages
 * when > 0), ca_file, insecure, timeout_ms and max_line; security is ignored. Returns 0, or -1
 * with error. */
int conn_from_fd(int fd, const struct conn_options *options, struct conn **conn_r, char *error,
                 size_t errsize);
/* Upgrades to TLS after the server's go-ahead. Fails if the server sent anything after its
 * go-ahead reply that we have already buffered (a response injected before TLS: the NO STARTTLS
 * attack); otherwise the handshake runs with the same verification as conn_open. */
int conn_starttls(struct conn *conn, char *error, size_t errsize);
bool conn_is_tls(const struct conn *conn);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
const char *conn_tls_info(const struct conn *conn);

/* Reads one line; *line_r points into the connection's buffer (valid until the next read), NUL-
 * terminated, without its CRLF (a bare LF also ends a line). *len_r excludes the terminator.
 * Returns 1, or -1 with error on timeout, EOF, a line over max_line, or a TLS error. */
int conn_read_line(struct conn *conn, const char **line_r, size_t *len_r, char *error,
                   size_t errsize);
/* Reads exactly len bytes (IMAP literals). Returns 1 or -1 with error. */
int conn_read_exact(struct conn *conn, void *buf, size_t len, char *error, size_t errsize);
/* Writes all of buf. Returns 0 or -1 with error. */
int conn_write(struct conn *conn, const void *buf, size_t len, char *error, size_t errsize);
int conn_printf(struct conn *conn, char *error, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Bytes received but not yet consumed. */
size_t conn_buffered(const struct conn *conn);
void conn_close(struct conn **conn);

#endif
