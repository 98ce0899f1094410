/* Fuzzes bw_http_parse_request and checks invariants, not just survival:
 *   - one-shot, split-in-two (at a position derived from the input) and,
 *     for short inputs, byte-at-a-time parses give the same result;
 *   - DONE: head_len <= len, the head ends in CRLF CRLF, every slice lies
 *     inside the input (path may be the static "/" of an absolute-form
 *     target), counts and enums are in range, and parsing exactly the head
 *     again gives the same result;
 *   - DONE also means what docs/http.md promises to refuse is absent: no
 *     bare LF or lone CR in the head, a method of [A-Z_-], a target without
 *     controls, spaces, bytes >= 0x80 or '#', tchar field names, values
 *     without controls other than HTAB, one Host, at most one
 *     Content-Length and never with Transfer-Encoding, chunked only in 1.1;
 *   - ERROR: a request status, a reason, an offset inside the input.
 * Each call gets an exact-size copy so ASan flags any read past len. Runs
 * with the default limits and with small limits derived from the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"
#include "http_oracle.h"

#define NHDR 64

struct run {
    enum bw_http_parse_result r;
    struct bw_http_request req;
    struct bw_http_header hdr[NHDR];
    struct bw_http_error err;
    char *buf;
    size_t len;
};

static void call(struct run *x, struct bw_http_scan *scan, const uint8_t *data, size_t n,
                 const struct bw_http_limits *lim)
{
    free(x->buf);
    x->buf = malloc(n ? n : 1);
    memcpy(x->buf, data, n);
    x->len = n;
    x->r = bw_http_parse_request(x->buf, n, lim, scan, &x->req, &x->err);
}

static void start(struct run *x, size_t cap)
{
    memset(x, 0, sizeof *x);
    x->req.headers = x->hdr;
    x->req.headers_cap = cap;
}

static bool inside(const struct run *x, bw_slice s)
{
    return s.ptr >= x->buf && s.len <= x->len && s.ptr + s.len <= x->buf + x->len;
}

static size_t count(const struct bw_http_request *q, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < q->nheaders; i++)
        c += bw_slice_eq_nocase(q->headers[i].name, bw_slice_make(name, strlen(name)));
    return c;
}

/* What docs/http.md says a request is refused for, checked on a DONE. */
static void check_refusals(const struct run *x)
{
    const struct bw_http_request *q = &x->req;
    oracle_check_line_ends(x->buf, q->head_len);
    for (size_t i = 0; i < q->method.len; i++) {
        char c = q->method.ptr[i];
        if (!((c >= 'A' && c <= 'Z') || c == '_' || c == '-'))
            abort();
    }
    for (size_t i = 0; i < q->target.len; i++) {
        unsigned char c = (unsigned char)q->target.ptr[i];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            abort();
    }
    oracle_check_fields(q->headers, q->nheaders);
    size_t cl = count(q, "content-length"), te = count(q, "transfer-encoding");
    if (count(q, "host") > 1 || cl > 1 || (cl && te))
        abort();
    if (q->body_kind == BW_BODY_CHUNKED && (q->version_minor != 1 || te == 0))
        abort();
    if (q->body_kind == BW_BODY_LENGTH && (cl != 1 || q->content_length > INT64_MAX))
        abort();
}

static void check_invariants(const struct run *x, const struct bw_http_limits *lim, size_t cap)
{
    if (x->r == BW_HTTP_ERROR) {
        switch (x->err.status) {
        case 400:
        case 414:
        case 417:
        case 431:
        case 501:
        case 505:
            break;
        default:
            abort();
        }
        if (!x->err.reason || x->err.offset > x->len)
            abort();
        return;
    }
    if (x->r != BW_HTTP_DONE)
        return;
    const struct bw_http_request *q = &x->req;
    if (q->head_len > x->len || q->head_len < 4 ||
        memcmp(x->buf + q->head_len - 4, "\r\n\r\n", 4) != 0)
        abort();
    if (!inside(x, q->method) || !inside(x, q->target) || !inside(x, q->query) ||
        !inside(x, q->host))
        abort();
    if (!inside(x, q->path) && !(q->path.len == 1 && q->path.ptr[0] == '/'))
        abort();
    if (q->method.len == 0 || q->target.len == 0 || q->method_id >= BW_METHOD__COUNT)
        abort();
    if (q->version_minor > 1 || q->nheaders > lim->headers || q->nheaders > cap)
        abort();
    if (q->body_kind != BW_BODY_NONE && q->body_kind != BW_BODY_LENGTH &&
        q->body_kind != BW_BODY_CHUNKED)
        abort();
    if (q->version_minor == 1 && q->host.len == 0)
        abort();
    for (size_t i = 0; i < q->nheaders; i++)
        if (!inside(x, q->headers[i].name) || !inside(x, q->headers[i].value) ||
            q->headers[i].name.len == 0)
            abort();
    check_refusals(x);
}

static bool slice_same(const struct run *a, bw_slice sa, const struct run *b, bw_slice sb)
{
    if (sa.len != sb.len || inside(a, sa) != inside(b, sb))
        return false;
    if (inside(a, sa))
        return sa.ptr - a->buf == sb.ptr - b->buf;
    return memcmp(sa.ptr, sb.ptr, sa.len) == 0;
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
    const struct bw_http_request *x = &a->req, *y = &b->req;
    if (!slice_same(a, x->method, b, y->method) || !slice_same(a, x->target, b, y->target) ||
        !slice_same(a, x->path, b, y->path) || !slice_same(a, x->query, b, y->query) ||
        !slice_same(a, x->host, b, y->host))
        abort();
    if (x->method_id != y->method_id || x->has_query != y->has_query ||
        x->version_minor != y->version_minor || x->nheaders != y->nheaders ||
        x->body_kind != y->body_kind || x->content_length != y->content_length ||
        x->keep_alive != y->keep_alive || x->expect_continue != y->expect_continue ||
        x->upgrade != y->upgrade || x->head_len != y->head_len)
        abort();
    for (size_t i = 0; i < x->nheaders; i++)
        if (!slice_same(a, x->headers[i].name, b, y->headers[i].name) ||
            !slice_same(a, x->headers[i].value, b, y->headers[i].value))
            abort();
}

static void run_with(const uint8_t *data, size_t size, const struct bw_http_limits *lim, size_t cap,
                     uint64_t h)
{
    struct run whole, step;
    struct bw_http_scan scan = {0};
    start(&whole, cap);
    call(&whole, &scan, data, size, lim);
    check_invariants(&whole, lim, cap);

    /* split in two, or (odd h) grown by 1..64 bytes at a time, as reads
     * arrive: each call on a fresh exact-size copy of a longer prefix, the
     * scan state carried over */
    start(&step, cap);
    memset(&scan, 0, sizeof scan);
    step.r = BW_HTTP_PARTIAL;
    uint64_t s = h;
    for (size_t k = 0, prev = 0; step.r == BW_HTTP_PARTIAL && k < size; prev = k) {
        k = oracle_next_prefix(&s, h, k, size);
        call(&step, &scan, data, k, lim);
        /* DONE as soon as the prefix holds the head */
        if (step.r == BW_HTTP_DONE && (step.req.head_len > k || step.req.head_len <= prev))
            abort();
    }
    if (size)
        check_same(&whole, &step);
    free(step.buf);

    /* byte at a time */
    if (size <= 300) {
        start(&step, cap);
        memset(&scan, 0, sizeof scan);
        step.r = BW_HTTP_PARTIAL;
        for (size_t j = 1; j <= size && step.r == BW_HTTP_PARTIAL; j++) {
            call(&step, &scan, data, j, lim);
            if (step.r == BW_HTTP_DONE && step.req.head_len != j)
                abort(); /* DONE exactly when the head completes */
        }
        if (size)
            check_same(&whole, &step);
        free(step.buf);
    }

    /* the head alone parses to the same result */
    if (whole.r == BW_HTTP_DONE) {
        start(&step, cap);
        memset(&scan, 0, sizeof scan);
        call(&step, &scan, data, whole.req.head_len, lim);
        check_same(&whole, &step);
        free(step.buf);
    }
    free(whole.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;

    static const struct bw_http_limits def = {
        .request_line_bytes = BW_HTTP_DEFAULT_REQUEST_LINE_BYTES,
        .header_bytes = BW_HTTP_DEFAULT_HEADER_BYTES,
        .headers = BW_HTTP_DEFAULT_HEADERS,
    };
    run_with(data, size, &def, NHDR, h);

    struct bw_http_limits small = {
        .request_line_bytes = 8 + (h >> 8) % 120,
        .header_bytes = 16 + (h >> 16) % 400,
        .headers = (h >> 32) % 12,
    };
    run_with(data, size, &small, 1 + (h >> 40) % NHDR, h >> 3);
    return 0;
}
