/* The compiled form shared by compile.c (which builds it) and eval.c (which
 * runs it). Not for use outside src/rules/.
 *
 * A program is one tree of bw__cnode per expression. The tree mirrors the
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
};

#endif
