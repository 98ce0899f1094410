/* Admin API request handling: routing, methods, the token check, body
 * limits, dispatch to bw_admin_ops, and the HTTP framing of replies. Pure:
 * no I/O and no logging (the server logs). */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/json_out.h"

enum endpoint { EP_STATUS, EP_METRICS, EP_RELOAD, EP_KILLSWITCH, EP__COUNT };

static const struct {
    const char *path;
    enum bw_admin_allow allow;
} endpoints[EP__COUNT] = {
    [EP_STATUS] = {"/status", BW_ADMIN_ALLOW_GET_HEAD},
    [EP_METRICS] = {"/metrics", BW_ADMIN_ALLOW_GET_HEAD},
    [EP_RELOAD] = {"/reload", BW_ADMIN_ALLOW_POST},
    [EP_KILLSWITCH] = {"/killswitch", BW_ADMIN_ALLOW_POST},
};

static const struct bw_http_limits admin_limits = {
    .request_line_bytes = BW_ADMIN_REQUEST_LINE_BYTES,
    .header_bytes = BW_ADMIN_HEAD_BYTES,
    .headers = BW_ADMIN_HEADERS,
};

/* ---- replies ------------------------------------------------------------- */

void bw_admin_reply_init(struct bw_admin_reply *r)
{
    memset(r, 0, sizeof *r);
    r->content = BW_ADMIN_CONTENT_JSON;
    bw_textbuf_init(&r->body, BW_ADMIN_MAX_REPLY_BODY);
}

void bw_admin_reply_done(struct bw_admin_reply *r)
{
    bw_textbuf_done(&r->body);
}

void bw_admin_reply_error(struct bw_admin_reply *r, uint16_t status, const char *sentence)
{
    r->status = status;
    r->content = BW_ADMIN_CONTENT_JSON;
    r->has_allow = false;
    r->auth_challenge = false;
    bw_textbuf_reset(&r->body);
    if (bw_textbuf_append_str(&r->body, "{\"error\": ") != BW_OK ||
        bw__admin_json_string(&r->body, sentence, strlen(sentence)) != BW_OK ||
        bw_textbuf_append_str(&r->body, "}\n") != BW_OK)
        bw_textbuf_reset(&r->body); /* out of memory: an empty body still says the status */
}

static const char *content_type(enum bw_admin_content c)
{
    switch (c) {
    case BW_ADMIN_CONTENT_JSON:
        return "application/json";
    case BW_ADMIN_CONTENT_PROMETHEUS:
        return "text/plain; version=0.0.4; charset=utf-8";
    case BW_ADMIN_CONTENT__COUNT:
        break;
    }
    return "application/octet-stream";
}

static const char *allow_value(enum bw_admin_allow a)
{
    switch (a) {
    case BW_ADMIN_ALLOW_GET_HEAD:
        return "GET, HEAD";
    case BW_ADMIN_ALLOW_POST:
        return "POST";
    case BW_ADMIN_ALLOW__COUNT:
        break;
    }
    return "";
}

bw_status bw_admin_reply_serialize(const struct bw_admin_reply *r, struct bw_textbuf *wire)
{
    const char *reason = bw_http_status_reason(r->status);
    /* no-store: status and metrics are live; a cache in between would show
     * an operator yesterday's killswitches. */
    if (bw_textbuf_printf(wire,
                          "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Cache-Control: no-store\r\nConnection: close\r\n",
                          (unsigned)r->status, reason, content_type(r->content),
                          r->body.len) != BW_OK)
        return BW_ERR;
    if (r->has_allow && bw_textbuf_printf(wire, "Allow: %s\r\n", allow_value(r->allow)) != BW_OK)
        return BW_ERR;
    if (r->auth_challenge && bw_textbuf_append_str(wire, "WWW-Authenticate: Bearer\r\n") != BW_OK)
        return BW_ERR;
    if (bw_textbuf_append_str(wire, "\r\n") != BW_OK)
        return BW_ERR;
    if (!r->head_only && bw_textbuf_append_slice(wire, bw_textbuf_slice(&r->body)) != BW_OK)
        return BW_ERR;
    return BW_OK;
}

/* ---- routing ------------------------------------------------------------- */

static bool find_endpoint(bw_slice path, enum endpoint *ret)
{
    for (size_t i = 0; i < EP__COUNT; i++) {
        if (bw_slice_eq(path, bw_slice_make(endpoints[i].path, strlen(endpoints[i].path)))) {
            *ret = (enum endpoint)i;
            return true;
        }
    }
    return false;
}

static bool method_allowed(enum bw_admin_allow allow, enum bw_http_method m)
{
    switch (allow) {
    case BW_ADMIN_ALLOW_GET_HEAD:
        return m == BW_METHOD_GET || m == BW_METHOD_HEAD;
    case BW_ADMIN_ALLOW_POST:
        return m == BW_METHOD_POST;
    case BW_ADMIN_ALLOW__COUNT:
        break;
    }
    return false;
}

static size_t count_headers(const struct bw_http_request *req, bw_slice name)
{
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (bw_slice_eq_nocase(req->headers[i].name, name))
            n++;
    return n;
}

static bool precheck(const struct bw_admin *a, const struct bw_http_request *req,
                     struct bw_admin_reply *out);

/* RFC 9110 §9.3.2: the answer to HEAD is the answer to GET without its
 * content, whatever the status. */
static void mark_head(const struct bw_http_request *req, struct bw_admin_reply *out)
{
    out->head_only = req->method_id == BW_METHOD_HEAD;
}

bool bw_admin_precheck(const struct bw_admin *a, const struct bw_http_request *req,
                       struct bw_admin_reply *out)
{
    if (!precheck(a, req, out))
        return false;
    mark_head(req, out);
    return true;
}

static bool precheck(const struct bw_admin *a, const struct bw_http_request *req,
                     struct bw_admin_reply *out)
{
    enum endpoint ep;
    if (!find_endpoint(req->path, &ep)) {
        bw_admin_reply_error(out, 404,
                             "not found: the admin API serves /status, /metrics, /reload and "
                             "/killswitch");
        return true;
    }
    enum bw_admin_allow allow = endpoints[ep].allow;
    if (!method_allowed(allow, req->method_id)) {
        bw_admin_reply_error(out, 405,
                             allow == BW_ADMIN_ALLOW_POST ? "method not allowed: use POST"
                                                          : "method not allowed: use GET");
        out->has_allow = true;
        out->allow = allow;
        return true;
    }
    /* The token guards what changes state (DESIGN.md: "mutating calls need
     * it"). GET /status and /metrics stay open so a scraper or a health
     * probe needs no secret: they read, and the listener is loopback by
     * default. */
    if (a->has_token && allow == BW_ADMIN_ALLOW_POST) {
        bw_slice auth_name = BW_SLICE_LIT("authorization");
        size_t n = count_headers(req, auth_name);
        if (n > 1) {
            /* Two credentials: which one a checker would read is a guess. */
            bw_admin_reply_error(out, 400, "more than one Authorization field");
            return true;
        }
        const struct bw_http_header *h =
            bw_http_find_header(req->headers, req->nheaders, auth_name);
        if (!h) {
            bw_admin_reply_error(out, 401,
                                 "this call needs the admin token: Authorization: Bearer <token>");
            out->auth_challenge = true;
            return true;
        }
        if (!bw_admin_authorized(a, h->value)) {
            bw_admin_reply_error(out, 401, "the admin token is wrong");
            out->auth_challenge = true;
            return true;
        }
    }
    switch (req->body_kind) {
    case BW_BODY_NONE:
        break;
    case BW_BODY_LENGTH:
        if (req->content_length > BW_ADMIN_MAX_BODY) {
            char msg[96];
            snprintf(msg, sizeof msg, "request body larger than %zu bytes", BW_ADMIN_MAX_BODY);
            bw_admin_reply_error(out, 413, msg);
            return true;
        }
        break;
    case BW_BODY_CHUNKED:
        /* Bodies here are a few hundred bytes and every client sends a
         * length for them; refusing chunked keeps the reader one bounded
         * copy. */
        bw_admin_reply_error(out, 411,
                             "a chunked request body is not accepted: send Content-Length");
        return true;
    case BW_BODY_UNTIL_CLOSE:
    case BW_BODY__COUNT:
        bw_admin_reply_error(out, 400, "request body framing not understood");
        return true;
    }
    return false;
}

/* ---- endpoints ----------------------------------------------------------- */

static void op_failed(struct bw_admin_reply *out, uint16_t status, const bw_error *err)
{
    bw_admin_reply_error(out, status, err->msg);
}

static void do_document(const struct bw_admin *a, enum endpoint ep, struct bw_admin_reply *out)
{
    bw_error err;
    bw_status st = BW_ERR;
    switch (ep) {
    case EP_STATUS:
        out->content = BW_ADMIN_CONTENT_JSON;
        st = a->ops.status_json(a->ops.self, &out->body, &err);
        break;
    case EP_METRICS:
        out->content = BW_ADMIN_CONTENT_PROMETHEUS;
        st = a->ops.metrics_text(a->ops.self, &out->body, &err);
        break;
    case EP_RELOAD:
    case EP_KILLSWITCH:
    case EP__COUNT:
        bw_error_set(&err, "internal error: not a document endpoint");
        break;
    }
    if (st != BW_OK) {
        op_failed(out, 500, &err);
        return;
    }
    out->status = 200;
}

static void do_reload(const struct bw_admin *a, struct bw_admin_reply *out)
{
    bw_error err;
    enum bw_reload_outcome outcome = BW_RELOAD_SOME_REJECTED;
    if (a->ops.reload(a->ops.self, &out->body, &outcome, &err) != BW_OK) {
        op_failed(out, 500, &err);
        return;
    }
    out->content = BW_ADMIN_CONTENT_JSON;
    switch (outcome) {
    case BW_RELOAD_ALL_ACCEPTED:
        out->status = 200;
        return;
    case BW_RELOAD_SOME_REJECTED:
        out->status = 422;
        return;
    case BW_RELOAD__COUNT:
        break;
    }
    bw_admin_reply_error(out, 500, "internal error: reload gave no outcome");
}

static void do_killswitch(const struct bw_admin *a, bw_slice body, struct bw_admin_reply *out)
{
    bw_error err;
    struct bw_killswitch_req k;
    struct bw_killswitch_body *json;
    if (bw_killswitch_parse_body(body, &k, &json, &err) != BW_OK) {
        op_failed(out, 400, &err);
        return;
    }
    enum bw_killswitch_fault fault = BW_KILLSWITCH_FAULT_INTERNAL;
    if (a->ops.killswitch(a->ops.self, &k, &fault, &err) != BW_OK) {
        uint16_t status = 500;
        switch (fault) {
        case BW_KILLSWITCH_FAULT_UNKNOWN_TARGET:
            status = 400;
            break;
        case BW_KILLSWITCH_FAULT_INTERNAL:
        case BW_KILLSWITCH_FAULT__COUNT:
            break;
        }
        bw_killswitch_body_free(json);
        op_failed(out, status, &err);
        return;
    }
    out->status = 200;
    out->content = BW_ADMIN_CONTENT_JSON;
    bw_textbuf_reset(&out->body);
    if (bw_textbuf_append_str(&out->body, "{\"target\": ") != BW_OK ||
        bw__admin_json_string(&out->body, k.target.ptr, k.target.len) != BW_OK ||
        bw_textbuf_printf(&out->body, ", \"enabled\": %s}\n", k.enabled ? "true" : "false") !=
            BW_OK) {
        /* Applied, but the answer cannot be written: say so rather than
         * hide that it took effect. */
        bw_admin_reply_error(out, 500,
                             "the killswitch was applied but the answer ran out of memory");
    }
    bw_killswitch_body_free(json);
}

void bw_admin_handle(const struct bw_admin *a, const struct bw_http_request *req, bw_slice body,
                     struct bw_admin_reply *out)
{
    if (bw_admin_precheck(a, req, out))
        return;
    enum endpoint ep;
    if (!find_endpoint(req->path, &ep)) {
        bw_admin_reply_error(out, 404, "not found");
        return;
    }
    switch (ep) {
    case EP_STATUS:
    case EP_METRICS:
        do_document(a, ep, out);
        break;
    case EP_RELOAD:
        do_reload(a, out);
        break;
    case EP_KILLSWITCH:
        do_killswitch(a, body, out);
        break;
    case EP__COUNT:
        bw_admin_reply_error(out, 500, "internal error: endpoint");
        break;
    }
    mark_head(req, out);
}

/* ---- from bytes ---------------------------------------------------------- */

void bw_admin_parse_init(struct bw_admin_parse *p)
{
    memset(p, 0, sizeof *p);
    p->req.headers = p->headers;
    p->req.headers_cap = BW_ADMIN_HEADERS;
}

static size_t body_len(const struct bw_http_request *req)
{
    /* Only called after the precheck, which bounds content_length. */
    return req->body_kind == BW_BODY_LENGTH ? (size_t)req->content_length : 0;
}

size_t bw_admin_feed_want(const struct bw_admin_parse *p)
{
    if (!p->head_done)
        return BW_ADMIN_HEAD_BYTES;
    return p->req.head_len + body_len(&p->req);
}

enum bw_admin_feed_result bw_admin_feed(const struct bw_admin *a, struct bw_admin_parse *p,
                                        const char *buf, size_t len, struct bw_admin_reply *out)
{
    if (!p->head_done) {
        struct bw_http_error herr;
        switch (bw_http_parse_request(buf, len, &admin_limits, &p->scan, &p->req, &herr)) {
        case BW_HTTP_PARTIAL:
            return BW_ADMIN_FEED_MORE;
        case BW_HTTP_ERROR:
            bw_admin_reply_error(out, herr.status, herr.reason);
            return BW_ADMIN_FEED_REPLY;
        case BW_HTTP_DONE:
            break;
        }
        p->head_done = true;
        p->base = buf;
        if (bw_admin_precheck(a, &p->req, out))
            return BW_ADMIN_FEED_REPLY;
    } else if (buf != p->base) {
        /* The caller grew its buffer: the head's slices must follow it.
         * Parsing the same bytes again gives the same result (the parser
         * depends on nothing but them); it is at most 8 KiB, once. */
        struct bw_http_scan scan = {0};
        struct bw_http_error herr;
        size_t head_len = p->req.head_len;
        if (len < head_len || bw_http_parse_request(buf, head_len, &admin_limits, &scan, &p->req,
                                                    &herr) != BW_HTTP_DONE) {
            bw_admin_reply_error(out, 500, "internal error: the request head changed");
            return BW_ADMIN_FEED_REPLY;
        }
        p->base = buf;
    }
    size_t need = bw_admin_feed_want(p);
    if (len < need) {
        /* RFC 9110 §10.1.1: a client that asked may wait for 100 before
         * sending the body; never send it to an HTTP/1.0 client. */
        if (p->req.expect_continue && p->req.version_minor >= 1 && !p->continue_sent) {
            p->continue_sent = true;
            return BW_ADMIN_FEED_CONTINUE;
        }
        return BW_ADMIN_FEED_MORE;
    }
    bw_admin_handle(a, &p->req, bw_slice_make(buf + p->req.head_len, body_len(&p->req)), out);
    return BW_ADMIN_FEED_REPLY;
}
