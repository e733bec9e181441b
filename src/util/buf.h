/*
 * buf - fb_buf, immutable reference-counted bytes. The cache, the store and
 * the HTTP server share one buffer per image; the last release frees it, so
 * an eviction or a delete never frees bytes still being sent.
 */
#ifndef FB_UTIL_BUF_H
#define FB_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "fastblocks.h"

/* A new buffer of len bytes with one reference; NULL when out of memory. */
fb_buf *fb__buf_new(size_t len);
/* Writable bytes of a buffer that has not been shared yet. */
uint8_t *fb__buf_mut(fb_buf *b);
/* Shrinks the visible length (never grows it). */
void fb__buf_set_len(fb_buf *b, size_t len);

/*
 * Spreads b's reference count over per-CPU counters (util/cpuslot.h), for a
 * buffer that many threads retain and release at once: a popular cached
 * image. From then on fb_buf_retain and fb_buf_release write only the
 * counter of the caller's CPU, so two cores serving the same image do not
 * fight over one cache line. A spread count cannot see itself reach zero,
 * so the caller must hold a reference of its own from spread until it calls
 * fb__buf_gather, and gather before it drops that reference. Only the first
 * spread of a buffer takes effect; when the pool of per-CPU counters is
 * exhausted or out of memory the buffer keeps its one count.
 */
void fb__buf_spread(fb_buf *b);

/*
 * Folds the per-CPU counters back into the one count, for good: afterwards
 * the last release frees b again. Safe while other threads retain and
 * release b, and more than once. The caller holds a reference.
 */
void fb__buf_gather(fb_buf *b);

#endif
