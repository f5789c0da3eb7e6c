/* password: argon2id hashes in libsodium's encoded string form, and random passwords. */
#include "auth/password.h"

#include <string.h>

#include <sodium.h>

#include "lib/log.h"

int
password_init(void)
{
	if (sodium_init() < 0) {
		log_error("auth event=sodium-init result=failed");
		return -1;
	}
	return 0;
}

int
password_hash(const char *password, char hash_r[PASSWORD_HASH_MAX])
{
	_Static_assert(PASSWORD_HASH_MAX >= crypto_pwhash_STRBYTES, "hash buffer too small");

	if (crypto_pwhash_str(hash_r, password, strlen(password),
	                      crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		log_warnx("auth event=password-hash result=failed reason=out-of-memory");
		return -1;
	}
	return 0;
}

bool
password_verify(const char *hash, const char *password)
{
	/* crypto_pwhash_str_verify reads up to STRBYTES: refuse anything that does not fit. */
	if (hash == NULL || password == NULL ||
	    strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
		return false;
	if (strncmp(hash, "$argon2", 7) != 0)
		return false;
	return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

/* Fills out with len - 1 characters and a NUL (len is the buffer size, so it never overflows),
 * drawn uniformly from an alphabet without look-alikes (no 0/O, 1/l/I). */
void
password_random(char *out, size_t len)
{
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

	if (len == 0)
		return;
	for (size_t i = 0; i + 1 < len; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[len - 1] = '\0';
}
