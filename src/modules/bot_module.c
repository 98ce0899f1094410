/* The bot_score module at run time (bot_module.h). */
#include "modules/bot_module.h"

#include <stdio.h>
#include <string.h>

#include "modules/lkg.h"

/* At start nothing runs yet, but the last-known-good copy is the newest
 * model this server accepted: a restart must not take the version back
 * either (a pipeline that published an old file while the server was down
 * would otherwise be taken at its word). A copy that does not load sets no
 * floor. */
static struct bw_bot_running lkg_floor(const char *lkg, uint32_t max_features)
{
    struct bw_bot_load_opts o = {.max_features = max_features};
    struct bw_bot_model *m = NULL;
    struct bw_file_bytes f = {0};
    char scratch[256];
    if (bw_bot_model_load_file(lkg, &o, &m, &f, scratch, sizeof scratch) != BW_OK)
        return (struct bw_bot_running){.known = false};
    struct bw_bot_running r = {.known = true, .version = m->version, .is_lkg = true};
    bw_bot_model_free(m);
    bw_file_bytes_release(&f);
    return r;
}

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
    char at[512];
    bw_config_where(cfg, m->features_pos, "modules.bot_score.features", at, sizeof at);
    struct bw_bot_load_opts opts = {.max_features = m->max_features, .running = running};
    char lkg[4400];
    bool has_lkg = use_lkg && cfg->has_state_dir && bw_lkg_exists(cfg->state_dir, m->features) &&
                   bw_lkg_path(cfg->state_dir, m->features, lkg, sizeof lkg) == BW_OK;
    if (has_lkg && !running.known)
        opts.running = lkg_floor(lkg, m->max_features);
    char path[4097];
    snprintf(path, sizeof path, "%.*s", (int)m->features.len, m->features.ptr);
    opts.named_at = at;
    if (bw_bot_model_load_file(path, &opts, &b->model, &b->file, report, cap) == BW_OK) {
        b->has_model = true;
        return;
    }
    /* The copy is not named in the config: its own path says which it is. */
    opts.named_at = NULL;
    if (has_lkg) {
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
