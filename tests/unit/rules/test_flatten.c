/* The flattened logic layer (src/rules/flatten.c, eval.c's bw_rules_eval)
 * against the tree walk it replaced (bw__rules_eval_tree): for a table of
 * expressions covering every kind of atom (literal groups, scan groups,
 * header any / all / has, tree nodes), not / and / or / xor nested, and
 * unknowns (absent fields, absent headers, no bot score, response fields
 * before the response), over several requests, both give the same
 * three-valued answer. Plus a few answers written out by hand, so that a bug
 * shared by both cannot hide. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "rules/eval.h"
#include "test.h"

static const struct bw_rules_srcpos at_1_1 = {
    .file = BW_SLICE_LIT("test"), .line = 1, .col = 1, .cont_col = 1};

#define T BW_TRI_TRUE
#define F BW_TRI_FALSE
#define U BW_TRI_UNKNOWN

struct req {
    struct bw_rv_header h[16];
    struct bw_rv_header rh[4];
    struct bw_request_view v;
};

static void req_init(struct req *r, const char *method, const char *target)
{
    memset(r, 0, sizeof *r);
    r->v.method = bw_slice_make(method, strlen(method));
    r->v.uri = bw_slice_make(target, strlen(target));
    const char *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    r->v.raw_path = bw_slice_make(target, plen);
    r->v.query = q ? bw_slice_make(q + 1, strlen(q + 1)) : BW_SLICE_EMPTY;
    r->v.headers.items = r->h;
    r->v.response_headers.items = r->rh;
}

static void req_header(struct req *r, const char *name, const char *value)
{
    if (r->v.headers.n >= 16)
        abort();
    r->h[r->v.headers.n++] = (struct bw_rv_header){bw_slice_make(name, strlen(name)),
                                                   bw_slice_make(value, strlen(value))};
}

static void req_src4(struct req *r, const char *addr)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->v.src.addr;
    memset(&r->v.src.addr, 0, sizeof r->v.src.addr);
    s4->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
        abort();
    r->v.src.known = true;
}

/* The requests every expression is evaluated against. */
enum { NREQ = 5 };

static void requests(struct req *r)
{
    /* 0: a browser */
    req_init(&r[0], "GET", "/Admin/index.php?q=Union+Select&x=%3Cscript");
    r[0].v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("WWW.example.com")};
    req_header(&r[0], "Host", "WWW.example.com");
    req_header(&r[0], "User-Agent", "Mozilla/5.0 SQLMap bot");
    req_header(&r[0], "Accept-Language", "fr");
    req_header(&r[0], "accept-language", "XX");
    req_header(&r[0], "Cookie", "a=1");
    req_header(&r[0], "cookie", "b=<Script>");
    req_header(&r[0], "X-Forwarded-For", "127.0.0.1");
    req_src4(&r[0], "10.1.2.3");
    r[0].v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 3};
    /* 1: almost nothing (no host, no headers, no address, no bot score) */
    req_init(&r[1], "TRACE", "/");
    /* 2: an API call over TLS */
    req_init(&r[2], "POST", "/api/v1/upload?");
    r[2].v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("api.example.com")};
    r[2].v.ssl = true;
    req_header(&r[2], "Content-Length", "0");
    req_header(&r[2], "Transfer-Encoding", "Chunked");
    req_header(&r[2], "X-Api-Key", "k");
    req_header(&r[2], "Range", "bytes=0-1");
    req_header(&r[2], "range", "bytes=2-3");
    req_src4(&r[2], "192.0.2.7");
    r[2].v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 90};
    /* 3: dot segments and escapes in the path */
    req_init(&r[3], "get", "/a/../.git/%63onfig?id=1%27%20or%201=1");
    req_header(&r[3], "user-agent", "");
    req_header(&r[3], "Referer", "https://semalt.com/x");
    req_header(&r[3], "X-HTTP-Method-Override", "trace");
    req_src4(&r[3], "203.0.113.9");
    /* 4: many values of one header */
    req_init(&r[4], "PUT", "/upload/big");
    for (int i = 0; i < 8; i++)
        req_header(&r[4], "X-Forwarded-For", i == 5 ? "127.0.0.1" : "198.51.100.1");
    req_header(&r[4], "Accept", "text/html, application/x-shockwave-flash");
}

/* Every expression of the table goes into one program (so literal groups and
 * scan groups are shared between them, as in a ruleset). */
static const char *const exprs[] = {
    /* literal groups on the path: bytes tests, sets, not, or */
    "starts_with(http.request.uri.path, \"/admin\")",
    "starts_with(lower(http.request.uri.path), \"/admin\")",
    "ends_with(http.request.uri.path, \".php\")",
    "http.request.uri.path eq \"/\"",
    "http.request.uri.path ne \"/\"",
    "http.request.uri.path contains \"git\"",
    "http.request.uri.path in {\"/\" \"/.git/config\" \"/upload/big\"}",
    "not http.request.uri.path in {\"/\"}",
    "not not ends_with(http.request.uri.path, \"/big\")",
    "http.request.uri.path eq \"/\" or starts_with(http.request.uri.path, \"/api/\")",
    /* literals around the 8 bytes a test compares as one word */
    "starts_with(http.request.uri.path, \"/upload/\")",
    "starts_with(http.request.uri.path, \"/upload/b\")",
    "starts_with(http.request.uri.path, \"/upload/bigger\")",
    "starts_with(http.request.uri.path, \"/upload/bix\")",
    "ends_with(http.request.uri.path, \"load/big\")",
    "ends_with(http.request.uri.path, \"/upload/big\")",
    "ends_with(http.request.uri.path, \"x/upload/big\")",
    "ends_with(http.request.uri.path, \"/uplaad/big\")",
    "ends_with(http.request.uri.path, \"/xpload/big\")",
    "ends_with(http.request.uri.path, \"\")",
    "http.request.uri.path eq \"/upload/big\"",
    "http.request.uri.path eq \"/upload/bi\"",
    "http.request.uri.path ne \"/upload/bix\"",
    "http.request.uri.path eq \"/.git/config\"",
    "http.request.uri.path eq \"/.git/co\"",
    "starts_with(http.request.uri.path, \"\")",
    /* unknown left sides */
    "http.host eq \"api.example.com\"",
    "lower(http.host) in {\"www.example.com\"}",
    /* lower()/upper() in a set: by length first, in the left side's group */
    "lower(http.user_agent) in {\"mozilla/5.0 sqlmap bot\" \"x\"}",
    "upper(http.request.method) in {\"GET\" \"POST\"}",
    "lower(http.request.uri.path) in {\"/admin/index.php\"}",
    "lower(http.referer) in {\"https://semalt.com/x\" \"\"}",
    "not lower(http.user_agent) in {\"\"}",
    "ends_with(http.host, \".com\") and not ssl",
    "http.user_agent contains \"bot\"",
    "lower(http.user_agent) eq \"\"",
    "not http.referer contains \"semalt\"",
    "http.cookie contains \"b=\"",
    "http.x_forwarded_for in {\"127.0.0.1\"}",
    "ip.src in {10.0.0.0/8 192.0.2.0/24}",
    "not ip.src in {203.0.113.0/24}",
    "bot.score in {1..5}",
    "bot.score lt 10",
    "bot.score ge 90",
    "bot.score eq 3 or bot.score ne 3",
    "http.request.method in {\"GET\" \"HEAD\"}",
    "not http.request.method in {\"GET\" \"HEAD\" \"POST\" \"PUT\"}",
    /* Int compares on len() */
    "len(http.request.uri.query) gt 10",
    "len(http.request.uri.query) in {0}",
    "len(http.user_agent) le 0",
    "len(http.request.headers[\"x-forwarded-for\"]) gt 5",
    "len(http.request.headers[\"range\"]) in {2..1000}",
    "len(http.request.headers[\"range\"]) eq 0",
    /* header any / all / has */
    "has(http.request.headers[\"x-api-key\"])",
    "not has(http.request.headers[\"authorization\"])",
    "has(http.request.headers[\"transfer-encoding\"]) and "
    "has(http.request.headers[\"content-length\"])",
    "any(http.request.headers[\"accept-language\"][*] in {\"xx\" \"fr\"})",
    "any(lower(http.request.headers[\"accept-language\"][*]) in {\"xx\"})",
    "all(lower(http.request.headers[\"accept-language\"][*]) in {\"xx\"})",
    "all(http.request.headers[\"x-forwarded-for\"][*] eq \"198.51.100.1\")",
    "any(http.request.headers[\"x-forwarded-for\"][*] contains \"127.0.0.1\")",
    "any(upper(http.request.headers[\"x-http-method-override\"][*]) in {\"TRACE\"})",
    "any(lower(http.request.headers[\"transfer-encoding\"][*]) eq \"chunked\")",
    "any(http.request.headers[\"accept\"][*] contains \"shockwave\")",
    "any(starts_with(http.request.headers[\"accept\"][*], \"text/\"))",
    "all(ends_with(lower(http.request.headers[\"cookie\"][*]), \">\"))",
    "any(http.request.headers[\"x-none\"][*] ne \"a\")",
    "all(http.request.headers[\"x-none\"][*] ne \"a\")",
    /* scan groups: matches and folded contains */
    "http.request.uri.query matches r\"(?i)union(\\s|\\+)+select\"",
    "http.request.uri.query matches r\"%27\"",
    "lower(url_decode(http.request.uri.query)) contains \"<script\"",
    "http.user_agent matches \"^Mozilla\" and lower(http.user_agent) contains \"sqlmap\"",
    "lower(http.user_agent) contains \"nikto\" or lower(http.user_agent) contains \"bot\"",
    "lower(http.user_agent) contains \"a\" xor lower(http.user_agent) contains \"b\"",
    "http.referer matches \"semalt\"",
    /* tree nodes */
    "any(http.request.headers[\"x-forwarded-for\"][*] matches \"^127\\.\")",
    "lower(http.request.headers[\"content-type\"][0]) in {\"text/x-shellscript\"}",
    "concat(lower(http.host), http.request.uri.path) in {\"api.example.com/api/v1/upload\"}",
    "has(http.referer)",
    "(http.request.method eq \"GET\") eq true",
    /* nested logic, unknowns on every side */
    "(http.host eq \"x\" or bot.score lt 5) and not (ssl xor http.referer contains \"s\")",
    "not (http.user_agent eq \"a\" and (http.cookie eq \"b\" or ip.src in {0.0.0.0/0}))",
    "((bot.score gt 1 xor bot.score gt 2) xor (bot.score gt 3 xor http.host eq \"a\")) or "
    "false",
    "true and (false or (true and (http.referer eq \"x\" or (not false and "
    "(http.cookie contains \"a=1\")))))",
    "http.request.method eq \"POST\" and http.request.uri.path eq \"/login\" and not "
    "has(http.referer)",
    "false xor http.host ne \"a\"",
};
#define NEXPRS (sizeof exprs / sizeof *exprs)

struct prog {
    bw_arena snap;
    bw_regex_scratch scratch;
    struct bw_rules_prog *p;
};

static bool prog_build(struct prog *g, enum bw_rules_phase phase, const char *const *texts,
                       size_t n)
{
    memset(g, 0, sizeof *g);
    bw_arena_init(&g->snap, 4096, 0);
    bw_regex_scratch_init(&g->scratch);
    const struct bw_rules_expr **ex = calloc(n, sizeof *ex);
    if (!ex)
        return false;
    for (size_t i = 0; i < n; i++) {
        struct bw_rules_expr *e;
        struct bw_rules_diag d;
        if (bw_rules_parse(&g->snap, bw_slice_make(texts[i], strlen(texts[i])), phase, &at_1_1, &e,
                           &d) != BW_OK) {
            printf("     %s: parse failed: %s\n", texts[i], d.text);
            free(ex);
            return false;
        }
        ex[i] = e;
    }
    bw_error err;
    bool ok = bw_rules_compile(&g->snap, ex, n, &g->p, &err) == BW_OK &&
              bw_rules_prog_reserve(g->p, &g->scratch, &err) == BW_OK;
    if (!ok)
        printf("     compile failed: %s\n", err.msg);
    free(ex);
    return ok;
}

static void prog_done(struct prog *g)
{
    g->p = bw_rules_prog_free(g->p);
    bw_regex_scratch_done(&g->scratch);
    bw_arena_reset(&g->snap);
}

/* Expression i of g on v: flattened (in one context for every expression, in
 * order, as a ruleset runs them; forward or backward) and by the tree (a
 * fresh context each). Fails the test on any difference. */
static void compare_all(struct prog *g, const char *const *texts, size_t n,
                        const struct bw_request_view *v, int reqno, bool backward)
{
    bw_arena ra, rb;
    bw_arena_init(&ra, 1024, 0);
    bw_arena_init(&rb, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g->p, v, &ra, &g->scratch);
    for (size_t k = 0; k < n; k++) {
        size_t i = backward ? n - 1 - k : k;
        enum bw_tri flat = bw_rules_eval(&cx, i);
        struct bw_rules_ctx tx;
        bw_rules_ctx_init(&tx, g->p, v, &rb, &g->scratch);
        enum bw_tri tree = bw__rules_eval_tree(&tx, i);
        bw_arena_clear(&rb);
        if (flat != tree)
            T_FAILF("request %d, %s: flattened %s, tree %s", reqno, texts[i], bw_tri_name(flat),
                    bw_tri_name(tree));
        /* Asked again: the same (results are kept per request). */
        if (bw_rules_eval(&cx, i) != flat)
            T_FAILF("request %d, %s: a second evaluation differs", reqno, texts[i]);
    }
    bw_arena_reset(&ra);
    bw_arena_reset(&rb);
}

TEST(flattened_equals_tree)
{
    static struct req r[NREQ];
    requests(r);
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, exprs, NEXPRS));
    for (int k = 0; k < NREQ; k++) {
        compare_all(&g, exprs, NEXPRS, &r[k].v, k, false);
        compare_all(&g, exprs, NEXPRS, &r[k].v, k, true);
    }
    prog_done(&g);
}

/* Each expression alone in a program (no shared groups): same answers. */
TEST(flattened_equals_tree_alone)
{
    static struct req r[NREQ];
    requests(r);
    for (size_t i = 0; i < NEXPRS; i++) {
        struct prog g;
        CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, &exprs[i], 1));
        for (int k = 0; k < NREQ; k++)
            compare_all(&g, &exprs[i], 1, &r[k].v, k, false);
        prog_done(&g);
    }
}

/* Response headers before there is a response: the map is unknown, so
 * any / all over it are unknown and has() is false. */
TEST(response_headers_unknown_before_response)
{
    static const char *const rexprs[] = {
        "any(http.response.headers[\"set-cookie\"][*] contains \"a\")",
        "all(lower(http.response.headers[\"x\"][*]) eq \"a\")",
        "has(http.response.headers[\"x\"])",
        "not has(http.response.headers[\"x\"])",
        "len(http.response.headers[\"x\"]) gt 0",
        "http.response.code in {500..599} or has(http.response.headers[\"x\"])",
    };
    static const enum bw_tri want[] = {U, U, F, T, U, U};
    size_t n = sizeof rexprs / sizeof *rexprs;
    struct req r;
    req_init(&r, "GET", "/");
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_RESPONSE, rexprs, n));
    compare_all(&g, rexprs, n, &r.v, 0, false);
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    for (size_t i = 0; i < n; i++)
        if (bw_rules_eval(&cx, i) != want[i])
            T_FAILF("%s: got %s", rexprs[i], bw_tri_name(bw_rules_eval(&cx, i)));
    bw_arena_reset(&ra);
    /* With a response: known. */
    r.v.has_response = true;
    r.v.response_code = 503;
    r.rh[r.v.response_headers.n++] =
        (struct bw_rv_header){BW_SLICE_LIT("Set-Cookie"), BW_SLICE_LIT("a=1")};
    compare_all(&g, rexprs, n, &r.v, 1, false);
    prog_done(&g);
}

/* In the response phase, a request header's absence rules out what needs
 * it; a response header's never does (its slot has no absence bit: before
 * the response, its map is unknown, not empty). */
TEST(response_phase_skips_only_for_request_headers)
{
    static const struct {
        const char *expr;
        bool skipped;
    } cases[] = {
        {"has(http.request.headers[\"x-a\"]) and http.response.code eq 200", true},
        {"lower(http.user_agent) contains \"bot\" or http.cookie eq \"a\"", true},
        {"any(http.response.headers[\"x-a\"][*] eq \"1\")", false},
        {"has(http.response.headers[\"x-a\"])", false},
        {"http.response.code eq 200", false},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    const char *texts[N];
    for (size_t i = 0; i < N; i++)
        texts[i] = cases[i].expr;
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_RESPONSE, texts, N));
    struct req r;
    req_init(&r, "GET", "/");
    r.v.has_response = true;
    r.v.response_code = 200;
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    for (size_t i = 0; i < N; i++)
        if (bw__rules_skipped(&cx, i) != cases[i].skipped)
            T_FAILF("%s: skipped %d, want %d", cases[i].expr, !cases[i].skipped, cases[i].skipped);
    bw_arena_reset(&ra);
    prog_done(&g);
}

/* Answers written out, for the atom kinds the flattening introduced. */
TEST(hand_checked_answers)
{
    static struct req r[NREQ];
    requests(r);
    static const struct {
        const char *text;
        enum bw_tri want[NREQ];
    } cases[] = {
        {"any(lower(http.request.headers[\"accept-language\"][*]) in {\"xx\"})", {T, F, F, F, F}},
        {"all(lower(http.request.headers[\"accept-language\"][*]) in {\"xx\"})", {F, T, T, T, T}},
        {"any(http.request.headers[\"x-forwarded-for\"][*] contains \"127.0.0.1\")",
         {T, F, F, F, T}},
        {"all(http.request.headers[\"x-forwarded-for\"][*] eq \"198.51.100.1\")", {F, T, T, T, F}},
        {"any(upper(http.request.headers[\"x-http-method-override\"][*]) in {\"TRACE\"})",
         {F, F, F, T, F}},
        {"has(http.request.headers[\"transfer-encoding\"]) and "
         "has(http.request.headers[\"content-length\"])",
         {F, F, T, F, F}},
        {"len(http.request.headers[\"x-forwarded-for\"]) gt 5", {F, F, F, F, T}},
        {"len(http.request.headers[\"range\"]) in {2..1000}", {F, F, T, F, F}},
        {"len(http.user_agent) le 0", {F, U, U, T, U}},
        {"bot.score lt 10", {T, U, F, U, U}},
        {"bot.score eq 3 or bot.score ne 3", {T, U, T, U, U}},
        {"not http.referer contains \"semalt\"", {U, U, U, F, U}},
        {"http.host eq \"api.example.com\"", {F, U, T, U, U}},
        {"false xor http.host ne \"a\"", {T, U, T, U, U}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct prog g;
        CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, &cases[c].text, 1));
        for (int k = 0; k < NREQ; k++) {
            bw_arena ra;
            bw_arena_init(&ra, 1024, 0);
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, g.p, &r[k].v, &ra, &g.scratch);
            enum bw_tri t = bw_rules_eval(&cx, 0);
            if (t != cases[c].want[k])
                T_FAILF("request %d, %s: got %s, want %s", k, cases[c].text, bw_tri_name(t),
                        bw_tri_name(cases[c].want[k]));
            bw_arena_reset(&ra);
        }
        prog_done(&g);
    }
}

/* Logic nesting as deep as the parser allows: the flattened form and the
 * tree agree, and a deep chain of and / or short-circuits correctly. */
TEST(deep_nesting)
{
    char text[4096];
    size_t o = 0;
    for (int d = 0; d < 30; d++)
        o += (size_t)snprintf(text + o, sizeof text - o, "(%s bot.score gt %d %s ",
                              d % 3 == 0 ? "not" : "", d, d % 2 ? "or" : "and");
    o += (size_t)snprintf(text + o, sizeof text - o, "http.host eq \"a\"");
    for (int d = 0; d < 30; d++)
        o += (size_t)snprintf(text + o, sizeof text - o, ")");
    const char *one[] = {text};
    static struct req r[NREQ];
    requests(r);
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, one, 1));
    for (int k = 0; k < NREQ; k++)
        compare_all(&g, one, 1, &r[k].v, k, false);
    prog_done(&g);
}

/* More literal tests than fit in the context: they go to the arena, and
 * when the arena refuses, each is computed alone: same answers, never a
 * wrong known value. */
TEST(many_atoms)
{
    enum { N = BW__ATOMS_INLINE + 40 };
    static char texts[N][64];
    static const char *ptrs[N];
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "%s(http.request.uri.path, \"/%c%d\")",
                 i % 2 ? "starts_with" : "ends_with", 'a' + i % 26, i % 7);
        ptrs[i] = texts[i];
    }
    struct req r;
    req_init(&r, "GET", "/b1/x/c2");
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, ptrs, N));
    compare_all(&g, ptrs, N, &r.v, 0, false);
    for (size_t cap = 64; cap <= 4096; cap *= 2) {
        bw_arena ra;
        bw_arena_init(&ra, 64, cap);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
        for (int i = 0; i < N; i++) {
            enum bw_tri t = bw_rules_eval(&cx, (size_t)i);
            struct bw_rules_ctx tx;
            bw_arena rb;
            bw_arena_init(&rb, 1024, 0);
            bw_rules_ctx_init(&tx, g.p, &r.v, &rb, &g.scratch);
            enum bw_tri want = bw__rules_eval_tree(&tx, (size_t)i);
            bw_arena_reset(&rb);
            if (t != want && t != U)
                T_FAILF("cap %zu, %s: %s, tree %s", cap, ptrs[i], bw_tri_name(t),
                        bw_tri_name(want));
        }
        bw_arena_reset(&ra);
    }
    prog_done(&g);
}

/* A scan group of more than eight patterns (its results are spread eight
 * at a time): each pattern's atom against the tree, with matches at every
 * position of the bitset's bytes. */
TEST(many_patterns_one_scan)
{
    enum { N = 21 };
    static char texts[N][80];
    static const char *ptrs[N];
    for (int i = 0; i < N; i++) {
        if (i % 3)
            snprintf(texts[i], sizeof texts[i], "http.request.uri.query contains \"k%02d\"", i);
        else
            snprintf(texts[i], sizeof texts[i], "http.request.uri.query matches r\"k%02d(&|$)\"",
                     i);
        ptrs[i] = texts[i];
    }
    static const char *const targets[] = {"/?k00&k07&k08&k15&k16&k20", "/?k01&k02&k03&k04",
                                          "/?k05&k06&k09&k10&k11&k12&k13&k14&k17&k18&k19", "/?none",
                                          "/"};
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, ptrs, N));
    CHECK_INT_EQ(bw_rules_prog_scan_groups(g.p), 1);
    for (int k = 0; k < 5; k++) {
        struct req r;
        req_init(&r, "GET", targets[k]);
        compare_all(&g, ptrs, N, &r.v, k, false);
        bw_arena ra;
        bw_arena_init(&ra, 1024, 0);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
        for (int i = 0; i < N; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%02d", i);
            enum bw_tri want = strstr(targets[k], key) ? T : F;
            if (bw_rules_eval(&cx, (size_t)i) != want)
                T_FAILF("%s on %s: want %s", ptrs[i], targets[k], bw_tri_name(want));
        }
        bw_arena_reset(&ra);
    }
    prog_done(&g);
}

/* bw_rules_eval_first_true over the stretches between skipped expressions
 * (skip[i]: as a disabled or killed rule; NULL: none), called again after
 * each TRUE as a ruleset run does, against bw_rules_eval on each expression
 * in order in another context: the same TRUE expressions, and no more
 * evaluation work (scans, extractions, arena failures), so that nothing is
 * evaluated that the rule-by-rule run would not have evaluated. Less work
 * is first_true passing over what cannot be true (eval_internal.h, struct
 * bw__skip). arena_cap 0: no cap. */
static void compare_first_true(struct prog *g, size_t n, const bool *skip,
                               const struct bw_request_view *v, int reqno, size_t arena_cap)
{
    bw_arena ra, rb;
    bw_arena_init(&ra, 64, arena_cap);
    bw_arena_init(&rb, 64, arena_cap);
    struct bw_rules_ctx each, bulk;
    bw_rules_ctx_init(&each, g->p, v, &ra, &g->scratch);
    bw_rules_ctx_init(&bulk, g->p, v, &rb, &g->scratch);
    size_t want[512], got[512], nwant = 0, ngot = 0;
    for (size_t i = 0; i < n; i++)
        if (!(skip && skip[i]) && bw_rules_eval(&each, i) == BW_TRI_TRUE && nwant < 512)
            want[nwant++] = i;
    size_t i = 0;
    while (i < n) {
        if (skip && skip[i]) {
            i++;
            continue;
        }
        size_t stop = i;
        while (stop < n && !(skip && skip[stop]))
            stop++;
        size_t hit = bw_rules_eval_first_true(&bulk, i, stop);
        if (hit > stop) {
            T_FAILF("request %d: first_true(%zu, %zu) = %zu", reqno, i, stop, hit);
            break;
        }
        if (hit == stop) {
            i = stop;
            continue;
        }
        if (ngot < 512)
            got[ngot++] = hit;
        i = hit + 1;
    }
    if (nwant != ngot || memcmp(want, got, nwant * sizeof *want) != 0)
        T_FAILF("request %d, cap %zu: %zu TRUE one by one, %zu by first_true (first %zu / %zu)",
                reqno, arena_cap, nwant, ngot, nwant ? want[0] : n, ngot ? got[0] : n);
    if (bulk.stats.regex_scans > each.stats.regex_scans ||
        bulk.stats.extractions > each.stats.extractions ||
        bulk.stats.arena_failures > each.stats.arena_failures)
        T_FAILF("request %d, cap %zu: more work: scans %llu / %llu, extractions %llu / %llu, "
                "arena failures %llu / %llu",
                reqno, arena_cap, (unsigned long long)each.stats.regex_scans,
                (unsigned long long)bulk.stats.regex_scans,
                (unsigned long long)each.stats.extractions,
                (unsigned long long)bulk.stats.extractions,
                (unsigned long long)each.stats.arena_failures,
                (unsigned long long)bulk.stats.arena_failures);
    /* Past the end, and empty ranges: nothing. */
    if (bw_rules_eval_first_true(&bulk, n, n + 5) != n ||
        bw_rules_eval_first_true(&bulk, 3, 3) != 3 || bw_rules_eval_first_true(&bulk, 5, 2) != 2)
        T_FAILF("request %d: empty or out-of-range first_true found something", reqno);
    bw_arena_reset(&ra);
    bw_arena_reset(&rb);
}

TEST(first_true_equals_one_by_one)
{
    static struct req r[NREQ];
    requests(r);
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, exprs, NEXPRS));
    static bool skip[3][NEXPRS];
    for (size_t i = 0; i < NEXPRS; i++) {
        skip[0][i] = false;
        skip[1][i] = i % 3 == 1;
        skip[2][i] = (i * 2654435761u >> 7) % 5 < 2;
    }
    static const size_t caps[] = {0, 64, 256, 1024, 4096};
    for (int k = 0; k < NREQ; k++)
        for (size_t m = 0; m < 3; m++)
            for (size_t c = 0; c < sizeof caps / sizeof *caps; c++)
                compare_first_true(&g, NEXPRS, m ? skip[m] : NULL, &r[k].v, k, caps[c]);
    prog_done(&g);
    /* More atoms than the context holds (results in the arena, or none). */
    enum { N = BW__ATOMS_INLINE + 40 };
    static char texts[N][64];
    static const char *ptrs[N];
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "%s(http.request.uri.path, \"/%c%d\")",
                 i % 2 ? "starts_with" : "ends_with", 'a' + i % 26, i % 7);
        ptrs[i] = texts[i];
    }
    struct req big;
    req_init(&big, "GET", "/b1/x/c2");
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, ptrs, N));
    for (size_t c = 0; c < sizeof caps / sizeof *caps; c++)
        compare_first_true(&g, N, NULL, &big.v, 0, caps[c]);
    prog_done(&g);
}

/* What an absent value rules out (eval_internal.h, struct bw__skip): on a
 * request without User-Agent, Referer, Cookie, X-Forwarded-For, Host,
 * bot score or any of the headers named below, the expressions that cannot
 * be TRUE are passed over, and those that can (`not has(...)`, `all()` of
 * no values, `len()` of none) are not. */
TEST(absent_values_skip_what_cannot_be_true)
{
    static const struct {
        const char *expr;
        bool skipped;
    } cases[] = {
        {"lower(http.user_agent) contains \"sqlmap\"", true},
        {"http.user_agent matches \"(?i)nikto\"", true},
        {"len(http.user_agent) gt 512", true},
        {"not lower(http.user_agent) contains \"bot\"", true}, /* not unknown */
        {"http.referer eq \"a\" and http.request.uri.path eq \"/\"", true},
        {"http.request.uri.path eq \"/\" and http.cookie contains \"x\"", true},
        {"concat(http.host, http.request.uri.path) in {\"a/\"}", true},
        {"bot.score lt 10", true},
        {"has(http.request.headers[\"x-a\"]) or has(http.request.headers[\"x-b\"])", true},
        {"has(http.request.headers[\"x-a\"]) and ip.src in {10.0.0.0/8}", true},
        {"any(lower(http.request.headers[\"x-a\"][*]) in {\"h2c\"})", true},
        {"http.request.headers[\"x-a\"][0] eq \"1\"", true},
        {"not all(http.request.headers[\"x-a\"][*] eq \"1\")", true},
        {"http.x_forwarded_for eq \"a\" or http.referer eq \"b\"", true},
        {"not has(http.user_agent)", false},
        {"not has(http.request.headers[\"x-a\"])", false},
        {"all(http.request.headers[\"x-a\"][*] eq \"1\")", false},
        {"len(http.request.headers[\"x-a\"]) eq 0", false},
        {"has(http.request.headers[\"x-a\"]) or ip.src in {10.0.0.0/8}", false},
        {"http.user_agent eq \"a\" or http.request.uri.path eq \"/\"", false},
        {"http.user_agent eq \"a\" xor true", false},
        {"http.request.uri.path eq \"/\"", false},
        {"not http.user_agent eq \"a\" or true", false},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    const char *texts[N];
    for (size_t i = 0; i < N; i++)
        texts[i] = cases[i].expr;
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, texts, N));
    struct req bare, full;
    req_init(&bare, "GET", "/");
    req_src4(&bare, "10.1.2.3");
    req_init(&full, "GET", "/");
    req_src4(&full, "10.1.2.3");
    full.v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("a")};
    full.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 50};
    static const char *const names[] = {"User-Agent",      "Referer", "Cookie",
                                        "X-Forwarded-For", "X-A",     "X-B"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        req_header(&full, names[i], "1");
    for (int r = 0; r < 2; r++) {
        const struct req *q = r ? &full : &bare;
        bw_arena ra;
        bw_arena_init(&ra, 1024, 0);
        struct bw_rules_ctx cx, tx;
        bw_rules_ctx_init(&cx, g.p, &q->v, &ra, &g.scratch);
        bw_rules_ctx_init(&tx, g.p, &q->v, &ra, &g.scratch);
        for (size_t i = 0; i < N; i++) {
            bool want = r == 0 && cases[i].skipped; /* nothing is absent from full */
            if (bw__rules_skipped(&cx, i) != want)
                T_FAILF("%s request: %s: skipped %d, want %d", r ? "full" : "bare", cases[i].expr,
                        !want, want);
            if (want && bw__rules_eval_tree(&tx, i) == BW_TRI_TRUE)
                T_FAILF("bare request: %s is skipped but TRUE", cases[i].expr);
        }
        bw_arena_reset(&ra);
    }
    /* Passed over means not evaluated: no User-Agent scan at all. */
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &bare.v, &ra, &g.scratch);
    CHECK_INT_EQ(bw_rules_eval_first_true(&cx, 0, 2), 2);
    CHECK_INT_EQ(cx.stats.regex_scans, 0);
    bw_arena_reset(&ra);
    prog_done(&g);
}

/* Whatever the request, an expression passed over is not TRUE: every
 * expression of the table on every request. */
TEST(skipped_expressions_are_never_true)
{
    static struct req r[NREQ];
    requests(r);
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, exprs, NEXPRS));
    size_t nskipped = 0;
    for (int k = 0; k < NREQ; k++) {
        bw_arena ra;
        bw_arena_init(&ra, 1024, 0);
        struct bw_rules_ctx cx, tx;
        bw_rules_ctx_init(&cx, g.p, &r[k].v, &ra, &g.scratch);
        bw_rules_ctx_init(&tx, g.p, &r[k].v, &ra, &g.scratch);
        for (size_t i = 0; i < NEXPRS; i++) {
            if (!bw__rules_skipped(&cx, i))
                continue;
            nskipped++;
            if (bw__rules_eval_tree(&tx, i) == BW_TRI_TRUE)
                T_FAILF("request %d: %s is skipped but TRUE", k, exprs[i]);
        }
        bw_arena_reset(&ra);
    }
    CHECK(nskipped > 20); /* the table's requests lack many headers */
    prog_done(&g);
}

/* A literal group's byte filters (eval_internal.h, struct bw__lit_filter)
 * over runs of eq, starts_with and ends_with tests, literals of every
 * length from 0 (always run) up, against the tree, on values built from
 * the literals' own bytes (so that filters let some through) and their
 * prefixes and suffixes. */
TEST(byte_filters_equal_the_tests)
{
    static const char *const ks[] = {"",    "/",      "/a", "/ab",   "/abc", "/b",
                                     "/ba", "/abcd",  "x",  "ab",    "/a/b", "/abcde",
                                     "/zz", "/a/bcd", "b/", "/ab/c", "c",    "/c/a"};
    enum { NK = sizeof ks / sizeof *ks, N = 3 * NK };
    static char texts_buf[N][96];
    const char *texts[N];
    for (size_t i = 0; i < NK; i++) {
        snprintf(texts_buf[i], sizeof texts_buf[i], "starts_with(http.request.uri.path, \"%s\")",
                 ks[i]);
        snprintf(texts_buf[NK + i], sizeof texts_buf[NK + i],
                 "ends_with(http.request.uri.path, \"%s\")", ks[i]);
        snprintf(texts_buf[2 * NK + i], sizeof texts_buf[2 * NK + i],
                 "http.request.uri.path eq \"%s\"", ks[i]);
    }
    for (size_t i = 0; i < N; i++)
        texts[i] = texts_buf[i];
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, texts, N));
    static const char alpha[] = "/abcxz";
    char path[16];
    size_t ntrue = 0;
    for (int t = 0; t < 4000; t++) {
        size_t n = (size_t)(rand() % 9);
        for (size_t i = 0; i < n; i++)
            path[i] = alpha[rand() % (sizeof alpha - 1)];
        path[n] = '\0';
        if (t % 3 == 0 && n > 0)
            path[0] = '/'; /* paths start with '/' */
        struct req r;
        req_init(&r, "GET", path);
        bw_arena ra, rb;
        bw_arena_init(&ra, 1024, 0);
        bw_arena_init(&rb, 1024, 0);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
        for (size_t i = 0; i < N; i++) {
            enum bw_tri flat = bw_rules_eval(&cx, i);
            struct bw_rules_ctx tx;
            bw_rules_ctx_init(&tx, g.p, &r.v, &rb, &g.scratch);
            enum bw_tri tree = bw__rules_eval_tree(&tx, i);
            bw_arena_clear(&rb);
            ntrue += flat == T;
            if (flat != tree) {
                T_FAILF("path \"%s\", %s: flattened %s, tree %s", path, texts[i], bw_tri_name(flat),
                        bw_tri_name(tree));
                t = 4000;
                break;
            }
        }
        bw_arena_reset(&ra);
        bw_arena_reset(&rb);
    }
    CHECK(ntrue > 2000); /* the values did match some literals */
    prog_done(&g);
}

int main(void)
{
    RUN(flattened_equals_tree);
    RUN(flattened_equals_tree_alone);
    RUN(response_headers_unknown_before_response);
    RUN(hand_checked_answers);
    RUN(deep_nesting);
    RUN(many_atoms);
    RUN(many_patterns_one_scan);
    RUN(first_true_equals_one_by_one);
    RUN(absent_values_skip_what_cannot_be_true);
    RUN(skipped_expressions_are_never_true);
    RUN(response_phase_skips_only_for_request_headers);
    RUN(byte_filters_equal_the_tests);
    return t_done();
}
