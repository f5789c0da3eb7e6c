/* conn: a client connection with timeouts, a capped line reader and OpenSSL client TLS. The
 * socket is non-blocking underneath so that every wait (connect, TLS records, reads, writes) goes
 * through poll() with the timeout; to callers every call blocks until done or failed. */
#include "client/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/client_private.h"
#include "lib/log.h"
#include "lib/util.h"

#define CONN_DEFAULT_TIMEOUT_MS 30000
/* Connecting, the implicit TLS handshake and the greeting: a live server answers at once, and a
 * wrong port or security (a plain-text server waiting for a command, a TLS port waiting for the
 * ClientHello) must fail fast with a hint, not after the full timeout. */
#define CONN_START_TIMEOUT_MS 10000
#define CONN_DEFAULT_MAX_LINE 65536
#define CONN_READ_CHUNK 16384

struct conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char *host;     /* as given, for verification and SNI */
	char peer[300]; /* "host:port" for messages */
	char *ca_file;
	bool insecure;
	int timeout_ms;
	bool starting; /* no line read yet: CONN_START_TIMEOUT_MS applies */
	size_t max_line;
	char *buf; /* bytes received; [start, end) not consumed yet */
	size_t bufsize, start, end;
	char tls_info[128];
};

const char *
conn_peer(const struct conn *conn)
{
	return conn->peer;
}

const char *
client_quote(char *dst, size_t dstsize, const char *src, size_t len)
{
	return log_escape(dst, dstsize, src, len);
}

void
client_error_prefix(char *error, size_t errsize, const char *fmt, ...)
{
	char what[512], old[1024];
	va_list ap;

	if (error == NULL || errsize == 0)
		return;
	str_copy(old, error, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(error, errsize, "%s: %s", what, old);
}

static void __attribute__((format(printf, 3, 4)))
conn_error(char *error, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL || errsize == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, errsize, fmt, ap);
	va_end(ap);
}

/* Describes OpenSSL's reason for a failure, with the certificate verification result when the
 * handshake failed on it, and empties the error queue. */
static void
conn_ssl_reason(struct conn *conn, char *out, size_t outsize)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	long verify = conn->ssl != NULL ? SSL_get_verify_result(conn->ssl) : X509_V_OK;

	if (verify != X509_V_OK && !conn->insecure)
		snprintf(out, outsize, "certificate verify failed: %s",
		         X509_verify_cert_error_string(verify));
	else if (reason != NULL)
		snprintf(out, outsize, "%s", reason);
	else if (e != 0)
		ERR_error_string_n(e, out, outsize);
	else if (errno != 0)
		snprintf(out, outsize, "%s", strerror(errno));
	else
		snprintf(out, outsize, "connection closed during the TLS exchange");
	ERR_clear_error();
}

/* The timeout of the next wait: shorter until the first line has arrived. */
static int
conn_timeout(const struct conn *conn)
{
	return conn->starting && conn->timeout_ms > CONN_START_TIMEOUT_MS ? CONN_START_TIMEOUT_MS
	                                                                  : conn->timeout_ms;
}

/* Waits until the socket is ready for events; -1 with error on timeout or poll failure. */
static int
conn_wait(struct conn *conn, short events, char *error, size_t errsize)
{
	struct pollfd pfd = {.fd = conn->fd, .events = events};

	for (;;) {
		int timeout = conn_timeout(conn);
		int n = poll(&pfd, 1, timeout);

		if (n > 0)
			return 0;
		if (n == 0 && conn->starting && conn->ssl == NULL && (events & POLLIN)) {
			conn_error(
			    error, errsize,
			    "no greeting from %s within %.1f s; if this port expects implicit "
			    "TLS (as 465, 993 and 995 do), the server is waiting for the client "
			    "to start TLS: use security tls for it",
			    conn->peer, timeout / 1000.0);
			return -1;
		}
		if (n == 0 && conn->starting && conn->ssl != NULL &&
		    !SSL_is_init_finished(conn->ssl)) {
			conn_error(error, errsize,
			           "no TLS answer from %s within %.1f s; the server may not speak "
			           "implicit TLS on this port: try security starttls",
			           conn->peer, timeout / 1000.0);
			return -1;
		}
		if (n == 0) {
			conn_error(error, errsize, "timed out after %d ms waiting for %s to %s",
			           timeout, conn->peer,
			           (events & POLLIN) ? "send data" : "accept data");
			return -1;
		}
		if (errno != EINTR) {
			conn_error(error, errsize, "poll on the connection to %s: %s", conn->peer,
			           strerror(errno));
			return -1;
		}
	}
}

/* Runs one SSL_read/SSL_write/SSL_connect/SSL_shutdown step's result: 1 to retry after waiting,
 * 0 on a clean close, -1 on error. */
static int
conn_ssl_retry(struct conn *conn, int ret, const char *what, char *error, size_t errsize)
{
	int err = SSL_get_error(conn->ssl, ret);
	char reason[256];

	if (err == SSL_ERROR_WANT_READ)
		return conn_wait(conn, POLLIN, error, errsize) == 0 ? 1 : -1;
	if (err == SSL_ERROR_WANT_WRITE)
		return conn_wait(conn, POLLOUT, error, errsize) == 0 ? 1 : -1;
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
		return 0; /* EOF without close_notify: the callers' framing catches truncation */
	conn_ssl_reason(conn, reason, sizeof(reason));
	conn_error(error, errsize, "TLS %s with %s failed: %s", what, conn->peer, reason);
	return -1;
}

/* Reads what is available (at least one byte): >0 bytes, 0 at EOF, -1 with error. */
static ssize_t
conn_recv(struct conn *conn, void *buf, size_t len, char *error, size_t errsize)
{
	for (;;) {
		if (conn->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			int n = SSL_read(conn->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
			if (n > 0)
				return n;
			int r = conn_ssl_retry(conn, n, "read", error, errsize);
			if (r <= 0)
				return r;
			continue;
		}
		ssize_t n = recv(conn->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (conn_wait(conn, POLLIN, error, errsize) != 0)
				return -1;
			continue;
		}
		conn_error(error, errsize, "read from %s: %s", conn->peer, strerror(errno));
		return -1;
	}
}

/* OpenSSL writes with write(2), which raises SIGPIPE on a closed socket; block the signal for
 * this thread around the call and swallow one we caused, so the process never dies of it. */
struct conn_sigpipe {
	sigset_t old;
	bool pending_before;
};

static void
conn_sigpipe_block(struct conn_sigpipe *s)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &s->old);
	sigpending(&pending);
	s->pending_before = sigismember(&pending, SIGPIPE) == 1;
}

static void
conn_sigpipe_restore(struct conn_sigpipe *s)
{
	if (!s->pending_before) {
		sigset_t set, pending;
		struct timespec zero = {0, 0};

		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE) == 1) {
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

/* Writes some of buf: >0 bytes written, -1 with error. */
static ssize_t
conn_send(struct conn *conn, const void *buf, size_t len, char *error, size_t errsize)
{
	for (;;) {
		if (conn->ssl != NULL) {
			struct conn_sigpipe sp;

			ERR_clear_error();
			errno = 0;
			conn_sigpipe_block(&sp);
			int n = SSL_write(conn->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
			conn_sigpipe_restore(&sp);
			if (n > 0)
				return n;
			int r = conn_ssl_retry(conn, n, "write", error, errsize);
			if (r < 0)
				return -1;
			if (r == 0) {
				conn_error(error, errsize, "%s closed the connection", conn->peer);
				return -1;
			}
			continue;
		}
		ssize_t n = send(conn->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (conn_wait(conn, POLLOUT, error, errsize) != 0)
				return -1;
			continue;
		}
		conn_error(error, errsize, "write to %s: %s", conn->peer, strerror(errno));
		return -1;
	}
}

/* True when host is an IPv4 or IPv6 address literal (certificates name those as IP:). */
static bool
conn_host_is_ip(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Connects a non-blocking socket to one address, waiting at most the timeout. */
static int
conn_connect_one(struct conn *conn, const struct addrinfo *ai, int *errno_r)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	struct pollfd pfd;
	int err = 0, n;
	socklen_t errlen = sizeof(err);

	if (fd < 0) {
		*errno_r = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*errno_r = errno;
		close(fd);
		return -1;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while ((n = poll(&pfd, 1, conn_timeout(conn))) < 0 && errno == EINTR)
		;
	if (n == 0) {
		*errno_r = ETIMEDOUT;
		close(fd);
		return -1;
	}
	if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0 || err != 0) {
		*errno_r = n < 0 ? errno : err != 0 ? err : errno;
		close(fd);
		return -1;
	}
	return fd;
}

/* Resolves the host and tries each address in turn. */
static int
conn_connect(struct conn *conn, int port, char *error, size_t errsize)
{
	/* No AI_ADDRCONFIG: it hides "localhost" on hosts whose only addresses are loopback. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char service[16];
	int rc, last = ECONNREFUSED;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(conn->host, service, &hints, &res);
	if (rc != 0) {
		conn_error(error, errsize, "cannot resolve %s: %s", conn->host,
		           rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		conn->fd = conn_connect_one(conn, ai, &last);
		if (conn->fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (conn->fd < 0) {
		if (last == ETIMEDOUT)
			conn_error(error, errsize,
			           "cannot connect to %s: no answer within %.1f s (a wrong host or "
			           "port, or a firewall dropping the connection?)",
			           conn->peer, conn_timeout(conn) / 1000.0);
		else
			conn_error(error, errsize, "cannot connect to %s: %s", conn->peer,
			           strerror(last));
		return -1;
	}
	return 0;
}

/* Makes the client context: TLS 1.2 minimum, peer verification against ca_file or the system
 * store unless insecure. */
static int
conn_tls_ctx(struct conn *conn, char *error, size_t errsize)
{
	char reason[256];

	conn->ctx = SSL_CTX_new(TLS_client_method());
	if (conn->ctx == NULL || SSL_CTX_set_min_proto_version(conn->ctx, TLS1_2_VERSION) != 1) {
		conn_ssl_reason(conn, reason, sizeof(reason));
		conn_error(error, errsize, "cannot make a TLS context: %s", reason);
		return -1;
	}
	/* A missing close_notify reads as EOF; every protocol here frames its own ends. */
	SSL_CTX_set_options(conn->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                                   SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (conn->insecure) {
		SSL_CTX_set_verify(conn->ctx, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	SSL_CTX_set_verify(conn->ctx, SSL_VERIFY_PEER, NULL);
	if (conn->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(conn->ctx, conn->ca_file, NULL) != 1) {
			conn_ssl_reason(conn, reason, sizeof(reason));
			conn_error(error, errsize, "cannot load CA file %s: %s", conn->ca_file,
			           reason);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(conn->ctx) != 1) {
		conn_ssl_reason(conn, reason, sizeof(reason));
		conn_error(error, errsize, "cannot load the system CA certificates: %s", reason);
		return -1;
	}
	return 0;
}

/* Runs the TLS handshake on the connected socket with SNI and hostname verification. */
static int
conn_handshake(struct conn *conn, char *error, size_t errsize)
{
	char reason[256];
	bool ip = conn_host_is_ip(conn->host);

	if (conn->ctx == NULL && conn_tls_ctx(conn, error, errsize) != 0)
		return -1;
	conn->ssl = SSL_new(conn->ctx);
	if (conn->ssl == NULL || SSL_set_fd(conn->ssl, conn->fd) != 1) {
		conn_ssl_reason(conn, reason, sizeof(reason));
		conn_error(error, errsize, "cannot start TLS with %s: %s", conn->peer, reason);
		return -1;
	}
	if (!ip && SSL_set_tlsext_host_name(conn->ssl, conn->host) != 1) {
		conn_ssl_reason(conn, reason, sizeof(reason));
		conn_error(error, errsize, "cannot set TLS server name %s: %s", conn->host, reason);
		return -1;
	}
	if (!conn->insecure) {
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), conn->host)
		            : SSL_set1_host(conn->ssl, conn->host);
		if (ok != 1) {
			conn_ssl_reason(conn, reason, sizeof(reason));
			conn_error(error, errsize, "cannot set the name to verify (%s): %s",
			           conn->host, reason);
			return -1;
		}
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		int n = SSL_connect(conn->ssl);
		if (n == 1)
			break;
		int r = conn_ssl_retry(conn, n, "handshake", error, errsize);
		if (r < 0)
			return -1;
		if (r == 0) {
			conn_error(error, errsize,
			           "TLS handshake with %s failed: connection closed by the server",
			           conn->peer);
			return -1;
		}
	}
	snprintf(conn->tls_info, sizeof(conn->tls_info), "%s %s", SSL_get_version(conn->ssl),
	         SSL_get_cipher_name(conn->ssl));
	return 0;
}

/* Makes an unconnected conn from the options (host already checked to be non-empty). */
static struct conn *
conn_new(const struct conn_options *options, const char *host)
{
	struct conn *conn = xcalloc(1, sizeof(*conn));
	size_t hlen = strlen(host);

	conn->fd = -1;
	/* "[::1]" is accepted as a spelling of "::1". */
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']')
		conn->host = xstrndup(host + 1, hlen - 2);
	else
		conn->host = xstrdup(host);
	if (options->port > 0)
		snprintf(conn->peer, sizeof(conn->peer),
		         strchr(conn->host, ':') ? "[%s]:%d" : "%s:%d", conn->host, options->port);
	else
		snprintf(conn->peer, sizeof(conn->peer), "%s", conn->host);
	conn->ca_file = options->ca_file != NULL ? xstrdup(options->ca_file) : NULL;
	conn->insecure = options->insecure;
	conn->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : CONN_DEFAULT_TIMEOUT_MS;
	conn->starting = true;
	conn->max_line = options->max_line > 0 ? options->max_line : CONN_DEFAULT_MAX_LINE;
	/* Room for the longest line, its CRLF, the NUL, and one read's worth of read-ahead. */
	conn->bufsize = conn->max_line + 3 + CONN_READ_CHUNK;
	conn->buf = xmalloc(conn->bufsize);
	return conn;
}

int
conn_from_fd(int fd, const struct conn_options *options, struct conn **conn_r, char *error,
             size_t errsize)
{
	const char *host =
	    options->host != NULL && options->host[0] != '\0' ? options->host : "peer";
	struct conn *conn = conn_new(options, host);
	int flags = fcntl(fd, F_GETFL);

	*conn_r = NULL;
	conn->fd = fd;
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		conn_error(error, errsize, "cannot make the socket to %s non-blocking: %s",
		           conn->peer, strerror(errno));
		conn_close(&conn);
		return -1;
	}
	*conn_r = conn;
	return 0;
}

int
conn_open(const struct conn_options *options, struct conn **conn_r, char *error, size_t errsize)
{
	struct conn *conn;
	const char *host = options->host != NULL ? options->host : "";

	*conn_r = NULL;
	if (host[0] == '\0' || options->port <= 0 || options->port > 65535) {
		conn_error(error, errsize, "invalid server address %s:%d", host, options->port);
		return -1;
	}
	conn = conn_new(options, host);
	if (conn_connect(conn, options->port, error, errsize) != 0) {
		conn_close(&conn);
		return -1;
	}
	if (options->security == CONN_SECURITY_TLS && conn_handshake(conn, error, errsize) != 0) {
		/* What OpenSSL says when the first bytes are no TLS record: a plain-text greeting.
		 */
		if (strstr(error, "wrong version number") != NULL ||
		    strstr(error, "packet length too long") != NULL ||
		    strstr(error, "unknown protocol") != NULL ||
		    strstr(error, "record layer failure") != NULL)
			client_error_prefix(
			    error, errsize,
			    "the server at %s does not speak implicit TLS; it greets "
			    "in plain text (a STARTTLS port?): use security starttls "
			    "for it",
			    conn->peer);
		conn_close(&conn);
		return -1;
	}
	*conn_r = conn;
	return 0;
}

int
conn_starttls(struct conn *conn, char *error, size_t errsize)
{
	char peek;
	ssize_t n;

	if (conn->ssl != NULL) {
		conn_error(error, errsize, "the connection to %s already uses TLS", conn->peer);
		return -1;
	}
	/* Anything after the go-ahead, buffered here or waiting in the kernel, was sent before TLS
	 * and could be an injected response (CVE-2011-0411): refuse rather than discard it. */
	n = recv(conn->fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
	if (conn->end > conn->start || n > 0) {
		conn_error(error, errsize,
		           "%s sent data before TLS started (possible STARTTLS injection); "
		           "refusing to continue",
		           conn->peer);
		return -1;
	}
	return conn_handshake(conn, error, errsize);
}

bool
conn_is_tls(const struct conn *conn)
{
	return conn->ssl != NULL;
}

const char *
conn_tls_info(const struct conn *conn)
{
	return conn->ssl != NULL ? conn->tls_info : "";
}

/* Moves unconsumed bytes to the front and reads more after them. */
static int
conn_fill(struct conn *conn, char *error, size_t errsize)
{
	ssize_t n;

	if (conn->start > 0) {
		memmove(conn->buf, conn->buf + conn->start, conn->end - conn->start);
		conn->end -= conn->start;
		conn->start = 0;
	}
	n = conn_recv(conn, conn->buf + conn->end, conn->bufsize - 1 - conn->end, error, errsize);
	if (n < 0)
		return -1;
	if (n == 0) {
		conn_error(error, errsize, "%s closed the connection", conn->peer);
		return -1;
	}
	conn->end += (size_t)n;
	return 0;
}

int
conn_read_line(struct conn *conn, const char **line_r, size_t *len_r, char *error, size_t errsize)
{
	size_t scanned = 0;

	for (;;) {
		char *p = conn->buf + conn->start;
		size_t avail = conn->end - conn->start;
		char *lf = memchr(p + scanned, '\n', avail - scanned);

		if (lf != NULL) {
			size_t len = (size_t)(lf - p);

			conn->start += len + 1;
			conn->starting = false;
			if (len > 0 && p[len - 1] == '\r')
				len--;
			if (len > conn->max_line)
				break;
			p[len] = '\0';
			*line_r = p;
			*len_r = len;
			return 1;
		}
		/* Without a newline in max_line + CRLF bytes the line is too long: stop reading. */
		if (avail >= conn->max_line + 2)
			break;
		scanned = avail;
		if (conn_fill(conn, error, errsize) != 0)
			return -1;
	}
	conn_error(error, errsize, "line from %s too long (over %zu bytes)", conn->peer,
	           conn->max_line);
	return -1;
}

int
conn_read_exact(struct conn *conn, void *buf, size_t len, char *error, size_t errsize)
{
	char *out = buf;
	size_t avail = conn->end - conn->start, take = avail < len ? avail : len;

	memcpy(out, conn->buf + conn->start, take);
	conn->start += take;
	for (size_t got = take; got < len;) {
		ssize_t n = conn_recv(conn, out + got, len - got, error, errsize);

		if (n < 0)
			return -1;
		if (n == 0) {
			conn_error(error, errsize,
			           "%s closed the connection (%zu of %zu bytes read)", conn->peer,
			           got, len);
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

int
conn_write(struct conn *conn, const void *buf, size_t len, char *error, size_t errsize)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = conn_send(conn, p, len, error, errsize);

		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
conn_printf(struct conn *conn, char *error, size_t errsize, const char *fmt, ...)
{
	char small[4096], *text = small;
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		conn_error(error, errsize, "cannot format a command for %s", conn->peer);
		return -1;
	}
	if ((size_t)n >= sizeof(small)) {
		text = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(text, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	ret = conn_write(conn, text, (size_t)n, error, errsize);
	/* Commands may carry credentials (AUTH, PASS, LOGIN); those always fit in small. */
	explicit_bzero(small, sizeof(small));
	if (text != small)
		free(text);
	return ret;
}

size_t
conn_buffered(const struct conn *conn)
{
	return conn->end - conn->start;
}

void
conn_close(struct conn **connp)
{
	struct conn *conn = *connp;

	if (conn == NULL)
		return;
	if (conn->ssl != NULL) {
		struct conn_sigpipe sp;

		/* One close_notify attempt; waiting for the peer's would only add latency. */
		conn_sigpipe_block(&sp);
		SSL_shutdown(conn->ssl);
		conn_sigpipe_restore(&sp);
		SSL_free(conn->ssl);
		ERR_clear_error();
	}
	SSL_CTX_free(conn->ctx);
	if (conn->fd >= 0)
		close(conn->fd);
	free(conn->buf);
	free(conn->host);
	free(conn->ca_file);
	free(conn);
	*connp = NULL;
}
