/*
 * codec_zstd - zstd compression of a record payload. The only file that
 * includes zstd.h.
 */
#ifndef FB_CODEC_ZSTD_H
#define FB_CODEC_ZSTD_H

#include <stddef.h>

/*
 * Compresses n bytes at the given level into dst (capacity cap).
 * Returns 0 and *out_len, or 1 when the result would not save at least
 * min_saving (a fraction, e.g. 0.02) of n, in which case the caller stores
 * the payload raw; negative FB_E* on error.
 */
int fb__zstd_compress(const void *src, size_t n, int level, double min_saving, void *dst,
                      size_t cap, size_t *out_len);

/*
 * Decompresses exactly plain_len bytes into dst. A frame that is malformed,
 * declares another size, or would expand beyond plain_len is FB_ECORRUPT
 * (never writes past dst + plain_len).
 */
int fb__zstd_decompress(const void *src, size_t n, void *dst, size_t plain_len);

#endif
