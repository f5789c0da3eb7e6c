/* tls: server TLS contexts and self-signed certificates, through OpenSSL's API. */
#ifndef TERN_TLS_H
#define TERN_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* Makes a new EC P-256 key and a self-signed X.509v3 certificate valid for ten years whose
 * subjectAltName holds DNS:hostname, DNS:localhost and IP:127.0.0.1 (and IP:::1), and writes them
 * as PEM to cert_path (0644) and key_path (0600). Returns 0 or -1 with error. */
int tls_make_self_signed(const char *hostname, const char *cert_path, const char *key_path,
                         char *error, size_t errsize);

/* A server context: TLS 1.2 minimum (min_version "TLSv1.2" or "TLSv1.3"), AEAD-only TLS 1.2
 * cipher list, server cipher preference, no compression, no renegotiation, session tickets.
 * Loads the certificate chain and key and checks that they match. Returns NULL with error. */
SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, const char *min_version,
                            char *error, size_t errsize);

#endif
