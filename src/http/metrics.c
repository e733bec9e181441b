/* metrics - see metrics.h. */
#include "http/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

static const int statuses[] = FB_METRICS_STATUSES;
_Static_assert(sizeof statuses / sizeof statuses[0] + 1 == FB_METRICS_NSTATUS,
               "FB_METRICS_NSTATUS must count the status list plus 'other'");

/* Upper bounds of the latency buckets in microseconds; the last is +Inf. */
static const uint64_t bucket_us[FB_METRICS_NBUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

static const char *const method_names[FB_METHOD__COUNT] = {"GET", "HEAD", "POST", "DELETE",
                                                           "other"};

static const char *const reject_names[FB_REJECT__COUNT] = {
    [FB_REJECT_UNAUTHORIZED] = "unauthorized",
    [FB_REJECT_NO_LENGTH] = "no_length",
    [FB_REJECT_TOO_LARGE] = "too_large",
    [FB_REJECT_BAD_REQUEST] = "bad_request",
    [FB_REJECT_UNSUPPORTED] = "unsupported",
    [FB_REJECT_UNDECODABLE] = "undecodable",
    [FB_REJECT_LIMIT] = "limit",
    [FB_REJECT_STORE] = "store",
    [FB_REJECT_BUSY] = "busy",
    [FB_REJECT_OTHER] = "other",
};

int fb__http_method_of(const char *method)
{
    for (int i = 0; i < FB_METHOD_OTHER; i++) {
        if (strcmp(method, method_names[i]) == 0) {
            return i;
        }
    }
    return FB_METHOD_OTHER;
}

const char *fb__http_method_name(int method)
{
    return method >= 0 && method < FB_METHOD__COUNT ? method_names[method] : "other";
}

void fb__metrics_init(fb__http_metrics *m)
{
    /* All-zero bytes are a valid initial state of lock-free atomics on the
     * platforms we build for; atomic_init of each would be the same. */
    memset(m, 0, sizeof *m);
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        if (statuses[i] == status) {
            return i;
        }
    }
    return FB_METRICS_NSTATUS - 1;
}

void fb__metrics_request(fb__http_metrics *m, int route, int method, int status, uint64_t bytes,
                         uint64_t latency_ns)
{
    uint64_t us = latency_ns / 1000;
    size_t b = 0;
    if (route < 0 || route >= FB_ROUTE__COUNT) {
        route = FB_ROUTE_NONE;
    }
    if (method < 0 || method >= FB_METHOD__COUNT) {
        method = FB_METHOD_OTHER;
    }
    while (b < FB_METRICS_NBUCKETS - 1 && us > bucket_us[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&m->requests[route][method][status_slot(status)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&m->bytes_sent[route], bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[route], us, memory_order_relaxed);
}

void fb__metrics_reject(fb__http_metrics *m, int reason)
{
    if (reason < 0 || reason >= FB_REJECT__COUNT) {
        reason = FB_REJECT_OTHER;
    }
    atomic_fetch_add_explicit(&m->rejected[reason], 1, memory_order_relaxed);
}

/* A growing text buffer; after the first failure every append is a no-op
 * and the render reports FB_ENOMEM. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
    int failed;
} strbuf;

static void appendf(strbuf *t, const char *fmt, ...) FB__PRINTF(2, 3);

static void appendf(strbuf *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (t->failed) {
        return;
    }
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        /* n + 1: vsnprintf needs room for its terminating NUL too. */
        if ((size_t)n >= SIZE_MAX - t->len ||
            FB__GROW_ARRAY(&t->p, &t->cap, t->len + (size_t)n + 1, 0) != 0) {
            t->failed = 1;
            return;
        }
    }
}

static uint64_t load(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void render_requests(fb__http_metrics *m, strbuf *t)
{
    appendf(t, "# HELP fastblocks_http_requests_total HTTP requests answered.\n"
               "# TYPE fastblocks_http_requests_total counter\n");
    for (int r = 0; r < FB_ROUTE__COUNT; r++) {
        for (int me = 0; me < FB_METHOD__COUNT; me++) {
            for (int s = 0; s < FB_METRICS_NSTATUS; s++) {
                uint64_t v = load(&m->requests[r][me][s]);
                if (v == 0) {
                    continue;
                }
                if (s == FB_METRICS_NSTATUS - 1) {
                    appendf(t,
                            "fastblocks_http_requests_total{route=\"%s\",method=\"%s\","
                            "status=\"other\"} %llu\n",
                            fb__http_route_name(r), method_names[me], (unsigned long long)v);
                } else {
                    appendf(t,
                            "fastblocks_http_requests_total{route=\"%s\",method=\"%s\","
                            "status=\"%d\"} %llu\n",
                            fb__http_route_name(r), method_names[me], statuses[s],
                            (unsigned long long)v);
                }
            }
        }
    }
    appendf(t, "# HELP fastblocks_http_response_bytes_total Body bytes of the responses sent.\n"
               "# TYPE fastblocks_http_response_bytes_total counter\n");
    for (int r = 0; r < FB_ROUTE__COUNT; r++) {
        appendf(t, "fastblocks_http_response_bytes_total{route=\"%s\"} %llu\n",
                fb__http_route_name(r), (unsigned long long)load(&m->bytes_sent[r]));
    }
}

static void render_latency(fb__http_metrics *m, strbuf *t)
{
    appendf(t, "# HELP fastblocks_http_request_duration_seconds Time from the request line to "
               "the end of the response.\n"
               "# TYPE fastblocks_http_request_duration_seconds histogram\n");
    for (int r = 0; r < FB_ROUTE__COUNT; r++) {
        uint64_t cum = 0;
        const char *name = fb__http_route_name(r);
        for (int b = 0; b < FB_METRICS_NBUCKETS; b++) {
            cum += load(&m->latency[r][b]);
            if (b < FB_METRICS_NBUCKETS - 1) {
                appendf(t,
                        "fastblocks_http_request_duration_seconds_bucket{route=\"%s\","
                        "le=\"%g\"} %llu\n",
                        name, (double)bucket_us[b] / 1e6, (unsigned long long)cum);
            } else {
                appendf(t,
                        "fastblocks_http_request_duration_seconds_bucket{route=\"%s\","
                        "le=\"+Inf\"} %llu\n",
                        name, (unsigned long long)cum);
            }
        }
        appendf(t, "fastblocks_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
                (double)load(&m->latency_sum_us[r]) / 1e6);
        appendf(t, "fastblocks_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
                (unsigned long long)cum);
    }
}

static void render_store(const fb_stats *st, strbuf *t)
{
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"fastblocks_store_blocks", "gauge", "Block files.", st->blocks},
        {"fastblocks_store_file_bytes", "gauge", "Bytes of all block files.", st->file_bytes},
        {"fastblocks_store_live_bytes", "gauge", "Bytes of live records.", st->live_bytes},
        {"fastblocks_store_dead_bytes", "gauge", "Bytes of deleted records not yet compacted.",
         st->dead_bytes},
        {"fastblocks_store_live_records", "gauge", "Live images.", st->live_records},
        {"fastblocks_store_dead_records", "gauge", "Deleted records not yet compacted.",
         st->dead_records},
        {"fastblocks_cache_capacity_bytes", "gauge", "Cache capacity.", st->cache_capacity},
        {"fastblocks_cache_bytes", "gauge", "Bytes held by the cache.", st->cache_bytes},
        {"fastblocks_cache_entries", "gauge", "Images held by the cache.", st->cache_entries},
        {"fastblocks_cache_hits_total", "counter", "Cache hits.", st->cache_hits},
        {"fastblocks_cache_misses_total", "counter", "Cache misses.", st->cache_misses},
        {"fastblocks_cache_evictions_total", "counter", "Cache evictions.", st->cache_evictions},
        {"fastblocks_store_syncs_total", "counter", "fdatasync calls made for puts.", st->syncs},
        {"fastblocks_store_synced_puts_total", "counter",
         "Puts made durable by those syncs (synced_puts / syncs is the mean group-commit batch).",
         st->synced_puts},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        appendf(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", rows[i].name, rows[i].help,
                rows[i].name, rows[i].type, rows[i].name, (unsigned long long)rows[i].value);
    }
}

int fb__metrics_render(fb__http_metrics *m, const fb_stats *st, char **out, size_t *len)
{
    strbuf t = {fb__malloc(16384), 0, 16384, 0};
    if (t.p == NULL) {
        return fb__error(FB_ENOMEM, "out of memory rendering metrics");
    }
    render_requests(m, &t);
    render_latency(m, &t);
    appendf(&t, "# HELP fastblocks_uploads_rejected_total Uploads refused, by reason.\n"
                "# TYPE fastblocks_uploads_rejected_total counter\n");
    for (int i = 0; i < FB_REJECT__COUNT; i++) {
        appendf(&t, "fastblocks_uploads_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
                (unsigned long long)load(&m->rejected[i]));
    }
    appendf(&t,
            "# HELP fastblocks_uploads_in_progress Uploads being converted or queued.\n"
            "# TYPE fastblocks_uploads_in_progress gauge\n"
            "fastblocks_uploads_in_progress %llu\n"
            "# HELP fastblocks_http_aborted_total Requests ended by a client error or timeout.\n"
            "# TYPE fastblocks_http_aborted_total counter\n"
            "fastblocks_http_aborted_total %llu\n",
            (unsigned long long)load(&m->uploads_in_progress),
            (unsigned long long)load(&m->client_errors));
    appendf(&t,
            "# HELP fastblocks_compactions_total Background compaction runs.\n"
            "# TYPE fastblocks_compactions_total counter\n"
            "fastblocks_compactions_total %llu\n"
            "# HELP fastblocks_compaction_failures_total Background compaction runs that failed.\n"
            "# TYPE fastblocks_compaction_failures_total counter\n"
            "fastblocks_compaction_failures_total %llu\n"
            "# HELP fastblocks_compacted_blocks_total Blocks rewritten by background compaction.\n"
            "# TYPE fastblocks_compacted_blocks_total counter\n"
            "fastblocks_compacted_blocks_total %llu\n"
            "# HELP fastblocks_compacted_bytes_total Bytes reclaimed by background compaction.\n"
            "# TYPE fastblocks_compacted_bytes_total counter\n"
            "fastblocks_compacted_bytes_total %llu\n",
            (unsigned long long)load(&m->compactions),
            (unsigned long long)load(&m->compaction_failures),
            (unsigned long long)load(&m->compacted_blocks),
            (unsigned long long)load(&m->compacted_bytes));
    if (st != NULL) {
        render_store(st, &t);
    }
    if (t.failed) {
        fb__free(t.p);
        return fb__error(FB_ENOMEM, "out of memory rendering metrics");
    }
    *out = t.p;
    *len = t.len;
    return 0;
}
