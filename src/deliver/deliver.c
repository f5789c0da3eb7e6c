/* deliver: recipient policy, trace headers and the commit into the store. */
#include "deliver/deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/summary.h"
#include "notify/notify.h"

#define DELIVER_HDR_LINE_MAX 998         /* RFC 5322's line limit: longer lines are cut */
#define DELIVER_HDR_SCAN_MAX (64 * 1024) /* APPEND: header bytes looked at before giving up */
#define DELIVER_FIELD_MAX 4096           /* bytes kept of a noted field, with its folding */
#define DELIVER_FROM_ADDRS_MAX 32        /* addresses checked in one From: or Sender: */
#define DELIVER_WRITE_CHUNK 16384        /* CRLF normalisation's output buffer */

enum deliver_hdr_field {
	DELIVER_HDR_FROM,
	DELIVER_HDR_SUBJECT,
	DELIVER_HDR_SENDER,
	DELIVER_HDR_NFIELDS
};

/* The raw From:, Subject: and Sender: fields, noted while the header section streams past. */
struct deliver_hdrs {
	bool done;        /* the header section ended (or was too long to look at) */
	bool too_big;     /* it went past max */
	int cur;          /* the field that continuation lines belong to, -1 none */
	uint64_t scanned; /* header bytes seen */
	uint64_t max;     /* header bytes looked at */
	size_t linelen;
	bool linecut; /* the current physical line was longer than line[] */
	char line[DELIVER_HDR_LINE_MAX + 1];
	unsigned count[DELIVER_HDR_NFIELDS]; /* occurrences of the field */
	bool cut[DELIVER_HDR_NFIELDS];       /* the first occurrence did not fit field[] */
	size_t fieldlen[DELIVER_HDR_NFIELDS];
	char field[DELIVER_HDR_NFIELDS][DELIVER_FIELD_MAX + 1];
};

struct deliver {
	struct store *store;
	struct notify_hub *hub;
	char **domains;
	size_t ndomains;
	char *hostname;
	uint64_t max_header_size;
	bool allow_any_from;
};

struct deliver_tx {
	struct store_blob *blob;
	char *mail_from;
	struct deliver_hdrs *hdrs;
	int64_t internal_date; /* APPEND's; 0: the time of the commit */
	bool smtp;             /* received over SMTP: CRLF normalised, header size capped */
	bool pending_cr;       /* the last byte written was a CR whose LF may follow */
	bool check_from;       /* From:/Sender: must be addresses of account_id */
	int64_t account_id;    /* the authenticated sender's, 0 none or unknown */
	char account[STORE_ADDRESS_MAX + 1];
	char refusal[512];
	char id[24];
};

/* What the notify event of one local target needs once the commit is done. */
struct deliver_local {
	int64_t account_id;
	uint32_t flags;
	char *mailbox;
	char *keywords; /* NULL when none */
};

struct deliver_commit {
	deliver_cb *cb; /* one of cb, rcb */
	deliver_result_cb *rcb;
	void *arg;
	struct notify_hub *hub;
	struct deliver_local *locals; /* one per target, account_id 0 for the outbound queue */
	size_t ntargets;
	struct deliver_hdrs *hdrs;
	char *mail_from;
	uint64_t size;
	int64_t internal_date;
	char id[24];
};

struct deliver *
deliver_new(struct store *store, struct notify_hub *hub, const struct config *config)
{
	struct deliver *d = xcalloc(1, sizeof(*d));

	d->store = store;
	d->hub = hub;
	d->ndomains = config_get_list(config, "server.domains", &d->domains);
	d->hostname = xstrdup(config_get(config, "server.hostname"));
	d->max_header_size = (uint64_t)config_get_int(config, "smtp.max_header_size");
	d->allow_any_from = config_get_bool(config, "smtp.allow_any_from");
	return d;
}

void
deliver_free(struct deliver **dp)
{
	struct deliver *d = *dp;

	if (d == NULL)
		return;
	config_list_free(&d->domains);
	free(d->hostname);
	free(d);
	*dp = NULL;
}

bool
deliver_domain_is_local(const struct deliver *d, const char *address)
{
	const char *at = strrchr(address, '@');

	if (at == NULL)
		return false;
	for (size_t i = 0; i < d->ndomains; i++) {
		if (strcasecmp(at + 1, d->domains[i]) == 0)
			return true;
	}
	return false;
}

enum deliver_rcpt
deliver_check_rcpt(struct deliver *d, const char *address, bool authenticated,
                   int64_t *account_id_r)
{
	struct store_account account;
	char postmaster[STORE_ADDRESS_MAX + 1];
	int found;

	*account_id_r = 0;
	if (strchr(address, '@') == NULL && strcasecmp(address, "postmaster") == 0) {
		if (d->ndomains == 0)
			return DELIVER_RCPT_UNKNOWN_USER;
		snprintf(postmaster, sizeof(postmaster), "postmaster@%s", d->domains[0]);
		address = postmaster;
	}
	if (!deliver_domain_is_local(d, address))
		return authenticated ? DELIVER_RCPT_REMOTE : DELIVER_RCPT_RELAY_DENIED;
	found = store_account_lookup(d->store, address, &account);
	if (found == 0 && strncasecmp(address, "postmaster@", strlen("postmaster@")) == 0) {
		/* RFC 5321 4.5.1: postmaster must be accepted. Without an account or alias of
		 * that name, the first account (the admin's) receives it. */
		found = store_account_first(d->store, &account);
	}
	if (found < 0)
		return DELIVER_RCPT_TEMPFAIL;
	if (found == 0)
		return DELIVER_RCPT_UNKNOWN_USER;
	*account_id_r = account.id;
	return DELIVER_RCPT_LOCAL;
}

bool
deliver_sender_allowed(struct deliver *d, int64_t account_id, const char *address)
{
	struct store_account account;

	if (store_account_lookup(d->store, address, &account) != 1)
		return false;
	return account.id == account_id;
}

/* Copies a client-supplied token into a header, keeping only characters that cannot break the
 * header's syntax. */
static void
deliver_sanitize(char *dst, size_t dstsize, const char *src)
{
	size_t o = 0;

	for (const char *p = src; *p != '\0' && o + 1 < dstsize; p++) {
		unsigned char c = (unsigned char)*p;
		if (c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' && c != ';')
			dst[o++] = (char)c;
	}
	dst[o] = '\0';
	if (o == 0)
		str_copy(dst, "unknown", dstsize);
}

/* RFC 5322 date-time in UTC. */
static void
deliver_rfc5322_date(char *buf, size_t size, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* Starts a transaction without trace headers; the id is made as for SMTP (logs). */
static struct deliver_tx *
deliver_tx_new(struct deliver *d, const char *mail_from, char *error, size_t errsize)
{
	struct deliver_tx *tx = xcalloc(1, sizeof(*tx));
	unsigned char rnd[6];

	if (store_blob_new(d->store, &tx->blob, error, errsize) < 0) {
		free(tx);
		return NULL;
	}
	randombytes_buf(rnd, sizeof(rnd));
	snprintf(tx->id, sizeof(tx->id), "%08llX%02X%02X%02X%02X%02X%02X",
	         (unsigned long long)(time_now() & 0xffffffff), rnd[0], rnd[1], rnd[2], rnd[3],
	         rnd[4], rnd[5]);
	tx->mail_from = xstrdup(mail_from);
	/* Noted for the notify event and for deliver_tx_refusal (which SMTP asks). */
	tx->hdrs = xcalloc(1, sizeof(*tx->hdrs));
	tx->hdrs->cur = -1;
	tx->hdrs->max = DELIVER_HDR_SCAN_MAX;
	return tx;
}

struct deliver_tx *
deliver_tx_begin_append(struct deliver *d, int64_t internal_date, char *error, size_t errsize)
{
	struct deliver_tx *tx = deliver_tx_new(d, "", error, errsize);

	if (tx != NULL)
		tx->internal_date = internal_date;
	return tx;
}

void
deliver_tx_set_internal_date(struct deliver_tx *tx, int64_t internal_date)
{
	tx->internal_date = internal_date;
}

struct deliver_tx *
deliver_tx_begin(struct deliver *d, const char *mail_from, const struct deliver_origin *origin,
                 const char *const *rcpts, size_t nrcpts, char *error, size_t errsize)
{
	struct deliver_tx *tx = deliver_tx_new(d, mail_from, error, errsize);
	char helo[256], date[64], hdr[2048];
	int n;

	if (tx == NULL)
		return NULL;
	tx->smtp = true;
	tx->hdrs->max = d->max_header_size;
	if (origin->authenticated_as != NULL && !d->allow_any_from) {
		struct store_account account;

		/* An account that cannot be read leaves account_id 0: every From is refused. */
		tx->check_from = true;
		str_copy(tx->account, origin->authenticated_as, sizeof(tx->account));
		if (store_account_lookup(d->store, origin->authenticated_as, &account) == 1)
			tx->account_id = account.id;
	}
	deliver_sanitize(helo, sizeof(helo), origin->helo != NULL ? origin->helo : "");
	deliver_rfc5322_date(date, sizeof(date), time(NULL));

	/* RFC 5321 4.4: Return-Path first, then our Received line, folded under 78 columns. The
	 * recipient is named only when there is one, so a copy does not reveal the others. */
	char tls[160] = "", forclause[STORE_ADDRESS_MAX + 16] = "";
	if (origin->tls_info != NULL)
		snprintf(tls, sizeof(tls), "\r\n\t(using %s)", origin->tls_info);
	if (nrcpts == 1)
		snprintf(forclause, sizeof(forclause), "\r\n\tfor <%s>", rcpts[0]);
	n = snprintf(hdr, sizeof(hdr),
	             "Return-Path: <%s>\r\n"
	             "Received: from %s ([%s])\r\n"
	             "\tby %s (tern) with %s id %s%s%s;\r\n"
	             "\t%s\r\n",
	             mail_from, helo, origin->client_ip, d->hostname, origin->protocol, tx->id, tls,
	             forclause, date);
	if (n < 0 || (size_t)n >= sizeof(hdr) || store_blob_write(tx->blob, hdr, (size_t)n) < 0) {
		snprintf(error, errsize, "cannot write trace headers");
		deliver_tx_abort(&tx);
		return NULL;
	}
	return tx;
}

/* Ends one physical header line: keeps it when it starts or continues From:, Subject: or
 * Sender:, and counts the occurrences of each. */
static void
deliver_hdrs_line(struct deliver_hdrs *h)
{
	static const char *const names[DELIVER_HDR_NFIELDS] = {"from:", "subject:", "sender:"};
	size_t len = h->linelen;
	bool linecut = h->linecut;

	h->linelen = 0;
	h->linecut = false;
	if (len > 0 && h->line[len - 1] == '\r')
		len--;
	if (len == 0 && !linecut) {
		h->done = true;
		return;
	}
	if (h->line[0] != ' ' && h->line[0] != '\t') {
		h->cur = -1;
		for (int f = 0; f < DELIVER_HDR_NFIELDS; f++) {
			/* The first occurrence is kept; the others are only counted. */
			if (len >= strlen(names[f]) &&
			    strncasecmp(h->line, names[f], strlen(names[f])) == 0 &&
			    h->count[f]++ == 0)
				h->cur = f;
		}
		if (h->cur < 0)
			return;
	} else if (h->cur < 0) {
		return;
	}
	/* Folding is kept (CRLF before the continuation) so the decoder sees the real field. */
	char *dst = h->field[h->cur];
	size_t *dlen = &h->fieldlen[h->cur];
	if (linecut || *dlen + 2 + len > DELIVER_FIELD_MAX) {
		h->cut[h->cur] = true; /* cut at the last whole line that fits */
		if (*dlen > 0 || len > DELIVER_FIELD_MAX)
			return;
	}
	if (*dlen > 0) {
		memcpy(dst + *dlen, "\r\n", 2);
		*dlen += 2;
	}
	memcpy(dst + *dlen, h->line, len); /* len <= DELIVER_HDR_LINE_MAX < DELIVER_FIELD_MAX */
	*dlen += len;
	dst[*dlen] = '\0';
}

/* Feeds message bytes to the header scanner until the blank line that ends the header. */
static void
deliver_hdrs_feed(struct deliver_hdrs *h, const char *p, size_t len)
{
	while (len > 0 && !h->done) {
		const char *nl = memchr(p, '\n', len);
		size_t seg = nl != NULL ? (size_t)(nl - p) : len;
		size_t room = DELIVER_HDR_LINE_MAX - h->linelen;

		memcpy(h->line + h->linelen, p, seg < room ? seg : room);
		h->linelen += seg < room ? seg : room;
		if (seg > room)
			h->linecut = true;
		h->scanned += seg + (nl != NULL);
		if (nl != NULL)
			deliver_hdrs_line(h);
		if (!h->done && h->scanned > h->max) {
			h->done = true;
			h->too_big = true;
		}
		p += seg + (nl != NULL);
		len -= seg + (nl != NULL);
	}
}

/* Writes bytes as they will be stored: noted by the header scanner, then to the blob. */
static int
deliver_tx_put(struct deliver_tx *tx, const char *data, size_t len)
{
	if (tx->hdrs != NULL && !tx->hdrs->done)
		deliver_hdrs_feed(tx->hdrs, data, len);
	return store_blob_write(tx->blob, data, len);
}

int
deliver_tx_append_tx(struct deliver_tx *dst, const struct deliver_tx *src)
{
	char buf[16384];
	uint64_t off = 0;
	ssize_t got;

	while ((got = store_blob_pread(src->blob, buf, sizeof(buf), off)) > 0) {
		if (deliver_tx_write(dst, buf, (size_t)got) < 0)
			return -1;
		off += (uint64_t)got;
	}
	return got < 0 ? -1 : 0;
}

uint64_t
deliver_tx_size(const struct deliver_tx *tx)
{
	return store_blob_size(tx->blob);
}

/* Writes data with every line end made CRLF: a bare LF or a bare CR becomes CRLF (BDAT chunks
 * are taken as sent, RFC 3030; the message is stored and relayed in canonical form). A CR at
 * the end of data waits for the next byte (tx->pending_cr). DATA's bytes are already CRLF. */
static int
deliver_tx_write_crlf(struct deliver_tx *tx, const char *data, size_t len)
{
	char out[DELIVER_WRITE_CHUNK];
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (o + 3 > sizeof(out)) {
			if (deliver_tx_put(tx, out, o) < 0)
				return -1;
			o = 0;
		}
		if (c == '\n') {
			/* CRLF, or a bare LF: either way one CRLF. */
			tx->pending_cr = false;
			out[o++] = '\r';
			out[o++] = '\n';
			continue;
		}
		if (tx->pending_cr) {
			tx->pending_cr = false;
			out[o++] = '\r';
			out[o++] = '\n';
		}
		if (c == '\r')
			tx->pending_cr = true;
		else
			out[o++] = c;
	}
	return o > 0 ? deliver_tx_put(tx, out, o) : 0;
}

int
deliver_tx_write(struct deliver_tx *tx, const void *data, size_t len)
{
	if (tx->smtp)
		return deliver_tx_write_crlf(tx, data, len);
	return deliver_tx_put(tx, data, len);
}

/* Checks the addresses of a noted From: or Sender: field against the account; NULL when they
 * are all its own, else the reply (in tx->refusal). */
static const char *
deliver_check_field(struct deliver *d, struct deliver_tx *tx, enum deliver_hdr_field f,
                    const char *name)
{
	const struct deliver_hdrs *h = tx->hdrs;
	char *addrs[DELIVER_FROM_ADDRS_MAX], value[DELIVER_FIELD_MAX + 1],
	    bad[STORE_ADDRESS_MAX + 1];
	size_t n, kept;
	bool ok = true;

	if (h->count[f] == 0)
		return NULL;
	if (h->count[f] > 1) {
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "550 5.7.1 Error: more than one %s: header", name);
		return tx->refusal;
	}
	if (h->cut[f]) {
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "550 5.7.1 Error: %s: header too long to check", name);
		return tx->refusal;
	}
	/* The value after "Name:", unfolded. */
	str_copy(value, h->field[f] + strlen(name) + 1, sizeof(value));
	for (char *p = value; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	}
	n = mime_addresses(value, addrs, DELIVER_FROM_ADDRS_MAX);
	kept = n < DELIVER_FROM_ADDRS_MAX ? n : DELIVER_FROM_ADDRS_MAX;
	bad[0] = '\0';
	for (size_t i = 0; i < kept; i++) {
		if (ok && !deliver_sender_allowed(d, tx->account_id, addrs[i])) {
			deliver_sanitize(bad, sizeof(bad), addrs[i]);
			ok = false;
		}
		free(addrs[i]);
	}
	if (n == 0)
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "550 5.7.1 Error: %s: header without an address", name);
	else if (n > DELIVER_FROM_ADDRS_MAX)
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "550 5.7.1 Error: too many addresses in the %s: header", name);
	else if (!ok)
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "550 5.7.1 <%s>: %s address rejected: not owned by user %s", bad, name,
		         tx->account);
	else
		return NULL;
	return tx->refusal;
}

const char *
deliver_tx_refusal(struct deliver *d, struct deliver_tx *tx)
{
	const char *r;

	if (tx->hdrs == NULL)
		return NULL;
	if (tx->smtp && tx->hdrs->too_big) {
		snprintf(tx->refusal, sizeof(tx->refusal),
		         "552 5.3.4 Error: message header section over %llu bytes",
		         (unsigned long long)d->max_header_size);
		return tx->refusal;
	}
	if (!tx->check_from)
		return NULL;
	r = deliver_check_field(d, tx, DELIVER_HDR_FROM, "From");
	if (r == NULL)
		r = deliver_check_field(d, tx, DELIVER_HDR_SENDER, "Sender");
	return r;
}

const char *
deliver_tx_id(const struct deliver_tx *tx)
{
	return tx->id;
}

void
deliver_tx_abort(struct deliver_tx **txp)
{
	struct deliver_tx *tx = *txp;

	if (tx == NULL)
		return;
	store_blob_abort(&tx->blob);
	free(tx->mail_from);
	free(tx->hdrs);
	free(tx);
	*txp = NULL;
}

/* Decodes the noted From: and Subject: fields (RFC 2047) into the event. */
static void
deliver_event_summary(const struct deliver_commit *c, struct notify_event *ev)
{
	const struct deliver_hdrs *h = c->hdrs;
	struct mime_summary summary;
	char buf[2 * DELIVER_FIELD_MAX + 8];
	int n;

	/* A field that was absent must not leave an empty line: that would end the header. */
	n = snprintf(buf, sizeof(buf), "%s%s%s%s\r\n", h->field[DELIVER_HDR_FROM],
	             h->fieldlen[DELIVER_HDR_FROM] > 0 ? "\r\n" : "", h->field[DELIVER_HDR_SUBJECT],
	             h->fieldlen[DELIVER_HDR_SUBJECT] > 0 ? "\r\n" : "");
	if (n > 0 && (size_t)n < sizeof(buf) &&
	    mime_summary_from_buffer(buf, (size_t)n, &summary) == 0) {
		notify_copy_text(ev->from, sizeof(ev->from), summary.from);
		notify_copy_text(ev->subject, sizeof(ev->subject), summary.subject);
	}
	if (ev->from[0] == '\0')
		notify_copy_text(ev->from, sizeof(ev->from), c->mail_from);
}

/* Publishes NOTIFY_NEW for each local target of a durable commit. */
static void
deliver_publish(const struct deliver_commit *c, const struct store_result *results)
{
	struct notify_event ev;
	bool summarized = false;

	for (size_t i = 0; i < c->ntargets; i++) {
		const struct deliver_local *l = &c->locals[i];

		if (l->account_id <= 0 || !notify_has_subscribers(c->hub, l->account_id))
			continue;
		if (!summarized) {
			/* Decoded once, only when someone listens: a few microseconds of GMime. */
			memset(&ev, 0, sizeof(ev));
			deliver_event_summary(c, &ev);
			ev.kind = NOTIFY_NEW;
			ev.size = c->size;
			ev.internal_date = c->internal_date;
			summarized = true;
		}
		ev.account_id = l->account_id;
		ev.mailbox_id = results[i].mailbox_id;
		ev.uid = results[i].uid;
		ev.modseq = results[i].modseq;
		ev.flags = l->flags;
		notify_copy_text(ev.mailbox, sizeof(ev.mailbox), l->mailbox);
		notify_copy_text(ev.keywords, sizeof(ev.keywords),
		                 l->keywords != NULL ? l->keywords : "");
		notify_publish(c->hub, &ev);
	}
}

static void
deliver_commit_free(struct deliver_commit *c)
{
	for (size_t i = 0; i < c->ntargets; i++) {
		free(c->locals[i].mailbox);
		free(c->locals[i].keywords);
	}
	free(c->locals);
	free(c->hdrs);
	free(c->mail_from);
	free(c);
}

static void
deliver_committed(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct deliver_commit *c = arg;

	if (!ok)
		log_warnx("deliver event=commit-failed id=%s error=\"%s\"", c->id,
		          error != NULL ? error : "unknown");
	else if (c->hub != NULL)
		deliver_publish(c, results);
	if (c->rcb != NULL)
		c->rcb(ok, error, ok ? results : NULL, c->arg);
	else
		c->cb(ok, error, c->arg);
	deliver_commit_free(c);
}

/* Fills the store delivery of tx and what c keeps for the events after the commit. */
static void
deliver_commit_prepare(struct deliver *d, struct deliver_tx *tx, const struct store_target *targets,
                       size_t ntargets, int64_t sender_account_id, struct deliver_commit *c,
                       struct store_delivery *delivery_r)
{
	struct store_delivery delivery = {
	    .mail_from = tx->mail_from,
	    .sender_account_id = sender_account_id,
	    .internal_date = tx->internal_date != 0 ? tx->internal_date : time_now(),
	    .targets = targets,
	    .ntargets = ntargets,
	};

	/* Filters (spam scoring, plugins) will run here, before the commit, for SMTP and APPEND
	 * alike, and may retarget a message to Junk; none are registered yet. */
	if (tx->pending_cr) {
		/* A last bare CR. A write error marks the blob failed: the commit then fails. */
		tx->pending_cr = false;
		(void)deliver_tx_put(tx, "\r\n", 2);
	}
	memcpy(c->id, tx->id, sizeof(c->id));
	if (d->hub != NULL) {
		/* Kept for the events published after the commit: targets belong to the caller. */
		c->hub = d->hub;
		c->ntargets = ntargets;
		c->locals = xcalloc(ntargets > 0 ? ntargets : 1, sizeof(*c->locals));
		for (size_t i = 0; i < ntargets; i++) {
			if (targets[i].account_id <= 0)
				continue;
			c->locals[i].account_id = targets[i].account_id;
			c->locals[i].flags = targets[i].flags;
			c->locals[i].mailbox = xstrdup(targets[i].mailbox);
			if (targets[i].keywords != NULL)
				c->locals[i].keywords = xstrdup(targets[i].keywords);
		}
		c->hdrs = tx->hdrs;
		tx->hdrs = NULL;
		c->mail_from = tx->mail_from;
		tx->mail_from = NULL;
		c->size = store_blob_size(tx->blob);
		c->internal_date = delivery.internal_date;
	}
	*delivery_r = delivery;
}

/* Frees a transaction whose blob went to the store. */
static void
deliver_tx_free_sent(struct deliver_tx *tx)
{
	free(tx->mail_from);
	free(tx->hdrs);
	free(tx);
}

/* The commit behind deliver_tx_commit and deliver_tx_commit_r (c->cb or c->rcb set). */
static void
deliver_tx_commit_c(struct deliver *d, struct deliver_tx **txp, const struct store_target *targets,
                    size_t ntargets, int64_t sender_account_id, struct deliver_commit *c)
{
	struct deliver_tx *tx = *txp;
	struct store_delivery delivery;

	deliver_commit_prepare(d, tx, targets, ntargets, sender_account_id, c, &delivery);
	*txp = NULL;
	store_blob_commit(d->store, &tx->blob, &delivery, deliver_committed, c);
	/* mail_from now belongs to c when a hub is set (NULL here), else it is freed. */
	deliver_tx_free_sent(tx);
}

void
deliver_tx_commit(struct deliver *d, struct deliver_tx **txp, const struct store_target *targets,
                  size_t ntargets, int64_t sender_account_id, deliver_cb *cb, void *arg)
{
	struct deliver_commit *c = xcalloc(1, sizeof(*c));

	c->cb = cb;
	c->arg = arg;
	deliver_tx_commit_c(d, txp, targets, ntargets, sender_account_id, c);
}

void
deliver_tx_commit_r(struct deliver *d, struct deliver_tx **txp, const struct store_target *targets,
                    size_t ntargets, int64_t sender_account_id, deliver_result_cb *cb, void *arg)
{
	struct deliver_commit *c = xcalloc(1, sizeof(*c));

	c->rcb = cb;
	c->arg = arg;
	deliver_tx_commit_c(d, txp, targets, ntargets, sender_account_id, c);
}

/* A group commit in flight: one part per message, the caller's callback once all have reported. */
struct deliver_group;
struct deliver_group_part {
	struct deliver_group *group;
	size_t index;
};

struct deliver_group {
	deliver_group_cb *cb;
	void *arg;
	size_t n, reported;
	bool ok;
	char error[256];
	struct store_result *results;
	struct deliver_group_part *parts;
};

/* One message of a group reported (the store runs them in order, all ok or all failed). */
static void
deliver_group_part_done(bool ok, const char *error, const struct store_result *results, void *arg)
{
	struct deliver_group_part *part = arg;
	struct deliver_group *g = part->group;

	if (ok)
		g->results[part->index] = results[0];
	else if (g->ok)
		str_copy(g->error, error != NULL ? error : "", sizeof(g->error));
	g->ok = g->ok && ok;
	if (++g->reported < g->n)
		return;
	g->cb(g->ok, g->ok ? NULL : g->error, g->ok ? g->results : NULL, g->n, g->arg);
	free(g->results);
	free(g->parts);
	free(g);
}

void
deliver_tx_commit_group(struct deliver *d, struct deliver_tx **txs,
                        const struct store_target *targets, size_t n, int64_t sender_account_id,
                        deliver_group_cb *cb, void *arg)
{
	struct deliver_group *g = xcalloc(1, sizeof(*g));
	struct store_delivery *deliveries = xcalloc(n, sizeof(*deliveries));
	struct store_blob **blobs = xcalloc(n, sizeof(*blobs));
	void **args = xcalloc(n, sizeof(*args));

	g->cb = cb;
	g->arg = arg;
	g->n = n;
	g->ok = true;
	g->results = xcalloc(n, sizeof(*g->results));
	g->parts = xcalloc(n, sizeof(*g->parts));
	for (size_t i = 0; i < n; i++) {
		struct deliver_commit *c = xcalloc(1, sizeof(*c));

		c->rcb = deliver_group_part_done;
		c->arg = &g->parts[i];
		g->parts[i].group = g;
		g->parts[i].index = i;
		deliver_commit_prepare(d, txs[i], &targets[i], 1, sender_account_id, c,
		                       &deliveries[i]);
		blobs[i] = txs[i]->blob;
		txs[i]->blob = NULL;
		args[i] = c;
	}
	/* The store copies the deliveries before it returns (or calls back, without workers). */
	store_blob_commit_group(d->store, blobs, deliveries, n, deliver_committed, args);
	for (size_t i = 0; i < n; i++) {
		deliver_tx_free_sent(txs[i]);
		txs[i] = NULL;
	}
	free(args);
	free(blobs);
	free(deliveries);
}
