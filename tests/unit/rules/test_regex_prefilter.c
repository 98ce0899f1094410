/* The literal prefilter (src/rules/regex_prefilter.c): which strings it
 * finds necessary in a pattern, that it never rules out a value a pattern
 * matches (checked against vectorscan itself), that it does rule out
 * ordinary values, that its SIMD and scalar passes agree, and its limits at
 * and just past each bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rules/regex.h"
#include "rules/regex_prefilter.h"
#include "test.h"

static bw_slice S(const char *s)
{
    return bw_slice_make(s, strlen(s));
}

/* The factors of pattern, joined by spaces, or "-" when unfilterable. */
static const char *factors(const char *pattern, char *buf, size_t cap)
{
    char out[BW_PREFILTER_MAX_SET][BW_PREFILTER_MAX_STRING + 1];
    size_t n;
    if (!bw_prefilter_factors(S(pattern), out, &n)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? " " : "", out[i]);
    return buf;
}

static const struct {
    const char *pattern, *want;
} factor_cases[] = {
    /* literals, folded to lower case */
    {"admin", "admin"},
    {"(?i)AdMiN", "admin"},
    {"/wp-admin", "/wp-admin"},
    {"a\\.b\\$c", "a.b$c"},
    {"\\x41\\x2f", "a/"},
    {"\\t\\n", "\t\n"},
    /* alternation and groups */
    {"cat|dog", "cat dog"},
    {"(?:cat|dog)s", "cats dogs"},
    {"(cat|dog)", "cat dog"},
    {"(?i:cat|dog)", "cat dog"},
    {"x(a|b)(c|d)", "xac xad xbc xbd"},
    {"(%27|')", "%27 '"},
    {"a(|b)c", "abc ac"},
    /* classes and repeats break a literal; the rarest side is kept */
    {"union\\s+select", "select"},
    {"\\.(old|orig)$", ".old .orig"},
    {"^\\s*(0\\.0\\.0\\.0|10\\.)", "0.0.0.0 10."},
    {"ab+c", "ab"},
    {"ab*c", "a"},
    {"colou?r", "color colour"},
    {"x{2}yz", "xyz"},
    {"[0-9]+zq", "zq"},
    {"a.c", "a"},
    {"[]a]xyz", "xyz"},
    {"[^]a]xyz", "xyz"},
    {"[[:alpha:]]xyz", "xyz"},
    {"[\\]]xyz", "xyz"},
    {"[\\x00-\\x1f]xyz", "xyz"},
    {"\\bonload\\b", "onload"},
    {"(?i)^https?://([a-z]+\\.)*(evil|bad)\\.(com|ru)", "bad.com bad.ru evil.com evil.ru"},
    /* a literal longer than the analysis keeps: a head or a tail of it */
    {"abcdefghijklmnopqrstuvwxyz", "klmnopqrstuvwxyz"},
    /* unfilterable: can match "", or a construct the analysis does not follow */
    {"", "-"},
    {"a*", "-"},
    {"(abc)?", "-"},
    {".*", "-"},
    {"a|b*", "-"},
    {"^$", "-"},
    {"(?x)a b c", "-"},
    {"(?=abc)abc", "-"},
    {"(?#note)abc", "-"},
    {"(?<n>abc)", "-"},
    {"\\Qabc\\E", "-"},
    {"\\x{41}bc", "-"},
    {"\\101bc", "-"},
    {"(a)\\1", "-"},
    {"\\p{L}abc", "-"},
    {"a{,2}bc", "-"},
    {"{}abc", "-"},
    {"abc]", "-"},
    {"[[.a.]]abc", "-"},
    {"(*UTF8)abc", "-"},
    {"\xc3\xa9", "-"},
};

TEST(factors_of_patterns)
{
    for (size_t i = 0; i < sizeof factor_cases / sizeof factor_cases[0]; i++) {
        char buf[1024];
        const char *got = factors(factor_cases[i].pattern, buf, sizeof buf);
        if (strcmp(got, factor_cases[i].want) != 0) {
            T_FAILF("/%s/: got \"%s\", want \"%s\"", factor_cases[i].pattern, got,
                    factor_cases[i].want); /* and on: every wrong case is listed */
        }
    }
}

/* Whether vectorscan (no filter) finds pattern in subject. */
static int hs_match(bw_regex_db *db, bw_regex_scratch *s, bw_slice subject)
{
    uint64_t bits[1];
    bw_error err;
    if (bw__regex_scan_unfiltered(db, s, subject, bits, 1, &err) != BW_OK)
        return -1;
    return (int)(bits[0] & 1u);
}

/* Patterns for the soundness check: the WAF kind, and the awkward corners
 * of the syntax the analysis does follow. */
static const char *const sound_patterns[] = {
    "(?i)union(\\s|\\+|%20|/\\*.*\\*/)+(all(\\s|\\+|%20)+)?select",
    "(?i)(%27|')\\s*(or|and)\\s*(%27|')?\\d+(%27|')?\\s*=\\s*(%27|')?\\d+",
    "(?i)(%27|')(\\s|%20)*(--|%23|#)",
    "(?i)(<|%3c)\\s*script",
    "(\\.\\.|%2e%2e)(/|%2f|\\\\|%5c)",
    "(?i)(;|%3b|\\||%7c|`)\\s*(cat|sh|nc)(\\s|%20|\\+)",
    "(?i)\\$\\{(jndi|lower|env)",
    "\\(\\)\\s*\\{\\s*:;\\s*\\}\\s*;",
    "(?i)\\.(old|orig|save)$",
    "^\\s*(0\\.0\\.0\\.0|169\\.254)",
    "ab{2,3}c",
    "a(b|)c",
    "x[abc]y",
    "(?i)AB(?-i)cd",
    "(?i)bot",
    "(?i)(sqlmap|nikto|zgrab)",
    "(?i)\\x24\\x7bjndi\\x3a",
    "1\\.2\\.3",
    "bot",
    "(?i)^bot",
    "(?i)bot\\b",
    "(?-i)bot",
    "(?s)a.b",
    "a\\x2ab",
    "(ab)+c",
    "(a|bc)(d|ef)g",
    "\\bword\\b",
    "q+?r",
};

/* Subjects built from the pattern's own bytes and a few others, so that
 * matches are frequent. */
static size_t gen_subject(uint64_t *rng, const char *pattern, char *out, size_t cap)
{
    static const char extra[] = "abcAB '.;/%2e7cs\\{}():=$x01 \n";
    size_t plen = strlen(pattern);
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = (size_t)(*rng >> 33) % cap;
    for (size_t i = 0; i < n; i++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(*rng >> 33);
        if (r % 3 && plen) {
            /* a run of the pattern's bytes, case flipped at random */
            size_t at = (r >> 2) % plen, run = 1 + (r >> 12) % 6;
            for (size_t k = 0; k < run && i < n; k++, i++) {
                char c = pattern[(at + k) % plen];
                if ((r >> 20) & 1u && c >= 'a' && c <= 'z')
                    c = (char)(c - 32);
                out[i] = c;
            }
            i--;
        } else {
            out[i] = extra[(r >> 2) % (sizeof extra - 1)];
        }
    }
    return n;
}

TEST(never_rules_out_a_match)
{
    uint64_t rng = 42;
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    size_t matches = 0;
    for (size_t i = 0; i < sizeof sound_patterns / sizeof sound_patterns[0]; i++) {
        bw_slice p = S(sound_patterns[i]);
        bw_regex_db *db;
        size_t bad;
        bw_error err;
        CHECK(bw_regex_db_build(&p, 1, &db, &bad, &err) == BW_OK);
        CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
        struct bw_prefilter pf;
        bw_prefilter_build(&pf, &p, 1);
        if (!pf.active) {
            T_FAILF("/%s/ is not filtered", sound_patterns[i]);
            break;
        }
        for (int k = 0; k < 4000; k++) {
            char buf[96];
            size_t n = gen_subject(&rng, sound_patterns[i], buf, sizeof buf);
            char *heap = malloc(n ? n : 1); /* exact size: ASan sees an overread */
            memcpy(heap, buf, n);
            bw_slice subj = bw_slice_make(heap, n);
            int m = hs_match(db, &s, subj);
            uint64_t bits[1] = {0}, sbits[1] = {0};
            bool scan = bw_prefilter_run(&pf, subj, bits);
            bool sscan = bw__prefilter_run_scalar(&pf, subj, sbits);
            free(heap);
            /* Either a scan is asked for, or the filter's bit is the answer. */
            if (m < 0 || (!scan && (int)(bits[0] & 1u) != m) || scan != sscan ||
                (!scan && bits[0] != sbits[0])) {
                T_FAILF("/%s/ on \"%.*s\": vectorscan %d, filter scan %d bits %llx, scalar "
                        "scan %d bits %llx",
                        sound_patterns[i], (int)n, buf, m, scan, (unsigned long long)bits[0], sscan,
                        (unsigned long long)sbits[0]);
                bw_regex_db_free(db);
                bw_regex_scratch_done(&s);
                return;
            }
            matches += m == 1;
        }
        bw_regex_db_free(db);
    }
    bw_regex_scratch_done(&s);
    CHECK(matches > 1000); /* the subjects did exercise matches */
}

TEST(rules_out_ordinary_values)
{
    bw_slice p[] = {S("(?i)union\\s+select"), S("(?i)(%27|')\\s*or"), S("(?i)<\\s*script"),
                    S("(\\.\\.|%2e%2e)/")};
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, p, 4);
    CHECK(pf.active);
    CHECK(!bw_prefilter_may_match(&pf, S("")));
    CHECK(!bw_prefilter_may_match(&pf, S("utm_source=newsletter&utm_medium=email")));
    CHECK(!bw_prefilter_may_match(
        &pf, S("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxODQyIn0.abc&redirect=%2Faccount")));
    CHECK(!bw_prefilter_may_match(&pf, S("a/b/./c..d"))); /* only "../" or "%2e%2e/" */
    CHECK(bw_prefilter_may_match(&pf, S("id=1 UNION SELECT")));
    CHECK(bw_prefilter_may_match(&pf, S("id=1%27%20or%201=1")));
    CHECK(bw_prefilter_may_match(&pf, S("x=<ScRiPt>")));
    CHECK(bw_prefilter_may_match(&pf, S("a/../b")));
    /* at the very start and end, and one byte short */
    CHECK(bw_prefilter_may_match(&pf, S("select")));
    CHECK(bw_prefilter_may_match(&pf, S("xx'")));
    CHECK(!bw_prefilter_may_match(&pf, S("selec")));
    CHECK(!bw_prefilter_may_match(&pf, S("elect")));
}

TEST(simd_and_scalar_agree_at_every_length)
{
    bw_slice p[] = {S("(?i)jndi"), S("'"), S("ab"), S("xyzzy")};
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, p, 4);
    CHECK(pf.active);
    uint64_t rng = 7;
    static const char alpha[] = "abjndiJNDIxyz'ZY";
    for (size_t len = 0; len <= 200; len++)
        for (int k = 0; k < 50; k++) {
            char *buf = malloc(len ? len : 1);
            for (size_t i = 0; i < len; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = alpha[(rng >> 33) % (sizeof alpha - 1)];
            }
            bw_slice in = bw_slice_make(buf, len);
            uint64_t ab[1] = {0}, bb[1] = {0};
            bool sa = bw_prefilter_run(&pf, in, ab), sb = bw__prefilter_run_scalar(&pf, in, bb);
            bool a = sa || ab[0], b = sb || bb[0];
            if (!sa && !sb && ab[0] != bb[0]) {
                T_FAILF("length %zu: simd bits %llx, scalar bits %llx", len,
                        (unsigned long long)ab[0], (unsigned long long)bb[0]);
                free(buf);
                return;
            }
            bool want = false;
            for (size_t i = 0; i < len && !want; i++) {
                want = buf[i] == '\'';
                for (size_t q = 0; q < 4 && !want; q++) {
                    const char *t = q == 0 ? "jndi" : q == 1 ? "ab" : q == 2 ? "xyzzy" : "";
                    size_t tl = strlen(t);
                    want = tl && i + tl <= len && strncasecmp(buf + i, t, tl) == 0;
                }
            }
            free(buf);
            if (a != b || a != want) {
                T_FAILF("length %zu: simd %d, scalar %d, want %d", len, a, b, want);
                return;
            }
        }
}

/* "(t00|t01|...)" with n alternatives. */
static void alternation(char *buf, size_t n)
{
    size_t o = 0;
    buf[o++] = '(';
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(buf + o, "%sq%02zux", i ? "|" : "", i);
    buf[o++] = ')';
    buf[o] = '\0';
}

TEST(which_patterns_are_literals)
{
    static const struct {
        const char *pattern;
        bool literal;
    } cases[] = {
        {"(?i)bot", true},
        {"(?i)(sqlmap|nikto)", true},
        {"(?i)\\x24\\x7bjndi\\x3a", true},
        {"1\\.2\\.3", true},    /* no letter: case cannot matter */
        {"/etc/passwd", false}, /* letters, case-sensitive */
        {"bot", false},
        {"(?i)^bot", false},
        {"(?i)bot$", false},
        {"(?i)\\bbot", false},
        {"(?i)b.t", false},
        {"(?i)b[o]t", false},
        {"(?i)bo+t", false},
        {"(?i)(?-i)bot", false},
        {"(?i:bot)", false},
        {"x(?i)bot", false},
        {"(?i)abcdefghijklmnopq", false}, /* longer than the 16 bytes compared */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (bw_prefilter_is_literal(S(cases[i].pattern)) != cases[i].literal)
            T_FAILF("/%s/: literal %d, want %d", cases[i].pattern, !cases[i].literal,
                    cases[i].literal);
}

TEST(literals_are_answered_without_a_scan)
{
    bw_slice p[] = {S("(?i)bot"), S("(?i)googlebot"), S("(?i)\\x24\\x7bjndi\\x3a"),
                    S("(?i)union\\s+select")};
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, p, 4);
    CHECK(pf.active);
    uint64_t bits[1] = {0};
    CHECK(!bw_prefilter_run(&pf, S("Mozilla/5.0 (compatible; Googlebot/2.1)"), bits));
    CHECK_INT_EQ(bits[0], 3); /* bot and googlebot */
    bits[0] = 0;
    CHECK(!bw_prefilter_run(&pf, S("x=${JNDI:ldap://a} bot"), bits));
    CHECK_INT_EQ(bits[0], 5);
    bits[0] = 0;
    CHECK(!bw_prefilter_run(&pf, S("nothing here"), bits));
    CHECK_INT_EQ(bits[0], 0);
    bits[0] = 0;
    CHECK(bw_prefilter_run(&pf, S("1 union select bot"), bits)); /* a regex may match: scan */
}

TEST(limit_strings_per_set)
{
    char pat[1024], buf[2048];
    alternation(pat, BW_PREFILTER_MAX_SET);
    CHECK(strcmp(factors(pat, buf, sizeof buf), "-") != 0);
    alternation(pat, BW_PREFILTER_MAX_SET + 1);
    CHECK_STR_EQ(factors(pat, buf, sizeof buf), "-");
}

TEST(limit_triggers_per_database)
{
    /* Two patterns of 32 distinct strings each: 64 triggers, then one more. */
    char a[1024], b[1024];
    alternation(a, 32);
    alternation(b, 32);
    for (char *c = b; *c; c++)
        if (*c == 'q')
            *c = 'w';
    bw_slice p[3] = {S(a), S(b), S("zzz")};
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, p, 2);
    CHECK(pf.active);
    CHECK_INT_EQ(pf.ntriggers, BW_PREFILTER_MAX_TRIGGERS);
    CHECK(bw_prefilter_may_match(&pf, S("..w31x..")));
    CHECK(!bw_prefilter_may_match(&pf, S("..w32x..")));
    bw_prefilter_build(&pf, p, 3);
    CHECK(!pf.active);
    CHECK(bw_prefilter_may_match(&pf, S("anything"))); /* inactive: always scan */
}

TEST(limit_group_depth)
{
    char pat[512], buf[64];
    size_t d = BW_PREFILTER_MAX_DEPTH, o = 0;
    for (size_t i = 0; i < d; i++)
        pat[o++] = '(';
    memcpy(pat + o, "abc", 3);
    o += 3;
    for (size_t i = 0; i < d; i++)
        pat[o++] = ')';
    pat[o] = '\0';
    CHECK_STR_EQ(factors(pat, buf, sizeof buf), "abc");
    memmove(pat + 1, pat, o + 1);
    pat[0] = '(';
    strcat(pat, ")");
    CHECK_STR_EQ(factors(pat, buf, sizeof buf), "-");
}

TEST(limit_trigger_bytes)
{
    /* The first 16 bytes of a factor are what the filter compares. */
    bw_slice p = S("go-http-client/1\\.1");
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, &p, 1);
    CHECK(pf.active);
    CHECK(bw_prefilter_may_match(&pf, S("Go-http-client/1.1")));
    CHECK(bw_prefilter_may_match(&pf, S("Go-http-client/1.0"))); /* 17th byte not compared */
    CHECK(!bw_prefilter_may_match(&pf, S("Go-http-client/2.0")));
}

TEST(scans_through_the_filter_give_the_same_bits)
{
    bw_slice p[] = {S("(?i)union\\s+select"), S("(?i)<\\s*script"), S("a*")};
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    for (size_t n = 2; n <= 3; n++) { /* filtered, then with an unfilterable pattern */
        bw_regex_db *db;
        size_t bad;
        bw_error err;
        CHECK(bw_regex_db_build(p, n, &db, &bad, &err) == BW_OK);
        CHECK(bw__regex_db_filtered(db) == (n == 2));
        CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
        const char *subjects[] = {"", "hello", "1 UNION  select", "<script", "union"};
        for (size_t i = 0; i < 5; i++) {
            uint64_t a[1] = {~0ull}, b[1] = {~0ull};
            CHECK(bw_regex_scan(db, &s, S(subjects[i]), a, 1, &err) == BW_OK);
            CHECK(bw__regex_scan_unfiltered(db, &s, S(subjects[i]), b, 1, &err) == BW_OK);
            CHECK_INT_EQ(a[0], b[0]);
        }
        bw_regex_db_free(db);
    }
    bw_regex_scratch_done(&s);
}

int main(void)
{
    RUN(factors_of_patterns);
    RUN(never_rules_out_a_match);
    RUN(rules_out_ordinary_values);
    RUN(simd_and_scalar_agree_at_every_length);
    RUN(which_patterns_are_literals);
    RUN(literals_are_answered_without_a_scan);
    RUN(limit_strings_per_set);
    RUN(limit_triggers_per_database);
    RUN(limit_group_depth);
    RUN(limit_trigger_bytes);
    RUN(scans_through_the_filter_give_the_same_bits);
    return t_done();
}
