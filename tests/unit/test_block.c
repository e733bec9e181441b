/* Unit tests of the block backend (src/block.c) on real files: create,
 * list in numeric order, positional writes and reads, short reads, index
 * files written atomically, removal, read-only refusal, the fault hook. */
#include "fb_test.h"

#include <errno.h>

#include "block.h"
#include "fastblocks.h"
#include "util/alloc.h"

static int fail_writes(void *ud, enum fb_io_op op, uint32_t block)
{
    (void)ud;
    return op == FB__IO_WRITE && block == 2 ? EIO : 0;
}

TEST(backend_local_roundtrip)
{
    char *dir = fb_test_tmpdir("block");
    fb_backend *b = NULL;
    CHECK_OK(fb__backend_local(dir, 1, 1, &b));
    uint32_t order[] = {10, 2, 100, 9};
    for (size_t i = 0; i < 4; i++) {
        fb_bfile *f = NULL;
        CHECK_OK(fb__backend_create(b, order[i], &f));
        CHECK_EQ(fb__bfile_number(f), order[i]);
        fb__bfile_close(f);
    }
    fb_bfile *dup = NULL;
    CHECK(fb__backend_create(b, 10, &dup) != 0); /* never reuses a name */
    /* Names that are not exactly block_NNNNNNNN.fbk are not blocks. */
    char junk[4200];
    snprintf(junk, sizeof junk, "%s/blocks/block_1.fbk", dir);
    FILE *jf = fopen(junk, "w");
    fclose(jf);
    uint32_t *nums = NULL;
    size_t n = 0;
    CHECK_OK(fb__backend_list(b, &nums, &n));
    CHECK_EQ(n, 4);
    CHECK_EQ(nums[0], 2);
    CHECK_EQ(nums[1], 9);
    CHECK_EQ(nums[2], 10);
    CHECK_EQ(nums[3], 100);
    fb__free(nums);

    fb_bfile *f = NULL;
    CHECK_OK(fb__backend_open(b, 9, &f));
    CHECK_STR_EQ(fb__bfile_name(f), "block_00000009.fbk");
    const char *a = "hello ", *c = "world";
    struct iovec iov[2] = {{(void *)a, 6}, {(void *)c, 5}};
    CHECK_OK(fb__bfile_writev(f, iov, 2, 100));
    CHECK_OK(fb__bfile_reserve(f, 0, 1 << 20));
    uint64_t size = 0;
    CHECK_OK(fb__bfile_size(f, &size));
    CHECK_U64_EQ(size, 111); /* reserving space keeps the size */
    char got[12] = {0};
    CHECK_OK(fb__bfile_read(f, got, 11, 100));
    CHECK_STR_EQ(got, "hello world");
    CHECK_RC(fb__bfile_read(f, got, 12, 100), FB_ECORRUPT); /* short read */
    CHECK(strstr(fb_last_error(), "short read in block_00000009.fbk at offset 111") != NULL);
    CHECK_OK(fb__bfile_sync(f));
    CHECK_OK(fb__bfile_truncate(f, 50));
    CHECK_OK(fb__bfile_size(f, &size));
    CHECK_U64_EQ(size, 50);
    CHECK(fb__bfile_fd(f) >= 0);
    fb__bfile_close(f);

    /* Index files. */
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_RC(fb__backend_read_index(b, 9, 1000, &data, &len), FB_ENOTFOUND);
    CHECK_OK(fb__backend_write_index(b, 9, "index!", 6));
    CHECK_OK(fb__backend_read_index(b, 9, 1000, &data, &len));
    CHECK_EQ(len, 6);
    CHECK_MEM_EQ(data, "index!", 6);
    fb__free(data);
    CHECK_RC(fb__backend_read_index(b, 9, 5, &data, &len), FB_ECORRUPT);
    uint64_t isz = 0;
    CHECK_OK(fb__backend_index_size(b, 9, &isz));
    CHECK_U64_EQ(isz, 6);

    /* The fault hook fails exactly what it names. */
    fb__block_set_fault(fail_writes, NULL);
    CHECK_OK(fb__backend_open(b, 2, &f));
    CHECK_RC(fb__bfile_write(f, "x", 1, 0), FB_EIO);
    fb__bfile_close(f);
    CHECK_OK(fb__backend_open(b, 9, &f));
    CHECK_OK(fb__bfile_write(f, "x", 1, 0));
    fb__bfile_close(f);
    fb__block_set_fault(NULL, NULL);

    CHECK_OK(fb__backend_remove(b, 9));
    CHECK_RC(fb__backend_open(b, 9, &f), FB_ENOTFOUND);
    CHECK_RC(fb__backend_index_size(b, 9, &isz), FB_ENOTFOUND);
    fb__backend_free(b);

    /* Read-only: every change is refused. */
    CHECK_OK(fb__backend_local(dir, 0, 0, &b));
    CHECK_RC(fb__backend_create(b, 500, &f), FB_EREADONLY);
    CHECK_RC(fb__backend_remove(b, 2), FB_EREADONLY);
    CHECK_RC(fb__backend_write_index(b, 2, "x", 1), FB_EREADONLY);
    fb__backend_free(b);
    char *missing = malloc(4200);
    snprintf(missing, 4200, "%s/nope", dir);
    CHECK_RC(fb__backend_local(missing, 0, 0, &b), FB_ENOSTORE);
    free(missing);
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(backend_local_roundtrip);
    return TEST_REPORT();
}
