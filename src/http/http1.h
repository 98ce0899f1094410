/* HTTP/1.1 message parsing (RFC 9112, RFC 9110): request heads, response
 * heads and the chunked transfer coding. Pure: no I/O, no allocation. Every
 * parsed field is a slice into the caller's buffer (zero-copy), so the buffer
 * must stay put while the parsed head is in use.
 *
 * Incremental use: bytes may arrive split anywhere. The caller keeps one
 * bw_http_scan per message head and calls the parse function again with the
 * whole (grown) buffer; the scan remembers how far the end-of-head search has
 * gone, so total work is linear in the head size even when bytes arrive one
 * at a time. The head is only parsed once it is complete.
 *
 * Line endings: only CRLF is accepted. A bare LF anywhere in a head is
 * rejected with 400 (RFC 9112 §2.2 allows recognising a bare LF; we do not,
 * because proxies that disagree on line ends are a request-smuggling vector).
 */
#ifndef BW_HTTP_HTTP1_H
#define BW_HTTP_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

enum bw_http_method {
    BW_METHOD_GET,
    BW_METHOD_HEAD,
    BW_METHOD_POST,
    BW_METHOD_PUT,
    BW_METHOD_DELETE,
    BW_METHOD_CONNECT,
    BW_METHOD_OPTIONS,
    BW_METHOD_TRACE,
    BW_METHOD_PATCH,
    BW_METHOD_OTHER, /* a valid token we do not know; proxied as-is */
    BW_METHOD__COUNT
};

/* Limits on a message head. Each has a default (BW_HTTP_DEFAULT_*) and is
 * configurable through `limits:` in the main config. */
struct bw_http_limits {
    size_t request_line_bytes; /* request (or status) line incl. CRLF; over it: 414 */
    size_t header_bytes;       /* whole head incl. request line; over it: 431 */
    size_t headers;            /* number of header fields; over it: 431 */
};

#define BW_HTTP_DEFAULT_REQUEST_LINE_BYTES ((size_t)8 * 1024)
#define BW_HTTP_DEFAULT_HEADER_BYTES ((size_t)32 * 1024)
#define BW_HTTP_DEFAULT_HEADERS ((size_t)100)
/* Hard ceiling for `limits.headers`, so a header array stays bounded. */
#define BW_HTTP_MAX_HEADERS ((size_t)1000)

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum bw_http_body_kind {
    BW_BODY_NONE,        /* no body at all */
    BW_BODY_LENGTH,      /* exactly content_length bytes */
    BW_BODY_CHUNKED,     /* chunked transfer coding */
    BW_BODY_UNTIL_CLOSE, /* response only: body ends when the upstream closes */
    BW_BODY__COUNT
};

struct bw_http_header {
    bw_slice name;  /* as received (case kept) */
    bw_slice value; /* leading and trailing OWS removed */
};

/* Why a message was refused: the status to answer with (requests) and a short
 * reason for the error log. offset is where in the buffer the problem was
 * found. reason is a static string. */
struct bw_http_error {
    uint16_t status;
    const char *reason;
    size_t offset;
};

/* Incremental end-of-head search state; zero it for each new message. */
struct bw_http_scan {
    size_t scanned;    /* bytes already checked */
    size_t line_start; /* offset where the current line began */
    bool request_line_done;
};

enum bw_http_parse_result {
    BW_HTTP_PARTIAL, /* need more bytes; nothing in *out is valid yet */
    BW_HTTP_DONE,    /* head complete and valid; *out filled */
    BW_HTTP_ERROR,   /* refused; *err filled; the connection must close */
};

struct bw_http_request {
    bw_slice method;
    enum bw_http_method method_id;
    bw_slice target; /* request-target as received */
    bw_slice path;   /* origin-form: target up to '?' (absolute-form: its path, or the
                      * static string "/" when the URI has none, RFC 9112 §3.2.1;
                      * asterisk-form: "*"; authority-form: empty) */
    bw_slice query;  /* after '?', without it; empty if none */
    bool has_query;
    uint8_t version_minor;          /* HTTP/1.<minor>: 0 or 1 */
    struct bw_http_header *headers; /* caller-provided array ... */
    size_t headers_cap;             /* ... of this many entries (>= limits.headers) */
    size_t nheaders;
    bw_slice host;                    /* Host field value (or authority of an absolute-form target);
                                       * empty for an HTTP/1.0 request without Host */
    enum bw_http_body_kind body_kind; /* NONE, LENGTH or CHUNKED for requests */
    uint64_t content_length;          /* when body_kind == BW_BODY_LENGTH */
    bool keep_alive;                  /* from version and Connection (close / keep-alive) */
    bool expect_continue;             /* Expect: 100-continue */
    bool upgrade;                     /* Connection lists "upgrade" and Upgrade is present */
    size_t head_len;                  /* bytes of request line + fields + final CRLF */
};

struct bw_http_response {
    uint8_t version_minor;
    uint16_t status; /* 100..999 */
    bw_slice reason;
    struct bw_http_header *headers;
    size_t headers_cap;
    size_t nheaders;
    enum bw_http_body_kind body_kind;
    uint64_t content_length;
    bool keep_alive; /* the upstream may reuse the connection after this */
    bool upgrade;    /* 101 with Upgrade */
    bool te_other;   /* Transfer-Encoding names a coding besides chunked (gzip, chunked) */
    size_t head_len;
};

/* Parses a request head from buf[0..len). On BW_HTTP_DONE, req->head_len
 * tells where the body (or the next pipelined request) starts. Refusals:
 *   400 malformed request line or field, bare LF, obs-fold, whitespace before
 *       a colon, invalid characters in names or values, Content-Length with
 *       Transfer-Encoding, duplicate or conflicting or non-digit or
 *       overflowing Content-Length, Transfer-Encoding whose final coding is
 *       not chunked, missing or repeated Host in HTTP/1.1, malformed version
 *   414 request line longer than limits->request_line_bytes
 *   431 head longer than limits->header_bytes, or more than limits->headers
 *   417 an Expect value other than 100-continue
 *   501 Transfer-Encoding with a coding other than chunked
 *   505 a well-formed version other than HTTP/1.0 and HTTP/1.1
 * docs/http.md lists every rule. */
enum bw_http_parse_result bw_http_parse_request(const char *buf, size_t len,
                                                const struct bw_http_limits *limits,
                                                struct bw_http_scan *scan,
                                                struct bw_http_request *req,
                                                struct bw_http_error *err);

/* Parses a response head. request_method decides bodilessness (HEAD, and 2xx
 * to CONNECT). 1xx, 204 and 304 have no body. A response with both
 * Content-Length and Transfer-Encoding, or an invalid Content-Length, is an
 * error (status 502 in *err), never guessed at. */
enum bw_http_parse_result
bw_http_parse_response(const char *buf, size_t len, const struct bw_http_limits *limits,
                       enum bw_http_method request_method, struct bw_http_scan *scan,
                       struct bw_http_response *resp, struct bw_http_error *err);

/* Chunked transfer coding decoder (RFC 9112 §7.1). Chunk extensions are
 * skipped (bounded), trailer fields are consumed and discarded (bounded). */
enum bw_chunked_state {
    BW_CHUNKED_SIZE,    /* reading hex digits of a chunk size */
    BW_CHUNKED_EXT,     /* reading a chunk extension up to CRLF */
    BW_CHUNKED_SIZE_LF, /* expecting LF after CR of the size line */
    BW_CHUNKED_DATA,    /* inside chunk data */
    BW_CHUNKED_DATA_CR, /* expecting CR after chunk data */
    BW_CHUNKED_DATA_LF, /* expecting LF after chunk data */
    BW_CHUNKED_TRAILER, /* reading trailer lines after the last chunk */
    BW_CHUNKED_DONE,
    BW_CHUNKED__COUNT
};

struct bw_chunked {
    enum bw_chunked_state state;
    uint64_t remaining; /* data bytes left in the current chunk */
    unsigned size_digits;
    size_t ext_bytes;     /* bytes of extension on the current size line */
    size_t trailer_bytes; /* bytes of trailer section so far */
    size_t trailer_line_len;
    bool saw_cr;
    bool ext_named;        /* the ';' of a chunk extension has been seen */
    bool trailer_in_value; /* past the ':' of the current trailer line */
};

#define BW_CHUNKED_MAX_EXT_BYTES ((size_t)4096)
#define BW_CHUNKED_MAX_TRAILER_BYTES ((size_t)8192)

void bw_chunked_init(struct bw_chunked *c);

/* Decodes from buf[0..len). Returns the number of input bytes consumed (0 means
 * more input is needed), or -1 on a framing error with *err filled (status 400).
 * At most one span of payload is reported per call, in *data (a sub-slice of
 * the consumed input; len 0 if this call consumed only framing). When the last
 * chunk and the trailer section have been consumed, *done is set and the bytes
 * after that are not consumed (a pipelined next message). */
long bw_chunked_decode(struct bw_chunked *c, const char *buf, size_t len, bw_slice *data,
                       bool *done, struct bw_http_error *err);

/* Header lookup helpers over a parsed head. */
const struct bw_http_header *bw_http_find_header(const struct bw_http_header *headers, size_t n,
                                                 bw_slice name);

/* Does a comma-separated field value (e.g. Connection) list this token? */
bool bw_http_list_has_token(bw_slice value, bw_slice token);

/* The RFC 9110 reason phrase for a status code; "" (never NULL) for codes
 * it does not name. */
const char *bw_http_status_reason(uint16_t status);

/* The name part of a parsed Host value, as DNS compares it but for case:
 * without the port or the root's trailing dot ("A.example.:80" gives
 * "A.example"; "[::1]:80" gives "[::1]"). What the rules call http.host
 * (lowercased) and what hash(http.host) balances on. */
bw_slice bw_http_host_name(bw_slice host);

#endif
