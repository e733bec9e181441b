/* percpu - see percpu.h. */
#include "percpu.h"

#include <pthread.h>
#include <stddef.h>

#include "alloc.h"
#include "cpuslot.h"

/* Chunk k holds counters k * CHUNK .. k * CHUNK + CHUNK - 1: for each slot
 * in turn, CHUNK cells (a multiple of a cache line, and the chunk starts on
 * one). Chunks are never moved or freed, so readers need no lock: a chunk
 * pointer is published (release) before any index in it is handed out. */
static _Atomic(atomic_llong *) chunks[FB__PERCPU_CHUNKS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t fresh;  /* counters below this were handed out once */
static uint32_t *spare; /* freed counters, a stack */
static size_t nspare, spare_cap;

atomic_llong *fb__percpu_cell(uint32_t idx, unsigned slot)
{
    atomic_llong *c = atomic_load_explicit(&chunks[idx / FB__PERCPU_CHUNK], memory_order_acquire);
    return &c[(size_t)slot * FB__PERCPU_CHUNK + idx % FB__PERCPU_CHUNK];
}

int fb__percpu_new(uint32_t *idx)
{
    int rc = -1;
    pthread_mutex_lock(&lock);
    if (nspare > 0) {
        *idx = spare[--nspare];
        rc = 0;
    } else if (fresh < FB__PERCPU_MAX) {
        uint32_t k = fresh / FB__PERCPU_CHUNK;
        atomic_llong *c = atomic_load_explicit(&chunks[k], memory_order_relaxed);
        if (c == NULL) {
            void *raw; /* kept for the life of the process */
            c = fb__calloc_lines((size_t)fb__cpu_slots() * FB__PERCPU_CHUNK, sizeof(atomic_llong),
                                 &raw);
            atomic_store_explicit(&chunks[k], c, memory_order_release);
        }
        if (c != NULL) {
            *idx = fresh++;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&lock);
    if (rc == 0) {
        /* A reused counter holds what its last owner left. */
        for (unsigned s = 0; s < fb__cpu_slots(); s++) {
            atomic_store_explicit(fb__percpu_cell(*idx, s), 0, memory_order_relaxed);
        }
    }
    return rc;
}

void fb__percpu_free(uint32_t idx)
{
    pthread_mutex_lock(&lock);
    /* Out of memory for the stack, the counter is simply never reused. */
    if (FB__GROW_ARRAY(&spare, &spare_cap, nspare + 1, 64) == 0) {
        spare[nspare++] = idx;
    }
    pthread_mutex_unlock(&lock);
}
