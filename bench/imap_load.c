/* imap-load: an IMAP load generator for benchmarking ternd (issue 5).
 *
 * Keeps --concurrency sessions open against --host:--port (plaintext, loopback LOGIN). Each session
 * logs in as a different user: --user-format and --password-format with numbers --first-user ..
 * --first-user + --users - 1 (default user%03d@example.test / bench-password-%d, as bench/run
 * creates them), handed out from a queue so that no two sessions use one account at once (the
 * APPEND/EXPUNGE bookkeeping below relies on it). One session, one command at a time:
 *
 *   LOGIN user pass
 *   SELECT INBOX
 *   FETCH 1:* (FLAGS ENVELOPE)
 *   FETCH 1:K BODY.PEEK[]                       K = --bodies (default 5), at most the messages
 * there STORE 1:K +FLAGS (\Seen)                    -FLAGS on a user's odd sessions, so each STORE
 * changes APPEND INBOX {N}                            a --append-size byte message (synchronizing
 * literal) UID STORE u +FLAGS.SILENT (\Deleted)        u from APPENDUID, else the UIDNEXT seen at
 * SELECT EXPUNGE LOGOUT                                      then wait for the server to close
 *
 * and the slot starts a new session with the next free user, until --sessions sessions have started
 * or --duration seconds have passed. A NO or BAD is counted as an error of that command and the
 * session goes on (after a failed LOGIN or SELECT straight to LOGOUT; after a failed APPEND the
 * \Deleted STORE is skipped, and so are the FETCHes and the STORE on an empty mailbox): the
 * generator works with a partial server and measures every command once it exists. Connection-level
 * failures (refused, no greeting, dropped, timed out, unparsable reply) end the session and are
 * counted apart.
 *
 * Reports commands/s (tagged replies over the wall time), sessions/s, and per command: count, OK,
 * NO, BAD, skipped, and the latency from writing the command to reading its tagged reply (p50, p99,
 * max; for APPEND this includes the "+" round trip of the literal). Also the messages appended and
 * expunged (a difference means mailboxes grew), bodies fetched, and, with --server-pid, the
 * server's VmRSS and VmHWM from /proc/PID/status at the end. With --json the figures are one JSON
 * line on stdout (the human summary goes to stderr).
 *
 * Server replies may carry literals ({N} at the end of a line) anywhere; they are skipped by count,
 * so only the first line of each response is interpreted. Single-threaded libevent loop, like
 * smtp-load and pop3-load. */
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
#include <event2/event.h>

#define LOAD_LINE_MAX (1 << 20)       /* a reply line longer than this is a protocol error */
#define LOAD_LITERAL_MAX (256u << 20) /* so is a literal announced larger than this */

/* The commands of one session, in order. */
enum load_cmd {
	CMD_LOGIN,
	CMD_SELECT,
	CMD_FETCH_ENVELOPE,
	CMD_FETCH_BODY,
	CMD_STORE_SEEN,
	CMD_APPEND,
	CMD_STORE_DELETED,
	CMD_EXPUNGE,
	CMD_LOGOUT,
	CMD_KINDS
};

static const char *const load_cmd_names[CMD_KINDS] = {
    "login",  "select",        "fetch_envelope", "fetch_body", "store_seen",
    "append", "store_deleted", "expunge",        "logout",
};

/* Errors that end a session (a NO or BAD does not: it counts against its command). */
enum load_error {
	LOAD_ERR_CONNECT,
	LOAD_ERR_GREETING,
	LOAD_ERR_BYE,
	LOAD_ERR_CLOSED,
	LOAD_ERR_TIMEOUT,
	LOAD_ERR_PROTOCOL,
	LOAD_ERR_KINDS
};

static const char *const load_error_names[LOAD_ERR_KINDS] = {
    "connect", "greeting", "unexpected_bye", "connection_lost", "timeout", "protocol",
};

enum load_state {
	LOAD_IDLE, /* no session: waiting for a user or the retry timer */
	LOAD_CONNECTING,
	LOAD_GREETING,
	LOAD_COMMAND,     /* waiting for the tagged reply of s->cmd */
	LOAD_APPEND_CONT, /* APPEND sent up to its literal: waiting for "+" (or a tagged refusal) */
	LOAD_LOGOUT_EOF,  /* LOGOUT answered: waiting for the server to close */
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
	int bodies;
	size_t append_size;
	int timeout;
	long server_pid;
	bool json;
};

struct load_cmd_stats {
	long ok, no, bad, skipped;
	uint32_t *us;
	size_t n, cap;
};

struct load_session {
	int id;
	enum load_state state;
	struct bufferevent *bev;
	struct event *retry;
	int user;          /* the user number held, or -1 */
	enum load_cmd cmd; /* the command in flight */
	char tag[16];
	unsigned tag_seq;
	struct timespec sent;  /* when the command was written */
	uint32_t exists;       /* from the last "* N EXISTS" */
	uint32_t uidnext;      /* from SELECT's [UIDNEXT n], 0 if none */
	uint32_t appended_uid; /* from APPEND's [APPENDUID v uid], 0 if none */
	bool cmd_ok;           /* the tagged reply of the last command was OK */
	bool seen_plus;        /* this session's STORE adds \Seen (else removes it) */
	bool continuation;     /* the next line continues a response (it followed a literal) */
	bool response_fetch;   /* the response being read is a "* n FETCH" */
	uint64_t literal_left; /* octets of a server literal still to skip */
	int connect_failures;  /* consecutive */
};

struct load_run {
	struct load_options opt;
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct load_session *sessions;
	int *free_users; /* FIFO of user numbers not in use */
	int free_head, free_count;
	unsigned *user_sessions; /* sessions started per user, for the \Seen toggle */
	long started;            /* sessions started */
	long completed;          /* sessions that reached the server's close after LOGOUT */
	long failed;             /* sessions ended by a connection-level error */
	long errors[LOAD_ERR_KINDS];
	struct load_cmd_stats cmds[CMD_KINDS];
	long appended; /* APPENDs answered OK */
	long expunged; /* "* n EXPUNGE" responses seen */
	long bodies;   /* literals received in FETCH BODY.PEEK[] responses */
	uint64_t body_bytes;
	int active_slots;
	bool stopping;
	struct timespec start, last_done;
	char *message; /* the APPENDed message */
	size_t message_len;
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
		fprintf(stderr, "imap-load: out of memory\n");
		exit(2);
	}
	return p;
}

static void
load_record(struct load_cmd_stats *st, const struct timespec *since)
{
	struct timespec now;
	double us;

	load_now(&now);
	us = load_elapsed(since, &now) * 1e6;
	if (st->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 4096;
		st->us = load_xrealloc(st->us, st->cap * sizeof(*st->us));
	}
	st->us[st->n++] = us > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* VmRSS and VmHWM of a process in KiB (0 when unknown). */
static void
load_server_rss(long pid, long *rss_r, long *hwm_r)
{
	char path[64], line[256];
	FILE *fp;

	*rss_r = *hwm_r = 0;
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss_r = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm_r = strtol(line + 6, NULL, 10);
	}
	fclose(fp);
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

static void
load_slot_retire(void)
{
	run.active_slots--;
	if (run.active_slots == 0)
		event_base_loopexit(run.base, NULL);
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
	load_slot_retire();
}

static void
load_session_fail(struct load_session *s, enum load_error kind)
{
	run.errors[kind]++;
	load_session_end(s, false, kind == LOAD_ERR_CONNECT ? 100 : 10);
}

/* Writes a command line with a fresh tag and starts its clock. */
static void load_command(struct load_session *s, enum load_cmd cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
load_command(struct load_session *s, enum load_cmd cmd, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	snprintf(s->tag, sizeof(s->tag), "a%u", ++s->tag_seq);
	s->cmd = cmd;
	s->state = cmd == CMD_APPEND ? LOAD_APPEND_CONT : LOAD_COMMAND;
	load_now(&s->sent);
	evbuffer_add_printf(out, "%s ", s->tag);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* The user's name or password, from a format checked to hold one %d. */
static void
load_user_string(const struct load_session *s, const char *format, char *buf, size_t size)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(buf, size, format, s->user);
#pragma GCC diagnostic pop
}

/* How many messages the FETCHes and the \Seen STORE cover (1:K). */
static uint32_t
load_window(const struct load_session *s)
{
	return s->exists < (uint32_t)run.opt.bodies ? s->exists : (uint32_t)run.opt.bodies;
}

/* Sends cmd, or counts it skipped and moves on when it cannot apply. */
static void
load_issue(struct load_session *s, enum load_cmd cmd)
{
	char user[256], pass[256];

	for (;;) {
		switch (cmd) {
		case CMD_LOGIN:
			/* The default formats need no quoting; a format with '"' or '\' would need
			 * it. */
			load_user_string(s, run.opt.user_format, user, sizeof(user));
			load_user_string(s, run.opt.password_format, pass, sizeof(pass));
			load_command(s, cmd, "LOGIN \"%s\" \"%s\"", user, pass);
			return;
		case CMD_SELECT:
			s->exists = 0;
			s->uidnext = 0;
			load_command(s, cmd, "SELECT INBOX");
			return;
		case CMD_FETCH_ENVELOPE:
			if (s->exists == 0)
				break;
			load_command(s, cmd, "FETCH 1:* (FLAGS ENVELOPE)");
			return;
		case CMD_FETCH_BODY:
			if (s->exists == 0)
				break;
			load_command(s, cmd, "FETCH 1:%" PRIu32 " BODY.PEEK[]", load_window(s));
			return;
		case CMD_STORE_SEEN:
			if (s->exists == 0)
				break;
			load_command(s, cmd, "STORE 1:%" PRIu32 " %cFLAGS (\\Seen)", load_window(s),
			             s->seen_plus ? '+' : '-');
			return;
		case CMD_APPEND:
			s->appended_uid = 0;
			load_command(s, cmd, "APPEND INBOX {%zu}", run.message_len);
			return;
		case CMD_STORE_DELETED: {
			uint32_t uid = s->appended_uid ? s->appended_uid : s->uidnext;

			if (!s->cmd_ok || uid == 0)
				break; /* nothing appended, or no way to name it */
			load_command(s, cmd, "UID STORE %" PRIu32 " +FLAGS.SILENT (\\Deleted)",
			             uid);
			return;
		}
		case CMD_EXPUNGE:
			load_command(s, cmd, "EXPUNGE");
			return;
		case CMD_LOGOUT:
			load_command(s, cmd, "LOGOUT");
			return;
		case CMD_KINDS:
			return;
		}
		run.cmds[cmd].skipped++;
		cmd++;
	}
}

/* The tagged reply of s->cmd arrived: record it and send what comes next. */
static void
load_tagged(struct load_session *s, const char *status, const char *rest)
{
	struct load_cmd_stats *st = &run.cmds[s->cmd];
	bool ok = strcasecmp(status, "OK") == 0;
	enum load_cmd next;

	if (!ok && strcasecmp(status, "NO") != 0 && strcasecmp(status, "BAD") != 0) {
		load_session_fail(s, LOAD_ERR_PROTOCOL);
		return;
	}
	load_record(st, &s->sent);
	if (ok)
		st->ok++;
	else if (strcasecmp(status, "NO") == 0)
		st->no++;
	else
		st->bad++;
	s->cmd_ok = ok;
	switch (s->cmd) {
	case CMD_LOGIN:
		next = ok ? CMD_SELECT : CMD_LOGOUT;
		break;
	case CMD_SELECT:
		next = ok ? CMD_FETCH_ENVELOPE : CMD_LOGOUT;
		break;
	case CMD_APPEND: {
		const char *code = strcasestr(rest, "[APPENDUID ");
		unsigned long v, uid;

		if (ok) {
			run.appended++;
			if (code != NULL && sscanf(code + 11, "%lu %lu", &v, &uid) == 2 &&
			    uid <= UINT32_MAX)
				s->appended_uid = (uint32_t)uid;
		}
		next = CMD_STORE_DELETED;
		break;
	}
	case CMD_LOGOUT:
		if (!ok) {
			load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		s->state = LOAD_LOGOUT_EOF;
		return;
	default:
		next = s->cmd + 1;
		break;
	}
	load_issue(s, next);
}

/* Parses "* n WORD" into n and word; false when the response is not of that form. */
static bool
load_untagged_number(const char *line, uint32_t *n_r, const char **word_r)
{
	char *end;
	unsigned long n;

	if (line[2] < '0' || line[2] > '9')
		return false;
	n = strtoul(line + 2, &end, 10);
	if (*end != ' ' || n > UINT32_MAX)
		return false;
	*n_r = (uint32_t)n;
	*word_r = end + 1;
	return true;
}

/* The first line of a response (the literals and continuation lines that follow it are not). */
static void
load_response(struct load_session *s, const char *line, size_t len)
{
	size_t taglen = strlen(s->tag);

	if (s->state == LOAD_GREETING) {
		if (len < 5 || strncasecmp(line, "* OK", 4) != 0) {
			load_session_fail(s, LOAD_ERR_GREETING);
			return;
		}
		load_issue(s, CMD_LOGIN);
		return;
	}
	if (s->state == LOAD_LOGOUT_EOF) {
		load_session_fail(s, LOAD_ERR_PROTOCOL);
		return;
	}
	if (line[0] == '+') {
		if (s->state != LOAD_APPEND_CONT) {
			load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		s->state = LOAD_COMMAND;
		bufferevent_write(s->bev, run.message, run.message_len);
		bufferevent_write(s->bev, "\r\n", 2);
		return;
	}
	if (len >= 2 && line[0] == '*' && line[1] == ' ') {
		uint32_t n;
		const char *word;

		if (strncasecmp(line + 2, "BYE", 3) == 0) {
			if (s->cmd != CMD_LOGOUT)
				load_session_fail(s, LOAD_ERR_BYE);
			return;
		}
		if (strncasecmp(line + 2, "OK [UIDNEXT ", 12) == 0) {
			unsigned long v = strtoul(line + 14, NULL, 10);

			s->uidnext = v <= UINT32_MAX ? (uint32_t)v : 0;
			return;
		}
		if (!load_untagged_number(line, &n, &word))
			return;
		if (strncasecmp(word, "EXISTS", 6) == 0) {
			s->exists = n;
		} else if (strncasecmp(word, "EXPUNGE", 7) == 0) {
			run.expunged++;
			if (s->exists > 0)
				s->exists--;
		} else if (strncasecmp(word, "FETCH", 5) == 0) {
			s->response_fetch = true;
		}
		return;
	}
	if (len > taglen && memcmp(line, s->tag, taglen) == 0 && line[taglen] == ' ' &&
	    (s->state == LOAD_COMMAND || s->state == LOAD_APPEND_CONT)) {
		char status[8];
		const char *rest = line + taglen + 1;
		size_t i = 0;

		while (i + 1 < sizeof(status) && rest[i] != '\0' && rest[i] != ' ') {
			status[i] = rest[i];
			i++;
		}
		status[i] = '\0';
		load_tagged(s, status, rest + i);
		return;
	}
	load_session_fail(s, LOAD_ERR_PROTOCOL);
}

/* If the line ends with a literal announcement "{N}", returns true with N. */
static bool
load_literal_at_end(const char *line, size_t len, uint64_t *n_r)
{
	size_t i;
	uint64_t n = 0;

	if (len < 3 || line[len - 1] != '}')
		return false;
	i = len - 1;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == 0 || i == len - 1 || line[i - 1] != '{' || len - 1 - i > 10)
		return false;
	for (size_t j = i; j < len - 1; j++)
		n = n * 10 + (uint64_t)(line[j] - '0');
	*n_r = n;
	return true;
}

static void
load_read_cb(struct bufferevent *bev, void *arg)
{
	struct load_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		if (s->literal_left > 0) {
			size_t have = evbuffer_get_length(in);
			size_t take = have < s->literal_left ? have : (size_t)s->literal_left;

			if (take == 0)
				return;
			evbuffer_drain(in, take);
			s->literal_left -= take;
			if (s->cmd == CMD_FETCH_BODY && s->response_fetch)
				run.body_bytes += take;
			continue;
		}

		struct evbuffer_ptr eol =
		    evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
		char stack[2048], *line;
		size_t len;
		uint64_t lit;

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > LOAD_LINE_MAX)
				load_session_fail(s, LOAD_ERR_PROTOCOL);
			return;
		}
		len = (size_t)eol.pos;
		line = len < sizeof(stack) ? stack : load_xrealloc(NULL, len + 1);
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, 2);
		line[len] = '\0';
		if (!s->continuation)
			s->response_fetch = false;
		bool literal = load_literal_at_end(line, len, &lit);

		if (!s->continuation)
			load_response(s, line, len);
		if (line != stack)
			free(line);
		if (s->bev != bev)
			return; /* the session ended */
		if (literal) {
			if (lit > LOAD_LITERAL_MAX) {
				load_session_fail(s, LOAD_ERR_PROTOCOL);
				return;
			}
			if (s->cmd == CMD_FETCH_BODY && s->response_fetch)
				run.bodies++;
			s->literal_left = lit;
		}
		s->continuation = literal;
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
	if (s->state == LOAD_LOGOUT_EOF && (events & BEV_EVENT_EOF)) {
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
		load_slot_retire();
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
	s->seen_plus = run.user_sessions[s->user - run.opt.first_user]++ % 2 == 0;
	s->continuation = false;
	s->literal_left = 0;
	s->tag_seq = 0;
	s->tag[0] = '\0';
	s->cmd = CMD_LOGIN;
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

/* ---- figures
 * --------------------------------------------------------------------------------------- */

static int
load_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
load_pct_ms(const struct load_cmd_stats *st, double p)
{
	if (st->n == 0)
		return 0;
	return st->us[(size_t)(p * (double)(st->n - 1) + 0.5)] / 1000.0;
}

static double
load_max_ms(const struct load_cmd_stats *st)
{
	return st->n ? st->us[st->n - 1] / 1000.0 : 0;
}

static void
load_make_message(size_t size)
{
	static const char head[] = "From: imap-load <load@bench.test>\r\n"
	                           "To: <mailbox@example.test>\r\n"
	                           "Subject: imap-load APPEND\r\n"
	                           "Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n"
	                           "Message-ID: <append@imap-load.test>\r\n"
	                           "MIME-Version: 1.0\r\n"
	                           "Content-Type: text/plain; charset=us-ascii\r\n"
	                           "\r\n";
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog; imap-load filler 0123456789\r\n";
	size_t len = sizeof(head) - 1;

	if (size < len + 2)
		size = len + 2;
	run.message = load_xrealloc(NULL, size + sizeof(line));
	memcpy(run.message, head, len);
	while (len + sizeof(line) - 1 <= size) {
		memcpy(run.message + len, line, sizeof(line) - 1);
		len += sizeof(line) - 1;
	}
	/* Pad to the exact size with one short last line. */
	if (len < size) {
		size_t pad = size - len;

		memset(run.message + len, 'x', pad);
		if (pad >= 2)
			memcpy(run.message + len + pad - 2, "\r\n", 2);
		len = size;
	}
	run.message_len = len;
}

static void
load_usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: imap-load [--host H] [--port P] [--concurrency C] [--users N] [--first-user "
	    "K]\n"
	    "                 [--user-format F] [--password-format F] [--sessions N] [--duration "
	    "T]\n"
	    "                 [--bodies K] [--append-size B] [--timeout S] [--server-pid PID] "
	    "[--json]\n"
	    "  --host             server address (default 127.0.0.1)\n"
	    "  --port             server port, plaintext IMAP (default 2143)\n"
	    "  --concurrency      sessions open at once (default 10; at most --users)\n"
	    "  --users            how many users to log in as (default 100)\n"
	    "  --first-user       number of the first user (default 1)\n"
	    "  --user-format      printf format of a user name from its number (default "
	    "user%%03d@example.test)\n"
	    "  --password-format  printf format of a password from the number (default "
	    "bench-password-%%d)\n"
	    "  --sessions         sessions to run in total (default: --users, unless --duration is "
	    "given)\n"
	    "  --duration         stop starting new sessions after T seconds\n"
	    "  --bodies           messages whose full body each session fetches, 1:K (default 5)\n"
	    "  --append-size      size of the APPENDed message in bytes (default 4096)\n"
	    "  --timeout          seconds without progress before a session counts as timed out "
	    "(default 60)\n"
	    "  --server-pid       report this process's VmRSS and VmHWM at the end (the server's "
	    "pid)\n"
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

static void
load_report(double wall, long rss, long hwm)
{
	FILE *human = run.opt.json ? stderr : stdout;
	const struct load_options *o = &run.opt;
	long errors = 0, commands = 0;

	for (int i = 0; i < LOAD_ERR_KINDS; i++)
		errors += run.errors[i];
	for (int k = 0; k < CMD_KINDS; k++) {
		struct load_cmd_stats *st = &run.cmds[k];

		qsort(st->us, st->n, sizeof(*st->us), load_cmp_u32);
		commands += (long)st->n;
		errors += st->no + st->bad;
	}
	double cps = wall > 0 ? (double)commands / wall : 0;
	double sps = wall > 0 ? (double)run.completed / wall : 0;

	fprintf(human,
	        "imap-load: %s:%s concurrency=%d users=%d sessions=%ld duration=%.1f bodies=%d "
	        "append-size=%zu\n",
	        o->host, o->port, o->concurrency, o->users, o->sessions, o->duration, o->bodies,
	        run.message_len);
	fprintf(
	    human,
	    "  sessions %ld completed (%ld failed) in %.2f s: %.1f sessions/s, %.0f commands/s\n",
	    run.completed, run.failed, wall, sps, cps);
	fprintf(human, "  %-15s %8s %8s %6s %6s %8s %9s %9s %9s\n", "command", "count", "ok", "no",
	        "bad", "skipped", "p50 ms", "p99 ms", "max ms");
	for (int k = 0; k < CMD_KINDS; k++) {
		const struct load_cmd_stats *st = &run.cmds[k];

		fprintf(human, "  %-15s %8zu %8ld %6ld %6ld %8ld %9.2f %9.2f %9.2f\n",
		        load_cmd_names[k], st->n, st->ok, st->no, st->bad, st->skipped,
		        load_pct_ms(st, 0.50), load_pct_ms(st, 0.99), load_max_ms(st));
	}
	fprintf(human, "  appended %ld, expunged %ld, bodies fetched %ld (%.1f MB)\n", run.appended,
	        run.expunged, run.bodies, (double)run.body_bytes / 1e6);
	if (o->server_pid > 0)
		fprintf(human, "  server pid %ld: VmRSS %.1f MiB, VmHWM %.1f MiB\n", o->server_pid,
		        rss / 1024.0, hwm / 1024.0);
	fprintf(human, "  errors: %ld (NO/BAD by command above)", errors);
	for (int i = 0; i < LOAD_ERR_KINDS; i++)
		if (run.errors[i])
			fprintf(human, " %s=%ld", load_error_names[i], run.errors[i]);
	fprintf(human, "\n");
	if (!o->json)
		return;
	printf(
	    "{\"host\":\"%s\",\"port\":%s,\"concurrency\":%d,\"users\":%d,\"sessions_started\":%ld,"
	    "\"sessions\":%ld,\"failed_sessions\":%ld,\"elapsed_s\":%.3f,\"sessions_per_s\":%.2f,"
	    "\"commands\":%ld,\"commands_per_s\":%.1f,\"bodies\":%d,\"append_size\":%zu,"
	    "\"appended\":%ld,"
	    "\"expunged\":%ld,\"bodies_fetched\":%ld,\"body_bytes\":%" PRIu64
	    ",\"server_rss_kib\":%ld,"
	    "\"server_hwm_kib\":%ld,\"errors\":%ld,\"by_command\":{",
	    o->host, o->port, o->concurrency, o->users, run.started, run.completed, run.failed,
	    wall, sps, commands, cps, o->bodies, run.message_len, run.appended, run.expunged,
	    run.bodies, run.body_bytes, rss, hwm, errors);
	for (int k = 0; k < CMD_KINDS; k++) {
		const struct load_cmd_stats *st = &run.cmds[k];

		printf("%s\"%s\":{\"count\":%zu,\"ok\":%ld,\"no\":%ld,\"bad\":%ld,\"skipped\":%ld,"
		       "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}",
		       k ? "," : "", load_cmd_names[k], st->n, st->ok, st->no, st->bad, st->skipped,
		       load_pct_ms(st, 0.50), load_pct_ms(st, 0.99), load_max_ms(st));
	}
	printf("},\"errors_by_kind\":{");
	bool first = true;

	for (int i = 0; i < LOAD_ERR_KINDS; i++) {
		if (!run.errors[i])
			continue;
		printf("%s\"%s\":%ld", first ? "" : ",", load_error_names[i], run.errors[i]);
		first = false;
	}
	printf("}}\n");
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
	    {"bodies", required_argument, NULL, 'b'},
	    {"append-size", required_argument, NULL, 'a'},
	    {"timeout", required_argument, NULL, 't'},
	    {"server-pid", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct load_options *o = &run.opt;
	int ch;

	o->host = "127.0.0.1";
	o->port = "2143";
	o->concurrency = 10;
	o->users = 100;
	o->first_user = 1;
	o->user_format = "user%03d@example.test";
	o->password_format = "bench-password-%d";
	o->sessions = -1;
	o->bodies = 5;
	o->append_size = 4096;
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
		case 'b':
			o->bodies = atoi(optarg);
			break;
		case 'a':
			o->append_size = (size_t)atol(optarg);
			break;
		case 't':
			o->timeout = atoi(optarg);
			break;
		case 's':
			o->server_pid = atol(optarg);
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
	    o->bodies <= 0 || o->append_size > 60000 || !load_format_ok(o->user_format) ||
	    !load_format_ok(o->password_format)) {
		load_usage(stderr);
		return 2;
	}
	if (o->concurrency > o->users) {
		fprintf(
		    stderr,
		    "imap-load: --concurrency %d > --users %d: one session per account at a time, "
		    "so using %d\n",
		    o->concurrency, o->users, o->users);
		o->concurrency = o->users;
	}
	if (o->sessions < 0)
		o->sessions = o->duration > 0 ? 0 : o->users;

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(o->host, o->port, &hints, &ai);

	if (rc != 0) {
		fprintf(stderr, "imap-load: %s:%s: %s\n", o->host, o->port, gai_strerror(rc));
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
	load_make_message(o->append_size);
	run.base = event_base_new();
	if (run.base == NULL) {
		fprintf(stderr, "imap-load: event_base_new failed\n");
		return 2;
	}
	run.free_users = load_xrealloc(NULL, (size_t)o->users * sizeof(*run.free_users));
	run.user_sessions = calloc((size_t)o->users, sizeof(*run.user_sessions));
	run.sessions = calloc((size_t)o->concurrency, sizeof(*run.sessions));
	if (run.user_sessions == NULL || run.sessions == NULL) {
		fprintf(stderr, "imap-load: out of memory\n");
		return 2;
	}
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

	long rss, hwm;

	load_server_rss(o->server_pid, &rss, &hwm);
	load_report(load_elapsed(&run.start, &run.last_done), rss, hwm);

	for (int i = 0; i < o->concurrency; i++) {
		if (run.sessions[i].bev)
			bufferevent_free(run.sessions[i].bev);
		event_free(run.sessions[i].retry);
	}
	for (int k = 0; k < CMD_KINDS; k++)
		free(run.cmds[k].us);
	if (duration)
		event_free(duration);
	event_free(sigint);
	event_base_free(run.base);
	free(run.sessions);
	free(run.free_users);
	free(run.user_sessions);
	free(run.message);
	/* NO/BAD answers are reported, not fatal: commands still being written answer them today.
	 */
	return run.failed > 0 || run.completed == 0 ? 1 : 0;
}
