/* Server selection: smooth weighted round robin (the nginx algorithm: every
 * pick adds each server's weight to its running score and takes the highest,
 * which spreads a server's turns evenly instead of in bursts), least
 * connections weighted by weight, and consistent hashing on a ring of virtual
 * nodes, so adding one server to n moves about 1/(n+1) of the keys. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/tls.h"
#include "proxy/upstream.h"

enum { VNODES_PER_WEIGHT = 160 };

uint32_t bw_hash32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    /* FNV alone clusters on short similar keys; mix (murmur3 fmix32). */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int ring_cmp(const void *a, const void *b)
{
    const struct bw_ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->server < y->server ? -1 : (x->server > y->server);
}

/* The failure counters by upstream name (upstream.h). Looked up only when a
 * snapshot is built; the counters themselves are never freed, since a
 * worker may still count on a snapshot that a reload replaced. */
static struct {
    pthread_mutex_t lock;
    struct failure_slot {
        char *name;
        size_t len;
        _Atomic uint64_t n;
    } slots[BW_UPSTREAM_FAILURE_NAMES];
    size_t n;
} failures = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic uint64_t *failure_counter(bw_slice name)
{
    _Atomic uint64_t *c = NULL;
    pthread_mutex_lock(&failures.lock);
    for (size_t i = 0; !c && i < failures.n; i++) {
        struct failure_slot *sl = &failures.slots[i];
        if (bw_slice_eq(bw_slice_make(sl->name, sl->len), name))
            c = &sl->n;
    }
    if (!c && failures.n < BW_UPSTREAM_FAILURE_NAMES) {
        char *copy = malloc(name.len + 1);
        if (copy) {
            memcpy(copy, name.ptr, name.len);
            copy[name.len] = '\0';
            struct failure_slot *sl = &failures.slots[failures.n++];
            sl->name = copy;
            sl->len = name.len;
            c = &sl->n;
        }
    }
    pthread_mutex_unlock(&failures.lock);
    return c;
}

bw_status bw_upstream_rt_init(struct bw_upstream_rt *u, const struct bw_config_upstream *cfg,
                              bw_error *err)
{
    memset(u, 0, sizeof *u);
    u->cfg = cfg;
    u->failures = failure_counter(cfg->name);
    if (!u->failures)
        u->failures = &u->own_failures; /* counts from zero, but counts */
    u->nservers = cfg->nservers;
    u->servers = calloc(cfg->nservers, sizeof *u->servers);
    if (!u->servers)
        return bw_error_set(err, "out of memory for upstream %.*s", (int)cfg->name.len,
                            cfg->name.ptr);
    for (size_t i = 0; i < cfg->nservers; i++) {
        const struct sockaddr_storage *ss = &cfg->servers[i].addr.ss;
        u->servers[i].cfg = &cfg->servers[i];
        const void *a = ss->ss_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (!inet_ntop(ss->ss_family, a, u->servers[i].ip, sizeof u->servers[i].ip))
            u->servers[i].ip[0] = '\0';
    }
    if (cfg->balance != BW_BALANCE_HASH)
        return BW_OK;
    size_t total = 0;
    for (size_t i = 0; i < cfg->nservers; i++)
        total += (size_t)cfg->servers[i].weight * VNODES_PER_WEIGHT;
    u->ring = calloc(total, sizeof *u->ring);
    if (!u->ring) {
        free(u->servers);
        return bw_error_set(err, "out of memory for the hash ring of upstream %.*s",
                            (int)cfg->name.len, cfg->name.ptr);
    }
    /* Points are derived from the server's address, not its position, so a
     * server keeps its points when others are added or removed. */
    for (size_t i = 0; i < cfg->nservers; i++) {
        const char *text = cfg->servers[i].addr.text;
        size_t tl = strnlen(text, sizeof cfg->servers[i].addr.text);
        size_t n = (size_t)cfg->servers[i].weight * VNODES_PER_WEIGHT;
        for (size_t v = 0; v < n; v++) {
            char key[96];
            memcpy(key, text, tl);
            key[tl] = '#';
            size_t kl = tl + 1;
            size_t x = v;
            do {
                key[kl++] = (char)('0' + x % 10);
                x /= 10;
            } while (x);
            u->ring[u->ring_len].hash = bw_hash32(key, kl);
            u->ring[u->ring_len].server = (uint32_t)i;
            u->ring_len++;
        }
    }
    qsort(u->ring, u->ring_len, sizeof *u->ring, ring_cmp);
    return BW_OK;
}

void bw_upstream_rt_done(struct bw_upstream_rt *u)
{
    bw_tls_client_free(u->tls);
    free(u->servers);
    free(u->ring);
    u->servers = NULL;
    u->ring = NULL;
}

bw_status bw_upstream_local_init(struct bw_upstream_local *l, struct bw_upstream_rt *rt,
                                 bw_error *err)
{
    memset(l, 0, sizeof *l);
    l->rt = rt;
    l->rr_current = calloc(rt->nservers, sizeof *l->rr_current);
    l->active = calloc(rt->nservers, sizeof *l->active);
    l->idle = calloc(rt->nservers, sizeof *l->idle);
    if (!l->rr_current || !l->active || !l->idle) {
        bw_upstream_local_done(l);
        return bw_error_set(err, "out of memory for upstream state");
    }
    return BW_OK;
}

void bw_upstream_local_done(struct bw_upstream_local *l)
{
    free(l->rr_current);
    free(l->active);
    free(l->idle);
    l->rr_current = NULL;
    l->active = NULL;
    l->idle = NULL;
}

enum avail { AV_NO, AV_EJECTED, AV_YES };

static enum avail availability(const struct bw_upstream_local *l, size_t i, uint64_t now,
                               const struct bw_tried *tried)
{
    const struct bw_upstream_rt *u = l->rt;
    if (bw_tried_has(tried, i))
        return AV_NO;
    /* At max_conns (this worker's requests in flight there, as nginx counts
     * without a shared zone: no count shared between workers on the hot
     * path), a server takes no more until one ends. */
    uint32_t max = u->cfg->servers[i].max_conns;
    if (max && l->active[i] >= max)
        return AV_NO;
    const struct bw_server_rt *s = &u->servers[i];
    if (atomic_load_explicit(&s->hc_down, memory_order_relaxed))
        return AV_NO;
    uint64_t until = atomic_load_explicit(&s->ejected_until, memory_order_relaxed);
    if (until > now)
        return AV_EJECTED;
    return AV_YES;
}

static long pick_rr(struct bw_upstream_local *l, uint64_t now, const struct bw_tried *tried,
                    enum avail want)
{
    struct bw_upstream_rt *u = l->rt;
    long best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < u->nservers; i++) {
        if (availability(l, i, now, tried) < want)
            continue;
        int64_t w = u->cfg->servers[i].weight;
        l->rr_current[i] += w;
        total += w;
        if (best < 0 || l->rr_current[i] > l->rr_current[best])
            best = (long)i;
    }
    if (best >= 0)
        l->rr_current[best] -= total;
    return best;
}

/* The fewest active requests per weight; among servers tied there (every
 * idle server, at low load), smooth weighted round robin, as nginx does: a
 * weight still means a share when nothing is queued anywhere, so a server of
 * weight 1 beside one of weight 99 (a canary) gets 1 % of the traffic, not
 * half of it. */
static long pick_least_conn(struct bw_upstream_local *l, uint64_t now, const struct bw_tried *tried,
                            enum avail want)
{
    struct bw_upstream_rt *u = l->rt;
    long best = -1;
    size_t n = u->nservers;
    for (size_t i = 0; i < n; i++) {
        if (availability(l, i, now, tried) < want)
            continue;
        /* active/weight compared without division. */
        if (best < 0 || (uint64_t)l->active[i] * u->cfg->servers[best].weight <
                            (uint64_t)l->active[best] * u->cfg->servers[i].weight)
            best = (long)i;
    }
    if (best < 0)
        return -1;
    uint64_t best_active = l->active[best], best_weight = u->cfg->servers[best].weight;
    long pick = -1;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (availability(l, i, now, tried) < want ||
            (uint64_t)l->active[i] * best_weight != best_active * u->cfg->servers[i].weight)
            continue;
        int64_t w = u->cfg->servers[i].weight;
        l->rr_current[i] += w;
        total += w;
        if (pick < 0 || l->rr_current[i] > l->rr_current[pick])
            pick = (long)i;
    }
    l->rr_current[pick] -= total;
    return pick;
}

static long pick_hash(struct bw_upstream_local *l, uint64_t now, uint32_t key,
                      const struct bw_tried *tried, enum avail want)
{
    struct bw_upstream_rt *u = l->rt;
    if (u->ring_len == 0)
        return -1;
    size_t lo = 0, hi = u->ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->ring[mid].hash < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < u->ring_len; k++) {
        size_t i = u->ring[(lo + k) % u->ring_len].server;
        if (availability(l, i, now, tried) >= want)
            return (long)i;
    }
    return -1;
}

bool bw_balance_any_full(const struct bw_upstream_local *l)
{
    for (size_t i = 0; i < l->rt->nservers; i++) {
        uint32_t max = l->rt->cfg->servers[i].max_conns;
        if (max && l->active[i] >= max)
            return true;
    }
    return false;
}

long bw_balance_pick(struct bw_upstream_local *l, uint64_t now_ms, uint32_t key,
                     const struct bw_tried *tried, bool *ret_ejected)
{
    /* First among servers in good standing; if none is left, among the
     * passively ejected ones, since a guess that may succeed beats a certain
     * error (and a success brings the server back at once), but one such
     * guess per request: when every server is out, a request that tried
     * each in turn would cost up to nservers connect timeouts, and every
     * client would wait that long while requests pile up. With one, a
     * request waits at most one connect_timeout (Envoy's panic mode makes
     * one attempt too; nginx answers 502 "no live upstreams" at once). A
     * request whose server in good standing failed keeps its one fallback.
     * A server down by health check is never picked: that verdict is
     * fresh, a passive one is only a suspicion. */
    int passes = tried->ejected ? 1 : 2;
    for (int pass = 0; pass < passes; pass++) {
        enum avail want = pass == 0 ? AV_YES : AV_EJECTED;
        long i = -1;
        switch (l->rt->cfg->balance) {
        case BW_BALANCE_ROUND_ROBIN:
            i = pick_rr(l, now_ms, tried, want);
            break;
        case BW_BALANCE_LEAST_CONN:
            i = pick_least_conn(l, now_ms, tried, want);
            break;
        case BW_BALANCE_HASH:
            i = pick_hash(l, now_ms, key, tried, want);
            break;
        case BW_BALANCE__COUNT:
            break;
        }
        if (i >= 0) {
            if (ret_ejected)
                *ret_ejected = pass == 1;
            return i;
        }
    }
    return -1;
}

void bw_server_report_failure(struct bw_upstream_rt *u, size_t server, uint64_t now_ms,
                              const char *why)
{
    struct bw_server_rt *s = &u->servers[server];
    atomic_fetch_add_explicit(u->failures, 1, memory_order_relaxed);
    uint32_t max = u->cfg->max_fails;
    uint32_t fails = atomic_fetch_add(&s->fails, 1) + 1;
    if (max == 0 || fails < max)
        return;
    atomic_store(&s->fails, 0);
    uint64_t until = now_ms + u->cfg->fail_timeout_ms;
    uint64_t prev = atomic_exchange(&s->ejected_until, until);
    if (prev <= now_ms)
        BW_WARNF("upstream %.*s server %s is down: ejected for %llu ms after %u consecutive "
                 "failures (last: %s)",
                 (int)u->cfg->name.len, u->cfg->name.ptr, s->cfg->addr.text,
                 (unsigned long long)u->cfg->fail_timeout_ms, fails, why);
}

uint64_t bw_upstream_failures(const struct bw_upstream_rt *u)
{
    return atomic_load_explicit(u->failures, memory_order_relaxed);
}

void bw_server_report_success(struct bw_upstream_rt *u, size_t server)
{
    struct bw_server_rt *s = &u->servers[server];
    /* Read first: the common case writes nothing to the shared line. */
    if (atomic_load_explicit(&s->fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
    if (atomic_load_explicit(&s->ejected_until, memory_order_relaxed) != 0) {
        if (atomic_exchange(&s->ejected_until, 0) != 0)
            BW_INFOF("upstream %.*s server %s is up again: a request succeeded",
                     (int)u->cfg->name.len, u->cfg->name.ptr, s->cfg->addr.text);
    }
}
