#include "net/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "net/loop_internal.h"

enum { MAX_EVENTS = BW__LOOP_MAX_EVENTS };

uint64_t bw_monotonic_ms(void)
{
    struct timespec ts;
    /* COARSE is served by the vDSO without a syscall; its ~4 ms resolution
     * is ample for timeouts measured in hundreds of ms or more. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wake_cb(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)events;
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    (void)n;
    if (loop->on_wake)
        loop->on_wake(loop);
}

bw_status bw_loop_init(struct bw_loop *loop, bw_error *err)
{
    memset(loop, 0, sizeof *loop);
    loop->wake_fd = -1;
    loop->read_ahead_max = SIZE_MAX; /* the owner sets its limit */
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return bw_error_set(err, "epoll_create1: %s", strerror(errno));
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        close(loop->epfd);
        return bw_error_set(err, "eventfd: %s", strerror(errno));
    }
    loop->wake_io.fd = loop->wake_fd;
    loop->wake_io.cb = wake_cb;
    if (bw_loop_add_level_in(loop, &loop->wake_io, err) != BW_OK) {
        close(loop->wake_fd);
        close(loop->epfd);
        return BW_ERR;
    }
    loop->now_ms = bw_monotonic_ms();
    return BW_OK;
}

void bw_loop_done(struct bw_loop *loop)
{
    if (loop->has_ring)
        bw__ring_free(loop);
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
}

static bw_status ctl_add(struct bw_loop *loop, struct bw_io *io, uint32_t events, bw_error *err)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) != 0)
        return bw_error_set(err, "epoll_ctl(ADD, fd %d): %s", io->fd, strerror(errno));
    return BW_OK;
}

bw_status bw_loop_add(struct bw_loop *loop, struct bw_io *io, bw_error *err)
{
    return ctl_add(loop, io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, err);
}

bw_status bw_loop_add_level_in(struct bw_loop *loop, struct bw_io *io, bw_error *err)
{
    return ctl_add(loop, io, EPOLLIN, err);
}

void bw_loop_del(struct bw_loop *loop, struct bw_io *io)
{
    /* Closing an fd removes it from epoll by itself; this is for fds that
     * stay open (listeners paused on EMFILE). */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void bw_loop_wake(struct bw_loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof one);
    (void)n;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_swap(struct bw_loop *loop, size_t a, size_t b)
{
    struct bw_timer *ta = loop->heap[a], *tb = loop->heap[b];
    loop->heap[a] = tb;
    loop->heap[b] = ta;
    tb->heap_index = a;
    ta->heap_index = b;
}

static void heap_up(struct bw_loop *loop, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (loop->heap[p]->queued_at <= loop->heap[i]->queued_at)
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct bw_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && loop->heap[l]->queued_at < loop->heap[m]->queued_at)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->queued_at < loop->heap[m]->queued_at)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

static void heap_remove(struct bw_loop *loop, struct bw_timer *t)
{
    size_t i = t->heap_index;
    size_t last = loop->heap_len - 1;
    if (i != last) {
        heap_swap(loop, i, last);
        loop->heap_len--;
        heap_down(loop, i);
        heap_up(loop, i);
    } else {
        loop->heap_len--;
    }
    t->heap_index = SIZE_MAX;
}

static bw_status heap_push(struct bw_loop *loop, struct bw_timer *t)
{
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
        struct bw_timer **nh = realloc(loop->heap, cap * sizeof *nh);
        if (!nh)
            return BW_ERR;
        loop->heap = nh;
        loop->heap_cap = cap;
    }
    t->heap_index = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->heap_index);
    return BW_OK;
}

void bw_timer_init(struct bw_timer *t, bw_timer_cb cb)
{
    t->deadline = BW_TIMER_OFF;
    t->queued_at = BW_TIMER_OFF;
    t->heap_index = SIZE_MAX;
    t->cb = cb;
}

bw_status bw_timer_set(struct bw_loop *loop, struct bw_timer *t, uint64_t ms)
{
    uint64_t deadline = loop->now_ms + ms;
    t->deadline = deadline;
    if (t->heap_index != SIZE_MAX) {
        if (deadline >= t->queued_at)
            return BW_OK; /* lazy: fires early, then re-queues */
        t->queued_at = deadline;
        heap_up(loop, t->heap_index);
        return BW_OK;
    }
    t->queued_at = deadline;
    return heap_push(loop, t);
}

void bw_timer_stop(struct bw_loop *loop, struct bw_timer *t)
{
    /* Left in the heap when queued: it is dropped when it surfaces. This
     * keeps stop O(1) on the hot path. */
    (void)loop;
    t->deadline = BW_TIMER_OFF;
}

void bw_timer_cancel(struct bw_loop *loop, struct bw_timer *t)
{
    t->deadline = BW_TIMER_OFF;
    if (t->heap_index != SIZE_MAX)
        heap_remove(loop, t);
}

void bw_loop_defer(struct bw_loop *loop, struct bw_deferred *d)
{
    d->next = loop->deferred;
    loop->deferred = d;
}

void bw_loop_post(struct bw_loop *loop, struct bw_task *t)
{
    if (t->posted)
        return;
    t->posted = true;
    t->next = NULL;
    if (loop->posted_tail)
        loop->posted_tail->next = t;
    else
        loop->posted_head = t;
    loop->posted_tail = t;
}

void bw_loop_unpost(struct bw_loop *loop, struct bw_task *t)
{
    if (!t->posted)
        return;
    struct bw_task **pp = &loop->posted_head;
    struct bw_task *prev = NULL;
    while (*pp && *pp != t) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = t->next;
        if (loop->posted_tail == t)
            loop->posted_tail = prev;
    }
    t->posted = false;
}

/* Runs the tasks posted before this call; tasks they post run next time. */
void bw__loop_run_posted(struct bw_loop *loop)
{
    struct bw_task *t = loop->posted_head;
    loop->posted_head = loop->posted_tail = NULL;
    while (t) {
        struct bw_task *next = t->next;
        t->posted = false;
        t->next = NULL;
        t->fn(t);
        t = next;
    }
    bw_loop_run_deferred(loop);
}

void bw_loop_run_deferred(struct bw_loop *loop)
{
    while (loop->deferred) {
        struct bw_deferred *d = loop->deferred;
        loop->deferred = d->next;
        d->fn(d);
    }
}

int bw__loop_run_timers(struct bw_loop *loop)
{
    while (loop->heap_len > 0) {
        struct bw_timer *t = loop->heap[0];
        if (t->queued_at > loop->now_ms) {
            uint64_t wait = t->queued_at - loop->now_ms;
            return wait > 60000 ? 60000 : (int)wait;
        }
        heap_remove(loop, t);
        if (t->deadline == BW_TIMER_OFF)
            continue;
        /* Pushed later since it was queued: re-queue at the real deadline
         * even when that is already due, so timers that are all overdue
         * still fire in deadline order. */
        if (t->deadline > t->queued_at) {
            t->queued_at = t->deadline;
            if (heap_push(loop, t) != BW_OK) {
                /* Cannot happen: the entry was just removed, so there is room. */
                BW_ERRORF("timer heap: re-queue failed");
            }
            continue;
        }
        t->deadline = BW_TIMER_OFF;
        t->cb(loop, t);
        bw_loop_run_deferred(loop);
    }
    return -1;
}

int bw__loop_poll_epoll(struct bw_loop *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno != EINTR)
            BW_ERRORF("epoll_wait: %s", strerror(errno));
        return -1;
    }
    loop->now_ms = bw_monotonic_ms();
    for (int i = 0; i < n; i++) {
        struct bw_io *io = events[i].data.ptr;
        if (io->fd >= 0)
            io->cb(loop, io, events[i].events);
    }
    return n == MAX_EVENTS ? MAX_EVENTS : n;
}

void bw_loop_run(struct bw_loop *loop)
{
    if (loop->has_ring) {
        bw__ring_run(loop);
        return;
    }
    while (!loop->stop) {
        loop->now_ms = bw_monotonic_ms();
        int timeout = bw__loop_run_timers(loop);
        if (loop->stop)
            break;
        if (loop->posted_head)
            timeout = 0;
        if (bw__loop_poll_epoll(loop, timeout) < 0)
            continue;
        bw_loop_run_deferred(loop);
        bw__loop_run_posted(loop);
    }
}
