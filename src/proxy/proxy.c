/* Snapshots, their publication, and each worker's views of them (proxy.h). */
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "config/file.h"
#include "modules/lkg.h"
#include "net/tls.h"
#include "proxy/session.h"

const uint64_t bw_latency_le_ms[BW_LATENCY_BUCKETS] = {1,   5,   10,   25,   50,   100,
                                                       250, 500, 1000, 2500, 5000, 10000};

/* ---- snapshots ---------------------------------------------------------------- */

static void snapshot_free(struct bw_snapshot *s)
{
    if (s->upstreams) {
        for (size_t i = 0; i < s->cfg->nupstreams; i++)
            bw_upstream_rt_done(&s->upstreams[i]);
        free(s->upstreams);
    }
    bw_rules_rt_done(&s->rules);
    bw_bot_rt_done(&s->bot);
    bw_tls_contexts_free(s->cfg, s->tls);
    bw_config_free(s->cfg);
    free(s->route_counts);
    free(s->ruleset_hashes);
    free(s);
}

/* Reads and checks every TLS listener's certificates and keys: a file that
 * cannot be read or a pair that is not usable fails the whole snapshot, so
 * a reload with a bad certificate leaves the running one serving. */
bw_status bw_tls_contexts_load(const struct bw_config *cfg, const struct bw_snapshot *running,
                               struct bw_tls_ctx ***ret, char *report, size_t cap)
{
    bool any = false;
    for (size_t i = 0; i < cfg->nlisten; i++)
        any |= cfg->listen[i].has_tls;
    *ret = NULL;
    if (!any)
        return BW_OK;
    struct bw_tls_ctx **tls = calloc(cfg->nlisten, sizeof *tls);
    if (!tls) {
        snprintf(report, cap, "out of memory");
        return BW_ERR;
    }
    static const struct bw_file_what cert_what = {"the certificate", "certificate file",
                                                  BW_TLS_PEM_MAX};
    static const struct bw_file_what key_what = {"the private key", "key file", BW_TLS_PEM_MAX};
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct bw_config_listen *l = &cfg->listen[i];
        if (!l->has_tls)
            continue;
        size_t n = l->tls.ncerts;
        struct bw_tls_pem *pems = calloc(n, sizeof *pems);
        char(*paths)[2][4097] = calloc(n, sizeof *paths);
        bw_status st = pems && paths ? BW_OK : BW_ERR;
        if (st != BW_OK)
            snprintf(report, cap, "out of memory");
        bw_error err = {{0}};
        size_t bad = 0;
        for (size_t k = 0; st == BW_OK && k < n; k++) {
            const struct bw_config_tls_cert *c = &l->tls.certs[k];
            snprintf(paths[k][0], sizeof paths[k][0], "%.*s", (int)c->cert.len, c->cert.ptr);
            snprintf(paths[k][1], sizeof paths[k][1], "%.*s", (int)c->key.len, c->key.ptr);
            pems[k].cert_path = paths[k][0];
            pems[k].key_path = paths[k][1];
            char *buf = NULL;
            size_t len = 0;
            char why[256];
            const char *failed = paths[k][0];
            st = bw_read_file(paths[k][0], &cert_what, &buf, &len, why, sizeof why);
            pems[k].cert = bw_slice_make(buf, len);
            if (st == BW_OK) {
                failed = paths[k][1];
                st = bw_read_file(paths[k][1], &key_what, &buf, &len, why, sizeof why);
                pems[k].key = bw_slice_make(buf, len);
            }
            /* Which file: "cannot open the certificate" alone leaves the
             * operator to work out the resolved path. */
            if (st != BW_OK)
                snprintf(err.msg, sizeof err.msg, "%.*s: %s",
                         (int)(sizeof err.msg - sizeof why - 8), failed, why);
            bad = k;
        }
        if (st == BW_OK) {
            struct bw_tls_options o = {
                .protocols = ((l->tls.protocols & BW_CONFIG_TLS_V12) ? BW_TLS_V12 : 0u) |
                             ((l->tls.protocols & BW_CONFIG_TLS_V13) ? BW_TLS_V13 : 0u),
                .allow_outside_validity = !running,
                .running = running ? (const struct bw_tls_ctx *const *)running->tls : NULL,
                .nrunning = running && running->tls ? running->cfg->nlisten : 0};
            st = bw_tls_ctx_new(pems, n, &o, (int64_t)time(NULL), &tls[i], &bad, &err);
        }
        for (size_t k = 0; st == BW_OK && k < n; k++) {
            const char *w = bw_tls_ctx_cert(tls[i], k).validity_warning;
            if (w)
                BW_WARNF("%.*s:%u:%u: listen[%zu].tls.certificates[%zu]: %s: served anyway "
                         "(%s); clients that check will refuse it: replace it",
                         (int)cfg->path.len, cfg->path.ptr, l->tls.certs[k].line,
                         l->tls.certs[k].col, i, k, w,
                         running ? "the running configuration serves this very file"
                                 : "at start there is nothing else to serve for its names");
        }
        if (st != BW_OK && err.msg[0]) {
            const struct bw_config_tls_cert *c = &l->tls.certs[bad < n ? bad : 0];
            if (bad < n)
                snprintf(report, cap, "%.*s:%u:%u: error: listen[%zu].tls.certificates[%zu]: %s",
                         (int)cfg->path.len, cfg->path.ptr, c->line, c->col, i, bad, err.msg);
            else
                snprintf(report, cap, "%.*s: error: listen[%zu].tls: %s", (int)cfg->path.len,
                         cfg->path.ptr, i, err.msg);
        }
        for (size_t k = 0; pems && k < n; k++) {
            if (pems[k].key.ptr)
                explicit_bzero((char *)pems[k].key.ptr, pems[k].key.len);
            free((char *)pems[k].cert.ptr);
            free((char *)pems[k].key.ptr);
        }
        free(pems);
        free(paths);
        if (st != BW_OK) {
            bw_tls_contexts_free(cfg, tls);
            return BW_ERR;
        }
    }
    *ret = tls;
    return BW_OK;
}

void bw_tls_contexts_free(const struct bw_config *cfg, struct bw_tls_ctx **tls)
{
    if (!tls)
        return;
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].has_tls)
            bw_tls_ctx_free(tls[i]);
    free(tls);
}

/* TLS client contexts for upstreams with `tls:`; their CA files are read
 * and checked here, so a bad one fails the snapshot. */
static bw_status load_upstream_tls(struct bw_snapshot *s, char *report, size_t cap)
{
    const struct bw_config *cfg = s->cfg;
    static const struct bw_file_what ca_what = {"the CA file", "CA file", BW_TLS_PEM_MAX};
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct bw_config_upstream *cu = &cfg->upstreams[i];
        if (!cu->has_tls)
            continue;
        struct bw_tls_client_options o = {.verify = cu->tls.verify, .has_ca = cu->tls.has_ca_file};
        char path[4097];
        char *buf = NULL;
        size_t len = 0;
        bw_error err = {{0}};
        bw_status st = BW_OK;
        if (o.has_ca) {
            snprintf(path, sizeof path, "%.*s", (int)cu->tls.ca_file.len, cu->tls.ca_file.ptr);
            o.ca_path = path;
            st = bw_read_file(path, &ca_what, &buf, &len, err.msg, sizeof err.msg);
            o.ca = bw_slice_make(buf, len);
        }
        if (st == BW_OK)
            st = bw_tls_client_new(&o, &s->upstreams[i].tls, &err);
        free(buf);
        if (st != BW_OK) {
            snprintf(report, cap, "%.*s: upstreams.%.*s.tls: %s", (int)cfg->path.len, cfg->path.ptr,
                     (int)cu->name.len, cu->name.ptr, err.msg);
            return BW_ERR;
        }
    }
    return BW_OK;
}

bw_status bw_snapshot_new(struct bw_config *cfg, uint64_t generation, bool use_lkg,
                          struct bw_bot_running running_bot, struct bw_rate_table *rate_from,
                          const struct bw_snapshot *running, struct bw_snapshot **ret, char *report,
                          size_t cap)
{
    struct bw_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(report, cap, "out of memory");
        bw_config_free(cfg);
        return BW_ERR;
    }
    atomic_init(&s->refs, 1);
    s->generation = generation;
    s->loaded_at = (int64_t)time(NULL);
    s->cfg = cfg;
    s->limits = (struct bw_http_limits){
        .request_line_bytes = (size_t)cfg->limits.request_line_bytes,
        .header_bytes = (size_t)cfg->limits.header_bytes,
        .headers = (size_t)cfg->limits.headers,
    };
    for (size_t i = 0; i < cfg->nupstreams; i++)
        s->needs_path |= cfg->upstreams[i].balance == BW_BALANCE_HASH &&
                         cfg->upstreams[i].hash_field == BW_HASH_URI_PATH;
    if (bw_tls_contexts_load(cfg, running, &s->tls, report, cap) != BW_OK) {
        snapshot_free(s);
        return BW_ERR;
    }
    if (bw_rules_rt_load_ex(&s->rules, cfg, use_lkg, rate_from, report, cap) != BW_OK) {
        snapshot_free(s);
        return BW_ERR;
    }
    {
        /* The bot module's problems follow the rules module's in the report. */
        size_t used = strnlen(report, cap);
        bw_bot_rt_load(&s->bot, cfg, running_bot, use_lkg, report + used, cap - used);
    }
    s->nworkers = cfg->workers ? cfg->workers : 1;
    s->route_stride = ((cfg->nroutes + 1) * 6 + 7) / 8 * 8; /* whole cache lines */
    s->route_counts = aligned_alloc(64, s->nworkers * s->route_stride * sizeof *s->route_counts);
    if (s->route_counts)
        memset(s->route_counts, 0, s->nworkers * s->route_stride * sizeof *s->route_counts);
    s->upstreams = calloc(cfg->nupstreams, sizeof *s->upstreams);
    if (!s->upstreams || !s->route_counts) {
        snprintf(report, cap, "out of memory");
        snapshot_free(s);
        return BW_ERR;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        bw_error err;
        if (bw_upstream_rt_init(&s->upstreams[i], &cfg->upstreams[i], &err) != BW_OK) {
            snprintf(report, cap, "%s", err.msg);
            for (size_t k = 0; k < i; k++)
                bw_upstream_rt_done(&s->upstreams[k]);
            free(s->upstreams);
            s->upstreams = NULL;
            snapshot_free(s);
            return BW_ERR;
        }
    }
    if (load_upstream_tls(s, report, cap) != BW_OK) {
        snapshot_free(s);
        return BW_ERR;
    }
    /* The hashes of the bytes the loaders parsed, not of the files now. */
    s->config_hash = cfg->hash;
    if (cfg->modules.rules.enabled && !s->rules.failed && !s->rules.from_lkg) {
        size_t n = s->rules.nfiles;
        s->ruleset_hashes = calloc(n ? n : 1, sizeof *s->ruleset_hashes);
        if (s->ruleset_hashes) {
            for (size_t i = 0; i < n; i++)
                s->ruleset_hashes[i] = s->rules.files[i].hash;
            s->nrulesets_loaded = n;
        }
    }
    *ret = s;
    return BW_OK;
}

/* Every artifact's bytes are still there (a snapshot releases them only
 * here): a missing one was not read by this snapshot's loaders. */
static bw_status save_one(const struct bw_config *cfg, bw_slice path, const struct bw_file_bytes *b,
                          bw_error *err)
{
    if (!b->ptr)
        return bw_error_set(err, "internal error: the bytes of %.*s are gone", (int)path.len,
                            path.ptr);
    return bw_lkg_save(cfg->state_dir, path, b->ptr, b->len, err);
}

static void release_sources(struct bw_snapshot *s)
{
    bw_file_bytes_release(&s->cfg->source);
    bw_file_bytes_release(&s->bot.file);
    for (size_t i = 0; i < s->rules.nfiles; i++)
        bw_file_bytes_release(&s->rules.files[i]);
}

bw_status bw_snapshot_save_lkg(struct bw_snapshot *s, bool config_from_lkg, bw_error *err)
{
    const struct bw_config *cfg = s->cfg;
    bw_status st = BW_OK;
    if (cfg->has_state_dir && !s->rules.failed && !s->rules.from_lkg && !s->bot.failed &&
        !s->bot.from_lkg && !config_from_lkg) {
        st = save_one(cfg, cfg->path, &cfg->source, err);
        if (st == BW_OK && s->bot.has_model)
            st = save_one(cfg, cfg->modules.bot_score.features, &s->bot.file, err);
        if (st == BW_OK && cfg->modules.rules.enabled &&
            s->rules.nfiles != cfg->modules.rules.nrulesets)
            st = bw_error_set(err, "internal error: %zu ruleset files loaded of %zu",
                              s->rules.nfiles, cfg->modules.rules.nrulesets);
        for (size_t i = 0; st == BW_OK && cfg->modules.rules.enabled && i < s->rules.nfiles; i++)
            st = save_one(cfg, cfg->modules.rules.rulesets[i], &s->rules.files[i], err);
    }
    release_sources(s);
    return st;
}

void bw_snapshot_unref(struct bw_snapshot *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

static bool same_sockaddr(const struct bw_sockaddr *a, const struct bw_sockaddr *b)
{
    return strcmp(a->text, b->text) == 0;
}

void bw_snapshot_carry_health(struct bw_snapshot *to, const struct bw_snapshot *from,
                              uint64_t now_ms)
{
    const struct bw_config *tc = to->cfg, *fc = from->cfg;
    for (size_t i = 0; i < tc->nupstreams; i++) {
        const struct bw_config_upstream *tu = &tc->upstreams[i];
        const struct bw_upstream_rt *fr = NULL;
        for (size_t k = 0; k < fc->nupstreams && !fr; k++)
            if (bw_slice_eq(fc->upstreams[k].name, tu->name))
                fr = &from->upstreams[k];
        if (!fr)
            continue;
        struct bw_upstream_rt *tr = &to->upstreams[i];
        for (size_t j = 0; j < tr->nservers; j++) {
            const struct bw_server_rt *fs = NULL;
            for (size_t k = 0; k < fr->nservers && !fs; k++)
                if (same_sockaddr(&fr->servers[k].cfg->addr, &tr->servers[j].cfg->addr))
                    fs = &fr->servers[k];
            if (!fs)
                continue;
            struct bw_server_rt *ts = &tr->servers[j];
            /* Only a checker that runs in the new configuration can bring a
             * server back: without one, a carried "down" would be forever. */
            if (tu->health.enabled && fr->cfg->health.enabled)
                atomic_store(&ts->hc_down, atomic_load(&fs->hc_down));
            uint64_t until = atomic_load(&fs->ejected_until);
            if (tu->max_fails > 0 && until > now_ms) {
                uint64_t cap = now_ms + tu->fail_timeout_ms; /* a shorter fail_timeout applies */
                atomic_store(&ts->ejected_until, until < cap ? until : cap);
            }
        }
    }
}

bw_status bw_snapshot_reloadable(const struct bw_config *a, const struct bw_config *b,
                                 bw_error *err)
{
    /* Every field that changed, and only those: an operator told to revert
     * a field they did not touch hunts for a change that is not there. */
    const char *what[16];
    size_t n = 0;
    bool listen = a->nlisten != b->nlisten;
    for (size_t i = 0; !listen && i < a->nlisten; i++)
        listen = !same_sockaddr(&a->listen[i].addr, &b->listen[i].addr);
    if (listen)
        what[n++] = "listen";
    if (a->workers != b->workers)
        what[n++] = "workers";
    if (a->io_engine != b->io_engine)
        what[n++] = "io_engine";
    if (a->io_batch_wait_us != b->io_batch_wait_us)
        what[n++] = "io_batch_wait";
    if (a->limits.header_bytes != b->limits.header_bytes)
        what[n++] = "limits.header_bytes";
    if (a->limits.headers != b->limits.headers)
        what[n++] = "limits.headers";
    if (a->limits.request_line_bytes != b->limits.request_line_bytes)
        what[n++] = "limits.request_line_bytes";
    if (a->limits.max_connections != b->limits.max_connections)
        what[n++] = "limits.max_connections";
    if (a->limits.drain_timeout_ms != b->limits.drain_timeout_ms)
        what[n++] = "limits.drain_timeout";
    if (a->limits.read_ahead_bytes != b->limits.read_ahead_bytes)
        what[n++] = "limits.read_ahead_bytes";
    if (a->log.access_enabled != b->log.access_enabled ||
        !bw_slice_eq(a->log.access_path, b->log.access_path))
        what[n++] = "access_log";
    if (a->admin.enabled != b->admin.enabled ||
        (a->admin.enabled && !same_sockaddr(&a->admin.addr, &b->admin.addr)))
        what[n++] = "admin.address";
    if (a->has_state_dir != b->has_state_dir || !bw_slice_eq(a->state_dir, b->state_dir))
        what[n++] = "state_dir";
    if (n == 0)
        return BW_OK;
    char list[512];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " and " : ", ";
        int w = snprintf(list + len, sizeof list - len, "%s%s", sep, what[i]);
        if (w > 0)
            len += (size_t)w < sizeof list - len ? (size_t)w : sizeof list - len - 1;
    }
    return bw_error_set(err,
                        "%s changed: a reload cannot apply %s (restart bulwark for %s); the "
                        "running configuration stays",
                        list, n == 1 ? "that" : "those", n == 1 ? "it" : "them");
}

/* ---- publication --------------------------------------------------------------- */

void bw_runtime_init(struct bw_runtime *rt, struct bw_snapshot *snap)
{
    memset(rt, 0, sizeof *rt);
    pthread_mutex_init(&rt->lock, NULL);
    atomic_init(&rt->published, snap);
    rt->boot = snap->cfg;
}

void bw_runtime_publish(struct bw_runtime *rt, struct bw_snapshot *snap)
{
    /* Under the lock so that no worker is between reading the old pointer
     * and taking its reference when the old one may be freed. */
    pthread_mutex_lock(&rt->lock);
    struct bw_snapshot *old = atomic_exchange_explicit(&rt->published, snap, memory_order_acq_rel);
    pthread_mutex_unlock(&rt->lock);
    bw_snapshot_unref(old);
}

struct bw_snapshot *bw_runtime_acquire(struct bw_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    struct bw_snapshot *s = atomic_load_explicit(&rt->published, memory_order_acquire);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&rt->lock);
    return s;
}

void bw_runtime_done(struct bw_runtime *rt)
{
    struct bw_snapshot *s = atomic_exchange(&rt->published, NULL);
    if (s)
        bw_snapshot_unref(s);
    pthread_mutex_destroy(&rt->lock);
}

/* ---- a worker's views ---------------------------------------------------------- */

static void wsnap_free(struct bw_wsnap *ws)
{
    if (ws->ups) {
        for (size_t i = 0; i < ws->snap->cfg->nupstreams; i++)
            bw_upstream_local_done(&ws->ups[i]);
        free(ws->ups);
    }
    if (ws->rules.rr)
        bw_rules_worker_done(&ws->rules);
    if (ws->has_bot)
        bw_bot_worker_done(&ws->bot);
    bw_snapshot_unref(ws->snap);
    free(ws);
}

/* Takes over the caller's reference to snap (dropped on failure). */
static struct bw_wsnap *wsnap_new(struct bw_proxy_worker *pw, struct bw_snapshot *snap,
                                  bw_error *err)
{
    struct bw_wsnap *ws = calloc(1, sizeof *ws);
    if (!ws) {
        bw_snapshot_unref(snap);
        bw_error_set(err, "out of memory for a worker's view of the configuration");
        return NULL;
    }
    ws->snap = snap;
    const struct bw_config *cfg = snap->cfg;
    ws->ups = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof *ws->ups);
    if (!ws->ups) {
        wsnap_free(ws);
        bw_error_set(err, "out of memory for a worker's view of the configuration");
        return NULL;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (bw_upstream_local_init(&ws->ups[i], &snap->upstreams[i], err) != BW_OK) {
            for (size_t k = 0; k < i; k++)
                bw_upstream_local_done(&ws->ups[k]);
            free(ws->ups);
            ws->ups = NULL;
            wsnap_free(ws);
            return NULL;
        }
    }
    if (bw_rules_worker_init(&ws->rules, &snap->rules, (size_t)cfg->limits.headers,
                             &pw->stats.rules, err) != BW_OK) {
        ws->rules.rr = NULL;
        wsnap_free(ws);
        return NULL;
    }
    if (snap->bot.has_model) {
        if (bw_bot_worker_init(&ws->bot, snap->bot.model, err) != BW_OK) {
            wsnap_free(ws);
            return NULL;
        }
        ws->has_bot = true;
    }
    return ws;
}

static void retire_if_unpinned(struct bw_proxy_worker *pw, struct bw_wsnap *ws)
{
    if (ws == pw->cur || ws->pins > 0)
        return;
    for (struct bw_wsnap **p = &pw->retired; *p; p = &(*p)->next_retired) {
        if (*p == ws) {
            *p = ws->next_retired;
            break;
        }
    }
    wsnap_free(ws);
}

struct bw_wsnap *bw_proxy_current(struct bw_proxy_worker *pw)
{
    struct bw_wsnap *cur = pw->cur;
    if (atomic_load_explicit(&pw->rt->published, memory_order_acquire) == cur->snap)
        return cur;
    bw_error err;
    struct bw_wsnap *ws = wsnap_new(pw, bw_runtime_acquire(pw->rt), &err);
    if (!ws) {
        BW_ERRORF("worker %u keeps the previous configuration: %s", pw->w->id, err.msg);
        return cur;
    }
    pw->cur = ws;
    pw->adopted++;
    /* The old pools are closed now: new requests use the new upstreams. */
    bw_upconn_close_idle(cur);
    cur->next_retired = pw->retired;
    pw->retired = cur;
    retire_if_unpinned(pw, cur);
    return ws;
}

void bw_wsnap_unpin(struct bw_proxy_worker *pw, struct bw_wsnap *ws)
{
    ws->pins--;
    if (ws != pw->cur && ws->pins == 0)
        retire_if_unpinned(pw, ws);
}

static void adopt_tick(struct bw_loop *loop, struct bw_timer *t)
{
    struct bw_proxy_worker *pw =
        (struct bw_proxy_worker *)((char *)t - offsetof(struct bw_proxy_worker, adopt_timer));
    (void)bw_proxy_current(pw);
    if (!pw->w->draining && bw_timer_set(loop, t, BW_ADOPT_MS) != BW_OK)
        BW_ERRORF("worker %u: cannot re-arm its configuration check", pw->w->id);
}

bw_status bw_proxy_worker_init(struct bw_proxy_worker *pw, struct bw_runtime *rt,
                               struct bw_worker *w, bw_error *err)
{
    memset(pw, 0, sizeof *pw);
    pw->rt = rt;
    pw->w = w;
    pw->log_time_sec = -1;
    /* Buffers and scratch are sized by restart-only settings. */
    const struct bw_config *cfg = rt->boot;
    /* A large buffer holds a whole head at the configured limit plus room
     * for what the proxy adds to it (X-Forwarded-*). */
    size_t large = (size_t)cfg->limits.header_bytes + 4096;
    if (large < BW_SMALL_BUF)
        large = BW_SMALL_BUF;
    bw_buf_pool_init(&pw->small, BW_SMALL_BUF, 1024);
    bw_buf_pool_init(&pw->large, large, 64);
    pw->scratch_headers = calloc((size_t)cfg->limits.headers, sizeof *pw->scratch_headers);
    pw->scratch_path_cap = (size_t)cfg->limits.request_line_bytes + 1;
    pw->scratch_path = malloc(pw->scratch_path_cap);
    if (!pw->scratch_headers || !pw->scratch_path) {
        bw_proxy_worker_done(pw);
        return bw_error_set(err, "out of memory");
    }
    pw->cur = wsnap_new(pw, bw_runtime_acquire(rt), err);
    if (!pw->cur) {
        bw_proxy_worker_done(pw);
        return BW_ERR;
    }
    bw_timer_init(&pw->adopt_timer, adopt_tick);
    w->data = pw;
    w->on_accept = bw_proxy_accept;
    w->on_drain = bw_proxy_drain;
    w->on_full = bw_proxy_reclaim;
    w->on_exit = bw_proxy_exit;
    w->on_start = bw_proxy_start;
    switch (cfg->io_engine) {
    case BW_CONFIG_IO_AUTO:
        w->loop.engine = BW_IO_ENGINE_AUTO;
        break;
    case BW_CONFIG_IO_EPOLL:
        w->loop.engine = BW_IO_ENGINE_EPOLL;
        break;
    case BW_CONFIG_IO_IO_URING:
        w->loop.engine = BW_IO_ENGINE_IO_URING;
        break;
    }
    w->loop.batch_wait_us = cfg->io_batch_wait_us;
    w->loop.read_ahead_max = cfg->limits.read_ahead_bytes;
    w->max_conns = cfg->limits.max_connections;
    w->drain_timeout_ms = cfg->limits.drain_timeout_ms;
    if (rt->access_log)
        pw->log_ring = rt->access_log->rings[w->id];
    return BW_OK;
}

void bw_proxy_worker_done(struct bw_proxy_worker *pw)
{
    while (pw->retired) {
        struct bw_wsnap *ws = pw->retired;
        pw->retired = ws->next_retired;
        wsnap_free(ws);
    }
    if (pw->cur)
        wsnap_free(pw->cur);
    pw->cur = NULL;
    free(pw->scratch_headers);
    pw->scratch_headers = NULL;
    free(pw->scratch_path);
    pw->scratch_path = NULL;
    bw_buf_pool_done(&pw->small);
    bw_buf_pool_done(&pw->large);
}

void bw_proxy_start(struct bw_worker *w)
{
    struct bw_proxy_worker *pw = w->data;
    if (bw_timer_set(&w->loop, &pw->adopt_timer, BW_ADOPT_MS) != BW_OK)
        BW_ERRORF("worker %u: cannot arm its configuration check", w->id);
}

void bw_proxy_accept(struct bw_worker *w, size_t listener, int fd,
                     const struct sockaddr_storage *peer, socklen_t peer_len)
{
    bw_session_accept(w->data, listener, fd, peer, peer_len);
}

bool bw_proxy_reclaim(struct bw_worker *w)
{
    return bw_session_reclaim_idle(w->data);
}

void bw_proxy_drain(struct bw_worker *w)
{
    struct bw_proxy_worker *pw = w->data;
    bw_timer_cancel(&w->loop, &pw->adopt_timer);
    bw_session_drain_all(pw);
}

void bw_proxy_exit(struct bw_worker *w)
{
    struct bw_proxy_worker *pw = w->data;
    bw_timer_cancel(&w->loop, &pw->adopt_timer);
    bw_session_close_all(pw);
    /* Frees what the sessions and connections closed above parked. */
    bw_loop_run_deferred(&w->loop);
}
