/* ternd serve: the daemon. One event loop owns every socket; worker threads do the slow work. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "deliver/deliver.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/workers.h"
#include "mime/summary.h"
#include "net/listener.h"
#include "net/tls.h"
#include "notify/notify.h"
#include "imap/imap_session.h"
#include "pop3/pop3_session.h"
#include "push/push.h"
#include "push/webhook.h"
#include "smtp/smtp_session.h"
#include "store/store.h"
#include "ternd/ternd.h"

#define SERVE_NLISTENERS 9

struct serve {
	struct ternd_ctx ctx;
	struct event_base *base;
	struct workers *workers;
	struct workers *auth_workers; /* password checks only, so SEARCH never waits behind them */
	struct workers *io_workers;   /* the store reader: message files for FETCH, RETR, TOP */
	struct store *store;
	struct auth *auth;
	struct notify_hub *hub;
	struct deliver *deliver;
	struct smtp_server *smtp;
	struct pop3_server *pop3;
	struct imap_server *imap;
	struct push_server *push;
	struct webhook *webhook;
	struct listener *listeners[SERVE_NLISTENERS];
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer;
	int64_t shutdown_deadline;
	bool stopping;
};

/* Every listener: its config key, log name, TLS mode and the protocol that takes connections. */
struct serve_listener {
	const char *key;
	const char *name;
	bool implicit_tls;
	const char *busy; /* refusal line format for plaintext, %s = hostname; NULL: none */
};

static const struct serve_listener serve_listeners[SERVE_NLISTENERS] = {
    {"smtp.listen", "smtp", false, "421 4.7.0 %s Error: too many connections\r\n"},
    {"smtp.submission", "submission", false, "421 4.7.0 %s Error: too many connections\r\n"},
    {"smtp.submissions", "submissions", true, NULL},
    {"pop3.listen", "pop3", false, "-ERR [SYS/TEMP] %s: too many connections\r\n"},
    {"pop3.listen_tls", "pop3s", true, NULL},
    {"imap.listen", "imap", false, "* BYE [UNAVAILABLE] %s: too many connections\r\n"},
    {"imap.listen_tls", "imaps", true, NULL},
    {"push.listen", "push", true, NULL},
    {"push.listen_plain", "push-plain", false, "-ERR %s: too many connections\r\n"},
};

/* The accept callback and its argument for listener i. */
static void
serve_listener_target(struct serve *sv, size_t i, listener_accept_cb **cb_r, void **arg_r)
{
	if (i < 3) {
		*cb_r = smtp_server_accept;
		*arg_r = smtp_server_role_arg(sv->smtp, (enum smtp_role)i);
	} else if (i < 5) {
		*cb_r = pop3_server_accept;
		*arg_r = sv->pop3;
	} else if (i < 7) {
		*cb_r = imap_server_accept;
		*arg_r = sv->imap;
	} else {
		*cb_r = push_server_accept;
		*arg_r = sv->push;
	}
}

static unsigned
serve_session_count(const struct serve *sv)
{
	return smtp_server_session_count(sv->smtp) + pop3_server_session_count(sv->pop3) +
	       imap_server_session_count(sv->imap) + push_server_session_count(sv->push);
}

static void
serve_close_all(struct serve *sv)
{
	smtp_server_close_all(sv->smtp);
	pop3_server_close_all(sv->pop3);
	imap_server_close_all(sv->imap);
	push_server_close_all(sv->push);
}

static void
serve_usage(FILE *fp)
{
	fprintf(fp,
	        "usage: ternd serve [--data-dir DIR | --config FILE] [-o section.key=value ...]\n"
	        "\n"
	        "Runs the daemon in the foreground and logs key=value lines to stderr.\n"
	        "  -o KEY=VALUE  override a config key, e.g. -o smtp.listen=127.0.0.1:2525\n"
	        "Signals: SIGTERM/SIGINT stop gracefully (server.shutdown_timeout bounds the\n"
	        "wait for sessions; a second signal stops at once); SIGHUP reloads the TLS\n"
	        "certificate and key.\n");
}

/* Resolves a path from the config against the data directory. */
static void
serve_path(const struct serve *sv, const char *key, char *out, size_t size)
{
	const char *p = config_get(sv->ctx.config, key);

	if (p[0] == '/')
		str_copy(out, p, size);
	else if (snprintf(out, size, "%s/%s", sv->ctx.data_dir, p) >= (int)size)
		out[0] = '\0'; /* too long: fails to load with a clear error */
}

/* Loads the certificate and key into a new TLS context and makes it current. */
static int
serve_load_tls(struct serve *sv)
{
	char cert[PATH_MAX], key[PATH_MAX], error[512];
	SSL_CTX *ctx;

	serve_path(sv, "tls.cert", cert, sizeof(cert));
	serve_path(sv, "tls.key", key, sizeof(key));
	ctx = tls_server_ctx_new(cert, key, config_get(sv->ctx.config, "tls.min_version"), error,
	                         sizeof(error));
	if (ctx == NULL) {
		log_error("tls event=load-failed error=\"%s\"", error);
		return -1;
	}
	listener_set_ssl_ctx(ctx);
	SSL_CTX_free(ctx); /* the listener holds its own reference */
	log_info("tls event=loaded cert=%s", cert);
	return 0;
}

static void
serve_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	struct serve *sv = arg;
	struct timeval tick = {0, 100000};
	unsigned left = serve_session_count(sv);

	if (left == 0) {
		event_base_loopexit(sv->base, NULL);
		return;
	}
	if (time_now() >= sv->shutdown_deadline) {
		log_warnx("ternd event=shutdown-timeout sessions=%u", left);
		serve_close_all(sv);
		event_base_loopexit(sv->base, NULL);
		return;
	}
	evtimer_add(sv->shutdown_timer, &tick);
}

static void
serve_on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;

	if (sv->stopping) {
		log_warnx("ternd event=stop-now signal=%d", (int)sig);
		serve_close_all(sv);
		event_base_loopexit(sv->base, NULL);
		return;
	}
	sv->stopping = true;
	log_info("ternd event=stopping signal=%d sessions=%u", (int)sig, serve_session_count(sv));
	for (size_t i = 0; i < SERVE_NLISTENERS; i++) {
		if (sv->listeners[i] != NULL)
			listener_disable(sv->listeners[i]);
	}
	smtp_server_shutdown(sv->smtp);
	pop3_server_shutdown(sv->pop3);
	imap_server_shutdown(sv->imap);
	push_server_shutdown(sv->push);
	sv->shutdown_deadline =
	    time_now() + config_get_int(sv->ctx.config, "server.shutdown_timeout");
	sv->shutdown_timer = evtimer_new(sv->base, serve_shutdown_tick, sv);
	serve_shutdown_tick(-1, 0, sv);
}

static void
serve_on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;

	log_info("ternd event=reload what=tls");
	if (serve_load_tls(sv) < 0)
		log_warnx("ternd event=reload-failed what=tls keeping=previous");
}

/* Lets one process hold many connections: raise the descriptor limit to the hard limit. */
static void
serve_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
serve_start_listeners(struct serve *sv)
{
	const char *hostname = config_get(sv->ctx.config, "server.hostname");
	char busy[256], error[512];

	for (size_t i = 0; i < SERVE_NLISTENERS; i++) {
		const struct serve_listener *sl = &serve_listeners[i];
		listener_accept_cb *cb;
		void *arg;
		char **addrs;
		size_t n = config_get_list(sv->ctx.config, sl->key, &addrs);

		if (n == 0) {
			config_list_free(&addrs);
			log_info("%s event=disabled key=%s", sl->name, sl->key);
			continue;
		}
		serve_listener_target(sv, i, &cb, &arg);
		sv->listeners[i] = listener_new(sv->base, sl->name, addrs, n, sl->implicit_tls, cb,
		                                arg, error, sizeof(error));
		config_list_free(&addrs);
		if (sv->listeners[i] == NULL) {
			log_error("ternd event=listen-failed key=%s error=\"%s\"", sl->key, error);
			return -1;
		}
		if (sl->busy != NULL) {
			snprintf(busy, sizeof(busy), sl->busy, hostname);
			listener_set_busy_reply(sv->listeners[i], busy);
		}
	}
	return 0;
}

int
cmd_serve(int argc, char **argv)
{
	struct serve sv;
	struct listener_limits limits;
	enum log_level level;
	char error[512];
	int ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			serve_usage(stdout);
			return 0;
		}
	}
	memset(&sv, 0, sizeof(sv));
	if (ternd_ctx_load(&argc, argv, &sv.ctx) < 0)
		return 1;
	if (argc > 1) {
		fprintf(stderr, "ternd serve: unexpected argument '%s'\n", argv[1]);
		serve_usage(stderr);
		ternd_ctx_free(&sv.ctx);
		return 2;
	}
	if (log_level_parse(config_get(sv.ctx.config, "log.level"), &level))
		log_set_level(level);
	signal(SIGPIPE, SIG_IGN);
	serve_raise_nofile();
	if (evthread_use_pthreads() < 0 || password_init() < 0)
		fatalx("ternd event=init-failed what=threads-or-sodium");
	mime_init();

	sv.base = event_base_new();
	if (sv.base == NULL)
		fatalx("ternd event=init-failed what=event_base");
	sv.workers =
	    workers_new(sv.base, (unsigned)config_get_int(sv.ctx.config, "server.workers"));
	if (store_open(sv.ctx.data_dir, false, sv.workers, &sv.store, error, sizeof(error)) < 0) {
		log_error("ternd event=store-open-failed dir=%s error=\"%s\"", sv.ctx.data_dir,
		          error);
		goto out;
	}
	if (serve_load_tls(&sv) < 0)
		goto out;
	limits.max_connections = (unsigned)config_get_int(sv.ctx.config, "server.max_connections");
	limits.max_connections_per_ip =
	    (unsigned)config_get_int(sv.ctx.config, "server.max_connections_per_ip");
	listener_set_limits(&limits);

	sv.auth_workers =
	    workers_new(sv.base, (unsigned)config_get_int(sv.ctx.config, "auth.workers"));
	sv.auth = auth_new(sv.base, sv.store, sv.auth_workers, sv.ctx.config);
	sv.hub = notify_hub_new();
	sv.deliver = deliver_new(sv.store, sv.hub, sv.ctx.config);
	sv.smtp = smtp_server_new(sv.base, sv.ctx.config, sv.deliver, sv.auth);
	sv.io_workers =
	    workers_new(sv.base, (unsigned)config_get_int(sv.ctx.config, "server.io_workers"));
	sv.pop3 = pop3_server_new(sv.base, sv.ctx.config, sv.store, sv.auth, sv.hub);
	pop3_server_set_io(sv.pop3, sv.io_workers);
	sv.imap = imap_server_new(sv.base, sv.ctx.config, sv.store, sv.auth, sv.hub, sv.deliver,
	                          sv.workers);
	imap_server_set_io(sv.imap, sv.io_workers);
	sv.push = push_server_new(sv.base, sv.ctx.config, sv.store, sv.auth, sv.hub);
	if (webhook_new(sv.ctx.config, sv.ctx.data_dir, sv.store, sv.hub, &sv.webhook, error,
	                sizeof(error)) < 0) {
		log_error("ternd event=webhook-failed error=\"%s\"", error);
		goto out;
	}
	if (serve_start_listeners(&sv) < 0)
		goto out;

	sv.sig_term = evsignal_new(sv.base, SIGTERM, serve_on_stop, &sv);
	sv.sig_int = evsignal_new(sv.base, SIGINT, serve_on_stop, &sv);
	sv.sig_hup = evsignal_new(sv.base, SIGHUP, serve_on_hup, &sv);
	evsignal_add(sv.sig_term, NULL);
	evsignal_add(sv.sig_int, NULL);
	evsignal_add(sv.sig_hup, NULL);

	log_info("ternd event=ready data_dir=%s pid=%d", sv.ctx.data_dir, (int)getpid());
	event_base_dispatch(sv.base);
	serve_close_all(&sv);
	ret = 0;
	log_info("ternd event=stopped");
out:
	for (size_t i = 0; i < SERVE_NLISTENERS; i++)
		listener_free(&sv.listeners[i]);
	/* Commits in flight finish (and are acknowledged nowhere, as their sessions are gone)
	 * before the store closes; their callbacks run as the workers drain. */
	webhook_store_closing(sv.webhook);
	store_free(&sv.store);
	workers_free(&sv.workers);
	workers_free(&sv.auth_workers);
	workers_free(&sv.io_workers); /* after the sessions: a read in flight frees its stream */
	smtp_server_free(&sv.smtp);
	pop3_server_free(&sv.pop3);
	imap_server_free(&sv.imap);
	push_server_free(&sv.push);
	/* After the store: the commits drained above publish, and their webhooks go out. */
	webhook_free(&sv.webhook);
	deliver_free(&sv.deliver);
	/* Last of the services: the commit callbacks above publish, and sessions unsubscribe as
	 * they are freed. */
	notify_hub_free(&sv.hub);
	auth_free(&sv.auth);
	listener_set_ssl_ctx(NULL);
	if (sv.sig_term != NULL) {
		event_free(sv.sig_term);
		event_free(sv.sig_int);
		event_free(sv.sig_hup);
	}
	if (sv.shutdown_timer != NULL)
		event_free(sv.shutdown_timer);
	if (sv.base != NULL)
		event_base_free(sv.base);
	mime_deinit();
	ternd_ctx_free(&sv.ctx);
	return ret;
}
