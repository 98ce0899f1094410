/* Rate-limit counters shared by every worker of the process: a fixed-size,
 * set-associative table of sliding-window counters, so memory is bounded
 * whatever the number of distinct clients, and no worker ever waits on
 * another for longer than one bucket update.
 *
 * Each key (a 64-bit hash of the rule's identity and the request's
 * characteristics, rules/ruleset.h bw_rules_rate_key) has a counter for the current window
 * (now / period) and the previous one. The count over the sliding period is
 * estimated as Cloudflare and nginx-style limiters do:
 *     prev * (time left in the current window / period) + cur
 * A request is over the limit when that estimate + 1 exceeds `requests`;
 * requests over the limit are not counted, so a client that keeps sending
 * still gets `requests` per period through.
 *
 * When a bucket is full, the entry with the oldest window is replaced: under
 * more distinct keys than the table holds, the least recently active keys
 * lose their history first (they are then counted from zero: the limiter
 * errs towards letting traffic through, never towards blocking it). */
#ifndef BW_MODULES_RATE_LIMIT_H
#define BW_MODULES_RATE_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Named limits. Entries are 24 bytes; the default table is 1.5 MiB. */
enum {
    BW_RATE_TABLE_WAYS = 4, /* entries per bucket */
    BW_RATE_TABLE_DEFAULT_ENTRIES = 65536,
    BW_RATE_TABLE_MIN_ENTRIES = BW_RATE_TABLE_WAYS,
    BW_RATE_TABLE_MAX_ENTRIES = 1 << 24,
};

enum bw_rate_decision { BW_RATE_UNDER, BW_RATE_OVER, BW_RATE__COUNT };

struct bw_rate_table;

/* entries is rounded up to a power of two, within the limits above. The
 * bucket a key lands in depends on a random seed drawn here, so a client
 * cannot choose keys that crowd another client's entry out of its bucket.
 * The table starts with one reference. */
bw_status bw_rate_table_new(size_t entries, struct bw_rate_table **ret,
                            bw_error *err) BW_MUST_CHECK;
/* A table outlives the snapshot that made it: a reload hands it to the next
 * snapshot (one more reference), so counters survive reloads. Any thread
 * may drop a reference. */
struct bw_rate_table *bw_rate_table_ref(struct bw_rate_table *t);
/* Drops one reference, freeing the table with the last. Accepts NULL;
 * returns NULL. */
struct bw_rate_table *bw_rate_table_free(struct bw_rate_table *t);

size_t bw_rate_table_capacity(const struct bw_rate_table *t);
/* The capacity bw_rate_table_new(entries) would give. */
size_t bw_rate_table_capacity_for(size_t entries);
/* The bucket key lands in (exposed for tests). */
size_t bw_rate_table_bucket_of(const struct bw_rate_table *t, uint64_t key);

/* Counts one request for key (when under the limit) and decides. requests
 * >= 1, period_ms >= 1, now_ms monotonic. On OVER, *retry_after_s is the
 * whole seconds (>= 1) until the estimate falls back under the limit. */
enum bw_rate_decision bw_rate_table_hit(struct bw_rate_table *t, uint64_t key, uint64_t requests,
                                        uint64_t period_ms, uint64_t now_ms,
                                        uint64_t *retry_after_s);

#endif
