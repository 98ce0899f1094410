/* The rulebook: build-time validation across rulesets, and running a book
 * over requests (every action, every declared outcome, three-valued firing,
 * skips across phases, effects, rate limits, redirects, routes, counters).
 * Rulesets are built by hand here; config/rulesets.c's YAML is tested in
 * tests/unit/config/test_rulesets.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rules/ruleset.h"
#include "test.h"

/* Rule specs below leave `disabled` out unless it is set. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static bw_arena A; /* the "snapshot" arena of the current test */

static void fresh(void)
{
    bw_arena_reset(&A);
    bw_arena_init(&A, 64 * 1024, 0);
}

static const struct bw_rules_expr *expr(const char *text, enum bw_rules_phase ph)
{
    static const struct bw_rules_srcpos at = {
        .file = BW_SLICE_LIT("t.yaml"), .line = 1, .col = 1, .cont_col = 1};
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    if (bw_rules_parse(&A, bw_slice_make(text, strlen(text)), ph, &at, &e, &d) != BW_OK) {
        printf("bad test expression: %s\n", d.text);
        abort();
    }
    return e;
}

static bw_slice S(const char *s)
{
    return bw_slice_make(s, strlen(s));
}

/* ---- actions ------------------------------------------------------------------- */

static struct bw_action block(uint16_t status)
{
    return (struct bw_action){.kind = BW_ACTION_BLOCK, .u.block = {.status = status}};
}
static struct bw_action log_(void)
{
    return (struct bw_action){.kind = BW_ACTION_LOG};
}
static struct bw_action skip_rest(void)
{
    return (struct bw_action){.kind = BW_ACTION_SKIP, .u.skip = {.scope = BW_SKIP_REST}};
}
static struct bw_action skip_sets(const char *a, const char *b, uint32_t modules)
{
    bw_slice *ids = bw_arena_alloc(&A, 2 * sizeof *ids);
    size_t n = 0;
    if (a)
        ids[n++] = S(a);
    if (b)
        ids[n++] = S(b);
    return (struct bw_action){
        .kind = BW_ACTION_SKIP,
        .u.skip = {
            .scope = BW_SKIP_TARGETS, .ruleset_ids = ids, .nrulesets = n, .modules = modules}};
}
static struct bw_action exec(const char *id)
{
    return (struct bw_action){.kind = BW_ACTION_EXECUTE, .u.execute = {.ruleset_id = S(id)}};
}
static struct bw_action rate(uint64_t requests, enum bw_rl_characteristic_kind k, const char *hdr)
{
    struct bw_rl_characteristic *c = bw_arena_alloc(&A, sizeof *c);
    c->kind = k;
    if (hdr)
        c->header = S(hdr);
    return (struct bw_action){
        .kind = BW_ACTION_RATE_LIMIT,
        .u.rate_limit = {
            .chars = c, .nchars = 1, .requests = requests, .period_ms = 60000, .status = 429}};
}
static struct bw_action redirect(uint16_t status, const char *loc, bool pq)
{
    return (struct bw_action){
        .kind = BW_ACTION_REDIRECT,
        .u.redirect = {.status = status, .location = S(loc), .preserve_query = pq}};
}
static struct bw_action rewrite_path(const char *path)
{
    return (struct bw_action){.kind = BW_ACTION_REWRITE,
                              .u.rewrite = {.has_path = true, .path = S(path)}};
}
static struct bw_action set_hdr(const char *n, const char *v)
{
    return (struct bw_action){.kind = BW_ACTION_SET_HEADER,
                              .u.set_header = {.kind = BW_HEADER_SET, .name = S(n), .value = S(v)}};
}
static struct bw_action remove_hdr(const char *n)
{
    return (struct bw_action){.kind = BW_ACTION_REMOVE_HEADER,
                              .u.remove_header = {.kind = BW_HEADER_REMOVE, .name = S(n)}};
}

/* ---- rulesets -------------------------------------------------------------------- */

struct rspec {
    const char *id;
    const char *expr;
    struct bw_action act;
    bool disabled;
};

/* Rule i of a ruleset sits at line i + 3 of "<id>.yaml", its action at
 * column 13, as a loaded one would. */
static struct bw_ruleset mkset(const char *id, enum bw_rules_phase ph, const struct rspec *rs,
                               size_t n)
{
    struct bw_ruleset s = {.id = S(id), .phase = ph, .enabled = true, .pos = {1, 5}};
    char *file = bw_arena_alloc(&A, strlen(id) + 6);
    sprintf(file, "%s.yaml", id);
    s.file = S(file);
    s.rules = bw_arena_alloc(&A, (n ? n : 1) * sizeof *s.rules);
    s.nrules = n;
    for (size_t i = 0; i < n; i++) {
        struct bw_rule *r = &s.rules[i];
        r->id = S(rs[i].id);
        r->enabled = !rs[i].disabled;
        r->expr = expr(rs[i].expr, ph);
        r->action = rs[i].act;
        r->pos = (struct bw_rules_pos){(uint32_t)i + 3, 7};
        r->action_pos = (struct bw_rules_pos){(uint32_t)i + 3, 13};
    }
    return s;
}

#define SPECS(...)                                                                                 \
    (const struct rspec[])                                                                         \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define NSPECS(...) (sizeof((const struct rspec[]){__VA_ARGS__}) / sizeof(struct rspec))
#define REQ_SET(id, ...) mkset(id, BW_RULES_PHASE_REQUEST, SPECS(__VA_ARGS__), NSPECS(__VA_ARGS__))
#define RESP_SET(id, ...)                                                                          \
    mkset(id, BW_RULES_PHASE_RESPONSE, SPECS(__VA_ARGS__), NSPECS(__VA_ARGS__))

/* ---- requests ------------------------------------------------------------------ */

struct req {
    struct bw_rv_header h[16];
    struct bw_rv_header rh[8];
    struct bw_request_view v;
};

static void req_init(struct req *r, const char *method, const char *target)
{
    memset(r, 0, sizeof *r);
    r->v.method = S(method);
    r->v.uri = S(target);
    const char *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    r->v.raw_path = bw_slice_make(target, plen);
    r->v.query = q ? S(q + 1) : BW_SLICE_EMPTY;
    r->v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("a.example")};
    r->v.headers.items = r->h;
    r->v.response_headers.items = r->rh;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->v.src.addr;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(0xC0000201);
    r->v.src.known = true;
}

static void req_header(struct req *r, const char *name, const char *value)
{
    r->h[r->v.headers.n++] = (struct bw_rv_header){S(name), S(value)};
}

static void req_response(struct req *r, int code)
{
    r->v.has_response = true;
    r->v.response_code = code;
}

/* ---- running ------------------------------------------------------------------- */

struct limiter {
    uint64_t keys[16];
    uint64_t counts[16];
    size_t n;
    bool fail;
    uint64_t last_now;
};

static enum bw_rl_decision fake_hit(void *self, const struct bw_rule *rule, uint64_t key,
                                    uint64_t now_ms, uint64_t *retry_after_s)
{
    struct limiter *l = self;
    l->last_now = now_ms;
    if (l->fail)
        return BW_RL_FAILED;
    size_t i = 0;
    while (i < l->n && l->keys[i] != key)
        i++;
    if (i == l->n) {
        l->keys[l->n] = key;
        l->counts[l->n++] = 0;
    }
    if (++l->counts[i] > rule->action.u.rate_limit.requests) {
        *retry_after_s = 7;
        return BW_RL_OVER;
    }
    return BW_RL_UNDER;
}

struct tracebuf {
    char s[1024];
    size_t o;
};

static void on_step(void *self, const struct bw_rules_trace_step *s)
{
    struct tracebuf *t = self;
    int w;
    if (s->is_ruleset)
        w = snprintf(t->s + t->o, sizeof t->s - t->o, "%s{%.*s%s%s}", t->o ? " " : "",
                     (int)s->ruleset->id.len, s->ruleset->id.ptr,
                     s->outcome == BW_OUTCOME_FIRED ? "" : ":",
                     s->outcome == BW_OUTCOME_FIRED ? "" : bw_rule_outcome_name(s->outcome));
    else
        w = snprintf(t->s + t->o, sizeof t->s - t->o, "%s%.*s=%s", t->o ? " " : "",
                     (int)s->rule->id.len, s->rule->id.ptr, bw_rule_outcome_name(s->outcome));
    if (w > 0 && (size_t)w < sizeof t->s - t->o)
        t->o += (size_t)w;
}

struct fx {
    struct bw_rulebook *book;
    bw_regex_scratch scratch;
    struct bw_killset kills;
    struct limiter lim;
    _Atomic uint64_t counts[64];
    struct bw_rules_env env;
    struct bw_rules_request st;
    bw_arena ra;
    struct tracebuf tb;
    struct bw_rules_verdict v;
};

static bool fx_build(struct fx *f, struct bw_ruleset *sets, size_t n,
                     const struct bw_route_match *routes, size_t nroutes)
{
    memset(f, 0, sizeof *f);
    bw_error err;
    if (bw_rulebook_build(&A, sets, n, routes, nroutes, &f->book, &err) != BW_OK) {
        printf("build: %s\n", err.msg);
        return false;
    }
    bw_regex_scratch_init(&f->scratch);
    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++)
        if (bw_rules_prog_reserve(f->book->prog[ph], &f->scratch, &err) != BW_OK)
            return false;
    if (bw_killset_alloc(&A, f->book, &f->kills) != BW_OK)
        return false;
    f->env = (struct bw_rules_env){.limiter = {.hit = fake_hit, .self = &f->lim},
                                   .kills = f->kills,
                                   .now_ms = 1000,
                                   .match_counts = f->counts,
                                   .tracing = true,
                                   .tracer = {.step = on_step, .self = &f->tb}};
    bw_rules_request_init(&f->st);
    bw_arena_init(&f->ra, 4096, 64 * 1024);
    return true;
}

static void fx_done(struct fx *f)
{
    bw_arena_reset(&f->ra);
    bw_regex_scratch_done(&f->scratch);
    f->book = bw_rulebook_free(f->book);
}

static bool same_verdict(const struct bw_rules_verdict *a, const struct bw_rules_verdict *b)
{
    if (a->kind != b->kind || a->has_rule != b->has_rule || a->rule != b->rule ||
        a->ruleset != b->ruleset || a->status != b->status || a->has_body != b->has_body ||
        !bw_slice_eq(a->body, b->body) || !bw_slice_eq(a->location, b->location) ||
        a->retry_after_s != b->retry_after_s || a->neffects != b->neffects ||
        a->fired != b->fired || a->has_last_fired != b->has_last_fired ||
        a->last_fired != b->last_fired)
        return false;
    for (size_t i = 0; i < a->neffects; i++)
        if (a->effects[i] != b->effects[i])
            return false;
    return true;
}

/* Runs one phase; the trace of this run is in f->tb. The phase is run
 * twice: first untraced, on copies of the request state, the limiter and
 * the counters (bw_rulebook_run then evaluates the rules between two
 * disabled or killed ones in one call), then as the test set it up (traced:
 * rule by rule). Both must come to the same verdict, state, counts, limiter
 * calls, and no more evaluation work. */
static void fx_run(struct fx *f, enum bw_rules_phase ph, const struct req *r)
{
    struct bw_rules_request st2 = f->st;
    struct limiter lim2 = f->lim;
    static _Atomic uint64_t counts2[64];
    for (size_t i = 0; i < 64; i++)
        counts2[i] = f->counts[i];
    struct bw_rules_env env2 = f->env;
    env2.tracing = false;
    if (env2.limiter.self == &f->lim)
        env2.limiter.self = &lim2;
    if (env2.match_counts == f->counts)
        env2.match_counts = counts2;
    struct bw_rules_verdict v2;
    struct bw_rules_ctx cx2;
    bw_rules_ctx_init(&cx2, f->book->prog[ph], &r->v, &f->ra, &f->scratch);
    bw_rulebook_run(f->book, ph, &cx2, &env2, &st2, &v2);

    f->tb.o = 0;
    f->tb.s[0] = '\0';
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, f->book->prog[ph], &r->v, &f->ra, &f->scratch);
    bw_rulebook_run(f->book, ph, &cx, &f->env, &f->st, &f->v);

    if (!same_verdict(&v2, &f->v))
        T_FAILF("untraced run: verdict %d (fired %u), traced: %d (fired %u)", (int)v2.kind,
                v2.fired, (int)f->v.kind, f->v.fired);
    if (memcmp(&st2, &f->st, sizeof st2) != 0)
        T_FAILF("untraced run: request state differs");
    for (size_t i = 0; i < 64 && f->env.match_counts == f->counts; i++)
        if (counts2[i] != f->counts[i])
            T_FAILF("untraced run: match count of rule %zu differs", i);
    if (lim2.n != f->lim.n || lim2.last_now != f->lim.last_now ||
        memcmp(lim2.keys, f->lim.keys, sizeof lim2.keys) != 0 ||
        memcmp(lim2.counts, f->lim.counts, sizeof lim2.counts) != 0)
        T_FAILF("untraced run: rate limiter calls differ");
    /* Untraced, what cannot be true is passed over: no more work. */
    if (cx2.stats.regex_scans > cx.stats.regex_scans ||
        cx2.stats.extractions > cx.stats.extractions ||
        cx2.stats.arena_failures > cx.stats.arena_failures)
        T_FAILF("untraced run: more evaluation work (scans %llu/%llu, extractions %llu/%llu)",
                (unsigned long long)cx2.stats.regex_scans, (unsigned long long)cx.stats.regex_scans,
                (unsigned long long)cx2.stats.extractions,
                (unsigned long long)cx.stats.extractions);
}

static void kill_rule(struct fx *f, uint32_t i)
{
    atomic_fetch_or((_Atomic uint64_t *)&f->kills.rules[i / 64], (uint64_t)1 << (i % 64));
}

static void kill_set(struct fx *f, uint32_t i)
{
    atomic_fetch_or((_Atomic uint64_t *)&f->kills.rulesets[i / 64], (uint64_t)1 << (i % 64));
}

static bool build_fails(struct bw_ruleset *sets, size_t n, const char *want)
{
    struct bw_rulebook *book;
    bw_error err;
    if (bw_rulebook_build(&A, sets, n, NULL, 0, &book, &err) == BW_OK) {
        printf("     built, expected: %s\n", want);
        book = bw_rulebook_free(book);
        return false;
    }
    if (strcmp(err.msg, want) != 0) {
        printf("     got:  %s\n     want: %s\n", err.msg, want);
        return false;
    }
    return true;
}

/* ---- build -------------------------------------------------------------------------- */

TEST(build_refuses_duplicates_and_missing_targets)
{
    fresh();
    struct bw_ruleset s1[] = {REQ_SET("a", {"x", "true", log_()}),
                              REQ_SET("a", {"y", "true", log_()})};
    CHECK(build_fails(s1, 2,
                      "a.yaml:1:5: error: duplicate ruleset id \"a\" (first in a.yaml at line 1)"));
    struct bw_ruleset s2[] = {REQ_SET("a", {"x", "true", log_()}, {"x", "ssl", log_()})};
    CHECK(build_fails(
        s2, 1, "a.yaml:4:7: error: duplicate rule id \"x\" in ruleset \"a\" (first at line 3)"));
    struct bw_ruleset s3[] = {REQ_SET("a", {"x", "true", exec("nope")})};
    CHECK(build_fails(
        s3, 1, "a.yaml:3:13: error: rule \"x\": execute target ruleset \"nope\" does not exist"));
    struct bw_ruleset s4[] = {REQ_SET("a", {"x", "true", skip_sets("a", "gone", 0)})};
    CHECK(build_fails(
        s4, 1, "a.yaml:3:13: error: rule \"x\": skip target ruleset \"gone\" does not exist"));
}

TEST(build_refuses_actions_and_targets_of_the_wrong_phase)
{
    fresh();
    struct bw_ruleset s1[] = {RESP_SET("r", {"x", "true", rewrite_path("/b")})};
    CHECK(build_fails(s1, 1,
                      "r.yaml:3:13: error: rule \"x\": rewrite is a request-phase action, but "
                      "ruleset \"r\" is response phase"));
    struct bw_ruleset s2[] = {
        REQ_SET("q", {"x", "true", log_()}, {"y", "true", set_hdr("a", "b")})};
    CHECK(build_fails(s2, 1,
                      "q.yaml:4:13: error: rule \"y\": set_header is a response-phase action, but "
                      "ruleset \"q\" is request phase"));
    struct bw_ruleset s3[] = {REQ_SET("q", {"x", "true", remove_hdr("a")})};
    CHECK(build_fails(s3, 1,
                      "q.yaml:3:13: error: rule \"x\": remove_header is a response-phase action, "
                      "but ruleset \"q\" is request phase"));
    struct bw_ruleset s4[] = {REQ_SET("q", {"x", "true", exec("r")}),
                              RESP_SET("r", {"y", "true", log_()})};
    CHECK(build_fails(s4, 2,
                      "q.yaml:3:13: error: rule \"x\": execute target ruleset \"r\" is response "
                      "phase, but ruleset \"q\" is request phase"));
}

TEST(build_reports_execute_cycles)
{
    fresh();
    struct bw_ruleset s1[] = {REQ_SET("entry", {"x", "true", exec("entry")})};
    CHECK(build_fails(s1, 1, "entry.yaml:3:13: error: execute cycle: entry -> entry"));
    struct bw_ruleset s2[] = {
        REQ_SET("entry", {"l", "true", log_()}, {"run", "true", exec("managed")}),
        REQ_SET("managed", {"back", "true", exec("entry")})};
    CHECK(build_fails(s2, 2, "entry.yaml:4:13: error: execute cycle: entry -> managed -> entry"));
    /* A cycle below the entry point names only the rulesets in it; a
     * disabled execute rule still counts (enabling it is one edit away). */
    struct bw_ruleset s3[] = {REQ_SET("top", {"go", "true", exec("b")}),
                              REQ_SET("b", {"to-c", "true", exec("c")}),
                              REQ_SET("c", {"to-b", "true", exec("b"), .disabled = true})};
    CHECK(build_fails(s3, 3, "b.yaml:3:13: error: execute cycle: b -> c -> b"));
}

/* Every problem, in order, as "msg\n" lines; "" when the book built. */
static void build_all(struct bw_ruleset *sets, size_t n, char *out, size_t cap,
                      struct bw_rulebook_errors *e)
{
    struct bw_rulebook *book;
    out[0] = '\0';
    if (bw_rulebook_build_all(&A, sets, n, NULL, 0, &book, e) == BW_OK) {
        book = bw_rulebook_free(book);
        return;
    }
    size_t o = 0;
    for (size_t i = 0; i < e->n && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s\n", e->items[i].msg);
        if (w > 0)
            o += (size_t)w;
    }
}

TEST(build_reports_every_problem)
{
    fresh();
    static struct bw_rulebook_errors e;
    char got[4096];
    /* three independent bad rules, a good one between them, and a cycle
     * elsewhere: each is reported, the missing target not again as part of
     * the graph */
    struct bw_ruleset s1[] = {
        REQ_SET("a", {"x", "true", exec("nope")}, {"ok", "true", log_()},
                {"y", "true", skip_sets("a", "gone", 0)}, {"z", "true", set_hdr("h", "v")}),
        REQ_SET("b", {"to-c", "true", exec("c")}), REQ_SET("c", {"to-b", "true", exec("b")})};
    build_all(s1, 3, got, sizeof got, &e);
    CHECK_STR_EQ(got, "a.yaml:3:13: error: rule \"x\": execute target ruleset \"nope\" does not "
                      "exist\n"
                      "a.yaml:5:13: error: rule \"y\": skip target ruleset \"gone\" does not "
                      "exist\n"
                      "a.yaml:6:13: error: rule \"z\": set_header is a response-phase action, but "
                      "ruleset \"a\" is request phase\n"
                      "b.yaml:3:13: error: execute cycle: b -> c -> b\n");
    CHECK_INT_EQ(e.n, 4);
    CHECK_INT_EQ(e.dropped, 0);
    /* the single-error form still says the first */
    CHECK(build_fails(s1, 3,
                      "a.yaml:3:13: error: rule \"x\": execute target ruleset \"nope\" does not "
                      "exist"));
    /* duplicates of both kinds, with the rest still checked */
    struct bw_ruleset s2[] = {REQ_SET("d", {"x", "true", log_()}, {"x", "true", exec("gone")}),
                              REQ_SET("d", {"y", "true", log_()})};
    build_all(s2, 2, got, sizeof got, &e);
    CHECK_STR_EQ(got, "d.yaml:1:5: error: duplicate ruleset id \"d\" (first in d.yaml at line 1)\n"
                      "d.yaml:4:7: error: duplicate rule id \"x\" in ruleset \"d\" (first at line "
                      "3)\n"
                      "d.yaml:4:13: error: rule \"x\": execute target ruleset \"gone\" does not "
                      "exist\n");
    /* two separate cycles */
    struct bw_ruleset s3[] = {REQ_SET("p", {"self", "true", exec("p")}),
                              REQ_SET("q", {"self", "true", exec("q")})};
    build_all(s3, 2, got, sizeof got, &e);
    CHECK_STR_EQ(got, "p.yaml:3:13: error: execute cycle: p -> p\n"
                      "q.yaml:3:13: error: execute cycle: q -> q\n");
}

TEST(build_errors_are_bounded)
{
    fresh();
    static struct bw_rulebook_errors e;
    char got[16384];
    /* at the bound: all of them, none dropped; one past: one dropped */
    for (size_t n = BW_RULEBOOK_MAX_ERRORS; n <= BW_RULEBOOK_MAX_ERRORS + 1; n++) {
        struct rspec *rs = bw_arena_alloc(&A, n * sizeof *rs);
        for (size_t i = 0; i < n; i++)
            rs[i] = (struct rspec){"r", "true", exec("nope")};
        struct bw_ruleset s = mkset("big", BW_RULES_PHASE_REQUEST, rs, n);
        for (size_t i = 0; i < n; i++) { /* distinct ids: only the targets are wrong */
            char *id = bw_arena_alloc(&A, 8);
            snprintf(id, 8, "r%zu", i);
            s.rules[i].id = S(id);
        }
        build_all(&s, 1, got, sizeof got, &e);
        CHECK_INT_EQ(e.n, BW_RULEBOOK_MAX_ERRORS);
        CHECK_INT_EQ(e.dropped, n - BW_RULEBOOK_MAX_ERRORS);
        CHECK_STR_EQ(e.items[BW_RULEBOOK_MAX_ERRORS - 1].msg,
                     "big.yaml:22:13: error: rule \"r19\": execute target ruleset \"nope\" does "
                     "not exist");
    }
}

/* A chain s0 -> s1 -> ... -> s<n-1>: n - 1 nested executes. */
static size_t chain(struct bw_ruleset *sets, size_t n)
{
    static char names[16][8];
    for (size_t i = 0; i < n; i++) {
        sprintf(names[i], "s%zu", i);
        if (i + 1 < n) {
            static char next[16][8];
            sprintf(next[i], "s%zu", i + 1);
            sets[i] = REQ_SET(names[i], {"go", "true", exec(next[i])});
        } else {
            sets[i] = REQ_SET(names[i], {"end", "true", block(403)});
        }
    }
    return n;
}

TEST(build_execute_depth_at_and_past_the_limit)
{
    fresh();
    struct bw_ruleset sets[16];
    struct fx f;
    size_t n = chain(sets, BW_RULES_MAX_EXECUTE_DEPTH + 1);
    CHECK(fx_build(&f, sets, n, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_SLICE_EQ(f.v.rule->id, "end");
    CHECK_SLICE_EQ(f.v.ruleset->id, "s8");
    CHECK_INT_EQ(f.book->ntop[BW_RULES_PHASE_REQUEST], 1);
    fx_done(&f);

    n = chain(sets, BW_RULES_MAX_EXECUTE_DEPTH + 2);
    CHECK(build_fails(sets, n,
                      "s0.yaml:3:13: error: execute depth 9 below ruleset \"s0\" is over the limit "
                      "of 8: s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> s8 -> s9"));
}

TEST(build_ruleset_and_rule_limits)
{
    fresh();
    static struct bw_ruleset sets[BW_RULES_MAX_RULESETS + 1];
    static char names[BW_RULES_MAX_RULESETS + 1][8];
    const struct bw_rules_expr *t = expr("true", BW_RULES_PHASE_REQUEST);
    struct bw_rule one = {
        .id = BW_SLICE_LIT("r"), .enabled = true, .expr = t, .action = {.kind = BW_ACTION_LOG}};
    for (size_t i = 0; i <= BW_RULES_MAX_RULESETS; i++) {
        sprintf(names[i], "s%zu", i);
        sets[i] = (struct bw_ruleset){.id = S(names[i]),
                                      .file = BW_SLICE_LIT("f.yaml"),
                                      .pos = {i + 1, 1},
                                      .enabled = true,
                                      .rules = &one,
                                      .nrules = 1};
    }
    struct bw_rulebook *book;
    bw_error err;
    CHECK(bw_rulebook_build(&A, sets, BW_RULES_MAX_RULESETS, NULL, 0, &book, &err) == BW_OK);
    CHECK_INT_EQ(book->nrules, BW_RULES_MAX_RULESETS);
    book = bw_rulebook_free(book);
    CHECK(build_fails(sets, BW_RULES_MAX_RULESETS + 1,
                      "f.yaml:257:1: error: ruleset \"s256\" is one too many: at most 256 "
                      "rulesets are allowed"));

    /* Rules in one ruleset and in all: 16 full rulesets are exactly the
     * total limit; one rule more in either is refused. */
    struct bw_rule *many = bw_arena_alloc(&A, (BW_RULES_MAX_RULES + 1) * sizeof *many);
    static char rid[BW_RULES_MAX_RULES + 1][8];
    for (size_t i = 0; i <= BW_RULES_MAX_RULES; i++) {
        sprintf(rid[i], "r%zu", i);
        many[i] = one;
        many[i].id = S(rid[i]);
    }
    sets[0].rules = many;
    sets[0].nrules = BW_RULES_MAX_RULES + 1;
    CHECK(build_fails(sets, 1,
                      "f.yaml:1:1: error: ruleset \"s0\" has 4097 rules, over the limit of 4096"));
    size_t full = BW_RULES_MAX_TOTAL_RULES / BW_RULES_MAX_RULES;
    for (size_t i = 0; i <= full; i++) {
        sets[i].rules = many;
        sets[i].nrules = BW_RULES_MAX_RULES;
    }
    CHECK(bw_rulebook_build(&A, sets, full, NULL, 0, &book, &err) == BW_OK);
    CHECK_INT_EQ(book->nrules, BW_RULES_MAX_TOTAL_RULES);
    book = bw_rulebook_free(book);
    sets[full].nrules = 1;
    CHECK(build_fails(sets, full + 1,
                      "f.yaml:17:1: error: ruleset \"s16\" brings the rules of all rulesets to "
                      "65537, over the limit of 65536"));
}

TEST(build_assigns_indices_top_level_and_routes)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"a", "true", log_()}, {"b", "true", exec("sub")}),
        RESP_SET("resp", {"c", "true", set_hdr("x-a", "1")}),
        REQ_SET("sub", {"d", "true", rate(5, BW_RL_IP_SRC, NULL)}),
    };
    struct bw_route_match routes[] = {
        {.has_match = true, .expr = expr("http.host eq \"b.example\"", BW_RULES_PHASE_REQUEST)},
        {.has_match = true,
         .expr = expr("starts_with(http.request.uri.path, \"/api/\")", BW_RULES_PHASE_REQUEST)},
        {.has_match = false},
    };
    struct fx f;
    CHECK(fx_build(&f, sets, 3, routes, 3));
    CHECK_INT_EQ(f.book->nrules, 4);
    CHECK_INT_EQ(sets[2].rules[0].index, 3);
    CHECK_INT_EQ(sets[2].rules[0].expr_index, 2);
    CHECK_INT_EQ(sets[1].rules[0].expr_index, 0);
    CHECK_INT_EQ(sets[2].rules[0].ruleset, 2);
    CHECK(f.book->rules[3] == &sets[2].rules[0]);
    CHECK(sets[2].executed && !sets[0].executed);
    CHECK_INT_EQ(f.book->ntop[BW_RULES_PHASE_REQUEST], 1);
    CHECK_INT_EQ(f.book->ntop[BW_RULES_PHASE_RESPONSE], 1);
    CHECK(f.book->has_rate_limits);
    CHECK_INT_EQ(bw_rules_prog_count(f.book->prog[BW_RULES_PHASE_REQUEST]), 5);

    struct req r;
    size_t route = 99;
    req_init(&r, "GET", "/api/x");
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, f.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &f.ra, &f.scratch);
    CHECK(bw_rulebook_route(f.book, &cx, &route) == BW_OK);
    CHECK_INT_EQ(route, 1);
    req_init(&r, "GET", "/other");
    bw_rules_ctx_init(&cx, f.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &f.ra, &f.scratch);
    CHECK(bw_rulebook_route(f.book, &cx, &route) == BW_OK);
    CHECK_INT_EQ(route, 2);
    r.v.host.value = BW_SLICE_LIT("b.example");
    bw_rules_ctx_init(&cx, f.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &f.ra, &f.scratch);
    CHECK(bw_rulebook_route(f.book, &cx, &route) == BW_OK);
    CHECK_INT_EQ(route, 0);
    fx_done(&f);

    /* Without a default route, nothing matching is BW_ERR (404). */
    CHECK(fx_build(&f, sets, 3, routes, 2));
    req_init(&r, "GET", "/other");
    bw_rules_ctx_init(&cx, f.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &f.ra, &f.scratch);
    CHECK(bw_rulebook_route(f.book, &cx, &route) == BW_ERR);
    fx_done(&f);
}

/* ---- actions --------------------------------------------------------------------- */

TEST(block_and_log)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("e", {"l", "true", log_()},
                {"admin", "starts_with(http.request.uri.path, \"/admin\")", block(451)},
                {"after", "true", log_()})};
    sets[0].rules[1].action.u.block.has_body = true;
    sets[0].rules[1].action.u.block.body = BW_SLICE_LIT("go away");
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/admin/x");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_INT_EQ(f.v.status, 451);
    CHECK(f.v.has_body && f.v.has_rule);
    CHECK_SLICE_EQ(f.v.body, "go away");
    CHECK_SLICE_EQ(f.v.rule->id, "admin");
    CHECK_INT_EQ(f.v.fired, 2);
    CHECK_STR_EQ(f.tb.s, "{e} l=fired admin=fired");

    req_init(&r, "GET", "/public");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK(!f.v.has_rule);
    CHECK(f.v.has_last_fired);
    CHECK_SLICE_EQ(f.v.last_fired->id, "after");
    CHECK_STR_EQ(f.tb.s, "{e} l=fired admin=not_matched after=fired");
    CHECK_INT_EQ(f.counts[0], 2);
    CHECK_INT_EQ(f.counts[1], 1);
    CHECK_INT_EQ(f.counts[2], 1);
    fx_done(&f);
}

TEST(unknown_does_not_fire)
{
    fresh();
    struct bw_ruleset sets[] = {REQ_SET("e", {"bots", "bot.score lt 10", block(403)},
                                        {"humans", "not (bot.score lt 10)", block(403)},
                                        {"either", "bot.score lt 10 or ssl", block(403)},
                                        {"known", "has(bot.score) or true", log_()})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_STR_EQ(f.tb.s, "{e} bots=unknown humans=unknown either=unknown known=fired");
    r.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 5};
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_SLICE_EQ(f.v.rule->id, "bots");
    fx_done(&f);
}

TEST(disabled_and_killed_are_declared_outcomes)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("top", {"off", "true", block(403), .disabled = true}, {"k", "true", block(403)},
                {"x-off", "true", exec("off")}, {"x-killed", "true", exec("killed")},
                {"skip-it", "true", skip_sets("skipped", NULL, 0)},
                {"x-skipped", "true", exec("skipped")}, {"last", "true", log_()}),
        REQ_SET("off", {"o1", "true", block(403)}),
        REQ_SET("killed", {"k1", "true", block(403)}),
        REQ_SET("skipped", {"s1", "true", block(403)}),
        REQ_SET("top-off", {"t1", "true", block(403)}),
        REQ_SET("top-killed", {"t2", "true", block(403)}),
    };
    sets[1].enabled = false;
    sets[4].enabled = false;
    struct fx f;
    CHECK(fx_build(&f, sets, 6, NULL, 0));
    kill_rule(&f, sets[0].rules[1].index);
    kill_set(&f, 2);
    kill_set(&f, 5);
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_STR_EQ(f.tb.s, "{top} off=disabled k=killed x-off=ruleset_disabled "
                         "x-killed=ruleset_killed skip-it=fired x-skipped=ruleset_skipped "
                         "last=fired {top-off:ruleset_disabled} {top-killed:ruleset_killed}");
    /* An execute that runs nothing still fired. */
    CHECK_INT_EQ(f.v.fired, 5);
    CHECK_INT_EQ(f.counts[sets[0].rules[2].index], 1);
    CHECK_INT_EQ(f.counts[sets[0].rules[0].index], 0);
    fx_done(&f);
}

TEST(skip_rest_ends_only_the_current_ruleset)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"run", "true", exec("sub")}, {"after", "true", log_()}),
        REQ_SET("sub", {"s1", "true", log_()}, {"stop", "ssl", skip_rest()},
                {"s2", "true", block(403)}),
        REQ_SET("second", {"z", "true", log_()}),
    };
    struct fx f;
    CHECK(fx_build(&f, sets, 3, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    r.v.ssl = true;
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_STR_EQ(f.tb.s, "{entry} run=fired s1=fired stop=fired after=fired {second} z=fired");
    r.v.ssl = false;
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_STR_EQ(f.tb.s, "{entry} run=fired s1=fired stop=not_matched s2=fired");
    fx_done(&f);
}

TEST(skip_targets_carry_into_the_response_phase)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"skip", "http.request.method eq \"GET\"",
                          skip_sets("resp", "later", 1u << BW_MODULE_BOT_SCORE)}),
        REQ_SET("later", {"l", "true", block(403)}),
        RESP_SET("resp", {"h", "true", set_hdr("x-a", "1")}),
        RESP_SET("resp2", {"h2", "true", remove_hdr("server")}),
    };
    struct fx f;
    CHECK(fx_build(&f, sets, 4, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_STR_EQ(f.tb.s, "{entry} skip=fired {later:ruleset_skipped}");
    CHECK_INT_EQ(f.st.skipped_modules, 1u << BW_MODULE_BOT_SCORE);
    req_response(&r, 200);
    fx_run(&f, BW_RULES_PHASE_RESPONSE, &r);
    CHECK_STR_EQ(f.tb.s, "{resp:ruleset_skipped} {resp2} h2=fired");
    CHECK_INT_EQ(f.v.neffects, 1);
    CHECK_SLICE_EQ(f.v.effects[0]->id, "h2");

    /* A fresh request state forgets the skips. */
    bw_rules_request_init(&f.st);
    fx_run(&f, BW_RULES_PHASE_RESPONSE, &r);
    CHECK_STR_EQ(f.tb.s, "{resp} h=fired {resp2} h2=fired");
    fx_done(&f);
}

TEST(skipping_the_rules_module_skips_the_next_phase)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"off", "true", skip_sets(NULL, NULL, 1u << BW_MODULE_RULES)},
                {"still", "true", log_()}),
        RESP_SET("resp", {"h", "true", set_hdr("x-a", "1")}),
    };
    struct fx f;
    CHECK(fx_build(&f, sets, 2, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_STR_EQ(f.tb.s, "{entry} off=fired still=fired");
    req_response(&r, 200);
    fx_run(&f, BW_RULES_PHASE_RESPONSE, &r);
    CHECK_STR_EQ(f.tb.s, "{resp:ruleset_skipped}");
    CHECK_INT_EQ(f.v.neffects, 0);
    fx_done(&f);
}

TEST(effects_in_order_and_kept_when_a_later_rule_blocks)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"p", "true", rewrite_path("/v2")}, {"run", "true", exec("sub")},
                {"b", "http.request.method eq \"POST\"", block(403)}),
        REQ_SET("sub", {"p2", "true", rewrite_path("/v3")}),
    };
    /* More effects than the first allocation holds (8). */
    struct bw_rule *rules = bw_arena_alloc(&A, 12 * sizeof *rules);
    static char ids[12][8];
    for (int i = 0; i < 12; i++) {
        sprintf(ids[i], "h%d", i);
        rules[i] = sets[1].rules[0];
        rules[i].id = S(ids[i]);
    }
    sets[1].rules = rules;
    sets[1].nrules = 12;
    struct fx f;
    CHECK(fx_build(&f, sets, 2, NULL, 0));
    struct req r;
    req_init(&r, "POST", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_INT_EQ(f.v.neffects, 13);
    CHECK_SLICE_EQ(f.v.effects[0]->id, "p");
    CHECK_SLICE_EQ(f.v.effects[1]->id, "h0");
    CHECK_SLICE_EQ(f.v.effects[12]->id, "h11");
    CHECK_INT_EQ(f.v.effects[0]->action.kind, BW_ACTION_REWRITE);
    fx_done(&f);
}

TEST(effects_dropped_when_the_request_arena_is_full)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("e", {"p", "true", rewrite_path("/v2")}, {"b", "true", redirect(302, "/x", true)})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    bw_arena_init(&f.ra, 64, 1); /* refuses everything */
    struct req r;
    req_init(&r, "GET", "/a?q=1");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_REDIRECT);
    CHECK_INT_EQ(f.v.neffects, 0);
    CHECK_SLICE_EQ(f.v.location, "/x");
    fx_done(&f);
}

TEST(redirect_with_and_without_the_query)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("e",
                {"keep", "http.request.uri.path eq \"/keep\"",
                 redirect(301, "https://b.example/new", true)},
                {"keep2", "http.request.uri.path eq \"/keep2\"", redirect(308, "/n?a=1", true)},
                {"frag", "http.request.uri.path eq \"/frag\"", redirect(302, "/n#top", true)},
                {"frag2", "http.request.uri.path eq \"/frag2\"",
                 redirect(302, "https://b.example/n?a=1#s?x", true)},
                {"drop", "true", redirect(302, "/dropped", false)})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/keep?x=1&y=2");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_REDIRECT);
    CHECK_INT_EQ(f.v.status, 301);
    CHECK_SLICE_EQ(f.v.location, "https://b.example/new?x=1&y=2");
    req_init(&r, "GET", "/keep");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_SLICE_EQ(f.v.location, "https://b.example/new");
    req_init(&r, "GET", "/keep2?z");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.status, 308);
    CHECK_SLICE_EQ(f.v.location, "/n?a=1&z");
    /* Before the fragment, where it is a query; a '?' in the fragment is
     * not one. */
    req_init(&r, "GET", "/frag?z=1");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_SLICE_EQ(f.v.location, "/n?z=1#top");
    req_init(&r, "GET", "/frag2?z=1");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_SLICE_EQ(f.v.location, "https://b.example/n?a=1&z=1#s?x");
    req_init(&r, "GET", "/other?x=1");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.status, 302);
    CHECK_SLICE_EQ(f.v.location, "/dropped");
    CHECK_SLICE_EQ(f.v.rule->id, "drop");
    fx_done(&f);
}

TEST(rate_limit_under_over_and_failed)
{
    fresh();
    struct bw_ruleset sets[] = {
        REQ_SET("e", {"rl", "true", rate(2, BW_RL_IP_SRC, NULL)}, {"after", "true", log_()})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    for (int i = 0; i < 2; i++) {
        fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
        CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
        CHECK_STR_EQ(f.tb.s, "{e} rl=fired after=fired");
    }
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_RATE_LIMITED);
    CHECK_INT_EQ(f.v.status, 429);
    CHECK_INT_EQ(f.v.retry_after_s, 7);
    CHECK_SLICE_EQ(f.v.rule->id, "rl");
    CHECK_INT_EQ(f.lim.last_now, 1000);
    /* Another client has its own count. */
    ((struct sockaddr_in *)&r.v.src.addr)->sin_addr.s_addr = htonl(0x0A000001);
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    /* A limiter that cannot count lets the request through. */
    f.lim.fail = true;
    for (int i = 0; i < 5; i++) {
        fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
        CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    }
    fx_done(&f);
}

TEST(rate_key_depends_on_the_characteristics_only)
{
    fresh();
    struct bw_rl_characteristic two[] = {{.kind = BW_RL_HEADER, .header = BW_SLICE_LIT("x-a")},
                                         {.kind = BW_RL_HEADER, .header = BW_SLICE_LIT("x-b")}};
    struct bw_action a = rate(1, BW_RL_IP_SRC, NULL);
    a.u.rate_limit.chars = two;
    a.u.rate_limit.nchars = 2;
    struct bw_ruleset sets[] = {REQ_SET("e", {"rl", "true", a},
                                        {"ua", "true", rate(1, BW_RL_USER_AGENT, NULL)},
                                        {"path", "true", rate(1, BW_RL_PATH, NULL)})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    const struct bw_rule *rl = &sets[0].rules[0], *ua = &sets[0].rules[1],
                         *path = &sets[0].rules[2];
    struct req r1, r2;
    struct bw_rules_ctx c1, c2;
    const struct bw_rules_prog *p = f.book->prog[BW_RULES_PHASE_REQUEST];
    req_init(&r1, "GET", "/a/../b");
    req_header(&r1, "X-A", "ab");
    req_header(&r1, "x-b", "c");
    req_header(&r1, "X-A", "ignored: the first value counts");
    req_init(&r2, "POST", "/b");
    req_header(&r2, "x-a", "a");
    req_header(&r2, "x-b", "bc");
    bw_rules_ctx_init(&c1, p, &r1.v, &f.ra, &f.scratch);
    bw_rules_ctx_init(&c2, p, &r2.v, &f.ra, &f.scratch);
    CHECK(bw_rules_rate_key(&sets[0], rl, &c1) != bw_rules_rate_key(&sets[0], rl, &c2));
    CHECK(bw_rules_rate_key(&sets[0], rl, &c1) == bw_rules_rate_key(&sets[0], rl, &c1));
    /* The normalised path: /a/../b is /b. */
    CHECK(bw_rules_rate_key(&sets[0], path, &c1) == bw_rules_rate_key(&sets[0], path, &c2));
    /* Absent user agents are one key, distinct per rule. */
    CHECK(bw_rules_rate_key(&sets[0], ua, &c1) == bw_rules_rate_key(&sets[0], ua, &c2));
    CHECK(bw_rules_rate_key(&sets[0], ua, &c1) != bw_rules_rate_key(&sets[0], path, &c1));
    r2.h[0].value = BW_SLICE_LIT("ab");
    r2.h[1].value = BW_SLICE_LIT("c");
    bw_rules_ctx_init(&c2, p, &r2.v, &f.ra, &f.scratch);
    CHECK(bw_rules_rate_key(&sets[0], rl, &c1) == bw_rules_rate_key(&sets[0], rl, &c2));
    /* An absent header is the empty string. */
    r2.h[1].value = BW_SLICE_EMPTY;
    bw_rules_ctx_init(&c2, p, &r2.v, &f.ra, &f.scratch);
    uint64_t empty = bw_rules_rate_key(&sets[0], rl, &c2);
    r2.v.headers.n = 1;
    bw_rules_ctx_init(&c2, p, &r2.v, &f.ra, &f.scratch);
    CHECK(bw_rules_rate_key(&sets[0], rl, &c2) == empty);
    fx_done(&f);
}

/* Counters outlive a reload (modules/rate_limit.h): the key of a rule must
 * not move when rules are added before it, and must move when the rule is
 * another one or counts over another period. */
TEST(rate_key_is_the_rules_identity_not_its_place)
{
    fresh();
    struct bw_ruleset a[] = {REQ_SET("e", {"rl", "true", rate(1, BW_RL_IP_SRC, NULL)})};
    struct bw_action longer = rate(1, BW_RL_IP_SRC, NULL);
    longer.u.rate_limit.period_ms *= 2;
    struct bw_ruleset b[] = {REQ_SET("e", {"new", "true", rate(1, BW_RL_IP_SRC, NULL)},
                                     {"rl", "true", rate(1, BW_RL_IP_SRC, NULL)},
                                     {"slow", "true", longer})};
    struct bw_ruleset c[] = {REQ_SET("other", {"rl", "true", rate(1, BW_RL_IP_SRC, NULL)})};
    struct fx fa, fb, fc;
    CHECK(fx_build(&fa, a, 1, NULL, 0));
    CHECK(fx_build(&fb, b, 1, NULL, 0));
    CHECK(fx_build(&fc, c, 1, NULL, 0));
    CHECK_INT_EQ(a[0].rules[0].index, 0);
    CHECK_INT_EQ(b[0].rules[1].index, 1);
    struct req r;
    req_init(&r, "GET", "/");
    struct bw_rules_ctx ca, cb, cc;
    bw_rules_ctx_init(&ca, fa.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &fa.ra, &fa.scratch);
    bw_rules_ctx_init(&cb, fb.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &fb.ra, &fb.scratch);
    bw_rules_ctx_init(&cc, fc.book->prog[BW_RULES_PHASE_REQUEST], &r.v, &fc.ra, &fc.scratch);
    uint64_t k = bw_rules_rate_key(&a[0], &a[0].rules[0], &ca);
    CHECK(bw_rules_rate_key(&b[0], &b[0].rules[1], &cb) == k);
    CHECK(bw_rules_rate_key(&b[0], &b[0].rules[0], &cb) != k);
    CHECK(bw_rules_rate_key(&b[0], &b[0].rules[2], &cb) !=
          bw_rules_rate_key(&b[0], &b[0].rules[0], &cb));
    CHECK(bw_rules_rate_key(&c[0], &c[0].rules[0], &cc) != k);
    fx_done(&fa);
    fx_done(&fb);
    fx_done(&fc);
}

TEST(response_phase_headers)
{
    fresh();
    struct bw_ruleset sets[] = {RESP_SET(
        "resp", {"hsts", "ssl", set_hdr("strict-transport-security", "max-age=1")},
        {"nosrv", "true", remove_hdr("server")}, {"err", "http.response.code ge 500", block(502)})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    req_response(&r, 200);
    r.v.ssl = true;
    fx_run(&f, BW_RULES_PHASE_RESPONSE, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_INT_EQ(f.v.neffects, 2);
    CHECK_SLICE_EQ(f.v.effects[0]->action.u.set_header.name, "strict-transport-security");
    CHECK_SLICE_EQ(f.v.effects[1]->action.u.remove_header.name, "server");
    req_response(&r, 503);
    fx_run(&f, BW_RULES_PHASE_RESPONSE, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_INT_EQ(f.v.status, 502);
    fx_done(&f);
}

TEST(killswitch_flip_seen_by_the_next_request)
{
    fresh();
    struct bw_ruleset sets[] = {REQ_SET("e", {"b", "true", block(403)})};
    struct fx f;
    CHECK(fx_build(&f, sets, 1, NULL, 0));
    struct req r;
    req_init(&r, "GET", "/");
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    kill_set(&f, 0);
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_CONTINUE);
    CHECK_STR_EQ(f.tb.s, "{e:ruleset_killed}");
    atomic_store((_Atomic uint64_t *)&f.kills.rulesets[0], 0);
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    /* Tracing off: same verdict, no steps. */
    f.env.tracing = false;
    fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
    CHECK_STR_EQ(f.tb.s, "");
    fx_done(&f);
}

/* Untraced, bw_rulebook_run evaluates the rules between two disabled or
 * killed ones in one call (bw_rules_eval_first_true). Rulesets longer than a
 * word of killswitch bits, disabled and killed rules on and around word
 * boundaries, rules that fire and go on (log), a skip of the rest: fx_run
 * checks that the untraced run does what the traced one does, and the trace
 * says which rules ran. */
TEST(stretches_between_disabled_and_killed_rules)
{
    fresh();
    static const char *const texts[] = {
        "http.request.uri.path eq \"/x\"",
        "starts_with(http.request.uri.path, \"/a\")",
        "http.user_agent contains \"bot\"",
        "not has(http.request.headers[\"x-k\"])",
        "http.referer eq \"r\" or ssl",
        "bot.score lt 10",
        "http.request.uri.query matches \"^q=[0-9]+$\"",
        "lower(http.host) in {\"b.example\"}",
    };
    enum { NA = 70, NB = 80 };
    struct rspec a[NA], b[NB];
    static char ids[NA + NB][16];
    for (size_t i = 0; i < NA + NB; i++) {
        struct rspec *sp = i < NA ? &a[i] : &b[i - NA];
        snprintf(ids[i], sizeof ids[i], "r%zu", i);
        *sp = (struct rspec){.id = ids[i], .expr = texts[(i * 7) % 8], .act = log_()};
        sp->disabled = i % 13 == 5 || i == 63 || i == 64;
    }
    a[NA - 1].act = skip_rest();
    a[NA - 1].expr = "http.request.method eq \"PUT\"";
    b[NB - 1].act = block(403);
    b[NB - 1].expr = "http.request.method eq \"DELETE\" or http.request.method eq \"PUT\"";
    struct bw_ruleset sets[] = {mkset("a", BW_RULES_PHASE_REQUEST, a, NA),
                                mkset("b", BW_RULES_PHASE_REQUEST, b, NB)};
    struct fx f;
    CHECK(fx_build(&f, sets, 2, NULL, 0));
    f.env.match_counts = NULL; /* more rules than the fixture counts */
    static const uint32_t kills[] = {0, 1, 62, 65, 66, 127, 128, 129, NA, NA + NB - 2};
    static const char *const targets[] = {"/x", "/a/b?q=12", "/", "/ab?q=x"};
    static const char *const methods[] = {"GET", "PUT", "DELETE"};
    for (int round = 0; round < 3; round++) {
        if (round == 1)
            for (size_t k = 0; k < sizeof kills / sizeof *kills; k++)
                kill_rule(&f, kills[k]);
        if (round == 2)
            for (size_t k = 0; k < (NA + NB + 63) / 64; k++)
                atomic_store((_Atomic uint64_t *)&f.kills.rules[k], ~(uint64_t)0);
        for (size_t t = 0; t < sizeof targets / sizeof *targets; t++)
            for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
                struct req r;
                req_init(&r, methods[m], targets[t]);
                if (t % 2)
                    req_header(&r, "User-Agent", "a bot");
                if (m == 1)
                    req_header(&r, "X-K", "1");
                if (t == 2)
                    r.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 3};
                r.v.ssl = m == 2;
                bw_rules_request_init(&f.st);
                fx_run(&f, BW_RULES_PHASE_REQUEST, &r);
                if (round == 2)
                    CHECK_INT_EQ(f.v.fired, 0);
                if (round == 0 && m == 2)
                    CHECK_INT_EQ(f.v.kind, BW_VERDICT_BLOCK);
                bw_arena_clear(&f.ra);
            }
    }
    fx_done(&f);
}

/* ---- embedded tests ---------------------------------------------------------------- */

/* "rule" or "ruleset/rule", as `expect.rule` is written. */
static bw_slice rule_part(const char *ref)
{
    const char *slash = strchr(ref, '/');
    return S(slash ? slash + 1 : ref);
}

static bw_slice set_part(const char *ref)
{
    const char *slash = strchr(ref, '/');
    return slash ? bw_slice_make(ref, (size_t)(slash - ref)) : BW_SLICE_EMPTY;
}

static struct bw_ruleset_test mktest(const char *name, const struct req *r,
                                     enum bw_test_expect_kind k, enum bw_action_kind act,
                                     const char *rule, int status)
{
    return (struct bw_ruleset_test){.name = S(name),
                                    .pos = {20, 5},
                                    .request = r->v,
                                    .expect = k,
                                    .action = act,
                                    .has_rule = rule != NULL,
                                    .rule = rule ? rule_part(rule) : BW_SLICE_EMPTY,
                                    .rule_set = rule ? set_part(rule) : BW_SLICE_EMPTY,
                                    .has_status = status != 0,
                                    .status = (uint16_t)status};
}

static bool tests_say(struct bw_ruleset *sets, size_t n, const char *want)
{
    struct bw_rulebook *book;
    bw_error err;
    if (bw_rulebook_build(&A, sets, n, NULL, 0, &book, &err) != BW_OK) {
        printf("     build: %s\n", err.msg);
        return false;
    }
    bw_arena scratch;
    bw_arena_init(&scratch, 4096, 1 << 20);
    bw_status st = bw_rulebook_run_tests(book, &scratch, &err);
    book = bw_rulebook_free(book);
    if (!want)
        return st == BW_OK || (printf("     got: %s\n", err.msg), false);
    if (st == BW_OK) {
        printf("     passed, want: %s\n", want);
        return false;
    }
    if (strcmp(err.msg, want) != 0) {
        printf("     got:  %s\n     want: %s\n", err.msg, want);
        return false;
    }
    return true;
}

TEST(embedded_tests_pass_and_fail_with_a_message)
{
    fresh();
    static struct req admin, home;
    req_init(&admin, "GET", "/admin/x?q=1");
    req_init(&home, "GET", "/");
    struct bw_ruleset sets[] = {
        REQ_SET("entry", {"l", "true", log_()},
                {"block-admin", "starts_with(http.request.uri.path, \"/admin\")", block(403)},
                {"run", "true", exec("sub")}),
        REQ_SET("sub", {"rl", "true", rate(1, BW_RL_IP_SRC, NULL)},
                {"p", "true", rewrite_path("/x")}),
    };
    struct bw_ruleset_test ok[] = {
        mktest("admin is blocked", &admin, BW_EXPECT_ACTION, BW_ACTION_BLOCK, "block-admin", 403),
        mktest("home goes on", &home, BW_EXPECT_NONE, BW_ACTION_LOG, NULL, 0),
        mktest("logged", &home, BW_EXPECT_ACTION, BW_ACTION_LOG, "l", 0),
        mktest("rate counted, never over", &home, BW_EXPECT_ACTION, BW_ACTION_RATE_LIMIT, "sub/rl",
               429),
        mktest("rewritten below", &home, BW_EXPECT_ACTION, BW_ACTION_REWRITE, "sub/p", 0),
    };
    sets[0].tests = ok;
    sets[0].ntests = 5;
    /* A disabled ruleset's tests still run against its rules. */
    sets[0].enabled = false;
    CHECK(tests_say(sets, 2, NULL));

    struct bw_ruleset_test bad1[] = {
        mktest("home blocked?", &home, BW_EXPECT_ACTION, BW_ACTION_BLOCK, "block-admin", 0)};
    sets[0].tests = bad1;
    sets[0].ntests = 1;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"home blocked?\" of ruleset \"entry\": "
                    "expected block by rule \"block-admin\", got continue (rules that fired: l, "
                    "run, sub/rl, sub/p)"));
    struct bw_ruleset_test bad2[] = {
        mktest("t", &admin, BW_EXPECT_ACTION, BW_ACTION_BLOCK, "block-admin", 401)};
    sets[0].tests = bad2;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"t\" of ruleset \"entry\": expected block by "
                    "rule \"block-admin\" with status 401, got block by rule \"block-admin\" "
                    "with status 403 (rules that fired: l, block-admin)"));
    struct bw_ruleset_test bad3[] = {mktest("n", &admin, BW_EXPECT_NONE, BW_ACTION_LOG, NULL, 0)};
    sets[0].tests = bad3;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"n\" of ruleset \"entry\": expected none, got "
                    "block by rule \"block-admin\" with status 403 (rules that fired: l, "
                    "block-admin)"));
    struct bw_ruleset_test bad4[] = {
        mktest("w", &home, BW_EXPECT_ACTION, BW_ACTION_REWRITE, "sub/rl", 0)};
    sets[0].tests = bad4;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"w\" of ruleset \"entry\": expected rewrite by "
                    "rule \"sub/rl\", got continue (rules that fired: l, run, sub/rl, sub/p)"));
    /* unqualified: the test's own ruleset has no "p"; sub's "p" is not it */
    struct bw_ruleset_test bad5[] = {
        mktest("own", &home, BW_EXPECT_ACTION, BW_ACTION_REWRITE, "p", 0)};
    sets[0].tests = bad5;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"own\" of ruleset \"entry\": expected rewrite "
                    "by rule \"p\", got continue (rules that fired: l, run, sub/rl, sub/p)"));
    sets[0].tests = bad4;
    sets[0].rules[0].enabled = false;
    sets[0].rules[2].enabled = false;
    CHECK(tests_say(sets, 2,
                    "entry.yaml:20:5: error: test \"w\" of ruleset \"entry\": expected rewrite by "
                    "rule \"sub/rl\", got continue (no rule fired)"));
}

TEST(names)
{
    CHECK_STR_EQ(bw_rule_outcome_name(BW_OUTCOME_RULESET_SKIPPED), "ruleset_skipped");
    CHECK_STR_EQ(bw_rule_outcome_name(BW_OUTCOME_NOT_MATCHED), "not_matched");
    CHECK_STR_EQ(bw_action_name(BW_ACTION_RATE_LIMIT), "rate_limit");
    CHECK_STR_EQ(bw_action_name(BW_ACTION_REMOVE_HEADER), "remove_header");
    for (int k = 0; k < BW_ACTION__COUNT; k++)
        CHECK(strcmp(bw_action_name((enum bw_action_kind)k), "?") != 0);
    for (int o = 0; o < BW_OUTCOME__COUNT; o++)
        CHECK(strcmp(bw_rule_outcome_name((enum bw_rule_outcome)o), "?") != 0);
}

TEST(killset_sizes)
{
    fresh();
    struct bw_rulebook empty = {0};
    struct bw_killset k;
    CHECK(bw_killset_alloc(&A, &empty, &k) == BW_OK);
    CHECK(k.rules && k.rulesets);
    CHECK_INT_EQ(atomic_load(&k.rules[0]), 0);
    struct bw_rulebook big = {.nrules = 129, .nrulesets = 64};
    CHECK(bw_killset_alloc(&A, &big, &k) == BW_OK);
    CHECK_INT_EQ(atomic_load(&k.rules[2]), 0);
    CHECK_INT_EQ(atomic_load(&k.rulesets[0]), 0);
}

int main(void)
{
    bw_arena_init(&A, 64 * 1024, 0);
    RUN(build_refuses_duplicates_and_missing_targets);
    RUN(build_refuses_actions_and_targets_of_the_wrong_phase);
    RUN(build_reports_execute_cycles);
    RUN(build_reports_every_problem);
    RUN(build_errors_are_bounded);
    RUN(build_execute_depth_at_and_past_the_limit);
    RUN(build_ruleset_and_rule_limits);
    RUN(build_assigns_indices_top_level_and_routes);
    RUN(block_and_log);
    RUN(unknown_does_not_fire);
    RUN(disabled_and_killed_are_declared_outcomes);
    RUN(skip_rest_ends_only_the_current_ruleset);
    RUN(skip_targets_carry_into_the_response_phase);
    RUN(skipping_the_rules_module_skips_the_next_phase);
    RUN(effects_in_order_and_kept_when_a_later_rule_blocks);
    RUN(effects_dropped_when_the_request_arena_is_full);
    RUN(redirect_with_and_without_the_query);
    RUN(rate_limit_under_over_and_failed);
    RUN(rate_key_depends_on_the_characteristics_only);
    RUN(rate_key_is_the_rules_identity_not_its_place);
    RUN(response_phase_headers);
    RUN(killswitch_flip_seen_by_the_next_request);
    RUN(stretches_between_disabled_and_killed_rules);
    RUN(embedded_tests_pass_and_fail_with_a_message);
    RUN(names);
    RUN(killset_sizes);
    bw_arena_reset(&A);
    return t_done();
}
