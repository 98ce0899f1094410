/* Field-level helpers shared by the head parsers and offered to the proxy:
 * the character table, Content-Length and Host syntax, comma-separated
 * lists, header lookup and the standard reason phrases. No state, no I/O. */
#include <limits.h>

#include "http/internal.h"

/* Generated: bit flags BW__CC_* for each byte (see internal.h). BW__CC_HOST
 * leaves out ',' although RFC 3986 allows it in a reg-name: no DNS name has
 * one, and "a, b" is what two Host fields look like once joined. */
/* clang-format off */
const uint8_t bw__http_cc[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x42, 0x0f, 0x06, 0x03, 0x0f, 0x0f, 0x0f, 0x0f, 0x0e, 0x0e, 0x0f, 0x0f, 0x06, 0x0f, 0x0f, 0x06,
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x06, 0x0e, 0x06, 0x0e, 0x06, 0x06,
    0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
    0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x06, 0x06, 0x07, 0x0f,
    0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
    0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x07, 0x06, 0x0f, 0x00,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
};
/* clang-format on */

bool bw__http_parse_content_length(bw_slice v, uint64_t *ret_value)
{
    /* RFC 9110 §8.6: 1*DIGIT. A list ("5, 5"), a sign or any other byte is
     * refused rather than interpreted. 19 digits hold any value up to
     * 2^63-1; 20 never fit. */
    if (v.len == 0 || v.len > 19)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned)((unsigned char)v.ptr[i] - '0');
        if (d > 9)
            return false;
        n = n * 10 + d; /* at most 19 digits: cannot wrap a uint64_t */
    }
    if (n > (uint64_t)INT64_MAX)
        return false;
    *ret_value = n;
    return true;
}

bool bw__http_list_next(bw_slice *rest, bw_slice *ret_elem)
{
    if (rest->ptr == NULL)
        return false;
    const char *comma = rest->len ? memchr(rest->ptr, ',', rest->len) : NULL;
    size_t n = comma ? (size_t)(comma - rest->ptr) : rest->len;
    *ret_elem = bw_slice_trim_ows(bw_slice_make(rest->ptr, n));
    if (comma) {
        rest->ptr = comma + 1;
        rest->len -= n + 1;
    } else {
        rest->ptr = NULL; /* the last element has been handed out */
        rest->len = 0;
    }
    return true;
}

bool bw__http_host_valid(bw_slice h, bool *ret_has_port)
{
    size_t i = 0;
    *ret_has_port = false;
    if (h.len == 0)
        return false;
    if (h.ptr[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (for an embedded IPv4) */
        i = 1;
        while (i < h.len && (BW__CC(h.ptr[i], BW__CC_HEX) || h.ptr[i] == ':' || h.ptr[i] == '.'))
            i++;
        if (i == 1 || i == h.len || h.ptr[i] != ']')
            return false;
        i++;
    } else {
        while (i < h.len && BW__CC(h.ptr[i], BW__CC_HOST)) {
            /* An empty label ("a..example"), as nginx refuses it. */
            if (h.ptr[i] == '.' && i > 0 && h.ptr[i - 1] == '.')
                return false;
            if (h.ptr[i] == '%') { /* pct-encoded */
                if (h.len - i < 3 || !BW__CC(h.ptr[i + 1], BW__CC_HEX) ||
                    !BW__CC(h.ptr[i + 2], BW__CC_HEX))
                    return false;
                i += 2;
            }
            i++;
        }
        if (i == 0)
            return false;
    }
    if (i == h.len)
        return true;
    if (h.ptr[i] != ':')
        return false; /* '@', '/', SP, '?', ... */
    i++;
    size_t digits = h.len - i;
    if (digits == 0 || digits > 5)
        return false;
    unsigned port = 0;
    for (; i < h.len; i++) {
        if (!BW__CC(h.ptr[i], BW__CC_DIGIT))
            return false;
        port = port * 10 + (unsigned)(h.ptr[i] - '0');
    }
    if (port > 65535)
        return false;
    *ret_has_port = true;
    return true;
}

const struct bw_http_header *bw_http_find_header(const struct bw_http_header *headers, size_t n,
                                                 bw_slice name)
{
    for (size_t i = 0; i < n; i++)
        if (bw_slice_eq_nocase(headers[i].name, name))
            return &headers[i];
    return NULL;
}

bool bw_http_list_has_token(bw_slice value, bw_slice token)
{
    bw_slice rest = value, elem;
    if (rest.ptr == NULL)
        return false;
    while (bw__http_list_next(&rest, &elem))
        if (bw_slice_eq_nocase(elem, token))
            return true;
    return false;
}

const char *bw_http_status_reason(uint16_t status)
{
    /* RFC 9110 §15 */
    /* clang-format off */
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
    /* clang-format on */
}

bw_slice bw_http_host_name(bw_slice h)
{
    size_t n = h.len;
    if (n && h.ptr[0] == '[') {
        const char *close = memchr(h.ptr, ']', n);
        if (close)
            n = (size_t)(close - h.ptr) + 1;
    } else {
        const char *colon = memchr(h.ptr, ':', n);
        if (colon)
            n = (size_t)(colon - h.ptr);
        if (n > 1 && h.ptr[n - 1] == '.')
            n--; /* the parser refuses "..", so one dot at most */
    }
    return bw_slice_make(h.ptr, n);
}
