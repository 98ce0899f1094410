/* The bot_score module's core (src/modules/bot_score.c): invalid feature
 * files with their exact reports, every limit at and just past it, the
 * outage-1 shape (a valid file duplicated until it crosses the limit),
 * reading files, and scores computed by hand. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modules/bot_score.h"
#include "test.h"

#define REPORT_CAP 16384

static const struct bw_bot_load_opts DEFAULT_OPTS = {
    .max_features = BW_CONFIG_BOT_DEFAULT_MAX_FEATURES, .running = {.known = false}};

static bw_status parse_opts(const char *text, size_t len, const struct bw_bot_load_opts *o,
                            struct bw_bot_model **m, char *report)
{
    return bw_bot_model_parse("f.json", text, len, o, m, report, REPORT_CAP);
}

/* A file's head; features start on line 2, one per line, at column 3. */
#define HEAD "{\"version\": 7, \"bias\": 0.0, \"features\": [\n"
#define F(name, expr, w)                                                                           \
    "  {\"name\": \"" name "\", \"expression\": \"" expr "\", \"weight\": " w "}"
#define OK1 F("a", "true", "1.0")
#define TAIL "\n]}\n"

/* A name of n bytes. */
static const char *name_of(size_t n)
{
    static char buf[300];
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
    buf[n] = '\0';
    return buf;
}

static const struct {
    const char *name;
    const char *text; /* NUL-terminated unless len is set */
    size_t len;
    const char *want;
} invalid[] = {
    /* the bytes */
    {"empty", "", 0, "f.json: error: the feature file is empty\n"},
    {"whitespace only", " \n\t\n", 0, "f.json: error: the feature file is empty\n"},
    {"NUL byte", "{\"version\": 1,\n \"bias\"\0: 0}", 28,
     "f.json:2:8: error: a NUL byte: a feature file is UTF-8 JSON text\n"},
    {"invalid UTF-8", "{\"version\": 1, \"bias\": 0, \"x\xff\": 1}", 0,
     "f.json:1:29: error: invalid UTF-8 (byte 0xff): a feature file is UTF-8 JSON text\n"},
    {"overlong UTF-8", "{\"v\xc0\xaf\": 1}", 0,
     "f.json:1:4: error: invalid UTF-8 (byte 0xc0): a feature file is UTF-8 JSON text\n"},
    {"UTF-16 surrogate in UTF-8", "{\"v\xed\xa0\x80\": 1}", 0,
     "f.json:1:4: error: invalid UTF-8 (byte 0xed): a feature file is UTF-8 JSON text\n"},
    {"byte order mark", "\xef\xbb\xbf{\"version\": 1}", 0,
     "f.json:1:1: error: the file starts with a byte order mark; JSON text has none (RFC 8259 "
     "§8.1): save it as UTF-8 without a BOM\n"},
    /* the JSON */
    {"truncated", HEAD OK1 ",\n  {\"name\": \"b\", \"expr", 0,
     "f.json:3:21: error: the JSON ends early (is the file truncated?): premature end of input "
     "near '\"expr'\n"},
    {"truncated after a feature", HEAD OK1, 0,
     "f.json:2:52: error: the JSON ends early (is the file truncated?): ']' expected near end of "
     "file\n"},
    {"NaN is not JSON", "{\"version\": 1, \"bias\": NaN, \"features\": []}", 0,
     "f.json:1:26: error: invalid JSON: invalid token near 'NaN'\n"},
    {"Infinity is not JSON", HEAD F("a", "true", "Infinity") TAIL, 0,
     "f.json:2:56: error: invalid JSON: invalid token near 'Infinity'\n"},
    {"-Infinity is not JSON", HEAD F("a", "true", "-Infinity") TAIL, 0,
     "f.json:2:49: error: invalid JSON: invalid token near '-'\n"},
    {"a real past double", HEAD F("a", "true", "1e400") TAIL, 0,
     "f.json:2:53: error: invalid JSON: real number overflow near '1e400'\n"},
    {"duplicate key", "{\"version\": 1, \"version\": 2, \"bias\": 0, \"features\": []}", 0,
     "f.json:1:24: error: invalid JSON: duplicate object key near '\"version\"'\n"},
    {"trailing garbage", "{\"version\": 1, \"bias\": 0, \"features\": [" OK1 "]} x", 0,
     "f.json:1:95: error: invalid JSON: end of file expected near 'x'\n"},
    {"escaped NUL", HEAD F("a\\u0000b", "true", "1") TAIL, 0,
     "f.json:2:21: error: invalid JSON: \\u0000 is not allowed without JSON_ALLOW_NUL near "
     "'\"a\\u0000b\"'\n"},
    /* the top level */
    {"top is an array", "[1, 2]", 0,
     "f.json:1:1: error: the top level: expected an object like {\"version\": 1, \"bias\": 0.0, "
     "\"features\": [...]}, got an array\n"},
    {"unknown top key", "{\"version\": 1, \"bias\": 0, \"features\": [" OK1 "], \"Bias\": 1}", 0,
     "f.json:1:95: error: unknown key \"Bias\" in the top level (expected one of: version, bias, "
     "features)\n"},
    {"missing version", "{\"bias\": 0, \"features\": [" OK1 "]}", 0,
     "f.json:1:1: error: missing required key \"version\" in the top level\n"},
    {"missing everything", "{}", 0,
     "f.json:1:1: error: missing required key \"version\" in the top level\n"
     "f.json:1:1: error: missing required key \"bias\" in the top level\n"
     "f.json:1:1: error: missing required key \"features\" in the top level\n"},
    {"version a string", "{\"version\": \"1042\", \"bias\": 0, \"features\": [" OK1 "]}", 0,
     "f.json:1:13: error: version: expected a non-negative integer, got a string\n"},
    {"version negative", "{\"version\": -1, \"bias\": 0, \"features\": [" OK1 "]}", 0,
     "f.json:1:13: error: version: expected a non-negative integer, got -1\n"},
    {"version real", "{\"version\": 1042.0, \"bias\": 0, \"features\": [" OK1 "]}", 0,
     "f.json:1:13: error: version: expected a non-negative integer, got a real number\n"},
    {"version too big for JSON", "{\"version\": 99999999999999999999, \"bias\": 0}", 0,
     "f.json:1:32: error: invalid JSON: too big integer near '99999999999999999999'\n"},
    {"bias a string", "{\"version\": 1, \"bias\": \"-2\", \"features\": [" OK1 "]}", 0,
     "f.json:1:24: error: bias: expected a number, got a string\n"},
    {"bias past the bound", "{\"version\": 1, \"bias\": -1000.5, \"features\": [" OK1 "]}", 0,
     "f.json:1:24: error: bias -1000.5 is outside -1000 to 1000\n"},
    {"bias null", "{\"version\": 1, \"bias\": null, \"features\": [" OK1 "]}", 0,
     "f.json:1:24: error: bias: expected a number, got null\n"},
    {"features an object", "{\"version\": 1, \"bias\": 0, \"features\": {}}", 0,
     "f.json:1:39: error: features: expected an array of features, got an object\n"},
    {"features empty", "{\"version\": 1, \"bias\": 0, \"features\": []}", 0,
     "f.json:1:39: error: features: the list is empty; a model needs at least 1 feature (an empty "
     "model would score every request alike)\n"},
    /* one feature */
    {"feature a string", HEAD OK1 ",\n  \"b\"" TAIL, 0,
     "f.json:3:3: error: features[1]: expected an object like {\"name\": \"ua_curl\", "
     "\"expression\": \"...\", \"weight\": 3.0}, got a string\n"},
    {"feature unknown key",
     HEAD "  {\"name\": \"a\", \"expression\": \"true\", \"wieght\": 1}" TAIL, 0,
     "f.json:2:3: error: features[0]: missing required key \"weight\"\n"
     "f.json:2:39: error: features[0]: unknown key \"wieght\" (expected one of: name, "
     "expression, weight)\n"},
    {"errors in file order",
     "{\"features\": [{\"weight\": \"x\", \"name\": 1, \"expression\": \"\"}],\n"
     " \"bias\": null, \"version\": -3, \"z\": 0}",
     0,
     "f.json:1:26: error: features[0]: weight: expected a number, got a string\n"
     "f.json:1:39: error: features[0]: name: expected a string, got an integer\n"
     "f.json:1:57: error: features[0]: expression: the expression is empty\n"
     "    {\"features\": [{\"weight\": \"x\", \"name\": 1, \"expression\": \"\"}],\n"
     "                                                            ^\n"
     "f.json:2:10: error: bias: expected a number, got null\n"
     "f.json:2:27: error: version: expected a non-negative integer, got -3\n"
     "f.json:2:31: error: unknown key \"z\" in the top level (expected one of: version, bias, "
     "features)\n"},
    {"feature missing expression", HEAD "  {\"name\": \"a\", \"weight\": 1}" TAIL, 0,
     "f.json:2:3: error: features[0]: missing required key \"expression\"\n"},
    {"name not a string", HEAD "  {\"name\": 7, \"expression\": \"true\", \"weight\": 1}" TAIL, 0,
     "f.json:2:12: error: features[0]: name: expected a string, got an integer\n"},
    {"name empty", HEAD F("", "true", "1") TAIL, 0,
     "f.json:2:12: error: features[0]: name is empty; a name is 1 to 128 bytes of "
     "[A-Za-z0-9_.-]\n"},
    {"name with a space", HEAD F("ua curl", "true", "1") TAIL, 0,
     "f.json:2:12: error: features[0]: name \"ua curl\" has a character outside [A-Za-z0-9_.-] at "
     "byte 3\n"},
    {"name with a newline", HEAD F("ua\\ncurl", "true", "1") TAIL, 0,
     "f.json:2:12: error: features[0]: name \"ua\\x0acurl\" has a character outside "
     "[A-Za-z0-9_.-] at byte 3\n"},
    {"duplicate name", HEAD OK1 ",\n" F("b", "true", "1") ",\n" F("a", "false", "2") TAIL, 0,
     "f.json:4:12: error: features[2] \"a\": duplicate name, first used by features[0]\n"},
    {"weight a string", HEAD F("a", "true", "\"4.0\"") TAIL, 0,
     "f.json:2:49: error: features[0] \"a\": weight: expected a number, got a string\n"},
    {"weight past the bound", HEAD F("a", "true", "1000.001") TAIL, 0,
     "f.json:2:49: error: features[0] \"a\": weight 1000.001 is outside -1000 to 1000\n"},
    {"weight far past the bound", HEAD F("a", "true", "-1e300") TAIL, 0,
     "f.json:2:49: error: features[0] \"a\": weight -1e+300 is outside -1000 to 1000\n"},
    {"expression not a string",
     HEAD "  {\"name\": \"a\", \"expression\": true, \"weight\": 1}" TAIL, 0,
     "f.json:2:31: error: features[0] \"a\": expression: expected a string, got true\n"},
    {"expression not Bool", HEAD F("ua", "http.user_agent", "1") TAIL, 0,
     "f.json:2:33: error: features[0] \"ua\": expression: the expression must be Bool, but "
     "http.user_agent is Bytes\n"
     "      {\"name\": \"ua\", \"expression\": \"http.user_agent\", \"weight\": 1}\n"
     "                                    ^~~~~~~~~~~~~~~\n"},
    {"expression unknown field after escapes",
     HEAD F("ua_curl",
            "lower(http.user_agent) contains \\\"curl/\\\" "
            "and http.hots eq \\\"a\\\"",
            "3.0") TAIL,
     0,
     "f.json:2:84: error: features[0] \"ua_curl\": expression: unknown field \"http.hots\" (did "
     "you mean \"http.host\"?)\n"
     "    expression\": \"lower(http.user_agent) contains \\\"curl/\\\" and http.hots eq "
     "\\\"a\\\"\", \"weight\": 3.0}\n"
     "                                                                ^~~~~~~~~\n"},
    {"expression error after \\u escapes: file line and column",
     HEAD F("u", "http.user_agent eq \\\"\\u00e9\\u0041\\\" and len(ssl) eq 1", "1") TAIL, 0,
     "f.json:2:76: error: features[0] \"u\": expression: len() takes Bytes or an Array, but ssl "
     "is Bool\n"
     "      {\"name\": \"u\", \"expression\": \"http.user_agent eq \\\"\\u00e9\\u0041\\\" and "
     "len(ssl) eq 1\", \"weight\": 1}\n"
     "                                                                               ^~~\n"},
    {"expression reads bot.score",
     HEAD F("circular", "has(bot.score) and bot.score lt 10", "1") TAIL, 0,
     "f.json:2:43: error: features[0] \"circular\": expression reads bot.score: a feature cannot "
     "depend on the score it feeds\n"
     "      {\"name\": \"circular\", \"expression\": \"has(bot.score) and bot.score lt 10\", "
     "\"weight\": 1}\n"
     "                                              ^~~~~~~~~\n"},
    {"expression in the response phase", HEAD F("resp", "http.response.code eq 200", "1") TAIL, 0,
     "f.json:2:35: error: features[0] \"resp\": expression: http.response.code is only available "
     "in the response phase, but this is a request-phase expression\n"
     "      {\"name\": \"resp\", \"expression\": \"http.response.code eq 200\", \"weight\": 1}\n"
     "                                      ^~~~~~~~~~~~~~~~~~\n"},
    {"expression backtracking regex",
     HEAD F("re", "http.user_agent matches r\\\"(a)\\\\1\\\"", "1") TAIL, 0, ""},
    /* several errors, all reported, in file order */
    {"several",
     HEAD F("a", "true", "1") ",\n" F("a", "true", "1001") ",\n" F("b c", "http.x", "1") TAIL, 0,
     "f.json:3:12: error: features[1] \"a\": duplicate name, first used by features[0]\n"
     "f.json:3:49: error: features[1] \"a\": weight 1001 is outside -1000 to 1000\n"
     "f.json:4:12: error: features[2]: name \"b c\" has a character outside [A-Za-z0-9_.-] at byte "
     "2\n"
     "f.json:4:34: error: features[2]: expression: unknown field \"http.x\"\n"
     "      {\"name\": \"b c\", \"expression\": \"http.x\", \"weight\": 1}\n"
     "                                     ^~~~~~\n"},
};

TEST(invalid_files_table)
{
    static char report[REPORT_CAP];
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        size_t len = invalid[i].len ? invalid[i].len : strlen(invalid[i].text);
        struct bw_bot_model *m = NULL;
        if (parse_opts(invalid[i].text, len, &DEFAULT_OPTS, &m, report) == BW_OK) {
            T_FAILF("%s: accepted", invalid[i].name);
            m = bw_bot_model_free(m);
            return;
        }
        if (m != NULL) {
            T_FAILF("%s: *ret written on failure", invalid[i].name);
            return;
        }
        if (invalid[i].want[0] == '\0') {
            /* Only that it says which feature: the rules front end owns the
             * regex sentence. */
            if (!strstr(report, "features[0] \"re\": expression: ")) {
                T_FAILF("%s: got \"%s\"", invalid[i].name, report);
                return;
            }
            continue;
        }
        if (strcmp(report, invalid[i].want) != 0) {
            /* Every mismatch shown, not only the first. */
            T_FAILF("%s:\n got: \"%s\"\nwant: \"%s\"", invalid[i].name, report, invalid[i].want);
        }
    }
}

/* ---- generated files: the count limits and outage 1 ------------------------------ */

/* A file of n features named f0..f(n-1) (names repeat every `period`
 * features, as duplicated rows would), each on its own line. */
static char *gen(size_t n, size_t period, uint64_t version, size_t *len)
{
    size_t cap = 256 + n * 128;
    char *s = malloc(cap);
    size_t o = (size_t)snprintf(s, cap, "{\"version\": %llu, \"bias\": -1.5, \"features\": [\n",
                                (unsigned long long)version);
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o,
                              "  {\"name\": \"f%zu\", \"expression\": "
                              "\"has(http.request.headers[\\\"x-f%zu\\\"])\", \"weight\": 0.5}%s\n",
                              i % period, i % period, i + 1 < n ? "," : "");
    o += (size_t)snprintf(s + o, cap - o, "]}\n");
    *len = o;
    return s;
}

static bool loads(size_t n, size_t period, const struct bw_bot_load_opts *o, char *report,
                  size_t *ret_n)
{
    size_t len;
    char *s = gen(n, period, 7, &len);
    struct bw_bot_model *m = NULL;
    bw_status st = parse_opts(s, len, o, &m, report);
    free(s);
    if (st == BW_OK)
        *ret_n = m->nfeatures;
    m = bw_bot_model_free(m);
    return st == BW_OK;
}

TEST(feature_count_at_and_past_max_features)
{
    static char report[REPORT_CAP];
    size_t n = 0;
    CHECK(loads(200, 100000, &DEFAULT_OPTS, report, &n));
    CHECK_INT_EQ(n, 200);
    CHECK(!loads(201, 100000, &DEFAULT_OPTS, report, &n));
    CHECK_STR_EQ(report,
                 "f.json:202:3: error: features[200]: 201 features, over max_features 200\n");

    struct bw_bot_load_opts o = {.max_features = 1024};
    CHECK(loads(1024, 100000, &o, report, &n));
    CHECK_INT_EQ(n, 1024);
    CHECK(!loads(1025, 100000, &o, report, &n));
    CHECK_STR_EQ(report,
                 "f.json:1026:3: error: features[1024]: 1025 features, over max_features 1024\n");

    o.max_features = 1;
    CHECK(loads(1, 100000, &o, report, &n));
    CHECK(!loads(2, 100000, &o, report, &n));
    CHECK_STR_EQ(report, "f.json:3:3: error: features[1]: 2 features, over max_features 1\n");

    /* max_features itself is bounded: the config refuses these first. */
    o.max_features = 0;
    CHECK(!loads(1, 100000, &o, report, &n));
    CHECK_STR_EQ(report, "f.json: error: max_features 0 is outside 1 to 1024\n");
    o.max_features = 1025;
    CHECK(!loads(1, 100000, &o, report, &n));
    CHECK_STR_EQ(report, "f.json: error: max_features 1025 is outside 1 to 1024\n");
}

/* Outage 1 (DESIGN.md §1): a valid 60-feature file whose rows are
 * duplicated. Doubled: every repeated name is refused (the first
 * BW_BOT_MAX_ERRORS shown, the rest counted); grown past the limit: the
 * count alone refuses it. Either way nothing is loaded. */
TEST(outage_1_duplicated_rows)
{
    static char report[REPORT_CAP];
    size_t n = 0;
    CHECK(loads(60, 60, &DEFAULT_OPTS, report, &n));
    CHECK_INT_EQ(n, 60);

    CHECK(!loads(120, 60, &DEFAULT_OPTS, report, &n));
    char want[REPORT_CAP];
    size_t o = 0;
    for (size_t i = 60; i < 60 + BW_BOT_MAX_ERRORS; i++)
        o += (size_t)snprintf(want + o, sizeof want - o,
                              "f.json:%zu:12: error: features[%zu] \"f%zu\": duplicate name, first "
                              "used by features[%zu]\n",
                              i + 2, i, i - 60, i - 60);
    snprintf(want + o, sizeof want - o, "f.json: error: %d more errors not shown\n",
             60 - BW_BOT_MAX_ERRORS);
    CHECK_STR_EQ(report, want);

    CHECK(!loads(250, 60, &DEFAULT_OPTS, report, &n));
    CHECK_STR_EQ(report,
                 "f.json:202:3: error: features[200]: 250 features, over max_features 200\n");
}

/* ---- the other limits at and past them ------------------------------------------ */

static bool parse_ok(const char *text, const struct bw_bot_load_opts *o, struct bw_bot_model **m,
                     char *report)
{
    return parse_opts(text, strlen(text), o, m, report) == BW_OK;
}

TEST(weights_and_bias_at_the_bound)
{
    static char report[REPORT_CAP];
    struct bw_bot_model *m = NULL;
    CHECK(parse_ok("{\"version\": 0, \"bias\": -1000, \"features\": [" F("a", "true", "1000") "," F(
                       "b", "false", "-1000.0") "]}",
                   &DEFAULT_OPTS, &m, report));
    CHECK(m->bias == -1000.0);
    CHECK(m->features[0].weight == 1000.0);
    CHECK(m->features[1].weight == -1000.0);
    CHECK_INT_EQ(m->version, 0);
    m = bw_bot_model_free(m);
    CHECK(parse_ok("{\"version\": 0, \"bias\": 1000.0, \"features\": [" OK1 "]}", &DEFAULT_OPTS, &m,
                   report));
    m = bw_bot_model_free(m);
    CHECK(!parse_ok("{\"version\": 0, \"bias\": 1000.0000001, \"features\": [" OK1 "]}",
                    &DEFAULT_OPTS, &m, report));
    CHECK_STR_EQ(report, "f.json:1:24: error: bias 1000.0000001 is outside -1000 to 1000\n");
    CHECK(!parse_ok("{\"version\": 0, \"bias\": 0, \"features\": [" F("a", "true", "-1000.5") "]}",
                    &DEFAULT_OPTS, &m, report));
    CHECK_STR_EQ(
        report, "f.json:1:88: error: features[0] \"a\": weight -1000.5 is outside -1000 to 1000\n");
    /* An integer weight is a number like any other. */
    CHECK(parse_ok("{\"version\": 0, \"bias\": -2, \"features\": [" F("a", "true", "4") "]}",
                   &DEFAULT_OPTS, &m, report));
    CHECK(m->bias == -2.0 && m->features[0].weight == 4.0);
    m = bw_bot_model_free(m);
}

TEST(name_length_at_and_past_the_limit)
{
    static char report[REPORT_CAP], text[1024];
    struct bw_bot_model *m = NULL;
    snprintf(text, sizeof text,
             "{\"version\": 0, \"bias\": 0, \"features\": [{\"name\": \"%s\", \"expression\": "
             "\"true\", \"weight\": 1}]}",
             name_of(BW_BOT_MAX_NAME_LEN));
    CHECK(parse_ok(text, &DEFAULT_OPTS, &m, report));
    CHECK_INT_EQ(m->features[0].name.len, 128);
    m = bw_bot_model_free(m);
    snprintf(text, sizeof text,
             "{\"version\": 0, \"bias\": 0, \"features\": [{\"name\": \"%s\", \"expression\": "
             "\"true\", \"weight\": 1}]}",
             name_of(BW_BOT_MAX_NAME_LEN + 1));
    CHECK(!parse_ok(text, &DEFAULT_OPTS, &m, report));
    CHECK_STR_EQ(report,
                 "f.json:1:49: error: features[0]: name is 129 bytes, over the limit of 128\n");
    /* Every allowed character. */
    CHECK(parse_ok("{\"version\": 0, \"bias\": 0, \"features\": [" F("Az09_.-", "true", "1") "]}",
                   &DEFAULT_OPTS, &m, report));
    m = bw_bot_model_free(m);
}

TEST(version_must_not_go_backwards)
{
    static char report[REPORT_CAP];
    struct bw_bot_model *m = NULL;
    struct bw_bot_load_opts o = {.max_features = 200, .running = {.known = true, .version = 1042}};
    CHECK(!parse_ok("{\"version\": 1041, \"bias\": 0, \"features\": [" OK1 "]}", &o, &m, report));
    CHECK_STR_EQ(report, "f.json:1:13: error: version 1041 is lower than the running model's "
                         "version 1042: a feature file's version must not go backwards\n");
    /* The same version (a re-read) and a newer one load. */
    CHECK(parse_ok("{\"version\": 1042, \"bias\": 0, \"features\": [" OK1 "]}", &o, &m, report));
    CHECK_INT_EQ(m->version, 1042);
    m = bw_bot_model_free(m);
    CHECK(parse_ok("{\"version\": 1043, \"bias\": 0, \"features\": [" OK1 "]}", &o, &m, report));
    m = bw_bot_model_free(m);
    /* No running model: any version. */
    CHECK(parse_ok("{\"version\": 0, \"bias\": 0, \"features\": [" OK1 "]}", &DEFAULT_OPTS, &m,
                   report));
    m = bw_bot_model_free(m);
    /* The largest JSON integer jansson reads. */
    o.running.version = 9223372036854775807ull;
    CHECK(parse_ok("{\"version\": 9223372036854775807, \"bias\": 0, \"features\": [" OK1 "]}", &o,
                   &m, report));
    m = bw_bot_model_free(m);
}

TEST(file_size_at_and_past_the_limit)
{
    static char report[REPORT_CAP];
    const char *body = "{\"version\": 0, \"bias\": 0, \"features\": [" OK1 "]}";
    size_t n = BW_BOT_MAX_FILE_BYTES;
    char *s = malloc(n + 1);
    memset(s, ' ', n + 1);
    memcpy(s, body, strlen(body));
    struct bw_bot_model *m = NULL;
    bw_status st = parse_opts(s, n, &DEFAULT_OPTS, &m, report);
    if (st == BW_OK) {
        CHECK_INT_EQ(m->file_bytes, n);
        m = bw_bot_model_free(m);
    }
    bw_status st2 = parse_opts(s, n + 1, &DEFAULT_OPTS, &m, report);
    free(s);
    CHECK(st == BW_OK);
    CHECK(st2 != BW_OK);
    CHECK_STR_EQ(
        report,
        "f.json: error: the feature file is 1048577 bytes, over the limit of 1048576 bytes\n");
}

TEST(report_is_bounded_and_terminated)
{
    char small[40];
    struct bw_bot_model *m = NULL;
    CHECK(bw_bot_model_parse("f.json", "{}", 2, &DEFAULT_OPTS, &m, small, sizeof small) != BW_OK);
    CHECK_INT_EQ(strlen(small), sizeof small - 1);
    CHECK(bw_bot_model_parse("f.json", "{}", 2, &DEFAULT_OPTS, &m, small, 0) != BW_OK);
    CHECK(m == NULL);
}

/* ---- files ------------------------------------------------------------------------ */

static char dir[] = "/tmp/bw-bot-XXXXXX";

static const char *write_file(const char *name, const char *text, size_t len)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
    return p;
}

TEST(load_file)
{
    static char report[REPORT_CAP], want[512];
    static const char good[] =
        "{\"version\": 1042, \"bias\": -2.0, \"features\": [\n"
        "  " F("ua_missing", "len(http.user_agent) eq 0",
               "4.0") ",\n"
                      "  " F("ua_curl", "lower(http.user_agent) contains \\\"curl/\\\"",
                             "3.0") "\n]}\n";
    const char *p = write_file("features.json", good, sizeof good - 1);
    struct bw_bot_model *m = NULL;
    if (bw_bot_model_load_file(p, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK) {
        T_FAILF("refused: %s", report);
        return;
    }
    CHECK_INT_EQ(m->version, 1042);
    CHECK(m->bias == -2.0);
    CHECK_INT_EQ(m->nfeatures, 2);
    CHECK_SLICE_EQ(m->features[0].name, "ua_missing");
    CHECK_SLICE_EQ(m->features[1].expression, "lower(http.user_agent) contains \"curl/\"");
    CHECK(m->features[1].weight == 3.0);
    CHECK_INT_EQ(m->file_bytes, sizeof good - 1);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof good - 1; i++)
        h = (h ^ (unsigned char)good[i]) * 0x100000001b3ull;
    CHECK(m->hash == h);
    CHECK(strncmp(m->path.ptr, p, m->path.len) == 0 && m->path.len == strlen(p));
    m = bw_bot_model_free(m);
    CHECK(m == NULL);

    /* Errors name the file as given. */
    p = write_file("bad.json", "{\"version\": 1}", 14);
    CHECK(bw_bot_model_load_file(p, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want,
             "%s:1:1: error: missing required key \"bias\" in the top level\n"
             "%s:1:1: error: missing required key \"features\" in the top level\n",
             p, p);
    CHECK_STR_EQ(report, want);

    p = write_file("empty.json", "", 0);
    CHECK(bw_bot_model_load_file(p, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want, "%s: error: the feature file is empty\n", p);
    CHECK_STR_EQ(report, want);

    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.json", dir);
    CHECK(bw_bot_model_load_file(missing, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want,
             "%s: error: cannot open the feature file: No such file or directory\n", missing);
    CHECK_STR_EQ(report, want);

    CHECK(bw_bot_model_load_file(dir, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want, "%s: error: is a directory, expected a feature file\n", dir);
    CHECK_STR_EQ(report, want);

    /* Named by a config: a file that cannot be read is said at the key
     * that names it (it has no line of its own); one that reads but does
     * not validate still points into itself. */
    struct bw_bot_load_opts named = DEFAULT_OPTS;
    named.named_at = "bulwark.yaml:14:26: error: modules.bot_score.features";
    CHECK(bw_bot_model_load_file(missing, &named, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want,
             "bulwark.yaml:14:26: error: modules.bot_score.features: %s: cannot open the feature "
             "file: No such file or directory\n",
             missing);
    CHECK_STR_EQ(report, want);
    p = write_file("bad.json", "{\"version\": 1}", 14);
    CHECK(bw_bot_model_load_file(p, &named, &m, NULL, report, sizeof report) != BW_OK);
    CHECK(strncmp(report, p, strlen(p)) == 0 && strncmp(report + strlen(p), ":1:1: ", 6) == 0);

    char *big = malloc(BW_BOT_MAX_FILE_BYTES + 1);
    memset(big, ' ', BW_BOT_MAX_FILE_BYTES + 1);
    p = write_file("big.json", big, BW_BOT_MAX_FILE_BYTES + 1);
    free(big);
    CHECK(bw_bot_model_load_file(p, &DEFAULT_OPTS, &m, NULL, report, sizeof report) != BW_OK);
    snprintf(want, sizeof want,
             "%s: error: the feature file is 1048577 bytes, over the limit of 1048576 bytes\n", p);
    CHECK_STR_EQ(report, want);
    CHECK(m == NULL);
}

/* ---- scoring ----------------------------------------------------------------------- */

struct req {
    struct bw_rv_header hs[8];
    struct bw_request_view v;
};

static void req_init(struct req *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->v = (struct bw_request_view){
        .method = BW_SLICE_LIT("GET"),
        .host = {.known = true, .value = BW_SLICE_LIT("a.example")},
        .uri = bw_slice_make(path, strlen(path)),
        .raw_path = bw_slice_make(path, strlen(path)),
        .query = BW_SLICE_EMPTY,
        .headers = {.items = r->hs, .n = 0},
        .bot_score = {.known = false},
    };
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->v.src.addr;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(0xC0000201);
    r->v.src.known = true;
}

static void req_header(struct req *r, const char *name, const char *value)
{
    r->hs[r->v.headers.n++] = (struct bw_rv_header){bw_slice_make(name, strlen(name)),
                                                    bw_slice_make(value, strlen(value))};
}

/* Loads text, scores r with an arena capped at cap (0: unbounded). */
static struct bw_bot_result score_with(const char *text, const struct req *r, size_t cap)
{
    static char report[REPORT_CAP];
    struct bw_bot_model *m = NULL;
    struct bw_bot_result res = {.outcome = BW_BOT_OUTCOME__COUNT};
    if (!parse_ok(text, &DEFAULT_OPTS, &m, report)) {
        printf("     model refused: %s", report);
        return res;
    }
    struct bw_bot_worker w;
    bw_error err;
    if (bw_bot_worker_init(&w, m, &err) != BW_OK) {
        printf("     worker: %s\n", err.msg);
        bw_bot_model_free(m);
        return res;
    }
    bw_arena a;
    bw_arena_init(&a, 512, cap);
    res = bw_bot_score(m, &r->v, &a, &w.scratch);
    /* The same request again on a cleared arena gives the same answer. */
    bw_arena_clear(&a);
    struct bw_bot_result again = bw_bot_score(m, &r->v, &a, &w.scratch);
    if (again.outcome != res.outcome ||
        (res.outcome == BW_BOT_SCORED && again.u.scored.score != res.u.scored.score))
        res.outcome = BW_BOT_OUTCOME__COUNT;
    bw_arena_reset(&a);
    bw_bot_worker_done(&w);
    m = bw_bot_model_free(m);
    return res;
}

static int64_t score(const char *text, const struct req *r)
{
    struct bw_bot_result res = score_with(text, r, 0);
    switch (res.outcome) {
    case BW_BOT_SCORED:
        return res.u.scored.score;
    case BW_BOT_FAILED:
    case BW_BOT_OUTCOME__COUNT:
        break;
    }
    return -1;
}

TEST(score_formula)
{
    CHECK_INT_EQ(bw_bot_score_of(0.0), 50);      /* 1 + round(98 * 0.5) */
    CHECK_INT_EQ(bw_bot_score_of(2.0), 13);      /* 1 + round(98 * 0.119203) = 1 + 12 */
    CHECK_INT_EQ(bw_bot_score_of(-2.0), 87);     /* 1 + round(98 * 0.880797) = 1 + 86 */
    CHECK_INT_EQ(bw_bot_score_of(2.5), 8);       /* 1 + round(98 * 0.075858) = 1 + 7 */
    CHECK_INT_EQ(bw_bot_score_of(5.0), 2);       /* 1 + round(98 * 0.006693) = 1 + 1 */
    CHECK_INT_EQ(bw_bot_score_of(6.0), 1);       /* 1 + round(98 * 0.002473) = 1 + 0 */
    CHECK_INT_EQ(bw_bot_score_of(-6.0), 99);     /* 1 + round(98 * 0.997527) = 1 + 98 */
    CHECK_INT_EQ(bw_bot_score_of(1025000.0), 1); /* the largest sum: no overflow, no NaN */
    CHECK_INT_EQ(bw_bot_score_of(-1025000.0), 99);
    /* Monotonic: more evidence of automation never raises the score. */
    int64_t prev = 99;
    for (double x = -10.0; x <= 10.0; x += 0.01) {
        int64_t s = bw_bot_score_of(x);
        CHECK(s >= BW_BOT_SCORE_MIN && s <= BW_BOT_SCORE_MAX && s <= prev);
        prev = s;
    }
}

#define MODEL3                                                                                     \
    "{\"version\": 1, \"bias\": -2.0, \"features\": [" F(                                          \
        "ua_curl", "lower(http.user_agent) contains \\\"curl/\\\"",                                \
        "3.0") "," F("no_accept", "not has(http.request.headers[\\\"accept\\\"])",                 \
                     "1.0") "," F("admin", "starts_with(http.request.uri.path, \\\"/admin\\\")",   \
                                  "0.5") "]}"

TEST(scores_by_hand)
{
    struct req r;
    /* Nothing true: x = bias = 0. */
    req_init(&r, "/");
    CHECK_INT_EQ(
        score("{\"version\": 1, \"bias\": 0, \"features\": [" F("a", "false", "5") "]}", &r), 50);
    /* curl, no Accept, /x: x = -2 + 3 + 1 = 2 -> 13. */
    req_init(&r, "/x");
    req_header(&r, "User-Agent", "Curl/8.1");
    CHECK_INT_EQ(score(MODEL3, &r), 13);
    struct bw_bot_result res = score_with(MODEL3, &r, 0);
    CHECK_INT_EQ(res.outcome, BW_BOT_SCORED);
    CHECK_INT_EQ(res.u.scored.ntrue, 2);
    CHECK_INT_EQ(res.u.scored.nunknown, 0);
    /* All three: x = 2.5 -> 8. The path is normalised: /a/../admin. */
    req_init(&r, "/a/../admin/x");
    req_header(&r, "User-Agent", "curl/8.1");
    CHECK_INT_EQ(score(MODEL3, &r), 8);
    /* A browser: x = -2 -> 87. */
    req_init(&r, "/");
    req_header(&r, "User-Agent", "Mozilla/5.0");
    req_header(&r, "Accept", "text/html");
    CHECK_INT_EQ(score(MODEL3, &r), 87);
    /* The bounds: every weight at +-1000. */
    CHECK_INT_EQ(
        score("{\"version\": 1, \"bias\": 1000, \"features\": [" F("a", "true", "1000") "]}", &r),
        1);
    CHECK_INT_EQ(
        score("{\"version\": 1, \"bias\": -1000, \"features\": [" F("a", "true", "-1000") "]}", &r),
        99);
    /* Negative weights (evidence of a human) lower x. */
    CHECK_INT_EQ(
        score("{\"version\": 1, \"bias\": 0, \"features\": [" F("a", "true", "-2") "]}", &r), 87);
}

/* Missing is not zero: a feature on an absent header is unknown and adds
 * nothing, whichever way it is written. */
TEST(unknown_features_add_nothing)
{
    static const char model[] = "{\"version\": 1, \"bias\": 0, \"features\": [" F(
        "token", "http.request.headers[\\\"x-token\\\"][0] eq \\\"abc\\\"", "5") "]}";
    static const char negated[] = "{\"version\": 1, \"bias\": 0, \"features\": [" F(
        "token", "not (http.request.headers[\\\"x-token\\\"][0] eq \\\"abc\\\")", "5") "]}";
    struct req r;
    req_init(&r, "/");
    struct bw_bot_result res = score_with(model, &r, 0);
    CHECK_INT_EQ(res.outcome, BW_BOT_SCORED);
    CHECK_INT_EQ(res.u.scored.score, 50);
    CHECK_INT_EQ(res.u.scored.ntrue, 0);
    CHECK_INT_EQ(res.u.scored.nunknown, 1);
    CHECK_INT_EQ(score(negated, &r), 50);
    /* Present and equal: x = 5 -> 1 + round(98 * 0.006693) = 2. */
    req_header(&r, "X-Token", "abc");
    CHECK_INT_EQ(score(model, &r), 2);
    CHECK_INT_EQ(score(negated, &r), 50);
    /* Present and different: false, also 50, but not unknown. */
    req_init(&r, "/");
    req_header(&r, "x-token", "zzz");
    res = score_with(model, &r, 0);
    CHECK_INT_EQ(res.u.scored.score, 50);
    CHECK_INT_EQ(res.u.scored.nunknown, 0);
    CHECK_INT_EQ(score(negated, &r), 2);
    /* A request with no Host: http.host is unknown. */
    req_init(&r, "/");
    r.v.host.known = false;
    CHECK_INT_EQ(score("{\"version\": 1, \"bias\": 0, \"features\": [" F(
                           "h", "http.host eq \\\"\\\"", "3") "]}",
                       &r),
                 50);
}

TEST(regex_features_score)
{
    static const char model[] = "{\"version\": 1, \"bias\": 0, \"features\": [" F(
        "bot_ua", "http.user_agent matches r\\\"(?i)(bot|spider)/[0-9]\\\"",
        "5") "," F("py", "http.user_agent matches \\\"^python-requests\\\"", "-5") "]}";
    struct req r;
    req_init(&r, "/");
    req_header(&r, "User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1)");
    CHECK_INT_EQ(score(model, &r), 2);
    req_init(&r, "/");
    req_header(&r, "User-Agent", "python-requests/2.31");
    CHECK_INT_EQ(score(model, &r), 98); /* x = -5: 1 + round(98 * 0.993307) = 1 + 97 */
}

/* A request whose evaluation exceeds the per-request arena fails the score
 * (the caller's on_error applies); it never yields a partial sum. */
TEST(failure_when_the_request_arena_is_too_small)
{
    static const char model[] = "{\"version\": 1, \"bias\": 0, \"features\": [" F(
        "a", "lower(http.user_agent) contains \\\"curl\\\"", "-3") "]}";
    static char ua[8192];
    memset(ua, 'A', sizeof ua - 1);
    struct req r;
    req_init(&r, "/");
    req_header(&r, "User-Agent", ua);
    struct bw_bot_result res = score_with(model, &r, 4096);
    CHECK_INT_EQ(res.outcome, BW_BOT_FAILED);
    CHECK_INT_EQ(res.u.failed.reason, BW_BOT_FAIL_ARENA);
    CHECK(res.stats.arena_failures > 0);
    /* The same with room: scored (lower() of 8 KiB fits in 64 KiB). */
    res = score_with(model, &r, BW_BOT_REQUEST_ARENA_CAP);
    CHECK_INT_EQ(res.outcome, BW_BOT_SCORED);
    CHECK_INT_EQ(res.u.scored.score, 50);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(invalid_files_table);
    RUN(feature_count_at_and_past_max_features);
    RUN(outage_1_duplicated_rows);
    RUN(weights_and_bias_at_the_bound);
    RUN(name_length_at_and_past_the_limit);
    RUN(version_must_not_go_backwards);
    RUN(file_size_at_and_past_the_limit);
    RUN(report_is_bounded_and_terminated);
    RUN(load_file);
    RUN(score_formula);
    RUN(scores_by_hand);
    RUN(unknown_features_add_nothing);
    RUN(regex_features_score);
    RUN(failure_when_the_request_arena_is_too_small);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return t_done();
}
