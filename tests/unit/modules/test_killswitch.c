/* Killswitches: target grammar, applying to a snapshot's rules (bits the
 * engine reads), the set across snapshots, and the state file. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "modules/killswitch.h"
#include "test.h"

static char dir[] = "/tmp/bw-kill-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

/* A config with rulesets entry (rules a, b; executes managed) and managed. */
static bool load(struct bw_config **cfg, struct bw_rules_rt *rr)
{
    write_file("entry.yaml",
               "id: entry\nrules:\n"
               "  - {id: a, expression: 'http.request.uri.path eq \"/a\"', action: block}\n"
               "  - {id: b, expression: 'true', action: execute, ruleset: managed}\n");
    write_file("managed.yaml",
               "id: managed\nrules:\n"
               "  - {id: m, expression: 'http.request.uri.path eq \"/m\"', action: block}\n");
    write_file("b.yaml", "listen: [{address: 127.0.0.1:0}]\n"
                         "upstreams: {app: {servers: [{address: 127.0.0.1:9}]}}\n"
                         "routes: [{upstream: app}]\n"
                         "modules: {rules: {rulesets: [entry.yaml, managed.yaml]}}\n");
    char p[256];
    snprintf(p, sizeof p, "%s/b.yaml", dir);
    static struct bw_config_diags d;
    if (bw_config_load_file(p, cfg, &d) != BW_OK)
        return false;
    char report[4096];
    return bw_rules_rt_load(rr, *cfg, report, sizeof report) == BW_OK && !rr->failed;
}

static bool bit(const _Atomic uint64_t *w, size_t i)
{
    return (atomic_load(&w[i / 64]) >> (i % 64)) & 1u;
}

TEST(parse_targets)
{
    struct bw_kill k;
    bw_error err;
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/bots"), &k, &err), BW_OK);
    CHECK_INT_EQ(k.kind, BW_KILL_RULE);
    CHECK_STR_EQ(k.ruleset, "entry");
    CHECK_STR_EQ(k.rule, "bots");
    char buf[BW_KILL_TARGET_MAX + 1];
    bw_kill_format(&k, buf, sizeof buf);
    CHECK_STR_EQ(buf, "rule:entry/bots");
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("ruleset:managed"), &k, &err), BW_OK);
    CHECK_INT_EQ(k.kind, BW_KILL_RULESET);
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("module:rules"), &k, &err), BW_OK);
    CHECK_INT_EQ(k.module, BW_MODULE_RULES);
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("module:bot_score"), &k, &err), BW_OK);
    CHECK_INT_EQ(k.module, BW_MODULE_BOT_SCORE);

    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"", "expected \"rule:<ruleset>/<rule>\", \"ruleset:<id>\" or \"module:<name>\""},
        {"rules:x", "expected \"rule:<ruleset>/<rule>\", \"ruleset:<id>\" or \"module:<name>\""},
        {"rule:entry", "a rule target is rule:<ruleset>/<rule>"},
        {"rule:/x", "the ruleset id must be 1 to 128 characters"},
        {"rule:entry/", "the rule id must be 1 to 128 characters"},
        {"rule:en try/x", "the ruleset id may only hold letters, digits, '_', '.' and '-'"},
        {"rule:a/b/c", "the rule id may only hold letters, digits, '_', '.' and '-'"},
        {"ruleset:", "the ruleset id must be 1 to 128 characters"},
        {"module:waf", "unknown module (the modules are rules and bot_score)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = '\0';
        CHECK_INT_EQ(bw_kill_parse(bw_slice_make(bad[i].in, strlen(bad[i].in)), &k, &err), BW_ERR);
        CHECK_STR_EQ(err.msg, bad[i].msg);
    }
    /* Ids at the limit and just past it. */
    char t[300];
    memcpy(t, "ruleset:", 8);
    memset(t + 8, 'x', 129);
    CHECK_INT_EQ(bw_kill_parse(bw_slice_make(t, 8 + 128), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_parse(bw_slice_make(t, 8 + 129), &k, &err), BW_ERR);
}

TEST(set_and_clear_reach_the_engine_bits)
{
    struct bw_config *cfg = NULL;
    struct bw_rules_rt rr;
    CHECK(load(&cfg, &rr));
    if (!cfg)
        return;
    static struct bw_killswitches ks;
    ks.n = 0;
    struct bw_bot_rt bot = {.enabled = false};
    struct bw_kill_scope sc = {.rules = &rr, .bot = &bot};
    struct bw_kill k;
    bw_error err;
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/a"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_OK);
    CHECK_INT_EQ(ks.n, 1);
    CHECK(bit(rr.kills.rules, rr.book->rulesets[0].rules[0].index));
    /* Killing twice keeps one entry. */
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_OK);
    CHECK_INT_EQ(ks.n, 1);
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("ruleset:managed"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_OK);
    CHECK(bit(rr.kills.rulesets, 1));
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("module:rules"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_OK);
    CHECK(atomic_load(&rr.killed));
    CHECK_INT_EQ(bw_kill_set(&ks, &k, true, &sc, &err), BW_OK);
    CHECK(!atomic_load(&rr.killed));
    CHECK_INT_EQ(ks.n, 2);
    /* Unknown targets change nothing and say why. */
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/zzz"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_ERR);
    CHECK_STR_EQ(err.msg, "rule:entry/zzz: no such rule in the running configuration");
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("module:bot_score"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc, &err), BW_ERR);
    CHECK_INT_EQ(ks.n, 2);
    /* Lifting a killswitch nobody set on a missing target is a typo too. */
    CHECK_INT_EQ(bw_kill_set(&ks, &k, true, &sc, &err), BW_ERR);

    /* A new snapshot gets the whole set. */
    struct bw_config *cfg2 = NULL;
    struct bw_rules_rt rr2;
    CHECK(load(&cfg2, &rr2));
    struct bw_kill_scope sc2 = {.rules = &rr2, .bot = &bot};
    bw_kills_apply(&ks, &sc2);
    CHECK(bit(rr2.kills.rules, rr2.book->rulesets[0].rules[0].index));
    CHECK(bit(rr2.kills.rulesets, 1));
    /* Enabling again clears the bit and the entry. */
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/a"), &k, &err), BW_OK);
    CHECK_INT_EQ(bw_kill_set(&ks, &k, true, &sc2, &err), BW_OK);
    CHECK(!bit(rr2.kills.rules, rr2.book->rulesets[0].rules[0].index));
    CHECK_INT_EQ(ks.n, 1);
    /* One held for a target the configuration no longer has (restored
     * from the state file, or its ruleset removed since) can be lifted. */
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/gone"), &ks.items[ks.n], &err), BW_OK);
    ks.n++;
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/gone"), &k, &err), BW_OK);
    CHECK(!bw_kill_present(&k, &sc2));
    CHECK_INT_EQ(bw_kill_set(&ks, &k, false, &sc2, &err), BW_ERR); /* not killed anew */
    CHECK_INT_EQ(bw_kill_set(&ks, &k, true, &sc2, &err), BW_OK);
    CHECK_INT_EQ(ks.n, 1);
    bw_rules_rt_done(&rr2);
    bw_config_free(cfg2);
    bw_rules_rt_done(&rr);
    bw_config_free(cfg);
}

TEST(state_file_round_trip_and_errors)
{
    static struct bw_killswitches ks, back;
    bw_error err;
    size_t skipped;
    ks.n = 0;
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_OK); /* no file: empty */
    CHECK_INT_EQ(back.n, 0);
    CHECK_INT_EQ(skipped, 0);
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("rule:entry/a"), &ks.items[0], &err), BW_OK);
    CHECK_INT_EQ(bw_kill_parse(BW_SLICE_LIT("module:rules"), &ks.items[1], &err), BW_OK);
    ks.n = 2;
    CHECK_INT_EQ(bw_kills_save(&ks, dir, &err), BW_OK);
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_OK);
    CHECK_INT_EQ(back.n, 2);
    CHECK_INT_EQ(skipped, 0);
    CHECK_STR_EQ(back.items[0].rule, "a");
    CHECK_INT_EQ(back.items[1].kind, BW_KILL_MODULE);
    /* No temporary file left behind. */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/.killswitches.tmp", dir);
    CHECK(access(tmp, F_OK) != 0);
    /* A bad line costs that line, not the others: the rules an incident
     * turned off stay off across the restart. */
    write_file("killswitches", "rule:entry/a\nnonsense\nruleset:managed\n");
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_OK);
    CHECK_INT_EQ(skipped, 1);
    CHECK(strstr(err.msg, "killswitches:2: expected") != NULL);
    CHECK_INT_EQ(back.n, 2);
    CHECK_STR_EQ(back.items[1].ruleset, "managed");
    /* Written by hand: comments, blank lines, CRLF, spaces, a repeat. */
    write_file("killswitches", "# INC-123: managed blocks checkout\r\n\r\n"
                               "  ruleset:managed \r\n\trule:entry/a\nruleset:managed\n");
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_OK);
    CHECK_INT_EQ(skipped, 0);
    CHECK_INT_EQ(back.n, 2);
    CHECK_INT_EQ(back.items[0].kind, BW_KILL_RULESET);
    CHECK_STR_EQ(back.items[1].rule, "a");
    /* A line too long to be a target is one skipped line, wherever it ends. */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char text[800];
    snprintf(text, sizeof text, "module:rules\n%s\nrule:entry/a\n", big);
    write_file("killswitches", text);
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_OK);
    CHECK_INT_EQ(skipped, 1);
    CHECK(strstr(err.msg, "killswitches:2: line too long") != NULL);
    CHECK_INT_EQ(back.n, 2);
    /* The copy kept for the operator survives the next save. */
    CHECK_INT_EQ(bw_kills_keep_copy(dir, &err), BW_OK);
    CHECK_INT_EQ(bw_kills_save(&back, dir, &err), BW_OK);
    char copy[256];
    snprintf(copy, sizeof copy, "%s/killswitches.rejected", dir);
    FILE *f = fopen(copy, "r");
    CHECK(f != NULL);
    if (f) {
        char first[32];
        CHECK(fgets(first, sizeof first, f) != NULL);
        CHECK_STR_EQ(first, "module:rules\n");
        fclose(f);
    }
    CHECK_INT_EQ(bw_kills_keep_copy(dir, &err), BW_OK); /* again: replaced */
    /* Unreadable (a directory in its place): an error, nothing loaded. */
    char path[256];
    snprintf(path, sizeof path, "%s/killswitches", dir);
    CHECK(unlink(path) == 0 && mkdir(path, 0700) == 0);
    CHECK_INT_EQ(bw_kills_load(&back, dir, &skipped, &err), BW_ERR);
    CHECK_INT_EQ(back.n, 0);
    CHECK(rmdir(path) == 0);
    /* A state_dir that does not exist cannot be written: said, not crashed. */
    CHECK_INT_EQ(bw_kills_save(&ks, "/nonexistent/dir", &err), BW_ERR);
    CHECK(strstr(err.msg, "cannot write") != NULL);
}

/* The parser alone, at and past its limits: a line of BW_KILL_LINE_MAX
 * bytes is read, one byte more is skipped; a NUL byte is a bad target, not
 * the end of the file; the BW_MAX_KILLSWITCHES + 1st is skipped; a last
 * line without a newline counts. */
TEST(state_file_parser_limits)
{
    static struct bw_killswitches ks;
    static char text[BW_MAX_KILLSWITCHES * 16 + 4096];
    bw_error err;
    size_t skipped;
    char line[BW_KILL_LINE_MAX + 2];
    /* "rule:e/" + id padded with blanks to exactly the limit. */
    int n = snprintf(line, sizeof line, "rule:e/%s", "x");
    memset(line + n, ' ', (size_t)BW_KILL_LINE_MAX - (size_t)n);
    line[BW_KILL_LINE_MAX] = '\0';
    size_t len = (size_t)snprintf(text, sizeof text, "%s\n", line);
    bw_kills_parse(&ks, bw_slice_make(text, len), "k", &skipped, &err);
    CHECK_INT_EQ(skipped, 0);
    CHECK_INT_EQ(ks.n, 1);
    line[BW_KILL_LINE_MAX] = ' ';
    line[BW_KILL_LINE_MAX + 1] = '\0';
    len = (size_t)snprintf(text, sizeof text, "module:rules\n%s\nmodule:bot_score", line);
    bw_kills_parse(&ks, bw_slice_make(text, len), "k", &skipped, &err);
    CHECK_INT_EQ(skipped, 1);
    CHECK_STR_EQ(err.msg, "k:2: line too long");
    CHECK_INT_EQ(ks.n, 2);
    static const char nul[] = "rule:entry/a\0b\nruleset:managed\n";
    bw_kills_parse(&ks, bw_slice_make(nul, sizeof nul - 1), "k", &skipped, &err);
    CHECK_INT_EQ(skipped, 1);
    CHECK(strstr(err.msg, "k:1: ") == err.msg);
    CHECK_INT_EQ(ks.n, 1);
    len = 0;
    for (int i = 0; i <= BW_MAX_KILLSWITCHES; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "ruleset:r%d\n", i);
    bw_kills_parse(&ks, bw_slice_make(text, len), "k", &skipped, &err);
    CHECK_INT_EQ(ks.n, BW_MAX_KILLSWITCHES);
    CHECK_INT_EQ(skipped, 1);
    CHECK(strstr(err.msg, "more than 1024 killswitches") != NULL);
    bw_kills_parse(&ks, BW_SLICE_EMPTY, "k", &skipped, &err);
    CHECK_INT_EQ(ks.n, 0);
    CHECK_INT_EQ(skipped, 0);
}

/* Read whole, bounded: a file over BW_KILLSWITCH_FILE_MAX is refused (the
 * set stays empty), one at the limit is read. */
TEST(state_file_size_limit)
{
    static struct bw_killswitches ks;
    bw_error err;
    size_t skipped;
    char path[256];
    snprintf(path, sizeof path, "%s/killswitches", dir);
    char *big = malloc(BW_KILLSWITCH_FILE_MAX + 1);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, '#', BW_KILLSWITCH_FILE_MAX + 1);
    memcpy(big, "module:rules\n", 13);
    FILE *f = fopen(path, "w");
    CHECK(f && fwrite(big, 1, BW_KILLSWITCH_FILE_MAX, f) == BW_KILLSWITCH_FILE_MAX);
    fclose(f);
    CHECK_INT_EQ(bw_kills_load(&ks, dir, &skipped, &err), BW_OK);
    CHECK_INT_EQ(ks.n, 1);
    f = fopen(path, "w");
    CHECK(f && fwrite(big, 1, BW_KILLSWITCH_FILE_MAX + 1, f) == BW_KILLSWITCH_FILE_MAX + 1);
    fclose(f);
    CHECK_INT_EQ(bw_kills_load(&ks, dir, &skipped, &err), BW_ERR);
    CHECK(strstr(err.msg, "over the limit of 1048576 bytes") != NULL);
    CHECK_INT_EQ(ks.n, 0);
    unlink(path);
    free(big);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    RUN(parse_targets);
    RUN(set_and_clear_reach_the_engine_bits);
    RUN(state_file_round_trip_and_errors);
    RUN(state_file_parser_limits);
    RUN(state_file_size_limit);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return t_done();
}
