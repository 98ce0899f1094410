/* Ruleset files (YAML, DESIGN.md §2 "Rulesets") into struct bw_ruleset
 * (rules/ruleset.h). Strict like the main config: an unknown key, a wrong
 * type, an out-of-range value or an expression that does not check is an
 * error with file:line:col; expression errors carry the rules front end's
 * caret rendering. Errors are collected, not stopped at the first.
 *
 * Only one file at a time: cross-file checks (execute targets, cycles,
 * unique ruleset ids) are bw_rulebook_build's. */
#ifndef BW_CONFIG_RULESETS_H
#define BW_CONFIG_RULESETS_H

#include <stddef.h>

#include "base/arena.h"
#include "base/error.h"
#include "config/config.h"
#include "config/file.h"
#include "rules/ruleset.h"

#define BW_RULESET_MAX_FILE_BYTES ((size_t)8 * 1024 * 1024)

/* Parses YAML text (no I/O: path only names it in errors) into *ret, every
 * allocation in a (which must outlive the ruleset: the snapshot arena). On
 * failure diags holds every problem found and *ret what could be read, for
 * bw_rulebook_check_links only: an empty id when the id did not read, phase
 * BW_RULES_PHASE__COUNT when the phase did not, action kind BW_ACTION__COUNT
 * on a rule whose action or parameters did not. */
bw_status bw_ruleset_parse(bw_arena *a, const char *path, const char *text, size_t len,
                           struct bw_ruleset *ret, struct bw_config_diags *diags) BW_MUST_CHECK;

/* Reads the file (bounded by BW_RULESET_MAX_FILE_BYTES; empty, unreadable,
 * missing, a directory: one diag saying which) and parses it. On success,
 * with ret_bytes, the bytes parsed are handed over there (the caller
 * releases them); without, they are freed. */
bw_status bw_ruleset_load_file(bw_arena *a, const char *path, struct bw_ruleset *ret,
                               struct bw_config_diags *diags,
                               struct bw_file_bytes *ret_bytes) BW_MUST_CHECK;

#endif
