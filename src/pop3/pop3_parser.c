/* pop3_parser: POP3 command lines, message numbers and the RETR/TOP streamer. */
#include "pop3/pop3_parser.h"

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "lib/log.h"

static const struct {
	const char *name;
	enum pop3_verb verb;
} pop3_verbs[] = {
    {"USER", POP3_VERB_USER}, {"PASS", POP3_VERB_PASS}, {"APOP", POP3_VERB_APOP},
    {"AUTH", POP3_VERB_AUTH}, {"STAT", POP3_VERB_STAT}, {"LIST", POP3_VERB_LIST},
    {"RETR", POP3_VERB_RETR}, {"DELE", POP3_VERB_DELE}, {"NOOP", POP3_VERB_NOOP},
    {"RSET", POP3_VERB_RSET}, {"QUIT", POP3_VERB_QUIT}, {"TOP", POP3_VERB_TOP},
    {"UIDL", POP3_VERB_UIDL}, {"CAPA", POP3_VERB_CAPA}, {"STLS", POP3_VERB_STLS},
};

/* Copies the verb token (up to a space) upper-cased, with anything unprintable as '?'. */
static void
pop3_command_verb_text(const char *line, size_t len, char *dst, size_t dstsize)
{
	size_t i;

	for (i = 0; i < len && i + 1 < dstsize && line[i] != ' '; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		dst[i] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

/* Checks the whole line for control bytes first, then splits off the verb and arguments. */
int
pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r, const char **error_r)
{
	size_t verb_len, p, end;

	memset(cmd_r, 0, sizeof(*cmd_r));
	cmd_r->verb = POP3_VERB_UNKNOWN;
	cmd_r->args[0] = cmd_r->args[1] = "";
	pop3_command_verb_text(line, len, cmd_r->verb_text, sizeof(cmd_r->verb_text));

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f) {
			*error_r = "invalid characters in command";
			return -1;
		}
	}
	line[len] = '\0';

	for (verb_len = 0; verb_len < len && line[verb_len] != ' '; verb_len++)
		;
	for (size_t i = 0; i < sizeof(pop3_verbs) / sizeof(pop3_verbs[0]); i++) {
		if (strlen(pop3_verbs[i].name) == verb_len &&
		    strncasecmp(line, pop3_verbs[i].name, verb_len) == 0) {
			cmd_r->verb = pop3_verbs[i].verb;
			break;
		}
	}
	if (len + 2 > (cmd_r->verb == POP3_VERB_AUTH ? POP3_SASL_LINE_MAX : POP3_LINE_MAX)) {
		*error_r = "line too long";
		return -1;
	}

	if (cmd_r->verb == POP3_VERB_PASS) {
		/* RFC 1939 7: the password is the rest of the line, spaces and all. */
		if (verb_len < len) {
			cmd_r->args[0] = line + verb_len + 1;
			cmd_r->nargs = cmd_r->args[0][0] != '\0';
		}
		return 0;
	}

	for (end = len; end > verb_len && line[end - 1] == ' '; end--)
		;
	line[end] = '\0';
	p = verb_len;
	while (p < end) {
		size_t start, arg_len;

		while (line[p] == ' ')
			p++;
		start = p;
		while (p < end && line[p] != ' ')
			p++;
		arg_len = p - start;
		if (cmd_r->nargs == 2) {
			*error_r = "too many arguments";
			return -1;
		}
		/* AUTH's initial response is a SASL line, not an argument in RFC 2449's sense, and
		 * a user name is an address that may well be longer than 40 octets. */
		if (arg_len > POP3_ARG_MAX && cmd_r->verb != POP3_VERB_USER &&
		    !(cmd_r->verb == POP3_VERB_AUTH && cmd_r->nargs == 1)) {
			*error_r = "argument too long";
			return -1;
		}
		cmd_r->args[cmd_r->nargs++] = line + start;
		if (p < end)
			line[p++] = '\0';
	}
	return 0;
}

int
pop3_parse_uint(const char *s, uint32_t *n_r)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 10)
			return -1;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0 || n > UINT32_MAX)
		return -1;
	*n_r = (uint32_t)n;
	return 0;
}

int
pop3_parse_msgnum(const char *s, uint32_t *n_r)
{
	uint32_t n;

	if (pop3_parse_uint(s, &n) < 0 || n == 0)
		return -1;
	*n_r = n;
	return 0;
}

void
pop3_stuff_init(struct pop3_stuffer *st, bool top, uint32_t lines)
{
	memset(st, 0, sizeof(*st));
	st->top = top;
	st->lines_left = lines;
	st->line_start = true;
}

/* One input line has ended (its LF was written): TOP counts it and may stop. */
static void
pop3_stuff_line_end(struct pop3_stuffer *st)
{
	/* Empty when nothing but (possibly) the CR of its CRLF came before the LF. */
	bool empty = st->line_len == (st->prev_cr ? 1 : 0);

	st->line_len = 0;
	if (!st->top)
		return;
	if (!st->in_body) {
		if (!empty)
			return;
		st->in_body = true;
		if (st->lines_left == 0)
			st->done = true;
		return;
	}
	if (--st->lines_left == 0)
		st->done = true;
}

size_t
pop3_stuff_feed(struct pop3_stuffer *st, const char *in, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len && !st->done; i++) {
		char c = in[i];

		if (c == '\n') {
			if (!st->prev_cr) {
				out[n++] = '\r';
				st->size++;
			}
			out[n++] = '\n';
			st->size++;
			pop3_stuff_line_end(st);
			st->prev_cr = false;
			st->line_start = true;
			continue;
		}
		if (c == '.' && st->line_start)
			out[n++] = '.'; /* the stuffed dot: not part of the message size */
		out[n++] = c;
		st->size++;
		st->line_len++;
		st->prev_cr = c == '\r';
		st->line_start = false;
	}
	return n;
}

bool
pop3_stuff_done(const struct pop3_stuffer *st)
{
	return st->done;
}

size_t
pop3_stuff_finish(struct pop3_stuffer *st, char *out)
{
	size_t n = 0;

	if (!st->line_start) {
		out[n++] = '\r';
		out[n++] = '\n';
		st->line_start = true;
	}
	memcpy(out + n, ".\r\n", 3);
	return n + 3;
}

bool
pop3_stuff_filter(void *state, const char *in, size_t len, struct evbuffer *out)
{
	struct pop3_stuffer *st = state;
	struct evbuffer_iovec vec;

	if (in != NULL && (len == 0 || pop3_stuff_done(st)))
		return pop3_stuff_done(st);
	if (evbuffer_reserve_space(out, (ev_ssize_t)(in != NULL ? 2 * len : POP3_STUFF_END_MAX),
	                           &vec, 1) < 1)
		fatalx("pop3 event=stuff-oom");
	vec.iov_len = in != NULL ? pop3_stuff_feed(st, in, len, vec.iov_base)
	                         : pop3_stuff_finish(st, vec.iov_base);
	evbuffer_commit_space(out, &vec, 1);
	return pop3_stuff_done(st);
}
