/* password: argon2id hashing and verification (libsodium). Both calls are slow on purpose
 * (tens of milliseconds and 64 MiB): never call them on the event-loop thread. */
#ifndef TERN_PASSWORD_H
#define TERN_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_HASH_MAX 128 /* crypto_pwhash_STRBYTES */

/* Call once per process (sodium_init). Returns 0 or -1. */
int password_init(void);
/* Writes an encoded "$argon2id$..." string. Returns 0 or -1 (out of memory). */
int password_hash(const char *password, char hash_r[PASSWORD_HASH_MAX]);
/* Constant-time verification. True when password matches hash. */
bool password_verify(const char *hash, const char *password);
/* A random password of len printable characters (no look-alikes), for the demo user. */
void password_random(char *out, size_t len);

#endif
