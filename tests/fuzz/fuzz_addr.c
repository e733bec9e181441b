/* Fuzz target: addresses as requests carry them ("ID" or
 * "BLOCK/OFFSET/SIZE"). A parsed id must print back to the same text; a
 * parsed triple must name a block by the exact pattern. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastblocks.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256) {
        return 0;
    }
    char text[257];
    memcpy(text, data, size);
    text[size] = '\0';
    fb_addr a;
    int rc = fb_addr_parse(text, &a);
    if (rc != 0) {
        if (rc != FB_EINVAL && rc != FB_ENOTFOUND) {
            abort();
        }
        return 0;
    }
    if (a.by_id) {
        char id[FB_ID_LEN + 1];
        snprintf(id, sizeof id, "%016" PRIx64 "%08" PRIx32, a.key, a.cookie);
        if (strcmp(id, text) != 0) {
            abort();
        }
    } else {
        char name[32];
        fb__block_name(fb__key_block(a.key), name);
        if (strncmp(text, name, strlen(name)) != 0 || text[strlen(name)] != '/') {
            abort();
        }
    }
    return 0;
}
