/*
 * Crash test: a child process puts, deletes and compacts (durability
 * "always") and reports every acknowledged operation through a pipe; the
 * parent kills it with SIGKILL at a random moment, reopens the store and
 * checks that every acknowledged put reads back byte-identical, no
 * acknowledged delete is back, nothing corrupt is served and verify is
 * clean. FB_CRASH_ITERATIONS sets the number of kill points (default 150;
 * the benchmark script runs more).
 */
#include "fb_test.h"
#include "store_helpers.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

enum { MAXLEN = 6000, MAXIMG = 20000 };

typedef struct msg {
    char op; /* O opened, P put acked, d delete started, D delete acked, C compacted */
    char id[FB_ID_LEN + 1];
    uint64_t seed;
} msg;

typedef struct img {
    char id[FB_ID_LEN + 1];
    uint64_t seed;
    int state; /* 1 live, 2 delete in flight, 3 deleted */
} img;

static img model[MAXIMG];
static int nmodel;

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static fb_options crash_opts(void)
{
    fb_options o = th_opts();
    o.durability = FB_DURABILITY_ALWAYS;
    o.max_block_size = 48 << 10;
    return o;
}

static void send_msg(int fd, char op, const char *id, uint64_t seed)
{
    msg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    if (id != NULL) {
        memcpy(m.id, id, FB_ID_LEN);
    }
    m.seed = seed;
    if (write(fd, &m, sizeof m) != (ssize_t)sizeof m) {
        _exit(3);
    }
}

static void child(const char *dir, int fd, uint64_t rng, uint64_t seed_base)
{
    fb_options o = crash_opts();
    fb_store *s = NULL;
    if (fb_open(dir, &o, &s) != 0) {
        fprintf(stderr, "child: open: %s\n", fb_last_error());
        _exit(2);
    }
    send_msg(fd, 'O', NULL, 0);
    for (uint64_t n = 0;; n++) {
        uint64_t r = rng_next(&rng) % 100;
        if (r < 65) {
            fb_meta m;
            uint64_t seed = seed_base + n;
            if (th_put(s, seed, MAXLEN, &m) != 0) {
                fprintf(stderr, "child: put: %s\n", fb_last_error());
                _exit(2);
            }
            send_msg(fd, 'P', m.id, seed);
        } else if (r < 92 && nmodel > 0) {
            img *victim = &model[rng_next(&rng) % (uint64_t)nmodel];
            if (victim->state != 1) {
                continue;
            }
            fb_addr a;
            fb_addr_from_id(victim->id, &a);
            send_msg(fd, 'd', victim->id, 0);
            if (fb_delete(s, &a, NULL) != 0) {
                fprintf(stderr, "child: delete: %s\n", fb_last_error());
                _exit(2);
            }
            victim->state = 3;
            send_msg(fd, 'D', victim->id, 0);
        } else {
            if (fb_compact(s, 0.2, NULL, NULL, NULL) != 0) {
                fprintf(stderr, "child: compact: %s\n", fb_last_error());
                _exit(2);
            }
            send_msg(fd, 'C', NULL, 0);
        }
    }
}

static img *find(const char *id)
{
    for (int i = nmodel - 1; i >= 0; i--) {
        if (memcmp(model[i].id, id, FB_ID_LEN) == 0) {
            return &model[i];
        }
    }
    return NULL;
}

static int apply(const msg *m)
{
    img *x;
    switch (m->op) {
    case 'P':
        if (nmodel == MAXIMG) {
            return 0;
        }
        memcpy(model[nmodel].id, m->id, sizeof m->id);
        model[nmodel].seed = m->seed;
        model[nmodel].state = 1;
        nmodel++;
        return 0;
    case 'd':
    case 'D':
        x = find(m->id);
        if (x == NULL) {
            return -1;
        }
        x->state = m->op == 'd' ? 2 : 3;
        return 0;
    default:
        return 0;
    }
}

TEST(kill9_at_random_points)
{
    const char *env = getenv("FB_CRASH_ITERATIONS");
    int iterations = env != NULL ? atoi(env) : 150;
    char *dir = fb_test_tmpdir("crash");
    uint64_t rng = 0x12345678u ^ (uint64_t)time(NULL);
    fprintf(stderr, "  seed %llu, %d kill points\n", (unsigned long long)rng, iterations);
    long acked_puts = 0, acked_deletes = 0, compactions = 0, unacked_slack = 0;
    for (int it = 0; it < iterations; it++) {
        int p[2];
        CHECK_EQ(pipe(p), 0);
        uint64_t child_rng = rng_next(&rng) | 1;
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(dir, p[1], child_rng, (uint64_t)(it + 1) * 1000000u);
        }
        close(p[1]);
        /* Let it open, then run for a random 0-40 ms. */
        msg m;
        int opened = 0;
        while (!opened && read(p[0], &m, sizeof m) == (ssize_t)sizeof m) {
            opened = m.op == 'O';
        }
        CHECK(opened);
        struct timespec ts = {0, (long)(rng_next(&rng) % 40000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status)); /* it died by our hand, not of an error */
        ssize_t r;
        while ((r = read(p[0], &m, sizeof m)) == (ssize_t)sizeof m) {
            CHECK_EQ(apply(&m), 0);
            acked_puts += m.op == 'P';
            acked_deletes += m.op == 'D';
            compactions += m.op == 'C';
        }
        CHECK_EQ(r, 0);
        close(p[0]);
        unacked_slack++; /* at most one put per run may land unacknowledged */

        fb_options o = crash_opts();
        fb_store *s = NULL;
        CHECK_OK(fb_open(dir, &o, &s));
        uint64_t live = 0, inflight = 0;
        for (int i = 0; i < nmodel; i++) {
            int rc = th_check_id(s, model[i].id, model[i].seed, MAXLEN);
            if (model[i].state == 1) {
                live++;
                if (rc != 0) {
                    fprintf(stderr, "  iteration %d: acked image %s: %s (%s)\n", it, model[i].id,
                            fb_err_name(rc), fb_last_error());
                }
                CHECK_OK(rc);
            } else if (model[i].state == 3) {
                CHECK_RC(rc, FB_ENOTFOUND);
            } else {
                /* Delete in flight when killed: either outcome, never bad bytes. */
                CHECK(rc == 0 || rc == FB_ENOTFOUND);
                model[i].state = rc == 0 ? 1 : 3;
                live += rc == 0;
                inflight++;
            }
        }
        fb_stats st;
        CHECK_OK(fb_get_stats(s, &st));
        CHECK(st.live_records >= live);
        CHECK(st.live_records <= live + (uint64_t)unacked_slack);
        unacked_slack = (long)(st.live_records - live);
        fb_verify_result vr;
        CHECK_OK(fb_verify(s, NULL, NULL, NULL, &vr));
        CHECK_OK(fb_close(s));
        (void)inflight;
    }
    fprintf(stderr,
            "  %ld acknowledged puts, %ld acknowledged deletes, %ld compactions, %d images "
            "tracked\n",
            acked_puts, acked_deletes, compactions, nmodel);
    CHECK(acked_puts > iterations);
    fb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(kill9_at_random_points);
    return TEST_REPORT();
}
