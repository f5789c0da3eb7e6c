/* imap_catenate: APPEND's CATENATE (RFC 4469): a message made of TEXT literals and IMAP URLs
 * (RFC 5092) naming messages or parts of messages of the same account.
 *
 * TEXT literals stream into transactions of their own as they arrive (like MULTIAPPEND's
 * messages); the URLs are resolved on the loop thread when the command is complete (mailbox,
 * UIDVALIDITY, UID, section: NO [BADURL url] when any is wrong) and their files opened there. A
 * worker then assembles each message in order into its final transaction, copying the TEXT parts
 * and the URL ranges (in wire form, bare LF as CRLF, the URL's PARTIAL applied), so nothing of a
 * large part is read on the loop. The session waits (IMAP_STATE_WAIT) meanwhile. */
#include "imap/imap_catenate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/deliver.h"
#include "imap/imap_binary.h"
#include "imap/imap_private.h"
#include "imap/imap_section.h"
#include "imap/imap_url.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "mime/mimestruct.h"
#include "store/store.h"

struct imap_cat_part {
	struct deliver_tx *tx; /* TEXT; NULL for an empty one or a URL */
	int fd;                /* URL: the message's file, or -1 */
	uint64_t offset, len;  /* ... the range in it */
	uint64_t skip, count;  /* ... wire bytes to drop, to copy (UINT64_MAX: all) */
	char *mem;             /* URL of HEADER.FIELDS: the bytes themselves */
	size_t memlen;
};

struct imap_catenate {
	struct imap_cat_part *parts;
	size_t nparts;
	struct deliver_tx *out;
	uint64_t max;   /* the message size limit */
	uint64_t total; /* bytes assembled */
	bool failed, too_big;
};

void
imap_catenate_free(struct imap_catenate **catp)
{
	struct imap_catenate *cat = *catp;

	if (cat == NULL)
		return;
	for (size_t i = 0; i < cat->nparts; i++) {
		deliver_tx_abort(&cat->parts[i].tx);
		if (cat->parts[i].fd >= 0)
			close(cat->parts[i].fd);
		free(cat->parts[i].mem);
	}
	deliver_tx_abort(&cat->out);
	free(cat->parts);
	free(cat);
	*catp = NULL;
}

struct deliver_tx *
imap_catenate_take(struct imap_catenate *cat, bool *too_big_r)
{
	struct deliver_tx *tx = NULL;

	*too_big_r = cat->too_big;
	if (!cat->failed && !cat->too_big) {
		tx = cat->out;
		cat->out = NULL;
	}
	return tx;
}

/* The section text of a URL resolved to bytes of the message file at fd (or to mem for
 * HEADER.FIELDS). 0, or -1 when the message has no such section. */
static int
imap_catenate_section(struct imap_session *s, const struct imap_url *u, int fd,
                      struct imap_cat_part *part)
{
	struct imap_section sec;
	struct mimestruct_range r;
	struct mimestruct *ms = NULL;
	unsigned char *blob = NULL;
	size_t blen = 0;
	int found = -1;

	if (!imap_section_parse(u->section, &sec)) {
		imap_section_clear(&sec);
		return -1;
	}
	if (store_message_mime(s->server->store, s->account_id, u->mailbox, u->uid, &blob, &blen) ==
	        1 &&
	    blob != NULL)
		ms = mimestruct_load(blob, blen);
	free(blob);
	blob = NULL;
	if (ms == NULL && mimestruct_build_fd(fd, &blob, &blen) == 0)
		ms = mimestruct_load(blob, blen);
	free(blob);
	if (ms != NULL)
		found = mimestruct_section(ms, sec.path, sec.depth, sec.spec, &r);
	if (found > 0 && sec.fields != IMAP_SECTION_NO_FIELDS) {
		size_t want = r.len > IMAP_SECTION_HEADER_MAX ? IMAP_SECTION_HEADER_MAX : r.len;
		char *hdr = xmalloc(want + 1);
		ssize_t got = pread(fd, hdr, want, (off_t)r.offset);
		struct buf fields = BUF_INIT;

		mimestruct_header_fields(hdr, got > 0 ? (size_t)got : 0,
		                         (const char *const *)sec.names, sec.nnames,
		                         sec.fields == IMAP_SECTION_FIELDS_NOT, &fields);
		free(hdr);
		part->memlen = fields.len;
		part->mem = buf_steal(&fields);
	} else if (found > 0) {
		part->offset = r.offset;
		part->len = r.len;
	}
	mimestruct_free(&ms);
	imap_section_clear(&sec);
	return found > 0 ? 0 : -1;
}

/* Resolves one URL into part. 0, or -1 when it does not name a message of this account. */
static int
imap_catenate_url(struct imap_session *s, const char *url, struct imap_cat_part *part)
{
	struct imap_url u;
	struct store_mailbox mbox;
	struct stat st;
	const char *error;
	int fd;

	if (imap_url_parse(url, strlen(url), &u, &error) < 0)
		return -1;
	/* Only this account's messages (no URLAUTH): another user's name is refused. */
	if (u.user[0] != '\0' && strcasecmp(u.user, s->account) != 0)
		return -1;
	if (strcasecmp(u.mailbox, "INBOX") == 0)
		strcpy(u.mailbox, "INBOX");
	if (store_mailbox_get(s->server->store, s->account_id, u.mailbox, &mbox) != 1 ||
	    (u.uidvalidity != 0 && u.uidvalidity != mbox.uidvalidity))
		return -1;
	fd = store_message_open(s->server->store, s->account_id, u.mailbox, u.uid);
	if (fd < 0)
		return -1;
	part->fd = fd;
	if (u.section[0] == '\0') {
		part->offset = 0;
		part->len = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	} else if (imap_catenate_section(s, &u, fd, part) < 0) {
		return -1;
	}
	part->skip = u.partial ? u.partial_offset : 0;
	part->count = u.partial && u.partial_len > 0 ? u.partial_len : UINT64_MAX;
	return 0;
}

int
imap_catenate_parse(struct imap_session *s, const char *tag, const struct imap_arg *list,
                    struct deliver_tx **streamed, size_t nstreamed, size_t *next,
                    struct imap_catenate **cat_r)
{
	struct imap_catenate *cat = xcalloc(1, sizeof(*cat));
	char error[256];
	const char *url;

	*cat_r = cat;
	cat->max = s->server->append_max;
	if (list->list_count == 0 || list->list_count % 2 != 0) {
		imap_bad(s, tag, "syntax: CATENATE (TEXT literal / UTF8 (literal8) / URL url ...)");
		return -1;
	}
	cat->parts = xcalloc(list->list_count / 2, sizeof(*cat->parts));
	for (size_t i = 0; i < list->list_count; i += 2) {
		const struct imap_arg *a = &list->list[i + 1];
		struct imap_cat_part *part = &cat->parts[cat->nparts++];

		part->fd = -1;
		if (imap_arg_atom_equals(&list->list[i], "UTF8") && a->type == IMAP_ARG_LIST &&
		    a->list_count == 1 && a->list[0].type == IMAP_ARG_LITERAL && a->list[0].binary)
			a = &a->list[0]; /* RFC 6855 4: cat-part =/ UTF8 (literal8), a TEXT part */
		else if (!imap_arg_atom_equals(&list->list[i], "TEXT"))
			a = NULL;
		if (a != NULL && a->type == IMAP_ARG_LITERAL) {
			if (a->len == 0)
				continue;
			if (a->streamed) {
				if (*next == nstreamed) {
					imap_reply(
					    s, "%s NO [UNAVAILABLE] Cannot store the message", tag);
					return -1;
				}
				part->tx = streamed[*next];
				streamed[(*next)++] = NULL;
				continue;
			}
			part->tx =
			    deliver_tx_begin_append(s->server->deliver, 0, error, sizeof(error));
			if (part->tx == NULL || deliver_tx_write(part->tx, a->str, a->len) < 0) {
				imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message", tag);
				return -1;
			}
			continue;
		}
		a = &list->list[i + 1];
		if (!imap_arg_atom_equals(&list->list[i], "URL") ||
		    !imap_arg_get_astring(a, &url)) {
			imap_bad(s, tag,
			         "syntax: CATENATE (TEXT literal / UTF8 (literal8) / URL url ...)");
			return -1;
		}
		if (imap_catenate_url(s, url, part) < 0) {
			char clean[512];
			size_t n = 0;

			/* url-resp-text: no CR, LF, NUL or ']' (RFC 4469 6). */
			for (const char *p = url; *p != '\0' && n + 1 < sizeof(clean); p++)
				if ((unsigned char)*p >= 0x20 && *p != ']' && *p != 0x7f)
					clean[n++] = *p;
			clean[n] = '\0';
			imap_reply(s, "%s NO [BADURL %s] The URL does not name a message part", tag,
			           clean);
			return -1;
		}
	}
	cat->out = deliver_tx_begin_append(s->server->deliver, 0, error, sizeof(error));
	if (cat->out == NULL) {
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot store the message", tag);
		return -1;
	}
	return 0;
}

/* Copies a URL range in wire form, PARTIAL applied. */
static int
imap_catenate_copy_file(struct imap_catenate *cat, struct imap_cat_part *part)
{
	char *in = xmalloc(IMAP_CHUNK), *conv = xmalloc(IMAP_BINARY_OUT(IMAP_CHUNK));
	struct imap_binary_dec dec;
	uint64_t done = 0, skip = part->skip, left = part->count;
	int ret = 0;

	imap_binary_dec_init(&dec, IMAP_CTE_IDENTITY);
	while (done < part->len && left > 0 && ret == 0) {
		size_t want =
		    part->len - done < IMAP_CHUNK ? (size_t)(part->len - done) : IMAP_CHUNK;
		ssize_t got = pread(part->fd, in, want, (off_t)(part->offset + done));
		size_t n, from = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			ret = -1;
			break;
		}
		done += (uint64_t)got;
		n = imap_binary_dec_feed(&dec, in, (size_t)got, conv);
		from = skip < n ? (size_t)skip : n;
		skip -= from;
		if (n - from > left)
			n = from + (size_t)left;
		left -= n - from;
		cat->total += n - from;
		if (cat->total > cat->max) {
			cat->too_big = true;
			ret = -1;
		} else if (deliver_tx_write(cat->out, conv + from, n - from) < 0) {
			ret = -1;
		}
	}
	free(in);
	free(conv);
	return ret;
}

void
imap_catenate_build(struct imap_catenate *cat)
{
	for (size_t i = 0; i < cat->nparts && !cat->failed && !cat->too_big; i++) {
		struct imap_cat_part *part = &cat->parts[i];
		int r = 0;

		if (part->tx != NULL) {
			/* A TEXT literal (streamed into a blob of its own). */
			cat->total += deliver_tx_size(part->tx);
			r = cat->total > cat->max ? -1 : deliver_tx_append_tx(cat->out, part->tx);
			cat->too_big = cat->total > cat->max;
		} else if (part->mem != NULL) {
			uint64_t skip = part->skip < part->memlen ? part->skip : part->memlen;
			uint64_t n =
			    part->memlen - skip < part->count ? part->memlen - skip : part->count;

			cat->total += n;
			r = deliver_tx_write(cat->out, part->mem + skip, (size_t)n);
		} else if (part->fd >= 0) {
			r = imap_catenate_copy_file(cat, part);
		}
		if (r < 0 && !cat->too_big)
			cat->failed = true;
	}
	if (!cat->failed && !cat->too_big && deliver_tx_size(cat->out) > cat->max)
		cat->too_big = true;
	if (!cat->failed && !cat->too_big && deliver_tx_size(cat->out) == 0)
		cat->failed = true;
}
