/*
 * bench_cache - the image cache (src/cache.c, S3-FIFO, sharded) against a
 * plain LRU implemented here, on the workloads of issue 6:
 *
 *   miss   miss ratio on Zipf traces (alpha 0.8, 1.0, 1.2; 1 M requests over
 *          100 k objects) with object sizes drawn from a log-normal fitted
 *          to real WebP sizes (--sizes FILE, one byte count per line), at
 *          cache sizes of 0.1% .. 10% of the working set's bytes; and the
 *          same alpha = 1.0 trace with a one-off scan of 50 k new objects in
 *          the middle (misses counted on the Zipf requests only).
 *   hits   hit-path throughput (get + release of cached keys, Zipf 1.0) with
 *          1 and 2 threads, against the same LRU behind one mutex.
 *
 * The cache runs its real code path: a miss allocates an fb_buf of the
 * object's size (never written, so it costs address space, not memory) and
 * puts it. The LRU admits the same objects (up to 1/8 of its capacity).
 * Results: a table on stdout, CSV files in --out (bench/results/cache).
 *
 * Usage: bench_cache --sizes FILE [--out DIR] [--only miss|hits]
 *                    [--requests N] [--objects N] [--hit-ops N]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cache.h"
#include "util/buf.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double rnd_unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n);
    if (p == NULL) {
        fprintf(stderr, "bench_cache: out of memory\n");
        exit(1);
    }
    return p;
}

/* Store-like keys: block << 40 | offset, a thousand images per block. */
static uint64_t key_of(uint32_t id)
{
    return ((uint64_t)(id / 1000 + 1) << 40) | ((uint64_t)(id % 1000) * 65536 + 4096);
}

/* ---- workload ----------------------------------------------------------- */

typedef struct lognormal {
    double mu, sigma;
    size_t n;
    double mean; /* of the sample, bytes */
} lognormal;

static int fit_sizes(const char *path, lognormal *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "bench_cache: %s: %s\n", path, strerror(errno));
        return -1;
    }
    double s = 0, s2 = 0, sum = 0;
    size_t n = 0;
    unsigned long long v;
    while (fscanf(f, "%llu", &v) == 1) {
        if (v == 0) {
            continue;
        }
        double l = log((double)v);
        s += l;
        s2 += l * l;
        sum += (double)v;
        n++;
    }
    fclose(f);
    if (n < 10) {
        fprintf(stderr, "bench_cache: %s: need at least 10 sizes, found %zu\n", path, n);
        return -1;
    }
    out->n = n;
    out->mu = s / (double)n;
    out->sigma = sqrt(s2 / (double)n - out->mu * out->mu);
    out->mean = sum / (double)n;
    return 0;
}

/* Sizes of objects 0..n-1, log-normal, clamped to [64 B, 8 MiB]. */
static uint32_t *make_sizes(const lognormal *ln, size_t n, uint64_t seed)
{
    uint32_t *sz = xmalloc(n * sizeof *sz);
    for (size_t i = 0; i < n; i++) {
        /* Box-Muller */
        double u1 = rnd_unit(&seed), u2 = rnd_unit(&seed);
        double z = sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(2 * M_PI * u2);
        double v = exp(ln->mu + ln->sigma * z);
        sz[i] = (uint32_t)(v < 64 ? 64 : v > 8388608 ? 8388608 : v);
    }
    return sz;
}

/* Zipf(alpha) over n ranks; rank r -> object perm[r] so popularity is not
 * correlated with ids (and keys). */
static uint32_t *make_zipf_trace(size_t n, double alpha, size_t len, uint64_t seed)
{
    double *cdf = xmalloc(n * sizeof *cdf);
    uint32_t *perm = xmalloc(n * sizeof *perm);
    uint32_t *trace = xmalloc(len * sizeof *trace);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        total += 1.0 / pow((double)(i + 1), alpha);
        cdf[i] = total;
        perm[i] = (uint32_t)i;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd(&seed) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < len; i++) {
        double u = rnd_unit(&seed) * total;
        size_t lo = 0, hi = n - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        trace[i] = perm[lo];
    }
    free(cdf);
    free(perm);
    return trace;
}

/* ---- the baseline: a plain LRU ------------------------------------------ */

/* Simulation LRU over dense object ids: a doubly linked list in arrays. */
typedef struct lru_sim {
    uint32_t *prev, *next;
    uint8_t *in;
    uint32_t head, tail; /* NIL when empty */
    uint64_t bytes, cap, max_obj;
    const uint32_t *size;
} lru_sim;

#define NIL UINT32_MAX

static void lru_unlink(lru_sim *l, uint32_t id)
{
    if (l->prev[id] != NIL) {
        l->next[l->prev[id]] = l->next[id];
    } else {
        l->head = l->next[id];
    }
    if (l->next[id] != NIL) {
        l->prev[l->next[id]] = l->prev[id];
    } else {
        l->tail = l->prev[id];
    }
}

static void lru_push(lru_sim *l, uint32_t id)
{
    l->prev[id] = NIL;
    l->next[id] = l->head;
    if (l->head != NIL) {
        l->prev[l->head] = id;
    } else {
        l->tail = id;
    }
    l->head = id;
}

/* Returns 1 on a hit. */
static int lru_access(lru_sim *l, uint32_t id)
{
    if (l->in[id]) {
        lru_unlink(l, id);
        lru_push(l, id);
        return 1;
    }
    uint64_t sz = l->size[id];
    if (sz > l->max_obj) {
        return 0;
    }
    while (l->bytes + sz > l->cap && l->tail != NIL) {
        uint32_t v = l->tail;
        lru_unlink(l, v);
        l->in[v] = 0;
        l->bytes -= l->size[v];
    }
    lru_push(l, id);
    l->in[id] = 1;
    l->bytes += sz;
    return 0;
}

/* ---- miss ratios -------------------------------------------------------- */

typedef struct result {
    uint64_t reqs, misses, req_bytes, miss_bytes;
    uint64_t win_reqs, win_misses; /* requests [win_from, win_to) of the trace */
    double seconds;
} result;

typedef struct replay {
    const uint32_t *trace;
    size_t len;
    const uint32_t *size;
    size_t nobj; /* ids below it are Zipf objects, the rest scan objects */
    size_t win_from, win_to;
} replay;

static void count(result *r, const replay *p, size_t i, int hit)
{
    uint32_t id = p->trace[i];
    if (id >= p->nobj) {
        return;
    }
    r->reqs++;
    r->req_bytes += p->size[id];
    if (!hit) {
        r->misses++;
        r->miss_bytes += p->size[id];
    }
    if (i >= p->win_from && i < p->win_to) {
        r->win_reqs++;
        r->win_misses += !hit;
    }
}

/* Replays p through the real cache. */
static void run_fb(const replay *p, uint64_t cap, result *r)
{
    fb_cache *c = NULL;
    memset(r, 0, sizeof *r);
    if (fb__cache_new(cap, 0, &c) != 0) {
        fprintf(stderr, "bench_cache: fb__cache_new: %s\n", fb_last_error());
        exit(1);
    }
    double t0 = now();
    for (size_t i = 0; i < p->len; i++) {
        uint32_t id = p->trace[i];
        uint64_t key = key_of(id);
        fb_buf *b = fb__cache_get(c, key);
        int hit = b != NULL;
        if (!hit) {
            b = fb__buf_new(p->size[id]);
            if (b == NULL) {
                fprintf(stderr, "bench_cache: out of memory\n");
                exit(1);
            }
            fb__cache_put(c, key, b);
        }
        fb_buf_release(b);
        count(r, p, i, hit);
    }
    r->seconds = now() - t0;
    fb__cache_free(c);
}

/* Replays p through an LRU of cap bytes admitting objects up to max_obj. */
static void run_lru(const replay *p, size_t nids, uint64_t cap, uint64_t max_obj, result *r)
{
    lru_sim l = {.head = NIL, .tail = NIL, .cap = cap, .max_obj = max_obj, .size = p->size};
    l.prev = xmalloc(nids * sizeof *l.prev);
    l.next = xmalloc(nids * sizeof *l.next);
    l.in = xmalloc(nids);
    memset(r, 0, sizeof *r);
    double t0 = now();
    for (size_t i = 0; i < p->len; i++) {
        count(r, p, i, lru_access(&l, p->trace[i]));
    }
    r->seconds = now() - t0;
    free(l.prev);
    free(l.next);
    free(l.in);
}

/* The admission limit the cache applies at capacity cap. */
static uint64_t cache_max_object(uint64_t cap)
{
    fb_cache *c = NULL;
    if (fb__cache_new(cap, 0, &c) != 0) {
        fprintf(stderr, "bench_cache: fb__cache_new: %s\n", fb_last_error());
        exit(1);
    }
    uint64_t m = fb__cache_max_object(c);
    fb__cache_free(c);
    return m;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0;
}

static void miss_bench(const lognormal *ln, size_t nobj, size_t nreq, FILE *csv)
{
    const double alphas[] = {0.8, 1.0, 1.2};
    const double fracs[] = {0.001, 0.003, 0.01, 0.03, 0.10};
    const size_t nscan = nobj / 2;
    uint32_t *size = make_sizes(ln, nobj + nscan, 0x5eed5eedull);
    uint64_t ws = 0;
    for (size_t i = 0; i < nobj; i++) {
        ws += size[i];
    }
    printf("working set: %zu objects, %.1f MiB (mean %.1f KiB; log-normal mu %.3f sigma %.3f "
           "fitted to %zu WebPs, mean %.1f KiB)\n\n",
           nobj, (double)ws / 1048576, (double)ws / (double)nobj / 1024, ln->mu, ln->sigma, ln->n,
           ln->mean / 1024);
    fprintf(csv, "trace,alpha,cache_pct,cache_bytes,policy,max_object,requests,misses,miss_ratio,"
                 "byte_miss_ratio,window_requests,window_miss_ratio,sim_seconds\n");
    printf("%-12s %5s %7s | %7s %7s %7s | %7s %7s %7s %7s | %7s %7s\n", "trace", "cache", "MiB",
           "LRU", "S3-FIFO", "", "LRU", "S3-FIFO", "", "LRU/8", "LRU", "S3-FIFO");
    printf("%-12s %5s %7s | %7s %7s %7s | %7s %7s %7s %7s | %7s %7s\n", "", "% ws", "", "miss",
           "miss", "vs LRU", "bytemis", "bytemis", "vs LRU", "bytemis", "window", "window");
    for (int scan = 0; scan <= 1; scan++) {
        for (size_t a = 0; a < sizeof alphas / sizeof *alphas; a++) {
            if (scan && alphas[a] != 1.0) {
                continue;
            }
            uint32_t *zipf = make_zipf_trace(nobj, alphas[a], nreq, 0xa11ce + a);
            replay p = {.trace = zipf, .len = nreq, .size = size, .nobj = nobj};
            uint32_t *scanned = NULL;
            if (scan) {
                /* The scan: nscan never-seen objects, once each, mid-trace. */
                p.len = nreq + nscan;
                scanned = xmalloc(p.len * sizeof *scanned);
                memcpy(scanned, zipf, nreq / 2 * sizeof *scanned);
                for (size_t i = 0; i < nscan; i++) {
                    scanned[nreq / 2 + i] = (uint32_t)(nobj + i);
                }
                memcpy(scanned + nreq / 2 + nscan, zipf + nreq / 2,
                       (nreq - nreq / 2) * sizeof *scanned);
                p.trace = scanned;
            }
            /* The window: the Zipf requests right after the middle (after
             * the scan, when there is one), where a flushed cache shows. */
            p.win_from = nreq / 2 + (scan ? nscan : 0);
            p.win_to = p.win_from + nreq / 10;
            char name[32];
            snprintf(name, sizeof name, "zipf%.1f%s", alphas[a], scan ? "+scan" : "");
            for (size_t f = 0; f < sizeof fracs / sizeof *fracs; f++) {
                uint64_t cap = (uint64_t)((double)ws * fracs[f]);
                uint64_t admit = cache_max_object(cap);
                result rs[3];
                const char *pol[3] = {"lru", "s3fifo", "lru_cap8"};
                const uint64_t maxobj[3] = {admit, admit, cap / 8};
                run_lru(&p, nobj + nscan, cap, admit, &rs[0]);
                run_fb(&p, cap, &rs[1]);
                run_lru(&p, nobj + nscan, cap, cap / 8, &rs[2]);
                double ml = ratio(rs[0].misses, rs[0].reqs), mf = ratio(rs[1].misses, rs[1].reqs);
                double bl = ratio(rs[0].miss_bytes, rs[0].req_bytes);
                double bf = ratio(rs[1].miss_bytes, rs[1].req_bytes);
                double b8 = ratio(rs[2].miss_bytes, rs[2].req_bytes);
                printf("%-12s %5.1f %7.1f | %7.4f %7.4f %+6.1f%% | %7.4f %7.4f %+6.1f%% %7.4f | "
                       "%7.4f %7.4f\n",
                       name, fracs[f] * 100, (double)cap / 1048576, ml, mf, (mf / ml - 1) * 100, bl,
                       bf, (bf / bl - 1) * 100, b8, ratio(rs[0].win_misses, rs[0].win_reqs),
                       ratio(rs[1].win_misses, rs[1].win_reqs));
                for (int q = 0; q < 3; q++) {
                    fprintf(csv,
                            "%s,%.1f,%.1f,%" PRIu64 ",%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64
                            ",%.6f,%.6f,%" PRIu64 ",%.6f,%.3f\n",
                            name, alphas[a], fracs[f] * 100, cap, pol[q], maxobj[q], rs[q].reqs,
                            rs[q].misses, ratio(rs[q].misses, rs[q].reqs),
                            ratio(rs[q].miss_bytes, rs[q].req_bytes), rs[q].win_reqs,
                            ratio(rs[q].win_misses, rs[q].win_reqs), rs[q].seconds);
                }
                fflush(stdout);
            }
            free(scanned);
            free(zipf);
        }
    }
    printf("\nmiss: fraction of (Zipf) requests missed; bytemis: fraction of requested bytes "
           "missed;\nvs LRU: relative change, negative = fewer misses. LRU admits what the cache "
           "admits\n(1/8 of a shard); LRU/8 admits up to 1/8 of the whole capacity. window: miss "
           "ratio of the\n%zu requests after the middle of the trace (after the scan in +scan: "
           "%zu one-off objects,\nnot counted).\n\n",
           nreq / 10, nscan);
    free(size);
}

/* ---- hit-path throughput ------------------------------------------------ */

/* The baseline for concurrency: an LRU behind one mutex, whose hit moves
 * the entry to the head. Keys live in a static open-addressing table (the
 * throughput run is all hits, so nothing is ever deleted from it). */
typedef struct lru_mt {
    pthread_mutex_t lock;
    uint64_t *keys;
    uint32_t *slot_id; /* table slot -> entry index */
    size_t mask;
    uint32_t *prev, *next;
    uint32_t head, tail;
    fb_buf **bufs;
} lru_mt;

static uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static fb_buf *lru_mt_get(lru_mt *l, uint64_t key)
{
    fb_buf *b = NULL;
    pthread_mutex_lock(&l->lock);
    for (size_t i = mix64(key) & l->mask;; i = (i + 1) & l->mask) {
        if (l->slot_id[i] == NIL) {
            break;
        }
        if (l->keys[i] == key) {
            uint32_t id = l->slot_id[i];
            if (l->head != id) {
                /* unlink (id is not the head, so prev exists) and push */
                l->next[l->prev[id]] = l->next[id];
                if (l->next[id] != NIL) {
                    l->prev[l->next[id]] = l->prev[id];
                } else {
                    l->tail = l->prev[id];
                }
                l->prev[id] = NIL;
                l->next[id] = l->head;
                l->prev[l->head] = id;
                l->head = id;
            }
            b = fb_buf_retain(l->bufs[id]);
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return b;
}

/* The three things a hit loop can measure. */
enum { POL_S3FIFO, POL_LRU, POL_REFCOUNT, NPOL };
static const char *const policy_name[NPOL] = {"s3fifo_sharded", "lru_one_mutex", "refcount_only"};

typedef struct hit_worker {
    pthread_t thread;
    int policy;
    fb_cache *cache;
    lru_mt *lru;
    const uint64_t *trace;
    const uint32_t *ids; /* the same trace as object numbers (refcount_only) */
    size_t len, ops, start;
    uint64_t hits;
    double seconds, cpu; /* wall and thread CPU time */
    pthread_barrier_t *barrier;
} hit_worker;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *hit_loop(void *arg)
{
    hit_worker *w = arg;
    uint64_t hits = 0;
    size_t j = w->start;
    pthread_barrier_wait(w->barrier);
    double t0 = now(), c0 = thread_cpu();
    for (size_t i = 0; i < w->ops; i++) {
        fb_buf *b = w->policy == POL_S3FIFO ? fb__cache_get(w->cache, w->trace[j])
                    : w->policy == POL_LRU  ? lru_mt_get(w->lru, w->trace[j])
                                            : fb_buf_retain(w->lru->bufs[w->ids[j]]);
        hits += b != NULL;
        fb_buf_release(b);
        if (++j == w->len) {
            j = 0;
        }
    }
    w->seconds = now() - t0;
    w->cpu = thread_cpu() - c0;
    w->hits = hits;
    return NULL;
}

typedef struct hit_result {
    double per_s;       /* lookups per wall-clock second, all threads */
    double per_cpu_s;   /* lookups per CPU second: the cost of one lookup */
    double parallelism; /* CPU seconds / wall seconds: cores actually used */
} hit_result;

/* nthreads threads running policy on c or l, each doing ops lookups. */
static hit_result run_hits(int policy, fb_cache *c, lru_mt *l, const uint64_t *trace,
                           const uint32_t *ids, size_t len, int nthreads, size_t ops)
{
    hit_worker w[8];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        w[i] = (hit_worker){.policy = policy,
                            .cache = c,
                            .lru = l,
                            .trace = trace,
                            .ids = ids,
                            .len = len,
                            .ops = ops,
                            .start = (size_t)i * (len / 2),
                            .barrier = &barrier};
        pthread_create(&w[i].thread, NULL, hit_loop, &w[i]);
    }
    double slowest = 0, cpu = 0;
    uint64_t hits = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].thread, NULL);
        slowest = w[i].seconds > slowest ? w[i].seconds : slowest;
        cpu += w[i].cpu;
        hits += w[i].hits;
    }
    pthread_barrier_destroy(&barrier);
    if (hits != (uint64_t)nthreads * ops) {
        fprintf(stderr, "bench_cache: %" PRIu64 " of %zu lookups hit; expected all\n", hits,
                (size_t)nthreads * ops);
        exit(1);
    }
    double total = (double)nthreads * (double)ops;
    return (hit_result){total / slowest, total / cpu, cpu / slowest};
}

static int cmp_hit(const void *a, const void *b)
{
    double x = ((const hit_result *)a)->per_s, y = ((const hit_result *)b)->per_s;
    return (x > y) - (x < y);
}

static void hits_bench(size_t ops, FILE *csv)
{
    /* 256 MiB (the server's default: 16 shards), 8192 cached images of
     * 16 KiB, Zipf 1.0 over them. */
    enum { NOBJ = 8192, OBJ = 16384, TRACE = 1 << 20, REPEAT = 5 };
    fb_cache *c = NULL;
    if (fb__cache_new(256u << 20, 0, &c) != 0) {
        fprintf(stderr, "bench_cache: fb__cache_new: %s\n", fb_last_error());
        exit(1);
    }
    lru_mt l = {.head = NIL, .tail = NIL};
    pthread_mutex_init(&l.lock, NULL);
    l.mask = NOBJ * 4 - 1;
    l.keys = xmalloc((l.mask + 1) * sizeof *l.keys);
    l.slot_id = xmalloc((l.mask + 1) * sizeof *l.slot_id);
    memset(l.slot_id, 0xff, (l.mask + 1) * sizeof *l.slot_id);
    l.prev = xmalloc(NOBJ * sizeof *l.prev);
    l.next = xmalloc(NOBJ * sizeof *l.next);
    l.bufs = xmalloc(NOBJ * sizeof *l.bufs);
    for (uint32_t id = 0; id < NOBJ; id++) {
        fb_buf *b = fb__buf_new(OBJ);
        if (b == NULL) {
            fprintf(stderr, "bench_cache: out of memory\n");
            exit(1);
        }
        fb__cache_put(c, key_of(id), b);
        l.bufs[id] = b; /* the LRU keeps the creation reference */
        size_t i = mix64(key_of(id)) & l.mask;
        while (l.slot_id[i] != NIL) {
            i = (i + 1) & l.mask;
        }
        l.keys[i] = key_of(id);
        l.slot_id[i] = id;
        l.prev[id] = NIL;
        l.next[id] = l.head;
        if (l.head != NIL) {
            l.prev[l.head] = id;
        } else {
            l.tail = id;
        }
        l.head = id;
    }
    uint32_t *ids = make_zipf_trace(NOBJ, 1.0, TRACE, 0xbeef);
    uint64_t *trace = xmalloc(TRACE * sizeof *trace);
    for (size_t i = 0; i < TRACE; i++) {
        trace[i] = key_of(ids[i]);
    }

    /* Interleaved repetitions after a warm-up of each, so that neither side
     * pays alone for a cold start or a burst of load on the host.
     * refcount_only is no cache at all: each lookup is only the reference
     * taken and dropped on the object's buffer, which any cache that hands
     * out shared reference-counted bytes must do. The buffers are the
     * cache's, so their counts are spread over per-CPU cells as the cache's
     * hits see them: this is the cost of the reference alone. */
    hit_result runs[NPOL][3][REPEAT], res[NPOL][3]; /* [policy][threads] */
    for (int p = 0; p < NPOL; p++) {
        run_hits(p, c, &l, trace, ids, TRACE, 2, ops / 4);
    }
    for (int r = 0; r < REPEAT; r++) {
        for (int p = 0; p < NPOL; p++) {
            for (int t = 1; t <= 2; t++) {
                runs[p][t][r] = run_hits(p, c, &l, trace, ids, TRACE, t, ops);
            }
        }
    }
    for (int p = 0; p < NPOL; p++) {
        for (int t = 1; t <= 2; t++) {
            qsort(runs[p][t], REPEAT, sizeof runs[p][t][0], cmp_hit);
            res[p][t] = runs[p][t][REPEAT / 2];
        }
    }
    fprintf(csv, "policy,threads,lookups_per_s,lookups_per_cpu_s,parallelism,scaling_vs_1_thread,"
                 "vs_lru\n");
    printf("hit path: get+release of cached keys (Zipf 1.0 over %d images of %d KiB), run with the "
           "median rate of %d,\n%zu lookups per thread. per CPU-s: lookups per CPU second (the "
           "cost of one); cores: CPU time / wall time.\n",
           NOBJ, OBJ / 1024, REPEAT, ops);
    printf("%-16s %7s %12s %12s %6s %12s %8s\n", "policy", "threads", "lookups/s", "per CPU-s",
           "cores", "vs 1 thread", "vs LRU");
    for (int p = 0; p < NPOL; p++) {
        for (int t = 1; t <= 2; t++) {
            const hit_result *v = &res[p][t];
            printf("%-16s %7d %10.2f M %10.2f M %6.2f %11.2fx %7.2fx\n", policy_name[p], t,
                   v->per_s / 1e6, v->per_cpu_s / 1e6, v->parallelism, v->per_s / res[p][1].per_s,
                   v->per_s / res[POL_LRU][t].per_s);
            fprintf(csv, "%s,%d,%.0f,%.0f,%.3f,%.3f,%.3f\n", policy_name[p], t, v->per_s,
                    v->per_cpu_s, v->parallelism, v->per_s / res[p][1].per_s,
                    v->per_s / res[POL_LRU][t].per_s);
        }
    }
    free(ids);
    free(trace);
    fb__cache_free(c);
    for (uint32_t id = 0; id < NOBJ; id++) {
        fb_buf_release(l.bufs[id]);
    }
    free(l.keys);
    free(l.slot_id);
    free(l.prev);
    free(l.next);
    free(l.bufs);
    pthread_mutex_destroy(&l.lock);
}

static FILE *open_csv(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_cache: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

int main(int argc, char **argv)
{
    const char *sizes = NULL, *out = "bench/results/cache", *only = NULL;
    size_t nreq = 1000000, nobj = 100000, hit_ops = 20000000;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--sizes") == 0 && v) {
            sizes = v;
        } else if (strcmp(argv[i], "--out") == 0 && v) {
            out = v;
        } else if (strcmp(argv[i], "--only") == 0 && v) {
            only = v;
        } else if (strcmp(argv[i], "--requests") == 0 && v) {
            nreq = strtoull(v, NULL, 10);
        } else if (strcmp(argv[i], "--objects") == 0 && v) {
            nobj = strtoull(v, NULL, 10);
        } else if (strcmp(argv[i], "--hit-ops") == 0 && v) {
            hit_ops = strtoull(v, NULL, 10);
        } else {
            fprintf(stderr, "usage: bench_cache --sizes FILE [--out DIR] [--only miss|hits] "
                            "[--requests N] [--objects N] [--hit-ops N]\n");
            return 2;
        }
    }
    if (nreq < 2 || nobj < 2 || hit_ops < 1) {
        fprintf(stderr, "bench_cache: --requests, --objects need at least 2\n");
        return 2;
    }
    mkdir(out, 0777); /* its parent is the caller's business */
    if (only == NULL || strcmp(only, "miss") == 0) {
        lognormal ln;
        if (sizes == NULL) {
            fprintf(stderr, "bench_cache: --sizes FILE is needed for the miss-ratio runs\n");
            return 2;
        }
        if (fit_sizes(sizes, &ln) != 0) {
            return 1;
        }
        FILE *csv = open_csv(out, "miss_ratio.csv");
        miss_bench(&ln, nobj, nreq, csv);
        fclose(csv);
    }
    if (only == NULL || strcmp(only, "hits") == 0) {
        FILE *csv = open_csv(out, "hit_throughput.csv");
        hits_bench(hit_ops, csv);
        fclose(csv);
    }
    return 0;
}
