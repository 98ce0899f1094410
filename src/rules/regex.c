/* Linear-time regex through vectorscan: multi-pattern databases built at
 * load, scanned once per value. See regex.h for the semantics and the thread
 * rules. This file is the only one that includes <hs/hs.h>. */
#include "rules/regex.h"

#include <hs/hs.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef hs_error_t (*scan_fn)(const hs_database_t *db, const char *data, unsigned int length,
                              unsigned int flags, hs_scratch_t *scratch,
                              match_event_handler on_event, void *ctx);

struct bw_regex_db {
    hs_database_t *hs;
    scan_fn scan; /* hs_scan, or the AVX2 variant (see pick_platform) */
    size_t count;
    size_t bytes;
};

/* Debian's vectorscan 5.4.9 is a "fat" build: hs_scan dispatches (ifunc) to
 * a core2, corei7, AVX2 or AVX-512 copy of the runtime by the host CPU. The
 * AVX-512 copy misses matches: on a host with AVX-512, `a.*=` (DOTALL) or
 * `a+[^=]*=` finds nothing in 120 or more 'a's followed by "=x", while every
 * other copy matches (the upstream AVX-512 vermicelli tail bug, fixed in
 * VectorCamp/vectorscan PR #378, after 5.4.9). A WAF that silently misses a
 * match is a bypass, so when the library exports the AVX2 copy and the CPU
 * runs AVX2, databases are compiled for AVX2 (no AVX-512 engines) and
 * scanned with the AVX2 copy directly. Otherwise hs_scan picks a copy older
 * than AVX-512 by itself. test_regex.c holds the regression test. */
extern hs_error_t avx2_hs_scan(const hs_database_t *db, const char *data, unsigned int length,
                               unsigned int flags, hs_scratch_t *scratch,
                               match_event_handler on_event, void *ctx) __attribute__((weak));

static scan_fn pick_platform(hs_platform_info_t *plat)
{
    if (hs_populate_platform(plat) != HS_SUCCESS)
        memset(plat, 0, sizeof *plat); /* generic: valid everywhere */
    __builtin_cpu_init();
    if (avx2_hs_scan && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2")) {
        plat->cpu_features &= HS_CPU_FEATURES_AVX2;
        return avx2_hs_scan;
    }
    plat->cpu_features &=
        ~(unsigned long long)(HS_CPU_FEATURES_AVX512 | HS_CPU_FEATURES_AVX512VBMI);
    return hs_scan;
}

/* Flags for every pattern (regex.h "Semantics"). SINGLEMATCH: one report per
 * pattern is all the evaluator needs, and it lets vectorscan stop tracking a
 * pattern once it has matched. */
static const unsigned PATTERN_FLAGS = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_DOTALL;

#define LINEAR "(bulwark runs every regex in linear time)"

/* Vectorscan's messages, turned into sentences for a user. The first entry
 * whose needle occurs in vectorscan's message wins; anything else is passed
 * through as a syntax error. */
static const struct {
    const char *needle;
    const char *say;
} known_errors[] = {
    {"Back-reference", "backreferences are not supported " LINEAR},
    {"back reference", "backreferences are not supported " LINEAR},
    {"Zero-width assertion", "lookahead and lookbehind assertions are not supported " LINEAR},
    {"Atomic group", "atomic groups are not supported " LINEAR},
    {"Possessive quantifier", "possessive quantifiers are not supported " LINEAR},
    {"Subpattern reference", "recursion and subroutine calls are not supported " LINEAR},
    {"conditional reference", "conditional groups are not supported " LINEAR},
    {"Conditional", "conditional groups are not supported " LINEAR},
    {"Bounded repeat is too large", "a repeat count is too large to run in linear time"},
    {"Pattern is too large", "the pattern is too large to compile into an automaton"},
    {"Resource limit exceeded", "the pattern is too large to compile into an automaton"},
    {"control verb", "control verbs like (*ACCEPT) are not supported"},
    {"\\K", "\\K is not supported " LINEAR},
    {"\\R", "\\R is not supported; write (?:\\r\\n|\\n|\\r)"},
    {"\\X", "\\X is not supported in byte mode"},
};

/* Quotes the pattern for a message: at most 60 bytes, non-printable bytes
 * as \xNN, so a message never carries raw control bytes. */
static void quote_pattern(bw_slice p, char *out, size_t cap)
{
    size_t o = 0;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < p.len; i++) {
        unsigned char c = (unsigned char)p.ptr[i];
        if (o + 8 >= cap || i >= 60) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static bw_status pattern_error(bw_error *err, bw_slice p, const char *fmt, const char *detail)
{
    char q[256];
    quote_pattern(p, q, sizeof q);
    bw_error tmp;
    (void)bw_error_set(&tmp, fmt, detail);
    return bw_error_set(err, "regex \"%s\": %s", q, tmp.msg);
}

static bw_status translate_hs_error(bw_error *err, bw_slice p, const char *hs_msg)
{
    for (size_t i = 0; i < sizeof known_errors / sizeof known_errors[0]; i++)
        if (strstr(hs_msg, known_errors[i].needle))
            return pattern_error(err, p, "%s", known_errors[i].say);
    /* "Missing close parenthesis for group started at index 0." ->
     * "not a valid regular expression: missing close parenthesis ..." */
    char m[256];
    size_t n = strlen(hs_msg);
    if (n >= sizeof m)
        n = sizeof m - 1;
    memcpy(m, hs_msg, n);
    m[n] = '\0';
    if (n > 0 && m[n - 1] == '.')
        m[n - 1] = '\0';
    if (m[0] >= 'A' && m[0] <= 'Z')
        m[0] = (char)(m[0] - 'A' + 'a');
    return pattern_error(err, p, "not a valid regular expression: %s", m);
}

/* Checks that are ours, not vectorscan's: length, NUL bytes, leading verbs. */
static bw_status precheck(bw_slice p, bw_error *err)
{
    if (p.len > BW_REGEX_MAX_PATTERN_BYTES) {
        char detail[96];
        snprintf(detail, sizeof detail, "is %zu bytes long, over the limit of %u bytes", p.len,
                 BW_REGEX_MAX_PATTERN_BYTES);
        return pattern_error(err, p, "%s", detail);
    }
    if (p.len && memchr(p.ptr, '\0', p.len))
        return pattern_error(err, p, "%s", "contains a NUL byte; write it as \\x00");
    /* (*UTF8), (*UCP) and friends are only valid at the start; vectorscan
     * refuses the others itself. UTF-8 mode is undefined on invalid input. */
    if (p.len >= 2 && p.ptr[0] == '(' && p.ptr[1] == '*')
        return pattern_error(err, p, "%s",
                             "leading verbs like (*UTF8) are not supported; patterns match bytes");
    return BW_OK;
}

bw_status bw_regex_check(bw_slice pattern, bw_error *err)
{
    bw_regex_db *db;
    size_t bad;
    if (bw_regex_db_build(&pattern, 1, &db, &bad, err) != BW_OK)
        return BW_ERR;
    bw_regex_db_free(db);
    return BW_OK;
}

bw_status bw_regex_db_build(const bw_slice *patterns, size_t n, bw_regex_db **ret_db,
                            size_t *bad_index, bw_error *err)
{
    if (n > BW_REGEX_MAX_PATTERNS) {
        *bad_index = n;
        return bw_error_set(err, "%zu regexes on one field, over the limit of %u", n,
                            BW_REGEX_MAX_PATTERNS);
    }
    for (size_t i = 0; i < n; i++) {
        if (precheck(patterns[i], err) != BW_OK) {
            *bad_index = i;
            return BW_ERR;
        }
    }
    bw_regex_db *db = calloc(1, sizeof *db);
    if (!db) {
        *bad_index = n;
        return bw_error_set(err, "out of memory compiling regexes");
    }
    db->count = n;
    if (n == 0) { /* vectorscan refuses an empty database: db->hs stays unset */
        *ret_db = db;
        return BW_OK;
    }

    bw_status st = BW_ERR;
    char **exprs = calloc(n, sizeof *exprs);
    unsigned *flags = calloc(n, sizeof *flags);
    unsigned *ids = calloc(n, sizeof *ids);
    if (!exprs || !flags || !ids) {
        *bad_index = n;
        (void)bw_error_set(err, "out of memory compiling regexes");
        goto out_free_arrays;
    }
    for (size_t i = 0; i < n; i++) {
        exprs[i] = malloc(patterns[i].len + 1);
        if (!exprs[i]) {
            *bad_index = n;
            (void)bw_error_set(err, "out of memory compiling regexes");
            goto out_free_exprs;
        }
        if (patterns[i].len)
            memcpy(exprs[i], patterns[i].ptr, patterns[i].len);
        exprs[i][patterns[i].len] = '\0';
        flags[i] = PATTERN_FLAGS;
        ids[i] = (unsigned)i;
    }

    hs_platform_info_t plat;
    db->scan = pick_platform(&plat);
    hs_compile_error_t *cerr = NULL;
    hs_error_t rc = hs_compile_multi((const char *const *)exprs, flags, ids, (unsigned)n,
                                     HS_MODE_BLOCK, &plat, &db->hs, &cerr);
    if (rc != HS_SUCCESS) {
        if (cerr && cerr->expression >= 0 && (size_t)cerr->expression < n) {
            *bad_index = (size_t)cerr->expression;
            (void)translate_hs_error(err, patterns[cerr->expression], cerr->message);
        } else {
            *bad_index = n;
            (void)bw_error_set(err, "the regexes on this field could not be compiled together: %s",
                               cerr ? cerr->message : "unknown vectorscan error");
        }
        if (cerr)
            hs_free_compile_error(cerr);
        db->hs = NULL;
        goto out_free_exprs;
    }
    if (hs_database_size(db->hs, &db->bytes) != HS_SUCCESS)
        db->bytes = 0;
    st = BW_OK;

out_free_exprs:
    for (size_t i = 0; i < n; i++)
        free(exprs[i]);
out_free_arrays:
    free(exprs);
    free(flags);
    free(ids);
    if (st == BW_OK)
        *ret_db = db;
    else
        free(db);
    return st;
}

bw_regex_db *bw_regex_db_free(bw_regex_db *db)
{
    if (db) {
        if (db->hs)
            hs_free_database(db->hs);
        free(db);
    }
    return NULL;
}

size_t bw_regex_db_count(const bw_regex_db *db)
{
    return db->count;
}

size_t bw_regex_db_bytes(const bw_regex_db *db)
{
    return db->bytes;
}

void bw_regex_scratch_init(bw_regex_scratch *s)
{
    s->hs = NULL;
    s->reserved = false;
}

bw_status bw_regex_scratch_reserve(bw_regex_scratch *s, const bw_regex_db *db, bw_error *err)
{
    if (db->count == 0)
        return BW_OK; /* nothing to scan with */
    /* hs_alloc_scratch grows an existing scratch so that it fits db as well
     * as every database it was reserved for before. */
    hs_scratch_t *hs = s->reserved ? s->hs : NULL;
    if (hs_alloc_scratch(db->hs, &hs) != HS_SUCCESS)
        return bw_error_set(err, "out of memory reserving regex scratch space");
    s->hs = hs;
    s->reserved = true;
    return BW_OK;
}

void bw_regex_scratch_done(bw_regex_scratch *s)
{
    if (s->reserved)
        hs_free_scratch(s->hs);
    s->hs = NULL;
    s->reserved = false;
}

struct scan_ctx {
    uint64_t *bits;
    size_t left; /* patterns not yet matched: at 0 the scan stops early */
};

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
    (void)from;
    (void)to;
    (void)flags;
    struct scan_ctx *c = ctx;
    uint64_t bit = (uint64_t)1 << (id % 64u);
    if (!(c->bits[id / 64u] & bit)) {
        c->bits[id / 64u] |= bit;
        c->left--;
    }
    return c->left == 0; /* non-zero: every pattern has matched, stop */
}

bw_status bw_regex_scan(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                        uint64_t *ret_bits, size_t nwords, bw_error *err)
{
    if (nwords < BW_REGEX_BITSET_WORDS(db->count))
        return bw_error_set(err, "regex scan: bitset of %zu words for %zu patterns", nwords,
                            db->count);
    if (input.len > BW_REGEX_MAX_INPUT_BYTES)
        return bw_error_set(err, "regex scan: value of %zu bytes is over the limit of %u bytes",
                            input.len, BW_REGEX_MAX_INPUT_BYTES);
    uint64_t bits[BW_REGEX_MAX_BITSET_WORDS];
    memset(bits, 0, sizeof bits);
    if (db->count > 0) {
        if (!s->reserved)
            return bw_error_set(err, "regex scan: scratch space was not reserved");
        struct scan_ctx c = {.bits = bits, .left = db->count};
        const char *p = input.len ? input.ptr : "";
        hs_error_t rc = db->scan(db->hs, p, (unsigned int)input.len, 0, s->hs, on_match, &c);
        switch (rc) {
        case HS_SUCCESS:
        case HS_SCAN_TERMINATED:
            break;
        case HS_SCRATCH_IN_USE:
            return bw_error_set(err, "regex scan: scratch space in use by another scan");
        case HS_INVALID:
            return bw_error_set(err, "regex scan: scratch space not reserved for this database");
        default:
            return bw_error_set(err, "regex scan failed (vectorscan error %d)", (int)rc);
        }
    }
    memcpy(ret_bits, bits, BW_REGEX_BITSET_WORDS(db->count) * sizeof *bits);
    for (size_t w = BW_REGEX_BITSET_WORDS(db->count); w < nwords; w++)
        ret_bits[w] = 0;
    return BW_OK;
}
