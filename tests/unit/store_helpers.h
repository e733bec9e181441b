/*
 * store_helpers.h - what the storage engine's unit tests share: payloads
 * that can be regenerated from a seed, a store opened with test options,
 * and file helpers for damaging stores on purpose.
 */
#ifndef FB_STORE_HELPERS_H
#define FB_STORE_HELPERS_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fastblocks.h"

/* Deterministic pseudo-random bytes from a seed (splitmix64). */
static inline void th_fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            x ^= z >> 31;
        }
        p[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

/* Payload length for a seed: 1..max bytes, varied so alignment varies. */
static inline size_t th_len(uint64_t seed, size_t max)
{
    return 1 + (size_t)((seed * 2654435761u) % max);
}

static inline fb_options th_opts(void)
{
    fb_options o;
    fb_options_init(&o);
    o.durability = FB_DURABILITY_NONE; /* tests that need fsync say so */
    o.max_block_size = 1 << 20;
    return o;
}

static inline char *th_path(const char *dir, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* XORs one byte of a file with 0x5a (bit rot made by hand): 0 or -1. */
static inline int th_flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    uint8_t c = 0;
    int ok = fd >= 0 && pread(fd, &c, 1, off) == 1;
    c ^= 0x5a;
    ok = ok && pwrite(fd, &c, 1, off) == 1;
    if (fd >= 0) {
        close(fd);
    }
    return ok ? 0 : -1;
}

static inline long th_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Overwrites n bytes at off of a file. */
static inline int th_poke(const char *path, long off, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = pwrite(fd, p, n, off);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

static inline int th_copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int rc = (a && b) ? 0 : -1;
    char buf[65536];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0) {
        if (fwrite(buf, 1, n, b) != n) {
            rc = -1;
        }
    }
    if (a) {
        fclose(a);
    }
    if (b) {
        fclose(b);
    }
    return rc;
}

/* Copies a store directory (marker and blocks/ only). */
static inline int th_copy_store(const char *from, const char *to)
{
    char a[4096], b[4096];
    mkdir(to, 0755);
    snprintf(a, sizeof a, "%s/fastblocks.store", from);
    snprintf(b, sizeof b, "%s/fastblocks.store", to);
    if (th_copy_file(a, b) != 0) {
        return -1;
    }
    snprintf(a, sizeof a, "%s/compact.journal", from);
    snprintf(b, sizeof b, "%s/compact.journal", to);
    if (access(a, F_OK) == 0 && th_copy_file(a, b) != 0) {
        return -1;
    }
    snprintf(b, sizeof b, "%s/blocks", to);
    mkdir(b, 0755);
    snprintf(a, sizeof a, "%s/blocks", from);
    DIR *d = opendir(a);
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char x[4096], y[4096];
        snprintf(x, sizeof x, "%s/blocks/%s", from, e->d_name);
        snprintf(y, sizeof y, "%s/blocks/%s", to, e->d_name);
        if (th_copy_file(x, y) != 0) {
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

/* Puts the payload of seed (th_fill, th_len(seed, max)) with width = seed. */
static inline int th_put(fb_store *s, uint64_t seed, size_t max, fb_meta *m)
{
    size_t n = th_len(seed, max);
    uint8_t *p = malloc(n);
    th_fill(p, n, seed);
    int rc = fb_put_webp(s, p, n, (uint32_t)seed, 7, m);
    free(p);
    return rc;
}

/* 0 if addr reads back exactly the payload of seed, else the error (or
 * FB_ECORRUPT for wrong bytes). */
static inline int th_check(fb_store *s, const fb_addr *a, uint64_t seed, size_t max)
{
    fb_buf *b = NULL;
    int rc = fb_get(s, a, &b, NULL);
    if (rc != 0) {
        return rc;
    }
    size_t n = th_len(seed, max);
    uint8_t *p = malloc(n);
    th_fill(p, n, seed);
    int ok = fb_buf_len(b) == n && memcmp(fb_buf_data(b), p, n) == 0;
    free(p);
    fb_buf_release(b);
    return ok ? 0 : FB_ECORRUPT;
}

static inline int th_check_id(fb_store *s, const char *id, uint64_t seed, size_t max)
{
    fb_addr a;
    int rc = fb_addr_from_id(id, &a);
    return rc != 0 ? rc : th_check(s, &a, seed, max);
}

/* Puts the payloads of seeds first .. first + n - 1 (as th_put) into m[0..n);
 * 0 or the first error. */
static inline int th_put_seq(fb_store *s, fb_meta *m, int n, uint64_t first, size_t max)
{
    for (int i = 0; i < n; i++) {
        int rc = th_put(s, first + (uint64_t)i, max, &m[i]);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The result of fb_get of the image with this id (the bytes are dropped). */
static inline int th_get_id(fb_store *s, const char *id)
{
    fb_addr a;
    fb_buf *b = NULL;
    int rc = fb_addr_from_id(id, &a);
    if (rc == 0) {
        rc = fb_get(s, &a, &b, NULL);
    }
    fb_buf_release(b);
    return rc;
}

static inline int th_delete_id(fb_store *s, const char *id)
{
    fb_addr a;
    int rc = fb_addr_from_id(id, &a);
    return rc != 0 ? rc : fb_delete(s, &a, NULL);
}

/* Closes *s and opens dir again with o (a reopen, as after a restart). */
static inline int th_reopen(fb_store **s, const char *dir, const fb_options *o)
{
    int rc = fb_close(*s);
    *s = NULL;
    return rc != 0 ? rc : fb_open(dir, o, s);
}

/* An fb_verify problem callback that prints the problem, for test logs. */
static inline void th_print_problem(void *ud, const fb_problem *p)
{
    (void)ud;
    fprintf(stderr, "  problem: %s at %llu: %s\n", p->block, (unsigned long long)p->offset,
            p->detail);
}

#endif
