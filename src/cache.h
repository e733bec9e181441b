/*
 * cache - bytes-bounded cache of plaintext images keyed by the image key.
 * Entries are fb_buf references: a hit hands out a new reference, so
 * eviction or removal never frees bytes a reader still holds.
 */
#ifndef FB_CACHE_H
#define FB_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "fastblocks.h"

typedef struct fb_cache fb_cache;

typedef struct fb_cache_stats {
    uint64_t capacity_bytes, bytes, entries;
    uint64_t hits, misses, evictions;
} fb_cache_stats;

/*
 * max_bytes 0 disables the cache (every get misses, put admits nothing);
 * max_entries 0 means no cap on the count. Objects larger than a fixed
 * fraction of the capacity are not admitted.
 */
int fb__cache_new(uint64_t max_bytes, uint64_t max_entries, fb_cache **out);
void fb__cache_free(fb_cache *c); /* releases every entry; NULL is fine */

/*
 * What the store keeps beside an image's bytes: the record header fields a
 * reply needs (fb_meta), so that a hit reads nothing from disk. The cache
 * only stores and returns it.
 */
typedef struct fb__cache_note {
    int64_t created;
    uint32_t width, height;
    uint32_t birth_len;
} fb__cache_note;

/* A new reference to the cached bytes of key, or NULL (counts a miss). */
fb_buf *fb__cache_get(fb_cache *c, uint64_t key);
/* fb__cache_get that counts no miss: for a probe whose miss is followed by
 * a read that looks the key up again (and counts the miss then). On a hit
 * *note (if not NULL) receives the entry's note. */
fb_buf *fb__cache_peek(fb_cache *c, uint64_t key, fb__cache_note *note);
/*
 * Admission for bytes a reader can serve without the cache (a plain record
 * sent with sendfile): true if key missed lately already, so that it is worth
 * reading into the cache now; false the first time (and always when the
 * cache is disabled). A doorkeeper bitmap as in TinyLFU, forgotten whenever
 * half of it is set.
 */
bool fb__cache_second_miss(fb_cache *c, uint64_t key);
/* Inserts (or replaces) key with an all-zero note; the cache takes its own
 * reference. */
void fb__cache_put(fb_cache *c, uint64_t key, fb_buf *b);
/*
 * For readers that fill the cache after a miss, closing the race with a
 * concurrent delete: fb__cache_lookup is fb__cache_get that also returns a
 * ticket (and, on a hit, the note); fb__cache_put_ticket caches b with its
 * note only if no fb__cache_remove ran on the key's shard since that ticket
 * (returns 1 if cached, else 0). Take the ticket before the index lookup;
 * delete drops the index entry before calling fb__cache_remove.
 */
fb_buf *fb__cache_lookup(fb_cache *c, uint64_t key, uint64_t *ticket, fb__cache_note *note);
int fb__cache_put_ticket(fb_cache *c, uint64_t key, fb_buf *b, const fb__cache_note *note,
                         uint64_t ticket);
/* Drops key if present. */
void fb__cache_remove(fb_cache *c, uint64_t key);
void fb__cache_stats(fb_cache *c, fb_cache_stats *out);
/* The largest object put admits: 1/8 of a shard's byte budget. */
uint64_t fb__cache_max_object(const fb_cache *c);

#endif
