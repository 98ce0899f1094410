/* Timers of the event loop (src/net/loop.c), driven through bw_loop_run.
 *
 * No test waits for wall time. Timers are armed while loop->now_ms is set by
 * hand to a moment in the past ("base"), so by the time bw_loop_run reads
 * the clock every deadline that should fire is already due and they all
 * fire in one pass, in the order the heap gives them: that order is what is
 * checked. Timers that must not fire are armed hours past the real clock.
 * A last "stopper" timer sets loop->stop. */
#include <stdlib.h>

#include "net/loop.h"
#include "test.h"

struct tt {
    struct bw_timer t; /* first: the callback gets &tt->t */
    int id;
    uint64_t want; /* deadline we expect it to fire for */
};

enum { MAX_FIRED = 20000 };
static int fired[MAX_FIRED];
static uint64_t fired_want[MAX_FIRED];
static size_t nfired;

static void record_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct tt *x = (struct tt *)t;
    if (nfired < MAX_FIRED) {
        fired[nfired] = x->id;
        fired_want[nfired] = x->want;
    }
    nfired++;
}

static void stop_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    loop->stop = true;
}

struct fixture {
    struct bw_loop loop;
    uint64_t base; /* hand-set now_ms, in the past */
    uint64_t span; /* every offset below span is due when the loop runs */
    struct bw_timer stopper;
};

static bool fx_init(struct fixture *f)
{
    bw_error err;
    if (bw_loop_init(&f->loop, &err) != BW_OK)
        return false;
    uint64_t real = bw_monotonic_ms();
    f->span = real > 200001 ? 200000 : real - 1;
    f->base = real - f->span - 1;
    f->loop.now_ms = f->base;
    nfired = 0;
    bw_timer_init(&f->stopper, stop_cb);
    /* Due last among the due ones. */
    return bw_timer_set(&f->loop, &f->stopper, f->span) == BW_OK;
}

/* Arms t at base + off (off < span: due when the loop runs). */
static bool at(struct fixture *f, struct tt *t, uint64_t off)
{
    uint64_t saved = f->loop.now_ms;
    f->loop.now_ms = f->base;
    t->want = f->base + off;
    bool ok = bw_timer_set(&f->loop, &t->t, off) == BW_OK;
    f->loop.now_ms = saved;
    return ok;
}

/* Arms t an hour past the real clock: must not fire in these tests. */
static bool far(struct fixture *f, struct tt *t)
{
    uint64_t saved = f->loop.now_ms;
    f->loop.now_ms = bw_monotonic_ms();
    t->want = UINT64_MAX;
    bool ok = bw_timer_set(&f->loop, &t->t, 3600 * 1000) == BW_OK;
    f->loop.now_ms = saved;
    return ok;
}

static void tt_init(struct tt *t, int id)
{
    bw_timer_init(&t->t, record_cb);
    t->id = id;
}

static void fx_run(struct fixture *f)
{
    f->loop.stop = false;
    bw_loop_run(&f->loop);
}

static const char *order(char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < nfired && i < MAX_FIRED && o + 12 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", fired[i]);
    return buf;
}

TEST(fire_in_deadline_order)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt t[5];
    const uint64_t off[5] = {50, 10, 30, 20, 40};
    for (int i = 0; i < 5; i++) {
        tt_init(&t[i], i);
        CHECK(at(&f, &t[i], off[i]));
    }
    fx_run(&f);
    char b[128];
    CHECK_STR_EQ(order(b, sizeof b), "1 3 2 4 0");
    for (int i = 0; i < 5; i++)
        CHECK(!bw_timer_armed(&t[i].t));
    bw_loop_done(&f.loop);
}

/* The heap keeps the first deadline and re-queues at the new one when it
 * surfaces: the timer must fire at the later time, ordered by it. */
TEST(pushed_later_fires_at_the_later_time)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt a, b, c;
    tt_init(&a, 1), tt_init(&b, 2), tt_init(&c, 3);
    CHECK(at(&f, &a, 10));
    CHECK(at(&f, &b, 20));
    CHECK(at(&f, &c, 40));
    CHECK(at(&f, &a, 30)); /* later: lazily kept in the heap at 10 */
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "2 1 3");
    bw_loop_done(&f.loop);
}

TEST(pushed_past_now_does_not_fire)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt a, b;
    tt_init(&a, 1), tt_init(&b, 2);
    CHECK(at(&f, &a, 10));
    CHECK(at(&f, &b, 20));
    CHECK(far(&f, &a));
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "2");
    CHECK(bw_timer_armed(&a.t));
    bw_timer_cancel(&f.loop, &a.t);
    bw_loop_done(&f.loop);
}

TEST(made_earlier_fires_earlier)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt a, b;
    tt_init(&a, 1), tt_init(&b, 2);
    CHECK(far(&f, &a));
    CHECK(at(&f, &b, 20));
    CHECK(at(&f, &a, 10));
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "1 2");
    bw_loop_done(&f.loop);
}

TEST(stop_prevents_firing_and_rearm_works)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt a, b, c;
    tt_init(&a, 1), tt_init(&b, 2), tt_init(&c, 3);
    CHECK(at(&f, &a, 10));
    CHECK(at(&f, &b, 20));
    CHECK(at(&f, &c, 30));
    bw_timer_stop(&f.loop, &a.t);
    CHECK(!bw_timer_armed(&a.t));
    bw_timer_stop(&f.loop, &c.t);
    CHECK(at(&f, &c, 25)); /* stopped, then armed again (earlier) */
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "2 3");
    bw_loop_done(&f.loop);
}

TEST(cancel_removes_from_heap)
{
    struct fixture f;
    CHECK(fx_init(&f));
    /* Cancelled timers are freed at once: ASan would see the heap touch
     * them afterwards. */
    struct tt *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    struct tt c;
    tt_init(a, 1), tt_init(b, 2), tt_init(&c, 3);
    CHECK(at(&f, a, 10));
    CHECK(at(&f, b, 20));
    CHECK(at(&f, &c, 30));
    size_t before = f.loop.heap_len;
    bw_timer_cancel(&f.loop, &a->t);
    CHECK_INT_EQ(f.loop.heap_len, before - 1);
    bw_timer_cancel(&f.loop, &a->t); /* twice is fine */
    CHECK_INT_EQ(f.loop.heap_len, before - 1);
    free(a);
    bw_timer_stop(&f.loop, &b->t);   /* stopped, still queued ... */
    bw_timer_cancel(&f.loop, &b->t); /* ... then cancelled: gone */
    free(b);
    CHECK_INT_EQ(f.loop.heap_len, before - 2);
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "3");
    bw_loop_done(&f.loop);
}

struct chain {
    struct tt self;
    struct fixture *f;
    struct tt *victim;
    int rearms;
};

static void chain_cb(struct bw_loop *loop, struct bw_timer *t)
{
    struct chain *c = (struct chain *)t;
    record_cb(loop, t);
    if (c->victim) {
        bw_timer_cancel(loop, &c->victim->t);
        c->victim = NULL;
    }
    if (c->rearms-- > 0) {
        /* Re-armed from its own callback, still due: fires again, after
         * the timers due before its new deadline. */
        uint64_t saved = loop->now_ms;
        loop->now_ms = c->f->base;
        c->self.want = c->f->base + 25;
        if (bw_timer_set(loop, t, 25) != BW_OK)
            abort();
        loop->now_ms = saved;
    }
}

TEST(callbacks_may_rearm_and_cancel)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct chain c = {.f = &f, .rearms = 1};
    struct tt v, w;
    bw_timer_init(&c.self.t, chain_cb);
    c.self.id = 1;
    tt_init(&v, 2), tt_init(&w, 3);
    c.victim = &v;
    CHECK(at(&f, &c.self, 10));
    CHECK(at(&f, &v, 20));
    CHECK(at(&f, &w, 30));
    fx_run(&f);
    char buf[64];
    CHECK_STR_EQ(order(buf, sizeof buf), "1 1 3");
    bw_loop_done(&f.loop);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

TEST(many_random_timers_fire_in_order)
{
    enum { N = 10000 };
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt *t = calloc(N, sizeof *t);
    bool *expect = calloc(N, sizeof *expect);
    uint64_t span = f.span - 1;
    for (int i = 0; i < N; i++) {
        tt_init(&t[i], i);
        CHECK(at(&f, &t[i], next_rand() % span));
    }
    /* Then a random mix of pushes later, pulls earlier, stops, cancels,
     * pushes past now, and re-arms after a stop. */
    for (int i = 0; i < N; i++) {
        expect[i] = true;
        switch (next_rand() % 6) {
        case 0:
            CHECK(at(&f, &t[i], t[i].want - f.base + (span - (t[i].want - f.base)) / 2));
            break;
        case 1:
            CHECK(at(&f, &t[i], (t[i].want - f.base) / 2));
            break;
        case 2:
            bw_timer_stop(&f.loop, &t[i].t);
            expect[i] = false;
            break;
        case 3:
            bw_timer_cancel(&f.loop, &t[i].t);
            expect[i] = false;
            break;
        case 4:
            CHECK(far(&f, &t[i]));
            expect[i] = false;
            break;
        default:
            bw_timer_stop(&f.loop, &t[i].t);
            CHECK(at(&f, &t[i], next_rand() % span));
            break;
        }
    }
    fx_run(&f);
    size_t want_n = 0;
    for (int i = 0; i < N; i++)
        want_n += expect[i];
    CHECK_INT_EQ(nfired, want_n);
    bool *seen = calloc(N, sizeof *seen);
    for (size_t k = 0; k < nfired; k++) {
        CHECK(expect[fired[k]]);
        CHECK(!seen[fired[k]]);
        seen[fired[k]] = true;
        if (k > 0 && fired_want[k] < fired_want[k - 1])
            T_FAILF("timer %d (due %llu) fired after timer %d (due %llu)", fired[k],
                    (unsigned long long)(fired_want[k] - f.base), fired[k - 1],
                    (unsigned long long)(fired_want[k - 1] - f.base));
        if (t_cur_failed)
            return;
    }
    for (int i = 0; i < N; i++)
        bw_timer_cancel(&f.loop, &t[i].t);
    free(t);
    free(expect);
    free(seen);
    bw_loop_done(&f.loop);
}

static int deferred_ran;
static void defer_fn(struct bw_deferred *d)
{
    (void)d;
    deferred_ran++;
}

static struct bw_deferred g_defer = {.fn = defer_fn};
static void defer_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    bw_loop_defer(loop, &g_defer);
}

TEST(deferred_runs_after_callback)
{
    struct fixture f;
    CHECK(fx_init(&f));
    struct tt a;
    bw_timer_init(&a.t, defer_cb);
    CHECK(at(&f, &a, 10));
    deferred_ran = 0;
    fx_run(&f);
    CHECK_INT_EQ(deferred_ran, 1);
    CHECK(f.loop.deferred == NULL);
    bw_loop_done(&f.loop);
}

int main(void)
{
    RUN(fire_in_deadline_order);
    RUN(pushed_later_fires_at_the_later_time);
    RUN(pushed_past_now_does_not_fire);
    RUN(made_earlier_fires_earlier);
    RUN(stop_prevents_firing_and_rearm_works);
    RUN(cancel_removes_from_heap);
    RUN(callbacks_may_rearm_and_cancel);
    RUN(many_random_timers_fire_in_order);
    RUN(deferred_runs_after_callback);
    return t_done();
}
