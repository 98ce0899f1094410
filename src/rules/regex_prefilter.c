/* The literal prefilter (regex_prefilter.h): the analysis of a pattern into
 * necessary factors, at load, and the pass over a value, per scan.
 *
 * The analysis follows the string-set algebra of Russ Cox's "Regular
 * Expression Matching with a Trigram Index" (2012), with sets of strings
 * instead of trigram queries. For each node it knows either the exact set
 * of strings the node can match, or three sets that every match of the
 * node starts with (prefix), ends with (suffix) and contains (match). A
 * set holding "" says nothing. Every rule below keeps each set valid, so
 * the set finally chosen is a necessary condition for a match. */
#include "rules/regex_prefilter.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { SMAX = BW_PREFILTER_MAX_SET, LMAX = BW_PREFILTER_MAX_STRING };

struct str {
    uint8_t len;
    unsigned char b[LMAX];
};

struct set {
    uint32_t n;
    struct str s[SMAX];
};

struct info {
    bool exact_ok;     /* exact holds every string the node can match */
    struct set exact;  /* when exact_ok */
    struct set prefix; /* when !exact_ok: every match starts with one of these */
    struct set suffix; /* ... ends with one of these */
    struct set match;  /* ... contains one of these */
};

static unsigned char fold(unsigned char c)
{
    return (unsigned char)bw_ascii_lower((char)c);
}

/* ---- sets ------------------------------------------------------------------ */

static void set_top(struct set *s)
{
    s->n = 1;
    s->s[0].len = 0;
}

static bool set_says_nothing(const struct set *s)
{
    if (s->n == 0)
        return true; /* never built empty; treated as "no information" all the same */
    for (uint32_t i = 0; i < s->n; i++)
        if (s->s[i].len == 0)
            return true;
    return false;
}

/* Adds b[0..len) (len <= LMAX) unless present; false when the set is full. */
static bool set_add(struct set *s, const unsigned char *b, size_t len)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->s[i].len == len && memcmp(s->s[i].b, b, len) == 0)
            return true;
    if (s->n == SMAX)
        return false;
    s->s[s->n].len = (uint8_t)len;
    memcpy(s->s[s->n].b, b, len);
    s->n++;
    return true;
}

static bool set_union(struct set *out, const struct set *a, const struct set *b)
{
    *out = *a;
    for (uint32_t i = 0; i < b->n; i++)
        if (!set_add(out, b->s[i].b, b->s[i].len))
            return false;
    return true;
}

/* What to do with a concatenation longer than LMAX: fail (exact sets),
 * keep its head (prefix and match sets), keep its tail (suffix sets). A
 * head or a tail of a necessary string is necessary too. */
enum trunc { T_FAIL, T_HEAD, T_TAIL };

/* Every a_i followed by b_j; false when the set overflows (or, with T_FAIL,
 * a string is too long). */
static bool set_cross(struct set *out, const struct set *a, const struct set *b, enum trunc t)
{
    out->n = 0;
    for (uint32_t i = 0; i < a->n; i++)
        for (uint32_t j = 0; j < b->n; j++) {
            unsigned char buf[2 * LMAX];
            size_t la = a->s[i].len, lb = b->s[j].len, len = la + lb;
            memcpy(buf, a->s[i].b, la);
            memcpy(buf + la, b->s[j].b, lb);
            const unsigned char *from = buf;
            if (len > LMAX) {
                if (t == T_FAIL)
                    return false;
                if (t == T_TAIL)
                    from = buf + (len - LMAX);
                len = LMAX;
            }
            if (!set_add(out, from, len))
                return false;
        }
    return true;
}

static bool common_letter(unsigned char c)
{
    return c >= 'a' && c <= 'z' && strchr("etaoinsrhlcdum", c);
}

/* How likely a byte is in request text (after folding): a rough guide for
 * choosing among valid sets, which never affects correctness. */
static double byte_p(unsigned char c)
{
    if (c >= 'a' && c <= 'z') {
        if (common_letter(c))
            return 0.05;
        if (strchr("pgfwybvk", c))
            return 0.015;
        return 0.004;
    }
    if (c >= '0' && c <= '9')
        return 0.03;
    if (c != '\0' && strchr("/.-_=&,:()%+ ", c))
        return 0.05;
    if (c == ';')
        return 0.01; /* separates header parameters, rare in paths and queries */
    return 0.002;
}

/* Pieces of nearly every URL or browser header: a trigger within one
 * filters little, however rare its bytes look one by one. */
static const char *const ubiquitous[] = {
    "https://www.", "http://", "mozilla/5.0 (", "applewebkit/", "(khtml, like gecko)", ".com/"};

/* How likely a string is to occur at a given place in a value. */
static double str_p(const struct str *s)
{
    size_t k = s->len < BW_PREFILTER_TRIGGER_BYTES ? s->len : BW_PREFILTER_TRIGGER_BYTES;
    for (size_t u = 0; u < sizeof ubiquitous / sizeof ubiquitous[0]; u++) {
        size_t ul = strlen(ubiquitous[u]);
        for (size_t i = 0; i + k <= ul; i++)
            if (memcmp(ubiquitous[u] + i, s->b, k) == 0)
                return 0.5;
    }
    double p = 1;
    for (size_t i = 0; i < k; i++)
        p *= byte_p(s->b[i]);
    /* Two common letters are part of many words ("sh" in "shoes", "nc" in
     * "currency"): likelier than their letters one by one say. */
    if (k == 2 && common_letter(s->b[0]) && common_letter(s->b[1]))
        p = 0.01;
    return p;
}

/* How likely a value is to hold some string of the set (lower is better:
 * fewer scans). */
static double set_cost(const struct set *s)
{
    if (set_says_nothing(s))
        return 1e9;
    double c = 0;
    for (uint32_t i = 0; i < s->n; i++)
        c += str_p(&s->s[i]);
    return c;
}

static const struct set *set_best(const struct set *const *cands, size_t n)
{
    const struct set *best = cands[0];
    double bc = set_cost(best);
    for (size_t i = 1; i < n; i++) {
        double c = set_cost(cands[i]);
        if (c < bc)
            bc = c, best = cands[i];
    }
    return best;
}

/* ---- node information ------------------------------------------------------- */

static const struct set *pre(const struct info *x)
{
    return x->exact_ok ? &x->exact : &x->prefix;
}

static const struct set *suf(const struct info *x)
{
    return x->exact_ok ? &x->exact : &x->suffix;
}

static const struct set *mat(const struct info *x)
{
    return x->exact_ok ? &x->exact : &x->match;
}

static struct info *info_new(void)
{
    struct info *x = malloc(sizeof *x);
    if (x) {
        x->exact_ok = true;
        x->exact.n = 0;
        (void)set_add(&x->exact, (const unsigned char *)"", 0); /* matches "" only */
    }
    return x;
}

static void info_char(struct info *x, unsigned char c)
{
    x->exact_ok = true;
    x->exact.n = 0;
    (void)set_add(&x->exact, &c, 1);
}

/* Any one byte (a class, `.`, `\d`...). */
static void info_any(struct info *x)
{
    x->exact_ok = false;
    set_top(&x->prefix);
    set_top(&x->suffix);
    set_top(&x->match);
}

/* x then y, into x. */
static void info_concat(struct info *x, const struct info *y)
{
    struct set t;
    if (x->exact_ok && y->exact_ok && set_cross(&t, &x->exact, &y->exact, T_FAIL)) {
        x->exact = t;
        return;
    }
    struct set np, ns, junction;
    if (!x->exact_ok)
        np = x->prefix;
    else if (!set_cross(&np, &x->exact, pre(y), T_HEAD))
        np = x->exact;
    if (!y->exact_ok)
        ns = y->suffix;
    else if (!set_cross(&ns, suf(x), &y->exact, T_TAIL))
        ns = y->exact;
    if (!set_cross(&junction, suf(x), pre(y), T_HEAD))
        set_top(&junction);
    const struct set *cands[] = {mat(x), mat(y), &junction, &np, &ns};
    struct set nm = *set_best(cands, sizeof cands / sizeof cands[0]);
    x->exact_ok = false;
    x->prefix = np;
    x->suffix = ns;
    x->match = nm;
}

/* x or y, into x. */
static void info_alt(struct info *x, const struct info *y)
{
    struct set t;
    if (x->exact_ok && y->exact_ok && set_union(&t, &x->exact, &y->exact)) {
        x->exact = t;
        return;
    }
    struct set np, ns, nm;
    if (!set_union(&np, pre(x), pre(y)))
        set_top(&np);
    if (!set_union(&ns, suf(x), suf(y)))
        set_top(&ns);
    if (!set_union(&nm, mat(x), mat(y)))
        set_top(&nm);
    x->exact_ok = false;
    x->prefix = np;
    x->suffix = ns;
    x->match = nm;
}

#define UNBOUNDED UINT32_MAX

/* x repeated min..max times, into x. */
static void info_repeat(struct info *x, uint32_t min, uint32_t max)
{
    if (min == 1 && max == 1)
        return;
    if (min == 0) {
        if (max == 1 && x->exact_ok && set_add(&x->exact, (const unsigned char *)"", 0))
            return;  /* x?: its strings, or nothing */
        info_any(x); /* may be empty: nothing is necessary */
        return;
    }
    /* At least once: starts, ends and contains as one x does. */
    if (x->exact_ok) {
        x->prefix = x->exact;
        x->suffix = x->exact;
        x->match = x->exact;
        x->exact_ok = false;
    }
}

/* ---- the pattern parser ----------------------------------------------------
 * Only as much of vectorscan's PCRE syntax as it can be sure of; anything
 * else sets fail, and the pattern is unfilterable. The pattern compiled
 * (bw_regex_db_build runs first), so what is parsed here is valid PCRE. */

struct parser {
    const unsigned char *p, *end;
    unsigned depth;
    bool fail;
    /* What keeps a pattern whose strings are known exactly from being
     * "a literal" (see pattern_set): a zero-width assertion, or a flag
     * group other than a leading (?i). */
    bool asserts, flags;
    const unsigned char *start;
};

static bool at_end(const struct parser *ps)
{
    return ps->p >= ps->end;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* \xHH with exactly two hex digits at p (after the `x`); -1 otherwise. */
static int hex2(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 2 || bw_hex_value((char)p[0]) < 0 || bw_hex_value((char)p[1]) < 0)
        return -1;
    return bw_hex_value((char)p[0]) * 16 + bw_hex_value((char)p[1]);
}

/* A literal byte: folded; a byte >= 0x80 counts as any byte, since whether
 * vectorscan folds its case is not this file's to assume. */
static void info_byte(struct info *x, unsigned char c)
{
    if (c >= 0x80)
        info_any(x);
    else
        info_char(x, fold(c));
}

/* Skips a bracket class (the `[` consumed); any byte it may match. */
static void parse_class(struct parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;
    if (p < end && *p == '^')
        p++;
    if (p < end && *p == ']')
        p++; /* a `]` first is a member */
    for (;;) {
        if (p >= end) {
            ps->fail = true;
            return;
        }
        unsigned char c = *p;
        if (c == ']') {
            ps->p = p + 1;
            return;
        }
        if (c == '\\') {
            if (end - p < 2) {
                ps->fail = true;
                return;
            }
            unsigned char e = p[1];
            if (e == 'x') {
                if (hex2(p + 2, end) < 0) {
                    ps->fail = true;
                    return;
                }
                p += 4;
                continue;
            }
            if (is_digit(e) || strchr("cEgkNopPQu", e)) {
                ps->fail = true;
                return;
            }
            p += 2;
            continue;
        }
        if (c == '[' && end - p >= 2 && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            /* [:name:] only, name in letters */
            if (p[1] != ':') {
                ps->fail = true;
                return;
            }
            const unsigned char *q = p + 2;
            while (q < end && ((*q >= 'a' && *q <= 'z') || *q == '^'))
                q++;
            if (end - q < 2 || q[0] != ':' || q[1] != ']') {
                ps->fail = true;
                return;
            }
            p = q + 2;
            continue;
        }
        p++;
    }
}

/* {n}, {n,}, {n,m} at ps->p (the `{` not consumed); false when it is not
 * one (PCRE then reads `{` as a literal: left to fail). */
static bool parse_brace(struct parser *ps, uint32_t *min, uint32_t *max)
{
    const unsigned char *p = ps->p + 1, *end = ps->end;
    uint32_t a = 0, b = 0;
    size_t nd = 0;
    while (p < end && is_digit(*p) && nd < 6)
        a = a * 10 + (uint32_t)(*p++ - '0'), nd++;
    if (nd == 0 || nd == 6)
        return false;
    b = a;
    if (p < end && *p == ',') {
        p++;
        nd = 0;
        b = 0;
        while (p < end && is_digit(*p) && nd < 6)
            b = b * 10 + (uint32_t)(*p++ - '0'), nd++;
        if (nd == 6)
            return false;
        if (nd == 0)
            b = UNBOUNDED;
    }
    if (p >= end || *p != '}')
        return false;
    ps->p = p + 1;
    *min = a;
    *max = b;
    return true;
}

static struct info *parse_alt(struct parser *ps);

/* `(` consumed. */
static struct info *parse_group(struct parser *ps)
{
    if (++ps->depth > BW_PREFILTER_MAX_DEPTH) {
        ps->fail = true;
        return NULL;
    }
    if (!at_end(ps) && *ps->p == '*') {
        ps->fail = true; /* a verb */
        return NULL;
    }
    if (!at_end(ps) && *ps->p == '?') {
        /* (?flags) or (?flags:...), flags from i m s U and '-'. */
        const unsigned char *p = ps->p + 1;
        while (p < ps->end && *p != '\0' && strchr("imsU-", *p))
            p++;
        if (p >= ps->end || (*p != ')' && *p != ':')) {
            ps->fail = true; /* lookaround, named group, comment, x flag... */
            return NULL;
        }
        if (!(ps->p - 1 == ps->start && p - ps->p == 2 && ps->p[1] == 'i' && *p == ')'))
            ps->flags = true; /* anything but a leading (?i) */
        ps->p = p + 1;
        if (*p == ')') {
            ps->depth--;
            return info_new(); /* sets flags for what follows: matches "" */
        }
    }
    struct info *x = parse_alt(ps);
    if (!x)
        return NULL;
    if (at_end(ps) || *ps->p != ')') {
        ps->fail = true;
        free(x);
        return NULL;
    }
    ps->p++;
    ps->depth--;
    return x;
}

static struct info *parse_escape(struct parser *ps)
{
    if (at_end(ps)) {
        ps->fail = true;
        return NULL;
    }
    unsigned char e = *ps->p++;
    struct info *x = info_new();
    if (!x)
        return NULL;
    switch (e) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
    case 'h':
    case 'H':
    case 'v':
    case 'V':
        info_any(x);
        return x;
    case 'b':
    case 'B':
    case 'A':
    case 'z':
    case 'Z':
        ps->asserts = true;
        return x; /* zero width */
    case 't':
        info_byte(x, '\t');
        return x;
    case 'n':
        info_byte(x, '\n');
        return x;
    case 'r':
        info_byte(x, '\r');
        return x;
    case 'f':
        info_byte(x, '\f');
        return x;
    case 'a':
        info_byte(x, 7);
        return x;
    case 'e':
        info_byte(x, 27);
        return x;
    case 'x': {
        int v = hex2(ps->p, ps->end);
        if (v < 0)
            break;
        ps->p += 2;
        info_byte(x, (unsigned char)v);
        return x;
    }
    default:
        if (is_alnum(e))
            break; /* backreference, octal, \Q, \p, \x{...}: not followed */
        info_byte(x, e);
        return x;
    }
    ps->fail = true;
    free(x);
    return NULL;
}

static struct info *parse_atom(struct parser *ps)
{
    unsigned char c = *ps->p++;
    struct info *x;
    switch (c) {
    case '(':
        return parse_group(ps);
    case '\\':
        return parse_escape(ps);
    case '[':
        parse_class(ps);
        if (ps->fail)
            return NULL;
        x = info_new();
        if (x)
            info_any(x);
        return x;
    case '.':
        x = info_new();
        if (x)
            info_any(x);
        return x;
    case '^':
    case '$':
        ps->asserts = true;
        return info_new();
    case '*':
    case '+':
    case '?':
    case '{':
    case ']':
    case '}':
        ps->fail = true; /* nothing to repeat, or a bare bracket: not followed */
        return NULL;
    default:
        x = info_new();
        if (x)
            info_byte(x, c);
        return x;
    }
}

static struct info *parse_repeat(struct parser *ps)
{
    struct info *x = parse_atom(ps);
    if (!x)
        return NULL;
    while (!at_end(ps)) {
        uint32_t min, max;
        unsigned char c = *ps->p;
        if (c == '*') {
            min = 0, max = UNBOUNDED, ps->p++;
        } else if (c == '+') {
            min = 1, max = UNBOUNDED, ps->p++;
        } else if (c == '?') {
            min = 0, max = 1, ps->p++;
        } else if (c == '{') {
            if (!parse_brace(ps, &min, &max)) {
                ps->fail = true;
                free(x);
                return NULL;
            }
        } else {
            break;
        }
        /* A lazy or possessive mark changes which match is reported, not
         * whether there is one. */
        if (!at_end(ps) && (*ps->p == '?' || *ps->p == '+'))
            ps->p++;
        info_repeat(x, min, max);
    }
    return x;
}

static struct info *parse_concat(struct parser *ps)
{
    struct info *x = info_new();
    if (!x) {
        ps->fail = true;
        return NULL;
    }
    while (!at_end(ps) && *ps->p != '|' && *ps->p != ')') {
        struct info *y = parse_repeat(ps);
        if (!y) {
            ps->fail = true;
            free(x);
            return NULL;
        }
        info_concat(x, y);
        free(y);
    }
    return x;
}

static struct info *parse_alt(struct parser *ps)
{
    struct info *x = parse_concat(ps);
    while (x && !at_end(ps) && *ps->p == '|') {
        ps->p++;
        struct info *y = parse_concat(ps);
        if (!y) {
            free(x);
            return NULL;
        }
        info_alt(x, y);
        free(y);
    }
    return x;
}

static bool has_letter(const struct set *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        for (size_t j = 0; j < s->s[i].len; j++)
            if (s->s[i].b[j] >= 'a' && s->s[i].b[j] <= 'z')
                return true;
    return false;
}

/* The chosen necessary set of one pattern into *out; false when there is
 * none worth having. *literal: the pattern matches exactly the values that
 * contain one of *out, ASCII case ignored (its strings are known exactly,
 * none is cut short, it asserts nothing about where they are, and its
 * letters are all caseless: a leading (?i), or no letter at all), so the
 * filter's answer for it is the scan's. */
static bool pattern_set(bw_slice pattern, struct set *out, bool *literal)
{
    struct parser ps = {.p = (const unsigned char *)pattern.ptr,
                        .end = (const unsigned char *)pattern.ptr + pattern.len,
                        .start = (const unsigned char *)pattern.ptr};
    *literal = false;
    if (pattern.len == 0 || memchr(pattern.ptr, '\0', pattern.len))
        return false; /* vectorscan reads a pattern up to its first NUL */
    struct info *x = parse_alt(&ps);
    bool ok = x && !ps.fail && at_end(&ps);
    if (ok) {
        const struct set *cands[] = {mat(x), pre(x), suf(x)};
        *out = *set_best(cands, 3);
        ok = !set_says_nothing(out);
    }
    if (ok && x->exact_ok && !ps.asserts && !ps.flags && !set_says_nothing(&x->exact)) {
        bool caseless = pattern.len >= 4 && memcmp(pattern.ptr, "(?i)", 4) == 0;
        if (caseless || !has_letter(&x->exact)) {
            *out = x->exact;
            *literal = true;
        }
    }
    free(x);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    const struct str *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->b, y->b, n);
    return c ? c : (int)x->len - (int)y->len;
}

bool bw_prefilter_factors(bw_slice pattern, char out[][BW_PREFILTER_MAX_STRING + 1], size_t *n)
{
    struct set s;
    bool literal;
    *n = 0;
    if (!pattern_set(pattern, &s, &literal))
        return false;
    qsort(s.s, s.n, sizeof s.s[0], cmp_str);
    for (uint32_t i = 0; i < s.n; i++) {
        memcpy(out[i], s.s[i].b, s.s[i].len);
        out[i][s.s[i].len] = '\0';
    }
    *n = s.n;
    return true;
}

_Static_assert(BW_PREFILTER_MAX_STRING <= BW_PREFILTER_TRIGGER_BYTES,
               "a literal's strings are compared whole");

bool bw_prefilter_is_literal(bw_slice pattern)
{
    struct set s;
    bool literal;
    return pattern_set(pattern, &s, &literal) && literal;
}

/* ---- building the filter ------------------------------------------------------ */

struct cand {
    unsigned char b[BW_PREFILTER_TRIGGER_BYTES];
    uint8_t len, off, wlen;
    uint16_t pattern; /* BW_PREFILTER_SCAN, or the literal pattern's id */
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->wlen != y->wlen)
        return (int)x->wlen - (int)y->wlen; /* short fingerprints first */
    int c = memcmp(x->b + x->off, y->b + y->off, x->wlen);
    if (c)
        return c;
    if (x->len != y->len)
        return (int)x->len - (int)y->len;
    return (int)x->pattern - (int)y->pattern;
}

/* Whether a contains b (both folded). */
static bool contains(const struct cand *a, const struct cand *b)
{
    if (b->len > a->len)
        return false;
    for (size_t i = 0; i + b->len <= a->len; i++)
        if (memcmp(a->b + i, b->b, b->len) == 0)
            return true;
    return false;
}

/* The fingerprint of a trigger: its wlen = min(len, 3) adjacent bytes least
 * likely in request text. */
static void fingerprint(struct cand *k)
{
    k->wlen = (uint8_t)(k->len < BW_PREFILTER_WINDOW ? k->len : BW_PREFILTER_WINDOW);
    double best = 2.0;
    for (size_t j = 0; j + k->wlen <= k->len; j++) {
        double q = 1;
        for (size_t m = 0; m < k->wlen; m++)
            q *= byte_p(k->b[j + m]);
        if (q < best)
            best = q, k->off = (uint8_t)j;
    }
}

static void table_set(uint8_t *lo, uint8_t *hi, unsigned char c, uint8_t bit)
{
    lo[c & 15u] |= bit;
    hi[c >> 4] |= bit;
    if (c >= 'a' && c <= 'z') { /* the value is not folded: its upper case too */
        unsigned char u = (unsigned char)(c - ('a' - 'A'));
        lo[u & 15u] |= bit;
        hi[u >> 4] |= bit;
    }
}

#define WTAB (2 * BW_PREFILTER_MAX_TRIGGERS)

static inline uint32_t wkey(unsigned wlen, unsigned a, unsigned b)
{
    return (uint32_t)wlen << 16 | (uint32_t)a << 8 | b;
}

static inline size_t wslot(uint32_t key)
{
    return (size_t)((key * 0x9E3779B1u) >> 25) % WTAB;
}

static void bit_set(uint64_t *bits, unsigned i)
{
    bits[i >> 6] |= (uint64_t)1 << (i & 63u);
}

/* Buckets for nc triggers sorted by fingerprint length: one for each
 * length under 3 that occurs (their later tables admit every byte, which
 * would blunt a bucket shared with longer ones), the rest shared by the
 * three-byte ones in order, so that similar fingerprints share a bucket. */
static void assign_buckets(struct bw_prefilter *pf, const struct cand *c, size_t nc)
{
    size_t cls[BW_PREFILTER_WINDOW + 1] = {0};
    for (size_t i = 0; i < nc; i++)
        cls[c[i].wlen]++;
    size_t b = 0, at = 0;
    for (size_t w = 1; w < BW_PREFILTER_WINDOW; w++)
        if (cls[w]) {
            pf->bucket_first[b++] = (uint8_t)at;
            at += cls[w];
        }
    size_t left = 8 - b, rest = nc - at, per = (rest + left - 1) / left;
    for (; b < 8; b++) {
        pf->bucket_first[b] = (uint8_t)at;
        at = at + per < nc ? at + per : nc;
    }
    pf->bucket_first[8] = (uint8_t)nc;
}

/* Adds pattern i's triggers (string set s) to c[0..*nc). A trigger that
 * only asks for a scan is redundant when it contains another such trigger
 * (finding the longer one means finding the shorter); a literal's strings
 * are all kept, since each sets its own pattern's bit. False when there
 * are too many. */
static bool add_triggers(struct cand *c, size_t *nc, const struct set *s, bool literal, size_t i)
{
    for (uint32_t j = 0; j < s->n; j++) {
        struct cand k = {0};
        k.len = s->s[j].len < BW_PREFILTER_TRIGGER_BYTES ? s->s[j].len : BW_PREFILTER_TRIGGER_BYTES;
        memcpy(k.b, s->s[j].b, k.len);
        k.pattern = literal ? (uint16_t)i : BW_PREFILTER_SCAN;
        fingerprint(&k);
        if (!literal) {
            bool dup = false;
            for (size_t m = 0; m < *nc && !dup; m++)
                dup = c[m].pattern == BW_PREFILTER_SCAN && contains(&k, &c[m]);
            if (dup)
                continue;
            size_t keep = 0;
            for (size_t m = 0; m < *nc; m++)
                if (!(c[m].pattern == BW_PREFILTER_SCAN && contains(&c[m], &k)))
                    c[keep++] = c[m];
            *nc = keep;
        }
        if (*nc == BW_PREFILTER_MAX_TRIGGERS)
            return false;
        c[(*nc)++] = k;
    }
    return true;
}

void bw_prefilter_build(struct bw_prefilter *pf, const bw_slice *patterns, size_t n)
{
    memset(pf, 0, sizeof *pf);
    if (n == 0 || n >= BW_PREFILTER_SCAN)
        return; /* nothing to scan for (the scan is free), or ids too large */
    struct cand c[BW_PREFILTER_MAX_TRIGGERS];
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        struct set s;
        bool literal;
        if (!pattern_set(patterns[i], &s, &literal) || !add_triggers(c, &nc, &s, literal, i))
            return; /* unfilterable, or too many triggers to be cheaper than the scan */
    }
    qsort(c, nc, sizeof c[0], cmp_cand);
    assign_buckets(pf, c, nc);
    for (size_t b = 0; b < 8; b++)
        for (size_t t = pf->bucket_first[b]; t < pf->bucket_first[b + 1]; t++) {
            uint8_t bit = (uint8_t)(1u << b);
            const unsigned char *w = c[t].b + c[t].off;
            for (size_t k = 0; k < BW_PREFILTER_WINDOW; k++) {
                if (k < c[t].wlen) {
                    table_set(pf->lo[k], pf->hi[k], w[k], bit);
                } else {
                    for (size_t q = 0; q < 16; q++)
                        pf->lo[k][q] |= bit, pf->hi[k][q] |= bit;
                }
            }
            if (c[t].wlen == 1)
                bit_set(pf->win1, w[0]);
            else
                bit_set(pf->win2, (unsigned)w[0] << 8 | w[1]);
            struct bw_prefilter_trigger *tr = &pf->trig[t];
            unsigned char ff[16] = {0};
            memset(ff, 0xff, c[t].len);
            memcpy(tr->bytes, c[t].b, sizeof tr->bytes);
            memcpy(tr->mask, ff, sizeof tr->mask);
            tr->bytes[0] &= tr->mask[0];
            tr->bytes[1] &= tr->mask[1];
            tr->len = c[t].len;
            tr->off = c[t].off;
            for (size_t k = 0; k < c[t].wlen; k++) {
                tr->win |= (uint32_t)w[k] << (8 * k);
                tr->winmask |= (uint32_t)0xff << (8 * k);
            }
            tr->pattern = c[t].pattern;
        }
    for (size_t k = 0; k < BW_PREFILTER_WINDOW; k++)
        for (size_t x = 0; x < 256; x++)
            pf->t[k][x] = pf->lo[k][x & 15u] & pf->hi[k][x >> 4];
    for (size_t t = 0; t < nc; t++) {
        const unsigned char *w = c[t].b + c[t].off;
        uint32_t key = wkey(c[t].wlen, w[0], c[t].wlen > 1 ? w[1] : 0);
        size_t at = wslot(key);
        while (pf->wtab[at].key && pf->wtab[at].key != key)
            at = (at + 1) % WTAB;
        if (!pf->wtab[at].key) {
            pf->wtab[at].key = key;
            pf->wtab[at].first = (uint8_t)t; /* sorted: the others follow */
        }
        pf->wtab[at].count++;
    }
    pf->ntriggers = (uint8_t)nc;
    pf->active = true;
}

/* ---- the pass ------------------------------------------------------------------ */

/* The triggers of one (length, first two bytes) fingerprint, at pos in
 * p[0..n) whose bytes there (folded, 0 past the end) are here: true when
 * one that asks for a scan is there; each literal's string there sets its
 * pattern's bit. */
static bool verify_key(const struct bw_prefilter *pf, const unsigned char *p, size_t n, size_t pos,
                       uint32_t key, uint32_t here, uint64_t *bits)
{
    size_t at = wslot(key);
    while (pf->wtab[at].key != key) {
        if (!pf->wtab[at].key)
            return false;
        at = (at + 1) % WTAB;
    }
    for (size_t t = pf->wtab[at].first, end = t + pf->wtab[at].count; t < end; t++) {
        const struct bw_prefilter_trigger *tr = &pf->trig[t];
        if ((here & tr->winmask) != tr->win || pos < tr->off)
            continue;
        size_t start = pos - tr->off;
        if (tr->len > n - start)
            continue;
        uint64_t w[2] = {0, 0};
        if (n - start >= 16)
            memcpy(w, p + start, 16);
        else
            memcpy(w, p + start, n - start);
        if ((bw_ascii_lower64(w[0]) & tr->mask[0]) != tr->bytes[0] ||
            (bw_ascii_lower64(w[1]) & tr->mask[1]) != tr->bytes[1])
            continue;
        if (tr->pattern == BW_PREFILTER_SCAN)
            return true;
        bit_set(bits, tr->pattern);
    }
    return false;
}

/* A candidate at pos: most are the nibble tables' approximations, with no
 * fingerprint really there. */
static inline bool verify(const struct bw_prefilter *pf, const unsigned char *p, size_t n,
                          size_t pos, uint64_t *bits)
{
    unsigned a = fold(p[pos]), b = pos + 1 < n ? fold(p[pos + 1]) : 0;
    bool one = pf->win1[a >> 6] >> (a & 63u) & 1u;
    unsigned w = a << 8 | b;
    bool two = pos + 1 < n && (pf->win2[w >> 6] >> (w & 63u) & 1u);
    if (!one && !two)
        return false;
    uint32_t here = a | b << 8 | (pos + 2 < n ? (uint32_t)fold(p[pos + 2]) << 16 : 0);
    if (one && verify_key(pf, p, n, pos, wkey(1, a, 0), here, bits))
        return true;
    return two && (verify_key(pf, p, n, pos, wkey(2, a, b), here, bits) ||
                   verify_key(pf, p, n, pos, wkey(3, a, b), here, bits));
}

/* Position i by the byte tables (bytes past the end read as 0). */
static inline bool position_scalar(const struct bw_prefilter *pf, const unsigned char *p, size_t n,
                                   size_t i, uint64_t *bits)
{
    unsigned c =
        pf->t[0][p[i]] & pf->t[1][i + 1 < n ? p[i + 1] : 0] & pf->t[2][i + 2 < n ? p[i + 2] : 0];
    return c && verify(pf, p, n, i, bits);
}

bool bw__prefilter_run_scalar(const struct bw_prefilter *pf, bw_slice input, uint64_t *bits)
{
    if (!pf->active)
        return true;
    const unsigned char *p = (const unsigned char *)input.ptr;
    for (size_t i = 0; i < input.len; i++)
        if (position_scalar(pf, p, input.len, i, bits))
            return true;
    return false;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static inline __m256i nibble_lookup(__m256i v, __m256i lo,
                                                                    __m256i hi, __m256i nib)
{
    return _mm256_and_si256(
        _mm256_shuffle_epi8(lo, _mm256_and_si256(v, nib)),
        _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib)));
}

/* The candidates of the 32 positions at q (q[0..34) readable), those of
 * valid, p + base being q's place in the value: true when a scan is needed. */
__attribute__((target("avx2"))) static inline bool block_avx2(const struct bw_prefilter *pf,
                                                              const unsigned char *p, size_t n,
                                                              size_t base, const unsigned char *q,
                                                              uint32_t valid, const __m256i *lo,
                                                              const __m256i *hi, uint64_t *bits)
{
    const __m256i nib = _mm256_set1_epi8(0x0f);
    __m256i m = nibble_lookup(_mm256_loadu_si256((const __m256i *)q), lo[0], hi[0], nib);
    m = _mm256_and_si256(
        m, nibble_lookup(_mm256_loadu_si256((const __m256i *)(q + 1)), lo[1], hi[1], nib));
    m = _mm256_and_si256(
        m, nibble_lookup(_mm256_loadu_si256((const __m256i *)(q + 2)), lo[2], hi[2], nib));
    uint32_t z =
        ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(m, _mm256_setzero_si256())) & valid;
    while (z) {
        unsigned j = (unsigned)__builtin_ctz(z);
        z &= z - 1;
        if (verify(pf, p, n, base + j, bits))
            return true;
    }
    return false;
}

__attribute__((target("avx2"))) static bool
pass_avx2(const struct bw_prefilter *pf, const unsigned char *p, size_t n, uint64_t *bits)
{
    _Static_assert(BW_PREFILTER_WINDOW == 3, "pass_avx2 reads three fingerprint positions");
    __m256i lo[3], hi[3];
    for (size_t k = 0; k < 3; k++) {
        lo[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)pf->lo[k]));
        hi[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)pf->hi[k]));
    }
    if (n < 34) { /* one block, from a copy with zeros past the end */
        unsigned char tail[64];
        memset(tail, 0, sizeof tail);
        memcpy(tail, p, n);
        uint32_t valid = n < 32 ? ((uint32_t)1 << n) - 1u : ~(uint32_t)0;
        if (block_avx2(pf, p, n, 0, tail, valid, lo, hi, bits))
            return true;
        for (size_t i = 32; i < n; i++)
            if (position_scalar(pf, p, n, i, bits))
                return true;
        return false;
    }
    size_t i = 0;
    for (; i + 34 <= n; i += 32)
        if (block_avx2(pf, p, n, i, p + i, ~(uint32_t)0, lo, hi, bits))
            return true;
    /* The rest: a last block ending two bytes short of the end, over
     * positions already done (masked out), then the last two positions. */
    if (i < n - 2) {
        size_t base = n - 34;
        if (block_avx2(pf, p, n, base, p + base, ~(uint32_t)0 << (i - base), lo, hi, bits))
            return true;
    }
    for (size_t k = i > n - 2 ? i : n - 2; k < n; k++)
        if (position_scalar(pf, p, n, k, bits))
            return true;
    return false;
}
#endif

bool bw_prefilter_run(const struct bw_prefilter *pf, bw_slice input, uint64_t *bits)
{
    if (!pf->active)
        return true;
#if defined(__x86_64__)
    /* Up to 16 bytes the byte tables cost less than setting up the vectors. */
    if (input.len > 16 && __builtin_cpu_supports("avx2"))
        return pass_avx2(pf, (const unsigned char *)input.ptr, input.len, bits);
#endif
    return bw__prefilter_run_scalar(pf, input, bits);
}

bool bw_prefilter_may_match(const struct bw_prefilter *pf, bw_slice input)
{
    uint64_t bits[(BW_PREFILTER_SCAN + 1u) / 64u];
    memset(bits, 0, sizeof bits);
    if (bw_prefilter_run(pf, input, bits))
        return true;
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (bits[i])
            return true;
    return false;
}
