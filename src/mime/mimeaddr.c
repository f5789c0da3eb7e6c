/* mimeaddr: renderings of address-list values (see mimeaddr.h). */
#include "mime/mimeaddr.h"

#include <stdbool.h>
#include <string.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/mimestruct.h"
#include "mime/summary.h"

/* A display name (quotes removed, possibly RFC 2047-encoded) decoded to UTF-8. g_free(). */
static char *
mimeaddr_decode_name(const char *name, size_t len)
{
	char *raw = g_strndup(name, len);
	char *dec = g_mime_utils_header_decode_phrase(NULL, raw);

	g_free(raw);
	return dec;
}

/* RFC 5322 atext, and 8-bit bytes (raw UTF-8 names). */
static bool
mimeaddr_is_atext(unsigned char c)
{
	return c >= 0x80 || g_ascii_isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* A display name as Dovecot writes it before matching: as it is when it is one atom (an
 * encoded word is one), otherwise quoted ("Other Sender" included). */
static void
mimeaddr_put_name(GString *out, const char *name, size_t len)
{
	bool atom = true;

	for (size_t i = 0; i < len && atom; i++)
		atom = mimeaddr_is_atext((unsigned char)name[i]);
	if (atom) {
		g_string_append_len(out, name, (gssize)len);
		return;
	}
	g_string_append_c(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '"' || name[i] == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, name[i]);
	}
	g_string_append_c(out, '"');
}

struct mimeaddr_render_ctx {
	GString *out;
	bool group;   /* inside a group: addresses follow its "name:" */
	bool started; /* something was written in the current list */
};

static void
mimeaddr_render_one(const struct mimestruct_address *a, void *arg)
{
	struct mimeaddr_render_ctx *c = arg;

	if (a->mailbox == NULL) { /* a group's end */
		g_string_append_c(c->out, ';');
		c->group = false;
		c->started = true;
		return;
	}
	if (c->started)
		g_string_append(c->out, ", ");
	if (a->host == NULL) { /* a group's start: the mailbox is its name */
		mimeaddr_put_name(c->out, a->mailbox, a->mailbox_len);
		g_string_append(c->out, ": ");
		c->group = true;
		c->started = false;
		return;
	}
	if (a->name != NULL && a->name_len > 0) {
		mimeaddr_put_name(c->out, a->name, a->name_len);
		g_string_append(c->out, " <");
	}
	g_string_append_len(c->out, a->mailbox, (gssize)a->mailbox_len);
	g_string_append_c(c->out, '@');
	g_string_append_len(c->out, a->host, (gssize)a->host_len);
	if (a->name != NULL && a->name_len > 0)
		g_string_append_c(c->out, '>');
	c->started = true;
}

char *
mimeaddr_render(const char *v, size_t len)
{
	struct mimeaddr_render_ctx c = {g_string_new(NULL), false, false};
	char *out;
	mime_init();
	char *dec;

	mimestruct_addresses(v, len, mimeaddr_render_one, &c);
	/* Encoded words are decoded last, over the whole rendering (as Dovecot). */
	dec = g_mime_utils_header_decode_text(NULL, c.out->str);
	out = xstrdup(dec != NULL ? dec : c.out->str);
	g_free(dec);
	g_string_free(c.out, TRUE);
	return out;
}

struct mimeaddr_first_ctx {
	char *mailbox;
	char *display;
};

static void
mimeaddr_first_one(const struct mimestruct_address *a, void *arg)
{
	struct mimeaddr_first_ctx *c = arg;

	if (c->mailbox != NULL || a->mailbox == NULL || a->host == NULL)
		return;
	c->mailbox = xstrndup(a->mailbox, a->mailbox_len);
	if (a->name != NULL && a->name_len > 0) {
		char *dec = mimeaddr_decode_name(a->name, a->name_len);

		c->display = xstrdup(dec);
		g_free(dec);
	} else {
		char *d = g_strdup_printf("%.*s@%.*s", (int)a->mailbox_len, a->mailbox,
		                          (int)a->host_len, a->host);

		c->display = xstrdup(d);
		g_free(d);
	}
}

int
mimeaddr_first(const char *v, size_t len, char **mailbox_r, char **display_r)
{
	struct mimeaddr_first_ctx c = {NULL, NULL};

	mime_init();
	mimestruct_addresses(v, len, mimeaddr_first_one, &c);
	*mailbox_r = c.mailbox;
	*display_r = c.display;
	return c.mailbox != NULL ? 1 : 0;
}
