/*
 * Fuzz target: the progressive-to-sequential JPEG rewrite on arbitrary
 * bytes, with no size threshold so that every progressive input is
 * rewritten. Any input must give either nothing, the scan-limit error, or a
 * sequential JPEG that libjpeg reads back without a warning.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

#include "jpeg_seq.h"
#include "util/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct strict_err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
} strict_err;

static void fail(j_common_ptr c)
{
    longjmp(((strict_err *)(void *)c->err)->jump, 1);
}

static void warn(j_common_ptr c, int level)
{
    if (level < 0) {
        fail(c);
    }
}

/* The copy must be a clean sequential JPEG: header, every row, no warning. */
static void check_copy(const uint8_t *p, size_t n)
{
    struct jpeg_decompress_struct d;
    strict_err e;
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = fail;
    e.pub.emit_message = warn;
    if (setjmp(e.jump) != 0) {
        abort();
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, p, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    if (d.progressive_mode) {
        abort();
    }
    jpeg_read_coefficients(&d);
    jpeg_destroy_decompress(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *seq = NULL;
    size_t seq_len = 0;
    int rc = fb__jpeg_sequential(data, size, 0, &seq, &seq_len);
    if (rc != 0 && rc != FB_ELIMIT) {
        abort();
    }
    if (seq != NULL) {
        check_copy(seq, seq_len);
        fb__free(seq);
    }
    return 0;
}
