/* Header helpers: lookup, comma-separated token lists, reason phrases. */
#include "http/http1.h"
#include "test.h"

TEST(find_header_is_case_insensitive_and_first)
{
    struct bw_http_header h[] = {
        {BW_SLICE_LIT("Host"), BW_SLICE_LIT("a.example")},
        {BW_SLICE_LIT("X-Tag"), BW_SLICE_LIT("one")},
        {BW_SLICE_LIT("x-tag"), BW_SLICE_LIT("two")},
    };
    const struct bw_http_header *f = bw_http_find_header(h, 3, BW_SLICE_LIT("X-TAG"));
    CHECK(f == &h[1]);
    CHECK_SLICE_EQ(f->value, "one");
    CHECK(bw_http_find_header(h, 3, BW_SLICE_LIT("host")) == &h[0]);
    CHECK(bw_http_find_header(h, 3, BW_SLICE_LIT("X-Ta")) == NULL);
    CHECK(bw_http_find_header(h, 0, BW_SLICE_LIT("Host")) == NULL);
    CHECK(bw_http_find_header(NULL, 0, BW_SLICE_LIT("Host")) == NULL);
}

TEST(host_name_without_port_or_trailing_dot)
{
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("A.example")), "A.example");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("a.example:8080")), "a.example");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("a.example.")), "a.example");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("a.example.:80")), "a.example");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("192.0.2.1:80")), "192.0.2.1");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("[::1]:80")), "[::1]");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("[::1]")), "[::1]");
    /* "." alone stays: there is no name left to drop it from */
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT(".")), ".");
    CHECK_SLICE_EQ(bw_http_host_name(BW_SLICE_LIT("")), "");
}

TEST(list_has_token)
{
    CHECK(bw_http_list_has_token(BW_SLICE_LIT("close"), BW_SLICE_LIT("close")));
    CHECK(bw_http_list_has_token(BW_SLICE_LIT("keep-alive, Upgrade"), BW_SLICE_LIT("upgrade")));
    CHECK(bw_http_list_has_token(BW_SLICE_LIT(" a ,\tb\t, c "), BW_SLICE_LIT("b")));
    CHECK(bw_http_list_has_token(BW_SLICE_LIT("a,,b,"), BW_SLICE_LIT("b")));
    CHECK(bw_http_list_has_token(BW_SLICE_LIT("a, c"), BW_SLICE_LIT("c")));
    CHECK(!bw_http_list_has_token(BW_SLICE_LIT("closed"), BW_SLICE_LIT("close")));
    CHECK(!bw_http_list_has_token(BW_SLICE_LIT("xclose, y"), BW_SLICE_LIT("close")));
    CHECK(!bw_http_list_has_token(BW_SLICE_LIT("clo se"), BW_SLICE_LIT("close")));
    CHECK(!bw_http_list_has_token(BW_SLICE_EMPTY, BW_SLICE_LIT("close")));
    CHECK(!bw_http_list_has_token((bw_slice){NULL, 0}, BW_SLICE_LIT("close")));
}

TEST(status_reasons)
{
    CHECK_STR_EQ(bw_http_status_reason(200), "OK");
    CHECK_STR_EQ(bw_http_status_reason(400), "Bad Request");
    CHECK_STR_EQ(bw_http_status_reason(414), "URI Too Long");
    CHECK_STR_EQ(bw_http_status_reason(417), "Expectation Failed");
    CHECK_STR_EQ(bw_http_status_reason(431), "Request Header Fields Too Large");
    CHECK_STR_EQ(bw_http_status_reason(501), "Not Implemented");
    CHECK_STR_EQ(bw_http_status_reason(502), "Bad Gateway");
    CHECK_STR_EQ(bw_http_status_reason(505), "HTTP Version Not Supported");
    /* unknown codes: an empty reason, never NULL */
    CHECK_STR_EQ(bw_http_status_reason(299), "");
    CHECK_STR_EQ(bw_http_status_reason(0), "");
}

int main(void)
{
    RUN(find_header_is_case_insensitive_and_first);
    RUN(host_name_without_port_or_trailing_dot);
    RUN(list_has_token);
    RUN(status_reasons);
    return t_done();
}
