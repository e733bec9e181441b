/*
 * bench_codec - what the record codecs cost on real WebP images.
 *
 *   bench_codec [--out DIR] FILE.webp...
 *
 * For the given WebP files (bench/codec/run makes them with cwebp from the
 * corpus) it measures, single-threaded, in one run:
 *   - the baseline: libwebp encoding the same pixels again (quality 80,
 *     method 4: the store's defaults), per image;
 *   - Fernet encrypt and decrypt (codec_fernet), CRC32C of the token;
 *   - zstd level 3 on the WebP bytes: compressed size (the ratio WebP gets),
 *     how many records min_saving 2% would store compressed, and
 *     compression/decompression speed with per-thread contexts (codec_zstd)
 *     against plain ZSTD_compress/ZSTD_decompress, which make a fresh
 *     context per call (whether caching contexts matters).
 * It prints a table and writes codec.csv and codec.json into DIR (default
 * bench/results under the source tree).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <zstd.h>

#include "fastblocks.h"
#include "codec_fernet.h"
#include "codec_zstd.h"
#include "util/crc32c.h"

#define MIN_SECONDS 0.5

typedef struct image {
    const char *path;
    uint8_t *data;
    size_t len;
} image;

typedef struct result {
    const char *name;
    double seconds; /* per pass over all images */
    double mb_per_s;
    double us_per_image;
} result;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0) {
        buf = malloc((size_t)st.st_size);
        if (buf != NULL && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return buf;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_codec: %s: %s (%s)\n", what, fb_strerror(rc), fb_last_error());
    exit(1);
}

/* The state every measured pass works on. */
typedef struct ctx {
    image *imgs;
    size_t n;
    size_t total;
    fb_fernet *ring;
    uint8_t **tokens; /* one token per image */
    size_t *token_len;
    uint8_t **frames; /* zstd frame per image, compressed whatever the saving */
    size_t *frame_len;
    uint8_t *scratch;
    size_t scratch_cap;
    volatile uint32_t sink;
} ctx;

typedef void (*pass_fn)(ctx *c);

static void pass_encrypt(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t tl;
        int rc = fb__fernet_encrypt(c->ring, c->imgs[i].data, c->imgs[i].len, 1700000000,
                                    c->tokens[i], c->token_len[i], &tl);
        if (rc < 0) {
            die("encrypt", rc);
        }
    }
}

static void pass_encrypt_crc(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t tl;
        int rc = fb__fernet_encrypt(c->ring, c->imgs[i].data, c->imgs[i].len, 1700000000,
                                    c->tokens[i], c->token_len[i], &tl);
        if (rc < 0) {
            die("encrypt", rc);
        }
        c->sink += fb__crc32c(0, c->tokens[i], tl);
    }
}

static void pass_crc(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        c->sink += fb__crc32c(0, c->imgs[i].data, c->imgs[i].len);
    }
}

static void pass_decrypt(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t pl;
        int rc = fb__fernet_decrypt(c->ring, c->tokens[i], c->token_len[i], c->scratch,
                                    c->scratch_cap, &pl, NULL);
        if (rc < 0 || pl != c->imgs[i].len) {
            die("decrypt", rc);
        }
    }
}

static void pass_zstd_fb(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t cl;
        int rc = fb__zstd_compress(c->imgs[i].data, c->imgs[i].len, 3, 0.0, c->scratch,
                                   c->scratch_cap, &cl);
        if (rc < 0) {
            die("zstd compress", rc);
        }
    }
}

static void pass_zstd_fresh(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t r = ZSTD_compress(c->scratch, c->scratch_cap, c->imgs[i].data, c->imgs[i].len, 3);
        if (ZSTD_isError(r)) {
            die("ZSTD_compress", FB_EIO);
        }
    }
}

static void pass_unzstd_fb(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        int rc = fb__zstd_decompress(c->frames[i], c->frame_len[i], c->scratch, c->imgs[i].len);
        if (rc < 0) {
            die("zstd decompress", rc);
        }
    }
}

static void pass_unzstd_fresh(ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t r = ZSTD_decompress(c->scratch, c->imgs[i].len, c->frames[i], c->frame_len[i]);
        if (ZSTD_isError(r) || r != c->imgs[i].len) {
            die("ZSTD_decompress", FB_ECORRUPT);
        }
    }
}

/* Repeats a pass until MIN_SECONDS have gone by; the time of one pass. */
static result measure(ctx *c, const char *name, pass_fn fn)
{
    fn(c); /* warm up: contexts, caches, page faults */
    int passes = 0;
    double t0 = now(), t;
    do {
        fn(c);
        passes++;
        t = now() - t0;
    } while (t < MIN_SECONDS);
    result r = {name, t / passes, 0, 0};
    r.mb_per_s = (double)c->total / r.seconds / 1e6;
    r.us_per_image = r.seconds / (double)c->n * 1e6;
    return r;
}

/* libwebp re-encoding the decoded pixels at quality 80, method 4: the
 * per-image cost that the codecs are compared with. */
static double webp_encode_seconds(ctx *c)
{
    double total = 0;
    for (size_t i = 0; i < c->n; i++) {
        int w = 0, h = 0;
        uint8_t *rgba = WebPDecodeRGBA(c->imgs[i].data, c->imgs[i].len, &w, &h);
        if (rgba == NULL) {
            fprintf(stderr, "bench_codec: %s does not decode as WebP\n", c->imgs[i].path);
            exit(1);
        }
        uint8_t *out = NULL;
        double t0 = now();
        size_t len = WebPEncodeRGBA(rgba, w, h, w * 4, 80.0f, &out);
        total += now() - t0;
        if (len == 0) {
            fprintf(stderr, "bench_codec: WebP encode of %s failed\n", c->imgs[i].path);
            exit(1);
        }
        WebPFree(out);
        WebPFree(rgba);
    }
    return total;
}

int main(int argc, char **argv)
{
    const char *out_dir = NULL;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--out") == 0) {
        out_dir = argv[2];
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: bench_codec [--out DIR] FILE.webp...\n");
        return 2;
    }
    ctx c = {0};
    c.n = (size_t)(argc - first);
    c.imgs = calloc(c.n, sizeof *c.imgs);
    c.tokens = calloc(c.n, sizeof *c.tokens);
    c.token_len = calloc(c.n, sizeof *c.token_len);
    c.frames = calloc(c.n, sizeof *c.frames);
    c.frame_len = calloc(c.n, sizeof *c.frame_len);
    size_t max_len = 0;
    for (size_t i = 0; i < c.n; i++) {
        image *im = &c.imgs[i];
        im->path = argv[first + (int)i];
        im->data = read_file(im->path, &im->len);
        if (im->data == NULL) {
            fprintf(stderr, "bench_codec: cannot read %s: %s\n", im->path, strerror(errno));
            return 1;
        }
        c.total += im->len;
        max_len = im->len > max_len ? im->len : max_len;
    }
    char key[FB_KEY_LEN + 1];
    int rc = fb_keygen(key);
    const char *keys[1] = {key};
    if (rc < 0 || (rc = fb__fernet_new(keys, 1, &c.ring)) < 0) {
        die("keyring", rc);
    }
    c.scratch_cap = ZSTD_compressBound(max_len) + fb__fernet_token_len(max_len);
    c.scratch = malloc(c.scratch_cap);

    /* Compression ratio on the WebP bytes, and what min_saving decides. */
    size_t zsum = 0, stored_compressed = 0, stored_bytes = 0;
    for (size_t i = 0; i < c.n; i++) {
        image *im = &c.imgs[i];
        c.token_len[i] = fb__fernet_token_len(im->len);
        c.tokens[i] = malloc(c.token_len[i]);
        size_t bound = ZSTD_compressBound(im->len);
        c.frames[i] = malloc(bound);
        c.frame_len[i] = ZSTD_compress(c.frames[i], bound, im->data, im->len, 3);
        if (ZSTD_isError(c.frame_len[i])) {
            die("ZSTD_compress", FB_EIO);
        }
        zsum += c.frame_len[i];
        size_t cl;
        rc = fb__zstd_compress(im->data, im->len, 3, 0.02, c.scratch, c.scratch_cap, &cl);
        if (rc < 0) {
            die("zstd compress", rc);
        }
        stored_compressed += rc == 0;
        stored_bytes += rc == 0 ? cl : im->len;
    }
    double ratio = (double)zsum / (double)c.total;
    double saving_stored = 1.0 - (double)stored_bytes / (double)c.total;

    double encode_s = webp_encode_seconds(&c);
    double encode_us = encode_s / (double)c.n * 1e6;

    result rs[] = {
        measure(&c, "crc32c", pass_crc),
        measure(&c, "fernet_encrypt", pass_encrypt),
        measure(&c, "fernet_encrypt+crc32c", pass_encrypt_crc),
        measure(&c, "fernet_decrypt", pass_decrypt),
        measure(&c, "zstd3_compress_cached_ctx", pass_zstd_fb),
        measure(&c, "zstd3_compress_fresh_ctx", pass_zstd_fresh),
        measure(&c, "zstd_decompress_cached_ctx", pass_unzstd_fb),
        measure(&c, "zstd_decompress_fresh_ctx", pass_unzstd_fresh),
    };
    size_t nr = sizeof rs / sizeof rs[0];

    printf("images: %zu WebP files, %zu bytes (mean %.0f bytes)\n", c.n, c.total,
           (double)c.total / (double)c.n);
    printf("baseline: WebP encode q80 m4 (libwebp %d.%d.%d): %.0f us/image\n",
           WebPGetEncoderVersion() >> 16, (WebPGetEncoderVersion() >> 8) & 255,
           WebPGetEncoderVersion() & 255, encode_us);
    printf("zstd level 3 on WebP: compressed/original = %.4f (saves %.2f%%); with min_saving 2%%, "
           "%zu of %zu stored compressed, saving %.2f%% of all bytes\n",
           ratio, (1.0 - ratio) * 100.0, stored_compressed, c.n, saving_stored * 100.0);
    printf("%-28s %10s %12s %18s\n", "operation", "MB/s", "us/image", "x WebP encode");
    for (size_t i = 0; i < nr; i++) {
        printf("%-28s %10.0f %12.1f %17.4f%%\n", rs[i].name, rs[i].mb_per_s, rs[i].us_per_image,
               rs[i].us_per_image / encode_us * 100.0);
    }

    char dir[4096];
    if (out_dir == NULL) {
        const char *src = getenv("FB_SOURCE_DIR");
        snprintf(dir, sizeof dir, "%s/bench/results", src != NULL ? src : ".");
        out_dir = dir;
    }
    mkdir(out_dir, 0777);
    char path[4200];
    snprintf(path, sizeof path, "%s/codec.csv", out_dir);
    FILE *csv = fopen(path, "w");
    snprintf(path, sizeof path, "%s/codec.json", out_dir);
    FILE *js = fopen(path, "w");
    if (csv == NULL || js == NULL) {
        fprintf(stderr, "bench_codec: cannot write results in %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    fprintf(csv, "operation,mb_per_s,us_per_image,fraction_of_webp_encode\n");
    fprintf(csv, "webp_encode_q80_m4,,%.1f,1\n", encode_us);
    fprintf(js,
            "{\n  \"images\": %zu,\n  \"bytes\": %zu,\n  \"webp_encode_us_per_image\": %.1f,\n"
            "  \"zstd3_ratio\": %.5f,\n  \"zstd_min_saving_0.02_stored_compressed\": %zu,\n"
            "  \"zstd_min_saving_0.02_bytes_saved_fraction\": %.5f,\n  \"operations\": [\n",
            c.n, c.total, encode_us, ratio, stored_compressed, saving_stored);
    for (size_t i = 0; i < nr; i++) {
        double frac = rs[i].us_per_image / encode_us;
        fprintf(csv, "%s,%.1f,%.2f,%.6f\n", rs[i].name, rs[i].mb_per_s, rs[i].us_per_image, frac);
        fprintf(js,
                "    {\"name\": \"%s\", \"mb_per_s\": %.1f, \"us_per_image\": %.2f, "
                "\"fraction_of_webp_encode\": %.6f}%s\n",
                rs[i].name, rs[i].mb_per_s, rs[i].us_per_image, frac, i + 1 < nr ? "," : "");
    }
    fprintf(js, "  ]\n}\n");
    fclose(csv);
    fclose(js);
    printf("results: %s/codec.csv, %s/codec.json\n", out_dir, out_dir);

    for (size_t i = 0; i < c.n; i++) {
        free(c.imgs[i].data);
        free(c.tokens[i]);
        free(c.frames[i]);
    }
    free(c.imgs);
    free(c.tokens);
    free(c.token_len);
    free(c.frames);
    free(c.frame_len);
    free(c.scratch);
    fb__fernet_free(c.ring);
    return 0;
}
