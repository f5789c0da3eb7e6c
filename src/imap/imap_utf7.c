/* imap_utf7: modified UTF-7 mailbox names (see imap_utf7.h). */
#include "imap/imap_utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char imap_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Reads one UTF-8 character at *p; returns it, or -1 when invalid (overlong, surrogate, >
 * U+10FFFF). */
static long
imap_utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	unsigned long c;
	int n;

	if (s[0] < 0x80) {
		*p = s + 1;
		return s[0];
	}
	if ((s[0] & 0xe0) == 0xc0) {
		c = s[0] & 0x1f;
		n = 1;
	} else if ((s[0] & 0xf0) == 0xe0) {
		c = s[0] & 0x0f;
		n = 2;
	} else if ((s[0] & 0xf8) == 0xf0) {
		c = s[0] & 0x07;
		n = 3;
	} else {
		return -1;
	}
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 1 && c < 0x80) || (n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return -1;
	*p = s + n + 1;
	return (long)c;
}

struct imap_out {
	char *buf;
	size_t size, len;
	bool overflow;
};

static void
imap_out_byte(struct imap_out *o, char c)
{
	if (o->len + 1 >= o->size) {
		o->overflow = true;
		return;
	}
	o->buf[o->len++] = c;
}

int
imap_utf7_encode(const char *name, char *out, size_t outsize)
{
	const unsigned char *p = (const unsigned char *)name;
	struct imap_out o = {out, outsize, 0, false};

	if (outsize == 0)
		return -1;
	while (*p != '\0') {
		uint32_t bits = 0;
		int nbits = 0;

		if (*p >= 0x20 && *p <= 0x7e) {
			imap_out_byte(&o, (char)*p);
			if (*p == '&')
				imap_out_byte(&o, '-');
			p++;
			continue;
		}
		imap_out_byte(&o, '&');
		while (*p != '\0' && (*p < 0x20 || *p > 0x7e)) {
			long c = imap_utf8_next(&p);
			uint16_t units[2];
			int nunits = 1;

			/* Control characters have no place in a mailbox name (and would not
			 * decode back). */
			if (c < 0x20 || c == 0x7f)
				return -1;
			if (c >= 0x10000) {
				c -= 0x10000;
				units[0] = (uint16_t)(0xd800 | (c >> 10));
				units[1] = (uint16_t)(0xdc00 | (c & 0x3ff));
				nunits = 2;
			} else {
				units[0] = (uint16_t)c;
			}
			for (int u = 0; u < nunits; u++) {
				bits = (bits << 16) | units[u];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					imap_out_byte(&o, imap_b64[(bits >> nbits) & 0x3f]);
				}
			}
		}
		if (nbits > 0)
			imap_out_byte(&o, imap_b64[(bits << (6 - nbits)) & 0x3f]);
		imap_out_byte(&o, '-');
	}
	if (o.overflow)
		return -1;
	out[o.len] = '\0';
	return 0;
}

static int
imap_b64_value(unsigned char c)
{
	const char *p = c != '\0' ? strchr(imap_b64, c) : NULL;

	return p != NULL ? (int)(p - imap_b64) : -1;
}

static void
imap_out_utf8(struct imap_out *o, uint32_t c)
{
	if (c < 0x80) {
		imap_out_byte(o, (char)c);
	} else if (c < 0x800) {
		imap_out_byte(o, (char)(0xc0 | (c >> 6)));
		imap_out_byte(o, (char)(0x80 | (c & 0x3f)));
	} else if (c < 0x10000) {
		imap_out_byte(o, (char)(0xe0 | (c >> 12)));
		imap_out_byte(o, (char)(0x80 | ((c >> 6) & 0x3f)));
		imap_out_byte(o, (char)(0x80 | (c & 0x3f)));
	} else {
		imap_out_byte(o, (char)(0xf0 | (c >> 18)));
		imap_out_byte(o, (char)(0x80 | ((c >> 12) & 0x3f)));
		imap_out_byte(o, (char)(0x80 | ((c >> 6) & 0x3f)));
		imap_out_byte(o, (char)(0x80 | (c & 0x3f)));
	}
}

/* Decodes the base64 run at *p (after '&') up to its '-'. 0 or -1. */
static int
imap_utf7_shift(const unsigned char **pp, struct imap_out *o)
{
	const unsigned char *p = *pp;
	uint32_t bits = 0, high = 0;
	int nbits = 0, v;
	size_t nunits = 0;

	while ((v = imap_b64_value(*p)) >= 0) {
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		p++;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffff;

		nunits++;
		if (high != 0) {
			if (u < 0xdc00 || u > 0xdfff)
				return -1;
			imap_out_utf8(o, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
			high = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			high = u;
		} else if ((u >= 0xdc00 && u <= 0xdfff) || (u >= 0x20 && u <= 0x7e) || u < 0x20 ||
		           u == 0x7f) {
			/* A lone low surrogate, printable ASCII that must be sent directly, or a
			 * control character. */
			return -1;
		} else {
			imap_out_utf8(o, u);
		}
	}
	/* Leftover bits must be fewer than 6 and zero; the run must end in '-'. */
	if (*p != '-' || nunits == 0 || high != 0 || nbits >= 6 ||
	    (bits & ((1u << nbits) - 1)) != 0)
		return -1;
	*pp = p + 1;
	return 0;
}

int
imap_utf7_decode(const char *name, char *out, size_t outsize)
{
	const unsigned char *p = (const unsigned char *)name;
	struct imap_out o = {out, outsize, 0, false};

	if (outsize == 0)
		return -1;
	while (*p != '\0') {
		if (*p < 0x20 || *p > 0x7e)
			return -1;
		if (*p != '&') {
			imap_out_byte(&o, (char)*p++);
			continue;
		}
		p++;
		if (*p == '-') {
			imap_out_byte(&o, '&');
			p++;
			continue;
		}
		if (imap_utf7_shift(&p, &o) < 0)
			return -1;
		/* Two shifts in a row ("&j,I-&,,I-") spell what one shift would: the canonical
		 * form has one, so the name has one spelling (RFC 3501 5.1.3). */
		if (p[0] == '&' && p[1] != '-')
			return -1;
	}
	if (o.overflow)
		return -1;
	out[o.len] = '\0';
	return 0;
}
