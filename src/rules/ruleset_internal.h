/* Shared between the ruleset_*.c files of src/rules only. */
#ifndef BW_RULES_RULESET_INTERNAL_H
#define BW_RULES_RULESET_INTERNAL_H

#include "rules/ruleset.h"

/* Runs the given rulesets as top level, in order (bw_rulebook_run runs the
 * phase's top list; the embedded tests run one ruleset, entered even when
 * it is disabled, since its tests are about its rules). */
void bw__rulebook_run_sets(const struct bw_rulebook *book, const uint32_t *sets, size_t nsets,
                           bool enter_disabled, struct bw_rules_ctx *cx,
                           const struct bw_rules_env *env, struct bw_rules_request *st,
                           struct bw_rules_verdict *out);

/* Where a build or a test run puts its problems: the first one in `first`
 * (bw_rulebook_build's single error), each one in `all` (the _all
 * variants); either may be NULL. `count` counts them all. */
struct bw__rb_sink {
    bw_error *first;
    struct bw_rulebook_errors *all;
    size_t count;
};

/* Records one problem ("file:line:col: error: ..." already formatted by the
 * caller) and returns BW_ERR. */
bw_status bw__rb_fail(struct bw__rb_sink *k, const char *fmt, ...) BW_PRINTF(2, 3);

#endif
