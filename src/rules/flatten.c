/* Flattening: the last step of bw_rules_compile. Turns the logic layer of
 * each compiled expression tree (not / and / or / xor) into instructions
 * over atoms, and numbers and groups the atoms (eval_internal.h, "the logic
 * layer, flattened"). Runs at load; allocates in the snapshot arena only.
 *
 * This file owns: which Bool leaves become LIT, MATCH or NODE atoms, the
 * literal groups and the order of their tests, the atom numbering, and the
 * jump targets of short-circuit. It does not own what any of it means at
 * run time (eval.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/eval_internal.h"

/* End of a chain of jumps still to be patched (see emit_logic). */
#define NO_JUMP UINT32_MAX
/* single[i] while numbering, for an expression that is not one atom. */
#define NOT_SINGLE UINT32_MAX

/* A literal group's key: what its left side is. Fields and header slots
 * compare by id; calls by node, since equal calls share one node
 * (compile.c); anything else is a group of its own. */
enum key_kind { KEY_FIELD = 1, KEY_SLOT, KEY_CALL, KEY_OWN };

struct key {
    enum key_kind kind; /* 0: free entry */
    uintptr_t id;
    uint32_t group;
};

/* A Bool leaf as found, before the atoms are numbered. */
struct leaf {
    enum bw__atom_kind kind;
    const struct bw__cnode *node;
    uint32_t group; /* LIT: literal group; MATCH: scan group */
    uint32_t id;    /* MATCH: pattern id */
    struct bw__lit lit;
    uint8_t hq, hmap; /* HEADERS */
};

struct flat {
    struct bw__lit *hlits; /* tests of HEADERS atoms */
    uint32_t nhlits;
    struct bw__insn *code;
    uint32_t ncode;
    struct leaf *leaves; /* in the order found; ATOM instructions and
                          * single expressions refer to these until numbered */
    uint32_t nleaves;
    struct bw__lit_group *groups;
    uint32_t ngroups;
    struct key *keys; /* open addressing, nkeys_cap a power of two */
    size_t nkeys_cap;
};

static bool is_logic(const struct bw__cnode *n, unsigned depth)
{
    return n->kind == BW__C_LOGIC && depth < BW__MAX_LOGIC_DEPTH &&
           n->u.logic.op < BW_RULES_LOGIC__COUNT;
}

/* Instructions and leaves for node n at logic nesting depth (emit_node). */
static size_t count_insns(const struct bw__cnode *n, unsigned depth, size_t *leaves)
{
    if (n->kind == BW__C_NOT)
        return 1 + count_insns(n->u.not_.operand, depth, leaves);
    if (is_logic(n, depth)) {
        size_t k = n->u.logic.n;
        for (size_t i = 0; i < n->u.logic.n; i++)
            k += count_insns(n->u.logic.operands[i], depth + 1, leaves);
        return k;
    }
    (*leaves)++;
    return 1;
}

static struct bw__insn *emit(struct flat *f, enum bw__op op)
{
    struct bw__insn *in = &f->code[f->ncode++];
    *in = (struct bw__insn){.op = (uint8_t)op};
    return in;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* The literal group of left side lhs (leaf: the test, for KEY_OWN). */
static uint32_t group_of(struct flat *f, const struct bw__cnode *lhs, const struct bw__cnode *leaf)
{
    enum key_kind kind = KEY_OWN;
    uintptr_t id = (uintptr_t)leaf;
    switch (lhs->kind) {
    case BW__C_FIELD:
        kind = KEY_FIELD, id = (uintptr_t)lhs->u.field;
        break;
    case BW__C_HEADER:
        kind = KEY_SLOT, id = (uintptr_t)lhs->u.header.slot;
        break;
    case BW__C_CALL:
        kind = KEY_CALL, id = (uintptr_t)lhs;
        break;
    case BW__C_CONST:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C_NOT:
    case BW__C_LOGIC:
    case BW__C_COMPARE:
    case BW__C_MATCHES:
    case BW__C_IN:
    case BW__C_BYTES_K:
    case BW__C__COUNT:
        break;
    }
    size_t mask = f->nkeys_cap - 1, at = (size_t)mix(id * 4 + (uintptr_t)kind) & mask;
    while (f->keys[at].kind && !(f->keys[at].kind == kind && f->keys[at].id == id))
        at = (at + 1) & mask;
    struct key *k = &f->keys[at];
    if (!k->kind) {
        *k = (struct key){.kind = kind, .id = id, .group = f->ngroups};
        f->groups[f->ngroups++] = (struct bw__lit_group){.lhs = lhs};
    }
    return k->group;
}

/* `lower(y) in {...}` / `upper(y) in {...}`: a test in y's literal group
 * (BW__L_IN_MAPPED), which looks y up as lowered without lowering it; a
 * literal group on lower(y) would compute lower(y) first. */
static bool in_by_length(const struct bw__cnode *n)
{
    const struct bw__cnode *l = n->u.in.lhs;
    return n->u.in.set->kind == BW_RULES_SET_BYTES && l->kind == BW__C_CALL && !l->lifted &&
           l->u.call.nargs == 1 &&
           (l->u.call.fn == BW_RULES_FN_LOWER || l->u.call.fn == BW_RULES_FN_UPPER);
}

/* An Int compare `x op K`, as a literal test. */
static bool int_lit_of(const struct bw__cnode *n, struct bw__lit *lit)
{
    if (n->kind != BW__C_COMPARE || n->lifted || n->u.compare.lhs->lifted ||
        n->u.compare.rhs->kind != BW__C_CONST || n->u.compare.rhs->u.konst.kind != BW_VAL_INT)
        return false;
    static const uint8_t ops[BW_RULES_CMP__COUNT] = {
        [BW_RULES_EQ] = BW__L_IEQ,         [BW_RULES_NE] = BW__L_INE, [BW_RULES_LT] = BW__L_LT,
        [BW_RULES_LE] = BW__L_LE,          [BW_RULES_GT] = BW__L_GT,  [BW_RULES_GE] = BW__L_GE,
        [BW_RULES_CONTAINS] = BW__L__COUNT};
    if (n->u.compare.op >= BW_RULES_CMP__COUNT || ops[n->u.compare.op] == BW__L__COUNT)
        return false;
    *lit = (struct bw__lit){.op = ops[n->u.compare.op], .i = n->u.compare.rhs->u.konst.u.integer};
    return true;
}

/* A constant Bytes operand. */
static bool bytes_const(const struct bw__cnode *n, bw_slice *k)
{
    if (n->kind != BW__C_CONST || n->lifted || n->u.konst.kind != BW_VAL_BYTES)
        return false;
    *k = n->u.konst.u.bytes;
    return true;
}

/* x, lifted, as a literal test of each value v of x's lifted operand. */
static bool lifted_test_of(const struct bw__cnode *x, struct bw__lit *lit,
                           const struct bw__cnode **v)
{
    bw_slice k;
    if (!x->lifted)
        return false;
    if (x->kind == BW__C_IN) {
        *lit = (struct bw__lit){.op = BW__L_IN, .set = x->u.in.set};
        *v = x->u.in.lhs;
        return true;
    }
    if (x->kind == BW__C_COMPARE && bytes_const(x->u.compare.rhs, &k)) {
        enum bw_rules_cmp_op op = x->u.compare.op;
        if (op != BW_RULES_EQ && op != BW_RULES_NE && op != BW_RULES_CONTAINS)
            return false;
        *lit = (struct bw__lit){.op = op == BW_RULES_EQ   ? BW__L_EQ
                                      : op == BW_RULES_NE ? BW__L_NE
                                                          : BW__L_CONTAINS,
                                .k = k,
                                .anchor = (uint32_t)bw__needle_anchor(k)};
        *v = x->u.compare.lhs;
        return true;
    }
    if (x->kind == BW__C_CALL && x->u.call.nargs == 2 &&
        (x->u.call.fn == BW_RULES_FN_STARTS_WITH || x->u.call.fn == BW_RULES_FN_ENDS_WITH) &&
        bytes_const(x->u.call.args[1], &k)) {
        *lit = (struct bw__lit){.op = x->u.call.fn == BW_RULES_FN_STARTS_WITH ? BW__L_STARTS_WITH
                                                                              : BW__L_ENDS_WITH,
                                .k = k};
        *v = x->u.call.args[0];
        return true;
    }
    return false;
}

/* v is h["name"][*] (slot), or lower() / upper() of it (map). */
static bool header_values_of(const struct bw__cnode *v, uint32_t *slot, uint8_t *map)
{
    *map = BW_RULES_FN__COUNT;
    if (v->kind == BW__C_CALL && v->lifted && v->u.call.nargs == 1 &&
        (v->u.call.fn == BW_RULES_FN_LOWER || v->u.call.fn == BW_RULES_FN_UPPER)) {
        *map = (uint8_t)v->u.call.fn;
        v = v->u.call.args[0];
    }
    if (v->kind != BW__C_EACH || v->u.each.array->kind != BW__C_HEADER)
        return false;
    *slot = (uint32_t)v->u.each.array->u.header.slot;
    return true;
}

/* n as a HEADERS atom (eval_internal.h) into l. */
static bool headers_of(struct flat *f, const struct bw__cnode *n, struct leaf *l)
{
    if (n->kind != BW__C_CALL || n->lifted || n->u.call.nargs != 1)
        return false;
    const struct bw__cnode *a0 = n->u.call.args[0];
    if (n->u.call.fn == BW_RULES_FN_HAS) {
        if (a0->kind != BW__C_HEADER)
            return false;
        l->hq = BW__HQ_HAS;
        l->group = (uint32_t)a0->u.header.slot;
        return true;
    }
    if (n->u.call.fn != BW_RULES_FN_ANY && n->u.call.fn != BW_RULES_FN_ALL)
        return false;
    struct bw__lit lit;
    const struct bw__cnode *v;
    if (!lifted_test_of(a0, &lit, &v) || !header_values_of(v, &l->group, &l->hmap))
        return false;
    l->hq = n->u.call.fn == BW_RULES_FN_ANY ? BW__HQ_ANY : BW__HQ_ALL;
    l->id = f->nhlits;
    f->hlits[f->nhlits++] = lit;
    return true;
}

void bw__lit_words(struct bw__lit *lit)
{
    unsigned char w[8] = {0}, m[8] = {0};
    size_t n = lit->k.len < 8 ? lit->k.len : 8;
    switch ((enum bw__lit_op)lit->op) {
    case BW__L_EQ:
    case BW__L_NE:
    case BW__L_STARTS_WITH:
        if (n)
            memcpy(w, lit->k.ptr, n);
        memset(m, 0xff, n);
        break;
    case BW__L_ENDS_WITH:
        if (n)
            memcpy(w + 8 - n, lit->k.ptr + lit->k.len - n, n);
        memset(m + 8 - n, 0xff, n);
        break;
    case BW__L_CONTAINS:
    case BW__L_IN:
    case BW__L_IN_MAPPED:
    case BW__L_LT:
    case BW__L_LE:
    case BW__L_GT:
    case BW__L_GE:
    case BW__L_IEQ:
    case BW__L_INE:
    case BW__L__COUNT:
        break;
    }
    memcpy(&lit->kw, w, 8);
    memcpy(&lit->km, m, 8);
}

/* How common a byte is in request text: 0 rare, 3 everywhere ('/'). */
static unsigned byte_rank(unsigned char c)
{
    if (c == '/')
        return 3;
    if (c == '.' || c == '-' || c == '_' || c == '=' || c == '&' || c == ' ' || c == ',')
        return 2;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))
        return 1;
    return 0;
}

size_t bw__needle_anchor(bw_slice k)
{
    size_t j = 0;
    unsigned best = k.len ? byte_rank((unsigned char)k.ptr[0]) : 0;
    for (size_t i = 1; i < k.len && best > 0; i++) {
        unsigned r = byte_rank((unsigned char)k.ptr[i]);
        if (r < best) {
            best = r;
            j = i;
        }
    }
    return j;
}

/* Whether a literal group on lhs is computed up front (eval_internal.h,
 * prog->eager): a field read straight from the request. The normalised
 * path copies the received one only when that is not normal already;
 * rulesets read it first and nearly always. Joined headers (User-Agent,
 * Cookie...) are built from the header index, so they wait for a rule. */
static bool eager_field(const struct bw__cnode *lhs)
{
    if (lhs->kind != BW__C_FIELD || lhs->lifted)
        return false;
    switch (lhs->u.field) {
    case BW_RULES_F_HTTP_REQUEST_METHOD:
    case BW_RULES_F_HTTP_HOST:
    case BW_RULES_F_HTTP_REQUEST_URI:
    case BW_RULES_F_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_HTTP_REQUEST_URI_QUERY:
    case BW_RULES_F_IP_SRC:
    case BW_RULES_F_SSL:
    case BW_RULES_F_BOT_SCORE:
    case BW_RULES_F_HTTP_RESPONSE_CODE:
        return true;
    case BW_RULES_F_HTTP_USER_AGENT:
    case BW_RULES_F_HTTP_REFERER:
    case BW_RULES_F_HTTP_COOKIE:
    case BW_RULES_F_HTTP_X_FORWARDED_FOR:
    case BW_RULES_F_HTTP_REQUEST_HEADERS:
    case BW_RULES_F_HTTP_RESPONSE_HEADERS:
    case BW_RULES_F__COUNT:
        break;
    }
    return false;
}

/* Whether n's length is known without computing n (eval.c, len_of): a
 * Bytes field or constant, lower() / upper() of one, concat() of them. */
static bool length_known(const struct bw__cnode *n, unsigned depth)
{
    if (n->lifted || depth > BW__LEN_DEPTH)
        return false;
    switch (n->kind) {
    case BW__C_FIELD:
    case BW__C_CONST:
        return true;
    case BW__C_CALL:
        if (n->u.call.fn != BW_RULES_FN_LOWER && n->u.call.fn != BW_RULES_FN_UPPER &&
            n->u.call.fn != BW_RULES_FN_CONCAT)
            return false;
        for (size_t i = 0; i < n->u.call.nargs; i++)
            if (!length_known(n->u.call.args[i], depth + 1))
                return false;
        return n->u.call.nargs > 0;
    case BW__C_HEADER:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C_NOT:
    case BW__C_LOGIC:
    case BW__C_COMPARE:
    case BW__C_MATCHES:
    case BW__C_IN:
    case BW__C_BYTES_K:
    case BW__C__COUNT:
        break;
    }
    return false;
}

/* Whether literal test lit is usually settled by its value's length: the
 * tests of exact values. contains, starts_with and ends_with need only a
 * length of at least |k|, which nearly every value has: trying them by
 * length first would cost more than it saves (measured). */
static bool settled_by_length(const struct bw__lit *lit)
{
    switch ((enum bw__lit_op)lit->op) {
    case BW__L_EQ:
    case BW__L_NE:
        return true;
    case BW__L_IN:
    case BW__L_IN_MAPPED:
        return lit->set->kind == BW_RULES_SET_BYTES;
    case BW__L_CONTAINS:
    case BW__L_STARTS_WITH:
    case BW__L_ENDS_WITH:
    case BW__L_LT:
    case BW__L_LE:
    case BW__L_GT:
    case BW__L_GE:
    case BW__L_IEQ:
    case BW__L_INE:
    case BW__L__COUNT:
        break;
    }
    return false;
}

/* A group worth trying by length first (bw__lit_group.by_len): its left
 * side is a call whose value is a copy; a field is read in place anyway. */
static bool by_length(const struct bw__lit_group *g, const struct bw__lit *lits)
{
    if (g->lhs->kind != BW__C_CALL || !length_known(g->lhs, 0))
        return false;
    for (uint32_t j = 0; j < g->n; j++)
        if (!settled_by_length(&lits[g->first + j]))
            return false;
    return true;
}

/* Records Bool leaf n; returns its leaf number. */
static uint32_t add_leaf(struct flat *f, const struct bw__cnode *n)
{
    struct leaf *l = &f->leaves[f->nleaves];
    *l = (struct leaf){.kind = BW__A_NODE, .node = n};
    switch (n->kind) {
    case BW__C_BYTES_K:
        l->kind = BW__A_LIT;
        l->lit = (struct bw__lit){.op = (uint8_t)n->u.bytes_k.op,
                                  .k = n->u.bytes_k.k,
                                  .anchor = (uint32_t)bw__needle_anchor(n->u.bytes_k.k)};
        l->group = group_of(f, n->u.bytes_k.lhs, n);
        f->groups[l->group].n++;
        break;
    case BW__C_IN:
        if (n->lifted)
            break;
        l->kind = BW__A_LIT;
        if (in_by_length(n)) {
            l->lit = (struct bw__lit){.op = BW__L_IN_MAPPED,
                                      .map = n->u.in.lhs->u.call.fn == BW_RULES_FN_LOWER
                                                 ? BW_BYTES_MAP_LOWER
                                                 : BW_BYTES_MAP_UPPER,
                                      .set = n->u.in.set};
            l->group = group_of(f, n->u.in.lhs->u.call.args[0], n);
        } else {
            l->lit = (struct bw__lit){.op = BW__L_IN, .set = n->u.in.set};
            l->group = group_of(f, n->u.in.lhs, n);
        }
        f->groups[l->group].n++;
        break;
    case BW__C_MATCHES:
        if (n->lifted)
            break;
        l->kind = BW__A_MATCH;
        l->group = (uint32_t)n->u.matches.group;
        l->id = (uint32_t)n->u.matches.id;
        break;
    case BW__C_COMPARE:
        if (!int_lit_of(n, &l->lit))
            break;
        l->kind = BW__A_LIT;
        l->group = group_of(f, n->u.compare.lhs, n);
        f->groups[l->group].n++;
        break;
    case BW__C_CALL:
        if (headers_of(f, n, l))
            l->kind = BW__A_HEADERS;
        break;
    case BW__C_CONST:
    case BW__C_FIELD:
    case BW__C_HEADER:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C_NOT:
    case BW__C_LOGIC:
    case BW__C__COUNT:
        break;
    }
    return f->nleaves++;
}

static void emit_node(struct flat *f, const struct bw__cnode *n, unsigned depth);

/* An n-ary logic node: each operand, then FIRST (the first) or STEP (the
 * others), each of which jumps past the rest once the value is decided.
 * The jumps are chained through .a while the end is unknown, then
 * patched. */
static void emit_logic(struct flat *f, const struct bw__cnode *n, unsigned depth)
{
    uint32_t chain = NO_JUMP;
    for (size_t i = 0; i < n->u.logic.n; i++) {
        emit_node(f, n->u.logic.operands[i], depth + 1);
        uint32_t at = f->ncode;
        struct bw__insn *in = emit(f, i == 0 ? BW__OP_FIRST : BW__OP_STEP);
        in->logic = (uint8_t)n->u.logic.op;
        in->depth = (uint8_t)depth;
        in->a = chain;
        chain = at;
    }
    while (chain != NO_JUMP) {
        uint32_t next = f->code[chain].a;
        f->code[chain].a = f->ncode;
        chain = next;
    }
}

static void emit_node(struct flat *f, const struct bw__cnode *n, unsigned depth)
{
    if (n->kind == BW__C_NOT) {
        emit_node(f, n->u.not_.operand, depth);
        emit(f, BW__OP_NOT);
    } else if (is_logic(n, depth)) {
        emit_logic(f, n, depth);
    } else {
        uint32_t leaf = add_leaf(f, n);
        emit(f, BW__OP_ATOM)->a = leaf;
    }
}

/* n strips to a leaf under its `not`s (*neg: their parity). */
static const struct bw__cnode *strip_nots(const struct bw__cnode *n, uint8_t *neg)
{
    *neg = 0;
    while (n->kind == BW__C_NOT) {
        *neg ^= 1;
        n = n->u.not_.operand;
    }
    return n;
}

/* n is an and / or whose operands are leaves, each under any number of
 * `not`: one FLAT instruction. */
static bool is_flat(const struct bw__cnode *n)
{
    if (!is_logic(n, 0) || (n->u.logic.op != BW_RULES_AND && n->u.logic.op != BW_RULES_OR) ||
        n->u.logic.n == 0)
        return false;
    for (size_t i = 0; i < n->u.logic.n; i++) {
        uint8_t neg;
        if (is_logic(strip_nots(n->u.logic.operands[i], &neg), 1))
            return false;
    }
    return true;
}

/* FLAT, then an ATOM per operand (depth: negated), in order. As many
 * instructions as emit_node would take or fewer (count_insns). */
static void emit_flat(struct flat *f, const struct bw__cnode *n)
{
    struct bw__insn *h = emit(f, BW__OP_FLAT);
    h->logic = (uint8_t)n->u.logic.op;
    h->a = (uint32_t)n->u.logic.n;
    for (size_t i = 0; i < n->u.logic.n; i++) {
        uint8_t neg;
        const struct bw__cnode *leaf = strip_nots(n->u.logic.operands[i], &neg);
        uint32_t l = add_leaf(f, leaf);
        struct bw__insn *in = emit(f, BW__OP_ATOM);
        in->a = l;
        in->depth = neg;
    }
}

/* Literal leaves in atom order: by group, then by operation, then as found. */
struct lit_order {
    uint32_t group, op, leaf;
};

static int cmp_lit_order(const void *pa, const void *pb)
{
    const struct lit_order *a = pa, *b = pb;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    if (a->op != b->op)
        return a->op < b->op ? -1 : 1;
    return a->leaf < b->leaf ? -1 : a->leaf > b->leaf;
}

_Static_assert((int)BW__L_EQ == (int)BW__BK_EQ && (int)BW__L_NE == (int)BW__BK_NE &&
                   (int)BW__L_CONTAINS == (int)BW__BK_CONTAINS &&
                   (int)BW__L_STARTS_WITH == (int)BW__BK_STARTS_WITH &&
                   (int)BW__L_ENDS_WITH == (int)BW__BK_ENDS_WITH,
               "a bytes op is its literal op");

/* Numbers the atoms (literal tests by group, then a block per scan group
 * that some leaf reads, then the NODE leaves) and points the instructions
 * and single expressions at them. */
static bw_status number_atoms(bw_arena *a, struct flat *f, struct bw_rules_prog *p,
                              uint32_t *single, bw_error *err)
{
    size_t nl = f->nleaves ? f->nleaves : 1, ng = p->ngroups ? p->ngroups : 1;
    uint32_t *atom_of = bw_arena_alloc(a, nl * sizeof *atom_of);
    struct lit_order *order = bw_arena_alloc(a, nl * sizeof *order);
    uint32_t *scan_atoms = bw_arena_alloc(a, ng * sizeof *scan_atoms);
    if (!atom_of || !order || !scan_atoms)
        return bw_error_set(err, "out of memory compiling rules");
    uint32_t nlits = 0, nnodes = 0;
    size_t nmatch = 0;
    for (size_t g = 0; g < p->ngroups; g++)
        scan_atoms[g] = UINT32_MAX;
    for (uint32_t i = 0; i < f->nleaves; i++) {
        const struct leaf *l = &f->leaves[i];
        switch (l->kind) {
        case BW__A_LIT:
            order[nlits++] = (struct lit_order){.group = l->group, .op = l->lit.op, .leaf = i};
            break;
        case BW__A_MATCH:
            if (scan_atoms[l->group] == UINT32_MAX) {
                scan_atoms[l->group] = 0; /* used; numbered below */
                nmatch += p->groups[l->group].npatterns;
            }
            break;
        case BW__A_HEADERS:
        case BW__A_NODE:
            nnodes++;
            break;
        case BW__A__COUNT:
            break;
        }
    }
    size_t natoms = nlits + nmatch + nnodes;
    if (natoms >= UINT32_MAX / 2)
        return bw_error_set(err, "rules program too large: %zu atoms", natoms);
    struct bw__atom *atoms = bw_arena_alloc(a, (natoms ? natoms : 1) * sizeof *atoms);
    struct bw__lit *lits = bw_arena_alloc(a, (nlits ? nlits : 1) * sizeof *lits);
    if (!atoms || !lits)
        return bw_error_set(err, "out of memory compiling rules");

    qsort(order, nlits, sizeof *order, cmp_lit_order);
    for (uint32_t j = 0; j < nlits; j++) {
        const struct leaf *l = &f->leaves[order[j].leaf];
        if (j == 0 || order[j - 1].group != order[j].group)
            f->groups[l->group].first = j;
        lits[j] = l->lit;
        bw__lit_words(&lits[j]);
        atoms[j] = (struct bw__atom){.kind = BW__A_LIT, .group = l->group, .node = l->node};
        atom_of[order[j].leaf] = j;
    }
    uint32_t next = nlits;
    for (size_t g = 0; g < p->ngroups; g++) {
        if (scan_atoms[g] == UINT32_MAX)
            continue;
        scan_atoms[g] = next;
        for (size_t id = 0; id < p->groups[g].npatterns; id++)
            atoms[next++] =
                (struct bw__atom){.kind = BW__A_MATCH, .group = (uint32_t)g, .id = (uint32_t)id};
    }
    for (uint32_t i = 0; i < f->nleaves; i++) {
        const struct leaf *l = &f->leaves[i];
        if (l->kind == BW__A_MATCH) {
            atom_of[i] = scan_atoms[l->group] + l->id;
        } else if (l->kind == BW__A_NODE || l->kind == BW__A_HEADERS) {
            atoms[next] = (struct bw__atom){.kind = (uint8_t)l->kind,
                                            .hq = l->hq,
                                            .hmap = l->hmap,
                                            .group = l->group,
                                            .id = l->id,
                                            .node = l->node};
            atom_of[i] = next++;
        }
    }

    for (uint32_t i = 0; i < f->ncode; i++)
        if (f->code[i].op == BW__OP_ATOM)
            f->code[i].a = atom_of[f->code[i].a];
    for (size_t i = 0; i < p->n; i++)
        single[i] = single[i] == NOT_SINGLE ? (uint32_t)natoms << 1
                                            : atom_of[single[i] >> 1] << 1 | (single[i] & 1u);
    p->atoms = atoms;
    p->natoms = (uint32_t)natoms;
    p->lits = lits;
    p->nlits = nlits;
    p->scan_atoms = scan_atoms;
    return BW_OK;
}

/* ---- byte filters (eval_internal.h, struct bw__lit_filter) ---------------- */

/* The filter of a group's tests lo .. hi - 1 (one operation; lits: the
 * group's first) at position at. */
static void filter_fill(const struct bw__lit *lits, uint32_t lo, uint32_t hi, uint8_t at,
                        bool from_end, struct bw__lit_filter *flt)
{
    memset(flt, 0, sizeof *flt);
    flt->lo = lo;
    flt->hi = hi;
    flt->at = at;
    flt->from_end = from_end;
    for (uint32_t j = lo; j < hi; j++) {
        bw_slice k = lits[j].k;
        uint64_t bit = (uint64_t)1 << (j - lo);
        if (k.len <= at)
            flt->always |= bit;
        else
            flt->masks[(unsigned char)k.ptr[from_end ? k.len - 1 - at : at]] |= bit;
    }
}

/* How well a filter sorts values: distinct bytes it tells apart, less the
 * tests it must always run. Position 0 of a path is always '/'. */
static int filter_score(const struct bw__lit_filter *flt)
{
    int distinct = 0;
    for (unsigned c = 0; c < 256; c++)
        distinct += flt->masks[c] != 0;
    return distinct - 2 * __builtin_popcountll(flt->always);
}

/* The filters of group g's runs of eq, starts_with and ends_with tests
 * long enough to earn one, each at its best position among the first
 * three. */
static bw_status filters_build(bw_arena *a, struct bw__lit_group *g, const struct bw__lit *lits,
                               bw_error *err)
{
    g->nfilters = 0;
    g->filters = NULL;                 /* with nfilters 0: read only below nfilters */
    struct bw__lit_filter *out = NULL; /* allocated for the first run that earns a filter */
    for (uint32_t j = g->first; j < g->first + g->n;) {
        uint8_t op = lits[j].op;
        uint32_t end = j;
        while (end < g->first + g->n && lits[end].op == op)
            end++;
        uint32_t lo = j, n = end - j;
        j = end;
        if ((op != BW__L_EQ && op != BW__L_STARTS_WITH && op != BW__L_ENDS_WITH) ||
            n < BW__FILTER_MIN || n > BW__FILTER_MAX)
            continue;
        if (!out) {
            out = bw_arena_alloc(a, 3 * sizeof *out); /* one run per operation */
            if (!out)
                return bw_error_set(err, "out of memory compiling rules");
        }
        struct bw__lit_filter *best = &out[g->nfilters], tmp;
        int best_score = INT32_MIN;
        for (uint8_t at = 0; at < 3; at++) {
            filter_fill(lits + g->first, lo - g->first, end - g->first, at, op == BW__L_ENDS_WITH,
                        &tmp);
            int sc = filter_score(&tmp);
            if (sc > best_score) {
                best_score = sc;
                *best = tmp;
            }
        }
        g->nfilters++;
    }
    g->filters = out;
    return BW_OK;
}

/* ---- what an absent value rules out (eval_internal.h, struct bw__skip) ---- */

/* Deeper trees are not analysed (their expressions are never skipped). */
#define SKIP_DEPTH 64u

static const struct bw__skip no_skip = {.any = 0, .all = 0};

/* A header slot's absence bit: request headers whose name has one. */
static uint64_t slot_bit(const struct bw_rules_prog *p, size_t slot)
{
    const struct bw__slot *s = &p->slots[slot];
    if (s->map != BW_RULES_F_HTTP_REQUEST_HEADERS || s->hname >= BW__ABSENT_NAMES)
        return 0;
    return (uint64_t)1 << s->hname;
}

/* A field's absence bit: the fields that are unknown when absent. */
static uint64_t field_bit(enum bw_rules_field f)
{
    _Static_assert(BW__H__FIXED <= BW__ABSENT_NAMES, "the header fields have a bit each");
    switch (f) {
    case BW_RULES_F_HTTP_USER_AGENT:
        return (uint64_t)1 << BW__H_USER_AGENT;
    case BW_RULES_F_HTTP_REFERER:
        return (uint64_t)1 << BW__H_REFERER;
    case BW_RULES_F_HTTP_COOKIE:
        return (uint64_t)1 << BW__H_COOKIE;
    case BW_RULES_F_HTTP_X_FORWARDED_FOR:
        return (uint64_t)1 << BW__H_X_FORWARDED_FOR;
    case BW_RULES_F_HTTP_HOST:
        return (uint64_t)1 << BW__ABSENT_HOST;
    case BW_RULES_F_BOT_SCORE:
        return (uint64_t)1 << BW__ABSENT_BOT;
    case BW_RULES_F_HTTP_REQUEST_METHOD:
    case BW_RULES_F_HTTP_REQUEST_URI:
    case BW_RULES_F_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_HTTP_REQUEST_URI_QUERY:
    case BW_RULES_F_IP_SRC: /* unknown only for an odd socket, not a request's choice */
    case BW_RULES_F_SSL:
    case BW_RULES_F_HTTP_REQUEST_HEADERS:
    case BW_RULES_F_HTTP_RESPONSE_CODE:
    case BW_RULES_F_HTTP_RESPONSE_HEADERS:
    case BW_RULES_F__COUNT:
        break;
    }
    return 0;
}

/* The bits whose absence makes value n unknown (some of them: 0 is always
 * a correct answer). */
static uint64_t strict_of(const struct bw_rules_prog *p, const struct bw__cnode *n, unsigned depth)
{
    if (n->lifted || depth > SKIP_DEPTH)
        return 0;
    switch (n->kind) {
    case BW__C_FIELD:
        return field_bit(n->u.field);
    case BW__C_INDEX: /* h["x"][0] of an absent header: past the end of [] */
        if (n->u.index.array->kind == BW__C_HEADER)
            return slot_bit(p, n->u.index.array->u.header.slot);
        return 0;
    case BW__C_CALL:
        switch (n->u.call.fn) {
        case BW_RULES_FN_LOWER:
        case BW_RULES_FN_UPPER:
        case BW_RULES_FN_URL_DECODE:
        case BW_RULES_FN_CONCAT:
        case BW_RULES_FN_LEN:
        case BW_RULES_FN_STARTS_WITH:
        case BW_RULES_FN_ENDS_WITH: { /* unknown when any argument is */
            uint64_t m = 0;
            for (size_t i = 0; i < n->u.call.nargs; i++)
                m |= strict_of(p, n->u.call.args[i], depth + 1);
            return m;
        }
        case BW_RULES_FN_ANY:
        case BW_RULES_FN_ALL:
        case BW_RULES_FN_HAS:
        case BW_RULES_FN__COUNT:
            break;
        }
        return 0;
    case BW__C_CONST:
    case BW__C_HEADER: /* an absent header is [], not unknown */
    case BW__C_EACH:
    case BW__C_NOT:
    case BW__C_LOGIC:
    case BW__C_COMPARE:
    case BW__C_MATCHES:
    case BW__C_IN:
    case BW__C_BYTES_K:
    case BW__C__COUNT:
        break;
    }
    return 0;
}

/* A condition with one bit in all is that bit in any. */
static struct bw__skip skip_norm(struct bw__skip c)
{
    if (c.all && (c.all & (c.all - 1)) == 0) {
        c.any |= c.all;
        c.all = 0;
    }
    return c;
}

/* Either condition suffices (what `and` needs to be not TRUE). Two "every
 * bit" parts cannot both be kept: the one with fewer bits stays. */
static struct bw__skip skip_either(struct bw__skip a, struct bw__skip b)
{
    uint64_t all = a.all;
    if (!all || (b.all && __builtin_popcountll(b.all) < __builtin_popcountll(all)))
        all = b.all;
    return skip_norm((struct bw__skip){.any = a.any | b.any, .all = all});
}

/* Both conditions are needed (what `or` needs): every bit of both absent
 * implies each. */
static struct bw__skip skip_both(struct bw__skip a, struct bw__skip b)
{
    if ((!a.any && !a.all) || (!b.any && !b.all))
        return no_skip;
    return skip_norm((struct bw__skip){.any = 0, .all = a.any | a.all | b.any | b.all});
}

/* For Bool node n: *nt, absences under which n is not TRUE; *nf, under
 * which it is not FALSE (what `not` turns into the first). */
static void skip_of(const struct bw_rules_prog *p, const struct bw__cnode *n, unsigned depth,
                    struct bw__skip *nt, struct bw__skip *nf)
{
    *nt = *nf = no_skip;
    if (depth > SKIP_DEPTH || n->lifted)
        return;
    uint64_t s = 0;
    switch (n->kind) {
    case BW__C_NOT:
        skip_of(p, n->u.not_.operand, depth + 1, nf, nt);
        return;
    case BW__C_LOGIC: {
        if (n->u.logic.op != BW_RULES_AND && n->u.logic.op != BW_RULES_OR)
            return; /* xor: not analysed */
        bool is_and = n->u.logic.op == BW_RULES_AND;
        for (size_t i = 0; i < n->u.logic.n; i++) {
            struct bw__skip t, f;
            skip_of(p, n->u.logic.operands[i], depth + 1, &t, &f);
            if (i == 0) {
                *nt = t;
                *nf = f;
            } else if (is_and) { /* not TRUE: some operand not TRUE; not FALSE: none FALSE */
                *nt = skip_either(*nt, t);
                *nf = skip_both(*nf, f);
            } else {
                *nt = skip_both(*nt, t);
                *nf = skip_either(*nf, f);
            }
        }
        return;
    }
    case BW__C_BYTES_K:
        s = strict_of(p, n->u.bytes_k.lhs, depth + 1);
        break;
    case BW__C_COMPARE:
        s = strict_of(p, n->u.compare.lhs, depth + 1) | strict_of(p, n->u.compare.rhs, depth + 1);
        break;
    case BW__C_IN:
        s = strict_of(p, n->u.in.lhs, depth + 1);
        break;
    case BW__C_MATCHES:
        s = strict_of(p, p->groups[n->u.matches.group].lhs, depth + 1);
        break;
    case BW__C_CALL: {
        const struct bw__cnode *a0 = n->u.call.nargs ? n->u.call.args[0] : NULL;
        switch (n->u.call.fn) {
        case BW_RULES_FN_HAS: /* absent: false */
            if (a0 && a0->kind == BW__C_FIELD)
                nt->any = field_bit(a0->u.field);
            else if (a0 && a0->kind == BW__C_HEADER)
                nt->any = slot_bit(p, a0->u.header.slot);
            return;
        case BW_RULES_FN_ANY: /* any() of [] is false, all() of [] true */
        case BW_RULES_FN_ALL: {
            struct bw__lit lit;
            const struct bw__cnode *v;
            uint32_t slot;
            uint8_t map;
            if (!a0 || !lifted_test_of(a0, &lit, &v) || !header_values_of(v, &slot, &map))
                return;
            if (n->u.call.fn == BW_RULES_FN_ANY)
                nt->any = slot_bit(p, slot);
            else
                nf->any = slot_bit(p, slot);
            return;
        }
        case BW_RULES_FN_STARTS_WITH:
        case BW_RULES_FN_ENDS_WITH:
            s = strict_of(p, n, depth);
            break;
        case BW_RULES_FN_LOWER:
        case BW_RULES_FN_UPPER:
        case BW_RULES_FN_LEN:
        case BW_RULES_FN_URL_DECODE:
        case BW_RULES_FN_CONCAT:
        case BW_RULES_FN__COUNT:
            return;
        }
        break;
    }
    case BW__C_CONST:
    case BW__C_FIELD:
    case BW__C_HEADER:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C__COUNT:
        return;
    }
    /* A test of a value that is unknown: unknown, neither TRUE nor FALSE. */
    nt->any = nf->any = s;
}

/* prog->skips and prog->any_skips. */
static bw_status skips_build(bw_arena *a, struct bw_rules_prog *p, bw_error *err)
{
    struct bw__skip *k = bw_arena_alloc(a, (p->n ? p->n : 1) * sizeof *k);
    if (!k)
        return bw_error_set(err, "out of memory compiling rules");
    p->any_skips = false;
    for (size_t i = 0; i < p->n; i++) {
        struct bw__skip nf;
        skip_of(p, p->roots[i], 0, &k[i], &nf);
        p->any_skips |= k[i].any || k[i].all;
    }
    p->skips = k;
    return BW_OK;
}

bw_status bw__rules_flatten(bw_arena *a, struct bw_rules_prog *p, bw_error *err)
{
    size_t ninsns = 0, leaves = 0;
    for (size_t i = 0; i < p->n; i++)
        ninsns += count_insns(p->roots[i], 0, &leaves) + 1; /* + END */
    if (ninsns >= UINT32_MAX || leaves >= UINT32_MAX / 4)
        return bw_error_set(err, "rules program too large: %zu instructions", ninsns);
    size_t kcap = 2;
    while (kcap < 2 * leaves + 2) /* load factor <= 1/2 */
        kcap *= 2;
    size_t nl = leaves ? leaves : 1, ne = p->n ? p->n : 1;
    struct flat f = {.nkeys_cap = kcap};
    uint32_t *single = bw_arena_alloc(a, ne * sizeof *single);
    uint32_t *entry = bw_arena_alloc(a, ne * sizeof *entry);
    f.code = bw_arena_alloc(a, (ninsns ? ninsns : 1) * sizeof *f.code);
    f.leaves = bw_arena_alloc(a, nl * sizeof *f.leaves);
    f.groups = bw_arena_alloc(a, nl * sizeof *f.groups);
    f.keys = bw_arena_alloc(a, kcap * sizeof *f.keys); /* zeroed: every entry free */
    f.hlits = bw_arena_alloc(a, nl * sizeof *f.hlits);
    if (!single || !entry || !f.code || !f.leaves || !f.groups || !f.keys || !f.hlits)
        return bw_error_set(err, "out of memory compiling rules");
    for (size_t i = 0; i < p->n; i++) {
        /* One atom under any number of `not`: no instructions at all. */
        const struct bw__cnode *n = p->roots[i];
        uint32_t neg = 0;
        while (n->kind == BW__C_NOT) {
            neg ^= 1;
            n = n->u.not_.operand;
        }
        entry[i] = f.ncode;
        if (is_logic(n, 0)) {
            single[i] = NOT_SINGLE;
            if (neg == 0 && is_flat(n))
                emit_flat(&f, n);
            else
                emit_node(&f, p->roots[i], 0);
            emit(&f, BW__OP_END);
        } else {
            single[i] = add_leaf(&f, n) << 1 | neg;
        }
    }
    if (number_atoms(a, &f, p, single, err) != BW_OK)
        return BW_ERR;
    uint32_t *fast = bw_arena_alloc(a, ne * sizeof *fast);
    if (!fast)
        return bw_error_set(err, "out of memory compiling rules");
    for (size_t i = 0; i < p->n; i++) {
        uint32_t at = single[i] >> 1;
        fast[i] = at << 2 | (at == p->natoms ? 3u : 2u - (single[i] & 1u));
    }
    uint32_t *eager = bw_arena_alloc(a, (f.ngroups ? f.ngroups : 1) * sizeof *eager);
    if (!eager)
        return bw_error_set(err, "out of memory compiling rules");
    p->neager = 0;
    for (uint32_t g = 0; g < f.ngroups; g++) {
        if (f.groups[g].n && eager_field(f.groups[g].lhs))
            eager[p->neager++] = g;
        f.groups[g].by_len = f.groups[g].n && by_length(&f.groups[g], p->lits);
        if (filters_build(a, &f.groups[g], p->lits, err) != BW_OK)
            return BW_ERR;
    }
    if (skips_build(a, p, err) != BW_OK)
        return BW_ERR;
    p->eager = eager;
    p->fast = fast;
    p->single = single;
    p->entry = entry;
    p->code = f.code;
    p->lit_groups = f.groups;
    p->hlits = f.hlits;
    p->nlit_groups = f.ngroups;
    return BW_OK;
}
