/* The proxy at run time: what every worker shares (bw_runtime: the config,
 * the upstreams' shared state) and what each worker owns (bw_proxy_worker:
 * buffer pools, balancer state and keepalive pools, scratch space for
 * parsing). A downstream session (session.c) runs entirely on one worker. */
#ifndef BW_PROXY_PROXY_H
#define BW_PROXY_PROXY_H

#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "http/http1.h"
#include "modules/rules.h"
#include "net/worker.h"
#include "proxy/access_log.h"
#include "proxy/upstream.h"

struct request;

struct bw_runtime {
    const struct bw_config *cfg;
    struct bw_upstream_rt *upstreams; /* parallel to cfg->upstreams */
    struct bw_http_limits limits;
    struct bw_access_log *access_log; /* NULL when access_log: off */
    bool needs_path;                  /* hash(http.request.uri.path) reads the normalised path */
    struct bw_rules_rt rules;         /* routes and rulesets, compiled */
};

bw_status bw_runtime_init(struct bw_runtime *rt, const struct bw_config *cfg,
                          bw_error *err) BW_MUST_CHECK;
void bw_runtime_done(struct bw_runtime *rt);

/* Small buffers hold nearly every request and response; a head that does not
 * fit moves to a large one sized by limits.header_bytes. */
enum { BW_SMALL_BUF = 16 * 1024 };

struct bw_proxy_worker {
    struct bw_runtime *rt;
    struct bw_worker *w;
    struct bw_buf_pool small;
    struct bw_buf_pool large;
    struct bw_upstream_local *ups;          /* parallel to rt->upstreams */
    struct bw_http_header *scratch_headers; /* limits.headers entries */
    char *scratch_path;                     /* normalised path of the current request */
    size_t scratch_path_cap;
    struct bw_access_ring *log_ring; /* NULL when logging is off */
    struct bw_session *sessions;     /* every open session (for drain) */
    struct request *free_requests;   /* per-request state for reuse */
    size_t nfree_requests;
    struct bw_rules_worker rules;
    char log_time[32]; /* cached ISO-8601 second */
    int64_t log_time_sec;
};

bw_status bw_proxy_worker_init(struct bw_proxy_worker *pw, struct bw_runtime *rt,
                               struct bw_worker *w, bw_error *err) BW_MUST_CHECK;
void bw_proxy_worker_done(struct bw_proxy_worker *pw);

/* bw_worker callbacks. */
void bw_proxy_accept(struct bw_worker *w, int fd, const struct sockaddr_storage *peer,
                     socklen_t peer_len);
void bw_proxy_drain(struct bw_worker *w);
/* On the worker thread once its loop ended: closes what is left. */
void bw_proxy_exit(struct bw_worker *w);

#endif
