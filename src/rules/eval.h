/* The rules compiler and evaluator: checked expressions in, a compiled
 * program out (at load), then per request a three-valued verdict for each
 * expression of the program.
 *
 *   // load (snapshot arena a):
 *   struct bw_rules_prog *p;
 *   if (bw_rules_compile(&a, exprs, n, &p, &err) != BW_OK) ...
 *   // per worker thread, once per snapshot:
 *   if (bw_rules_prog_reserve(p, &scratch, &err) != BW_OK) ...
 *   // per request (req_arena has a hard cap):
 *   struct bw_rules_ctx cx;
 *   bw_rules_ctx_init(&cx, p, &view, &req_arena, &scratch);
 *   if (bw_rules_eval(&cx, i) == BW_TRI_TRUE) fire(rule i);
 *   // or, for a run of rules where only the first TRUE matters:
 *   size_t hit = bw_rules_eval_first_true(&cx, from, to);  // to: none
 *   // at snapshot free: p = bw_rules_prog_free(p);
 *
 * Compiled form: one tree of compiled nodes per expression, allocated in the
 * snapshot arena, immutable after bw_rules_compile and shareable between
 * threads. Fields are resolved to ids; header lookups to a slot number (one
 * per distinct (map, name)); `in {}` sets are built with sets.h; every
 * `matches` whose left side is the same expression (same canonical text, per
 * bw_rules_format) goes into one bw_regex_db per such "scan group", so each
 * field is scanned at most once per request, and only when a rule needs it;
 * `contains` literals on a scanned side join its group as literal patterns
 * (literal folding, compile.c).
 *
 * Per-request state lives in a bw_rules_ctx: the field cache (each field is
 * extracted at most once), an index of the request's headers by the names
 * the program reads (built on the first header lookup), header slots, each
 * scan group's result bits, and
 * the per-request arena for computed values (lower(), concat(), joined
 * headers, the normalised path). Evaluation allocates nothing else. When the
 * arena is exhausted, the value being computed is unknown (fail-safe): a rule
 * fires only on TRUE, so exhaustion can stop a rule from firing, never crash
 * or make `not` of something true.
 *
 * Three-valued logic as in SQL: not U = U; F and U = F; T or U = T; xor with
 * U = U; a comparison or function with an unknown operand is U (has() is
 * never U). */
#ifndef BW_RULES_EVAL_H
#define BW_RULES_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "rules/ast.h"
#include "rules/regex.h"
#include "rules/request_view.h"
#include "rules/rules.h"

/* ---- three-valued truth --------------------------------------------------- */

enum bw_tri { BW_TRI_FALSE, BW_TRI_TRUE, BW_TRI_UNKNOWN, BW_TRI__COUNT };

static inline enum bw_tri bw_tri_not(enum bw_tri a)
{
    return a == BW_TRI_UNKNOWN ? BW_TRI_UNKNOWN : a == BW_TRI_TRUE ? BW_TRI_FALSE : BW_TRI_TRUE;
}
static inline enum bw_tri bw_tri_and(enum bw_tri a, enum bw_tri b)
{
    if (a == BW_TRI_FALSE || b == BW_TRI_FALSE)
        return BW_TRI_FALSE;
    return (a == BW_TRI_UNKNOWN || b == BW_TRI_UNKNOWN) ? BW_TRI_UNKNOWN : BW_TRI_TRUE;
}
static inline enum bw_tri bw_tri_or(enum bw_tri a, enum bw_tri b)
{
    if (a == BW_TRI_TRUE || b == BW_TRI_TRUE)
        return BW_TRI_TRUE;
    return (a == BW_TRI_UNKNOWN || b == BW_TRI_UNKNOWN) ? BW_TRI_UNKNOWN : BW_TRI_FALSE;
}
static inline enum bw_tri bw_tri_xor(enum bw_tri a, enum bw_tri b)
{
    if (a == BW_TRI_UNKNOWN || b == BW_TRI_UNKNOWN)
        return BW_TRI_UNKNOWN;
    return a != b ? BW_TRI_TRUE : BW_TRI_FALSE;
}
static inline enum bw_tri bw_tri_of(bool b)
{
    return b ? BW_TRI_TRUE : BW_TRI_FALSE;
}
/* "true", "false", "unknown". */
const char *bw_tri_name(enum bw_tri t);

/* ---- run-time values ------------------------------------------------------ */

/* UNKNOWN is a variant of its own: never a NULL slice or a 0. */
enum bw_val_kind {
    BW_VAL_UNKNOWN,
    BW_VAL_BOOL,
    BW_VAL_INT,
    BW_VAL_BYTES,
    BW_VAL_IP,
    BW_VAL_ARRAY,
    BW_VAL__COUNT
};

/* An address; IPv4-mapped IPv6 addresses are stored as IPV4 (as literals
 * are, ast.h). addr holds 4 or 16 bytes in network order. */
struct bw_val_ip {
    enum bw_rules_ip_family family;
    uint8_t addr[16];
};

struct bw_val {
    enum bw_val_kind kind;
    union {
        bool boolean;
        int64_t integer;
        bw_slice bytes;
        struct bw_val_ip ip;
        struct {
            const struct bw_val *items; /* n elements (any of them may be UNKNOWN) */
            size_t n;
        } array;
    } u;
};

/* ---- compiled program ----------------------------------------------------- */

struct bw_rules_prog; /* opaque; immutable once compiled */

/* Named limits. */
enum {
    BW_RULES_PROG_MAX_EXPRS = 65536, /* expressions in one program */
};

/* Compiles n checked expressions (all of one phase) into one program
 * allocated in a (the snapshot's arena, which must outlive it). Expression i
 * is evaluated with bw_rules_eval(cx, i). Fails with a sentence in err (a set
 * or regex database that cannot be built, too many expressions, out of
 * memory); *ret is then untouched and any regex database already built is
 * freed. */
bw_status bw_rules_compile(bw_arena *a, const struct bw_rules_expr *const *exprs, size_t n,
                           struct bw_rules_prog **ret, bw_error *err) BW_MUST_CHECK;

/* Frees what the arena does not own (the regex databases). Accepts NULL,
 * returns NULL. */
struct bw_rules_prog *bw_rules_prog_free(struct bw_rules_prog *p);

size_t bw_rules_prog_count(const struct bw_rules_prog *p);       /* expressions */
size_t bw_rules_prog_scan_groups(const struct bw_rules_prog *p); /* regex databases */

/* Makes a thread's scratch fit every regex database of p. Once per thread
 * per program, never per request. */
bw_status bw_rules_prog_reserve(const struct bw_rules_prog *p, bw_regex_scratch *s,
                                bw_error *err) BW_MUST_CHECK;

/* ---- per-request evaluation ------------------------------------------------ */

/* Counters for tests, `bulwark eval` and metrics. */
struct bw_rules_eval_stats {
    uint64_t regex_scans;    /* bw_regex_scan calls */
    uint64_t regex_failures; /* scans that failed (value reads as unknown) */
    uint64_t extractions;    /* fields and header slots extracted */
    uint64_t arena_failures; /* allocations refused by the request arena */
};

/* Atoms whose results live in the context itself (no arena). */
#define BW__ATOMS_INLINE 256u

enum bw__cache_state { BW__CACHE_EMPTY, BW__CACHE_DONE, BW__CACHE__COUNT };

struct bw__field_cache {
    enum bw__cache_state state;
    struct bw_val v;
};

struct bw__scan_cache; /* eval.c */
struct bw__hidx;       /* eval_internal.h */

/* One request's evaluation state. Fields are private to eval.c; the struct
 * is public so that callers can keep it on the stack. */
struct bw_rules_ctx {
    const struct bw_rules_prog *prog;
    const struct bw_request_view *view;
    bw_arena *arena;
    bw_regex_scratch *scratch;
    bool ready;  /* slot and scan caches allocated */
    bool broken; /* their allocation failed: every expression is unknown */
    /* Expressions bw_rules_eval's inline path may answer: the program's
     * count once the context is ready (not broken, atoms kept), else 0. */
    uint32_t fast_n;
    const uint32_t *single;                      /* prog's (eval_internal.h) */
    uint32_t fields_done;                        /* bit f: field_vals[f] is extracted */
    struct bw_val field_vals[BW_RULES_F__COUNT]; /* not zeroed by init: read only when done */
    struct bw__field_cache *slots;               /* prog's header slots */
    struct bw__scan_cache *scans;                /* prog's scan groups */
    struct bw__field_cache *memos;               /* prog's shared calls */
    /* prog's atoms (eval_internal.h): 0 not yet computed, else
     * 1 + enum bw_tri. In atoms_inline when they fit, so that most programs
     * take no arena for them; NULL when a larger program's could not be
     * allocated (each atom is then computed alone, each time). */
    uint8_t *atoms;
    struct bw__hidx *hidx; /* prog's request header names, indexed on first use */
    bool hidx_done;
    uint64_t present; /* with hidx: bit id for each header name id below 62 in the request */
    struct bw_rules_eval_stats stats;
    uint8_t atoms_inline[BW__ATOMS_INLINE]; /* not zeroed by init: make_ready zeroes what is used */
};

/* Binds a context to one request. Allocates nothing (caches are taken from
 * the arena on first use). view, arena and scratch must outlive cx; the
 * scratch must have been reserved for p (bw_rules_prog_reserve). */
void bw_rules_ctx_init(struct bw_rules_ctx *cx, const struct bw_rules_prog *p,
                       const struct bw_request_view *view, bw_arena *arena,
                       bw_regex_scratch *scratch);

/* The value of expression i (i < bw_rules_prog_count) for the bound request.
 * A rule fires only on BW_TRI_TRUE. i out of range gives BW_TRI_UNKNOWN. */
static inline enum bw_tri bw_rules_eval(struct bw_rules_ctx *cx, size_t i);

/* bw_rules_eval's every case; what follows is only its most common one. */
enum bw_tri bw__rules_eval(struct bw_rules_ctx *cx, size_t i);

/* Inline because most rules are one test whose result is already known
 * (computed with others of its group, eval_internal.h): reading it costs
 * less than a call into eval.c. The test's result byte is 1 + enum bw_tri,
 * 0 while not computed; single[i] is atom << 1 | negated, and for an
 * expression that is not a single atom, an atom number past the last whose
 * byte stays 0. */
static inline enum bw_tri bw_rules_eval(struct bw_rules_ctx *cx, size_t i)
{
    if (__builtin_expect(i < cx->fast_n, 1)) {
        uint32_t s = cx->single[i];
        unsigned v = cx->atoms[s >> 1];
        if (v != 0) {
            unsigned t = v - 1u;                              /* 0 false, 1 true, 2 unknown */
            return (enum bw_tri)(t ^ ((s & 1u) & ~(t >> 1))); /* not: flip unless unknown */
        }
    }
    return bw__rules_eval(cx, i);
}

/* Evaluates expressions from, from + 1, ... up to to - 1 in order, as
 * calling bw_rules_eval on each would, and stops at the first whose value
 * is TRUE: returns its index, or to when none is (to is capped at
 * bw_rules_prog_count). What a rule set runs when nothing needs each
 * rule's value (no trace): most rules are then a byte compare in one
 * loop, instead of a call each. An expression that cannot be TRUE because
 * a value it needs is absent from the request (eval_internal.h, struct
 * bw__skip) is passed over without being evaluated. */
size_t bw_rules_eval_first_true(struct bw_rules_ctx *cx, size_t from, size_t to);

/* Whether bw_rules_eval_first_true passes over expression i for the bound
 * request without evaluating it: a value it needs is absent, so it cannot
 * be TRUE (for tests). */
bool bw__rules_skipped(struct bw_rules_ctx *cx, size_t i);

/* The same value as bw_rules_eval, computed by walking expression i's tree
 * instead of running its flattened form: the reference the flattened form is
 * tested against (tests/unit/rules/test_flatten.c, fuzz_rules_eval.c). */
enum bw_tri bw__rules_eval_tree(struct bw_rules_ctx *cx, size_t i);

/* The value of a scalar field for the bound request, through the same
 * once-per-request cache the expressions use (rate-limit keys, `bulwark
 * eval`). Maps read as unknown. */
struct bw_val bw_rules_field_value(struct bw_rules_ctx *cx, enum bw_rules_field f);

#endif
