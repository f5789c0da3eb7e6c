/* listener: bound sockets, accepted connections, connection limits and TLS wrapping.
 *
 * A listener owns one or more bound addresses ("127.0.0.1:2525", "[::1]:2525", "*:25") for one
 * protocol role. Each accepted connection is counted against the total and per-client-address
 * limits, wrapped in a bufferevent (a plain socket, or OpenSSL for implicit TLS), and handed to
 * the role's accept callback. Sessions call listener_conn_closed() when they go away. */
#ifndef TERN_LISTENER_H
#define TERN_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

struct event_base;
struct bufferevent;
struct listener;

/* What a session learns about its connection. */
struct listener_peer {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char ip[64]; /* numeric address without port, "127.0.0.1" or "::1" */
	int port;
	bool loopback; /* 127.0.0.0/8 or ::1 */
	char local_ip[64];
	int local_port;
};

/* Called on the loop thread with a ready bufferevent (BEV_OPT_CLOSE_ON_FREE; already in TLS
 * accept state for implicit-TLS listeners). The callee owns bev. */
typedef void listener_accept_cb(struct bufferevent *bev, const struct listener_peer *peer, bool tls,
                                void *arg);

struct listener_limits {
	unsigned max_connections;        /* across every listener */
	unsigned max_connections_per_ip; /* across every listener */
};

/* Global limits and the TLS context used for implicit TLS and STARTTLS. */
void listener_set_limits(const struct listener_limits *limits);
/* Replaces the current SSL_CTX (takes a reference; the old one is released). Connections already
 * accepted keep the context they started with. */
void listener_set_ssl_ctx(SSL_CTX *ctx);
SSL_CTX *listener_get_ssl_ctx(void);

/* Binds every address in addrs. name is the role for logs ("smtp", "submission"). Returns NULL
 * with error when an address is malformed or cannot be bound. */
struct listener *listener_new(struct event_base *base, const char *name, char *const *addrs,
                              size_t naddrs, bool implicit_tls, listener_accept_cb *cb, void *arg,
                              char *error, size_t errsize);
/* A line written to a plaintext connection refused by the limits before it is closed, such as
 * "421 4.7.0 Too many connections\r\n". Implicit-TLS connections are closed without a word. */
void listener_set_busy_reply(struct listener *listener, const char *reply);
/* Stops accepting (closes the sockets); live connections are not touched. */
void listener_disable(struct listener *listener);
void listener_free(struct listener **listener);

/* A session must call this exactly once when its connection ends. */
void listener_conn_closed(const struct listener_peer *peer);
/* Number of live connections (for shutdown). */
unsigned listener_conn_count(void);

/* Wraps a live plaintext connection in TLS for STARTTLS. Anything already buffered from the
 * client is discarded first (returned in *discarded_r): it was sent in the clear and must not be
 * treated as if it came through TLS (CVE-2011-0411). Returns the new bufferevent, which replaces
 * bev (free it with listener_bev_close, never bufferevent_free), or NULL. */
struct bufferevent *listener_starttls(struct bufferevent *bev, size_t *discarded_r);
/* Frees a session's bufferevent once what is queued on it has reached the socket (a STARTTLS
 * filter's ciphertext included), or after a short bound; the session may forget bev at once. */
void listener_bev_close(struct bufferevent *bev);

/* Parses "host:port", "[v6]:port" or "*:port". Returns 0 or -1. */
int listener_parse_address(const char *text, struct sockaddr_storage *ss, socklen_t *len_r);

#endif
