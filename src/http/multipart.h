/*
 * multipart - finds one field of a multipart/form-data body (RFC 7578), the
 * seed's upload format (POST /upload/ with the field "file").
 *
 * The server buffers a whole upload before converting it (the converter
 * needs all the bytes anyway), so the parser works on the complete body and
 * returns a slice of it: no copy of the image. It knows nothing of
 * libmicrohttpd, so the fuzz target drives exactly the code the server runs.
 */
#ifndef FB_HTTP_MULTIPART_H
#define FB_HTTP_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

/* The longest boundary RFC 2046 allows. */
#define FB_MULTIPART_BOUNDARY_MAX 70

/* 1 if a Content-Type value names multipart/form-data (any case, any
 * parameters), 0 otherwise (NULL included). */
int fb__multipart_is_form(const char *content_type);

/*
 * Copies the boundary parameter of a multipart/form-data Content-Type into
 * out[FB_MULTIPART_BOUNDARY_MAX + 1]. Returns 0, or FB_EINVAL with a detail
 * when it is missing or malformed.
 */
int fb__multipart_boundary(const char *content_type, char *out);

/* One part found in a body. data points into the body passed in. */
typedef struct fb__multipart_part {
    const uint8_t *data;
    size_t len;
    char content_type[128]; /* the part's Content-Type, "" if none (or too long) */
} fb__multipart_part;

/*
 * Finds the first part whose Content-Disposition is form-data with
 * name="field". Returns 0 with *out filled, or FB_EINVAL with a detail: a
 * body that does not follow the format (missing or unterminated boundary,
 * part headers over 8 KiB or without their blank line) or has no such
 * field.
 */
int fb__multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
                       fb__multipart_part *out);

#endif
