/*
 * codec_zstd - zstd compression of a record payload. The only file that
 * includes zstd.h. Thread-safe: each thread reuses its own compression and
 * decompression contexts (freed when the thread exits), which makes small
 * payloads 1.3x (compress) to 3x (decompress) faster than fresh contexts
 * (bench/codec).
 */
#ifndef FB_CODEC_ZSTD_H
#define FB_CODEC_ZSTD_H

#include <stddef.h>

/*
 * Compresses n bytes at the given level into dst (capacity cap) as one zstd
 * frame that declares its content size.
 * Returns 0 and *out_len, or 1 when the result would not save at least
 * min_saving (a fraction, e.g. 0.02) of n and at least one byte, in which
 * case the caller stores the payload raw (n == 0 is always 1). cap >= n is
 * always enough: a result that does not fit in cap also gives 1.
 * FB_EINVAL for a level outside zstd's range or min_saving outside 0..1,
 * FB_ENOMEM; *out_len is only set on 0.
 */
int fb__zstd_compress(const void *src, size_t n, int level, double min_saving, void *dst,
                      size_t cap, size_t *out_len);

/*
 * Decompresses exactly plain_len bytes into dst. Anything but exactly one
 * standard zstd frame that declares plain_len as its content size and
 * decodes to exactly that is FB_ECORRUPT: a malformed or truncated frame,
 * a frame declaring another size or none, a skippable frame, a second frame
 * or trailing bytes. Never writes past dst + plain_len, whatever the input.
 */
int fb__zstd_decompress(const void *src, size_t n, void *dst, size_t plain_len);

#endif
