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

/* count zeroed elements of size bytes, starting on a cache-line (64-byte)
 * boundary, for data that must share no line with other data; *raw gets
 * the pointer to pass to fb__free. NULL (and *raw NULL) on overflow or out
 * of memory. */
void *fb__calloc_lines(size_t count, size_t size, void **raw);

/*
 * Makes room for at least `need` elements of `size` bytes in the array whose
 * pointer is stored at `pp` (a T ** passed as void *) and whose capacity, in
 * elements, is *cap. Nothing happens when need <= *cap. Otherwise the new
 * capacity is the largest of need, twice *cap and `first` (the capacity of a
 * first allocation, so that small arrays do not start with a string of tiny
 * reallocs), capped at the most elements a size_t can count in bytes; the
 * contents are kept. Returns 0, or FB_ENOMEM with the detail set when
 * need * size overflows or the allocation fails; then *pp and *cap are
 * unchanged and the old array is still valid (and still the caller's to free).
 *
 * Why `void *pp` and memcpy rather than `void **`: a T ** does not convert to
 * void ** portably, and storing through a void ** into a T * object would
 * break strict aliasing. Copying the pointer's bytes with memcpy aliases
 * nothing; it does rely on T * and void * sharing one representation, which
 * every platform FastBlocks builds on (flat address space, POSIX) provides.
 * Returning the new pointer instead would be fully portable but leave every
 * call site to store it beside *cap, spread over three more lines. Use the
 * FB__GROW_ARRAY macro, which takes the element size from the pointer.
 */
int fb__grow_array(void *pp, size_t *cap, size_t need, size_t size, size_t first);

/* fb__grow_array for an array variable `T *v`: FB__GROW_ARRAY(&v, &cap, n + 1, 16).
 * Passing v instead of &v does not compile (`sizeof **(pp)`). */
#define FB__GROW_ARRAY(pp, cap, need, first)                                                       \
    fb__grow_array((pp), (cap), (need), sizeof **(pp), (first))

#endif
