/*
 * compactor - the server's background compaction.
 *
 * `fastblocks compact` is a writer and cannot open a store that a server
 * holds, so the server reclaims the space of deleted images itself: every
 * interval a thread runs fb_compact (online: reads and uploads go on) at a
 * lower CPU priority than the request threads. Shutdown cancels a run in
 * progress through fb_compact's progress callback; a cancelled or crashed
 * run loses nothing (see docs/FORMAT.md, compaction).
 */
#ifndef FB_HTTP_COMPACTOR_H
#define FB_HTTP_COMPACTOR_H

#include "fastblocks.h"
#include "http/metrics.h"

typedef struct fb__http_compactor fb__http_compactor;

/*
 * Starts the thread: every interval_s seconds it compacts the sealed blocks
 * of store whose dead ratio is at least threshold, counting runs, failures,
 * blocks and bytes in m, and saying what it did on stderr unless quiet.
 * interval_s 0 starts nothing (*out = NULL). Returns 0 or an FB_E* code.
 */
int fb__compactor_start(fb_store *store, unsigned interval_s, double threshold, fb__http_metrics *m,
                        int quiet, fb__http_compactor **out);

/* Cancels a run in progress, joins the thread and frees c (NULL: no-op). */
void fb__compactor_stop(fb__http_compactor *c);

#endif
