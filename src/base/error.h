/* Errors as values. Fallible functions return bw_status and, on failure, fill
 * a caller-provided bw_error with a sentence a user can act on. Library code
 * never logs: the caller that decides what to do with the error logs it once. */
#ifndef BW_BASE_ERROR_H
#define BW_BASE_ERROR_H

#include <stdarg.h>

#define BW_MUST_CHECK __attribute__((warn_unused_result))
#define BW_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef enum bw_status {
    BW_OK = 0,
    BW_ERR = -1,
} bw_status;

enum { BW_ERROR_MSG_MAX = 512 };

typedef struct bw_error {
    char msg[BW_ERROR_MSG_MAX];
} bw_error;

/* Formats into err (truncating safely) and returns BW_ERR, so a failing path
 * can be written `return bw_error_set(err, "...");`. */
bw_status bw_error_set(bw_error *err, const char *fmt, ...) BW_PRINTF(2, 3);
bw_status bw_error_setv(bw_error *err, const char *fmt, va_list ap);

#endif
