/*
 * cmd_stat - "fastblocks stat": whole-store and per-block statistics (live
 * and dead bytes and records, garbage ratio) and the cache settings, as a
 * table or as one JSON object.
 */
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "util/alloc.h"

static const char help[] =
    "Usage: fastblocks stat [options]\n"
    "\n"
    "Shows the store's totals, one line per block file (records and bytes, live\n"
    "and dead, and the garbage ratio dead/(live+dead) that 'compact --threshold'\n"
    "compares), and the cache settings. The store is opened read-only.\n"
    "\n"
    "Options:\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks stat --data /srv/images\n"
    "  fastblocks stat --json | jq '.blocks[] | select(.garbage_ratio > 0.3) | .block'\n"
    "\n"
    "Exit codes: 0 ok, 1 failure (e.g. no store), 2 usage error.\n";

static int print_json(const fb_cli_common *c, const fb_stats *st, const fb_block_stats *b, size_t n)
{
    json_t *blocks = json_array(), *o = NULL;
    if (blocks == NULL)
        return fb_cli_print_json("stat", NULL);
    for (size_t k = 0; k < n; k++) {
        if (json_array_append_new(blocks, fb_cli_block_json(&b[k])) != 0) {
            json_decref(blocks);
            return fb_cli_print_json("stat", NULL);
        }
    }
    o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:{s:I, s:I}, s:o}", "data",
                  c->data_dir, "block_count", (json_int_t)st->blocks, "file_bytes",
                  (json_int_t)st->file_bytes, "live_bytes", (json_int_t)st->live_bytes,
                  "dead_bytes", (json_int_t)st->dead_bytes, "live_records",
                  (json_int_t)st->live_records, "dead_records", (json_int_t)st->dead_records,
                  "garbage_ratio", fb_cli_garbage_ratio(st->live_bytes, st->dead_bytes), "cache",
                  "capacity_bytes", (json_int_t)c->store.cache_bytes, "max_entries",
                  (json_int_t)c->store.cache_entries, "blocks", blocks);
    /* "o" stole blocks' reference, also on failure (jansson's contract). */
    return fb_cli_print_json("stat", o);
}

static void print_text(const fb_cli_common *c, const fb_stats *st, const fb_block_stats *b,
                       size_t n)
{
    char live[32], dead[32], file[32], cap[32];
    fb_progress_bytes(live, sizeof live, (double)st->live_bytes);
    fb_progress_bytes(dead, sizeof dead, (double)st->dead_bytes);
    fb_progress_bytes(file, sizeof file, (double)st->file_bytes);
    fb_progress_bytes(cap, sizeof cap, (double)c->store.cache_bytes);
    printf("store:    %s\n", c->data_dir);
    printf("blocks:   %u (%llu bytes, %s)\n", st->blocks, (unsigned long long)st->file_bytes, file);
    printf("live:     %llu images, %llu bytes (%s)\n", (unsigned long long)st->live_records,
           (unsigned long long)st->live_bytes, live);
    printf("dead:     %llu records, %llu bytes (%s)\n", (unsigned long long)st->dead_records,
           (unsigned long long)st->dead_bytes, dead);
    printf("garbage:  %.1f%%\n", 100.0 * fb_cli_garbage_ratio(st->live_bytes, st->dead_bytes));
    if (c->store.cache_entries > 0)
        printf("cache:    %llu bytes (%s), at most %llu images\n",
               (unsigned long long)c->store.cache_bytes, cap,
               (unsigned long long)c->store.cache_entries);
    else
        printf("cache:    %llu bytes (%s), no cap on images\n",
               (unsigned long long)c->store.cache_bytes, cap);
    if (n == 0)
        return;
    printf("\n%-20s %6s %12s %12s %8s %8s %12s %8s\n", "BLOCK", "STATE", "LIVE_BYTES", "DEAD_BYTES",
           "LIVE", "DEAD", "FILE_BYTES", "GARBAGE");
    for (size_t k = 0; k < n; k++) {
        printf("%-20s %6s %12llu %12llu %8llu %8llu %12llu %7.1f%%\n", b[k].block,
               b[k].sealed ? "sealed" : "active", (unsigned long long)b[k].live_bytes,
               (unsigned long long)b[k].dead_bytes, (unsigned long long)b[k].live_records,
               (unsigned long long)b[k].dead_records, (unsigned long long)b[k].file_bytes,
               100.0 * fb_cli_garbage_ratio(b[k].live_bytes, b[k].dead_bytes));
    }
}

int fb_cmd_stat(int argc, char **argv)
{
    fb_cli_common c;
    fb_store *s = NULL;
    fb_stats st;
    fb_block_stats *blocks = NULL;
    size_t n = 0;
    int rc, ret = FB_EXIT_FAILURE;

    rc = fb_cli_begin_store(&c, "stat", help, argc, argv, NULL, NULL, &s);
    if (rc >= 0)
        return rc;
    rc = fb_get_stats(s, &st);
    if (rc == 0)
        rc = fb_list_blocks(s, &blocks, &n);
    if (rc != 0) {
        fb_cli_error("stat", rc);
        goto out;
    }
    if (c.json) {
        if (print_json(&c, &st, blocks, n) != 0)
            goto out;
    } else {
        print_text(&c, &st, blocks, n);
    }
    if (fb_cli_flush_stdout("stat") != 0)
        goto out;
    ret = FB_EXIT_OK;
out:
    fb_free(blocks);
    fb_close(s);
    fb_cli_common_free(&c);
    return ret;
}
