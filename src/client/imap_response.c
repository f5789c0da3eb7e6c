/* imap_response: tokenizing IMAP server responses held whole in memory. Every token stays inside
 * [p, end) of its parser, whatever the bytes are; see imap_response.h for the buffer layout. */
#include "client/imap_response.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void
imap_response_init(struct imap_parser *ps, char *buf, size_t len)
{
	ps->p = buf;
	ps->end = buf + len;
}

struct imap_tok
imap_response_next(struct imap_parser *ps)
{
	struct imap_tok t = {IMAP_TOK_END, NULL, 0};
	char *p = ps->p;

	while (p < ps->end && *p == ' ')
		p++;
	t.s = p;
	if (p == ps->end) {
		ps->p = p;
		return t;
	}
	if (*p == '(' || *p == ')') {
		t.type = *p == '(' ? IMAP_TOK_LPAREN : IMAP_TOK_RPAREN;
		ps->p = p + 1;
		return t;
	}
	if (*p == '"') {
		char *o = ++p;

		t.s = o;
		for (; p < ps->end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < ps->end)
				p++;
			*o++ = *p;
		}
		t.type = p < ps->end ? IMAP_TOK_STRING : IMAP_TOK_BAD;
		t.len = (size_t)(o - t.s);
		ps->p = p < ps->end ? p + 1 : p;
		return t;
	}
	if (*p == '{') {
		char *nl = memchr(p, '\n', (size_t)(ps->end - p)), *q;
		unsigned long long n = strtoull(p + 1, &q, 10);

		t.type = IMAP_TOK_BAD;
		if (nl == NULL || (*q != '}' && *q != '+') || n > (size_t)(ps->end - nl - 1))
			return t;
		t.type = IMAP_TOK_STRING;
		t.s = nl + 1;
		t.len = (size_t)n;
		ps->p = nl + 1 + n;
		return t;
	}
	int depth = 0;
	for (; p < ps->end; p++) {
		if (*p == '[')
			depth++;
		else if (*p == ']' && depth > 0)
			depth--;
		else if (depth == 0 && (*p == '\0' || strchr(" ()\"\r\n", *p) != NULL))
			break;
	}
	/* An empty atom (a stray NUL, CR or LF) would not advance: it ends the parse. */
	t.type = p > t.s ? IMAP_TOK_ATOM : IMAP_TOK_BAD;
	t.len = (size_t)(p - t.s);
	ps->p = p;
	return t;
}

bool
imap_response_tok_is(const struct imap_tok *t, const char *word)
{
	return t->type == IMAP_TOK_ATOM && t->len == strlen(word) &&
	       strncasecmp(t->s, word, t->len) == 0;
}

bool
imap_response_tok_number(const struct imap_tok *t, uint64_t max, uint64_t *n_r)
{
	uint64_t n = 0;

	if (t->type != IMAP_TOK_ATOM || t->len == 0 || t->len > 20)
		return false;
	for (size_t i = 0; i < t->len; i++) {
		if (!isdigit((unsigned char)t->s[i]) || n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(t->s[i] - '0');
	}
	*n_r = n;
	return n <= max;
}

bool
imap_response_skip_value(struct imap_parser *ps, struct imap_tok t)
{
	int depth = t.type == IMAP_TOK_LPAREN ? 1 : 0;

	if (t.type == IMAP_TOK_END || t.type == IMAP_TOK_BAD || t.type == IMAP_TOK_RPAREN)
		return false;
	while (depth > 0) {
		t = imap_response_next(ps);
		if (t.type == IMAP_TOK_END || t.type == IMAP_TOK_BAD)
			return false;
		depth += t.type == IMAP_TOK_LPAREN ? 1 : t.type == IMAP_TOK_RPAREN ? -1 : 0;
	}
	return true;
}

void
imap_response_caps(struct imap_parser *ps, struct imap_caps *caps_r)
{
	struct imap_tok t;

	memset(caps_r, 0, sizeof(*caps_r));
	while ((t = imap_response_next(ps)).type == IMAP_TOK_ATOM) {
		caps_r->starttls |= imap_response_tok_is(&t, "STARTTLS");
		caps_r->logindisabled |= imap_response_tok_is(&t, "LOGINDISABLED");
		caps_r->auth_plain |= imap_response_tok_is(&t, "AUTH=PLAIN");
		caps_r->sasl_ir |= imap_response_tok_is(&t, "SASL-IR");
		caps_r->uidplus |= imap_response_tok_is(&t, "UIDPLUS");
		caps_r->literal_plus |= imap_response_tok_is(&t, "LITERAL+");
	}
}

void
imap_response_code(struct imap_parser *ps, struct imap_resp_code *code_r)
{
	struct imap_parser inner;
	struct imap_tok t = imap_response_next(ps), name;
	uint64_t n;

	memset(code_r, 0, sizeof(*code_r));
	if (t.type != IMAP_TOK_ATOM || t.len < 2 || t.s[0] != '[')
		return;
	inner.p = t.s + 1;
	inner.end = memchr(t.s, ']', t.len);
	if (inner.end == NULL)
		return;
	name = imap_response_next(&inner);
	if (imap_response_tok_is(&name, "CAPABILITY")) {
		imap_response_caps(&inner, &code_r->caps);
		code_r->has_caps = true;
	} else if (imap_response_tok_is(&name, "UIDVALIDITY")) {
		t = imap_response_next(&inner);
		if (imap_response_tok_number(&t, UINT32_MAX, &n) && n > 0) {
			code_r->uidvalidity = (uint32_t)n;
			code_r->has_uidvalidity = true;
		}
	}
}

int
imap_response_fetch(struct imap_parser *ps, struct imap_fetch *fetch_r)
{
	struct imap_tok t = imap_response_next(ps);
	uint64_t n;

	memset(fetch_r, 0, sizeof(*fetch_r));
	fetch_r->body.type = IMAP_TOK_END;
	if (t.type != IMAP_TOK_LPAREN)
		return -1;
	while ((t = imap_response_next(ps)).type == IMAP_TOK_ATOM) {
		struct imap_tok v = imap_response_next(ps);

		if (imap_response_tok_is(&t, "UID")) {
			if (!imap_response_tok_number(&v, UINT32_MAX, &n) || n == 0)
				return -1;
			fetch_r->uid = (uint32_t)n;
			fetch_r->has_uid = true;
		} else if (imap_response_tok_is(&t, "RFC822.SIZE")) {
			if (!imap_response_tok_number(&v, UINT64_MAX, &fetch_r->size))
				return -1;
			fetch_r->has_size = true;
		} else if (imap_response_tok_is(&t, "FLAGS")) {
			if (v.type != IMAP_TOK_LPAREN)
				return -1;
			fetch_r->has_flags = true;
			while ((v = imap_response_next(ps)).type == IMAP_TOK_ATOM)
				fetch_r->seen |= imap_response_tok_is(&v, "\\Seen");
			if (v.type != IMAP_TOK_RPAREN)
				return -1;
		} else if (imap_response_tok_is(&t, "BODY[]")) {
			fetch_r->body = v;
			if (v.type != IMAP_TOK_STRING && !imap_response_tok_is(&v, "NIL"))
				return -1;
		} else if (!imap_response_skip_value(ps, v)) {
			return -1;
		}
	}
	return t.type == IMAP_TOK_RPAREN ? 0 : -1;
}

long
imap_response_literal_at_end(const char *line, size_t len, uint64_t *n_r)
{
	size_t i;
	uint64_t n = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	i = len - 1;
	if (line[i - 1] == '+')
		i--;
	size_t digits_end = i;
	while (i > 0 && isdigit((unsigned char)line[i - 1]))
		i--;
	if (i == 0 || line[i - 1] != '{' || i == digits_end)
		return -1;
	for (size_t k = i; k < digits_end; k++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -2;
		n = n * 10 + (uint64_t)(line[k] - '0');
	}
	*n_r = n;
	return (long)(i - 1);
}

bool
imap_response_literal_is_body(const char *line, size_t at)
{
	size_t k = at > 0 && line[at - 1] == ' ' ? at - 1 : at;

	return k >= 6 && strncasecmp(line + k - 6, "BODY[]", 6) == 0;
}
