/*
 * Fuzz target: the other parsers of the HTTP service that read client
 * text: request paths to routes (ids, triples), If-None-Match, bearer
 * tokens, query option values, the access-log escaping, and --listen.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/accesslog.c"
#include "http/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[2048], line[FB_ACCESSLOG_LINE_MAX];
    fb__http_path path;
    fb__http_listen l;
    int64_t v;
    int b;
    size_t n;
    if (size >= sizeof text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    if (fb__http_route_path(text, &path) < FB_ROUTE_NONE || path.route >= FB_ROUTE__COUNT) {
        abort();
    }
    (void)fb__http_etag_match(text, "0123456789abcdef01234567");
    (void)fb__http_bearer_ok(text, "token", 5);
    (void)fb__http_parse_int_opt("q", text, 0, 100, &v);
    if (fb__http_parse_int_opt("q", text, 0, 100, &v) == 0 && (v < 0 || v > 100)) {
        abort();
    }
    (void)fb__http_parse_bool_opt("b", text, &b);
    (void)fb__http_parse_listen(text, &l);
    n = fb__accesslog_format(line, sizeof line, 0, text, text, text, text, 200, 1, 1);
    /* One line, whatever the client sent. */
    if (n == 0 || n > sizeof line || line[n - 1] != '\n' || memchr(line, '\n', n - 1) != NULL) {
        abort();
    }
    return 0;
}
