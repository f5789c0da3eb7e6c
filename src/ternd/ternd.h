/* ternd: the daemon's subcommands and what they share. */
#ifndef TERN_TERND_H
#define TERN_TERND_H

#include <limits.h>
#include <stdbool.h>

struct config;
struct store;

/* Where a command finds its data: --data-dir DIR, or --config FILE (data dir = the file's
 * directory unless the file sets server.data_dir), or $TERN_DATA_DIR; plus -o overrides. */
struct ternd_ctx {
	char data_dir[PATH_MAX];
	char config_path[PATH_MAX];
	struct config *config;
};

/* Takes --data-dir/--config/-o out of argv (compacting it; *argc updated), loads the config and
 * applies overrides. On error prints "ternd: ..." with what to do to stderr and returns -1. */
int ternd_ctx_load(int *argc, char **argv, struct ternd_ctx *ctx);
void ternd_ctx_free(struct ternd_ctx *ctx);
/* Opens the store of ctx (no workers: synchronous). Prints an error and returns -1 on failure. */
int ternd_open_store(const struct ternd_ctx *ctx, struct store **store_r);
/* True when the domain of address is listed in server.domains (case-insensitive). */
bool ternd_domain_is_local(const struct ternd_ctx *ctx, const char *address);

int cmd_init(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_mail(int argc, char **argv);
/* ternd mail import (cmd_import.c); argv[1] is "import". */
int cmd_mail_import(int argc, char **argv);

#endif
