/*
 * Tests of the spread reference count of fb_buf (src/util/buf.c,
 * util/percpu.c; label "threads": run under TSan too).
 *
 * A spread buffer counts references in one cell per CPU, so it must still
 * be freed exactly once, at its last release, however the retains and
 * releases fall on CPUs (a cell may go negative) and whenever the gather
 * runs. An allocator spy counts frees of the buffer under test.
 */
#include "fb_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/cpuslot.h"

static void *watched;
static atomic_int watched_frees;

static void spy_free(void *p)
{
    if (p != NULL && p == watched) {
        atomic_fetch_add(&watched_frees, 1);
    }
    free(p);
}

/* A new buffer whose frees are counted. */
static fb_buf *watched_buf(void)
{
    fb_allocator a = {malloc, realloc, spy_free};
    fb_set_allocator(&a);
    fb_buf *b = fb__buf_new(4096);
    watched = b;
    atomic_store(&watched_frees, 0);
    return b;
}

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort: a hint, as in the library */
}

static void unpin(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < CPU_SETSIZE; i++) {
        CPU_SET(i, &set);
    }
    sched_setaffinity(0, sizeof set, &set);
}

TEST(spread_counts_across_cpus_and_frees_once)
{
    fb_buf *b = watched_buf();
    fb__buf_spread(b);
    fb__buf_spread(b); /* a second spread changes nothing */
    fb_buf *held[3];
    /* Retained on one CPU, released on another: one cell goes to +3, one
     * to -3 when there are two CPUs. */
    pin_to_cpu(0);
    for (int i = 0; i < 3; i++) {
        held[i] = fb_buf_retain(b);
    }
    pin_to_cpu(fb__cpu_slots() > 1 ? 1 : 0);
    for (int i = 0; i < 3; i++) {
        fb_buf_release(held[i]);
    }
    unpin();
    CHECK_EQ(atomic_load(&watched_frees), 0);
    fb_buf *extra = fb_buf_retain(b); /* held across the gather */
    fb__buf_gather(b);
    fb__buf_gather(b); /* twice is harmless */
    fb_buf_release(b);
    CHECK_EQ(atomic_load(&watched_frees), 0);
    fb_buf *again = fb_buf_retain(extra); /* after the gather: on the one count */
    fb_buf_release(extra);
    CHECK_EQ(atomic_load(&watched_frees), 0);
    fb_buf_release(again);
    CHECK_EQ(atomic_load(&watched_frees), 1);
    fb_set_allocator(NULL);
}

TEST(unspread_buffer_frees_at_last_release)
{
    fb_buf *b = watched_buf();
    fb_buf *c = fb_buf_retain(b);
    fb_buf_release(b);
    CHECK_EQ(atomic_load(&watched_frees), 0);
    fb__buf_gather(c); /* never spread: nothing to gather */
    fb_buf_release(c);
    CHECK_EQ(atomic_load(&watched_frees), 1);
    fb_set_allocator(NULL);
}

TEST(counters_are_reused_clean)
{
    /* Counters given back by freed buffers are handed out again; each must
     * start from zero, or the next buffer would be freed early or never. */
    for (int round = 0; round < 3; round++) {
        fb_buf *bufs[64];
        for (int i = 0; i < 64; i++) {
            bufs[i] = fb__buf_new(16);
            fb__buf_spread(bufs[i]);
            fb_buf_release(fb_buf_retain(bufs[i]));
            fb_buf_retain(bufs[i]); /* left in a cell, then gathered */
            fb__buf_gather(bufs[i]);
            fb_buf_release(bufs[i]);
        }
        fb_buf *b = watched_buf();
        fb__buf_spread(b);
        fb_buf *r = fb_buf_retain(b);
        fb__buf_gather(b);
        fb_buf_release(b);
        CHECK_EQ(atomic_load(&watched_frees), 0);
        fb_buf_release(r);
        CHECK_EQ(atomic_load(&watched_frees), 1);
        fb_set_allocator(NULL);
        for (int i = 0; i < 64; i++) {
            fb_buf_release(bufs[i]);
        }
    }
}

#define WORKERS 4
#define ROUNDS 200000

typedef struct worker {
    pthread_t thread;
    fb_buf *b;
    _Atomic(fb_buf *) *mailbox;
    atomic_int *go;
} worker;

/* Retains and releases the buffer as fast as it can, and passes references
 * to the other workers through a mailbox, so that many are released on
 * another thread (and CPU) than the one that took them. */
static void *hammer(void *arg)
{
    worker *w = arg;
    fb_buf *held[4] = {0};
    while (atomic_load(w->go) == 0) {
    }
    for (int i = 0; i < ROUNDS; i++) {
        int k = i % 4;
        fb_buf_release(held[k]);
        held[k] = fb_buf_retain(w->b);
        if (i % 3 == 0) {
            fb_buf_release(atomic_exchange(w->mailbox, fb_buf_retain(w->b)));
        }
    }
    for (int k = 0; k < 4; k++) {
        fb_buf_release(held[k]);
    }
    return NULL;
}

TEST(gather_while_threads_retain_and_release)
{
    for (int trial = 0; trial < 5; trial++) {
        fb_buf *b = watched_buf();
        fb__buf_spread(b);
        _Atomic(fb_buf *) mailbox = NULL;
        atomic_int go = 0;
        worker w[WORKERS];
        for (int i = 0; i < WORKERS; i++) {
            w[i] = (worker){.b = b, .mailbox = &mailbox, .go = &go};
            CHECK_EQ(pthread_create(&w[i].thread, NULL, hammer, &w[i]), 0);
        }
        atomic_store(&go, 1);
        /* The gather lands somewhere inside the workers' run, a different
         * place each trial. */
        for (volatile int spin = 0; spin < 20000 * trial; spin++) {
        }
        fb__buf_gather(b);
        for (int i = 0; i < WORKERS; i++) {
            pthread_join(w[i].thread, NULL);
        }
        fb_buf_release(atomic_exchange(&mailbox, NULL));
        CHECK_EQ(atomic_load(&watched_frees), 0);
        fb_buf_release(b);
        CHECK_EQ(atomic_load(&watched_frees), 1);
        fb_set_allocator(NULL);
    }
}

int main(void)
{
    RUN(spread_counts_across_cpus_and_frees_once);
    RUN(unspread_buffer_frees_at_last_release);
    RUN(counters_are_reused_clean);
    RUN(gather_while_threads_retain_and_release);
    return TEST_REPORT();
}
