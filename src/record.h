/*
 * record - the on-disk structures of a store (docs/FORMAT.md): marker file,
 * block header, record header, tombstone payload, index file, compaction
 * journal. Encoding, decoding and validation only: no I/O, no locking, so
 * every parser here can be fuzzed on its own.
 */
#ifndef FB_RECORD_H
#define FB_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define FB__FORMAT_VERSION 1u

#define FB__MARKER_SIZE 64
#define FB__BLOCK_HDR_SIZE 64
#define FB__REC_HDR_SIZE 64
#define FB__TOMB_SIZE 16
#define FB__IDX_HDR_SIZE 64
#define FB__IDX_ENTRY_SIZE 32
#define FB__JOURNAL_SIZE 32
#define FB__STORE_ID_LEN 16

/* Largest stored length a record may have (keeps sizes in 32-bit index
 * fields and bounds every allocation a corrupt header could ask for). */
#define FB__MAX_STORED ((1u << 29) - 1)
/* Keys: 24 bits of block number, 40 bits of payload offset. */
#define FB__OFFSET_BITS 40
#define FB__MAX_BLOCK_NUM ((1u << 24) - 1)
#define FB__MAX_OFFSET ((1ull << FB__OFFSET_BITS) - 1)

#define FB__REC_ZSTD 0x001u
#define FB__REC_FERNET 0x002u
#define FB__REC_TOMBSTONE 0x004u
#define FB__REC_MOVED 0x008u
#define FB__REC_PAD 0x010u
#define FB__REC_DELETED 0x100u
#define FB__REC_KNOWN_FLAGS 0x11fu
/* In memory only, never on disk: a scan found this record's header valid
 * but its stored bytes failed their CRC (and a valid record follows). */
#define FB__REC_X_BADDATA 0x80000000u

/* The decoded record header. */
typedef struct fb_rec_hdr {
    uint32_t flags;
    uint64_t key;
    uint32_t cookie;
    uint32_t width, height;
    uint32_t data_crc;
    uint64_t stored_len;
    uint64_t plain_len;
    int64_t created;
    /* Stored length when the image was first written (the seed triple's
     * size), kept when rekey changes the stored bytes. 0 in records of
     * earlier writers and in tombstones and pads: same as stored_len. */
    uint32_t birth_len;
} fb_rec_hdr;

/* One entry of an index file (and of the active block's in-memory list). */
typedef struct fb_idx_entry {
    uint64_t key;
    uint64_t offset; /* payload offset */
    uint32_t stored_len;
    uint32_t cookie;
    uint32_t flags;
    uint32_t data_crc;
} fb_idx_entry;

typedef struct fb_tombstone {
    uint32_t block;
    uint64_t offset;
} fb_tombstone;

static inline uint64_t fb__key_make(uint32_t block, uint64_t offset)
{
    return ((uint64_t)block << FB__OFFSET_BITS) | offset;
}
static inline uint32_t fb__key_block(uint64_t key)
{
    return (uint32_t)(key >> FB__OFFSET_BITS);
}
static inline uint64_t fb__key_offset(uint64_t key)
{
    return key & FB__MAX_OFFSET;
}
static inline uint64_t fb__align8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}
/* Bytes a record with this stored length takes in its block. */
static inline uint64_t fb__rec_size(uint64_t stored_len)
{
    return FB__REC_HDR_SIZE + fb__align8(stored_len);
}

/* Marker file. */
void fb__marker_encode(uint8_t out[FB__MARKER_SIZE], const uint8_t id[FB__STORE_ID_LEN],
                       int64_t created);
/* FB_ECORRUPT (bad length, magic, CRC) or FB_EVERSION (newer format). */
int fb__marker_decode(const uint8_t *p, size_t n, uint8_t id[FB__STORE_ID_LEN]);

/* Block header. decode checks magic, CRC, version, number and store id;
 * name is used in the error detail. */
void fb__block_hdr_encode(uint8_t out[FB__BLOCK_HDR_SIZE], uint32_t number,
                          const uint8_t id[FB__STORE_ID_LEN], int64_t created);
int fb__block_hdr_decode(const uint8_t *p, size_t n, uint32_t number,
                         const uint8_t id[FB__STORE_ID_LEN], const char *name);

/* Record header: encode computes the header CRC; data_crc is taken from h. */
void fb__rec_hdr_encode(uint8_t out[FB__REC_HDR_SIZE], const fb_rec_hdr *h);
/*
 * Decodes and validates a record header found at header offset `at` of a
 * block of `file_len` bytes (the record must fit). FB_ECORRUPT with a
 * detail naming the block and offset on any problem. Does not check the data
 * CRC (the caller has the stored bytes).
 */
int fb__rec_hdr_decode(const uint8_t *p, size_t n, uint64_t at, uint64_t file_len, const char *name,
                       fb_rec_hdr *h);
/*
 * Whether a valid header found at header offset `at` of block `number` by
 * a resynchronising scan (one that searched past damaged bytes, possibly
 * through the stored bytes of an image) can be a record this store wrote:
 * an original record's key is its own birth address, a moved record or a
 * tombstone names an earlier address, and a pad is never accepted there
 * (a pad's length would let forged bytes hide the records after it).
 */
int fb__rec_plausible_at(const fb_rec_hdr *h, uint32_t number, uint64_t at);
/* The seed triple's size of a record: its birth stored length. */
static inline uint64_t fb__rec_birth_len(const fb_rec_hdr *h)
{
    return h->birth_len != 0 ? h->birth_len : h->stored_len;
}
/* Checks the stored bytes against h->data_crc (pad records always pass). */
int fb__rec_check_data(const fb_rec_hdr *h, const uint8_t *data, uint64_t at, const char *name);
/* Offset of the flags word inside a record header (for the in-place delete). */
#define FB__REC_FLAGS_OFFSET 4

void fb__tombstone_encode(uint8_t out[FB__TOMB_SIZE], const fb_tombstone *t);
int fb__tombstone_decode(const uint8_t *p, size_t n, fb_tombstone *t);

/* Index file. encode writes header + entries into out (fb__idx_file_size
 * bytes); decode validates everything and returns a fb__malloc'ed array. */
int fb__idx_file_size(uint64_t count, size_t *out);
void fb__idx_encode(uint8_t *out, uint32_t number, const uint8_t id[FB__STORE_ID_LEN],
                    uint64_t data_end, const fb_idx_entry *e, uint64_t count);
/*
 * Parses an index file of n bytes for block `number` (store id `id`, or any
 * id when NULL) whose block file has block_len bytes. FB_ECORRUPT with a
 * detail on any problem; on success *entries (fb__free) and *count.
 */
int fb__idx_decode(const uint8_t *p, size_t n, uint32_t number, const uint8_t *id,
                   uint64_t block_len, const char *name, fb_idx_entry **entries, uint64_t *count,
                   uint64_t *data_end);

/* Compaction journal. */
void fb__journal_encode(uint8_t out[FB__JOURNAL_SIZE], uint32_t block);
int fb__journal_decode(const uint8_t *p, size_t n, uint32_t *block);

/* Block and index file names. */
void fb__block_name(uint32_t number, char out[32]);
void fb__idx_name(uint32_t number, char out[32]);
/* The public id of (key, cookie): FB_ID_LEN (24) lower-case hex digits. */
void fb__id_format(uint64_t key, uint32_t cookie, char out[25]);
/* 1 and *number if name is exactly block_NNNNNNNN<suffix> (suffix ".fbk"
 * or ".idx"), else 0. */
int fb__block_name_parse(const char *name, const char *suffix, uint32_t *number);

#endif
