/* Response heads from an upstream (RFC 9112 §4, §6.3). Every refusal is a
 * 502 to the downstream: an upstream whose framing we cannot read one way
 * only is not guessed at. */
#include "http/internal.h"

static enum bw_http_parse_result fail(struct bw_http_error *err, const char *reason, size_t offset)
{
    bw__http_set_err(err, 502, reason, offset);
    return BW_HTTP_ERROR;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF; a
 * missing reason is accepted with or without its SP. Returns the offset past
 * the CRLF, or 0 with *err filled. */
static size_t parse_status_line(const char *buf, struct bw_http_response *resp,
                                struct bw_http_error *err)
{
    /* Each compare stops at the first mismatch, and the line's CR matches
     * none of the literals or digits, so nothing past the line is read. */
    const char *v = buf;
    if (!(v[0] == 'H' && v[1] == 'T' && v[2] == 'T' && v[3] == 'P' && v[4] == '/' && v[5] == '1' &&
          v[6] == '.' && BW__CC(v[7], BW__CC_DIGIT) && v[8] == ' ' && BW__CC(v[9], BW__CC_DIGIT) &&
          BW__CC(v[10], BW__CC_DIGIT) && BW__CC(v[11], BW__CC_DIGIT))) {
        fail(err, "malformed status line", 0);
        return 0;
    }
    resp->version_minor = (uint8_t)(v[7] - '0');
    resp->status = (uint16_t)((v[9] - '0') * 100 + (v[10] - '0') * 10 + (v[11] - '0'));
    if (resp->status < 100) {
        fail(err, "invalid status code", 9);
        return 0;
    }
    size_t i = 12;
    if (buf[i] == ' ') {
        i++;
        size_t r = i;
        while (BW__CC(buf[i], BW__CC_VALUE))
            i++;
        resp->reason = bw_slice_make(buf + r, i - r);
    } else {
        resp->reason = bw_slice_make(buf + i, 0);
    }
    if (buf[i] != '\r' || buf[i + 1] != '\n') {
        fail(err, "malformed status line", i);
        return 0;
    }
    return i + 2;
}

enum bw_http_parse_result
bw_http_parse_response(const char *buf, size_t len, const struct bw_http_limits *limits,
                       enum bw_http_method request_method, struct bw_http_scan *scan,
                       struct bw_http_response *resp, struct bw_http_error *err)
{
    size_t start, head_len;
    enum bw_http_parse_result r =
        bw__http_scan_head(buf, len, limits, BW__SIDE_RESPONSE, scan, &start, &head_len, err);
    if (r != BW_HTTP_DONE)
        return r;
    size_t pos = parse_status_line(buf, resp, err);
    if (pos == 0)
        return BW_HTTP_ERROR;

    size_t max = limits->headers < resp->headers_cap ? limits->headers : resp->headers_cap;
    struct bw__http_fields f = {0};
    if (!bw__http_parse_fields(buf, pos, head_len - 2, BW__SIDE_RESPONSE, resp->headers, max, &f,
                               err))
        return BW_HTTP_ERROR;
    resp->nheaders = f.nheaders;
    resp->head_len = head_len;

    /* Header validity first, whether or not the response has a body: the
     * fields are forwarded downstream, where they must not be ambiguous. */
    resp->content_length = 0;
    if (f.cl_count > 1)
        return fail(err, "more than one Content-Length field", 0);
    if (f.cl_count && f.te_present)
        return fail(err, "Content-Length with Transfer-Encoding", 0);
    if (f.cl_count && !bw__http_parse_content_length(f.cl, &resp->content_length))
        return fail(err, "invalid Content-Length", (size_t)(f.cl.ptr - buf));
    if (f.te_present && (f.te_bad || f.te_chunked > 1))
        return fail(err, "malformed Transfer-Encoding", 0);
    resp->te_other = f.te_present && f.te_other;

    /* RFC 9112 §6.3, in its order. */
    uint16_t s = resp->status;
    bool v11 = resp->version_minor >= 1;
    bool faulty_framing = false;
    if (request_method == BW_METHOD_HEAD || s < 200 || s == 204 || s == 304 ||
        (request_method == BW_METHOD_CONNECT && s < 300)) {
        resp->body_kind = BW_BODY_NONE;
    } else if (f.te_present) {
        if (!f.te_last_chunked)
            return fail(err, "final transfer coding is not chunked", 0);
        resp->body_kind = BW_BODY_CHUNKED;
        /* §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty
         * framing: read this message, then close. */
        faulty_framing = !v11;
    } else if (f.cl_count) {
        resp->body_kind = BW_BODY_LENGTH;
    } else {
        resp->body_kind = BW_BODY_UNTIL_CLOSE;
    }

    resp->keep_alive = v11 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    /* A 2xx to CONNECT turned the connection into a tunnel (§9.3.6 of RFC
     * 9110): whatever follows is not HTTP, so it is never reused. */
    if (resp->body_kind == BW_BODY_UNTIL_CLOSE || faulty_framing ||
        (request_method == BW_METHOD_CONNECT && s >= 200 && s < 300))
        resp->keep_alive = false;
    resp->upgrade = s == 101 && f.has_upgrade;
    return BW_HTTP_DONE;
}
