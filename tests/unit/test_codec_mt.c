/*
 * Concurrency test of the codecs (label "threads", run under TSan): one
 * keyring shared by several threads that encrypt and decrypt at once, each
 * also decrypting tokens the others made, and zstd from several threads
 * with their per-thread contexts, which are freed as the threads exit.
 */
#include "fb_test.h"

#include <pthread.h>

#include "fastblocks.h"
#include "codec_fernet.h"
#include "codec_zstd.h"

#define THREADS 4
#define ROUNDS 150
#define SHARED 8 /* tokens each thread publishes for the others */

static fb_fernet *ring;
static uint8_t shared_tok[THREADS][SHARED][200];
static size_t shared_len[THREADS][SHARED];
static pthread_barrier_t barrier;

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16) % 16 + 'a'; /* compressible */
    }
}

static void *worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint8_t src[3000], tok[3100], out[3100], z[3000];
    long failures = 0;
    /* Phase 1: tokens for the others, made concurrently. */
    for (int s = 0; s < SHARED; s++) {
        fill(src, 100, (uint32_t)(id * 100 + s));
        failures += fb__fernet_encrypt(ring, src, 100, id, shared_tok[id][s],
                                       sizeof shared_tok[id][s], &shared_len[id][s]) != 0;
    }
    pthread_barrier_wait(&barrier);
    /* Phase 2: everyone reads everyone's tokens while working on their own. */
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = 1 + (size_t)(r * 37 + id * 11) % sizeof src;
        fill(src, n, (uint32_t)(id * 1000 + r));
        size_t tl = 0, pl = 0, cl = 0;
        failures += fb__fernet_encrypt(ring, src, n, 7, tok, sizeof tok, &tl) != 0;
        failures += fb__fernet_decrypt(ring, tok, tl, out, sizeof out, &pl, NULL) != 0;
        failures += pl != n || memcmp(out, src, n) != 0;
        uintptr_t other = (id + 1 + (uintptr_t)r) % THREADS;
        int s = r % SHARED;
        uint8_t want[100];
        fill(want, 100, (uint32_t)(other * 100 + (uintptr_t)s));
        failures += fb__fernet_decrypt(ring, shared_tok[other][s], shared_len[other][s], out,
                                       sizeof out, &pl, NULL) != 0;
        failures += pl != 100 || memcmp(out, want, 100) != 0;
        int rc = fb__zstd_compress(src, n, 3, 0.02, z, sizeof z, &cl);
        if (rc == 0) {
            failures += fb__zstd_decompress(z, cl, out, n) != 0 || memcmp(out, src, n) != 0;
        } else {
            failures += rc != 1;
        }
    }
    return (void *)failures;
}

TEST(shared_keyring_and_thread_contexts)
{
    const char *keys[2] = {"cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=",
                           "Wx1Y0p5vNn2yQWQy3lXz6gq3hJ1m8B4U7cR0sT9eKkM="};
    CHECK_OK(fb__fernet_new(keys, 2, &ring));
    CHECK_EQ(pthread_barrier_init(&barrier, NULL, THREADS), 0);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    }
    long failures = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        failures += (long)r;
    }
    pthread_barrier_destroy(&barrier);
    fb__fernet_free(ring);
    CHECK_EQ(failures, 0);
}

int main(void)
{
    RUN(shared_keyring_and_thread_contexts);
    return TEST_REPORT();
}
