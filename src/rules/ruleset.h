/* Rulesets: rules with actions, grouped by phase, compiled together into one
 * immutable rulebook, then run per request. Pure: no I/O, no clock, no
 * threads. Whatever needs the world (rate-limit counters, killswitches, the
 * time) comes in through struct bw_rules_env.
 *
 *   load (config/rulesets.c fills the structs from YAML):
 *     struct bw_rulebook *book;
 *     if (bw_rulebook_build(&snap_arena, sets, nsets, routes, nroutes, &book, &err) != BW_OK)
 *         reject(err.msg);            // "rules/entry.yaml:12:15: error: ..."
 *     if (bw_rulebook_run_tests(book, &scratch_arena, &err) != BW_OK)
 *         reject(err.msg);            // the failing test, what was expected and what came
 *   per request:
 *     struct bw_rules_request st;      // carries skips from one phase to the next
 *     bw_rules_request_init(&st);
 *     struct bw_rules_verdict v;
 *     bw_rulebook_run(book, BW_RULES_PHASE_REQUEST, &cx, &env, &st, &v);
 *     switch (v.kind) { ... }          // exhaustively
 *     bw_rulebook_route(book, &cx, &route);
 *
 * Semantics (DESIGN.md §2, docs/rules.md):
 *   - Top-level rulesets of a phase run in the order they were given; a
 *     ruleset that is the target of some `execute` is not top level (it runs
 *     only where it is executed).
 *   - Within a ruleset, rules run in order. A rule whose expression is TRUE
 *     fires; FALSE and UNKNOWN do not (three-valued logic: only TRUE acts).
 *   - Terminating actions (block, redirect, rate_limit over its limit) end
 *     the phase and every ruleset above it. Everything else goes on.
 *   - `skip` with no targets ends the current ruleset (the executing one goes
 *     on after its execute rule); with targets, the named rulesets and modules
 *     are skipped for the rest of this request (both phases).
 *   - A disabled or killed rule is not evaluated; a disabled, killed or
 *     skipped ruleset is not entered; an `execute` whose target is disabled,
 *     killed or skipped fires but runs nothing. Each is a declared outcome in
 *     the trace, and evaluation goes on: none of them is an error.
 *   - Execute cycles and execute depth over BW_RULES_MAX_EXECUTE_DEPTH are
 *     refused by bw_rulebook_build, so running never recurses without bound. */
#ifndef BW_RULES_RULESET_H
#define BW_RULES_RULESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "rules/eval.h"
#include "rules/request_view.h"
#include "rules/rules.h"

/* Named limits; each is tested at and just past the limit. */
enum {
    BW_RULES_MAX_RULESETS = 256,      /* rulesets in one rulebook (all files) */
    BW_RULES_MAX_RULES = 4096,        /* rules in one ruleset */
    BW_RULES_MAX_TOTAL_RULES = 65536, /* rules in one rulebook */
    BW_RULES_MAX_EXECUTE_DEPTH = 8,   /* nested executes below a top-level ruleset */
    BW_RULES_MAX_ID_LEN = 128,        /* ruleset and rule ids: [A-Za-z0-9_.-]+ */
    BW_RULES_MAX_TESTS = 1024,        /* embedded tests per ruleset */
    BW_RULES_MAX_HEADER_OPS = 32,     /* header operations in one rewrite */
    BW_RULES_MAX_CHARACTERISTICS = 8, /* rate_limit characteristics */
    BW_RULES_MAX_BODY_LEN = 8 * 1024, /* block body bytes: sent from one head buffer */
    BW_RULES_MAX_RATE_REQUESTS = 1000000000,
    BW_RULES_MIN_RATE_PERIOD_MS = 1000,
    BW_RULES_MAX_RATE_PERIOD_MS = 86400 * 1000,
};

/* ---- actions ----------------------------------------------------------------- */

enum bw_action_kind {
    BW_ACTION_BLOCK,         /* terminating: status (default 403) and body */
    BW_ACTION_LOG,           /* records the match, nothing else */
    BW_ACTION_SKIP,          /* rest of this ruleset, or named rulesets/modules */
    BW_ACTION_EXECUTE,       /* runs another ruleset of the same phase */
    BW_ACTION_RATE_LIMIT,    /* terminating when over the limit: 429 + Retry-After */
    BW_ACTION_REDIRECT,      /* terminating: 301/302/303/307/308 + Location */
    BW_ACTION_REWRITE,       /* request phase: request header ops and/or the path */
    BW_ACTION_SET_HEADER,    /* response phase: set a response header */
    BW_ACTION_REMOVE_HEADER, /* response phase: remove a response header */
    BW_ACTION__COUNT
};

struct bw_action_block {
    uint16_t status; /* 400..599, default 403 */
    bool has_body;   /* false: the proxy's standard body for the status */
    bw_slice body;   /* <= BW_RULES_MAX_BODY_LEN */
};

/* Modules a `skip` may name. rules/ knows their names, not their code. */
enum bw_module_ref { BW_MODULE_BOT_SCORE, BW_MODULE_RULES, BW_MODULE__COUNT };

enum bw_skip_scope {
    BW_SKIP_REST,    /* `action: skip` with no parameters: the rest of this ruleset */
    BW_SKIP_TARGETS, /* `rulesets: [...]` and/or `modules: [...]` for this request */
};

struct bw_action_skip {
    enum bw_skip_scope scope;
    const uint32_t *rulesets; /* indices into bw_rulebook.rulesets (resolved by build) */
    bw_slice *ruleset_ids;    /* as written, resolved by build */
    size_t nrulesets;
    uint32_t modules; /* bit (1u << bw_module_ref) per named module */
};

struct bw_action_execute {
    bw_slice ruleset_id; /* as written */
    uint32_t ruleset;    /* index into bw_rulebook.rulesets (resolved by build) */
};

/* What a rate limit counts by. Values are taken from the request view (the
 * header: its first value; absent header: the empty string, its own key). */
enum bw_rl_characteristic_kind {
    BW_RL_IP_SRC,     /* ip.src */
    BW_RL_HOST,       /* http.host */
    BW_RL_METHOD,     /* http.request.method */
    BW_RL_PATH,       /* http.request.uri.path (normalised) */
    BW_RL_USER_AGENT, /* http.user_agent */
    BW_RL_HEADER,     /* http.request.headers["name"] */
    BW_RL__COUNT
};

struct bw_rl_characteristic {
    enum bw_rl_characteristic_kind kind;
    bw_slice header; /* BW_RL_HEADER: the name, lowercased */
};

struct bw_action_rate_limit {
    const struct bw_rl_characteristic *chars;
    size_t nchars;      /* 1..BW_RULES_MAX_CHARACTERISTICS */
    uint64_t requests;  /* allowed per period, 1..BW_RULES_MAX_RATE_REQUESTS */
    uint64_t period_ms; /* BW_RULES_MIN_RATE_PERIOD_MS..BW_RULES_MAX_RATE_PERIOD_MS */
    uint16_t status;    /* default 429 */
};

struct bw_action_redirect {
    uint16_t status;     /* 301, 302 (default), 303, 307, 308 */
    bw_slice location;   /* absolute URL or absolute path; no CR/LF/controls */
    bool preserve_query; /* append the request's "?query" (default false) */
};

enum bw_header_op_kind { BW_HEADER_SET, BW_HEADER_REMOVE, BW_HEADER_OP__COUNT };

struct bw_header_op {
    enum bw_header_op_kind kind;
    bw_slice name;  /* a valid field name (token), lowercased; never a hop-by-hop,
                     * Host, Content-Length or Transfer-Encoding (refused at load) */
    bw_slice value; /* BW_HEADER_SET: no CR/LF/NUL */
};

struct bw_action_rewrite {
    const struct bw_header_op *ops; /* request headers, applied in order */
    size_t nops;                    /* 0..BW_RULES_MAX_HEADER_OPS */
    bool has_path;
    bw_slice path; /* new path, starting with '/'; the query is kept */
};

struct bw_action {
    enum bw_action_kind kind;
    union {
        struct bw_action_block block;
        struct bw_action_skip skip;
        struct bw_action_execute execute;
        struct bw_action_rate_limit rate_limit;
        struct bw_action_redirect redirect;
        struct bw_action_rewrite rewrite;
        struct bw_header_op set_header;    /* kind BW_HEADER_SET */
        struct bw_header_op remove_header; /* kind BW_HEADER_REMOVE */
    } u;
};

/* ---- rules and rulesets ------------------------------------------------------- */

/* A place in a ruleset file, for messages. */
struct bw_rules_pos {
    uint32_t line, col; /* 1-based */
};

struct bw_rule {
    bw_slice id;
    bool enabled;                     /* `enabled: false`: outcome DISABLED */
    const struct bw_rules_expr *expr; /* checked, of the ruleset's phase */
    struct bw_action action;
    struct bw_rules_pos pos;        /* of the rule (its `id`) */
    struct bw_rules_pos action_pos; /* of its `action` (execute/skip targets) */
    /* Set by bw_rulebook_build: */
    uint32_t index;      /* global, 0..nrules-1: killswitches, metrics */
    uint32_t expr_index; /* in the phase's program */
    uint32_t ruleset;    /* index of its ruleset */
};

/* One embedded test (`tests:` of a ruleset): a request (and for a
 * response-phase ruleset, a response), and what must happen. */
enum bw_test_expect_kind {
    BW_EXPECT_NONE,   /* `action: none`: no terminating action */
    BW_EXPECT_ACTION, /* `action: <kind>`: see below */
};

struct bw_ruleset_test {
    bw_slice name; /* `name:`, or "test N" (1-based) */
    struct bw_rules_pos pos;
    struct bw_request_view request; /* slices into the snapshot arena */
    /* What must happen:
     *   NONE: the phase ends with BW_VERDICT_CONTINUE.
     *   ACTION with a terminating kind (block, redirect, rate_limit): the
     *     verdict has that kind, and if has_rule, that rule ended it.
     *   ACTION with another kind: rule `rule` (has_rule required) fired,
     *     and its action is of that kind.
     * The rule is `rule` of ruleset `rule_set`, or of the test's own ruleset
     * when rule_set is empty: a rule of the same id in an executed ruleset
     * is another rule. */
    enum bw_test_expect_kind expect;
    enum bw_action_kind action;
    bool has_rule;
    bw_slice rule;
    bw_slice rule_set;            /* `rule: <ruleset>/<rule>`; empty: the test's ruleset */
    struct bw_rules_pos rule_pos; /* of the `rule:` value */
    bool has_status;
    uint16_t status; /* terminating: the verdict's status */
};

struct bw_ruleset {
    bw_slice id;
    bw_slice file;           /* for messages */
    struct bw_rules_pos pos; /* of `id` */
    enum bw_rules_phase phase;
    bool enabled; /* `enabled: false`: outcome RULESET_DISABLED */
    struct bw_rule *rules;
    size_t nrules;
    struct bw_ruleset_test *tests;
    size_t ntests;
    /* Set by bw_rulebook_build: */
    uint32_t index;
    bool executed; /* the target of some execute: not top level */
};

/* A route's match: the default route has none and always matches. */
struct bw_route_match {
    bool has_match;
    const struct bw_rules_expr *expr; /* request phase, when has_match */
};

/* Everything compiled together: rules of every ruleset and the routes'
 * match expressions. Immutable after build; shared by all workers. */
struct bw_rulebook {
    struct bw_ruleset *rulesets; /* as given (build sets index/executed) */
    size_t nrulesets;
    const struct bw_rule **rules; /* by global index */
    size_t nrules;
    struct bw_rules_prog *prog[BW_RULES_PHASE__COUNT];
    const uint32_t *top[BW_RULES_PHASE__COUNT]; /* top-level rulesets, in order */
    size_t ntop[BW_RULES_PHASE__COUNT];
    const struct bw_route_match *routes;
    const uint32_t *route_expr; /* route i with a match: expression route_expr[i] of
                                 * prog[REQUEST] */
    size_t nroutes;
    bool has_rate_limits; /* some rule's action is rate_limit */
    /* A bit per global rule index: `enabled: false`. bw_rulebook_build sets
     * it, and numbers each ruleset's rules (global index and expression
     * index) consecutively, so that a ruleset's rules between two disabled or
     * killed ones are evaluated in one bw_rules_eval_first_true call. NULL
     * in a book built by hand: its rules are then evaluated one by one. */
    const uint64_t *disabled;
};

/* Validates the rulesets as a whole (unique ruleset ids, unique rule ids in
 * each ruleset, execute and skip targets exist, execute targets have the
 * same phase, no execute cycle, execute depth <= BW_RULES_MAX_EXECUTE_DEPTH,
 * actions allowed in the phase: rewrite in request, set_header/remove_header
 * in response), assigns indices and compiles one program per phase: the
 * rules' expressions, then (request phase) the routes' match expressions.
 * On failure err holds "file:line:col: error: <sentence>" naming the rule
 * or ruleset at fault; nothing is kept (regex databases already built are
 * freed). sets must live in `a` or outlive the book. */
bw_status bw_rulebook_build(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                            const struct bw_route_match *routes, size_t nroutes,
                            struct bw_rulebook **ret, bw_error *err) BW_MUST_CHECK;

/* Every problem of a build or a test run, not only the first, so that a user
 * fixes a file in one pass: each item is one "file:line:col: error: ..."
 * line, in the order found (rulesets in the order given, rules in file
 * order). At most BW_RULEBOOK_MAX_ERRORS are kept; `dropped` counts the
 * rest, for an "N more errors not shown" line. */
enum { BW_RULEBOOK_MAX_ERRORS = 20 };
struct bw_rulebook_errors {
    bw_error items[BW_RULEBOOK_MAX_ERRORS];
    size_t n;
    size_t dropped;
};

/* bw_rulebook_build, with every problem in *errs (reset first). More
 * rulesets than BW_RULES_MAX_RULESETS is the only problem then reported; an
 * execute target that does not exist is left out of the cycle and depth
 * checks rather than reported again through them; depth is checked when
 * there is no cycle. */
bw_status bw_rulebook_build_all(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                                const struct bw_route_match *routes, size_t nroutes,
                                struct bw_rulebook **ret,
                                struct bw_rulebook_errors *errs) BW_MUST_CHECK;

/* When some ruleset files did not load: the checks that need several files
 * (duplicate ruleset ids, execute and skip targets, execute cycles and
 * depth, the total of rules) over what the files held, so that their
 * problems are said with the files' own, not after those are fixed. sets
 * are as bw_ruleset_parse leaves them on failure (config/rulesets.h);
 * rules whose action did not read are passed over, and while some ruleset
 * has no id, no target is said not to exist. BW_ERR when a problem was
 * found; nothing is built. */
bw_status bw_rulebook_check_links(bw_arena *a, struct bw_ruleset *sets, size_t nsets,
                                  struct bw_rulebook_errors *errs) BW_MUST_CHECK;

/* Frees what the arena does not own. Accepts NULL, returns NULL. */
struct bw_rulebook *bw_rulebook_free(struct bw_rulebook *book);

/* Runs every embedded test of every ruleset (in a fresh request state with a
 * rate limiter that is never over its limit, nothing killed). The first
 * failing test fails the build: "file:line:col: error: test \"name\" of
 * ruleset \"id\": expected block by rule \"x\", got continue (rules that
 * fired: a, b)". `a` holds per-test scratch and is reset between tests. */
bw_status bw_rulebook_run_tests(const struct bw_rulebook *book, bw_arena *a,
                                bw_error *err) BW_MUST_CHECK;
/* The same, running every test and listing each failing one in *errs. */
bw_status bw_rulebook_run_tests_all(const struct bw_rulebook *book, bw_arena *a,
                                    struct bw_rulebook_errors *errs) BW_MUST_CHECK;

/* ---- running --------------------------------------------------------------- */

/* What a rate limit said. */
enum bw_rl_decision { BW_RL_UNDER, BW_RL_OVER, BW_RL_FAILED, BW_RL_DECISION__COUNT };

/* The rate limiter the caller provides (modules/rate_limit.c in the proxy;
 * one that is never over for embedded tests). key is a 64-bit hash of the rule's global
 * index and the characteristics' values; it counts this request and says
 * whether the count over the sliding period exceeds the rule's `requests`.
 * On OVER it sets *retry_after_s (>= 1). FAILED (the table could not take the
 * key) lets the request through: a limiter never blocks by accident. */
struct bw_rate_limiter_ops {
    enum bw_rl_decision (*hit)(void *self, const struct bw_rule *rule, uint64_t key,
                               uint64_t now_ms, uint64_t *retry_after_s);
    void *self;
};

/* Killswitches: a bit per global rule index and per ruleset index. Read with
 * relaxed atomic loads, so the admin API may flip them while workers run;
 * a flip is seen by requests that start after it. Both always point to
 * words (all zero when nothing is killed): see bw_killset_alloc. */
struct bw_killset {
    const _Atomic uint64_t *rules;    /* ceil(nrules / 64) words */
    const _Atomic uint64_t *rulesets; /* ceil(nrulesets / 64) words */
};

/* Why a rule did or did not act: every variant is a normal state. */
enum bw_rule_outcome {
    BW_OUTCOME_FIRED,            /* expression TRUE, action taken */
    BW_OUTCOME_NOT_MATCHED,      /* expression FALSE */
    BW_OUTCOME_UNKNOWN,          /* expression UNKNOWN: does not fire */
    BW_OUTCOME_DISABLED,         /* enabled: false: not evaluated */
    BW_OUTCOME_KILLED,           /* killswitch on the rule: not evaluated */
    BW_OUTCOME_RULESET_DISABLED, /* execute target: enabled: false */
    BW_OUTCOME_RULESET_KILLED,   /* execute target: killswitch */
    BW_OUTCOME_RULESET_SKIPPED,  /* execute target: skipped by an earlier skip */
    BW_OUTCOME__COUNT
};

const char *bw_rule_outcome_name(enum bw_rule_outcome o); /* "fired", "not_matched", ... */
const char *bw_action_name(enum bw_action_kind k);        /* "block", "log", ... */

/* One step of a run, for `bulwark eval` and tests. A rule step (is_ruleset
 * false) has `rule` and the three-valued value of its expression; when the
 * outcome is DISABLED or KILLED the expression was not evaluated and value
 * means nothing (it is FALSE): a printer must show the outcome instead.
 * A ruleset step (is_ruleset true) says a top-level ruleset was entered
 * (FIRED) or not (RULESET_DISABLED, _KILLED, _SKIPPED); `rule` is then not
 * meaningful. */
struct bw_rules_trace_step {
    bool is_ruleset;
    const struct bw_ruleset *ruleset;
    const struct bw_rule *rule; /* valid when !is_ruleset */
    uint32_t depth;             /* execute nesting, 0 = top level */
    enum bw_tri value;
    enum bw_rule_outcome outcome;
};

struct bw_rules_tracer {
    void (*step)(void *self, const struct bw_rules_trace_step *s);
    void *self;
};

/* Zeroed killswitch words sized for book, in a. */
bw_status bw_killset_alloc(bw_arena *a, const struct bw_rulebook *book,
                           struct bw_killset *ret) BW_MUST_CHECK;

struct bw_rules_env {
    struct bw_rate_limiter_ops limiter;
    struct bw_killset kills;
    uint64_t now_ms;                /* monotonic, for rate limits */
    _Atomic uint64_t *match_counts; /* per global rule index, +1 (relaxed) on FIRED */
    bool tracing;
    struct bw_rules_tracer tracer; /* called for each step when tracing */
};

/* Carried across the phases of one request. */
struct bw_rules_request {
    uint64_t skipped_rulesets[BW_RULES_MAX_RULESETS / 64];
    uint32_t skipped_modules; /* bits of bw_module_ref */
};

static inline void bw_rules_request_init(struct bw_rules_request *st)
{
    *st = (struct bw_rules_request){0};
}

enum bw_verdict_kind {
    BW_VERDICT_CONTINUE, /* nothing terminating fired */
    BW_VERDICT_BLOCK,
    BW_VERDICT_REDIRECT,
    BW_VERDICT_RATE_LIMITED,
    BW_VERDICT__COUNT
};

/* A phase's result. Non-terminating effects (rewrite, set_header,
 * remove_header) that fired are listed in order in `effects` for the caller
 * to apply; they are kept even when a later rule terminates (a block is a
 * block; the caller ignores request rewrites then). */
struct bw_rules_verdict {
    enum bw_verdict_kind kind;
    bool has_rule; /* the rule that ended the phase (not CONTINUE) */
    const struct bw_rule *rule;
    const struct bw_ruleset *ruleset;
    uint16_t status; /* BLOCK / REDIRECT / RATE_LIMITED */
    bool has_body;   /* BLOCK */
    bw_slice body;
    bw_slice location;                    /* REDIRECT: with "?query" when preserve_query */
    uint64_t retry_after_s;               /* RATE_LIMITED */
    const struct bw_rule *const *effects; /* in the request arena */
    size_t neffects;
    uint32_t fired;      /* rules that fired in this phase (log included) */
    bool has_last_fired; /* for the access log when CONTINUE */
    const struct bw_rule *last_fired;
};

/* Runs the top-level rulesets of the phase for the request bound to cx (a
 * context on book->prog[phase]). Allocates only from cx's arena (the
 * effects list, a redirect location with a query); when that fails, the
 * effect is dropped and the run goes on. Never fails. */
void bw_rulebook_run(const struct bw_rulebook *book, enum bw_rules_phase phase,
                     struct bw_rules_ctx *cx, const struct bw_rules_env *env,
                     struct bw_rules_request *st, struct bw_rules_verdict *out);

/* The first route whose match is TRUE (cx on prog[REQUEST]): BW_OK and its
 * index, or BW_ERR when none matched (the proxy answers 404). */
bw_status bw_rulebook_route(const struct bw_rulebook *book, struct bw_rules_ctx *cx,
                            size_t *ret) BW_MUST_CHECK;

/* The 64-bit rate-limit key of rule r (of ruleset set) for the request:
 * FNV-1a over the rule's identity (its ruleset's id, its own id and its
 * period, never its index, so a reload that keeps the rule keeps its
 * counters even when rules were added before it) and each characteristic's
 * value, length-prefixed so ("ab","c") and ("a","bc") differ. Exposed for
 * tests. */
uint64_t bw_rules_rate_key(const struct bw_ruleset *set, const struct bw_rule *r,
                           struct bw_rules_ctx *cx);

#endif
