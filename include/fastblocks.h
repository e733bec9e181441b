/*
 * fastblocks.h - the public API of libfastblocks, the FastBlocks image store.
 *
 * FastBlocks turns uploaded images into WebP and packs them into large
 * append-only block files (Haystack-style: one read per image, an in-memory
 * index), optionally zstd-compressed and Fernet-encrypted, with a cache of
 * hot images in memory.
 *
 * Conventions
 *   - Every fallible call returns 0 on success or a negative FB_E* code.
 *     fb_strerror() names the code; fb_last_error() says what exactly went
 *     wrong in the calling thread ("crc mismatch in block 3 at offset 81920").
 *   - Objects are opaque and come in create/free pairs; every free accepts NULL.
 *   - Memory the library allocates for the caller is released with fb_free().
 *   - The library never prints: it reports through the log callback.
 *   - An fb_store is thread-safe: any mix of calls from many threads.
 *
 * This is the only installed header.
 */
#ifndef FASTBLOCKS_H
#define FASTBLOCKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_VERSION_MAJOR 0
#define FB_VERSION_MINOR 1
#define FB_VERSION_PATCH 0
#define FB_VERSION_STRING "0.1.0"

#if defined(__GNUC__) && __GNUC__ >= 4
#define FB_EXTERN __attribute__((visibility("default")))
#else
#define FB_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/*
 * The one table of error codes: name, fixed number, message.
 * Numbers are part of the ABI: add new codes at the end, never renumber or
 * remove one.
 */
#define FB_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(EIO, -3, "I/O error")                                                                       \
    XX(ENOSPC, -4, "no space left on device")                                                      \
    XX(ENOTFOUND, -5, "image not found")                                                           \
    XX(ECORRUPT, -6, "stored data is corrupt")                                                     \
    XX(EINTEGRITY, -7, "integrity check failed (wrong key or tampered record)")                    \
    XX(EUNSUPPORTED, -8, "unsupported image type")                                                 \
    XX(EIMAGE, -9, "image cannot be decoded")                                                      \
    XX(ELIMIT, -10, "image exceeds a configured limit")                                            \
    XX(EKEY, -11, "invalid encryption key")                                                        \
    XX(ENOKEY, -12, "record is encrypted and no key is configured")                                \
    XX(ELOCKED, -13, "store is in use by another process")                                         \
    XX(EVERSION, -14, "unsupported store format version")                                          \
    XX(EREADONLY, -15, "store is open read-only")                                                  \
    XX(ENOSTORE, -16, "no store at this path")                                                     \
    XX(ETOOBIG, -17, "value too large")                                                            \
    XX(ECLOSED, -18, "store is closing")

typedef enum fb_error {
    FB_OK = 0,
#define FB__ERRNO_ENUM(name, num, msg) FB_##name = num,
    FB_ERRNO_MAP(FB__ERRNO_ENUM)
#undef FB__ERRNO_ENUM
} fb_error;

/* Message for an error code ("image not found"); never NULL. */
FB_EXTERN const char *fb_strerror(int err);
/* Name of an error code ("ENOTFOUND"); never NULL. */
FB_EXTERN const char *fb_err_name(int err);
/*
 * Detail of the last error in the calling thread: a complete sentence that
 * says what failed and where. Empty string if none. Valid until the next
 * library call in this thread.
 */
FB_EXTERN const char *fb_last_error(void);

/* ------------------------------------------------------------------------ */
/* Memory, logging, version                                                  */

/* Frees memory the library returned to the caller. NULL is fine. */
FB_EXTERN void fb_free(void *p);

/*
 * Replaces the allocator behind every library allocation (tests inject
 * allocation failures through it). Call before any other library call; pass
 * NULL to restore malloc/realloc/free. Not thread-safe.
 */
typedef struct fb_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *p, size_t size);
    void (*free_fn)(void *p);
} fb_allocator;
FB_EXTERN void fb_set_allocator(const fb_allocator *a);

enum fb_log_level { FB_LOG_ERROR = 0, FB_LOG_WARN = 1, FB_LOG_INFO = 2, FB_LOG_DEBUG = 3 };
/* Log callback: msg is one line without a trailing newline. May be called
 * from any thread. */
typedef void (*fb_log_fn)(void *userdata, int level, const char *msg);

/* FB_VERSION_STRING of the library actually linked. */
FB_EXTERN const char *fb_version(void);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

/* How an uploaded image becomes WebP. Initialise with fb_image_opts_init(). */
typedef struct fb_image_opts {
    int quality;            /* 0..100, default 80 (Pillow's WebP default) */
    int effort;             /* WebP method 0..6, default 4 (Pillow's default) */
    int lossless;           /* 0/1, default 0 */
    uint32_t max_dimension; /* downscale so neither side exceeds it; 0 = keep size */
    int keep_metadata;      /* 0 (default): strip EXIF/GPS/XMP; 1: keep them */
    int keep_icc;           /* 0 (default): convert to sRGB; 1: keep the ICC profile */
    int webp_passthrough;   /* 1 (default): a clean WebP needing no change is stored as is */
    /* Limits, checked from the header before pixels are allocated. */
    uint64_t max_input_bytes; /* default 50 MiB */
    uint64_t max_pixels;      /* default 100 MP, summed over all frames */
    uint32_t max_frames;      /* default 1000 */
} fb_image_opts;

FB_EXTERN void fb_image_opts_init(fb_image_opts *o);

typedef enum fb_durability {
    FB_DURABILITY_ALWAYS = 0, /* put returns after fdatasync; concurrent puts share one */
    FB_DURABILITY_BATCH = 1,  /* fdatasync at most every batch_interval_ms */
    FB_DURABILITY_NONE = 2    /* leave it to the OS */
} fb_durability;

/* Store options, fixed at open time. Initialise with fb_options_init(). */
typedef struct fb_options {
    uint64_t max_block_size;    /* bytes per block file, default 1 GiB */
    fb_durability durability;   /* default FB_DURABILITY_ALWAYS */
    uint32_t batch_interval_ms; /* for FB_DURABILITY_BATCH, default 10 */
    int compression;            /* 0/1: zstd on new records, default 0 */
    int compression_level;      /* zstd level, default 3 */
    double
        compression_min_saving; /* store compressed only if it saves this fraction, default 0.02 */
    /* Fernet keys (url-safe base64 of 32 bytes). keys[0] encrypts new records;
     * all are tried for decryption. NULL/0: no encryption. The strings are
     * copied at open time. */
    const char *const *keys;
    size_t nkeys;
    uint64_t cache_bytes;   /* cache capacity in bytes, default 64 MiB; 0 disables the cache */
    uint64_t cache_entries; /* cap on cached images, 0 = no cap (default) */
    int read_only;          /* 0/1: open for reading only (shares the store with its writer) */
    int create;             /* 1 (default): create the store if the directory has none */
    fb_image_opts image;    /* default conversion settings for fb_put */
    fb_log_fn log;          /* NULL: no logging */
    void *log_userdata;
} fb_options;

FB_EXTERN void fb_options_init(fb_options *o);

/* ------------------------------------------------------------------------ */
/* Store                                                                     */

typedef struct fb_store fb_store;

/*
 * Opens (and with opts->create, creates) the store in directory dir.
 * opts may be NULL for defaults. Takes an exclusive lock on the directory
 * unless opts->read_only; a second writer gets FB_ELOCKED with the holder's
 * pid in the detail. Recovers a torn tail of the active block.
 * On success *out owns the store; release it with fb_close().
 */
FB_EXTERN int fb_open(const char *dir, const fb_options *opts, fb_store **out);

/* Makes everything durable, releases the lock and frees the store. NULL is fine.
 * Returns the first error met while syncing (the store is freed regardless). */
FB_EXTERN int fb_close(fb_store *s);

#define FB_ID_LEN 24         /* hex characters of a public id */
#define FB_BLOCK_NAME_MAX 32 /* buffer size for a block name */

/* Everything known about one stored image. */
typedef struct fb_meta {
    char id[FB_ID_LEN + 1];        /* public id: 24 lowercase hex digits */
    char block[FB_BLOCK_NAME_MAX]; /* birth block name, e.g. "block_00000001.fbk" */
    uint64_t offset;               /* birth offset of the stored bytes in that block */
    uint64_t size;                 /* stored length at first write (the seed triple's size) */
    uint64_t bytes;                /* length of the WebP image served */
    uint32_t width, height;        /* pixels */
    int64_t created;               /* unix seconds of the first write */
    uint32_t flags;                /* FB_META_* */
    uint64_t key;                  /* birth address: block << 40 | offset */
    uint32_t cookie;               /* random, part of the id */
} fb_meta;

#define FB_META_ZSTD 0x1u   /* stored bytes are zstd-compressed */
#define FB_META_FERNET 0x2u /* stored bytes are a binary Fernet token */

/* How a caller names an image: by id, or by the seed's (block, offset, size). */
typedef struct fb_addr {
    uint64_t key;
    uint32_t cookie; /* checked when by_id */
    uint64_t size;   /* checked when !by_id */
    int by_id;
} fb_addr;

/* Parses a public id (exactly 24 lowercase hex digits). FB_EINVAL otherwise. */
FB_EXTERN int fb_addr_from_id(const char *id, fb_addr *out);
/* Parses a seed triple. block must match "block_NNNNNNNN.fbk" exactly. */
FB_EXTERN int fb_addr_from_triple(const char *block, uint64_t offset, uint64_t size, fb_addr *out);
/* Parses "ID" or "BLOCK/OFFSET/SIZE" (decimal, no sign, no leading '+'). */
FB_EXTERN int fb_addr_parse(const char *text, fb_addr *out);

/*
 * Converts an image to WebP (fb_image_opts; NULL means the store's defaults),
 * optionally compresses and encrypts it, and appends it durably according to
 * the store's durability mode. Fills *meta (may be NULL).
 * Errors: FB_EUNSUPPORTED, FB_EIMAGE, FB_ELIMIT for bad input; FB_ENOSPC,
 * FB_EIO for storage failures; FB_EREADONLY. Nothing is stored on error.
 */
FB_EXTERN int fb_put(fb_store *s, const void *data, size_t len, const fb_image_opts *opts,
                     fb_meta *meta);

/*
 * Stores bytes that already are the WebP to serve, as they are (no
 * conversion): for benchmarks, tools and tests of the storage engine.
 * width/height are recorded as given.
 */
FB_EXTERN int fb_put_webp(fb_store *s, const void *webp, size_t len, uint32_t width,
                          uint32_t height, fb_meta *meta);

/* Looks an image up without reading it. FB_ENOTFOUND if addr names no live image. */
FB_EXTERN int fb_stat(fb_store *s, const fb_addr *addr, fb_meta *meta);

/* Immutable, reference-counted bytes shared with the cache (zero-copy reads). */
typedef struct fb_buf fb_buf;
FB_EXTERN const uint8_t *fb_buf_data(const fb_buf *b);
FB_EXTERN size_t fb_buf_len(const fb_buf *b);
FB_EXTERN fb_buf *fb_buf_retain(fb_buf *b);
FB_EXTERN void fb_buf_release(fb_buf *b); /* NULL is fine */

/*
 * Reads an image: the WebP bytes, verified (CRC, HMAC) and decoded.
 * *out gets a reference the caller releases with fb_buf_release(); meta may
 * be NULL. Corrupt data is FB_ECORRUPT / FB_EINTEGRITY, never returned as bytes.
 */
FB_EXTERN int fb_get(fb_store *s, const fb_addr *addr, fb_buf **out, fb_meta *meta);

/*
 * fb_get for cached images only, never reading image bytes from disk (a
 * caller on an event loop probes with it and sends a miss to a thread):
 * returns 1 with a reference in *out (meta, when not NULL, is read from the
 * record's header), or 0 when the image is not cached (*out NULL; no cache
 * miss is counted, the fb_get that follows counts it), or a negative error.
 */
FB_EXTERN int fb_get_cached(fb_store *s, const fb_addr *addr, fb_buf **out, fb_meta *meta);

/*
 * For servers that send files with sendfile(2): if the image is cached,
 * or must be decoded (compressed or encrypted) or checked (its first read),
 * returns 1 and a reference to its bytes in *cached, like fb_get. Else its
 * record is plain and verified: returns 2 with *fd a dup()ed descriptor of
 * the block file (the caller closes it) and *offset/meta->bytes the byte
 * range of the WebP in it. Negative on error (FB_ENOTFOUND, ...). It never
 * returns 0 (earlier releases did, meaning "use fb_get").
 */
FB_EXTERN int fb_get_direct(fb_store *s, const fb_addr *addr, fb_buf **cached, int *fd,
                            uint64_t *offset, fb_meta *meta);

/* Statistics of one block file. */
typedef struct fb_block_stats {
    char block[FB_BLOCK_NAME_MAX];
    uint32_t number;
    uint64_t file_bytes;
    uint64_t live_bytes, dead_bytes;
    uint64_t live_records, dead_records;
    int sealed;
} fb_block_stats;

/*
 * Deletes an image: appends a tombstone, flags the record, drops it from
 * index and cache. Fills *stats (may be NULL) with the updated statistics of
 * the block that held it. No other image's bytes or address change.
 */
FB_EXTERN int fb_delete(fb_store *s, const fb_addr *addr, fb_block_stats *stats);

/* Calls fn for every live image (in no particular order) until fn returns
 * non-zero, which is then returned. */
FB_EXTERN int fb_foreach(fb_store *s, int (*fn)(void *userdata, const fb_meta *meta),
                         void *userdata);

/* Whole-store statistics. */
typedef struct fb_stats {
    uint32_t blocks;
    uint64_t file_bytes, live_bytes, dead_bytes;
    uint64_t live_records, dead_records;
    uint64_t cache_capacity, cache_bytes, cache_entries;
    uint64_t cache_hits, cache_misses, cache_evictions;
    uint64_t syncs;       /* fdatasync calls made for puts */
    uint64_t synced_puts; /* puts made durable by them (group commit batch sizes) */
} fb_stats;
FB_EXTERN int fb_get_stats(fb_store *s, fb_stats *out);

/* Per-block statistics: *out is an array of *n entries ordered by block
 * number, released with fb_free(). */
FB_EXTERN int fb_list_blocks(fb_store *s, fb_block_stats **out, size_t *n);

/* Progress callback for long operations: done/total in units the operation
 * chooses (bytes). Returning non-zero cancels the operation (FB_ECLOSED). */
typedef int (*fb_progress_fn)(void *userdata, uint64_t done, uint64_t total);

typedef struct fb_compact_result {
    uint32_t blocks_compacted;
    uint64_t records_moved;
    uint64_t bytes_reclaimed;
} fb_compact_result;

/*
 * Compacts every sealed block whose dead ratio is >= threshold (0.3 by
 * default when threshold < 0): live records are copied to the active block
 * with their key and cookie, then the old block is removed. Runs online.
 * A block holding a damaged live record is left as it is (the other blocks
 * are still compacted) and FB_ECORRUPT names the damage.
 */
FB_EXTERN int fb_compact(fb_store *s, double threshold, fb_progress_fn progress, void *userdata,
                         fb_compact_result *result);

/*
 * Re-encrypts every record not encrypted with the first key (and encrypts
 * plain records) so that old keys can be retired. Runs online.
 */
FB_EXTERN int fb_rekey(fb_store *s, fb_progress_fn progress, void *userdata,
                       fb_compact_result *result);

/* One problem found by fb_verify. */
typedef struct fb_problem {
    char block[FB_BLOCK_NAME_MAX];
    uint64_t offset; /* of the record header */
    int error;       /* FB_E* */
    char detail[160];
} fb_problem;

typedef struct fb_verify_result {
    uint64_t records_checked;
    uint64_t bytes_checked;
    uint64_t problems;
} fb_verify_result;

/*
 * Reads every record of every block and checks both CRCs, the tombstones and
 * the index files against the blocks; calls on_problem for each problem.
 * Returns 0 if the store is clean, FB_ECORRUPT if any problem was found.
 */
FB_EXTERN int fb_verify(fb_store *s, void (*on_problem)(void *userdata, const fb_problem *p),
                        fb_progress_fn progress, void *userdata, fb_verify_result *result);

/* Writes the canonical JSON metadata object of an image (the one HTTP, CLI
 * and Python return) into buf; returns its length, or FB_ETOOBIG if cap is
 * too small (256 bytes always suffice). */
#define FB_META_JSON_MAX 256
FB_EXTERN int fb_meta_json(const fb_meta *m, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Keys and conversion without a store                                       */

#define FB_KEY_LEN 44 /* characters of a Fernet key */

/* Writes a new random Fernet key and a NUL to out[FB_KEY_LEN + 1]. */
FB_EXTERN int fb_keygen(char *out);
/* 0 if key is a valid Fernet key, FB_EKEY with a detail otherwise. */
FB_EXTERN int fb_key_check(const char *key);

/* Converts an image to WebP without storing it. *webp is released with
 * fb_free(); width/height/frames may be NULL. */
FB_EXTERN int fb_convert(const void *data, size_t len, const fb_image_opts *opts, uint8_t **webp,
                         size_t *webp_len, uint32_t *width, uint32_t *height, uint32_t *frames);

#ifdef __cplusplus
}
#endif
#endif /* FASTBLOCKS_H */
