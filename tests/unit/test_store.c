/* Unit tests of the storage engine's core on real files: put/get/stat,
 * addresses, delete, reopen, block rotation, locking, read-only opens,
 * torn tails, damaged and missing index files, fault injection, codecs. */
/* fb_test_rmtree builds paths with snprintf into fixed buffers on purpose. */
#include "fb_test.h"
#include "store_helpers.h"

#include <errno.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "block.h"
#include "record.h"

#define put_seed th_put

/* 1 if addr reads back exactly the payload of seed. */
static int same_as_seed(fb_store *s, const fb_addr *a, uint64_t seed, size_t max)
{
    return th_check(s, a, seed, max) == 0;
}

TEST(put_get_stat_roundtrip)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(put_seed(s, 1, 5000, &m));
    CHECK_EQ(strlen(m.id), 24);
    CHECK_STR_EQ(m.block, "block_00000001.fbk");
    CHECK_U64_EQ(m.offset, 128); /* block header 64 + record header 64 */
    CHECK_U64_EQ(m.size, th_len(1, 5000));
    CHECK_U64_EQ(m.bytes, th_len(1, 5000));
    CHECK_EQ(m.width, 1);
    CHECK_EQ(m.height, 7);
    fb_addr a, t;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    CHECK(same_as_seed(s, &a, 1, 5000));
    CHECK_OK(fb_addr_from_triple(m.block, m.offset, m.size, &t));
    CHECK(same_as_seed(s, &t, 1, 5000));
    fb_meta m2;
    CHECK_OK(fb_stat(s, &t, &m2));
    CHECK_STR_EQ(m2.id, m.id);
    CHECK_EQ(m2.created, m.created);
    /* Wrong size, wrong cookie, offset inside the record: not found. */
    fb_addr bad = t;
    bad.size++;
    CHECK_RC(fb_stat(s, &bad, &m2), FB_ENOTFOUND);
    bad = a;
    bad.cookie ^= 1;
    CHECK_RC(fb_stat(s, &bad, &m2), FB_ENOTFOUND);
    CHECK_OK(fb_addr_from_triple(m.block, m.offset + 8, m.size - 8, &bad));
    fb_buf *b = NULL;
    CHECK_RC(fb_get(s, &bad, &b, NULL), FB_ENOTFOUND);
    /* The block holds exactly the payload at [offset, offset + size). */
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    uint8_t *raw = malloc(m.size), *want = malloc(m.size);
    fseek(f, (long)m.offset, SEEK_SET);
    CHECK_EQ(fread(raw, 1, m.size, f), m.size);
    fclose(f);
    th_fill(want, m.size, 1);
    CHECK_MEM_EQ(raw, want, m.size);
    free(raw);
    free(want);
    free(path);
    char json[FB_META_JSON_MAX];
    CHECK(fb_meta_json(&m, json, sizeof json) > 0);
    CHECK(strstr(json, "\"block\":\"block_00000001.fbk\",\"offset\":128") != NULL);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(many_puts_rotate_and_reopen)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    o.max_block_size = 64 << 10;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    enum { N = 300 };
    static fb_meta m[N];
    CHECK_OK(th_put_seq(s, m, N, 100, 3000));
    fb_stats st;
    CHECK_OK(fb_get_stats(s, &st));
    CHECK(st.blocks > 5);
    CHECK_U64_EQ(st.live_records, N);
    CHECK_OK(fb_close(s));
    /* Sealed blocks come back from their index files. */
    char *idx = th_path(dir, "blocks/block_00000001.idx");
    CHECK(th_file_size(idx) > 64);
    free(idx);
    CHECK_OK(fb_open(dir, &o, &s));
    for (int i = 0; i < N; i++) {
        CHECK_OK(th_check_id(s, m[i].id, 100 + i, 3000));
    }
    CHECK_OK(fb_get_stats(s, &st));
    CHECK_U64_EQ(st.live_records, N);
    CHECK_U64_EQ(st.dead_bytes, 0);
    fb_block_stats *bl = NULL;
    size_t nb = 0;
    CHECK_OK(fb_list_blocks(s, &bl, &nb));
    CHECK_EQ(nb, st.blocks);
    for (size_t i = 0; i + 1 < nb; i++) {
        CHECK(bl[i].number < bl[i + 1].number);
        CHECK(bl[i].sealed);
        CHECK(bl[i].file_bytes <= o.max_block_size);
    }
    CHECK(!bl[nb - 1].sealed);
    fb_free(bl);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(delete_tombstone_and_stats)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_ALWAYS;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m[10];
    CHECK_OK(th_put_seq(s, m, 10, 500, 2000));
    fb_addr a;
    CHECK_OK(fb_addr_from_triple(m[3].block, m[3].offset, m[3].size, &a));
    fb_block_stats bs;
    CHECK_OK(fb_delete(s, &a, &bs));
    CHECK_EQ(bs.live_records, 9);
    CHECK_EQ(bs.dead_records, 1);
    CHECK(bs.dead_bytes >= 64 + m[3].size);
    CHECK_RC(fb_delete(s, &a, &bs), FB_ENOTFOUND);
    fb_buf *b = NULL;
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ENOTFOUND);
    /* Every other image keeps its bytes and address. */
    for (int i = 0; i < 10; i++) {
        if (i == 3) {
            continue;
        }
        CHECK_OK(th_check_id(s, m[i].id, 500 + i, 2000));
    }
    CHECK_OK(fb_close(s));
    /* The deleted bit is set in place and the tombstone survives reopen. */
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    FILE *f = fopen(path, "rb");
    uint8_t fl[4];
    fseek(f, (long)(m[3].offset - 64 + 4), SEEK_SET);
    CHECK_EQ(fread(fl, 1, 4, f), 4);
    fclose(f);
    free(path);
    CHECK(fl[1] & 1); /* 0x100 */
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ENOTFOUND);
    fb_stats st;
    CHECK_OK(fb_get_stats(s, &st));
    CHECK_U64_EQ(st.live_records, 9);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(lock_and_read_only)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    fb_store *s = NULL, *s2 = NULL, *r = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(put_seed(s, 9, 100, &m));
    CHECK_RC(fb_open(dir, &o, &s2), FB_ELOCKED);
    char want[64];
    snprintf(want, sizeof want, "in use by process %ld", (long)getpid());
    CHECK(strstr(fb_last_error(), want) != NULL);
    /* Another process gets the same answer. */
    pid_t pid = fork();
    if (pid == 0) {
        fb_store *c = NULL;
        int rc = fb_open(dir, &o, &c);
        _exit(rc == FB_ELOCKED && strstr(fb_last_error(), want) != NULL ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    o.read_only = 1;
    CHECK_OK(fb_open(dir, &o, &r));
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    CHECK(same_as_seed(r, &a, 9, 100));
    CHECK_RC(fb_put_webp(r, "x", 1, 1, 1, NULL), FB_EREADONLY);
    CHECK_RC(fb_delete(r, &a, NULL), FB_EREADONLY);
    CHECK_RC(fb_compact(r, 0.0, NULL, NULL, NULL), FB_EREADONLY);
    CHECK_OK(fb_close(r));
    CHECK_OK(fb_close(s));
    CHECK_OK(fb_open(dir, NULL, &s)); /* lock released */
    CHECK_OK(fb_close(s));
    /* No store, no create: a clear error. */
    char *nodir = th_path(dir, "nothing");
    o.read_only = 0;
    o.create = 0;
    CHECK_RC(fb_open(nodir, &o, &s), FB_ENOSTORE);
    free(nodir);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(torn_tail_is_cut)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m[5];
    CHECK_OK(th_put_seq(s, m, 5, 40, 1000));
    CHECK_OK(fb_close(s));
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    long size = th_file_size(path);
    /* Cut the last record in half, then append garbage after a good one. */
    CHECK_EQ(truncate(path, (long)m[4].offset + 3), 0);
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_RC(th_get_id(s, m[4].id), FB_ENOTFOUND);
    CHECK_EQ(th_file_size(path), (long)m[4].offset - 64);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(th_check_id(s, m[i].id, 40 + i, 1000));
    }
    fb_meta m5;
    CHECK_OK(put_seed(s, 99, 1000, &m5)); /* appends where the torn record was */
    CHECK_U64_EQ(m5.offset, m[4].offset);
    CHECK_OK(fb_close(s));
    size = th_file_size(path);
    CHECK_EQ(th_poke(path, size, "garbage!", 8), 0);
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_OK(th_check_id(s, m5.id, 99, 1000));
    CHECK_EQ(th_file_size(path), size);
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(corrupt_record_is_an_error_not_bytes)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    o.max_block_size = 8192;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    enum { N = 12 };
    fb_meta m[N];
    CHECK_OK(th_put_seq(s, m, N, 70, 3000));
    CHECK_OK(fb_close(s));
    CHECK(strcmp(m[N - 1].block, "block_00000001.fbk") != 0); /* block 1 is sealed */
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_poke(path, (long)m[0].offset + 5, "\xff\xfe", 2), 0);
    /* Bit rot in the middle of the active block: that record reads as
     * corrupt, the ones after it survive (it is not a torn tail). */
    fb_meta *a1 = NULL, *a2 = NULL;
    for (int i = 0; i + 1 < N; i++) {
        if (strcmp(m[i].block, m[N - 1].block) == 0 && strcmp(m[i + 1].block, m[i].block) == 0) {
            a1 = &m[i];
            a2 = &m[i + 1];
            break;
        }
    }
    CHECK(a1 != NULL);
    char *apath = th_path(dir, "blocks/");
    char full[4200];
    snprintf(full, sizeof full, "%s%s", apath, a1->block);
    CHECK_EQ(th_poke(full, (long)a1->offset, "\x00\x01", 2), 0);
    free(apath);
    o.cache_bytes = 0;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m[0].id, &a));
    fb_buf *b = NULL;
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ECORRUPT);
    CHECK(b == NULL);
    CHECK(strstr(fb_last_error(), "crc mismatch in block_00000001.fbk at offset 64") != NULL);
    int fd = -1;
    uint64_t off = 0;
    CHECK_RC(fb_get_direct(s, &a, &b, &fd, &off, NULL), FB_ECORRUPT);
    CHECK_OK(fb_addr_from_id(a1->id, &a));
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ECORRUPT);
    CHECK_OK(fb_addr_from_id(a2->id, &a));
    CHECK(same_as_seed(s, &a, 70 + (uint64_t)(a2 - m), 3000));
    fb_verify_result vr;
    CHECK_RC(fb_verify(s, th_print_problem, NULL, NULL, &vr), FB_ECORRUPT);
    CHECK_U64_EQ(vr.problems, 2);
    CHECK_U64_EQ(vr.records_checked, N);
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(index_file_damaged_or_missing_is_rebuilt)
{
    char *dir = fb_test_tmpdir("store");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    enum { N = 40 };
    fb_meta m[N];
    CHECK_OK(th_put_seq(s, m, N, 200, 2000));
    CHECK_OK(th_delete_id(s, m[1].id));
    CHECK_OK(fb_close(s));
    char *i1 = th_path(dir, "blocks/block_00000001.idx");
    char *i2 = th_path(dir, "blocks/block_00000002.idx");
    CHECK_EQ(unlink(i1), 0);
    CHECK_EQ(th_poke(i2, 70, "\x01\x02\x03", 3), 0);
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK(th_file_size(i1) > 64); /* rebuilt */
    for (int i = 0; i < N; i++) {
        if (i == 1) {
            CHECK_RC(th_get_id(s, m[i].id), FB_ENOTFOUND);
        } else {
            CHECK_OK(th_check_id(s, m[i].id, 200 + i, 2000));
        }
    }
    CHECK_OK(fb_verify(s, NULL, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    free(i1);
    free(i2);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(bad_marker_and_newer_version)
{
    char *dir = fb_test_tmpdir("store");
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, NULL, &s));
    CHECK_OK(fb_close(s));
    char *mk = th_path(dir, "fastblocks.store");
    /* Version 2 with a valid CRC: EVERSION. */
    FILE *f = fopen(mk, "rb");
    uint8_t raw[64];
    CHECK_EQ(fread(raw, 1, 64, f), 64);
    fclose(f);
    uint8_t v2[64];
    memcpy(v2, raw, 64);
    v2[8] = 2;
    extern uint32_t fb__crc32c(uint32_t, const void *, size_t);
    uint32_t crc = fb__crc32c(0, v2, 60);
    memcpy(v2 + 60, &crc, 4);
    CHECK_EQ(th_poke(mk, 0, v2, 64), 0);
    CHECK_RC(fb_open(dir, NULL, &s), FB_EVERSION);
    CHECK(strstr(fb_last_error(), "newer") != NULL);
    v2[9] = 1; /* CRC now wrong */
    CHECK_EQ(th_poke(mk, 0, v2, 64), 0);
    CHECK_RC(fb_open(dir, NULL, &s), FB_ECORRUPT);
    CHECK_EQ(truncate(mk, 10), 0);
    CHECK_RC(fb_open(dir, NULL, &s), FB_ECORRUPT);
    free(mk);
    fb_test_rmtree(dir);
    free(dir);
}

/* Fault injection: the Nth write or sync fails. */
static int fault_at, fault_span = 1, fault_count, fault_errno;
static enum fb_io_op fault_op;
static int inject(void *ud, enum fb_io_op op, uint32_t block)
{
    (void)ud;
    (void)block;
    if (op == fault_op && ++fault_count >= fault_at && fault_count < fault_at + fault_span) {
        return fault_errno;
    }
    return 0;
}

static void fault_round(enum fb_io_op op, int err, int nth)
{
    char *dir = fb_test_tmpdir("fault");
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_ALWAYS;
    o.max_block_size = 32768;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    enum { N = 30 };
    fb_meta m[N];
    int ok[N];
    fault_op = op;
    fault_errno = err;
    fault_count = 0;
    fault_at = nth;
    fb__block_set_fault(inject, NULL);
    int failures = 0;
    for (int i = 0; i < N; i++) {
        int rc = put_seed(s, 900 + i, 3000, &m[i]);
        ok[i] = rc == 0;
        if (rc != 0) {
            failures++;
            CHECK(rc == (err == ENOSPC ? FB_ENOSPC : FB_EIO));
        }
    }
    fb__block_set_fault(NULL, NULL);
    CHECK(failures >= 1);
    CHECK(failures <= 2);
    /* The store stays usable and loses nothing it acknowledged. */
    fb_meta extra;
    CHECK_OK(put_seed(s, 999, 3000, &extra));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            CHECK_OK(th_reopen(&s, dir, &o));
        }
        for (int i = 0; i < N; i++) {
            if (ok[i]) {
                CHECK_OK(th_check_id(s, m[i].id, 900 + i, 3000));
            }
        }
    }
    fb_stats st;
    CHECK_OK(fb_get_stats(s, &st));
    CHECK_U64_EQ(st.live_records, N - failures + 1);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(fault_injection_write_sync_reserve)
{
    for (int nth = 1; nth <= 12; nth += 3) {
        fault_round(FB__IO_WRITE, EIO, nth);
        fault_round(FB__IO_WRITE, ENOSPC, nth);
        fault_round(FB__IO_SYNC, EIO, nth);
        fault_span = 2; /* a failed chunk is retried with just the record */
        fault_round(FB__IO_RESERVE, ENOSPC, 1);
        fault_span = 1;
        if (fb_test_current_failed) {
            fprintf(stderr, "  (nth %d)\n", nth);
            return;
        }
    }
}

TEST(compression_and_encryption)
{
    char *dir = fb_test_tmpdir("codec");
    char key[FB_KEY_LEN + 1], key2[FB_KEY_LEN + 1];
    CHECK_OK(fb_keygen(key));
    CHECK_OK(fb_keygen(key2));
    const char *keys[2] = {key, key2};
    fb_options o = th_opts();
    o.compression = 1;
    o.keys = keys;
    o.nkeys = 1;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    /* Compressible bytes: zstd + Fernet; the stored size differs. */
    uint8_t text[4000];
    for (size_t i = 0; i < sizeof text; i++) {
        text[i] = (uint8_t)("abcabcabd"[i % 9]);
    }
    fb_meta m;
    CHECK_OK(fb_put_webp(s, text, sizeof text, 3, 4, &m));
    CHECK(m.flags & FB_META_ZSTD);
    CHECK(m.flags & FB_META_FERNET);
    CHECK_U64_EQ(m.bytes, sizeof text);
    CHECK(m.size < sizeof text);
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    fb_buf *b = NULL;
    CHECK_OK(fb_get(s, &a, &b, NULL));
    CHECK_EQ(fb_buf_len(b), sizeof text);
    CHECK_MEM_EQ(fb_buf_data(b), text, sizeof text);
    fb_buf_release(b);
    int fd = -1;
    uint64_t off;
    b = NULL;
    CHECK_EQ(fb_get_direct(s, &a, &b, &fd, &off, NULL), 1); /* cached now */
    fb_buf_release(b);
    CHECK_OK(fb_close(s));
    /* Without the key: ENOKEY; with only the other key: EINTEGRITY. */
    o.keys = NULL;
    o.nkeys = 0;
    o.cache_bytes = 0;
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ENOKEY);
    CHECK_OK(fb_close(s));
    o.keys = keys + 1;
    o.nkeys = 1;
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_EINTEGRITY);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* Hot reads of encoded records come from the cache: the decrypted (and
 * decompressed) plaintext is cached by the first read, later reads hit,
 * and fb_get_direct decodes an uncached one itself and hands out the cached
 * bytes (1) either way. The benchmark's shape: 200 images of ~100 KB, 64 MiB
 * cache. */
TEST(encrypted_records_are_cached_as_plaintext)
{
    char *dir = fb_test_tmpdir("hot");
    char key[FB_KEY_LEN + 1];
    CHECK_OK(fb_keygen(key));
    const char *keys[1] = {key};
    fb_options o = th_opts();
    o.max_block_size = 8 << 20;
    o.cache_bytes = 64 << 20;
    o.keys = keys;
    o.nkeys = 1;
    for (int compression = 0; compression <= 1; compression++) {
        o.compression = compression;
        fb_store *s = NULL;
        CHECK_OK(fb_open(dir, &o, &s));
        enum { NIMG = 200, LEN = 100000 };
        static fb_meta m[NIMG];
        uint8_t *p = malloc(LEN);
        for (int i = 0; i < NIMG; i++) {
            th_fill(p, LEN, 7000 + (uint64_t)i);
            if (compression) {
                memset(p, 'x', LEN / 2); /* half compressible */
            }
            CHECK_OK(fb_put_webp(s, p, LEN, 1, 1, &m[i]));
            CHECK(m[i].flags & FB_META_FERNET);
            CHECK_EQ((m[i].flags & FB_META_ZSTD) != 0, compression);
        }
        fb_stats st0, st1, st2;
        CHECK_OK(fb_get_stats(s, &st0));
        const uint8_t *first[NIMG];
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < NIMG; i++) {
                fb_addr a;
                CHECK_OK(fb_addr_from_id(m[i].id, &a));
                fb_buf *b = NULL, *c = NULL;
                int fd = -1;
                uint64_t off = 0;
                fb_meta dm;
                /* The cache-only probe finds nothing before the first read
                 * (and counts no miss), the cached bytes after it. */
                fb_buf *probe = NULL;
                fb_meta pm, gm;
                CHECK_EQ(fb_get_cached(s, &a, &probe, &pm), pass);
                CHECK_EQ(probe != NULL, pass);
                /* A hit's meta comes from the cache's note, a miss's from
                 * the record header: the same, field for field. */
                CHECK(probe == NULL || memcmp(&pm, &m[i], sizeof pm) == 0);
                /* Not cached yet: fb_get_direct decodes and caches (1);
                 * cached: 1 too, from the cache. */
                CHECK_EQ(fb_get_direct(s, &a, &c, &fd, &off, &dm), 1);
                CHECK_EQ(fd, -1);
                CHECK_U64_EQ(dm.bytes, LEN);
                CHECK(memcmp(&dm, &m[i], sizeof dm) == 0);
                CHECK(probe == NULL || fb_buf_data(probe) == fb_buf_data(c));
                fb_buf_release(probe);
                CHECK_OK(fb_get(s, &a, &b, &gm));
                CHECK(memcmp(&gm, &m[i], sizeof gm) == 0);
                CHECK_EQ(fb_buf_len(b), LEN);
                th_fill(p, LEN, 7000 + (uint64_t)i);
                if (compression) {
                    memset(p, 'x', LEN / 2);
                }
                CHECK_MEM_EQ(fb_buf_data(b), p, LEN);
                if (pass == 0) {
                    first[i] = fb_buf_data(c);
                }
                /* The very bytes the first read cached, shared. */
                CHECK(fb_buf_data(b) == first[i]);
                CHECK(fb_buf_data(c) == first[i]);
                fb_buf_release(b);
                fb_buf_release(c);
            }
            CHECK_OK(fb_get_stats(s, pass == 0 ? &st1 : &st2));
        }
        /* First pass: one miss per image (fb_get_direct's), then fb_get hits. */
        CHECK_U64_EQ(st1.cache_misses - st0.cache_misses, NIMG);
        CHECK_U64_EQ(st1.cache_hits - st0.cache_hits, NIMG);
        CHECK_U64_EQ(st1.cache_entries, NIMG);
        CHECK_U64_EQ(st1.cache_bytes, (uint64_t)NIMG * LEN);
        /* Second pass: the probe, fb_get_direct and fb_get all hit. */
        CHECK_U64_EQ(st2.cache_hits - st1.cache_hits, 3 * NIMG);
        CHECK_U64_EQ(st2.cache_misses, st1.cache_misses);
        free(p);
        CHECK_OK(fb_close(s));
        fb_test_rmtree(dir);
        mkdir(dir, 0755);
    }
    fb_test_rmtree(dir);
    free(dir);
}

TEST(get_direct_plain)
{
    char *dir = fb_test_tmpdir("direct");
    fb_options o = th_opts();
    o.cache_bytes = 0;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(put_seed(s, 5, 3000, &m));
    CHECK_OK(fb_close(s));
    CHECK_OK(fb_open(dir, &o, &s)); /* entries from a scan are verified */
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    fb_buf *b = NULL;
    int fd = -1;
    uint64_t off = 0;
    fb_meta dm;
    CHECK_EQ(fb_get_direct(s, &a, &b, &fd, &off, &dm), 2);
    CHECK(fd >= 0);
    CHECK_U64_EQ(off, m.offset);
    CHECK_U64_EQ(dm.bytes, m.size);
    uint8_t *p = malloc(dm.bytes), *want = malloc(dm.bytes);
    CHECK_EQ(pread(fd, p, dm.bytes, (off_t)off), (ssize_t)dm.bytes);
    th_fill(want, dm.bytes, 5);
    CHECK_MEM_EQ(p, want, dm.bytes);
    free(p);
    free(want);
    close(fd);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* With a cache, a verified plain image goes out by sendfile on its first
 * miss and is read into the cache on the second; then it is a hit. */
TEST(get_direct_plain_cached_on_second_read)
{
    char *dir = fb_test_tmpdir("direct2");
    fb_options o = th_opts();
    o.cache_bytes = 16 << 20;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(put_seed(s, 6, 3000, &m)); /* verified: written here */
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    uint8_t *want = malloc(m.size);
    th_fill(want, m.size, 6);
    for (int i = 0; i < 3; i++) {
        fb_buf *b = NULL;
        int fd = -1;
        uint64_t off = 0;
        fb_meta dm;
        CHECK_EQ(fb_get_direct(s, &a, &b, &fd, &off, &dm), i == 0 ? 2 : 1);
        CHECK(memcmp(&dm, &m, sizeof dm) == 0); /* sendfile, miss or hit alike */
        CHECK_EQ(fd >= 0, i == 0);
        CHECK_EQ(b != NULL, i > 0);
        if (b != NULL) {
            CHECK_EQ(fb_buf_len(b), m.size);
            CHECK_MEM_EQ(fb_buf_data(b), want, m.size);
        }
        fb_buf_release(b);
        if (fd >= 0) {
            close(fd);
        }
    }
    fb_stats st;
    CHECK_OK(fb_get_stats(s, &st));
    CHECK_U64_EQ(st.cache_misses, 2);
    CHECK_U64_EQ(st.cache_hits, 1);
    free(want);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

static int count_cb(void *ud, const fb_meta *m)
{
    (*(int *)ud)++;
    return m->width == 12345 ? 7 : 0;
}

TEST(foreach_visits_live_images)
{
    char *dir = fb_test_tmpdir("foreach");
    fb_options o = th_opts();
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m[20];
    CHECK_OK(th_put_seq(s, m, 20, 300, 500));
    for (int i = 0; i < 20; i += 4) {
        fb_addr a;
        CHECK_OK(fb_addr_from_id(m[i].id, &a));
        CHECK_OK(fb_delete(s, &a, NULL));
    }
    int n = 0;
    CHECK_OK(fb_foreach(s, count_cb, &n));
    CHECK_EQ(n, 15);
    CHECK_OK(fb_put_webp(s, "abc", 3, 12345, 1, NULL));
    n = 0;
    CHECK_EQ(fb_foreach(s, count_cb, &n), 7); /* the callback's stop value */
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(put_real_image)
{
    const char *corpus = getenv("FB_CORPUS_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/web", corpus ? corpus : "/nonexistent");
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "  (no corpus at %s: skipped)\n", path);
        return;
    }
    struct dirent *e;
    char file[4096] = "";
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            break;
        }
    }
    closedir(d);
    FILE *f = fopen(file, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n);
    CHECK_EQ(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    char *dir = fb_test_tmpdir("image");
    fb_store *s = NULL;
    fb_options o = th_opts();
    o.image.effort = 0;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(fb_put(s, p, (size_t)n, NULL, &m));
    CHECK(m.width > 0 && m.height > 0);
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m.id, &a));
    fb_buf *b = NULL;
    CHECK_OK(fb_get(s, &a, &b, NULL));
    CHECK_EQ(fb_buf_len(b), m.bytes);
    CHECK_MEM_EQ(fb_buf_data(b), "RIFF", 4);
    fb_buf_release(b);
    CHECK_RC(fb_put(s, "not an image", 12, NULL, NULL), FB_EUNSUPPORTED);
    /* An empty upload is bad input, not a bad argument. */
    CHECK_RC(fb_put(s, "", 0, NULL, NULL), FB_EUNSUPPORTED);
    CHECK_STR_EQ(fb_last_error(), "empty image (0 bytes)");
    CHECK_RC(fb_put(s, NULL, 0, NULL, NULL), FB_EUNSUPPORTED);
    CHECK_RC(fb_put(s, NULL, 5, NULL, NULL), FB_EINVAL);
    CHECK_OK(fb_close(s));
    free(p);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(sealed_block_truncated_by_hand)
{
    char *dir = fb_test_tmpdir("trunc");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    enum { N = 30 };
    fb_meta m[N];
    CHECK_OK(th_put_seq(s, m, N, 600, 2000));
    CHECK_OK(fb_close(s));
    /* Cut block 1 in the middle of its third record. */
    int third = 2;
    CHECK_STR_EQ(m[third].block, "block_00000001.fbk");
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(truncate(path, (long)m[third].offset + 1), 0);
    CHECK_OK(fb_open(dir, &o, &s));
    for (int i = 0; i < N; i++) {
        int rc = th_check_id(s, m[i].id, 600 + i, 2000);
        if (strcmp(m[i].block, "block_00000001.fbk") == 0 && i >= third) {
            CHECK_RC(rc, FB_ENOTFOUND);
        } else {
            CHECK_OK(rc);
        }
    }
    /* The rebuilt index file matches what is left; the cut is reported. */
    fb_verify_result vr;
    CHECK_RC(fb_verify(s, th_print_problem, NULL, NULL, &vr), FB_ECORRUPT);
    CHECK_U64_EQ(vr.problems, 1);
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(batch_durability_syncs_in_the_background)
{
    char *dir = fb_test_tmpdir("batch");
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_BATCH;
    o.batch_interval_ms = 5;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m;
    CHECK_OK(put_seed(s, 77, 5000, &m));
    fb_stats st;
    int waited = 0;
    do {
        usleep(5000);
        CHECK_OK(fb_get_stats(s, &st));
    } while (st.syncs == 0 && ++waited < 200);
    CHECK(st.syncs >= 1);
    CHECK_OK(fb_close(s));
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_OK(th_check_id(s, m.id, 77, 5000));
    CHECK_OK(fb_close(s));
    o.batch_interval_ms = 0;
    CHECK_RC(fb_open(dir, &o, &s), FB_EINVAL);
    fb_test_rmtree(dir);
    free(dir);
}

/* A real full disk: a small tmpfs (needs root; skipped without it). */
TEST(full_disk_tmpfs)
{
    char *dir = fb_test_tmpdir("full");
    if (mount("fbtest", dir, "tmpfs", 0, "size=2m") != 0) {
        fprintf(stderr, "  (cannot mount a tmpfs: %s; skipped)\n", strerror(errno));
        fb_test_rmtree(dir);
        free(dir);
        return;
    }
    char *sub = th_path(dir, "store");
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_ALWAYS;
    o.max_block_size = 512 << 10;
    fb_store *s = NULL;
    CHECK_OK(fb_open(sub, &o, &s));
    fb_meta m[200];
    int n = 0, rc = 0;
    while (n < 200 && (rc = put_seed(s, 2000 + n, 60000, &m[n])) == 0) {
        n++;
    }
    CHECK_RC(rc, FB_ENOSPC);
    CHECK(n > 5);
    /* Still usable: everything stored reads back; compaction refuses. */
    for (int i = 0; i < n; i++) {
        CHECK_OK(th_check_id(s, m[i].id, 2000 + i, 60000));
    }
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m[0].id, &a));
    rc = fb_delete(s, &a, NULL);
    CHECK(rc == 0 || rc == FB_ENOSPC);
    CHECK_RC(fb_compact(s, 0.0, NULL, NULL, NULL), FB_ENOSPC);
    CHECK(strstr(fb_last_error(), "not enough free space") != NULL);
    CHECK_OK(fb_close(s));
    CHECK_OK(fb_open(sub, &o, &s));
    for (int i = rc == 0 ? 1 : 0; i < n; i++) {
        CHECK_OK(th_check_id(s, m[i].id, 2000 + i, 60000));
    }
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    free(sub);
    umount(dir);
    fb_test_rmtree(dir);
    free(dir);
}

/* Out of memory at every allocation in turn (curl's torture idea): each
 * call fails cleanly with FB_ENOMEM or succeeds, and the store stays
 * consistent. */
static long alloc_count, alloc_fail_at;
static void *torture_malloc(size_t n)
{
    return ++alloc_count == alloc_fail_at ? NULL : malloc(n);
}
static void *torture_realloc(void *p, size_t n)
{
    return ++alloc_count == alloc_fail_at ? NULL : realloc(p, n);
}

TEST(out_of_memory_at_every_allocation)
{
    char *dir = fb_test_tmpdir("oom");
    fb_options o = th_opts();
    o.max_block_size = 8192;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_meta m0;
    for (int i = 0; i < 6; i++) {
        CHECK_OK(put_seed(s, 3000 + i, 2000, &m0));
    }
    CHECK_OK(fb_close(s));
    fb_allocator a = {torture_malloc, torture_realloc, free};
    int failures = 0;
    for (long at = 1; at < 400; at++) {
        alloc_count = 0;
        alloc_fail_at = at;
        fb_set_allocator(&a);
        fb_meta m;
        int rc = fb_open(dir, &o, &s);
        int rc2 = 0, rc3 = 0, rc4 = 0;
        if (rc == 0) {
            rc2 = put_seed(s, 4000 + (uint64_t)at, 2000, &m);
            fb_addr x;
            fb_addr_from_id(m0.id, &x);
            fb_buf *b = NULL;
            rc3 = fb_get(s, &x, &b, NULL);
            fb_buf_release(b);
            rc4 = fb_compact(s, 0.0, NULL, NULL, NULL);
            fb_close(s);
        }
        fb_set_allocator(NULL);
        failures += rc != 0 || rc2 != 0 || rc3 != 0 || rc4 != 0;
        CHECK(rc == 0 || rc == FB_ENOMEM);
        CHECK(rc2 == 0 || rc2 == FB_ENOMEM);
        CHECK(rc3 == 0 || rc3 == FB_ENOMEM);
        CHECK(rc4 == 0 || rc4 == FB_ENOMEM);
        /* Whatever failed, the store opens and verifies. */
        CHECK_OK(fb_open(dir, &o, &s));
        CHECK_OK(th_check_id(s, m0.id, 3005, 2000));
        CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
        CHECK_OK(fb_close(s));
        if (alloc_count < at) {
            break; /* every allocation of the sequence has failed once */
        }
    }
    CHECK(failures > 10);
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(put_get_stat_roundtrip);
    RUN(many_puts_rotate_and_reopen);
    RUN(delete_tombstone_and_stats);
    RUN(lock_and_read_only);
    RUN(torn_tail_is_cut);
    RUN(corrupt_record_is_an_error_not_bytes);
    RUN(index_file_damaged_or_missing_is_rebuilt);
    RUN(bad_marker_and_newer_version);
    RUN(fault_injection_write_sync_reserve);
    RUN(compression_and_encryption);
    RUN(encrypted_records_are_cached_as_plaintext);
    RUN(get_direct_plain);
    RUN(get_direct_plain_cached_on_second_read);
    RUN(foreach_visits_live_images);
    RUN(put_real_image);
    RUN(sealed_block_truncated_by_hand);
    RUN(batch_durability_syncs_in_the_background);
    RUN(full_disk_tmpfs);
    RUN(out_of_memory_at_every_allocation);
    return TEST_REPORT();
}
