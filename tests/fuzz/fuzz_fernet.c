/*
 * Fuzz target: Fernet token parsing and decryption (codec_fernet).
 *
 * The first input byte picks what the rest is:
 *   0  a binary token, decrypted with the ring [A, B] into a buffer of the
 *      exact plaintext bound; a token that verifies must re-encrypt to
 *      itself under the key that verified it (same timestamp and IV)
 *   1  a base64url text token, decrypted at a time and TTL taken from the
 *      next 9 bytes (the spec's decrypt_at_time path)
 *   2  a key, checked (fb_key_check), and a keyring built from it
 *   3  a plaintext, encrypted then decrypted; one flipped bit (chosen by the
 *      input) must make it fail
 * Nothing may crash, write outside its buffer, or accept a modified token.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastblocks.h"
#include "codec_fernet.h"
#include "util/base64url.h"
#include "util/endian.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 65536

/* The seed corpus's tokens were made with these two keys. */
static const char *const KEYS[2] = {"cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=",
                                    "Wx1Y0p5vNn2yQWQy3lXz6gq3hJ1m8B4U7cR0sT9eKkM="};

static fb_fernet *ring(int first)
{
    static fb_fernet *rings[2];
    if (rings[first] == NULL) {
        const char *keys[2] = {KEYS[first], KEYS[1 - first]};
        if (fb__fernet_new(keys, 2, &rings[first]) != 0) {
            abort();
        }
    }
    return rings[first];
}

static void binary_token(const uint8_t *t, size_t n)
{
    size_t cap = n > FB__FERNET_OVERHEAD ? n - FB__FERNET_OVERHEAD : 0;
    uint8_t *out = malloc(cap + 1);
    size_t plen = 0, ki = 0;
    int rc = fb__fernet_decrypt(ring(0), t, n, out, cap, &plen, &ki);
    if (rc == 0) {
        /* Only possible for a genuine token: it must rebuild exactly. */
        uint64_t ts = fb__get_be64(t + 1);
        uint8_t *again = malloc(n);
        size_t alen = 0;
        if (plen >= cap ||
            fb__fernet_encrypt_iv(ring((int)ki), out, plen, ts, t + 9, again, n, &alen) != 0 ||
            alen != n || memcmp(again, t, n) != 0) {
            abort();
        }
        free(again);
    } else if (rc != FB_EINTEGRITY) {
        abort();
    }
    free(out);
}

static void text_token(const uint8_t *d, size_t n)
{
    if (n < 9) {
        return;
    }
    uint64_t now = fb__get_be64(d);
    int64_t ttl = (int8_t)d[8];
    uint8_t *tok = malloc(n);
    long tlen = fb__base64url_decode((const char *)d + 9, n - 9, tok, n);
    if (tlen >= 0) {
        uint8_t *out = malloc((size_t)tlen + 1);
        size_t plen = 0;
        int rc =
            fb__fernet_decrypt_at(ring(1), tok, (size_t)tlen, ttl, now, out, (size_t)tlen, &plen);
        if (rc != 0 && rc != FB_EINTEGRITY) {
            abort();
        }
        free(out);
    }
    free(tok);
}

static void key_text(const uint8_t *d, size_t n)
{
    char *key = malloc(n + 1);
    memcpy(key, d, n);
    key[n] = '\0';
    int rc = fb_key_check(key);
    const char *keys[1] = {key};
    fb_fernet *f = NULL;
    int rc2 = fb__fernet_new(keys, 1, &f);
    if ((rc != 0 && rc != FB_EKEY) || rc2 != rc || (rc == 0) != (f != NULL)) {
        abort();
    }
    fb__fernet_free(f);
    free(key);
}

static void round_trip(const uint8_t *d, size_t n)
{
    uint8_t iv[16] = {0};
    size_t cap = fb__fernet_token_len(n), tlen = 0, plen = 0;
    uint8_t *tok = malloc(cap);
    uint8_t *out = malloc(n + 1);
    if (fb__fernet_encrypt_iv(ring(0), d, n, 12345, iv, tok, cap, &tlen) != 0 || tlen != cap ||
        fb__fernet_decrypt(ring(1), tok, tlen, out, n, &plen, NULL) != 0 || plen != n ||
        memcmp(out, d, n) != 0) {
        abort();
    }
    size_t bit = n > 0 ? (d[0] | (size_t)d[n - 1] << 8) % (tlen * 8) : 0;
    tok[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (fb__fernet_decrypt(ring(0), tok, tlen, out, n, &plen, NULL) != FB_EINTEGRITY) {
        abort();
    }
    free(tok);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT) {
        return 0;
    }
    switch (data[0] % 4) {
    case 0:
        binary_token(data + 1, size - 1);
        break;
    case 1:
        text_token(data + 1, size - 1);
        break;
    case 2:
        key_text(data + 1, size - 1);
        break;
    default:
        round_trip(data + 1, size - 1);
        break;
    }
    return 0;
}
