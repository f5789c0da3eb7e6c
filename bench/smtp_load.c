/* smtp-load: an SMTP load generator for benchmarking ternd.
 *
 * Opens --concurrency sessions to --host:--port; each says EHLO once, then loops over transactions
 * with MAIL FROM, RCPT TO and DATA pipelined in one write (RFC 2920), sends a --size byte message,
 * and waits for the reply to the final ".". Recipients rotate over the --rcpt list. It stops after
 * --messages messages or --duration seconds (whichever comes first), then every session sends QUIT.
 *
 * Reports messages per second (delivered / wall time from start to the last reply), the latency
 * from writing the final "." to reading the 250 (p50, p99, max), and errors by kind. With --json
 * the figures are printed as one JSON line on stdout (the human summary goes to stderr).
 *
 * Single-threaded libevent loop: one core of load generation is far more than the SMTP server under
 * test needs from a client, and keeps the latency measurement free of cross-thread noise. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

enum load_error {
	LOAD_ERR_CONNECT,
	LOAD_ERR_BANNER,
	LOAD_ERR_EHLO,
	LOAD_ERR_MAIL,
	LOAD_ERR_RCPT,
	LOAD_ERR_DATA,
	LOAD_ERR_FINAL_4XX,
	LOAD_ERR_FINAL_5XX,
	LOAD_ERR_CLOSED,
	LOAD_ERR_TIMEOUT,
	LOAD_ERR_PROTOCOL,
	LOAD_ERR_COUNT
};

static const char *const load_error_names[LOAD_ERR_COUNT] = {
    "connect",         "banner",        "ehlo",      "mail_rejected",
    "rcpt_rejected",   "data_rejected", "final_4xx", "final_5xx",
    "connection_lost", "timeout",       "protocol",
};

enum load_state {
	LOAD_CONNECTING,
	LOAD_BANNER,
	LOAD_EHLO,
	LOAD_TXN,      /* waiting for the MAIL, RCPT and DATA replies */
	LOAD_DATA_END, /* waiting for the reply to the final "." */
	LOAD_RSET,
	LOAD_QUIT,
};

struct load_options {
	const char *host;
	const char *port;
	int concurrency;
	long messages;
	size_t size;
	const char **rcpts;
	int rcpt_count;
	const char *from;
	double duration;
	int timeout;
	bool json;
};

struct load_session {
	int id;
	enum load_state state;
	struct bufferevent *bev;
	struct event *retry;
	int replies_seen; /* in LOAD_TXN: how many of the three replies arrived */
	int txn_codes[3];
	bool in_message; /* a message is claimed and not yet accounted for */
	long msg_no;     /* sequence number of the claimed message */
	int rcpt_index;
	int connect_failures; /* consecutive */
	struct timespec dot_sent;
};

struct load_run {
	struct load_options opt;
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct load_session *sessions;
	int active_sessions;
	long issued;
	long delivered;
	long failed;
	long errors[LOAD_ERR_COUNT];
	bool stopping;
	struct timespec start;
	struct timespec last_done;
	uint32_t *latencies_us;
	size_t latency_count;
	size_t latency_cap;
	long pid;
	char *body; /* shared message body after the per-message headers */
	size_t body_len;
};

static struct load_run run;

static double
load_elapsed(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

static void
load_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void *
load_xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL) {
		fprintf(stderr, "smtp-load: out of memory\n");
		exit(2);
	}
	return p;
}

static void
load_record_latency(double seconds)
{
	if (run.latency_count == run.latency_cap) {
		size_t cap = run.latency_cap ? run.latency_cap * 2 : 65536;
		uint32_t *p = realloc(run.latencies_us, cap * sizeof(*p));

		if (p == NULL) {
			fprintf(stderr, "smtp-load: out of memory\n");
			exit(2);
		}
		run.latencies_us = p;
		run.latency_cap = cap;
	}
	double us = seconds * 1e6;
	run.latencies_us[run.latency_count++] = us > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void
load_count_error(enum load_error kind)
{
	run.errors[kind]++;
}

/* Accounts for the session's claimed message exactly once. */
static void
load_message_done(struct load_session *s, bool ok)
{
	if (!s->in_message)
		return;
	s->in_message = false;
	if (ok)
		run.delivered++;
	else
		run.failed++;
	load_now(&run.last_done);
}

static bool
load_claim_message(void)
{
	if (run.stopping)
		return false;
	if (run.opt.messages > 0 && run.issued >= run.opt.messages)
		return false;
	run.issued++;
	return true;
}

static void load_session_connect(struct load_session *s);

static void
load_session_end(struct load_session *s, bool reconnect)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (reconnect && !run.stopping &&
	    (run.opt.messages == 0 || run.issued < run.opt.messages) && s->connect_failures < 20) {
		struct timeval delay = {0, s->connect_failures > 0 ? 100000 : 10000};

		evtimer_add(s->retry, &delay);
		return;
	}
	run.active_sessions--;
	if (run.active_sessions == 0)
		event_base_loopexit(run.base, NULL);
}

static void
load_session_fail(struct load_session *s, enum load_error kind)
{
	load_count_error(kind);
	load_message_done(s, false);
	load_session_end(s, true);
}

static void
load_send(struct load_session *s, const char *text)
{
	bufferevent_write(s->bev, text, strlen(text));
}

/* Starts the next transaction (pipelined MAIL, RCPT, DATA) or says QUIT when there is no more work.
 */
static void
load_session_next(struct load_session *s)
{
	if (!load_claim_message()) {
		s->state = LOAD_QUIT;
		load_send(s, "QUIT\r\n");
		return;
	}
	s->in_message = true;
	s->msg_no = run.issued;
	s->rcpt_index = (int)(run.issued % run.opt.rcpt_count);
	const char *rcpt = run.opt.rcpts[s->rcpt_index];
	struct evbuffer *out = bufferevent_get_output(s->bev);

	evbuffer_add_printf(out, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", run.opt.from, rcpt);
	s->state = LOAD_TXN;
	s->replies_seen = 0;
}

static void
load_send_message(struct load_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const char *rcpt = run.opt.rcpts[s->rcpt_index];

	evbuffer_add_printf(out,
	                    "From: <%s>\r\nTo: <%s>\r\nSubject: smtp-load message %ld\r\n"
	                    "Message-ID: <load.%d.%ld.%ld@smtp-load.test>\r\n"
	                    "Date: Mon, 24 Nov 2025 12:00:00 +0000\r\n\r\n",
	                    run.opt.from, rcpt, s->msg_no, s->id, s->msg_no, run.pid);
	evbuffer_add_reference(out, run.body, run.body_len, NULL, NULL);
	evbuffer_add(out, ".\r\n", 3);
	load_now(&s->dot_sent);
	s->state = LOAD_DATA_END;
}

/* Handles one complete reply (code) according to the session's state. */
static void
load_session_reply(struct load_session *s, int code)
{
	switch (s->state) {
	case LOAD_CONNECTING:
	case LOAD_BANNER:
		if (code != 220) {
			load_session_fail(s, LOAD_ERR_BANNER);
			return;
		}
		s->state = LOAD_EHLO;
		load_send(s, "EHLO smtp-load.test\r\n");
		return;
	case LOAD_EHLO:
		if (code != 250) {
			load_session_fail(s, LOAD_ERR_EHLO);
			return;
		}
		load_session_next(s);
		return;
	case LOAD_TXN:
		s->txn_codes[s->replies_seen++] = code;
		if (s->replies_seen < 3)
			return;
		if (s->txn_codes[0] == 250 && s->txn_codes[1] == 250 && s->txn_codes[2] == 354) {
			load_send_message(s);
			return;
		}
		load_count_error(s->txn_codes[0] != 250   ? LOAD_ERR_MAIL
		                 : s->txn_codes[1] != 250 ? LOAD_ERR_RCPT
		                                          : LOAD_ERR_DATA);
		load_message_done(s, false);
		if (s->txn_codes[2] == 354) {
			/* Refused but in DATA anyway: end it empty-handed. */
			s->state = LOAD_DATA_END;
			load_send(s, ".\r\n");
			return;
		}
		s->state = LOAD_RSET;
		load_send(s, "RSET\r\n");
		return;
	case LOAD_DATA_END: {
		struct timespec now;

		load_now(&now);
		if (s->in_message) {
			if (code == 250) {
				load_record_latency(load_elapsed(&s->dot_sent, &now));
				load_message_done(s, true);
			} else {
				load_count_error(code >= 500 ? LOAD_ERR_FINAL_5XX
				                             : LOAD_ERR_FINAL_4XX);
				load_message_done(s, false);
			}
		}
		load_session_next(s);
		return;
	}
	case LOAD_RSET:
		load_session_next(s);
		return;
	case LOAD_QUIT:
		load_session_end(s, false);
		return;
	}
}

static void
load_read_cb(struct bufferevent *bev, void *arg)
{
	struct load_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		if (len < 3 || line[0] < '2' || line[0] > '5' ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			free(line);
			load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		bool last = len == 3 || line[3] == ' ';
		int code = atoi(line);

		free(line);
		if (!last)
			continue;
		load_session_reply(s, code);
		if (s->bev != bev)
			return; /* the session ended or reconnected */
	}
	if (evbuffer_get_length(in) > 65536)
		load_session_fail(s, LOAD_ERR_PROTOCOL);
}

static void
load_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct load_session *s = arg;

	if (events & BEV_EVENT_CONNECTED) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->connect_failures = 0;
		s->state = LOAD_BANNER;
		return;
	}
	if (s->state == LOAD_CONNECTING) {
		s->connect_failures++;
		load_session_fail(s, LOAD_ERR_CONNECT);
		return;
	}
	if (s->state == LOAD_QUIT && (events & BEV_EVENT_EOF)) {
		load_session_end(s, false);
		return;
	}
	load_session_fail(s, (events & BEV_EVENT_TIMEOUT) ? LOAD_ERR_TIMEOUT : LOAD_ERR_CLOSED);
}

static void
load_session_connect(struct load_session *s)
{
	struct timeval timeout = {run.opt.timeout, 0};

	s->bev = bufferevent_socket_new(run.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		load_count_error(LOAD_ERR_CONNECT);
		s->connect_failures++;
		load_session_end(s, true);
		return;
	}
	s->state = LOAD_CONNECTING;
	bufferevent_setcb(s->bev, load_read_cb, NULL, load_event_cb, s);
	bufferevent_set_timeouts(s->bev, &timeout, &timeout);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&run.addr, (int)run.addr_len) <
	    0) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		load_count_error(LOAD_ERR_CONNECT);
		s->connect_failures++;
		load_session_end(s, true);
	}
}

static void
load_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	load_session_connect(arg);
}

static void
load_duration_cb(evutil_socket_t fd, short what, void *arg)
{
	run.stopping = true;
}

static void
load_sigint_cb(evutil_socket_t fd, short what, void *arg)
{
	run.stopping = true;
}

static int
load_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
load_percentile_ms(double p)
{
	if (run.latency_count == 0)
		return 0;
	size_t idx = (size_t)(p * (double)(run.latency_count - 1) + 0.5);

	return run.latencies_us[idx] / 1000.0;
}

static void
load_usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: smtp-load [--host H] [--port P] [--concurrency C] [--messages N] [--duration "
	    "T]\n"
	    "                 [--size BYTES] [--rcpt ADDR]... [--from ADDR] [--timeout S] "
	    "[--json]\n"
	    "  --host         server address (default 127.0.0.1)\n"
	    "  --port         server port (default 2525)\n"
	    "  --concurrency  sessions open at once (default 10)\n"
	    "  --messages     messages to send in total (default 1000 unless --duration is given)\n"
	    "  --duration     stop starting new messages after T seconds\n"
	    "  --size         message size in bytes, headers included (default 4096)\n"
	    "  --rcpt         a recipient; repeat to rotate over several (default "
	    "alice@example.test)\n"
	    "  --from         the envelope sender (default load@bench.test)\n"
	    "  --timeout      seconds without progress before a session counts as timed out "
	    "(default 60)\n"
	    "  --json         print the figures as one JSON line on stdout\n");
}

static void
load_make_body(size_t size)
{
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog; smtp-load filler text 0123456789\r\n";
	const size_t header_estimate = 200;
	size_t want = size > header_estimate + 64 ? size - header_estimate : 64;

	run.body = load_xmalloc(want + sizeof(line));
	run.body_len = 0;
	while (run.body_len < want) {
		memcpy(run.body + run.body_len, line, sizeof(line) - 1);
		run.body_len += sizeof(line) - 1;
	}
}

static void
load_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"messages", required_argument, NULL, 'n'},
	    {"size", required_argument, NULL, 's'},
	    {"rcpt", required_argument, NULL, 'r'},
	    {"from", required_argument, NULL, 'f'},
	    {"duration", required_argument, NULL, 'd'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct load_options *o = &run.opt;
	int ch;

	o->host = "127.0.0.1";
	o->port = "2525";
	o->concurrency = 10;
	o->messages = -1;
	o->size = 4096;
	o->from = "load@bench.test";
	o->timeout = 60;
	o->rcpts = load_xmalloc((size_t)argc * sizeof(*o->rcpts) + sizeof(*o->rcpts));
	while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (ch) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			o->port = optarg;
			break;
		case 'c':
			o->concurrency = atoi(optarg);
			break;
		case 'n':
			o->messages = atol(optarg);
			break;
		case 's':
			o->size = (size_t)atol(optarg);
			break;
		case 'r':
			o->rcpts[o->rcpt_count++] = optarg;
			break;
		case 'f':
			o->from = optarg;
			break;
		case 'd':
			o->duration = atof(optarg);
			break;
		case 't':
			o->timeout = atoi(optarg);
			break;
		case 'j':
			o->json = true;
			break;
		case 'H':
			load_usage(stdout);
			return 0;
		default:
			load_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || o->concurrency <= 0 || o->timeout <= 0) {
		load_usage(stderr);
		return 2;
	}
	if (o->messages < 0)
		o->messages = o->duration > 0 ? 0 : 1000;
	if (o->rcpt_count == 0)
		o->rcpts[o->rcpt_count++] = "alice@example.test";

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(o->host, o->port, &hints, &ai);

	if (rc != 0) {
		fprintf(stderr, "smtp-load: %s:%s: %s\n", o->host, o->port, gai_strerror(rc));
		return 2;
	}
	memcpy(&run.addr, ai->ai_addr, ai->ai_addrlen);
	run.addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);

	signal(SIGPIPE, SIG_IGN);
	load_raise_nofile();
	load_make_body(o->size);
	run.pid = (long)getpid();
	run.base = event_base_new();
	if (run.base == NULL) {
		fprintf(stderr, "smtp-load: event_base_new failed\n");
		return 2;
	}
	struct event *sigint = evsignal_new(run.base, SIGINT, load_sigint_cb, NULL);
	struct event *duration = NULL;

	evsignal_add(sigint, NULL);
	if (o->duration > 0) {
		struct timeval tv = {
		    (time_t)o->duration,
		    (suseconds_t)((o->duration - (double)(time_t)o->duration) * 1e6)};

		duration = evtimer_new(run.base, load_duration_cb, NULL);
		evtimer_add(duration, &tv);
	}

	run.sessions = calloc((size_t)o->concurrency, sizeof(*run.sessions));
	if (run.sessions == NULL) {
		fprintf(stderr, "smtp-load: out of memory\n");
		return 2;
	}
	load_now(&run.start);
	run.last_done = run.start;
	run.active_sessions = o->concurrency;
	for (int i = 0; i < o->concurrency; i++) {
		struct load_session *s = &run.sessions[i];

		s->id = i;
		s->retry = evtimer_new(run.base, load_retry_cb, s);
		load_session_connect(s);
	}
	if (run.active_sessions > 0)
		event_base_dispatch(run.base);

	struct timespec end;

	load_now(&end);
	double wall =
	    load_elapsed(&run.start, run.delivered + run.failed > 0 ? &run.last_done : &end);
	double rate = wall > 0 ? (double)run.delivered / wall : 0;
	long errors = 0;

	qsort(run.latencies_us, run.latency_count, sizeof(*run.latencies_us), load_cmp_u32);
	for (int i = 0; i < LOAD_ERR_COUNT; i++)
		errors += run.errors[i];
	double p50 = load_percentile_ms(0.50), p99 = load_percentile_ms(0.99);
	double max = run.latency_count ? run.latencies_us[run.latency_count - 1] / 1000.0 : 0;

	FILE *human = o->json ? stderr : stdout;

	fprintf(human, "smtp-load: %s:%s concurrency=%d size=%zu messages=%ld duration=%.1f\n",
	        o->host, o->port, o->concurrency, o->size, o->messages, o->duration);
	fprintf(human, "  delivered %ld (failed %ld) in %.2f s: %.1f msgs/s\n", run.delivered,
	        run.failed, wall, rate);
	fprintf(human, "  end of DATA -> 250: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", p50, p99,
	        max);
	fprintf(human, "  errors: %ld", errors);
	for (int i = 0; i < LOAD_ERR_COUNT; i++)
		if (run.errors[i])
			fprintf(human, " %s=%ld", load_error_names[i], run.errors[i]);
	fprintf(human, "\n");
	if (o->json) {
		printf(
		    "{\"host\":\"%s\",\"port\":%s,\"concurrency\":%d,\"size\":%zu,\"messages\":%ld,"
		    "\"delivered\":%ld,\"failed\":%ld,\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,"
		    "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld,\"errors_by_"
		    "kind\":{",
		    o->host, o->port, o->concurrency, o->size, o->messages, run.delivered,
		    run.failed, wall, rate, p50, p99, max, errors);
		bool first = true;

		for (int i = 0; i < LOAD_ERR_COUNT; i++) {
			if (!run.errors[i])
				continue;
			printf("%s\"%s\":%ld", first ? "" : ",", load_error_names[i],
			       run.errors[i]);
			first = false;
		}
		printf("}}\n");
	}

	for (int i = 0; i < o->concurrency; i++) {
		if (run.sessions[i].bev)
			bufferevent_free(run.sessions[i].bev);
		event_free(run.sessions[i].retry);
	}
	if (duration)
		event_free(duration);
	event_free(sigint);
	event_base_free(run.base);
	free(run.sessions);
	free(run.latencies_us);
	free(run.body);
	free(o->rcpts);
	return errors > 0 || run.delivered == 0 ? 1 : 0;
}
