/* Writers for the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). The lead's
 * metrics sources call these to build the body of GET /metrics; this file
 * owns the format (names, escaping, number spelling, histogram layout) and
 * nothing about where the numbers come from.
 *
 * Every metric name is given without the product prefix and written with
 * it: "requests_total" becomes "bulwark_requests_total", so no metric can
 * escape the namespace DESIGN.md promises. Names and label names are
 * checked against the format's grammar; a bad one is a caller bug reported
 * as an error (never a malformed exposition that a scraper rejects whole).
 *
 * Usage: one bw_metric_family() per metric, then its samples:
 *     bw_metric_family(out, "requests_total", BW_METRIC_COUNTER, "Requests answered.", err);
 *     bw_metric_counter(out, "requests_total", labels, 2, 1027, err);
 * Samples of one family must follow its family line, without other
 * families in between (the format requires it; the writer cannot check it
 * without remembering every name, so that is the caller's part). */
#ifndef BW_ADMIN_METRICS_H
#define BW_ADMIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/slice.h"
#include "base/textbuf.h"

#define BW_METRIC_PREFIX "bulwark_"
/* Longest name accepted (without the prefix) and longest label name: far
 * past anything bulwark uses, short enough to keep lines bounded. */
enum { BW_METRIC_NAME_MAX = 128, BW_METRIC_LABEL_NAME_MAX = 64 };

enum bw_metric_type { BW_METRIC_COUNTER, BW_METRIC_GAUGE, BW_METRIC_HISTOGRAM, BW_METRIC__COUNT };

/* A label: name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"
 * (reserved by Prometheus) or be "le" (the histogram's own). value is any
 * bytes; it is escaped (\\, \", \n) when written. */
struct bw_metric_label {
    const char *name;
    bw_slice value;
};

/* A histogram as the caller keeps it: counts[i] observations fell in
 * (bounds[i-1], bounds[i]], counts[nbounds] above the largest bound. The
 * writer makes the buckets cumulative and adds +Inf, _sum and _count.
 * bounds must be finite and strictly increasing; nbounds may be 0. */
struct bw_metric_histogram {
    const double *bounds;
    size_t nbounds;
    const uint64_t *counts; /* nbounds + 1 entries */
    double sum;
};

/* "# HELP bulwark_<name> <help>\n# TYPE bulwark_<name> <type>\n". help is
 * escaped (\\ and \n) as the format requires. */
bw_status bw_metric_family(struct bw_textbuf *out, const char *name, enum bw_metric_type type,
                           const char *help, bw_error *err) BW_MUST_CHECK;

/* "bulwark_<name>{l1="v1",...} <value>\n" (no braces without labels). */
bw_status bw_metric_counter(struct bw_textbuf *out, const char *name,
                            const struct bw_metric_label *labels, size_t nlabels, uint64_t value,
                            bw_error *err) BW_MUST_CHECK;
/* As counter; the value is spelled the shortest way that reads back exactly
 * ("0.25", "3", "1e+21"), and NaN / +Inf / -Inf as Prometheus spells them. */
bw_status bw_metric_gauge(struct bw_textbuf *out, const char *name,
                          const struct bw_metric_label *labels, size_t nlabels, double value,
                          bw_error *err) BW_MUST_CHECK;
/* _bucket lines (each with the given labels and then le), the +Inf bucket,
 * _sum and _count. */
bw_status bw_metric_histogram(struct bw_textbuf *out, const char *name,
                              const struct bw_metric_label *labels, size_t nlabels,
                              const struct bw_metric_histogram *h, bw_error *err) BW_MUST_CHECK;

/* Writes the shortest decimal spelling of v that strtod reads back as v
 * into buf (at least BW_METRIC_NUMBER_MAX bytes), NUL-terminated. */
enum { BW_METRIC_NUMBER_MAX = 32 };
void bw_metric_format_double(double v, char *buf);

#endif
