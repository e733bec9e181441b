/*
 * bench_crc32c - CRC-32C throughput of every implementation this CPU runs
 * (src/util/crc32c.c), on cached buffers of 4 KiB .. 1 MiB, the sizes of
 * stored records. The table implementation is the baseline of the same
 * run; fb__crc32c is what the store uses. Timed in thread CPU time, best of
 * five.
 *
 *   bench_crc32c            prints a table, writes bench/results/crc32c.json
 *                           (or $FB_BENCH_RESULTS/crc32c.json)
 *   FB_BENCH_QUICK=1        shorter timing per case
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/crc32c.h"

/* Thread CPU time: other jobs share the machine's two cores, and time
 * spent preempted says nothing about the code. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Best of five timed runs of `reps` CRCs of n bytes, in GB/s. impl < 0
 * means fb__crc32c itself. */
static double rate(int impl, const unsigned char *buf, size_t n, double seconds)
{
    size_t reps = 1;
    double best = 0;
    volatile uint32_t sink = 0;
    /* Grow reps until one run takes about a fifth of the budget. */
    for (;;) {
        double t0 = now();
        for (size_t r = 0; r < reps; r++) {
            sink = impl < 0 ? fb__crc32c(sink, buf, n) : fb__crc32c_with(impl, sink, buf, n);
        }
        if (now() - t0 >= seconds / 5 || reps > ((size_t)1 << 30)) {
            break;
        }
        reps *= 2;
    }
    for (int run = 0; run < 5; run++) {
        double t0 = now();
        for (size_t r = 0; r < reps; r++) {
            sink = impl < 0 ? fb__crc32c(sink, buf, n) : fb__crc32c_with(impl, sink, buf, n);
        }
        double gbs = (double)n * (double)reps / (now() - t0) / 1e9;
        if (gbs > best) {
            best = gbs;
        }
    }
    return best;
}

int main(void)
{
    const size_t sizes[] = {4096, 61440, 262144, 1048576};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    double seconds = getenv("FB_BENCH_QUICK") != NULL ? 0.05 : 0.25;
    /* +1 so that the unaligned case can start one byte in. */
    unsigned char *buf = malloc(sizes[nsizes - 1] + 1);
    if (buf == NULL) {
        return 1;
    }
    for (size_t i = 0; i < sizes[nsizes - 1] + 1; i++) {
        buf[i] = (unsigned char)(i * 131 + 7);
    }
    char json[4096];
    size_t jl = 0;
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "{\n  \"best\": \"%s\",\n",
                           fb__crc32c_name(fb__crc32c_best()));
    printf("CRC-32C, GB/s (cached; ratio vs table in brackets); fb__crc32c uses %s\n",
           fb__crc32c_name(fb__crc32c_best()));
    printf("%-14s", "bytes");
    for (int impl = 0; impl < FB__CRC_NIMPL; impl++) {
        printf(" %18s", fb__crc32c_name(impl));
    }
    printf(" %18s\n", "fb__crc32c+1");
    for (size_t s = 0; s < nsizes; s++) {
        double table_rate = 0;
        printf("%-14zu", sizes[s]);
        jl += (size_t)snprintf(json + jl, sizeof json - jl, "  \"%zu\": {", sizes[s]);
        for (int impl = 0; impl < FB__CRC_NIMPL; impl++) {
            if (!fb__crc32c_supported(impl)) {
                printf(" %18s", "-");
                continue;
            }
            double r = rate(impl, buf, sizes[s], seconds);
            if (impl == FB__CRC_TABLE) {
                table_rate = r;
            }
            printf("   %7.2f (%5.1fx)", r, r / table_rate);
            jl += (size_t)snprintf(json + jl, sizeof json - jl, "\"%s\": %.3f, ",
                                   fb__crc32c_name(impl), r);
        }
        /* What a record read pays: its payload rarely starts aligned. */
        double r = rate(-1, buf + 1, sizes[s], seconds);
        printf("   %7.2f (%5.1fx)\n", r, r / table_rate);
        jl += (size_t)snprintf(json + jl, sizeof json - jl, "\"fb__crc32c_unaligned\": %.3f}%s\n",
                               r, s + 1 < nsizes ? "," : "");
    }
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "}\n");
    free(buf);
    const char *out = getenv("FB_BENCH_RESULTS");
    char path[4200];
    snprintf(path, sizeof path, "%s/crc32c.json", out ? out : "bench/results");
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_crc32c: cannot write %s: %s\n", path, strerror(errno));
        return 0;
    }
    fputs(json, f);
    fclose(f);
    printf("wrote %s\n", path);
    return 0;
}
