/* Response-head parsing: the status line, body delimitation by RFC 9112 §6.3,
 * connection reuse, and every refusal (always 502). Each case is also fed
 * split at every byte into exact-size heap copies. */
#include <stdlib.h>

#include "http/http1.h"
#include "test.h"

#define NHDR 128

static const struct bw_http_limits LIM = {
    .request_line_bytes = BW_HTTP_DEFAULT_REQUEST_LINE_BYTES,
    .header_bytes = BW_HTTP_DEFAULT_HEADER_BYTES,
    .headers = BW_HTTP_DEFAULT_HEADERS,
};

struct parsed {
    enum bw_http_parse_result r;
    struct bw_http_response resp;
    struct bw_http_header hdr[NHDR];
    struct bw_http_error err;
    char *buf;
};

static void parse_lim(struct parsed *p, const char *s, size_t n, const struct bw_http_limits *lim,
                      enum bw_http_method m)
{
    memset(p, 0, sizeof *p);
    p->buf = malloc(n ? n : 1);
    memcpy(p->buf, s, n);
    p->resp.headers = p->hdr;
    p->resp.headers_cap = NHDR;
    struct bw_http_scan scan = {0};
    p->r = bw_http_parse_response(p->buf, n, lim, m, &scan, &p->resp, &p->err);
}

static bool slice_same(bw_slice a, const char *ba, bw_slice b, const char *bb)
{
    return a.len == b.len && a.ptr - ba == b.ptr - bb;
}

static bool same(const struct parsed *a, const struct parsed *b)
{
    if (a->r != b->r)
        return false;
    if (a->r == BW_HTTP_ERROR)
        return a->err.status == b->err.status && a->err.offset == b->err.offset &&
               strcmp(a->err.reason, b->err.reason) == 0;
    if (a->r == BW_HTTP_PARTIAL)
        return true;
    const struct bw_http_response *x = &a->resp, *y = &b->resp;
    if (x->version_minor != y->version_minor || x->status != y->status ||
        x->nheaders != y->nheaders || x->body_kind != y->body_kind ||
        x->content_length != y->content_length || x->keep_alive != y->keep_alive ||
        x->upgrade != y->upgrade || x->head_len != y->head_len ||
        !slice_same(x->reason, a->buf, y->reason, b->buf))
        return false;
    for (size_t i = 0; i < x->nheaders; i++)
        if (!slice_same(x->headers[i].name, a->buf, y->headers[i].name, b->buf) ||
            !slice_same(x->headers[i].value, a->buf, y->headers[i].value, b->buf))
            return false;
    return true;
}

static void feed(struct parsed *step, struct bw_http_scan *scan, const char *s, size_t j,
                 const struct bw_http_limits *lim, enum bw_http_method m)
{
    free(step->buf);
    step->buf = malloc(j ? j : 1);
    memcpy(step->buf, s, j);
    step->r = bw_http_parse_response(step->buf, j, lim, m, scan, &step->resp, &step->err);
}

/* For every k: feed 1, 2, ..., k bytes, then all n; the outcome must match
 * the one-shot parse, and DONE must come exactly when the head is complete. */
static const char *check_splits(const char *s, size_t n, const struct bw_http_limits *lim,
                                enum bw_http_method m)
{
    static char why[128];
    const char *ret = NULL;
    struct parsed whole, step;
    parse_lim(&whole, s, n, lim, m);
    for (size_t k = 0; k <= n && !ret; k++) {
        struct bw_http_scan scan = {0};
        memset(&step, 0, sizeof step);
        step.resp.headers = step.hdr;
        step.resp.headers_cap = NHDR;
        step.r = BW_HTTP_PARTIAL;
        size_t j;
        for (j = 1; j <= k && step.r == BW_HTTP_PARTIAL; j++)
            feed(&step, &scan, s, j, lim, m);
        if (step.r == BW_HTTP_DONE && j - 1 != step.resp.head_len) {
            snprintf(why, sizeof why, "DONE at %zu but head_len %zu", j - 1, step.resp.head_len);
            ret = why;
        }
        if (step.r == BW_HTTP_PARTIAL)
            feed(&step, &scan, s, n, lim, m);
        if (!ret && !same(&whole, &step)) {
            snprintf(why, sizeof why, "split at %zu: r %d vs one-shot %d", k, step.r, whole.r);
            ret = why;
        }
        free(step.buf);
    }
    free(whole.buf);
    return ret;
}

#define OK(p, lit, m)                                                                              \
    do {                                                                                           \
        parse_lim((p), (lit), sizeof(lit) - 1, &LIM, (m));                                         \
        if ((p)->r != BW_HTTP_DONE) {                                                              \
            T_FAILF("want DONE, got %d (%s)", (p)->r, (p)->err.reason ? (p)->err.reason : "");     \
            free((p)->buf);                                                                        \
            return;                                                                                \
        }                                                                                          \
        const char *t_why = check_splits((lit), sizeof(lit) - 1, &LIM, (m));                       \
        if (t_why) {                                                                               \
            T_FAILF("%s", t_why);                                                                  \
            free((p)->buf);                                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define REFUSE(lit)                                                                                \
    do {                                                                                           \
        struct parsed t_p;                                                                         \
        parse_lim(&t_p, (lit), sizeof(lit) - 1, &LIM, BW_METHOD_GET);                              \
        free(t_p.buf);                                                                             \
        if (t_p.r != BW_HTTP_ERROR || t_p.err.status != 502) {                                     \
            T_FAILF("%s: want ERROR 502, got r=%d status %d", #lit, t_p.r, t_p.err.status);        \
            return;                                                                                \
        }                                                                                          \
        const char *t_why = check_splits((lit), sizeof(lit) - 1, &LIM, BW_METHOD_GET);             \
        if (t_why) {                                                                               \
            T_FAILF("%s", t_why);                                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define G BW_METHOD_GET

TEST(ok_with_length)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", G);
    CHECK_INT_EQ(p.resp.version_minor, 1);
    CHECK_INT_EQ(p.resp.status, 200);
    CHECK_SLICE_EQ(p.resp.reason, "OK");
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(p.resp.content_length, 5);
    CHECK(p.resp.keep_alive);
    CHECK(!p.resp.upgrade);
    CHECK_INT_EQ(p.resp.nheaders, 2);
    CHECK_SLICE_EQ(p.resp.headers[1].value, "b");
    CHECK_INT_EQ(p.resp.head_len, 46);
    free(p.buf);
}

TEST(reason_phrase_forms)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 404 Not  Found\t x\xff\r\nContent-Length: 0\r\n\r\n", G);
    CHECK_SLICE_EQ(p.resp.reason, "Not  Found\t x\xff");
    free(p.buf);
    OK(&p, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", G);
    CHECK_SLICE_EQ(p.resp.reason, "");
    CHECK_INT_EQ(p.resp.status, 200);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", G);
    CHECK_SLICE_EQ(p.resp.reason, "");
    free(p.buf);
    OK(&p, "HTTP/1.1 999 Custom\r\nContent-Length: 0\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.status, 999);
    free(p.buf);
}

TEST(body_chunked)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_CHUNKED);
    CHECK(p.resp.keep_alive);
    CHECK(!p.resp.te_other);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_CHUNKED);
    CHECK(p.resp.te_other);
    free(p.buf);
    /* RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing: read
     * the message, then close. */
    OK(&p, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_CHUNKED);
    CHECK(!p.resp.keep_alive);
    free(p.buf);
}

TEST(body_until_close)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_UNTIL_CLOSE);
    CHECK(!p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_UNTIL_CLOSE);
    CHECK(!p.resp.keep_alive);
    free(p.buf);
}

TEST(bodiless_responses)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", BW_METHOD_HEAD);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    CHECK(p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", BW_METHOD_HEAD);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 OK\r\n\r\n", BW_METHOD_HEAD);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    CHECK(p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.1 100 Continue\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    free(p.buf);
    OK(&p, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    free(p.buf);
    OK(&p, "HTTP/1.1 204 No Content\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    CHECK(p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", G);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 Connection established\r\n\r\n", BW_METHOD_CONNECT);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    /* the connection is a tunnel now: never back in a pool */
    CHECK(!p.resp.keep_alive);
    free(p.buf);
    /* a refused CONNECT has a body like any other response */
    OK(&p, "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", BW_METHOD_CONNECT);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_LENGTH);
    CHECK(p.resp.keep_alive);
    free(p.buf);
}

TEST(upgrade_101)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
       G);
    CHECK(p.resp.upgrade);
    CHECK_INT_EQ(p.resp.body_kind, BW_BODY_NONE);
    free(p.buf);
    OK(&p, "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", G);
    CHECK(!p.resp.upgrade);
    free(p.buf);
    OK(&p, "HTTP/1.1 101 Switching Protocols\r\n\r\n", G);
    CHECK(!p.resp.upgrade);
    free(p.buf);
}

TEST(keep_alive_rules)
{
    struct parsed p;
    OK(&p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", G);
    CHECK(!p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", G);
    CHECK(!p.resp.keep_alive);
    CHECK_INT_EQ(p.resp.version_minor, 0);
    free(p.buf);
    OK(&p, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", G);
    CHECK(p.resp.keep_alive);
    free(p.buf);
    OK(&p, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n", G);
    CHECK(!p.resp.keep_alive);
    free(p.buf);
}

TEST(framing_refused)
{
    REFUSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n");
    /* bodiless responses still may not carry ambiguous framing fields */
    REFUSE("HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n");
    REFUSE("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(status_line_refused)
{
    REFUSE("HTTP/1.1 20 OK\r\n\r\n");
    REFUSE("HTTP/1.1 2000 OK\r\n\r\n");
    REFUSE("HTTP/1.1 099 Low\r\n\r\n");
    REFUSE("HTTP/1.1 000\r\n\r\n");
    REFUSE("HTTP/1.1  200 OK\r\n\r\n");
    REFUSE("HTTP/1.1 200\tOK\r\n\r\n");
    REFUSE("HTTP/1.1 2x0 OK\r\n\r\n");
    REFUSE("HTTP/2.0 200 OK\r\n\r\n");
    REFUSE("HTTP/0.9 200 OK\r\n\r\n");
    REFUSE("HTTP/1.x 200 OK\r\n\r\n");
    REFUSE("http/1.1 200 OK\r\n\r\n");
    REFUSE("HTTP/1.1\r\n\r\n");
    REFUSE("HTTP/1.1 200 O\x01K\r\n\r\n");
    REFUSE("HTTP/1.1 200 O\x7fK\r\n\r\n");
    REFUSE("HTTP/1.1 200 O\rK\r\n\r\n");
    REFUSE("ICY 200 OK\r\n\r\n");
    REFUSE("\r\nHTTP/1.1 200 OK\r\n\r\n");
    REFUSE(" HTTP/1.1 200 OK\r\n\r\n");
}

TEST(fields_refused)
{
    REFUSE("HTTP/1.1 200 OK\n\n");
    REFUSE("HTTP/1.1 200 OK\r\nX: a\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nX : a\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\n: a\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nX@: a\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n");
    REFUSE("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n");
}

TEST(bare_lf_refused_at_once)
{
    struct parsed p;
    parse_lim(&p, "HTTP/1.1 200 OK\n", 16, &LIM, G);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 502);
    free(p.buf);
}

TEST(limits_are_502)
{
    char buf[512];
    struct parsed p;
    struct bw_http_limits lim = LIM;
    /* status line: at the limit accepted, one past refused */
    lim.request_line_bytes = 20;
    memcpy(buf, "HTTP/1.1 200 OKxxx\r\n\r\n", 22); /* line is 20 bytes */
    parse_lim(&p, buf, 22, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    free(p.buf);
    CHECK(check_splits(buf, 22, &lim, G) == NULL);
    memcpy(buf, "HTTP/1.1 200 OKxxxx\r\n\r\n", 23);
    parse_lim(&p, buf, 23, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 502);
    free(p.buf);
    CHECK(check_splits(buf, 23, &lim, G) == NULL);
    /* head bytes */
    lim = LIM;
    lim.header_bytes = 40;
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: 0123456789abcdef\r\n\r\n", 40);
    parse_lim(&p, buf, 40, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    free(p.buf);
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: 0123456789abcdefg\r\n\r\n", 41);
    parse_lim(&p, buf, 41, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 502);
    free(p.buf);
    CHECK(check_splits(buf, 41, &lim, G) == NULL);
    /* field count */
    lim = LIM;
    lim.headers = 2;
    static const char two[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    static const char three[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    parse_lim(&p, two, sizeof two - 1, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    free(p.buf);
    parse_lim(&p, three, sizeof three - 1, &lim, G);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 502);
    free(p.buf);
}

int main(void)
{
    RUN(ok_with_length);
    RUN(reason_phrase_forms);
    RUN(body_chunked);
    RUN(body_until_close);
    RUN(bodiless_responses);
    RUN(upgrade_101);
    RUN(keep_alive_rules);
    RUN(framing_refused);
    RUN(status_line_refused);
    RUN(fields_refused);
    RUN(bare_lf_refused_at_once);
    RUN(limits_are_502);
    return t_done();
}
