/* imap_url: RFC 5092 IMAP URLs for CATENATE (see imap_url.h). */
#include "imap/imap_url.h"

#include <string.h>
#include <strings.h>

/* The cursor over the URL. */
struct imap_url_cur {
	const char *p, *end;
};

static bool
imap_url_unreserved(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* bchar (RFC 5092 11): unreserved, sub-delims-sh, '&', '=', ':', '@', '/' (pct-encoded apart). */
static bool
imap_url_bchar(char c)
{
	return imap_url_unreserved(c) || strchr("!$'()*+,&=:@/", c) != NULL;
}

static int
imap_url_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads bchars (and %XX) up to a ';' or the end into out, decoded. Refuses %00, an empty value,
 * and a value that does not fit. */
static int
imap_url_text(struct imap_url_cur *c, char *out, size_t size, bool (*ok)(char))
{
	size_t n = 0;

	while (c->p < c->end && *c->p != ';') {
		char ch = *c->p;

		if (ch == '%') {
			int hi, lo;

			if (c->end - c->p < 3 || (hi = imap_url_hex(c->p[1])) < 0 ||
			    (lo = imap_url_hex(c->p[2])) < 0 || (hi == 0 && lo == 0))
				return -1;
			ch = (char)(hi * 16 + lo);
			c->p += 3;
		} else if (ok(ch)) {
			c->p++;
		} else {
			return -1;
		}
		if (n + 1 >= size)
			return -1;
		out[n++] = ch;
	}
	out[n] = '\0';
	return n > 0 ? 0 : -1;
}

/* Consumes the literal text word (case-insensitively). */
static bool
imap_url_word(struct imap_url_cur *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || strncasecmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* A number of up to 32 bits (nz: not 0, no leading zero). */
static int
imap_url_number(struct imap_url_cur *c, bool nz, uint32_t *n_r)
{
	uint64_t v = 0;
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		v = v * 10 + (uint64_t)(*c->p - '0');
		if (v > UINT32_MAX)
			return -1;
		c->p++;
	}
	if (c->p == start || (nz && (v == 0 || *start == '0')) ||
	    (c->p - start > 1 && *start == '0'))
		return -1;
	*n_r = (uint32_t)v;
	return 0;
}

/* userinfo chars (enc-user: achar without '='... kept simple: achar). */
static bool
imap_url_userchar(char c)
{
	return imap_url_unreserved(c) || strchr("!$'()*+,&=", c) != NULL;
}

static bool
imap_url_hostchar(char c)
{
	return imap_url_unreserved(c) || strchr("!$'()*+,;=[]:", c) != NULL;
}

/* "imap://" [user [";AUTH=" type] "@"] host [":" port]: up to the '/' of the path. */
static int
imap_url_server(struct imap_url_cur *c, struct imap_url *u)
{
	const char *slash = memchr(c->p, '/', (size_t)(c->end - c->p));
	const char *at;
	struct imap_url_cur sub;

	if (slash == NULL)
		return -1;
	at = memchr(c->p, '@', (size_t)(slash - c->p));
	if (at != NULL) {
		const char *semi = memchr(c->p, ';', (size_t)(at - c->p));

		sub.p = c->p;
		sub.end = semi != NULL ? semi : at;
		if (sub.p < sub.end &&
		    imap_url_text(&sub, u->user, sizeof(u->user), imap_url_userchar) < 0)
			return -1;
		if (semi != NULL) {
			sub.p = semi;
			sub.end = at;
			if (!imap_url_word(&sub, ";AUTH=") || sub.p == sub.end)
				return -1;
			for (; sub.p < sub.end; sub.p++)
				if (*sub.p != '*' && !imap_url_userchar(*sub.p) && *sub.p != '%')
					return -1;
		}
		c->p = at + 1;
	}
	if (c->p == slash)
		return -1; /* no host */
	for (; c->p < slash; c->p++)
		if (!imap_url_hostchar(*c->p) && *c->p != '%')
			return -1;
	return 0;
}

int
imap_url_parse(const char *url, size_t len, struct imap_url *u, const char **error_r)
{
	struct imap_url_cur c = {url, url + len};
	size_t n;

	memset(u, 0, sizeof(*u));
	*error_r = "Invalid IMAP URL";
	if (len == 0 || len > IMAP_URL_MAX || memchr(url, '\0', len) != NULL)
		return -1;
	if (imap_url_word(&c, "imap://")) {
		u->absolute = true;
		if (imap_url_server(&c, u) < 0)
			return -1;
	}
	if (c.p == c.end || *c.p != '/')
		return -1;
	c.p++;
	/* enc-mailbox, up to ";UIDVALIDITY=" or "/;UID=" (a '/' before the ';' is the separator).
	 */
	if (imap_url_text(&c, u->mailbox, sizeof(u->mailbox), imap_url_bchar) < 0)
		return -1;
	n = strlen(u->mailbox);
	if (c.p == c.end) {
		*error_r = "IMAP URL without a UID";
		return -1;
	}
	if (u->mailbox[n - 1] != '/') {
		if (!imap_url_word(&c, ";UIDVALIDITY=") ||
		    imap_url_number(&c, true, &u->uidvalidity) < 0 || !imap_url_word(&c, "/"))
			return -1;
	} else if (n == 1 || c.p[-1] != '/') {
		return -1; /* "/;UID" with no mailbox, or an escaped %2F before ';' */
	} else {
		u->mailbox[n - 1] = '\0';
	}
	if (!imap_url_word(&c, ";UID=")) {
		*error_r = c.p < c.end && (*c.p == '?' || *c.p == ';') ? "IMAP URL without a UID"
		                                                       : "Invalid IMAP URL";
		return -1;
	}
	if (imap_url_number(&c, true, &u->uid) < 0)
		return -1;
	if (imap_url_word(&c, "/;SECTION=")) {
		if (imap_url_text(&c, u->section, sizeof(u->section), imap_url_bchar) < 0)
			return -1;
		n = strlen(u->section);
		if (c.p < c.end) {
			/* "/;PARTIAL=" or ";URLAUTH=" follows: a '/' before it is the separator. */
			if (u->section[n - 1] == '/' && c.p[-1] == '/') {
				u->section[--n] = '\0';
				c.p--;
			}
			if (n == 0)
				return -1;
		}
	}
	if (imap_url_word(&c, "/;PARTIAL=")) {
		u->partial = true;
		if (imap_url_number(&c, false, &u->partial_offset) < 0)
			return -1;
		if (imap_url_word(&c, ".") && imap_url_number(&c, true, &u->partial_len) < 0)
			return -1;
	}
	if (c.p != c.end) {
		*error_r = imap_url_word(&c, ";EXPIRE=") || imap_url_word(&c, ";URLAUTH=")
		               ? "URLAUTH is not supported"
		               : "Invalid IMAP URL";
		return -1;
	}
	return 0;
}
