/* client_harness: the fake server side shared by the client fuzz targets: a thread writes the
 * fuzz input into one end of a socketpair in chunks, shuts its write side (EOF instead of a
 * timeout), and reads and discards what the client sends, so neither side can block the other.
 * Include after the system headers it needs (pthread, poll, socket, unistd, string, stdint). */
#ifndef TERN_FUZZ_CLIENT_HARNESS_H
#define TERN_FUZZ_CLIENT_HARNESS_H

struct fuzz_server {
	int fd;
	const uint8_t *data;
	size_t size, chunk; /* bytes per send */
	pthread_t thread;
};

/* Plays the transcript and drains the client until it closes. */
static void *
fuzz_server_main(void *arg)
{
	struct fuzz_server *s = arg;
	size_t off = 0;
	char sink[4096];

	if (s->size == 0)
		shutdown(s->fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = {.fd = s->fd, .events = POLLIN | (off < s->size ? POLLOUT : 0)};

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if ((pfd.revents & POLLOUT) && off < s->size) {
			size_t len = s->size - off < s->chunk ? s->size - off : s->chunk;
			ssize_t n = send(s->fd, s->data + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				off = s->size; /* the client is gone */
			if (off == s->size)
				shutdown(s->fd, SHUT_WR);
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(s->fd, sink, sizeof(sink), MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
	}
	close(s->fd);
	return NULL;
}

/* Starts the server thread; returns the client's end of the socketpair. */
static int
fuzz_server_start(struct fuzz_server *s, const uint8_t *data, size_t size, size_t chunk)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	s->fd = sv[1];
	s->data = data;
	s->size = size;
	s->chunk = chunk;
	if (pthread_create(&s->thread, NULL, fuzz_server_main, s) != 0)
		abort();
	return sv[0];
}

#endif
