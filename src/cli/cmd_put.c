/*
 * cmd_put - "fastblocks put FILE...|-": converts and stores images, printing
 * the id and seed triple of each in input order.
 *
 * Conversion (~100 ms per photo) dominates, and fb_put is thread-safe and
 * runs it in the caller's thread, so several worker threads each take the
 * next file while the main thread prints results in input order and draws
 * the progress bar. A bad file is reported and skipped; a storage failure
 * (disk full, I/O error) stops the run, since every later put would fail
 * the same way.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "util/alloc.h"

#define PUT_MAX_JOBS 64
#define PUT_MAX_DEPTH 64 /* directory nesting walked; deeper is surely a mistake */

static const char help[] =
    "Usage: fastblocks put FILE|DIR|-... [options]\n"
    "\n"
    "Converts images to WebP and stores them. For each one, prints\n"
    "  ID BLOCK/OFFSET/SIZE FILE\n"
    "in the order given: the id (for 'get ID') and the seed triple of the\n"
    "original FastBlocks API. A directory is walked recursively in name order\n"
    "(names starting with '.' are skipped); '-' reads one image from stdin.\n"
    "A file that cannot be stored is reported on stderr and skipped; the exit\n"
    "code is then 1. The store is created if it does not exist.\n"
    "\n"
    "Options:\n"
    "  -j, --jobs N               convert N images at a time (default: the number\n"
    "                             of CPUs)\n"
    "  --progress                 show progress also when stderr is not a terminal\n"
    "  --no-progress              never show progress\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks put photo.jpg\n"
    "  fastblocks put --data /srv/images --max-dimension 2048 uploads/\n"
    "  curl -s https://example.com/cat.png | fastblocks put -\n"
    "  fastblocks put --json --key-file keys *.png > stored.jsonl\n"
    "\n"
    "Exit codes: 0 all stored, 1 some file failed, 2 usage error.\n";

typedef struct put_item {
    char *path;    /* as given or walked; "-" is stdin */
    uint64_t size; /* from stat, 0 if unknown */
    /* Filled by the worker that takes the item, read by the main thread
     * once done is set (under put_ctx.lock). */
    int done;
    int rc;
    int fatal; /* a storage failure: stop the run */
    fb_meta meta;
    char err[320];
} put_item;

typedef struct put_ctx {
    fb_cli_common *c;
    fb_store *store;
    put_item *items;
    size_t n, cap;
    size_t next; /* the next item to claim */
    int workers; /* running */
    int stop;    /* a fatal error: claim no more */
    int jobs;    /* --jobs, 0: number of CPUs */
    int progress_mode;
    int walked_dir; /* a directory was given: show progress */
    size_t failed;  /* items that failed before the workers started */
    pthread_mutex_t lock;
    pthread_cond_t cond;
} put_ctx;

static int put_option(void *ud, const char *cmd, int argc, char **argv, int *i)
{
    put_ctx *p = ud;
    const char *v;
    uint64_t n;
    int m;
    if (fb_cli_progress_opt(&p->progress_mode, cmd, argc, argv, i))
        return 1;
    m = fb_cli_match_option(cmd, argc, argv, i, "--jobs", &v);
    if (m == 0)
        m = fb_cli_match_option(cmd, argc, argv, i, "-j", &v);
    if (m <= 0)
        return m;
    if (fb_cli_parse_u64(v, PUT_MAX_JOBS, &n) != 0 || n == 0) {
        fb_cli_errorf(cmd, "bad value '%s' for --jobs: must be 1..%d", v, PUT_MAX_JOBS);
        return -1;
    }
    p->jobs = (int)n;
    *i += 1;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Collecting the inputs                                                     */

static int add_item(put_ctx *p, const char *path, uint64_t size)
{
    char *copy;
    if (FB__GROW_ARRAY(&p->items, &p->cap, p->n + 1, 64) != 0)
        return -1;
    copy = fb__strdup(path);
    if (copy == NULL)
        return -1;
    memset(&p->items[p->n], 0, sizeof p->items[p->n]);
    p->items[p->n].path = copy;
    p->items[p->n].size = size;
    p->n++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins dir and name into a new string ("dir/name", no doubled slash). */
static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *s;
    if (a > SIZE_MAX - b - 2)
        return NULL;
    s = fb__malloc(a + (size_t)slash + b + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, dir, a);
    if (slash)
        s[a] = '/';
    memcpy(s + a + slash, name, b + 1);
    return s;
}

/*
 * Adds the regular files under dir in name order. Symbolic links to files
 * are followed, links to directories are not (no cycles). Returns 0, or -1
 * if out of memory; an unreadable directory is reported and counted failed.
 */
static int walk_dir(put_ctx *p, const char *dir, int depth)
{
    DIR *d = NULL;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int ret = -1;
    if (depth > PUT_MAX_DEPTH) {
        fb_cli_errorf("put", "%s: directories nested deeper than %d levels", dir, PUT_MAX_DEPTH);
        p->failed++;
        return 0;
    }
    d = opendir(dir);
    if (d == NULL) {
        fb_cli_errorf("put", "%s: %s", dir, strerror(errno));
        p->failed++;
        return 0;
    }
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", ".." and hidden files such as .DS_Store */
        if (FB__GROW_ARRAY(&names, &cap, n + 1, 32) != 0)
            goto out;
        names[n] = fb__strdup(e->d_name);
        if (names[n] == NULL)
            goto out;
        n++;
    }
    if (errno != 0) {
        fb_cli_errorf("put", "%s: %s", dir, strerror(errno));
        p->failed++;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, by_name);
    for (size_t k = 0; k < n; k++) {
        struct stat st, lst;
        char *path = join_path(dir, names[k]);
        int r = 0;
        if (path == NULL)
            goto out;
        if (stat(path, &st) != 0) {
            fb_cli_errorf("put", "%s: %s", path, strerror(errno));
            p->failed++;
        } else if (S_ISDIR(st.st_mode)) {
            if (lstat(path, &lst) == 0 && !S_ISLNK(lst.st_mode))
                r = walk_dir(p, path, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            r = add_item(p, path, (uint64_t)st.st_size);
        }
        fb__free(path);
        if (r != 0)
            goto out;
    }
    ret = 0;
out:
    for (size_t k = 0; k < n; k++)
        fb__free(names[k]);
    fb__free(names);
    closedir(d);
    return ret;
}

/* Turns the operands into items; 0, or -1 if out of memory. */
static int collect_inputs(put_ctx *p, char **args, int nargs)
{
    for (int k = 0; k < nargs; k++) {
        struct stat st;
        if (strcmp(args[k], "-") == 0) {
            if (add_item(p, "-", 0) != 0)
                return -1;
            continue;
        }
        if (stat(args[k], &st) != 0) {
            fb_cli_errorf("put", "%s: %s", args[k], strerror(errno));
            p->failed++;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            p->walked_dir = 1;
            if (walk_dir(p, args[k], 0) != 0)
                return -1;
            continue;
        }
        /* Not only regular files: a FIFO from <(...) is a fine input. */
        if (add_item(p, args[k], S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Storing one item (worker threads)                                         */

/*
 * Reads all of fd into a new buffer, refusing more than limit bytes before
 * reading them. Returns 0, or an FB_E* code with it->err set.
 */
static int read_input(int fd, uint64_t limit, put_item *it, uint8_t **out, size_t *len)
{
    size_t cap = it->size > 0 && it->size <= limit ? (size_t)it->size + 1 : 64 * 1024, n = 0;
    uint8_t *buf = fb__malloc(cap);
    if (buf == NULL)
        goto nomem;
    for (;;) {
        ssize_t r;
        if (n == cap) {
            if (n > limit) {
                fb__free(buf);
                snprintf(it->err, sizeof it->err,
                         "%s: image exceeds a configured limit: input is larger than %llu bytes",
                         it->path, (unsigned long long)limit);
                return FB_ELIMIT;
            }
            if (FB__GROW_ARRAY(&buf, &cap, n + 1, 0) != 0)
                goto nomem;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR && !fb_cli_interrupted)
            continue;
        if (r < 0) {
            snprintf(it->err, sizeof it->err, "%s: cannot read: %s", it->path, strerror(errno));
            fb__free(buf);
            return FB_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > limit) {
        fb__free(buf);
        snprintf(it->err, sizeof it->err,
                 "%s: image exceeds a configured limit: input is %zu bytes, more than %llu",
                 it->path, n, (unsigned long long)limit);
        return FB_ELIMIT;
    }
    *out = buf;
    *len = n;
    return 0;
nomem:
    fb__free(buf);
    snprintf(it->err, sizeof it->err, "%s: out of memory", it->path);
    return FB_ENOMEM;
}

static void put_one(put_ctx *p, put_item *it)
{
    const fb_image_opts *opts = &p->c->store.image;
    uint8_t *data = NULL;
    size_t len = 0;
    int fd = STDIN_FILENO, rc;
    if (strcmp(it->path, "-") != 0) {
        fd = open(it->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(it->err, sizeof it->err, "%s: %s", it->path, strerror(errno));
            it->rc = FB_EIO;
            return;
        }
    }
    rc = read_input(fd, opts->max_input_bytes, it, &data, &len);
    if (fd != STDIN_FILENO)
        close(fd);
    if (rc != 0) {
        it->rc = rc;
        return;
    }
    if (len == 0) {
        /* Said here: the library only sees "no image" in an empty buffer. */
        fb__free(data);
        snprintf(it->err, sizeof it->err, "%s: image cannot be decoded: the file is empty",
                 it->path);
        it->rc = FB_EIMAGE;
        return;
    }
    rc = fb_put(p->store, data, len, opts, &it->meta);
    fb__free(data);
    it->rc = rc;
    if (rc != 0) {
        const char *detail = fb_last_error();
        if (detail != NULL && *detail != '\0')
            snprintf(it->err, sizeof it->err, "%s: %s: %s", it->path, fb_strerror(rc), detail);
        else
            snprintf(it->err, sizeof it->err, "%s: %s", it->path, fb_strerror(rc));
        /* Input errors concern one file; these concern the store. */
        it->fatal = rc == FB_ENOSPC || rc == FB_EIO || rc == FB_EREADONLY || rc == FB_ECLOSED ||
                    rc == FB_EKEY || rc == FB_ELOCKED;
    }
}

static void *worker(void *arg)
{
    put_ctx *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        put_item *it;
        if (p->stop || fb_cli_interrupted || p->next >= p->n)
            break;
        it = &p->items[p->next++];
        pthread_mutex_unlock(&p->lock);
        put_one(p, it);
        pthread_mutex_lock(&p->lock);
        it->done = 1;
        if (it->fatal)
            p->stop = 1;
        pthread_cond_broadcast(&p->cond);
    }
    p->workers--;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Reporting (main thread)                                                   */

/* Prints the result line of a stored item; 0 or -1 on a write error. */
static int print_stored(const put_ctx *p, const put_item *it)
{
    char triple[96];
    if (p->c->json) {
        char buf[FB_META_JSON_MAX];
        json_t *o = NULL;
        int n = fb_meta_json(&it->meta, buf, sizeof buf);
        if (n >= 0)
            o = json_loadb(buf, (size_t)n, 0, NULL);
        /* The metadata object of the HTTP API, plus where the image came from. */
        if (o != NULL && json_object_set_new(o, "file", json_string(it->path)) != 0) {
            json_decref(o);
            o = NULL;
        }
        return fb_cli_print_json("put", o);
    }
    fb_cli_triple(&it->meta, triple, sizeof triple);
    printf("%s %s %s\n", it->meta.id, triple, it->path);
    return 0;
}

/* Waits for each item in order and reports it. Returns the number failed
 * (not counting items never started), or -1 on an output error. */
static long report(put_ctx *p, fb_progress *prog)
{
    uint64_t done_bytes = 0;
    long failed = 0;
    for (size_t k = 0; k < p->n; k++) {
        put_item *it = &p->items[k];
        pthread_mutex_lock(&p->lock);
        while (!it->done && !(k >= p->next && (p->stop || fb_cli_interrupted || p->workers == 0)))
            pthread_cond_wait(&p->cond, &p->lock);
        pthread_mutex_unlock(&p->lock);
        if (!it->done)
            break; /* never started: stopped or interrupted */
        fb_progress_clear(prog);
        if (it->rc != 0) {
            fprintf(stderr, "fastblocks put: %s\n", it->err);
            failed++;
        } else if (print_stored(p, it) != 0) {
            return -1;
        }
        /* Results go out as they come, also into a pipe. */
        if (fflush(stdout) != 0) {
            fb_cli_errorf("put", "cannot write output: %s", strerror(errno));
            return -1;
        }
        done_bytes += it->size;
        prog->items_done = k + 1;
        fb_progress_update(prog, done_bytes, 0);
    }
    return failed;
}

int fb_cmd_put(int argc, char **argv)
{
    fb_cli_common c;
    put_ctx p;
    fb_progress prog;
    pthread_t threads[PUT_MAX_JOBS];
    int started = 0, npos, rc, ret = FB_EXIT_FAILURE, stdin_count = 0;
    uint64_t total = 0;
    long failed;

    memset(&p, 0, sizeof p);
    p.c = &c;
    p.progress_mode = FB_PROGRESS_AUTO;
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    rc = fb_cli_begin(&c, "put", help, argc, argv, put_option, &p, &npos);
    if (rc >= 0) {
        ret = rc;
        goto out_nocommon;
    }
    if (npos == 0) {
        fb_cli_errorf("put", "missing file (see 'fastblocks put --help'; '-' reads stdin)");
        ret = FB_EXIT_USAGE;
        goto out;
    }
    for (int k = 0; k < npos; k++)
        stdin_count += strcmp(argv[k], "-") == 0;
    if (stdin_count > 1) {
        fb_cli_errorf("put", "'-' (stdin) can be given only once");
        ret = FB_EXIT_USAGE;
        goto out;
    }
    if (collect_inputs(&p, argv, npos) != 0) {
        fb_cli_errorf("put", "out of memory");
        goto out;
    }
    if (p.n == 0) {
        if (p.failed == 0)
            fb_cli_errorf("put", "no files found");
        goto out;
    }
    p.store = fb_cli_open_store(&c, "put", 0);
    if (p.store == NULL)
        goto out;

    if (p.jobs == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        p.jobs = cpus < 1 ? 1 : cpus > PUT_MAX_JOBS ? PUT_MAX_JOBS : (int)cpus;
    }
    if ((size_t)p.jobs > p.n)
        p.jobs = (int)p.n;
    for (size_t k = 0; k < p.n; k++)
        total += p.items[k].size;
    fb_progress_start(&prog, "put", total,
                      p.n > 1 || p.walked_dir ? p.progress_mode : FB_PROGRESS_OFF);
    prog.items_total = p.n;
    fb_cli_catch_interrupt();

    pthread_mutex_lock(&p.lock);
    for (; started < p.jobs; started++) {
        if (pthread_create(&threads[started], NULL, worker, &p) != 0)
            break;
        p.workers++;
    }
    pthread_mutex_unlock(&p.lock);
    if (started == 0) {
        fb_progress_finish(&prog);
        fb_cli_errorf("put", "cannot start a thread: %s", strerror(errno));
        goto out;
    }
    failed = report(&p, &prog);
    pthread_mutex_lock(&p.lock);
    p.stop = 1; /* after an output error, workers take nothing more */
    pthread_mutex_unlock(&p.lock);
    for (int k = 0; k < started; k++)
        pthread_join(threads[k], NULL);
    fb_progress_finish(&prog);
    if (failed < 0)
        goto out;
    if (fb_cli_interrupted && p.next < p.n) {
        fb_cli_errorf("put", "interrupted: %zu of %zu files not stored", p.n - p.next, p.n);
        goto out;
    }
    failed += (long)p.failed;
    if (p.next < p.n)
        fb_cli_errorf("put", "stopped: %zu of %zu files not attempted", p.n - p.next, p.n);
    else if (failed > 0 && p.n + p.failed > 1)
        fb_cli_errorf("put", "%ld of %zu files failed", failed, p.n + p.failed);
    ret = failed > 0 || p.next < p.n ? FB_EXIT_FAILURE : FB_EXIT_OK;
out:
    if (p.store != NULL) {
        rc = fb_close(p.store);
        if (rc != 0) {
            fb_cli_error("put", rc);
            ret = FB_EXIT_FAILURE;
        }
    }
    if (ret == FB_EXIT_OK && p.failed > 0)
        ret = FB_EXIT_FAILURE;
    fb_cli_common_free(&c);
out_nocommon:
    for (size_t k = 0; k < p.n; k++)
        fb__free(p.items[k].path);
    fb__free(p.items);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    return ret;
}
