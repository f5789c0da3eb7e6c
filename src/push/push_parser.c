/* push_parser: command lines, WATCH arguments and mailbox-name quoting of the push protocol. */
#include "push/push_parser.h"

#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	enum push_verb verb;
} push_verbs[] = {
    {"CAPA", PUSH_VERB_CAPA},   {"STARTTLS", PUSH_VERB_STARTTLS}, {"AUTH", PUSH_VERB_AUTH},
    {"WATCH", PUSH_VERB_WATCH}, {"NOOP", PUSH_VERB_NOOP},         {"LOGOUT", PUSH_VERB_LOGOUT},
};

static void
push_verb_text(const char *verb, size_t len, char *out, size_t outsize)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 1 < outsize; i++) {
		unsigned char c = (unsigned char)verb[i];

		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		out[n++] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
	}
	out[n] = '\0';
}

/* Unquotes the quoted string starting at *pp (on the opening quote) in place; *pp ends past the
 * closing quote. Returns the argument or NULL with *error_r. */
static const char *
push_parse_quoted(char **pp, const char **error_r)
{
	char *in = *pp + 1, *out = *pp + 1;
	const char *start = out;

	for (;;) {
		if (*in == '\0') {
			*error_r = "syntax error: unterminated quoted string";
			return NULL;
		}
		if (*in == '"')
			break;
		if (*in == '\\') {
			if (in[1] != '"' && in[1] != '\\') {
				*error_r =
				    "syntax error: only \\\" and \\\\ may follow a backslash";
				return NULL;
			}
			in++;
		}
		*out++ = *in++;
	}
	in++; /* the closing quote */
	if (*in != '\0' && *in != ' ') {
		*error_r = "syntax error: text after a closing quote";
		return NULL;
	}
	*out = '\0';
	*pp = in;
	return start;
}

int
push_command_parse(char *line, size_t len, struct push_command *cmd_r, const char **error_r)
{
	char *p = line, *verb;
	size_t verblen;

	memset(cmd_r, 0, sizeof(*cmd_r));
	line[len] = '\0';
	while (*p == ' ')
		p++;
	verb = p;
	verblen = 0;
	while (verblen < (size_t)(line + len - verb) && verb[verblen] != ' ')
		verblen++;
	push_verb_text(verb, verblen, cmd_r->verb_text, sizeof(cmd_r->verb_text));
	if (len > PUSH_LINE_MAX) {
		*error_r = "line too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f) {
			*error_r = "syntax error: control character in the line";
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(push_verbs) / sizeof(push_verbs[0]); i++) {
		if (strlen(push_verbs[i].name) == verblen &&
		    strncasecmp(push_verbs[i].name, verb, verblen) == 0)
			cmd_r->verb = push_verbs[i].verb;
	}
	p = verb + verblen;
	for (;;) {
		while (*p == ' ')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (cmd_r->nargs == PUSH_ARGS_MAX) {
			*error_r = "syntax error: too many arguments";
			return -1;
		}
		if (*p == '"') {
			const char *arg = push_parse_quoted(&p, error_r);

			if (arg == NULL)
				return -1;
			cmd_r->quoted[cmd_r->nargs] = true;
			cmd_r->args[cmd_r->nargs++] = arg;
			continue;
		}
		cmd_r->args[cmd_r->nargs++] = p;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	/* The verb ends where the first separator was written over. */
	verb[verblen] = '\0';
	return 0;
}

/* Parses a decimal UID: 1 to 10 digits, at most 4294967295. Returns 0 or -1. */
static int
push_parse_uid(const char *s, uint32_t *uid_r)
{
	uint64_t n = 0;
	size_t len = strlen(s);

	if (len == 0 || len > 10)
		return -1;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	if (n > UINT32_MAX)
		return -1;
	*uid_r = (uint32_t)n;
	return 0;
}

int
push_watch_parse(const struct push_command *cmd, struct push_watch *watch_r, const char **error_r)
{
	size_t nnames = cmd->nargs;

	memset(watch_r, 0, sizeof(*watch_r));
	for (size_t i = 0; i < cmd->nargs; i++) {
		if (cmd->quoted[i] || strcasecmp(cmd->args[i], "SINCE") != 0)
			continue;
		if (i + 2 != cmd->nargs) {
			*error_r = "syntax: WATCH [mailbox ...] [SINCE uid]";
			return -1;
		}
		if (cmd->quoted[i + 1] ||
		    push_parse_uid(cmd->args[i + 1], &watch_r->since_uid) < 0) {
			*error_r = "syntax: SINCE takes a UID (0 to 4294967295)";
			return -1;
		}
		watch_r->since = true;
		nnames = i;
		break;
	}
	if (nnames > PUSH_WATCH_MAX) {
		*error_r = "too many mailboxes in one WATCH (at most 32)";
		return -1;
	}
	for (size_t i = 0; i < nnames; i++) {
		const char *name = cmd->args[i];
		size_t len = strlen(name);
		bool dup = false;

		if (len == 0 || len > PUSH_MAILBOX_NAME_MAX || !push_utf8_valid(name, len)) {
			*error_r = "syntax error: a mailbox name is 1 to 255 octets of UTF-8";
			return -1;
		}
		if (strcasecmp(name, "INBOX") == 0)
			name = "INBOX";
		for (size_t j = 0; j < watch_r->n; j++)
			dup = dup || strcmp(watch_r->mailboxes[j], name) == 0;
		if (!dup)
			watch_r->mailboxes[watch_r->n++] = name;
	}
	if (watch_r->n == 0)
		watch_r->mailboxes[watch_r->n++] = "INBOX";
	return 0;
}

bool
push_name_is_atom(const char *name)
{
	if (name[0] == '\0' || strcasecmp(name, "SINCE") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
			return false;
	}
	return true;
}

size_t
push_name_quote(const char *name, char *out, size_t outsize)
{
	size_t n = 0;

#define PUSH_PUT(c)                                                                                \
	do {                                                                                       \
		if (n + 1 < outsize)                                                               \
			out[n] = (c);                                                              \
		n++;                                                                               \
	} while (0)

	if (push_name_is_atom(name)) {
		for (const char *p = name; *p != '\0'; p++)
			PUSH_PUT(*p);
	} else {
		PUSH_PUT('"');
		for (const char *p = name; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				PUSH_PUT('\\');
			PUSH_PUT(*p);
		}
		PUSH_PUT('"');
	}
#undef PUSH_PUT
	if (outsize > 0)
		out[n < outsize ? n : outsize - 1] = '\0';
	return n;
}

bool
push_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		uint32_t cp;
		size_t need;

		if (*p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			need = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			need = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			need = 3;
			cp = *p & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= need)
			return false;
		for (size_t i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += need + 1;
	}
	return true;
}
