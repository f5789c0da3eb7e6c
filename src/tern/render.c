/* render: stored messages for a terminal. GMime parses the message; the best text part is chosen
 * (text/plain before text/html, inline before named), decoded from its charset to UTF-8, and
 * HTML becomes text through libxml2's recovering HTML parser. Every string that reaches the
 * terminal is valid UTF-8 with control characters removed, so a message cannot send escape
 * sequences. Attachments are saved with openat(O_EXCL) under a sanitized single-component name,
 * so a hostile file name can neither leave the directory nor replace an existing file. */
#include "tern/render.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "mime/summary.h"

/* The search index keeps at most this much body text per message. */
#define RENDER_INDEX_MAX (4u * 1024 * 1024)
/* Deeper HTML trees are cut off (libxml2 limits depth too; this guards our recursion). */
#define RENDER_HTML_MAX_DEPTH 512
/* How many " (N)" suffixes are tried before giving up on a name. */
#define RENDER_MAX_SUFFIX 1000

/* Copies text as valid UTF-8 without C0/C1 controls (newline and tab kept when keep_lines),
 * at most dstsize - 1 bytes cut on a character boundary; returns the length. */
static size_t
render_strip_controls(const char *text, bool keep_lines, char *dst, size_t dstsize)
{
	gchar *valid = g_utf8_make_valid(text, -1);
	size_t n = 0;

	for (const char *p = valid, *next; *p != '\0'; p = next) {
		gunichar c = g_utf8_get_char(p);

		next = g_utf8_next_char(p);
		if (n + (size_t)(next - p) + 1 > dstsize)
			break;
		if ((c >= 0x20 && c < 0x7f) || c >= 0xa0 ||
		    (keep_lines && (c == '\n' || c == '\t'))) {
			memcpy(dst + n, p, (size_t)(next - p));
			n += (size_t)(next - p);
		}
	}
	dst[n] = '\0';
	g_free(valid);
	return n;
}

/* Writes text to out without anything a terminal would take as a control sequence. */
static void
render_put_safe(FILE *out, const char *text)
{
	size_t size = strlen(text) * 3 + 1; /* each invalid byte may become U+FFFD */
	char *safe = xmalloc(size);

	fwrite(safe, 1, render_strip_controls(text, true, safe, size), out);
	free(safe);
}

/* Prints "name: value" on one line (nothing when value is NULL). */
static void
render_print_field(FILE *out, const char *name, const char *value)
{
	if (value == NULL)
		return;
	render_put_safe(out, name);
	fputs(": ", out);
	render_put_safe(out, value);
	fputc('\n', out);
}

/* Prints text and ends it with a newline when it has none. */
static void
render_print_text(FILE *out, const char *text)
{
	size_t len = strlen(text);

	render_put_safe(out, text);
	if (len > 0 && text[len - 1] != '\n')
		fputc('\n', out);
}

/* Parses the file at path as a message, or as one part when as_part (then every header stays in
 * one list, in file order); NULL with error when it cannot be read. */
static GMimeObject *
render_parse(const char *path, bool as_part, char *error, size_t errsize)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeObject *object;
	int fd;

	mime_init();
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(error, errsize, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	stream = g_mime_stream_fs_new(fd); /* owns fd */
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	object = as_part ? g_mime_parser_construct_part(parser, NULL)
	                 : GMIME_OBJECT(g_mime_parser_construct_message(parser, NULL));
	g_object_unref(parser);
	g_object_unref(stream);
	if (object == NULL)
		snprintf(error, errsize, "%s is not a readable message", path);
	return object;
}

static GMimeMessage *
render_load(const char *path, char *error, size_t errsize)
{
	return (GMimeMessage *)render_parse(path, false, error, errsize);
}

/* A part's text decoded to valid UTF-8 (g_free'd by the caller). */
static gchar *
render_part_text(GMimeObject *part)
{
	GMimeContentType *type = g_mime_object_get_content_type(part);
	const char *charset =
	    type != NULL ? g_mime_content_type_get_parameter(type, "charset") : NULL;
	char *raw = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
	gchar *text;

	if (raw == NULL)
		return g_strdup("");
	if (g_utf8_validate(raw, -1, NULL))
		return raw;
	/* Undeclared 8-bit text is most often Latin-1; a declared charset keeps its bytes. */
	if (charset == NULL) {
		text = g_convert(raw, -1, "UTF-8", "ISO-8859-1", NULL, NULL, NULL);
		if (text != NULL) {
			g_free(raw);
			return text;
		}
	}
	text = g_utf8_make_valid(raw, -1);
	g_free(raw);
	return text;
}

static bool
render_is_disposition_attachment(GMimeObject *part)
{
	GMimeContentDisposition *d = g_mime_object_get_content_disposition(part);
	return d != NULL && g_mime_content_disposition_is_attachment(d);
}

/* The best body candidate so far: rank 0 (none) to 4 (unnamed text/plain). */
struct render_body {
	GMimeObject *part;
	int rank;
	bool want_html;
};

/* Ranks a leaf as the message body: plain beats html, unnamed beats named (or the reverse
 * preference for html when want_html). */
static int
render_body_rank(GMimeObject *part, bool want_html)
{
	GMimeContentType *type = g_mime_object_get_content_type(part);
	bool named, plain, html;

	if (!GMIME_IS_TEXT_PART(part) || type == NULL || render_is_disposition_attachment(part))
		return 0;
	plain = g_mime_content_type_is_type(type, "text", "plain");
	html = g_mime_content_type_is_type(type, "text", "html");
	if (!plain && !html)
		return 0;
	if (want_html && !html)
		return 0;
	named = g_mime_part_get_filename(GMIME_PART(part)) != NULL;
	return (named ? 0 : 2) + (plain ? 2 : 1);
}

/* Walks multiparts depth first (not into attached messages) calling fn on every leaf. */
static void
render_walk(GMimeObject *object, void (*fn)(GMimeObject *, void *), void *arg, int depth)
{
	if (object == NULL || depth > 64)
		return;
	if (GMIME_IS_MULTIPART(object)) {
		GMimeMultipart *multi = GMIME_MULTIPART(object);
		int n = g_mime_multipart_get_count(multi);
		for (int i = 0; i < n; i++)
			render_walk(g_mime_multipart_get_part(multi, i), fn, arg, depth + 1);
		return;
	}
	fn(object, arg);
}

static void
render_body_visit(GMimeObject *part, void *arg)
{
	struct render_body *body = arg;
	int rank = render_body_rank(part, body->want_html);

	if (rank > body->rank) {
		body->rank = rank;
		body->part = part;
	}
}

/* The part to show as the body (NULL when the message has no text at all). */
static GMimeObject *
render_find_body(GMimeMessage *message, bool want_html)
{
	struct render_body body = {NULL, 0, want_html};

	render_walk(g_mime_message_get_mime_part(message), render_body_visit, &body, 0);
	return body.part;
}

/* Reduces an untrusted file name to one safe path component, or "" when nothing is left. */
static void
render_sanitize_filename(const char *name, char *dst, size_t dstsize)
{
	const char *base = name;
	size_t n, len;

	dst[0] = '\0';
	if (name == NULL)
		return;
	/* Windows clients send "C:\\dir\\file": a backslash is a separator too. */
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '/' || *p == '\\')
			base = p + 1;
	}
	render_strip_controls(base, false, dst, dstsize);
	/* Spaces at the ends are invisible in listings; "." and ".." are directories. */
	len = strlen(dst);
	while (len > 0 && dst[len - 1] == ' ')
		dst[--len] = '\0';
	n = strspn(dst, " ");
	memmove(dst, dst + n, len - n + 1);
	if (strcmp(dst, ".") == 0 || strcmp(dst, "..") == 0)
		dst[0] = '\0';
}

/* One attachment found while walking a message. */
struct render_found {
	GMimeObject *part;
	struct render_attachment info;
};

struct render_collect {
	GMimeObject *body; /* the part shown as text, never listed */
	struct render_found *items;
	size_t count, alloc;
};

/* Writes a leaf's decoded content (or an attached message's bytes) to stream; -1 on error. */
static gint64
render_part_write(GMimeObject *part, GMimeStream *stream)
{
	if (GMIME_IS_PART(part)) {
		GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(part));
		return content != NULL ? g_mime_data_wrapper_write_to_stream(content, stream) : 0;
	}
	if (GMIME_IS_MESSAGE_PART(part)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
		return inner != NULL
		           ? g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, stream)
		           : 0;
	}
	return 0;
}

/* Counts the bytes render_part_write would write. */
static uint64_t
render_part_size(GMimeObject *part)
{
	GMimeStream *null = g_mime_stream_null_new();
	gint64 n = render_part_write(part, null);

	g_object_unref(null);
	return n > 0 ? (uint64_t)n : 0;
}

static void
render_collect_visit(GMimeObject *part, void *arg)
{
	struct render_collect *c = arg;
	GMimeContentType *type = g_mime_object_get_content_type(part);
	const char *filename = NULL;
	struct render_found *f;
	char *mime_type;

	if (part == c->body)
		return;
	if (GMIME_IS_PART(part)) {
		filename = g_mime_part_get_filename(GMIME_PART(part));
		if (filename == NULL && !render_is_disposition_attachment(part))
			return;
	} else if (!GMIME_IS_MESSAGE_PART(part)) {
		return;
	}
	if (c->count == c->alloc) {
		c->alloc = c->alloc == 0 ? 8 : c->alloc * 2;
		c->items = xrealloc(c->items, c->alloc * sizeof(*c->items));
	}
	f = &c->items[c->count++];
	memset(f, 0, sizeof(*f));
	f->part = part;
	render_sanitize_filename(filename, f->info.filename, sizeof(f->info.filename));
	if (f->info.filename[0] == '\0')
		snprintf(f->info.filename, sizeof(f->info.filename), "attachment-%zu", c->count);
	mime_type = type != NULL ? g_mime_content_type_get_mime_type(type) : NULL;
	str_copy(f->info.content_type, mime_type != NULL ? mime_type : "application/octet-stream",
	         sizeof(f->info.content_type));
	g_free(mime_type);
	f->info.size = render_part_size(part);
}

/* Lists the attachments of message; the caller frees c->items. */
static void
render_collect(GMimeMessage *message, struct render_collect *c)
{
	memset(c, 0, sizeof(*c));
	c->body = render_find_body(message, false);
	render_walk(g_mime_message_get_mime_part(message), render_collect_visit, c, 0);
}

/* Prints "Name: value" for an address header when present. */
static void
render_print_addresses(FILE *out, const char *name, InternetAddressList *list)
{
	char *text;

	if (list == NULL || internet_address_list_length(list) == 0)
		return;
	text = internet_address_list_to_string(list, NULL, FALSE);
	render_print_field(out, name, text);
	g_free(text);
}

/* The part's text as plain text: HTML is converted (g_free'd by the caller). */
static gchar *
render_part_plain(GMimeObject *part)
{
	GMimeContentType *type = g_mime_object_get_content_type(part);
	gchar *text = render_part_text(part);
	char *plain;

	if (type == NULL || !g_mime_content_type_is_type(type, "text", "html"))
		return text;
	plain = render_html_to_text(text, strlen(text));
	g_free(text);
	text = g_strdup(plain);
	free(plain);
	return text;
}

static int
render_text(FILE *out, GMimeMessage *message)
{
	struct render_collect c;
	gchar *text;

	render_print_addresses(out, "From", g_mime_message_get_from(message));
	render_print_addresses(out, "To", g_mime_message_get_to(message));
	render_print_addresses(out, "Cc", g_mime_message_get_cc(message));
	render_print_field(out, "Date", g_mime_object_get_header(GMIME_OBJECT(message), "Date"));
	render_print_field(out, "Subject", g_mime_message_get_subject(message));
	fputc('\n', out);
	render_collect(message, &c);
	if (c.body != NULL) {
		text = render_part_plain(c.body);
		render_print_text(out, text);
		g_free(text);
	}
	if (c.count > 0) {
		fputs("\nAttachments:\n", out);
		for (size_t i = 0; i < c.count; i++) {
			fputs("  ", out);
			render_put_safe(out, c.items[i].info.filename);
			fputs(" (", out);
			render_put_safe(out, c.items[i].info.content_type);
			fprintf(out, ", %llu bytes)\n", (unsigned long long)c.items[i].info.size);
		}
	}
	free(c.items);
	return 0;
}

static int
render_html(FILE *out, GMimeMessage *message, char *error, size_t errsize)
{
	GMimeObject *part = render_find_body(message, true);
	gchar *text;

	if (part == NULL) {
		snprintf(error, errsize, "no HTML part");
		return -1;
	}
	text = render_part_text(part);
	render_print_text(out, text);
	g_free(text);
	return 0;
}

/* Copies the stored bytes unchanged. */
static int
render_raw(FILE *out, const char *path, char *error, size_t errsize)
{
	char buf[65536];
	FILE *in = fopen(path, "rbe");
	size_t n;
	int ret = 0;

	if (in == NULL) {
		snprintf(error, errsize, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (fwrite(buf, 1, n, out) != n) {
			snprintf(error, errsize, "write error: %s", strerror(errno));
			ret = -1;
			break;
		}
	}
	if (ret == 0 && ferror(in)) {
		snprintf(error, errsize, "cannot read %s", path);
		ret = -1;
	}
	fclose(in);
	return ret;
}

/* Prints every header of the top-level header block in file order, decoded. */
static int
render_headers(FILE *out, const char *path, char *error, size_t errsize)
{
	GMimeObject *object = render_parse(path, true, error, errsize);
	GMimeHeaderList *headers;
	int n;

	if (object == NULL)
		return -1;
	headers = g_mime_object_get_header_list(object);
	n = g_mime_header_list_get_count(headers);
	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(headers, i);
		render_print_field(out, g_mime_header_get_name(h), g_mime_header_get_value(h));
	}
	g_object_unref(object);
	return 0;
}

int
render_message(FILE *out, const char *path, enum render_mode mode, char *error, size_t errsize)
{
	GMimeMessage *message;
	int ret;

	if (mode == RENDER_RAW)
		return render_raw(out, path, error, errsize);
	if (mode == RENDER_HEADERS)
		return render_headers(out, path, error, errsize);
	if (mode != RENDER_TEXT && mode != RENDER_HTML) {
		snprintf(error, errsize, "unknown render mode %d", (int)mode);
		return -1;
	}
	message = render_load(path, error, errsize);
	if (message == NULL)
		return -1;
	ret = mode == RENDER_TEXT ? render_text(out, message)
	                          : render_html(out, message, error, errsize);
	g_object_unref(message);
	if (ret == 0 && ferror(out)) {
		snprintf(error, errsize, "write error");
		ret = -1;
	}
	return ret;
}

/* State of the HTML to text conversion. */
struct render_html_state {
	struct buf out;
	int want_newlines; /* line breaks owed before the next text */
	bool want_space;   /* collapsed whitespace owed before the next text */
	bool line_has_text;
	int pre;   /* inside <pre>: whitespace kept */
	int quote; /* <blockquote> depth: lines get "> " */
	int list;  /* list depth, for bullet indentation */
};

/* Asks for n line breaks before the next text (none at the very start). */
static void
render_html_break(struct render_html_state *st, int n)
{
	if (n > st->want_newlines)
		st->want_newlines = n;
	st->want_space = false;
}

/* Emits owed line breaks, then the quote prefix when at the start of a line. */
static void
render_html_flush(struct render_html_state *st)
{
	if (st->want_newlines > 0 && st->out.len > 0) {
		int have = 0;
		for (size_t i = st->out.len; i > 0 && st->out.data[i - 1] == '\n'; i--)
			have++;
		for (; have < st->want_newlines; have++)
			buf_adds(&st->out, "\n");
		st->line_has_text = false;
	}
	st->want_newlines = 0;
	if (st->out.len == 0 || st->out.data[st->out.len - 1] == '\n') {
		for (int i = 0; i < st->quote; i++)
			buf_adds(&st->out, "> ");
		st->line_has_text = false;
		st->want_space = false;
	}
	if (st->want_space && st->line_has_text)
		buf_adds(&st->out, " ");
	st->want_space = false;
}

static bool
render_html_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Adds a text node: whitespace collapsed (or kept inside <pre>), NBSP as a plain space. */
static void
render_html_text(struct render_html_state *st, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		if (st->pre > 0) {
			if (*p == '\r') {
				p++;
				continue;
			}
			if (*p == '\n') {
				buf_adds(&st->out, "\n");
				st->line_has_text = false;
				p++;
				continue;
			}
		} else if (render_html_is_space((unsigned char)*p)) {
			st->want_space = true;
			p++;
			continue;
		}
		render_html_flush(st);
		if ((unsigned char)p[0] == 0xc2 && (unsigned char)p[1] == 0xa0) {
			buf_adds(&st->out, " ");
			p += 2;
		} else {
			buf_add(&st->out, p, 1);
			p++;
		}
		st->line_has_text = true;
	}
}

/* What an element does to the text around it. */
enum render_html_kind {
	RENDER_HTML_INLINE = 0,
	RENDER_HTML_DROP,  /* content never shown */
	RENDER_HTML_BR,    /* a hard line break */
	RENDER_HTML_HR,    /* a rule on its own line */
	RENDER_HTML_IMG,   /* its alt text */
	RENDER_HTML_CELL,  /* separated from its neighbours by a space */
	RENDER_HTML_LINK,  /* text <url> */
	RENDER_HTML_ITEM,  /* "* " on a new line */
	RENDER_HTML_LINE,  /* a block on its own line */
	RENDER_HTML_PARA,  /* a block between blank lines */
	RENDER_HTML_PRE,   /* a paragraph keeping its whitespace */
	RENDER_HTML_QUOTE, /* a paragraph with "> " lines */
	RENDER_HTML_LIST,  /* a paragraph of items, nested lists hang under their item */
};

static const struct {
	const char *name;
	enum render_html_kind kind;
} render_html_elements[] = {
    /* clang-format off */
    {"script", RENDER_HTML_DROP}, {"style", RENDER_HTML_DROP}, {"head", RENDER_HTML_DROP},
    {"title", RENDER_HTML_DROP}, {"template", RENDER_HTML_DROP},
    {"br", RENDER_HTML_BR}, {"hr", RENDER_HTML_HR}, {"img", RENDER_HTML_IMG},
    {"td", RENDER_HTML_CELL}, {"th", RENDER_HTML_CELL}, {"a", RENDER_HTML_LINK},
    {"li", RENDER_HTML_ITEM}, {"pre", RENDER_HTML_PRE}, {"blockquote", RENDER_HTML_QUOTE},
    {"ul", RENDER_HTML_LIST}, {"ol", RENDER_HTML_LIST},
    {"p", RENDER_HTML_PARA}, {"h1", RENDER_HTML_PARA}, {"h2", RENDER_HTML_PARA},
    {"h3", RENDER_HTML_PARA}, {"h4", RENDER_HTML_PARA}, {"h5", RENDER_HTML_PARA},
    {"h6", RENDER_HTML_PARA}, {"table", RENDER_HTML_PARA}, {"dl", RENDER_HTML_PARA},
    {"div", RENDER_HTML_LINE}, {"tr", RENDER_HTML_LINE}, {"dt", RENDER_HTML_LINE},
    {"dd", RENDER_HTML_LINE}, {"section", RENDER_HTML_LINE}, {"article", RENDER_HTML_LINE},
    {"header", RENDER_HTML_LINE}, {"footer", RENDER_HTML_LINE}, {"nav", RENDER_HTML_LINE},
    {"main", RENDER_HTML_LINE}, {"aside", RENDER_HTML_LINE}, {"form", RENDER_HTML_LINE},
    {"fieldset", RENDER_HTML_LINE}, {"address", RENDER_HTML_LINE},
    {"center", RENDER_HTML_LINE}, {"figure", RENDER_HTML_LINE},
    {"figcaption", RENDER_HTML_LINE}, {"caption", RENDER_HTML_LINE},
    {"body", RENDER_HTML_LINE}, {"html", RENDER_HTML_LINE},
    /* clang-format on */
};

static enum render_html_kind
render_html_kind(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(render_html_elements); i++) {
		if (g_ascii_strcasecmp(name, render_html_elements[i].name) == 0)
			return render_html_elements[i].kind;
	}
	return RENDER_HTML_INLINE;
}

static void render_html_node(struct render_html_state *st, xmlNode *node, int depth);

static void
render_html_children(struct render_html_state *st, xmlNode *node, int depth)
{
	for (xmlNode *child = node->children; child != NULL; child = child->next)
		render_html_node(st, child, depth + 1);
}

/* Renders <a>: the text, then " <url>" when the url says something the text does not. */
static void
render_html_link(struct render_html_state *st, xmlNode *node, int depth)
{
	xmlChar *href = xmlGetProp(node, (const xmlChar *)"href");
	size_t start = st->out.len;
	const char *url = (const char *)href;
	char *shown;

	render_html_children(st, node, depth);
	if (url == NULL || url[0] == '\0' || url[0] == '#' ||
	    g_ascii_strncasecmp(url, "javascript:", 11) == 0) {
		xmlFree(href);
		return;
	}
	shown = g_strstrip(
	    g_strndup(st->out.data != NULL ? st->out.data + start : "", st->out.len - start));
	if (strcmp(shown, url) != 0 &&
	    !(g_ascii_strncasecmp(url, "mailto:", 7) == 0 && strcmp(shown, url + 7) == 0)) {
		st->want_space = true;
		render_html_text(st, "<");
		render_html_text(st, url);
		render_html_text(st, ">");
	}
	g_free(shown);
	xmlFree(href);
}

static void
render_html_element(struct render_html_state *st, xmlNode *node, int depth)
{
	enum render_html_kind kind = render_html_kind((const char *)node->name);
	xmlChar *alt;
	int gap;

	switch (kind) {
	case RENDER_HTML_DROP:
		return;
	case RENDER_HTML_BR:
		render_html_flush(st);
		buf_adds(&st->out, "\n");
		st->line_has_text = false;
		return;
	case RENDER_HTML_HR:
		render_html_break(st, 1);
		render_html_text(st, "----");
		render_html_break(st, 1);
		return;
	case RENDER_HTML_IMG:
		alt = xmlGetProp(node, (const xmlChar *)"alt");
		if (alt != NULL && alt[0] != '\0') {
			st->want_space = true;
			render_html_text(st, "[");
			render_html_text(st, (const char *)alt);
			render_html_text(st, "]");
		}
		xmlFree(alt);
		return;
	case RENDER_HTML_CELL:
		st->want_space = true;
		render_html_children(st, node, depth);
		st->want_space = true;
		return;
	case RENDER_HTML_LINK:
		render_html_link(st, node, depth);
		return;
	case RENDER_HTML_ITEM:
		render_html_break(st, 1);
		render_html_flush(st);
		for (int i = 1; i < st->list; i++)
			buf_adds(&st->out, "  ");
		buf_adds(&st->out, "* ");
		render_html_children(st, node, depth);
		render_html_break(st, 1);
		return;
	case RENDER_HTML_LINE:
	case RENDER_HTML_PARA:
	case RENDER_HTML_PRE:
	case RENDER_HTML_QUOTE:
	case RENDER_HTML_LIST:
		gap =
		    kind == RENDER_HTML_LINE || (kind == RENDER_HTML_LIST && st->list > 0) ? 1 : 2;
		render_html_break(st, gap);
		st->pre += kind == RENDER_HTML_PRE;
		st->quote += kind == RENDER_HTML_QUOTE;
		st->list += kind == RENDER_HTML_LIST;
		render_html_children(st, node, depth);
		st->pre -= kind == RENDER_HTML_PRE;
		st->quote -= kind == RENDER_HTML_QUOTE;
		st->list -= kind == RENDER_HTML_LIST;
		render_html_break(st, gap);
		return;
	case RENDER_HTML_INLINE:
		break;
	}
	render_html_children(st, node, depth);
}

static void
render_html_node(struct render_html_state *st, xmlNode *node, int depth)
{
	if (depth > RENDER_HTML_MAX_DEPTH)
		return;
	switch (node->type) {
	case XML_ELEMENT_NODE:
		render_html_element(st, node, depth);
		break;
	case XML_TEXT_NODE:
	case XML_CDATA_SECTION_NODE:
		if (node->content != NULL)
			render_html_text(st, (const char *)node->content);
		break;
	default:
		break;
	}
}

char *
render_html_to_text(const char *html, size_t len)
{
	struct render_html_state st;
	gchar *valid;
	htmlDocPtr doc;
	char *text;
	size_t n;

	memset(&st, 0, sizeof(st));
	if (html == NULL || len == 0)
		return xstrdup("");
	if (len > INT_MAX)
		len = INT_MAX;
	/* libxml2 stops at the first invalid UTF-8 sequence: repair them first. */
	valid = g_utf8_make_valid(html, (gssize)len);
	xmlInitParser();
	doc = htmlReadMemory(valid, (int)strlen(valid), NULL, "UTF-8",
	                     HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
	                         HTML_PARSE_NONET | HTML_PARSE_IGNORE_ENC);
	g_free(valid);
	if (doc != NULL) {
		for (xmlNode *node = doc->children; node != NULL; node = node->next)
			render_html_node(&st, node, 0);
		xmlFreeDoc(doc);
	}
	text = buf_steal(&st.out);
	/* Trailing blank lines and spaces say nothing. */
	n = strlen(text);
	while (n > 0 && render_html_is_space((unsigned char)text[n - 1]))
		text[--n] = '\0';
	return text;
}

/* Adds a text part (HTML as text) to the index text, up to RENDER_INDEX_MAX. */
static void
render_index_visit(GMimeObject *part, void *arg)
{
	struct buf *buf = arg;
	GMimeContentType *type = g_mime_object_get_content_type(part);
	gchar *text;

	if (!GMIME_IS_TEXT_PART(part) || type == NULL || buf->len >= RENDER_INDEX_MAX ||
	    (!g_mime_content_type_is_type(type, "text", "html") &&
	     !g_mime_content_type_is_type(type, "text", "plain")))
		return;
	text = render_part_plain(part);
	buf_adds(buf, "\n");
	buf_add(buf, text, MIN(strlen(text), RENDER_INDEX_MAX - buf->len));
	g_free(text);
}

char *
render_index_text(const char *path)
{
	struct buf buf = {NULL, 0, 0};
	GMimeMessage *message;
	char error[256];
	const char *s;
	char *text;
	gchar *valid;

	message = render_load(path, error, sizeof(error));
	if (message == NULL)
		return xstrdup("");
	s = g_mime_message_get_subject(message);
	buf_adds(&buf, s != NULL ? s : "");
	InternetAddressList *lists[] = {g_mime_message_get_from(message),
	                                g_mime_message_get_to(message),
	                                g_mime_message_get_cc(message)};
	for (size_t i = 0; i < G_N_ELEMENTS(lists); i++) {
		if (lists[i] == NULL)
			continue;
		text = internet_address_list_to_string(lists[i], NULL, FALSE);
		buf_adds(&buf, "\n");
		buf_adds(&buf, text != NULL ? text : "");
		g_free(text);
	}
	render_walk(g_mime_message_get_mime_part(message), render_index_visit, &buf, 0);
	g_object_unref(message);
	/* The cap may have cut a character in half. */
	text = buf_steal(&buf);
	valid = g_utf8_make_valid(text, -1);
	free(text);
	text = xstrdup(valid);
	g_free(valid);
	return text;
}

int
render_attachments(const char *path, struct render_attachment **list_r, char *error, size_t errsize)
{
	struct render_collect c;
	GMimeMessage *message;

	*list_r = NULL;
	message = render_load(path, error, errsize);
	if (message == NULL)
		return -1;
	render_collect(message, &c);
	*list_r = xcalloc(c.count > 0 ? c.count : 1, sizeof(**list_r));
	for (size_t i = 0; i < c.count; i++)
		(*list_r)[i] = c.items[i].info;
	free(c.items);
	g_object_unref(message);
	return (int)c.count;
}

/* Creates name in dirfd without following or replacing anything, adding " (N)" before the
 * extension on collision. Returns the fd and the name used, or -1. */
static int
render_create_unique(int dirfd, const char *name, char *used, size_t usedsize)
{
	const char *dot = strrchr(name, '.');
	size_t stem = dot != NULL && dot != name ? (size_t)(dot - name) : strlen(name);

	for (int i = 1; i <= RENDER_MAX_SUFFIX; i++) {
		int fd;

		if (i == 1)
			snprintf(used, usedsize, "%s", name);
		else
			snprintf(used, usedsize, "%.*s (%d)%s", (int)stem, name, i, name + stem);
		fd =
		    openat(dirfd, used, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

/* Writes one attachment's decoded content into dirfd; 0 or -1 with error. */
static int
render_save_one(int dirfd, const struct render_found *f, char *error, size_t errsize)
{
	char used[300];
	GMimeStream *stream;
	gint64 n = -1;
	int fd;

	fd = render_create_unique(dirfd, f->info.filename, used, sizeof(used));
	if (fd < 0) {
		snprintf(error, errsize, "cannot create %s: %s", f->info.filename, strerror(errno));
		return -1;
	}
	stream = g_mime_stream_fs_new(fd); /* owns fd */
	n = render_part_write(f->part, stream);
	if (n >= 0 && g_mime_stream_flush(stream) < 0)
		n = -1;
	if (g_mime_stream_close(stream) < 0)
		n = -1;
	g_object_unref(stream);
	if (n < 0) {
		snprintf(error, errsize, "cannot write %s", used);
		unlinkat(dirfd, used, 0);
		return -1;
	}
	return 0;
}

int
render_save_attachments(const char *path, const char *dir, char *error, size_t errsize)
{
	struct render_collect c;
	GMimeMessage *message;
	int dirfd, saved = 0;

	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		snprintf(error, errsize, "cannot open directory %s: %s", dir, strerror(errno));
		return -1;
	}
	message = render_load(path, error, errsize);
	if (message == NULL) {
		close(dirfd);
		return -1;
	}
	render_collect(message, &c);
	for (size_t i = 0; i < c.count; i++) {
		if (render_save_one(dirfd, &c.items[i], error, errsize) < 0) {
			saved = -1;
			break;
		}
		saved++;
	}
	free(c.items);
	g_object_unref(message);
	close(dirfd);
	return saved;
}
