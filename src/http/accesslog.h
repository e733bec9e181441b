/*
 * accesslog - one line per request on stderr:
 *
 *   2024-05-01T12:00:00.123Z 127.0.0.1 "GET /images/0123... HTTP/1.1" 200 5120 0.412ms
 *
 * Client-supplied text (method, target) is escaped so that a request can
 * never forge or split log lines. Each line goes out in one write(2), so
 * lines from many threads never interleave.
 */
#ifndef FB_HTTP_ACCESSLOG_H
#define FB_HTTP_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

/* Longest line written; longer targets are cut with "...". */
#define FB_ACCESSLOG_LINE_MAX 1024

/*
 * Formats a line ending in '\n' into buf (cap >= 128; at most
 * FB_ACCESSLOG_LINE_MAX bytes are useful). status 0 means no response was
 * sent (client gone, timeout) and prints as "-". Returns the length.
 */
size_t fb__accesslog_format(char *buf, size_t cap, int64_t now_ms, const char *client,
                            const char *method, const char *target, const char *version, int status,
                            uint64_t bytes, uint64_t latency_us);

/* Writes a formatted line to fd 2 in one call (short writes retried). */
void fb__accesslog_write(const char *line, size_t len);

#endif
