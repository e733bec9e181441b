/*
 * jpeg_seq - the progressive-to-sequential rewrite (see jpeg_seq.h for why).
 *
 * The only file that includes jpeglib.h. libjpeg reports errors by calling
 * a function that must not return; ours longjmps back into rewrite(), which
 * keeps all its state in the caller's struct, so nothing it needs after the
 * jump lives in a local that setjmp could have clobbered.
 */
#include "jpeg_seq.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/fdio.h"

typedef struct job job;

typedef struct fd_dest {
    struct jpeg_destination_mgr pub;
    job *j;
} fd_dest;

struct job {
    struct jpeg_error_mgr err; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    int src_made, dst_made;
    int too_many_scans;
    int fd;
    uint64_t written;
    fd_dest dest;
    JOCTET buf[64 * 1024];
};

static void on_error(j_common_ptr c)
{
    longjmp(((job *)(void *)c->err)->jump, 1);
}

/* level < 0 is a warning: corrupt or truncated data that libjpeg would
 * paper over with grey blocks. The rewrite gives up and leaves the file to
 * the decoder, which fails on it with its own message. */
static void on_message(j_common_ptr c, int level)
{
    if (level < 0) {
        longjmp(((job *)(void *)c->err)->jump, 1);
    }
}

static void on_progress(j_common_ptr c)
{
    job *j = (job *)(void *)c->err;
    if (j->src.input_scan_number > FB__JPEG_MAX_SCANS) {
        j->too_many_scans = 1;
        longjmp(j->jump, 1);
    }
}

/* Appends the first n bytes of j->buf to the copy. */
static int write_out(job *j, size_t n)
{
    if (fb__pwrite_full(j->fd, j->buf, n, j->written) != 0) {
        return -1;
    }
    j->written += n;
    return 0;
}

static void dest_init(j_compress_ptr c)
{
    job *j = ((fd_dest *)(void *)c->dest)->j;
    c->dest->next_output_byte = j->buf;
    c->dest->free_in_buffer = sizeof j->buf;
}

static boolean dest_flush(j_compress_ptr c)
{
    job *j = ((fd_dest *)(void *)c->dest)->j;
    if (write_out(j, sizeof j->buf) != 0) {
        longjmp(j->jump, 1);
    }
    dest_init(c);
    return TRUE;
}

static void dest_term(j_compress_ptr c)
{
    job *j = ((fd_dest *)(void *)c->dest)->j;
    if (write_out(j, sizeof j->buf - c->dest->free_in_buffer) != 0) {
        longjmp(j->jump, 1);
    }
}

static uint64_t coefficient_bytes(const struct jpeg_decompress_struct *d)
{
    uint64_t n = 0;
    for (int i = 0; i < d->num_components; i++) {
        n += (uint64_t)d->comp_info[i].width_in_blocks * d->comp_info[i].height_in_blocks *
             sizeof(JBLOCK);
    }
    return n;
}

static int starts_with(const jpeg_saved_marker_ptr m, const char *tag, unsigned n)
{
    return m->data_length >= n && memcmp(m->data, tag, n) == 0;
}

static void copy_markers(job *j)
{
    for (jpeg_saved_marker_ptr m = j->src.marker_list; m != NULL; m = m->next) {
        if ((j->dst.write_JFIF_header && m->marker == JPEG_APP0 && starts_with(m, "JFIF", 5)) ||
            (j->dst.write_Adobe_marker && m->marker == JPEG_APP0 + 14 &&
             starts_with(m, "Adobe", 5))) {
            continue; /* libjpeg has written its own */
        }
        jpeg_write_marker(&j->dst, m->marker, m->data, m->data_length);
    }
}

/*
 * Whether every coefficient fits the Huffman categories a sequential JPEG
 * can code: DC in [-1024, 1023] (so that a difference needs at most 11
 * bits) and AC in [-1023, 1023] (10 bits). Real encoders stay inside, but a
 * corrupt progressive file can build larger values through its
 * successive-approximation bits (fuzz_jpeg_seq found an AC of 2730), and
 * libjpeg-turbo's SIMD Huffman encoder writes those without a check, as
 * garbage that the copy's reader then warns about.
 */
static int block_row_in_range(const JBLOCKROW blocks, JDIMENSION n)
{
    /* Every coefficient against the AC bound first, in 16 bits so that the
     * loop vectorises; only a row that fails is looked at again, since a DC
     * of -1024 (a black block at quantiser 1) is valid. */
    const JCOEF *k = blocks[0];
    unsigned bad = 0;
    for (size_t i = 0; i < (size_t)n * DCTSIZE2; i++) {
        bad |= (uint16_t)(k[i] + 1023) > 2046u;
    }
    if (!bad) {
        return 1;
    }
    for (JDIMENSION x = 0; x < n; x++) {
        if ((unsigned)(blocks[x][0] + 1024) > 2047u) {
            return 0;
        }
        for (int i = 1; i < DCTSIZE2; i++) {
            if ((unsigned)(blocks[x][i] + 1023) > 2046u) {
                return 0;
            }
        }
    }
    return 1;
}

static int coefficients_in_range(j_decompress_ptr d, jvirt_barray_ptr *coefs)
{
    for (int ci = 0; ci < d->num_components; ci++) {
        const jpeg_component_info *c = &d->comp_info[ci];
        for (JDIMENSION row = 0; row < c->height_in_blocks; row++) {
            JBLOCKARRAY rows =
                (*d->mem->access_virt_barray)((j_common_ptr)d, coefs[ci], row, 1, FALSE);
            if (!block_row_in_range(rows[0], c->width_in_blocks)) {
                return 0;
            }
        }
    }
    return 1;
}

/* 1 when j->fd holds the sequential copy, 0 when there is nothing to do,
 * -1 when libjpeg gave up. */
static int rewrite(job *j, const uint8_t *data, size_t len, uint64_t min_bytes)
{
    if (setjmp(j->jump) != 0) {
        return -1;
    }
    j->src.err = jpeg_std_error(&j->err);
    j->err.error_exit = on_error;
    j->err.emit_message = on_message;
    jpeg_create_decompress(&j->src);
    j->src_made = 1;
    jpeg_mem_src(&j->src, data, (unsigned long)len);
    jpeg_save_markers(&j->src, JPEG_COM, 0xffff);
    for (int m = 0; m < 16; m++) {
        jpeg_save_markers(&j->src, JPEG_APP0 + m, 0xffff);
    }
    jpeg_read_header(&j->src, TRUE);
    uint64_t need = coefficient_bytes(&j->src);
    if (!j->src.progressive_mode || need < min_bytes || need > FB__JPEG_SEQ_MAX_BYTES) {
        return 0;
    }
    const char *dir = getenv("TMPDIR");
    j->fd =
        open(dir != NULL && dir[0] != '\0' ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        return -1;
    }
    j->progress.progress_monitor = on_progress;
    j->src.progress = &j->progress;
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&j->src);
    if (!coefficients_in_range(&j->src, coefs)) {
        return 0; /* left to the decoder, which reads such a file as it is */
    }

    j->dst.err = &j->err;
    jpeg_create_compress(&j->dst);
    j->dst_made = 1;
    jpeg_copy_critical_parameters(&j->src, &j->dst);
    if (j->src.saw_JFIF_marker) {
        j->dst.density_unit = j->src.density_unit;
        j->dst.X_density = j->src.X_density;
        j->dst.Y_density = j->src.Y_density;
    }
    j->dst.optimize_coding = FALSE; /* one pass: the copy only lives until decoded */
    j->dest.j = j;
    j->dest.pub.init_destination = dest_init;
    j->dest.pub.empty_output_buffer = dest_flush;
    j->dest.pub.term_destination = dest_term;
    j->dst.dest = &j->dest.pub;
    jpeg_write_coefficients(&j->dst, coefs);
    copy_markers(j);
    jpeg_finish_compress(&j->dst);
    return 1;
}

/* The copy, read back once libjpeg's coefficients are freed. */
static uint8_t *read_back(int fd, uint64_t n)
{
    uint8_t *b = n < SIZE_MAX ? fb__malloc((size_t)n) : NULL;
    size_t got = 0;
    if (b != NULL && (fb__pread_full(fd, b, (size_t)n, 0, &got) != 0 || got != n)) {
        fb__free(b);
        return NULL;
    }
    return b;
}

int fb__jpeg_sequential(const uint8_t *data, size_t len, uint64_t min_bytes, uint8_t **out,
                        size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    job *j = fb__calloc(1, sizeof *j);
    if (j == NULL) {
        return 0; /* the conversion itself will say it is out of memory */
    }
    j->fd = -1;
    int done = rewrite(j, data, len, min_bytes);
    if (j->dst_made) {
        jpeg_destroy_compress(&j->dst);
    }
    if (j->src_made) {
        jpeg_destroy_decompress(&j->src); /* frees the coefficients */
    }
    int rc = 0;
    if (j->too_many_scans) {
        rc = fb__error(FB_ELIMIT, "JPEG has more than %d progressive scans", FB__JPEG_MAX_SCANS);
    } else if (done == 1) {
        *out = read_back(j->fd, j->written);
        *out_len = *out != NULL ? (size_t)j->written : 0;
    }
    if (j->fd >= 0) {
        close(j->fd);
    }
    fb__free(j);
    return rc;
}
