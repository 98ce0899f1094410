/* Worker threads: each owns one event loop, its own listening sockets (one per
 * configured address, SO_REUSEPORT) and whatever per-worker state the proxy
 * hangs on it. Accepting is here; what a connection does is the proxy's
 * business, reached through the accept callback.
 *
 * Stopping: bw_worker_request_stop() (from any thread) makes the worker close
 * its listeners and call on_drain; the worker's loop ends once the proxy
 * reports that no connection is left (bw_worker_conn_closed) or the drain
 * deadline passes. */
#ifndef BW_NET_WORKER_H
#define BW_NET_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "net/loop.h"

struct bw_worker;

/* listener: the index of the accepting socket, in the order added. */
typedef void (*bw_accept_cb)(struct bw_worker *w, size_t listener, int fd,
                             const struct sockaddr_storage *peer, socklen_t peer_len);
typedef void (*bw_drain_cb)(struct bw_worker *w);
/* At max_conns: closes one connection that holds no request, to make room
 * for a new one; false when there is none. */
typedef bool (*bw_reclaim_cb)(struct bw_worker *w);

struct bw_worker_listener {
    struct bw_io io;
    struct bw_worker *w;
    bool paused; /* out of fds: removed from epoll until the retry timer */
};

enum { BW_WORKER_MAX_LISTENERS = 16 };

struct bw_worker {
    unsigned id;
    pthread_t thread;
    struct bw_loop loop;
    struct bw_worker_listener listeners[BW_WORKER_MAX_LISTENERS];
    size_t nlisteners;
    struct bw_timer accept_retry; /* re-enables paused listeners */
    struct bw_timer drain_deadline;
    bw_accept_cb on_accept;
    bw_drain_cb on_drain;
    bw_reclaim_cb on_full; /* optional */
    bw_drain_cb on_start;  /* on the worker thread, before its loop runs */
    bw_drain_cb on_exit;   /* on the worker thread, after its loop ended */
    _Atomic bool stop_requested;
    bool draining;
    uint64_t drain_timeout_ms;
    uint64_t nconns;    /* connections open (the proxy keeps it) */
    uint64_t max_conns; /* at it, on_full makes room, else a new connection is closed */
    uint64_t accept_errors;
    /* Out of descriptors or memory, accepting pauses until accept_retry
     * fires: every pause ends in a resume before the next accept, so
     * paused - resumed is 0 or 1 (read by /metrics, hence atomic). */
    _Atomic uint64_t accept_paused;
    _Atomic uint64_t accept_resumed;
    void *data; /* the proxy's per-worker state */
};

bw_status bw_worker_init(struct bw_worker *w, unsigned id, bw_error *err) BW_MUST_CHECK;
/* Adds an already-listening socket; the worker owns it from now on. */
bw_status bw_worker_add_listener(struct bw_worker *w, int fd, bw_error *err) BW_MUST_CHECK;
bw_status bw_worker_start(struct bw_worker *w, bw_error *err) BW_MUST_CHECK;
void bw_worker_request_stop(struct bw_worker *w);
void bw_worker_join(struct bw_worker *w);
void bw_worker_done(struct bw_worker *w);

/* Called by the proxy when a connection it accepted is closed. */
void bw_worker_conn_closed(struct bw_worker *w);

#endif
