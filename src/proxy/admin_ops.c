/* The admin API's data (control.h): the status document, the metrics
 * exposition, reloads and killswitches, on the control thread. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin/metrics.h"
#include "base/log.h"
#include "net/tls.h"
#include "proxy/control.h"

#ifndef BW_VERSION
#define BW_VERSION "0.1.0-dev"
#endif

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) != BW_OK)                                                                          \
            return BW_ERR;                                                                         \
    } while (0)

/* A JSON string (RFC 8259 §7): quotes, backslashes and controls escaped. */
static bw_status json_str(struct bw_textbuf *b, const char *s, size_t n)
{
    TRY(bw_textbuf_append(b, "\"", 1));
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        TRY(bw_textbuf_append(b, s + start, i - start));
        if (c == '"' || c == '\\')
            TRY(bw_textbuf_printf(b, "\\%c", c));
        else if (c == '\n')
            TRY(bw_textbuf_append(b, "\\n", 2));
        else
            TRY(bw_textbuf_printf(b, "\\u%04x", c));
        start = i + 1;
    }
    TRY(bw_textbuf_append(b, s + start, n - start));
    return bw_textbuf_append(b, "\"", 1);
}

static bw_status json_cstr(struct bw_textbuf *b, const char *s)
{
    return json_str(b, s, strlen(s));
}

static bw_status json_slice(struct bw_textbuf *b, bw_slice s)
{
    return json_str(b, s.ptr, s.len);
}

static void iso_time(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "tls": each TLS listener's certificates, with days left before expiry
 * (certificates are checked at load, so a reload that brings a bad one is
 * in last_rejection and these stay the running ones). */
static bw_status tls_status(struct bw_textbuf *out, const struct bw_snapshot *s)
{
    const struct bw_config *cfg = s->cfg;
    time_t now = time(NULL);
    TRY(bw_textbuf_append_str(out, "\"tls\":["));
    bool first = true;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (!cfg->listen[i].has_tls)
            continue;
        TRY(bw_textbuf_append_str(out, first ? "{\"listener\":" : ",{\"listener\":"));
        first = false;
        TRY(json_cstr(out, cfg->listen[i].addr.text));
        TRY(bw_textbuf_append_str(out, ",\"certificates\":["));
        for (size_t k = 0; k < bw_tls_ctx_ncerts(s->tls[i]); k++) {
            struct bw_tls_cert_info ci = bw_tls_ctx_cert(s->tls[i], k);
            char na[32];
            iso_time((time_t)ci.not_after, na, sizeof na);
            TRY(bw_textbuf_append_str(out, k ? ",{\"path\":" : "{\"path\":"));
            TRY(json_cstr(out, ci.cert_path));
            TRY(bw_textbuf_append_str(out, ",\"subject\":"));
            TRY(json_cstr(out, ci.subject));
            TRY(bw_textbuf_append_str(out, ",\"names\":"));
            TRY(json_cstr(out, ci.names));
            /* Rounded down: an expired certificate (served with a warning)
             * shows -1, not 0. */
            int64_t left = ci.not_after - (int64_t)now;
            int64_t days = left / 86400 - (left < 0 && left % 86400 != 0);
            TRY(bw_textbuf_printf(out, ",\"not_after\":\"%s\",\"days_left\":%lld}", na,
                                  (long long)days));
        }
        TRY(bw_textbuf_append_str(out, "]}"));
    }
    return bw_textbuf_append_str(out, "]");
}

static bw_status status_json(void *self, struct bw_textbuf *out, bw_error *err)
{
    struct bw_control *c = self;
    const struct bw_snapshot *s = c->snap;
    char loaded[32], started[32];
    iso_time((time_t)s->loaded_at, loaded, sizeof loaded);
    iso_time(c->started_at, started, sizeof started);
    bool ok = bw_textbuf_printf(out,
                                "{\"build\":{\"version\":\"%s\"},\"pid\":%ld,\"started_at\":\"%s\","
                                "\"uptime_seconds\":%lld,\"workers\":%zu,",
                                BW_VERSION, (long)getpid(), started,
                                (long long)(time(NULL) - c->started_at), c->nworkers) == BW_OK;
    ok = ok &&
         bw_textbuf_printf(out, "\"config\":{\"generation\":%llu,\"loaded_at\":\"%s\",\"path\":",
                           (unsigned long long)s->generation, loaded) == BW_OK;
    ok = ok && json_cstr(out, c->config_path) == BW_OK;
    ok = ok && bw_textbuf_printf(out, ",\"from_last_known_good\":%s",
                                 c->config_from_lkg ? "true" : "false") == BW_OK;
    ok = ok && bw_textbuf_printf(out, ",\"reloads_accepted\":%llu,\"reloads_rejected\":%llu},",
                                 (unsigned long long)c->reloads_accepted,
                                 (unsigned long long)c->reloads_rejected) == BW_OK;
    /* Artifacts of the running snapshot. */
    ok = ok && bw_textbuf_append_str(out, "\"artifacts\":[") == BW_OK;
    ok = ok && bw_textbuf_append_str(out, "{\"kind\":\"config\",\"path\":") == BW_OK;
    ok = ok && json_cstr(out, c->config_path) == BW_OK;
    ok =
        ok && bw_textbuf_printf(out, ",\"version\":%llu,\"hash\":\"%016llx\",\"loaded_at\":\"%s\"}",
                                (unsigned long long)s->generation,
                                (unsigned long long)s->config_hash, loaded) == BW_OK;
    const struct bw_rules_rt *rr = &s->rules;
    for (size_t i = 0; ok && i < s->nrulesets_loaded; i++) {
        const struct bw_ruleset *rs = &rr->book->rulesets[i];
        ok = bw_textbuf_append_str(out, ",{\"kind\":\"ruleset\",\"id\":") == BW_OK &&
             json_slice(out, rs->id) == BW_OK &&
             bw_textbuf_append_str(out, ",\"path\":") == BW_OK &&
             json_slice(out, rs->file) == BW_OK &&
             bw_textbuf_printf(out,
                               ",\"phase\":\"%s\",\"enabled\":%s,\"rules\":%zu,\"tests\":%zu,"
                               "\"version\":%llu,\"hash\":\"%016llx\",\"loaded_at\":\"%s\"}",
                               bw_rules_phase_name(rs->phase), rs->enabled ? "true" : "false",
                               rs->nrules, rs->ntests, (unsigned long long)s->generation,
                               (unsigned long long)s->ruleset_hashes[i], loaded) == BW_OK;
    }
    const struct bw_bot_rt *bot = &s->bot;
    if (ok && bot->has_model) {
        const struct bw_bot_model *m = bot->model;
        ok = bw_textbuf_append_str(out, ",{\"kind\":\"feature_file\",\"path\":") == BW_OK &&
             json_slice(out, m->path) == BW_OK &&
             bw_textbuf_printf(out,
                               ",\"version\":%llu,\"features\":%zu,\"hash\":\"%016llx\","
                               "\"loaded_at\":\"%s\"}",
                               (unsigned long long)m->version, m->nfeatures,
                               (unsigned long long)m->hash, loaded) == BW_OK;
    }
    ok = ok && bw_textbuf_append_str(out, "],") == BW_OK;
    ok = ok && bw_textbuf_printf(out,
                                 "\"modules\":{\"bot_score\":{\"configured\":%s,\"state\":"
                                 "\"%s\",\"on_error\":\"%s\"},",
                                 bot->enabled ? "true" : "false",
                                 !bot->enabled               ? "off"
                                 : atomic_load(&bot->killed) ? "killed"
                                 : bot->failed               ? "failed"
                                 : bot->from_lkg             ? "last_known_good"
                                                             : "ok",
                                 bot->on_error == BW_ON_ERROR_OPEN ? "open" : "closed") == BW_OK;
    ok = ok && bw_textbuf_printf(out,
                                 "\"rules\":{\"configured\":%s,\"state\":\"%s\","
                                 "\"on_error\":\"%s\"}},",
                                 rr->enabled ? "true" : "false",
                                 !rr->enabled               ? "off"
                                 : atomic_load(&rr->killed) ? "killed"
                                 : rr->failed               ? "failed"
                                 : rr->from_lkg             ? "last_known_good"
                                                            : "ok",
                                 rr->on_error == BW_ON_ERROR_OPEN ? "open" : "closed") == BW_OK;
    ok = ok && bw_textbuf_append_str(out, "\"last_rejection\":") == BW_OK;
    if (ok && c->has_rejection) {
        char at[32];
        iso_time(c->rejected_at, at, sizeof at);
        ok = bw_textbuf_printf(out, "{\"at\":\"%s\",\"error\":", at) == BW_OK &&
             json_cstr(out, c->rejection) == BW_OK && bw_textbuf_append_str(out, "}") == BW_OK;
    } else if (ok) {
        ok = bw_textbuf_append_str(out, "null") == BW_OK;
    }
    struct bw_kill_scope scope = {.rules = &c->snap->rules, .bot = &c->snap->bot};
    ok = ok && bw_textbuf_append_str(out, ",\"killswitches\":[") == BW_OK;
    for (size_t i = 0; ok && i < c->kills->n; i++) {
        char t[BW_KILL_TARGET_MAX + 1];
        bw_kill_format(&c->kills->items[i], t, sizeof t);
        ok = bw_textbuf_append_str(out, i ? ",{\"target\":" : "{\"target\":") == BW_OK &&
             json_cstr(out, t) == BW_OK &&
             bw_textbuf_printf(out, ",\"present\":%s}",
                               bw_kill_present(&c->kills->items[i], &scope) ? "true" : "false") ==
                 BW_OK;
    }
    ok = ok && bw_textbuf_append_str(out, "],") == BW_OK && tls_status(out, s) == BW_OK &&
         bw_textbuf_append_str(out, "}\n") == BW_OK;
    return ok ? BW_OK : bw_textbuf_error(out, err);
}

/* ---- loads by artifact ------------------------------------------------------- */

static void ref_set(struct bw_artifact_ref *r, enum bw_artifact_kind kind, const char *p, size_t n)
{
    r->kind = kind;
    if (n > sizeof r->path - 1)
        n = sizeof r->path - 1;
    memcpy(r->path, p, n);
    r->path[n] = '\0';
}

void bw_control_loads_begin(struct bw_control *c, const struct bw_config *cfg)
{
    struct bw_load_attempt *a = &c->attempt;
    a->n = 0;
    a->rules_failed = a->bot_failed = false;
    ref_set(&a->items[a->n++], BW_ARTIFACT_CONFIG, c->config_path, strlen(c->config_path));
    if (!cfg)
        return;
    if (cfg->modules.rules.enabled)
        for (size_t i = 0; i < cfg->modules.rules.nrulesets && a->n < BW_ARTIFACT_LOADS_MAX; i++)
            ref_set(&a->items[a->n++], BW_ARTIFACT_RULESET, cfg->modules.rules.rulesets[i].ptr,
                    cfg->modules.rules.rulesets[i].len);
    if (cfg->modules.bot_score.enabled && a->n < BW_ARTIFACT_LOADS_MAX)
        ref_set(&a->items[a->n++], BW_ARTIFACT_FEATURE_FILE, cfg->modules.bot_score.features.ptr,
                cfg->modules.bot_score.features.len);
}

static void count(struct bw_control *c, const struct bw_artifact_ref *r, enum bw_load_result res)
{
    size_t i = 0;
    for (; i < c->nloads; i++)
        if (c->loads[i].what.kind == r->kind && strcmp(c->loads[i].what.path, r->path) == 0)
            break;
    if (i == c->nloads) {
        if (c->nloads < BW_ARTIFACT_LOADS_MAX - 1) {
            c->loads[c->nloads++].what = *r;
        } else {
            i = BW_ARTIFACT_LOADS_MAX - 1;
            if (c->nloads < BW_ARTIFACT_LOADS_MAX) {
                c->nloads = BW_ARTIFACT_LOADS_MAX;
                c->loads[i].what = (struct bw_artifact_ref){.kind = r->kind};
                ref_set(&c->loads[i].what, r->kind, "(other)", 7);
            }
        }
    }
    c->loads[i].n[res]++;
}

/* Whether a line of the report starts with "path:". */
static bool report_names(const char *report, const char *path)
{
    size_t n = strlen(path);
    if (n == 0)
        return false;
    for (const char *line = report; *line;) {
        if (strncmp(line, path, n) == 0 && line[n] == ':')
            return true;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return false;
}

void bw_control_loads_end(struct bw_control *c, bool accepted, const char *report)
{
    const struct bw_load_attempt *a = &c->attempt;
    if (accepted) {
        for (size_t i = 0; i < a->n; i++)
            count(c, &a->items[i], BW_LOAD_ACCEPTED);
        return;
    }
    bool blamed = false;
    for (size_t i = 0; i < a->n; i++)
        if (report_names(report, a->items[i].path)) {
            count(c, &a->items[i], BW_LOAD_REJECTED);
            blamed = true;
        }
    for (size_t i = 0; !blamed && i < a->n; i++) {
        bool mod = (a->items[i].kind == BW_ARTIFACT_RULESET && a->rules_failed) ||
                   (a->items[i].kind == BW_ARTIFACT_FEATURE_FILE && a->bot_failed);
        if (mod)
            count(c, &a->items[i], BW_LOAD_REJECTED);
        blamed |= mod;
    }
    if (!blamed)
        count(c, &a->items[0], BW_LOAD_REJECTED); /* the config: routes, upstreams, ... */
}

void bw_control_loads_start(struct bw_control *c)
{
    const struct bw_snapshot *s = c->snap;
    bw_control_loads_begin(c, s->cfg);
    for (size_t i = 0; i < c->attempt.n; i++) {
        const struct bw_artifact_ref *r = &c->attempt.items[i];
        bool stand_in = false;
        switch (r->kind) {
        case BW_ARTIFACT_CONFIG:
            stand_in = c->config_from_lkg;
            break;
        case BW_ARTIFACT_RULESET:
            stand_in = s->rules.failed || s->rules.from_lkg;
            break;
        case BW_ARTIFACT_FEATURE_FILE:
            stand_in = s->bot.failed || s->bot.from_lkg;
            break;
        case BW_ARTIFACT__COUNT:
            break;
        }
        count(c, r, stand_in ? BW_LOAD_REJECTED : BW_LOAD_ACCEPTED);
    }
}

static const char *const artifact_kind_names[BW_ARTIFACT__COUNT] = {"config", "ruleset",
                                                                    "feature_file"};

static bw_status artifact_version(struct bw_textbuf *out, enum bw_artifact_kind kind, bw_slice path,
                                  uint64_t hash, uint64_t version, bw_error *err)
{
    char h[17];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)hash);
    const char *k = artifact_kind_names[kind];
    struct bw_metric_label l[3] = {
        {"artifact", bw_slice_make(k, strlen(k))}, {"path", path}, {"hash", bw_slice_make(h, 16)}};
    return bw_metric_gauge(out, "artifact_version", l, 3, (double)version, err);
}

/* Loads by artifact and result, and the version of each running artifact. */
static bw_status artifact_metrics(struct bw_control *c, struct bw_textbuf *out, bw_error *err)
{
    static const char *const results[BW_LOAD__COUNT] = {"accepted", "rejected"};
    TRY(bw_metric_family(out, "artifact_file_loads_total", BW_METRIC_COUNTER,
                         "loads of each artifact file (start and reloads), by result; a file "
                         "that was valid in a reload rejected for another one is not counted",
                         err));
    for (size_t i = 0; i < c->nloads; i++) {
        const struct bw_artifact_loads *e = &c->loads[i];
        const char *k = artifact_kind_names[e->what.kind];
        for (size_t r = 0; r < BW_LOAD__COUNT; r++) {
            struct bw_metric_label l[3] = {
                {"artifact", bw_slice_make(k, strlen(k))},
                {"path", bw_slice_make(e->what.path, strlen(e->what.path))},
                {"result", bw_slice_make(results[r], strlen(results[r]))}};
            TRY(bw_metric_counter(out, "artifact_file_loads_total", l, 3, e->n[r], err));
        }
    }
    const struct bw_snapshot *s = c->snap;
    TRY(bw_metric_family(out, "artifact_version", BW_METRIC_GAUGE,
                         "version of each running artifact (the config and rulesets: the "
                         "generation that loaded them; the feature file: its own version) and "
                         "its hash as /status shows it",
                         err));
    TRY(artifact_version(out, BW_ARTIFACT_CONFIG,
                         bw_slice_make(c->config_path, strlen(c->config_path)), s->config_hash,
                         s->generation, err));
    for (size_t i = 0; i < s->nrulesets_loaded; i++)
        TRY(artifact_version(out, BW_ARTIFACT_RULESET, s->cfg->modules.rules.rulesets[i],
                             s->ruleset_hashes[i], s->generation, err));
    if (s->bot.has_model)
        TRY(artifact_version(out, BW_ARTIFACT_FEATURE_FILE, s->bot.model->path, s->bot.model->hash,
                             s->bot.model->version, err));
    return BW_OK;
}

/* ---- metrics ----------------------------------------------------------------- */

static uint64_t ld(const _Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static const char *const class_names[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};

static bw_status tls_metrics(struct bw_textbuf *out, const struct bw_control *c, bw_error *err)
{
    const struct bw_snapshot *s = c->snap;
    const struct bw_config *cfg = s->cfg;
    uint64_t hs = 0, resumed = 0, failed = 0, timeouts = 0, plain = 0;
    for (size_t w = 0; w < c->nworkers; w++) {
        const struct bw_worker_stats *st = &c->pws[w].stats;
        hs += ld(&st->tls_handshakes);
        resumed += ld(&st->tls_resumed);
        failed += ld(&st->tls_failures);
        timeouts += ld(&st->tls_timeouts);
        plain += ld(&st->tls_plain_http);
    }
    TRY(bw_metric_family(out, "tls_handshakes_total", BW_METRIC_COUNTER,
                         "TLS handshakes completed, and of those resumed from a ticket", err));
    struct bw_metric_label l1[1] = {{"resumed", BW_SLICE_LIT("false")}};
    TRY(bw_metric_counter(out, "tls_handshakes_total", l1, 1, hs - resumed, err));
    l1[0].value = BW_SLICE_LIT("true");
    TRY(bw_metric_counter(out, "tls_handshakes_total", l1, 1, resumed, err));
    TRY(bw_metric_family(out, "tls_handshake_failures_total", BW_METRIC_COUNTER,
                         "TLS handshakes that failed (protocol error, reset) or stalled past "
                         "limits.client_header_timeout",
                         err));
    l1[0] = (struct bw_metric_label){"reason", BW_SLICE_LIT("error")};
    TRY(bw_metric_counter(out, "tls_handshake_failures_total", l1, 1, failed - timeouts, err));
    l1[0].value = BW_SLICE_LIT("timeout");
    TRY(bw_metric_counter(out, "tls_handshake_failures_total", l1, 1, timeouts, err));
    TRY(bw_metric_family(out, "tls_plain_http_total", BW_METRIC_COUNTER,
                         "plain HTTP requests sent to a TLS port (answered 400)", err));
    TRY(bw_metric_counter(out, "tls_plain_http_total", NULL, 0, plain, err));
    TRY(bw_metric_family(out, "tls_certificate_expiry_seconds", BW_METRIC_GAUGE,
                         "seconds until each served certificate expires", err));
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (!cfg->listen[i].has_tls)
            continue;
        const char *ln = cfg->listen[i].addr.text;
        for (size_t k = 0; k < bw_tls_ctx_ncerts(s->tls[i]); k++) {
            struct bw_tls_cert_info ci = bw_tls_ctx_cert(s->tls[i], k);
            struct bw_metric_label l2[2] = {
                {"listener", bw_slice_make(ln, strlen(ln))},
                {"cert", bw_slice_make(ci.cert_path, strlen(ci.cert_path))}};
            TRY(bw_metric_gauge(out, "tls_certificate_expiry_seconds", l2, 2,
                                (double)(ci.not_after - now), err));
        }
    }
    return BW_OK;
}

static bw_status metrics_text(void *self, struct bw_textbuf *out, bw_error *err)
{
    struct bw_control *c = self;
    const struct bw_snapshot *s = c->snap;
    const struct bw_config *cfg = s->cfg;

    struct bw_metric_label l1[1], l3[3];
    TRY(bw_metric_family(out, "build_info", BW_METRIC_GAUGE, "bulwark's version", err));
    l1[0] = (struct bw_metric_label){"version", BW_SLICE_LIT(BW_VERSION)};
    TRY(bw_metric_gauge(out, "build_info", l1, 1, 1, err));
    TRY(bw_metric_family(out, "uptime_seconds", BW_METRIC_GAUGE, "seconds since start", err));
    TRY(bw_metric_gauge(out, "uptime_seconds", NULL, 0, (double)(time(NULL) - c->started_at), err));
    TRY(bw_metric_family(out, "config_generation", BW_METRIC_GAUGE,
                         "generation of the running configuration (1 at start, +1 per reload)",
                         err));
    TRY(bw_metric_gauge(out, "config_generation", NULL, 0, (double)s->generation, err));

    /* Sums over the workers. */
    uint64_t accepted = 0, closed = 0, reclaimed = 0, retries = 0, resp[6] = {0},
             lat[BW_LATENCY_BUCKETS + 1] = {0};
    uint64_t lat_sum = 0, killed = 0, fails[BW_ON_ERROR__COUNT] = {0};
    uint64_t bot_scored = 0, bot_killed = 0, bot_fails[BW_ON_ERROR__COUNT] = {0};
    uint64_t verdicts[BW_RULES_PHASE__COUNT][BW_VERDICT__COUNT] = {{0}};
    uint64_t regex[BW_REGEX_OUTCOME__COUNT] = {0};
    uint64_t read_ahead = 0, accept_paused = 0, accept_resumed = 0;
    for (size_t w = 0; w < c->nworkers; w++) {
        const struct bw_worker_stats *st = &c->pws[w].stats;
        accept_paused += ld(&c->pws[w].w->accept_paused);
        accept_resumed += ld(&c->pws[w].w->accept_resumed);
        read_ahead +=
            atomic_load_explicit(&c->pws[w].w->loop.read_ahead_held, memory_order_relaxed);
        accepted += ld(&st->accepted);
        closed += ld(&st->closed);
        reclaimed += ld(&st->reclaimed);
        retries += ld(&st->upstream_retries);
        for (size_t i = 0; i < 6; i++)
            resp[i] += ld(&st->responses[i]);
        for (size_t i = 0; i <= BW_LATENCY_BUCKETS; i++)
            lat[i] += ld(&st->latency[i]);
        lat_sum += ld(&st->latency_sum_ms);
        killed += ld(&st->rules.killed);
        bot_scored += ld(&st->bot_scored);
        bot_killed += ld(&st->bot_killed);
        for (size_t i = 0; i < BW_ON_ERROR__COUNT; i++)
            bot_fails[i] += ld(&st->bot_failures[i]);
        for (size_t i = 0; i < BW_ON_ERROR__COUNT; i++)
            fails[i] += ld(&st->rules.failures[i]);
        for (size_t i = 0; i < BW_REGEX_OUTCOME__COUNT; i++)
            regex[i] += ld(&st->rules.regex[i]);
        for (size_t p = 0; p < BW_RULES_PHASE__COUNT; p++)
            for (size_t v = 0; v < BW_VERDICT__COUNT; v++)
                verdicts[p][v] += ld(&st->rules.verdicts[p][v]);
    }
    TRY(bw_metric_family(out, "connections_accepted_total", BW_METRIC_COUNTER,
                         "client connections accepted", err));
    TRY(bw_metric_counter(out, "connections_accepted_total", NULL, 0, accepted, err));
    TRY(bw_metric_family(out, "connections_open", BW_METRIC_GAUGE,
                         "client connections open now (TLS handshakes included)", err));
    /* Each counter is read once; a close counted between the two reads can
     * make closed pass accepted for an instant. */
    TRY(bw_metric_gauge(out, "connections_open", NULL, 0,
                        accepted > closed ? (double)(accepted - closed) : 0, err));
    TRY(bw_metric_family(out, "connections_reclaimed_total", BW_METRIC_COUNTER,
                         "idle client connections closed to make room for a new one at "
                         "limits.max_connections",
                         err));
    TRY(bw_metric_counter(out, "connections_reclaimed_total", NULL, 0, reclaimed, err));
    TRY(bw_metric_family(out, "accept_paused_total", BW_METRIC_COUNTER,
                         "times a worker paused accepting, out of descriptors or memory", err));
    TRY(bw_metric_counter(out, "accept_paused_total", NULL, 0, accept_paused, err));
    TRY(bw_metric_family(out, "accept_resumed_total", BW_METRIC_COUNTER,
                         "times a worker resumed accepting after such a pause", err));
    TRY(bw_metric_counter(out, "accept_resumed_total", NULL, 0, accept_resumed, err));
    TRY(bw_metric_family(out, "read_ahead_bytes", BW_METRIC_GAUGE,
                         "bytes received from clients and not yet read by their request "
                         "(io_uring; limits.read_ahead_bytes per worker)",
                         err));
    TRY(bw_metric_gauge(out, "read_ahead_bytes", NULL, 0, (double)read_ahead, err));
    TRY(bw_metric_family(out, "responses_total", BW_METRIC_COUNTER,
                         "responses sent, by status class", err));
    for (size_t i = 1; i < 6; i++) {
        l1[0] = (struct bw_metric_label){"class", bw_slice_make(class_names[i], 3)};
        TRY(bw_metric_counter(out, "responses_total", l1, 1, resp[i], err));
    }
    /* By route, for the running configuration (counts restart at a reload). */
    TRY(bw_metric_family(out, "route_responses_total", BW_METRIC_COUNTER,
                         "responses by route and status class, since the running configuration "
                         "was loaded (route \"none\": answered before routing)",
                         err));
    for (size_t r = 0; r <= cfg->nroutes; r++) {
        char rname[24];
        if (r < cfg->nroutes)
            snprintf(rname, sizeof rname, "%zu", r + 1);
        else
            snprintf(rname, sizeof rname, "none");
        bw_slice up =
            r < cfg->nroutes ? cfg->upstreams[cfg->routes[r].upstream].name : BW_SLICE_LIT("none");
        for (size_t k = 1; k < 6; k++) {
            uint64_t n = 0;
            for (size_t w = 0; w < s->nworkers; w++)
                n += ld(&s->route_counts[w * s->route_stride + r * 6 + k]);
            if (n == 0)
                continue;
            l3[0] = (struct bw_metric_label){"route", bw_slice_make(rname, strlen(rname))};
            l3[1] = (struct bw_metric_label){"upstream", up};
            l3[2] = (struct bw_metric_label){"class", bw_slice_make(class_names[k], 3)};
            TRY(bw_metric_counter(out, "route_responses_total", l3, 3, n, err));
        }
    }
    double bounds[BW_LATENCY_BUCKETS];
    uint64_t cum[BW_LATENCY_BUCKETS + 1];
    for (size_t i = 0; i < BW_LATENCY_BUCKETS; i++)
        bounds[i] = (double)bw_latency_le_ms[i] / 1000.0;
    for (size_t i = 0; i <= BW_LATENCY_BUCKETS; i++)
        cum[i] = lat[i];
    struct bw_metric_histogram h = {.bounds = bounds,
                                    .nbounds = BW_LATENCY_BUCKETS,
                                    .counts = cum,
                                    .sum = (double)lat_sum / 1000.0};
    TRY(bw_metric_family(out, "request_duration_seconds", BW_METRIC_HISTOGRAM,
                         "time from a request's head to its last byte (loop clock, ms steps)",
                         err));
    TRY(bw_metric_histogram(out, "request_duration_seconds", NULL, 0, &h, err));
    TRY(bw_metric_family(out, "upstream_failures_total", BW_METRIC_COUNTER,
                         "upstream connect errors, timeouts and invalid responses, by upstream",
                         err));
    /* One series per upstream of the running configuration: the label's
     * values are bounded by the config, never by traffic. */
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        l1[0] = (struct bw_metric_label){"upstream", cfg->upstreams[u].name};
        TRY(bw_metric_counter(out, "upstream_failures_total", l1, 1,
                              bw_upstream_failures(&s->upstreams[u]), err));
    }
    TRY(bw_metric_family(out, "upstream_retries_total", BW_METRIC_COUNTER,
                         "requests sent again to another server (or a fresh connection)", err));
    TRY(bw_metric_counter(out, "upstream_retries_total", NULL, 0, retries, err));

    TRY(bw_metric_family(out, "upstream_server_up", BW_METRIC_GAUGE,
                         "1 when a server may be picked (not down by health check, not ejected)",
                         err));
    uint64_t now_ms = bw_monotonic_ms();
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const struct bw_upstream_rt *ur = &s->upstreams[u];
        for (size_t k = 0; k < ur->nservers; k++) {
            bool down = atomic_load(&ur->servers[k].hc_down) ||
                        atomic_load(&ur->servers[k].ejected_until) > now_ms;
            const char *addr = cfg->upstreams[u].servers[k].addr.text;
            struct bw_metric_label l2[2] = {{"upstream", cfg->upstreams[u].name},
                                            {"server", bw_slice_make(addr, strlen(addr))}};
            TRY(bw_metric_gauge(out, "upstream_server_up", l2, 2, down ? 0 : 1, err));
        }
    }

    TRY(bw_metric_family(out, "artifact_loads_total", BW_METRIC_COUNTER,
                         "configuration loads (start and reloads), by result", err));
    l1[0] = (struct bw_metric_label){"result", BW_SLICE_LIT("accepted")};
    TRY(bw_metric_counter(out, "artifact_loads_total", l1, 1, 1 + c->reloads_accepted, err));
    l1[0] = (struct bw_metric_label){"result", BW_SLICE_LIT("rejected")};
    TRY(bw_metric_counter(out, "artifact_loads_total", l1, 1, c->reloads_rejected, err));
    TRY(artifact_metrics(c, out, err));

    TRY(bw_metric_family(out, "rules_verdicts_total", BW_METRIC_COUNTER,
                         "rules phases run, by phase and verdict", err));
    static const char *const vnames[BW_VERDICT__COUNT] = {"continue", "block", "redirect",
                                                          "rate_limit"};
    for (size_t p = 0; p < BW_RULES_PHASE__COUNT; p++)
        for (size_t v = 0; v < BW_VERDICT__COUNT; v++) {
            const char *pn = bw_rules_phase_name((enum bw_rules_phase)p);
            struct bw_metric_label l2[2] = {
                {"phase", bw_slice_make(pn, strlen(pn))},
                {"verdict", bw_slice_make(vnames[v], strlen(vnames[v]))}};
            TRY(bw_metric_counter(out, "rules_verdicts_total", l2, 2, verdicts[p][v], err));
        }
    const struct bw_rules_rt *rr = &s->rules;
    TRY(bw_metric_family(out, "rule_matches_total", BW_METRIC_COUNTER,
                         "times each rule fired, since the running configuration was loaded", err));
    for (size_t i = 0; i < rr->book->nrules; i++) {
        const struct bw_rule *rule = rr->book->rules[i];
        const struct bw_ruleset *rs = &rr->book->rulesets[rule->ruleset];
        const char *an = bw_action_name(rule->action.kind);
        l3[0] = (struct bw_metric_label){"ruleset", rs->id};
        l3[1] = (struct bw_metric_label){"rule", rule->id};
        l3[2] = (struct bw_metric_label){"action", bw_slice_make(an, strlen(an))};
        TRY(bw_metric_counter(out, "rule_matches_total", l3, 3, ld(&rr->matches[i]), err));
    }
    TRY(bw_metric_family(out, "module_failures_total", BW_METRIC_COUNTER,
                         "requests a module failed for, by its on_error policy", err));
    for (size_t i = 0; i < BW_ON_ERROR__COUNT; i++) {
        bw_slice pol = i == BW_ON_ERROR_OPEN ? BW_SLICE_LIT("open") : BW_SLICE_LIT("closed");
        struct bw_metric_label l2[2] = {{"module", BW_SLICE_LIT("rules")}, {"policy", pol}};
        TRY(bw_metric_counter(out, "module_failures_total", l2, 2, fails[i], err));
        l2[0].value = BW_SLICE_LIT("bot_score");
        TRY(bw_metric_counter(out, "module_failures_total", l2, 2, bot_fails[i], err));
    }
    TRY(bw_metric_family(out, "rules_regex_scans_total", BW_METRIC_COUNTER,
                         "regex scans of the rules module, by how they were answered: skipped "
                         "(the literal prefilter found nothing any pattern needs), literal (it "
                         "answered the literal patterns itself), scanned (the automaton ran)",
                         err));
    for (size_t i = 0; i < BW_REGEX_OUTCOME__COUNT; i++) {
        static const char *const names[BW_REGEX_OUTCOME__COUNT] = {[BW_REGEX_SKIPPED] = "skipped",
                                                                   [BW_REGEX_LITERAL] = "literal",
                                                                   [BW_REGEX_SCANNED] = "scanned"};
        l1[0] = (struct bw_metric_label){"result", bw_slice_make(names[i], strlen(names[i]))};
        TRY(bw_metric_counter(out, "rules_regex_scans_total", l1, 1, regex[i], err));
    }
    TRY(bw_metric_family(out, "module_killed_total", BW_METRIC_COUNTER,
                         "requests that went by a killed module (its outputs unknown)", err));
    l1[0] = (struct bw_metric_label){"module", BW_SLICE_LIT("rules")};
    TRY(bw_metric_counter(out, "module_killed_total", l1, 1, killed, err));
    l1[0] = (struct bw_metric_label){"module", BW_SLICE_LIT("bot_score")};
    TRY(bw_metric_counter(out, "module_killed_total", l1, 1, bot_killed, err));
    TRY(bw_metric_family(out, "bot_scored_total", BW_METRIC_COUNTER,
                         "requests the bot_score module scored", err));
    TRY(bw_metric_counter(out, "bot_scored_total", NULL, 0, bot_scored, err));
    TRY(bw_metric_family(out, "bot_model_version", BW_METRIC_GAUGE,
                         "version of the running feature file (absent without a model)", err));
    if (s->bot.has_model)
        TRY(bw_metric_gauge(out, "bot_model_version", NULL, 0, (double)s->bot.model->version, err));
    TRY(bw_metric_family(out, "killswitches_active", BW_METRIC_GAUGE, "killswitches in force",
                         err));
    TRY(bw_metric_gauge(out, "killswitches_active", NULL, 0, (double)c->kills->n, err));
    TRY(tls_metrics(out, c, err));
    return BW_OK;
}

/* ---- reload and killswitch ------------------------------------------------------ */

static bw_status reload(void *self, struct bw_textbuf *out, enum bw_reload_outcome *ret,
                        bw_error *err)
{
    struct bw_control *c = self;
    static char report[BW_CONTROL_REPORT_MAX];
    bool ok = bw_control_reload(c, report, sizeof report) == BW_OK;
    *ret = ok ? BW_RELOAD_ALL_ACCEPTED : BW_RELOAD_SOME_REJECTED;
    bool w = bw_textbuf_printf(out, "{\"accepted\":%s,\"generation\":%llu,\"report\":",
                               ok ? "true" : "false", (unsigned long long)c->generation) == BW_OK &&
             json_cstr(out, report) == BW_OK && bw_textbuf_append_str(out, "}\n") == BW_OK;
    return w ? BW_OK : bw_textbuf_error(out, err);
}

static bw_status killswitch(void *self, const struct bw_killswitch_req *k,
                            enum bw_killswitch_fault *fault, bw_error *err)
{
    struct bw_control *c = self;
    struct bw_kill kill;
    /* The admin layer checked the grammar; parse its text again into the
     * form the killswitch set keeps. */
    if (bw_kill_parse(k->target, &kill, err) != BW_OK) {
        *fault = BW_KILLSWITCH_FAULT_UNKNOWN_TARGET;
        return BW_ERR;
    }
    struct bw_kill_scope scope = {.rules = &c->snap->rules, .bot = &c->snap->bot};
    if (bw_kill_set(c->kills, &kill, k->enabled, &scope, err) != BW_OK) {
        *fault = BW_KILLSWITCH_FAULT_UNKNOWN_TARGET;
        return BW_ERR;
    }
    BW_INFOF("killswitch %.*s: %s", (int)k->target.len, k->target.ptr,
             k->enabled ? "enabled again" : "killed");
    if (c->state_dir[0] && bw_kills_save(c->kills, c->state_dir, err) != BW_OK) {
        /* In force now, but would not survive a restart: say so. */
        BW_ERRORF("killswitch %.*s applied but not persisted: %s", (int)k->target.len,
                  k->target.ptr, err->msg);
        bw_error inner = *err;
        (void)bw_error_set(err,
                           "applied and in force now, but not persisted (a restart would lose "
                           "it): %s",
                           inner.msg);
        *fault = BW_KILLSWITCH_FAULT_INTERNAL;
        return BW_ERR;
    }
    return BW_OK;
}

void bw_control_admin_ops(struct bw_control *c, struct bw_admin_ops *ops)
{
    *ops = (struct bw_admin_ops){
        .self = c,
        .status_json = status_json,
        .metrics_text = metrics_text,
        .reload = reload,
        .killswitch = killswitch,
    };
}
