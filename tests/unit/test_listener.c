/* Unit tests for listener: address parsing, and the per-address connection limit on a real
 * loopback socket. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "net/listener.h"

static const struct {
	const char *text;
	int ok;
	int family;
	int port;
} addresses[] = {
	{"127.0.0.1:2525", 1, AF_INET, 2525},
	{"0.0.0.0:25", 1, AF_INET, 25},
	{"*:587", 1, AF_INET, 587},
	{"[::1]:2143", 1, AF_INET6, 2143},
	{"[::]:993", 1, AF_INET6, 993},
	{"[2001:db8::1]:65535", 1, AF_INET6, 65535},
	{"127.0.0.1", 0, 0, 0},
	{"127.0.0.1:", 0, 0, 0},
	{"127.0.0.1:0", 0, 0, 0},
	{"127.0.0.1:65536", 0, 0, 0},
	{"127.0.0.1:25x", 0, 0, 0},
	{"::1:25", 0, 0, 0},
	{"[::1]25", 0, 0, 0},
	{"[::1:25", 0, 0, 0},
	{"localhost:25", 0, 0, 0},
	{"999.1.1.1:25", 0, 0, 0},
	{":25", 0, 0, 0},
	{"", 0, 0, 0},
};

static void
test_parse_address_table(void **state)
{
	for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		int r = listener_parse_address(addresses[i].text, &ss, &len);

		if (!addresses[i].ok) {
			if (r != -1)
				fail_msg("'%s' should be refused", addresses[i].text);
			continue;
		}
		if (r != 0)
			fail_msg("'%s' should parse", addresses[i].text);
		assert_int_equal(ss.ss_family, addresses[i].family);
		if (ss.ss_family == AF_INET)
			assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port),
					 addresses[i].port);
		else
			assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port),
					 addresses[i].port);
	}
}

struct accept_state {
	struct event_base *base;
	int accepted;
	struct bufferevent *bevs[8];
	struct listener_peer peers[8];
};

static void
on_accept(struct bufferevent *bev, const struct listener_peer *peer, bool tls, void *arg)
{
	struct accept_state *st = arg;

	assert_true(peer->loopback);
	assert_string_equal(peer->ip, "127.0.0.1");
	st->peers[st->accepted] = *peer;
	st->bevs[st->accepted++] = bev;
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void
run_loop_briefly(struct event_base *base)
{
	struct timeval tv = {0, 200000};

	event_base_once(base, -1, EV_TIMEOUT, on_timeout, base, &tv);
	event_base_dispatch(base);
}

static int
connect_to(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void
test_per_address_limit_refuses_with_busy_reply(void **state)
{
	struct accept_state st = {0};
	struct listener_limits limits = {100, 2};
	struct listener *l = NULL;
	char addr[64], error[256], *addrs[1] = {addr};
	int port = 0, fds[3];
	char buf[128];
	ssize_t n;

	st.base = event_base_new();
	listener_set_limits(&limits);
	srand((unsigned)getpid());
	for (int tries = 0; tries < 20 && l == NULL; tries++) {
		port = 20000 + rand() % 40000;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		l = listener_new(st.base, "test", addrs, 1, false, on_accept, &st, error,
				 sizeof(error));
	}
	assert_non_null(l);
	listener_set_busy_reply(l, "421 busy\r\n");
	for (int i = 0; i < 3; i++)
		fds[i] = connect_to(port);
	run_loop_briefly(st.base);
	assert_int_equal(st.accepted, 2);
	assert_int_equal(listener_conn_count(), 2);
	/* The third connection is told why and closed. */
	n = read(fds[2], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "421 busy\r\n");

	/* When one closes, another is admitted. */
	bufferevent_free(st.bevs[0]);
	listener_conn_closed(&st.peers[0]);
	close(fds[2]);
	fds[2] = connect_to(port);
	run_loop_briefly(st.base);
	assert_int_equal(st.accepted, 3);
	assert_int_equal(listener_conn_count(), 2);

	bufferevent_free(st.bevs[1]);
	listener_conn_closed(&st.peers[1]);
	bufferevent_free(st.bevs[2]);
	listener_conn_closed(&st.peers[2]);
	assert_int_equal(listener_conn_count(), 0);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	listener_free(&l);
	assert_null(l);
	event_base_free(st.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_address_table),
		cmocka_unit_test(test_per_address_limit_refuses_with_busy_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
