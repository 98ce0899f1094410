#include "proxy/proxy.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proxy/session.h"

bw_status bw_runtime_init(struct bw_runtime *rt, const struct bw_config *cfg, bw_error *err)
{
    memset(rt, 0, sizeof *rt);
    rt->cfg = cfg;
    rt->limits = (struct bw_http_limits){
        .request_line_bytes = (size_t)cfg->limits.request_line_bytes,
        .header_bytes = (size_t)cfg->limits.header_bytes,
        .headers = (size_t)cfg->limits.headers,
    };
    for (size_t i = 0; i < cfg->nupstreams; i++)
        rt->needs_path |= cfg->upstreams[i].balance == BW_BALANCE_HASH &&
                          cfg->upstreams[i].hash_field == BW_HASH_URI_PATH;
    static char report[16384];
    if (bw_rules_rt_load(&rt->rules, cfg, report, sizeof report) != BW_OK) {
        bw_rules_rt_done(&rt->rules);
        return bw_error_set(err, "cannot compile the routes: %s", report);
    }
    if (rt->rules.failed)
        BW_ERRORF("the rules module did not load; on_error: %s applies to every request "
                  "until it does:\n%s",
                  cfg->modules.rules.on_error == BW_ON_ERROR_OPEN ? "open (no rule runs)"
                                                                  : "closed (requests refused)",
                  report);
    rt->upstreams = calloc(cfg->nupstreams, sizeof *rt->upstreams);
    if (!rt->upstreams) {
        bw_rules_rt_done(&rt->rules);
        return bw_error_set(err, "out of memory");
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (bw_upstream_rt_init(&rt->upstreams[i], &cfg->upstreams[i], err) != BW_OK) {
            for (size_t k = 0; k < i; k++)
                bw_upstream_rt_done(&rt->upstreams[k]);
            free(rt->upstreams);
            rt->upstreams = NULL;
            bw_rules_rt_done(&rt->rules);
            return BW_ERR;
        }
    }
    return BW_OK;
}

void bw_runtime_done(struct bw_runtime *rt)
{
    if (rt->upstreams) {
        for (size_t i = 0; i < rt->cfg->nupstreams; i++)
            bw_upstream_rt_done(&rt->upstreams[i]);
        free(rt->upstreams);
        rt->upstreams = NULL;
    }
    bw_rules_rt_done(&rt->rules);
}

bw_status bw_proxy_worker_init(struct bw_proxy_worker *pw, struct bw_runtime *rt,
                               struct bw_worker *w, bw_error *err)
{
    memset(pw, 0, sizeof *pw);
    pw->rt = rt;
    pw->w = w;
    pw->log_time_sec = -1;
    const struct bw_config *cfg = rt->cfg;
    /* A large buffer holds a whole head at the configured limit plus room
     * for what the proxy adds to it (X-Forwarded-*). */
    size_t large = (size_t)cfg->limits.header_bytes + 4096;
    if (large < BW_SMALL_BUF)
        large = BW_SMALL_BUF;
    bw_buf_pool_init(&pw->small, BW_SMALL_BUF, 1024);
    bw_buf_pool_init(&pw->large, large, 64);
    pw->scratch_headers = calloc((size_t)cfg->limits.headers, sizeof *pw->scratch_headers);
    pw->ups = calloc(cfg->nupstreams, sizeof *pw->ups);
    pw->scratch_path_cap = (size_t)cfg->limits.request_line_bytes + 1;
    pw->scratch_path = malloc(pw->scratch_path_cap);
    if (!pw->scratch_headers || !pw->ups || !pw->scratch_path) {
        bw_proxy_worker_done(pw);
        return bw_error_set(err, "out of memory");
    }
    if (bw_rules_worker_init(&pw->rules, &rt->rules, (size_t)cfg->limits.headers, err) != BW_OK) {
        bw_proxy_worker_done(pw);
        return BW_ERR;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (bw_upstream_local_init(&pw->ups[i], &rt->upstreams[i], err) != BW_OK) {
            bw_proxy_worker_done(pw);
            return BW_ERR;
        }
    }
    w->data = pw;
    w->on_accept = bw_proxy_accept;
    w->on_drain = bw_proxy_drain;
    w->on_exit = bw_proxy_exit;
    w->max_conns = cfg->limits.max_connections;
    w->drain_timeout_ms = cfg->limits.drain_timeout_ms;
    if (rt->access_log)
        pw->log_ring = rt->access_log->rings[w->id];
    return BW_OK;
}

void bw_proxy_worker_done(struct bw_proxy_worker *pw)
{
    if (pw->ups) {
        for (size_t i = 0; i < pw->rt->cfg->nupstreams; i++)
            bw_upstream_local_done(&pw->ups[i]);
        free(pw->ups);
        pw->ups = NULL;
    }
    if (pw->rules.rr)
        bw_rules_worker_done(&pw->rules);
    pw->rules.rr = NULL;
    free(pw->scratch_headers);
    pw->scratch_headers = NULL;
    free(pw->scratch_path);
    pw->scratch_path = NULL;
    bw_buf_pool_done(&pw->small);
    bw_buf_pool_done(&pw->large);
}

void bw_proxy_accept(struct bw_worker *w, int fd, const struct sockaddr_storage *peer,
                     socklen_t peer_len)
{
    bw_session_accept(w->data, fd, peer, peer_len);
}

void bw_proxy_drain(struct bw_worker *w)
{
    bw_session_drain_all(w->data);
}

void bw_proxy_exit(struct bw_worker *w)
{
    struct bw_proxy_worker *pw = w->data;
    bw_session_close_all(pw);
    /* Frees what the sessions and connections closed above parked. */
    bw_loop_run_deferred(&w->loop);
}
