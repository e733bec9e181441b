/*
 * parse - the pure parsers of the HTTP service: request paths to routes,
 * strict decimal numbers, Range, If-None-Match, bearer tokens, query option
 * values, the --listen address and HTTP dates.
 *
 * Nothing here knows libmicrohttpd or the store's internals, so every parser
 * can be unit-tested and fuzzed on its own (tests/fuzz/fuzz_http_*.c include
 * this file's .c directly). Every input is untrusted client text.
 */
#ifndef FB_HTTP_PARSE_H
#define FB_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "fastblocks.h"

/* The routes of the service; also the "route" label of the metrics. */
enum fb__http_route {
    FB_ROUTE_NONE = 0,     /* no such path: 404 */
    FB_ROUTE_HEALTHZ,      /* /healthz */
    FB_ROUTE_METRICS,      /* /metrics */
    FB_ROUTE_UPLOAD,       /* /upload/ (seed) */
    FB_ROUTE_IMAGES,       /* /images (id uploads) */
    FB_ROUTE_IMAGE_ID,     /* /images/{id} */
    FB_ROUTE_IMAGE_META,   /* /images/{id}/meta */
    FB_ROUTE_IMAGE_TRIPLE, /* /images/{block}/{offset}/{size} (seed) */
    FB_ROUTE__COUNT
};

/* Metric label of a route ("image_id"); never NULL. */
const char *fb__http_route_name(int route);

/* A request path resolved to a route. */
typedef struct fb__http_path {
    int route;    /* enum fb__http_route */
    int addr_rc;  /* for the image routes: 0, or FB_EINVAL when the id or triple is malformed */
    fb_addr addr; /* valid when addr_rc == 0 */
} fb__http_path;

/*
 * Resolves a decoded request path (no query string). Segments are compared
 * exactly: "..", empty segments and anything not matching a route's pattern
 * never reach the store. For the image routes a malformed id or triple
 * gives addr_rc FB_EINVAL with the detail set (the caller answers 400).
 * Returns out->route.
 */
int fb__http_route_path(const char *path, fb__http_path *out);

/*
 * Strict unsigned decimal: 1 to 20 digits, no sign, no spaces, no overflow.
 * Returns 0 or FB_EINVAL.
 */
int fb__http_parse_u64(const char *s, size_t len, uint64_t *out);

enum fb__http_range_result {
    FB_RANGE_INVALID = -1,      /* malformed bytes range: 400 */
    FB_RANGE_FULL = 0,          /* no usable range (absent, other unit, several ranges): 200 */
    FB_RANGE_PARTIAL = 1,       /* [*first, *last] inclusive, within len: 206 */
    FB_RANGE_UNSATISFIABLE = 2, /* 416 */
};

/*
 * Parses a Range header value (NULL means absent) for a representation of
 * len bytes. Only a single byte range is honoured; several ranges are
 * answered with the whole image, which RFC 9110 allows.
 */
int fb__http_parse_range(const char *value, uint64_t len, uint64_t *first, uint64_t *last);

/*
 * 1 if the If-None-Match header value matches the entity tag whose opaque
 * part is tag (no quotes): "*" or any listed tag by weak comparison.
 * 0 otherwise, including for malformed lists.
 */
int fb__http_etag_match(const char *value, const char *tag);

/*
 * 1 if the Authorization header value is "Bearer <token>" with exactly
 * token (token_len bytes). The comparison takes the same time wherever the
 * first difference is, so timing does not reveal the token.
 */
int fb__http_bearer_ok(const char *value, const char *token, size_t token_len);

/* Constant-time comparison of a (alen bytes) and b (blen bytes): 1 if equal. */
int fb__http_consttime_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/*
 * Query option values: an integer in [lo, hi], or a boolean
 * (1/0/true/false/yes/no/on/off; an empty value means true, so "?lossless"
 * works). Return 0 or FB_EINVAL with the detail naming the option.
 */
int fb__http_parse_int_opt(const char *name, const char *value, int64_t lo, int64_t hi,
                           int64_t *out);
int fb__http_parse_bool_opt(const char *name, const char *value, int *out);

/* A --listen address: "HOST:PORT", "[V6]:PORT" or "unix:PATH". */
typedef struct fb__http_listen {
    int is_unix;
    char host[256]; /* without brackets */
    uint16_t port;
    char path[108]; /* sizeof sun_path */
} fb__http_listen;

/* Parses a --listen address. Returns 0 or FB_EINVAL with a detail. */
int fb__http_parse_listen(const char *text, fb__http_listen *out);

/* Formats unix time t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT")
 * into buf[FB_HTTP_DATE_LEN]. */
#define FB_HTTP_DATE_LEN 30
void fb__http_date(int64_t t, char *buf);

/* Maps an FB_E* code to the HTTP status that reports it (one table). */
int fb__http_status_for(int err);

#endif
