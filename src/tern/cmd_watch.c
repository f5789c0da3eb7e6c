/* tern watch: stays connected and reports new mail as it arrives, over IMAP IDLE (RFC 2177) or
 * tern's push protocol, with optional desktop notifications, downloads and a command per message.
 *
 * One connection at a time. The watcher dials the socket itself so that every wait (connect, IDLE,
 * backoff sleeps) can also wake up for a signal: signal handlers only write a byte into a pipe
 * that is polled together with the socket. The last UID reported (and its UIDVALIDITY) is kept per
 * account and mailbox in DATA/watch/, so that after a lost connection or a restart the messages
 * delivered meanwhile are reported once each. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/imap_client.h"
#include "client/push_client.h"
#include "lib/json.h"
#include "lib/util.h"
#include "mime/summary.h"
#include "tern/cli.h"
#include "tern/desktop.h"
#include "tern/fetch.h"
#include "tern/tern.h"

extern char **environ;

#define WATCH_BACKOFF_MAX 60           /* seconds between reconnection attempts, at most */
#define WATCH_REIDLE_DEFAULT (28 * 60) /* RFC 2177: idle again at least every 29 minutes */
#define WATCH_NOOP_POLL 60             /* seconds between NOOPs when the server has no IDLE */
#define WATCH_PUSH_SILENCE 150         /* seconds without a line before a push NOOP */
#define WATCH_HEADER_BATCH 200         /* UIDs per header fetch */
#define WATCH_MAX_CHILDREN 32          /* --exec commands running at once */
#define WATCH_NOTIFY_BATCH 3           /* notifications for missed mail before one summary */

/* What a session ended with. */
enum watch_end {
	WATCH_END_STOP = 0, /* SIGINT/SIGTERM: logged out */
	WATCH_END_RETRY,    /* network or protocol failure: reconnect after the backoff */
	WATCH_END_RESYNC,   /* the push server dropped events: reconnect at once */
	WATCH_END_FATAL,    /* retrying cannot help (login refused, no such mailbox) */
};

enum watch_via { WATCH_VIA_IDLE, WATCH_VIA_PUSH };

static const char watch_usage[] =
    "usage: tern watch [--account NAME] [--via idle|push] [--mailbox NAME] [--notify]\n"
    "                  [--fetch] [--exec CMD] [--json] [--port N] [--security tls|starttls|none]\n"
    "                  [--idle-refresh SECONDS]\n"
    "  Stays connected and prints a line for each new message as it arrives:\n"
    "    New mail: From Bob <bob@example.org> — Lunch on Friday?\n"
    "  --account NAME   the account to watch (default: the default account)\n"
    "  --via idle       IMAP IDLE on the account's IMAP server (the default); a server without\n"
    "                   IDLE is polled with NOOP every minute\n"
    "  --via push       tern's push protocol on the account's server, port 5050 (implicit TLS)\n"
    "  --mailbox NAME   the mailbox to watch (default INBOX)\n"
    "  --notify         also show a desktop notification (any freedesktop.org notification\n"
    "                   daemon); without one, a warning and watching goes on\n"
    "  --fetch          also download new messages into the local store (as 'tern fetch')\n"
    "  --exec CMD       also run CMD with /bin/sh for each message, not waiting for it; the\n"
    "                   message is in the environment only: TERN_FROM, TERN_SUBJECT,\n"
    "                   TERN_MAILBOX, TERN_UID, TERN_SIZE, TERN_DATE, TERN_ACCOUNT (use them\n"
    "                   quoted: \"$TERN_SUBJECT\"), and TERN_MISSED=1 for mail that came while\n"
    "                   tern watch was not connected\n"
    "  --json           one JSON object per line instead: "
    "{\"type\":\"new\",\"account\",\"mailbox\",\n"
    "                   "
    "\"uidvalidity\",\"uid\",\"from\",\"subject\",\"date\",\"size\",\"missed\"}\n"
    "                   (and {\"type\":\"uidvalidity\",\"old\",\"new\"} when a mailbox was "
    "recreated)\n"
    "  --port N         the server's port (push: default 5050; idle: the account's IMAP port)\n"
    "  --security MODE  push: tls (default), starttls or none\n"
    "  --idle-refresh S end and restart IDLE after S seconds (default 1680, 28 minutes)\n"
    "  The last message reported is remembered per account and mailbox (DATA/watch/), so after\n"
    "  a lost connection (reconnecting after 1 s, 2 s, 4 s ... at most 60 s, said on stderr) or\n"
    "  a restart, the messages that came meanwhile are reported once each. Over push, a first\n"
    "  run remembers nothing until the first message. Only a connection that once worked is\n"
    "  retried: when the first one fails (nothing listens, not the right protocol, TLS or\n"
    "  login refused), tern watch says why and exits 1.\n"
    "  Ctrl-C or SIGTERM logs out and exits 0 (a second one exits at once).\n"
    "  Exit status: 0 stopped, 1 error (first connection failed, login refused, no such\n"
    "  mailbox...), 2 usage.\n";

struct watch_options {
	const char *account;
	enum watch_via via;
	const char *mailbox;
	bool notify, fetch, json;
	const char *exec;
	int port;
	bool has_security;
	enum conn_security security;
	int reidle; /* seconds */
};

/* One new message, whichever way it was learnt. */
struct watch_event {
	uint32_t uidvalidity, uid;
	const char *from, *subject;
	const char *date; /* RFC 3339 UTC, or "" */
	uint64_t size;
	bool missed; /* came while we were not connected */
};

struct watch {
	struct watch_options opt;
	const struct account *account;
	struct tern_paths paths;
	struct lstore *store;
	struct account_server server; /* what conn.host points into */
	struct conn_options conn;
	char password[256];
	/* the remembered position */
	char state_path[PATH_MAX + 512];
	bool has_state, state_warned;
	uint32_t uidvalidity, last_uid;
	/* per batch of events */
	bool fetch_pending;
	unsigned batch_notified, batch_unnotified;
	/* actions */
	struct desktop *desktop;
	bool desktop_off;
	unsigned children;
	/* push */
	bool push_resync, push_stale_replay;
	/* the connection's story on stderr */
	bool announced, lost;
	unsigned backoff;
};

static volatile sig_atomic_t watch_stop_signal;
static int watch_pipe[2] = {-1, -1};

/* SIGINT/SIGTERM ask to stop (a second one ends the process); SIGCHLD asks for a reap. Either
 * way a byte in the pipe wakes the poll up. */
static void
watch_on_signal(int sig)
{
	int saved = errno;
	char b = (char)sig;

	if (sig != SIGCHLD) {
		if (watch_stop_signal != 0) {
			signal(sig, SIG_DFL);
			raise(sig);
		}
		watch_stop_signal = sig;
	}
	if (write(watch_pipe[1], &b, 1) < 0) {
		/* the pipe is full: a wake-up is already pending */
	}
	errno = saved;
}

static int
watch_signals_init(void)
{
	struct sigaction sa;

	if (pipe2(watch_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watch_on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	return 0;
}

/* Collects the --exec commands that have finished; says so when one failed. */
static void
watch_reap(struct watch *w, bool block_one)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, block_one ? 0 : WNOHANG)) > 0 ||
	       (pid < 0 && errno == EINTR)) {
		if (pid < 0)
			continue;
		block_one = false;
		if (w->children > 0)
			w->children--;
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			fprintf(stderr, "tern watch: --exec command exited with status %d\n",
			        WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			fprintf(stderr, "tern watch: --exec command killed by signal %d\n",
			        WTERMSIG(status));
	}
}

/* Waits up to timeout_ms for fd (-1: none) to be readable, reaping children on the way.
 * Returns 1 readable (or hung up: the read says why), 0 timed out, -1 stop asked. */
static int
watch_wait(struct watch *w, int fd, int64_t timeout_ms)
{
	int64_t deadline = time_mono_usec() / 1000 + timeout_ms;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = watch_pipe[0], .events = POLLIN},
		                        {.fd = fd, .events = POLLIN}};
		int64_t left = deadline - time_mono_usec() / 1000;
		char drain[64];
		int n;

		if (watch_stop_signal != 0)
			return -1;
		if (left <= 0)
			return 0;
		n = poll(pfd, fd >= 0 ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno != EINTR)
			return 0;
		if (n <= 0)
			continue;
		if (pfd[0].revents != 0) {
			while (read(watch_pipe[0], drain, sizeof(drain)) > 0)
				;
			watch_reap(w, false);
			continue;
		}
		if (fd >= 0 && pfd[1].revents != 0)
			return 1;
	}
}

/* --- connecting --- */

/* Connects a non-blocking socket to one address within the timeout, giving up on a stop. */
static int
watch_connect_one(struct watch *w, const struct addrinfo *ai, int *errno_r)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	int err = 0, r;
	socklen_t len = sizeof(err);

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
	/* Writable means connected or failed; watch_wait only waits for readable, so poll here. */
	int64_t deadline = time_mono_usec() / 1000 + w->conn.timeout_ms;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = fd, .events = POLLOUT},
		                        {.fd = watch_pipe[0], .events = POLLIN}};
		int64_t left = deadline - time_mono_usec() / 1000;

		if (watch_stop_signal != 0 || left <= 0) {
			*errno_r = watch_stop_signal != 0 ? EINTR : ETIMEDOUT;
			close(fd);
			return -1;
		}
		r = poll(pfd, 2, (int)left);
		if (r > 0 && pfd[1].revents != 0) {
			char drain[64];

			while (read(watch_pipe[0], drain, sizeof(drain)) > 0)
				;
			watch_reap(w, false);
		}
		if (r > 0 && pfd[0].revents != 0)
			break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		*errno_r = err != 0 ? err : errno;
		close(fd);
		return -1;
	}
	return fd;
}

/* Connects to the server and starts TLS for implicit TLS: *conn_r owns the socket, *fd_r is it
 * (for polling). Returns 0 or -1 with error. */
static int
watch_dial(struct watch *w, struct conn **conn_r, int *fd_r, char *error, size_t errsize)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	char service[16];
	int fd = -1, last = ECONNREFUSED, rc;

	*conn_r = NULL;
	snprintf(service, sizeof(service), "%d", w->conn.port);
	rc = getaddrinfo(w->conn.host, service, &hints, &res);
	if (rc != 0) {
		snprintf(error, errsize, "cannot resolve %s: %s", w->conn.host,
		         rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = watch_connect_one(w, ai, &last);
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(error, errsize, "cannot connect to %s:%d: %s", w->conn.host, w->conn.port,
		         strerror(last));
		return -1;
	}
	if (conn_from_fd(fd, &w->conn, conn_r, error, errsize) != 0)
		return -1;
	/* For implicit TLS the handshake comes first; conn_starttls is that handshake, with the
	 * same verification as every other tern connection. */
	if (w->conn.security == CONN_SECURITY_TLS && conn_starttls(*conn_r, error, errsize) != 0) {
		conn_close(conn_r);
		return -1;
	}
	*fd_r = fd;
	return 0;
}

/* --- the remembered position --- */

/* Appends s to out with everything but [A-Za-z0-9_-] as %XX, so any name is one file name. */
static void
watch_state_escape(char *out, size_t outsize, const char *s)
{
	size_t o = strlen(out);

	for (; *s != '\0' && o + 4 < outsize; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, outsize - o, "%%%02X", ch);
	}
	out[o] = '\0';
}

/* Reads DATA/watch/ACCOUNT.MAILBOX ("UIDVALIDITY LAST_UID"); a missing file is no state. */
static void
watch_state_load(struct watch *w)
{
	char name[NAME_MAX + 1] = "", line[64];
	unsigned long long v, u;
	FILE *fp;

	watch_state_escape(name, 96, w->account->name);
	strcat(name, ".");
	watch_state_escape(name, 200, w->opt.mailbox);
	snprintf(w->state_path, sizeof(w->state_path), "%s/watch/%s", w->paths.data_dir, name);
	fp = fopen(w->state_path, "re");
	if (fp == NULL)
		return;
	if (fgets(line, sizeof(line), fp) != NULL && sscanf(line, "%llu %llu", &v, &u) == 2 &&
	    v <= UINT32_MAX && u <= UINT32_MAX) {
		w->has_state = true;
		w->uidvalidity = (uint32_t)v;
		w->last_uid = (uint32_t)u;
	}
	fclose(fp);
}

/* Replaces the state file (write, fsync, rename): a crash leaves the old or the new one. */
static void
watch_state_save(struct watch *w, uint32_t uidvalidity, uint32_t last_uid)
{
	char dir[PATH_MAX + 16], tmp[PATH_MAX + 520], text[64];
	int fd, n;

	w->has_state = true;
	w->uidvalidity = uidvalidity;
	w->last_uid = last_uid;
	snprintf(dir, sizeof(dir), "%s/watch", w->paths.data_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->state_path);
	n = snprintf(text, sizeof(text), "%" PRIu32 " %" PRIu32 "\n", uidvalidity, last_uid);
	if (mkdir_p(dir, 0700) != 0 ||
	    (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		goto fail;
	if (write_full(fd, text, (size_t)n) != 0 || fsync(fd) != 0) {
		close(fd);
		goto fail;
	}
	close(fd);
	if (rename(tmp, w->state_path) != 0 || fsync_dir(dir) != 0)
		goto fail;
	return;
fail:
	if (!w->state_warned)
		fprintf(stderr,
		        "tern watch: warning: cannot save the last seen message in %s: %s (after a "
		        "restart, mail may be reported again)\n",
		        w->state_path, strerror(errno));
	w->state_warned = true;
}

/* --- what happens for each new message --- */

/* Runs --exec through /bin/sh with the message in the environment only: the command line is
 * the user's, never built from message text. Does not wait for it. */
static void
watch_exec(struct watch *w, const struct watch_event *ev)
{
	static const char *const ours[] = {
	    "TERN_FROM=", "TERN_SUBJECT=", "TERN_MAILBOX=", "TERN_UID=",        "TERN_SIZE=",
	    "TERN_DATE=", "TERN_ACCOUNT=", "TERN_MISSED=",  "TERN_UIDVALIDITY="};
	const size_t nours = sizeof(ours) / sizeof(ours[0]);
	char *argv[] = {"sh", "-c", (char *)w->opt.exec, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t def, none;
	size_t n = 0, k = 0;
	char **envp;
	pid_t pid;
	int r;

	watch_reap(w, false);
	if (w->children >= WATCH_MAX_CHILDREN)
		watch_reap(w, true); /* bounded: wait for one to finish */
	while (environ[n] != NULL)
		n++;
	envp = xcalloc(n + nours + 1, sizeof(*envp));
	for (size_t i = 0; i < n; i++) {
		bool replaced = false;

		for (size_t j = 0; j < nours; j++)
			replaced |= strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
		if (!replaced)
			envp[k++] = environ[i];
	}
	size_t first = k;
	envp[k++] = xasprintf("TERN_FROM=%s", ev->from);
	envp[k++] = xasprintf("TERN_SUBJECT=%s", ev->subject);
	envp[k++] = xasprintf("TERN_MAILBOX=%s", w->opt.mailbox);
	envp[k++] = xasprintf("TERN_UID=%" PRIu32, ev->uid);
	envp[k++] = xasprintf("TERN_SIZE=%" PRIu64, ev->size);
	envp[k++] = xasprintf("TERN_DATE=%s", ev->date);
	envp[k++] = xasprintf("TERN_ACCOUNT=%s", w->account->name);
	envp[k++] = xasprintf("TERN_MISSED=%d", ev->missed ? 1 : 0);
	envp[k++] = xasprintf("TERN_UIDVALIDITY=%" PRIu32, ev->uidvalidity);
	envp[k] = NULL;

	/* The child starts with default signal actions (SIGPIPE is ignored here) and no input. */
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGCHLD);
	sigemptyset(&none);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	fflush(stdout);
	fflush(stderr);
	r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp);
	if (r != 0)
		fprintf(stderr, "tern watch: cannot run --exec command: %s\n", strerror(r));
	else
		w->children++;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	for (size_t i = first; i < k; i++)
		free(envp[i]);
	free(envp);
}

/* Shows a desktop notification; the first failure is said once and turns them off. */
static void
watch_notify(struct watch *w, const char *title, const char *body)
{
	char error[512];

	if (w->desktop_off)
		return;
	if (desktop_notify(w->desktop, title, body, error, sizeof(error)) < 0) {
		fprintf(stderr,
		        "tern watch: warning: no desktop notification (%s); watching goes on "
		        "without them\n",
		        error);
		w->desktop_off = true;
	}
}

/* Reports one new message: the line (or JSON), then --notify, --exec; --fetch waits for the end
 * of the batch. */
static void
watch_emit(struct watch *w, const struct watch_event *ev)
{
	const char *from = ev->from[0] != '\0' ? ev->from : "(unknown sender)";
	const char *subject = ev->subject[0] != '\0' ? ev->subject : "(no subject)";

	if (w->opt.json) {
		printf("{\"type\": \"new\", \"account\": ");
		json_write_string(stdout, w->account->name);
		printf(", \"mailbox\": ");
		json_write_string(stdout, w->opt.mailbox);
		printf(", \"uidvalidity\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"from\": ",
		       ev->uidvalidity, ev->uid);
		json_write_string(stdout, ev->from);
		printf(", \"subject\": ");
		json_write_string(stdout, ev->subject);
		printf(", \"date\": ");
		json_write_string(stdout, ev->date);
		printf(", \"size\": %" PRIu64 ", \"missed\": %s}\n", ev->size,
		       ev->missed ? "true" : "false");
	} else {
		fputs("New mail: From ", stdout);
		cli_print_safe(stdout, from);
		fputs(" \xe2\x80\x94 ", stdout);
		cli_print_safe(stdout, subject);
		fputc('\n', stdout);
	}
	fflush(stdout);
	if (w->opt.notify && !w->desktop_off) {
		/* Missed mail can be a flood: a few notifications, then one that counts the rest.
		 */
		if (ev->missed && w->batch_notified >= WATCH_NOTIFY_BATCH) {
			w->batch_unnotified++;
		} else {
			char *title = xasprintf("New mail from %s", from);

			watch_notify(w, title, subject);
			free(title);
			w->batch_notified++;
		}
	}
	if (w->opt.exec != NULL)
		watch_exec(w, ev);
	if (w->opt.fetch)
		w->fetch_pending = true;
}

/* The end of a group of events: the summary notification, then one download for all. */
static void
watch_batch_end(struct watch *w)
{
	if (w->batch_unnotified > 0) {
		char *title = xasprintf("%u more new messages", w->batch_unnotified);

		watch_notify(w, title, w->opt.mailbox);
		free(title);
	}
	w->batch_notified = w->batch_unnotified = 0;
	if (w->fetch_pending) {
		struct fetch_options fo = {.protocol = w->account->imap.host[0] != '\0'
		                                           ? FETCH_PROTOCOL_IMAP
		                                           : FETCH_PROTOCOL_AUTO,
		                           .folder = w->opt.mailbox};
		struct fetch_result r;
		char error[1024];

		w->fetch_pending = false;
		if (fetch_run(w->store, w->account, &fo, &r, error, sizeof(error)) < 0)
			fprintf(stderr, "tern watch: --fetch: %s\n", error);
		else if (r.fetched > 0)
			fprintf(stderr, "tern watch: %u new message%s saved in the local store\n",
			        r.fetched, r.fetched == 1 ? "" : "s");
		if (r.interrupted && watch_stop_signal == 0)
			watch_stop_signal = SIGINT; /* fetch_run had Ctrl-C for itself */
	}
}

/* Says that the mailbox was recreated (UIDVALIDITY changed): old UIDs mean nothing now. */
static void
watch_uidvalidity_changed(struct watch *w, uint32_t now)
{
	fprintf(stderr,
	        "tern watch: the UIDVALIDITY of %s changed (%" PRIu32 " -> %" PRIu32
	        "): its messages were renumbered; watching from its current state\n",
	        w->opt.mailbox, w->uidvalidity, now);
	if (w->opt.json) {
		printf("{\"type\": \"uidvalidity\", \"account\": ");
		json_write_string(stdout, w->account->name);
		printf(", \"mailbox\": ");
		json_write_string(stdout, w->opt.mailbox);
		printf(", \"old\": %" PRIu32 ", \"new\": %" PRIu32 "}\n", w->uidvalidity, now);
		fflush(stdout);
	}
}

/* A session reached the watching state: say so (the first time, or after a loss) and start the
 * backoff over. */
static void
watch_connected(struct watch *w)
{
	w->backoff = 1;
	if (!w->announced)
		fprintf(stderr, "tern watch: watching %s of %s on %s:%d (%s); Ctrl-C to stop\n",
		        w->opt.mailbox, w->account->name, w->conn.host, w->conn.port,
		        w->opt.via == WATCH_VIA_IDLE ? "IMAP IDLE" : "push");
	else if (w->lost)
		fprintf(stderr, "tern watch: reconnected to %s:%d\n", w->conn.host, w->conn.port);
	fflush(stderr);
	w->announced = true;
	w->lost = false;
}

/* --- IMAP IDLE --- */

/* "24-Nov-2026 23:10:00 +0100" (RFC 3501 date-time) as RFC 3339 UTC; "" when malformed. */
static void
watch_internaldate(const char *s, char *out, size_t outsize)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4], sign;
	int day, year, hh, mm, ss, zone;
	struct tm tm = {0};
	const char *m;

	out[0] = '\0';
	if (sscanf(s, " %d-%3s-%d %d:%d:%d %c%4d", &day, mon, &year, &hh, &mm, &ss, &sign, &zone) !=
	        8 ||
	    (sign != '+' && sign != '-') || strlen(mon) != 3 || (m = strstr(months, mon)) == NULL ||
	    (m - months) % 3 != 0 || day < 1 || day > 31 || year < 1970 || year > 9999 || hh > 23 ||
	    mm > 59 || ss > 60 || zone > 1459)
		return;
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	int64_t t = (int64_t)timegm(&tm) -
	            (sign == '+' ? 1 : -1) * ((zone / 100) * 3600 + (zone % 100) * 60);
	time_format_iso8601(t, out, outsize);
}

/* Reports every message above the last one seen, in UID order, saving the position after each.
 * Returns 0 or -1 with error. */
static int
watch_imap_new(struct watch *w, struct imap_client *c, uint32_t uidvalidity, bool missed,
               char *error, size_t errsize)
{
	struct imap_client_entry *list = NULL;
	size_t n = 0, i = 0;

	if (w->last_uid == UINT32_MAX)
		return 0;
	if (imap_client_list(c, w->last_uid + 1, &list, &n, error, errsize) < 0)
		return -1;
	while (i < n) {
		struct imap_client_header *h = NULL;
		size_t nh = 0, j = i + WATCH_HEADER_BATCH < n ? i + WATCH_HEADER_BATCH : n;

		if (imap_client_headers(c, list[i].uid, list[j - 1].uid, &h, &nh, error, errsize) <
		    0) {
			free(list);
			return -1;
		}
		for (size_t k = 0; k < nh; k++) {
			struct mime_summary sum;
			char date[40];

			if (h[k].uid <= w->last_uid)
				continue;
			mime_summary_from_buffer(h[k].fields, h[k].fields_len, &sum);
			watch_internaldate(h[k].internaldate, date, sizeof(date));
			if (date[0] == '\0' && sum.date > 0)
				time_format_iso8601(sum.date, date, sizeof(date));
			struct watch_event ev = {.uidvalidity = uidvalidity,
			                         .uid = h[k].uid,
			                         .from = sum.from,
			                         .subject = sum.subject,
			                         .date = date,
			                         .size = h[k].size,
			                         .missed = missed};
			watch_emit(w, &ev);
			watch_state_save(w, uidvalidity, h[k].uid);
		}
		imap_client_headers_free(&h, nh);
		/* A UID listed but gone by the header fetch was expunged: never ask again. */
		if (list[j - 1].uid > w->last_uid)
			watch_state_save(w, uidvalidity, list[j - 1].uid);
		i = j;
	}
	free(list);
	watch_batch_end(w);
	return 0;
}

/* After SELECT: reports what came while we were away, or starts from the current state. */
static int
watch_imap_sync(struct watch *w, struct imap_client *c, uint32_t uidvalidity, uint32_t exists,
                char *error, size_t errsize)
{
	uint32_t highest;

	if (w->has_state && w->uidvalidity == uidvalidity)
		return watch_imap_new(w, c, uidvalidity, true, error, errsize);
	if (w->has_state)
		watch_uidvalidity_changed(w, uidvalidity);
	if (imap_client_highest_uid(c, exists, &highest, error, errsize) < 0)
		return -1;
	watch_state_save(w, uidvalidity, highest);
	return 0;
}

/* Reports what is new until a listing finds nothing more: mail that arrives while we fetch is
 * announced (EXISTS) inside those responses, not in the next IDLE or NOOP. 0 or -1. */
static int
watch_imap_catch_up(struct watch *w, struct imap_client *c, uint32_t uidvalidity, char *error,
                    size_t errsize)
{
	uint32_t before;

	do {
		before = w->last_uid;
		if (watch_imap_new(w, c, uidvalidity, false, error, errsize) < 0)
			return -1;
	} while (w->last_uid != before);
	return 0;
}

/* Without IDLE: a NOOP every minute. */
static enum watch_end
watch_imap_poll(struct watch *w, struct imap_client *c, uint32_t uidvalidity, char *error,
                size_t errsize)
{
	for (;;) {
		bool exists;

		if (watch_wait(w, -1, WATCH_NOOP_POLL * 1000) < 0)
			return WATCH_END_STOP;
		if (imap_client_noop(c, &exists, error, errsize) < 0)
			return WATCH_END_RETRY;
		if (exists && watch_imap_catch_up(w, c, uidvalidity, error, errsize) < 0)
			return WATCH_END_RETRY;
	}
}

/* The IDLE loop on a selected mailbox: idle until EXISTS (or the refresh time), DONE, fetch
 * what is new, idle again. */
static enum watch_end
watch_imap_idle(struct watch *w, struct imap_client *c, int fd, uint32_t uidvalidity, char *error,
                size_t errsize)
{
	for (;;) {
		bool pending = false, more = false;
		int64_t deadline;
		int r = imap_client_idle_start(c, &pending, error, errsize);

		if (r < 0)
			return WATCH_END_RETRY;
		if (r == 0) {
			fprintf(stderr, "tern watch: %s:%d has no IDLE; checking every %d s\n",
			        w->conn.host, w->conn.port, WATCH_NOOP_POLL);
			return watch_imap_poll(w, c, uidvalidity, error, errsize);
		}
		deadline = time_mono_usec() / 1000 + (int64_t)w->opt.reidle * 1000;
		while (!pending) {
			if (imap_client_buffered(c) == 0) {
				int wr = watch_wait(w, fd, deadline - time_mono_usec() / 1000);

				if (wr < 0)
					return WATCH_END_STOP;
				if (wr == 0)
					break;
			}
			r = imap_client_idle_read(c, error, errsize);
			if (r < 0)
				return WATCH_END_RETRY;
			pending = r == 1;
		}
		if (imap_client_idle_done(c, &more, error, errsize) < 0)
			return WATCH_END_RETRY;
		if (!pending && !more)
			continue;
		if (watch_imap_catch_up(w, c, uidvalidity, error, errsize) < 0)
			return WATCH_END_RETRY;
	}
}

/* One IMAP connection from dial to logout. */
static enum watch_end
watch_imap(struct watch *w, char *error, size_t errsize)
{
	struct imap_client *c = NULL;
	struct conn *conn;
	uint32_t uidvalidity, exists;
	enum watch_end end;
	int fd, r;

	if (watch_dial(w, &conn, &fd, error, errsize) < 0)
		return WATCH_END_RETRY;
	r = imap_client_open_conn(conn, &w->conn, w->account->user, w->password, &c, error,
	                          errsize);
	if (r < 0)
		return r == -2 ? WATCH_END_FATAL : WATCH_END_RETRY;
	r = imap_client_select(c, w->opt.mailbox, true, &uidvalidity, &exists, error, errsize);
	if (r < 0) {
		imap_client_logout(&c);
		return r == -2 ? WATCH_END_FATAL : WATCH_END_RETRY;
	}
	if (watch_imap_sync(w, c, uidvalidity, exists, error, errsize) < 0) {
		imap_client_logout(&c);
		return WATCH_END_RETRY;
	}
	watch_connected(w);
	end = watch_imap_idle(w, c, fd, uidvalidity, error, errsize);
	imap_client_logout(&c); /* DONE and LOGOUT when the connection still works */
	return end;
}

/* --- push --- */

/* An event from the push server (inside a push_client call: nothing here talks to it). */
static void
watch_push_event(const struct push_event *pe, void *arg)
{
	struct watch *w = arg;

	if (pe->type == PUSH_EVENT_RESYNC) {
		fprintf(stderr, "tern watch: the server dropped events (%s); resyncing\n",
		        pe->reason[0] != '\0' ? pe->reason : "no reason given");
		w->push_resync = true;
		return;
	}
	if (pe->type != PUSH_EVENT_NEW || strcmp(pe->mailbox, w->opt.mailbox) != 0)
		return;
	uint32_t uidvalidity = pe->has_uidvalidity ? pe->uidvalidity : w->uidvalidity;
	if (w->has_state && uidvalidity != w->uidvalidity) {
		/* Replayed "since" a UID of the old numbering: not what we missed. */
		if (pe->replay) {
			if (!w->push_stale_replay)
				watch_uidvalidity_changed(w, uidvalidity);
			w->push_stale_replay = true;
			return;
		}
		if (!w->push_stale_replay)
			watch_uidvalidity_changed(w, uidvalidity);
		w->push_stale_replay = false;
		w->has_state = false;
	}
	if (w->has_state && pe->uid <= w->last_uid)
		return; /* reported already */
	struct watch_event ev = {.uidvalidity = uidvalidity,
	                         .uid = pe->uid,
	                         .from = pe->from,
	                         .subject = pe->subject,
	                         .date = pe->date,
	                         .size = pe->size,
	                         .missed = pe->replay};
	watch_emit(w, &ev);
	watch_state_save(w, uidvalidity, pe->uid);
}

/* One push connection: WATCH (SINCE the last UID seen), then events until it fails or we stop. */
static enum watch_end
watch_push(struct watch *w, char *error, size_t errsize)
{
	struct push_client *c = NULL;
	struct conn *conn;
	enum watch_end end = WATCH_END_RETRY;
	int fd, r;

	w->push_resync = false;
	w->push_stale_replay = false;
	if (watch_dial(w, &conn, &fd, error, errsize) < 0)
		return WATCH_END_RETRY;
	r = push_client_open_conn(conn, &w->conn, w->account->user, w->password, watch_push_event,
	                          w, &c, error, errsize);
	if (r < 0)
		return r == -2 ? WATCH_END_FATAL : WATCH_END_RETRY;
	r = push_client_watch(c, w->opt.mailbox, w->has_state, w->last_uid, error, errsize);
	if (r < 0) {
		push_client_logout(&c);
		return r == -2 ? WATCH_END_FATAL : WATCH_END_RETRY;
	}
	if (w->push_stale_replay) {
		/* Only stale replays came: nothing known of the new numbering until live mail. */
		w->has_state = false;
		w->push_stale_replay = false;
	}
	watch_connected(w);
	watch_batch_end(w);
	for (;;) {
		if (w->push_resync) {
			end = WATCH_END_RESYNC;
			break;
		}
		if (push_client_buffered(c) == 0) {
			int wr = watch_wait(w, fd, WATCH_PUSH_SILENCE * 1000);

			if (wr < 0) {
				end = WATCH_END_STOP;
				break;
			}
			if (wr == 0) {
				if (push_client_noop(c, error, errsize) < 0)
					break;
				continue;
			}
		}
		if (push_client_read(c, error, errsize) < 0)
			break;
		if (push_client_buffered(c) == 0)
			watch_batch_end(w);
	}
	watch_batch_end(w);
	push_client_logout(&c);
	return end;
}

/* --- the command --- */

static int
watch_parse_options(int argc, char **argv, struct watch_options *o)
{
	static const struct option longopts[] = {
	    {"account", required_argument, NULL, 'a'},
	    {"via", required_argument, NULL, 'v'},
	    {"mailbox", required_argument, NULL, 'm'},
	    {"notify", no_argument, NULL, 'n'},
	    {"fetch", no_argument, NULL, 'f'},
	    {"exec", required_argument, NULL, 'e'},
	    {"json", no_argument, NULL, 'j'},
	    {"port", required_argument, NULL, 'p'},
	    {"security", required_argument, NULL, 's'},
	    {"idle-refresh", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, n;

	*o = (struct watch_options){.mailbox = "INBOX", .reidle = WATCH_REIDLE_DEFAULT};
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+a:v:m:nfe:jp:s:r:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->account = optarg;
			break;
		case 'v':
			if (strcmp(optarg, "idle") == 0 || strcmp(optarg, "imap") == 0) {
				o->via = WATCH_VIA_IDLE;
			} else if (strcmp(optarg, "push") == 0) {
				o->via = WATCH_VIA_PUSH;
			} else {
				fprintf(stderr, "tern watch: --via takes idle or push, not '%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			break;
		case 'm':
			if (optarg[0] == '\0' || strpbrk(optarg, "\r\n") != NULL) {
				fprintf(stderr, "tern watch: invalid --mailbox\n");
				return CLI_USAGE;
			}
			o->mailbox = optarg;
			break;
		case 'n':
			o->notify = true;
			break;
		case 'f':
			o->fetch = true;
			break;
		case 'e':
			o->exec = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'p':
			if (cli_parse_count(optarg, &n) < 0 || n < 1 || n > 65535) {
				fprintf(stderr, "tern watch: --port takes 1 to 65535, not '%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			o->port = n;
			break;
		case 's':
			if (accounts_security_parse(optarg, &o->security) != 1) {
				fprintf(stderr,
				        "tern watch: --security takes tls, starttls or none, not "
				        "'%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			o->has_security = true;
			break;
		case 'r':
			if (cli_parse_count(optarg, &n) < 0 || n < 1 || n > 29 * 60) {
				fprintf(stderr,
				        "tern watch: --idle-refresh takes 1 to 1740 seconds, not "
				        "'%s'\n",
				        optarg);
				return CLI_USAGE;
			}
			o->reidle = n;
			break;
		case 'h':
			fputs(watch_usage, stdout);
			return CLI_OK;
		default:
			return cli_bad_option("watch", argv, optind);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tern watch: unexpected argument '%s'\n%s", argv[optind],
		        watch_usage);
		return CLI_USAGE;
	}
	return -1;
}

/* The server to watch: the account's IMAP server for IDLE; for push its host (IMAP's, else
 * POP3's, else SMTP's) on port 5050 with implicit TLS unless told otherwise. */
static int
watch_server(struct watch *w)
{
	const struct account *a = w->account;
	struct account_server *server = &w->server;

	if (w->opt.via == WATCH_VIA_IDLE) {
		if (a->imap.host[0] == '\0') {
			fprintf(stderr,
			        "tern watch: account '%s' has no IMAP server (add one with 'tern "
			        "account add %s --imap HOST:PORT ...', or use --via push)\n",
			        a->name, a->name);
			return -1;
		}
		*server = a->imap;
	} else {
		const char *host = a->imap.host[0] != '\0'   ? a->imap.host
		                   : a->pop3.host[0] != '\0' ? a->pop3.host
		                                             : a->smtp.host;

		if (host[0] == '\0') {
			fprintf(stderr, "tern watch: account '%s' has no server\n", a->name);
			return -1;
		}
		memset(server, 0, sizeof(*server));
		str_copy(server->host, host, sizeof(server->host));
		server->port = PUSH_CLIENT_PORT;
		server->security = CONN_SECURITY_TLS;
	}
	if (w->opt.port > 0)
		server->port = w->opt.port;
	if (w->opt.has_security)
		server->security = w->opt.security;
	account_conn_options(a, server, &w->conn);
	if (w->opt.via == WATCH_VIA_PUSH)
		w->conn.max_line = PUSH_CLIENT_MAX_LINE;
	return 0;
}

/* Connects, watches, and reconnects with a doubling backoff until stopped or refused. */
static int
watch_run(struct watch *w)
{
	w->backoff = 1;
	for (;;) {
		char error[1024] = "";
		enum watch_end end = w->opt.via == WATCH_VIA_IDLE
		                         ? watch_imap(w, error, sizeof(error))
		                         : watch_push(w, error, sizeof(error));

		if (end == WATCH_END_STOP || watch_stop_signal != 0)
			return CLI_OK;
		if (end == WATCH_END_FATAL) {
			fprintf(stderr, "tern watch: %s: %s\n", w->account->name, error);
			return CLI_ERROR;
		}
		if (end == WATCH_END_RESYNC)
			continue;
		/* Retrying is for a connection that worked and was lost; a first one that fails
		 * (wrong port, not a push or IMAP server, certificate refused) is a mistake to fix.
		 */
		if (!w->announced) {
			fprintf(stderr,
			        "tern watch: %s: %s\n  (the first connection failed, so tern watch "
			        "stops; check the host, --port and --security)\n",
			        w->account->name, error);
			return CLI_ERROR;
		}
		w->lost = true;
		fprintf(stderr, "tern watch: %s; reconnecting in %u s\n", error, w->backoff);
		fflush(stderr);
		if (watch_wait(w, -1, (int64_t)w->backoff * 1000) < 0)
			return CLI_OK;
		w->backoff =
		    w->backoff * 2 > WATCH_BACKOFF_MAX ? WATCH_BACKOFF_MAX : w->backoff * 2;
	}
}

int
cmd_watch(int argc, char **argv)
{
	struct watch w;
	struct account *accounts = NULL;
	char error[512];
	int ret;

	memset(&w, 0, sizeof(w));
	ret = watch_parse_options(argc, argv, &w.opt);
	if (ret >= 0)
		return ret;
	if (cli_open_store("watch", &w.paths, &w.store) < 0)
		return CLI_ERROR;
	if (cli_load_account("watch", &w.paths, w.opt.account, &accounts, &w.account) < 0) {
		lstore_close(&w.store);
		return CLI_ERROR;
	}
	if (watch_server(&w) < 0) {
		ret = CLI_ERROR;
		goto done;
	}
	if (account_password(w.account, w.password, sizeof(w.password), error, sizeof(error)) < 0) {
		fprintf(stderr, "tern watch: no password for '%s': %s\n", w.account->name, error);
		ret = CLI_ERROR;
		goto done;
	}
	if (watch_signals_init() < 0) {
		fprintf(stderr, "tern watch: cannot make a pipe: %s\n", strerror(errno));
		ret = CLI_ERROR;
		goto done;
	}
	watch_state_load(&w);
	if (w.opt.notify)
		w.desktop = desktop_new("tern");
	ret = watch_run(&w);
	if (watch_stop_signal != 0)
		fprintf(stderr, "tern watch: stopped\n");
	watch_reap(&w, false);
	desktop_free(&w.desktop);
done:
	explicit_bzero(w.password, sizeof(w.password));
	free(accounts);
	lstore_close(&w.store);
	return ret;
}
