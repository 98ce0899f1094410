#include "http/uri.h"

#include <string.h>

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §6.2.2.1 and §6.2.2.2: decode what never needed encoding,
 * uppercase the hex of what stays encoded. A literal '\' becomes '/', as in
 * Cloudflare's default normalisation: Windows servers, and many frameworks
 * on them, take it for a separator, so "/x\..\admin" is "/admin" there.
 * Never grows the input. */
static size_t decode_unreserved(bw_slice in, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%' && i + 2 < in.len) {
            int h = bw_hex_value(in.ptr[i + 1]), l = bw_hex_value(in.ptr[i + 2]);
            if (h >= 0 && l >= 0) {
                unsigned char d = (unsigned char)(h * 16 + l);
                if (unreserved(d)) {
                    out[o++] = (char)d;
                } else {
                    out[o++] = '%';
                    out[o++] = hex[h];
                    out[o++] = hex[l];
                }
                i += 2;
                continue;
            }
        }
        out[o++] = c == '\\' ? '/' : c;
    }
    return o;
}

bw_slice bw_uri_normalize_path(bw_slice path, char *out, size_t cap)
{
    if (path.len == 0) {
        if (cap == 0)
            return BW_SLICE_EMPTY;
        out[0] = '/';
        return bw_slice_make(out, 1);
    }
    /* "*" (OPTIONS) and authority-form targets are not paths. */
    if (path.ptr[0] != '/' || cap < path.len + 1) {
        return path;
    }
    size_t n = decode_unreserved(path, out);
    /* RFC 3986 §5.2.4, in place: the output is "/" then each kept segment
     * followed by "/"; the write position never passes the read position
     * by more than the one '/' that cap's extra byte leaves room for. */
    size_t w = 1, r = 1;
    bool dir = true; /* does the result name a directory (end in '/')? */
    while (r < n) {
        size_t e = r;
        while (e < n && out[e] != '/')
            e++;
        size_t len = e - r;
        if (len == 0) {
            dir = true; /* empty segment: repeated slashes merge */
        } else if (len == 1 && out[r] == '.') {
            dir = true;
        } else if (len == 2 && out[r] == '.' && out[r + 1] == '.') {
            if (w > 1) {
                w--;
                while (w > 1 && out[w - 1] != '/')
                    w--;
            }
            dir = true;
        } else {
            memmove(out + w, out + r, len);
            w += len;
            out[w++] = '/';
            dir = e < n;
        }
        r = e + 1;
    }
    if (!dir && w > 1)
        w--;
    return bw_slice_make(out, w);
}
