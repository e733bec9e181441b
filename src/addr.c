/*
 * addr - how callers name images (public ids, seed triples, "ID" or
 * "BLOCK/OFFSET/SIZE" text), the canonical metadata JSON, and the block
 * file naming pattern. Strict parsers: a name that does not match the exact
 * pattern never reaches the file system.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "record.h"
#include "util/error.h"
#include "fastblocks.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1; /* upper case is refused: one spelling per id */
}

int fb_addr_from_id(const char *id, fb_addr *out)
{
    if (id == NULL || out == NULL) {
        return fb__error(FB_EINVAL, "id and out must not be NULL");
    }
    uint64_t v[2] = {0, 0};
    for (size_t i = 0; i < FB_ID_LEN; i++) {
        int h = hex_value(id[i]);
        if (h < 0) {
            return fb__error(FB_EINVAL, "invalid id: want %d lowercase hex digits", FB_ID_LEN);
        }
        v[i >= 16] = (v[i >= 16] << 4) | (uint64_t)h;
    }
    if (id[FB_ID_LEN] != '\0') {
        return fb__error(FB_EINVAL, "invalid id: longer than %d characters", FB_ID_LEN);
    }
    memset(out, 0, sizeof *out);
    out->key = v[0];
    out->cookie = (uint32_t)v[1];
    out->by_id = 1;
    return 0;
}

_Static_assert(FB_ID_LEN == 24, "ids are a 64-bit key and a 32-bit cookie in hex");

/* Writes the n lowest digits of v in base (10 or 16, lower case), zero
 * padded. Every reply formats an id and a block name: snprintf was 2% of a
 * cache-hit server's CPU. */
static void put_digits(char *out, uint64_t v, int n, unsigned base)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = "0123456789abcdef"[v % base];
        v /= base;
    }
}

void fb__id_format(uint64_t key, uint32_t cookie, char out[25])
{
    put_digits(out, key, 16, 16);
    put_digits(out + 16, cookie, 8, 16);
    out[FB_ID_LEN] = '\0';
}

/* "block_" + the number, at least 8 digits + suffix (4 characters). */
static void block_file_name(uint32_t number, const char *suffix, char out[32])
{
    int digits = 8;
    for (uint32_t v = number / 100000000u; v != 0; v /= 10) {
        digits++;
    }
    memcpy(out, "block_", 6);
    put_digits(out + 6, number, digits, 10);
    memcpy(out + 6 + digits, suffix, 5);
}

void fb__block_name(uint32_t number, char out[32])
{
    block_file_name(number, ".fbk", out);
}

void fb__idx_name(uint32_t number, char out[32])
{
    block_file_name(number, ".idx", out);
}

int fb__block_name_parse(const char *name, const char *suffix, uint32_t *number)
{
    if (name == NULL || strncmp(name, "block_", 6) != 0) {
        return 0;
    }
    uint32_t v = 0;
    for (int i = 6; i < 14; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
        v = v * 10 + (uint32_t)(name[i] - '0');
    }
    if (strcmp(name + 14, suffix) != 0) {
        return 0;
    }
    *number = v;
    return 1;
}

int fb_addr_from_triple(const char *block, uint64_t offset, uint64_t size, fb_addr *out)
{
    uint32_t number;
    if (out == NULL || !fb__block_name_parse(block, ".fbk", &number)) {
        return fb__error(FB_EINVAL, "invalid block name: want block_NNNNNNNN.fbk");
    }
    memset(out, 0, sizeof *out);
    /* Numbers and offsets no key can hold name no image; a key built from
     * them would alias another one. */
    if (number == 0 || number > FB__MAX_BLOCK_NUM || offset > FB__MAX_OFFSET) {
        return fb__error(FB_ENOTFOUND, "no image at %s offset %" PRIu64, block, offset);
    }
    out->key = fb__key_make(number, offset);
    out->size = size;
    out->by_id = 0;
    return 0;
}

/* Parses a decimal number without sign or leading '+', overflow-checked. */
static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int fb_addr_parse(const char *text, fb_addr *out)
{
    if (text == NULL || out == NULL) {
        return fb__error(FB_EINVAL, "text and out must not be NULL");
    }
    const char *s1 = strchr(text, '/');
    if (s1 == NULL) {
        return fb_addr_from_id(text, out);
    }
    const char *s2 = strchr(s1 + 1, '/');
    if (s2 == NULL || strchr(s2 + 1, '/') != NULL) {
        return fb__error(FB_EINVAL, "invalid address: want ID or BLOCK/OFFSET/SIZE");
    }
    char block[FB_BLOCK_NAME_MAX];
    size_t blen = (size_t)(s1 - text);
    if (blen >= sizeof block) {
        return fb__error(FB_EINVAL, "invalid block name: want block_NNNNNNNN.fbk");
    }
    memcpy(block, text, blen);
    block[blen] = '\0';
    uint64_t offset, size;
    if (parse_u64(s1 + 1, (size_t)(s2 - s1 - 1), &offset) != 0 ||
        parse_u64(s2 + 1, strlen(s2 + 1), &size) != 0) {
        return fb__error(FB_EINVAL, "invalid address: offset and size must be decimal numbers");
    }
    return fb_addr_from_triple(block, offset, size, out);
}

int fb_meta_json(const fb_meta *m, char *buf, size_t cap)
{
    if (m == NULL || buf == NULL) {
        return fb__error(FB_EINVAL, "meta and buf must not be NULL");
    }
    /* Every field is a number or text this library produced from a fixed
     * alphabet (hex id, checked block name), so nothing needs escaping. */
    int n =
        snprintf(buf, cap,
                 "{\"id\":\"%s\",\"block\":\"%s\",\"offset\":%" PRIu64 ",\"size\":%" PRIu64
                 ",\"width\":%" PRIu32 ",\"height\":%" PRIu32 ",\"bytes\":%" PRIu64
                 ",\"created\":%" PRId64 ",\"content_type\":\"image/webp\"}",
                 m->id, m->block, m->offset, m->size, m->width, m->height, m->bytes, m->created);
    if (n < 0 || (size_t)n >= cap) {
        return fb__error(FB_ETOOBIG, "metadata JSON needs %d bytes, buffer has %zu", n, cap);
    }
    return n;
}
