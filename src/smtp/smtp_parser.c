/* smtp_parser: command lines, MAIL/RCPT paths and parameters, and the DATA decoder. */
#include "smtp/smtp_parser.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

#define SMTP_SIZE_DIGITS_MAX 20 /* RFC 1870: size-value ::= 1*20DIGIT */
#define SMTP_LABEL_MAX 63       /* RFC 1035 2.3.4 */
#define SMTP_IPV6_TEXT_MAX 45   /* INET6_ADDRSTRLEN - 1 */

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_VERB_HELO},         {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT},         {"DATA", SMTP_VERB_DATA}, {"BDAT", SMTP_VERB_BDAT},
    {"RSET", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY},         {"EXPN", SMTP_VERB_EXPN}, {"HELP", SMTP_VERB_HELP},
    {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
};

/* Replies, so every error site names one of these rather than spelling its own. */
static const struct smtp_reply reply_mail_syntax = {501, "5.5.4", "Syntax: MAIL FROM:<address>"};
static const struct smtp_reply reply_rcpt_syntax = {501, "5.5.4", "Syntax: RCPT TO:<address>"};
static const struct smtp_reply reply_bad_sender = {501, "5.1.7", "Bad sender address syntax"};
static const struct smtp_reply reply_bad_rcpt = {501, "5.1.3", "Bad recipient address syntax"};
static const struct smtp_reply reply_param_syntax = {501, "5.5.4", "Bad parameter syntax"};
static const struct smtp_reply reply_param_dup = {501, "5.5.4", "Duplicate parameter"};
static const struct smtp_reply reply_param_unknown = {555, "5.5.4", "Unsupported parameter"};
static const struct smtp_reply reply_rcpt_params = {555, "5.5.4",
                                                    "RCPT TO parameters not supported"};
static const struct smtp_reply reply_size_value = {501, "5.5.4", "Bad SIZE value"};
static const struct smtp_reply reply_body_value = {501, "5.5.4", "Bad BODY value"};
static const struct smtp_reply reply_body_binary = {555, "5.5.4", "BODY=BINARYMIME not supported"};
static const struct smtp_reply reply_auth_value = {501, "5.5.4", "Bad AUTH value"};

static bool
smtp_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
smtp_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
smtp_is_let_dig(unsigned char c)
{
	return smtp_is_alpha(c) || smtp_is_digit(c);
}

static char
smtp_ascii_upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static char
smtp_ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* RFC 5322 atext: what a Dot-string atom may hold (never 8-bit: we do not offer SMTPUTF8). */
static bool
smtp_is_atext(unsigned char c)
{
	if (smtp_is_let_dig(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Copies the verb token (up to a space) upper-cased, with anything unprintable as '?'. */
static void
smtp_command_verb_text(const char *line, size_t len, char *dst, size_t dstsize)
{
	size_t i;

	for (i = 0; i < len && i + 1 < dstsize && line[i] != ' '; i++) {
		unsigned char c = (unsigned char)line[i];

		dst[i] = (c > 0x20 && c < 0x7f) ? smtp_ascii_upper((char)c) : '?';
	}
	dst[i] = '\0';
}

/* Checks the whole line for control bytes first, then splits off and looks up the verb. */
int
smtp_command_parse(char *line, size_t len, struct smtp_command *cmd_r)
{
	size_t verb_len, start, end;

	memset(cmd_r, 0, sizeof(*cmd_r));
	cmd_r->verb = SMTP_VERB_UNKNOWN;
	cmd_r->args = "";
	smtp_command_verb_text(line, len, cmd_r->verb_text, sizeof(cmd_r->verb_text));

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	line[len] = '\0';

	for (verb_len = 0; verb_len < len && line[verb_len] != ' '; verb_len++)
		;
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (strlen(smtp_verbs[i].name) == verb_len &&
		    strncasecmp(line, smtp_verbs[i].name, verb_len) == 0) {
			cmd_r->verb = smtp_verbs[i].verb;
			break;
		}
	}

	for (start = verb_len; start < len && line[start] == ' '; start++)
		;
	for (end = len; end > start && (line[end - 1] == ' ' || line[end - 1] == '\t'); end--)
		;
	line[end] = '\0';
	cmd_r->args = line + start;
	return 0;
}

/* Dot-string = Atom *("." Atom); returns the end of the local part or NULL. */
static const char *
smtp_parse_dot_string(const char *p)
{
	for (;;) {
		const char *atom = p;

		while (smtp_is_atext((unsigned char)*p))
			p++;
		if (p == atom)
			return NULL;
		if (*p != '.')
			return p;
		p++;
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE, printable ASCII and space only. */
static const char *
smtp_parse_quoted_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (;;) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			return p + 1;
		if (c == '\\') {
			unsigned char q = (unsigned char)p[1];

			if (q < 0x20 || q > 0x7e)
				return NULL;
			p += 2;
			continue;
		}
		if (c < 0x20 || c > 0x7e)
			return NULL;
		p++;
	}
}

/* Domain = sub-domain *("." sub-domain), LDH labels of at most 63 bytes. */
static const char *
smtp_parse_domain(const char *p)
{
	for (;;) {
		const char *label = p;

		if (!smtp_is_let_dig((unsigned char)*p))
			return NULL;
		while (smtp_is_let_dig((unsigned char)*p) || *p == '-')
			p++;
		if (p[-1] == '-' || p - label > SMTP_LABEL_MAX)
			return NULL;
		if (*p != '.')
			return p;
		p++;
	}
}

/* Snum 3("." Snum) with each Snum 0..255 in at most three digits. */
static const char *
smtp_parse_ipv4(const char *p)
{
	for (int part = 0; part < 4; part++) {
		unsigned value = 0;
		int digits = 0;

		if (part > 0 && *p++ != '.')
			return NULL;
		while (smtp_is_digit((unsigned char)*p) && digits < 3) {
			value = value * 10 + (unsigned)(*p - '0');
			digits++;
			p++;
		}
		if (digits == 0 || value > 255 || smtp_is_digit((unsigned char)*p))
			return NULL;
	}
	return p;
}

/* address-literal: "[" IPv4 "]" or "[IPv6:" IPv6-addr "]"; general literals are refused. */
static const char *
smtp_parse_address_literal(const char *p)
{
	const char *rest;

	if (*p++ != '[')
		return NULL;
	rest = str_skip_prefix_ci(p, "IPv6:");
	if (rest != NULL) {
		char text[SMTP_IPV6_TEXT_MAX + 1];
		struct in6_addr addr;
		size_t n = strcspn(rest, "]");

		if (rest[n] != ']' || n == 0 || n > SMTP_IPV6_TEXT_MAX)
			return NULL;
		memcpy(text, rest, n);
		text[n] = '\0';
		if (inet_pton(AF_INET6, text, &addr) != 1)
			return NULL;
		return rest + n + 1;
	}
	p = smtp_parse_ipv4(p);
	if (p == NULL || *p != ']')
		return NULL;
	return p + 1;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), with the RFC 5321 length limits;
 * *at_r is set to the '@'. Returns the end of the mailbox or NULL. */
static const char *
smtp_parse_mailbox(const char *p, const char **at_r)
{
	const char *at, *end;

	at = *p == '"' ? smtp_parse_quoted_string(p) : smtp_parse_dot_string(p);
	if (at == NULL || *at != '@' || at - p > SMTP_LOCAL_MAX)
		return NULL;
	end = at[1] == '[' ? smtp_parse_address_literal(at + 1) : smtp_parse_domain(at + 1);
	if (end == NULL || end - (at + 1) > SMTP_DOMAIN_MAX)
		return NULL;
	*at_r = at;
	return end;
}

/* Copies the address to a terminated buffer so the grammar walkers can stop on the NUL. */
bool
smtp_address_valid(const char *address, size_t len)
{
	char buf[SMTP_PATH_MAX + 1];
	const char *at, *end;

	/* The path limit counts the angle brackets. */
	if (len == 0 || len > SMTP_PATH_MAX - 2)
		return false;
	if (memchr(address, '\0', len) != NULL)
		return false;
	memcpy(buf, address, len);
	buf[len] = '\0';
	end = smtp_parse_mailbox(buf, &at);
	return end == buf + len;
}

const char *
smtp_address_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at == NULL ? "" : at + 1;
}

/* Postfix-style leniency: any printable token, since many clients send bare names. */
bool
smtp_helo_valid(const char *arg)
{
	size_t len = 0;

	for (const char *p = arg; *p != '\0'; p++, len++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || len >= SMTP_DOMAIN_MAX)
			return false;
	}
	return len > 0;
}

/* Parses Path = "<" [ A-d-l ":" ] Mailbox ">" (or "<>" when allow_null) at *pp, fills path_r
 * with the source route dropped and the domain lower-cased, and advances *pp past the '>'. */
static int
smtp_path_parse(const char **pp, struct smtp_path *path_r, bool allow_null)
{
	const char *start = *pp, *p = *pp, *mailbox, *at, *end;
	size_t local_len, domain_len;

	memset(path_r, 0, sizeof(*path_r));
	if (*p++ != '<')
		return -1;
	if (*p == '>') {
		if (!allow_null)
			return -1;
		path_r->null_path = true;
		*pp = p + 1;
		return 0;
	}
	if (*p == '@') {
		/* A source route: accepted as RFC 5321 requires, then ignored. */
		for (;;) {
			p = smtp_parse_domain(p + 1);
			if (p == NULL)
				return -1;
			if (*p == ':')
				break;
			if (*p != ',' || p[1] != '@')
				return -1;
			p++;
		}
		p++;
	}
	mailbox = p;
	end = smtp_parse_mailbox(mailbox, &at);
	if (end == NULL || *end != '>' || (size_t)(end + 1 - start) > SMTP_PATH_MAX)
		return -1;

	local_len = (size_t)(at - mailbox);
	domain_len = (size_t)(end - (at + 1));
	memcpy(path_r->address, mailbox, local_len + 1);
	for (size_t i = 0; i < domain_len; i++)
		path_r->address[local_len + 1 + i] = smtp_ascii_lower(at[1 + i]);
	path_r->address[local_len + 1 + domain_len] = '\0';
	path_r->local_len = local_len;
	*pp = end + 1;
	return 0;
}

/* Matches "FROM:" / "TO:" and the tolerated spaces after it; NULL when absent. */
static const char *
smtp_skip_keyword(const char *args, const char *keyword)
{
	const char *p = str_skip_prefix_ci(args, keyword);

	if (p == NULL)
		return NULL;
	while (*p == ' ')
		p++;
	return p;
}

/* Splits one "keyword[=value]" parameter at *pp into its parts (copied, NUL-terminated) and
 * checks it against the esmtp-param grammar. Returns 1, 0 at the end of the line, or -1. */
static int
smtp_param_next(const char **pp, char *keyword, size_t kwsize, char *value, size_t valsize,
                bool *has_value_r)
{
	const char *p = *pp, *kw, *val;
	size_t kwlen, vallen;

	while (*p == ' ')
		p++;
	if (*p == '\0')
		return 0;
	kw = p;
	if (!smtp_is_let_dig((unsigned char)*p))
		return -1;
	while (smtp_is_let_dig((unsigned char)*p) || *p == '-')
		p++;
	kwlen = (size_t)(p - kw);
	*has_value_r = *p == '=';
	if (*has_value_r)
		p++;
	val = p;
	while ((unsigned char)*p >= 33 && (unsigned char)*p <= 126 && *p != '=')
		p++;
	vallen = (size_t)(p - val);
	if (*p != ' ' && *p != '\0')
		return -1;
	if (*has_value_r && vallen == 0)
		return -1;
	if (!*has_value_r && vallen != 0)
		return -1;
	if (kwlen >= kwsize || vallen >= valsize)
		return -1;
	memcpy(keyword, kw, kwlen);
	keyword[kwlen] = '\0';
	memcpy(value, val, vallen);
	value[vallen] = '\0';
	*pp = p;
	return 1;
}

/* SIZE=1*20DIGIT; a value too large for 64 bits saturates, so the session refuses it as too
 * big (552) rather than as bad syntax. */
static int
smtp_param_size(const char *value, uint64_t *size_r)
{
	uint64_t size = 0;
	size_t n = 0;

	for (const char *p = value; *p != '\0'; p++, n++) {
		unsigned digit;

		if (!smtp_is_digit((unsigned char)*p) || n >= SMTP_SIZE_DIGITS_MAX)
			return -1;
		digit = (unsigned)(*p - '0');
		if (size > (UINT64_MAX - digit) / 10)
			size = UINT64_MAX;
		else
			size = size * 10 + digit;
	}
	if (n == 0)
		return -1;
	*size_r = size;
	return 0;
}

/* AUTH=xtext(<mailbox> or "<>"): decoded, and refused if it decodes to control or 8-bit bytes. */
static int
smtp_param_auth(const char *value, char *auth, size_t authsize)
{
	if (smtp_xtext_decode(value, auth, authsize) < 0)
		return -1;
	for (const char *p = auth; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return -1;
	}
	return 0;
}

enum smtp_param_seen { SEEN_SIZE = 1, SEEN_BODY = 2, SEEN_AUTH = 4 };

/* Applies one MAIL parameter; returns 0 or -1 with *reply_r. */
static int
smtp_mail_param(const char *keyword, const char *value, bool has_value, unsigned *seen,
                struct smtp_mail_params *params, struct smtp_reply *reply_r)
{
	unsigned bit;

	if (strcasecmp(keyword, "SIZE") == 0)
		bit = SEEN_SIZE;
	else if (strcasecmp(keyword, "BODY") == 0)
		bit = SEEN_BODY;
	else if (strcasecmp(keyword, "AUTH") == 0)
		bit = SEEN_AUTH;
	else {
		*reply_r = reply_param_unknown;
		return -1;
	}
	if (*seen & bit) {
		*reply_r = reply_param_dup;
		return -1;
	}
	*seen |= bit;

	switch (bit) {
	case SEEN_SIZE:
		if (!has_value || smtp_param_size(value, &params->size) < 0) {
			*reply_r = reply_size_value;
			return -1;
		}
		params->size_given = true;
		return 0;
	case SEEN_BODY:
		if (has_value && strcasecmp(value, "7BIT") == 0) {
			params->body = SMTP_BODY_7BIT;
			return 0;
		}
		if (has_value && strcasecmp(value, "8BITMIME") == 0) {
			params->body = SMTP_BODY_8BITMIME;
			return 0;
		}
		/* We do not advertise BINARYMIME (RFC 3030), so it is an unsupported value. */
		*reply_r = has_value && strcasecmp(value, "BINARYMIME") == 0 ? reply_body_binary
		                                                             : reply_body_value;
		return -1;
	default:
		if (!has_value || smtp_param_auth(value, params->auth, sizeof(params->auth)) < 0) {
			*reply_r = reply_auth_value;
			return -1;
		}
		return 0;
	}
}

/* FROM:, then the reverse-path, then space-separated parameters, each failure with its reply. */
int
smtp_parse_mail(const char *args, struct smtp_path *path_r, struct smtp_mail_params *params_r,
                struct smtp_reply *reply_r)
{
	char keyword[SMTP_LINE_MAX], value[SMTP_LINE_MAX];
	const char *p;
	unsigned seen = 0;
	bool has_value;
	int ret;

	memset(path_r, 0, sizeof(*path_r));
	memset(params_r, 0, sizeof(*params_r));
	p = smtp_skip_keyword(args, "FROM:");
	if (p == NULL || *p == '\0') {
		*reply_r = reply_mail_syntax;
		return -1;
	}
	if (smtp_path_parse(&p, path_r, true) < 0 || (*p != '\0' && *p != ' ')) {
		memset(path_r, 0, sizeof(*path_r));
		*reply_r = reply_bad_sender;
		return -1;
	}
	while ((ret = smtp_param_next(&p, keyword, sizeof(keyword), value, sizeof(value),
	                              &has_value)) > 0) {
		if (smtp_mail_param(keyword, value, has_value, &seen, params_r, reply_r) < 0)
			return -1;
	}
	if (ret < 0) {
		*reply_r = reply_param_syntax;
		return -1;
	}
	return 0;
}

/* TO:, then "<Postmaster>" or a forward-path; any parameter is refused (we offer no DSN). */
int
smtp_parse_rcpt(const char *args, struct smtp_path *path_r, struct smtp_reply *reply_r)
{
	const char *p;

	memset(path_r, 0, sizeof(*path_r));
	p = smtp_skip_keyword(args, "TO:");
	if (p == NULL || *p == '\0') {
		*reply_r = reply_rcpt_syntax;
		return -1;
	}
	if (strncasecmp(p, "<postmaster>", 12) == 0 && (p[12] == '\0' || p[12] == ' ')) {
		/* RFC 5321 4.5.1: postmaster without a domain must be accepted. */
		memcpy(path_r->address, "postmaster", sizeof("postmaster"));
		path_r->local_len = strlen("postmaster");
		p += 12;
	} else if (smtp_path_parse(&p, path_r, false) < 0 || (*p != '\0' && *p != ' ')) {
		memset(path_r, 0, sizeof(*path_r));
		*reply_r = reply_bad_rcpt;
		return -1;
	}
	while (*p == ' ')
		p++;
	if (*p != '\0') {
		*reply_r = reply_rcpt_params;
		return -1;
	}
	return 0;
}

/* Value of an upper-case hex digit (RFC 3461 hexchar), or -1. */
static int
smtp_xtext_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict RFC 3461 xtext: upper-case hex only, and "+00" refused since out is a C string. */
int
smtp_xtext_decode(const char *in, char *out, size_t outsize)
{
	size_t n = 0;

	if (outsize == 0)
		return -1;
	for (const char *p = in; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (n + 1 >= outsize)
			return -1;
		if (c == '+') {
			int hi = smtp_xtext_hex(p[1]), lo;

			if (hi < 0)
				return -1;
			lo = smtp_xtext_hex(p[2]);
			/* "+00" would cut the C string short: refused. */
			if (lo < 0 || (hi == 0 && lo == 0))
				return -1;
			out[n++] = (char)(hi * 16 + lo);
			p += 2;
			continue;
		}
		if (c < 33 || c > 126 || c == '=')
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

enum smtp_data_state {
	DATA_LINE_START = 0, /* after CRLF (or at the start of data) */
	DATA_TEXT,           /* inside a line */
	DATA_CR,             /* a CR inside a line was written; is it a CRLF? */
	DATA_DOT,            /* a line-start '.' was dropped */
	DATA_DOT_CR,         /* ".\r" at a line start: held back, it may be the end */
	DATA_END,
};

void
smtp_data_init(struct smtp_data_decoder *decoder)
{
	memset(decoder, 0, sizeof(*decoder));
	decoder->state = DATA_LINE_START;
}

/* Writes one message byte that belongs to the current line. */
static void
smtp_data_emit(struct smtp_data_decoder *decoder, char *out, size_t *n, char c)
{
	out[(*n)++] = c;
	decoder->size++;
	if (++decoder->line_len > decoder->max_line)
		decoder->max_line = decoder->line_len;
}

/* Handles a byte in the middle of a line (also a line's first byte when it is not a dot). */
static void
smtp_data_text(struct smtp_data_decoder *decoder, char *out, size_t *n, char c)
{
	if (c == '\r') {
		/* Written now but counted in the line only once we know it is not a CRLF. */
		out[(*n)++] = c;
		decoder->size++;
		decoder->state = DATA_CR;
		return;
	}
	if (c == '\n')
		decoder->bare_lf = true;
	else if (c == '\0')
		decoder->nul = true;
	smtp_data_emit(decoder, out, n, c);
	decoder->state = DATA_TEXT;
}

/* Runs the byte state machine; only a CR LF "." CR LF (or "." CR LF at the start) ends data. */
size_t
smtp_data_feed(struct smtp_data_decoder *decoder, const char *in, size_t len, char *out,
               size_t *out_len_r, bool *end_r)
{
	size_t i, n = 0;

	*end_r = decoder->state == DATA_END;
	*out_len_r = 0;
	if (*end_r)
		return 0;

	for (i = 0; i < len; i++) {
		char c = in[i];

		switch (decoder->state) {
		case DATA_LINE_START:
			if (c == '.')
				decoder->state = DATA_DOT;
			else
				smtp_data_text(decoder, out, &n, c);
			break;
		case DATA_TEXT:
			smtp_data_text(decoder, out, &n, c);
			break;
		case DATA_CR:
			if (c == '\n') {
				out[n++] = c;
				decoder->size++;
				decoder->line_len = 0;
				decoder->state = DATA_LINE_START;
				break;
			}
			decoder->bare_cr = true;
			if (++decoder->line_len > decoder->max_line)
				decoder->max_line = decoder->line_len;
			smtp_data_text(decoder, out, &n, c);
			break;
		case DATA_DOT:
			if (c == '\r')
				decoder->state = DATA_DOT_CR;
			else
				smtp_data_text(decoder, out, &n, c);
			break;
		case DATA_DOT_CR:
			if (c == '\n') {
				decoder->state = DATA_END;
				*end_r = true;
				*out_len_r = n;
				return i + 1;
			}
			/* The held-back CR was a bare one: it is message text after all. */
			decoder->bare_cr = true;
			smtp_data_emit(decoder, out, &n, '\r');
			smtp_data_text(decoder, out, &n, c);
			break;
		default:
			break;
		}
	}
	*out_len_r = n;
	return i;
}
