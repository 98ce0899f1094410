/* Value parsers for the config: durations, sizes, socket addresses, CIDRs.
 *
 * Each takes a slice (no NUL termination assumed), accepts one exact syntax
 * and refuses everything else, including overflow. They check syntax only:
 * whether a value is in range for a given key is the loader's business
 * (load.c). No name resolution ever happens here: a config that names a host
 * would make loading depend on DNS. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Leading decimal digits of s into *ret_v; returns how many were read, 0 when
 * there are none or the value does not fit in 64 bits. */
static size_t parse_u64_prefix(bw_slice s, uint64_t *ret_v)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < s.len && is_digit(s.ptr[i])) {
        uint64_t d = (uint64_t)(s.ptr[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        i++;
    }
    *ret_v = v;
    return i;
}

struct unit {
    const char *name;
    uint64_t mul;
};

/* Multiplies the leading number of s by the factor of the unit that makes up
 * the rest of s. */
static bw_status parse_with_units(bw_slice s, const struct unit *units, size_t nunits,
                                  uint64_t *ret)
{
    uint64_t v;
    size_t nd = parse_u64_prefix(s, &v);
    /* "010s": 10 to some readers, octal to others; refused like a port's
     * leading zero (the loader says how to write it). */
    if (nd == 0 || (nd > 1 && s.ptr[0] == '0'))
        return BW_ERR;
    bw_slice unit = bw_slice_sub(s, nd, s.len - nd);
    for (size_t i = 0; i < nunits; i++) {
        if (!bw_slice_eq(unit, bw_slice_make(units[i].name, strlen(units[i].name))))
            continue;
        if (v > UINT64_MAX / units[i].mul)
            return BW_ERR;
        *ret = v * units[i].mul;
        return BW_OK;
    }
    return BW_ERR;
}

bw_status bw_parse_duration_ms(bw_slice s, uint64_t *ret_ms)
{
    static const struct unit units[] = {
        {"ms", 1},
        {"s", 1000},
        {"m", 60 * 1000},
        {"h", 60 * 60 * 1000},
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], ret_ms);
}

bw_status bw_parse_duration_us(bw_slice s, uint64_t *ret_us)
{
    static const struct unit units[] = {
        {"us", 1},
        {"ms", 1000},
        {"s", 1000 * 1000},
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], ret_us);
}

bw_status bw_parse_size(bw_slice s, uint64_t *ret_bytes)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", (uint64_t)1 << 10},
        {"MiB", (uint64_t)1 << 20},
        {"GiB", (uint64_t)1 << 30},
        {"TiB", (uint64_t)1 << 40},
        {"KB", 1000},
        {"MB", 1000 * 1000},
        {"GB", 1000 * 1000 * 1000},
        {"TB", (uint64_t)1000 * 1000 * 1000 * 1000},
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], ret_bytes);
}

/* Text that is a host name rather than a malformed IPv4 address: anything
 * but digits and dots. */
static bool looks_like_name(bw_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (!is_digit(s.ptr[i]) && s.ptr[i] != '.')
            return true;
    return false;
}

static const char *const NO_NAMES =
    "bulwark does not resolve names in the config; use an IP address";

bw_status bw_parse_sockaddr_err(bw_slice s, struct bw_sockaddr *ret, bw_error *err)
{
    if (s.len == 0)
        return bw_error_set(err, "expected an address like 127.0.0.1:8080 or [::1]:8080");
    if (s.len > 63)
        return bw_error_set(err, "too long for an address");
    if (memchr(s.ptr, '\0', s.len))
        return bw_error_set(err, "contains a NUL byte");

    /* proxy_pass http://127.0.0.1:9000 is the nginx way to write it. */
    for (size_t i = 0; i + 3 <= s.len; i++)
        if (memcmp(s.ptr + i, "://", 3) == 0)
            return bw_error_set(err, "write the address without a scheme, like 127.0.0.1:9000 "
                                     "(TLS to upstream servers is upstreams.<name>.tls)");

    bw_slice host, port;
    bool v6;
    if (s.ptr[0] == '[') {
        const char *close = memchr(s.ptr, ']', s.len);
        if (!close)
            return bw_error_set(err, "missing ']' after the IPv6 address");
        size_t hl = (size_t)(close - s.ptr) - 1;
        host = bw_slice_sub(s, 1, hl);
        size_t rest = 1 + hl + 1;
        if (rest >= s.len || s.ptr[rest] != ':')
            return bw_error_set(err, "missing :port after the ']', like [::1]:8080");
        port = bw_slice_sub(s, rest + 1, s.len - rest - 1);
        v6 = true;
    } else {
        size_t colon = s.len;
        while (colon > 0 && s.ptr[colon - 1] != ':')
            colon--;
        if (colon == 0)
            return bw_error_set(err, "missing :port, like 127.0.0.1:8080");
        host = bw_slice_sub(s, 0, colon - 1);
        port = bw_slice_sub(s, colon, s.len - colon);
        if (memchr(host.ptr, ':', host.len))
            return bw_error_set(err, "an IPv6 address needs brackets, like [::1]:8080");
        v6 = false;
    }
    if (host.len == 0)
        return bw_error_set(err, "missing the IP address before the port (0.0.0.0 or [::] "
                                 "for every interface)");

    uint64_t pv;
    size_t nd = parse_u64_prefix(port, &pv);
    if (port.len == 0 || nd != port.len || pv > 65535)
        return bw_error_set(err, "the port must be a number from 0 to 65535");
    /* "080" is 80 to some readers and octal 64 to others (getaddrinfo,
     * inet_aton-style parsers): refuse the ambiguity, as for IPv4 octets. */
    if (port.len > 1 && port.ptr[0] == '0')
        return bw_error_set(err, "the port \"%.*s\" has a leading zero; write %u", (int)port.len,
                            port.ptr, (unsigned)pv);

    char buf[64];
    memcpy(buf, host.ptr, host.len);
    buf[host.len] = '\0';

    memset(ret, 0, sizeof *ret);
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ret->ss;
        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
            return bw_error_set(err, "not a valid IPv6 address");
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pv);
        ret->len = sizeof *sin6;
        char ntop[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &sin6->sin6_addr, ntop, sizeof ntop);
        snprintf(ret->text, sizeof ret->text, "[%s]:%u", ntop, (unsigned)pv);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ret->ss;
        if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1) {
            if (looks_like_name(host))
                return bw_error_set(err, "%s", NO_NAMES);
            return bw_error_set(err, "not a valid IPv4 address");
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pv);
        ret->len = sizeof *sin;
        char ntop[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, ntop, sizeof ntop);
        snprintf(ret->text, sizeof ret->text, "%s:%u", ntop, (unsigned)pv);
    }
    return BW_OK;
}

bw_status bw_parse_sockaddr(bw_slice s, struct bw_sockaddr *ret)
{
    bw_error err;
    return bw_parse_sockaddr_err(s, ret, &err);
}

/* True when the first `prefix` bits of a and b are equal. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rem = prefix % 8;
    if (full && memcmp(a, b, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

bw_status bw_parse_cidr_err(bw_slice s, struct bw_cidr *ret, bw_error *err)
{
    if (s.len == 0)
        return bw_error_set(err, "expected an address or a CIDR like 10.0.0.0/8");
    if (memchr(s.ptr, '\0', s.len))
        return bw_error_set(err, "contains a NUL byte");
    const char *slash = memchr(s.ptr, '/', s.len);
    bw_slice addr = slash ? bw_slice_sub(s, 0, (size_t)(slash - s.ptr)) : s;
    bool v6 = memchr(addr.ptr, ':', addr.len) != NULL;
    unsigned maxp = v6 ? 128 : 32;

    if (addr.len == 0)
        return bw_error_set(err, "missing the address before the '/'");
    if (addr.len >= INET6_ADDRSTRLEN)
        return bw_error_set(err, "too long for an IP address");
    char buf[INET6_ADDRSTRLEN];
    memcpy(buf, addr.ptr, addr.len);
    buf[addr.len] = '\0';

    struct bw_cidr c;
    memset(&c, 0, sizeof c);
    if (v6) {
        if (inet_pton(AF_INET6, buf, c.addr) != 1)
            return bw_error_set(err, "not a valid IPv6 address");
        c.family = AF_INET6;
    } else {
        if (inet_pton(AF_INET, buf, c.addr) != 1) {
            if (looks_like_name(addr))
                return bw_error_set(err, "%s", NO_NAMES);
            return bw_error_set(err, "not a valid IPv4 address");
        }
        c.family = AF_INET;
    }

    unsigned prefix = maxp;
    if (slash) {
        bw_slice p = bw_slice_sub(s, addr.len + 1, s.len - addr.len - 1);
        uint64_t pv;
        size_t nd = parse_u64_prefix(p, &pv);
        if (p.len == 0 || nd != p.len || nd > 3 || pv > maxp)
            return bw_error_set(err, "the prefix length must be a number from 0 to %u", maxp);
        prefix = (unsigned)pv;
    }
    c.prefix = (uint8_t)prefix;

    /* The network with the host bits cleared; if that differs from what was
     * written, the writer probably meant the network. */
    uint8_t net[16];
    memset(net, 0, sizeof net);
    memcpy(net, c.addr, prefix / 8);
    if (prefix % 8)
        net[prefix / 8] = (uint8_t)(c.addr[prefix / 8] & (0xFFu << (8 - prefix % 8)));
    if (memcmp(net, c.addr, sizeof net) != 0) {
        char ntop[INET6_ADDRSTRLEN];
        inet_ntop(v6 ? AF_INET6 : AF_INET, net, ntop, sizeof ntop);
        return bw_error_set(err, "host bits set; did you mean %s/%u?", ntop, prefix);
    }
    /* ::ffff:a.b.c.d/96+ is an IPv4 network, as in rule literals (and as
     * bw_cidr_contains sees a mapped peer): one meaning for one text. */
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (v6 && prefix >= 96 && memcmp(c.addr, v4mapped, sizeof v4mapped) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix = (uint8_t)(prefix - 96);
    }
    *ret = c;
    return BW_OK;
}

bw_status bw_parse_cidr(bw_slice s, struct bw_cidr *ret)
{
    bw_error err;
    return bw_parse_cidr_err(s, ret, &err);
}

bool bw_cidr_contains(const struct bw_cidr *c, const struct sockaddr *sa)
{
    const uint8_t *a;
    if (sa->sa_family == AF_INET) {
        if (c->family != AF_INET)
            return false;
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        /* ::ffff:a.b.c.d is an IPv4 peer (as a dual-stack socket or a
         * forwarded header shows one): only IPv4 networks hold it, as for
         * ip.src in rules, so "::/0" cannot trust every IPv4 client. */
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        bool mapped = IN6_IS_ADDR_V4MAPPED(in6);
        if (c->family != (mapped ? AF_INET : AF_INET6))
            return false;
        a = mapped ? in6->s6_addr + 12 : in6->s6_addr;
    } else {
        return false;
    }
    return prefix_eq(a, c->addr, c->prefix);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        /* ::ffff:127.x.y.z reaches the IPv4 loopback only. */
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

bool bw_config_admin_open_warning(const struct bw_config *cfg, char *buf, size_t cap)
{
    if (!cfg->admin.enabled || cfg->admin.has_token_file || is_loopback(&cfg->admin.addr.ss))
        return false;
    snprintf(buf, cap,
             "admin.address %s is not a loopback address and admin.token_file is not "
             "set: POST /reload and POST /killswitch are open to anyone who can reach it (set "
             "admin.token_file, or listen on 127.0.0.1)",
             cfg->admin.addr.text);
    return true;
}
