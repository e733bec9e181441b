/*
 * routes - see routes.h. Owns the HTTP semantics of the service: which
 * route answers what, with which status, headers and JSON body. Storage
 * errors become statuses through fb__http_status_for (parse.c), the one
 * table.
 */
#include "http/routes.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/accesslog.h"
#include "http/multipart.h"
#include "util/alloc.h"
#include "util/error.h"

/* Images never change under an id, so caches may keep them forever. */
#define CACHE_CONTROL "public, max-age=31536000, immutable"
#define JSON_TYPE "application/json"

static const char health_body[] = "{\"status\":\"ok\"}";
static const char oom_body[] = "{\"detail\":\"out of memory\"}";
static const char range_body[] = "{\"detail\":\"Range Not Satisfiable\"}";

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
    }
    if (n > 0) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
}

/* Copies text for a JSON string: jansson wants UTF-8, and error details
 * may quote client bytes, so anything outside printable ASCII becomes '?'. */
static void ascii_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Routes and methods                                                        */

static const char *allowed_methods(int route)
{
    switch (route) {
    case FB_ROUTE_UPLOAD:
    case FB_ROUTE_IMAGES:
        return "POST";
    case FB_ROUTE_IMAGE_ID:
    case FB_ROUTE_IMAGE_TRIPLE:
        return "GET, HEAD, DELETE";
    default:
        return "GET, HEAD";
    }
}

static int method_allowed(int route, int method)
{
    switch (route) {
    case FB_ROUTE_UPLOAD:
    case FB_ROUTE_IMAGES:
        return method == FB_METHOD_POST;
    case FB_ROUTE_IMAGE_ID:
    case FB_ROUTE_IMAGE_TRIPLE:
        return method == FB_METHOD_GET || method == FB_METHOD_HEAD || method == FB_METHOD_DELETE;
    default:
        return method == FB_METHOD_GET || method == FB_METHOD_HEAD;
    }
}

static int is_upload(const fb__http_req *req)
{
    return req->method == FB_METHOD_POST &&
           (req->path.route == FB_ROUTE_UPLOAD || req->path.route == FB_ROUTE_IMAGES);
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                   */

/* Queues resp (consumed) with status. A NULL resp (out of memory) closes
 * the connection, the only thing left to do. */
static enum MHD_Result send_response(fb__http_req *req, unsigned status, struct MHD_Response *resp,
                                     uint64_t body_len)
{
    enum MHD_Result r;
    req->phase = FB_PHASE_SENT;
    if (resp == NULL) {
        return MHD_NO;
    }
    r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->status = (int)status;
    req->bytes = req->method == FB_METHOD_HEAD ? 0 : body_len;
    return r;
}

static enum MHD_Result send_static_json(fb__http_req *req, unsigned status, const char *body)
{
    size_t len = strlen(body);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
    }
    return send_response(req, status, resp, len);
}

/* Sends text (copied) as a JSON body, adding one optional extra header. */
static enum MHD_Result send_json_text(fb__http_req *req, unsigned status, const char *text,
                                      size_t len, const char *hname, const char *hvalue)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return send_response(req, status, NULL, 0);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
    if (hname != NULL) {
        MHD_add_response_header(resp, hname, hvalue);
    }
    return send_response(req, status, resp, len);
}

/* Sends obj (reference consumed) as the body. */
static enum MHD_Result send_json(fb__http_req *req, unsigned status, json_t *obj, const char *hname,
                                 const char *hvalue)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    enum MHD_Result r;
    json_decref(obj);
    if (text == NULL) {
        return send_static_json(req, 503, oom_body);
    }
    r = send_json_text(req, status, text, strlen(text), hname, hvalue);
    free(text); /* jansson's default allocator is malloc */
    return r;
}

/* {"detail": detail} with the headers some statuses require. */
static enum MHD_Result send_error(fb__http_req *req, unsigned status, const char *detail)
{
    char clean[512];
    const char *hname = NULL, *hvalue = NULL;
    ascii_copy(clean, sizeof clean, detail);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        hname = MHD_HTTP_HEADER_ALLOW;
        hvalue = allowed_methods(req->path.route);
    } else if (status == MHD_HTTP_UNAUTHORIZED) {
        hname = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
        hvalue = "Bearer";
    }
    return send_json(req, status, json_pack("{s:s}", "detail", clean), hname, hvalue);
}

/* An FB_E* error of the store, with its detail. ENOTFOUND keeps the seed's
 * exact body. */
static enum MHD_Result send_store_error(fb__http_req *req, int rc, const char *detail)
{
    char text[400];
    if (rc == FB_ENOTFOUND) {
        return send_error(req, MHD_HTTP_NOT_FOUND, "Image not found");
    }
    if (detail != NULL && detail[0] != '\0') {
        snprintf(text, sizeof text, "%s: %s", fb_strerror(rc), detail);
    } else {
        snprintf(text, sizeof text, "%s", fb_strerror(rc));
    }
    return send_error(req, (unsigned)fb__http_status_for(rc), text);
}

static void set_early(fb__http_req *req, int status, int reject, const char *detail)
{
    req->early_status = status;
    req->early_reject = reject;
    copy_str(req->early_detail, sizeof req->early_detail, detail);
}

static enum MHD_Result send_early(fb__http_req *req)
{
    if (req->early_reject >= 0 && is_upload(req)) {
        fb__metrics_reject(&req->srv->metrics, req->early_reject);
    }
    return send_error(req, (unsigned)req->early_status, req->early_detail);
}

/* ------------------------------------------------------------------------ */
/* Images                                                                    */

static void release_buf(void *cls)
{
    fb_buf_release(cls);
}

/* The strong ETag of an image: its id in quotes (built without snprintf:
 * it is on every reply). */
static void format_etag(const fb_meta *m, char out[FB_ID_LEN + 3])
{
    out[0] = '"';
    memcpy(out + 1, m->id, FB_ID_LEN);
    memcpy(out + 1 + FB_ID_LEN, "\"", 2);
}

static void add_image_headers(struct MHD_Response *resp, const fb_meta *m)
{
    char etag[FB_ID_LEN + 3], date[FB_HTTP_DATE_LEN];
    format_etag(m, etag);
    fb__http_date(m->created, date);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, CACHE_CONTROL);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
}

/* The Range header, unless an If-Range validator says the client's copy is
 * another representation (never the case with immutable ids, but a client
 * may send a stale date or a foreign tag). */
static const char *effective_range(fb__http_req *req, const fb_meta *m)
{
    const char *range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Range");
    const char *if_range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "If-Range");
    char etag[FB_ID_LEN + 3], date[FB_HTTP_DATE_LEN];
    if (range == NULL || if_range == NULL) {
        return range;
    }
    format_etag(m, etag);
    fb__http_date(m->created, date);
    return (strcmp(if_range, etag) == 0 || strcmp(if_range, date) == 0) ? range : NULL;
}

static enum MHD_Result serve_image(fb__http_req *req)
{
    fb_store *store = req->srv->store;
    fb_buf *buf = NULL;
    fb_meta meta;
    int fd = -1, kind;
    uint64_t fd_offset = 0, total, first = 0, last = 0;
    struct MHD_Response *resp = NULL;
    unsigned status = MHD_HTTP_OK;
    enum MHD_Result ret;
    char crange[96];

    kind = fb_get_direct(store, &req->path.addr, &buf, &fd, &fd_offset, &meta);
    if (kind < 0) {
        return send_store_error(req, kind, fb_last_error());
    }
    if (fb__http_etag_match(
            MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "If-None-Match"), meta.id)) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp != NULL) {
            add_image_headers(resp, &meta);
        }
        ret = send_response(req, MHD_HTTP_NOT_MODIFIED, resp, 0);
        goto out;
    }
    total = buf != NULL ? fb_buf_len(buf) : meta.bytes;
    switch (fb__http_parse_range(effective_range(req, &meta), total, &first, &last)) {
    case FB_RANGE_INVALID:
        ret = send_error(req, MHD_HTTP_BAD_REQUEST, "malformed Range header");
        goto out;
    case FB_RANGE_UNSATISFIABLE:
        snprintf(crange, sizeof crange, "bytes */%" PRIu64, total);
        ret = send_json_text(req, MHD_HTTP_RANGE_NOT_SATISFIABLE, range_body, sizeof range_body - 1,
                             MHD_HTTP_HEADER_CONTENT_RANGE, crange);
        goto out;
    case FB_RANGE_PARTIAL:
        status = MHD_HTTP_PARTIAL_CONTENT;
        snprintf(crange, sizeof crange, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last,
                 total);
        break;
    default:
        first = 0;
        last = total == 0 ? 0 : total - 1;
        break;
    }
    {
        uint64_t n = total == 0 ? 0 : last - first + 1;
        if (buf != NULL) {
            /* Zero copy: the response holds a reference to the cache's bytes
             * and drops it when sent, whatever the cache evicts meanwhile. */
            resp = MHD_create_response_from_buffer_with_free_callback_cls(
                (size_t)n, (void *)(fb_buf_data(buf) + first), release_buf, buf);
            if (resp != NULL) {
                buf = NULL;
            }
        } else {
            /* sendfile from the block file; MHD closes the descriptor. */
            resp = MHD_create_response_from_fd_at_offset64(n, fd, fd_offset + first);
            if (resp != NULL) {
                fd = -1;
            }
        }
        if (resp != NULL) {
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/webp");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
            add_image_headers(resp, &meta);
            if (status == MHD_HTTP_PARTIAL_CONTENT) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, crange);
            }
        }
        ret = send_response(req, status, resp, n);
    }
out:
    fb_buf_release(buf);
    if (fd >= 0) {
        close(fd);
    }
    return ret;
}

static enum MHD_Result serve_meta(fb__http_req *req)
{
    fb_meta meta;
    char json[FB_META_JSON_MAX];
    int rc = fb_stat(req->srv->store, &req->path.addr, &meta);
    if (rc != 0) {
        return send_store_error(req, rc, fb_last_error());
    }
    rc = fb_meta_json(&meta, json, sizeof json);
    if (rc < 0) {
        return send_store_error(req, rc, fb_last_error());
    }
    return send_json_text(req, MHD_HTTP_OK, json, (size_t)rc, NULL, NULL);
}

static enum MHD_Result serve_metrics(fb__http_req *req)
{
    fb_stats st;
    char *text = NULL;
    size_t len = 0;
    struct MHD_Response *resp;
    int have_stats = fb_get_stats(req->srv->store, &st) == 0;
    if (fb__metrics_render(&req->srv->metrics, have_stats ? &st : NULL, &text, &len) != 0) {
        return send_static_json(req, 503, oom_body);
    }
    resp = MHD_create_response_from_buffer_with_free_callback(len, text, fb__free);
    if (resp == NULL) {
        fb__free(text);
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
    }
    return send_response(req, MHD_HTTP_OK, resp, len);
}

/* ------------------------------------------------------------------------ */
/* Uploads and deletes                                                       */

/* Conversion options from the query string over the server's defaults. */
static int read_upload_options(fb__http_req *req)
{
    static const struct {
        const char *name;
        int64_t lo, hi; /* hi < 0: boolean */
    } opts[] = {
        {"quality", 0, 100}, {"effort", 0, 6},         {"max_dimension", 0, 1 << 30},
        {"lossless", 0, -1}, {"keep_metadata", 0, -1},
    };
    req->opts = req->srv->cfg->image;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *value = NULL;
        size_t vlen = 0;
        int64_t v = 0;
        int b = 0, rc;
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, opts[i].name,
                                          strlen(opts[i].name), &value, &vlen) != MHD_YES) {
            continue;
        }
        if (opts[i].hi < 0) {
            rc = fb__http_parse_bool_opt(opts[i].name, value, &b);
            v = b;
        } else {
            rc = fb__http_parse_int_opt(opts[i].name, value, opts[i].lo, opts[i].hi, &v);
        }
        if (rc != 0) {
            return rc;
        }
        switch (i) {
        case 0:
            req->opts.quality = (int)v;
            break;
        case 1:
            req->opts.effort = (int)v;
            break;
        case 2:
            req->opts.max_dimension = (uint32_t)v;
            break;
        case 3:
            req->opts.lossless = (int)v;
            break;
        default:
            req->opts.keep_metadata = (int)v;
            break;
        }
    }
    return 0;
}

/* First-call checks of an upload: length, limit, content type, options. */
static void begin_upload(fb__http_req *req)
{
    const fb_http_config *cfg = req->srv->cfg;
    const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
    uint64_t declared = 0;
    char detail[160];
    if (cl == NULL && (te == NULL || strstr(te, "chunked") == NULL)) {
        set_early(req, MHD_HTTP_LENGTH_REQUIRED, FB_REJECT_NO_LENGTH,
                  "an upload needs a Content-Length (or chunked transfer encoding)");
        return;
    }
    if (cl != NULL && fb__http_parse_u64(cl, strlen(cl), &declared) != 0) {
        set_early(req, MHD_HTTP_BAD_REQUEST, FB_REJECT_BAD_REQUEST, "malformed Content-Length");
        return;
    }
    if (declared > cfg->max_upload) {
        snprintf(detail, sizeof detail,
                 "upload of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes", declared,
                 cfg->max_upload);
        set_early(req, MHD_HTTP_CONTENT_TOO_LARGE, FB_REJECT_TOO_LARGE, detail);
        return;
    }
    if (req->path.route == FB_ROUTE_UPLOAD && !fb__multipart_is_form(ct)) {
        set_early(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, FB_REJECT_UNSUPPORTED,
                  "POST /upload/ expects multipart/form-data with the image in the field "
                  "\"file\"");
        return;
    }
    if (read_upload_options(req) != 0) {
        set_early(req, MHD_HTTP_BAD_REQUEST, FB_REJECT_BAD_REQUEST, fb_last_error());
        return;
    }
    req->max_body = cfg->max_upload;
}

/* Appends a chunk of the body, growing the buffer geometrically so that a
 * lying Content-Length costs nothing until the bytes really arrive. */
static int append_body(fb__http_req *req, const char *data, size_t n)
{
    if (n > req->max_body - req->body_len) {
        char detail[160];
        snprintf(detail, sizeof detail, "upload exceeds the limit of %" PRIu64 " bytes",
                 req->max_body);
        set_early(req, MHD_HTTP_CONTENT_TOO_LARGE, FB_REJECT_TOO_LARGE, detail);
        return -1;
    }
    if (n > req->body_cap - req->body_len) {
        size_t want = req->body_len + n;
        size_t cap = req->body_cap < 65536 ? 65536 : req->body_cap;
        uint8_t *grown;
        while (cap < want) {
            cap = cap > SIZE_MAX / 2 ? want : cap * 2;
        }
        if (cap > req->max_body) {
            cap = (size_t)req->max_body;
        }
        grown = fb__realloc(req->body, cap);
        if (grown == NULL) {
            set_early(req, MHD_HTTP_SERVICE_UNAVAILABLE, FB_REJECT_OTHER,
                      "out of memory buffering the upload");
            return -1;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    return 0;
}

/* Finds the image in the complete body; 0, or -1 with an early error set. */
static int locate_image(fb__http_req *req)
{
    const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
    if (fb__multipart_is_form(ct)) {
        char boundary[FB_MULTIPART_BOUNDARY_MAX + 1];
        fb__multipart_part part;
        if (fb__multipart_boundary(ct, boundary) != 0 ||
            fb__multipart_find(req->body, req->body_len, boundary, "file", &part) != 0) {
            set_early(req, MHD_HTTP_BAD_REQUEST, FB_REJECT_BAD_REQUEST, fb_last_error());
            return -1;
        }
        req->image = part.data;
        req->image_len = part.len;
    } else {
        req->image = req->body;
        req->image_len = req->body_len;
    }
    if (req->image_len == 0) {
        set_early(req, MHD_HTTP_BAD_REQUEST, FB_REJECT_BAD_REQUEST, "the uploaded image is empty");
        return -1;
    }
    return 0;
}

static enum MHD_Result start_job(fb__http_req *req)
{
    int upload = req->method == FB_METHOD_POST;
    req->phase = FB_PHASE_JOB;
    if (upload) {
        atomic_fetch_add(&req->srv->metrics.uploads_in_progress, 1);
    }
    if (fb__http_pool_submit(req->srv->pool, req) != 0) {
        if (upload) {
            atomic_fetch_sub(&req->srv->metrics.uploads_in_progress, 1);
        }
        req->phase = FB_PHASE_BODY;
        set_early(req, MHD_HTTP_SERVICE_UNAVAILABLE, FB_REJECT_BUSY,
                  "too many uploads in progress; retry later");
        return send_early(req);
    }
    return MHD_YES;
}

void fb__http_run_job(fb__http_req *req)
{
    int rc;
    if (req->method == FB_METHOD_POST) {
        rc = fb_put(req->srv->store, req->image, req->image_len, &req->opts, &req->meta);
    } else {
        rc = fb_delete(req->srv->store, &req->path.addr, &req->block);
    }
    req->job_rc = rc;
    if (rc != 0) {
        copy_str(req->job_detail, sizeof req->job_detail, fb_last_error());
    }
}

static int reject_reason(int rc)
{
    switch (rc) {
    case FB_EUNSUPPORTED:
        return FB_REJECT_UNSUPPORTED;
    case FB_EIMAGE:
        return FB_REJECT_UNDECODABLE;
    case FB_ELIMIT:
    case FB_ETOOBIG:
        return FB_REJECT_LIMIT;
    case FB_EINVAL:
        return FB_REJECT_BAD_REQUEST;
    case FB_ENOSPC:
    case FB_EIO:
    case FB_EREADONLY:
    case FB_ECLOSED:
        return FB_REJECT_STORE;
    default:
        return FB_REJECT_OTHER;
    }
}

static json_t *block_stats_json(const fb_block_stats *b)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:b}", "block", b->block, "file_bytes",
                     (json_int_t)b->file_bytes, "live_bytes", (json_int_t)b->live_bytes,
                     "dead_bytes", (json_int_t)b->dead_bytes, "live_records",
                     (json_int_t)b->live_records, "dead_records", (json_int_t)b->dead_records,
                     "sealed", b->sealed ? 1 : 0);
}

static enum MHD_Result send_job_result(fb__http_req *req)
{
    char json[FB_META_JSON_MAX], location[16 + FB_ID_LEN];
    json_t *meta;
    int n;
    if (req->job_rc != 0) {
        if (req->method == FB_METHOD_POST) {
            fb__metrics_reject(&req->srv->metrics, reject_reason(req->job_rc));
        }
        return send_store_error(req, req->job_rc, req->job_detail);
    }
    if (req->method == FB_METHOD_DELETE) {
        return send_json(req, MHD_HTTP_OK,
                         json_pack("{s:s,s:o}", "message", "Image deleted successfully",
                                   "updated_metadata", block_stats_json(&req->block)),
                         NULL, NULL);
    }
    n = fb_meta_json(&req->meta, json, sizeof json);
    if (n < 0) {
        return send_store_error(req, n, fb_last_error());
    }
    if (req->path.route == FB_ROUTE_IMAGES) {
        snprintf(location, sizeof location, "/images/%s", req->meta.id);
        return send_json_text(req, MHD_HTTP_CREATED, json, (size_t)n, MHD_HTTP_HEADER_LOCATION,
                              location);
    }
    meta = json_loadb(json, (size_t)n, 0, NULL);
    return send_json(
        req, MHD_HTTP_OK,
        json_pack("{s:s,s:o}", "message", "Image uploaded successfully", "metadata", meta), NULL,
        NULL);
}

/* ------------------------------------------------------------------------ */
/* The libmicrohttpd callbacks                                               */

static void describe_client(fb__http_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    copy_str(req->client, sizeof req->client, "unix");
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->client,
                  sizeof req->client);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  req->client, sizeof req->client);
    }
}

void *fb__http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    fb__http_server *srv = cls;
    fb__http_req *req = fb__calloc(1, sizeof *req);
    if (req == NULL) {
        return NULL; /* the handler sees no context and closes the connection */
    }
    req->srv = srv;
    req->conn = conn;
    req->start_ns = mono_ns();
    req->early_reject = -1;
    copy_str(req->target, sizeof req->target, uri);
    atomic_fetch_add(&srv->in_flight, 1);
    return req;
}

/* The first handler call: everything that can be decided from the headers. */
static void begin(fb__http_req *req, const char *url, const char *method, const char *version)
{
    const fb_http_config *cfg = req->srv->cfg;
    int writes;
    req->phase = FB_PHASE_BODY;
    req->method = fb__http_method_of(method);
    copy_str(req->method_s, sizeof req->method_s, method);
    copy_str(req->version, sizeof req->version, version);
    describe_client(req);
    fb__http_route_path(url, &req->path);
    writes = req->method == FB_METHOD_POST || req->method == FB_METHOD_DELETE;
    if (req->path.route == FB_ROUTE_NONE) {
        set_early(req, MHD_HTTP_NOT_FOUND, -1, "Not Found");
    } else if (!method_allowed(req->path.route, req->method)) {
        set_early(req, MHD_HTTP_METHOD_NOT_ALLOWED, -1, "Method Not Allowed");
    } else if (writes && cfg->token != NULL &&
               !fb__http_bearer_ok(
                   MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization"),
                   cfg->token, cfg->token_len)) {
        set_early(req, MHD_HTTP_UNAUTHORIZED, FB_REJECT_UNAUTHORIZED,
                  "a valid bearer token is required for uploads and deletes");
    } else if (req->path.addr_rc == FB_ENOTFOUND) {
        /* Well-formed, but no key can hold it (block 0, offset too large). */
        set_early(req, MHD_HTTP_NOT_FOUND, -1, "Image not found");
    } else if (req->path.addr_rc != 0) {
        set_early(req, MHD_HTTP_BAD_REQUEST, -1, fb_last_error());
    } else if (is_upload(req)) {
        begin_upload(req);
    }
}

/* Whether a body follows the headers. */
static int has_body(fb__http_req *req)
{
    const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    return te != NULL || (cl != NULL && strcmp(cl, "0") != 0);
}

/* The final call of a request (all of the body received): answer it. */
static enum MHD_Result finish(fb__http_req *req)
{
    if (req->early_status != 0) {
        return send_early(req);
    }
    switch (req->path.route) {
    case FB_ROUTE_HEALTHZ:
        return send_static_json(req, MHD_HTTP_OK, health_body);
    case FB_ROUTE_METRICS:
        return serve_metrics(req);
    case FB_ROUTE_IMAGE_META:
        return serve_meta(req);
    case FB_ROUTE_UPLOAD:
    case FB_ROUTE_IMAGES:
        if (locate_image(req) != 0) {
            return send_early(req);
        }
        return start_job(req);
    default:
        if (req->method == FB_METHOD_DELETE) {
            return start_job(req);
        }
        return serve_image(req);
    }
}

enum MHD_Result fb__http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    fb__http_req *req = *con_cls;
    (void)cls;
    (void)conn;
    if (req == NULL) {
        return MHD_NO;
    }
    switch (req->phase) {
    case FB_PHASE_NEW:
        begin(req, url, method, version);
        if (req->early_status != 0 && has_body(req)) {
            /* Refused before its body: answer now rather than read a body
             * we would discard. libmicrohttpd then closes the connection,
             * which it must anyway with the body unread. */
            return send_early(req);
        }
        return MHD_YES; /* never queue on the first call: keep-alive */
    case FB_PHASE_BODY:
        if (*upload_data_size != 0) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            if (req->early_status != 0) {
                /* A failure while receiving (over the limit, out of
                 * memory): 0.9.75 cannot queue a reply until the body has
                 * been read, so drain it, up to a bound. */
                req->discarded += n;
                return req->discarded > req->srv->cfg->max_upload ? MHD_NO : MHD_YES;
            }
            if (is_upload(req)) {
                (void)append_body(req, upload_data, n);
            }
            return MHD_YES; /* bodies of other requests are ignored */
        }
        return finish(req);
    case FB_PHASE_DONE:
        if (req->method == FB_METHOD_POST) {
            atomic_fetch_sub(&req->srv->metrics.uploads_in_progress, 1);
        }
        return send_job_result(req);
    default:
        /* Late body bytes after an early reply: drop them. */
        *upload_data_size = 0;
        return MHD_YES;
    }
}

void fb__http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    fb__http_server *srv = cls;
    fb__http_req *req = *con_cls;
    uint64_t latency_us;
    (void)conn;
    if (req == NULL) {
        return;
    }
    *con_cls = NULL;
    latency_us = (mono_ns() - req->start_ns) / 1000;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        atomic_fetch_add_explicit(&srv->metrics.client_errors, 1, memory_order_relaxed);
    }
    if (req->phase != FB_PHASE_NEW) {
        fb__metrics_request(&srv->metrics, req->path.route, req->method, req->status, req->bytes,
                            latency_us * 1000);
    }
    if (!srv->cfg->quiet) {
        char line[FB_ACCESSLOG_LINE_MAX];
        struct timespec now;
        size_t n;
        clock_gettime(CLOCK_REALTIME, &now);
        n = fb__accesslog_format(
            line, sizeof line, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
            req->client[0] ? req->client : "-", req->method_s[0] ? req->method_s : "-", req->target,
            req->version[0] ? req->version : "-", req->status, req->bytes, latency_us);
        fb__accesslog_write(line, n);
    }
    fb__free(req->body);
    fb__free(req);
    atomic_fetch_sub(&srv->in_flight, 1);
}
