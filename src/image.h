/*
 * image - sniffing, decoding, orientation, metadata policy, limits and WebP
 * encoding of uploaded images. The only file that includes vips/vips.h and
 * libwebp headers.
 */
#ifndef FB_IMAGE_H
#define FB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "fastblocks.h"

/* Input formats recognised by their magic bytes. */
typedef enum fb_image_format {
    FB_FMT_UNKNOWN = 0,
    FB_FMT_JPEG,
    FB_FMT_PNG,
    FB_FMT_GIF,
    FB_FMT_WEBP,
    FB_FMT_TIFF,
    FB_FMT_BMP,
    FB_FMT_HEIF,
    FB_FMT_AVIF,
} fb_image_format;

/* Sniffs the format from the first bytes; never looks at names or types. */
fb_image_format fb__image_sniff(const void *data, size_t len);
/* "jpeg", "png", ...; "unknown" for FB_FMT_UNKNOWN. */
const char *fb__image_format_name(fb_image_format f);

typedef struct fb_image_result {
    uint8_t *webp; /* fb__malloc'ed; release with fb__image_result_free */
    size_t len;
    uint32_t width, height; /* of the output */
    uint32_t frames;        /* 1 for still images */
    int passthrough;        /* 1 if the input WebP was stored as is */
    fb_image_format input;
} fb_image_result;

/*
 * Converts an image to WebP according to opts (limits included).
 * Errors: FB_EUNSUPPORTED (unknown magic), FB_ELIMIT (over a limit, found
 * from the header before pixels are allocated), FB_EIMAGE (corrupt or
 * truncated; the detail carries the libvips/libwebp message), FB_ENOMEM.
 * Thread-safe; initialises libvips on first use.
 */
int fb__image_to_webp(const void *data, size_t len, const fb_image_opts *opts,
                      fb_image_result *out);
void fb__image_result_free(fb_image_result *r); /* NULL is fine */

#endif
