/*
 * cmd_compact - "fastblocks compact [--threshold R]": rewrites the sealed
 * blocks whose garbage ratio reaches R, which returns the space of deleted
 * images to the file system.
 */
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"

static const char help[] =
    "Usage: fastblocks compact [--threshold R] [options]\n"
    "\n"
    "Copies the live images of every sealed block whose garbage ratio\n"
    "(dead/(live+dead) bytes, see 'fastblocks stat') is at least R into the\n"
    "active block, keeping their ids and seed triples, then removes the old\n"
    "block. Prints the space reclaimed. Stop 'fastblocks serve' first: a\n"
    "store has one writer process.\n"
    "\n"
    "Options:\n"
    "  --threshold R              garbage ratio 0..1 that triggers a rewrite\n"
    "                             (default 0.3; 0 rewrites every sealed block)\n"
    "  --progress                 show progress also when stderr is not a terminal\n"
    "  --no-progress              never show progress\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks compact --data /srv/images\n"
    "  fastblocks compact --threshold 0.5 --json\n"
    "\n"
    "Exit codes: 0 ok, 1 failure, 2 usage error.\n";

typedef struct compact_args {
    double threshold;
    int progress_mode;
} compact_args;

static int compact_option(void *ud, const char *cmd, int argc, char **argv, int *i)
{
    compact_args *a = ud;
    const char *v;
    int m;
    if (fb_cli_progress_opt(&a->progress_mode, cmd, argc, argv, i))
        return 1;
    m = fb_cli_match_option(cmd, argc, argv, i, "--threshold", &v);
    if (m <= 0)
        return m;
    if (fb_cli_parse_double(v, 0.0, 1.0, &a->threshold) != 0) {
        fb_cli_errorf(cmd, "bad value '%s' for --threshold: must be a ratio 0..1", v);
        return -1;
    }
    *i += 1;
    return 1;
}

static int run_compact(fb_store *s, void *op_arg, fb_progress_fn progress, void *userdata,
                       fb_compact_result *result)
{
    const compact_args *a = op_arg;
    return fb_compact(s, a->threshold, progress, userdata, result);
}

int fb_cmd_compact(int argc, char **argv)
{
    fb_cli_common c;
    compact_args a = {-1.0, FB_PROGRESS_AUTO}; /* < 0: the library's default */
    int rc;

    rc = fb_cli_begin_store(&c, "compact", help, argc, argv, compact_option, &a, NULL);
    if (rc >= 0)
        return rc;
    rc = fb_cli_run_rewrite(&c, "compact", a.progress_mode, run_compact, &a);
    fb_cli_common_free(&c);
    return rc;
}
