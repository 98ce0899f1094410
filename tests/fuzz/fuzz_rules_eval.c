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
 *     (bw__rules_skipped) is not TRUE;
 *   - the expression text may hold up to MAX_EXPRS expressions separated by
 *     a 0x01 byte: compiled into one program they share atoms, calls, header
 *     slots and scan groups, and each must still give what it gives in a
 *     program of its own, evaluated in order, in reverse order and by
 *     bw_rules_eval_first_true over the whole program (the first TRUE). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/eval.h"

enum { MAX_HEADERS = 16, MAX_EXPRS = 4 };

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

/* Expression text alone in a program of its own: the single-expression
 * invariants. Returns false when it does not parse or compile (then *e is
 * not set), else sets *e and *full. */
static bool one(bw_arena *snap, bw_slice text, enum bw_rules_phase ph,
                const struct bw_request_view *v, struct bw_rules_expr **e, enum bw_tri *full_out)
{
    struct bw_rules_diag d;
    if (bw_rules_parse(snap, text, ph, &where, e, &d) != BW_OK)
        return false;
    const struct bw_rules_expr *exprs[1] = {*e};
    struct bw_rules_prog *p;
    bw_error err;
    if (bw_rules_compile(snap, exprs, 1, &p, &err) != BW_OK) {
        /* Only a regex the engine refuses may fail here: the checker
         * does not vet patterns yet (reported). */
        if (err.msg[0] == '\0' || !strstr(err.msg, "regex"))
            abort();
        return false;
    }
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    if (bw_rules_prog_reserve(p, &s, &err) != BW_OK)
        abort();
    enum bw_tri full = run(p, v, &s, 0);
    {
        bw_arena ra;
        bw_arena_init(&ra, 512, 0);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, p, v, &ra, &s);
        if (bw__rules_eval_tree(&cx, 0) != full)
            abort();
        bw_arena_reset(&ra);
        /* The ruleset path: a stretch of one expression, up to the
         * first TRUE. */
        bw_rules_ctx_init(&cx, p, v, &ra, &s);
        if (bw_rules_eval_first_true(&cx, 0, 1) != (full == BW_TRI_TRUE ? 0u : 1u))
            abort();
        /* What first_true passes over for an absent value is never TRUE. */
        if (bw__rules_skipped(&cx, 0) && full == BW_TRI_TRUE)
            abort();
        bw_arena_reset(&ra);
    }
    static const size_t caps[] = {1, 600, 2048};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
        enum bw_tri t = run(p, v, &s, caps[i]);
        if (t != full && t != BW_TRI_UNKNOWN)
            abort();
    }
    bw_regex_scratch_done(&s);
    p = bw_rules_prog_free(p);
    *full_out = full;
    return true;
}

/* The expressions that compiled alone, compiled together: each gives its
 * own value, whatever the order they are asked in. */
static void together(bw_arena *snap, const struct bw_rules_expr *const *exprs,
                     const enum bw_tri *full, size_t n, const struct bw_request_view *v)
{
    struct bw_rules_prog *p;
    bw_error err;
    if (bw_rules_compile(snap, exprs, n, &p, &err) != BW_OK) {
        /* Each compiled alone; together only a regex database (patterns
         * the engine refuses only in company) may fail. */
        if (err.msg[0] == '\0' || !strstr(err.msg, "regex"))
            abort();
        return;
    }
    if (bw_rules_prog_count(p) != n)
        abort();
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    if (bw_rules_prog_reserve(p, &s, &err) != BW_OK)
        abort();
    bw_arena ra;
    bw_arena_init(&ra, 512, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, p, v, &ra, &s);
    size_t first = n;
    for (size_t i = 0; i < n; i++) {
        if (bw_rules_eval(&cx, i) != full[i] || bw__rules_eval_tree(&cx, i) != full[i])
            abort();
        if (first == n && full[i] == BW_TRI_TRUE)
            first = i;
    }
    bw_arena_reset(&ra);
    bw_rules_ctx_init(&cx, p, v, &ra, &s);
    for (size_t i = n; i-- > 0;)
        if (bw_rules_eval(&cx, i) != full[i])
            abort();
    bw_arena_reset(&ra);
    bw_rules_ctx_init(&cx, p, v, &ra, &s);
    if (bw_rules_eval_first_true(&cx, 0, n) != first)
        abort();
    for (size_t i = 0; i < n; i++)
        if (bw__rules_skipped(&cx, i) && full[i] == BW_TRI_TRUE)
            abort();
    /* from the middle: the first TRUE at or after 1 */
    if (n > 1) {
        size_t first1 = n;
        for (size_t i = 1; i < n && first1 == n; i++)
            if (full[i] == BW_TRI_TRUE)
                first1 = i;
        bw_arena_reset(&ra);
        bw_rules_ctx_init(&cx, p, v, &ra, &s);
        if (bw_rules_eval_first_true(&cx, 1, n) != first1)
            abort();
    }
    bw_arena_reset(&ra);
    bw_regex_scratch_done(&s);
    p = bw_rules_prog_free(p);
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

    /* The expressions: text split at 0x01 bytes. */
    bw_slice parts[MAX_EXPRS];
    size_t nparts = 0;
    bw_slice rest = bw_slice_make(text, elen);
    for (;;) {
        const char *sep = nparts + 1 < MAX_EXPRS ? memchr(rest.ptr, 1, rest.len) : NULL;
        size_t n = sep ? (size_t)(sep - rest.ptr) : rest.len;
        parts[nparts++] = bw_slice_make(rest.ptr, n);
        if (!sep)
            break;
        rest.ptr += n + 1;
        rest.len -= n + 1;
    }

    for (int ph = 0; ph < BW_RULES_PHASE__COUNT; ph++) {
        bw_arena snap;
        bw_arena_init(&snap, 4096, 0);
        const struct bw_rules_expr *ok[MAX_EXPRS];
        enum bw_tri full[MAX_EXPRS];
        size_t nok = 0;
        for (size_t i = 0; i < nparts; i++) {
            struct bw_rules_expr *e;
            if (one(&snap, parts[i], (enum bw_rules_phase)ph, &v, &e, &full[nok]))
                ok[nok++] = e;
        }
        if (nok > 1)
            together(&snap, ok, full, nok, &v);
        bw_arena_reset(&snap);
    }
    free(text);
    return 0;
}
