/*
 * cmd_verify - "fastblocks verify": reads every record of every block and
 * reports each problem with its block file and offset, so that an operator
 * knows exactly which bytes are damaged.
 */
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"

static const char help[] =
    "Usage: fastblocks verify [options]\n"
    "\n"
    "Reads every record of every block file and checks its header and data\n"
    "checksums, the tombstones and the index files. Each problem is printed on\n"
    "stdout as\n"
    "  BLOCK offset OFFSET: PROBLEM: DETAIL\n"
    "followed by a summary. The store is opened read-only, so verify may run\n"
    "while 'fastblocks serve' uses the store.\n"
    "\n"
    "Options:\n"
    "  --progress                 show progress also when stderr is not a terminal\n"
    "  --no-progress              never show progress\n"
    "  -h, --help                 show this help\n"
    "\n"
    "%s"
    "\n"
    "Examples:\n"
    "  fastblocks verify --data /srv/images\n"
    "  fastblocks verify --json | jq 'select(.offset != null)'\n"
    "\n"
    "Exit codes: 0 the store is clean, 1 problems found (or verify failed),\n"
    "2 usage error.\n";

/* progress comes first: fb_verify hands the same userdata to on_problem and
 * to fb_cli_progress_cb, which takes it as the fb_progress. */
typedef struct verify_ctx {
    fb_progress progress;
    fb_cli_common *c;
    int progress_mode;
    int write_failed;
} verify_ctx;

static void on_problem(void *ud, const fb_problem *p)
{
    verify_ctx *v = ud;
    fb_progress_clear(&v->progress);
    if (v->c->json) {
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s}", "block", p->block, "offset",
                              (json_int_t)p->offset, "error", fb_err_name(p->error), "message",
                              fb_strerror(p->error), "detail", p->detail);
        if (fb_cli_print_json("verify", o) != 0)
            v->write_failed = 1;
    } else {
        printf("%s offset %llu: %s: %s\n", p->block, (unsigned long long)p->offset,
               fb_strerror(p->error), p->detail);
    }
    /* The report must be out even if verify is killed later on. */
    fflush(stdout);
}

int fb_cmd_verify(int argc, char **argv)
{
    fb_cli_common c;
    verify_ctx v;
    fb_verify_result r;
    fb_store *s = NULL;
    int rc, ret = FB_EXIT_FAILURE;

    memset(&v, 0, sizeof v);
    memset(&r, 0, sizeof r);
    v.c = &c;
    v.progress_mode = FB_PROGRESS_AUTO;
    rc = fb_cli_begin_store(&c, "verify", help, argc, argv, fb_cli_progress_opt, &v.progress_mode,
                            &s);
    if (rc >= 0)
        return rc;
    fb_cli_catch_interrupt();
    fb_progress_start(&v.progress, "verify", 0, v.progress_mode);
    rc = fb_verify(s, on_problem, fb_cli_progress_cb, &v, &r);
    fb_progress_finish(&v.progress);
    if (rc == FB_ECLOSED && fb_cli_interrupted) {
        fb_cli_errorf("verify", "interrupted after %llu records",
                      (unsigned long long)r.records_checked);
        goto out;
    }
    if (rc != 0 && !(rc == FB_ECORRUPT && r.problems > 0)) {
        fb_cli_error("verify", rc);
        goto out;
    }
    if (c.json) {
        json_t *o = json_pack("{s:I, s:I, s:I}", "records_checked", (json_int_t)r.records_checked,
                              "bytes_checked", (json_int_t)r.bytes_checked, "problems",
                              (json_int_t)r.problems);
        if (fb_cli_print_json("verify", o) != 0)
            v.write_failed = 1;
    } else {
        printf("checked %llu records (%llu bytes): %llu problem%s\n",
               (unsigned long long)r.records_checked, (unsigned long long)r.bytes_checked,
               (unsigned long long)r.problems, r.problems == 1 ? "" : "s");
    }
    if (fb_cli_flush_stdout("verify") != 0 || v.write_failed)
        goto out;
    if (r.problems > 0) {
        fb_cli_errorf("verify", "%llu problem%s found in %s", (unsigned long long)r.problems,
                      r.problems == 1 ? "" : "s", c.data_dir);
        goto out;
    }
    ret = FB_EXIT_OK;
out:
    fb_close(s);
    fb_cli_common_free(&c);
    return ret;
}
