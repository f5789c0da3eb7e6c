/* netconn: a protocol session's connection: bufferevent, lines, budget, STARTTLS, close. */
#include "net/netconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "lib/config.h"
#include "lib/log.h"
#include "net/compress.h"

static void netconn_deadline_start(struct netconn *nc, enum netconn_deadline kind);
static void netconn_deadline_stop(struct netconn *nc, enum netconn_deadline kind);

static void
netconn_on_read(struct bufferevent *bev, void *arg)
{
	netconn_run(arg);
}

static void
netconn_on_write(struct bufferevent *bev, void *arg)
{
	struct netconn *nc = arg;

	if (nc->closing) {
		netconn_destroy(nc, "closed");
		return;
	}
	/* Output drained: go on with commands held back by the output mark (or a download). */
	netconn_run(nc);
}

/* The idle timers live on the socket's bufferevent, at the bottom of the chain (under TLS and
 * compression filters): it sees every byte the client sends and every byte it takes, and a
 * filter's own timers would fire on their own (libevent's TLS filter re-arms its write timer
 * on every write, also the one that empties it). */
static struct bufferevent *
netconn_timer_bev(const struct netconn *nc)
{
	struct bufferevent *b = nc->bev, *under;

	while ((under = bufferevent_get_underlying(b)) != NULL)
		b = under;
	return b;
}

static void
netconn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct netconn *nc = arg;
	const struct netconn_params *p = nc->params;

	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);

		netconn_deadline_stop(nc, NETCONN_DEADLINE_TLS);
		if (ssl != NULL)
			log_info("%s session=%s event=tls version=%s cipher=%s", p->proto, nc->id,
			         SSL_get_version(ssl), SSL_get_cipher_name(ssl));
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (nc->closing) {
			netconn_destroy(nc, "write-timeout");
			return;
		}
		if (p->ops->timeout != NULL &&
		    p->ops->timeout(nc->arg, (what & BEV_EVENT_WRITING) != 0))
			return;
		netconn_set_timeouts(nc, false);
		netconn_reply(nc, "%s", p->timeout_reply);
		netconn_close(nc, "timeout");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long err = bufferevent_get_openssl_error(bev);
		if (err != 0) {
			char buf[256];
			ERR_error_string_n(err, buf, sizeof(buf));
			log_info("%s session=%s event=tls-error ip=%s error=\"%s\"", p->proto,
			         nc->id, nc->peer.ip, buf);
			netconn_destroy(nc, "tls-error");
			return;
		}
		netconn_destroy(nc, "error");
		return;
	}
	if (what & BEV_EVENT_EOF)
		netconn_destroy(nc, nc->closing ? "quit" : "eof");
}

/* Callbacks, watermarks and timeouts for a (new or upgraded) bufferevent. */
static void
netconn_setup_bev(struct netconn *nc)
{
	bufferevent_setcb(nc->bev, netconn_on_read, netconn_on_write, netconn_on_event, nc);
	bufferevent_setwatermark(nc->bev, EV_READ, 0,
	                         nc->authenticated ? NETCONN_INPUT_HIGH
	                                           : NETCONN_PREAUTH_INPUT_HIGH);
	if (nc->params->write_low > 0)
		bufferevent_setwatermark(nc->bev, EV_WRITE, nc->params->write_low, 0);
	netconn_set_timeouts(nc, true);
	bufferevent_enable(nc->bev, EV_READ | EV_WRITE);
}

void
netconn_init(struct netconn *nc, struct bufferevent *bev, const struct listener_peer *peer,
             bool tls, const struct netconn_params *params, struct netconn_list *list, void *arg)
{
	unsigned char rnd[4];

	*nc = (struct netconn){.params = params, .arg = arg, .bev = bev, .peer = *peer, .tls = tls};
	randombytes_buf(rnd, sizeof(rnd));
	snprintf(nc->id, sizeof(nc->id), "%08llx%02x%02x%02x%02x",
	         (unsigned long long)(++list->next_id & 0xffffffff), rnd[0], rnd[1], rnd[2],
	         rnd[3]);
	nc->list = list;
	nc->list_next = list->head;
	if (list->head != NULL)
		list->head->list_prev = nc;
	list->head = nc;
	list->count++;
	netconn_setup_bev(nc);
	if (tls)
		netconn_deadline_start(nc, NETCONN_DEADLINE_TLS);
}

void
netconn_unlink(struct netconn *nc)
{
	struct netconn_list *list = nc->list;

	if (list == NULL)
		return;
	if (nc->list_prev != NULL)
		nc->list_prev->list_next = nc->list_next;
	else
		list->head = nc->list_next;
	if (nc->list_next != NULL)
		nc->list_next->list_prev = nc->list_prev;
	nc->list_prev = nc->list_next = NULL;
	nc->list = NULL;
	list->count--;
}

void
netconn_list_shutdown(struct netconn_list *list, netconn_bye_fn *bye)
{
	struct netconn *nc, *next;

	/* Closing never frees at once (netconn_close), so next stays valid. */
	for (nc = list->head; nc != NULL; nc = next) {
		next = nc->list_next;
		if (nc->dead || nc->closing || !bye(nc->arg))
			continue;
		netconn_close(nc, "shutdown");
	}
}

void
netconn_list_destroy(struct netconn_list *list, const char *reason)
{
	struct netconn *nc, *next;

	/* netconn_destroy may free the session (and unlink it): take next first. A session
	 * whose operation is in flight stays linked, dead, until the operation's callback. */
	for (nc = list->head; nc != NULL; nc = next) {
		next = nc->list_next;
		netconn_destroy(nc, reason);
	}
}

void *
netconn_list_first(const struct netconn_list *list)
{
	return list->head != NULL ? list->head->arg : NULL;
}

void
netconn_params_deadlines(struct netconn_params *params, const struct config *config)
{
	params->line_timeout.tv_sec = config_get_int(config, "server.command_timeout");
	params->tls_timeout.tv_sec = config_get_int(config, "server.tls_handshake_timeout");
}

/* The line or handshake deadline passed: neither restarts with every byte, so a client that
 * trickles a byte now and then cannot hold a connection (and its memory) forever. */
static void
netconn_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct netconn *nc = arg;
	const struct netconn_params *p = nc->params;
	enum netconn_deadline kind = nc->deadline_kind;
	struct evbuffer_ptr eol;
	size_t eol_len = 0;

	nc->deadline_kind = NETCONN_DEADLINE_NONE;
	if (nc->dead || nc->closing || nc->busy)
		return;
	if (kind == NETCONN_DEADLINE_TLS) {
		struct evbuffer *out = bufferevent_get_output(nc->bev);

		log_info("%s session=%s event=tls-timeout ip=%s", p->proto, nc->id, nc->peer.ip);
		/* The greeting queued for implicit TLS can never be sent: do not linger over it. */
		evbuffer_drain(out, evbuffer_get_length(out));
		netconn_destroy(nc, "tls-timeout");
		return;
	}
	/* A whole line waiting behind our own output (the client does not read its replies) is
	 * the write timeout's business. */
	eol =
	    evbuffer_search_eol(bufferevent_get_input(nc->bev), NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos >= 0)
		return;
	log_info("%s session=%s event=command-timeout ip=%s", p->proto, nc->id, nc->peer.ip);
	netconn_set_timeouts(nc, false);
	netconn_reply(nc, "%s", p->timeout_reply);
	netconn_close(nc, "command-timeout");
}

static void
netconn_deadline_start(struct netconn *nc, enum netconn_deadline kind)
{
	const struct timeval *tv =
	    kind == NETCONN_DEADLINE_TLS ? &nc->params->tls_timeout : &nc->params->line_timeout;

	if (tv->tv_sec == 0 && tv->tv_usec == 0)
		return; /* not configured */
	if (nc->deadline == NULL)
		nc->deadline =
		    event_new(bufferevent_get_base(nc->bev), -1, 0, netconn_on_deadline, nc);
	if (nc->deadline == NULL) {
		log_warnx("%s session=%s event=deadline-failed", nc->params->proto, nc->id);
		return;
	}
	nc->deadline_kind = kind;
	event_add(nc->deadline, tv);
}

/* Stops the deadline if it is of this kind. */
static void
netconn_deadline_stop(struct netconn *nc, enum netconn_deadline kind)
{
	if (nc->deadline_kind != kind)
		return;
	event_del(nc->deadline);
	nc->deadline_kind = NETCONN_DEADLINE_NONE;
}

void
netconn_line_partial(struct netconn *nc, bool partial)
{
	if (nc->dead || nc->closing)
		return;
	if (!partial) {
		netconn_deadline_stop(nc, NETCONN_DEADLINE_LINE);
		return;
	}
	if (nc->deadline_kind == NETCONN_DEADLINE_NONE && !nc->busy)
		netconn_deadline_start(nc, NETCONN_DEADLINE_LINE);
}

enum netconn_plaintext
netconn_plaintext_parse(const char *value)
{
	if (strcmp(value, "never") == 0)
		return NETCONN_PLAIN_NEVER;
	return strcmp(value, "always") == 0 ? NETCONN_PLAIN_ALWAYS : NETCONN_PLAIN_LOOPBACK;
}

bool
netconn_plaintext_ok(const struct netconn *nc)
{
	if (nc->tls)
		return true;
	switch (nc->params->plaintext) {
	case NETCONN_PLAIN_ALWAYS:
		return true;
	case NETCONN_PLAIN_LOOPBACK:
		return nc->peer.loopback;
	case NETCONN_PLAIN_NEVER:
		return false;
	}
	return false;
}

void
netconn_reply(struct netconn *nc, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(nc->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

bool
netconn_output_full(const struct netconn *nc)
{
	size_t high = nc->authenticated ? NETCONN_OUTPUT_HIGH : NETCONN_PREAUTH_OUTPUT_HIGH;

	return evbuffer_get_length(bufferevent_get_output(nc->bev)) > high;
}

void
netconn_set_authenticated(struct netconn *nc)
{
	nc->authenticated = true;
	if (nc->dead)
		return;
	bufferevent_setwatermark(nc->bev, EV_READ, 0, NETCONN_INPUT_HIGH);
}

void
netconn_set_timeouts(struct netconn *nc, bool read)
{
	nc->read_timeout = read;
	if (nc->busy || nc->bev == NULL)
		return;
	bufferevent_set_timeouts(netconn_timer_bev(nc), read ? &nc->params->idle_timeout : NULL,
	                         &nc->params->idle_timeout);
}

void
netconn_set_busy(struct netconn *nc, bool busy)
{
	if (nc->busy == busy)
		return;
	nc->busy = busy;
	if (nc->dead)
		return;
	if (busy) {
		/* Our work, not the client's silence: no timer may end the session meanwhile. */
		bufferevent_set_timeouts(netconn_timer_bev(nc), NULL, NULL);
		netconn_deadline_stop(nc, NETCONN_DEADLINE_LINE);
		return;
	}
	netconn_set_timeouts(nc, nc->read_timeout); /* the idle timers start afresh */
}

enum netconn_line
netconn_read_line(struct netconn *nc, size_t limit, char **line_r, size_t *len_r)
{
	struct evbuffer *in = bufferevent_get_input(nc->bev);
	size_t crlf = nc->params->limit_counts_crlf ? 2 : 0;
	struct evbuffer_ptr eol;
	size_t eol_len = 0;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	/* The line deadline runs from the first byte of a line until its end. */
	netconn_line_partial(nc, eol.pos < 0 && (nc->discarding || evbuffer_get_length(in) > 0));
	if (nc->discarding) {
		if (eol.pos < 0) {
			size_t n = evbuffer_get_length(in);
			nc->discarded += n;
			evbuffer_drain(in, n);
			if (nc->discarded > NETCONN_DISCARD_MAX) {
				netconn_reply(nc, "%s", nc->params->too_long_reply);
				netconn_close(nc, "line-too-long");
			}
			return NETCONN_LINE_MORE;
		}
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		nc->discarding = false;
		nc->discarded = 0;
		return NETCONN_LINE_TOO_LONG;
	}
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > limit) {
			nc->discarding = true;
			return NETCONN_LINE_DISCARDING;
		}
		return NETCONN_LINE_MORE;
	}
	if ((size_t)eol.pos + crlf > limit) {
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		return NETCONN_LINE_TOO_LONG;
	}
	*line_r = evbuffer_readln(in, len_r, EVBUFFER_EOL_CRLF);
	return *line_r != NULL ? NETCONN_LINE_OK : NETCONN_LINE_MORE;
}

void
netconn_run(struct netconn *nc)
{
	unsigned budget = NETCONN_CMDS_PER_WAKE;

	while (!nc->dead && budget-- > 0) {
		if (!nc->params->ops->step(nc->arg))
			return;
	}
	/* Budget spent with input left: yield to other sessions, come back on the next loop. */
	if (!nc->dead && !nc->closing && evbuffer_get_length(bufferevent_get_input(nc->bev)) > 0)
		bufferevent_trigger(nc->bev, EV_READ,
		                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
netconn_close(struct netconn *nc, const char *reason)
{
	if (nc->closing || nc->dead)
		return;
	log_debug("%s session=%s event=closing reason=%s", nc->params->proto, nc->id, reason);
	nc->closing = true;
	nc->params->ops->closing(nc->arg);
	bufferevent_disable(nc->bev, EV_READ);
	bufferevent_enable(nc->bev, EV_WRITE);
	/* Never free from inside command handling: the write callback (run from the loop, also
	 * when the output is already empty) does it. */
	bufferevent_trigger(nc->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

void
netconn_destroy(struct netconn *nc, const char *reason)
{
	if (nc->dead)
		return;
	nc->dead = true;
	if (nc->deadline != NULL) {
		event_free(nc->deadline);
		nc->deadline = NULL;
		nc->deadline_kind = NETCONN_DEADLINE_NONE;
	}
	listener_bev_close(nc->compressed ? compress_unwrap(nc->bev) : nc->bev);
	nc->bev = NULL;
	listener_conn_closed(&nc->peer);
	nc->params->ops->closed(nc->arg, reason); /* may free nc */
}

bool
netconn_starttls(struct netconn *nc, size_t *discarded_r)
{
	struct bufferevent *filter = listener_starttls(nc->bev, discarded_r);

	if (filter == NULL)
		return false;
	nc->bev = filter;
	nc->tls = true;
	netconn_setup_bev(nc);
	netconn_deadline_stop(nc, NETCONN_DEADLINE_LINE);
	netconn_deadline_start(nc, NETCONN_DEADLINE_TLS);
	return true;
}

bool
netconn_compression_active(const struct netconn *nc)
{
	SSL *ssl = nc->tls && !nc->compressed ? bufferevent_openssl_get_ssl(nc->bev) : NULL;

	return nc->compressed || (ssl != NULL && SSL_get_current_compression(ssl) != NULL);
}

const char *
netconn_compress(struct netconn *nc)
{
	struct bufferevent *filter;

	/* RFC 4978 3: not twice, and not on top of TLS compression. */
	if (netconn_compression_active(nc))
		return "Compression is already active";
	if ((filter = compress_wrap(nc->bev)) == NULL)
		return "Cannot start compression";
	nc->bev = filter;
	nc->compressed = true;
	netconn_setup_bev(nc);
	return NULL;
}
