/* buf - see buf.h. */
#include "buf.h"

#include <stdatomic.h>
#include <stdbool.h>

#include "alloc.h"
#include "cpuslot.h"
#include "percpu.h"

/* The bytes start on a cache-line boundary: the kernel copies a record into
 * them (pread) measurably faster than into malloc's 16-byte alignment, and
 * the CRC and the socket send read them in whole lines. */
#define BUF_ALIGN 64

/*
 * The reference count of a spread buffer is refs plus the sum of the cells
 * of its per-CPU counter (util/percpu.h); one cell may go negative
 * (retained on one CPU, released on another), the sum never does. Gathering
 * swaps each cell for GATHERED and adds what it held to refs; a retain or
 * release that lands on a cell after that sees GATHERED in the value its
 * atomic add returns, and counts on refs instead. Every such operation is
 * ordered against the swap of its cell, so each is counted exactly once, in
 * the cell before the swap or in refs after it. While the swaps run, refs
 * carries GATHER_BIAS so that releases redirected to it cannot reach zero
 * before the cells' sum is in: the sum may include references those
 * releases are dropping.
 */
#define GATHERED (1LL << 62)
#define GATHER_BIAS (1LL << 40)

struct fb_buf {
    atomic_llong refs;
    /* NULL until spread, then the slot-0 cell of its fb__percpu counter
     * (slot s's is FB__PERCPU_CHUNK cells further); never reset. */
    _Atomic(atomic_llong *) cells;
    uint32_t counter; /* that counter, set by the spread that set cells */
    size_t len;
    uint8_t *data; /* inside the same allocation, BUF_ALIGN-aligned */
};

/* Cells only ever drift by one per operation from GATHERED (up) or from
 * small counts (either way), so half of it separates the two. */
static bool is_gathered(long long v)
{
    return v >= GATHERED / 2;
}

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
    atomic_init(&b->cells, NULL);
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

void fb__buf_spread(fb_buf *b)
{
    uint32_t idx;
    if (atomic_load_explicit(&b->cells, memory_order_relaxed) != NULL ||
        fb__percpu_new(&idx) != 0) {
        return;
    }
    atomic_llong *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&b->cells, &none, fb__percpu_cell(idx, 0),
                                                memory_order_release, memory_order_relaxed)) {
        /* Only the winner of two concurrent spreads (one buffer cached under
         * two keys) writes it; the final release, which reads it, comes
         * after the winner's own release. */
        b->counter = idx;
    } else {
        fb__percpu_free(idx);
    }
}

/* The calling CPU's cell of b's counter, or NULL for a buffer never spread.
 * One load of b's header, where the count would be anyway, then the cell. */
static atomic_llong *my_cell(fb_buf *b)
{
    atomic_llong *c = atomic_load_explicit(&b->cells, memory_order_acquire);
    return c != NULL ? c + (size_t)fb__cpu_slot() * FB__PERCPU_CHUNK : NULL;
}

void fb__buf_gather(fb_buf *b)
{
    atomic_llong *c = atomic_load_explicit(&b->cells, memory_order_acquire);
    if (c == NULL) {
        return;
    }
    atomic_fetch_add_explicit(&b->refs, GATHER_BIAS, memory_order_relaxed);
    long long sum = 0;
    for (size_t i = 0, n = fb__cpu_slots(); i < n; i++) {
        long long v =
            atomic_exchange_explicit(c + i * FB__PERCPU_CHUNK, GATHERED, memory_order_acq_rel);
        if (!is_gathered(v)) {
            sum += v;
        }
    }
    /* Not zero: the caller's own reference is in it. */
    atomic_fetch_add_explicit(&b->refs, sum - GATHER_BIAS, memory_order_acq_rel);
}

fb_buf *fb_buf_retain(fb_buf *b)
{
    atomic_llong *n = my_cell(b);
    if (n == NULL || is_gathered(atomic_fetch_add_explicit(n, 1, memory_order_relaxed))) {
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    }
    return b;
}

void fb_buf_release(fb_buf *b)
{
    if (b == NULL) {
        return;
    }
    atomic_llong *n = my_cell(b);
    if (n != NULL && !is_gathered(atomic_fetch_sub_explicit(n, 1, memory_order_acq_rel))) {
        return;
    }
    if (atomic_fetch_add_explicit(&b->refs, -1, memory_order_acq_rel) == 1) {
        if (atomic_load_explicit(&b->cells, memory_order_relaxed) != NULL) {
            fb__percpu_free(b->counter); /* gathered: nobody touches its cells any more */
        }
        fb__free(b);
    }
}
