/* fetch: the download engine behind `tern fetch` and the shell's fetch (POP3 and IMAP). */
#include "tern/fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/imap_client.h"
#include "client/pop3_client.h"
#include "lib/util.h"

#define FETCH_BAR_WIDTH 20
#define FETCH_PROBE_MAX 65536 /* the header section asked for to compare Message-IDs */

static volatile sig_atomic_t fetch_stop;

/* One message to download: its number or UID on the server and its remote key. */
struct fetch_item {
	unsigned number; /* POP3 message number, or IMAP UID */
	uint64_t size;
	bool seen;
	char key[320];
};

/* What one run carries around: the progress line, the counts, the first error. */
struct fetch_ctx {
	struct lstore *store;
	const struct account *account;
	const struct fetch_options *options;
	struct fetch_result *result;
	const char *folder;
	uint64_t max_size;
	bool progress;
	unsigned total; /* messages to download this run */
	unsigned done;
};

/* First Ctrl-C: stop after this message; second: the default action (the process ends). */
static void
fetch_sigint(int sig)
{
	static const char msg[] =
	    "\ninterrupted: stopping after this message (Ctrl-C again to quit at once)\n";

	if (fetch_stop) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	fetch_stop = 1;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do: the flag is what matters */
	}
}

const char *
fetch_protocol_name(enum fetch_protocol protocol)
{
	return protocol == FETCH_PROTOCOL_IMAP ? "imap" : "pop3";
}

void
fetch_format_bytes(uint64_t bytes, char *buf, size_t bufsize)
{
	static const char *units[] = {"KB", "MB", "GB", "TB"};
	double v = (double)bytes;
	size_t u = 0;

	if (bytes < 1024) {
		snprintf(buf, bufsize, "%" PRIu64 " B", bytes);
		return;
	}
	v /= 1024.0;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, bufsize, "%.1f %s", v, units[u]);
}

/* Redraws the one-line progress bar in place ("fetching 37/120  [#####.....]  4.2 MB"). */
static void
fetch_progress_draw(const struct fetch_ctx *ctx, unsigned current)
{
	char bar[FETCH_BAR_WIDTH + 1], bytes[32];
	unsigned filled;

	if (!ctx->progress || ctx->total == 0)
		return;
	filled = (unsigned)((uint64_t)ctx->done * FETCH_BAR_WIDTH / ctx->total);
	for (unsigned i = 0; i < FETCH_BAR_WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[FETCH_BAR_WIDTH] = '\0';
	fetch_format_bytes(ctx->result->bytes, bytes, sizeof(bytes));
	fprintf(stderr, "\rfetching %u/%u  [%s]  %s\033[K", current, ctx->total, bar, bytes);
	fflush(stderr);
}

static void
fetch_progress_clear(const struct fetch_ctx *ctx)
{
	if (ctx->progress && ctx->total > 0) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

/* A protocol's download of one message into fd (at most max_size bytes): 0 or -1 with error. */
typedef int fetch_download_fn(void *client, const struct fetch_item *item, int fd,
                              uint64_t max_size, char *error, size_t errsize);

/* Downloads one item into a new store entry and commits it. Returns 1 stored, 0 already present
 * (raced), -1 error (nothing stored). */
static int
fetch_one(struct fetch_ctx *ctx, void *client, fetch_download_fn *download,
          const struct fetch_item *item, char *error, size_t errsize)
{
	struct lstore_new *nw = NULL;
	struct lstore_source source;
	struct stat st;
	int64_t id;
	int fd, ret;

	if (lstore_new_begin(ctx->store, &nw, &fd, error, errsize) < 0)
		return -1;
	if (download(client, item, fd, ctx->max_size, error, errsize) < 0) {
		lstore_new_abort(&nw);
		return -1;
	}
	if (fstat(fd, &st) == 0)
		ctx->result->bytes += (uint64_t)st.st_size;
	memset(&source, 0, sizeof(source));
	source.account = ctx->account->name;
	source.folder = ctx->folder;
	source.remote_key = item->key;
	source.flags = item->seen ? LSTORE_FLAG_SEEN : 0;
	ret = lstore_new_commit(ctx->store, &nw, &source, &id, error, errsize);
	if (ret < 0)
		return -1;
	if (ret > 0)
		ctx->result->fetched++;
	else
		ctx->result->skipped++;
	return ret;
}

/* A protocol's look at one message's header section on the server: its Message-ID (without <>,
 * "" when it has none) into msgid. 0, or -1 when the server could not say. */
typedef int fetch_probe_fn(void *client, const struct fetch_item *item, char *msgid,
                           size_t msgidsize);

/* The Message-ID (without <>) of a header section, "" when there is none. */
static void
fetch_header_message_id(const char *hdr, size_t len, char *out, size_t outsize)
{
	const char *p = hdr, *end = hdr + len;

	out[0] = '\0';
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *lt, *gt;

		eol = eol != NULL ? eol : end;
		if (eol - p > 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
			/* The value, with its folded continuation lines. */
			const char *vend = eol;
			while (vend + 1 < end && (vend[1] == ' ' || vend[1] == '\t')) {
				const char *next = memchr(vend + 1, '\n', (size_t)(end - vend - 1));
				vend = next != NULL ? next : end;
			}
			lt = memchr(p + 11, '<', (size_t)(vend - p - 11));
			gt = lt != NULL ? memchr(lt, '>', (size_t)(vend - lt)) : NULL;
			if (gt != NULL && (size_t)(gt - lt - 1) < outsize) {
				memcpy(out, lt + 1, (size_t)(gt - lt - 1));
				out[gt - lt - 1] = '\0';
			}
			return;
		}
		p = eol + 1;
	}
}

/* ternd's POP3 UIDL of an INBOX message is "UIDVALIDITY.UID" (src/pop3): the same message over
 * IMAP has the key imap:INBOX:UIDVALIDITY:UID. Writes the other protocol's key for key; false
 * when key has no such twin. */
static bool
fetch_twin_key(const char *key, char *out, size_t outsize)
{
	unsigned long v, u;
	int used = 0;

	if (strncasecmp(key, "imap:INBOX:", 11) == 0 &&
	    sscanf(key + 11, "%10lu:%10lu%n", &v, &u, &used) == 2 && key[11 + used] == '\0') {
		snprintf(out, outsize, "pop3:%lu.%lu", v, u);
		return key[11] >= '0' && key[11] <= '9';
	}
	if (strncmp(key, "pop3:", 5) == 0 && key[5] >= '0' && key[5] <= '9' &&
	    sscanf(key + 5, "%10lu.%10lu%n", &v, &u, &used) == 2 && key[5 + used] == '\0' &&
	    v > 0 && u > 0 && v <= UINT32_MAX && u <= UINT32_MAX) {
		snprintf(out, outsize, "imap:INBOX:%lu:%lu", v, u);
		return true;
	}
	return false;
}

/* Whether item is stored already: by its key, by its twin key (ternd over the other protocol),
 * or -- when a stored message of this account has its exact size -- by its Message-ID, asked from
 * the server with probe (a match is remembered as an alias of the stored message). A probe that
 * fails turns probing off for the rest of this run. 1 stored, 0 not, -1 error. */
static int
fetch_known(struct fetch_ctx *ctx, void *client, fetch_probe_fn *probe,
            const struct fetch_item *item, bool *probing)
{
	char twin[320], msgid[256];
	int has = lstore_has_remote(ctx->store, ctx->account->name, item->key);

	if (has != 0)
		return has;
	if (fetch_twin_key(item->key, twin, sizeof(twin)) &&
	    (has = lstore_has_remote(ctx->store, ctx->account->name, twin)) != 0)
		return has;
	if (probe == NULL || !*probing ||
	    (has = lstore_has_size(ctx->store, ctx->account->name, item->size)) <= 0)
		return has;
	if (probe(client, item, msgid, sizeof(msgid)) < 0) {
		*probing = false;
		return 0;
	}
	return lstore_match_message_id(ctx->store, ctx->account->name, ctx->folder, msgid,
	                               item->size, item->key);
}

/* Splits items into those already stored (counted as skipped, marked in present[]) and the rest,
 * counting what is left to download. Returns 0 or -1 with error. */
static int
fetch_partition(struct fetch_ctx *ctx, void *client, fetch_probe_fn *probe,
                const struct fetch_item *items, size_t n, bool *present, char *error,
                size_t errsize)
{
	bool probing = true;

	for (size_t i = 0; i < n; i++) {
		int has = fetch_known(ctx, client, probe, &items[i], &probing);
		if (has < 0) {
			snprintf(error, errsize, "cannot read the local index");
			return -1;
		}
		present[i] = has > 0;
		if (present[i]) {
			ctx->result->skipped++;
		} else if (items[i].size > ctx->max_size) {
			/* Left on the server (and never deleted): one huge message must not block
			 * every later fetch. */
			ctx->result->too_large++;
		} else {
			ctx->total++;
		}
	}
	return 0;
}

/* With delete set, called for each item stored here (just committed or already present). */
typedef int fetch_committed_fn(void *client, const struct fetch_item *item, char *error,
                               size_t errsize);

/* The download loop shared by both protocols: fetches every item not present and calls
 * committed() for what is stored. Returns 0, or -1 with error; a stop request ends the loop early
 * with 0 and result->interrupted set. */
static int
fetch_loop(struct fetch_ctx *ctx, void *client, fetch_download_fn *download, fetch_probe_fn *probe,
           fetch_committed_fn *committed, const struct fetch_item *items, size_t n, char *error,
           size_t errsize)
{
	bool *present = xcalloc(n > 0 ? n : 1, sizeof(bool));
	int ret = 0;

	ctx->result->remote = (unsigned)n;
	if (fetch_partition(ctx, client, probe, items, n, present, error, errsize) < 0) {
		free(present);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (fetch_stop) {
			ctx->result->interrupted = true;
			break;
		}
		if (!present[i] && items[i].size > ctx->max_size)
			continue;
		if (!present[i]) {
			fetch_progress_draw(ctx, ctx->done + 1);
			if (fetch_one(ctx, client, download, &items[i], error, errsize) < 0) {
				ret = -1;
				break;
			}
			ctx->done++;
			fetch_progress_draw(ctx, ctx->done);
		}
		if (ctx->options->delete_after && committed != NULL &&
		    committed(client, &items[i], error, errsize) < 0) {
			ret = -1;
			break;
		}
	}
	if (ret < 0 && fetch_stop) {
		ctx->result->interrupted = true;
		snprintf(error, errsize, "interrupted");
	}
	fetch_progress_clear(ctx);
	free(present);
	return ret;
}

struct fetch_pop3 {
	struct pop3_client *client;
	unsigned deleted; /* DELEs the server accepted (applied by QUIT) */
};

static int
fetch_pop3_download(void *arg, const struct fetch_item *item, int fd, uint64_t max_size,
                    char *error, size_t errsize)
{
	struct fetch_pop3 *pp = arg;

	return pop3_client_retr(pp->client, item->number, fd, max_size, error, errsize);
}

/* TOP n 0 into a temporary file, then the Message-ID out of it. */
static int
fetch_pop3_probe(void *arg, const struct fetch_item *item, char *msgid, size_t msgidsize)
{
	struct fetch_pop3 *pp = arg;
	char error[512], hdr[FETCH_PROBE_MAX];
	FILE *fp = tmpfile();
	size_t len;
	int ret = -1;

	if (fp == NULL)
		return -1;
	if (pop3_client_top(pp->client, item->number, fileno(fp), FETCH_PROBE_MAX * 64, error,
	                    sizeof(error)) == 0) {
		rewind(fp);
		len = fread(hdr, 1, sizeof(hdr), fp);
		fetch_header_message_id(hdr, len, msgid, msgidsize);
		ret = 0;
	}
	fclose(fp);
	return ret;
}

static int
fetch_pop3_dele(void *arg, const struct fetch_item *item, char *error, size_t errsize)
{
	struct fetch_pop3 *pp = arg;

	if (pop3_client_dele(pp->client, item->number, error, errsize) < 0)
		return -1;
	pp->deleted++;
	return 0;
}

/* POP3: UIDL/LIST, RETR what is new, DELE what is stored (with delete), QUIT. */
static int
fetch_pop3(struct fetch_ctx *ctx, const struct conn_options *conn, const char *password,
           char *error, size_t errsize)
{
	struct fetch_pop3 pp = {0};
	struct pop3_client_entry *entries = NULL;
	struct fetch_item *items;
	char qerror[512];
	size_t n = 0;
	int ret;

	if (pop3_client_open(conn, ctx->account->user, password, &pp.client, error, errsize) < 0)
		return -1;
	if (pop3_client_list(pp.client, &entries, &n, error, errsize) < 0) {
		pop3_client_abort(&pp.client);
		return -1;
	}
	items = xcalloc(n > 0 ? n : 1, sizeof(*items));
	for (size_t i = 0; i < n; i++) {
		items[i].number = entries[i].number;
		items[i].size = entries[i].size;
		snprintf(items[i].key, sizeof(items[i].key), "pop3:%s", entries[i].uidl);
	}
	free(entries);
	ret = fetch_loop(ctx, &pp, fetch_pop3_download, fetch_pop3_probe, fetch_pop3_dele, items, n,
	                 error, errsize);
	free(items);
	if (ret < 0) {
		/* The connection may be mid-response: close it without QUIT, so nothing is deleted
		 * (the next fetch --delete deletes what is stored by then). */
		pop3_client_abort(&pp.client);
		return -1;
	}
	if (pop3_client_quit(&pp.client, qerror, sizeof(qerror)) < 0) {
		if (pp.deleted > 0) {
			snprintf(error, errsize, "the server did not delete the messages: %s",
			         qerror);
			return -1;
		}
		return 0;
	}
	ctx->result->deleted = pp.deleted;
	return 0;
}

struct fetch_imap {
	struct imap_client *client;
	uint32_t *uids; /* committed UIDs to delete at the end */
	size_t nuids;
};

static int
fetch_imap_download(void *arg, const struct fetch_item *item, int fd, uint64_t max_size,
                    char *error, size_t errsize)
{
	struct fetch_imap *im = arg;

	return imap_client_fetch(im->client, item->number, fd, max_size, error, errsize);
}

/* UID FETCH uid BODY.PEEK[HEADER.FIELDS (... MESSAGE-ID)], then the Message-ID out of it. */
static int
fetch_imap_probe(void *arg, const struct fetch_item *item, char *msgid, size_t msgidsize)
{
	struct fetch_imap *im = arg;
	struct imap_client_header *h = NULL;
	char error[512];
	size_t n = 0;

	if (imap_client_headers(im->client, item->number, item->number, &h, &n, error,
	                        sizeof(error)) < 0)
		return -1;
	msgid[0] = '\0';
	if (n > 0)
		fetch_header_message_id(h[0].fields, h[0].fields_len, msgid, msgidsize);
	imap_client_headers_free(&h, n);
	return 0;
}

static int
fetch_imap_mark(void *arg, const struct fetch_item *item, char *error, size_t errsize)
{
	struct fetch_imap *im = arg;

	im->uids[im->nuids++] = item->number;
	return 0;
}

/* IMAP: SELECT (EXAMINE unless deleting), list UIDs, fetch what is new, delete at the end. */
static int
fetch_imap(struct fetch_ctx *ctx, const struct conn_options *conn, const char *password,
           char *error, size_t errsize)
{
	struct fetch_imap im = {0};
	struct imap_client_entry *entries = NULL;
	struct fetch_item *items;
	uint32_t uidvalidity = 0, exists = 0;
	size_t n = 0;
	int ret;

	if (imap_client_open(conn, ctx->account->user, password, &im.client, error, errsize) < 0)
		return -1;
	if (imap_client_select(im.client, ctx->folder, !ctx->options->delete_after, &uidvalidity,
	                       &exists, error, errsize) < 0) {
		imap_client_logout(&im.client);
		return -1;
	}
	if (exists > 0 && imap_client_list(im.client, 1, &entries, &n, error, errsize) < 0) {
		imap_client_logout(&im.client);
		return -1;
	}
	items = xcalloc(n > 0 ? n : 1, sizeof(*items));
	im.uids = xcalloc(n > 0 ? n : 1, sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		items[i].number = entries[i].uid;
		items[i].size = entries[i].size;
		items[i].seen = entries[i].seen;
		snprintf(items[i].key, sizeof(items[i].key), "imap:%s:%" PRIu32 ":%" PRIu32,
		         ctx->folder, uidvalidity, entries[i].uid);
	}
	free(entries);
	ret = fetch_loop(ctx, &im, fetch_imap_download, fetch_imap_probe, fetch_imap_mark, items, n,
	                 error, errsize);
	free(items);
	/* Committed messages may go even after an interruption; after a network error the
	 * connection is not trusted any more and nothing is deleted. */
	if ((ret == 0 || ctx->result->interrupted) && im.nuids > 0) {
		char derror[512];
		if (imap_client_delete(im.client, im.uids, im.nuids, derror, sizeof(derror)) < 0) {
			if (ret == 0)
				snprintf(error, errsize,
				         "the server did not delete the messages: %s", derror);
			ret = -1;
		} else {
			ctx->result->deleted = (unsigned)im.nuids;
		}
	}
	free(im.uids);
	imap_client_logout(&im.client);
	return ret;
}

/* Picks the protocol: the one asked for when configured, else POP3 first, then IMAP. */
static int
fetch_pick_protocol(const struct account *account, enum fetch_protocol asked,
                    enum fetch_protocol *protocol_r, char *error, size_t errsize)
{
	bool pop3 = account->pop3.host[0] != '\0', imap = account->imap.host[0] != '\0';

	if (asked == FETCH_PROTOCOL_POP3 && !pop3) {
		snprintf(error, errsize,
		         "account '%s' has no POP3 server (set one with 'tern account "
		         "add %s --pop3 HOST:PORT ...')",
		         account->name, account->name);
		return -1;
	}
	if (asked == FETCH_PROTOCOL_IMAP && !imap) {
		snprintf(error, errsize,
		         "account '%s' has no IMAP server (set one with 'tern account "
		         "add %s --imap HOST:PORT ...')",
		         account->name, account->name);
		return -1;
	}
	if (asked == FETCH_PROTOCOL_AUTO) {
		if (!pop3 && !imap) {
			snprintf(error, errsize,
			         "account '%s' has neither a POP3 nor an IMAP server",
			         account->name);
			return -1;
		}
		asked = pop3 ? FETCH_PROTOCOL_POP3 : FETCH_PROTOCOL_IMAP;
	}
	*protocol_r = asked;
	return 0;
}

int
fetch_run(struct lstore *store, const struct account *account, const struct fetch_options *options,
          struct fetch_result *result_r, char *error, size_t errsize)
{
	struct fetch_ctx ctx;
	struct conn_options conn;
	struct sigaction sa, old_sa;
	char password[256], pwerror[512];
	enum fetch_protocol protocol;
	int ret;

	memset(result_r, 0, sizeof(*result_r));
	if (fetch_pick_protocol(account, options->protocol, &protocol, error, errsize) < 0)
		return -1;
	result_r->protocol = protocol;
	if (account_password(account, password, sizeof(password), pwerror, sizeof(pwerror)) < 0) {
		snprintf(error, errsize, "no password for '%s': %s", account->name, pwerror);
		return -1;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.store = store;
	ctx.account = account;
	ctx.options = options;
	ctx.result = result_r;
	ctx.folder =
	    options->folder != NULL && options->folder[0] != '\0' ? options->folder : "INBOX";
	ctx.max_size = options->max_size > 0 ? options->max_size : FETCH_MAX_SIZE;
	ctx.progress = options->progress && isatty(STDERR_FILENO);
	account_conn_options(
	    account, protocol == FETCH_PROTOCOL_POP3 ? &account->pop3 : &account->imap, &conn);

	/* No SA_RESTART: a blocking read returns EINTR, so Ctrl-C is noticed promptly. */
	fetch_stop = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fetch_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_sa);
	if (protocol == FETCH_PROTOCOL_POP3)
		ret = fetch_pop3(&ctx, &conn, password, error, errsize);
	else
		ret = fetch_imap(&ctx, &conn, password, error, errsize);
	sigaction(SIGINT, &old_sa, NULL);
	if (fetch_stop)
		result_r->interrupted = true;
	fetch_stop = 0;
	explicit_bzero(password, sizeof(password));
	return ret;
}
