/* Fuzz target for bot_score feature files end to end: bytes ->
 * bw_bot_model_parse (with a running version and a max_features taken from
 * the input's first byte) -> when accepted, score a fixed request twice:
 * with an unbounded request arena, then with one too small for much.
 *
 * Invariants: nothing crashes or leaks; a refusal always says why (a
 * non-empty report, every line naming the file) and leaves *ret untouched;
 * an accepted model honours every limit (feature count, weights, bias,
 * names, version); a score is 1..99; a failure happens only when the
 * evaluator counted one, and never on the unbounded arena. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modules/bot_score.h"

static void check_model(const struct bw_bot_model *m, const struct bw_bot_load_opts *o)
{
    if (m->nfeatures < BW_BOT_MIN_FEATURES || m->nfeatures > o->max_features)
        abort();
    if (!isfinite(m->bias) || fabs(m->bias) > BW_BOT_MAX_WEIGHT)
        abort();
    if (o->running.known && m->version < o->running.version)
        abort();
    for (size_t i = 0; i < m->nfeatures; i++) {
        const struct bw_bot_feature *f = &m->features[i];
        if (!isfinite(f->weight) || fabs(f->weight) > BW_BOT_MAX_WEIGHT)
            abort();
        if (f->name.len < 1 || f->name.len > BW_BOT_MAX_NAME_LEN)
            abort();
        for (size_t k = 0; k < i; k++)
            if (bw_slice_eq(m->features[k].name, f->name))
                abort();
    }
}

static void score(const struct bw_bot_model *m)
{
    static const struct bw_rv_header hs[] = {
        {BW_SLICE_LIT("Host"), BW_SLICE_LIT("a.example")},
        {BW_SLICE_LIT("User-Agent"), BW_SLICE_LIT("curl/8.0 (compatible; Googlebot/2.1)")},
        {BW_SLICE_LIT("Accept"), BW_SLICE_LIT("*/*")},
        {BW_SLICE_LIT("Cookie"), BW_SLICE_LIT("a=1")},
        {BW_SLICE_LIT("Cookie"), BW_SLICE_LIT("b=2")},
    };
    struct bw_request_view v = {
        .method = BW_SLICE_LIT("GET"),
        .host = {.known = true, .value = BW_SLICE_LIT("a.example")},
        .uri = BW_SLICE_LIT("/admin/../api/x?q=1"),
        .raw_path = BW_SLICE_LIT("/admin/../api/x"),
        .query = BW_SLICE_LIT("q=1"),
        .headers = {.items = hs, .n = sizeof hs / sizeof hs[0]},
        .bot_score = {.known = false},
    };
    struct sockaddr_in *s4 = (struct sockaddr_in *)&v.src.addr;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(0xCB007109);
    v.src.known = true;

    struct bw_bot_worker w;
    bw_error err;
    if (bw_bot_worker_init(&w, m, &err) != BW_OK)
        return;
    for (int round = 0; round < 2; round++) {
        bw_arena a;
        bw_arena_init(&a, 256, round ? 1024 : 0);
        struct bw_bot_result r = bw_bot_score(m, &v, &a, &w.scratch);
        switch (r.outcome) {
        case BW_BOT_SCORED:
            if (r.u.scored.score < BW_BOT_SCORE_MIN || r.u.scored.score > BW_BOT_SCORE_MAX)
                abort();
            if ((size_t)r.u.scored.ntrue + r.u.scored.nunknown > m->nfeatures)
                abort();
            if (r.stats.arena_failures || r.stats.regex_failures)
                abort();
            break;
        case BW_BOT_FAILED:
            if (round == 0 && r.u.failed.reason == BW_BOT_FAIL_ARENA)
                abort(); /* unbounded: the arena cannot refuse */
            if (!r.stats.arena_failures && !r.stats.regex_failures)
                abort();
            break;
        case BW_BOT_OUTCOME__COUNT:
            abort();
        }
        bw_arena_reset(&a);
    }
    bw_bot_worker_done(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Byte 0 picks the options, so both the limits and the version check
     * are reached; the rest is the file. */
    if (size < 1 || size > BW_BOT_MAX_FILE_BYTES + 2)
        return 0;
    static const uint32_t maxes[] = {BW_CONFIG_BOT_DEFAULT_MAX_FEATURES, 1, 2, 3,
                                     BW_CONFIG_BOT_MAX_FEATURES_CAP};
    struct bw_bot_load_opts o = {
        .max_features = maxes[data[0] % 5],
        .running = {.known = (data[0] & 0x80) != 0, .version = (data[0] >> 3) & 0xF},
    };
    static char report[8192];
    struct bw_bot_model *m = (struct bw_bot_model *)&o; /* must stay as it is on failure */
    struct bw_bot_model *const before = m;
    if (bw_bot_model_parse("fuzz.json", (const char *)data + 1, size - 1, &o, &m, report,
                           sizeof report) != BW_OK) {
        if (m != before || strncmp(report, "fuzz.json", 9) != 0)
            abort();
        return 0;
    }
    check_model(m, &o);
    score(m);
    m = bw_bot_model_free(m);
    return 0;
}
