/*
 * test_oom - out-of-memory torture of the library's allocation paths
 * (issue 10), in the manner of curl's torture mode and SQLite's malloc
 * tests: for each operation and each N = 1, 2, ... the Nth allocation the
 * operation makes through fb_set_allocator's hook fails, until the
 * operation completes without reaching N. Every failed run must
 *   - return FB_ENOMEM (or succeed, where an allocation is optional, such
 *     as caching a read), never another error and never crash;
 *   - leak nothing: the hook counts live allocations, and every iteration
 *     (open, operation, close, in a thread of its own so that thread-local
 *     codec contexts are freed too) must end where it started; the ASan
 *     build's LeakSanitizer checks the same from outside;
 *   - leave the store consistent once allocations work again: every
 *     acknowledged image reads back byte-identical, nothing deleted or
 *     refused comes back, also after reopening, and fb_verify is clean.
 * Each iteration works on a fresh copy of a template store, so that every
 * N sees the same starting state.
 */
#include "fb_test.h"
#include "store_helpers.h"

#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "codec_fernet.h"
#include "util/buf.h"
#include "util/error.h"

/* CHECK returns from a void function; the operations below return their
 * result code, so they record failures and carry on to clean up. */
#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fb_test_current_failed = 1;                                                            \
            fprintf(stderr, "%s:%d: EXPECT(%s) failed; detail: %s\n", __FILE__, __LINE__, #cond,   \
                    fb_last_error());                                                              \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------ */
/* The failing allocator                                                     */

static atomic_long live_allocs; /* allocations not yet freed */
static atomic_long armed_count; /* allocations since arm() */
static atomic_long fail_at;     /* 0: never fail; else the ordinal to fail */
static atomic_int injected;     /* the armed failure happened */

static int should_fail(void)
{
    long at = atomic_load(&fail_at);
    if (at == 0) {
        return 0;
    }
    if (atomic_fetch_add(&armed_count, 1) + 1 == at) {
        atomic_store(&injected, 1);
        if (getenv("FB_OOM_TRACE") != NULL) {
            /* Where the failing allocation comes from, for whoever fixes
             * what the sweep found (build with -rdynamic or use gdb for
             * names). */
            void *frames[16];
            int n = backtrace(frames, 16);
            fprintf(stderr, "--- allocation %ld fails here:\n", at);
            backtrace_symbols_fd(frames, n, 2);
        }
        return 1;
    }
    return 0;
}

static void *oom_malloc(size_t n)
{
    if (should_fail()) {
        return NULL;
    }
    void *p = malloc(n);
    if (p != NULL) {
        atomic_fetch_add(&live_allocs, 1);
    }
    return p;
}

static void *oom_realloc(void *p, size_t n)
{
    if (should_fail()) {
        return NULL;
    }
    void *q = realloc(p, n);
    if (q != NULL && p == NULL) {
        atomic_fetch_add(&live_allocs, 1);
    }
    return q;
}

static void oom_free(void *p)
{
    if (p != NULL) {
        atomic_fetch_sub(&live_allocs, 1);
    }
    free(p);
}

/* Makes the nth allocation from now fail (only that one). */
static void arm(long n)
{
    atomic_store(&armed_count, 0);
    atomic_store(&injected, 0);
    atomic_store(&fail_at, n);
}

static void disarm(void)
{
    atomic_store(&fail_at, 0);
}

/* ------------------------------------------------------------------------ */
/* Template stores and what they must contain                                */

enum { NIMG = 24, MAXLEN = 6000, MAXEXP = NIMG + 4 };

typedef struct expect {
    char id[FB_ID_LEN + 1];
    uint64_t seed;
    int live;
} expect;

typedef struct tmpl {
    char *dir;
    fb_options opts;
    expect exp[MAXEXP];
    size_t nexp;
} tmpl;

static char key1[FB_KEY_LEN + 1], key2[FB_KEY_LEN + 1];
static const char *keys_one[1] = {key1};
static const char *keys_rotated[2] = {key2, key1};

static tmpl t_plain, t_coded;

/* A payload that zstd can shrink by about half (random first half, a
 * 48-byte random motif repeated after it), so compressed stores really take
 * the zstd path and still fill several blocks. Allocated with plain malloc:
 * it is the test's, not the library's. */
static uint8_t *payload(uint64_t seed, size_t *len)
{
    size_t n = th_len(seed, MAXLEN);
    uint8_t *p = malloc(n);
    th_fill(p, n, seed);
    for (size_t i = n / 2; i < n; i++) {
        p[i] = p[i % 48];
    }
    *len = n;
    return p;
}

static int put_seed(fb_store *s, uint64_t seed, fb_meta *m)
{
    size_t n;
    uint8_t *p = payload(seed, &n);
    int rc = fb_put_webp(s, p, n, (uint32_t)seed, 7, m);
    free(p);
    return rc;
}

/* 0 if the id reads back exactly the payload of seed. */
static int read_seed(fb_store *s, const char *id, uint64_t seed)
{
    fb_addr a;
    int rc = fb_addr_from_id(id, &a);
    fb_buf *b = NULL;
    if (rc == 0) {
        rc = fb_get(s, &a, &b, NULL);
    }
    if (rc != 0) {
        return rc;
    }
    size_t n;
    uint8_t *p = payload(seed, &n);
    int same = fb_buf_len(b) == n && memcmp(fb_buf_data(b), p, n) == 0;
    free(p);
    fb_buf_release(b);
    return same ? 0 : FB_ECORRUPT;
}

/* Whether the store answers for e what e expects: its bytes (images whose
 * bytes the operation itself compared, marked live == 2, only that they
 * read), or FB_ENOTFOUND for a dead one. *got is the read's result. */
static int as_expected(fb_store *s, const expect *e, int *got)
{
    *got = e->live == 2 ? th_get_id(s, e->id) : read_seed(s, e->id, e->seed);
    return *got == (e->live ? 0 : FB_ENOTFOUND);
}

/*
 * Builds a template: NIMG images over several 16 KiB blocks (sealed ones
 * with index files, and an active one that is scanned at open), every
 * other image of the first half deleted so compaction has work to do.
 */
static int make_template(tmpl *t, const char *tag, int coded)
{
    t->dir = fb_test_tmpdir(tag);
    fb_options_init(&t->opts);
    t->opts.durability = FB_DURABILITY_NONE;
    t->opts.max_block_size = 16 * 1024;
    if (coded) {
        t->opts.compression = 1;
        t->opts.keys = keys_one;
        t->opts.nkeys = 1;
    }
    fb_store *s = NULL;
    int rc = fb_open(t->dir, &t->opts, &s);
    for (int i = 0; rc == 0 && i < NIMG; i++) {
        fb_meta m;
        t->exp[i].seed = 100 + (uint64_t)i;
        rc = put_seed(s, t->exp[i].seed, &m);
        memcpy(t->exp[i].id, m.id, sizeof m.id);
        t->exp[i].live = 1;
        if (rc == 0 && coded && !(m.flags & FB_META_ZSTD && m.flags & FB_META_FERNET)) {
            rc = fb__error(FB_EINVAL, "template image not compressed and encrypted");
        }
    }
    t->nexp = NIMG;
    for (int i = 0; rc == 0 && i < NIMG / 2; i += 2) {
        rc = th_delete_id(s, t->exp[i].id);
        t->exp[i].live = 0;
    }
    int rc2 = fb_close(s);
    return rc != 0 ? rc : rc2;
}

static void print_problem(void *ud, const fb_problem *p)
{
    (void)ud;
    fprintf(stderr, "  verify: %s at %llu: %s: %s\n", p->block, (unsigned long long)p->offset,
            fb_err_name(p->error), p->detail);
}

/*
 * The store in dir, opened with opts and working allocations, holds
 * exactly the live images of exp (byte-identical) and none of the others,
 * and fb_verify finds nothing.
 */
static void check_store(const char *dir, const fb_options *opts, const expect *exp, size_t nexp)
{
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, opts, &s));
    uint64_t live = 0;
    for (size_t i = 0; i < nexp; i++) {
        int rc;
        if (!as_expected(s, &exp[i], &rc)) {
            fprintf(stderr, "  image %s (seed %llu): %s, want %s; detail: %s\n", exp[i].id,
                    (unsigned long long)exp[i].seed, fb_err_name(rc),
                    exp[i].live ? "OK" : "ENOTFOUND", fb_last_error());
            fb_close(s);
            FB_TEST_FAIL_("store content differs from what was acknowledged");
        }
        live += exp[i].live != 0;
    }
    fb_stats st;
    CHECK_OK(fb_get_stats(s, &st));
    if (st.live_records != live) {
        fb_close(s);
        FB_TEST_FAIL_("live_records %llu, want %llu: a refused put or a failed delete leaked "
                      "into the store",
                      (unsigned long long)st.live_records, (unsigned long long)live);
    }
    fb_verify_result vr;
    int vrc = fb_verify(s, print_problem, NULL, NULL, &vr);
    fb_close(s);
    CHECK_RC(vrc, 0);
    CHECK_U64_EQ(vr.problems, 0);
}

/* ------------------------------------------------------------------------ */
/* The sweep                                                                 */

typedef struct iter iter;
typedef struct sweep {
    const char *name;
    const tmpl *t;       /* copied into a fresh directory per iteration; NULL: empty dir */
    fb_options opts;     /* how the operation and the check open the store */
    int (*op)(iter *it); /* runs the operation with arm()/disarm() around the call */
    int flags;           /* SW_* */
} sweep;

enum {
    SW_CHECK = 1, /* check_store after every iteration */
    SW_OPEN = 2,  /* the operation works on it->s, opened (unarmed) and closed around it */
};

struct iter {
    const sweep *sw;
    long n;
    char *dir;
    fb_store *s; /* with SW_OPEN */
    expect exp[MAXEXP];
    size_t nexp;
    int rc;
    int injected;
    int wrong_code; /* failed with another code than FB_ENOMEM */
};

static void *iteration(void *arg)
{
    iter *it = arg;
    const sweep *sw = it->sw;
    it->dir = fb_test_tmpdir("oom-work");
    it->nexp = 0;
    if (sw->t != NULL) {
        if (th_copy_store(sw->t->dir, it->dir) != 0) {
            fb_test_current_failed = 1;
            fprintf(stderr, "cannot copy template %s\n", sw->t->dir);
            goto out;
        }
        memcpy(it->exp, sw->t->exp, sizeof it->exp);
        it->nexp = sw->t->nexp;
    }
    if (sw->flags & SW_OPEN && fb_open(it->dir, &sw->opts, &it->s) != 0) {
        fb_test_current_failed = 1;
        fprintf(stderr, "unarmed fb_open failed: %s\n", fb_last_error());
        goto out;
    }
    it->rc = sw->op(it);
    disarm();
    fb_close(it->s);
    it->s = NULL;
    it->injected = atomic_load(&injected);
    if (fb_test_current_failed) {
        goto out;
    }
    if (it->rc != 0 && it->rc != FB_ENOMEM) {
        /* Misreported, but not unsafe: record it, check the store, and let
         * the sweep go on so one run lists every such site. */
        it->wrong_code = 1;
        fprintf(stderr, "%s returned %s with allocation %ld failed, want ENOMEM; detail: %s\n",
                sw->name, fb_err_name(it->rc), it->n, fb_last_error());
    }
    if (it->rc == FB_ENOMEM && !it->injected) {
        fb_test_current_failed = 1;
        fprintf(stderr, "%s returned ENOMEM with no allocation failed\n", sw->name);
        goto out;
    }
    if (sw->flags & SW_CHECK) {
        check_store(it->dir, &sw->opts, it->exp, it->nexp);
    }
out:
    fb_test_rmtree(it->dir);
    free(it->dir);
    return NULL;
}

/* Runs sw for N = 1, 2, ... until the operation no longer reaches its Nth
 * allocation; returns how many allocations it makes. */
static long run_sweep(const sweep *sw)
{
    enum { MAX_N = 20000 };
    long enomem = 0, wrong = 0;
    for (long n = 1; n <= MAX_N; n++) {
        iter it = {.sw = sw, .n = n};
        long before = atomic_load(&live_allocs);
        pthread_t th;
        if (pthread_create(&th, NULL, iteration, &it) != 0) {
            fb_test_current_failed = 1;
            fprintf(stderr, "pthread_create failed\n");
            return -1;
        }
        pthread_join(th, NULL);
        long after = atomic_load(&live_allocs);
        if (fb_test_current_failed) {
            fprintf(stderr, "  ... in %s with allocation %ld failed\n", sw->name, n);
            return -1;
        }
        if (after != before) {
            fb_test_current_failed = 1;
            fprintf(stderr, "%s leaked %ld allocations with allocation %ld failed\n", sw->name,
                    after - before, n);
            return -1;
        }
        enomem += it.rc == FB_ENOMEM;
        wrong += it.wrong_code;
        if (!it.injected) {
            if (it.rc != 0) {
                fb_test_current_failed = 1;
                fprintf(stderr, "%s failed without an injected failure: %s\n", sw->name,
                        fb_err_name(it.rc));
                return -1;
            }
            fprintf(stderr, "  %-22s %5ld allocations, %5ld ENOMEM returns, %ld misreported\n",
                    sw->name, n - 1, enomem, wrong);
            if (wrong != 0) {
                fb_test_current_failed = 1;
                return -1;
            }
            return n - 1;
        }
    }
    fb_test_current_failed = 1;
    fprintf(stderr, "%s still allocating after %d allocations\n", sw->name, MAX_N);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */

/* Adds an image the operation acknowledged to the expected set. */
static void add_expect(iter *it, const char *id, uint64_t seed, int live)
{
    expect *e = &it->exp[it->nexp++];
    memcpy(e->id, id, sizeof e->id);
    e->seed = seed;
    e->live = live;
}

static int op_open(iter *it)
{
    fb_store *s = NULL;
    arm(it->n);
    int rc = fb_open(it->dir, &it->sw->opts, &s);
    disarm();
    if (rc != 0 && s != NULL) {
        fb_test_current_failed = 1;
        fprintf(stderr, "failed fb_open left *out set\n");
    }
    fb_close(s);
    return rc;
}

/* Appends one image; acknowledged ones join the expected set. */
static int op_put_webp(iter *it)
{
    /* Large enough that the template's active block cannot take it: the
     * put rotates (seals a block, writes its index file) on the way. */
    size_t n;
    uint8_t *p = payload(901, &n);
    size_t big = (size_t)it->sw->opts.max_block_size - 1024;
    uint8_t *q = malloc(big);
    for (size_t i = 0; i < big; i++) {
        q[i] = p[i % n];
    }
    free(p);
    fb_meta m;
    arm(it->n);
    int rc = fb_put_webp(it->s, q, big, 11, 7, &m);
    disarm();
    free(q);
    if (rc == 0) {
        /* read_seed cannot regenerate this one; compare here instead. */
        EXPECT(th_get_id(it->s, m.id) == 0);
        /* Counted as live: check_store's live_records must include it. */
        add_expect(it, m.id, 0, 2); /* 2: present, bytes checked above */
    }
    return rc;
}

/* A small image of the seed kind, so check_store can compare its bytes. */
static int op_put_small(iter *it)
{
    fb_meta m;
    arm(it->n);
    int rc = put_seed(it->s, 777, &m);
    disarm();
    if (rc == 0) {
        add_expect(it, m.id, 777, 1);
    }
    return rc;
}

static uint8_t *jpeg;
static size_t jpeg_len;

/* fb_put of a real JPEG: sniff, libvips decode, WebP encode, zstd, Fernet,
 * append. Only the library's own allocations go through the hook. */
static int op_put_image(iter *it)
{
    fb_meta m;
    arm(it->n);
    int rc = fb_put(it->s, jpeg, jpeg_len, NULL, &m);
    disarm();
    fb_buf *b = NULL;
    if (rc == 0) {
        fb_addr a;
        EXPECT(fb_addr_from_id(m.id, &a) == 0);
        EXPECT(fb_get(it->s, &a, &b, NULL) == 0);
        EXPECT(fb_buf_len(b) == m.bytes && memcmp(fb_buf_data(b), "RIFF", 4) == 0);
        add_expect(it, m.id, 0, 2);
    }
    fb_buf_release(b);
    return rc;
}

/* A cold read (fresh store, empty cache): record read, CRC, HMAC, AES,
 * zstd, cache insert. */
static int op_get(iter *it)
{
    const expect *e = &it->exp[NIMG - 1];
    fb_addr a;
    EXPECT(fb_addr_from_id(e->id, &a) == 0);
    fb_buf *b = NULL;
    fb_meta m;
    arm(it->n);
    int rc = fb_get(it->s, &a, &b, &m);
    disarm();
    if (rc == 0) {
        size_t n;
        uint8_t *p = payload(e->seed, &n);
        EXPECT(fb_buf_len(b) == n && memcmp(fb_buf_data(b), p, n) == 0);
        free(p);
    } else if (b != NULL) {
        fb_test_current_failed = 1;
        fprintf(stderr, "failed fb_get returned a buffer\n");
    }
    fb_buf_release(b);
    /* A second read must work and match whatever the first left cached. */
    EXPECT(read_seed(it->s, e->id, e->seed) == 0);
    return rc;
}

/* Deletes a live image of the sealed block. Whatever the outcome, the
 * store must say the same thing before and after reopening. */
static int op_delete(iter *it)
{
    expect *e = &it->exp[1];
    fb_addr a;
    EXPECT(fb_addr_from_id(e->id, &a) == 0);
    fb_block_stats bs;
    arm(it->n);
    int rc = fb_delete(it->s, &a, &bs);
    disarm();
    fb_meta m;
    int st = fb_stat(it->s, &a, &m);
    if (rc == 0 && st != FB_ENOTFOUND) {
        fb_test_current_failed = 1;
        fprintf(stderr, "acknowledged delete still finds the image: %s\n", fb_err_name(st));
    }
    if (st != 0 && st != FB_ENOTFOUND) {
        fb_test_current_failed = 1;
        fprintf(stderr, "fb_stat after the delete: %s\n", fb_err_name(st));
    }
    /* A failed delete may or may not have taken effect, but reopening
     * must agree with what the open store said. */
    e->live = st == 0;
    return rc;
}

static int op_compact(iter *it)
{
    fb_compact_result res = {0};
    arm(it->n);
    int rc = fb_compact(it->s, 0.3, NULL, NULL, &res);
    disarm();
    if (rc == 0 && res.blocks_compacted == 0) {
        fb_test_current_failed = 1;
        fprintf(stderr, "compaction had nothing to do: the template is wrong\n");
    }
    /* The open store must be consistent too, not only after a reopen. */
    for (size_t i = 0; i < it->nexp && !fb_test_current_failed; i++) {
        int r;
        if (!as_expected(it->s, &it->exp[i], &r)) {
            fb_test_current_failed = 1;
            fprintf(stderr, "after failed compaction image %zu: %s (%s)\n", i, fb_err_name(r),
                    fb_last_error());
        }
    }
    return rc;
}

static int op_rekey(iter *it)
{
    fb_compact_result res = {0};
    arm(it->n);
    int rc = fb_rekey(it->s, NULL, NULL, &res);
    disarm();
    return rc;
}

/* Verification under memory pressure must say ENOMEM, never "corrupt". */
static int op_verify(iter *it)
{
    fb_verify_result vr;
    arm(it->n);
    int rc = fb_verify(it->s, print_problem, NULL, NULL, &vr);
    disarm();
    return rc;
}

static int op_list_blocks(iter *it)
{
    fb_block_stats *bs = NULL;
    size_t n = 99;
    arm(it->n);
    int rc = fb_list_blocks(it->s, &bs, &n);
    disarm();
    if (rc == 0) {
        EXPECT(n >= 2);
    }
    fb_free(bs);
    return rc;
}

static int op_keyring(iter *it)
{
    const char *keys[3] = {key1, key2, key1};
    fb_fernet *f = NULL;
    arm(it->n);
    int rc = fb__fernet_new(keys, 3, &f);
    disarm();
    if (rc == 0) {
        uint8_t tok[200], back[100];
        size_t tl, bl;
        EXPECT(fb__fernet_encrypt(f, "secret", 6, 1, tok, sizeof tok, &tl) == 0);
        EXPECT(fb__fernet_decrypt(f, tok, tl, back, sizeof back, &bl, NULL) == 0);
        EXPECT(bl == 6 && memcmp(back, "secret", 6) == 0);
    } else {
        EXPECT(f == NULL);
    }
    fb__fernet_free(f);
    return rc;
}

static int op_cache_new(iter *it)
{
    fb_cache *c = NULL;
    arm(it->n);
    int rc = fb__cache_new(4 << 20, 100, &c);
    disarm();
    if (rc != 0) {
        EXPECT(c == NULL);
    }
    fb__cache_free(c);
    return rc;
}

/*
 * Cache puts may drop an entry they cannot allocate for, but must never
 * lose or double a buffer reference: 600 puts of 200-byte buffers into a
 * 64 KiB cache allocate entry chunks, grow tables and evict (S3-FIFO with
 * its ghost queue) on the way; the leak check sees any reference left
 * behind once everything is released.
 */
static int op_cache_put(iter *it)
{
    enum { NB = 8, NPUT = 600 };
    fb_cache *c = NULL;
    EXPECT(fb__cache_new(64 * 1024, 0, &c) == 0);
    fb_buf *b[NB];
    for (int i = 0; i < NB; i++) {
        b[i] = fb__buf_new(200);
        EXPECT(b[i] != NULL);
        memset(fb__buf_mut(b[i]), i, 200);
    }
    arm(it->n);
    for (int i = 0; i < NPUT; i++) {
        /* Keys come back (replacements, ghost hits) and buffers are shared. */
        fb__cache_put(c, (uint64_t)(i % 211), b[i % NB]);
        if (i % 5 == 0) {
            fb_buf_release(fb__cache_get(c, (uint64_t)(i % 97)));
        }
    }
    disarm();
    for (uint64_t k = 0; k < 211; k++) {
        fb_buf *got = fb__cache_get(c, k);
        if (got != NULL) {
            /* The last put of key k in the loop used buffer index i % NB of the
             * largest i < NPUT with i % 211 == k. */
            uint64_t last = k + 211 * ((NPUT - 1 - k) / 211);
            EXPECT(got == b[last % NB]);
        }
        fb_buf_release(got);
    }
    fb__cache_free(c);
    for (int i = 0; i < NB; i++) {
        fb_buf_release(b[i]);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

TEST(setup_templates)
{
    CHECK_OK(fb_keygen(key1));
    CHECK_OK(fb_keygen(key2));
    CHECK_OK(make_template(&t_plain, "oom-plain", 0));
    CHECK_OK(make_template(&t_coded, "oom-coded", 1));
    check_store(t_plain.dir, &t_plain.opts, t_plain.exp, t_plain.nexp);
    check_store(t_coded.dir, &t_coded.opts, t_coded.exp, t_coded.nexp);
    const char *src = getenv("FB_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/images/photo.jpg", src ? src : ".");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    jpeg = malloc(1 << 20);
    jpeg_len = fread(jpeg, 1, 1 << 20, f);
    fclose(f);
    CHECK(jpeg_len > 1000);
}

/* Each sweep must see at least one failure, or it tested nothing. */
#define SWEEP(tmpl_, opts_, op_, flags_)                                                           \
    do {                                                                                           \
        sweep sw_ = {#op_ "/" #tmpl_, (tmpl_), (opts_), (op_), (flags_)};                          \
        long allocs_ = run_sweep(&sw_);                                                            \
        if (allocs_ < 0) {                                                                         \
            return;                                                                                \
        }                                                                                          \
        CHECK(allocs_ >= 1);                                                                       \
    } while (0)

TEST(oom_open)
{
    SWEEP(&t_plain, t_plain.opts, op_open, SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_open, SW_CHECK);
}

TEST(oom_open_creates)
{
    fb_options o = t_coded.opts;
    SWEEP(NULL, o, op_open, SW_CHECK);
}

TEST(oom_put_webp)
{
    SWEEP(&t_plain, t_plain.opts, op_put_small, SW_OPEN | SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_put_small, SW_OPEN | SW_CHECK);
    /* With a block rotation inside the put. */
    SWEEP(&t_plain, t_plain.opts, op_put_webp, SW_OPEN | SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_put_webp, SW_OPEN | SW_CHECK);
}

TEST(oom_put_image)
{
    SWEEP(&t_coded, t_coded.opts, op_put_image, SW_OPEN | SW_CHECK);
}

TEST(oom_get)
{
    SWEEP(&t_plain, t_plain.opts, op_get, SW_OPEN | SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_get, SW_OPEN | SW_CHECK);
}

TEST(oom_delete)
{
    SWEEP(&t_plain, t_plain.opts, op_delete, SW_OPEN | SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_delete, SW_OPEN | SW_CHECK);
}

TEST(oom_compact)
{
    SWEEP(&t_plain, t_plain.opts, op_compact, SW_OPEN | SW_CHECK);
    SWEEP(&t_coded, t_coded.opts, op_compact, SW_OPEN | SW_CHECK);
}

TEST(oom_rekey)
{
    fb_options o = t_coded.opts;
    o.keys = keys_rotated;
    o.nkeys = 2;
    SWEEP(&t_coded, o, op_rekey, SW_OPEN | SW_CHECK);
}

TEST(oom_verify)
{
    SWEEP(&t_coded, t_coded.opts, op_verify, SW_OPEN);
}

TEST(oom_list_blocks)
{
    SWEEP(&t_plain, t_plain.opts, op_list_blocks, SW_OPEN);
}

TEST(oom_keyring_and_cache)
{
    SWEEP(NULL, t_plain.opts, op_keyring, 0);
    SWEEP(NULL, t_plain.opts, op_cache_new, 0);
    SWEEP(NULL, t_plain.opts, op_cache_put, 0);
}

int main(void)
{
    /* Installed before any other library call and never removed: pointers
     * allocated under it are freed under it. */
    /* Hundreds of stores are opened and closed: on tmpfs their fsyncs
     * cost nothing, and durability is not what this test is about. */
    if (getenv("TMPDIR") == NULL && access("/dev/shm", W_OK) == 0) {
        setenv("TMPDIR", "/dev/shm", 1);
    }
    fb_allocator a = {oom_malloc, oom_realloc, oom_free};
    fb_set_allocator(&a);
    RUN(setup_templates);
    if (fb_test_failed == 0) {
        RUN(oom_open);
        RUN(oom_open_creates);
        RUN(oom_put_webp);
        RUN(oom_put_image);
        RUN(oom_get);
        RUN(oom_delete);
        RUN(oom_compact);
        RUN(oom_rekey);
        RUN(oom_verify);
        RUN(oom_list_blocks);
        RUN(oom_keyring_and_cache);
    }
    const tmpl *made[] = {&t_plain, &t_coded};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
        if (made[i]->dir != NULL) {
            fb_test_rmtree(made[i]->dir);
            free(made[i]->dir);
        }
    }
    free(jpeg);
    return TEST_REPORT();
}
