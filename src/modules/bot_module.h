/* The bot_score module at run time (DESIGN.md §2, §1 outage 1): the model
 * of the running configuration, or the declared failure policy when there
 * is none, and its killswitch. The model itself (file format, limits,
 * scoring) is bot_score.h. */
#ifndef BW_MODULES_BOT_MODULE_H
#define BW_MODULES_BOT_MODULE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "modules/bot_score.h"

struct bw_bot_rt {
    bool enabled;   /* modules.bot_score is configured */
    bool failed;    /* no valid model: on_error applies to every request */
    bool from_lkg;  /* the model is the last-known-good copy (at start) */
    bool has_model; /* !failed when enabled */
    struct bw_bot_model *model;
    /* The feature file's bytes the model was built from, until they are
     * saved as last-known-good (control thread only; workers never read it). */
    struct bw_file_bytes file;
    enum bw_on_error on_error;
    uint16_t error_status;
    _Atomic bool killed; /* killswitch module:bot_score: bot.score unknown, not a failure */
};

/* Loads the feature file of cfg (nothing when the module is not
 * configured). running: the model being replaced (its version must not go
 * backwards). With use_lkg (at start only), a file that does not load is
 * replaced by its last-known-good copy when that loads. BW_OK always for a
 * bad file: failed (or from_lkg) is set and report says why. */
void bw_bot_rt_load(struct bw_bot_rt *b, const struct bw_config *cfg, struct bw_bot_running running,
                    bool use_lkg, char *report, size_t cap);
void bw_bot_rt_done(struct bw_bot_rt *b);

#endif
