/*
 * metrics - the service's counters and their Prometheus text exposition
 * (GET /metrics): requests by route, method and status, bytes sent, a
 * latency histogram per route, uploads rejected by reason, plus the store's
 * own figures (cache, live/dead bytes and records, fsync batches) read from
 * fb_get_stats at scrape time, and what background compaction did.
 *
 * Counters are relaxed atomics: recording a request is a few uncontended
 * increments, with no lock on the request path.
 */
#ifndef FB_HTTP_METRICS_H
#define FB_HTTP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fastblocks.h"
#include "http/parse.h"

enum fb__http_method {
    FB_METHOD_GET = 0,
    FB_METHOD_HEAD,
    FB_METHOD_POST,
    FB_METHOD_DELETE,
    FB_METHOD_OTHER,
    FB_METHOD__COUNT
};

/* The method enum of a request method string (case-sensitive, as HTTP is). */
int fb__http_method_of(const char *method);
const char *fb__http_method_name(int method);

/* Why an upload was refused: the "reason" label. */
enum fb__http_reject {
    FB_REJECT_UNAUTHORIZED = 0, /* 401 */
    FB_REJECT_NO_LENGTH,        /* 411 */
    FB_REJECT_TOO_LARGE,        /* 413: over --max-upload */
    FB_REJECT_BAD_REQUEST,      /* 400: bad multipart, bad query option */
    FB_REJECT_UNSUPPORTED,      /* 415 */
    FB_REJECT_UNDECODABLE,      /* 422 */
    FB_REJECT_LIMIT,            /* 413: over a pixel/frame limit */
    FB_REJECT_STORE,            /* 503: disk full, I/O error */
    FB_REJECT_BUSY,             /* 503: too many uploads queued */
    FB_REJECT_OTHER,
    FB_REJECT__COUNT
};

/* The statuses the service answers with; others count as "other". */
#define FB_METRICS_STATUSES                                                                        \
    {                                                                                              \
        200, 201, 206, 304, 400, 401, 404, 405, 411, 413, 415, 416, 422, 431, 500, 503             \
    }
#define FB_METRICS_NSTATUS 17 /* the list above plus "other" */
#define FB_METRICS_NBUCKETS 15

typedef struct fb__http_metrics {
    atomic_uint_fast64_t requests[FB_ROUTE__COUNT][FB_METHOD__COUNT][FB_METRICS_NSTATUS];
    atomic_uint_fast64_t bytes_sent[FB_ROUTE__COUNT];
    /* Per bucket, not cumulative; the exposition sums them. The last bucket
     * is +Inf. */
    atomic_uint_fast64_t latency[FB_ROUTE__COUNT][FB_METRICS_NBUCKETS];
    atomic_uint_fast64_t latency_sum_us[FB_ROUTE__COUNT];
    atomic_uint_fast64_t rejected[FB_REJECT__COUNT];
    atomic_uint_fast64_t uploads_in_progress; /* gauge */
    atomic_uint_fast64_t client_errors;       /* connections closed by errors or timeouts */
    /* Background compaction (compactor.c). */
    atomic_uint_fast64_t compactions, compaction_failures, compacted_blocks, compacted_bytes;
} fb__http_metrics;

void fb__metrics_init(fb__http_metrics *m);

/* Records one finished request. */
void fb__metrics_request(fb__http_metrics *m, int route, int method, int status, uint64_t bytes,
                         uint64_t latency_ns);

void fb__metrics_reject(fb__http_metrics *m, int reason);

/*
 * Renders the exposition text: the counters of m and, when st is not NULL,
 * the store's statistics. *out (NUL-terminated, *len bytes) is released
 * with fb__free. Returns 0 or FB_ENOMEM.
 */
int fb__metrics_render(fb__http_metrics *m, const fb_stats *st, char **out, size_t *len);

#endif
