/*
 * Unit tests of src/jpeg_seq.c: the progressive-to-sequential rewrite is
 * lossless (the conversion of the copy is the same WebP, byte for byte),
 * keeps the markers a conversion reads (EXIF orientation, ICC profile, GPS
 * when metadata is kept, CMYK's Adobe marker), leaves alone what it should,
 * refuses a scan bomb and gives up cleanly on corrupt input. Progressive
 * test files are made here with libvips and libjpeg from the checked-in
 * images in tests/data/images.
 */
#include "fb_test.h"

#include <stdio.h>

#include <jpeglib.h>
#include <vips/vips.h>

#include "image.h"
#include "jpeg_seq.h"
#include "util/alloc.h"

static uint8_t *read_image(const char *name, size_t *len)
{
    char path[4096];
    const char *dir = getenv("FB_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/data/images/%s", dir != NULL ? dir : ".", name);
    gchar *p = NULL;
    gsize n = 0;
    if (!g_file_get_contents(path, &p, &n, NULL)) {
        fprintf(stderr, "missing test image %s\n", path);
        exit(2);
    }
    *len = n;
    return (uint8_t *)p; /* g_free */
}

/* The image re-saved by libvips as a progressive JPEG, markers kept. */
static uint8_t *progressive_copy(const char *name, size_t *len)
{
    size_t in_len;
    uint8_t *in = read_image(name, &in_len);
    VipsImage *im = vips_image_new_from_buffer(in, in_len, "", NULL);
    void *out = NULL;
    if (im == NULL || vips_jpegsave_buffer(im, &out, len, "interlace", TRUE, "Q", 90, NULL) != 0) {
        fprintf(stderr, "cannot make a progressive %s: %s\n", name, vips_error_buffer());
        exit(2);
    }
    g_object_unref(im);
    g_free(in);
    return out; /* g_free */
}

/* The offset of the frame header (SOF0, SOF1 or SOF2 marker), or 0 if none
 * comes before the first scan. Walks the marker segments, so that an EXIF
 * thumbnail's own markers are not seen. */
static size_t frame_header(const uint8_t *p, size_t n)
{
    for (size_t i = 2; i + 4 <= n && p[i] == 0xff;) {
        uint8_t m = p[i + 1];
        if (m == 0xc0 || m == 0xc1 || m == 0xc2) {
            return i;
        }
        if (m == 0xda) {
            break;
        }
        i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    }
    return 0;
}

/* 1 for a progressive frame, 0 for a sequential one, -1 for none. */
static int is_progressive(const uint8_t *p, size_t n)
{
    size_t i = frame_header(p, n);
    return i == 0 ? -1 : p[i + 1] == 0xc2;
}

/* Both inputs convert, to the same bytes. */
static int same_webp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                     const fb_image_opts *o)
{
    fb_image_result ra, rb;
    int ok = fb__image_to_webp(a, alen, o, &ra) == 0 && fb__image_to_webp(b, blen, o, &rb) == 0 &&
             ra.len == rb.len && memcmp(ra.webp, rb.webp, ra.len) == 0;
    fb__image_result_free(&ra);
    fb__image_result_free(&rb);
    return ok;
}

TEST(rewrite_is_lossless_and_keeps_markers)
{
    /* Orientation 6 (EXIF), a Display P3 profile (ICC), GPS (EXIF, seen
     * only with keep_metadata), CMYK (the Adobe marker libjpeg writes). */
    static const char *const files[] = {"progressive.jpg", "orient-6.jpg", "colour-p3.jpg",
                                        "gps.jpg", "colour-cmyk-noprofile.jpg"};
    fb_image_opts plain, keep;
    fb_image_opts_init(&plain);
    fb_image_opts_init(&keep);
    keep.keep_metadata = 1;
    keep.keep_icc = 1;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len, seq_len;
        uint8_t *prog = progressive_copy(files[i], &len), *seq = NULL;
        CHECK_EQ(is_progressive(prog, len), 1);
        CHECK_EQ(fb__jpeg_sequential(prog, len, 0, &seq, &seq_len), 0);
        CHECK(seq != NULL);
        CHECK_EQ(is_progressive(seq, seq_len), 0);
        /* Small images are converted from the progressive file itself, so
         * this compares the direct decode with the rewritten one. */
        if (!same_webp(prog, len, seq, seq_len, &plain) ||
            !same_webp(prog, len, seq, seq_len, &keep)) {
            fb__free(seq);
            g_free(prog);
            FB_TEST_FAIL_("%s: the sequential copy converts differently", files[i]);
        }
        fb__free(seq);
        g_free(prog);
    }
}

TEST(left_alone_when_not_needed)
{
    size_t len, seq_len = 1;
    uint8_t *seq = (uint8_t *)"x";
    uint8_t *base = read_image("photo.jpg", &len); /* sequential already */
    CHECK_EQ(is_progressive(base, len), 0);
    CHECK_EQ(fb__jpeg_sequential(base, len, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    CHECK_EQ(seq_len, 0);
    g_free(base);
    uint8_t *prog = progressive_copy("photo.jpg", &len);
    CHECK_EQ(fb__jpeg_sequential(prog, len, FB__JPEG_SEQ_MIN_BYTES, &seq, &seq_len), 0);
    CHECK(seq == NULL); /* far below the threshold */
    g_free(prog);
}

TEST(corrupt_input_is_left_to_the_decoder)
{
    size_t len, seq_len;
    uint8_t *seq = NULL;
    uint8_t *prog = progressive_copy("photo.jpg", &len);
    /* Truncated: libjpeg warns of a premature end. */
    CHECK_EQ(fb__jpeg_sequential(prog, len / 2, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    /* Garbage inside the scans. */
    for (size_t i = len / 3; i < len / 3 + 64; i++) {
        prog[i] = (uint8_t)(i * 37);
    }
    CHECK_EQ(fb__jpeg_sequential(prog, len, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    static const uint8_t junk[] = {0xff, 0xd8, 0xff, 0xc2, 0x00, 0x02, 0x01};
    CHECK_EQ(fb__jpeg_sequential(junk, sizeof junk, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    CHECK_EQ(fb__jpeg_sequential(junk, 0, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    g_free(prog);
}

TEST(huge_declared_size_is_left_alone)
{
    /* A progressive header declaring 65000 x 65000 (25 GB of coefficients)
     * over a few KB of data: above FB__JPEG_SEQ_MAX_BYTES, so the rewrite
     * is skipped (and the decoder, behind the caller's pixel limit, would
     * refuse it). */
    size_t len, seq_len;
    uint8_t *seq = NULL;
    uint8_t *prog = progressive_copy("photo.jpg", &len);
    size_t i = frame_header(prog, len); /* height at +5, width at +7 */
    CHECK(i != 0 && i + 9 < len && prog[i + 1] == 0xc2);
    prog[i + 5] = prog[i + 7] = 65000 >> 8;
    prog[i + 6] = prog[i + 8] = 65000 & 0xff;
    CHECK_EQ(fb__jpeg_sequential(prog, len, 0, &seq, &seq_len), 0);
    CHECK(seq == NULL);
    g_free(prog);
}

TEST(unwritable_temp_dir_skips_the_rewrite)
{
    size_t len, seq_len;
    uint8_t *seq = NULL;
    uint8_t *prog = progressive_copy("photo.jpg", &len);
    const char *old = getenv("TMPDIR");
    char *saved = old != NULL ? strdup(old) : NULL;
    setenv("TMPDIR", "/nonexistent/fastblocks-test", 1);
    int rc = fb__jpeg_sequential(prog, len, 0, &seq, &seq_len);
    if (saved != NULL) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TMPDIR");
    }
    CHECK_EQ(rc, 0);
    CHECK(seq == NULL);
    g_free(prog);
}

/* A w x h progressive JPEG (4:4:4) with one scan per coefficient,
 * component and bit of successive approximation: 757 scans, all valid. */
static uint8_t *scan_bomb(JDIMENSION w, JDIMENSION h, unsigned long *len)
{
    static jpeg_scan_info scans[800];
    int n = 0;
    scans[n++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 0, 0};
    for (int c = 0; c < 3; c++) {
        for (int k = 1; k < 64; k++) {
            scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 0, 3};
            for (int a = 3; a > 0; a--) {
                scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, a, a - 1};
            }
        }
    }
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    jpeg_mem_dest(&c, &out, len);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    for (int i = 0; i < 3; i++) {
        c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    }
    c.scan_info = scans;
    c.num_scans = n;
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = malloc((size_t)w * 3);
    while (c.next_scanline < c.image_height) {
        for (JDIMENSION x = 0; x < w * 3; x++) {
            row[x] = (JSAMPLE)(x * 3 + c.next_scanline * 5);
        }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    free(row);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out; /* free */
}

TEST(scan_bomb_is_refused)
{
    unsigned long len = 0;
    uint8_t *bomb = scan_bomb(64, 64, &len), *seq = NULL;
    size_t seq_len;
    CHECK_EQ(is_progressive(bomb, len), 1);
    int rc = fb__jpeg_sequential(bomb, len, 0, &seq, &seq_len);
    CHECK_EQ(rc, FB_ELIMIT);
    CHECK(seq == NULL);
    CHECK(strstr(fb_last_error(), "more than 500 progressive scans") != NULL);
    free(bomb);
}

/* 1800 x 1600 at 4:4:4: 17.3 MB of coefficients, above the threshold, so
 * fb__image_to_webp itself converts through the sequential copy. */
enum { BIG_W = 1800, BIG_H = 1600 };

static uint8_t *big_progressive(size_t *len)
{
    VipsImage *xy = NULL, *x = NULL, *y = NULL, *sum = NULL, *bands[3] = {NULL}, *rgb = NULL;
    void *out = NULL;
    int ok = vips_xyz(&xy, BIG_W, BIG_H, NULL) == 0 && vips_extract_band(xy, &x, 0, NULL) == 0 &&
             vips_extract_band(xy, &y, 1, NULL) == 0 && vips_add(x, y, &sum, NULL) == 0 &&
             vips_remainder_const1(x, &bands[0], 251, NULL) == 0 &&
             vips_remainder_const1(y, &bands[1], 241, NULL) == 0 &&
             vips_remainder_const1(sum, &bands[2], 239, NULL) == 0 &&
             vips_bandjoin(bands, &rgb, 3, NULL) == 0;
    VipsImage *u8 = NULL, *tagged = NULL;
    ok = ok && vips_cast_uchar(rgb, &u8, NULL) == 0 && vips_copy(u8, &tagged, NULL) == 0;
    if (ok) {
        vips_image_set_int(tagged, VIPS_META_ORIENTATION, 6); /* 90 degrees clockwise */
        ok = vips_jpegsave_buffer(tagged, &out, len, "interlace", TRUE, "Q", 85, "subsample_mode",
                                  VIPS_FOREIGN_SUBSAMPLE_OFF, NULL) == 0;
    }
    VipsImage *all[] = {xy, x, y, sum, bands[0], bands[1], bands[2], rgb, u8, tagged};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i] != NULL) {
            g_object_unref(all[i]);
        }
    }
    if (!ok) {
        fprintf(stderr, "cannot make the large progressive JPEG: %s\n", vips_error_buffer());
        exit(2);
    }
    return out; /* g_free */
}

TEST(large_progressive_converts_through_the_copy)
{
    fb_image_opts o;
    fb_image_opts_init(&o);
    o.effort = 0;
    /* Reaching the scan limit shows that the conversion took the rewrite. */
    unsigned long bomb_len = 0;
    uint8_t *bomb = scan_bomb(BIG_W, BIG_H, &bomb_len);
    fb_image_result r;
    int rc = fb__image_to_webp(bomb, bomb_len, &o, &r);
    free(bomb);
    CHECK_EQ(rc, FB_ELIMIT);
    CHECK(strstr(fb_last_error(), "progressive scans") != NULL);

    size_t len, seq_len;
    uint8_t *prog = big_progressive(&len), *seq = NULL;
    CHECK_EQ(fb__jpeg_sequential(prog, len, 0, &seq, &seq_len), 0);
    CHECK(seq != NULL);
    int same = same_webp(prog, len, seq, seq_len, &o);
    rc = fb__image_to_webp(prog, len, &o, &r);
    fb__free(seq);
    g_free(prog);
    CHECK(same);
    CHECK_EQ(rc, 0);
    CHECK_EQ(r.width, BIG_H); /* upright: orientation 6 applied */
    CHECK_EQ(r.height, BIG_W);
    fb__image_result_free(&r);
}

TEST(large_progressive_shrunk_on_load)
{
    /* A small max_dimension decodes with DCT scaling, from the file itself. */
    fb_image_opts o;
    fb_image_opts_init(&o);
    o.effort = 0;
    o.max_dimension = 400;
    size_t len;
    uint8_t *prog = big_progressive(&len);
    fb_image_result r;
    int rc = fb__image_to_webp(prog, len, &o, &r);
    g_free(prog);
    CHECK_EQ(rc, 0);
    CHECK_EQ(r.width, 356); /* 1600 x 1800 upright, longer side 400 */
    CHECK_EQ(r.height, 400);
    fb__image_result_free(&r);
}

int main(void)
{
    if (VIPS_INIT("test_jpeg_seq") != 0) {
        return 2;
    }
    RUN(rewrite_is_lossless_and_keeps_markers);
    RUN(left_alone_when_not_needed);
    RUN(corrupt_input_is_left_to_the_decoder);
    RUN(huge_declared_size_is_left_alone);
    RUN(unwritable_temp_dir_skips_the_rewrite);
    RUN(scan_bomb_is_refused);
    RUN(large_progressive_converts_through_the_copy);
    RUN(large_progressive_shrunk_on_load);
    return TEST_REPORT();
}
