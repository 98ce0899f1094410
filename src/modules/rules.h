/* The rules module: the rulesets named in the config and the routes' match
 * expressions, compiled into one rulebook (rules/ruleset.h), run for every
 * request before routing (request phase) and before the response head goes
 * out (response phase).
 *
 * Loading never takes the process down for a bad ruleset: when a ruleset
 * does not load, the book keeps only the routes, the module is marked
 * failed and its on_error policy applies to every request (open: no rule
 * runs, the request goes on; closed: the request is answered with the
 * module's error status). `bulwark check` reports the same errors and
 * exits 1. */
#ifndef BW_MODULES_RULES_H
#define BW_MODULES_RULES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/arena.h"
#include "base/error.h"
#include "config/config.h"
#include "http/http1.h"
#include "modules/rate_limit.h"
#include "proxy/headers.h"
#include "rules/ruleset.h"

/* Bytes one request's rules may allocate (lower(), concat(), joined
 * headers, the normalised path, the effects list). Past it, values being
 * computed are unknown and the module counts a failure. */
#define BW_RULES_REQUEST_ARENA_CAP ((size_t)256 * 1024)
#define BW_RULES_REQUEST_ARENA_BLOCK ((size_t)8 * 1024)

/* Shared by every worker; immutable after load except the atomics. */
struct bw_rules_rt {
    bw_arena arena;           /* rulesets and the book */
    struct bw_rulebook *book; /* always built: the routes live in it */
    struct bw_killset kills;
    struct bw_rate_table *rate; /* when the book has rate limits; one reference */
    bool enabled;               /* modules.rules is configured */
    _Atomic bool killed;        /* killswitch module:rules: no rule runs (routes still do) */
    bool failed;                /* its rulesets did not load: on_error applies */
    bool from_lkg;              /* loaded from last-known-good copies (at start only) */
    /* The ruleset files the book was built from, parallel to the config's
     * rulesets (nfiles 0 when they did not load): their hashes for /status,
     * their bytes until those are saved as last-known-good. Only the
     * control thread touches them. */
    struct bw_file_bytes *files;
    size_t nfiles;
    enum bw_on_error on_error;
    uint16_t error_status;
    _Atomic uint64_t *matches; /* per global rule index: times it fired (all workers) */
    bool has_request_rules;    /* some top-level request-phase ruleset */
    bool has_response_rules;
    /* Nothing to evaluate per request (no rules, not failed, and the first
     * route has no match): every request takes route 0 and the proxy skips
     * building a view at all. */
    bool trivial;
};

/* Loads every ruleset of cfg and builds the book. BW_OK with rr->failed set
 * when the rulesets did not load (report says why); BW_ERR when not even the
 * routes could be compiled (report says why; nothing to serve with).
 * report receives every problem, one "file:line:col: error: ..." per line. */
bw_status bw_rules_rt_load(struct bw_rules_rt *rr, const struct bw_config *cfg, char *report,
                           size_t cap) BW_MUST_CHECK;
/* The same; with use_lkg (at start only), rulesets that do not load are
 * replaced, all together, by their last-known-good copies in
 * state_dir/lkg/ when every one has a copy and the copies load (from_lkg
 * set; report says what failed and that the copies are used). rate_from
 * (NULL at start) is the running snapshot's rate table: a reload keeps it,
 * and with it every rule's counters, unless the configured table size
 * changed. */
bw_status bw_rules_rt_load_ex(struct bw_rules_rt *rr, const struct bw_config *cfg, bool use_lkg,
                              struct bw_rate_table *rate_from, char *report,
                              size_t cap) BW_MUST_CHECK;
void bw_rules_rt_done(struct bw_rules_rt *rr);

/* Counters for /metrics, one set per worker for the life of the process:
 * written by that worker only (a relaxed load and store: no locked
 * instruction on the request path), read by the control thread. */
struct bw_rules_stats {
    _Atomic uint64_t verdicts[BW_RULES_PHASE__COUNT][BW_VERDICT__COUNT];
    _Atomic uint64_t failures[BW_ON_ERROR__COUNT];   /* module failures by policy */
    _Atomic uint64_t killed;                         /* requests the killed module let by */
    _Atomic uint64_t regex[BW_REGEX_OUTCOME__COUNT]; /* regex scans by how they were answered */
};

static inline void bw_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void bw_stat_inc(_Atomic uint64_t *c)
{
    bw_stat_add(c, 1);
}

/* One worker's state: regex scratch, the per-request arena, counters. */
struct bw_rules_worker {
    const struct bw_rules_rt *rr;
    bw_regex_scratch scratch;
    bw_arena arena;
    struct bw_rv_header *hdrs; /* request headers as the rules see them */
    size_t hdrs_cap;
    struct bw_rv_header *rhdrs;   /* response headers */
    struct bw_rules_stats *stats; /* the worker's, shared by its views */
};

bw_status bw_rules_worker_init(struct bw_rules_worker *w, const struct bw_rules_rt *rr,
                               size_t max_headers, struct bw_rules_stats *stats,
                               bw_error *err) BW_MUST_CHECK;
void bw_rules_worker_done(struct bw_rules_worker *w);

/* The environment rules run in on this worker: the shared rate-limit
 * table, the killswitches, this worker's match counters. */
struct bw_rules_env bw_rules_worker_env(struct bw_rules_worker *w, uint64_t now_ms);

/* A request as the rules see it. client is the resolved client address
 * (client_ip). Header views point into hq's buffer: valid while it is.
 * Clears the worker's request arena first: everything of the previous
 * request's rules is gone. */
void bw_rules_view_request(struct bw_rules_worker *w, struct bw_request_view *v,
                           const struct bw_http_request *hq, const struct sockaddr_storage *client,
                           bool ssl);

enum bw_rules_hook_kind {
    BW_RULES_HOOK_CONTINUE, /* go on: route (request phase) and apply edits */
    BW_RULES_HOOK_RESPOND,  /* answer with status/body/headers below */
    BW_RULES_HOOK_NO_ROUTE, /* request phase: no route matched: 404 */
    BW_RULES_HOOK__COUNT
};

struct bw_rules_hook {
    enum bw_rules_hook_kind kind;
    size_t route;               /* CONTINUE, request phase */
    struct bw_head_edits edits; /* CONTINUE: ops in the request arena */
    uint16_t status;            /* RESPOND */
    bool has_body;
    bw_slice body;
    char extra[4200]; /* RESPOND: Location / Retry-After lines */
    size_t extra_len;
    bool failed; /* the module failed for this request */
    /* For the access log: the rule that ended the phase, or else the last
     * one that fired (a log rule). */
    bool has_rule;
    const struct bw_ruleset *ruleset;
    const struct bw_rule *rule;
    enum bw_action_kind action;
};

/* Runs the request phase and picks the route, for a view just made by
 * bw_rules_view_request. */
void bw_rules_on_request(struct bw_rules_worker *w, const struct bw_request_view *v,
                         uint64_t now_ms, struct bw_rules_request *st, struct bw_rules_hook *out);

/* Runs the response phase. v carries the request (copied with
 * bw_rules_view_copy when the request's buffer is gone) and the response. */
void bw_rules_on_response(struct bw_rules_worker *w, struct bw_request_view *v,
                          const struct bw_http_response *hr, bw_arena *a, uint64_t now_ms,
                          struct bw_rules_request *st, struct bw_rules_hook *out);

/* Deep copy of a request view into a (for the response phase, after the
 * request head's buffer has been reused). BW_ERR when a is full. */
bw_status bw_rules_view_copy(bw_arena *a, const struct bw_request_view *in,
                             struct bw_request_view *out) BW_MUST_CHECK;

#endif
