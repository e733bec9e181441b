/*
 * fbfault_selftest - proves that the fbfault shim injects exactly the
 * faults its environment asks for, and nothing else, before any other test
 * trusts it.
 *
 * Usage: fbfault_selftest /path/to/libfbfault.so
 * Each scenario runs in a child that re-executes this program with
 * LD_PRELOAD and the scenario's FBFAULT_* variables; the child checks the
 * results of real system calls on real files in a temporary directory and
 * the shim's log.
 */
/* fb_test_rmtree copies d_name into a fixed buffer; GCC cannot see that our
 * paths are short. */
#include "fb_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];

/* A new empty file in the scenario's directory, open for reading and
 * writing. The scenario cannot go on without it: the child exits with 3. */
static int open_file(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(p);
        exit(3);
    }
    return fd;
}

/* The shim's log as text (at most 4 KiB). */
static const char *log_text(void)
{
    static char text[4096];
    text[0] = '\0';
    const char *path = getenv("FBFAULT_LOG");
    int fd = path ? open(path, O_RDONLY) : -1;
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        text[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    return text;
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

/* FBFAULT_OPS=pwrite FBFAULT_NTH=3 FBFAULT_ERRNO=ENOSPC */
TEST(nth_pwrite_only)
{
    int fd = open_file("a.fbk");
    char buf[100] = {0};
    for (int i = 1; i <= 5; i++) {
        errno = 0;
        ssize_t w = pwrite(fd, buf, sizeof buf, (off_t)(i * 100));
        if (i == 3) {
            CHECK_EQ(w, -1);
            CHECK_EQ(errno, ENOSPC);
        } else {
            CHECK_EQ(w, 100);
        }
    }
    /* Other functions of the class are not counted when one is named. */
    CHECK_EQ(write(fd, buf, 10), 10);
    CHECK_EQ(fsync(fd), 0);
    close(fd);
    /* stdout is a pipe or terminal: never touched. */
    CHECK_EQ(write(STDOUT_FILENO, "", 0), 0);
    CHECK_EQ(count_lines(log_text(), "fbfault: pwrite "), 1);
}

/* FBFAULT_OPS=sync FBFAULT_NTH=2 FBFAULT_TIMES=0 */
TEST(sync_stays_broken)
{
    int fd = open_file("b.fbk");
    CHECK_EQ(fsync(fd), 0);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK_EQ(fdatasync(fd), -1);
        CHECK_EQ(errno, EIO);
        CHECK_EQ(fsync(fd), -1);
    }
    close(fd);
    CHECK_EQ(count_lines(log_text(), "fbfault: f"), 6);
}

/* FBFAULT_OPS=write FBFAULT_MODE=short FBFAULT_TIMES=0 */
TEST(short_writes_are_half)
{
    int fd = open_file("c.fbk");
    char buf[100];
    memset(buf, 'x', sizeof buf);
    CHECK_EQ(pwrite(fd, buf, 100, 0), 50);
    CHECK_EQ(write(fd, buf, 1), 1); /* one byte cannot be cut */
    struct iovec v[2] = {{buf, 10}, {buf, 10}};
    CHECK_EQ(pwritev(fd, v, 2, 0), 10);
    CHECK_EQ(writev(fd, v, 2), 10);
    /* Written data is real: the file holds what was reported. */
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK(st.st_size >= 50);
    close(fd);
}

/* FBFAULT_OPS=write FBFAULT_MODE=torn FBFAULT_TIMES=0 FBFAULT_ERRNO=ENOSPC */
TEST(torn_then_full)
{
    int fd = open_file("d.fbk");
    char buf[100] = {0};
    CHECK_EQ(pwrite(fd, buf, 100, 0), 50);
    errno = 0;
    CHECK_EQ(pwrite(fd, buf, 50, 50), -1);
    CHECK_EQ(errno, ENOSPC);
    CHECK_EQ(write(fd, buf, 1), -1);
    close(fd);
}

/* FBFAULT_OPS=rename FBFAULT_PATH=.idx */
TEST(rename_by_path)
{
    close(open_file("x.tmp"));
    close(open_file("y.idx.tmp"));
    char a[4200], b[4200], c[4200], d[4200];
    snprintf(a, sizeof a, "%s/x.tmp", dir);
    snprintf(b, sizeof b, "%s/x", dir);
    snprintf(c, sizeof c, "%s/y.idx.tmp", dir);
    snprintf(d, sizeof d, "%s/y.idx", dir);
    CHECK_EQ(rename(a, b), 0);
    errno = 0;
    CHECK_EQ(rename(c, d), -1);
    CHECK_EQ(errno, EIO);
    CHECK_EQ(access(c, F_OK), 0);                    /* the failed rename did nothing */
    CHECK_EQ(renameat(AT_FDCWD, c, AT_FDCWD, d), 0); /* only the first was faulted */
    CHECK_EQ(access(d, F_OK), 0);
}

/* FBFAULT_OPS=read FBFAULT_NTH=2 FBFAULT_TIMES=2 */
TEST(reads_fail)
{
    int fd = open_file("e.fbk");
    char buf[64] = "hello";
    CHECK_EQ(pwrite(fd, buf, sizeof buf, 0), (long)sizeof buf); /* writes not selected */
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), (long)sizeof buf);
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), -1);
    struct iovec v = {buf, sizeof buf};
    CHECK_EQ(preadv(fd, &v, 1, 0), -1);
    CHECK_EQ(preadv(fd, &v, 1, 0), (long)sizeof buf);
    CHECK_STR_EQ(buf, "hello");
    close(fd);
}

/* FBFAULT_OPS=write,alloc FBFAULT_PATH=/sel/ FBFAULT_TIMES=0 FBFAULT_ERRNO=ENOSPC */
TEST(path_filter)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/sel", dir);
    CHECK_EQ(mkdir(sub, 0755), 0);
    int other = open_file("other.fbk");
    int fd = open_file("sel/f.fbk");
    char buf[10] = {0};
    CHECK_EQ(pwrite(other, buf, 10, 0), 10);
    CHECK_EQ(fallocate(other, 0, 0, 4096), 0);
    CHECK_EQ(pwrite(fd, buf, 10, 0), -1);
    CHECK_EQ(fallocate(fd, 0, 0, 4096), -1);
    CHECK_EQ(errno, ENOSPC);
    close(fd);
    close(other);
}

/* No FBFAULT_OPS: the shim is loaded and inert. */
TEST(inert_without_ops)
{
    int fd = open_file("g.fbk");
    char buf[10] = {0};
    CHECK_EQ(pwrite(fd, buf, 10, 0), 10);
    CHECK_EQ(fdatasync(fd), 0);
    CHECK_EQ(pread(fd, buf, 10, 0), 10);
    close(fd);
    CHECK_STR_EQ(log_text(), "");
}

static const struct scenario {
    const char *name;
    void (*fn)(void);
    const char *env[6];
} scenarios[] = {
    {"nth_pwrite_only",
     nth_pwrite_only,
     {"FBFAULT_OPS=pwrite", "FBFAULT_NTH=3", "FBFAULT_ERRNO=ENOSPC"}},
    {"sync_stays_broken",
     sync_stays_broken,
     {"FBFAULT_OPS=sync", "FBFAULT_NTH=2", "FBFAULT_TIMES=0"}},
    {"short_writes_are_half",
     short_writes_are_half,
     {"FBFAULT_OPS=write", "FBFAULT_MODE=short", "FBFAULT_TIMES=0"}},
    {"torn_then_full",
     torn_then_full,
     {"FBFAULT_OPS=write", "FBFAULT_MODE=torn", "FBFAULT_TIMES=0", "FBFAULT_ERRNO=ENOSPC"}},
    {"rename_by_path", rename_by_path, {"FBFAULT_OPS=rename", "FBFAULT_PATH=.idx"}},
    {"reads_fail", reads_fail, {"FBFAULT_OPS=read", "FBFAULT_NTH=2", "FBFAULT_TIMES=2"}},
    {"path_filter",
     path_filter,
     {"FBFAULT_OPS=write,alloc", "FBFAULT_PATH=/sel/", "FBFAULT_TIMES=0", "FBFAULT_ERRNO=ENOSPC"}},
    {"inert_without_ops", inert_without_ops, {NULL}},
};
#define NSCEN (sizeof scenarios / sizeof scenarios[0])

/* Runs one scenario in a child under the shim; returns its exit status. */
static int run_child(const char *self, const char *shim, const struct scenario *sc)
{
    char *tmp = fb_test_tmpdir("fbfault");
    char log[4200], preload[4200], dirvar[4200];
    snprintf(log, sizeof log, "FBFAULT_LOG=%s/fault.log", tmp);
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", shim);
    snprintf(dirvar, sizeof dirvar, "FBFAULT_SELFTEST_DIR=%s", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        /* A clean environment: no FBFAULT_* of the caller leaks in. */
        char *envp[12];
        int k = 0;
        envp[k++] = preload;
        envp[k++] = log;
        envp[k++] = dirvar;
        for (int i = 0; i < 6 && sc->env[i] != NULL; i++) {
            envp[k++] = (char *)sc->env[i];
        }
        envp[k] = NULL;
        execle(self, self, "--scenario", sc->name, (char *)NULL, envp);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    fb_test_rmtree(tmp);
    free(tmp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--scenario") == 0) {
        const char *d = getenv("FBFAULT_SELFTEST_DIR");
        snprintf(dir, sizeof dir, "%s", d ? d : "/tmp");
        for (size_t i = 0; i < NSCEN; i++) {
            if (strcmp(scenarios[i].name, argv[2]) == 0) {
                fb_test_current_failed = 0;
                scenarios[i].fn();
                return fb_test_current_failed;
            }
        }
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBFBFAULT.so\n", argv[0]);
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 2;
    }
    self[n] = '\0';
    for (size_t i = 0; i < NSCEN; i++) {
        int rc = run_child(self, argv[1], &scenarios[i]);
        if (rc != 0) {
            fb_test_failed++;
            fprintf(stderr, "FAIL %s (child exit %d)\n", scenarios[i].name, rc);
        } else {
            fb_test_passed++;
            fprintf(stderr, "ok   %s\n", scenarios[i].name);
        }
    }
    return TEST_REPORT();
}
