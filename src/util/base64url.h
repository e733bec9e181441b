/*
 * base64url - RFC 4648 section 5 (url-safe alphabet), as used by Fernet keys
 * and tokens.
 */
#ifndef FB_UTIL_BASE64URL_H
#define FB_UTIL_BASE64URL_H

#include <stddef.h>
#include <stdint.h>

/* Characters fb__base64url_encode writes for n bytes (with '=' padding),
 * not counting the NUL. */
static inline size_t fb__base64url_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Encodes n bytes with '=' padding and a terminating NUL; out must hold
 * fb__base64url_encoded_len(n) + 1 characters. */
void fb__base64url_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes len characters, strictly: only the url-safe alphabet, padding only
 * at the end and only to a multiple of 4 (unpadded input is accepted too),
 * unused trailing bits must be zero. Writes at most cap bytes.
 * Returns the number of bytes, or -1 if the input is not valid base64url or
 * does not fit.
 */
long fb__base64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
