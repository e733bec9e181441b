/*
 * Fuzz target: the whole ingest path (sniffing, header limits, libvips
 * decoding, EXIF/ICC handling, WebP encoding and muxing) on arbitrary bytes.
 * Any input must give either a valid WebP or one of the documented errors
 * with a detail; small limits keep each run fast and bounded in memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_image_opts o;
    fb_image_opts_init(&o);
    o.max_pixels = 1u << 20; /* 1 MP over all frames */
    o.max_frames = 64;
    o.max_input_bytes = 1u << 20;
    o.effort = 0;
    /* The last byte varies the options so every path is reached (the first
     * bytes are the magic). */
    if (size > 0) {
        o.lossless = data[size - 1] & 1;
        o.keep_metadata = (data[size - 1] >> 1) & 1;
        o.keep_icc = (data[size - 1] >> 2) & 1;
        o.webp_passthrough = (data[size - 1] >> 3) & 1;
        o.max_dimension = (data[size - 1] >> 4) & 1 ? 32 : 0;
    }
    fb_image_result r;
    int rc = fb__image_to_webp(data, size, &o, &r);
    if (rc == 0) {
        int w, h;
        if (!WebPGetInfo(r.webp, r.len, &w, &h) || (uint32_t)w != r.width ||
            (uint32_t)h != r.height) {
            abort();
        }
    } else if (rc != FB_EIMAGE && rc != FB_ELIMIT && rc != FB_EUNSUPPORTED && rc != FB_ENOMEM) {
        abort();
    } else if (r.webp != NULL || fb_last_error()[0] == '\0') {
        abort();
    }
    fb__image_result_free(&r);
    return 0;
}
