/*
 * multipart - see multipart.h. Every scan is bounded by the body length;
 * header values inside the body are never assumed to be NUL-terminated.
 */
#include "http/multipart.h"

#include <string.h>
#include <strings.h>

#include "util/error.h"

/* Part headers larger than this are refused: real clients send ~200 bytes. */
#define PART_HEADERS_MAX 8192

static int is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static int ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/*
 * Looks for parameter key in "type; k1=v1; k2="v2"" (len bytes, the media
 * type or disposition type first). Copies its value (unquoted) into
 * out[cap]. Returns 1 if found, 0 if absent, -1 if the list is malformed or
 * the value does not fit.
 */
static int find_param(const char *s, size_t len, const char *key, char *out, size_t cap)
{
    size_t i = 0;
    while (i < len && s[i] != ';') {
        i++; /* skip the type itself */
    }
    while (i < len) {
        size_t k0, k1, v0, vlen;
        int quoted = 0;
        i++; /* ';' */
        while (i < len && is_ows((uint8_t)s[i])) {
            i++;
        }
        if (i == len) {
            return 0; /* a trailing ';' is tolerated */
        }
        k0 = i;
        while (i < len && s[i] != '=' && s[i] != ';' && !is_ows((uint8_t)s[i])) {
            i++;
        }
        k1 = i;
        while (i < len && is_ows((uint8_t)s[i])) {
            i++;
        }
        if (i == len || s[i] != '=' || k1 == k0) {
            return -1;
        }
        i++;
        while (i < len && is_ows((uint8_t)s[i])) {
            i++;
        }
        if (i < len && s[i] == '"') {
            quoted = 1;
            v0 = ++i;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\') {
                    return -1; /* escapes never occur in names we accept */
                }
                i++;
            }
            if (i == len) {
                return -1;
            }
            vlen = i - v0;
            i++;
        } else {
            v0 = i;
            while (i < len && s[i] != ';' && !is_ows((uint8_t)s[i])) {
                i++;
            }
            vlen = i - v0;
        }
        while (i < len && is_ows((uint8_t)s[i])) {
            i++;
        }
        if (i < len && s[i] != ';') {
            return -1;
        }
        if (ieq(s + k0, k1 - k0, key)) {
            if (vlen >= cap || (!quoted && vlen == 0)) {
                return -1;
            }
            memcpy(out, s + v0, vlen);
            out[vlen] = '\0';
            return 1;
        }
    }
    return 0;
}

int fb__multipart_is_form(const char *content_type)
{
    const char *p = content_type;
    if (p == NULL) {
        return 0;
    }
    while (is_ows((uint8_t)*p)) {
        p++;
    }
    if (strncasecmp(p, "multipart/form-data", 19) != 0) {
        return 0;
    }
    p += 19;
    while (is_ows((uint8_t)*p)) {
        p++;
    }
    return *p == '\0' || *p == ';';
}

int fb__multipart_boundary(const char *content_type, char *out)
{
    int r;
    if (!fb__multipart_is_form(content_type)) {
        return fb__error(FB_EINVAL, "Content-Type is not multipart/form-data");
    }
    r = find_param(content_type, strlen(content_type), "boundary", out,
                   FB_MULTIPART_BOUNDARY_MAX + 1);
    if (r <= 0 || out[0] == '\0') {
        return fb__error(FB_EINVAL,
                         "multipart/form-data needs a boundary parameter of 1 to %d characters",
                         FB_MULTIPART_BOUNDARY_MAX);
    }
    return 0;
}

/* Reads the part headers in [p, end): sets *match when the disposition is
 * form-data with name == field; copies the Content-Type. */
static int parse_part_headers(const char *p, const char *end, const char *field, int *match,
                              fb__multipart_part *out)
{
    char name[256];
    *match = 0;
    out->content_type[0] = '\0';
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        const char *v;
        size_t vlen;
        if (colon == NULL) {
            return fb__error(FB_EINVAL, "malformed multipart part header: no ':'");
        }
        v = colon + 1;
        while (v < line_end && is_ows((uint8_t)*v)) {
            v++;
        }
        vlen = (size_t)(line_end - v);
        while (vlen > 0 && is_ows((uint8_t)v[vlen - 1])) {
            vlen--;
        }
        if (ieq(p, (size_t)(colon - p), "Content-Disposition")) {
            size_t tlen = 0;
            while (tlen < vlen && v[tlen] != ';' && !is_ows((uint8_t)v[tlen])) {
                tlen++;
            }
            if (ieq(v, tlen, "form-data")) {
                int r = find_param(v, vlen, "name", name, sizeof name);
                if (r < 0) {
                    return fb__error(FB_EINVAL, "malformed multipart Content-Disposition");
                }
                *match = r == 1 && strcmp(name, field) == 0;
            }
        } else if (ieq(p, (size_t)(colon - p), "Content-Type")) {
            if (vlen < sizeof out->content_type) {
                memcpy(out->content_type, v, vlen);
                out->content_type[vlen] = '\0';
            }
        }
        p = eol ? eol + 2 : end;
    }
    return 0;
}

int fb__multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
                       fb__multipart_part *out)
{
    /* "\r\n--" + boundary: the delimiter inside the body. */
    char delim[4 + FB_MULTIPART_BOUNDARY_MAX + 1];
    size_t blen = strlen(boundary), dlen, pos;
    const char *b = (const char *)body;
    const char *hit;
    if (blen == 0 || blen > FB_MULTIPART_BOUNDARY_MAX) {
        return fb__error(FB_EINVAL, "bad multipart boundary length");
    }
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    dlen = 4 + blen;
    /* The first delimiter may open the body without a preceding CRLF. */
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        hit = memmem(b, len, delim, dlen);
        if (hit == NULL) {
            return fb__error(FB_EINVAL, "multipart body does not contain its boundary");
        }
        pos = (size_t)(hit - b) + dlen;
    }
    for (;;) {
        size_t hs, he, cs, limit;
        int match = 0, r;
        /* pos is just past a delimiter: "--" closes, else padding + CRLF. */
        if (len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-') {
            return fb__error(FB_EINVAL, "multipart body has no field named \"%s\"", field);
        }
        while (pos < len && is_ows((uint8_t)b[pos])) {
            pos++;
        }
        if (len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n') {
            return fb__error(FB_EINVAL, "malformed multipart body: expected CRLF after boundary");
        }
        hs = pos + 2;
        if (len - hs >= 2 && b[hs] == '\r' && b[hs + 1] == '\n') {
            he = hs; /* a part without headers */
        } else {
            limit = len - hs < PART_HEADERS_MAX + 4 ? len - hs : PART_HEADERS_MAX + 4;
            hit = memmem(b + hs, limit, "\r\n\r\n", 4);
            if (hit == NULL) {
                return fb__error(FB_EINVAL,
                                 "malformed multipart body: part headers unterminated or over "
                                 "%d bytes",
                                 PART_HEADERS_MAX);
            }
            he = (size_t)(hit - b) + 2; /* keep the last header's CRLF out */
        }
        r = parse_part_headers(b + hs, b + he, field, &match, out);
        if (r != 0) {
            return r;
        }
        cs = he + 2;
        hit = memmem(b + cs, len - cs, delim, dlen);
        if (hit == NULL) {
            return fb__error(FB_EINVAL,
                             "multipart body is truncated: a part has no closing boundary");
        }
        if (match) {
            out->data = body + cs;
            out->len = (size_t)(hit - b) - cs;
            return 0;
        }
        pos = (size_t)(hit - b) + dlen;
    }
}
