/*
 * cmd_keygen - "fastblocks keygen": prints a new random Fernet key (the
 * format of the original's BlockManager.generate_encryption_key), or writes
 * it to a new file readable by its owner only.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/common.h"

static const char help[] =
    "Usage: fastblocks keygen [-o FILE]\n"
    "\n"
    "Prints a new random Fernet key (44 characters of url-safe base64), the key\n"
    "format of --key-file, FASTBLOCKS_KEY and the Python encryption_key.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE   write the key to FILE (created with mode 0600; an\n"
    "                      existing file is never overwritten)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Examples:\n"
    "  fastblocks keygen -o /etc/fastblocks/keys\n"
    "  fastblocks put --key-file /etc/fastblocks/keys photo.jpg\n"
    "  # rotate: put a new key first, keep the old ones below it, then\n"
    "  (fastblocks keygen; cat keys) > keys.new && mv keys.new keys\n"
    "  fastblocks rekey --key-file keys\n"
    "\n"
    "Exit codes: 0 ok, 1 failure, 2 usage error.\n";

int fb_cmd_keygen(int argc, char **argv)
{
    char key[FB_KEY_LEN + 2];
    const char *out = NULL;
    int fd = -1, rc, ret = FB_EXIT_FAILURE;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(help, stdout);
            return FB_EXIT_OK;
        }
        m = fb_cli_match_option("keygen", argc, argv, &i, "--output", &v);
        if (m == 0)
            m = fb_cli_match_option("keygen", argc, argv, &i, "-o", &v);
        if (m < 0)
            return FB_EXIT_USAGE;
        if (m == 0) {
            fb_cli_errorf("keygen", "%s '%s' (see 'fastblocks keygen --help')",
                          argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
            return FB_EXIT_USAGE;
        }
        out = v;
    }
    rc = fb_keygen(key);
    if (rc != 0) {
        fb_cli_error("keygen", rc);
        goto out;
    }
    key[FB_KEY_LEN] = '\n';
    key[FB_KEY_LEN + 1] = '\0';
    if (out == NULL || strcmp(out, "-") == 0) {
        fputs(key, stdout);
        ret = fb_cli_flush_stdout("keygen") == 0 ? FB_EXIT_OK : FB_EXIT_FAILURE;
        goto out;
    }
    fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fb_cli_errorf("keygen", "cannot create %s: %s", out, strerror(errno));
        goto out;
    }
    if (fb_cli_write_all(fd, key, FB_KEY_LEN + 1) != 0 || fsync(fd) != 0) {
        fb_cli_errorf("keygen", "cannot write %s: %s", out, strerror(errno));
        close(fd);
        fd = -1;
        unlink(out);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        fb_cli_errorf("keygen", "cannot write %s: %s", out, strerror(errno));
        unlink(out);
        goto out;
    }
    fd = -1;
    ret = FB_EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    explicit_bzero(key, sizeof key);
    return ret;
}
