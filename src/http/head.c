/* The parts of message-head parsing that requests and responses share: the
 * incremental search for the end of the head, and the field-line loop that
 * validates every field and picks out the ones that decide framing. The start
 * lines and the framing decisions themselves live in request.c and
 * response.c. */
#include <string.h>

#include "http/internal.h"

static uint16_t side_status(enum bw__http_side side, uint16_t request_status)
{
    switch (side) {
    case BW__SIDE_REQUEST:
        return request_status;
    case BW__SIDE_RESPONSE:
    case BW__SIDE__COUNT:
        break;
    }
    return 502;
}

/* The limits are checked at fixed offsets (the limit itself), never at
 * "wherever the bytes happened to end", so the error and its offset do not
 * depend on how the input was split. The start-line limit is capped by the
 * head limit: a start line cannot be longer than the head it is part of. */
static enum bw_http_parse_result over_limit(size_t at, bool start_line_done, size_t sl_limit,
                                            size_t hb_limit, enum bw__http_side side,
                                            struct bw_http_error *err)
{
    if (!start_line_done && at >= sl_limit) {
        bw__http_set_err(
            err, side_status(side, 414),
            side == BW__SIDE_REQUEST ? "request line too long" : "status line too long", sl_limit);
        return BW_HTTP_ERROR;
    }
    if (at >= hb_limit) {
        bw__http_set_err(err, side_status(side, 431),
                         side == BW__SIDE_REQUEST ? "request head too large"
                                                  : "response head too large",
                         hb_limit);
        return BW_HTTP_ERROR;
    }
    return BW_HTTP_PARTIAL;
}

enum bw_http_parse_result bw__http_scan_head(const char *buf, size_t len,
                                             const struct bw_http_limits *limits,
                                             enum bw__http_side side, struct bw_http_scan *scan,
                                             size_t *ret_start, size_t *ret_head_len,
                                             struct bw_http_error *err)
{
    size_t hb_limit = limits->header_bytes;
    size_t sl_limit = limits->request_line_bytes < hb_limit ? limits->request_line_bytes : hb_limit;
    size_t pos = scan->scanned;

    while (pos < len) {
        const char *lf = memchr(buf + pos, '\n', len - pos);
        if (!lf)
            break;
        size_t p = (size_t)(lf - buf);
        /* The line ending here ends at p + 1: p >= limit means it is over. */
        if (over_limit(p, scan->request_line_done, sl_limit, hb_limit, side, err) == BW_HTTP_ERROR)
            return BW_HTTP_ERROR;
        if (p == 0 || buf[p - 1] != '\r') {
            /* RFC 9112 §2.2 lets a recipient accept a bare LF; we refuse it
             * at once, because two parsers disagreeing on line ends is how
             * requests get smuggled. */
            bw__http_set_err(err, side_status(side, 400), "bare LF", p);
            return BW_HTTP_ERROR;
        }
        if (p - 1 == scan->line_start) { /* an empty line */
            if (scan->request_line_done) {
                scan->scanned = p + 1;
                scan->line_start = p + 1;
                *ret_head_len = p + 1;
                /* Skipped empty lines are CRLF pairs, so the start line
                 * begins after an even number of bytes we can recount. */
                size_t start = 0;
                while (buf[start] == '\r' && buf[start + 1] == '\n')
                    start += 2;
                *ret_start = start;
                return BW_HTTP_DONE;
            }
            if (side != BW__SIDE_REQUEST) {
                bw__http_set_err(err, 502, "empty line before status line", p);
                return BW_HTTP_ERROR;
            }
            /* RFC 9112 §2.2: a server SHOULD ignore empty lines before the
             * request line. They count against the request-line limit. */
        } else {
            scan->request_line_done = true;
        }
        scan->line_start = p + 1;
        pos = p + 1;
    }
    scan->scanned = len;
    /* No end yet: the head is at least len + 1 bytes long. */
    return over_limit(len, scan->request_line_done, sl_limit, hb_limit, side, err);
}

/* Case-insensitive comparison with a lowercase literal made of letters,
 * digits and '-', for bytes already known to be tchar or field-value bytes.
 * For those, c | 0x20 equals a lowercase letter only when c is that letter in
 * either case, and equals a digit or '-' only when c is that byte (the other
 * preimages, 0x0D and 0x10-0x19, are control characters, never let through). */
static inline bool name_is(const char *p, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((char)(p[i] | 0x20) != lower[i])
            return false;
    return true;
}

static void note_transfer_encoding(struct bw__http_fields *f, bw_slice v)
{
    f->te_present = true;
    bw_slice rest = v, elem;
    while (bw__http_list_next(&rest, &elem)) {
        size_t i = 0;
        while (i < elem.len && BW__CC(elem.ptr[i], BW__CC_TCHAR))
            i++;
        bool has_params = false;
        if (i < elem.len) {
            /* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
            size_t j = i;
            while (j < elem.len && BW__CC(elem.ptr[j], BW__CC_OWS))
                j++;
            if (j == elem.len || elem.ptr[j] != ';') {
                f->te_bad = true;
                continue;
            }
            has_params = true;
        }
        if (i == 0) { /* empty element, or no coding name */
            f->te_bad = true;
            continue;
        }
        bool chunked = i == 7 && name_is(elem.ptr, "chunked", 7);
        if (chunked) {
            f->te_chunked++;
            if (has_params) /* chunked takes no parameters (RFC 9112 §7.1) */
                f->te_bad = true;
        } else {
            f->te_other = true;
        }
        f->te_last_chunked = chunked;
    }
}

static void note_connection(struct bw__http_fields *f, bw_slice v)
{
    bw_slice rest = v, elem;
    while (bw__http_list_next(&rest, &elem)) {
        switch (elem.len) {
        case 5:
            if (name_is(elem.ptr, "close", 5))
                f->conn_close = true;
            break;
        case 7:
            if (name_is(elem.ptr, "upgrade", 7))
                f->conn_upgrade = true;
            break;
        case 10:
            if (name_is(elem.ptr, "keep-alive", 10))
                f->conn_keep_alive = true;
            break;
        default:
            break;
        }
    }
}

/* Upgrade = #protocol, protocol = name ["/" version] (RFC 9110 §7.8). */
static void note_upgrade(struct bw__http_fields *f, bw_slice v)
{
    bw_slice rest = v, elem;
    while (bw__http_list_next(&rest, &elem)) {
        if (elem.len >= 3 && name_is(elem.ptr, "h2c", 3) && (elem.len == 3 || elem.ptr[3] == '/'))
            f->upgrade_h2c = true;
    }
}

/* Looks at the fields that matter for framing and connection handling:
 * recognised by length first, then one case-folding compare. */
static void note_field(struct bw__http_fields *f, bw_slice name, bw_slice v)
{
    switch (name.len) {
    case 4:
        if (name_is(name.ptr, "host", 4)) {
            if (f->host_count++ == 0)
                f->host = v;
        }
        break;
    case 6:
        if (name_is(name.ptr, "expect", 6)) {
            if (v.len == 12 && name_is(v.ptr, "100-continue", 12))
                f->expect_continue = true;
            else
                f->expect_other = true;
        }
        break;
    case 7:
        if (name_is(name.ptr, "upgrade", 7)) {
            f->has_upgrade = true;
            note_upgrade(f, v);
        }
        break;
    case 10:
        if (name_is(name.ptr, "connection", 10))
            note_connection(f, v);
        break;
    case 14:
        if (name_is(name.ptr, "content-length", 14)) {
            if (f->cl_count++ == 0)
                f->cl = v;
        }
        break;
    case 17:
        if (name_is(name.ptr, "transfer-encoding", 17))
            note_transfer_encoding(f, v);
        break;
    default:
        break;
    }
}

bool bw__http_parse_fields(const char *buf, size_t pos, size_t end, enum bw__http_side side,
                           struct bw_http_header *headers, size_t max, struct bw__http_fields *f,
                           struct bw_http_error *err)
{
    /* Every line in [pos, end) ends in CRLF and buf[end] is '\r', so each
     * loop below stops inside the head without a bounds check. */
    while (pos < end) {
        size_t i = pos;
        while (BW__CC(buf[i], BW__CC_TCHAR))
            i++;
        if (buf[i] != ':' || i == pos) {
            const char *why;
            if (i == pos && BW__CC(buf[i], BW__CC_OWS))
                why = "obs-fold"; /* RFC 9112 §5.2: we refuse, never unfold */
            else if (i == pos && buf[i] == ':')
                why = "empty field name";
            else if (BW__CC(buf[i], BW__CC_OWS))
                why = "whitespace before colon"; /* RFC 9112 §5.1 */
            else if (buf[i] == '\r')
                why = "field line without colon";
            else
                why = "invalid character in field name";
            bw__http_set_err(err, side_status(side, 400), why, i);
            return false;
        }
        bw_slice name = bw_slice_make(buf + pos, i - pos);
        i++;
        while (BW__CC(buf[i], BW__CC_OWS))
            i++;
        size_t vstart = i;
        while (i + 8 <= end && bw__word_is_value(bw__load64(buf + i)))
            i += 8;
        while (BW__CC(buf[i], BW__CC_VALUE))
            i++;
        if (buf[i] != '\r' || buf[i + 1] != '\n') {
            bw__http_set_err(err, side_status(side, 400),
                             buf[i] == '\r' ? "CR without LF" : "invalid character in field value",
                             i);
            return false;
        }
        size_t vend = i;
        while (vend > vstart && BW__CC(buf[vend - 1], BW__CC_OWS))
            vend--;
        if (f->nheaders == max) {
            bw__http_set_err(err, side_status(side, 431), "too many header fields", pos);
            return false;
        }
        bw_slice value = bw_slice_make(buf + vstart, vend - vstart);
        headers[f->nheaders].name = name;
        headers[f->nheaders].value = value;
        f->nheaders++;
        note_field(f, name, value);
        pos = i + 2;
    }
    return true;
}
