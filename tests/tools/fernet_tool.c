/*
 * fernet_tool - a small command-line face of codec_fernet for the Python
 * interoperability test (tests/integration/test_fernet_interop.py), which
 * drives it against Debian's python3-cryptography. Not installed.
 *
 *   fernet_tool keygen               print a new key
 *   fernet_tool check                is the key on stdin (one line) valid?
 *   fernet_tool encrypt [TIMESTAMP]  stdin -> binary token on stdout
 *   fernet_tool decrypt              binary token on stdin -> plaintext
 *   fernet_tool timestamp            binary token on stdin -> its timestamp
 *
 * Keys come from the environment variable FB_FERNET_KEYS (comma-separated,
 * the first encrypts), never from the command line. Failures print
 * "ENAME: detail" on stderr and exit 1; the key that decrypted is printed
 * on stderr as "key N".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastblocks.h"
#include "codec_fernet.h"

static int fail(int rc)
{
    fprintf(stderr, "%s: %s\n", fb_err_name(rc), fb_last_error());
    return 1;
}

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

/* Splits FB_FERNET_KEYS at commas into a keyring. */
static int load_ring(fb_fernet **out)
{
    const char *env = getenv("FB_FERNET_KEYS");
    if (env == NULL) {
        fprintf(stderr, "FB_FERNET_KEYS is not set\n");
        return -1;
    }
    char *copy = strdup(env);
    const char *keys[64];
    size_t n = 0;
    for (char *save = NULL, *k = strtok_r(copy, ",", &save); k != NULL && n < 64;
         k = strtok_r(NULL, ",", &save)) {
        keys[n++] = k;
    }
    int rc = fb__fernet_new(keys, n, out);
    free(copy);
    return rc < 0 ? fail(rc), -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fernet_tool keygen|check|encrypt [TS]|decrypt|timestamp\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "keygen") == 0) {
        char key[FB_KEY_LEN + 1];
        int rc = fb_keygen(key);
        if (rc < 0) {
            return fail(rc);
        }
        printf("%s\n", key);
        return 0;
    }
    size_t len = 0;
    uint8_t *in = read_all(stdin, &len);
    if (in == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int status = 1;
    fb_fernet *f = NULL;
    uint8_t *out = NULL;
    if (strcmp(cmd, "check") == 0) {
        if (len > 0 && in[len - 1] == '\n') {
            len--;
        }
        char *key = malloc(len + 1);
        memcpy(key, in, len);
        key[len] = '\0';
        int rc = fb_key_check(key);
        free(key);
        status = rc < 0 ? fail(rc) : 0;
        goto out;
    }
    if (load_ring(&f) < 0) {
        goto out;
    }
    if (strcmp(cmd, "encrypt") == 0) {
        uint64_t ts = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
        size_t cap = fb__fernet_token_len(len), tlen = 0;
        out = malloc(cap);
        int rc = fb__fernet_encrypt(f, in, len, ts, out, cap, &tlen);
        if (rc < 0) {
            status = fail(rc);
            goto out;
        }
        fwrite(out, 1, tlen, stdout);
        status = 0;
    } else if (strcmp(cmd, "decrypt") == 0) {
        size_t plen = 0, ki = 0;
        out = malloc(len + 1);
        int rc = fb__fernet_decrypt(f, in, len, out, len, &plen, &ki);
        if (rc < 0) {
            status = fail(rc);
            goto out;
        }
        fwrite(out, 1, plen, stdout);
        fprintf(stderr, "key %zu\n", ki);
        status = 0;
    } else if (strcmp(cmd, "timestamp") == 0) {
        uint64_t ts = 0;
        int rc = fb__fernet_timestamp(f, in, len, &ts);
        if (rc < 0) {
            status = fail(rc);
            goto out;
        }
        printf("%" PRIu64 "\n", ts);
        status = 0;
    } else {
        fprintf(stderr, "unknown command %s\n", cmd);
        status = 2;
    }
out:
    fb__fernet_free(f);
    free(out);
    free(in);
    return status;
}
