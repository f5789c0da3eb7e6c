/* listener: bound sockets, accepted connections, per-address limits and TLS wrapping. */
#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"

/* Callbacks run from the event loop, never inside the call that triggered them: with TLS, adding
 * to a bufferevent's output writes at once, and a failed SSL_write would otherwise run the event
 * callback (which may free the session) in the middle of a session's reply (netconn_reply from
 * a notify callback, a FETCH loop). Deferred, the session finishes what it was doing first. */
#define LISTENER_BEV_OPTS BEV_OPT_DEFER_CALLBACKS

#define LISTENER_BACKLOG 4096

struct listener {
	struct event_base *base;
	char *name;
	bool implicit_tls;
	listener_accept_cb *cb;
	void *arg;
	char *busy_reply;
	struct evconnlistener **evls;
	size_t nevls;
	struct event *resume; /* re-enables accepting after a pause for EMFILE and the like */
};

static struct listener_limits listener_limits = {10000, 100};
static unsigned listener_total;
/* Live connections per client address (ip -> unsigned *), made at the first connection. Clients
 * choose their addresses (a /64 holds plenty), hence the keyed hash. */
static struct hash *listener_ips;
static SSL_CTX *listener_ssl_ctx;

void
listener_set_limits(const struct listener_limits *limits)
{
	listener_limits = *limits;
}

void
listener_set_ssl_ctx(SSL_CTX *ctx)
{
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	if (listener_ssl_ctx != NULL)
		SSL_CTX_free(listener_ssl_ctx);
	listener_ssl_ctx = ctx;
}

SSL_CTX *
listener_get_ssl_ctx(void)
{
	return listener_ssl_ctx;
}

unsigned
listener_conn_count(void)
{
	return listener_total;
}

/* Counts a new connection from ip; false when a limit refuses it. */
static bool
listener_conn_admit(const char *ip)
{
	unsigned *count;

	if (listener_total >= listener_limits.max_connections)
		return false;
	if (listener_ips == NULL)
		listener_ips = hash_new();
	count = hash_get_str(listener_ips, ip);
	if (count != NULL && *count >= listener_limits.max_connections_per_ip)
		return false;
	if (count == NULL) {
		count = xcalloc(1, sizeof(*count));
		hash_put_str(listener_ips, ip, count);
	}
	(*count)++;
	listener_total++;
	return true;
}

void
listener_conn_closed(const struct listener_peer *peer)
{
	unsigned *count = listener_ips != NULL ? hash_get_str(listener_ips, peer->ip) : NULL;

	if (count == NULL) {
		log_error("listener event=conn-closed-unknown ip=%s", peer->ip);
		return;
	}
	listener_total--;
	if (--*count == 0)
		free(hash_remove_str(listener_ips, peer->ip));
}

/* Fills ip/port strings and the loopback flag from a socket address. */
static void
listener_describe(const struct sockaddr *sa, char *ip, size_t ipsize, int *port_r, bool *loopback_r)
{
	ip[0] = '\0';
	*port_r = 0;
	if (loopback_r != NULL)
		*loopback_r = false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, (socklen_t)ipsize);
		*port_r = ntohs(sin->sin_port);
		if (loopback_r != NULL)
			*loopback_r = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, (socklen_t)ipsize);
		*port_r = ntohs(sin6->sin6_port);
		if (loopback_r != NULL)
			*loopback_r = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
		/* An IPv4-mapped address names the IPv4 client. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			struct in_addr a4;
			memcpy(&a4, &sin6->sin6_addr.s6_addr[12], 4);
			inet_ntop(AF_INET, &a4, ip, (socklen_t)ipsize);
			if (loopback_r != NULL)
				*loopback_r = (ntohl(a4.s_addr) >> 24) == 127;
		}
	}
}

static void
listener_on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   void *arg)
{
	struct listener *l = arg;
	struct listener_peer peer;
	struct sockaddr_storage local;
	socklen_t locallen = sizeof(local);
	struct bufferevent *bev;
	int one = 1;

	memset(&peer, 0, sizeof(peer));
	memcpy(&peer.addr, sa,
	       (size_t)salen < sizeof(peer.addr) ? (size_t)salen : sizeof(peer.addr));
	peer.addrlen = (socklen_t)salen;
	listener_describe(sa, peer.ip, sizeof(peer.ip), &peer.port, &peer.loopback);
	if (getsockname(fd, (struct sockaddr *)&local, &locallen) == 0)
		listener_describe((struct sockaddr *)&local, peer.local_ip, sizeof(peer.local_ip),
		                  &peer.local_port, NULL);

	if (!listener_conn_admit(peer.ip)) {
		log_warnx("%s event=connection-refused ip=%s reason=limit total=%u", l->name,
		          peer.ip, listener_total);
		if (!l->implicit_tls && l->busy_reply != NULL)
			(void)!write(fd, l->busy_reply, strlen(l->busy_reply));
		evutil_closesocket(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	if (l->implicit_tls) {
		SSL *ssl = listener_ssl_ctx != NULL ? SSL_new(listener_ssl_ctx) : NULL;
		if (ssl == NULL) {
			log_error("%s event=tls-unavailable ip=%s", l->name, peer.ip);
			evutil_closesocket(fd);
			listener_conn_closed(&peer);
			return;
		}
		bev = bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                     BEV_OPT_CLOSE_ON_FREE | LISTENER_BEV_OPTS);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev =
		    bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE | LISTENER_BEV_OPTS);
	}
	if (bev == NULL) {
		log_error("%s event=bufferevent-failed ip=%s", l->name, peer.ip);
		evutil_closesocket(fd);
		listener_conn_closed(&peer);
		return;
	}
	(void)evl;
	l->cb(bev, &peer, l->implicit_tls, l->arg);
}

static void
listener_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	for (size_t i = 0; i < l->nevls; i++) {
		if (l->evls[i] != NULL)
			evconnlistener_enable(l->evls[i]);
	}
}

static void
listener_on_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval pause = {0, 250000};

	/* EMFILE and friends: the socket stays readable, so pause instead of spinning. */
	log_warnx("%s event=accept-error errno=%d error=\"%s\" pause_ms=250", l->name, err,
	          evutil_socket_error_to_string(err));
	for (size_t i = 0; i < l->nevls; i++) {
		if (l->evls[i] != NULL)
			evconnlistener_disable(l->evls[i]);
	}
	if (l->resume == NULL)
		l->resume = evtimer_new(l->base, listener_on_resume, l);
	evtimer_add(l->resume, &pause);
	(void)evl;
}

#define LISTENER_LINGER_SECONDS 5
#define LISTENER_TLS_WRITE_HIGH (256 * 1024) /* ciphertext queued under a STARTTLS filter */

static void
listener_linger_done(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void
listener_linger_event(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

/* Keeps bev only until its output is written; errors and the timeout end it early. */
static void
listener_linger(struct bufferevent *bev)
{
	struct timeval tv = {LISTENER_LINGER_SECONDS, 0};

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		bufferevent_free(bev);
		return;
	}
	bufferevent_setcb(bev, NULL, listener_linger_done, listener_linger_event, NULL);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, NULL, &tv);
	bufferevent_disable(bev, EV_READ);
	bufferevent_enable(bev, EV_WRITE);
}

struct bufferevent *
listener_starttls(struct bufferevent *bev, size_t *discarded_r)
{
	SSL_CTX *ctx = listener_ssl_ctx;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct bufferevent *filter;
	SSL *ssl;

	*discarded_r = evbuffer_get_length(in);
	evbuffer_drain(in, *discarded_r);
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		return NULL;
	/* Not BEV_OPT_CLOSE_ON_FREE: listener_bev_close frees the filter and lets the socket
	 * underneath finish writing the last ciphertext before it goes. */
	filter = bufferevent_openssl_filter_new(bufferevent_get_base(bev), bev, ssl,
	                                        BUFFEREVENT_SSL_ACCEPTING, LISTENER_BEV_OPTS);
	if (filter == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
	/* A filter moves everything it has into the socket bufferevent unless that one has a write
	 * high-water mark; without one, a client that reads nothing would make us hold all we ever
	 * wrote (a whole RETR) in memory. */
	bufferevent_setwatermark(bev, EV_WRITE, 0, LISTENER_TLS_WRITE_HIGH);
	return filter;
}

void
listener_bev_close(struct bufferevent *bev)
{
	struct bufferevent *under = bufferevent_get_underlying(bev);
	SSL *ssl;

	if (under == NULL) {
		listener_linger(bev);
		return;
	}
	/* A STARTTLS filter: push what it holds down, free it and its SSL, then linger on the
	 * socket. */
	bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
	ssl = bufferevent_openssl_get_ssl(bev);
	bufferevent_free(bev);
	if (ssl != NULL)
		SSL_free(ssl);
	listener_linger(under);
}

int
listener_parse_address(const char *text, struct sockaddr_storage *ss, socklen_t *len_r)
{
	char host[256];
	const char *colon, *portstr;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
			return -1;
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		portstr = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || (size_t)(colon - text) >= sizeof(host) ||
		    strchr(text, ':') != colon)
			return -1;
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		portstr = colon + 1;
	}
	if (*portstr == '\0')
		return -1;
	errno = 0;
	port = strtol(portstr, &end, 10);
	if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
		return -1;

	if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
		return 0;
	}
	if (text[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
		return 0;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
		return -1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	*len_r = sizeof(*sin6);
	return 0;
}

/* Makes a bound, listening, non-blocking socket for one address. */
static int
listener_bind(const char *text, char *error, size_t errsize)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (listener_parse_address(text, &ss, &len) < 0) {
		snprintf(error, errsize, "bad listen address '%s' (want host:port or [v6]:port)",
		         text);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(error, errsize, "socket for %s: %s", text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTENER_BACKLOG) < 0) {
		snprintf(error, errsize, "cannot listen on %s: %s", text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct listener *
listener_new(struct event_base *base, const char *name, char *const *addrs, size_t naddrs,
             bool implicit_tls, listener_accept_cb *cb, void *arg, char *error, size_t errsize)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	l->base = base;
	l->name = xstrdup(name);
	l->implicit_tls = implicit_tls;
	l->cb = cb;
	l->arg = arg;
	l->evls = xcalloc(naddrs, sizeof(*l->evls));
	for (size_t i = 0; i < naddrs; i++) {
		int fd = listener_bind(addrs[i], error, errsize);
		if (fd < 0) {
			listener_free(&l);
			return NULL;
		}
		l->evls[i] = evconnlistener_new(base, listener_on_accept, l,
		                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
		                                0 /* listen() already called */, fd);
		if (l->evls[i] == NULL) {
			close(fd);
			snprintf(error, errsize, "cannot listen on %s", addrs[i]);
			listener_free(&l);
			return NULL;
		}
		evconnlistener_set_error_cb(l->evls[i], listener_on_error);
		l->nevls++;
		log_info("%s event=listening address=%s tls=%s", name, addrs[i],
		         implicit_tls ? "implicit" : "starttls");
	}
	return l;
}

void
listener_set_busy_reply(struct listener *l, const char *reply)
{
	free(l->busy_reply);
	l->busy_reply = reply != NULL ? xstrdup(reply) : NULL;
}

void
listener_disable(struct listener *l)
{
	if (l->resume != NULL) {
		event_free(l->resume);
		l->resume = NULL;
	}
	for (size_t i = 0; i < l->nevls; i++) {
		if (l->evls[i] != NULL) {
			evconnlistener_free(l->evls[i]);
			l->evls[i] = NULL;
		}
	}
}

void
listener_free(struct listener **lp)
{
	struct listener *l = *lp;

	if (l == NULL)
		return;
	listener_disable(l);
	free(l->evls);
	free(l->busy_reply);
	free(l->name);
	free(l);
	*lp = NULL;
}
