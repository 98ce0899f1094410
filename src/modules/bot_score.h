/* The bot_score module's core: a feature file (JSON, DESIGN.md §2 "Feature
 * file") loaded into an immutable model, and the pure per-request scoring
 * that turns the model and a request into bot.score (1 = automated, 99 =
 * human) or a failure the caller's on_error policy handles.
 *
 * This file owns validation (every limit named below, all checked before a
 * model exists: outage 1 of DESIGN.md §1 was a generated file that crossed a
 * limit inside the proxy) and scoring. It does not own where the file comes
 * from on reload, last-known-good, killswitches, metrics or the policy
 * itself: the proxy does, with the outcome this file returns.
 *
 *   // load (control thread):
 *   struct bw_bot_load_opts o = {.max_features = cfg->modules.bot_score.max_features,
 *                                .running = {.known = true, .version = old->version}};
 *   struct bw_bot_model *m;
 *   if (bw_bot_model_load_file(path, &o, &m, report, sizeof report) != BW_OK)
 *       log(report);   // the running model, if any, keeps serving
 *   // per worker, once per model:
 *   if (bw_bot_worker_init(&w, m, &err) != BW_OK) ...
 *   // per request (req_arena capped, cleared between requests):
 *   struct bw_bot_result r = bw_bot_score(m, &view, &req_arena, &w.scratch);
 *   switch (r.outcome) { case BW_BOT_SCORED: view.bot_score = ...; ...
 *                        case BW_BOT_FAILED: apply on_error; ... }
 *   // at snapshot free: m = bw_bot_model_free(m); */
#ifndef BW_MODULES_BOT_SCORE_H
#define BW_MODULES_BOT_SCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "config/config.h"
#include "config/file.h"
#include "rules/eval.h"
#include "rules/regex.h"
#include "rules/request_view.h"

/* Named limits, each tested at and just past it. Feature counts are the
 * config's: BW_CONFIG_BOT_DEFAULT_MAX_FEATURES (200) and
 * BW_CONFIG_BOT_MAX_FEATURES_CAP (1024). */
#define BW_BOT_MAX_FILE_BYTES ((size_t)1024 * 1024) /* the feature file */
/* |bias| and every |weight|; past it the sigmoid is flat anyway */
#define BW_BOT_MAX_WEIGHT 1000.0
#define BW_BOT_MAX_NAME_LEN 128 /* bytes of a feature name, [A-Za-z0-9_.-] */
#define BW_BOT_MIN_FEATURES 1   /* an empty list would score every request alike */
#define BW_BOT_MAX_ERRORS 16    /* errors listed in one report; the rest are counted */

/* The score's range (DESIGN.md §2 "Rules language", bot.score). */
#define BW_BOT_SCORE_MIN 1  /* surely automated */
#define BW_BOT_SCORE_MAX 99 /* surely human */

/* A suggested cap for the per-request arena scoring uses (lower(), concat(),
 * joined headers, the evaluator's caches); past it, scoring fails. */
#define BW_BOT_REQUEST_ARENA_CAP ((size_t)64 * 1024)

struct bw_bot_feature {
    bw_slice name;       /* unique in the model, 1..BW_BOT_MAX_NAME_LEN of [A-Za-z0-9_.-] */
    bw_slice expression; /* as decoded from the file, for `bulwark eval` */
    double weight;       /* finite, within ±BW_BOT_MAX_WEIGHT */
};

/* A loaded model: owned by its arena, immutable after load, shareable by
 * every worker. Feature i is expression i of prog. */
struct bw_bot_model {
    bw_arena arena;
    bw_slice path;    /* the file it came from */
    uint64_t version; /* from the file; never lower than the model it replaced */
    double bias;      /* finite, within ±BW_BOT_MAX_WEIGHT */
    const struct bw_bot_feature *features;
    size_t nfeatures; /* BW_BOT_MIN_FEATURES..max_features */
    struct bw_rules_prog *prog;
    uint64_t hash;     /* FNV-1a 64 of the file's bytes: an identity for /status */
    size_t file_bytes; /* the file's size */
};

/* The version of the model serving now, when there is one: a new file must
 * not go backwards from it (an equal version is a re-read and is fine). */
struct bw_bot_running {
    bool known;
    uint64_t version; /* when known */
    bool is_lkg;      /* the floor is the last-known-good copy's (at start) */
};

struct bw_bot_load_opts {
    uint32_t max_features; /* 1..BW_CONFIG_BOT_MAX_FEATURES_CAP (modules.bot_score.max_features) */
    struct bw_bot_running running;
    /* Where the config names the file (bw_config_where: "bulwark.yaml:14:14:
     * error: modules.bot_score.features"), or NULL: a file that cannot be
     * read is reported there, as "<named_at>: <path>: cannot open ...". */
    const char *named_at;
};

/* Validates the feature file text (no I/O: path only names it in errors)
 * and compiles it into a new model. All or nothing: on any violation *ret is
 * untouched and report holds every problem found (up to BW_BOT_MAX_ERRORS),
 * one per line as "path:line:col: error: ..." (or "path: error: ..." for the
 * file as a whole); an expression error is followed by its line and a caret.
 * report is always NUL-terminated when cap > 0. */
bw_status bw_bot_model_parse(const char *path, const char *text, size_t len,
                             const struct bw_bot_load_opts *opts, struct bw_bot_model **ret,
                             char *report, size_t cap) BW_MUST_CHECK;

/* Reads the file (bounded by BW_BOT_MAX_FILE_BYTES; missing, unreadable, a
 * directory, not a regular file, empty: one line saying which, at
 * opts->named_at when set) and parses
 * it as bw_bot_model_parse does. On success, with ret_bytes, the bytes
 * parsed are handed over there (the caller releases them); without, they
 * are freed. */
bw_status bw_bot_model_load_file(const char *path, const struct bw_bot_load_opts *opts,
                                 struct bw_bot_model **ret, struct bw_file_bytes *ret_bytes,
                                 char *report, size_t cap) BW_MUST_CHECK;

/* Frees the model and what its program holds outside the arena. Accepts
 * NULL, returns NULL. */
struct bw_bot_model *bw_bot_model_free(struct bw_bot_model *m);

/* ---- per worker ------------------------------------------------------------ */

/* One worker's regex scratch, reserved for one model's program. */
struct bw_bot_worker {
    const struct bw_bot_model *model;
    bw_regex_scratch scratch;
};

bw_status bw_bot_worker_init(struct bw_bot_worker *w, const struct bw_bot_model *m,
                             bw_error *err) BW_MUST_CHECK;
void bw_bot_worker_done(struct bw_bot_worker *w);

/* ---- per request ------------------------------------------------------------ */

enum bw_bot_outcome {
    BW_BOT_SCORED, /* a score; every feature evaluated within its limits */
    BW_BOT_FAILED, /* no score: the caller applies on_error (bot.score stays unknown) */
    BW_BOT_OUTCOME__COUNT
};

enum bw_bot_failure {
    BW_BOT_FAIL_ARENA, /* the per-request arena refused an allocation */
    BW_BOT_FAIL_REGEX, /* a regex scan failed */
    BW_BOT_FAILURE__COUNT
};

struct bw_bot_result {
    enum bw_bot_outcome outcome;
    union {
        struct {
            int64_t score;     /* BW_BOT_SCORE_MIN..BW_BOT_SCORE_MAX */
            uint32_t ntrue;    /* features that were true (their weights were added) */
            uint32_t nunknown; /* features that were unknown (added nothing) */
        } scored;
        struct {
            enum bw_bot_failure reason;
        } failed;
    } u;
    struct bw_rules_eval_stats stats; /* both variants: for metrics and `bulwark eval` */
};

/* Scores one request: each feature evaluated once, the weights of the TRUE
 * ones summed (FALSE and UNKNOWN add nothing), then bw_bot_score_of(bias +
 * sum). Pure: no I/O, no allocation beyond arena (which must outlive the
 * call's use of v; cleared by the caller between requests); scratch must be
 * reserved for m->prog (bw_bot_worker_init). A feature reading a value the
 * evaluator could not compute within its limits fails the whole score: a
 * partial sum would look like a confident answer. */
struct bw_bot_result bw_bot_score(const struct bw_bot_model *m, const struct bw_request_view *v,
                                  bw_arena *arena, bw_regex_scratch *scratch);

/* score = 1 + round(98 * (1 - sigmoid(x))), x = bias + sum of true weights:
 * 1 for x -> +inf (automated), 99 for x -> -inf (human), 50 at 0. */
int64_t bw_bot_score_of(double x);

#endif
