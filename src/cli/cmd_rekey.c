/*
 * cmd_rekey - "fastblocks rekey": re-encrypts every record that is not
 * encrypted with the first key (plain records included), so that old keys
 * can be retired from the key file.
 */
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"

static const char help[] =
    "Usage: fastblocks rekey --key-file FILE [options]\n"
    "\n"
    "Rewrites every image that is not encrypted with the FIRST key of the key\n"
    "file (or FASTBLOCKS_KEY / FASTBLOCKS_KEY_FILE), decrypting it with any of\n"
    "the others; unencrypted images get encrypted. Ids and seed triples stay\n"
    "valid. Afterwards the old keys can be removed. Stop 'fastblocks serve'\n"
    "first: a store has one writer process.\n"
    "\n"
    "Options:\n"
    "  --progress                 show progress also when stderr is not a terminal\n"
    "  --no-progress              never show progress\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks rekey --key-file keys --data /srv/images\n"
    "  # rotation: the new key first, the old ones below it to decrypt\n"
    "  fastblocks keygen -o new.key && cat new.key old.keys > keys\n"
    "  fastblocks rekey --key-file keys && mv new.key keys\n"
    "\n"
    "Exit codes: 0 ok, 1 failure, 2 usage error (e.g. no key given).\n";

static int run_rekey(fb_store *s, void *op_arg, fb_progress_fn progress, void *userdata,
                     fb_compact_result *result)
{
    (void)op_arg;
    return fb_rekey(s, progress, userdata, result);
}

int fb_cmd_rekey(int argc, char **argv)
{
    fb_cli_common c;
    int progress_mode = FB_PROGRESS_AUTO, npos, rc;

    rc = fb_cli_begin(&c, "rekey", help, argc, argv, fb_cli_progress_opt, &progress_mode, &npos);
    if (rc >= 0)
        return rc;
    if (npos != 0) {
        fb_cli_errorf("rekey",
                      "unexpected argument '%s' (keys are never given on the command "
                      "line: use --key-file FILE)",
                      argv[0]);
        rc = FB_EXIT_USAGE;
    } else if (c.nkeys == 0) {
        fb_cli_errorf("rekey", "no key: give --key-file FILE, FASTBLOCKS_KEY_FILE or "
                               "FASTBLOCKS_KEY");
        rc = FB_EXIT_USAGE;
    } else {
        rc = fb_cli_run_rewrite(&c, "rekey", progress_mode, run_rekey, NULL);
    }
    fb_cli_common_free(&c);
    return rc;
}
