/*
 * codec_fernet - Fernet tokens in binary form and the keyring that makes
 * them (see codec_fernet.h), plus the public fb_keygen and fb_key_check.
 *
 * Owns the only use of OpenSSL. The format is the Fernet spec's, byte for
 * byte, so Python's cryptography reads what we store (after base64url) and
 * we read what it wrote (after base64url-decoding). Verification order is
 * the spec's: structure, then the HMAC in constant time, and only then any
 * AES work, so a tampered record never reaches the decryptor (no padding
 * oracle).
 *
 * A keyring is immutable once built, so any number of threads may share it.
 * Per key it keeps an HMAC context already keyed (duplicated per token), and
 * the AES cipher is fetched once: OpenSSL 3 fetches by name under a lock,
 * which would otherwise happen for every record. Key bytes are wiped when
 * the keyring is freed and never appear in an error detail or a log line.
 */
#include "codec_fernet.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "util/alloc.h"
#include "util/base64url.h"
#include "util/endian.h"
#include "util/error.h"

#define VERSION_BYTE 0x80
#define TS_OFF 1
#define IV_OFF 9
#define CT_OFF 25
#define IV_LEN 16
#define BLOCK 16
#define HMAC_LEN 32
#define MIN_TOKEN (FB__FERNET_OVERHEAD + BLOCK) /* an empty message still has one block */
#define MAX_CLOCK_SKEW 60                       /* seconds, as Python's cryptography */

#define KEY_HINT                                                                                   \
    "a Fernet key is 44 characters of url-safe base64 encoding 32 random bytes; generate one "     \
    "with `fastblocks keygen` or BlockManager.generate_encryption_key()"

/* The one detail of every verification failure: which check failed is not
 * told (the spec asks for one opaque error). */
#define INTEGRITY_DETAIL                                                                           \
    "encrypted record failed verification: wrong key, or the record is tampered with or truncated"

typedef struct fernet_key {
    uint8_t sign[16];
    uint8_t enc[16];
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed with sign; only ever duplicated */
} fernet_key;

struct fb_fernet {
    EVP_CIPHER *aes;
    size_t n;
    fernet_key keys[];
};

/* Translates a libcrypto failure once, here, and leaves its thread-local
 * error queue empty for whoever calls OpenSSL next. */
static int crypto_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[160] = "no detail";
    if (e != 0) {
        ERR_error_string_n(e, msg, sizeof msg);
    }
    ERR_clear_error();
    return fb__error(FB_EIO, "OpenSSL %s failed: %s", what, msg);
}

/*
 * Decodes one Fernet key into 32 bytes. pos/count only shape the detail
 * ("key 2 of 3"), which never contains the key itself.
 */
static int parse_key(const char *key, size_t pos, size_t count, uint8_t out[32])
{
    char which[64] = "encryption key";
    if (count > 1) {
        snprintf(which, sizeof which, "encryption key %zu of %zu", pos + 1, count);
    }
    if (key == NULL || key[0] == '\0') {
        return fb__error(FB_EKEY, "%s is empty; %s", which, KEY_HINT);
    }
    size_t len = strlen(key);
    if (strstr(key, "your-encryption-key") != NULL) {
        return fb__error(FB_EKEY, "%s is the README's placeholder, not a key; %s", which, KEY_HINT);
    }
    if (len != FB_KEY_LEN) {
        return fb__error(FB_EKEY, "%s is %zu characters long; %s", which, len, KEY_HINT);
    }
    /* 44 characters are 33 bytes' worth; a valid key pads to exactly 32. */
    long got = fb__base64url_decode(key, len, out, 32);
    if (got != 32 || key[len - 1] != '=' || key[len - 2] == '=') {
        OPENSSL_cleanse(out, 32);
        return fb__error(FB_EKEY, "%s is not url-safe base64 of 32 bytes; %s", which, KEY_HINT);
    }
    return 0;
}

int fb_key_check(const char *key)
{
    uint8_t raw[32];
    int rc = parse_key(key, 0, 1, raw);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

int fb_keygen(char *out)
{
    if (out == NULL) {
        return fb__error(FB_EINVAL, "fb_keygen: NULL output buffer");
    }
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        return crypto_error("RAND_bytes (the OS random generator)");
    }
    fb__base64url_encode(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

size_t fb__fernet_token_len(size_t n)
{
    size_t blocks = n / BLOCK + 1;
    if (blocks > (SIZE_MAX - FB__FERNET_OVERHEAD) / BLOCK) {
        return SIZE_MAX;
    }
    return FB__FERNET_OVERHEAD + blocks * BLOCK;
}

/* Wipes the key bytes of the first count slots (not their HMAC contexts,
 * which OpenSSL wipes when they are freed). */
static void wipe_keys(fb_fernet *f, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        OPENSSL_cleanse(f->keys[i].sign, sizeof f->keys[i].sign);
        OPENSSL_cleanse(f->keys[i].enc, sizeof f->keys[i].enc);
    }
}

void fb__fernet_free(fb_fernet *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n; i++) {
        EVP_MAC_CTX_free(f->keys[i].mac);
    }
    wipe_keys(f, f->n);
    EVP_CIPHER_free(f->aes);
    fb__free(f);
}

int fb__fernet_new(const char *const *keys, size_t n, fb_fernet **out)
{
    int rc = 0;
    fb_fernet *f = NULL;
    EVP_MAC *hmac = NULL;
    if (out == NULL || (keys == NULL && n > 0)) {
        return fb__error(FB_EINVAL, "fb__fernet_new: NULL argument");
    }
    *out = NULL;
    if (n == 0) {
        return fb__error(FB_EKEY, "no encryption key given; %s", KEY_HINT);
    }
    if (n > (SIZE_MAX - sizeof *f) / sizeof f->keys[0]) {
        return fb__error(FB_ETOOBIG, "%zu encryption keys are too many", n);
    }
    f = fb__calloc(1, sizeof *f + n * sizeof f->keys[0]);
    if (f == NULL) {
        return fb__error(FB_ENOMEM, "out of memory for a keyring of %zu keys", n);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t raw[32];
        rc = parse_key(keys[i], i, n, raw);
        if (rc < 0) {
            goto out;
        }
        memcpy(f->keys[i].sign, raw, 16);
        memcpy(f->keys[i].enc, raw + 16, 16);
        OPENSSL_cleanse(raw, sizeof raw);
    }
    f->aes = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (f->aes == NULL || hmac == NULL) {
        rc = crypto_error("fetching AES-128-CBC and HMAC");
        goto out;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    for (size_t i = 0; i < n; i++) {
        /* Counted as soon as it exists, so that the cleanup frees it. */
        f->keys[i].mac = EVP_MAC_CTX_new(hmac);
        f->n = i + 1;
        if (f->keys[i].mac == NULL ||
            !EVP_MAC_init(f->keys[i].mac, f->keys[i].sign, sizeof f->keys[i].sign, params)) {
            rc = crypto_error("HMAC-SHA256 setup");
            goto out;
        }
    }
    f->n = n;
    *out = f;
    f = NULL;
out:
    if (f != NULL) {
        /* Keys parsed before the failure are wiped too, contexts or not. */
        wipe_keys(f, n);
        fb__fernet_free(f);
    }
    EVP_MAC_free(hmac);
    return rc;
}

size_t fb__fernet_key_count(const fb_fernet *f)
{
    return f != NULL ? f->n : 0;
}

/* HMAC-SHA256 of n bytes with key k into mac[32]. */
static int compute_hmac(const fernet_key *k, const uint8_t *p, size_t n, uint8_t mac[HMAC_LEN])
{
    int rc = 0;
    size_t got = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(k->mac);
    if (ctx == NULL || !EVP_MAC_update(ctx, p, n) || !EVP_MAC_final(ctx, mac, &got, HMAC_LEN) ||
        got != HMAC_LEN) {
        rc = crypto_error("HMAC-SHA256");
    }
    EVP_MAC_CTX_free(ctx);
    return rc;
}

static int encrypt_with(const fb_fernet *f, const void *src, size_t n, uint64_t timestamp,
                        const uint8_t iv[IV_LEN], void *dst, size_t cap, size_t *out_len)
{
    int rc = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *t = dst;
    if (f == NULL || (src == NULL && n > 0) || dst == NULL || out_len == NULL) {
        return fb__error(FB_EINVAL, "fernet encrypt: NULL argument");
    }
    size_t len = fb__fernet_token_len(n);
    /* EVP takes int lengths. */
    if (len == SIZE_MAX || n > (size_t)INT_MAX - 2 * BLOCK) {
        return fb__error(FB_ETOOBIG, "%zu bytes are too many to encrypt as one record", n);
    }
    if (cap < len) {
        return fb__error(FB_EINVAL, "a token of %zu bytes does not fit in %zu", len, cap);
    }
    const fernet_key *k = &f->keys[0];
    t[0] = VERSION_BYTE;
    fb__put_be64(t + TS_OFF, timestamp);
    memcpy(t + IV_OFF, iv, IV_LEN);
    int l1 = 0, l2 = 0;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || !EVP_EncryptInit_ex2(ctx, f->aes, k->enc, iv, NULL) ||
        (n > 0 && !EVP_EncryptUpdate(ctx, t + CT_OFF, &l1, src, (int)n)) ||
        !EVP_EncryptFinal_ex(ctx, t + CT_OFF + l1, &l2)) {
        rc = crypto_error("AES-128-CBC encryption");
        goto out;
    }
    size_t ct_len = (size_t)l1 + (size_t)l2;
    if (CT_OFF + ct_len + HMAC_LEN != len) {
        rc = fb__error(FB_EIO, "AES-128-CBC produced %zu bytes for %zu, expected %zu", ct_len, n,
                       len - FB__FERNET_OVERHEAD);
        goto out;
    }
    rc = compute_hmac(k, t, CT_OFF + ct_len, t + CT_OFF + ct_len);
    if (rc < 0) {
        goto out;
    }
    *out_len = len;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int fb__fernet_encrypt(const fb_fernet *f, const void *src, size_t n, uint64_t timestamp, void *dst,
                       size_t cap, size_t *out_len)
{
    uint8_t iv[IV_LEN];
    if (RAND_bytes(iv, sizeof iv) != 1) {
        return crypto_error("RAND_bytes (the OS random generator)");
    }
    return encrypt_with(f, src, n, timestamp, iv, dst, cap, out_len);
}

int fb__fernet_encrypt_iv(const fb_fernet *f, const void *src, size_t n, uint64_t timestamp,
                          const uint8_t iv[16], void *dst, size_t cap, size_t *out_len)
{
    if (iv == NULL) {
        return fb__error(FB_EINVAL, "fernet encrypt: NULL IV");
    }
    return encrypt_with(f, src, n, timestamp, iv, dst, cap, out_len);
}

/*
 * Checks the token's structure and finds the key whose HMAC matches, in
 * constant time per key. Nothing is decrypted here. FB_EINTEGRITY when the
 * structure is wrong or no key matches.
 */
static int verify_token(const fb_fernet *f, const uint8_t *t, size_t n, size_t *key_index)
{
    if (f == NULL || (t == NULL && n > 0)) {
        return fb__error(FB_EINVAL, "fernet decrypt: NULL argument");
    }
    if (n < MIN_TOKEN || (n - FB__FERNET_OVERHEAD) % BLOCK != 0 || t[0] != VERSION_BYTE) {
        return fb__error(FB_EINTEGRITY, INTEGRITY_DETAIL);
    }
    size_t body = n - HMAC_LEN;
    uint8_t mac[HMAC_LEN];
    for (size_t i = 0; i < f->n; i++) {
        int rc = compute_hmac(&f->keys[i], t, body, mac);
        if (rc < 0) {
            return rc;
        }
        if (CRYPTO_memcmp(mac, t + body, HMAC_LEN) == 0) {
            *key_index = i;
            return 0;
        }
    }
    return fb__error(FB_EINTEGRITY, INTEGRITY_DETAIL);
}

/*
 * Decrypts a verified token with key k. All blocks but the last go straight
 * to dst; the last one is decrypted aside and its PKCS#7 padding checked
 * there, so dst needs room for the plaintext only, not the padded length.
 * (No constant-time padding check is needed: the HMAC already vouched for
 * the bytes.)
 */
static int decrypt_verified(const fb_fernet *f, const fernet_key *k, const uint8_t *t, size_t n,
                            void *dst, size_t cap, size_t *out_len)
{
    int rc = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t last[BLOCK];
    size_t ct_len = n - FB__FERNET_OVERHEAD;
    size_t head = ct_len - BLOCK;
    if (ct_len > (size_t)INT_MAX) {
        return fb__error(FB_ETOOBIG, "an encrypted record of %zu bytes is too large", n);
    }
    if (cap < head || (dst == NULL && head > 0)) {
        return fb__error(FB_ETOOBIG, "a decrypted record of at least %zu bytes does not fit in %zu",
                         head, cap);
    }
    int l1 = 0, l2 = 0, l3 = 0;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || !EVP_DecryptInit_ex2(ctx, f->aes, k->enc, t + IV_OFF, NULL) ||
        !EVP_CIPHER_CTX_set_padding(ctx, 0) ||
        (head > 0 && !EVP_DecryptUpdate(ctx, dst, &l1, t + CT_OFF, (int)head)) ||
        !EVP_DecryptUpdate(ctx, last, &l2, t + CT_OFF + head, BLOCK) ||
        !EVP_DecryptFinal_ex(ctx, last + l2, &l3)) {
        rc = crypto_error("AES-128-CBC decryption");
        goto out;
    }
    if ((size_t)l1 != head || l2 + l3 != BLOCK) {
        rc = fb__error(FB_EIO, "AES-128-CBC returned %d+%d+%d bytes for %zu", l1, l2, l3, ct_len);
        goto out;
    }
    unsigned pad = last[BLOCK - 1];
    int bad = pad == 0 || pad > BLOCK;
    for (unsigned i = 0; !bad && i < pad; i++) {
        bad = last[BLOCK - 1 - i] != pad;
    }
    if (bad) {
        rc = fb__error(FB_EINTEGRITY, INTEGRITY_DETAIL);
        goto out;
    }
    size_t tail = BLOCK - pad;
    if (cap - head < tail) {
        rc = fb__error(FB_ETOOBIG, "a decrypted record of %zu bytes does not fit in %zu",
                       head + tail, cap);
        goto out;
    }
    if (tail > 0) {
        memcpy((uint8_t *)dst + head, last, tail);
    }
    *out_len = head + tail;
out:
    OPENSSL_cleanse(last, sizeof last);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int fb__fernet_decrypt(const fb_fernet *f, const void *token, size_t n, void *dst, size_t cap,
                       size_t *out_len, size_t *key_index)
{
    size_t ki = 0;
    if (out_len == NULL) {
        return fb__error(FB_EINVAL, "fernet decrypt: NULL argument");
    }
    int rc = verify_token(f, token, n, &ki);
    if (rc < 0) {
        return rc;
    }
    rc = decrypt_verified(f, &f->keys[ki], token, n, dst, cap, out_len);
    if (rc == 0 && key_index != NULL) {
        *key_index = ki;
    }
    return rc;
}

int fb__fernet_decrypt_at(const fb_fernet *f, const void *token, size_t n, int64_t ttl,
                          uint64_t now, void *dst, size_t cap, size_t *out_len)
{
    size_t ki = 0;
    if (out_len == NULL) {
        return fb__error(FB_EINVAL, "fernet decrypt: NULL argument");
    }
    int rc = verify_token(f, token, n, &ki);
    if (rc < 0) {
        return rc;
    }
    uint64_t ts = fb__get_be64((const uint8_t *)token + TS_OFF);
    /* Both comparisons are arranged so that no sum can wrap. */
    int future = ts > now && ts - now > MAX_CLOCK_SKEW;
    int expired = ttl >= 0 && now > ts && now - ts > (uint64_t)ttl;
    if (future || expired) {
        return fb__error(FB_EINTEGRITY, INTEGRITY_DETAIL);
    }
    return decrypt_verified(f, &f->keys[ki], token, n, dst, cap, out_len);
}

int fb__fernet_timestamp(const fb_fernet *f, const void *token, size_t n, uint64_t *out)
{
    size_t ki = 0;
    if (out == NULL) {
        return fb__error(FB_EINVAL, "fernet timestamp: NULL argument");
    }
    int rc = verify_token(f, token, n, &ki);
    if (rc == 0) {
        *out = fb__get_be64((const uint8_t *)token + TS_OFF);
    }
    return rc;
}
