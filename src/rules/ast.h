/* The typed AST of a rules expression: what the parser builds, the checker
 * types and the compiler (a later layer) consumes. Every variant is a tagged
 * union member switched on with no default:, so a new node kind that some
 * pass forgets does not compile.
 *
 * Invariants after a successful bw_rules_parse():
 *   - every node's type is set and the root's type is Bool (not lifted);
 *   - and/or/xor are n-ary (a chain "a and b and c" is one node with three
 *     operands), so the tree's depth is bounded by BW_RULES_MAX_DEPTH
 *     nesting (parentheses, not, calls), not by the expression's length;
 *   - all slices point into memory owned by the arena given to the parser
 *     (a copy of the expression text, or decoded literals).
 * Nothing here is NULL to mean "absent": optional parts are variants. */
#ifndef BW_RULES_AST_H
#define BW_RULES_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "rules/fields.h"

/* A byte range of the expression text (offsets from its first byte). */
struct bw_rules_span {
    uint32_t off;
    uint32_t len;
};

enum bw_rules_ip_family {
    BW_RULES_IPV4,
    BW_RULES_IPV6,
};

/* An address or network. addr holds 4 (IPV4) or 16 (IPV6) bytes in network
 * order; prefix is the network length (32 / 128 for a single address).
 * Bits past the prefix are zero (a CIDR with host bits set is refused).
 * IPv4-mapped IPv6 literals (::ffff:a.b.c.d, and /96+ networks of them) are
 * stored as IPv4: the evaluator must unmap ip.src the same way. */
struct bw_rules_ip {
    enum bw_rules_ip_family family;
    uint8_t prefix;
    uint8_t addr[16];
};

enum bw_rules_node_kind {
    BW_RULES_N_BOOL,    /* literal true / false */
    BW_RULES_N_INT,     /* literal Int */
    BW_RULES_N_BYTES,   /* literal string (escapes decoded) */
    BW_RULES_N_IP,      /* literal address (prefix full: CIDRs only in sets) */
    BW_RULES_N_FIELD,   /* a field of the table in fields.h */
    BW_RULES_N_MAP_GET, /* map["key"]: Array of the map's elements */
    BW_RULES_N_INDEX,   /* array[n]: one element, unknown when out of range */
    BW_RULES_N_EACH,    /* array[*]: the array, lifted (see `lifted`) */
    BW_RULES_N_CALL,    /* function call */
    BW_RULES_N_NOT,     /* not / ! */
    BW_RULES_N_LOGIC,   /* and / or / xor, n-ary */
    BW_RULES_N_COMPARE, /* eq ne lt le gt ge contains */
    BW_RULES_N_MATCHES, /* matches / ~ with a literal pattern */
    BW_RULES_N_IN,      /* in { set } */
    BW_RULES_N__COUNT
};

enum bw_rules_logic_op { BW_RULES_AND, BW_RULES_OR, BW_RULES_XOR, BW_RULES_LOGIC__COUNT };

enum bw_rules_cmp_op {
    BW_RULES_EQ,
    BW_RULES_NE,
    BW_RULES_LT,
    BW_RULES_LE,
    BW_RULES_GT,
    BW_RULES_GE,
    BW_RULES_CONTAINS,
    BW_RULES_CMP__COUNT
};

enum bw_rules_set_kind {
    BW_RULES_SET_BYTES,     /* "string" */
    BW_RULES_SET_INT_RANGE, /* 7 (lo == hi) or 1..10 (inclusive, lo <= hi) */
    BW_RULES_SET_IP,        /* address (full prefix) or CIDR */
    BW_RULES_SET__COUNT
};

struct bw_rules_set_elem {
    enum bw_rules_set_kind kind;
    struct bw_rules_span span;
    union {
        bw_slice bytes;
        struct {
            int64_t lo, hi;
        } range;
        struct bw_rules_ip ip;
    } u;
};

struct bw_rules_node {
    enum bw_rules_node_kind kind;
    /* Set by the checker. */
    struct bw_rules_type type;
    /* The value is an Array produced by [*] (directly or through lifted
     * functions and comparisons): operators and functions taking a scalar
     * apply to each element and give an Array of results. Only any() and
     * all() turn a lifted Array<Bool> back into a Bool. */
    bool lifted;
    struct bw_rules_span span; /* the whole node's text */
    union {
        bool boolean;
        int64_t integer;
        bw_slice bytes;
        struct bw_rules_ip ip;
        enum bw_rules_field field;
        struct {
            struct bw_rules_node *map;
            bw_slice key; /* header name, lowercased, a valid token */
        } map_get;
        struct {
            struct bw_rules_node *array;
            int64_t index; /* >= 0 */
        } index;
        struct {
            struct bw_rules_node *array;
        } each;
        struct {
            enum bw_rules_func fn;
            struct bw_rules_span name_span;
            size_t nargs;
            struct bw_rules_node **args;
        } call;
        struct {
            struct bw_rules_node *operand;
        } not_;
        struct {
            enum bw_rules_logic_op op;
            size_t n; /* >= 2 */
            struct bw_rules_node **operands;
        } logic;
        struct {
            enum bw_rules_cmp_op op;
            struct bw_rules_span op_span;
            struct bw_rules_node *lhs, *rhs;
        } compare;
        struct {
            struct bw_rules_node *lhs;
            bw_slice pattern; /* the regex text, escapes decoded */
            struct bw_rules_span pattern_span;
        } matches;
        struct {
            struct bw_rules_node *lhs;
            size_t n; /* >= 1 */
            struct bw_rules_set_elem *elems;
        } in;
    } u;
};

const char *bw_rules_cmp_op_name(enum bw_rules_cmp_op op);
const char *bw_rules_logic_op_name(enum bw_rules_logic_op op);

#endif
