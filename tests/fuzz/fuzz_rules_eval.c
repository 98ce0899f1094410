/* Fuzzes the rules pipeline from expression text through compile and
 * evaluation. Input: the expression, a NUL byte, then the request: one flag
 * byte, then lines "method", "target", and "name: value" headers.
 * Invariants:
 *   - a parsed expression compiles, or fails only on a regex the engine
 *     refuses (the checker does not call bw_regex_check yet);
 *   - evaluation gives true, false or unknown, and the same again when
 *     repeated in the same context with an unbounded arena (with a capped
 *     one the repeat may be unknown: computed values take arena again);
 *   - with a small per-request arena the result is the unbounded result or
 *     unknown, never a different known value (exhaustion is fail-safe:
 *     three-valued logic is monotone in "knowing more");
 *   - the flattened form bw_rules_eval runs gives what the tree walk
 *     (bw__rules_eval_tree) gives, with an unbounded arena, and
 *     bw_rules_eval_first_true finds the expression exactly when it is
 *     TRUE; an expression it would pass over for an absent value
 *     (bw__rules_skipped) is not TRUE. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/eval.h"

enum { MAX_HEADERS = 16 };

static const struct bw_rules_srcpos where = {
    .file = BW_SLICE_LIT("f.yaml"), .line = 1, .col = 1, .cont_col = 1};

static bw_slice next_line(bw_slice *rest)
{
    const char *nl = memchr(rest->ptr, '\n', rest->len);
    size_t n = nl ? (size_t)(nl - rest->ptr) : rest->len;
    bw_slice line = bw_slice_make(rest->ptr, n);
    size_t skip = nl ? n + 1 : n;
    rest->ptr += skip;
    rest->len -= skip;
    return line;
}

static void build_view(bw_slice in, struct bw_request_view *v, struct bw_rv_header *h)
{
    memset(v, 0, sizeof *v);
    uint8_t flags = in.len ? (uint8_t)in.ptr[0] : 0;
    if (in.len) {
        in.ptr++;
        in.len--;
    }
    v->method = next_line(&in);
    v->uri = next_line(&in);
    const char *q = memchr(v->uri.ptr, '?', v->uri.len);
    size_t plen = q ? (size_t)(q - v->uri.ptr) : v->uri.len;
    v->raw_path = bw_slice_make(v->uri.ptr, plen);
    v->query = q ? bw_slice_make(q + 1, v->uri.len - plen - 1) : BW_SLICE_EMPTY;
    v->headers.items = h;
    while (in.len && v->headers.n < MAX_HEADERS) {
        bw_slice line = next_line(&in);
        const char *colon = memchr(line.ptr, ':', line.len);
        size_t nl = colon ? (size_t)(colon - line.ptr) : line.len;
        bw_slice value = colon ? bw_slice_make(colon + 1, line.len - nl - 1) : BW_SLICE_EMPTY;
        h[v->headers.n++] =
            (struct bw_rv_header){bw_slice_make(line.ptr, nl), bw_slice_trim_ows(value)};
    }
    v->host = (struct bw_rv_opt_bytes){.known = flags & 1, .value = BW_SLICE_LIT("a.example")};
    v->ssl = flags & 2;
    v->bot_score = (struct bw_rv_opt_int){.known = flags & 4, .value = (flags >> 5) * 14 + 1};
    v->src.known = flags & 8;
    if (flags & 16) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&v->src.addr;
        s6->sin6_family = AF_INET6;
        (void)inet_pton(AF_INET6, (flags & 32) ? "::ffff:10.1.2.3" : "2001:db8::1", &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&v->src.addr;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(0x0a010203);
    }
    v->has_response = flags & 64;
    v->response_code = 404;
    v->response_headers = v->headers;
}

static enum bw_tri run(const struct bw_rules_prog *p, const struct bw_request_view *v,
                       bw_regex_scratch *s, size_t cap)
{
    bw_arena ra;
    bw_arena_init(&ra, 512, cap);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, p, v, &ra, s);
    enum bw_tri t = bw_rules_eval(&cx, 0);
    if (t != BW_TRI_FALSE && t != BW_TRI_TRUE && t != BW_TRI_UNKNOWN)
        abort();
    /* Fields are cached, but computed values (lower(), concat()) are
     * recomputed and take arena again: with a cap the repeat may be unknown. */
    enum bw_tri again = bw_rules_eval(&cx, 0);
    if (again != t && !(cap && again == BW_TRI_UNKNOWN))
        abort();
    bw_arena_reset(&ra);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, 0, size);
    size_t elen = nul ? (size_t)(nul - (const char *)data) : size;
    if (elen > BW_RULES_MAX_EXPR_LEN)
        return 0;
    char *text = malloc(elen ? elen : 1);
    if (!text)
        return 0;
    memcpy(text, data, elen);
    bw_slice req = nul ? bw_slice_make(nul + 1, size - elen - 1) : BW_SLICE_EMPTY;
    struct bw_request_view v;
    struct bw_rv_header h[MAX_HEADERS];
    build_view(req, &v, h);

    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++) {
        bw_arena snap;
        bw_arena_init(&snap, 4096, 0);
        struct bw_rules_expr *e;
        struct bw_rules_diag d;
        if (bw_rules_parse(&snap, bw_slice_make(text, elen), (enum bw_rules_phase)ph, &where, &e,
                           &d) != BW_OK) {
            bw_arena_reset(&snap);
            continue;
        }
        const struct bw_rules_expr *exprs[1] = {e};
        struct bw_rules_prog *p;
        bw_error err;
        if (bw_rules_compile(&snap, exprs, 1, &p, &err) != BW_OK) {
            /* Only a regex the engine refuses may fail here: the checker
             * does not vet patterns yet (reported). */
            if (err.msg[0] == '\0' || !strstr(err.msg, "regex"))
                abort();
            bw_arena_reset(&snap);
            continue;
        }
        bw_regex_scratch s;
        bw_regex_scratch_init(&s);
        if (bw_rules_prog_reserve(p, &s, &err) != BW_OK)
            abort();
        enum bw_tri full = run(p, &v, &s, 0);
        {
            bw_arena ra;
            bw_arena_init(&ra, 512, 0);
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, p, &v, &ra, &s);
            if (bw__rules_eval_tree(&cx, 0) != full)
                abort();
            bw_arena_reset(&ra);
            /* The ruleset path: a stretch of one expression, up to the
             * first TRUE. */
            bw_rules_ctx_init(&cx, p, &v, &ra, &s);
            if (bw_rules_eval_first_true(&cx, 0, 1) != (full == BW_TRI_TRUE ? 0u : 1u))
                abort();
            /* What first_true passes over for an absent value is never TRUE. */
            if (bw__rules_skipped(&cx, 0) && full == BW_TRI_TRUE)
                abort();
            bw_arena_reset(&ra);
        }
        static const size_t caps[] = {1, 600, 2048};
        for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
            enum bw_tri t = run(p, &v, &s, caps[i]);
            if (t != full && t != BW_TRI_UNKNOWN)
                abort();
        }
        bw_regex_scratch_done(&s);
        p = bw_rules_prog_free(p);
        bw_arena_reset(&snap);
    }
    free(text);
    return 0;
}
