/*
 * The golden version-1 stores in tests/data/ (written from the byte tables
 * of docs/FORMAT.md by tests/data/make-golden-store.py) must open and read
 * exactly as golden-v1.tsv says, in every later version: a clean store, one
 * with a truncated active block, one with a rotten record, one with a
 * garbage index file.
 */
#include "fb_test.h"
#include "store_helpers.h"

typedef struct row {
    char store[64], name[8], id[32], block[32], state[16];
    unsigned long long offset, size;
    unsigned gen, width, height;
} row;

static row rows[64];
static int nrows;

static void golden_payload(uint8_t *p, size_t n, unsigned gen)
{
    for (size_t j = 0; j < n; j++) {
        p[j] = (uint8_t)((gen * 31 + j * 7 + (j >> 5)) & 0xff);
    }
}

static const char *data_dir(void)
{
    static char path[4096];
    const char *src = getenv("FB_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/data", src ? src : ".");
    return path;
}

static int load_rows(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/golden-v1.tsv", data_dir());
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof line, f) != NULL && nrows < 64) {
        row *r = &rows[nrows];
        if (line[0] == '#') {
            continue;
        }
        if (sscanf(line, "%63s %7s %31s %31s %llu %llu %u %u %u %15s", r->store, r->name, r->id,
                   r->block, &r->offset, &r->size, &r->gen, &r->width, &r->height,
                   r->state) == 10) {
            nrows++;
        }
    }
    fclose(f);
    return nrows > 0 ? 0 : -1;
}

static void print_problem(void *ud, const fb_problem *p)
{
    (*(int *)ud)++;
    fprintf(stderr, "  problem (expected for the corrupt store): %s at %llu: %s\n", p->block,
            (unsigned long long)p->offset, p->detail);
}

static void check_store(const char *name, int read_only_original)
{
    char src[4200];
    snprintf(src, sizeof src, "%s/%s", data_dir(), name);
    char *tmp = fb_test_tmpdir("golden");
    const char *dir = src;
    if (!read_only_original) {
        CHECK_EQ(th_copy_store(src, tmp), 0);
        dir = tmp;
    }
    fb_options o = th_opts();
    o.read_only = read_only_original;
    o.cache_bytes = 0;
    fb_store *s = NULL;
    CHECK_OK(fb_open(dir, &o, &s));
    int corrupt = 0;
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        if (strcmp(r->store, name) != 0) {
            continue;
        }
        fb_addr by_id, by_triple;
        CHECK_OK(fb_addr_from_id(r->id, &by_id));
        CHECK_OK(fb_addr_from_triple(r->block, r->offset, r->size, &by_triple));
        const fb_addr *addrs[2] = {&by_id, &by_triple};
        for (int k = 0; k < 2; k++) {
            fb_buf *b = NULL;
            fb_meta m;
            int rc = fb_get(s, addrs[k], &b, &m);
            if (strcmp(r->state, "live") == 0) {
                CHECK_OK(rc);
                uint8_t *want = malloc(r->size);
                golden_payload(want, r->size, r->gen);
                CHECK_EQ(fb_buf_len(b), r->size);
                CHECK_MEM_EQ(fb_buf_data(b), want, r->size);
                free(want);
                CHECK_STR_EQ(m.id, r->id);
                CHECK_EQ(m.width, r->width);
                CHECK_EQ(m.height, r->height);
                CHECK_EQ(m.created, 1767225600);
                fb_buf_release(b);
            } else if (strcmp(r->state, "corrupt") == 0) {
                CHECK_RC(rc, FB_ECORRUPT);
                corrupt = 1;
            } else {
                CHECK_RC(rc, FB_ENOTFOUND);
            }
        }
    }
    int problems = 0;
    int rc = fb_verify(s, print_problem, NULL, &problems, NULL);
    CHECK_RC(rc, corrupt ? FB_ECORRUPT : 0);
    CHECK_EQ(problems, corrupt ? 1 : 0);
    if (!read_only_original) {
        /* New writes go on where the golden data ends. */
        fb_meta m;
        CHECK_OK(fb_put_webp(s, "new", 3, 1, 1, &m));
        CHECK_STR_EQ(m.block, "block_00000002.fbk");
    }
    CHECK_OK(fb_close(s));
    fb_test_rmtree(tmp);
    free(tmp);
}

TEST(golden_v1_stores)
{
    CHECK_EQ(load_rows(), 0);
    check_store("store-v1", 0);
    check_store("store-v1-truncated", 0);
    check_store("store-v1-corrupt", 0);
    check_store("store-v1-badidx", 0);
}

TEST(golden_v1_read_only_changes_nothing)
{
    CHECK_EQ(load_rows() == 0 || nrows > 0, 1);
    char b2[4200];
    snprintf(b2, sizeof b2, "%s/store-v1-truncated/blocks/block_00000002.fbk", data_dir());
    long before = th_file_size(b2);
    check_store("store-v1", 1);
    check_store("store-v1-truncated", 1);
    CHECK_EQ(th_file_size(b2), before); /* a read-only open never cuts */
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/store-v1/fastblocks.lock", data_dir());
    CHECK_EQ(th_file_size(lock), -1);
}

int main(void)
{
    RUN(golden_v1_stores);
    RUN(golden_v1_read_only_changes_nothing);
    return TEST_REPORT();
}
