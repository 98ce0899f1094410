/* The proxy at run time.
 *
 * Everything loaded from configuration is one immutable snapshot
 * (bw_snapshot: the config, the upstreams' shared state, the compiled rules),
 * published by the control thread with an atomic pointer swap (bw_runtime).
 * Each worker keeps its own view of a snapshot (bw_wsnap: balancer state,
 * keepalive pools, rules scratch and counters). A session pins the view it
 * is using; between requests it moves to the worker's current one. A worker
 * adopts a newly published snapshot at its next accept or within
 * BW_ADOPT_MS, and frees its old view once nothing pins it; the snapshot
 * itself is freed when the last worker lets go of it. So a reload never
 * blocks a worker, never drops a connection, and a request keeps the
 * snapshot it started with. */
#ifndef BW_PROXY_PROXY_H
#define BW_PROXY_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "http/http1.h"
#include "modules/bot_module.h"
#include "modules/rules.h"
#include "net/worker.h"
#include "proxy/access_log.h"

struct bw_tls_ctx; /* net/tls.h */
#include "proxy/upstream.h"

struct request;

struct bw_snapshot {
    _Atomic uint32_t refs;            /* the runtime's (while published) + one per worker view */
    uint64_t generation;              /* 1 for the first, +1 per accepted reload */
    int64_t loaded_at;                /* realtime seconds */
    struct bw_config *cfg;            /* owned */
    struct bw_upstream_rt *upstreams; /* parallel to cfg->upstreams */
    struct bw_http_limits limits;
    bool needs_path;          /* hash(http.request.uri.path) reads the normalised path */
    struct bw_rules_rt rules; /* routes and rulesets, compiled */
    struct bw_bot_rt bot;     /* the bot_score module */
    struct bw_tls_ctx **tls;  /* parallel to cfg->listen: valid where has_tls */
    /* Responses by route and status class, one row per worker (each writes
     * only its own row; rows are cache-line aligned): row w, route i, class
     * c at route_counts[w * route_stride + i * 6 + c]; route nroutes is
     * "no route" (answered before routing). */
    _Atomic uint64_t *route_counts;
    size_t route_stride;
    size_t nworkers;
    /* For /status: bw_file_hash of the bytes each artifact was parsed
     * from (the bytes themselves stay with the config and the modules
     * until bw_snapshot_save_lkg). */
    uint64_t config_hash;
    uint64_t *ruleset_hashes; /* one per loaded ruleset file */
    size_t nrulesets_loaded;  /* 0 when the rules did not load */
};

/* Builds a snapshot from a loaded config, which it takes over (freed with
 * the snapshot, or at once on failure). report receives what went wrong;
 * BW_OK with rules.failed set means the rulesets did not load and the rules
 * module's on_error applies (report says why). use_lkg (at start only):
 * rulesets that do not load may be replaced by their last-known-good copies
 * (bw_rules_rt_load_ex). rate_from: the running snapshot's rate-limit
 * table, kept by a reload (NULL at start). running: the running snapshot
 * at a reload (NULL at start), for bw_tls_contexts_load. refs starts at 1. */
bw_status bw_snapshot_new(struct bw_config *cfg, uint64_t generation, bool use_lkg,
                          struct bw_bot_running running_bot, struct bw_rate_table *rate_from,
                          const struct bw_snapshot *running, struct bw_snapshot **ret, char *report,
                          size_t cap) BW_MUST_CHECK;
/* Reads and checks every TLS listener's certificates and keys into one
 * context per listener (*ret parallel to cfg->listen, valid where has_tls;
 * NULL when no listener has TLS). A file that cannot be read or a pair that
 * is not usable fails the whole set: report says which, with the config's
 * file:line:col. A certificate outside its validity period is refused only
 * at a reload (running set) that does not serve that very file already; at
 * start (running NULL), or when it is the running one, it loads with a
 * warning, as nginx, HAProxy and Envoy serve it. */
bw_status bw_tls_contexts_load(const struct bw_config *cfg, const struct bw_snapshot *running,
                               struct bw_tls_ctx ***ret, char *report, size_t cap) BW_MUST_CHECK;
void bw_tls_contexts_free(const struct bw_config *cfg, struct bw_tls_ctx **tls);

/* Saves every artifact of s as last-known-good (state_dir/lkg/), from the
 * very bytes its loaders parsed and checked, then frees those bytes (a
 * snapshot keeps them only until here). Nothing is saved when s has no
 * state_dir, when a module did not load or loaded from its copies, or when
 * config_from_lkg (the config itself came from its copy); BW_OK then. On
 * failure err says which copy could not be written (the previous copies
 * stay). Control thread, once per snapshot, before it is published or
 * after: workers never read the bytes. */
bw_status bw_snapshot_save_lkg(struct bw_snapshot *s, bool config_from_lkg,
                               bw_error *err) BW_MUST_CHECK;

/* What the running snapshot knows of its servers' health, carried into the
 * next one for every server that stays (same upstream name, same address),
 * as Envoy keeps a host's health across a cluster update: a reload must not
 * send traffic to a server the checks took out, nor to one passively
 * ejected, until they find it again. Active verdicts carry only when both
 * configurations check the upstream; the new checker needs `rise` passes
 * to bring a carried-down server back. Control thread, before `to` is
 * published. */
void bw_snapshot_carry_health(struct bw_snapshot *to, const struct bw_snapshot *from,
                              uint64_t now_ms);

/* Drops one reference; the last one frees the snapshot. Any thread. */
void bw_snapshot_unref(struct bw_snapshot *s);

/* Settings that only a restart changes (the sockets, the threads, the
 * buffers sized at start): a reload that changes one of them is refused
 * with the reason. */
bw_status bw_snapshot_reloadable(const struct bw_config *running, const struct bw_config *next,
                                 bw_error *err) BW_MUST_CHECK;

struct bw_runtime {
    _Atomic(struct bw_snapshot *) published;
    pthread_mutex_t lock;             /* taking a reference vs. replacing */
    struct bw_access_log *access_log; /* NULL when access_log: off */
    const struct bw_config *boot;     /* the first snapshot's config: restart-only settings */
};

/* Publishes snap (taking the caller's reference) as the first snapshot. */
void bw_runtime_init(struct bw_runtime *rt, struct bw_snapshot *snap);
/* Replaces the published snapshot (taking the caller's reference); the old
 * one lives on while workers still use it. */
void bw_runtime_publish(struct bw_runtime *rt, struct bw_snapshot *snap);
/* A new reference to the published snapshot. */
struct bw_snapshot *bw_runtime_acquire(struct bw_runtime *rt);
void bw_runtime_done(struct bw_runtime *rt);

/* Small buffers hold nearly every request and response; a head that does not
 * fit moves to a large one sized by limits.header_bytes. */
enum { BW_SMALL_BUF = 16 * 1024 };

/* How often an idle worker looks for a new snapshot and frees old views. */
enum { BW_ADOPT_MS = 250 };

/* Latency histogram bounds (ms) for /metrics. Times come from the loop's
 * clock, read once per event-loop iteration: a request served within one
 * iteration counts as 0 ms, so the finest bucket is "within a millisecond
 * or so", which is what an operator's alerting uses. */
enum { BW_LATENCY_BUCKETS = 12 };
extern const uint64_t bw_latency_le_ms[BW_LATENCY_BUCKETS];

/* A worker's counters for /metrics (see bw_rules_stats for how they are
 * written and read). For the life of the process, across reloads. */
struct bw_worker_stats {
    _Atomic uint64_t responses[6];                    /* [0] other, [1..5] 1xx..5xx */
    _Atomic uint64_t latency[BW_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t latency_sum_ms;
    _Atomic uint64_t accepted;  /* client connections */
    _Atomic uint64_t closed;    /* of those, closed (open = accepted - closed) */
    _Atomic uint64_t reclaimed; /* of those, idle ones closed for a new one at max_connections */
    _Atomic uint64_t upstream_retries; /* attempts after a request's first */
    _Atomic uint64_t bot_scored;
    _Atomic uint64_t bot_failures[BW_ON_ERROR__COUNT]; /* by policy */
    _Atomic uint64_t bot_killed;
    _Atomic uint64_t tls_handshakes; /* completed */
    _Atomic uint64_t tls_resumed;    /* of those, resumed from a ticket */
    _Atomic uint64_t tls_failures;   /* failed or abandoned handshakes */
    _Atomic uint64_t tls_timeouts;   /* of those, stalled past the header timeout */
    _Atomic uint64_t tls_plain_http; /* plain HTTP sent to a TLS port: answered 400 */
    struct bw_rules_stats rules;
};

/* A worker's view of one snapshot. */
struct bw_wsnap {
    struct bw_snapshot *snap;      /* one reference held */
    struct bw_upstream_local *ups; /* parallel to snap->upstreams */
    struct bw_rules_worker rules;
    bool has_bot; /* snap->bot has a model */
    struct bw_bot_worker bot;
    uint32_t pins; /* sessions and upstream connections using it */
    struct bw_wsnap *next_retired;
};

struct bw_proxy_worker {
    struct bw_runtime *rt;
    struct bw_worker *w;
    struct bw_wsnap *cur;     /* the view new requests use */
    struct bw_wsnap *retired; /* older views, freed when unpinned */
    struct bw_timer adopt_timer;
    struct bw_buf_pool small;
    struct bw_buf_pool large;
    struct bw_http_header *scratch_headers; /* limits.headers entries */
    char *scratch_path;                     /* normalised path of the current request */
    size_t scratch_path_cap;
    struct bw_access_ring *log_ring; /* NULL when logging is off */
    struct bw_session *sessions;     /* every open session (for drain) */
    /* Sessions holding no request (session.c: reclaimable), most recently
     * idle first: at limits.max_connections the last one makes room. */
    struct bw_session *idle_head, *idle_tail;
    struct request *free_requests; /* per-request state for reuse */
    size_t nfree_requests;
    uint64_t adopted; /* snapshots adopted after the first */
    struct bw_worker_stats stats;
    char log_time[32]; /* cached ISO-8601 second */
    int64_t log_time_sec;
};

bw_status bw_proxy_worker_init(struct bw_proxy_worker *pw, struct bw_runtime *rt,
                               struct bw_worker *w, bw_error *err) BW_MUST_CHECK;
void bw_proxy_worker_done(struct bw_proxy_worker *pw);

/* The view new requests should use: adopts a newly published snapshot
 * first (when that fails, the current view stays and a later call retries). */
struct bw_wsnap *bw_proxy_current(struct bw_proxy_worker *pw);
static inline struct bw_wsnap *bw_wsnap_pin(struct bw_wsnap *ws)
{
    ws->pins++;
    return ws;
}
/* Unpins; frees retired views that nothing pins any more. */
void bw_wsnap_unpin(struct bw_proxy_worker *pw, struct bw_wsnap *ws);

/* bw_worker callbacks. */
void bw_proxy_start(struct bw_worker *w);
void bw_proxy_accept(struct bw_worker *w, size_t listener, int fd,
                     const struct sockaddr_storage *peer, socklen_t peer_len);
void bw_proxy_drain(struct bw_worker *w);
bool bw_proxy_reclaim(struct bw_worker *w);
/* On the worker thread once its loop ended: closes what is left. */
void bw_proxy_exit(struct bw_worker *w);

#endif
