/*
 * Concurrent conversions (run under TSan in CI): threads start together so
 * that libvips' one-time set-up races, then each converts a mix of still,
 * animated, alpha and broken inputs; every output must be byte-identical to
 * the single-threaded one and every error the same code.
 */
#include "fb_test.h"

#include <pthread.h>

#include "image.h"

#define THREADS 4
#define ROUNDS 3

static const char *const files[] = {"photo.jpg", "anim.gif",   "alpha.png",   "orient-6.jpg",
                                    "anim.webp", "grey16.png", "chart-p3.png"};
#define NFILES (sizeof files / sizeof files[0])

static uint8_t *inputs[NFILES + 1];
static size_t input_len[NFILES + 1];
static fb_image_result expected[NFILES + 1];
static int expected_rc[NFILES + 1];
static pthread_barrier_t start;

static uint8_t *read_image(const char *name, size_t *len)
{
    char path[4096];
    const char *src = getenv("FB_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/data/images/%s", src != NULL ? src : ".", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "missing %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

typedef struct worker {
    int id;
    int conversions;
    int rc[NFILES + 1];
    fb_image_result first[NFILES + 1]; /* of round 0; later rounds must equal it */
    int mismatches;
    int bad_detail;
} worker;

static int same(const fb_image_result *a, const fb_image_result *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->webp, b->webp, a->len) == 0);
}

static void *run(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(&start);
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t k = 0; k <= NFILES; k++) {
            size_t i = (k + (size_t)w->id) % (NFILES + 1); /* threads start on different files */
            fb_image_result r;
            int rc = fb__image_to_webp(inputs[i], input_len[i], NULL, &r);
            w->conversions++;
            if (rc != 0 && strncmp(fb_last_error(), "jpeg: ", 6) != 0) {
                w->bad_detail++; /* the detail must be this thread's own error */
            }
            if (round == 0) {
                w->rc[i] = rc;
                w->first[i] = r;
                continue;
            }
            if (rc != w->rc[i] || !same(&r, &w->first[i])) {
                w->mismatches++;
            }
            fb__image_result_free(&r);
        }
    }
    return NULL;
}

TEST(concurrent_conversions_match_serial)
{
    static worker w[THREADS];
    pthread_t t[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        w[i].id = i;
        CHECK_EQ(pthread_create(&t[i], NULL, run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    pthread_barrier_destroy(&start);
    /* Now the serial reference, after the threads raced to initialise. */
    for (size_t f = 0; f <= NFILES; f++) {
        expected_rc[f] = fb__image_to_webp(inputs[f], input_len[f], NULL, &expected[f]);
    }
    CHECK_EQ(expected_rc[NFILES], FB_EIMAGE);
    for (size_t f = 0; f < NFILES; f++) {
        CHECK_OK(expected_rc[f]);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ(w[i].conversions, ROUNDS * (int)(NFILES + 1));
        CHECK_EQ(w[i].mismatches, 0);
        CHECK_EQ(w[i].bad_detail, 0);
        for (size_t f = 0; f <= NFILES; f++) {
            CHECK_EQ(w[i].rc[f], expected_rc[f]);
            CHECK(same(&w[i].first[f], &expected[f]));
            fb__image_result_free(&w[i].first[f]);
        }
    }
}

int main(int argc, char **argv)
{
    /* glib synchronises with its own uninstrumented locks and atomics, and
     * 2.74's slice allocator hands blocks between threads through its own
     * magazines: TSan reports both as races. The test re-executes itself
     * with plain malloc for glib (G_SLICE is read when glib is loaded) and
     * with TSan ignoring accesses made inside uninstrumented libraries, so
     * that what it checks is FastBlocks' own code. */
    if (getenv("G_SLICE") == NULL && argc > 0) {
        static char tsan[4096];
        const char *old = getenv("TSAN_OPTIONS");
        snprintf(tsan, sizeof tsan, "%s%signore_noninstrumented_modules=1", old ? old : "",
                 old ? ":" : "");
        setenv("TSAN_OPTIONS", tsan, 1);
        setenv("G_SLICE", "always-malloc", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 2;
    }
    for (size_t i = 0; i < NFILES; i++) {
        inputs[i] = read_image(files[i], &input_len[i]);
    }
    /* The last input is a truncated JPEG: an error in the middle of decoding. */
    inputs[NFILES] = read_image("photo.jpg", &input_len[NFILES]);
    input_len[NFILES] /= 2;
    /* The serial results are computed only after the threads have run, so
     * that the threads are the first to initialise libvips. */
    RUN(concurrent_conversions_match_serial);
    for (size_t i = 0; i <= NFILES; i++) {
        fb__image_result_free(&expected[i]);
    }
    for (size_t i = 0; i <= NFILES; i++) {
        free(inputs[i]);
    }
    return TEST_REPORT();
}
