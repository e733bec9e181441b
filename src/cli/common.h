/*
 * common - what every fastblocks subcommand shares: the store options
 * (spelled the same as the server's flags and the Python keywords), the
 * FASTBLOCKS_* environment defaults, key loading, opening the store, and
 * the one-line error and exit-code conventions.
 *
 * Exit codes: 0 ok, 1 failure, 2 usage.
 */
#ifndef FB_CLI_COMMON_H
#define FB_CLI_COMMON_H

#include <stdio.h>

#include "fastblocks.h"

enum { FB_EXIT_OK = 0, FB_EXIT_FAILURE = 1, FB_EXIT_USAGE = 2 };

typedef struct fb_cli_common {
    const char *data_dir; /* --data DIR, FASTBLOCKS_DATA, default "./data" */
    fb_options store;     /* filled from the shared store options */
    char **keys;          /* loaded from --key-file FILE / FASTBLOCKS_KEY(_FILE) */
    size_t nkeys;
    int json; /* --json */
} fb_cli_common;

/* Sets defaults (fb_options_init, data_dir from FASTBLOCKS_DATA or ./data). */
void fb_cli_common_init(fb_cli_common *c);

/*
 * Tries argv[*i] as a shared option (--data, --durability, --compression,
 * --compression-level, --key-file, --max-block-size, --cache-bytes,
 * --cache-entries, --quality, --effort, --lossless, --max-dimension,
 * --keep-metadata, --json, ...), in the forms "--opt VALUE" and
 * "--opt=VALUE". Returns 1 if it was one (and advances *i past its value),
 * 0 if argv[*i] is not a shared option, -1 on a bad value (message printed:
 * "fastblocks CMD: ...").
 */
int fb_cli_common_option(fb_cli_common *c, const char *cmd, int argc, char **argv, int *i);

/* Applies environment defaults and loads the keys; -1 with a message printed. */
int fb_cli_common_finish(fb_cli_common *c, const char *cmd);

/* Opens the store; prints "fastblocks CMD: <message>" and returns NULL on error. */
fb_store *fb_cli_open_store(fb_cli_common *c, const char *cmd, int read_only);

/* Wipes and frees the keys. */
void fb_cli_common_free(fb_cli_common *c);

/* Prints "fastblocks CMD: <fb_strerror(rc)>: <fb_last_error()>" to stderr. */
void fb_cli_error(const char *cmd, int rc);

/* Help text of the shared options, for each subcommand's --help. */
extern const char fb_cli_common_help[];

#endif
