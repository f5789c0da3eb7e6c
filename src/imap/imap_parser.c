/* imap_parser: IMAP command lines (RFC 3501 9, LITERAL+ RFC 7888) read one byte at a time. */
#include "imap/imap_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/util.h"

enum imap_parser_state {
	S_START = 0, /* before a tag; blank lines skipped */
	S_START_CR,  /* a CR before a tag */
	S_TAG,
	S_NAME,  /* the command name, and the sub-command after UID */
	S_ARG,   /* an argument must start here */
	S_AFTER, /* after an argument: SP, ')' or the end of the line */
	S_ATOM,
	S_QUOTED,
	S_QUOTED_ESC,
	S_LIT_LEN,   /* after '{' */
	S_LIT_PLUS,  /* after "{n+" */
	S_LIT_CR,    /* after '}' */
	S_LIT_LF,    /* after "}\r" */
	S_LITERAL,   /* literal data (counted by lit_remaining) */
	S_SECTION,   /* FETCH: inside [...] */
	S_SECTION_Q, /* a quoted string inside [...] */
	S_SECTION_QESC,
	S_SECTION_END, /* after ']' */
	S_PARTIAL,     /* inside <...> */
	S_CR,          /* a CR ending the line */
	S_SKIP,        /* after an error: the rest of the line */
	S_DISCARD,     /* after an error: literal data to drop */
	S_LINE,        /* imap_parser_expect_line() */
	S_DEAD,
};

/* A node of the argument tree as it is read; turned into struct imap_arg at the end. */
struct imap_node {
	enum imap_arg_type type;
	int32_t parent;     /* index of the enclosing list, -1 at the top */
	uint32_t nchildren; /* lists */
	uint32_t block;     /* lists: where the members go in the final array */
	uint32_t fill;      /* lists: members placed so far */
	uint32_t final;     /* this node's index in the final array */
	size_t off, len;    /* text in buf */
	size_t sec_off, sec_len;
	uint64_t number;
	bool literal_plus, streamed, partial, binary;
	uint32_t partial_offset, partial_size;
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum imap_parser_state state;
	bool dead, have_command;

	char tag[IMAP_TAG_MAX + 1];
	size_t tag_len;
	bool tag_done;
	char name[IMAP_NAME_MAX + 1];
	size_t name_len;
	bool uid, fetch, append;

	char *buf; /* token text, NUL after each token */
	size_t buf_len, buf_cap;
	struct imap_node *nodes;
	size_t nnodes, nodes_cap, ntop;
	struct imap_arg *args;
	size_t args_cap;

	int32_t cur_list; /* innermost open list, -1 at the top */
	size_t depth;
	bool list_opened; /* S_ARG right after '(': ')' may follow */
	size_t line_len;
	uint64_t cmd_bytes;
	uint64_t discarded;

	int32_t tok;       /* node being read */
	size_t sec_depth;  /* parentheses inside [...] */
	int partial_stage; /* 0: offset, 1: size */
	uint64_t pnum;
	unsigned pdigits;

	uint64_t lit_size, lit_remaining;
	unsigned lit_digits;
	bool lit_plus, lit_stream, lit8;

	int sk; /* S_SKIP: progress through a trailing "{n+}\r\n" */
	uint64_t sk_n;
	uint64_t discard_remaining;

	struct imap_parse_error err;
	struct imap_command cmd;
	const char *chunk;
	size_t chunk_len;
};

#define DEF_LINE_MAX 65536
#define DEF_LITERAL_MAX 65536
#define DEF_COMMAND_MAX (1024 * 1024)
#define DEF_MAX_ARGS 10000
#define DEF_MAX_DEPTH 32
#define DEF_DISCARD_MAX (4 * 1024 * 1024)
#define DEF_STREAM_MAX (64 * 1024 * 1024)
#define KEEP_BUF 16384 /* buffers above this are released between commands */
#define KEEP_NODES 256

static void
imap_parser_limits_fill(struct imap_parser_limits *lim, const struct imap_parser_limits *in)
{
	if (in != NULL)
		*lim = *in;
	else
		memset(lim, 0, sizeof(*lim));
	if (lim->line_max == 0)
		lim->line_max = DEF_LINE_MAX;
	if (lim->literal_max == 0)
		lim->literal_max = DEF_LITERAL_MAX;
	if (lim->command_max == 0)
		lim->command_max = DEF_COMMAND_MAX;
	if (lim->max_args == 0)
		lim->max_args = DEF_MAX_ARGS;
	if (lim->max_args > INT32_MAX / 2)
		lim->max_args = INT32_MAX / 2;
	if (lim->max_depth == 0)
		lim->max_depth = DEF_MAX_DEPTH;
	if (lim->discard_max == 0)
		lim->discard_max = DEF_DISCARD_MAX;
	if (lim->stream_max == 0)
		lim->stream_max = DEF_STREAM_MAX;
}

/* The text buffer never needs more than this: every stored byte stands for a counted input
 * byte, plus one NUL per token. */
static size_t
imap_parser_buf_bound(const struct imap_parser_limits *lim)
{
	size_t text = lim->command_max > lim->line_max ? lim->command_max : lim->line_max;

	return text + lim->max_args + 2;
}

size_t
imap_parser_memory_bound(const struct imap_parser_limits *limits)
{
	struct imap_parser_limits lim;

	imap_parser_limits_fill(&lim, limits);
	return sizeof(struct imap_parser) + imap_parser_buf_bound(&lim) +
	       lim.max_args * (sizeof(struct imap_node) + sizeof(struct imap_arg));
}

size_t
imap_parser_memory(const struct imap_parser *p)
{
	return sizeof(*p) + p->buf_cap + p->nodes_cap * sizeof(struct imap_node) +
	       p->args_cap * sizeof(struct imap_arg);
}

struct imap_parser *
imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));

	imap_parser_limits_fill(&p->lim, limits);
	p->state = S_START;
	p->cur_list = -1;
	p->tok = -1;
	return p;
}

void
imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	free(p->buf);
	free(p->nodes);
	free(p->args);
	free(p);
	*pp = NULL;
}

/* Makes room for n more bytes of text, doubling up to the bound. */
static void
imap_parser_buf_reserve(struct imap_parser *p, size_t n)
{
	size_t need = p->buf_len + n, bound = imap_parser_buf_bound(&p->lim), cap;

	if (need <= p->buf_cap)
		return;
	cap = p->buf_cap < 256 ? 256 : p->buf_cap * 2;
	if (cap < need)
		cap = need;
	if (cap > bound)
		cap = bound;
	if (cap < need)
		abort(); /* the limits make this impossible */
	p->buf = xrealloc(p->buf, cap);
	p->buf_cap = cap;
}

static void
imap_parser_put(struct imap_parser *p, char c)
{
	imap_parser_buf_reserve(p, 1);
	p->buf[p->buf_len++] = c;
}

/* Drops the current command's nodes and text, releasing buffers grown past their usual size. */
static void
imap_parser_clear(struct imap_parser *p)
{
	p->have_command = false;
	p->nnodes = 0;
	p->ntop = 0;
	p->buf_len = 0;
	if (p->buf_cap > KEEP_BUF) {
		free(p->buf);
		p->buf = NULL;
		p->buf_cap = 0;
	}
	if (p->nodes_cap > KEEP_NODES) {
		free(p->nodes);
		p->nodes = NULL;
		p->nodes_cap = 0;
	}
	if (p->args_cap > KEEP_NODES) {
		free(p->args);
		p->args = NULL;
		p->args_cap = 0;
	}
}

void
imap_parser_reset_command(struct imap_parser *p)
{
	/* Only a finished command: mid-command the nodes are still being filled. */
	if (p->have_command)
		imap_parser_clear(p);
}

void
imap_parser_wipe(struct imap_parser *p)
{
	if (p->buf != NULL)
		explicit_bzero(p->buf, p->buf_cap);
}

void
imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *limits)
{
	if (p->state != S_START || p->dead)
		return;
	imap_parser_clear(p);
	free(p->buf);
	free(p->nodes);
	free(p->args);
	p->buf = NULL;
	p->nodes = NULL;
	p->args = NULL;
	p->buf_cap = p->nodes_cap = p->args_cap = 0;
	imap_parser_limits_fill(&p->lim, limits);
}

void
imap_parser_set_utf8(struct imap_parser *p, bool on)
{
	p->lim.utf8 = on;
}

/* Starts a new command at its first byte. */
static void
imap_parser_begin(struct imap_parser *p)
{
	imap_parser_clear(p);
	p->tag_len = 0;
	p->tag[0] = '\0';
	p->tag_done = false;
	p->name_len = 0;
	p->name[0] = '\0';
	p->uid = p->fetch = p->append = false;
	p->cur_list = -1;
	p->depth = 0;
	p->list_opened = false;
	p->line_len = 0;
	p->cmd_bytes = 0;
	p->discarded = 0;
	p->tok = -1;
	p->lit_size = 0;
}

/* Records an error; the offending byte is not consumed and the rest of the line is skipped. */
static int
imap_parser_fail(struct imap_parser *p, enum imap_parse_error_kind kind, const char *text)
{
	static const char *const codes[] = {NULL, "TOOBIG", "LIMIT"};

	p->err.kind = kind;
	p->err.resp_code = codes[kind];
	p->err.reply = "BAD";
	p->err.text = text;
	p->err.tag = p->tag_done ? p->tag : NULL;
	p->err.fatal = false;
	p->state = S_SKIP;
	p->sk = 0;
	return IMAP_PARSE_ERROR;
}

/* An error the connection cannot recover from. */
static int
imap_parser_fatal(struct imap_parser *p, enum imap_parse_error_kind kind, const char *text)
{
	imap_parser_fail(p, kind, text);
	p->err.fatal = true;
	p->dead = true;
	p->state = S_DEAD;
	return IMAP_PARSE_ERROR;
}

/* Adds a node under the current list; -1 (error set) over max_args. */
static int
imap_parser_node(struct imap_parser *p, enum imap_arg_type type)
{
	struct imap_node *n;

	if (p->nnodes >= p->lim.max_args)
		return imap_parser_fail(p, IMAP_PARSE_ERR_LIMIT, "Too many arguments");
	if (p->nnodes == p->nodes_cap) {
		size_t cap = p->nodes_cap < 16 ? 16 : p->nodes_cap * 2;

		if (cap > p->lim.max_args)
			cap = p->lim.max_args;
		p->nodes = xrealloc(p->nodes, cap * sizeof(*p->nodes));
		p->nodes_cap = cap;
	}
	n = &p->nodes[p->nnodes];
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->parent = p->cur_list;
	n->off = p->buf_len;
	if (p->cur_list >= 0)
		p->nodes[p->cur_list].nchildren++;
	else
		p->ntop++;
	p->tok = (int32_t)p->nnodes++;
	return 0;
}

/* Lays the nodes out so that each list's members are contiguous, and fills in the command. */
static void
imap_parser_build(struct imap_parser *p)
{
	size_t n = p->nnodes, pos = p->ntop, top = 0;

	if (n > p->args_cap) {
		free(p->args);
		p->args = xcalloc(n, sizeof(*p->args));
		p->args_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		if (p->nodes[i].type == IMAP_ARG_LIST) {
			p->nodes[i].block = (uint32_t)pos;
			p->nodes[i].fill = 0;
			pos += p->nodes[i].nchildren;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int32_t par = p->nodes[i].parent;

		if (par < 0)
			p->nodes[i].final = (uint32_t)top++;
		else
			p->nodes[i].final = p->nodes[par].block + p->nodes[par].fill++;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_node *nd = &p->nodes[i];
		struct imap_arg *a = &p->args[nd->final];

		memset(a, 0, sizeof(*a));
		a->type = nd->type;
		a->str = nd->type == IMAP_ARG_LIST ? "" : p->buf + nd->off;
		a->len = nd->len;
		a->number = nd->number;
		a->literal_plus = nd->literal_plus;
		a->streamed = nd->streamed;
		a->binary = nd->binary;
		if (nd->type == IMAP_ARG_LIST) {
			a->list_count = nd->nchildren;
			a->list = nd->nchildren > 0 ? &p->args[nd->block] : NULL;
		}
		if (nd->type == IMAP_ARG_SECTION) {
			a->section = p->buf + nd->sec_off;
			a->section_len = nd->sec_len;
			a->partial = nd->partial;
			a->partial_offset = nd->partial_offset;
			a->partial_size = nd->partial_size;
		}
	}
	p->cmd.tag = p->tag;
	p->cmd.name = p->name;
	p->cmd.uid = p->uid;
	p->cmd.args = n > 0 ? p->args : NULL;
	p->cmd.nargs = p->ntop;
	p->have_command = true;
	p->state = S_START;
}

static bool
imap_is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return c != '(' && c != ')' && c != '{' && c != '"';
}

static bool
imap_is_tag_char(unsigned char c)
{
	return imap_is_atom_char(c) && c != '+' && c != '*' && c != '%' && c != '\\';
}

static bool
imap_is_name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* Ends the atom being read: NUL-terminates it and decides whether it is a number or NIL. */
static void
imap_parser_atom_done(struct imap_parser *p)
{
	struct imap_node *n = &p->nodes[p->tok];
	const char *s = p->buf + n->off;

	n->len = p->buf_len - n->off;
	imap_parser_put(p, '\0');
	s = p->buf + n->off;
	if (n->len == 3 && strcasecmp(s, "NIL") == 0) {
		n->type = IMAP_ARG_NIL;
	} else if (n->len <= 20) {
		uint64_t v = 0;
		size_t i;

		for (i = 0; i < n->len && s[i] >= '0' && s[i] <= '9'; i++) {
			unsigned d = (unsigned)(s[i] - '0');

			if (v > (UINT64_MAX - d) / 10)
				break;
			v = v * 10 + d;
		}
		if (i == n->len) {
			n->type = IMAP_ARG_NUMBER;
			n->number = v;
		}
	}
	p->state = S_AFTER;
}

/* Ends a section token at its ']' or partial. */
static void
imap_parser_section_done(struct imap_parser *p)
{
	p->state = S_AFTER;
}

/* The line (or the command) ended at LF. */
static int
imap_parser_line_end(struct imap_parser *p)
{
	if (p->cur_list >= 0)
		return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Unbalanced parentheses");
	imap_parser_build(p);
	return IMAP_PARSE_COMMAND;
}

/* True when node i is the atom word. */
static bool
imap_parser_node_is(const struct imap_parser *p, int i, const char *word)
{
	const struct imap_node *n = &p->nodes[i];
	size_t len = strlen(word);

	return n->type == IMAP_ARG_ATOM && n->len == len &&
	       strncasecmp(p->buf + n->off, word, len) == 0;
}

/* True when the literal being read is the first member of a list that follows the atom UTF8 at
 * the same level: RFC 6855's utf8-literal, "UTF8" SP "(" literal8 ")". */
static bool
imap_parser_utf8_literal(const struct imap_parser *p)
{
	int list = p->nodes[p->tok].parent;

	return list > 0 && p->tok == list + 1 &&
	       p->nodes[list - 1].parent == p->nodes[list].parent &&
	       imap_parser_node_is(p, list - 1, "UTF8");
}

/* True when the literal being started is message data of APPEND: a top-level argument other
 * than the first (the mailbox), in a CATENATE list the literal after TEXT (RFC 4469), or the
 * literal8 of "UTF8 (~{n}...)" at the top or in a CATENATE list (RFC 6855 4). */
static bool
imap_parser_message_literal(const struct imap_parser *p)
{
	const struct imap_node *n = &p->nodes[p->tok];
	int list = n->parent, cat;

	if (!p->append)
		return false;
	if (list < 0)
		return p->ntop > 1;
	if (p->tok == 0)
		return false;
	if (p->depth == 1) {
		if (p->nodes[p->tok - 1].parent == list &&
		    imap_parser_node_is(p, p->tok - 1, "TEXT"))
			return true;
		return p->nodes[list].parent < 0 && imap_parser_utf8_literal(p);
	}
	/* CATENATE (... UTF8 (~{n}...) ...) */
	if (p->depth != 2 || !imap_parser_utf8_literal(p))
		return false;
	cat = p->nodes[list].parent;
	return cat > 0 && p->nodes[cat].parent < 0 && p->nodes[cat - 1].parent < 0 &&
	       imap_parser_node_is(p, cat - 1, "CATENATE");
}

/* The literal header's LF was consumed: check the limits and start reading its data. */
static int
imap_parser_literal_start(struct imap_parser *p)
{
	struct imap_node *n = &p->nodes[p->tok];
	bool stream = imap_parser_message_literal(p) && p->lim.stream_min > 0 &&
	              p->lit_size >= p->lim.stream_min;
	bool too_big;

	p->line_len = 0;
	if (stream)
		too_big = p->lit_size > p->lim.stream_max;
	else
		too_big = p->lit_size > p->lim.literal_max ||
		          p->cmd_bytes + p->lit_size > p->lim.command_max;
	if (too_big) {
		imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG, "Literal too large");
		if (!p->lit_plus) {
			/* The client waits for "+" and sends nothing: the command is over. */
			p->err.reply = "NO";
			p->state = S_START;
			return IMAP_PARSE_ERROR;
		}
		if (p->lit_size > p->lim.discard_max - p->discarded)
			return imap_parser_fatal(p, IMAP_PARSE_ERR_TOOBIG, "Literal too large");
		p->discard_remaining = p->lit_size;
		p->state = S_DISCARD;
		return IMAP_PARSE_ERROR;
	}
	n->literal_plus = p->lit_plus;
	n->streamed = stream;
	n->binary = p->lit8;
	n->len = (size_t)p->lit_size;
	n->off = p->buf_len;
	if (!stream)
		imap_parser_buf_reserve(p, (size_t)p->lit_size + 1);
	p->lit_stream = stream;
	p->lit_remaining = p->lit_size;
	p->state = S_LITERAL;
	return p->lit_plus ? 0 : IMAP_PARSE_LITERAL_CONTINUE;
}

/* Takes literal data from in; returns 0 or an event, *used_r the bytes taken. */
static int
imap_parser_literal_bytes(struct imap_parser *p, const char *in, size_t len, size_t *used_r)
{
	size_t n = len < p->lit_remaining ? len : (size_t)p->lit_remaining;
	const char *nul = p->lim.literal_nul || p->lit8 ? NULL : memchr(in, '\0', n);

	*used_r = 0;
	if (nul == in) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "NUL in literal");
		if (p->lit_remaining > p->lim.discard_max - p->discarded)
			return imap_parser_fatal(p, IMAP_PARSE_ERR_SYNTAX, "NUL in literal");
		p->discard_remaining = p->lit_remaining;
		p->state = S_DISCARD;
		return IMAP_PARSE_ERROR;
	}
	if (nul != NULL)
		n = (size_t)(nul - in);
	p->lit_remaining -= n;
	*used_r = n;
	if (p->lit_stream) {
		p->chunk = in;
		p->chunk_len = n;
		return IMAP_PARSE_LITERAL_DATA;
	}
	memcpy(p->buf + p->buf_len, in, n);
	p->buf_len += n;
	p->cmd_bytes += n;
	return 0;
}

/* The literal's last byte arrived. */
static void
imap_parser_literal_done(struct imap_parser *p)
{
	imap_parser_put(p, '\0');
	p->state = S_AFTER;
}

/* "{" was read (after "~" for a literal8, RFC 3516): the size follows. */
static void
imap_parser_literal_header(struct imap_parser *p, bool lit8)
{
	p->lit_size = 0;
	p->lit_digits = 0;
	p->lit_plus = false;
	p->lit8 = lit8;
	p->state = S_LIT_LEN;
}

/* Starts an argument at c (S_ARG). Returns 0 to go on (consumed or not via *consume_r). */
static int
imap_parser_arg_start(struct imap_parser *p, unsigned char c, bool *consume_r)
{
	bool opened = p->list_opened;

	p->list_opened = false;
	switch (c) {
	case '(':
		if (p->depth >= p->lim.max_depth)
			return imap_parser_fail(p, IMAP_PARSE_ERR_LIMIT, "Too deeply nested");
		if (imap_parser_node(p, IMAP_ARG_LIST) < 0)
			return IMAP_PARSE_ERROR;
		p->cur_list = p->tok;
		p->depth++;
		p->list_opened = true;
		return 0;
	case ')':
		if (!opened)
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Missing argument");
		p->cur_list = p->nodes[p->cur_list].parent;
		p->depth--;
		p->state = S_AFTER;
		return 0;
	case '"':
		if (imap_parser_node(p, IMAP_ARG_STRING) < 0)
			return IMAP_PARSE_ERROR;
		p->state = S_QUOTED;
		return 0;
	case '{':
		if (imap_parser_node(p, IMAP_ARG_LITERAL) < 0)
			return IMAP_PARSE_ERROR;
		imap_parser_literal_header(p, false);
		return 0;
	default:
		if (!imap_is_atom_char(c)) {
			if (c == ' ' || c == '\r' || c == '\n')
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
				                        "Missing argument");
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "Invalid character in argument");
		}
		if (imap_parser_node(p, IMAP_ARG_ATOM) < 0)
			return IMAP_PARSE_ERROR;
		p->state = S_ATOM;
		*consume_r = false;
		return 0;
	}
}

/* The command name ended (at SP, CR or LF). */
static int
imap_parser_name_done(struct imap_parser *p, unsigned char c)
{
	if (p->name_len == 0)
		return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Missing command");
	if (c == ' ' && !p->uid && strcmp(p->name, "UID") == 0) {
		p->uid = true;
		p->name_len = 0;
		p->name[0] = '\0';
		return 0;
	}
	/* NOTIFY's MessageNew takes fetch-att too (RFC 5465 8). */
	p->fetch = strcmp(p->name, "FETCH") == 0 || strcmp(p->name, "NOTIFY") == 0;
	p->append = strcmp(p->name, "APPEND") == 0;
	p->state = c == ' ' ? S_ARG : S_AFTER;
	return 0;
}

/* Accumulates a partial's number; false when it grows past 32 bits. */
static bool
imap_parser_pdigit(struct imap_parser *p, unsigned char c)
{
	p->pnum = p->pnum * 10 + (uint64_t)(c - '0');
	return ++p->pdigits <= 10 && p->pnum <= UINT32_MAX;
}

/* One byte in a line state. Returns 0 to go on or an event; *consume_r false means the byte
 * is to be looked at again in the new state (or, with an error, left unconsumed). */
static int
imap_parser_step(struct imap_parser *p, unsigned char c, bool *consume_r)
{
	struct imap_node *n;

	*consume_r = true;
	switch (p->state) {
	case S_START:
		if (c == '\r') {
			p->state = S_START_CR;
		} else if (c != '\n') {
			imap_parser_begin(p);
			p->state = S_TAG;
			*consume_r = false;
		}
		return 0;
	case S_START_CR:
		if (c != '\n') {
			imap_parser_begin(p);
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Bare CR");
		}
		p->state = S_START;
		return 0;
	case S_TAG:
		if (c == ' ' || c == '\r' || c == '\n') {
			if (p->tag_len == 0)
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Missing tag");
			p->tag_done = true;
			if (c != ' ')
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
				                        "Missing command");
			p->state = S_NAME;
			return 0;
		}
		if (!imap_is_tag_char(c))
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Invalid tag");
		if (p->tag_len >= IMAP_TAG_MAX)
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Tag too long");
		p->tag[p->tag_len++] = (char)c;
		p->tag[p->tag_len] = '\0';
		return 0;
	case S_NAME:
		if (c == ' ' || c == '\r' || c == '\n') {
			*consume_r = c == ' ';
			return imap_parser_name_done(p, c);
		}
		if (!imap_is_name_char(c))
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Invalid command name");
		if (p->name_len >= IMAP_NAME_MAX)
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Command name too long");
		p->name[p->name_len++] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
		p->name[p->name_len] = '\0';
		return 0;
	case S_ARG:
		return imap_parser_arg_start(p, c, consume_r);
	case S_AFTER:
		if (c == ' ') {
			p->state = S_ARG;
		} else if (c == ')') {
			if (p->cur_list < 0)
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
				                        "Unbalanced parentheses");
			p->cur_list = p->nodes[p->cur_list].parent;
			p->depth--;
		} else if (c == '\r') {
			p->state = S_CR;
		} else if (c == '\n') {
			*consume_r = p->cur_list < 0;
			return imap_parser_line_end(p);
		} else {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Missing space");
		}
		return 0;
	case S_CR:
		if (c != '\n')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Bare CR");
		*consume_r = p->cur_list < 0;
		return imap_parser_line_end(p);
	case S_ATOM:
		if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
			*consume_r = false;
			imap_parser_atom_done(p);
			return 0;
		}
		if (p->fetch && c == '[') {
			n = &p->nodes[p->tok];
			n->type = IMAP_ARG_SECTION;
			n->len = p->buf_len - n->off;
			imap_parser_put(p, '\0');
			n->sec_off = p->buf_len;
			p->sec_depth = 0;
			p->state = S_SECTION;
			return 0;
		}
		n = &p->nodes[p->tok];
		if (c == '{' && p->buf_len == n->off + 1 && p->buf[n->off] == '~') {
			/* "~{": not an atom "~" but a literal8 (RFC 3516). */
			p->buf_len = n->off;
			n->type = IMAP_ARG_LITERAL;
			imap_parser_literal_header(p, true);
			return 0;
		}
		if (!imap_is_atom_char(c))
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        c >= 0x80 ? "8-bit character in atom"
			                                  : "Invalid character in atom");
		imap_parser_put(p, (char)c);
		return 0;
	case S_QUOTED:
		if (c == '"') {
			n = &p->nodes[p->tok];
			n->len = p->buf_len - n->off;
			imap_parser_put(p, '\0');
			p->state = S_AFTER;
		} else if (c == '\\') {
			p->state = S_QUOTED_ESC;
		} else if (c == '\r' || c == '\n') {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Unterminated string");
		} else if (c == '\0') {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "NUL in string");
		} else if (c >= 0x80 && !p->lim.utf8) {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "8-bit character in string");
		} else {
			imap_parser_put(p, (char)c);
		}
		return 0;
	case S_QUOTED_ESC:
		if (c != '"' && c != '\\')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "Invalid escape in string");
		imap_parser_put(p, (char)c);
		p->state = S_QUOTED;
		return 0;
	case S_LIT_LEN:
		if (c >= '0' && c <= '9') {
			/* Saturates: the size check after CRLF refuses it. */
			if (p->lit_size <= UINT32_MAX)
				p->lit_size = p->lit_size * 10 + (uint64_t)(c - '0');
			p->lit_digits++;
			return 0;
		}
		if (p->lit_digits == 0 || (c != '+' && c != '}'))
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Invalid literal size");
		if (p->lit_size > UINT32_MAX)
			p->lit_size = UINT64_MAX / 2;
		if (c == '+')
			p->lit_plus = true;
		p->state = c == '+' ? S_LIT_PLUS : S_LIT_CR;
		return 0;
	case S_LIT_PLUS:
		if (c != '}')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Invalid literal size");
		p->state = S_LIT_CR;
		return 0;
	case S_LIT_CR:
		if (c == '\r') {
			p->state = S_LIT_LF;
			return 0;
		}
		/* fall through */
	case S_LIT_LF:
		if (c != '\n')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "Missing CRLF after literal size");
		return imap_parser_literal_start(p);
	case S_SECTION:
		if (c == ']' && p->sec_depth == 0) {
			n = &p->nodes[p->tok];
			n->sec_len = p->buf_len - n->sec_off;
			imap_parser_put(p, '\0');
			p->state = S_SECTION_END;
			return 0;
		}
		if (c == '(') {
			if (++p->sec_depth > p->lim.max_depth)
				return imap_parser_fail(p, IMAP_PARSE_ERR_LIMIT,
				                        "Too deeply nested");
		} else if (c == ')') {
			if (p->sec_depth == 0)
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
				                        "Unbalanced parentheses in section");
			p->sec_depth--;
		} else if (c == '"') {
			p->state = S_SECTION_Q;
		} else if (c == '{') {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Literal in section");
		} else if (c != ' ' && c != ']' && !imap_is_atom_char(c)) {
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "Invalid character in section");
		}
		imap_parser_put(p, (char)c);
		return 0;
	case S_SECTION_Q:
		if (c == '\r' || c == '\n' || c == '\0')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Unterminated string");
		if (c >= 0x80 && !p->lim.utf8)
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "8-bit character in string");
		if (c == '"')
			p->state = S_SECTION;
		else if (c == '\\')
			p->state = S_SECTION_QESC;
		imap_parser_put(p, (char)c);
		return 0;
	case S_SECTION_QESC:
		if (c != '"' && c != '\\')
			return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			                        "Invalid escape in string");
		imap_parser_put(p, (char)c);
		p->state = S_SECTION_Q;
		return 0;
	case S_SECTION_END:
		if (c == '<') {
			p->partial_stage = 0;
			p->pnum = 0;
			p->pdigits = 0;
			p->state = S_PARTIAL;
			return 0;
		}
		if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
			*consume_r = false;
			imap_parser_section_done(p);
			return 0;
		}
		return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		                        "Invalid character after section");
	case S_PARTIAL:
		n = &p->nodes[p->tok];
		if (c >= '0' && c <= '9') {
			if (!imap_parser_pdigit(p, c))
				return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
				                        "Invalid partial");
			return 0;
		}
		if (p->partial_stage == 0 && c == '.' && p->pdigits > 0) {
			n->partial_offset = (uint32_t)p->pnum;
			p->partial_stage = 1;
			p->pnum = 0;
			p->pdigits = 0;
			return 0;
		}
		if (p->partial_stage == 1 && c == '>' && p->pnum > 0) {
			n->partial = true;
			n->partial_size = (uint32_t)p->pnum;
			imap_parser_section_done(p);
			return 0;
		}
		return imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Invalid partial");
	default:
		abort();
	}
}

/* One byte of a line being skipped after an error; notices a trailing "{n+}" CRLF, whose data
 * the client sends regardless. Returns 0 or ERROR (fatal). */
static int
imap_parser_skip(struct imap_parser *p, unsigned char c)
{
	if (++p->discarded > p->lim.discard_max)
		return imap_parser_fatal(p, IMAP_PARSE_ERR_TOOBIG, "Too much data after an error");
	if (c == '\n') {
		if (p->sk == 4 || p->sk == 6) {
			if (p->sk_n > p->lim.discard_max - p->discarded)
				return imap_parser_fatal(p, IMAP_PARSE_ERR_TOOBIG,
				                         "Literal too large");
			p->discard_remaining = p->sk_n;
			p->state = S_DISCARD;
		} else {
			p->state = S_START;
		}
		p->sk = 0;
		return 0;
	}
	if (c == '{') {
		p->sk = 1;
		p->sk_n = 0;
	} else if (p->sk == 1 && c >= '0' && c <= '9') {
		if (p->sk_n <= UINT32_MAX)
			p->sk_n = p->sk_n * 10 + (uint64_t)(c - '0');
	} else if (p->sk == 1 && c == '+') {
		p->sk = 2;
	} else if (p->sk == 1 && c == '}') {
		p->sk = 3;
	} else if (p->sk == 2 && c == '}') {
		p->sk = 4;
	} else if ((p->sk == 3 || p->sk == 4) && c == '\r') {
		p->sk += 2;
	} else {
		p->sk = 0;
	}
	return 0;
}

/* One byte of a raw line (imap_parser_expect_line). */
static int
imap_parser_line_byte(struct imap_parser *p, unsigned char c)
{
	if (c == '\n') {
		if (p->buf_len > 0 && p->buf[p->buf_len - 1] == '\r')
			p->buf_len--;
		imap_parser_put(p, '\0');
		p->buf_len--;
		p->state = S_START;
		return IMAP_PARSE_LINE;
	}
	if (p->buf_len + 1 >= p->lim.line_max)
		return imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG, "Line too long");
	imap_parser_put(p, (char)c);
	return 0;
}

static bool
imap_parser_counts(enum imap_parser_state s)
{
	return s != S_START && s != S_START_CR && s != S_SKIP && s != S_DISCARD && s != S_LITERAL &&
	       s != S_LINE && s != S_DEAD;
}

int
imap_parser_feed(struct imap_parser *p, const char *data, size_t len, size_t *consumed_r)
{
	size_t i = 0, counted = SIZE_MAX;
	int ret;

	*consumed_r = 0;
	if (p->dead)
		return IMAP_PARSE_ERROR;
	if (p->have_command)
		imap_parser_clear(p);
	p->chunk = NULL;
	p->chunk_len = 0;
	for (;;) {
		if (p->state == S_LITERAL && p->lit_remaining == 0) {
			imap_parser_literal_done(p);
			continue;
		}
		if (p->state == S_DISCARD && p->discard_remaining == 0) {
			p->state = S_SKIP;
			p->sk = 0;
			continue;
		}
		if (i >= len)
			break;
		if (p->state == S_LITERAL) {
			size_t used;

			ret = imap_parser_literal_bytes(p, data + i, len - i, &used);
			i += used;
			if (ret != 0) {
				*consumed_r = i;
				return ret;
			}
			continue;
		}
		if (p->state == S_DISCARD) {
			size_t n =
			    len - i < p->discard_remaining ? len - i : (size_t)p->discard_remaining;

			p->discard_remaining -= n;
			p->discarded += n;
			i += n;
			continue;
		}
		if (p->state == S_SKIP) {
			ret = imap_parser_skip(p, (unsigned char)data[i]);
			if (ret != 0) {
				*consumed_r = i;
				return ret;
			}
			i++;
			continue;
		}
		if (p->state == S_LINE) {
			ret = imap_parser_line_byte(p, (unsigned char)data[i]);
			if (ret == IMAP_PARSE_LINE)
				i++;
			if (ret != 0) {
				*consumed_r = i;
				return ret;
			}
			i++;
			continue;
		}
		if (imap_parser_counts(p->state) && counted != i) {
			counted = i;
			if (++p->line_len > p->lim.line_max) {
				*consumed_r = i;
				return imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG, "Line too long");
			}
			if (++p->cmd_bytes > p->lim.command_max) {
				*consumed_r = i;
				return imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG,
				                        "Command too long");
			}
		}
		{
			bool consume;

			ret = imap_parser_step(p, (unsigned char)data[i], &consume);
			/* A failed byte is left for S_SKIP, which may end the line with it. */
			if (ret == IMAP_PARSE_ERROR && p->state == S_SKIP)
				consume = false;
			if (consume)
				i++;
			if (ret != 0) {
				*consumed_r = i;
				return ret;
			}
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_NEED_MORE;
}

const struct imap_command *
imap_parser_command(const struct imap_parser *p)
{
	return p->have_command ? &p->cmd : NULL;
}

const struct imap_parse_error *
imap_parser_error(const struct imap_parser *p)
{
	return &p->err;
}

void
imap_parser_literal_data(const struct imap_parser *p, const char **data_r, size_t *len_r)
{
	*data_r = p->chunk;
	*len_r = p->chunk_len;
}

const char *
imap_parser_line(const struct imap_parser *p, size_t *len_r)
{
	*len_r = p->buf_len;
	return p->buf != NULL ? p->buf : "";
}

const char *
imap_parser_tag(const struct imap_parser *p)
{
	return p->tag;
}

const char *
imap_parser_command_name(const struct imap_parser *p, bool *uid_r)
{
	if (uid_r != NULL)
		*uid_r = p->uid;
	return p->name;
}

uint64_t
imap_parser_literal_size(const struct imap_parser *p)
{
	return p->lit_size;
}

void
imap_parser_literal_refuse(struct imap_parser *p)
{
	if (p->state == S_LITERAL && !p->lit_plus && p->lit_remaining == p->lit_size)
		p->state = S_START;
}

bool
imap_parser_mid_line(const struct imap_parser *p, bool with_literals)
{
	switch (p->state) {
	case S_START:
	case S_DEAD:
		return false;
	case S_LITERAL:
	case S_DISCARD:
		return with_literals;
	case S_LINE:
		return p->buf_len > 0;
	default:
		return true;
	}
}

void
imap_parser_expect_line(struct imap_parser *p)
{
	if (p->dead || p->state != S_START)
		return;
	imap_parser_begin(p);
	p->state = S_LINE;
}

/* ---- argument helpers ---- */

bool
imap_arg_get_atom(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NUMBER && arg->type != IMAP_ARG_NIL)
		return false;
	*str_r = arg->str;
	return true;
}

bool
imap_arg_get_string(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type != IMAP_ARG_STRING && (arg->type != IMAP_ARG_LITERAL || arg->streamed))
		return false;
	*str_r = arg->str;
	return true;
}

bool
imap_arg_get_astring(const struct imap_arg *arg, const char **str_r)
{
	return imap_arg_get_atom(arg, str_r) || imap_arg_get_string(arg, str_r);
}

bool
imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		return true;
	}
	return imap_arg_get_string(arg, str_r);
}

bool
imap_arg_atom_equals(const struct imap_arg *arg, const char *word)
{
	const char *s;

	return imap_arg_get_atom(arg, &s) && strcasecmp(s, word) == 0;
}

/* ---- canonical dump ---- */

/* "..." with \\, \" and \xNN for anything unprintable. */
static void
imap_dump_quoted(struct buf *d, const char *s, size_t len)
{
	buf_add(d, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			buf_add(d, esc, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			buf_add(d, esc, 4);
		} else {
			buf_add(d, (const char *)&s[i], 1);
		}
	}
	buf_add(d, "\"", 1);
}

static void
imap_dump_args(struct buf *d, const struct imap_arg *args, size_t n)
{
	char num[64];

	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];

		if (i > 0)
			buf_add(d, " ", 1);
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NUMBER:
		case IMAP_ARG_NIL:
			buf_add(d, a->str, a->len);
			break;
		case IMAP_ARG_STRING:
			imap_dump_quoted(d, a->str, a->len);
			break;
		case IMAP_ARG_LITERAL:
			snprintf(num, sizeof(num), "%s{%zu%s}", a->binary ? "~" : "", a->len,
			         a->streamed       ? " stream"
			         : a->literal_plus ? "+"
			                           : "");
			buf_adds(d, num);
			if (!a->streamed)
				imap_dump_quoted(d, a->str, a->len);
			break;
		case IMAP_ARG_LIST:
			buf_add(d, "(", 1);
			imap_dump_args(d, a->list, a->list_count);
			buf_add(d, ")", 1);
			break;
		case IMAP_ARG_SECTION:
			buf_add(d, a->str, a->len);
			buf_add(d, "[", 1);
			buf_add(d, a->section, a->section_len);
			buf_add(d, "]", 1);
			if (a->partial) {
				snprintf(num, sizeof(num), "<%u.%u>", a->partial_offset,
				         a->partial_size);
				buf_adds(d, num);
			}
			break;
		}
	}
}

char *
imap_command_dump(const struct imap_command *cmd)
{
	struct buf d = BUF_INIT;

	buf_adds(&d, cmd->tag);
	buf_adds(&d, cmd->uid ? " UID " : " ");
	buf_adds(&d, cmd->name);
	if (cmd->nargs > 0) {
		buf_addc(&d, ' ');
		imap_dump_args(&d, cmd->args, cmd->nargs);
	}
	return buf_steal(&d);
}

/* ---- sequence sets ---- */

/* An nz-number or '*' at *s; advances *s. */
static int
imap_seq_number(const char **s, uint64_t *n_r)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p == '*') {
		*n_r = IMAP_SEQ_STAR;
		*s = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*n_r = v;
	*s = p;
	return 0;
}

int
imap_parse_seqset(const char *text, struct imap_seq_range *ranges_r, size_t max, size_t *count_r,
                  const char **error_r)
{
	const char *s = text;
	size_t count = 0;

	*count_r = 0;
	if (max > IMAP_SEQSET_MAX_RANGES)
		max = IMAP_SEQSET_MAX_RANGES;
	for (;;) {
		uint64_t lo, hi;

		if (imap_seq_number(&s, &lo) < 0) {
			*error_r = "Invalid sequence set";
			return -1;
		}
		hi = lo;
		if (*s == ':') {
			s++;
			if (imap_seq_number(&s, &hi) < 0) {
				*error_r = "Invalid sequence set";
				return -1;
			}
		}
		if (count >= max) {
			*error_r = "Too many ranges in sequence set";
			return -1;
		}
		if (ranges_r != NULL) {
			ranges_r[count].lo = lo < hi ? lo : hi;
			ranges_r[count].hi = lo < hi ? hi : lo;
		}
		count++;
		if (*s == '\0')
			break;
		if (*s != ',') {
			*error_r = "Invalid sequence set";
			return -1;
		}
		s++;
	}
	*count_r = count;
	return 0;
}
