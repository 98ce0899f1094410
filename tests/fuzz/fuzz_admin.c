/* Fuzzes the admin API's request handling (src/admin/) with fake ops.
 * Input: byte 0 = flags, byte 1 = split position, the rest = payload.
 *   flags & 1: the payload is a POST /killswitch body (bw_killswitch_parse_body
 *              directly, then wrapped in a request and fed);
 *              otherwise the payload is raw request bytes fed to bw_admin_feed.
 *   flags & 2: a token is configured ("fuzz-token").
 * Invariants, not just survival:
 *   - feeding the bytes at once, or a prefix then the whole in a moved buffer,
 *     gives the same outcome, status and reply bytes;
 *   - the status is one the API documents; every error body is a JSON object
 *     with exactly one key, "error", a string; a killswitch answer is JSON;
 *   - a parsed killswitch has ids of the documented grammar, inside the
 *     target, and re-parsing its target gives the same;
 *   - the serialized reply has a Content-Length equal to its body's length.
 * Each call gets an exact-size copy so ASan flags any read past the end. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"

static bw_status f_status(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    if (bw_textbuf_append_str(out, "{\"build\": \"fuzz\"}\n") != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_metrics(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    if (bw_textbuf_append_str(out, "bulwark_up 1\n") != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_reload(void *self, struct bw_textbuf *out, enum bw_reload_outcome *ret,
                          bw_error *err)
{
    (void)self;
    *ret = BW_RELOAD_SOME_REJECTED;
    if (bw_textbuf_append_str(out, "{\"rejected\": []}\n") != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bool id_ok(bw_slice id)
{
    if (id.len < 1 || id.len > BW_ADMIN_ID_MAX)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        char c = id.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool within(bw_slice outer, bw_slice s)
{
    return s.ptr >= outer.ptr && s.ptr + s.len <= outer.ptr + outer.len;
}

static void check_killswitch(const struct bw_killswitch_req *k)
{
    switch (k->kind) {
    case BW_KILLSWITCH_RULE:
        if (!id_ok(k->u.rule.ruleset) || !id_ok(k->u.rule.rule) ||
            !within(k->target, k->u.rule.ruleset) || !within(k->target, k->u.rule.rule) ||
            k->target.len != 5 + k->u.rule.ruleset.len + 1 + k->u.rule.rule.len)
            abort();
        break;
    case BW_KILLSWITCH_RULESET:
        if (!id_ok(k->u.ruleset.ruleset) || !within(k->target, k->u.ruleset.ruleset) ||
            k->target.len != 8 + k->u.ruleset.ruleset.len)
            abort();
        break;
    case BW_KILLSWITCH_MODULE:
        if (!id_ok(k->u.module.module) || !within(k->target, k->u.module.module) ||
            k->target.len != 7 + k->u.module.module.len)
            abort();
        break;
    case BW_KILLSWITCH__COUNT:
        abort();
    }
    struct bw_killswitch_req again;
    bw_error err;
    if (bw_killswitch_parse_target(k->target, &again, &err) != BW_OK || again.kind != k->kind)
        abort();
}

static bw_status f_killswitch(void *self, const struct bw_killswitch_req *k,
                              enum bw_killswitch_fault *ret_fault, bw_error *err)
{
    (void)self;
    check_killswitch(k);
    /* Some targets are "unknown", to run that path too. */
    if (k->target.len % 3 == 0) {
        *ret_fault = BW_KILLSWITCH_FAULT_UNKNOWN_TARGET;
        return bw_error_set(err, "no such target \"%.*s\"", (int)k->target.len, k->target.ptr);
    }
    return BW_OK;
}

static const struct bw_admin_ops ops = {
    .status_json = f_status,
    .metrics_text = f_metrics,
    .reload = f_reload,
    .killswitch = f_killswitch,
};

struct outcome {
    enum bw_admin_feed_result r;
    uint16_t status;
    char *wire;
    size_t wire_len;
};

static void check_reply(const struct bw_admin_reply *rep, struct outcome *o)
{
    switch (rep->status) {
    case 200:
    case 400:
    case 401:
    case 404:
    case 405:
    case 411:
    case 413:
    case 414:
    case 417:
    case 422:
    case 431:
    case 501:
    case 505:
        break;
    default:
        abort();
    }
    if (rep->status >= 400 && rep->status != 422) {
        json_error_t je;
        json_t *j = json_loadb(rep->body.ptr, rep->body.len, 0, &je);
        if (!j || !json_is_object(j) || json_object_size(j) != 1 ||
            !json_is_string(json_object_get(j, "error")))
            abort();
        json_decref(j);
    } else if (rep->content == BW_ADMIN_CONTENT_JSON && !rep->head_only) {
        json_error_t je;
        json_t *j = json_loadb(rep->body.ptr, rep->body.len, 0, &je);
        if (!j)
            abort();
        json_decref(j);
    }
    struct bw_textbuf wire;
    bw_textbuf_init(&wire, (size_t)1 << 20);
    if (bw_admin_reply_serialize(rep, &wire) != BW_OK)
        abort();
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", rep->body.len);
    if (!memmem(wire.ptr, wire.len, cl, strlen(cl)))
        abort();
    size_t head = (size_t)((char *)memmem(wire.ptr, wire.len, "\r\n\r\n", 4) - wire.ptr) + 4;
    if (wire.len - head != (rep->head_only ? 0 : rep->body.len))
        abort();
    o->status = rep->status;
    o->wire = malloc(wire.len);
    memcpy(o->wire, wire.ptr, wire.len);
    o->wire_len = wire.len;
    bw_textbuf_done(&wire);
}

/* Feeds buf[0..split) (if split) and then buf[0..n), each from its own
 * exact-size copy, as a server whose buffer grew would. */
static void run_feed(const struct bw_admin *a, const uint8_t *data, size_t n, size_t split,
                     struct outcome *o)
{
    memset(o, 0, sizeof *o);
    struct bw_admin_parse p;
    bw_admin_parse_init(&p);
    struct bw_admin_reply rep;
    bw_admin_reply_init(&rep);
    enum bw_admin_feed_result r = BW_ADMIN_FEED_MORE;
    char *first = NULL;
    if (split > 0 && split < n) {
        first = malloc(split);
        memcpy(first, data, split);
        r = bw_admin_feed(a, &p, first, split, &rep);
    }
    if (r != BW_ADMIN_FEED_REPLY) {
        char *whole = malloc(n ? n : 1);
        memcpy(whole, data, n);
        r = bw_admin_feed(a, &p, whole, n, &rep);
        free(whole);
    }
    free(first);
    o->r = r;
    if (r == BW_ADMIN_FEED_REPLY)
        check_reply(&rep, o);
    else if (rep.status != 0 || rep.body.len != 0)
        abort(); /* no reply may be half made */
    bw_admin_reply_done(&rep);
}

static void same(const struct outcome *x, const struct outcome *y)
{
    /* CONTINUE is asked for once per connection: after a prefix asked for
     * it, the whole says MORE. Both mean "no reply yet". */
    bool xr = x->r == BW_ADMIN_FEED_REPLY, yr = y->r == BW_ADMIN_FEED_REPLY;
    if (xr != yr)
        abort();
    if (xr && (x->status != y->status || x->wire_len != y->wire_len ||
               memcmp(x->wire, y->wire, x->wire_len) != 0))
        abort();
}

static void fuzz_request(const struct bw_admin *a, const uint8_t *data, size_t n, size_t split)
{
    struct outcome whole, parts;
    run_feed(a, data, n, 0, &whole);
    run_feed(a, data, n, split, &parts);
    same(&whole, &parts);
    free(whole.wire);
    free(parts.wire);
}

static void fuzz_body(const struct bw_admin *a, const uint8_t *data, size_t n, size_t split)
{
    char *body = malloc(n ? n : 1);
    memcpy(body, data, n);
    struct bw_killswitch_req k;
    struct bw_killswitch_body *json;
    bw_error err;
    if (bw_killswitch_parse_body(bw_slice_make(body, n), &k, &json, &err) == BW_OK) {
        check_killswitch(&k);
        bw_killswitch_body_free(json);
    } else if (strlen(err.msg) == 0) {
        abort();
    }
    free(body);
    /* The same body through the endpoint, with the token when one is set. */
    char head[160];
    int hn = snprintf(head, sizeof head,
                      "POST /killswitch HTTP/1.1\r\nHost: a\r\n%sContent-Length: %zu\r\n\r\n",
                      a->has_token ? "Authorization: Bearer fuzz-token\r\n" : "", n);
    uint8_t *req = malloc((size_t)hn + n);
    memcpy(req, head, (size_t)hn);
    memcpy(req + hn, data, n);
    fuzz_request(a, req, (size_t)hn + n, split);
    free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 2 * BW_ADMIN_MAX_BODY)
        return 0;
    uint8_t flags = data[0];
    size_t payload = size - 2;
    size_t split = payload ? (size_t)data[1] * payload / 256 : 0;
    struct bw_admin a;
    bw_admin_init(&a, &ops);
    if (flags & 2) {
        bw_error err;
        if (bw_admin_set_token(&a, BW_SLICE_LIT("fuzz-token"), &err) != BW_OK)
            abort();
    }
    if (flags & 1)
        fuzz_body(&a, data + 2, payload, split);
    else
        fuzz_request(&a, data + 2, payload, split);
    return 0;
}
