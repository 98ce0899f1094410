/* The bot_score module at run time (bot_module.h). */
#include "modules/bot_module.h"

#include <stdio.h>
#include <string.h>

#include "modules/lkg.h"

void bw_bot_rt_load(struct bw_bot_rt *b, const struct bw_config *cfg, struct bw_bot_running running,
                    bool use_lkg, char *report, size_t cap)
{
    memset(b, 0, sizeof *b);
    if (cap)
        report[0] = '\0';
    const struct bw_config_bot_module *m = &cfg->modules.bot_score;
    b->enabled = m->enabled;
    b->on_error = m->on_error;
    b->error_status = m->error_status;
    if (!m->enabled)
        return;
    struct bw_bot_load_opts opts = {.max_features = m->max_features, .running = running};
    char path[4097];
    snprintf(path, sizeof path, "%.*s", (int)m->features.len, m->features.ptr);
    if (bw_bot_model_load_file(path, &opts, &b->model, &b->file, report, cap) == BW_OK) {
        b->has_model = true;
        return;
    }
    char lkg[4400];
    if (use_lkg && cfg->has_state_dir && bw_lkg_exists(cfg->state_dir, m->features) &&
        bw_lkg_path(cfg->state_dir, m->features, lkg, sizeof lkg) == BW_OK) {
        size_t len = strnlen(report, cap);
        char *rest = report + len;
        size_t left = cap - len;
        int n = snprintf(rest, left, "falling back to the last-known-good copy %s\n", lkg);
        if (n > 0 && (size_t)n < left) {
            rest += n;
            left -= (size_t)n;
        }
        if (bw_bot_model_load_file(lkg, &opts, &b->model, &b->file, rest, left) == BW_OK) {
            b->has_model = true;
            b->from_lkg = true;
            return;
        }
    }
    b->failed = true;
}

void bw_bot_rt_done(struct bw_bot_rt *b)
{
    b->model = bw_bot_model_free(b->model);
    b->has_model = false;
    bw_file_bytes_release(&b->file);
}
