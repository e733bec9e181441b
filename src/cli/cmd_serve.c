/*
 * cmd_serve - `fastblocks serve`: parses the server's own flags (and their
 * FASTBLOCKS_* environment equivalents), the shared store options through
 * cli/common, opens the store, runs the HTTP service until SIGINT/SIGTERM,
 * then closes (syncs) the store. The service itself is src/http/.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "http/server.h"
#include "util/alloc.h"

#define CMD "serve"
/* A bearer token longer than this is a mistake (wrong file). */
#define TOKEN_MAX 4096

static const char serve_help[] =
    "Usage: fastblocks serve [options]\n"
    "\n"
    "Serves the image store over HTTP: the seed endpoints (POST /upload/,\n"
    "GET/DELETE /images/BLOCK/OFFSET/SIZE), the id endpoints (POST /images,\n"
    "GET/HEAD/DELETE /images/ID, GET /images/ID/meta), /healthz and /metrics.\n"
    "Prints \"fastblocks: listening on URL\" once it accepts connections; SIGINT or\n"
    "SIGTERM stops accepting, finishes requests in flight, syncs and exits 0.\n"
    "\n"
    "Server options (environment equivalent in brackets):\n"
    "  --listen ADDR              HOST:PORT, [IPV6]:PORT or unix:PATH (default\n"
    "                             127.0.0.1:8000; port 0 picks a free port) [FASTBLOCKS_LISTEN]\n"
    "  --threads N                request threads (default: one per core) [FASTBLOCKS_THREADS]\n"
    "  --upload-threads N         conversion threads (default: one per core)\n"
    "                             [FASTBLOCKS_UPLOAD_THREADS]\n"
    "  --max-connections N        concurrent connections (default 1024)\n"
    "                             [FASTBLOCKS_MAX_CONNECTIONS]\n"
    "  --connection-memory BYTES  per-connection buffer; request headers may fill half\n"
    "                             of it (default 32K; 4K to 1M) [FASTBLOCKS_CONNECTION_MEMORY]\n"
    "  --max-upload BYTES         largest upload body (default 50M; suffixes K, M, G)\n"
    "                             [FASTBLOCKS_MAX_UPLOAD]\n"
    "  --timeout SECONDS          close connections idle or stalled this long (default 30)\n"
    "                             [FASTBLOCKS_TIMEOUT]\n"
    "  --shutdown-timeout SECONDS longest wait for requests in flight at shutdown (default 60)\n"
    "                             [FASTBLOCKS_SHUTDOWN_TIMEOUT]\n"
    "  --compact-interval SECONDS compact blocks with many deleted images this often,\n"
    "                             online (default 600; 0: never) [FASTBLOCKS_COMPACT_INTERVAL]\n"
    "  --compact-threshold RATIO  dead share of a block that makes it worth compacting\n"
    "                             (default 0.3) [FASTBLOCKS_COMPACT_THRESHOLD]\n"
    "  --token-file FILE          require \"Authorization: Bearer TOKEN\" for uploads and\n"
    "                             deletes, TOKEN being the file's first line\n"
    "                             [FASTBLOCKS_TOKEN_FILE, or the token in FASTBLOCKS_TOKEN]\n"
    "  --quiet                    no access log on stderr [FASTBLOCKS_QUIET=1]\n"
    "\n"
    "Examples:\n"
    "  fastblocks serve --data ./data --listen 127.0.0.1:8000\n"
    "  FASTBLOCKS_KEY_FILE=/etc/fastblocks/keys fastblocks serve --listen unix:/run/fb.sock\n"
    "  curl -F file=@photo.jpg http://127.0.0.1:8000/upload/\n"
    "\n";

typedef struct serve_opts {
    fb_http_config *cfg;
    const char *token_file;
    unsigned given; /* bit per row of serve_table set on the command line */
} serve_opts;

typedef int (*setter)(serve_opts *o, const char *v);

static int parse_uint(const char *v, uint64_t min, uint64_t max, unsigned *out)
{
    uint64_t x;
    if (fb_cli_parse_u64(v, max, &x) != 0 || x < min) {
        return -1;
    }
    *out = (unsigned)x;
    return 0;
}

static int set_listen(serve_opts *o, const char *v)
{
    if (*v == '\0') {
        return -1;
    }
    o->cfg->listen = v;
    return 0;
}

static int set_threads(serve_opts *o, const char *v)
{
    return parse_uint(v, 1, 256, &o->cfg->threads);
}

static int set_upload_threads(serve_opts *o, const char *v)
{
    return parse_uint(v, 1, 256, &o->cfg->upload_threads);
}

static int set_max_connections(serve_opts *o, const char *v)
{
    return parse_uint(v, 1, 1000000, &o->cfg->max_connections);
}

static int set_connection_memory(serve_opts *o, const char *v)
{
    uint64_t x;
    if (fb_cli_parse_size(v, &x) != 0 || x < (4u << 10) || x > (1u << 20)) {
        return -1;
    }
    o->cfg->connection_memory = (size_t)x;
    return 0;
}

static int set_max_upload(serve_opts *o, const char *v)
{
    uint64_t x;
    if (fb_cli_parse_size(v, &x) != 0 || x == 0 || x > (uint64_t)SIZE_MAX / 2) {
        return -1;
    }
    o->cfg->max_upload = x;
    return 0;
}

static int set_timeout(serve_opts *o, const char *v)
{
    return parse_uint(v, 1, 86400, &o->cfg->timeout_s);
}

static int set_shutdown_timeout(serve_opts *o, const char *v)
{
    return parse_uint(v, 0, 86400, &o->cfg->shutdown_timeout_s);
}

static int set_compact_interval(serve_opts *o, const char *v)
{
    return parse_uint(v, 0, 30u * 86400, &o->cfg->compact_interval_s);
}

static int set_compact_threshold(serve_opts *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || end == NULL || *end != '\0' || errno != 0 || !(x > 0.0 && x <= 1.0)) {
        return -1;
    }
    o->cfg->compact_threshold = x;
    return 0;
}

static int set_token_file(serve_opts *o, const char *v)
{
    if (*v == '\0') {
        return -1;
    }
    o->token_file = v;
    return 0;
}

static int set_quiet(serve_opts *o, const char *v)
{
    int b = 1;
    if (v != NULL && fb_cli_parse_bool(v, &b) != 0) {
        return -1;
    }
    o->cfg->quiet = b;
    return 0;
}

static const struct {
    const char *name, *env;
    int flag; /* 1: takes no value on the command line */
    setter set;
} serve_table[] = {
    {"--listen", "FASTBLOCKS_LISTEN", 0, set_listen},
    {"--threads", "FASTBLOCKS_THREADS", 0, set_threads},
    {"--upload-threads", "FASTBLOCKS_UPLOAD_THREADS", 0, set_upload_threads},
    {"--max-connections", "FASTBLOCKS_MAX_CONNECTIONS", 0, set_max_connections},
    {"--connection-memory", "FASTBLOCKS_CONNECTION_MEMORY", 0, set_connection_memory},
    {"--max-upload", "FASTBLOCKS_MAX_UPLOAD", 0, set_max_upload},
    {"--timeout", "FASTBLOCKS_TIMEOUT", 0, set_timeout},
    {"--shutdown-timeout", "FASTBLOCKS_SHUTDOWN_TIMEOUT", 0, set_shutdown_timeout},
    {"--compact-interval", "FASTBLOCKS_COMPACT_INTERVAL", 0, set_compact_interval},
    {"--compact-threshold", "FASTBLOCKS_COMPACT_THRESHOLD", 0, set_compact_threshold},
    {"--token-file", "FASTBLOCKS_TOKEN_FILE", 0, set_token_file},
    {"--quiet", "FASTBLOCKS_QUIET", 1, set_quiet},
};
#define N_SERVE_OPTS (sizeof serve_table / sizeof serve_table[0])

/* fb_cli_opt_fn for the options above. */
static int own_option(void *userdata, const char *cmd, int argc, char **argv, int *i)
{
    serve_opts *o = userdata;
    for (size_t k = 0; k < N_SERVE_OPTS; k++) {
        const char *value = NULL;
        if (serve_table[k].flag) {
            if (strcmp(argv[*i], serve_table[k].name) != 0) {
                continue;
            }
        } else {
            int m = fb_cli_match_option(cmd, argc, argv, i, serve_table[k].name, &value);
            if (m == 0) {
                continue;
            }
            if (m < 0) {
                return -1;
            }
        }
        if (serve_table[k].set(o, value) != 0) {
            fb_cli_errorf(cmd, "bad value '%s' for %s (see 'fastblocks serve --help')",
                          value ? value : "", serve_table[k].name);
            return -1;
        }
        o->given |= 1u << k;
        *i += 1;
        return 1;
    }
    return 0;
}

static int apply_env(serve_opts *o)
{
    for (size_t k = 0; k < N_SERVE_OPTS; k++) {
        const char *v = getenv(serve_table[k].env);
        if ((o->given & (1u << k)) != 0 || v == NULL || *v == '\0') {
            continue;
        }
        if (serve_table[k].set(o, v) != 0) {
            fb_cli_errorf(CMD, "bad value '%s' in %s", v, serve_table[k].env);
            return -1;
        }
    }
    return 0;
}

/* Reads the token: the first line of the file, surrounding blanks removed. */
static char *read_token_file(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fb_cli_errorf(CMD, "cannot open token file %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = fb__malloc(TOKEN_MAX + 1);
    if (buf == NULL) {
        fb_cli_errorf(CMD, "out of memory");
        close(fd);
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, TOKEN_MAX + 1 - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            fb_cli_errorf(CMD, "cannot read token file %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0 || (len += (size_t)r) > TOKEN_MAX) {
            break;
        }
    }
    if (len > TOKEN_MAX) {
        fb_cli_errorf(CMD, "token file %s is larger than %d bytes", path, TOKEN_MAX);
        goto fail;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
fail:
    explicit_bzero(buf, TOKEN_MAX + 1);
    fb__free(buf);
    close(fd);
    return NULL;
}

/* The token in place: first line, trimmed. Returns its length; 0 if empty. */
static size_t trim_token(char *t)
{
    size_t start = 0, end;
    end = strcspn(t, "\r\n");
    while (start < end && (t[start] == ' ' || t[start] == '\t')) {
        start++;
    }
    while (end > start && (t[end - 1] == ' ' || t[end - 1] == '\t')) {
        end--;
    }
    memmove(t, t + start, end - start);
    t[end - start] = '\0';
    return end - start;
}

static void on_signal(int sig)
{
    (void)sig;
    fb_http_stop();
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* a client that goes away must not kill the server */
    sigaction(SIGPIPE, &sa, NULL);
}

int fb_cmd_serve(int argc, char **argv)
{
    fb_cli_common c;
    fb_http_config cfg;
    serve_opts so;
    fb_store *store = NULL;
    char *help = NULL, *token = NULL;
    size_t help_len;
    int npos = 0, r, ret = FB_EXIT_USAGE, rc;

    fb_cli_common_init(&c);
    fb_http_config_init(&cfg);
    memset(&so, 0, sizeof so);
    so.cfg = &cfg;
    help_len = strlen(serve_help) + strlen(fb_cli_common_help) + 1;
    help = fb__malloc(help_len);
    if (help == NULL) {
        fb_cli_errorf(CMD, "out of memory");
        return FB_EXIT_FAILURE;
    }
    snprintf(help, help_len, "%s%s", serve_help, fb_cli_common_help);
    r = fb_cli_parse_args(&c, CMD, help, argc, argv, own_option, &so, &npos);
    if (r != 0) {
        ret = r > 0 ? FB_EXIT_OK : FB_EXIT_USAGE;
        goto out;
    }
    if (npos > 0) {
        fb_cli_errorf(CMD, "unexpected argument '%s' (see 'fastblocks serve --help')", argv[0]);
        goto out;
    }
    if (apply_env(&so) != 0 || fb_cli_common_finish(&c, CMD) != 0) {
        goto out;
    }
    ret = FB_EXIT_FAILURE;
    if (so.token_file != NULL) {
        token = read_token_file(so.token_file);
        if (token == NULL) {
            goto out;
        }
        if (trim_token(token) == 0) {
            fb_cli_errorf(CMD, "token file %s is empty", so.token_file);
            goto out;
        }
    } else if (getenv("FASTBLOCKS_TOKEN") != NULL && *getenv("FASTBLOCKS_TOKEN") != '\0') {
        token = fb__strdup(getenv("FASTBLOCKS_TOKEN"));
        if (token == NULL || trim_token(token) == 0) {
            fb_cli_errorf(CMD, "FASTBLOCKS_TOKEN is empty or cannot be copied");
            goto out;
        }
    }
    if (token != NULL) {
        cfg.token = token;
        cfg.token_len = strlen(token);
    }
    cfg.image = c.store.image;
    install_signals();
    store = fb_cli_open_store(&c, CMD, 0);
    if (store == NULL) {
        goto out;
    }
    rc = fb_http_serve(store, &cfg);
    if (rc != 0) {
        fb_cli_error(CMD, rc);
    }
    r = fb_close(store);
    store = NULL;
    if (r != 0) {
        fb_cli_error(CMD, r);
    }
    ret = rc == 0 && r == 0 ? FB_EXIT_OK : FB_EXIT_FAILURE;
out:
    if (store != NULL) {
        fb_close(store);
    }
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        fb__free(token);
    }
    fb__free(help);
    fb_cli_common_free(&c);
    return ret;
}
