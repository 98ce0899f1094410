/* One event loop per worker thread: epoll in edge-triggered mode plus a
 * min-heap of deadlines. Nothing here is shared between threads except
 * bw_loop_wake(), which another thread may call to interrupt epoll_wait.
 *
 * Edge-triggered: a file descriptor is registered once, for input and output,
 * when it is created, and never modified afterwards. The owner remembers
 * readiness itself (set when an event arrives, cleared on EAGAIN or a short
 * read), which keeps epoll_ctl off the per-request path.
 *
 * Timers are lazy: a timer's deadline can be pushed later without touching
 * the heap; the heap entry fires at the old time, sees the new deadline and
 * re-queues itself. Only making a deadline earlier costs a heap operation.
 * Per request that turns most timer updates into a single store. */
#ifndef BW_NET_LOOP_H
#define BW_NET_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "base/error.h"

struct bw_loop;
struct bw_io;
struct bw_timer;

/* events: EPOLLIN/EPOLLOUT/EPOLLRDHUP/EPOLLHUP/EPOLLERR bits. */
typedef void (*bw_io_cb)(struct bw_loop *loop, struct bw_io *io, uint32_t events);
typedef void (*bw_timer_cb)(struct bw_loop *loop, struct bw_timer *t);

/* ring: the fd is served by the loop's io_uring (bw_loop_attach in ring
 * mode) and slot is its index there; otherwise it is registered with epoll. */
struct bw_io {
    int fd;
    bw_io_cb cb;
    bool ring;
    uint32_t slot;
};

#define BW_TIMER_OFF UINT64_MAX

struct bw_timer {
    uint64_t deadline;  /* wanted expiry in loop ms, BW_TIMER_OFF if disarmed */
    uint64_t queued_at; /* key the heap holds for it */
    size_t heap_index;  /* position in the heap, SIZE_MAX if not queued */
    bw_timer_cb cb;
};

/* An object closed while an event batch is being dispatched may still have
 * events later in that batch; it is parked here and freed after the batch. */
struct bw_deferred {
    struct bw_deferred *next;
    void (*fn)(struct bw_deferred *d);
};

/* Work to continue after the current event batch. With edge-triggered
 * readiness an object that stops early (to be fair to others) gets no new
 * event for what it left undone, so it posts itself instead. */
struct bw_task {
    struct bw_task *next;
    bool posted;
    void (*fn)(struct bw_task *t);
};

enum bw_io_engine {
    BW_IO_ENGINE_AUTO, /* io_uring when the kernel allows it, else epoll */
    BW_IO_ENGINE_EPOLL,
    BW_IO_ENGINE_IO_URING, /* io_uring or refuse to start */
};

struct bw_ring;

struct bw_loop {
    int epfd;
    /* Sockets attached with bw_loop_attach go through io_uring when
     * has_ring: reads are posted ahead into a shared buffer ring, writes are
     * copied and queued, and one io_uring_enter per iteration submits them
     * all and waits (src/net/ring.c). Everything else stays on epoll, whose
     * fd the ring polls. The ring is made on the loop's own thread, when
     * bw_loop_run starts, because it is bound to the thread that submits. */
    enum bw_io_engine engine;
    /* Ring mode, kernel 6.12 and later, while the loop is busy (ring.c
     * says when): once an event arrives, wait up to this long for up to 64
     * before handling them, so that one wakeup serves many (io_uring's
     * min_wait). A wait that saw nothing for this long ends at the next
     * event. */
    uint32_t batch_wait_us;
    /* Ring mode: a multishot receive takes in what the socket holds, up to
     * 32 buffers a round, before its owner could push back; bytes taken and
     * not yet read are held in memory the kernel's TCP limits no longer
     * see. Past read_ahead_max held, the ring receives one buffer at a time
     * until the holdings fall to half (ring.c). read_ahead_held is their
     * total, for /metrics. */
    size_t read_ahead_max;
    _Atomic uint64_t read_ahead_held;
    bool has_ring;
    struct bw_ring *ring; /* when has_ring */
    struct bw_deferred *deferred;
    struct bw_task *posted_head, *posted_tail;
    int wake_fd; /* eventfd, readable when another thread called bw_loop_wake */
    struct bw_io wake_io;
    void (*on_wake)(struct bw_loop *loop);
    struct bw_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t now_ms; /* monotonic ms, refreshed once per iteration */
    bool stop;
    void *data; /* owner (the worker) */
};

bw_status bw_loop_init(struct bw_loop *loop, bw_error *err) BW_MUST_CHECK;
void bw_loop_done(struct bw_loop *loop);

/* Registers fd for IN|OUT|RDHUP, edge-triggered. */
bw_status bw_loop_add(struct bw_loop *loop, struct bw_io *io, bw_error *err) BW_MUST_CHECK;
/* Registers fd for IN only, level-triggered (listeners, eventfds). */
bw_status bw_loop_add_level_in(struct bw_loop *loop, struct bw_io *io, bw_error *err) BW_MUST_CHECK;
void bw_loop_del(struct bw_loop *loop, struct bw_io *io);

/* Runs until loop->stop is set. */
void bw_loop_run(struct bw_loop *loop);
/* Sets up the ring, on the thread that will run the loop, before any socket
 * is attached. Fails when the kernel refuses io_uring (disabled by sysctl
 * or a seccomp filter, or older than 6.1); the loop then stays on epoll. */
bw_status bw_loop_ring_init(struct bw_loop *loop, bw_error *err) BW_MUST_CHECK;
/* Whether this kernel lets this process use io_uring as the loop needs it
 * (made and torn down at once: for checking a config at start). */
bool bw_ring_supported(bw_error *err);

/* ---- connected sockets: the same calls in both modes ---------------------
 * A socket attached here reports edge-style events to io->cb as with
 * bw_loop_add, and is read, written, shut and closed only through these.
 * In ring mode a read returns bytes the loop already received; a write of
 * up to BW_RING_COPY_MAX bytes is copied and queued, so it "succeeds" at
 * once and a later failure is reported on the next call (and as
 * EPOLLERR|EPOLLHUP). connecting: a non-blocking connect is under way;
 * EPOLLOUT says it finished (EPOLLERR: failed; the next write says why). */
enum { BW_RING_COPY_MAX = 16384 };
bw_status bw_loop_attach(struct bw_loop *loop, struct bw_io *io, bool connecting,
                         bw_error *err) BW_MUST_CHECK;
/* As recv(fd, dst, len, 0). */
ssize_t bw_io_recv(struct bw_loop *loop, struct bw_io *io, void *dst, size_t len);
/* As sendmsg(fd, {iov, n}, MSG_NOSIGNAL). */
ssize_t bw_io_sendv(struct bw_loop *loop, struct bw_io *io, const struct iovec *iov, int n);
/* shutdown(SHUT_WR) once what was written has gone out. */
int bw_io_shutdown_wr(struct bw_loop *loop, struct bw_io *io);
/* Ring mode: whether bytes, EOF or an error were received that bw_io_recv
 * has not returned yet (they are no longer in the socket). Epoll: false. */
bool bw_io_buffered(struct bw_loop *loop, const struct bw_io *io);
/* Closes the socket; io->fd becomes -1 and the io gets no more events. */
void bw_io_close(struct bw_loop *loop, struct bw_io *io);
/* Thread-safe: makes the loop call on_wake at its next iteration. */
void bw_loop_wake(struct bw_loop *loop);

uint64_t bw_monotonic_ms(void);

void bw_timer_init(struct bw_timer *t, bw_timer_cb cb);
/* Sets the deadline to now + ms. */
bw_status bw_timer_set(struct bw_loop *loop, struct bw_timer *t, uint64_t ms) BW_MUST_CHECK;
void bw_timer_stop(struct bw_loop *loop, struct bw_timer *t);
/* Removes the timer from the heap: required before freeing its memory. */
void bw_timer_cancel(struct bw_loop *loop, struct bw_timer *t);
/* Calls d->fn(d) after the current event batch (io callbacks of the object
 * must ignore events once it is closed: set io->fd to -1). */
void bw_loop_defer(struct bw_loop *loop, struct bw_deferred *d);
/* Runs t->fn(t) after the current event batch, once, however often it is
 * posted before then. */
void bw_loop_post(struct bw_loop *loop, struct bw_task *t);
/* Withdraws a posted task (its owner is being freed). */
void bw_loop_unpost(struct bw_loop *loop, struct bw_task *t);
/* Runs what was deferred now (after the loop has stopped). */
void bw_loop_run_deferred(struct bw_loop *loop);
static inline bool bw_timer_armed(const struct bw_timer *t)
{
    return t->deadline != BW_TIMER_OFF;
}

#endif
