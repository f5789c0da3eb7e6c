/* mimestruct: placeholder until the module lands (see mimestruct.h). */
#include "mime/mimestruct.h"

#include <stdlib.h>

int
mimestruct_build_fd(int fd, unsigned char **blob_r, size_t *len_r)
{
	(void)fd;
	*blob_r = NULL;
	*len_r = 0;
	return -1;
}

int
mimestruct_build_buffer(const char *data, size_t len, unsigned char **blob_r, size_t *len_r)
{
	(void)data;
	(void)len;
	*blob_r = NULL;
	*len_r = 0;
	return -1;
}

struct mimestruct *
mimestruct_load(const unsigned char *blob, size_t len)
{
	(void)blob;
	(void)len;
	return NULL;
}

void
mimestruct_free(struct mimestruct **ms)
{
	*ms = NULL;
}

int
mimestruct_section(const struct mimestruct *ms, const uint32_t *path, size_t depth,
		   enum mimestruct_section section, struct mimestruct_range *range_r)
{
	(void)ms;
	(void)path;
	(void)depth;
	(void)section;
	(void)range_r;
	return 0;
}

void
mimestruct_imap_envelope(const struct mimestruct *ms, char **out, size_t *len, size_t *cap)
{
	(void)ms;
	(void)out;
	(void)len;
	(void)cap;
}

void
mimestruct_imap_body(const struct mimestruct *ms, bool extended, char **out, size_t *len,
		     size_t *cap)
{
	(void)ms;
	(void)extended;
	(void)out;
	(void)len;
	(void)cap;
}
