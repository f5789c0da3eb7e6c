/* json: the few writers the command-line tools need for --json output. */
#ifndef TERN_JSON_H
#define TERN_JSON_H

#include <stdio.h>

/* Writes s (UTF-8) as a JSON string literal, quotes included; control characters escaped. */
void json_write_string(FILE *fp, const char *s);

#endif
