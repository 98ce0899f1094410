#include "admin/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. The prefix already supplies the
 * first character, so a name given to us may start with a digit too; we
 * still require the stricter form, so a name reads the same with or without
 * the prefix. */
static bw_status check_name(const char *name, bw_error *err)
{
    size_t n = strnlen(name, BW_METRIC_NAME_MAX + 1);
    if (n == 0 || n > BW_METRIC_NAME_MAX)
        return bw_error_set(err, "metric name must be 1 to %d characters", BW_METRIC_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(is_alpha_(c) || c == ':' || (i > 0 && is_digit(c))))
            return bw_error_set(err, "metric name \"%s\": invalid character at offset %zu", name,
                                i);
    }
    return BW_OK;
}

static bw_status check_label_name(const char *name, bw_error *err)
{
    size_t n = strnlen(name, BW_METRIC_LABEL_NAME_MAX + 1);
    if (n == 0 || n > BW_METRIC_LABEL_NAME_MAX)
        return bw_error_set(err, "label name must be 1 to %d characters", BW_METRIC_LABEL_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!(is_alpha_(name[i]) || (i > 0 && is_digit(name[i]))))
            return bw_error_set(err, "label name \"%s\": invalid character at offset %zu", name, i);
    if (n >= 2 && name[0] == '_' && name[1] == '_')
        return bw_error_set(err, "label name \"%s\": names starting with __ are reserved", name);
    if (strcmp(name, "le") == 0)
        return bw_error_set(err, "label name \"le\" is reserved for histogram buckets");
    return BW_OK;
}

static const char *type_name(enum bw_metric_type t)
{
    switch (t) {
    case BW_METRIC_COUNTER:
        return "counter";
    case BW_METRIC_GAUGE:
        return "gauge";
    case BW_METRIC_HISTOGRAM:
        return "histogram";
    case BW_METRIC__COUNT:
        break;
    }
    return "untyped";
}

static bw_status put(struct bw_textbuf *out, const char *p, size_t n, bw_error *err)
{
    if (bw_textbuf_append(out, p, n) != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status puts_(struct bw_textbuf *out, const char *s, bw_error *err)
{
    return put(out, s, strlen(s), err);
}

/* Escapes runs of plain bytes in one append each. HELP text escapes \\ and
 * \n; label values also escape \" (format 0.0.4). */
static bw_status put_escaped(struct bw_textbuf *out, const char *p, size_t n, bool quote,
                             bw_error *err)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        if (p[i] == '\\')
            esc = "\\\\";
        else if (p[i] == '\n')
            esc = "\\n";
        else if (quote && p[i] == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        if (put(out, p + run, i - run, err) != BW_OK || puts_(out, esc, err) != BW_OK)
            return BW_ERR;
        run = i + 1;
    }
    return put(out, p + run, n - run, err);
}

void bw_metric_format_double(double v, char *buf)
{
    if (isnan(v)) {
        memcpy(buf, "NaN", 4);
        return;
    }
    if (isinf(v)) {
        memcpy(buf, v > 0 ? "+Inf" : "-Inf", 5);
        return;
    }
    /* Whole numbers as integers: "1000", not "1e+03" (both are valid
     * exposition, only one is readable). 2^53: every integer below is exact. */
    if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v) {
        snprintf(buf, BW_METRIC_NUMBER_MAX, "%lld", (long long)v);
        return;
    }
    /* The shortest %.*g that round-trips: 0.1 stays "0.1", not
     * "0.10000000000000001". 17 significant digits always round-trip. */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, BW_METRIC_NUMBER_MAX, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* "bulwark_<name><suffix>{labels[,le="<le>"]} " */
static bw_status put_series(struct bw_textbuf *out, const char *name, const char *suffix,
                            const struct bw_metric_label *labels, size_t nlabels, const char *le,
                            bw_error *err)
{
    if (puts_(out, BW_METRIC_PREFIX, err) != BW_OK || puts_(out, name, err) != BW_OK ||
        puts_(out, suffix, err) != BW_OK)
        return BW_ERR;
    bool has_le = le[0] != '\0';
    if (nlabels == 0 && !has_le)
        return puts_(out, " ", err);
    if (puts_(out, "{", err) != BW_OK)
        return BW_ERR;
    for (size_t i = 0; i < nlabels; i++) {
        if ((i > 0 && puts_(out, ",", err) != BW_OK) || puts_(out, labels[i].name, err) != BW_OK ||
            puts_(out, "=\"", err) != BW_OK ||
            put_escaped(out, labels[i].value.ptr, labels[i].value.len, true, err) != BW_OK ||
            puts_(out, "\"", err) != BW_OK)
            return BW_ERR;
    }
    if (has_le &&
        ((nlabels > 0 && puts_(out, ",", err) != BW_OK) || puts_(out, "le=\"", err) != BW_OK ||
         puts_(out, le, err) != BW_OK || puts_(out, "\"", err) != BW_OK))
        return BW_ERR;
    return puts_(out, "} ", err);
}

static bw_status check_sample(const char *name, const struct bw_metric_label *labels,
                              size_t nlabels, bw_error *err)
{
    if (check_name(name, err) != BW_OK)
        return BW_ERR;
    for (size_t i = 0; i < nlabels; i++) {
        if (check_label_name(labels[i].name, err) != BW_OK)
            return BW_ERR;
        /* A repeated label name makes the whole scrape invalid. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return bw_error_set(err, "metric %s: label \"%s\" given twice", name,
                                    labels[i].name);
    }
    return BW_OK;
}

bw_status bw_metric_family(struct bw_textbuf *out, const char *name, enum bw_metric_type type,
                           const char *help, bw_error *err)
{
    if (check_name(name, err) != BW_OK)
        return BW_ERR;
    size_t before = out->len;
    if (puts_(out, "# HELP " BW_METRIC_PREFIX, err) != BW_OK || puts_(out, name, err) != BW_OK ||
        puts_(out, " ", err) != BW_OK ||
        put_escaped(out, help, strlen(help), false, err) != BW_OK ||
        puts_(out, "\n# TYPE " BW_METRIC_PREFIX, err) != BW_OK || puts_(out, name, err) != BW_OK ||
        puts_(out, " ", err) != BW_OK || puts_(out, type_name(type), err) != BW_OK ||
        puts_(out, "\n", err) != BW_OK) {
        out->len = before; /* never leave half a line behind */
        return BW_ERR;
    }
    return BW_OK;
}

static bw_status sample_line(struct bw_textbuf *out, const char *name, const char *suffix,
                             const struct bw_metric_label *labels, size_t nlabels, const char *le,
                             const char *value, bw_error *err)
{
    if (put_series(out, name, suffix, labels, nlabels, le, err) != BW_OK ||
        puts_(out, value, err) != BW_OK || puts_(out, "\n", err) != BW_OK)
        return BW_ERR;
    return BW_OK;
}

bw_status bw_metric_counter(struct bw_textbuf *out, const char *name,
                            const struct bw_metric_label *labels, size_t nlabels, uint64_t value,
                            bw_error *err)
{
    if (check_sample(name, labels, nlabels, err) != BW_OK)
        return BW_ERR;
    char num[BW_METRIC_NUMBER_MAX];
    snprintf(num, sizeof num, "%llu", (unsigned long long)value);
    size_t before = out->len;
    if (sample_line(out, name, "", labels, nlabels, "", num, err) != BW_OK) {
        out->len = before;
        return BW_ERR;
    }
    return BW_OK;
}

bw_status bw_metric_gauge(struct bw_textbuf *out, const char *name,
                          const struct bw_metric_label *labels, size_t nlabels, double value,
                          bw_error *err)
{
    if (check_sample(name, labels, nlabels, err) != BW_OK)
        return BW_ERR;
    char num[BW_METRIC_NUMBER_MAX];
    bw_metric_format_double(value, num);
    size_t before = out->len;
    if (sample_line(out, name, "", labels, nlabels, "", num, err) != BW_OK) {
        out->len = before;
        return BW_ERR;
    }
    return BW_OK;
}

static bw_status histogram_lines(struct bw_textbuf *out, const char *name,
                                 const struct bw_metric_label *labels, size_t nlabels,
                                 const struct bw_metric_histogram *h, bw_error *err)
{
    char le[BW_METRIC_NUMBER_MAX], num[BW_METRIC_NUMBER_MAX];
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        /* Saturate rather than wrap: a wrapped cumulative count would make
         * the buckets decrease, which Prometheus treats as a reset. */
        cum = h->counts[i] > UINT64_MAX - cum ? UINT64_MAX : cum + h->counts[i];
        if (i < h->nbounds)
            bw_metric_format_double(h->bounds[i], le);
        else
            memcpy(le, "+Inf", 5);
        snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
        if (sample_line(out, name, "_bucket", labels, nlabels, le, num, err) != BW_OK)
            return BW_ERR;
    }
    bw_metric_format_double(h->sum, num);
    if (sample_line(out, name, "_sum", labels, nlabels, "", num, err) != BW_OK)
        return BW_ERR;
    snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
    return sample_line(out, name, "_count", labels, nlabels, "", num, err);
}

bw_status bw_metric_histogram(struct bw_textbuf *out, const char *name,
                              const struct bw_metric_label *labels, size_t nlabels,
                              const struct bw_metric_histogram *h, bw_error *err)
{
    if (check_sample(name, labels, nlabels, err) != BW_OK)
        return BW_ERR;
    for (size_t i = 0; i < h->nbounds; i++) {
        if (!isfinite(h->bounds[i]))
            return bw_error_set(err, "histogram %s: bound %zu is not finite", name, i);
        if (i > 0 && !(h->bounds[i] > h->bounds[i - 1]))
            return bw_error_set(err, "histogram %s: bounds must be strictly increasing (bound %zu)",
                                name, i);
    }
    size_t before = out->len;
    if (histogram_lines(out, name, labels, nlabels, h, err) != BW_OK) {
        out->len = before;
        return BW_ERR;
    }
    return BW_OK;
}
