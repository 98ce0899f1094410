#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const char v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

static enum bw_pp_result fail(const char **reason, const char *why)
{
    *reason = why;
    return BW_PP_ERROR;
}

/* Copies one space-delimited field of a v1 line into out (NUL-terminated). */
static bool next_field(const char **p, const char *end, char *out, size_t cap)
{
    const char *s = *p;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = e < end ? e + 1 : e;
    return true;
}

static bool parse_port(const char *s, uint16_t *ret)
{
    /* 0..65535, decimal, no leading zeros except "0" itself. */
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *ret = (uint16_t)v;
    return true;
}

static enum bw_pp_result parse_v1(const char *buf, size_t len, struct bw_pp_header *out,
                                  const char **reason)
{
    /* At most 107 bytes including the CRLF, so the CR is among the first
     * 106. */
    size_t max = len < 106 ? len : 106;
    const char *cr = memchr(buf, '\r', max);
    if (!cr) {
        if (len >= 106)
            return fail(reason, "PROXY v1 line too long");
        if (memchr(buf, '\n', len))
            return fail(reason, "PROXY v1 line without CR");
        return BW_PP_PARTIAL;
    }
    size_t line_len = (size_t)(cr - buf);
    /* A bare LF before the CR is refused here as it is when no CR has
     * arrived yet, so the verdict does not depend on how reads split. */
    if (memchr(buf, '\n', line_len))
        return fail(reason, "PROXY v1 line without CR");
    if (line_len + 1 >= len)
        return BW_PP_PARTIAL;
    if (cr[1] != '\n')
        return fail(reason, "PROXY v1 line not ended by CRLF");
    /* Fields are compared as C strings: a NUL would end one early. */
    if (memchr(buf, '\0', line_len))
        return fail(reason, "PROXY v1: NUL byte in the line");
    out->len = line_len + 2;
    const char *p = buf + 6; /* after "PROXY " */
    const char *end = cr;
    char proto[16], src[64], dst[64], sport[8], dport[8];
    if (!next_field(&p, end, proto, sizeof proto))
        return fail(reason, "PROXY v1: missing protocol");
    if (strcmp(proto, "UNKNOWN") == 0) {
        out->has_source = false;
        return BW_PP_DONE;
    }
    int family;
    if (strcmp(proto, "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(proto, "TCP6") == 0)
        family = AF_INET6;
    else
        return fail(reason, "PROXY v1: protocol must be TCP4, TCP6 or UNKNOWN");
    uint16_t sp, dp;
    if (!next_field(&p, end, src, sizeof src) || !next_field(&p, end, dst, sizeof dst) ||
        !next_field(&p, end, sport, sizeof sport) || !next_field(&p, end, dport, sizeof dport) ||
        p != end || end[-1] == ' ')
        return fail(reason, "PROXY v1: expected source, destination and two ports");
    if (!parse_port(sport, &sp) || !parse_port(dport, &dp))
        return fail(reason, "PROXY v1: bad port");
    memset(&out->source, 0, sizeof out->source);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->source;
        struct in_addr d;
        if (inet_pton(AF_INET, src, &in->sin_addr) != 1 || inet_pton(AF_INET, dst, &d) != 1)
            return fail(reason, "PROXY v1: bad IPv4 address");
        in->sin_family = AF_INET;
        in->sin_port = htons(sp);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->source;
        struct in6_addr d;
        if (inet_pton(AF_INET6, src, &in6->sin6_addr) != 1 || inet_pton(AF_INET6, dst, &d) != 1)
            return fail(reason, "PROXY v1: bad IPv6 address");
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(sp);
    }
    out->has_source = true;
    return BW_PP_DONE;
}

static enum bw_pp_result parse_v2(const unsigned char *b, size_t len, struct bw_pp_header *out,
                                  const char **reason)
{
    if (len < 16)
        return BW_PP_PARTIAL;
    unsigned ver = b[12] >> 4, cmd = b[12] & 0x0f;
    unsigned fam = b[13];
    size_t body = ((size_t)b[14] << 8) | b[15];
    if (ver != 2)
        return fail(reason, "PROXY v2: version must be 2");
    if (16 + body > BW_PROXY_PROTOCOL_MAX_BYTES)
        return fail(reason, "PROXY v2: header too long");
    if (len < 16 + body)
        return BW_PP_PARTIAL;
    out->len = 16 + body;
    if (cmd == 0x0) { /* LOCAL: health check from the balancer itself */
        out->has_source = false;
        return BW_PP_DONE;
    }
    if (cmd != 0x1)
        return fail(reason, "PROXY v2: unknown command");
    memset(&out->source, 0, sizeof out->source);
    switch (fam) {
    case 0x11:   /* TCP over IPv4 */
    case 0x12: { /* UDP over IPv4 */
        if (body < 12)
            return fail(reason, "PROXY v2: IPv4 address block too short");
        struct sockaddr_in *in = (struct sockaddr_in *)&out->source;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, b + 16, 4);
        memcpy(&in->sin_port, b + 24, 2);
        out->has_source = true;
        return BW_PP_DONE;
    }
    case 0x21:
    case 0x22: {
        if (body < 36)
            return fail(reason, "PROXY v2: IPv6 address block too short");
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->source;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, b + 16, 16);
        memcpy(&in6->sin6_port, b + 48, 2);
        out->has_source = true;
        return BW_PP_DONE;
    }
    default:
        /* UNSPEC or unix sockets: the connection is accepted, the peer stays. */
        if ((fam >> 4) > 3 || (fam & 0x0f) > 2)
            return fail(reason, "PROXY v2: bad address family");
        out->has_source = false;
        return BW_PP_DONE;
    }
}

enum bw_pp_result bw_proxy_protocol_parse(const char *buf, size_t len, struct bw_pp_header *out,
                                          const char **ret_reason)
{
    *ret_reason = "";
    size_t cmp = len < sizeof v2_sig ? len : sizeof v2_sig;
    if (memcmp(buf, v2_sig, cmp) == 0) {
        if (len < sizeof v2_sig)
            return BW_PP_PARTIAL;
        return parse_v2((const unsigned char *)buf, len, out, ret_reason);
    }
    cmp = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", cmp) == 0) {
        if (len < 6)
            return BW_PP_PARTIAL;
        return parse_v1(buf, len, out, ret_reason);
    }
    return fail(ret_reason, "connection from a trusted peer without a PROXY protocol header");
}
