#include <stdlib.h>

#include "rules/regex.h"
#include "rules/regex_prefilter.h"
#include "test.h"

/* Builds a one-pattern database, scans subject (copied into an exact-size
 * heap buffer so ASan sees any overread) and returns 1 match, 0 no match,
 * -1 compile error, -2 scan error. */
static int match1(const char *pattern, const char *subject, size_t subject_len)
{
    bw_slice p = bw_slice_make(pattern, strlen(pattern));
    bw_regex_db *db;
    size_t bad;
    bw_error err;
    if (bw_regex_db_build(&p, 1, &db, &bad, &err) != BW_OK) {
        printf("     compile /%s/: %s\n", pattern, err.msg);
        return -1;
    }
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    int r = -2;
    if (bw_regex_scratch_reserve(&s, db, &err) == BW_OK) {
        char *buf = malloc(subject_len ? subject_len : 1);
        memcpy(buf, subject, subject_len);
        uint64_t bits[1];
        if (bw_regex_scan(db, &s, bw_slice_make(buf, subject_len), bits, 1, &err) == BW_OK)
            r = bw_regex_bit(bits, 0);
        free(buf);
    }
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);
    return r;
}

#define M(p, s) match1((p), (s), strlen(s))

/* Expects the pattern to be rejected with exactly this message. */
static bool rejected_with(const char *pattern, const char *want)
{
    bw_error err;
    if (bw_regex_check(bw_slice_make(pattern, strlen(pattern)), &err) == BW_OK) {
        printf("     /%s/ compiled, want error \"%s\"\n", pattern, want);
        return false;
    }
    if (strcmp(err.msg, want) != 0) {
        printf("     /%s/: got \"%s\"\n            want \"%s\"\n", pattern, err.msg, want);
        return false;
    }
    return true;
}

TEST(ordinary_patterns)
{
    CHECK_INT_EQ(M("admin", "/admin/x"), 1);
    CHECK_INT_EQ(M("admin", "/Admin/x"), 0);
    CHECK_INT_EQ(M("a.c", "xabcx"), 1);
    CHECK_INT_EQ(M("a.c", "ac"), 0);
    CHECK_INT_EQ(M("colou?r", "color"), 1);
    CHECK_INT_EQ(M("colou?r", "colour"), 1);
    CHECK_INT_EQ(M("colou?r", "colouur"), 0);
    CHECK_INT_EQ(M("(foo|bar)baz", "xxbarbaz"), 1);
    CHECK_INT_EQ(M("(foo|bar)baz", "xxbazbar"), 0);
    CHECK_INT_EQ(M("a{3}", "aa"), 0);
    CHECK_INT_EQ(M("a{3}", "baaab"), 1);
    CHECK_INT_EQ(M("\\.php$", "/index.php"), 1);
    CHECK_INT_EQ(M("\\.php$", "/index.phps"), 0);
    CHECK_INT_EQ(M("\\Qa.b\\E", "a.b"), 1);
    CHECK_INT_EQ(M("\\Qa.b\\E", "axb"), 0);
}

TEST(anchors)
{
    CHECK_INT_EQ(M("^/api/", "/api/v1"), 1);
    CHECK_INT_EQ(M("^/api/", "/x/api/v1"), 0);
    CHECK_INT_EQ(M("^/api$", "/api"), 1);
    CHECK_INT_EQ(M("^/api$", "/api/"), 0);
    CHECK_INT_EQ(M("^$", ""), 1);
    CHECK_INT_EQ(M("^$", "x"), 0);
    CHECK_INT_EQ(M("\\bcmd\\b", "a cmd b"), 1);
    CHECK_INT_EQ(M("\\bcmd\\b", "acmdb"), 0);
    CHECK_INT_EQ(M("x\\z", "ax"), 1);
    CHECK_INT_EQ(M("x\\z", "ax\n"), 0);
    /* not multi-line: ^ is the start of the value only */
    CHECK_INT_EQ(M("^b", "a\nb"), 0);
    CHECK_INT_EQ(M("(?m)^b", "a\nb"), 1);
}

TEST(classes)
{
    CHECK_INT_EQ(M("^[0-9]+$", "12345"), 1);
    CHECK_INT_EQ(M("^[0-9]+$", "123a45"), 0);
    CHECK_INT_EQ(M("^\\d{3}-\\d{4}$", "555-1234"), 1);
    CHECK_INT_EQ(M("[^a-z]", "abc"), 0);
    CHECK_INT_EQ(M("[^a-z]", "abC"), 1);
    CHECK_INT_EQ(M("^\\w+$", "ab_9"), 1);
    CHECK_INT_EQ(M("\\s", "a\tb"), 1);
    CHECK_INT_EQ(M("[[:upper:]]", "abc"), 0);
    CHECK_INT_EQ(M("[[:upper:]]", "aBc"), 1);
}

TEST(case_sensitivity)
{
    CHECK_INT_EQ(M("select", "SELECT * FROM t"), 0);
    CHECK_INT_EQ(M("(?i)select", "SELECT * FROM t"), 1);
    CHECK_INT_EQ(M("(?i)select", "SeLeCt"), 1);
    CHECK_INT_EQ(M("(?i:union) ALL", "UNION ALL"), 1);
    CHECK_INT_EQ(M("(?i:union) ALL", "union all"), 0);
    CHECK_INT_EQ(M("(?i)[a-c]x", "BX"), 1);
}

/* DOTALL: `.` matches a newline, so it cannot split a pattern; (?-s) undoes it. */
TEST(dot_matches_newline)
{
    CHECK_INT_EQ(M("union.*select", "union\nselect"), 1);
    CHECK_INT_EQ(M("(?-s)union.*select", "union\nselect"), 0);
    CHECK_INT_EQ(M("(?-s)union.*select", "union all select"), 1);
}

/* Bytes, not UTF-8: binary values, NUL bytes and invalid UTF-8 are scanned. */
TEST(binary_input)
{
    CHECK_INT_EQ(match1("a\\x00b", "xa\0b", 4), 1);
    CHECK_INT_EQ(match1("\\xff\\xfe", "\x01\xff\xfe", 3), 1);
    CHECK_INT_EQ(match1("^.$", "\xc3", 1), 1);      /* one byte, not a code point */
    CHECK_INT_EQ(match1("^..$", "\xc3\xa9", 2), 1); /* é is two bytes */
    CHECK_INT_EQ(match1("é", "caf\xc3\xa9", 5), 1);
}

TEST(empty_matching_patterns)
{
    CHECK_INT_EQ(M("", ""), 1);
    CHECK_INT_EQ(M("", "abc"), 1);
    CHECK_INT_EQ(M("a*", ""), 1);
    CHECK_INT_EQ(M("a*", "bbb"), 1);
    CHECK_INT_EQ(M("^a*$", "bbb"), 0);
}

TEST(several_patterns_one_db)
{
    static const char *const pats[] = {"^/admin", "(?i)curl/", "\\.php$", "x{2}", "^$", "zzz"};
    enum { N = 6 };
    bw_slice p[N];
    for (size_t i = 0; i < N; i++)
        p[i] = bw_slice_make(pats[i], strlen(pats[i]));
    bw_regex_db *db;
    size_t bad = 99;
    bw_error err;
    CHECK(bw_regex_db_build(p, N, &db, &bad, &err) == BW_OK);
    CHECK_INT_EQ(bw_regex_db_count(db), N);
    CHECK(bw_regex_db_bytes(db) > sizeof(struct bw_prefilter)); /* the automaton and the filter */
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);

    uint64_t bits[2] = {~(uint64_t)0, ~(uint64_t)0};
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("/admin/index.php"), bits, 2, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], (1u << 0) | (1u << 2));
    CHECK_INT_EQ(bits[1], 0); /* words past the count are cleared too */
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("CURL/7.0 xx"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], (1u << 1) | (1u << 3));
    CHECK(bw_regex_scan(db, &s, BW_SLICE_EMPTY, bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 1u << 4);
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("nothing"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 0);
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("/adminxx.phpzzz"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], (1u << 0) | (1u << 3) | (1u << 5));
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);
}

/* Ids past 64 land in the right word and bit. */
TEST(ids_past_one_word)
{
    enum { N = 130 };
    char text[N][16];
    bw_slice p[N];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], "^k%d$", i);
        p[i] = bw_slice_make(text[i], strlen(text[i]));
    }
    bw_regex_db *db;
    size_t bad;
    bw_error err;
    CHECK(bw_regex_db_build(p, N, &db, &bad, &err) == BW_OK);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    uint64_t bits[BW_REGEX_BITSET_WORDS(N)];
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("k1"), bits, 2, &err) == BW_ERR); /* too few words */
    static const int probe[] = {0, 63, 64, 65, 127, 128, 129};
    for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
        char in[16];
        int len = snprintf(in, sizeof in, "k%d", probe[k]);
        CHECK(bw_regex_scan(db, &s, bw_slice_make(in, (size_t)len), bits, 3, &err) == BW_OK);
        for (int i = 0; i < N; i++)
            CHECK_INT_EQ(bw_regex_bit(bits, (size_t)i), i == probe[k]);
    }
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);
}

/* One scratch serves several databases once reserved for each. */
TEST(one_scratch_many_dbs)
{
    bw_slice a = BW_SLICE_LIT("^a"),
             b[3] = {BW_SLICE_LIT("b+c"), BW_SLICE_LIT("(?i)d"), BW_SLICE_LIT("[0-9]{5}")};
    bw_regex_db *da, *db;
    size_t bad;
    bw_error err;
    CHECK(bw_regex_db_build(&a, 1, &da, &bad, &err) == BW_OK);
    CHECK(bw_regex_db_build(b, 3, &db, &bad, &err) == BW_OK);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    uint64_t bits[1];
    /* not reserved yet: an error, not a crash */
    CHECK(bw_regex_scan(da, &s, BW_SLICE_LIT("a"), bits, 1, &err) == BW_ERR);
    CHECK(bw_regex_scratch_reserve(&s, da, &err) == BW_OK);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    CHECK(bw_regex_scan(da, &s, BW_SLICE_LIT("abc"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 1);
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("bbc D 12345"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 7);
    bw_regex_scratch_done(&s);
    bw_regex_scratch_done(&s); /* twice is harmless */
    bw_regex_db_free(da);
    bw_regex_db_free(db);
}

TEST(empty_database)
{
    bw_regex_db *db;
    size_t bad;
    bw_error err;
    CHECK(bw_regex_db_build(NULL, 0, &db, &bad, &err) == BW_OK);
    CHECK_INT_EQ(bw_regex_db_count(db), 0);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    uint64_t bits[1] = {5};
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("x"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 0);
    bw_regex_scratch_done(&s);
    CHECK(bw_regex_db_free(db) == NULL);
    CHECK(bw_regex_db_free(NULL) == NULL);
}

TEST(unsupported_constructs_rejected)
{
    CHECK(rejected_with("(a+)+\\1", "regex \"(a+)+\\1\": backreferences are not supported "
                                    "(bulwark runs every regex in linear time)"));
    CHECK(rejected_with("(?<n>a)\\k<n>", "regex \"(?<n>a)\\k<n>\": backreferences are not "
                                         "supported (bulwark runs every regex in linear time)"));
    CHECK(rejected_with("foo(?=bar)", "regex \"foo(?=bar)\": lookahead and lookbehind assertions "
                                      "are not supported (bulwark runs every regex in linear "
                                      "time)"));
    CHECK(rejected_with("(?<!x)y", "regex \"(?<!x)y\": lookahead and lookbehind assertions are "
                                   "not supported (bulwark runs every regex in linear time)"));
    CHECK(rejected_with("(?>a+)b", "regex \"(?>a+)b\": atomic groups are not supported (bulwark "
                                   "runs every regex in linear time)"));
    CHECK(rejected_with("a++b", "regex \"a++b\": possessive quantifiers are not supported "
                                "(bulwark runs every regex in linear time)"));
    CHECK(rejected_with("(a(?1)?b)", "regex \"(a(?1)?b)\": recursion and subroutine calls are "
                                     "not supported (bulwark runs every regex in linear time)"));
    CHECK(rejected_with("(a)?(?(1)b|c)", "regex \"(a)?(?(1)b|c)\": conditional groups are not "
                                         "supported (bulwark runs every regex in linear time)"));
    CHECK(rejected_with("a\\Kb", "regex \"a\\Kb\": \\K is not supported (bulwark runs every regex "
                                 "in linear time)"));
    CHECK(rejected_with("(*UTF8)é", "regex \"(*UTF8)\\xc3\\xa9\": leading verbs like (*UTF8) are "
                                    "not supported; patterns match bytes"));
    CHECK(rejected_with("a(*FAIL)", "regex \"a(*FAIL)\": control verbs like (*ACCEPT) are not "
                                    "supported"));
    CHECK(rejected_with("a{1,100000}", "regex \"a{1,100000}\": a repeat count is too large to run "
                                       "in linear time"));
}

TEST(syntax_errors_rejected)
{
    CHECK(rejected_with("(a|b", "regex \"(a|b\": not a valid regular expression: missing close "
                                "parenthesis for group started at index 0"));
    CHECK(rejected_with("[z-a]", "regex \"[z-a]\": not a valid regular expression: range out of "
                                 "order in character class at index 3"));
    CHECK(rejected_with("a{2,1}", "regex \"a{2,1}\": not a valid regular expression: invalid "
                                  "repeat at index 1"));
    bw_error err;
    bw_slice nul = bw_slice_make("a\0b", 3);
    CHECK(bw_regex_check(nul, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "regex \"a\\x00b\": contains a NUL byte; write it as \\x00");
}

/* In a multi-pattern build the error names the offending pattern's index. */
TEST(bad_index_reported)
{
    bw_slice p[4] = {BW_SLICE_LIT("ok"), BW_SLICE_LIT("fine+"), BW_SLICE_LIT("(x)\\1"),
                     BW_SLICE_LIT("also ok")};
    bw_regex_db *db;
    size_t bad = 99;
    bw_error err;
    CHECK(bw_regex_db_build(p, 4, &db, &bad, &err) == BW_ERR);
    CHECK_INT_EQ(bad, 2);
    CHECK_STR_EQ(err.msg, "regex \"(x)\\1\": backreferences are not supported (bulwark runs every "
                          "regex in linear time)");
    p[2] = BW_SLICE_LIT("[");
    CHECK(bw_regex_db_build(p, 4, &db, &bad, &err) == BW_ERR);
    CHECK_INT_EQ(bad, 2);
}

TEST(pattern_length_limit)
{
    char *p = malloc(BW_REGEX_MAX_PATTERN_BYTES + 1);
    memset(p, 'a', BW_REGEX_MAX_PATTERN_BYTES + 1);
    bw_error err;
    CHECK(bw_regex_check(bw_slice_make(p, BW_REGEX_MAX_PATTERN_BYTES), &err) == BW_OK);
    CHECK(bw_regex_check(bw_slice_make(p, BW_REGEX_MAX_PATTERN_BYTES + 1), &err) == BW_ERR);
    CHECK(strstr(err.msg, "is 4097 bytes long, over the limit of 4096 bytes") != NULL);
    CHECK(strncmp(err.msg, "regex \"aaaa", 11) == 0); /* quoted, shortened */
    CHECK(strlen(err.msg) < 200);
    free(p);
}

TEST(pattern_count_limit)
{
    enum { N = BW_REGEX_MAX_PATTERNS + 1 };
    static char text[N][16];
    static bw_slice p[N];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], "id%dz", i);
        p[i] = bw_slice_make(text[i], strlen(text[i]));
    }
    bw_regex_db *db;
    size_t bad = 0;
    bw_error err;
    CHECK(bw_regex_db_build(p, N - 1, &db, &bad, &err) == BW_OK);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    uint64_t bits[BW_REGEX_MAX_BITSET_WORDS];
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("id511z id0z"), bits, BW_REGEX_MAX_BITSET_WORDS,
                        &err) == BW_OK);
    for (int i = 0; i < N - 1; i++)
        CHECK_INT_EQ(bw_regex_bit(bits, (size_t)i), i == 0 || i == 511);
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);

    CHECK(bw_regex_db_build(p, N, &db, &bad, &err) == BW_ERR);
    CHECK_INT_EQ(bad, N);
    CHECK_STR_EQ(err.msg, "513 regexes on one field, over the limit of 512");
}

TEST(input_length_limit)
{
    bw_slice p = BW_SLICE_LIT("b$");
    bw_regex_db *db;
    size_t bad;
    bw_error err;
    CHECK(bw_regex_db_build(&p, 1, &db, &bad, &err) == BW_OK);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    char *in = malloc(BW_REGEX_MAX_INPUT_BYTES + 1);
    memset(in, 'a', BW_REGEX_MAX_INPUT_BYTES + 1);
    in[BW_REGEX_MAX_INPUT_BYTES - 1] = 'b';
    uint64_t bits[1] = {0};
    /* at the limit: scanned whole, so the last byte counts */
    CHECK(bw_regex_scan(db, &s, bw_slice_make(in, BW_REGEX_MAX_INPUT_BYTES), bits, 1, &err) ==
          BW_OK);
    CHECK_INT_EQ(bits[0], 1);
    /* past it: an error (unknown to the evaluator), never a truncated scan */
    bits[0] = 7;
    CHECK(bw_regex_scan(db, &s, bw_slice_make(in, BW_REGEX_MAX_INPUT_BYTES + 1), bits, 1, &err) ==
          BW_ERR);
    CHECK_INT_EQ(bits[0], 7);
    CHECK_STR_EQ(err.msg,
                 "regex scan: value of 16777217 bytes is over the limit of 16777216 bytes");
    free(in);
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);
}

/* The regex of the 2019-07-02 WAF outage (DESIGN.md §1 lesson 3). PCRE
 * backtracks catastrophically on it because of `.*(?:.*=.*)`; vectorscan
 * compiles it into an automaton and scans each input once. The test only
 * requires that the scans finish with the right answer: no clock. */
static const char OUTAGE_RE[] =
    "(?:(?:\\\"|'|\\]|\\}|\\\\|\\d|(?:nan|infinity|true|false|null|undefined|symbol|math)|\\`|\\-|"
    "\\+)+[)]*;?((?:\\s|-|~|!|{}|\\|\\||\\+)*.*(?:.*=.*)))";

TEST(outage_regex_2019_runs_linearly)
{
    bw_slice p = bw_slice_make(OUTAGE_RE, sizeof OUTAGE_RE - 1);
    bw_regex_db *db;
    size_t bad;
    bw_error err;
    CHECK(bw_regex_db_build(&p, 1, &db, &bad, &err) == BW_OK);
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_scratch_reserve(&s, db, &err) == BW_OK);
    enum { LEN = 100 * 1024 };
    char *in = malloc(LEN);
    uint64_t bits[1];

    /* "x=" then dashes: the post-mortem's worst case shape, no match needed
     * to start (a '-' starts the first group) and an '=' nowhere after. */
    in[0] = 'x';
    in[1] = '=';
    memset(in + 2, '-', LEN - 2);
    CHECK(bw_regex_scan(db, &s, bw_slice_make(in, LEN), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 0);

    /* dashes then "=x": matches */
    memset(in, '-', LEN);
    in[LEN - 2] = '=';
    in[LEN - 1] = 'x';
    CHECK(bw_regex_scan(db, &s, bw_slice_make(in, LEN), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 1);

    /* 100 KiB with no '=' at all: no match */
    for (size_t i = 0; i < LEN; i++)
        in[i] = "-1true+;~x"[i % 10];
    CHECK(bw_regex_scan(db, &s, bw_slice_make(in, LEN), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 0);

    /* the short strings of the post-mortem */
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("x=x"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 0); /* no leading quote/digit/keyword/sign */
    CHECK(bw_regex_scan(db, &s, BW_SLICE_LIT("1x=x"), bits, 1, &err) == BW_OK);
    CHECK_INT_EQ(bits[0], 1);
    free(in);
    bw_regex_scratch_done(&s);
    bw_regex_db_free(db);
}

/* Debian's vectorscan 5.4.9 misses these matches in its AVX-512 runtime on
 * values of 120 bytes or more (regex.c, pick_platform). Every length around
 * the 16/32/64-byte vector edges, with each pattern alone and all together. */
TEST(long_runs_before_the_match_avx512_regression)
{
    static const char *const pats[] = {"a.*=", "a+[^=]*=", "-+.*=", "(?-s)a.*=", "a+b*="};
    enum { N = 5, MAXLEN = 300 };
    bw_slice p[N];
    for (size_t i = 0; i < N; i++)
        p[i] = bw_slice_make(pats[i], strlen(pats[i]));
    bw_regex_db *all, *one[N];
    size_t bad;
    bw_error err;
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    CHECK(bw_regex_db_build(p, N, &all, &bad, &err) == BW_OK);
    CHECK(bw_regex_scratch_reserve(&s, all, &err) == BW_OK);
    for (size_t i = 0; i < N; i++) {
        CHECK(bw_regex_db_build(&p[i], 1, &one[i], &bad, &err) == BW_OK);
        CHECK(bw_regex_scratch_reserve(&s, one[i], &err) == BW_OK);
    }
    char *in = malloc(MAXLEN + 2);
    for (size_t n = 1; n <= MAXLEN; n++) {
        for (int fill = 0; fill < 2; fill++) {
            memset(in, fill ? '-' : 'a', n);
            in[n] = '=';
            in[n + 1] = 'x';
            uint64_t want = fill ? 1u << 2 : (1u << 0) | (1u << 1) | (1u << 3) | (1u << 4);
            uint64_t bits[1];
            CHECK(bw_regex_scan(all, &s, bw_slice_make(in, n + 2), bits, 1, &err) == BW_OK);
            if (bits[0] != want)
                printf("     fill %c, %zu bytes: got %#llx\n", fill ? '-' : 'a', n,
                       (unsigned long long)bits[0]);
            CHECK_INT_EQ(bits[0], want);
            for (size_t i = 0; i < N; i++) {
                CHECK(bw_regex_scan(one[i], &s, bw_slice_make(in, n + 2), bits, 1, &err) == BW_OK);
                CHECK_INT_EQ(bits[0], (want >> i) & 1u);
            }
        }
    }
    free(in);
    for (size_t i = 0; i < N; i++)
        bw_regex_db_free(one[i]);
    bw_regex_db_free(all);
    bw_regex_scratch_done(&s);
}

/* ---- sharing between snapshots (bw_regex_cache_stats) ------------------ */

static bw_regex_db *build_list(const char *const *pats, size_t n)
{
    bw_slice sl[8];
    for (size_t i = 0; i < n; i++)
        sl[i] = bw_slice_make(pats[i], strlen(pats[i]));
    bw_regex_db *db = NULL;
    size_t bad;
    bw_error err;
    if (bw_regex_db_build(sl, n, &db, &bad, &err) != BW_OK)
        printf("     build: %s\n", err.msg);
    return db;
}

/* Bits of a scan of subject, or ~0 on a scan error. */
static uint64_t scan_bits(const bw_regex_db *db, const char *subject)
{
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    bw_error err;
    uint64_t bits[1] = {~(uint64_t)0};
    if (bw_regex_scratch_reserve(&s, db, &err) != BW_OK ||
        bw_regex_scan(db, &s, bw_slice_make(subject, strlen(subject)), bits, 1, &err) != BW_OK)
        bits[0] = ~(uint64_t)0;
    bw_regex_scratch_done(&s);
    return bits[0];
}

TEST(equal_pattern_sets_share_one_database)
{
    static const char *const pats[] = {"^/admin", "curl/[0-9]+", "(?i)select.+from"};
    struct bw_regex_cache_stats st0 = bw_regex_cache_stats();
    bw_regex_db *running = build_list(pats, 3);
    CHECK(running);
    struct bw_regex_cache_stats st1 = bw_regex_cache_stats();
    CHECK_INT_EQ(st1.compiled, st0.compiled + 1);
    /* The reload: the same patterns, from other memory. */
    char copy[3][32];
    const char *again[3];
    for (size_t i = 0; i < 3; i++) {
        snprintf(copy[i], sizeof copy[i], "%s", pats[i]);
        again[i] = copy[i];
    }
    bw_regex_db *next = build_list(again, 3);
    struct bw_regex_cache_stats st2 = bw_regex_cache_stats();
    CHECK(next == running);
    CHECK_INT_EQ(st2.compiled, st1.compiled);
    CHECK_INT_EQ(st2.shared, st1.shared + 1);
    /* The old snapshot goes; the new one still scans with the database. */
    bw_regex_db_free(running);
    CHECK_INT_EQ(bw_regex_cache_stats().live, st2.live);
    CHECK_INT_EQ(scan_bits(next, "/admin/x curl/8 SELECT a FROM b"), 7);
    CHECK_INT_EQ(scan_bits(next, "/x curl/"), 0);
    bw_regex_db_free(next);
    CHECK_INT_EQ(bw_regex_cache_stats().live, st0.live);
}

TEST(a_changed_pattern_set_compiles_anew)
{
    static const char *const a[] = {"^/admin", "curl/"};
    static const char *const changed[] = {"^/admin", "wget/"};
    static const char *const reordered[] = {"curl/", "^/admin"};
    static const char *const fewer[] = {"^/admin"};
    bw_regex_db *running = build_list(a, 2);
    CHECK(running);
    struct bw_regex_cache_stats st0 = bw_regex_cache_stats();
    bw_regex_db *c = build_list(changed, 2);
    bw_regex_db *r = build_list(reordered, 2); /* other ids: another database */
    bw_regex_db *f = build_list(fewer, 1);
    struct bw_regex_cache_stats st1 = bw_regex_cache_stats();
    CHECK(c && r && f);
    CHECK(c != running && r != running && f != running);
    CHECK_INT_EQ(st1.compiled, st0.compiled + 3);
    CHECK_INT_EQ(st1.shared, st0.shared);
    CHECK_INT_EQ(scan_bits(c, "/admin wget/1"), 3);
    CHECK_INT_EQ(scan_bits(c, "/admin curl/1"), 1);
    CHECK_INT_EQ(scan_bits(r, "/admin curl/1"), 3);
    CHECK_INT_EQ(scan_bits(r, "curl/1"), 1); /* id 0 is curl/ here */
    CHECK_INT_EQ(scan_bits(running, "curl/1"), 2);
    bw_regex_db_free(c);
    bw_regex_db_free(r);
    bw_regex_db_free(f);
    bw_regex_db_free(running);
}

TEST(a_checked_pattern_is_remembered_a_bad_one_is_not)
{
    bw_error err;
    bw_slice good = BW_SLICE_LIT("^/remember-me[0-9]+$");
    struct bw_regex_cache_stats st0 = bw_regex_cache_stats();
    CHECK_INT_EQ(bw_regex_check(good, &err), BW_OK);
    struct bw_regex_cache_stats st1 = bw_regex_cache_stats();
    CHECK_INT_EQ(st1.compiled, st0.compiled + 1);
    CHECK_INT_EQ(bw_regex_check(good, &err), BW_OK);
    struct bw_regex_cache_stats st2 = bw_regex_cache_stats();
    CHECK_INT_EQ(st2.compiled, st1.compiled);
    CHECK_INT_EQ(st2.checks_remembered, st1.checks_remembered + 1);
    bw_slice bad = BW_SLICE_LIT("(a)\\1");
    CHECK_INT_EQ(bw_regex_check(bad, &err), BW_ERR);
    CHECK(strstr(err.msg, "backreferences") != NULL);
    CHECK_INT_EQ(bw_regex_check(bad, &err), BW_ERR); /* found again, with its message */
    CHECK(strstr(err.msg, "backreferences") != NULL);
}

int main(void)
{
    RUN(ordinary_patterns);
    RUN(anchors);
    RUN(classes);
    RUN(case_sensitivity);
    RUN(dot_matches_newline);
    RUN(binary_input);
    RUN(empty_matching_patterns);
    RUN(several_patterns_one_db);
    RUN(ids_past_one_word);
    RUN(one_scratch_many_dbs);
    RUN(empty_database);
    RUN(unsupported_constructs_rejected);
    RUN(syntax_errors_rejected);
    RUN(bad_index_reported);
    RUN(pattern_length_limit);
    RUN(pattern_count_limit);
    RUN(input_length_limit);
    RUN(outage_regex_2019_runs_linearly);
    RUN(long_runs_before_the_match_avx512_regression);
    RUN(equal_pattern_sets_share_one_database);
    RUN(a_changed_pattern_set_compiles_anew);
    RUN(a_checked_pattern_is_remembered_a_bad_one_is_not);
    return t_done();
}
