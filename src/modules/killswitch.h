/* Killswitches (DESIGN.md §2, "POST /killswitch"): turning off one rule, one
 * ruleset or a whole module at run time, without a reload. A killed rule or
 * ruleset is a declared outcome of the rules engine ("killed"), never an
 * error; a killed module's outputs are unknown and the request goes on.
 *
 * The set of active killswitches belongs to the process, not to a snapshot:
 * it is applied to every new snapshot (a reload keeps them), and persisted
 * in state_dir so that a restart keeps them too. A killswitch naming a rule
 * that a later configuration no longer has stays in the set (it is shown as
 * "not present") and acts again if the rule comes back. */
#ifndef BW_MODULES_KILLSWITCH_H
#define BW_MODULES_KILLSWITCH_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "base/slice.h"
#include "modules/bot_module.h"
#include "modules/rules.h"
#include "rules/ruleset.h"

enum {
    BW_MAX_KILLSWITCHES = 1024,
    BW_KILL_ID_MAX = BW_RULES_MAX_ID_LEN,
    BW_KILL_TARGET_MAX = 7 + 2 * BW_RULES_MAX_ID_LEN + 2, /* "ruleset:" .. "rule:a/b" */
    /* A line longer than this (a target, blanks around it) is skipped. */
    BW_KILL_LINE_MAX = BW_KILL_TARGET_MAX + 64,
    /* The state file is read whole; bulwark writes at most
     * BW_MAX_KILLSWITCHES lines, so this leaves ample room for comments. */
    BW_KILLSWITCH_FILE_MAX = 1 << 20,
};

#define BW_KILLSWITCH_FILE "killswitches"

enum bw_kill_kind { BW_KILL_RULE, BW_KILL_RULESET, BW_KILL_MODULE, BW_KILL__COUNT };

struct bw_kill {
    enum bw_kill_kind kind;
    char ruleset[BW_KILL_ID_MAX + 1]; /* RULE, RULESET */
    char rule[BW_KILL_ID_MAX + 1];    /* RULE */
    enum bw_module_ref module;        /* MODULE */
};

struct bw_killswitches {
    struct bw_kill items[BW_MAX_KILLSWITCHES];
    size_t n;
};

/* "rule:<ruleset>/<rule>", "ruleset:<id>", "module:<bot_score|rules>";
 * ids are [A-Za-z0-9_.-]{1,128}. */
bw_status bw_kill_parse(bw_slice text, struct bw_kill *ret, bw_error *err) BW_MUST_CHECK;
/* The canonical text of k into buf (at least BW_KILL_TARGET_MAX + 1 bytes). */
void bw_kill_format(const struct bw_kill *k, char *buf, size_t cap);

/* What killswitches act on: one snapshot's modules. */
struct bw_kill_scope {
    struct bw_rules_rt *rules;
    struct bw_bot_rt *bot;
};

/* Does the scope have the target? */
bool bw_kill_present(const struct bw_kill *k, const struct bw_kill_scope *sc);

/* Turns the target off (enabled false) or back on in the set and in rr (the
 * published snapshot), at once. Fails, changing nothing, when rr does not
 * have the target (a typo must not be accepted silently) and the set does
 * not hold it either (one held for a target that has left the configuration
 * can always be lifted), or when the set is full. */
bw_status bw_kill_set(struct bw_killswitches *ks, const struct bw_kill *k, bool enabled,
                      const struct bw_kill_scope *sc, bw_error *err) BW_MUST_CHECK;

/* Applies the whole set to a new snapshot's rules (targets it lacks are
 * skipped). */
void bw_kills_apply(const struct bw_killswitches *ks, const struct bw_kill_scope *sc);

/* state_dir/killswitches: one target per line. Written to a temporary file,
 * fsynced, renamed over the old one, and the directory fsynced, so a crash
 * leaves the old set or the new one, never half of one. */
bw_status bw_kills_save(const struct bw_killswitches *ks, const char *state_dir,
                        bw_error *err) BW_MUST_CHECK;
/* Parses the state file's text (name only names it in messages). Blank
 * lines, lines starting with '#', spaces around a target and CRLF line ends
 * are allowed. A line that does not parse, is longer than BW_KILL_LINE_MAX
 * or comes past BW_MAX_KILLSWITCHES is skipped and counted in *ret_skipped,
 * err then saying name:line and why for the first; every other line is
 * loaded, a repeated one once. Pure: no I/O. */
void bw_kills_parse(struct bw_killswitches *ks, bw_slice text, const char *name,
                    size_t *ret_skipped, bw_error *err);
/* Reads state_dir/killswitches if it exists (absent: an empty set) and
 * parses it (bw_kills_parse). Fails only when the file cannot be read or is
 * over BW_KILLSWITCH_FILE_MAX. */
bw_status bw_kills_load(struct bw_killswitches *ks, const char *state_dir, size_t *ret_skipped,
                        bw_error *err) BW_MUST_CHECK;
/* Keeps the file as it is now under state_dir/killswitches.rejected (a hard
 * link), so the next save, which writes only the loaded set, does not lose
 * the lines that were skipped. */
bw_status bw_kills_keep_copy(const char *state_dir, bw_error *err) BW_MUST_CHECK;

#endif
