/* hash: the one hash table. Keys are byte strings (copied into the table), values are pointers
 * the caller owns.
 *
 * Keys often come from the network (client addresses, logins, mailbox names), so buckets are
 * chosen by SipHash-2-4 (libsodium's crypto_shorthash) under a random key per table: nobody can
 * aim many keys at one bucket (a hash flood). Separate chaining; the bucket array doubles when
 * the table holds as many entries as buckets, so a lookup stays O(1) on average.
 *
 * A table belongs to one thread. Values must not be NULL (NULL means "absent"). */
#ifndef TERN_HASH_H
#define TERN_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hash;

struct hash *hash_new(void);
/* Frees the table and its keys (not the values); *h becomes NULL. */
void hash_free(struct hash **h);
size_t hash_count(const struct hash *h);

void *hash_get(const struct hash *h, const void *key, size_t keylen);
/* Sets key's value; returns the value it replaces, or NULL when the key is new. */
void *hash_put(struct hash *h, const void *key, size_t keylen, void *value);
/* Removes key; returns its value, or NULL when it was absent. */
void *hash_remove(struct hash *h, const void *key, size_t keylen);

/* Calls cb for every entry, in no particular order. When cb returns true the entry is removed
 * (cb may free the value first). cb must not change the table otherwise. */
typedef bool hash_visit_fn(const void *key, size_t keylen, void *value, void *arg);
void hash_foreach(struct hash *h, hash_visit_fn *cb, void *arg);

/* NUL-terminated string keys and 64-bit integer keys. */
void *hash_get_str(const struct hash *h, const char *key);
void *hash_put_str(struct hash *h, const char *key, void *value);
void *hash_remove_str(struct hash *h, const char *key);
void *hash_get_int(const struct hash *h, int64_t key);
void *hash_put_int(struct hash *h, int64_t key, void *value);
void *hash_remove_int(struct hash *h, int64_t key);

#endif
