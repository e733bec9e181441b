/*
 * Unit tests of src/image.c: every input format, EXIF orientation, the
 * metadata policy, colour (ICC, CMYK, 16-bit, grey, alpha), animation,
 * passthrough, downscaling, lossless, the limits, and every bad input of
 * the corpus and of tests/data/hostile. Real images only: the checked-in
 * ones in tests/data/images (see make-images.sh there) and the corpus in
 * $FB_CORPUS_DIR. Output is checked by decoding it with libwebp.
 */
#include "fb_test.h"

#include <dirent.h>
#include <malloc.h>
#include <math.h>

#include <vips/vips.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <webp/mux.h>

#include "image.h"

/* ---- helpers ------------------------------------------------------------ */

static uint8_t *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (p != NULL && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)(n > 0 ? n : 0);
    return p;
}

static const char *src_dir(void)
{
    const char *d = getenv("FB_SOURCE_DIR");
    return d != NULL ? d : ".";
}

/* A checked-in test image; exits when missing, since every test needs them. */
static uint8_t *test_image(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/images/%s", src_dir(), name);
    uint8_t *p = read_path(path, len);
    if (p == NULL) {
        fprintf(stderr, "missing test image %s\n", path);
        exit(2);
    }
    return p;
}

/* Converts a checked-in image; returns the code, fills *r. */
static int convert_file(const char *name, const fb_image_opts *o, fb_image_result *r)
{
    size_t len;
    uint8_t *data = test_image(name, &len);
    int rc = fb__image_to_webp(data, len, o, r);
    free(data);
    return rc;
}

typedef struct rgba {
    uint8_t *px; /* WebPFree */
    int w, h;
} rgba;

static int decode(const fb_image_result *r, rgba *out)
{
    out->px = WebPDecodeRGBA(r->webp, r->len, &out->w, &out->h);
    return out->px != NULL;
}

/* Mean absolute difference over the RGB channels of two same-size images. */
static double rgb_diff(const rgba *a, const rgba *b)
{
    if (a->w != b->w || a->h != b->h) {
        return 1e9;
    }
    double sum = 0;
    size_t n = (size_t)a->w * a->h;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) {
            sum += abs(a->px[4 * i + c] - b->px[4 * i + c]);
        }
    }
    return sum / (3.0 * n);
}

/* The RIFF chunks present in a WebP file. */
static uint32_t webp_flags(const fb_image_result *r)
{
    WebPData d = {r->webp, r->len};
    WebPMux *mux = WebPMuxCreate(&d, 0);
    uint32_t flags = 0;
    if (mux == NULL || WebPMuxGetFeatures(mux, &flags) != WEBP_MUX_OK) {
        flags = 0xffffffffu;
    }
    WebPMuxDelete(mux);
    return flags;
}

/* A copy of a chunk's payload as a NUL-terminated string (NULL if absent). */
static char *webp_chunk(const fb_image_result *r, const char *id, size_t *len)
{
    WebPData d = {r->webp, r->len}, c;
    WebPMux *mux = WebPMuxCreate(&d, 0);
    char *out = NULL;
    if (mux != NULL && WebPMuxGetChunk(mux, id, &c) == WEBP_MUX_OK) {
        out = malloc(c.size + 1);
        memcpy(out, c.bytes, c.size);
        out[c.size] = '\0';
        *len = c.size;
    }
    WebPMuxDelete(mux);
    return out;
}

static int contains(const void *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static fb_image_opts defaults(void)
{
    fb_image_opts o;
    fb_image_opts_init(&o);
    return o;
}

/* ---- tests -------------------------------------------------------------- */

TEST(sniff_by_magic_only)
{
    static const struct {
        const char *file;
        fb_image_format fmt;
    } cases[] = {
        {"photo.jpg", FB_FMT_JPEG},  {"progressive.jpg", FB_FMT_JPEG}, {"alpha.png", FB_FMT_PNG},
        {"anim.gif", FB_FMT_GIF},    {"anim.webp", FB_FMT_WEBP},       {"photo.tif", FB_FMT_TIFF},
        {"photo.bmp", FB_FMT_BMP},   {"photo.heic", FB_FMT_HEIF},      {"photo.avif", FB_FMT_AVIF},
        {"clean.webp", FB_FMT_WEBP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *p = test_image(cases[i].file, &len);
        CHECK_EQ(fb__image_sniff(p, len), cases[i].fmt);
        free(p);
    }
    CHECK_EQ(fb__image_sniff("", 0), FB_FMT_UNKNOWN);
    CHECK_EQ(fb__image_sniff(NULL, 10), FB_FMT_UNKNOWN);
    CHECK_EQ(fb__image_sniff("\xff\xd8", 2), FB_FMT_UNKNOWN);
    CHECK_EQ(fb__image_sniff("RIFF\0\0\0\0WAVE", 12), FB_FMT_UNKNOWN);
    CHECK_EQ(fb__image_sniff("<svg></svg>", 11), FB_FMT_UNKNOWN);
    CHECK_STR_EQ(fb__image_format_name(FB_FMT_AVIF), "avif");
    CHECK_STR_EQ(fb__image_format_name(FB_FMT_UNKNOWN), "unknown");
}

/* Every container and pixel layout of the checked-in photo converts to a
 * WebP of the same size that looks like the photo. */
TEST(every_format_converts)
{
    static const char *const files[] = {
        "photo.jpg",  "progressive.jpg", "photo.tif",   "photo.bmp",  "photo.heic",
        "photo.avif", "rgb16.png",       "palette.png", "clean.webp", "gps.jpg",
    };
    fb_image_opts o = defaults();
    fb_image_result ref;
    rgba rp = {0};
    CHECK_OK(convert_file("photo.jpg", &o, &ref));
    CHECK(decode(&ref, &rp));
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        fb_image_result r;
        rgba px = {0};
        CHECK_OK(convert_file(files[i], &o, &r));
        CHECK_EQ(r.width, 192);
        CHECK_EQ(r.height, 128);
        CHECK_EQ(r.frames, 1);
        CHECK(decode(&r, &px));
        double d = rgb_diff(&px, &rp);
        if (d > 10) {
            fprintf(stderr, "%s differs from photo.jpg by %.2f\n", files[i], d);
        }
        CHECK(d <= 10); /* HEIF/AVIF at Q60 and a 64-colour palette differ most */
        WebPFree(px.px);
        fb__image_result_free(&r);
    }
    WebPFree(rp.px);
    fb__image_result_free(&ref);
}

/* The corpus: every file of every format converts, except the two GIFs of
 * the GIF test suite whose 65535-pixel side WebP cannot store (another one
 * declares 65535 but its frames are small, so its canvas is small). */
TEST(corpus_all_formats)
{
    const char *corpus = getenv("FB_CORPUS_DIR");
    if (corpus == NULL) {
        FB_TEST_FAIL_("FB_CORPUS_DIR is not set");
    }
    static const char *const fmts[] = {"jpeg", "png", "gif", "webp", "tiff", "bmp"};
    fb_image_opts o = defaults();
    o.effort = 0; /* decoding is what is tested here; keep the run short */
    int total = 0;
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/all/%s", corpus, fmts[f]);
        DIR *d = opendir(dir);
        CHECK(d != NULL);
        struct dirent *e;
        int n = 0, failed = 0;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            size_t len;
            uint8_t *p = read_path(path, &len);
            fb_image_result r;
            int rc = fb__image_to_webp(p, len, &o, &r);
            int want = strstr(e->d_name, "gts_max-width") != NULL ||
                               strstr(e->d_name, "gts_max-height") != NULL
                           ? FB_ELIMIT
                           : 0;
            if (rc != want) {
                fprintf(stderr, "%s: %s (%s)\n", path, fb_err_name(rc), fb_last_error());
                failed++;
            } else if (rc == 0) {
                int w, h;
                if (!WebPGetInfo(r.webp, r.len, &w, &h) || (uint32_t)w != r.width ||
                    (uint32_t)h != r.height) {
                    fprintf(stderr, "%s: output is not a valid WebP\n", path);
                    failed++;
                }
            }
            fb__image_result_free(&r);
            free(p);
            n++;
        }
        closedir(d);
        CHECK(n > 0);
        CHECK_EQ(failed, 0);
        total += n;
    }
    CHECK(total > 100);
}

/* Orientation K's stored pixels show the upright photo once K is applied:
 * the output must match orientation 1's, and no EXIF may be left. */
TEST(exif_orientation_all_eight)
{
    fb_image_opts o = defaults();
    o.lossless = 1; /* compare decoded pixels, not encoder noise */
    fb_image_result ref;
    rgba rp = {0};
    CHECK_OK(convert_file("orient-1.jpg", &o, &ref));
    CHECK(decode(&ref, &rp));
    for (int k = 1; k <= 8; k++) {
        char name[32];
        snprintf(name, sizeof name, "orient-%d.jpg", k);
        fb_image_result r;
        rgba px = {0};
        CHECK_OK(convert_file(name, &o, &r));
        CHECK_EQ(r.width, 192);
        CHECK_EQ(r.height, 128);
        CHECK(decode(&r, &px));
        double d = rgb_diff(&px, &rp);
        if (d > 3) {
            fprintf(stderr, "orientation %d: mean difference %.2f from upright\n", k, d);
        }
        CHECK(d <= 3); /* only JPEG re-compression noise */
        CHECK_EQ(webp_flags(&r) & (EXIF_FLAG | XMP_FLAG), 0);
        WebPFree(px.px);
        fb__image_result_free(&r);
    }
    /* The comparison can fail: the mirrored photo is far from the upright. */
    size_t len;
    uint8_t *p = test_image("orient-2.jpg", &len);
    VipsImage *raw = NULL;
    CHECK(vips_jpegload_buffer(p, len, &raw, "autorotate", FALSE, NULL) == 0);
    rgba m = {0};
    void *mem = NULL;
    size_t mlen;
    VipsImage *with_alpha = NULL;
    CHECK(vips_bandjoin_const1(raw, &with_alpha, 255, NULL) == 0);
    mem = vips_image_write_to_memory(with_alpha, &mlen);
    m.px = mem;
    m.w = raw->Xsize;
    m.h = raw->Ysize;
    CHECK(rgb_diff(&m, &rp) > 20);
    g_free(mem);
    g_object_unref(with_alpha);
    g_object_unref(raw);
    free(p);
    WebPFree(rp.px);
    fb__image_result_free(&ref);
}

/* Default: no EXIF (with its GPS position), no XMP. keep_metadata keeps
 * them, with the orientation reset to 1 when the pixels were turned. */
TEST(metadata_stripped_unless_kept)
{
    fb_image_opts o = defaults();
    fb_image_result r;
    CHECK_OK(convert_file("gps.jpg", &o, &r));
    CHECK_EQ(webp_flags(&r) & (EXIF_FLAG | XMP_FLAG | ICCP_FLAG), 0);
    CHECK(!contains(r.webp, r.len, "FastBlocksTest"));
    CHECK(!contains(r.webp, r.len, "Exif"));
    fb__image_result_free(&r);

    o.keep_metadata = 1;
    CHECK_OK(convert_file("gps.jpg", &o, &r));
    CHECK_EQ(webp_flags(&r) & (EXIF_FLAG | XMP_FLAG), EXIF_FLAG | XMP_FLAG);
    size_t n = 0;
    char *exif = webp_chunk(&r, "EXIF", &n);
    CHECK(exif != NULL);
    CHECK(n > 8 && (memcmp(exif, "II*", 3) == 0 || memcmp(exif, "MM", 2) == 0));
    CHECK(contains(exif, n, "FastBlocksTestCam"));
    free(exif);
    char *xmp = webp_chunk(&r, "XMP ", &n);
    CHECK(xmp != NULL && contains(xmp, n, "FastBlocksTestCreator"));
    free(xmp);
    fb__image_result_free(&r);

    /* Rotated and kept: libvips reads the orientation back as 1. */
    CHECK_OK(convert_file("orient-6.jpg", &o, &r));
    CHECK(webp_flags(&r) & EXIF_FLAG);
    VipsImage *back = NULL;
    CHECK(vips_webpload_buffer(r.webp, r.len, &back, NULL) == 0);
    CHECK_EQ(vips_image_get_orientation(back), 1);
    g_object_unref(back);
    fb__image_result_free(&r);
}

/* Whether a kept chunk of r is byte for byte the input's blob `name` (read
 * back with libvips; skip bytes dropped from its front, e.g. "Exif\0\0"). */
static int chunk_is_blob(const fb_image_result *r, const char *id, const char *file,
                         const char *name, size_t skip)
{
    size_t len = 0, n = 0, blob_len = 0;
    uint8_t *data = test_image(file, &len);
    VipsImage *in = NULL;
    const void *blob = NULL;
    char *chunk = webp_chunk(r, id, &n);
    in = vips_image_new_from_buffer(data, len, "", NULL);
    int same = in != NULL && vips_image_get_blob(in, name, &blob, &blob_len) == 0 &&
               blob_len > skip && chunk != NULL && n == blob_len - skip &&
               memcmp(chunk, (const uint8_t *)blob + skip, n) == 0;
    if (in != NULL) {
        g_object_unref(in);
    }
    free(chunk);
    free(data);
    return same;
}

/* The kept chunks are copied out of the decoder's image before it is
 * released (so that it is gone before the encode): the copies must be exact,
 * each in its own place, whichever chunks are present. */
TEST(kept_chunks_are_exact_copies)
{
    fb_image_opts o = defaults();
    fb_image_result r;
    o.keep_metadata = 1;
    o.keep_icc = 1;
    CHECK_OK(convert_file("gps.jpg", &o, &r));
    CHECK(chunk_is_blob(&r, "EXIF", "gps.jpg", VIPS_META_EXIF_NAME, 6));
    CHECK(chunk_is_blob(&r, "XMP ", "gps.jpg", VIPS_META_XMP_NAME, 0));
    fb__image_result_free(&r);
    CHECK_OK(convert_file("colour-p3.jpg", &o, &r));
    CHECK(chunk_is_blob(&r, "ICCP", "colour-p3.jpg", VIPS_META_ICC_NAME, 0));
    fb__image_result_free(&r);
    /* Stripped again without the options: nothing left to copy. */
    o = defaults();
    CHECK_OK(convert_file("colour-p3.jpg", &o, &r));
    CHECK_EQ(webp_flags(&r) & (EXIF_FLAG | XMP_FLAG | ICCP_FLAG), 0);
    fb__image_result_free(&r);
}

/* Display P3 numbers come out as sRGB; keep_icc keeps P3 numbers and the
 * profile. The chart's saturated patches are where the two differ most. */
TEST(icc_converted_to_srgb)
{
    fb_image_opts o = defaults();
    o.lossless = 1;
    fb_image_result ref, conv, kept, photo_ref, photo;
    rgba a = {0}, b = {0}, c = {0}, pa = {0}, pb = {0};
    CHECK_OK(convert_file("chart-srgb.png", &o, &ref));
    CHECK_OK(convert_file("chart-p3.png", &o, &conv));
    o.keep_icc = 1;
    CHECK_OK(convert_file("chart-p3.png", &o, &kept));
    CHECK(decode(&ref, &a) && decode(&conv, &b) && decode(&kept, &c));
    double converted = rgb_diff(&b, &a), raw = rgb_diff(&c, &a);
    CHECK(converted < 1.5);
    CHECK(raw > 10);
    CHECK_EQ(webp_flags(&conv) & ICCP_FLAG, 0);
    CHECK(webp_flags(&kept) & ICCP_FLAG);
    size_t n = 0;
    char *icc = webp_chunk(&kept, "ICCP", &n);
    CHECK(icc != NULL && n > 128 && memcmp(icc + 36, "acsp", 4) == 0);
    free(icc);
    /* A real photo with a P3 profile lands within JPEG noise of the sRGB one. */
    o.keep_icc = 0;
    CHECK_OK(convert_file("colour-srgb.jpg", &o, &photo_ref));
    CHECK_OK(convert_file("colour-p3.jpg", &o, &photo));
    CHECK(decode(&photo_ref, &pa) && decode(&photo, &pb));
    CHECK(rgb_diff(&pb, &pa) < 3);
    WebPFree(a.px);
    WebPFree(b.px);
    WebPFree(c.px);
    WebPFree(pa.px);
    WebPFree(pb.px);
    fb__image_result_free(&ref);
    fb__image_result_free(&conv);
    fb__image_result_free(&kept);
    fb__image_result_free(&photo_ref);
    fb__image_result_free(&photo);
}

TEST(cmyk_jpeg_to_srgb)
{
    fb_image_opts o = defaults();
    o.lossless = 1;
    fb_image_result ref, r;
    rgba a = {0}, b = {0};
    CHECK_OK(convert_file("colour-srgb.jpg", &o, &ref));
    CHECK_OK(convert_file("colour-cmyk-noprofile.jpg", &o, &r));
    CHECK(decode(&ref, &a) && decode(&r, &b));
    double d = rgb_diff(&b, &a);
    /* CMYK's smaller gamut clips the saturated blues; an inverted or
     * uncalibrated reading would be off by tens of levels. */
    CHECK(d < 10);
    WebPFree(a.px);
    WebPFree(b.px);
    fb__image_result_free(&ref);
    fb__image_result_free(&r);
}

/* 16-bit input is scaled, not clipped; grey stays grey. */
TEST(sixteen_bit_and_grey)
{
    fb_image_opts o = defaults();
    o.lossless = 1;
    fb_image_result ref, r16, g8, g16;
    rgba a = {0}, b = {0}, c = {0}, d = {0};
    CHECK_OK(convert_file("photo.png", &o, &ref));
    CHECK_OK(convert_file("rgb16.png", &o, &r16));
    CHECK_OK(convert_file("grey.png", &o, &g8));
    CHECK_OK(convert_file("grey16.png", &o, &g16));
    CHECK(decode(&ref, &a) && decode(&r16, &b) && decode(&g8, &c) && decode(&g16, &d));
    CHECK(rgb_diff(&b, &a) < 1.0);
    CHECK(rgb_diff(&d, &c) < 1.0);
    size_t n = (size_t)c.w * c.h, grey = 0;
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
        grey += c.px[4 * i] == c.px[4 * i + 1] && c.px[4 * i + 1] == c.px[4 * i + 2];
        mean += c.px[4 * i];
    }
    CHECK_EQ(grey, n);
    mean /= (double)n;
    CHECK(mean > 20 && mean < 235); /* a photo, not a flat or clipped field */
    WebPFree(a.px);
    WebPFree(b.px);
    WebPFree(c.px);
    WebPFree(d.px);
    fb__image_result_free(&ref);
    fb__image_result_free(&r16);
    fb__image_result_free(&g8);
    fb__image_result_free(&g16);
}

/* alpha.png fades from transparent (left) to opaque (right). */
TEST(alpha_kept)
{
    for (int lossless = 0; lossless <= 1; lossless++) {
        fb_image_opts o = defaults();
        o.lossless = lossless;
        fb_image_result r;
        rgba px = {0};
        CHECK_OK(convert_file("alpha.png", &o, &r));
        WebPBitstreamFeatures feat;
        CHECK_EQ(WebPGetFeatures(r.webp, r.len, &feat), VP8_STATUS_OK);
        CHECK(feat.has_alpha);
        CHECK(decode(&r, &px));
        int mid = px.h / 2;
        CHECK(px.px[4 * ((size_t)mid * px.w + 0) + 3] <= 10);
        CHECK(px.px[4 * ((size_t)mid * px.w + px.w - 1) + 3] >= 245);
        int a_mid = px.px[4 * ((size_t)mid * px.w + px.w / 2) + 3];
        CHECK(a_mid > 100 && a_mid < 156);
        WebPFree(px.px);
        fb__image_result_free(&r);
    }
}

static void check_anim(const fb_image_result *r, int frames, int loop, const int *delays, int w,
                       int h)
{
    WebPData d = {r->webp, r->len};
    WebPDemuxer *dm = WebPDemux(&d);
    CHECK(dm != NULL);
    CHECK(WebPDemuxGetI(dm, WEBP_FF_FORMAT_FLAGS) & ANIMATION_FLAG);
    CHECK_EQ(WebPDemuxGetI(dm, WEBP_FF_FRAME_COUNT), frames);
    CHECK_EQ(WebPDemuxGetI(dm, WEBP_FF_LOOP_COUNT), loop);
    CHECK_EQ(WebPDemuxGetI(dm, WEBP_FF_CANVAS_WIDTH), w);
    CHECK_EQ(WebPDemuxGetI(dm, WEBP_FF_CANVAS_HEIGHT), h);
    WebPIterator it;
    for (int i = 1; i <= frames; i++) {
        CHECK(WebPDemuxGetFrame(dm, i, &it));
        CHECK_EQ(it.duration, delays[i - 1]);
        WebPDemuxReleaseIterator(&it);
    }
    WebPDemuxDelete(dm);
}

TEST(animated_gif_keeps_frames_delays_loop)
{
    static const int delays[] = {100, 250, 400};
    fb_image_opts o = defaults();
    fb_image_result r;
    /* The GIF's NETSCAPE extension says "repeat 3 times": 4 plays, which is
     * WebP's loop count 4 (as gif2webp writes it). */
    CHECK_OK(convert_file("anim.gif", &o, &r));
    CHECK_EQ(r.frames, 3);
    CHECK_EQ(r.input, FB_FMT_GIF);
    check_anim(&r, 3, 4, delays, 96, 64);
    fb__image_result_free(&r);
    o.max_dimension = 48;
    CHECK_OK(convert_file("anim.gif", &o, &r));
    check_anim(&r, 3, 4, delays, 48, 32);
    fb__image_result_free(&r);
}

/* A clean WebP is stored as is; one with EXIF keeps its bitstream but loses
 * the chunk; with passthrough off an animation is re-encoded whole. */
TEST(webp_passthrough)
{
    static const int delays[] = {120, 80};
    fb_image_opts o = defaults();
    size_t len;
    uint8_t *in = test_image("anim.webp", &len);
    fb_image_result r;
    CHECK_OK(fb__image_to_webp(in, len, &o, &r));
    CHECK_EQ(r.passthrough, 1);
    CHECK_EQ(r.len, len);
    CHECK_MEM_EQ(r.webp, in, len);
    check_anim(&r, 2, 0, delays, 96, 64);
    fb__image_result_free(&r);
    o.webp_passthrough = 0;
    CHECK_OK(fb__image_to_webp(in, len, &o, &r));
    CHECK_EQ(r.passthrough, 0);
    CHECK_EQ(r.frames, 2);
    check_anim(&r, 2, 0, delays, 96, 64);
    fb__image_result_free(&r);
    free(in);

    o = defaults();
    in = test_image("exif.webp", &len);
    CHECK_OK(fb__image_to_webp(in, len, &o, &r));
    CHECK_EQ(r.passthrough, 1);
    CHECK_EQ(webp_flags(&r) & EXIF_FLAG, 0);
    CHECK(r.len < len);
    CHECK(!contains(r.webp, r.len, "FastBlocksTestCam"));
    fb__image_result_free(&r);
    o.keep_metadata = 1;
    CHECK_OK(fb__image_to_webp(in, len, &o, &r));
    CHECK_EQ(r.passthrough, 1);
    CHECK_EQ(r.len, len);
    CHECK_MEM_EQ(r.webp, in, len);
    fb__image_result_free(&r);
    free(in);

    /* Downscaling needs new pixels. */
    o = defaults();
    o.max_dimension = 100;
    CHECK_OK(convert_file("clean.webp", &o, &r));
    CHECK_EQ(r.passthrough, 0);
    CHECK_EQ(r.width, 100);
    fb__image_result_free(&r);
}

TEST(max_dimension_downscales)
{
    fb_image_opts o = defaults();
    o.max_dimension = 64;
    fb_image_result r;
    CHECK_OK(convert_file("photo.jpg", &o, &r)); /* JPEG: shrink-on-load + resize */
    CHECK_EQ(r.width, 64);
    CHECK_EQ(r.height, 43);
    fb__image_result_free(&r);
    CHECK_OK(convert_file("orient-6.jpg", &o, &r)); /* stored 128x192, shown 192x128 */
    CHECK_EQ(r.width, 64);
    CHECK_EQ(r.height, 43);
    int w, h;
    CHECK(WebPGetInfo(r.webp, r.len, &w, &h));
    CHECK_EQ(w, 64);
    CHECK_EQ(h, 43);
    fb__image_result_free(&r);
    CHECK_OK(convert_file("alpha.png", &o, &r));
    CHECK_EQ(r.width, 64);
    fb__image_result_free(&r);
    o.max_dimension = 1000; /* never upscales */
    CHECK_OK(convert_file("photo.jpg", &o, &r));
    CHECK_EQ(r.width, 192);
    fb__image_result_free(&r);

    const char *corpus = getenv("FB_CORPUS_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/large/gdk__issue70.jpg", corpus ? corpus : ".");
    size_t len;
    uint8_t *p = read_path(path, &len);
    CHECK(p != NULL);
    o.max_dimension = 1024;
    CHECK_OK(fb__image_to_webp(p, len, &o, &r));
    CHECK_EQ(r.width, 759); /* 3120x4208 -> 758.6 x 1024 */
    CHECK_EQ(r.height, 1024);
    fb__image_result_free(&r);
    free(p);
}

/* A line of /proc/self/status in KiB (VmRSS, VmHWM). */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, strlen(key)) == 0) {
            v = atol(line + strlen(key));
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

/*
 * Random noise is the costliest picture for libwebp: at quality 80 its
 * token buffer alone would be about 14 bytes per pixel, far over the
 * budget of 4 bytes per pixel + 32 MiB. The conversion must see that and
 * encode with low_memory. The peak is measured as bench_ingest does: free
 * heap returned first (malloc_trim), VmHWM reset through clear_refs. Under
 * the sanitizers the allocator is not glibc's, so only the output is
 * checked there.
 */
TEST(detailed_picture_within_memory_budget)
{
    enum { SIDE = 2048 };
    VipsImage *noise[3] = {NULL, NULL, NULL}, *rgb = NULL, *u8 = NULL;
    void *tiff = NULL;
    size_t len = 0;
    int ok = 1;
    for (int b = 0; b < 3; b++) {
        ok = ok && vips_gaussnoise(&noise[b], SIDE, SIDE, "mean", 128.0, "sigma", 64.0, NULL) == 0;
    }
    ok = ok && vips_bandjoin(noise, &rgb, 3, NULL) == 0 && vips_cast_uchar(rgb, &u8, NULL) == 0 &&
         vips_tiffsave_buffer(u8, &tiff, &len, NULL) == 0;
    for (int b = 0; b < 3; b++) {
        g_clear_object(&noise[b]);
    }
    g_clear_object(&rgb);
    g_clear_object(&u8);
    CHECK(ok);

    fb_image_opts o = defaults();
    fb_image_result r;
    malloc_trim(0);
    long before = status_kib("VmRSS:");
    FILE *f = fopen("/proc/self/clear_refs", "w");
    CHECK(f != NULL);
    fputs("5", f);
    fclose(f);
    int rc = fb__image_to_webp(tiff, len, &o, &r);
    long peak = status_kib("VmHWM:") - before;
    g_free(tiff);
    CHECK_OK(rc);
    rgba out;
    CHECK(decode(&r, &out));
    CHECK_EQ(out.w, SIDE);
    CHECK_EQ(out.h, SIDE);
    WebPFree(out.px);
    CHECK(r.len > (size_t)SIDE * SIDE / 2); /* over 4 bits per pixel: the picture is detailed */
    fb__image_result_free(&r);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    long budget = (4L * SIDE * SIDE + (32L << 20)) / 1024;
    if (peak > budget) {
        FB_TEST_FAIL_("peak %ld KiB over the budget of %ld KiB", peak, budget);
    }
#else
    (void)peak;
#endif
}

TEST(lossless_is_exact)
{
    fb_image_opts o = defaults();
    o.lossless = 1;
    fb_image_result r;
    CHECK_OK(convert_file("grey.png", &o, &r));
    CHECK(r.len > 20 && memcmp(r.webp + 12, "VP8L", 4) == 0);
    rgba px = {0};
    CHECK(decode(&r, &px));
    size_t len;
    uint8_t *png = test_image("grey.png", &len);
    VipsImage *im = NULL;
    CHECK(vips_pngload_buffer(png, len, &im, NULL) == 0);
    size_t n;
    uint8_t *grey = vips_image_write_to_memory(im, &n);
    CHECK_EQ(n, (size_t)px.w * px.h);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        same += px.px[4 * i] == grey[i] && px.px[4 * i + 3] == 255;
    }
    CHECK_EQ(same, n);
    g_free(grey);
    g_object_unref(im);
    free(png);
    WebPFree(px.px);
    fb__image_result_free(&r);
    /* And the default is lossy, as with Pillow. */
    o.lossless = 0;
    CHECK_OK(convert_file("grey.png", &o, &r));
    CHECK(memcmp(r.webp + 12, "VP8 ", 4) == 0);
    fb__image_result_free(&r);
}

TEST(limits_from_the_header)
{
    fb_image_opts o = defaults();
    fb_image_result r;
    size_t len;
    uint8_t *p = test_image("photo.jpg", &len);
    o.max_input_bytes = len - 1;
    CHECK_RC(fb__image_to_webp(p, len, &o, &r), FB_ELIMIT);
    CHECK(strstr(fb_last_error(), "bytes") != NULL);
    o = defaults();
    o.max_pixels = 192 * 128 - 1;
    CHECK_RC(fb__image_to_webp(p, len, &o, &r), FB_ELIMIT);
    CHECK(r.webp == NULL && r.len == 0);
    o.max_pixels = 192 * 128;
    CHECK_OK(fb__image_to_webp(p, len, &o, &r));
    fb__image_result_free(&r);
    free(p);
    /* Animation: pixels are summed over frames (96x64 x 3 = 18432). */
    o = defaults();
    o.max_pixels = 15000;
    CHECK_RC(convert_file("anim.gif", &o, &r), FB_ELIMIT);
    o.max_pixels = 18432;
    CHECK_OK(convert_file("anim.gif", &o, &r));
    fb__image_result_free(&r);
    o = defaults();
    o.max_frames = 2;
    CHECK_RC(convert_file("anim.gif", &o, &r), FB_ELIMIT);
    CHECK_RC(convert_file("anim.webp", &o, &r), 0);
    fb__image_result_free(&r);
    o.max_frames = 1;
    CHECK_RC(convert_file("anim.webp", &o, &r), FB_ELIMIT);
}

TEST(bad_arguments)
{
    fb_image_opts o = defaults();
    fb_image_result r;
    uint8_t *w = (uint8_t *)"x";
    size_t wl = 1;
    CHECK_RC(fb_convert("abc", 3, NULL, NULL, &wl, NULL, NULL, NULL), FB_EINVAL);
    CHECK_RC(fb__image_to_webp(NULL, 5, &o, &r), FB_EINVAL);
    o.quality = 101;
    CHECK_RC(convert_file("photo.jpg", &o, &r), FB_EINVAL);
    o = defaults();
    o.effort = 7;
    CHECK_RC(convert_file("photo.jpg", &o, &r), FB_EINVAL);
    /* fb_convert with default options and NULL size outputs. */
    size_t len;
    uint8_t *p = test_image("photo.jpg", &len);
    CHECK_OK(fb_convert(p, len, NULL, &w, &wl, NULL, NULL, NULL));
    CHECK(wl > 100 && memcmp(w, "RIFF", 4) == 0);
    fb_free(w);
    CHECK_RC(fb_convert(p, 0, NULL, &w, &wl, NULL, NULL, NULL), FB_EUNSUPPORTED);
    CHECK(w == NULL && wl == 0);
    free(p);
    fb__image_result_free(NULL);
}

/* Cut every checked-in image at several points: always an error, never a
 * partial image, and a detail that says what happened. */
TEST(truncated_inputs)
{
    static const char *const files[] = {"photo.jpg",  "progressive.jpg", "alpha.png", "anim.gif",
                                        "clean.webp", "anim.webp",       "photo.tif", "photo.heic",
                                        "photo.avif", "photo.bmp",       "rgb16.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len;
        uint8_t *p = test_image(files[i], &len);
        static const double cuts[] = {0.05, 0.3, 0.6, 0.9};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            size_t n = (size_t)(len * cuts[c]);
            fb_image_result r;
            int rc = fb__image_to_webp(p, n, NULL, &r);
            if (rc != FB_EIMAGE) {
                fprintf(stderr, "%s cut to %zu of %zu bytes: %s (%s)\n", files[i], n, len,
                        fb_err_name(rc), fb_last_error());
            }
            CHECK_RC(rc, FB_EIMAGE);
            CHECK(strlen(fb_last_error()) > 10);
            CHECK(r.webp == NULL);
        }
        free(p);
    }
}

static int code_by_name(const char *name)
{
    static const struct {
        const char *name;
        int code;
    } codes[] = {
        {"OK", 0}, {"EIMAGE", FB_EIMAGE}, {"ELIMIT", FB_ELIMIT}, {"EUNSUPPORTED", FB_EUNSUPPORTED}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(name, codes[i].name) == 0) {
            return codes[i].code;
        }
    }
    return 12345;
}

/* tests/data/hostile/EXPECTED.tsv: file, code, reason. */
TEST(hostile_inputs)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/hostile/EXPECTED.tsv", src_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[1024];
    int n = 0, bombs = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#') {
            continue;
        }
        char *name = strtok(line, "\t"), *code = strtok(NULL, "\t\n");
        if (name == NULL || code == NULL) {
            continue;
        }
        snprintf(path, sizeof path, "%s/tests/data/hostile/%s", src_dir(), name);
        size_t len;
        uint8_t *p = read_path(path, &len);
        CHECK(p != NULL);
        fb_image_result r;
        int rc = fb__image_to_webp(p, len, NULL, &r);
        if (rc != code_by_name(code)) {
            fprintf(stderr, "%s: got %s (%s), want %s\n", name, fb_err_name(rc), fb_last_error(),
                    code);
        }
        CHECK_RC(rc, code_by_name(code));
        if (rc != 0) {
            CHECK(r.webp == NULL && fb_last_error()[0] != '\0');
        }
        bombs += strncmp(name, "bomb-", 5) == 0;
        fb__image_result_free(&r);
        free(p);
        n++;
    }
    fclose(f);
    CHECK(n >= 30);
    CHECK(bombs >= 8);
}

/* The corpus' broken files: each one an error with a detail, except one
 * valid BMP that gdk-pixbuf keeps among its failure cases. */
TEST(corpus_bad_files)
{
    const char *corpus = getenv("FB_CORPUS_DIR");
    if (corpus == NULL) {
        FB_TEST_FAIL_("FB_CORPUS_DIR is not set");
    }
    static const struct {
        const char *name;
        int code;
    } known[] = {
        {"gdk__mandatory-bitmasks.bmp", 0}, /* a valid 350x400 BMP (an apple) */
        {"gdk__issue205.jpg", FB_ELIMIT},   /* declares 64250x64250 */
        {"gdk__large.jpg", FB_ELIMIT},      /* 22500x33300 */
        {"gdk__bug793470-crasher.png", FB_ELIMIT},
        {"gdk__cve-2015-4491.bmp", FB_ELIMIT},
        {"gdk__empty-file.tga", FB_EUNSUPPORTED},
        {"gdk__premature-end.jpg", FB_EIMAGE},
        {"python3__truncated.jpg", FB_EIMAGE},
    };
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bad", corpus);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    int n = 0, seen_known = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *p = read_path(path, &len);
        fb_image_result r;
        int rc = fb__image_to_webp(p, len, NULL, &r);
        int want = -100;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            if (strcmp(known[i].name, e->d_name) == 0) {
                want = known[i].code;
                seen_known++;
            }
        }
        if (want != -100) {
            if (rc != want) {
                fprintf(stderr, "%s: got %s, want %s\n", e->d_name, fb_err_name(rc),
                        fb_err_name(want));
            }
            CHECK_RC(rc, want);
        } else {
            if (rc != FB_EIMAGE && rc != FB_ELIMIT && rc != FB_EUNSUPPORTED) {
                fprintf(stderr, "%s: got %s (%s)\n", e->d_name, fb_err_name(rc), fb_last_error());
            }
            CHECK(rc == FB_EIMAGE || rc == FB_ELIMIT || rc == FB_EUNSUPPORTED);
            CHECK(fb_last_error()[0] != '\0');
        }
        fb__image_result_free(&r);
        free(p);
        n++;
    }
    closedir(d);
    CHECK(n >= 50);
    CHECK_EQ(seen_known, (int)(sizeof known / sizeof known[0]));
}

int main(void)
{
    RUN(sniff_by_magic_only);
    RUN(every_format_converts);
    RUN(corpus_all_formats);
    RUN(exif_orientation_all_eight);
    RUN(metadata_stripped_unless_kept);
    RUN(kept_chunks_are_exact_copies);
    RUN(icc_converted_to_srgb);
    RUN(cmyk_jpeg_to_srgb);
    RUN(sixteen_bit_and_grey);
    RUN(alpha_kept);
    RUN(animated_gif_keeps_frames_delays_loop);
    RUN(webp_passthrough);
    RUN(max_dimension_downscales);
    RUN(detailed_picture_within_memory_budget);
    RUN(lossless_is_exact);
    RUN(limits_from_the_header);
    RUN(bad_arguments);
    RUN(truncated_inputs);
    RUN(hostile_inputs);
    RUN(corpus_bad_files);
    return TEST_REPORT();
}
