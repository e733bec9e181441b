/*
 * image - turns uploaded bytes into the WebP the store keeps.
 *
 * Owns: sniffing by magic bytes, limits checked from the header before any
 * pixel is decoded, decoding through libvips, EXIF orientation, colour
 * management to sRGB, the metadata policy, downscaling, and WebP encoding
 * with libwebp. It does not own storage: callers get fb__malloc'ed bytes.
 *
 * Why the pixels do not go through vips_webpsave: libvips decodes and
 * transforms, but the encode is libwebp's own WebPEncode with an explicit
 * WebPConfig (the one cwebp uses), fed strip by strip from a VipsRegion in
 * the caller's thread. That keeps the output the same size as cwebp's,
 * keeps one upload on one core (uploads scale by running side by side), and
 * holds only the YUV picture plus one strip in memory instead of a full RGB
 * copy. The decoder is released before WebPEncode starts, so a progressive
 * JPEG's coefficient buffer and libwebp's token buffer (about 20 bytes per
 * output byte) are never held at once (see docs/IMAGES.md for the
 * measurements).
 *
 * This is the only file that includes vips/vips.h and the libwebp headers;
 * libvips' global error buffer is read and cleared here, at the boundary.
 */
#include "image.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "jpeg_seq.h"
#include "util/alloc.h"
#include "util/error.h"

#define WEBP_MAX_SIDE 16383 /* the format stores sides in 14 bits */
#define STRIP_ROWS 64       /* even, so that 4:2:0 chroma rows never straddle strips */

/* ------------------------------------------------------------------------ */
/* libvips set-up and error translation                                      */

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ready; /* written once under vips_once */
static char vips_init_detail[256];

static void drop_vips_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
                          gpointer userdata)
{
    /* The library never prints; warnings worth acting on become errors
     * through fail_on, the rest is noise on a server's stderr. */
    (void)domain;
    (void)level;
    (void)message;
    (void)userdata;
}

static void vips_setup(void)
{
    if (VIPS_INIT("fastblocks") != 0) {
        char *msg = vips_error_buffer_copy();
        snprintf(vips_init_detail, sizeof vips_init_detail, "libvips failed to start: %s",
                 msg != NULL ? msg : "");
        g_free(msg);
        return;
    }
    /* Every upload is different bytes: the operation cache would only hold
     * memory and file references. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    /* Pixels are pulled with vips_region_prepare in the caller's thread, so
     * one upload uses one core and concurrent uploads use the others. The
     * libvips pool is kept at one worker so that nothing that does reach it
     * multiplies threads by uploads. An operator's VIPS_CONCURRENCY wins. */
    if (getenv("VIPS_CONCURRENCY") == NULL) {
        vips_concurrency_set(1);
    }
    /* Only the loaders called below by name run; the untrusted ones
     * (ImageMagick, SVG, PDF, ...) stay blocked, except ImageMagick's buffer
     * loader, which is reached only with bytes sniffed as BMP and whose
     * header was checked here first. */
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoadMagickBuffer", FALSE);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      drop_vips_log, NULL);
    vips_ready = 1;
}

static int ensure_vips(void)
{
    pthread_once(&vips_once, vips_setup);
    if (!vips_ready) {
        return fb__error(FB_EIMAGE, "%s", vips_init_detail);
    }
    return 0;
}

/*
 * Turns the pending libvips error into our code and detail. The buffer is
 * process-wide, so it is copied and cleared in one call; under concurrent
 * failures a detail may carry another thread's line as well.
 */
/* The format being converted by this thread, named in every detail so that
 * a detail says what failed even when libvips' text is missing. */
static _Thread_local const char *current_format = "image";

static int vips_fail(int code, const char *what)
{
    char *msg = vips_error_buffer_copy();
    char text[400];
    size_t used = 0;
    text[0] = '\0';
    /* One line per libvips error, often the same line repeated: keep each
     * distinct line once, joined with "; ". */
    const char *prev = NULL;
    size_t prev_len = 0;
    for (const char *line = msg; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (n > 0 && !(prev != NULL && prev_len == n && memcmp(prev, line, n) == 0)) {
            int w = snprintf(text + used, sizeof text - used, "%s%.*s", used > 0 ? "; " : "",
                             (int)n, line);
            if (w < 0 || (size_t)w >= sizeof text - used) {
                used = sizeof text - 1;
                break;
            }
            used += (size_t)w;
            prev = line;
            prev_len = n;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    int rc = fb__error(code, "%s: %s: %s", current_format, what,
                       used > 0 ? text : "no detail from libvips");
    g_free(msg);
    return rc;
}

/* Replaces *cur by next (which holds its own reference to *cur if it needs it). */
static void replace_image(VipsImage **cur, VipsImage *next)
{
    g_object_unref(*cur);
    *cur = next;
}

/* ------------------------------------------------------------------------ */
/* Sniffing                                                                  */

static int has_prefix(const uint8_t *p, size_t len, const char *magic, size_t n)
{
    return len >= n && memcmp(p, magic, n) == 0;
}

/* ISO BMFF: a 'ftyp' box whose major or compatible brands name HEIF or AVIF. */
static fb_image_format sniff_bmff(const uint8_t *p, size_t len)
{
    if (len < 16 || memcmp(p + 4, "ftyp", 4) != 0) {
        return FB_FMT_UNKNOWN;
    }
    size_t box = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (box < 16 || box > len || box > 4096) {
        return FB_FMT_UNKNOWN;
    }
    static const char *const heif_brands[] = {"heic", "heix", "hevc", "hevx",
                                              "heim", "heis", "mif1", "msf1"};
    fb_image_format found = FB_FMT_UNKNOWN;
    /* Major brand at 8, minor version at 12, compatible brands from 16. */
    for (size_t off = 8; off + 4 <= box; off += 4) {
        if (off == 12) {
            continue;
        }
        if (memcmp(p + off, "avif", 4) == 0 || memcmp(p + off, "avis", 4) == 0) {
            return FB_FMT_AVIF;
        }
        for (size_t i = 0; i < sizeof heif_brands / sizeof heif_brands[0]; i++) {
            if (memcmp(p + off, heif_brands[i], 4) == 0) {
                found = FB_FMT_HEIF;
            }
        }
    }
    return found;
}

/*
 * Names the format from the first bytes only; file names and client
 * Content-Types are never consulted. Returns FB_FMT_UNKNOWN for anything not
 * on the list.
 */
fb_image_format fb__image_sniff(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (p == NULL || len < 3) {
        return FB_FMT_UNKNOWN;
    }
    if (has_prefix(p, len, "\xff\xd8\xff", 3)) {
        return FB_FMT_JPEG;
    }
    if (has_prefix(p, len, "\x89PNG\r\n\x1a\n", 8)) {
        return FB_FMT_PNG;
    }
    if (has_prefix(p, len, "GIF87a", 6) || has_prefix(p, len, "GIF89a", 6)) {
        return FB_FMT_GIF;
    }
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        return FB_FMT_WEBP;
    }
    /* Classic and Big TIFF, both byte orders. */
    if (has_prefix(p, len, "II*\0", 4) || has_prefix(p, len, "MM\0*", 4) ||
        has_prefix(p, len, "II+\0", 4) || has_prefix(p, len, "MM\0+", 4)) {
        return FB_FMT_TIFF;
    }
    /* "BM" is short; the DIB header size must be one of the known ones too. */
    if (len >= 18 && p[0] == 'B' && p[1] == 'M') {
        uint32_t dib =
            (uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 24;
        if (dib == 12 || dib == 16 || dib == 40 || dib == 52 || dib == 56 || dib == 64 ||
            dib == 108 || dib == 124) {
            return FB_FMT_BMP;
        }
    }
    return sniff_bmff(p, len);
}

/* Lower-case name of a format for details and logs ("unknown" if none). */
const char *fb__image_format_name(fb_image_format f)
{
    switch (f) {
    case FB_FMT_JPEG:
        return "jpeg";
    case FB_FMT_PNG:
        return "png";
    case FB_FMT_GIF:
        return "gif";
    case FB_FMT_WEBP:
        return "webp";
    case FB_FMT_TIFF:
        return "tiff";
    case FB_FMT_BMP:
        return "bmp";
    case FB_FMT_HEIF:
        return "heif";
    case FB_FMT_AVIF:
        return "avif";
    case FB_FMT_UNKNOWN:
        break;
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Header-level facts and limits                                             */

/*
 * The BMP header, read here because BMP goes through ImageMagick, whose
 * loader decodes when it reads the header: the declared size is checked
 * before ImageMagick sees the bytes.
 */
static int bmp_dimensions(const uint8_t *p, size_t len, uint64_t *w, uint64_t *h)
{
    if (len < 26) {
        return fb__error(FB_EIMAGE, "bmp: header truncated (%zu bytes)", len);
    }
    uint32_t dib =
        (uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 24;
    int64_t sw, sh;
    if (dib == 12) {
        sw = p[18] | p[19] << 8;
        sh = p[20] | p[21] << 8;
    } else {
        sw = (int32_t)((uint32_t)p[18] | (uint32_t)p[19] << 8 | (uint32_t)p[20] << 16 |
                       (uint32_t)p[21] << 24);
        sh = (int32_t)((uint32_t)p[22] | (uint32_t)p[23] << 8 | (uint32_t)p[24] << 16 |
                       (uint32_t)p[25] << 24);
    }
    if (sh < 0) {
        sh = -sh; /* top-down rows */
    }
    if (sw <= 0 || sh == 0) {
        return fb__error(FB_EIMAGE, "bmp: invalid size %lldx%lld in the header", (long long)sw,
                         (long long)sh);
    }
    *w = (uint64_t)sw;
    *h = (uint64_t)sh;
    return 0;
}

/*
 * libnsgif decodes the frames it finds and stops quietly at the end of the
 * data, so a GIF cut short would pass as a shorter animation. A complete GIF
 * ends with its trailer byte (0x3B), possibly followed by zero padding.
 */
static int gif_check_trailer(const uint8_t *p, size_t len)
{
    size_t n = len;
    while (n > 0 && p[n - 1] == 0) {
        n--;
    }
    if (n == 0 || p[n - 1] != 0x3b) {
        return fb__error(FB_EIMAGE, "gif: truncated (no trailer at the end of %zu bytes)", len);
    }
    return 0;
}

/* Output size for an input of w x h under max_dimension (aspect kept). */
static void target_size(uint64_t w, uint64_t h, uint32_t max_dim, uint64_t *tw, uint64_t *th)
{
    *tw = w;
    *th = h;
    if (max_dim == 0 || (w <= max_dim && h <= max_dim)) {
        return;
    }
    if (w >= h) {
        *tw = max_dim;
        *th = (h * max_dim + w / 2) / w; /* w, h < 2^31: no overflow */
    } else {
        *th = max_dim;
        *tw = (w * max_dim + h / 2) / h;
    }
    if (*tw == 0) {
        *tw = 1;
    }
    if (*th == 0) {
        *th = 1;
    }
}

/*
 * Every limit that the header alone decides: frame count, total pixels over
 * all frames, and the output side against WebP's 16383.
 */
static int check_limits(fb_image_format fmt, uint64_t w, uint64_t h, uint64_t frames,
                        const fb_image_opts *o)
{
    const char *name = fb__image_format_name(fmt);
    if (frames > o->max_frames) {
        return fb__error(FB_ELIMIT, "%s has %llu frames, more than the limit of %u", name,
                         (unsigned long long)frames, o->max_frames);
    }
    uint64_t per_frame = w * h; /* both below 2^31 */
    if (frames != 0 && per_frame > UINT64_MAX / frames) {
        return fb__error(FB_ELIMIT, "%s declares %llux%llu pixels in %llu frames: too many", name,
                         (unsigned long long)w, (unsigned long long)h, (unsigned long long)frames);
    }
    uint64_t pixels = per_frame * frames;
    if (pixels > o->max_pixels) {
        return fb__error(FB_ELIMIT,
                         "%s declares %llux%llu pixels x %llu frames = %llu, more than the limit "
                         "of %llu",
                         name, (unsigned long long)w, (unsigned long long)h,
                         (unsigned long long)frames, (unsigned long long)pixels,
                         (unsigned long long)o->max_pixels);
    }
    uint64_t tw, th;
    target_size(w, h, o->max_dimension, &tw, &th);
    if (tw > WEBP_MAX_SIDE || th > WEBP_MAX_SIDE) {
        return fb__error(FB_ELIMIT,
                         "%s of %llux%llu pixels is larger than WebP's limit of %d per side "
                         "(set a max dimension to downscale it)",
                         name, (unsigned long long)w, (unsigned long long)h, WEBP_MAX_SIDE);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

typedef struct load_req {
    fb_image_format fmt;
    const void *data;
    size_t len;
    int all_frames;    /* GIF/WebP: every frame stacked as one tall image */
    int random_access; /* needed when the image is rotated */
    int jpeg_shrink;   /* 1, 2, 4 or 8: JPEG's DCT-domain shrink-on-load */
} load_req;

/*
 * Runs the loader that matches the sniffed format. libvips only parses the
 * header here; pixels are decoded when a region is prepared. fail_on=error
 * makes truncated and corrupt data an error instead of grey pixels.
 */
static int load_image(const load_req *r, VipsImage **out)
{
    void *buf = (void *)(uintptr_t)r->data; /* libvips' signature; it never writes */
    VipsAccess access = r->random_access ? VIPS_ACCESS_RANDOM : VIPS_ACCESS_SEQUENTIAL;
    int n = r->all_frames ? -1 : 1;
    /* Random access decodes the whole image first: into memory, never into
     * a temporary file (libvips' default above 100 MB). Sequential access
     * must not ask for it, or the JPEG loader buffers the whole image. */
    gboolean memory = r->random_access ? TRUE : FALSE;
    int rc = -1;
    *out = NULL;
    switch (r->fmt) {
    case FB_FMT_JPEG:
        /* libjpeg reports a corrupt scan only as a warning and carries on
         * with grey blocks, so JPEG fails on warnings too. */
        rc = vips_jpegload_buffer(buf, r->len, out, "access", access, "fail_on",
                                  VIPS_FAIL_ON_WARNING, "memory", memory, "shrink", r->jpeg_shrink,
                                  NULL);
        break;
    case FB_FMT_PNG:
        rc = vips_pngload_buffer(buf, r->len, out, "access", access, "fail_on", VIPS_FAIL_ON_ERROR,
                                 "memory", memory, NULL);
        break;
    case FB_FMT_GIF:
        rc = vips_gifload_buffer(buf, r->len, out, "access", access, "fail_on", VIPS_FAIL_ON_ERROR,
                                 "memory", memory, "n", n, NULL);
        break;
    case FB_FMT_WEBP:
        rc = vips_webpload_buffer(buf, r->len, out, "access", access, "fail_on", VIPS_FAIL_ON_ERROR,
                                  "memory", memory, "n", n, NULL);
        break;
    case FB_FMT_TIFF:
        rc = vips_tiffload_buffer(buf, r->len, out, "access", access, "fail_on", VIPS_FAIL_ON_ERROR,
                                  "memory", memory, NULL);
        break;
    case FB_FMT_HEIF:
    case FB_FMT_AVIF:
        rc = vips_heifload_buffer(buf, r->len, out, "access", access, "fail_on", VIPS_FAIL_ON_ERROR,
                                  "memory", memory, NULL);
        break;
    case FB_FMT_BMP:
        rc = vips_magickload_buffer(buf, r->len, out, "access", access, "fail_on",
                                    VIPS_FAIL_ON_ERROR, "memory", memory, NULL);
        break;
    case FB_FMT_UNKNOWN:
        return fb__error(FB_EUNSUPPORTED, "unsupported image type");
    }
    if (rc != 0) {
        *out = NULL;
        return vips_fail(FB_EIMAGE, "cannot decode the header");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pulling pixels                                                            */

typedef int (*rows_fn)(void *ctx, const uint8_t *rows, size_t stride, int y, int n);

/*
 * Computes the image top to bottom in strips of STRIP_ROWS rows in the
 * calling thread and hands each strip to fn. This is where decoding
 * actually happens, so decode errors surface here.
 */
static int pull_rows(VipsImage *im, rows_fn fn, void *ctx)
{
    VipsRegion *reg = vips_region_new(im);
    if (reg == NULL) {
        return vips_fail(FB_ENOMEM, "cannot create a libvips region");
    }
    int rc = 0;
    for (int y = 0; y < im->Ysize; y += STRIP_ROWS) {
        VipsRect r = {0, y, im->Xsize, VIPS_MIN(STRIP_ROWS, im->Ysize - y)};
        if (vips_region_prepare(reg, &r) != 0) {
            rc = vips_fail(FB_EIMAGE, "cannot decode the pixels");
            goto out;
        }
        if (fn != NULL) {
            rc = fn(ctx, (const uint8_t *)VIPS_REGION_ADDR(reg, 0, y),
                    (size_t)VIPS_REGION_LSKIP(reg), y, r.height);
            if (rc != 0) {
                goto out;
            }
        }
    }
out:
    g_object_unref(reg);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Colour                                                                    */

/* Big- or little-endian reads for ICC (always big) and EXIF (either). */
static uint32_t rd32(const uint8_t *p, int big)
{
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint16_t rd16(const uint8_t *p, int big)
{
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

/* Whether text (ASCII, or UTF-16BE when wide) of n bytes contains "sRGB". */
static int mentions_srgb(const uint8_t *s, size_t n, int wide)
{
    static const char want[] = "sRGB";
    size_t unit = wide ? 2 : 1, need = 4 * unit;
    for (size_t i = 0; i + need <= n; i += unit) {
        size_t k = 0;
        while (k < 4 && s[i + k * unit + unit - 1] == (uint8_t)want[k] &&
               (!wide || s[i + k * unit] == 0)) {
            k++;
        }
        if (k == 4) {
            return 1;
        }
    }
    return 0;
}

/*
 * Whether an ICC profile is an RGB profile that describes sRGB (its 'desc'
 * tag names sRGB, as the profiles of cameras, phones and editors do).
 * Converting sRGB to sRGB changes nothing but costs a colour transform per
 * pixel, so such profiles are simply dropped. Reads only inside the blob.
 */
static int icc_is_srgb(const uint8_t *p, size_t n)
{
    if (n < 132 || memcmp(p + 16, "RGB ", 4) != 0 || memcmp(p + 36, "acsp", 4) != 0) {
        return 0;
    }
    uint32_t count = rd32(p + 128, 1);
    if (count > (n - 132) / 12) {
        return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = p + 132 + 12 * (size_t)i;
        if (memcmp(e, "desc", 4) != 0) {
            continue;
        }
        uint32_t off = rd32(e + 4, 1), size = rd32(e + 8, 1);
        if (off > n || size > n - off || size < 12) {
            return 0;
        }
        const uint8_t *t = p + off;
        if (memcmp(t, "desc", 4) == 0) { /* v2: ASCII count, then the text */
            return mentions_srgb(t + 12, size - 12, 0);
        }
        if (memcmp(t, "mluc", 4) == 0) { /* v4: UTF-16BE records */
            return mentions_srgb(t + 16, size - 16, 1);
        }
        return 0;
    }
    return 0;
}

/* The colour space field of an ICC header ("RGB ", "GRAY", "CMYK"), or "". */
static void icc_space(const uint8_t *p, size_t n, char out[5])
{
    memset(out, 0, 5);
    if (n >= 20) {
        memcpy(out, p + 16, 4);
    }
}

/*
 * Brings the image to 8-bit sRGB with 3 or 4 (alpha) bands. An embedded
 * profile is converted to sRGB unless it already is sRGB, or keep_icc asks
 * to keep an RGB profile (the pixels then stay in that space and the
 * profile goes into the WebP: *keep_profile). 16-bit and grey input go
 * through libvips' colourspace conversions, which scale rather than clip.
 */
static int to_srgb8(VipsImage **cur, const fb_image_opts *o, int *keep_profile)
{
    VipsImage *t = NULL;
    const void *icc = NULL;
    size_t icc_len = 0;
    *keep_profile = 0;
    if (vips_image_get_typeof(*cur, VIPS_META_ICC_NAME) != 0 &&
        vips_image_get_blob(*cur, VIPS_META_ICC_NAME, &icc, &icc_len) != 0) {
        return vips_fail(FB_EIMAGE, "cannot read the ICC profile");
    }
    if (icc != NULL) {
        char space[5];
        icc_space(icc, icc_len, space);
        int rgb = strcmp(space, "RGB ") == 0;
        if (o->keep_icc && rgb) {
            *keep_profile = 1;
        } else if (!(rgb && icc_is_srgb(icc, icc_len))) {
            /* A profile that lcms cannot use makes libvips fall back to its
             * default for the colour space, which is what browsers show. */
            if (vips_icc_transform(*cur, &t, "srgb", "embedded", TRUE, "intent",
                                   VIPS_INTENT_RELATIVE, "depth", 8, NULL) != 0) {
                return vips_fail(FB_EIMAGE, "cannot convert the ICC profile to sRGB");
            }
            replace_image(cur, t);
        }
    }
    VipsImage *im = *cur;
    VipsInterpretation interp = vips_image_guess_interpretation(im);
    if (im->BandFmt != VIPS_FORMAT_UCHAR || im->Bands < 3 || interp != VIPS_INTERPRETATION_sRGB) {
        if (vips_colourspace(im, &t, VIPS_INTERPRETATION_sRGB, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot convert to sRGB");
        }
        replace_image(cur, t);
    }
    if ((*cur)->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(*cur, &t, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot convert to 8 bits");
        }
        replace_image(cur, t);
    }
    if ((*cur)->Bands > 4) {
        if (vips_extract_band(*cur, &t, 0, "n", 4, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot select the colour and alpha bands");
        }
        replace_image(cur, t);
    }
    if ((*cur)->Bands < 3) {
        return fb__error(FB_EIMAGE, "image has %d bands after conversion to sRGB", (*cur)->Bands);
    }
    return 0;
}

/* Resizes to exactly tw x th; alpha is premultiplied around the resample so
 * transparent pixels do not bleed colour into the edges. */
static int resize_to(VipsImage **cur, uint64_t tw, uint64_t th)
{
    VipsImage *im = *cur, *t = NULL;
    if ((uint64_t)im->Xsize == tw && (uint64_t)im->Ysize == th) {
        return 0;
    }
    double hs = (double)tw / im->Xsize, vs = (double)th / im->Ysize;
    int alpha = im->Bands == 4;
    if (alpha) {
        if (vips_premultiply(*cur, &t, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot premultiply alpha");
        }
        replace_image(cur, t);
    }
    if (vips_resize(*cur, &t, hs, "vscale", vs, "kernel", VIPS_KERNEL_LANCZOS3, NULL) != 0) {
        return vips_fail(FB_EIMAGE, "cannot resize");
    }
    replace_image(cur, t);
    if (alpha) {
        if (vips_unpremultiply(*cur, &t, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot unpremultiply alpha");
        }
        replace_image(cur, t);
    }
    if ((*cur)->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(*cur, &t, NULL) != 0) {
            return vips_fail(FB_EIMAGE, "cannot convert to 8 bits");
        }
        replace_image(cur, t);
    }
    if ((uint64_t)(*cur)->Xsize != tw || (uint64_t)(*cur)->Ysize != th) {
        return fb__error(FB_EIMAGE, "resize gave %dx%d instead of %llux%llu", (*cur)->Xsize,
                         (*cur)->Ysize, (unsigned long long)tw, (unsigned long long)th);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */

/* What the output carries besides pixels; pointers borrow from the image. */
typedef struct meta_chunks {
    const uint8_t *icc, *exif, *xmp;
    size_t icc_len, exif_len, xmp_len;
    uint8_t *exif_copy; /* fb__malloc'ed when the orientation had to be reset */
    uint8_t *owned;     /* fb__malloc'ed by meta_chunks_own: all three chunks */
} meta_chunks;

static void meta_chunks_free(meta_chunks *m)
{
    fb__free(m->exif_copy);
    fb__free(m->owned);
    memset(m, 0, sizeof *m);
}

/*
 * Copies the chunks into one buffer of m's own, so that the image they were
 * borrowed from (and the decoder behind it) can be released before the
 * encode. The chunks are small (EXIF, XMP, ICC: kilobytes).
 */
static int meta_chunks_own(meta_chunks *m)
{
    const uint8_t **ptr[] = {&m->icc, &m->exif, &m->xmp};
    size_t *len[] = {&m->icc_len, &m->exif_len, &m->xmp_len};
    size_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        if (*ptr[i] != NULL) {
            if (*len[i] > SIZE_MAX - total) {
                return fb__error(FB_ENOMEM, "metadata chunks too large to copy");
            }
            total += *len[i];
        }
    }
    if (total == 0) {
        return 0;
    }
    uint8_t *buf = fb__malloc(total);
    if (buf == NULL) {
        return fb__error(FB_ENOMEM, "out of memory copying %zu bytes of metadata", total);
    }
    size_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        if (*ptr[i] != NULL) {
            memcpy(buf + off, *ptr[i], *len[i]);
            *ptr[i] = buf + off;
            off += *len[i];
        }
    }
    fb__free(m->exif_copy);
    m->exif_copy = NULL;
    fb__free(m->owned);
    m->owned = buf;
    return 0;
}

/*
 * Sets the Orientation tag (0x0112) in IFD0 of a TIFF-structured EXIF block
 * to 1, because the pixels have been turned upright. Bounds-checked; an
 * unparsable block is left as it is (the pixels are upright regardless).
 */
static void exif_reset_orientation(uint8_t *p, size_t n)
{
    if (n < 8) {
        return;
    }
    int big;
    if (memcmp(p, "II*\0", 4) == 0) {
        big = 0;
    } else if (memcmp(p, "MM\0*", 4) == 0) {
        big = 1;
    } else {
        return;
    }
    uint32_t ifd = rd32(p + 4, big);
    if (ifd > n || n - ifd < 2) {
        return;
    }
    uint16_t count = rd16(p + ifd, big);
    if ((size_t)count * 12 > n - ifd - 2) {
        return;
    }
    for (uint16_t i = 0; i < count; i++) {
        uint8_t *e = p + ifd + 2 + 12 * (size_t)i;
        if (rd16(e, big) == 0x0112 && rd16(e + 2, big) == 3 && rd32(e + 4, big) == 1) {
            e[8] = big ? 0 : 1;
            e[9] = big ? 1 : 0;
            return;
        }
    }
}

static const uint8_t *blob_of(VipsImage *im, const char *name, size_t *len)
{
    const void *p = NULL;
    *len = 0;
    if (vips_image_get_typeof(im, name) == 0 || vips_image_get_blob(im, name, &p, len) != 0) {
        vips_error_clear();
        *len = 0;
        return NULL;
    }
    return *len > 0 ? p : NULL;
}

/*
 * Collects the chunks the output keeps: EXIF and XMP only with
 * keep_metadata (EXIF with its orientation reset when the pixels were
 * rotated), the ICC profile only when it was kept rather than converted.
 */
static int collect_meta(VipsImage *src, const fb_image_opts *o, int keep_profile, int rotated,
                        meta_chunks *m)
{
    memset(m, 0, sizeof *m);
    if (keep_profile) {
        m->icc = blob_of(src, VIPS_META_ICC_NAME, &m->icc_len);
    }
    if (!o->keep_metadata) {
        return 0;
    }
    m->xmp = blob_of(src, VIPS_META_XMP_NAME, &m->xmp_len);
    const uint8_t *exif = blob_of(src, VIPS_META_EXIF_NAME, &m->exif_len);
    /* libvips keeps the JPEG APP1 prefix; the WebP chunk starts at the TIFF
     * header. */
    if (exif != NULL && m->exif_len >= 6 && memcmp(exif, "Exif\0\0", 6) == 0) {
        exif += 6;
        m->exif_len -= 6;
    }
    if (exif != NULL && m->exif_len > 0 && rotated) {
        m->exif_copy = fb__malloc(m->exif_len);
        if (m->exif_copy == NULL) {
            return fb__error(FB_ENOMEM, "out of memory copying %zu bytes of EXIF", m->exif_len);
        }
        memcpy(m->exif_copy, exif, m->exif_len);
        exif_reset_orientation(m->exif_copy, m->exif_len);
        exif = m->exif_copy;
    }
    m->exif = m->exif_len > 0 ? exif : NULL;
    return 0;
}

/* Copies libwebp-owned bytes into an fb__malloc'ed result. */
static int take_webp_data(WebPData *d, fb_image_result *out)
{
    uint8_t *p = fb__malloc(d->size);
    if (p == NULL) {
        WebPDataClear(d);
        return fb__error(FB_ENOMEM, "out of memory for %zu bytes of WebP", d->size);
    }
    memcpy(p, d->bytes, d->size);
    out->webp = p;
    out->len = d->size;
    WebPDataClear(d);
    return 0;
}

/*
 * Rewrites a WebP file with the chunks of m (replacing any it has) and,
 * when drop_others, without the ICC/EXIF/XMP chunks m does not carry.
 * The image bitstream is not touched.
 */
static int mux_chunks(const uint8_t *webp, size_t len, const meta_chunks *m, fb_image_result *out)
{
    WebPData in = {webp, len}, asm_out = {NULL, 0};
    int rc = 0;
    WebPMux *mux = WebPMuxCreate(&in, 0);
    if (mux == NULL) {
        return fb__error(FB_EIMAGE, "libwebp cannot parse the WebP container");
    }
    struct {
        const char *id;
        const uint8_t *p;
        size_t n;
    } chunks[] = {
        {"ICCP", m->icc, m->icc_len}, {"EXIF", m->exif, m->exif_len}, {"XMP ", m->xmp, m->xmp_len}};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        WebPMuxError e = WebPMuxDeleteChunk(mux, chunks[i].id);
        if (e != WEBP_MUX_OK && e != WEBP_MUX_NOT_FOUND) {
            rc = fb__error(FB_EIMAGE, "libwebp cannot remove the %s chunk (error %d)", chunks[i].id,
                           (int)e);
            goto out;
        }
        if (chunks[i].p != NULL) {
            WebPData c = {chunks[i].p, chunks[i].n};
            e = WebPMuxSetChunk(mux, chunks[i].id, &c, 1);
            if (e != WEBP_MUX_OK) {
                rc = fb__error(e == WEBP_MUX_MEMORY_ERROR ? FB_ENOMEM : FB_EIMAGE,
                               "libwebp cannot add the %s chunk (error %d)", chunks[i].id, (int)e);
                goto out;
            }
        }
    }
    WebPMuxError e = WebPMuxAssemble(mux, &asm_out);
    if (e != WEBP_MUX_OK) {
        rc = fb__error(e == WEBP_MUX_MEMORY_ERROR ? FB_ENOMEM : FB_EIMAGE,
                       "libwebp cannot assemble the WebP file (error %d)", (int)e);
        goto out;
    }
    rc = take_webp_data(&asm_out, out);
out:
    WebPMuxDelete(mux);
    return rc;
}

static int has_chunks(const meta_chunks *m)
{
    return m->icc != NULL || m->exif != NULL || m->xmp != NULL;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */

static int webp_config(const fb_image_opts *o, WebPConfig *cfg)
{
    /* WebPConfigInit gives cwebp's and Pillow's defaults; only quality,
     * method and lossless are changed, as `cwebp -q Q -m M` does. */
    if (!WebPConfigInit(cfg)) {
        return fb__error(FB_EIMAGE, "libwebp version mismatch");
    }
    cfg->quality = (float)o->quality;
    cfg->method = o->effort;
    cfg->lossless = o->lossless ? 1 : 0;
    if (!WebPValidateConfig(cfg)) {
        return fb__error(FB_EINVAL, "invalid WebP settings: quality %d, effort %d", o->quality,
                         o->effort);
    }
    return 0;
}

static int picture_error(const WebPPicture *pic, const char *what)
{
    static const char *const names[] = {
        "ok",
        "out of memory",
        "out of memory flushing bits",
        "null parameter",
        "invalid configuration",
        "bad dimension",
        "partition0 overflow",
        "partition overflow",
        "bad write",
        "file too big",
        "user abort",
    };
    int e = pic->error_code;
    const char *name =
        e >= 0 && (size_t)e < sizeof names / sizeof names[0] ? names[e] : "unknown error";
    int code = (e == VP8_ENC_ERROR_OUT_OF_MEMORY || e == VP8_ENC_ERROR_BITSTREAM_OUT_OF_MEMORY)
                   ? FB_ENOMEM
                   : FB_EIMAGE;
    return fb__error(code, "libwebp %s: %s", what, name);
}

/* Output sink of WebPEncode: grows an fb__malloc'ed buffer. */
typedef struct out_buf {
    uint8_t *p;
    size_t len, cap;
    int oom; /* libwebp only sees "bad write"; this says it was memory */
} out_buf;

static int out_buf_write(const uint8_t *data, size_t size, const WebPPicture *pic)
{
    out_buf *o = pic->custom_ptr;
    if (size > SIZE_MAX - o->len) {
        return 0;
    }
    size_t need = o->len + size;
    if (FB__GROW_ARRAY(&o->p, &o->cap, need, 4096) != 0) {
        o->oom = 1;
        return 0;
    }
    memcpy(o->p + o->len, data, size);
    o->len = need;
    return 1;
}

/* Strip sink for the lossy path: converts one strip to YUV(A) with libwebp's
 * own importer and copies the planes into the whole picture. Because strips
 * start on even rows, each 2x2 chroma block lies in one strip and the result
 * is what importing the whole image at once would give. */
typedef struct yuv_fill {
    WebPPicture *pic;
    int bands;
} yuv_fill;

static int fill_yuv(void *ctx, const uint8_t *rows, size_t stride, int y, int n)
{
    yuv_fill *f = ctx;
    WebPPicture *pic = f->pic, tmp;
    if (!WebPPictureInit(&tmp)) {
        return fb__error(FB_EIMAGE, "libwebp version mismatch");
    }
    tmp.width = pic->width;
    tmp.height = n;
    int ok = f->bands == 4 ? WebPPictureImportRGBA(&tmp, rows, (int)stride)
                           : WebPPictureImportRGB(&tmp, rows, (int)stride);
    if (!ok) {
        int rc = picture_error(&tmp, "cannot import pixels");
        WebPPictureFree(&tmp);
        return rc;
    }
    int w = pic->width, uvw = (w + 1) / 2;
    for (int r = 0; r < n; r++) {
        memcpy(pic->y + (size_t)(y + r) * pic->y_stride, tmp.y + (size_t)r * tmp.y_stride,
               (size_t)w);
        if (pic->a != NULL) {
            uint8_t *dst = pic->a + (size_t)(y + r) * pic->a_stride;
            if (tmp.a != NULL) {
                memcpy(dst, tmp.a + (size_t)r * tmp.a_stride, (size_t)w);
            } else {
                memset(dst, 0xff, (size_t)w);
            }
        }
    }
    for (int r = 0; r < (n + 1) / 2; r++) {
        size_t d = (size_t)(y / 2 + r) * pic->uv_stride, s = (size_t)r * tmp.uv_stride;
        memcpy(pic->u + d, tmp.u + s, (size_t)uvw);
        memcpy(pic->v + d, tmp.v + s, (size_t)uvw);
    }
    WebPPictureFree(&tmp);
    return 0;
}

/* Strip sink for ARGB pictures (lossless and animation frames). */
typedef struct argb_fill {
    WebPPicture *pic;
    int bands;
} argb_fill;

static int fill_argb(void *ctx, const uint8_t *rows, size_t stride, int y, int n)
{
    argb_fill *f = ctx;
    WebPPicture *pic = f->pic;
    for (int r = 0; r < n; r++) {
        const uint8_t *s = rows + (size_t)r * stride;
        uint32_t *d = pic->argb + (size_t)(y + r) * pic->argb_stride;
        for (int x = 0; x < pic->width; x++, s += f->bands) {
            uint32_t a = f->bands == 4 ? s[3] : 0xffu;
            d[x] = a << 24 | (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
        }
    }
    return 0;
}

/* Decodes im into a fresh picture (YUV for lossy, ARGB otherwise). */
static int fill_picture(VipsImage *im, int use_argb, WebPPicture *pic)
{
    memset(pic, 0, sizeof *pic); /* safe to WebPPictureFree whatever happens */
    if (!WebPPictureInit(pic)) {
        return fb__error(FB_EIMAGE, "libwebp version mismatch");
    }
    pic->width = im->Xsize;
    pic->height = im->Ysize;
    pic->use_argb = use_argb;
    pic->colorspace = im->Bands == 4 ? WEBP_YUV420A : WEBP_YUV420;
    if (!WebPPictureAlloc(pic)) {
        return fb__error(FB_ENOMEM, "out of memory for a %dx%d picture", im->Xsize, im->Ysize);
    }
    if (use_argb) {
        argb_fill f = {pic, im->Bands};
        return pull_rows(im, fill_argb, &f);
    }
    yuv_fill f = {pic, im->Bands};
    return pull_rows(im, fill_yuv, &f);
}

/*
 * libwebp's lossy encoder at method 3 and above keeps every coefficient
 * token of the picture until the last macroblock is coded, then writes the
 * bitstream from them. Measured on the corpus's 32 full-size photos, that
 * buffer together with the bit writer and our output buffer comes to
 * 19-21.5 bytes per output byte, so for a very detailed photo it alone
 * breaks the budget of 4 bytes per pixel + 32 MiB a conversion may use
 * (SafeLanding, 14.7 MP and 4.2 MB of WebP, has 84 MB of tokens).
 * WebPConfig.low_memory drops the buffer for a statistics pass over the
 * picture first; the output is within 0.3% of the same size but the encode
 * takes 1.5x as long, so it is chosen only when an estimate of the output
 * size says the budget would break.
 *
 * The estimate is a method-0 encode of every 32nd macroblock row, scaled
 * by the rows left out: 0.7% of the encode time. On those photos it is
 * above the method-4 size by 1.07-1.16x for detailed images (and more for
 * smooth ones, which are far from the budget anyway), hence the
 * correction. With 20 bytes per output byte the predicted peak of the two
 * photos nearest the budget is within 4% of the measured one (Elephants
 * 97.0 MiB predicted, 95.8 measured, budget 100.2; SafeLanding 103.3
 * against 107.7, budget 88.2); a picture within that error of the budget
 * may end on either side of it.
 */
#define MEM_BUDGET_PER_PIXEL 4.0
#define MEM_BUDGET_BASE (32.0 * 1024 * 1024)
#define TOKEN_BYTES_PER_OUTPUT_BYTE 20.0
#define SAMPLE_EVERY_MB_ROWS 32
#define SAMPLE_MIN_BANDS 8
#define SAMPLE_OVERESTIMATE 1.12

static int count_bytes(const uint8_t *data, size_t size, const WebPPicture *pic)
{
    (void)data;
    *(size_t *)pic->custom_ptr += size;
    return 1;
}

/* An upper bound of the output size per pixel at a quality: random RGB
 * noise, the costliest content, coded at method 4 (methods 3-6 give the
 * same within 0.3%), in bits per pixel at quality 0, 10, ..., 100, plus
 * 10%. Below it no picture can break the budget, so none is sampled. */
static double worst_output_per_pixel(float quality)
{
    static const double noise_bpp[] = {0.54, 2.45, 3.04, 3.61, 3.91, 4.23,
                                       4.50, 4.80, 5.48, 6.69, 8.89};
    double q = quality < 0 ? 0 : quality > 100 ? 100 : quality;
    int i = q >= 100 ? 9 : (int)(q / 10);
    double t = (q - i * 10) / 10;
    double bpp = noise_bpp[i] + t * (noise_bpp[i + 1] - noise_bpp[i]);
    return 1.1 * bpp / 8;
}

static double picture_bytes(const WebPPicture *pic)
{
    double px = (double)pic->width * pic->height;
    double uv = 2.0 * ((pic->width + 1) / 2) * ((pic->height + 1) / 2);
    return px + uv + (pic->a != NULL ? px : 0);
}

/* Copies every step-th 16-row band of pic's Y, U and V planes (no alpha:
 * it is coded apart, without tokens) into sample. Returns the band count. */
static int sample_bands(const WebPPicture *pic, int step, WebPPicture *sample)
{
    int bands = 0, uvw = (pic->width + 1) / 2;
    for (int y = (step / 2) * 16; y + 16 <= pic->height; y += step * 16) {
        bands++;
    }
    if (bands == 0 || !WebPPictureInit(sample)) {
        return 0;
    }
    sample->width = pic->width;
    sample->height = bands * 16;
    if (!WebPPictureAlloc(sample)) {
        return 0;
    }
    int b = 0;
    for (int y = (step / 2) * 16; y + 16 <= pic->height; y += step * 16, b++) {
        for (int r = 0; r < 16; r++) {
            memcpy(sample->y + (size_t)(b * 16 + r) * sample->y_stride,
                   pic->y + (size_t)(y + r) * pic->y_stride, (size_t)pic->width);
        }
        for (int r = 0; r < 8; r++) {
            size_t d = (size_t)(b * 8 + r) * sample->uv_stride;
            size_t s = (size_t)(y / 2 + r) * pic->uv_stride;
            memcpy(sample->u + d, pic->u + s, (size_t)uvw);
            memcpy(sample->v + d, pic->v + s, (size_t)uvw);
        }
    }
    return bands;
}

/* Whether encoding pic with cfg needs WebPConfig.low_memory to stay within
 * the memory budget (see above). */
static int needs_low_memory(const WebPConfig *cfg, const WebPPicture *pic)
{
    if (cfg->lossless || cfg->method < 3 || pic->use_argb) {
        return 0; /* no token buffer */
    }
    double px = (double)pic->width * pic->height;
    double budget = MEM_BUDGET_PER_PIXEL * px + MEM_BUDGET_BASE;
    double base = picture_bytes(pic);
    if (base + TOKEN_BYTES_PER_OUTPUT_BYTE * worst_output_per_pixel(cfg->quality) * px <= budget) {
        return 0; /* small enough that no content can break the budget */
    }
    int mb_rows = (pic->height + 15) / 16;
    int step = mb_rows / SAMPLE_MIN_BANDS;
    step = step < 1 ? 1 : step > SAMPLE_EVERY_MB_ROWS ? SAMPLE_EVERY_MB_ROWS : step;
    WebPPicture sample;
    memset(&sample, 0, sizeof sample);
    int bands = sample_bands(pic, step, &sample);
    WebPConfig fast = *cfg;
    fast.method = 0;
    size_t bytes = 0;
    sample.writer = count_bytes;
    sample.custom_ptr = &bytes;
    int ok = bands > 0 && WebPEncode(&fast, &sample);
    WebPPictureFree(&sample);
    if (!ok) {
        return 0; /* no estimate: the real encode reports any real problem */
    }
    double out = (double)bytes * pic->height / (bands * 16.0) / SAMPLE_OVERESTIMATE;
    return base + TOKEN_BYTES_PER_OUTPUT_BYTE * out > budget;
}

/*
 * Encodes a still image. Takes the caller's reference to *im and drops it as
 * soon as the picture is filled: the decoder behind it (a progressive
 * JPEG's whole-image coefficient buffer, 3-6 bytes per pixel, and libvips'
 * strip buffers) is then freed before libwebp's token buffer grows, so the
 * two peaks never add up. *im is NULL on return.
 */
static int encode_still(VipsImage **im, const fb_image_opts *o, fb_image_result *out)
{
    WebPConfig cfg;
    WebPPicture pic;
    out_buf ob = {NULL, 0, 0, 0};
    int rc = webp_config(o, &cfg);
    if (rc != 0) {
        g_object_unref(*im);
        *im = NULL;
        return rc;
    }
    rc = fill_picture(*im, cfg.lossless, &pic);
    g_object_unref(*im);
    *im = NULL;
    if (rc != 0) {
        goto out;
    }
    cfg.low_memory = needs_low_memory(&cfg, &pic);
    pic.writer = out_buf_write;
    pic.custom_ptr = &ob;
    if (!WebPEncode(&cfg, &pic)) {
        rc = ob.oom ? fb__error(FB_ENOMEM, "libwebp cannot encode: out of memory for the output")
                    : picture_error(&pic, "cannot encode");
        goto out;
    }
    out->webp = ob.p;
    out->len = ob.len;
    ob.p = NULL;
out:
    WebPPictureFree(&pic);
    fb__free(ob.p);
    return rc;
}

/* Frame delays in ms from libvips' "delay" array (100 ms where missing). */
static int frame_delay(VipsImage *im, int i)
{
    int *delays = NULL, n = 0;
    if (vips_image_get_typeof(im, "delay") != 0 &&
        vips_image_get_array_int(im, "delay", &delays, &n) == 0 && i < n) {
        return delays[i] < 0 ? 0 : delays[i];
    }
    vips_error_clear();
    return 100;
}

/*
 * Encodes a stack of frames (page_h rows each) as an animated WebP keeping
 * every frame, its delay and the loop count. Each frame is resized on its
 * own so that scaling never blends neighbouring frames.
 */
static int encode_anim(VipsImage *strip, int page_h, int frames, uint64_t tw, uint64_t th,
                       const fb_image_opts *o, fb_image_result *out)
{
    WebPConfig cfg;
    WebPAnimEncoderOptions ao;
    WebPData data = {NULL, 0};
    WebPAnimEncoder *enc = NULL;
    int rc = webp_config(o, &cfg);
    if (rc != 0) {
        return rc;
    }
    if (!WebPAnimEncoderOptionsInit(&ao)) {
        return fb__error(FB_EIMAGE, "libwebp version mismatch");
    }
    int loop = 0;
    if (vips_image_get_typeof(strip, "loop") != 0 && vips_image_get_int(strip, "loop", &loop)) {
        vips_error_clear();
        loop = 0;
    }
    ao.anim_params.loop_count = loop < 0 ? 0 : loop;
    enc = WebPAnimEncoderNew((int)tw, (int)th, &ao);
    if (enc == NULL) {
        return fb__error(FB_ENOMEM, "libwebp cannot create an animation encoder");
    }
    int timestamp = 0;
    for (int i = 0; i < frames; i++) {
        VipsImage *frame = NULL;
        WebPPicture pic;
        if (vips_extract_area(strip, &frame, 0, i * page_h, strip->Xsize, page_h, NULL) != 0) {
            rc = vips_fail(FB_EIMAGE, "cannot extract a frame");
            goto out;
        }
        rc = resize_to(&frame, tw, th);
        if (rc == 0) {
            rc = fill_picture(frame, 1, &pic);
            if (rc == 0 && !WebPAnimEncoderAdd(enc, &pic, timestamp, &cfg)) {
                rc = fb__error(FB_EIMAGE, "libwebp cannot add frame %d: %s", i,
                               WebPAnimEncoderGetError(enc));
            }
            WebPPictureFree(&pic);
        }
        g_object_unref(frame);
        if (rc != 0) {
            goto out;
        }
        int d = frame_delay(strip, i);
        if (timestamp > INT32_MAX - d) {
            rc = fb__error(FB_ELIMIT, "animation longer than %d ms", INT32_MAX);
            goto out;
        }
        timestamp += d;
    }
    if (!WebPAnimEncoderAdd(enc, NULL, timestamp, NULL) || !WebPAnimEncoderAssemble(enc, &data)) {
        rc = fb__error(FB_EIMAGE, "libwebp cannot finish the animation: %s",
                       WebPAnimEncoderGetError(enc));
        goto out;
    }
    rc = take_webp_data(&data, out);
out:
    WebPDataClear(&data);
    WebPAnimEncoderDelete(enc);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The pipeline                                                              */

/* The largest JPEG shrink-on-load factor that keeps both sides at least as
 * large as the target, so that the final resize only ever reduces. */
static int jpeg_shrink_for(uint64_t w, uint64_t h, uint64_t tw, uint64_t th)
{
    int s = 8;
    while (s > 1 && (w / (uint64_t)s < tw || h / (uint64_t)s < th)) {
        s /= 2;
    }
    return s;
}

/*
 * A WebP that decoded cleanly and needs no pixel change keeps its
 * bitstream; only the metadata chunks the policy drops are removed.
 */
static int webp_passthrough(const uint8_t *data, size_t len, VipsImage *head,
                            const fb_image_opts *o, fb_image_result *out)
{
    meta_chunks m;
    const uint8_t *icc = NULL;
    size_t icc_len = 0;
    int rc = collect_meta(head, o, 0, 0, &m);
    if (rc != 0) {
        return rc;
    }
    icc = blob_of(head, VIPS_META_ICC_NAME, &icc_len);
    if (icc != NULL && o->keep_icc) {
        m.icc = icc;
        m.icc_len = icc_len;
    }
    WebPData in = {data, len};
    WebPMux *mux = WebPMuxCreate(&in, 0);
    uint32_t flags = 0;
    if (mux == NULL || WebPMuxGetFeatures(mux, &flags) != WEBP_MUX_OK) {
        rc = fb__error(FB_EIMAGE, "libwebp cannot parse the WebP container");
        goto out;
    }
    int dirty = (flags & EXIF_FLAG && m.exif == NULL) || (flags & XMP_FLAG && m.xmp == NULL) ||
                (flags & ICCP_FLAG && m.icc == NULL);
    if (!dirty) {
        out->webp = fb__malloc(len);
        if (out->webp == NULL) {
            rc = fb__error(FB_ENOMEM, "out of memory for %zu bytes", len);
            goto out;
        }
        memcpy(out->webp, data, len);
        out->len = len;
    } else {
        rc = mux_chunks(data, len, &m, out);
    }
out:
    WebPMuxDelete(mux);
    meta_chunks_free(&m);
    return rc;
}

static int convert(const uint8_t *data, size_t len, const fb_image_opts *o, fb_image_result *out)
{
    fb_image_format fmt = fb__image_sniff(data, len);
    current_format = fb__image_format_name(fmt);
    VipsImage *head = NULL, *im = NULL;
    meta_chunks meta = {0};
    fb_image_result enc = {0};
    uint8_t *seq = NULL; /* a large progressive JPEG, rewritten as sequential */
    size_t seq_len = 0;
    int rc;
    out->input = fmt;
    if (len > o->max_input_bytes) {
        return fb__error(FB_ELIMIT, "input of %zu bytes is larger than the limit of %llu bytes",
                         len, (unsigned long long)o->max_input_bytes);
    }
    if (fmt == FB_FMT_UNKNOWN) {
        return fb__error(FB_EUNSUPPORTED,
                         len == 0 ? "unsupported image type: empty input"
                                  : "unsupported image type: not JPEG, PNG, GIF, WebP, TIFF, "
                                    "BMP, HEIF or AVIF");
    }
    if (o->quality < 0 || o->quality > 100 || o->effort < 0 || o->effort > 6) {
        return fb__error(FB_EINVAL, "quality must be 0..100 and effort 0..6 (got %d and %d)",
                         o->quality, o->effort);
    }
    if (fmt == FB_FMT_BMP) {
        uint64_t bw = 0, bh = 0;
        rc = bmp_dimensions(data, len, &bw, &bh);
        if (rc == 0) {
            rc = check_limits(fmt, bw, bh, 1, o);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (fmt == FB_FMT_GIF) {
        rc = gif_check_trailer(data, len);
        if (rc != 0) {
            return rc;
        }
    }
    rc = ensure_vips();
    if (rc != 0) {
        return rc;
    }

    /* 1. The header: size, frames, orientation. */
    load_req req = {fmt, data, len, 0, 0, 1};
    rc = load_image(&req, &head);
    if (rc != 0) {
        goto out;
    }
    uint64_t w = (uint64_t)head->Xsize, h = (uint64_t)head->Ysize;
    int pages = vips_image_get_n_pages(head);
    int animated = (fmt == FB_FMT_GIF || fmt == FB_FMT_WEBP) && pages > 1;
    uint64_t frames = animated ? (uint64_t)pages : 1;
    rc = check_limits(fmt, w, h, frames, o);
    if (rc != 0) {
        goto out;
    }
    int orientation = animated ? 1 : vips_image_get_orientation(head);
    uint64_t tw, th;
    target_size(w, h, o->max_dimension, &tw, &th);

    /* 2. A clean WebP that needs no change keeps its bitstream. */
    if (fmt == FB_FMT_WEBP && o->webp_passthrough && orientation <= 1 && tw == w && th == h) {
        const uint8_t *icc;
        size_t icc_len;
        icc = blob_of(head, VIPS_META_ICC_NAME, &icc_len);
        if (icc == NULL || o->keep_icc || icc_is_srgb(icc, icc_len)) {
            req.all_frames = animated;
            rc = load_image(&req, &im);
            if (rc == 0) {
                rc = pull_rows(im, NULL, NULL); /* decode everything once: must be clean */
            }
            if (rc == 0) {
                rc = webp_passthrough(data, len, head, o, out);
            }
            if (rc == 0) {
                out->width = (uint32_t)w;
                out->height = (uint32_t)h;
                out->frames = (uint32_t)frames;
                out->passthrough = 1;
            }
            goto out;
        }
    }

    /* 3. Pixels: reload with the right access pattern (rotation needs random
     * access) and, for JPEG, shrink-on-load in the DCT domain. A large
     * progressive JPEG decoded at full size is decoded from a sequential
     * copy, so that its coefficients and the WebP picture are never in
     * memory together. (Shrunk on load, the picture is a quarter or less
     * of the coefficients' size: the copy would save little and cost a
     * larger share of the time.) */
    req.all_frames = animated;
    req.random_access = orientation > 2 || animated;
    if (fmt == FB_FMT_JPEG && (tw != w || th != h)) {
        req.jpeg_shrink = jpeg_shrink_for(w, h, tw, th); /* in stored orientation */
    }
    if (fmt == FB_FMT_JPEG && req.jpeg_shrink == 1) {
        rc = fb__jpeg_sequential(data, len, FB__JPEG_SEQ_MIN_BYTES, &seq, &seq_len);
        if (rc != 0) {
            goto out;
        }
        if (seq != NULL) {
            req.data = seq;
            req.len = seq_len;
        }
    }
    if (seq == NULL && !req.all_frames && !req.random_access && req.jpeg_shrink == 1) {
        /* The common case (upright, not animated, no downscale): the header
         * load already is the pixel load. A second one would cost another
         * decoder (7 MB for a 9 MP progressive JPEG) and parse again. */
        g_object_ref(head);
        im = head;
    } else {
        rc = load_image(&req, &im);
        if (rc != 0) {
            goto out;
        }
        if (seq != NULL) {
            /* libvips reads the copy in place: it goes when the image does,
             * which encode_still drops before libwebp's buffers grow. */
            g_object_set_data_full(G_OBJECT(im), "fastblocks-sequential-jpeg", seq, fb__free);
            seq = NULL;
        }
    }
    int rotated = 0;
    if (orientation > 1) {
        VipsImage *t = NULL;
        if (vips_autorot(im, &t, NULL) != 0) {
            rc = vips_fail(FB_EIMAGE, "cannot apply the EXIF orientation");
            goto out;
        }
        replace_image(&im, t);
        rotated = 1;
    }
    int keep_profile = 0;
    rc = to_srgb8(&im, o, &keep_profile);
    if (rc == 0) {
        rc = collect_meta(head, o, keep_profile, rotated, &meta);
    }
    if (rc == 0) {
        rc = meta_chunks_own(&meta);
    }
    if (rc != 0) {
        goto out;
    }
    /* From here on only the pixel pipeline holds the decoder, so that
     * encode_still can free it before libwebp's buffers grow. */
    g_object_unref(head);
    head = NULL;

    /* 4. Encode. Orientations 5..8 swap the sides: the target follows the
     * upright image. */
    if (orientation >= 5) {
        target_size(h, w, o->max_dimension, &tw, &th);
    }
    if (animated) {
        int page_h = vips_image_get_page_height(im);
        if (page_h <= 0 || (int64_t)page_h * pages != im->Ysize) {
            rc = fb__error(FB_EIMAGE, "%s: frame height %d does not divide %d rows",
                           fb__image_format_name(fmt), page_h, im->Ysize);
            goto out;
        }
        rc = encode_anim(im, page_h, pages, tw, th, o, &enc);
    } else {
        rc = resize_to(&im, tw, th);
        if (rc == 0) {
            rc = encode_still(&im, o, &enc);
        }
    }
    if (rc != 0) {
        goto out;
    }
    if (has_chunks(&meta)) {
        rc = mux_chunks(enc.webp, enc.len, &meta, out);
        if (rc != 0) {
            goto out;
        }
    } else {
        out->webp = enc.webp;
        out->len = enc.len;
        enc.webp = NULL;
    }
    out->width = (uint32_t)tw;
    out->height = (uint32_t)th;
    out->frames = (uint32_t)frames;
out:
    fb__free(enc.webp);
    meta_chunks_free(&meta);
    if (im != NULL) {
        g_object_unref(im);
    }
    if (head != NULL) {
        g_object_unref(head);
    }
    fb__free(seq); /* not handed to an image: load_image failed */
    return rc;
}

/*
 * Converts an image to WebP under opts (NULL: defaults). See image.h for
 * the error codes. On success out->webp is fb__malloc'ed; on error *out is
 * zeroed (except out->input) and nothing is allocated. Thread-safe.
 */
int fb__image_to_webp(const void *data, size_t len, const fb_image_opts *opts, fb_image_result *out)
{
    fb_image_opts defaults;
    if (out == NULL || (data == NULL && len > 0)) {
        return fb__error(FB_EINVAL, "fb__image_to_webp: NULL argument");
    }
    memset(out, 0, sizeof *out);
    if (opts == NULL) {
        fb_image_opts_init(&defaults);
        opts = &defaults;
    }
    int rc = convert(data, len, opts, out);
    if (rc != 0) {
        fb_image_format fmt = out->input;
        fb__free(out->webp);
        memset(out, 0, sizeof *out);
        out->input = fmt;
    }
    return rc;
}

/* Releases the WebP of a result and zeroes it; NULL is fine. */
void fb__image_result_free(fb_image_result *r)
{
    if (r != NULL) {
        fb__free(r->webp);
        memset(r, 0, sizeof *r);
    }
}

/*
 * Public: converts without storing. *webp is released with fb_free();
 * width, height and frames may be NULL.
 */
int fb_convert(const void *data, size_t len, const fb_image_opts *opts, uint8_t **webp,
               size_t *webp_len, uint32_t *width, uint32_t *height, uint32_t *frames)
{
    fb_image_result r;
    if (webp == NULL || webp_len == NULL) {
        return fb__error(FB_EINVAL, "fb_convert: NULL output argument");
    }
    *webp = NULL;
    *webp_len = 0;
    int rc = fb__image_to_webp(data, len, opts, &r);
    if (rc != 0) {
        return rc;
    }
    *webp = r.webp;
    *webp_len = r.len;
    if (width != NULL) {
        *width = r.width;
    }
    if (height != NULL) {
        *height = r.height;
    }
    if (frames != NULL) {
        *frames = r.frames;
    }
    return 0;
}
