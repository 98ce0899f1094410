/* Command line (DESIGN.md §2):
 *   bulwark run   -c FILE [--state-dir DIR] [--takeover]
 *                            serve (with --state-dir: a config that does not
 *                            load falls back to its last-known-good copy;
 *                            --takeover: start beside the bulwark being
 *                            replaced on the same ports)
 *   bulwark check -c FILE    validate config and rulesets, run their embedded
 *                            tests; exit 0, or 1 with file:line:col errors
 *   bulwark eval  -c FILE --request 'GET / HTTP/1.1' -H 'Host: a' [--ip A]
 *                 [--ssl] [--bot-score N] [--raw FILE]
 *                 [--response-status N [--response-header 'N: v']...]
 *                            trace one request through every phase
 *   bulwark version */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "modules/bot_module.h"
#include "modules/lkg.h"
#include "modules/rules.h"
#include "modules/trace.h"
#include "net/tls.h"
#include "proxy/proxy.h"
#include "proxy/server.h"

#ifndef BW_VERSION
#define BW_VERSION "0.1.0-dev"
#endif

static int usage(FILE *out)
{
    fprintf(out,
            "usage: bulwark run -c FILE [--state-dir DIR] [--takeover] [--log-level "
            "error|warn|info|debug]\n"
            "       bulwark check -c FILE\n"
            "       bulwark eval -c FILE (--request 'GET /path HTTP/1.1' [-H 'Name: value']... "
            "| --raw FILE)\n"
            "                    [--ip ADDR] [--ssl] [--bot-score N]\n"
            "                    [--response-status N [--response-header 'Name: value']...]\n"
            "       bulwark version\n");
    return 2;
}

/* The last-known-good copy of the config at path (state_dir/lkg/), parsed
 * as if it were at path (relative paths inside resolve the same way). */
static int load_lkg(const char *path, const char *state_dir, struct bw_config **ret)
{
    static struct bw_config_diags diags;
    static const struct bw_file_what what = {.noun = "the last-known-good copy",
                                             .kind = "config file",
                                             .max_bytes = BW_CONFIG_MAX_FILE_BYTES};
    char copy[4400], err[512];
    bw_slice sd = bw_slice_make(state_dir, strlen(state_dir));
    if (bw_lkg_path(sd, bw_slice_make(path, strlen(path)), copy, sizeof copy) != BW_OK)
        return 1;
    char *text;
    size_t len;
    if (bw_read_file(copy, &what, &text, &len, err, sizeof err) != BW_OK) {
        fprintf(stderr, "%s: no usable last-known-good copy (%s: %s): not starting\n", path, copy,
                err);
        return 1;
    }
    bw_status st = bw_config_parse(path, text, len, ret, &diags);
    free(text);
    if (st != BW_OK) {
        fprintf(stderr, "%s: its last-known-good copy %s does not load either: not starting\n",
                path, copy);
        return 1;
    }
    fprintf(stderr,
            "%s: does not load (errors above); STARTING WITH ITS LAST-KNOWN-GOOD COPY %s. Fix "
            "the file and reload.\n",
            path, copy);
    return 0;
}

static int load(const char *path, struct bw_config **ret)
{
    static struct bw_config_diags diags;
    if (bw_config_load_file(path, ret, &diags) != BW_OK) {
        bw_config_diags_print(&diags, stderr);
        return 1;
    }
    return 0;
}

/* Every part is checked even when an earlier one failed, so one run lists
 * everything to fix: the rulesets, the TLS files, the files the server
 * writes, the feature file. */
static int check_command(const char *path, const struct bw_config *cfg)
{
    static char report[16384];
    bool ok = true;
    struct bw_rules_rt rr;
    bool rules_ok = bw_rules_rt_load(&rr, cfg, report, sizeof report) == BW_OK && !rr.failed;
    size_t nrulesets = rules_ok ? rr.book->nrulesets : 0, nrules = rules_ok ? rr.book->nrules : 0;
    bw_rules_rt_done(&rr);
    if (!rules_ok) {
        fputs(report, stderr);
        ok = false;
    }
    struct bw_tls_ctx **tls = NULL;
    size_t ncerts = 0;
    if (bw_tls_contexts_load(cfg, NULL, &tls, report, sizeof report) != BW_OK) {
        fprintf(stderr, "%s\n", report);
        ok = false;
    } else {
        for (size_t i = 0; tls && i < cfg->nlisten; i++)
            if (cfg->listen[i].has_tls)
                ncerts += bw_tls_ctx_ncerts(tls[i]);
        bw_tls_contexts_free(cfg, tls);
    }
    if (bw_server_check_files(cfg, report, sizeof report) != BW_OK) {
        fputs(report, stderr);
        ok = false;
    }
    char warning[512];
    if (bw_config_admin_open_warning(cfg, warning, sizeof warning))
        fprintf(stderr, "%s: warning: %s\n", path, warning);
    struct bw_bot_rt bot;
    bw_bot_rt_load(&bot, cfg, (struct bw_bot_running){.known = false}, false, report,
                   sizeof report);
    size_t nfeatures = bot.has_model ? bot.model->nfeatures : 0;
    if (bot.failed) {
        fputs(report, stderr);
        ok = false;
    }
    bw_bot_rt_done(&bot);
    if (!ok)
        return 1;
    if (nfeatures)
        printf("%s: bot_score model ok (%zu features)\n", path, nfeatures);
    if (ncerts)
        printf("%s: TLS ok (%zu certificate%s)\n", path, ncerts, ncerts == 1 ? "" : "s");
    if (nrulesets)
        printf("%s: ok (%zu rulesets, %zu rules, embedded tests passed)\n", path, nrulesets,
               nrules);
    else
        printf("%s: ok\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("bulwark %s\n", BW_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    const char *state_dir = NULL;
    bool takeover = false;
    static struct bw_eval_args ev;
    bool is_eval = strcmp(cmd, "eval") == 0;
    if (!is_eval && strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "bulwark: unknown command \"%s\"\n", cmd);
        return usage(stderr);
    }
    for (int i = 2; i < argc; i++) {
        bool has_arg = i + 1 < argc;
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && has_arg) {
            path = argv[++i];
        } else if (strcmp(cmd, "run") == 0 && strcmp(argv[i], "--state-dir") == 0 && has_arg) {
            state_dir = argv[++i];
        } else if (strcmp(cmd, "run") == 0 && strcmp(argv[i], "--takeover") == 0) {
            takeover = true;
        } else if (is_eval && strcmp(argv[i], "--request") == 0 && has_arg) {
            ev.request_line = argv[++i];
        } else if (is_eval && (strcmp(argv[i], "-H") == 0 || strcmp(argv[i], "--header") == 0) &&
                   has_arg) {
            if (ev.nheaders == BW_EVAL_MAX_HEADERS) {
                fprintf(stderr, "bulwark: at most %d headers\n", BW_EVAL_MAX_HEADERS);
                return 2;
            }
            ev.headers[ev.nheaders++] = argv[++i];
        } else if (is_eval && strcmp(argv[i], "--raw") == 0 && has_arg) {
            ev.has_raw_file = true;
            ev.raw_file = argv[++i];
        } else if (is_eval && strcmp(argv[i], "--ip") == 0 && has_arg) {
            ev.ip = argv[++i];
        } else if (is_eval && strcmp(argv[i], "--ssl") == 0) {
            ev.ssl = true;
        } else if (is_eval && strcmp(argv[i], "--bot-score") == 0 && has_arg) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 99) {
                fprintf(stderr, "bulwark: --bot-score takes 1..99\n");
                return 2;
            }
            ev.has_bot_score = true;
            ev.bot_score = v;
        } else if (is_eval && strcmp(argv[i], "--response-status") == 0 && has_arg) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 100 || v > 999) {
                fprintf(stderr, "bulwark: --response-status takes 100..999\n");
                return 2;
            }
            ev.has_response = true;
            ev.response_status = (uint16_t)v;
        } else if (is_eval && strcmp(argv[i], "--response-header") == 0 && has_arg) {
            if (ev.nresponse_headers == BW_EVAL_MAX_HEADERS) {
                fprintf(stderr, "bulwark: at most %d response headers\n", BW_EVAL_MAX_HEADERS);
                return 2;
            }
            ev.response_headers[ev.nresponse_headers++] = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            const char *l = argv[++i];
            if (strcmp(l, "error") == 0)
                bw_log_set_level(BW_LOG_ERROR);
            else if (strcmp(l, "warn") == 0)
                bw_log_set_level(BW_LOG_WARN);
            else if (strcmp(l, "info") == 0)
                bw_log_set_level(BW_LOG_INFO);
            else if (strcmp(l, "debug") == 0)
                bw_log_set_level(BW_LOG_DEBUG);
            else
                return usage(stderr);
        } else if (!path && argv[i][0] != '-') {
            /* nginx -c and haproxy -f take the file after a flag too, but
             * `bulwark check bulwark.yaml` is the natural first try. */
            fprintf(stderr,
                    "bulwark: unexpected argument \"%s\"; the config file comes after -c: "
                    "bulwark %s -c %s\n",
                    argv[i], cmd, argv[i]);
            return usage(stderr);
        } else {
            fprintf(stderr, "bulwark: unexpected argument \"%s\"\n", argv[i]);
            return usage(stderr);
        }
    }
    if (!path) {
        fprintf(stderr, "bulwark: %s needs -c FILE\n", cmd);
        return usage(stderr);
    }
    struct bw_config *cfg = NULL;
    if (strcmp(cmd, "check") == 0) {
        if (load(path, &cfg) != 0)
            return 1;
        int rc = check_command(path, cfg);
        bw_config_free(cfg);
        return rc;
    }
    if (is_eval) {
        if ((ev.request_line == NULL) == !ev.has_raw_file) {
            fprintf(stderr, "bulwark: eval needs --request LINE or --raw FILE (one of them)\n");
            return usage(stderr);
        }
        if (ev.nresponse_headers && !ev.has_response) {
            fprintf(stderr, "bulwark: --response-header needs --response-status\n");
            return 2;
        }
        if (load(path, &cfg) != 0)
            return 1;
        int rc = bw_eval_command(cfg, &ev, stdout, stderr);
        bw_config_free(cfg);
        return rc;
    }
    /* run: the only command left (unknown ones were refused above). */
    bool from_lkg = false;
    if (load(path, &cfg) != 0) {
        /* The state_dir is in the config that just failed: only a
         * --state-dir given on the command line can name the copy. */
        if (!state_dir || load_lkg(path, state_dir, &cfg) != 0)
            return 1;
        from_lkg = true;
    }
    static char report[8192];
    if (bw_server_check_files(cfg, report, sizeof report) != BW_OK) {
        fprintf(stderr, "%s%s: not starting\n", report, path);
        bw_config_free(cfg);
        return 1;
    }
    char warning[512];
    if (bw_config_admin_open_warning(cfg, warning, sizeof warning))
        BW_WARNF("%s: %s", path, warning);
    return bw_server_run(path, cfg, from_lkg, takeover);
}
