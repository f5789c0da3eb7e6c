/* imap_search_index: the candidates of a SEARCH from the store's full-text index (see
 * imap_search_index.h). */
#include "imap/imap_search_index.h"

#include <stdlib.h>
#include <string.h>

#include "imap/imap_match.h"
#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

struct imap_search_index {
	struct store_search_snap *snap; /* the index as the search began; NULL once queried */
	int64_t mailbox_id;
	enum store_search_key key;
	char *needle; /* case-folded, a copy */
	char session[40];
	bool ran;
	bool narrowed;  /* the query answered: uids are the only candidates */
	uint32_t *uids; /* ascending */
	size_t nuids;
};

struct imap_search_index *
imap_search_index_new(struct imap_session *s, const struct imap_match *m)
{
	struct imap_search_index *x;
	const char *needle;
	char error[256];
	int key;

	if (s->mailbox == NULL || s->mailbox_id <= 0 || !imap_match_index_key(m, &key, &needle))
		return NULL;
	x = xcalloc(1, sizeof(*x));
	x->snap = store_search_begin(s->server->store, error, sizeof(error));
	if (x->snap == NULL)
		log_warnx("imap session=%s event=search-index-failed error=\"%s\"", s->conn.id,
		          error);
	x->mailbox_id = s->mailbox_id;
	x->key = (enum store_search_key)key;
	x->needle = xstrdup(needle);
	str_copy(x->session, s->conn.id, sizeof(x->session));
	return x;
}

void
imap_search_index_run(struct imap_search_index *x)
{
	char error[256];
	int r;

	if (x->ran)
		return;
	x->ran = true;
	if (x->snap == NULL)
		return; /* no view of the index: every message is a candidate */
	r = store_search_candidates(x->snap, x->mailbox_id, x->key, x->needle, &x->uids, &x->nuids,
	                            error, sizeof(error));
	store_search_end(&x->snap);
	x->narrowed = r == 1;
	if (r < 0)
		log_warnx("imap session=%s event=search-index-failed error=\"%s\"", x->session,
		          error);
	else
		log_debug("imap session=%s event=search-index key=%d candidates=%zu", x->session,
		          (int)x->key, x->nuids);
}

bool
imap_search_index_ready(const struct imap_search_index *x)
{
	return x->ran;
}

bool
imap_search_index_candidate(const struct imap_search_index *x, uint32_t uid)
{
	size_t lo = 0, hi = x->nuids;

	if (!x->narrowed)
		return true;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (x->uids[mid] == uid)
			return true;
		if (x->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void
imap_search_index_free(struct imap_search_index **xp)
{
	struct imap_search_index *x = *xp;

	if (x == NULL)
		return;
	store_search_end(&x->snap);
	free(x->uids);
	free(x->needle);
	free(x);
	*xp = NULL;
}
