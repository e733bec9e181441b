/* accesslog - see accesslog.h. */
#include "http/accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* Appends s escaped (\xHH for controls, quotes, backslashes and non-ASCII),
 * keeping room for the rest of the line. */
static size_t put_escaped(char *buf, size_t pos, size_t limit, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)(s ? s : "-"); *p; p++) {
        int plain = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
        size_t need = plain ? 1 : 4;
        if (pos + need + 3 > limit) {
            buf[pos++] = '.';
            buf[pos++] = '.';
            buf[pos++] = '.';
            break;
        }
        if (plain) {
            buf[pos++] = (char)*p;
        } else {
            buf[pos++] = '\\';
            buf[pos++] = 'x';
            buf[pos++] = hex[*p >> 4];
            buf[pos++] = hex[*p & 15];
        }
    }
    return pos;
}

/* The position after snprintf wrote n characters at pos (cut at cap). */
static size_t advance(size_t pos, size_t cap, int n)
{
    if (n < 0) {
        return pos;
    }
    return pos + (size_t)n < cap ? pos + (size_t)n : cap - 1;
}

size_t fb__accesslog_format(char *buf, size_t cap, int64_t now_ms, const char *client,
                            const char *method, const char *target, const char *version, int status,
                            uint64_t bytes, uint64_t latency_us)
{
    struct tm tm;
    time_t secs = (time_t)(now_ms / 1000);
    size_t pos = 0;
    size_t target_limit = cap - 64; /* room for status, size, latency */
    int n;
    if (gmtime_r(&secs, &tm) == NULL) {
        secs = 0;
        gmtime_r(&secs, &tm);
    }
    n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now_ms % 1000));
    pos = advance(pos, cap, n);
    pos = put_escaped(buf, pos, target_limit, client);
    buf[pos++] = ' ';
    buf[pos++] = '"';
    pos = put_escaped(buf, pos, target_limit, method);
    buf[pos++] = ' ';
    pos = put_escaped(buf, pos, target_limit, target);
    buf[pos++] = ' ';
    pos = put_escaped(buf, pos, target_limit, version);
    buf[pos++] = '"';
    if (status > 0) {
        n = snprintf(buf + pos, cap - pos, " %d %llu %llu.%03llums\n", status,
                     (unsigned long long)bytes, (unsigned long long)(latency_us / 1000),
                     (unsigned long long)(latency_us % 1000));
    } else {
        n = snprintf(buf + pos, cap - pos, " - 0 %llu.%03llums\n",
                     (unsigned long long)(latency_us / 1000),
                     (unsigned long long)(latency_us % 1000));
    }
    pos = advance(pos, cap, n);
    if (buf[pos - 1] != '\n') {
        buf[pos - 1] = '\n';
    }
    return pos;
}

void fb__accesslog_write(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t w = write(2, line, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return; /* a closed stderr must not stop the server */
        }
        line += w;
        len -= (size_t)w;
    }
}
