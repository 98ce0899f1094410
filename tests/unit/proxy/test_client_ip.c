/* Who the client is (src/proxy/client_ip.c): X-Forwarded-For walked from the
 * right over every line, X-Real-IP, trust decided by CIDRs, address parsing
 * and printing. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy/client_ip.h"
#include "test.h"

struct cfg {
    struct bw_config_client_ip c;
    struct bw_cidr cidrs[8];
};

/* trusted: NULL-terminated list of CIDR texts. */
static bool make_cfg(struct cfg *k, enum bw_client_ip_source from, const char *const *trusted)
{
    memset(k, 0, sizeof *k);
    k->c.from = from;
    k->c.trusted = k->cidrs;
    for (size_t i = 0; trusted[i]; i++) {
        if (bw_parse_cidr(bw_slice_make(trusted[i], strlen(trusted[i])), &k->cidrs[i]) != BW_OK)
            return false;
        k->c.ntrusted++;
    }
    return true;
}

static const char *const TRUST[] = {"10.0.0.0/8", "192.168.1.0/24", "2001:db8:ffff::/48", NULL};

#define H(n, v)                                                                                    \
    {                                                                                              \
        BW_SLICE_LIT(n), BW_SLICE_LIT(v)                                                           \
    }

/* The peer is 10.0.0.1 (trusted) unless a test says otherwise. */
static const char *resolve(const struct cfg *k, bool peer_trusted, const struct bw_http_header *h,
                           size_t n, struct bw_client_addr *a)
{
    bool ok = bw_client_addr_parse(BW_SLICE_LIT("10.0.0.1"), a);
    if (!ok)
        return "<peer did not parse>";
    bw_client_ip_from_headers(&k->c, peer_trusted, h, n, a);
    return a->text;
}

#define RESOLVE(k, trusted, hdrs)                                                                  \
    resolve((k), (trusted), (hdrs), sizeof(hdrs) / sizeof(hdrs)[0], &a)

TEST(xff_rightmost_untrusted_across_lines)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct bw_http_header h[] = {
        H("X-Forwarded-For", "1.1.1.1, 2.2.2.2"),
        H("Accept", "*/*"),
        H("x-forwarded-for", "3.3.3.3,10.1.1.1"),
        H("X-FORWARDED-FOR", " 192.168.1.9 , 10.2.2.2"),
    };
    /* From the right: 10.2.2.2, 192.168.1.9 and 10.1.1.1 are trusted hops;
     * 3.3.3.3 is the first address no trusted proxy vouches beyond. */
    CHECK_STR_EQ(RESOLVE(&k, true, h), "3.3.3.3");
}

TEST(xff_single_untrusted)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct bw_http_header h[] = {H("X-Forwarded-For", "6.6.6.6, 203.0.113.5")};
    /* A client can prepend anything; only the right-most untrusted counts. */
    CHECK_STR_EQ(RESOLVE(&k, true, h), "203.0.113.5");
}

TEST(xff_all_trusted_gives_leftmost)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct bw_http_header h[] = {
        H("X-Forwarded-For", "10.9.9.9, 10.8.8.8"),
        H("X-Forwarded-For", "192.168.1.1"),
    };
    CHECK_STR_EQ(RESOLVE(&k, true, h), "10.9.9.9");
}

TEST(xff_garbage_stops_the_walk)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    /* The walk stops at garbage and keeps the last hop it could prove. */
    const struct bw_http_header h1[] = {H("X-Forwarded-For", "5.5.5.5, bogus, 10.3.3.3")};
    CHECK_STR_EQ(RESOLVE(&k, true, h1), "10.3.3.3");
    /* Garbage at the right end: nothing proven, the peer stays. */
    const struct bw_http_header h2[] = {H("X-Forwarded-For", "5.5.5.5, unknown")};
    CHECK_STR_EQ(RESOLVE(&k, true, h2), "10.0.0.1");
    const struct bw_http_header h3[] = {H("X-Forwarded-For", "5.5.5.5,,10.3.3.3")};
    CHECK_STR_EQ(RESOLVE(&k, true, h3), "10.3.3.3");
    /* Trailing junk after a bracketed address or a port is garbage too. */
    const struct bw_http_header h6[] = {H("X-Forwarded-For", "5.5.5.5, [2001:db8::9]evil")};
    CHECK_STR_EQ(RESOLVE(&k, true, h6), "10.0.0.1");
    const struct bw_http_header h4[] = {H("X-Forwarded-For", "1.2.3.4.5")};
    CHECK_STR_EQ(RESOLVE(&k, true, h4), "10.0.0.1");
    /* Garbage on an earlier line stops it too: addresses left of it are
     * never reached. */
    const struct bw_http_header h5[] = {H("X-Forwarded-For", "7.7.7.7"), H("X-Forwarded-For", "x"),
                                        H("X-Forwarded-For", "10.4.4.4")};
    CHECK_STR_EQ(RESOLVE(&k, true, h5), "10.4.4.4");
}

TEST(untrusted_peer_ignores_headers)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct bw_http_header h[] = {H("X-Forwarded-For", "1.2.3.4"), H("X-Real-IP", "1.2.3.4")};
    CHECK_STR_EQ(RESOLVE(&k, false, h), "10.0.0.1");
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_REAL_IP, TRUST));
    CHECK_STR_EQ(RESOLVE(&k, false, h), "10.0.0.1");
}

TEST(source_selects_the_header)
{
    struct cfg k;
    struct bw_client_addr a;
    const struct bw_http_header h[] = {H("X-Forwarded-For", "1.2.3.4"), H("X-Real-IP", "5.6.7.8")};
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_REAL_IP, TRUST));
    CHECK_STR_EQ(RESOLVE(&k, true, h), "5.6.7.8");
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    CHECK_STR_EQ(RESOLVE(&k, true, h), "1.2.3.4");
    /* proxy_protocol and peer never read headers. */
    CHECK(make_cfg(&k, BW_CLIENT_IP_PROXY_PROTOCOL, TRUST));
    CHECK_STR_EQ(RESOLVE(&k, true, h), "10.0.0.1");
    CHECK(make_cfg(&k, BW_CLIENT_IP_PEER, TRUST));
    CHECK_STR_EQ(RESOLVE(&k, true, h), "10.0.0.1");
}

TEST(x_real_ip_forms)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_REAL_IP, TRUST));
    const struct bw_http_header h1[] = {H("x-real-ip", "2001:db8::7")};
    CHECK_STR_EQ(RESOLVE(&k, true, h1), "2001:db8::7");
    const struct bw_http_header h2[] = {H("X-Real-IP", "garbage")};
    CHECK_STR_EQ(RESOLVE(&k, true, h2), "10.0.0.1");
    const struct bw_http_header h3[] = {H("X-Real-IP", "203.0.113.1:5555")};
    CHECK_STR_EQ(RESOLVE(&k, true, h3), "203.0.113.1");
    const struct bw_http_header h4[] = {H("X-Real-IP", "")};
    CHECK_STR_EQ(RESOLVE(&k, true, h4), "10.0.0.1");
}

TEST(xff_ipv6_and_ported_forms)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct bw_http_header h1[] = {H("X-Forwarded-For", "2001:db8::1, 2001:db8:ffff::2")};
    CHECK_STR_EQ(RESOLVE(&k, true, h1), "2001:db8::1");
    const struct bw_http_header h2[] = {H("X-Forwarded-For", "[2001:db8::1]:443")};
    CHECK_STR_EQ(RESOLVE(&k, true, h2), "2001:db8::1");
    const struct bw_http_header h3[] = {H("X-Forwarded-For", "198.51.100.4:8080, 10.0.0.2:1")};
    CHECK_STR_EQ(RESOLVE(&k, true, h3), "198.51.100.4");
    /* An IPv4-mapped hop inside a trusted IPv4 range is trusted too. */
    const struct bw_http_header h4[] = {H("X-Forwarded-For", "198.51.100.4, ::ffff:10.0.0.9")};
    CHECK_STR_EQ(RESOLVE(&k, true, h4), "198.51.100.4");
    /* Long but valid IPv6 text. */
    const struct bw_http_header h5[] = {
        H("X-Forwarded-For", "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535")};
    CHECK_STR_EQ(RESOLVE(&k, true, h5), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

TEST(addr_parse)
{
    struct bw_client_addr a;
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("203.0.113.7"), &a));
    CHECK_STR_EQ(a.text, "203.0.113.7");
    CHECK_INT_EQ(a.ss.ss_family, AF_INET);
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("  203.0.113.7\t"), &a));
    CHECK_STR_EQ(a.text, "203.0.113.7");
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("2001:DB8:0:0::1"), &a));
    CHECK_STR_EQ(a.text, "2001:db8::1");
    CHECK_INT_EQ(a.ss.ss_family, AF_INET6);
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("[::1]"), &a));
    CHECK_STR_EQ(a.text, "::1");
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("[::1]:80"), &a));
    CHECK_STR_EQ(a.text, "::1");
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:80"), &a));
    CHECK_STR_EQ(a.text, "1.2.3.4");

    CHECK(!bw_client_addr_parse(BW_SLICE_LIT(""), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("   "), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[]"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[1.2.3.4"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("256.1.1.1"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("example.com"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("unknown"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4 5.6.7.8"), &a));
    /* Only a port may follow an address. */
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1]junk"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1]:"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1]:http"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1]:65536"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("[::1]]"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:x"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:8080x"), &a));
    CHECK(!bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:1234567"), &a));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("[::1]:65535"), &a));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("1.2.3.4:0"), &a));
    /* Longer than any address text: refused without reading past it. */
    CHECK(!bw_client_addr_parse(
        BW_SLICE_LIT("0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001"), &a));
    /* Not NUL-terminated: only len bytes are read. */
    const char raw[] = {'9', '.', '9', '.', '9', '.', '9', '9', '9'};
    CHECK(bw_client_addr_parse(bw_slice_make(raw, 7), &a));
    CHECK_STR_EQ(a.text, "9.9.9.9");
}

TEST(ipv4_mapped_prints_as_ipv4)
{
    struct bw_client_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
    in6->sin6_family = AF_INET6;
    CHECK(inet_pton(AF_INET6, "::ffff:192.0.2.33", &in6->sin6_addr) == 1);
    bw_client_addr_format(&a);
    CHECK_STR_EQ(a.text, "192.0.2.33");
    CHECK(inet_pton(AF_INET6, "2001:db8::ffff:192.0.2.33", &in6->sin6_addr) == 1);
    bw_client_addr_format(&a);
    CHECK_STR_EQ(a.text, "2001:db8::ffff:c000:221");
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("::ffff:198.51.100.1"), &a));
    CHECK_STR_EQ(a.text, "198.51.100.1");
}

TEST(trust_by_cidr)
{
    struct cfg k;
    struct bw_client_addr a;
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, TRUST));
    const struct sockaddr *sa = (const struct sockaddr *)&a.ss;
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("10.255.255.255"), &a));
    CHECK(bw_client_ip_is_trusted(&k.c, sa));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("11.0.0.0"), &a));
    CHECK(!bw_client_ip_is_trusted(&k.c, sa));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("192.168.2.1"), &a));
    CHECK(!bw_client_ip_is_trusted(&k.c, sa));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("2001:db8:ffff:1::1"), &a));
    CHECK(bw_client_ip_is_trusted(&k.c, sa));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("2001:db8:fffe::1"), &a));
    CHECK(!bw_client_ip_is_trusted(&k.c, sa));
    /* A dual-stack listener sees an IPv4 balancer as ::ffff:a.b.c.d. */
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("::ffff:10.1.2.3"), &a));
    CHECK(bw_client_ip_is_trusted(&k.c, sa));
    CHECK(make_cfg(&k, BW_CLIENT_IP_X_FORWARDED_FOR, (const char *const[]){NULL}));
    CHECK(bw_client_addr_parse(BW_SLICE_LIT("10.0.0.1"), &a));
    CHECK(!bw_client_ip_is_trusted(&k.c, sa));
}

int main(void)
{
    RUN(xff_rightmost_untrusted_across_lines);
    RUN(xff_single_untrusted);
    RUN(xff_all_trusted_gives_leftmost);
    RUN(xff_garbage_stops_the_walk);
    RUN(untrusted_peer_ignores_headers);
    RUN(source_selects_the_header);
    RUN(x_real_ip_forms);
    RUN(xff_ipv6_and_ported_forms);
    RUN(addr_parse);
    RUN(ipv4_mapped_prints_as_ipv4);
    RUN(trust_by_cidr);
    return t_done();
}
