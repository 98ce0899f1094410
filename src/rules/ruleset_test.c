/* The embedded tests of rulesets (`tests:`), run at load: a failing test
 * rejects the rulebook the way a syntax error would, so a rule change that
 * breaks what its author promised never reaches traffic.
 *
 * A test runs its own ruleset as the only top-level one (entered even when
 * the ruleset is disabled: the test is about its rules), with a fresh
 * request state, nothing killed and a rate limiter that is never over its
 * limit. Its message says what was expected, what came, and which rules
 * fired, so the author sees why without a debugger. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules/ruleset.h"
#include "rules/ruleset_internal.h"

struct recorder {
    const struct bw_rulebook *book;
    const struct bw_ruleset_test *t;
    uint32_t own;      /* the test's ruleset */
    uint32_t want_set; /* the expected rule's ruleset */
    bool matched;      /* the expected rule fired with the expected action */
    const struct bw_rule *match;
    char fired[300];
    size_t o;
    size_t nfired;
};

static bool fired_outcome(enum bw_rule_outcome o)
{
    switch (o) {
    case BW_OUTCOME_FIRED:
    case BW_OUTCOME_RULESET_DISABLED: /* an execute that fired and ran nothing */
    case BW_OUTCOME_RULESET_KILLED:
    case BW_OUTCOME_RULESET_SKIPPED:
        return true;
    case BW_OUTCOME_NOT_MATCHED:
    case BW_OUTCOME_UNKNOWN:
    case BW_OUTCOME_DISABLED:
    case BW_OUTCOME_KILLED:
    case BW_OUTCOME__COUNT:
        return false;
    }
    return false;
}

static bool is_expected(const struct recorder *rec, const struct bw_rule *r)
{
    return r->ruleset == rec->want_set && bw_slice_eq(r->id, rec->t->rule);
}

/* A rule as a message names it: its id in the test's own ruleset,
 * <ruleset>/<id> in another, so that two rules of one id are told apart. */
static void qualified(const struct recorder *rec, const struct bw_rule *r, char *out, size_t cap)
{
    const struct bw_ruleset *set = &rec->book->rulesets[r->ruleset];
    if (r->ruleset == rec->own)
        snprintf(out, cap, "%.*s", (int)r->id.len, r->id.ptr);
    else
        snprintf(out, cap, "%.*s/%.*s", (int)set->id.len, set->id.ptr, (int)r->id.len, r->id.ptr);
}

static void on_step(void *self, const struct bw_rules_trace_step *s)
{
    struct recorder *rec = self;
    if (s->is_ruleset || !fired_outcome(s->outcome))
        return;
    const struct bw_rule *r = s->rule;
    const struct bw_ruleset_test *t = rec->t;
    if (t->expect == BW_EXPECT_ACTION && r->action.kind == t->action &&
        (!t->has_rule || is_expected(rec, r)) && !rec->matched) {
        rec->matched = true;
        rec->match = r;
    }
    char name[2 * BW_RULES_MAX_ID_LEN + 2];
    qualified(rec, r, name, sizeof name);
    size_t nlen = strlen(name);
    if (rec->o + nlen + 8 < sizeof rec->fired) {
        int w = snprintf(rec->fired + rec->o, sizeof rec->fired - rec->o, "%s%s",
                         rec->nfired ? ", " : "", name);
        if (w > 0)
            rec->o += (size_t)w;
    } else if (rec->o > 0 && rec->o + 6 < sizeof rec->fired && rec->fired[rec->o - 1] != '.') {
        rec->o += (size_t)snprintf(rec->fired + rec->o, sizeof rec->fired - rec->o, ", ...");
    }
    rec->nfired++;
}

static bool terminating(enum bw_action_kind k)
{
    return k == BW_ACTION_BLOCK || k == BW_ACTION_REDIRECT;
}

static const char *verdict_name(enum bw_verdict_kind k)
{
    switch (k) {
    case BW_VERDICT_CONTINUE:
        return "continue";
    case BW_VERDICT_BLOCK:
        return "block";
    case BW_VERDICT_REDIRECT:
        return "redirect";
    case BW_VERDICT_RATE_LIMITED:
        return "rate_limit";
    case BW_VERDICT__COUNT:
        break;
    }
    return "?";
}

static bool verdict_is(enum bw_verdict_kind v, enum bw_action_kind a)
{
    return (v == BW_VERDICT_BLOCK && a == BW_ACTION_BLOCK) ||
           (v == BW_VERDICT_REDIRECT && a == BW_ACTION_REDIRECT);
}

static bool passed(const struct bw_ruleset_test *t, const struct bw_rules_verdict *v,
                   const struct recorder *rec)
{
    switch (t->expect) {
    case BW_EXPECT_NONE:
        return v->kind == BW_VERDICT_CONTINUE;
    case BW_EXPECT_ACTION:
        break;
    }
    if (terminating(t->action))
        return verdict_is(v->kind, t->action) && (!t->has_rule || is_expected(rec, v->rule)) &&
               (!t->has_status || v->status == t->status);
    /* rate_limit is never over in a test: that it fired is what can be
     * checked, with the status it would answer. */
    if (!rec->matched)
        return false;
    if (t->has_status && t->action == BW_ACTION_RATE_LIMIT)
        return rec->match->action.u.rate_limit.status == t->status;
    return true;
}

static enum bw_rl_decision never_over(void *self, const struct bw_rule *rule, uint64_t key,
                                      uint64_t now_ms, uint64_t *retry_after_s)
{
    (void)self, (void)rule, (void)key, (void)now_ms, (void)retry_after_s;
    return BW_RL_UNDER;
}

static bw_status report(const struct bw_ruleset *s, const struct bw_ruleset_test *t,
                        const struct bw_rules_verdict *v, const struct recorder *rec,
                        struct bw__rb_sink *err)
{
    char want[320], got[320];
    switch (t->expect) {
    case BW_EXPECT_NONE:
        snprintf(want, sizeof want, "none");
        break;
    case BW_EXPECT_ACTION:
        snprintf(want, sizeof want, "%s%s%.*s%s%.*s%s", bw_action_name(t->action),
                 t->has_rule ? " by rule \"" : "", (int)t->rule_set.len, t->rule_set.ptr,
                 t->rule_set.len ? "/" : "", t->has_rule ? (int)t->rule.len : 0,
                 t->has_rule ? t->rule.ptr : "", t->has_rule ? "\"" : "");
        if (t->has_status) {
            size_t n = strlen(want);
            snprintf(want + n, sizeof want - n, " with status %u", (unsigned)t->status);
        }
        break;
    }
    if (v->kind == BW_VERDICT_CONTINUE) {
        snprintf(got, sizeof got, "continue");
    } else {
        char name[2 * BW_RULES_MAX_ID_LEN + 2];
        qualified(rec, v->rule, name, sizeof name);
        snprintf(got, sizeof got, "%s by rule \"%s\" with status %u", verdict_name(v->kind), name,
                 (unsigned)v->status);
    }
    char fired[340];
    if (rec->nfired)
        snprintf(fired, sizeof fired, "rules that fired: %s", rec->fired);
    else
        snprintf(fired, sizeof fired, "no rule fired");
    return bw__rb_fail(err,
                       "%.*s:%u:%u: error: test \"%.*s\" of ruleset \"%.*s\": expected %s, got "
                       "%s (%s)",
                       (int)s->file.len, s->file.ptr, t->pos.line, t->pos.col, (int)t->name.len,
                       t->name.ptr, (int)s->id.len, s->id.ptr, want, got, fired);
}

/* Runs every test, also after one fails: each failing test is reported. */
static bw_status run_tests(const struct bw_rulebook *book, bw_arena *a, struct bw__rb_sink *err)
{
    bw_regex_scratch scratch;
    bw_regex_scratch_init(&scratch);
    bw_status st = BW_OK;
    for (int ph = 0; ph < BW_RULES_PHASE__COUNT && st == BW_OK; ph++) {
        bw_error rerr;
        if (bw_rules_prog_reserve(book->prog[ph], &scratch, &rerr) != BW_OK)
            st = bw__rb_fail(err, "%s", rerr.msg);
    }
    bool fatal = st != BW_OK;
    for (size_t i = 0; i < book->nrulesets && !fatal; i++) {
        const struct bw_ruleset *s = &book->rulesets[i];
        for (size_t k = 0; k < s->ntests && !fatal; k++) {
            const struct bw_ruleset_test *t = &s->tests[k];
            bw_arena_reset(a);
            struct bw_killset kills;
            if (bw_killset_alloc(a, book, &kills) != BW_OK) {
                st = bw__rb_fail(err, "out of memory running the tests of ruleset \"%.*s\"",
                                 (int)s->id.len, s->id.ptr);
                fatal = true;
                break;
            }
            struct recorder rec = {
                .book = book, .t = t, .own = (uint32_t)i, .want_set = (uint32_t)i};
            if (t->has_rule && t->rule_set.len > 0) {
                size_t j = 0;
                while (j < book->nrulesets && !bw_slice_eq(book->rulesets[j].id, t->rule_set))
                    j++;
                if (j == book->nrulesets) {
                    st = bw__rb_fail(err,
                                     "%.*s:%u:%u: error: test \"%.*s\" of ruleset \"%.*s\": "
                                     "expect.rule names ruleset \"%.*s\", which does not exist",
                                     (int)s->file.len, s->file.ptr, t->rule_pos.line,
                                     t->rule_pos.col, (int)t->name.len, t->name.ptr, (int)s->id.len,
                                     s->id.ptr, (int)t->rule_set.len, t->rule_set.ptr);
                    continue;
                }
                rec.want_set = (uint32_t)j;
            }
            struct bw_rules_env env = {
                .limiter = {.hit = never_over},
                .kills = kills,
                .tracing = true,
                .tracer = {.step = on_step, .self = &rec},
            };
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, book->prog[s->phase], &t->request, a, &scratch);
            struct bw_rules_request rs;
            bw_rules_request_init(&rs);
            struct bw_rules_verdict v;
            uint32_t only = (uint32_t)i;
            bw__rulebook_run_sets(book, &only, 1, true, &cx, &env, &rs, &v);
            if (!passed(t, &v, &rec))
                st = report(s, t, &v, &rec, err);
        }
    }
    bw_arena_reset(a);
    bw_regex_scratch_done(&scratch);
    return st;
}

bw_status bw_rulebook_run_tests(const struct bw_rulebook *book, bw_arena *a, bw_error *err)
{
    struct bw__rb_sink sink = {.first = err};
    return run_tests(book, a, &sink);
}

bw_status bw_rulebook_run_tests_all(const struct bw_rulebook *book, bw_arena *a,
                                    struct bw_rulebook_errors *errs)
{
    errs->n = 0;
    errs->dropped = 0;
    struct bw__rb_sink sink = {.all = errs};
    return run_tests(book, a, &sink);
}
