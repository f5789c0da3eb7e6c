/* hash: a keyed-SipHash chained hash table (see hash.h). */
#include "lib/hash.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/log.h"
#include "lib/util.h"

#define HASH_MIN_BUCKETS 16

struct hash_entry {
	struct hash_entry *next;
	uint64_t code;
	void *value;
	size_t keylen;
	unsigned char key[]; /* keylen bytes */
};

struct hash {
	struct hash_entry **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	unsigned char sipkey[crypto_shorthash_KEYBYTES];
};

static uint64_t
hash_code(const struct hash *h, const void *key, size_t keylen)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t code;

	crypto_shorthash(out, key, keylen, h->sipkey);
	memcpy(&code, out, sizeof(code));
	return code;
}

struct hash *
hash_new(void)
{
	struct hash *h = xcalloc(1, sizeof(*h));

	if (sodium_init() < 0)
		fatalx("hash event=init error=\"libsodium cannot start\"");
	crypto_shorthash_keygen(h->sipkey);
	h->nbuckets = HASH_MIN_BUCKETS;
	h->buckets = xcalloc(h->nbuckets, sizeof(*h->buckets));
	return h;
}

void
hash_free(struct hash **hp)
{
	struct hash *h = *hp;

	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nbuckets; i++) {
		while (h->buckets[i] != NULL) {
			struct hash_entry *e = h->buckets[i];

			h->buckets[i] = e->next;
			free(e);
		}
	}
	free(h->buckets);
	free(h);
	*hp = NULL;
}

size_t
hash_count(const struct hash *h)
{
	return h->count;
}

/* The link that points at key's entry, or at the NULL ending its bucket's chain. */
static struct hash_entry **
hash_find(const struct hash *h, const void *key, size_t keylen, uint64_t code)
{
	struct hash_entry **pp = &h->buckets[code & (h->nbuckets - 1)];

	while (*pp != NULL && !((*pp)->code == code && (*pp)->keylen == keylen &&
	                        memcmp((*pp)->key, key, keylen) == 0))
		pp = &(*pp)->next;
	return pp;
}

static void
hash_grow(struct hash *h)
{
	size_t n = h->nbuckets * 2;
	struct hash_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < h->nbuckets; i++) {
		while (h->buckets[i] != NULL) {
			struct hash_entry *e = h->buckets[i];

			h->buckets[i] = e->next;
			e->next = b[e->code & (n - 1)];
			b[e->code & (n - 1)] = e;
		}
	}
	free(h->buckets);
	h->buckets = b;
	h->nbuckets = n;
}

void *
hash_get(const struct hash *h, const void *key, size_t keylen)
{
	struct hash_entry *e = *hash_find(h, key, keylen, hash_code(h, key, keylen));

	return e != NULL ? e->value : NULL;
}

void *
hash_put(struct hash *h, const void *key, size_t keylen, void *value)
{
	uint64_t code = hash_code(h, key, keylen);
	struct hash_entry **pp = hash_find(h, key, keylen, code), *e;
	void *old;

	if (value == NULL)
		fatalx("hash event=put-null");
	if (*pp != NULL) {
		old = (*pp)->value;
		(*pp)->value = value;
		return old;
	}
	e = xmalloc(sizeof(*e) + keylen);
	e->next = NULL;
	e->code = code;
	e->value = value;
	e->keylen = keylen;
	memcpy(e->key, key, keylen);
	*pp = e;
	h->count++;
	if (h->count > h->nbuckets)
		hash_grow(h);
	return NULL;
}

void *
hash_remove(struct hash *h, const void *key, size_t keylen)
{
	struct hash_entry **pp = hash_find(h, key, keylen, hash_code(h, key, keylen)), *e = *pp;
	void *value;

	if (e == NULL)
		return NULL;
	*pp = e->next;
	value = e->value;
	free(e);
	h->count--;
	return value;
}

void
hash_foreach(struct hash *h, hash_visit_fn *cb, void *arg)
{
	for (size_t i = 0; i < h->nbuckets; i++) {
		struct hash_entry **pp = &h->buckets[i];

		while (*pp != NULL) {
			struct hash_entry *e = *pp;

			if (cb(e->key, e->keylen, e->value, arg)) {
				*pp = e->next;
				free(e);
				h->count--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void *
hash_get_str(const struct hash *h, const char *key)
{
	return hash_get(h, key, strlen(key));
}

void *
hash_put_str(struct hash *h, const char *key, void *value)
{
	return hash_put(h, key, strlen(key), value);
}

void *
hash_remove_str(struct hash *h, const char *key)
{
	return hash_remove(h, key, strlen(key));
}

void *
hash_get_int(const struct hash *h, int64_t key)
{
	return hash_get(h, &key, sizeof(key));
}

void *
hash_put_int(struct hash *h, int64_t key, void *value)
{
	return hash_put(h, &key, sizeof(key), value);
}

void *
hash_remove_int(struct hash *h, int64_t key)
{
	return hash_remove(h, &key, sizeof(key));
}
