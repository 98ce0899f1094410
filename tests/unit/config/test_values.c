/* Value parsers of src/config/values.c, at and just past every limit. */
#include <arpa/inet.h>
#include <sys/un.h>

#include "config/config.h"
#include "test.h"

#define S(lit) BW_SLICE_LIT(lit)

static bool dur(const char *s, uint64_t *v)
{
    return bw_parse_duration_ms(bw_slice_make(s, strlen(s)), v) == BW_OK;
}

static bool size(const char *s, uint64_t *v)
{
    return bw_parse_size(bw_slice_make(s, strlen(s)), v) == BW_OK;
}

TEST(duration_units)
{
    uint64_t v;
    CHECK(dur("500ms", &v));
    CHECK_INT_EQ(v, 500);
    CHECK(dur("10s", &v));
    CHECK_INT_EQ(v, 10000);
    CHECK(dur("2m", &v));
    CHECK_INT_EQ(v, 120000);
    CHECK(dur("1h", &v));
    CHECK_INT_EQ(v, 3600000);
    CHECK(dur("0s", &v));
    CHECK_INT_EQ(v, 0);
    CHECK(dur("0ms", &v));
    CHECK_INT_EQ(v, 0);
}

TEST(duration_refused)
{
    uint64_t v = 42;
    static const char *const bad[] = {
        "",
        "10",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.5s",
        "10 s",
        "10S",
        "1d",
        "10sec",
        " 10s",
        "10s ",
        "1h30m",
        "1m s",
        "0x10s",
        "1us",
        "1M",
        "10s\n",
        "ten s",
        /* a leading zero, as for ports and integers: 10 or octal 8? */
        "010s",
        "007s",
        "00s",
        "00ms",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dur(bad[i], &v)) {
            T_FAILF("accepted \"%s\"", bad[i]);
            return;
        }
    }
    CHECK_INT_EQ(v, 42); /* untouched on failure */
    /* A NUL inside is not the end of the text. */
    CHECK(bw_parse_duration_ms(bw_slice_make("1s\0", 3), &v) != BW_OK);
}

TEST(duration_overflow)
{
    uint64_t v;
    CHECK(dur("18446744073709551615ms", &v));
    CHECK(v == UINT64_MAX);
    CHECK(!dur("18446744073709551616ms", &v));
    CHECK(!dur("99999999999999999999999ms", &v));
    CHECK(dur("18446744073709551s", &v));
    CHECK(!dur("18446744073709552s", &v));
    CHECK(dur("5124095576030h", &v));
    CHECK(v == 5124095576030ull * 3600000ull);
    CHECK(!dur("5124095576031h", &v));
    CHECK(dur("307445734561825m", &v));
    CHECK(!dur("307445734561826m", &v));
}

static bool dur_us(const char *s, uint64_t *v)
{
    return bw_parse_duration_us(bw_slice_make(s, strlen(s)), v) == BW_OK;
}

TEST(duration_us_units)
{
    uint64_t v;
    CHECK(dur_us("50us", &v));
    CHECK_INT_EQ(v, 50);
    CHECK(dur_us("0us", &v));
    CHECK_INT_EQ(v, 0);
    CHECK(dur_us("1ms", &v));
    CHECK_INT_EQ(v, 1000);
    CHECK(dur_us("2s", &v));
    CHECK_INT_EQ(v, 2000000);
    CHECK(dur_us("18446744073709551615us", &v));
    CHECK(!dur_us("18446744073709551616us", &v));
    CHECK(!dur_us("18446744073709552ms", &v));
    static const char *const bad[] = {"", "50", "us", "5 us", "5µs", "-5us", "1m", "1h", "5US"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dur_us(bad[i], &v)) {
            T_FAILF("accepted \"%s\"", bad[i]);
            return;
        }
    }
}

TEST(size_units)
{
    uint64_t v;
    CHECK(size("512", &v));
    CHECK_INT_EQ(v, 512);
    CHECK(size("0", &v));
    CHECK_INT_EQ(v, 0);
    CHECK(size("512B", &v));
    CHECK_INT_EQ(v, 512);
    CHECK(size("1KiB", &v));
    CHECK_INT_EQ(v, 1024);
    CHECK(size("32KiB", &v));
    CHECK_INT_EQ(v, 32768);
    CHECK(size("16MiB", &v));
    CHECK_INT_EQ(v, 16 * 1024 * 1024);
    CHECK(size("1GiB", &v));
    CHECK_INT_EQ(v, 1024LL * 1024 * 1024);
    CHECK(size("1TiB", &v));
    CHECK_INT_EQ(v, 1LL << 40);
    CHECK(size("1KB", &v));
    CHECK_INT_EQ(v, 1000);
    CHECK(size("3MB", &v));
    CHECK_INT_EQ(v, 3000000);
    CHECK(size("2GB", &v));
    CHECK_INT_EQ(v, 2000000000LL);
    CHECK(size("1TB", &v));
    CHECK_INT_EQ(v, 1000000000000LL);
}

TEST(size_refused)
{
    uint64_t v;
    static const char *const bad[] = {
        "",   "KiB",  "1kib", "1 KiB", "1K", "1k",   "-1",    "1.5MiB", "1PiB", "1Ki",  "1KIB",
        "1b", "0x10", "1e3",  " 1",    "1 ", "lots", "1MiBB", "032KiB", "00",   "0512",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (size(bad[i], &v)) {
            T_FAILF("accepted \"%s\"", bad[i]);
            return;
        }
    }
}

TEST(size_overflow)
{
    uint64_t v;
    CHECK(size("18446744073709551615", &v));
    CHECK(v == UINT64_MAX);
    CHECK(!size("18446744073709551616", &v));
    CHECK(size("16777215TiB", &v));
    CHECK(!size("16777216TiB", &v)); /* exactly 2^64 */
    CHECK(size("17179869183GiB", &v));
    CHECK(!size("17179869184GiB", &v));
    CHECK(!size("18446744073709552KB", &v));
}

static bool sa(const char *s, struct bw_sockaddr *out, bw_error *err)
{
    return bw_parse_sockaddr_err(bw_slice_make(s, strlen(s)), out, err) == BW_OK;
}

TEST(sockaddr_ipv4)
{
    struct bw_sockaddr a;
    bw_error err;
    CHECK(sa("127.0.0.1:8080", &a, &err));
    CHECK_STR_EQ(a.text, "127.0.0.1:8080");
    CHECK_INT_EQ(a.ss.ss_family, AF_INET);
    CHECK_INT_EQ(a.len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
    CHECK_INT_EQ(ntohs(sin->sin_port), 8080);
    CHECK_INT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    CHECK(sa("0.0.0.0:0", &a, &err));
    CHECK_STR_EQ(a.text, "0.0.0.0:0");
    CHECK(sa("255.255.255.255:65535", &a, &err));
    CHECK_STR_EQ(a.text, "255.255.255.255:65535");
    CHECK(bw_parse_sockaddr(S("10.1.2.3:1"), &a) == BW_OK);
    CHECK_STR_EQ(a.text, "10.1.2.3:1");
    CHECK(sa("10.1.2.3:10", &a, &err)); /* a zero that is not leading */
    CHECK_STR_EQ(a.text, "10.1.2.3:10");
    CHECK(!sa("10.1.2.3:65536", &a, &err));
}

TEST(sockaddr_ipv6)
{
    struct bw_sockaddr a;
    bw_error err;
    CHECK(sa("[::1]:8080", &a, &err));
    CHECK_STR_EQ(a.text, "[::1]:8080");
    CHECK_INT_EQ(a.ss.ss_family, AF_INET6);
    CHECK_INT_EQ(a.len, sizeof(struct sockaddr_in6));
    CHECK_INT_EQ(ntohs(((const struct sockaddr_in6 *)&a.ss)->sin6_port), 8080);
    CHECK(sa("[0:0:0:0:0:0:0:1]:80", &a, &err));
    CHECK_STR_EQ(a.text, "[::1]:80"); /* canonical form */
    CHECK(sa("[::]:0", &a, &err));
    CHECK_STR_EQ(a.text, "[::]:0");
    CHECK(sa("[::ffff:1.2.3.4]:65535", &a, &err));
    CHECK_STR_EQ(a.text, "[::ffff:1.2.3.4]:65535");
    CHECK(sa("[2001:DB8::A]:443", &a, &err));
    CHECK_STR_EQ(a.text, "[2001:db8::a]:443");
}

TEST(sockaddr_refused)
{
    struct bw_sockaddr a;
    bw_error err;
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "expected an address like 127.0.0.1:8080 or [::1]:8080"},
        {"127.0.0.1", "missing :port, like 127.0.0.1:8080"},
        {"127.0.0.1:", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:65536", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:100000", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:-1", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:+80", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:80 ", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:http", "the port must be a number from 0 to 65535"},
        /* a leading zero: 080 could be meant as 80 or as octal 64; say which */
        {"127.0.0.1:080", "the port \"080\" has a leading zero; write 80"},
        {"127.0.0.1:08080", "the port \"08080\" has a leading zero; write 8080"},
        {"127.0.0.1:00", "the port \"00\" has a leading zero; write 0"},
        {"127.0.0.1:065535", "the port \"065535\" has a leading zero; write 65535"},
        {"127.0.0.1:065536", "the port must be a number from 0 to 65535"},
        {"[::1]:080", "the port \"080\" has a leading zero; write 80"},
        {"localhost:8080", "bulwark does not resolve names in the config; use an IP address"},
        {"example.com:80", "bulwark does not resolve names in the config; use an IP address"},
        {"256.0.0.1:80", "not a valid IPv4 address"},
        {"1.2.3:80", "not a valid IPv4 address"},
        {"01.2.3.4:80", "not a valid IPv4 address"},
        {"::1:80", "an IPv6 address needs brackets, like [::1]:8080"},
        {"[::1]", "missing :port after the ']', like [::1]:8080"},
        {"[::1]80", "missing :port after the ']', like [::1]:8080"},
        {"[::1:80", "missing ']' after the IPv6 address"},
        {"[fe80::1%eth0]:80", "not a valid IPv6 address"},
        {"[1.2.3.4]:80", "not a valid IPv6 address"},
        {":80", "missing the IP address before the port (0.0.0.0 or [::] for every interface)"},
        {"[]:80", "missing the IP address before the port (0.0.0.0 or [::] for every interface)"},
        {"1.2.3.4:0000000000000000000000000000000000000000000000000000000080",
         "too long for an address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sa(bad[i].in, &a, &err)) {
            T_FAILF("accepted \"%s\"", bad[i].in);
            return;
        }
        if (strcmp(err.msg, bad[i].why) != 0) {
            T_FAILF("\"%s\": got \"%s\", want \"%s\"", bad[i].in, err.msg, bad[i].why);
            return;
        }
    }
    CHECK(bw_parse_sockaddr(bw_slice_make("1.2.3.4:80\0", 11), &a) != BW_OK);
    CHECK(bw_parse_sockaddr(bw_slice_make("1.2.3.4\0:80", 11), &a) != BW_OK);
}

static bool cidr(const char *s, struct bw_cidr *c, bw_error *err)
{
    return bw_parse_cidr_err(bw_slice_make(s, strlen(s)), c, err) == BW_OK;
}

TEST(cidr_parse)
{
    struct bw_cidr c;
    bw_error err;
    CHECK(cidr("10.0.0.0/8", &c, &err));
    CHECK_INT_EQ(c.family, AF_INET);
    CHECK_INT_EQ(c.prefix, 8);
    CHECK_INT_EQ(c.addr[0], 10);
    CHECK(cidr("10.0.0.1", &c, &err));
    CHECK_INT_EQ(c.prefix, 32);
    CHECK_INT_EQ(c.addr[3], 1);
    CHECK(cidr("0.0.0.0/0", &c, &err));
    CHECK_INT_EQ(c.prefix, 0);
    CHECK(cidr("10.0.0.1/32", &c, &err));
    CHECK(cidr("10.128.0.0/9", &c, &err));
    CHECK(cidr("::1", &c, &err));
    CHECK_INT_EQ(c.family, AF_INET6);
    CHECK_INT_EQ(c.prefix, 128);
    CHECK_INT_EQ(c.addr[15], 1);
    CHECK(cidr("2001:db8::/32", &c, &err));
    CHECK_INT_EQ(c.prefix, 32);
    CHECK(cidr("::/0", &c, &err));
    CHECK(cidr("::/128", &c, &err));
    CHECK(bw_parse_cidr(S("192.168.0.0/16"), &c) == BW_OK);
    CHECK(cidr("::ffff:10.0.0.0/104", &c, &err));
    CHECK_INT_EQ(c.family, AF_INET);
    CHECK_INT_EQ(c.prefix, 8);
    CHECK_INT_EQ(c.addr[0], 10);
    CHECK_INT_EQ(c.addr[4], 0);
    CHECK(cidr("::ffff:1.2.3.4", &c, &err));
    CHECK_INT_EQ(c.family, AF_INET);
    CHECK_INT_EQ(c.prefix, 32);
    CHECK(cidr("::fffe:0:0/95", &c, &err));
    CHECK_INT_EQ(c.family, AF_INET6);
}

TEST(cidr_refused)
{
    struct bw_cidr c;
    bw_error err;
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"10.0.0.1/8", "host bits set; did you mean 10.0.0.0/8?"},
        {"10.200.0.0/9", "host bits set; did you mean 10.128.0.0/9?"},
        {"1.0.0.0/0", "host bits set; did you mean 0.0.0.0/0?"},
        {"2001:db8::1/32", "host bits set; did you mean 2001:db8::/32?"},
        {"::1/127", "host bits set; did you mean ::/127?"},
        {"10.0.0.0/33", "the prefix length must be a number from 0 to 32"},
        {"::/129", "the prefix length must be a number from 0 to 128"},
        {"10.0.0.0/", "the prefix length must be a number from 0 to 32"},
        {"10.0.0.0/-1", "the prefix length must be a number from 0 to 32"},
        {"10.0.0.0/8/8", "the prefix length must be a number from 0 to 32"},
        {"10.0.0.0/8 ", "the prefix length must be a number from 0 to 32"},
        {"10.0.0.0/0008", "the prefix length must be a number from 0 to 32"},
        {"/8", "missing the address before the '/'"},
        {"", "expected an address or a CIDR like 10.0.0.0/8"},
        {"localhost", "bulwark does not resolve names in the config; use an IP address"},
        {"10.0.0/8", "not a valid IPv4 address"},
        {"10.0.0.256", "not a valid IPv4 address"},
        {"2001:db8::g/32", "not a valid IPv6 address"},
        {"1:2:3:4:5:6:7:8:9:0:1:2:3:4:5:6:7:8:9:0:1:2:3:4", "too long for an IP address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cidr(bad[i].in, &c, &err)) {
            T_FAILF("accepted \"%s\"", bad[i].in);
            return;
        }
        if (strcmp(err.msg, bad[i].why) != 0) {
            T_FAILF("\"%s\": got \"%s\", want \"%s\"", bad[i].in, err.msg, bad[i].why);
            return;
        }
    }
    CHECK(bw_parse_cidr(bw_slice_make("10.0.0.0/8\0", 11), &c) != BW_OK);
}

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sin->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    return ss;
}

static bool in(const char *c, struct sockaddr_storage ss)
{
    struct bw_cidr cc;
    if (bw_parse_cidr(bw_slice_make(c, strlen(c)), &cc) != BW_OK)
        return false;
    return bw_cidr_contains(&cc, (const struct sockaddr *)&ss);
}

TEST(cidr_contains)
{
    CHECK(in("10.0.0.0/8", v4("10.0.0.0")));
    CHECK(in("10.0.0.0/8", v4("10.255.255.255")));
    CHECK(!in("10.0.0.0/8", v4("11.0.0.0")));
    CHECK(!in("10.0.0.0/8", v4("9.255.255.255")));
    CHECK(in("10.128.0.0/9", v4("10.200.0.1")));
    CHECK(!in("10.128.0.0/9", v4("10.127.255.255")));
    CHECK(in("0.0.0.0/0", v4("203.0.113.9")));
    CHECK(in("192.0.2.7", v4("192.0.2.7")));
    CHECK(!in("192.0.2.7", v4("192.0.2.6")));
    CHECK(in("2001:db8::/32", v6("2001:db8:ffff::1")));
    CHECK(!in("2001:db8::/32", v6("2001:db9::1")));
    CHECK(in("::/0", v6("::1")));
    CHECK(in("::1", v6("::1")));
    /* An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d. */
    CHECK(in("10.0.0.0/8", v6("::ffff:10.1.2.3")));
    CHECK(!in("10.0.0.0/8", v6("::ffff:11.1.2.3")));
    CHECK(in("0.0.0.0/0", v6("::ffff:1.2.3.4")));
    CHECK(!in("0.0.0.0/0", v6("::1")));         /* not mapped */
    CHECK(!in("10.0.0.0/8", v6("::10.1.2.3"))); /* IPv4-compatible is not mapped */
    /* Families do not mix the other way round. */
    CHECK(!in("::/0", v4("1.2.3.4")));
    /* A mapped address is IPv4 on both sides, as ip.src and rule literals
     * are: "::ffff:0:0/96" is 0.0.0.0/0, and "::/0" holds no IPv4 peer. */
    CHECK(in("::ffff:0:0/96", v4("1.2.3.4")));
    CHECK(in("::ffff:10.0.0.0/104", v4("10.9.8.7")));
    CHECK(!in("::ffff:10.0.0.0/104", v4("11.9.8.7")));
    CHECK(in("::ffff:10.0.0.0/104", v6("::ffff:10.9.8.7")));
    CHECK(!in("::/0", v6("::ffff:1.2.3.4")));
    CHECK(!in("::fffe:0:0/95", v4("1.2.3.4"))); /* wider than the mapped range: IPv6 */
    CHECK(in("::/0", v6("::10.1.2.3")));        /* IPv4-compatible is plain IPv6 */
    struct sockaddr_storage un;
    memset(&un, 0, sizeof un);
    un.ss_family = AF_UNIX;
    CHECK(!in("0.0.0.0/0", un));
    CHECK(!in("::/0", un));
}

int main(void)
{
    RUN(duration_units);
    RUN(duration_refused);
    RUN(duration_overflow);
    RUN(duration_us_units);
    RUN(size_units);
    RUN(size_refused);
    RUN(size_overflow);
    RUN(sockaddr_ipv4);
    RUN(sockaddr_ipv6);
    RUN(sockaddr_refused);
    RUN(cidr_parse);
    RUN(cidr_refused);
    RUN(cidr_contains);
    return t_done();
}
