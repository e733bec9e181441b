/* fdio - see fdio.h. */
#include "fdio.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

int fb__pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *q = p;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, q + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return errno;
        }
        if (w == 0) {
            return EIO; /* no progress and no reason: do not spin */
        }
        done += (size_t)w;
    }
    return 0;
}

int fb__pread_full(int fd, void *p, size_t n, uint64_t off, size_t *got)
{
    uint8_t *q = p;
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t r = pread(fd, q + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = errno;
            break;
        }
        if (r == 0) {
            break; /* end of file */
        }
        done += (size_t)r;
    }
    *got = done;
    return rc;
}
