/* Unit tests of compaction and rekey on real files: ids and seed triples
 * resolve afterwards with the same bytes, deletions stay deleted, space is
 * reclaimed, and a crash (a snapshot of the directory) at any point of a
 * compaction loses nothing and resurrects nothing. */
#include "fb_test.h"
#include "store_helpers.h"

enum { N = 120, MAXLEN = 3000 };
static fb_meta m[N];
static int deleted[N];

/* Deletes image i and notes it for check_all. */
static int delete_image(fb_store *s, int i)
{
    int rc = th_delete_id(s, m[i].id);
    if (rc == 0) {
        deleted[i] = 1;
    }
    return rc;
}

/* A store of N images over several 16 KiB blocks with every image i where
 * i % 3 != 0 in the first half deleted. */
static fb_store *make_store(const char *dir, fb_options *o)
{
    fb_store *s = NULL;
    if (fb_open(dir, o, &s) != 0) {
        return NULL;
    }
    memset(deleted, 0, sizeof deleted);
    if (th_put_seq(s, m, N, 1000, MAXLEN) != 0) {
        return NULL;
    }
    for (int i = 0; i < N / 2; i++) {
        if (i % 3 != 0 && delete_image(s, i) != 0) {
            return NULL;
        }
    }
    return s;
}

/* Every image is readable by id and triple, every deleted one is gone. */
static int check_all(fb_store *s)
{
    for (int i = 0; i < N; i++) {
        fb_addr a;
        fb_addr_from_triple(m[i].block, m[i].offset, m[i].size, &a);
        int r1 = th_check_id(s, m[i].id, 1000 + i, MAXLEN);
        int r2 = th_check(s, &a, 1000 + i, MAXLEN);
        int want = deleted[i] ? FB_ENOTFOUND : 0;
        if (r1 != want || r2 != want) {
            fprintf(stderr, "  image %d: %s / %s, want %s (%s)\n", i, fb_err_name(r1),
                    fb_err_name(r2), fb_err_name(want), fb_last_error());
            return -1;
        }
    }
    fb_stats st;
    fb_get_stats(s, &st);
    uint64_t live = 0;
    for (int i = 0; i < N; i++) {
        live += !deleted[i];
    }
    if (st.live_records != live) {
        fprintf(stderr, "  live_records %llu, want %llu\n", (unsigned long long)st.live_records,
                (unsigned long long)live);
        return -1;
    }
    return 0;
}

/* Closes *s, opens dir again with o and checks every image: 0 or -1. */
static int reopen_and_check(fb_store **s, const char *dir, const fb_options *o)
{
    return th_reopen(s, dir, o) == 0 && check_all(*s) == 0 ? 0 : -1;
}

TEST(compact_moves_live_records_and_reclaims)
{
    char *dir = fb_test_tmpdir("compact");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    fb_stats before, after;
    CHECK_OK(fb_get_stats(s, &before));
    fb_compact_result r;
    CHECK_OK(fb_compact(s, -1, NULL, NULL, &r));
    CHECK(r.blocks_compacted >= 2);
    CHECK(r.records_moved >= 1);
    CHECK(r.bytes_reclaimed > 0);
    CHECK_OK(fb_get_stats(s, &after));
    CHECK(after.file_bytes < before.file_bytes);
    CHECK(after.dead_bytes < before.dead_bytes);
    CHECK_EQ(check_all(s), 0);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    /* The first block is gone from the disk. */
    char *b1 = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_file_size(b1), -1);
    free(b1);
    /* Nothing left to do at the same threshold. */
    CHECK_OK(fb_compact(s, 0.3, NULL, NULL, &r));
    CHECK_EQ(r.blocks_compacted, 0);
    CHECK_EQ(reopen_and_check(&s, dir, &o), 0);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    /* Deleting a moved image works and sticks. */
    CHECK_OK(delete_image(s, 0));
    CHECK_OK(fb_compact(s, 0.0, NULL, NULL, NULL));
    CHECK_EQ(reopen_and_check(&s, dir, &o), 0);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* Snapshots of the directory taken during a compaction stand for crashes
 * at those points: each must open with nothing lost or resurrected. */
typedef struct snap_ctx {
    const char *dir;
    int taken;
    char paths[64][4096];
} snap_ctx;

static int snapshot(void *ud, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    snap_ctx *c = ud;
    if (c->taken < 64) {
        snprintf(c->paths[c->taken], sizeof c->paths[0], "%s-snap%d", c->dir, c->taken);
        th_copy_store(c->dir, c->paths[c->taken]);
        c->taken++;
    }
    return 0;
}

TEST(crash_during_compaction_loses_nothing)
{
    char *dir = fb_test_tmpdir("compact-crash");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    static snap_ctx c;
    c.dir = dir;
    c.taken = 0;
    CHECK_OK(fb_compact(s, 0.0, snapshot, &c, NULL));
    CHECK(c.taken >= 10);
    CHECK_OK(fb_close(s));
    for (int i = 0; i < c.taken; i++) {
        fb_store *r = NULL;
        CHECK_OK(fb_open(c.paths[i], &o, &r));
        if (check_all(r) != 0) {
            fprintf(stderr, "  snapshot %d\n", i);
            CHECK(0);
        }
        CHECK_OK(fb_verify(r, th_print_problem, NULL, NULL, NULL));
        /* A second open after the journal was finished is the same. */
        CHECK_EQ(reopen_and_check(&r, c.paths[i], &o), 0);
        CHECK_OK(fb_close(r));
        fb_test_rmtree(c.paths[i]);
    }
    fb_test_rmtree(dir);
    free(dir);
}

static int cancel_after_3(void *ud, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    return ++*(int *)ud >= 3;
}

TEST(cancelled_compaction_is_consistent)
{
    char *dir = fb_test_tmpdir("compact-cancel");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    int calls = 0;
    CHECK_RC(fb_compact(s, 0.0, cancel_after_3, &calls, NULL), FB_ECLOSED);
    CHECK_EQ(check_all(s), 0);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_EQ(reopen_and_check(&s, dir, &o), 0);
    CHECK_OK(fb_compact(s, 0.0, NULL, NULL, NULL));
    CHECK_EQ(check_all(s), 0);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

TEST(rekey_retires_the_old_key)
{
    char *dir = fb_test_tmpdir("rekey");
    char k1[FB_KEY_LEN + 1], k2[FB_KEY_LEN + 1];
    CHECK_OK(fb_keygen(k1));
    CHECK_OK(fb_keygen(k2));
    const char *old_only[1] = {k1};
    const char *both[2] = {k2, k1};
    const char *new_only[1] = {k2};
    fb_options o = th_opts();
    o.max_block_size = 16384;
    o.keys = old_only;
    o.nkeys = 1;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    CHECK_OK(fb_close(s));
    o.keys = both;
    o.nkeys = 2;
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_EQ(check_all(s), 0);
    fb_compact_result r;
    CHECK_OK(fb_rekey(s, NULL, NULL, &r));
    CHECK(r.records_moved >= (uint64_t)(N / 2));
    CHECK_EQ(check_all(s), 0); /* the Fernet size is unchanged: triples resolve */
    CHECK_OK(fb_close(s));
    o.keys = new_only;
    o.nkeys = 1;
    o.cache_bytes = 0;
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_EQ(check_all(s), 0);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    /* Without keys, rekey is refused. */
    o.keys = NULL;
    o.nkeys = 0;
    CHECK_OK(fb_open(dir, &o, &s));
    CHECK_RC(fb_rekey(s, NULL, NULL, NULL), FB_EKEY);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* Plain records encrypted by rekey change their stored size; the seed
 * triple given out at upload still resolves, to the same bytes, after the
 * rekey, a compaction and a reopen, and metadata keeps naming it. */
TEST(rekey_keeps_seed_triples_of_plain_records)
{
    char *dir = fb_test_tmpdir("rekey-plain");
    char k1[FB_KEY_LEN + 1];
    CHECK_OK(fb_keygen(k1));
    const char *keys[1] = {k1};
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = make_store(dir, &o); /* no key: every record plain */
    CHECK(s != NULL);
    CHECK_OK(fb_close(s));
    o.keys = keys;
    o.nkeys = 1;
    CHECK_OK(fb_open(dir, &o, &s));
    fb_compact_result r;
    CHECK_OK(fb_rekey(s, NULL, NULL, &r));
    CHECK(r.records_moved >= (uint64_t)(N / 2));
    for (int pass = 0; pass < 3; pass++) {
        CHECK_EQ(check_all(s), 0);
        for (int i = 0; i < N; i++) {
            if (deleted[i]) {
                continue;
            }
            fb_addr t;
            fb_meta mt;
            CHECK_OK(fb_addr_from_triple(m[i].block, m[i].offset, m[i].size, &t));
            CHECK_OK(fb_stat(s, &t, &mt));
            CHECK_EQ(mt.flags & FB_META_FERNET, FB_META_FERNET); /* really re-encrypted */
            CHECK_STR_EQ(mt.id, m[i].id);
            CHECK_U64_EQ(mt.size, m[i].size); /* metadata names the same triple */
            CHECK_STR_EQ(mt.block, m[i].block);
            CHECK_U64_EQ(mt.offset, m[i].offset);
            /* Any other size is still not found. */
            t.size = m[i].size + 1;
            CHECK_RC(fb_stat(s, &t, &mt), FB_ENOTFOUND);
            t.size = 0;
            CHECK_RC(fb_stat(s, &t, &mt), FB_ENOTFOUND);
        }
        if (pass == 0) {
            /* Moved again by a compaction: the birth length goes along. */
            for (int i = N / 2; i < N; i += 2) {
                CHECK_OK(delete_image(s, i));
            }
            CHECK_OK(fb_compact(s, 0.0, NULL, NULL, &r));
            CHECK(r.blocks_compacted > 0);
        } else if (pass == 1) {
            CHECK_OK(fb_close(s));
            o.cache_bytes = 0;
            CHECK_OK(fb_open(dir, &o, &s));
        }
    }
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    /* A triple deletes what it names. */
    int live = 0;
    while (deleted[live]) {
        live++;
    }
    fb_addr t;
    CHECK_OK(fb_addr_from_triple(m[live].block, m[live].offset, m[live].size, &t));
    CHECK_OK(fb_delete(s, &t, NULL));
    deleted[live] = 1;
    CHECK_EQ(check_all(s), 0);
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* A block with no live record is removed without asking for free space or
 * writing a journal: on a full disk, deleting and compacting frees room. */
TEST(dead_block_compacts_without_free_space)
{
    char *dir = fb_test_tmpdir("compact-dead");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    for (int i = 0; i < N; i++) {
        if (!deleted[i] && strcmp(m[i].block, "block_00000001.fbk") == 0) {
            CHECK_OK(delete_image(s, i));
        }
    }
    /* The journal cannot be written (a directory stands in its way), as on
     * a full disk: a wholly dead block needs none. */
    char *jtmp = th_path(dir, "compact.journal.tmp");
    CHECK_EQ(mkdir(jtmp, 0755), 0);
    fb_compact_result r;
    CHECK_OK(fb_compact(s, 1.0, NULL, NULL, &r));
    CHECK_EQ(r.blocks_compacted, 1);
    CHECK_EQ(r.records_moved, 0);
    char *b1 = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_file_size(b1), -1);
    CHECK_EQ(check_all(s), 0);
    /* A block with live records needs its journal: refused cleanly. */
    CHECK_RC(fb_compact(s, 0.0, NULL, NULL, &r), FB_EIO);
    CHECK_EQ(check_all(s), 0);
    CHECK_EQ(rmdir(jtmp), 0);
    CHECK_OK(fb_compact(s, 0.0, NULL, NULL, &r));
    CHECK_EQ(check_all(s), 0);
    CHECK_EQ(reopen_and_check(&s, dir, &o), 0);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    free(b1);
    free(jtmp);
    fb_test_rmtree(dir);
    free(dir);
}

TEST(tombstone_kept_while_its_target_block_exists)
{
    char *dir = fb_test_tmpdir("compact-tomb");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    /* Block 1 full of images; one of them deleted (block 1 stays mostly
     * live); then a block whose images are nearly all deleted, holding
     * that tombstone. */
    fb_meta a[8], b[8];
    for (int i = 0; i < 8; i++) {
        CHECK_OK(th_put(s, 10 + i, 1800, &a[i]));
        CHECK_STR_EQ(a[i].block, "block_00000001.fbk");
    }
    fb_meta f;
    int guard = 0;
    do {
        CHECK_OK(th_put(s, 30, 1800, &f));
        CHECK(++guard < 100);
    } while (strcmp(f.block, "block_00000001.fbk") == 0);
    CHECK_OK(th_delete_id(s, a[2].id)); /* the tombstone goes to block 2 */
    CHECK_OK(th_put_seq(s, b, 8, 50, 1800));
    CHECK_STR_EQ(b[7].block, "block_00000002.fbk");
    for (int i = 0; i < 8; i++) {
        CHECK_OK(th_delete_id(s, b[i].id));
    }
    for (int i = 0; i < 20; i++) {
        CHECK_OK(th_put(s, 90 + i, 1800, NULL)); /* seal the tombstones' block */
    }
    fb_compact_result r;
    CHECK_OK(fb_compact(s, 0.5, NULL, NULL, &r));
    CHECK(r.blocks_compacted >= 1);
    CHECK_OK(th_reopen(&s, dir, &o));
    CHECK_RC(th_check_id(s, a[2].id, 12, 1800), FB_ENOTFOUND);
    for (int i = 0; i < 8; i++) {
        CHECK_RC(th_check_id(s, b[i].id, 50 + i, 1800), FB_ENOTFOUND);
        if (i != 2) {
            CHECK_OK(th_check_id(s, a[i].id, 10 + i, 1800));
        }
    }
    /* Once block 1 is compacted too, the tombstone may go. */
    CHECK_OK(fb_compact(s, 0.0, NULL, NULL, NULL));
    CHECK_OK(th_reopen(&s, dir, &o));
    CHECK_RC(th_check_id(s, a[2].id, 12, 1800), FB_ENOTFOUND);
    CHECK_OK(fb_verify(s, th_print_problem, NULL, NULL, NULL));
    CHECK_OK(fb_close(s));
    fb_test_rmtree(dir);
    free(dir);
}

/* Bit rot in a live record of a block due for compaction: that block stays
 * as it is (the damaged image is neither copied as sound nor dropped), every
 * other block is still compacted, and the error names the damage. */
TEST(damaged_record_leaves_its_block_and_compacts_the_rest)
{
    char *dir = fb_test_tmpdir("compact-rot");
    fb_options o = th_opts();
    o.max_block_size = 16384;
    o.cache_bytes = 0;
    fb_store *s = make_store(dir, &o);
    CHECK(s != NULL);
    /* The last live image of block 1, so that the ones before it move. */
    int rot = -1;
    for (int i = 0; i < N; i++) {
        if (!deleted[i] && strcmp(m[i].block, "block_00000001.fbk") == 0) {
            rot = i;
        }
    }
    CHECK(rot > 0);
    char *b1 = th_path(dir, "blocks/block_00000001.fbk");
    CHECK_EQ(th_flip_byte(b1, (long)m[rot].offset + (long)m[rot].size / 2), 0);
    fb_compact_result r;
    CHECK_RC(fb_compact(s, 0.3, NULL, NULL, &r), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "block_00000001.fbk") != NULL);
    CHECK(strstr(fb_last_error(), "the others were compacted") != NULL);
    CHECK(r.blocks_compacted >= 1);
    CHECK(th_file_size(b1) > 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < N; i++) {
            int want = i == rot ? FB_ECORRUPT : deleted[i] ? FB_ENOTFOUND : 0;
            CHECK_RC(th_check_id(s, m[i].id, 1000 + i, MAXLEN), want);
        }
        /* The same after a reopen: the moves made before the damage hold. */
        CHECK_OK(th_reopen(&s, dir, &o));
    }
    CHECK_RC(fb_compact(s, 0.3, NULL, NULL, &r), FB_ECORRUPT);
    CHECK_OK(fb_close(s));
    free(b1);
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(compact_moves_live_records_and_reclaims);
    RUN(crash_during_compaction_loses_nothing);
    RUN(cancelled_compaction_is_consistent);
    RUN(rekey_retires_the_old_key);
    RUN(rekey_keeps_seed_triples_of_plain_records);
    RUN(dead_block_compacts_without_free_space);
    RUN(tombstone_kept_while_its_target_block_exists);
    RUN(damaged_record_leaves_its_block_and_compacts_the_rest);
    return TEST_REPORT();
}
