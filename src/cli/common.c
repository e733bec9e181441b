/*
 * common - the parts every fastblocks subcommand shares: one table of the
 * store and conversion options (the same spelling as the server's flags and
 * the Python keywords), their FASTBLOCKS_* environment defaults, loading
 * Fernet keys from a file or the environment (never from argv, where any
 * user could read them in /proc), opening the store, and the one-line error
 * convention "fastblocks CMD: ...".
 *
 * It does not know any subcommand; each cmd_*.c owns its own options and
 * only hands the shared ones here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/common.h"
#include "cli/progress.h"
#include "util/alloc.h"

/* The largest key file read: a few hundred keys, far more than rotation needs. */
#define FB_CLI_KEY_FILE_MAX (64u * 1024u)

const char fb_cli_common_help[] =
    "Store options (also FASTBLOCKS_<NAME> in the environment, e.g. FASTBLOCKS_CACHE_BYTES):\n"
    "  --data DIR                 store directory (default ./data, or FASTBLOCKS_DATA)\n"
    "  --key-file FILE            Fernet keys, one per line; the first encrypts new images\n"
    "                             (or FASTBLOCKS_KEY_FILE, or FASTBLOCKS_KEY=KEY1,KEY2,...)\n"
    "  --durability MODE          always (fsync per put, default) | batch | none\n"
    "  --batch-interval-ms N      fsync interval for --durability batch (default 10)\n"
    "  --compression              zstd-compress new records when it saves space\n"
    "  --no-compression           store new records uncompressed (default)\n"
    "  --compression-level N      zstd level 1..19 (default 3)\n"
    "  --max-block-size BYTES     size of a block file (default 1G; suffixes K, M, G)\n"
    "  --cache-bytes BYTES        image cache capacity (default 64M; 0 disables it)\n"
    "  --cache-entries N          cap on cached images (default 0: no cap)\n"
    "Conversion options (for new images):\n"
    "  --quality N                WebP quality 0..100 (default 80)\n"
    "  --effort N                 WebP effort (method) 0..6 (default 4)\n"
    "  --lossless                 lossless WebP\n"
    "  --max-dimension N          downscale so neither side exceeds N pixels (0: keep)\n"
    "  --keep-metadata            keep EXIF/XMP metadata (default: strip it)\n"
    "Output:\n"
    "  --json                     machine-readable output, one JSON object per line\n";

/* ------------------------------------------------------------------------ */
/* Value parsers, shared with the subcommands                                */

int fb_cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int fb_cli_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0, mult = 1;
    const char *p = s;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1ull << 10;
        break;
    case 'm':
    case 'M':
        mult = 1ull << 20;
        break;
    case 'g':
    case 'G':
        mult = 1ull << 30;
        break;
    case 't':
    case 'T':
        mult = 1ull << 40;
        break;
    default:
        return -1;
    }
    if (*p != '\0') {
        p++;
        /* "64M", "64MB" and "64MiB" all mean the binary unit. */
        if (strcmp(p, "") != 0 && strcmp(p, "B") != 0 && strcmp(p, "iB") != 0)
            return -1;
    }
    if (mult != 1 && v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int fb_cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v;
    if (s == NULL || *s == '\0' || *s == ' ' || *s == '\t')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int fb_cli_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t k = 0; k < sizeof yes / sizeof yes[0]; k++) {
        if (strcasecmp(s, yes[k]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[k]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

atomic_int fb_cli_interrupted = 0;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs a lock-free flag");

static void on_interrupt(int sig)
{
    /* The first signal asks for a clean stop; a second one, for a user whose
     * command is stuck (say in a read of stdin), ends the process at once. */
    if (fb_cli_interrupted) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    fb_cli_interrupted = 1;
}

void fb_cli_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking read of stdin returns EINTR and stops. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void fb_cli_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fastblocks %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void fb_cli_error_item(const char *cmd, const char *item, int rc)
{
    const char *detail = fb_last_error();
    if (detail != NULL && *detail != '\0')
        fprintf(stderr, "fastblocks %s: %s: %s: %s\n", cmd, item, fb_strerror(rc), detail);
    else
        fprintf(stderr, "fastblocks %s: %s: %s\n", cmd, item, fb_strerror(rc));
}

void fb_cli_error(const char *cmd, int rc)
{
    const char *detail = fb_last_error();
    if (detail != NULL && *detail != '\0')
        fprintf(stderr, "fastblocks %s: %s: %s\n", cmd, fb_strerror(rc), detail);
    else
        fprintf(stderr, "fastblocks %s: %s\n", cmd, fb_strerror(rc));
}

int fb_cli_match_option(const char *cmd, int argc, char **argv, int *i, const char *name,
                        const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        /* A short option takes its value attached, as in "-j4" or "-oout.webp". */
        if (n == 2 && name[0] == '-' && name[1] != '-') {
            *value = arg + n;
            return 1;
        }
        return 0;
    }
    if (*i + 1 >= argc) {
        fb_cli_errorf(cmd, "option %s needs a value (see 'fastblocks %s --help')", name, cmd);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The shared option table                                                   */

enum opt_kind {
    OPT_VALUE, /* --name VALUE or --name=VALUE */
    OPT_FLAG   /* --name; its environment variable takes a boolean */
};

typedef struct shared_opt {
    const char *name; /* command-line spelling */
    const char *env;  /* environment default, NULL if none */
    enum opt_kind kind;
    /* Applies a value (NULL for a flag on the command line); returns 0, or
     * -1 with *why set to what a valid value looks like. */
    int (*set)(fb_cli_common *c, const char *value, const char **why);
} shared_opt;

static int set_data(fb_cli_common *c, const char *v, const char **why)
{
    if (*v == '\0') {
        *why = "must not be empty";
        return -1;
    }
    c->data_dir = v;
    return 0;
}

static int set_key_file(fb_cli_common *c, const char *v, const char **why)
{
    if (*v == '\0') {
        *why = "must not be empty";
        return -1;
    }
    c->key_file = v;
    return 0;
}

static int set_durability(fb_cli_common *c, const char *v, const char **why)
{
    if (strcmp(v, "always") == 0)
        c->store.durability = FB_DURABILITY_ALWAYS;
    else if (strcmp(v, "batch") == 0)
        c->store.durability = FB_DURABILITY_BATCH;
    else if (strcmp(v, "none") == 0)
        c->store.durability = FB_DURABILITY_NONE;
    else {
        *why = "must be always, batch or none";
        return -1;
    }
    return 0;
}

static int set_batch_interval(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, 60000, &n) != 0 || n == 0) {
        *why = "must be 1..60000 milliseconds";
        return -1;
    }
    c->store.batch_interval_ms = (uint32_t)n;
    return 0;
}

/* A flag given on the command line has no value; from the environment it
 * is a boolean. */
static int flag_value(const char *v, int *out, const char **why)
{
    if (v == NULL) {
        *out = 1;
        return 0;
    }
    if (fb_cli_parse_bool(v, out) != 0) {
        *why = "must be 1/0, true/false, yes/no or on/off";
        return -1;
    }
    return 0;
}

static int set_compression(fb_cli_common *c, const char *v, const char **why)
{
    return flag_value(v, &c->store.compression, why);
}

static int set_no_compression(fb_cli_common *c, const char *v, const char **why)
{
    (void)v;
    (void)why;
    c->store.compression = 0;
    return 0;
}

static int set_compression_level(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, 19, &n) != 0 || n < 1) {
        *why = "must be 1..19";
        return -1;
    }
    c->store.compression_level = (int)n;
    return 0;
}

static int set_max_block_size(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    /* Offsets inside a block are 40 bits wide (DESIGN.md, ids): stay below 1T. */
    if (fb_cli_parse_size(v, &n) != 0 || n < 4096 || n > (1ull << 39)) {
        *why = "must be 4K..512G bytes (suffixes K, M, G, T)";
        return -1;
    }
    c->store.max_block_size = n;
    return 0;
}

static int set_cache_bytes(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_size(v, &n) != 0) {
        *why = "must be a byte count (suffixes K, M, G, T)";
        return -1;
    }
    c->store.cache_bytes = n;
    return 0;
}

static int set_cache_entries(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, UINT64_MAX, &n) != 0) {
        *why = "must be a count (0: no cap)";
        return -1;
    }
    c->store.cache_entries = n;
    return 0;
}

static int set_quality(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, 100, &n) != 0) {
        *why = "must be 0..100";
        return -1;
    }
    c->store.image.quality = (int)n;
    return 0;
}

static int set_effort(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, 6, &n) != 0) {
        *why = "must be 0..6";
        return -1;
    }
    c->store.image.effort = (int)n;
    return 0;
}

static int set_lossless(fb_cli_common *c, const char *v, const char **why)
{
    return flag_value(v, &c->store.image.lossless, why);
}

static int set_max_dimension(fb_cli_common *c, const char *v, const char **why)
{
    uint64_t n;
    if (fb_cli_parse_u64(v, UINT32_MAX, &n) != 0) {
        *why = "must be a pixel count (0: keep the size)";
        return -1;
    }
    c->store.image.max_dimension = (uint32_t)n;
    return 0;
}

static int set_keep_metadata(fb_cli_common *c, const char *v, const char **why)
{
    return flag_value(v, &c->store.image.keep_metadata, why);
}

static int set_json(fb_cli_common *c, const char *v, const char **why)
{
    return flag_value(v, &c->json, why);
}

static const shared_opt shared_opts[] = {
    {"--data", NULL, OPT_VALUE, set_data}, /* FASTBLOCKS_DATA: read at init */
    {"--key-file", NULL, OPT_VALUE, set_key_file},
    {"--durability", "FASTBLOCKS_DURABILITY", OPT_VALUE, set_durability},
    {"--batch-interval-ms", "FASTBLOCKS_BATCH_INTERVAL_MS", OPT_VALUE, set_batch_interval},
    {"--compression", "FASTBLOCKS_COMPRESSION", OPT_FLAG, set_compression},
    {"--no-compression", NULL, OPT_FLAG, set_no_compression},
    {"--compression-level", "FASTBLOCKS_COMPRESSION_LEVEL", OPT_VALUE, set_compression_level},
    {"--max-block-size", "FASTBLOCKS_MAX_BLOCK_SIZE", OPT_VALUE, set_max_block_size},
    {"--cache-bytes", "FASTBLOCKS_CACHE_BYTES", OPT_VALUE, set_cache_bytes},
    {"--cache-entries", "FASTBLOCKS_CACHE_ENTRIES", OPT_VALUE, set_cache_entries},
    {"--quality", "FASTBLOCKS_QUALITY", OPT_VALUE, set_quality},
    {"--effort", "FASTBLOCKS_EFFORT", OPT_VALUE, set_effort},
    {"--lossless", "FASTBLOCKS_LOSSLESS", OPT_FLAG, set_lossless},
    {"--max-dimension", "FASTBLOCKS_MAX_DIMENSION", OPT_VALUE, set_max_dimension},
    {"--keep-metadata", "FASTBLOCKS_KEEP_METADATA", OPT_FLAG, set_keep_metadata},
    {"--json", NULL, OPT_FLAG, set_json},
};
#define N_SHARED_OPTS (sizeof shared_opts / sizeof shared_opts[0])
_Static_assert(N_SHARED_OPTS <= 32, "fb_cli_common.given is a 32-bit mask");

void fb_cli_common_init(fb_cli_common *c)
{
    const char *env = getenv("FASTBLOCKS_DATA");
    memset(c, 0, sizeof *c);
    fb_options_init(&c->store);
    c->data_dir = (env != NULL && *env != '\0') ? env : "./data";
}

int fb_cli_common_option(fb_cli_common *c, const char *cmd, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    for (size_t k = 0; k < N_SHARED_OPTS; k++) {
        const shared_opt *o = &shared_opts[k];
        const char *value = NULL, *why = "is not valid";
        if (o->kind == OPT_FLAG) {
            if (strcmp(arg, o->name) != 0)
                continue;
        } else {
            int m = fb_cli_match_option(cmd, argc, argv, i, o->name, &value);
            if (m == 0)
                continue;
            if (m < 0)
                return -1;
        }
        if (o->set(c, value, &why) != 0) {
            fb_cli_errorf(cmd, "bad value '%s' for %s: %s", value, o->name, why);
            return -1;
        }
        c->given |= 1u << k;
        *i += 1;
        return 1;
    }
    return 0;
}

/* Keeps a copy of one key after checking it; the caller wipes the source. */
static int add_key(fb_cli_common *c, const char *cmd, const char *key, size_t len,
                   const char *where, size_t n)
{
    char *copy = NULL;
    int rc;
    if (len > 256) {
        fb_cli_errorf(cmd, "bad key %zu in %s: too long to be a Fernet key", n, where);
        return -1;
    }
    copy = fb__malloc(len + 1);
    if (copy == NULL)
        goto nomem;
    memcpy(copy, key, len);
    copy[len] = '\0';
    rc = fb_key_check(copy);
    if (rc != 0) {
        /* Never echo the key itself: it may be a real key with a typo. */
        fb_cli_errorf(cmd, "bad key %zu in %s: %s", n, where, fb_last_error());
        explicit_bzero(copy, len);
        fb__free(copy);
        return -1;
    }
    if (FB__GROW_ARRAY(&c->keys, &c->keys_cap, c->nkeys + 1, 4) != 0)
        goto nomem;
    c->keys[c->nkeys++] = copy;
    return 0;
nomem:
    if (copy != NULL) {
        explicit_bzero(copy, len);
        fb__free(copy);
    }
    fb_cli_errorf(cmd, "out of memory");
    return -1;
}

/* Keys from text: one per line (a file) or comma-separated (FASTBLOCKS_KEY).
 * Blank lines and lines starting with '#' are skipped. */
static int parse_keys(fb_cli_common *c, const char *cmd, const char *text, size_t len, char sep,
                      const char *where)
{
    size_t pos = 0, n = 0;
    while (pos < len) {
        size_t start = pos, end;
        while (pos < len && text[pos] != sep && text[pos] != '\n')
            pos++;
        end = pos;
        if (pos < len)
            pos++;
        while (start < end && (text[start] == ' ' || text[start] == '\t'))
            start++;
        while (end > start &&
               (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r'))
            end--;
        if (start == end || text[start] == '#')
            continue;
        n++;
        if (add_key(c, cmd, text + start, end - start, where, n) != 0)
            return -1;
    }
    if (c->nkeys == 0) {
        fb_cli_errorf(cmd, "no key in %s", where);
        return -1;
    }
    return 0;
}

static int load_key_file(fb_cli_common *c, const char *cmd, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int fd = -1, ret = -1;
    struct stat st;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fb_cli_errorf(cmd, "cannot open key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fb_cli_errorf(cmd, "key file %s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > FB_CLI_KEY_FILE_MAX) {
        fb_cli_errorf(cmd, "key file %s is larger than %u bytes", path, FB_CLI_KEY_FILE_MAX);
        goto out;
    }
    buf = fb__malloc(FB_CLI_KEY_FILE_MAX + 1);
    if (buf == NULL) {
        fb_cli_errorf(cmd, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, FB_CLI_KEY_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fb_cli_errorf(cmd, "cannot read key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > FB_CLI_KEY_FILE_MAX) {
            fb_cli_errorf(cmd, "key file %s is larger than %u bytes", path, FB_CLI_KEY_FILE_MAX);
            goto out;
        }
    }
    ret = parse_keys(c, cmd, buf, len, '\n', path);
out:
    if (buf != NULL) {
        explicit_bzero(buf, FB_CLI_KEY_FILE_MAX + 1);
        fb__free(buf);
    }
    if (fd >= 0)
        close(fd);
    return ret;
}

int fb_cli_common_finish(fb_cli_common *c, const char *cmd)
{
    const char *env;
    /* Environment defaults for what the command line did not set. */
    for (size_t k = 0; k < N_SHARED_OPTS; k++) {
        const shared_opt *o = &shared_opts[k];
        const char *why = "is not valid";
        if (o->env == NULL || (c->given & (1u << k)) != 0)
            continue;
        env = getenv(o->env);
        if (env == NULL || *env == '\0')
            continue;
        if (o->set(c, env, &why) != 0) {
            fb_cli_errorf(cmd, "bad value '%s' in %s: %s", env, o->env, why);
            return -1;
        }
    }
    /* Keys: --key-file, else FASTBLOCKS_KEY_FILE, else FASTBLOCKS_KEY. */
    if (c->key_file == NULL) {
        env = getenv("FASTBLOCKS_KEY_FILE");
        if (env != NULL && *env != '\0')
            c->key_file = env;
    }
    if (c->key_file != NULL) {
        if (load_key_file(c, cmd, c->key_file) != 0)
            return -1;
    } else {
        env = getenv("FASTBLOCKS_KEY");
        if (env != NULL && *env != '\0' &&
            parse_keys(c, cmd, env, strlen(env), ',', "FASTBLOCKS_KEY") != 0)
            return -1;
    }
    c->store.keys = (const char *const *)c->keys;
    c->store.nkeys = c->nkeys;
    return 0;
}

fb_store *fb_cli_open_store(fb_cli_common *c, const char *cmd, int read_only)
{
    fb_store *s = NULL;
    int rc;
    c->store.read_only = read_only ? 1 : 0;
    if (read_only)
        c->store.create = 0;
    rc = fb_open(c->data_dir, &c->store, &s);
    if (rc == FB_ENOSTORE) {
        fb_cli_errorf(cmd, "no store at %s", c->data_dir);
        return NULL;
    }
    if (rc != 0) {
        fb_cli_error(cmd, rc);
        return NULL;
    }
    return s;
}

void fb_cli_common_free(fb_cli_common *c)
{
    for (size_t k = 0; k < c->nkeys; k++) {
        explicit_bzero(c->keys[k], strlen(c->keys[k]));
        fb__free(c->keys[k]);
    }
    fb__free(c->keys);
    c->keys = NULL;
    c->nkeys = 0;
    c->keys_cap = 0;
    c->store.keys = NULL;
    c->store.nkeys = 0;
}

/* Prints help with its first "%s" replaced by the shared options' help.
 * Not printf: a help text is not a format, and may contain '%'. */
static void print_help(const char *help)
{
    const char *mark = strstr(help, "%s");
    if (mark == NULL) {
        fputs(help, stdout);
        return;
    }
    fwrite(help, 1, (size_t)(mark - help), stdout);
    fputs(fb_cli_common_help, stdout);
    fputs(mark + 2, stdout);
}

int fb_cli_parse_args(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                      fb_cli_opt_fn own, void *userdata, int *npos)
{
    int i = 1, n = 0, only_positional = 0;
    while (i < argc) {
        const char *arg = argv[i];
        int r;
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            argv[n++] = argv[i++]; /* n <= i - 1: never overwrites an unread argument */
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = 1;
            i++;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(help);
            return 1;
        }
        r = own != NULL ? own(userdata, cmd, argc, argv, &i) : 0;
        if (r == 0)
            r = fb_cli_common_option(c, cmd, argc, argv, &i);
        if (r < 0)
            return -1;
        if (r == 0) {
            fb_cli_errorf(cmd, "unknown option '%s' (see 'fastblocks %s --help')", arg, cmd);
            return -1;
        }
    }
    *npos = n;
    return 0;
}

int fb_cli_begin(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                 fb_cli_opt_fn own, void *userdata, int *npos)
{
    int r;
    fb_cli_common_init(c);
    r = fb_cli_parse_args(c, cmd, help, argc, argv, own, userdata, npos);
    if (r == 0 && fb_cli_common_finish(c, cmd) != 0)
        r = -1;
    if (r == 0)
        return -1;
    fb_cli_common_free(c);
    return r > 0 ? FB_EXIT_OK : FB_EXIT_USAGE;
}

int fb_cli_begin_store(fb_cli_common *c, const char *cmd, const char *help, int argc, char **argv,
                       fb_cli_opt_fn own, void *userdata, fb_store **s)
{
    int npos, r = fb_cli_begin(c, cmd, help, argc, argv, own, userdata, &npos);
    if (r >= 0)
        return r;
    if (npos != 0) {
        fb_cli_errorf(cmd, "unexpected argument '%s' (see 'fastblocks %s --help')", argv[0], cmd);
        r = FB_EXIT_USAGE;
    } else if (s != NULL) {
        *s = fb_cli_open_store(c, cmd, 1);
        if (*s == NULL)
            r = FB_EXIT_FAILURE;
    }
    if (r < 0)
        return r;
    fb_cli_common_free(c);
    return r;
}

int fb_cli_progress_opt(void *mode, const char *cmd, int argc, char **argv, int *i)
{
    (void)cmd;
    (void)argc;
    if (!fb_progress_option(argv[*i], mode))
        return 0;
    *i += 1;
    return 1;
}

int fb_cli_close_store(const char *cmd, fb_store *s, int ret)
{
    int rc;
    if (s == NULL)
        return ret;
    rc = fb_close(s);
    if (rc != 0 && ret == FB_EXIT_OK) {
        fb_cli_error(cmd, rc);
        ret = FB_EXIT_FAILURE;
    }
    return ret;
}

int fb_cli_parse_addr(const char *cmd, const char *text, fb_addr *out)
{
    int rc = fb_addr_parse(text, out);
    if (rc != 0) {
        const char *detail = fb_last_error();
        fb_cli_errorf(cmd, "bad image address '%s': %s", text,
                      detail != NULL && *detail ? detail
                                                : "expected an id (24 hex digits) or "
                                                  "BLOCK/OFFSET/SIZE");
        return -1;
    }
    return 0;
}

int fb_cli_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fb_cli_flush_stdout(const char *cmd)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fb_cli_errorf(cmd, "cannot write output: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void fb_cli_triple(const fb_meta *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%llu/%llu", m->block, (unsigned long long)m->offset,
             (unsigned long long)m->size);
}

int fb_cli_print_json(const char *cmd, json_t *obj)
{
    int rc;
    if (obj == NULL) {
        fb_cli_errorf(cmd, "out of memory");
        return -1;
    }
    rc = json_dumpf(obj, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (rc != 0 || fputc('\n', stdout) == EOF) {
        fb_cli_errorf(cmd, "cannot write output: %s", strerror(errno));
        return -1;
    }
    return 0;
}

double fb_cli_garbage_ratio(uint64_t live_bytes, uint64_t dead_bytes)
{
    double all = (double)live_bytes + (double)dead_bytes;
    return all > 0 ? (double)dead_bytes / all : 0.0;
}

json_t *fb_cli_block_json(const fb_block_stats *b)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b}", "block", b->block, "number",
                     (json_int_t)b->number, "file_bytes", (json_int_t)b->file_bytes, "live_bytes",
                     (json_int_t)b->live_bytes, "dead_bytes", (json_int_t)b->dead_bytes,
                     "live_records", (json_int_t)b->live_records, "dead_records",
                     (json_int_t)b->dead_records, "garbage_ratio",
                     fb_cli_garbage_ratio(b->live_bytes, b->dead_bytes), "sealed", b->sealed);
}

int fb_cli_progress_cb(void *userdata, uint64_t done, uint64_t total)
{
    fb_progress_update(userdata, done, total);
    return fb_cli_interrupted ? 1 : 0;
}

int fb_cli_report_compact(const fb_cli_common *c, const char *cmd, const fb_compact_result *r)
{
    if (c->json) {
        json_t *o = json_pack(
            "{s:I, s:I, s:I}", "blocks_compacted", (json_int_t)r->blocks_compacted, "records_moved",
            (json_int_t)r->records_moved, "bytes_reclaimed", (json_int_t)r->bytes_reclaimed);
        if (fb_cli_print_json(cmd, o) != 0)
            return -1;
    } else {
        char human[32];
        fb_progress_bytes(human, sizeof human, (double)r->bytes_reclaimed);
        printf("%s: %u block%s rewritten, %llu record%s moved, %llu bytes reclaimed (%s)\n", cmd,
               r->blocks_compacted, r->blocks_compacted == 1 ? "" : "s",
               (unsigned long long)r->records_moved, r->records_moved == 1 ? "" : "s",
               (unsigned long long)r->bytes_reclaimed, human);
    }
    return fb_cli_flush_stdout(cmd);
}

int fb_cli_run_rewrite(fb_cli_common *c, const char *cmd, int progress_mode, fb_cli_rewrite_fn op,
                       void *op_arg)
{
    fb_store *s = NULL;
    fb_progress p;
    fb_compact_result r;
    int rc, ret = FB_EXIT_FAILURE;
    memset(&r, 0, sizeof r);
    c->store.create = 0;
    s = fb_cli_open_store(c, cmd, 0);
    if (s == NULL)
        goto out;
    fb_cli_catch_interrupt();
    fb_progress_start(&p, cmd, 0, progress_mode);
    rc = op(s, op_arg, fb_cli_progress_cb, &p, &r);
    fb_progress_finish(&p);
    if (rc == FB_ECLOSED && fb_cli_interrupted) {
        /* What was moved stays moved: both operations are restartable. */
        fb_cli_errorf(cmd, "interrupted after %u blocks", r.blocks_compacted);
        goto out;
    }
    if (rc != 0) {
        fb_cli_error(cmd, rc);
        goto out;
    }
    if (fb_cli_report_compact(c, cmd, &r) != 0)
        goto out;
    ret = FB_EXIT_OK;
out:
    return fb_cli_close_store(cmd, s, ret);
}
