/*
 * compactor - see compactor.h. One thread, a mutex and a condition variable:
 * the thread sleeps on the condition for the interval (so stopping wakes it
 * at once), runs fb_compact outside the lock, and fb_compact asks the
 * progress callback after each record whether to go on.
 */
#include "http/compactor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/server.h"
#include "util/alloc.h"
#include "util/error.h"

struct fb__http_compactor {
    fb_store *store;
    fb__http_metrics *metrics;
    unsigned interval_s;
    double threshold;
    int quiet;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by stop */
    atomic_bool stopping;
};

/* fb_progress_fn: a non-zero return cancels the run (shutdown). */
static int keep_going(void *userdata, uint64_t done, uint64_t total)
{
    fb__http_compactor *c = userdata;
    (void)done;
    (void)total;
    return atomic_load(&c->stopping) ? 1 : 0;
}

/* Sleeps until the next run is due; false when the thread must stop. */
static bool wait_interval(fb__http_compactor *c)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)c->interval_s;
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->stopping)) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return !atomic_load(&c->stopping);
}

static void run_once(fb__http_compactor *c)
{
    fb_compact_result res;
    memset(&res, 0, sizeof res);
    int rc = fb_compact(c->store, c->threshold, keep_going, c, &res);
    fb__http_metrics *m = c->metrics;
    atomic_fetch_add_explicit(&m->compactions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->compacted_blocks, res.blocks_compacted, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->compacted_bytes, res.bytes_reclaimed, memory_order_relaxed);
    if (rc != 0 && !atomic_load(&c->stopping)) {
        atomic_fetch_add_explicit(&m->compaction_failures, 1, memory_order_relaxed);
        /* An error is worth a line even with --quiet (which silences the
         * access log): the space of deleted images is not coming back. */
        fprintf(stderr, "fastblocks: background compaction failed: %s: %s\n", fb_strerror(rc),
                fb_last_error());
    } else if (res.blocks_compacted > 0 && !c->quiet) {
        fprintf(stderr,
                "fastblocks: compacted %u blocks: %llu images moved, %llu bytes reclaimed\n",
                res.blocks_compacted, (unsigned long long)res.records_moved,
                (unsigned long long)res.bytes_reclaimed);
    }
}

static void *compactor_main(void *arg)
{
    fb__http_compactor *c = arg;
    fb__http_background_thread();
    while (wait_interval(c)) {
        run_once(c);
    }
    return NULL;
}

int fb__compactor_start(fb_store *store, unsigned interval_s, double threshold, fb__http_metrics *m,
                        int quiet, fb__http_compactor **out)
{
    *out = NULL;
    if (interval_s == 0) {
        return 0;
    }
    fb__http_compactor *c = fb__calloc(1, sizeof *c);
    if (c == NULL) {
        return fb__error(FB_ENOMEM, "out of memory starting the compactor");
    }
    c->store = store;
    c->metrics = m;
    c->interval_s = interval_s;
    c->threshold = threshold;
    c->quiet = quiet;
    atomic_init(&c->stopping, false);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    int err = pthread_create(&c->thread, NULL, compactor_main, c);
    if (err != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        fb__free(c);
        return fb__error(FB_ENOMEM, "cannot start the compactor thread: %s", strerror(err));
    }
    *out = c;
    return 0;
}

void fb__compactor_stop(fb__http_compactor *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stopping, true);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    fb__free(c);
}
