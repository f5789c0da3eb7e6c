/* ternd init: makes a new data directory with a documented config file, a self-signed TLS
 * certificate and an empty database. */
#include "ternd/ternd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/util.h"
#include "net/tls.h"
#include "store/store.h"

#define INIT_DOMAINS_MAX 64

struct init_args {
	const char *data_dir;
	const char *hostname;
	const char *domains[INIT_DOMAINS_MAX];
	size_t ndomains;
	bool force_existing_empty;
};

static void
init_hint(void)
{
	fputs("Run 'ternd init --help' for usage.\n", stderr);
}

static void
init_usage(FILE *fp)
{
	fputs(
	    "usage: ternd init --data-dir DIR --domain DOMAIN [--domain DOMAIN ...]\n"
	    "                  [--hostname HOST] [--force-existing-empty]\n"
	    "\n"
	    "Creates DIR with a commented tern.conf, a self-signed TLS certificate (tls/) and an\n"
	    "empty database.\n"
	    "\n"
	    "  --data-dir DIR          the directory to create; it must not exist yet\n"
	    "  --domain DOMAIN         a mail domain served here (at least one; repeatable)\n"
	    "  --hostname HOST         the server's name in greetings and in the certificate\n"
	    "                          (default: localhost)\n"
	    "  --force-existing-empty  use DIR even though it exists, if it is empty\n"
	    "  --help                  show this help\n",
	    fp);
}

/* True for a plausible DNS name: labels of letters, digits and '-', separated by dots. */
static bool
init_name_ok(const char *name)
{
	size_t len = strlen(name), label = 0;

	if (len == 0 || len > 253 || name[0] == '.' || name[len - 1] == '.')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		char c = *p;

		if (c == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return name[len - 1] != '-';
}

/* Takes "--opt VALUE" or "--opt=VALUE" at argv[*i]; returns the value or NULL when argv[*i] is
 * another option. Sets *missing when the option is there without a value. */
static const char *
init_opt_value(int argc, char **argv, int *i, const char *opt, bool *missing)
{
	size_t len = strlen(opt);

	if (strncmp(argv[*i], opt, len) != 0)
		return NULL;
	if (argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (argv[*i][len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

/* Parses argv into args. Returns 1 to go on, 0 when --help was shown, -1 on a usage error
 * (already reported). */
static int
init_parse(int argc, char **argv, struct init_args *args)
{
	for (int i = 1; i < argc; i++) {
		bool missing = false;
		const char *v;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			init_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--force-existing-empty") == 0) {
			args->force_existing_empty = true;
			continue;
		}
		if ((v = init_opt_value(argc, argv, &i, "--data-dir", &missing)) != NULL) {
			args->data_dir = v;
			continue;
		}
		if ((v = init_opt_value(argc, argv, &i, "--hostname", &missing)) != NULL) {
			args->hostname = str_lower((char *)v);
			continue;
		}
		if ((v = init_opt_value(argc, argv, &i, "--domain", &missing)) != NULL) {
			if (args->ndomains == INIT_DOMAINS_MAX) {
				fprintf(stderr, "ternd init: at most %d --domain options\n",
				        INIT_DOMAINS_MAX);
				return -1;
			}
			args->domains[args->ndomains++] = str_lower((char *)v);
			continue;
		}
		if (missing)
			fprintf(stderr, "ternd init: %s needs a value\n", argv[i]);
		else
			fprintf(stderr, "ternd init: unknown argument '%s'\n", argv[i]);
		init_hint();
		return -1;
	}
	if (args->data_dir == NULL || args->data_dir[0] == '\0') {
		fprintf(stderr, "ternd init: --data-dir DIR is required\n");
		init_hint();
		return -1;
	}
	if (args->ndomains == 0) {
		fprintf(stderr, "ternd init: at least one --domain is required, e.g. "
		                "--domain example.org\n");
		init_hint();
		return -1;
	}
	for (size_t i = 0; i < args->ndomains; i++) {
		if (!init_name_ok(args->domains[i])) {
			fprintf(stderr, "ternd init: '%s' is not a valid domain name\n",
			        args->domains[i]);
			return -1;
		}
	}
	if (args->hostname != NULL && !init_name_ok(args->hostname)) {
		fprintf(stderr, "ternd init: '%s' is not a valid host name\n", args->hostname);
		return -1;
	}
	return 1;
}

/* 1 when dir exists and is empty, 0 when it does not exist, -1 (reported) otherwise. */
static int
init_check_dir(const char *dir, bool force_existing_empty)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	bool empty = true;

	if (stat(dir, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "ternd init: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr,
		        "ternd init: %s already exists and is not a directory; pick another "
		        "--data-dir\n",
		        dir);
		return -1;
	}
	d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "ternd init: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	}
	closedir(d);
	if (!empty) {
		fprintf(stderr,
		        "ternd init: %s already exists; refusing to overwrite it. Remove it "
		        "or pick another --data-dir\n",
		        dir);
		return -1;
	}
	if (!force_existing_empty) {
		fprintf(stderr,
		        "ternd init: %s already exists (empty). Pass --force-existing-empty "
		        "to use it, or pick another --data-dir\n",
		        dir);
		return -1;
	}
	return 1;
}

static int
init_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (ftw->level == 0)
		return 0; /* the directory itself is the caller's business */
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Undoes a failed init: empties dir, and removes it when this run created it. */
static void
init_cleanup(const char *dir, bool created)
{
	nftw(dir, init_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (created)
		rmdir(dir);
}

/* Makes dir (or reuses the existing empty one) with exactly mode. */
static int
init_mkdir(const char *dir, unsigned mode, bool exists)
{
	if (!exists && mkdir_p(dir, mode) < 0) {
		fprintf(stderr, "ternd init: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	/* mkdir's mode went through the umask; the data directory holds secrets, so say it. */
	if (chmod(dir, mode) < 0) {
		fprintf(stderr, "ternd init: cannot chmod %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes dir/tern.conf with the domains and hostname filled in, then reads it back. */
static int
init_write_config(const char *path, const struct init_args *args, const char *hostname)
{
	const char *overrides[3] = {NULL, NULL, NULL};
	char *domains = xstrdup(""), *opt_domains, *opt_host;
	char error[512];
	struct config *config;
	FILE *fp;
	int fd, ret = -1;

	for (size_t i = 0; i < args->ndomains; i++) {
		char *next = xasprintf("%s%s%s", domains, i > 0 ? ", " : "", args->domains[i]);
		free(domains);
		domains = next;
	}
	opt_domains = xasprintf("server.domains=%s", domains);
	opt_host = xasprintf("server.hostname=%s", hostname);
	overrides[0] = opt_domains;
	overrides[1] = opt_host;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "ternd init: cannot create %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (config_write_default(fp, overrides) < 0 || fsync(fileno(fp)) < 0) {
		fprintf(stderr, "ternd init: cannot write %s: %s\n", path, strerror(errno));
		fclose(fp);
		goto out;
	}
	if (fclose(fp) != 0) {
		fprintf(stderr, "ternd init: cannot write %s: %s\n", path, strerror(errno));
		goto out;
	}
	/* The daemon will read this file; make sure it can before telling the user it is done. */
	config = config_new();
	ret = config_load_file(config, path, error, sizeof(error));
	config_free(&config);
	if (ret < 0)
		fprintf(stderr, "ternd init: the new config does not load: %s\n", error);
out:
	free(domains);
	free(opt_domains);
	free(opt_host);
	return ret;
}

/* Does the work once the arguments are good; returns the exit code. */
static int
init_run(const struct init_args *args)
{
	const char *hostname = args->hostname != NULL ? args->hostname : "localhost";
	char dir[PATH_MAX], conf[PATH_MAX + 16], tlsdir[PATH_MAX + 16];
	char cert[PATH_MAX + 32], key[PATH_MAX + 32], error[1024];
	struct store *store = NULL;
	int exists;

	exists = init_check_dir(args->data_dir, args->force_existing_empty);
	if (exists < 0)
		return 1;
	if (init_mkdir(args->data_dir, 0750, exists == 1) < 0)
		return 1;
	/* From here on, a failure removes what was made so that a retry is not refused. */
	if (realpath(args->data_dir, dir) == NULL) {
		fprintf(stderr, "ternd init: %s: %s\n", args->data_dir, strerror(errno));
		init_cleanup(args->data_dir, exists == 0);
		return 1;
	}
	snprintf(conf, sizeof(conf), "%s/tern.conf", dir);
	snprintf(tlsdir, sizeof(tlsdir), "%s/tls", dir);
	snprintf(cert, sizeof(cert), "%s/cert.pem", tlsdir);
	snprintf(key, sizeof(key), "%s/key.pem", tlsdir);

	if (init_write_config(conf, args, hostname) < 0)
		goto fail;
	if (init_mkdir(tlsdir, 0700, false) < 0)
		goto fail;
	if (tls_make_self_signed(hostname, cert, key, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd init: %s\n", error);
		goto fail;
	}
	if (store_open(dir, true, NULL, &store, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd init: cannot create the database: %s\n", error);
		goto fail;
	}
	store_free(&store);

	printf("Created %s:\n", dir);
	printf("  %-28s settings (hostname %s, domains", "tern.conf", hostname);
	for (size_t i = 0; i < args->ndomains; i++)
		printf(" %s", args->domains[i]);
	printf(")\n");
	printf("  %-28s self-signed certificate for %s, valid 10 years\n", "tls/cert.pem",
	       hostname);
	printf("  %-28s its private key (mode 0600)\n", "tls/key.pem");
	printf("  %-28s the database and mail store\n", "(database)");
	printf("\nReplace tls/cert.pem and tls/key.pem with a certificate from a public CA before\n"
	       "other servers send you mail.\n");
	printf("\nNext steps:\n");
	printf("  ternd user add alice@%s --data-dir %s\n", args->domains[0], dir);
	printf("  ternd serve --data-dir %s\n", dir);
	printf("\nMail to postmaster (RFC 5321 4.5.1) goes to the first account added, unless an\n"
	       "account or alias is named postmaster@DOMAIN.\n");
	return 0;
fail:
	init_cleanup(dir, exists == 0);
	return 1;
}

int
cmd_init(int argc, char **argv)
{
	struct init_args args;
	int r;

	memset(&args, 0, sizeof(args));
	r = init_parse(argc, argv, &args);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	return init_run(&args);
}
