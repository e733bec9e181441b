/*
 * Unit tests of src/util/crc32c: every implementation this CPU can run
 * against the table implementation, which is in turn checked against a
 * bit-at-a-time reference written from the definition, on random buffers of
 * every length 0..2048 and many longer ones, at every start alignment
 * 0..63, started from arbitrary registers, plus the published check values.
 * The implementations differ most at their block boundaries (16/32-byte
 * alignment heads, 128- and 248-byte rounds, 6 KiB crc32 lane rounds), so
 * the lengths cluster around those.
 */
#include "fb_test.h"

#include "util/crc32c.h"

#define BUF_LEN (1u << 20)

/* Bit-at-a-time CRC-32C straight from the definition: shares no code or
 * table with src/util/crc32c.c. */
static uint32_t reference(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        }
    }
    return ~c;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* BUF_LEN + 64 random bytes, 64-byte aligned so that offset a is an
 * alignment of exactly a mod 64. */
static uint8_t *random_buffer(void)
{
    uint8_t *b = aligned_alloc(64, BUF_LEN + 128);
    if (b != NULL) {
        for (size_t i = 0; i < BUF_LEN + 128; i++) {
            b[i] = (uint8_t)(rnd() >> 24);
        }
    }
    return b;
}

TEST(crc32c_check_values)
{
    uint8_t zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    for (int impl = 0; impl < FB__CRC_NIMPL; impl++) {
        if (!fb__crc32c_supported(impl)) {
            continue;
        }
        CHECK_U64_EQ(fb__crc32c_with(impl, 0, "123456789", 9), 0xe3069283u);
        CHECK_U64_EQ(fb__crc32c_with(impl, 0, "", 0), 0);
        /* RFC 3720 B.4 */
        CHECK_U64_EQ(fb__crc32c_with(impl, 0, zeros, sizeof zeros), 0x8a9136aau);
        CHECK_U64_EQ(fb__crc32c_with(impl, 0, ones, sizeof ones), 0x62a8ab43u);
    }
    CHECK_U64_EQ(fb__crc32c(0, "123456789", 9), 0xe3069283u);
    CHECK_U64_EQ(reference(0, (const uint8_t *)"123456789", 9), 0xe3069283u);
}

TEST(crc32c_table_and_hardware_are_present)
{
    CHECK(fb__crc32c_supported(FB__CRC_TABLE));
    CHECK(!fb__crc32c_supported(FB__CRC_NIMPL));
    CHECK(!fb__crc32c_supported(-1));
    CHECK_STR_EQ(fb__crc32c_name(FB__CRC_TABLE), "table");
    CHECK_STR_EQ(fb__crc32c_name(FB__CRC_NIMPL), "?");
    int best = fb__crc32c_best();
    CHECK(fb__crc32c_supported(best));
    for (int impl = best + 1; impl < FB__CRC_NIMPL; impl++) {
        CHECK(!fb__crc32c_supported(impl)); /* the best is the fastest there is */
    }
#if defined(__x86_64__)
    /* Every x86-64 CPU this project targets has SSE4.2; a silent fall back
     * to the table would hide a broken dispatch. */
    CHECK(best >= FB__CRC_SSE42);
#endif
    fprintf(stderr, "     best implementation here: %s\n", fb__crc32c_name(best));
}

/* Every length 0..2048 at every alignment 0..63, from a register that is
 * not the usual zero: every implementation against the table. */
TEST(crc32c_short_lengths_all_alignments)
{
    uint8_t *buf = random_buffer();
    CHECK(buf != NULL);
    int bad = 0;
    for (size_t len = 0; len <= 2048 && !bad; len++) {
        for (size_t align = 0; align < 64 && !bad; align++) {
            uint32_t start = (uint32_t)rnd();
            /* The table is the trusted baseline, itself checked against
             * the definition at one alignment per length (the bitwise
             * reference is too slow for all of them under ASan). */
            uint32_t want = fb__crc32c_with(FB__CRC_TABLE, start, buf + align, len);
            if (align == len % 64 && reference(start, buf + align, len) != want) {
                fprintf(stderr, "table: length %zu alignment %zu differs\n", len, align);
                bad = 1;
            }
            for (int impl = 0; impl < FB__CRC_NIMPL; impl++) {
                if (fb__crc32c_supported(impl) &&
                    fb__crc32c_with(impl, start, buf + align, len) != want) {
                    fprintf(stderr, "%s: length %zu alignment %zu differs\n", fb__crc32c_name(impl),
                            len, align);
                    bad = 1;
                }
            }
            if (fb__crc32c(start, buf + align, len) != want) {
                bad = 1;
            }
        }
    }
    free(buf);
    CHECK(!bad);
}

/* Long lengths around the round sizes of each implementation, and random
 * ones up to 256 KiB, and 1 MiB, each at every alignment 0..63. */
TEST(crc32c_long_lengths_all_alignments)
{
    uint8_t *buf = random_buffer();
    CHECK(buf != NULL);
    size_t lens[48];
    size_t nlens = 0;
    const size_t edges[] = {4096, 6144, 12288, 61440, 65536, 131072};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        lens[nlens++] = edges[i] - 1;
        lens[nlens++] = edges[i];
        lens[nlens++] = edges[i] + 1;
        lens[nlens++] = edges[i] + 15;
    }
    lens[nlens++] = BUF_LEN - 1;
    lens[nlens++] = BUF_LEN;
    while (nlens < sizeof lens / sizeof lens[0]) {
        lens[nlens++] = 2049 + (size_t)(rnd() % (256 * 1024));
    }
    int bad = 0;
    for (size_t li = 0; li < nlens && !bad; li++) {
        size_t len = lens[li];
        /* The reference is slow: compute it once per length, at one
         * alignment, and compare the others to a trusted implementation
         * that the short test covered at every alignment. */
        uint32_t want = reference(0, buf, len);
        for (size_t align = 0; align < 64 && !bad; align++) {
            if (align > 0) {
                want = fb__crc32c_with(FB__CRC_TABLE, 0, buf + align, len);
            }
            for (int impl = 0; impl < FB__CRC_NIMPL; impl++) {
                if (fb__crc32c_supported(impl) &&
                    fb__crc32c_with(impl, 0, buf + align, len) != want) {
                    fprintf(stderr, "%s: length %zu alignment %zu differs\n", fb__crc32c_name(impl),
                            len, align);
                    bad = 1;
                }
            }
        }
    }
    free(buf);
    CHECK(!bad);
}

/* Splitting a buffer anywhere and chaining the register gives the CRC of
 * the whole, whichever implementations compute the two parts. */
TEST(crc32c_chaining_across_implementations)
{
    uint8_t *buf = random_buffer();
    CHECK(buf != NULL);
    size_t len = 100000;
    uint32_t whole = reference(0, buf + 3, len);
    int bad = 0;
    for (int i = 0; i < 200 && !bad; i++) {
        size_t cut = (size_t)(rnd() % (len + 1));
        int a = (int)(rnd() % FB__CRC_NIMPL), b = (int)(rnd() % FB__CRC_NIMPL);
        uint32_t c = fb__crc32c_with(a, 0, buf + 3, cut);
        c = fb__crc32c_with(b, c, buf + 3 + cut, len - cut);
        if (c != whole) {
            fprintf(stderr, "cut %zu (%s then %s) differs\n", cut, fb__crc32c_name(a),
                    fb__crc32c_name(b));
            bad = 1;
        }
    }
    free(buf);
    CHECK(!bad);
}

/* A single flipped bit anywhere in a long buffer changes every
 * implementation's CRC (a fold that dropped a block would not notice). */
TEST(crc32c_detects_single_bit_flips)
{
    uint8_t *buf = random_buffer();
    CHECK(buf != NULL);
    size_t len = 65536 + 77;
    int bad = 0;
    for (int impl = 0; impl < FB__CRC_NIMPL && !bad; impl++) {
        if (!fb__crc32c_supported(impl)) {
            continue;
        }
        uint32_t clean = fb__crc32c_with(impl, 0, buf, len);
        for (size_t pos = 0; pos < len && !bad; pos += 61) {
            buf[pos] ^= (uint8_t)(1u << (pos % 8));
            if (fb__crc32c_with(impl, 0, buf, len) == clean) {
                fprintf(stderr, "%s: flip at %zu not detected\n", fb__crc32c_name(impl), pos);
                bad = 1;
            }
            buf[pos] ^= (uint8_t)(1u << (pos % 8));
        }
    }
    free(buf);
    CHECK(!bad);
}

int main(void)
{
    RUN(crc32c_check_values);
    RUN(crc32c_table_and_hardware_are_present);
    RUN(crc32c_short_lengths_all_alignments);
    RUN(crc32c_long_lengths_all_alignments);
    RUN(crc32c_chaining_across_implementations);
    RUN(crc32c_detects_single_bit_flips);
    return TEST_REPORT();
}
