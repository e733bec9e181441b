/*
 * verify - fb_verify: reads every record of every block, checks block
 * headers, record header CRCs, stored-byte CRCs, each sealed block's index
 * file against the block, and the in-memory index against the blocks.
 * Every problem is reported with its block and offset; verify never
 * changes anything. It runs online: ranges still being written are left
 * out, and a mismatch with the memory index is re-checked under the lock
 * before it is reported (the image may have moved or been deleted).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util/alloc.h"

typedef struct vctx {
    fb_store *s;
    void (*on_problem)(void *userdata, const fb_problem *p);
    void *userdata;
    fb_verify_result res;
} vctx;

static void problem(vctx *v, const char *block, uint64_t offset, int error, const char *fmt, ...)
    FB__PRINTF(5, 6);

static void problem(vctx *v, const char *block, uint64_t offset, int error, const char *fmt, ...)
{
    fb_problem p;
    memset(&p, 0, sizeof p);
    snprintf(p.block, sizeof p.block, "%s", block);
    p.offset = offset;
    p.error = error;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof p.detail, fmt, ap);
    va_end(ap);
    v->res.problems++;
    if (v->on_problem != NULL) {
        v->on_problem(v->userdata, &p);
    }
}

/* A range of a block whose header did not validate, up to the next valid
 * record: reported once, and left out of the index comparisons. */
typedef struct damage {
    uint64_t from, to; /* header offsets */
} damage;

typedef struct scanned {
    fb_idx_entry *v;
    size_t n, cap;
    damage *d;
    size_t nd, capd;
    vctx *ctx;
    fb_bfile *file;
} scanned;

static int collect(void *ud, uint64_t at, const fb_rec_hdr *h, const uint8_t *data)
{
    scanned *sc = ud;
    if (FB__GROW_ARRAY(&sc->v, &sc->cap, sc->n + 1, 256) != 0) {
        return fb__error(FB_ENOMEM, "out of memory verifying %s", fb__bfile_name(sc->file));
    }
    sc->v[sc->n++] = (fb_idx_entry){
        h->key, at + FB__REC_HDR_SIZE, (uint32_t)h->stored_len, h->cookie, h->flags, h->data_crc};
    if (data == NULL) {
        problem(sc->ctx, fb__bfile_name(sc->file), at, FB_ECORRUPT,
                "crc mismatch in %s at offset %" PRIu64, fb__bfile_name(sc->file), at);
    }
    return 0;
}

static int add_damage(scanned *sc, uint64_t at, uint64_t next)
{
    if (FB__GROW_ARRAY(&sc->d, &sc->capd, sc->nd + 1, 8) != 0) {
        return fb__error(FB_ENOMEM, "out of memory listing damage in %s", fb__bfile_name(sc->file));
    }
    sc->d[sc->nd++] = (damage){at, next};
    return 0;
}

static int collect_damage(void *ud, uint64_t at, uint64_t next, int error)
{
    scanned *sc = ud;
    int rc = add_damage(sc, at, next);
    if (rc != 0) {
        return rc;
    }
    problem(sc->ctx, fb__bfile_name(sc->file), at, error,
            "%s; %" PRIu64 " bytes unreadable up to the next valid record at offset %" PRIu64,
            fb_last_error(), next - at, next);
    return 0;
}

/* Whether the record whose payload is at off lies in a damaged range. */
static int in_damage(const scanned *sc, uint64_t off)
{
    uint64_t at = off - FB__REC_HDR_SIZE;
    for (size_t i = 0; i < sc->nd; i++) {
        if (at >= sc->d[i].from && at < sc->d[i].to) {
            return 1;
        }
    }
    return 0;
}

static const fb_idx_entry *find_offset(const scanned *sc, uint64_t off)
{
    size_t lo = 0, hi = sc->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sc->v[mid].offset < off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < sc->n && sc->v[lo].offset == off ? &sc->v[lo] : NULL;
}

/* The index file of a sealed block must list exactly the block's records.
 * Only running out of memory is an error of verify itself. */
static int check_index_file(vctx *v, fb_block *b, const scanned *sc, uint64_t size)
{
    uint8_t *raw = NULL;
    size_t len = 0;
    fb_idx_entry *e = NULL;
    uint64_t n = 0, end = 0;
    char iname[32];
    fb__idx_name(b->number, iname);
    int rc = fb__backend_read_index(v->s->backend, b->number, (size_t)size + FB__IDX_HDR_SIZE, &raw,
                                    &len);
    if (rc == 0) {
        rc = fb__idx_decode(raw, len, b->number, v->s->store_id, size, iname, &e, &n, &end);
    }
    fb__free(raw);
    if (rc == FB_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        /* Compaction may have removed the block since it was listed. */
        pthread_rwlock_rdlock(&v->s->index_lock);
        int removed = b->removed;
        pthread_rwlock_unlock(&v->s->index_lock);
        if (!removed) {
            problem(v, iname, 0, rc, "%s", fb_last_error());
        }
        return 0;
    }
    uint64_t listed = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (in_damage(sc, e[i].offset)) {
            continue; /* its damaged header is reported already */
        }
        listed++;
        const fb_idx_entry *r = find_offset(sc, e[i].offset);
        if (r == NULL || r->key != e[i].key || r->cookie != e[i].cookie ||
            r->stored_len != e[i].stored_len || r->data_crc != e[i].data_crc ||
            ((r->flags ^ e[i].flags) & ~(FB__REC_DELETED | FB__REC_X_BADDATA)) != 0) {
            problem(v, b->name, e[i].offset - FB__REC_HDR_SIZE, FB_ECORRUPT,
                    "%s entry %" PRIu64 " does not match the record in the block", iname, i);
        }
    }
    if (listed != sc->n) {
        problem(v, iname, 0, FB_ECORRUPT, "index lists %" PRIu64 " records, block has %zu", listed,
                sc->n);
    }
    fb__free(e);
    return 0;
}

/* Every live image the memory index places in b must be a valid record
 * there (checked again under the lock before it counts as a problem). */
static int check_memory_index(vctx *v, fb_block *b, const scanned *sc, uint64_t limit)
{
    fb_store *s = v->s;
    pthread_rwlock_rdlock(&s->index_lock);
    size_t cnt = 0, pos = 0, k = 0;
    const fb_index_entry *x;
    while ((x = fb__index_next(&s->index, &pos)) != NULL) {
        cnt += fb__key_block(x->loc) == b->number;
    }
    fb_index_entry *snap = fb__calloc(cnt ? cnt : 1, sizeof *snap);
    pos = 0;
    while (snap != NULL && k < cnt && (x = fb__index_next(&s->index, &pos)) != NULL) {
        if (fb__key_block(x->loc) == b->number) {
            snap[k++] = *x;
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (snap == NULL) {
        return fb__error(FB_ENOMEM, "out of memory checking the index of %s", b->name);
    }
    for (size_t i = 0; i < k; i++) {
        uint64_t off = fb__key_offset(snap[i].loc);
        if (off >= limit || in_damage(sc, off)) {
            continue; /* written after this block was scanned, or reported */
        }
        const fb_idx_entry *r = find_offset(sc, off);
        /* The deleted bit is set once the tombstone is durable, just before
         * the index drops the image: not a problem in itself. */
        if (r != NULL && r->key == snap[i].key && r->cookie == snap[i].cookie &&
            r->stored_len == (snap[i].len_bits & FB__IX_LEN_MASK) &&
            !(r->flags & FB__REC_TOMBSTONE)) {
            continue;
        }
        pthread_rwlock_rdlock(&s->index_lock);
        const fb_index_entry *now = fb__index_find(&s->index, snap[i].key);
        int still = now != NULL && now->loc == snap[i].loc;
        pthread_rwlock_unlock(&s->index_lock);
        if (still) {
            problem(v, b->name, off - FB__REC_HDR_SIZE, FB_ECORRUPT,
                    "image %016" PRIx64 " is indexed here but the block has no valid record of it",
                    snap[i].key);
        }
    }
    fb__free(snap);
    return 0;
}

static int verify_block(vctx *v, fb_block *b, int sealed, uint64_t limit)
{
    uint8_t raw[FB__BLOCK_HDR_SIZE];
    uint64_t size = 0;
    int rc = fb__bfile_size(b->file, &size);
    if (rc != 0) {
        return rc;
    }
    if (size < FB__BLOCK_HDR_SIZE || fb__bfile_read(b->file, raw, sizeof raw, 0) != 0 ||
        fb__block_hdr_decode(raw, sizeof raw, b->number, v->s->store_id, b->name) != 0) {
        problem(v, b->name, 0, FB_ECORRUPT, "%s",
                size < FB__BLOCK_HDR_SIZE ? "block is shorter than its header" : fb_last_error());
        return 0;
    }
    scanned sc = {.ctx = v, .file = b->file};
    fb_scan_cb cb = {collect, collect_damage, &sc};
    uint64_t end = 0;
    int bad = 0;
    if (limit > size) {
        limit = size;
    }
    rc = fb__store_scan(b->file, limit, sealed, &cb, &end, &bad);
    if (rc != 0) {
        goto out;
    }
    if (bad != 0) {
        problem(v, b->name, end, bad, "%s", fb_last_error());
        /* One problem for the unreadable rest, not one per record in it. */
        if ((rc = add_damage(&sc, end, UINT64_MAX)) != 0) {
            goto out;
        }
    } else if (end < limit) {
        problem(v, b->name, end, FB_ECORRUPT, "%" PRIu64 " bytes of zeros where records should be",
                limit - end);
        if ((rc = add_damage(&sc, end, UINT64_MAX)) != 0) {
            goto out;
        }
    }
    v->res.records_checked += sc.n;
    v->res.bytes_checked += end;
    pthread_rwlock_rdlock(&v->s->index_lock);
    int removed = b->removed;
    pthread_rwlock_unlock(&v->s->index_lock);
    if (sealed && !removed) {
        rc = check_index_file(v, b, &sc, size);
    }
    if (rc == 0) {
        rc = check_memory_index(v, b, &sc, end);
    }
out:
    fb__free(sc.v);
    fb__free(sc.d);
    return rc;
}

int fb_verify(fb_store *s, void (*on_problem)(void *userdata, const fb_problem *p),
              fb_progress_fn progress, void *userdata, fb_verify_result *result)
{
    if (s == NULL) {
        return fb__error(FB_EINVAL, "store must not be NULL");
    }
    vctx v = {.s = s, .on_problem = on_problem, .userdata = userdata};
    pthread_rwlock_rdlock(&s->index_lock);
    size_t n = s->nblocks;
    fb_block **blks = fb__calloc(n ? n : 1, sizeof *blks);
    int *sealed = fb__calloc(n ? n : 1, sizeof *sealed);
    uint64_t total = 0;
    for (size_t i = 0; blks != NULL && sealed != NULL && i < n; i++) {
        blks[i] = s->blocks[i];
        fb__block_retain(blks[i]);
        sealed[i] = blks[i]->sealed;
        total += blks[i]->file_bytes;
    }
    pthread_rwlock_unlock(&s->index_lock);
    int rc = 0;
    if (blks == NULL || sealed == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory verifying");
        n = 0;
    }
    uint64_t done = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        fb_block *b = blks[i];
        /* Only the prefix whose writes have completed. */
        pthread_mutex_lock(&b->mu);
        uint64_t limit = b->tail;
        for (size_t j = 0; j < b->ninflight; j++) {
            if (b->inflight[j] < limit) {
                limit = b->inflight[j];
            }
        }
        pthread_mutex_unlock(&b->mu);
        if (sealed[i]) {
            uint64_t size = 0;
            if (fb__bfile_size(b->file, &size) == 0) {
                limit = size; /* a sealed block: the whole file */
            }
        }
        rc = verify_block(&v, b, sealed[i], limit);
        done += limit;
        if (rc == 0 && progress != NULL && progress(userdata, done, total) != 0) {
            rc = fb__error(FB_ECLOSED, "verify cancelled");
        }
    }
    for (size_t i = 0; blks != NULL && i < n; i++) {
        fb__block_release(blks[i]);
    }
    fb__free(blks);
    fb__free(sealed);
    if (result != NULL) {
        *result = v.res;
    }
    if (rc != 0) {
        return rc;
    }
    if (v.res.problems > 0) {
        return fb__error(FB_ECORRUPT, "verify found %" PRIu64 " problems", v.res.problems);
    }
    fb__error_clear();
    return 0;
}
