#include "proxy/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

enum { DRAIN_INTERVAL_MS = 20 };

void bw_access_ring_push(struct bw_access_ring *r, const char *line, size_t len)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (len > BW_ACCESS_RING_BYTES - (tail - head)) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return;
    }
    size_t off = tail % BW_ACCESS_RING_BYTES;
    size_t first = BW_ACCESS_RING_BYTES - off;
    if (first > len)
        first = len;
    memcpy(r->data + off, line, first);
    memcpy(r->data, line + first, len - first);
    atomic_store_explicit(&r->tail, tail + len, memory_order_release);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            BW_ERRORF("access log: write: %s; lines lost", strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void drain(struct bw_access_log *log)
{
    uint64_t dropped = 0;
    for (size_t i = 0; i < log->nrings; i++) {
        struct bw_access_ring *r = log->rings[i];
        size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        if (tail != head) {
            size_t n = tail - head;
            size_t off = head % BW_ACCESS_RING_BYTES;
            size_t first = BW_ACCESS_RING_BYTES - off;
            if (first > n)
                first = n;
            write_all(log->fd, r->data + off, first);
            if (n > first)
                write_all(log->fd, r->data, n - first);
            atomic_store_explicit(&r->head, tail, memory_order_release);
        }
        dropped += atomic_load_explicit(&r->dropped, memory_order_relaxed);
    }
    if (dropped != log->reported_dropped) {
        BW_WARNF("access log: %llu lines dropped so far (the log output is slower than the "
                 "traffic)",
                 (unsigned long long)dropped);
        log->reported_dropped = dropped;
    }
}

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void reopen_now(struct bw_access_log *log)
{
    int fd = open_log(log->path);
    if (fd < 0) {
        BW_ERRORF("access log: cannot reopen %s: %s; still writing to the file opened before",
                  log->path, strerror(errno));
        return;
    }
    close(log->fd);
    log->fd = fd;
    BW_INFOF("access log: reopened %s", log->path);
}

static void *writer_main(void *arg)
{
    struct bw_access_log *log = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = DRAIN_INTERVAL_MS * 1000000L};
    while (!atomic_load(&log->stop)) {
        nanosleep(&ts, NULL);
        drain(log);
        /* Lines finished before the signal went to the old file: rotation
         * tools move the file, then signal, then compress the old one. */
        if (atomic_exchange(&log->reopen, false) && log->own_fd)
            reopen_now(log);
    }
    drain(log);
    return NULL;
}

void bw_access_log_reopen(struct bw_access_log *log)
{
    atomic_store(&log->reopen, true);
}

bw_status bw_access_log_open(struct bw_access_log *log, const char *path, size_t nworkers,
                             bw_error *err)
{
    memset(log, 0, sizeof *log);
    if (strcmp(path, "-") == 0) {
        log->fd = STDOUT_FILENO;
    } else {
        size_t n = strlen(path);
        if (n >= sizeof log->path)
            return bw_error_set(err, "access_log %s: path too long", path);
        memcpy(log->path, path, n + 1);
        log->fd = open_log(path);
        if (log->fd < 0)
            return bw_error_set(err, "access_log %s: %s", path, strerror(errno));
        log->own_fd = true;
    }
    log->rings = calloc(nworkers, sizeof *log->rings);
    if (!log->rings)
        goto oom;
    for (size_t i = 0; i < nworkers; i++) {
        log->rings[i] = calloc(1, sizeof *log->rings[i]);
        if (!log->rings[i])
            goto oom;
        log->nrings++;
    }
    return BW_OK;
oom:
    bw_access_log_close(log);
    return bw_error_set(err, "access_log: out of memory");
}

bw_status bw_access_log_start(struct bw_access_log *log, bw_error *err)
{
    int rc = pthread_create(&log->thread, NULL, writer_main, log);
    if (rc != 0)
        return bw_error_set(err, "access log writer: pthread_create: %s", strerror(rc));
    log->started = true;
    return BW_OK;
}

void bw_access_log_flush_for_exit(struct bw_access_log *log, unsigned timeout_ms)
{
    if (!log->started)
        return;
    atomic_store(&log->stop, true);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(log->thread, NULL, &until) == 0)
        log->started = false;
}

void bw_access_log_close(struct bw_access_log *log)
{
    if (log->started) {
        atomic_store(&log->stop, true);
        pthread_join(log->thread, NULL);
        log->started = false;
    }
    for (size_t i = 0; i < log->nrings; i++)
        free(log->rings[i]);
    free(log->rings);
    log->rings = NULL;
    log->nrings = 0;
    if (log->own_fd && log->fd >= 0)
        close(log->fd);
    log->fd = -1;
}
