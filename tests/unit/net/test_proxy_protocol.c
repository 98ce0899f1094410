/* PROXY protocol parser (src/net/proxy_protocol.c), v1 text and v2 binary,
 * as HAProxy's doc/proxy-protocol.txt defines them. Every accepted header is
 * also fed as each of its prefixes, which must all ask for more. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "net/proxy_protocol.h"
#include "test.h"

static enum bw_pp_result parse(const void *buf, size_t len, struct bw_pp_header *h,
                               const char **why)
{
    /* An exact-size heap copy, so ASan sees any read past the input. */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    memset(h, 0xa5, sizeof *h);
    enum bw_pp_result r = bw_proxy_protocol_parse(copy, len, h, why);
    free(copy);
    return r;
}

/* Every strict prefix is PARTIAL. Returns the first failing length + 1, or 0. */
static size_t prefixes_partial(const void *buf, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        struct bw_pp_header h;
        const char *why;
        if (parse(buf, n, &h, &why) != BW_PP_PARTIAL)
            return n + 1;
    }
    return 0;
}

static const char *src_text(const struct bw_pp_header *h, char *buf, size_t cap)
{
    uint16_t port;
    char a[INET6_ADDRSTRLEN];
    if (h->source.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&h->source;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        port = ntohs(in->sin_port);
    } else if (h->source.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&h->source;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        port = ntohs(in6->sin6_port);
    } else {
        return "<no family>";
    }
    snprintf(buf, cap, "%s %u", a, (unsigned)port);
    return buf;
}

/* Accepted, occupying exactly `len` bytes, source "addr port" (or none),
 * and every prefix PARTIAL. Extra bytes after the header are not its own. */
static bool accepts(const void *buf, size_t len, const char *want_src)
{
    struct bw_pp_header h;
    const char *why = NULL;
    char *withtail = malloc(len + 5);
    memcpy(withtail, buf, len);
    memcpy(withtail + len, "GET /", 5);
    bool ok = true;
    for (int tail = 0; tail < 2 && ok; tail++) {
        enum bw_pp_result r = parse(withtail, len + (tail ? 5 : 0), &h, &why);
        if (r != BW_PP_DONE) {
            printf("     not DONE (%d): %s\n", (int)r, why ? why : "");
            ok = false;
        } else if (h.len != len) {
            printf("     len %zu, want %zu\n", h.len, len);
            ok = false;
        } else if (want_src == NULL ? h.has_source : !h.has_source) {
            printf("     has_source %d\n", (int)h.has_source);
            ok = false;
        } else if (want_src) {
            char t[80];
            if (strcmp(src_text(&h, t, sizeof t), want_src) != 0) {
                printf("     source \"%s\", want \"%s\"\n", t, want_src);
                ok = false;
            }
        }
    }
    free(withtail);
    size_t bad = ok ? prefixes_partial(buf, len) : 0;
    if (bad) {
        printf("     prefix of %zu bytes not PARTIAL\n", bad - 1);
        ok = false;
    }
    return ok;
}

/* Refused, with a reason. */
static bool refuses(const void *buf, size_t len)
{
    struct bw_pp_header h;
    const char *why = NULL;
    enum bw_pp_result r = parse(buf, len, &h, &why);
    if (r != BW_PP_ERROR) {
        printf("     result %d, want ERROR\n", (int)r);
        return false;
    }
    return why && why[0];
}

#define ACCEPTS(lit, src) accepts((lit), sizeof(lit) - 1, (src))
#define REFUSES(lit) refuses((lit), sizeof(lit) - 1)

/* ---- v1 ------------------------------------------------------------------ */

TEST(v1_tcp4)
{
    CHECK(ACCEPTS("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", "192.0.2.1 56324"));
    CHECK(ACCEPTS("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                  "255.255.255.255 65535"));
    CHECK(ACCEPTS("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", "0.0.0.0 0"));
}

TEST(v1_tcp6)
{
    CHECK(ACCEPTS("PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n", "2001:db8::1 1234"));
    CHECK(ACCEPTS("PROXY TCP6 ::ffff:192.0.2.1 ::1 80 80\r\n", "::ffff:192.0.2.1 80"));
    /* The longest TCP6 line: 104 bytes. */
    const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    CHECK_INT_EQ(sizeof longest - 1, 104);
    CHECK(ACCEPTS(longest, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535"));
}

TEST(v1_unknown)
{
    CHECK(ACCEPTS("PROXY UNKNOWN\r\n", NULL));
    /* UNKNOWN: the receiver ignores whatever follows up to the CRLF. */
    CHECK(ACCEPTS("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", NULL));
    /* The longest line allowed: 107 bytes including CRLF. */
    char line[108];
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', 105 - 14);
    memcpy(line + 105, "\r\n", 2);
    CHECK(accepts(line, 107, NULL));
}

TEST(v1_without_crlf)
{
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n"));
    CHECK(REFUSES("PROXY UNKNOWN\n\r\n"));
    /* A bare LF before the CRLF: refused whether or not the CRLF has arrived
     * (found by the fuzzer: the line was accepted when read in one piece and
     * refused when its first bytes came alone). */
    CHECK(REFUSES("PROXY UNKNOWN \n x\r\n"));
    CHECK(REFUSES("PROXY UNKNOWN \n x\r"));
    CHECK(REFUSES("PROXY UNKNOWN \n"));
}

TEST(v1_too_long)
{
    char line[200];
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', sizeof line - 14);
    /* No CR within 107 bytes: refused without waiting for more. */
    CHECK(refuses(line, 107));
    CHECK(refuses(line, sizeof line));
    /* 108 bytes including CRLF: one over the limit. */
    memcpy(line + 106, "\r\n", 2);
    CHECK(refuses(line, 108));
    /* ... and known too long as soon as the 107th byte is not the CR's
     * place any more. */
    memset(line + 14, 'x', sizeof line - 14);
    CHECK(refuses(line, 106));
    struct bw_pp_header h;
    const char *why;
    CHECK_INT_EQ(parse(line, 105, &h, &why), BW_PP_PARTIAL);
}

TEST(v1_bad_port)
{
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 443 99999\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 8a 443\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 123456 443\r\n"));
}

TEST(v1_bad_address)
{
    CHECK(REFUSES("PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP6 2001:db8::1 2001:db8:::2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 localhost 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 0x7f.0.0.1 198.51.100.2 1 2\r\n"));
}

TEST(v1_wrong_fields)
{
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1\r\n"));
    CHECK(REFUSES("PROXY TCP4\r\n"));
    CHECK(REFUSES("PROXY \r\n"));
    CHECK(REFUSES("PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1\t198.51.100.2 1 2\r\n"));
    /* Single spaces only, none before the CRLF. */
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n"));
    /* A NUL cannot hide the rest of a field. */
    CHECK(REFUSES("PROXY TCP4\0xyz 192.0.2.1 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1\0.9 198.51.100.2 1 2\r\n"));
    CHECK(REFUSES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\0\r\n"));
}

/* ---- v2 ------------------------------------------------------------------ */

static const unsigned char SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Builds a v2 header: ver_cmd, fam, then `body` bytes of address block and
 * TLVs. Returns its length. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *body,
                 size_t body_len)
{
    memcpy(out, SIG, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(body_len >> 8);
    out[15] = (unsigned char)body_len;
    if (body_len)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

static const unsigned char IPV4_BLOCK[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb};

TEST(v2_proxy_ipv4)
{
    unsigned char b[600];
    size_t n = v2(b, 0x21, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK);
    CHECK(accepts(b, n, "192.0.2.1 56324"));
    n = v2(b, 0x21, 0x12, IPV4_BLOCK, sizeof IPV4_BLOCK); /* UDP */
    CHECK(accepts(b, n, "192.0.2.1 56324"));
}

TEST(v2_proxy_ipv6)
{
    unsigned char body[36] = {0};
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 0x01;
    body[16] = 0x20, body[17] = 0x01, body[18] = 0x0d, body[19] = 0xb8, body[31] = 0x02;
    body[32] = 0x04, body[33] = 0xd2, body[34] = 0x01, body[35] = 0xbb;
    unsigned char b[600];
    size_t n = v2(b, 0x21, 0x21, body, sizeof body);
    CHECK(accepts(b, n, "2001:db8::1 1234"));
}

TEST(v2_with_tlvs)
{
    unsigned char body[64];
    memcpy(body, IPV4_BLOCK, 12);
    /* PP2_TYPE_AUTHORITY "a.example", then PP2_TYPE_NOOP of 3 bytes. */
    size_t o = 12;
    body[o++] = 0x02, body[o++] = 0, body[o++] = 9;
    memcpy(body + o, "a.example", 9), o += 9;
    body[o++] = 0x04, body[o++] = 0, body[o++] = 3;
    body[o++] = 0, body[o++] = 0, body[o++] = 0;
    unsigned char b[600];
    size_t n = v2(b, 0x21, 0x11, body, o);
    CHECK(accepts(b, n, "192.0.2.1 56324"));
}

TEST(v2_local)
{
    unsigned char b[600];
    size_t n = v2(b, 0x20, 0x00, NULL, 0);
    CHECK(accepts(b, n, NULL));
    /* LOCAL keeps the peer even with an address block. */
    n = v2(b, 0x20, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK);
    CHECK(accepts(b, n, NULL));
    /* PROXY over UNSPEC or a unix socket: accepted, the peer stays. */
    n = v2(b, 0x21, 0x00, NULL, 0);
    CHECK(accepts(b, n, NULL));
    unsigned char unix_block[216] = {0};
    n = v2(b, 0x21, 0x31, unix_block, sizeof unix_block);
    CHECK(accepts(b, n, NULL));
}

TEST(v2_refused)
{
    unsigned char b[600];
    size_t n = v2(b, 0x11, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK); /* version 1 */
    CHECK(refuses(b, n));
    n = v2(b, 0x31, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK); /* version 3 */
    CHECK(refuses(b, n));
    n = v2(b, 0x22, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK); /* command 2 */
    CHECK(refuses(b, n));
    n = v2(b, 0x21, 0x11, IPV4_BLOCK, 8); /* IPv4 block short */
    CHECK(refuses(b, n));
    unsigned char body[36] = {0};
    n = v2(b, 0x21, 0x21, body, 35); /* IPv6 block short */
    CHECK(refuses(b, n));
    n = v2(b, 0x21, 0x41, IPV4_BLOCK, sizeof IPV4_BLOCK); /* family 4 */
    CHECK(refuses(b, n));
    n = v2(b, 0x21, 0x13, IPV4_BLOCK, sizeof IPV4_BLOCK); /* transport 3 */
    CHECK(refuses(b, n));
    /* The version is known from 13 bytes on, but the parser may wait for
     * the fixed 16; it must refuse once they are there. */
    n = v2(b, 0x11, 0x11, IPV4_BLOCK, sizeof IPV4_BLOCK);
    CHECK(refuses(b, 16));
}

TEST(v2_size_cap)
{
    unsigned char b[1024] = {0};
    size_t max_body = BW_PROXY_PROTOCOL_MAX_BYTES - 16;
    unsigned char body[1024] = {0};
    memcpy(body, IPV4_BLOCK, 12);
    size_t n = v2(b, 0x21, 0x11, body, max_body);
    CHECK(accepts(b, n, "192.0.2.1 56324"));
    n = v2(b, 0x21, 0x11, body, max_body + 1);
    /* Over the cap: refused from the 16 fixed bytes, not waited for. */
    CHECK(refuses(b, 16));
    CHECK(refuses(b, n));
    b[14] = 0xff, b[15] = 0xff; /* 65535 announced */
    CHECK(refuses(b, 16));
}

/* ---- neither ------------------------------------------------------------- */

TEST(not_a_proxy_header)
{
    CHECK(REFUSES("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    CHECK(REFUSES("PROXYTCP4"));
    CHECK(REFUSES("proxy TCP4 1.1.1.1 1.1.1.1 1 1\r\n"));
    CHECK(REFUSES("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"));
    CHECK(REFUSES("\r\n\r\n\0\r\nQUIX\n"));
    /* Prefixes of either signature wait for more. */
    struct bw_pp_header h;
    const char *why;
    CHECK_INT_EQ(parse("", 0, &h, &why), BW_PP_PARTIAL);
    CHECK_INT_EQ(parse("PROX", 4, &h, &why), BW_PP_PARTIAL);
    CHECK_INT_EQ(parse("PROXY", 5, &h, &why), BW_PP_PARTIAL);
    CHECK_INT_EQ(parse("\r\n\r\n\0\r", 6, &h, &why), BW_PP_PARTIAL);
    CHECK_INT_EQ(parse(SIG, 12, &h, &why), BW_PP_PARTIAL);
}

int main(void)
{
    RUN(v1_tcp4);
    RUN(v1_tcp6);
    RUN(v1_unknown);
    RUN(v1_without_crlf);
    RUN(v1_too_long);
    RUN(v1_bad_port);
    RUN(v1_bad_address);
    RUN(v1_wrong_fields);
    RUN(v2_proxy_ipv4);
    RUN(v2_proxy_ipv6);
    RUN(v2_with_tlvs);
    RUN(v2_local);
    RUN(v2_refused);
    RUN(v2_size_cap);
    RUN(not_a_proxy_header);
    return t_done();
}
