/*
 * bench_ingest - measures fb__image_to_webp on a set of images.
 *
 *   bench_ingest [-q Q] [-m METHOD] [-r RUNS] [-o PER_IMAGE.csv] [-t] FILE...
 *
 * 1. One thread, image by image from memory: wall and process CPU time
 *    (best of RUNS each),
 *    output bytes, and the peak extra resident memory of the conversion
 *    (VmHWM after resetting it through /proc/self/clear_refs, minus the
 *    resident size before; malloc_trim first, so that heap kept from an
 *    earlier image does not hide this one's). One CSV row per image.
 * 2. Throughput over the whole set with 1 and 2 threads (each thread takes
 *    the next image from a shared counter, largest input first), best of
 *    RUNS.
 *    -t skips part 1 (for repeated scaling runs on a noisy machine).
 * Prints one JSON object with the totals on stdout.
 */
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image.h"

typedef struct item {
    const char *path;
    uint8_t *data;
    size_t len;
} item;

static item *items;
static int *order; /* the throughput runs' order: largest input first */
static int nitems;
static fb_image_opts opts;
static atomic_int next_item;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, n) == 0) {
            v = strtol(line + n + 1, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f != NULL) {
        fputs("5", f);
        fclose(f);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        int k = atomic_fetch_add(&next_item, 1);
        if (k >= nitems) {
            return NULL;
        }
        int i = order[k];
        fb_image_result r;
        if (fb__image_to_webp(items[i].data, items[i].len, &opts, &r) != 0) {
            fprintf(stderr, "%s: %s\n", items[i].path, fb_last_error());
        }
        fb__image_result_free(&r);
    }
}

/* Wall seconds to convert the whole set with `threads` threads; *cpu gets
 * the process CPU seconds it took, which, unlike wall time, shows whether
 * threads slow each other down even when other processes hold the cores. */
static double run_threads(int threads, double *cpu)
{
    pthread_t t[16];
    atomic_store(&next_item, 0);
    double t0 = now(), c0 = cpu_now();
    for (int i = 0; i < threads; i++) {
        pthread_create(&t[i], NULL, worker, NULL);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    *cpu = cpu_now() - c0;
    return now() - t0;
}

/* Largest input first: with a handful of photos that take 0.3-4 s each, a
 * big one drawn last would run alone on one thread and the 2-thread figure
 * would measure the set's last straggler, not the scaling. */
static int larger_first(const void *a, const void *b)
{
    size_t x = items[*(const int *)a].len, y = items[*(const int *)b].len;
    return (x < y) - (x > y);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

int main(int argc, char **argv)
{
    int runs = 3, opt, throughput_only = 0;
    const char *csv_path = NULL;
    fb_image_opts_init(&opts);
    while ((opt = getopt(argc, argv, "q:m:r:o:t")) != -1) {
        switch (opt) {
        case 'q':
            opts.quality = atoi(optarg);
            break;
        case 'm':
            opts.effort = atoi(optarg);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'o':
            csv_path = optarg;
            break;
        case 't':
            throughput_only = 1;
            break;
        default:
            fprintf(stderr,
                    "usage: bench_ingest [-q Q] [-m METHOD] [-r RUNS] [-o CSV] [-t] FILE...\n");
            return 2;
        }
    }
    nitems = argc - optind;
    items = calloc((size_t)nitems, sizeof *items);
    for (int i = 0; i < nitems; i++) {
        items[i].path = argv[optind + i];
        items[i].data = slurp(items[i].path, &items[i].len);
        if (items[i].data == NULL) {
            fprintf(stderr, "cannot read %s\n", items[i].path);
            return 1;
        }
    }
    order = calloc((size_t)nitems, sizeof *order);
    for (int i = 0; i < nitems; i++) {
        order[i] = i;
    }
    qsort(order, (size_t)nitems, sizeof *order, larger_first);
    FILE *csv = csv_path != NULL ? fopen(csv_path, "w") : NULL;
    if (csv != NULL) {
        fprintf(
            csv,
            "file,width,height,megapixels,input_bytes,fb_ms,fb_cpu_ms,fb_bytes,peak_extra_kb\n");
    }
    /* Warm-up: libvips start-up and first-use costs are not per image. */
    fb_image_result r;
    if (nitems > 0 && fb__image_to_webp(items[0].data, items[0].len, &opts, &r) == 0) {
        fb__image_result_free(&r);
    }
    double total_ms = 0, total_mp = 0, max_peak_per_px = 0;
    uint64_t in_bytes = 0, out_bytes = 0;
    long max_peak_kb = 0;
    for (int i = 0; i < (throughput_only ? 0 : nitems); i++) {
        double best = 1e9, best_cpu = 1e9;
        size_t out_len = 0;
        uint32_t w = 0, h = 0;
        long peak_kb = 0;
        for (int k = 0; k < runs; k++) {
            /* Freed heap that glibc keeps from earlier conversions would be
             * reused silently and hide this one's needs: give it back first,
             * so that the figure does not depend on the order of the files. */
            malloc_trim(0);
            long before = status_kb("VmRSS:");
            reset_peak();
            double t0 = now(), c0 = cpu_now();
            int rc = fb__image_to_webp(items[i].data, items[i].len, &opts, &r);
            double dt = now() - t0, dc = cpu_now() - c0;
            long extra = status_kb("VmHWM:") - before;
            if (rc != 0) {
                fprintf(stderr, "%s: %s\n", items[i].path, fb_last_error());
                break;
            }
            if (dt < best) {
                best = dt;
            }
            if (dc < best_cpu) {
                best_cpu = dc;
            }
            if (extra > peak_kb) {
                peak_kb = extra;
            }
            out_len = r.len;
            w = r.width;
            h = r.height;
            fb__image_result_free(&r);
        }
        double mp = (double)w * h / 1e6;
        total_ms += best * 1e3;
        total_mp += mp;
        in_bytes += items[i].len;
        out_bytes += out_len;
        if (peak_kb > max_peak_kb) {
            max_peak_kb = peak_kb;
        }
        if (mp > 0 && peak_kb * 1024.0 / (mp * 1e6) > max_peak_per_px) {
            max_peak_per_px = peak_kb * 1024.0 / (mp * 1e6);
        }
        if (csv != NULL) {
            fprintf(csv, "%s,%u,%u,%.4f,%zu,%.3f,%.3f,%zu,%ld\n", items[i].path, w, h, mp,
                    items[i].len, best * 1e3, best_cpu * 1e3, out_len, peak_kb);
        }
    }
    if (csv != NULL) {
        fclose(csv);
    }
    double wall1 = 1e9, wall2 = 1e9, cpu1 = 1e9, cpu2 = 1e9;
    for (int k = 0; k < runs; k++) {
        double ca, cb, a = run_threads(1, &ca), b = run_threads(2, &cb);
        wall1 = a < wall1 ? a : wall1;
        wall2 = b < wall2 ? b : wall2;
        cpu1 = ca < cpu1 ? ca : cpu1;
        cpu2 = cb < cpu2 ? cb : cpu2;
    }
    printf("{\"images\": %d, \"megapixels\": %.3f, \"input_bytes\": %" PRIu64
           ", \"output_bytes\": %" PRIu64 ", \"quality\": %d, \"method\": %d, "
           "\"per_image_ms_sum\": %.1f, \"ms_per_image\": %.2f, \"mp_per_s_1t\": %.3f, "
           "\"wall_1t_s\": %.3f, \"wall_2t_s\": %.3f, \"img_per_s_1t\": %.3f, "
           "\"img_per_s_2t\": %.3f, \"speedup_2t\": %.3f, \"cpu_1t_s\": %.3f, \"cpu_2t_s\": %.3f, "
           "\"max_peak_extra_kb\": %ld, "
           "\"max_peak_extra_bytes_per_px\": %.2f}\n",
           nitems, total_mp, in_bytes, out_bytes, opts.quality, opts.effort, total_ms,
           total_ms / (nitems > 0 ? nitems : 1), total_ms > 0 ? total_mp / (total_ms / 1e3) : 0.0,
           wall1, wall2, nitems / wall1, nitems / wall2, wall1 / wall2, cpu1, cpu2, max_peak_kb,
           max_peak_per_px);
    for (int i = 0; i < nitems; i++) {
        free(items[i].data);
    }
    free(items);
    free(order);
    return 0;
}
