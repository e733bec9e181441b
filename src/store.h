/*
 * store - the internal struct of an fb_store and the helpers shared by
 * store.c (open, put, get, delete, recovery), compact.c (compaction, rekey)
 * and verify.c.
 *
 * Locks, always taken in this order, each held briefly:
 *   compact_lock  one compaction or rekey at a time (held for its duration)
 *   move_lock     a delete and compaction's move of one record exclude each
 *                 other, so no copy of a key is ever written after its
 *                 tombstone
 *   append_lock   the active block: reservation of space, rotation
 *   index_lock    (rwlock) the hash index, the block table, block statistics
 *   block->mu     a block's in-flight writes, written list, group commit
 * No I/O happens under index_lock. Under append_lock only the rare block
 * rotation does I/O (create the next block, seal the old one).
 */
#ifndef FB_STORE_H
#define FB_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "block.h"
#include "cache.h"
#include "codec_fernet.h"
#include "index.h"
#include "record.h"
#include "util/error.h"
#include "fastblocks.h"

#define FB__NO_OFFSET UINT64_MAX

typedef struct fb_block {
    atomic_uint refs;
    uint32_t number;
    fb_bfile *file;
    char name[32];

    /* Under the store's index_lock. */
    int sealed;
    int removed;
    uint64_t file_bytes; /* data end (active: reserved tail) */
    uint64_t live_bytes, live_records, dead_records;

    /* Under the store's append_lock (active block only). */
    uint64_t reserved_end; /* disk space allocated up to here */

    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t tail;      /* end of the last reservation */
    uint64_t *inflight; /* offsets reserved but not yet written */
    size_t ninflight, cinflight;
    fb_idx_entry *written; /* records written, for the index file at seal */
    size_t nwritten, cwritten;
    int broken;            /* a write or sync failed: rotate away */
    int syncing;           /* 0, or a leader is GATHERING its group or SYNCING (store.c) */
    int waiting;           /* threads inside fb__store_make_durable */
    int last_group;        /* threads inside it when the last sync ended */
    uint64_t last_sync_ns; /* how long the last fdatasync took */
    uint64_t durable_upto; /* every byte below is written and synced */
    uint64_t fail_from;    /* records at or past this offset can no longer be acked */
} fb_block;

struct fb_store {
    char *dir;
    fb_options opts;
    int writable;
    uint8_t store_id[FB__STORE_ID_LEN];
    int lock_fd;
    fb_backend *backend;
    fb_cache *cache;
    fb_fernet *fernet;

    pthread_mutex_t compact_lock;
    pthread_mutex_t move_lock;
    pthread_mutex_t append_lock;
    pthread_rwlock_t index_lock;

    fb_index index;
    fb_block **blocks; /* ascending numbers; under index_lock */
    size_t nblocks, cblocks;
    fb_block *active; /* under append_lock; NULL for an empty read-only store */

    atomic_uint_fast64_t syncs, synced_puts;

    /* Batch durability: the background syncer. */
    pthread_t batch_thread;
    int batch_running;
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_cv;
    int batch_stop;
};

/* Logs through the store's callback (printf-style). */
void fb__log(fb_store *s, int level, const char *fmt, ...) FB__PRINTF(3, 4);

void fb__block_retain(fb_block *b);
void fb__block_release(fb_block *b); /* closes the file with the last reference */
/* The block with this number (under index_lock), or NULL. */
fb_block *fb__store_find_block(fb_store *s, uint32_t number);

/*
 * Appends one record to the active block: reserves space under
 * append_lock, writes header + payload outside it. h->key == 0 assigns the
 * birth address as key. On success *blk (retained: release it) and
 * *payload_off say where it went; the record is written but not yet durable
 * (see fb__store_make_durable). On failure nothing is reserved or the
 * reserved region is turned into a pad.
 */
int fb__store_append(fb_store *s, fb_rec_hdr *h, const void *payload, fb_block **blk,
                     uint64_t *payload_off);
/* Waits until [.., end) of blk is durable (group commit). */
int fb__store_make_durable(fb_store *s, fb_block *blk, uint64_t end);
/* Forgets a written record whose put failed, so no index file lists it. */
void fb__store_unwrite(fb_store *s, fb_block *blk, uint64_t payload_off);

/* Reads and checks one whole record (header + stored bytes) at payload
 * offset off of blk. *data is fb__malloc'ed (stored bytes). */
int fb__store_read_record(fb_block *blk, uint64_t off, fb_rec_hdr *h, uint8_t **data);

/* Entries of a sealed block: its index file, or a scan when it has none. */
int fb__store_block_entries(fb_store *s, fb_block *blk, fb_idx_entry **entries, uint64_t *n);

/*
 * Scans a block file from its header to `limit` (or its size), calling
 * cb->record for every valid record with its header offset (pads are
 * stepped over). Stops at a clean end (end of file, or zeros where a header
 * would be) or at a torn tail: damage with no valid record after it. *end
 * gets where it stopped, *bad the error at a torn tail (0 at a clean end)
 * with the detail set.
 *
 * Damage followed by a valid record is bit rot, not a torn write, and the
 * scan goes on past it (so no acknowledged record after it is lost):
 *   - a valid header whose stored bytes fail their CRC (anywhere in a
 *     sealed block, which was complete when sealed): cb->record gets it
 *     with data NULL, and the scan steps over it by its length;
 *   - a header that does not validate: the scan searches forward at 8-byte
 *     steps for the next valid, plausible header, and cb->damaged gets the
 *     range [at, next) and the header's error (the detail is set).
 * A callback's non-zero return stops the scan and is returned.
 */
typedef int (*fb_scan_fn)(void *ud, uint64_t at, const fb_rec_hdr *h, const uint8_t *data);
typedef struct fb_scan_cb {
    fb_scan_fn record;
    int (*damaged)(void *ud, uint64_t at, uint64_t next, int error);
    void *ud;
} fb_scan_cb;
int fb__store_scan(fb_bfile *f, uint64_t limit, int sealed, const fb_scan_cb *cb, uint64_t *end,
                   int *bad);

/* Seals the active block and starts a new one (append_lock held). */
int fb__store_rotate_locked(fb_store *s);

/* Fills meta from an index entry and its record header. */
void fb__store_fill_meta(const fb_index_entry *e, const fb_rec_hdr *h, fb_meta *meta);

/* Compaction of one block (compact.c); rekey re-encrypts with the first key.
 * Used by fb_compact, fb_rekey and by fb_open to finish a journaled one. */
int fb__compact_block(fb_store *s, uint32_t number, int rekey, fb_progress_fn progress,
                      void *userdata, uint64_t *done, uint64_t total, fb_compact_result *res);
/* Path of DIR/compact.journal. */
int fb__journal_path(const fb_store *s, char *out, size_t cap);
/* Writes DIR/name atomically (temporary file, fsync, rename, dir fsync). */
int fb__store_write_file(const fb_store *s, const char *name, const uint8_t *data, size_t len);
/* fsync of the store directory. */
int fb__store_sync_dir(const fb_store *s);

#endif
