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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct bw_loop;
struct bw_io;
struct bw_timer;

/* events: EPOLLIN/EPOLLOUT/EPOLLRDHUP/EPOLLHUP/EPOLLERR bits. */
typedef void (*bw_io_cb)(struct bw_loop *loop, struct bw_io *io, uint32_t events);
typedef void (*bw_timer_cb)(struct bw_loop *loop, struct bw_timer *t);

struct bw_io {
    int fd;
    bw_io_cb cb;
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

struct bw_loop {
    int epfd;
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
