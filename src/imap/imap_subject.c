/* imap_subject: RFC 5256 2.1 base subject extraction (see imap_subject.h). */
#include "imap/imap_subject.h"

#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "lib/util.h"
#include "mime/summary.h"

/* A subject being cut down: text[begin, end) is what is left. */
struct subj {
	char *text;
	size_t begin, end;
	bool reply;
};

static bool
subj_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Whether the text left starts with word (ASCII, case-insensitive) at offset off. */
static bool
subj_has(const struct subj *s, size_t off, const char *word)
{
	size_t n = strlen(word);

	return s->begin + off + n <= s->end && strncasecmp(s->text + s->begin + off, word, n) == 0;
}

/* Length of a subj-blob ("[" *BLOBCHAR "]" *WSP) at offset off, or 0. */
static size_t
subj_blob(const struct subj *s, size_t off)
{
	size_t i = s->begin + off;

	if (i >= s->end || s->text[i] != '[')
		return 0;
	for (i++; i < s->end && s->text[i] != ']'; i++)
		if (s->text[i] == '[' || s->text[i] == '\0')
			return 0;
	if (i >= s->end)
		return 0;
	for (i++; i < s->end && subj_is_wsp(s->text[i]); i++)
		;
	return i - (s->begin + off);
}

/* Step 2: removes trailing subj-trailer ("(fwd)" / WSP), repeatedly. */
static void
subj_trailers(struct subj *s)
{
	for (;;) {
		if (s->end > s->begin && subj_is_wsp(s->text[s->end - 1])) {
			s->end--;
			continue;
		}
		if (s->end - s->begin >= 5 && strncasecmp(s->text + s->end - 5, "(fwd)", 5) == 0) {
			s->end -= 5;
			s->reply = true;
			continue;
		}
		return;
	}
}

/* Length of a subj-refwd (("re" / "fw" ["d"]) *WSP [subj-blob] ":") at offset off, or 0. */
static size_t
subj_refwd(const struct subj *s, size_t off)
{
	size_t i;

	if (subj_has(s, off, "re"))
		i = off + 2;
	else if (subj_has(s, off, "fwd"))
		i = off + 3;
	else if (subj_has(s, off, "fw"))
		i = off + 2;
	else
		return 0;
	while (s->begin + i < s->end && subj_is_wsp(s->text[s->begin + i]))
		i++;
	i += subj_blob(s, i);
	if (s->begin + i < s->end && s->text[s->begin + i] == ':')
		return i + 1 - off;
	return 0;
}

/* Step 3: removes one subj-leader ((*subj-blob subj-refwd) / WSP). Returns whether it did. */
static bool
subj_leader(struct subj *s)
{
	size_t off = 0, n, r;

	if (s->begin < s->end && subj_is_wsp(s->text[s->begin])) {
		s->begin++;
		return true;
	}
	while ((n = subj_blob(s, off)) > 0)
		off += n;
	if ((r = subj_refwd(s, off)) == 0)
		return false;
	s->begin += off + r;
	s->reply = true;
	return true;
}

/* Step 4: removes a leading subj-blob when text is left after it. */
static bool
subj_leading_blob(struct subj *s)
{
	size_t n = subj_blob(s, 0);

	if (n == 0 || s->begin + n >= s->end)
		return false;
	s->begin += n;
	return true;
}

/* Step 6: "[fwd:" ... "]" around everything. */
static bool
subj_fwd_wrapper(struct subj *s)
{
	if (!subj_has(s, 0, "[fwd:") || s->end - s->begin < 6 || s->text[s->end - 1] != ']')
		return false;
	s->begin += 5;
	s->end--;
	s->reply = true;
	return true;
}

/* Step 1's white space: tabs and line breaks become spaces, runs collapse to one. In place. */
static size_t
subj_spaces(char *t, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = t[i];

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && o > 0 && t[o - 1] == ' ')
			continue;
		t[o++] = c;
	}
	return o;
}

char *
imap_subject_base_decoded(const char *text, size_t len, bool *reply_r)
{
	struct subj s = {NULL, 0, 0, false};
	char *out;

	if (len > IMAP_SUBJECT_MAX) {
		len = IMAP_SUBJECT_MAX;
		/* Not in the middle of a UTF-8 sequence. */
		while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
			len--;
	}
	s.text = xstrndup(text, len);
	/* A NUL ends the text: what follows it is not part of the subject. */
	s.end = subj_spaces(s.text, strlen(s.text));
	for (;;) {
		bool changed;

		subj_trailers(&s);
		do {
			changed = false;
			while (subj_leader(&s))
				changed = true;
			if (subj_leading_blob(&s))
				changed = true;
		} while (changed);
		if (!subj_fwd_wrapper(&s))
			break;
	}
	out = xstrndup(s.text + s.begin, s.end - s.begin);
	free(s.text);
	if (reply_r != NULL)
		*reply_r = s.reply;
	return out;
}

char *
imap_subject_base(const char *raw, size_t len, bool *reply_r)
{
	char *copy, *dec, *valid, *out;

	mime_init();
	if (len > IMAP_SUBJECT_MAX)
		len = IMAP_SUBJECT_MAX;
	copy = g_strndup(raw, len);
	dec = g_mime_utils_header_decode_text(NULL, copy);
	valid = g_utf8_make_valid(dec != NULL ? dec : copy, -1);
	out = imap_subject_base_decoded(valid, strlen(valid), reply_r);
	g_free(valid);
	g_free(dec);
	g_free(copy);
	return out;
}
