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
	struct store_search *ss; /* a reference: valid on the worker even after store_free */
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
	int key;

	if (s->mailbox == NULL || s->mailbox_id <= 0 || !imap_match_index_key(m, &key, &needle))
		return NULL;
	x = xcalloc(1, sizeof(*x));
	x->ss = store_search_ref(s->server->store);
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
	r = store_search_candidates(x->ss, x->mailbox_id, x->key, x->needle, &x->uids, &x->nuids,
	                            error, sizeof(error));
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
	store_search_unref(&x->ss);
	free(x->uids);
	free(x->needle);
	free(x);
	*xp = NULL;
}
