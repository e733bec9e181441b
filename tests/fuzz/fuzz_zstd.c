/*
 * Fuzz target: zstd frames as stored records (codec_zstd).
 *
 * The first input byte picks what the rest is:
 *   even  a 3-byte little-endian plain length (taken modulo 1 MiB + 1)
 *         and a frame: decompressed into a buffer of
 *         exactly that length; on success the result must equal what
 *         libzstd's own one-shot decoder makes of the same frame
 *   odd   a level byte, a min_saving byte and a payload: compressed, and if
 *         stored compressed, the result must be within the limit and
 *         decompress to the payload
 * Decompression may never write past plain_len or return other codes than
 * 0 and FB_ECORRUPT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "fastblocks.h"
#include "codec_zstd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PLAIN (1u << 20)

static void frame(const uint8_t *d, size_t n)
{
    if (n < 3) {
        return;
    }
    size_t plain_len = ((size_t)d[0] | (size_t)d[1] << 8 | (size_t)d[2] << 16) % (MAX_PLAIN + 1);
    uint8_t *out = malloc(plain_len + 1);
    int rc = fb__zstd_decompress(d + 3, n - 3, out, plain_len);
    if (rc == 0) {
        uint8_t *ref = malloc(plain_len + 1);
        size_t r = ZSTD_decompress(ref, plain_len, d + 3, n - 3);
        if (ZSTD_isError(r) || r != plain_len || memcmp(ref, out, plain_len) != 0) {
            abort();
        }
        free(ref);
    } else if (rc != FB_ECORRUPT) {
        abort();
    }
    free(out);
}

static void compress(const uint8_t *d, size_t n)
{
    if (n < 2) {
        return;
    }
    int level = (int)(d[0] % 24) - 4; /* -4..19 */
    double min_saving = d[1] / 255.0;
    const uint8_t *src = d + 2;
    size_t len = n - 2;
    uint8_t *c = malloc(len + 1);
    size_t clen = 0;
    int rc = fb__zstd_compress(src, len, level, min_saving, c, len, &clen);
    if (rc == 0) {
        uint8_t *back = malloc(len + 1);
        if (clen >= len || (double)(len - clen) < min_saving * (double)len - 1e-9 ||
            fb__zstd_decompress(c, clen, back, len) != 0 || memcmp(back, src, len) != 0) {
            abort();
        }
        free(back);
    } else if (rc != 1) {
        abort();
    }
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    if (data[0] % 2 == 0) {
        frame(data + 1, size - 1);
    } else {
        compress(data + 1, size - 1);
    }
    return 0;
}
