/*
 * alloc - every allocation of the library goes through these, so that the
 * allocator can be replaced (fb_set_allocator) and failures injected in tests.
 */
#ifndef FB_UTIL_ALLOC_H
#define FB_UTIL_ALLOC_H

#include <stddef.h>

void *fb__malloc(size_t n);
void *fb__calloc(size_t count, size_t size); /* overflow-checked */
void *fb__realloc(void *p, size_t n);
void fb__free(void *p); /* NULL is fine */
char *fb__strdup(const char *s);

#endif
