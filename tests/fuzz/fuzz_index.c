/* Fuzz target: index files. Input: 4 bytes of block number, 8 of block
 * length, then the file. Whatever decodes must describe records that lie
 * inside the block, in ascending order, and re-encode to the same file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util/alloc.h"
#include "util/endian.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12 || size > (1u << 20)) {
        return 0;
    }
    uint32_t number = fb__get_le32(data);
    uint64_t block_len = fb__get_le64(data + 4);
    data += 12;
    size -= 12;
    fb_idx_entry *e = NULL;
    uint64_t n = 0, end = 0;
    if (fb__idx_decode(data, size, number, NULL, block_len, "fuzz", &e, &n, &end) != 0) {
        if (e != NULL) {
            abort(); /* nothing to free on error */
        }
        return 0;
    }
    uint64_t prev = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (e[i].offset <= prev || e[i].offset > end || end - e[i].offset < e[i].stored_len ||
            end > block_len) {
            abort();
        }
        prev = e[i].offset;
    }
    size_t len = 0;
    if (fb__idx_file_size(n, &len) != 0 || len != size) {
        abort();
    }
    uint8_t *again = malloc(len);
    fb__idx_encode(again, number, data + 16, end, e, n);
    /* Reserved bytes are ignored on read, so compare all but those. */
    if (memcmp(again + 64, data + 64, len - 64) != 0 || memcmp(again, data, 48) != 0) {
        abort();
    }
    free(again);
    fb__free(e);
    return 0;
}
