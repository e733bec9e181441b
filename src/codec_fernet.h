/*
 * codec_fernet - Fernet encryption of a record payload with a keyring
 * (the first key encrypts, all keys decrypt: Python's MultiFernet). The only
 * file that includes OpenSSL headers.
 *
 * Tokens are handled in binary form (not base64): version 0x80, 64-bit
 * big-endian timestamp, 16-byte IV, AES-128-CBC ciphertext with PKCS#7,
 * HMAC-SHA256 of everything before it. base64url of a binary token is a
 * standard Fernet token.
 */
#ifndef FB_CODEC_FERNET_H
#define FB_CODEC_FERNET_H

#include <stddef.h>
#include <stdint.h>

typedef struct fb_fernet fb_fernet;

#define FB__FERNET_OVERHEAD 57 /* version + timestamp + iv + hmac */

/* Binary token length for a plaintext of n bytes: 57 + 16 * (n / 16 + 1);
 * SIZE_MAX if that does not fit in a size_t. */
size_t fb__fernet_token_len(size_t n);

/*
 * Builds a keyring from n >= 1 Fernet keys (url-safe base64 of 32 bytes,
 * exactly 44 characters with the '=' padding; nothing else is trimmed or
 * skipped). An invalid key, or n == 0, is FB_EKEY with a detail naming its
 * position and how to make a valid one ("fastblocks keygen"); the detail
 * never contains key text. The strings are not kept. A keyring is immutable:
 * any number of threads may use one at once. Key material is wiped on free;
 * fb__fernet_free(NULL) is fine.
 */
int fb__fernet_new(const char *const *keys, size_t n, fb_fernet **out);
void fb__fernet_free(fb_fernet *f);

/* Number of keys; index of the key a token was decrypted with is reported
 * by fb__fernet_decrypt. */
size_t fb__fernet_key_count(const fb_fernet *f);

/*
 * Encrypts n bytes with the first key, the given timestamp and a random IV
 * from the OS CSPRNG. dst must hold fb__fernet_token_len(n) bytes (cap
 * smaller: FB_EINVAL); *out_len gets exactly that. n above INT_MAX - 32 is
 * FB_ETOOBIG (OpenSSL takes int lengths).
 */
int fb__fernet_encrypt(const fb_fernet *f, const void *src, size_t n, uint64_t timestamp, void *dst,
                       size_t cap, size_t *out_len);

/* Same with a caller-given IV: for the spec's test vectors only. */
int fb__fernet_encrypt_iv(const fb_fernet *f, const void *src, size_t n, uint64_t timestamp,
                          const uint8_t iv[16], void *dst, size_t cap, size_t *out_len);

/*
 * Verifies (HMAC in constant time, before anything is decrypted) and
 * decrypts a binary token with each key in turn. dst (capacity cap) must
 * hold the plaintext: n - 57 bytes always suffice, and so does the exact
 * plaintext length when the caller knows it (the padding block is decrypted
 * aside); a plaintext that does not fit is FB_ETOOBIG, after verification.
 * Stored records are decrypted without a TTL or clock-skew check, so a clock
 * that moves never makes stored images unreadable. Any failure is
 * FB_EINTEGRITY with one opaque detail.
 * *key_index (may be NULL) gets the index of the key that verified.
 */
int fb__fernet_decrypt(const fb_fernet *f, const void *token, size_t n, void *dst, size_t cap,
                       size_t *out_len, size_t *key_index);

/*
 * Python Fernet's decrypt_at_time semantics, for the spec vectors: rejects a
 * token whose timestamp is more than 60 s after now, and with ttl >= 0 one
 * older than ttl seconds.
 */
int fb__fernet_decrypt_at(const fb_fernet *f, const void *token, size_t n, int64_t ttl,
                          uint64_t now, void *dst, size_t cap, size_t *out_len);

/* Timestamp of a binary token after verifying its HMAC (MultiFernet.rotate
 * keeps it). */
int fb__fernet_timestamp(const fb_fernet *f, const void *token, size_t n, uint64_t *out);

#endif
