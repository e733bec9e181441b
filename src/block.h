/*
 * block - block file I/O behind a small backend interface (create, append
 * at an offset, read at an offset, sync, seal = write the index file, list,
 * remove), so that block files can later live somewhere other than the
 * local file system. The local-file backend is the only implementation.
 *
 * The backend knows nothing of records: it moves bytes. Every function
 * returns 0 or a negative FB_E* code with the detail set (file name,
 * offset, strerror).
 */
#ifndef FB_BLOCK_H
#define FB_BLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct fb_backend fb_backend;
typedef struct fb_bfile fb_bfile;

/*
 * The interface a backend implements. A backend's own structs start with
 * fb_backend / fb_bfile, so the functions below dispatch through ops and
 * the store never knows which backend it talks to. Contracts are those of
 * the fb__backend_* / fb__bfile_* functions of the same name.
 */
typedef struct fb_backend_ops {
    void (*free)(fb_backend *b);
    int (*list)(fb_backend *b, uint32_t **nums, size_t *n);
    int (*create)(fb_backend *b, uint32_t number, fb_bfile **out);
    int (*open)(fb_backend *b, uint32_t number, fb_bfile **out);
    int (*remove)(fb_backend *b, uint32_t number);
    int (*write_index)(fb_backend *b, uint32_t number, const void *data, size_t len);
    int (*read_index)(fb_backend *b, uint32_t number, size_t max_len, uint8_t **data, size_t *len);
    int (*index_size)(fb_backend *b, uint32_t number, uint64_t *size);
    void (*close)(fb_bfile *f);
    int (*size)(fb_bfile *f, uint64_t *size);
    int (*writev)(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off);
    int (*readv)(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off);
    int (*sync)(fb_bfile *f);
    int (*reserve)(fb_bfile *f, uint64_t off, uint64_t len);
    int (*truncate)(fb_bfile *f, uint64_t len);
    int (*fd)(const fb_bfile *f);
} fb_backend_ops;

struct fb_backend {
    const fb_backend_ops *ops;
};

struct fb_bfile {
    fb_backend *owner;
    uint32_t number;
    char name[32]; /* block_NNNNNNNN.fbk, for error details */
};

/*
 * Opens the local-file backend on DIR/blocks (created when create is set).
 * writable 0: the backend refuses every change.
 */
int fb__backend_local(const char *dir, int create, int writable, fb_backend **out);
void fb__backend_free(fb_backend *b); /* NULL is fine */

/* Block numbers present (files named exactly block_NNNNNNNN.fbk), ascending;
 * *nums is fb__malloc'ed. */
int fb__backend_list(fb_backend *b, uint32_t **nums, size_t *n);
/* Creates a new, empty block file (fails if it exists) and makes its name
 * durable (directory fsync). */
int fb__backend_create(fb_backend *b, uint32_t number, fb_bfile **out);
/* Opens an existing block file. */
int fb__backend_open(fb_backend *b, uint32_t number, fb_bfile **out);
/* Unlinks the block file and its index file and fsyncs the directory. */
int fb__backend_remove(fb_backend *b, uint32_t number);
/* Writes the index file of a block atomically (temporary file, fsync,
 * rename, directory fsync). */
int fb__backend_write_index(fb_backend *b, uint32_t number, const void *data, size_t len);
/* Reads the whole index file: FB_ENOTFOUND if there is none. *data is
 * fb__malloc'ed. Files over max_len are FB_ECORRUPT. */
int fb__backend_read_index(fb_backend *b, uint32_t number, size_t max_len, uint8_t **data,
                           size_t *len);

/* Size of the index file of a block; FB_ENOTFOUND if there is none. */
int fb__backend_index_size(fb_backend *b, uint32_t number, uint64_t *size);

void fb__bfile_close(fb_bfile *f); /* NULL is fine */
const char *fb__bfile_name(const fb_bfile *f);
uint32_t fb__bfile_number(const fb_bfile *f);
int fb__bfile_size(fb_bfile *f, uint64_t *size);
/* Writes exactly n bytes at off. */
int fb__bfile_write(fb_bfile *f, const void *p, size_t n, uint64_t off);
/* Writes exactly the iovecs (at most 4) at off, in one system call when it
 * can. */
int fb__bfile_writev(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off);
/* Reads exactly the iovecs at off; reaching the end of the file first is
 * FB_ECORRUPT ("short read"). */
int fb__bfile_readv(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off);
int fb__bfile_read(fb_bfile *f, void *p, size_t n, uint64_t off);
/* fdatasync. */
int fb__bfile_sync(fb_bfile *f);
/* Allocates disk space for [off, off + len) without changing the size, so a
 * full disk shows here and not halfway through a record. */
int fb__bfile_reserve(fb_bfile *f, uint64_t off, uint64_t len);
int fb__bfile_truncate(fb_bfile *f, uint64_t len);
/* A descriptor for sendfile(2) (owned by the file: dup it), or -1. */
int fb__bfile_fd(const fb_bfile *f);

/*
 * Fault injection for tests: fn is called before every write, sync,
 * reserve, create and index write with the operation and the block number;
 * a non-zero errno it returns makes the operation fail with that errno.
 * Process-wide; NULL removes it.
 */
enum fb_io_op { FB__IO_WRITE, FB__IO_SYNC, FB__IO_RESERVE, FB__IO_CREATE, FB__IO_INDEX };
typedef int (*fb_fault_fn)(void *userdata, enum fb_io_op op, uint32_t block);
void fb__block_set_fault(fb_fault_fn fn, void *userdata);

#endif
