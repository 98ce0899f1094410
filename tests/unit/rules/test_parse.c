/* Rules-language front end: every invalid expression gets its exact message
 * and position; valid ones get the AST shape (precedence, associativity);
 * named limits are tested at and past the limit. */
#include <stdlib.h>

#include "rules/lexer.h"
#include "rules/rules.h"
#include "test.h"

static const struct bw_rules_srcpos at_1_1 = {
    .file = BW_SLICE_LIT("t.yaml"), .line = 1, .col = 1, .cont_col = 1};

/* Parses an exact-size heap copy (so ASan sees any overrun). */
static bw_status parse_n(bw_arena *a, const char *text, size_t n, enum bw_rules_phase phase,
                         const struct bw_rules_srcpos *where, struct bw_rules_expr **e,
                         struct bw_rules_diag *d)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, text, n);
    bw_status st = bw_rules_parse(a, bw_slice_make(copy, n), phase, where, e, d);
    free(copy);
    return st;
}

static bw_status parse(bw_arena *a, const char *text, enum bw_rules_phase phase,
                       struct bw_rules_expr **e, struct bw_rules_diag *d)
{
    return parse_n(a, text, strlen(text), phase, &at_1_1, e, d);
}

struct bad {
    const char *expr;
    unsigned line, col, len;
    const char *msg;
};

static const struct bad bad_cases[] = {
    {"ip.src contains \"x\"", 1, 1, 6, "\"contains\" needs Bytes on both sides, but ip.src is Ip"},
    {"len(ssl)", 1, 5, 3, "len() takes Bytes or an Array, but ssl is Bool"},
    {"http.host gt 3", 1, 1, 9, "\"gt\" compares Int values, but http.host is Bytes"},
    {"http.hots eq \"a\"", 1, 1, 9, "unknown field \"http.hots\" (did you mean \"http.host\"?)"},
    {"http.request.uri.pth eq \"/\"", 1, 1, 20,
     "unknown field \"http.request.uri.pth\" (did you mean \"http.request.uri.path\"?)"},
    {"foo eq 1", 1, 1, 3, "unknown field \"foo\""},
    {"lowr(http.host) eq \"a\"", 1, 1, 4, "unknown function \"lowr\" (did you mean \"lower\"?)"},
    {"frobnicate(http.host)", 1, 1, 10,
     "unknown function \"frobnicate\"; the functions are lower, upper, len, starts_with, "
     "ends_with, url_decode, concat, any, all and has"},
    {"starts_with(http.host)", 1, 1, 11, "starts_with() takes 2 arguments, but 1 was given"},
    {"lower(http.host, \"a\") eq \"a\"", 1, 1, 5, "lower() takes 1 argument, but 2 were given"},
    {"concat(\"a\") eq \"a\"", 1, 1, 6, "concat() takes 2 to 16 arguments, but 1 was given"},
    {"ip.src in {300.1.1.1}", 1, 12, 9, "invalid IPv4 address \"300.1.1.1\""},
    {"ip.src eq 300.1.1.1", 1, 11, 9, "invalid IPv4 address \"300.1.1.1\""},
    {"ip.src eq 1.2.3", 1, 11, 5, "invalid IPv4 address \"1.2.3\""},
    {"ip.src in {10.0.0.1/8}", 1, 12, 10,
     "CIDR \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"},
    {"ip.src in {10.0.0.0/33}", 1, 12, 11,
     "invalid CIDR \"10.0.0.0/33\": the prefix length must be 0..32"},
    {"ip.src in {10.0.0.0/0008}", 1, 12, 13,
     "invalid CIDR \"10.0.0.0/0008\": the prefix length must be 0..32"},
    {"ip.src in {2001:db8::/129}", 1, 12, 14,
     "invalid CIDR \"2001:db8::/129\": the prefix length must be 0..128"},
    {"ip.src in {2001:db8:::1}", 1, 12, 12, "invalid IPv6 address \"2001:db8:::1\""},
    {"ip.src eq 10.0.0.0/8", 1, 11, 10,
     "a CIDR is only allowed inside a set, as in ip.src in {10.0.0.0/8}"},
    {"bot.score eq 9223372036854775808", 1, 14, 19,
     "integer 9223372036854775808 does not fit in 64 bits (max 9223372036854775807)"},
    {"bot.score eq -9223372036854775809", 1, 14, 20,
     "integer -9223372036854775809 does not fit in 64 bits (min -9223372036854775808)"},
    {"bot.score eq 12abc", 1, 14, 5, "invalid number \"12abc\": integers are decimal digits"},
    {"http.host eq \"a\\d\"", 1, 16, 2,
     "unknown escape \"\\d\" in a string: the escapes are \\\", \\\\, \\xHH and \\ooo "
     "(octal); a \"matches\" pattern keeps any other"},
    /* Cloudflare's \xHH and \ooo, and nothing looser. */
    {"http.host eq \"\\x6\"", 1, 15, 2,
     "\"\\x\" in a string takes two hex digits, as in \"\\x2e\""},
    {"http.host eq \"\\x6g\"", 1, 15, 2,
     "\"\\x\" in a string takes two hex digits, as in \"\\x2e\""},
    {"http.host eq \"\\400\"", 1, 15, 4, "octal escape \"\\400\" is over \\377 (255)"},
    {"http.host eq \"\\05\"", 1, 15, 2,
     "an octal escape in a string is three digits 0-7, as in \"\\056\""},
    /* After "matches" a '"' inside [...] does not end the pattern. */
    {"http.host matches \"[a\" or ssl", 1, 19, 1,
     "unterminated string: a closing '\"' is missing (in a \"matches\" pattern, a '\"' inside "
     "[...] does not end it)"},
    {"http.host eq \"a", 1, 14, 1, "unterminated string: a closing '\"' is missing"},
    {"http.host eq \"abc", 1, 14, 1, "unterminated string: a closing '\"' is missing"},
    {"http.host eq r\"abc", 1, 14, 2, "unterminated raw string: a closing '\"' is missing"},
    {"http.host = \"a\"", 1, 11, 1, "'=' is not an operator: compare with \"eq\" or \"==\""},
    {"http.host eq \"a\" & ssl", 1, 18, 1, "'&' is not an operator: use \"and\" or \"&&\""},
    {"http.host eq \"a\" | ssl", 1, 18, 1, "'|' is not an operator: use \"or\" or \"||\""},
    {"ssl ^ ssl", 1, 5, 1, "'^' is not an operator: use \"xor\" or \"^^\""},
    {"http.host eq \"a\" and", 1, 21, 1,
     "expected a field, a function call, a literal or \"(\", but found the end of the expression"},
    {"(ssl", 1, 5, 1, "expected \")\", but found the end of the expression"},
    {"ssl)", 1, 4, 1, "unbalanced \")\": no \"(\" opens it"},
    {"not", 1, 4, 1,
     "expected a field, a function call, a literal or \"(\", but found the end of the expression"},
    {"http.host eq", 1, 13, 1,
     "expected a field, a function call, a literal or \"(\", but found the end of the expression"},
    {"http.host in", 1, 13, 1,
     "expected a set \"{ ... }\" after \"in\", but found the end of the expression"},
    {"http.host in {}", 1, 14, 2, "a set needs at least one element"},
    {"http.host in {\"a\", \"b\"}", 1, 18, 1, "set elements are separated by spaces, not commas"},
    {"http.host in {\"a\"", 1, 14, 1, "unterminated set: a closing \"}\" is missing"},
    {"bot.score in {10..1}", 1, 15, 5, "the range 10..1 is empty: its start is past its end"},
    {"bot.score in {\"a\"..\"b\"}", 1, 18, 2, "a range needs Int bounds, as in 1..10"},
    {"bot.score in {1..}", 1, 18, 1, "expected an integer after \"..\", but found \"}\""},
    {"http.host in {1}", 1, 15, 1, "\"in\" needs Bytes elements to match http.host, but 1 is Int"},
    {"bot.score in {\"a\"}", 1, 15, 3,
     "\"in\" needs Int elements to match bot.score, but \"a\" is Bytes"},
    {"ip.src in {1..2}", 1, 12, 4,
     "\"in\" needs Ip elements to match ip.src, but 1..2 is an Int range"},
    {"ssl in {1}", 1, 1, 3, "\"in\" needs Bytes, Int or Ip on the left, but ssl is Bool"},
    {"http.host matches 3", 1, 19, 1,
     "expected a string pattern after \"matches\", but found \"3\""},
    {"ip.src matches \"a\"", 1, 1, 6, "\"matches\" needs Bytes on the left, but ip.src is Ip"},
    {"ip.src ~ \"a\"", 1, 1, 6, "\"matches\" needs Bytes on the left, but ip.src is Ip"},
    {"http.host matches \"(a+)+\\1\"", 1, 19, 9,
     "regex \"(a+)+\\1\": backreferences are not supported (bulwark runs every regex in linear "
     "time)"},
    {"http.host ~ \"(?=a)b\"", 1, 13, 8,
     "regex \"(?=a)b\": lookahead and lookbehind assertions are not supported (bulwark runs every "
     "regex in linear time)"},
    /* Cloudflare syntax bulwark does not have: said so, not "invalid address". */
    {"ip.src in {10.0.0.1..10.0.0.9}", 1, 20, 2,
     "address ranges (a..b) are not supported: write the range as CIDRs, as in {192.0.2.0/29 "
     "192.0.2.8}"},
    {"ip.src in {2001:db8::1..2001:db8::9}", 1, 23, 2,
     "address ranges (a..b) are not supported: write the range as CIDRs, as in {192.0.2.0/29 "
     "192.0.2.8}"},
    {"ip.src in $office_network", 1, 11, 1,
     "lists ($name) are not supported: write the values in a set, as in ip.src in {192.0.2.0/24 "
     "198.51.100.7}"},
    {"lower(http.host)[*] eq \"a\"", 1, 1, 16, "[*] needs an Array, but lower(http.host) is Bytes"},
    {"http.host eq \"a\" eq \"b\"", 1, 18, 2, "comparisons do not chain: join them with \"and\""},
    {"http.host eq 1", 1, 14, 1,
     "\"eq\" needs the same type on both sides, but http.host is Bytes and 1 is Int"},
    {"ssl eq \"true\"", 1, 8, 6,
     "\"eq\" needs the same type on both sides, but ssl is Bool and \"true\" is Bytes"},
    {"bot.score lt \"10\"", 1, 14, 4, "\"lt\" compares Int values, but \"10\" is Bytes"},
    {"http.host contains 3", 1, 20, 1, "\"contains\" needs Bytes on both sides, but 3 is Int"},
    {"http.request.headers contains \"a\"", 1, 1, 20,
     "\"contains\" compares single values, but http.request.headers is Map<Array<Bytes>>"},
    {"http.request.headers[\"x\"] eq \"a\"", 1, 1, 25,
     "\"eq\" compares single values, but http.request.headers[\"x\"] is Array<Bytes>; index it "
     "with [0], or use [*] to test each element"},
    {"http.request.headers[\"x\"][*] eq \"a\"", 1, 1, 35,
     "the expression must be Bool, but http.request.headers[\"x\"][*] eq \"a\" is Array<Bool>; "
     "wrap it in any() or all()"},
    {"http.request.headers[\"a b\"] eq \"a\"", 1, 22, 5,
     "a header name is a token (letters, digits and !#$%&'*+-.^_`|~), but this one holds 0x20"},
    {"http.request.headers[\"\"] eq \"a\"", 1, 22, 2, "a header name cannot be empty"},
    {"http.request.headers[-1] eq \"a\"", 1, 22, 2, "an index must be 0 or more"},
    {"http.host[0] eq \"a\"", 1, 1, 9, "[0] needs an Array, but http.host is Bytes"},
    {"http.host[*] eq \"a\"", 1, 1, 9, "[*] needs an Array, but http.host is Bytes"},
    {"http.request.headers[\"x\"][*][*] eq \"a\"", 1, 1, 31, "[*] can be used only once"},
    {"http.request.headers[\"x\"][*][0] eq \"a\"", 1, 1, 31, "an index cannot follow [*]"},
    {"http.request.headers[ssl] eq \"a\"", 1, 22, 3,
     "expected a header name string, an index or \"*\" inside [ ], but found \"ssl\""},
    {"http.response.code eq 200", 1, 1, 18,
     "http.response.code is only available in the response phase, but this is a request-phase "
     "expression"},
    {"http.response.headers[\"x\"][0] eq \"a\"", 1, 1, 21,
     "http.response.headers is only available in the response phase, but this is a request-phase "
     "expression"},
    {"has(lower(http.host))", 1, 5, 16,
     "has() takes a field, as in has(http.request.headers[\"x\"]), but lower(http.host) is not a "
     "field"},
    {"has(\"a\")", 1, 5, 3,
     "has() takes a field, as in has(http.request.headers[\"x\"]), but \"a\" is not a field"},
    {"any(ssl)", 1, 5, 3,
     "any() takes Array<Bool>, as in any(http.request.headers[\"x\"][*] eq \"1\"), but ssl is "
     "Bool"},
    {"all(http.request.headers[\"x\"])", 1, 5, 25,
     "all() takes Array<Bool>, as in all(http.request.headers[\"x\"][*] eq \"1\"), but "
     "http.request.headers[\"x\"] is Array<Bytes>"},
    {"not http.host", 1, 5, 9, "\"not\" needs Bool operands, but http.host is Bytes"},
    {"http.host and ssl", 1, 1, 9, "\"and\" needs Bool operands, but http.host is Bytes"},
    {"ssl or bot.score", 1, 8, 9, "\"or\" needs Bool operands, but bot.score is Int"},
    {"ssl xor \"a\"", 1, 9, 3, "\"xor\" needs Bool operands, but \"a\" is Bytes"},
    {"http.host", 1, 1, 9, "the expression must be Bool, but http.host is Bytes"},
    {"bot.score", 1, 1, 9, "the expression must be Bool, but bot.score is Int"},
    {"lower(ip.src) eq \"a\"", 1, 7, 6, "lower() takes Bytes, but ip.src is Ip"},
    {"upper(ssl) eq \"A\"", 1, 7, 3, "upper() takes Bytes, but ssl is Bool"},
    {"url_decode(1) eq \"a\"", 1, 12, 1, "url_decode() takes Bytes, but 1 is Int"},
    {"starts_with(ip.src, \"a\")", 1, 13, 6,
     "starts_with() takes Bytes as its first argument, but ip.src is Ip"},
    {"ends_with(http.host, 1)", 1, 22, 1,
     "ends_with() takes Bytes as its second argument, but 1 is Int"},
    {"concat(http.host, 1) eq \"a\"", 1, 19, 1, "concat() takes Bytes, but 1 is Int"},
    {"len(http.request.headers) eq 1", 1, 5, 20,
     "len() takes Bytes or an Array, but http.request.headers is Map<Array<Bytes>>"},
    {"lower", 1, 1, 5, "lower is a function: call it as lower(...)"},
    {"http.request.headers[\"x\"][*] eq http.request.headers[\"y\"][*]", 1, 33, 28,
     "[*] is only allowed on the left side of \"eq\""},
    {"starts_with(http.host, http.request.headers[\"x\"][*])", 1, 24, 28,
     "only the first argument of starts_with() may use [*]"},
    {"any(http.request.headers[\"x\"][*] eq \"a\") and http.request.headers[\"x\"][*] eq \"b\"", 1,
     46, 35,
     "\"and\" needs Bool operands, but http.request.headers[\"x\"][*] eq \"b\" is Array<Bool>; "
     "wrap it in any() or all()"},
    {"ssl eq true true", 1, 13, 4,
     "expected \"and\", \"or\", \"xor\" or the end of the expression, but found \"true\""},
    {")", 1, 1, 1, "expected a field, a function call, a literal or \"(\", but found \")\""},
    {"ssl @ ssl", 1, 5, 1, "unexpected character '@'"},
    {"\"a\" eq \"a\" =", 1, 12, 1, "'=' is not an operator: compare with \"eq\" or \"==\""},
    {"bot.score eq 1 in {1}", 1, 16, 2, "comparisons do not chain: join them with \"and\""},
    {"ip.src in {10.0.0.0/8 \"a\"}", 1, 23, 3,
     "\"in\" needs Ip elements to match ip.src, but \"a\" is Bytes"},
    {"http.host in {\"a\" 10.0.0.0/8}", 1, 19, 10,
     "\"in\" needs Bytes elements to match http.host, but 10.0.0.0/8 is an Ip network"},
    {"concat(\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\","
     "\"o\",\"p\",\"q\") eq \"a\"",
     1, 1, 6, "concat() takes 2 to 16 arguments, but 17 were given"},
    {"http.request.headers[\"x\"][0] gt 1", 1, 1, 28,
     "\"gt\" compares Int values, but http.request.headers[\"x\"][0] is Bytes"},
    {"http.host eq ::1", 1, 14, 3,
     "\"eq\" needs the same type on both sides, but http.host is Bytes and ::1 is Ip"},
    {"ip.src eq 1.2.3.4 and", 1, 22, 1,
     "expected a field, a function call, a literal or \"(\", but found the end of the expression"},
    /* Hand-written: control bytes and other edge cases. */
    {"", 1, 1, 0, "the expression is empty"},
    {"   ", 1, 4, 0,
     "expected a field, a function call, a literal or \"(\", but found the end of the expression"},
    {"http.host eq \"a\tb\"", 1, 16, 1,
     "control byte 0x09 in a string; strings hold printable bytes only"},
    {"http.host eq r\"a\x01\"", 1, 17, 1,
     "control byte 0x01 in a string; strings hold printable bytes only"},
    {"http.host eq \"a\\", 1, 14, 1, "unterminated string: a closing '\"' is missing"},
    {"ssl \x7f", 1, 5, 1, "unexpected byte 0x7f"},
    {"http.host eq r#\"a\"", 1, 14, 3, "unterminated raw string: a closing '\"#' is missing"},
    {"http.host eq r#x", 1, 14, 2, "a raw string starts r\"  or r#\""},
    {"ssl and\n  http.hots eq \"a\"", 2, 3, 9,
     "unknown field \"http.hots\" (did you mean \"http.host\"?)"},
    {"ssl and\n\n bot.score gt \"1\"", 3, 15, 3, "\"gt\" compares Int values, but \"1\" is Bytes"},
};

TEST(invalid_expressions_exact_messages_and_positions)
{
    CHECK(sizeof bad_cases / sizeof bad_cases[0] >= 60);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad *b = &bad_cases[i];
        bw_arena a;
        bw_arena_init(&a, 4096, 0);
        struct bw_rules_expr *e = NULL;
        struct bw_rules_diag d;
        bw_status st = parse(&a, b->expr, BW_RULES_PHASE_REQUEST, &e, &d);
        bw_arena_reset(&a);
        if (st == BW_OK) {
            T_FAILF("case %zu \"%s\": parsed, want an error", i, b->expr);
            return;
        }
        if (strcmp(d.msg, b->msg) != 0 || d.line != b->line || d.col != b->col ||
            (b->len && (d.len ? d.len : 1) != b->len)) {
            T_FAILF("case %zu \"%s\": got %u:%u len %u \"%s\", want %u:%u len %u \"%s\"", i,
                    b->expr, d.line, d.col, d.len, d.msg, b->line, b->col, b->len, b->msg);
            return;
        }
        CHECK(d.off <= strlen(b->expr));
        char head[BW_RULES_DIAG_TEXT_MAX];
        snprintf(head, sizeof head, "t.yaml:%u:%u: error: %s\n", b->line, b->col, b->msg);
        CHECK(strncmp(d.text, head, strlen(head)) == 0);
    }
}

/* The full rendering: file position shifted by where the expression starts,
 * the expression line, and a caret under the offending token. */
TEST(diag_rendering_with_caret)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_srcpos where = {
        .file = BW_SLICE_LIT("rules/entry.yaml"), .line = 5, .col = 17, .cont_col = 7};
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    const char *text = "ip.src contains \"x\"";
    CHECK(parse_n(&a, text, strlen(text), BW_RULES_PHASE_REQUEST, &where, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.text, "rules/entry.yaml:5:17: error: \"contains\" needs Bytes on both sides, "
                         "but ip.src is Ip\n"
                         "    ip.src contains \"x\"\n"
                         "    ^~~~~~\n");
    text = "ssl and\n\thttp.host gt 3";
    CHECK(parse_n(&a, text, strlen(text), BW_RULES_PHASE_REQUEST, &where, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.text, "rules/entry.yaml:6:8: error: \"gt\" compares Int values, but "
                         "http.host is Bytes\n"
                         "    \thttp.host gt 3\n"
                         "    \t^~~~~~~~~\n");
    text = "http.hots eq \"a\"";
    CHECK(parse_n(&a, text, strlen(text), BW_RULES_PHASE_REQUEST, &where, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.text, "rules/entry.yaml:5:17: error: unknown field \"http.hots\" (did you mean "
                         "\"http.host\"?)\n"
                         "    http.hots eq \"a\"\n"
                         "    ^~~~~~~~~\n");
    bw_arena_reset(&a);
}

/* A control byte in the shown line is rendered as '?'. */
TEST(diag_rendering_hides_control_bytes)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    const char text[] = "ssl \x01";
    CHECK(parse_n(&a, text, sizeof text - 1, BW_RULES_PHASE_REQUEST, &at_1_1, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.text, "t.yaml:1:5: error: unexpected byte 0x01\n    ssl ?\n        ^\n");
    const char nul[] = "ssl\0";
    CHECK(parse_n(&a, nul, 4, BW_RULES_PHASE_REQUEST, &at_1_1, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.msg, "unexpected byte 0x00");
    bw_arena_reset(&a);
}

struct good {
    const char *expr;
    const char *ast;
};

static const struct good good_cases[] = {
    /* Precedence: not > comparison > and > xor > or. */
    {"ssl or ssl and ssl", "(or ssl (and ssl ssl))"},
    {"ssl and ssl or ssl", "(or (and ssl ssl) ssl)"},
    {"ssl xor ssl and ssl", "(xor ssl (and ssl ssl))"},
    {"ssl or ssl xor ssl", "(or ssl (xor ssl ssl))"},
    {"ssl xor ssl or ssl xor ssl", "(or (xor ssl ssl) (xor ssl ssl))"},
    {"not ssl and ssl", "(and (not ssl) ssl)"},
    {"not ssl or not ssl", "(or (not ssl) (not ssl))"},
    {"not not ssl", "(not (not ssl))"},
    {"not http.host eq \"a\"", "(not (eq http.host \"a\"))"},
    {"! ip.src in {10.0.0.0/8}", "(not (in ip.src {10.0.0.0/8}))"},
    {"(ssl or ssl) and ssl", "(and (or ssl ssl) ssl)"},
    {"not (ssl or ssl)", "(not (or ssl ssl))"},
    /* Chains are n-ary (left-associative, flattened). */
    {"ssl and ssl and ssl and ssl", "(and ssl ssl ssl ssl)"},
    {"ssl && ssl || ssl ^^ ssl", "(or (and ssl ssl) (xor ssl ssl))"},
    {"(ssl and ssl) and ssl", "(and (and ssl ssl) ssl)"},
    /* Operators and their C-like spellings. */
    {"http.host == \"a\" && bot.score != 3", "(and (eq http.host \"a\") (ne bot.score 3))"},
    {"bot.score < 1 or bot.score <= 2 or bot.score > 3 or bot.score >= 4",
     "(or (lt bot.score 1) (le bot.score 2) (gt bot.score 3) (ge bot.score 4))"},
    {"bot.score lt 10", "(lt bot.score 10)"},
    {"http.user_agent contains \"curl/\"", "(contains http.user_agent \"curl/\")"},
    /* A quoted "matches" pattern keeps its escapes, as in Cloudflare: only
     * \" (outside [...]) is decoded. "\\." is a backslash then any byte. */
    {"http.request.uri.path matches \"^/a\\.b$\"",
     "(matches http.request.uri.path \"^/a\\\\.b$\")"},
    {"http.request.uri.path matches \"^/a\\\\.b$\"",
     "(matches http.request.uri.path \"^/a\\\\\\\\.b$\")"},
    {"http.host matches \"\\d+\\\"[\\\"\\]\"]\"",
     "(matches http.host \"\\\\d+\\\"[\\\\\\\"\\\\]\\\"]\")"},
    {"http.host ~ \"a\\\\\\\"\" and http.host eq \"a\\\\\\\"\"",
     "(and (matches http.host \"a\\\\\\\\\\\"\") (eq http.host \"a\\\\\\\"\"))"},
    /* Quoted strings elsewhere: \" \\ \xHH \ooo. */
    {"http.host eq \"\\x2e\\x77\\056\\101\\xff\\000\"", "(eq http.host \".w.A\\xff\\x00\")"},
    {"http.request.uri.path ~ r\"^/a\\.b$\"", "(matches http.request.uri.path \"^/a\\\\.b$\")"},
    {"http.host eq r#\"a\"b\"#", "(eq http.host \"a\\\"b\")"},
    {"http.host eq \"a\\\"b\\\\c\"", "(eq http.host \"a\\\"b\\\\c\")"},
    {"http.host eq \"caf\xc3\xa9\"", "(eq http.host \"caf\\xc3\\xa9\")"},
    /* Literals: integers at the int64 bounds, addresses, sets. */
    {"bot.score eq 9223372036854775807", "(eq bot.score 9223372036854775807)"},
    {"bot.score eq -9223372036854775808", "(eq bot.score -9223372036854775808)"},
    {"bot.score in {1 5..10 -3..-1}", "(in bot.score {1 5..10 -3..-1})"},
    {"bot.score in {1..1}", "(in bot.score {1})"},
    {"ip.src eq 203.0.113.9", "(eq ip.src 203.0.113.9)"},
    {"ip.src eq 2001:db8::1", "(eq ip.src 2001:db8::1)"},
    {"ip.src eq ::1", "(eq ip.src ::1)"},
    {"ip.src eq fe80::1", "(eq ip.src fe80::1)"},
    {"ip.src eq ::ffff:192.0.2.1", "(eq ip.src 192.0.2.1)"},
    {"ip.src in {10.0.0.0/8 192.0.2.1 2001:db8::/32 ::ffff:10.0.0.0/104 0.0.0.0/0}",
     "(in ip.src {10.0.0.0/8 192.0.2.1 2001:db8::/32 10.0.0.0/8 0.0.0.0/0})"},
    {"http.request.method in {\"GET\" \"HEAD\"}", "(in http.request.method {\"GET\" \"HEAD\"})"},
    {"ssl eq true", "(eq ssl true)"},
    {"true", "true"},
    {"false or ssl", "(or false ssl)"},
    /* Functions. */
    {"starts_with(http.request.uri.path, \"/admin\") and not ip.src in {10.0.0.0/8}",
     "(and (starts_with http.request.uri.path \"/admin\") (not (in ip.src {10.0.0.0/8})))"},
    {"len(http.user_agent) eq 0", "(eq (len http.user_agent) 0)"},
    {"lower(http.user_agent) contains \"curl/\"", "(contains (lower http.user_agent) \"curl/\")"},
    {"upper(http.request.method) eq \"GET\"", "(eq (upper http.request.method) \"GET\")"},
    {"ends_with(url_decode(http.request.uri.query), \"x\")",
     "(ends_with (url_decode http.request.uri.query) \"x\")"},
    {"concat(http.host, \"/\", http.request.uri.path) eq \"a/\"",
     "(eq (concat http.host \"/\" http.request.uri.path) \"a/\")"},
    {"has(bot.score) and bot.score lt 10", "(and (has bot.score) (lt bot.score 10))"},
    {"has(http.request.headers[\"X-Api-Key\"])", "(has http.request.headers[\"x-api-key\"])"},
    {"len(http.request.headers[\"cookie\"]) gt 5", "(gt (len http.request.headers[\"cookie\"]) 5)"},
    {"http.request.headers[\"x\"][0] eq \"1\"", "(eq http.request.headers[\"x\"][0] \"1\")"},
    {"any(http.request.headers[\"accept\"][*] contains \"json\")",
     "(any (contains http.request.headers[\"accept\"][*] \"json\"))"},
    {"all(lower(http.request.headers[\"x\"][*]) in {\"a\" \"b\"})",
     "(all (in (lower http.request.headers[\"x\"][*]) {\"a\" \"b\"}))"},
    {"any(starts_with(http.request.headers[\"x\"][*], \"a\"))",
     "(any (starts_with http.request.headers[\"x\"][*] \"a\"))"},
    {"any(len(http.request.headers[\"x\"][*]) gt 100)",
     "(any (gt (len http.request.headers[\"x\"][*]) 100))"},
    /* Cloudflare's spelling of a function over each element, f(x[*])[*]. */
    {"any(lower(http.request.headers[\"x\"][*])[*] eq \"a\")",
     "(any (eq (lower http.request.headers[\"x\"][*]) \"a\"))"},
    {"all(len(http.request.headers[\"x\"][*])[*] in {3 4})",
     "(all (in (len http.request.headers[\"x\"][*]) {3 4}))"},
    {"any(http.request.headers[\"x\"][*] matches \"^a\")",
     "(any (matches http.request.headers[\"x\"][*] \"^a\"))"},
    /* Whitespace and lines. */
    {"  ssl\n\tand\r\n ssl  ", "(and ssl ssl)"},
    {"(((ssl)))", "ssl"},
    {"http.host eq http.referer", "(eq http.host http.referer)"},
    {"raw.http.request.uri.path ne http.request.uri.path",
     "(ne raw.http.request.uri.path http.request.uri.path)"},
    {"http.cookie contains \"a\" or http.x_forwarded_for contains \"b\" or http.request.uri eq "
     "\"/\"",
     "(or (contains http.cookie \"a\") (contains http.x_forwarded_for \"b\") (eq http.request.uri "
     "\"/\"))"},
};

TEST(valid_expressions_ast_shape)
{
    for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++) {
        bw_arena a;
        bw_arena_init(&a, 4096, 0);
        struct bw_rules_expr *e = NULL;
        struct bw_rules_diag d;
        if (parse(&a, good_cases[i].expr, BW_RULES_PHASE_REQUEST, &e, &d) != BW_OK) {
            T_FAILF("case %zu: %s", i, d.text);
            bw_arena_reset(&a);
            return;
        }
        char buf[1024];
        bw_rules_format(e->root, buf, sizeof buf);
        bool bool_root = e->root->type.kind == BW_RULES_T_BOOL && !e->root->lifted;
        bw_arena_reset(&a);
        CHECK(bool_root);
        CHECK_STR_EQ(buf, good_cases[i].ast);
    }
}

TEST(types_of_nodes)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    CHECK(parse(&a, "any(lower(http.request.headers[\"x\"][*]) eq \"a\")", BW_RULES_PHASE_REQUEST,
                &e, &d) == BW_OK);
    struct bw_rules_node *any = e->root, *eq = any->u.call.args[0];
    struct bw_rules_node *low = eq->u.compare.lhs, *each = low->u.call.args[0];
    struct bw_rules_node *get = each->u.each.array, *hdrs = get->u.map_get.map;
    CHECK_STR_EQ(bw_rules_type_name(any->type), "Bool");
    CHECK(!any->lifted);
    CHECK_STR_EQ(bw_rules_type_name(eq->type), "Array<Bool>");
    CHECK(eq->lifted);
    CHECK_STR_EQ(bw_rules_type_name(low->type), "Array<Bytes>");
    CHECK(low->lifted);
    CHECK(each->lifted);
    CHECK_STR_EQ(bw_rules_type_name(get->type), "Array<Bytes>");
    CHECK(!get->lifted);
    CHECK_STR_EQ(bw_rules_type_name(hdrs->type), "Map<Array<Bytes>>");
    CHECK_INT_EQ(hdrs->u.field, BW_RULES_F_HTTP_REQUEST_HEADERS);
    /* Spans cover the source text of each node. */
    CHECK_INT_EQ(eq->span.off, 4);
    CHECK_INT_EQ(low->u.call.name_span.off, 4);
    CHECK_INT_EQ(low->u.call.name_span.len, 5);
    CHECK_SLICE_EQ(bw_slice_make(e->text.ptr + get->span.off, get->span.len),
                   "http.request.headers[\"x\"]");
    bw_arena_reset(&a);
}

TEST(response_fields_only_in_response_phase)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    const char *x = "http.response.code ge 500 and any(http.response.headers[\"server\"][*] eq "
                    "\"x\") and http.host eq \"a\"";
    CHECK(parse(&a, x, BW_RULES_PHASE_RESPONSE, &e, &d) == BW_OK);
    CHECK_INT_EQ(e->phase, BW_RULES_PHASE_RESPONSE);
    CHECK(parse(&a, x, BW_RULES_PHASE_REQUEST, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.msg, "http.response.code is only available in the response phase, but this "
                        "is a request-phase expression");
    CHECK(parse(&a, "has(http.response.headers[\"x\"])", BW_RULES_PHASE_REQUEST, &e, &d) == BW_ERR);
    CHECK_INT_EQ(d.col, 5);
    bw_arena_reset(&a);
}

/* BW_RULES_MAX_DEPTH: parentheses, not and calls each count one level. */
static bw_status nested(const char *open, const char *mid, const char *close, int levels,
                        struct bw_rules_diag *d)
{
    size_t n = strlen(open) * levels + strlen(mid) + strlen(close) * levels;
    char *s = malloc(n + 1), *p = s;
    for (int i = 0; i < levels; i++)
        p += sprintf(p, "%s", open);
    p += sprintf(p, "%s", mid);
    for (int i = 0; i < levels; i++)
        p += sprintf(p, "%s", close);
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    bw_status st = parse_n(&a, s, n, BW_RULES_PHASE_REQUEST, &at_1_1, &e, d);
    bw_arena_reset(&a);
    free(s);
    return st;
}

TEST(depth_limit_at_and_past)
{
    struct bw_rules_diag d;
    CHECK(nested("(", "ssl", ")", BW_RULES_MAX_DEPTH, &d) == BW_OK);
    CHECK(nested("(", "ssl", ")", BW_RULES_MAX_DEPTH + 1, &d) == BW_ERR);
    CHECK_STR_EQ(d.msg, "the expression nests deeper than 64 levels (parentheses, \"not\" and "
                        "function calls)");
    CHECK_INT_EQ(d.col, BW_RULES_MAX_DEPTH + 1);
    CHECK(nested("not ", "ssl", "", BW_RULES_MAX_DEPTH, &d) == BW_OK);
    CHECK(nested("not ", "ssl", "", BW_RULES_MAX_DEPTH + 1, &d) == BW_ERR);
    CHECK_INT_EQ(d.col, 4 * BW_RULES_MAX_DEPTH + 1);
    /* any(...) is a call level; each "len(" another. */
    CHECK(nested("lower(", "http.host", ")", BW_RULES_MAX_DEPTH, &d) == BW_ERR); /* not Bool */
    CHECK_STR_EQ(d.msg, "the expression must be Bool, but it is Bytes");
    CHECK(nested("lower(", "http.host", ")", BW_RULES_MAX_DEPTH + 1, &d) == BW_ERR);
    CHECK(strstr(d.msg, "nests deeper than 64") != NULL);
    /* Far past the limit: no stack exhaustion, the same error. */
    CHECK(nested("(", "ssl", ")", 100000, &d) == BW_ERR);
    CHECK(strstr(d.msg, "nests deeper") != NULL || strstr(d.msg, "bytes long") != NULL);
}

TEST(length_limit_at_and_past)
{
    /* "ssl or ssl or ... ssl" padded with spaces to exactly the limit. */
    size_t n = BW_RULES_MAX_EXPR_LEN;
    char *s = malloc(n + 1);
    memset(s, ' ', n + 1);
    size_t at = 0;
    memcpy(s, "ssl", 3);
    at = 3;
    while (at + 7 <= n - 10) {
        memcpy(s + at, " or ssl", 7);
        at += 7;
    }
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    CHECK(parse_n(&a, s, n, BW_RULES_PHASE_REQUEST, &at_1_1, &e, &d) == BW_OK);
    CHECK_INT_EQ(e->root->kind, BW_RULES_N_LOGIC);
    CHECK(e->root->u.logic.n > 2000); /* flat, not 2000 levels deep */
    CHECK(parse_n(&a, s, n + 1, BW_RULES_PHASE_REQUEST, &at_1_1, &e, &d) == BW_ERR);
    CHECK_STR_EQ(d.msg, "the expression is 16385 bytes long; the limit is 16384 bytes");
    CHECK_INT_EQ(d.off, BW_RULES_MAX_EXPR_LEN);
    CHECK_INT_EQ(d.col, BW_RULES_MAX_EXPR_LEN + 1);
    bw_arena_reset(&a);
    free(s);
}

TEST(lexer_tokens_carry_positions)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    const char *src = "http.host eq\n  \"x\" and\r\n1..10 { 10.0.0.0/8 } r#\"q\"#";
    struct bw_rules_lexer lx;
    bw_rules_lexer_init(&lx, &a, bw_slice_make(src, strlen(src)));
    struct {
        enum bw_rules_tok kind;
        unsigned off, line, col, len;
    } want[] = {
        {BW_RULES_TOK_IDENT, 0, 1, 1, 9},    {BW_RULES_TOK_EQ, 10, 1, 11, 2},
        {BW_RULES_TOK_STRING, 15, 2, 3, 3},  {BW_RULES_TOK_AND, 19, 2, 7, 3},
        {BW_RULES_TOK_INT, 24, 3, 1, 1},     {BW_RULES_TOK_DOTDOT, 25, 3, 2, 2},
        {BW_RULES_TOK_INT, 27, 3, 4, 2},     {BW_RULES_TOK_LBRACE, 30, 3, 7, 1},
        {BW_RULES_TOK_IP, 32, 3, 9, 10},     {BW_RULES_TOK_RBRACE, 43, 3, 20, 1},
        {BW_RULES_TOK_STRING, 45, 3, 22, 6}, {BW_RULES_TOK_EOF, 51, 3, 28, 0},
    };
    struct bw_rules_diag d;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct bw_rules_token t;
        CHECK(bw_rules_lex_next(&lx, &t, &d) == BW_OK);
        if (t.kind != want[i].kind || t.off != want[i].off || t.line != want[i].line ||
            t.col != want[i].col || t.len != want[i].len) {
            T_FAILF("token %zu: got kind %d off %u %u:%u len %u", i, t.kind, t.off, t.line, t.col,
                    t.len);
            return;
        }
        if (t.kind == BW_RULES_TOK_IP) {
            CHECK(t.is_cidr);
            CHECK_INT_EQ(t.u.ip.prefix, 8);
        }
        if (i == 10) {
            CHECK(t.raw);
            CHECK_SLICE_EQ(t.u.str, "q");
        }
    }
    bw_arena_reset(&a);
}

TEST(suggestions)
{
    const char *s;
    CHECK(bw_rules_suggest(BW_SLICE_LIT("ip.scr"), false, &s) == BW_OK);
    CHECK_STR_EQ(s, "ip.src");
    CHECK(bw_rules_suggest(BW_SLICE_LIT("http.useragent"), false, &s) == BW_OK);
    CHECK_STR_EQ(s, "http.user_agent");
    CHECK(bw_rules_suggest(BW_SLICE_LIT("startswith"), true, &s) == BW_OK);
    CHECK_STR_EQ(s, "starts_with");
    CHECK(bw_rules_suggest(BW_SLICE_LIT("zzzzzz"), false, &s) == BW_ERR);
    CHECK(bw_rules_suggest(BW_SLICE_EMPTY, false, &s) == BW_ERR);
}

TEST(format_truncates_safely)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    CHECK(parse(&a, "http.host eq \"abcdef\"", BW_RULES_PHASE_REQUEST, &e, &d) == BW_OK);
    char buf[8];
    size_t n = bw_rules_format(e->root, buf, sizeof buf);
    CHECK_INT_EQ(n, strlen("(eq http.host \"abcdef\")"));
    CHECK_STR_EQ(buf, "(eq htt");
    bw_arena_reset(&a);
}

int main(void)
{
    RUN(invalid_expressions_exact_messages_and_positions);
    RUN(diag_rendering_with_caret);
    RUN(diag_rendering_hides_control_bytes);
    RUN(valid_expressions_ast_shape);
    RUN(types_of_nodes);
    RUN(response_fields_only_in_response_phase);
    RUN(depth_limit_at_and_past);
    RUN(length_limit_at_and_past);
    RUN(lexer_tokens_carry_positions);
    RUN(suggestions);
    RUN(format_truncates_safely);
    return t_done();
}
