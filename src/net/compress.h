/* compress: COMPRESS=DEFLATE (RFC 4978) as a libevent filter bufferevent.
 *
 * Both directions go through raw deflate (zlib, windowBits -15, no header). Output is
 * compressed as it is queued and ends each burst (one loop iteration's replies) with
 * Z_SYNC_FLUSH, so the client can decompress everything it has been sent. Input is inflated
 * only while the filter's input is below its read high-water mark, a bounded amount per step:
 * a small compressed "bomb" can never hold more than that mark of plain text in memory (the
 * compressed bytes waiting underneath are capped by COMPRESS_UNDER_HIGH). A corrupt stream,
 * or one the client ends, is a read error on the filter. */
#ifndef TERN_COMPRESS_H
#define TERN_COMPRESS_H

#include <stdbool.h>

struct bufferevent;

#define COMPRESS_UNDER_HIGH (64 * 1024) /* compressed bytes held below the filter, each way */

/* Wraps under in a deflate filter (same event base; under is not freed with the filter: see
 * compress_unwrap). Bytes already in under's input are taken as compressed data. The caller
 * sets the filter's callbacks, watermarks and timeouts. NULL when zlib cannot start. */
struct bufferevent *compress_wrap(struct bufferevent *under);
/* Flushes what the filter holds into its underlying bufferevent (with a sync flush), frees the
 * filter and its zlib state, and returns the underlying bufferevent for the caller to close. */
struct bufferevent *compress_unwrap(struct bufferevent *filter);

#endif
