/*
 * Concurrency tests of src/cache.c (label "threads": run under TSan too).
 *
 * Readers, writers, removers and evictions race on a few hot shards; every
 * reference a reader gets must hold the bytes of its own key until it is
 * released (ASan turns a premature free into a report, the content check
 * catches a wrong entry), the counters must add up afterwards, and the
 * ticket protocol must never let a deleted key come back.
 */
#include "fb_test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "cache_helpers.h"

#define NKEYS 4096
#define HELD 8 /* references a reader keeps for a while before releasing */

/* Every byte of a key's buffer is derived from the key, so that a reader can
 * tell its reference still holds the bytes it was given (ch_intact). */
static fb_buf *make_buf(uint64_t key, size_t len)
{
    return ch_buf(key, len, SIZE_MAX);
}

typedef struct worker {
    pthread_t thread;
    fb_cache *cache;
    uint64_t seed;
    int ops;
    int role; /* 0 reader, 1 writer, 2 remover */
    uint64_t gets, corrupt;
} worker;

static void *churn(void *arg)
{
    worker *w = arg;
    fb_buf *held[HELD] = {0};
    uint64_t held_key[HELD] = {0};
    for (int i = 0; i < w->ops; i++) {
        /* Skewed keys, so that threads collide on the same entries. */
        uint64_t r = ch_rnd(&w->seed);
        uint64_t key = (r & 1) ? (r >> 8) % 16 : (r >> 8) % NKEYS;
        if (w->role == 1 || (w->role == 0 && i % 8 == 0)) {
            fb_buf *b = make_buf(key, 64 + ch_rnd(&w->seed) % 2048);
            fb__cache_put(w->cache, key, b);
            fb_buf_release(b);
        } else if (w->role == 2 && i % 2 == 0) {
            fb__cache_remove(w->cache, key);
        } else {
            fb_buf *b = fb__cache_get(w->cache, key);
            w->gets++;
            if (b != NULL) {
                int slot = i % HELD;
                if (held[slot] != NULL && !ch_intact(held[slot], held_key[slot])) {
                    w->corrupt++;
                }
                fb_buf_release(held[slot]);
                held[slot] = b;
                held_key[slot] = key;
            }
        }
    }
    for (int i = 0; i < HELD; i++) {
        if (held[i] != NULL && !ch_intact(held[i], held_key[i])) {
            w->corrupt++;
        }
        fb_buf_release(held[i]);
    }
    return NULL;
}

/* 6 threads (3 readers that also fill, 2 writers, 1 remover) on a cache
 * small enough to evict all the time. */
static void race(uint64_t max_bytes, uint64_t max_entries)
{
    enum { NTHREADS = 6, OPS = 25000 };
    fb_cache *c = NULL;
    worker w[NTHREADS];
    CHECK_OK(fb__cache_new(max_bytes, max_entries, &c));
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){.cache = c, .seed = 0x1234567ull * (uint64_t)(i + 1), .ops = OPS};
        w[i].role = i < 3 ? 0 : i < 5 ? 1 : 2;
        CHECK_EQ(pthread_create(&w[i].thread, NULL, churn, &w[i]), 0);
    }
    uint64_t gets = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK_U64_EQ(w[i].corrupt, 0);
        gets += w[i].gets;
    }
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.hits + st.misses, gets);
    CHECK(st.evictions > 0);
    CHECK(st.bytes <= max_bytes);
    CHECK(max_entries == 0 || st.entries <= max_entries);
    /* Exact accounting after the storm: what is cached sums to the counts. */
    uint64_t bytes = 0, entries = 0;
    for (uint64_t k = 0; k < NKEYS; k++) {
        fb_buf *b = fb__cache_get(c, k);
        if (b != NULL) {
            CHECK(ch_intact(b, k));
            bytes += fb_buf_len(b);
            entries++;
            fb_buf_release(b);
        }
    }
    CHECK_U64_EQ(st.bytes, bytes);
    CHECK_U64_EQ(st.entries, entries);
    fb__cache_free(c);
}

TEST(refcounts_under_get_put_remove_evict_one_shard)
{
    race(256 * 1024, 0); /* one shard, ~250 entries of ~1 KiB */
}

TEST(refcounts_under_get_put_remove_evict_sharded)
{
    race(64u << 20, 128);    /* 2 shards of 64 entries: the entry cap evicts */
    race(1024u << 20, 1024); /* 16 shards of 64 entries */
}

/*
 * The store's delete protocol: the deleter marks the key dead (the index),
 * then removes it from the cache; fillers take a ticket on their miss, check
 * the key is live, and put with the ticket. Once remove has returned, no get
 * may see the key again.
 */
enum { DKEYS = 4000 };
static atomic_int live[DKEYS];
static atomic_int deleted_upto; /* keys below it are deleted and removed */
static atomic_int stale_hits;
static atomic_int stop;

typedef struct filler {
    pthread_t thread;
    fb_cache *cache;
    uint64_t seed;
} filler;

static void *fill(void *arg)
{
    filler *f = arg;
    while (!atomic_load(&stop)) {
        int d = atomic_load(&deleted_upto);
        uint64_t r = ch_rnd(&f->seed);
        /* Mostly keys around the deletion front, where the races are. */
        int key = (int)((uint64_t)d + r % 64) % DKEYS;
        if (r & 0x10000) {
            key = d > 0 ? (int)((r >> 20) % (uint64_t)d) : 0;
        }
        uint64_t ticket;
        fb_buf *b = fb__cache_lookup(f->cache, (uint64_t)key, &ticket, NULL);
        if (b != NULL) {
            if (key < d) {
                atomic_fetch_add(&stale_hits, 1);
            }
            fb_buf_release(b);
            continue;
        }
        if (atomic_load(&live[key])) {
            /* The record read: long enough for deletes to slip in. */
            b = make_buf((uint64_t)key, 4096);
            if (r & 0x100) {
                sched_yield();
            }
            fb__cache_put_ticket(f->cache, (uint64_t)key, b, NULL, ticket);
            fb_buf_release(b);
        }
    }
    return NULL;
}

TEST(deleted_key_never_served_again)
{
    enum { NFILL = 4 };
    fb_cache *c = NULL;
    filler f[NFILL];
    CHECK_OK(fb__cache_new(1u << 20, 0, &c));
    for (int i = 0; i < DKEYS; i++) {
        atomic_store(&live[i], 1);
    }
    atomic_store(&deleted_upto, 0);
    atomic_store(&stale_hits, 0);
    atomic_store(&stop, 0);
    for (int i = 0; i < NFILL; i++) {
        f[i] = (filler){.cache = c, .seed = 0xabcdefull * (uint64_t)(i + 3)};
        CHECK_EQ(pthread_create(&f[i].thread, NULL, fill, &f[i]), 0);
    }
    for (int k = 0; k < DKEYS; k++) {
        atomic_store(&live[k], 0);
        fb__cache_remove(c, (uint64_t)k);
        atomic_store(&deleted_upto, k + 1);
        if (k % 8 == 0) {
            sched_yield();
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NFILL; i++) {
        pthread_join(f[i].thread, NULL);
    }
    CHECK_EQ(atomic_load(&stale_hits), 0);
    for (int k = 0; k < DKEYS; k++) {
        fb_buf *b = fb__cache_get(c, (uint64_t)k);
        fb_buf_release(b);
        if (b != NULL)
            FB_TEST_FAIL_("deleted key %d still cached", k);
    }
    fb__cache_free(c);
}

int main(void)
{
    RUN(refcounts_under_get_put_remove_evict_one_shard);
    RUN(refcounts_under_get_put_remove_evict_sharded);
    RUN(deleted_key_never_served_again);
    return TEST_REPORT();
}
