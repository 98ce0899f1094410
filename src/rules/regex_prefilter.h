/* A literal prefilter in front of each regex database: a cheap test that
 * proves, for most ordinary values, that no pattern of the database can
 * match, so the vectorscan scan is skipped.
 *
 * Why: a scan has a fixed cost (about 20 to 100 ns on this project's
 * machines, more for databases with many patterns), and a WAF's patterns
 * almost never match ordinary traffic. Most of a request's regex time went
 * to scans that found nothing.
 *
 * How: every match of a pattern contains at least one string of a set
 * derived from its syntax (its "necessary factors": for
 * `(?i)union\s+select` that is {"union"} or {"select"}; for `(%27|')\s*or`,
 * {"%27", "'"}). The filter holds, for each pattern, one such set, and asks
 * whether the value contains any of their strings, ignoring ASCII case. When
 * it contains none, no pattern can match: the answer "no match" is exact.
 * When it contains one, the database is scanned as before. So the filter
 * changes only time, never a result.
 *
 * Soundness rests on the analysis understanding every construct it uses.
 * Anything it does not (lookaround, backreferences, `\x{...}`, `\Q`, an
 * extended-mode flag, a byte >= 0x80, a class it cannot delimit...), and
 * any pattern that can match the empty string, makes the pattern
 * "unfilterable", and a database with an unfilterable pattern is always
 * scanned. Case is ignored on both sides, so a case-sensitive pattern is
 * filtered as if it were caseless: more scans, never fewer than needed.
 * tests/unit/rules/test_regex_prefilter.c holds the factors of many
 * patterns; fuzz_rules_regex checks the filter against the scan.
 *
 * Pure: no I/O, no allocation on the request path. */
#ifndef BW_RULES_REGEX_PREFILTER_H
#define BW_RULES_REGEX_PREFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

/* Named limits. A database whose patterns need more triggers than this is
 * always scanned. */
#define BW_PREFILTER_MAX_TRIGGERS 64u
/* Bytes of a trigger compared (a factor's first 16 bytes are necessary too). */
#define BW_PREFILTER_TRIGGER_BYTES 16u
/* Strings in one pattern's factor set, and their length, while analysing. */
#define BW_PREFILTER_MAX_SET 32u
#define BW_PREFILTER_MAX_STRING 16u
/* Group nesting the analysis follows; deeper patterns are unfilterable. */
#define BW_PREFILTER_MAX_DEPTH 64u

/* One string whose presence (ASCII case ignored) lets a pattern match. */
struct bw_prefilter_trigger {
    uint64_t bytes[2];     /* lower-cased, in memory order, zero past len */
    uint64_t mask[2];      /* the first len bytes */
    uint8_t len;           /* 1..16 */
    uint8_t off;           /* where its fingerprint window starts */
    uint32_t win, winmask; /* the window's bytes (byte k at bits 8k), folded; which */
    /* BW_PREFILTER_SCAN: found, the database must be scanned; otherwise the
     * pattern (id) it belongs to is a literal, and finding it is that
     * pattern's match. */
    uint16_t pattern;
};
#define BW_PREFILTER_SCAN UINT16_MAX

/* The SIMD pass (Teddy-style) looks for a fingerprint of each trigger,
 * one to three adjacent bytes of it (its rarest); triggers are split into
 * 8 buckets, and the nibble tables say, for the byte at fingerprint
 * position k, which buckets' fingerprints may hold it there. */
#define BW_PREFILTER_WINDOW 3u

struct bw_prefilter {
    bool active; /* false: always scan */
    uint8_t ntriggers;
    uint8_t bucket_first[9]; /* bucket b: trig[bucket_first[b] .. bucket_first[b + 1]) */
    uint8_t lo[BW_PREFILTER_WINDOW][16], hi[BW_PREFILTER_WINDOW][16];
    uint8_t t[BW_PREFILTER_WINDOW][256]; /* the same tables by byte, for the scalar pass */
    /* The first two bytes of every fingerprint, exactly and folded: bit b
     * of win1 (one-byte fingerprints), bit (a << 8 | b) of win2 (longer
     * ones). The nibble tables pass far more than these. */
    uint64_t win1[4];
    uint64_t win2[1024];
    /* The triggers of one fingerprint length and first two bytes are
     * consecutive in trig: this table (open addressing, key
     * length << 16 | first byte << 8 | second byte, 0 free) gives where. */
    struct {
        uint32_t key;
        uint8_t first, count;
    } wtab[2 * BW_PREFILTER_MAX_TRIGGERS];
    struct bw_prefilter_trigger trig[BW_PREFILTER_MAX_TRIGGERS];
};

/* Builds the filter of a database of patterns[0..n). Never fails: a
 * database it cannot filter gets an inactive filter. */
void bw_prefilter_build(struct bw_prefilter *pf, const bw_slice *patterns, size_t n);

/* Runs the filter over input. True: the database must be scanned. False:
 * the filter knows the answer, and has set in bits (which the caller
 * zeroed, one bit per pattern) the bits of the literal patterns found: all
 * the patterns that match. */
bool bw_prefilter_run(const struct bw_prefilter *pf, bw_slice input, uint64_t *bits);

/* The scalar pass, which bw_prefilter_run uses on CPUs without AVX2 (for
 * tests: it must answer exactly as the SIMD one). */
bool bw__prefilter_run_scalar(const struct bw_prefilter *pf, bw_slice input, uint64_t *bits);

/* For tests: false only when no pattern can match input (no scan needed,
 * no bit set). */
bool bw_prefilter_may_match(const struct bw_prefilter *pf, bw_slice input);

/* The factor set chosen for one pattern, for tests: false when the pattern
 * is unfilterable; else out[0..*n) (each NUL-terminated, lower-cased,
 * truncated to BW_PREFILTER_MAX_STRING bytes), sorted. */
bool bw_prefilter_factors(bw_slice pattern, char out[][BW_PREFILTER_MAX_STRING + 1], size_t *n);
/* For tests: whether the pattern is a literal (see bw_prefilter_trigger). */
bool bw_prefilter_is_literal(bw_slice pattern);

#endif
