/* Fuzz target: the scan of a block file (fb__store_scan), the parser that
 * recovery and verify run over whatever a disk holds, damaged or torn.
 * Input: one byte of options (bit 0: the block is sealed), then the block's
 * bytes after its 64-byte header. The scan must never read outside the
 * file, must report records and damaged ranges in ascending, non-overlapping
 * order inside the file, and must stop where it says it stopped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "record.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    uint64_t size; /* of the file */
    uint64_t next; /* nothing reported may start before this */
} seen;

static int on_record(void *ud, uint64_t at, const fb_rec_hdr *h, const uint8_t *payload)
{
    seen *s = ud;
    uint64_t end = at + fb__rec_size(h->stored_len);
    if (at < s->next || at % 8 != 0 || end > s->size || (h->flags & FB__REC_PAD)) {
        abort();
    }
    if (payload != NULL && fb__rec_check_data(h, payload, at, "fuzz") != 0) {
        abort(); /* bytes handed out as good must be good */
    }
    s->next = end;
    return 0;
}

static int on_damage(void *ud, uint64_t at, uint64_t next, int error)
{
    seen *s = ud;
    if (at < s->next || next <= at || next > s->size || next % 8 != 0 || error >= 0) {
        abort();
    }
    s->next = next;
    return 0;
}

/* One block file, rewritten for every input. */
static fb_bfile *block_file(void)
{
    static fb_backend *be;
    static fb_bfile *f;
    if (f != NULL) {
        return f;
    }
    char dir[] = "/tmp/fbfuzz-scan-XXXXXX";
    if (mkdtemp(dir) == NULL || fb__backend_local(dir, 1, 1, &be) != 0 ||
        fb__backend_create(be, 1, &f) != 0) {
        abort();
    }
    /* The file stays open: the directory can go now. */
    char path[64];
    snprintf(path, sizeof path, "%s/blocks/block_00000001.fbk", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/blocks", dir);
    rmdir(path);
    rmdir(dir);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20)) {
        return 0;
    }
    int sealed = data[0] & 1;
    fb_bfile *f = block_file();
    uint8_t hdr[FB__BLOCK_HDR_SIZE];
    static const uint8_t id[FB__STORE_ID_LEN];
    fb__block_hdr_encode(hdr, 1, id, 0);
    if (fb__bfile_truncate(f, 0) != 0 || fb__bfile_write(f, hdr, sizeof hdr, 0) != 0 ||
        (size > 1 && fb__bfile_write(f, data + 1, size - 1, FB__BLOCK_HDR_SIZE) != 0)) {
        abort();
    }
    seen s = {.size = FB__BLOCK_HDR_SIZE + size - 1, .next = FB__BLOCK_HDR_SIZE};
    fb_scan_cb cb = {on_record, on_damage, &s};
    uint64_t end = 0;
    int bad = 0;
    if (fb__store_scan(f, 0, sealed, &cb, &end, &bad) != 0) {
        abort(); /* only memory or I/O can fail a scan */
    }
    if (end < s.next || end > s.size || bad > 0) {
        abort();
    }
    return 0;
}
