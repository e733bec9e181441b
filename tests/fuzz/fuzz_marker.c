/* Fuzz target: the small fixed files of a data directory: the marker, a
 * block header and the compaction journal. Each parser must accept or
 * reject without reading past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastblocks.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t id[FB__STORE_ID_LEN];
    int rc = fb__marker_decode(data, size, id);
    if (rc != 0 && rc != FB_ECORRUPT && rc != FB_EVERSION) {
        abort();
    }
    if (rc == 0) {
        uint8_t again[FB__MARKER_SIZE];
        fb__marker_encode(again, id, 0);
        if (memcmp(again + 16, data + 16, 16) != 0) {
            abort();
        }
    }
    static const uint8_t sid[FB__STORE_ID_LEN];
    rc = fb__block_hdr_decode(data, size, 1, size >= 32 ? data + 16 : sid, "fuzz");
    if (rc != 0 && rc != FB_ECORRUPT && rc != FB_EVERSION) {
        abort();
    }
    uint32_t block = 0;
    rc = fb__journal_decode(data, size, &block);
    if (rc == 0 && (block == 0 || block > FB__MAX_BLOCK_NUM)) {
        abort();
    }
    return 0;
}
