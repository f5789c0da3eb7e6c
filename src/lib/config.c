/* config: a static table of every known key, an INI-style parser over it, and the documented
 * default file written from the same table. */
#include "lib/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

/* A config file is small; anything past these limits is a mistake or an attack on the parser. */
#define CONFIG_LINE_MAX 4096
#define CONFIG_FILE_MAX (1024 * 1024)

enum config_type {
	CONFIG_STRING,
	CONFIG_INT,
	CONFIG_BOOL,
	CONFIG_LIST,
	CONFIG_ENUM,
};

struct config_key {
	const char *section;
	const char *name;
	enum config_type type;
	const char *def;
	int64_t min, max;           /* CONFIG_INT */
	const char *const *choices; /* CONFIG_ENUM, NULL-terminated */
	const char *doc;
};

static const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_tls_versions[] = {"TLSv1.2", "TLSv1.3", NULL};
static const char *const config_plaintext_modes[] = {"loopback", "never", "always", NULL};

/* clang-format off */
/* For CONFIG_STRING, min 1 means the value may not be empty. */
#define STR(s, k, d, doc) {s, k, CONFIG_STRING, d, 0, 0, NULL, doc}
#define STR_NE(s, k, d, doc) {s, k, CONFIG_STRING, d, 1, 0, NULL, doc}
#define INT(s, k, d, lo, hi, doc) {s, k, CONFIG_INT, d, lo, hi, NULL, doc}
#define LIST(s, k, d, doc) {s, k, CONFIG_LIST, d, 0, 0, NULL, doc}
#define ENUM(s, k, d, ch, doc) {s, k, CONFIG_ENUM, d, 0, 0, ch, doc}
#define BOOL(s, k, d, doc) {s, k, CONFIG_BOOL, d, 0, 0, NULL, doc}

/* Every key, in the order the default file lists them. Sections appear in runs. */
static const struct config_key config_keys[] = {
	STR_NE("server", "hostname", "localhost", "Name used in greetings and Received headers"),
	LIST("server", "domains", "",
	     "Local mail domains: mail to these is delivered here (comma- or space-separated)"),
	STR("server", "data_dir", "",
	    "Directory of the database, mail and TLS files; empty means the directory of this file"),
	INT("server", "max_connections", "10000", 1, 1000000,
	    "Most client connections open at once, over all listeners"),
	INT("server", "max_connections_per_ip", "100", 1, 1000000,
	    "Most connections open at once from one client address"),
	INT("server", "shutdown_timeout", "10", 0, 3600,
	    "Seconds to let sessions finish on shutdown before closing them"),
	INT("server", "command_timeout", "60", 1, 3600,
	    "Seconds a client may take to send one whole command line, from its first byte, "
	    "however the bytes trickle in (SMTP, POP3, IMAP, push; IMAP literals and message data "
	    "only have to keep coming within the idle timeout)"),
	INT("server", "tls_handshake_timeout", "30", 1, 3600,
	    "Seconds a TLS handshake (implicit TLS or after STARTTLS) may take before the "
	    "connection is dropped"),
	INT("server", "workers", "2", 1, 64,
	    "Worker threads for slow work other than password checks (IMAP SEARCH); more threads "
	    "than cores add no speed"),
	INT("server", "io_workers", "4", 1, 256,
	    "Threads that read message files for IMAP FETCH and POP3 RETR/TOP (the store reader), "
	    "apart from server.workers and auth.workers; a read waiting for the disk holds one, "
	    "and only the client that asked waits for it"),

	ENUM("log", "level", "info", config_log_levels,
	     "Least severe messages logged: debug, info, warn or error"),

	STR_NE("tls", "cert", "tls/cert.pem",
	    "PEM certificate chain, leaf first; a relative path is under the data directory"),
	STR_NE("tls", "key", "tls/key.pem",
	    "PEM private key of the certificate; a relative path is under the data directory"),
	ENUM("tls", "min_version", "TLSv1.2", config_tls_versions,
	     "Oldest TLS version accepted: TLSv1.2 or TLSv1.3"),

	ENUM("auth", "allow_plaintext", "loopback", config_plaintext_modes,
	     "Whether AUTH and LOGIN are offered without TLS: loopback (only to 127.0.0.1 and ::1), "
	     "never or always"),
	INT("auth", "max_failures", "5", 1, 1000,
	    "Attempts for one login from one client address within failure_window (counted when the "
	    "check starts; a success gives its attempt back) before that address is refused for that "
	    "login; past as many attempts for a login from anywhere, its checks are spaced by "
	    "login_interval: its owner is slowed, never refused"),
	INT("auth", "max_failures_per_ip", "50", 1, 100000,
	    "Attempts from one client address, for any logins, within failure_window before that "
	    "address is refused"),
	INT("auth", "max_checks_per_ip", "2", 1, 64,
	    "Password checks from one client address running at once; further ones wait their turn "
	    "behind other addresses"),
	INT("auth", "login_interval", "1", 0, 60,
	    "Seconds between password checks for a login under attack (see max_failures)"),
	INT("auth", "workers", "2", 1, 64,
	    "Worker threads for argon2id password checks, apart from server.workers; each check "
	    "takes 64 MiB while it runs, and more threads than cores add no speed"),
	INT("auth", "failure_window", "300", 1, 86400,
	    "Seconds over which failed logins are counted"),
	INT("auth", "cache_ttl", "3600", 0, 604800,
	    "Seconds a verified login is remembered, so a mail client's next poll with the same "
	    "password skips the argon2id hash; 0 disables"),
	INT("auth", "failure_delay", "2", 0, 60, "Seconds to wait before answering a failed login"),

	LIST("smtp", "listen", "127.0.0.1:2525",
	     "Addresses (host:port) of the MX listener, receiving mail for the local domains; "
	     "empty disables it"),
	LIST("smtp", "submission", "127.0.0.1:2587",
	     "Addresses of the submission listener (STARTTLS, then AUTH); empty disables it"),
	LIST("smtp", "submissions", "127.0.0.1:2465",
	     "Addresses of the submissions listener (implicit TLS); empty disables it"),
	INT("smtp", "max_message_size", "26214400", 1024, 2147483647,
	    "Largest message accepted, in bytes"),
	INT("smtp", "max_recipients", "100", 1, 10000, "Most recipients of one message"),
	INT("smtp", "max_header_size", "1048576", 1024, 2147483647,
	    "Largest header section of a message, in bytes; a longer one is refused with "
	    "552 5.3.4 (real mail has a few KiB)"),
	BOOL("smtp", "allow_any_from", "false",
	     "Whether an authenticated sender may put addresses that are not the account's own or "
	     "its aliases in the From: and Sender: headers; false refuses such a message with "
	     "550 5.7.1"),
	INT("smtp", "idle_timeout", "300", 5, 86400,
	    "Seconds a client may stay silent before it is disconnected"),
	INT("smtp", "max_errors", "10", 1, 1000,
	    "Protocol errors in one session before the connection is closed"),
	LIST("pop3", "listen", "127.0.0.1:2110",
	     "POP3 addresses (port 110 in production), with STLS; empty disables"),
	LIST("pop3", "listen_tls", "127.0.0.1:2995",
	     "POP3 over implicit TLS (port 995 in production); empty disables"),
	INT("pop3", "idle_timeout", "600", 30, 86400,
	    "Seconds a client may stay silent before it is disconnected (RFC 1939: at least 600)"),
	INT("pop3", "max_errors", "10", 1, 1000,
	    "Protocol errors in one session before the connection is closed"),
	LIST("imap", "listen", "127.0.0.1:2143",
	     "IMAP addresses with STARTTLS (port 143 in production); empty turns it off"),
	LIST("imap", "listen_tls", "127.0.0.1:2993",
	     "IMAP over implicit TLS (port 993 in production); empty turns it off"),
	INT("imap", "idle_timeout", "1800", 60, 86400,
	    "Seconds a client may stay silent before it is logged out (RFC 3501: at least 1800)"),
	INT("imap", "max_errors", "20", 1, 1000,
	    "Protocol errors in one session before the connection is closed"),

	LIST("push", "listen", "127.0.0.1:5050",
	     "Push service addresses, implicit TLS (docs/push-protocol.md); empty disables"),
	LIST("push", "listen_plain", "",
	     "Push service addresses in plain text with STARTTLS, e.g. 127.0.0.1:5051; AUTH there "
	     "follows auth.allow_plaintext; empty disables"),
	INT("push", "keepalive", "60", 1, 86400,
	    "Seconds between keepalive events sent to a logged-in push client"),
	INT("push", "queue", "1024", 1, 1000000,
	    "Events one push client may have waiting while it reads slowly; past this they are "
	    "dropped and the client is told to resync"),
	INT("push", "idle_timeout", "300", 5, 86400,
	    "Seconds a push client may stay silent before logging in, or leave our output unread, "
	    "before it is disconnected"),
	INT("push", "max_errors", "10", 1, 1000,
	    "Protocol errors in one push session before the connection is closed"),
	STR("push", "webhook", "",
	    "URL (https://... or http://...) POSTed a JSON body for every new message of every "
	    "account; empty disables"),
	INT("push", "webhook_queue", "10000", 1, 10000000,
	    "Events waiting for the webhook; past this new events are dropped and logged"),
	INT("push", "webhook_retries", "5", 0, 100,
	    "Retries of a webhook POST after a network error, a timeout, 408, 429 or 5xx, with "
	    "backoff 1, 2, 4 ... 60 seconds"),
	INT("push", "webhook_timeout", "10", 1, 3600,
	    "Seconds one webhook POST may take, connecting included"),
	STR("push", "webhook_ca", "",
	    "PEM file of the CAs trusted for the webhook's HTTPS certificate instead of the system "
	    "store; a relative path is under the data directory"),
};

#undef STR
#undef STR_NE
#undef INT
#undef LIST
#undef ENUM
/* clang-format on */

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

struct config {
	char *values[CONFIG_NKEYS]; /* normalized text of every key */
	int64_t nums[CONFIG_NKEYS]; /* parsed value of CONFIG_INT and CONFIG_BOOL keys */
};

/* Formats into error, when there is one. */
static void __attribute__((format(printf, 3, 4)))
config_error(char *error, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL || errsize == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, errsize, fmt, ap);
	va_end(ap);
}

/* Index of section+name (name of length namelen), or -1. */
static int
config_find(const char *section, const char *name, size_t namelen)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strlen(config_keys[i].name) == namelen &&
		    memcmp(config_keys[i].name, name, namelen) == 0)
			return (int)i;
	}
	return -1;
}

/* Index of a "section.key" name, or -1. */
static int
config_find_full(const char *key)
{
	const char *dot = strchr(key, '.');
	char section[64];
	size_t seclen;

	if (dot == NULL)
		return -1;
	seclen = (size_t)(dot - key);
	if (seclen >= sizeof(section))
		return -1;
	memcpy(section, key, seclen);
	section[seclen] = '\0';
	return config_find(section, dot + 1, strlen(dot + 1));
}

static bool
config_section_known(const char *section)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		if (strcmp(config_keys[i].section, section) == 0)
			return true;
	}
	return false;
}

/* Index of key for a getter; an unknown key is a bug in the caller. */
static size_t
config_index(const char *key)
{
	int i = config_find_full(key);

	if (i < 0)
		fatalx("config event=unknown-key key=%s", key);
	return (size_t)i;
}

/* Checks value against key i's type; on success stores the normalized text in *text_r
 * (allocated) and the number in *num_r. */
static int
config_validate(size_t i, const char *value, char **text_r, int64_t *num_r, char *error,
                size_t errsize)
{
	const struct config_key *k = &config_keys[i];
	char esc[128];

	log_escape(esc, sizeof(esc), value, strlen(value));
	for (const char *p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 && *p != '\t') {
			config_error(error, errsize, "%s.%s: '%s' contains a control character",
			             k->section, k->name, esc);
			return -1;
		}
	}
	*num_r = 0;
	switch (k->type) {
	case CONFIG_STRING:
		if (k->min > 0 && value[0] == '\0') {
			config_error(error, errsize, "%s.%s: the value may not be empty",
			             k->section, k->name);
			return -1;
		}
		break;
	case CONFIG_LIST:
		break;
	case CONFIG_INT: {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(value, &end, 10);
		if (value[0] == '\0' || isspace((unsigned char)value[0]) || *end != '\0' ||
		    errno == ERANGE) {
			config_error(error, errsize, "%s.%s: '%s' is not an integer", k->section,
			             k->name, esc);
			return -1;
		}
		if (n < k->min) {
			config_error(error, errsize, "%s.%s: '%s' is below the minimum %" PRId64,
			             k->section, k->name, esc, k->min);
			return -1;
		}
		if (n > k->max) {
			config_error(error, errsize, "%s.%s: '%s' is above the maximum %" PRId64,
			             k->section, k->name, esc, k->max);
			return -1;
		}
		*num_r = n;
		*text_r = xasprintf("%lld", n);
		return 0;
	}
	case CONFIG_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
		    strcmp(value, "on") == 0 || strcmp(value, "1") == 0) {
			*num_r = 1;
			*text_r = xstrdup("true");
			return 0;
		}
		if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
		    strcmp(value, "off") == 0 || strcmp(value, "0") == 0) {
			*text_r = xstrdup("false");
			return 0;
		}
		config_error(error, errsize, "%s.%s: '%s' is not true or false", k->section,
		             k->name, esc);
		return -1;
	case CONFIG_ENUM: {
		char list[256] = "";

		for (size_t c = 0; k->choices[c] != NULL; c++) {
			if (strcmp(value, k->choices[c]) == 0) {
				*text_r = xstrdup(value);
				return 0;
			}
			if (c > 0)
				strncat(list, ", ", sizeof(list) - strlen(list) - 1);
			strncat(list, k->choices[c], sizeof(list) - strlen(list) - 1);
		}
		config_error(error, errsize, "%s.%s: '%s' is not one of %s", k->section, k->name,
		             esc, list);
		return -1;
	}
	}
	*text_r = xstrdup(value);
	return 0;
}

/* Validates and stores value into slot i of values/nums. */
static int
config_store(char **values, int64_t *nums, size_t i, const char *value, char *error, size_t errsize)
{
	char *text = NULL;
	int64_t num;

	if (config_validate(i, value, &text, &num, error, errsize) < 0)
		return -1;
	free(values[i]);
	values[i] = text;
	nums[i] = num;
	return 0;
}

struct config *
config_new(void)
{
	struct config *config = xcalloc(1, sizeof(*config));

	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		if (config_store(config->values, config->nums, i, config_keys[i].def, NULL, 0) < 0)
			fatalx("config event=bad-default key=%s.%s", config_keys[i].section,
			       config_keys[i].name);
	}
	return config;
}

void
config_free(struct config **config)
{
	if (*config == NULL)
		return;
	for (size_t i = 0; i < CONFIG_NKEYS; i++)
		free((*config)->values[i]);
	free(*config);
	*config = NULL;
}

static char *
config_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* Turns the text after '=' into the value in place: a double-quoted value loses its quotes
 * (\" and \\ escape), an unquoted one ends at a '#' or ';' that follows whitespace. */
static int
config_unquote(char *s, const char **value_r, const char **error_r)
{
	s = config_trim(s);
	if (*s != '"') {
		for (char *p = s; *p != '\0'; p++) {
			if ((*p == '#' || *p == ';') && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
				*p = '\0';
				break;
			}
		}
		*value_r = config_trim(s);
		return 0;
	}

	char *in = s + 1, *out = s;
	for (;;) {
		if (*in == '\0') {
			*error_r = "unterminated quoted value";
			return -1;
		}
		if (*in == '"')
			break;
		if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
			in++;
		*out++ = *in++;
	}
	*out = '\0';
	in = config_trim(in + 1);
	if (*in != '\0' && *in != '#' && *in != ';') {
		*error_r = "text after the closing quote";
		return -1;
	}
	*value_r = s;
	return 0;
}

/* Parses one line (NUL-terminated, no newline) of a file into values/nums. section holds the
 * current section name ("" before the first). Returns 0 or -1 with msg set. */
static int
config_parse_line(char *line, char *section, size_t sectionsize, char **values, int64_t *nums,
                  char *msg, size_t msgsize)
{
	char *s = config_trim(line);
	char *eq, *key;
	const char *value, *why = NULL;
	char esc[128];
	int i;

	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		char *end = strchr(s, ']');
		char *name;

		if (end == NULL || *config_trim(end + 1) != '\0') {
			config_error(msg, msgsize, "line is not '[section]'");
			return -1;
		}
		*end = '\0';
		name = config_trim(s + 1);
		if (!config_section_known(name)) {
			log_escape(esc, sizeof(esc), name, strlen(name));
			config_error(msg, msgsize, "unknown section [%s]", esc);
			return -1;
		}
		str_copy(section, name, sectionsize);
		return 0;
	}
	eq = strchr(s, '=');
	if (eq == NULL) {
		config_error(msg, msgsize, "line is not 'key = value'");
		return -1;
	}
	*eq = '\0';
	key = config_trim(s);
	if (*key == '\0') {
		config_error(msg, msgsize, "line is not 'key = value'");
		return -1;
	}
	if (section[0] == '\0') {
		log_escape(esc, sizeof(esc), key, strlen(key));
		config_error(msg, msgsize, "key '%s' outside any [section]", esc);
		return -1;
	}
	i = config_find(section, key, strlen(key));
	if (i < 0) {
		log_escape(esc, sizeof(esc), key, strlen(key));
		config_error(msg, msgsize, "unknown key '%s' in section [%s]", esc, section);
		return -1;
	}
	if (config_unquote(eq + 1, &value, &why) < 0) {
		config_error(msg, msgsize, "%s.%s: %s", section, key, why);
		return -1;
	}
	return config_store(values, nums, (size_t)i, value, msg, msgsize);
}

/* Parses a whole file held in memory (name is used in messages only) over config. Nothing is
 * changed unless every line is good. Returns 0 or -1 with error. */
int
config_load_buffer(struct config *config, const char *name, const char *data, size_t len,
                   char *error, size_t errsize)
{
	char *values[CONFIG_NKEYS];
	int64_t nums[CONFIG_NKEYS];
	char section[64] = "";
	char line[CONFIG_LINE_MAX + 1];
	char msg[512];
	size_t pos = 0;
	unsigned lineno = 0;
	int ret = 0;

	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		values[i] = xstrdup(config->values[i]);
		nums[i] = config->nums[i];
	}
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
		pos = 3; /* a UTF-8 byte order mark, as some editors write */
	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t linelen = nl != NULL ? (size_t)(nl - (data + pos)) : len - pos;

		lineno++;
		if (linelen > 0 && data[pos + linelen - 1] == '\r')
			linelen--;
		if (linelen > CONFIG_LINE_MAX) {
			config_error(error, errsize, "%s:%u: line is longer than %d bytes", name,
			             lineno, CONFIG_LINE_MAX);
			ret = -1;
			break;
		}
		if (memchr(data + pos, '\0', linelen) != NULL) {
			config_error(error, errsize, "%s:%u: line contains a NUL byte", name,
			             lineno);
			ret = -1;
			break;
		}
		memcpy(line, data + pos, linelen);
		line[linelen] = '\0';
		if (config_parse_line(line, section, sizeof(section), values, nums, msg,
		                      sizeof(msg)) < 0) {
			config_error(error, errsize, "%s:%u: %s", name, lineno, msg);
			ret = -1;
			break;
		}
		pos += (nl != NULL ? (size_t)(nl - (data + pos)) + 1 : len - pos);
	}
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		if (ret == 0) {
			free(config->values[i]);
			config->values[i] = values[i];
			config->nums[i] = nums[i];
		} else {
			free(values[i]);
		}
	}
	return ret;
}

int
config_load_file(struct config *config, const char *path, char *error, size_t errsize)
{
	struct stat st;
	char *data;
	size_t len = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		config_error(error, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		config_error(error, errsize, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	/* Read to the cap plus one byte, whatever the file claims its size is. */
	data = xmalloc(CONFIG_FILE_MAX + 1);
	while (len <= CONFIG_FILE_MAX) {
		ssize_t n = read(fd, data + len, CONFIG_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			config_error(error, errsize, "%s: %s", path, strerror(errno));
			free(data);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > CONFIG_FILE_MAX) {
		config_error(error, errsize, "%s: file is larger than %d bytes", path,
		             CONFIG_FILE_MAX);
		free(data);
		return -1;
	}
	ret = config_load_buffer(config, path, data, len, error, errsize);
	free(data);
	return ret;
}

int
config_set(struct config *config, const char *key, const char *value, char *error, size_t errsize)
{
	int i = config_find_full(key);

	if (i < 0) {
		char esc[128];

		log_escape(esc, sizeof(esc), key, strlen(key));
		config_error(error, errsize, "unknown key '%s'", esc);
		return -1;
	}
	return config_store(config->values, config->nums, (size_t)i, value, error, errsize);
}

int
config_set_option(struct config *config, const char *assignment, char *error, size_t errsize)
{
	const char *eq = strchr(assignment, '=');
	char *copy, *key, *value;
	int ret;

	if (eq == NULL) {
		char esc[128];

		log_escape(esc, sizeof(esc), assignment, strlen(assignment));
		config_error(error, errsize, "option '%s' is not section.key=value", esc);
		return -1;
	}
	copy = xstrdup(assignment);
	copy[eq - assignment] = '\0';
	key = config_trim(copy);
	value = config_trim(copy + (eq - assignment) + 1);
	ret = config_set(config, key, value, error, errsize);
	free(copy);
	return ret;
}

const char *
config_get(const struct config *config, const char *key)
{
	return config->values[config_index(key)];
}

int64_t
config_get_int(const struct config *config, const char *key)
{
	size_t i = config_index(key);

	if (config_keys[i].type != CONFIG_INT)
		fatalx("config event=not-an-int key=%s", key);
	return config->nums[i];
}

int
config_get_bool(const struct config *config, const char *key)
{
	size_t i = config_index(key);

	if (config_keys[i].type != CONFIG_BOOL)
		fatalx("config event=not-a-bool key=%s", key);
	return config->nums[i] != 0;
}

size_t
config_get_list(const struct config *config, const char *key, char ***items_r)
{
	const char *p = config->values[config_index(key)];
	char **items = xcalloc(1, sizeof(*items));
	size_t n = 0;

	while (*p != '\0') {
		size_t len = strcspn(p, ", \t");

		if (len == 0) {
			p++;
			continue;
		}
		items = xrealloc(items, (n + 2) * sizeof(*items));
		items[n++] = xstrndup(p, len);
		items[n] = NULL;
		p += len;
	}
	*items_r = items;
	return n;
}

void
config_list_free(char ***items)
{
	if (*items == NULL)
		return;
	for (char **p = *items; *p != NULL; p++)
		free(*p);
	free(*items);
	*items = NULL;
}

char *
config_get_path(const struct config *config, const char *key, const char *data_dir)
{
	const char *value = config_get(config, key);

	if (value[0] == '/' || data_dir == NULL || data_dir[0] == '\0')
		return xstrdup(value);
	return xasprintf("%s/%s", data_dir, value);
}

/* Writes value so that the parser reads it back unchanged: quoted when it holds a comment
 * character, a quote, or leading/trailing blanks. */
static void
config_write_value(FILE *fp, const char *value)
{
	size_t len = strlen(value);
	bool quote = strpbrk(value, "#;\"\\") != NULL ||
	             (len > 0 &&
	              (isspace((unsigned char)value[0]) || isspace((unsigned char)value[len - 1])));

	if (len == 0)
		return;
	fputc(' ', fp);
	if (!quote) {
		fputs(value, fp);
		return;
	}
	fputc('"', fp);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', fp);
		fputc(*p, fp);
	}
	fputc('"', fp);
}

/* Writes text as '#' comment lines wrapped at 80 columns, never breaking inside the trailing
 * "(default: X)". */
static void
config_write_comment(FILE *fp, const char *text)
{
	const char *p = text, *tail = strstr(text, " (default: ");

	while (*p != '\0') {
		size_t len = strlen(p), cut = len;

		if (len > 78) {
			cut = 78;
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (tail != NULL && p + cut > tail && tail > p)
				cut = (size_t)(tail - p);
			if (cut == 0)
				cut = strcspn(p, " ");
		}
		fprintf(fp, "# %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
}

int
config_write_default(FILE *fp, const char *const *overrides)
{
	struct config *config = config_new();
	const char *section = "";
	char error[512], *comment;

	for (size_t i = 0; overrides != NULL && overrides[i] != NULL; i++) {
		if (config_set_option(config, overrides[i], error, sizeof(error)) < 0) {
			log_warnx("config event=bad-override error=\"%s\"", error);
			config_free(&config);
			return -1;
		}
	}
	fputs("# tern.conf: settings of ternd, the tern mail server.\n"
	      "#\n"
	      "# Every key is listed with what it does and its default. Syntax: [section]\n"
	      "# lines, key = value lines, comments after '#' or ';'. Values may be\n"
	      "# double-quoted. Lists are separated by commas or spaces; an empty list\n"
	      "# (\"listen =\") disables that listener. Any key can be overridden at start-up\n"
	      "# with -o section.key=value.\n",
	      fp);
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (strcmp(section, k->section) != 0) {
			section = k->section;
			fprintf(fp, "\n[%s]\n", section);
		} else {
			fputc('\n', fp);
		}
		comment =
		    xasprintf("%s (default: %s)", k->doc, k->def[0] != '\0' ? k->def : "empty");
		config_write_comment(fp, comment);
		free(comment);
		fprintf(fp, "%s =", k->name);
		config_write_value(fp, config->values[i]);
		fputc('\n', fp);
	}
	config_free(&config);
	if (fflush(fp) != 0 || ferror(fp))
		return -1;
	return 0;
}
