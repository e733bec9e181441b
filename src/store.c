/*
 * store - the storage engine: open (lock, marker, recovery), put (reserve,
 * write, group commit, publish), get, delete, statistics. Compaction and
 * rekey are in compact.c, verify in verify.c; the struct and the helpers
 * they share are in store.h, the byte formats in record.c (docs/FORMAT.md).
 *
 * Crash-safety rules this file keeps:
 *   - a record is published in the index (and a put acknowledged) only
 *     after every byte of the block before its end is written and synced,
 *     so the scan of the active block at open never stops before an
 *     acknowledged record;
 *   - a failed write is covered by a pad record, or else nothing after it
 *     in that block is ever acknowledged, and the block is rotated away;
 *   - a tombstone is durable before the image leaves the index.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec_zstd.h"
#include "image.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/endian.h"
#include "util/fdio.h"

/* Disk space is allocated ahead of the tail in chunks of this size. */
#define PREALLOC_CHUNK (4u << 20)

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

void fb__log(fb_store *s, int level, const char *fmt, ...)
{
    if (s == NULL || s->opts.log == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->opts.log(s->opts.log_userdata, level, line);
}

static fb_block *block_new(uint32_t number, fb_bfile *file)
{
    fb_block *b = fb__calloc(1, sizeof *b);
    if (b == NULL) {
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->number = number;
    b->file = file;
    fb__block_name(number, b->name);
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->tail = FB__BLOCK_HDR_SIZE;
    b->durable_upto = FB__BLOCK_HDR_SIZE;
    b->fail_from = FB__NO_OFFSET;
    b->file_bytes = FB__BLOCK_HDR_SIZE;
    return b;
}

void fb__block_retain(fb_block *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void fb__block_release(fb_block *b)
{
    if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    fb__bfile_close(b->file);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    fb__free(b->inflight);
    fb__free(b->written);
    fb__free(b);
}

fb_block *fb__store_find_block(fb_store *s, uint32_t number)
{
    size_t lo = 0, hi = s->nblocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->blocks[mid]->number < number) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->nblocks && s->blocks[lo]->number == number ? s->blocks[lo] : NULL;
}

/* Appends b (numbers only grow) to the block table; index_lock held. The
 * table takes over the caller's reference. */
static int table_add(fb_store *s, fb_block *b)
{
    if (FB__GROW_ARRAY(&s->blocks, &s->cblocks, s->nblocks + 1, 16) != 0) {
        return fb__error(FB_ENOMEM, "out of memory for the block table");
    }
    s->blocks[s->nblocks++] = b;
    return 0;
}

static void fill_block_stats(const fb_block *b, fb_block_stats *st)
{
    memset(st, 0, sizeof *st);
    memcpy(st->block, b->name,
           sizeof b->name < sizeof st->block ? sizeof b->name : sizeof st->block);
    st->block[sizeof st->block - 1] = '\0';
    st->number = b->number;
    st->file_bytes = b->file_bytes;
    st->live_bytes = b->live_bytes;
    uint64_t used = b->file_bytes > FB__BLOCK_HDR_SIZE ? b->file_bytes - FB__BLOCK_HDR_SIZE : 0;
    st->dead_bytes = used > b->live_bytes ? used - b->live_bytes : 0;
    st->live_records = b->live_records;
    st->dead_records = b->dead_records;
    st->sealed = b->sealed;
}

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    while (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        /* getrandom of 4 bytes only fails on EINTR before the pool is up */
    }
    return v;
}

static uint32_t ix_flags(uint32_t rec_flags)
{
    return ((rec_flags & FB__REC_ZSTD) ? FB__IX_ZSTD : 0) |
           ((rec_flags & FB__REC_FERNET) ? FB__IX_FERNET : 0);
}

void fb__store_fill_meta(const fb_index_entry *e, const fb_rec_hdr *h, fb_meta *m)
{
    memset(m, 0, sizeof *m);
    fb__id_format(e->key, e->cookie, m->id);
    fb__block_name(fb__key_block(e->key), m->block);
    m->offset = fb__key_offset(e->key);
    /* The seed triple's size: the birth stored length, which a record
     * rewritten by rekey keeps in its header. */
    m->size = h->birth_len != 0 ? h->birth_len : e->len_bits & FB__IX_LEN_MASK;
    m->bytes = h->plain_len;
    m->width = h->width;
    m->height = h->height;
    m->created = h->created;
    m->flags = ((e->len_bits & FB__IX_ZSTD) ? FB_META_ZSTD : 0) |
               ((e->len_bits & FB__IX_FERNET) ? FB_META_FERNET : 0);
    m->key = e->key;
    m->cookie = e->cookie;
}

/* ------------------------------------------------------------------------ */
/* Reading records                                                           */

/* Reads and validates the header of the record whose payload is at off and
 * checks it belongs to key (0: any). */
static int read_header(fb_block *b, uint64_t off, uint64_t key, fb_rec_hdr *h)
{
    uint8_t raw[FB__REC_HDR_SIZE];
    if (off < FB__BLOCK_HDR_SIZE + FB__REC_HDR_SIZE) {
        return fb__error(FB_ECORRUPT, "record offset %" PRIu64 " in %s is impossible", off,
                         b->name);
    }
    uint64_t at = off - FB__REC_HDR_SIZE;
    int rc = fb__bfile_read(b->file, raw, sizeof raw, at);
    if (rc != 0) {
        return rc;
    }
    rc = fb__rec_hdr_decode(raw, sizeof raw, at, UINT64_MAX, b->name, h);
    if (rc != 0) {
        return rc;
    }
    if (key != 0 && (h->key != key || (h->flags & (FB__REC_TOMBSTONE | FB__REC_PAD)))) {
        return fb__error(FB_ECORRUPT, "record in %s at offset %" PRIu64 " is not image %016" PRIx64,
                         b->name, at, key);
    }
    return 0;
}

int fb__store_read_record(fb_block *b, uint64_t off, fb_rec_hdr *h, uint8_t **data)
{
    *data = NULL;
    if (off < FB__BLOCK_HDR_SIZE + FB__REC_HDR_SIZE) {
        return fb__error(FB_ECORRUPT, "record offset %" PRIu64 " in %s is impossible", off,
                         b->name);
    }
    uint64_t at = off - FB__REC_HDR_SIZE;
    uint8_t raw[FB__REC_HDR_SIZE];
    int rc = fb__bfile_read(b->file, raw, sizeof raw, at);
    if (rc == 0) {
        rc = fb__rec_hdr_decode(raw, sizeof raw, at, UINT64_MAX, b->name, h);
    }
    if (rc != 0) {
        return rc;
    }
    uint8_t *p = fb__malloc((size_t)h->stored_len);
    if (p == NULL) {
        return fb__error(FB_ENOMEM, "out of memory reading %" PRIu64 " bytes", h->stored_len);
    }
    rc = fb__bfile_read(b->file, p, (size_t)h->stored_len, off);
    if (rc == 0) {
        rc = fb__rec_check_data(h, p, at, b->name);
    }
    if (rc != 0) {
        fb__free(p);
        return rc;
    }
    *data = p;
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Sequential reads through a window, so a scan costs one system call per
 * megabyte rather than two per record. */
#define SCAN_WINDOW (1u << 20)

typedef struct reader {
    fb_bfile *f;
    uint64_t size;
    uint8_t *win, *big;
    uint64_t off;
    size_t len, bigcap;
} reader;

/* Points *out at bytes [at, at + n) of the file (at + n <= size); valid
 * until the next call. */
static int reader_get(reader *r, uint64_t at, size_t n, const uint8_t **out)
{
    if (at >= r->off && at - r->off + n <= r->len) {
        *out = r->win + (at - r->off);
        return 0;
    }
    if (n > SCAN_WINDOW) {
        if (n > r->bigcap) {
            uint8_t *nb = fb__realloc(r->big, n);
            if (nb == NULL) {
                return fb__error(FB_ENOMEM, "out of memory scanning %s", fb__bfile_name(r->f));
            }
            r->big = nb;
            r->bigcap = n;
        }
        *out = r->big;
        return fb__bfile_read(r->f, r->big, n, at);
    }
    if (r->win == NULL && (r->win = fb__malloc(SCAN_WINDOW)) == NULL) {
        return fb__error(FB_ENOMEM, "out of memory scanning %s", fb__bfile_name(r->f));
    }
    size_t want = r->size - at < SCAN_WINDOW ? (size_t)(r->size - at) : SCAN_WINDOW;
    r->len = 0;
    int rc = fb__bfile_read(r->f, r->win, want, at);
    if (rc != 0) {
        return rc;
    }
    r->off = at;
    r->len = want;
    *out = r->win;
    return 0;
}

/*
 * Searches [from, size) at 8-byte steps for the first header that
 * validates, fits the file and is plausible at its place (see
 * fb__rec_plausible_at). *found is its offset, or FB__NO_OFFSET. The
 * caller's error detail is kept: a search only answers where.
 */
static int resync(reader *r, uint32_t number, uint64_t from, uint64_t *found)
{
    static const uint8_t magic[4] = {'F', 'B', 'R', 'C'};
    char detail[512];
    snprintf(detail, sizeof detail, "%s", fb_last_error());
    *found = FB__NO_OFFSET;
    int rc = 0;
    for (uint64_t at = fb__align8(from); at < r->size && r->size - at >= FB__REC_HDR_SIZE;
         at += 8) {
        const uint8_t *raw = NULL;
        if ((rc = reader_get(r, at, FB__REC_HDR_SIZE, &raw)) != 0) {
            return rc; /* an I/O or memory error is the search's own */
        }
        fb_rec_hdr h;
        if (memcmp(raw, magic, sizeof magic) == 0 &&
            fb__rec_hdr_decode(raw, FB__REC_HDR_SIZE, at, r->size, "", &h) == 0 &&
            fb__rec_plausible_at(&h, number, at)) {
            *found = at;
            break;
        }
    }
    fb__error(0, "%s", detail);
    return rc;
}

int fb__store_scan(fb_bfile *f, uint64_t limit, int sealed, const fb_scan_cb *cb, uint64_t *end,
                   int *bad)
{
    uint64_t size;
    int rc = fb__bfile_size(f, &size);
    if (rc != 0) {
        return rc;
    }
    if (limit != 0 && limit < size) {
        size = limit;
    }
    const char *name = fb__bfile_name(f);
    uint32_t number = fb__bfile_number(f);
    reader r = {.f = f, .size = size};
    uint64_t at = FB__BLOCK_HDR_SIZE, next = 0;
    *bad = 0;
    while (at < size) {
        const uint8_t *raw, *data = NULL;
        size_t n = size - at < FB__REC_HDR_SIZE ? (size_t)(size - at) : FB__REC_HDR_SIZE;
        if ((rc = reader_get(&r, at, n, &raw)) != 0) {
            goto out;
        }
        if (all_zero(raw, n)) {
            break; /* preallocated or never written: the clean end */
        }
        fb_rec_hdr h;
        int brc = fb__rec_hdr_decode(raw, n, at, size, name, &h);
        if (brc != 0) {
            /* A damaged header hides the record's length. If a valid
             * record follows, this is rot in the middle, not a torn tail:
             * report the damaged range and go on from there. */
            if ((rc = resync(&r, number, at + 8, &next)) != 0) {
                goto out;
            }
            if (next == FB__NO_OFFSET) {
                *bad = brc;
                break;
            }
            if (cb->damaged != NULL && (rc = cb->damaged(cb->ud, at, next, brc)) != 0) {
                goto out;
            }
            at = next;
            continue;
        }
        next = at + fb__rec_size(h.stored_len);
        if (!(h.flags & FB__REC_PAD)) {
            if ((rc = reader_get(&r, at + FB__REC_HDR_SIZE, (size_t)h.stored_len, &data)) != 0) {
                goto out;
            }
            brc = fb__rec_check_data(&h, data, at, name);
        }
        if (brc != 0) {
            /* Stored bytes that fail their CRC under a valid header: bit
             * rot when the block was complete (sealed) or a valid record
             * follows somewhere; otherwise the write of this record was
             * torn by a crash. */
            uint64_t found = FB__NO_OFFSET;
            if (!sealed && (rc = resync(&r, number, next, &found)) != 0) {
                goto out;
            }
            if (!sealed && found == FB__NO_OFFSET) {
                *bad = brc;
                break;
            }
            data = NULL;
        }
        if (!(h.flags & FB__REC_PAD) && cb->record != NULL &&
            (rc = cb->record(cb->ud, at, &h, data)) != 0) {
            goto out;
        }
        at = next;
    }
    *end = at;
out:
    fb__free(r.win);
    fb__free(r.big);
    return rc;
}

typedef struct entry_vec {
    fb_idx_entry *v;
    size_t n, cap;
} entry_vec;

static int vec_push(entry_vec *ev, const fb_idx_entry *e)
{
    if (FB__GROW_ARRAY(&ev->v, &ev->cap, ev->n + 1, 64) != 0) {
        return fb__error(FB_ENOMEM, "out of memory collecting records");
    }
    ev->v[ev->n++] = *e;
    return 0;
}

/* What a scan for recovery collects: the records, in order; damage is
 * logged (verify reports it as a problem instead). */
typedef struct collector {
    entry_vec ev;
    fb_store *s;
    const char *name;
} collector;

static int collect_entry(void *ud, uint64_t at, const fb_rec_hdr *h, const uint8_t *data)
{
    /* A record with rotten bytes stays indexed: reading it is then a
     * precise FB_ECORRUPT rather than "not found". */
    fb_idx_entry e = {h->key,
                      at + FB__REC_HDR_SIZE,
                      (uint32_t)h->stored_len,
                      h->cookie,
                      h->flags | (data == NULL ? FB__REC_X_BADDATA : 0),
                      h->data_crc};
    return vec_push(&((collector *)ud)->ev, &e);
}

static int collect_damage(void *ud, uint64_t at, uint64_t next, int error)
{
    collector *c = ud;
    (void)error;
    fb__log(c->s, FB_LOG_ERROR,
            "%s: %s; the %" PRIu64 " bytes up to the next valid record at offset %" PRIu64
            " are lost, the records after them are kept",
            c->name, fb_last_error(), next - at, next);
    return 0;
}

static int write_index(fb_store *s, fb_block *b, const fb_idx_entry *e, uint64_t n,
                       uint64_t data_end)
{
    size_t len;
    int rc = fb__idx_file_size(n, &len);
    if (rc != 0) {
        return rc;
    }
    uint8_t *buf = fb__malloc(len);
    if (buf == NULL) {
        return fb__error(FB_ENOMEM, "out of memory writing the index of %s", b->name);
    }
    fb__idx_encode(buf, b->number, s->store_id, data_end, e, n);
    rc = fb__backend_write_index(s->backend, b->number, buf, len);
    fb__free(buf);
    return rc;
}

/* Reads the entries of a sealed block from its index file; rebuilds the
 * index file from a scan when it is missing or damaged. */
static int block_entries(fb_store *s, fb_block *b, int rebuild, fb_idx_entry **entries, uint64_t *n,
                         uint64_t *data_end)
{
    uint64_t size;
    int rc = fb__bfile_size(b->file, &size);
    if (rc != 0) {
        return rc;
    }
    uint8_t *raw = NULL;
    size_t len = 0;
    rc = fb__backend_read_index(s->backend, b->number, (size_t)size + FB__IDX_HDR_SIZE, &raw, &len);
    if (rc == 0) {
        char iname[32];
        fb__idx_name(b->number, iname);
        rc = fb__idx_decode(raw, len, b->number, s->store_id, size, iname, entries, n, data_end);
        fb__free(raw);
        if (rc == 0) {
            return 0;
        }
    }
    if (rc == FB_ENOMEM || rc == FB_EIO) {
        return rc;
    }
    fb__log(s, FB_LOG_WARN, "%s: %s; rebuilding it from the block", b->name, fb_last_error());
    collector c = {.s = s, .name = b->name};
    fb_scan_cb cb = {collect_entry, collect_damage, &c};
    uint64_t end = 0;
    int bad = 0;
    rc = fb__store_scan(b->file, 0, 1, &cb, &end, &bad);
    if (rc != 0) {
        fb__free(c.ev.v);
        return rc;
    }
    if (bad != 0) {
        fb__log(s, FB_LOG_ERROR, "%s: records after offset %" PRIu64 " are unreadable: %s", b->name,
                end, fb_last_error());
    }
    if (rebuild && s->writable) {
        rc = write_index(s, b, c.ev.v, c.ev.n, end > size ? size : (bad ? size : end));
        if (rc != 0) {
            fb__log(s, FB_LOG_WARN, "%s: cannot write the rebuilt index: %s", b->name,
                    fb_last_error());
        }
    }
    *entries = c.ev.v;
    *n = c.ev.n;
    *data_end = bad ? size : end;
    return 0;
}

int fb__store_block_entries(fb_store *s, fb_block *b, fb_idx_entry **entries, uint64_t *n)
{
    uint64_t end;
    return block_entries(s, b, 0, entries, n, &end);
}

/* ------------------------------------------------------------------------ */
/* Recovery                                                                  */

/* A copy that lost (superseded or deleted) becomes dead in its block. */
static void kill_old(fb_store *s, const fb_index_entry *old)
{
    fb_block *ob = fb__store_find_block(s, fb__key_block(old->loc));
    if (ob != NULL) {
        uint64_t sz = fb__rec_size(old->len_bits & FB__IX_LEN_MASK);
        ob->live_bytes = ob->live_bytes >= sz ? ob->live_bytes - sz : 0;
        if (ob->live_records > 0) {
            ob->live_records--;
        }
        ob->dead_records++;
    }
}

/* Applies one record or tombstone of block b in (block, offset) order:
 * the newest copy of a key wins, a tombstone kills every earlier copy. */
static int apply_event(fb_store *s, fb_block *b, const fb_idx_entry *x, int verified)
{
    fb_index_entry old;
    if (x->flags & FB__REC_TOMBSTONE) {
        if (fb__index_remove(&s->index, x->key, &old)) {
            kill_old(s, &old);
        }
        return 0;
    }
    if (x->flags & FB__REC_DELETED) {
        b->dead_records++;
        return 0;
    }
    fb_index_entry e = {x->key, fb__key_make(b->number, x->offset),
                        x->stored_len | ix_flags(x->flags) | (verified ? FB__IX_VERIFIED : 0),
                        x->cookie};
    int replaced = 0;
    int rc = fb__index_put(&s->index, &e, &old, &replaced);
    if (rc != 0) {
        return rc;
    }
    if (replaced) {
        kill_old(s, &old);
    }
    b->live_bytes += fb__rec_size(x->stored_len);
    b->live_records++;
    return 0;
}

/* Scans the active block, cuts a torn tail, and keeps its records as the
 * block's written list (for its index file at seal). */
static int scan_active(fb_store *s, fb_block *b)
{
    uint64_t size;
    int rc = fb__bfile_size(b->file, &size);
    if (rc != 0) {
        return rc;
    }
    collector c = {.s = s, .name = b->name};
    fb_scan_cb cb = {collect_entry, collect_damage, &c};
    uint64_t end = 0;
    int bad = 0;
    rc = fb__store_scan(b->file, 0, 0, &cb, &end, &bad);
    if (rc != 0) {
        goto out;
    }
    if (end < size) {
        fb__log(s, FB_LOG_WARN, "%s: torn tail of %" PRIu64 " bytes after offset %" PRIu64 "%s%s",
                b->name, size - end, end, bad ? ": " : "", bad ? fb_last_error() : "");
        if (s->writable) {
            if ((rc = fb__bfile_truncate(b->file, end)) != 0 ||
                (rc = fb__bfile_sync(b->file)) != 0) {
                goto out;
            }
        }
    }
    b->tail = end;
    b->durable_upto = end;
    b->reserved_end = end;
    b->file_bytes = end;
    b->written = c.ev.v;
    b->nwritten = c.ev.n;
    b->cwritten = c.ev.cap;
    c.ev.v = NULL;
out:
    fb__free(c.ev.v);
    return rc;
}

/* Opens block `number` and checks its header. A last block that is shorter
 * than a header or all zeros there died while being created: a writer
 * writes its header again. */
static int open_block(fb_store *s, uint32_t number, int last, fb_block **out)
{
    fb_bfile *f = NULL;
    int rc = fb__backend_open(s->backend, number, &f);
    if (rc != 0) {
        return rc;
    }
    fb_block *b = block_new(number, f);
    if (b == NULL) {
        fb__bfile_close(f);
        return fb__error(FB_ENOMEM, "out of memory opening a block");
    }
    uint64_t size;
    uint8_t raw[FB__BLOCK_HDR_SIZE] = {0};
    if ((rc = fb__bfile_size(f, &size)) != 0) {
        goto out;
    }
    if (size >= FB__BLOCK_HDR_SIZE && (rc = fb__bfile_read(f, raw, sizeof raw, 0)) != 0) {
        goto out;
    }
    if (last && s->writable && all_zero(raw, sizeof raw) && size <= FB__BLOCK_HDR_SIZE) {
        fb__log(s, FB_LOG_WARN, "%s: header never written; initialising it", b->name);
        fb__block_hdr_encode(raw, number, s->store_id, (int64_t)time(NULL));
        if ((rc = fb__bfile_write(f, raw, sizeof raw, 0)) != 0 ||
            (rc = fb__bfile_truncate(f, FB__BLOCK_HDR_SIZE)) != 0 ||
            (rc = fb__bfile_sync(f)) != 0) {
            goto out;
        }
        size = FB__BLOCK_HDR_SIZE;
    }
    rc = fb__block_hdr_decode(raw, size < sizeof raw ? (size_t)size : sizeof raw, number,
                              s->store_id, b->name);
out:
    if (rc != 0) {
        fb__block_release(b);
        return rc;
    }
    *out = b;
    return 0;
}

static int recover(fb_store *s)
{
    uint32_t *nums = NULL;
    size_t n = 0;
    int rc = fb__backend_list(s->backend, &nums, &n);
    if (rc != 0) {
        return rc;
    }
    fb_block **blks = fb__calloc(n ? n : 1, sizeof *blks);
    int *sealed = fb__calloc(n ? n : 1, sizeof *sealed);
    fb_idx_entry *ents = NULL;
    if (blks == NULL || sealed == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory opening the store");
        goto out;
    }
    /* First pass: headers, index file sizes and the active block's scan, so
     * the hash table is sized once for every record. */
    uint64_t expected = 0;
    for (size_t i = 0; i < n; i++) {
        int last = i + 1 == n;
        if ((rc = open_block(s, nums[i], last, &blks[i])) != 0) {
            goto out;
        }
        uint64_t isize = 0;
        int has_idx = fb__backend_index_size(s->backend, nums[i], &isize) == 0;
        if (has_idx && isize >= FB__IDX_HDR_SIZE) {
            expected += (isize - FB__IDX_HDR_SIZE) / FB__IDX_ENTRY_SIZE;
        }
        /* The highest block is the active one unless it has an index file
         * (a crash right after sealing it). */
        sealed[i] = !last || has_idx;
        if (!sealed[i]) {
            if ((rc = scan_active(s, blks[i])) != 0) {
                goto out;
            }
            expected += blks[i]->nwritten;
        }
    }
    fb__error_clear();
    fb__index_free(&s->index);
    if ((rc = fb__index_init(&s->index, (size_t)expected + 64)) != 0) {
        goto out;
    }
    /* Second pass: apply every event in (block, offset) order, one block's
     * index file in memory at a time. */
    for (size_t i = 0; i < n; i++) {
        if ((rc = table_add(s, blks[i])) != 0) {
            goto out;
        }
        fb_block *b = blks[i];
        blks[i] = NULL;
        if (!sealed[i]) {
            /* Records of the active block were checked by its scan. */
            for (size_t j = 0; j < b->nwritten; j++) {
                int rotten = (b->written[j].flags & FB__REC_X_BADDATA) != 0;
                if (rotten) {
                    fb__log(s, FB_LOG_ERROR, "crc mismatch in %s at offset %" PRIu64, b->name,
                            b->written[j].offset - FB__REC_HDR_SIZE);
                }
                if ((rc = apply_event(s, b, &b->written[j], !rotten)) != 0) {
                    goto out;
                }
            }
            s->active = b;
            continue;
        }
        uint64_t count = 0, end = 0;
        if ((rc = block_entries(s, b, 1, &ents, &count, &end)) != 0) {
            goto out;
        }
        b->sealed = 1;
        b->file_bytes = end;
        for (uint64_t j = 0; j < count; j++) {
            if ((rc = apply_event(s, b, &ents[j], 0)) != 0) {
                goto out;
            }
        }
        fb__free(ents);
        ents = NULL;
    }
out:
    for (size_t i = 0; blks != NULL && i < n; i++) {
        fb__block_release(blks[i]);
    }
    fb__free(ents);
    fb__free(blks);
    fb__free(sealed);
    fb__free(nums);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                            */

static int path_join(const fb_store *s, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", s->dir, name);
    if (n < 0 || (size_t)n >= cap) {
        return fb__error(FB_EINVAL, "store path %s is too long", s->dir);
    }
    return 0;
}

int fb__journal_path(const fb_store *s, char *out, size_t cap)
{
    return path_join(s, "compact.journal", out, cap);
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return fb__error(fb__errno_code(errno), "cannot open %s: %s", path, strerror(errno));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return fb__error(fb__errno_code(e), "cannot fsync %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

/* One writer per store: an open-file-description lock (so a second open in
 * the same process conflicts too), with the holder's pid in the file for
 * the error message. */
static int take_lock(fb_store *s)
{
    char path[4096];
    int rc = path_join(s, "fastblocks.lock", path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return fb__error(errno == ENOENT ? FB_ENOSTORE : fb__errno_code(errno),
                         "cannot open %s: %s", path, strerror(errno));
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            char text[32] = {0};
            ssize_t r = pread(fd, text, sizeof text - 1, 0);
            long pid = r > 0 ? strtol(text, NULL, 10) : 0;
            close(fd);
            return fb__error(FB_ELOCKED, "store %s in use by process %ld", s->dir, pid);
        }
        close(fd);
        return fb__error(fb__errno_code(e), "cannot lock %s: %s", path, strerror(e));
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    int e = 0;
    const char *verb = "truncate";
    if (ftruncate(fd, 0) != 0) {
        e = errno;
    } else {
        verb = "write";
        e = fb__pwrite_full(fd, text, (size_t)len, 0);
    }
    if (e != 0) {
        close(fd);
        return fb__error(fb__errno_code(e), "cannot %s %s: %s", verb, path, strerror(e));
    }
    s->lock_fd = fd;
    return 0;
}

static int read_small_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT
                   ? FB_ENOTFOUND
                   : fb__error(fb__errno_code(errno), "cannot open %s: %s", path, strerror(errno));
    }
    ssize_t r = pread(fd, buf, cap, 0);
    int e = errno;
    close(fd);
    if (r < 0) {
        return fb__error(fb__errno_code(e), "cannot read %s: %s", path, strerror(e));
    }
    *len = (size_t)r;
    return 0;
}

/* Writes a small file atomically: temporary name, fsync, rename, dir fsync. */
int fb__store_write_file(const fb_store *s, const char *name, const uint8_t *data, size_t len)
{
    char path[4096], tmp[4200];
    int rc = path_join(s, name, path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return fb__error(fb__errno_code(errno), "cannot create %s: %s", tmp, strerror(errno));
    }
    const char *verb = "write";
    int e = fb__pwrite_full(fd, data, len, 0);
    if (e == 0 && fsync(fd) != 0) {
        verb = "fsync";
        e = errno;
    }
    if (close(fd) != 0 && e == 0) {
        verb = "close";
        e = errno;
    }
    if (e != 0) {
        unlink(tmp);
        return fb__error(fb__errno_code(e), "cannot %s %s: %s", verb, tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return fb__error(fb__errno_code(e), "cannot rename %s: %s", tmp, strerror(e));
    }
    return fsync_dir(s->dir);
}

int fb__store_sync_dir(const fb_store *s)
{
    return fsync_dir(s->dir);
}

static int load_marker(fb_store *s, int create)
{
    char path[4096];
    int rc = path_join(s, "fastblocks.store", path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    uint8_t raw[FB__MARKER_SIZE + 1];
    size_t len = 0;
    rc = read_small_file(path, raw, sizeof raw, &len);
    if (rc == 0) {
        return fb__marker_decode(raw, len, s->store_id);
    }
    if (rc != FB_ENOTFOUND) {
        return rc;
    }
    if (!create) {
        return fb__error(FB_ENOSTORE, "no store at %s (fastblocks.store is missing)", s->dir);
    }
    if (getrandom(s->store_id, sizeof s->store_id, 0) != (ssize_t)sizeof s->store_id) {
        return fb__error(FB_EIO, "cannot get random bytes for the store id: %s", strerror(errno));
    }
    fb__marker_encode(raw, s->store_id, (int64_t)time(NULL));
    return fb__store_write_file(s, "fastblocks.store", raw, FB__MARKER_SIZE);
}

static void *batch_main(void *arg);

/* Finishes a compaction that a crash interrupted (compact.journal). */
static void finish_journal(fb_store *s)
{
    char path[4096];
    uint8_t raw[FB__JOURNAL_SIZE + 1];
    size_t len = 0;
    uint32_t number = 0;
    if (fb__journal_path(s, path, sizeof path) != 0 ||
        read_small_file(path, raw, sizeof raw, &len) != 0) {
        fb__error_clear();
        return;
    }
    if (fb__journal_decode(raw, len, &number) == 0) {
        pthread_rwlock_rdlock(&s->index_lock);
        fb_block *b = fb__store_find_block(s, number);
        int sealed = b != NULL && b->sealed && b != s->active;
        pthread_rwlock_unlock(&s->index_lock);
        if (sealed) {
            fb__log(s, FB_LOG_WARN, "finishing the interrupted compaction of block %" PRIu32,
                    number);
            uint64_t done = 0;
            fb_compact_result res = {0};
            if (fb__compact_block(s, number, 0, NULL, NULL, &done, 0, &res) != 0) {
                fb__log(s, FB_LOG_ERROR, "cannot finish compacting block %" PRIu32 ": %s", number,
                        fb_last_error());
            }
        }
    } else {
        fb__log(s, FB_LOG_WARN, "%s; ignoring it", fb_last_error());
    }
    unlink(path);
    fb__error_clear();
}

static int check_options(const fb_options *o)
{
    if (o->max_block_size < FB__BLOCK_HDR_SIZE + FB__REC_HDR_SIZE + 8 ||
        o->max_block_size > FB__MAX_OFFSET) {
        return fb__error(FB_EINVAL, "max_block_size %" PRIu64 " is outside 136..%llu",
                         o->max_block_size, (unsigned long long)FB__MAX_OFFSET);
    }
    if ((int)o->durability < FB_DURABILITY_ALWAYS || (int)o->durability > FB_DURABILITY_NONE) {
        return fb__error(FB_EINVAL, "unknown durability mode %d", (int)o->durability);
    }
    if (o->durability == FB_DURABILITY_BATCH &&
        (o->batch_interval_ms == 0 || o->batch_interval_ms > 60000)) {
        return fb__error(FB_EINVAL, "batch_interval_ms %" PRIu32 " is outside 1..60000",
                         o->batch_interval_ms);
    }
    if (o->nkeys > 0 && o->keys == NULL) {
        return fb__error(FB_EINVAL, "nkeys is %zu but keys is NULL", o->nkeys);
    }
    return 0;
}

int fb_open(const char *dir, const fb_options *opts, fb_store **out)
{
    if (dir == NULL || out == NULL || dir[0] == '\0') {
        return fb__error(FB_EINVAL, "dir and out must be given");
    }
    *out = NULL;
    fb_options o;
    if (opts != NULL) {
        o = *opts;
    } else {
        fb_options_init(&o);
    }
    int rc = check_options(&o);
    if (rc != 0) {
        return rc;
    }
    fb_store *s = fb__calloc(1, sizeof *s);
    if (s == NULL || (s->dir = fb__strdup(dir)) == NULL) {
        fb__free(s);
        return fb__error(FB_ENOMEM, "out of memory opening %s", dir);
    }
    s->opts = o;
    s->opts.keys = NULL; /* copied into the keyring below, not kept */
    s->opts.nkeys = 0;
    s->writable = !o.read_only;
    s->lock_fd = -1;
    pthread_mutex_init(&s->compact_lock, NULL);
    pthread_mutex_init(&s->move_lock, NULL);
    pthread_mutex_init(&s->append_lock, NULL);
    pthread_rwlock_init(&s->index_lock, NULL);
    pthread_mutex_init(&s->batch_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->batch_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->syncs, 0);
    atomic_init(&s->synced_puts, 0);

    if (o.nkeys > 0 && (rc = fb__fernet_new(o.keys, o.nkeys, &s->fernet)) != 0) {
        goto out;
    }
    if ((rc = fb__cache_new(o.cache_bytes, o.cache_entries, &s->cache)) != 0) {
        goto out;
    }
    if (s->writable && o.create && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rc = fb__error(fb__errno_code(errno), "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = fb__error(FB_ENOSTORE, "no store at %s (not a directory)", dir);
        goto out;
    }
    char marker[4096];
    if ((rc = path_join(s, "fastblocks.store", marker, sizeof marker)) != 0) {
        goto out;
    }
    if ((!s->writable || !o.create) && access(marker, F_OK) != 0) {
        /* Checked before the lock file is made: no litter in a directory
         * that holds no store. */
        rc = fb__error(FB_ENOSTORE, "no store at %s (fastblocks.store is missing)", dir);
        goto out;
    }
    if (s->writable && (rc = take_lock(s)) != 0) {
        goto out;
    }
    if ((rc = load_marker(s, s->writable && o.create)) != 0) {
        goto out;
    }
    if ((rc = fb__backend_local(dir, s->writable, s->writable, &s->backend)) != 0) {
        goto out;
    }
    if ((rc = fb__index_init(&s->index, 0)) != 0 || (rc = recover(s)) != 0) {
        goto out;
    }
    if (s->writable && s->active == NULL) {
        pthread_mutex_lock(&s->append_lock);
        rc = fb__store_rotate_locked(s);
        pthread_mutex_unlock(&s->append_lock);
        if (rc != 0) {
            goto out;
        }
    }
    if (s->writable) {
        finish_journal(s);
    }
    if (s->writable && o.durability == FB_DURABILITY_BATCH) {
        if (pthread_create(&s->batch_thread, NULL, batch_main, s) != 0) {
            rc = fb__error(FB_ENOMEM, "cannot start the batch sync thread");
            goto out;
        }
        s->batch_running = 1;
    }
    fb__error_clear();
    *out = s;
    s = NULL;
out:
    if (s != NULL) {
        fb_close(s);
    }
    return rc;
}

int fb_close(fb_store *s)
{
    if (s == NULL) {
        return 0;
    }
    int rc = 0;
    if (s->batch_running) {
        pthread_mutex_lock(&s->batch_mu);
        s->batch_stop = 1;
        pthread_cond_signal(&s->batch_cv);
        pthread_mutex_unlock(&s->batch_mu);
        pthread_join(s->batch_thread, NULL);
    }
    if (s->writable && s->active != NULL) {
        fb_block *b = s->active;
        pthread_mutex_lock(&b->mu);
        uint64_t end = b->tail;
        pthread_mutex_unlock(&b->mu);
        rc = fb__store_make_durable(s, b, end);
    }
    for (size_t i = 0; i < s->nblocks; i++) {
        fb__block_release(s->blocks[i]);
    }
    fb__free(s->blocks);
    fb__index_free(&s->index);
    fb__cache_free(s->cache);
    fb__fernet_free(s->fernet);
    fb__backend_free(s->backend);
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
    pthread_mutex_destroy(&s->compact_lock);
    pthread_mutex_destroy(&s->move_lock);
    pthread_mutex_destroy(&s->append_lock);
    pthread_rwlock_destroy(&s->index_lock);
    pthread_mutex_destroy(&s->batch_mu);
    pthread_cond_destroy(&s->batch_cv);
    fb__free(s->dir);
    fb__free(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Appending                                                                 */

static int cmp_entry(const void *a, const void *b)
{
    uint64_t x = ((const fb_idx_entry *)a)->offset, y = ((const fb_idx_entry *)b)->offset;
    return x < y ? -1 : x > y;
}

/* Seals b: waits for its writes, syncs it and writes its index file. A
 * failure is logged, not returned: the index is rebuilt from the block at
 * the next open. */
static void seal_block(fb_store *s, fb_block *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->ninflight > 0) {
        pthread_cond_wait(&b->cv, &b->mu);
    }
    fb_idx_entry *w = b->written;
    size_t n = b->nwritten;
    uint64_t end = b->tail;
    b->written = NULL;
    b->nwritten = b->cwritten = 0;
    pthread_mutex_unlock(&b->mu);

    /* Records whose put failed were marked PAD by fb__store_unwrite. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(w[i].flags & FB__REC_PAD)) {
            w[k++] = w[i];
        }
    }
    qsort(w, k, sizeof *w, cmp_entry);
    int rc = fb__bfile_sync(b->file);
    if (rc == 0) {
        rc = write_index(s, b, w, k, end);
    }
    if (rc != 0) {
        fb__log(s, FB_LOG_WARN, "cannot seal %s: %s", b->name, fb_last_error());
    }
    fb__free(w);
    pthread_rwlock_wrlock(&s->index_lock);
    b->sealed = 1;
    b->file_bytes = end;
    pthread_rwlock_unlock(&s->index_lock);
}

int fb__store_rotate_locked(fb_store *s)
{
    fb_block *old = s->active;
    uint32_t number = old != NULL ? old->number + 1 : 1;
    if (old == NULL) {
        pthread_rwlock_rdlock(&s->index_lock);
        if (s->nblocks > 0) {
            number = s->blocks[s->nblocks - 1]->number + 1;
        }
        pthread_rwlock_unlock(&s->index_lock);
    }
    if (number > FB__MAX_BLOCK_NUM) {
        return fb__error(FB_ENOSPC, "the store has reached its last block number (%u)",
                         FB__MAX_BLOCK_NUM);
    }
    fb_bfile *f = NULL;
    int rc = fb__backend_create(s->backend, number, &f);
    if (rc != 0) {
        return rc;
    }
    uint8_t hdr[FB__BLOCK_HDR_SIZE];
    fb__block_hdr_encode(hdr, number, s->store_id, (int64_t)time(NULL));
    fb_block *b = NULL;
    if ((rc = fb__bfile_write(f, hdr, sizeof hdr, 0)) != 0 || (rc = fb__bfile_sync(f)) != 0) {
        goto fail;
    }
    if ((b = block_new(number, f)) == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory creating a block");
        goto fail;
    }
    b->reserved_end = FB__BLOCK_HDR_SIZE;
    pthread_rwlock_wrlock(&s->index_lock);
    rc = table_add(s, b);
    pthread_rwlock_unlock(&s->index_lock);
    if (rc != 0) {
        goto fail;
    }
    s->active = b;
    if (old != NULL) {
        seal_block(s, old);
    }
    return 0;
fail:
    if (b != NULL) {
        b->file = NULL;
        fb__block_release(b);
    }
    fb__bfile_close(f);
    fb__backend_remove(s->backend, number);
    return rc;
}

/* Makes room for one more in-flight write and written entry (b->mu held),
 * so that completing a write never needs to allocate. */
static int reserve_slots(fb_block *b)
{
    if (FB__GROW_ARRAY(&b->inflight, &b->cinflight, b->ninflight + 1, 16) != 0 ||
        FB__GROW_ARRAY(&b->written, &b->cwritten, b->nwritten + b->ninflight + 1, 256) != 0) {
        return fb__error(FB_ENOMEM, "out of memory appending to %s", b->name);
    }
    return 0;
}

/* Turns [off, off + need) into a pad record: its header, and its last
 * bytes so the file covers the whole region. */
static int write_pad(fb_block *b, uint64_t off, uint64_t need)
{
    uint8_t hdr[FB__REC_HDR_SIZE];
    static const uint8_t zeros[8];
    fb_rec_hdr pad = {.flags = FB__REC_PAD, .stored_len = need - FB__REC_HDR_SIZE};
    fb__rec_hdr_encode(hdr, &pad);
    int rc = fb__bfile_write(b->file, zeros, sizeof zeros, off + need - sizeof zeros);
    if (rc == 0) {
        rc = fb__bfile_write(b->file, hdr, sizeof hdr, off);
    }
    return rc;
}

int fb__store_append(fb_store *s, fb_rec_hdr *h, const void *payload, fb_block **blk,
                     uint64_t *payload_off)
{
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    if (h->stored_len > FB__MAX_STORED - 8) {
        return fb__error(FB_ETOOBIG, "a record of %" PRIu64 " bytes is over the limit of %u",
                         h->stored_len, FB__MAX_STORED - 8);
    }
    uint64_t need = fb__rec_size(h->stored_len);
    int rc = 0;

    pthread_mutex_lock(&s->append_lock);
    fb_block *b = s->active;
    pthread_mutex_lock(&b->mu);
    int rotate =
        b->broken || (b->tail + need > s->opts.max_block_size && b->tail > FB__BLOCK_HDR_SIZE);
    pthread_mutex_unlock(&b->mu);
    if (rotate) {
        if ((rc = fb__store_rotate_locked(s)) != 0) {
            pthread_mutex_unlock(&s->append_lock);
            return rc;
        }
        b = s->active;
    }
    uint64_t off = b->tail; /* only changed under append_lock, which we hold */
    if (off + need > FB__MAX_OFFSET) {
        pthread_mutex_unlock(&s->append_lock);
        return fb__error(FB_ETOOBIG, "record does not fit in a block");
    }
    if (off + need > b->reserved_end) {
        /* Ahead of the tail, never past the block's end; on a nearly full
         * disk, just this record. */
        uint64_t room = s->opts.max_block_size > off ? s->opts.max_block_size - off : 0;
        uint64_t chunk = room < PREALLOC_CHUNK ? room : PREALLOC_CHUNK;
        if (chunk < need) {
            chunk = need;
        }
        rc = fb__bfile_reserve(b->file, off, chunk);
        if (rc == FB_ENOSPC && chunk > need) {
            chunk = need;
            rc = fb__bfile_reserve(b->file, off, chunk);
        }
        if (rc != 0) {
            pthread_mutex_unlock(&s->append_lock);
            return rc;
        }
        b->reserved_end = off + chunk;
    }
    pthread_mutex_lock(&b->mu);
    rc = reserve_slots(b);
    if (rc == 0) {
        b->inflight[b->ninflight++] = off;
        b->tail = off + need;
    }
    pthread_mutex_unlock(&b->mu);
    if (rc != 0) {
        pthread_mutex_unlock(&s->append_lock);
        return rc;
    }
    pthread_rwlock_wrlock(&s->index_lock);
    b->file_bytes = off + need;
    pthread_rwlock_unlock(&s->index_lock);
    fb__block_retain(b);
    pthread_mutex_unlock(&s->append_lock);

    /* Outside every store lock: the write itself. */
    if (h->key == 0) {
        h->key = fb__key_make(b->number, off + FB__REC_HDR_SIZE);
    }
    uint8_t hdr[FB__REC_HDR_SIZE];
    static const uint8_t zeros[8];
    fb__rec_hdr_encode(hdr, h);
    struct iovec iov[3] = {{hdr, sizeof hdr},
                           {(void *)payload, (size_t)h->stored_len},
                           {(void *)zeros, (size_t)(need - FB__REC_HDR_SIZE - h->stored_len)}};
    rc = fb__bfile_writev(b->file, iov, 3, off);
    int pad_failed = 0;
    if (rc != 0) {
        /* Cover the region with a pad so a scan can step over it; keep the
         * original error detail for the caller. */
        char detail[256];
        snprintf(detail, sizeof detail, "%s", fb_last_error());
        pad_failed = write_pad(b, off, need) != 0;
        fb__error(rc, "%s", detail);
    }
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->ninflight; i++) {
        if (b->inflight[i] == off) {
            b->inflight[i] = b->inflight[--b->ninflight];
            break;
        }
    }
    if (rc == 0) {
        b->written[b->nwritten++] = (fb_idx_entry){
            h->key,     off + FB__REC_HDR_SIZE, (uint32_t)h->stored_len, h->cookie, h->flags,
            h->data_crc};
    } else {
        b->broken = 1;
        if (pad_failed && off < b->fail_from) {
            b->fail_from = off;
        }
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (rc != 0) {
        fb__block_release(b);
        return rc;
    }
    *blk = b;
    *payload_off = off + FB__REC_HDR_SIZE;
    return 0;
}

/* End of the written prefix of b: every reservation below it has been
 * written (b->mu held). */
static uint64_t written_prefix(const fb_block *b)
{
    uint64_t prefix = b->tail;
    for (size_t i = 0; i < b->ninflight; i++) {
        if (b->inflight[i] < prefix) {
            prefix = b->inflight[i];
        }
    }
    return prefix;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Group commit. A leader first lets the writes reserved so far finish; and
 * when the last sync was shared by several threads (there is concurrency),
 * it also waits for more writers to join, so each fdatasync covers as many
 * puts as it can: until as many threads wait as were inside when the last
 * sync ended and every reserved write is finished, or at most a quarter of the last
 * fdatasync's duration (at most 1 ms), whichever comes first. Ending early
 * matters because the disk idles during the gather: on a disk that is bound
 * by synced bandwidth a fixed window only adds that idle time. A lone
 * writer never waits.
 *
 * b->syncing is GATHERING while a leader collects its group, SYNCING while
 * its fdatasync runs; either way no second leader starts. */
#define GATHER_MAX_NS 1000000u
#define GATHERING 2
#define SYNCING 1

/* Whether a gathering leader may sync now (b->mu held): when grouping,
 * once its group is complete; otherwise once the writes reserved up to
 * target are finished. */
static int gather_complete(const fb_block *b, int grouping, uint64_t target)
{
    uint64_t prefix = written_prefix(b);
    if (!grouping) {
        return prefix >= target;
    }
    return prefix >= b->tail && b->waiting >= b->last_group;
}

int fb__store_make_durable(fb_store *s, fb_block *b, uint64_t end)
{
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    b->waiting++;
    /* A gathering leader sleeps until its group is complete; when this
     * thread completes it, wake it (the finished writes already did). */
    if (b->syncing == GATHERING && gather_complete(b, 1, 0)) {
        pthread_cond_broadcast(&b->cv);
    }
    for (;;) {
        if (end > b->fail_from) {
            rc = fb__error(FB_EIO, "an earlier write or sync of %s failed; record not durable",
                           b->name);
            break;
        }
        if (b->durable_upto >= end) {
            break;
        }
        uint64_t prefix = written_prefix(b);
        if (b->syncing || prefix < end) {
            /* A sync is running (it may cover us) or an earlier write is
             * still in flight (a sync now would not make us durable). */
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        b->syncing = GATHERING;
        uint64_t window = b->last_group > 1 ? b->last_sync_ns / 4 : 0;
        if (window > GATHER_MAX_NS) {
            window = GATHER_MAX_NS;
        }
        uint64_t target = b->tail;
        if (!gather_complete(b, window > 0, target)) {
            uint64_t until = mono_ns() + (window > 0 ? window : GATHER_MAX_NS);
            struct timespec dl = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
            while (!gather_complete(b, window > 0, target)) {
                if (pthread_cond_timedwait(&b->cv, &b->mu, &dl) != 0) {
                    break;
                }
            }
        }
        prefix = written_prefix(b);
        b->syncing = SYNCING;
        uint64_t t0 = mono_ns();
        pthread_mutex_unlock(&b->mu);
        rc = fb__bfile_sync(b->file);
        atomic_fetch_add(&s->syncs, 1);
        pthread_mutex_lock(&b->mu);
        b->last_sync_ns = mono_ns() - t0;
        /* Everybody inside now, the group just synced and the writers that
         * came during the sync, is how many writers there are: the size of
         * the next group. (Counted at the start instead, groups split into
         * two halves that alternate and never grow again.) */
        b->last_group = b->waiting;
        b->syncing = 0;
        if (rc == 0) {
            uint64_t upto = prefix < b->fail_from ? prefix : b->fail_from;
            if (upto > b->durable_upto) {
                b->durable_upto = upto;
            }
        } else {
            /* After a failed fsync the kernel may have dropped dirty pages:
             * nothing not yet durable can be trusted any more. */
            if (b->durable_upto < b->fail_from) {
                b->fail_from = b->durable_upto;
            }
            b->broken = 1;
        }
        pthread_cond_broadcast(&b->cv);
        if (rc != 0) {
            break;
        }
    }
    b->waiting--;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void fb__store_unwrite(fb_store *s, fb_block *b, uint64_t payload_off)
{
    (void)s;
    uint64_t need = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = b->nwritten; i-- > 0;) {
        if (b->written[i].offset == payload_off) {
            b->written[i].flags |= FB__REC_PAD;
            need = fb__rec_size(b->written[i].stored_len);
            break;
        }
    }
    b->broken = 1;
    pthread_mutex_unlock(&b->mu);
    /* Best effort: a scan of this block then steps over the record too. */
    char detail[512];
    snprintf(detail, sizeof detail, "%s", fb_last_error());
    if (need != 0) {
        write_pad(b, payload_off - FB__REC_HDR_SIZE, need);
    }
    fb__error(0, "%s", detail);
}

static void *batch_main(void *arg)
{
    fb_store *s = arg;
    pthread_mutex_lock(&s->batch_mu);
    while (!s->batch_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->opts.batch_interval_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&s->batch_cv, &s->batch_mu, &ts);
        if (s->batch_stop) {
            break;
        }
        pthread_mutex_unlock(&s->batch_mu);
        pthread_mutex_lock(&s->append_lock);
        fb_block *b = s->active;
        fb__block_retain(b);
        pthread_mutex_unlock(&s->append_lock);
        pthread_mutex_lock(&b->mu);
        uint64_t end = b->tail;
        int dirty = b->durable_upto < end && end <= b->fail_from;
        pthread_mutex_unlock(&b->mu);
        if (dirty && fb__store_make_durable(s, b, end) != 0) {
            fb__log(s, FB_LOG_ERROR, "batch sync failed: %s", fb_last_error());
        }
        fb__block_release(b);
        pthread_mutex_lock(&s->batch_mu);
    }
    pthread_mutex_unlock(&s->batch_mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Put                                                                       */

/* Publishes a durable new record in the index. */
static int publish(fb_store *s, fb_block *b, const fb_rec_hdr *h, uint64_t off)
{
    fb_index_entry e = {h->key, fb__key_make(b->number, off),
                        (uint32_t)h->stored_len | ix_flags(h->flags) | FB__IX_VERIFIED, h->cookie};
    pthread_rwlock_wrlock(&s->index_lock);
    int rc = fb__index_put(&s->index, &e, NULL, NULL);
    if (rc == 0) {
        b->live_bytes += fb__rec_size(h->stored_len);
        b->live_records++;
    }
    pthread_rwlock_unlock(&s->index_lock);
    return rc;
}

int fb_put_webp(fb_store *s, const void *webp, size_t len, uint32_t width, uint32_t height,
                fb_meta *meta)
{
    if (s == NULL || webp == NULL || len == 0) {
        return fb__error(FB_EINVAL, "fb_put_webp needs a store and a non-empty image");
    }
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    if (len > FB__MAX_STORED - 8 - FB__FERNET_OVERHEAD - 16) {
        return fb__error(FB_ETOOBIG, "an image of %zu bytes is over the limit of %u", len,
                         FB__MAX_STORED - 8 - FB__FERNET_OVERHEAD - 16);
    }
    int rc = 0;
    uint8_t *zbuf = NULL, *tbuf = NULL;
    fb_block *b = NULL;
    const uint8_t *stored = webp;
    size_t stored_len = len;
    uint32_t flags = 0;
    /* Compression and encryption run outside every lock. */
    if (s->opts.compression) {
        if ((zbuf = fb__malloc(len)) == NULL) {
            rc = fb__error(FB_ENOMEM, "out of memory compressing %zu bytes", len);
            goto out;
        }
        size_t zlen = 0;
        rc = fb__zstd_compress(webp, len, s->opts.compression_level, s->opts.compression_min_saving,
                               zbuf, len, &zlen);
        if (rc < 0) {
            goto out;
        }
        if (rc == 0) {
            stored = zbuf;
            stored_len = zlen;
            flags |= FB__REC_ZSTD;
        }
        rc = 0;
    }
    if (s->fernet != NULL) {
        size_t cap = fb__fernet_token_len(stored_len), tlen = 0;
        if ((tbuf = fb__malloc(cap)) == NULL) {
            rc = fb__error(FB_ENOMEM, "out of memory encrypting %zu bytes", stored_len);
            goto out;
        }
        rc = fb__fernet_encrypt(s->fernet, stored, stored_len, (uint64_t)time(NULL), tbuf, cap,
                                &tlen);
        if (rc != 0) {
            goto out;
        }
        stored = tbuf;
        stored_len = tlen;
        flags |= FB__REC_FERNET;
    }
    fb_rec_hdr h = {.flags = flags,
                    .key = 0,
                    .cookie = random_u32(),
                    .width = width,
                    .height = height,
                    .data_crc = fb__crc32c(0, stored, stored_len),
                    .stored_len = stored_len,
                    .plain_len = len,
                    .created = (int64_t)time(NULL),
                    .birth_len = (uint32_t)stored_len};
    uint64_t off = 0;
    if ((rc = fb__store_append(s, &h, stored, &b, &off)) != 0) {
        goto out;
    }
    if (s->opts.durability == FB_DURABILITY_ALWAYS) {
        rc = fb__store_make_durable(s, b, off + fb__align8(stored_len));
        if (rc != 0) {
            fb__store_unwrite(s, b, off);
            goto out;
        }
        atomic_fetch_add(&s->synced_puts, 1);
    }
    if ((rc = publish(s, b, &h, off)) != 0) {
        fb__store_unwrite(s, b, off);
        goto out;
    }
    if (meta != NULL) {
        fb_index_entry e = {h.key, 0, (uint32_t)stored_len | ix_flags(flags), h.cookie};
        fb__store_fill_meta(&e, &h, meta);
    }
out:
    fb__block_release(b);
    fb__free(zbuf);
    fb__free(tbuf);
    return rc;
}

int fb_put(fb_store *s, const void *data, size_t len, const fb_image_opts *opts, fb_meta *meta)
{
    if (s == NULL || (data == NULL && len != 0)) {
        return fb__error(FB_EINVAL, "fb_put needs a store and an image");
    }
    if (len == 0) {
        /* Bad input, like any other upload that is no image (HTTP 415). */
        return fb__error(FB_EUNSUPPORTED, "empty image (0 bytes)");
    }
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    fb_image_result r;
    memset(&r, 0, sizeof r);
    /* The conversion (about 90% of an upload's cost) holds no store lock. */
    int rc = fb__image_to_webp(data, len, opts != NULL ? opts : &s->opts.image, &r);
    if (rc == 0) {
        rc = fb_put_webp(s, r.webp, r.len, r.width, r.height, meta);
    }
    fb__image_result_free(&r);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Lookups                                                                   */

/* Whether the record of e, whose stored length differs from a triple's
 * size, was born with that size (a record re-encrypted by rekey keeps its
 * birth length in its header). One header read; only on this path. */
static int birth_size_is(fb_block *b, const fb_index_entry *e, uint64_t size)
{
    if (size == 0 || size > FB__MAX_STORED) {
        return 0;
    }
    fb_rec_hdr h;
    return read_header(b, fb__key_offset(e->loc), e->key, &h) == 0 && h.birth_len == size;
}

/* Resolves an address to its index entry and (retained) current block. */
static int resolve(fb_store *s, const fb_addr *a, fb_index_entry *e, fb_block **blk)
{
    if (s == NULL || a == NULL) {
        return fb__error(FB_EINVAL, "store and address must not be NULL");
    }
    pthread_rwlock_rdlock(&s->index_lock);
    const fb_index_entry *x = fb__index_find(&s->index, a->key);
    int ok = x != NULL && (!a->by_id || x->cookie == a->cookie);
    int size_ok = ok && (a->by_id || (uint64_t)(x->len_bits & FB__IX_LEN_MASK) == a->size);
    fb_block *b = NULL;
    if (ok) {
        *e = *x;
        b = fb__store_find_block(s, fb__key_block(x->loc));
        if (b != NULL) {
            fb__block_retain(b);
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (ok && !size_ok && (b == NULL || !birth_size_is(b, e, a->size))) {
        fb__block_release(b);
        b = NULL;
        ok = 0;
    }
    if (!ok) {
        char name[32];
        fb__block_name(fb__key_block(a->key), name);
        if (a->by_id) {
            return fb__error(FB_ENOTFOUND, "no image with id %016" PRIx64 "%08" PRIx32, a->key,
                             a->cookie);
        }
        return fb__error(FB_ENOTFOUND, "no image at %s offset %" PRIu64 " size %" PRIu64, name,
                         fb__key_offset(a->key), a->size);
    }
    if (b == NULL) {
        return fb__error(FB_ECORRUPT, "image %016" PRIx64 " points to a missing block", a->key);
    }
    *blk = b;
    return 0;
}

int fb_stat(fb_store *s, const fb_addr *addr, fb_meta *meta)
{
    fb_index_entry e;
    fb_block *b = NULL;
    int rc = resolve(s, addr, &e, &b);
    if (rc != 0) {
        return rc;
    }
    fb_rec_hdr h;
    rc = read_header(b, fb__key_offset(e.loc), e.key, &h);
    if (rc == 0 && meta != NULL) {
        fb__store_fill_meta(&e, &h, meta);
    }
    fb__block_release(b);
    return rc;
}

static void mark_verified(fb_store *s, const fb_index_entry *e)
{
    pthread_rwlock_wrlock(&s->index_lock);
    fb_index_entry *x = fb__index_find(&s->index, e->key);
    if (x != NULL && x->loc == e->loc) {
        x->len_bits |= FB__IX_VERIFIED;
    }
    pthread_rwlock_unlock(&s->index_lock);
}

/* Reads, checks and decodes the record of e into a new buffer. */
static int load_image(fb_store *s, const fb_index_entry *e, fb_block *b, fb_buf **out,
                      fb_rec_hdr *h)
{
    uint64_t off = fb__key_offset(e->loc);
    uint64_t at = off - FB__REC_HDR_SIZE;
    size_t stored = e->len_bits & FB__IX_LEN_MASK;
    int plain = !(e->len_bits & (FB__IX_ZSTD | FB__IX_FERNET));
    uint8_t raw[FB__REC_HDR_SIZE];
    uint8_t *data = NULL, *mid = NULL;
    fb_buf *buf = NULL;
    int rc = 0;
    /* One read of header and stored bytes; a plain record lands directly in
     * the buffer that is handed out. */
    if (plain) {
        if ((buf = fb__buf_new(stored)) == NULL) {
            return fb__error(FB_ENOMEM, "out of memory reading %zu bytes", stored);
        }
        data = fb__buf_mut(buf);
    } else if ((data = fb__malloc(stored)) == NULL) {
        return fb__error(FB_ENOMEM, "out of memory reading %zu bytes", stored);
    }
    struct iovec iov[2] = {{raw, sizeof raw}, {data, stored}};
    if ((rc = fb__bfile_readv(b->file, iov, 2, at)) != 0 ||
        (rc = fb__rec_hdr_decode(raw, sizeof raw, at, UINT64_MAX, b->name, h)) != 0) {
        goto out;
    }
    if (h->key != e->key || h->cookie != e->cookie || h->stored_len != stored ||
        (h->flags & (FB__REC_TOMBSTONE | FB__REC_PAD))) {
        rc = fb__error(FB_ECORRUPT, "record in %s at offset %" PRIu64 " is not the indexed image",
                       b->name, at);
        goto out;
    }
    if ((rc = fb__rec_check_data(h, data, at, b->name)) != 0) {
        goto out;
    }
    if (plain) {
        if (h->plain_len != stored) {
            rc = fb__error(FB_ECORRUPT, "record in %s at offset %" PRIu64 " has bad lengths",
                           b->name, at);
            goto out;
        }
        *out = buf;
        buf = NULL;
        goto out;
    }
    const uint8_t *p = data;
    size_t n = stored;
    if (h->flags & FB__REC_FERNET) {
        if (s->fernet == NULL) {
            rc = fb__error(FB_ENOKEY, "image %016" PRIx64 " is encrypted and no key is configured",
                           e->key);
            goto out;
        }
        if ((mid = fb__malloc(stored)) == NULL) {
            rc = fb__error(FB_ENOMEM, "out of memory decrypting %zu bytes", stored);
            goto out;
        }
        if ((rc = fb__fernet_decrypt(s->fernet, data, stored, mid, stored, &n, NULL)) != 0) {
            goto out;
        }
        p = mid;
    }
    if ((buf = fb__buf_new((size_t)h->plain_len)) == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory for an image of %" PRIu64 " bytes", h->plain_len);
        goto out;
    }
    if (h->flags & FB__REC_ZSTD) {
        rc = fb__zstd_decompress(p, n, fb__buf_mut(buf), (size_t)h->plain_len);
    } else if (n != h->plain_len) {
        rc = fb__error(FB_ECORRUPT,
                       "record in %s at offset %" PRIu64 " decrypts to %zu bytes, want %" PRIu64,
                       b->name, at, n, h->plain_len);
    } else {
        memcpy(fb__buf_mut(buf), p, n);
    }
    if (rc == 0) {
        *out = buf;
        buf = NULL;
    }
out:
    if (!plain) {
        fb__free(data);
    }
    fb__free(mid);
    fb_buf_release(buf);
    return rc;
}

/* The record facts a cache hit replies with, kept beside its bytes. */
static fb__cache_note note_of(const fb_rec_hdr *h)
{
    return (fb__cache_note){h->created, h->width, h->height, h->birth_len};
}

/* load_image, then what every miss does with the bytes: remember that their
 * CRC was checked, and offer them to the cache (with the header's facts)
 * under the ticket the caller took before resolving e. */
static int load_and_cache(fb_store *s, const fb_index_entry *e, fb_block *b, uint64_t ticket,
                          fb_buf **out, fb_rec_hdr *h)
{
    int rc = load_image(s, e, b, out, h);
    if (rc != 0) {
        return rc;
    }
    if (!(e->len_bits & FB__IX_VERIFIED)) {
        mark_verified(s, e);
    }
    fb__cache_note note = note_of(h);
    fb__cache_put_ticket(s->cache, e->key, *out, &note, ticket);
    return 0;
}

/* meta of a cache hit: from the index entry and the note, no disk read. */
static void fill_hit_meta(const fb_index_entry *e, const fb__cache_note *note, const fb_buf *hit,
                          fb_meta *meta)
{
    fb_rec_hdr h = {.width = note->width,
                    .height = note->height,
                    .plain_len = fb_buf_len(hit),
                    .created = note->created,
                    .birth_len = note->birth_len};
    fb__store_fill_meta(e, &h, meta);
}

/* The rest of a cache hit: the address must still resolve (a delete drops
 * the index entry before the cache entry). Takes over hit: *out on success,
 * released on error. */
static int finish_hit(fb_store *s, const fb_addr *addr, fb_buf *hit, const fb__cache_note *note,
                      fb_buf **out, fb_meta *meta)
{
    fb_index_entry e;
    fb_block *b = NULL;
    int rc = resolve(s, addr, &e, &b);
    fb__block_release(b);
    if (rc != 0) {
        fb_buf_release(hit);
        return rc;
    }
    if (meta != NULL) {
        fill_hit_meta(&e, note, hit, meta);
    }
    *out = hit;
    return 0;
}

int fb_get_cached(fb_store *s, const fb_addr *addr, fb_buf **out, fb_meta *meta)
{
    if (s == NULL || addr == NULL || out == NULL) {
        return fb__error(FB_EINVAL, "store, address and out must not be NULL");
    }
    *out = NULL;
    fb__cache_note note;
    fb_buf *hit = fb__cache_peek(s->cache, addr->key, &note);
    if (hit == NULL) {
        return 0;
    }
    int rc = finish_hit(s, addr, hit, &note, out, meta);
    return rc == 0 ? 1 : rc;
}

int fb_get(fb_store *s, const fb_addr *addr, fb_buf **out, fb_meta *meta)
{
    if (s == NULL || addr == NULL || out == NULL) {
        return fb__error(FB_EINVAL, "store, address and out must not be NULL");
    }
    *out = NULL;
    uint64_t ticket = 0;
    /* The ticket is taken before the index lookup: a delete in between
     * makes the put below a no-op, so a deleted image is never cached. */
    fb__cache_note note;
    fb_buf *cached = fb__cache_lookup(s->cache, addr->key, &ticket, &note);
    if (cached != NULL) {
        return finish_hit(s, addr, cached, &note, out, meta);
    }
    fb_index_entry e;
    fb_block *b = NULL;
    int rc = resolve(s, addr, &e, &b);
    if (rc != 0) {
        return rc;
    }
    fb_rec_hdr h;
    fb_buf *buf = NULL;
    rc = load_and_cache(s, &e, b, ticket, &buf, &h);
    fb__block_release(b);
    if (rc != 0) {
        return rc;
    }
    if (meta != NULL) {
        fb__store_fill_meta(&e, &h, meta);
    }
    *out = buf;
    return 0;
}

int fb_get_direct(fb_store *s, const fb_addr *addr, fb_buf **cached, int *fd, uint64_t *offset,
                  fb_meta *meta)
{
    if (s == NULL || addr == NULL || cached == NULL || fd == NULL || offset == NULL) {
        return fb__error(FB_EINVAL, "fb_get_direct: NULL argument");
    }
    *cached = NULL;
    *fd = -1;
    uint64_t ticket = 0;
    fb__cache_note note;
    fb_buf *hit = fb__cache_lookup(s->cache, addr->key, &ticket, &note);
    if (hit != NULL) {
        int rc = finish_hit(s, addr, hit, &note, cached, meta);
        return rc == 0 ? 1 : rc;
    }
    fb_index_entry e;
    fb_block *b = NULL;
    int rc = resolve(s, addr, &e, &b);
    if (rc != 0) {
        return rc;
    }
    fb_rec_hdr h;
    int ret = 0;
    if ((e.len_bits & (FB__IX_ZSTD | FB__IX_FERNET)) || !(e.len_bits & FB__IX_VERIFIED) ||
        fb__cache_second_miss(s->cache, e.key)) {
        /* Bytes to decode, or never sent unchecked (the first read verifies
         * the CRC), or a plain image read again lately (from memory it goes
         * out faster than by sendfile): read them here as fb_get would, so
         * that the caller's one request costs one lookup, one index resolve
         * and one cache miss. */
        if ((rc = load_and_cache(s, &e, b, ticket, &hit, &h)) == 0) {
            *cached = hit;
            ret = 1;
        }
    } else if ((rc = read_header(b, fb__key_offset(e.loc), e.key, &h)) == 0) {
        int d = dup(fb__bfile_fd(b->file));
        if (d < 0) {
            rc = fb__error(fb__errno_code(errno), "cannot dup the descriptor of %s: %s", b->name,
                           strerror(errno));
        } else {
            *fd = d;
            *offset = fb__key_offset(e.loc);
            ret = 2;
        }
    }
    fb__block_release(b);
    if (rc != 0) {
        return rc;
    }
    if (meta != NULL) {
        fb__store_fill_meta(&e, &h, meta);
    }
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Delete                                                                    */

int fb_delete(fb_store *s, const fb_addr *addr, fb_block_stats *stats)
{
    if (s == NULL || addr == NULL) {
        return fb__error(FB_EINVAL, "store and address must not be NULL");
    }
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    fb_index_entry e;
    fb_block *b = NULL, *tb = NULL;
    /* move_lock: compaction never copies this key after our tombstone. */
    pthread_mutex_lock(&s->move_lock);
    int rc = resolve(s, addr, &e, &b);
    if (rc != 0) {
        goto out;
    }
    uint64_t off = fb__key_offset(e.loc);
    uint8_t payload[FB__TOMB_SIZE];
    fb__tombstone_encode(payload, &(fb_tombstone){b->number, off});
    fb_rec_hdr th = {.flags = FB__REC_TOMBSTONE,
                     .key = e.key,
                     .cookie = e.cookie,
                     .data_crc = fb__crc32c(0, payload, sizeof payload),
                     .stored_len = FB__TOMB_SIZE,
                     .created = (int64_t)time(NULL)};
    uint64_t toff = 0;
    if ((rc = fb__store_append(s, &th, payload, &tb, &toff)) != 0) {
        goto out;
    }
    if (s->opts.durability == FB_DURABILITY_ALWAYS &&
        (rc = fb__store_make_durable(s, tb, toff + FB__TOMB_SIZE)) != 0) {
        fb__store_unwrite(s, tb, toff);
        goto out;
    }
    /* The deleted bit in the record itself: best effort, the tombstone
     * already decides (the header CRC leaves this bit out). */
    uint8_t fl[4];
    uint64_t flags_at = off - FB__REC_HDR_SIZE + FB__REC_FLAGS_OFFSET;
    if (fb__bfile_read(b->file, fl, sizeof fl, flags_at) == 0) {
        fb__put_le32(fl, fb__get_le32(fl) | FB__REC_DELETED);
        if (fb__bfile_write(b->file, fl, sizeof fl, flags_at) != 0) {
            fb__log(s, FB_LOG_WARN, "cannot flag the deleted record: %s", fb_last_error());
        }
    }
    pthread_rwlock_wrlock(&s->index_lock);
    fb_index_entry old;
    if (fb__index_remove(&s->index, e.key, &old)) {
        kill_old(s, &old);
    }
    if (stats != NULL) {
        fill_block_stats(b, stats);
    }
    pthread_rwlock_unlock(&s->index_lock);
    /* After the index drop, so a concurrent reader's ticket goes stale. */
    fb__cache_remove(s->cache, e.key);
    fb__error_clear();
out:
    pthread_mutex_unlock(&s->move_lock);
    fb__block_release(b);
    fb__block_release(tb);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Listing and statistics                                                    */

int fb_foreach(fb_store *s, int (*fn)(void *userdata, const fb_meta *meta), void *userdata)
{
    if (s == NULL || fn == NULL) {
        return fb__error(FB_EINVAL, "store and callback must not be NULL");
    }
    /* A snapshot of the keys, then one header read each outside the lock;
     * images deleted meanwhile are skipped. */
    pthread_rwlock_rdlock(&s->index_lock);
    size_t n = s->index.count, k = 0;
    fb_addr *v = fb__calloc(n ? n : 1, sizeof *v);
    if (v != NULL) {
        size_t pos = 0;
        const fb_index_entry *x;
        while (k < n && (x = fb__index_next(&s->index, &pos)) != NULL) {
            v[k++] = (fb_addr){.key = x->key, .cookie = x->cookie, .by_id = 1};
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (v == NULL) {
        return fb__error(FB_ENOMEM, "out of memory listing %zu images", n);
    }
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        fb_meta m;
        rc = fb_stat(s, &v[i], &m);
        if (rc == FB_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc == 0) {
            rc = fn(userdata, &m);
        }
    }
    fb__free(v);
    return rc;
}

int fb_get_stats(fb_store *s, fb_stats *out)
{
    if (s == NULL || out == NULL) {
        return fb__error(FB_EINVAL, "store and out must not be NULL");
    }
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&s->index_lock);
    out->blocks = (uint32_t)s->nblocks;
    for (size_t i = 0; i < s->nblocks; i++) {
        fb_block_stats st;
        fill_block_stats(s->blocks[i], &st);
        out->file_bytes += st.file_bytes;
        out->live_bytes += st.live_bytes;
        out->dead_bytes += st.dead_bytes;
        out->live_records += st.live_records;
        out->dead_records += st.dead_records;
    }
    pthread_rwlock_unlock(&s->index_lock);
    fb_cache_stats cs;
    fb__cache_stats(s->cache, &cs);
    out->cache_capacity = cs.capacity_bytes;
    out->cache_bytes = cs.bytes;
    out->cache_entries = cs.entries;
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    out->cache_evictions = cs.evictions;
    out->syncs = atomic_load(&s->syncs);
    out->synced_puts = atomic_load(&s->synced_puts);
    return 0;
}

int fb_list_blocks(fb_store *s, fb_block_stats **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL) {
        return fb__error(FB_EINVAL, "store, out and n must not be NULL");
    }
    pthread_rwlock_rdlock(&s->index_lock);
    size_t cnt = s->nblocks;
    fb_block_stats *v = fb__calloc(cnt ? cnt : 1, sizeof *v);
    if (v != NULL) {
        for (size_t i = 0; i < cnt; i++) {
            fill_block_stats(s->blocks[i], &v[i]);
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (v == NULL) {
        return fb__error(FB_ENOMEM, "out of memory listing %zu blocks", cnt);
    }
    *out = v;
    *n = cnt;
    return 0;
}
