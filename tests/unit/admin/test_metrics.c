/* Prometheus text exposition writers (src/admin/metrics.c): exact output
 * for every kind, escaping, number spelling, and the refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "admin/metrics.h"
#include "test.h"

static struct bw_textbuf out;
static char text[8192];

static const char *str(void)
{
    size_t n = out.len < sizeof text - 1 ? out.len : sizeof text - 1;
    memcpy(text, out.ptr ? out.ptr : "", n);
    text[n] = '\0';
    return text;
}

static void fresh(void)
{
    bw_textbuf_done(&out);
    bw_textbuf_init(&out, 1 << 20);
}

TEST(counter_family_and_samples)
{
    fresh();
    bw_error err;
    struct bw_metric_label l[] = {{"route", BW_SLICE_LIT("api")}, {"class", BW_SLICE_LIT("2xx")}};
    CHECK(bw_metric_family(&out, "requests_total", BW_METRIC_COUNTER, "Requests answered.", &err) ==
          BW_OK);
    CHECK(bw_metric_counter(&out, "requests_total", l, 2, 1027, &err) == BW_OK);
    CHECK(bw_metric_counter(&out, "requests_total", NULL, 0, UINT64_MAX, &err) == BW_OK);
    CHECK_STR_EQ(str(), "# HELP bulwark_requests_total Requests answered.\n"
                        "# TYPE bulwark_requests_total counter\n"
                        "bulwark_requests_total{route=\"api\",class=\"2xx\"} 1027\n"
                        "bulwark_requests_total 18446744073709551615\n");
}

TEST(gauge_numbers)
{
    fresh();
    bw_error err;
    CHECK(bw_metric_family(&out, "x", BW_METRIC_GAUGE, "X.", &err) == BW_OK);
    double v[] = {0, 3, -2.5, 0.1, 1e21, 1.5e-7, INFINITY, -INFINITY, NAN, 123456789012345678.0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK(bw_metric_gauge(&out, "x", NULL, 0, v[i], &err) == BW_OK);
    CHECK_STR_EQ(str(), "# HELP bulwark_x X.\n"
                        "# TYPE bulwark_x gauge\n"
                        "bulwark_x 0\n"
                        "bulwark_x 3\n"
                        "bulwark_x -2.5\n"
                        "bulwark_x 0.1\n"
                        "bulwark_x 1e+21\n"
                        "bulwark_x 1.5e-07\n"
                        "bulwark_x +Inf\n"
                        "bulwark_x -Inf\n"
                        "bulwark_x NaN\n"
                        "bulwark_x 1.2345678901234568e+17\n");
    /* Every spelling reads back to the same double. */
    char buf[BW_METRIC_NUMBER_MAX];
    double tricky[] = {0.1 + 0.2, 1.0 / 3.0, 5e-324, 1.7976931348623157e308, -0.0};
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        bw_metric_format_double(tricky[i], buf);
        CHECK(strtod(buf, NULL) == tricky[i]);
    }
}

TEST(label_value_and_help_escaping)
{
    fresh();
    bw_error err;
    CHECK(bw_metric_family(&out, "e", BW_METRIC_COUNTER, "Line one\nback\\slash \"quoted\".",
                           &err) == BW_OK);
    struct bw_metric_label l[] = {{"v", BW_SLICE_LIT("a\\b\"c\nd")}, {"empty", BW_SLICE_EMPTY}};
    CHECK(bw_metric_counter(&out, "e", l, 2, 1, &err) == BW_OK);
    CHECK_STR_EQ(str(), "# HELP bulwark_e Line one\\nback\\\\slash \"quoted\".\n"
                        "# TYPE bulwark_e counter\n"
                        "bulwark_e{v=\"a\\\\b\\\"c\\nd\",empty=\"\"} 1\n");
}

TEST(histogram_cumulative)
{
    fresh();
    bw_error err;
    double bounds[] = {0.005, 0.1, 1, 2.5};
    uint64_t counts[] = {3, 0, 5, 1, 2};
    struct bw_metric_histogram h = {bounds, 4, counts, 7.25};
    struct bw_metric_label l[] = {{"route", BW_SLICE_LIT("api")}};
    CHECK(bw_metric_family(&out, "latency_seconds", BW_METRIC_HISTOGRAM, "Latency.", &err) ==
          BW_OK);
    CHECK(bw_metric_histogram(&out, "latency_seconds", l, 1, &h, &err) == BW_OK);
    CHECK(bw_metric_histogram(&out, "latency_seconds", NULL, 0, &h, &err) == BW_OK);
    CHECK_STR_EQ(str(), "# HELP bulwark_latency_seconds Latency.\n"
                        "# TYPE bulwark_latency_seconds histogram\n"
                        "bulwark_latency_seconds_bucket{route=\"api\",le=\"0.005\"} 3\n"
                        "bulwark_latency_seconds_bucket{route=\"api\",le=\"0.1\"} 3\n"
                        "bulwark_latency_seconds_bucket{route=\"api\",le=\"1\"} 8\n"
                        "bulwark_latency_seconds_bucket{route=\"api\",le=\"2.5\"} 9\n"
                        "bulwark_latency_seconds_bucket{route=\"api\",le=\"+Inf\"} 11\n"
                        "bulwark_latency_seconds_sum{route=\"api\"} 7.25\n"
                        "bulwark_latency_seconds_count{route=\"api\"} 11\n"
                        "bulwark_latency_seconds_bucket{le=\"0.005\"} 3\n"
                        "bulwark_latency_seconds_bucket{le=\"0.1\"} 3\n"
                        "bulwark_latency_seconds_bucket{le=\"1\"} 8\n"
                        "bulwark_latency_seconds_bucket{le=\"2.5\"} 9\n"
                        "bulwark_latency_seconds_bucket{le=\"+Inf\"} 11\n"
                        "bulwark_latency_seconds_sum 7.25\n"
                        "bulwark_latency_seconds_count 11\n");
}

TEST(histogram_edges)
{
    fresh();
    bw_error err;
    uint64_t one[] = {4};
    struct bw_metric_histogram h0 = {NULL, 0, one, 0};
    CHECK(bw_metric_histogram(&out, "h", NULL, 0, &h0, &err) == BW_OK);
    CHECK_STR_EQ(str(), "bulwark_h_bucket{le=\"+Inf\"} 4\n"
                        "bulwark_h_sum 0\n"
                        "bulwark_h_count 4\n");
    /* Saturates instead of wrapping, so buckets never decrease. */
    fresh();
    double b[] = {1};
    uint64_t big[] = {UINT64_MAX, 5};
    struct bw_metric_histogram hs = {b, 1, big, 1};
    CHECK(bw_metric_histogram(&out, "h", NULL, 0, &hs, &err) == BW_OK);
    CHECK(strstr(str(), "bulwark_h_bucket{le=\"+Inf\"} 18446744073709551615\n") != NULL);
    /* Refused bounds: not increasing, equal, not finite. */
    double bad1[] = {1, 0.5};
    double bad2[] = {1, 1};
    double bad3[] = {0, INFINITY};
    double bad4[] = {NAN};
    uint64_t c[] = {0, 0, 0};
    const double *bads[] = {bad1, bad2, bad3, bad4};
    size_t nb[] = {2, 2, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        fresh();
        struct bw_metric_histogram hb = {bads[i], nb[i], c, 0};
        CHECK(bw_metric_histogram(&out, "h", NULL, 0, &hb, &err) == BW_ERR);
        CHECK_INT_EQ(out.len, 0);
    }
    CHECK_STR_EQ(err.msg, "histogram h: bound 0 is not finite");
}

TEST(names_checked)
{
    fresh();
    bw_error err;
    const char *good[] = {"a", "_a", "a:b", "A_1:z", "requests_total"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(bw_metric_counter(&out, good[i], NULL, 0, 1, &err) == BW_OK);
    const char *bad[] = {"", "1a", "a-b", "a b", "a.b", "a{", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(bw_metric_counter(&out, bad[i], NULL, 0, 1, &err) == BW_ERR);
        CHECK(bw_metric_family(&out, bad[i], BW_METRIC_GAUGE, "h", &err) == BW_ERR);
    }
    /* Name length: at the limit and past it. */
    char name[BW_METRIC_NAME_MAX + 2];
    memset(name, 'n', sizeof name);
    name[BW_METRIC_NAME_MAX] = '\0';
    CHECK(bw_metric_counter(&out, name, NULL, 0, 1, &err) == BW_OK);
    name[BW_METRIC_NAME_MAX] = 'n';
    name[BW_METRIC_NAME_MAX + 1] = '\0';
    CHECK(bw_metric_counter(&out, name, NULL, 0, 1, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "metric name must be 1 to 128 characters");

    const char *bad_labels[] = {"", "1x", "a:b", "__x", "le", "a-b"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        struct bw_metric_label l[] = {{bad_labels[i], BW_SLICE_LIT("v")}};
        CHECK(bw_metric_counter(&out, "ok", l, 1, 1, &err) == BW_ERR);
    }
    char lname[BW_METRIC_LABEL_NAME_MAX + 2];
    memset(lname, 'l', sizeof lname);
    lname[BW_METRIC_LABEL_NAME_MAX] = '\0';
    struct bw_metric_label ll[] = {{lname, BW_SLICE_LIT("v")}};
    CHECK(bw_metric_counter(&out, "ok", ll, 1, 1, &err) == BW_OK);
    lname[BW_METRIC_LABEL_NAME_MAX] = 'l';
    lname[BW_METRIC_LABEL_NAME_MAX + 1] = '\0';
    CHECK(bw_metric_counter(&out, "ok", ll, 1, 1, &err) == BW_ERR);
    struct bw_metric_label dup[] = {{"a", BW_SLICE_LIT("1")}, {"a", BW_SLICE_LIT("2")}};
    CHECK(bw_metric_counter(&out, "ok", dup, 2, 1, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "metric ok: label \"a\" given twice");
    struct bw_metric_label le[] = {{"le", BW_SLICE_LIT("1")}};
    CHECK(bw_metric_histogram(&out, "ok", le, 1,
                              &(struct bw_metric_histogram){NULL, 0, (uint64_t[]){0}, 0},
                              &err) == BW_ERR);
}

TEST(full_buffer_leaves_no_half_line)
{
    bw_error err;
    bw_textbuf_done(&out);
    bw_textbuf_init(&out, 40);
    CHECK(bw_metric_counter(&out, "short", NULL, 0, 1, &err) == BW_OK);
    size_t before = out.len;
    struct bw_metric_label l[] = {{"route", BW_SLICE_LIT("a-long-route-name")}};
    CHECK(bw_metric_counter(&out, "short", l, 1, 1, &err) == BW_ERR);
    CHECK_INT_EQ(out.len, before);
    CHECK_STR_EQ(err.msg, "output would exceed its limit of 40 bytes");
    CHECK(bw_metric_family(&out, "x", BW_METRIC_COUNTER, "a help text that is too long", &err) ==
          BW_ERR);
    CHECK_INT_EQ(out.len, before);
    double b[] = {1, 2};
    uint64_t c[] = {1, 2, 3};
    struct bw_metric_histogram h = {b, 2, c, 1};
    CHECK(bw_metric_histogram(&out, "h", NULL, 0, &h, &err) == BW_ERR);
    CHECK_INT_EQ(out.len, before);
    CHECK_STR_EQ(str(), "bulwark_short 1\n");
}

int main(void)
{
    RUN(counter_family_and_samples);
    RUN(gauge_numbers);
    RUN(label_value_and_help_escaping);
    RUN(histogram_cumulative);
    RUN(histogram_edges);
    RUN(names_checked);
    RUN(full_buffer_leaves_no_half_line);
    bw_textbuf_done(&out);
    return t_done();
}
