/* Linear-time regex through vectorscan: multi-pattern databases built at
 * load, scanned once per value. See regex.h for the semantics and the thread
 * rules. This file is the only one that includes <hs/hs.h>. */
#include "rules/regex.h"

#include "rules/regex_prefilter.h"

#include <hs/hs.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef hs_error_t (*scan_fn)(const hs_database_t *db, const char *data, unsigned int length,
                              unsigned int flags, hs_scratch_t *scratch,
                              match_event_handler on_event, void *ctx);

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

struct bw_regex_db {
    hs_database_t *hs;
    scan_fn scan; /* hs_scan, or the AVX2 variant (see pick_platform) */
    size_t count;
    struct bw_prefilter filter; /* skips scans that cannot match (regex_prefilter.h) */
    size_t bytes;
    /* Sharing (see "The database cache" below); all under cache.lock. */
    uint32_t refs;
    uint64_t key_hash;
    char *key; /* NULL: not in the cache (n == 0, or out of memory for the key) */
    size_t key_len;
    struct bw_regex_db *next; /* in its cache bucket */
};

/* ---- The database cache ----------------------------------------------------
 * hs_compile_multi is most of the cost of a reload (about 73 % with 100
 * rules), and a reload usually changes few patterns or none. So every live
 * database is kept in a table by its exact compile input (mode, flags, ids
 * and the bytes of every pattern, in order), and bw_regex_db_build hands out
 * another reference to an equal one instead of compiling again: a new
 * snapshot shares the running snapshot's databases, read-only, while the
 * running one still serves. Sharing is safe because a compiled database is
 * immutable and vectorscan allows any number of threads to scan one at once,
 * each with its own scratch (every worker has its own, reserved per
 * snapshot). The table holds no reference itself: a database leaves it when
 * its last holder frees it, so nothing outlives the snapshots that use it.
 * One lock, taken only when building and freeing databases (load time and
 * snapshot teardown), never by a scan. */
enum { CACHE_BUCKETS = 256 };

/* The type checker compiles every pattern alone (bw_regex_check) before the
 * fields' databases are built, and throws that database away: as many
 * compiles again as there are patterns. Whether one pattern compiles alone
 * depends only on its bytes (flags, mode and platform are fixed for the
 * process), so the patterns that did are remembered, up to a bound, and
 * not compiled again to be checked. A failing pattern is never remembered:
 * its error is found again, with its message. */
enum { CHECKED_MAX = 4096, CHECKED_MAX_BYTES = 1024 * 1024 };

struct checked {
    struct checked *next;
    uint64_t hash;
    size_t len;
    char pat[];
};

static struct {
    pthread_mutex_t lock;
    struct bw_regex_db *buckets[CACHE_BUCKETS];
    uint64_t compiled, shared, checks_remembered; /* bw_regex_cache_stats */
    size_t live;
    struct checked *checked[CACHE_BUCKETS];
    size_t nchecked, checked_bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t fnv1a(const char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static void key_put(char *key, size_t *off, const void *p, size_t n)
{
    if (key && n)
        memcpy(key + *off, p, n);
    *off += n;
}

/* The compile input as one byte string: mode, then per pattern its flags,
 * id, length and bytes. Equal keys compile to equal databases. With key
 * NULL, only measures. */
static size_t make_key(char *key, const bw_slice *patterns, size_t n)
{
    size_t off = 0;
    uint32_t mode = HS_MODE_BLOCK;
    key_put(key, &off, &mode, sizeof mode);
    for (size_t i = 0; i < n; i++) {
        uint32_t flags = PATTERN_FLAGS, id = (uint32_t)i;
        uint64_t len = patterns[i].len;
        key_put(key, &off, &flags, sizeof flags);
        key_put(key, &off, &id, sizeof id);
        key_put(key, &off, &len, sizeof len);
        key_put(key, &off, patterns[i].ptr, patterns[i].len);
    }
    return off;
}

/* A new reference to a live database compiled from exactly key, or NULL. */
static bw_regex_db *cache_get(const char *key, size_t len, uint64_t hash)
{
    pthread_mutex_lock(&cache.lock);
    bw_regex_db *db = cache.buckets[hash % CACHE_BUCKETS];
    while (db && !(db->key_hash == hash && db->key_len == len && memcmp(db->key, key, len) == 0))
        db = db->next;
    if (db) {
        db->refs++;
        cache.shared++;
    }
    pthread_mutex_unlock(&cache.lock);
    return db;
}

/* Enters a database just compiled (refs 1). An equal one may have been
 * entered since the lookup (two threads loading at once): both stay valid,
 * the lookup finds the first. */
static void cache_put(bw_regex_db *db)
{
    pthread_mutex_lock(&cache.lock);
    cache.compiled++;
    if (db->key) {
        bw_regex_db **b = &cache.buckets[db->key_hash % CACHE_BUCKETS];
        db->next = *b;
        *b = db;
        cache.live++;
    }
    pthread_mutex_unlock(&cache.lock);
}

static bool checked_has(bw_slice p, uint64_t hash)
{
    pthread_mutex_lock(&cache.lock);
    const struct checked *c = cache.checked[hash % CACHE_BUCKETS];
    while (c && !(c->hash == hash && c->len == p.len &&
                  (p.len == 0 || memcmp(c->pat, p.ptr, p.len) == 0)))
        c = c->next;
    if (c)
        cache.checks_remembered++;
    pthread_mutex_unlock(&cache.lock);
    return c != NULL;
}

static void checked_forget_all(void)
{
    for (size_t b = 0; b < CACHE_BUCKETS; b++) {
        while (cache.checked[b]) {
            struct checked *c = cache.checked[b];
            cache.checked[b] = c->next;
            free(c);
        }
    }
    cache.nchecked = 0;
    cache.checked_bytes = 0;
}

/* Out of memory: not remembered, compiled again next time. At the bound,
 * everything is forgotten (and relearnt by the next load), so the set
 * never grows past it however many patterns come and go. */
static void checked_add(bw_slice p, uint64_t hash)
{
    struct checked *c = malloc(sizeof *c + p.len);
    if (!c)
        return;
    c->hash = hash;
    c->len = p.len;
    if (p.len)
        memcpy(c->pat, p.ptr, p.len);
    pthread_mutex_lock(&cache.lock);
    if (cache.nchecked >= CHECKED_MAX || cache.checked_bytes + p.len > CHECKED_MAX_BYTES)
        checked_forget_all();
    c->next = cache.checked[hash % CACHE_BUCKETS];
    cache.checked[hash % CACHE_BUCKETS] = c;
    cache.nchecked++;
    cache.checked_bytes += p.len;
    pthread_mutex_unlock(&cache.lock);
}

struct bw_regex_cache_stats bw_regex_cache_stats(void)
{
    pthread_mutex_lock(&cache.lock);
    struct bw_regex_cache_stats st = {.compiled = cache.compiled,
                                      .shared = cache.shared,
                                      .checks_remembered = cache.checks_remembered,
                                      .live = cache.live};
    pthread_mutex_unlock(&cache.lock);
    return st;
}

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
    /* precheck is cheap and not vectorscan's: always run, so that its
     * limits apply even to a pattern remembered before. */
    if (precheck(pattern, err) != BW_OK)
        return BW_ERR;
    uint64_t hash = fnv1a(pattern.ptr, pattern.len, 0xcbf29ce484222325ull);
    if (checked_has(pattern, hash))
        return BW_OK;
    bw_regex_db *db;
    size_t bad;
    if (bw_regex_db_build(&pattern, 1, &db, &bad, err) != BW_OK)
        return BW_ERR;
    bw_regex_db_free(db);
    checked_add(pattern, hash);
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
    /* An equal database that is alive already (the running snapshot's) is
     * shared; without memory for the key, the database is compiled and
     * simply not shared. */
    char *key = NULL;
    size_t key_len = 0;
    uint64_t key_hash = 0;
    if (n > 0) {
        key_len = make_key(NULL, patterns, n);
        key = malloc(key_len);
        if (key) {
            (void)make_key(key, patterns, n);
            key_hash = fnv1a(key, key_len, 0xcbf29ce484222325ull);
            bw_regex_db *hit = cache_get(key, key_len, key_hash);
            if (hit) {
                free(key);
                *ret_db = hit;
                return BW_OK;
            }
        }
    }
    bw_regex_db *db = calloc(1, sizeof *db);
    if (!db) {
        free(key);
        *bad_index = n;
        return bw_error_set(err, "out of memory compiling regexes");
    }
    db->count = n;
    db->refs = 1;
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
    bw_prefilter_build(&db->filter, patterns, n);
    st = BW_OK;

out_free_exprs:
    for (size_t i = 0; i < n; i++)
        free(exprs[i]);
out_free_arrays:
    free(exprs);
    free(flags);
    free(ids);
    if (st == BW_OK) {
        db->key = key;
        db->key_len = key_len;
        db->key_hash = key_hash;
        cache_put(db);
        *ret_db = db;
    } else {
        free(key);
        free(db);
    }
    return st;
}

bw_regex_db *bw_regex_db_free(bw_regex_db *db)
{
    if (!db)
        return NULL;
    pthread_mutex_lock(&cache.lock);
    bool last = --db->refs == 0;
    if (last && db->key) {
        bw_regex_db **b = &cache.buckets[db->key_hash % CACHE_BUCKETS];
        while (*b != db)
            b = &(*b)->next;
        *b = db->next;
        cache.live--;
    }
    pthread_mutex_unlock(&cache.lock);
    if (last) {
        if (db->hs)
            hs_free_database(db->hs);
        free(db->key);
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
    return db->bytes + sizeof db->filter; /* the prefilter's tables are ~13 KiB */
}

void bw_regex_scratch_init(bw_regex_scratch *s)
{
    s->hs = NULL;
    s->reserved = false;
    memset(s->outcomes, 0, sizeof s->outcomes);
}

void bw_regex_scratch_take(bw_regex_scratch *s, uint64_t out[BW_REGEX_OUTCOME__COUNT])
{
    memcpy(out, s->outcomes, sizeof s->outcomes);
    memset(s->outcomes, 0, sizeof s->outcomes);
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

static bw_status scan_db(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                         uint64_t *ret_bits, size_t nwords, bool filtered, bw_error *err)
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
        if (filtered) {
            if (!bw_prefilter_run(&db->filter, input, bits)) {
                /* the filter knows: the literals it found, or nothing */
                bool found = false;
                for (size_t w = 0; w < BW_REGEX_BITSET_WORDS(db->count); w++)
                    found |= bits[w] != 0;
                s->outcomes[found ? BW_REGEX_LITERAL : BW_REGEX_SKIPPED]++;
                goto done;
            }
            memset(bits, 0, sizeof bits); /* the scan reports them all again */
        }
        s->outcomes[BW_REGEX_SCANNED]++;
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
done:
    memcpy(ret_bits, bits, BW_REGEX_BITSET_WORDS(db->count) * sizeof *bits);
    for (size_t w = BW_REGEX_BITSET_WORDS(db->count); w < nwords; w++)
        ret_bits[w] = 0;
    return BW_OK;
}

bw_status bw_regex_scan(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                        uint64_t *ret_bits, size_t nwords, bw_error *err)
{
    return scan_db(db, s, input, ret_bits, nwords, true, err);
}

bw_status bw__regex_scan_unfiltered(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                                    uint64_t *ret_bits, size_t nwords, bw_error *err)
{
    return scan_db(db, s, input, ret_bits, nwords, false, err);
}

bool bw__regex_db_filtered(const bw_regex_db *db)
{
    return db->filter.active;
}
