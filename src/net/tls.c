/* tls: server contexts and self-signed certificates, made through OpenSSL 3's API. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "lib/util.h"

#define TLS_CERT_DAYS 3652 /* ten years, leap days included */
#define TLS_CIPHERS_TLS12 "ECDHE+AESGCM:ECDHE+CHACHA20"

/* Formats "what: openssl-error" into error and empties OpenSSL's error queue. The first queued
 * error is the root cause (for example "No such file or directory"); later ones only wrap it. */
static void __attribute__((format(printf, 3, 4)))
tls_error(char *error, size_t errsize, const char *fmt, ...)
{
	char what[512], ossl[256] = "";
	unsigned long e = ERR_get_error();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (e != 0)
		ERR_error_string_n(e, ossl, sizeof(ossl));
	ERR_clear_error();
	if (error == NULL || errsize == 0)
		return;
	if (ossl[0] != '\0')
		snprintf(error, errsize, "%s: %s", what, ossl);
	else
		snprintf(error, errsize, "%s", what);
}

/* True for a DNS name we are willing to put in a certificate: letters, digits, '-' and '.'. The
 * check also keeps the name from smuggling ",IP:..." into the subjectAltName text. */
static bool
tls_hostname_ok(const char *hostname)
{
	size_t len = strlen(hostname);

	if (len == 0 || len > 253 || hostname[0] == '.' || hostname[0] == '-')
		return false;
	for (const char *p = hostname; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* Adds one extension given in OpenSSL's config syntax ("critical,CA:FALSE"). */
static int
tls_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (ext == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* Builds and signs the certificate for pkey. Returns NULL with error. */
static X509 *
tls_build_cert(const char *hostname, EVP_PKEY *pkey, char *error, size_t errsize)
{
	X509 *cert = X509_new();
	BIGNUM *serial = BN_new();
	X509_NAME *name;
	X509V3_CTX ctx;
	unsigned char ip[16];
	char san[600];

	if (cert == NULL || serial == NULL)
		goto fail;
	if (X509_set_version(cert, X509_VERSION_3) != 1)
		goto fail;
	/* 128 random bits with the top one set: positive, non-zero, always 16 bytes. */
	if (BN_rand(serial, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) != 1 ||
	    BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) == NULL)
		goto fail;
	if (X509_gmtime_adj(X509_getm_notBefore(cert), 0) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), TLS_CERT_DAYS, 0, NULL) == NULL)
		goto fail;
	if (X509_set_pubkey(cert, pkey) != 1)
		goto fail;
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname,
	                               -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1)
		goto fail;

	/* An IP literal as hostname goes in as an IP entry, not a DNS one. */
	if (strcmp(hostname, "localhost") == 0 || strcmp(hostname, "127.0.0.1") == 0)
		snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1");
	else if (inet_pton(AF_INET, hostname, ip) == 1)
		snprintf(san, sizeof(san), "IP:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
	else
		snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if (tls_add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(cert, &ctx, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tls_add_ext(cert, &ctx, NID_ext_key_usage, "serverAuth") < 0 ||
	    tls_add_ext(cert, &ctx, NID_subject_alt_name, san) < 0 ||
	    tls_add_ext(cert, &ctx, NID_subject_key_identifier, "hash") < 0)
		goto fail;
	if (X509_sign(cert, pkey, EVP_sha256()) <= 0)
		goto fail;
	BN_free(serial);
	return cert;
fail:
	tls_error(error, errsize, "cannot make a certificate for %s", hostname);
	BN_free(serial);
	X509_free(cert);
	return NULL;
}

/* Opens path for writing with exactly mode (whatever the umask or an older file said). */
static FILE *
tls_open_out(const char *path, mode_t mode, char *error, size_t errsize)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	FILE *fp;

	if (fd < 0) {
		snprintf(error, errsize, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fchmod(fd, mode) < 0 || (fp = fdopen(fd, "w")) == NULL) {
		snprintf(error, errsize, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	return fp;
}

/* Flushes to disk and closes fp; on failure removes path. Returns 0 or -1 with error. */
static int
tls_close_out(FILE *fp, const char *path, bool written, char *error, size_t errsize)
{
	int saved = 0;

	if (!written)
		tls_error(error, errsize, "%s: cannot write PEM", path);
	else if (fflush(fp) != 0 || fsync(fileno(fp)) < 0)
		saved = errno;
	if (fclose(fp) != 0 && saved == 0)
		saved = errno;
	if (written && saved != 0)
		snprintf(error, errsize, "%s: %s", path, strerror(saved));
	if (!written || saved != 0) {
		unlink(path);
		return -1;
	}
	return 0;
}

int
tls_make_self_signed(const char *hostname, const char *cert_path, const char *key_path, char *error,
                     size_t errsize)
{
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	FILE *fp;
	int ret = -1;

	if (!tls_hostname_ok(hostname)) {
		char esc[128];

		log_escape(esc, sizeof(esc), hostname, strlen(hostname));
		snprintf(error, errsize, "'%s' is not a valid host name for a certificate", esc);
		return -1;
	}
	pkey = EVP_EC_gen("P-256");
	if (pkey == NULL) {
		tls_error(error, errsize, "cannot make an EC P-256 key");
		return -1;
	}
	cert = tls_build_cert(hostname, pkey, error, errsize);
	if (cert == NULL)
		goto out;

	fp = tls_open_out(key_path, 0600, error, errsize);
	if (fp == NULL)
		goto out;
	if (tls_close_out(fp, key_path,
	                  PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL) == 1, error,
	                  errsize) < 0)
		goto out;

	fp = tls_open_out(cert_path, 0644, error, errsize);
	if (fp == NULL) {
		unlink(key_path);
		goto out;
	}
	if (tls_close_out(fp, cert_path, PEM_write_X509(fp, cert) == 1, error, errsize) < 0) {
		unlink(key_path);
		goto out;
	}
	log_debug("tls event=self-signed host=%s cert=%s key=%s", hostname, cert_path, key_path);
	ret = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return ret;
}

SSL_CTX *
tls_server_ctx_new(const char *cert_path, const char *key_path, const char *min_version,
                   char *error, size_t errsize)
{
	SSL_CTX *ctx;
	int version;

	if (strcmp(min_version, "TLSv1.2") == 0) {
		version = TLS1_2_VERSION;
	} else if (strcmp(min_version, "TLSv1.3") == 0) {
		version = TLS1_3_VERSION;
	} else {
		char esc[64];

		log_escape(esc, sizeof(esc), min_version, strlen(min_version));
		snprintf(error, errsize, "unknown TLS version '%s' (use TLSv1.2 or TLSv1.3)", esc);
		return NULL;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_error(error, errsize, "cannot make a TLS context");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, version) != 1) {
		tls_error(error, errsize, "cannot set the minimum TLS version %s", min_version);
		goto fail;
	}
	/* TLS 1.2: forward-secret AEAD suites only. TLS 1.3 keeps OpenSSL's default suites, which
	 * are all AEAD already. */
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_TLS12) != 1) {
		tls_error(error, errsize, "cannot set the cipher list %s", TLS_CIPHERS_TLS12);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Idle connections are the common case at 10,000 sessions; do not keep 34 KB of buffers
	 * per connection while nothing is being read or written. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		tls_error(error, errsize, "%s: cannot load the certificate chain", cert_path);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL compares the key with the loaded certificate already here. */
		if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH)
			tls_error(error, errsize, "%s does not match the certificate %s", key_path,
			          cert_path);
		else
			tls_error(error, errsize, "%s: cannot load the private key", key_path);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(error, errsize, "%s does not match the certificate %s", key_path,
		          cert_path);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
