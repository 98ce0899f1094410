#include "net/worker.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

enum { ACCEPT_RETRY_MS = 100, ACCEPT_BATCH = 64 };

static void pause_listeners(struct bw_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (!w->listeners[i].paused && w->listeners[i].io.fd >= 0) {
            bw_loop_del(&w->loop, &w->listeners[i].io);
            w->listeners[i].paused = true;
        }
    }
    if (bw_timer_set(&w->loop, &w->accept_retry, ACCEPT_RETRY_MS) != BW_OK)
        BW_ERRORF("worker %u: cannot arm the accept retry timer", w->id);
}

static void accept_retry_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    struct bw_worker *w = loop->data;
    if (w->draining)
        return;
    bool resumed = false;
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct bw_worker_listener *l = &w->listeners[i];
        if (!l->paused)
            continue;
        bw_error err;
        if (bw_loop_add_level_in(&w->loop, &l->io, &err) == BW_OK) {
            l->paused = false;
            resumed = true;
        } else {
            BW_ERRORF("worker %u: %s", w->id, err.msg);
        }
    }
    if (resumed)
        atomic_fetch_add_explicit(&w->accept_resumed, 1, memory_order_relaxed);
}

static void listener_cb(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)events;
    struct bw_worker *w = loop->data;
    struct bw_worker_listener *l = (struct bw_worker_listener *)io;
    /* Level-triggered with a bounded batch: a burst of connections cannot
     * starve the connections already being served. */
    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
            case EINTR:
            case ECONNABORTED:
                return;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                /* Out of resources: stop accepting for a moment instead of
                 * spinning on a listener that stays readable. */
                w->accept_errors++;
                atomic_fetch_add_explicit(&w->accept_paused, 1, memory_order_relaxed);
                BW_ERRORF("worker %u: accept: %s; pausing accept for %d ms", w->id, strerror(errno),
                          ACCEPT_RETRY_MS);
                pause_listeners(w);
                return;
            default:
                w->accept_errors++;
                BW_ERRORF("worker %u: accept: %s", w->id, strerror(errno));
                return;
            }
        }
        /* At the limit an idle connection makes room (nginx reuses its
         * keepalive and not-yet-used connections the same way): otherwise
         * connections that hold nothing, a client's many silent ones or
         * everyone's keepalive ones, would lock new clients out until
         * their timeouts. */
        if (w->nconns >= w->max_conns && w->on_full)
            (void)w->on_full(w);
        if (w->nconns >= w->max_conns) {
            BW_WARNF("worker %u: %llu connections open (limits.max_connections); closing a new one",
                     w->id, (unsigned long long)w->nconns);
            close(fd);
            continue;
        }
        w->nconns++;
        w->on_accept(w, (size_t)(l - w->listeners), fd, &peer, plen);
    }
}

static void maybe_finish_drain(struct bw_worker *w)
{
    if (w->draining && w->nconns == 0)
        w->loop.stop = true;
}

static void drain_deadline_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    struct bw_worker *w = loop->data;
    if (w->nconns)
        BW_WARNF("worker %u: drain timeout: closing %llu connections still open", w->id,
                 (unsigned long long)w->nconns);
    loop->stop = true;
}

static void on_wake(struct bw_loop *loop)
{
    struct bw_worker *w = loop->data;
    if (!atomic_load(&w->stop_requested) || w->draining)
        return;
    w->draining = true;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].io.fd >= 0) {
            close(w->listeners[i].io.fd);
            w->listeners[i].io.fd = -1;
        }
    }
    if (bw_timer_set(loop, &w->drain_deadline, w->drain_timeout_ms) != BW_OK)
        loop->stop = true;
    if (w->on_drain)
        w->on_drain(w);
    maybe_finish_drain(w);
}

bw_status bw_worker_init(struct bw_worker *w, unsigned id, bw_error *err)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->max_conns = UINT64_MAX;
    w->drain_timeout_ms = 30000;
    if (bw_loop_init(&w->loop, err) != BW_OK)
        return BW_ERR;
    w->loop.data = w;
    w->loop.on_wake = on_wake;
    bw_timer_init(&w->accept_retry, accept_retry_cb);
    bw_timer_init(&w->drain_deadline, drain_deadline_cb);
    return BW_OK;
}

bw_status bw_worker_add_listener(struct bw_worker *w, int fd, bw_error *err)
{
    if (w->nlisteners == BW_WORKER_MAX_LISTENERS)
        return bw_error_set(err, "too many listeners (at most %d)", BW_WORKER_MAX_LISTENERS);
    struct bw_worker_listener *l = &w->listeners[w->nlisteners];
    l->io.fd = fd;
    l->io.cb = listener_cb;
    l->w = w;
    l->paused = false;
    if (bw_loop_add_level_in(&w->loop, &l->io, err) != BW_OK)
        return BW_ERR;
    w->nlisteners++;
    return BW_OK;
}

static void *worker_main(void *arg)
{
    struct bw_worker *w = arg;
    switch (w->loop.engine) {
    case BW_IO_ENGINE_EPOLL:
        break;
    case BW_IO_ENGINE_AUTO:
    case BW_IO_ENGINE_IO_URING: {
        /* Here, on the worker's thread: the ring belongs to its submitter.
         * The start checked that the kernel allows it (bw_ring_supported). */
        bw_error err;
        if (bw_loop_ring_init(&w->loop, &err) != BW_OK)
            BW_ERRORF("worker %u: %s; using epoll", w->id, err.msg);
        break;
    }
    }
    if (w->on_start)
        w->on_start(w);
    bw_loop_run(&w->loop);
    if (w->on_exit)
        w->on_exit(w);
    return NULL;
}

bw_status bw_worker_start(struct bw_worker *w, bw_error *err)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return bw_error_set(err, "worker %u: pthread_create: %s", w->id, strerror(rc));
    return BW_OK;
}

void bw_worker_request_stop(struct bw_worker *w)
{
    atomic_store(&w->stop_requested, true);
    bw_loop_wake(&w->loop);
}

void bw_worker_join(struct bw_worker *w)
{
    pthread_join(w->thread, NULL);
}

void bw_worker_done(struct bw_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].io.fd >= 0)
            close(w->listeners[i].io.fd);
    bw_loop_done(&w->loop);
}

void bw_worker_conn_closed(struct bw_worker *w)
{
    w->nconns--;
    maybe_finish_drain(w);
}
