/* error - fb_strerror and the thread-local error detail (see error.h). */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "fastblocks.h"

static _Thread_local char detail[512];

const char *fb_strerror(int err)
{
    switch (err) {
    case FB_OK:
        return "success";
#define FB__ERRNO_MSG(name, num, msg)                                                              \
    case FB_##name:                                                                                \
        return msg;
        FB_ERRNO_MAP(FB__ERRNO_MSG)
#undef FB__ERRNO_MSG
    }
    return "unknown error";
}

const char *fb_err_name(int err)
{
    switch (err) {
    case FB_OK:
        return "OK";
#define FB__ERRNO_NAME(name, num, msg)                                                             \
    case FB_##name:                                                                                \
        return #name;
        FB_ERRNO_MAP(FB__ERRNO_NAME)
#undef FB__ERRNO_NAME
    }
    return "EUNKNOWN";
}

const char *fb_last_error(void)
{
    return detail;
}

int fb__error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return err;
}

void fb__error_clear(void)
{
    detail[0] = '\0';
}

int fb__errno_code(int errnum)
{
    switch (errnum) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return FB_ENOSPC;
    case ENOMEM:
        return FB_ENOMEM;
    default:
        return FB_EIO;
    }
}

const char *fb_version(void)
{
    return FB_VERSION_STRING;
}
