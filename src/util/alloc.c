/* alloc - the library's one allocation hook (see alloc.h). */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fastblocks.h"

static fb_allocator allocator = {malloc, realloc, free};

void fb_set_allocator(const fb_allocator *a)
{
    if (a == NULL) {
        allocator = (fb_allocator){malloc, realloc, free};
    } else {
        allocator = *a;
    }
}

void *fb__malloc(size_t n)
{
    return allocator.malloc_fn(n == 0 ? 1 : n);
}

void *fb__calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    void *p = fb__malloc(count * size);
    if (p != NULL) {
        memset(p, 0, count * size);
    }
    return p;
}

#define LINE 64

void *fb__calloc_lines(size_t count, size_t size, void **raw)
{
    *raw = NULL;
    if (size != 0 && count > (SIZE_MAX - LINE) / size) {
        return NULL;
    }
    /* One line more than asked, to start on a line boundary inside it. */
    *raw = fb__calloc(1, count * size + LINE);
    if (*raw == NULL) {
        return NULL;
    }
    return (void *)(((uintptr_t)*raw + LINE - 1) & ~(uintptr_t)(LINE - 1));
}

void *fb__realloc(void *p, size_t n)
{
    return allocator.realloc_fn(p, n == 0 ? 1 : n);
}

int fb__grow_array(void *pp, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap) {
        return 0;
    }
    size_t max = size == 0 ? SIZE_MAX : SIZE_MAX / size; /* elements whose bytes fit a size_t */
    if (need > max) {
        return fb__error(FB_ENOMEM, "array of %zu elements of %zu bytes is larger than memory",
                         need, size);
    }
    size_t ncap = *cap > max / 2 ? max : *cap * 2;
    if (ncap < first) {
        ncap = first < max ? first : max;
    }
    if (ncap < need) {
        ncap = need;
    }
    void *old, *grown;
    memcpy(&old, pp, sizeof old);
    grown = fb__realloc(old, ncap * size);
    if (grown == NULL) {
        return fb__error(FB_ENOMEM, "out of memory growing an array to %zu elements of %zu bytes",
                         ncap, size);
    }
    memcpy(pp, &grown, sizeof grown);
    *cap = ncap;
    return 0;
}

void fb__free(void *p)
{
    if (p != NULL) {
        allocator.free_fn(p);
    }
}

void fb_free(void *p)
{
    fb__free(p);
}

char *fb__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fb__malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}
