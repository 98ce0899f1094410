/* The compiled form shared by compile.c (which builds it) and eval.c (which
 * runs it). Not for use outside src/rules/.
 *
 * A program is one tree of bw__cnode per expression, plus the flattened
 * form of its logic layer that bw_rules_eval runs (below). The tree mirrors the
 * checked AST with everything that can be decided at load decided: literals
 * are values, fields are ids, header lookups are slots, sets are built and
 * matches point at (scan group, pattern id), as do the `contains` literals
 * folded into a scan group (compile.c). Identical calls (by canonical
 * text, bw_rules_format) are one shared node whose value is memoised per
 * request, so `lower(http.user_agent)` in twenty rules is lowered once. */
#ifndef BW_RULES_EVAL_INTERNAL_H
#define BW_RULES_EVAL_INTERNAL_H

#include "rules/eval.h"
#include "rules/sets.h"

enum bw__ck {
    BW__C_CONST,   /* a literal value */
    BW__C_FIELD,   /* a scalar field (or a whole map, only under has()) */
    BW__C_HEADER,  /* map["name"]: Array<Bytes> through a header slot */
    BW__C_INDEX,   /* array[n] */
    BW__C_EACH,    /* array[*]: the array, lifted */
    BW__C_CALL,    /* function */
    BW__C_NOT,     /* not */
    BW__C_LOGIC,   /* and / or / xor, n-ary */
    BW__C_COMPARE, /* eq ne lt le gt ge contains */
    BW__C_MATCHES, /* regex, through a scan group */
    BW__C_IN,      /* in { set } */
    BW__C_BYTES_K, /* a Bytes operation with a constant right side (never lifted) */
    BW__C__COUNT
};

/* The operations BW__C_BYTES_K specialises: `x eq "k"`, `x ne "k"`,
 * `x contains "k"`, `starts_with(x, "k")`, `ends_with(x, "k")`. Same
 * semantics as the general nodes; only the constant is not evaluated. */
enum bw__bytes_op {
    BW__BK_EQ,
    BW__BK_NE,
    BW__BK_CONTAINS,
    BW__BK_STARTS_WITH,
    BW__BK_ENDS_WITH,
    BW__BK__COUNT
};

/* The built set of an `in { ... }`: only the member of its kind is used. */
struct bw__set {
    enum bw_rules_set_kind kind;
    struct bw_bytes_set bytes;
    struct bw_int_set ints;
    struct bw_ip_set ips;
};

struct bw__cnode {
    enum bw__ck kind;
    bool lifted; /* evaluates to an Array: the operation is applied per element */
    union {
        struct bw_val konst;
        enum bw_rules_field field;
        struct {
            size_t slot;
        } header;
        struct {
            const struct bw__cnode *array;
            int64_t index;
        } index;
        struct {
            const struct bw__cnode *array;
        } each;
        struct {
            enum bw_rules_func fn;
            size_t nargs;
            const struct bw__cnode **args;
            /* The same call (same canonical text) appears more than once in
             * the program: the node is shared and its value is computed once
             * per request, in cx->memos[memo_slot]. */
            bool memo;
            size_t memo_slot;
        } call;
        struct {
            const struct bw__cnode *operand;
        } not_;
        struct {
            enum bw_rules_logic_op op;
            size_t n;
            const struct bw__cnode **operands;
        } logic;
        struct {
            enum bw_rules_cmp_op op;
            const struct bw__cnode *lhs, *rhs;
        } compare;
        struct {
            size_t group; /* index into prog->groups */
            size_t id;    /* pattern id in that group's database */
        } matches;
        struct {
            const struct bw__cnode *lhs;
            const struct bw__set *set; /* out of line: keeps every node small */
        } in;
        struct {
            enum bw__bytes_op op;
            const struct bw__cnode *lhs;
            bw_slice k;
        } bytes_k;
    } u;
};

/* ---- the logic layer, flattened ----------------------------------------------
 *
 * bw_rules_eval does not walk the trees. Each expression's not / and / or /
 * xor layer is compiled into a run of instructions over "atoms", the Bool
 * leaves below the logic layer, and every atom has a result byte per
 * request (bw_rules_ctx.atoms: 0 not computed yet, else 1 + enum bw_tri).
 * Atoms are computed in groups, the first time one of the group is needed:
 * - LIT: a test of one value against a constant (`x eq "k"`, `contains`,
 *   `starts_with`, `ends_with`, `ne`, `x in {...}`). The tests on the same
 *   left side (same field, header slot or shared call) are one literal
 *   group: its left side is computed once, then every test of the group in
 *   one tight loop (sorted by operation, so the loop's branches are
 *   predictable), each into its byte.
 * - MATCH: a pattern of a scan group (a `matches`, or a folded `contains`).
 *   Every pattern of a scan group that some atom reads has an atom, and the
 *   group's one scan fills all of them.
 * - HEADERS: `any(t(h["name"][*]))` / `all(...)` where t is a literal
 *   test (as above, lifted), optionally of lower() / upper() of each value;
 *   and `has(h["name"])`. Computed alone, straight from the request's
 *   header lines: no array of values is built and nothing is allocated
 *   (lower() / upper() go through a small stack buffer; a longer value
 *   sends the atom through the tree).
 * - NODE: anything else, computed alone through the tree (eval.c's tri()).
 * Tests and bit reads allocate nothing and have no other effect, so filling
 * the bytes of atoms that no rule evaluated changes nothing but time; what
 * allocates (a left side, a scan) happens exactly when the tree would have
 * done it.
 *
 * Most expressions are one atom, or `not` of one: bw_rules_eval then reads
 * the byte with no dispatch at all (prog->single). The others run their
 * instructions (prog->code from prog->entry[i] to BW__OP_END) in one loop.
 * Short-circuit is kept exactly (an operand that is not needed is not
 * computed, so neither its values nor its arena use happen): and / or / xor
 * jump past their remaining operands once decided. An accumulator per
 * nesting level of logic nodes holds each one's running value; nesting
 * deeper than BW__MAX_LOGIC_DEPTH (more than the parser allows) stays in
 * the tree, as a NODE atom. An expression that is one and / or of atoms,
 * each under any number of `not` (`a and not b and c`: most rules that are
 * not a single atom), is one FLAT instruction over its operands instead,
 * run by a loop with no dispatch. */
enum bw__op {
    BW__OP_ATOM,  /* r = atom a */
    BW__OP_NOT,   /* r = not r */
    BW__OP_FIRST, /* acc[depth] = r; when that decides logic, jump to a */
    BW__OP_STEP,  /* r = acc[depth] = acc[depth] logic r; when decided, jump to a */
    BW__OP_END,   /* the expression's value is r */
    BW__OP_FLAT,  /* r = and / or (logic) of the a ATOM instructions that follow, each
                   * negated when its depth is 1; then on past them */
    BW__OP__COUNT
};

#define BW__MAX_LOGIC_DEPTH 64u

struct bw__insn {
    uint8_t op;    /* enum bw__op */
    uint8_t logic; /* FIRST / STEP: enum bw_rules_logic_op */
    uint8_t depth; /* FIRST / STEP: accumulator, < BW__MAX_LOGIC_DEPTH */
    uint32_t a;
};

enum bw__atom_kind { BW__A_LIT, BW__A_MATCH, BW__A_HEADERS, BW__A_NODE, BW__A__COUNT };

/* What a HEADERS atom computes. */
enum bw__hq { BW__HQ_ANY, BW__HQ_ALL, BW__HQ_HAS, BW__HQ__COUNT };

struct bw__atom {
    uint8_t kind;   /* enum bw__atom_kind */
    uint8_t hq;     /* HEADERS: enum bw__hq */
    uint8_t hmap;   /* HEADERS: BW_RULES_FN_LOWER, _UPPER, or BW_RULES_FN__COUNT for none */
    uint32_t group; /* LIT: literal group; MATCH: scan group; HEADERS: header slot */
    uint32_t id;    /* MATCH: pattern id; HEADERS (ANY, ALL): the test, in prog->hlits */
    const struct bw__cnode *node; /* the leaf (LIT, HEADERS, NODE: computed through the tree
                                   * when there is no room for results or buffer) */
};

/* The tests a literal group runs (the first five as enum bw__bytes_op). */
enum bw__lit_op {
    BW__L_EQ,
    BW__L_NE,
    BW__L_CONTAINS,
    BW__L_STARTS_WITH,
    BW__L_ENDS_WITH,
    BW__L_IN, /* set membership, any set kind */
    BW__L_LT, /* Int compares with the constant i */
    BW__L_LE,
    BW__L_GT,
    BW__L_GE,
    BW__L_IEQ,
    BW__L_INE,
    /* `lower(x) in {...}` / `upper(x) in {...}` (a Bytes set), in x's group:
     * x looked up with the mapping applied as it is hashed and compared
     * (bw_bytes_set_contains_mapped), so no lowered copy is made. */
    BW__L_IN_MAPPED,
    BW__L__COUNT
};

/* Literal test i is atom i (literal atoms come first). */
struct bw__lit {
    uint8_t op;  /* enum bw__lit_op */
    uint8_t map; /* IN_MAPPED: enum bw_bytes_map */
    bw_slice k;  /* the constant (bytes tests) */
    /* EQ, NE, STARTS_WITH: k's first min(8, |k|) bytes in memory order, and
     * the mask of those bytes; ENDS_WITH: its last ones, at the word's end.
     * A value's word is compared first (bw__lit_words, eval.c): most tests
     * fail there, with no call and no byte loop. */
    uint64_t kw, km;
    int64_t i;                 /* the constant (Int compares) */
    uint32_t anchor;           /* CONTAINS: bw__needle_anchor(k) */
    const struct bw__set *set; /* BW__L_IN */
};

/* A byte filter over a run of a literal group's eq, starts_with or
 * ends_with tests (tests lo .. hi - 1 of the group, one operation, at most
 * 64): a value that equals, starts or ends with a literal has the
 * literal's byte at position at from the start (from_end: from the end),
 * so only the tests in masks[that byte of the value] | always (literals too
 * short to have a byte there) can pass; the others are false without being
 * run. A path group's twenty prefixes are then one table read. */
struct bw__lit_filter {
    uint32_t lo, hi;
    uint8_t at;
    bool from_end;
    uint64_t always;
    uint64_t masks[256];
};

/* Tests in a run that earn it a filter, and the most a filter takes. */
#define BW__FILTER_MIN 6u
#define BW__FILTER_MAX 64u

/* Nesting of lower() / upper() / concat() a by_len group's left side may
 * have (the length is read recursively). */
#define BW__LEN_DEPTH 8u

/* Tests (and atoms) first .. first + n - 1 all have the left side lhs. */
struct bw__lit_group {
    const struct bw__cnode *lhs;
    uint32_t first, n;
    /* lhs is lower(), upper() or concat() of values whose lengths are read
     * without computing them, and every test is one a length can settle
     * (Bytes compares, contains, Bytes sets): the group first tries the
     * length alone, and computes (and allocates) lhs only when some test
     * needs its bytes. flatten.c, by_length. */
    bool by_len;
    uint8_t nfilters;                     /* filters over its runs of tests, sorted by lo */
    const struct bw__lit_filter *filters; /* nfilters of them */
};

/* One distinct (map field, lowercased header name). */
struct bw__slot {
    enum bw_rules_field map; /* HTTP_REQUEST_HEADERS or HTTP_RESPONSE_HEADERS */
    bw_slice name;
    uint32_t hname; /* request headers: the name's id in prog->hnames */
};

/* The request header names a program reads, each with an id: the header
 * fields' names first (fixed ids), then every request-header slot's. Per
 * request, the headers are indexed by these ids in one pass, on the first
 * lookup (eval.c), so a field or slot no longer rescans every header. */
enum bw__hname_fixed {
    BW__H_USER_AGENT,
    BW__H_REFERER,
    BW__H_COOKIE,
    BW__H_X_FORWARDED_FOR,
    BW__H__FIXED
};

/* Names are bucketed by length (BW__HLEN_BUCKETS - 1 and longer share the
 * last bucket), so a header is compared with the few names of its length. */
#define BW__HLEN_BUCKETS 33u

/* One request header name's occurrences in this request. */
struct bw__hidx {
    size_t count; /* headers with this name */
    size_t first; /* index of the first of them (when count > 0) */
};

/* All matches whose left side has the same canonical text: one database,
 * scanned once per request (per element when lifted). */
struct bw__group {
    bw_slice key;                /* bw_rules_format of the left side */
    const struct bw__cnode *lhs; /* compiled left side (of the first member) */
    size_t npatterns;
    bw_regex_db *db;
};

struct bw_rules_prog {
    const struct bw__cnode **roots;
    size_t n;
    struct bw__slot *slots;
    size_t nslots;
    struct bw__group *groups;
    size_t ngroups;
    size_t nmemos;          /* shared calls (bw__cnode.u.call.memo) */
    const bw_slice *hnames; /* nhnames lowercased request header names */
    uint32_t nhnames;
    uint32_t hlen_first[BW__HLEN_BUCKETS + 1]; /* bucket b: hby_len[first[b] .. first[b+1]) */
    const uint32_t *hby_len;                   /* name ids, by length bucket */
    /* The flattened logic layer (above). */
    const uint32_t *single; /* n: atom << 1 | negated; natoms << 1 when not one atom */
    /* n: atom << 2 | the byte that makes the expression TRUE (2, or 1 under
     * a `not`); natoms << 2 | 3 when not one atom (its byte stays 0). What
     * bw_rules_eval_first_true reads: one load and one compare a rule. */
    const uint32_t *fast;
    const uint32_t *entry; /* n: the others start at code[entry[i]] */
    const struct bw__insn *code;
    const struct bw__atom *atoms; /* natoms (+ 1 result byte per request, always 0) */
    uint32_t natoms;
    const struct bw__lit *lits; /* nlits literal tests, by group */
    uint32_t nlits;
    const struct bw__lit_group *lit_groups;
    uint32_t nlit_groups;
    const uint32_t *scan_atoms; /* ngroups: atom of scan group g's pattern 0, or UINT32_MAX */
    /* Literal groups computed when a context gets ready, before any rule
     * asks (flatten.c, eager_field): their left side is a field read
     * straight from the request (method, host, URI, path, query, ip.src,
     * ssl, bot.score, response code), and their tests have no effect, so
     * computing them early changes nothing but time. Most rulesets read
     * these fields in most rules; filling them one by one, each when its
     * first rule comes, cost a mispredicted branch and a call apiece. */
    const uint32_t *eager;
    uint32_t neager;
    const struct bw__lit *hlits;  /* the tests of HEADERS atoms */
    const struct bw__skip *skips; /* n (above) */
    bool any_skips;               /* some expression has a condition */
};

/* Fills lit->kw and lit->km from lit->op and lit->k (flatten.c). */
void bw__lit_words(struct bw__lit *lit);

/* The byte of needle k that a substring search looks for first: the rarest
 * in request text ("/etc/passwd" is not looked for at every '/' of a
 * path); flatten.c. */
size_t bw__needle_anchor(bw_slice k);

/* ---- skipping what cannot be true --------------------------------------------
 *
 * Most requests lack most of what rules look at: no Cookie, no Referer, none
 * of the dozen special headers a WAF ruleset tests. An expression that
 * cannot be TRUE when some value is absent (`lower(http.user_agent)
 * contains "sqlmap"` is unknown without a User-Agent; `has(h["x"]) or
 * has(h["y"])` is false without both) need not be evaluated then:
 * bw_rules_eval_first_true passes over it, as it would over a false one.
 * flatten.c derives, from each expression's tree, a condition on which
 * values are absent (a bit each: a request header name, by its id in
 * prog->hnames, below BW__ABSENT_NAMES; http.host; bot.score) that implies
 * the expression is not TRUE: "some bit of any is absent, or every bit of
 * all is" (all 0: no second part). The condition may miss cases (it is
 * derived conservatively), never claim one wrongly: a skipped expression
 * would have been false or unknown. */
#define BW__ABSENT_NAMES 62u
#define BW__ABSENT_HOST 62u
#define BW__ABSENT_BOT 63u

struct bw__skip {
    uint64_t any, all;
};

/* Fills p's code, entry, lits and lit groups from its trees (flatten.c);
 * the last step of bw_rules_compile, after the scan groups are numbered. */
bw_status bw__rules_flatten(bw_arena *a, struct bw_rules_prog *p, bw_error *err) BW_MUST_CHECK;

#endif
