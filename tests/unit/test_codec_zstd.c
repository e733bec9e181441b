/*
 * Unit tests of codec_zstd: round trips at sizes from 0 to 8 MiB, the
 * min_saving rule, and every way a stored frame can lie about its size
 * (wrong declared size, no declared size, trailing bytes, two frames,
 * skippable frames, truncation, a frame that expands past its header),
 * plus allocation failures of the per-thread contexts.
 */
#include "fb_test.h"

#include <math.h>
#include <pthread.h>
#include <zstd.h>

#include "fastblocks.h"
#include "codec_zstd.h"
#include "util/alloc.h"
#include "util/endian.h"

#define GUARD 64

/* Text-like bytes that zstd compresses well but not trivially. */
static void fill_text(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *words[] = {"block ",  "image ", "webp ",  "store ",  "cache ",
                                  "fernet ", "zstd ",  "index ", "record ", "offset "};
    uint32_t x = seed * 2654435761u + 1;
    size_t i = 0;
    while (i < n) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % 10];
        for (size_t j = 0; w[j] != '\0' && i < n; j++) {
            p[i++] = (uint8_t)w[j];
        }
    }
}

/* Bytes zstd cannot compress (xorshift). */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

/*
 * Compresses n bytes with min_saving 0, decompresses into a buffer of
 * exactly n bytes followed by a guard, and compares. Returns 0 if the data
 * was stored compressed, 1 if raw, -1 on a failed check.
 */
static int round_trip(const uint8_t *src, size_t n, int level)
{
    uint8_t *c = malloc(n + 1);
    uint8_t *d = malloc(n + GUARD);
    int result = -1;
    size_t clen = 0;
    int rc = fb__zstd_compress(src, n, level, 0.0, c, n, &clen);
    if (rc == 1) {
        result = 1;
        goto out;
    }
    if (rc != 0 || clen >= n) {
        fprintf(stderr, "compress of %zu bytes: rc %d, %zu bytes (%s)\n", n, rc, clen,
                fb_last_error());
        goto out;
    }
    memset(d, 0xa5, n + GUARD);
    rc = fb__zstd_decompress(c, clen, d, n);
    if (rc != 0 || memcmp(d, src, n) != 0) {
        fprintf(stderr, "decompress of %zu bytes: rc %d (%s)\n", n, rc, fb_last_error());
        goto out;
    }
    for (size_t i = 0; i < GUARD; i++) {
        if (d[n + i] != 0xa5) {
            fprintf(stderr, "decompress of %zu bytes wrote past the end\n", n);
            goto out;
        }
    }
    result = 0;
out:
    free(c);
    free(d);
    return result;
}

TEST(round_trip_small_sizes)
{
    uint8_t buf[4096];
    fill_text(buf, sizeof buf, 1);
    int compressed = 0;
    for (size_t n = 0; n <= sizeof buf; n++) {
        int r = round_trip(buf, n, 3);
        CHECK(r >= 0);
        compressed += r == 0;
    }
    /* Tiny inputs cannot save anything; text of a few dozen bytes can. */
    CHECK(compressed > 4000);
}

TEST(round_trip_large_sizes_and_levels)
{
    size_t max = 8u << 20;
    uint8_t *buf = malloc(max);
    fill_text(buf, max, 2);
    for (size_t n = 8192; n <= max; n *= 2) {
        for (size_t delta = 0; delta < 3; delta++) {
            size_t len = n - delta;
            CHECK_EQ(round_trip(buf, len, 3), 0);
        }
    }
    int levels[] = {-5, 1, 9, 19};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        CHECK_EQ(round_trip(buf, 300000, levels[i]), 0);
    }
    free(buf);
}

TEST(incompressible_is_stored_raw)
{
    size_t sizes[] = {1, 100, 4096, 100000, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *src = malloc(n);
        uint8_t *dst = malloc(n);
        fill_random(src, n, n);
        size_t clen = 12345;
        CHECK_EQ(fb__zstd_compress(src, n, 3, 0.02, dst, n, &clen), 1);
        CHECK_EQ(clen, 12345); /* untouched when not worth it */
        free(src);
        free(dst);
    }
    size_t clen = 0;
    uint8_t dst[16];
    CHECK_EQ(fb__zstd_compress("", 0, 3, 0.0, dst, sizeof dst, &clen), 1);
}

TEST(min_saving_is_honoured)
{
    /* Half random, half text: compresses to a bit over 50%. */
    size_t n = 200000;
    uint8_t *src = malloc(n);
    uint8_t *dst = malloc(n);
    fill_random(src, n / 2, 7);
    fill_text(src + n / 2, n - n / 2, 7);
    size_t clen = 0;
    CHECK_OK(fb__zstd_compress(src, n, 3, 0.0, dst, n, &clen));
    double saving = 1.0 - (double)clen / (double)n;
    CHECK(saving > 0.3 && saving < 0.5);
    size_t again = 0;
    /* Just below the actual saving: stored compressed; just above: raw. */
    CHECK_OK(fb__zstd_compress(src, n, 3, saving - 0.001, dst, n, &again));
    CHECK_EQ(again, clen);
    CHECK_EQ(fb__zstd_compress(src, n, 3, saving + 0.001, dst, n, &again), 1);
    CHECK_EQ(fb__zstd_compress(src, n, 3, 1.0, dst, n, &again), 1);
    /* A destination too small for the result counts as not worth it. */
    CHECK_EQ(fb__zstd_compress(src, n, 3, 0.0, dst, clen - 1, &again), 1);
    free(src);
    free(dst);
}

TEST(bad_arguments)
{
    uint8_t src[100] = {0}, dst[100];
    size_t clen;
    CHECK_RC(fb__zstd_compress(src, sizeof src, ZSTD_maxCLevel() + 1, 0.02, dst, sizeof dst, &clen),
             FB_EINVAL);
    CHECK(strstr(fb_last_error(), "level") != NULL);
    CHECK_RC(fb__zstd_compress(src, sizeof src, 3, -0.1, dst, sizeof dst, &clen), FB_EINVAL);
    CHECK_RC(fb__zstd_compress(src, sizeof src, 3, 1.5, dst, sizeof dst, &clen), FB_EINVAL);
    CHECK_RC(fb__zstd_compress(src, sizeof src, 3, NAN, dst, sizeof dst, &clen), FB_EINVAL);
    CHECK_RC(fb__zstd_compress(NULL, 10, 3, 0.02, dst, sizeof dst, &clen), FB_EINVAL);
    CHECK_RC(fb__zstd_decompress(NULL, 10, dst, 10), FB_EINVAL);
}

/* A valid frame of n text bytes: *frame (malloc'ed) of *flen bytes. */
static void make_frame(size_t n, uint8_t **frame, size_t *flen, uint8_t **plain)
{
    *plain = malloc(n);
    fill_text(*plain, n, 3);
    *frame = malloc(ZSTD_compressBound(n));
    *flen = ZSTD_compress(*frame, ZSTD_compressBound(n), *plain, n, 3);
}

TEST(declared_size_must_match)
{
    uint8_t *frame, *plain;
    size_t flen;
    make_frame(10000, &frame, &flen, &plain);
    uint8_t *d = malloc(20000);
    CHECK_OK(fb__zstd_decompress(frame, flen, d, 10000));
    CHECK_MEM_EQ(d, plain, 10000);
    CHECK_RC(fb__zstd_decompress(frame, flen, d, 9999), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "declares 10000") != NULL);
    CHECK_RC(fb__zstd_decompress(frame, flen, d, 10001), FB_ECORRUPT);
    CHECK_RC(fb__zstd_decompress(frame, flen, d, 0), FB_ECORRUPT);
    free(frame);
    free(plain);
    free(d);
}

TEST(trailing_bytes_and_second_frame)
{
    uint8_t *frame, *plain;
    size_t flen;
    make_frame(5000, &frame, &flen, &plain);
    uint8_t *two = malloc(2 * flen);
    memcpy(two, frame, flen);
    memcpy(two + flen, frame, flen);
    uint8_t *d = malloc(10000);
    CHECK_RC(fb__zstd_decompress(two, 2 * flen, d, 5000), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "after its zstd frame") != NULL);
    CHECK_RC(fb__zstd_decompress(two, 2 * flen, d, 10000), FB_ECORRUPT);
    CHECK_RC(fb__zstd_decompress(two, flen + 1, d, 5000), FB_ECORRUPT);
    free(two);
    free(frame);
    free(plain);
    free(d);
}

TEST(every_truncation_is_corrupt)
{
    uint8_t *frame, *plain;
    size_t flen;
    make_frame(3000, &frame, &flen, &plain);
    uint8_t *d = malloc(3000);
    for (size_t cut = 0; cut < flen; cut++) {
        /* A fresh copy of exactly cut bytes, so ASan sees any over-read. */
        uint8_t *t = malloc(cut + 1);
        memcpy(t, frame, cut);
        CHECK_RC(fb__zstd_decompress(t, cut, d, 3000), FB_ECORRUPT);
        free(t);
    }
    free(frame);
    free(plain);
    free(d);
}

TEST(frame_without_size_and_skippable_frame)
{
    size_t n = 4000;
    uint8_t *plain = malloc(n);
    fill_text(plain, n, 4);
    uint8_t *c = malloc(ZSTD_compressBound(n));
    uint8_t *d = malloc(n);
    /* A streamed frame does not declare its content size. */
    ZSTD_CStream *cs = ZSTD_createCStream();
    ZSTD_outBuffer out = {c, ZSTD_compressBound(n), 0};
    ZSTD_inBuffer in = {plain, n, 0};
    CHECK(!ZSTD_isError(ZSTD_compressStream2(cs, &out, &in, ZSTD_e_continue)));
    CHECK_EQ(ZSTD_compressStream2(cs, &out, &in, ZSTD_e_end), 0);
    ZSTD_freeCStream(cs);
    CHECK_U64_EQ(ZSTD_getFrameContentSize(c, out.pos), ZSTD_CONTENTSIZE_UNKNOWN);
    CHECK_RC(fb__zstd_decompress(c, out.pos, d, n), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "does not declare") != NULL);

    /* Skippable frame: magic 0x184D2A50, 4-byte length, payload. */
    uint8_t skip[8 + 4];
    fb__put_le32(skip, 0x184D2A50u);
    fb__put_le32(skip + 4, 4);
    memset(skip + 8, 0, 4);
    CHECK_RC(fb__zstd_decompress(skip, sizeof skip, d, 0), FB_ECORRUPT);
    CHECK_RC(fb__zstd_decompress(skip, sizeof skip, d, 4), FB_ECORRUPT);
    /* Not zstd at all. */
    CHECK_RC(fb__zstd_decompress("RIFF....WEBP", 12, d, 12), FB_ECORRUPT);
    CHECK_RC(fb__zstd_decompress("", 0, d, 0), FB_ECORRUPT);
    free(plain);
    free(c);
    free(d);
}

/*
 * A frame of 1 MiB of zeros whose header is patched to declare 100 bytes:
 * the frame is otherwise intact, so only the output bound stops it.
 */
TEST(bomb_cannot_expand_past_declared_size)
{
    size_t n = 1u << 20;
    uint8_t *zeros = calloc(1, n);
    uint8_t c[4096];
    size_t clen = ZSTD_compress(c, sizeof c, zeros, n, 3);
    CHECK(!ZSTD_isError(clen));
    uint8_t fhd = c[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, dict_flag = fhd & 3;
    static const unsigned dict_sizes[4] = {0, 1, 2, 4};
    size_t fcs_off = 5 + (single ? 0 : 1) + dict_sizes[dict_flag];
    CHECK_EQ(fcs_flag, 2); /* 4-byte content size for 1 MiB */
    fb__put_le32(c + fcs_off, 100);
    CHECK_U64_EQ(ZSTD_getFrameContentSize(c, clen), 100);
    uint8_t *d = malloc(100 + GUARD);
    memset(d, 0xa5, 100 + GUARD);
    CHECK_RC(fb__zstd_decompress(c, clen, d, 100), FB_ECORRUPT);
    for (size_t i = 0; i < GUARD; i++) {
        CHECK_EQ(d[100 + i], 0xa5);
    }
    free(zeros);
    free(d);
}

/* Every single-byte corruption of a small frame is either detected or
 * decodes to exactly plain_len bytes (zstd has no checksum of its own here:
 * the record CRC catches the rest) - and never writes past the buffer. */
TEST(byte_corruption_never_overflows)
{
    uint8_t *frame, *plain;
    size_t flen;
    make_frame(2000, &frame, &flen, &plain);
    uint8_t *t = malloc(flen);
    uint8_t *d = malloc(2000 + GUARD);
    for (size_t i = 0; i < flen; i++) {
        for (int v = 0; v < 256; v += 51) {
            memcpy(t, frame, flen);
            t[i] ^= (uint8_t)(v | 1);
            memset(d + 2000, 0xa5, GUARD);
            int rc = fb__zstd_decompress(t, flen, d, 2000);
            CHECK(rc == 0 || rc == FB_ECORRUPT);
            for (size_t g = 0; g < GUARD; g++) {
                CHECK_EQ(d[2000 + g], 0xa5);
            }
        }
    }
    free(t);
    free(d);
    free(frame);
    free(plain);
}

/* Allocator that fails after a budget of allocations. */
static int alloc_budget;
static void *failing_malloc(size_t n)
{
    if (alloc_budget-- <= 0) {
        return NULL;
    }
    return malloc(n);
}
static void *failing_realloc(void *p, size_t n)
{
    if (alloc_budget-- <= 0) {
        return NULL;
    }
    return realloc(p, n);
}

struct oom_run {
    int budget;
    int rc_c, rc_d;
};

/* Runs in a fresh thread, so its contexts are created under the budget. */
static void *oom_thread(void *arg)
{
    struct oom_run *r = arg;
    uint8_t src[5000], c[5000], d[5000];
    fill_text(src, sizeof src, 5);
    size_t clen = 0;
    alloc_budget = r->budget;
    r->rc_c = fb__zstd_compress(src, sizeof src, 3, 0.02, c, sizeof c, &clen);
    r->rc_d = r->rc_c == 0 ? fb__zstd_decompress(c, clen, d, sizeof src) : r->rc_c;
    if (r->rc_d == 0 && memcmp(d, src, sizeof src) != 0) {
        r->rc_d = -999;
    }
    alloc_budget = 1 << 30; /* the thread-exit destructor only frees */
    return NULL;
}

TEST(allocation_failures_are_enomem)
{
    fb_allocator a = {failing_malloc, failing_realloc, free};
    fb_set_allocator(&a);
    int succeeded = 0;
    for (int budget = 0; budget < 20 && !succeeded; budget++) {
        struct oom_run r = {budget, 0, 0};
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, oom_thread, &r), 0);
        pthread_join(t, NULL);
        CHECK(r.rc_c == 0 || r.rc_c == FB_ENOMEM);
        CHECK(r.rc_d == 0 || r.rc_d == FB_ENOMEM);
        succeeded = r.rc_c == 0 && r.rc_d == 0;
    }
    fb_set_allocator(NULL);
    CHECK(succeeded);
}

int main(void)
{
    RUN(round_trip_small_sizes);
    RUN(round_trip_large_sizes_and_levels);
    RUN(incompressible_is_stored_raw);
    RUN(min_saving_is_honoured);
    RUN(bad_arguments);
    RUN(declared_size_must_match);
    RUN(trailing_bytes_and_second_frame);
    RUN(every_truncation_is_corrupt);
    RUN(frame_without_size_and_skippable_frame);
    RUN(bomb_cannot_expand_past_declared_size);
    RUN(byte_corruption_never_overflows);
    RUN(allocation_failures_are_enomem);
    return TEST_REPORT();
}
