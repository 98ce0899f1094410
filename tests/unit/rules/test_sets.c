#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "config/config.h"
#include "rules/sets.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------- */

static struct bw_cidr cidr(const char *s)
{
    struct bw_cidr c;
    memset(&c, 0, sizeof c);
    bw_error err;
    if (bw_parse_cidr_err(bw_slice_make(s, strlen(s)), &c, &err) != BW_OK) {
        printf("     bad test CIDR %s: %s\n", s, err.msg);
        abort();
    }
    return c;
}

/* Builds an IP set from a NULL-terminated list of CIDR strings. */
static bool ipset(bw_arena *a, struct bw_ip_set *s, const char *const *list)
{
    struct bw_cidr c[64];
    size_t n = 0;
    while (list[n]) {
        c[n] = cidr(list[n]);
        n++;
    }
    bw_error err;
    if (bw_ip_set_build(a, c, n, s, &err) != BW_OK) {
        printf("     build: %s\n", err.msg);
        return false;
    }
    return true;
}

/* Is the textual address (v4 or v6) in the set? */
static int in(const struct bw_ip_set *s, const char *addr)
{
    uint8_t b[16];
    if (strchr(addr, ':')) {
        if (inet_pton(AF_INET6, addr, b) != 1)
            abort();
        return bw_ip_set_contains_v6(s, b);
    }
    if (inet_pton(AF_INET, addr, b) != 1)
        abort();
    return bw_ip_set_contains_v4(s, b);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- IP sets ------------------------------------------------------------- */

TEST(ip_range_edges)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    CHECK(ipset(&a, &s, LIST("10.0.0.0/8", "192.0.2.1", "2001:db8::/32")));
    CHECK_INT_EQ(in(&s, "9.255.255.255"), 0);
    CHECK_INT_EQ(in(&s, "10.0.0.0"), 1);
    CHECK_INT_EQ(in(&s, "10.255.255.255"), 1);
    CHECK_INT_EQ(in(&s, "11.0.0.0"), 0);
    CHECK_INT_EQ(in(&s, "192.0.2.0"), 0);
    CHECK_INT_EQ(in(&s, "192.0.2.1"), 1);
    CHECK_INT_EQ(in(&s, "192.0.2.2"), 0);
    CHECK_INT_EQ(in(&s, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"), 0);
    CHECK_INT_EQ(in(&s, "2001:db8::"), 1);
    CHECK_INT_EQ(in(&s, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    CHECK_INT_EQ(in(&s, "2001:db9::"), 0);
    CHECK_INT_EQ(s.n4, 2);
    CHECK_INT_EQ(s.n6, 1);
    bw_arena_reset(&a);
}

TEST(ip_overlap_and_adjacent_merge)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    CHECK(ipset(&a, &s, LIST("10.0.0.0/9", "10.128.0.0/9"))); /* adjacent halves */
    CHECK_INT_EQ(s.n4, 1);
    CHECK(s.v4[0].lo == 0x0a000000u && s.v4[0].hi == 0x0affffffu);
    CHECK(ipset(&a, &s, LIST("10.1.0.0/16", "10.0.0.0/8", "10.1.2.3"))); /* nested */
    CHECK_INT_EQ(s.n4, 1);
    CHECK(ipset(&a, &s, LIST("1.2.3.4", "1.2.3.5"))); /* adjacent hosts */
    CHECK_INT_EQ(s.n4, 1);
    CHECK(ipset(&a, &s, LIST("1.2.3.4", "1.2.3.6"))); /* a gap of one */
    CHECK_INT_EQ(s.n4, 2);
    CHECK_INT_EQ(in(&s, "1.2.3.5"), 0);
    CHECK(ipset(&a, &s, LIST("1.2.3.4", "1.2.3.4", "1.2.3.4"))); /* duplicates */
    CHECK_INT_EQ(s.n4, 1);
    CHECK(ipset(&a, &s, LIST("2001:db8::/33", "2001:db8:8000::/33", "2001:db8::1")));
    CHECK_INT_EQ(s.n6, 1);
    CHECK_INT_EQ(in(&s, "2001:db8:ffff::1"), 1);
    bw_arena_reset(&a);
}

TEST(ip_whole_spaces_and_hosts)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    CHECK(ipset(&a, &s, LIST("0.0.0.0/0")));
    CHECK_INT_EQ(in(&s, "0.0.0.0"), 1);
    CHECK_INT_EQ(in(&s, "255.255.255.255"), 1);
    CHECK_INT_EQ(in(&s, "::ffff:1.2.3.4"), 1); /* mapped: an IPv4 address */
    CHECK_INT_EQ(in(&s, "2001:db8::1"), 0);
    CHECK_INT_EQ(in(&s, "::"), 0);

    /* ::/0 is the IPv6 space: no IPv4 address, mapped or not, is in it */
    CHECK(ipset(&a, &s, LIST("::/0")));
    CHECK_INT_EQ(in(&s, "::"), 1);
    CHECK_INT_EQ(in(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    CHECK_INT_EQ(in(&s, "2001:db8::1"), 1);
    CHECK_INT_EQ(in(&s, "1.2.3.4"), 0);
    CHECK_INT_EQ(in(&s, "0.0.0.0"), 0);
    CHECK_INT_EQ(in(&s, "::ffff:1.2.3.4"), 0);
    CHECK_INT_EQ(s.n4, 0);

    /* ::ffff:0:0/96 is the IPv4 space written in IPv6 */
    CHECK(ipset(&a, &s, LIST("::ffff:0:0/96")));
    CHECK_INT_EQ(in(&s, "0.0.0.0"), 1);
    CHECK_INT_EQ(in(&s, "255.255.255.255"), 1);
    CHECK_INT_EQ(in(&s, "::ffff:1.2.3.4"), 1);
    CHECK_INT_EQ(in(&s, "::"), 0);
    CHECK_INT_EQ(in(&s, "2001:db8::1"), 0);
    CHECK_INT_EQ(in(&s, "::fffe:ffff:ffff"), 0);
    CHECK_INT_EQ(s.n6, 0);

    /* both spaces: everything */
    CHECK(ipset(&a, &s, LIST("::/0", "0.0.0.0/0")));
    CHECK_INT_EQ(in(&s, "1.2.3.4"), 1);
    CHECK_INT_EQ(in(&s, "::ffff:1.2.3.4"), 1);
    CHECK_INT_EQ(in(&s, "2001:db8::1"), 1);

    /* /32 and /128 at both ends of their spaces: no overflow in the merge */
    CHECK(ipset(&a, &s, LIST("255.255.255.255/32", "0.0.0.0/32", "255.255.255.254")));
    CHECK_INT_EQ(s.n4, 2);
    CHECK_INT_EQ(in(&s, "255.255.255.255"), 1);
    CHECK_INT_EQ(in(&s, "255.255.255.254"), 1);
    CHECK_INT_EQ(in(&s, "255.255.255.253"), 0);
    CHECK_INT_EQ(in(&s, "0.0.0.0"), 1);
    CHECK_INT_EQ(in(&s, "0.0.0.1"), 0);
    CHECK(ipset(&a, &s, LIST("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128", "::1")));
    CHECK_INT_EQ(s.n6, 2);
    CHECK_INT_EQ(in(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    CHECK_INT_EQ(in(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 0);
    CHECK_INT_EQ(in(&s, "::"), 1);
    CHECK_INT_EQ(in(&s, "::1"), 1);
    CHECK_INT_EQ(in(&s, "::2"), 0);

    /* empty set */
    CHECK(bw_ip_set_build(&a, NULL, 0, &s, &(bw_error){{0}}) == BW_OK);
    CHECK_INT_EQ(in(&s, "1.2.3.4"), 0);
    CHECK_INT_EQ(in(&s, "::1"), 0);
    bw_arena_reset(&a);
}

TEST(ip_mapped_addresses)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    CHECK(ipset(&a, &s, LIST("10.0.0.0/8")));
    CHECK_INT_EQ(in(&s, "::ffff:10.1.2.3"), 1);
    CHECK_INT_EQ(in(&s, "::ffff:11.0.0.0"), 0);
    CHECK_INT_EQ(in(&s, "::10.1.2.3"), 0);        /* IPv4-compatible: not mapped */
    CHECK_INT_EQ(in(&s, "64:ff9b::10.1.2.3"), 0); /* NAT64: not mapped */
    /* a mapped CIDR is an IPv4 CIDR */
    CHECK(ipset(&a, &s, LIST("::ffff:10.0.0.0/104")));
    CHECK_INT_EQ(in(&s, "10.1.2.3"), 1);
    CHECK_INT_EQ(in(&s, "11.1.2.3"), 0);
    CHECK_INT_EQ(in(&s, "::ffff:10.1.2.3"), 1);
    CHECK_INT_EQ(in(&s, "::a01:203"), 0); /* 10.1.2.3 IPv4-compatible: IPv6 */
    CHECK_INT_EQ(s.n6, 0);
    /* an IPv6 CIDR over the mapped block (prefix under 96) is an IPv6
     * network: it holds no IPv4 address */
    CHECK(ipset(&a, &s, LIST("::fffe:0:0/95")));
    CHECK_INT_EQ(in(&s, "0.0.0.0"), 0);
    CHECK_INT_EQ(in(&s, "255.255.255.255"), 0);
    CHECK_INT_EQ(in(&s, "::ffff:1.2.3.4"), 0);
    CHECK_INT_EQ(in(&s, "::fffe:0:0"), 1);
    CHECK_INT_EQ(in(&s, "::fffe:ffff:ffff"), 1);
    CHECK_INT_EQ(in(&s, "::fffd:ffff:ffff"), 0);
    CHECK_INT_EQ(s.n4, 0);

    /* through sockaddrs, as the proxy holds ip.src */
    CHECK(ipset(&a, &s, LIST("192.0.2.0/24", "2001:db8::/32")));
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.77", &s4.sin_addr);
    CHECK(bw_ip_set_contains_sockaddr(&s, (struct sockaddr *)&s4));
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.77", &s6.sin6_addr);
    CHECK(bw_ip_set_contains_sockaddr(&s, (struct sockaddr *)&s6));
    inet_pton(AF_INET6, "2001:db8:1::", &s6.sin6_addr);
    CHECK(bw_ip_set_contains_sockaddr(&s, (struct sockaddr *)&s6));
    inet_pton(AF_INET6, "2001:db9::", &s6.sin6_addr);
    CHECK(!bw_ip_set_contains_sockaddr(&s, (struct sockaddr *)&s6));
    struct sockaddr other = {.sa_family = AF_UNIX};
    CHECK(!bw_ip_set_contains_sockaddr(&s, &other));
    bw_arena_reset(&a);
}

/* Reference: every address as a 16-byte IPv6 address (IPv4 mapped), every
 * CIDR in that space, membership by comparing prefix bits. */
static void to_mapped(const uint8_t v4[4], uint8_t out[16])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, v4, 4);
}

static bool ref_contains(const struct bw_cidr *c, size_t n, const uint8_t a16[16])
{
    for (size_t i = 0; i < n; i++) {
        uint8_t net[16];
        unsigned p;
        if (c[i].family == AF_INET) {
            to_mapped(c[i].addr, net);
            p = 96u + c[i].prefix;
        } else {
            memcpy(net, c[i].addr, 16);
            p = c[i].prefix;
        }
        bool eq = true;
        for (unsigned b = 0; b < p && eq; b++)
            eq = ((net[b / 8] >> (7 - b % 8)) & 1) == ((a16[b / 8] >> (7 - b % 8)) & 1);
        if (eq)
            return true;
    }
    return false;
}

/* A random CIDR in a crowded space, so that CIDRs overlap and touch. */
static struct bw_cidr random_cidr(void)
{
    struct bw_cidr c;
    memset(&c, 0, sizeof c);
    uint64_t r = rnd();
    if (r % 3) {
        c.family = AF_INET;
        c.prefix = (uint8_t)(22 + rnd() % 11); /* /22../32 in 10.0.0.0/8 */
        uint32_t v = 0x0a000000u | (uint32_t)(rnd() & 0x00ffffffu);
        v &= c.prefix ? ~(uint32_t)0 << (32 - c.prefix) : 0;
        c.addr[0] = (uint8_t)(v >> 24);
        c.addr[1] = (uint8_t)(v >> 16);
        c.addr[2] = (uint8_t)(v >> 8);
        c.addr[3] = (uint8_t)v;
    } else {
        c.family = AF_INET6;
        /* 2001:db8::/100 plus the last 28 bits; sometimes the mapped block */
        static const uint8_t doc[12] = {0x20, 0x01, 0x0d, 0xb8};
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        bool m = rnd() % 4 == 0;
        memcpy(c.addr, m ? mapped : doc, 12);
        /* mapped ones are IPv4 CIDRs; the others spread wider so that
         * the IPv6 ranges do not all merge into one */
        uint32_t v =
            m ? 0x0a000000u | (uint32_t)(rnd() & 0x000fffffu) : (uint32_t)(rnd() & 0x0fffffffu);
        c.prefix = (uint8_t)(112 + rnd() % 17);
        v &= ~(uint32_t)0 << ((128 - c.prefix) % 32);
        c.addr[12] = (uint8_t)(v >> 24);
        c.addr[13] = (uint8_t)(v >> 16);
        c.addr[14] = (uint8_t)(v >> 8);
        c.addr[15] = (uint8_t)v;
    }
    return c;
}

TEST(ip_large_random_against_reference)
{
    enum { N = 10000, PROBES = 20000 };
    struct bw_cidr *c = malloc(N * sizeof *c);
    for (size_t i = 0; i < N; i++)
        c[i] = random_cidr();
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    bw_error err;
    CHECK(bw_ip_set_build(&a, c, N, &s, &err) == BW_OK);
    CHECK(s.n4 > 1 && s.n6 > 1);
    for (size_t i = 1; i < s.n4; i++) /* sorted, disjoint, not adjacent */
        CHECK(s.v4[i].lo > s.v4[i - 1].hi + 1 && s.v4[i].lo <= s.v4[i].hi);
    for (size_t i = 1; i < s.n6; i++)
        CHECK(s.v6[i].lo > s.v6[i - 1].hi + 1 && s.v6[i].lo <= s.v6[i].hi);
    size_t hits = 0;
    for (size_t k = 0; k < PROBES; k++) {
        /* near an edge of a random CIDR: network - 1, network, network + 1 */
        struct bw_cidr base = c[rnd() % N];
        uint8_t a16[16];
        if (base.family == AF_INET)
            to_mapped(base.addr, a16);
        else
            memcpy(a16, base.addr, 16);
        int delta = (int)(rnd() % 5) - 2;
        uint32_t lo32 =
            ((uint32_t)a16[12] << 24 | (uint32_t)a16[13] << 16 | (uint32_t)a16[14] << 8 | a16[15]) +
            (uint32_t)delta;
        if (rnd() % 4 == 0) /* or the last address of a /24 */
            lo32 |= 0xffu;
        a16[12] = (uint8_t)(lo32 >> 24);
        a16[13] = (uint8_t)(lo32 >> 16);
        a16[14] = (uint8_t)(lo32 >> 8);
        a16[15] = (uint8_t)lo32;
        bool want = ref_contains(c, N, a16);
        hits += want;
        bool mapped = memcmp(a16, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
        bool got6 = bw_ip_set_contains_v6(&s, a16);
        if (got6 != want)
            printf("     probe %zu: got %d want %d\n", k, got6, want);
        CHECK_INT_EQ(got6, want);
        if (mapped)
            CHECK_INT_EQ(bw_ip_set_contains_v4(&s, a16 + 12), want);
    }
    CHECK(hits > PROBES / 10 && hits < PROBES - PROBES / 10); /* both answers seen */
    free(c);
    bw_arena_reset(&a);
}

TEST(ip_set_limits)
{
    size_t n = BW_SET_MAX_ELEMENTS + 1;
    struct bw_cidr *c = malloc(n * sizeof *c);
    for (size_t i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].family = AF_INET;
        c[i].prefix = 32;
        uint32_t v = (uint32_t)(rnd() & 0xffffffffu);
        memcpy(c[i].addr, &v, 4);
    }
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_ip_set s;
    bw_error err;
    CHECK(bw_ip_set_build(&a, c, n - 1, &s, &err) == BW_OK);
    CHECK(bw_ip_set_contains_v4(&s, c[12345].addr));
    CHECK(bw_ip_set_build(&a, c, n, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "a set of 262145 addresses is over the limit of 262144 elements");
    c[3].family = AF_UNIX;
    CHECK(bw_ip_set_build(&a, c, 10, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "set element 3 is not an IPv4 or IPv6 CIDR");
    free(c);
    bw_arena_reset(&a);
}

/* ---- Int sets ------------------------------------------------------------ */

TEST(int_set_edges)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_int_range items[] = {{443, 443}, {8000, 8999}, {80, 80}};
    struct bw_int_set s;
    bw_error err;
    CHECK(bw_int_set_build(&a, items, 3, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.n, 3);
    CHECK(!bw_int_set_contains(&s, 79));
    CHECK(bw_int_set_contains(&s, 80));
    CHECK(!bw_int_set_contains(&s, 81));
    CHECK(!bw_int_set_contains(&s, 442));
    CHECK(bw_int_set_contains(&s, 443));
    CHECK(!bw_int_set_contains(&s, 444));
    CHECK(!bw_int_set_contains(&s, 7999));
    CHECK(bw_int_set_contains(&s, 8000));
    CHECK(bw_int_set_contains(&s, 8500));
    CHECK(bw_int_set_contains(&s, 8999));
    CHECK(!bw_int_set_contains(&s, 9000));
    CHECK(!bw_int_set_contains(&s, INT64_MIN));
    CHECK(!bw_int_set_contains(&s, INT64_MAX));
    CHECK(!bw_int_set_contains(&s, -80));
    bw_arena_reset(&a);
}

TEST(int_set_merge_and_extremes)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_int_set s;
    bw_error err;
    struct bw_int_range adj[] = {{6, 10}, {1, 5}, {3, 4}, {12, 12}};
    CHECK(bw_int_set_build(&a, adj, 4, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.n, 2);
    CHECK(s.r[0].lo == 1 && s.r[0].hi == 10 && s.r[1].lo == 12);
    CHECK(!bw_int_set_contains(&s, 11));
    struct bw_int_range ext[] = {
        {INT64_MAX, INT64_MAX}, {INT64_MIN, INT64_MIN}, {INT64_MAX - 1, INT64_MAX - 1}};
    CHECK(bw_int_set_build(&a, ext, 3, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.n, 2);
    CHECK(bw_int_set_contains(&s, INT64_MAX));
    CHECK(bw_int_set_contains(&s, INT64_MAX - 1));
    CHECK(!bw_int_set_contains(&s, INT64_MAX - 2));
    CHECK(bw_int_set_contains(&s, INT64_MIN));
    CHECK(!bw_int_set_contains(&s, INT64_MIN + 1));
    struct bw_int_range all[] = {{INT64_MIN, INT64_MAX}, {5, 6}};
    CHECK(bw_int_set_build(&a, all, 2, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.n, 1);
    CHECK(bw_int_set_contains(&s, 0) && bw_int_set_contains(&s, INT64_MIN));
    CHECK(bw_int_set_build(&a, NULL, 0, &s, &err) == BW_OK);
    CHECK(!bw_int_set_contains(&s, 0));
    struct bw_int_range bad[] = {{1, 2}, {9, 1}};
    CHECK(bw_int_set_build(&a, bad, 2, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "the range 9..1 is empty: its start is after its end");
    bw_arena_reset(&a);
}

TEST(int_set_random_against_reference)
{
    enum { N = 2000, SPAN = 50000 };
    static struct bw_int_range items[N];
    static bool ref[SPAN];
    memset(ref, 0, sizeof ref);
    for (size_t i = 0; i < N; i++) {
        int64_t lo = (int64_t)(rnd() % SPAN), len = (int64_t)(rnd() % 8);
        int64_t hi = lo + len < SPAN ? lo + len : SPAN - 1;
        items[i] = (struct bw_int_range){lo, hi};
        for (int64_t v = lo; v <= hi; v++)
            ref[v] = true;
    }
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_int_set s;
    bw_error err;
    CHECK(bw_int_set_build(&a, items, N, &s, &err) == BW_OK);
    for (int64_t v = -2; v < SPAN + 2; v++)
        CHECK_INT_EQ(bw_int_set_contains(&s, v), v >= 0 && v < SPAN && ref[v]);
    struct bw_int_range *many = malloc((BW_SET_MAX_ELEMENTS + 1) * sizeof *many);
    for (size_t i = 0; i <= BW_SET_MAX_ELEMENTS; i++)
        many[i] = (struct bw_int_range){(int64_t)i * 2, (int64_t)i * 2};
    CHECK(bw_int_set_build(&a, many, BW_SET_MAX_ELEMENTS, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.n, BW_SET_MAX_ELEMENTS);
    CHECK(bw_int_set_contains(&s, 2 * (BW_SET_MAX_ELEMENTS - 1)));
    CHECK(!bw_int_set_contains(&s, 2 * BW_SET_MAX_ELEMENTS - 1));
    CHECK(bw_int_set_build(&a, many, BW_SET_MAX_ELEMENTS + 1, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "a set of 262145 integers is over the limit of 262144 elements");
    free(many);
    bw_arena_reset(&a);
}

/* ---- Bytes sets ---------------------------------------------------------- */

TEST(bytes_set_methods)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    bw_slice items[] = {BW_SLICE_LIT("GET"), BW_SLICE_LIT("HEAD"), BW_SLICE_LIT("GET")};
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw_bytes_set_build(&a, items, 3, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.count, 2);
    CHECK(bw_bytes_set_contains(&s, BW_SLICE_LIT("GET")));
    CHECK(bw_bytes_set_contains(&s, BW_SLICE_LIT("HEAD")));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_LIT("get"))); /* case-sensitive */
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_LIT("GE")));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_LIT("GETX")));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_EMPTY));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_LIT("POST")));
    CHECK(bw_bytes_set_build(&a, NULL, 0, &s, &err) == BW_OK);
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_EMPTY));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_LIT("GET")));
    bw_arena_reset(&a);
}

TEST(bytes_set_empty_and_binary)
{
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    char buf[] = {'a', '\0', 'b', '\xff'};
    bw_slice items[] = {BW_SLICE_EMPTY, bw_slice_make(buf, 4), bw_slice_make(buf, 1)};
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw_bytes_set_build(&a, items, 3, &s, &err) == BW_OK);
    buf[0] = 'z'; /* elements were copied */
    CHECK(bw_bytes_set_contains(&s, BW_SLICE_EMPTY));
    CHECK(bw_bytes_set_contains(&s, bw_slice_make("a\0b\xff", 4)));
    CHECK(bw_bytes_set_contains(&s, BW_SLICE_LIT("a")));
    CHECK(!bw_bytes_set_contains(&s, bw_slice_make("a\0b", 3)));
    CHECK(!bw_bytes_set_contains(&s, bw_slice_make("a\0b\xfe", 4)));
    CHECK(!bw_bytes_set_contains(&s, bw_slice_make("\0", 1)));
    bw_arena_reset(&a);
}

static bw_slice key_of(char *buf, size_t cap, size_t i)
{
    int n = snprintf(buf, cap, "k%zu-%zx", i, i * 2654435761u);
    return bw_slice_make(buf, (size_t)n);
}

/* Every element hashed to 0: one probe chain holds them all. */
TEST(bytes_set_forced_collisions)
{
    enum { N = 3000 };
    static char keys[N][32];
    static bw_slice items[N];
    for (size_t i = 0; i < N; i++)
        items[i] = key_of(keys[i], sizeof keys[i], i);
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw__bytes_set_build_masked(&a, items, N, 0, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.count, N);
    CHECK_INT_EQ(s.max_probe, N);
    for (size_t i = 0; i < N; i++)
        CHECK(bw_bytes_set_contains(&s, items[i]));
    char other[32];
    for (size_t i = N; i < N + 500; i++)
        CHECK(!bw_bytes_set_contains(&s, key_of(other, sizeof other, i)));
    CHECK(!bw_bytes_set_contains(&s, BW_SLICE_EMPTY));
    bw_arena_reset(&a);
}

/* A random string over an alphabet where case matters: letters of both
 * cases, the bytes next to the letters ('@' '[' '`' '{'), and bytes over
 * 0x7f that lower() and upper() leave alone. */
static size_t mixed_case(char *buf, size_t cap)
{
    static const char alpha[] = "aAzZmM@[`{\xc3\xa9\x80\xff"
                                "09-/";
    size_t n = rnd() % cap;
    for (size_t i = 0; i < n; i++)
        buf[i] = alpha[rnd() % (sizeof alpha - 1)];
    return n;
}

static void map_copy(char *out, const char *in, size_t n, enum bw_bytes_map m)
{
    for (size_t i = 0; i < n; i++)
        out[i] = m == BW_BYTES_MAP_LOWER   ? bw_ascii_lower(in[i])
                 : m == BW_BYTES_MAP_UPPER ? bw_ascii_upper(in[i])
                                           : in[i];
}

/* `lower(x) in {...}` looks x up without lowering a copy: for every length
 * around the word sizes the hash and the comparison handle (0-3, 4-7, 8,
 * longer), the mapped lookup answers what the lookup of the mapped copy
 * answers, both when the value is in the set and when it differs in one
 * byte's case. */
TEST(bytes_set_mapped_lookup_is_lookup_of_mapped_copy)
{
    enum { N = 200, LEN = 40 };
    static char keys[N][LEN];
    static bw_slice items[N];
    for (int m = BW_BYTES_MAP_NONE; m < BW_BYTES_MAP__COUNT; m++) {
        bw_arena a;
        bw_arena_init(&a, 0, 0);
        for (size_t i = 0; i < N; i++) {
            char raw[LEN];
            size_t n = mixed_case(raw, LEN);
            map_copy(keys[i], raw, n, (enum bw_bytes_map)m); /* elements as m makes them */
            items[i] = bw_slice_make(keys[i], n);
        }
        struct bw_bytes_set s;
        bw_error err;
        CHECK(bw_bytes_set_build(&a, items, N, &s, &err) == BW_OK);
        size_t hits = 0;
        for (size_t t = 0; t < 20000; t++) {
            char v[LEN], mv[LEN];
            size_t n;
            if (t % 2) { /* an element with its letters' case scrambled */
                const bw_slice *e = &items[rnd() % N];
                n = e->len;
                for (size_t i = 0; i < n; i++) {
                    char c = e->ptr[i];
                    v[i] = rnd() % 2 ? bw_ascii_upper(c) : bw_ascii_lower(c);
                }
            } else {
                n = mixed_case(v, LEN);
            }
            map_copy(mv, v, n, (enum bw_bytes_map)m);
            bool want = bw_bytes_set_contains(&s, bw_slice_make(mv, n));
            bool got = bw_bytes_set_contains_mapped(&s, bw_slice_make(v, n), (enum bw_bytes_map)m);
            hits += want;
            if (got != want) {
                T_FAILF("map %d, value of %zu bytes: mapped lookup %d, lookup of the copy %d", m, n,
                        got, want);
                bw_arena_reset(&a);
                return;
            }
        }
        CHECK(hits > 1000); /* the scrambled elements were found */
        bw_arena_reset(&a);
    }
    /* An element with a capital can never be lower() of anything. */
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    bw_slice caps[] = {BW_SLICE_LIT("Admin"), BW_SLICE_LIT("root")};
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw_bytes_set_build(&a, caps, 2, &s, &err) == BW_OK);
    CHECK(!bw_bytes_set_contains_mapped(&s, BW_SLICE_LIT("Admin"), BW_BYTES_MAP_LOWER));
    CHECK(!bw_bytes_set_contains_mapped(&s, BW_SLICE_LIT("admin"), BW_BYTES_MAP_LOWER));
    CHECK(bw_bytes_set_contains_mapped(&s, BW_SLICE_LIT("ROOT"), BW_BYTES_MAP_LOWER));
    CHECK(!bw_bytes_set_contains_mapped(&s, BW_SLICE_LIT("root"), BW_BYTES_MAP_UPPER));
    bw_arena_reset(&a);
}

TEST(bytes_set_large_and_limits)
{
    enum { N = 100000 };
    char(*keys)[32] = malloc(N * sizeof *keys);
    bw_slice *items = malloc((BW_SET_MAX_ELEMENTS + 1) * sizeof *items);
    for (size_t i = 0; i < N; i++)
        items[i] = key_of(keys[i], sizeof keys[i], i);
    bw_arena a;
    bw_arena_init(&a, 0, 0);
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw_bytes_set_build(&a, items, N, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.count, N);
    CHECK(s.max_probe < 64); /* a good hash keeps chains short */
    for (size_t i = 0; i < N; i++)
        CHECK(bw_bytes_set_contains(&s, items[i]));
    char other[32];
    for (size_t i = N; i < N + 10000; i++)
        CHECK(!bw_bytes_set_contains(&s, key_of(other, sizeof other, i)));

    /* element count: at the limit (all the same element) and past it */
    for (size_t i = 0; i <= BW_SET_MAX_ELEMENTS; i++)
        items[i] = BW_SLICE_LIT("x");
    CHECK(bw_bytes_set_build(&a, items, BW_SET_MAX_ELEMENTS, &s, &err) == BW_OK);
    CHECK_INT_EQ(s.count, 1);
    CHECK(bw_bytes_set_build(&a, items, BW_SET_MAX_ELEMENTS + 1, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "a set of 262145 strings is over the limit of 262144 elements");

    /* element length: at the limit and past it */
    char *big = malloc(BW_SET_MAX_BYTES_ELEMENT + 1);
    memset(big, 'b', BW_SET_MAX_BYTES_ELEMENT + 1);
    items[0] = bw_slice_make(big, BW_SET_MAX_BYTES_ELEMENT);
    CHECK(bw_bytes_set_build(&a, items, 1, &s, &err) == BW_OK);
    CHECK(bw_bytes_set_contains(&s, items[0]));
    items[1] = bw_slice_make(big, BW_SET_MAX_BYTES_ELEMENT + 1);
    CHECK(bw_bytes_set_build(&a, items, 2, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "set element 1 is 4097 bytes long, over the limit of 4096 bytes");
    free(big);
    free(items);
    free(keys);
    bw_arena_reset(&a);
}

/* A capped arena: out of memory is an error, never a crash. */
TEST(sets_out_of_arena)
{
    bw_arena a;
    bw_arena_init(&a, 256, 512);
    bw_slice items[64];
    char keys[64][32];
    for (size_t i = 0; i < 64; i++)
        items[i] = key_of(keys[i], sizeof keys[i], i);
    struct bw_bytes_set s;
    bw_error err;
    CHECK(bw_bytes_set_build(&a, items, 64, &s, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "out of memory building a string set");
    struct bw_int_range r[64];
    for (size_t i = 0; i < 64; i++)
        r[i] = (struct bw_int_range){(int64_t)i, (int64_t)i};
    struct bw_int_set is;
    CHECK(bw_int_set_build(&a, r, 64, &is, &err) == BW_ERR);
    struct bw_cidr c[64];
    for (size_t i = 0; i < 64; i++)
        c[i] = cidr("2001:db8::/32");
    struct bw_ip_set ip;
    CHECK(bw_ip_set_build(&a, c, 64, &ip, &err) == BW_ERR);
    bw_arena_reset(&a);
}

int main(void)
{
    RUN(ip_range_edges);
    RUN(ip_overlap_and_adjacent_merge);
    RUN(ip_whole_spaces_and_hosts);
    RUN(ip_mapped_addresses);
    RUN(ip_large_random_against_reference);
    RUN(ip_set_limits);
    RUN(int_set_edges);
    RUN(int_set_merge_and_extremes);
    RUN(int_set_random_against_reference);
    RUN(bytes_set_methods);
    RUN(bytes_set_empty_and_binary);
    RUN(bytes_set_forced_collisions);
    RUN(bytes_set_mapped_lookup_is_lookup_of_mapped_copy);
    RUN(bytes_set_large_and_limits);
    RUN(sets_out_of_arena);
    return t_done();
}
