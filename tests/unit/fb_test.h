/*
 * fb_test.h - the tiny assertion header of the unit tests.
 *
 * A test file defines test functions with TEST(name) and lists them in
 * main() with RUN(name). A failed CHECK prints the file, line, the
 * expression and both values, marks the test failed and returns from it.
 * main() returns TEST_REPORT(), non-zero when anything failed, and prints
 * "N passed, N failed" as its last line.
 */
#ifndef FB_TEST_H
#define FB_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fb_test_passed, fb_test_failed, fb_test_current_failed;

#define TEST(name) static void name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        fb_test_current_failed = 0;                                                                \
        name();                                                                                    \
        if (fb_test_current_failed) {                                                              \
            fb_test_failed++;                                                                      \
            fprintf(stderr, "FAIL %s\n", #name);                                                   \
        } else {                                                                                   \
            fb_test_passed++;                                                                      \
            fprintf(stderr, "ok   %s\n", #name);                                                   \
        }                                                                                          \
    } while (0)

#define TEST_REPORT()                                                                              \
    (printf("%d passed, %d failed\n", fb_test_passed, fb_test_failed), fb_test_failed != 0)

#define FB_TEST_FAIL_(...)                                                                         \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        fb_test_current_failed = 1;                                                                \
        return;                                                                                    \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FB_TEST_FAIL_("CHECK(%s) failed", #cond);                                              \
    } while (0)

/* Integers: both values printed (as signed 64-bit). */
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long fb_a_ = (long long)(a), fb_b_ = (long long)(b);                                  \
        if (fb_a_ != fb_b_)                                                                        \
            FB_TEST_FAIL_("CHECK_EQ(%s, %s) failed: %lld != %lld", #a, #b, fb_a_, fb_b_);          \
    } while (0)

#define CHECK_NE(a, b)                                                                             \
    do {                                                                                           \
        long long fb_a_ = (long long)(a), fb_b_ = (long long)(b);                                  \
        if (fb_a_ == fb_b_)                                                                        \
            FB_TEST_FAIL_("CHECK_NE(%s, %s) failed: both %lld", #a, #b, fb_a_);                    \
    } while (0)

#define CHECK_U64_EQ(a, b)                                                                         \
    do {                                                                                           \
        uint64_t fb_a_ = (uint64_t)(a), fb_b_ = (uint64_t)(b);                                     \
        if (fb_a_ != fb_b_)                                                                        \
            FB_TEST_FAIL_("CHECK_U64_EQ(%s, %s) failed: %" PRIu64 " != %" PRIu64, #a, #b, fb_a_,   \
                          fb_b_);                                                                  \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *fb_a_ = (a), *fb_b_ = (b);                                                     \
        if (fb_a_ == NULL || fb_b_ == NULL || strcmp(fb_a_, fb_b_) != 0)                           \
            FB_TEST_FAIL_("CHECK_STR_EQ(%s, %s) failed: \"%s\" != \"%s\"", #a, #b,                 \
                          fb_a_ ? fb_a_ : "(null)", fb_b_ ? fb_b_ : "(null)");                     \
    } while (0)

#define CHECK_MEM_EQ(a, b, n)                                                                      \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            FB_TEST_FAIL_("CHECK_MEM_EQ(%s, %s, %s) failed", #a, #b, #n);                          \
    } while (0)

/* An FB_E* result: prints both codes by name and the thread's error detail. */
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int fb_rc_ = (expr), fb_want_ = (want);                                                    \
        if (fb_rc_ != fb_want_)                                                                    \
            FB_TEST_FAIL_("%s returned %s (%d), want %s (%d); detail: %s", #expr,                  \
                          fb_err_name(fb_rc_), fb_rc_, fb_err_name(fb_want_), fb_want_,            \
                          fb_last_error());                                                        \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, 0)

/* A fresh empty directory under $TMPDIR (or /tmp); the caller removes it
 * with fb_test_rmtree. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *fb_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/fbtest-%s-XXXXXX", base ? base : "/tmp", tag);
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    return path;
}

static inline void fb_test_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(n);
            if (child == NULL) {
                break;
            }
            snprintf(child, n, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
                fb_test_rmtree(child);
            } else {
                unlink(child);
            }
            free(child);
        }
        closedir(d);
    }
    rmdir(path);
}

#endif
