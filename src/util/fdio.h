/*
 * fdio - positional reads and writes of a whole range, through the short
 * counts and EINTR that POSIX allows, so that callers see one result.
 */
#ifndef FB_UTIL_FDIO_H
#define FB_UTIL_FDIO_H

#include <stddef.h>
#include <stdint.h>

/* Writes all n bytes of p at offset off of fd. Returns 0 or an errno (EIO
 * when the kernel makes no progress and gives no reason). */
int fb__pwrite_full(int fd, const void *p, size_t n, uint64_t off);

/* Reads n bytes at offset off of fd into p, or fewer when the file ends
 * first; *got gets the count. Returns 0 or an errno. */
int fb__pread_full(int fd, void *p, size_t n, uint64_t off, size_t *got);

#endif
