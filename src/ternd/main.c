/* ternd: the tern mail daemon and its administration commands. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"
#include "ternd/ternd.h"

static void
ternd_usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: ternd COMMAND [OPTIONS]\n"
	    "\n"
	    "Commands:\n"
	    "  init   --data-dir DIR --domain DOMAIN [--domain ...] [--hostname HOST]\n"
	    "         create a data directory: config, self-signed certificate, database\n"
	    "  serve  [--data-dir DIR | --config FILE] [-o section.key=value ...]\n"
	    "         run the daemon in the foreground: SMTP, submission, POP3, IMAP and push\n"
	    "         (each on the addresses of its *.listen keys; an empty key turns it off)\n"
	    "  user   add|del|passwd|list|alias ...   manage accounts\n"
	    "  mail   list|cat|import ...              look at stored mail, import mbox/Maildir\n"
	    "\n"
	    "Every command takes --help. The data directory comes from --data-dir, from the\n"
	    "directory of --config FILE, or from $TERN_DATA_DIR.\n");
}

int
ternd_ctx_load(int *argc, char **argv, struct ternd_ctx *ctx)
{
	char error[512];
	const char *data_dir = NULL, *config_file = NULL;
	char **overrides = xcalloc((size_t)*argc + 1, sizeof(char *));
	size_t noverrides = 0;
	int out = 1;

	memset(ctx, 0, sizeof(*ctx));
	/* Pull the global options out, leaving the command's own arguments in order. */
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];
		const char *value = NULL;
		int which = 0;

		if (strcmp(a, "--data-dir") == 0 || strncmp(a, "--data-dir=", 11) == 0)
			which = 1;
		else if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0)
			which = 2;
		else if (strcmp(a, "-o") == 0)
			which = 3;
		if (which == 0) {
			argv[out++] = argv[i];
			continue;
		}
		value = strchr(a, '=');
		if (value != NULL && which != 3) {
			value++;
		} else {
			if (i + 1 >= *argc) {
				fprintf(stderr, "ternd: %s needs a value\n", a);
				free(overrides);
				return -1;
			}
			value = argv[++i];
		}
		if (which == 1)
			data_dir = value;
		else if (which == 2)
			config_file = value;
		else
			overrides[noverrides++] = (char *)value;
	}
	*argc = out;
	argv[out] = NULL;

	if (data_dir == NULL && config_file == NULL)
		data_dir = getenv("TERN_DATA_DIR");
	if (data_dir == NULL && config_file == NULL) {
		fprintf(stderr, "ternd: no data directory: give --data-dir DIR (made by 'ternd "
		                "init'), --config FILE, or set TERN_DATA_DIR\n");
		free(overrides);
		return -1;
	}
	if (config_file != NULL) {
		char tmp[PATH_MAX];
		str_copy(ctx->config_path, config_file, sizeof(ctx->config_path));
		str_copy(tmp, config_file, sizeof(tmp));
		str_copy(ctx->data_dir, dirname(tmp), sizeof(ctx->data_dir));
	} else {
		str_copy(ctx->data_dir, data_dir, sizeof(ctx->data_dir));
		snprintf(ctx->config_path, sizeof(ctx->config_path), "%s/tern.conf", data_dir);
	}
	ctx->config = config_new();
	if (access(ctx->config_path, R_OK) != 0) {
		fprintf(stderr,
		        "ternd: cannot read %s: %s\n  (make a data directory with 'ternd init "
		        "--data-dir DIR --domain example.test')\n",
		        ctx->config_path, strerror(errno));
		goto fail;
	}
	if (config_load_file(ctx->config, ctx->config_path, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd: %s\n", error);
		goto fail;
	}
	for (size_t i = 0; i < noverrides; i++) {
		if (config_set_option(ctx->config, overrides[i], error, sizeof(error)) < 0) {
			fprintf(stderr, "ternd: -o %s: %s\n", overrides[i], error);
			goto fail;
		}
	}
	if (config_get(ctx->config, "server.data_dir")[0] != '\0')
		str_copy(ctx->data_dir, config_get(ctx->config, "server.data_dir"),
		         sizeof(ctx->data_dir));
	free(overrides);
	return 0;
fail:
	free(overrides);
	config_free(&ctx->config);
	return -1;
}

void
ternd_ctx_free(struct ternd_ctx *ctx)
{
	config_free(&ctx->config);
}

int
ternd_open_store(const struct ternd_ctx *ctx, struct store **store_r)
{
	char error[512];

	if (store_open(ctx->data_dir, false, NULL, store_r, error, sizeof(error)) < 0) {
		fprintf(stderr, "ternd: cannot open the store in %s: %s\n", ctx->data_dir, error);
		return -1;
	}
	return 0;
}

bool
ternd_domain_is_local(const struct ternd_ctx *ctx, const char *address)
{
	const char *at = strrchr(address, '@');
	char **domains;
	size_t n;
	bool found = false;

	if (at == NULL)
		return false;
	n = config_get_list(ctx->config, "server.domains", &domains);
	for (size_t i = 0; i < n && !found; i++)
		found = strcasecmp(domains[i], at + 1) == 0;
	config_list_free(&domains);
	return found;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} commands[] = {
	    {"init", cmd_init},
	    {"serve", cmd_serve},
	    {"user", cmd_user},
	    {"mail", cmd_mail},
	};

	/* A reader that stops early (ternd mail cat ... | head) makes writes fail with EPIPE, which
	 * the admin commands treat as a quiet end, instead of killing the process mid-way. */
	signal(SIGPIPE, SIG_IGN);
	log_init("ternd");
	if (argc < 2) {
		ternd_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ternd_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("ternd 0.1.0\n");
		return 0;
	}
	/* Admin commands print their results; only the daemon logs its events. */
	if (strcmp(argv[1], "serve") != 0)
		log_set_level(LOG_WARN);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "ternd: unknown command '%s'\n\n", argv[1]);
	ternd_usage(stderr);
	return 2;
}
