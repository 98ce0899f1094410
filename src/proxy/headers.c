#include "proxy/headers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct bw_head_out *o, const char *p, size_t n)
{
    if (o->overflow || o->cap - o->len < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void put_slice(struct bw_head_out *o, bw_slice s)
{
    put(o, s.ptr, s.len);
}

#define PUT_LIT(o, s) put((o), (s), sizeof(s) - 1)

static void put_field(struct bw_head_out *o, bw_slice name, bw_slice value)
{
    put_slice(o, name);
    PUT_LIT(o, ": ");
    put_slice(o, value);
    PUT_LIT(o, "\r\n");
}

/* Hop-by-hop or proxy-managed fields, by name. Framing fields are handled by
 * the callers. */
enum field_kind {
    F_PASS,
    F_HOP,     /* never forwarded */
    F_UPGRADE, /* forwarded only when upgrading */
    F_XFF,
    F_XFP,
    F_FWD, /* other forwarding fields: from trusted peers only */
    F_EXPECT,
    F_TE, /* Transfer-Encoding */
    F_HOST,
    F_CL, /* Content-Length: framing, so never removable through Connection */
};

static enum field_kind classify(bw_slice n)
{
    /* Switch on length first: most fields are rejected after one compare. */
    switch (n.len) {
    case 2:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("te")) ? F_HOP : F_PASS;
    case 4:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("host")) ? F_HOST : F_PASS;
    case 6:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("expect")) ? F_EXPECT : F_PASS;
    case 9:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("forwarded")) ||
                       bw_slice_eq_nocase(n, BW_SLICE_LIT("x-real-ip"))
                   ? F_FWD
                   : F_PASS;
    case 7:
        if (bw_slice_eq_nocase(n, BW_SLICE_LIT("upgrade")))
            return F_UPGRADE;
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("trailer")) ? F_HOP : F_PASS;
    case 10:
        if (bw_slice_eq_nocase(n, BW_SLICE_LIT("connection")))
            return F_HOP;
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("keep-alive")) ? F_HOP : F_PASS;
    case 14:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("content-length")) ? F_CL : F_PASS;
    case 15:
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("x-forwarded-for")) ? F_XFF : F_PASS;
    case 16:
        if (bw_slice_eq_nocase(n, BW_SLICE_LIT("proxy-connection")))
            return F_HOP;
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("x-forwarded-host")) ||
                       bw_slice_eq_nocase(n, BW_SLICE_LIT("x-forwarded-port"))
                   ? F_FWD
                   : F_PASS;
    case 17:
        if (bw_slice_eq_nocase(n, BW_SLICE_LIT("transfer-encoding")))
            return F_TE;
        return bw_slice_eq_nocase(n, BW_SLICE_LIT("x-forwarded-proto")) ? F_XFP : F_PASS;
    default:
        return F_PASS;
    }
}

/* Is name listed in any Connection field? (RFC 9110 §7.6.1: those fields
 * are hop-by-hop too.) */
static bool named_by_connection(const struct bw_http_header *h, size_t n, bw_slice name)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.len == 10 && bw_slice_eq_nocase(h[i].name, BW_SLICE_LIT("connection")) &&
            bw_http_list_has_token(h[i].value, name))
            return true;
    }
    return false;
}

/* The elements of every Connection field, gathered once per head: each
 * forwarded field is checked against them, and most heads have none or one
 * ("keep-alive"). When more than fit here, the fields they name are found
 * once instead (conn_mark): searching every field's name through a list of
 * thousands made a 32 KiB head cost milliseconds of CPU, and a 1 MiB one
 * (limits.header_bytes, limits.headers 1000) seconds. */
enum { CONN_TOKENS_MAX = 8 };

struct conn_tokens {
    size_t n;
    bool complete; /* tok[] holds every element */
    bool marked;   /* else listed[] says which fields are named */
    bw_slice tok[CONN_TOKENS_MAX];
    bool listed[BW_HTTP_MAX_HEADERS];
};

/* Orders field names as bw_slice_eq_nocase compares them. */
static int name_cmp(bw_slice a, bw_slice b)
{
    size_t m = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < m; i++) {
        unsigned char x = (unsigned char)bw_ascii_lower(a.ptr[i]);
        unsigned char y = (unsigned char)bw_ascii_lower(b.ptr[i]);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

static int field_index_cmp(const void *a, const void *b, void *ctx)
{
    const struct bw_http_header *h = ctx;
    return name_cmp(h[*(const uint16_t *)a].name, h[*(const uint16_t *)b].name);
}

/* Calls fn for each element of every Connection field (split at each comma,
 * optional whitespace trimmed: the elements bw_http_list_has_token
 * compares); stops when it returns false. */
static void conn_each(const struct bw_http_header *h, size_t n, bool (*fn)(void *ctx, bw_slice tok),
                      void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.len != 10 || !bw_slice_eq_nocase(h[i].name, BW_SLICE_LIT("connection")))
            continue;
        bw_slice v = h[i].value;
        if (v.ptr == NULL)
            continue; /* lists nothing, as for bw_http_list_has_token */
        for (;;) {
            const char *comma = v.len ? memchr(v.ptr, ',', v.len) : NULL;
            size_t len = comma ? (size_t)(comma - v.ptr) : v.len;
            if (!fn(ctx, bw_slice_trim_ows(bw_slice_make(v.ptr, len))))
                return;
            if (!comma)
                break;
            v = bw_slice_make(comma + 1, v.len - len - 1);
        }
    }
}

static bool conn_gather(void *ctx, bw_slice tok)
{
    struct conn_tokens *ct = ctx;
    if (ct->n == CONN_TOKENS_MAX) {
        ct->complete = false;
        return false;
    }
    ct->tok[ct->n++] = tok;
    return true;
}

struct conn_marking {
    struct conn_tokens *ct;
    const struct bw_http_header *h;
    const uint16_t *order; /* field indexes sorted by name */
    size_t n;
};

/* Marks the fields that one element names: a binary search of the sorted
 * names, so the whole list costs its length times log(fields). */
static bool conn_mark_one(void *ctx, bw_slice tok)
{
    struct conn_marking *m = ctx;
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (name_cmp(m->h[m->order[mid]].name, tok) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < m->n && name_cmp(m->h[m->order[lo]].name, tok) == 0; lo++)
        m->ct->listed[m->order[lo]] = true;
    return true;
}

static void conn_tokens_init(struct conn_tokens *ct, const struct bw_http_header *h, size_t n)
{
    ct->n = 0;
    ct->complete = true;
    ct->marked = false;
    conn_each(h, n, conn_gather, ct);
    if (ct->complete || n > BW_HTTP_MAX_HEADERS)
        return;
    uint16_t order[BW_HTTP_MAX_HEADERS];
    for (size_t i = 0; i < n; i++) {
        order[i] = (uint16_t)i;
        ct->listed[i] = false;
    }
    qsort_r(order, n, sizeof order[0], field_index_cmp, (void *)h);
    struct conn_marking m = {.ct = ct, .h = h, .order = order, .n = n};
    conn_each(h, n, conn_mark_one, &m);
    ct->marked = true;
}

/* Is field i named by a Connection field? */
static bool conn_names(const struct conn_tokens *ct, const struct bw_http_header *h, size_t n,
                       size_t i)
{
    if (ct->marked)
        return ct->listed[i];
    if (!ct->complete)
        return named_by_connection(h, n, h[i].name); /* more fields than limits.headers allows */
    for (size_t k = 0; k < ct->n; k++)
        if (bw_slice_eq_nocase(ct->tok[k], h[i].name))
            return true;
    return false;
}

bw_slice bw_join_xff(const struct bw_http_request *req, char *out, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct bw_http_header *h = &req->headers[i];
        if (h->name.len != 15 || !bw_slice_eq_nocase(h->name, BW_SLICE_LIT("x-forwarded-for")))
            continue;
        if (h->value.len == 0)
            continue;
        size_t need = h->value.len + (len ? 2 : 0);
        if (cap - len < need)
            return BW_SLICE_EMPTY;
        if (len) {
            out[len++] = ',';
            out[len++] = ' ';
        }
        memcpy(out + len, h->value.ptr, h->value.len);
        len += h->value.len;
    }
    return bw_slice_make(out, len);
}

/* Does some op of ed name this field? */
static bool edited(const struct bw_head_edits *ed, bw_slice name)
{
    for (size_t i = 0; i < ed->nops; i++)
        if (bw_slice_eq_nocase(ed->ops[i]->name, name))
            return true;
    return false;
}

/* A Content-Length field as the number we framed by, in plain decimal:
 * "0010" is 10 here, but 8 to a parser that reads a leading 0 as octal. */
static void put_length(struct bw_head_out *o, bw_slice name, uint64_t v)
{
    char digits[24];
    size_t k = sizeof digits;
    do {
        digits[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_field(o, name, bw_slice_make(digits + k, sizeof digits - k));
}

/* Each name's last op decides. */
static void put_edits(struct bw_head_out *out, const struct bw_head_edits *ed)
{
    for (size_t i = 0; i < ed->nops; i++) {
        const struct bw_header_op *op = ed->ops[i];
        bool last = true;
        for (size_t j = i + 1; j < ed->nops && last; j++)
            last = !bw_slice_eq_nocase(ed->ops[j]->name, op->name);
        if (!last)
            continue;
        switch (op->kind) {
        case BW_HEADER_SET:
            put_field(out, op->name, op->value);
            break;
        case BW_HEADER_REMOVE:
        case BW_HEADER_OP__COUNT:
            break;
        }
    }
}

bool bw_build_upstream_request(struct bw_head_out *out, const struct bw_http_request *req,
                               const struct bw_upstream_head_params *p)
{
    const struct bw_http_header *h = req->headers;
    size_t n = req->nheaders;
    struct conn_tokens ct;
    conn_tokens_init(&ct, h, n);

    const struct bw_head_edits *ed = &p->edits;
    put_slice(out, req->method);
    PUT_LIT(out, " ");
    /* OPTIONS * names the server, not a resource: a path rewrite would
     * make it a request for that path, another meaning altogether. */
    bool asterisk = req->path.len == 1 && req->path.ptr[0] == '*';
    if (ed->has_path && !asterisk) {
        put_slice(out, ed->path);
        if (req->has_query) {
            PUT_LIT(out, "?");
            put_slice(out, req->query);
        }
    } else if (req->target.len > 0 && req->target.ptr[0] != '/' && req->target.ptr[0] != '*' &&
               req->method_id != BW_METHOD_CONNECT) {
        /* absolute-form: the upstream gets origin-form (RFC 9112 §3.2.1). */
        if (req->path.len)
            put_slice(out, req->path);
        else
            PUT_LIT(out, "/");
        if (req->has_query) {
            PUT_LIT(out, "?");
            put_slice(out, req->query);
        }
    } else {
        put_slice(out, req->target);
    }
    PUT_LIT(out, " HTTP/1.1\r\n");

    bw_slice upgrade = BW_SLICE_EMPTY;
    bool host_done = false;
    for (size_t i = 0; i < n; i++) {
        enum field_kind kind = classify(h[i].name);
        /* Forwarded, X-Real-IP, X-Forwarded-Host/-Port say who the client
         * is and what it asked for, and applications believe them: from
         * anyone but a trusted proxy they are forged, as X-Forwarded-For is
         * (which bulwark rewrites instead). From a trusted one they pass. */
        if (kind == F_FWD) {
            if (!p->peer_trusted)
                continue;
            kind = F_PASS;
        }
        switch (kind) {
        case F_PASS:
            if (conn_names(&ct, h, n, i))
                continue;
            if (ed->nops && edited(ed, h[i].name))
                continue;
            /* A name with '_' is dropped, as nginx does by default: CGI,
             * WSGI, Rack and PHP map '-' and '_' to the same variable, so
             * "X_Forwarded_For" or "Content_Length" would stand in for the
             * field bulwark writes or frames by. */
            if (memchr(h[i].name.ptr, '_', h[i].name.len))
                continue;
            put_field(out, h[i].name, h[i].value);
            break;
        case F_CL: {
            /* The body is forwarded as framed, so its length goes with it
             * even when Connection names it: dropping it would leave the
             * body on the upstream connection as the next request. */
            put_length(out, h[i].name, req->content_length);
            break;
        }
        case F_HOST:
            if (host_done)
                continue;
            host_done = true;
            /* An absolute-form authority overrides Host (RFC 9112 §3.2.2). */
            put_field(out, h[i].name, req->host.len ? req->host : h[i].value);
            break;
        case F_UPGRADE:
            upgrade = h[i].value;
            break;
        case F_TE:
            /* The body is forwarded in the chunked framing it arrived in. */
            PUT_LIT(out, "Transfer-Encoding: chunked\r\n");
            break;
        case F_HOP:
        case F_XFF:
        case F_XFP:
        case F_FWD:    /* passed above, or dropped */
        case F_EXPECT: /* 100-continue is answered by the proxy itself */
            break;
        }
    }
    put_edits(out, ed);
    /* We speak HTTP/1.1 upstream, where Host is mandatory (RFC 9112 §3.2). */
    if (!host_done)
        put_field(out, BW_SLICE_LIT("Host"), req->host.len ? req->host : p->default_host);
    PUT_LIT(out, "X-Forwarded-For: ");
    if (p->xff_prefix.len) {
        put_slice(out, p->xff_prefix);
        PUT_LIT(out, ", ");
    }
    put_slice(out, p->peer_text);
    PUT_LIT(out, "\r\nX-Forwarded-Proto: ");
    put_slice(out, p->proto);
    PUT_LIT(out, "\r\n");
    if (req->upgrade && upgrade.len) {
        PUT_LIT(out, "Connection: upgrade\r\nUpgrade: ");
        put_slice(out, upgrade);
        PUT_LIT(out, "\r\n");
    }
    PUT_LIT(out, "\r\n");
    return !out->overflow;
}

static void put_status(struct bw_head_out *o, uint16_t status)
{
    char s[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                 (char)('0' + status % 10), ' '};
    put(o, s, 4);
}

bool bw_build_client_response(struct bw_head_out *out, const struct bw_http_response *resp,
                              bool client_http10, bool keep_alive, bool dechunk)
{
    static const struct bw_head_edits none = {.nops = 0, .has_path = false};
    return bw_build_client_response_ed(out, resp, client_http10, keep_alive, dechunk, &none);
}

bool bw_build_client_response_ed(struct bw_head_out *out, const struct bw_http_response *resp,
                                 bool client_http10, bool keep_alive, bool dechunk,
                                 const struct bw_head_edits *ed)
{
    const struct bw_http_header *h = resp->headers;
    size_t n = resp->nheaders;
    struct conn_tokens ct;
    conn_tokens_init(&ct, h, n);
    bool upgrading = resp->status == 101 && resp->upgrade;
    /* RFC 9110 §8.6 and RFC 9112 §6.1: no Content-Length or
     * Transfer-Encoding in a 1xx or 204, which have no body; a client
     * could wait for one (nginx drops them too). */
    bool unframed = resp->status < 200 || resp->status == 204;

    PUT_LIT(out, "HTTP/1.1 ");
    put_status(out, resp->status);
    if (resp->reason.len)
        put_slice(out, resp->reason);
    else
        put(out, bw_http_status_reason(resp->status), strlen(bw_http_status_reason(resp->status)));
    PUT_LIT(out, "\r\n");

    bw_slice upgrade = BW_SLICE_EMPTY;
    for (size_t i = 0; i < n; i++) {
        switch (classify(h[i].name)) {
        case F_PASS:
        case F_XFF:
        case F_XFP:
        case F_FWD:
        case F_EXPECT:
        case F_HOST:
            if (conn_names(&ct, h, n, i))
                continue;
            if (ed->nops && edited(ed, h[i].name))
                continue;
            put_field(out, h[i].name, h[i].value);
            break;
        case F_CL:
            if (!unframed)
                put_length(out, h[i].name, resp->content_length); /* as on the request side */
            break;
        case F_TE:
            /* As received: the parser has checked that chunked is applied
             * once and last, and a coding before it (gzip) is part of what
             * the client must undo. Normalising each line to "chunked" would
             * drop that coding and repeat chunked over several lines. Never
             * to an HTTP/1.0 client (RFC 9112 §6.1), even on a response
             * without a body (HEAD, 304). */
            if (!dechunk && !unframed && !client_http10)
                put_field(out, h[i].name, h[i].value);
            break;
        case F_UPGRADE:
            upgrade = h[i].value;
            break;
        case F_HOP:
            break;
        }
    }
    put_edits(out, ed);
    if (upgrading) {
        PUT_LIT(out, "Connection: upgrade\r\nUpgrade: ");
        put_slice(out, upgrade);
        PUT_LIT(out, "\r\n");
    } else if (resp->status >= 200) {
        if (!keep_alive)
            PUT_LIT(out, "Connection: close\r\n");
        else if (client_http10)
            PUT_LIT(out, "Connection: keep-alive\r\n");
    }
    PUT_LIT(out, "\r\n");
    return !out->overflow;
}

size_t bw_build_error_response(char *buf, size_t cap, uint16_t status, bool close, bool head_only,
                               const char *extra_headers)
{
    const char *reason = bw_http_status_reason(status);
    char body[96];
    int blen = snprintf(body, sizeof body, "%u %s\n", (unsigned)status, reason);
    if (blen < 0 || (size_t)blen >= sizeof body)
        return 0;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "%s%s\r\n%s",
                     (unsigned)status, reason, blen, close ? "Connection: close\r\n" : "",
                     extra_headers ? extra_headers : "", head_only ? "" : body);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

size_t bw_build_own_response(char *buf, size_t cap, uint16_t status, bool close, bool head_only,
                             bw_slice extra_headers, bool has_body, bw_slice body)
{
    const char *reason = bw_http_status_reason(status);
    char dflt[96];
    if (!has_body) {
        int blen = snprintf(dflt, sizeof dflt, "%u %s\n", (unsigned)status, reason);
        if (blen < 0 || (size_t)blen >= sizeof dflt)
            return 0;
        body = bw_slice_make(dflt, (size_t)blen);
    }
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "%s%.*s\r\n",
                     (unsigned)status, reason, body.len, close ? "Connection: close\r\n" : "",
                     (int)extra_headers.len, extra_headers.ptr);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    if (!head_only) {
        if (cap - len < body.len)
            return 0;
        memcpy(buf + len, body.ptr, body.len);
        len += body.len;
    }
    return len;
}
