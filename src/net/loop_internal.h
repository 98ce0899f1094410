/* What loop.c and ring.c share: one iteration's steps, in either mode. */
#ifndef BW_NET_LOOP_INTERNAL_H
#define BW_NET_LOOP_INTERNAL_H

#include "net/loop.h"

enum { BW__LOOP_MAX_EVENTS = 256 };

/* Fires due timers; returns ms until the next one, or -1 for none. */
int bw__loop_run_timers(struct bw_loop *loop);
/* Runs the tasks posted before this call, with deferred frees after. */
void bw__loop_run_posted(struct bw_loop *loop);
/* epoll_wait(timeout) and dispatch; returns the number of events, or -1. */
int bw__loop_poll_epoll(struct bw_loop *loop, int timeout_ms);
/* Ring mode: the loop's run (ring.c). */
void bw__ring_run(struct bw_loop *loop);
void bw__ring_free(struct bw_loop *loop);

#endif
