/* Unit tests for listener: address parsing, and the per-address connection limit on a real
 * loopback socket; netconn's pre-login marks on a real socket pair. */
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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "net/listener.h"
#include "net/netconn.h"

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

/* A plain listener on a free loopback port. */
static struct listener *
listen_on_loopback(struct accept_state *st, int *port_r)
{
	struct listener *l = NULL;
	char addr[64], error[256], *addrs[1] = {addr};

	srand((unsigned)getpid());
	for (int tries = 0; tries < 20 && l == NULL; tries++) {
		*port_r = 20000 + rand() % 40000;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", *port_r);
		l = listener_new(st->base, "test", addrs, 1, false, on_accept, st, error,
		                 sizeof(error));
	}
	assert_non_null(l);
	return l;
}

static void
test_per_address_limit_refuses_with_busy_reply(void **state)
{
	struct accept_state st = {0};
	struct listener_limits limits = {100, 2};
	struct listener *l;
	int port = 0, fds[3];
	char buf[128];
	ssize_t n;

	st.base = event_base_new();
	listener_set_limits(&limits);
	l = listen_on_loopback(&st, &port);
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

static bool
marks_step(void *arg)
{
	return false;
}

static void
marks_closing(void *arg)
{
}

static void
marks_closed(void *arg, const char *reason)
{
	*(bool *)arg = true;
}

/* Before login: 16 KiB read ahead and no more commands once 4 KiB of replies wait; after
 * netconn_set_authenticated the usual 256 KiB and 64 KiB. */
static void
test_netconn_preauth_marks(void **state)
{
	static const struct netconn_ops ops = {
	    .step = marks_step, .closing = marks_closing, .closed = marks_closed};
	struct netconn_params params = {.proto = "test", .ops = &ops, .idle_timeout = {60, 0}};
	struct listener_limits limits = {100, 10};
	struct netconn_list list = {0};
	struct accept_state st = {0};
	struct bufferevent *bev;
	struct listener *l;
	struct netconn nc;
	char reply[1024];
	size_t low, high;
	bool closed = false;
	int port = 0, fd;

	st.base = event_base_new();
	listener_set_limits(&limits);
	l = listen_on_loopback(&st, &port);
	fd = connect_to(port);
	run_loop_briefly(st.base);
	assert_int_equal(st.accepted, 1);
	bev = st.bevs[0];
	netconn_init(&nc, bev, &st.peers[0], false, &params, &list, &closed);
	assert_int_equal(bufferevent_getwatermark(bev, EV_READ, &low, &high), 0);
	assert_int_equal(high, NETCONN_PREAUTH_INPUT_HIGH);
	assert_true(NETCONN_PREAUTH_INPUT_HIGH <= 16 * 1024);

	memset(reply, 'x', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	while (evbuffer_get_length(bufferevent_get_output(bev)) <= NETCONN_PREAUTH_OUTPUT_HIGH) {
		assert_false(netconn_output_full(&nc));
		netconn_reply(&nc, "%s", reply);
	}
	assert_true(netconn_output_full(&nc)); /* about 4 KiB unread: stop handling commands */

	netconn_set_authenticated(&nc);
	assert_int_equal(bufferevent_getwatermark(bev, EV_READ, &low, &high), 0);
	assert_int_equal(high, NETCONN_INPUT_HIGH);
	assert_false(netconn_output_full(&nc)); /* logged in: up to 64 KiB may wait */

	evbuffer_drain(bufferevent_get_output(bev),
	               evbuffer_get_length(bufferevent_get_output(bev)));
	netconn_unlink(&nc);
	netconn_destroy(&nc, "test");
	assert_true(closed);
	assert_int_equal(listener_conn_count(), 0);
	run_loop_briefly(st.base); /* the lingering socket goes */
	close(fd);
	listener_free(&l);
	event_base_free(st.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_address_table),
	    cmocka_unit_test(test_per_address_limit_refuses_with_busy_reply),
	    cmocka_unit_test(test_netconn_preauth_marks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
