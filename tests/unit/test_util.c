/* Unit tests of src/util: crc32c, base64url, endian helpers, fb_buf, errors,
 * fb__grow_array. */
#include "fb_test.h"

#include <stdint.h>

#include "util/alloc.h"
#include "util/base64url.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/endian.h"
#include "util/error.h"

TEST(crc32c_known_values)
{
    CHECK_U64_EQ(fb__crc32c(0, "123456789", 9), 0xe3069283u);
    CHECK_U64_EQ(fb__crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0};
    CHECK_U64_EQ(fb__crc32c(0, zeros, sizeof zeros), 0x8a9136aau); /* RFC 3720 B.4 */
}

TEST(crc32c_incremental_equals_whole)
{
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 131 + 7);
    }
    uint32_t whole = fb__crc32c(0, data, sizeof data);
    for (size_t cut = 0; cut <= sizeof data; cut += 37) {
        uint32_t part = fb__crc32c(fb__crc32c(0, data, cut), data + cut, sizeof data - cut);
        CHECK_U64_EQ(part, whole);
    }
}

/* Bit-at-a-time reference, independent of both fast paths. */
static uint32_t crc32c_reference(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        }
    }
    return ~c;
}

TEST(crc32c_long_inputs_match_reference)
{
    /* Lengths around the three-lane rounds of the hardware path. */
    size_t sizes[] = {6143, 6144, 6145, 12288, 12295, 65536 + 13, 200000};
    uint8_t *data = malloc(200000);
    CHECK(data != NULL);
    uint32_t x = 12345;
    for (size_t i = 0; i < 200000; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t want = crc32c_reference(data, sizes[i]);
        uint32_t got = fb__crc32c(0, data, sizes[i]);
        if (got != want) {
            free(data);
        }
        CHECK_U64_EQ(got, want);
        /* Unaligned start and split in the middle of a round. */
        CHECK_U64_EQ(fb__crc32c(fb__crc32c(0, data + 1, 777), data + 778, sizes[i] - 778),
                     crc32c_reference(data + 1, sizes[i] - 1));
    }
    free(data);
}

TEST(base64url_round_trip)
{
    uint8_t in[64], out[64];
    char text[100];
    for (size_t n = 0; n < sizeof in; n++) {
        for (size_t i = 0; i < n; i++) {
            in[i] = (uint8_t)(i * 37 + n);
        }
        fb__base64url_encode(in, n, text);
        CHECK_EQ(strlen(text), fb__base64url_encoded_len(n));
        CHECK_EQ(fb__base64url_decode(text, strlen(text), out, sizeof out), (long)n);
        CHECK_MEM_EQ(in, out, n);
    }
}

TEST(base64url_known_and_rejected)
{
    char text[16];
    fb__base64url_encode((const uint8_t *)"\xfb\xff", 2, text);
    CHECK_STR_EQ(text, "-_8=");
    uint8_t out[16];
    CHECK_EQ(fb__base64url_decode("-_8", 3, out, sizeof out), 2);   /* unpadded */
    CHECK_EQ(fb__base64url_decode("+/8=", 4, out, sizeof out), -1); /* standard alphabet */
    CHECK_EQ(fb__base64url_decode("%%%%", 4, out, sizeof out), -1);
    CHECK_EQ(fb__base64url_decode("A", 1, out, sizeof out), -1);
    CHECK_EQ(fb__base64url_decode("-_9=", 4, out, sizeof out), -1); /* leftover bits */
    CHECK_EQ(fb__base64url_decode("AAAAAAAA", 8, out, 5), -1);      /* does not fit */
    CHECK_EQ(fb__base64url_decode("A=AA", 4, out, sizeof out), -1); /* padding inside */
}

TEST(endian_helpers)
{
    uint8_t b[8];
    fb__put_le64(b, 0x0102030405060708ull);
    CHECK_EQ(b[0], 8);
    CHECK_EQ(b[7], 1);
    CHECK_U64_EQ(fb__get_le64(b), 0x0102030405060708ull);
    fb__put_le32(b, 0xdeadbeef);
    CHECK_U64_EQ(fb__get_le32(b), 0xdeadbeef);
    fb__put_le16(b, 0xbeef);
    CHECK_EQ(fb__get_le16(b), 0xbeef);
    fb__put_be64(b, 0x0102030405060708ull);
    CHECK_EQ(b[0], 1);
    CHECK_U64_EQ(fb__get_be64(b), 0x0102030405060708ull);
}

TEST(buf_refcount)
{
    fb_buf *b = fb__buf_new(5);
    CHECK(b != NULL);
    memcpy(fb__buf_mut(b), "hello", 5);
    fb_buf *c = fb_buf_retain(b);
    fb_buf_release(b);
    CHECK_EQ(fb_buf_len(c), 5);
    CHECK_MEM_EQ(fb_buf_data(c), "hello", 5);
    fb__buf_set_len(c, 2);
    CHECK_EQ(fb_buf_len(c), 2);
    fb_buf_release(c);
    fb_buf_release(NULL);
}

TEST(error_table)
{
    CHECK_STR_EQ(fb_strerror(FB_ENOTFOUND), "image not found");
    CHECK_STR_EQ(fb_err_name(FB_ECORRUPT), "ECORRUPT");
    CHECK_STR_EQ(fb_strerror(12345), "unknown error");
    CHECK_EQ(fb__error(FB_EIO, "block %d", 3), FB_EIO);
    CHECK_STR_EQ(fb_last_error(), "block 3");
    fb__error_clear();
    CHECK_STR_EQ(fb_last_error(), "");
    CHECK_STR_EQ(fb_version(), FB_VERSION_STRING);
}

/* An allocator that passes through to libc, counts reallocs, remembers the
 * size of the last one and can be told to fail them. */
static int reallocs, fail_reallocs;
static size_t last_realloc_size;

static void *spy_realloc(void *p, size_t n)
{
    reallocs++;
    last_realloc_size = n;
    return fail_reallocs ? NULL : realloc(p, n);
}

static void spy_install(int fail)
{
    fb_allocator a = {malloc, spy_realloc, free};
    reallocs = 0;
    last_realloc_size = 0;
    fail_reallocs = fail;
    fb_set_allocator(&a);
}

TEST(grow_array_capacities)
{
    uint32_t *v = NULL;
    size_t cap = 0;
    spy_install(0);
    /* The first allocation takes `first` elements even if fewer are needed. */
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 1, 8), 0);
    CHECK(v != NULL);
    CHECK_EQ(cap, 8);
    CHECK_EQ(last_realloc_size, 8 * sizeof *v);
    for (uint32_t i = 0; i < 8; i++) {
        v[i] = i * 7 + 1;
    }
    /* Room enough: nothing is allocated and nothing moves. */
    uint32_t *before = v;
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 8, 8), 0);
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 0, 8), 0);
    CHECK(v == before);
    CHECK_EQ(cap, 8);
    CHECK_EQ(reallocs, 1);
    /* One more doubles; the contents are kept. */
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 9, 8), 0);
    CHECK_EQ(cap, 16);
    CHECK_EQ(reallocs, 2);
    for (uint32_t i = 0; i < 8; i++) {
        CHECK_EQ(v[i], i * 7 + 1);
    }
    /* A need beyond twice the capacity is taken exactly... */
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 100, 8), 0);
    CHECK_EQ(cap, 100);
    CHECK_EQ(last_realloc_size, 100 * sizeof *v);
    /* ...and then doubling goes on from there. */
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 101, 8), 0);
    CHECK_EQ(cap, 200);
    CHECK_EQ(v[7], 50);
    fb_set_allocator(NULL);
    fb__free(v);

    /* first == 0: the first allocation is exactly the need. */
    char *s = NULL;
    size_t scap = 0;
    CHECK_EQ(FB__GROW_ARRAY(&s, &scap, 3, 0), 0);
    CHECK_EQ(scap, 3);
    fb__free(s);
}

TEST(grow_array_overflow_and_failure_keep_the_old_array)
{
    uint64_t *v = NULL;
    size_t cap = 0;
    CHECK_EQ(FB__GROW_ARRAY(&v, &cap, 4, 4), 0);
    v[3] = 0x1234567890abcdefu;
    uint64_t *before = v;

    /* need * size overflows: refused before any allocation. */
    spy_install(0);
    fb__error_clear();
    int rc = FB__GROW_ARRAY(&v, &cap, SIZE_MAX / sizeof *v + 1, 4);
    int calls = reallocs;
    fb_set_allocator(NULL);
    CHECK_EQ(rc, FB_ENOMEM);
    CHECK_EQ(calls, 0);
    CHECK(strstr(fb_last_error(), "elements of 8 bytes") != NULL);
    CHECK(v == before);
    CHECK_EQ(cap, 4);
    CHECK_U64_EQ(v[3], 0x1234567890abcdefu);

    /* The allocation fails: same promise. */
    spy_install(1);
    fb__error_clear();
    rc = FB__GROW_ARRAY(&v, &cap, 5, 4);
    calls = reallocs;
    size_t asked = last_realloc_size;
    fb_set_allocator(NULL);
    CHECK_EQ(rc, FB_ENOMEM);
    CHECK_EQ(calls, 1);
    CHECK_EQ(asked, 8 * sizeof *v);
    CHECK_STR_EQ(fb_last_error(), "out of memory growing an array to 8 elements of 8 bytes");
    CHECK(v == before);
    CHECK_EQ(cap, 4);
    CHECK_U64_EQ(v[3], 0x1234567890abcdefu);

    /* Doubling past the largest array is capped there (the failing
     * allocator only records what was asked for, so the fake capacities
     * below never reach memory). */
    size_t max = SIZE_MAX / sizeof *v, big = max / 2 + 1;
    spy_install(1);
    rc = FB__GROW_ARRAY(&v, &big, big + 1, 4);
    size_t asked_doubling = last_realloc_size;
    size_t none = 0;
    int rc_first = FB__GROW_ARRAY(&v, &none, 1, SIZE_MAX);
    size_t asked_first = last_realloc_size;
    char *bytes = (char *)v;
    size_t bcap = SIZE_MAX / 2 + 1;
    int rc_bytes = FB__GROW_ARRAY(&bytes, &bcap, bcap + 1, 0);
    size_t asked_bytes = last_realloc_size;
    fb_set_allocator(NULL);
    CHECK_EQ(rc, FB_ENOMEM);
    CHECK_U64_EQ(asked_doubling, max * sizeof *v);
    CHECK_EQ(big, max / 2 + 1);
    CHECK_EQ(rc_first, FB_ENOMEM);
    CHECK_U64_EQ(asked_first, max * sizeof *v);
    CHECK_EQ(none, 0);
    CHECK_EQ(rc_bytes, FB_ENOMEM);
    CHECK_U64_EQ(asked_bytes, SIZE_MAX);
    CHECK(v == before);
    CHECK_U64_EQ(v[3], 0x1234567890abcdefu);
    fb__free(v);
}

int main(void)
{
    RUN(crc32c_known_values);
    RUN(crc32c_incremental_equals_whole);
    RUN(crc32c_long_inputs_match_reference);
    RUN(base64url_round_trip);
    RUN(base64url_known_and_rejected);
    RUN(endian_helpers);
    RUN(buf_refcount);
    RUN(error_table);
    RUN(grow_array_capacities);
    RUN(grow_array_overflow_and_failure_keep_the_old_array);
    return TEST_REPORT();
}
