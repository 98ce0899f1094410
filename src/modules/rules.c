/* The rules module (rules.h): loading with its failure policy, and the two
 * per-request hooks. */
#include "modules/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rulesets.h"
#include "modules/lkg.h"

/* ---- loading ---------------------------------------------------------------- */

struct report {
    char *buf;
    size_t cap, len;
};

BW_PRINTF(2, 3)
static void say(struct report *r, const char *fmt, ...)
{
    if (r->cap == 0 || r->len >= r->cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len = (size_t)n < r->cap - r->len ? r->len + (size_t)n : r->cap - 1;
}

/* named_at: where the config names the file ("bulwark.yaml:16:9: error:
 * modules.rules.rulesets[1]"), or NULL. A problem with the file as a whole
 * (missing, unreadable, empty) has no line in it to point at: it is said
 * there, so the operator sees which entry of which config to fix. */
static void say_diags(struct report *r, const struct bw_config_diags *d, const char *named_at)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct bw_config_diag *g = &d->items[i];
        if (g->line == 0 && named_at)
            say(r, "%s: %s: %s\n", named_at, d->file, g->msg);
        else if (g->line == 0)
            say(r, "%s: error: %s\n", d->file, g->msg);
        else
            say(r, "%s:%u:%u: error: %s\n", d->file, g->line, g->col, g->msg);
    }
    if (d->dropped)
        say(r, "%s: error: %zu more errors not shown\n", d->file, d->dropped);
}

static void say_errors(struct report *r, const struct bw_rulebook_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        say(r, "%s\n", e->items[i].msg);
    if (e->dropped)
        say(r, "error: %zu more errors not shown\n", e->dropped);
}

static bw_status build(struct bw_rules_rt *rr, const struct bw_config *cfg, struct bw_ruleset *sets,
                       size_t nsets, struct bw_route_match *routes, bw_error *err)
{
    return bw_rulebook_build(&rr->arena, sets, nsets, routes, cfg->nroutes, &rr->book, err);
}

/* Loads every ruleset file (or, with copies, each one's last-known-good
 * copy), builds the book and runs the embedded tests. On failure the book
 * is freed and report says why. */
static bool load_sets(struct bw_rules_rt *rr, const struct bw_config *cfg,
                      struct bw_route_match *routes, bool copies, struct report *rep)
{
    const struct bw_config_rules_module *m = &cfg->modules.rules;
    struct bw_ruleset *sets = bw_arena_alloc(&rr->arena, m->nrulesets * sizeof *sets);
    struct bw_file_bytes *files = bw_arena_alloc(&rr->arena, m->nrulesets * sizeof *files + 1);
    struct bw_config_diags *d = malloc(sizeof *d);
    if (!sets || !files || !d) {
        free(d);
        say(rep, "out of memory loading the rulesets\n");
        return false;
    }
    bool ok = true;
    /* sets[i] is file i's, zeroed by the arena: a file that does not load
     * still takes part in the link checks below, with what it held
     * (nothing at all when it was not read). */
    size_t nsets = m->nrulesets;
    for (size_t i = 0; i < m->nrulesets; i++) {
        char path[4400];
        if (copies) {
            if (bw_lkg_path(cfg->state_dir, m->rulesets[i], path, sizeof path) != BW_OK) {
                ok = false;
                continue;
            }
        } else {
            snprintf(path, sizeof path, "%.*s", (int)m->rulesets[i].len, m->rulesets[i].ptr);
        }
        if (bw_ruleset_load_file(&rr->arena, path, &sets[i], d, &files[i]) != BW_OK) {
            /* A last-known-good copy is not named in the config: its own
             * path says which it is. */
            char at[512];
            char key[64];
            snprintf(key, sizeof key, "modules.rules.rulesets[%zu]", i);
            bw_config_where(cfg, m->ruleset_pos[i], key, at, sizeof at);
            say_diags(rep, d, copies ? NULL : at);
            ok = false;
        }
    }
    free(d);
    /* Every problem of the book, and every failing test, not just the first. */
    struct bw_rulebook_errors *errs = malloc(sizeof *errs);
    if (!errs) {
        say(rep, "out of memory loading the rulesets\n");
        ok = false;
    } else if (!ok && bw_rulebook_check_links(&rr->arena, sets, nsets, errs) != BW_OK) {
        say_errors(rep, errs);
    }
    if (ok && bw_rulebook_build_all(&rr->arena, sets, nsets, routes, cfg->nroutes, &rr->book,
                                    errs) != BW_OK) {
        say_errors(rep, errs);
        ok = false;
    }
    if (ok) {
        bw_arena scratch;
        bw_arena_init(&scratch, 16 * 1024, BW_RULES_REQUEST_ARENA_CAP);
        bw_status st = bw_rulebook_run_tests_all(rr->book, &scratch, errs);
        bw_arena_reset(&scratch);
        if (st != BW_OK) {
            say_errors(rep, errs);
            ok = false;
        }
    }
    free(errs);
    if (!ok) {
        rr->book = bw_rulebook_free(rr->book);
        for (size_t i = 0; i < nsets; i++)
            bw_file_bytes_release(&files[i]);
        return false;
    }
    rr->files = files;
    rr->nfiles = nsets;
    return true;
}

bw_status bw_rules_rt_load(struct bw_rules_rt *rr, const struct bw_config *cfg, char *report,
                           size_t cap)
{
    return bw_rules_rt_load_ex(rr, cfg, false, NULL, report, cap);
}

bw_status bw_rules_rt_load_ex(struct bw_rules_rt *rr, const struct bw_config *cfg, bool use_lkg,
                              struct bw_rate_table *rate_from, char *report, size_t cap)
{
    memset(rr, 0, sizeof *rr);
    struct report rep = {.buf = report, .cap = cap, .len = 0};
    if (cap)
        report[0] = '\0';
    bw_arena_init(&rr->arena, 64 * 1024, 0);
    const struct bw_config_rules_module *m = &cfg->modules.rules;
    rr->enabled = m->enabled;
    rr->on_error = m->on_error;
    rr->error_status = m->error_status;

    struct bw_route_match *routes = bw_arena_alloc(&rr->arena, cfg->nroutes * sizeof *routes + 1);
    if (!routes) {
        say(&rep, "out of memory loading the routes\n");
        return BW_ERR;
    }
    for (size_t i = 0; i < cfg->nroutes; i++)
        routes[i] = (struct bw_route_match){.has_match = cfg->routes[i].has_match,
                                            .expr = cfg->routes[i].match};

    bw_error err;
    if (m->enabled && !load_sets(rr, cfg, routes, false, &rep)) {
        bool copies = use_lkg && cfg->has_state_dir;
        for (size_t i = 0; copies && i < m->nrulesets; i++)
            copies = bw_lkg_exists(cfg->state_dir, m->rulesets[i]);
        if (copies) {
            say(&rep, "falling back to the last-known-good copies in %.*s/" BW_LKG_DIR "/\n",
                (int)cfg->state_dir.len, cfg->state_dir.ptr);
            rr->from_lkg = load_sets(rr, cfg, routes, true, &rep);
            if (!rr->from_lkg)
                say(&rep, "the last-known-good copies do not load either\n");
        }
        rr->failed = !rr->from_lkg;
    }
    if (!rr->book && build(rr, cfg, NULL, 0, routes, &err) != BW_OK) {
        say(&rep, "%s\n", err.msg);
        return BW_ERR;
    }
    rr->matches = bw_arena_alloc(&rr->arena, (rr->book->nrules + 1) * sizeof *rr->matches);
    if (!rr->matches || bw_killset_alloc(&rr->arena, rr->book, &rr->kills) != BW_OK) {
        say(&rep, "out of memory for killswitches\n");
        return BW_ERR;
    }
    rr->has_request_rules = rr->book->ntop[BW_RULES_PHASE_REQUEST] > 0;
    rr->has_response_rules = rr->book->ntop[BW_RULES_PHASE_RESPONSE] > 0;
    rr->trivial = !rr->has_request_rules && !rr->has_response_rules && !rr->failed &&
                  !cfg->modules.bot_score.enabled && cfg->nroutes > 0 && !cfg->routes[0].has_match;
    if (rr->book->has_rate_limits) {
        size_t entries = (size_t)m->rate_limit_entries;
        if (rate_from && bw_rate_table_capacity(rate_from) == bw_rate_table_capacity_for(entries)) {
            rr->rate = bw_rate_table_ref(rate_from);
        } else if (bw_rate_table_new(entries, &rr->rate, &err) != BW_OK) {
            say(&rep, "%s\n", err.msg);
            return BW_ERR;
        }
    }
    return BW_OK;
}

void bw_rules_rt_done(struct bw_rules_rt *rr)
{
    for (size_t i = 0; i < rr->nfiles; i++)
        bw_file_bytes_release(&rr->files[i]);
    rr->book = bw_rulebook_free(rr->book);
    rr->rate = bw_rate_table_free(rr->rate);
    bw_arena_reset(&rr->arena);
}

/* ---- per worker -------------------------------------------------------------- */

bw_status bw_rules_worker_init(struct bw_rules_worker *w, const struct bw_rules_rt *rr,
                               size_t max_headers, struct bw_rules_stats *stats, bw_error *err)
{
    memset(w, 0, sizeof *w);
    w->rr = rr;
    w->stats = stats;
    bw_regex_scratch_init(&w->scratch);
    bw_arena_init(&w->arena, BW_RULES_REQUEST_ARENA_BLOCK, BW_RULES_REQUEST_ARENA_CAP);
    w->hdrs_cap = max_headers;
    w->hdrs = calloc(max_headers ? max_headers : 1, sizeof *w->hdrs);
    w->rhdrs = calloc(max_headers ? max_headers : 1, sizeof *w->rhdrs);
    if (!w->hdrs || !w->rhdrs) {
        bw_rules_worker_done(w);
        return bw_error_set(err, "out of memory for the rules of a worker");
    }
    for (size_t p = 0; p < BW_RULES_PHASE__COUNT; p++) {
        if (rr->book->prog[p] &&
            bw_rules_prog_reserve(rr->book->prog[p], &w->scratch, err) != BW_OK) {
            bw_rules_worker_done(w);
            return BW_ERR;
        }
    }
    return BW_OK;
}

void bw_rules_worker_done(struct bw_rules_worker *w)
{
    bw_regex_scratch_done(&w->scratch);
    bw_arena_reset(&w->arena);
    free(w->hdrs);
    free(w->rhdrs);
    w->hdrs = w->rhdrs = NULL;
}

/* ---- the request as the rules see it ---------------------------------------- */

/* http.host is the host name as DNS compares it: lowercased, without the
 * port or the root's trailing dot ("API.Example.:8080" is "api.example";
 * "[::1]:80" is "[::1]"), so no spelling of a name slips past a rule on it. */
static bw_slice host_name(bw_arena *a, bw_slice host)
{
    bw_slice h = bw_http_host_name(host);
    size_t n = h.len;
    bool lower = true;
    for (size_t i = 0; i < n && lower; i++)
        lower = !(h.ptr[i] >= 'A' && h.ptr[i] <= 'Z');
    if (lower)
        return bw_slice_make(h.ptr, n);
    char *buf = bw_arena_alloc(a, n);
    if (!buf)
        return bw_slice_make(h.ptr, n); /* arena full: compared as received */
    for (size_t i = 0; i < n; i++)
        buf[i] = bw_ascii_lower(h.ptr[i]);
    return bw_slice_make(buf, n);
}

void bw_rules_view_request(struct bw_rules_worker *w, struct bw_request_view *v,
                           const struct bw_http_request *hq, const struct sockaddr_storage *client,
                           bool ssl)
{
    bw_arena_clear(&w->arena);
    size_t n = hq->nheaders < w->hdrs_cap ? hq->nheaders : w->hdrs_cap;
    for (size_t i = 0; i < n; i++)
        w->hdrs[i] =
            (struct bw_rv_header){.name = hq->headers[i].name, .value = hq->headers[i].value};
    *v = (struct bw_request_view){
        .method = hq->method,
        .host = {.known = hq->host.len > 0, .value = host_name(&w->arena, hq->host)},
        .uri = hq->target,
        .raw_path = hq->path,
        .query = hq->has_query ? hq->query : BW_SLICE_EMPTY,
        .headers = {.items = w->hdrs, .n = n},
        .src = {.known = client->ss_family == AF_INET || client->ss_family == AF_INET6},
        .ssl = ssl,
        .bot_score = {.known = false, .value = 0},
        .has_response = false,
    };
    memcpy(&v->src.addr, client, sizeof v->src.addr);
}

static bw_slice dup_or_empty(bw_arena *a, bw_slice s, bool *ok)
{
    if (s.len == 0)
        return BW_SLICE_EMPTY;
    bw_slice r = bw_arena_slice_dup(a, s);
    if (!r.ptr) {
        *ok = false;
        return BW_SLICE_EMPTY;
    }
    return r;
}

bw_status bw_rules_view_copy(bw_arena *a, const struct bw_request_view *in,
                             struct bw_request_view *out)
{
    bool ok = true;
    *out = *in;
    out->method = dup_or_empty(a, in->method, &ok);
    out->host.value = dup_or_empty(a, in->host.value, &ok);
    out->uri = dup_or_empty(a, in->uri, &ok);
    out->raw_path = dup_or_empty(a, in->raw_path, &ok);
    out->query = dup_or_empty(a, in->query, &ok);
    struct bw_rv_header *h = bw_arena_alloc(a, (in->headers.n + 1) * sizeof *h);
    if (!h)
        return BW_ERR;
    for (size_t i = 0; i < in->headers.n; i++) {
        h[i].name = dup_or_empty(a, in->headers.items[i].name, &ok);
        h[i].value = dup_or_empty(a, in->headers.items[i].value, &ok);
    }
    out->headers.items = h;
    return ok ? BW_OK : BW_ERR;
}

/* ---- running ----------------------------------------------------------------- */

static enum bw_rl_decision limiter_hit(void *self, const struct bw_rule *rule, uint64_t key,
                                       uint64_t now_ms, uint64_t *retry_after_s)
{
    struct bw_rate_table *t = self;
    const struct bw_action_rate_limit *rl = &rule->action.u.rate_limit;
    switch (bw_rate_table_hit(t, key, rl->requests, rl->period_ms, now_ms, retry_after_s)) {
    case BW_RATE_UNDER:
        return BW_RL_UNDER;
    case BW_RATE_OVER:
        return BW_RL_OVER;
    case BW_RATE__COUNT:
        break;
    }
    return BW_RL_FAILED;
}

static enum bw_rl_decision limiter_none(void *self, const struct bw_rule *rule, uint64_t key,
                                        uint64_t now_ms, uint64_t *retry_after_s)
{
    (void)self, (void)rule, (void)key, (void)now_ms, (void)retry_after_s;
    return BW_RL_FAILED;
}

struct bw_rules_env bw_rules_worker_env(struct bw_rules_worker *w, uint64_t now_ms)
{
    const struct bw_rules_rt *rr = w->rr;
    return (struct bw_rules_env){
        .limiter = rr->rate ? (struct bw_rate_limiter_ops){.hit = limiter_hit, .self = rr->rate}
                            : (struct bw_rate_limiter_ops){.hit = limiter_none, .self = w},
        .kills = rr->kills,
        .now_ms = now_ms,
        .match_counts = rr->matches,
        .tracing = false,
    };
}

static void respond_failed(const struct bw_rules_rt *rr, struct bw_rules_hook *out)
{
    out->kind = BW_RULES_HOOK_RESPOND;
    out->status = rr->error_status;
    out->has_body = true;
    out->body = BW_SLICE_LIT("the rules module failed for this request\n");
}

/* Turns the effects that fired into head edits (ops flattened, last path
 * wins). Dropped, with a failure counted, if the arena is full. */
static void collect_edits(struct bw_rules_worker *w, bw_arena *a, const struct bw_rules_verdict *v,
                          struct bw_rules_hook *out)
{
    size_t nops = 0;
    for (size_t i = 0; i < v->neffects; i++) {
        const struct bw_action *act = &v->effects[i]->action;
        switch (act->kind) {
        case BW_ACTION_REWRITE:
            nops += act->u.rewrite.nops;
            if (act->u.rewrite.has_path) {
                out->edits.has_path = true;
                out->edits.path = act->u.rewrite.path;
            }
            break;
        case BW_ACTION_SET_HEADER:
        case BW_ACTION_REMOVE_HEADER:
            nops++;
            break;
        case BW_ACTION_BLOCK:
        case BW_ACTION_LOG:
        case BW_ACTION_SKIP:
        case BW_ACTION_EXECUTE:
        case BW_ACTION_RATE_LIMIT:
        case BW_ACTION_REDIRECT:
        case BW_ACTION__COUNT:
            break;
        }
    }
    if (nops == 0)
        return;
    const struct bw_header_op **ops = bw_arena_alloc(a, nops * sizeof *ops);
    if (!ops) {
        out->failed = true;
        out->edits.has_path = false;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < v->neffects; i++) {
        const struct bw_action *act = &v->effects[i]->action;
        switch (act->kind) {
        case BW_ACTION_REWRITE:
            for (size_t j = 0; j < act->u.rewrite.nops; j++)
                ops[k++] = &act->u.rewrite.ops[j];
            break;
        case BW_ACTION_SET_HEADER:
            ops[k++] = &act->u.set_header;
            break;
        case BW_ACTION_REMOVE_HEADER:
            ops[k++] = &act->u.remove_header;
            break;
        case BW_ACTION_BLOCK:
        case BW_ACTION_LOG:
        case BW_ACTION_SKIP:
        case BW_ACTION_EXECUTE:
        case BW_ACTION_RATE_LIMIT:
        case BW_ACTION_REDIRECT:
        case BW_ACTION__COUNT:
            break;
        }
    }
    (void)w;
    out->edits.ops = ops;
    out->edits.nops = k;
}

/* Maps a verdict onto the hook's answer. */
static void apply_verdict(struct bw_rules_worker *w, bw_arena *a, enum bw_rules_phase phase,
                          const struct bw_rules_verdict *v, struct bw_rules_hook *out)
{
    bw_stat_inc(&w->stats->verdicts[phase][v->kind]);
    if (v->has_rule) {
        out->has_rule = true;
        out->rule = v->rule;
        out->ruleset = v->ruleset;
        out->action = v->rule->action.kind;
    } else if (v->has_last_fired && v->last_fired->action.kind != BW_ACTION_EXECUTE &&
               v->last_fired->action.kind != BW_ACTION_SKIP) {
        /* A log or edit rule is worth a line's mention; the plumbing of
         * execute and skip, which fire on most requests, is not. */
        out->has_rule = true;
        out->rule = v->last_fired;
        out->ruleset = &w->rr->book->rulesets[v->last_fired->ruleset];
        out->action = v->last_fired->action.kind;
    }
    switch (v->kind) {
    case BW_VERDICT_CONTINUE:
        collect_edits(w, a, v, out);
        return;
    case BW_VERDICT_BLOCK:
        out->kind = BW_RULES_HOOK_RESPOND;
        out->status = v->status;
        out->has_body = v->has_body;
        out->body = v->body;
        return;
    case BW_VERDICT_REDIRECT: {
        out->kind = BW_RULES_HOOK_RESPOND;
        out->status = v->status;
        int n = snprintf(out->extra, sizeof out->extra, "Location: %.*s\r\n", (int)v->location.len,
                         v->location.ptr);
        if (n < 0 || (size_t)n >= sizeof out->extra) {
            /* Too long for the head, which only a long query kept by
             * preserve_query makes (the configured part is bounded at
             * load): refused as a request-target too long to handle. Never
             * a truncated Location, and never on to the upstream, which
             * would let a client walk past a redirect by making its query
             * long. */
            out->status = 414;
            out->extra_len = 0;
            return;
        }
        out->extra_len = (size_t)n;
        return;
    }
    case BW_VERDICT_RATE_LIMITED: {
        out->kind = BW_RULES_HOOK_RESPOND;
        out->status = v->status;
        int n = snprintf(out->extra, sizeof out->extra, "Retry-After: %llu\r\n",
                         (unsigned long long)v->retry_after_s);
        out->extra_len = n > 0 ? (size_t)n : 0;
        return;
    }
    case BW_VERDICT__COUNT:
        break;
    }
}

/* The worker's regex scans of this request into its counters (the scratch
 * is the worker's own; the counters are read by the admin thread). */
static void count_scans(struct bw_rules_worker *w)
{
    uint64_t n[BW_REGEX_OUTCOME__COUNT];
    bw_regex_scratch_take(&w->scratch, n);
    for (size_t i = 0; i < BW_REGEX_OUTCOME__COUNT; i++)
        if (n[i])
            bw_stat_add(&w->stats->regex[i], n[i]);
}

static void hook_init(struct bw_rules_hook *out)
{
    out->kind = BW_RULES_HOOK_CONTINUE;
    out->route = 0;
    out->edits = (struct bw_head_edits){.nops = 0, .has_path = false};
    out->status = 0;
    out->has_body = false;
    out->body = BW_SLICE_EMPTY;
    out->extra_len = 0;
    out->extra[0] = '\0';
    out->failed = false;
    out->has_rule = false;
}

/* A module failure under the module's policy. */
static void fail(struct bw_rules_worker *w, struct bw_rules_hook *out)
{
    out->failed = true;
    bw_stat_inc(&w->stats->failures[w->rr->on_error]);
    switch (w->rr->on_error) {
    case BW_ON_ERROR_OPEN:
        return;
    case BW_ON_ERROR_CLOSED:
        respond_failed(w->rr, out);
        return;
    case BW_ON_ERROR__COUNT:
        break;
    }
}

static void on_request(struct bw_rules_worker *w, const struct bw_request_view *v, uint64_t now_ms,
                       struct bw_rules_request *st, struct bw_rules_hook *out)
{
    const struct bw_rules_rt *rr = w->rr;
    const struct bw_rulebook *book = rr->book;
    hook_init(out);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, book->prog[BW_RULES_PHASE_REQUEST], v, &w->arena, &w->scratch);

    if (atomic_load_explicit(&rr->killed, memory_order_relaxed)) {
        /* Killed is not failed: outputs unknown, counted on their own. */
        bw_stat_inc(&w->stats->killed);
    } else if (rr->enabled && rr->failed) {
        fail(w, out);
        if (out->kind == BW_RULES_HOOK_RESPOND)
            return;
    } else if (rr->has_request_rules && !(st->skipped_modules & (1u << BW_MODULE_RULES))) {
        struct bw_rules_env env = bw_rules_worker_env(w, now_ms);
        struct bw_rules_verdict verdict;
        bw_rulebook_run(book, BW_RULES_PHASE_REQUEST, &cx, &env, st, &verdict);
        apply_verdict(w, &w->arena, BW_RULES_PHASE_REQUEST, &verdict, out);
        if (cx.stats.arena_failures || cx.stats.regex_failures || out->failed) {
            struct bw_rules_hook keep = *out;
            fail(w, out);
            if (out->kind != BW_RULES_HOOK_RESPOND)
                *out = keep, out->failed = true;
        }
        if (out->kind == BW_RULES_HOOK_RESPOND)
            return;
    }
    size_t route;
    if (bw_rulebook_route(book, &cx, &route) != BW_OK) {
        out->kind = BW_RULES_HOOK_NO_ROUTE;
        return;
    }
    out->route = route;
}

void bw_rules_on_request(struct bw_rules_worker *w, const struct bw_request_view *v,
                         uint64_t now_ms, struct bw_rules_request *st, struct bw_rules_hook *out)
{
    on_request(w, v, now_ms, st, out);
    count_scans(w); /* the rules' and the route's */
}

void bw_rules_on_response(struct bw_rules_worker *w, struct bw_request_view *v,
                          const struct bw_http_response *hr, bw_arena *a, uint64_t now_ms,
                          struct bw_rules_request *st, struct bw_rules_hook *out)
{
    const struct bw_rules_rt *rr = w->rr;
    hook_init(out);
    if (!rr->has_response_rules || (st->skipped_modules & (1u << BW_MODULE_RULES)) ||
        atomic_load_explicit(&rr->killed, memory_order_relaxed))
        return;
    size_t n = hr->nheaders < w->hdrs_cap ? hr->nheaders : w->hdrs_cap;
    for (size_t i = 0; i < n; i++)
        w->rhdrs[i] =
            (struct bw_rv_header){.name = hr->headers[i].name, .value = hr->headers[i].value};
    v->has_response = true;
    v->response_code = hr->status;
    v->response_headers = (struct bw_rv_headers){.items = w->rhdrs, .n = n};
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, rr->book->prog[BW_RULES_PHASE_RESPONSE], v, a, &w->scratch);
    struct bw_rules_env env = bw_rules_worker_env(w, now_ms);
    struct bw_rules_verdict verdict;
    bw_rulebook_run(rr->book, BW_RULES_PHASE_RESPONSE, &cx, &env, st, &verdict);
    count_scans(w);
    apply_verdict(w, a, BW_RULES_PHASE_RESPONSE, &verdict, out);
    if (cx.stats.arena_failures || cx.stats.regex_failures || out->failed) {
        struct bw_rules_hook keep = *out;
        fail(w, out);
        if (out->kind != BW_RULES_HOOK_RESPOND)
            *out = keep, out->failed = true;
    }
}
