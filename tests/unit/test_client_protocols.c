/* Unit tests for the tern client's SMTP, POP3 and IMAP sides and its connection layer, against a
 * scripted fake server on loopback: happy paths checked byte for byte, and lying servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "client/conn.h"
#include "client/imap_client.h"
#include "client/pop3_client.h"
#include "client/smtp_client.h"
#include "lib/util.h"
#include "net/tls.h"

enum step_kind {
	EXPECT,  /* read one line and compare it (without CRLF) */
	SEND,    /* write the text */
	DATA,    /* read SMTP DATA up to "." and keep it as received */
	CLOSE,   /* close the connection now */
	FLOOD,   /* write 'A's without a newline until the client goes away (at most 1 GB) */
	HANG,    /* send nothing; wait for the client to close, counting what it sends */
	STARTTLS /* TLS handshake as the server from here on */
};

struct step {
	enum step_kind kind;
	const char *text;
};

struct fake {
	const char *bind_addr;
	int listen_fd, port;
	const struct step *script;
	bool implicit_tls;
	bool bytewise; /* SEND one byte per write (TCP_NODELAY, a pause between), to split reads */
	pthread_t thread;
	int fd;
	SSL *ssl;
	char failure[512]; /* why the script stopped early, or "" */
	char data[4096];   /* what DATA received */
	size_t data_len;
	uint64_t flooded, hang_bytes;
	bool handshake_failed;
};

static char cert_path[128], key_path[128], tmpdir[64];
static SSL_CTX *server_ctx;

static ssize_t
fake_read(struct fake *f, void *buf, size_t len)
{
	if (f->ssl != NULL) {
		int n = SSL_read(f->ssl, buf, (int)len);
		return n > 0 ? n : -1;
	}
	return recv(f->fd, buf, len, 0);
}

static ssize_t
fake_write_raw(struct fake *f, const void *buf, size_t len)
{
	if (f->ssl != NULL) {
		int n = SSL_write(f->ssl, buf, (int)len);
		return n > 0 ? n : -1;
	}
	return send(f->fd, buf, len, MSG_NOSIGNAL);
}

/* Writes all of buf, or in bytewise mode one byte per send() with a pause after each, so that
 * the client's reads end at every possible place. */
static ssize_t
fake_write(struct fake *f, const void *buf, size_t len)
{
	const char *p = buf;

	if (!f->bytewise)
		return fake_write_raw(f, buf, len);
	for (size_t i = 0; i < len; i++) {
		if (fake_write_raw(f, p + i, 1) != 1)
			return -1;
		usleep(100);
	}
	return (ssize_t)len;
}

/* Reads one line without its CRLF; -1 at EOF or after 1000 bytes. */
static int
fake_line(struct fake *f, char *line, size_t size)
{
	size_t n = 0;
	char ch;

	while (n + 1 < size) {
		if (fake_read(f, &ch, 1) != 1)
			return -1;
		if (ch == '\n') {
			if (n > 0 && line[n - 1] == '\r')
				n--;
			line[n] = '\0';
			return 0;
		}
		line[n++] = ch;
	}
	return -1;
}

static void
fake_handshake(struct fake *f)
{
	f->ssl = SSL_new(server_ctx);
	SSL_set_fd(f->ssl, f->fd);
	if (SSL_accept(f->ssl) != 1) {
		f->handshake_failed = true;
		snprintf(f->failure, sizeof(f->failure), "TLS handshake failed");
	}
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	struct timeval tv = {10, 0};
	char line[1024];
	sigset_t pipe;

	/* The fake's own SSL_write may raise SIGPIPE: keep it on this thread, where it stays
	 * pending and harmless. The client's thread keeps the default action, so a client that
	 * let SIGPIPE through would kill the test. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);

	f->fd = accept(f->listen_fd, NULL, NULL);
	if (f->fd < 0) {
		snprintf(f->failure, sizeof(f->failure), "accept: %s", strerror(errno));
		return NULL;
	}
	setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(f->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (f->bytewise) {
		int one = 1;
		setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (f->implicit_tls)
		fake_handshake(f);
	for (const struct step *s = f->script; f->failure[0] == '\0' && s->text != NULL; s++) {
		switch (s->kind) {
		case EXPECT:
			if (fake_line(f, line, sizeof(line)) != 0)
				snprintf(f->failure, sizeof(f->failure), "EOF, expected '%s'",
				         s->text);
			else if (strcmp(line, s->text) != 0)
				snprintf(f->failure, sizeof(f->failure), "got '%s', expected '%s'",
				         line, s->text);
			break;
		case SEND:
			fake_write(f, s->text, strlen(s->text));
			break;
		case DATA:
			while (fake_line(f, line, sizeof(line)) == 0) {
				size_t len = strlen(line);
				if (f->data_len + len + 2 < sizeof(f->data)) {
					memcpy(f->data + f->data_len, line, len);
					memcpy(f->data + f->data_len + len, "\r\n", 2);
					f->data_len += len + 2;
				}
				if (strcmp(line, ".") == 0)
					break;
			}
			break;
		case CLOSE:
			shutdown(f->fd, SHUT_RDWR);
			break;
		case FLOOD: {
			static char as[65536];
			memset(as, 'A', sizeof(as));
			while (f->flooded < (1ULL << 30) && fake_write(f, as, sizeof(as)) > 0)
				f->flooded += sizeof(as);
			break;
		}
		case HANG: {
			ssize_t n;
			while ((n = fake_read(f, line, sizeof(line))) > 0)
				f->hang_bytes += (uint64_t)n;
			break;
		}
		case STARTTLS:
			fake_handshake(f);
			break;
		}
	}
	if (f->ssl != NULL) {
		SSL_shutdown(f->ssl);
		SSL_free(f->ssl);
	}
	close(f->fd);
	return NULL;
}

/* Listens on bind_addr (127.0.0.1 by default), port 0, and plays the script in a thread. */
static void
fake_start(struct fake *f, const struct step *script)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	f->script = script;
	f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	inet_pton(AF_INET, f->bind_addr != NULL ? f->bind_addr : "127.0.0.1", &sin.sin_addr);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

/* Joins and checks that the whole script was played. */
static void
fake_finish(struct fake *f)
{
	fake_join(f);
	if (f->failure[0] != '\0')
		fail_msg("fake server: %s", f->failure);
}

static struct conn_options
plain_options(const struct fake *f)
{
	return (struct conn_options){.host = "127.0.0.1",
	                             .port = f->port,
	                             .security = CONN_SECURITY_NONE,
	                             .timeout_ms = 5000};
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", haystack, needle);
	if (getenv("TEST_VERBOSE") != NULL)
		print_message("# error: %s\n", haystack);
}

static long
rss_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(fp);
	return kib;
}

#define AUTH_PLAIN_ALICE "AGFsaWNlAHNlY3JldA==" /* "\0alice\0secret" */

/* A message with a leading dot, a bare LF, a ".." line and no final CRLF (40 bytes on the wire). */
static const char smtp_message[] = "Subject: hi\r\n\r\n.dot\nbare\r\n..two\r\nlast";
static const char smtp_stuffed[] = "Subject: hi\r\n\r\n..dot\r\nbare\r\n...two\r\nlast\r\n.\r\n";

/* A whole pipelined session; returns what the server received as DATA in data (NUL-terminated)
 * for comparing a bytewise run with a normal one. */
static void
smtp_pipelining_session(bool bytewise, char *data, size_t datasize)
{
	static const struct step script[] = {
	    {SEND, "220 fake ESMTP\r\n"},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250-fake\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"
	           "250 AUTH PLAIN LOGIN\r\n"},
	    {EXPECT, "AUTH PLAIN " AUTH_PLAIN_ALICE},
	    {SEND, "235 2.7.0 ok\r\n"},
	    /* All three read before any reply: a client that waits would time out here. */
	    {EXPECT, "MAIL FROM:<alice@example.test> SIZE=40"},
	    {EXPECT, "RCPT TO:<bob@example.test>"},
	    {EXPECT, "RCPT TO:<carol@example.test>"},
	    {EXPECT, "DATA"},
	    {SEND, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n251 2.1.5 forwarded\r\n354 go\r\n"},
	    {DATA, ""},
	    {SEND, "250 2.0.0 queued\r\n"},
	    {EXPECT, "QUIT"},
	    {SEND, "221 bye\r\n"},
	    {0, NULL}};
	struct fake f = {.bytewise = bytewise};
	struct smtp_client *c;
	const char *rcpts[] = {"bob@example.test", "carol@example.test"};
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {
	    .conn = plain_options(&f), .helo = "tern.test", .user = "alice", .password = "secret"};
	if (smtp_client_open(&o, &c, error, sizeof(error)) != 0)
		fail_msg("open: %s", error);
	if (smtp_client_send(c, "alice@example.test", rcpts, 2, smtp_message, strlen(smtp_message),
	                     error, sizeof(error)) != 0)
		fail_msg("send: %s", error);
	smtp_client_close(&c);
	assert_null(c);
	fake_finish(&f);
	assert_int_equal(f.data_len, strlen(smtp_stuffed));
	assert_memory_equal(f.data, smtp_stuffed, f.data_len);
	assert_true(f.data_len < datasize);
	memcpy(data, f.data, f.data_len);
	data[f.data_len] = '\0';
}

static void
test_smtp_send_pipelining(void **state)
{
	char data[4096];

	smtp_pipelining_session(false, data, sizeof(data));
}

/* The multi-line EHLO reply (and every other reply) arriving one byte per segment: the same
 * capabilities (SIZE=, AUTH PLAIN, PIPELINING, checked by the script) and the same DATA. */
static void
test_smtp_bytewise(void **state)
{
	char normal[4096], bytewise[4096];

	smtp_pipelining_session(false, normal, sizeof(normal));
	smtp_pipelining_session(true, bytewise, sizeof(bytewise));
	assert_string_equal(bytewise, normal);
}

static void
test_smtp_send_sequential_login_8bit(void **state)
{
	static const struct step script[] = {
	    {SEND, "220-fake ESMTP\r\n220 second greeting line\r\n"},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250-fake\r\n250-8BITMIME\r\n250 AUTH LOGIN\r\n"},
	    {EXPECT, "AUTH LOGIN"},
	    {SEND, "334 VXNlcm5hbWU6\r\n"},
	    {EXPECT, "YWxpY2U="},
	    {SEND, "334 UGFzc3dvcmQ6\r\n"},
	    {EXPECT, "c2VjcmV0"},
	    {SEND, "235 ok\r\n"},
	    {EXPECT, "MAIL FROM:<> BODY=8BITMIME"},
	    {SEND, "250 ok\r\n"},
	    {EXPECT, "RCPT TO:<bob@example.test>"},
	    {SEND, "250 ok\r\n"},
	    {EXPECT, "DATA"},
	    {SEND, "354 go\r\n"},
	    {DATA, ""},
	    {SEND, "250 queued\r\n"},
	    {EXPECT, "QUIT"},
	    {SEND, "221 bye\r\n"},
	    {0, NULL}};
	static const char body[] = "Subject: caf\xc3\xa9\r\n\r\n.\r\n";
	struct fake f = {0};
	struct smtp_client *c;
	const char *rcpts[] = {"bob@example.test"};
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {
	    .conn = plain_options(&f), .helo = "tern.test", .user = "alice", .password = "secret"};
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), 0);
	assert_int_equal(
	    smtp_client_send(c, "", rcpts, 1, body, strlen(body), error, sizeof(error)), 0);
	smtp_client_close(&c);
	fake_finish(&f);
	assert_string_equal(f.data, "Subject: caf\xc3\xa9\r\n\r\n..\r\n.\r\n");
}

static void
test_smtp_recipient_refused(void **state)
{
	static const struct step script[] = {
	    {SEND, "220 fake\r\n"},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250 fake\r\n"},
	    {EXPECT, "MAIL FROM:<alice@example.test>"},
	    {SEND, "250 ok\r\n"},
	    {EXPECT, "RCPT TO:<nobody@example.test>"},
	    {SEND, "550 5.1.1 <nobody@example.test>: user \"unknown\"\r\n"},
	    {EXPECT, "RSET"},
	    {SEND, "250 ok\r\n"},
	    {EXPECT, "QUIT"},
	    {SEND, "221 bye\r\n"},
	    {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c;
	const char *rcpts[] = {"nobody@example.test"};
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f), .helo = "tern.test"};
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), 0);
	assert_int_equal(
	    smtp_client_send(c, "alice@example.test", rcpts, 1, "x\r\n", 3, error, sizeof(error)),
	    -1);
	assert_contains(error, "recipient <nobody@example.test> refused: 550 5.1.1");
	assert_contains(error, "user \\\"unknown\\\"");
	smtp_client_close(&c);
	fake_finish(&f);
}

static void
test_smtp_malformed_greeting(void **state)
{
	static const struct step script[] = {
	    {SEND, "hello, I am not SMTP\r\n"}, {HANG, ""}, {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f)};
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), -1);
	assert_null(c);
	assert_contains(error, "malformed reply from 127.0.0.1:");
	assert_contains(error, "hello, I am not SMTP");
	fake_finish(&f);
}

static void
test_smtp_reply_code_changes(void **state)
{
	static const struct step script[] = {
	    {SEND, "220 fake\r\n"},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250-fake\r\n250-PIPELINING\r\n550-surprise\r\n250 ok\r\n"},
	    {HANG, ""},
	    {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f), .helo = "tern.test"};
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), -1);
	assert_contains(error, "code 250 changed to 550");
	fake_finish(&f);
}

static void
test_smtp_starttls_injection(void **state)
{
	static const struct step script[] = {{SEND, "220 fake\r\n"},
	                                     {EXPECT, "EHLO tern.test"},
	                                     {SEND, "250-fake\r\n250 STARTTLS\r\n"},
	                                     {EXPECT, "STARTTLS"},
	                                     {SEND, "220 go ahead\r\n250 injected\r\n"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f), .helo = "tern.test"};
	o.conn.security = CONN_SECURITY_STARTTLS;
	o.conn.ca_file = cert_path;
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), -1);
	assert_contains(error, "sent data before TLS started");
	fake_finish(&f);
	assert_int_equal(f.hang_bytes, 0); /* no ClientHello was sent */
}

static void
test_smtp_starttls_real(void **state)
{
	static const struct step script[] = {
	    {SEND, "220 fake\r\n"},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250-fake\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n"},
	    {EXPECT, "STARTTLS"},
	    {SEND, "220 go ahead\r\n"},
	    {STARTTLS, ""},
	    {EXPECT, "EHLO tern.test"},
	    {SEND, "250-fake\r\n250 AUTH PLAIN\r\n"},
	    {EXPECT, "AUTH PLAIN " AUTH_PLAIN_ALICE},
	    {SEND, "235 ok\r\n"},
	    {EXPECT, "QUIT"},
	    {SEND, "221 bye\r\n"},
	    {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct smtp_client_options o = {
	    .conn = plain_options(&f), .helo = "tern.test", .user = "alice", .password = "secret"};
	o.conn.security = CONN_SECURITY_STARTTLS;
	o.conn.host = "localhost";
	o.conn.ca_file = cert_path;
	if (smtp_client_open(&o, &c, error, sizeof(error)) != 0)
		fail_msg("%s", error);
	smtp_client_close(&c);
	fake_finish(&f);
}

static void
test_smtp_gigabyte_line(void **state)
{
	static const struct step script[] = {{FLOOD, ""}, {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];
	long before = rss_kib();

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f)};
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), -1);
	assert_contains(error, "too long");
	fake_finish(&f);
	long after = rss_kib();
	print_message("# flooded %llu bytes; VmRSS %ld kB before, %ld kB after\n",
	              (unsigned long long)f.flooded, before, after);
	assert_true(after < 256 * 1024);
	assert_true(after - before < 16 * 1024);
}

static void
test_smtp_server_silent_timeout(void **state)
{
	static const struct step script[] = {{HANG, ""}, {0, NULL}};
	struct fake f = {0};
	struct smtp_client *c = NULL;
	char error[512];
	int64_t start = time_mono_usec();

	fake_start(&f, script);
	struct smtp_client_options o = {.conn = plain_options(&f)};
	o.conn.timeout_ms = 300;
	assert_int_equal(smtp_client_open(&o, &c, error, sizeof(error)), -1);
	/* A silent server at the start: the hint for an implicit-TLS port (issue 10). */
	assert_contains(error, "no greeting from");
	assert_contains(error, "within 0.3 s");
	assert_contains(error, "use security tls");
	assert_true(time_mono_usec() - start < 3000000);
	fake_finish(&f);
}

/* A whole session with UIDL, LIST and a dot-stuffed RETR; returns the entries (caller frees) and
 * the stored message, for comparing a bytewise run with a normal one. */
static void
pop3_list_retr_session(bool bytewise, struct pop3_client_entry **e_r, size_t *n_r, char *got,
                       size_t *got_len)
{
	static const struct step script[] = {
	    {SEND, "+OK POP3 ready\r\n"},
	    {EXPECT, "CAPA"},
	    {SEND, "+OK\r\nUSER\r\nUIDL\r\nSASL LOGIN PLAIN\r\n.\r\n"},
	    {EXPECT, "AUTH PLAIN " AUTH_PLAIN_ALICE},
	    {SEND, "+OK logged in\r\n"},
	    {EXPECT, "UIDL"},
	    {SEND, "+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n"},
	    {EXPECT, "LIST"},
	    {SEND, "+OK 2 messages\r\n2 45\r\n1 120\r\n.\r\n"},
	    {EXPECT, "RETR 2"},
	    {SEND, "+OK 45 octets\r\nSubject: x\r\n\r\n..dot line\r\n..\r\nend\n.\r\n"},
	    {EXPECT, "DELE 2"},
	    {SEND, "+OK deleted\r\n"},
	    {EXPECT, "QUIT"},
	    {SEND, "+OK bye\r\n"},
	    {0, NULL}};
	static const char expect[] = "Subject: x\r\n\r\n.dot line\r\n.\r\nend\r\n";
	struct fake f = {.bytewise = bytewise};
	struct pop3_client *c;
	struct pop3_client_entry *e;
	size_t n;
	char error[512];
	FILE *fp = tmpfile();

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(pop3_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_list(c, &e, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(e[0].number, 1);
	assert_string_equal(e[0].uidl, "uid-one");
	assert_int_equal(e[0].size, 120);
	assert_int_equal(e[1].number, 2);
	assert_string_equal(e[1].uidl, "uid-two");
	assert_int_equal(e[1].size, 45);
	*e_r = e;
	*n_r = n;
	assert_int_equal(pop3_client_retr(c, 2, fileno(fp), 1000, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_dele(c, 2, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_quit(&c, error, sizeof(error)), 0);
	assert_null(c);
	fake_finish(&f);
	rewind(fp);
	size_t len = fread(got, 1, 256, fp);
	fclose(fp);
	assert_int_equal(len, strlen(expect));
	assert_memory_equal(got, expect, len);
	*got_len = len;
}

static void
test_pop3_list_retr(void **state)
{
	struct pop3_client_entry *e;
	size_t n, len;
	char got[256];

	pop3_list_retr_session(false, &e, &n, got, &len);
	free(e);
}

/* The multi-line UIDL/LIST and the dot-stuffed RETR arriving one byte per segment (so "." and
 * CR and LF land in separate reads): the same entries and the same message bytes. */
static void
test_pop3_bytewise(void **state)
{
	struct pop3_client_entry *e1, *e2;
	size_t n1, n2, len1, len2;
	char got1[256], got2[256];

	pop3_list_retr_session(false, &e1, &n1, got1, &len1);
	pop3_list_retr_session(true, &e2, &n2, got2, &len2);
	assert_int_equal(n1, n2);
	for (size_t i = 0; i < n1; i++) {
		assert_int_equal(e1[i].number, e2[i].number);
		assert_int_equal(e1[i].size, e2[i].size);
		assert_string_equal(e1[i].uidl, e2[i].uidl);
	}
	assert_int_equal(len1, len2);
	assert_memory_equal(got1, got2, len1);
	free(e1);
	free(e2);
}

static void
test_pop3_truncated_response(void **state)
{
	static const struct step script[] = {{SEND, "+OK POP3 ready\r\n"},
	                                     {EXPECT, "CAPA"},
	                                     {SEND, "+OK\r\nUIDL\r\n.\r\n"},
	                                     {EXPECT, "RETR 1"},
	                                     {SEND, "+OK\r\nline one\r\nline two\r\n"},
	                                     {CLOSE, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct pop3_client *c;
	char error[512];
	FILE *fp = tmpfile();

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(pop3_client_open(&o, NULL, NULL, &c, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_retr(c, 1, fileno(fp), 1000, error, sizeof(error)), -1);
	assert_contains(error, "truncated response to RETR 1");
	assert_contains(error, "closed the connection");
	/* Nothing is deleted, and the broken session says so. */
	assert_int_equal(pop3_client_quit(&c, error, sizeof(error)), -1);
	fclose(fp);
	fake_finish(&f);
}

static void
test_pop3_retr_too_large(void **state)
{
	static const struct step script[] = {{SEND, "+OK POP3 ready\r\n"},
	                                     {EXPECT, "CAPA"},
	                                     {SEND, "+OK\r\nUIDL\r\n.\r\n"},
	                                     {EXPECT, "RETR 1"},
	                                     {SEND,
	                                      "+OK\r\n0123456789012345678901234567890123456789\r\n"
	                                      "0123456789012345678901234567890123456789\r\n"
	                                      "0123456789012345678901234567890123456789\r\n.\r\n"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct pop3_client *c;
	char error[512];
	FILE *fp = tmpfile();

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(pop3_client_open(&o, NULL, NULL, &c, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_retr(c, 1, fileno(fp), 100, error, sizeof(error)), -1);
	assert_contains(error, "larger than the limit of 100 bytes");
	pop3_client_abort(&c);
	fclose(fp);
	fake_finish(&f);
}

static void
test_pop3_pass_refused(void **state)
{
	static const struct step script[] = {{SEND, "+OK POP3 ready\r\n"},
	                                     {EXPECT, "CAPA"},
	                                     {SEND, "-ERR what is CAPA\r\n"},
	                                     {EXPECT, "USER alice"},
	                                     {SEND, "+OK\r\n"},
	                                     {EXPECT, "PASS secret"},
	                                     {SEND, "-ERR [AUTH] invalid password\r\n"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct pop3_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(pop3_client_open(&o, "alice", "secret", &c, error, sizeof(error)), -1);
	assert_null(c);
	assert_string_equal(error, "server refused login: -ERR [AUTH] invalid password");
	fake_finish(&f);
}

/* A whole session: login, SELECT, two UID FETCH lists (one with a literal inside an unknown item),
 * a BODY[] literal, delete; returns the first list (caller frees) and the fetched body, for
 * comparing a bytewise run with a normal one. */
static void
imap_session(bool bytewise, struct imap_client_entry **e_r, size_t *n_r, char *got, size_t *got_len)
{
	static const struct step script[] = {
	    {SEND, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"},
	    {EXPECT, "a001 AUTHENTICATE PLAIN " AUTH_PLAIN_ALICE},
	    {SEND, "a001 OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n"},
	    {EXPECT, "a002 SELECT \"INBOX\""},
	    {SEND, "* FLAGS (\\Seen \\Deleted)\r\n* 3 EXISTS\r\n* OK [UIDVALIDITY 1234] ok\r\n"
	           "a002 OK [READ-WRITE] done\r\n"},
	    {EXPECT, "a003 UID FETCH 5:* (UID RFC822.SIZE FLAGS)"},
	    {SEND, "* 2 FETCH (RFC822.SIZE 200 UID 7 FLAGS ())\r\n"
	           "* 1 FETCH (FLAGS (\\Seen \\Answered) UID 5 RFC822.SIZE 100)\r\n"
	           "* 3 FETCH (UID 9 X-ODD (\"a\" {3}\r\n)()) RFC822.SIZE 1 FLAGS ())\r\n"
	           "a003 OK done\r\n"},
	    {EXPECT, "a004 UID FETCH 10:* (UID RFC822.SIZE FLAGS)"},
	    {SEND, "* 3 FETCH (UID 9 RFC822.SIZE 1 FLAGS ())\r\na004 OK done\r\n"},
	    {EXPECT, "a005 UID FETCH 7 BODY.PEEK[]"},
	    {SEND, "* 2 FETCH (UID 7 BODY[] {21}\r\nSubject: x\r\n\r\nhello\r\n FLAGS ())\r\n"
	           "a005 OK done\r\n"},
	    {EXPECT, "a006 UID STORE 5,7,9 +FLAGS.SILENT (\\Deleted)"},
	    {SEND, "a006 OK\r\n"},
	    {EXPECT, "a007 UID EXPUNGE 5,7,9"},
	    {SEND, "* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\na007 OK\r\n"},
	    {EXPECT, "a008 LOGOUT"},
	    {SEND, "* BYE bye\r\na008 OK\r\n"},
	    {0, NULL}};
	struct fake f = {.bytewise = bytewise};
	struct imap_client *c;
	struct imap_client_entry *e;
	uint32_t uidvalidity, exists, uids[] = {9, 5, 7};
	size_t n;
	char error[512];
	FILE *fp = tmpfile();

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	assert_int_equal(
	    imap_client_select(c, "INBOX", false, &uidvalidity, &exists, error, sizeof(error)), 0);
	assert_int_equal(uidvalidity, 1234);
	assert_int_equal(exists, 3);
	assert_int_equal(imap_client_list(c, 5, &e, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(e[0].uid, 5);
	assert_int_equal(e[0].size, 100);
	assert_true(e[0].seen);
	assert_int_equal(e[1].uid, 7);
	assert_int_equal(e[1].size, 200);
	assert_false(e[1].seen);
	assert_int_equal(e[2].uid, 9);
	*e_r = e;
	*n_r = n;
	/* "10:*" matches the highest UID, 9, which is older than asked for. */
	assert_int_equal(imap_client_list(c, 10, &e, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 0);
	free(e);
	assert_int_equal(imap_client_fetch(c, 7, fileno(fp), 1000, error, sizeof(error)), 0);
	assert_int_equal(imap_client_delete(c, uids, 3, error, sizeof(error)), 0);
	imap_client_logout(&c);
	assert_null(c);
	fake_finish(&f);
	rewind(fp);
	size_t len = fread(got, 1, 64, fp);
	fclose(fp);
	assert_int_equal(len, 21);
	assert_memory_equal(got, "Subject: x\r\n\r\nhello\r\n", 21);
	*got_len = len;
}

static void
test_imap_select_list_fetch(void **state)
{
	struct imap_client_entry *e;
	size_t n, len;
	char got[64];

	imap_session(false, &e, &n, got, &len);
	free(e);
}

/* Every response, the FETCH with a {21} BODY[] literal and the list with a literal inside an
 * item included, arriving one byte per segment: the same list and the same body. */
static void
test_imap_bytewise(void **state)
{
	struct imap_client_entry *e1, *e2;
	size_t n1, n2, len1, len2;
	char got1[64], got2[64];

	imap_session(false, &e1, &n1, got1, &len1);
	imap_session(true, &e2, &n2, got2, &len2);
	assert_int_equal(n1, n2);
	for (size_t i = 0; i < n1; i++) {
		assert_int_equal(e1[i].uid, e2[i].uid);
		assert_int_equal(e1[i].size, e2[i].size);
		assert_int_equal(e1[i].seen, e2[i].seen);
	}
	assert_int_equal(len1, len2);
	assert_memory_equal(got1, got2, len1);
	free(e1);
	free(e2);
}

static void
test_imap_login_literal_and_refusal(void **state)
{
	static const struct step script[] = {
	    {SEND, "* OK ready\r\n"},
	    {EXPECT, "a001 CAPABILITY"},
	    {SEND, "* CAPABILITY IMAP4rev1\r\na001 OK\r\n"},
	    {EXPECT, "a002 LOGIN \"al\\\"ice\" {6}"},
	    {SEND, "+ go on\r\n"},
	    {EXPECT, "p\xc3\xa4ss!"},
	    {SEND, "a002 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
	    {HANG, ""},
	    {0, NULL}};
	struct fake f = {0};
	struct imap_client *c = NULL;
	char error[512];

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(imap_client_open(&o, "al\"ice", "p\xc3\xa4ss!", &c, error, sizeof(error)),
	                 -1);
	assert_null(c);
	assert_contains(error, "NO [AUTHENTICATIONFAILED] Authentication failed.");
	fake_finish(&f);
}

/* Logs in with AUTHENTICATE PLAIN through a "+" continuation (no SASL-IR). */
#define IMAP_LOGIN_STEPS                                                                           \
	{SEND, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"},                                \
	    {EXPECT, "a001 AUTHENTICATE PLAIN"}, {SEND, "+ \r\n"}, {EXPECT, AUTH_PLAIN_ALICE},     \
	    {SEND, "a001 OK logged in\r\n"}, {EXPECT, "a002 CAPABILITY"},                          \
	{                                                                                          \
		SEND, "* CAPABILITY IMAP4rev1\r\na002 OK\r\n"                                      \
	}

/* Empty UIDL/LIST and UID FETCH answers are empty lists, not errors (found by fuzz_client_pop3
 * and fuzz_client_imap: qsort was handed the NULL of an empty array). */
static void
test_empty_lists(void **state)
{
	static const struct step pop3_script[] = {{SEND, "+OK POP3 ready\r\n"},
	                                          {EXPECT, "CAPA"},
	                                          {SEND, "+OK\r\nUIDL\r\n.\r\n"},
	                                          {EXPECT, "UIDL"},
	                                          {SEND, "+OK\r\n.\r\n"},
	                                          {EXPECT, "LIST"},
	                                          {SEND, "+OK\r\n.\r\n"},
	                                          {EXPECT, "QUIT"},
	                                          {SEND, "+OK\r\n"},
	                                          {0, NULL}};
	static const struct step imap_script[] = {
	    IMAP_LOGIN_STEPS,
	    {EXPECT, "a003 UID FETCH 1:* (UID RFC822.SIZE FLAGS)"},
	    {SEND, "a003 OK nothing\r\n"},
	    {EXPECT, "a004 LOGOUT"},
	    {SEND, "* BYE\r\na004 OK\r\n"},
	    {0, NULL}};
	struct fake f = {0}, g = {0};
	struct pop3_client *p;
	struct pop3_client_entry *pe;
	struct imap_client *c;
	struct imap_client_entry *ie;
	size_t n = 1;
	char error[512];

	fake_start(&f, pop3_script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(pop3_client_open(&o, NULL, NULL, &p, error, sizeof(error)), 0);
	assert_int_equal(pop3_client_list(p, &pe, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 0);
	free(pe);
	assert_int_equal(pop3_client_quit(&p, error, sizeof(error)), 0);
	fake_finish(&f);

	fake_start(&g, imap_script);
	o = plain_options(&g);
	assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	n = 1;
	assert_int_equal(imap_client_list(c, 0, &ie, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 0);
	free(ie);
	imap_client_logout(&c);
	fake_finish(&g);
}

static void
test_imap_huge_literal_body(void **state)
{
	static const struct step script[] = {IMAP_LOGIN_STEPS,
	                                     {EXPECT, "a003 UID FETCH 7 BODY.PEEK[]"},
	                                     {SEND, "* 2 FETCH (UID 7 BODY[] {4294967295}\r\nAAAA"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct imap_client *c;
	char error[512];
	FILE *fp = tmpfile();

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	assert_int_equal(
	    imap_client_fetch(c, 7, fileno(fp), 50 * 1024 * 1024, error, sizeof(error)), -1);
	assert_contains(error, "larger than the limit of 52428800 bytes (4294967295 announced)");
	imap_client_logout(&c);
	fclose(fp);
	fake_finish(&f);
}

static void
test_imap_huge_literal_list(void **state)
{
	static const struct step script[] = {IMAP_LOGIN_STEPS,
	                                     {EXPECT, "a003 UID FETCH 1:* (UID RFC822.SIZE FLAGS)"},
	                                     {SEND, "* 1 FETCH (UID 5 X-NAME {4294967295}\r\nAAAA"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct imap_client *c;
	struct imap_client_entry *e;
	size_t n;
	char error[512];

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	assert_int_equal(imap_client_list(c, 0, &e, &n, error, sizeof(error)), -1);
	assert_contains(error, "literal of 4294967295 bytes from 127.0.0.1:");
	assert_contains(error, "exceeds the limit of 65536");
	imap_client_logout(&c);
	fake_finish(&f);
}

/* A BODY[] literal outside a FETCH response (here in an untagged OK, then in the tagged OK) is not
 * the message asked for: the fetch fails rather than keep it. */
static void
test_imap_body_outside_fetch(void **state)
{
	static const struct step script1[] = {IMAP_LOGIN_STEPS,
	                                      {EXPECT, "a003 UID FETCH 7 BODY.PEEK[]"},
	                                      {SEND, "* OK BODY[] {5}\r\nhello\r\na003 OK\r\n"},
	                                      {HANG, ""},
	                                      {0, NULL}};
	static const struct step script2[] = {IMAP_LOGIN_STEPS,
	                                      {EXPECT, "a003 UID FETCH 7 BODY.PEEK[]"},
	                                      {SEND, "a003 OK BODY[] {5}\r\nhello\r\n"},
	                                      {HANG, ""},
	                                      {0, NULL}};
	const struct step *scripts[] = {script1, script2};

	for (size_t i = 0; i < 2; i++) {
		struct fake f = {0};
		struct imap_client *c;
		char error[512];
		FILE *fp = tmpfile();

		fake_start(&f, scripts[i]);
		struct conn_options o = plain_options(&f);
		assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)),
		                 0);
		assert_int_equal(imap_client_fetch(c, 7, fileno(fp), 1000, error, sizeof(error)),
		                 -1);
		assert_contains(error, "outside a FETCH response");
		imap_client_logout(&c);
		fclose(fp);
		fake_finish(&f);
	}
}

static void
test_imap_bye(void **state)
{
	static const struct step script[] = {IMAP_LOGIN_STEPS,
	                                     {EXPECT, "a003 EXAMINE \"Archive\""},
	                                     {SEND, "* BYE [UNAVAILABLE] shutting down\r\n"},
	                                     {HANG, ""},
	                                     {0, NULL}};
	struct fake f = {0};
	struct imap_client *c;
	uint32_t v, x;
	char error[512];

	fake_start(&f, script);
	struct conn_options o = plain_options(&f);
	assert_int_equal(imap_client_open(&o, "alice", "secret", &c, error, sizeof(error)), 0);
	assert_int_equal(imap_client_select(c, "Archive", true, &v, &x, error, sizeof(error)), -1);
	assert_contains(error, "closed the session: \"BYE [UNAVAILABLE] shutting down\"");
	imap_client_logout(&c);
	fake_finish(&f);
}

/* Implicit TLS at the connection level: the server says one line, the client reads it. */
static int
tls_connect(const char *bind_addr, const char *host, const char *ca_file, bool insecure,
            char *error, size_t errsize)
{
	static const struct step script[] = {{SEND, "hello\r\n"}, {HANG, ""}, {0, NULL}};
	struct fake f = {.bind_addr = bind_addr, .implicit_tls = true};
	struct conn *conn;
	const char *line;
	size_t len;
	int ret = -1;

	fake_start(&f, script);
	struct conn_options o = {.host = host,
	                         .port = f.port,
	                         .security = CONN_SECURITY_TLS,
	                         .ca_file = ca_file,
	                         .insecure = insecure,
	                         .timeout_ms = 5000};
	if (conn_open(&o, &conn, error, errsize) == 0) {
		assert_true(conn_is_tls(conn));
		assert_true(strncmp(conn_tls_info(conn), "TLSv1.", 6) == 0);
		ret = conn_read_line(conn, &line, &len, error, errsize) == 1 &&
		              strcmp(line, "hello") == 0
		          ? 0
		          : -1;
		conn_close(&conn);
	}
	fake_join(&f);
	return ret;
}

static void
test_tls_verification(void **state)
{
	char error[512];

	assert_int_equal(tls_connect(NULL, "localhost", cert_path, false, error, sizeof(error)), 0);
	assert_int_equal(tls_connect(NULL, "127.0.0.1", cert_path, false, error, sizeof(error)), 0);
	/* Not trusted without the CA file. */
	assert_int_equal(tls_connect(NULL, "localhost", NULL, false, error, sizeof(error)), -1);
	assert_contains(error, "TLS handshake with localhost:");
	assert_contains(error, "certificate verify failed");
	/* Trusted, but the certificate names 127.0.0.1 and not 127.0.0.2. */
	assert_int_equal(
	    tls_connect("127.0.0.2", "127.0.0.2", cert_path, false, error, sizeof(error)), -1);
	assert_contains(error, "IP address mismatch");
	/* insecure skips verification. */
	assert_int_equal(tls_connect(NULL, "localhost", NULL, true, error, sizeof(error)), 0);
}

static void
test_tls_write_after_close_no_sigpipe(void **state)
{
	static const struct step script[] = {{CLOSE, ""}, {0, NULL}};
	struct fake f = {.implicit_tls = true};
	struct conn *conn;
	static char chunk[65536];
	char error[512];
	int r = 0;

	fake_start(&f, script);
	struct conn_options o = {.host = "localhost",
	                         .port = f.port,
	                         .security = CONN_SECURITY_TLS,
	                         .ca_file = cert_path,
	                         .timeout_ms = 5000};
	assert_int_equal(conn_open(&o, &conn, error, sizeof(error)), 0);
	fake_join(&f);
	for (int i = 0; i < 1000 && r == 0; i++)
		r = conn_write(conn, chunk, sizeof(chunk), error, sizeof(error));
	assert_int_equal(r, -1); /* and the process is still alive */
	assert_contains(error, "localhost:");
	conn_close(&conn);
}

static void
test_connect_refused(void **state)
{
	struct fake f = {0};
	struct conn *conn;
	char error[512];
	int port;

	/* A port that was just free: bind, read it, close. */
	f.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	assert_int_equal(bind(f.listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(f.listen_fd, (struct sockaddr *)&sin, &slen);
	port = ntohs(sin.sin_port);
	close(f.listen_fd);
	struct conn_options o = {.host = "127.0.0.1", .port = port, .security = CONN_SECURITY_NONE};
	assert_int_equal(conn_open(&o, &conn, error, sizeof(error)), -1);
	char want[64];
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d: ", port);
	assert_contains(error, want);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	char error[512];

	str_copy(tmpdir, "/tmp/tern-test-client-XXXXXX", sizeof(tmpdir));
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	if (tls_make_self_signed("mx.example.test", cert_path, key_path, error, sizeof(error)) !=
	        0 ||
	    (server_ctx = tls_server_ctx_new(cert_path, key_path, "TLSv1.2", error,
	                                     sizeof(error))) == NULL) {
		fprintf(stderr, "# %s\n", error);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	SSL_CTX_free(server_ctx);
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_send_pipelining),
	    cmocka_unit_test(test_smtp_bytewise),
	    cmocka_unit_test(test_smtp_send_sequential_login_8bit),
	    cmocka_unit_test(test_smtp_recipient_refused),
	    cmocka_unit_test(test_smtp_malformed_greeting),
	    cmocka_unit_test(test_smtp_reply_code_changes),
	    cmocka_unit_test(test_smtp_starttls_injection),
	    cmocka_unit_test(test_smtp_starttls_real),
	    cmocka_unit_test(test_smtp_gigabyte_line),
	    cmocka_unit_test(test_smtp_server_silent_timeout),
	    cmocka_unit_test(test_pop3_list_retr),
	    cmocka_unit_test(test_pop3_bytewise),
	    cmocka_unit_test(test_empty_lists),
	    cmocka_unit_test(test_pop3_truncated_response),
	    cmocka_unit_test(test_pop3_retr_too_large),
	    cmocka_unit_test(test_pop3_pass_refused),
	    cmocka_unit_test(test_imap_select_list_fetch),
	    cmocka_unit_test(test_imap_bytewise),
	    cmocka_unit_test(test_imap_login_literal_and_refusal),
	    cmocka_unit_test(test_imap_huge_literal_body),
	    cmocka_unit_test(test_imap_huge_literal_list),
	    cmocka_unit_test(test_imap_body_outside_fetch),
	    cmocka_unit_test(test_imap_bye),
	    cmocka_unit_test(test_tls_verification),
	    cmocka_unit_test(test_tls_write_after_close_no_sigpipe),
	    cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
