/*
 * server - `fastblocks serve`: the HTTP image service on libmicrohttpd.
 *
 * fb_http_serve binds the listen address, prints it, serves until
 * fb_http_stop() is called (from a signal handler), then stops accepting,
 * lets requests in flight finish (uploads included) and returns. The store
 * stays the caller's: it opens it before and closes (syncs) it after.
 *
 * Threads: libmicrohttpd's epoll thread pool parses requests and sends
 * responses (reads never wait for a conversion); uploads and deletes, which
 * decode, encode or fsync, run on a separate small pool of worker threads
 * while their connection is suspended.
 */
#ifndef FB_HTTP_SERVER_H
#define FB_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fastblocks.h"

typedef struct fb_http_config {
    const char *listen;          /* "HOST:PORT" or "unix:PATH"; default "127.0.0.1:8000" */
    unsigned threads;            /* request threads; 0 = one per core */
    unsigned upload_threads;     /* conversion workers; 0 = one per core */
    unsigned max_connections;    /* default 1024 */
    unsigned max_queued_uploads; /* uploads waiting for a worker before 503; default 256 */
    uint64_t max_upload;         /* largest request body in bytes; default 50 MiB */
    unsigned timeout_s;          /* a connection idle this long is closed; default 30 */
    unsigned shutdown_timeout_s; /* wait at most this long for requests in flight; default 60 */
    size_t connection_memory;    /* per-connection buffer for headers; default 32 KiB */
    unsigned compact_interval_s; /* background compaction period; 0: never; default 600 */
    double compact_threshold;    /* dead ratio that makes a block worth it; default 0.3 */
    const char *token;           /* bearer token for writes and deletes; NULL: none */
    size_t token_len;
    int quiet;           /* 1: no access log */
    fb_image_opts image; /* upload defaults; query parameters override them */
    FILE *announce;      /* where "fastblocks: listening on ..." goes; default stdout */
} fb_http_config;

/* Fills the defaults above. */
void fb_http_config_init(fb_http_config *cfg);

/*
 * Serves store until fb_http_stop(). Returns 0 after a clean shutdown, or a
 * negative FB_E* code with the detail set when the service cannot start
 * (bad listen address, address in use, ...). Only one server runs per
 * process at a time.
 */
int fb_http_serve(fb_store *store, const fb_http_config *cfg);

/* Lowers the calling thread's CPU priority below the request threads' (for
 * the conversion workers and the compactor). */
void fb__http_background_thread(void);

/* Asks the running server to shut down. Async-signal-safe; a no-op when
 * no server runs. */
void fb_http_stop(void);

#endif
