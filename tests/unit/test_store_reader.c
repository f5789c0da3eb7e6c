/* Unit tests for store_reader: byte ranges, MIME parts, CRLF conversion, POP3 dot-stuffing and
 * TOP through a filter, output windows and padding, a file removed or cut short underneath,
 * with every chunk size from 1 byte up (so a chunk boundary falls inside each CRLF and each
 * ".\r\n"), read on a real I/O pool and on the calling thread, under a tiny high-water mark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "lib/workers.h"
#include "mime/mimestruct.h"
#include "pop3/pop3_parser.h"
#include "store/store.h"
#include "store/store_reader.h"

static struct event_base *base;
static struct workers *io;
static char path[] = "/tmp/test_store_reader.XXXXXX";

struct run {
	unsigned ready; /* ready() calls */
};

static void
run_ready(void *arg)
{
	struct run *r = arg;

	r->ready++;
	event_base_loopbreak(base);
}

/* Streams range of reader through pump as a slow client would read it: at most high bytes
 * queued, drained only after each pump. Returns the output (malloc'd, NUL-terminated) and the
 * pump's final result in *rc_r. */
static char *
stream_all(struct store_reader *reader, struct workers *pool,
           const struct store_reader_range *range, size_t high, size_t *len_r, int *rc_r)
{
	struct run run = {0};
	struct store_reader_stream *st =
	    store_reader_stream_new(reader, pool, range, run_ready, &run);
	struct evbuffer *out = evbuffer_new(), *got = evbuffer_new();
	char *text;
	int rc;

	for (;;) {
		unsigned before = run.ready;
		size_t queued;

		rc = store_reader_stream_pump(st, out, high);
		queued = evbuffer_get_length(out);
		/* The mark holds: at most high plus one converted chunk. */
		assert_true(queued <=
		            high + 2 * (range->chunk ? range->chunk : STORE_READER_CHUNK) + 8);
		evbuffer_add_buffer(got, out);
		if (rc != 0)
			break;
		if (queued >= high)
			continue;      /* the client read; pump again */
		assert_non_null(pool); /* without a pool every read is done at once */
		while (run.ready == before)
			event_base_loop(base, EVLOOP_ONCE);
	}
	assert_int_equal(store_reader_stream_delivered(st), evbuffer_get_length(got));
	store_reader_stream_free(&st);
	*len_r = evbuffer_get_length(got);
	text = calloc(1, *len_r + 1);
	assert_non_null(text);
	evbuffer_remove(got, text, *len_r);
	evbuffer_free(out);
	evbuffer_free(got);
	*rc_r = rc;
	return text;
}

/* Writes data to the test file and opens a reader on it. */
static struct store_reader *
reader_on(const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	int fd;

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	return store_reader_from_fd(fd);
}

/* Checks that range over data gives want (and rc) for every chunk size from 1 to 2 * len + 2
 * and the default, with the pool and without, under a high-water mark of 1 and of 64 KiB. */
static void
check_range(const char *data, size_t len, struct store_reader_range range, const char *want,
            size_t want_len, int want_rc)
{
	struct store_reader *reader = reader_on(data, len);

	for (size_t chunk = 0; chunk <= 2 * len + 2; chunk++) {
		for (int pool = 0; pool < 2; pool++) {
			for (int h = 0; h < 2; h++) {
				size_t got_len;
				int rc;
				char *got;

				range.chunk = chunk;
				got = stream_all(reader, pool ? io : NULL, &range, h ? 65536 : 1,
				                 &got_len, &rc);
				if (got_len != want_len || memcmp(got, want, want_len) != 0)
					fail_msg("chunk=%zu pool=%d high=%d: got [%.*s] want "
					         "[%.*s]",
					         chunk, pool, h, (int)got_len, got, (int)want_len,
					         want);
				assert_int_equal(rc, want_rc);
				free(got);
			}
		}
	}
	store_reader_free(&reader);
}

#define S(x) x, sizeof(x) - 1
#define ALL                                                                                        \
	{                                                                                          \
		.len = UINT64_MAX, .limit = UINT64_MAX                                             \
	}

static void
test_whole_raw(void **state)
{
	struct store_reader_range r = ALL;

	check_range(S("a\nb\r\nc"), r, S("a\nb\r\nc"), 1);
	check_range(S(""), r, S(""), 1);
}

static void
test_byte_range(void **state)
{
	struct store_reader_range r = ALL;

	r.offset = 2;
	r.len = 5;
	check_range(S("0123456789"), r, S("23456"), 1);
	r.offset = 10;
	r.len = 0;
	check_range(S("0123456789"), r, S(""), 1);
}

static void
test_crlf(void **state)
{
	struct store_reader_range r = ALL;

	r.conv = STORE_READER_CRLF;
	/* Bare LF -> CRLF; CRLF stays (also when a chunk ends between CR and LF); a lone CR
	 * stays; the last line without an end stays so. */
	check_range(S("a\nb\r\nc\rd\n\n\r\ne"), r, S("a\r\nb\r\nc\rd\r\n\r\n\r\ne"), 1);
	/* A range starting at an LF whose CR is before it: the CR is not part of the range. */
	r.offset = 2;
	check_range(S("x\r\ny"), r, S("\r\ny"), 1);
}

static void
test_crlf_nul(void **state)
{
	struct store_reader_range r = ALL;

	r.conv = STORE_READER_CRLF;
	r.nul_to = 0x80;
	check_range(S("a\0b\n"), r,
	            S("a\x80"
	              "b\r\n"),
	            1);
}

static void
test_window_and_pad(void **state)
{
	struct store_reader_range r = ALL;

	/* An IMAP partial <3.4> of the wire form. */
	r.conv = STORE_READER_CRLF;
	r.skip = 3;
	r.limit = 4;
	check_range(S("ab\ncd\nef\n"), r, S("\ncd\r"), 1);
	/* A skip past the end sends nothing. */
	r.skip = 100;
	check_range(S("ab\ncd\nef\n"), r, S(""), 1);
	/* The file is shorter than the range says (cut underneath): padded to the literal's
	 * length, reported. */
	r = (struct store_reader_range)ALL;
	r.len = 10;
	r.limit = 10;
	r.pad = true;
	check_range(S("abcd"), r, S("abcd      "), -1);
	/* Without pad: what there is, reported. */
	r.pad = false;
	check_range(S("abcd"), r, S("abcd"), -1);
	/* A whole file shorter than the size the row gives (a whole message's literal). */
	r = (struct store_reader_range)ALL;
	r.limit = 6;
	r.pad = true;
	check_range(S("abcd"), r, S("abcd  "), -1);
	/* Longer than the window: cut, not an error. */
	r.limit = 3;
	check_range(S("abcd"), r, S("abc"), 1);
}

/* A MIME part, by the offsets the stored structure gives, in wire form. */
static void
test_part(void **state)
{
	static const char msg[] = "From: a@b\nContent-Type: multipart/mixed; boundary=X\n\n"
	                          "--X\nContent-Type: text/plain\n\none\ntwo\n--X\n"
	                          "Content-Type: text/plain\n\nthree\n--X--\n";
	unsigned char *blob = NULL;
	size_t blob_len = 0;
	struct mimestruct *ms;
	struct mimestruct_range mr;
	struct store_reader_range r = ALL;
	uint32_t part1[] = {1}, part2[] = {2};

	assert_int_equal(mimestruct_build_buffer(msg, sizeof(msg) - 1, &blob, &blob_len), 0);
	ms = mimestruct_load(blob, blob_len);
	assert_non_null(ms);
	r.conv = STORE_READER_CRLF;
	assert_int_equal(mimestruct_section(ms, part1, 1, MIMESTRUCT_ALL, &mr), 1);
	r.offset = mr.offset;
	r.len = mr.len;
	r.limit = mr.wire_len;
	r.pad = true;
	check_range(msg, sizeof(msg) - 1, r, S("one\r\ntwo"), 1);
	assert_int_equal(mimestruct_section(ms, part2, 1, MIMESTRUCT_MIME, &mr), 1);
	r.offset = mr.offset;
	r.len = mr.len;
	r.limit = mr.wire_len;
	check_range(msg, sizeof(msg) - 1, r, S("Content-Type: text/plain\r\n\r\n"), 1);
	assert_int_equal(mimestruct_section(ms, NULL, 0, MIMESTRUCT_TEXT, &mr), 1);
	assert_int_equal(mr.wire_len, mr.len + 10); /* the structure's size is the wire size */
	mimestruct_free(&ms);
	free(blob);
}

/* POP3 through pop3_stuff_filter: RETR and TOP in wire form with the final ".\r\n". */
static void
check_pop3(const char *data, size_t len, bool top, uint32_t lines, const char *want,
           size_t want_len)
{
	struct store_reader *reader = reader_on(data, len);

	for (size_t chunk = 0; chunk <= len + 2; chunk++) {
		for (int pool = 0; pool < 2; pool++) {
			struct store_reader_range r = ALL;
			struct pop3_stuffer *stuffer = calloc(1, sizeof(*stuffer));
			size_t got_len;
			int rc;
			char *got;

			assert_non_null(stuffer);
			pop3_stuff_init(stuffer, top, lines);
			r.filter = pop3_stuff_filter;
			r.filter_state = stuffer;
			r.chunk = chunk;
			got = stream_all(reader, pool ? io : NULL, &r, 3, &got_len, &rc);
			if (got_len != want_len || memcmp(got, want, want_len) != 0)
				fail_msg("chunk=%zu pool=%d: got [%.*s] want [%.*s]", chunk, pool,
				         (int)got_len, got, (int)want_len, want);
			assert_int_equal(rc, 1);
			free(got);
		}
	}
	store_reader_free(&reader);
}

static void
test_pop3_dot_stuffing(void **state)
{
	/* A line that is just ".", lines starting with "." and "..", a "." after a bare LF,
	 * no final line end. */
	check_pop3(S("S: x\r\n\r\n.\r\n..a\r\n.b\n.\nend"), false, 0,
	           S("S: x\r\n\r\n..\r\n...a\r\n..b\r\n..\r\nend\r\n.\r\n"));
	/* A message ending in ".\r\n": the chunk boundary may fall anywhere inside it. */
	check_pop3(S("S: x\r\n\r\nbody\r\n.\r\n"), false, 0, S("S: x\r\n\r\nbody\r\n..\r\n.\r\n"));
	check_pop3(S(""), false, 0, S(".\r\n"));
}

static void
test_pop3_top(void **state)
{
	static const char msg[] = "A: 1\nB: 2\n\nl1\n.l2\nl3\n";

	check_pop3(S(msg), true, 0, S("A: 1\r\nB: 2\r\n\r\n.\r\n"));
	check_pop3(S(msg), true, 2, S("A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"));
	check_pop3(S(msg), true, 99, S("A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n"));
	/* Without an empty line the whole message is header. */
	check_pop3(S("A: 1\nB: 2"), true, 0, S("A: 1\r\nB: 2\r\n.\r\n"));
}

/* Streams all of reader in wire form on the pool (chunk bytes a read, a 4-byte mark) and
 * expects want; then frees the reader. */
static void
expect_crlf_whole(struct store_reader **reader, size_t chunk, const char *want, size_t want_len)
{
	struct store_reader_range r = ALL;
	size_t got_len;
	int rc;
	char *got;

	r.conv = STORE_READER_CRLF;
	r.chunk = chunk;
	got = stream_all(*reader, io, &r, 4, &got_len, &rc);
	assert_int_equal(rc, 1);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, got_len);
	free(got);
	store_reader_free(reader);
}

/* Expunged by another session and unlinked after the reader opened it: still read whole,
 * on the pool and with the stream started after the unlink. */
static void
test_removed_underneath(void **state)
{
	static const char msg[] = "Subject: gone\n\nstill here\n";
	struct store_reader *reader = reader_on(S(msg));

	assert_int_equal(unlink(path), 0);
	expect_crlf_whole(&reader, 5, S("Subject: gone\r\n\r\nstill here\r\n"));
}

/* The reader's owner drops it while a stream runs, and the stream is dropped with a read in
 * flight: nothing is called back, nothing leaks (ASan), nothing is touched after free. */
static void
test_free_in_flight(void **state)
{
	static char big[300000];
	struct store_reader *reader;
	struct store_reader_range r = ALL;
	struct run run = {0};
	struct store_reader_stream *st;
	struct evbuffer *out = evbuffer_new();

	memset(big, 'x', sizeof(big));
	reader = reader_on(big, sizeof(big));
	st = store_reader_stream_new(reader, io, &r, run_ready, &run);
	store_reader_free(&reader);
	assert_int_equal(store_reader_stream_pump(st, out, 1 << 20), 0);
	store_reader_stream_free(&st);
	assert_null(st);
	/* Let the job finish and its completion free the stream. */
	workers_free(&io);
	io = workers_new(base, 2);
	assert_int_equal(run.ready, 0);
	evbuffer_free(out);
}

static void
commit_cb(bool ok, const struct store_result *results, const char *error, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static void
update_cb(bool ok, const char *error, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static int eml_files;

static int
count_eml(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	size_t n = strlen(p);

	eml_files += flag == FTW_F && n > 4 && strcmp(p + n - 4, ".eml") == 0;
	return 0;
}

static int
rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* Through the store: a message opened with store_reader_open and then expunged (row deleted,
 * file unlinked by the committer) is still read whole; opened after, it is gone (-2), as is a
 * UID that never was. */
static void
test_store_expunged_underneath(void **state)
{
	static const char msg[] = "From: a@b\r\nSubject: x\r\n\r\nbody\n.\r\n";
	char dir[] = "/tmp/test_store_reader_store.XXXXXX", error[256];
	struct store_target t = {0, "INBOX", 0, "bob@example.org", NULL};
	struct store_delivery dv = {"a@b", 0, 1751364000, &t, 1};
	struct store_account acc;
	struct store_reader *reader = NULL;
	struct store_blob *blob = NULL;
	struct store *store = NULL;
	uint32_t uid = 1;
	int done = 0;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(store_open(dir, true, NULL, &store, error, sizeof(error)), 0);
	assert_int_equal(store_account_add(store, "bob@example.org",
	                                   "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaA",
	                                   error, sizeof(error)),
	                 1);
	assert_int_equal(store_account_lookup(store, "bob@example.org", &acc), 1);
	t.account_id = acc.id;
	assert_int_equal(store_blob_new(store, &blob, error, sizeof(error)), 0);
	assert_int_equal(store_blob_write(blob, msg, sizeof(msg) - 1), 0);
	store_blob_commit(store, &blob, &dv, commit_cb, &done);
	assert_int_equal(done, 1);

	assert_int_equal(store_reader_open(store, acc.id, "INBOX", 7, &reader), -2);
	assert_null(reader);
	assert_int_equal(store_reader_open(store, acc.id, "INBOX", uid, &reader), 1);
	eml_files = 0;
	nftw(dir, count_eml, 16, FTW_PHYS);
	assert_int_equal(eml_files, 1);
	done = 0;
	store_mailbox_update(store, acc.id, "INBOX", NULL, 0, &uid, 1, update_cb, &done);
	assert_int_equal(done, 1);
	eml_files = 0;
	nftw(dir, count_eml, 16, FTW_PHYS);
	assert_int_equal(eml_files, 0); /* the committer unlinked it */
	assert_int_equal(
	    store_reader_open(store, acc.id, "INBOX", uid, &(struct store_reader *){0}), -2);
	expect_crlf_whole(&reader, 7, S("From: a@b\r\nSubject: x\r\n\r\nbody\r\n.\r\n"));
	store_free(&store);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int
setup(void **state)
{
	int fd;

	evthread_use_pthreads();
	base = event_base_new();
	io = workers_new(base, 2);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int
teardown(void **state)
{
	unlink(path);
	workers_free(&io);
	event_base_free(base);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole_raw),
	    cmocka_unit_test(test_byte_range),
	    cmocka_unit_test(test_crlf),
	    cmocka_unit_test(test_crlf_nul),
	    cmocka_unit_test(test_window_and_pad),
	    cmocka_unit_test(test_part),
	    cmocka_unit_test(test_pop3_dot_stuffing),
	    cmocka_unit_test(test_pop3_top),
	    cmocka_unit_test(test_removed_underneath),
	    cmocka_unit_test(test_free_in_flight),
	    cmocka_unit_test(test_store_expunged_underneath),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
