/* Access log without blocking workers. Each worker appends finished lines to
 * its own single-producer/single-consumer byte ring; one writer thread drains
 * the rings to the log file every few milliseconds. When a ring is full (the
 * disk or pipe is slower than the traffic) the line is dropped and counted,
 * never waited for: the request path does not depend on the log's speed. */
#ifndef BW_PROXY_ACCESS_LOG_H
#define BW_PROXY_ACCESS_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

enum { BW_ACCESS_RING_BYTES = 1 << 20 };

struct bw_access_ring {
    _Atomic size_t head; /* consumer position (monotonic) */
    _Atomic size_t tail; /* producer position (monotonic) */
    _Atomic uint64_t dropped;
    char data[BW_ACCESS_RING_BYTES];
};

struct bw_access_log {
    int fd;
    bool own_fd;
    char path[4096];     /* what fd was opened from: reopened by that name */
    _Atomic bool reopen; /* asked for by a signal: the writer does it */
    struct bw_access_ring **rings;
    size_t nrings;
    pthread_t thread;
    _Atomic bool stop;
    bool started;
    uint64_t reported_dropped;
};

/* path: file to append to, or "-" for stdout. */
bw_status bw_access_log_open(struct bw_access_log *log, const char *path, size_t nworkers,
                             bw_error *err) BW_MUST_CHECK;
bw_status bw_access_log_start(struct bw_access_log *log, bw_error *err) BW_MUST_CHECK;
/* Asks the writer to reopen the file by its name, after writing what it
 * holds to the old one (log rotation: the old file was moved away). Safe
 * from any thread. A file that cannot be opened is reported and the old
 * one kept. Nothing to do for stdout. */
void bw_access_log_reopen(struct bw_access_log *log);
/* Exiting at once (SIGQUIT, a second SIGTERM): lets the writer drain what
 * the rings hold, waiting at most timeout_ms (a log on a stuck disk must
 * not hold the exit), then returns; the process is about to _exit. */
void bw_access_log_flush_for_exit(struct bw_access_log *log, unsigned timeout_ms);
/* Stops the writer after a final drain and closes the file. */
void bw_access_log_close(struct bw_access_log *log);

/* Producer side: appends one whole line (ending in '\n') or drops it. */
void bw_access_ring_push(struct bw_access_ring *r, const char *line, size_t len);

#endif
