#include "proxy/client_ip.h"

#include <arpa/inet.h>
#include <string.h>

bool bw_client_ip_is_trusted(const struct bw_config_client_ip *cfg, const struct sockaddr *sa)
{
    for (size_t i = 0; i < cfg->ntrusted; i++)
        if (bw_cidr_contains(&cfg->trusted[i], sa))
            return true;
    return false;
}

void bw_client_addr_format(struct bw_client_addr *out)
{
    const struct sockaddr *sa = (const struct sockaddr *)&out->ss;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, out->text, sizeof out->text);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out->text, sizeof out->text);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, out->text, sizeof out->text);
    } else {
        memcpy(out->text, "unix", 5);
    }
}

/* What may follow an address: nothing, or ':' and a port (0..65535). */
static bool port_suffix_ok(const char *s, size_t n)
{
    if (n == 0)
        return true;
    if (s[0] != ':' || n < 2 || n > 6)
        return false;
    unsigned v = 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

bool bw_client_addr_parse(bw_slice text, struct bw_client_addr *out)
{
    text = bw_slice_trim_ows(text);
    char tmp[BW_IP_TEXT_MAX];
    if (text.len == 0)
        return false;
    const char *p = text.ptr;
    size_t n = text.len;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close || !port_suffix_ok(close + 1, n - (size_t)(close + 1 - p)))
            return false;
        n = (size_t)(close - p) - 1;
        p++;
    } else {
        /* "1.2.3.4:80": a single colon after a dotted quad is a port. */
        const char *colon = memchr(p, ':', n);
        if (colon && memchr(colon + 1, ':', n - (size_t)(colon - p) - 1) == NULL &&
            memchr(p, '.', (size_t)(colon - p)) != NULL) {
            if (!port_suffix_ok(colon, n - (size_t)(colon - p)))
                return false;
            n = (size_t)(colon - p);
        }
    }
    /* The bound is on the address itself: brackets and a port come on top
     * of the longest address text. */
    if (n >= sizeof tmp)
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    memset(&out->ss, 0, sizeof out->ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, tmp, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, tmp, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
    } else {
        return false;
    }
    bw_client_addr_format(out);
    return true;
}

/* Walks X-Forwarded-For right to left over every field line: each hop that is
 * itself trusted may have been told the next address to its left. */
static void from_xff(const struct bw_config_client_ip *cfg, const struct bw_http_header *h,
                     size_t n, struct bw_client_addr *client)
{
    static const bw_slice name = BW_SLICE_LIT("x-forwarded-for");
    for (size_t i = n; i-- > 0;) {
        if (!bw_slice_eq_nocase(h[i].name, name))
            continue;
        bw_slice v = h[i].value;
        size_t end = v.len;
        for (;;) {
            size_t start = end;
            while (start > 0 && v.ptr[start - 1] != ',')
                start--;
            struct bw_client_addr hop;
            if (!bw_client_addr_parse(bw_slice_sub(v, start, end - start), &hop))
                return; /* garbage: keep the last hop we could prove */
            *client = hop;
            if (!bw_client_ip_is_trusted(cfg, (const struct sockaddr *)&hop.ss))
                return;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
}

void bw_client_ip_from_headers(const struct bw_config_client_ip *cfg, bool peer_trusted,
                               const struct bw_http_header *headers, size_t nheaders,
                               struct bw_client_addr *client)
{
    if (!peer_trusted)
        return;
    switch (cfg->from) {
    case BW_CLIENT_IP_X_FORWARDED_FOR:
        from_xff(cfg, headers, nheaders, client);
        return;
    case BW_CLIENT_IP_X_REAL_IP: {
        const struct bw_http_header *h =
            bw_http_find_header(headers, nheaders, BW_SLICE_LIT("x-real-ip"));
        struct bw_client_addr a;
        if (h && bw_client_addr_parse(h->value, &a))
            *client = a;
        return;
    }
    case BW_CLIENT_IP_PEER:
    case BW_CLIENT_IP_PROXY_PROTOCOL:
    case BW_CLIENT_IP__COUNT:
        return;
    }
}
