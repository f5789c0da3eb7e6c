/* Unit tests for net/tls: the self-signed certificate, the server context, real handshakes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/util.h"
#include "net/tls.h"

struct fixture {
	char dir[64];
	char cert[128];
	char key[128];
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char error[512];

	str_copy(f->dir, "/tmp/tern-test-tls-XXXXXX", sizeof(f->dir));
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
	if (tls_make_self_signed("mx.example.test", f->cert, f->key, error, sizeof(error)) != 0) {
		fprintf(stderr, "# %s\n", error);
		return -1;
	}
	*state = f;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static X509 *
read_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *cert;

	assert_non_null(fp);
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(cert);
	return cert;
}

static EVP_PKEY *
read_key(const char *path)
{
	FILE *fp = fopen(path, "r");
	EVP_PKEY *pkey;

	assert_non_null(fp);
	pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(pkey);
	return pkey;
}

static void
test_file_modes(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(f->cert, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
}

static void
test_certificate_contents(void **state)
{
	struct fixture *f = *state;
	X509 *cert = read_cert(f->cert);
	EVP_PKEY *pkey = read_key(f->key);
	GENERAL_NAMES *names;
	bool dns_host = false, dns_localhost = false, ip4 = false, ip6 = false;
	char cn[256];
	int days, secs;

	/* Self-signed with its own key, SHA-256, EC P-256. */
	assert_int_equal(X509_verify(cert, pkey), 1);
	assert_int_equal(X509_check_private_key(cert, pkey), 1);
	assert_int_equal(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
	assert_int_equal(EVP_PKEY_get_base_id(pkey), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_bits(pkey), 256);
	assert_int_equal(X509_get_version(cert), X509_VERSION_3);

	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
	                                      sizeof(cn)) > 0);
	assert_string_equal(cn, "mx.example.test");
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)), 0);

	/* A 128-bit serial. */
	{
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
		assert_int_equal(BN_num_bits(bn), 128);
		BN_free(bn);
	}

	/* Valid from now for about ten years. */
	assert_int_equal(
	    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
	assert_true(days >= 3650 && days <= 3653);
	assert_true(X509_cmp_current_time(X509_get0_notBefore(cert)) <= 0);

	/* Extensions. */
	assert_int_equal(X509_check_ca(cert), 0);
	assert_true(X509_get_extension_flags(cert) & EXFLAG_BCONS);
	assert_int_equal(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
	assert_non_null(X509_get0_subject_key_id(cert));
	{
		int crit = -1;
		BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
		assert_non_null(bc);
		assert_int_equal(crit, 1);
		assert_false(bc->ca);
		BASIC_CONSTRAINTS_free(bc);
		ASN1_BIT_STRING *ku = X509_get_ext_d2i(cert, NID_key_usage, &crit, NULL);
		assert_non_null(ku);
		assert_int_equal(crit, 1);
		ASN1_BIT_STRING_free(ku);
	}

	names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	assert_non_null(names);
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const unsigned char *d;
		int len;

		if (gn->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(gn->d.dNSName);
			len = ASN1_STRING_length(gn->d.dNSName);
			if (len == 15 && memcmp(d, "mx.example.test", 15) == 0)
				dns_host = true;
			else if (len == 9 && memcmp(d, "localhost", 9) == 0)
				dns_localhost = true;
			else
				fail_msg("unexpected DNS name %.*s", len, d);
		} else if (gn->type == GEN_IPADD) {
			unsigned char want4[4], want6[16];

			inet_pton(AF_INET, "127.0.0.1", want4);
			inet_pton(AF_INET6, "::1", want6);
			d = ASN1_STRING_get0_data(gn->d.iPAddress);
			len = ASN1_STRING_length(gn->d.iPAddress);
			if (len == 4 && memcmp(d, want4, 4) == 0)
				ip4 = true;
			else if (len == 16 && memcmp(d, want6, 16) == 0)
				ip6 = true;
			else
				fail_msg("unexpected IP address of length %d", len);
		} else {
			fail_msg("unexpected subjectAltName type %d", gn->type);
		}
	}
	assert_true(dns_host && dns_localhost && ip4 && ip6);
	GENERAL_NAMES_free(names);
	assert_int_equal(X509_check_host(cert, "mx.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(cert, "other.example.test", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(cert, "::1", 0), 1);

	X509_free(cert);
	EVP_PKEY_free(pkey);
}

static void
test_serials_differ(void **state)
{
	struct fixture *f = *state;
	char cert2[160], key2[160], error[512];
	X509 *a, *b;

	snprintf(cert2, sizeof(cert2), "%s/cert2.pem", f->dir);
	snprintf(key2, sizeof(key2), "%s/key2.pem", f->dir);
	assert_int_equal(tls_make_self_signed("localhost", cert2, key2, error, sizeof(error)), 0);
	a = read_cert(f->cert);
	b = read_cert(cert2);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)),
	                     0);
	X509_free(a);
	X509_free(b);
}

static void
test_bad_hostname(void **state)
{
	struct fixture *f = *state;
	char cert2[160], key2[160], error[512];
	const char *bad[] = {"", "a,IP:10.0.0.1", "a b", "-x", "a\nb", NULL};

	snprintf(cert2, sizeof(cert2), "%s/bad-cert.pem", f->dir);
	snprintf(key2, sizeof(key2), "%s/bad-key.pem", f->dir);
	for (size_t i = 0; bad[i] != NULL; i++) {
		assert_int_equal(tls_make_self_signed(bad[i], cert2, key2, error, sizeof(error)),
		                 -1);
		assert_non_null(strstr(error, "not a valid host name"));
		assert_int_equal(access(key2, F_OK), -1);
	}
	/* An unwritable path names the path. */
	assert_int_equal(tls_make_self_signed("localhost", "/nonexistent/c.pem",
	                                      "/nonexistent/k.pem", error, sizeof(error)),
	                 -1);
	assert_non_null(strstr(error, "/nonexistent/"));
}

static void
test_server_ctx(void **state)
{
	struct fixture *f = *state;
	char cert2[160], key2[160], error[512];
	SSL_CTX *ctx;

	ctx = tls_server_ctx_new(f->cert, f->key, "TLSv1.2", error, sizeof(error));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Every TLS 1.2 suite offered is AEAD with ECDHE. */
	{
		STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
		for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
			const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
			int kx = SSL_CIPHER_get_kx_nid(c);

			assert_true(SSL_CIPHER_is_aead(c));
			/* TLS 1.3 suites say "any": the key exchange is always ephemeral there. */
			assert_true(kx == NID_kx_ecdhe || kx == NID_kx_any);
		}
	}
	SSL_CTX_free(ctx);

	ctx = tls_server_ctx_new(f->cert, f->key, "TLSv1.3", error, sizeof(error));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	SSL_CTX_free(ctx);

	assert_null(tls_server_ctx_new(f->cert, f->key, "TLSv1.1", error, sizeof(error)));
	assert_non_null(strstr(error, "TLSv1.1"));

	/* Missing files name the path and carry OpenSSL's reason. */
	assert_null(
	    tls_server_ctx_new("/nonexistent/cert.pem", f->key, "TLSv1.2", error, sizeof(error)));
	assert_non_null(strstr(error, "/nonexistent/cert.pem"));
	assert_non_null(strstr(error, "error:"));
	assert_null(
	    tls_server_ctx_new(f->cert, "/nonexistent/key.pem", "TLSv1.2", error, sizeof(error)));
	assert_non_null(strstr(error, "/nonexistent/key.pem"));

	/* A key that is not the certificate's. */
	snprintf(cert2, sizeof(cert2), "%s/other-cert.pem", f->dir);
	snprintf(key2, sizeof(key2), "%s/other-key.pem", f->dir);
	assert_int_equal(tls_make_self_signed("localhost", cert2, key2, error, sizeof(error)), 0);
	error[0] = '\0';
	assert_null(tls_server_ctx_new(f->cert, key2, "TLSv1.2", error, sizeof(error)));
	assert_non_null(strstr(error, key2));
	assert_non_null(strstr(error, "does not match the certificate"));
	assert_non_null(strstr(error, "error:"));
	/* Nothing left behind for the next caller. */
	assert_int_equal(ERR_peek_error(), 0);
}

/* Runs both sides of a handshake over a non-blocking socketpair. Returns 1 when both finish,
 * 0 when either fails. */
static int
handshake(SSL *server, SSL *client)
{
	bool server_done = false, client_done = false;

	for (int round = 0; round < 1000 && !(server_done && client_done); round++) {
		if (!client_done) {
			int r = SSL_connect(client);
			if (r == 1)
				client_done = true;
			else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(client, r) != SSL_ERROR_WANT_WRITE)
				return 0;
		}
		if (!server_done) {
			int r = SSL_accept(server);
			if (r == 1)
				server_done = true;
			else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(server, r) != SSL_ERROR_WANT_WRITE)
				return 0;
		}
	}
	return server_done && client_done;
}

/* Connects a client limited to [min, max] that trusts the test certificate and checks host;
 * returns the negotiated version, or 0 when the handshake fails. */
static int
connect_with(struct fixture *f, const char *server_min, int min, int max, const char *host,
             bool legacy)
{
	char error[512];
	SSL_CTX *sctx = tls_server_ctx_new(f->cert, f->key, server_min, error, sizeof(error));
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *server, *client;
	int sv[2], version = 0;

	assert_non_null(sctx);
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_load_verify_locations(cctx, f->cert, NULL), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_min_proto_version(cctx, min);
	SSL_CTX_set_max_proto_version(cctx, max);
	/* Let the client really offer TLS 1.1, so that it is the server that says no. */
	if (legacy)
		assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	server = SSL_new(sctx);
	client = SSL_new(cctx);
	SSL_set_fd(server, sv[0]);
	SSL_set_fd(client, sv[1]);
	SSL_set_tlsext_host_name(client, host);
	assert_int_equal(SSL_set1_host(client, host), 1);

	if (handshake(server, client)) {
		assert_int_equal(SSL_get_verify_result(client), X509_V_OK);
		assert_true(SSL_CIPHER_is_aead(SSL_get_current_cipher(client)));
		version = SSL_version(client);
		/* And application data flows. */
		assert_int_equal(SSL_write(client, "EHLO x\r\n", 8), 8);
		{
			char buf[16];
			int n = -1;
			for (int i = 0; i < 100 && n <= 0; i++)
				n = SSL_read(server, buf, sizeof(buf));
			assert_int_equal(n, 8);
			assert_memory_equal(buf, "EHLO x\r\n", 8);
		}
	}
	ERR_clear_error();
	SSL_free(server);
	SSL_free(client);
	close(sv[0]);
	close(sv[1]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return version;
}

static void
test_handshake_tls12(void **state)
{
	assert_int_equal(
	    connect_with(*state, "TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION, "localhost", false),
	    TLS1_2_VERSION);
}

static void
test_handshake_tls13(void **state)
{
	assert_int_equal(
	    connect_with(*state, "TLSv1.2", TLS1_3_VERSION, TLS1_3_VERSION, "localhost", false),
	    TLS1_3_VERSION);
	assert_int_equal(connect_with(*state, "TLSv1.3", 0, 0, "mx.example.test", false),
	                 TLS1_3_VERSION);
}

static void
test_handshake_refused(void **state)
{
	/* TLS 1.1 at most: the server refuses. */
	assert_int_equal(
	    connect_with(*state, "TLSv1.2", TLS1_VERSION, TLS1_1_VERSION, "localhost", true), 0);
	/* TLS 1.2 at most against a TLS 1.3-only server. */
	assert_int_equal(
	    connect_with(*state, "TLSv1.3", TLS1_2_VERSION, TLS1_2_VERSION, "localhost", false), 0);
	/* The client checks the name: the certificate is not for this host. */
	assert_int_equal(connect_with(*state, "TLSv1.2", 0, 0, "other.example.test", false), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_modes),      cmocka_unit_test(test_certificate_contents),
	    cmocka_unit_test(test_serials_differ),  cmocka_unit_test(test_bad_hostname),
	    cmocka_unit_test(test_server_ctx),      cmocka_unit_test(test_handshake_tls12),
	    cmocka_unit_test(test_handshake_tls13), cmocka_unit_test(test_handshake_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
