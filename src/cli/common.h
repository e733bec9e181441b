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

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "fastblocks.h"

enum { FB_EXIT_OK = 0, FB_EXIT_FAILURE = 1, FB_EXIT_USAGE = 2 };

typedef struct fb_cli_common {
    const char *data_dir; /* --data DIR, FASTBLOCKS_DATA, default "./data" */
    fb_options store;     /* filled from the shared store options */
    char **keys;          /* loaded from --key-file FILE / FASTBLOCKS_KEY(_FILE) */
    size_t nkeys;
    size_t keys_cap;      /* allocated slots of keys */
    int json;             /* --json */
    const char *key_file; /* --key-file FILE (read by fb_cli_common_finish) */
    unsigned given;       /* shared options set on the command line (bit per table row) */
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

/*
 * Makes SIGINT and SIGTERM set fb_cli_interrupted instead of killing the
 * process, so that a long command stops between records and closes the
 * store cleanly (progress callbacks return non-zero to cancel).
 */
void fb_cli_catch_interrupt(void);
/* Atomic, not volatile sig_atomic_t: worker threads read it too (lock-free,
 * so the signal handler may set it). */
extern atomic_int fb_cli_interrupted;

/* Prints "fastblocks CMD: <formatted message>" and a newline to stderr. */
void fb_cli_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Matches argv[*i] against option name in the forms "--name VALUE" and
 * "--name=VALUE" (a short name "-x" also "-xVALUE"). Returns 1 with *value set and *i on the LAST
 * argument consumed (the caller steps past it), 0 if argv[*i] is another option, -1 if the value is
 * missing (message printed).
 */
int fb_cli_match_option(const char *cmd, int argc, char **argv, int *i, const char *name,
                        const char **value);

/* Strict value parsers: 0 on success, -1 on anything else (no message). */
/* Decimal digits only, no sign, no overflow, <= max. */
int fb_cli_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* A byte count with an optional binary suffix: 512, 64K, 10M, 1G, 2T
 * (K/M/G/T may be followed by "B" or "iB"; lower case is accepted). */
int fb_cli_parse_size(const char *s, uint64_t *out);
/* A finite decimal number in [lo, hi]. */
int fb_cli_parse_double(const char *s, double lo, double hi, double *out);
/* 1/0, true/false, yes/no, on/off (any case). */
int fb_cli_parse_bool(const char *s, int *out);

/*
 * A subcommand's own options: same contract as fb_cli_common_option (1 and
 * *i past the option and its value, 0 not ours, -1 bad value with a message
 * printed).
 */
typedef int (*fb_cli_opt_fn)(void *userdata, const char *cmd, int argc, char **argv, int *i);

/*
 * Parses a subcommand's argv (argv[0] is the subcommand name): "--help"/"-h"
 * prints help to stdout (its first "%s", if any, replaced by
 * fb_cli_common_help; no other formatting) and returns 1; own options are tried first, then the
 * shared ones; an unknown option returns -1 with a message printed. Operands
 * ("-" is one; everything after "--" is one) are moved to argv[0..*npos).
 * Returns 0 when parsing succeeded.
 */
int fb_cli_parse_args(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                      fb_cli_opt_fn own, void *userdata, int *npos);

/*
 * The start of every store subcommand: fb_cli_common_init, fb_cli_parse_args
 * and fb_cli_common_finish. Returns -1 when the command should run on (with
 * its operands in argv[0..*npos)), otherwise the exit code to return at once
 * (0 after --help, 2 after a usage error, with c already freed).
 */
int fb_cli_begin(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                 fb_cli_opt_fn own, void *userdata, int *npos);

/*
 * fb_cli_begin for a subcommand that takes no operands: an operand prints
 * "fastblocks CMD: unexpected argument '...' (see 'fastblocks CMD --help')"
 * and gives exit code 2. When s is not NULL the store is then opened
 * read-only into *s (a failure gives exit code 1). Same return as
 * fb_cli_begin; on every return other than -1, c is already freed.
 */
int fb_cli_begin_store(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                       fb_cli_opt_fn own, void *userdata, fb_store **s);

/* An fb_cli_opt_fn for --progress / --no-progress; userdata is the int
 * progress mode (FB_PROGRESS_*) it sets. Never fails. */
int fb_cli_progress_opt(void *mode, const char *cmd, int argc, char **argv, int *i);

/*
 * Closes s (NULL is fine) at the end of a subcommand that wrote to it and
 * returns the exit code: ret, or 1 with the error printed when ret was 0
 * and the close failed (the last writes were not made durable).
 */
int fb_cli_close_store(const char *cmd, fb_store *s, int ret);

/* Parses an image address ("ID" or "BLOCK/OFFSET/SIZE"); prints
 * "fastblocks CMD: bad image address '...': ..." and returns -1 if invalid. */
int fb_cli_parse_addr(const char *cmd, const char *text, fb_addr *out);

/* Writes all of buf to fd (retrying short writes and EINTR); 0 or -1 with errno. */
int fb_cli_write_all(int fd, const void *buf, size_t len);

/* Flushes stdout; on a write error prints "fastblocks CMD: cannot write
 * output: ..." and returns -1. */
int fb_cli_flush_stdout(const char *cmd);

/* Prints "fastblocks CMD: ITEM: <fb_strerror(rc)>[: <fb_last_error()>]" to
 * stderr: the error line of one item (file, address) among many. */
void fb_cli_error_item(const char *cmd, const char *item, int rc);

/* Prints obj as one line of compact JSON on stdout and releases it (NULL,
 * from a failed allocation, prints an error and returns -1). */
int fb_cli_print_json(const char *cmd, json_t *obj);

/* A JSON object of one block's statistics (block, number, file_bytes,
 * live/dead bytes and records, garbage_ratio, sealed); NULL if out of memory. */
json_t *fb_cli_block_json(const fb_block_stats *b);

/* dead / (live + dead) bytes, 0 for an empty block. */
double fb_cli_garbage_ratio(uint64_t live_bytes, uint64_t dead_bytes);

/* An fb_progress_fn that draws on the fb_progress passed as userdata and
 * cancels the operation once fb_cli_interrupted is set. */
int fb_cli_progress_cb(void *userdata, uint64_t done, uint64_t total);

/* Prints the result of compact or rekey on stdout (text, or one JSON object
 * with --json); 0 or -1 on a write error (message printed). */
int fb_cli_report_compact(const fb_cli_common *c, const char *cmd, const fb_compact_result *r);

/*
 * Runs compact or rekey: opens the store for writing (never creating it),
 * shows progress, reports the result, closes the store. op is fb_compact
 * with its threshold bound by the caller, or fb_rekey. Returns the exit code.
 */
typedef int (*fb_cli_rewrite_fn)(fb_store *s, void *op_arg, fb_progress_fn progress, void *userdata,
                                 fb_compact_result *result);
int fb_cli_run_rewrite(fb_cli_common *c, const char *cmd, int progress_mode, fb_cli_rewrite_fn op,
                       void *op_arg);

/* Writes "block_00000001.fbk/64/1234" (the seed triple of m) into buf. */
void fb_cli_triple(const fb_meta *m, char *buf, size_t cap);

#endif
