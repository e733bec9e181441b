/* Unit tests of the in-memory index (src/index.c) against a plain array
 * model: inserts, replacements, backward-shift deletes under heavy
 * collisions, growth, iteration and the 24-byte slot budget. */
#include "fb_test.h"

#include "fastblocks.h"

#include "index.h"
#include "record.h"

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

TEST(index_matches_model)
{
    enum { K = 5000 };
    static uint64_t keys[K];
    static int present[K];
    static uint32_t cookie[K];
    fb_index ix;
    CHECK_OK(fb__index_init(&ix, 0));
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < K; i++) {
        keys[i] = fb__key_make(1 + (uint32_t)(i % 7), 128 + 8 * (uint64_t)i);
    }
    size_t count = 0;
    for (int step = 0; step < 200000; step++) {
        int i = (int)(rnd(&x) % K);
        int op = (int)(rnd(&x) % 3);
        if (op < 2) {
            fb_index_entry e = {keys[i], (uint64_t)step, (uint32_t)i, (uint32_t)step};
            int replaced = -1;
            CHECK_OK(fb__index_put(&ix, &e, NULL, &replaced));
            CHECK_EQ(replaced, present[i]);
            count += !present[i];
            present[i] = 1;
            cookie[i] = (uint32_t)step;
        } else {
            fb_index_entry old;
            CHECK_EQ(fb__index_remove(&ix, keys[i], &old), present[i]);
            if (present[i]) {
                CHECK_EQ(old.cookie, cookie[i]);
                count--;
            }
            present[i] = 0;
        }
        if (step % 10000 == 0) {
            for (int j = 0; j < K; j++) {
                fb_index_entry *e = fb__index_find(&ix, keys[j]);
                CHECK_EQ(e != NULL, present[j]);
                if (e != NULL) {
                    CHECK_EQ(e->cookie, cookie[j]);
                }
            }
        }
    }
    CHECK_EQ(ix.count, count);
    size_t pos = 0, seen = 0;
    while (fb__index_next(&ix, &pos) != NULL) {
        seen++;
    }
    CHECK_EQ(seen, count);
    CHECK(fb__index_find(&ix, 0) == NULL);
    fb_index_entry zero = {0, 0, 0, 0};
    CHECK_RC(fb__index_put(&ix, &zero, NULL, NULL), FB_EINVAL);
    fb__index_free(&ix);
}

TEST(index_memory_budget)
{
    enum { N = 100000 };
    fb_index ix;
    CHECK_OK(fb__index_init(&ix, N));
    for (uint64_t i = 0; i < N; i++) {
        fb_index_entry e = {fb__key_make(1, 128 + 80 * i), 0, 0, 0};
        CHECK_OK(fb__index_put(&ix, &e, NULL, NULL));
    }
    /* Sized at open for N records: at most 32 bytes a record. */
    CHECK(fb__index_memory(&ix) <= 32u * N);
    CHECK_EQ(sizeof(fb_index_entry), 24);
    fb__index_free(&ix);
}

int main(void)
{
    RUN(index_matches_model);
    RUN(index_memory_budget);
    return TEST_REPORT();
}
