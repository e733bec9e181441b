/*
 * error - error codes and the thread-local error detail.
 *
 * The detail is set where an error is first found; callers only propagate
 * the code. fb__error returns its code so that a failure site reads
 *     return fb__error(FB_ECORRUPT, "crc mismatch in %s at offset %llu", ...);
 */
#ifndef FB_UTIL_ERROR_H
#define FB_UTIL_ERROR_H

#include "fastblocks.h"

#if defined(__GNUC__)
#define FB__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FB__PRINTF(f, a)
#endif

/* Sets the calling thread's error detail and returns err. */
int fb__error(int err, const char *fmt, ...) FB__PRINTF(2, 3);
/* Clears the calling thread's error detail. */
void fb__error_clear(void);
/* Maps an errno value to an FB_E* code (ENOSPC, EDQUOT -> FB_ENOSPC, ENOMEM
 * -> FB_ENOMEM, anything else -> FB_EIO). */
int fb__errno_code(int errnum);

#endif
