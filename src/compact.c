/*
 * compact - online compaction and rekey. A block's live records are copied
 * to the active block with their key, cookie and creation time, published
 * at their new place, made durable, and only then is the old block
 * unlinked. Readers keep using the old block through their reference until
 * they are done; writers keep appending meanwhile.
 *
 * Why a crash at any point is safe (docs/FORMAT.md, "Recovery"): a copy is
 * newer than the original, so it wins at open; a copy is only written while
 * its key is live, under the move_lock that delete also takes, so no copy
 * ever follows a tombstone; and a tombstone is only dropped when no block
 * that could still hold an older copy of its key exists.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util/alloc.h"
#include "util/crc32c.h"

/* Free space a compaction wants beyond the live bytes it copies (capped at
 * the block size): room for a new block's preallocation. */
#define COMPACT_MARGIN ((uint64_t)8 << 20)

/* Blocks that received copies, with the end of the last copy in each; and
 * whether the journal naming the block being compacted is written. */
typedef struct touched {
    fb_block *b[8];
    uint64_t end[8];
    int n;
    uint32_t number;
    int journaled;
} touched;

static int write_journal(fb_store *s, uint32_t number)
{
    uint8_t raw[FB__JOURNAL_SIZE];
    fb__journal_encode(raw, number);
    return fb__store_write_file(s, "compact.journal", raw, sizeof raw);
}

/* The journal goes down before the first copy, and only if there is one: a
 * block with nothing to copy is just removed, and a crash before that
 * leaves it whole (so a full disk, which has no room for a journal, can
 * still be reclaimed). */
static int before_copy(fb_store *s, touched *t)
{
    if (t->journaled) {
        return 0;
    }
    int rc = write_journal(s, t->number);
    t->journaled = rc == 0;
    return rc;
}

static int touch(fb_store *s, touched *t, fb_block *b, uint64_t end)
{
    for (int i = 0; i < t->n; i++) {
        if (t->b[i] == b) {
            if (end > t->end[i]) {
                t->end[i] = end;
            }
            fb__block_release(b);
            return 0;
        }
    }
    if (t->n == 8) {
        /* Rotations are rare; flush the oldest to make room. */
        int rc = fb__store_make_durable(s, t->b[0], t->end[0]);
        fb__block_release(t->b[0]);
        memmove(t->b, t->b + 1, 7 * sizeof t->b[0]);
        memmove(t->end, t->end + 1, 7 * sizeof t->end[0]);
        t->n = 7;
        if (rc != 0) {
            fb__block_release(b);
            return rc;
        }
    }
    t->b[t->n] = b;
    t->end[t->n] = end;
    t->n++;
    return 0;
}

/* Makes every copy durable; releases the blocks. */
static int flush_touched(fb_store *s, touched *t)
{
    int rc = 0;
    for (int i = 0; i < t->n; i++) {
        int r = fb__store_make_durable(s, t->b[i], t->end[i]);
        if (rc == 0) {
            rc = r;
        }
        fb__block_release(t->b[i]);
    }
    t->n = 0;
    return rc;
}

/* Whether a block numbered in [lo, hi] other than `skip` exists: such a
 * block could hold an older copy of a deleted key. */
static int any_block_in(fb_store *s, uint32_t lo, uint32_t hi, uint32_t skip)
{
    int found = 0;
    pthread_rwlock_rdlock(&s->index_lock);
    for (size_t i = 0; i < s->nblocks && !found; i++) {
        uint32_t n = s->blocks[i]->number;
        found = n >= lo && n <= hi && n != skip;
    }
    pthread_rwlock_unlock(&s->index_lock);
    return found;
}

/* Re-encrypts stored bytes with the first key (rekey). *out is NULL when
 * the record already is readable with the first key and stays as it is. */
static int reencrypt(fb_store *s, fb_rec_hdr *h, const uint8_t *data, uint8_t **out)
{
    *out = NULL;
    uint8_t *plain = NULL, *tok = NULL;
    const uint8_t *src = data;
    size_t n = (size_t)h->stored_len;
    int rc = 0;
    if (h->flags & FB__REC_FERNET) {
        size_t ki = 0;
        if ((plain = fb__malloc(n)) == NULL) {
            return fb__error(FB_ENOMEM, "out of memory re-encrypting a record");
        }
        if ((rc = fb__fernet_decrypt(s->fernet, data, n, plain, n, &n, &ki)) != 0) {
            goto out;
        }
        if (ki == 0) {
            goto out; /* already under the first key */
        }
        src = plain;
    }
    size_t cap = fb__fernet_token_len(n), tlen = 0;
    if ((tok = fb__malloc(cap)) == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory re-encrypting a record");
        goto out;
    }
    if ((rc = fb__fernet_encrypt(s->fernet, src, n, (uint64_t)time(NULL), tok, cap, &tlen)) != 0) {
        goto out;
    }
    h->flags |= FB__REC_FERNET;
    h->stored_len = tlen;
    h->data_crc = fb__crc32c(0, tok, tlen);
    *out = tok;
    tok = NULL;
out:
    fb__free(plain);
    fb__free(tok);
    return rc;
}

/* Room for the copies of a block's live records: their bytes plus a margin
 * for the preallocation of a new block (at most one block). A block with
 * nothing live needs nothing: compacting it only frees space, which is
 * exactly what a full disk needs. */
static int check_space(fb_store *s, fb_block *b, uint64_t live)
{
    if (live == 0) {
        return 0;
    }
    struct statvfs sv;
    if (statvfs(s->dir, &sv) != 0) {
        return fb__error(fb__errno_code(errno), "cannot statvfs %s: %s", s->dir, strerror(errno));
    }
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    uint64_t margin =
        s->opts.max_block_size < COMPACT_MARGIN ? s->opts.max_block_size : COMPACT_MARGIN;
    uint64_t need = live + margin; /* live <= a block's size <= 2^40: no overflow */
    if (avail < need) {
        return fb__error(FB_ENOSPC,
                         "not enough free space to compact %s: need %" PRIu64 " bytes, %" PRIu64
                         " available",
                         b->name, need, avail);
    }
    return 0;
}

/* Moves one live record (move_lock held). */
static int move_record(fb_store *s, fb_block *b, const fb_idx_entry *x, int rekey, touched *t,
                       uint64_t *moved_bytes, fb_compact_result *res)
{
    uint64_t old_loc = fb__key_make(b->number, x->offset);
    pthread_rwlock_rdlock(&s->index_lock);
    const fb_index_entry *cur = fb__index_find(&s->index, x->key);
    int live = cur != NULL && cur->loc == old_loc;
    pthread_rwlock_unlock(&s->index_lock);
    if (!live) {
        return 0; /* deleted, or an older copy already superseded */
    }
    fb_rec_hdr h;
    uint8_t *data = NULL, *enc = NULL;
    fb_block *nb = NULL;
    int rc = fb__store_read_record(b, x->offset, &h, &data);
    if (rc != 0) {
        return rc;
    }
    /* The seed triple given at upload names the birth stored length; rekey
     * changes the stored length, so the header keeps the birth one. */
    if (h.birth_len == 0) {
        h.birth_len = (uint32_t)h.stored_len;
    }
    if (rekey && (rc = reencrypt(s, &h, data, &enc)) != 0) {
        goto out;
    }
    h.flags = (h.flags & ~FB__REC_DELETED) | FB__REC_MOVED;
    uint64_t noff = 0;
    if ((rc = before_copy(s, t)) != 0 ||
        (rc = fb__store_append(s, &h, enc != NULL ? enc : data, &nb, &noff)) != 0) {
        goto out;
    }
    uint64_t new_size = fb__rec_size(h.stored_len);
    pthread_rwlock_wrlock(&s->index_lock);
    fb_index_entry *e = fb__index_find(&s->index, x->key);
    if (e != NULL && e->loc == old_loc) {
        uint64_t old_size = fb__rec_size(e->len_bits & FB__IX_LEN_MASK);
        e->loc = fb__key_make(nb->number, noff);
        e->len_bits = (uint32_t)h.stored_len | FB__IX_VERIFIED |
                      ((h.flags & FB__REC_ZSTD) ? FB__IX_ZSTD : 0) |
                      ((h.flags & FB__REC_FERNET) ? FB__IX_FERNET : 0);
        b->live_bytes = b->live_bytes >= old_size ? b->live_bytes - old_size : 0;
        b->live_records = b->live_records ? b->live_records - 1 : 0;
        b->dead_records++;
        nb->live_bytes += new_size;
        nb->live_records++;
    }
    pthread_rwlock_unlock(&s->index_lock);
    *moved_bytes += new_size;
    if (res != NULL) {
        res->records_moved++;
    }
    rc = touch(s, t, nb, noff + fb__align8(h.stored_len));
    nb = NULL;
out:
    fb__block_release(nb);
    fb__free(data);
    fb__free(enc);
    return rc;
}

/* Copies a tombstone forward if an older copy of its key may still exist. */
static int move_tombstone(fb_store *s, fb_block *b, const fb_idx_entry *x, touched *t,
                          uint64_t *moved_bytes)
{
    if (!any_block_in(s, fb__key_block(x->key), b->number, b->number)) {
        return 0;
    }
    fb_rec_hdr h;
    uint8_t *data = NULL;
    fb_block *nb = NULL;
    int rc = fb__store_read_record(b, x->offset, &h, &data);
    if (rc != 0) {
        return rc;
    }
    h.flags |= FB__REC_MOVED;
    uint64_t noff = 0;
    if ((rc = before_copy(s, t)) == 0 && (rc = fb__store_append(s, &h, data, &nb, &noff)) == 0) {
        *moved_bytes += fb__rec_size(h.stored_len);
        rc = touch(s, t, nb, noff + fb__align8(h.stored_len));
    }
    fb__free(data);
    return rc;
}

static int remove_journal(fb_store *s)
{
    char path[4096];
    int rc = fb__journal_path(s, path, sizeof path);
    if (rc == 0 && unlink(path) != 0 && errno != ENOENT) {
        rc = fb__error(fb__errno_code(errno), "cannot remove %s: %s", path, strerror(errno));
    }
    return rc == 0 ? fb__store_sync_dir(s) : rc;
}

int fb__compact_block(fb_store *s, uint32_t number, int rekey, fb_progress_fn progress,
                      void *userdata, uint64_t *done, uint64_t total, fb_compact_result *res)
{
    pthread_rwlock_rdlock(&s->index_lock);
    fb_block *b = fb__store_find_block(s, number);
    int ok = b != NULL && b->sealed && !b->removed;
    uint64_t live = 0, file_bytes = 0;
    if (ok) {
        fb__block_retain(b);
        live = b->live_bytes;
        file_bytes = b->file_bytes;
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (!ok) {
        return fb__error(FB_ENOTFOUND, "block %" PRIu32 " is not a sealed block", number);
    }
    fb_idx_entry *ents = NULL;
    uint64_t n = 0, moved = 0;
    touched t = {.n = 0, .number = number};
    int rc = check_space(s, b, live);
    if (rc != 0 || (rc = fb__store_block_entries(s, b, &ents, &n)) != 0) {
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        pthread_mutex_lock(&s->move_lock);
        if (ents[i].flags & FB__REC_TOMBSTONE) {
            rc = move_tombstone(s, b, &ents[i], &t, &moved);
        } else {
            rc = move_record(s, b, &ents[i], rekey, &t, &moved, res);
        }
        pthread_mutex_unlock(&s->move_lock);
        if (rc != 0) {
            goto out;
        }
        *done += fb__rec_size(ents[i].stored_len);
        if (progress != NULL && progress(userdata, *done, total) != 0) {
            rc = fb__error(FB_ECLOSED, "compaction cancelled");
            goto out;
        }
    }
    /* The copies are durable before the only other copy goes away. */
    if ((rc = flush_touched(s, &t)) != 0) {
        goto out;
    }
    pthread_rwlock_wrlock(&s->index_lock);
    b->removed = 1;
    for (size_t i = 0; i < s->nblocks; i++) {
        if (s->blocks[i] == b) {
            memmove(&s->blocks[i], &s->blocks[i + 1], (s->nblocks - i - 1) * sizeof b);
            s->nblocks--;
            fb__block_release(b); /* the table's reference */
            break;
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if ((rc = fb__backend_remove(s->backend, number)) != 0) {
        goto out;
    }
    if (t.journaled) {
        rc = remove_journal(s);
    }
    if (res != NULL) {
        res->blocks_compacted++;
        res->bytes_reclaimed += file_bytes > moved ? file_bytes - moved : 0;
    }
out:
    if (t.n > 0) {
        int r = flush_touched(s, &t);
        if (rc == 0) {
            rc = r;
        } else if (r == 0 && rc != FB_ENOSPC) {
            /* The copies made so far are durable and win at open: the
             * state is consistent without the journal. */
            char detail[256];
            snprintf(detail, sizeof detail, "%s", fb_last_error());
            remove_journal(s);
            fb__error(rc, "%s", detail);
        }
    }
    fb__free(ents);
    fb__block_release(b);
    return rc;
}

/* Progress units are bytes of the blocks being processed. */
static uint64_t sum_file_bytes(fb_store *s, const uint32_t *nums, size_t n)
{
    uint64_t total = 0;
    pthread_rwlock_rdlock(&s->index_lock);
    for (size_t i = 0; i < n; i++) {
        fb_block *b = fb__store_find_block(s, nums[i]);
        if (b != NULL) {
            total += b->file_bytes;
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    return total;
}

/* Numbers of the sealed blocks that pass the threshold (all sealed blocks
 * when threshold is negative: rekey). */
static int pick_blocks(fb_store *s, double threshold, uint32_t **out, size_t *n)
{
    pthread_rwlock_rdlock(&s->index_lock);
    uint32_t *v = fb__calloc(s->nblocks ? s->nblocks : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v != NULL && i < s->nblocks; i++) {
        fb_block *b = s->blocks[i];
        if (!b->sealed || b->removed) {
            continue;
        }
        uint64_t used = b->file_bytes > FB__BLOCK_HDR_SIZE ? b->file_bytes - FB__BLOCK_HDR_SIZE : 0;
        uint64_t dead = used > b->live_bytes ? used - b->live_bytes : 0;
        if (threshold < 0 || (dead > 0 && (double)dead >= threshold * (double)used)) {
            v[k++] = b->number;
        }
    }
    pthread_rwlock_unlock(&s->index_lock);
    if (v == NULL) {
        return fb__error(FB_ENOMEM, "out of memory choosing blocks to compact");
    }
    *out = v;
    *n = k;
    return 0;
}

static int run(fb_store *s, double threshold, int rekey, fb_progress_fn progress, void *userdata,
               fb_compact_result *result)
{
    fb_compact_result res = {0};
    uint32_t *nums = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->compact_lock);
    int rc = 0;
    if (rekey) {
        /* The active block's records are rewritten too: seal it first. */
        pthread_mutex_lock(&s->append_lock);
        pthread_mutex_lock(&s->active->mu);
        int has_records = s->active->tail > FB__BLOCK_HDR_SIZE;
        pthread_mutex_unlock(&s->active->mu);
        if (has_records) {
            rc = fb__store_rotate_locked(s);
        }
        pthread_mutex_unlock(&s->append_lock);
    }
    if (rc == 0) {
        rc = pick_blocks(s, threshold, &nums, &n);
    }
    uint64_t done = 0, total = rc == 0 ? sum_file_bytes(s, nums, n) : 0;
    char damaged[512] = "";
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = fb__compact_block(s, nums[i], rekey, progress, userdata, &done, total, &res);
        if (rc == FB_ENOTFOUND) {
            rc = 0; /* gone meanwhile */
        } else if (rc == FB_ECORRUPT) {
            /* A damaged record is not copied as if it were sound: its block
             * stays as it is, for verify and the operator. The other blocks
             * are still compacted (a background compactor would otherwise
             * never get past the damage); the first damage is reported. */
            if (damaged[0] == '\0') {
                snprintf(damaged, sizeof damaged, "%s", fb_last_error());
            }
            rc = 0;
        }
    }
    if (rc == 0 && damaged[0] != '\0') {
        rc = fb__error(FB_ECORRUPT, "%s; that block was left as it is, the others were compacted",
                       damaged);
    }
    pthread_mutex_unlock(&s->compact_lock);
    fb__free(nums);
    if (result != NULL) {
        *result = res;
    }
    if (rc == 0) {
        fb__error_clear();
    }
    return rc;
}

int fb_compact(fb_store *s, double threshold, fb_progress_fn progress, void *userdata,
               fb_compact_result *result)
{
    if (s == NULL) {
        return fb__error(FB_EINVAL, "store must not be NULL");
    }
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    if (threshold != threshold || threshold > 1.0) {
        return fb__error(FB_EINVAL, "compaction threshold %g is outside 0..1", threshold);
    }
    if (threshold < 0) {
        threshold = 0.3;
    }
    return run(s, threshold, 0, progress, userdata, result);
}

int fb_rekey(fb_store *s, fb_progress_fn progress, void *userdata, fb_compact_result *result)
{
    if (s == NULL) {
        return fb__error(FB_EINVAL, "store must not be NULL");
    }
    if (!s->writable) {
        return fb__error(FB_EREADONLY, "store %s is open read-only", s->dir);
    }
    if (s->fernet == NULL) {
        return fb__error(FB_EKEY, "rekey needs at least one encryption key");
    }
    return run(s, -1.0, 1, progress, userdata, result);
}
