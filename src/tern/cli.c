/* cli: helpers shared by the tern commands and the shell. */
#include "tern/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/util.h"

#define CLI_DATE_WIDTH 10
#define CLI_FROM_WIDTH 20
#define CLI_FOLDER_WIDTH 10
#define CLI_MIN_COLUMNS 72

struct cli_screen_map *cli_screen_map;

int
cli_open_store(const char *cmd, struct tern_paths *paths_r, struct lstore **store_r)
{
	char error[512];

	if (tern_paths_get(paths_r, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern %s: %s\n", cmd, error);
		return -1;
	}
	if (lstore_open(paths_r->data_dir, store_r, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern %s: cannot open the local store in %s: %s\n", cmd,
		        paths_r->data_dir, error);
		return -1;
	}
	return 0;
}

int
cli_load_account(const char *cmd, const struct tern_paths *paths, const char *name,
                 struct account **list_r, const struct account **account_r)
{
	char error[512];
	size_t n = 0;

	*list_r = NULL;
	if (accounts_load(paths, list_r, &n, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern %s: %s\n", cmd, error);
		return -1;
	}
	if (n == 0) {
		fprintf(stderr,
		        "tern %s: no accounts yet: add one with 'tern account add NAME "
		        "--address ADDRESS --pop3 HOST:PORT ...' (see 'tern account --help')\n",
		        cmd);
		free(*list_r);
		*list_r = NULL;
		return -1;
	}
	*account_r = accounts_find(*list_r, n, name, error, sizeof(error));
	if (*account_r == NULL) {
		fprintf(stderr, "tern %s: %s\n", cmd, error);
		free(*list_r);
		*list_r = NULL;
		return -1;
	}
	return 0;
}

int
cli_bad_option(const char *cmd, char **argv, int optind_now)
{
	const char *what = optind_now > 0 ? argv[optind_now - 1] : "?";

	fprintf(stderr, "tern %s: unknown option or missing value: %s (see 'tern %s --help')\n",
	        cmd, what, cmd);
	return CLI_USAGE;
}

int
cli_parse_id(const char *s, int64_t *id_r)
{
	char *end;
	long long v;

	if (*s == '#')
		s++;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return -1;
	*id_r = v;
	return 0;
}

int
cli_parse_count(const char *s, int *count_r)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 1000000000L)
		return -1;
	*count_r = (int)v;
	return 0;
}

/* Decodes one UTF-8 character at p: its code point (or -1 for a bad byte) and length. */
static int32_t
cli_utf8_next(const unsigned char *p, size_t *len_r)
{
	int32_t cp;
	size_t need;

	if (p[0] < 0x80) {
		*len_r = 1;
		return p[0];
	}
	if ((p[0] & 0xE0) == 0xC0) {
		cp = p[0] & 0x1F;
		need = 1;
	} else if ((p[0] & 0xF0) == 0xE0) {
		cp = p[0] & 0x0F;
		need = 2;
	} else if ((p[0] & 0xF8) == 0xF0) {
		cp = p[0] & 0x07;
		need = 3;
	} else {
		*len_r = 1;
		return -1;
	}
	for (size_t i = 1; i <= need; i++) {
		if ((p[i] & 0xC0) != 0x80) {
			*len_r = 1;
			return -1;
		}
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	*len_r = need + 1;
	if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
		*len_r = 1;
		return -1;
	}
	return cp;
}

/* Terminal columns of a code point: 0 for combining and invisible marks, 2 for East Asian wide
 * characters and emoji, 1 otherwise; -1 for what must not reach the terminal. */
static int
cli_char_width(int32_t cp)
{
	static const struct {
		int32_t lo, hi;
	} zero[] = {{0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x0610, 0x061A},
	            {0x064B, 0x065F}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x200B, 0x200F},
	            {0x202A, 0x202E}, {0x2060, 0x206F}, {0x20D0, 0x20FF}, {0xFE00, 0xFE0F},
	            {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF}},
	  wide[] = {{0x1100, 0x115F},   {0x231A, 0x231B},   {0x2E80, 0x303E},  {0x3041, 0x33FF},
	            {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},  {0xAC00, 0xD7A3},
	            {0xF900, 0xFAFF},   {0xFE30, 0xFE4F},   {0xFF00, 0xFF60},  {0xFFE0, 0xFFE6},
	            {0x1F300, 0x1F64F}, {0x1F900, 0x1F9FF}, {0x20000, 0x3FFFD}};

	if (cp < 0 || cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
		return -1;
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if (cp >= zero[i].lo && cp <= zero[i].hi)
			return 0;
	for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
		if (cp >= wide[i].lo && cp <= wide[i].hi)
			return 2;
	return 1;
}

/* Columns the whole string takes, with unprintable characters counted as one '?'. */
static int
cli_text_width(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int total = 0;

	while (*p != '\0') {
		size_t len;
		int w = cli_char_width(cli_utf8_next(p, &len));
		total += w < 0 ? 1 : w;
		p += len;
	}
	return total;
}

void
cli_print_fit(FILE *fp, const char *s, int width, bool pad)
{
	const unsigned char *p = (const unsigned char *)s;
	bool cut = cli_text_width(s) > width;
	int limit = cut ? width - 1 : width, used = 0;

	while (*p != '\0') {
		size_t len;
		int32_t cp = cli_utf8_next(p, &len);
		int w = cli_char_width(cp);

		if ((w < 0 ? 1 : w) + used > limit)
			break;
		if (w < 0) {
			fputc(cp == '\t' || cp == '\n' || cp == '\r' ? ' ' : '?', fp);
			used++;
		} else {
			/* Bidirectional overrides are zero-width but reorder what follows: dropped.
			 */
			if (!(w == 0 &&
			      ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))))
				fwrite(p, 1, len, fp);
			used += w;
		}
		p += len;
	}
	if (cut && width > 0) {
		fputs("…", fp);
		used++;
	}
	for (; pad && used < width; used++)
		fputc(' ', fp);
}

void
cli_print_safe(FILE *fp, const char *s)
{
	cli_print_fit(fp, s, cli_text_width(s), false);
}

/* The name part of "Name <addr>", or the address when there is no name. */
static void
cli_from_display(const char *from, char *out, size_t outsize)
{
	const char *lt = strrchr(from, '<');
	size_t len;

	if (lt == NULL || lt == from) {
		if (lt == from) {
			str_copy(out, lt + 1, outsize);
			out[strcspn(out, ">")] = '\0';
		} else {
			str_copy(out, from, outsize);
		}
		return;
	}
	len = (size_t)(lt - from);
	while (len > 0 && (from[len - 1] == ' ' || from[len - 1] == '\t'))
		len--;
	if (len >= 2 && from[0] == '"' && from[len - 1] == '"') {
		from++;
		len -= 2;
	}
	if (len == 0) {
		str_copy(out, lt + 1, outsize);
		out[strcspn(out, ">")] = '\0';
		return;
	}
	if (len >= outsize)
		len = outsize - 1;
	memcpy(out, from, len);
	out[len] = '\0';
}

/* Short local date: "14:05" today, "Nov 24" this year, "2025-11-24" before. */
static void
cli_short_date(int64_t date, char *buf, size_t bufsize)
{
	time_t t = (time_t)date, now = time(NULL);
	struct tm tm, tm_now;

	if (date == 0) {
		str_copy(buf, "-", bufsize);
		return;
	}
	localtime_r(&t, &tm);
	localtime_r(&now, &tm_now);
	if (tm.tm_year == tm_now.tm_year && tm.tm_yday == tm_now.tm_yday)
		strftime(buf, bufsize, "%H:%M", &tm);
	else if (tm.tm_year == tm_now.tm_year && date <= (int64_t)now)
		strftime(buf, bufsize, "%b %d", &tm);
	else
		strftime(buf, bufsize, "%Y-%m-%d", &tm);
}

void
cli_table_begin(struct cli_table *table, bool json)
{
	struct winsize ws;

	memset(table, 0, sizeof(*table));
	table->json = json;
	table->columns = 80;
	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		table->columns = ws.ws_col < CLI_MIN_COLUMNS ? CLI_MIN_COLUMNS : ws.ws_col;
	if (json)
		fputc('[', stdout);
}

void
cli_json_message(FILE *fp, const struct lstore_message *m)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {{LSTORE_FLAG_SEEN, "seen"},
	             {LSTORE_FLAG_ANSWERED, "answered"},
	             {LSTORE_FLAG_FLAGGED, "flagged"},
	             {LSTORE_FLAG_DRAFT, "draft"}};
	char date[32];
	bool first = true;

	fprintf(fp, "{\"id\": %" PRId64 ", \"account\": ", m->id);
	json_write_string(fp, m->account);
	fputs(", \"folder\": ", fp);
	json_write_string(fp, m->folder);
	fputs(", \"from\": ", fp);
	json_write_string(fp, m->from);
	fputs(", \"to\": ", fp);
	json_write_string(fp, m->to);
	fputs(", \"subject\": ", fp);
	json_write_string(fp, m->subject);
	fputs(", \"date\": ", fp);
	if (m->date != 0) {
		time_format_iso8601(m->date, date, sizeof(date));
		json_write_string(fp, date);
	} else {
		fputs("null", fp);
	}
	fprintf(fp, ", \"size\": %" PRIu64 ", \"flags\": [", m->size);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((m->flags & names[i].bit) == 0)
			continue;
		fprintf(fp, "%s\"%s\"", first ? "" : ", ", names[i].name);
		first = false;
	}
	fprintf(fp, "], \"has_attachments\": %s}", m->has_attachments ? "true" : "false");
}

void
cli_table_row(struct cli_table *table, const struct lstore_message *m, int64_t number)
{
	char date[32], from[512];
	int subject_width;

	if (table->json) {
		fputs(table->rows == 0 ? "\n  " : ",\n  ", stdout);
		cli_json_message(stdout, m);
		table->rows++;
		return;
	}
	/* marker(2) id(6) date folder from subject, two spaces apart: the folder tells the Sent
	 * copy from the INBOX copy of the same message; 80 columns leave the subject 23. */
	subject_width = table->columns - (2 + 1 + 6 + 2 + CLI_DATE_WIDTH + 2 + CLI_FOLDER_WIDTH +
	                                  2 + CLI_FROM_WIDTH + 2);
	if (table->rows == 0)
		printf("%-2s %6s  %-*s  %-*s  %-*s  %s\n", "", cli_screen_map != NULL ? "#" : "ID",
		       CLI_DATE_WIDTH, "DATE", CLI_FOLDER_WIDTH, "FOLDER", CLI_FROM_WIDTH, "FROM",
		       "SUBJECT");
	cli_short_date(m->date, date, sizeof(date));
	cli_from_display(m->from, from, sizeof(from));
	printf("%c%c %6" PRId64 "  %-*s  ", (m->flags & LSTORE_FLAG_SEEN) ? ' ' : 'N',
	       m->has_attachments ? '@' : ' ', number, CLI_DATE_WIDTH, date);
	cli_print_fit(stdout, m->folder[0] != '\0' ? m->folder : "-", CLI_FOLDER_WIDTH, true);
	fputs("  ", stdout);
	cli_print_fit(stdout, from[0] != '\0' ? from : "-", CLI_FROM_WIDTH, true);
	fputs("  ", stdout);
	cli_print_fit(stdout, m->subject[0] != '\0' ? m->subject : "(no subject)", subject_width,
	              false);
	fputc('\n', stdout);
	table->rows++;
}

void
cli_table_end(struct cli_table *table, const char *empty)
{
	if (table->json)
		fputs(table->rows == 0 ? "]\n" : "\n]\n", stdout);
	else if (table->rows == 0 && empty != NULL)
		printf("%s\n", empty);
	fflush(stdout);
}
