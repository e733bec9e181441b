/*
 * cmd_ls - "fastblocks ls": lists the live images, oldest first (by birth
 * address, which only grows), one per line or one metadata object per line.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/alloc.h"
#include "util/error.h"

static const char help[] =
    "Usage: fastblocks ls [options]\n"
    "\n"
    "Lists the stored images, oldest first, one per line:\n"
    "  ID  BYTES  WIDTHxHEIGHT  CREATED (UTC)  BLOCK/OFFSET/SIZE\n"
    "BYTES is the size of the WebP served; SIZE the stored length at upload. With --json,\n"
    "each line is the metadata object of the HTTP API. The store is opened\n"
    "read-only.\n"
    "\n"
    "Options:\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks ls --data /srv/images\n"
    "  fastblocks ls --json | jq -r 'select(.bytes > 1000000) | .id'\n"
    "\n"
    "Exit codes: 0 ok, 1 failure (e.g. no store), 2 usage error.\n";

typedef struct meta_list {
    fb_meta *v;
    size_t n, cap;
} meta_list;

static int collect(void *ud, const fb_meta *m)
{
    meta_list *l = ud;
    if (FB__GROW_ARRAY(&l->v, &l->cap, l->n + 1, 256) != 0)
        return fb__error(FB_ENOMEM, "out of memory listing %zu images", l->n + 1);
    l->v[l->n++] = *m;
    return 0;
}

static int by_key(const void *a, const void *b)
{
    uint64_t x = ((const fb_meta *)a)->key, y = ((const fb_meta *)b)->key;
    return x < y ? -1 : x > y;
}

/* Prints one image; 0 or -1 (message printed). */
static int print_meta(const fb_cli_common *c, const fb_meta *m)
{
    char when[32], triple[96];
    if (c->json) {
        char buf[FB_META_JSON_MAX];
        int n = fb_meta_json(m, buf, sizeof buf);
        if (n < 0) {
            fb_cli_error("ls", n);
            return -1;
        }
        fwrite(buf, 1, (size_t)n, stdout);
        fputc('\n', stdout);
        return 0;
    }
    time_t t = (time_t)m->created;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(when, sizeof when, "@%lld", (long long)m->created);
    fb_cli_triple(m, triple, sizeof triple);
    printf("%s  %10llu  %5ux%-5u  %s  %s\n", m->id, (unsigned long long)m->bytes, m->width,
           m->height, when, triple);
    return 0;
}

int fb_cmd_ls(int argc, char **argv)
{
    fb_cli_common c;
    meta_list l = {NULL, 0, 0};
    fb_store *s = NULL;
    int rc, ret = FB_EXIT_FAILURE;

    rc = fb_cli_begin_store(&c, "ls", help, argc, argv, NULL, NULL, &s);
    if (rc >= 0)
        return rc;
    rc = fb_foreach(s, collect, &l);
    if (rc != 0) {
        fb_cli_error("ls", rc);
        goto out;
    }
    if (l.n > 1)
        qsort(l.v, l.n, sizeof *l.v, by_key);
    for (size_t k = 0; k < l.n; k++) {
        if (print_meta(&c, &l.v[k]) != 0)
            goto out;
    }
    if (fb_cli_flush_stdout("ls") != 0)
        goto out;
    ret = FB_EXIT_OK;
out:
    fb_close(s); /* read-only: nothing to make durable */
    fb__free(l.v);
    fb_cli_common_free(&c);
    return ret;
}
