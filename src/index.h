/*
 * index - the in-memory map key -> current location of every live image:
 * an open-addressing hash table with linear probing and backward-shift
 * deletion, 24 bytes per slot, sized to any capacity (not only powers of
 * two) so a store opened with N records uses close to 24 / load bytes per
 * record. Not thread-safe: the store guards it with its index lock.
 */
#ifndef FB_INDEX_H
#define FB_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* One slot. key 0 marks an empty slot (no record can have key 0). */
typedef struct fb_index_entry {
    uint64_t key;
    uint64_t loc;      /* current block << 40 | current payload offset */
    uint32_t len_bits; /* stored length (29 bits) + FB__IX_* flags */
    uint32_t cookie;
} fb_index_entry;

_Static_assert(sizeof(fb_index_entry) == 24, "index memory budget: 24 bytes a slot");

#define FB__IX_LEN_MASK ((1u << 29) - 1)
#define FB__IX_ZSTD (1u << 29)
#define FB__IX_FERNET (1u << 30)
#define FB__IX_VERIFIED (1u << 31) /* stored bytes checked against their CRC */

typedef struct fb_index {
    fb_index_entry *slots;
    size_t cap;
    size_t count;
} fb_index;

/* Sizes the table for `expected` entries (0 for a small default). */
int fb__index_init(fb_index *ix, size_t expected);
void fb__index_free(fb_index *ix);
/* The slot of key, or NULL. The pointer is valid until the next change. */
fb_index_entry *fb__index_find(const fb_index *ix, uint64_t key);
/* Inserts or replaces; *old (may be NULL) gets the replaced entry and
 * *replaced says whether there was one. FB_ENOMEM if growing fails. */
int fb__index_put(fb_index *ix, const fb_index_entry *e, fb_index_entry *old, int *replaced);
/* Removes key; 1 and *old if it was there, 0 otherwise. */
int fb__index_remove(fb_index *ix, uint64_t key, fb_index_entry *old);
/* Iteration: start with *pos = 0; returns the next entry or NULL. */
const fb_index_entry *fb__index_next(const fb_index *ix, size_t *pos);
/* Bytes the table holds. */
size_t fb__index_memory(const fb_index *ix);

#endif
