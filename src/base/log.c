#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = BW_LOG_INFO;

static const char *const level_names[BW_LOG__COUNT] = {
    [BW_LOG_ERROR] = "error",
    [BW_LOG_WARN] = "warn",
    [BW_LOG_INFO] = "info",
    [BW_LOG_DEBUG] = "debug",
};

void bw_log_set_level(enum bw_log_level level)
{
    atomic_store(&g_level, (int)level);
}

enum bw_log_level bw_log_get_level(void)
{
    return (enum bw_log_level)atomic_load(&g_level);
}

void bw_log_at(struct bw_log_site *site, enum bw_log_level level, const char *fmt, ...)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t sec = (uint64_t)now.tv_sec;

    /* Per-site token window. Races between threads can let a line or two
     * more through a window; that is fine, the bound is what matters. */
    if (atomic_load(&site->window_sec) != sec) {
        atomic_store(&site->window_sec, sec);
        atomic_store(&site->count, 0);
    }
    if (atomic_fetch_add(&site->count, 1) >= BW_LOG_BURST) {
        atomic_fetch_add(&site->suppressed, 1);
        return;
    }
    uint64_t suppressed = atomic_exchange(&site->suppressed, 0);

    char line[1024];
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    int n =
        snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
                 level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 64)
        n = (int)(sizeof line - 64);
    if (suppressed)
        n += snprintf(line + n, sizeof line - (size_t)n, " (%llu similar lines suppressed)",
                      (unsigned long long)suppressed);
    line[n++] = '\n';
    /* One write(2) per line keeps lines from different threads whole. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
