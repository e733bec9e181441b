/*
 * Concurrency test (label "threads", run under TSan): writer threads put,
 * read back, delete and read each other's images while a compactor, a
 * verifier and a lister run. Every read returns the right bytes or "not
 * found" for a deleted image, never other bytes; group commit shares
 * fsyncs; after reopening, everything acknowledged is there.
 */
#include "fb_test.h"
#include "store_helpers.h"

#include <pthread.h>
#include <stdatomic.h>

enum { THREADS = 6, PER_THREAD = 60, MAXLEN = 4000 };

typedef struct slot {
    char id[FB_ID_LEN + 1];
    uint64_t seed;
    atomic_int state; /* 0 empty, 1 live, 2 deleting, 3 deleted */
} slot;

static slot slots[THREADS][PER_THREAD];
static fb_store *store;
static atomic_int writers_left, errors;

static void fail(const char *what, int rc)
{
    fprintf(stderr, "  %s: %s: %s\n", what, fb_err_name(rc), fb_last_error());
    atomic_fetch_add(&errors, 1);
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
    for (int i = 0; i < PER_THREAD; i++) {
        slot *sl = &slots[t][i];
        fb_meta m;
        sl->seed = (uint64_t)t * 100000u + (uint64_t)i;
        int rc = th_put(store, sl->seed, MAXLEN, &m);
        if (rc != 0) {
            fail("put", rc);
            continue;
        }
        memcpy(sl->id, m.id, sizeof sl->id);
        atomic_store(&sl->state, 1);
        if ((rc = th_check_id(store, sl->id, sl->seed, MAXLEN)) != 0) {
            fail("get own", rc);
        }
        /* Read someone else's image: right bytes or, if deleted, not found. */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slot *o = &slots[x % THREADS][(x >> 8) % PER_THREAD];
        int st = atomic_load(&o->state);
        if (st != 0) {
            rc = th_check_id(store, o->id, o->seed, MAXLEN);
            if (rc != 0 && !(rc == FB_ENOTFOUND && st >= 2) &&
                !(rc == FB_ENOTFOUND && atomic_load(&o->state) >= 2)) {
                fail("get other", rc);
            }
        }
        if (i % 3 == 1) {
            slot *d = &slots[t][i - 1];
            fb_addr a;
            fb_addr_from_id(d->id, &a);
            atomic_store(&d->state, 2);
            if ((rc = fb_delete(store, &a, NULL)) != 0) {
                fail("delete", rc);
            }
            atomic_store(&d->state, 3);
        }
    }
    atomic_fetch_sub(&writers_left, 1);
    return NULL;
}

static void *compactor(void *arg)
{
    (void)arg;
    while (atomic_load(&writers_left) > 0) {
        int rc = fb_compact(store, 0.2, NULL, NULL, NULL);
        if (rc != 0) {
            fail("compact", rc);
        }
    }
    return NULL;
}

static void print_problem(void *ud, const fb_problem *p)
{
    (void)ud;
    fprintf(stderr, "  problem: %s at %llu: %s\n", p->block, (unsigned long long)p->offset,
            p->detail);
}

static void *verifier(void *arg)
{
    (void)arg;
    while (atomic_load(&writers_left) > 0) {
        int rc = fb_verify(store, print_problem, NULL, NULL, NULL);
        if (rc != 0) {
            fail("verify", rc);
        }
        fb_stats st;
        fb_block_stats *bl = NULL;
        size_t n = 0;
        if (fb_get_stats(store, &st) != 0 || fb_list_blocks(store, &bl, &n) != 0) {
            fail("stats", -1);
        }
        fb_free(bl);
    }
    return NULL;
}

TEST(threads_put_get_delete_compact_verify)
{
    char *dir = fb_test_tmpdir("mt");
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_ALWAYS;
    o.max_block_size = 64 << 10;
    o.cache_bytes = 1 << 20;
    CHECK_OK(fb_open(dir, &o, &store));
    atomic_store(&writers_left, THREADS);
    pthread_t th[THREADS + 2];
    for (int t = 0; t < THREADS; t++) {
        pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t);
    }
    pthread_create(&th[THREADS], NULL, compactor, NULL);
    pthread_create(&th[THREADS + 1], NULL, verifier, NULL);
    for (int t = 0; t < THREADS + 2; t++) {
        pthread_join(th[t], NULL);
    }
    CHECK_EQ(atomic_load(&errors), 0);
    fb_stats st;
    CHECK_OK(fb_get_stats(store, &st));
    fprintf(stderr, "  %llu syncs for %llu synced puts\n", (unsigned long long)st.syncs,
            (unsigned long long)st.synced_puts);
    CHECK(st.synced_puts >= (uint64_t)THREADS * PER_THREAD);
    CHECK_OK(fb_close(store));
    CHECK_OK(fb_open(dir, &o, &store));
    uint64_t live = 0;
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            slot *sl = &slots[t][i];
            int rc = th_check_id(store, sl->id, sl->seed, MAXLEN);
            if (atomic_load(&sl->state) == 1) {
                CHECK_OK(rc);
                live++;
            } else {
                CHECK_RC(rc, FB_ENOTFOUND);
            }
        }
    }
    CHECK_OK(fb_get_stats(store, &st));
    CHECK_U64_EQ(st.live_records, live);
    CHECK_OK(fb_verify(store, print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(store));
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(threads_put_get_delete_compact_verify);
    return TEST_REPORT();
}
