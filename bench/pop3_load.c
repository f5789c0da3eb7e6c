/* pop3-load: a POP3 load generator for benchmarking ternd.
 *
 * Keeps --concurrency sessions open against --host:--port. Each session logs in (USER/PASS) as a
 * different user, since RFC 1939 gives one session at a time exclusive access to a maildrop: the
 * users are --user-format and --password-format with numbers --first-user .. --first-user + --users
 * - 1 (default user%03d@example.test / bench-password-%d, as bench/run creates them), handed out
 * from a queue so that no two sessions ever use the same maildrop at once. A session does STAT,
 * LIST, UIDL and a RETR of every message (one command at a time), then QUIT (no DELE: the maildrop
 * stays as it is) and waits for the server to close; then the slot starts a new session with the
 * next free user. It stops starting sessions after --sessions sessions or --duration seconds,
 * whichever comes first (default: one session per user).
 *
 * Checks every answer: LIST and UIDL must list as many messages as STAT, and every RETR must bring
 * exactly the octets LIST announced (CRLF line endings, after undoing the dot-stuffing); anything
 * else counts as an error by kind. Reports sessions/s, messages/s and MB/s (over the wall time from
 * the start to the end of the last session), the RETR latency (command written -> last byte of the
 * terminating ".\r\n" read: p50, p99, max), the login latency (PASS written -> +OK, which includes
 * the server's password hashing), and errors. With --json the figures are one JSON line on stdout
 * (the human summary goes to stderr).
 *
 * Single-threaded libevent loop, like smtp-load: one core of client is plenty for a loopback
 * server and keeps the latency figures free of cross-thread noise. */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

enum load_error {
	LOAD_ERR_CONNECT,
	LOAD_ERR_GREETING,
	LOAD_ERR_LOGIN,
	LOAD_ERR_IN_USE,
	LOAD_ERR_STAT,
	LOAD_ERR_LIST,
	LOAD_ERR_UIDL,
	LOAD_ERR_RETR,
	LOAD_ERR_QUIT,
	LOAD_ERR_COUNT_MISMATCH,
	LOAD_ERR_SIZE_MISMATCH,
	LOAD_ERR_CLOSED,
	LOAD_ERR_TIMEOUT,
	LOAD_ERR_PROTOCOL,
	LOAD_ERR_KINDS
};

static const char *const load_error_names[LOAD_ERR_KINDS] = {
    "connect", "greeting", "login", "in_use",         "stat",          "list",
    "uidl",    "retr",     "quit",  "count_mismatch", "size_mismatch", "connection_lost",
    "timeout", "protocol",
};

enum load_state {
	LOAD_IDLE, /* no session: waiting for a user or the retry timer */
	LOAD_CONNECTING,
	LOAD_GREETING,
	LOAD_USER,
	LOAD_PASS,
	LOAD_STAT,
	LOAD_LIST, /* status line of LIST */
	LOAD_LIST_BODY,
	LOAD_UIDL,
	LOAD_UIDL_BODY,
	LOAD_RETR,
	LOAD_RETR_BODY,
	LOAD_QUIT,     /* waiting for +OK */
	LOAD_QUIT_EOF, /* waiting for the server to close */
};

struct load_options {
	const char *host;
	const char *port;
	int concurrency;
	int users;
	int first_user;
	const char *user_format;
	const char *password_format;
	long sessions;
	double duration;
	int timeout;
	bool json;
};

struct load_session {
	int id;
	enum load_state state;
	struct bufferevent *bev;
	struct event *retry;
	int user;        /* the user number held, or -1 */
	uint32_t count;  /* messages, from STAT */
	uint64_t *sizes; /* LIST sizes, indexed by message number - 1 */
	uint32_t sizes_cap;
	uint32_t listed;      /* lines of the current LIST/UIDL body */
	uint32_t next;        /* the message being retrieved (1-based) */
	uint64_t got;         /* octets of the current RETR so far (unstuffed, CRLF) */
	struct timespec sent; /* when the current RETR or PASS was written */
	int connect_failures; /* consecutive */
};

struct load_run {
	struct load_options opt;
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct load_session *sessions;
	int *free_users; /* FIFO of user numbers not in use */
	int free_head, free_count;
	long started;   /* sessions started */
	long completed; /* sessions that reached the server's close after QUIT without error */
	long failed;
	long messages;  /* RETRs completed and verified */
	uint64_t bytes; /* octets of those RETRs */
	long errors[LOAD_ERR_KINDS];
	int active_slots;
	bool stopping;
	struct timespec start, last_done;
	uint32_t *retr_us;
	size_t retr_n, retr_cap;
	uint32_t *login_us;
	size_t login_n, login_cap;
};

static struct load_run run;

static void
load_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static double
load_elapsed(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

static void *
load_xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL) {
		fprintf(stderr, "pop3-load: out of memory\n");
		exit(2);
	}
	return p;
}

static void
load_record(uint32_t **arr, size_t *n, size_t *cap, const struct timespec *since)
{
	struct timespec now;
	double us;

	load_now(&now);
	us = load_elapsed(since, &now) * 1e6;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 65536;
		*arr = load_xrealloc(*arr, *cap * sizeof(**arr));
	}
	(*arr)[(*n)++] = us > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* ---- the user queue ----------------------------------------------------------------------------
 */

static int
load_take_user(void)
{
	int user;

	if (run.free_count == 0)
		return -1;
	user = run.free_users[run.free_head];
	run.free_head = (run.free_head + 1) % run.opt.users;
	run.free_count--;
	return user;
}

static void
load_give_user(int user)
{
	if (user < 0)
		return;
	run.free_users[(run.free_head + run.free_count) % run.opt.users] = user;
	run.free_count++;
}

/* ---- sessions
 * ------------------------------------------------------------------------------------ */

static void load_session_start(struct load_session *s);

static bool
load_may_start(void)
{
	return !run.stopping && (run.opt.sessions == 0 || run.started < run.opt.sessions);
}

/* Ends the session's connection; ok says whether it completed. The slot goes on with a new session
 * (after delay_ms) or retires. */
static void
load_session_end(struct load_session *s, bool ok, int delay_ms)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->state != LOAD_IDLE) {
		if (ok)
			run.completed++;
		else
			run.failed++;
		load_now(&run.last_done);
	}
	load_give_user(s->user);
	s->user = -1;
	s->state = LOAD_IDLE;
	if (load_may_start() && s->connect_failures < 20) {
		struct timeval delay = {delay_ms / 1000, (delay_ms % 1000) * 1000};

		evtimer_add(s->retry, &delay);
		return;
	}
	run.active_slots--;
	if (run.active_slots == 0)
		event_base_loopexit(run.base, NULL);
}

static void
load_session_fail(struct load_session *s, enum load_error kind)
{
	run.errors[kind]++;
	load_session_end(s, false, kind == LOAD_ERR_CONNECT ? 100 : 10);
}

static void load_send(struct load_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
load_send(struct load_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

/* Sends "VERB <format with the user number>\r\n"; the format was checked to hold one %d. */
static void
load_send_user(struct load_session *s, const char *verb, const char *format)
{
	char value[512];

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(value, sizeof(value), format, s->user);
#pragma GCC diagnostic pop
	load_send(s, "%s %s\r\n", verb, value);
}

static void
load_next_retr(struct load_session *s)
{
	if (s->next > s->count) {
		s->state = LOAD_QUIT;
		load_send(s, "QUIT\r\n");
		return;
	}
	s->state = LOAD_RETR;
	s->got = 0;
	load_now(&s->sent);
	load_send(s, "RETR %" PRIu32 "\r\n", s->next);
}

static bool
load_ok(const char *line, size_t len)
{
	return len >= 3 && memcmp(line, "+OK", 3) == 0 && (len == 3 || line[3] == ' ');
}

static bool
load_err(const char *line, size_t len)
{
	return len >= 4 && memcmp(line, "-ERR", 4) == 0 && (len == 4 || line[4] == ' ');
}

/* One line of a multi-line body (not the final "."), dot-unstuffed. Returns false on an error. */
static bool
load_body_line(struct load_session *s, const char *line, size_t len)
{
	if (len > 0 && line[0] == '.') {
		line++;
		len--;
	}
	switch (s->state) {
	case LOAD_LIST_BODY: {
		char *end;
		unsigned long n = strtoul(line, &end, 10);
		unsigned long long size;

		if (end == line || *end != ' ')
			return false;
		size = strtoull(end + 1, NULL, 10);
		if (n < 1 || n > s->count)
			return false;
		s->sizes[n - 1] = size;
		s->listed++;
		return true;
	}
	case LOAD_UIDL_BODY:
		if (memchr(line, ' ', len) == NULL)
			return false;
		s->listed++;
		return true;
	case LOAD_RETR_BODY:
		s->got += len + 2;
		return true;
	default:
		return false;
	}
}

/* The final "." of a multi-line body. */
static void
load_body_end(struct load_session *s)
{
	switch (s->state) {
	case LOAD_LIST_BODY:
		if (s->listed != s->count) {
			load_session_fail(s, LOAD_ERR_COUNT_MISMATCH);
			return;
		}
		s->state = LOAD_UIDL;
		s->listed = 0;
		load_send(s, "UIDL\r\n");
		return;
	case LOAD_UIDL_BODY:
		if (s->listed != s->count) {
			load_session_fail(s, LOAD_ERR_COUNT_MISMATCH);
			return;
		}
		s->next = 1;
		load_next_retr(s);
		return;
	case LOAD_RETR_BODY:
		if (s->got != s->sizes[s->next - 1]) {
			load_session_fail(s, LOAD_ERR_SIZE_MISMATCH);
			return;
		}
		load_record(&run.retr_us, &run.retr_n, &run.retr_cap, &s->sent);
		run.messages++;
		run.bytes += s->got;
		s->next++;
		load_next_retr(s);
		return;
	default:
		load_session_fail(s, LOAD_ERR_PROTOCOL);
	}
}

/* A status line in a state that expects one. */
static void
load_status(struct load_session *s, const char *line, size_t len)
{
	bool ok = load_ok(line, len);

	if (!ok && !load_err(line, len)) {
		load_session_fail(s, LOAD_ERR_PROTOCOL);
		return;
	}
	switch (s->state) {
	case LOAD_CONNECTING:
	case LOAD_GREETING:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_GREETING);
			return;
		}
		s->state = LOAD_USER;
		load_send_user(s, "USER", run.opt.user_format);
		return;
	case LOAD_USER:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_LOGIN);
			return;
		}
		s->state = LOAD_PASS;
		load_now(&s->sent);
		load_send_user(s, "PASS", run.opt.password_format);
		return;
	case LOAD_PASS:
		if (!ok) {
			load_session_fail(s, len >= 13 && memcmp(line, "-ERR [IN-USE]", 13) == 0
			                         ? LOAD_ERR_IN_USE
			                         : LOAD_ERR_LOGIN);
			return;
		}
		load_record(&run.login_us, &run.login_n, &run.login_cap, &s->sent);
		s->state = LOAD_STAT;
		load_send(s, "STAT\r\n");
		return;
	case LOAD_STAT: {
		unsigned long long count;
		char *end;

		if (!ok || len < 5) {
			load_session_fail(s, LOAD_ERR_STAT);
			return;
		}
		count = strtoull(line + 4, &end, 10);
		if (end == line + 4 || count > 10000000) {
			load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		s->count = (uint32_t)count;
		if (s->count > s->sizes_cap) {
			s->sizes = load_xrealloc(s->sizes, s->count * sizeof(*s->sizes));
			s->sizes_cap = s->count;
		}
		memset(s->sizes, 0, s->count * sizeof(*s->sizes));
		s->listed = 0;
		s->state = LOAD_LIST;
		load_send(s, "LIST\r\n");
		return;
	}
	case LOAD_LIST:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_LIST);
			return;
		}
		s->state = LOAD_LIST_BODY;
		return;
	case LOAD_UIDL:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_UIDL);
			return;
		}
		s->state = LOAD_UIDL_BODY;
		return;
	case LOAD_RETR:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_RETR);
			return;
		}
		s->state = LOAD_RETR_BODY;
		return;
	case LOAD_QUIT:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_QUIT);
			return;
		}
		s->state = LOAD_QUIT_EOF;
		return;
	default:
		load_session_fail(s, LOAD_ERR_PROTOCOL);
	}
}

static bool
load_in_body(const struct load_session *s)
{
	return s->state == LOAD_LIST_BODY || s->state == LOAD_UIDL_BODY ||
	       s->state == LOAD_RETR_BODY;
}

static void
load_read_cb(struct bufferevent *bev, void *arg)
{
	struct load_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		struct evbuffer_ptr eol =
		    evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
		char stack[1024], *line;
		size_t len;

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > 1 << 20)
				load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		len = (size_t)eol.pos;
		line = len < sizeof(stack) ? stack : load_xrealloc(NULL, len + 1);
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, 2);
		line[len] = '\0';
		if (s->state == LOAD_QUIT_EOF) {
			if (line != stack)
				free(line);
			load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		if (load_in_body(s)) {
			if (len == 1 && line[0] == '.')
				load_body_end(s);
			else if (!load_body_line(s, line, len))
				load_session_fail(s, LOAD_ERR_PROTOCOL);
		} else {
			load_status(s, line, len);
		}
		if (line != stack)
			free(line);
		if (s->bev != bev)
			return; /* the session ended */
	}
}

static void
load_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct load_session *s = arg;

	if (events & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->connect_failures = 0;
		s->state = LOAD_GREETING;
		return;
	}
	if (s->state == LOAD_CONNECTING) {
		s->connect_failures++;
		load_session_fail(s, LOAD_ERR_CONNECT);
		return;
	}
	if (s->state == LOAD_QUIT_EOF && (events & BEV_EVENT_EOF)) {
		load_session_end(s, true, 0);
		return;
	}
	load_session_fail(s, (events & BEV_EVENT_TIMEOUT) ? LOAD_ERR_TIMEOUT : LOAD_ERR_CLOSED);
}

static void
load_session_start(struct load_session *s)
{
	struct timeval timeout = {run.opt.timeout, 0};

	if (!load_may_start()) {
		run.active_slots--;
		if (run.active_slots == 0)
			event_base_loopexit(run.base, NULL);
		return;
	}
	s->user = load_take_user();
	if (s->user < 0) {
		/* More slots than users: wait for one to come back. */
		struct timeval delay = {0, 10000};

		evtimer_add(s->retry, &delay);
		return;
	}
	run.started++;
	s->bev = bufferevent_socket_new(run.base, -1, BEV_OPT_CLOSE_ON_FREE);
	s->state = LOAD_CONNECTING;
	if (s->bev == NULL) {
		s->connect_failures++;
		load_session_fail(s, LOAD_ERR_CONNECT);
		return;
	}
	bufferevent_setcb(s->bev, load_read_cb, NULL, load_event_cb, s);
	bufferevent_set_timeouts(s->bev, &timeout, &timeout);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&run.addr, (int)run.addr_len) <
	    0) {
		s->connect_failures++;
		load_session_fail(s, LOAD_ERR_CONNECT);
	}
}

static void
load_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	load_session_start(arg);
}

static void
load_stop_cb(evutil_socket_t fd, short what, void *arg)
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
load_pct_ms(const uint32_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	return v[(size_t)(p * (double)(n - 1) + 0.5)] / 1000.0;
}

static void
load_usage(FILE *fp)
{
	fprintf(fp, "usage: pop3-load [--host H] [--port P] [--concurrency C] [--users N] "
	            "[--first-user K]\n"
	            "                 [--user-format F] [--password-format F] [--sessions N] "
	            "[--duration T]\n"
	            "                 [--timeout S] [--json]\n"
	            "  --host             server address (default 127.0.0.1)\n"
	            "  --port             server port (default 2110)\n"
	            "  --concurrency      sessions open at once (default 10; at most --users)\n"
	            "  --users            how many users to log in as (default 100)\n"
	            "  --first-user       number of the first user (default 1)\n"
	            "  --user-format      printf format of a user name from its number (default "
	            "user%%03d@example.test)\n"
	            "  --password-format  printf format of a password from the number (default "
	            "bench-password-%%d)\n"
	            "  --sessions         sessions to run in total (default: --users, unless "
	            "--duration is given)\n"
	            "  --duration         stop starting new sessions after T seconds\n"
	            "  --timeout          seconds without progress before a session counts as "
	            "timed out (default 60)\n"
	            "  --json             print the figures as one JSON line on stdout\n");
}

/* A format must hold exactly one %d (or %0Nd) and no other conversion. */
static bool
load_format_ok(const char *f)
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

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"users", required_argument, NULL, 'u'},
	    {"first-user", required_argument, NULL, 'F'},
	    {"user-format", required_argument, NULL, 'U'},
	    {"password-format", required_argument, NULL, 'P'},
	    {"sessions", required_argument, NULL, 'n'},
	    {"duration", required_argument, NULL, 'd'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct load_options *o = &run.opt;
	int ch;

	o->host = "127.0.0.1";
	o->port = "2110";
	o->concurrency = 10;
	o->users = 100;
	o->first_user = 1;
	o->user_format = "user%03d@example.test";
	o->password_format = "bench-password-%d";
	o->sessions = -1;
	o->timeout = 60;
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
		case 'u':
			o->users = atoi(optarg);
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
		case 'n':
			o->sessions = atol(optarg);
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
	if (optind != argc || o->concurrency <= 0 || o->users <= 0 || o->timeout <= 0 ||
	    !load_format_ok(o->user_format) || !load_format_ok(o->password_format)) {
		load_usage(stderr);
		return 2;
	}
	if (o->concurrency > o->users) {
		fprintf(
		    stderr,
		    "pop3-load: --concurrency %d > --users %d: one session per maildrop at a time, "
		    "so using %d\n",
		    o->concurrency, o->users, o->users);
		o->concurrency = o->users;
	}
	if (o->sessions < 0)
		o->sessions = o->duration > 0 ? 0 : o->users;

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(o->host, o->port, &hints, &ai);

	if (rc != 0) {
		fprintf(stderr, "pop3-load: %s:%s: %s\n", o->host, o->port, gai_strerror(rc));
		return 2;
	}
	memcpy(&run.addr, ai->ai_addr, ai->ai_addrlen);
	run.addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);

	signal(SIGPIPE, SIG_IGN);
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	run.base = event_base_new();
	if (run.base == NULL) {
		fprintf(stderr, "pop3-load: event_base_new failed\n");
		return 2;
	}
	run.free_users = load_xrealloc(NULL, (size_t)o->users * sizeof(*run.free_users));
	for (int i = 0; i < o->users; i++)
		run.free_users[i] = o->first_user + i;
	run.free_count = o->users;

	struct event *sigint = evsignal_new(run.base, SIGINT, load_stop_cb, NULL);
	struct event *duration = NULL;

	evsignal_add(sigint, NULL);
	if (o->duration > 0) {
		struct timeval tv = {
		    (time_t)o->duration,
		    (suseconds_t)((o->duration - (double)(time_t)o->duration) * 1e6)};

		duration = evtimer_new(run.base, load_stop_cb, NULL);
		evtimer_add(duration, &tv);
	}
	run.sessions = calloc((size_t)o->concurrency, sizeof(*run.sessions));
	if (run.sessions == NULL) {
		fprintf(stderr, "pop3-load: out of memory\n");
		return 2;
	}
	load_now(&run.start);
	run.last_done = run.start;
	run.active_slots = o->concurrency;
	for (int i = 0; i < o->concurrency; i++) {
		struct load_session *s = &run.sessions[i];

		s->id = i;
		s->user = -1;
		s->retry = evtimer_new(run.base, load_retry_cb, s);
		load_session_start(s);
	}
	if (run.active_slots > 0)
		event_base_dispatch(run.base);

	double wall = load_elapsed(&run.start, &run.last_done);
	long errors = 0;

	for (int i = 0; i < LOAD_ERR_KINDS; i++)
		errors += run.errors[i];
	qsort(run.retr_us, run.retr_n, sizeof(*run.retr_us), load_cmp_u32);
	qsort(run.login_us, run.login_n, sizeof(*run.login_us), load_cmp_u32);
	double sps = wall > 0 ? (double)run.completed / wall : 0;
	double mps = wall > 0 ? (double)run.messages / wall : 0;
	double mbps = wall > 0 ? (double)run.bytes / wall / 1e6 : 0;
	double r50 = load_pct_ms(run.retr_us, run.retr_n, 0.50),
	       r99 = load_pct_ms(run.retr_us, run.retr_n, 0.99);
	double rmax = run.retr_n ? run.retr_us[run.retr_n - 1] / 1000.0 : 0;
	double l50 = load_pct_ms(run.login_us, run.login_n, 0.50),
	       l99 = load_pct_ms(run.login_us, run.login_n, 0.99);
	FILE *human = o->json ? stderr : stdout;

	fprintf(human, "pop3-load: %s:%s concurrency=%d users=%d sessions=%ld duration=%.1f\n",
	        o->host, o->port, o->concurrency, o->users, o->sessions, o->duration);
	fprintf(human, "  sessions %ld completed (%ld failed) in %.2f s: %.1f sessions/s\n",
	        run.completed, run.failed, wall, sps);
	fprintf(human, "  RETR %ld messages, %.1f MB: %.1f msgs/s, %.2f MB/s\n", run.messages,
	        (double)run.bytes / 1e6, mps, mbps);
	fprintf(human,
	        "  RETR latency (command -> final \".\"): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	        r50, r99, rmax);
	fprintf(human, "  login latency (PASS -> +OK): p50 %.2f ms, p99 %.2f ms\n", l50, l99);
	fprintf(human, "  errors: %ld", errors);
	for (int i = 0; i < LOAD_ERR_KINDS; i++)
		if (run.errors[i])
			fprintf(human, " %s=%ld", load_error_names[i], run.errors[i]);
	fprintf(human, "\n");
	if (o->json) {
		printf("{\"host\":\"%s\",\"port\":%s,\"concurrency\":%d,\"users\":%d,\"sessions_"
		       "started\":%ld,"
		       "\"sessions\":%ld,\"failed_sessions\":%ld,\"elapsed_s\":%.3f,\"sessions_per_"
		       "s\":%.2f,"
		       "\"messages\":%ld,\"msgs_per_s\":%.1f,\"bytes\":%" PRIu64
		       ",\"mb_per_s\":%.3f,"
		       "\"retr_p50_ms\":%.3f,\"retr_p99_ms\":%.3f,\"retr_max_ms\":%.3f,"
		       "\"login_p50_ms\":%.3f,\"login_p99_ms\":%.3f,\"errors\":%ld,\"errors_by_"
		       "kind\":{",
		       o->host, o->port, o->concurrency, o->users, run.started, run.completed,
		       run.failed, wall, sps, run.messages, mps, run.bytes, mbps, r50, r99, rmax,
		       l50, l99, errors);
		bool first = true;

		for (int i = 0; i < LOAD_ERR_KINDS; i++) {
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
		free(run.sessions[i].sizes);
	}
	if (duration)
		event_free(duration);
	event_free(sigint);
	event_base_free(run.base);
	free(run.sessions);
	free(run.free_users);
	free(run.retr_us);
	free(run.login_us);
	return errors > 0 || run.completed == 0 ? 1 : 0;
}
