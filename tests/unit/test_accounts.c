/* test_accounts: paths under $TERN_HOME, the accounts file (round-trip, mode 0600, errors with
 * file:line), provider presets, password commands and accounts_find. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/util.h"
#include "tern/accounts.h"

static char test_home[] = "/tmp/test_accounts.XXXXXX";

static void
get_paths(struct tern_paths *paths)
{
	char error[512] = "";

	if (tern_paths_get(paths, error, sizeof(error)) != 0)
		fail_msg("tern_paths_get: %s", error);
}

/* Writes the accounts file verbatim (mode 0600). */
static void
write_accounts_file(const char *text)
{
	char *path = xasprintf("%s/accounts.conf", test_home);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(path, 0600);
	free(path);
}

static void
remove_accounts_file(void)
{
	char *path = xasprintf("%s/accounts.conf", test_home);

	unlink(path);
	free(path);
}

static void
test_paths(void **state)
{
	struct tern_paths paths;

	get_paths(&paths);
	assert_string_equal(paths.config_dir, test_home);
	assert_string_equal(paths.data_dir, test_home);
}

static void
test_paths_xdg(void **state)
{
	struct tern_paths paths;
	char *cfg = xasprintf("%s/xdg-config", test_home);
	char *data = xasprintf("%s/xdg-data", test_home);
	char *want_cfg = xasprintf("%s/tern", cfg), *want_data = xasprintf("%s/tern", data);
	struct stat st;

	unsetenv("TERN_HOME");
	setenv("XDG_CONFIG_HOME", cfg, 1);
	setenv("XDG_DATA_HOME", data, 1);
	get_paths(&paths);
	setenv("TERN_HOME", test_home, 1);
	assert_string_equal(paths.config_dir, want_cfg);
	assert_string_equal(paths.data_dir, want_data);
	assert_int_equal(stat(want_cfg, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	rmdir(want_cfg);
	rmdir(want_data);
	rmdir(cfg);
	rmdir(data);
	free(cfg);
	free(data);
	free(want_cfg);
	free(want_data);
}

static void
test_absent_file_is_empty(void **state)
{
	struct tern_paths paths;
	struct account *list = NULL;
	size_t n = 1;
	char error[512] = "";

	remove_accounts_file();
	get_paths(&paths);
	assert_int_equal(accounts_load(&paths, &list, &n, error, sizeof(error)), 0);
	assert_int_equal(n, 0);
	free(list);
}

static void
test_round_trip(void **state)
{
	struct tern_paths paths;
	struct account in[2], *out = NULL;
	size_t n = 0;
	char error[512] = "", path[PATH_MAX + 32];
	struct stat st;

	memset(in, 0, sizeof(in));
	str_copy(in[0].name, "work", sizeof(in[0].name));
	str_copy(in[0].address, "alice@example.org", sizeof(in[0].address));
	str_copy(in[0].display_name, "Alice Ångström", sizeof(in[0].display_name));
	str_copy(in[0].smtp.host, "mail.example.org", sizeof(in[0].smtp.host));
	in[0].smtp.port = 587;
	in[0].smtp.security = CONN_SECURITY_STARTTLS;
	str_copy(in[0].imap.host, "::1", sizeof(in[0].imap.host));
	in[0].imap.port = 1993;
	in[0].imap.security = CONN_SECURITY_NONE;
	str_copy(in[0].user, "alice", sizeof(in[0].user));
	str_copy(in[0].password, " p\"w \\ # ", sizeof(in[0].password));
	str_copy(in[0].ca_file, "/etc/tern/ca.pem", sizeof(in[0].ca_file));
	in[0].insecure = true;
	in[0].is_default = true;
	str_copy(in[1].name, "home", sizeof(in[1].name));
	str_copy(in[1].address, "al@example.net", sizeof(in[1].address));
	str_copy(in[1].pop3.host, "pop.example.net", sizeof(in[1].pop3.host));
	in[1].pop3.port = 995;
	str_copy(in[1].password_command, "pass show mail/al", sizeof(in[1].password_command));

	get_paths(&paths);
	if (accounts_save(&paths, in, 2, error, sizeof(error)) != 0)
		fail_msg("accounts_save: %s", error);
	accounts_file_path(&paths, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	if (accounts_load(&paths, &out, &n, error, sizeof(error)) != 0)
		fail_msg("accounts_load: %s", error);
	assert_int_equal(n, 2);
	/* The loader fills user with the address when none is stored. */
	str_copy(in[1].user, in[1].address, sizeof(in[1].user));
	for (size_t i = 0; i < 2; i++)
		assert_memory_equal(&in[i], &out[i], sizeof(in[i]));
	free(out);
}

static void
test_unknown_key_names_line(void **state)
{
	static const struct {
		const char *name;
		const char *text;
		const char *error;
	} cases[] = {
	    {"unknown-key", "[account a]\naddress = a@b.c\n\nsmpt = x:25\n",
	     "accounts.conf:4: smpt"},
	    {"outside", "address = a@b.c\n", "accounts.conf:1:"},
	    {"bad-section", "# c\n[server]\n", "accounts.conf:2:"},
	    {"bad-port", "[account a]\naddress = a@b.c\nsmtp = host:99999\n", "accounts.conf:3:"},
	    {"bad-security", "[account a]\naddress = a@b.c\nsmtp_security = ssl\n",
	     "accounts.conf:3:"},
	    {"bad-bool", "[account a]\naddress = a@b.c\ninsecure = maybe\n", "accounts.conf:3:"},
	    {"duplicate", "[account a]\naddress = a@b.c\n[account a]\n", "accounts.conf:3:"},
	    {"no-equals", "[account a]\naddress\n", "accounts.conf:2:"},
	    {"no-address", "[account a]\nname = A\n", "no address"},
	};
	struct tern_paths paths;

	get_paths(&paths);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct account *list = NULL;
		size_t n = 0;
		char error[512] = "";

		write_accounts_file(cases[i].text);
		if (accounts_load(&paths, &list, &n, error, sizeof(error)) != -1)
			fail_msg("case %s: accepted", cases[i].name);
		if (strstr(error, cases[i].error) == NULL)
			fail_msg("case %s: error '%s' lacks '%s'", cases[i].name, error,
			         cases[i].error);
		assert_null(list);
	}
	remove_accounts_file();
}

static void
test_comments_and_defaults(void **state)
{
	struct tern_paths paths;
	struct account *list = NULL;
	size_t n = 0;
	char error[512] = "";

	write_accounts_file("# comment\n; another\n\n[account  x ]\n  address=x@example.org  \n"
	                    "smtp = [2001:db8::1]\nsmtp_security = STARTTLS\n");
	get_paths(&paths);
	if (accounts_load(&paths, &list, &n, error, sizeof(error)) != 0)
		fail_msg("accounts_load: %s", error);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "x");
	assert_string_equal(list[0].address, "x@example.org");
	assert_string_equal(list[0].user, "x@example.org");
	assert_string_equal(list[0].smtp.host, "2001:db8::1");
	assert_int_equal(list[0].smtp.port, 465);
	assert_int_equal(list[0].smtp.security, CONN_SECURITY_STARTTLS);
	assert_string_equal(list[0].pop3.host, "");
	free(list);
	remove_accounts_file();
}

static void
test_providers(void **state)
{
	static const struct {
		const char *name, *smtp, *pop3, *imap;
		int smtp_port;
		enum conn_security smtp_security;
	} want[] = {
	    {"gmail", "smtp.gmail.com", "pop.gmail.com", "imap.gmail.com", 465, CONN_SECURITY_TLS},
	    {"outlook", "smtp-mail.outlook.com", "outlook.office365.com", "outlook.office365.com",
	     587, CONN_SECURITY_STARTTLS},
	    {"yahoo", "smtp.mail.yahoo.com", "pop.mail.yahoo.com", "imap.mail.yahoo.com", 465,
	     CONN_SECURITY_TLS},
	    {"qq", "smtp.qq.com", "pop.qq.com", "imap.qq.com", 465, CONN_SECURITY_TLS},
	    {"163", "smtp.163.com", "pop.163.com", "imap.163.com", 465, CONN_SECURITY_TLS},
	    {"126", "smtp.126.com", "pop.126.com", "imap.126.com", 465, CONN_SECURITY_TLS},
	};
	size_t count = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct provider *p = accounts_provider(want[i].name);

		assert_non_null(p);
		assert_string_equal(p->smtp.host, want[i].smtp);
		assert_int_equal(p->smtp.port, want[i].smtp_port);
		assert_int_equal(p->smtp.security, want[i].smtp_security);
		assert_string_equal(p->pop3.host, want[i].pop3);
		assert_int_equal(p->pop3.port, 995);
		assert_int_equal(p->pop3.security, CONN_SECURITY_TLS);
		assert_string_equal(p->imap.host, want[i].imap);
		assert_int_equal(p->imap.port, 993);
		assert_int_equal(p->imap.security, CONN_SECURITY_TLS);
	}
	assert_non_null(accounts_provider("GMail"));
	assert_null(accounts_provider("nosuch"));
	for (const struct provider *p = accounts_providers(); p->name != NULL; p++)
		count++;
	assert_true(count >= 6);
}

static void
test_parse_server(void **state)
{
	static const struct {
		const char *text;
		int ok;
		const char *host;
		int port;
		const char *formatted;
	} cases[] = {
	    {"mail.example.org:587", 1, "mail.example.org", 587, "mail.example.org:587"},
	    {"mail.example.org", 1, "mail.example.org", 25, "mail.example.org:25"},
	    {"[::1]:2465", 1, "::1", 2465, "[::1]:2465"},
	    {"127.0.0.1:2110", 1, "127.0.0.1", 2110, "127.0.0.1:2110"},
	    {"host:0", 0, NULL, 0, NULL},
	    {"host:x", 0, NULL, 0, NULL},
	    {":25", 0, NULL, 0, NULL},
	    {"::1:25", 0, NULL, 0, NULL},
	    {"[::1", 0, NULL, 0, NULL},
	    {"a b:25", 0, NULL, 0, NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct account_server server = {0};
		char error[300] = "", buf[300];
		int r = accounts_parse_server(cases[i].text, 25, &server, error, sizeof(error));

		if (!cases[i].ok) {
			if (r != -1)
				fail_msg("'%s' accepted", cases[i].text);
			continue;
		}
		if (r != 0)
			fail_msg("'%s': %s", cases[i].text, error);
		assert_string_equal(server.host, cases[i].host);
		assert_int_equal(server.port, cases[i].port);
		accounts_format_server(&server, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].formatted);
	}
}

static void
test_password_command(void **state)
{
	static const struct {
		const char *cmd;
		int ret;
		const char *out;   /* when ret == 0 */
		const char *error; /* when ret == -1 */
	} cases[] = {
	    {"printf 'pw\\nignored'", 0, "pw", NULL},
	    {"printf 'pw'", 0, "pw", NULL},
	    {"printf 'p w\\r\\n'", 0, "p w", NULL},
	    {"exit 3", -1, NULL, "exited with status 3"},
	    {"printf 'pw\\n'; exit 1", -1, NULL, "exited with status 1"},
	    {"true", -1, NULL, "no password"},
	    {"kill -9 $$", -1, NULL, "signal 9"},
	    {"head -c 100000 /dev/zero | tr '\\0' x", -1, NULL, "over"},
	    /* A command that floods is cut off, not read without end. */
	    {"printf 'ok\\n'; yes", -1, NULL, "too much"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct account a;
		char out[256], error[512] = "";
		int r;

		memset(&a, 0, sizeof(a));
		str_copy(a.password_command, cases[i].cmd, sizeof(a.password_command));
		r = account_password(&a, out, sizeof(out), error, sizeof(error));
		if (r != cases[i].ret)
			fail_msg("'%s': returned %d (%s)", cases[i].cmd, r, error);
		if (r == 0)
			assert_string_equal(out, cases[i].out);
		else if (strstr(error, cases[i].error) == NULL)
			fail_msg("'%s': error '%s' lacks '%s'", cases[i].cmd, error,
			         cases[i].error);
	}
}

static void
test_password_stored(void **state)
{
	struct account a;
	char out[256], error[512] = "";

	memset(&a, 0, sizeof(a));
	assert_int_equal(account_password(&a, out, sizeof(out), error, sizeof(error)), 0);
	assert_string_equal(out, "");
	str_copy(a.password, "secret", sizeof(a.password));
	assert_int_equal(account_password(&a, out, sizeof(out), error, sizeof(error)), 0);
	assert_string_equal(out, "secret");
}

static void
test_find(void **state)
{
	struct account list[3];
	const struct account *a;
	char error[512] = "";

	memset(list, 0, sizeof(list));
	str_copy(list[0].name, "one", sizeof(list[0].name));
	str_copy(list[1].name, "two", sizeof(list[1].name));
	str_copy(list[2].name, "three", sizeof(list[2].name));

	assert_null(accounts_find(list, 0, NULL, error, sizeof(error)));
	assert_non_null(strstr(error, "tern account add"));
	assert_ptr_equal(accounts_find(list, 1, NULL, error, sizeof(error)), &list[0]);
	assert_null(accounts_find(list, 3, NULL, error, sizeof(error)));
	assert_non_null(strstr(error, "several accounts: pick one with --account NAME"));
	list[1].is_default = true;
	assert_ptr_equal(accounts_find(list, 3, NULL, error, sizeof(error)), &list[1]);
	a = accounts_find(list, 3, "three", error, sizeof(error));
	assert_ptr_equal(a, &list[2]);
	assert_null(accounts_find(list, 3, "four", error, sizeof(error)));
	assert_non_null(strstr(error, "four"));
	list[2].is_default = true;
	assert_null(accounts_find(list, 3, NULL, error, sizeof(error)));
}

static void
test_conn_options(void **state)
{
	struct account a;
	struct conn_options o;

	memset(&a, 0, sizeof(a));
	str_copy(a.smtp.host, "mail.example.org", sizeof(a.smtp.host));
	a.smtp.port = 465;
	a.smtp.security = CONN_SECURITY_TLS;
	account_conn_options(&a, &a.smtp, &o);
	assert_string_equal(o.host, "mail.example.org");
	assert_int_equal(o.port, 465);
	assert_null(o.ca_file);
	assert_false(o.insecure);
	assert_true(o.timeout_ms > 0);
	assert_true(o.max_line > 0);
	str_copy(a.ca_file, "/ca.pem", sizeof(a.ca_file));
	a.insecure = true;
	account_conn_options(&a, &a.smtp, &o);
	assert_string_equal(o.ca_file, "/ca.pem");
	assert_true(o.insecure);
}

static int
setup(void **state)
{
	if (mkdtemp(test_home) == NULL)
		return -1;
	setenv("TERN_HOME", test_home, 1);
	return 0;
}

static int
teardown(void **state)
{
	remove_accounts_file();
	rmdir(test_home);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_paths_xdg),
	    cmocka_unit_test(test_absent_file_is_empty),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_unknown_key_names_line),
	    cmocka_unit_test(test_comments_and_defaults),
	    cmocka_unit_test(test_providers),
	    cmocka_unit_test(test_parse_server),
	    cmocka_unit_test(test_password_command),
	    cmocka_unit_test(test_password_stored),
	    cmocka_unit_test(test_find),
	    cmocka_unit_test(test_conn_options),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
