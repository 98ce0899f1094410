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

#endif
