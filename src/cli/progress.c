/*
 * progress - see progress.h. The bar is drawn on stderr only, so that
 * stdout stays a clean stream of results even while the bar is shown.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"

enum { SHOW_OFF = 0, SHOW_BAR = 1, SHOW_LINES = 2 };

#define BAR_INTERVAL 0.1  /* seconds between redraws of the bar */
#define LINE_INTERVAL 5.0 /* seconds between plain lines */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fb_progress_bytes(char *buf, unsigned long cap, double bytes)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    unsigned u = 0;
    while (bytes >= 1000.0 && u + 1 < sizeof units / sizeof units[0]) {
        bytes /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f %s", bytes, units[u]);
    else
        snprintf(buf, cap, "%.1f %s", bytes, units[u]);
}

static void format_duration(char *buf, size_t cap, double s)
{
    unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%lu:%02lu", t / 60, t % 60);
}

static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 80;
}

/* The text after the bar: "37/200 files  12.3 MB/s  ETA 0:42". */
static void format_status(const fb_progress *p, double t, char *buf, size_t cap)
{
    char done[32], rate[32], eta[32] = "";
    double elapsed = t - p->start, speed = elapsed > 0 ? (double)p->done / elapsed : 0;
    size_t n = 0;
    buf[0] = '\0';
    if (p->items_total > 0)
        n +=
            (size_t)snprintf(buf + n, cap - n, "%llu/%llu files  ",
                             (unsigned long long)p->items_done, (unsigned long long)p->items_total);
    else {
        fb_progress_bytes(done, sizeof done, (double)p->done);
        n += (size_t)snprintf(buf + n, cap - n, "%s  ", done);
    }
    if (n >= cap)
        return;
    fb_progress_bytes(rate, sizeof rate, speed);
    if (speed > 0 && p->total > p->done)
        format_duration(eta, sizeof eta, (double)(p->total - p->done) / speed);
    snprintf(buf + n, cap - n, "%s/s%s%s", rate, eta[0] ? "  ETA " : "", eta);
}

static void draw(fb_progress *p, double t)
{
    char status[128];
    unsigned pct = p->total > 0 ? (unsigned)((double)p->done * 100.0 / (double)p->total) : 0;
    if (pct > 100)
        pct = 100;
    format_status(p, t, status, sizeof status);
    if (p->mode == SHOW_LINES) {
        fprintf(stderr, "fastblocks %s: %u%%  %s\n", p->cmd, pct, status);
        p->drawn = 1; /* the first line is out; later ones wait LINE_INTERVAL */
    } else {
        /* "fastblocks verify [#####.....]  45%  status", fitted to the width. */
        unsigned width = terminal_width();
        size_t fixed =
            strlen("fastblocks ") + strlen(p->cmd) + strlen(" []  100%  ") + strlen(status) + 1;
        unsigned bar = width > fixed + 10 ? (unsigned)(width - fixed) : 10;
        unsigned fill;
        if (bar > 40)
            bar = 40;
        fill = bar * pct / 100;
        fprintf(stderr, "\r\033[Kfastblocks %s [", p->cmd);
        for (unsigned k = 0; k < bar; k++)
            fputc(k < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %3u%%  %s", pct, status);
        p->drawn = 1;
    }
    fflush(stderr);
    p->last = t;
}

void fb_progress_start(fb_progress *p, const char *cmd, uint64_t total, int mode)
{
    int tty = isatty(STDERR_FILENO);
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->total = total;
    if (mode == FB_PROGRESS_OFF)
        p->mode = SHOW_OFF;
    else if (tty)
        p->mode = SHOW_BAR;
    else
        p->mode = mode == FB_PROGRESS_ON ? SHOW_LINES : SHOW_OFF;
    p->start = p->last = now();
}

void fb_progress_update(fb_progress *p, uint64_t done, uint64_t total)
{
    double t;
    p->done = done;
    if (total > 0)
        p->total = total;
    if (p->mode == SHOW_OFF)
        return;
    t = now();
    if (t - p->last >= (p->mode == SHOW_BAR ? BAR_INTERVAL : LINE_INTERVAL) || !p->drawn)
        draw(p, t);
}

void fb_progress_clear(fb_progress *p)
{
    if (p->mode == SHOW_BAR && p->drawn) {
        /* Erase the line; a plain line needs no erasing. */
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}

void fb_progress_finish(fb_progress *p)
{
    fb_progress_clear(p);
    p->mode = SHOW_OFF;
}

int fb_progress_option(const char *arg, int *mode)
{
    if (strcmp(arg, "--progress") == 0) {
        *mode = FB_PROGRESS_ON;
        return 1;
    }
    if (strcmp(arg, "--no-progress") == 0) {
        *mode = FB_PROGRESS_OFF;
        return 1;
    }
    return 0;
}
