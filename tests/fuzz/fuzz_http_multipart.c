/*
 * Fuzz target: multipart/form-data handling exactly as the server runs it
 * on an upload (src/http/routes.c locate_image): boundary from the
 * Content-Type, then the field "file" from the body. Input: the
 * Content-Type value, a newline, then the body. A found part must lie
 * inside the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char ct[512], boundary[FB_MULTIPART_BOUNDARY_MAX + 1];
    const uint8_t *nl = memchr(data, '\n', size);
    const uint8_t *body;
    size_t ctlen, blen;
    uint8_t *copy;
    fb__multipart_part part;
    if (nl == NULL || (size_t)(nl - data) >= sizeof ct) {
        return 0;
    }
    ctlen = (size_t)(nl - data);
    memcpy(ct, data, ctlen);
    ct[ctlen] = '\0';
    if (memchr(ct, '\0', ctlen) != NULL) {
        return 0; /* header values never contain NUL */
    }
    if (fb__multipart_boundary(ct, boundary) != 0) {
        return 0;
    }
    /* The server's body buffer is heap memory of exactly its length, so
     * ASan catches any read past it. */
    blen = size - ctlen - 1;
    copy = malloc(blen ? blen : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, nl + 1, blen);
    body = copy;
    if (fb__multipart_find(body, blen, boundary, "file", &part) == 0) {
        if (part.data < body || part.len > blen || (size_t)(part.data - body) > blen - part.len) {
            abort();
        }
    }
    free(copy);
    return 0;
}
