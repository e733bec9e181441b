/* alloc - the library's one allocation hook (see alloc.h). */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

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

void *fb__realloc(void *p, size_t n)
{
    return allocator.realloc_fn(p, n == 0 ? 1 : n);
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
