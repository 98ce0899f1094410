/* Fuzzes bw_http_parse_response with invariants: one-shot, split-in-two and
 * (short inputs) byte-at-a-time parses agree; on DONE head_len <= len, the
 * head ends in CRLF CRLF, slices lie inside the input, the status is
 * 100..999, UNTIL_CLOSE never keeps the connection, bodiless cases are NONE;
 * every refusal is a 502; what docs/http.md says is refused is absent from a
 * DONE head (bare LF, lone CR, non-tchar names, control bytes in values,
 * Content-Length with Transfer-Encoding). The request method and limits
 * come from the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"
#include "http_oracle.h"

#define NHDR 64

struct run {
    enum bw_http_parse_result r;
    struct bw_http_response resp;
    struct bw_http_header hdr[NHDR];
    struct bw_http_error err;
    char *buf;
    size_t len;
};

static void call(struct run *x, struct bw_http_scan *scan, const uint8_t *data, size_t n,
                 const struct bw_http_limits *lim, enum bw_http_method m)
{
    free(x->buf);
    x->buf = malloc(n ? n : 1);
    memcpy(x->buf, data, n);
    x->len = n;
    x->r = bw_http_parse_response(x->buf, n, lim, m, scan, &x->resp, &x->err);
}

static void start(struct run *x, size_t cap)
{
    memset(x, 0, sizeof *x);
    x->resp.headers = x->hdr;
    x->resp.headers_cap = cap;
}

static bool inside(const struct run *x, bw_slice s)
{
    return s.ptr >= x->buf && s.len <= x->len && s.ptr + s.len <= x->buf + x->len;
}

static void check_refusals(const struct run *x)
{
    const struct bw_http_response *p = &x->resp;
    oracle_check_line_ends(x->buf, p->head_len);
    oracle_check_fields(p->headers, p->nheaders);
    size_t cl = 0, te = 0;
    for (size_t i = 0; i < p->nheaders; i++) {
        const struct bw_http_header *h = &p->headers[i];
        cl += bw_slice_eq_nocase(h->name, BW_SLICE_LIT("content-length"));
        te += bw_slice_eq_nocase(h->name, BW_SLICE_LIT("transfer-encoding"));
    }
    if ((p->body_kind == BW_BODY_LENGTH && (cl == 0 || p->content_length > INT64_MAX)) ||
        (p->body_kind == BW_BODY_CHUNKED && te == 0))
        abort();
}

static void check_invariants(const struct run *x, const struct bw_http_limits *lim, size_t cap,
                             enum bw_http_method m)
{
    if (x->r == BW_HTTP_ERROR) {
        if (x->err.status != 502 || !x->err.reason || x->err.offset > x->len)
            abort();
        return;
    }
    if (x->r != BW_HTTP_DONE)
        return;
    const struct bw_http_response *p = &x->resp;
    if (p->head_len > x->len || p->head_len < 4 ||
        memcmp(x->buf + p->head_len - 4, "\r\n\r\n", 4) != 0)
        abort();
    if (p->status < 100 || p->status > 999 || !inside(x, p->reason))
        abort();
    if (p->nheaders > lim->headers || p->nheaders > cap || p->body_kind >= BW_BODY__COUNT)
        abort();
    if (p->body_kind == BW_BODY_UNTIL_CLOSE && p->keep_alive)
        abort();
    if ((m == BW_METHOD_HEAD || p->status < 200 || p->status == 204 || p->status == 304) &&
        p->body_kind != BW_BODY_NONE)
        abort();
    if (p->upgrade && p->status != 101)
        abort();
    for (size_t i = 0; i < p->nheaders; i++)
        if (!inside(x, p->headers[i].name) || !inside(x, p->headers[i].value) ||
            p->headers[i].name.len == 0)
            abort();
    check_refusals(x);
}

static bool slice_same(const struct run *a, bw_slice sa, const struct run *b, bw_slice sb)
{
    return sa.len == sb.len && sa.ptr - a->buf == sb.ptr - b->buf;
}

static void check_same(const struct run *a, const struct run *b)
{
    if (a->r != b->r)
        abort();
    if (a->r == BW_HTTP_ERROR) {
        if (a->err.status != b->err.status || a->err.offset != b->err.offset ||
            strcmp(a->err.reason, b->err.reason) != 0)
            abort();
        return;
    }
    if (a->r != BW_HTTP_DONE)
        return;
    const struct bw_http_response *x = &a->resp, *y = &b->resp;
    if (x->version_minor != y->version_minor || x->status != y->status ||
        x->nheaders != y->nheaders || x->body_kind != y->body_kind ||
        x->content_length != y->content_length || x->keep_alive != y->keep_alive ||
        x->upgrade != y->upgrade || x->head_len != y->head_len ||
        !slice_same(a, x->reason, b, y->reason))
        abort();
    for (size_t i = 0; i < x->nheaders; i++)
        if (!slice_same(a, x->headers[i].name, b, y->headers[i].name) ||
            !slice_same(a, x->headers[i].value, b, y->headers[i].value))
            abort();
}

static void run_with(const uint8_t *data, size_t size, const struct bw_http_limits *lim, size_t cap,
                     enum bw_http_method m, uint64_t h)
{
    struct run whole, step;
    struct bw_http_scan scan = {0};
    start(&whole, cap);
    call(&whole, &scan, data, size, lim, m);
    check_invariants(&whole, lim, cap, m);

    /* split in two, or (odd h) grown by 1..64 bytes at a time, as reads
     * arrive: each call on a fresh exact-size copy of a longer prefix, the
     * scan state carried over */
    start(&step, cap);
    memset(&scan, 0, sizeof scan);
    step.r = BW_HTTP_PARTIAL;
    uint64_t s = h;
    for (size_t k = 0, prev = 0; step.r == BW_HTTP_PARTIAL && k < size; prev = k) {
        k = oracle_next_prefix(&s, h, k, size);
        call(&step, &scan, data, k, lim, m);
        /* DONE as soon as the prefix holds the head */
        if (step.r == BW_HTTP_DONE && (step.resp.head_len > k || step.resp.head_len <= prev))
            abort();
    }
    if (size)
        check_same(&whole, &step);
    free(step.buf);

    if (size <= 300) {
        start(&step, cap);
        memset(&scan, 0, sizeof scan);
        step.r = BW_HTTP_PARTIAL;
        for (size_t j = 1; j <= size && step.r == BW_HTTP_PARTIAL; j++) {
            call(&step, &scan, data, j, lim, m);
            if (step.r == BW_HTTP_DONE && step.resp.head_len != j)
                abort();
        }
        if (size)
            check_same(&whole, &step);
        free(step.buf);
    }

    if (whole.r == BW_HTTP_DONE) {
        start(&step, cap);
        memset(&scan, 0, sizeof scan);
        call(&step, &scan, data, whole.resp.head_len, lim, m);
        check_same(&whole, &step);
        free(step.buf);
    }
    free(whole.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    /* GET most of the time; HEAD and CONNECT change the body rules */
    static const enum bw_http_method methods[] = {BW_METHOD_GET, BW_METHOD_GET, BW_METHOD_POST,
                                                  BW_METHOD_HEAD, BW_METHOD_CONNECT};
    enum bw_http_method m = methods[(h >> 48) % 5];

    static const struct bw_http_limits def = {
        .request_line_bytes = BW_HTTP_DEFAULT_REQUEST_LINE_BYTES,
        .header_bytes = BW_HTTP_DEFAULT_HEADER_BYTES,
        .headers = BW_HTTP_DEFAULT_HEADERS,
    };
    run_with(data, size, &def, NHDR, m, h);

    struct bw_http_limits small = {
        .request_line_bytes = 8 + (h >> 8) % 120,
        .header_bytes = 16 + (h >> 16) % 400,
        .headers = (h >> 32) % 12,
    };
    run_with(data, size, &small, 1 + (h >> 40) % NHDR, m, h >> 3);
    return 0;
}
