/*
 * cache - the bytes-bounded, sharded cache of plaintext images (see cache.h).
 *
 * Owns: the key -> fb_buf map, the eviction policy, the byte and entry
 * budgets and the hit/miss/eviction counters. It does not know where bytes
 * come from: the store reads, verifies and decodes records and calls put.
 *
 * Eviction: S3-FIFO (Yang et al., "FIFO queues are all you need for cache
 * eviction", SOSP 2023), chosen over SIEVE (NSDI 2024) because image traffic
 * is full of one-hit wonders and crawler scans: S3-FIFO's small FIFO (10% of
 * the budget) holds new objects on probation, so a one-off scan passes
 * through it and into the ghost queue without ever touching the main FIFO
 * where the popular images live. SIEVE has one queue whose hand must sweep
 * past every scanned object, clearing the visited bits of popular ones on
 * the way. Both make a hit cost only a counter update (no list moves, unlike
 * LRU), which is what lets hits scale.
 *
 *   - Every entry has a 2-bit frequency counter (0..3), incremented by hits.
 *   - A new key goes to the head of the small FIFO S, or straight to the main
 *     FIFO M if the ghost queue G remembers it (it was evicted from S
 *     recently, so it is not a one-hit wonder after all).
 *   - To make room: while S holds at least its share (10% of the bytes, or
 *     of the entries when there is an entry cap), its tail is examined: if
 *     it was hit while in S it moves to M with its counter reset, else it is
 *     evicted and its key goes to G. Otherwise M's tail is examined: hit
 *     since it was last examined -> back to M's head with the counter
 *     decremented, else evicted.
 *   - G remembers keys, not bytes, as many as the shard holds entries; it is
 *     a 4-way set-associative table of (key, insertion stamp), where a slot
 *     counts as forgotten once more than that many keys entered after it, so
 *     G needs neither a list nor deletions.
 *
 * Sharding: up to 16 shards by a hash of the key, each with its own mutex,
 * table, queues and an equal slice of the byte and entry budgets. A shard
 * gets at least 8 MiB (and 64 entries when capped), so small caches have
 * fewer shards (down to one) and keep the policy's precision; 64 MiB gets 8
 * shards, 128 MiB and more 16.
 *
 * Admission: an object larger than 1/8 of its shard's byte budget (that is,
 * capacity / (8 * shards)) is not cached: one such object would otherwise
 * flush a large part of the shard. Only fb_buf_len bytes are counted, not
 * the cache's own bookkeeping (about 90 bytes per entry, and 8 bytes per CPU
 * slot for the per-CPU reference count of each cached buffer).
 *
 * Hits write nothing that another core writes: each shard has one reader
 * lock per CPU slot (util/cpuslot.h); a hit takes only the lock of its CPU,
 * counts itself there and takes its reference in its CPU's cell of the
 * buffer's per-CPU count (fb__buf_spread, when the buffer is cached);
 * puts, evictions and removals take all of the shard's reader locks. A
 * popular image is read by every core at once: with one lock per shard and
 * one count per buffer, those two cache lines moved between the cores on
 * every hit, and 2 threads made 1.1-1.8x the hits of one. Entries are
 * allocated in chunks, so the entry costs no TLB miss of its own. Buffers
 * of evicted or removed entries are released after the shard's locks are
 * dropped (up to 32 per call, which is all but always all of them), so a
 * last reference rarely frees memory inside them.
 *
 * Coherence with deletes: see fb__cache_put_ticket.
 */
#include "cache.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/cpuslot.h"
#include "util/error.h"

#define MAX_SHARDS 16
#define SHARD_MIN_BYTES (8u << 20)
#define SHARD_MIN_ENTRIES 64
#define ADMIT_DIVISOR 8 /* objects above shard budget / 8 are not admitted */
#define SMALL_PERCENT 10
#define FREQ_MAX 3
#define INITIAL_BUCKETS 64 /* power of two */
#define GHOST_WAYS 4
#define CHUNK_ENTRIES 64 /* entries are allocated this many at a time */
#define GRAVE_MAX 32     /* buffers released after unlocking, per call */

enum { Q_SMALL, Q_MAIN };

typedef struct entry {
    uint64_t key;
    fb_buf *buf;
    uint64_t len;
    fb__cache_note note;
    struct entry *hnext;       /* hash chain; also links the free list */
    struct entry *prev, *next; /* queue: prev is toward the head (newer) */
    atomic_uchar freq;         /* hits under reader locks race: a lost bump is fine */
    uint8_t queue;
} entry;

typedef struct queue {
    entry *head, *tail; /* head newest, tail oldest */
    uint64_t bytes, count;
} queue;

/* Entries live in chunks so that a shard's entries share a few pages: a hit
 * then costs a TLB miss for the image's buffer only, not one more for its
 * entry, which malloc would put between the (large) image buffers. */
typedef struct chunk {
    struct chunk *next;
    entry entries[CHUNK_ENTRIES];
} chunk;

/* Buffers dropped under the lock, released after it: a last release may
 * free (munmap) a large buffer, which has no business inside the lock. */
typedef struct graveyard {
    fb_buf *bufs[GRAVE_MAX];
    int n;
} graveyard;

typedef struct ghost_slot {
    uint64_t key;
    uint64_t stamp; /* 0: empty */
} ghost_slot;

/* A reader lock and the counters of the hits and misses under it. */
typedef struct reader {
    alignas(64) pthread_mutex_t lock;
    uint64_t hits, misses;
} reader;

typedef struct shard {
    /* The first cache line holds all that a hit reads in the shard. */
    alignas(64) reader *readers; /* fb__cpu_slots() of them */
    entry **buckets;
    size_t nbuckets; /* power of two */
    uint64_t evictions;
    uint64_t removals; /* the ticket: bumped by every remove */
    queue small, main;
    uint64_t max_bytes, max_entries, max_obj;
    uint64_t small_bytes, small_entries; /* the small queue's share */
    ghost_slot *ghost;
    size_t ghost_sets; /* power of two, GHOST_WAYS slots each */
    uint64_t ghost_clock;
    chunk *chunks;
    entry *free_entries;
} shard;

/* The doorkeeper of fb__cache_second_miss: one bit per hashed key. */
#define SEEN_BITS (1u << 16)

struct fb_cache {
    shard *shards;
    void *shards_raw;  /* the allocation shards was aligned from */
    reader *readers;   /* nreaders per shard, shard by shard */
    void *readers_raw; /* the allocation readers was aligned from */
    unsigned nshards, nreaders;
    int disabled;
    uint64_t max_bytes;
    atomic_uint_fast64_t seen[SEEN_BITS / 64];
    atomic_uint seen_count; /* bits set since the last reset */
};

/* murmur3's finaliser: keys are block << 40 | offset, so their low bits
 * alone would put most keys of a block into few buckets. */
static uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static shard *shard_of(fb_cache *c, uint64_t h)
{
    /* Top bits pick the shard, low bits the bucket, so they stay independent. */
    return &c->shards[(h >> 56) & (c->nshards - 1)];
}

/* Hits and misses lock one reader of a shard, everything else all of them
 * in order (readers never hold two, so this cannot deadlock). */
static reader *read_lock(shard *s)
{
    reader *r = &s->readers[fb__cpu_slot()];
    pthread_mutex_lock(&r->lock);
    return r;
}

static void write_lock(fb_cache *c, shard *s)
{
    for (unsigned i = 0; i < c->nreaders; i++) {
        pthread_mutex_lock(&s->readers[i].lock);
    }
}

static void write_unlock(fb_cache *c, shard *s)
{
    for (unsigned i = c->nreaders; i-- > 0;) {
        pthread_mutex_unlock(&s->readers[i].lock);
    }
}

/* ---- queues ------------------------------------------------------------- */

static void queue_push_head(queue *q, entry *e)
{
    e->prev = NULL;
    e->next = q->head;
    if (q->head != NULL) {
        q->head->prev = e;
    } else {
        q->tail = e;
    }
    q->head = e;
    q->bytes += e->len;
    q->count++;
}

static void queue_unlink(queue *q, entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        q->head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        q->tail = e->prev;
    }
    e->prev = e->next = NULL;
    q->bytes -= e->len;
    q->count--;
}

static queue *queue_of(shard *s, const entry *e)
{
    return e->queue == Q_SMALL ? &s->small : &s->main;
}

static uint64_t shard_bytes(const shard *s)
{
    return s->small.bytes + s->main.bytes;
}

static uint64_t shard_count(const shard *s)
{
    return s->small.count + s->main.count;
}

/* ---- hash table --------------------------------------------------------- */

static entry **bucket_of(shard *s, uint64_t h)
{
    return &s->buckets[h & (s->nbuckets - 1)];
}

static entry *table_find(shard *s, uint64_t key, uint64_t h)
{
    for (entry *e = *bucket_of(s, h); e != NULL; e = e->hnext) {
        if (e->key == key) {
            return e;
        }
    }
    return NULL;
}

static void table_unlink(shard *s, entry *e)
{
    entry **pp = bucket_of(s, mix64(e->key));
    while (*pp != e) {
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    e->hnext = NULL;
}

/* ---- ghost queue -------------------------------------------------------- */

static uint64_t ghost_window(const shard *s)
{
    uint64_t n = shard_count(s);
    return n > 0 ? n : 1;
}

static bool ghost_live(const shard *s, const ghost_slot *g)
{
    return g->stamp != 0 && s->ghost_clock - g->stamp < ghost_window(s);
}

static ghost_slot *ghost_set(ghost_slot *table, size_t sets, uint64_t h)
{
    return &table[(h & (sets - 1)) * GHOST_WAYS];
}

/* The slot key should occupy in its set: its own, a forgotten one, or the
 * oldest. */
static ghost_slot *ghost_victim(const shard *s, ghost_slot *set, uint64_t key)
{
    ghost_slot *best = &set[0];
    for (int i = 0; i < GHOST_WAYS; i++) {
        if (set[i].stamp != 0 && set[i].key == key) {
            return &set[i];
        }
    }
    for (int i = 0; i < GHOST_WAYS; i++) {
        if (!ghost_live(s, &set[i])) {
            return &set[i];
        }
        if (set[i].stamp < best->stamp) {
            best = &set[i];
        }
    }
    return best;
}

static void ghost_add(shard *s, uint64_t key, uint64_t h)
{
    ghost_slot *g = ghost_victim(s, ghost_set(s->ghost, s->ghost_sets, h), key);
    g->key = key;
    g->stamp = ++s->ghost_clock;
}

/* Whether key was evicted from the small queue recently; forgets it. */
static bool ghost_take(shard *s, uint64_t key, uint64_t h)
{
    ghost_slot *set = ghost_set(s->ghost, s->ghost_sets, h);
    for (int i = 0; i < GHOST_WAYS; i++) {
        if (set[i].stamp != 0 && set[i].key == key) {
            bool live = ghost_live(s, &set[i]);
            set[i].stamp = 0;
            return live;
        }
    }
    return false;
}

/* Doubles the buckets (and the ghost with them, so that it can remember as
 * many keys as the shard holds) once the chains average more than one entry.
 * Out of memory only leaves the chains longer. */
static void table_maybe_grow(shard *s)
{
    if (shard_count(s) <= s->nbuckets || s->nbuckets > SIZE_MAX / 2 / sizeof(entry *)) {
        return;
    }
    size_t nb = s->nbuckets * 2, ns = s->ghost_sets * 2;
    entry **buckets = fb__calloc(nb, sizeof *buckets);
    ghost_slot *ghost = fb__calloc(ns, GHOST_WAYS * sizeof *ghost);
    if (buckets == NULL || ghost == NULL) {
        fb__free(buckets);
        fb__free(ghost);
        return;
    }
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->buckets[i];
        while (e != NULL) {
            entry *next = e->hnext;
            entry **b = &buckets[mix64(e->key) & (nb - 1)];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    for (size_t i = 0; i < s->ghost_sets * GHOST_WAYS; i++) {
        const ghost_slot *g = &s->ghost[i];
        if (ghost_live(s, g)) {
            *ghost_victim(s, ghost_set(ghost, ns, mix64(g->key)), g->key) = *g;
        }
    }
    fb__free(s->buckets);
    fb__free(s->ghost);
    s->buckets = buckets;
    s->nbuckets = nb;
    s->ghost = ghost;
    s->ghost_sets = ns;
}

/* ---- eviction ----------------------------------------------------------- */

static entry *entry_alloc(shard *s)
{
    if (s->free_entries == NULL) {
        chunk *c = fb__malloc(sizeof *c);
        if (c == NULL) {
            return NULL;
        }
        c->next = s->chunks;
        s->chunks = c;
        for (int i = 0; i < CHUNK_ENTRIES; i++) {
            c->entries[i].hnext = s->free_entries;
            s->free_entries = &c->entries[i];
        }
    }
    entry *e = s->free_entries;
    s->free_entries = e->hnext;
    return e;
}

/* The cache takes its reference on a buffer it caches, and spreads the
 * count: every core may hit it at once. */
static fb_buf *hold(fb_buf *b)
{
    fb_buf_retain(b);
    fb__buf_spread(b);
    return b;
}

/* The cache lets go of a buffer it holds: its count is gathered first (it
 * was spread by hold), else the last release could not see zero. */
static void let_go(fb_buf *b)
{
    fb__buf_gather(b);
    fb_buf_release(b);
}

static void grave_add(graveyard *g, fb_buf *b)
{
    if (g->n < GRAVE_MAX) {
        g->bufs[g->n++] = b;
    } else {
        let_go(b); /* only when one put evicts very many entries */
    }
}

static void bury(graveyard *g)
{
    for (int i = 0; i < g->n; i++) {
        let_go(g->bufs[i]);
    }
    g->n = 0;
}

static unsigned freq_of(entry *e)
{
    return atomic_load_explicit(&e->freq, memory_order_relaxed);
}

static void freq_set(entry *e, unsigned f)
{
    atomic_store_explicit(&e->freq, (unsigned char)f, memory_order_relaxed);
}

/* Takes e out of the shard; its buffer goes to the graveyard. */
static void drop(shard *s, entry *e, graveyard *g)
{
    table_unlink(s, e);
    queue_unlink(queue_of(s, e), e);
    grave_add(g, e->buf);
    e->buf = NULL;
    e->hnext = s->free_entries;
    s->free_entries = e;
}

static bool small_over_share(const shard *s)
{
    return s->small.bytes >= s->small_bytes ||
           (s->max_entries != 0 && s->small.count >= s->small_entries);
}

/* n * SMALL_PERCENT / 100 without overflowing for any n. */
static uint64_t small_share(uint64_t n)
{
    return n / 100 * SMALL_PERCENT + n % 100 * SMALL_PERCENT / 100;
}

/* Evicts one entry by S3-FIFO; false when the shard is empty. */
static bool evict_one(shard *s, graveyard *grave)
{
    entry *e;
    if (s->small.count > 0 && (small_over_share(s) || s->main.count == 0)) {
        while ((e = s->small.tail) != NULL) {
            if (freq_of(e) > 0) {
                queue_unlink(&s->small, e);
                freq_set(e, 0);
                e->queue = Q_MAIN;
                queue_push_head(&s->main, e);
                continue;
            }
            ghost_add(s, e->key, mix64(e->key));
            drop(s, e, grave);
            s->evictions++;
            return true;
        }
    }
    while ((e = s->main.tail) != NULL) {
        unsigned f = freq_of(e);
        if (f > 0) {
            freq_set(e, f - 1);
            queue_unlink(&s->main, e);
            queue_push_head(&s->main, e);
            continue;
        }
        drop(s, e, grave);
        s->evictions++;
        return true;
    }
    return false;
}

static bool over_budget(const shard *s, uint64_t extra_bytes, uint64_t extra_entries)
{
    if (shard_bytes(s) + extra_bytes > s->max_bytes) {
        return true;
    }
    return s->max_entries != 0 && shard_count(s) + extra_entries > s->max_entries;
}

/* ---- the API ------------------------------------------------------------ */

static unsigned shard_count_for(uint64_t max_bytes, uint64_t max_entries)
{
    unsigned n = MAX_SHARDS;
    while (n > 1 && (max_bytes / n < SHARD_MIN_BYTES ||
                     (max_entries != 0 && max_entries / n < SHARD_MIN_ENTRIES))) {
        n /= 2;
    }
    return n;
}

/*
 * Creates a cache of max_bytes (0 disables it: every get misses and put
 * admits nothing) holding at most max_entries images (0: no cap). The
 * budgets are split exactly across the shards (see the file comment).
 * Returns 0 and the cache in *out, FB_EINVAL without out, FB_ENOMEM.
 */
int fb__cache_new(uint64_t max_bytes, uint64_t max_entries, fb_cache **out)
{
    int rc = 0;
    unsigned locks = 0; /* readers whose mutex is initialised, in order */
    fb_cache *c = NULL;
    if (out == NULL) {
        return fb__error(FB_EINVAL, "fb__cache_new: out is NULL");
    }
    *out = NULL;
    /* Adaptive mutexes spin briefly before sleeping: a hit holds its reader
     * lock for a few dozen nanoseconds, and a put waiting for it should not
     * pay a futex sleep and wake-up. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    c = fb__calloc(1, sizeof *c);
    if (c == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory creating the cache");
        goto out;
    }
    c->disabled = max_bytes == 0;
    c->max_bytes = max_bytes;
    c->nshards = c->disabled ? 1 : shard_count_for(max_bytes, max_entries);
    c->nreaders = fb__cpu_slots();
    /* fb__malloc promises only malloc's alignment; shards and readers want
     * their own cache lines so that two cores never share one. */
    c->shards = fb__calloc_lines(c->nshards, sizeof(shard), &c->shards_raw);
    c->readers =
        fb__calloc_lines((size_t)c->nshards * c->nreaders, sizeof(reader), &c->readers_raw);
    if (c->shards == NULL || c->readers == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory creating the cache");
        goto out;
    }
    for (unsigned i = 0; i < c->nshards; i++) {
        shard *s = &c->shards[i];
        s->max_bytes = max_bytes / c->nshards + (i < max_bytes % c->nshards);
        s->max_entries = max_entries / c->nshards + (i < max_entries % c->nshards);
        s->max_obj = s->max_bytes / ADMIT_DIVISOR;
        s->small_bytes = small_share(s->max_bytes);
        s->small_entries = small_share(s->max_entries);
        s->nbuckets = INITIAL_BUCKETS;
        s->ghost_sets = INITIAL_BUCKETS / 2;
        s->buckets = fb__calloc(s->nbuckets, sizeof *s->buckets);
        s->ghost = fb__calloc(s->ghost_sets, GHOST_WAYS * sizeof *s->ghost);
        if (s->buckets == NULL || s->ghost == NULL) {
            rc = fb__error(FB_ENOMEM, "out of memory creating the cache");
            goto out;
        }
        s->readers = &c->readers[(size_t)i * c->nreaders];
        for (unsigned r = 0; r < c->nreaders; r++, locks++) {
            if (pthread_mutex_init(&s->readers[r].lock, &attr) != 0) {
                rc = fb__error(FB_ENOMEM, "cannot initialise a mutex of cache shard %u", i);
                goto out;
            }
        }
    }
    *out = c;
    c = NULL;
out:
    if (c != NULL) {
        for (unsigned i = 0; i < locks; i++) {
            pthread_mutex_destroy(&c->readers[i].lock);
        }
        for (unsigned i = 0; c->shards != NULL && i < c->nshards; i++) {
            fb__free(c->shards[i].buckets);
            fb__free(c->shards[i].ghost);
        }
        fb__free(c->shards_raw);
        fb__free(c->readers_raw);
        fb__free(c);
    }
    pthread_mutexattr_destroy(&attr);
    return rc;
}

/*
 * Releases every entry's reference and frees the cache. References handed
 * out earlier stay valid. No other call may run on c concurrently. NULL is
 * fine.
 */
void fb__cache_free(fb_cache *c)
{
    if (c == NULL) {
        return;
    }
    for (unsigned i = 0; i < c->nshards; i++) {
        shard *s = &c->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (entry *e = s->buckets[b]; e != NULL; e = e->hnext) {
                let_go(e->buf);
            }
        }
        while (s->chunks != NULL) {
            chunk *next = s->chunks->next;
            fb__free(s->chunks);
            s->chunks = next;
        }
        fb__free(s->buckets);
        fb__free(s->ghost);
    }
    for (size_t i = 0; i < (size_t)c->nshards * c->nreaders; i++) {
        pthread_mutex_destroy(&c->readers[i].lock);
    }
    fb__free(c->shards_raw);
    fb__free(c->readers_raw);
    fb__free(c);
}

/*
 * Looks key up: a hit returns a new reference (the caller releases it) and
 * only bumps the entry's frequency counter; a miss returns NULL. A hit is
 * counted, a miss when count_miss. When ticket is not NULL it receives the
 * shard's removal ticket for fb__cache_put_ticket; when note is not NULL a
 * hit copies the entry's note there. Thread-safe.
 */
static fb_buf *lookup(fb_cache *c, uint64_t key, uint64_t *ticket, fb__cache_note *note,
                      bool count_miss)
{
    uint64_t h = mix64(key);
    shard *s = shard_of(c, h);
    fb_buf *b = NULL;
    reader *r = read_lock(s);
    entry *e = table_find(s, key, h);
    if (e != NULL) {
        unsigned f = freq_of(e);
        if (f < FREQ_MAX) {
            freq_set(e, f + 1); /* only a write while the entry is warming */
        }
        b = fb_buf_retain(e->buf);
        if (note != NULL) {
            *note = e->note;
        }
        r->hits++;
    } else if (count_miss) {
        r->misses++;
    }
    if (ticket != NULL) {
        *ticket = s->removals;
    }
    pthread_mutex_unlock(&r->lock);
    return b;
}

fb_buf *fb__cache_lookup(fb_cache *c, uint64_t key, uint64_t *ticket, fb__cache_note *note)
{
    return lookup(c, key, ticket, note, true);
}

fb_buf *fb__cache_get(fb_cache *c, uint64_t key)
{
    return lookup(c, key, NULL, NULL, true);
}

fb_buf *fb__cache_peek(fb_cache *c, uint64_t key, fb__cache_note *note)
{
    return lookup(c, key, NULL, note, false);
}

bool fb__cache_second_miss(fb_cache *c, uint64_t key)
{
    if (c == NULL || c->disabled) {
        return false;
    }
    /* The high bits of the mix: the low ones choose shards and buckets. */
    uint32_t bit = (uint32_t)(mix64(key) >> 40) & (SEEN_BITS - 1);
    uint64_t mask = 1ull << (bit & 63);
    uint64_t old = atomic_fetch_or_explicit(&c->seen[bit / 64], mask, memory_order_relaxed);
    if (old & mask) {
        return true;
    }
    /* Half full: forget everything, so that "seen" means "seen lately" and
     * false positives stay rare. Races here only blur the count. */
    if (atomic_fetch_add_explicit(&c->seen_count, 1, memory_order_relaxed) + 1 >= SEEN_BITS / 2) {
        for (size_t i = 0; i < SEEN_BITS / 64; i++) {
            atomic_store_explicit(&c->seen[i], 0, memory_order_relaxed);
        }
        atomic_store_explicit(&c->seen_count, 0, memory_order_relaxed);
    }
    return false;
}

/* The shared body of put and put_ticket; ticket NULL means unconditional,
 * note NULL an all-zero note. Returns whether b is now cached under key. */
static bool cache_insert(fb_cache *c, uint64_t key, fb_buf *b, const fb__cache_note *note,
                         const uint64_t *ticket)
{
    static const fb__cache_note no_note;
    if (c->disabled || b == NULL) {
        return false;
    }
    uint64_t h = mix64(key);
    shard *s = shard_of(c, h);
    uint64_t len = fb_buf_len(b);
    graveyard grave = {.n = 0};
    bool cached = false;

    write_lock(c, s);
    if (ticket != NULL && *ticket != s->removals) {
        /* key (or a neighbour in its shard) was removed since the caller's
         * miss: the caller's bytes may belong to a deleted image. */
        goto unlock;
    }
    entry *e = table_find(s, key, h);
    if (len > s->max_obj) {
        /* Not admitted; an older value must not outlive the new one. */
        if (e != NULL) {
            drop(s, e, &grave);
        }
        goto unlock;
    }
    if (e != NULL) {
        /* Replacing in place keeps the entry's queue and frequency: the
         * usual case is two readers that missed at once putting equal bytes. */
        queue *q = queue_of(s, e);
        q->bytes = q->bytes - e->len + len;
        e->len = len;
        e->note = note != NULL ? *note : no_note;
        grave_add(&grave, e->buf);
        e->buf = hold(b);
        cached = true;
        while (over_budget(s, 0, 0) && evict_one(s, &grave)) {
        }
        goto unlock;
    }
    while (over_budget(s, len, 1) && evict_one(s, &grave)) {
    }
    /* After evicting, which refills the free list. */
    e = entry_alloc(s);
    if (e == NULL) {
        goto unlock; /* out of memory: simply not cached */
    }
    e->key = key;
    e->buf = hold(b);
    e->len = len;
    e->note = note != NULL ? *note : no_note;
    freq_set(e, 0);
    e->queue = ghost_take(s, key, h) ? Q_MAIN : Q_SMALL;
    entry **bucket = bucket_of(s, h);
    e->hnext = *bucket;
    *bucket = e;
    queue_push_head(queue_of(s, e), e);
    cached = true;
    table_maybe_grow(s);
unlock:
    write_unlock(c, s);
    bury(&grave);
    return cached;
}

/*
 * Inserts or replaces key with b; the cache takes its own reference, the
 * caller keeps its own. An object above the admission limit is not cached
 * and drops an older value of key; out of memory, a new key is simply not
 * cached.
 * Thread-safe.
 */
void fb__cache_put(fb_cache *c, uint64_t key, fb_buf *b)
{
    cache_insert(c, key, b, NULL, NULL);
}

/*
 * Like fb__cache_put, but only if no fb__cache_remove ran on key's shard
 * since fb__cache_lookup gave out ticket. This closes the race of a reader
 * that missed, read the record, and would otherwise cache it after a
 * concurrent delete removed the key. Returns 1 if cached, else 0.
 */
int fb__cache_put_ticket(fb_cache *c, uint64_t key, fb_buf *b, const fb__cache_note *note,
                         uint64_t ticket)
{
    return cache_insert(c, key, b, note, &ticket) ? 1 : 0;
}

/*
 * Drops key if present (not counted as an eviction) and invalidates the
 * tickets of its shard, present or not. References already handed out stay
 * valid. Thread-safe.
 */
void fb__cache_remove(fb_cache *c, uint64_t key)
{
    uint64_t h = mix64(key);
    shard *s = shard_of(c, h);
    graveyard grave = {.n = 0};
    write_lock(c, s);
    s->removals++;
    entry *e = table_find(s, key, h);
    if (e != NULL) {
        drop(s, e, &grave);
    }
    write_unlock(c, s);
    bury(&grave);
}

/* The admission limit: objects longer than this are never cached (0 for a
 * disabled cache). */
uint64_t fb__cache_max_object(const fb_cache *c)
{
    return c->disabled ? 0 : c->shards[c->nshards - 1].max_obj;
}

/* Sums the shards' counters into *out (each shard consistent in itself). */
void fb__cache_stats(fb_cache *c, fb_cache_stats *out)
{
    *out = (fb_cache_stats){.capacity_bytes = c->max_bytes};
    for (unsigned i = 0; i < c->nshards; i++) {
        shard *s = &c->shards[i];
        write_lock(c, s);
        out->bytes += shard_bytes(s);
        out->entries += shard_count(s);
        for (unsigned r = 0; r < c->nreaders; r++) {
            out->hits += s->readers[r].hits;
            out->misses += s->readers[r].misses;
        }
        out->evictions += s->evictions;
        write_unlock(c, s);
    }
}
