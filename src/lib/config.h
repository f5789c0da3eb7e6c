/* config: the daemon's settings, from an INI-style file and -o overrides.
 *
 * Syntax: "[section]" lines, "key = value" lines, '#' or ';' comments, blank lines. Every key
 * is known in advance (see config.c's table, which also holds the documented defaults);
 * an unknown section or key, or a value of the wrong type, is an error naming the file, the line
 * and the key. Lists are comma- or whitespace-separated. Keys are addressed as "section.key". */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;

/* A config holding every key at its default. */
struct config *config_new(void);
void config_free(struct config **config);

/* Loads path over the current values. Returns 0, or -1 with a message such as
 * "/x/tern.conf:12: unknown key 'lisen' in section [smtp]" in error (size errsize); on error
 * no value changes. Lines are capped at 4096 bytes and the file at 1 MiB. */
int config_load_file(struct config *config, const char *path, char *error, size_t errsize);
/* Like config_load_file() for a file already in memory (name is used in messages only); data
 * need not be NUL-terminated. Nothing changes unless the whole file is valid. */
int config_load_buffer(struct config *config, const char *name, const char *data, size_t len,
                       char *error, size_t errsize);
/* Sets "section.key" to value with the same validation. Returns 0 or -1 with error. */
int config_set(struct config *config, const char *key, const char *value, char *error,
               size_t errsize);
/* Parses "section.key=value" (the -o form) and applies it. */
int config_set_option(struct config *config, const char *assignment, char *error, size_t errsize);

/* Getters abort (fatalx) on a key not in the table: that is a programming error. */
const char *config_get(const struct config *config, const char *key);
int64_t config_get_int(const struct config *config, const char *key);
int config_get_bool(const struct config *config, const char *key);
/* Splits a list value; returns the number of items and a NULL-terminated array that the caller
 * frees with config_list_free(). */
size_t config_get_list(const struct config *config, const char *key, char ***items_r);
void config_list_free(char ***items);
/* A path-valued key (tls.cert, tls.key) resolved against data_dir when relative. The caller
 * frees the result. */
char *config_get_path(const struct config *config, const char *key, const char *data_dir);

/* Writes the documented default file (every key, commented, with its default) to fp,
 * with the given overrides applied (NULL-terminated "section.key=value" array, may be NULL). */
int config_write_default(FILE *fp, const char *const *overrides);

#endif
