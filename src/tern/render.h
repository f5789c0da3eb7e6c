/* render: turns stored messages into what a person reads on a terminal, with GMime, and HTML
 * into text with libxml2's HTML parser. */
#ifndef TERN_RENDER_H
#define TERN_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum render_mode {
	RENDER_TEXT = 0, /* From/To/Cc/Date/Subject, the text part (or the HTML part as text),
	                  * then the attachments listed */
	RENDER_HTML,     /* the HTML part as it is */
	RENDER_RAW,      /* the stored bytes */
	RENDER_HEADERS,  /* every header, decoded */
};

/* Writes the message at path to out. Returns 0 or -1 with error. */
int render_message(FILE *out, const char *path, enum render_mode mode, char *error, size_t errsize);
/* HTML to plain UTF-8 text: block elements break lines, lists get bullets, links become
 * "text <url>", entities are decoded, script/style/head are dropped. malloc'ed; never NULL. */
char *render_html_to_text(const char *html, size_t len);
/* The text the search index holds for a message: decoded subject, from, to, and every text part
 * (HTML as text), concatenated. malloc'ed; "" when nothing. */
char *render_index_text(const char *path);

struct render_attachment {
	char filename[256]; /* decoded (RFC 2231/2047); "attachment-N" when unnamed */
	char content_type[128];
	uint64_t size; /* decoded size */
};
/* Lists attachments; *list_r malloc'ed. Returns the count or -1. */
int render_attachments(const char *path, struct render_attachment **list_r, char *error,
                       size_t errsize);
/* Writes every attachment into dir (decoded, bit-exact), never outside it: file names are
 * reduced to their last path component, and an existing file gets a " (2)" style suffix.
 * Returns the number saved or -1 with error. */
int render_save_attachments(const char *path, const char *dir, char *error, size_t errsize);

#endif
