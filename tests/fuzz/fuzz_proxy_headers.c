/* Differential check of head rewriting: whatever request or response head
 * the parser accepts, the head the proxy builds from it for the next hop must
 * parse again, with the same framing, one Host, and no hop-by-hop field left.
 * A difference here is how request smuggling through a proxy starts.
 * The same parsed requests also go through the client-address derivation
 * (client_ip.c: X-Forwarded-For walked right to left through trusted hops,
 * X-Real-IP): an untrusted peer is never replaced, nor a peer by any other
 * source; a derived address is one that prints, parses back and prints the
 * same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"
#include "proxy/client_ip.h"
#include "proxy/headers.h"

enum { MAX_OUT = 64 * 1024 };

static const struct bw_http_limits limits = {
    .request_line_bytes = BW_HTTP_DEFAULT_REQUEST_LINE_BYTES,
    .header_bytes = BW_HTTP_DEFAULT_HEADER_BYTES,
    .headers = BW_HTTP_DEFAULT_HEADERS,
};

static size_t count(const struct bw_http_header *h, size_t n, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (bw_slice_eq_nocase(h[i].name, bw_slice_make(name, strlen(name))))
            c++;
    return c;
}

static void check_no_hop_by_hop(const struct bw_http_header *h, size_t n, bool upgrading)
{
    static const char *const hop[] = {"keep-alive", "proxy-connection", "te", "trailer"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (count(h, n, hop[i]) != 0)
            abort();
    if (!upgrading && (count(h, n, "connection") != 0 || count(h, n, "upgrade") != 0)) {
        /* Only our own "Connection: close" / "keep-alive" may appear. */
        const struct bw_http_header *c = bw_http_find_header(h, n, BW_SLICE_LIT("connection"));
        if (count(h, n, "upgrade") != 0 || count(h, n, "connection") > 1 ||
            !(bw_slice_eq(c->value, BW_SLICE_LIT("close")) ||
              bw_slice_eq(c->value, BW_SLICE_LIT("keep-alive"))))
            abort();
    }
}

static bool cidr(const char *text, struct bw_cidr *c)
{
    return bw_parse_cidr(bw_slice_make(text, strlen(text)), c) == BW_OK;
}

static void check_text(const struct bw_client_addr *a)
{
    size_t n = strnlen(a->text, sizeof a->text);
    struct bw_client_addr back;
    if (n == 0 || n == sizeof a->text || !bw_client_addr_parse(bw_slice_make(a->text, n), &back) ||
        strcmp(back.text, a->text) != 0)
        abort();
}

static void client_ip(const struct bw_http_request *req)
{
    static struct bw_cidr trusted[4];
    static bool ready;
    if (!ready) {
        if (!cidr("10.0.0.0/8", &trusted[0]) || !cidr("2001:db8::/32", &trusted[1]) ||
            !cidr("127.0.0.1/32", &trusted[2]) || !cidr("::ffff:192.0.2.0/120", &trusted[3]))
            abort();
        ready = true;
    }
    struct bw_client_addr peer;
    if (!bw_client_addr_parse(BW_SLICE_LIT("10.0.0.1"), &peer))
        abort();
    for (int from = BW_CLIENT_IP_PEER; from < BW_CLIENT_IP__COUNT; from++) {
        struct bw_config_client_ip cfg = {
            .from = (enum bw_client_ip_source)from, .trusted = trusted, .ntrusted = 4};
        struct bw_client_addr c = peer;
        bw_client_ip_from_headers(&cfg, false, req->headers, req->nheaders, &c);
        if (memcmp(&c, &peer, sizeof c) != 0)
            abort();
        bw_client_ip_from_headers(&cfg, true, req->headers, req->nheaders, &c);
        check_text(&c);
        if (memcmp(&c, &peer, sizeof c) == 0)
            continue;
        if (from != BW_CLIENT_IP_X_FORWARDED_FOR && from != BW_CLIENT_IP_X_REAL_IP)
            abort();
    }
    /* Every header value as an address: what parses prints and parses back. */
    for (size_t i = 0; i < req->nheaders; i++) {
        struct bw_client_addr a;
        if (bw_client_addr_parse(req->headers[i].value, &a))
            check_text(&a);
    }
}

static void fuzz_request(const char *in, size_t len)
{
    static struct bw_http_header h1[BW_HTTP_DEFAULT_HEADERS], h2[BW_HTTP_DEFAULT_HEADERS + 8];
    struct bw_http_request req = {.headers = h1, .headers_cap = BW_HTTP_DEFAULT_HEADERS};
    struct bw_http_scan scan = {0};
    struct bw_http_error err;
    if (bw_http_parse_request(in, len, &limits, &scan, &req, &err) != BW_HTTP_DONE)
        return;
    client_ip(&req);
    static char out[MAX_OUT];
    char xff[1024];
    struct bw_upstream_head_params p = {
        .xff_prefix = bw_join_xff(&req, xff, sizeof xff),
        .peer_text = BW_SLICE_LIT("192.0.2.1"),
        .proto = BW_SLICE_LIT("http"),
        .default_host = BW_SLICE_LIT("app"),
    };
    struct bw_head_out o = {.buf = out, .cap = sizeof out};
    if (!bw_build_upstream_request(&o, &req, &p))
        return; /* too big for the buffer: refused, never truncated */
    struct bw_http_limits big = {.request_line_bytes = MAX_OUT,
                                 .header_bytes = MAX_OUT,
                                 .headers = BW_HTTP_DEFAULT_HEADERS + 8};
    struct bw_http_request up = {.headers = h2, .headers_cap = BW_HTTP_DEFAULT_HEADERS + 8};
    struct bw_http_scan scan2 = {0};
    if (bw_http_parse_request(out, o.len, &big, &scan2, &up, &err) != BW_HTTP_DONE)
        abort();
    if (up.head_len != o.len || up.version_minor != 1)
        abort();
    if (up.body_kind != req.body_kind || up.content_length != req.content_length)
        abort();
    if (count(up.headers, up.nheaders, "host") != 1)
        abort();
    if (count(up.headers, up.nheaders, "x-forwarded-for") != 1)
        abort();
    check_no_hop_by_hop(up.headers, up.nheaders, req.upgrade);
}

static void fuzz_response(const char *in, size_t len, enum bw_http_method m, bool http10)
{
    static struct bw_http_header h1[BW_HTTP_DEFAULT_HEADERS], h2[BW_HTTP_DEFAULT_HEADERS + 8];
    struct bw_http_response resp = {.headers = h1, .headers_cap = BW_HTTP_DEFAULT_HEADERS};
    struct bw_http_scan scan = {0};
    struct bw_http_error err;
    if (bw_http_parse_response(in, len, &limits, m, &scan, &resp, &err) != BW_HTTP_DONE)
        return;
    bool dechunk = http10 && resp.body_kind == BW_BODY_CHUNKED;
    bool keep = !dechunk && resp.body_kind != BW_BODY_UNTIL_CLOSE;
    static char out[MAX_OUT];
    struct bw_head_out o = {.buf = out, .cap = sizeof out};
    if (!bw_build_client_response(&o, &resp, http10, keep, dechunk))
        return;
    struct bw_http_limits big = {.request_line_bytes = MAX_OUT,
                                 .header_bytes = MAX_OUT,
                                 .headers = BW_HTTP_DEFAULT_HEADERS + 8};
    struct bw_http_response back = {.headers = h2, .headers_cap = BW_HTTP_DEFAULT_HEADERS + 8};
    struct bw_http_scan scan2 = {0};
    if (bw_http_parse_response(out, o.len, &big, m, &scan2, &back, &err) != BW_HTTP_DONE)
        abort();
    if (back.head_len != o.len || back.status != resp.status)
        abort();
    if (!dechunk &&
        (back.body_kind != resp.body_kind ||
         (resp.body_kind == BW_BODY_LENGTH && back.content_length != resp.content_length)))
        abort();
    if (dechunk && back.body_kind != BW_BODY_UNTIL_CLOSE)
        abort();
    check_no_hop_by_hop(back.headers, back.nheaders, resp.status == 101 && resp.upgrade);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* First byte: which side, and for responses the request method and
     * client version. */
    uint8_t sel = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if ((sel & 1) == 0) {
        fuzz_request(in, len);
    } else {
        enum bw_http_method m = (sel >> 1) & 1 ? BW_METHOD_HEAD : BW_METHOD_GET;
        fuzz_response(in, len, m, (sel >> 2) & 1);
    }
    return 0;
}
