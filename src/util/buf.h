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

#endif
