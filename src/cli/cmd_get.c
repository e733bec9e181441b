/*
 * cmd_get - "fastblocks get ADDR [-o FILE]": writes the WebP bytes of one
 * image, verified and decrypted, to a file or to stdout. Binary data is
 * never written to a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/common.h"

static const char help[] =
    "Usage: fastblocks get ID|BLOCK/OFFSET/SIZE [-o FILE] [options]\n"
    "\n"
    "Writes the WebP image named by its id or by its seed triple (the block,\n"
    "offset and size printed by put) to FILE, or to stdout when it is not a\n"
    "terminal. The store is opened read-only.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE          write to FILE instead of stdout ('-': stdout)\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks get 0000010000000040a1b2c3d4 -o photo.webp\n"
    "  fastblocks get block_00000001.fbk/64/48213 > photo.webp\n"
    "  FASTBLOCKS_KEY_FILE=keys fastblocks get 0000010000000040a1b2c3d4 | cwebp -info\n"
    "\n"
    "Exit codes: 0 ok, 1 failure (e.g. not found), 2 usage error.\n";

typedef struct get_args {
    const char *output;
} get_args;

static int get_option(void *ud, const char *cmd, int argc, char **argv, int *i)
{
    get_args *a = ud;
    int m = fb_cli_match_option(cmd, argc, argv, i, "--output", &a->output);
    if (m == 0)
        m = fb_cli_match_option(cmd, argc, argv, i, "-o", &a->output);
    if (m > 0)
        *i += 1;
    return m;
}

int fb_cmd_get(int argc, char **argv)
{
    fb_cli_common c;
    get_args a = {NULL};
    fb_addr addr;
    fb_store *s = NULL;
    fb_buf *buf = NULL;
    int npos, rc, fd = -1, ret = FB_EXIT_FAILURE, to_stdout;

    rc = fb_cli_begin(&c, "get", help, argc, argv, get_option, &a, &npos);
    if (rc >= 0)
        return rc;
    if (npos != 1) {
        fb_cli_errorf("get", npos == 0 ? "missing image address (see 'fastblocks get --help')"
                                       : "one image address at a time (see 'fastblocks get "
                                         "--help')");
        ret = FB_EXIT_USAGE;
        goto out;
    }
    if (fb_cli_parse_addr("get", argv[0], &addr) != 0) {
        ret = FB_EXIT_USAGE;
        goto out;
    }
    to_stdout = a.output == NULL || strcmp(a.output, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO)) {
        fb_cli_errorf("get", "refusing to write binary image data to a terminal; "
                             "use -o FILE or redirect stdout");
        ret = FB_EXIT_USAGE;
        goto out;
    }
    s = fb_cli_open_store(&c, "get", 1);
    if (s == NULL)
        goto out;
    rc = fb_get(s, &addr, &buf, NULL);
    if (rc != 0) {
        fb_cli_error("get", rc);
        goto out;
    }
    if (to_stdout) {
        if (fb_cli_write_all(STDOUT_FILENO, fb_buf_data(buf), fb_buf_len(buf)) != 0) {
            fb_cli_errorf("get", "cannot write output: %s", strerror(errno));
            goto out;
        }
        ret = FB_EXIT_OK;
        goto out;
    }
    fd = open(a.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fb_cli_errorf("get", "cannot create %s: %s", a.output, strerror(errno));
        goto out;
    }
    rc = fb_cli_write_all(fd, fb_buf_data(buf), fb_buf_len(buf));
    if (close(fd) != 0)
        rc = -1;
    fd = -1;
    if (rc != 0) {
        fb_cli_errorf("get", "cannot write %s: %s", a.output, strerror(errno));
        unlink(a.output); /* no half-written image left behind */
        goto out;
    }
    ret = FB_EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    fb_buf_release(buf);
    ret = fb_cli_close_store("get", s, ret);
    fb_cli_common_free(&c);
    return ret;
}
