/* Unit tests for lib/config: tables of good and bad files, overrides, the default file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/util.h"

/* Writes text to a new temporary file and returns its path (caller unlinks and frees). */
static char *
write_temp(const char *data, size_t len)
{
	char *path = xstrdup("/tmp/tern-test-config-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write_full(fd, data, len), 0);
	close(fd);
	return path;
}

struct good_case {
	const char *text;
	const char *key;
	const char *want;
};

static const struct good_case good_cases[] = {
    {"[server]\nhostname = mx.example.test\n", "server.hostname", "mx.example.test"},
    {"[server]\nhostname=mx.example.test", "server.hostname", "mx.example.test"},
    {"  [server]  \n\thostname\t=\tmx.example.test\t\n", "server.hostname", "mx.example.test"},
    {"[server]\r\nhostname = crlf.example\r\n", "server.hostname", "crlf.example"},
    {"\xef\xbb\xbf[server]\nhostname = bom.example\n", "server.hostname", "bom.example"},
    {"# comment\n; another\n\n[server]\n# hostname = no\nhostname = yes.example\n",
     "server.hostname", "yes.example"},
    {"[server]\nhostname = a.example # trailing comment\n", "server.hostname", "a.example"},
    {"[server]\nhostname = a.example ; trailing comment\n", "server.hostname", "a.example"},
    {"[server]\nhostname = \"quoted.example\"\n", "server.hostname", "quoted.example"},
    {"[server]\ndata_dir = \"/srv/with space # not a comment\"\n", "server.data_dir",
     "/srv/with space # not a comment"},
    {"[server]\ndata_dir = \"/a\\\"b\\\\c\" # c\n", "server.data_dir", "/a\"b\\c"},
    {"[server]\nhostname = first.example\nhostname = last.example\n", "server.hostname",
     "last.example"},
    {"[smtp]\nmax_recipients = 1\n", "smtp.max_recipients", "1"},
    {"[smtp]\nmax_recipients = 10000\n", "smtp.max_recipients", "10000"},
    {"[smtp]\nmax_message_size = 2147483647\n", "smtp.max_message_size", "2147483647"},
    {"[log]\nlevel = debug\n", "log.level", "debug"},
    {"[tls]\nmin_version = TLSv1.3\n", "tls.min_version", "TLSv1.3"},
    {"[auth]\nallow_plaintext = never\n", "auth.allow_plaintext", "never"},
    {"[auth]\nfailure_delay = 0\n", "auth.failure_delay", "0"},
    {"[smtp]\nlisten =\n", "smtp.listen", ""},
    {"[smtp]\nlisten = \"\"\n", "smtp.listen", ""},
    {"[server]\n[smtp]\n[server]\nworkers = 8\n", "server.workers", "8"},
    {"", "server.hostname", "localhost"},
};

static void
test_good_files(void **state)
{
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct good_case *c = &good_cases[i];
		struct config *config = config_new();
		char error[512] = "";
		char *path = write_temp(c->text, strlen(c->text));

		if (config_load_file(config, path, error, sizeof(error)) != 0)
			fail_msg("case %zu: %s", i, error);
		assert_string_equal(config_get(config, c->key), c->want);
		unlink(path);
		free(path);
		config_free(&config);
		assert_null(config);
	}
}

struct bad_case {
	const char *text;
	unsigned line;
	const char *want; /* a substring of the message after "path:line: " */
};

static const struct bad_case bad_cases[] = {
    {"[smtp]\nlisen = 127.0.0.1:25\n", 2, "unknown key 'lisen' in section [smtp]"},
    {"[server]\nlisten = x\n", 2, "unknown key 'listen' in section [server]"},
    {"[smpt]\n", 1, "unknown section [smpt]"},
    {"[SMTP]\n", 1, "unknown section [SMTP]"},
    {"[smtp]\nMax_Recipients = 5\n", 2, "unknown key 'Max_Recipients'"},
    {"[smtp\n", 1, "line is not '[section]'"},
    {"[smtp] x\n", 1, "line is not '[section]'"},
    {"hostname = a\n", 1, "key 'hostname' outside any [section]"},
    {"# c\n\nworkers = 2\n[server]\n", 3, "outside any [section]"},
    {"[server]\nhostname mx.example\n", 2, "line is not 'key = value'"},
    {"[server]\n= value\n", 2, "line is not 'key = value'"},
    {"[smtp]\nmax_recipients = ten\n", 2, "smtp.max_recipients: 'ten' is not an integer"},
    {"[smtp]\nmax_recipients = 10x\n", 2, "smtp.max_recipients: '10x' is not an integer"},
    {"[smtp]\nmax_recipients =\n", 2, "smtp.max_recipients: '' is not an integer"},
    {"[smtp]\nmax_recipients = 99999999999999999999999\n", 2, "is not an integer"},
    {"[smtp]\n\n\nmax_recipients = 0\n", 4, "smtp.max_recipients: '0' is below the minimum 1"},
    {"[smtp]\nmax_recipients = -5\n", 2, "smtp.max_recipients: '-5' is below the minimum 1"},
    {"[smtp]\nmax_recipients = 10001\n", 2,
     "smtp.max_recipients: '10001' is above the maximum 10000"},
    {"[server]\nworkers = 65\n", 2, "server.workers: '65' is above the maximum 64"},
    {"[smtp]\nmax_message_size = 1023\n", 2, "below the minimum 1024"},
    {"[log]\nlevel = verbose\n", 2, "log.level: 'verbose' is not one of debug, info, warn, error"},
    {"[log]\nlevel = INFO\n", 2, "log.level: 'INFO' is not one of"},
    {"[tls]\nmin_version = TLSv1.1\n", 2, "tls.min_version: 'TLSv1.1' is not one of"},
    {"[auth]\nallow_plaintext = yes\n", 2, "auth.allow_plaintext: 'yes' is not one of"},
    {"[server]\nhostname = \"unterminated\n", 2, "server.hostname: unterminated quoted value"},
    {"[server]\nhostname = \"a\" b\n", 2, "server.hostname: text after the closing quote"},
    {"[server]\nhostname =\n", 2, "server.hostname: the value may not be empty"},
    {"[server]\nhostname = a\x01"
     "b\n",
     2, "server.hostname: 'a\\x01b' contains a control"},
};

static void
test_bad_files(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct config *config = config_new();
		char error[512] = "", prefix[128];
		char *path = write_temp(c->text, strlen(c->text));

		assert_int_equal(config_load_file(config, path, error, sizeof(error)), -1);
		snprintf(prefix, sizeof(prefix), "%s:%u: ", path, c->line);
		if (strncmp(error, prefix, strlen(prefix)) != 0 || strstr(error, c->want) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, error, prefix,
			         c->want);
		/* A failed load changes nothing. */
		assert_string_equal(config_get(config, "server.hostname"), "localhost");
		assert_int_equal(config_get_int(config, "smtp.max_recipients"), 100);
		unlink(path);
		free(path);
		config_free(&config);
	}
}

static void
test_failed_load_is_atomic(void **state)
{
	const char *text = "[server]\nhostname = changed.example\nworkers = 99\n";
	struct config *config = config_new();
	char error[512];
	char *path = write_temp(text, strlen(text));

	assert_int_equal(config_load_file(config, path, error, sizeof(error)), -1);
	assert_string_equal(config_get(config, "server.hostname"), "localhost");
	assert_int_equal(config_get_int(config, "server.workers"), 2);
	unlink(path);
	free(path);
	config_free(&config);
}

static void
test_missing_file(void **state)
{
	struct config *config = config_new();
	char error[512];

	assert_int_equal(config_load_file(config, "/nonexistent/tern.conf", error, sizeof(error)),
	                 -1);
	assert_non_null(strstr(error, "/nonexistent/tern.conf: "));
	assert_int_equal(config_load_file(config, "/tmp", error, sizeof(error)), -1);
	assert_non_null(strstr(error, "/tmp: "));
	config_free(&config);
}

static void
test_defaults(void **state)
{
	struct config *config = config_new();
	char **items;

	assert_string_equal(config_get(config, "server.hostname"), "localhost");
	assert_string_equal(config_get(config, "server.data_dir"), "");
	assert_int_equal(config_get_int(config, "server.max_connections"), 10000);
	assert_int_equal(config_get_int(config, "server.max_connections_per_ip"), 100);
	assert_int_equal(config_get_int(config, "server.shutdown_timeout"), 10);
	assert_int_equal(config_get_int(config, "server.workers"), 2);
	assert_string_equal(config_get(config, "log.level"), "info");
	assert_string_equal(config_get(config, "tls.cert"), "tls/cert.pem");
	assert_string_equal(config_get(config, "tls.key"), "tls/key.pem");
	assert_string_equal(config_get(config, "tls.min_version"), "TLSv1.2");
	assert_string_equal(config_get(config, "auth.allow_plaintext"), "loopback");
	assert_int_equal(config_get_int(config, "auth.max_failures"), 5);
	assert_int_equal(config_get_int(config, "auth.failure_window"), 300);
	assert_int_equal(config_get_int(config, "auth.failure_delay"), 2);
	assert_int_equal(config_get_int(config, "smtp.max_message_size"), 26214400);
	assert_int_equal(config_get_int(config, "smtp.max_recipients"), 100);
	assert_int_equal(config_get_int(config, "smtp.idle_timeout"), 300);
	assert_int_equal(config_get_int(config, "smtp.max_errors"), 10);

	assert_int_equal(config_get_list(config, "server.domains", &items), 0);
	assert_non_null(items);
	assert_null(items[0]);
	config_list_free(&items);
	assert_null(items);
	assert_int_equal(config_get_list(config, "smtp.listen", &items), 1);
	assert_string_equal(items[0], "127.0.0.1:2525");
	config_list_free(&items);
	assert_int_equal(config_get_list(config, "smtp.submission", &items), 1);
	assert_string_equal(items[0], "127.0.0.1:2587");
	config_list_free(&items);
	assert_int_equal(config_get_list(config, "smtp.submissions", &items), 1);
	assert_string_equal(items[0], "127.0.0.1:2465");
	config_list_free(&items);
	config_free(&config);
}

struct list_case {
	const char *value;
	size_t n;
	const char *items[4];
};

static const struct list_case list_cases[] = {
    {"", 0, {NULL}},
    {"   ", 0, {NULL}},
    {"a.example", 1, {"a.example"}},
    {"a.example,b.example", 2, {"a.example", "b.example"}},
    {"a.example, b.example", 2, {"a.example", "b.example"}},
    {"a.example b.example\tc.example", 3, {"a.example", "b.example", "c.example"}},
    {" , a.example ,, b.example , ", 2, {"a.example", "b.example"}},
    {"[::1]:25, 127.0.0.1:25", 2, {"[::1]:25", "127.0.0.1:25"}},
};

static void
test_lists(void **state)
{
	for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		const struct list_case *c = &list_cases[i];
		struct config *config = config_new();
		char *text = xasprintf("[server]\ndomains = \"%s\"\n", c->value);
		char *path = write_temp(text, strlen(text));
		char error[512];
		char **items;

		if (config_load_file(config, path, error, sizeof(error)) != 0)
			fail_msg("case %zu: %s", i, error);
		assert_int_equal(config_get_list(config, "server.domains", &items), c->n);
		for (size_t j = 0; j < c->n; j++)
			assert_string_equal(items[j], c->items[j]);
		assert_null(items[c->n]);
		config_list_free(&items);
		unlink(path);
		free(path);
		free(text);
		config_free(&config);
	}
}

static void
test_set_and_options(void **state)
{
	struct config *config = config_new();
	char error[512];

	assert_int_equal(config_set(config, "smtp.max_recipients", "50", error, sizeof(error)), 0);
	assert_int_equal(config_get_int(config, "smtp.max_recipients"), 50);
	assert_string_equal(config_get(config, "smtp.max_recipients"), "50");

	assert_int_equal(config_set(config, "smtp.max_recipients", "0", error, sizeof(error)), -1);
	assert_string_equal(error, "smtp.max_recipients: '0' is below the minimum 1");
	assert_int_equal(config_get_int(config, "smtp.max_recipients"), 50);

	assert_int_equal(config_set(config, "smtp.lisen", "x", error, sizeof(error)), -1);
	assert_string_equal(error, "unknown key 'smtp.lisen'");
	assert_int_equal(config_set(config, "nodot", "x", error, sizeof(error)), -1);
	assert_int_equal(config_set(config, "smtp.", "x", error, sizeof(error)), -1);
	assert_int_equal(config_set(config, ".listen", "x", error, sizeof(error)), -1);

	assert_int_equal(
	    config_set_option(config, "server.hostname=mx.example.test", error, sizeof(error)), 0);
	assert_string_equal(config_get(config, "server.hostname"), "mx.example.test");
	assert_int_equal(config_set_option(config, " log.level = debug ", error, sizeof(error)), 0);
	assert_string_equal(config_get(config, "log.level"), "debug");
	assert_int_equal(config_set_option(config, "smtp.listen=", error, sizeof(error)), 0);
	assert_string_equal(config_get(config, "smtp.listen"), "");
	/* The value after the first '=' is kept whole. */
	assert_int_equal(config_set_option(config, "server.data_dir=/a=b", error, sizeof(error)),
	                 0);
	assert_string_equal(config_get(config, "server.data_dir"), "/a=b");

	assert_int_equal(config_set_option(config, "server.hostname", error, sizeof(error)), -1);
	assert_non_null(strstr(error, "is not section.key=value"));
	assert_int_equal(config_set_option(config, "log.level=loud", error, sizeof(error)), -1);
	assert_non_null(strstr(error, "log.level: 'loud' is not one of"));
	config_free(&config);
}

static void
test_get_path(void **state)
{
	struct config *config = config_new();
	char error[512];
	char *p;

	p = config_get_path(config, "tls.cert", "/srv/tern");
	assert_string_equal(p, "/srv/tern/tls/cert.pem");
	free(p);
	assert_int_equal(config_set(config, "tls.key", "/etc/ssl/k.pem", error, sizeof(error)), 0);
	p = config_get_path(config, "tls.key", "/srv/tern");
	assert_string_equal(p, "/etc/ssl/k.pem");
	free(p);
	config_free(&config);
}

/* Loads the text written by config_write_default into a fresh config. */
static struct config *
load_written(const char *const *overrides, char **text_r)
{
	struct config *config = config_new();
	char *buf = NULL, error[512];
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	assert_int_equal(config_write_default(fp, overrides), 0);
	fclose(fp);
	if (config_load_buffer(config, "written", buf, len, error, sizeof(error)) != 0)
		fail_msg("%s\n%s", error, buf);
	*text_r = buf;
	return config;
}

static const char *const all_keys[] = {
    "server.hostname",
    "server.domains",
    "server.data_dir",
    "server.max_connections",
    "server.max_connections_per_ip",
    "server.shutdown_timeout",
    "server.workers",
    "log.level",
    "tls.cert",
    "tls.key",
    "tls.min_version",
    "auth.allow_plaintext",
    "auth.max_failures",
    "auth.failure_window",
    "auth.failure_delay",
    "smtp.listen",
    "smtp.submission",
    "smtp.submissions",
    "smtp.max_message_size",
    "smtp.max_recipients",
    "smtp.idle_timeout",
    "smtp.max_errors",
    NULL,
};

static void
test_write_default_round_trip(void **state)
{
	struct config *defaults = config_new();
	struct config *loaded;
	char *text;

	loaded = load_written(NULL, &text);
	for (size_t i = 0; all_keys[i] != NULL; i++)
		assert_string_equal(config_get(loaded, all_keys[i]),
		                    config_get(defaults, all_keys[i]));
	/* Header, sections, documented keys. */
	assert_non_null(strstr(text, "# tern.conf"));
	assert_non_null(strstr(text, "\n[server]\n"));
	assert_non_null(strstr(text, "\n[smtp]\n"));
	assert_non_null(strstr(text, "(default: 127.0.0.1:2525)\nlisten = 127.0.0.1:2525\n"));
	assert_non_null(strstr(text, "(default: empty)\ndomains =\n"));
	assert_non_null(strstr(text, "(default: 100)\nmax_recipients = 100\n"));
	free(text);
	config_free(&loaded);
	config_free(&defaults);
}

static void
test_write_default_overrides(void **state)
{
	const char *const overrides[] = {
	    "server.domains=example.test, example.org",
	    "server.hostname=mx.example.test",
	    "smtp.submissions=",
	    "server.data_dir=/srv/odd # \"path\"; here ",
	    "smtp.max_errors=3",
	    NULL,
	};
	struct config *want = config_new();
	struct config *loaded;
	char error[512];
	char *text;

	for (size_t i = 0; overrides[i] != NULL; i++)
		assert_int_equal(config_set_option(want, overrides[i], error, sizeof(error)), 0);
	loaded = load_written(overrides, &text);
	for (size_t i = 0; all_keys[i] != NULL; i++)
		assert_string_equal(config_get(loaded, all_keys[i]), config_get(want, all_keys[i]));
	assert_string_equal(config_get(loaded, "server.data_dir"), "/srv/odd # \"path\"; here");
	/* The comment keeps the table's default; the value is the override. */
	assert_non_null(strstr(text, "(default: localhost)\nhostname = mx.example.test\n"));
	assert_non_null(strstr(text, "submissions =\n"));
	free(text);
	config_free(&loaded);
	config_free(&want);

	/* A bad override is refused. */
	{
		const char *const bad[] = {"smtp.max_errors=0", NULL};
		char *buf = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&buf, &len);

		assert_int_equal(config_write_default(fp, bad), -1);
		fclose(fp);
		free(buf);
	}
}

static void
test_hostile_input(void **state)
{
	struct config *config = config_new();
	size_t big = 1000 * 1000;
	size_t cap = 1024 * 1024;
	char *data = xmalloc(cap + 64);
	char error[512];
	char *path;

	/* One 1 MB line (inside the 1 MiB file cap). */
	memcpy(data, "[server]\nhostname = ", 20);
	memset(data + 20, 'a', big);
	data[20 + big] = '\n';
	path = write_temp(data, big + 21);
	assert_int_equal(config_load_file(config, path, error, sizeof(error)), -1);
	assert_non_null(strstr(error, ":2: line is longer than"));
	unlink(path);
	free(path);

	/* Bigger than the file cap. */
	memset(data, '\n', cap + 64);
	path = write_temp(data, cap + 64);
	assert_int_equal(config_load_file(config, path, error, sizeof(error)), -1);
	assert_non_null(strstr(error, "file is larger than"));
	unlink(path);
	free(path);

	/* NUL bytes: in a file, in a comment and in a section line. */
	path = write_temp("[server]\nhostname = a\0b\n", 24);
	assert_int_equal(config_load_file(config, path, error, sizeof(error)), -1);
	assert_non_null(strstr(error, ":2: line contains a NUL byte"));
	assert_string_equal(config_get(config, "server.hostname"), "localhost");
	unlink(path);
	free(path);
	assert_int_equal(config_load_buffer(config, "mem", "# a\0b\n", 6, error, sizeof(error)),
	                 -1);
	assert_string_equal(error, "mem:1: line contains a NUL byte");
	assert_int_equal(
	    config_load_buffer(config, "mem", "\n[ser\0ver]\n", 11, error, sizeof(error)), -1);
	assert_string_equal(error, "mem:2: line contains a NUL byte");

	/* Every byte value as a line, one at a time: errors or not, never a crash. */
	for (int c = 0; c < 256; c++) {
		char line[3] = {(char)c, '\n', 0};
		(void)config_load_buffer(config, "mem", line, 2, error, sizeof(error));
	}
	/* Not NUL-terminated, no final newline. */
	memcpy(data, "[log]\nlevel = debugXXXX", 23);
	assert_int_equal(config_load_buffer(config, "mem", data, 19, error, sizeof(error)), 0);
	assert_string_equal(config_get(config, "log.level"), "debug");

	/* Escaped client-ish bytes in the message. */
	assert_int_equal(config_load_buffer(config, "mem", "[log]\nlevel = \xff\x7f\n", 16, error,
	                                    sizeof(error)),
	                 -1);
	assert_non_null(strstr(error, "'\\xff\\x7f'"));
	free(data);
	config_free(&config);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_files),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_failed_load_is_atomic),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_set_and_options),
	    cmocka_unit_test(test_get_path),
	    cmocka_unit_test(test_write_default_round_trip),
	    cmocka_unit_test(test_write_default_overrides),
	    cmocka_unit_test(test_hostile_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
