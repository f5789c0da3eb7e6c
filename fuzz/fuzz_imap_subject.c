/* fuzz_imap_subject: RFC 5256 base subjects and threading. The input is split into lines, one
 * message each: "subject|Message-ID|references" (missing fields are empty). Each subject's base
 * (raw, with encoded words: always; already decoded: when the input is) must be valid UTF-8
 * without leading or trailing white space, no longer than its input allows; both THREAD algorithms
 * over the messages must name every message exactly once, with balanced parentheses. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "imap/imap_sort.h"
#include "imap/imap_subject.h"
#include "imap/imap_thread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MSGS 64

/* in_valid: the input was valid UTF-8 (the decoded form only promises valid output then). */
static void
check_base(const char *base, size_t in_len, bool decoded, bool in_valid)
{
	size_t n = strlen(base);

	if (in_valid && !g_utf8_validate(base, -1, NULL))
		abort();
	if (n > 0 && (base[0] == ' ' || base[n - 1] == ' ' || base[n - 1] == '\t'))
		abort();
	/* Without decoding nothing is added (the text is only cut). */
	if (decoded && n > in_len)
		abort();
}

/* Every id 1..n appears once in out; parentheses balance and never go below zero. */
static void
check_threads(const char *out, size_t n)
{
	unsigned *seen = calloc(n + 1, sizeof(*seen));
	long depth = 0;

	for (const char *p = out; *p != '\0';) {
		if (*p == '(') {
			depth++;
			p++;
		} else if (*p == ')') {
			if (--depth < 0)
				abort();
			p++;
		} else if (*p == ' ') {
			p++;
		} else {
			char *end;
			unsigned long id = strtoul(p, &end, 10);

			if (end == p || id == 0 || id > n || seen[id]++ != 0)
				abort();
			p = end;
		}
	}
	if (depth != 0)
		abort();
	for (size_t i = 1; i <= n; i++)
		if (seen[i] != 1)
			abort();
	free(seen);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_thread_msg msgs[FUZZ_MSGS];
	char *subjects[FUZZ_MSGS], *ids[FUZZ_MSGS], **refs[FUZZ_MSGS];
	char *text, *line, *save = NULL;
	size_t n = 0;

	if (size > 65536)
		return 0;
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line != NULL && n < FUZZ_MSGS;
	     line = strtok_r(NULL, "\n", &save)) {
		char *subj = line, *id = strchr(line, '|'), *ref = NULL, *b;
		size_t nids;
		bool reply;

		if (id != NULL) {
			*id++ = '\0';
			if ((ref = strchr(id, '|')) != NULL)
				*ref++ = '\0';
		}
		b = imap_subject_base_decoded(subj, strlen(subj), NULL);
		check_base(b, strlen(subj), true, g_utf8_validate(subj, -1, NULL));
		free(b);
		subjects[n] = imap_subject_base(subj, strlen(subj), &reply);
		check_base(subjects[n], strlen(subj), false, true);
		ids[n] = NULL;
		if (id != NULL) {
			char **one = imap_sort_msgids(id, strlen(id), 1, false, &nids);

			if (nids == 1)
				ids[n] = one[0];
			free(one);
		}
		refs[n] = imap_sort_msgids(ref != NULL ? ref : "", ref != NULL ? strlen(ref) : 0,
		                           IMAP_SORT_REFS_MAX, true, &msgs[n].nrefs);
		msgs[n].refs = refs[n];
		msgs[n].id = (uint32_t)n + 1;
		msgs[n].seq = (uint32_t)n + 1;
		msgs[n].date = (int64_t)(strlen(subj) % 7); /* ties on purpose */
		msgs[n].subject = subjects[n];
		msgs[n].reply = reply;
		msgs[n].message_id = ids[n];
		n++;
	}
	for (int algo = 0; algo < 2; algo++) {
		char *out = imap_thread_build((enum imap_thread_algo)algo, msgs, n);

		check_threads(out, n);
		free(out);
	}
	for (size_t i = 0; i < n; i++) {
		free(subjects[i]);
		free(ids[i]);
		for (size_t r = 0; r < msgs[i].nrefs; r++)
			free(refs[i][r]);
		free(refs[i]);
	}
	free(text);
	return 0;
}
