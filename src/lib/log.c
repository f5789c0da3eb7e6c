/* log: key=value lines on stderr, one write(2) per line so threads do not interleave. */
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static const char *log_prog = "tern";
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *progname)
{
	log_prog = progname;
}

void
log_set_level(enum log_level level)
{
	log_min = level;
}

int
log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 1;
		}
	}
	return 0;
}

int
log_enabled(enum log_level level)
{
	return level >= log_min;
}

/* Formats and writes one line; errnum >= 0 appends the errno text. */
static void
log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char line[4096];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	r = snprintf(line, sizeof(line),
	             "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ prog=%s level=%s ", tm.tm_year + 1900,
	             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	             (long)(tv.tv_usec / 1000), log_prog, log_level_names[level]);
	n = r > 0 ? (size_t)r : 0;
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (errnum >= 0 && n < sizeof(line)) {
		r = snprintf(line + n, sizeof(line) - n, " errno=%d error=\"%s\"", errnum,
		             strerror(errnum));
		if (r > 0)
			n += (size_t)r;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

#define LOG_FN(name, level, with_errno)                                                            \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
		if (level < log_min)                                                               \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		log_vwrite(level, with_errno ? saved : -1, fmt, ap);                               \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

LOG_FN(log_debug, LOG_DEBUG, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_warn, LOG_WARN, 1)
LOG_FN(log_warnx, LOG_WARN, 0)
LOG_FN(log_error, LOG_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERROR, -1, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Writes the escaped form of c into esc (at least 4 bytes); returns its length. */
static size_t
log_escape_char(unsigned char c, char *esc)
{
	static const char hex[] = "0123456789abcdef";

	if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
		esc[0] = (char)c;
		return 1;
	}
	if (c == '\r' || c == '\n' || c == '\t' || c == '"' || c == '\\') {
		esc[0] = '\\';
		esc[1] = c == '\r' ? 'r' : c == '\n' ? 'n' : c == '\t' ? 't' : (char)c;
		return 2;
	}
	esc[0] = '\\';
	esc[1] = 'x';
	esc[2] = hex[c >> 4];
	esc[3] = hex[c & 15];
	return 4;
}

const char *
log_escape(char *dst, size_t dstsize, const char *src, size_t srclen)
{
	size_t total = 0, o = 0;
	char esc[4];

	if (dstsize == 0)
		return dst;
	for (size_t i = 0; i < srclen; i++)
		total += log_escape_char((unsigned char)src[i], esc);
	/* When it all fits nothing is cut; otherwise leave room for "...". */
	size_t room = total < dstsize ? dstsize - 1 : (dstsize > 4 ? dstsize - 4 : 0);
	for (size_t i = 0; i < srclen; i++) {
		size_t elen = log_escape_char((unsigned char)src[i], esc);
		if (o + elen > room)
			break;
		memcpy(dst + o, esc, elen);
		o += elen;
	}
	if (total >= dstsize && o + 3 < dstsize) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

/* Length of the valid UTF-8 sequence at s of a code point from U+00A0 up (C1 controls are
 * escaped), or 0. */
static size_t
log_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		if (s[0] == 0xc2)
			lo = 0xa0;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return len;
}

/* The next unit of src at *i for a quoted value: copied into esc (at least 4 bytes), *i
 * advanced; returns its length. */
static size_t
log_value_unit(const unsigned char *src, size_t srclen, size_t *i, char *esc)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c = src[*i];
	size_t n;

	if (c >= 0x20 && c < 0x7f) {
		(*i)++;
		if (c != '"' && c != '\\') {
			esc[0] = (char)c;
			return 1;
		}
		esc[0] = '\\';
		esc[1] = (char)c;
		return 2;
	}
	n = c >= 0x80 ? log_utf8_len(src + *i, srclen - *i) : 0;
	if (n > 0) {
		memcpy(esc, src + *i, n);
		*i += n;
		return n;
	}
	(*i)++;
	esc[0] = '\\';
	esc[1] = 'x';
	esc[2] = hex[c >> 4];
	esc[3] = hex[c & 15];
	return 4;
}

static bool
log_value_bare(const unsigned char *src, size_t srclen)
{
	if (srclen == 0)
		return false;
	for (size_t i = 0; i < srclen; i++) {
		if (src[i] <= 0x20 || src[i] >= 0x7f || src[i] == '=' || src[i] == '"' ||
		    src[i] == '\\')
			return false;
	}
	return true;
}

const char *
log_value(char *dst, size_t dstsize, const char *src, size_t srclen)
{
	const unsigned char *u = (const unsigned char *)src;
	size_t total = 0, room, o = 0, used = 0, i;
	bool cut = false, bare = log_value_bare(u, srclen);
	char esc[4];

	if (dstsize < 8) {
		if (dstsize > 0)
			dst[0] = '\0';
		return dst;
	}
	for (i = 0; i < srclen;)
		total += log_value_unit(u, srclen, &i, esc);
	/* Room for the text: minus the NUL, the quotes, and "..." when it does not all fit. */
	room = dstsize - 1 - (bare ? 0 : 2);
	if (total > room)
		room -= 3;
	if (!bare)
		dst[o++] = '"';
	for (i = 0; i < srclen;) {
		size_t elen = log_value_unit(u, srclen, &i, esc);
		if (used + elen > room) {
			cut = true;
			break;
		}
		memcpy(dst + o, esc, elen);
		o += elen;
		used += elen;
	}
	if (cut) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	if (!bare)
		dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}

const char *
log_str(char *dst, size_t dstsize, const char *src)
{
	return log_value(dst, dstsize, src, strlen(src));
}
