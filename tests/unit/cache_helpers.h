/*
 * cache_helpers.h - what the cache's unit tests (test_cache.c and the
 * concurrent test_cache_mt.c) share: deterministic random numbers for
 * traces, and buffers whose bytes say which key they belong to.
 */
#ifndef FB_CACHE_HELPERS_H
#define FB_CACHE_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache.h"
#include "util/buf.h"

/* xorshift64*: deterministic pseudo-random numbers for the traces. */
static inline uint64_t ch_rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline uint8_t ch_byte(uint64_t key, size_t i)
{
    return (uint8_t)(key ^ (i * 7));
}

/*
 * A buffer of len bytes for key. Its first `fill` bytes (all of them if
 * fill >= len) are derived from the key, so that a reader can tell which
 * key a buffer belongs to; a small fill keeps large buffers cheap (address
 * space, not time). Exits on allocation failure: the test cannot go on.
 */
static inline fb_buf *ch_buf(uint64_t key, size_t len, size_t fill)
{
    fb_buf *b = fb__buf_new(len);
    if (b == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    uint8_t *p = fb__buf_mut(b);
    for (size_t i = 0; i < len && i < fill; i++) {
        p[i] = ch_byte(key, i);
    }
    return b;
}

/* Whether every byte of b is still the one ch_buf(key, len, SIZE_MAX) wrote. */
static inline int ch_intact(const fb_buf *b, uint64_t key)
{
    const uint8_t *p = fb_buf_data(b);
    for (size_t i = 0; i < fb_buf_len(b); i++) {
        if (p[i] != ch_byte(key, i)) {
            return 0;
        }
    }
    return 1;
}

#endif
