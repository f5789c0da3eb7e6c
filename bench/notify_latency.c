/* notify-latency: idle IMAP (and push) clients, memory per connection, and the time from an SMTP
 * 250 to the new-mail event at each client (issues 5 and 6).
 *
 * 1. Opens --imap-clients IMAP connections (plaintext, loopback LOGIN): client i logs in as account
 *    i mod --accounts (user%03d@example.test / bench-password-%d from --first-user, as bench/run
 *    makes them), SELECTs INBOX and enters IDLE. The first --accounts clients go first and alone,
 * so each account's one argon2id hash is done (and the login cached) before the others log in; at
 *    most --connect-batch clients are being set up at once. With --push-port, --push-clients push
 *    connections follow (client i watches account i mod --accounts; AUTH PLAIN, WATCH INBOX, then
 *    one JSON line per event: docs/push-protocol.md).
 * 2. With --server-pid, reads the server's VmRSS before the first connection, once the first
 *    --accounts IMAP clients idle, once all IMAP clients idle and once all push clients are ready,
 *    and reports memory per connection from the differences.
 * 3. Sends --messages messages over SMTP to --smtp-port: message m goes to account m mod
 * --accounts, with the subject "notify-latency-<m>", over --smtp-concurrency connections (at most
 * one per account: an account's messages go one after the other on one connection, so the n-th
 * EXISTS an idling client sees is the n-th message sent to its account).
 * 4. Records when each 250 arrives and when each client sees each message (IMAP: "* n EXISTS" with
 *    n counted from the EXISTS of SELECT; push: the event line naming the subject), waits up to
 *    --wait seconds after the last 250 for the events still missing, and reports per path the
 *    latency from the 250 to the event (p50, p99, max, and min: an event can be read before the 250
 *    it belongs to, since the server publishes just before it answers) and the events lost:
 *    expected = the 250s for each ready client's account, lost = expected - seen. A client whose
 *    connection drops loses all its remaining events.
 *
 * With --json the figures are one JSON line on stdout (the human summary goes to stderr). Exit
 * status 0 only if every client got ready, every message got its 250 and no event was lost.
 * Single-threaded libevent loop: the latency includes this process's own scheduling, which on a
 * loaded 2-core machine is part of what a real client would see too. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define LAT_LINE_MAX 65536
#define LAT_SUBJECT "notify-latency-"

enum lat_error {
	LAT_ERR_IMAP_CONNECT,
	LAT_ERR_IMAP_GREETING,
	LAT_ERR_IMAP_LOGIN,
	LAT_ERR_IMAP_SELECT,
	LAT_ERR_IMAP_IDLE,
	LAT_ERR_IMAP_DROPPED, /* connection lost or BYE after it was idling */
	LAT_ERR_PUSH_CONNECT,
	LAT_ERR_PUSH_GREETING,
	LAT_ERR_PUSH_AUTH,
	LAT_ERR_PUSH_WATCH,
	LAT_ERR_PUSH_DROPPED,
	LAT_ERR_SMTP_CONNECT,
	LAT_ERR_SMTP_REJECTED, /* a MAIL, RCPT, DATA or final reply that was not 2xx/354 */
	LAT_ERR_SMTP_DROPPED,
	LAT_ERR_PROTOCOL,
	LAT_ERR_KINDS
};

static const char *const lat_error_names[LAT_ERR_KINDS] = {
    "imap_connect", "imap_greeting", "imap_login",    "imap_select",  "imap_idle",
    "imap_dropped", "push_connect",  "push_greeting", "push_auth",    "push_watch",
    "push_dropped", "smtp_connect",  "smtp_rejected", "smtp_dropped", "protocol",
};

enum lat_path { PATH_IMAP, PATH_PUSH, PATHS };
static const char *const lat_path_names[PATHS] = {"imap", "push"};

enum lat_cstate {
	C_OFF, /* not started */
	C_CONNECTING,
	C_GREETING,
	C_LOGIN,     /* IMAP LOGIN, push AUTH */
	C_SELECT,    /* IMAP SELECT, push WATCH */
	C_IDLE_WAIT, /* IMAP: waiting for "+" after IDLE */
	C_READY,
	C_DEAD,
};

/* One watching client, IMAP or push. */
struct lat_client {
	enum lat_path path;
	enum lat_cstate state;
	int account;
	struct bufferevent *bev;
	uint32_t base;  /* IMAP: EXISTS at SELECT */
	uint32_t seen;  /* IMAP: messages of the account seen so far */
	bool was_ready; /* got ready once (it may have dropped since) */
	int64_t *ev_ns; /* per message of the account (j = 0, 1, ...): when it was seen, 0 = not */
};

enum lat_sstate { S_CONNECTING, S_BANNER, S_EHLO, S_TXN, S_DATA_END, S_RSET, S_QUIT, S_DONE };

/* One SMTP connection sending the messages of its accounts, one at a time. */
struct lat_sender {
	enum lat_sstate state;
	struct bufferevent *bev;
	long *msgs; /* message numbers, in sending order */
	size_t nmsgs, pos;
	struct event *pace; /* --rate: waits for the next message's time */
	int replies;        /* of the pipelined MAIL, RCPT, DATA */
	bool txn_ok;
};

struct lat_options {
	const char *host;
	const char *imap_port;
	const char *smtp_port;
	const char *push_port;
	bool push_tls;
	int imap_clients;
	int push_clients;
	int accounts;
	int first_user;
	const char *user_format;
	const char *password_format;
	long messages;
	int smtp_concurrency;
	double rate;
	size_t size;
	double wait;
	int connect_batch;
	int timeout;
	long server_pid;
	bool json;
};

struct lat_run {
	struct lat_options opt;
	struct event_base *base;
	struct sockaddr_storage imap_addr, smtp_addr, push_addr;
	socklen_t imap_addr_len, smtp_addr_len, push_addr_len;
	SSL_CTX *ssl_ctx;
	struct lat_client *clients; /* IMAP first, then push */
	int nclients;
	int next_client; /* next to start */
	int phase_end;   /* clients below this index may start in this phase */
	int phase; /* 1: first IMAP per account, 2: other IMAP, 3: push, 4: sending, 5: waiting */
	int in_setup; /* clients started and not yet ready or dead */
	int settled;  /* clients ready or dead */
	int ready[PATHS];
	struct lat_sender *senders;
	int nsenders, senders_done;
	int64_t *t250_ns; /* per message: when its 250 was read; 0 = none; -1 = failed */
	int64_t *tdot_ns; /* per message: when its final "." was written */
	long delivered;
	long errors[LAT_ERR_KINDS];
	long unexpected[PATHS]; /* events for no message we sent, or seen twice */
	long rss_before, rss_warm, rss_imap, rss_push; /* KiB */
	struct timespec t_start, t_warm, t_setup, t_sent, t_end;
	int64_t send_start_ns; /* --rate: message m is sent no earlier than this + m / rate */
	struct event *tick;
	int64_t wait_deadline_ns;
	char *body;
	size_t body_len;
};

static struct lat_run run;

static int64_t
lat_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double
lat_elapsed(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

static void *
lat_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (p == NULL) {
		fprintf(stderr, "notify-latency: out of memory\n");
		exit(2);
	}
	return p;
}

/* VmRSS of a process in KiB (0 when unknown). */
static long
lat_server_rss(void)
{
	char path[64], line[256];
	long rss = 0;
	FILE *fp;

	if (run.opt.server_pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/status", run.opt.server_pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			rss = strtol(line + 6, NULL, 10);
	fclose(fp);
	return rss;
}

/* How many of the messages 0..M-1 go to account a (m mod accounts == a). */
static long
lat_account_messages(int a)
{
	long m = run.opt.messages, n = run.opt.accounts;

	return a < m ? (m - a + n - 1) / n : 0;
}

static void
lat_user_string(int account, const char *format, char *buf, size_t size)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(buf, size, format, run.opt.first_user + account);
#pragma GCC diagnostic pop
}

static void lat_send(struct bufferevent *bev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
lat_send(struct bufferevent *bev, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(bev), fmt, ap);
	va_end(ap);
}

/* Reads one CRLF (or LF) line into buf; 1 got one, 0 none yet, -1 too long. */
static int
lat_readline(struct bufferevent *bev, char *buf, size_t size)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	size_t len;

	if (eol.pos < 0)
		return evbuffer_get_length(in) > LAT_LINE_MAX ? -1 : 0;
	len = (size_t)eol.pos;
	if (len >= size)
		return -1;
	evbuffer_remove(in, buf, len);
	evbuffer_drain(in, 1);
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return 1;
}

/* ---- phases ------------------------------------------------------------------------------------
 */

static void lat_client_start(struct lat_client *c);
static void lat_senders_start(void);
static void lat_setup_phases(void);

/* Starts clients of this phase while there is room; moves on when the phase is done. */
static void
lat_setup_pump(void)
{
	static bool busy, again;

	if (busy) {
		/* Called back from a client that failed at once: the loop below picks it up. */
		again = true;
		return;
	}
	busy = true;
	do {
		again = false;
		lat_setup_phases();
	} while (again);
	busy = false;
	if (run.phase == 4 && run.senders == NULL)
		lat_senders_start();
}

/* The body of lat_setup_pump. */
static void
lat_setup_phases(void)
{
	while (run.phase <= 3) {
		while (run.next_client < run.phase_end && run.in_setup < run.opt.connect_batch) {
			run.in_setup++;
			lat_client_start(&run.clients[run.next_client++]);
		}
		if (run.settled < run.phase_end)
			return;
		/* Every client of this phase is ready or dead. */
		if (run.phase == 1) {
			run.rss_warm = lat_server_rss();
			clock_gettime(CLOCK_MONOTONIC, &run.t_warm);
			run.phase_end = run.opt.imap_clients;
		} else if (run.phase == 2) {
			run.rss_imap = lat_server_rss();
			run.phase_end = run.nclients;
		} else {
			run.rss_push = lat_server_rss();
			clock_gettime(CLOCK_MONOTONIC, &run.t_setup);
			fprintf(stderr,
			        "notify-latency: %d IMAP clients idling, %d push clients watching; "
			        "sending %ld "
			        "messages\n",
			        run.ready[PATH_IMAP], run.ready[PATH_PUSH], run.opt.messages);
		}
		run.phase++;
	}
}

/* A client is ready or dead (during setup or later). */
static void
lat_client_settle(struct lat_client *c, bool ready)
{
	bool in_setup = c->state != C_READY && c->state != C_DEAD;

	c->state = ready ? C_READY : C_DEAD;
	if (!ready && c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (!in_setup) {
		if (!ready)
			run.ready[c->path]--;
		return;
	}
	if (ready) {
		run.ready[c->path]++;
		c->was_ready = true;
		/* From now on the client may hear nothing for minutes. */
		bufferevent_set_timeouts(c->bev, NULL, NULL);
	}
	run.in_setup--;
	run.settled++;
	lat_setup_pump();
}

static void
lat_client_fail(struct lat_client *c, enum lat_error kind)
{
	run.errors[kind]++;
	lat_client_settle(c, false);
}

/* The client saw message j (0-based) of its account. */
static void
lat_client_saw(struct lat_client *c, long j, int64_t now)
{
	if (j < 0 || j >= lat_account_messages(c->account) || c->ev_ns[j] != 0) {
		run.unexpected[c->path]++;
		return;
	}
	c->ev_ns[j] = now;
}

/* ---- IMAP clients -------------------------------------------------------------------------------
 */

static void
lat_imap_line(struct lat_client *c, const char *line)
{
	char user[256], pass[256];
	unsigned long n;
	char *end;

	if (c->state == C_GREETING) {
		if (strncasecmp(line, "* OK", 4) != 0) {
			lat_client_fail(c, LAT_ERR_IMAP_GREETING);
			return;
		}
		lat_user_string(c->account, run.opt.user_format, user, sizeof(user));
		lat_user_string(c->account, run.opt.password_format, pass, sizeof(pass));
		c->state = C_LOGIN;
		lat_send(c->bev, "a1 LOGIN \"%s\" \"%s\"\r\n", user, pass);
		return;
	}
	if (line[0] == '*' && line[1] == ' ') {
		if (strncasecmp(line + 2, "BYE", 3) == 0) {
			lat_client_fail(c, c->state == C_READY ? LAT_ERR_IMAP_DROPPED
			                                       : LAT_ERR_PROTOCOL);
			return;
		}
		if (line[2] < '0' || line[2] > '9')
			return;
		n = strtoul(line + 2, &end, 10);
		if (strncasecmp(end, " EXISTS", 7) != 0)
			return;
		if (c->state == C_SELECT) {
			c->base = (uint32_t)n;
			return;
		}
		if ((c->state == C_READY || c->state == C_IDLE_WAIT) && n > c->base + c->seen) {
			int64_t now = lat_ns();

			while (c->base + c->seen < n)
				lat_client_saw(c, (long)c->seen++, now);
		}
		return;
	}
	if (line[0] == '+' && c->state == C_IDLE_WAIT) {
		lat_client_settle(c, true);
		return;
	}
	if (strncmp(line, "a1 ", 3) == 0 && c->state == C_LOGIN) {
		if (strncasecmp(line + 3, "OK", 2) != 0) {
			lat_client_fail(c, LAT_ERR_IMAP_LOGIN);
			return;
		}
		c->state = C_SELECT;
		lat_send(c->bev, "a2 SELECT INBOX\r\n");
		return;
	}
	if (strncmp(line, "a2 ", 3) == 0 && c->state == C_SELECT) {
		if (strncasecmp(line + 3, "OK", 2) != 0) {
			lat_client_fail(c, LAT_ERR_IMAP_SELECT);
			return;
		}
		c->state = C_IDLE_WAIT;
		lat_send(c->bev, "a3 IDLE\r\n");
		return;
	}
	if (strncmp(line, "a3 ", 3) == 0 && c->state == C_IDLE_WAIT) {
		lat_client_fail(c, LAT_ERR_IMAP_IDLE);
		return;
	}
	lat_client_fail(c, LAT_ERR_PROTOCOL);
}

/* ---- push clients (docs/push-protocol.md) -------------------------------------------------------
 */

/* A reply line that says no: "-ERR ...", "ERR ...", "NO ...", "BAD ..." or a JSON error. */
static bool
lat_push_refused(const char *line)
{
	return line[0] == '-' || strncasecmp(line, "ERR", 3) == 0 ||
	       strncasecmp(line, "NO ", 3) == 0 || strncasecmp(line, "BAD", 3) == 0 ||
	       strstr(line, "\"error\"") != NULL;
}

static void
lat_base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
		             (i + 2 < len ? in[i + 2] : 0);

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	out[o] = '\0';
}

static void
lat_push_line(struct lat_client *c, const char *line)
{
	const char *subject = strstr(line, LAT_SUBJECT);

	if (subject != NULL) {
		char *end;
		long m = strtol(subject + strlen(LAT_SUBJECT), &end, 10);

		if (c->state != C_READY || end == subject + strlen(LAT_SUBJECT) || m < 0 ||
		    m % run.opt.accounts != c->account) {
			run.unexpected[PATH_PUSH]++;
			return;
		}
		lat_client_saw(c, m / run.opt.accounts, lat_ns());
		return;
	}
	switch (c->state) {
	case C_GREETING: {
		char user[256], pass[256], sasl[520], b64[704];
		size_t ul, pl;

		if (lat_push_refused(line)) {
			lat_client_fail(c, LAT_ERR_PUSH_GREETING);
			return;
		}
		lat_user_string(c->account, run.opt.user_format, user, sizeof(user));
		lat_user_string(c->account, run.opt.password_format, pass, sizeof(pass));
		ul = strlen(user);
		pl = strlen(pass);
		sasl[0] = '\0';
		memcpy(sasl + 1, user, ul);
		sasl[1 + ul] = '\0';
		memcpy(sasl + 2 + ul, pass, pl);
		lat_base64((const unsigned char *)sasl, 2 + ul + pl, b64);
		c->state = C_LOGIN;
		lat_send(c->bev, "AUTH PLAIN %s\r\n", b64);
		return;
	}
	case C_LOGIN:
		if (lat_push_refused(line)) {
			lat_client_fail(c, LAT_ERR_PUSH_AUTH);
			return;
		}
		c->state = C_SELECT;
		lat_send(c->bev, "WATCH INBOX\r\n");
		return;
	case C_SELECT:
		if (lat_push_refused(line)) {
			lat_client_fail(c, LAT_ERR_PUSH_WATCH);
			return;
		}
		lat_client_settle(c, true);
		return;
	default:
		/* Keepalives and events of other kinds. */
		return;
	}
}

/* ---- client plumbing
 * ----------------------------------------------------------------------------- */

static void
lat_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct lat_client *c = arg;
	char line[4096];
	int rc;

	while (c->bev == bev && (rc = lat_readline(bev, line, sizeof(line))) != 0) {
		if (rc < 0) {
			lat_client_fail(c, LAT_ERR_PROTOCOL);
			return;
		}
		if (c->path == PATH_IMAP)
			lat_imap_line(c, line);
		else
			lat_push_line(c, line);
	}
}

static void
lat_client_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct lat_client *c = arg;
	bool imap = c->path == PATH_IMAP;

	if (events & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->state = C_GREETING;
		return;
	}
	if (c->state == C_CONNECTING) {
		lat_client_fail(c, imap ? LAT_ERR_IMAP_CONNECT : LAT_ERR_PUSH_CONNECT);
		return;
	}
	if (c->state == C_READY) {
		lat_client_fail(c, imap ? LAT_ERR_IMAP_DROPPED : LAT_ERR_PUSH_DROPPED);
		return;
	}
	lat_client_fail(c, LAT_ERR_PROTOCOL);
}

static void
lat_client_start(struct lat_client *c)
{
	struct timeval timeout = {run.opt.timeout, 0};
	const struct sockaddr *addr;
	int addr_len;

	c->ev_ns = lat_xcalloc((size_t)lat_account_messages(c->account) + 1, sizeof(*c->ev_ns));
	if (c->path == PATH_PUSH && run.opt.push_tls) {
		SSL *ssl = SSL_new(run.ssl_ctx);

		c->bev = ssl == NULL ? NULL
		                     : bufferevent_openssl_socket_new(run.base, -1, ssl,
		                                                      BUFFEREVENT_SSL_CONNECTING,
		                                                      BEV_OPT_CLOSE_ON_FREE);
	} else {
		c->bev = bufferevent_socket_new(run.base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	c->state = C_CONNECTING;
	if (c->bev == NULL) {
		lat_client_fail(c,
		                c->path == PATH_IMAP ? LAT_ERR_IMAP_CONNECT : LAT_ERR_PUSH_CONNECT);
		return;
	}
	bufferevent_setcb(c->bev, lat_client_read_cb, NULL, lat_client_event_cb, c);
	/* A read timeout only during set-up: an idling client may hear nothing for minutes. */
	bufferevent_set_timeouts(c->bev, &timeout, &timeout);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (c->path == PATH_IMAP) {
		addr = (const struct sockaddr *)&run.imap_addr;
		addr_len = (int)run.imap_addr_len;
	} else {
		addr = (const struct sockaddr *)&run.push_addr;
		addr_len = (int)run.push_addr_len;
	}
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)addr, addr_len) < 0)
		lat_client_fail(c,
		                c->path == PATH_IMAP ? LAT_ERR_IMAP_CONNECT : LAT_ERR_PUSH_CONNECT);
}

/* ---- SMTP senders
 * -------------------------------------------------------------------------------- */

static void
lat_sender_finish(struct lat_sender *s)
{
	if (s->pace != NULL)
		evtimer_del(s->pace);
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->state == S_DONE)
		return;
	s->state = S_DONE;
	run.senders_done++;
	if (run.senders_done == run.nsenders) {
		clock_gettime(CLOCK_MONOTONIC, &run.t_sent);
		run.phase = 5;
		run.wait_deadline_ns = lat_ns() + (int64_t)(run.opt.wait * 1e9);
	}
}

/* Marks the rest of the sender's messages failed and stops it. */
static void
lat_sender_fail(struct lat_sender *s, enum lat_error kind)
{
	run.errors[kind]++;
	for (size_t i = s->pos; i < s->nmsgs; i++)
		run.t250_ns[s->msgs[i]] = -1;
	s->pos = s->nmsgs;
	lat_sender_finish(s);
}

static void lat_sender_send(struct lat_sender *s);

static void
lat_pace_cb(evutil_socket_t fd, short what, void *arg)
{
	lat_sender_send(arg);
}

/* The next message, at once or (with --rate) when its time comes. */
static void
lat_sender_next(struct lat_sender *s)
{
	int64_t due, now;

	if (s->pos < s->nmsgs && run.opt.rate > 0) {
		due = run.send_start_ns + (int64_t)((double)s->msgs[s->pos] * 1e9 / run.opt.rate);
		now = lat_ns();
		if (due > now) {
			struct timeval tv = {(time_t)((due - now) / 1000000000),
			                     (suseconds_t)((due - now) % 1000000000 / 1000)};

			if (s->pace == NULL)
				s->pace = evtimer_new(run.base, lat_pace_cb, s);
			evtimer_add(s->pace, &tv);
			return;
		}
	}
	lat_sender_send(s);
}

static void
lat_sender_send(struct lat_sender *s)
{
	long m;
	char rcpt[256];

	if (s->pos >= s->nmsgs) {
		s->state = S_QUIT;
		lat_send(s->bev, "QUIT\r\n");
		return;
	}
	m = s->msgs[s->pos];
	lat_user_string((int)(m % run.opt.accounts), run.opt.user_format, rcpt, sizeof(rcpt));
	s->state = S_TXN;
	s->replies = 0;
	s->txn_ok = true;
	lat_send(s->bev, "MAIL FROM:<bench@notify.test>\r\nRCPT TO:<%s>\r\nDATA\r\n", rcpt);
}

static void
lat_sender_reply(struct lat_sender *s, int code)
{
	long m = s->pos < s->nmsgs ? s->msgs[s->pos] : -1;

	switch (s->state) {
	case S_BANNER:
		if (code != 220) {
			lat_sender_fail(s, LAT_ERR_SMTP_CONNECT);
			return;
		}
		s->state = S_EHLO;
		lat_send(s->bev, "EHLO notify-latency.test\r\n");
		return;
	case S_EHLO:
		if (code != 250) {
			lat_sender_fail(s, LAT_ERR_SMTP_REJECTED);
			return;
		}
		lat_sender_next(s);
		return;
	case S_TXN:
		s->replies++;
		if ((s->replies < 3 && code != 250) || (s->replies == 3 && code != 354))
			s->txn_ok = false;
		if (s->replies < 3)
			return;
		if (!s->txn_ok) {
			run.errors[LAT_ERR_SMTP_REJECTED]++;
			run.t250_ns[m] = -1;
			s->pos++;
			if (code == 354) {
				/* DATA went ahead after all: end it empty, then go on. */
				s->state = S_DATA_END;
				lat_send(s->bev, ".\r\n");
			} else {
				s->state = S_RSET;
				lat_send(s->bev, "RSET\r\n");
			}
			return;
		}
		{
			char rcpt[256];

			lat_user_string((int)(m % run.opt.accounts), run.opt.user_format, rcpt,
			                sizeof(rcpt));
			lat_send(s->bev,
			         "From: <bench@notify.test>\r\nTo: <%s>\r\nSubject: " LAT_SUBJECT
			         "%ld\r\n"
			         "Message-ID: <notify-latency.%ld.%ld@bench.test>\r\n\r\n",
			         rcpt, m, m, (long)getpid());
			evbuffer_add(bufferevent_get_output(s->bev), run.body, run.body_len);
			lat_send(s->bev, ".\r\n");
			run.tdot_ns[m] = lat_ns();
		}
		s->state = S_DATA_END;
		return;
	case S_DATA_END:
		if (s->txn_ok) {
			if (code == 250) {
				run.t250_ns[m] = lat_ns();
				run.delivered++;
			} else {
				run.t250_ns[m] = -1;
				run.errors[LAT_ERR_SMTP_REJECTED]++;
			}
			s->pos++;
		}
		lat_sender_next(s);
		return;
	case S_RSET:
		lat_sender_next(s);
		return;
	case S_QUIT:
		lat_sender_finish(s);
		return;
	default:
		lat_sender_fail(s, LAT_ERR_PROTOCOL);
	}
}

static void
lat_sender_read_cb(struct bufferevent *bev, void *arg)
{
	struct lat_sender *s = arg;
	char line[1024];
	int rc;

	while (s->bev == bev && (rc = lat_readline(bev, line, sizeof(line))) != 0) {
		if (rc < 0 || strlen(line) < 3) {
			lat_sender_fail(s, LAT_ERR_PROTOCOL);
			return;
		}
		if (line[3] == '-')
			continue; /* a continuation of a multi-line reply */
		lat_sender_reply(s, atoi(line));
	}
}

static void
lat_sender_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct lat_sender *s = arg;

	if (events & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->state = S_BANNER;
		return;
	}
	if (s->state == S_QUIT) {
		lat_sender_finish(s);
		return;
	}
	lat_sender_fail(s, s->state == S_CONNECTING ? LAT_ERR_SMTP_CONNECT : LAT_ERR_SMTP_DROPPED);
}

/* One connection per group of accounts: message m goes on connection (m mod accounts) mod senders.
 */
static void
lat_senders_start(void)
{
	struct timeval timeout = {run.opt.timeout, 0};
	int n = run.opt.smtp_concurrency;

	run.nsenders = n;
	run.senders = lat_xcalloc((size_t)n, sizeof(*run.senders));
	run.send_start_ns = lat_ns();
	for (long m = 0; m < run.opt.messages; m++)
		run.senders[(m % run.opt.accounts) % n].nmsgs++;
	for (int i = 0; i < n; i++) {
		run.senders[i].msgs = lat_xcalloc(run.senders[i].nmsgs, sizeof(long));
		run.senders[i].nmsgs = 0;
	}
	for (long m = 0; m < run.opt.messages; m++) {
		struct lat_sender *s = &run.senders[(m % run.opt.accounts) % n];

		s->msgs[s->nmsgs++] = m;
	}
	for (int i = 0; i < n; i++) {
		struct lat_sender *s = &run.senders[i];

		s->state = S_CONNECTING;
		s->bev = bufferevent_socket_new(run.base, -1, BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL) {
			lat_sender_fail(s, LAT_ERR_SMTP_CONNECT);
			continue;
		}
		bufferevent_setcb(s->bev, lat_sender_read_cb, NULL, lat_sender_event_cb, s);
		bufferevent_set_timeouts(s->bev, &timeout, &timeout);
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&run.smtp_addr,
		                               (int)run.smtp_addr_len) < 0)
			lat_sender_fail(s, LAT_ERR_SMTP_CONNECT);
	}
}

/* ---- the clock ---------------------------------------------------------------------------------
 */

static long
lat_count_seen(void)
{
	long seen = 0;

	for (int i = 0; i < run.nclients; i++) {
		const struct lat_client *c = &run.clients[i];
		long k = lat_account_messages(c->account);

		if (c->state != C_READY)
			continue;
		for (long j = 0; j < k; j++)
			seen +=
			    c->ev_ns[j] != 0 && run.t250_ns[j * run.opt.accounts + c->account] > 0;
	}
	return seen;
}

static long
lat_count_expected(void)
{
	long expected = 0;

	for (int i = 0; i < run.nclients; i++) {
		const struct lat_client *c = &run.clients[i];
		long k = lat_account_messages(c->account);

		if (c->state != C_READY)
			continue;
		for (long j = 0; j < k; j++)
			expected += run.t250_ns[j * run.opt.accounts + c->account] > 0;
	}
	return expected;
}

/* While waiting for the last events: stop once all are in or the wait is over. */
static void
lat_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	if (run.phase != 5)
		return;
	if (lat_ns() >= run.wait_deadline_ns || lat_count_seen() >= lat_count_expected())
		event_base_loopexit(run.base, NULL);
}

static void
lat_sigint_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(run.base, NULL);
}

/* ---- figures ------------------------------------------------------------------------------------
 */

static int
lat_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

struct lat_figures {
	long clients, ready, expected, seen, lost, before_250, unexpected;
	double p50, p99, max, min;        /* ms, from the 250 */
	double dot_p50, dot_p99, dot_max; /* ms, from the final "." */
};

static void
lat_grow(int64_t **v, size_t *cap, size_t n)
{
	if (n < *cap)
		return;
	*cap *= 2;
	*v = realloc(*v, *cap * sizeof(**v));
	if (*v == NULL) {
		fprintf(stderr, "notify-latency: out of memory\n");
		exit(2);
	}
}

static double
lat_pct_ms(const int64_t *v, size_t n, double p)
{
	return n ? (double)v[(size_t)(p * (double)(n - 1) + 0.5)] / 1e6 : 0;
}

static void
lat_path_figures(enum lat_path path, struct lat_figures *f)
{
	size_t cap = 1024, n = 0;
	int64_t *v = lat_xcalloc(cap, sizeof(*v)), *d = lat_xcalloc(cap, sizeof(*d));

	memset(f, 0, sizeof(*f));
	f->unexpected = run.unexpected[path];
	for (int i = 0; i < run.nclients; i++) {
		const struct lat_client *c = &run.clients[i];
		long k = lat_account_messages(c->account);

		if (c->path != path)
			continue;
		f->clients++;
		if (c->state == C_READY)
			f->ready++;
		/* A client that never got ready expected nothing (its set-up error is counted); one
		 * that dropped later lost whatever it did not see. */
		if (!c->was_ready)
			continue;
		for (long j = 0; j < k; j++) {
			int64_t t250 = run.t250_ns[j * run.opt.accounts + c->account];

			if (t250 <= 0)
				continue;
			f->expected++;
			if (c->ev_ns[j] == 0)
				continue;
			f->seen++;
			if (n == cap) {
				size_t dcap = cap;

				lat_grow(&v, &cap, n);
				lat_grow(&d, &dcap, n);
			}
			d[n] = c->ev_ns[j] - run.tdot_ns[j * run.opt.accounts + c->account];
			v[n++] = c->ev_ns[j] - t250;
			f->before_250 += c->ev_ns[j] < t250;
		}
	}
	f->lost = f->expected - f->seen;
	if (n > 0) {
		qsort(v, n, sizeof(*v), lat_cmp_i64);
		qsort(d, n, sizeof(*d), lat_cmp_i64);
		f->p50 = lat_pct_ms(v, n, 0.50);
		f->p99 = lat_pct_ms(v, n, 0.99);
		f->max = (double)v[n - 1] / 1e6;
		f->min = (double)v[0] / 1e6;
		f->dot_p50 = lat_pct_ms(d, n, 0.50);
		f->dot_p99 = lat_pct_ms(d, n, 0.99);
		f->dot_max = (double)d[n - 1] / 1e6;
	}
	free(v);
	free(d);
}

static void
lat_report(void)
{
	const struct lat_options *o = &run.opt;
	FILE *human = o->json ? stderr : stdout;
	struct lat_figures f[PATHS];
	long errors = 0;
	int nimap = o->imap_clients, npush = run.nclients - nimap;
	double per_imap = 0, per_push = 0, per_imap_all = 0;
	double setup_s = lat_elapsed(&run.t_start, &run.t_setup);
	double warm_s = run.t_warm.tv_sec ? lat_elapsed(&run.t_start, &run.t_warm) : 0;
	double send_s = lat_elapsed(&run.t_setup, &run.t_sent);

	for (int p = 0; p < PATHS; p++)
		lat_path_figures((enum lat_path)p, &f[p]);
	for (int i = 0; i < LAT_ERR_KINDS; i++)
		errors += run.errors[i];
	if (nimap > o->accounts && run.rss_imap > 0)
		per_imap = (double)(run.rss_imap - run.rss_warm) / (nimap - o->accounts);
	if (nimap > 0 && run.rss_imap > 0)
		per_imap_all = (double)(run.rss_imap - run.rss_before) / nimap;
	if (npush > 0 && run.rss_push > 0)
		per_push = (double)(run.rss_push - run.rss_imap) / npush;

	fprintf(human,
	        "notify-latency: imap %s:%s x %d, push %s x %d%s, %d accounts, %ld messages of %zu "
	        "bytes "
	        "over %d SMTP connections\n",
	        o->host, o->imap_port, nimap, o->push_port ? o->push_port : "-", npush,
	        o->push_tls ? " (TLS)" : "", o->accounts, o->messages, run.body_len, run.nsenders);
	fprintf(
	    human,
	    "  set-up %.2f s (the first client per account: %.2f s); sending %.2f s%s: %ld of %ld "
	    "messages got 250 (%.0f msgs/s)\n",
	    setup_s, warm_s, send_s, o->rate > 0 ? " (paced)" : "", run.delivered, o->messages,
	    send_s > 0 ? run.delivered / send_s : 0);
	if (o->server_pid > 0) {
		fprintf(human,
		        "  server VmRSS: %.1f MiB before, %.1f MiB with %d IMAP idling (first "
		        "login per "
		        "account done at %.1f MiB)",
		        run.rss_before / 1024.0, run.rss_imap / 1024.0, nimap,
		        run.rss_warm / 1024.0);
		if (npush > 0)
			fprintf(human, ", %.1f MiB with push too", run.rss_push / 1024.0);
		fprintf(human,
		        "\n  per IMAP IDLE connection: %.2f KiB (after the first per account), "
		        "%.2f KiB "
		        "(all, from before)\n",
		        per_imap, per_imap_all);
		if (npush > 0)
			fprintf(human, "  per push connection: %.2f KiB\n", per_push);
	}
	for (int p = 0; p < PATHS; p++) {
		if (f[p].clients == 0) {
			fprintf(human, "  %s: no clients\n", lat_path_names[p]);
			continue;
		}
		fprintf(
		    human,
		    "  %s: %ld/%ld clients ready at the end; events %ld of %ld, lost %ld, "
		    "unexpected %ld\n"
		    "    250 -> event: p50 %.3f ms, p99 %.3f ms, max %.3f ms, min %.3f ms (%ld "
		    "events read before "
		    "their 250)\n    final \".\" -> event: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		    lat_path_names[p], f[p].ready, f[p].clients, f[p].seen, f[p].expected,
		    f[p].lost, f[p].unexpected, f[p].p50, f[p].p99, f[p].max, f[p].min,
		    f[p].before_250, f[p].dot_p50, f[p].dot_p99, f[p].dot_max);
	}
	fprintf(human, "  errors: %ld", errors);
	for (int i = 0; i < LAT_ERR_KINDS; i++)
		if (run.errors[i])
			fprintf(human, " %s=%ld", lat_error_names[i], run.errors[i]);
	fprintf(human, "\n");
	if (!o->json)
		return;
	printf(
	    "{\"imap_clients\":%d,\"push_clients\":%d,\"push_tls\":%s,\"accounts\":%d,\"messages\":"
	    "%ld,"
	    "\"size\":%zu,\"smtp_connections\":%d,\"rate\":%.1f,\"delivered\":%ld,\"setup_s\":%.3f,"
	    "\"warm_s\":%.3f,\"send_s\":%.3f,"
	    "\"rss_before_kib\":%ld,\"rss_warm_kib\":%ld,\"rss_imap_kib\":%ld,\"rss_push_kib\":%ld,"
	    "\"imap_kib_per_conn\":%.3f,\"imap_kib_per_conn_all\":%.3f,\"push_kib_per_conn\":%.3f",
	    nimap, npush, o->push_tls ? "true" : "false", o->accounts, o->messages, run.body_len,
	    run.nsenders, o->rate, run.delivered, setup_s, warm_s, send_s, run.rss_before,
	    run.rss_warm, run.rss_imap, run.rss_push, per_imap, per_imap_all, per_push);
	for (int p = 0; p < PATHS; p++)
		printf(
		    ",\"%s\":{\"clients\":%ld,\"ready\":%ld,\"expected\":%ld,\"seen\":%ld,\"lost\":"
		    "%ld,"
		    "\"unexpected\":%ld,\"before_250\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_"
		    "ms\":%.3f,"
		    "\"min_ms\":%.3f,\"dot_p50_ms\":%.3f,\"dot_p99_ms\":%.3f,\"dot_max_ms\":%.3f}",
		    lat_path_names[p], f[p].clients, f[p].ready, f[p].expected, f[p].seen,
		    f[p].lost, f[p].unexpected, f[p].before_250, f[p].p50, f[p].p99, f[p].max,
		    f[p].min, f[p].dot_p50, f[p].dot_p99, f[p].dot_max);
	printf(",\"errors\":%ld,\"errors_by_kind\":{", errors);
	bool first = true;

	for (int i = 0; i < LAT_ERR_KINDS; i++) {
		if (!run.errors[i])
			continue;
		printf("%s\"%s\":%ld", first ? "" : ",", lat_error_names[i], run.errors[i]);
		first = false;
	}
	printf("}}\n");
}

/* ---- main
 * ---------------------------------------------------------------------------------------- */

static void
lat_usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: notify-latency [--host H] [--imap-port P] [--smtp-port P] [--push-port P "
	    "[--push-tls]]\n"
	    "                      [--imap-clients N] [--push-clients N] [--accounts A] "
	    "[--first-user K]\n"
	    "                      [--messages M] [--smtp-concurrency S] [--rate R] [--size B] "
	    "[--wait T]\n"
	    "                      [--connect-batch N] [--timeout S] [--server-pid PID] [--json]\n"
	    "  --host              server address (default 127.0.0.1)\n"
	    "  --imap-port         plaintext IMAP port (default 2143)\n"
	    "  --smtp-port         SMTP MX port to deliver to (default 2525)\n"
	    "  --push-port         push service port; without it no push clients are started\n"
	    "  --push-tls          implicit TLS to the push port (the certificate is not "
	    "verified)\n"
	    "  --imap-clients      IDLE clients (default 1000)\n"
	    "  --push-clients      push clients (default 1000 with --push-port)\n"
	    "  --accounts          accounts the clients and messages rotate over (default 100)\n"
	    "  --first-user        number of the first account (default 1)\n"
	    "  --user-format       printf format of a login from its number (default "
	    "user%%03d@example.test)\n"
	    "  --password-format   printf format of a password from the number (default "
	    "bench-password-%%d)\n"
	    "  --messages          messages to deliver (default 2000)\n"
	    "  --smtp-concurrency  SMTP connections (default and at most --accounts)\n"
	    "  --rate              messages per second, spread evenly (default 0: as fast as the "
	    "SMTP\n"
	    "                      connections go)\n"
	    "  --size              approximate message size in bytes (default 4096)\n"
	    "  --wait              seconds to wait after the last 250 for missing events (default "
	    "5)\n"
	    "  --connect-batch     clients being set up at once (default 200)\n"
	    "  --timeout           seconds of silence before a set-up or SMTP step fails (default "
	    "60)\n"
	    "  --server-pid        read this process's VmRSS between the phases (the server's "
	    "pid)\n"
	    "  --json              print the figures as one JSON line on stdout\n");
}

static bool
lat_format_ok(const char *f)
{
	int conversions = 0;

	for (const char *p = f; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		p++;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p != 'd')
			return false;
		conversions++;
	}
	return conversions == 1;
}

static bool
lat_resolve(const char *port, struct sockaddr_storage *addr, socklen_t *len)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(run.opt.host, port, &hints, &ai);

	if (rc != 0) {
		fprintf(stderr, "notify-latency: %s:%s: %s\n", run.opt.host, port,
		        gai_strerror(rc));
		return false;
	}
	memcpy(addr, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return true;
}

static void
lat_make_body(size_t size)
{
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog; notify-latency filler 012345\r\n";
	size_t want = size > 300 ? size - 200 : 100;

	run.body = lat_xcalloc(want + sizeof(line), 1);
	while (run.body_len < want) {
		memcpy(run.body + run.body_len, line, sizeof(line) - 1);
		run.body_len += sizeof(line) - 1;
	}
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"imap-port", required_argument, NULL, 'i'},
	    {"smtp-port", required_argument, NULL, 's'},
	    {"push-port", required_argument, NULL, 'p'},
	    {"push-tls", no_argument, NULL, 'T'},
	    {"imap-clients", required_argument, NULL, 'I'},
	    {"push-clients", required_argument, NULL, 'Q'},
	    {"accounts", required_argument, NULL, 'a'},
	    {"first-user", required_argument, NULL, 'F'},
	    {"user-format", required_argument, NULL, 'U'},
	    {"password-format", required_argument, NULL, 'P'},
	    {"messages", required_argument, NULL, 'm'},
	    {"smtp-concurrency", required_argument, NULL, 'c'},
	    {"rate", required_argument, NULL, 'r'},
	    {"size", required_argument, NULL, 'z'},
	    {"wait", required_argument, NULL, 'w'},
	    {"connect-batch", required_argument, NULL, 'b'},
	    {"timeout", required_argument, NULL, 't'},
	    {"server-pid", required_argument, NULL, 'S'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct lat_options *o = &run.opt;
	int ch;

	o->host = "127.0.0.1";
	o->imap_port = "2143";
	o->smtp_port = "2525";
	o->imap_clients = 1000;
	o->push_clients = -1;
	o->accounts = 100;
	o->first_user = 1;
	o->user_format = "user%03d@example.test";
	o->password_format = "bench-password-%d";
	o->messages = 2000;
	o->size = 4096;
	o->wait = 5;
	o->connect_batch = 200;
	o->timeout = 60;
	while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (ch) {
		case 'h':
			o->host = optarg;
			break;
		case 'i':
			o->imap_port = optarg;
			break;
		case 's':
			o->smtp_port = optarg;
			break;
		case 'p':
			o->push_port = optarg;
			break;
		case 'T':
			o->push_tls = true;
			break;
		case 'I':
			o->imap_clients = atoi(optarg);
			break;
		case 'Q':
			o->push_clients = atoi(optarg);
			break;
		case 'a':
			o->accounts = atoi(optarg);
			break;
		case 'F':
			o->first_user = atoi(optarg);
			break;
		case 'U':
			o->user_format = optarg;
			break;
		case 'P':
			o->password_format = optarg;
			break;
		case 'm':
			o->messages = atol(optarg);
			break;
		case 'c':
			o->smtp_concurrency = atoi(optarg);
			break;
		case 'r':
			o->rate = atof(optarg);
			break;
		case 'z':
			o->size = (size_t)atol(optarg);
			break;
		case 'w':
			o->wait = atof(optarg);
			break;
		case 'b':
			o->connect_batch = atoi(optarg);
			break;
		case 't':
			o->timeout = atoi(optarg);
			break;
		case 'S':
			o->server_pid = atol(optarg);
			break;
		case 'j':
			o->json = true;
			break;
		case 'H':
			lat_usage(stdout);
			return 0;
		default:
			lat_usage(stderr);
			return 2;
		}
	}
	if (o->push_clients < 0)
		o->push_clients = o->push_port != NULL ? 1000 : 0;
	if (o->push_port == NULL)
		o->push_clients = 0;
	if (o->smtp_concurrency <= 0 || o->smtp_concurrency > o->accounts)
		o->smtp_concurrency = o->accounts;
	if (optind != argc || o->imap_clients < 0 || o->accounts <= 0 || o->messages < 0 ||
	    o->timeout <= 0 || o->connect_batch <= 0 || o->wait < 0 || o->rate < 0 ||
	    !lat_format_ok(o->user_format) || !lat_format_ok(o->password_format)) {
		lat_usage(stderr);
		return 2;
	}
	if (!lat_resolve(o->imap_port, &run.imap_addr, &run.imap_addr_len) ||
	    !lat_resolve(o->smtp_port, &run.smtp_addr, &run.smtp_addr_len) ||
	    (o->push_port != NULL &&
	     !lat_resolve(o->push_port, &run.push_addr, &run.push_addr_len)))
		return 2;
	if (o->push_tls) {
		run.ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (run.ssl_ctx == NULL) {
			fprintf(stderr, "notify-latency: SSL_CTX_new failed\n");
			return 2;
		}
		SSL_CTX_set_verify(run.ssl_ctx, SSL_VERIFY_NONE, NULL);
	}

	signal(SIGPIPE, SIG_IGN);
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur <
		        (rlim_t)(o->imap_clients + o->push_clients + o->smtp_concurrency + 64)) {
			fprintf(stderr,
			        "notify-latency: %d clients + %d SMTP connections need more "
			        "descriptors than "
			        "the limit of %lu (ulimit -n)\n",
			        o->imap_clients + o->push_clients, o->smtp_concurrency,
			        (unsigned long)rl.rlim_cur);
			return 2;
		}
	}
	lat_make_body(o->size);
	run.base = event_base_new();
	if (run.base == NULL) {
		fprintf(stderr, "notify-latency: event_base_new failed\n");
		return 2;
	}
	run.nclients = o->imap_clients + o->push_clients;
	run.clients = lat_xcalloc((size_t)run.nclients, sizeof(*run.clients));
	for (int i = 0; i < run.nclients; i++) {
		run.clients[i].path = i < o->imap_clients ? PATH_IMAP : PATH_PUSH;
		run.clients[i].account =
		    (i < o->imap_clients ? i : i - o->imap_clients) % o->accounts;
	}
	run.t250_ns = lat_xcalloc((size_t)o->messages + 1, sizeof(*run.t250_ns));
	run.tdot_ns = lat_xcalloc((size_t)o->messages + 1, sizeof(*run.tdot_ns));

	struct event *sigint = evsignal_new(run.base, SIGINT, lat_sigint_cb, NULL);
	struct timeval tick = {0, 50000};

	evsignal_add(sigint, NULL);
	run.tick = event_new(run.base, -1, EV_PERSIST, lat_tick_cb, NULL);
	event_add(run.tick, &tick);
	run.rss_before = lat_server_rss();
	clock_gettime(CLOCK_MONOTONIC, &run.t_start);
	run.phase = 1;
	run.phase_end = o->imap_clients < o->accounts ? o->imap_clients : o->accounts;
	lat_setup_pump();
	event_base_dispatch(run.base);
	clock_gettime(CLOCK_MONOTONIC, &run.t_end);
	if (run.phase < 5) {
		fprintf(stderr, "notify-latency: interrupted in phase %d\n", run.phase);
		if (run.phase < 4)
			clock_gettime(CLOCK_MONOTONIC, &run.t_setup);
		run.t_sent = run.t_end;
	}
	lat_report();

	struct lat_figures f[PATHS];
	bool ok = run.phase == 5;

	for (int p = 0; p < PATHS; p++) {
		lat_path_figures((enum lat_path)p, &f[p]);
		ok = ok && f[p].lost == 0 && f[p].ready == f[p].clients;
	}
	for (int i = 0; i < LAT_ERR_KINDS; i++)
		ok = ok && run.errors[i] == 0;
	ok = ok && run.delivered == o->messages;

	for (int i = 0; i < run.nclients; i++) {
		if (run.clients[i].bev != NULL)
			bufferevent_free(run.clients[i].bev);
		free(run.clients[i].ev_ns);
	}
	for (int i = 0; i < run.nsenders; i++) {
		if (run.senders[i].bev != NULL)
			bufferevent_free(run.senders[i].bev);
		if (run.senders[i].pace != NULL)
			event_free(run.senders[i].pace);
		free(run.senders[i].msgs);
	}
	event_free(run.tick);
	event_free(sigint);
	event_base_free(run.base);
	if (run.ssl_ctx != NULL)
		SSL_CTX_free(run.ssl_ctx);
	free(run.clients);
	free(run.senders);
	free(run.t250_ns);
	free(run.tdot_ns);
	free(run.body);
	return ok ? 0 : 1;
}
