/* buf - see buf.h. */
#include "buf.h"

#include <stdatomic.h>

#include "alloc.h"

/* The bytes start on a cache-line boundary: the kernel copies a record into
 * them (pread) measurably faster than into malloc's 16-byte alignment, and
 * the CRC and the socket send read them in whole lines. */
#define BUF_ALIGN 64

struct fb_buf {
    atomic_uint refs;
    size_t len;
    uint8_t *data; /* inside the same allocation, BUF_ALIGN-aligned */
};

fb_buf *fb__buf_new(size_t len)
{
    if (len > SIZE_MAX - sizeof(fb_buf) - BUF_ALIGN) {
        return NULL;
    }
    fb_buf *b = fb__malloc(sizeof(fb_buf) + BUF_ALIGN - 1 + len);
    if (b == NULL) {
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->len = len;
    uintptr_t first = (uintptr_t)(b + 1);
    b->data = (uint8_t *)(b + 1) + ((BUF_ALIGN - first % BUF_ALIGN) % BUF_ALIGN);
    return b;
}

uint8_t *fb__buf_mut(fb_buf *b)
{
    return b->data;
}

void fb__buf_set_len(fb_buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
    }
}

const uint8_t *fb_buf_data(const fb_buf *b)
{
    return b->data;
}

size_t fb_buf_len(const fb_buf *b)
{
    return b->len;
}

fb_buf *fb_buf_retain(fb_buf *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void fb_buf_release(fb_buf *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        fb__free(b);
    }
}
