/* Private to src/http: the character tables, the incremental end-of-head
 * scan and the field-line loop shared by the request and response parsers
 * and the chunked decoder. Nothing outside src/http includes this file; the
 * public API is http1.h. */
#ifndef BW_HTTP_INTERNAL_H
#define BW_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/http1.h"

/* Character classes, one bit each in bw__http_cc (RFC 9110 §5.6.2, §5.5,
 * RFC 3986 §3.2.2). One table lookup per byte, no function call. */
enum {
    BW__CC_TCHAR = 0x01,  /* token character (field names, methods, codings) */
    BW__CC_VALUE = 0x02,  /* field-value byte: VCHAR, obs-text, SP, HTAB */
    BW__CC_TARGET = 0x04, /* request-target byte: VCHAR except '#' */
    BW__CC_HOST = 0x08,   /* reg-name byte: unreserved, sub-delims but ",", "%" */
    BW__CC_HEX = 0x10,
    BW__CC_DIGIT = 0x20,
    BW__CC_OWS = 0x40, /* SP, HTAB */
};

extern const uint8_t bw__http_cc[256];

#define BW__CC(c, cls) ((bw__http_cc[(unsigned char)(c)] & (cls)) != 0)

/* SWAR: eight bytes at a time, for the long runs (field values, targets).
 * A word passes only if every byte is in the class; otherwise the caller
 * finishes byte by byte with the table, so these need no exactness beyond
 * "no false pass". The has_less test is exact for n <= 128. */
#define BW__ONES UINT64_C(0x0101010101010101)
#define BW__HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t bw__load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline uint64_t bw__has_less(uint64_t w, uint8_t n)
{
    return (w - BW__ONES * n) & ~w & BW__HIGHS;
}

static inline uint64_t bw__has_byte(uint64_t w, uint8_t b)
{
    return bw__has_less(w ^ (BW__ONES * b), 1);
}

/* All eight bytes are field-value bytes other than HTAB: >= 0x20, not DEL. */
static inline bool bw__word_is_value(uint64_t w)
{
    return !(bw__has_less(w, 0x20) | bw__has_byte(w, 0x7f));
}

/* All eight bytes are request-target bytes: 0x21..0x7e, not '#'. */
static inline bool bw__word_is_target(uint64_t w)
{
    return !((w & BW__HIGHS) | bw__has_less(w, 0x21) | bw__has_byte(w, 0x7f) |
             bw__has_byte(w, '#'));
}

/* Which side is being parsed: decides the error statuses (a refused response
 * is always 502) and whether leading empty lines are skipped. */
enum bw__http_side { BW__SIDE_REQUEST, BW__SIDE_RESPONSE, BW__SIDE__COUNT };

/* What the field-line loop learned about the fields that decide framing and
 * connection handling (RFC 9112 §6, §9.6; RFC 9110 §7.2, §7.6.1, §10.1.1). */
struct bw__http_fields {
    size_t nheaders;
    unsigned host_count;
    bw_slice host; /* first Host value */
    unsigned cl_count;
    bw_slice cl; /* first Content-Length value */
    bool te_present;
    bool te_bad;          /* empty list element or malformed coding */
    unsigned te_chunked;  /* how many times chunked was named */
    bool te_last_chunked; /* the final coding so far is chunked */
    bool te_other;        /* a coding other than chunked was named */
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool has_upgrade;
    bool upgrade_h2c;     /* some Upgrade field names h2c */
    bool expect_continue; /* some Expect field was 100-continue */
    bool expect_other;    /* some Expect field was anything else */
};

/* Looks for the end of the head in buf[0..len), resuming where the previous
 * call stopped. Returns BW_HTTP_DONE with *ret_head_len (and *ret_start, the
 * offset of the start line after skipped empty lines), BW_HTTP_PARTIAL, or
 * BW_HTTP_ERROR with *err (bare LF, start line or head over its limit).
 * Every error it reports depends only on a prefix of the input, so the
 * outcome is the same however the bytes were split. */
enum bw_http_parse_result bw__http_scan_head(const char *buf, size_t len,
                                             const struct bw_http_limits *limits,
                                             enum bw__http_side side, struct bw_http_scan *scan,
                                             size_t *ret_start, size_t *ret_head_len,
                                             struct bw_http_error *err);

/* Parses the field lines in buf[pos..end), where end is the offset of the
 * CRLF that ends the head, into headers[0..max) and *f. Returns false with
 * *err filled on the first malformed line or when there are more than max. */
bool bw__http_parse_fields(const char *buf, size_t pos, size_t end, enum bw__http_side side,
                           struct bw_http_header *headers, size_t max, struct bw__http_fields *f,
                           struct bw_http_error *err);

/* Content-Length value (already OWS-trimmed): 1 to 19 digits, at most
 * 2^63-1. Returns false for anything else ("+5", "5, 5", "0x5", ""). */
bool bw__http_parse_content_length(bw_slice v, uint64_t *ret_value);

/* Splits the next element off a comma-separated list (RFC 9110 §5.6.1),
 * OWS-trimmed; an element may be empty. Returns false when nothing is left. */
bool bw__http_list_next(bw_slice *rest, bw_slice *ret_elem);

/* Validates a Host value or an authority (RFC 3986 §3.2.2-3): reg-name,
 * IPv4 or a bracketed IPv6 literal, optional ":port" (1-5 digits, <= 65535).
 * No userinfo, no spaces, no '/'. *ret_has_port says whether a port was
 * given. */
bool bw__http_host_valid(bw_slice h, bool *ret_has_port);

static inline void bw__http_set_err(struct bw_http_error *err, uint16_t status, const char *reason,
                                    size_t offset)
{
    err->status = status;
    err->reason = reason;
    err->offset = offset;
}

#endif
