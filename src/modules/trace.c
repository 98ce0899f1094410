/* `bulwark eval` (trace.h). */
#include "modules/trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "modules/bot_module.h"
#include "modules/killswitch.h"
#include "modules/rules.h"

/* Why a rule or ruleset was not evaluated, or NULL when it was. The step
 * of one that was not carries no value of its own: printing one would claim
 * the expression was false when nothing computed it. */
static const char *not_run_reason(enum bw_rule_outcome o)
{
    switch (o) {
    case BW_OUTCOME_FIRED:
    case BW_OUTCOME_NOT_MATCHED:
    case BW_OUTCOME_UNKNOWN:
        return NULL;
    case BW_OUTCOME_DISABLED:
        return "rule disabled (enabled: false)";
    case BW_OUTCOME_KILLED:
        return "rule killed by killswitch";
    case BW_OUTCOME_RULESET_DISABLED:
        return "ruleset disabled (enabled: false)";
    case BW_OUTCOME_RULESET_KILLED:
        return "ruleset killed by killswitch";
    case BW_OUTCOME_RULESET_SKIPPED:
        return "ruleset skipped by an earlier skip rule";
    case BW_OUTCOME__COUNT:
        break;
    }
    return "not evaluated";
}

static void print_step(void *self, const struct bw_rules_trace_step *st)
{
    FILE *out = self;
    int indent = 2 + 2 * (int)st->depth;
    const char *why = not_run_reason(st->outcome);
    if (st->is_ruleset) {
        fprintf(out, "%*sruleset %.*s: %s%s\n", indent, "", (int)st->ruleset->id.len,
                st->ruleset->id.ptr, why ? "skipped: " : "entered", why ? why : "");
        return;
    }
    const struct bw_rule *r = st->rule;
    fprintf(out, "%*s  rule %-24.*s ", indent, "", (int)r->id.len, r->id.ptr);
    if (why && st->outcome != BW_OUTCOME_DISABLED && st->outcome != BW_OUTCOME_KILLED) {
        /* An execute whose target is off: its expression was evaluated
         * (true) and it fired; only the target did not run. */
        fprintf(out, "%-8s fired -> execute, target not run: %s\n", bw_tri_name(st->value), why);
        return;
    }
    if (why) {
        fprintf(out, "skipped: %s\n", why);
        return;
    }
    fprintf(out, "%-8s %s", bw_tri_name(st->value), bw_rule_outcome_name(st->outcome));
    if (st->outcome == BW_OUTCOME_FIRED)
        fprintf(out, " -> %s", bw_action_name(r->action.kind));
    fputc('\n', out);
}

static const char *verdict_name(enum bw_verdict_kind k)
{
    switch (k) {
    case BW_VERDICT_CONTINUE:
        return "continue";
    case BW_VERDICT_BLOCK:
        return "block";
    case BW_VERDICT_REDIRECT:
        return "redirect";
    case BW_VERDICT_RATE_LIMITED:
        return "rate_limit";
    case BW_VERDICT__COUNT:
        break;
    }
    return "?";
}

static void print_verdict(FILE *out, const struct bw_rules_verdict *v)
{
    fprintf(out, "  verdict: %s", verdict_name(v->kind));
    if (v->kind != BW_VERDICT_CONTINUE)
        fprintf(out, " %u", (unsigned)v->status);
    if (v->has_rule)
        fprintf(out, " by %.*s/%.*s", (int)v->ruleset->id.len, v->ruleset->id.ptr,
                (int)v->rule->id.len, v->rule->id.ptr);
    if (v->kind == BW_VERDICT_REDIRECT)
        fprintf(out, " (Location: %.*s)", (int)v->location.len, v->location.ptr);
    if (v->kind == BW_VERDICT_RATE_LIMITED)
        fprintf(out, " (Retry-After: %llu)", (unsigned long long)v->retry_after_s);
    fputc('\n', out);
    for (size_t i = 0; i < v->neffects; i++)
        fprintf(out, "  effect: %s by rule %.*s\n", bw_action_name(v->effects[i]->action.kind),
                (int)v->effects[i]->id.len, v->effects[i]->id.ptr);
}

static bool parse_ip(const char *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* Appends "line\r\n", refusing CR/LF inside (one argument, one line). */
static bool add_line(char *buf, size_t cap, size_t *len, const char *line)
{
    size_t n = strlen(line);
    if (strpbrk(line, "\r\n") || cap - *len < n + 3)
        return false;
    memcpy(buf + *len, line, n);
    memcpy(buf + *len + n, "\r\n", 2);
    *len += n + 2;
    return true;
}

static bool read_file(const char *path, char *buf, size_t cap, size_t *len, FILE *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(err, "bulwark eval: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    *len = fread(buf, 1, cap, f);
    bool too_big = *len == cap && fgetc(f) != EOF;
    fclose(f);
    if (too_big) {
        fprintf(err, "bulwark eval: %s is over %zu bytes\n", path, cap - 1);
        return false;
    }
    return true;
}

/* The killswitches persisted in state_dir, as `bulwark run` restores them
 * at start; the admin API rewrites the file on every change, so they are
 * the running server's unless a save failed (which that call reported).
 * Read only: eval never writes, renames or links anything there, not even
 * the .rejected copy run keeps of a file with bad lines. A state_dir that
 * cannot be read is said and the trace goes on with none in force. */
static bool load_kills(const struct bw_config *cfg, struct bw_killswitches *ks, FILE *out)
{
    ks->n = 0;
    if (!cfg->has_state_dir) {
        fprintf(out, "killswitches: none (no state_dir in the configuration)\n");
        return false;
    }
    char dir[4200];
    int n = snprintf(dir, sizeof dir, "%.*s", (int)cfg->state_dir.len, cfg->state_dir.ptr);
    if (n < 0 || (size_t)n >= sizeof dir) {
        fprintf(out, "killswitches: NOT READ (state_dir path too long); traced with none\n");
        return false;
    }
    /* The killswitch file's absence is "none killed"; a missing state_dir
     * is more likely a wrong path, and is said so. */
    struct stat sb;
    const char *bad = NULL;
    if (stat(dir, &sb) != 0)
        bad = strerror(errno);
    else if (!S_ISDIR(sb.st_mode))
        bad = "not a directory";
    if (bad) {
        fprintf(out, "killswitches: NOT READ (state_dir %s: %s); traced with none\n", dir, bad);
        return false;
    }
    size_t skipped = 0;
    bw_error e;
    if (bw_kills_load(ks, dir, &skipped, &e) != BW_OK) {
        ks->n = 0;
        fprintf(out, "killswitches: NOT READ (%s); traced with none\n", e.msg);
        return false;
    }
    if (skipped)
        fprintf(out,
                "killswitches: %zu line%s of %s/" BW_KILLSWITCH_FILE
                " skipped (run skips them too), the first: %s\n",
                skipped, skipped == 1 ? "" : "s", dir, e.msg);
    return true;
}

/* Which killswitches are in force, and those whose target this
 * configuration does not have (held, acting again if it comes back). */
static void print_kills(const struct bw_config *cfg, const struct bw_killswitches *ks,
                        const struct bw_kill_scope *sc, FILE *out)
{
    fprintf(out, "killswitches in force (state_dir %.*s): %zu\n", (int)cfg->state_dir.len,
            cfg->state_dir.ptr, ks->n);
    for (size_t i = 0; i < ks->n; i++) {
        char name[BW_KILL_TARGET_MAX + 1];
        bw_kill_format(&ks->items[i], name, sizeof name);
        fprintf(out, "  %s%s\n", name,
                bw_kill_present(&ks->items[i], sc) ? "" : " (not in this configuration)");
    }
}

int bw_eval_command(const struct bw_config *cfg, const struct bw_eval_args *a, FILE *out, FILE *err)
{
    static char report[16384];
    static char raw[64 * 1024 + 1];
    size_t rawlen = 0;
    if (a->has_raw_file) {
        if (!read_file(a->raw_file, raw, sizeof raw, &rawlen, err))
            return 2;
    } else {
        bool ok = add_line(raw, sizeof raw, &rawlen, a->request_line);
        for (size_t i = 0; ok && i < a->nheaders; i++)
            ok = add_line(raw, sizeof raw, &rawlen, a->headers[i]);
        ok = ok && add_line(raw, sizeof raw, &rawlen, "");
        if (!ok) {
            fprintf(err,
                    "bulwark eval: the request does not fit %zu bytes, or an argument "
                    "holds CR/LF\n",
                    sizeof raw - 1);
            return 2;
        }
    }
    struct sockaddr_storage client;
    const char *ip = a->ip ? a->ip : "192.0.2.1";
    if (!parse_ip(ip, &client)) {
        fprintf(err, "bulwark eval: --ip %s is not an IPv4 or IPv6 address\n", ip);
        return 2;
    }

    struct bw_http_limits limits = {
        .request_line_bytes = (size_t)cfg->limits.request_line_bytes,
        .header_bytes = (size_t)cfg->limits.header_bytes,
        .headers = (size_t)cfg->limits.headers,
    };
    struct bw_http_header *hs = calloc(limits.headers + 1, sizeof *hs);
    if (!hs)
        return 1;
    struct bw_http_request hq = {.headers = hs, .headers_cap = limits.headers};
    struct bw_http_scan scan;
    memset(&scan, 0, sizeof scan);
    struct bw_http_error herr = {0};
    switch (bw_http_parse_request(raw, rawlen, &limits, &scan, &hq, &herr)) {
    case BW_HTTP_DONE:
        break;
    case BW_HTTP_PARTIAL:
        fprintf(err, "bulwark eval: the request head is incomplete (no empty line after it)\n");
        free(hs);
        return 1;
    case BW_HTTP_ERROR:
        fprintf(out, "request refused by the parser: %u (%s)\n", (unsigned)herr.status,
                herr.reason ? herr.reason : "invalid");
        free(hs);
        return 1;
    }

    struct bw_rules_rt rr;
    int rc = 0;
    if (bw_rules_rt_load(&rr, cfg, report, sizeof report) != BW_OK || rr.failed) {
        fputs(report, err);
        bw_rules_rt_done(&rr);
        free(hs);
        return 1;
    }
    struct bw_bot_rt bot;
    static char bot_report[8192];
    bw_bot_rt_load(&bot, cfg, (struct bw_bot_running){.known = false}, false, bot_report,
                   sizeof bot_report);
    static struct bw_killswitches kills;
    struct bw_kill_scope scope = {.rules = &rr, .bot = &bot};
    if (load_kills(cfg, &kills, out)) {
        bw_kills_apply(&kills, &scope);
        print_kills(cfg, &kills, &scope, out);
    }
    bool rules_killed = atomic_load_explicit(&rr.killed, memory_order_relaxed);

    struct bw_rules_worker w;
    bw_error e;
    static struct bw_rules_stats stats;
    if (bw_rules_worker_init(&w, &rr, limits.headers, &stats, &e) != BW_OK) {
        fprintf(err, "bulwark eval: %s\n", e.msg);
        bw_bot_rt_done(&bot);
        bw_rules_rt_done(&rr);
        free(hs);
        return 1;
    }
    struct bw_request_view v;
    bw_rules_view_request(&w, &v, &hq, &client, a->ssl);
    v.bot_score = (struct bw_rv_opt_int){.known = a->has_bot_score, .value = a->bot_score};
    /* The bot_score module, unless the score was given on the command line;
     * killed, it gives no score at all, as in the proxy, whatever was given. */
    if (atomic_load_explicit(&bot.killed, memory_order_relaxed)) {
        v.bot_score = (struct bw_rv_opt_int){.known = false};
        fprintf(out, "bot.score: unknown (module bot_score killed by killswitch%s)\n",
                a->has_bot_score ? "; --bot-score ignored" : "");
    } else if (bot.failed) {
        fputs(bot_report, err);
        fprintf(out, "bot.score: unknown (no valid model; on_error: %s)\n",
                bot.on_error == BW_ON_ERROR_OPEN ? "open" : "closed");
    } else if (bot.has_model && !a->has_bot_score) {
        struct bw_bot_worker bw;
        if (bw_bot_worker_init(&bw, bot.model, &e) == BW_OK) {
            struct bw_bot_result res = bw_bot_score(bot.model, &v, &w.arena, &bw.scratch);
            switch (res.outcome) {
            case BW_BOT_SCORED:
                v.bot_score = (struct bw_rv_opt_int){.known = true, .value = res.u.scored.score};
                fprintf(out,
                        "bot.score: %lld (model version %llu: %u of %zu features true, %u "
                        "unknown)\n",
                        (long long)res.u.scored.score, (unsigned long long)bot.model->version,
                        res.u.scored.ntrue, bot.model->nfeatures, res.u.scored.nunknown);
                break;
            case BW_BOT_FAILED:
            case BW_BOT_OUTCOME__COUNT:
                fprintf(out, "bot.score: unknown (scoring failed: a limit was hit)\n");
                break;
            }
            bw_bot_worker_done(&bw);
        }
    }
    bw_bot_rt_done(&bot);

    /* A long target is shown cut, with its length: the trace stays readable. */
    int shown = hq.target.len > 120 ? 120 : (int)hq.target.len;
    fprintf(out, "request: %.*s %.*s%s from %s%s\n", (int)hq.method.len, hq.method.ptr, shown,
            hq.target.ptr, hq.target.len > 120 ? "... (target cut)" : "", ip,
            a->ssl ? " (TLS)" : "");
    const struct bw_rulebook *book = rr.book;
    /* The process's own fresh counters: one request is never over a limit,
     * and eval does not pretend to know a running proxy's counters. */
    struct bw_rules_env env = bw_rules_worker_env(&w, 0);
    env.tracing = true;
    env.tracer = (struct bw_rules_tracer){.step = print_step, .self = out};
    struct bw_rules_request st;
    bw_rules_request_init(&st);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, book->prog[BW_RULES_PHASE_REQUEST], &v, &w.arena, &w.scratch);
    struct bw_rules_verdict verdict = {.kind = BW_VERDICT_CONTINUE};
    fprintf(out, "phase request:\n");
    if (rules_killed) {
        fprintf(out, "  skipped (module rules killed by killswitch: no rule runs, routes do)\n");
    } else if (book->ntop[BW_RULES_PHASE_REQUEST] == 0) {
        fprintf(out, "  (no rulesets)\n");
    } else {
        bw_rulebook_run(book, BW_RULES_PHASE_REQUEST, &cx, &env, &st, &verdict);
        print_verdict(out, &verdict);
    }
    if (verdict.kind != BW_VERDICT_CONTINUE) {
        fprintf(out, "route: not reached\n");
        goto done;
    }
    size_t route;
    if (bw_rulebook_route(book, &cx, &route) != BW_OK) {
        fprintf(out, "route: none matched (404)\n");
        goto done;
    }
    const struct bw_config_route *cr = &cfg->routes[route];
    fprintf(out, "route: #%zu%s%.*s%s -> upstream %.*s\n", route + 1,
            cr->has_match ? " (" : " (default", (int)cr->match_text.len, cr->match_text.ptr, ")",
            (int)cfg->upstreams[cr->upstream].name.len, cfg->upstreams[cr->upstream].name.ptr);

    if (a->has_response) {
        size_t n = a->nresponse_headers;
        struct bw_rv_header *rh = calloc(n + 1, sizeof *rh);
        if (!rh) {
            rc = 1;
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const char *h = a->response_headers[i];
            const char *colon = strchr(h, ':');
            size_t nl = colon ? (size_t)(colon - h) : strlen(h);
            const char *val = colon ? colon + 1 : "";
            while (*val == ' ' || *val == '\t')
                val++;
            rh[i] = (struct bw_rv_header){.name = bw_slice_make(h, nl),
                                          .value = bw_slice_make(val, strlen(val))};
        }
        v.has_response = true;
        v.response_code = a->response_status;
        v.response_headers = (struct bw_rv_headers){.items = rh, .n = n};
        struct bw_rules_ctx rcx;
        bw_rules_ctx_init(&rcx, book->prog[BW_RULES_PHASE_RESPONSE], &v, &w.arena, &w.scratch);
        fprintf(out, "phase response (status %u):\n", (unsigned)a->response_status);
        if (rules_killed) {
            fprintf(out, "  skipped (module rules killed by killswitch: no rule runs)\n");
        } else if (book->ntop[BW_RULES_PHASE_RESPONSE] == 0) {
            fprintf(out, "  (no rulesets)\n");
        } else {
            struct bw_rules_verdict rv;
            bw_rulebook_run(book, BW_RULES_PHASE_RESPONSE, &rcx, &env, &st, &rv);
            print_verdict(out, &rv);
        }
        free(rh);
    }
done:
    bw_rules_worker_done(&w);
    bw_rules_rt_done(&rr);
    free(hs);
    return rc;
}
