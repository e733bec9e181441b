/*
 * record - encode, decode and validate the on-disk structures (see record.h
 * and docs/FORMAT.md). Pure functions over byte buffers: every length is
 * checked before it is used, so a parser never reads outside its input.
 */
#include "record.h"

#include <inttypes.h>
#include <string.h>

#include "util/alloc.h"
#include "util/crc32c.h"
#include "util/endian.h"
#include "util/error.h"
#include "fastblocks.h"

_Static_assert(FB__MARKER_SIZE == 64, "marker size is part of the format");
_Static_assert(FB__BLOCK_HDR_SIZE == 64, "block header size is part of the format");
_Static_assert(FB__REC_HDR_SIZE == 64, "record header size is part of the format");
_Static_assert(FB__REC_HDR_SIZE % 8 == 0, "records stay 8-byte aligned");
_Static_assert(FB__TOMB_SIZE == 16, "tombstone payload size is part of the format");
_Static_assert(FB__IDX_HDR_SIZE == 64, "index header size is part of the format");
_Static_assert(FB__IDX_ENTRY_SIZE == 32, "index entry size is part of the format");
_Static_assert(FB__JOURNAL_SIZE == 32, "journal size is part of the format");

static const uint8_t marker_magic[8] = {'F', 'B', 'S', 'T', 'O', 'R', 'E', 0};
static const uint8_t block_magic[8] = {'F', 'B', 'B', 'L', 'O', 'C', 'K', 0};
static const uint8_t idx_magic[8] = {'F', 'B', 'I', 'N', 'D', 'E', 'X', 0};
static const uint8_t journal_magic[8] = {'F', 'B', 'C', 'J', 'R', 'N', 'L', 0};
static const uint8_t rec_magic[4] = {'F', 'B', 'R', 'C'};

/* The three 64-byte headers share a shape: magic, version, a 32-bit field,
 * store id, a 64-bit field, reserved, CRC of the first 60 bytes. */
static void hdr64_encode(uint8_t out[64], const uint8_t magic[8], uint32_t field32,
                         const uint8_t id[FB__STORE_ID_LEN], uint64_t field64)
{
    memset(out, 0, 64);
    memcpy(out, magic, 8);
    fb__put_le32(out + 8, FB__FORMAT_VERSION);
    fb__put_le32(out + 12, field32);
    memcpy(out + 16, id, FB__STORE_ID_LEN);
    fb__put_le64(out + 32, field64);
    fb__put_le32(out + 60, fb__crc32c(0, out, 60));
}

static int hdr64_check(const uint8_t *p, size_t n, const uint8_t magic[8], const char *what,
                       const char *name)
{
    if (n < 64) {
        return fb__error(FB_ECORRUPT, "%s %s is truncated (%zu of 64 bytes)", what, name, n);
    }
    if (memcmp(p, magic, 8) != 0) {
        return fb__error(FB_ECORRUPT, "%s %s has a bad magic", what, name);
    }
    if (fb__get_le32(p + 60) != fb__crc32c(0, p, 60)) {
        return fb__error(FB_ECORRUPT, "%s %s: header crc mismatch", what, name);
    }
    uint32_t version = fb__get_le32(p + 8);
    if (version > FB__FORMAT_VERSION) {
        return fb__error(FB_EVERSION,
                         "%s %s: store format version %" PRIu32 " is newer than this library (%u)",
                         what, name, version, FB__FORMAT_VERSION);
    }
    if (version == 0) {
        return fb__error(FB_ECORRUPT, "%s %s: format version 0", what, name);
    }
    return 0;
}

void fb__marker_encode(uint8_t out[FB__MARKER_SIZE], const uint8_t id[FB__STORE_ID_LEN],
                       int64_t created)
{
    hdr64_encode(out, marker_magic, 0, id, (uint64_t)created);
}

int fb__marker_decode(const uint8_t *p, size_t n, uint8_t id[FB__STORE_ID_LEN])
{
    int rc = hdr64_check(p, n, marker_magic, "marker file", "fastblocks.store");
    if (rc != 0) {
        return rc;
    }
    if (n != FB__MARKER_SIZE) {
        return fb__error(FB_ECORRUPT, "marker file fastblocks.store has %zu bytes, want 64", n);
    }
    memcpy(id, p + 16, FB__STORE_ID_LEN);
    return 0;
}

void fb__block_hdr_encode(uint8_t out[FB__BLOCK_HDR_SIZE], uint32_t number,
                          const uint8_t id[FB__STORE_ID_LEN], int64_t created)
{
    hdr64_encode(out, block_magic, number, id, (uint64_t)created);
}

int fb__block_hdr_decode(const uint8_t *p, size_t n, uint32_t number,
                         const uint8_t id[FB__STORE_ID_LEN], const char *name)
{
    int rc = hdr64_check(p, n, block_magic, "block", name);
    if (rc != 0) {
        return rc;
    }
    if (fb__get_le32(p + 12) != number) {
        return fb__error(FB_ECORRUPT, "block %s: header says block %" PRIu32, name,
                         fb__get_le32(p + 12));
    }
    if (memcmp(p + 16, id, FB__STORE_ID_LEN) != 0) {
        return fb__error(FB_ECORRUPT, "block %s belongs to another store (store id differs)", name);
    }
    return 0;
}

static uint32_t rec_hdr_crc(const uint8_t *p)
{
    /* The deleted bit is set in place after the fact, so the CRC is taken
     * as if it were clear: the header stays valid either way. */
    uint8_t tmp[60];
    memcpy(tmp, p, 60);
    fb__put_le32(tmp + FB__REC_FLAGS_OFFSET,
                 fb__get_le32(tmp + FB__REC_FLAGS_OFFSET) & ~FB__REC_DELETED);
    return fb__crc32c(0, tmp, 60);
}

void fb__rec_hdr_encode(uint8_t out[FB__REC_HDR_SIZE], const fb_rec_hdr *h)
{
    memset(out, 0, FB__REC_HDR_SIZE);
    memcpy(out, rec_magic, 4);
    fb__put_le32(out + 4, h->flags);
    fb__put_le64(out + 8, h->key);
    fb__put_le32(out + 16, h->cookie);
    fb__put_le32(out + 20, h->width);
    fb__put_le32(out + 24, h->height);
    fb__put_le32(out + 28, h->data_crc);
    fb__put_le64(out + 32, h->stored_len);
    fb__put_le64(out + 40, h->plain_len);
    fb__put_le64(out + 48, (uint64_t)h->created);
    fb__put_le32(out + 56, h->birth_len);
    fb__put_le32(out + 60, rec_hdr_crc(out));
}

int fb__rec_hdr_decode(const uint8_t *p, size_t n, uint64_t at, uint64_t file_len, const char *name,
                       fb_rec_hdr *h)
{
    if (n < FB__REC_HDR_SIZE || at > file_len || file_len - at < FB__REC_HDR_SIZE) {
        return fb__error(FB_ECORRUPT, "truncated record header in %s at offset %" PRIu64, name, at);
    }
    if (memcmp(p, rec_magic, 4) != 0) {
        return fb__error(FB_ECORRUPT, "bad record magic in %s at offset %" PRIu64, name, at);
    }
    if (fb__get_le32(p + 60) != rec_hdr_crc(p)) {
        return fb__error(FB_ECORRUPT, "record header crc mismatch in %s at offset %" PRIu64, name,
                         at);
    }
    h->flags = fb__get_le32(p + 4);
    h->key = fb__get_le64(p + 8);
    h->cookie = fb__get_le32(p + 16);
    h->width = fb__get_le32(p + 20);
    h->height = fb__get_le32(p + 24);
    h->data_crc = fb__get_le32(p + 28);
    h->stored_len = fb__get_le64(p + 32);
    h->plain_len = fb__get_le64(p + 40);
    h->created = (int64_t)fb__get_le64(p + 48);
    h->birth_len = fb__get_le32(p + 56);
    if ((h->flags & ~FB__REC_KNOWN_FLAGS) != 0) {
        return fb__error(FB_ECORRUPT, "unknown record flags 0x%" PRIx32 " in %s at offset %" PRIu64,
                         h->flags, name, at);
    }
    if (h->stored_len > FB__MAX_STORED || h->plain_len > FB__MAX_STORED ||
        h->birth_len > FB__MAX_STORED) {
        return fb__error(FB_ECORRUPT,
                         "impossible record length %" PRIu64 " in %s at offset %" PRIu64,
                         h->stored_len, name, at);
    }
    if (fb__rec_size(h->stored_len) > file_len - at) {
        return fb__error(FB_ECORRUPT,
                         "record in %s at offset %" PRIu64 " (%" PRIu64
                         " bytes) runs past the end of the block (%" PRIu64 " bytes)",
                         name, at, h->stored_len, file_len);
    }
    if (h->flags & FB__REC_PAD) {
        return 0;
    }
    if ((h->flags & FB__REC_TOMBSTONE) && h->stored_len != FB__TOMB_SIZE) {
        return fb__error(FB_ECORRUPT, "tombstone in %s at offset %" PRIu64 " has length %" PRIu64,
                         name, at, h->stored_len);
    }
    if (fb__key_block(h->key) == 0 ||
        fb__key_offset(h->key) < FB__BLOCK_HDR_SIZE + FB__REC_HDR_SIZE) {
        return fb__error(FB_ECORRUPT, "impossible key %016" PRIx64 " in %s at offset %" PRIu64,
                         h->key, name, at);
    }
    return 0;
}

int fb__rec_check_data(const fb_rec_hdr *h, const uint8_t *data, uint64_t at, const char *name)
{
    if (h->flags & FB__REC_PAD) {
        return 0;
    }
    if (fb__crc32c(0, data, (size_t)h->stored_len) != h->data_crc) {
        return fb__error(FB_ECORRUPT, "crc mismatch in %s at offset %" PRIu64, name, at);
    }
    return 0;
}

int fb__rec_plausible_at(const fb_rec_hdr *h, uint32_t number, uint64_t at)
{
    uint64_t birth = fb__key_make(number, at + FB__REC_HDR_SIZE);
    if (h->flags & FB__REC_PAD) {
        return 0;
    }
    if (h->flags & (FB__REC_MOVED | FB__REC_TOMBSTONE)) {
        return h->key < birth;
    }
    return h->key == birth;
}

void fb__tombstone_encode(uint8_t out[FB__TOMB_SIZE], const fb_tombstone *t)
{
    memset(out, 0, FB__TOMB_SIZE);
    fb__put_le32(out, t->block);
    fb__put_le64(out + 8, t->offset);
}

int fb__tombstone_decode(const uint8_t *p, size_t n, fb_tombstone *t)
{
    if (n != FB__TOMB_SIZE) {
        return fb__error(FB_ECORRUPT, "tombstone payload has %zu bytes, want 16", n);
    }
    t->block = fb__get_le32(p);
    t->offset = fb__get_le64(p + 8);
    return 0;
}

int fb__idx_file_size(uint64_t count, size_t *out)
{
    if (count > (SIZE_MAX - FB__IDX_HDR_SIZE) / FB__IDX_ENTRY_SIZE) {
        return fb__error(FB_ETOOBIG, "index of %" PRIu64 " entries is too large", count);
    }
    *out = FB__IDX_HDR_SIZE + (size_t)count * FB__IDX_ENTRY_SIZE;
    return 0;
}

void fb__idx_encode(uint8_t *out, uint32_t number, const uint8_t id[FB__STORE_ID_LEN],
                    uint64_t data_end, const fb_idx_entry *e, uint64_t count)
{
    uint8_t *q = out + FB__IDX_HDR_SIZE;
    for (uint64_t i = 0; i < count; i++, q += FB__IDX_ENTRY_SIZE) {
        fb__put_le64(q, e[i].key);
        fb__put_le64(q + 8, e[i].offset);
        fb__put_le32(q + 16, e[i].stored_len);
        fb__put_le32(q + 20, e[i].cookie);
        fb__put_le32(q + 24, e[i].flags & FB__REC_KNOWN_FLAGS);
        fb__put_le32(q + 28, e[i].data_crc);
    }
    memset(out, 0, FB__IDX_HDR_SIZE);
    memcpy(out, idx_magic, 8);
    fb__put_le32(out + 8, FB__FORMAT_VERSION);
    fb__put_le32(out + 12, number);
    memcpy(out + 16, id, FB__STORE_ID_LEN);
    fb__put_le64(out + 32, count);
    fb__put_le64(out + 40, data_end);
    fb__put_le32(out + 48,
                 fb__crc32c(0, out + FB__IDX_HDR_SIZE, (size_t)count * FB__IDX_ENTRY_SIZE));
    fb__put_le32(out + 60, fb__crc32c(0, out, 60));
}

int fb__idx_decode(const uint8_t *p, size_t n, uint32_t number, const uint8_t *id,
                   uint64_t block_len, const char *name, fb_idx_entry **entries, uint64_t *count,
                   uint64_t *data_end)
{
    *entries = NULL;
    int rc = hdr64_check(p, n, idx_magic, "index file", name);
    if (rc != 0) {
        return rc;
    }
    if (fb__get_le32(p + 12) != number) {
        return fb__error(FB_ECORRUPT, "index file %s: header says block %" PRIu32, name,
                         fb__get_le32(p + 12));
    }
    if (id != NULL && memcmp(p + 16, id, FB__STORE_ID_LEN) != 0) {
        return fb__error(FB_ECORRUPT, "index file %s belongs to another store", name);
    }
    uint64_t cnt = fb__get_le64(p + 32);
    uint64_t end = fb__get_le64(p + 40);
    size_t want = 0;
    if (cnt > (n - FB__IDX_HDR_SIZE) / FB__IDX_ENTRY_SIZE || fb__idx_file_size(cnt, &want) != 0 ||
        want != n) {
        return fb__error(FB_ECORRUPT, "index file %s: %" PRIu64 " entries do not fit %zu bytes",
                         name, cnt, n);
    }
    if (end < FB__BLOCK_HDR_SIZE || end > block_len) {
        return fb__error(FB_ECORRUPT,
                         "index file %s covers %" PRIu64 " bytes but the block has %" PRIu64, name,
                         end, block_len);
    }
    const uint8_t *q = p + FB__IDX_HDR_SIZE;
    if (fb__get_le32(p + 48) != fb__crc32c(0, q, (size_t)cnt * FB__IDX_ENTRY_SIZE)) {
        return fb__error(FB_ECORRUPT, "index file %s: entries crc mismatch", name);
    }
    fb_idx_entry *e = fb__calloc(cnt ? (size_t)cnt : 1, sizeof *e);
    if (e == NULL) {
        return fb__error(FB_ENOMEM, "out of memory reading index file %s", name);
    }
    uint64_t prev_end = FB__BLOCK_HDR_SIZE;
    for (uint64_t i = 0; i < cnt; i++, q += FB__IDX_ENTRY_SIZE) {
        e[i].key = fb__get_le64(q);
        e[i].offset = fb__get_le64(q + 8);
        e[i].stored_len = fb__get_le32(q + 16);
        e[i].cookie = fb__get_le32(q + 20);
        e[i].flags = fb__get_le32(q + 24);
        e[i].data_crc = fb__get_le32(q + 28);
        /* Entries ascend and each record lies inside the covered range. */
        if (e[i].offset < prev_end + FB__REC_HDR_SIZE || e[i].stored_len > FB__MAX_STORED ||
            e[i].offset > end || end - e[i].offset < e[i].stored_len ||
            (e[i].flags & ~FB__REC_KNOWN_FLAGS) != 0 || (e[i].flags & FB__REC_PAD) != 0 ||
            fb__key_block(e[i].key) == 0 ||
            ((e[i].flags & FB__REC_TOMBSTONE) && e[i].stored_len != FB__TOMB_SIZE)) {
            fb__free(e);
            return fb__error(FB_ECORRUPT, "index file %s: entry %" PRIu64 " is invalid", name, i);
        }
        prev_end = e[i].offset + fb__align8(e[i].stored_len);
    }
    *entries = e;
    *count = cnt;
    *data_end = end;
    return 0;
}

void fb__journal_encode(uint8_t out[FB__JOURNAL_SIZE], uint32_t block)
{
    memset(out, 0, FB__JOURNAL_SIZE);
    memcpy(out, journal_magic, 8);
    fb__put_le32(out + 8, FB__FORMAT_VERSION);
    fb__put_le32(out + 12, block);
    fb__put_le32(out + 28, fb__crc32c(0, out, 28));
}

int fb__journal_decode(const uint8_t *p, size_t n, uint32_t *block)
{
    if (n != FB__JOURNAL_SIZE || memcmp(p, journal_magic, 8) != 0 ||
        fb__get_le32(p + 28) != fb__crc32c(0, p, 28)) {
        return fb__error(FB_ECORRUPT, "compaction journal is damaged");
    }
    if (fb__get_le32(p + 8) > FB__FORMAT_VERSION) {
        return fb__error(FB_EVERSION, "compaction journal has a newer format version");
    }
    *block = fb__get_le32(p + 12);
    if (*block == 0 || *block > FB__MAX_BLOCK_NUM) {
        return fb__error(FB_ECORRUPT, "compaction journal names block %" PRIu32, *block);
    }
    return 0;
}
