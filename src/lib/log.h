/* log: key=value lines on stderr.
 *
 * Each line is "ts=... level=LEVEL " followed by the caller's text, which by convention is a
 * list of key=value pairs starting with the module and session id, for example
 *   log_info("smtp session=%s event=mail-from from=%s", id, log_value(buf, sizeof buf, s, n));
 * Text that came from a client must pass through log_value() (or log_str()) first. */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *progname);
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error": 1 and sets *level_r, or 0 when unknown. */
int log_level_parse(const char *name, enum log_level *level_r);
int log_enabled(enum log_level level);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends " errno=... error=\"strerror\""; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Start-up errors and impossible states only: logs and exits(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Makes untrusted bytes safe for one log line: printable ASCII other than '"' and '\\' is kept,
 * everything else becomes \xNN (\r \n \t as themselves escaped). Output is truncated to fit dst
 * and ends with "..." when cut. Always NUL-terminated; returns dst. */
const char *log_escape(char *dst, size_t dstsize, const char *src, size_t srclen);

/* Makes untrusted bytes one whole log value, to be printed right after "key=": printable ASCII
 * other than space, '=', '"' and '\\' is printed as it is; anything else (also the empty value)
 * is put in double quotes, with '"' as \", '\\' as \\, control bytes and bytes that are not
 * part of valid UTF-8 as \xNN (valid UTF-8 above U+009F stays). So a client's text can never
 * end the value early or add a key of its own. Output is truncated to fit dst, ending with
 * "..." (inside the quotes) when cut; always NUL-terminated; returns dst. dstsize >= 8. */
const char *log_value(char *dst, size_t dstsize, const char *src, size_t srclen);
/* log_value of a NUL-terminated string. */
const char *log_str(char *dst, size_t dstsize, const char *src);

#endif
