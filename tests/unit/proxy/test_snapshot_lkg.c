/* A snapshot's last-known-good copies and /status hashes are of the bytes
 * its loaders parsed and checked: every artifact file is replaced on disk
 * the moment bw_read_file has read it (the test hook), so anything that
 * read a file again (the copy, the hash) would see the replacement, which
 * was never checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/file.h"
#include "modules/lkg.h"
#include "proxy/proxy.h"
#include "test.h"

static char dir[] = "/tmp/bw-snaplkg-XXXXXX";

static const char RULESET[] = "id: entry\nrules:\n"
                              "  - {id: a, expression: 'http.request.uri.path eq \"/a\"', "
                              "action: block}\n";
static const char FEATURES[] = "{\"version\": 3, \"bias\": 1.0, \"features\": [{\"name\": "
                               "\"ua_missing\", \"expression\": \"not has(http.user_agent)\", "
                               "\"weight\": 4.0}]}\n";
static char config_text[1024];

/* What the hook swaps in: valid too (so that a re-read would go unnoticed
 * by anything but these checks), and different. */
static const char OTHER_RULESET[] = "id: entry\nrules:\n"
                                    "  - {id: b, expression: 'true', action: block}\n";
static const char OTHER_FEATURES[] = "{\"version\": 4, \"bias\": 0.0, \"features\": [{\"name\": "
                                     "\"x\", \"expression\": \"true\", \"weight\": 1.0}]}\n";
static const char OTHER_CONFIG_TAIL[] = "# replaced after it was read\n";

static void path_of(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Replaces the file by rename, as a deploy tool does. */
static void replace_file(const char *path, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    if (rename(tmp, path) != 0)
        abort();
}

static void write_file(const char *name, const char *text)
{
    char p[256];
    path_of(name, p, sizeof p);
    replace_file(p, text);
}

static int nreplaced;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void replace_after_read(const char *path)
{
    char other_config[1100];
    if (ends_with(path, "/entry.yaml")) {
        replace_file(path, OTHER_RULESET);
    } else if (ends_with(path, "/features.json")) {
        replace_file(path, OTHER_FEATURES);
    } else if (ends_with(path, "/bulwark.yaml")) {
        snprintf(other_config, sizeof other_config, "%s%s", config_text, OTHER_CONFIG_TAIL);
        replace_file(path, other_config);
    } else {
        return;
    }
    nreplaced++;
}

static void setup(void)
{
    snprintf(config_text, sizeof config_text,
             "listen: [{address: 127.0.0.1:0}]\n"
             "state_dir: %s/state\n"
             "upstreams: {app: {servers: [{address: 127.0.0.1:9}]}}\n"
             "routes: [{upstream: app}]\n"
             "modules:\n"
             "  rules: {rulesets: [entry.yaml]}\n"
             "  bot_score: {features: features.json}\n",
             dir);
    char state[256];
    path_of("state", state, sizeof state);
    (void)mkdir(state, 0700);
    write_file("entry.yaml", RULESET);
    write_file("features.json", FEATURES);
    write_file("bulwark.yaml", config_text);
    nreplaced = 0;
}

static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[3][4096];
    static int k;
    char *out = buf[k++ % 3];
    size_t n = fread(out, 1, sizeof buf[0] - 1, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

/* The copy of the artifact named name, read whole (NULL when missing). */
static char *read_copy(const char *name)
{
    char state[256], art[256], copy[4400];
    snprintf(state, sizeof state, "%s/state", dir);
    path_of(name, art, sizeof art);
    if (bw_lkg_path(bw_slice_make(state, strlen(state)), bw_slice_make(art, strlen(art)), copy,
                    sizeof copy) != BW_OK)
        return NULL;
    return read_whole(copy);
}

static bool load_snapshot(struct bw_snapshot **ret)
{
    char p[256];
    path_of("bulwark.yaml", p, sizeof p);
    static struct bw_config_diags d;
    struct bw_config *cfg;
    if (bw_config_load_file(p, &cfg, &d) != BW_OK)
        return false;
    char report[4096];
    if (bw_snapshot_new(cfg, 1, false, (struct bw_bot_running){.known = false}, NULL, NULL, ret,
                        report, sizeof report) != BW_OK) {
        printf("     %s\n", report);
        return false;
    }
    return true;
}

TEST(lkg_and_hashes_are_of_the_bytes_checked)
{
    setup();
    bw__read_file_hook = replace_after_read;
    struct bw_snapshot *s;
    bool loaded = load_snapshot(&s);
    bw__read_file_hook = NULL;
    CHECK(loaded);
    CHECK_INT_EQ(nreplaced, 3); /* each artifact read once, then swapped */
    char art[256];
    path_of("entry.yaml", art, sizeof art);
    CHECK_STR_EQ(read_whole(art), OTHER_RULESET); /* what a re-read would now see */
    CHECK(!s->rules.failed && s->bot.has_model);
    /* The snapshot serves what was read: rule a, model version 3. */
    CHECK_INT_EQ(s->bot.model->version, 3);

    CHECK(s->config_hash == bw_file_hash(config_text, strlen(config_text)));
    CHECK_INT_EQ(s->nrulesets_loaded, 1);
    CHECK(s->ruleset_hashes[0] == bw_file_hash(RULESET, strlen(RULESET)));
    CHECK(s->bot.model->hash == bw_file_hash(FEATURES, strlen(FEATURES)));

    bw_error err;
    if (bw_snapshot_save_lkg(s, false, &err) != BW_OK) {
        T_FAILF("%s", err.msg);
        bw_snapshot_unref(s);
        return;
    }
    const char *c = read_copy("bulwark.yaml");
    const char *r = read_copy("entry.yaml");
    const char *f = read_copy("features.json");
    CHECK(c && r && f);
    CHECK_STR_EQ(c, config_text);
    CHECK_STR_EQ(r, RULESET);
    CHECK_STR_EQ(f, FEATURES);
    /* The bytes are gone once saved; the hashes stay. */
    CHECK(s->cfg->source.ptr == NULL && s->bot.file.ptr == NULL && s->rules.files[0].ptr == NULL);
    CHECK(s->ruleset_hashes[0] == s->rules.files[0].hash);
    bw_snapshot_unref(s);
}

/* A snapshot whose rules did not load saves nothing (the previous copies
 * stay), and still lets go of the bytes it read. */
TEST(no_copy_when_a_module_failed)
{
    setup();
    char state[256];
    snprintf(state, sizeof state, "%s/state/lkg", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", state);
    CHECK(system(cmd) == 0);
    write_file("entry.yaml", "id: entry\nrules: [{id: a, expression: 'nope', action: block}]\n");
    struct bw_snapshot *s;
    CHECK(load_snapshot(&s));
    CHECK(s->rules.failed);
    bw_error err;
    CHECK_INT_EQ(bw_snapshot_save_lkg(s, false, &err), BW_OK);
    CHECK(read_copy("bulwark.yaml") == NULL);
    CHECK(read_copy("features.json") == NULL);
    CHECK(s->cfg->source.ptr == NULL && s->bot.file.ptr == NULL);
    bw_snapshot_unref(s);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    RUN(lkg_and_hashes_are_of_the_bytes_checked);
    RUN(no_copy_when_a_module_failed);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return t_done();
}
