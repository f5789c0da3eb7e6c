/* push_json: event lines for push clients and webhooks. */
#include "push/push_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "push/push_parser.h"
#include "store/store.h"

/* Longest text field we format: notify's and store's fields are shorter. */
#define PUSH_JSON_TEXT_MAX 1024

/* Writes s as a JSON string, invalid UTF-8 replaced by U+FFFD (three octets each). */
static void
push_json_text(FILE *fp, const char *s)
{
	char buf[3 * PUSH_JSON_TEXT_MAX + 1];
	size_t len = strnlen(s, PUSH_JSON_TEXT_MAX), n = 0, i = 0;

	if (push_utf8_valid(s, len) && s[len] == '\0') {
		json_write_string(fp, s);
		return;
	}
	while (i < len) {
		size_t step = 1;

		/* The longest valid sequence starting here (1 to 4 octets). */
		for (size_t k = 4; k >= 1; k--) {
			if (i + k <= len && push_utf8_valid(s + i, k)) {
				step = k;
				break;
			}
		}
		if (step == 1 && (unsigned char)s[i] >= 0x80) {
			memcpy(buf + n, "\xef\xbf\xbd", 3);
			n += 3;
		} else {
			memcpy(buf + n, s + i, step);
			n += step;
		}
		i += step;
	}
	buf[n] = '\0';
	json_write_string(fp, buf);
}

/* An in-memory stream for one line; push_json_close returns its text. */
static FILE *
push_json_open(char **buf_r, size_t *len_r)
{
	FILE *fp = open_memstream(buf_r, len_r);

	if (fp == NULL)
		fatal("push event=open_memstream-failed");
	return fp;
}

static char *
push_json_close(FILE *fp, char **buf, size_t *len)
{
	if (fclose(fp) != 0 || *buf == NULL)
		fatal("push event=memstream-failed");
	return *buf;
}

static void
push_json_date(FILE *fp, const char *key, int64_t t)
{
	char date[32];

	time_format_iso8601(t, date, sizeof(date));
	fprintf(fp, ",\"%s\":\"%s\"", key, date);
}

char *
push_json_new(const struct push_json_message *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = push_json_open(&buf, &len);

	fputs("{\"type\":\"new\",\"mailbox\":", fp);
	push_json_text(fp, m->mailbox);
	fprintf(fp, ",\"uidvalidity\":%u,\"uid\":%u,\"from\":", m->uidvalidity, m->uid);
	push_json_text(fp, m->from);
	fputs(",\"subject\":", fp);
	push_json_text(fp, m->subject);
	push_json_date(fp, "date", m->date);
	fprintf(fp, ",\"size\":%llu", (unsigned long long)m->size);
	if (m->replay)
		fputs(",\"replay\":true", fp);
	if (m->account != NULL) {
		fputs(",\"account\":", fp);
		push_json_text(fp, m->account);
	}
	fputc('}', fp);
	return push_json_close(fp, &buf, &len);
}

/* "flags":[...]: the system flags, then the keywords. */
static void
push_json_flags(FILE *fp, uint32_t flags, const char *keywords)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
	    {STORE_FLAG_SEEN, "\\Seen"},       {STORE_FLAG_ANSWERED, "\\Answered"},
	    {STORE_FLAG_FLAGGED, "\\Flagged"}, {STORE_FLAG_DELETED, "\\Deleted"},
	    {STORE_FLAG_DRAFT, "\\Draft"},
	};
	char kw[NOTIFY_KEYWORDS_MAX];
	bool first = true;
	char *save = NULL;

	fputs(",\"flags\":[", fp);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((flags & names[i].bit) == 0)
			continue;
		fputs(first ? "" : ",", fp);
		json_write_string(fp, names[i].name);
		first = false;
	}
	str_copy(kw, keywords, sizeof(kw));
	for (char *k = strtok_r(kw, " ", &save); k != NULL; k = strtok_r(NULL, " ", &save)) {
		fputs(first ? "" : ",", fp);
		push_json_text(fp, k);
		first = false;
	}
	fputc(']', fp);
}

char *
push_json_event(const struct notify_event *ev, const char *mailbox, uint32_t uidvalidity)
{
	static const char *const mailbox_events[] = {"created", "deleted", "renamed"};
	char *buf = NULL;
	size_t len = 0;
	FILE *fp;

	if (ev->kind == NOTIFY_NEW) {
		struct push_json_message m = {
		    .mailbox = mailbox,
		    .uidvalidity = uidvalidity,
		    .uid = ev->uid,
		    .from = ev->from,
		    .subject = ev->subject,
		    .date = ev->internal_date,
		    .size = ev->size,
		};
		return push_json_new(&m);
	}
	fp = push_json_open(&buf, &len);
	switch (ev->kind) {
	case NOTIFY_EXPUNGE:
	case NOTIFY_FLAGS:
		fprintf(fp, "{\"type\":\"%s\",\"mailbox\":",
		        ev->kind == NOTIFY_EXPUNGE ? "expunge" : "flags");
		push_json_text(fp, mailbox);
		fprintf(fp, ",\"uidvalidity\":%u,\"uid\":%u", uidvalidity, ev->uid);
		if (ev->kind == NOTIFY_FLAGS)
			push_json_flags(fp, ev->flags, ev->keywords);
		break;
	case NOTIFY_MAILBOX_CREATED:
	case NOTIFY_MAILBOX_DELETED:
	case NOTIFY_MAILBOX_RENAMED:
		fprintf(fp, "{\"type\":\"mailbox\",\"event\":\"%s\",\"mailbox\":",
		        mailbox_events[ev->kind - NOTIFY_MAILBOX_CREATED]);
		push_json_text(fp, mailbox);
		if (ev->kind == NOTIFY_MAILBOX_RENAMED) {
			fputs(",\"old\":", fp);
			push_json_text(fp, ev->old_mailbox);
		}
		break;
	case NOTIFY_NEW:
	case NOTIFY_SUBSCRIBED: /* never subscribed to (NOTIFY_KINDS_DEFAULT) */
	case NOTIFY_UNSUBSCRIBED:
		break;
	}
	fputc('}', fp);
	return push_json_close(fp, &buf, &len);
}

char *
push_json_keepalive(int64_t now)
{
	char date[32];

	time_format_iso8601(now, date, sizeof(date));
	return xasprintf("{\"type\":\"keepalive\",\"time\":\"%s\"}", date);
}

char *
push_json_resync(const char *reason)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = push_json_open(&buf, &len);

	fputs("{\"type\":\"resync\",\"reason\":", fp);
	push_json_text(fp, reason);
	fputc('}', fp);
	return push_json_close(fp, &buf, &len);
}
