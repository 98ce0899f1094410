/* Fuzz target for ruleset files end to end: YAML text -> bw_ruleset_parse
 * -> bw_rulebook_build -> bw_rulebook_run_tests -> both phases of the book
 * over one of four small requests (picked by the input's hash), with a
 * limiter that is over every other time and a capped request arena.
 *
 * Input: up to MAX_FILES ruleset files separated by a line "#--" (a YAML
 * comment, so each part stays valid YAML), so that executes, skips, cycles
 * and duplicate ids across files are reached.
 * Invariants: nothing crashes or leaks; a verdict is one of its variants
 * and carries what its variant promises (a rule, a status in range, a
 * location); a book that built can always be freed; a run untraced (rules
 * evaluated a stretch at a time) and traced (rule by rule) agree on the
 * verdict, the request state and the limiter calls, and the untraced run
 * does no more evaluation work (it may do less: it passes over rules that
 * an absent value keeps from being true). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/rulesets.h"

enum { MAX_FILES = 4 };

static enum bw_rl_decision flip(void *self, const struct bw_rule *rule, uint64_t key,
                                uint64_t now_ms, uint64_t *retry_after_s)
{
    (void)rule, (void)key, (void)now_ms;
    unsigned *n = self;
    *retry_after_s = 3;
    switch ((*n)++ % 3) {
    case 0:
        return BW_RL_UNDER;
    case 1:
        return BW_RL_OVER;
    default:
        return BW_RL_FAILED;
    }
}

static void check_verdict(const struct bw_rules_verdict *v)
{
    switch (v->kind) {
    case BW_VERDICT_CONTINUE:
        if (v->has_rule)
            abort();
        break;
    case BW_VERDICT_BLOCK:
    case BW_VERDICT_RATE_LIMITED:
        if (!v->has_rule || v->status < 400 || v->status > 599)
            abort();
        break;
    case BW_VERDICT_REDIRECT:
        if (!v->has_rule || v->location.len == 0 || v->status < 301 || v->status > 308)
            abort();
        break;
    case BW_VERDICT__COUNT:
        abort();
    }
    for (size_t i = 0; i < v->neffects; i++)
        if (v->effects[i]->action.kind != BW_ACTION_REWRITE &&
            v->effects[i]->action.kind != BW_ACTION_SET_HEADER &&
            v->effects[i]->action.kind != BW_ACTION_REMOVE_HEADER)
            abort();
}

static void no_step(void *self, const struct bw_rules_trace_step *s)
{
    (void)self, (void)s;
}

/* The request the books run on: one of four, picked by the input's hash,
 * so that rules meet absent values (no Host, no headers, unknown bot
 * score), IPv6 and mapped sources, TLS, an encoded path and several
 * field lines of one name. */
static void make_view(unsigned which, struct bw_request_view *v)
{
    static const struct bw_rv_header hs[] = {
        {BW_SLICE_LIT("Host"), BW_SLICE_LIT("a.example")},
        {BW_SLICE_LIT("User-Agent"), BW_SLICE_LIT("curl/8.0")},
        {BW_SLICE_LIT("X-Api-Key"), BW_SLICE_LIT("k1")},
        {BW_SLICE_LIT("Cookie"), BW_SLICE_LIT("a=1")},
    };
    static const struct bw_rv_header hs2[] = {
        {BW_SLICE_LIT("host"), BW_SLICE_LIT("B.Example")},
        {BW_SLICE_LIT("user-agent"), BW_SLICE_LIT("Mozilla/5.0 (compatible; Googlebot/2.1)")},
        {BW_SLICE_LIT("cookie"), BW_SLICE_LIT("a=1")},
        {BW_SLICE_LIT("Cookie"), BW_SLICE_LIT("session=x")},
        {BW_SLICE_LIT("X-Forwarded-For"), BW_SLICE_LIT("203.0.113.9, 10.0.0.1")},
        {BW_SLICE_LIT("Referer"), BW_SLICE_LIT("https://old.example/a")},
        {BW_SLICE_LIT("x-api-key"), BW_SLICE_LIT("")},
    };
    memset(v, 0, sizeof *v);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&v->src.addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&v->src.addr;
    switch (which % 4) {
    case 0:
        *v = (struct bw_request_view){
            .method = BW_SLICE_LIT("GET"),
            .host = {.known = true, .value = BW_SLICE_LIT("a.example")},
            .uri = BW_SLICE_LIT("/admin/../api/x?q=1"),
            .raw_path = BW_SLICE_LIT("/admin/../api/x"),
            .query = BW_SLICE_LIT("q=1"),
            .headers = {.items = hs, .n = 4},
            .bot_score = {.known = true, .value = 7},
        };
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(0xCB007109);
        v->src.known = true;
        return;
    case 1:
        v->method = BW_SLICE_LIT("POST");
        v->uri = v->raw_path = BW_SLICE_LIT("/wp-login.php");
        s6->sin6_family = AF_INET6;
        (void)inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
        v->src.known = true;
        return;
    case 2:
        v->method = BW_SLICE_LIT("GET");
        v->host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("B.Example")};
        v->uri = BW_SLICE_LIT("/A%2fb/%2E%2e/api/c?x=%41&y=1+2");
        v->raw_path = BW_SLICE_LIT("/A%2fb/%2E%2e/api/c");
        v->query = BW_SLICE_LIT("x=%41&y=1+2");
        v->headers = (struct bw_rv_headers){.items = hs2, .n = sizeof hs2 / sizeof *hs2};
        v->ssl = true;
        v->bot_score = (struct bw_rv_opt_int){.known = true, .value = 99};
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(0x0A000005);
        v->src.known = true;
        return;
    default:
        v->method = BW_SLICE_LIT("HEAD");
        v->host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("a.example")};
        v->uri = v->raw_path = BW_SLICE_LIT("/");
        v->headers = (struct bw_rv_headers){.items = hs, .n = 1};
        v->bot_score = (struct bw_rv_opt_int){.known = true, .value = 1};
        s6->sin6_family = AF_INET6;
        (void)inet_pton(AF_INET6, "::ffff:203.0.113.9", &s6->sin6_addr);
        v->src.known = true;
        return;
    }
}

static void run_book(const struct bw_rulebook *book, bw_arena *snap, unsigned which)
{
    struct bw_request_view v;
    make_view(which, &v);

    struct bw_killset kills;
    if (bw_killset_alloc(snap, book, &kills) != BW_OK)
        return;
    _Atomic uint64_t *counts = bw_arena_alloc(snap, (book->nrules + 1) * sizeof *counts);
    if (!counts)
        return;
    bw_regex_scratch scratch;
    bw_regex_scratch_init(&scratch);
    bw_error err;
    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++)
        if (bw_rules_prog_reserve(book->prog[ph], &scratch, &err) != BW_OK) {
            bw_regex_scratch_done(&scratch);
            return;
        }
    unsigned n = 0;
    struct bw_rules_env env = {
        .limiter = {.hit = flip, .self = &n}, .kills = kills, .match_counts = counts};
    /* Twice: unbounded, then with a request arena too small for much. */
    for (int round = 0; round < 2; round++) {
        bw_arena ra;
        bw_arena_init(&ra, 256, round ? 2048 : 0);
        struct bw_rules_request st;
        bw_rules_request_init(&st);
        for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++) {
            v.has_response = ph == BW_RULES_PHASE_RESPONSE;
            v.response_code = 502;
            v.response_headers = v.headers;
            /* The same phase traced (rule by rule) on copies of the state,
             * limiter and arena: the untraced run below (stretches of rules
             * in one bw_rules_eval_first_true call) must agree with it. */
            unsigned n2 = n;
            struct bw_rules_request st2 = st;
            struct bw_rules_env env2 = env;
            env2.limiter.self = &n2;
            env2.match_counts = NULL;
            env2.tracing = true;
            env2.tracer = (struct bw_rules_tracer){.step = no_step};
            bw_arena ra2;
            bw_arena_init(&ra2, 256, round ? 2048 : 0);
            struct bw_rules_ctx cx2;
            bw_rules_ctx_init(&cx2, book->prog[ph], &v, &ra2, &scratch);
            struct bw_rules_verdict out2;
            bw_rulebook_run(book, (enum bw_rules_phase)ph, &cx2, &env2, &st2, &out2);

            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, book->prog[ph], &v, &ra, &scratch);
            struct bw_rules_verdict out;
            bw_rulebook_run(book, (enum bw_rules_phase)ph, &cx, &env, &st, &out);
            check_verdict(&out);
            if (out.kind != out2.kind || out.rule != out2.rule || out.fired != out2.fired ||
                out.last_fired != out2.last_fired || out.neffects != out2.neffects || n != n2 ||
                memcmp(&st, &st2, sizeof st) != 0)
                abort();
            /* Untraced, a rule that cannot be true for an absent value is
             * passed over (eval_internal.h, struct bw__skip): no more work
             * than rule by rule, possibly less (as test_ruleset.c checks). */
            if (cx.stats.regex_scans > cx2.stats.regex_scans ||
                cx.stats.regex_failures > cx2.stats.regex_failures ||
                cx.stats.extractions > cx2.stats.extractions ||
                cx.stats.arena_failures > cx2.stats.arena_failures)
                abort();
            bw_arena_reset(&ra2);
            if (ph == BW_RULES_PHASE_REQUEST) {
                size_t route;
                if (bw_rulebook_route(book, &cx, &route) == BW_OK && route >= book->nroutes)
                    abort();
            }
        }
        /* Kill everything: nothing may fire. */
        if (round == 0) {
            for (size_t i = 0; i < (book->nrules + 63) / 64; i++)
                ((_Atomic uint64_t *)kills.rules)[i] = ~(uint64_t)0;
        }
        bw_arena_reset(&ra);
    }
    bw_regex_scratch_done(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    uint32_t h = 2166136261u; /* FNV-1a: which request */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    unsigned which = h >> 28;
    bw_arena snap;
    bw_arena_init(&snap, 16 * 1024, 64 * 1024 * 1024);
    struct bw_ruleset sets[MAX_FILES];
    /* Every file as parsed, refused ones included, for the link checks. */
    struct bw_ruleset every[MAX_FILES];
    size_t nsets = 0, nevery = 0;
    const char *p = (const char *)data;
    size_t left = size;
    while (nevery < MAX_FILES) {
        const char *sep = memmem(p, left, "\n#--\n", 5);
        size_t len = sep ? (size_t)(sep - p) + 1 : left;
        struct bw_config_diags diags;
        struct bw_ruleset s = {0};
        if (bw_ruleset_parse(&snap, "fuzz.yaml", p, len, &s, &diags) == BW_OK)
            sets[nsets++] = s;
        else if (diags.n == 0 && diags.dropped == 0)
            abort(); /* a refusal always says why */
        every[nevery++] = s;
        if (!sep)
            break;
        p = sep + 5;
        left -= len + 4;
    }
    /* A route with a match and a default, as the proxy would give. */
    static const struct bw_rules_srcpos at = {
        .file = BW_SLICE_LIT("routes"), .line = 1, .col = 1, .cont_col = 1};
    struct bw_rules_expr *rx;
    struct bw_rules_diag d;
    struct bw_route_match routes[2] = {{.has_match = false}, {.has_match = false}};
    if (bw_rules_parse(&snap, BW_SLICE_LIT("starts_with(http.request.uri.path, \"/api/\")"),
                       BW_RULES_PHASE_REQUEST, &at, &rx, &d) == BW_OK)
        routes[0] = (struct bw_route_match){.has_match = true, .expr = rx};
    struct bw_rulebook *book;
    bw_error err;
    if (bw_rulebook_build(&snap, sets, nsets, routes, 2, &book, &err) == BW_OK) {
        bw_arena scratch;
        bw_arena_init(&scratch, 4096, 16 * 1024 * 1024);
        if (bw_rulebook_run_tests(book, &scratch, &err) == BW_OK)
            run_book(book, &snap, which);
        bw_arena_reset(&scratch);
        book = bw_rulebook_free(book);
    }
    /* What the loader does when some file was refused: the cross-file
     * checks over what every file held. */
    if (nevery > nsets) {
        static struct bw_rulebook_errors e;
        if (bw_rulebook_check_links(&snap, every, nevery, &e) == BW_OK && e.n != 0)
            abort();
        if (e.n > BW_RULEBOOK_MAX_ERRORS)
            abort();
    }
    bw_arena_reset(&snap);
    return 0;
}
