/* Upstreams at run time. The shared part (bw_upstream_rt, one per configured
 * upstream, read by every worker) holds each server's health as atomics and
 * the consistent-hash ring; it is written only on failures and by the health
 * checker, never per successful request. The per-worker part
 * (bw_upstream_local) holds balancer state, in-flight counts and the idle
 * keepalive pools, touched by its worker alone. */
#ifndef BW_PROXY_UPSTREAM_H
#define BW_PROXY_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct bw_upconn;

struct bw_tls_client; /* net/tls.h */

struct bw_server_rt {
    const struct bw_config_server *cfg;
    char ip[48];            /* the address without its port: verified by upstream TLS without sni */
    _Atomic uint32_t fails; /* consecutive passive failures */
    _Atomic uint64_t ejected_until; /* monotonic ms; 0 when not ejected */
    _Atomic bool hc_down;           /* verdict of the active health check */
};

struct bw_ring_point {
    uint32_t hash;
    uint32_t server;
};

struct bw_upstream_rt {
    const struct bw_config_upstream *cfg;
    struct bw_server_rt *servers;
    size_t nservers;
    struct bw_ring_point *ring; /* sorted by hash; hash balancing only */
    size_t ring_len;
    struct bw_tls_client *tls; /* when cfg->has_tls (set by the snapshot's builder) */
    /* Failures reported for this upstream (bulwark_upstream_failures_total):
     * the process's counter for its name, shared by every snapshot that has
     * an upstream of that name, so a reload neither resets it nor loses what
     * requests still on the old snapshot report; own_failures only when the
     * process has met too many names (BW_UPSTREAM_FAILURE_NAMES). */
    _Atomic uint64_t *failures;
    _Atomic uint64_t own_failures;
};

/* Upstream names the process keeps a failure counter for, over every
 * configuration it has run; /metrics shows the running configuration's. */
enum { BW_UPSTREAM_FAILURE_NAMES = 4 * BW_CONFIG_MAX_UPSTREAMS };

/* Servers already tried for one request (at most 256 per upstream), and
 * whether one of them was passively ejected when it was picked: a request
 * gets one such attempt at most (bw_balance_pick). */
struct bw_tried {
    uint64_t bits[4];
    bool ejected;
};

static inline bool bw_tried_has(const struct bw_tried *t, size_t i)
{
    return (t->bits[i / 64] >> (i % 64)) & 1u;
}
static inline void bw_tried_add(struct bw_tried *t, size_t i)
{
    t->bits[i / 64] |= 1ull << (i % 64);
}

struct bw_upstream_local {
    struct bw_upstream_rt *rt;
    int64_t *rr_current;     /* smooth weighted round robin state, per server */
    uint32_t *active;        /* requests in flight, per server */
    struct bw_upconn **idle; /* per server: most recently pooled first */
    uint32_t nidle;          /* idle connections over all servers */
};

bw_status bw_upstream_rt_init(struct bw_upstream_rt *u, const struct bw_config_upstream *cfg,
                              bw_error *err) BW_MUST_CHECK;
void bw_upstream_rt_done(struct bw_upstream_rt *u);

bw_status bw_upstream_local_init(struct bw_upstream_local *l, struct bw_upstream_rt *rt,
                                 bw_error *err) BW_MUST_CHECK;
void bw_upstream_local_done(struct bw_upstream_local *l);

/* Chooses a server not yet in *tried. key is the hash of the request's
 * hash(<field>) value (ignored by the other policies). Returns the server
 * index, or -1 when no server may be used: every server tried, every
 * untried one down by health check or at its max_conns, or only passively
 * ejected ones left and tried->ejected set. A passively ejected server is picked only when no
 * other is left; *ret_ejected (when not NULL) says whether it was one, and
 * the caller sets tried->ejected once it makes that attempt. */
long bw_balance_pick(struct bw_upstream_local *l, uint64_t now_ms, uint32_t key,
                     const struct bw_tried *tried, bool *ret_ejected);

/* Whether a server of the upstream is at its max_conns in this worker: what
 * a request no server would take is told (503, "at max_conns"). */
bool bw_balance_any_full(const struct bw_upstream_local *l);

/* Passive health: a connect error, a timeout or an invalid response from
 * the server. Also counts it for the upstream (bw_upstream_failures). */
void bw_server_report_failure(struct bw_upstream_rt *u, size_t server, uint64_t now_ms,
                              const char *why);
/* Failures reported for u's upstream name since the process started. */
uint64_t bw_upstream_failures(const struct bw_upstream_rt *u);
void bw_server_report_success(struct bw_upstream_rt *u, size_t server);

/* 32-bit hash for consistent hashing (FNV-1a then a finaliser). */
uint32_t bw_hash32(const void *data, size_t len);

#endif
