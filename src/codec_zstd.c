/*
 * codec_zstd - zstd compression of a record payload (see codec_zstd.h).
 *
 * Owns the only use of libzstd. A stored frame is trusted for nothing: its
 * declared content size must equal the plain length the record header gives,
 * it must be exactly one zstd frame with no trailing bytes, and it is
 * decompressed in one shot into a buffer of exactly that length, so a
 * crafted frame can never make the reader allocate or write more.
 *
 * Compression and decompression contexts are cached per thread (created on
 * first use, freed at thread exit): a level-3 compression context for an
 * image-sized input is a few hundred KiB whose setup costs more than
 * compressing a small WebP (bench/codec measures it).
 */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createCCtx_advanced: our allocator */
#include "codec_zstd.h"

#include <pthread.h>
#include <stdint.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util/alloc.h"
#include "util/endian.h"
#include "util/error.h"

#define ZSTD_FRAME_MAGIC 0xFD2FB528u /* little-endian on disk */

typedef struct zstd_tls {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} zstd_tls;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;

static void *zstd_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return fb__malloc(size);
}

static void zstd_free(void *opaque, void *p)
{
    (void)opaque;
    fb__free(p);
}

static const ZSTD_customMem zstd_mem = {zstd_alloc, zstd_free, NULL};

static void tls_destroy(void *p)
{
    zstd_tls *t = p;
    ZSTD_freeCCtx(t->cctx);
    ZSTD_freeDCtx(t->dctx);
    fb__free(t);
}

static void tls_init(void)
{
    tls_key_ok = pthread_key_create(&tls_key, tls_destroy) == 0;
}

/* The calling thread's context pair, created on first use; NULL when out of
 * memory (the detail is set). */
static zstd_tls *tls_get(void)
{
    pthread_once(&tls_once, tls_init);
    if (!tls_key_ok) {
        fb__error(FB_ENOMEM, "cannot create the thread-local key for zstd contexts");
        return NULL;
    }
    zstd_tls *t = pthread_getspecific(tls_key);
    if (t == NULL) {
        t = fb__calloc(1, sizeof *t);
        if (t == NULL || pthread_setspecific(tls_key, t) != 0) {
            fb__free(t);
            fb__error(FB_ENOMEM, "out of memory for zstd contexts");
            return NULL;
        }
    }
    return t;
}

static ZSTD_CCtx *tls_cctx(void)
{
    zstd_tls *t = tls_get();
    if (t != NULL && t->cctx == NULL) {
        t->cctx = ZSTD_createCCtx_advanced(zstd_mem);
        if (t->cctx == NULL) {
            fb__error(FB_ENOMEM, "out of memory for a zstd compression context");
        }
    }
    return t != NULL ? t->cctx : NULL;
}

static ZSTD_DCtx *tls_dctx(void)
{
    zstd_tls *t = tls_get();
    if (t != NULL && t->dctx == NULL) {
        t->dctx = ZSTD_createDCtx_advanced(zstd_mem);
        if (t->dctx == NULL) {
            fb__error(FB_ENOMEM, "out of memory for a zstd decompression context");
        }
    }
    return t != NULL ? t->dctx : NULL;
}

/*
 * The largest compressed size still worth storing: it must save at least
 * min_saving of n and at least one byte, or reading it back costs a
 * decompression for nothing.
 */
static size_t worth_limit(size_t n, double min_saving)
{
    if (n == 0) {
        return 0;
    }
    /* Truncation towards zero rounds the limit down (never saves less). */
    double limit = (double)n * (1.0 - min_saving);
    size_t l = limit >= (double)n ? n : (size_t)limit;
    return l < n ? l : n - 1;
}

int fb__zstd_compress(const void *src, size_t n, int level, double min_saving, void *dst,
                      size_t cap, size_t *out_len)
{
    if ((src == NULL && n > 0) || dst == NULL || out_len == NULL) {
        return fb__error(FB_EINVAL, "zstd compress: NULL argument");
    }
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
        return fb__error(FB_EINVAL, "zstd compression level %d is outside %d..%d", level,
                         ZSTD_minCLevel(), ZSTD_maxCLevel());
    }
    if (!(min_saving >= 0.0 && min_saving <= 1.0)) { /* also rejects NaN */
        return fb__error(FB_EINVAL, "compression_min_saving %g is outside 0..1", min_saving);
    }
    size_t limit = worth_limit(n, min_saving);
    if (limit == 0) {
        return 1;
    }
    ZSTD_CCtx *cctx = tls_cctx();
    if (cctx == NULL) {
        return FB_ENOMEM;
    }
    /* Bounding the output by the limit lets zstd give up as soon as the
     * result cannot be worth storing. */
    size_t r = ZSTD_compressCCtx(cctx, dst, cap < limit ? cap : limit, src, n, level);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) {
            return 1;
        }
        if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation) {
            return fb__error(FB_ENOMEM, "zstd compression ran out of memory");
        }
        return fb__error(FB_EINVAL, "zstd compression of %zu bytes failed: %s", n,
                         ZSTD_getErrorName(r));
    }
    *out_len = r;
    return 0;
}

int fb__zstd_decompress(const void *src, size_t n, void *dst, size_t plain_len)
{
    if ((src == NULL && n > 0) || (dst == NULL && plain_len > 0)) {
        return fb__error(FB_EINVAL, "zstd decompress: NULL argument");
    }
    /* Only a standard frame: a skippable frame would "decompress" to nothing. */
    if (n < 4 || fb__get_le32(src) != ZSTD_FRAME_MAGIC) {
        return fb__error(FB_ECORRUPT, "compressed record of %zu bytes is not a zstd frame", n);
    }
    unsigned long long declared = ZSTD_getFrameContentSize(src, n);
    if (declared == ZSTD_CONTENTSIZE_ERROR) {
        return fb__error(FB_ECORRUPT, "compressed record has a malformed zstd frame header");
    }
    if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
        return fb__error(FB_ECORRUPT, "compressed record's zstd frame does not declare its size");
    }
    if (declared != (unsigned long long)plain_len) {
        return fb__error(FB_ECORRUPT,
                         "compressed record's zstd frame declares %llu bytes, the record %zu",
                         declared, plain_len);
    }
    size_t frame_len = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(frame_len)) {
        return fb__error(FB_ECORRUPT,
                         "compressed record's zstd frame is truncated or malformed: %s",
                         ZSTD_getErrorName(frame_len));
    }
    if (frame_len != n) {
        return fb__error(FB_ECORRUPT,
                         "compressed record has %zu bytes after its zstd frame of %zu bytes",
                         n - frame_len, frame_len);
    }
    ZSTD_DCtx *dctx = tls_dctx();
    if (dctx == NULL) {
        return FB_ENOMEM;
    }
    uint8_t empty;
    size_t r = ZSTD_decompressDCtx(dctx, plain_len > 0 ? dst : &empty, plain_len, src, n);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation) {
            return fb__error(FB_ENOMEM, "zstd decompression ran out of memory");
        }
        return fb__error(FB_ECORRUPT, "compressed record does not decompress: %s",
                         ZSTD_getErrorName(r));
    }
    if (r != plain_len) {
        return fb__error(FB_ECORRUPT, "compressed record decompresses to %zu bytes, not %zu", r,
                         plain_len);
    }
    return 0;
}
