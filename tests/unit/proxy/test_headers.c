/* Head rewriting across the proxy (src/proxy/headers.c): real heads are
 * parsed with the HTTP/1 parser, rewritten, and every built head is parsed
 * again to prove it is valid HTTP before its fields are checked. */
#include <stdlib.h>

#include "http/http1.h"
#include "proxy/headers.h"
#include "test.h"

#define NHDR 128

static const struct bw_http_limits LIM = {
    .request_line_bytes = BW_HTTP_DEFAULT_REQUEST_LINE_BYTES,
    .header_bytes = BW_HTTP_DEFAULT_HEADER_BYTES,
    .headers = BW_HTTP_DEFAULT_HEADERS,
};

struct req {
    struct bw_http_request r;
    struct bw_http_header hdr[NHDR];
    char buf[8192];
    size_t len;
};

struct resp {
    struct bw_http_response r;
    struct bw_http_header hdr[NHDR];
    char buf[8192];
    size_t len;
};

static bool parse_req(struct req *q, const char *s, size_t n)
{
    memset(q, 0, sizeof *q);
    if (n > sizeof q->buf)
        return false;
    memcpy(q->buf, s, n);
    q->len = n;
    q->r.headers = q->hdr;
    q->r.headers_cap = NHDR;
    struct bw_http_scan scan = {0};
    struct bw_http_error err;
    enum bw_http_parse_result r = bw_http_parse_request(q->buf, n, &LIM, &scan, &q->r, &err);
    if (r != BW_HTTP_DONE) {
        printf("     request did not parse (%d): %s\n", (int)r,
               r == BW_HTTP_ERROR ? err.reason : "partial");
        return false;
    }
    /* A built head must be exactly one head, nothing after it. */
    return q->r.head_len <= n;
}

static bool parse_resp(struct resp *q, const char *s, size_t n, enum bw_http_method m)
{
    memset(q, 0, sizeof *q);
    if (n > sizeof q->buf)
        return false;
    memcpy(q->buf, s, n);
    q->len = n;
    q->r.headers = q->hdr;
    q->r.headers_cap = NHDR;
    struct bw_http_scan scan = {0};
    struct bw_http_error err;
    enum bw_http_parse_result r = bw_http_parse_response(q->buf, n, &LIM, m, &scan, &q->r, &err);
    if (r != BW_HTTP_DONE) {
        printf("     response did not parse (%d): %s\n", (int)r,
               r == BW_HTTP_ERROR ? err.reason : "partial");
        return false;
    }
    return true;
}

#define PARSE_REQ(q, lit) parse_req((q), (lit), sizeof(lit) - 1)
#define PARSE_RESP(q, lit, m) parse_resp((q), (lit), sizeof(lit) - 1, (m))

static size_t count(const struct bw_http_header *h, size_t n, const char *name)
{
    size_t c = 0;
    bw_slice s = bw_slice_make(name, strlen(name));
    for (size_t i = 0; i < n; i++)
        if (bw_slice_eq_nocase(h[i].name, s))
            c++;
    return c;
}

/* The value of the only field with this name; "<absent>" or "<repeated>". */
static bw_slice value(const struct bw_http_header *h, size_t n, const char *name)
{
    size_t c = count(h, n, name);
    if (c == 0)
        return BW_SLICE_LIT("<absent>");
    if (c > 1)
        return BW_SLICE_LIT("<repeated>");
    return bw_http_find_header(h, n, bw_slice_make(name, strlen(name)))->value;
}

static const struct bw_upstream_head_params PLAIN = {
    .xff_prefix = {"", 0},
    .peer_text = {"192.0.2.7", 9},
    .proto = {"http", 4},
    .default_host = {"app", 3},
};

/* Builds the upstream head of `in` and parses it back into *out. */
static bool upstream(const struct req *in, const struct bw_upstream_head_params *p, struct req *out)
{
    char buf[8192];
    struct bw_head_out o = {.buf = buf, .cap = sizeof buf};
    if (!bw_build_upstream_request(&o, &in->r, p))
        return false;
    if (o.overflow || o.len == 0)
        return false;
    if (!parse_req(out, buf, o.len))
        return false;
    return out->r.head_len == o.len;
}

static bool client(const struct resp *in, bool http10, bool keep_alive, bool dechunk,
                   enum bw_http_method m, struct resp *out)
{
    char buf[8192];
    struct bw_head_out o = {.buf = buf, .cap = sizeof buf};
    if (!bw_build_client_response(&o, &in->r, http10, keep_alive, dechunk))
        return false;
    if (!parse_resp(out, buf, o.len, m))
        return false;
    return out->r.head_len == o.len;
}

#define UH(q) (q).r.headers, (q).r.nheaders

/* ---- upstream request ---------------------------------------------------- */

TEST(http10_without_host_gets_upstream_name)
{
    /* HTTP/1.1 upstream requires Host; a 1.0 client may omit it. */
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET /x HTTP/1.0\r\nAccept: */*\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.host, "app");
    CHECK_SLICE_EQ(value(UH(out), "host"), "app");
}

TEST(request_line_and_version)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET /a/b?x=1 HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.method, "GET");
    CHECK_SLICE_EQ(out.r.target, "/a/b?x=1");
    CHECK_INT_EQ(out.r.version_minor, 1);
    CHECK_SLICE_EQ(value(UH(out), "host"), "a.example");
    CHECK_SLICE_EQ(value(UH(out), "accept"), "*/*");
    CHECK(out.r.keep_alive);
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_NONE);
}

TEST(http10_request_goes_up_as_http11)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(out.r.version_minor, 1);
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK_SLICE_EQ(value(UH(out), "host"), "a.example");
}

TEST(hop_by_hop_fields_removed)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\n"
                         "Host: a.example\r\n"
                         "Connection: keep-alive\r\n"
                         "Keep-Alive: timeout=5\r\n"
                         "Proxy-Connection: keep-alive\r\n"
                         "TE: trailers\r\n"
                         "Trailer: X-Sum\r\n"
                         "Upgrade: websocket\r\n"
                         "X-Keep: 1\r\n"
                         "\r\n"));
    CHECK(!in.r.upgrade);
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK_INT_EQ(count(UH(out), "keep-alive"), 0);
    CHECK_INT_EQ(count(UH(out), "proxy-connection"), 0);
    CHECK_INT_EQ(count(UH(out), "te"), 0);
    CHECK_INT_EQ(count(UH(out), "trailer"), 0);
    CHECK_INT_EQ(count(UH(out), "upgrade"), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-keep"), "1");
}

TEST(fields_named_by_connection_removed_case_insensitively)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\n"
                         "Host: a.example\r\n"
                         "CONNECTION: X-Secret-A, x-secret-b\r\n"
                         "x-secret-a: 1\r\n"
                         "X-SECRET-B: 2\r\n"
                         "connection: X-Secret-C\r\n"
                         "X-Secret-C: 3\r\n"
                         "X-Secret-D: 4\r\n"
                         "\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(count(UH(out), "x-secret-a"), 0);
    CHECK_INT_EQ(count(UH(out), "x-secret-b"), 0);
    CHECK_INT_EQ(count(UH(out), "x-secret-c"), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-secret-d"), "4");
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
}

/* More Connection elements than the builder gathers at once (8): every one
 * still removes its field, empty elements and whitespace included. */
TEST(many_fields_named_by_connection_removed)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\n"
                         "Host: a.example\r\n"
                         "Connection: x-1, X-2 ,x-3,, x-4,x-5\r\n"
                         "Connection: x-6, x-7, x-8, x-9,\tX-10\r\n"
                         "X-1: 1\r\nX-2: 2\r\nX-3: 3\r\nX-4: 4\r\nX-5: 5\r\n"
                         "X-6: 6\r\nX-7: 7\r\nX-8: 8\r\nX-9: 9\r\nX-10: 10\r\n"
                         "X-11: 11\r\nx-3: 3b\r\nX-: 0\r\nX-100: 100\r\nx: x\r\n"
                         "\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    const char *gone[] = {"x-1", "x-2", "x-3", "x-4", "x-5", "x-6", "x-7", "x-8", "x-9", "x-10"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        CHECK_INT_EQ(count(UH(out), gone[i]), 0);
    /* Names that share a prefix with a listed one, or sort next to it. */
    CHECK_SLICE_EQ(value(UH(out), "x-11"), "11");
    CHECK_SLICE_EQ(value(UH(out), "x-"), "0");
    CHECK_SLICE_EQ(value(UH(out), "x-100"), "100");
    CHECK_SLICE_EQ(value(UH(out), "x"), "x");
    struct resp rin, rout;
    CHECK(PARSE_RESP(&rin,
                     "HTTP/1.1 200 OK\r\nConnection: a, b, c, d, e, f, g, h, i, X-Internal\r\n"
                     "X-Internal: s3cret\r\nH: 1\r\nX-Pass: y\r\nContent-Length: 0\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&rin, false, true, false, BW_METHOD_GET, &rout));
    CHECK_INT_EQ(count(UH(rout), "x-internal"), 0);
    CHECK_INT_EQ(count(UH(rout), "h"), 0);
    CHECK_SLICE_EQ(value(UH(rout), "x-pass"), "y");
}

/* Connection may name Content-Length, but dropping it would leave the body
 * bytes on the upstream connection to be read as the next request: request
 * smuggling past every rule that saw only the outer request. */
TEST(connection_cannot_remove_content_length)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "POST /x HTTP/1.1\r\n"
                         "Host: a.example\r\n"
                         "Connection: Content-Length, close\r\n"
                         "Content-Length: 42\r\n"
                         "\r\n"));
    CHECK_INT_EQ(in.r.body_kind, BW_BODY_LENGTH);
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(out.r.content_length, 42);
}

TEST(connection_cannot_remove_host)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: host\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "host"), "a.example");
}

TEST(xff_without_prefix_is_peer_only)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\n"
                         "X-Forwarded-For: 6.6.6.6\r\n"
                         "x-forwarded-for: 7.7.7.7, 8.8.8.8\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-for"), "192.0.2.7");
}

TEST(xff_with_prefix_appends_peer)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\n"
                         "X-Forwarded-For: 6.6.6.6\r\n"
                         "x-forwarded-for: 7.7.7.7, 8.8.8.8\r\n\r\n"));
    char xb[256];
    bw_slice joined = bw_join_xff(&in.r, xb, sizeof xb);
    CHECK_SLICE_EQ(joined, "6.6.6.6, 7.7.7.7, 8.8.8.8");
    struct bw_upstream_head_params p = PLAIN;
    p.xff_prefix = joined;
    p.peer_text = BW_SLICE_LIT("10.0.0.1");
    CHECK(upstream(&in, &p, &out));
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-for"), "6.6.6.6, 7.7.7.7, 8.8.8.8, 10.0.0.1");
}

/* An application behind bulwark reads these to learn the client's address,
 * host, port or scheme: from a client they are forged. */
TEST(forwarding_fields_pass_from_trusted_peers_only)
{
    static const char *const names[] = {"forwarded", "x-real-ip", "x-forwarded-host",
                                        "x-forwarded-port"};
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\n"
                         "Forwarded: for=127.0.0.1;host=admin.internal\r\n"
                         "X-Real-IP: 127.0.0.1\r\n"
                         "X-Forwarded-Host: admin.internal\r\n"
                         "x-forwarded-port: 443\r\n"
                         "X-Forwarded-Server: kept\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK_INT_EQ(count(UH(out), names[i]), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-for"), "192.0.2.7");
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-server"), "kept");
    struct bw_upstream_head_params p = PLAIN;
    p.peer_trusted = true;
    CHECK(upstream(&in, &p, &out));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK_INT_EQ(count(UH(out), names[i]), 1);
    CHECK_SLICE_EQ(value(UH(out), "x-real-ip"), "127.0.0.1");
    CHECK_SLICE_EQ(value(UH(out), "forwarded"), "for=127.0.0.1;host=admin.internal");
}

TEST(options_on_an_empty_absolute_path_goes_up_as_asterisk)
{
    struct req in;
    char buf[1024];
    struct bw_head_out o = {.buf = buf, .cap = sizeof buf};
    CHECK(PARSE_REQ(&in, "OPTIONS http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"));
    CHECK(bw_build_upstream_request(&o, &in.r, &PLAIN));
    CHECK(o.len > 22 && memcmp(buf, "OPTIONS * HTTP/1.1\r\n", 20) == 0);
    o.len = 0;
    CHECK(PARSE_REQ(&in, "OPTIONS http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"));
    CHECK(bw_build_upstream_request(&o, &in.r, &PLAIN));
    CHECK(memcmp(buf, "OPTIONS / HTTP/1.1\r\n", 20) == 0);
    o.len = 0;
    CHECK(PARSE_REQ(&in, "OPTIONS http://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n"));
    CHECK(bw_build_upstream_request(&o, &in.r, &PLAIN));
    CHECK(memcmp(buf, "OPTIONS /?x=1 HTTP/1.1\r\n", 24) == 0);
    o.len = 0;
    CHECK(PARSE_REQ(&in, "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"));
    CHECK(bw_build_upstream_request(&o, &in.r, &PLAIN));
    CHECK(memcmp(buf, "GET / HTTP/1.1\r\n", 16) == 0);
}

TEST(join_xff_edges)
{
    struct req in;
    char xb[64];
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    CHECK_INT_EQ(bw_join_xff(&in.r, xb, sizeof xb).len, 0);
    /* Empty lines contribute nothing, not an empty list element. */
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\n"
                         "X-Forwarded-For: 1.1.1.1\r\n\r\n"));
    CHECK_SLICE_EQ(bw_join_xff(&in.r, xb, sizeof xb), "1.1.1.1");
    /* Too long for the buffer: nothing rather than a cut list. */
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
                         "X-Forwarded-For: 2.2.2.2\r\n\r\n"));
    CHECK_SLICE_EQ(bw_join_xff(&in.r, xb, 15), "");
    CHECK_SLICE_EQ(bw_join_xff(&in.r, xb, 16), "1.1.1.1, 2.2.2.2");
}

TEST(xfp_set_and_clients_dropped)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
                         "x-forwarded-proto: gopher\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-proto"), "http");
    struct bw_upstream_head_params p = PLAIN;
    p.proto = BW_SLICE_LIT("https");
    CHECK(upstream(&in, &p, &out));
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-proto"), "https");
}

TEST(expect_dropped)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                         "Content-Length: 3\r\n\r\n"));
    CHECK(in.r.expect_continue);
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(count(UH(out), "expect"), 0);
    CHECK(!out.r.expect_continue);
    CHECK_INT_EQ(out.r.content_length, 3);
}

TEST(transfer_encoding_normalised_to_chunked)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "transfer-encoding"), "chunked");
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_CHUNKED);
}

TEST(absolute_form_rewritten_to_origin_form)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET http://b.example:8080/p/q?x=1&y HTTP/1.1\r\n"
                         "Host: a.example\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.target, "/p/q?x=1&y");
    CHECK_SLICE_EQ(value(UH(out), "host"), "b.example:8080");

    CHECK(PARSE_REQ(&in, "GET http://b.example HTTP/1.1\r\nHost: a.example\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.target, "/");
    CHECK_SLICE_EQ(value(UH(out), "host"), "b.example");

    /* HTTP/1.0 absolute-form without Host: the authority becomes Host. */
    CHECK(PARSE_REQ(&in, "GET http://c.example/z HTTP/1.0\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.target, "/z");
    CHECK_SLICE_EQ(value(UH(out), "host"), "c.example");
}

TEST(options_star_kept)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(out.r.target, "*");
}

TEST(upgrade_request_keeps_upgrade)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                         "Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n"));
    CHECK(in.r.upgrade);
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK(out.r.upgrade);
    CHECK_SLICE_EQ(value(UH(out), "upgrade"), "websocket");
    CHECK_SLICE_EQ(value(UH(out), "connection"), "upgrade");
    CHECK_SLICE_EQ(value(UH(out), "sec-websocket-key"), "abc");
}

TEST(content_length_forwarded_in_plain_decimal)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0010\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "10");
    CHECK(PARSE_REQ(&in, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "0");
    CHECK(PARSE_REQ(&in,
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "9223372036854775807");
}

TEST(h2c_upgrade_not_passed_on)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                         "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"));
    CHECK(!in.r.upgrade);
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK(!out.r.upgrade);
    CHECK_INT_EQ(count(UH(out), "upgrade"), 0);
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK_INT_EQ(count(UH(out), "http2-settings"), 0);
}

TEST(names_with_underscore_dropped)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                         "Transfer_Encoding: chunked\r\nX_Forwarded_For: 1.2.3.4\r\n"
                         "_: x\r\nX-Keep: 1\r\n\r\n"));
    CHECK(upstream(&in, &PLAIN, &out));
    CHECK_INT_EQ(count(UH(out), "transfer_encoding"), 0);
    CHECK_INT_EQ(count(UH(out), "x_forwarded_for"), 0);
    CHECK_INT_EQ(count(UH(out), "_"), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-forwarded-for"), "192.0.2.7");
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "0");
    CHECK_SLICE_EQ(value(UH(out), "x-keep"), "1");
}

/* Rule edits (rewrite): each name's last op decides, received fields of an
 * edited name are all dropped, the path is replaced and the query kept. */
TEST(upstream_edits_set_remove_and_path)
{
    struct req in, out;
    CHECK(PARSE_REQ(&in, "GET /v1/users?id=7 HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n"
                         "X-Api: 9\r\nX-Api: 8\r\nX-Keep: k\r\nX-Gone: g\r\n\r\n"));
    static const struct bw_header_op set_api = {BW_HEADER_SET, {"x-api", 5}, {"1", 1}};
    static const struct bw_header_op rm_debug = {BW_HEADER_REMOVE, {"x-debug", 7}, {"", 0}};
    static const struct bw_header_op set_gone = {BW_HEADER_SET, {"x-gone", 6}, {"v", 1}};
    static const struct bw_header_op rm_gone = {BW_HEADER_REMOVE, {"x-gone", 6}, {"", 0}};
    static const struct bw_header_op set_new = {BW_HEADER_SET, {"x-new", 5}, {"n", 1}};
    const struct bw_header_op *ops[] = {&set_api, &rm_debug, &set_gone, &rm_gone, &set_new};
    struct bw_upstream_head_params p = PLAIN;
    p.edits = (struct bw_head_edits){
        .ops = ops, .nops = 5, .has_path = true, .path = BW_SLICE_LIT("/api")};
    CHECK(upstream(&in, &p, &out));
    CHECK_SLICE_EQ(out.r.target, "/api?id=7");
    CHECK_SLICE_EQ(value(UH(out), "x-api"), "1");
    CHECK_INT_EQ(count(UH(out), "x-debug"), 0);
    CHECK_INT_EQ(count(UH(out), "x-gone"), 0); /* set then removed */
    CHECK_SLICE_EQ(value(UH(out), "x-new"), "n");
    CHECK_SLICE_EQ(value(UH(out), "x-keep"), "k");
    CHECK_SLICE_EQ(value(UH(out), "host"), "a");
    /* OPTIONS * names the server: a path rewrite leaves it as it is, in
     * either form it arrived in; the field edits still apply. */
    static const char *const star[] = {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                                       "OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n"};
    for (size_t i = 0; i < 2; i++) {
        CHECK(parse_req(&in, star[i], strlen(star[i])));
        CHECK(upstream(&in, &p, &out));
        CHECK_SLICE_EQ(out.r.target, "*");
        CHECK_SLICE_EQ(value(UH(out), "x-new"), "n");
    }
}

TEST(response_edits)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in,
                     "HTTP/1.1 200 OK\r\nServer: demo\r\nX-Powered-By: php\r\n"
                     "Content-Length: 2\r\n\r\n",
                     BW_METHOD_GET));
    static const struct bw_header_op hsts = {
        BW_HEADER_SET, {"strict-transport-security", 25}, {"max-age=600", 11}};
    static const struct bw_header_op rm = {BW_HEADER_REMOVE, {"x-powered-by", 12}, {"", 0}};
    static const struct bw_header_op srv = {BW_HEADER_SET, {"server", 6}, {"edge", 4}};
    const struct bw_header_op *ops[] = {&hsts, &rm, &srv};
    struct bw_head_edits ed = {.ops = ops, .nops = 3, .has_path = false};
    char buf[4096];
    struct bw_head_out o = {.buf = buf, .cap = sizeof buf};
    CHECK(bw_build_client_response_ed(&o, &in.r, false, true, false, &ed));
    CHECK(parse_resp(&out, buf, o.len, BW_METHOD_GET));
    CHECK_SLICE_EQ(value(UH(out), "strict-transport-security"), "max-age=600");
    CHECK_INT_EQ(count(UH(out), "x-powered-by"), 0);
    CHECK_SLICE_EQ(value(UH(out), "server"), "edge");
    CHECK_INT_EQ(out.r.content_length, 2);
}

TEST(own_response_with_body_and_extra_headers)
{
    char buf[512];
    size_t n = bw_build_own_response(buf, sizeof buf, 301, true, false,
                                     BW_SLICE_LIT("Location: /new?a=1\r\n"), true,
                                     BW_SLICE_LIT("moved\n"));
    CHECK(n > 0);
    struct resp out;
    CHECK(parse_resp(&out, buf, n, BW_METHOD_GET));
    CHECK_INT_EQ(out.r.status, 301);
    CHECK_SLICE_EQ(value(UH(out), "location"), "/new?a=1");
    CHECK_INT_EQ(out.r.content_length, 6);
    CHECK(memcmp(buf + out.r.head_len, "moved\n", 6) == 0 && n == out.r.head_len + 6);
    /* The standard body when the rule gives none; a head only for HEAD. */
    n = bw_build_own_response(buf, sizeof buf, 403, true, true, BW_SLICE_EMPTY, false,
                              BW_SLICE_EMPTY);
    CHECK(parse_resp(&out, buf, n, BW_METHOD_HEAD));
    CHECK_INT_EQ(out.r.content_length, (int)strlen("403 Forbidden\n"));
    CHECK_INT_EQ(n, out.r.head_len);
    /* Does not fit: 0, never a truncated response. */
    CHECK_INT_EQ(
        bw_build_own_response(buf, 40, 403, true, false, BW_SLICE_EMPTY, false, BW_SLICE_EMPTY), 0);
}

TEST(upstream_overflow_never_truncates)
{
    struct req in;
    CHECK(PARSE_REQ(&in, "GET /a HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\n\r\n"));
    char full[1024];
    struct bw_head_out o = {.buf = full, .cap = sizeof full};
    CHECK(bw_build_upstream_request(&o, &in.r, &PLAIN));
    size_t need = o.len;
    for (size_t cap = 0; cap < need; cap++) {
        char small[1024];
        struct bw_head_out s = {.buf = small, .cap = cap};
        CHECK(!bw_build_upstream_request(&s, &in.r, &PLAIN));
        CHECK(s.overflow);
        CHECK(s.len <= cap);
    }
    struct bw_head_out exact = {.buf = full, .cap = need};
    CHECK(bw_build_upstream_request(&exact, &in.r, &PLAIN));
    CHECK_INT_EQ(exact.len, need);
}

/* ---- client response ----------------------------------------------------- */

TEST(response_hop_by_hop_removed)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in,
                     "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\n"
                     "Keep-Alive: timeout=5\r\nX-Internal: s3cret\r\nTrailer: X-Sum\r\n"
                     "Upgrade: h2c\r\nContent-Length: 2\r\nX-Pass: y\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.status, 200);
    CHECK_INT_EQ(count(UH(out), "keep-alive"), 0);
    CHECK_INT_EQ(count(UH(out), "x-internal"), 0);
    CHECK_INT_EQ(count(UH(out), "trailer"), 0);
    CHECK_INT_EQ(count(UH(out), "upgrade"), 0);
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-pass"), "y");
    CHECK_INT_EQ(out.r.content_length, 2);
    CHECK(out.r.keep_alive);
}

TEST(response_connection_cannot_remove_content_length)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in,
                     "HTTP/1.1 200 OK\r\nConnection: content-length\r\n"
                     "Content-Length: 5\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(out.r.content_length, 5);
}

TEST(response_close_when_not_keep_alive)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, false, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "connection"), "close");
    CHECK(!out.r.keep_alive);
    CHECK_SLICE_EQ(out.r.reason, "Not Found");
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK(out.r.keep_alive);
}

TEST(response_http10_keep_alive)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, true, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "connection"), "keep-alive");
    CHECK(client(&in, true, false, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "connection"), "close");
}

TEST(response_chunked_and_dechunked)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "transfer-encoding"), "chunked");
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_CHUNKED);
    /* HTTP/1.0 client: data only, delimited by close. */
    CHECK(client(&in, true, false, true, BW_METHOD_GET, &out));
    CHECK_INT_EQ(count(UH(out), "transfer-encoding"), 0);
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_UNTIL_CLOSE);
    CHECK_SLICE_EQ(value(UH(out), "connection"), "close");
}

/* A coding applied before chunked (gzip) is part of the payload the client
 * receives; forwarding only "chunked" would hand it gzip bytes unlabelled,
 * and two lines of chunked are "chunked, chunked", which clients refuse. */
TEST(response_transfer_codings_kept_and_chunked_said_once)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n",
                     BW_METHOD_GET));
    CHECK_INT_EQ(in.r.body_kind, BW_BODY_CHUNKED);
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.body_kind, BW_BODY_CHUNKED);
    char joined[128];
    size_t jl = 0;
    for (size_t i = 0; i < out.r.nheaders; i++) {
        if (!bw_slice_eq_nocase(out.hdr[i].name, BW_SLICE_LIT("transfer-encoding")))
            continue;
        if (jl)
            jl += (size_t)snprintf(joined + jl, sizeof joined - jl, ", ");
        jl += (size_t)snprintf(joined + jl, sizeof joined - jl, "%.*s", (int)out.hdr[i].value.len,
                               out.hdr[i].value.ptr);
    }
    CHECK_SLICE_EQ(bw_slice_make(joined, jl), "gzip, chunked");
}

/* RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, even on a
 * response that has no body (HEAD, 304), where nothing is dechunked. */
TEST(response_to_http10_client_has_no_transfer_encoding)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", BW_METHOD_HEAD));
    CHECK(client(&in, true, false, false, BW_METHOD_HEAD, &out));
    CHECK_INT_EQ(count(UH(out), "transfer-encoding"), 0);
    CHECK(PARSE_RESP(&in, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, true, false, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(count(UH(out), "transfer-encoding"), 0);
    /* An HTTP/1.1 client still learns the GET's framing from a HEAD. */
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", BW_METHOD_HEAD));
    CHECK(client(&in, false, true, false, BW_METHOD_HEAD, &out));
    CHECK_SLICE_EQ(value(UH(out), "transfer-encoding"), "chunked");
}

/* The response's length goes on as the number the body was framed by, as
 * on the request side: "0010" would be 8 to a parser reading octal. */
TEST(response_content_length_in_plain_decimal)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nContent-Length: 0010\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "10");
    CHECK(
        PARSE_RESP(&in, "HTTP/1.1 304 Not Modified\r\nContent-Length: 007\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "7");
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nContent-Length: 00\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "0");
}

TEST(response_101_keeps_upgrade)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in,
                     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\nSec-WebSocket-Accept: xyz\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(in.r.upgrade);
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.status, 101);
    CHECK(out.r.upgrade);
    CHECK_SLICE_EQ(value(UH(out), "upgrade"), "websocket");
    CHECK_SLICE_EQ(value(UH(out), "connection"), "upgrade");
    CHECK_SLICE_EQ(value(UH(out), "sec-websocket-accept"), "xyz");
}

TEST(response_1xx_has_no_connection_field)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, false, false, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.status, 103);
    CHECK_INT_EQ(count(UH(out), "connection"), 0);
    CHECK_SLICE_EQ(value(UH(out), "link"), "</a.css>; rel=preload");
}

/* RFC 9110 §8.6: a 204 or 1xx carries no Content-Length or
 * Transfer-Encoding, whatever the upstream put in it; other statuses keep
 * theirs. */
TEST(response_204_and_1xx_lose_framing_fields)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: b\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.status, 204);
    CHECK_INT_EQ(count(UH(out), "content-length"), 0);
    CHECK_SLICE_EQ(value(UH(out), "x-a"), "b");
    CHECK(PARSE_RESP(&in, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
                     BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(count(UH(out), "transfer-encoding"), 0);
    CHECK(PARSE_RESP(&in, "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, false, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(count(UH(out), "content-length"), 0);
    CHECK(PARSE_RESP(&in, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_SLICE_EQ(value(UH(out), "content-length"), "5");
}

TEST(response_empty_reason_gets_standard_one)
{
    struct resp in, out;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n", BW_METHOD_GET));
    CHECK(client(&in, false, true, false, BW_METHOD_GET, &out));
    CHECK_INT_EQ(out.r.status, 503);
    CHECK_SLICE_EQ(out.r.reason, "Service Unavailable");
}

TEST(response_overflow_never_truncates)
{
    struct resp in;
    CHECK(PARSE_RESP(&in, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-A: b\r\n\r\n", BW_METHOD_GET));
    char full[512];
    struct bw_head_out o = {.buf = full, .cap = sizeof full};
    CHECK(bw_build_client_response(&o, &in.r, false, false, false));
    for (size_t cap = 0; cap < o.len; cap++) {
        char small[512];
        struct bw_head_out s = {.buf = small, .cap = cap};
        CHECK(!bw_build_client_response(&s, &in.r, false, false, false));
        CHECK(s.len <= cap);
    }
}

/* ---- error responses ----------------------------------------------------- */

TEST(error_response_valid_with_length_and_body)
{
    char buf[512];
    size_t n = bw_build_error_response(buf, sizeof buf, 502, true, false, NULL);
    CHECK(n > 0);
    struct resp r;
    CHECK(parse_resp(&r, buf, n, BW_METHOD_GET));
    CHECK_INT_EQ(r.r.status, 502);
    CHECK_SLICE_EQ(value(r.hdr, r.r.nheaders, "connection"), "close");
    CHECK_SLICE_EQ(value(r.hdr, r.r.nheaders, "content-type"), "text/plain");
    CHECK_INT_EQ(r.r.body_kind, BW_BODY_LENGTH);
    CHECK_INT_EQ(r.r.content_length, n - r.r.head_len);
    CHECK_SLICE_EQ(bw_slice_make(buf + r.r.head_len, n - r.r.head_len), "502 Bad Gateway\n");
}

TEST(error_response_head_only_and_keep_alive)
{
    char get[512], head[512];
    size_t ng = bw_build_error_response(get, sizeof get, 404, false, false, "X-A: 1\r\n");
    size_t nh = bw_build_error_response(head, sizeof head, 404, false, true, "X-A: 1\r\n");
    CHECK(ng > 0 && nh > 0);
    struct resp r;
    CHECK(parse_resp(&r, head, nh, BW_METHOD_HEAD));
    CHECK_INT_EQ(r.r.head_len, nh); /* no body bytes at all */
    CHECK_INT_EQ(count(r.hdr, r.r.nheaders, "connection"), 0);
    CHECK_SLICE_EQ(value(r.hdr, r.r.nheaders, "x-a"), "1");
    /* Same Content-Length as the GET answer it stands for. */
    CHECK_SLICE_EQ(value(r.hdr, r.r.nheaders, "content-length"), "14");
    CHECK(parse_resp(&r, get, ng, BW_METHOD_GET));
    CHECK_INT_EQ(r.r.content_length, 14);
    CHECK_INT_EQ(ng - r.r.head_len, 14);
    CHECK(r.r.keep_alive);
}

TEST(error_response_too_small_is_zero)
{
    char buf[512];
    size_t n = bw_build_error_response(buf, sizeof buf, 431, true, false, NULL);
    CHECK(n > 0);
    for (size_t cap = 0; cap <= n; cap++)
        CHECK_INT_EQ(bw_build_error_response(buf, cap, 431, true, false, NULL), 0);
    CHECK_INT_EQ(bw_build_error_response(buf, n + 1, 431, true, false, NULL), n);
}

int main(void)
{
    RUN(request_line_and_version);
    RUN(http10_without_host_gets_upstream_name);
    RUN(http10_request_goes_up_as_http11);
    RUN(hop_by_hop_fields_removed);
    RUN(fields_named_by_connection_removed_case_insensitively);
    RUN(many_fields_named_by_connection_removed);
    RUN(connection_cannot_remove_content_length);
    RUN(connection_cannot_remove_host);
    RUN(xff_without_prefix_is_peer_only);
    RUN(xff_with_prefix_appends_peer);
    RUN(forwarding_fields_pass_from_trusted_peers_only);
    RUN(options_on_an_empty_absolute_path_goes_up_as_asterisk);
    RUN(join_xff_edges);
    RUN(xfp_set_and_clients_dropped);
    RUN(expect_dropped);
    RUN(transfer_encoding_normalised_to_chunked);
    RUN(absolute_form_rewritten_to_origin_form);
    RUN(options_star_kept);
    RUN(upgrade_request_keeps_upgrade);
    RUN(content_length_forwarded_in_plain_decimal);
    RUN(h2c_upgrade_not_passed_on);
    RUN(names_with_underscore_dropped);
    RUN(upstream_edits_set_remove_and_path);
    RUN(response_edits);
    RUN(own_response_with_body_and_extra_headers);
    RUN(upstream_overflow_never_truncates);
    RUN(response_hop_by_hop_removed);
    RUN(response_connection_cannot_remove_content_length);
    RUN(response_close_when_not_keep_alive);
    RUN(response_http10_keep_alive);
    RUN(response_chunked_and_dechunked);
    RUN(response_transfer_codings_kept_and_chunked_said_once);
    RUN(response_to_http10_client_has_no_transfer_encoding);
    RUN(response_content_length_in_plain_decimal);
    RUN(response_101_keeps_upgrade);
    RUN(response_1xx_has_no_connection_field);
    RUN(response_204_and_1xx_lose_framing_fields);
    RUN(response_empty_reason_gets_standard_one);
    RUN(response_overflow_never_truncates);
    RUN(error_response_valid_with_length_and_body);
    RUN(error_response_head_only_and_keep_alive);
    RUN(error_response_too_small_is_zero);
    return t_done();
}
