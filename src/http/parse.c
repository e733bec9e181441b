/*
 * parse - see parse.h. Pure functions over untrusted text: bounded loops,
 * no allocation, saturating or rejecting arithmetic, never a path join.
 */
#include "http/parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/error.h"

static const char *const route_names[FB_ROUTE__COUNT] = {
    [FB_ROUTE_NONE] = "none",
    [FB_ROUTE_HEALTHZ] = "healthz",
    [FB_ROUTE_METRICS] = "metrics",
    [FB_ROUTE_UPLOAD] = "upload",
    [FB_ROUTE_IMAGES] = "images",
    [FB_ROUTE_IMAGE_ID] = "image_id",
    [FB_ROUTE_IMAGE_META] = "image_meta",
    [FB_ROUTE_IMAGE_TRIPLE] = "image_triple",
};

const char *fb__http_route_name(int route)
{
    if (route < 0 || route >= FB_ROUTE__COUNT) {
        return "none";
    }
    return route_names[route];
}

int fb__http_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20) {
        return fb__error(FB_EINVAL, "not a decimal number of 1 to 20 digits");
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return fb__error(FB_EINVAL, "not a decimal number: unexpected character");
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return fb__error(FB_EINVAL, "number does not fit in 64 bits");
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The longest segment any route accepts ("block_NNNNNNNN.fbk" or a 20-digit
 * number are far shorter); longer ones are rejected before copying. */
#define SEG_MAX 64

/* Splits path after prefix into at most 4 segments; -1 if a segment is empty
 * or too long, or there are more than max. A single trailing '/' is allowed. */
static int split_segments(const char *p, const char **seg, size_t *seglen, int max)
{
    int n = 0;
    while (*p != '\0') {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > SEG_MAX || n == max) {
            return -1;
        }
        seg[n] = p;
        seglen[n] = len;
        n++;
        if (slash == NULL) {
            break;
        }
        p = slash + 1;
        if (*p == '\0') {
            break; /* trailing slash */
        }
    }
    return n;
}

static int parse_id_segment(const char *s, size_t len, fb_addr *addr)
{
    char id[FB_ID_LEN + 1];
    if (len != FB_ID_LEN) {
        return fb__error(FB_EINVAL, "invalid image id: expected %d lowercase hex digits",
                         FB_ID_LEN);
    }
    memcpy(id, s, len);
    id[len] = '\0';
    return fb_addr_from_id(id, addr);
}

static int parse_triple(const char **seg, const size_t *seglen, fb_addr *addr)
{
    char block[FB_BLOCK_NAME_MAX];
    uint64_t offset = 0, size = 0;
    if (seglen[0] >= sizeof block) {
        return fb__error(FB_EINVAL, "invalid block name: expected block_NNNNNNNN.fbk");
    }
    memcpy(block, seg[0], seglen[0]);
    block[seglen[0]] = '\0';
    if (fb__http_parse_u64(seg[1], seglen[1], &offset) != 0) {
        return fb__error(FB_EINVAL, "invalid offset: expected a decimal number");
    }
    if (fb__http_parse_u64(seg[2], seglen[2], &size) != 0) {
        return fb__error(FB_EINVAL, "invalid size: expected a decimal number");
    }
    return fb_addr_from_triple(block, offset, size, addr);
}

int fb__http_route_path(const char *path, fb__http_path *out)
{
    const char *seg[4];
    size_t seglen[4];
    int n;
    memset(out, 0, sizeof *out);
    out->route = FB_ROUTE_NONE;
    if (strcmp(path, "/healthz") == 0) {
        return out->route = FB_ROUTE_HEALTHZ;
    }
    if (strcmp(path, "/metrics") == 0) {
        return out->route = FB_ROUTE_METRICS;
    }
    /* FastAPI redirects "/upload" to "/upload/"; answering both saves the
     * client a round trip. */
    if (strcmp(path, "/upload/") == 0 || strcmp(path, "/upload") == 0) {
        return out->route = FB_ROUTE_UPLOAD;
    }
    if (strcmp(path, "/images") == 0 || strcmp(path, "/images/") == 0) {
        return out->route = FB_ROUTE_IMAGES;
    }
    if (strncmp(path, "/images/", 8) != 0) {
        return FB_ROUTE_NONE;
    }
    n = split_segments(path + 8, seg, seglen, 3);
    if (n == 1) {
        out->route = FB_ROUTE_IMAGE_ID;
        out->addr_rc = parse_id_segment(seg[0], seglen[0], &out->addr);
    } else if (n == 2 && seglen[1] == 4 && memcmp(seg[1], "meta", 4) == 0) {
        out->route = FB_ROUTE_IMAGE_META;
        out->addr_rc = parse_id_segment(seg[0], seglen[0], &out->addr);
    } else if (n == 3) {
        out->route = FB_ROUTE_IMAGE_TRIPLE;
        out->addr_rc = parse_triple(seg, seglen, &out->addr);
    } else if (n < 0 && strlen(path + 8) > 0) {
        /* Over-long or empty segments under /images/: a bad address, not an
         * unknown route, so the client learns what is wrong. */
        out->route = FB_ROUTE_IMAGE_ID;
        out->addr_rc = fb__error(FB_EINVAL, "invalid image address in path");
    }
    return out->route;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Reads digits at *pp, saturating at UINT64_MAX (a huge position is simply
 * past the end). Returns the number of digits read. */
static size_t read_digits(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    size_t n = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        p++;
        n++;
    }
    *pp = p;
    *out = v;
    return n;
}

int fb__http_parse_range(const char *value, uint64_t len, uint64_t *first, uint64_t *last)
{
    const char *p;
    uint64_t a = 0, b = 0;
    int has_a, has_b;
    if (value == NULL) {
        return FB_RANGE_FULL;
    }
    p = skip_ows(value);
    if (strncasecmp(p, "bytes", 5) != 0) {
        return FB_RANGE_FULL; /* another unit: ignore, as RFC 9110 says */
    }
    p = skip_ows(p + 5);
    if (*p != '=') {
        return FB_RANGE_INVALID;
    }
    p = skip_ows(p + 1);
    has_a = read_digits(&p, &a) > 0;
    if (*p != '-') {
        return FB_RANGE_INVALID;
    }
    p++;
    has_b = read_digits(&p, &b) > 0;
    p = skip_ows(p);
    if (*p == ',') {
        /* Several ranges: allowed to answer with the whole representation. */
        return FB_RANGE_FULL;
    }
    if (*p != '\0' || (!has_a && !has_b)) {
        return FB_RANGE_INVALID;
    }
    if (!has_a) {
        /* Suffix range: the last b bytes. */
        if (b == 0 || len == 0) {
            return FB_RANGE_UNSATISFIABLE;
        }
        *first = b >= len ? 0 : len - b;
        *last = len - 1;
        return FB_RANGE_PARTIAL;
    }
    if (has_b && b < a) {
        return FB_RANGE_INVALID;
    }
    if (a >= len) {
        return FB_RANGE_UNSATISFIABLE;
    }
    *first = a;
    *last = (!has_b || b >= len) ? len - 1 : b;
    return FB_RANGE_PARTIAL;
}

int fb__http_etag_match(const char *value, const char *tag)
{
    size_t taglen = strlen(tag);
    const char *p;
    if (value == NULL) {
        return 0;
    }
    p = skip_ows(value);
    if (*p == '*') {
        return *skip_ows(p + 1) == '\0';
    }
    for (;;) {
        const char *q;
        p = skip_ows(p);
        if (*p == '\0') {
            return 0;
        }
        if (p[0] == 'W' && p[1] == '/') {
            p += 2; /* weak comparison: the W/ prefix does not matter */
        }
        if (*p != '"') {
            return 0;
        }
        q = strchr(p + 1, '"');
        if (q == NULL) {
            return 0;
        }
        if ((size_t)(q - p - 1) == taglen && memcmp(p + 1, tag, taglen) == 0) {
            return 1;
        }
        p = skip_ows(q + 1);
        if (*p == ',') {
            p++;
        } else if (*p != '\0') {
            return 0;
        }
    }
}

int fb__http_consttime_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    /* Walk all of b whatever a is, so only b's (public) length shows. */
    volatile uint8_t diff = alen != blen;
    for (size_t i = 0; i < blen; i++) {
        uint8_t x = i < alen ? a[i] : 0;
        diff |= (uint8_t)(x ^ b[i]);
    }
    return diff == 0;
}

int fb__http_bearer_ok(const char *value, const char *token, size_t token_len)
{
    const char *p;
    size_t n;
    if (value == NULL || token == NULL) {
        return 0;
    }
    p = skip_ows(value);
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) {
        return 0;
    }
    p = skip_ows(p + 6);
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    return fb__http_consttime_eq((const uint8_t *)p, n, (const uint8_t *)token, token_len);
}

int fb__http_parse_int_opt(const char *name, const char *value, int64_t lo, int64_t hi,
                           int64_t *out)
{
    uint64_t v = 0;
    if (value == NULL || fb__http_parse_u64(value, strlen(value), &v) != 0 || v > (uint64_t)hi ||
        (int64_t)v < lo) {
        return fb__error(FB_EINVAL, "query parameter %s must be an integer from %lld to %lld", name,
                         (long long)lo, (long long)hi);
    }
    *out = (int64_t)v;
    return 0;
}

int fb__http_parse_bool_opt(const char *name, const char *value, int *out)
{
    static const char *const yes[] = {"", "1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    if (value == NULL) {
        *out = 1; /* "?lossless" without a value */
        return 0;
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (strcasecmp(value, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return fb__error(FB_EINVAL, "query parameter %s must be true or false", name);
}

int fb__http_parse_listen(const char *text, fb__http_listen *out)
{
    const char *colon, *host;
    size_t hostlen;
    uint64_t port = 0;
    memset(out, 0, sizeof *out);
    if (text == NULL || *text == '\0') {
        return fb__error(FB_EINVAL, "empty listen address");
    }
    if (strncmp(text, "unix:", 5) == 0) {
        size_t n = strlen(text + 5);
        if (n == 0 || n >= sizeof out->path) {
            return fb__error(FB_EINVAL, "unix socket path must have 1 to %zu characters",
                             sizeof out->path - 1);
        }
        memcpy(out->path, text + 5, n + 1);
        out->is_unix = 1;
        return 0;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            return fb__error(FB_EINVAL, "listen address %s: expected [IPV6]:PORT", text);
        }
        host = text + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return fb__error(FB_EINVAL, "listen address %s: expected HOST:PORT or unix:PATH", text);
        }
        host = text;
        hostlen = (size_t)(colon - text);
        if (memchr(host, ':', hostlen) != NULL) {
            return fb__error(FB_EINVAL, "listen address %s: write IPv6 hosts as [ADDR]:PORT", text);
        }
    }
    if (hostlen == 0 || hostlen >= sizeof out->host) {
        return fb__error(FB_EINVAL, "listen address %s: missing or too long host", text);
    }
    if (fb__http_parse_u64(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535) {
        return fb__error(FB_EINVAL, "listen address %s: port must be 0 to 65535", text);
    }
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

void fb__http_date(int64_t t, char *buf)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        memset(&tm, 0, sizeof tm);
        tm.tm_year = 70;
        tm.tm_mday = 1;
        tm.tm_wday = 4;
    }
    /* The compiler cannot see that the fields are in range; format into
     * room for any int and copy the (always 29-character) result. */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    memcpy(buf, tmp, FB_HTTP_DATE_LEN - 1);
    buf[FB_HTTP_DATE_LEN - 1] = '\0';
}

int fb__http_status_for(int err)
{
    switch (err) {
    case FB_OK:
        return 200;
    case FB_EINVAL:
        return 400;
    case FB_ENOTFOUND:
        return 404;
    case FB_EUNSUPPORTED:
        return 415;
    case FB_EIMAGE:
        return 422;
    case FB_ELIMIT:
    case FB_ETOOBIG:
        return 413;
    case FB_ENOMEM:
    case FB_EIO:
    case FB_ENOSPC:
    case FB_ELOCKED:
    case FB_EREADONLY:
    case FB_ECLOSED:
        return 503; /* the store cannot take the request now; the client may retry */
    default:
        return 500; /* ECORRUPT, EINTEGRITY, ENOKEY, EKEY, EVERSION, ENOSTORE */
    }
}
