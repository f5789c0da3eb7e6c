/* accounts: the tern client's accounts, paths and provider presets.
 *
 * Paths: with $TERN_HOME set, config and data both live there; otherwise config in
 * $XDG_CONFIG_HOME/tern (default ~/.config/tern) and data in $XDG_DATA_HOME/tern (default
 * ~/.local/share/tern). Accounts are kept in CONFIG/accounts.conf, an INI file with one
 * "[account NAME]" section each, written atomically with mode 0600 (it may hold a password; the
 * password_command form, as msmtp's passwordeval, is the recommended one). */
#ifndef TERN_ACCOUNTS_H
#define TERN_ACCOUNTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "client/conn.h"

struct tern_paths {
	char config_dir[PATH_MAX];
	char data_dir[PATH_MAX];
};

/* Fills paths from the environment and creates both directories (0700). 0 or -1 with error. */
int tern_paths_get(struct tern_paths *paths, char *error, size_t errsize);

struct account_server {
	char host[256]; /* "" when not configured */
	int port;
	enum conn_security security;
};

struct account {
	char name[64];
	char address[320];
	char display_name[256]; /* for From:, may be "" */
	struct account_server smtp, pop3, imap;
	char user[320];              /* login; defaults to address */
	char password[256];          /* stored password, or "" */
	char password_command[1024]; /* run with /bin/sh -c; first line of stdout is the password */
	char ca_file[PATH_MAX];      /* trust this PEM instead of the system CAs, or "" */
	bool insecure;               /* skip certificate verification (warned about at every use) */
	bool is_default;
};

/* Loads every account. *list_r is malloc'ed (free it); an absent file means no accounts.
 * Returns 0, or -1 with an error naming the file and line. */
int accounts_load(const struct tern_paths *paths, struct account **list_r, size_t *n_r, char *error,
                  size_t errsize);
/* Replaces the file with these accounts (atomic rename, mode 0600). 0 or -1 with error. */
int accounts_save(const struct tern_paths *paths, const struct account *list, size_t n, char *error,
                  size_t errsize);
/* The named account, or with name NULL the default one (is_default, else the only one). NULL
 * with error when there is none or the choice is ambiguous ("several accounts: pick one with
 * --account NAME"). */
const struct account *accounts_find(const struct account *list, size_t n, const char *name,
                                    char *error, size_t errsize);
/* The password: the stored one, or the first line printed by password_command. 0 or -1 with
 * error ("password command exited with status 1"). With neither configured: 0 and "" (no login).
 * password_command wins when both are set. */
int account_password(const struct account *account, char *out, size_t outsize, char *error,
                     size_t errsize);
/* Connection options for one of the account's servers (timeouts and limits filled in). Prints a
 * warning on stderr when the account skips certificate checks or the server uses no TLS. */
void account_conn_options(const struct account *account, const struct account_server *server,
                          struct conn_options *options_r);

/* Presets: gmail, outlook, yahoo, qq, 163, 126 (and more if you like). */
struct provider {
	const char *name;
	struct account_server smtp, pop3, imap;
};
const struct provider *accounts_provider(const char *name);
/* NULL-terminated list, for --help and errors. */
const struct provider *accounts_providers(void);

/* Added helpers, shared by the account and send commands. */

/* "tls", "starttls", "none". */
const char *accounts_security_name(enum conn_security security);
/* 1 with *security_r set, or 0 when name is not one of the three. */
int accounts_security_parse(const char *name, enum conn_security *security_r);
/* Parses "host:port" or "[v6]:port" into server (security untouched); without ":port" the port
 * is default_port. Returns 0 or -1 with error. */
int accounts_parse_server(const char *text, int default_port, struct account_server *server,
                          char *error, size_t errsize);
/* Formats a server as "host:port" ("[v6]:port" for IPv6 literals) into buf. */
void accounts_format_server(const struct account_server *server, char *buf, size_t bufsize);
/* The file accounts are kept in: CONFIG/accounts.conf. */
void accounts_file_path(const struct tern_paths *paths, char *buf, size_t bufsize);

#endif
