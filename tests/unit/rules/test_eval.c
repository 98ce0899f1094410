/* The rules compiler and evaluator, driven through the real front end: each
 * expression is parsed and checked with bw_rules_parse, compiled, and
 * evaluated against a hand-built request view. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "http/uri.h"
#include "rules/eval.h"
#include "test.h"

static const struct bw_rules_srcpos at_1_1 = {
    .file = BW_SLICE_LIT("test"), .line = 1, .col = 1, .cont_col = 1};

/* ---- request fixture -------------------------------------------------------- */

struct req {
    struct bw_rv_header h[32];
    struct bw_rv_header rh[8];
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
    r->v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("a.example")};
    r->v.headers.items = r->h;
    r->v.response_headers.items = r->rh;
}

static void req_header(struct req *r, const char *name, const char *value)
{
    if (r->v.headers.n >= 32)
        abort();
    r->h[r->v.headers.n++] = (struct bw_rv_header){bw_slice_make(name, strlen(name)),
                                                   bw_slice_make(value, strlen(value))};
}

static void req_src(struct req *r, const char *addr)
{
    r->v.src.known = true;
    memset(&r->v.src.addr, 0, sizeof r->v.src.addr);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->v.src.addr;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
            abort();
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&r->v.src.addr;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
            abort();
    }
}

/* ---- evaluation helpers ---------------------------------------------------- */

/* A compiled program over a NULL-terminated list of expressions. */
struct prog {
    bw_arena snap;
    bw_regex_scratch scratch;
    struct bw_rules_prog *p;
    bool ok;
};

static bool prog_build(struct prog *g, enum bw_rules_phase phase, const char *const *texts)
{
    memset(g, 0, sizeof *g);
    bw_arena_init(&g->snap, 4096, 0);
    bw_regex_scratch_init(&g->scratch);
    const struct bw_rules_expr *exprs[16];
    size_t n = 0;
    for (; texts[n]; n++) {
        struct bw_rules_expr *e;
        struct bw_rules_diag d;
        if (n >= 16 || bw_rules_parse(&g->snap, bw_slice_make(texts[n], strlen(texts[n])), phase,
                                      &at_1_1, &e, &d) != BW_OK) {
            printf("     parse failed: %s\n", n >= 16 ? "too many" : d.text);
            return false;
        }
        exprs[n] = e;
    }
    bw_error err;
    if (bw_rules_compile(&g->snap, exprs, n, &g->p, &err) != BW_OK) {
        printf("     compile failed: %s\n", err.msg);
        return false;
    }
    if (bw_rules_prog_reserve(g->p, &g->scratch, &err) != BW_OK) {
        printf("     reserve failed: %s\n", err.msg);
        return false;
    }
    g->ok = true;
    return true;
}

static void prog_done(struct prog *g)
{
    g->p = bw_rules_prog_free(g->p);
    bw_regex_scratch_done(&g->scratch);
    bw_arena_reset(&g->snap);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Evaluates one expression of the given phase against v, with a request
 * arena of cap bytes (0: unbounded). BW_TRI__COUNT when it does not build. */
static enum bw_tri ev_cap(enum bw_rules_phase phase, const char *text,
                          const struct bw_request_view *v, size_t cap)
{
    struct prog g;
    if (!prog_build(&g, phase, LIST(text))) {
        prog_done(&g);
        return BW_TRI__COUNT;
    }
    bw_arena ra;
    bw_arena_init(&ra, 1024, cap);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, v, &ra, &g.scratch);
    enum bw_tri t = bw_rules_eval(&cx, 0);
    bw_arena_reset(&ra);
    prog_done(&g);
    return t;
}

static enum bw_tri ev(const char *text, const struct bw_request_view *v)
{
    return ev_cap(BW_RULES_PHASE_REQUEST, text, v, 0);
}

#define CHECK_TRI(text, view, want)                                                                \
    do {                                                                                           \
        enum bw_tri t_got = ev((text), (view));                                                    \
        if (t_got != (want)) {                                                                     \
            T_FAILF("%s: got %s, want %s", (text),                                                 \
                    t_got == BW_TRI__COUNT ? "(no build)" : bw_tri_name(t_got),                    \
                    bw_tri_name(want));                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define T BW_TRI_TRUE
#define F BW_TRI_FALSE
#define U BW_TRI_UNKNOWN

/* ---- three-valued logic ----------------------------------------------------- */

/* The operands as expression text: unknown is a comparison on a missing
 * bot.score. */
static const char *const operand[3] = {
    [BW_TRI_FALSE] = "false", [BW_TRI_TRUE] = "true", [BW_TRI_UNKNOWN] = "(bot.score lt 10)"};
static const enum bw_tri order[3] = {BW_TRI_TRUE, BW_TRI_FALSE, BW_TRI_UNKNOWN};

/* SQL's tables, written out rather than computed, rows/columns T F U. */
static const enum bw_tri and_table[3][3] = {{T, F, U}, {F, F, F}, {U, F, U}};
static const enum bw_tri or_table[3][3] = {{T, T, T}, {T, F, U}, {T, U, U}};
static const enum bw_tri xor_table[3][3] = {{F, T, U}, {T, F, U}, {U, U, U}};

TEST(truth_not)
{
    struct req r;
    req_init(&r, "GET", "/");
    static const enum bw_tri want[3] = {F, T, U};
    for (size_t i = 0; i < 3; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "not %s", operand[order[i]]);
        CHECK_TRI(buf, &r.v, want[i]);
        snprintf(buf, sizeof buf, "!(%s)", operand[order[i]]);
        CHECK_TRI(buf, &r.v, want[i]);
        CHECK_INT_EQ(bw_tri_not(order[i]), want[i]);
    }
    /* The operand itself: unknown never fires. */
    CHECK_TRI("bot.score lt 10", &r.v, U);
}

static void truth_table(const char *op, const enum bw_tri table[3][3],
                        enum bw_tri (*fn)(enum bw_tri, enum bw_tri))
{
    struct req r;
    req_init(&r, "GET", "/");
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            char buf[160];
            snprintf(buf, sizeof buf, "%s %s %s", operand[order[i]], op, operand[order[j]]);
            CHECK_TRI(buf, &r.v, table[i][j]);
            CHECK_INT_EQ(fn(order[i], order[j]), table[i][j]);
        }
}

TEST(truth_and)
{
    truth_table("and", and_table, bw_tri_and);
    if (!t_cur_failed)
        truth_table("&&", and_table, bw_tri_and);
}
TEST(truth_or)
{
    truth_table("or", or_table, bw_tri_or);
    if (!t_cur_failed)
        truth_table("||", or_table, bw_tri_or);
}
TEST(truth_xor)
{
    truth_table("xor", xor_table, bw_tri_xor);
    if (!t_cur_failed)
        truth_table("^^", xor_table, bw_tri_xor);
}

TEST(nary_logic)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("true xor true xor true", &r.v, T);
    CHECK_TRI("true xor true xor false", &r.v, F);
    CHECK_TRI("true xor false xor (bot.score lt 10)", &r.v, U);
    CHECK_TRI("true and true and (bot.score lt 10)", &r.v, U);
    CHECK_TRI("(bot.score lt 10) and true and false", &r.v, F);
    CHECK_TRI("(bot.score lt 10) or false or true", &r.v, T);
    CHECK_TRI("false or (bot.score lt 10) or false", &r.v, U);
    /* precedence: a or b and c */
    CHECK_TRI("true or false and false", &r.v, T);
}

/* ---- missing is not zero ------------------------------------------------------ */

TEST(missing_bot_score)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("bot.score lt 10", &r.v, U);
    CHECK_TRI("not (bot.score lt 10)", &r.v, U);
    CHECK_TRI("bot.score ge 10", &r.v, U);
    CHECK_TRI("bot.score eq 0", &r.v, U);
    CHECK_TRI("bot.score ne 0", &r.v, U);
    CHECK_TRI("bot.score in {1..29}", &r.v, U);
    CHECK_TRI("not bot.score in {1..29}", &r.v, U);
    r.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 5};
    CHECK_TRI("bot.score lt 10", &r.v, T);
    CHECK_TRI("not (bot.score lt 10)", &r.v, F);
    CHECK_TRI("bot.score < 5 or bot.score <= 5", &r.v, T);
    CHECK_TRI("bot.score > 5 or bot.score >= 6", &r.v, F);
}

TEST(missing_header)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("http.user_agent eq \"\"", &r.v, U);
    CHECK_TRI("http.user_agent ne \"curl\"", &r.v, U);
    CHECK_TRI("not http.user_agent contains \"curl\"", &r.v, U);
    CHECK_TRI("http.cookie contains \"a\"", &r.v, U);
    CHECK_TRI("len(http.referer) eq 0", &r.v, U);
    CHECK_TRI("lower(http.x_forwarded_for) eq \"\"", &r.v, U);
    CHECK_TRI("http.request.headers[\"x\"][0] eq \"a\"", &r.v, U);
    /* a missing header's array is empty, not unknown */
    CHECK_TRI("len(http.request.headers[\"x\"]) eq 0", &r.v, T);
    r.v.host.known = false;
    CHECK_TRI("http.host eq \"a.example\"", &r.v, U);
    CHECK_TRI("http.host ne \"a.example\"", &r.v, U);
    CHECK_TRI("ip.src eq 10.0.0.1", &r.v, U);
    CHECK_TRI("not ip.src in {10.0.0.0/8}", &r.v, U);
}

TEST(has_presence)
{
    struct req r;
    req_init(&r, "GET", "/");
    req_header(&r, "X-Api-Key", "k");
    CHECK_TRI("has(bot.score)", &r.v, F);
    CHECK_TRI("not has(bot.score)", &r.v, T);
    CHECK_TRI("has(http.request.headers[\"x-api-key\"])", &r.v, T);
    CHECK_TRI("has(http.request.headers[\"x-other\"])", &r.v, F);
    CHECK_TRI("has(http.cookie)", &r.v, F);
    CHECK_TRI("has(http.user_agent)", &r.v, F);
    CHECK_TRI("has(http.host)", &r.v, T);
    CHECK_TRI("has(http.request.uri.path)", &r.v, T);
    CHECK_TRI("has(ip.src)", &r.v, F);
    CHECK_TRI("has(http.request.headers)", &r.v, T);
    req_header(&r, "cookie", "a=1");
    req_src(&r, "192.0.2.1");
    r.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 50};
    r.v.host.known = false;
    CHECK_TRI("has(bot.score)", &r.v, T);
    CHECK_TRI("has(http.cookie)", &r.v, T);
    CHECK_TRI("has(ip.src)", &r.v, T);
    CHECK_TRI("has(http.host)", &r.v, F);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "has(http.response.code)", &r.v, 0), F);
    /* has() does not depend on the arena: presence with a tiny cap */
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, "has(http.cookie)", &r.v, 1), T);
}

/* ---- fields and headers ----------------------------------------------------- */

TEST(request_fields)
{
    struct req r;
    req_init(&r, "POST", "/p/../q?x=1&y=2");
    r.v.ssl = true;
    CHECK_TRI("http.request.method eq \"POST\"", &r.v, T);
    CHECK_TRI("http.request.method eq \"post\"", &r.v, F);
    CHECK_TRI("http.host == \"a.example\"", &r.v, T);
    CHECK_TRI("http.request.uri eq \"/p/../q?x=1&y=2\"", &r.v, T);
    CHECK_TRI("http.request.uri.query eq \"x=1&y=2\"", &r.v, T);
    CHECK_TRI("http.request.uri.path eq \"/q\"", &r.v, T);
    CHECK_TRI("raw.http.request.uri.path eq \"/p/../q\"", &r.v, T);
    CHECK_TRI("ssl", &r.v, T);
    CHECK_TRI("not ssl", &r.v, F);
    CHECK_TRI("ssl eq true", &r.v, T);
    r.v.ssl = false;
    CHECK_TRI("ssl", &r.v, F);
}

TEST(header_joins)
{
    struct req r;
    req_init(&r, "GET", "/");
    req_header(&r, "Cookie", "a=1");
    req_header(&r, "X-Forwarded-For", "192.0.2.1");
    req_header(&r, "cookie", "b=2");
    req_header(&r, "x-forwarded-for", "198.51.100.7");
    req_header(&r, "USER-AGENT", "curl/8");
    req_header(&r, "Accept", "text/html");
    req_header(&r, "accept", "application/json");
    CHECK_TRI("http.cookie eq \"a=1; b=2\"", &r.v, T);
    CHECK_TRI("http.x_forwarded_for eq \"192.0.2.1, 198.51.100.7\"", &r.v, T);
    CHECK_TRI("http.user_agent eq \"curl/8\"", &r.v, T);
    CHECK_TRI("http.request.headers[\"accept\"][0] eq \"text/html\"", &r.v, T);
    CHECK_TRI("http.request.headers[\"Accept\"][1] eq \"application/json\"", &r.v, T);
    CHECK_TRI("http.request.headers[\"accept\"][2] eq \"\"", &r.v, U);
    CHECK_TRI("len(http.request.headers[\"accept\"]) eq 2", &r.v, T);
    CHECK_TRI("len(http.request.headers[\"cookie\"]) eq 2", &r.v, T);
}

/* The per-request header index: repeated headers in order, names matched
 * case-insensitively, names of equal and of long (>= 32 bytes) lengths,
 * a slot named like a header field, far more headers than any table. */
TEST(header_index)
{
    static struct bw_rv_header hs[300];
    static char vals[300][16];
    size_t n = 0;
    for (size_t i = 0; i < 150; i++) {
        snprintf(vals[n], sizeof vals[n], "a%zu", i);
        hs[n] = (struct bw_rv_header){i % 2 ? BW_SLICE_LIT("X-a") : BW_SLICE_LIT("x-A"),
                                      bw_slice_make(vals[n], strlen(vals[n]))};
        n++;
        snprintf(vals[n], sizeof vals[n], "x-n%zu", i);
        hs[n] = (struct bw_rv_header){bw_slice_make(vals[n], strlen(vals[n])), BW_SLICE_LIT("n")};
        n++;
    }
    hs[10] = (struct bw_rv_header){BW_SLICE_LIT("User-Agent"), BW_SLICE_LIT("u1")};
    hs[20] = (struct bw_rv_header){BW_SLICE_LIT("uSER-aGENT"), BW_SLICE_LIT("u2")};
    hs[30] = (struct bw_rv_header){BW_SLICE_LIT("cookie"), BW_SLICE_LIT("k=1")};
    hs[40] = (struct bw_rv_header){BW_SLICE_LIT("COOKIE"), BW_SLICE_LIT("k=2")};
    hs[50] = (struct bw_rv_header){BW_SLICE_LIT("X-A-Very-Long-Header-Name-Over-32-Bytes"),
                                   BW_SLICE_LIT("l1")};
    hs[60] = (struct bw_rv_header){BW_SLICE_LIT("x-a-very-long-header-name-over-32-bytes"),
                                   BW_SLICE_LIT("l2")};
    hs[70] = (struct bw_rv_header){BW_SLICE_LIT("X-C"), BW_SLICE_LIT("c")};
    hs[80] = (struct bw_rv_header){BW_SLICE_LIT("x-a-very-long-header-name-over-32-bytez"),
                                   BW_SLICE_LIT("z")};
    struct req r;
    req_init(&r, "GET", "/");
    r.v.headers.items = hs;
    r.v.headers.n = n;
    struct prog g;
    CHECK(prog_build(
        &g, BW_RULES_PHASE_REQUEST,
        LIST("http.user_agent eq \"u1, u2\"", "http.request.headers[\"x-a\"][0] eq \"a0\"",
             "len(http.request.headers[\"x-a\"]) eq 142", /* 8 x-a were overwritten */
             "http.request.headers[\"x-a\"][141] eq \"a149\"", "has(http.request.headers[\"x-b\"])",
             "http.request.headers[\"x-a-very-long-header-name-over-32-bytes\"][1] eq \"l2\"",
             "http.request.headers[\"x-c\"][0] eq \"c\"", "has(http.referer)",
             "http.cookie eq \"k=1; k=2\"", "http.request.headers[\"user-agent\"][1] eq \"u2\"",
             "len(http.request.headers[\"x-b\"]) eq 0", "has(http.user_agent)",
             "len(http.request.headers[\"x-n149\"]) eq 1")));
    static const enum bw_tri want[] = {T, T, T, T, F, T, T, F, T, T, T, T, T};
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    /* A field read before any expression builds the index too. */
    struct bw_val ua = bw_rules_field_value(&cx, BW_RULES_F_HTTP_USER_AGENT);
    CHECK(ua.kind == BW_VAL_BYTES && bw_slice_eq(ua.u.bytes, BW_SLICE_LIT("u1, u2")));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (bw_rules_eval(&cx, i) != want[i])
            T_FAILF("expression %zu: %s", i, bw_tri_name(bw_rules_eval(&cx, i)));
    bw_arena_reset(&ra);
    /* No room for the index: presence and single values still right. */
    bw_arena_init(&ra, 1024, 1);
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    ua = bw_rules_field_value(&cx, BW_RULES_F_HTTP_USER_AGENT);
    CHECK(ua.kind == BW_VAL_UNKNOWN); /* the join needs the arena */
    struct bw_val ref = bw_rules_field_value(&cx, BW_RULES_F_HTTP_REFERER);
    CHECK(ref.kind == BW_VAL_UNKNOWN); /* absent */
    bw_arena_reset(&ra);
    prog_done(&g);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, "has(http.user_agent)", &r.v, 1), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, "has(http.referer)", &r.v, 1), F);
    CHECK_INT_EQ(
        ev_cap(BW_RULES_PHASE_REQUEST, "http.request.headers[\"x-c\"][0] eq \"c\"", &r.v, 0), T);
}

/* Header names are matched ignoring ASCII case only, through the index:
 * the bytes next to the letters ('@' '[' '^' '`' and bytes >= 0x80) are
 * not letters, at every position of a long name. */
TEST(header_name_case)
{
    static const struct {
        const char *header, *slot;
        enum bw_tri want;
    } cases[] = {
        {"ABCDEFGZ", "abcdefgz", BW_TRI_TRUE},
        {"AbCdEfGa", "abcdefga", BW_TRI_TRUE},
        {"ABCDEFG@", "abcdefg`", BW_TRI_FALSE},
        {"ABCDEFG^", "abcdefg~", BW_TRI_FALSE},
        {"ABCDEFG\xc1", "abcdefga", BW_TRI_FALSE},
        {"\xc1"
         "BCDEFGH",
         "abcdefgh", BW_TRI_FALSE},
        {"ABCDEFG`", "abcdefg`", BW_TRI_TRUE},
        {"X-LONG-HEADER-NAME", "x-long-header-name", BW_TRI_TRUE},
        {"X-LONG-HEADER-NAMF", "x-long-header-name", BW_TRI_FALSE},
        {"X-LONG-@EADER-NAME", "x-long-`eader-name", BW_TRI_FALSE},
        {"x-long-header-nam", "x-long-header-name", BW_TRI_FALSE},
        {"A", "a", BW_TRI_TRUE},
        {"@", "`", BW_TRI_FALSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct req r;
        req_init(&r, "GET", "/");
        req_header(&r, cases[i].header, "v");
        char rule[128];
        snprintf(rule, sizeof rule, "has(http.request.headers[\"%s\"])", cases[i].slot);
        CHECK_TRI(rule, &r.v, cases[i].want);
    }
}

TEST(fields_extracted_once)
{
    struct req r;
    req_init(&r, "GET", "/a//b");
    req_header(&r, "cookie", "a=1");
    req_header(&r, "cookie", "b=2");
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST,
                     LIST("http.cookie contains \"a\"", "http.cookie contains \"b\"",
                          "starts_with(http.request.uri.path, \"/a/b\")",
                          "ends_with(http.request.uri.path, \"b\") and http.cookie ne \"\"")));
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    for (size_t i = 0; i < 4; i++)
        CHECK_INT_EQ(bw_rules_eval(&cx, i), T);
    CHECK_INT_EQ(cx.stats.extractions, 2); /* cookie, path */
    size_t used = ra.used;
    for (size_t i = 0; i < 4; i++)
        CHECK_INT_EQ(bw_rules_eval(&cx, i), T);
    CHECK_INT_EQ(cx.stats.extractions, 2);
    CHECK_INT_EQ(ra.used, used); /* nothing more allocated the second time */
    CHECK_INT_EQ(bw_rules_eval(&cx, 99), U);
    bw_arena_reset(&ra);
    prog_done(&g);
}

/* ---- functions ---------------------------------------------------------------- */

TEST(functions)
{
    struct req r;
    req_init(&r, "GET", "/Path%2Fx?q=a+b%20c%zz%4");
    req_header(&r, "user-agent", "Mozilla/5.0 Bot");
    CHECK_TRI("lower(http.user_agent) eq \"mozilla/5.0 bot\"", &r.v, T);
    CHECK_TRI("upper(http.user_agent) eq \"MOZILLA/5.0 BOT\"", &r.v, T);
    CHECK_TRI("lower(\"\") eq \"\"", &r.v, T);
    CHECK_TRI("len(http.user_agent) eq 15", &r.v, T);
    CHECK_TRI("len(\"\") eq 0", &r.v, T);
    CHECK_TRI("starts_with(http.user_agent, \"Mozilla\")", &r.v, T);
    CHECK_TRI("starts_with(http.user_agent, \"mozilla\")", &r.v, F);
    CHECK_TRI("starts_with(http.user_agent, \"\")", &r.v, T);
    CHECK_TRI("starts_with(\"ab\", \"abc\")", &r.v, F);
    CHECK_TRI("ends_with(http.user_agent, \" Bot\")", &r.v, T);
    CHECK_TRI("ends_with(http.user_agent, \"Mozilla\")", &r.v, F);
    CHECK_TRI("url_decode(http.request.uri.query) eq \"q=a b c%zz%4\"", &r.v, T);
    CHECK_TRI("url_decode(\"%41%62\") eq \"Ab\"", &r.v, T);
    CHECK_TRI("url_decode(raw.http.request.uri.path) eq \"/Path/x\"", &r.v, T);
    CHECK_TRI("concat(\"a\", http.request.method, \"-\", lower(\"X\")) eq \"aGET-x\"", &r.v, T);
    CHECK_TRI("concat(\"a\", http.cookie) eq \"a\"", &r.v, U);
    CHECK_TRI("http.user_agent contains \"5.0\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"bot\"", &r.v, F);
    CHECK_TRI("starts_with(http.cookie, \"a\")", &r.v, U);
    CHECK_TRI("ends_with(lower(http.referer), \"a\")", &r.v, U);
}

TEST(lifting_any_all)
{
    struct req r;
    req_init(&r, "GET", "/");
    req_header(&r, "accept", "text/html");
    req_header(&r, "Accept", "application/JSON");
    req_header(&r, "x-env", "PROD");
    req_header(&r, "x-env", "staging");
    CHECK_TRI("any(lower(http.request.headers[\"accept\"][*]) contains \"json\")", &r.v, T);
    CHECK_TRI("any(http.request.headers[\"accept\"][*] contains \"json\")", &r.v, F);
    CHECK_TRI("all(http.request.headers[\"accept\"][*] contains \"/\")", &r.v, T);
    CHECK_TRI("all(lower(http.request.headers[\"x-env\"][*]) in {\"prod\" \"staging\"})", &r.v, T);
    CHECK_TRI("all(http.request.headers[\"x-env\"][*] in {\"prod\" \"staging\"})", &r.v, F);
    CHECK_TRI("any(http.request.headers[\"x-env\"][*] eq \"staging\")", &r.v, T);
    CHECK_TRI("any(len(http.request.headers[\"x-env\"][*]) gt 5)", &r.v, T);
    CHECK_TRI("any(starts_with(http.request.headers[\"x-env\"][*], \"st\"))", &r.v, T);
    CHECK_TRI("all(ends_with(http.request.headers[\"x-env\"][*], \"g\"))", &r.v, F);
    /* empty arrays: any is false, all is true */
    CHECK_TRI("any(http.request.headers[\"none\"][*] eq \"a\")", &r.v, F);
    CHECK_TRI("all(http.request.headers[\"none\"][*] eq \"a\")", &r.v, T);
    CHECK_TRI("any(http.request.headers[\"accept\"][*] matches \"(?i)json$\")", &r.v, T);
    CHECK_TRI("all(http.request.headers[\"accept\"][*] ~ \"^text\")", &r.v, F);
    CHECK_TRI("any(http.request.headers[\"none\"][*] ~ \"a\")", &r.v, F);
}

/* Unknown elements follow three-valued logic in any()/all(): an element's
 * lower() that the arena refuses is unknown. */
TEST(lifting_unknown_elements)
{
    struct req r;
    req_init(&r, "GET", "/");
    static char big[4096];
    memset(big, 'A', sizeof big - 1);
    req_header(&r, "x", "a");
    req_header(&r, "x", big);
    const char *e_any = "any(lower(http.request.headers[\"x\"][*]) eq \"a\")";
    const char *e_any2 = "any(lower(http.request.headers[\"x\"][*]) eq \"b\")";
    const char *e_all = "all(lower(http.request.headers[\"x\"][*]) eq \"a\")";
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_any, &r.v, 0), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_any2, &r.v, 0), F);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_all, &r.v, 0), F);
    /* 2 KiB cap: the small element lowers, the big one is unknown */
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_any, &r.v, 2048), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_any2, &r.v, 2048), U);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, e_all, &r.v, 2048), U);
}

/* ---- sets ------------------------------------------------------------------------ */

TEST(ip_sets)
{
    struct req r;
    req_init(&r, "GET", "/");
    const char *set = "ip.src in {10.0.0.0/8 192.0.2.1 2001:db8::/32}";
    req_src(&r, "10.1.2.3");
    CHECK_TRI(set, &r.v, T);
    CHECK_TRI("not ip.src in {10.0.0.0/8}", &r.v, F);
    req_src(&r, "::ffff:10.1.2.3"); /* IPv4-mapped peer on a dual-stack socket */
    CHECK_TRI(set, &r.v, T);
    CHECK_TRI("ip.src eq 10.1.2.3", &r.v, T);
    CHECK_TRI("ip.src eq ::ffff:10.1.2.3", &r.v, T);
    req_src(&r, "192.0.2.1");
    CHECK_TRI(set, &r.v, T);
    req_src(&r, "192.0.2.2");
    CHECK_TRI(set, &r.v, F);
    CHECK_TRI("not ip.src in {10.0.0.0/8}", &r.v, T);
    req_src(&r, "2001:db8::1");
    CHECK_TRI(set, &r.v, T);
    CHECK_TRI("ip.src eq 2001:db8::1", &r.v, T);
    CHECK_TRI("ip.src ne 2001:db8::2", &r.v, T);
    req_src(&r, "2001:db9::1");
    CHECK_TRI(set, &r.v, F);
    /* an IPv6 address never falls in an IPv4 network, nor equals an IPv4 */
    req_src(&r, "::a01:203"); /* 10.1.2.3 as an IPv4-compatible (not mapped) address */
    CHECK_TRI("ip.src in {10.0.0.0/8}", &r.v, F);
    CHECK_TRI("ip.src eq 10.1.2.3", &r.v, F);
    r.v.src.known = false;
    CHECK_TRI(set, &r.v, U);
    /* a family other than AF_INET/AF_INET6 reads as unknown */
    r.v.src.known = true;
    memset(&r.v.src.addr, 0, sizeof r.v.src.addr);
    r.v.src.addr.ss_family = AF_UNIX;
    CHECK_TRI(set, &r.v, U);
}

/* An IPv6 network never holds an IPv4 source and an IPv4 network never an
 * IPv6 one, whole spaces included (as Cloudflare); ::ffff:0:0/96 is written
 * in IPv6 but is the IPv4 space, as ::ffff:a.b.c.d is the address a.b.c.d. */
TEST(ip_sets_whole_spaces_by_family)
{
    struct req r;
    req_init(&r, "GET", "/");
    static const struct {
        const char *src;
        enum bw_tri v6_all, v4_all, mapped_all, v6_80;
    } cases[] = {
        /* src                  ::/0  0.0.0.0/0  ::ffff:0:0/96  ::/80 */
        {"203.0.113.9", F, T, T, F},
        {"0.0.0.0", F, T, T, F},
        {"255.255.255.255", F, T, T, F},
        {"::ffff:203.0.113.9", F, T, T, F}, /* an IPv4 peer on a dual-stack socket */
        {"2001:db8::1", T, F, F, F},
        {"::", T, F, F, T},
        {"::cb00:7109", T, F, F, T}, /* IPv4-compatible: an IPv6 address */
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", T, F, F, F},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req_src(&r, cases[i].src);
        const struct {
            const char *expr;
            enum bw_tri want;
        } checks[] = {
            {"ip.src in {::/0}", cases[i].v6_all},
            {"ip.src in {0.0.0.0/0}", cases[i].v4_all},
            {"ip.src in {::ffff:0:0/96}", cases[i].mapped_all},
            {"ip.src in {::/80}", cases[i].v6_80},
            {"ip.src in {::/0 0.0.0.0/0}", T},
            {"not ip.src in {::/0}", cases[i].v6_all == T ? F : T},
        };
        for (size_t j = 0; j < sizeof checks / sizeof checks[0]; j++) {
            enum bw_tri got = ev(checks[j].expr, &r.v);
            if (got != checks[j].want) {
                T_FAILF("ip.src %s, %s: got %s, want %s", cases[i].src, checks[j].expr,
                        got == BW_TRI__COUNT ? "(no build)" : bw_tri_name(got),
                        bw_tri_name(checks[j].want));
                return;
            }
        }
    }
}

TEST(int_and_bytes_sets)
{
    struct req r;
    req_init(&r, "HEAD", "/");
    r.v.bot_score = (struct bw_rv_opt_int){.known = true, .value = 29};
    CHECK_TRI("bot.score in {1..29 50}", &r.v, T);
    CHECK_TRI("bot.score in {1..28 50}", &r.v, F);
    CHECK_TRI("bot.score in {30..99}", &r.v, F);
    r.v.bot_score.value = 50;
    CHECK_TRI("bot.score in {1..28 50}", &r.v, T);
    CHECK_TRI("http.request.method in {\"GET\" \"HEAD\"}", &r.v, T);
    CHECK_TRI("http.request.method in {\"GET\" \"head\"}", &r.v, F);
    CHECK_TRI("lower(http.request.method) in {\"get\" \"head\"}", &r.v, T);
    CHECK_TRI("http.cookie in {\"a\"}", &r.v, U);
    CHECK_TRI("len(http.request.method) in {4}", &r.v, T);
}

/* ---- regex: one scan per group --------------------------------------------------- */

TEST(matches_scanned_once)
{
    struct req r;
    req_init(&r, "GET", "/a/../admin/login.php");
    struct prog g;
    CHECK(
        prog_build(&g, BW_RULES_PHASE_REQUEST,
                   LIST("http.request.uri.path matches \"^/admin\"",
                        "http.request.uri.path ~ \"login\" and http.request.uri.path ~ "
                        "r\"\\.php$\"",
                        "http.request.uri.path ~ \"nope\"",
                        "raw.http.request.uri.path ~ \"^/admin\"", "false and http.host ~ \"a\"")));
    CHECK_INT_EQ(bw_rules_prog_scan_groups(g.p), 3); /* path, raw path, host */
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    CHECK_INT_EQ(bw_rules_eval(&cx, 4), F); /* short-circuit: the host is never scanned */
    CHECK_INT_EQ(cx.stats.regex_scans, 0);
    CHECK_INT_EQ(bw_rules_eval(&cx, 0), T);
    CHECK_INT_EQ(cx.stats.regex_scans, 1);
    CHECK_INT_EQ(bw_rules_eval(&cx, 1), T);
    CHECK_INT_EQ(bw_rules_eval(&cx, 2), F);
    CHECK_INT_EQ(cx.stats.regex_scans, 1);  /* four patterns, one scan of the path */
    CHECK_INT_EQ(bw_rules_eval(&cx, 3), F); /* raw path starts "/a/" */
    CHECK_INT_EQ(cx.stats.regex_scans, 2);
    CHECK_INT_EQ(cx.stats.regex_failures, 0);
    bw_arena_reset(&ra);
    prog_done(&g);
}

TEST(matches_unknown)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("http.user_agent matches \"bot\"", &r.v, U);
    CHECK_TRI("not http.user_agent matches \"bot\"", &r.v, U);
    CHECK_TRI("http.request.uri.path matches \"\"", &r.v, T); /* empty pattern: every value */
    req_header(&r, "user-agent", "a\nbot");
    CHECK_TRI("http.user_agent matches \"a.bot\"", &r.v, T); /* DOTALL */
    CHECK_TRI("http.user_agent matches \"(?-s)a.bot\"", &r.v, F);
    CHECK_TRI("http.user_agent matches \"(?i)BOT$\"", &r.v, T);
}

/* A pattern vectorscan refuses is a compile (load) error naming the
 * expression and the pattern's offset, with every database freed. */
TEST(bad_regex_is_load_error)
{
    /* The checker refuses a pattern vectorscan cannot compile, with its
     * position, before the compiler (which checks again) ever sees it. */
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    const char *text = "http.host ~ \"b^c\"";
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    bw_status st = bw_rules_parse(&a, bw_slice_make(text, strlen(text)), BW_RULES_PHASE_REQUEST,
                                  &at_1_1, &e, &d);
    bw_arena_reset(&a);
    CHECK(st == BW_ERR);
    CHECK(strstr(d.msg, "regex \"b^c\"") != NULL);
    CHECK_INT_EQ(d.col, 13);
}

/* ---- normalised path --------------------------------------------------------------- */

TEST(path_normalisation)
{
    static const char *const sneaky[] = {"/admin",     "/a/../admin", "/%61dmin",
                                         "//admin",    "/./admin",    "/x/y/../../admin/",
                                         "/%2e/admin", "/admin?x=1",  "///a/..//admin"};
    for (size_t i = 0; i < sizeof sneaky / sizeof *sneaky; i++) {
        struct req r;
        req_init(&r, "GET", sneaky[i]);
        CHECK_TRI("starts_with(http.request.uri.path, \"/admin\")", &r.v, T);
    }
    struct req r;
    req_init(&r, "GET", "/a/../admin");
    CHECK_TRI("raw.http.request.uri.path eq \"/a/../admin\"", &r.v, T);
    CHECK_TRI("starts_with(raw.http.request.uri.path, \"/admin\")", &r.v, F);
    req_init(&r, "GET", "/%61dmin");
    CHECK_TRI("raw.http.request.uri.path eq \"/%61dmin\"", &r.v, T);
    CHECK_TRI("http.request.uri.path eq \"/admin\"", &r.v, T);
    req_init(&r, "GET", "//admin");
    CHECK_TRI("raw.http.request.uri.path eq \"//admin\"", &r.v, T);
    req_init(&r, "GET", "/%2Fadmin"); /* an encoded '/' is not unreserved: kept */
    CHECK_TRI("starts_with(http.request.uri.path, \"/admin\")", &r.v, F);
}

/* ---- arena exhaustion ----------------------------------------------------------- */

TEST(arena_exhaustion_is_unknown)
{
    struct req r;
    req_init(&r, "GET", "/a/../admin");
    req_header(&r, "user-agent", "ABC");
    req_header(&r, "cookie", "a=1");
    req_header(&r, "cookie", "b=2");
    static const char *const exprs[] = {
        "lower(http.user_agent) eq \"abc\"",
        "starts_with(http.request.uri.path, \"/admin\")",
        "http.cookie eq \"a=1; b=2\"",
        "concat(http.user_agent, \"x\") eq \"ABCx\"",
        "any(http.request.headers[\"cookie\"][*] eq \"a=1\")",
        "http.request.uri.path ~ \"admin\"",
    };
    for (size_t i = 0; i < sizeof exprs / sizeof *exprs; i++) {
        char neg[256];
        snprintf(neg, sizeof neg, "not (%s)", exprs[i]);
        CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, exprs[i], &r.v, 0), T);
        for (size_t cap = 1; cap <= 256; cap *= 2) {
            enum bw_tri a = ev_cap(BW_RULES_PHASE_REQUEST, exprs[i], &r.v, cap);
            enum bw_tri b = ev_cap(BW_RULES_PHASE_REQUEST, neg, &r.v, cap);
            if (!(a == U && b == U)) {
                T_FAILF("%s with cap %zu: %s / %s", exprs[i], cap, bw_tri_name(a), bw_tri_name(b));
                return;
            }
        }
    }
    /* Fields that need no allocation still evaluate with an exhausted arena
     * once the context is ready. */
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_REQUEST, "http.request.method eq \"GET\"", &r.v, 1), T);
}

/* ---- shared subexpressions and constant operands -------------------------------- */

/* The same call in several expressions is compiled once and computed once
 * per request; every expression still gets its own, correct answer. */
TEST(shared_calls_memoised)
{
    struct req r;
    req_init(&r, "GET", "/");
    req_header(&r, "user-agent", "Mozilla/5.0 SQLMap");
    req_header(&r, "x-env", "Prod");
    req_header(&r, "x-env", "QA");
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST,
                     LIST("lower(http.user_agent) contains \"sqlmap\"",
                          "lower(http.user_agent) contains \"nikto\"",
                          "lower(http.user_agent) eq \"mozilla/5.0 sqlmap\"",
                          "any(lower(http.request.headers[\"x-env\"][*]) eq \"prod\")",
                          "all(lower(http.request.headers[\"x-env\"][*]) eq \"prod\")",
                          "lower(http.request.headers[\"x-env\"][1]) eq \"qa\"",
                          "lower(http.referer) eq \"x\"", "not lower(http.referer) eq \"x\"")));
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    CHECK_INT_EQ(bw_rules_eval(&cx, 0), T);
    size_t used = ra.used;
    CHECK_INT_EQ(bw_rules_eval(&cx, 1), F);
    CHECK_INT_EQ(bw_rules_eval(&cx, 2), T);
    CHECK_INT_EQ(ra.used, used); /* lower(http.user_agent) was not computed again */
    CHECK_INT_EQ(bw_rules_eval(&cx, 3), T);
    CHECK_INT_EQ(bw_rules_eval(&cx, 4), F);
    CHECK_INT_EQ(bw_rules_eval(&cx, 5), T);
    CHECK_INT_EQ(bw_rules_eval(&cx, 6), U); /* a memoised unknown stays unknown */
    CHECK_INT_EQ(bw_rules_eval(&cx, 7), U);
    /* A second context on another request sees its own values. */
    struct req r2;
    req_init(&r2, "GET", "/");
    req_header(&r2, "user-agent", "nikto");
    bw_rules_ctx_init(&cx, g.p, &r2.v, &ra, &g.scratch);
    CHECK_INT_EQ(bw_rules_eval(&cx, 0), F);
    CHECK_INT_EQ(bw_rules_eval(&cx, 1), T);
    CHECK_INT_EQ(bw_rules_eval(&cx, 3), F); /* no x-env: any() of nothing */
    CHECK_INT_EQ(bw_rules_eval(&cx, 4), T); /* all() of nothing */
    CHECK_INT_EQ(bw_rules_eval(&cx, 5), U);
    bw_arena_reset(&ra);
    prog_done(&g);
}

/* Comparisons with a constant right side run a specialised path: the same
 * answers as the general one, unknown included. */
TEST(constant_operands)
{
    struct req r;
    req_init(&r, "GET", "/aaab/x.php");
    req_header(&r, "user-agent", "abcabcabd 0123456789012345678901234567890123456789-end");
    /* contains: needle at the start, the end, after a false start, longer
     * than the value, longer than the short-needle path (32 bytes). */
    CHECK_TRI("http.user_agent contains \"abc\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"-end\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"abcabd\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"abcabe\"", &r.v, F);
    CHECK_TRI("http.request.uri.path contains \"aab\"", &r.v, T);
    CHECK_TRI("http.request.uri.path contains \"/aaab/x.php/\"", &r.v, F);
    CHECK_TRI("http.user_agent contains \"0123456789012345678901234567890123456789-end\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"0123456789012345678901234567890123456789-enD\"", &r.v, F);
    CHECK_TRI("http.user_agent contains \"d\"", &r.v, T);
    CHECK_TRI("http.user_agent contains \"\"", &r.v, T);
    CHECK_TRI("http.referer contains \"\"", &r.v, U);
    /* eq / ne, both ways round */
    CHECK_TRI("http.request.uri.path eq \"/aaab/x.php\"", &r.v, T);
    CHECK_TRI("\"/aaab/x.php\" eq http.request.uri.path", &r.v, T);
    CHECK_TRI("http.request.uri.path ne \"/aaab/x.php\"", &r.v, F);
    CHECK_TRI("http.request.uri.path ne \"/aaab/x.ph\"", &r.v, T);
    CHECK_TRI("http.request.uri.path eq \"\"", &r.v, F);
    CHECK_TRI("http.referer eq \"\"", &r.v, U);
    CHECK_TRI("http.referer ne \"\"", &r.v, U);
    CHECK_TRI("not http.referer ne \"\"", &r.v, U);
    /* starts_with / ends_with, empty and over-long constants */
    CHECK_TRI("starts_with(http.request.uri.path, \"/aaab/\")", &r.v, T);
    CHECK_TRI("starts_with(http.request.uri.path, \"/aaab/x.php.bak\")", &r.v, F);
    CHECK_TRI("ends_with(http.request.uri.path, \".php\")", &r.v, T);
    CHECK_TRI("ends_with(http.request.uri.path, \"\")", &r.v, T);
    CHECK_TRI("ends_with(http.request.uri.path, \"x/aaab/x.php\")", &r.v, F);
    CHECK_TRI("ends_with(http.cookie, \"\")", &r.v, U);
    CHECK_TRI("starts_with(lower(http.user_agent), \"abcabcabd 0123456789012345678901234567\")",
              &r.v, T);
    /* lifted: not specialised, per element */
    CHECK_TRI("any(http.request.headers[\"user-agent\"][*] contains \"-end\")", &r.v, T);
    CHECK_TRI("any(starts_with(http.request.headers[\"user-agent\"][*], \"abd\"))", &r.v, F);
}

/* String sets reject most values by length before hashing them; lengths of
 * 63 bytes and more share one length bit and are compared in full. */
TEST(set_lengths)
{
    static const char l62[] = "12345678901234567890123456789012345678901234567890123456789012";
    static const char l63[] = "123456789012345678901234567890123456789012345678901234567890123";
    static const char l70[] =
        "1234567890123456789012345678901234567890123456789012345678901234567890";
    char rule[512];
    snprintf(rule, sizeof rule, "http.user_agent in {\"\" \"ab\" \"%s\" \"%s\"}", l62, l70);
    static const struct {
        const char *ua;
        enum bw_tri want;
    } cases[] = {
        {"", BW_TRI_TRUE},   {"ab", BW_TRI_TRUE},     {"ba", BW_TRI_FALSE},
        {"a", BW_TRI_FALSE}, {l62, BW_TRI_TRUE},      {l63, BW_TRI_FALSE},
        {l70, BW_TRI_TRUE},  {l70 + 1, BW_TRI_FALSE}, /* 69 bytes: same length bit as 70 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct req r;
        req_init(&r, "GET", "/");
        req_header(&r, "user-agent", cases[i].ua);
        CHECK_TRI(rule, &r.v, cases[i].want);
    }
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI(rule, &r.v, U);
}

/* ---- literal folding ------------------------------------------------------------ */

/* `contains` literals on a field that is scanned anyway are folded into its
 * scan group: the folded program must give, for every request, exactly what
 * each expression gives alone (unfolded), unknown included. */
TEST(folded_literals_same_answers)
{
    static const char *const exprs[] = {
        "http.user_agent matches \"qqq\"",
        "lower(http.user_agent) matches \"qqq\"",
        "lower(http.user_agent) contains \"sqlmap\"", /* caseless on the UA */
        "lower(http.user_agent) contains \"SQLMap\"", /* upper case: on lower(UA) */
        "http.user_agent contains \".*(\"",           /* regex syntax is literal */
        "lower(http.user_agent) contains \"a\\\\b\"",
        "http.user_agent contains \"\xc3\xa9\"",
        "lower(http.user_agent) contains \"\xc3\xa9\"", /* not ASCII: on lower(UA) */
        "not lower(http.user_agent) contains \"nikto\"",
        "http.user_agent contains \"$\" or http.user_agent contains \"^\"",
        "lower(http.user_agent) contains \"x y\"",
        "http.user_agent contains \"\"", /* empty: never folded, always true */
        "lower(http.user_agent) contains \"[\"",
    };
    static const char *const uas[] = {
        NULL,       "",      "SQLMAP/1.0",
        "sqlmap",   "sqlma", "xx.*(yy",
        "xx.*y(",   "A\\B",  "\xc3\x89 \xc3\xa9",
        "\xc3\x89", "Nikto", "$",
        "a^",       "X Y",   "x\ny",
        "[",
    };
    size_t ne = sizeof exprs / sizeof exprs[0];
    struct prog g;
    memset(&g, 0, sizeof g);
    bw_arena_init(&g.snap, 4096, 0);
    bw_regex_scratch_init(&g.scratch);
    const struct bw_rules_expr *es[sizeof exprs / sizeof exprs[0]];
    for (size_t i = 0; i < ne; i++) {
        struct bw_rules_diag d;
        struct bw_rules_expr *e;
        CHECK(bw_rules_parse(&g.snap, bw_slice_make(exprs[i], strlen(exprs[i])),
                             BW_RULES_PHASE_REQUEST, &at_1_1, &e, &d) == BW_OK);
        es[i] = e;
    }
    bw_error err;
    CHECK(bw_rules_compile(&g.snap, es, ne, &g.p, &err) == BW_OK);
    CHECK(bw_rules_prog_reserve(g.p, &g.scratch, &err) == BW_OK);
    CHECK_INT_EQ(bw_rules_prog_scan_groups(g.p), 2); /* UA, lower(UA) */
    for (size_t u = 0; u < sizeof uas / sizeof uas[0]; u++) {
        struct req r;
        req_init(&r, "GET", "/");
        if (uas[u])
            req_header(&r, "user-agent", uas[u]);
        bw_arena ra;
        bw_arena_init(&ra, 1024, 0);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
        for (size_t i = 2; i < ne; i++) {
            enum bw_tri folded = bw_rules_eval(&cx, i), alone = ev(exprs[i], &r.v);
            if (folded != alone || alone == BW_TRI__COUNT)
                T_FAILF("%s on UA %s: folded %s, alone %s", exprs[i], uas[u] ? uas[u] : "(none)",
                        bw_tri_name(folded), bw_tri_name(alone));
        }
        CHECK(cx.stats.regex_scans <= 2);
        if (!uas[u])
            CHECK_INT_EQ(cx.stats.regex_scans, 0); /* absent: unknown, nothing scanned */
        bw_arena_reset(&ra);
    }
    prog_done(&g);
}

/* Enough `contains` on one field earn it a scan group of its own; a few
 * do not (they are cheaper searched one by one). */
TEST(folded_literals_threshold)
{
    struct prog g;
    CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST,
                     LIST("http.referer contains \"a\"", "http.referer contains \"b\"",
                          "http.referer contains \"c\"", "http.referer contains \"d\"",
                          "http.referer contains \"e\"", "http.referer contains \"f\"",
                          "http.cookie contains \"a\"")));
    CHECK_INT_EQ(bw_rules_prog_scan_groups(g.p), 1); /* the referer; not the cookie */
    struct req r;
    req_init(&r, "GET", "/");
    req_header(&r, "referer", "xdx");
    req_header(&r, "cookie", "a");
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
    static const enum bw_tri want[] = {F, F, F, T, F, F, T};
    for (size_t i = 0; i < 7; i++)
        CHECK_INT_EQ(bw_rules_eval(&cx, i), want[i]);
    CHECK_INT_EQ(cx.stats.regex_scans, 1);
    bw_arena_reset(&ra);
    prog_done(&g);
}

/* Absent headers: len() is a count (no array built), lifted operations on
 * the empty array give the empty array, any() false and all() true. */
TEST(absent_header_arrays)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("len(http.request.headers[\"x-a\"]) eq 0", &r.v, T);
    CHECK_TRI("any(lower(http.request.headers[\"x-a\"][*]) in {\"a\"})", &r.v, F);
    CHECK_TRI("all(upper(http.request.headers[\"x-a\"][*]) eq \"A\")", &r.v, T);
    CHECK_TRI("any(http.request.headers[\"x-a\"][*] contains \"a\")", &r.v, F);
    req_header(&r, "X-A", "A");
    req_header(&r, "x-a", "b");
    CHECK_TRI("len(http.request.headers[\"x-a\"]) eq 2", &r.v, T);
    CHECK_TRI("any(lower(http.request.headers[\"x-a\"][*]) in {\"a\"})", &r.v, T);
    CHECK_TRI("all(upper(http.request.headers[\"x-a\"][*]) eq \"A\")", &r.v, F);
}

/* lower(x) / upper(x) in a Bytes set: a value of a length no element has is
 * false without being mapped; unknown stays unknown. */
TEST(mapped_set_lengths)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_TRI("lower(http.user_agent) in {\"abc\" \"x\"}", &r.v, U);
    CHECK_TRI("not upper(http.user_agent) in {\"ABC\"}", &r.v, U);
    req_header(&r, "user-agent", "AbC");
    CHECK_TRI("lower(http.user_agent) in {\"abc\" \"x\"}", &r.v, T);
    CHECK_TRI("upper(http.user_agent) in {\"ABC\"}", &r.v, T);
    CHECK_TRI("lower(http.user_agent) in {\"abcd\" \"x\"}", &r.v, F);
    CHECK_TRI("not lower(http.user_agent) in {\"abcd\" \"x\"}", &r.v, T);
    CHECK_TRI("lower(http.user_agent) in {\"abd\"}", &r.v, F);
    CHECK_TRI("lower(http.host) in {\"a.example\"}", &r.v, T);
    /* lowered copies, prefix kept: */
    CHECK_TRI("lower(http.user_agent) eq \"abc\"", &r.v, T);
    CHECK_TRI("upper(http.user_agent) eq \"ABC\"", &r.v, T);
    req_init(&r, "GET", "/");
    req_header(&r, "user-agent", "mozilla/5.0 [Z@`{] x");
    CHECK_TRI("lower(http.user_agent) eq \"mozilla/5.0 [z@`{] x\"", &r.v, T);
    CHECK_TRI("upper(http.user_agent) eq \"MOZILLA/5.0 [Z@`{] X\"", &r.v, T);
}

/* The normalised path is the raw path itself when normalising changes
 * nothing; either way it is what bw_uri_normalize_path gives. */
TEST(path_fast_path_agrees)
{
    static const char alphabet[] = "/./a%2e%41%2fb/";
    uint32_t seed = 12345;
    for (int k = 0; k < 3000; k++) {
        char path[16];
        size_t len = (size_t)(k % 12);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            path[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        if (k % 3 == 0 && len)
            path[0] = '/';
        path[len] = '\0';
        char want_buf[32];
        bw_slice want = bw_uri_normalize_path(bw_slice_make(path, len), want_buf, sizeof want_buf);
        struct req r;
        req_init(&r, "GET", "/");
        r.v.raw_path = bw_slice_make(path, len);
        struct prog g;
        CHECK(prog_build(&g, BW_RULES_PHASE_REQUEST, LIST("true")));
        bw_arena ra;
        bw_arena_init(&ra, 1024, 0);
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g.p, &r.v, &ra, &g.scratch);
        struct bw_val v = bw_rules_field_value(&cx, BW_RULES_F_HTTP_REQUEST_URI_PATH);
        bool same = v.kind == BW_VAL_BYTES && bw_slice_eq(v.u.bytes, want);
        bw_arena_reset(&ra);
        prog_done(&g);
        if (!same) {
            T_FAILF("path \"%s\": normalised differently", path);
            return;
        }
    }
}

/* The regular expression of the 2019-07-02 WAF outage, in a rule: accepted
 * (vectorscan runs it as an automaton, in one pass) and right on the inputs
 * that matter. How long the scans take is the benchmark's business
 * (bench/eval_bench.c), never a test's. */
TEST(outage_regex_2019_in_a_rule)
{
    static const char rule[] =
        "http.request.uri.query matches r#\"(?:(?:\\\"|'|\\]|\\}|\\\\|\\d|(?:nan|infinity|true|"
        "false|null|undefined|symbol|math)|\\`|\\-|\\+)+[)]*;?((?:\\s|-|~|!|{}|\\|\\||\\+)*.*"
        "(?:.*=.*)))\"#";
    static const struct {
        const char *target;
        enum bw_tri want;
    } cases[] = {
        {"/?x=x", BW_TRI_FALSE},      /* nothing that starts the first group */
        {"/?a=1", BW_TRI_FALSE},      /* a digit, but no '=' after it */
        {"/?1=a", BW_TRI_TRUE},       /* a digit, then '=' */
        {"/?id=5&q=x", BW_TRI_TRUE},  /* '5', then "q=x" */
        {"/?null=x", BW_TRI_TRUE},    /* a keyword, then '=' */
        {"/?q=%22abc", BW_TRI_FALSE}, /* digits and a quote-free escape, no '=' after */
        {"/?'--=", BW_TRI_TRUE},      /* quote, dashes, '=' */
        {"/", BW_TRI_FALSE},          /* empty query */
        {"/?true", BW_TRI_FALSE},     /* a keyword and no '=' at all */
        {"/?-~!{}||+=", BW_TRI_TRUE}, /* every separator of the second group */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct req r;
        req_init(&r, "GET", cases[i].target);
        enum bw_tri got = ev(rule, &r.v);
        if (got != cases[i].want) {
            T_FAILF("%s: got %s, want %s", cases[i].target,
                    got == BW_TRI__COUNT ? "(no build)" : bw_tri_name(got),
                    bw_tri_name(cases[i].want));
            return;
        }
    }
}

/* ---- response phase ---------------------------------------------------------------- */

TEST(response_fields)
{
    struct req r;
    req_init(&r, "GET", "/");
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "http.response.code eq 404", &r.v, 0), U);
    CHECK_INT_EQ(
        ev_cap(BW_RULES_PHASE_RESPONSE, "len(http.response.headers[\"server\"]) eq 0", &r.v, 0), U);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "has(http.response.headers[\"server\"])", &r.v, 0),
                 F);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "not http.response.code eq 404", &r.v, 0), U);
    r.v.has_response = true;
    r.v.response_code = 404;
    r.rh[r.v.response_headers.n++] =
        (struct bw_rv_header){BW_SLICE_LIT("Server"), BW_SLICE_LIT("nginx")};
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "http.response.code eq 404", &r.v, 0), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "http.response.code in {400..499}", &r.v, 0), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE,
                        "http.response.headers[\"server\"][0] eq \"nginx\"", &r.v, 0),
                 T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "has(http.response.headers[\"server\"])", &r.v, 0),
                 T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "has(http.response.code)", &r.v, 0), T);
    CHECK_INT_EQ(ev_cap(BW_RULES_PHASE_RESPONSE, "http.request.method eq \"GET\" and ssl", &r.v, 0),
                 F);
}

/* A reload rebuilds every program; the regex databases of fields whose
 * patterns did not change are the running program's, shared, and results
 * stay right after the running program is gone (ASan would see a database
 * freed under the new one). */
static bool ev_prog(struct prog *g, size_t i, const struct bw_request_view *v, enum bw_tri want)
{
    bw_arena ra;
    bw_arena_init(&ra, 1024, 0);
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g->p, v, &ra, &g->scratch);
    enum bw_tri t = bw_rules_eval(&cx, i);
    bw_arena_reset(&ra);
    return t == want;
}

TEST(reload_shares_unchanged_regex_databases)
{
#define Q1 "http.request.uri.query matches \"(?i)union.+select\""
#define Q2 "http.request.uri.query matches \"[<>]script\""
#define M1 "http.request.method matches \"^(PUT|DELETE)$\""
    struct prog running, next, changed;
    CHECK(prog_build(&running, BW_RULES_PHASE_REQUEST, LIST(Q1, Q2, M1)));
    struct bw_regex_cache_stats st0 = bw_regex_cache_stats();
    bool ok = prog_build(&next, BW_RULES_PHASE_REQUEST, LIST(Q1, Q2, M1));
    struct bw_regex_cache_stats st1 = bw_regex_cache_stats();
    /* Only the method's pattern differs: the query's database is shared. */
    ok = prog_build(&changed, BW_RULES_PHASE_REQUEST,
                    LIST(Q1, Q2, "http.request.method matches \"^PATCH$\"")) &&
         ok;
    struct bw_regex_cache_stats st2 = bw_regex_cache_stats();
    prog_done(&running);
    CHECK(ok);
    CHECK_INT_EQ(st1.compiled, st0.compiled);     /* nothing compiled, not even to check */
    CHECK_INT_EQ(st1.shared, st0.shared + 2);     /* the query's and the method's */
    CHECK_INT_EQ(st2.compiled, st1.compiled + 2); /* the new pattern: checked, then its field */
    CHECK_INT_EQ(st2.shared, st1.shared + 1);     /* the query's */

    struct req r;
    req_init(&r, "DELETE", "/?q=1%20UNION%20SELECT");
    CHECK(ev_prog(&next, 0, &r.v, T));
    CHECK(ev_prog(&next, 1, &r.v, F));
    CHECK(ev_prog(&next, 2, &r.v, T));
    CHECK(ev_prog(&changed, 0, &r.v, T));
    CHECK(ev_prog(&changed, 2, &r.v, F));
    req_init(&r, "PATCH", "/?x=<script>");
    CHECK(ev_prog(&next, 1, &r.v, T));
    CHECK(ev_prog(&next, 2, &r.v, F));
    CHECK(ev_prog(&changed, 0, &r.v, F));
    CHECK(ev_prog(&changed, 1, &r.v, T));
    CHECK(ev_prog(&changed, 2, &r.v, T));
    prog_done(&next);
    prog_done(&changed);
#undef Q1
#undef Q2
#undef M1
}

int main(void)
{
    RUN(truth_not);
    RUN(truth_and);
    RUN(truth_or);
    RUN(truth_xor);
    RUN(nary_logic);
    RUN(missing_bot_score);
    RUN(missing_header);
    RUN(has_presence);
    RUN(request_fields);
    RUN(header_joins);
    RUN(header_index);
    RUN(header_name_case);
    RUN(fields_extracted_once);
    RUN(functions);
    RUN(lifting_any_all);
    RUN(lifting_unknown_elements);
    RUN(ip_sets);
    RUN(ip_sets_whole_spaces_by_family);
    RUN(int_and_bytes_sets);
    RUN(matches_scanned_once);
    RUN(matches_unknown);
    RUN(bad_regex_is_load_error);
    RUN(path_normalisation);
    RUN(arena_exhaustion_is_unknown);
    RUN(response_fields);
    RUN(shared_calls_memoised);
    RUN(constant_operands);
    RUN(set_lengths);
    RUN(folded_literals_same_answers);
    RUN(folded_literals_threshold);
    RUN(mapped_set_lengths);
    RUN(absent_header_arrays);
    RUN(path_fast_path_agrees);
    RUN(outage_regex_2019_in_a_rule);
    RUN(reload_shares_unchanged_regex_databases);
    return t_done();
}
