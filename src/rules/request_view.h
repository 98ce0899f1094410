/* What the rules evaluator reads of a request (and, in the response phase,
 * of its response): a plain struct of views filled by the caller (the proxy,
 * `bulwark eval`, tests). Types only; nothing here depends on src/proxy.
 *
 * Every slice points into memory that outlives the evaluation (the request's
 * read buffer, typically). Absence is always explicit: a header that was not
 * received is simply not in `headers`; optional scalars carry a `known` flag,
 * never a 0 or NULL standing for "absent" (DESIGN.md §1, "Missing is not
 * zero"). */
#ifndef BW_RULES_REQUEST_VIEW_H
#define BW_RULES_REQUEST_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/slice.h"

/* One header line as received: name in any case (lookups fold ASCII case),
 * value with surrounding whitespace already trimmed. */
struct bw_rv_header {
    bw_slice name;
    bw_slice value;
};

struct bw_rv_headers {
    const struct bw_rv_header *items; /* n entries, in received order */
    size_t n;
};

/* An optional byte string: `known` false means absent (not empty). */
struct bw_rv_opt_bytes {
    bool known;
    bw_slice value;
};

struct bw_rv_opt_int {
    bool known;
    int64_t value;
};

/* The downstream peer's address (after client_ip resolution). */
struct bw_rv_opt_addr {
    bool known;
    struct sockaddr_storage addr; /* AF_INET or AF_INET6; anything else reads as unknown */
};

struct bw_request_view {
    bw_slice method;                /* http.request.method */
    struct bw_rv_opt_bytes host;    /* http.host: Host header or absolute-form authority */
    bw_slice uri;                   /* http.request.uri: the request target, path?query */
    bw_slice raw_path;              /* raw.http.request.uri.path; http.request.uri.path is
                                     * its normalisation, computed lazily by the evaluator */
    bw_slice query;                 /* http.request.uri.query: after '?', empty when none */
    struct bw_rv_headers headers;   /* http.request.headers and the header-derived fields */
    struct bw_rv_opt_addr src;      /* ip.src */
    bool ssl;                       /* ssl: arrived over TLS */
    struct bw_rv_opt_int bot_score; /* bot.score: known only with a valid model */

    /* Response phase only; has_response false in the request phase (response
     * fields then read as unknown, and has() of them is false). */
    bool has_response;
    int64_t response_code;                 /* http.response.code */
    struct bw_rv_headers response_headers; /* http.response.headers */
};

#endif
