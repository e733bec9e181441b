/*
 * block - the backend interface (dispatch through fb_backend_ops, with the
 * test fault hook in front of every backend) and the local-file backend:
 * one file per block under DIR/blocks, positional I/O (pwritev/preadv) so
 * that many threads share one descriptor, fdatasync for durability,
 * directory fsync whenever a name appears or disappears.
 */
#include "block.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/fdio.h"

/* The local-file backend: DIR/blocks, one file per block. */
typedef struct local_backend {
    fb_backend base;
    char *dir; /* DIR/blocks */
    int dirfd;
    int writable;
} local_backend;

typedef struct local_file {
    fb_bfile base;
    int fd;
} local_file;

static const fb_backend_ops local_ops;

#define LB(b) ((local_backend *)(b))
#define LF(f) ((local_file *)(f))

static _Atomic(fb_fault_fn) fault_fn;
static void *_Atomic fault_ud;

void fb__block_set_fault(fb_fault_fn fn, void *userdata)
{
    atomic_store(&fault_ud, userdata);
    atomic_store(&fault_fn, fn);
}

/* The injected errno for this operation, or 0. */
static int fault(enum fb_io_op op, uint32_t block)
{
    fb_fault_fn fn = atomic_load(&fault_fn);
    return fn == NULL ? 0 : fn(atomic_load(&fault_ud), op, block);
}

static int io_error(int errnum, const char *what, const char *name, uint64_t off)
{
    return fb__error(fb__errno_code(errnum), "%s %s at offset %" PRIu64 ": %s", what, name, off,
                     strerror(errnum));
}

/* ------------------------------------------------------------------------ */
/* The interface: dispatch through ops; fault injection sits here, so it     */
/* works for every backend.                                                   */

void fb__backend_free(fb_backend *b)
{
    if (b != NULL) {
        b->ops->free(b);
    }
}

int fb__backend_list(fb_backend *b, uint32_t **nums, size_t *n)
{
    return b->ops->list(b, nums, n);
}

int fb__backend_create(fb_backend *b, uint32_t number, fb_bfile **out)
{
    int inj = fault(FB__IO_CREATE, number);
    if (inj != 0) {
        char name[32];
        fb__block_name(number, name);
        return fb__error(fb__errno_code(inj), "cannot create %s: %s", name, strerror(inj));
    }
    return b->ops->create(b, number, out);
}

int fb__backend_open(fb_backend *b, uint32_t number, fb_bfile **out)
{
    return b->ops->open(b, number, out);
}

int fb__backend_remove(fb_backend *b, uint32_t number)
{
    return b->ops->remove(b, number);
}

int fb__backend_write_index(fb_backend *b, uint32_t number, const void *data, size_t len)
{
    int inj = fault(FB__IO_INDEX, number);
    if (inj != 0) {
        char name[32];
        fb__idx_name(number, name);
        return io_error(inj, "cannot write", name, 0);
    }
    return b->ops->write_index(b, number, data, len);
}

int fb__backend_read_index(fb_backend *b, uint32_t number, size_t max_len, uint8_t **data,
                           size_t *len)
{
    return b->ops->read_index(b, number, max_len, data, len);
}

int fb__backend_index_size(fb_backend *b, uint32_t number, uint64_t *size)
{
    return b->ops->index_size(b, number, size);
}

void fb__bfile_close(fb_bfile *f)
{
    if (f != NULL) {
        f->owner->ops->close(f);
    }
}

const char *fb__bfile_name(const fb_bfile *f)
{
    return f->name;
}

uint32_t fb__bfile_number(const fb_bfile *f)
{
    return f->number;
}

int fb__bfile_size(fb_bfile *f, uint64_t *size)
{
    return f->owner->ops->size(f, size);
}

int fb__bfile_writev(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off)
{
    if (cnt < 1 || cnt > 4) {
        return fb__error(FB_EINVAL, "writev of %d buffers", cnt);
    }
    int inj = fault(FB__IO_WRITE, f->number);
    if (inj != 0) {
        return io_error(inj, "cannot write", f->name, off);
    }
    return f->owner->ops->writev(f, iov, cnt, off);
}

int fb__bfile_write(fb_bfile *f, const void *p, size_t n, uint64_t off)
{
    struct iovec v = {(void *)p, n};
    return fb__bfile_writev(f, &v, 1, off);
}

int fb__bfile_readv(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off)
{
    if (cnt < 1 || cnt > 4) {
        return fb__error(FB_EINVAL, "readv of %d buffers", cnt);
    }
    return f->owner->ops->readv(f, iov, cnt, off);
}

int fb__bfile_read(fb_bfile *f, void *p, size_t n, uint64_t off)
{
    struct iovec v = {p, n};
    return n == 0 ? 0 : fb__bfile_readv(f, &v, 1, off);
}

int fb__bfile_sync(fb_bfile *f)
{
    int inj = fault(FB__IO_SYNC, f->number);
    if (inj != 0) {
        return io_error(inj, "cannot sync", f->name, 0);
    }
    return f->owner->ops->sync(f);
}

int fb__bfile_reserve(fb_bfile *f, uint64_t off, uint64_t len)
{
    int inj = fault(FB__IO_RESERVE, f->number);
    if (inj != 0) {
        return io_error(inj, "cannot allocate space in", f->name, off);
    }
    if (off > INT64_MAX || len > INT64_MAX - off) {
        return fb__error(FB_ETOOBIG, "reservation past the largest file offset in %s", f->name);
    }
    return f->owner->ops->reserve(f, off, len);
}

int fb__bfile_truncate(fb_bfile *f, uint64_t len)
{
    return f->owner->ops->truncate(f, len);
}

int fb__bfile_fd(const fb_bfile *f)
{
    return f->owner->ops->fd(f);
}

/* ------------------------------------------------------------------------ */
/* The local-file backend                                                    */

int fb__backend_local(const char *dir, int create, int writable, fb_backend **out)
{
    int rc = 0;
    local_backend *b = fb__calloc(1, sizeof *b);
    size_t n = strlen(dir) + sizeof "/blocks";
    if (b == NULL || (b->dir = fb__malloc(n)) == NULL) {
        fb__free(b);
        return fb__error(FB_ENOMEM, "out of memory opening %s", dir);
    }
    b->base.ops = &local_ops;
    b->dirfd = -1;
    b->writable = writable;
    snprintf(b->dir, n, "%s/blocks", dir);
    if (create && mkdir(b->dir, 0755) != 0 && errno != EEXIST) {
        rc = fb__error(fb__errno_code(errno), "cannot create %s: %s", b->dir, strerror(errno));
        goto out;
    }
    b->dirfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dirfd < 0) {
        rc = fb__error(errno == ENOENT ? FB_ENOSTORE : fb__errno_code(errno), "cannot open %s: %s",
                       b->dir, strerror(errno));
        goto out;
    }
    *out = &b->base;
    b = NULL;
out:
    if (b != NULL) {
        fb__backend_free(&b->base);
    }
    return rc;
}

static void local_free(fb_backend *base)
{
    local_backend *b = LB(base);
    if (b->dirfd >= 0) {
        close(b->dirfd);
    }
    fb__free(b->dir);
    fb__free(b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int local_list(fb_backend *base, uint32_t **nums, size_t *n)
{
    local_backend *b = LB(base);
    int rc = 0;
    uint32_t *v = NULL;
    size_t len = 0, cap = 0;
    DIR *d = opendir(b->dir);
    if (d == NULL) {
        return fb__error(fb__errno_code(errno), "cannot list %s: %s", b->dir, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t num;
        if (!fb__block_name_parse(e->d_name, ".fbk", &num) || num == 0 || num > FB__MAX_BLOCK_NUM) {
            continue;
        }
        if (FB__GROW_ARRAY(&v, &cap, len + 1, 16) != 0) {
            rc = fb__error(FB_ENOMEM, "out of memory listing %s", b->dir);
            goto out;
        }
        v[len++] = num;
    }
    if (len > 1) {
        qsort(v, len, sizeof *v, cmp_u32);
    }
    *nums = v;
    *n = len;
    v = NULL;
out:
    closedir(d);
    fb__free(v);
    return rc;
}

static int sync_dir(local_backend *b)
{
    if (fsync(b->dirfd) != 0) {
        return fb__error(fb__errno_code(errno), "cannot fsync %s: %s", b->dir, strerror(errno));
    }
    return 0;
}

static int open_file(local_backend *b, uint32_t number, int flags, fb_bfile **out)
{
    local_file *f = fb__calloc(1, sizeof *f);
    if (f == NULL) {
        return fb__error(FB_ENOMEM, "out of memory opening a block");
    }
    f->base.owner = &b->base;
    f->base.number = number;
    fb__block_name(number, f->base.name);
    f->fd = openat(b->dirfd, f->base.name, flags | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        int rc = fb__error(e == ENOENT ? FB_ENOTFOUND : fb__errno_code(e), "cannot open %s/%s: %s",
                           b->dir, f->base.name, strerror(e));
        fb__free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

static int local_create(fb_backend *base, uint32_t number, fb_bfile **out)
{
    local_backend *b = LB(base);
    if (!b->writable) {
        return fb__error(FB_EREADONLY, "cannot create a block: store is open read-only");
    }
    int rc = open_file(b, number, O_RDWR | O_CREAT | O_EXCL, out);
    if (rc == 0 && (rc = sync_dir(b)) != 0) {
        unlinkat(b->dirfd, (*out)->name, 0);
        fb__bfile_close(*out);
        *out = NULL;
    }
    return rc;
}

static int local_open(fb_backend *base, uint32_t number, fb_bfile **out)
{
    local_backend *b = LB(base);
    return open_file(b, number, b->writable ? O_RDWR : O_RDONLY, out);
}

static int local_remove(fb_backend *base, uint32_t number)
{
    local_backend *b = LB(base);
    if (!b->writable) {
        return fb__error(FB_EREADONLY, "cannot remove a block: store is open read-only");
    }
    char name[32];
    fb__idx_name(number, name);
    if (unlinkat(b->dirfd, name, 0) != 0 && errno != ENOENT) {
        return fb__error(fb__errno_code(errno), "cannot remove %s: %s", name, strerror(errno));
    }
    fb__block_name(number, name);
    if (unlinkat(b->dirfd, name, 0) != 0 && errno != ENOENT) {
        return fb__error(fb__errno_code(errno), "cannot remove %s: %s", name, strerror(errno));
    }
    return sync_dir(b);
}

static int local_write_index(fb_backend *base, uint32_t number, const void *data, size_t len)
{
    local_backend *b = LB(base);
    if (!b->writable) {
        return fb__error(FB_EREADONLY, "cannot write an index: store is open read-only");
    }
    char name[32], tmp[40];
    fb__idx_name(number, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int rc = 0;
    int fd = openat(b->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return fb__error(fb__errno_code(errno), "cannot create %s: %s", tmp, strerror(errno));
    }
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, p + done, len - done, (off_t)done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = io_error(w < 0 ? errno : EIO, "cannot write", tmp, done);
            goto out;
        }
        done += (size_t)w;
    }
    if (fdatasync(fd) != 0) {
        rc = io_error(errno, "cannot sync", tmp, 0);
        goto out;
    }
    if (renameat(b->dirfd, tmp, b->dirfd, name) != 0) {
        rc = fb__error(fb__errno_code(errno), "cannot rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = sync_dir(b);
out:
    close(fd);
    if (rc != 0) {
        unlinkat(b->dirfd, tmp, 0);
    }
    return rc;
}

static int local_read_index(fb_backend *base, uint32_t number, size_t max_len, uint8_t **data,
                            size_t *len)
{
    local_backend *b = LB(base);
    char name[32];
    fb__idx_name(number, name);
    int rc = 0;
    uint8_t *buf = NULL;
    int fd = openat(b->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return fb__error(FB_ENOTFOUND, "index file %s is missing", name);
        }
        return fb__error(fb__errno_code(errno), "cannot open %s: %s", name, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = fb__error(fb__errno_code(errno), "cannot stat %s: %s", name, strerror(errno));
        goto out;
    }
    if ((uint64_t)st.st_size > max_len) {
        rc = fb__error(FB_ECORRUPT, "index file %s is too large (%" PRIu64 " bytes)", name,
                       (uint64_t)st.st_size);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = fb__malloc(n);
    if (buf == NULL) {
        rc = fb__error(FB_ENOMEM, "out of memory reading %s", name);
        goto out;
    }
    size_t done = 0;
    int e = fb__pread_full(fd, buf, n, 0, &done);
    if (e != 0) {
        rc = io_error(e, "cannot read", name, done);
        goto out;
    }
    *data = buf;
    *len = done;
    buf = NULL;
out:
    fb__free(buf);
    close(fd);
    return rc;
}

static int local_index_size(fb_backend *base, uint32_t number, uint64_t *size)
{
    local_backend *b = LB(base);
    char name[32];
    struct stat st;
    fb__idx_name(number, name);
    if (fstatat(b->dirfd, name, &st, 0) != 0) {
        return fb__error(errno == ENOENT ? FB_ENOTFOUND : fb__errno_code(errno),
                         "cannot stat %s: %s", name, strerror(errno));
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

static void local_close(fb_bfile *f)
{
    close(LF(f)->fd);
    fb__free(f);
}

static int local_size(fb_bfile *f, uint64_t *size)
{
    struct stat st;
    if (fstat(LF(f)->fd, &st) != 0) {
        return fb__error(fb__errno_code(errno), "cannot stat %s: %s", f->name, strerror(errno));
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Advances an iovec array past `done` bytes; returns the new first index. */
static int iov_advance(struct iovec *v, int i, int cnt, size_t done)
{
    while (i < cnt && done >= v[i].iov_len) {
        done -= v[i].iov_len;
        i++;
    }
    if (i < cnt) {
        v[i].iov_base = (uint8_t *)v[i].iov_base + done;
        v[i].iov_len -= done;
    }
    return i;
}

static int local_writev(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off)
{
    struct iovec v[4];
    memcpy(v, iov, (size_t)cnt * sizeof *v);
    int i = iov_advance(v, 0, cnt, 0);
    while (i < cnt) {
        ssize_t w = pwritev(LF(f)->fd, v + i, cnt - i, (off_t)off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return io_error(w < 0 ? errno : EIO, "cannot write", f->name, off);
        }
        off += (uint64_t)w;
        i = iov_advance(v, i, cnt, (size_t)w);
    }
    return 0;
}

static int local_readv(fb_bfile *f, const struct iovec *iov, int cnt, uint64_t off)
{
    struct iovec v[4];
    memcpy(v, iov, (size_t)cnt * sizeof *v);
    int i = iov_advance(v, 0, cnt, 0);
    while (i < cnt) {
        ssize_t r = preadv(LF(f)->fd, v + i, cnt - i, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return io_error(errno, "cannot read", f->name, off);
        }
        if (r == 0) {
            return fb__error(FB_ECORRUPT, "short read in %s at offset %" PRIu64, f->name, off);
        }
        off += (uint64_t)r;
        i = iov_advance(v, i, cnt, (size_t)r);
    }
    return 0;
}

static int local_sync(fb_bfile *f)
{
    if (fdatasync(LF(f)->fd) != 0) {
        return io_error(errno, "cannot sync", f->name, 0);
    }
    return 0;
}

static int local_reserve(fb_bfile *f, uint64_t off, uint64_t len)
{
    if (fallocate(LF(f)->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0) {
        /* A file system without fallocate just loses the early warning. */
        if (errno == EOPNOTSUPP || errno == ENOSYS) {
            return 0;
        }
        return io_error(errno, "cannot allocate space in", f->name, off);
    }
    return 0;
}

static int local_truncate(fb_bfile *f, uint64_t len)
{
    if (ftruncate(LF(f)->fd, (off_t)len) != 0) {
        return io_error(errno, "cannot truncate", f->name, len);
    }
    return 0;
}

static int local_fd(const fb_bfile *f)
{
    return ((const local_file *)f)->fd;
}

static const fb_backend_ops local_ops = {
    .free = local_free,
    .list = local_list,
    .create = local_create,
    .open = local_open,
    .remove = local_remove,
    .write_index = local_write_index,
    .read_index = local_read_index,
    .index_size = local_index_size,
    .close = local_close,
    .size = local_size,
    .writev = local_writev,
    .readv = local_readv,
    .sync = local_sync,
    .reserve = local_reserve,
    .truncate = local_truncate,
    .fd = local_fd,
};
