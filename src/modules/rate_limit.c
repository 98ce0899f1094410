/* Shared sliding-window rate counters (rate_limit.h). One small spinlock per
 * bucket: an update is a handful of loads and stores, so a worker that finds
 * the bucket taken spins for nanoseconds; buckets are cache-line aligned so
 * workers touching different keys never share a line. */
#include "modules/rate_limit.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct entry {
    uint64_t key;
    uint64_t window; /* now / period of the current window; 0 = empty slot */
    uint32_t cur;
    uint32_t prev;
};

struct bucket {
    alignas(64) atomic_flag lock;
    struct entry e[BW_RATE_TABLE_WAYS];
};

struct bw_rate_table {
    size_t nbuckets; /* power of two */
    uint64_t seed;
    atomic_size_t refs;
    struct bucket *buckets;
};

static size_t buckets_for(size_t entries)
{
    size_t nb = 1;
    while (nb * BW_RATE_TABLE_WAYS < entries)
        nb <<= 1;
    return nb;
}

size_t bw_rate_table_capacity_for(size_t entries)
{
    return buckets_for(entries) * BW_RATE_TABLE_WAYS;
}

/* getrandom(2) does not block once the kernel's pool is ready, which it is
 * long before a server starts; should it fail, the clock still makes the
 * seed differ from run to run. */
static uint64_t new_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
    }
    return s;
}

bw_status bw_rate_table_new(size_t entries, struct bw_rate_table **ret, bw_error *err)
{
    if (entries < BW_RATE_TABLE_MIN_ENTRIES || entries > BW_RATE_TABLE_MAX_ENTRIES)
        return bw_error_set(err, "rate-limit table size %zu out of range (%d..%d entries)", entries,
                            BW_RATE_TABLE_MIN_ENTRIES, BW_RATE_TABLE_MAX_ENTRIES);
    size_t nb = buckets_for(entries);
    struct bw_rate_table *t = calloc(1, sizeof *t);
    struct bucket *b = aligned_alloc(alignof(struct bucket), nb * sizeof *b);
    if (!t || !b) {
        free(t);
        free(b);
        return bw_error_set(err, "out of memory for a %zu-entry rate-limit table", entries);
    }
    memset(b, 0, nb * sizeof *b);
    for (size_t i = 0; i < nb; i++)
        atomic_flag_clear(&b[i].lock);
    t->nbuckets = nb;
    t->buckets = b;
    t->seed = new_seed();
    atomic_init(&t->refs, 1);
    *ret = t;
    return BW_OK;
}

struct bw_rate_table *bw_rate_table_ref(struct bw_rate_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

struct bw_rate_table *bw_rate_table_free(struct bw_rate_table *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        free(t->buckets);
        free(t);
    }
    return NULL;
}

size_t bw_rate_table_capacity(const struct bw_rate_table *t)
{
    return t->nbuckets * BW_RATE_TABLE_WAYS;
}

/* Finds key's entry, or takes an empty one, or evicts the least recently
 * active one (the oldest window). */
static struct entry *slot_for(struct bucket *b, uint64_t key)
{
    struct entry *victim = &b->e[0];
    for (size_t i = 0; i < BW_RATE_TABLE_WAYS; i++) {
        struct entry *e = &b->e[i];
        if (e->window != 0 && e->key == key)
            return e;
        if (e->window < victim->window)
            victim = e;
    }
    *victim = (struct entry){.key = key, .window = 0, .cur = 0, .prev = 0};
    return victim;
}

/* Whole seconds, at least 1, until prev * (P - e) / P + cur + 1 <= limit. */
static uint64_t retry_after(uint64_t prev, uint64_t cur, uint64_t limit, uint64_t period,
                            uint64_t elapsed)
{
    double P = (double)period, wait_ms;
    if (cur + 1 <= limit) {
        /* This window: the previous one's weight must shrink enough. */
        double need = P - (double)(limit - 1 - cur) * P / (double)prev;
        wait_ms = need - (double)elapsed;
    } else {
        /* Next window, where this one becomes the previous. */
        double into_next = P - (double)(limit - 1) * P / (double)cur;
        wait_ms = (P - (double)elapsed) + into_next;
    }
    uint64_t s = (uint64_t)((wait_ms + 999.0) / 1000.0);
    return s < 1 ? 1 : s;
}

size_t bw_rate_table_bucket_of(const struct bw_rate_table *t, uint64_t key)
{
    /* The low bits pick the bucket; mix with the seed first, so keys
     * differing only in high bits spread too and nobody outside can tell
     * which keys share a bucket. */
    uint64_t h = key ^ t->seed;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return (size_t)(h & (t->nbuckets - 1));
}

enum bw_rate_decision bw_rate_table_hit(struct bw_rate_table *t, uint64_t key, uint64_t requests,
                                        uint64_t period_ms, uint64_t now_ms,
                                        uint64_t *retry_after_s)
{
    /* Windows are numbered from 1 so that 0 marks an empty slot. */
    uint64_t window = now_ms / period_ms + 1;
    uint64_t elapsed = now_ms % period_ms;
    struct bucket *b = &t->buckets[bw_rate_table_bucket_of(t, key)];

    while (atomic_flag_test_and_set_explicit(&b->lock, memory_order_acquire))
        ;
    struct entry *e = slot_for(b, key);
    if (e->window > window) {
        /* A worker whose clock (read once per loop iteration) is behind the
         * one that opened this window: counted in that window, at its
         * start, rather than taking the entry back to an empty past one. */
        window = e->window;
        elapsed = 0;
    }
    if (e->window != window) {
        /* Roll forward: the window just ended becomes the previous one; an
         * older one counts for nothing. */
        e->prev = (e->window + 1 == window) ? e->cur : 0;
        e->cur = 0;
        e->window = window;
    }
    uint64_t prev = e->prev, cur = e->cur;
    /* Integer form of prev * (P - elapsed) / P + cur + 1 > requests. */
    bool over = prev * (period_ms - elapsed) + (cur + 1) * period_ms > requests * period_ms;
    if (!over && e->cur < UINT32_MAX)
        e->cur++;
    atomic_flag_clear_explicit(&b->lock, memory_order_release);

    if (!over)
        return BW_RATE_UNDER;
    *retry_after_s = retry_after(prev, cur, requests, period_ms, elapsed);
    return BW_RATE_OVER;
}
