/* Request heads (RFC 9112 §3, §6; RFC 9110 §7.2, §10.1.1): the request line,
 * the target forms, and the checks that decide whether a request is framed
 * unambiguously enough to forward. Everything here runs once per request,
 * after head.c has found the end of the head. */
#include <string.h>

#include "http/internal.h"

static enum bw_http_method method_id(const char *m, size_t n)
{
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return BW_METHOD_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return BW_METHOD_PUT;
        break;
    case 4:
        if (memcmp(m, "POST", 4) == 0)
            return BW_METHOD_POST;
        if (memcmp(m, "HEAD", 4) == 0)
            return BW_METHOD_HEAD;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return BW_METHOD_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return BW_METHOD_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return BW_METHOD_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return BW_METHOD_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return BW_METHOD_CONNECT;
        break;
    default:
        break;
    }
    return BW_METHOD_OTHER;
}

static void split_query(bw_slice s, struct bw_http_request *req)
{
    const char *q = s.len ? memchr(s.ptr, '?', s.len) : NULL;
    if (q) {
        req->path = bw_slice_make(s.ptr, (size_t)(q - s.ptr));
        req->query = bw_slice_make(q + 1, s.len - req->path.len - 1);
        req->has_query = true;
    } else {
        req->path = s;
        req->query = bw_slice_make(s.ptr + s.len, 0);
        req->has_query = false;
    }
}

static bool prefix_nocase(bw_slice s, const char *lower, size_t n)
{
    if (s.len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (bw_ascii_lower(s.ptr[i]) != lower[i])
            return false;
    return true;
}

/* RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT only),
 * asterisk-form (OPTIONS only). Fills path, query and, for absolute-form, the
 * host from the authority (§3.2.2: it wins over the Host field). */
static const char *parse_target(struct bw_http_request *req, bool *ret_authority_host)
{
    bw_slice t = req->target;
    bool has_port;
    *ret_authority_host = false;
    if (req->method_id == BW_METHOD_CONNECT) {
        if (!bw__http_host_valid(t, &has_port) || !has_port)
            return "CONNECT target is not host:port";
        req->path = bw_slice_make(t.ptr, 0);
        req->query = bw_slice_make(t.ptr, 0);
        req->has_query = false;
        return NULL;
    }
    if (t.ptr[0] == '/') {
        split_query(t, req);
        return NULL;
    }
    if (t.len == 1 && t.ptr[0] == '*') {
        if (req->method_id != BW_METHOD_OPTIONS)
            return "asterisk-form target without OPTIONS";
        split_query(t, req);
        return NULL;
    }
    size_t skip;
    if (prefix_nocase(t, "http://", 7))
        skip = 7;
    else if (prefix_nocase(t, "https://", 8))
        skip = 8;
    else
        return "invalid request target";
    bw_slice rest = bw_slice_make(t.ptr + skip, t.len - skip);
    size_t alen = 0;
    while (alen < rest.len && rest.ptr[alen] != '/' && rest.ptr[alen] != '?')
        alen++;
    bw_slice authority = bw_slice_make(rest.ptr, alen);
    if (!bw__http_host_valid(authority, &has_port))
        return "invalid authority in request target";
    req->host = authority;
    *ret_authority_host = true;
    bw_slice pq = bw_slice_make(rest.ptr + alen, rest.len - alen);
    split_query(pq, req);
    /* RFC 9112 §3.2.1: an empty path is "/", except that OPTIONS on an
     * empty path (and no query) asks about the server as a whole: it is
     * the asterisk-form "*" (§3.2.4), as if sent that way. */
    if (req->path.len == 0)
        req->path = req->method_id == BW_METHOD_OPTIONS && !req->has_query ? BW_SLICE_LIT("*")
                                                                           : BW_SLICE_LIT("/");
    return NULL;
}

/* request-line = method SP request-target SP HTTP-version CRLF, starting at
 * start; end is where the head's final CRLF begins (a bound for word-wide
 * reads). Returns the offset just past its CRLF, or 0 with *err filled. */
static size_t parse_request_line(const char *buf, size_t start, size_t end,
                                 struct bw_http_request *req, struct bw_http_error *err)
{
    size_t i = start;
    while (BW__CC(buf[i], BW__CC_TCHAR))
        i++;
    if (i == start || buf[i] != ' ') {
        bw__http_set_err(err, 400, i == start ? "invalid method" : "malformed request line", i);
        return 0;
    }
    /* RFC 9110 lets a method be any token, case-sensitive; like nginx, an
     * edge refuses all but upper-case letters, '_' and '-', since an origin
     * that upper-cases "delete" would serve a DELETE that a rule on
     * http.request.method eq "DELETE" never saw. */
    for (size_t k = start; k < i; k++) {
        char c = buf[k];
        if (!((c >= 'A' && c <= 'Z') || c == '_' || c == '-')) {
            bw__http_set_err(err, 400, "invalid method (upper-case letters, '_' and '-' only)", k);
            return 0;
        }
    }
    req->method = bw_slice_make(buf + start, i - start);
    req->method_id = method_id(buf + start, i - start);

    size_t t = ++i;
    while (i + 8 <= end && bw__word_is_target(bw__load64(buf + i)))
        i += 8;
    while (BW__CC(buf[i], BW__CC_TARGET))
        i++;
    if (i == t || buf[i] != ' ') {
        const char *why = i == t           ? "empty request target"
                          : buf[i] == '\r' ? "missing HTTP version"
                                           : "invalid character in request target";
        bw__http_set_err(err, 400, why, i);
        return 0;
    }
    req->target = bw_slice_make(buf + t, i - t);

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (§2.3). Each
     * compare stops at the first mismatch, and the CR that ends the line
     * matches none of them, so nothing past the line is read. */
    const char *v = buf + i + 1;
    if (!(v[0] == 'H' && v[1] == 'T' && v[2] == 'T' && v[3] == 'P' && v[4] == '/' &&
          BW__CC(v[5], BW__CC_DIGIT) && v[6] == '.' && BW__CC(v[7], BW__CC_DIGIT) && v[8] == '\r' &&
          v[9] == '\n')) {
        bw__http_set_err(err, 400, "malformed HTTP version", i + 1);
        return 0;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        bw__http_set_err(err, 505, "HTTP version not supported", i + 1);
        return 0;
    }
    req->version_minor = (uint8_t)(v[7] - '0');
    return i + 1 + 10;
}

static enum bw_http_parse_result fail(struct bw_http_error *err, uint16_t status,
                                      const char *reason, size_t offset)
{
    bw__http_set_err(err, status, reason, offset);
    return BW_HTTP_ERROR;
}

enum bw_http_parse_result bw_http_parse_request(const char *buf, size_t len,
                                                const struct bw_http_limits *limits,
                                                struct bw_http_scan *scan,
                                                struct bw_http_request *req,
                                                struct bw_http_error *err)
{
    size_t start, head_len;
    enum bw_http_parse_result r =
        bw__http_scan_head(buf, len, limits, BW__SIDE_REQUEST, scan, &start, &head_len, err);
    if (r != BW_HTTP_DONE)
        return r;

    size_t pos = parse_request_line(buf, start, head_len - 2, req, err);
    if (pos == 0)
        return BW_HTTP_ERROR;
    bool authority_host;
    const char *why = parse_target(req, &authority_host);
    if (why)
        return fail(err, 400, why, (size_t)(req->target.ptr - buf));

    size_t max = limits->headers < req->headers_cap ? limits->headers : req->headers_cap;
    struct bw__http_fields f = {0};
    if (!bw__http_parse_fields(buf, pos, head_len - 2, BW__SIDE_REQUEST, req->headers, max, &f,
                               err))
        return BW_HTTP_ERROR;
    req->nheaders = f.nheaders;
    req->head_len = head_len;
    bool v11 = req->version_minor == 1;

    /* Host: RFC 9112 §3.2. Exactly one in 1.1, at most one in 1.0, and a
     * valid authority whenever present. */
    if (f.host_count > 1)
        return fail(err, 400, "more than one Host field", start);
    if (f.host_count == 0 && v11)
        return fail(err, 400, "missing Host field", start);
    if (f.host_count == 1) {
        bool has_port;
        if (!bw__http_host_valid(f.host, &has_port))
            return fail(err, 400, "invalid Host field", (size_t)(f.host.ptr - buf));
        if (!authority_host)
            req->host = f.host;
    } else if (!authority_host) {
        req->host = bw_slice_make(buf + start, 0);
    }

    /* Framing: RFC 9112 §6.1-6.3. Anything two parsers could read two ways
     * is refused. */
    req->content_length = 0;
    req->body_kind = BW_BODY_NONE;
    if (f.cl_count > 1)
        return fail(err, 400, "more than one Content-Length field", start);
    if (f.te_present) {
        if (f.cl_count)
            return fail(err, 400, "Content-Length with Transfer-Encoding", start);
        if (!v11)
            return fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request", start);
        if (f.te_bad)
            return fail(err, 400, "malformed Transfer-Encoding", start);
        if (f.te_chunked > 1)
            return fail(err, 400, "chunked applied more than once", start);
        if (!f.te_last_chunked)
            return fail(err, 400, "final transfer coding is not chunked", start);
        if (f.te_other)
            return fail(err, 501, "unsupported transfer coding", start);
        req->body_kind = BW_BODY_CHUNKED;
    } else if (f.cl_count) {
        if (!bw__http_parse_content_length(f.cl, &req->content_length))
            return fail(err, 400, "invalid Content-Length", (size_t)(f.cl.ptr - buf));
        req->body_kind = BW_BODY_LENGTH;
    }

    /* RFC 9110 §10.1.1: only 100-continue is defined; a 1.0 request's
     * expectation is ignored, but an unknown one is still refused. */
    if (f.expect_other)
        return fail(err, 417, "unsupported expectation", start);
    req->expect_continue = f.expect_continue && v11;

    req->keep_alive = v11 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    /* RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored. An upgrade
     * to h2c (cleartext HTTP/2, deprecated by RFC 9113 §3.1) is not one we
     * pass on: the upstream would then take HTTP/2 requests straight from
     * the client, past every rule ("h2c smuggling"). The request goes on
     * as a plain one, without its Upgrade field. */
    req->upgrade = v11 && f.conn_upgrade && f.has_upgrade && !f.upgrade_h2c;
    return BW_HTTP_DONE;
}
