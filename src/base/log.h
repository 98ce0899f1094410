/* Error log: one line per event on stderr, rate-limited per call site so a
 * flood of the same error (a dead upstream under load, a scanner sending
 * garbage) costs a bounded number of writes. Each suppressed run is reported
 * as a count when that site logs again.
 *
 * BW_LOG(level, fmt, ...) declares its own static limiter at the call site:
 * at most BW_LOG_BURST lines per site per second. Thread-safe. */
#ifndef BW_BASE_LOG_H
#define BW_BASE_LOG_H

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"

enum bw_log_level { BW_LOG_ERROR, BW_LOG_WARN, BW_LOG_INFO, BW_LOG_DEBUG, BW_LOG__COUNT };

#define BW_LOG_BURST 10

struct bw_log_site {
    _Atomic uint64_t window_sec; /* second the current burst started */
    _Atomic uint32_t count;      /* lines in this window */
    _Atomic uint64_t suppressed; /* lines dropped since the last one written */
};

void bw_log_set_level(enum bw_log_level level);
enum bw_log_level bw_log_get_level(void);

void bw_log_at(struct bw_log_site *site, enum bw_log_level level, const char *fmt, ...)
    BW_PRINTF(3, 4);

#define BW_LOG(level, ...)                                                                         \
    do {                                                                                           \
        static struct bw_log_site bw__site;                                                        \
        if ((level) <= bw_log_get_level())                                                         \
            bw_log_at(&bw__site, (level), __VA_ARGS__);                                            \
    } while (0)

#define BW_ERRORF(...) BW_LOG(BW_LOG_ERROR, __VA_ARGS__)
#define BW_WARNF(...) BW_LOG(BW_LOG_WARN, __VA_ARGS__)
#define BW_INFOF(...) BW_LOG(BW_LOG_INFO, __VA_ARGS__)
#define BW_DEBUGF(...) BW_LOG(BW_LOG_DEBUG, __VA_ARGS__)

#endif
