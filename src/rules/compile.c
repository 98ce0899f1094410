/* The rules compiler: checked ASTs (rules.h) in, one immutable program
 * (eval_internal.h) out. Runs at load, so it may allocate (in the snapshot
 * arena) and fail with a sentence; the evaluator (eval.c) then has nothing
 * left to decide.
 *
 * This file owns: resolving fields and header names to ids and slots,
 * building `in {}` sets (sets.h), grouping `matches` by left side and
 * building one regex database per group (regex.h). It does not own parsing
 * or type checking (parser.c, check.c) nor run-time semantics (eval.c). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rules/eval_internal.h"

/* A matches node waiting to be grouped. */
struct pending {
    struct bw__cnode *c;
    const struct bw__cnode *lhs; /* its compiled left side */
    bw_slice key;
    bw_slice pattern;
    size_t expr;               /* which expression of the program */
    struct bw_rules_span span; /* the pattern's span in that expression's text */
};

/* A compiled call, by canonical text (common subexpressions). */
struct call_entry {
    bw_slice key;
    uint64_t hash;
    struct bw__cnode *node; /* NULL: free entry */
};

/* How often a left side (by canonical text) is scanned by a regex or tested
 * against a literal that could join its scan group (literal folding). */
struct key_entry {
    bw_slice key;
    uint64_t hash;
    bool used;
    size_t nmatches, nlits;
};

struct compiler {
    bw_arena *a;
    bw_error *err;
    struct bw_rules_prog *p;
    size_t max_slots;
    struct pending *pend;
    size_t npend, max_pend;
    size_t cur_expr;
    struct call_entry *calls; /* open addressing, ncalls_cap a power of two */
    size_t ncalls_cap;
    struct key_entry *keys; /* scan keys, open addressing, nkeys_cap a power of two */
    size_t nkeys_cap;
};

static bw_status oom(struct compiler *c)
{
    return bw_error_set(c->err, "out of memory compiling rules");
}

static bool fold_of(const struct bw_rules_node *n, enum bw__bytes_op *op,
                    const struct bw_rules_node **x, bw_slice *k, bool *caseless);

/* Counts the nodes that need side tables, to size them once. A literal that
 * may be folded into a scan group counts as a matches. */
static void count(const struct bw_rules_node *n, size_t *maps, size_t *matches, size_t *calls)
{
    enum bw__bytes_op op;
    const struct bw_rules_node *x;
    bw_slice k;
    bool ci;
    if (fold_of(n, &op, &x, &k, &ci))
        (*matches)++;
    switch (n->kind) {
    case BW_RULES_N_BOOL:
    case BW_RULES_N_INT:
    case BW_RULES_N_BYTES:
    case BW_RULES_N_IP:
    case BW_RULES_N_FIELD:
        return;
    case BW_RULES_N_MAP_GET:
        (*maps)++;
        count(n->u.map_get.map, maps, matches, calls);
        return;
    case BW_RULES_N_INDEX:
        count(n->u.index.array, maps, matches, calls);
        return;
    case BW_RULES_N_EACH:
        count(n->u.each.array, maps, matches, calls);
        return;
    case BW_RULES_N_CALL:
        (*calls)++;
        for (size_t i = 0; i < n->u.call.nargs; i++)
            count(n->u.call.args[i], maps, matches, calls);
        return;
    case BW_RULES_N_NOT:
        count(n->u.not_.operand, maps, matches, calls);
        return;
    case BW_RULES_N_LOGIC:
        for (size_t i = 0; i < n->u.logic.n; i++)
            count(n->u.logic.operands[i], maps, matches, calls);
        return;
    case BW_RULES_N_COMPARE:
        count(n->u.compare.lhs, maps, matches, calls);
        count(n->u.compare.rhs, maps, matches, calls);
        return;
    case BW_RULES_N_MATCHES:
        (*matches)++;
        count(n->u.matches.lhs, maps, matches, calls);
        return;
    case BW_RULES_N_IN:
        count(n->u.in.lhs, maps, matches, calls);
        return;
    case BW_RULES_N__COUNT:
        return;
    }
}

static struct bw_val_ip ip_of(const struct bw_rules_ip *ip)
{
    struct bw_val_ip v;
    memset(&v, 0, sizeof v);
    v.family = ip->family;
    memcpy(v.addr, ip->addr, sizeof v.addr);
    return v;
}

static bw_status slot_of(struct compiler *c, enum bw_rules_field map, bw_slice name, size_t *ret)
{
    struct bw_rules_prog *p = c->p;
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i].map == map && bw_slice_eq(p->slots[i].name, name)) {
            *ret = i;
            return BW_OK;
        }
    if (p->nslots >= c->max_slots)
        return bw_error_set(c->err, "internal error: header slot table too small");
    p->slots[p->nslots] = (struct bw__slot){.map = map, .name = name};
    *ret = p->nslots++;
    return BW_OK;
}

static bw_status build_set(struct compiler *c, const struct bw_rules_node *n, struct bw__cnode *o)
{
    struct bw__set *out = bw_arena_alloc(c->a, sizeof *out);
    if (!out)
        return oom(c);
    o->u.in.set = out;
    size_t ne = n->u.in.n;
    const struct bw_rules_set_elem *el = n->u.in.elems;
    if (ne == 0)
        return bw_error_set(c->err, "internal error: empty set");
    enum bw_rules_set_kind kind = el[0].kind;
    for (size_t i = 1; i < ne; i++)
        if (el[i].kind != kind)
            return bw_error_set(c->err, "internal error: set mixes element kinds");
    out->kind = kind;
    switch (kind) {
    case BW_RULES_SET_BYTES: {
        bw_slice *items = bw_arena_alloc(c->a, ne * sizeof *items);
        if (!items)
            return oom(c);
        for (size_t i = 0; i < ne; i++)
            items[i] = el[i].u.bytes;
        return bw_bytes_set_build(c->a, items, ne, &out->bytes, c->err);
    }
    case BW_RULES_SET_INT_RANGE: {
        struct bw_int_range *items = bw_arena_alloc(c->a, ne * sizeof *items);
        if (!items)
            return oom(c);
        for (size_t i = 0; i < ne; i++)
            items[i] = (struct bw_int_range){.lo = el[i].u.range.lo, .hi = el[i].u.range.hi};
        return bw_int_set_build(c->a, items, ne, &out->ints, c->err);
    }
    case BW_RULES_SET_IP: {
        struct bw_cidr *items = bw_arena_alloc(c->a, ne * sizeof *items);
        if (!items)
            return oom(c);
        for (size_t i = 0; i < ne; i++) {
            const struct bw_rules_ip *ip = &el[i].u.ip;
            items[i].family = ip->family == BW_RULES_IPV4 ? AF_INET : AF_INET6;
            memcpy(items[i].addr, ip->addr, sizeof items[i].addr);
            items[i].prefix = ip->prefix;
        }
        return bw_ip_set_build(c->a, items, ne, &out->ips, c->err);
    }
    case BW_RULES_SET__COUNT:
        break;
    }
    return bw_error_set(c->err, "internal error: bad set kind");
}

static bw_status compile_node(struct compiler *c, const struct bw_rules_node *n,
                              const struct bw__cnode **ret);

static bw_status compile_list(struct compiler *c, struct bw_rules_node *const *in, size_t k,
                              const struct bw__cnode ***ret)
{
    const struct bw__cnode **out = bw_arena_alloc(c->a, (k ? k : 1) * sizeof *out);
    if (!out)
        return oom(c);
    for (size_t i = 0; i < k; i++)
        if (compile_node(c, in[i], &out[i]) != BW_OK)
            return BW_ERR;
    *ret = out;
    return BW_OK;
}

/* The canonical text of a node: equal texts compute equal values. */
static bw_status key_of(struct compiler *c, const struct bw_rules_node *n, bw_slice *ret)
{
    char probe[1];
    size_t len = bw_rules_format(n, probe, sizeof probe);
    char *buf = bw_arena_alloc(c->a, len + 1);
    if (!buf)
        return oom(c);
    (void)bw_rules_format(n, buf, len + 1);
    *ret = bw_slice_make(buf, len);
    return BW_OK;
}

static uint64_t hash_key(bw_slice k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < k.len; i++)
        h = (h ^ (unsigned char)k.ptr[i]) * 0x100000001b3ull;
    return h;
}

/* The entry for key: the one holding it, or the free one where it goes. */
static struct call_entry *call_find(struct compiler *c, bw_slice key, uint64_t h)
{
    size_t mask = c->ncalls_cap - 1, at = (size_t)h & mask;
    while (c->calls[at].node && !(c->calls[at].hash == h && bw_slice_eq(c->calls[at].key, key)))
        at = (at + 1) & mask;
    return &c->calls[at];
}

/* A call identical to one compiled before (same canonical text) shares its
 * node, which becomes memoised: computed once per request. has() is cheaper
 * than a memo lookup and is left alone. */
static bw_status compile_call(struct compiler *c, const struct bw_rules_node *n,
                              const struct bw__cnode **ret)
{
    bw_slice key;
    if (key_of(c, n, &key) != BW_OK)
        return BW_ERR;
    uint64_t h = hash_key(key);
    struct call_entry *e = call_find(c, key, h);
    if (e->node) {
        if (!e->node->u.call.memo) {
            e->node->u.call.memo = true;
            e->node->u.call.memo_slot = c->p->nmemos++;
        }
        *ret = e->node;
        return BW_OK;
    }
    struct bw__cnode *o = bw_arena_alloc(c->a, sizeof *o);
    if (!o)
        return oom(c);
    o->kind = BW__C_CALL;
    o->lifted = n->lifted;
    o->u.call.fn = n->u.call.fn;
    o->u.call.nargs = n->u.call.nargs;
    if (compile_list(c, n->u.call.args, n->u.call.nargs, &o->u.call.args) != BW_OK)
        return BW_ERR;
    /* Arguments may have added entries: find the free one again. */
    e = call_find(c, key, h);
    *e = (struct call_entry){.key = key, .hash = h, .node = o};
    *ret = o;
    return BW_OK;
}

/* `x op "k"` (op eq, ne, contains) and starts_with / ends_with(x, "k"), not
 * lifted: a BW__C_BYTES_K node, so the constant is not evaluated and the
 * operation is not dispatched at run time. */
static bool bytes_k_of(const struct bw_rules_node *n, enum bw__bytes_op *op,
                       const struct bw_rules_node **lhs, bw_slice *k)
{
    if (n->lifted)
        return false;
    if (n->kind == BW_RULES_N_COMPARE && n->u.compare.rhs->kind == BW_RULES_N_BYTES &&
        !n->u.compare.lhs->lifted) {
        switch (n->u.compare.op) {
        case BW_RULES_EQ:
            *op = BW__BK_EQ;
            break;
        case BW_RULES_NE:
            *op = BW__BK_NE;
            break;
        case BW_RULES_CONTAINS:
            *op = BW__BK_CONTAINS;
            break;
        case BW_RULES_LT:
        case BW_RULES_LE:
        case BW_RULES_GT:
        case BW_RULES_GE:
        case BW_RULES_CMP__COUNT:
            return false;
        }
        *lhs = n->u.compare.lhs;
        *k = n->u.compare.rhs->u.bytes;
        return true;
    }
    if (n->kind == BW_RULES_N_CALL && n->u.call.nargs == 2 &&
        (n->u.call.fn == BW_RULES_FN_STARTS_WITH || n->u.call.fn == BW_RULES_FN_ENDS_WITH) &&
        n->u.call.args[1]->kind == BW_RULES_N_BYTES && !n->u.call.args[0]->lifted) {
        *op = n->u.call.fn == BW_RULES_FN_STARTS_WITH ? BW__BK_STARTS_WITH : BW__BK_ENDS_WITH;
        *lhs = n->u.call.args[0];
        *k = n->u.call.args[1]->u.bytes;
        return true;
    }
    return false;
}

/* ---- literal folding ----------------------------------------------------------
 *
 * `x contains "k"` is one more literal pattern in x's scan group when that
 * group exists anyway (x is scanned by some `matches`) or when x is searched
 * for at least FOLD_MIN_LITERALS literals: one scan then answers all of
 * them, instead of one search per rule. The pattern is the literal with
 * every byte but [A-Za-z0-9] written \xHH. When x is lower(y) and the
 * literal is ASCII with no upper-case letter, the pattern is
 * case-insensitive on y instead (lower() changes exactly the ASCII
 * letters), so y needs no lowered copy. Semantics are unchanged: the
 * group's left side unknown (or not Bytes) gives unknown, as `contains`
 * would. starts_with / ends_with / eq are not folded: they compare |k|
 * bytes at a known place, which costs less than the extra pattern costs a
 * scan (measured with bench/eval_bench.c). */

enum {
    FOLD_MIN_LITERALS = 4,  /* literals on one left side that earn it a scan of its own */
    FOLD_MAX_LITERAL = 512, /* longer literals keep their own search (pattern length) */
};

/* Whether n is a `contains` that could be folded: *x is the left side to
 * scan, *caseless whether the pattern ignores ASCII case. */
static bool fold_of(const struct bw_rules_node *n, enum bw__bytes_op *op,
                    const struct bw_rules_node **x, bw_slice *k, bool *caseless)
{
    if (!bytes_k_of(n, op, x, k) || *op != BW__BK_CONTAINS || k->len == 0 ||
        k->len > FOLD_MAX_LITERAL || (*x)->lifted)
        return false;
    *caseless = false;
    const struct bw_rules_node *l = *x;
    if (l->kind == BW_RULES_N_CALL && l->u.call.fn == BW_RULES_FN_LOWER && l->u.call.nargs == 1 &&
        !l->u.call.args[0]->lifted) {
        for (size_t i = 0; i < k->len; i++) {
            unsigned char ch = (unsigned char)k->ptr[i];
            if (ch >= 0x80 || (ch >= 'A' && ch <= 'Z'))
                return true; /* fold as a case-sensitive pattern on lower(y) */
        }
        *x = l->u.call.args[0];
        *caseless = true;
    }
    return true;
}

static bool is_alnum(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The regex for a folded literal (module comment above). */
static bw_status fold_pattern(struct compiler *c, bw_slice k, bool caseless, bw_slice *ret)
{
    static const char hex[] = "0123456789abcdef";
    char *buf = bw_arena_alloc(c->a, 4 + 4 * k.len);
    if (!buf)
        return oom(c);
    size_t o = 0;
    if (caseless) {
        memcpy(buf, "(?i)", 4);
        o = 4;
    }
    for (size_t i = 0; i < k.len; i++) {
        unsigned char ch = (unsigned char)k.ptr[i];
        if (is_alnum(ch)) {
            buf[o++] = (char)ch;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        }
    }
    *ret = bw_slice_make(buf, o);
    return BW_OK;
}

/* The entry for key: the one holding it, or the free one where it goes. */
static struct key_entry *key_find(struct compiler *c, bw_slice key)
{
    uint64_t h = hash_key(key);
    size_t mask = c->nkeys_cap - 1, at = (size_t)h & mask;
    while (c->keys[at].used && !(c->keys[at].hash == h && bw_slice_eq(c->keys[at].key, key)))
        at = (at + 1) & mask;
    struct key_entry *e = &c->keys[at];
    if (!e->used)
        *e = (struct key_entry){.key = key, .hash = h, .used = true};
    return e;
}

/* Counts, per left side, the matches and the foldable literals on it. */
static bw_status survey(struct compiler *c, const struct bw_rules_node *n)
{
    enum bw__bytes_op op;
    const struct bw_rules_node *x;
    bw_slice k, key;
    bool ci;
    if (n->kind == BW_RULES_N_MATCHES) {
        if (key_of(c, n->u.matches.lhs, &key) != BW_OK)
            return BW_ERR;
        key_find(c, key)->nmatches++;
    } else if (fold_of(n, &op, &x, &k, &ci)) {
        if (key_of(c, x, &key) != BW_OK)
            return BW_ERR;
        key_find(c, key)->nlits++;
    }
    struct bw_rules_node *const *kids = NULL;
    struct bw_rules_node *one[2];
    size_t nk = 0;
    switch (n->kind) {
    case BW_RULES_N_BOOL:
    case BW_RULES_N_INT:
    case BW_RULES_N_BYTES:
    case BW_RULES_N_IP:
    case BW_RULES_N_FIELD:
    case BW_RULES_N_MAP_GET: /* its map is a field */
    case BW_RULES_N__COUNT:
        break;
    case BW_RULES_N_INDEX:
        one[0] = n->u.index.array;
        kids = one, nk = 1;
        break;
    case BW_RULES_N_EACH:
        one[0] = n->u.each.array;
        kids = one, nk = 1;
        break;
    case BW_RULES_N_CALL:
        kids = n->u.call.args, nk = n->u.call.nargs;
        break;
    case BW_RULES_N_NOT:
        one[0] = n->u.not_.operand;
        kids = one, nk = 1;
        break;
    case BW_RULES_N_LOGIC:
        kids = n->u.logic.operands, nk = n->u.logic.n;
        break;
    case BW_RULES_N_COMPARE:
        one[0] = n->u.compare.lhs;
        one[1] = n->u.compare.rhs;
        kids = one, nk = 2;
        break;
    case BW_RULES_N_MATCHES:
        one[0] = n->u.matches.lhs;
        kids = one, nk = 1;
        break;
    case BW_RULES_N_IN:
        one[0] = n->u.in.lhs;
        kids = one, nk = 1;
        break;
    }
    for (size_t i = 0; i < nk; i++)
        if (survey(c, kids[i]) != BW_OK)
            return BW_ERR;
    return BW_OK;
}

/* Queues a matches node (its pattern built into the group of key) whose
 * left side is x. */
static bw_status add_pending(struct compiler *c, struct bw__cnode *o, const struct bw_rules_node *x,
                             bw_slice key, bw_slice pattern, struct bw_rules_span span)
{
    if (c->npend >= c->max_pend)
        return bw_error_set(c->err, "internal error: matches table too small");
    struct pending *pd = &c->pend[c->npend++];
    pd->c = o;
    pd->pattern = pattern;
    pd->expr = c->cur_expr;
    pd->span = span;
    pd->key = key;
    /* The left side is compiled here and kept by the group of the first
     * member with this key; later members' copies are simply unused. */
    return compile_node(c, x, &pd->lhs);
}

/* n as a folded literal, when folding it pays (module comment above);
 * *folded false leaves n to the ordinary compilation. */
static bw_status compile_fold(struct compiler *c, const struct bw_rules_node *n, bool *folded,
                              const struct bw__cnode **ret)
{
    enum bw__bytes_op op;
    const struct bw_rules_node *x;
    bw_slice k, key, pattern;
    bool ci;
    *folded = false;
    if (!fold_of(n, &op, &x, &k, &ci))
        return BW_OK;
    if (key_of(c, x, &key) != BW_OK)
        return BW_ERR;
    const struct key_entry *e = key_find(c, key);
    if (e->nmatches == 0 && e->nlits < FOLD_MIN_LITERALS)
        return BW_OK;
    if (fold_pattern(c, k, ci, &pattern) != BW_OK)
        return BW_ERR;
    struct bw__cnode *m = bw_arena_alloc(c->a, sizeof *m);
    if (!m)
        return oom(c);
    m->kind = BW__C_MATCHES;
    m->lifted = false;
    if (add_pending(c, m, x, key, pattern, n->span) != BW_OK)
        return BW_ERR;
    *ret = m;
    *folded = true;
    return BW_OK;
}

static bw_status compile_node(struct compiler *c, const struct bw_rules_node *n,
                              const struct bw__cnode **ret)
{
    bool folded;
    if (compile_fold(c, n, &folded, ret) != BW_OK)
        return BW_ERR;
    if (folded)
        return BW_OK;
    enum bw__bytes_op bop = BW__BK__COUNT;
    const struct bw_rules_node *blhs = NULL;
    bw_slice bk = BW_SLICE_EMPTY;
    if (bytes_k_of(n, &bop, &blhs, &bk)) {
        struct bw__cnode *o = bw_arena_alloc(c->a, sizeof *o);
        if (!o)
            return oom(c);
        o->kind = BW__C_BYTES_K;
        o->u.bytes_k.op = bop;
        o->u.bytes_k.k = bk;
        if (compile_node(c, blhs, &o->u.bytes_k.lhs) != BW_OK)
            return BW_ERR;
        *ret = o;
        return BW_OK;
    }
    if (n->kind == BW_RULES_N_CALL && n->u.call.fn != BW_RULES_FN_HAS)
        return compile_call(c, n, ret);
    struct bw__cnode *o = bw_arena_alloc(c->a, sizeof *o);
    if (!o)
        return oom(c);
    o->lifted = n->lifted;
    switch (n->kind) {
    case BW_RULES_N_BOOL:
        o->kind = BW__C_CONST;
        o->u.konst = (struct bw_val){.kind = BW_VAL_BOOL, .u.boolean = n->u.boolean};
        break;
    case BW_RULES_N_INT:
        o->kind = BW__C_CONST;
        o->u.konst = (struct bw_val){.kind = BW_VAL_INT, .u.integer = n->u.integer};
        break;
    case BW_RULES_N_BYTES:
        o->kind = BW__C_CONST;
        o->u.konst = (struct bw_val){.kind = BW_VAL_BYTES, .u.bytes = n->u.bytes};
        break;
    case BW_RULES_N_IP:
        o->kind = BW__C_CONST;
        o->u.konst = (struct bw_val){.kind = BW_VAL_IP, .u.ip = ip_of(&n->u.ip)};
        break;
    case BW_RULES_N_FIELD:
        o->kind = BW__C_FIELD;
        o->u.field = n->u.field;
        break;
    case BW_RULES_N_MAP_GET: {
        const struct bw_rules_node *m = n->u.map_get.map;
        if (m->kind != BW_RULES_N_FIELD)
            return bw_error_set(c->err, "internal error: [\"...\"] on something not a field");
        o->kind = BW__C_HEADER;
        if (slot_of(c, m->u.field, n->u.map_get.key, &o->u.header.slot) != BW_OK)
            return BW_ERR;
        break;
    }
    case BW_RULES_N_INDEX:
        o->kind = BW__C_INDEX;
        o->u.index.index = n->u.index.index;
        if (compile_node(c, n->u.index.array, &o->u.index.array) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_EACH:
        o->kind = BW__C_EACH;
        if (compile_node(c, n->u.each.array, &o->u.each.array) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_CALL:
        o->kind = BW__C_CALL;
        o->u.call.fn = n->u.call.fn;
        o->u.call.nargs = n->u.call.nargs;
        if (compile_list(c, n->u.call.args, n->u.call.nargs, &o->u.call.args) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_NOT:
        o->kind = BW__C_NOT;
        if (compile_node(c, n->u.not_.operand, &o->u.not_.operand) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_LOGIC:
        o->kind = BW__C_LOGIC;
        o->u.logic.op = n->u.logic.op;
        o->u.logic.n = n->u.logic.n;
        if (compile_list(c, n->u.logic.operands, n->u.logic.n, &o->u.logic.operands) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_COMPARE:
        o->kind = BW__C_COMPARE;
        o->u.compare.op = n->u.compare.op;
        if (compile_node(c, n->u.compare.lhs, &o->u.compare.lhs) != BW_OK ||
            compile_node(c, n->u.compare.rhs, &o->u.compare.rhs) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N_MATCHES: {
        o->kind = BW__C_MATCHES;
        bw_slice key;
        if (key_of(c, n->u.matches.lhs, &key) != BW_OK ||
            add_pending(c, o, n->u.matches.lhs, key, n->u.matches.pattern,
                        n->u.matches.pattern_span) != BW_OK)
            return BW_ERR;
        break;
    }
    case BW_RULES_N_IN:
        o->kind = BW__C_IN;
        if (compile_node(c, n->u.in.lhs, &o->u.in.lhs) != BW_OK)
            return BW_ERR;
        if (build_set(c, n, o) != BW_OK)
            return BW_ERR;
        break;
    case BW_RULES_N__COUNT:
        return bw_error_set(c->err, "internal error: bad node kind");
    }
    *ret = o;
    return BW_OK;
}

static void free_groups(struct bw_rules_prog *p)
{
    for (size_t i = 0; i < p->ngroups; i++)
        p->groups[i].db = bw_regex_db_free(p->groups[i].db);
}

/* Puts each pending matches in the first group with its key that has room,
 * then builds one database per group. */
static bw_status group_matches(struct compiler *c)
{
    struct bw_rules_prog *p = c->p;
    size_t *group_of = bw_arena_alloc(c->a, (c->npend ? c->npend : 1) * sizeof *group_of);
    p->groups = bw_arena_alloc(c->a, (c->npend ? c->npend : 1) * sizeof *p->groups);
    bw_slice *pats = bw_arena_alloc(c->a, (c->npend ? c->npend : 1) * sizeof *pats);
    if (!group_of || !p->groups || !pats)
        return oom(c);
    for (size_t i = 0; i < c->npend; i++) {
        struct pending *pd = &c->pend[i];
        size_t g = p->ngroups;
        for (size_t j = 0; j < p->ngroups; j++)
            if (bw_slice_eq(p->groups[j].key, pd->key) &&
                p->groups[j].npatterns < BW_REGEX_MAX_PATTERNS) {
                g = j;
                break;
            }
        if (g == p->ngroups) {
            p->groups[g] = (struct bw__group){
                .key = pd->key,
                .lhs = pd->lhs,
            };
            p->ngroups++;
        }
        group_of[i] = g;
        pd->c->u.matches.group = g;
        pd->c->u.matches.id = p->groups[g].npatterns++;
    }
    for (size_t g = 0; g < p->ngroups; g++) {
        size_t k = 0;
        for (size_t i = 0; i < c->npend; i++)
            if (group_of[i] == g)
                pats[k++] = c->pend[i].pattern;
        size_t bad = 0;
        bw_error rerr;
        if (bw_regex_db_build(pats, k, &p->groups[g].db, &bad, &rerr) != BW_OK) {
            free_groups(p);
            /* Name the offending pattern: the bad-th member of group g. */
            for (size_t i = 0, m = 0; i < c->npend; i++)
                if (group_of[i] == g && m++ == bad)
                    return bw_error_set(c->err, "expression %zu, offset %u: %s", c->pend[i].expr,
                                        c->pend[i].span.off, rerr.msg);
            return bw_error_set(c->err, "matches on %.*s: %s", (int)p->groups[g].key.len,
                                p->groups[g].key.ptr, rerr.msg);
        }
    }
    return BW_OK;
}

/* The request header names the program reads (eval_internal.h): ids for
 * the header fields, then for each request-header slot (sharing the id of
 * an equal name), and the by-length buckets. */
static bw_status index_header_names(struct compiler *c)
{
    struct bw_rules_prog *p = c->p;
    static const bw_slice fixed[BW__H__FIXED] = {
        [BW__H_USER_AGENT] = BW_SLICE_LIT("user-agent"),
        [BW__H_REFERER] = BW_SLICE_LIT("referer"),
        [BW__H_COOKIE] = BW_SLICE_LIT("cookie"),
        [BW__H_X_FORWARDED_FOR] = BW_SLICE_LIT("x-forwarded-for"),
    };
    size_t cap = BW__H__FIXED + p->nslots;
    bw_slice *names = bw_arena_alloc(c->a, cap * sizeof *names);
    uint32_t *by_len = bw_arena_alloc(c->a, cap * sizeof *by_len);
    if (!names || !by_len)
        return oom(c);
    uint32_t n = 0;
    for (; n < BW__H__FIXED; n++)
        names[n] = fixed[n];
    for (size_t i = 0; i < p->nslots; i++) {
        struct bw__slot *s = &p->slots[i];
        if (s->map != BW_RULES_F_HTTP_REQUEST_HEADERS)
            continue;
        uint32_t j = 0;
        while (j < n && !bw_slice_eq(names[j], s->name))
            j++;
        if (j == n)
            names[n++] = s->name;
        s->hname = j;
    }
    /* Counting sort of the ids by length bucket. */
    uint32_t *first = p->hlen_first;
    memset(first, 0, sizeof p->hlen_first);
    for (uint32_t j = 0; j < n; j++) {
        size_t b = names[j].len < BW__HLEN_BUCKETS - 1 ? names[j].len : BW__HLEN_BUCKETS - 1;
        first[b + 1]++;
    }
    for (size_t b = 0; b < BW__HLEN_BUCKETS; b++)
        first[b + 1] += first[b];
    uint32_t fill[BW__HLEN_BUCKETS];
    memcpy(fill, first, sizeof fill);
    for (uint32_t j = 0; j < n; j++) {
        size_t b = names[j].len < BW__HLEN_BUCKETS - 1 ? names[j].len : BW__HLEN_BUCKETS - 1;
        by_len[fill[b]++] = j;
    }
    p->hnames = names;
    p->nhnames = n;
    p->hby_len = by_len;
    return BW_OK;
}

bw_status bw_rules_compile(bw_arena *a, const struct bw_rules_expr *const *exprs, size_t n,
                           struct bw_rules_prog **ret, bw_error *err)
{
    if (n > BW_RULES_PROG_MAX_EXPRS)
        return bw_error_set(err, "too many expressions in one program: %zu (at most %d)", n,
                            (int)BW_RULES_PROG_MAX_EXPRS);
    size_t maps = 0, matches = 0, calls = 0;
    for (size_t i = 0; i < n; i++)
        count(exprs[i]->root, &maps, &matches, &calls);
    size_t cap = 2;
    while (cap < 2 * calls + 2) /* load factor <= 1/2: a free entry always exists */
        cap *= 2;
    struct compiler c = {
        .a = a, .err = err, .max_slots = maps, .max_pend = matches, .ncalls_cap = cap};
    c.calls = bw_arena_alloc(a, cap * sizeof *c.calls);
    if (!c.calls)
        return oom(&c);
    c.p = bw_arena_alloc(a, sizeof *c.p);
    if (!c.p)
        return oom(&c);
    c.p->roots = bw_arena_alloc(a, (n ? n : 1) * sizeof *c.p->roots);
    c.p->slots = bw_arena_alloc(a, (maps ? maps : 1) * sizeof *c.p->slots);
    c.pend = bw_arena_alloc(a, (matches ? matches : 1) * sizeof *c.pend);
    if (!c.p->roots || !c.p->slots || !c.pend)
        return oom(&c);
    size_t kcap = 2;
    while (kcap < 2 * matches + 2)
        kcap *= 2;
    c.nkeys_cap = kcap;
    c.keys = bw_arena_alloc(a, kcap * sizeof *c.keys);
    if (!c.keys)
        return oom(&c);
    memset(c.keys, 0, kcap * sizeof *c.keys);
    for (size_t i = 0; i < n; i++)
        if (survey(&c, exprs[i]->root) != BW_OK)
            return BW_ERR;
    c.p->n = n;
    for (size_t i = 0; i < n; i++) {
        c.cur_expr = i;
        if (compile_node(&c, exprs[i]->root, &c.p->roots[i]) != BW_OK)
            return BW_ERR;
    }
    if (group_matches(&c) != BW_OK)
        return BW_ERR; /* it freed what it built */
    /* The databases are built: a failure from here on frees them, as
     * promised in eval.h. */
    if (index_header_names(&c) != BW_OK || bw__rules_flatten(a, c.p, err) != BW_OK) {
        free_groups(c.p);
        return BW_ERR;
    }
    *ret = c.p;
    return BW_OK;
}

struct bw_rules_prog *bw_rules_prog_free(struct bw_rules_prog *p)
{
    if (p)
        free_groups(p);
    return NULL;
}

size_t bw_rules_prog_count(const struct bw_rules_prog *p)
{
    return p->n;
}

size_t bw_rules_prog_scan_groups(const struct bw_rules_prog *p)
{
    return p->ngroups;
}

bw_status bw_rules_prog_reserve(const struct bw_rules_prog *p, bw_regex_scratch *s, bw_error *err)
{
    for (size_t g = 0; g < p->ngroups; g++)
        if (bw_regex_scratch_reserve(s, p->groups[g].db, err) != BW_OK)
            return BW_ERR;
    return BW_OK;
}
