/*
 * jpeg_seq - rewrites a large progressive JPEG as a sequential one with the
 * same DCT coefficients, so that converting it needs far less memory.
 *
 * A progressive JPEG is decoded only when its last scan is in, so libjpeg
 * keeps every coefficient of the image (2 bytes per sample: 6 bytes per
 * pixel at 4:4:4, 4 at 4:2:2) until its last row is out, and by then the
 * WebP encoder holds the whole YUV picture (1.5 bytes per pixel) too.
 * Rewriting first holds only the coefficients (the copy goes to an unlinked
 * temporary file, not to memory); decoding the copy holds only the picture.
 * The rewrite is lossless (same coefficients and quantisation tables, so the
 * same pixels) and costs one Huffman encode and decode of the image, a few
 * percent of a conversion.
 */
#ifndef FB_JPEG_SEQ_H
#define FB_JPEG_SEQ_H

#include <stddef.h>
#include <stdint.h>

#include "fastblocks.h" /* FB_E* codes */

/* Below this much coefficient memory (a 2.8 MP 4:4:4 or 4.2 MP 4:2:0
 * image) the two copies fit the budget anyway; the rewrite is skipped. */
#define FB__JPEG_SEQ_MIN_BYTES ((uint64_t)16 << 20)

/* Above this much the rewrite is skipped: callers check the pixel limit
 * first (100 MP by default: 600 MB at 4:4:4), and this keeps a caller that
 * does not from asking libjpeg for gigabytes. */
#define FB__JPEG_SEQ_MAX_BYTES ((uint64_t)1 << 30)

/* The most scans a rewritten JPEG may have. Each scan is a pass over the
 * whole coefficient buffer; encoders write about 10, the most elaborate a
 * few hundred; more is a file built to burn CPU. */
#define FB__JPEG_MAX_SCANS 500

/*
 * If data is a progressive JPEG whose coefficients take at least min_bytes
 * (and at most FB__JPEG_SEQ_MAX_BYTES),
 * *out gets an fb__malloc'ed sequential copy of it and *out_len its length.
 * Every APPn and COM marker is copied (EXIF, ICC profile, XMP), except the
 * JFIF and Adobe markers that libjpeg writes itself. Otherwise *out is NULL:
 * not a progressive JPEG, a small one, one libjpeg rejects or warns about
 * (corrupt, truncated) or one with coefficients no sequential JPEG can code
 * (corrupt), which is left for the decoder to report, as is a failure to
 * write the temporary file ($TMPDIR, else /tmp).
 * Returns 0, or FB_ELIMIT (detail set) when the file has more than
 * FB__JPEG_MAX_SCANS scans.
 */
int fb__jpeg_sequential(const uint8_t *data, size_t len, uint64_t min_bytes, uint8_t **out,
                        size_t *out_len);

#endif
