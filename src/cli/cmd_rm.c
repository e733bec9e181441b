/*
 * cmd_rm - "fastblocks rm ADDR...": deletes images. Every address is parsed
 * before anything is deleted, so a typo deletes nothing; then each image is
 * deleted on its own, and one that is not found does not stop the others.
 */
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/alloc.h"

static const char help[] =
    "Usage: fastblocks rm ID|BLOCK/OFFSET/SIZE... [options]\n"
    "\n"
    "Deletes images named by id or seed triple and prints 'deleted ADDR' for each\n"
    "(with --json, the updated statistics of the block that held it). The space\n"
    "is reclaimed by 'fastblocks compact'.\n"
    "\n"
    "Options:\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks rm 0000010000000040a1b2c3d4\n"
    "  fastblocks rm block_00000001.fbk/64/48213 block_00000001.fbk/48280/9127\n"
    "  fastblocks ls --json | jq -r 'select(.width < 16) | .id' | xargs fastblocks rm\n"
    "\n"
    "Exit codes: 0 ok, 1 failure (e.g. an image was not found), 2 usage error.\n";

int fb_cmd_rm(int argc, char **argv)
{
    fb_cli_common c;
    fb_addr *addrs = NULL;
    fb_store *s = NULL;
    int npos, rc, ret = FB_EXIT_FAILURE, failed = 0;

    rc = fb_cli_begin(&c, "rm", help, argc, argv, NULL, NULL, &npos);
    if (rc >= 0)
        return rc;
    if (npos == 0) {
        fb_cli_errorf("rm", "missing image address (see 'fastblocks rm --help')");
        ret = FB_EXIT_USAGE;
        goto out;
    }
    addrs = fb__calloc((size_t)npos, sizeof *addrs);
    if (addrs == NULL) {
        fb_cli_errorf("rm", "out of memory");
        goto out;
    }
    for (int k = 0; k < npos; k++) {
        if (fb_cli_parse_addr("rm", argv[k], &addrs[k]) != 0) {
            ret = FB_EXIT_USAGE;
            goto out;
        }
    }
    c.store.create = 0; /* deleting from a store that does not exist is an error */
    s = fb_cli_open_store(&c, "rm", 0);
    if (s == NULL)
        goto out;
    for (int k = 0; k < npos; k++) {
        fb_block_stats bs;
        rc = fb_delete(s, &addrs[k], &bs);
        if (rc != 0) {
            fb_cli_error_item("rm", argv[k], rc);
            failed++;
            if (rc != FB_ENOTFOUND)
                break; /* a storage failure: the next delete would fail the same way */
            continue;
        }
        if (c.json) {
            json_t *o = fb_cli_block_json(&bs);
            if (o != NULL && json_object_set_new(o, "deleted", json_string(argv[k])) != 0) {
                json_decref(o);
                o = NULL;
            }
            if (fb_cli_print_json("rm", o) != 0) {
                failed++;
                break;
            }
        } else {
            printf("deleted %s\n", argv[k]);
        }
    }
    ret = failed ? FB_EXIT_FAILURE : FB_EXIT_OK;
    if (fb_cli_flush_stdout("rm") != 0)
        ret = FB_EXIT_FAILURE;
out:
    ret = fb_cli_close_store("rm", s, ret);
    fb__free(addrs);
    fb_cli_common_free(&c);
    return ret;
}
