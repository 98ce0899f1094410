/* Running a rulebook for one request: the top-level rulesets of a phase, the
 * rules in them, their actions, the trace, the rate-limit key and routing.
 *
 * The request path: nothing here fails, allocates outside the request arena
 * or recurses deeper than BW_RULES_MAX_EXECUTE_DEPTH (bw_rulebook_build
 * refused deeper books; the depth is checked again so that a hand-built book
 * degrades to "runs nothing more" rather than to a stack overflow). Every
 * state a rule or ruleset can be in is a declared outcome (DESIGN.md §1,
 * lesson 2): an execute whose target is switched off fires and runs
 * nothing; it never leaves a hole for the caller to trip on. */
#include <assert.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "rules/ruleset.h"
#include "rules/ruleset_internal.h"

/* ---- killswitches and skips ------------------------------------------------- */

static bool bit_of(const _Atomic uint64_t *words, uint32_t i)
{
    /* A caller that built its env by hand with no words kills nothing. */
    if (!words)
        return false;
    return (atomic_load_explicit(&words[i / 64], memory_order_relaxed) >> (i % 64)) & 1u;
}

static bool skipped(const struct bw_rules_request *st, uint32_t set)
{
    return set < BW_RULES_MAX_RULESETS && ((st->skipped_rulesets[set / 64] >> (set % 64)) & 1u);
}

/* ---- one run ---------------------------------------------------------------------- */

struct run {
    const struct bw_rulebook *book;
    struct bw_rules_ctx *cx;
    const struct bw_rules_env *env;
    struct bw_rules_request *st;
    struct bw_rules_verdict *out;
    const struct bw_rule **effects; /* in cx->arena, grown by doubling */
    size_t effects_cap;
};

enum flow { FLOW_GO_ON, FLOW_STOP };

static void trace(struct run *r, bool is_ruleset, const struct bw_ruleset *set,
                  const struct bw_rule *rule, uint32_t depth, enum bw_tri value,
                  enum bw_rule_outcome outcome)
{
    if (!r->env->tracing || !r->env->tracer.step)
        return;
    struct bw_rules_trace_step s = {.is_ruleset = is_ruleset,
                                    .ruleset = set,
                                    .rule = rule,
                                    .depth = depth,
                                    .value = value,
                                    .outcome = outcome};
    r->env->tracer.step(r->env->tracer.self, &s);
}

/* When the arena refuses, the effect is dropped: the request goes on without
 * it, which is what the rules would do if the rule had not matched. */
static void add_effect(struct run *r, const struct bw_rule *rule)
{
    if (r->out->neffects == r->effects_cap) {
        size_t ncap = r->effects_cap ? r->effects_cap * 2 : 8;
        const struct bw_rule **n = bw_arena_alloc(r->cx->arena, ncap * sizeof *n);
        if (!n)
            return;
        if (r->out->neffects)
            memcpy(n, r->effects, r->out->neffects * sizeof *n);
        r->effects = n;
        r->effects_cap = ncap;
        r->out->effects = n;
    }
    r->effects[r->out->neffects++] = rule;
}

static void terminate(struct run *r, enum bw_verdict_kind kind, const struct bw_rule *rule,
                      uint16_t status)
{
    r->out->kind = kind;
    r->out->has_rule = true;
    r->out->rule = rule;
    r->out->ruleset = &r->book->rulesets[rule->ruleset];
    r->out->status = status;
}

/* The redirect target, with the request's query when asked. Without arena
 * the location goes out as written: a redirect that loses its query is
 * better than none. */
static bw_slice redirect_location(struct run *r, const struct bw_action_redirect *rd)
{
    bw_slice q = r->cx->view->query;
    if (!rd->preserve_query || q.len == 0)
        return rd->location;
    /* The query goes before a fragment (RFC 3986 §3.5): after it, it would
     * be part of the fragment, which the browser keeps to itself, and a
     * '?' there is no query. */
    const char *hash = memchr(rd->location.ptr, '#', rd->location.len);
    size_t base = hash ? (size_t)(hash - rd->location.ptr) : rd->location.len;
    bool has_q = memchr(rd->location.ptr, '?', base) != NULL;
    size_t n = rd->location.len + 1 + q.len;
    char *p = bw_arena_alloc(r->cx->arena, n);
    if (!p)
        return rd->location;
    memcpy(p, rd->location.ptr, base);
    p[base] = has_q ? '&' : '?';
    memcpy(p + base + 1, q.ptr, q.len);
    memcpy(p + base + 1 + q.len, rd->location.ptr + base, rd->location.len - base);
    return bw_slice_make(p, n);
}

static enum flow run_set(struct run *r, uint32_t set_index, uint32_t depth);

static enum flow execute(struct run *r, const struct bw_rule *rule, uint32_t depth)
{
    uint32_t t = rule->action.u.execute.ruleset;
    const struct bw_ruleset *target = &r->book->rulesets[t];
    const struct bw_ruleset *set = &r->book->rulesets[rule->ruleset];
    enum bw_rule_outcome o = BW_OUTCOME_FIRED;
    if (!target->enabled)
        o = BW_OUTCOME_RULESET_DISABLED;
    else if (bit_of(r->env->kills.rulesets, t))
        o = BW_OUTCOME_RULESET_KILLED;
    else if (skipped(r->st, t))
        o = BW_OUTCOME_RULESET_SKIPPED;
    else if (depth + 1 > BW_RULES_MAX_EXECUTE_DEPTH)
        o = BW_OUTCOME_RULESET_SKIPPED;
    trace(r, false, set, rule, depth, BW_TRI_TRUE, o);
    if (o != BW_OUTCOME_FIRED)
        return FLOW_GO_ON;
    return run_set(r, t, depth + 1);
}

/* Acts on a rule whose expression is TRUE. */
static enum flow fire(struct run *r, const struct bw_rule *rule, uint32_t depth, bool *ret_end_set)
{
    const struct bw_ruleset *set = &r->book->rulesets[rule->ruleset];
    r->out->fired++;
    r->out->has_last_fired = true;
    r->out->last_fired = rule;
    if (r->env->match_counts)
        atomic_fetch_add_explicit(&r->env->match_counts[rule->index], 1, memory_order_relaxed);
    const struct bw_action *a = &rule->action;
    switch (a->kind) {
    case BW_ACTION_EXECUTE:
        return execute(r, rule, depth);
    case BW_ACTION_BLOCK:
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        terminate(r, BW_VERDICT_BLOCK, rule, a->u.block.status);
        r->out->has_body = a->u.block.has_body;
        r->out->body = a->u.block.body;
        return FLOW_STOP;
    case BW_ACTION_LOG:
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        return FLOW_GO_ON;
    case BW_ACTION_SKIP:
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        switch (a->u.skip.scope) {
        case BW_SKIP_REST:
            *ret_end_set = true;
            return FLOW_GO_ON;
        case BW_SKIP_TARGETS:
            for (size_t i = 0; i < a->u.skip.nrulesets; i++) {
                uint32_t t = a->u.skip.rulesets[i];
                if (t < BW_RULES_MAX_RULESETS)
                    r->st->skipped_rulesets[t / 64] |= (uint64_t)1 << (t % 64);
            }
            r->st->skipped_modules |= a->u.skip.modules;
            return FLOW_GO_ON;
        }
        return FLOW_GO_ON;
    case BW_ACTION_RATE_LIMIT: {
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        if (!r->env->limiter.hit)
            return FLOW_GO_ON;
        uint64_t key = bw_rules_rate_key(set, rule, r->cx);
        uint64_t retry = 0;
        enum bw_rl_decision d =
            r->env->limiter.hit(r->env->limiter.self, rule, key, r->env->now_ms, &retry);
        switch (d) {
        case BW_RL_OVER:
            terminate(r, BW_VERDICT_RATE_LIMITED, rule, a->u.rate_limit.status);
            r->out->retry_after_s = retry ? retry : 1;
            return FLOW_STOP;
        case BW_RL_UNDER:
        case BW_RL_FAILED:
        case BW_RL_DECISION__COUNT:
            return FLOW_GO_ON;
        }
        return FLOW_GO_ON;
    }
    case BW_ACTION_REDIRECT:
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        terminate(r, BW_VERDICT_REDIRECT, rule, a->u.redirect.status);
        r->out->location = redirect_location(r, &a->u.redirect);
        return FLOW_STOP;
    case BW_ACTION_REWRITE:
    case BW_ACTION_SET_HEADER:
    case BW_ACTION_REMOVE_HEADER:
        trace(r, false, set, rule, depth, BW_TRI_TRUE, BW_OUTCOME_FIRED);
        add_effect(r, rule);
        return FLOW_GO_ON;
    case BW_ACTION__COUNT:
        break;
    }
    return FLOW_GO_ON;
}

/* Rule by rule, each step traced: `bulwark eval`, and books built by hand. */
static enum flow run_set_each(struct run *r, const struct bw_ruleset *set, uint32_t depth)
{
    for (size_t i = 0; i < set->nrules; i++) {
        const struct bw_rule *rule = &set->rules[i];
        if (!rule->enabled) {
            trace(r, false, set, rule, depth, BW_TRI_FALSE, BW_OUTCOME_DISABLED);
            continue;
        }
        if (bit_of(r->env->kills.rules, rule->index)) {
            trace(r, false, set, rule, depth, BW_TRI_FALSE, BW_OUTCOME_KILLED);
            continue;
        }
        enum bw_tri v = bw_rules_eval(r->cx, rule->expr_index);
        switch (v) {
        case BW_TRI_FALSE:
            trace(r, false, set, rule, depth, v, BW_OUTCOME_NOT_MATCHED);
            continue;
        case BW_TRI_UNKNOWN:
        case BW_TRI__COUNT:
            trace(r, false, set, rule, depth, BW_TRI_UNKNOWN, BW_OUTCOME_UNKNOWN);
            continue;
        case BW_TRI_TRUE:
            break;
        }
        bool end_set = false;
        if (fire(r, rule, depth, &end_set) == FLOW_STOP)
            return FLOW_STOP;
        if (end_set)
            break;
    }
    return FLOW_GO_ON;
}

/* The first of rules i .. n - 1 of a ruleset (its rule 0 has global index
 * base) that is disabled or killed now, or n. A word of bits at a time:
 * with nothing disabled or killed, one or two words per ruleset. */
static size_t next_blocked(const struct run *r, uint32_t base, size_t i, size_t n)
{
    const uint64_t *dis = r->book->disabled;
    const _Atomic uint64_t *kills = r->env->kills.rules;
    size_t g = base + i, end = base + n;
    while (g < end) {
        size_t w = g / 64;
        uint64_t m = dis[w];
        if (kills)
            m |= atomic_load_explicit(&kills[w], memory_order_relaxed);
        m &= ~(uint64_t)0 << (g % 64);
        if (m) {
            size_t b = w * 64 + (size_t)__builtin_ctzll(m);
            return b < end ? b - base : n;
        }
        g = (w + 1) * 64;
    }
    return n;
}

static enum flow run_set(struct run *r, uint32_t set_index, uint32_t depth)
{
    const struct bw_ruleset *set = &r->book->rulesets[set_index];
    if (!r->book->disabled || (r->env->tracing && r->env->tracer.step) || set->nrules == 0)
        return run_set_each(r, set, depth);
    /* Nobody needs each rule's value: the rules between two that are
     * disabled or killed are evaluated in one call, up to the first TRUE
     * (bw_rulebook_build numbered them consecutively). The same rules are
     * evaluated in the same order as run_set_each does; a killswitch is read
     * when its stretch starts rather than at its own rule. */
    size_t n = set->nrules;
    uint32_t base = set->rules[0].index, expr0 = set->rules[0].expr_index;
    size_t i = 0;
    while (i < n) {
        size_t stop = next_blocked(r, base, i, n);
        if (stop == i) {
            i++; /* disabled or killed: not evaluated */
            continue;
        }
        size_t hit = bw_rules_eval_first_true(r->cx, expr0 + i, expr0 + stop) - expr0;
        if (hit >= stop) {
            i = stop;
            continue;
        }
        bool end_set = false;
        if (fire(r, &set->rules[hit], depth, &end_set) == FLOW_STOP)
            return FLOW_STOP;
        if (end_set)
            break;
        i = hit + 1;
    }
    return FLOW_GO_ON;
}

void bw__rulebook_run_sets(const struct bw_rulebook *book, const uint32_t *sets, size_t nsets,
                           bool enter_disabled, struct bw_rules_ctx *cx,
                           const struct bw_rules_env *env, struct bw_rules_request *st,
                           struct bw_rules_verdict *out)
{
    *out = (struct bw_rules_verdict){.kind = BW_VERDICT_CONTINUE};
    struct run r = {.book = book, .cx = cx, .env = env, .st = st, .out = out};
    bool module_skipped = (st->skipped_modules >> BW_MODULE_RULES) & 1u;
    for (size_t i = 0; i < nsets; i++) {
        uint32_t t = sets[i];
        const struct bw_ruleset *set = &book->rulesets[t];
        enum bw_rule_outcome o = BW_OUTCOME_FIRED;
        if (!set->enabled && !enter_disabled)
            o = BW_OUTCOME_RULESET_DISABLED;
        else if (bit_of(env->kills.rulesets, t))
            o = BW_OUTCOME_RULESET_KILLED;
        else if (skipped(st, t) || module_skipped)
            o = BW_OUTCOME_RULESET_SKIPPED;
        trace(&r, true, set, NULL, 0, o == BW_OUTCOME_FIRED ? BW_TRI_TRUE : BW_TRI_FALSE, o);
        if (o != BW_OUTCOME_FIRED)
            continue;
        if (run_set(&r, t, 0) == FLOW_STOP)
            return;
    }
}

void bw_rulebook_run(const struct bw_rulebook *book, enum bw_rules_phase phase,
                     struct bw_rules_ctx *cx, const struct bw_rules_env *env,
                     struct bw_rules_request *st, struct bw_rules_verdict *out)
{
    assert(cx->prog == book->prog[phase]);
    bw__rulebook_run_sets(book, book->top[phase], book->ntop[phase], false, cx, env, st, out);
}

bw_status bw_rulebook_route(const struct bw_rulebook *book, struct bw_rules_ctx *cx, size_t *ret)
{
    for (size_t i = 0; i < book->nroutes; i++) {
        if (!book->routes[i].has_match || bw_rules_eval(cx, book->route_expr[i]) == BW_TRI_TRUE) {
            *ret = i;
            return BW_OK;
        }
    }
    return BW_ERR;
}

/* ---- rate-limit key ----------------------------------------------------------------- */

/* FNV-1a, 64 bit, then a final avalanche (the limiter's table indexes by the
 * low bits, which plain FNV mixes poorly). */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Length first, so ("ab", "c") and ("a", "bc") hash differently. */
static uint64_t fnv_field(uint64_t h, uint8_t tag, const void *p, size_t n)
{
    uint64_t len = n;
    h = fnv(h, &tag, 1);
    h = fnv(h, &len, sizeof len);
    return fnv(h, p, n);
}

static uint64_t hash_bytes_field(uint64_t h, uint8_t tag, struct bw_rules_ctx *cx,
                                 enum bw_rules_field f)
{
    struct bw_val v = bw_rules_field_value(cx, f);
    if (v.kind == BW_VAL_BYTES)
        return fnv_field(h, tag, v.u.bytes.ptr, v.u.bytes.len);
    /* Unknown (absent): the empty string, a key of its own. */
    return fnv_field(h, tag, "", 0);
}

uint64_t bw_rules_rate_key(const struct bw_ruleset *set, const struct bw_rule *r,
                           struct bw_rules_ctx *cx)
{
    uint64_t h = FNV_OFFSET;
    h = fnv_field(h, 0, set->id.ptr, set->id.len);
    h = fnv_field(h, 0, r->id.ptr, r->id.len);
    if (r->action.kind != BW_ACTION_RATE_LIMIT)
        return h;
    const struct bw_action_rate_limit *rl = &r->action.u.rate_limit;
    /* Windows are counted in periods: a new period starts a new count. */
    h = fnv(h, &rl->period_ms, sizeof rl->period_ms);
    for (size_t i = 0; i < rl->nchars; i++) {
        const struct bw_rl_characteristic *c = &rl->chars[i];
        uint8_t tag = (uint8_t)c->kind;
        switch (c->kind) {
        case BW_RL_IP_SRC: {
            struct bw_val v = bw_rules_field_value(cx, BW_RULES_F_IP_SRC);
            if (v.kind == BW_VAL_IP)
                h = fnv_field(h, tag, v.u.ip.addr, v.u.ip.family == BW_RULES_IPV4 ? 4 : 16);
            else
                h = fnv_field(h, tag, "", 0);
            break;
        }
        case BW_RL_HOST:
            h = hash_bytes_field(h, tag, cx, BW_RULES_F_HTTP_HOST);
            break;
        case BW_RL_METHOD:
            h = hash_bytes_field(h, tag, cx, BW_RULES_F_HTTP_REQUEST_METHOD);
            break;
        case BW_RL_PATH:
            h = hash_bytes_field(h, tag, cx, BW_RULES_F_HTTP_REQUEST_URI_PATH);
            break;
        case BW_RL_USER_AGENT:
            h = hash_bytes_field(h, tag, cx, BW_RULES_F_HTTP_USER_AGENT);
            break;
        case BW_RL_HEADER: {
            /* The first value, read from the view: no arena needed. */
            bw_slice val = BW_SLICE_EMPTY;
            const struct bw_rv_headers *hs = &cx->view->headers;
            for (size_t k = 0; k < hs->n; k++)
                if (bw_slice_eq_nocase(hs->items[k].name, c->header)) {
                    val = hs->items[k].value;
                    break;
                }
            h = fnv_field(h, tag, val.ptr, val.len);
            break;
        }
        case BW_RL__COUNT:
            break;
        }
    }
    /* splitmix64 finaliser */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}
