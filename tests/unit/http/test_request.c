/* Request-head parsing: every acceptance and refusal rule of http1.h, each
 * also fed split at every byte so the incremental path is held to the same
 * answer. Buffers are copied into exact-size heap blocks so ASan catches any
 * read past len. */
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
    struct bw_http_request req;
    struct bw_http_header hdr[NHDR];
    struct bw_http_error err;
    char *buf; /* exact-size copy the slices point into */
};

static void parsed_free(struct parsed *p)
{
    free(p->buf);
    p->buf = NULL;
}

/* One-shot parse of s[0..n) into an exact-size copy. */
static void parse_lim(struct parsed *p, const char *s, size_t n, const struct bw_http_limits *lim,
                      size_t cap)
{
    memset(p, 0, sizeof *p);
    p->buf = malloc(n ? n : 1);
    memcpy(p->buf, s, n);
    p->req.headers = p->hdr;
    p->req.headers_cap = cap;
    struct bw_http_scan scan = {0};
    p->r = bw_http_parse_request(p->buf, n, lim, &scan, &p->req, &p->err);
}

#define PARSE(p, lit) parse_lim((p), (lit), sizeof(lit) - 1, &LIM, NHDR)

static long off(bw_slice s, const char *base)
{
    return s.ptr == NULL ? -1 : (long)(s.ptr - base);
}

/* Same outcome, and on DONE the same fields at the same offsets. A slice may
 * also point at a static string (the "/" of an absolute-form target without a
 * path); then its contents must match. */
static bool slice_same(bw_slice a, const char *ba, size_t na, bw_slice b, const char *bb, size_t nb)
{
    bool ina = a.ptr >= ba && a.ptr + a.len <= ba + na;
    bool inb = b.ptr >= bb && b.ptr + b.len <= bb + nb;
    if (ina != inb || a.len != b.len)
        return false;
    if (ina)
        return off(a, ba) == off(b, bb);
    return memcmp(a.ptr, b.ptr, a.len) == 0;
}

static bool same(const struct parsed *a, size_t na, const struct parsed *b, size_t nb)
{
    if (a->r != b->r)
        return false;
    if (a->r == BW_HTTP_ERROR)
        return a->err.status == b->err.status && a->err.offset == b->err.offset &&
               strcmp(a->err.reason, b->err.reason) == 0;
    if (a->r == BW_HTTP_PARTIAL)
        return true;
    const struct bw_http_request *x = &a->req, *y = &b->req;
#define S(f) slice_same(x->f, a->buf, na, y->f, b->buf, nb)
    if (!(S(method) && S(target) && S(path) && S(query) && S(host)))
        return false;
    if (x->method_id != y->method_id || x->has_query != y->has_query ||
        x->version_minor != y->version_minor || x->nheaders != y->nheaders ||
        x->body_kind != y->body_kind || x->content_length != y->content_length ||
        x->keep_alive != y->keep_alive || x->expect_continue != y->expect_continue ||
        x->upgrade != y->upgrade || x->head_len != y->head_len)
        return false;
    for (size_t i = 0; i < x->nheaders; i++)
        if (!S(headers[i].name) || !S(headers[i].value))
            return false;
#undef S
    return true;
}

/* Feeds s growing one byte at a time (each call on a fresh exact-size copy),
 * and split in two at every position; each must agree with the one-shot
 * parse, say PARTIAL before the outcome is known, and never say DONE for an
 * input the one-shot parse refuses. Returns a failure description or NULL. */
static const char *check_splits(const char *s, size_t n, const struct bw_http_limits *lim)
{
    static char why[160];
    struct parsed whole, step;
    parse_lim(&whole, s, n, lim, NHDR);
    /* byte at a time */
    {
        struct bw_http_scan scan = {0};
        memset(&step, 0, sizeof step);
        step.req.headers = step.hdr;
        step.req.headers_cap = NHDR;
        step.r = BW_HTTP_PARTIAL;
        size_t k;
        for (k = 1; k <= n && step.r == BW_HTTP_PARTIAL; k++) {
            free(step.buf);
            step.buf = malloc(k);
            memcpy(step.buf, s, k);
            step.r = bw_http_parse_request(step.buf, k, lim, &scan, &step.req, &step.err);
        }
        /* DONE exactly when the head is complete, not a byte earlier */
        if (step.r == BW_HTTP_DONE && k - 1 != step.req.head_len) {
            snprintf(why, sizeof why, "byte-at-a-time DONE at %zu, head_len %zu", k - 1,
                     step.req.head_len);
            goto fail_step;
        }
        if (!same(&whole, n, &step, k - 1)) {
            snprintf(why, sizeof why, "byte-at-a-time differs from one-shot (r %d vs %d)", step.r,
                     whole.r);
            goto fail_step;
        }
        parsed_free(&step);
    }
    /* two pieces */
    for (size_t k = 0; k < n; k++) {
        struct bw_http_scan scan = {0};
        memset(&step, 0, sizeof step);
        step.req.headers = step.hdr;
        step.req.headers_cap = NHDR;
        step.buf = malloc(k ? k : 1);
        memcpy(step.buf, s, k);
        step.r = bw_http_parse_request(step.buf, k, lim, &scan, &step.req, &step.err);
        size_t got = k;
        if (step.r == BW_HTTP_PARTIAL) {
            free(step.buf);
            step.buf = malloc(n);
            memcpy(step.buf, s, n);
            step.r = bw_http_parse_request(step.buf, n, lim, &scan, &step.req, &step.err);
            got = n;
        }
        if (!same(&whole, n, &step, got)) {
            snprintf(why, sizeof why, "split at %zu differs from one-shot (r %d vs %d)", k, step.r,
                     whole.r);
            goto fail_step;
        }
        parsed_free(&step);
    }
    parsed_free(&whole);
    return NULL;
fail_step:
    parsed_free(&step);
    parsed_free(&whole);
    return why;
}

#define CHECK_SPLITS(lit)                                                                          \
    do {                                                                                           \
        const char *t_why = check_splits((lit), sizeof(lit) - 1, &LIM);                            \
        if (t_why) {                                                                               \
            T_FAILF("%s", t_why);                                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The request must parse, in one shot and in every split. */
#define OK(p, lit)                                                                                 \
    do {                                                                                           \
        PARSE((p), lit);                                                                           \
        if ((p)->r != BW_HTTP_DONE) {                                                              \
            T_FAILF("want DONE, got %d (%d %s at %zu)", (p)->r, (p)->err.status,                   \
                    (p)->err.reason ? (p)->err.reason : "", (p)->err.offset);                      \
            parsed_free(p);                                                                        \
            return;                                                                                \
        }                                                                                          \
        CHECK_SPLITS(lit);                                                                         \
    } while (0)

/* The request must be refused with this status, in one shot and in every
 * split. */
#define REFUSE(lit, want)                                                                          \
    do {                                                                                           \
        struct parsed t_p;                                                                         \
        PARSE(&t_p, lit);                                                                          \
        int t_r = t_p.r, t_s = t_p.err.status;                                                     \
        const char *t_reason = t_p.err.reason ? t_p.err.reason : "";                               \
        parsed_free(&t_p);                                                                         \
        if (t_r != BW_HTTP_ERROR || t_s != (want)) {                                               \
            T_FAILF("%s: want ERROR %d, got r=%d status %d (%s)", #lit, (want), t_r, t_s,          \
                    t_reason);                                                                     \
            return;                                                                                \
        }                                                                                          \
        CHECK_SPLITS(lit);                                                                         \
    } while (0)

#define H "Host: a.example\r\n"

/* ---- accepted requests and their derived fields ---- */

TEST(simple_get)
{
    struct parsed p;
    OK(&p, "GET / HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.method, "GET");
    CHECK_INT_EQ(p.req.method_id, BW_METHOD_GET);
    CHECK_SLICE_EQ(p.req.target, "/");
    CHECK_SLICE_EQ(p.req.path, "/");
    CHECK_SLICE_EQ(p.req.query, "");
    CHECK(!p.req.has_query);
    CHECK_INT_EQ(p.req.version_minor, 1);
    CHECK_SLICE_EQ(p.req.host, "a.example");
    CHECK_INT_EQ(p.req.body_kind, BW_BODY_NONE);
    CHECK(p.req.keep_alive);
    CHECK(!p.req.expect_continue);
    CHECK(!p.req.upgrade);
    CHECK_INT_EQ(p.req.nheaders, 1);
    CHECK_SLICE_EQ(p.req.headers[0].name, "Host");
    CHECK_SLICE_EQ(p.req.headers[0].value, "a.example");
    CHECK_INT_EQ(p.req.head_len, 35);
    parsed_free(&p);
}

TEST(path_and_query)
{
    struct parsed p;
    OK(&p, "GET /a/b?x=1&y=%20?z HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "/a/b");
    CHECK_SLICE_EQ(p.req.query, "x=1&y=%20?z");
    CHECK(p.req.has_query);
    parsed_free(&p);
    OK(&p, "GET /a? HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "/a");
    CHECK_SLICE_EQ(p.req.query, "");
    CHECK(p.req.has_query);
    parsed_free(&p);
}

TEST(methods)
{
    static const struct {
        const char *req;
        enum bw_http_method id;
    } cases[] = {
        {"GET / HTTP/1.1\r\n" H "\r\n", BW_METHOD_GET},
        {"HEAD / HTTP/1.1\r\n" H "\r\n", BW_METHOD_HEAD},
        {"POST / HTTP/1.1\r\n" H "\r\n", BW_METHOD_POST},
        {"PUT / HTTP/1.1\r\n" H "\r\n", BW_METHOD_PUT},
        {"DELETE / HTTP/1.1\r\n" H "\r\n", BW_METHOD_DELETE},
        {"CONNECT a.example:443 HTTP/1.1\r\n" H "\r\n", BW_METHOD_CONNECT},
        {"OPTIONS / HTTP/1.1\r\n" H "\r\n", BW_METHOD_OPTIONS},
        {"TRACE / HTTP/1.1\r\n" H "\r\n", BW_METHOD_TRACE},
        {"PATCH / HTTP/1.1\r\n" H "\r\n", BW_METHOD_PATCH},
        {"PROPFIND / HTTP/1.1\r\n" H "\r\n", BW_METHOD_OTHER},
        {"M-SEARCH / HTTP/1.1\r\n" H "\r\n", BW_METHOD_OTHER},
        {"X_Y / HTTP/1.1\r\n" H "\r\n", BW_METHOD_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct parsed p;
        parse_lim(&p, cases[i].req, strlen(cases[i].req), &LIM, NHDR);
        int r = p.r, id = p.req.method_id;
        parsed_free(&p);
        CHECK_INT_EQ(r, BW_HTTP_DONE);
        CHECK_INT_EQ(id, cases[i].id);
    }
}

TEST(content_length_body)
{
    struct parsed p;
    OK(&p, "POST /u HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello");
    CHECK_INT_EQ(p.req.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(p.req.content_length, 5);
    CHECK_INT_EQ(p.req.head_len, 56);
    parsed_free(&p);
    OK(&p, "POST /u HTTP/1.1\r\n" H "content-length:0\r\n\r\n");
    CHECK_INT_EQ(p.req.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(p.req.content_length, 0);
    parsed_free(&p);
    OK(&p, "POST /u HTTP/1.1\r\n" H "Content-Length: \t007 \r\n\r\n");
    CHECK_INT_EQ(p.req.content_length, 7);
    parsed_free(&p);
    OK(&p, "POST /u HTTP/1.1\r\n" H "Content-Length: 9223372036854775807\r\n\r\n");
    CHECK(p.req.content_length == 9223372036854775807ull);
    parsed_free(&p);
}

TEST(chunked_body)
{
    struct parsed p;
    OK(&p, "POST /u HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n");
    CHECK_INT_EQ(p.req.body_kind, BW_BODY_CHUNKED);
    parsed_free(&p);
    OK(&p, "POST /u HTTP/1.1\r\n" H "transfer-encoding:  CHUNKED \r\n\r\n");
    CHECK_INT_EQ(p.req.body_kind, BW_BODY_CHUNKED);
    parsed_free(&p);
}

TEST(http10)
{
    struct parsed p;
    OK(&p, "GET / HTTP/1.0\r\n\r\n");
    CHECK_INT_EQ(p.req.version_minor, 0);
    CHECK(!p.req.keep_alive);
    CHECK_SLICE_EQ(p.req.host, "");
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    CHECK(p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    CHECK(!p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.0\r\n" H "Expect: 100-continue\r\n\r\n");
    CHECK(!p.req.expect_continue); /* RFC 9110 §10.1.1: ignored in 1.0 */
    CHECK_SLICE_EQ(p.req.host, "a.example");
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    CHECK(!p.req.upgrade); /* RFC 9110 §7.8: ignored in 1.0 */
    parsed_free(&p);
}

TEST(connection_tokens)
{
    struct parsed p;
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n");
    CHECK(!p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: foo, CLOSE\r\n\r\n");
    CHECK(!p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: foo\r\nConnection: close\r\n\r\n");
    CHECK(!p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: closed\r\n\r\n");
    CHECK(p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: keep-alive\r\n\r\n");
    CHECK(p.req.keep_alive);
    parsed_free(&p);
}

TEST(upgrade)
{
    struct parsed p;
    OK(&p,
       "GET /ws HTTP/1.1\r\n" H "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    CHECK(p.req.upgrade);
    CHECK(p.req.keep_alive);
    parsed_free(&p);
    OK(&p, "GET /ws HTTP/1.1\r\n" H "Upgrade: websocket\r\n\r\n");
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    OK(&p, "GET /ws HTTP/1.1\r\n" H "Connection: upgrade\r\n\r\n");
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    /* h2c is never an upgrade we pass on (h2c smuggling), in any spelling
     * or company; "h2cx" is another protocol. */
#define H2C(up)                                                                                    \
    "GET / HTTP/1.1\r\n" H "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " up                   \
    "\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    OK(&p, H2C("h2c"));
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    OK(&p, H2C("H2C"));
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    OK(&p, H2C("h2c/2"));
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    OK(&p, H2C("websocket, h2c"));
    CHECK(!p.req.upgrade);
    parsed_free(&p);
    OK(&p, H2C("h2c , websocket"));
    CHECK(!p.req.upgrade);
    parsed_free(&p);
#undef H2C
    OK(&p, "GET / HTTP/1.1\r\n" H "Connection: upgrade\r\nUpgrade: h2cx\r\n\r\n");
    CHECK(p.req.upgrade);
    parsed_free(&p);
}

TEST(expect)
{
    struct parsed p;
    OK(&p, "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    CHECK(p.req.expect_continue);
    parsed_free(&p);
    OK(&p, "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\nexpect:  100-Continue \r\n\r\n");
    CHECK(p.req.expect_continue);
    parsed_free(&p);
    REFUSE("POST / HTTP/1.1\r\n" H "Expect: 100-continue-x\r\n\r\n", 417);
    REFUSE("POST / HTTP/1.1\r\n" H "Expect: foo\r\n\r\n", 417);
    REFUSE("POST / HTTP/1.1\r\n" H "Expect:\r\n\r\n", 417);
    REFUSE("POST / HTTP/1.1\r\n" H "Expect: 100-continue, foo\r\n\r\n", 417);
    REFUSE("POST / HTTP/1.1\r\n" H "Expect: 100-continue\r\nExpect: bar\r\n\r\n", 417);
}

TEST(absolute_form)
{
    struct parsed p;
    OK(&p, "GET http://b.example:8080/p/q?x=1 HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.host, "b.example:8080"); /* RFC 9112 §3.2.2 */
    CHECK_SLICE_EQ(p.req.path, "/p/q");
    CHECK_SLICE_EQ(p.req.query, "x=1");
    CHECK_SLICE_EQ(p.req.target, "http://b.example:8080/p/q?x=1");
    parsed_free(&p);
    OK(&p, "GET HTTPS://b.example HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.host, "b.example");
    CHECK_SLICE_EQ(p.req.path, "/");
    CHECK(!p.req.has_query);
    parsed_free(&p);
    OK(&p, "GET http://b.example?q HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "/");
    CHECK_SLICE_EQ(p.req.query, "q");
    parsed_free(&p);
    /* OPTIONS on an empty path is about the whole server: "*" (§3.2.4). */
    OK(&p, "OPTIONS http://b.example HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "*");
    parsed_free(&p);
    OK(&p, "OPTIONS http://b.example/ HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "/");
    parsed_free(&p);
    OK(&p, "OPTIONS http://b.example?q HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "/");
    parsed_free(&p);
    OK(&p, "GET http://[::1]:80/ HTTP/1.0\r\n\r\n");
    CHECK_SLICE_EQ(p.req.host, "[::1]:80");
    parsed_free(&p);
    /* 1.1 still needs a Host field, and only one */
    REFUSE("GET http://b.example/ HTTP/1.1\r\n\r\n", 400);
    REFUSE("GET http://b.example/ HTTP/1.1\r\n" H H "\r\n", 400);
    REFUSE("GET http://b.example/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    REFUSE("GET http:///p HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET http://u@b.example/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET http://b.example:x/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET ftp://b.example/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET http:/b.example/ HTTP/1.1\r\n" H "\r\n", 400);
}

TEST(authority_and_asterisk_forms)
{
    struct parsed p;
    OK(&p, "CONNECT b.example:443 HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.target, "b.example:443");
    CHECK_SLICE_EQ(p.req.path, "");
    CHECK_SLICE_EQ(p.req.host, "a.example");
    parsed_free(&p);
    OK(&p, "OPTIONS * HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.path, "*");
    parsed_free(&p);
    REFUSE("CONNECT b.example HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("CONNECT /x HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("CONNECT http://b.example:443/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET b.example:443 HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET * HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("OPTIONS *x HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET x HTTP/1.1\r\n" H "\r\n", 400);
}

TEST(fields_kept_as_received)
{
    struct parsed p;
    OK(&p, "GET / HTTP/1.1\r\n" H "X-Empty:\r\nX-Sp: \t a  b \t\r\nX-Obs: caf\xc3\xa9\r\n"
           "x_under.score~: 1\r\n\r\n");
    CHECK_INT_EQ(p.req.nheaders, 5);
    CHECK_SLICE_EQ(p.req.headers[1].name, "X-Empty");
    CHECK_SLICE_EQ(p.req.headers[1].value, "");
    CHECK_SLICE_EQ(p.req.headers[2].value, "a  b");
    CHECK_SLICE_EQ(p.req.headers[3].value, "caf\xc3\xa9");
    CHECK_SLICE_EQ(p.req.headers[4].name, "x_under.score~");
    parsed_free(&p);
}

TEST(host_forms)
{
    struct parsed p;
    OK(&p, "GET / HTTP/1.1\r\nHost: 192.0.2.1:8080\r\n\r\n");
    CHECK_SLICE_EQ(p.req.host, "192.0.2.1:8080");
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n");
    CHECK_SLICE_EQ(p.req.host, "[2001:db8::1]");
    parsed_free(&p);
    OK(&p, "GET / HTTP/1.1\r\nhost: A-b.Example_x~%41:65535\r\n\r\n");
    CHECK_SLICE_EQ(p.req.host, "A-b.Example_x~%41:65535");
    parsed_free(&p);
    /* The root's trailing dot is a valid spelling (the rules drop it). */
    OK(&p, "GET / HTTP/1.1\r\nHost: a.example.:80\r\n\r\n");
    CHECK_SLICE_EQ(p.req.host, "a.example.:80");
    parsed_free(&p);
}

TEST(leading_empty_lines_skipped)
{
    struct parsed p;
    OK(&p, "\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n");
    CHECK_SLICE_EQ(p.req.method, "GET");
    CHECK_INT_EQ(p.req.head_len, 39);
    CHECK_INT_EQ(p.req.method.ptr - p.buf, 4);
    parsed_free(&p);
    /* bounded by the request-line limit, which counts them */
    struct bw_http_limits lim = LIM;
    lim.request_line_bytes = 20;
    char buf[64];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 10; i++)
        memcpy(buf + 2 * i, "\r\n", 2);
    parse_lim(&p, buf, 20, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 414);
    parsed_free(&p);
    parse_lim(&p, buf, 19, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
}

TEST(pipelined_requests)
{
    static const char two[] = "GET /1 HTTP/1.1\r\n" H "\r\nGET /2 HTTP/1.1\r\n" H "\r\n";
    struct parsed p;
    parse_lim(&p, two, sizeof two - 1, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    CHECK_SLICE_EQ(p.req.path, "/1");
    size_t first = p.req.head_len;
    CHECK_INT_EQ(first, 36);
    struct bw_http_scan scan = {0};
    struct bw_http_request r2 = {.headers = p.hdr, .headers_cap = NHDR};
    struct bw_http_error err;
    CHECK_INT_EQ(
        bw_http_parse_request(p.buf + first, sizeof two - 1 - first, &LIM, &scan, &r2, &err),
        BW_HTTP_DONE);
    CHECK_SLICE_EQ(r2.path, "/2");
    parsed_free(&p);
}

/* ---- refusals ---- */

TEST(bare_lf_refused_at_once)
{
    /* Refused as soon as the LF is seen, without waiting for more bytes. */
    struct parsed p;
    PARSE(&p, "GET / HTTP/1.1\n");
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 400);
    CHECK_INT_EQ(p.err.offset, 14);
    parsed_free(&p);
    REFUSE("GET / HTTP/1.1\n\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "\n", 400);
    REFUSE("GET / HTTP/1.1\r\nX: a\nb\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: y\n\r\n", 400);
    REFUSE("\nGET / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("\r\n\nGET / HTTP/1.1\r\n" H "\r\n", 400);
}

TEST(cr_without_lf)
{
    REFUSE("GET / HTTP/1.1\r" H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nX: a\rb\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nX\r: b\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "\r\r\n\r\n", 400);
    REFUSE("GET /\r HTTP/1.1\r\n" H "\r\n", 400);
}

TEST(content_length_with_transfer_encoding)
{
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n",
           400);
}

TEST(content_length_invalid)
{
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\ncontent-length: 6\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5,5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 5a\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length:  \r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775808\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Content-Length: 00000000000000000005\r\n\r\n", 400);
}

TEST(transfer_encoding_invalid)
{
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
           400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: Chunked, CHUNKED\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked,\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: ,chunked\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip,,chunked\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunk ed\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", 400);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 400);
    /* in an HTTP/1.0 request (RFC 9112 §6.1) */
    REFUSE("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(transfer_encoding_unsupported_is_501)
{
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
           501);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: x;a=1 , chunked\r\n\r\n", 501);
    REFUSE("POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity, chunked\r\n\r\n", 501);
}

TEST(obs_fold_and_colon_rules)
{
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\r\n\tb\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n Host: a.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost\t: a.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H ": x\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n", 400);
}

TEST(invalid_characters)
{
    REFUSE("GET / HTTP/1.1\r\n" H "X(y: 1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X\"y: 1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X\x01y: 1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X\xc3\xa9: 1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\x01\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\x1f\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H "X: a\x0b"
           "b\r\n\r\n",
           400);
    /* NUL in a value, and in a name */
    static const char nul_value[] = "GET / HTTP/1.1\r\n" H "X: a\0b\r\n\r\n";
    static const char nul_name[] = "GET / HTTP/1.1\r\n" H "X\0: b\r\n\r\n";
    struct parsed p;
    parse_lim(&p, nul_value, sizeof nul_value - 1, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 400);
    parsed_free(&p);
    parse_lim(&p, nul_name, sizeof nul_name - 1, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 400);
    parsed_free(&p);
}

/* The value and target loops check eight bytes at a time: put each bad byte
 * at every position of a long run so every lane of a word is exercised. */
TEST(invalid_byte_at_every_position)
{
    static const unsigned char bad_value[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f, '\r'};
    static const unsigned char bad_target[] = {0x00, 0x09, 0x1f, 0x7f, 0x80, 0xff, '#'};
    char buf[128];
    for (size_t pos = 0; pos < 24; pos++) {
        for (size_t b = 0; b < sizeof bad_value; b++) {
            int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n" H "X: %s\r\n\r\n",
                             "abcdefghijklmnopqrstuvwx");
            buf[33 + 3 + pos] = (char)bad_value[b];
            struct parsed p;
            parse_lim(&p, buf, (size_t)n, &LIM, NHDR);
            int r = p.r, st = p.err.status;
            parsed_free(&p);
            CHECK_INT_EQ(r, BW_HTTP_ERROR);
            CHECK_INT_EQ(st, 400);
        }
        for (size_t b = 0; b < sizeof bad_target; b++) {
            int n = snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\n" H "\r\n",
                             "abcdefghijklmnopqrstuvwx");
            buf[5 + pos] = (char)bad_target[b];
            struct parsed p;
            parse_lim(&p, buf, (size_t)n, &LIM, NHDR);
            int r = p.r, st = p.err.status;
            parsed_free(&p);
            CHECK_INT_EQ(r, BW_HTTP_ERROR);
            CHECK_INT_EQ(st, 400);
        }
    }
    /* and the good bytes pass in every lane: HTAB and obs-text in values */
    for (size_t pos = 0; pos < 24; pos++) {
        int n = snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\n" H "X: %s\r\n\r\n",
                         "abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx");
        buf[5 + pos] = '~';
        buf[29 + 11 + 17 + 3 + pos] = (pos & 1) ? '\t' : (char)0xff;
        struct parsed p;
        parse_lim(&p, buf, (size_t)n, &LIM, NHDR);
        int r = p.r;
        parsed_free(&p);
        CHECK_INT_EQ(r, BW_HTTP_DONE);
    }
}

TEST(host_rules)
{
    REFUSE("GET / HTTP/1.1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\n" H H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.0\r\n" H H "\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.0\r\nHost: \r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example:8x\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example:123456\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example:80:80\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example,b.example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400);
    /* An empty label: "a..example" is no name DNS has. */
    REFUSE("GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", 400);
    REFUSE("GET / HTTP/1.1\r\nHost: a.example..\r\n\r\n", 400);
    REFUSE("GET http://a..example/ HTTP/1.1\r\n" H "\r\n", 400);
}

TEST(malformed_request_line)
{
    REFUSE("G(T / HTTP/1.1\r\n" H "\r\n", 400);
    /* A token, but not upper case: an origin that upper-cases it would
     * serve a method the rules never saw (nginx refuses these too). */
    REFUSE("get / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("Delete / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET1 / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("PRO.PFIND / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE(" GET / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET  / HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /  HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.1 \r\n" H "\r\n", 400);
    REFUSE("GET\t/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /\tx HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /\x7f HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /\x01 HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET /a#frag HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.x\r\n" H "\r\n", 400);
    REFUSE("GET / http/1.1\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/11\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.10\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/1.\r\n" H "\r\n", 400);
    REFUSE("GET / HTTP/\r\n" H "\r\n", 400);
    REFUSE("GET /\r\n" H "\r\n", 400);
    REFUSE("GET\r\n" H "\r\n", 400);
    REFUSE("GET / x HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("/ HTTP/1.1\r\n" H "\r\n", 400);
    REFUSE("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400);
}

TEST(version_not_supported)
{
    REFUSE("GET / HTTP/2.0\r\n" H "\r\n", 505);
    REFUSE("GET / HTTP/0.9\r\n" H "\r\n", 505);
    REFUSE("GET / HTTP/1.2\r\n" H "\r\n", 505);
    REFUSE("GET / HTTP/9.9\r\n" H "\r\n", 505);
}

/* ---- limits: at the limit accepted, one past refused ---- */

/* Builds "GET /aaa...a HTTP/1.1\r\n" of exactly n bytes into buf, then tail. */
static size_t build(char *buf, size_t line_len, const char *tail)
{
    const char *pre = "GET /", *post = " HTTP/1.1\r\n";
    size_t np = strlen(pre), nq = strlen(post), nt = strlen(tail);
    memcpy(buf, pre, np);
    memset(buf + np, 'a', line_len - np - nq);
    memcpy(buf + line_len - nq, post, nq);
    memcpy(buf + line_len, tail, nt);
    return line_len + nt;
}

TEST(limit_request_line)
{
    struct bw_http_limits lim = LIM;
    lim.request_line_bytes = 64;
    char buf[256];
    struct parsed p;
    size_t n = build(buf, 64, H "\r\n");
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    n = build(buf, 65, H "\r\n");
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 414);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    /* refused as soon as 64 bytes hold no line end, not at the line end */
    parse_lim(&p, buf, 64, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 414);
    parsed_free(&p);
    parse_lim(&p, buf, 63, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
    /* the default limit */
    static char big[BW_HTTP_DEFAULT_REQUEST_LINE_BYTES + 64];
    n = build(big, BW_HTTP_DEFAULT_REQUEST_LINE_BYTES, H "\r\n");
    parse_lim(&p, big, n, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    parsed_free(&p);
    n = build(big, BW_HTTP_DEFAULT_REQUEST_LINE_BYTES + 1, H "\r\n");
    parse_lim(&p, big, n, &LIM, NHDR);
    CHECK_INT_EQ(p.err.status, 414);
    parsed_free(&p);
}

TEST(limit_header_bytes)
{
    struct bw_http_limits lim = LIM;
    lim.header_bytes = 100;
    char buf[256];
    struct parsed p;
    /* line (60) + "Host: a.example\r\n" (17) + "X: " + v + CRLF + CRLF = 100 */
    static const char *fill = "X: 01234567890123456\r\n\r\n"; /* 24 bytes -> 101 */
    size_t n = build(buf, 60, H);
    memcpy(buf + n, fill, strlen(fill));
    n += strlen(fill);
    CHECK_INT_EQ(n, 101);
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 431);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    /* one byte shorter fits exactly */
    n = build(buf, 59, H);
    memcpy(buf + n, fill, strlen(fill));
    n += strlen(fill);
    CHECK_INT_EQ(n, 100);
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    CHECK_INT_EQ(p.req.head_len, 100);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    /* refused as soon as 100 bytes hold no end of head */
    parse_lim(&p, buf, 99, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
    n = build(buf, 60, "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    parse_lim(&p, buf, 100, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 431);
    parsed_free(&p);
    /* a request line longer than the head limit is 414, not 431 */
    lim.request_line_bytes = 1000;
    n = build(buf, 120, H "\r\n");
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.err.status, 414);
    parsed_free(&p);
}

static size_t build_fields(char *buf, size_t nfields)
{
    size_t n = 0;
    memcpy(buf, "GET / HTTP/1.1\r\n" H, 33);
    n = 33;
    for (size_t i = 1; i < nfields; i++)
        n += (size_t)sprintf(buf + n, "X-%zu: v\r\n", i);
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

TEST(limit_header_count)
{
    static char buf[64 * 1024];
    struct parsed p;
    size_t n = build_fields(buf, BW_HTTP_DEFAULT_HEADERS);
    parse_lim(&p, buf, n, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    CHECK_INT_EQ(p.req.nheaders, BW_HTTP_DEFAULT_HEADERS);
    parsed_free(&p);
    n = build_fields(buf, BW_HTTP_DEFAULT_HEADERS + 1);
    parse_lim(&p, buf, n, &LIM, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 431);
    parsed_free(&p);
    /* a smaller configured limit */
    struct bw_http_limits lim = LIM;
    lim.headers = 3;
    n = build_fields(buf, 3);
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    n = build_fields(buf, 4);
    parse_lim(&p, buf, n, &lim, NHDR);
    CHECK_INT_EQ(p.err.status, 431);
    parsed_free(&p);
    CHECK(check_splits(buf, n, &lim) == NULL);
    /* the caller's array is smaller than the limit: the array wins */
    n = build_fields(buf, 5);
    parse_lim(&p, buf, n, &LIM, 5);
    CHECK_INT_EQ(p.r, BW_HTTP_DONE);
    parsed_free(&p);
    n = build_fields(buf, 6);
    parse_lim(&p, buf, n, &LIM, 5);
    CHECK_INT_EQ(p.r, BW_HTTP_ERROR);
    CHECK_INT_EQ(p.err.status, 431);
    parsed_free(&p);
}

TEST(partial_until_complete)
{
    struct parsed p;
    PARSE(&p, "");
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
    PARSE(&p, "GET / HTTP/1.1\r\n" H "\r");
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
    PARSE(&p, "\r\n\r\n");
    CHECK_INT_EQ(p.r, BW_HTTP_PARTIAL);
    parsed_free(&p);
}

/* A long realistic request, split everywhere. */
TEST(realistic_request_splits)
{
    CHECK_SPLITS("POST /api/v1/items?page=2&sort=desc HTTP/1.1\r\n"
                 "Host: api.example.com:8443\r\n"
                 "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n"
                 "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
                 "Accept-Language: en-US,en;q=0.5\r\n"
                 "Cookie: a=1; b=2\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: 17\r\n"
                 "Connection: keep-alive\r\n"
                 "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n"
                 "\r\n"
                 "{\"name\":\"thing\"}\n");
}

int main(void)
{
    RUN(simple_get);
    RUN(path_and_query);
    RUN(methods);
    RUN(content_length_body);
    RUN(chunked_body);
    RUN(http10);
    RUN(connection_tokens);
    RUN(upgrade);
    RUN(expect);
    RUN(absolute_form);
    RUN(authority_and_asterisk_forms);
    RUN(fields_kept_as_received);
    RUN(host_forms);
    RUN(leading_empty_lines_skipped);
    RUN(pipelined_requests);
    RUN(bare_lf_refused_at_once);
    RUN(cr_without_lf);
    RUN(content_length_with_transfer_encoding);
    RUN(content_length_invalid);
    RUN(transfer_encoding_invalid);
    RUN(transfer_encoding_unsupported_is_501);
    RUN(obs_fold_and_colon_rules);
    RUN(invalid_characters);
    RUN(invalid_byte_at_every_position);
    RUN(host_rules);
    RUN(malformed_request_line);
    RUN(version_not_supported);
    RUN(limit_request_line);
    RUN(limit_header_bytes);
    RUN(limit_header_count);
    RUN(partial_until_complete);
    RUN(realistic_request_splits);
    return t_done();
}
