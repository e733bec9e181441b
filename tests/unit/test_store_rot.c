/*
 * Bit rot in the middle of a block, active or sealed: one flipped byte in a
 * record's stored bytes or in its header. Recovery must keep every record
 * after the damage (only a genuine torn tail is cut), a read of the damaged
 * record is a precise error, never bytes, and fb_verify reports exactly one
 * problem, with the block and the offset of the damaged header.
 */
#include "fb_test.h"
#include "store_helpers.h"

enum { N = 5, MAXLEN = 3000, SEED = 500 };

/* Log lines of a store, kept for checks. */
typedef struct logbook {
    char text[16384];
    size_t len;
} logbook;

static void log_line(void *ud, int level, const char *msg)
{
    logbook *lb = ud;
    (void)level;
    int n = snprintf(lb->text + lb->len, sizeof lb->text - lb->len, "%s\n", msg);
    if (n > 0 && (size_t)n < sizeof lb->text - lb->len) {
        lb->len += (size_t)n;
    }
}

typedef struct problems {
    int n;
    fb_problem p[8];
} problems;

static void on_problem(void *ud, const fb_problem *p)
{
    problems *ps = ud;
    fprintf(stderr, "  problem: %s at %llu: %s\n", p->block, (unsigned long long)p->offset,
            p->detail);
    if (ps->n < 8) {
        ps->p[ps->n] = *p;
    }
    ps->n++;
}

/* Puts N records; with `sealed`, block 1 is then sealed by more puts into
 * block 2. Returns the store directory. */
static char *make_store(fb_meta m[N], int sealed)
{
    char *dir = fb_test_tmpdir("rot");
    fb_options o = th_opts();
    o.max_block_size = 4 * 4096; /* N records of <= 3000 bytes fit */
    fb_store *s = NULL;
    if (fb_open(dir, &o, &s) != 0) {
        return dir;
    }
    for (int i = 0; i < N; i++) {
        th_put(s, SEED + (uint64_t)i, MAXLEN, &m[i]);
    }
    for (int i = 0; sealed && i < 8; i++) {
        fb_meta x;
        th_put(s, 900 + (uint64_t)i, MAXLEN, &x);
    }
    fb_close(s);
    return dir;
}

static fb_store *reopen(const char *dir, logbook *lb)
{
    fb_options o = th_opts();
    o.max_block_size = 4 * 4096;
    o.cache_bytes = 0;
    o.log = log_line;
    o.log_userdata = lb;
    fb_store *s = NULL;
    return fb_open(dir, &o, &s) == 0 ? s : NULL;
}

/* Records other than `damaged` read back byte-identical by id and triple;
 * returns how many do. */
static int intact(fb_store *s, const fb_meta m[N], int damaged)
{
    int ok = 0;
    for (int i = 0; i < N; i++) {
        fb_addr a, t;
        if (i == damaged || fb_addr_from_id(m[i].id, &a) != 0 ||
            fb_addr_from_triple(m[i].block, m[i].offset, m[i].size, &t) != 0) {
            continue;
        }
        ok += th_check(s, &a, SEED + (uint64_t)i, MAXLEN) == 0 &&
              th_check(s, &t, SEED + (uint64_t)i, MAXLEN) == 0;
    }
    return ok;
}

/* 1 if text names the damaged record: "in block_00000001.fbk at offset AT". */
static int names_offset(const char *text, uint64_t at)
{
    char want[128];
    snprintf(want, sizeof want, "in block_00000001.fbk at offset %llu", (unsigned long long)at);
    return strstr(text, want) != NULL;
}

/* The one problem verify must find: block 1, at the damaged header. */
#define CHECK_ONE_PROBLEM(s, hdr_at)                                                               \
    do {                                                                                           \
        problems ps_ = {0};                                                                        \
        fb_verify_result vr_;                                                                      \
        CHECK_RC(fb_verify(s, on_problem, NULL, &ps_, &vr_), FB_ECORRUPT);                         \
        CHECK_EQ(ps_.n, 1);                                                                        \
        CHECK_U64_EQ(vr_.problems, 1);                                                             \
        CHECK_STR_EQ(ps_.p[0].block, "block_00000001.fbk");                                        \
        CHECK_U64_EQ(ps_.p[0].offset, (hdr_at));                                                   \
        CHECK_EQ(ps_.p[0].error, FB_ECORRUPT);                                                     \
    } while (0)

TEST(active_block_payload_rot_keeps_later_records)
{
    fb_meta m[N];
    char *dir = make_store(m, 0);
    CHECK_STR_EQ(m[N - 1].block, "block_00000001.fbk"); /* all in the active block */
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    long size = th_file_size(path);
    uint64_t hdr_at = m[1].offset - 64;
    CHECK_EQ(th_flip_byte(path, (long)m[1].offset + (long)m[1].size / 2), 0);
    logbook lb = {.len = 0};
    fb_store *s = reopen(dir, &lb);
    CHECK(s != NULL);
    CHECK_EQ(th_file_size(path), size); /* nothing cut */
    CHECK_EQ(intact(s, m, 1), N - 1);
    fb_addr a;
    CHECK_OK(fb_addr_from_id(m[1].id, &a));
    fb_buf *b = NULL;
    CHECK_RC(fb_get(s, &a, &b, NULL), FB_ECORRUPT);
    CHECK(b == NULL);
    char want[128];
    snprintf(want, sizeof want, "crc mismatch in block_00000001.fbk at offset %llu",
             (unsigned long long)hdr_at);
    CHECK(strstr(fb_last_error(), want) != NULL);
    CHECK(strstr(lb.text, want) != NULL); /* reported at open */
    CHECK(strstr(lb.text, "torn tail") == NULL);
    CHECK_ONE_PROBLEM(s, hdr_at);
    /* Appends go on after the last record, and everything survives a
     * second reopen. */
    fb_meta x;
    CHECK_OK(th_put(s, 77, MAXLEN, &x));
    CHECK_OK(fb_close(s));
    s = reopen(dir, &lb);
    CHECK(s != NULL);
    CHECK_EQ(intact(s, m, 1), N - 1);
    CHECK_OK(th_check_id(s, x.id, 77, MAXLEN));
    CHECK_ONE_PROBLEM(s, hdr_at);
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

/* Bytes of a record header to damage: magic, flags, key, cookie, stored
 * length, plain length, the reserved/birth-length field, the header CRC. */
static const int header_bytes[] = {0, 5, 9, 17, 33, 41, 57, 61};

TEST(active_block_header_rot_keeps_later_records)
{
    for (size_t k = 0; k < sizeof header_bytes / sizeof header_bytes[0]; k++) {
        fb_meta m[N];
        char *dir = make_store(m, 0);
        char *path = th_path(dir, "blocks/block_00000001.fbk");
        long size = th_file_size(path);
        uint64_t hdr_at = m[1].offset - 64;
        CHECK_EQ(th_flip_byte(path, (long)hdr_at + header_bytes[k]), 0);
        logbook lb = {.len = 0};
        fb_store *s = reopen(dir, &lb);
        CHECK(s != NULL);
        CHECK_EQ(th_file_size(path), size);
        CHECK_EQ(intact(s, m, 1), N - 1);
        /* Its key is unknown now: not found, and the damage is logged with
         * the block and offset. */
        CHECK_RC(th_get_id(s, m[1].id), FB_ENOTFOUND);
        CHECK(names_offset(lb.text, hdr_at));
        char want[128];
        snprintf(want, sizeof want, "next valid record at offset %llu",
                 (unsigned long long)m[2].offset - 64);
        CHECK(strstr(lb.text, want) != NULL);
        CHECK_ONE_PROBLEM(s, hdr_at);
        CHECK_OK(fb_close(s));
        free(path);
        fb_test_rmtree(dir);
        free(dir);
    }
}

TEST(torn_tail_is_still_cut)
{
    /* The last record's stored bytes half written, nothing valid after:
     * a torn write, cut off; also garbage after the last record. */
    fb_meta m[N];
    char *dir = make_store(m, 0);
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_flip_byte(path, (long)m[N - 1].offset + 1), 0);
    logbook lb = {.len = 0};
    fb_store *s = reopen(dir, &lb);
    CHECK(s != NULL);
    CHECK_EQ(th_file_size(path), (long)m[N - 1].offset - 64);
    CHECK(strstr(lb.text, "torn tail") != NULL);
    CHECK_EQ(intact(s, m, N - 1), N - 1);
    CHECK_OK(fb_verify(s, on_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    long end = th_file_size(path);
    uint8_t junk[200];
    th_fill(junk, sizeof junk, 3);
    memcpy(junk, "FBRC", 4); /* looks like a header, is not one */
    CHECK_EQ(th_poke(path, end, junk, sizeof junk), 0);
    s = reopen(dir, &lb);
    CHECK(s != NULL);
    CHECK_EQ(th_file_size(path), end);
    CHECK_EQ(intact(s, m, N - 1), N - 1);
    CHECK_OK(fb_verify(s, on_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(sealed_block_rot_is_one_problem)
{
    for (int header = 0; header <= 1; header++) {
        fb_meta m[N];
        char *dir = make_store(m, 1);
        char *path = th_path(dir, "blocks/block_00000001.fbk");
        char *idx = th_path(dir, "blocks/block_00000001.idx");
        CHECK(th_file_size(idx) > 64); /* block 1 is sealed */
        uint64_t hdr_at = m[1].offset - 64;
        CHECK_EQ(th_flip_byte(path, header ? (long)hdr_at + 9 : (long)m[1].offset + 7), 0);
        logbook lb = {.len = 0};
        fb_store *s = reopen(dir, &lb);
        CHECK(s != NULL);
        CHECK_EQ(intact(s, m, 1), N - 1);
        /* The index file still lists it: reading it is a precise error. */
        CHECK_RC(th_get_id(s, m[1].id), FB_ECORRUPT);
        CHECK(names_offset(fb_last_error(), hdr_at));
        CHECK_ONE_PROBLEM(s, hdr_at);
        CHECK_OK(fb_close(s));
        /* Without its index file the block is scanned: the same records
         * survive, and still one problem. */
        CHECK_EQ(unlink(idx), 0);
        s = reopen(dir, &lb);
        CHECK(s != NULL);
        CHECK_EQ(intact(s, m, 1), N - 1);
        CHECK_RC(th_get_id(s, m[1].id), header ? FB_ENOTFOUND : FB_ECORRUPT);
        CHECK_ONE_PROBLEM(s, hdr_at);
        CHECK_OK(fb_close(s));
        free(idx);
        free(path);
        fb_test_rmtree(dir);
        free(dir);
    }
}

TEST(rot_in_two_neighbours)
{
    /* Payload of record 2 and header of record 3: two problems, records
     * 1, 4 and 5 kept. */
    fb_meta m[N];
    char *dir = make_store(m, 0);
    char *path = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_flip_byte(path, (long)m[1].offset + 1), 0);
    CHECK_EQ(th_flip_byte(path, (long)m[2].offset - 64 + 20), 0);
    logbook lb = {.len = 0};
    fb_store *s = reopen(dir, &lb);
    CHECK(s != NULL);
    CHECK_EQ(intact(s, m, -1), N - 2);
    problems ps = {0};
    CHECK_RC(fb_verify(s, on_problem, NULL, &ps, NULL), FB_ECORRUPT);
    CHECK_EQ(ps.n, 2);
    CHECK_U64_EQ(ps.p[0].offset, m[1].offset - 64);
    CHECK_U64_EQ(ps.p[1].offset, m[2].offset - 64);
    CHECK_OK(fb_close(s));
    free(path);
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(active_block_payload_rot_keeps_later_records);
    RUN(active_block_header_rot_keeps_later_records);
    RUN(torn_tail_is_still_cut);
    RUN(sealed_block_rot_is_one_problem);
    RUN(rot_in_two_neighbours);
    return TEST_REPORT();
}
