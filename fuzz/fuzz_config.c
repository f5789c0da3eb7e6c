/* Fuzz target: the config file parser, fed through a real file as the daemon reads it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[64];

/* Removes the scratch file (created on the first input) when the fuzzer exits. */
static void
fuzz_cleanup(void)
{
	if (fuzz_path[0] != '\0')
		unlink(fuzz_path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *config;
	char error[512];
	FILE *fp;

	if (fuzz_path[0] == '\0') {
		int fd;

		snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/fuzz_config.XXXXXX");
		fd = mkstemp(fuzz_path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(fuzz_cleanup);
	}
	fp = fopen(fuzz_path, "wb");
	if (fp == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, fp) != size)
		abort();
	if (fclose(fp) != 0)
		abort();

	config = config_new();
	error[0] = '\0';
	if (config_load_file(config, fuzz_path, error, sizeof(error)) < 0 &&
	    memchr(error, '\0', sizeof(error)) == NULL)
		abort();
	config_free(&config);
	if (config != NULL)
		abort();
	return 0;
}
