/*
 * progress - the progress display of long subcommands (put of many files,
 * verify, compact, rekey): on a terminal one redrawn line on stderr with a
 * bar, the rate and the time left; otherwise, if asked for, a plain line
 * every few seconds; by default nothing when stderr is not a terminal, so
 * that logs and scripts only see results.
 *
 * Not thread-safe: one thread drives one display.
 */
#ifndef FB_CLI_PROGRESS_H
#define FB_CLI_PROGRESS_H

#include <stdint.h>

enum fb_progress_mode {
    FB_PROGRESS_AUTO = 0, /* a bar when stderr is a terminal, else nothing */
    FB_PROGRESS_ON = 1,   /* a bar on a terminal, plain lines otherwise */
    FB_PROGRESS_OFF = 2
};

typedef struct fb_progress {
    const char *cmd;      /* "verify": the line starts "fastblocks verify:" */
    int mode;             /* 0: off; 1: terminal bar; 2: plain lines */
    uint64_t total, done; /* bytes */
    uint64_t items_total; /* files, when counted (0: not shown) */
    uint64_t items_done;
    double start, last; /* monotonic seconds: start, last output */
    int drawn;          /* a bar is on the screen */
} fb_progress;

/* Starts a display of total bytes (0 if unknown yet). mode: fb_progress_mode. */
void fb_progress_start(fb_progress *p, const char *cmd, uint64_t total, int mode);

/* Records progress and redraws if enough time has passed (10 per second on a
 * terminal, every 5 seconds as plain lines). total 0 keeps the previous. */
void fb_progress_update(fb_progress *p, uint64_t done, uint64_t total);

/* Erases the bar so that other output can be written; the next update
 * redraws it. */
void fb_progress_clear(fb_progress *p);

/* Ends the display (erases the bar). */
void fb_progress_finish(fb_progress *p);

/* Parses --progress / --no-progress into *mode: 1 if arg was one of them,
 * 0 otherwise. */
int fb_progress_option(const char *arg, int *mode);

/* Formats a byte count as "12.3 MB" (decimal units) into buf. */
void fb_progress_bytes(char *buf, unsigned long cap, double bytes);

#endif
