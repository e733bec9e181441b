/* Fuzz target: record headers and tombstone payloads as a scan meets them.
 * Input: 8 bytes of file length, then a header and stored bytes. Decoding
 * must never read past the input, and a header it accepts must re-encode
 * to the same bytes (the deleted bit aside). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util/endian.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) {
        return 0;
    }
    uint64_t file_len = fb__get_le64(data);
    data += 8;
    size -= 8;
    fb_rec_hdr h;
    if (fb__rec_hdr_decode(data, size, 64, file_len, "fuzz", &h) != 0) {
        return 0;
    }
    uint8_t again[FB__REC_HDR_SIZE];
    fb__rec_hdr_encode(again, &h);
    if (memcmp(again, data, FB__REC_HDR_SIZE) != 0) {
        abort();
    }
    /* Accepted lengths fit the file, so the stored bytes may be checked
     * against whatever of them the input holds. */
    if (fb__rec_size(h.stored_len) > file_len - 64) {
        abort();
    }
    size_t have = size - FB__REC_HDR_SIZE;
    if (h.stored_len <= have) {
        fb__rec_check_data(&h, data + FB__REC_HDR_SIZE, 64, "fuzz");
        if (h.flags & FB__REC_TOMBSTONE) {
            fb_tombstone t;
            if (fb__tombstone_decode(data + FB__REC_HDR_SIZE, (size_t)h.stored_len, &t) != 0) {
                abort(); /* a valid tombstone header promises 16 bytes */
            }
        }
    }
    return 0;
}
