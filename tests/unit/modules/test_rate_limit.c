/* The shared rate-limit table: sliding-window arithmetic, Retry-After,
 * bounded memory with eviction, and exact counting under concurrent workers. */
#include <pthread.h>

#include "modules/rate_limit.h"
#include "test.h"

static struct bw_rate_table *mk(size_t entries)
{
    struct bw_rate_table *t = NULL;
    bw_error err;
    if (bw_rate_table_new(entries, &t, &err) != BW_OK) {
        printf("  table: %s\n", err.msg);
        return NULL;
    }
    return t;
}

TEST(allows_exactly_the_limit_in_one_window)
{
    struct bw_rate_table *t = mk(1024);
    uint64_t ra = 0;
    for (int i = 0; i < 5; i++)
        CHECK_INT_EQ(bw_rate_table_hit(t, 42, 5, 60000, 1000, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 42, 5, 60000, 1000, &ra), BW_RATE_OVER);
    /* Rejected requests are not counted: still over, not further over. */
    CHECK_INT_EQ(bw_rate_table_hit(t, 42, 5, 60000, 1500, &ra), BW_RATE_OVER);
    /* Full window spent (prev = 5) at 1 s into a 60 s window: the previous
     * window's weight only drops below 1 request after 12 s of the next. */
    CHECK(ra >= 59 && ra <= 60 + 12);
    bw_rate_table_free(t);
}

TEST(keys_are_independent)
{
    struct bw_rate_table *t = mk(1024);
    uint64_t ra = 0;
    CHECK_INT_EQ(bw_rate_table_hit(t, 1, 1, 1000, 0, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 1, 1, 1000, 0, &ra), BW_RATE_OVER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 2, 1, 1000, 0, &ra), BW_RATE_UNDER);
    bw_rate_table_free(t);
}

/* Workers read the clock once per loop iteration, so around a window's
 * boundary one may hit with a time just before it after another opened the
 * new window: that hit is counted in the new window, not taken as a reason
 * to empty the entry (which let a second limit's worth through). */
TEST(a_worker_behind_the_window_boundary_does_not_reset_the_count)
{
    struct bw_rate_table *t = mk(1024);
    uint64_t ra = 0, allowed = 0;
    for (uint64_t ms = 900; ms < 910; ms++)
        CHECK_INT_EQ(bw_rate_table_hit(t, 9, 10, 1000, ms, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 10, 1000, 950, &ra), BW_RATE_OVER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 10, 1000, 1000, &ra), BW_RATE_OVER); /* worker A */
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 10, 1000, 999, &ra), BW_RATE_OVER);  /* B, behind */
    for (uint64_t ms = 1001; ms <= 1030; ms++)
        allowed += bw_rate_table_hit(t, 9, 10, 1000, ms, &ra) == BW_RATE_UNDER;
    CHECK_INT_EQ(allowed, 0);
    bw_rate_table_free(t);
}

TEST(sliding_window_weighs_the_previous_window)
{
    struct bw_rate_table *t = mk(1024);
    uint64_t ra = 0;
    /* 10 requests in window [0, 10 s). */
    for (int i = 0; i < 10; i++)
        CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 5000, &ra), BW_RATE_UNDER);
    /* At 12 s, 80% of the previous window still counts: 8 + 0 + 1 = 9 <= 10,
     * so two more fit (8 + 2 = 10), the third does not. */
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 12000, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 12000, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 12000, &ra), BW_RATE_OVER);
    /* 8 + 2 + 1 > 10 now; at 12 s + 1 s the previous weighs 7: one fits. */
    CHECK_INT_EQ(ra, 1);
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 13000, &ra), BW_RATE_UNDER);
    /* Two whole windows later, nothing of the past counts. */
    for (int i = 0; i < 10; i++)
        CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 35000, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 10, 10000, 35000, &ra), BW_RATE_OVER);
    bw_rate_table_free(t);
}

TEST(retry_after_is_when_the_next_request_fits)
{
    struct bw_rate_table *t = mk(64);
    uint64_t ra = 0;
    /* limit 1 per 1 s, hit at 0.2 s: the next fits when the previous
     * window's weight reaches 0, i.e. at the end of the next window: 1.8 s. */
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 1, 1000, 200, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 1, 1000, 200, &ra), BW_RATE_OVER);
    CHECK_INT_EQ(ra, 2);
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 1, 1000, 1999, &ra), BW_RATE_OVER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 9, 1, 1000, 2000, &ra), BW_RATE_UNDER);
    bw_rate_table_free(t);
}

TEST(full_bucket_evicts_the_least_recently_active_key)
{
    /* The smallest table is one bucket: the fifth key must evict. */
    struct bw_rate_table *t = mk(BW_RATE_TABLE_MIN_ENTRIES);
    CHECK_INT_EQ(bw_rate_table_capacity(t), BW_RATE_TABLE_WAYS);
    uint64_t ra = 0;
    CHECK_INT_EQ(bw_rate_table_hit(t, 100, 1, 1000, 0, &ra), BW_RATE_UNDER); /* window 1 */
    for (uint64_t k = 101; k <= 103; k++)
        CHECK_INT_EQ(bw_rate_table_hit(t, k, 1, 1000, 5000, &ra), BW_RATE_UNDER);
    CHECK_INT_EQ(bw_rate_table_hit(t, 104, 1, 1000, 5000, &ra), BW_RATE_UNDER);
    /* 101..103 kept their counts; 100 (oldest) was evicted for 104. */
    for (uint64_t k = 101; k <= 104; k++)
        CHECK_INT_EQ(bw_rate_table_hit(t, k, 1, 1000, 5000, &ra), BW_RATE_OVER);
    bw_rate_table_free(t);
}

TEST(table_size_limits)
{
    struct bw_rate_table *t = NULL;
    bw_error err;
    CHECK_INT_EQ(bw_rate_table_new(BW_RATE_TABLE_MIN_ENTRIES - 1, &t, &err), BW_ERR);
    CHECK(strstr(err.msg, "out of range") != NULL);
    CHECK_INT_EQ(bw_rate_table_new((size_t)BW_RATE_TABLE_MAX_ENTRIES + 1, &t, &err), BW_ERR);
    CHECK_INT_EQ(bw_rate_table_new(BW_RATE_TABLE_MIN_ENTRIES, &t, &err), BW_OK);
    t = bw_rate_table_free(t);
    CHECK_INT_EQ(bw_rate_table_new(1000, &t, &err), BW_OK);
    CHECK_INT_EQ(bw_rate_table_capacity(t), 1024); /* rounded up to a power of two */
    t = bw_rate_table_free(t);
    CHECK_INT_EQ(bw_rate_table_new(BW_RATE_TABLE_MAX_ENTRIES, &t, &err), BW_OK);
    bw_rate_table_free(t);
}

TEST(a_reference_keeps_the_counts_after_the_first_owner_lets_go)
{
    struct bw_rate_table *t = mk(1024);
    uint64_t ra = 0;
    CHECK_INT_EQ(bw_rate_table_hit(t, 7, 1, 60000, 0, &ra), BW_RATE_UNDER);
    struct bw_rate_table *next = bw_rate_table_ref(t);
    CHECK(bw_rate_table_free(t) == NULL); /* the old snapshot goes */
    CHECK_INT_EQ(bw_rate_table_hit(next, 7, 1, 60000, 10, &ra), BW_RATE_OVER);
    CHECK_INT_EQ(bw_rate_table_capacity(next), bw_rate_table_capacity_for(1000));
    bw_rate_table_free(next);
}

/* Which keys share a bucket must differ from table to table (process to
 * process): otherwise a client could precompute keys that crowd another
 * client's entry out of its bucket and reset its count. */
TEST(bucket_placement_is_seeded)
{
    struct bw_rate_table *a = mk(1024), *b = mk(1024);
    int same = 0;
    for (uint64_t k = 0; k < 64; k++) {
        CHECK(bw_rate_table_bucket_of(a, k) < 256);
        same += bw_rate_table_bucket_of(a, k) == bw_rate_table_bucket_of(b, k);
    }
    CHECK(same < 64);
    bw_rate_table_free(a);
    bw_rate_table_free(b);
}

struct worker_arg {
    struct bw_rate_table *t;
    int allowed;
};

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    uint64_t ra;
    for (int i = 0; i < 20000; i++)
        if (bw_rate_table_hit(a->t, 5, 10000, 60000, 100, &ra) == BW_RATE_UNDER)
            a->allowed++;
    return NULL;
}

TEST(workers_share_one_exact_count)
{
    struct bw_rate_table *t = mk(1024);
    struct worker_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct worker_arg){.t = t, .allowed = 0};
        CHECK_INT_EQ(pthread_create(&th[i], NULL, hammer, &a[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += a[i].allowed;
    }
    CHECK_INT_EQ(total, 10000);
    bw_rate_table_free(t);
}

int main(void)
{
    RUN(allows_exactly_the_limit_in_one_window);
    RUN(keys_are_independent);
    RUN(a_worker_behind_the_window_boundary_does_not_reset_the_count);
    RUN(sliding_window_weighs_the_previous_window);
    RUN(retry_after_is_when_the_next_request_fits);
    RUN(full_bucket_evicts_the_least_recently_active_key);
    RUN(table_size_limits);
    RUN(a_reference_keeps_the_counts_after_the_first_owner_lets_go);
    RUN(bucket_placement_is_seeded);
    RUN(workers_share_one_exact_count);
    return t_done();
}
