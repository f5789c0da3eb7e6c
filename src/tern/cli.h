/* cli: what the tern commands share: opening the store and the accounts, option errors, and the
 * message table (text or JSON) that list, search and the shell print. */
#ifndef TERN_CLI_H
#define TERN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tern/accounts.h"
#include "tern/localstore.h"

/* Exit statuses of every command. */
#define CLI_OK 0
#define CLI_ERROR 1
#define CLI_USAGE 2
#define CLI_INTERRUPTED 130

/* Store ids by screen number: set by the shell before it runs list or search, which then number
 * their rows 1..N and record the id of each row here. NULL outside the shell. */
struct cli_screen_map {
	int64_t *ids;
	size_t n, cap;
};
extern struct cli_screen_map *cli_screen_map;

/* Fills paths and opens the store; prints "tern CMD: ..." and returns -1 on failure. */
int cli_open_store(const char *cmd, struct tern_paths *paths_r, struct lstore **store_r);
/* Loads the accounts and picks one (name, or the default when NULL). *list_r is to be freed
 * by the caller; prints "tern CMD: ..." and returns -1 on failure. */
int cli_load_account(const char *cmd, const struct tern_paths *paths, const char *name,
                     struct account **list_r, const struct account **account_r);
/* Prints the option error getopt found at argv[optind - 1]; returns CLI_USAGE. */
int cli_bad_option(const char *cmd, char **argv, int optind_now);
/* Parses a message id, "12" or "#12". Returns 0 or -1. */
int cli_parse_id(const char *s, int64_t *id_r);
/* Parses a non-negative count. Returns 0 or -1. */
int cli_parse_count(const char *s, int *count_r);

/* Writes s in at most width terminal columns (UTF-8 aware, wide characters count two, control
 * characters shown as '?'), cut with "…", padded with spaces to width when pad is set. */
void cli_print_fit(FILE *fp, const char *s, int width, bool pad);
/* Writes s with control characters replaced, so message text cannot drive the terminal. */
void cli_print_safe(FILE *fp, const char *s);

struct cli_table {
	bool json;
	int columns; /* terminal width */
	unsigned rows;
};

/* Starts a table on stdout: the JSON array's opening, or nothing until the first row. */
void cli_table_begin(struct cli_table *table, bool json);
/* One message; number is what the first column shows (the store id, or a screen number). */
void cli_table_row(struct cli_table *table, const struct lstore_message *message, int64_t number);
/* Closes the table ("]" in JSON; in text, empty is printed when there were no rows). */
void cli_table_end(struct cli_table *table, const char *empty);
/* Writes one message as a JSON object (no newline). */
void cli_json_message(FILE *fp, const struct lstore_message *message);

#endif
