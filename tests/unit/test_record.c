/* Unit tests of the on-disk formats (src/record.c) and the naming and
 * address parsers (src/addr.c): round trips, and every kind of damage
 * detected with FB_ECORRUPT or FB_EVERSION, never a read past the input. */
#include "fb_test.h"

#include "fastblocks.h"

#include "record.h"
#include "util/alloc.h"
#include "util/crc32c.h"
#include "util/endian.h"

static const uint8_t sid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

TEST(record_header_roundtrip_and_damage)
{
    fb_rec_hdr h = {.flags = FB__REC_ZSTD | FB__REC_FERNET,
                    .key = fb__key_make(3, 4096),
                    .cookie = 0xdeadbeef,
                    .width = 640,
                    .height = 480,
                    .data_crc = 0x12345678,
                    .stored_len = 1000,
                    .plain_len = 1200,
                    .created = 1700000000};
    uint8_t raw[64];
    fb__rec_hdr_encode(raw, &h);
    CHECK_MEM_EQ(raw, "FBRC", 4);
    fb_rec_hdr d;
    CHECK_OK(fb__rec_hdr_decode(raw, 64, 4032, 8192, "b", &d));
    CHECK_EQ(d.flags, h.flags);
    CHECK_U64_EQ(d.key, h.key);
    CHECK_EQ(d.cookie, h.cookie);
    CHECK_EQ(d.width, 640);
    CHECK_U64_EQ(d.stored_len, 1000);
    CHECK_U64_EQ(d.plain_len, 1200);
    CHECK_EQ(d.created, 1700000000);
    /* The deleted bit may be set in place without breaking the CRC. */
    fb__put_le32(raw + 4, fb__get_le32(raw + 4) | FB__REC_DELETED);
    CHECK_OK(fb__rec_hdr_decode(raw, 64, 4032, 8192, "b", &d));
    CHECK(d.flags & FB__REC_DELETED);
    /* Any other flipped bit is detected. */
    for (int bit = 0; bit < 64 * 8; bit++) {
        uint8_t bad[64];
        memcpy(bad, raw, 64);
        if (bit / 8 == 5 && bit % 8 == 0) {
            continue; /* the deleted bit (0x100) */
        }
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK_RC(fb__rec_hdr_decode(bad, 64, 4032, 8192, "b", &d), FB_ECORRUPT);
    }
    /* Record past the end of the file; truncated header. */
    CHECK_RC(fb__rec_hdr_decode(raw, 64, 7000, 8000, "block_00000003.fbk", &d), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "block_00000003.fbk at offset 7000") != NULL);
    CHECK_RC(fb__rec_hdr_decode(raw, 63, 0, 8192, "b", &d), FB_ECORRUPT);
    /* Impossible length with a valid CRC. */
    h.stored_len = (uint64_t)1 << 40;
    fb__rec_hdr_encode(raw, &h);
    CHECK_RC(fb__rec_hdr_decode(raw, 64, 64, UINT64_MAX, "b", &d), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "impossible record length") != NULL);
    /* Unknown flag with a valid CRC. */
    h.stored_len = 10;
    h.flags = 0x40;
    fb__rec_hdr_encode(raw, &h);
    CHECK_RC(fb__rec_hdr_decode(raw, 64, 64, 8192, "b", &d), FB_ECORRUPT);
    /* A tombstone must carry 16 bytes. */
    h.flags = FB__REC_TOMBSTONE;
    fb__rec_hdr_encode(raw, &h);
    CHECK_RC(fb__rec_hdr_decode(raw, 64, 64, 8192, "b", &d), FB_ECORRUPT);
    h.stored_len = 16;
    fb__rec_hdr_encode(raw, &h);
    CHECK_OK(fb__rec_hdr_decode(raw, 64, 64, 8192, "b", &d));
}

/* Bytes 56..59: the birth stored length (0 in records of earlier writers,
 * which read as "same as the stored length"). */
TEST(record_header_birth_length)
{
    fb_rec_hdr h = {.flags = FB__REC_FERNET | FB__REC_MOVED,
                    .key = fb__key_make(1, 128),
                    .stored_len = 1088,
                    .plain_len = 1000,
                    .birth_len = 1000};
    uint8_t raw[64];
    fb__rec_hdr_encode(raw, &h);
    CHECK_EQ(fb__get_le32(raw + 56), 1000);
    fb_rec_hdr d;
    CHECK_OK(fb__rec_hdr_decode(raw, 64, 4032, 8192, "b", &d));
    CHECK_EQ(d.birth_len, 1000);
    CHECK_U64_EQ(fb__rec_birth_len(&d), 1000);
    h.birth_len = 0;
    fb__rec_hdr_encode(raw, &h);
    CHECK_OK(fb__rec_hdr_decode(raw, 64, 4032, 8192, "b", &d));
    CHECK_U64_EQ(fb__rec_birth_len(&d), 1088);
    h.birth_len = FB__MAX_STORED + 1;
    fb__rec_hdr_encode(raw, &h);
    CHECK_RC(fb__rec_hdr_decode(raw, 64, 4032, 8192, "b", &d), FB_ECORRUPT);
}

/* Which headers a resynchronising scan accepts at header offset `at`. */
TEST(record_plausible_at_its_place)
{
    fb_rec_hdr h = {.key = fb__key_make(5, 1000 + 64)};
    CHECK(fb__rec_plausible_at(&h, 5, 1000));  /* its own birth address */
    CHECK(!fb__rec_plausible_at(&h, 5, 2000)); /* an original elsewhere */
    CHECK(!fb__rec_plausible_at(&h, 6, 1000));
    h.flags = FB__REC_MOVED;
    CHECK(fb__rec_plausible_at(&h, 6, 64));   /* a copy of an older image */
    CHECK(fb__rec_plausible_at(&h, 5, 2000)); /* moved within its block */
    CHECK(!fb__rec_plausible_at(&h, 5, 1000));
    CHECK(!fb__rec_plausible_at(&h, 4, 64)); /* names a later address */
    h.flags = FB__REC_TOMBSTONE;
    CHECK(fb__rec_plausible_at(&h, 9, 64));
    CHECK(!fb__rec_plausible_at(&h, 5, 64));
    h.flags = FB__REC_PAD;
    h.key = 0;
    CHECK(!fb__rec_plausible_at(&h, 5, 64));
}

TEST(data_crc)
{
    uint8_t data[100];
    memset(data, 7, sizeof data);
    fb_rec_hdr h = {.stored_len = 100, .data_crc = fb__crc32c(0, data, 100)};
    CHECK_OK(fb__rec_check_data(&h, data, 64, "b"));
    data[50] ^= 1;
    CHECK_RC(fb__rec_check_data(&h, data, 81920, "block_00000003.fbk"), FB_ECORRUPT);
    CHECK_STR_EQ(fb_last_error(), "crc mismatch in block_00000003.fbk at offset 81920");
    h.flags = FB__REC_PAD;
    CHECK_OK(fb__rec_check_data(&h, data, 64, "b"));
}

TEST(marker_and_block_header)
{
    uint8_t raw[64], id[16];
    fb__marker_encode(raw, sid, 123);
    CHECK_OK(fb__marker_decode(raw, 64, id));
    CHECK_MEM_EQ(id, sid, 16);
    CHECK_RC(fb__marker_decode(raw, 63, id), FB_ECORRUPT);
    raw[8] = 9; /* newer version, CRC fixed up */
    fb__put_le32(raw + 60, fb__crc32c(0, raw, 60));
    CHECK_RC(fb__marker_decode(raw, 64, id), FB_EVERSION);
    fb__block_hdr_encode(raw, 42, sid, 5);
    CHECK_OK(fb__block_hdr_decode(raw, 64, 42, sid, "x"));
    CHECK_RC(fb__block_hdr_decode(raw, 64, 41, sid, "x"), FB_ECORRUPT);
    uint8_t other[16] = {0};
    CHECK_RC(fb__block_hdr_decode(raw, 64, 42, other, "x"), FB_ECORRUPT);
    CHECK(strstr(fb_last_error(), "another store") != NULL);
    raw[0] = 'X';
    CHECK_RC(fb__block_hdr_decode(raw, 64, 42, sid, "x"), FB_ECORRUPT);
}

TEST(index_file_roundtrip_and_damage)
{
    fb_idx_entry e[3] = {
        {fb__key_make(2, 128), 128, 100, 1, 0, 11},
        {fb__key_make(2, 296), 296, 16, 2, FB__REC_TOMBSTONE, 22},
        {fb__key_make(1, 128), 376, 1000, 3, FB__REC_MOVED | FB__REC_ZSTD, 33},
    };
    size_t len;
    CHECK_OK(fb__idx_file_size(3, &len));
    CHECK_EQ(len, 64 + 3 * 32);
    uint8_t *raw = malloc(len);
    fb__idx_encode(raw, 2, sid, 1376, e, 3);
    fb_idx_entry *d = NULL;
    uint64_t n = 0, end = 0;
    CHECK_OK(fb__idx_decode(raw, len, 2, sid, 2000, "i", &d, &n, &end));
    CHECK_U64_EQ(n, 3);
    CHECK_U64_EQ(end, 1376);
    CHECK_U64_EQ(d[2].key, e[2].key);
    CHECK_EQ(d[1].flags, FB__REC_TOMBSTONE);
    fb__free(d);
    /* Block shorter than the index says: truncated by hand. */
    CHECK_RC(fb__idx_decode(raw, len, 2, sid, 1000, "i", &d, &n, &end), FB_ECORRUPT);
    /* Any flipped bit, any truncation. */
    for (size_t bit = 0; bit < len * 8; bit += 7) {
        raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = fb__idx_decode(raw, len, 2, sid, 2000, "i", &d, &n, &end);
        CHECK(rc == FB_ECORRUPT || rc == FB_EVERSION);
        raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t cut = 0; cut < len; cut += 5) {
        CHECK_RC(fb__idx_decode(raw, cut, 2, sid, 2000, "i", &d, &n, &end), FB_ECORRUPT);
    }
    /* Entries out of order, with valid CRCs. */
    fb_idx_entry swapped[2] = {e[1], e[0]};
    fb__idx_encode(raw, 2, sid, 1376, swapped, 2);
    CHECK_RC(fb__idx_decode(raw, 64 + 64, 2, sid, 2000, "i", &d, &n, &end), FB_ECORRUPT);
    free(raw);
}

TEST(journal)
{
    uint8_t raw[32];
    uint32_t b = 0;
    fb__journal_encode(raw, 17);
    CHECK_OK(fb__journal_decode(raw, 32, &b));
    CHECK_EQ(b, 17);
    raw[12] = 18;
    CHECK_RC(fb__journal_decode(raw, 32, &b), FB_ECORRUPT);
    CHECK_RC(fb__journal_decode(raw, 31, &b), FB_ECORRUPT);
}

TEST(block_names)
{
    char name[32];
    uint32_t n = 0;
    fb__block_name(7, name);
    CHECK_STR_EQ(name, "block_00000007.fbk");
    fb__block_name(123456789, name);
    CHECK_STR_EQ(name, "block_123456789.fbk"); /* out of range anyway: > 2^24 */
    fb__block_name(0, name);
    CHECK_STR_EQ(name, "block_00000000.fbk");
    fb__idx_name(99999999, name);
    CHECK_STR_EQ(name, "block_99999999.idx");
    fb__idx_name(UINT32_MAX, name);
    CHECK_STR_EQ(name, "block_4294967295.idx");
    CHECK(fb__block_name_parse("block_00000010.fbk", ".fbk", &n));
    CHECK_EQ(n, 10);
    CHECK(!fb__block_name_parse("block_0000010.fbk", ".fbk", &n));
    CHECK(!fb__block_name_parse("block_000000010.fbk", ".fbk", &n));
    CHECK(!fb__block_name_parse("block_00000010.fbk/", ".fbk", &n));
    CHECK(!fb__block_name_parse("../block_00000010.fbk", ".fbk", &n));
    CHECK(!fb__block_name_parse("block_0000001a.fbk", ".fbk", &n));
    CHECK(!fb__block_name_parse("block_1.bin", ".fbk", &n));
    CHECK(fb__block_name_parse("block_00000010.idx", ".idx", &n));
}

TEST(addresses)
{
    fb_addr a;
    CHECK_OK(fb_addr_from_id("0000010000000080deadbeef", &a));
    CHECK(a.by_id);
    CHECK_U64_EQ(a.key, fb__key_make(1, 128));
    CHECK_EQ(a.cookie, 0xdeadbeef);
    char id[FB_ID_LEN + 1];
    fb__id_format(fb__key_make(1, 128), 0xdeadbeef, id);
    CHECK_STR_EQ(id, "0000010000000080deadbeef");
    fb__id_format(UINT64_MAX, 0x0000000f, id);
    CHECK_STR_EQ(id, "ffffffffffffffff0000000f");
    CHECK_RC(fb_addr_from_id("0000010000000080DEADBEEF", &a), FB_EINVAL);
    CHECK_RC(fb_addr_from_id("0000010000000080deadbee", &a), FB_EINVAL);
    CHECK_RC(fb_addr_from_id("0000010000000080deadbeef0", &a), FB_EINVAL);
    CHECK_OK(fb_addr_from_triple("block_00000001.fbk", 128, 99, &a));
    CHECK(!a.by_id);
    CHECK_U64_EQ(a.size, 99);
    CHECK_RC(fb_addr_from_triple("block_1.bin", 128, 99, &a), FB_EINVAL);
    CHECK_RC(fb_addr_from_triple("../../etc/passwd", 0, 1, &a), FB_EINVAL);
    CHECK_RC(fb_addr_from_triple("block_00000001.fbk", 1ull << 40, 1, &a), FB_ENOTFOUND);
    CHECK_RC(fb_addr_from_triple("block_99999999.fbk", 128, 1, &a), FB_ENOTFOUND);
    CHECK_OK(fb_addr_parse("block_00000002.fbk/4096/77", &a));
    CHECK_U64_EQ(a.key, fb__key_make(2, 4096));
    CHECK_U64_EQ(a.size, 77);
    CHECK_OK(fb_addr_parse("0000010000000080deadbeef", &a));
    CHECK_RC(fb_addr_parse("block_00000002.fbk/+4096/77", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("block_00000002.fbk/-1/77", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("block_00000002.fbk/4096", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("block_00000002.fbk/1/2/3", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("block_00000002.fbk/99999999999999999999999/1", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("block_00000002.fbk//1", &a), FB_EINVAL);
    CHECK_RC(fb_addr_parse("", &a), FB_EINVAL);
}

TEST(meta_json)
{
    fb_meta m;
    memset(&m, 0, sizeof m);
    strcpy(m.id, "0000010000000080deadbeef");
    strcpy(m.block, "block_00000001.fbk");
    m.offset = 128;
    m.size = 10;
    m.bytes = 10;
    m.width = 3;
    m.height = 4;
    m.created = 5;
    char buf[FB_META_JSON_MAX];
    int n = fb_meta_json(&m, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_STR_EQ(buf, "{\"id\":\"0000010000000080deadbeef\",\"block\":\"block_00000001.fbk\","
                      "\"offset\":128,\"size\":10,\"width\":3,\"height\":4,\"bytes\":10,"
                      "\"created\":5,\"content_type\":\"image/webp\"}");
    m.offset = m.size = m.bytes = UINT64_MAX;
    m.width = m.height = UINT32_MAX;
    m.created = INT64_MIN;
    CHECK(fb_meta_json(&m, buf, sizeof buf) > 0); /* 256 bytes always suffice */
    CHECK_RC(fb_meta_json(&m, buf, 20), FB_ETOOBIG);
}

int main(void)
{
    RUN(record_header_roundtrip_and_damage);
    RUN(record_header_birth_length);
    RUN(record_plausible_at_its_place);
    RUN(data_crc);
    RUN(marker_and_block_header);
    RUN(index_file_roundtrip_and_damage);
    RUN(journal);
    RUN(block_names);
    RUN(addresses);
    RUN(meta_json);
    return TEST_REPORT();
}
