/*
 * server - see server.h. Owns the listening socket, the libmicrohttpd
 * daemon, the worker pool for uploads and deletes, and the shutdown order:
 *
 *   stop accepting (quiesce) -> wait for requests in flight -> stop the
 *   workers (each resumes its connection first) -> stop the daemon.
 *
 * The workers are stopped while the daemon still runs because a worker's
 * last act is MHD_resume_connection on a connection the daemon owns.
 */
#include "http/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http/compactor.h"
#include "http/parse.h"
#include "http/routes.h"
#include "util/alloc.h"
#include "util/error.h"

/* Conversion workers and the compactor run at a lower CPU priority than the
 * request threads, so that a burst of uploads slows uploads, not reads. */
#define WORKER_NICE 10

void fb_http_config_init(fb_http_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:8000";
    cfg->max_connections = 1024;
    cfg->max_queued_uploads = 256;
    cfg->max_upload = 50u << 20;
    cfg->timeout_s = 30;
    cfg->shutdown_timeout_s = 60;
    /* Request headers may fill half of this pool (16 KiB: a big cookie
     * jar, nginx's default limit per header line is 8 KiB). libmicrohttpd
     * zeroes the pool's unused part before each request on a keep-alive
     * connection, which costs ~6% of a sendfile server's CPU at 32 KiB and
     * ~1.4% at 8 KiB (perf): --connection-memory trades one for the other. */
    cfg->connection_memory = 32u << 10;
    cfg->compact_interval_s = 600;
    cfg->compact_threshold = 0.3;
    fb_image_opts_init(&cfg->image);
}

/* ------------------------------------------------------------------------ */
/* Stop requests (from signal handlers)                                      */

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t stop_fd = -1;

void fb_http_stop(void)
{
    int fd = stop_fd;
    int saved = errno;
    stop_requested = 1;
    if (fd >= 0) {
        char c = 1;
        ssize_t r = write(fd, &c, 1);
        (void)r; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

/* ------------------------------------------------------------------------ */
/* Worker pool                                                               */

struct fb__http_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fb__http_req *head, *tail;
    size_t queued, max_queued;
    int stopping;
    pthread_t *threads;
    unsigned nthreads;
};

void fb__http_background_thread(void)
{
    /* Linux nice values are per thread; failure only costs read latency. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE) != 0) {
        errno = 0;
    }
}

static void *worker_main(void *arg)
{
    fb__http_pool *pool = arg;
    fb__http_background_thread();
    for (;;) {
        fb__http_req *req;
        pthread_mutex_lock(&pool->mu);
        while (pool->head == NULL && !pool->stopping) {
            pthread_cond_wait(&pool->cv, &pool->mu);
        }
        req = pool->head;
        if (req == NULL) {
            pthread_mutex_unlock(&pool->mu);
            break; /* stopping and drained */
        }
        pool->head = req->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        pool->queued--;
        pthread_mutex_unlock(&pool->mu);
        req->next = NULL;
        fb__http_run_job(req);
        req->phase = FB_PHASE_DONE;
        MHD_resume_connection(req->conn);
    }
    return NULL;
}

int fb__http_pool_submit(fb__http_pool *pool, fb__http_req *req)
{
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping || pool->queued >= pool->max_queued) {
        pthread_mutex_unlock(&pool->mu);
        return fb__error(FB_ECLOSED, "upload queue full");
    }
    /* Suspend under the lock: no worker can take req (and resume it)
     * before it is suspended. */
    MHD_suspend_connection(req->conn);
    req->next = NULL;
    if (pool->tail != NULL) {
        pool->tail->next = req;
    } else {
        pool->head = req;
    }
    pool->tail = req;
    pool->queued++;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

static void pool_stop(fb__http_pool *pool)
{
    if (pool == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (unsigned i = 0; i < pool->nthreads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    fb__free(pool->threads);
    fb__free(pool);
}

static int pool_start(unsigned nthreads, size_t max_queued, fb__http_pool **out)
{
    fb__http_pool *pool = fb__calloc(1, sizeof *pool);
    if (pool == NULL) {
        return fb__error(FB_ENOMEM, "out of memory starting the upload workers");
    }
    pool->threads = fb__calloc(nthreads, sizeof *pool->threads);
    if (pool->threads == NULL) {
        fb__free(pool);
        return fb__error(FB_ENOMEM, "out of memory starting the upload workers");
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->max_queued = max_queued;
    for (unsigned i = 0; i < nthreads; i++) {
        int err = pthread_create(&pool->threads[i], NULL, worker_main, pool);
        if (err != 0) {
            pool_stop(pool); /* joins the ones already started */
            return fb__error(FB_ENOMEM, "cannot start upload worker thread: %s", strerror(err));
        }
        pool->nthreads++;
    }
    *out = pool;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Listening socket                                                          */

/* A Unix socket path left by a server that died is removed; one that a live
 * server answers on, or any other file, is not. */
static int clear_stale_socket(const char *path)
{
    struct stat st;
    struct sockaddr_un sun;
    int fd, busy;
    if (lstat(path, &st) != 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return fb__error(FB_EINVAL, "%s exists and is not a socket", path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fb__error(fb__errno_code(errno), "socket: %s", strerror(errno));
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    busy = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
    close(fd);
    if (busy) {
        return fb__error(FB_EINVAL, "another server is listening on %s", path);
    }
    if (unlink(path) != 0) {
        return fb__error(fb__errno_code(errno), "cannot remove stale socket %s: %s", path,
                         strerror(errno));
    }
    return 0;
}

static int listen_unix(const fb__http_listen *l, int *out, char *desc, size_t cap)
{
    struct sockaddr_un sun;
    int fd, rc;
    rc = clear_stale_socket(l->path);
    if (rc != 0) {
        return rc;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return fb__error(fb__errno_code(errno), "socket: %s", strerror(errno));
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, l->path, strlen(l->path) + 1);
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 1024) != 0) {
        rc = fb__error(fb__errno_code(errno), "cannot listen on unix:%s: %s", l->path,
                       strerror(errno));
        close(fd);
        return rc;
    }
    snprintf(desc, cap, "unix:%s", l->path);
    *out = fd;
    return 0;
}

static int listen_tcp(const fb__http_listen *l, int *out, char *desc, size_t cap)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    char port[8], host[NI_MAXHOST], serv[NI_MAXSERV];
    int fd = -1, rc, gai, err = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", (unsigned)l->port);
    gai = getaddrinfo(l->host, port, &hints, &res);
    if (gai != 0) {
        return fb__error(FB_EINVAL, "cannot resolve listen host %s: %s", l->host,
                         gai_strerror(gai));
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
            break;
        }
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return fb__error(fb__errno_code(err), "cannot listen on %s:%u: %s", l->host,
                         (unsigned)l->port, strerror(err));
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        rc = fb__error(FB_EIO, "cannot read the bound address: %s", strerror(errno));
        close(fd);
        return rc;
    }
    if (ss.ss_family == AF_INET6) {
        snprintf(desc, cap, "http://[%.200s]:%.8s", host, serv);
    } else {
        snprintf(desc, cap, "http://%.200s:%.8s", host, serv);
    }
    *out = fd;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The service                                                               */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const fb_http_config *cfg = cls;
    char line[512];
    int n;
    if (cfg->quiet) {
        return;
    }
    n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0) {
        return;
    }
    n = (int)strlen(line);
    while (n > 0 && line[n - 1] == '\n') {
        line[--n] = '\0'; /* most of libmicrohttpd's messages end in one */
    }
    fprintf(stderr, "fastblocks: microhttpd: %s\n", line);
}

static unsigned cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

/* Each connection holds a socket and, while sending from a block file, a
 * descriptor; raise the soft limit so that max_connections is reachable. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void wait_for_stop(int rfd)
{
    while (!stop_requested) {
        struct pollfd p = {.fd = rfd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        if (r > 0) {
            char buf[16];
            ssize_t n = read(rfd, buf, sizeof buf);
            (void)n;
        }
    }
}

static void wait_in_flight(fb__http_server *srv, unsigned timeout_s)
{
    struct timespec start, now, nap = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (atomic_load(&srv->in_flight) > 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)timeout_s) {
            if (!srv->cfg->quiet) {
                fprintf(stderr, "fastblocks: %d requests still running after %us; stopping\n",
                        atomic_load(&srv->in_flight), timeout_s);
            }
            return;
        }
        nanosleep(&nap, NULL);
    }
}

int fb_http_serve(fb_store *store, const fb_http_config *cfg)
{
    fb__http_server *srv = NULL;
    fb__http_listen where;
    struct MHD_Daemon *daemon = NULL;
    fb__http_compactor *compactor = NULL;
    FILE *announce = cfg->announce != NULL ? cfg->announce : stdout;
    char desc[300] = "";
    int listen_fd = -1, pipefd[2] = {-1, -1}, rc, made_socket = 0;
    unsigned threads = cfg->threads ? cfg->threads : cores();
    unsigned workers = cfg->upload_threads ? cfg->upload_threads : cores();

    rc = fb__http_parse_listen(cfg->listen, &where);
    if (rc != 0) {
        return rc;
    }
    srv = fb__calloc(1, sizeof *srv);
    if (srv == NULL) {
        return fb__error(FB_ENOMEM, "out of memory starting the server");
    }
    srv->store = store;
    srv->cfg = cfg;
    fb__metrics_init(&srv->metrics);
    atomic_init(&srv->in_flight, 0);
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = fb__error(fb__errno_code(errno), "pipe: %s", strerror(errno));
        goto out;
    }
    stop_fd = pipefd[1];
    raise_fd_limit();
    rc = where.is_unix ? listen_unix(&where, &listen_fd, desc, sizeof desc)
                       : listen_tcp(&where, &listen_fd, desc, sizeof desc);
    if (rc != 0) {
        goto out;
    }
    made_socket = where.is_unix;
    rc = pool_start(workers, cfg->max_queued_uploads, &srv->pool);
    if (rc != 0) {
        goto out;
    }
    daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        fb__http_handle, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)cfg,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        cfg->connection_memory, MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s,
        MHD_OPTION_URI_LOG_CALLBACK, fb__http_uri_log, srv, MHD_OPTION_NOTIFY_COMPLETED,
        fb__http_completed, srv, MHD_OPTION_END);
    if (daemon == NULL) {
        rc = fb__error(FB_EIO, "libmicrohttpd failed to start on %s", desc);
        goto out;
    }
    rc = fb__compactor_start(store, cfg->compact_interval_s, cfg->compact_threshold, &srv->metrics,
                             cfg->quiet, &compactor);
    if (rc != 0) {
        goto out;
    }
    fprintf(announce, "fastblocks: listening on %s\n", desc);
    fflush(announce);

    wait_for_stop(pipefd[0]);
    if (!cfg->quiet) {
        fprintf(stderr, "fastblocks: shutting down: finishing requests in flight\n");
    }
    /* Stop accepting; quiesce hands the listening socket back to us. */
    if (MHD_quiesce_daemon(daemon) == listen_fd) {
        close(listen_fd);
        listen_fd = -1;
    }
    wait_in_flight(srv, cfg->shutdown_timeout_s);
    rc = 0;
out:
    fb__compactor_stop(compactor);
    if (srv->pool != NULL) {
        pool_stop(srv->pool);
        srv->pool = NULL;
    }
    if (daemon != NULL) {
        MHD_stop_daemon(daemon);
    }
    if (listen_fd >= 0) {
        close(listen_fd);
    }
    if (made_socket) {
        unlink(where.path);
    }
    stop_fd = -1;
    if (pipefd[0] >= 0) {
        close(pipefd[0]);
        close(pipefd[1]);
    }
    fb__free(srv);
    return rc;
}
