/*
 * Unit tests of src/cache.c: S3-FIFO eviction order on hand-made traces
 * (exact survivors), exact byte and entry accounting after random
 * sequences, the admission limit, the entry cap, the disabled cache,
 * references that outlive removal, tickets, counters, out-of-memory.
 * The concurrent tests are in test_cache_mt.c.
 */
#include "fb_test.h"

#include "cache_helpers.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* A buffer whose first bytes say which key they belong to. Only those are
 * written, so that large buffers cost address space, not time. */
static fb_buf *make_buf(uint64_t key, size_t len)
{
    return ch_buf(key, len, 64);
}

/* Puts key with a fresh buffer of len bytes and drops the caller's reference. */
static void put_new(fb_cache *c, uint64_t key, size_t len)
{
    fb_buf *b = make_buf(key, len);
    fb__cache_put(c, key, b);
    fb_buf_release(b);
}

static int cached(fb_cache *c, uint64_t key)
{
    fb_buf *b = fb__cache_get(c, key);
    fb_buf_release(b);
    return b != NULL;
}

/*
 * Checks that exactly the keys in want (0-terminated) among 1..max_key are
 * cached. Only at the end of a trace: get bumps frequencies.
 */
#define CHECK_SURVIVORS(c, max_key, ...)                                                           \
    do {                                                                                           \
        const uint64_t want_[] = {__VA_ARGS__, 0};                                                 \
        for (uint64_t k_ = 1; k_ <= (max_key); k_++) {                                             \
            int expect_ = 0;                                                                       \
            for (size_t i_ = 0; want_[i_] != 0; i_++) {                                            \
                expect_ |= want_[i_] == k_;                                                        \
            }                                                                                      \
            if (cached((c), k_) != expect_)                                                        \
                FB_TEST_FAIL_("key %llu: cached %d, want %d", (unsigned long long)k_, !expect_,    \
                              expect_);                                                            \
        }                                                                                          \
    } while (0)

TEST(new_rejects_null_out)
{
    CHECK_RC(fb__cache_new(MIB, 0, NULL), FB_EINVAL);
    fb__cache_free(NULL);
}

TEST(disabled_cache_admits_nothing)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(0, 0, &c));
    put_new(c, 1, 0);
    put_new(c, 2, 100);
    CHECK(fb__cache_get(c, 1) == NULL);
    CHECK(fb__cache_get(c, 2) == NULL);
    uint64_t t = 0;
    fb_buf *b = make_buf(3, 10);
    CHECK(fb__cache_lookup(c, 3, &t, NULL) == NULL);
    CHECK_EQ(fb__cache_put_ticket(c, 3, b, NULL, t), 0);
    fb_buf_release(b);
    fb__cache_remove(c, 1);
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.capacity_bytes, 0);
    CHECK_U64_EQ(st.bytes, 0);
    CHECK_U64_EQ(st.entries, 0);
    CHECK_U64_EQ(st.hits, 0);
    CHECK_U64_EQ(st.misses, 3);
    fb__cache_free(c);
}

TEST(hit_returns_same_bytes_and_counts)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    fb_buf *b = make_buf(7, 1000);
    fb__cache_put(c, 7, b);
    fb_buf *hit = fb__cache_get(c, 7);
    CHECK(hit == b); /* zero-copy: the very buffer */
    fb_buf_release(hit);
    fb_buf_release(b);
    CHECK(fb__cache_get(c, 8) == NULL);
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.capacity_bytes, MIB);
    CHECK_U64_EQ(st.bytes, 1000);
    CHECK_U64_EQ(st.entries, 1);
    CHECK_U64_EQ(st.hits, 1);
    CHECK_U64_EQ(st.misses, 1);
    CHECK_U64_EQ(st.evictions, 0);
    fb__cache_free(c);
}

/* A reference handed out survives remove, replace, eviction and free. */
TEST(reference_outlives_entry)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 2, &c));
    put_new(c, 1, 500);
    put_new(c, 2, 500);
    fb_buf *r1 = fb__cache_get(c, 1);
    fb_buf *r2 = fb__cache_get(c, 2);
    CHECK(r1 != NULL && r2 != NULL);
    fb__cache_remove(c, 1);
    CHECK(fb__cache_get(c, 1) == NULL);
    put_new(c, 2, 600); /* replaces the buffer r2 points to */
    fb_buf *r2b = fb__cache_get(c, 2);
    CHECK(r2b != NULL && r2b != r2);
    CHECK_EQ(fb_buf_len(r2b), 600);
    fb_buf_release(r2b);
    for (uint64_t k = 10; k < 20; k++) {
        put_new(c, k, 100); /* evicts everything older */
    }
    fb__cache_free(c);
    fb_buf *want1 = make_buf(1, 500), *want2 = make_buf(2, 500);
    CHECK_EQ(fb_buf_len(r1), 500);
    CHECK_MEM_EQ(fb_buf_data(r1), fb_buf_data(want1), 64);
    CHECK_MEM_EQ(fb_buf_data(r2), fb_buf_data(want2), 64);
    fb_buf_release(want1);
    fb_buf_release(want2);
    fb_buf_release(r1);
    fb_buf_release(r2);
}

/*
 * One shard (1 MiB), cap 10 entries: the small queue's share is 1 entry.
 * Hits in the small queue promote to main at eviction time; an unhit tail
 * is evicted into the ghost; a ghost key comes back straight into main.
 * The start of the traces of the next two tests, on a new cache in *out.
 */
static void promotion_trace(fb_cache **out)
{
    CHECK_OK(fb__cache_new(MIB, 10, out));
    fb_cache *c = *out;
    for (uint64_t k = 1; k <= 10; k++) {
        put_new(c, k, 10);
    }
    CHECK(cached(c, 1) && cached(c, 2) && cached(c, 3));
    put_new(c, 11, 10); /* S tail 1,2,3 hit -> M; 4 evicted to the ghost */
    put_new(c, 4, 10);  /* ghost hit: into M; evicts S tail 5 */
    put_new(c, 12, 10); /* evicts S tail 6 */
}

TEST(s3fifo_promotion_and_ghost)
{
    fb_cache *c = NULL;
    promotion_trace(&c);
    CHECK(!fb_test_current_failed);
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.evictions, 3);
    CHECK_U64_EQ(st.entries, 10);
    CHECK_U64_EQ(st.bytes, 100);
    CHECK_SURVIVORS(c, 12, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12);
    fb__cache_free(c);
}

/*
 * The same start, then a one-off scan of 20 new keys: it churns through
 * the small queue only. LRU would keep the last 10 scanned keys and nothing
 * else; S3-FIFO keeps the 4 keys in main.
 */
TEST(s3fifo_scan_does_not_flush_main)
{
    fb_cache *c = NULL;
    promotion_trace(&c);
    CHECK(!fb_test_current_failed);
    for (uint64_t k = 100; k < 120; k++) {
        put_new(c, k, 10);
    }
    CHECK_SURVIVORS(c, 130, 1, 2, 3, 4, 114, 115, 116, 117, 118, 119);
    fb__cache_free(c);
}

/*
 * Byte budget: 1 MiB, 100 KiB objects (10 fit). The small queue's share is
 * 10% of the bytes, so it may hold one object without being over it, and
 * eviction then comes from main, where a hit buys one more round
 * (reinsertion at the head, frequency decremented). The trace of the next
 * two tests, on a new cache in *out.
 */
#define OBJ (100 * KIB)

static void by_bytes_trace(fb_cache **out)
{
    CHECK_OK(fb__cache_new(MIB, 0, out));
    fb_cache *c = *out;
    for (uint64_t k = 1; k <= 10; k++) {
        put_new(c, k, OBJ);
    }
    for (uint64_t k = 1; k <= 5; k++) {
        CHECK(cached(c, k));
    }
    CHECK(cached(c, 1));
    put_new(c, 11, OBJ); /* 1..5 -> M (freq reset), 6 evicted */
    CHECK(cached(c, 1) && cached(c, 3));
    for (uint64_t k = 12; k <= 17; k++) {
        put_new(c, k, OBJ); /* each evicts the S tail: 7..12 */
    }
    for (uint64_t k = 13; k <= 16; k++) {
        CHECK(cached(c, k));
    }
    put_new(c, 18, OBJ); /* 13..16 -> M, 17 evicted; S = {18} */
    put_new(c, 19, OBJ); /* S under its share: M tail 1 reinserted, 2 evicted */
    put_new(c, 20, OBJ); /* S = {19, 18} over its share: 18 evicted */
}

TEST(s3fifo_main_reinsertion_by_bytes)
{
    fb_cache *c = NULL;
    by_bytes_trace(&c);
    CHECK(!fb_test_current_failed);
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.entries, 10);
    CHECK_U64_EQ(st.bytes, 10 * OBJ);
    CHECK_U64_EQ(st.evictions, 10);
    CHECK_SURVIVORS(c, 22, 1, 3, 4, 5, 13, 14, 15, 16, 19, 20);
    fb__cache_free(c);
}

/* Continues the trace above: 18, just evicted from S, returns into M. The
 * next insertion therefore evicts from M, not 20 from S. */
TEST(s3fifo_ghost_readmits_into_main)
{
    fb_cache *c = NULL;
    by_bytes_trace(&c);
    CHECK(!fb_test_current_failed);
    put_new(c, 18, OBJ); /* S = {20, 19}: 19 evicted; 18 from the ghost into M */
    /* S = {20} under its share: M tail 3 (hit earlier) reinserted, 4 evicted */
    put_new(c, 21, OBJ);
    CHECK_SURVIVORS(c, 22, 1, 3, 5, 13, 14, 15, 16, 18, 20, 21);
    fb__cache_free(c);
}

/*
 * A hit in main buys one reinsertion, not a reset: key 1, hit twice in main,
 * survives two passes of the main queue's tail. Cap 4 entries: keys come
 * back from the ghost straight into main while the small queue is empty.
 */
TEST(s3fifo_main_frequency_decrements)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 4, &c));
    for (uint64_t k = 1; k <= 4; k++) {
        put_new(c, k, 10);
    }
    CHECK(cached(c, 1) && cached(c, 2) && cached(c, 3));
    for (uint64_t k = 5; k <= 10; k++) {
        put_new(c, k, 10); /* 1..3 -> M; 4..9 evicted into the ghost */
    }
    fb__cache_remove(c, 10);             /* S empty, M = 3 2 1 */
    CHECK(cached(c, 1) && cached(c, 1)); /* freq 2 */
    put_new(c, 7, 10);                   /* ghost -> M, no eviction */
    put_new(c, 8, 10);                   /* M tail 1 reinserted (freq 1), 2 evicted */
    put_new(c, 9, 10);                   /* 3 evicted */
    put_new(c, 20, 10);                  /* S empty: M tail 7 evicted */
    CHECK(cached(c, 20));
    put_new(c, 21, 10); /* 20 -> M; M tail 1 reinserted (freq 0), 8 evicted */
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.evictions, 10);
    CHECK_SURVIVORS(c, 22, 1, 9, 20, 21);
    fb__cache_free(c);
}

TEST(admission_limit_is_an_eighth_of_a_shard)
{
    fb_cache *c = NULL;
    /* 1 MiB: one shard, objects up to 128 KiB. */
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    put_new(c, 1, 128 * KIB);
    put_new(c, 2, 128 * KIB + 1);
    CHECK(cached(c, 1));
    CHECK(!cached(c, 2));
    /* An oversize replacement drops the old value instead of keeping it. */
    put_new(c, 1, 128 * KIB + 1);
    CHECK(!cached(c, 1));
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.bytes, 0);
    CHECK_U64_EQ(st.entries, 0);
    CHECK_U64_EQ(st.evictions, 0);
    fb__cache_free(c);

    /* 64 MiB: 8 shards of 8 MiB, objects up to 1 MiB. */
    CHECK_OK(fb__cache_new(64 * MIB, 0, &c));
    put_new(c, 3, MIB);
    put_new(c, 4, MIB + 1);
    CHECK(cached(c, 3));
    CHECK(!cached(c, 4));
    fb__cache_free(c);

    /* 256 MiB: 16 shards of 16 MiB, objects up to 2 MiB. */
    CHECK_OK(fb__cache_new(256 * MIB, 0, &c));
    put_new(c, 5, 2 * MIB);
    put_new(c, 6, 2 * MIB + 1);
    CHECK(cached(c, 5));
    CHECK(!cached(c, 6));
    fb__cache_free(c);
}

TEST(entry_cap_holds)
{
    /* The Python API's cache_size=5 with a large byte budget: one shard. */
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(64 * MIB, 5, &c));
    for (uint64_t k = 1; k <= 50; k++) {
        put_new(c, k, 1000);
        fb_cache_stats st;
        fb__cache_stats(c, &st);
        CHECK(st.entries <= 5);
        CHECK_U64_EQ(st.bytes, st.entries * 1000);
    }
    fb_cache_stats st;
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.entries, 5);
    CHECK_U64_EQ(st.evictions, 45);
    fb__cache_free(c);

    /* Sharded with a cap: the cap is split exactly and never exceeded. */
    CHECK_OK(fb__cache_new(1024 * MIB, 1000, &c));
    for (uint64_t k = 1; k <= 20000; k++) {
        put_new(c, k * 7919, 10);
    }
    fb__cache_stats(c, &st);
    CHECK_U64_EQ(st.entries, 1000); /* 8 shards of 125, all full */
    CHECK_U64_EQ(st.evictions, 20000 - 1000);
    fb__cache_free(c);
}

/*
 * After any sequence of put, replace, remove and get, the cache holds
 * exactly the last value put for each key it holds, never a removed key,
 * and its byte and entry counts are exactly the sums over what it holds.
 */
static void random_accounting(uint64_t capacity, uint64_t max_entries, size_t max_len,
                              uint64_t seed)
{
    enum { NKEYS = 400, STEPS = 20000 };
    fb_cache *c = NULL;
    fb_buf *last[NKEYS] = {0}; /* last value put per key; NULL after remove */
    uint64_t s = seed;
    CHECK_OK(fb__cache_new(capacity, max_entries, &c));
    for (int step = 0; step < STEPS; step++) {
        uint64_t k = ch_rnd(&s) % NKEYS;
        unsigned op = (unsigned)(ch_rnd(&s) % 10);
        if (op < 5) {
            fb_buf *b = make_buf(k, 1 + ch_rnd(&s) % max_len);
            fb__cache_put(c, k, b);
            fb_buf_release(last[k]);
            last[k] = b;
        } else if (op < 6) {
            fb__cache_remove(c, k);
            fb_buf_release(last[k]);
            last[k] = NULL;
        } else {
            fb_buf *b = fb__cache_get(c, k);
            if (b != NULL && b != last[k]) {
                fb_buf_release(b);
                FB_TEST_FAIL_("step %d: key %llu served a stale value", step,
                              (unsigned long long)k);
            }
            fb_buf_release(b);
        }
        if (step % 1000 == 999 || step == STEPS - 1) {
            fb_cache_stats before, after;
            fb__cache_stats(c, &before);
            uint64_t bytes = 0, entries = 0;
            for (uint64_t j = 0; j < NKEYS; j++) {
                fb_buf *b = fb__cache_get(c, j);
                if (b != NULL) {
                    int ok = b == last[j];
                    bytes += fb_buf_len(b);
                    entries++;
                    fb_buf_release(b);
                    if (!ok)
                        FB_TEST_FAIL_("key %llu: not the last value put", (unsigned long long)j);
                }
            }
            fb__cache_stats(c, &after);
            CHECK_U64_EQ(before.bytes, bytes);
            CHECK_U64_EQ(before.entries, entries);
            CHECK_U64_EQ(after.hits + after.misses, before.hits + before.misses + NKEYS);
            CHECK(bytes <= capacity);
            CHECK(max_entries == 0 || entries <= max_entries);
        }
    }
    fb__cache_free(c);
    for (int k = 0; k < NKEYS; k++) {
        fb_buf_release(last[k]);
    }
}

TEST(byte_accounting_exact_one_shard)
{
    random_accounting(MIB, 0, 64 * KIB, 0x9e3779b97f4a7c15ull);
    random_accounting(MIB, 40, 20 * KIB, 12345);
    random_accounting(256 * KIB, 0, 40 * KIB, 777); /* some not admitted */
}

TEST(byte_accounting_exact_sharded)
{
    /* 4 shards of 8 MiB; 400 keys of up to 512 KiB overflow them. */
    random_accounting(32 * MIB, 0, 512 * KIB, 42);
    random_accounting(64 * MIB, 512, 100 * KIB, 43); /* 8 shards of 64 entries */
}

TEST(ticket_refuses_after_remove)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    fb_buf *b = make_buf(5, 100);
    uint64_t t = 0;
    CHECK(fb__cache_lookup(c, 5, &t, NULL) == NULL);
    fb__cache_remove(c, 5); /* a delete between the miss and the put */
    CHECK_EQ(fb__cache_put_ticket(c, 5, b, NULL, t), 0);
    CHECK(!cached(c, 5));
    CHECK(fb__cache_lookup(c, 5, &t, NULL) == NULL);
    CHECK_EQ(fb__cache_put_ticket(c, 5, b, NULL, t), 1);
    fb_buf *hit = fb__cache_lookup(c, 5, &t, NULL);
    CHECK(hit == b);
    fb_buf_release(hit);
    fb_buf_release(b);
    fb__cache_free(c);
}

/* The note put beside the bytes comes back with every hit, replaced with
 * the bytes; fb__cache_put leaves an all-zero note. */
TEST(note_travels_with_the_bytes)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    fb_buf *b = make_buf(9, 100);
    uint64_t t = 0;
    fb__cache_note in = {1700000000, 640, 480, 1234}, out = {0, 0, 0, 0};
    CHECK(fb__cache_lookup(c, 9, &t, &out) == NULL);
    CHECK_EQ(fb__cache_put_ticket(c, 9, b, &in, t), 1);
    fb_buf *hit = fb__cache_peek(c, 9, &out);
    CHECK(hit == b);
    CHECK(out.created == 1700000000 && out.width == 640 && out.height == 480 &&
          out.birth_len == 1234);
    fb_buf_release(hit);
    fb__cache_put(c, 9, b); /* replaces the value, and its note */
    hit = fb__cache_lookup(c, 9, &t, &out);
    CHECK(hit == b);
    CHECK(out.created == 0 && out.width == 0 && out.height == 0 && out.birth_len == 0);
    fb_buf_release(hit);
    fb_buf_release(b);
    fb__cache_free(c);
}

/* Allocation failures: fb__cache_new fails cleanly at every allocation and
 * a put that cannot allocate simply does not cache. */
static long fail_after = -1; /* allocations left before failing; -1: never */

static void *failing_malloc(size_t n)
{
    if (fail_after == 0) {
        return NULL;
    }
    if (fail_after > 0) {
        fail_after--;
    }
    return malloc(n);
}

static void *failing_realloc(void *p, size_t n)
{
    return failing_malloc(1) == NULL ? NULL : realloc(p, n);
}

TEST(out_of_memory)
{
    /* Buffers are made before the allocator is swapped, so only the cache's
     * own allocations fail. */
    fb_buf *b = make_buf(1, 100);
    fb_allocator a = {failing_malloc, failing_realloc, free};
    fb_set_allocator(&a);
    int failures = 0;
    for (long n = 0; n < 200; n++) {
        fb_cache *c = NULL;
        fail_after = n;
        int rc = fb__cache_new(256 * MIB, 0, &c);
        fail_after = -1;
        if (rc == 0) {
            fb__cache_free(c);
            break;
        }
        failures++;
        CHECK_RC(rc, FB_ENOMEM);
        CHECK(c == NULL);
    }
    CHECK(failures > 2);
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    fail_after = 0;
    fb__cache_put(c, 1, b);
    fail_after = -1;
    CHECK(!cached(c, 1));
    fb__cache_put(c, 1, b);
    CHECK(cached(c, 1));
    fb__cache_free(c);
    fb_set_allocator(NULL);
    fb_buf_release(b);
}

/* The doorkeeper says "again" only for a key that missed before, forgets
 * after many distinct keys, and never admits into a disabled cache. */
TEST(second_miss_doorkeeper)
{
    fb_cache *c = NULL;
    CHECK_OK(fb__cache_new(MIB, 0, &c));
    CHECK(!fb__cache_second_miss(c, 42));
    CHECK(fb__cache_second_miss(c, 42));
    CHECK(fb__cache_second_miss(c, 42));
    CHECK(!fb__cache_second_miss(c, 43));
    /* 64 keys seen once, then 60,000 others: enough to set half of the
     * bitmap (the reset) and a seventh of it since; so nearly all
     * of the 64 read as new again (a few may share a bit with a later key). */
    for (uint64_t k = 100; k < 164; k++) {
        (void)fb__cache_second_miss(c, k);
    }
    for (uint64_t k = 1000; k < 61000; k++) {
        (void)fb__cache_second_miss(c, k);
    }
    int fresh = 0;
    for (uint64_t k = 100; k < 164; k++) {
        fresh += !fb__cache_second_miss(c, k);
    }
    CHECK(fresh >= 48);
    fb__cache_free(c);
    CHECK_OK(fb__cache_new(0, 0, &c));
    CHECK(!fb__cache_second_miss(c, 7));
    CHECK(!fb__cache_second_miss(c, 7));
    fb__cache_free(c);
}

int main(void)
{
    RUN(new_rejects_null_out);
    RUN(disabled_cache_admits_nothing);
    RUN(hit_returns_same_bytes_and_counts);
    RUN(reference_outlives_entry);
    RUN(s3fifo_promotion_and_ghost);
    RUN(s3fifo_scan_does_not_flush_main);
    RUN(s3fifo_main_reinsertion_by_bytes);
    RUN(s3fifo_ghost_readmits_into_main);
    RUN(s3fifo_main_frequency_decrements);
    RUN(admission_limit_is_an_eighth_of_a_shard);
    RUN(entry_cap_holds);
    RUN(byte_accounting_exact_one_shard);
    RUN(byte_accounting_exact_sharded);
    RUN(ticket_refuses_after_remove);
    RUN(note_travels_with_the_bytes);
    RUN(out_of_memory);
    RUN(second_miss_doorkeeper);
    return TEST_REPORT();
}
