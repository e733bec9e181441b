/*
 * routes - what each request gets: the libmicrohttpd callbacks (request
 * start, access handler, completion), the route handlers, the JSON bodies
 * and error statuses, and the upload/delete jobs that server.c runs on its
 * worker threads.
 *
 * A request's life: fb__http_uri_log allocates its context; the first
 * handler call checks route, method, auth and lengths but does not queue
 * (libmicrohttpd 0.9.75 would close a keep-alive connection), except to
 * refuse a request whose body is still to come (0.9.75 cannot queue while a
 * body is being received); body calls buffer the upload; the final call
 * queues the response, or suspends the connection and hands a job to the
 * workers, which resume it when done; fb__http_completed records metrics,
 * writes the access log line and frees the context.
 */
#ifndef FB_HTTP_ROUTES_H
#define FB_HTTP_ROUTES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "fastblocks.h"
#include "http/metrics.h"
#include "http/parse.h"
#include "http/server.h"

typedef struct fb__http_pool fb__http_pool;

/* Everything the callbacks share; one per running server. */
typedef struct fb__http_server {
    fb_store *store;
    const fb_http_config *cfg;
    fb__http_metrics metrics;
    fb__http_pool *pool;
    atomic_int in_flight; /* requests started and not completed */
} fb__http_server;

enum fb__http_phase {
    FB_PHASE_NEW = 0, /* context allocated, handler not called yet */
    FB_PHASE_BODY,    /* first call done; receiving the body, if any */
    FB_PHASE_JOB,     /* suspended: a worker runs the upload or delete */
    FB_PHASE_DONE,    /* the job finished; its result waits to be sent */
    FB_PHASE_SENT     /* response queued */
};

/* One request. */
typedef struct fb__http_req {
    fb__http_server *srv;
    struct MHD_Connection *conn;
    struct fb__http_req *next; /* worker queue link */
    uint64_t start_ns;
    int phase;
    int method;
    fb__http_path path;
    char method_s[12];
    char version[12];
    char client[64];
    char target[512]; /* raw request target, for the log */
    /* An error found before the body arrived, answered on the next call. */
    int early_status;
    int early_reject; /* enum fb__http_reject, -1 if none */
    char early_detail[256];
    /* Upload body. */
    uint8_t *body;
    size_t body_len, body_cap;
    uint64_t max_body;
    uint64_t discarded; /* body bytes dropped after a failure while receiving */
    fb_image_opts opts;
    const uint8_t *image; /* the image within body (multipart field or all of it) */
    size_t image_len;
    /* Job result, written by a worker before it resumes the connection. */
    int job_rc;
    fb_meta meta;
    fb_block_stats block;
    char job_detail[256];
    /* What was sent. */
    int status;
    uint64_t bytes;
} fb__http_req;

/* MHD_OPTION_URI_LOG_CALLBACK: allocates the request context (its return
 * value becomes the handler's *con_cls). cls is the fb__http_server. */
void *fb__http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);

/* The MHD access handler; cls is the fb__http_server. */
enum MHD_Result fb__http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls);

/* MHD_OPTION_NOTIFY_COMPLETED: metrics, access log, free. */
void fb__http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe);

/* Runs a request's job (fb_put or fb_delete) on a worker thread and stores
 * the result in req; the caller then resumes the connection. */
void fb__http_run_job(fb__http_req *req);

/*
 * Implemented by server.c: suspends req's connection and queues req for a
 * worker, which runs fb__http_run_job, sets FB_PHASE_DONE and resumes the
 * connection. Returns 0, or FB_ECLOSED without suspending when the queue is
 * full or the pool is stopping (the caller answers 503).
 */
int fb__http_pool_submit(fb__http_pool *pool, fb__http_req *req);

#endif
