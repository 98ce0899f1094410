/* The admin API's request handling (src/admin/admin_http.c, killswitch.c,
 * token.c) from raw request bytes to the serialized reply, with fake ops:
 * every endpoint, every refusal with its exact status and JSON error, the
 * bearer token, the killswitch body schema and target grammar, and every
 * limit at and just past it. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "test.h"

/* ---- fake ops ------------------------------------------------------------ */

struct fake {
    int status_calls, metrics_calls, reload_calls, ks_calls;
    bool fail;              /* every hook returns BW_ERR */
    bool partial_then_fail; /* appends, then fails */
    bool flood;             /* appends past the reply limit */
    enum bw_reload_outcome outcome;
    enum bw_killswitch_fault ks_fault;
    struct bw_killswitch_req last_ks;
    char ks_ruleset[256], ks_rule[256], ks_module[256], ks_target[512];
};

static struct fake fk;

static void copy_slice(char *dst, size_t cap, bw_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static bw_status doc(struct bw_textbuf *out, const char *text, bw_error *err)
{
    if (fk.partial_then_fail) {
        if (bw_textbuf_append_str(out, "{\"half\": ") != BW_OK)
            return bw_textbuf_error(out, err);
        return bw_error_set(err, "snapshot unavailable");
    }
    if (fk.flood) {
        char chunk[4096];
        memset(chunk, 'x', sizeof chunk);
        for (;;)
            if (bw_textbuf_append(out, chunk, sizeof chunk) != BW_OK)
                return bw_textbuf_error(out, err);
    }
    if (fk.fail)
        return bw_error_set(err, "snapshot unavailable");
    if (bw_textbuf_append_str(out, text) != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_status(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    fk.status_calls++;
    return doc(out, "{\"build\": \"test\"}\n", err);
}

static bw_status f_metrics(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    fk.metrics_calls++;
    return doc(out, "bulwark_up 1\n", err);
}

static bw_status f_reload(void *self, struct bw_textbuf *out, enum bw_reload_outcome *ret,
                          bw_error *err)
{
    (void)self;
    fk.reload_calls++;
    *ret = fk.outcome;
    return doc(out, "{\"accepted\": []}\n", err);
}

static bw_status f_killswitch(void *self, const struct bw_killswitch_req *k,
                              enum bw_killswitch_fault *ret_fault, bw_error *err)
{
    (void)self;
    fk.ks_calls++;
    fk.last_ks = *k;
    copy_slice(fk.ks_target, sizeof fk.ks_target, k->target);
    switch (k->kind) {
    case BW_KILLSWITCH_RULE:
        copy_slice(fk.ks_ruleset, sizeof fk.ks_ruleset, k->u.rule.ruleset);
        copy_slice(fk.ks_rule, sizeof fk.ks_rule, k->u.rule.rule);
        break;
    case BW_KILLSWITCH_RULESET:
        copy_slice(fk.ks_ruleset, sizeof fk.ks_ruleset, k->u.ruleset.ruleset);
        break;
    case BW_KILLSWITCH_MODULE:
        copy_slice(fk.ks_module, sizeof fk.ks_module, k->u.module.module);
        break;
    case BW_KILLSWITCH__COUNT:
        break;
    }
    if (fk.fail) {
        *ret_fault = fk.ks_fault;
        return bw_error_set(err, "no rule \"bots\" in ruleset \"entry\"");
    }
    return BW_OK;
}

static const struct bw_admin_ops fake_ops = {
    .self = &fk,
    .status_json = f_status,
    .metrics_text = f_metrics,
    .reload = f_reload,
    .killswitch = f_killswitch,
};

static struct bw_admin adm;

static void setup(void)
{
    memset(&fk, 0, sizeof fk);
    bw_admin_init(&adm, &fake_ops);
}

static bool setup_token(const char *tok)
{
    setup();
    bw_error err;
    return bw_admin_set_token(&adm, bw_slice_make(tok, strlen(tok)), &err) == BW_OK;
}

/* ---- driving the handler from bytes ------------------------------------- */

struct res {
    enum bw_admin_feed_result feed;
    unsigned status;
    char *wire; /* NUL-terminated copy of the serialized reply */
    size_t wire_len;
    const char *body;
};

static struct res R;

static void res_clear(void)
{
    free(R.wire);
    memset(&R, 0, sizeof R);
}

/* Feeds raw[0..len) in one piece (an exact-size heap copy, so ASan sees any
 * read past it) and serializes the reply. */
static enum bw_admin_feed_result feed_bytes(const char *raw, size_t len)
{
    res_clear();
    char *copy = malloc(len ? len : 1);
    memcpy(copy, raw, len);
    struct bw_admin_parse p;
    bw_admin_parse_init(&p);
    struct bw_admin_reply reply;
    bw_admin_reply_init(&reply);
    R.feed = bw_admin_feed(&adm, &p, copy, len, &reply);
    if (R.feed == BW_ADMIN_FEED_REPLY) {
        struct bw_textbuf wire;
        bw_textbuf_init(&wire, (size_t)64 << 20);
        if (bw_admin_reply_serialize(&reply, &wire) == BW_OK) {
            R.wire = malloc(wire.len + 1);
            memcpy(R.wire, wire.ptr, wire.len);
            R.wire[wire.len] = '\0';
            R.wire_len = wire.len;
            R.status = (unsigned)reply.status;
            const char *b = strstr(R.wire, "\r\n\r\n");
            R.body = b ? b + 4 : "";
        }
        bw_textbuf_done(&wire);
    }
    bw_admin_reply_done(&reply);
    free(copy);
    return R.feed;
}

static enum bw_admin_feed_result feed_str(const char *raw)
{
    return feed_bytes(raw, strlen(raw));
}

/* A request with Host and, for a body, Content-Length; extra is more field
 * lines, each ending in CRLF. */
static enum bw_admin_feed_result request(const char *method, const char *path, const char *extra,
                                         const char *body)
{
    char buf[1 << 17];
    size_t blen = body ? strlen(body) : 0;
    int n;
    if (body)
        n = snprintf(buf, sizeof buf,
                     "%s %s HTTP/1.1\r\nHost: admin\r\n%sContent-Length: %zu\r\n\r\n%s", method,
                     path, extra, blen, body);
    else
        n = snprintf(buf, sizeof buf, "%s %s HTTP/1.1\r\nHost: admin\r\n%s\r\n", method, path,
                     extra);
    return feed_bytes(buf, (size_t)n);
}

static bool has_field(const char *line)
{
    const char *end = strstr(R.wire, "\r\n\r\n");
    const char *p = strstr(R.wire, line);
    return p && end && p < end && p[-1] == '\n' && p[strlen(line)] == '\r';
}

#define CHECK_REPLY(st, body_text)                                                                 \
    do {                                                                                           \
        CHECK_INT_EQ(R.feed, BW_ADMIN_FEED_REPLY);                                                 \
        CHECK_INT_EQ(R.status, (st));                                                              \
        CHECK_STR_EQ(R.body, (body_text));                                                         \
    } while (0)

#define CHECK_ERROR(st, sentence) CHECK_REPLY(st, "{\"error\": \"" sentence "\"}\n")

/* ---- endpoints ----------------------------------------------------------- */

TEST(status_get)
{
    setup();
    request("GET", "/status", "", NULL);
    CHECK_REPLY(200, "{\"build\": \"test\"}\n");
    CHECK_INT_EQ(fk.status_calls, 1);
    CHECK_STR_EQ(R.wire, "HTTP/1.1 200 OK\r\n"
                         "Content-Type: application/json\r\n"
                         "Content-Length: 18\r\n"
                         "Cache-Control: no-store\r\n"
                         "Connection: close\r\n"
                         "\r\n"
                         "{\"build\": \"test\"}\n");
}

TEST(status_query_ignored_and_http10)
{
    setup();
    request("GET", "/status?verbose=1", "", NULL);
    CHECK_REPLY(200, "{\"build\": \"test\"}\n");
    feed_str("GET /status HTTP/1.0\r\n\r\n");
    CHECK_REPLY(200, "{\"build\": \"test\"}\n");
    CHECK(strncmp(R.wire, "HTTP/1.1 200 OK\r\n", 17) == 0);
}

TEST(status_head_has_length_no_body)
{
    setup();
    request("HEAD", "/status", "", NULL);
    CHECK_REPLY(200, "");
    CHECK(has_field("Content-Length: 18"));
}

TEST(metrics_get)
{
    setup();
    request("GET", "/metrics", "", NULL);
    CHECK_REPLY(200, "bulwark_up 1\n");
    CHECK(has_field("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    CHECK_INT_EQ(fk.metrics_calls, 1);
}

TEST(document_hook_failure_is_500_without_partial_output)
{
    setup();
    fk.partial_then_fail = true;
    request("GET", "/status", "", NULL);
    CHECK_ERROR(500, "snapshot unavailable");
    fk.partial_then_fail = false;
    fk.fail = true;
    request("GET", "/metrics", "", NULL);
    CHECK_ERROR(500, "snapshot unavailable");
    CHECK(has_field("Content-Type: application/json"));
}

TEST(document_over_reply_limit_is_500)
{
    setup();
    fk.flood = true;
    request("GET", "/metrics", "", NULL);
    CHECK_ERROR(500, "output would exceed its limit of 16777216 bytes");
}

TEST(reload_outcomes)
{
    setup();
    fk.outcome = BW_RELOAD_ALL_ACCEPTED;
    request("POST", "/reload", "", NULL);
    CHECK_REPLY(200, "{\"accepted\": []}\n");
    fk.outcome = BW_RELOAD_SOME_REJECTED;
    request("POST", "/reload", "", "");
    CHECK_REPLY(422, "{\"accepted\": []}\n");
    CHECK(strncmp(R.wire, "HTTP/1.1 422 Unprocessable Content\r\n", 36) == 0);
    fk.fail = true;
    request("POST", "/reload", "", NULL);
    CHECK_ERROR(500, "snapshot unavailable");
    CHECK_INT_EQ(fk.reload_calls, 3);
}

TEST(killswitch_rule)
{
    setup();
    request("POST", "/killswitch", "", "{\"target\": \"rule:entry/bots\", \"enabled\": false}");
    CHECK_REPLY(200, "{\"target\": \"rule:entry/bots\", \"enabled\": false}\n");
    CHECK_INT_EQ(fk.ks_calls, 1);
    CHECK_INT_EQ(fk.last_ks.kind, BW_KILLSWITCH_RULE);
    CHECK(!fk.last_ks.enabled);
    CHECK_STR_EQ(fk.ks_ruleset, "entry");
    CHECK_STR_EQ(fk.ks_rule, "bots");
    CHECK_STR_EQ(fk.ks_target, "rule:entry/bots");
}

TEST(killswitch_ruleset_and_module)
{
    setup();
    request("POST", "/killswitch", "", "{\"enabled\": true, \"target\": \"ruleset:managed\"}");
    CHECK_REPLY(200, "{\"target\": \"ruleset:managed\", \"enabled\": true}\n");
    CHECK_INT_EQ(fk.last_ks.kind, BW_KILLSWITCH_RULESET);
    CHECK(fk.last_ks.enabled);
    CHECK_STR_EQ(fk.ks_ruleset, "managed");
    /* JSON escapes in the target decode before the grammar sees them. */
    request("POST", "/killswitch", "",
            "  {\"target\":\"module:bot\\u005fscore\",\"enabled\":false}  \n");
    CHECK_REPLY(200, "{\"target\": \"module:bot_score\", \"enabled\": false}\n");
    CHECK_INT_EQ(fk.last_ks.kind, BW_KILLSWITCH_MODULE);
    CHECK_STR_EQ(fk.ks_module, "bot_score");
}

TEST(killswitch_hook_faults)
{
    setup();
    fk.fail = true;
    fk.ks_fault = BW_KILLSWITCH_FAULT_UNKNOWN_TARGET;
    request("POST", "/killswitch", "", "{\"target\": \"rule:entry/bots\", \"enabled\": false}");
    CHECK_ERROR(400, "no rule \\\"bots\\\" in ruleset \\\"entry\\\"");
    fk.ks_fault = BW_KILLSWITCH_FAULT_INTERNAL;
    request("POST", "/killswitch", "", "{\"target\": \"rule:entry/bots\", \"enabled\": false}");
    CHECK_ERROR(500, "no rule \\\"bots\\\" in ruleset \\\"entry\\\"");
}

/* ---- routing and methods ------------------------------------------------- */

TEST(unknown_paths_404)
{
    setup();
    const char *paths[] = {"/",        "/status/",      "/STATUS", "/statu", "/statusx",
                           "//status", "/killswitch/x", "/admin",  "*"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        request(strcmp(paths[i], "*") == 0 ? "OPTIONS" : "GET", paths[i], "", NULL);
        CHECK_ERROR(404, "not found: the admin API serves /status, /metrics, /reload and "
                         "/killswitch");
    }
    request("POST", "/nope", "", "{}");
    CHECK_INT_EQ(R.status, 404);
    CHECK_INT_EQ(fk.status_calls + fk.metrics_calls + fk.reload_calls + fk.ks_calls, 0);
}

TEST(wrong_method_405_with_allow)
{
    setup();
    const char *get_paths[] = {"/status", "/metrics"};
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"};
    for (size_t i = 0; i < 2; i++)
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            request(methods[m], get_paths[i], "", NULL);
            CHECK_ERROR(405, "method not allowed: use GET");
            CHECK(has_field("Allow: GET, HEAD"));
        }
    const char *post_paths[] = {"/reload", "/killswitch"};
    const char *methods2[] = {"GET", "HEAD", "PUT", "DELETE"};
    for (size_t i = 0; i < 2; i++)
        for (size_t m = 0; m < sizeof methods2 / sizeof methods2[0]; m++) {
            request(methods2[m], post_paths[i], "", NULL);
            CHECK_INT_EQ(R.status, 405);
            CHECK(has_field("Allow: POST"));
        }
    request("GET", "/reload", "", NULL);
    CHECK_ERROR(405, "method not allowed: use POST");
    /* The answer to HEAD never has content, whatever its status. */
    request("HEAD", "/killswitch", "", NULL);
    CHECK_REPLY(405, "");
    CHECK(has_field("Content-Length: 42"));
    request("HEAD", "/nope", "", NULL);
    CHECK_REPLY(404, "");
    CHECK_INT_EQ(fk.status_calls + fk.metrics_calls + fk.reload_calls + fk.ks_calls, 0);
}

/* ---- the token ----------------------------------------------------------- */

#define TOKEN "s3cr3t-Token_value"
#define KS_BODY "{\"target\": \"module:bot_score\", \"enabled\": false}"

TEST(token_missing_wrong_right)
{
    CHECK(setup_token(TOKEN));
    request("POST", "/killswitch", "", KS_BODY);
    CHECK_ERROR(401, "this call needs the admin token: Authorization: Bearer <token>");
    CHECK(has_field("WWW-Authenticate: Bearer"));
    request("POST", "/reload", "Authorization: Bearer wrong-token-value!\r\n", NULL);
    CHECK_ERROR(401, "the admin token is wrong");
    CHECK(has_field("WWW-Authenticate: Bearer"));
    CHECK_INT_EQ(fk.ks_calls + fk.reload_calls, 0);
    request("POST", "/killswitch", "Authorization: Bearer " TOKEN "\r\n", KS_BODY);
    CHECK_INT_EQ(R.status, 200);
    request("POST", "/reload", "authorization: bEaReR   " TOKEN "\r\n", NULL);
    CHECK_INT_EQ(R.status, 200);
    CHECK_INT_EQ(fk.ks_calls + fk.reload_calls, 2);
}

TEST(token_wrong_length_and_scheme)
{
    CHECK(setup_token(TOKEN));
    const char *bad[] = {
        "Authorization: Bearer " TOKEN "x\r\n",        /* one byte longer */
        "Authorization: Bearer s3cr3t-Token_valu\r\n", /* one byte shorter */
        "Authorization: Bearer s\r\n",
        "Authorization: Bearer\r\n",
        "Authorization: Bearer \r\n",
        "Authorization: Basic " TOKEN "\r\n",
        "Authorization: Bearer" TOKEN "\r\n",
        "Authorization: " TOKEN "\r\n",
        "Authorization: Bearer S3CR3T-TOKEN_VALUE\r\n", /* the token is case-sensitive */
        "Authorization:\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request("POST", "/reload", bad[i], NULL);
        if (R.status != 401)
            T_FAILF("case %zu: status %u", i, R.status);
        CHECK_INT_EQ(R.status, 401);
    }
    /* A token of the maximal length, and presented ones past it. */
    char tok[BW_ADMIN_TOKEN_MAX + 2];
    memset(tok, 'k', sizeof tok);
    tok[BW_ADMIN_TOKEN_MAX] = '\0';
    CHECK(setup_token(tok));
    char field[600];
    snprintf(field, sizeof field, "Authorization: Bearer %s\r\n", tok);
    request("POST", "/reload", field, NULL);
    CHECK_INT_EQ(R.status, 200);
    tok[BW_ADMIN_TOKEN_MAX] = 'k';
    tok[BW_ADMIN_TOKEN_MAX + 1] = '\0';
    snprintf(field, sizeof field, "Authorization: Bearer %s\r\n", tok);
    request("POST", "/reload", field, NULL);
    CHECK_INT_EQ(R.status, 401);
    CHECK_INT_EQ(fk.reload_calls, 1);
}

TEST(token_two_fields_refused)
{
    CHECK(setup_token(TOKEN));
    request("POST", "/reload",
            "Authorization: Bearer " TOKEN "\r\nAuthorization: Bearer " TOKEN "\r\n", NULL);
    CHECK_ERROR(400, "more than one Authorization field");
    CHECK_INT_EQ(fk.reload_calls, 0);
}

TEST(token_gets_stay_open)
{
    CHECK(setup_token(TOKEN));
    request("GET", "/status", "", NULL);
    CHECK_INT_EQ(R.status, 200);
    request("GET", "/metrics", "Authorization: Bearer wrong\r\n", NULL);
    CHECK_INT_EQ(R.status, 200);
}

TEST(token_checked_before_body)
{
    /* An unauthenticated client cannot learn about, or make us read, a
     * body: 401 comes from the head alone. */
    CHECK(setup_token(TOKEN));
    feed_str("POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n");
    CHECK_INT_EQ(R.status, 401);
    feed_str("POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
    CHECK_INT_EQ(R.status, 401);
}

TEST(token_set_rules)
{
    setup();
    bw_error err;
    CHECK(bw_admin_set_token(&adm, BW_SLICE_EMPTY, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "the admin token is empty");
    CHECK(bw_admin_set_token(&adm, BW_SLICE_LIT("a b"), &err) == BW_ERR);
    CHECK(bw_admin_set_token(&adm, BW_SLICE_LIT("ab\x01"), &err) == BW_ERR);
    CHECK(bw_admin_set_token(&adm, BW_SLICE_LIT("ab\xc3\xa9"), &err) == BW_ERR);
    char tok[BW_ADMIN_TOKEN_MAX + 1];
    memset(tok, 'z', sizeof tok);
    CHECK(bw_admin_set_token(&adm, bw_slice_make(tok, BW_ADMIN_TOKEN_MAX), &err) == BW_OK);
    CHECK(bw_admin_set_token(&adm, bw_slice_make(tok, BW_ADMIN_TOKEN_MAX + 1), &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "the admin token is longer than 256 bytes");
    CHECK(!adm.has_token == false);
}

static char tmpdir[64];

static bool write_file(const char *name, const char *data, size_t len, mode_t mode, char *path)
{
    snprintf(path, 256, "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return false;
    bool ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    return ok && chmod(path, mode) == 0;
}

TEST(token_file)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bw-admin-test-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    char path[256];
    bw_error err;
    setup();
    CHECK(write_file("t1", "abc\n", 4, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_OK);
    CHECK_INT_EQ(adm.token_len, 3);
    CHECK(bw_admin_authorized(&adm, BW_SLICE_LIT("Bearer abc")));
    CHECK(!bw_admin_authorized(&adm, BW_SLICE_LIT("Bearer abc\n")));
    setup();
    CHECK(write_file("t2", "abc\r\n", 5, 0640, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_OK);
    CHECK_INT_EQ(adm.token_len, 3);
    setup();
    CHECK(write_file("t3", "abc", 3, 0400, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_OK);
    CHECK_INT_EQ(adm.token_len, 3);
    /* Only one newline is trimmed; the second is refused as a byte. */
    setup();
    CHECK(write_file("t4", "abc\n\n", 5, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(!adm.has_token);
    CHECK(write_file("t5", "", 0, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(strstr(err.msg, "the admin token is empty") != NULL);
    CHECK(write_file("t6", "\n", 1, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(write_file("t7", "abc\n", 4, 0644, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(strstr(err.msg, "mode 644 lets others read or change it; chmod 600 it") != NULL);
    CHECK(write_file("t8", "abc\n", 4, 0620, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(bw_admin_load_token(&adm, tmpdir, &err) == BW_ERR);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    snprintf(path, sizeof path, "%s/none", tmpdir);
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    /* At the length limit (with and without a newline) and past it. */
    char big[BW_ADMIN_TOKEN_MAX + 3];
    memset(big, 'q', sizeof big);
    CHECK(write_file("t9", big, BW_ADMIN_TOKEN_MAX, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_OK);
    big[BW_ADMIN_TOKEN_MAX] = '\r';
    big[BW_ADMIN_TOKEN_MAX + 1] = '\n';
    CHECK(write_file("t10", big, BW_ADMIN_TOKEN_MAX + 2, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_OK);
    CHECK_INT_EQ(adm.token_len, BW_ADMIN_TOKEN_MAX);
    memset(big, 'q', sizeof big);
    setup();
    CHECK(write_file("t11", big, BW_ADMIN_TOKEN_MAX + 1, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(strstr(err.msg, "longer than 256 bytes") != NULL);
    CHECK(write_file("t12", big, sizeof big, 0600, path));
    CHECK(bw_admin_load_token(&adm, path, &err) == BW_ERR);
    CHECK(!adm.has_token);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

/* ---- bodies and limits --------------------------------------------------- */

TEST(killswitch_body_errors)
{
    setup();
    static const struct {
        const char *body;
        const char *error;
    } cases[] = {
        {"",
         "request body is empty: expected a JSON object with \\\"target\\\" and \\\"enabled\\\""},
        {"[]", "request body must be a JSON object with \\\"target\\\" and \\\"enabled\\\""},
        {"[{\"target\": \"module:a\", \"enabled\": false}]",
         "request body must be a JSON object with \\\"target\\\" and \\\"enabled\\\""},
        {"{\"target\": \"module:a\"}", "missing key \\\"enabled\\\""},
        {"{\"enabled\": false}", "missing key \\\"target\\\""},
        {"{}", "missing key \\\"target\\\""},
        {"{\"target\": 7, \"enabled\": false}", "\\\"target\\\" must be a string"},
        {"{\"target\": null, \"enabled\": false}", "\\\"target\\\" must be a string"},
        {"{\"target\": [\"module:a\"], \"enabled\": false}", "\\\"target\\\" must be a string"},
        {"{\"target\": \"module:a\", \"enabled\": \"false\"}",
         "\\\"enabled\\\" must be true or false"},
        {"{\"target\": \"module:a\", \"enabled\": 0}", "\\\"enabled\\\" must be true or false"},
        {"{\"target\": \"module:a\", \"enabled\": null}", "\\\"enabled\\\" must be true or false"},
        {"{\"target\": \"module:a\", \"enabled\": false, \"why\": \"x\"}",
         "unknown key \\\"why\\\": the body takes only \\\"target\\\" and \\\"enabled\\\""},
        {"{\"Target\": \"module:a\", \"enabled\": false}",
         "unknown key \\\"Target\\\": the body takes only \\\"target\\\" and \\\"enabled\\\""},
        {"{\"target\": \"module:a\", \"enabled\": false, \"\\u00e9\\n\": 1}",
         "unknown key \\\"\xc3\xa9\\n\\\": the body takes only \\\"target\\\" and \\\"enabled\\\""},
        {"{\"target\": \"module:bot\", \"enabled\": true}x", NULL},
        {"{\"target\": \"module:a\", \"target\": \"module:b\", \"enabled\": false}", NULL},
        {"{\"target\": \"module:a\", \"enabled\": fals}", NULL},
        {"{'target': 'module:a', 'enabled': false}", NULL},
        {"{\"target\": \"module:a\\u0000\", \"enabled\": false}", NULL},
        {"\"module:a\"", NULL},
        {"true", NULL},
        {"{\"target\": \"module:\xff\", \"enabled\": false}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        request("POST", "/killswitch", "", cases[i].body);
        if (R.status != 400)
            T_FAILF("case %zu: status %u", i, R.status);
        CHECK_INT_EQ(R.status, 400);
        if (cases[i].error) {
            char want[512];
            snprintf(want, sizeof want, "{\"error\": \"%s\"}\n", cases[i].error);
            if (strcmp(R.body, want) != 0)
                T_FAILF("case %zu", i);
            CHECK_STR_EQ(R.body, want);
        } else if (strncmp(R.body, "{\"error\": \"request body is not valid JSON: ", 43) != 0) {
            T_FAILF("case %zu: %s", i, R.body);
            return;
        }
    }
    CHECK_INT_EQ(fk.ks_calls, 0);
}

TEST(body_limit_at_and_past)
{
    setup();
    /* A body of exactly BW_ADMIN_MAX_BODY bytes is read and parsed: valid
     * JSON padded with spaces to the limit. */
    size_t n = BW_ADMIN_MAX_BODY;
    char *body = malloc(n + 2);
    const char *json = KS_BODY;
    memset(body, ' ', n + 1);
    memcpy(body, json, strlen(json));
    body[n] = '\0';
    request("POST", "/killswitch", "", body);
    CHECK_REPLY(200, "{\"target\": \"module:bot_score\", \"enabled\": false}\n");
    body[n] = ' ';
    body[n + 1] = '\0';
    request("POST", "/killswitch", "", body);
    CHECK_ERROR(413, "request body larger than 65536 bytes");
    CHECK_INT_EQ(fk.ks_calls, 1);
    free(body);
    body = NULL;
    /* The 413 comes from the head alone: no body needed. */
    feed_str("POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n");
    CHECK_ERROR(413, "request body larger than 65536 bytes");
    feed_str("POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999\r\n\r\n");
    CHECK_INT_EQ(R.status, 413);
}

TEST(chunked_refused_411)
{
    setup();
    feed_str("POST /killswitch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
             "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    CHECK_ERROR(411, "a chunked request body is not accepted: send Content-Length");
}

TEST(body_waits_for_content_length)
{
    setup();
    const char *raw = "POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: 48\r\n\r\n" KS_BODY;
    size_t len = strlen(raw);
    CHECK_INT_EQ(strlen(KS_BODY), 48);
    /* Every prefix short of the body is MORE; the whole is the reply. */
    for (size_t i = 0; i < len; i++)
        CHECK_INT_EQ(feed_bytes(raw, i), BW_ADMIN_FEED_MORE);
    CHECK_INT_EQ(feed_bytes(raw, len), BW_ADMIN_FEED_REPLY);
    CHECK_INT_EQ(R.status, 200);
    /* Pipelined bytes after the request are ignored. */
    char more[512];
    snprintf(more, sizeof more, "%sGET /status HTTP/1.1\r\n\r\n", raw);
    feed_str(more);
    CHECK_INT_EQ(R.status, 200);
    CHECK_INT_EQ(fk.status_calls, 0);
}

TEST(incremental_feed_and_moving_buffer)
{
    setup();
    const char *raw = "POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: 48\r\n\r\n" KS_BODY;
    size_t len = strlen(raw);
    struct bw_admin_parse p;
    bw_admin_parse_init(&p);
    struct bw_admin_reply reply;
    bw_admin_reply_init(&reply);
    CHECK_INT_EQ(bw_admin_feed_want(&p), BW_ADMIN_HEAD_BYTES);
    enum bw_admin_feed_result r = BW_ADMIN_FEED_MORE;
    char *prev = NULL;
    size_t i;
    /* One byte at a time, each time in a fresh buffer (as after a
     * realloc): the head's slices must follow. */
    for (i = 1; i <= len && r == BW_ADMIN_FEED_MORE; i++) {
        char *b = malloc(i);
        memcpy(b, raw, i);
        r = bw_admin_feed(&adm, &p, b, i, &reply);
        free(prev);
        prev = b;
        if (p.head_done)
            CHECK_INT_EQ(bw_admin_feed_want(&p), len);
    }
    free(prev);
    CHECK_INT_EQ(r, BW_ADMIN_FEED_REPLY);
    CHECK_INT_EQ(i - 1, len);
    CHECK_INT_EQ(reply.status, 200);
    CHECK_STR_EQ(fk.ks_module, "bot_score");
    bw_admin_reply_done(&reply);
}

TEST(expect_continue_once)
{
    setup();
    const char *head = "POST /killswitch HTTP/1.1\r\nHost: a\r\nExpect: "
                       "100-continue\r\nContent-Length: 48\r\n\r\n";
    char raw[512];
    snprintf(raw, sizeof raw, "%s%s", head, KS_BODY);
    struct bw_admin_parse p;
    bw_admin_parse_init(&p);
    struct bw_admin_reply reply;
    bw_admin_reply_init(&reply);
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, raw, strlen(head), &reply), BW_ADMIN_FEED_CONTINUE);
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, raw, strlen(head) + 3, &reply), BW_ADMIN_FEED_MORE);
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, raw, strlen(raw), &reply), BW_ADMIN_FEED_REPLY);
    CHECK_INT_EQ(reply.status, 200);
    bw_admin_reply_done(&reply);
    /* Never to HTTP/1.0; and not when the body is there already. */
    bw_admin_parse_init(&p);
    bw_admin_reply_init(&reply);
    const char *h10 = "POST /reload HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, h10, strlen(h10), &reply), BW_ADMIN_FEED_MORE);
    bw_admin_reply_done(&reply);
    bw_admin_parse_init(&p);
    bw_admin_reply_init(&reply);
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, raw, strlen(raw), &reply), BW_ADMIN_FEED_REPLY);
    bw_admin_reply_done(&reply);
    /* A refused request gets its refusal, not a 100. */
    CHECK(setup_token(TOKEN));
    bw_admin_parse_init(&p);
    bw_admin_reply_init(&reply);
    CHECK_INT_EQ(bw_admin_feed(&adm, &p, raw, strlen(head), &reply), BW_ADMIN_FEED_REPLY);
    CHECK_INT_EQ(reply.status, 401);
    bw_admin_reply_done(&reply);
}

/* A GET /status head padded by an X-Pad field to exactly total bytes. */
static char *padded_head(size_t total)
{
    const char *start = "GET /status HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const char *end = "\r\n\r\n";
    size_t fixed = strlen(start) + strlen(end);
    char *h = malloc(total + 1);
    memcpy(h, start, strlen(start));
    memset(h + strlen(start), 'p', total - fixed);
    memcpy(h + total - strlen(end), end, strlen(end) + 1);
    return h;
}

TEST(head_limits_at_and_past)
{
    setup();
    char *h = padded_head(BW_ADMIN_HEAD_BYTES);
    CHECK_INT_EQ(strlen(h), BW_ADMIN_HEAD_BYTES);
    feed_str(h);
    CHECK_INT_EQ(R.status, 200);
    free(h);
    h = padded_head(BW_ADMIN_HEAD_BYTES + 1);
    feed_str(h);
    CHECK_ERROR(431, "request head too large");
    free(h);

    /* Header count: Host plus 31 more is the limit. */
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET /status HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 1; i < BW_ADMIN_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-H%zu: v\r\n", i);
    snprintf(buf + n, sizeof buf - n, "\r\n");
    feed_str(buf);
    CHECK_INT_EQ(R.status, 200);
    snprintf(buf + n, sizeof buf - n, "X-One-More: v\r\n\r\n");
    feed_str(buf);
    CHECK_ERROR(431, "too many header fields");

    /* Request line: 2048 bytes with its CRLF is the limit. */
    char line[BW_ADMIN_REQUEST_LINE_BYTES + 64];
    size_t qlen = BW_ADMIN_REQUEST_LINE_BYTES - strlen("GET /status? HTTP/1.1\r\n");
    memcpy(line, "GET /status?", 12);
    memset(line + 12, 'q', qlen);
    snprintf(line + 12 + qlen, sizeof line - 12 - qlen, " HTTP/1.1\r\nHost: a\r\n\r\n");
    feed_str(line);
    CHECK_INT_EQ(R.status, 200);
    memset(line + 12, 'q', qlen + 1);
    snprintf(line + 13 + qlen, sizeof line - 13 - qlen, " HTTP/1.1\r\nHost: a\r\n\r\n");
    feed_str(line);
    CHECK_ERROR(414, "request line too long");
}

TEST(malformed_heads)
{
    setup();
    feed_str("GET /status HTTP/1.1\nHost: a\n\n");
    CHECK_ERROR(400, "bare LF");
    feed_str("GET /status HTTP/1.1\r\n\r\n");
    CHECK_INT_EQ(R.status, 400); /* HTTP/1.1 without Host */
    feed_str("GET /status HTTP/2.0\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(R.status, 505);
    feed_str("\x01\x02\x03\r\n\r\n");
    CHECK_INT_EQ(R.status, 400);
    CHECK(strncmp(R.body, "{\"error\": \"", 11) == 0);
    feed_str("POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    CHECK_INT_EQ(R.status, 400);
    CHECK_INT_EQ(feed_str("GET /status HTTP/1.1\r\nHost: a\r\n"), BW_ADMIN_FEED_MORE);
}

/* ---- the target grammar --------------------------------------------------- */

TEST(target_grammar_table)
{
    char id128[BW_ADMIN_ID_MAX + 1], id129[BW_ADMIN_ID_MAX + 2];
    memset(id128, 'a', BW_ADMIN_ID_MAX);
    id128[BW_ADMIN_ID_MAX] = '\0';
    memset(id129, 'b', BW_ADMIN_ID_MAX + 1);
    id129[BW_ADMIN_ID_MAX + 1] = '\0';
    char t[600];
    struct {
        char text[600];
        bool ok;
    } cases[32];
    size_t n = 0;
#define ADD(ok_, ...)                                                                              \
    do {                                                                                           \
        snprintf(cases[n].text, sizeof cases[n].text, __VA_ARGS__);                                \
        cases[n++].ok = (ok_);                                                                     \
    } while (0)
    ADD(true, "rule:entry/bots");
    ADD(true, "ruleset:managed");
    ADD(true, "module:bot_score");
    ADD(true, "rule:A-Z.a_z-0.9/x");
    ADD(true, "rule:%s/%s", id128, id128);
    ADD(true, "ruleset:%s", id128);
    ADD(true, "module:%s", id128);
    ADD(false, "rule:%s/x", id129);
    ADD(false, "rule:x/%s", id129);
    ADD(false, "ruleset:%s", id129);
    ADD(false, "module:%s", id129);
    ADD(false, "rule:entry");
    ADD(false, "rule:/bots");
    ADD(false, "rule:entry/");
    ADD(false, "rule:entry/bots/x");
    ADD(false, "rule:");
    ADD(false, "ruleset:");
    ADD(false, "module:");
    ADD(false, "ruleset:a/b");
    ADD(false, "module:bot score");
    ADD(false, "Rule:entry/bots");
    ADD(false, "rules:entry");
    ADD(false, "entry/bots");
    ADD(false, "%s", "");
    ADD(false, ":x");
    ADD(false, "module :x");
    ADD(false, "module:x\n");
    ADD(false, "module:\xc3\xa9");
#undef ADD
    for (size_t i = 0; i < n; i++) {
        struct bw_killswitch_req k;
        bw_error err;
        bw_status st = bw_killswitch_parse_target(
            bw_slice_make(cases[i].text, strlen(cases[i].text)), &k, &err);
        if ((st == BW_OK) != cases[i].ok)
            T_FAILF("case %zu \"%s\": got %s (%s)", i, cases[i].text, st == BW_OK ? "ok" : "error",
                    st == BW_OK ? "" : err.msg);
        CHECK((st == BW_OK) == cases[i].ok);
    }
    /* Exact sentences, and how a long target is quoted (cut, with "..."). */
    struct bw_killswitch_req k;
    bw_error err;
    CHECK(bw_killswitch_parse_target(BW_SLICE_LIT("rule:entry"), &k, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "target \"rule:entry\": a rule is named rule:<ruleset>/<rule>");
    CHECK(bw_killswitch_parse_target(BW_SLICE_LIT("rule:entry/b@d"), &k, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg,
                 "target \"rule:entry/b@d\": the rule id must be 1 to 128 characters of A-Z a-z "
                 "0-9 _ . -");
    CHECK(bw_killswitch_parse_target(BW_SLICE_LIT("x"), &k, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "target \"x\" must be rule:<ruleset>/<rule>, ruleset:<ruleset> or "
                          "module:<module>");
    snprintf(t, sizeof t, "module:%s", id129);
    CHECK(bw_killswitch_parse_target(bw_slice_make(t, strlen(t)), &k, &err) == BW_ERR);
    char want[512];
    snprintf(want, sizeof want,
             "target \"module:%.73s...\": the module id must be 1 to 128 characters of A-Z a-z "
             "0-9 _ . -",
             id129);
    CHECK_STR_EQ(err.msg, want);
    /* Through the endpoint. */
    setup();
    request("POST", "/killswitch", "", "{\"target\": \"rule:entry\", \"enabled\": false}");
    CHECK_ERROR(400, "target \\\"rule:entry\\\": a rule is named rule:<ruleset>/<rule>");
    CHECK_INT_EQ(fk.ks_calls, 0);
}

TEST(reply_error_escapes_json)
{
    struct bw_admin_reply r;
    bw_admin_reply_init(&r);
    bw_admin_reply_error(&r, 400, "q\"b\\n\nt\tc\x01 \xc3\xa9 \xff \xe2\x82 end");
    char *s = malloc(r.body.len + 1);
    memcpy(s, r.body.ptr, r.body.len);
    s[r.body.len] = '\0';
    CHECK_STR_EQ(s, "{\"error\": \"q\\\"b\\\\n\\nt\\u0009c\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd "
                    "end\"}\n");
    free(s);
    bw_admin_reply_done(&r);
}

int main(void)
{
    RUN(status_get);
    RUN(status_query_ignored_and_http10);
    RUN(status_head_has_length_no_body);
    RUN(metrics_get);
    RUN(document_hook_failure_is_500_without_partial_output);
    RUN(document_over_reply_limit_is_500);
    RUN(reload_outcomes);
    RUN(killswitch_rule);
    RUN(killswitch_ruleset_and_module);
    RUN(killswitch_hook_faults);
    RUN(unknown_paths_404);
    RUN(wrong_method_405_with_allow);
    RUN(token_missing_wrong_right);
    RUN(token_wrong_length_and_scheme);
    RUN(token_two_fields_refused);
    RUN(token_gets_stay_open);
    RUN(token_checked_before_body);
    RUN(token_set_rules);
    RUN(token_file);
    RUN(killswitch_body_errors);
    RUN(body_limit_at_and_past);
    RUN(chunked_refused_411);
    RUN(body_waits_for_content_length);
    RUN(incremental_feed_and_moving_buffer);
    RUN(expect_continue_once);
    RUN(head_limits_at_and_past);
    RUN(malformed_heads);
    RUN(target_grammar_table);
    RUN(reply_error_escapes_json);
    res_clear();
    return t_done();
}
