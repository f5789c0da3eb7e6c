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

struct deliver {
	struct store *store;
	char **domains;
	size_t ndomains;
	char *hostname;
};

struct deliver_tx {
	struct store_blob *blob;
	char *mail_from;
	char id[24];
};

struct deliver_commit {
	deliver_cb *cb;
	void *arg;
	char id[24];
};

struct deliver *
deliver_new(struct store *store, const struct config *config)
{
	struct deliver *d = xcalloc(1, sizeof(*d));

	d->store = store;
	d->ndomains = config_get_list(config, "server.domains", &d->domains);
	d->hostname = xstrdup(config_get(config, "server.hostname"));
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

struct deliver_tx *
deliver_tx_begin(struct deliver *d, const char *mail_from, const struct deliver_origin *origin,
		 const char *const *rcpts, size_t nrcpts, char *error, size_t errsize)
{
	struct deliver_tx *tx = xcalloc(1, sizeof(*tx));
	unsigned char rnd[6];
	char helo[256], date[64], hdr[2048];
	int n;

	if (store_blob_new(d->store, &tx->blob, error, errsize) < 0) {
		free(tx);
		return NULL;
	}
	randombytes_buf(rnd, sizeof(rnd));
	snprintf(tx->id, sizeof(tx->id), "%08llX%02X%02X%02X%02X%02X%02X",
		 (unsigned long long)(time_now() & 0xffffffff), rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5]);
	tx->mail_from = xstrdup(mail_from);
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

int
deliver_tx_write(struct deliver_tx *tx, const void *data, size_t len)
{
	return store_blob_write(tx->blob, data, len);
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
	free(tx);
	*txp = NULL;
}

static void
deliver_committed(bool ok, const struct store_result *results, const char *error, void *arg)
{
	struct deliver_commit *c = arg;

	if (!ok)
		log_warnx("deliver event=commit-failed id=%s error=\"%s\"", c->id,
			  error != NULL ? error : "unknown");
	c->cb(ok, error, c->arg);
	free(c);
}

void
deliver_tx_commit(struct deliver *d, struct deliver_tx **txp, const struct store_target *targets,
		  size_t ntargets, int64_t sender_account_id, deliver_cb *cb, void *arg)
{
	struct deliver_tx *tx = *txp;
	struct deliver_commit *c = xcalloc(1, sizeof(*c));
	struct store_delivery delivery = {
		.mail_from = tx->mail_from,
		.sender_account_id = sender_account_id,
		.internal_date = time_now(),
		.targets = targets,
		.ntargets = ntargets,
	};

	/* Filters (spam scoring, plugins) will run here, before the commit, and may retarget a
	 * message to Junk; none are registered yet. */
	c->cb = cb;
	c->arg = arg;
	memcpy(c->id, tx->id, sizeof(c->id));
	*txp = NULL;
	store_blob_commit(d->store, &tx->blob, &delivery, deliver_committed, c);
	free(tx->mail_from);
	free(tx);
}
