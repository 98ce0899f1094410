/* Type checker of the rules language: gives every node its type, checks
 * each field against the expression's phase, and refuses every misuse with
 * a sentence saying what was expected and a span under the offending part.
 *
 * Typing rules (docs/rules.md has the user's version):
 *   eq ne        same scalar type on both sides (Bytes, Int, Bool, Ip)
 *   lt le gt ge  Int on both sides
 *   contains     Bytes on both sides
 *   matches      Bytes on the left; the pattern is a string literal
 *   in { }       Bytes, Int or Ip on the left; elements of that type
 *                (Int: values and ranges; Ip: addresses and CIDRs)
 *   not and or xor  Bool operands
 *   x[*]         lifts an Array: scalar operators and functions then apply
 *                to each element and give an Array; any()/all() fold an
 *                Array<Bool> to a Bool. Only the left side of a
 *                comparison (or a function's first argument) may be lifted.
 * The whole expression must be Bool. Recursion follows the tree, whose depth
 * the parser bounds. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules/regex.h"
#include "rules/lexer.h"
#include "rules/rules.h"

struct checker {
    bw_slice text;
    enum bw_rules_phase phase;
    struct bw_rules_diag *diag;
};

enum { DESC_MAX = 48 };

/* How a node is named in messages: its source text when short and
 * printable, else `fallback`. */
static const char *desc(const struct checker *c, const struct bw_rules_node *n, char *buf,
                        size_t cap, const char *fallback)
{
    struct bw_rules_span s = n->span;
    bool ok = s.len > 0 && s.len <= 40 && s.off + s.len <= c->text.len;
    for (uint32_t i = 0; ok && i < s.len; i++) {
        unsigned char ch = (unsigned char)c->text.ptr[s.off + i];
        ok = ch >= 0x20 && ch < 0x7f;
    }
    if (!ok)
        snprintf(buf, cap, "%s", fallback);
    else
        snprintf(buf, cap, "%.*s", (int)s.len, c->text.ptr + s.off);
    return buf;
}

static bw_status fail_at(const struct checker *c, const struct bw_rules_node *n, const char *fmt,
                         ...) BW_PRINTF(3, 4);
static bw_status fail_at(const struct checker *c, const struct bw_rules_node *n, const char *fmt,
                         ...)
{
    char msg[BW_RULES_DIAG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bw__rules_fail(c->diag, n->span.off, n->span.len, "%s", msg);
}

static bool is_scalar(enum bw_rules_kind k)
{
    switch (k) {
    case BW_RULES_T_BYTES:
    case BW_RULES_T_INT:
    case BW_RULES_T_BOOL:
    case BW_RULES_T_IP:
        return true;
    case BW_RULES_T_ARRAY:
    case BW_RULES_T_MAP:
    case BW_RULES_T__COUNT:
        break;
    }
    return false;
}

/* The type an operator or function sees for one element: a lifted
 * Array<T> counts as T. */
static struct bw_rules_type elem_type(const struct bw_rules_node *n)
{
    return n->lifted ? bw_rules_scalar(n->type.elem) : n->type;
}

/* " (wrap it in any() or all())" and friends: why a type that looks close
 * is not accepted. */
static const char *hint(const struct bw_rules_node *n)
{
    if (n->lifted && n->type.elem == BW_RULES_T_BOOL)
        return "; wrap it in any() or all()";
    if (!n->lifted && n->type.kind == BW_RULES_T_ARRAY)
        return "; index it with [0], or use [*] to test each element";
    return "";
}

static bw_status check(struct checker *c, struct bw_rules_node *n);

/* Operand must be a single value (lifted ok) of kind want. */
static bool has_kind(const struct bw_rules_node *n, enum bw_rules_kind want)
{
    struct bw_rules_type t = elem_type(n);
    return t.kind == want;
}

static bw_status check_call(struct checker *c, struct bw_rules_node *n)
{
    const struct bw_rules_func_info *fi = bw_rules_func_info(n->u.call.fn);
    size_t na = n->u.call.nargs;
    struct bw_rules_node name = {.span = n->u.call.name_span};
    if (na < fi->min_args || na > fi->max_args) {
        if (fi->min_args == fi->max_args)
            return fail_at(c, &name, "%s() takes %u argument%s, but %zu %s given", fi->name,
                           fi->min_args, fi->min_args == 1 ? "" : "s", na,
                           na == 1 ? "was" : "were");
        return fail_at(c, &name, "%s() takes %u to %u arguments, but %zu %s given", fi->name,
                       fi->min_args, fi->max_args, na, na == 1 ? "was" : "were");
    }
    struct bw_rules_node **args = n->u.call.args;
    char d[DESC_MAX];

    if (n->u.call.fn == BW_RULES_FN_HAS) {
        struct bw_rules_node *a = args[0];
        bool field = a->kind == BW_RULES_N_FIELD ||
                     (a->kind == BW_RULES_N_MAP_GET && a->u.map_get.map->kind == BW_RULES_N_FIELD);
        if (!field)
            return fail_at(c, a,
                           "has() takes a field, as in has(http.request.headers[\"x\"]), but %s "
                           "is not a field",
                           desc(c, a, d, sizeof d, "its argument"));
        if (check(c, a) != BW_OK)
            return BW_ERR;
        n->type = bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    }
    for (size_t i = 0; i < na; i++)
        if (check(c, args[i]) != BW_OK)
            return BW_ERR;
    /* Only the first argument may be lifted. */
    for (size_t i = 1; i < na; i++)
        if (args[i]->lifted)
            return fail_at(c, args[i], "only the first argument of %s() may use [*]", fi->name);

    enum bw_rules_kind result = BW_RULES_T_BOOL;
    switch (n->u.call.fn) {
    case BW_RULES_FN_LOWER:
    case BW_RULES_FN_UPPER:
    case BW_RULES_FN_URL_DECODE:
        if (!has_kind(args[0], BW_RULES_T_BYTES))
            return fail_at(c, args[0], "%s() takes Bytes, but %s is %s%s", fi->name,
                           desc(c, args[0], d, sizeof d, "its argument"),
                           bw_rules_type_name(args[0]->type), hint(args[0]));
        result = BW_RULES_T_BYTES;
        break;
    case BW_RULES_FN_LEN:
        if (!has_kind(args[0], BW_RULES_T_BYTES) &&
            !(args[0]->type.kind == BW_RULES_T_ARRAY && !args[0]->lifted))
            return fail_at(c, args[0], "len() takes Bytes or an Array, but %s is %s",
                           desc(c, args[0], d, sizeof d, "its argument"),
                           bw_rules_type_name(args[0]->type));
        result = BW_RULES_T_INT;
        break;
    case BW_RULES_FN_STARTS_WITH:
    case BW_RULES_FN_ENDS_WITH:
        for (size_t i = 0; i < 2; i++)
            if (!has_kind(args[i], BW_RULES_T_BYTES))
                return fail_at(c, args[i], "%s() takes Bytes as its %s argument, but %s is %s%s",
                               fi->name, i == 0 ? "first" : "second",
                               desc(c, args[i], d, sizeof d, "it"),
                               bw_rules_type_name(args[i]->type), hint(args[i]));
        result = BW_RULES_T_BOOL;
        break;
    case BW_RULES_FN_CONCAT:
        for (size_t i = 0; i < na; i++) {
            if (args[i]->lifted)
                return fail_at(c, args[i], "concat() cannot take a [*] argument");
            if (args[i]->type.kind != BW_RULES_T_BYTES)
                return fail_at(c, args[i], "concat() takes Bytes, but %s is %s%s",
                               desc(c, args[i], d, sizeof d, "an argument"),
                               bw_rules_type_name(args[i]->type), hint(args[i]));
        }
        result = BW_RULES_T_BYTES;
        break;
    case BW_RULES_FN_ANY:
    case BW_RULES_FN_ALL:
        if (!(args[0]->type.kind == BW_RULES_T_ARRAY && args[0]->type.elem == BW_RULES_T_BOOL))
            return fail_at(c, args[0],
                           "%s() takes Array<Bool>, as in %s(http.request.headers[\"x\"][*] eq "
                           "\"1\"), but %s is %s",
                           fi->name, fi->name, desc(c, args[0], d, sizeof d, "its argument"),
                           bw_rules_type_name(args[0]->type));
        n->type = bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    case BW_RULES_FN_HAS:
    case BW_RULES_FN__COUNT:
        break;
    }
    n->lifted = args[0]->lifted;
    n->type = n->lifted ? bw_rules_array_of(result) : bw_rules_scalar(result);
    return BW_OK;
}

static const char *set_elem_kind(const struct bw_rules_set_elem *e)
{
    switch (e->kind) {
    case BW_RULES_SET_BYTES:
        return "Bytes";
    case BW_RULES_SET_INT_RANGE:
        return e->u.range.lo == e->u.range.hi ? "Int" : "an Int range";
    case BW_RULES_SET_IP:
        return e->u.ip.prefix == (e->u.ip.family == BW_RULES_IPV6 ? 128 : 32) ? "Ip"
                                                                              : "an Ip network";
    case BW_RULES_SET__COUNT:
        break;
    }
    return "?";
}

static bw_status check_in(struct checker *c, struct bw_rules_node *n)
{
    struct bw_rules_node *lhs = n->u.in.lhs;
    if (check(c, lhs) != BW_OK)
        return BW_ERR;
    char d[DESC_MAX];
    struct bw_rules_type t = elem_type(lhs);
    enum bw_rules_set_kind want = BW_RULES_SET_BYTES;
    switch (t.kind) {
    case BW_RULES_T_BYTES:
        want = BW_RULES_SET_BYTES;
        break;
    case BW_RULES_T_INT:
        want = BW_RULES_SET_INT_RANGE;
        break;
    case BW_RULES_T_IP:
        want = BW_RULES_SET_IP;
        break;
    case BW_RULES_T_BOOL:
    case BW_RULES_T_ARRAY:
    case BW_RULES_T_MAP:
    case BW_RULES_T__COUNT:
        return fail_at(c, lhs, "\"in\" needs Bytes, Int or Ip on the left, but %s is %s%s",
                       desc(c, lhs, d, sizeof d, "the left side"), bw_rules_type_name(lhs->type),
                       hint(lhs));
    }
    for (size_t i = 0; i < n->u.in.n; i++) {
        const struct bw_rules_set_elem *e = &n->u.in.elems[i];
        if (e->kind != want) {
            struct bw_rules_node at = {.span = e->span};
            char ed[DESC_MAX];
            return fail_at(c, &at, "\"in\" needs %s elements to match %s, but %s is %s",
                           bw_rules_type_name(t), desc(c, lhs, d, sizeof d, "the left side"),
                           desc(c, &at, ed, sizeof ed, "an element"), set_elem_kind(e));
        }
    }
    n->lifted = lhs->lifted;
    n->type = n->lifted ? bw_rules_array_of(BW_RULES_T_BOOL) : bw_rules_scalar(BW_RULES_T_BOOL);
    return BW_OK;
}

static bw_status check_compare(struct checker *c, struct bw_rules_node *n)
{
    struct bw_rules_node *lhs = n->u.compare.lhs, *rhs = n->u.compare.rhs;
    const char *op = bw_rules_cmp_op_name(n->u.compare.op);
    char dl[DESC_MAX], dr[DESC_MAX];
    if (check(c, lhs) != BW_OK || check(c, rhs) != BW_OK)
        return BW_ERR;
    if (rhs->lifted)
        return fail_at(c, rhs, "[*] is only allowed on the left side of \"%s\"", op);
    struct bw_rules_node *side[2] = {lhs, rhs};
    for (int i = 0; i < 2; i++) {
        struct bw_rules_type t = elem_type(side[i]);
        if (!is_scalar(t.kind))
            return fail_at(c, side[i], "\"%s\" compares single values, but %s is %s%s", op,
                           desc(c, side[i], dl, sizeof dl, i ? "the right side" : "the left side"),
                           bw_rules_type_name(side[i]->type), hint(side[i]));
    }
    struct bw_rules_type lt = elem_type(lhs), rt = rhs->type;
    switch (n->u.compare.op) {
    case BW_RULES_EQ:
    case BW_RULES_NE:
        if (!bw_rules_type_eq(lt, rt))
            return fail_at(c, rhs,
                           "\"%s\" needs the same type on both sides, but %s is %s and %s is %s",
                           op, desc(c, lhs, dl, sizeof dl, "the left side"), bw_rules_type_name(lt),
                           desc(c, rhs, dr, sizeof dr, "the right side"), bw_rules_type_name(rt));
        break;
    case BW_RULES_LT:
    case BW_RULES_LE:
    case BW_RULES_GT:
    case BW_RULES_GE:
        for (int i = 0; i < 2; i++) {
            struct bw_rules_type t = i ? rt : lt;
            if (t.kind != BW_RULES_T_INT)
                return fail_at(
                    c, side[i], "\"%s\" compares Int values, but %s is %s", op,
                    desc(c, side[i], dl, sizeof dl, i ? "the right side" : "the left side"),
                    bw_rules_type_name(t));
        }
        break;
    case BW_RULES_CONTAINS:
        for (int i = 0; i < 2; i++) {
            struct bw_rules_type t = i ? rt : lt;
            if (t.kind != BW_RULES_T_BYTES)
                return fail_at(
                    c, side[i], "\"%s\" needs Bytes on both sides, but %s is %s", op,
                    desc(c, side[i], dl, sizeof dl, i ? "the right side" : "the left side"),
                    bw_rules_type_name(t));
        }
        break;
    case BW_RULES_CMP__COUNT:
        break;
    }
    n->lifted = lhs->lifted;
    n->type = n->lifted ? bw_rules_array_of(BW_RULES_T_BOOL) : bw_rules_scalar(BW_RULES_T_BOOL);
    return BW_OK;
}

/* A Bool operand of not / and / or / xor. */
static bw_status want_bool(struct checker *c, const struct bw_rules_node *n, const char *op)
{
    char d[DESC_MAX];
    if (n->type.kind == BW_RULES_T_BOOL && !n->lifted)
        return BW_OK;
    return fail_at(c, n, "\"%s\" needs Bool operands, but %s is %s%s", op,
                   desc(c, n, d, sizeof d, "an operand"), bw_rules_type_name(n->type), hint(n));
}

static bw_status check(struct checker *c, struct bw_rules_node *n)
{
    char d[DESC_MAX];
    switch (n->kind) {
    case BW_RULES_N_BOOL:
        n->type = bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    case BW_RULES_N_INT:
        n->type = bw_rules_scalar(BW_RULES_T_INT);
        return BW_OK;
    case BW_RULES_N_BYTES:
        n->type = bw_rules_scalar(BW_RULES_T_BYTES);
        return BW_OK;
    case BW_RULES_N_IP:
        n->type = bw_rules_scalar(BW_RULES_T_IP);
        return BW_OK;
    case BW_RULES_N_FIELD: {
        const struct bw_rules_field_info *fi = bw_rules_field_info(n->u.field);
        if (!(fi->phases & BW_RULES_PHASE_BIT(c->phase)))
            return fail_at(c, n,
                           "%s is only available in the response phase, but this is a %s-phase "
                           "expression",
                           fi->name, bw_rules_phase_name(c->phase));
        n->type = fi->type;
        return BW_OK;
    }
    case BW_RULES_N_MAP_GET: {
        struct bw_rules_node *m = n->u.map_get.map;
        if (check(c, m) != BW_OK)
            return BW_ERR;
        if (m->type.kind != BW_RULES_T_MAP)
            return fail_at(c, m, "[\"...\"] needs a map such as http.request.headers, but %s is %s",
                           desc(c, m, d, sizeof d, "it"), bw_rules_type_name(m->type));
        n->type = bw_rules_array_of(m->type.elem);
        return BW_OK;
    }
    case BW_RULES_N_INDEX: {
        struct bw_rules_node *a = n->u.index.array;
        if (check(c, a) != BW_OK)
            return BW_ERR;
        if (a->lifted)
            return fail_at(c, n, "an index cannot follow [*]");
        if (a->type.kind != BW_RULES_T_ARRAY)
            return fail_at(c, a, "[%" PRId64 "] needs an Array, but %s is %s", n->u.index.index,
                           desc(c, a, d, sizeof d, "it"), bw_rules_type_name(a->type));
        n->type = bw_rules_scalar(a->type.elem);
        return BW_OK;
    }
    case BW_RULES_N_EACH: {
        struct bw_rules_node *a = n->u.each.array;
        if (check(c, a) != BW_OK)
            return BW_ERR;
        if (a->lifted && a->kind == BW_RULES_N_CALL) {
            /* Cloudflare's f(x[*])[*]: the call already gives one value per
             * element, and the [*] after it says so; it becomes the call. */
            struct bw_rules_span span = n->span;
            *n = *a;
            n->span = span;
            return BW_OK;
        }
        if (a->lifted)
            return fail_at(c, n, "[*] can be used only once");
        if (a->type.kind != BW_RULES_T_ARRAY)
            return fail_at(c, a, "[*] needs an Array, but %s is %s", desc(c, a, d, sizeof d, "it"),
                           bw_rules_type_name(a->type));
        n->type = a->type;
        n->lifted = true;
        return BW_OK;
    }
    case BW_RULES_N_CALL:
        return check_call(c, n);
    case BW_RULES_N_NOT:
        if (check(c, n->u.not_.operand) != BW_OK)
            return BW_ERR;
        if (want_bool(c, n->u.not_.operand, "not") != BW_OK)
            return BW_ERR;
        n->type = bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    case BW_RULES_N_LOGIC:
        for (size_t i = 0; i < n->u.logic.n; i++) {
            if (check(c, n->u.logic.operands[i]) != BW_OK)
                return BW_ERR;
            if (want_bool(c, n->u.logic.operands[i], bw_rules_logic_op_name(n->u.logic.op)) !=
                BW_OK)
                return BW_ERR;
        }
        n->type = bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    case BW_RULES_N_COMPARE:
        return check_compare(c, n);
    case BW_RULES_N_MATCHES: {
        struct bw_rules_node *lhs = n->u.matches.lhs;
        if (check(c, lhs) != BW_OK)
            return BW_ERR;
        if (!has_kind(lhs, BW_RULES_T_BYTES))
            return fail_at(c, lhs, "\"matches\" needs Bytes on the left, but %s is %s%s",
                           desc(c, lhs, d, sizeof d, "the left side"),
                           bw_rules_type_name(lhs->type), hint(lhs));
        /* A pattern the linear-time engine cannot run is a load error here,
         * with its position, not a surprise at compile time. */
        bw_error rerr;
        if (bw_regex_check(n->u.matches.pattern, &rerr) != BW_OK)
            return bw__rules_fail(c->diag, n->u.matches.pattern_span.off,
                                  n->u.matches.pattern_span.len, "%s", rerr.msg);
        n->lifted = lhs->lifted;
        n->type = n->lifted ? bw_rules_array_of(BW_RULES_T_BOOL) : bw_rules_scalar(BW_RULES_T_BOOL);
        return BW_OK;
    }
    case BW_RULES_N_IN:
        return check_in(c, n);
    case BW_RULES_N__COUNT:
        break;
    }
    return fail_at(c, n, "internal error: unknown node kind");
}

bw_status bw__rules_check(struct bw_rules_node *root, bw_slice text, enum bw_rules_phase phase,
                          struct bw_rules_diag *diag)
{
    struct checker c = {.text = text, .phase = phase, .diag = diag};
    if (check(&c, root) != BW_OK)
        return BW_ERR;
    if (root->type.kind != BW_RULES_T_BOOL || root->lifted) {
        char d[DESC_MAX];
        return fail_at(&c, root, "the expression must be Bool, but %s is %s%s",
                       desc(&c, root, d, sizeof d, "it"), bw_rules_type_name(root->type),
                       hint(root));
    }
    return BW_OK;
}
