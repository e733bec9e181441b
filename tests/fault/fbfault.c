/*
 * fbfault - an LD_PRELOAD shim that makes file-system calls fail on purpose,
 * so that the real `fastblocks` binary (CLI and server) can be driven into
 * I/O errors it would otherwise meet only on a failing disk.
 *
 * It interposes write, pwrite, pwritev, writev (class "write"), fsync,
 * fdatasync ("sync"), rename, renameat, renameat2 ("rename"), read, pread,
 * preadv ("read") and fallocate ("alloc"). Every call of a selected class on
 * a selected file is counted; the Nth (and, with FBFAULT_TIMES, the next
 * ones) is faulted. Everything else goes straight to libc.
 *
 * Environment (read once, at load time):
 *   FBFAULT_OPS    comma list of classes or function names to count, e.g.
 *                  "write", "sync,rename", "fdatasync". Unset: the shim is
 *                  inert (it still counts nothing and injects nothing).
 *   FBFAULT_NTH    1-based index of the first matching call to fault (default 1).
 *   FBFAULT_TIMES  how many matching calls to fault from there (default 1;
 *                  0 = every one from N on, a disk that stays broken).
 *   FBFAULT_ERRNO  EIO (default), ENOSPC, EDQUOT, EROFS or a number.
 *   FBFAULT_MODE   fail (default): return -1 with the errno;
 *                  short: writes and reads transfer half the bytes (at least
 *                  one) and report it, which correct code must continue;
 *                  torn: the first faulted write transfers half, the later
 *                  faulted ones fail with the errno (how a disk fills up).
 *   FBFAULT_PATH   only files whose path contains this substring (default:
 *                  every regular file and directory; pipes, sockets, ttys
 *                  and character devices are never touched, so the
 *                  program's own stdout and stderr keep working).
 *   FBFAULT_LOG    file to append one line to per injected fault and a
 *                  summary at exit: "fbfault: summary matched=M injected=K",
 *                  so a test can tell that its fault really fired and how
 *                  many candidate calls an operation makes.
 *
 * Not built in sanitizer builds: ASan and TSan want to be the first
 * library in the process and intercept the same calls.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FBFAULT_EXPORT __attribute__((visibility("default")))

enum op_class { C_WRITE = 1, C_SYNC = 2, C_RENAME = 4, C_READ = 8, C_ALLOC = 16 };
enum mode { MODE_FAIL, MODE_SHORT, MODE_TORN };

/* The function names that can be selected one by one, with their class. */
static const struct {
    const char *name;
    int cls;
} fn_table[] = {
    {"write", C_WRITE},      {"pwrite", C_WRITE},   {"pwritev", C_WRITE}, {"writev", C_WRITE},
    {"fsync", C_SYNC},       {"fdatasync", C_SYNC}, {"rename", C_RENAME}, {"renameat", C_RENAME},
    {"renameat2", C_RENAME}, {"read", C_READ},      {"pread", C_READ},    {"preadv", C_READ},
    {"fallocate", C_ALLOC},
};
#define NFN (sizeof fn_table / sizeof fn_table[0])

static struct {
    int enabled;
    int classes;           /* classes selected as a whole */
    unsigned char fn[NFN]; /* functions selected by name */
    uint64_t nth, times;
    int err;
    enum mode mode;
    char path[PATH_MAX];
    char log[PATH_MAX];
} cfg;

static atomic_uint_fast64_t matched, injected;

/* libc's versions, looked up lazily (RTLD_NEXT): a call may arrive before
 * our constructor ran, from another library's constructor. */
#define REAL(ret, name, ...)                                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                                        \
    static ret (*get_##name(void))(__VA_ARGS__)                                                    \
    {                                                                                              \
        if (real_##name == NULL) {                                                                 \
            real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);                            \
        }                                                                                          \
        return real_##name;                                                                        \
    }

REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
REAL(ssize_t, pwritev64, int, const struct iovec *, int, off_t)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, rename, const char *, const char *)
REAL(int, renameat, int, const char *, int, const char *)
REAL(int, renameat2, int, const char *, int, const char *, unsigned int)
REAL(ssize_t, read, int, void *, size_t)
REAL(ssize_t, pread, int, void *, size_t, off_t)
REAL(ssize_t, pread64, int, void *, size_t, off_t)
REAL(ssize_t, preadv, int, const struct iovec *, int, off_t)
REAL(ssize_t, preadv64, int, const struct iovec *, int, off_t)
REAL(int, fallocate, int, int, off_t, off_t)
REAL(int, fallocate64, int, int, off_t, off_t)

static int parse_errno(const char *s)
{
    static const struct {
        const char *name;
        int value;
    } names[] = {{"EIO", EIO},     {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
                 {"EROFS", EROFS}, {"EFBIG", EFBIG},   {"EINTR", EINTR}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            return names[i].value;
        }
    }
    int v = atoi(s);
    return v > 0 ? v : EIO;
}

static void parse_ops(const char *s)
{
    static const struct {
        const char *name;
        int cls;
    } classes[] = {{"write", C_WRITE},   {"sync", C_SYNC},
                   {"rename", C_RENAME}, {"read", C_READ},
                   {"alloc", C_ALLOC},   {"all", C_WRITE | C_SYNC | C_RENAME | C_READ | C_ALLOC}};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t != NULL;
         t = strtok_r(NULL, ", ", &save)) {
        /* A class name wins over the function of the same name: "write"
         * means every kind of write, "pwrite" only pwrite. */
        int is_class = 0;
        for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
            if (strcmp(t, classes[i].name) == 0) {
                cfg.classes |= classes[i].cls;
                is_class = 1;
            }
        }
        for (size_t i = 0; !is_class && i < NFN; i++) {
            if (strcmp(t, fn_table[i].name) == 0) {
                cfg.fn[i] = 1;
            }
        }
    }
}

__attribute__((constructor)) static void fbfault_init(void)
{
    const char *ops = getenv("FBFAULT_OPS");
    if (ops == NULL || *ops == '\0') {
        return;
    }
    parse_ops(ops);
    const char *v;
    cfg.nth = (v = getenv("FBFAULT_NTH")) != NULL ? strtoull(v, NULL, 10) : 1;
    if (cfg.nth == 0) {
        cfg.nth = 1;
    }
    cfg.times = (v = getenv("FBFAULT_TIMES")) != NULL ? strtoull(v, NULL, 10) : 1;
    cfg.err = (v = getenv("FBFAULT_ERRNO")) != NULL ? parse_errno(v) : EIO;
    cfg.mode = MODE_FAIL;
    if ((v = getenv("FBFAULT_MODE")) != NULL) {
        cfg.mode = strcmp(v, "short") == 0  ? MODE_SHORT
                   : strcmp(v, "torn") == 0 ? MODE_TORN
                                            : MODE_FAIL;
    }
    if ((v = getenv("FBFAULT_PATH")) != NULL) {
        snprintf(cfg.path, sizeof cfg.path, "%s", v);
    }
    if ((v = getenv("FBFAULT_LOG")) != NULL) {
        snprintf(cfg.log, sizeof cfg.log, "%s", v);
    }
    cfg.enabled = 1;
}

/* Appends one line to FBFAULT_LOG with libc's own write (never ours). */
static void log_line(const char *fmt, ...)
{
    if (cfg.log[0] == '\0') {
        return;
    }
    char line[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
    }
    int saved = errno;
    int fd = open(cfg.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        get_write()(fd, line, (size_t)n);
        close(fd);
    }
    errno = saved;
}

__attribute__((destructor)) static void fbfault_fini(void)
{
    if (cfg.enabled) {
        log_line("fbfault: summary matched=%llu injected=%llu\n",
                 (unsigned long long)atomic_load(&matched),
                 (unsigned long long)atomic_load(&injected));
    }
}

static int selected(const char *fn, int cls)
{
    if (cfg.classes & cls) {
        return 1;
    }
    for (size_t i = 0; i < NFN; i++) {
        if (cfg.fn[i] && strcmp(fn_table[i].name, fn) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether the file behind fd is one we may fault; fills path. */
static int fd_eligible(int fd, char *path, size_t cap)
{
    struct stat st;
    int saved = errno;
    int ok = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
    path[0] = '\0';
    if (ok) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, cap - 1);
        path[n > 0 ? n : 0] = '\0';
        ok = cfg.path[0] == '\0' || strstr(path, cfg.path) != NULL;
    }
    errno = saved;
    return ok;
}

/*
 * Decides for one call whether to fault it: 0 = pass through, else the
 * fault's ordinal among faulted calls (1 for the first). Counting happens
 * only for selected, eligible calls, so FBFAULT_NTH is stable for a given
 * operation whatever else the program does.
 */
static uint64_t decide(const char *fn, int cls, const char *path)
{
    uint64_t k = atomic_fetch_add(&matched, 1) + 1;
    if (k < cfg.nth || (cfg.times != 0 && k >= cfg.nth + cfg.times)) {
        return 0;
    }
    uint64_t ord = k - cfg.nth + 1;
    atomic_fetch_add(&injected, 1);
    log_line("fbfault: %s %s call=%llu errno=%d mode=%d class=%d\n", fn, path,
             (unsigned long long)k, cfg.err, (int)cfg.mode, cls);
    return ord;
}

static uint64_t check_fd(const char *fn, int cls, int fd)
{
    char path[PATH_MAX];
    if (!cfg.enabled || !selected(fn, cls) || !fd_eligible(fd, path, sizeof path)) {
        return 0;
    }
    return decide(fn, cls, path);
}

static uint64_t check_paths(const char *fn, const char *a, const char *b)
{
    if (!cfg.enabled || !selected(fn, C_RENAME)) {
        return 0;
    }
    if (cfg.path[0] != '\0' && strstr(a, cfg.path) == NULL && strstr(b, cfg.path) == NULL) {
        return 0;
    }
    return decide(fn, C_RENAME, a);
}

/* How many bytes a faulted transfer of n bytes moves: -1 to fail. */
static ssize_t faulted_len(uint64_t ord, size_t n)
{
    if (cfg.mode == MODE_SHORT || (cfg.mode == MODE_TORN && ord == 1)) {
        if (n >= 2) {
            return (ssize_t)(n / 2);
        }
        if (cfg.mode == MODE_SHORT) {
            return (ssize_t)n;
        }
    }
    return -1;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t t = 0;
    for (int i = 0; i < cnt; i++) {
        t += iov[i].iov_len;
    }
    return t;
}

/* Cuts an iovec array to its first `keep` bytes (into out, at most 64). */
static int iov_cut(const struct iovec *iov, int cnt, size_t keep, struct iovec *out)
{
    int m = 0;
    for (int i = 0; i < cnt && keep > 0 && m < 64; i++) {
        out[m] = iov[i];
        if (out[m].iov_len > keep) {
            out[m].iov_len = keep;
        }
        keep -= out[m].iov_len;
        m++;
    }
    return m;
}

#define FAIL_WITH_ERRNO()                                                                          \
    do {                                                                                           \
        errno = cfg.err;                                                                           \
        return -1;                                                                                 \
    } while (0)

/*
 * Decides the fate of a transfer of *n bytes: -1 to fail it (errno set);
 * else it goes ahead with *n bytes: 1 if faulted (*n is then what the
 * fault lets through), 0 if not.
 */
static int fault_transfer(const char *fn, enum op_class cls, int fd, size_t *n)
{
    uint64_t ord = check_fd(fn, cls, fd);
    if (ord == 0) {
        return 0;
    }
    ssize_t k = faulted_len(ord, *n);
    if (k < 0) {
        FAIL_WITH_ERRNO();
    }
    *n = (size_t)k;
    return 1;
}

/* The same for a vector: a faulted one goes ahead with the bytes the fault
 * lets through, copied into cut (which *iov and *cnt then describe). */
static int fault_vector(const char *fn, enum op_class cls, int fd, const struct iovec **iov,
                        int *cnt, struct iovec cut[64])
{
    size_t n = iov_total(*iov, *cnt);
    int f = fault_transfer(fn, cls, fd, &n);
    if (f > 0) {
        *cnt = iov_cut(*iov, *cnt, n, cut);
        *iov = cut;
    }
    return f;
}

FBFAULT_EXPORT ssize_t write(int fd, const void *p, size_t n)
{
    if (fault_transfer("write", C_WRITE, fd, &n) < 0) {
        return -1;
    }
    return get_write()(fd, p, n);
}

static ssize_t do_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd, const void *p,
                         size_t n, off_t off)
{
    if (fault_transfer("pwrite", C_WRITE, fd, &n) < 0) {
        return -1;
    }
    return real(fd, p, n, off);
}

FBFAULT_EXPORT ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    return do_pwrite(get_pwrite(), fd, p, n, off);
}

FBFAULT_EXPORT ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
    return do_pwrite(get_pwrite64(), fd, p, n, off);
}

/* pwritev and preadv (and their 64 variants): a fault fails the call or
 * hands the real call a shortened copy of the vector. */
static ssize_t do_iov_at(ssize_t (*real)(int, const struct iovec *, int, off_t), const char *name,
                         enum op_class cls, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct iovec cut[64];
    if (fault_vector(name, cls, fd, &iov, &cnt, cut) < 0) {
        return -1;
    }
    return real(fd, iov, cnt, off);
}

FBFAULT_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_iov_at(get_pwritev(), "pwritev", C_WRITE, fd, iov, cnt, off);
}

FBFAULT_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_iov_at(get_pwritev64(), "pwritev", C_WRITE, fd, iov, cnt, off);
}

FBFAULT_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    struct iovec cut[64];
    if (fault_vector("writev", C_WRITE, fd, &iov, &cnt, cut) < 0) {
        return -1;
    }
    return get_writev()(fd, iov, cnt);
}

FBFAULT_EXPORT int fsync(int fd)
{
    if (check_fd("fsync", C_SYNC, fd) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_fsync()(fd);
}

FBFAULT_EXPORT int fdatasync(int fd)
{
    if (check_fd("fdatasync", C_SYNC, fd) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_fdatasync()(fd);
}

FBFAULT_EXPORT int rename(const char *a, const char *b)
{
    if (check_paths("rename", a, b) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_rename()(a, b);
}

/* Relative names are matched as given: the store passes names relative to
 * its blocks/ descriptor, so FBFAULT_PATH=".idx" still selects them. */
FBFAULT_EXPORT int renameat(int da, const char *a, int db, const char *b)
{
    if (check_paths("renameat", a, b) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_renameat()(da, a, db, b);
}

FBFAULT_EXPORT int renameat2(int da, const char *a, int db, const char *b, unsigned int flags)
{
    if (check_paths("renameat2", a, b) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_renameat2()(da, a, db, b, flags);
}

FBFAULT_EXPORT ssize_t read(int fd, void *p, size_t n)
{
    if (fault_transfer("read", C_READ, fd, &n) < 0) {
        return -1;
    }
    return get_read()(fd, p, n);
}

static ssize_t do_pread(ssize_t (*real)(int, void *, size_t, off_t), int fd, void *p, size_t n,
                        off_t off)
{
    if (fault_transfer("pread", C_READ, fd, &n) < 0) {
        return -1;
    }
    return real(fd, p, n, off);
}

FBFAULT_EXPORT ssize_t pread(int fd, void *p, size_t n, off_t off)
{
    return do_pread(get_pread(), fd, p, n, off);
}

FBFAULT_EXPORT ssize_t pread64(int fd, void *p, size_t n, off_t off)
{
    return do_pread(get_pread64(), fd, p, n, off);
}

FBFAULT_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_iov_at(get_preadv(), "preadv", C_READ, fd, iov, cnt, off);
}

FBFAULT_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_iov_at(get_preadv64(), "preadv", C_READ, fd, iov, cnt, off);
}

FBFAULT_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    if (check_fd("fallocate", C_ALLOC, fd) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_fallocate()(fd, mode, off, len);
}

FBFAULT_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    if (check_fd("fallocate", C_ALLOC, fd) != 0) {
        FAIL_WITH_ERRNO();
    }
    return get_fallocate64()(fd, mode, off, len);
}
