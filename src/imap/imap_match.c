/* imap_match: SEARCH programs built from parsed arguments and evaluated per message (see
 * imap_match.h for the semantics). Evaluation is three-valued: a key that needs content that
 * was not read yet answers "undecided", so a caller decides most messages from the index and
 * reads files only for the rest. */
#include "imap/imap_match.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/mimetext.h"
#include "store/store.h"

enum node_kind {
	N_AND = 0, /* kids, all of them */
	N_OR,      /* two kids */
	N_NOT,     /* one kid */
	N_ALL,
	N_FLAG,    /* flag bit is (set) or is not (!set) on */
	N_RECENT,  /* \Recent is set / not set */
	N_KEYWORD, /* KEYWORD (set) / UNKEYWORD (!set) */
	N_SEQ,     /* sequence set */
	N_UID,     /* UID set */
	N_LARGER,
	N_SMALLER,
	N_BEFORE,
	N_ON,
	N_SINCE,
	N_SENTBEFORE,
	N_SENTON,
	N_SENTSINCE,
	N_MODSEQ,
	N_HEADER, /* field contains needle (HEADER, FROM, TO, CC, BCC, SUBJECT) */
	N_BODY,
	N_TEXT,
};

struct node {
	enum node_kind kind;
	struct node **kids;
	size_t nkids;
	uint32_t flag;
	bool set;
	uint64_t number; /* LARGER, SMALLER, MODSEQ */
	int32_t day;     /* date keys */
	char *field;     /* N_HEADER: field name */
	char *keyword;   /* N_KEYWORD */
	bool address;    /* N_HEADER: FROM, TO, CC, BCC match the parsed addresses */
	char *needle;    /* case-folded (g_malloc'd) */
	size_t needle_len;
	struct imap_seq_range *ranges; /* N_SEQ, N_UID: as sent */
	size_t nranges;
	struct imap_seq_range *bound; /* ... with '*' resolved, sorted and merged */
	size_t nbound;
};

struct imap_match {
	struct node *root;
	unsigned needs;
	size_t nodes;
	size_t text_keys;
};

/* A message's text (mime_text, shared with the store's full-text index) and its sent day. */
struct imap_match_content {
	struct mime_text *t;
	int32_t sent_day;
};

/* ---- dates ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int32_t
match_days(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int32_t)(era * 146097 + doe - 719468);
}

int
imap_match_date_parse(const char *text, int32_t *day_r)
{
	static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
	                                     "jul", "aug", "sep", "oct", "nov", "dec"};
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int day = 0, year = 0, month = -1;
	const char *p = text;
	int n;

	for (n = 0; n < 2 && *p >= '0' && *p <= '9'; n++)
		day = day * 10 + (*p++ - '0');
	if (n == 0 || *p++ != '-')
		return -1;
	for (int i = 0; i < 12; i++) {
		if (strncasecmp(p, months[i], 3) == 0) {
			month = i;
			break;
		}
	}
	if (month < 0 || p[3] != '-')
		return -1;
	p += 4;
	for (n = 0; n < 4 && *p >= '0' && *p <= '9'; n++)
		year = year * 10 + (*p++ - '0');
	if (n != 4 || *p != '\0' || day < 1 || day > mdays[month])
		return -1;
	/* 29-Feb only in leap years. */
	if (month == 1 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return -1;
	*day_r = match_days(year, month + 1, day);
	return 0;
}

/* The calendar day of t in the server's local time zone. */
static int32_t
match_local_day(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (localtime_r(&tt, &tm) == NULL)
		return INT32_MIN;
	return match_days(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* ---- text ---- */

static bool
match_contains(const char *hay, size_t hay_len, const struct node *n)
{
	if (n->needle_len == 0)
		return true;
	return hay != NULL && memmem(hay, hay_len, n->needle, n->needle_len) != NULL;
}

/* ---- building ---- */

enum arg_kind {
	A_NONE = 0,
	A_STRING,  /* astring: BODY, TEXT, FROM, ... */
	A_DATE,    /* BEFORE, ... */
	A_NUMBER,  /* LARGER, SMALLER */
	A_HEADER,  /* field-name string */
	A_KEYWORD, /* flag-keyword */
	A_SEQSET,  /* UID */
	A_KEY1,    /* NOT */
	A_KEY2,    /* OR */
	A_MODSEQ,  /* [entry-name entry-type] mod-sequence-valzer */
};

static const struct match_key {
	const char *name;
	enum node_kind kind;
	enum arg_kind arg;
	uint32_t flag;
	bool set;
	const char *field; /* N_HEADER shortcuts */
} match_keys[] = {
    {"ALL", N_ALL, A_NONE, 0, false, NULL},
    {"ANSWERED", N_FLAG, A_NONE, STORE_FLAG_ANSWERED, true, NULL},
    {"BCC", N_HEADER, A_STRING, 0, false, "Bcc"},
    {"BEFORE", N_BEFORE, A_DATE, 0, false, NULL},
    {"BODY", N_BODY, A_STRING, 0, false, NULL},
    {"CC", N_HEADER, A_STRING, 0, false, "Cc"},
    {"DELETED", N_FLAG, A_NONE, STORE_FLAG_DELETED, true, NULL},
    {"DRAFT", N_FLAG, A_NONE, STORE_FLAG_DRAFT, true, NULL},
    {"FLAGGED", N_FLAG, A_NONE, STORE_FLAG_FLAGGED, true, NULL},
    {"FROM", N_HEADER, A_STRING, 0, false, "From"},
    {"HEADER", N_HEADER, A_HEADER, 0, false, NULL},
    {"KEYWORD", N_KEYWORD, A_KEYWORD, 0, true, NULL},
    {"LARGER", N_LARGER, A_NUMBER, 0, false, NULL},
    {"MODSEQ", N_MODSEQ, A_MODSEQ, 0, false, NULL},
    {"NEW", N_AND, A_NONE, 0, false, NULL}, /* RECENT UNSEEN */
    {"NOT", N_NOT, A_KEY1, 0, false, NULL},
    {"OLD", N_RECENT, A_NONE, 0, false, NULL},
    {"ON", N_ON, A_DATE, 0, false, NULL},
    {"OR", N_OR, A_KEY2, 0, false, NULL},
    {"RECENT", N_RECENT, A_NONE, 0, true, NULL},
    {"SEEN", N_FLAG, A_NONE, STORE_FLAG_SEEN, true, NULL},
    {"SENTBEFORE", N_SENTBEFORE, A_DATE, 0, false, NULL},
    {"SENTON", N_SENTON, A_DATE, 0, false, NULL},
    {"SENTSINCE", N_SENTSINCE, A_DATE, 0, false, NULL},
    {"SINCE", N_SINCE, A_DATE, 0, false, NULL},
    {"SMALLER", N_SMALLER, A_NUMBER, 0, false, NULL},
    {"SUBJECT", N_HEADER, A_STRING, 0, false, "Subject"},
    {"TEXT", N_TEXT, A_STRING, 0, false, NULL},
    {"TO", N_HEADER, A_STRING, 0, false, "To"},
    {"UID", N_UID, A_SEQSET, 0, false, NULL},
    {"UNANSWERED", N_FLAG, A_NONE, STORE_FLAG_ANSWERED, false, NULL},
    {"UNDELETED", N_FLAG, A_NONE, STORE_FLAG_DELETED, false, NULL},
    {"UNDRAFT", N_FLAG, A_NONE, STORE_FLAG_DRAFT, false, NULL},
    {"UNFLAGGED", N_FLAG, A_NONE, STORE_FLAG_FLAGGED, false, NULL},
    {"UNKEYWORD", N_KEYWORD, A_KEYWORD, 0, false, NULL},
    {"UNSEEN", N_FLAG, A_NONE, STORE_FLAG_SEEN, false, NULL},
};

struct mparse {
	struct imap_match *m;
	enum imap_match_error kind;
	char *error;
	size_t errsize;
};

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->field);
	free(n->keyword);
	g_free(n->needle);
	free(n->ranges);
	free(n->bound);
	free(n);
}

/* Sets the error (first one wins) and returns NULL. */
static struct node *
mp_fail(struct mparse *p, enum imap_match_error kind, const char *fmt, const char *word)
{
	if (p->error[0] == '\0') {
		p->kind = kind;
		snprintf(p->error, p->errsize, fmt, word != NULL ? word : "");
	}
	return NULL;
}

static struct node *
mp_node(struct mparse *p, enum node_kind kind)
{
	struct node *n;

	if (++p->m->nodes > IMAP_MATCH_NODES_MAX)
		return mp_fail(p, IMAP_MATCH_ERR_LIMIT, "Too many search keys%s", NULL);
	n = xcalloc(1, sizeof(*n));
	n->kind = kind;
	return n;
}

static void
mp_add_kid(struct node *parent, struct node *kid)
{
	parent->kids = xrealloc(parent->kids, (parent->nkids + 1) * sizeof(*parent->kids));
	parent->kids[parent->nkids++] = kid;
}

/* A search string: valid UTF-8 without NUL, folded into n->needle. */
static bool
mp_string(struct mparse *p, const struct imap_arg *a, struct node *n, const char *key)
{
	const char *s;

	if (!imap_arg_get_astring(a, &s)) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s needs a string argument", key);
		return false;
	}
	if (strlen(s) != a->len || !g_utf8_validate(s, (gssize)a->len, NULL)) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s: the search string is not valid UTF-8", key);
		return false;
	}
	if (++p->m->text_keys > IMAP_MATCH_TEXT_KEYS_MAX) {
		mp_fail(p, IMAP_MATCH_ERR_LIMIT, "Too many text search keys%s", NULL);
		return false;
	}
	n->needle = mime_text_fold(s, a->len, &n->needle_len);
	return true;
}

/* A sequence set (sequence numbers or UIDs) into n->ranges. */
static bool
mp_seqset(struct mparse *p, const struct imap_arg *a, struct node *n)
{
	const char *text, *err;
	size_t count;

	if (!imap_arg_get_atom(a, &text) || a->type == IMAP_ARG_NIL) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Invalid sequence set%s", NULL);
		return false;
	}
	if (imap_parse_seqset(text, NULL, IMAP_SEQSET_MAX_RANGES, &count, &err) < 0) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s", err);
		return false;
	}
	n->ranges = xcalloc(count, sizeof(*n->ranges));
	imap_parse_seqset(text, n->ranges, count, &n->nranges, &err);
	return true;
}

static bool
mp_date(struct mparse *p, const struct imap_arg *a, struct node *n, const char *key)
{
	const char *s;

	if (!imap_arg_get_astring(a, &s) || imap_match_date_parse(s, &n->day) < 0) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s needs a date like 1-Feb-1994", key);
		return false;
	}
	return true;
}

/* MODSEQ ["/flags/..." priv|shared|all] n; the entry is checked, then ignored. */
static bool
mp_modseq(struct mparse *p, const struct imap_arg *args, size_t nargs, size_t *pos, struct node *n)
{
	const struct imap_arg *a = &args[*pos];
	const char *s;

	if (a->type == IMAP_ARG_STRING || a->type == IMAP_ARG_LITERAL) {
		imap_arg_get_string(a, &s);
		if (strncasecmp(s, "/flags/", 7) != 0 || s[7] == '\0') {
			mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "MODSEQ: invalid entry name%s", NULL);
			return false;
		}
		if (*pos + 2 >= nargs || !(imap_arg_atom_equals(&args[*pos + 1], "priv") ||
		                           imap_arg_atom_equals(&args[*pos + 1], "shared") ||
		                           imap_arg_atom_equals(&args[*pos + 1], "all"))) {
			mp_fail(p, IMAP_MATCH_ERR_SYNTAX,
			        "MODSEQ: an entry name needs an entry type (priv, shared or all) "
			        "and a number%s",
			        NULL);
			return false;
		}
		*pos += 2;
		a = &args[*pos];
	}
	if (a->type != IMAP_ARG_NUMBER || a->number > INT64_MAX) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "MODSEQ needs a number%s", NULL);
		return false;
	}
	n->number = a->number;
	(*pos)++;
	return true;
}

static struct node *mp_key(struct mparse *p, const struct imap_arg *args, size_t nargs, size_t *pos,
                           unsigned depth);

/* Every key of args ANDed into one node. */
static struct node *
mp_and(struct mparse *p, const struct imap_arg *args, size_t nargs, unsigned depth)
{
	struct node *n, *kid;
	size_t pos = 0;

	if (nargs == 0)
		return mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Empty search key list%s", NULL);
	if ((n = mp_node(p, N_AND)) == NULL)
		return NULL;
	while (pos < nargs) {
		if ((kid = mp_key(p, args, nargs, &pos, depth)) == NULL) {
			node_free(n);
			return NULL;
		}
		mp_add_kid(n, kid);
	}
	return n;
}

/* The arguments of key k at args[*pos] into n. */
static bool
mp_args(struct mparse *p, const struct match_key *k, const struct imap_arg *args, size_t nargs,
        size_t *pos, unsigned depth, struct node *n)
{
	static const unsigned counts[] = {
	    [A_NONE] = 0,    [A_STRING] = 1, [A_DATE] = 1, [A_NUMBER] = 1, [A_HEADER] = 2,
	    [A_KEYWORD] = 1, [A_SEQSET] = 1, [A_KEY1] = 1, [A_KEY2] = 2,   [A_MODSEQ] = 1};
	struct node *kid;
	const char *s;

	if (*pos + counts[k->arg] > nargs) {
		mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Missing argument for %s", k->name);
		return false;
	}
	switch (k->arg) {
	case A_NONE:
		return true;
	case A_STRING:
		if (k->field != NULL) {
			n->field = xstrdup(k->field);
			n->address = strcmp(k->field, "Subject") != 0;
		}
		return mp_string(p, &args[(*pos)++], n, k->name);
	case A_DATE:
		return mp_date(p, &args[(*pos)++], n, k->name);
	case A_NUMBER:
		if (args[*pos].type != IMAP_ARG_NUMBER) {
			mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s needs a number", k->name);
			return false;
		}
		n->number = args[(*pos)++].number;
		return true;
	case A_HEADER:
		if (!imap_arg_get_astring(&args[*pos], &s) || s[0] == '\0' ||
		    strlen(s) != args[*pos].len || strpbrk(s, ": \t") != NULL) {
			mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "HEADER needs a field name%s", NULL);
			return false;
		}
		for (const char *c = s; *c != '\0'; c++) {
			if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) {
				mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "HEADER needs a field name%s",
				        NULL);
				return false;
			}
		}
		n->field = xstrdup(s);
		(*pos)++;
		return mp_string(p, &args[(*pos)++], n, k->name);
	case A_KEYWORD:
		if (!imap_arg_get_astring(&args[*pos], &s) || s[0] == '\0' ||
		    strlen(s) != args[*pos].len || strchr(s, ' ') != NULL) {
			mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "%s needs a keyword", k->name);
			return false;
		}
		n->keyword = xstrdup(s);
		(*pos)++;
		return true;
	case A_SEQSET:
		return mp_seqset(p, &args[(*pos)++], n);
	case A_KEY1:
	case A_KEY2:
		for (unsigned i = 0; i < counts[k->arg]; i++) {
			if (*pos >= nargs) {
				mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Missing argument for %s",
				        k->name);
				return false;
			}
			if ((kid = mp_key(p, args, nargs, pos, depth + 1)) == NULL)
				return false;
			mp_add_kid(n, kid);
		}
		return true;
	case A_MODSEQ:
		return mp_modseq(p, args, nargs, pos, n);
	}
	return false;
}

/* One search key at args[*pos] (advanced past it and its arguments). */
static struct node *
mp_key(struct mparse *p, const struct imap_arg *args, size_t nargs, size_t *pos, unsigned depth)
{
	const struct imap_arg *a = &args[(*pos)++];
	const struct match_key *k = NULL;
	struct node *n;
	const char *word;

	if (depth > IMAP_MATCH_DEPTH_MAX)
		return mp_fail(p, IMAP_MATCH_ERR_LIMIT, "Search keys nested too deeply%s", NULL);
	if (a->type == IMAP_ARG_LIST)
		return mp_and(p, a->list, a->list_count, depth + 1);
	if (!imap_arg_get_atom(a, &word) || a->type == IMAP_ARG_NIL)
		return mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Invalid search key%s", NULL);
	if ((word[0] >= '0' && word[0] <= '9') || word[0] == '*') {
		if ((n = mp_node(p, N_SEQ)) == NULL)
			return NULL;
		if (!mp_seqset(p, a, n)) {
			node_free(n);
			return NULL;
		}
		return n;
	}
	for (size_t i = 0; i < sizeof(match_keys) / sizeof(match_keys[0]); i++) {
		if (strcasecmp(word, match_keys[i].name) == 0) {
			k = &match_keys[i];
			break;
		}
	}
	if (k == NULL)
		return mp_fail(p, IMAP_MATCH_ERR_SYNTAX, "Unknown search key %.40s", word);
	if ((n = mp_node(p, k->kind)) == NULL)
		return NULL;
	n->flag = k->flag;
	n->set = k->set;
	if (!mp_args(p, k, args, nargs, pos, depth, n)) {
		node_free(n);
		return NULL;
	}
	if (strcmp(k->name, "NEW") == 0) {
		struct node *recent = mp_node(p, N_RECENT), *unseen = mp_node(p, N_FLAG);

		if (recent == NULL || unseen == NULL) {
			node_free(recent);
			node_free(unseen);
			node_free(n);
			return NULL;
		}
		recent->set = true;
		unseen->flag = STORE_FLAG_SEEN;
		unseen->set = false;
		mp_add_kid(n, recent);
		mp_add_kid(n, unseen);
	}
	switch (n->kind) {
	case N_HEADER:
	case N_SENTBEFORE:
	case N_SENTON:
	case N_SENTSINCE:
		p->m->needs |= IMAP_MATCH_NEED_HEADER;
		break;
	case N_BODY:
		p->m->needs |= IMAP_MATCH_NEED_BODY;
		break;
	case N_TEXT:
		p->m->needs |= IMAP_MATCH_NEED_HEADER | IMAP_MATCH_NEED_BODY;
		break;
	case N_LARGER:
	case N_SMALLER:
	case N_BEFORE:
	case N_ON:
	case N_SINCE:
		p->m->needs |= IMAP_MATCH_NEED_META;
		break;
	case N_MODSEQ:
		p->m->needs |= IMAP_MATCH_NEED_MODSEQ;
		break;
	default:
		break;
	}
	return n;
}

int
imap_match_parse(const struct imap_arg *args, size_t nargs, struct imap_match **m_r,
                 enum imap_match_error *kind_r, char *error, size_t errsize)
{
	struct imap_match *m = xcalloc(1, sizeof(*m));
	struct mparse p = {.m = m, .error = error, .errsize = errsize};

	error[0] = '\0';
	*m_r = NULL;
	m->root = mp_and(&p, args, nargs, 0);
	if (m->root == NULL) {
		if (error[0] == '\0')
			str_copy(error, "Invalid search program", errsize);
		*kind_r = p.kind;
		imap_match_free(&m);
		return -1;
	}
	*m_r = m;
	return 0;
}

void
imap_match_free(struct imap_match **m)
{
	if (*m == NULL)
		return;
	node_free((*m)->root);
	free(*m);
	*m = NULL;
}

unsigned
imap_match_needs(const struct imap_match *m)
{
	return m->needs;
}

static bool
node_numbers(const struct node *n)
{
	if (n->kind == N_SEQ || n->kind == N_UID)
		return true;
	for (size_t i = 0; i < n->nkids; i++)
		if (node_numbers(n->kids[i]))
			return true;
	return false;
}

bool
imap_match_uses_numbers(const struct imap_match *m)
{
	return node_numbers(m->root);
}

/* ---- binding sequence sets ---- */

static int
range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void
bind_node(struct node *n, uint32_t nmsgs, uint32_t max_uid)
{
	uint32_t max = n->kind == N_UID ? max_uid : nmsgs;
	size_t out = 0;

	for (size_t i = 0; i < n->nkids; i++)
		bind_node(n->kids[i], nmsgs, max_uid);
	if (n->kind != N_SEQ && n->kind != N_UID)
		return;
	free(n->bound);
	n->bound = xcalloc(n->nranges + 1, sizeof(*n->bound));
	for (size_t i = 0; i < n->nranges; i++) {
		uint32_t lo = n->ranges[i].lo == IMAP_SEQ_STAR ? max : n->ranges[i].lo;
		uint32_t hi = n->ranges[i].hi == IMAP_SEQ_STAR ? max : n->ranges[i].hi;

		n->bound[i].lo = lo < hi ? lo : hi;
		n->bound[i].hi = lo < hi ? hi : lo;
	}
	qsort(n->bound, n->nranges, sizeof(*n->bound), range_cmp);
	for (size_t i = 0; i < n->nranges; i++) {
		if (out > 0 && n->bound[i].lo <= n->bound[out - 1].hi) {
			if (n->bound[i].hi > n->bound[out - 1].hi)
				n->bound[out - 1].hi = n->bound[i].hi;
			continue;
		}
		n->bound[out++] = n->bound[i];
	}
	n->nbound = out;
}

void
imap_match_bind(struct imap_match *m, uint32_t nmsgs, uint32_t max_uid)
{
	bind_node(m->root, nmsgs, max_uid);
}

/* ---- the search index ---- */

/* The store search key n can be narrowed by, or -1. FROM, TO, CC and BCC only as those keys
 * (they match the rendered addresses, which the index keeps), not as HEADER From. */
static int
index_key_of(const struct node *n)
{
	static const struct {
		const char *field;
		bool address;
		enum store_search_key key;
	} fields[] = {
	    {"Subject", false, STORE_SEARCH_SUBJECT},
	    {"From", true, STORE_SEARCH_FROM},
	    {"To", true, STORE_SEARCH_TO},
	    {"Cc", true, STORE_SEARCH_CC},
	    {"Bcc", true, STORE_SEARCH_BCC},
	};

	if (n->needle == NULL || g_utf8_strlen(n->needle, -1) < STORE_SEARCH_MIN_CHARS)
		return -1;
	if (n->kind == N_BODY)
		return STORE_SEARCH_BODY;
	if (n->kind == N_TEXT)
		return STORE_SEARCH_TEXT;
	if (n->kind != N_HEADER)
		return -1;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(n->field, fields[i].field) == 0 && n->address == fields[i].address)
			return (int)fields[i].key;
	return -1;
}

/* Walks the conjuncts of an AND (nested ANDs too) for the best indexable key. */
static void
index_key_walk(const struct node *n, int *key_r, const char **needle_r, size_t *len_r)
{
	int key;

	if (n->kind == N_AND) {
		for (size_t i = 0; i < n->nkids; i++)
			index_key_walk(n->kids[i], key_r, needle_r, len_r);
		return;
	}
	key = index_key_of(n);
	if (key >= 0 && n->needle_len > *len_r) {
		*key_r = key;
		*needle_r = n->needle;
		*len_r = n->needle_len;
	}
}

int
imap_match_index_key(const struct imap_match *m, int *key_r, const char **needle_r)
{
	size_t len = 0;

	*key_r = -1;
	*needle_r = NULL;
	index_key_walk(m->root, key_r, needle_r, &len);
	return *key_r >= 0 ? 1 : 0;
}

/* ---- evaluation ---- */

static bool
eval_in_ranges(const struct node *n, uint32_t key)
{
	size_t lo = 0, hi = n->nbound;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (key < n->bound[mid].lo)
			hi = mid;
		else if (key > n->bound[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool
eval_keyword(const char *keywords, const char *word)
{
	size_t len = strlen(word);
	const char *p = keywords;

	while (p != NULL && *p != '\0') {
		size_t n = strcspn(p, " ");

		if (n == len && strncasecmp(p, word, len) == 0)
			return true;
		p += n;
		p += strspn(p, " ");
	}
	return false;
}

static int
eval_header(const struct node *n, const struct imap_match_content *c)
{
	if (c == NULL)
		return -1;
	for (size_t i = 0; i < c->t->nheaders; i++) {
		const struct mime_text_header *h = &c->t->headers[i];

		if (strcasecmp(h->name, n->field) != 0)
			continue;
		if (n->address && h->addr != NULL ? match_contains(h->addr, h->addr_len, n)
		                                  : match_contains(h->value, h->len, n))
			return 1;
	}
	return 0;
}

static int
eval_node(const struct node *n, const struct imap_match_msg *msg,
          const struct imap_match_content *c)
{
	int r, result;

	switch (n->kind) {
	case N_AND:
		result = 1;
		for (size_t i = 0; i < n->nkids; i++) {
			if ((r = eval_node(n->kids[i], msg, c)) == 0)
				return 0;
			if (r < 0)
				result = -1;
		}
		return result;
	case N_OR:
		result = 0;
		for (size_t i = 0; i < n->nkids; i++) {
			if ((r = eval_node(n->kids[i], msg, c)) == 1)
				return 1;
			if (r < 0)
				result = -1;
		}
		return result;
	case N_NOT:
		r = eval_node(n->kids[0], msg, c);
		return r < 0 ? -1 : !r;
	case N_ALL:
		return 1;
	case N_FLAG:
		return ((msg->flags & n->flag) != 0) == n->set;
	case N_RECENT:
		return msg->recent == n->set;
	case N_KEYWORD:
		return eval_keyword(msg->keywords, n->keyword) == n->set;
	case N_SEQ:
		return eval_in_ranges(n, msg->seq);
	case N_UID:
		return eval_in_ranges(n, msg->uid);
	case N_LARGER:
		return msg->meta && msg->size > n->number;
	case N_SMALLER:
		return msg->meta && msg->size < n->number;
	case N_BEFORE:
		return msg->meta && match_local_day(msg->internal_date) < n->day;
	case N_ON:
		return msg->meta && match_local_day(msg->internal_date) == n->day;
	case N_SINCE:
		return msg->meta && match_local_day(msg->internal_date) >= n->day;
	case N_SENTBEFORE:
		return c == NULL ? -1 : c->t->has_date && c->sent_day < n->day;
	case N_SENTON:
		return c == NULL ? -1 : c->t->has_date && c->sent_day == n->day;
	case N_SENTSINCE:
		return c == NULL ? -1 : c->t->has_date && c->sent_day >= n->day;
	case N_MODSEQ:
		return msg->modseq >= n->number;
	case N_HEADER:
		return eval_header(n, c);
	case N_BODY:
		if (c == NULL || !c->t->have_body)
			return -1;
		return match_contains(c->t->body, c->t->body_len, n);
	case N_TEXT:
		if (c == NULL)
			return -1;
		if (match_contains(c->t->header_text, c->t->header_len, n))
			return 1;
		if (!c->t->have_body)
			return -1;
		return match_contains(c->t->body, c->t->body_len, n);
	}
	return 0;
}

int
imap_match_eval(const struct imap_match *m, const struct imap_match_msg *msg,
                const struct imap_match_content *content)
{
	return eval_node(m->root, msg, content);
}

/* ---- content ---- */

/* Wraps a mime_text (NULL stays NULL), with its Date: day for the SENT* keys. */
static struct imap_match_content *
content_wrap(struct mime_text *t)
{
	struct imap_match_content *c;

	if (t == NULL)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->t = t;
	if (t->has_date)
		c->sent_day = match_days(t->date_year, t->date_month, t->date_day);
	return c;
}

struct imap_match_content *
imap_match_content_from_buffer(const char *data, size_t len, unsigned need)
{
	return content_wrap(mime_text_from_buffer(data, len, (need & IMAP_MATCH_NEED_BODY) != 0));
}

struct imap_match_content *
imap_match_content_from_fd(int fd, unsigned need)
{
	return content_wrap(mime_text_from_fd(fd, (need & IMAP_MATCH_NEED_BODY) != 0));
}

char *
imap_match_read_header(int fd, size_t *len_r)
{
	return mime_text_read_header(fd, len_r);
}

void
imap_match_content_free(struct imap_match_content **c)
{
	if (*c == NULL)
		return;
	mime_text_free(&(*c)->t);
	free(*c);
	*c = NULL;
}
