/* accounts: the client's paths, the accounts file (INI, written atomically with mode 0600),
 * passwords from a command, and provider presets. */
#include "tern/accounts.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"

#define ACCOUNTS_FILE "accounts.conf"
#define ACCOUNTS_LINE_MAX 4096
/* Output of a password command past its first line is read and thrown away up to this much;
 * more is an error. */
#define ACCOUNTS_PWCMD_DRAIN_MAX (1024 * 1024)

static const struct provider accounts_provider_table[] = {
    {"gmail",
     {"smtp.gmail.com", 465, CONN_SECURITY_TLS},
     {"pop.gmail.com", 995, CONN_SECURITY_TLS},
     {"imap.gmail.com", 993, CONN_SECURITY_TLS}},
    {"outlook",
     {"smtp-mail.outlook.com", 587, CONN_SECURITY_STARTTLS},
     {"outlook.office365.com", 995, CONN_SECURITY_TLS},
     {"outlook.office365.com", 993, CONN_SECURITY_TLS}},
    {"yahoo",
     {"smtp.mail.yahoo.com", 465, CONN_SECURITY_TLS},
     {"pop.mail.yahoo.com", 995, CONN_SECURITY_TLS},
     {"imap.mail.yahoo.com", 993, CONN_SECURITY_TLS}},
    {"qq",
     {"smtp.qq.com", 465, CONN_SECURITY_TLS},
     {"pop.qq.com", 995, CONN_SECURITY_TLS},
     {"imap.qq.com", 993, CONN_SECURITY_TLS}},
    {"163",
     {"smtp.163.com", 465, CONN_SECURITY_TLS},
     {"pop.163.com", 995, CONN_SECURITY_TLS},
     {"imap.163.com", 993, CONN_SECURITY_TLS}},
    {"126",
     {"smtp.126.com", 465, CONN_SECURITY_TLS},
     {"pop.126.com", 995, CONN_SECURITY_TLS},
     {"imap.126.com", 993, CONN_SECURITY_TLS}},
    {"fastmail",
     {"smtp.fastmail.com", 465, CONN_SECURITY_TLS},
     {"pop.fastmail.com", 995, CONN_SECURITY_TLS},
     {"imap.fastmail.com", 993, CONN_SECURITY_TLS}},
    {NULL, {"", 0, CONN_SECURITY_TLS}, {"", 0, CONN_SECURITY_TLS}, {"", 0, CONN_SECURITY_TLS}},
};

static const char *const accounts_security_names[] = {
    [CONN_SECURITY_TLS] = "tls",
    [CONN_SECURITY_STARTTLS] = "starttls",
    [CONN_SECURITY_NONE] = "none",
};

const struct provider *
accounts_providers(void)
{
	return accounts_provider_table;
}

const struct provider *
accounts_provider(const char *name)
{
	for (const struct provider *p = accounts_provider_table; p->name != NULL; p++) {
		if (strcasecmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

const char *
accounts_security_name(enum conn_security security)
{
	if ((unsigned)security >=
	    sizeof(accounts_security_names) / sizeof(accounts_security_names[0]))
		return "?";
	return accounts_security_names[security];
}

int
accounts_security_parse(const char *name, enum conn_security *security_r)
{
	for (size_t i = 0; i < sizeof(accounts_security_names) / sizeof(accounts_security_names[0]);
	     i++) {
		if (strcasecmp(name, accounts_security_names[i]) == 0) {
			*security_r = (enum conn_security)i;
			return 1;
		}
	}
	return 0;
}

/* Joins dir and "/tern" from an environment variable or a default below $HOME. */
static int
accounts_xdg_dir(const char *env, const char *home_default, char *out, size_t outsize, char *error,
                 size_t errsize)
{
	const char *base = getenv(env);
	const char *home = getenv("HOME");
	int n;

	if (base != NULL && base[0] == '/') {
		n = snprintf(out, outsize, "%s/tern", base);
	} else {
		if (home == NULL || home[0] == '\0') {
			snprintf(error, errsize, "neither $TERN_HOME, $%s nor $HOME is set", env);
			return -1;
		}
		n = snprintf(out, outsize, "%s/%s/tern", home, home_default);
	}
	if (n < 0 || (size_t)n >= outsize) {
		snprintf(error, errsize, "path from $%s is too long", env);
		return -1;
	}
	return 0;
}

int
tern_paths_get(struct tern_paths *paths, char *error, size_t errsize)
{
	const char *home = getenv("TERN_HOME");

	memset(paths, 0, sizeof(*paths));
	if (home != NULL && home[0] != '\0') {
		if (strlen(home) >= sizeof(paths->config_dir)) {
			snprintf(error, errsize, "$TERN_HOME is too long");
			return -1;
		}
		str_copy(paths->config_dir, home, sizeof(paths->config_dir));
		str_copy(paths->data_dir, home, sizeof(paths->data_dir));
	} else {
		if (accounts_xdg_dir("XDG_CONFIG_HOME", ".config", paths->config_dir,
		                     sizeof(paths->config_dir), error, errsize) < 0 ||
		    accounts_xdg_dir("XDG_DATA_HOME", ".local/share", paths->data_dir,
		                     sizeof(paths->data_dir), error, errsize) < 0)
			return -1;
	}
	if (mkdir_p(paths->config_dir, 0700) < 0) {
		snprintf(error, errsize, "cannot create %s: %s", paths->config_dir,
		         strerror(errno));
		return -1;
	}
	if (mkdir_p(paths->data_dir, 0700) < 0) {
		snprintf(error, errsize, "cannot create %s: %s", paths->data_dir, strerror(errno));
		return -1;
	}
	return 0;
}

void
accounts_file_path(const struct tern_paths *paths, char *buf, size_t bufsize)
{
	snprintf(buf, bufsize, "%s/%s", paths->config_dir, ACCOUNTS_FILE);
}

int
accounts_parse_server(const char *text, int default_port, struct account_server *server,
                      char *error, size_t errsize)
{
	const char *host = text, *port = NULL;
	size_t hostlen;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			snprintf(error, errsize, "bad server '%s': expected [v6]:port", text);
			return -1;
		}
		host = text + 1;
		hostlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon != NULL && strchr(text, ':') != colon) {
			snprintf(error, errsize, "bad server '%s': write IPv6 as [addr]:port",
			         text);
			return -1;
		}
		hostlen = colon != NULL ? (size_t)(colon - text) : strlen(text);
		if (colon != NULL)
			port = colon + 1;
	}
	if (hostlen == 0 || hostlen >= sizeof(server->host)) {
		snprintf(error, errsize, "bad server '%s': empty or too long host", text);
		return -1;
	}
	for (size_t i = 0; i < hostlen; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c <= ' ' || c >= 0x7f || c == '/' || c == '@') {
			snprintf(error, errsize, "bad server '%s': bad character in host", text);
			return -1;
		}
	}
	if (port != NULL) {
		char *end;
		long v;

		errno = 0;
		v = strtol(port, &end, 10);
		if (port[0] == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 65535) {
			snprintf(error, errsize, "bad server '%s': port must be 1 to 65535", text);
			return -1;
		}
		server->port = (int)v;
	} else {
		server->port = default_port;
	}
	memcpy(server->host, host, hostlen);
	server->host[hostlen] = '\0';
	return 0;
}

void
accounts_format_server(const struct account_server *server, char *buf, size_t bufsize)
{
	if (strchr(server->host, ':') != NULL)
		snprintf(buf, bufsize, "[%s]:%d", server->host, server->port);
	else
		snprintf(buf, bufsize, "%s:%d", server->host, server->port);
}

/* Strips leading and trailing blanks in place and returns the start. */
static char *
accounts_trim(char *s)
{
	size_t len;

	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		s[--len] = '\0';
	return s;
}

/* Undoes the quoting accounts_write_value adds: "..." with \" and \\ escapes. */
static int
accounts_unquote(char *value)
{
	size_t len = strlen(value), o = 0;

	if (len == 0 || value[0] != '"')
		return 0;
	if (len < 2 || value[len - 1] != '"')
		return -1;
	for (size_t i = 1; i < len - 1; i++) {
		if (value[i] == '\\') {
			if (i + 1 >= len - 1 || (value[i + 1] != '"' && value[i + 1] != '\\'))
				return -1;
			i++;
		} else if (value[i] == '"') {
			return -1;
		}
		value[o++] = value[i];
	}
	value[o] = '\0';
	return 0;
}

/* Keys whose value is copied as it is into a fixed-size text field of struct account. */
static const struct {
	const char *key;
	size_t offset, size;
} accounts_text_keys[] = {
    {"name", offsetof(struct account, display_name), sizeof(((struct account *)0)->display_name)},
    {"user", offsetof(struct account, user), sizeof(((struct account *)0)->user)},
    {"password", offsetof(struct account, password), sizeof(((struct account *)0)->password)},
    {"password_command", offsetof(struct account, password_command),
     sizeof(((struct account *)0)->password_command)},
    {"ca_file", offsetof(struct account, ca_file), sizeof(((struct account *)0)->ca_file)},
};

static int
accounts_parse_bool(const char *value, bool *out)
{
	if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 ||
	    strcmp(value, "1") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 ||
	    strcmp(value, "0") == 0) {
		*out = false;
		return 0;
	}
	return -1;
}

/* Applies one key = value to an account; -1 with why set when the key or value is bad. */
static int
accounts_apply_key(struct account *a, const char *key, const char *value, char *why, size_t whysize)
{
	struct account_server *server = NULL;
	int default_port = 0;

	if (strcmp(key, "address") == 0) {
		if (strchr(value, '@') == NULL ||
		    str_copy(a->address, value, sizeof(a->address)) >= sizeof(a->address)) {
			snprintf(why, whysize, "bad address '%s'", value);
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(accounts_text_keys) / sizeof(accounts_text_keys[0]); i++) {
		if (strcmp(key, accounts_text_keys[i].key) != 0)
			continue;
		if (str_copy((char *)a + accounts_text_keys[i].offset, value,
		             accounts_text_keys[i].size) >= accounts_text_keys[i].size) {
			snprintf(why, whysize, "value is too long");
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "insecure") == 0 || strcmp(key, "default") == 0) {
		bool *flag = key[0] == 'i' ? &a->insecure : &a->is_default;
		if (accounts_parse_bool(value, flag) < 0) {
			snprintf(why, whysize, "%s must be yes or no, not '%s'", key, value);
			return -1;
		}
		return 0;
	}
	if (strncmp(key, "smtp", 4) == 0) {
		server = &a->smtp;
		default_port = 465;
		key += 4;
	} else if (strncmp(key, "pop3", 4) == 0) {
		server = &a->pop3;
		default_port = 995;
		key += 4;
	} else if (strncmp(key, "imap", 4) == 0) {
		server = &a->imap;
		default_port = 993;
		key += 4;
	}
	if (server != NULL && key[0] == '\0') {
		char error[300];
		if (value[0] == '\0') {
			server->host[0] = '\0';
			return 0;
		}
		if (accounts_parse_server(value, default_port, server, error, sizeof(error)) < 0) {
			snprintf(why, whysize, "%s", error);
			return -1;
		}
		return 0;
	}
	if (server != NULL && strcmp(key, "_security") == 0) {
		if (accounts_security_parse(value, &server->security) == 0) {
			snprintf(why, whysize, "security must be tls, starttls or none, not '%s'",
			         value);
			return -1;
		}
		return 0;
	}
	snprintf(why, whysize, "unknown key");
	return -1;
}

/* Checks a section name: letters, digits, '.', '_', '-', '@', up to 63 bytes. */
static bool
accounts_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 63)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("._-@+", *p) == NULL)
			return false;
	}
	return true;
}

int
accounts_load(const struct tern_paths *paths, struct account **list_r, size_t *n_r, char *error,
              size_t errsize)
{
	char path[PATH_MAX + 32], line[ACCOUNTS_LINE_MAX + 2];
	struct account *list = NULL, *cur = NULL;
	size_t n = 0, cap = 0;
	unsigned lineno = 0;
	struct stat st;
	FILE *fp;

	*list_r = NULL;
	*n_r = 0;
	accounts_file_path(paths, path, sizeof(path));
	fp = fopen(path, "re");
	if (fp == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(error, errsize, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077) != 0)
		fprintf(stderr,
		        "tern: warning: %s is readable by others (mode %03o); it may hold "
		        "passwords: chmod 600 %s\n",
		        path, (unsigned)(st.st_mode & 0777), path);
	while (fgets(line, sizeof(line), fp) != NULL) {
		char why[400], *s, *eq, *key, *value;
		size_t len = strlen(line);

		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(fp)) {
			snprintf(error, errsize, "%s:%u: line too long", path, lineno);
			goto fail;
		}
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		s = accounts_trim(line);
		if (s[0] == '\0' || s[0] == '#' || s[0] == ';')
			continue;
		if (s[0] == '[') {
			char *end = strrchr(s, ']'), *name;
			if (end == NULL || end[1] != '\0' || strncmp(s, "[account ", 9) != 0) {
				snprintf(error, errsize,
				         "%s:%u: expected a section \"[account NAME]\"", path,
				         lineno);
				goto fail;
			}
			*end = '\0';
			name = accounts_trim(s + 9);
			if (!accounts_name_ok(name)) {
				snprintf(error, errsize, "%s:%u: bad account name '%s'", path,
				         lineno, name);
				goto fail;
			}
			for (size_t i = 0; i < n; i++) {
				if (strcmp(list[i].name, name) == 0) {
					snprintf(error, errsize,
					         "%s:%u: account '%s' appears twice", path, lineno,
					         name);
					goto fail;
				}
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 4;
				list = xrealloc(list, cap * sizeof(*list));
			}
			cur = &list[n++];
			memset(cur, 0, sizeof(*cur));
			str_copy(cur->name, name, sizeof(cur->name));
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(error, errsize, "%s:%u: expected key = value", path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = accounts_trim(s);
		value = accounts_trim(eq + 1);
		if (cur == NULL) {
			snprintf(error, errsize,
			         "%s:%u: key '%s' outside an [account NAME] section", path, lineno,
			         key);
			goto fail;
		}
		if (accounts_unquote(value) < 0) {
			snprintf(error, errsize, "%s:%u: %s: bad quoting", path, lineno, key);
			goto fail;
		}
		if (accounts_apply_key(cur, key, value, why, sizeof(why)) < 0) {
			snprintf(error, errsize, "%s:%u: %s: %s", path, lineno, key, why);
			goto fail;
		}
	}
	if (ferror(fp)) {
		snprintf(error, errsize, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(fp);
	for (size_t i = 0; i < n; i++) {
		if (list[i].address[0] == '\0') {
			snprintf(error, errsize, "%s: account '%s' has no address", path,
			         list[i].name);
			free(list);
			return -1;
		}
		if (list[i].user[0] == '\0')
			str_copy(list[i].user, list[i].address, sizeof(list[i].user));
	}
	*list_r = list;
	*n_r = n;
	return 0;
fail:
	fclose(fp);
	free(list);
	return -1;
}

/* Writes key = value, quoting values that the loader would otherwise trim or misread. */
static int
accounts_write_value(FILE *fp, const char *key, const char *value)
{
	size_t len = strlen(value);
	bool quote = len > 0 && (value[0] == ' ' || value[0] == '\t' || value[0] == '"' ||
	                         value[len - 1] == ' ' || value[len - 1] == '\t');

	if (strpbrk(value, "\r\n") != NULL)
		return -1;
	if (!quote) {
		fprintf(fp, "%s = %s\n", key, value);
		return 0;
	}
	fprintf(fp, "%s = \"", key);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', fp);
		fputc(*p, fp);
	}
	fputs("\"\n", fp);
	return 0;
}

/* Writes one account's section; -1 when a value cannot be represented. */
static int
accounts_write_one(FILE *fp, const struct account *a)
{
	const struct {
		const char *key;
		const struct account_server *server;
	} servers[] = {{"smtp", &a->smtp}, {"pop3", &a->pop3}, {"imap", &a->imap}};
	int bad = 0;

	fprintf(fp, "[account %s]\n", a->name);
	bad |= accounts_write_value(fp, "address", a->address);
	if (a->display_name[0] != '\0')
		bad |= accounts_write_value(fp, "name", a->display_name);
	for (size_t i = 0; i < 3; i++) {
		char buf[300], key[32];
		if (servers[i].server->host[0] == '\0')
			continue;
		accounts_format_server(servers[i].server, buf, sizeof(buf));
		fprintf(fp, "%s = %s\n", servers[i].key, buf);
		snprintf(key, sizeof(key), "%s_security", servers[i].key);
		fprintf(fp, "%s = %s\n", key, accounts_security_name(servers[i].server->security));
	}
	if (a->user[0] != '\0' && strcmp(a->user, a->address) != 0)
		bad |= accounts_write_value(fp, "user", a->user);
	if (a->password[0] != '\0')
		bad |= accounts_write_value(fp, "password", a->password);
	if (a->password_command[0] != '\0')
		bad |= accounts_write_value(fp, "password_command", a->password_command);
	if (a->ca_file[0] != '\0')
		bad |= accounts_write_value(fp, "ca_file", a->ca_file);
	if (a->insecure)
		fputs("insecure = yes\n", fp);
	if (a->is_default)
		fputs("default = yes\n", fp);
	fputc('\n', fp);
	return bad ? -1 : 0;
}

int
accounts_save(const struct tern_paths *paths, const struct account *list, size_t n, char *error,
              size_t errsize)
{
	char path[PATH_MAX + 32], tmp[PATH_MAX + 48];
	FILE *fp;
	int fd;

	accounts_file_path(paths, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		snprintf(error, errsize, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	/* mkstemp already gives 0600; fchmod guards against an unusual umask or libc. */
	if (fchmod(fd, 0600) < 0 || (fp = fdopen(fd, "w")) == NULL) {
		snprintf(error, errsize, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	fputs("# tern accounts (see `tern account --help`). This file may hold passwords: keep it\n"
	      "# mode 0600, or use password_command (for example `pass show mail/me`).\n\n",
	      fp);
	for (size_t i = 0; i < n; i++) {
		if (accounts_write_one(fp, &list[i]) < 0) {
			snprintf(error, errsize, "account '%s': a value contains a line break",
			         list[i].name);
			fclose(fp);
			unlink(tmp);
			return -1;
		}
	}
	if (fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) < 0) {
		snprintf(error, errsize, "cannot write %s: %s", tmp, strerror(errno));
		fclose(fp);
		unlink(tmp);
		return -1;
	}
	if (fclose(fp) != 0) {
		snprintf(error, errsize, "cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		snprintf(error, errsize, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (fsync_dir(paths->config_dir) < 0) {
		snprintf(error, errsize, "cannot sync %s: %s", paths->config_dir, strerror(errno));
		return -1;
	}
	return 0;
}

const struct account *
accounts_find(const struct account *list, size_t n, const char *name, char *error, size_t errsize)
{
	const struct account *found = NULL;
	size_t ndefault = 0;

	if (n == 0) {
		snprintf(error, errsize, "no account: add one with tern account add");
		return NULL;
	}
	if (name != NULL) {
		for (size_t i = 0; i < n; i++) {
			if (strcmp(list[i].name, name) == 0)
				return &list[i];
		}
		snprintf(error, errsize, "no account named '%s' (tern account list shows them)",
		         name);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (list[i].is_default) {
			found = &list[i];
			ndefault++;
		}
	}
	if (ndefault == 1)
		return found;
	if (n == 1 && ndefault == 0)
		return &list[0];
	snprintf(error, errsize, "several accounts: pick one with --account NAME");
	return NULL;
}

/* Runs cmd with /bin/sh -c and keeps the first line of its output in out. */
static int
accounts_run_password_command(const char *cmd, char *out, size_t outsize, char *error,
                              size_t errsize)
{
	char buf[4096];
	size_t kept = 0, total = 0;
	bool line_done = false, overflow = false;
	int pipefd[2], status;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(error, errsize, "cannot run password command: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(error, errsize, "cannot run password command: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		/* dup2 clears O_CLOEXEC on the new descriptor, so stdout survives the exec. */
		if (dup2(pipefd[1], STDOUT_FILENO) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		ssize_t r = read(pipefd[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && !line_done; i++) {
			if (buf[i] == '\n') {
				line_done = true;
			} else if (kept + 1 < outsize) {
				out[kept++] = buf[i];
			} else {
				overflow = true;
				line_done = true;
			}
		}
		total += (size_t)r;
		/* Bounded: stop reading a command that floods us (it then gets SIGPIPE). */
		if (total > ACCOUNTS_PWCMD_DRAIN_MAX)
			break;
	}
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(error, errsize, "password command: %s", strerror(errno));
			return -1;
		}
	}
	out[kept] = '\0';
	if (total > ACCOUNTS_PWCMD_DRAIN_MAX) {
		snprintf(error, errsize, "password command printed too much (over 1 MiB)");
		goto fail;
	}
	if (WIFSIGNALED(status)) {
		snprintf(error, errsize, "password command killed by signal %d", WTERMSIG(status));
		goto fail;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(error, errsize, "password command exited with status %d",
		         WEXITSTATUS(status));
		goto fail;
	}
	if (overflow) {
		snprintf(error, errsize, "password command printed a line over %zu bytes",
		         outsize - 1);
		goto fail;
	}
	if (kept > 0 && out[kept - 1] == '\r')
		out[--kept] = '\0';
	if (kept == 0) {
		snprintf(error, errsize, "password command printed no password");
		goto fail;
	}
	explicit_bzero(buf, sizeof(buf));
	return 0;
fail:
	explicit_bzero(buf, sizeof(buf));
	explicit_bzero(out, outsize);
	return -1;
}

int
account_password(const struct account *account, char *out, size_t outsize, char *error,
                 size_t errsize)
{
	if (outsize == 0) {
		snprintf(error, errsize, "no room for the password");
		return -1;
	}
	out[0] = '\0';
	if (account->password_command[0] != '\0')
		return accounts_run_password_command(account->password_command, out, outsize, error,
		                                     errsize);
	if (str_copy(out, account->password, outsize) >= outsize) {
		out[0] = '\0';
		snprintf(error, errsize, "stored password is too long");
		return -1;
	}
	return 0;
}

void
account_conn_options(const struct account *account, const struct account_server *server,
                     struct conn_options *options_r)
{
	memset(options_r, 0, sizeof(*options_r));
	options_r->host = server->host;
	options_r->port = server->port;
	options_r->security = server->security;
	options_r->ca_file = account->ca_file[0] != '\0' ? account->ca_file : NULL;
	options_r->insecure = account->insecure;
	options_r->timeout_ms = 30000;
	options_r->max_line = 65536;
	/* Said at every connection, not only at account add: the risk is at use. */
	if (account->insecure && server->security != CONN_SECURITY_NONE)
		fprintf(
		    stderr,
		    "tern: warning: account '%s': certificate verification is off (--insecure); "
		    "%s:%d could be anyone\n",
		    account->name, server->host, server->port);
	else if (server->security == CONN_SECURITY_NONE)
		fprintf(stderr,
		        "tern: warning: account '%s': %s:%d without TLS; the password and mail "
		        "cross the network in the clear\n",
		        account->name, server->host, server->port);
}
