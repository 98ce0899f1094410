#include "base/error.h"

#include <stdio.h>

bw_status bw_error_setv(bw_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return BW_ERR;
}

bw_status bw_error_set(bw_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bw_status st = bw_error_setv(err, fmt, ap);
    va_end(ap);
    return st;
}
