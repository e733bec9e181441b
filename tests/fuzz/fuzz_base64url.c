/* Fuzz target: base64url decoding (Fernet keys and tokens). Decoded bytes
 * must re-encode to the same text up to padding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) {
        return 0;
    }
    uint8_t out[4096];
    long n = fb__base64url_decode((const char *)data, size, out, sizeof out);
    if (n < 0) {
        return 0;
    }
    char text[4096 / 3 * 4 + 8];
    fb__base64url_encode(out, (size_t)n, text);
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '=') {
        len--;
    }
    size_t in_len = size;
    while (in_len > 0 && data[in_len - 1] == '=') {
        in_len--;
    }
    if (len != in_len || memcmp(text, data, len) != 0) {
        abort();
    }
    return 0;
}
