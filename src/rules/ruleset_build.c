/* bw_rulebook_build: the checks that need every ruleset at once (ids,
 * execute and skip targets, execute cycles and depth, actions allowed in a
 * phase), the global numbering, and one compiled program per phase.
 *
 * What a single file can check (syntax, types, parameter ranges, header
 * names) is config/rulesets.c's; running the book is ruleset_run.c's. Every
 * refusal names the file, line and column of the rule or ruleset at fault,
 * because the user fixes it there, not in the rulebook as a whole. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules/ruleset.h"
#include "rules/ruleset_internal.h"

/* ---- errors ---------------------------------------------------------------- */

bw_status bw__rb_fail(struct bw__rb_sink *k, const char *fmt, ...)
{
    char msg[BW_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (k->count == 0 && k->first)
        snprintf(k->first->msg, sizeof k->first->msg, "%s", msg);
    if (k->all) {
        if (k->all->n < BW_RULEBOOK_MAX_ERRORS)
            snprintf(k->all->items[k->all->n++].msg, sizeof k->all->items[0].msg, "%s", msg);
        else
            k->all->dropped++;
    }
    k->count++;
    return BW_ERR;
}

BW_PRINTF(4, 5)
static bw_status fail_at(struct bw__rb_sink *k, const struct bw_ruleset *s, struct bw_rules_pos pos,
                         const char *fmt, ...)
{
    char msg[BW_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int flen = s->file.len > 200 ? 200 : (int)s->file.len;
    return bw__rb_fail(k, "%.*s:%u:%u: error: %s", flen, s->file.ptr, pos.line, pos.col, msg);
}

/* An execute target that did not resolve: the graph checks leave its edge
 * out, so the missing target is reported once, not again as a cycle. */
#define NO_SET UINT32_MAX

/* Ids are [A-Za-z0-9_.-]+ once loaded, but a hand-built ruleset may hold
 * anything: print at most this much of one. */
#define ID_FMT "%.*s"
#define ID_ARG(s) (int)((s).len > 64 ? 64 : (s).len), (s).ptr

static bool find_set(const struct bw_ruleset *sets, size_t nsets, bw_slice id, uint32_t *ret)
{
    for (size_t i = 0; i < nsets; i++)
        if (bw_slice_eq(sets[i].id, id)) {
            *ret = (uint32_t)i;
            return true;
        }
    return false;
}

/* ---- per-ruleset checks and target resolution ------------------------------------ */

static bw_status check_phase_action(const struct bw_ruleset *s, const struct bw_rule *r,
                                    struct bw__rb_sink *err)
{
    const char *need = NULL;
    switch (r->action.kind) {
    case BW_ACTION_BLOCK:
    case BW_ACTION_LOG:
    case BW_ACTION_SKIP:
    case BW_ACTION_EXECUTE:
    case BW_ACTION_RATE_LIMIT:
    case BW_ACTION_REDIRECT:
        return BW_OK;
    case BW_ACTION_REWRITE:
        if (s->phase != BW_RULES_PHASE_REQUEST)
            need = "request";
        break;
    case BW_ACTION_SET_HEADER:
    case BW_ACTION_REMOVE_HEADER:
        if (s->phase != BW_RULES_PHASE_RESPONSE)
            need = "response";
        break;
    case BW_ACTION__COUNT:
        return fail_at(err, s, r->pos, "rule \"" ID_FMT "\" has no valid action", ID_ARG(r->id));
    }
    if (!need)
        return BW_OK;
    return fail_at(err, s, r->action_pos,
                   "rule \"" ID_FMT "\": %s is a %s-phase action, but ruleset \"" ID_FMT
                   "\" is %s phase",
                   ID_ARG(r->id), bw_action_name(r->action.kind), need, ID_ARG(s->id),
                   bw_rules_phase_name(s->phase));
}

/* What a check looks at. A full build checks everything. The link checks
 * of rulesets some of whose files failed (bw_rulebook_check_links) look only
 * at what needs several files, since the file's own problems are already
 * said, and only where the answer is sure: with a ruleset whose id did not
 * read, no target can be said not to exist. */
struct mode {
    bool links_only;
    bool ids_known; /* every ruleset has an id */
};

static bool phase_known(enum bw_rules_phase ph)
{
    return ph == BW_RULES_PHASE_REQUEST || ph == BW_RULES_PHASE_RESPONSE;
}

/* Checks one rule's action against the book and resolves its targets; every
 * problem is reported, a target that is not there is left unresolved. */
static bw_status resolve_rule(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                              struct bw_ruleset *s, struct bw_rule *r, const struct mode *m,
                              struct bw__rb_sink *err)
{
    bw_status st = m->links_only ? BW_OK : check_phase_action(s, r, err);
    if (r->action.kind == BW_ACTION_EXECUTE) {
        struct bw_action_execute *x = &r->action.u.execute;
        x->ruleset = NO_SET;
        uint32_t t;
        if (!find_set(sets, nsets, x->ruleset_id, &t)) {
            if (!m->ids_known)
                return st;
            return fail_at(err, s, r->action_pos,
                           "rule \"" ID_FMT "\": execute target ruleset \"" ID_FMT
                           "\" does not exist",
                           ID_ARG(r->id), ID_ARG(x->ruleset_id));
        }
        if (!phase_known(sets[t].phase) || !phase_known(s->phase))
            return st; /* a phase that did not read: said with its file */
        if (sets[t].phase != s->phase)
            return fail_at(err, s, r->action_pos,
                           "rule \"" ID_FMT "\": execute target ruleset \"" ID_FMT
                           "\" is %s phase, but ruleset \"" ID_FMT "\" is %s phase",
                           ID_ARG(r->id), ID_ARG(x->ruleset_id), bw_rules_phase_name(sets[t].phase),
                           ID_ARG(s->id), bw_rules_phase_name(s->phase));
        x->ruleset = t;
        sets[t].executed = true;
    } else if (r->action.kind == BW_ACTION_SKIP && r->action.u.skip.scope == BW_SKIP_TARGETS) {
        struct bw_action_skip *k = &r->action.u.skip;
        uint32_t *idx = NULL;
        if (k->nrulesets > 0) {
            idx = bw_arena_alloc(a, k->nrulesets * sizeof *idx);
            if (!idx)
                return bw__rb_fail(err, "out of memory building the rulebook");
        }
        for (size_t i = 0; i < k->nrulesets; i++)
            if (!find_set(sets, nsets, k->ruleset_ids[i], &idx[i])) {
                idx[i] = NO_SET;
                if (m->ids_known)
                    st = fail_at(err, s, r->action_pos,
                                 "rule \"" ID_FMT "\": skip target ruleset \"" ID_FMT
                                 "\" does not exist",
                                 ID_ARG(r->id), ID_ARG(k->ruleset_ids[i]));
            }
        k->rulesets = idx;
    }
    return st;
}

/* ---- execute graph: cycles and depth --------------------------------------------- */

enum color { WHITE, GREY, BLACK };

struct graph {
    const struct bw_ruleset *sets;
    size_t nsets;
    uint8_t *color;
    uint32_t *height;           /* longest execute chain below a ruleset (BLACK ones) */
    uint32_t *stack;            /* the DFS path, for the cycle message */
    const struct bw_rule **via; /* via[d]: the execute rule leaving stack[d] */
    size_t depth;
};

static void append(char *buf, size_t cap, size_t *o, const char *fmt, ...) BW_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *o, const char *fmt, ...)
{
    if (*o >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *o, cap - *o, fmt, ap);
    va_end(ap);
    if (w > 0)
        *o = (size_t)w >= cap - *o ? cap : *o + (size_t)w;
}

/* Depth-first over execute edges. The recursion follows the path of
 * rulesets, so it is bounded by their number (BW_RULES_MAX_RULESETS). A
 * cycle is reported and its closing edge passed over, so the walk goes on
 * and finds the others. Returns whether a cycle was found below v. */
static bool visit(struct graph *g, uint32_t v, struct bw__rb_sink *err)
{
    const struct bw_ruleset *s = &g->sets[v];
    g->color[v] = GREY;
    g->stack[g->depth] = v;
    uint32_t h = 0;
    bool cycle = false;
    for (size_t i = 0; i < s->nrules; i++) {
        const struct bw_rule *r = &s->rules[i];
        if (r->action.kind != BW_ACTION_EXECUTE || r->action.u.execute.ruleset == NO_SET)
            continue;
        uint32_t t = r->action.u.execute.ruleset;
        g->via[g->depth] = r;
        if (g->color[t] == GREY) {
            size_t from = 0;
            while (g->stack[from] != t)
                from++;
            char chain[400];
            size_t o = 0;
            for (size_t d = from; d <= g->depth; d++)
                append(chain, sizeof chain, &o, ID_FMT " -> ", ID_ARG(g->sets[g->stack[d]].id));
            append(chain, sizeof chain, &o, ID_FMT, ID_ARG(g->sets[t].id));
            const struct bw_ruleset *at = &g->sets[g->stack[from]];
            (void)fail_at(err, at, g->via[from]->action_pos, "execute cycle: %s", chain);
            cycle = true;
            continue;
        }
        if (g->color[t] == WHITE) {
            g->depth++;
            cycle |= visit(g, t, err);
            g->depth--;
        }
        if (g->height[t] + 1 > h)
            h = g->height[t] + 1;
    }
    g->height[v] = h;
    g->color[v] = BLACK;
    return cycle;
}

/* The first ruleset (in the order given) with more nested executes below it
 * than allowed, with the chain that makes it so: one chain is one problem,
 * though every ruleset above its middle is over the limit too. */
static bw_status check_depth(const struct graph *g, struct bw__rb_sink *err)
{
    for (size_t v = 0; v < g->nsets; v++) {
        if (g->height[v] <= BW_RULES_MAX_EXECUTE_DEPTH)
            continue;
        char chain[400];
        size_t o = 0;
        uint32_t cur = (uint32_t)v;
        const struct bw_rule *first = NULL;
        append(chain, sizeof chain, &o, ID_FMT, ID_ARG(g->sets[cur].id));
        while (g->height[cur] > 0) {
            const struct bw_ruleset *s = &g->sets[cur];
            for (size_t i = 0; i < s->nrules; i++) {
                const struct bw_rule *r = &s->rules[i];
                if (r->action.kind == BW_ACTION_EXECUTE && r->action.u.execute.ruleset != NO_SET &&
                    g->height[r->action.u.execute.ruleset] + 1 == g->height[cur]) {
                    if (!first)
                        first = r;
                    cur = r->action.u.execute.ruleset;
                    break;
                }
            }
            append(chain, sizeof chain, &o, " -> " ID_FMT, ID_ARG(g->sets[cur].id));
        }
        assert(first);
        return fail_at(err, &g->sets[v], first->action_pos,
                       "execute depth %u below ruleset \"" ID_FMT "\" is over the limit of %d: %s",
                       g->height[v], ID_ARG(g->sets[v].id), BW_RULES_MAX_EXECUTE_DEPTH, chain);
    }
    return BW_OK;
}

/* ---- build ------------------------------------------------------------------------ */

/* Every problem is reported and the walk goes on, except past the ruleset
 * limit, where the rulesets beyond it are not looked at. */
static bw_status check_sets(bw_arena *a, struct bw_ruleset *sets, size_t nsets, size_t *ret_nrules,
                            const struct mode *m, struct bw__rb_sink *err)
{
    if (nsets > BW_RULES_MAX_RULESETS)
        return fail_at(err, &sets[BW_RULES_MAX_RULESETS], sets[BW_RULES_MAX_RULESETS].pos,
                       "ruleset \"" ID_FMT "\" is one too many: at most %d rulesets are allowed",
                       ID_ARG(sets[BW_RULES_MAX_RULESETS].id), BW_RULES_MAX_RULESETS);
    size_t before = err->count;
    size_t total = 0;
    bool total_said = false;
    for (size_t i = 0; i < nsets; i++) {
        struct bw_ruleset *s = &sets[i];
        s->index = (uint32_t)i;
        s->executed = false;
        for (size_t j = 0; j < i && s->id.len > 0; j++)
            if (bw_slice_eq(sets[j].id, s->id)) {
                (void)fail_at(err, s, s->pos,
                              "duplicate ruleset id \"" ID_FMT "\" (first in %.*s at line %u)",
                              ID_ARG(s->id), (int)(sets[j].file.len > 200 ? 200 : sets[j].file.len),
                              sets[j].file.ptr, sets[j].pos.line);
                break;
            }
        total += s->nrules;
        if (total > BW_RULES_MAX_TOTAL_RULES && !total_said) {
            (void)fail_at(err, s, s->pos,
                          "ruleset \"" ID_FMT "\" brings the rules of all rulesets to %zu, over "
                          "the limit of %d",
                          ID_ARG(s->id), total, BW_RULES_MAX_TOTAL_RULES);
            total_said = true;
        }
        if (m->links_only)
            continue;
        if (s->nrules > BW_RULES_MAX_RULES)
            (void)fail_at(err, s, s->pos,
                          "ruleset \"" ID_FMT "\" has %zu rules, over the limit of %d",
                          ID_ARG(s->id), s->nrules, BW_RULES_MAX_RULES);
        if (s->ntests > BW_RULES_MAX_TESTS)
            (void)fail_at(err, s, s->pos,
                          "ruleset \"" ID_FMT "\" has %zu tests, over the limit of %d",
                          ID_ARG(s->id), s->ntests, BW_RULES_MAX_TESTS);
        if (!phase_known(s->phase))
            (void)fail_at(err, s, s->pos, "ruleset \"" ID_FMT "\" has no valid phase",
                          ID_ARG(s->id));
    }
    for (size_t i = 0; i < nsets; i++) {
        struct bw_ruleset *s = &sets[i];
        if (!m->links_only && !phase_known(s->phase))
            continue; /* said above; its rules would only repeat it */
        for (size_t k = 0; k < s->nrules; k++) {
            struct bw_rule *r = &s->rules[k];
            if (m->links_only) {
                if (r->action.kind != BW_ACTION__COUNT)
                    (void)resolve_rule(a, sets, nsets, s, r, m, err);
                continue;
            }
            for (size_t j = 0; j < k; j++)
                if (bw_slice_eq(s->rules[j].id, r->id)) {
                    (void)fail_at(err, s, r->pos,
                                  "duplicate rule id \"" ID_FMT "\" in ruleset \"" ID_FMT
                                  "\" (first at line %u)",
                                  ID_ARG(r->id), ID_ARG(s->id), s->rules[j].pos.line);
                    break;
                }
            if (!r->expr || r->expr->phase != s->phase)
                (void)fail_at(err, s, r->pos,
                              "rule \"" ID_FMT "\" has no expression checked for the %s phase",
                              ID_ARG(r->id), bw_rules_phase_name(s->phase));
            (void)resolve_rule(a, sets, nsets, s, r, m, err);
        }
    }
    *ret_nrules = total;
    return err->count == before ? BW_OK : BW_ERR;
}

static bw_status check_graph(bw_arena *a, const struct bw_ruleset *sets, size_t nsets,
                             struct bw__rb_sink *err)
{
    struct graph g = {.sets = sets, .nsets = nsets};
    size_t n = nsets ? nsets : 1;
    g.color = bw_arena_alloc(a, n);
    g.height = bw_arena_alloc(a, n * sizeof *g.height);
    g.stack = bw_arena_alloc(a, n * sizeof *g.stack);
    g.via = bw_arena_alloc(a, n * sizeof *g.via);
    if (!g.color || !g.height || !g.stack || !g.via)
        return bw__rb_fail(err, "out of memory building the rulebook");
    bool cycle = false;
    for (size_t v = 0; v < nsets; v++)
        if (g.color[v] == WHITE)
            cycle |= visit(&g, (uint32_t)v, err);
    /* Heights along a cycle mean nothing: depth is checked once there is none. */
    if (cycle)
        return BW_ERR;
    return check_depth(&g, err);
}

static bw_status build(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                       const struct bw_route_match *routes, size_t nroutes,
                       struct bw_rulebook **ret, struct bw__rb_sink *sink)
{
    size_t nrules = 0;
    const struct mode full = {.links_only = false, .ids_known = true};
    bw_status sets_ok = check_sets(a, sets, nsets, &nrules, &full, sink);
    if (nsets > BW_RULES_MAX_RULESETS)
        return BW_ERR;
    /* Cycles are independent of the other problems: look for them too. */
    bw_status graph_ok = check_graph(a, sets, nsets, sink);
    if (sets_ok != BW_OK || graph_ok != BW_OK)
        return BW_ERR;

    struct bw_rulebook *book = bw_arena_alloc(a, sizeof *book);
    const struct bw_rule **rules = bw_arena_alloc(a, (nrules ? nrules : 1) * sizeof *rules);
    uint32_t *route_expr = bw_arena_alloc(a, (nroutes ? nroutes : 1) * sizeof *route_expr);
    const struct bw_rules_expr **exprs[BW_RULES_PHASE__COUNT];
    uint32_t *top[BW_RULES_PHASE__COUNT];
    size_t nexprs[BW_RULES_PHASE__COUNT] = {0};
    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++) {
        size_t cap = nrules + (ph == BW_RULES_PHASE_REQUEST ? nroutes : 0);
        exprs[ph] = bw_arena_alloc(a, (cap ? cap : 1) * sizeof *exprs[ph]);
        top[ph] = bw_arena_alloc(a, (nsets ? nsets : 1) * sizeof *top[ph]);
        if (!exprs[ph] || !top[ph])
            return bw__rb_fail(sink, "out of memory building the rulebook");
    }
    if (!book || !rules || !route_expr)
        return bw__rb_fail(sink, "out of memory building the rulebook");

    uint64_t *disabled = bw_arena_alloc(a, ((nrules + 63) / 64 + 1) * sizeof *disabled);
    if (!disabled)
        return bw__rb_fail(sink, "out of memory building the rulebook");
    size_t g = 0;
    for (size_t i = 0; i < nsets; i++) {
        struct bw_ruleset *s = &sets[i];
        if (!s->executed)
            top[s->phase][book->ntop[s->phase]++] = (uint32_t)i;
        for (size_t k = 0; k < s->nrules; k++) {
            struct bw_rule *r = &s->rules[k];
            r->index = (uint32_t)g;
            r->ruleset = (uint32_t)i;
            r->expr_index = (uint32_t)nexprs[s->phase];
            exprs[s->phase][nexprs[s->phase]++] = r->expr;
            if (!r->enabled)
                disabled[g / 64] |= (uint64_t)1 << (g % 64);
            rules[g++] = r;
            if (r->action.kind == BW_ACTION_RATE_LIMIT)
                book->has_rate_limits = true;
        }
    }
    for (size_t i = 0; i < nroutes; i++) {
        if (!routes[i].has_match)
            continue;
        if (!routes[i].expr || routes[i].expr->phase != BW_RULES_PHASE_REQUEST)
            return bw__rb_fail(sink, "route %zu: its match is not a request-phase expression",
                               i + 1);
        route_expr[i] = (uint32_t)nexprs[BW_RULES_PHASE_REQUEST];
        exprs[BW_RULES_PHASE_REQUEST][nexprs[BW_RULES_PHASE_REQUEST]++] = routes[i].expr;
    }

    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++) {
        bw_error cerr;
        if (bw_rules_compile(a, exprs[ph], nexprs[ph], &book->prog[ph], &cerr) != BW_OK) {
            for (int k = 0; k < ph; k++)
                book->prog[k] = bw_rules_prog_free(book->prog[k]);
            return bw__rb_fail(sink, "cannot compile the %s-phase rules: %s",
                               bw_rules_phase_name((enum bw_rules_phase)ph), cerr.msg);
        }
        book->top[ph] = top[ph];
    }
    book->rulesets = sets;
    book->nrulesets = nsets;
    book->rules = rules;
    book->nrules = nrules;
    book->routes = routes;
    book->route_expr = route_expr;
    book->nroutes = nroutes;
    book->disabled = disabled;
    *ret = book;
    return BW_OK;
}

bw_status bw_rulebook_build(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                            const struct bw_route_match *routes, size_t nroutes,
                            struct bw_rulebook **ret, bw_error *err)
{
    struct bw__rb_sink sink = {.first = err};
    return build(a, sets, nsets, routes, nroutes, ret, &sink);
}

bw_status bw_rulebook_build_all(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                                const struct bw_route_match *routes, size_t nroutes,
                                struct bw_rulebook **ret, struct bw_rulebook_errors *errs)
{
    errs->n = 0;
    errs->dropped = 0;
    struct bw__rb_sink sink = {.all = errs};
    return build(a, sets, nsets, routes, nroutes, ret, &sink);
}

bw_status bw_rulebook_check_links(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                                  struct bw_rulebook_errors *errs)
{
    errs->n = 0;
    errs->dropped = 0;
    struct bw__rb_sink sink = {.all = errs};
    struct mode m = {.links_only = true, .ids_known = true};
    for (size_t i = 0; i < nsets; i++)
        if (sets[i].id.len == 0)
            m.ids_known = false;
    size_t nrules;
    (void)check_sets(a, sets, nsets, &nrules, &m, &sink);
    if (nsets <= BW_RULES_MAX_RULESETS)
        (void)check_graph(a, sets, nsets, &sink);
    return sink.count ? BW_ERR : BW_OK;
}

struct bw_rulebook *bw_rulebook_free(struct bw_rulebook *book)
{
    if (!book)
        return NULL;
    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++)
        book->prog[ph] = bw_rules_prog_free(book->prog[ph]);
    return NULL;
}

bw_status bw_killset_alloc(bw_arena *a, const struct bw_rulebook *book, struct bw_killset *ret)
{
    size_t nr = (book->nrules + 63) / 64, ns = (book->nrulesets + 63) / 64;
    /* Always at least one word, so a reader never needs to ask whether
     * there is one. */
    _Atomic uint64_t *r = bw_arena_alloc(a, (nr ? nr : 1) * sizeof *r);
    _Atomic uint64_t *s = bw_arena_alloc(a, (ns ? ns : 1) * sizeof *s);
    if (!r || !s)
        return BW_ERR;
    ret->rules = r;
    ret->rulesets = s;
    return BW_OK;
}

const char *bw_rule_outcome_name(enum bw_rule_outcome o)
{
    switch (o) {
    case BW_OUTCOME_FIRED:
        return "fired";
    case BW_OUTCOME_NOT_MATCHED:
        return "not_matched";
    case BW_OUTCOME_UNKNOWN:
        return "unknown";
    case BW_OUTCOME_DISABLED:
        return "disabled";
    case BW_OUTCOME_KILLED:
        return "killed";
    case BW_OUTCOME_RULESET_DISABLED:
        return "ruleset_disabled";
    case BW_OUTCOME_RULESET_KILLED:
        return "ruleset_killed";
    case BW_OUTCOME_RULESET_SKIPPED:
        return "ruleset_skipped";
    case BW_OUTCOME__COUNT:
        break;
    }
    return "?";
}

const char *bw_action_name(enum bw_action_kind k)
{
    switch (k) {
    case BW_ACTION_BLOCK:
        return "block";
    case BW_ACTION_LOG:
        return "log";
    case BW_ACTION_SKIP:
        return "skip";
    case BW_ACTION_EXECUTE:
        return "execute";
    case BW_ACTION_RATE_LIMIT:
        return "rate_limit";
    case BW_ACTION_REDIRECT:
        return "redirect";
    case BW_ACTION_REWRITE:
        return "rewrite";
    case BW_ACTION_SET_HEADER:
        return "set_header";
    case BW_ACTION_REMOVE_HEADER:
        return "remove_header";
    case BW_ACTION__COUNT:
        break;
    }
    return "?";
}
