/*
 * Fuzz target: the Range header parser of the HTTP service, checked
 * against several representation lengths. A partial answer must lie inside
 * the representation: the server sends [first, last] of it without further
 * checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t lengths[] = {0, 1, 2, 100, 65536, UINT64_MAX / 2, UINT64_MAX};
    char text[1024];
    if (size >= sizeof text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        uint64_t first = 0, last = 0, len = lengths[i];
        int r = fb__http_parse_range(text, len, &first, &last);
        if (r == FB_RANGE_PARTIAL && (len == 0 || first > last || last >= len)) {
            abort();
        }
        if (r < FB_RANGE_INVALID || r > FB_RANGE_UNSATISFIABLE) {
            abort();
        }
    }
    return 0;
}
