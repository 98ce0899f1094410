/* Linear-time regular expressions for the Rules language's `matches` operator,
 * through Debian's vectorscan (the portable fork of Hyperscan).
 *
 * This file owns: turning the patterns used against one field into one
 * multi-pattern database at load time, per-thread scratch space, and one scan
 * per request that reports which patterns matched. It does not own parsing of
 * the rule text, deciding which patterns go together, or three-valued logic:
 * the rules compiler and evaluator do.
 *
 * Why vectorscan: DESIGN.md §1 lesson 3. Vectorscan compiles every pattern
 * into automata (DFAs and bit-parallel NFAs) and scans the input once, left to
 * right, without backtracking: the cost of a scan is linear in the input's
 * length for every pattern it accepts, including the 2019 WAF regex. Patterns
 * that need backtracking (backreferences, lookaround, atomic groups,
 * possessive quantifiers, recursion, conditionals) are rejected at load with
 * a sentence naming the construct.
 *
 * Semantics (decided here, for every pattern):
 * - PCRE syntax as vectorscan accepts it; case-sensitive as written, `(?i)`
 *   and `(?i:...)` for case-insensitive parts.
 * - Byte-oriented: no UTF-8 mode (a request's bytes need not be valid UTF-8,
 *   and vectorscan's UTF-8 mode is undefined on invalid input), so `.` and
 *   classes match single bytes; `(*UTF8)`, `(*UCP)` and other leading verbs
 *   are refused.
 * - DOTALL: `.` matches every byte, newline included, so a newline decoded
 *   into a value cannot split an attack pattern in two. `(?-s)` restores the
 *   Perl meaning for a group. Not multi-line: `^` is the start of the value,
 *   `$` its end (or just before a final "\n", as in PCRE).
 * - Unanchored search: "matches" means "matches somewhere in the value", as
 *   in the Cloudflare Rules language; anchor with `^`/`$`.
 * - Patterns that match the empty string (`a*`, ``) are allowed and match
 *   every value, the empty value included.
 *
 * Thread rules: a bw_regex_db is immutable after bw_regex_db_build and may be
 * shared read-only by every worker, and by several snapshots (see
 * bw_regex_cache_stats); building and freeing databases may happen on any
 * thread. A bw_regex_scratch belongs to one thread
 * and serves one scan at a time; one scratch may serve many databases once it
 * has been reserved for each of them (bw_regex_scratch_reserve, at load or
 * snapshot-pin time, never per request). Scans allocate nothing. */
#ifndef BW_RULES_REGEX_H
#define BW_RULES_REGEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/slice.h"

/* Named limits. */
#define BW_REGEX_MAX_PATTERN_BYTES 4096u /* one pattern's source text */
#define BW_REGEX_MAX_PATTERNS 512u       /* patterns in one database (one field) */
/* Longest value scanned. Values are scanned whole, never truncated: a scan
 * of the first N bytes would let a request pad its way past a rule and
 * would change what `$` means. Request fields are bounded far below this by
 * the request limits (header_bytes); a longer value is a scan error, which
 * the evaluator treats as unknown. */
#define BW_REGEX_MAX_INPUT_BYTES (16u * 1024u * 1024u)

/* uint64_t words needed for a bitset of n pattern ids. */
#define BW_REGEX_BITSET_WORDS(n) (((size_t)(n) + 63u) / 64u)
#define BW_REGEX_MAX_BITSET_WORDS BW_REGEX_BITSET_WORDS(BW_REGEX_MAX_PATTERNS)

typedef struct bw_regex_db bw_regex_db; /* opaque, immutable once built */

struct hs_scratch; /* vectorscan's scratch, kept out of this header */

/* How a bw_regex_scan was answered: by the literal prefilter, which found
 * none of the strings any pattern needs (SKIPPED) or answered every pattern
 * it could match because they are all literals (LITERAL), or by the
 * automaton (SCANNED; also every scan of an unfiltered database). */
enum bw_regex_outcome {
    BW_REGEX_SKIPPED,
    BW_REGEX_LITERAL,
    BW_REGEX_SCANNED,
    BW_REGEX_OUTCOME__COUNT
};

/* Per-thread scratch. Initialise with bw_regex_scratch_init, reserve it for
 * every database the thread will scan, release with bw_regex_scratch_done. */
typedef struct bw_regex_scratch {
    struct hs_scratch *hs; /* vectorscan scratch; only this file touches it */
    bool reserved;         /* hs is allocated (false right after init) */
    /* Scans since the owner last took these (bw_regex_scratch_take). */
    uint64_t outcomes[BW_REGEX_OUTCOME__COUNT];
} bw_regex_scratch;

/* The scan counts by outcome since the last call, into out; zeroes them. */
void bw_regex_scratch_take(bw_regex_scratch *s, uint64_t out[BW_REGEX_OUTCOME__COUNT]);

/* Checks that one pattern can be compiled (all the rules that
 * bw_regex_db_build applies to each pattern), without keeping a database.
 * For the type checker, which reports every bad pattern with its position
 * rather than only the first one of a field. A pattern that passed once is
 * remembered (a bounded set) and passes again without a compile: the
 * verdict depends on its bytes alone. */
bw_status bw_regex_check(bw_slice pattern, bw_error *err) BW_MUST_CHECK;

/* Compiles patterns[0..n) into one block-mode database; pattern i gets id i.
 * n may be 0 (a database that never matches). On failure (and only then),
 * *bad_index is the index of the offending pattern, or n when it is not one
 * pattern's (too many patterns, out of memory), and err holds a sentence such
 * as `regex "(a+)+\1": backreferences are not supported (bulwark runs every
 * regex in linear time)`. On success *ret_db owns vectorscan memory: free it
 * with bw_regex_db_free (the snapshot's destructor must). */
bw_status bw_regex_db_build(const bw_slice *patterns, size_t n, bw_regex_db **ret_db,
                            size_t *bad_index, bw_error *err) BW_MUST_CHECK;

/* Drops this holder's reference to the database, freeing it with the last
 * one; accepts NULL; returns NULL (`db = bw_regex_db_free(db);`). Any
 * thread. */
bw_regex_db *bw_regex_db_free(bw_regex_db *db);

/* bw_regex_db_build shares databases: when a live database (one not yet
 * freed by all its holders, such as the running snapshot's) was compiled
 * from exactly the same input (the same patterns, bytes and order, hence
 * the same ids, flags and mode), it returns another reference to it
 * instead of compiling. A reload that leaves a field's patterns alone
 * costs no compile for that field. The counts, for tests and /status: */
struct bw_regex_cache_stats {
    uint64_t compiled;          /* databases compiled by vectorscan (n > 0), ever */
    uint64_t shared;            /* builds answered with a live database instead, ever */
    uint64_t checks_remembered; /* bw_regex_check answered without compiling, ever */
    size_t live;                /* databases that can be shared now */
};
struct bw_regex_cache_stats bw_regex_cache_stats(void);

/* Number of patterns (ids 0..count-1). */
size_t bw_regex_db_count(const bw_regex_db *db);
/* Bytes of compiled database, its literal prefilter included (for memory
 * accounting). */
size_t bw_regex_db_bytes(const bw_regex_db *db);

void bw_regex_scratch_init(bw_regex_scratch *s);
/* Makes s large enough to scan db (allocating or growing it). Call once per
 * database per thread, not per request. Not thread-safe on s. */
bw_status bw_regex_scratch_reserve(bw_regex_scratch *s, const bw_regex_db *db,
                                   bw_error *err) BW_MUST_CHECK;
/* Frees the scratch; s can be reserved again afterwards. */
void bw_regex_scratch_done(bw_regex_scratch *s);

/* Scans input once against every pattern of db. On success bit i of ret_bits
 * (word i / 64, bit i % 64) is set exactly when pattern i matches somewhere in
 * input; ret_bits has nwords >= BW_REGEX_BITSET_WORDS(count) words, all of
 * which are written. Fails, leaving ret_bits untouched, when the input is over
 * BW_REGEX_MAX_INPUT_BYTES, when nwords is too small, or when the scratch was
 * not reserved for db or is in use by another scan: the evaluator treats a
 * failure as "unknown". No allocation. */
bw_status bw_regex_scan(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                        uint64_t *ret_bits, size_t nwords, bw_error *err) BW_MUST_CHECK;

/* For tests and fuzzers: bw_regex_scan without the literal prefilter
 * (regex_prefilter.h), which must give the same bits; and whether db has
 * an active prefilter. */
bw_status bw__regex_scan_unfiltered(const bw_regex_db *db, bw_regex_scratch *s, bw_slice input,
                                    uint64_t *ret_bits, size_t nwords, bw_error *err) BW_MUST_CHECK;
bool bw__regex_db_filtered(const bw_regex_db *db);

static inline bool bw_regex_bit(const uint64_t *bits, size_t id)
{
    return (bits[id / 64u] >> (id % 64u)) & 1u;
}

#endif
