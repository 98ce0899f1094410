/* Parser of the rules language and the front end's entry point.
 *
 * Grammar (Cloudflare Rules language precedence: not binds tightest, then
 * comparisons, then and, xor, or; all binary logical operators are
 * left-associative and built n-ary):
 *   expr    := xor_e (("or" | "||") xor_e)*
 *   xor_e   := and_e (("xor" | "^^") and_e)*
 *   and_e   := unary (("and" | "&&") unary)*
 *   unary   := ("not" | "!") unary | compare
 *   compare := value [ cmp value | ("matches" | "~") STRING | "in" set ]
 *   cmp     := eq ne lt le gt ge == != < <= > >= contains
 *   value   := literal | NAME "(" [expr ("," expr)*] ")" postfix* | NAME postfix*
 *            | "(" expr ")"
 *   postfix := "[" STRING "]" | "[" INT "]" | "[" "*" "]"
 *   set     := "{" elem+ "}"       elements separated by whitespace
 *   elem    := STRING | INT [".." INT] | IP | CIDR
 * Names are resolved here (unknown field / function); types are checked in
 * check.c. Nesting (parentheses, not, calls) is bounded by
 * BW_RULES_MAX_DEPTH so that no input can exhaust the stack. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules/lexer.h"
#include "rules/rules.h"

struct parser {
    struct bw_rules_lexer lx;
    struct bw_rules_token tok; /* the current (lookahead) token */
    bw_arena *arena;
    struct bw_rules_diag *diag;
    unsigned depth;
};

static bw_status advance(struct parser *p)
{
    return bw_rules_lex_next(&p->lx, &p->tok, p->diag);
}

static bw_status oom(struct parser *p)
{
    return bw__rules_fail(p->diag, p->tok.off, p->tok.len, "out of memory");
}

static struct bw_rules_node *new_node(struct parser *p, enum bw_rules_node_kind kind,
                                      struct bw_rules_span span)
{
    struct bw_rules_node *n = bw_arena_alloc(p->arena, sizeof *n);
    if (n) {
        n->kind = kind;
        n->span = span;
    }
    return n;
}

static struct bw_rules_span tok_span(const struct bw_rules_token *t)
{
    return (struct bw_rules_span){.off = t->off, .len = t->len};
}

static struct bw_rules_span join(struct bw_rules_span a, struct bw_rules_span b)
{
    return (struct bw_rules_span){.off = a.off, .len = b.off + b.len - a.off};
}

/* The text of a token for messages: the token itself when short and
 * printable, else its kind. */
static void tok_desc(const struct parser *p, const struct bw_rules_token *t, char *buf, size_t cap)
{
    switch (t->kind) {
    case BW_RULES_TOK_EOF:
    case BW_RULES_TOK_STRING:
        snprintf(buf, cap, "%s", bw_rules_tok_name(t->kind));
        return;
    case BW_RULES_TOK_IDENT:
    case BW_RULES_TOK_INT:
    case BW_RULES_TOK_IP:
        if (t->len <= 40) {
            snprintf(buf, cap, "\"%.*s\"", (int)t->len, p->lx.text.ptr + t->off);
            return;
        }
        snprintf(buf, cap, "%s", bw_rules_tok_name(t->kind));
        return;
    case BW_RULES_TOK_LPAREN:
    case BW_RULES_TOK_RPAREN:
    case BW_RULES_TOK_LBRACE:
    case BW_RULES_TOK_RBRACE:
    case BW_RULES_TOK_LBRACKET:
    case BW_RULES_TOK_RBRACKET:
    case BW_RULES_TOK_COMMA:
    case BW_RULES_TOK_STAR:
    case BW_RULES_TOK_DOTDOT:
    case BW_RULES_TOK_EQ:
    case BW_RULES_TOK_NE:
    case BW_RULES_TOK_LT:
    case BW_RULES_TOK_LE:
    case BW_RULES_TOK_GT:
    case BW_RULES_TOK_GE:
    case BW_RULES_TOK_CONTAINS:
    case BW_RULES_TOK_MATCHES:
    case BW_RULES_TOK_IN:
    case BW_RULES_TOK_NOT:
    case BW_RULES_TOK_AND:
    case BW_RULES_TOK_OR:
    case BW_RULES_TOK_XOR:
    case BW_RULES_TOK_TRUE:
    case BW_RULES_TOK_FALSE:
        /* As written: "&&" stays "&&". */
        snprintf(buf, cap, "\"%.*s\"", (int)t->len, p->lx.text.ptr + t->off);
        return;
    case BW_RULES_TOK__COUNT:
        break;
    }
    snprintf(buf, cap, "?");
}

static bw_status unexpected(struct parser *p, const char *expected)
{
    char found[64];
    tok_desc(p, &p->tok, found, sizeof found);
    return bw__rules_fail(p->diag, p->tok.off, p->tok.len, "expected %s, but found %s", expected,
                          found);
}

static bw_status enter(struct parser *p)
{
    if (p->depth >= BW_RULES_MAX_DEPTH)
        return bw__rules_fail(p->diag, p->tok.off, p->tok.len,
                              "the expression nests deeper than %d levels (parentheses, \"not\" "
                              "and function calls)",
                              BW_RULES_MAX_DEPTH);
    p->depth++;
    return BW_OK;
}

/* A growable array of node pointers in the arena. */
struct vec {
    struct bw_rules_node **items;
    size_t n, cap;
};

static bw_status vec_push(struct parser *p, struct vec *v, struct bw_rules_node *x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        struct bw_rules_node **items = bw_arena_alloc(p->arena, cap * sizeof *items);
        if (!items)
            return oom(p);
        if (v->n)
            memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = x;
    return BW_OK;
}

static bw_status parse_expr(struct parser *p, struct bw_rules_node **ret);

static bw_status parse_postfix(struct parser *p, struct bw_rules_node **node)
{
    while (p->tok.kind == BW_RULES_TOK_LBRACKET) {
        struct bw_rules_token open = p->tok;
        if (advance(p) != BW_OK)
            return BW_ERR;
        struct bw_rules_token in = p->tok;
        struct bw_rules_node *n = NULL;
        switch (in.kind) {
        case BW_RULES_TOK_STRING: {
            if (in.u.str.len == 0)
                return bw__rules_fail(p->diag, in.off, in.len, "a header name cannot be empty");
            char *key = bw_arena_alloc(p->arena, in.u.str.len);
            if (!key)
                return oom(p);
            /* RFC 9110 §5.6.2 token characters. */
            for (size_t i = 0; i < in.u.str.len; i++) {
                char c = in.u.str.ptr[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", c)) ||
                    c == '\0')
                    return bw__rules_fail(p->diag, in.off, in.len,
                                          "a header name is a token (letters, digits and "
                                          "!#$%%&'*+-.^_`|~), but this one holds 0x%02x",
                                          (unsigned char)c);
                key[i] = bw_ascii_lower(c);
            }
            n = new_node(p, BW_RULES_N_MAP_GET, (struct bw_rules_span){0, 0});
            if (!n)
                return oom(p);
            n->u.map_get.map = *node;
            n->u.map_get.key = bw_slice_make(key, in.u.str.len);
            break;
        }
        case BW_RULES_TOK_INT:
            if (in.u.integer < 0)
                return bw__rules_fail(p->diag, in.off, in.len, "an index must be 0 or more");
            n = new_node(p, BW_RULES_N_INDEX, (struct bw_rules_span){0, 0});
            if (!n)
                return oom(p);
            n->u.index.array = *node;
            n->u.index.index = in.u.integer;
            break;
        case BW_RULES_TOK_STAR:
            n = new_node(p, BW_RULES_N_EACH, (struct bw_rules_span){0, 0});
            if (!n)
                return oom(p);
            n->u.each.array = *node;
            break;
        case BW_RULES_TOK_EOF:
        case BW_RULES_TOK_IDENT:
        case BW_RULES_TOK_IP:
        case BW_RULES_TOK_LPAREN:
        case BW_RULES_TOK_RPAREN:
        case BW_RULES_TOK_LBRACE:
        case BW_RULES_TOK_RBRACE:
        case BW_RULES_TOK_LBRACKET:
        case BW_RULES_TOK_RBRACKET:
        case BW_RULES_TOK_COMMA:
        case BW_RULES_TOK_DOTDOT:
        case BW_RULES_TOK_EQ:
        case BW_RULES_TOK_NE:
        case BW_RULES_TOK_LT:
        case BW_RULES_TOK_LE:
        case BW_RULES_TOK_GT:
        case BW_RULES_TOK_GE:
        case BW_RULES_TOK_CONTAINS:
        case BW_RULES_TOK_MATCHES:
        case BW_RULES_TOK_IN:
        case BW_RULES_TOK_NOT:
        case BW_RULES_TOK_AND:
        case BW_RULES_TOK_OR:
        case BW_RULES_TOK_XOR:
        case BW_RULES_TOK_TRUE:
        case BW_RULES_TOK_FALSE:
        case BW_RULES_TOK__COUNT:
            return unexpected(p, "a header name string, an index or \"*\" inside [ ]");
        }
        if (advance(p) != BW_OK)
            return BW_ERR;
        if (p->tok.kind != BW_RULES_TOK_RBRACKET)
            return unexpected(p, "\"]\"");
        (void)open;
        n->span = join((*node)->span, tok_span(&p->tok));
        if (advance(p) != BW_OK)
            return BW_ERR;
        *node = n;
    }
    return BW_OK;
}

static bw_status parse_call(struct parser *p, struct bw_rules_token name,
                            struct bw_rules_node **ret)
{
    enum bw_rules_func fn;
    if (bw_rules_func_lookup(name.u.str, &fn) != BW_OK) {
        const char *hint;
        if (bw_rules_suggest(name.u.str, true, &hint) == BW_OK)
            return bw__rules_fail(p->diag, name.off, name.len,
                                  "unknown function \"%.*s\" (did you mean \"%s\"?)", (int)name.len,
                                  name.u.str.ptr, hint);
        return bw__rules_fail(p->diag, name.off, name.len,
                              "unknown function \"%.*s\"; the functions are lower, upper, len, "
                              "starts_with, ends_with, url_decode, concat, any, all and has",
                              name.len > 64 ? 64 : (int)name.len, name.u.str.ptr);
    }
    if (enter(p) != BW_OK)
        return BW_ERR;
    if (advance(p) != BW_OK) /* past "(" */
        return BW_ERR;
    struct vec args = {0};
    if (p->tok.kind != BW_RULES_TOK_RPAREN) {
        for (;;) {
            struct bw_rules_node *arg;
            if (parse_expr(p, &arg) != BW_OK)
                return BW_ERR;
            if (vec_push(p, &args, arg) != BW_OK)
                return BW_ERR;
            if (p->tok.kind == BW_RULES_TOK_RPAREN)
                break;
            if (p->tok.kind != BW_RULES_TOK_COMMA)
                return unexpected(p, "\",\" or \")\" in the arguments");
            if (advance(p) != BW_OK)
                return BW_ERR;
        }
    }
    struct bw_rules_node *n =
        new_node(p, BW_RULES_N_CALL, join(tok_span(&name), tok_span(&p->tok)));
    if (!n)
        return oom(p);
    n->u.call.fn = fn;
    n->u.call.name_span = tok_span(&name);
    n->u.call.nargs = args.n;
    n->u.call.args = args.items;
    p->depth--;
    *ret = n;
    if (advance(p) != BW_OK)
        return BW_ERR;
    /* Cloudflare writes a function over each element as f(x[*])[*]. */
    return parse_postfix(p, ret);
}

static bw_status parse_name(struct parser *p, struct bw_rules_node **ret)
{
    struct bw_rules_token name = p->tok;
    if (advance(p) != BW_OK)
        return BW_ERR;
    if (p->tok.kind == BW_RULES_TOK_LPAREN)
        return parse_call(p, name, ret);
    enum bw_rules_field f;
    if (bw_rules_field_lookup(name.u.str, &f) != BW_OK) {
        enum bw_rules_func fn;
        const char *hint;
        int shown = name.len > 64 ? 64 : (int)name.len;
        if (bw_rules_func_lookup(name.u.str, &fn) == BW_OK)
            return bw__rules_fail(p->diag, name.off, name.len,
                                  "%.*s is a function: call it as %.*s(...)", shown, name.u.str.ptr,
                                  shown, name.u.str.ptr);
        if (bw_rules_suggest(name.u.str, false, &hint) == BW_OK)
            return bw__rules_fail(p->diag, name.off, name.len,
                                  "unknown field \"%.*s\" (did you mean \"%s\"?)", shown,
                                  name.u.str.ptr, hint);
        return bw__rules_fail(p->diag, name.off, name.len, "unknown field \"%.*s\"", shown,
                              name.u.str.ptr);
    }
    struct bw_rules_node *n = new_node(p, BW_RULES_N_FIELD, tok_span(&name));
    if (!n)
        return oom(p);
    n->u.field = f;
    *ret = n;
    return parse_postfix(p, ret);
}

static bw_status parse_value(struct parser *p, struct bw_rules_node **ret)
{
    struct bw_rules_token t = p->tok;
    struct bw_rules_node *n = NULL;
    switch (t.kind) {
    case BW_RULES_TOK_IDENT:
        return parse_name(p, ret);
    case BW_RULES_TOK_LPAREN: {
        if (enter(p) != BW_OK)
            return BW_ERR;
        if (advance(p) != BW_OK)
            return BW_ERR;
        if (parse_expr(p, &n) != BW_OK)
            return BW_ERR;
        if (p->tok.kind != BW_RULES_TOK_RPAREN)
            return unexpected(p, "\")\"");
        p->depth--;
        *ret = n;
        return advance(p);
    }
    case BW_RULES_TOK_TRUE:
    case BW_RULES_TOK_FALSE:
        n = new_node(p, BW_RULES_N_BOOL, tok_span(&t));
        if (!n)
            return oom(p);
        n->u.boolean = t.kind == BW_RULES_TOK_TRUE;
        break;
    case BW_RULES_TOK_INT:
        n = new_node(p, BW_RULES_N_INT, tok_span(&t));
        if (!n)
            return oom(p);
        n->u.integer = t.u.integer;
        break;
    case BW_RULES_TOK_STRING:
        n = new_node(p, BW_RULES_N_BYTES, tok_span(&t));
        if (!n)
            return oom(p);
        n->u.bytes = t.u.str;
        break;
    case BW_RULES_TOK_IP:
        if (t.is_cidr)
            return bw__rules_fail(p->diag, t.off, t.len,
                                  "a CIDR is only allowed inside a set, as in ip.src in {%.*s}",
                                  t.len > 50 ? 50 : (int)t.len, p->lx.text.ptr + t.off);
        n = new_node(p, BW_RULES_N_IP, tok_span(&t));
        if (!n)
            return oom(p);
        n->u.ip = t.u.ip;
        break;
    case BW_RULES_TOK_EOF:
        if (p->tok.off == 0)
            return bw__rules_fail(p->diag, 0, 0, "the expression is empty");
        return unexpected(p, "a field, a function call, a literal or \"(\"");
    case BW_RULES_TOK_RPAREN:
    case BW_RULES_TOK_LBRACE:
    case BW_RULES_TOK_RBRACE:
    case BW_RULES_TOK_LBRACKET:
    case BW_RULES_TOK_RBRACKET:
    case BW_RULES_TOK_COMMA:
    case BW_RULES_TOK_STAR:
    case BW_RULES_TOK_DOTDOT:
    case BW_RULES_TOK_EQ:
    case BW_RULES_TOK_NE:
    case BW_RULES_TOK_LT:
    case BW_RULES_TOK_LE:
    case BW_RULES_TOK_GT:
    case BW_RULES_TOK_GE:
    case BW_RULES_TOK_CONTAINS:
    case BW_RULES_TOK_MATCHES:
    case BW_RULES_TOK_IN:
    case BW_RULES_TOK_NOT:
    case BW_RULES_TOK_AND:
    case BW_RULES_TOK_OR:
    case BW_RULES_TOK_XOR:
    case BW_RULES_TOK__COUNT:
        return unexpected(p, "a field, a function call, a literal or \"(\"");
    }
    *ret = n;
    return advance(p);
}

static bw_status parse_set(struct parser *p, struct bw_rules_node *lhs,
                           struct bw_rules_span in_span, struct bw_rules_node **ret)
{
    if (p->tok.kind != BW_RULES_TOK_LBRACE)
        return unexpected(p, "a set \"{ ... }\" after \"in\"");
    struct bw_rules_token open = p->tok;
    if (advance(p) != BW_OK)
        return BW_ERR;
    struct bw_rules_set_elem *elems = NULL;
    size_t n = 0, cap = 0;
    while (p->tok.kind != BW_RULES_TOK_RBRACE) {
        struct bw_rules_token t = p->tok;
        struct bw_rules_set_elem e = {.span = tok_span(&t)};
        switch (t.kind) {
        case BW_RULES_TOK_STRING:
            e.kind = BW_RULES_SET_BYTES;
            e.u.bytes = t.u.str;
            break;
        case BW_RULES_TOK_INT:
            e.kind = BW_RULES_SET_INT_RANGE;
            e.u.range.lo = e.u.range.hi = t.u.integer;
            break;
        case BW_RULES_TOK_IP:
            e.kind = BW_RULES_SET_IP;
            e.u.ip = t.u.ip;
            break;
        case BW_RULES_TOK_COMMA:
            return bw__rules_fail(p->diag, t.off, t.len,
                                  "set elements are separated by spaces, not commas");
        case BW_RULES_TOK_EOF:
            return bw__rules_fail(p->diag, open.off, open.len,
                                  "unterminated set: a closing \"}\" is missing");
        case BW_RULES_TOK_IDENT:
        case BW_RULES_TOK_LPAREN:
        case BW_RULES_TOK_RPAREN:
        case BW_RULES_TOK_LBRACE:
        case BW_RULES_TOK_RBRACE:
        case BW_RULES_TOK_LBRACKET:
        case BW_RULES_TOK_RBRACKET:
        case BW_RULES_TOK_STAR:
        case BW_RULES_TOK_DOTDOT:
        case BW_RULES_TOK_EQ:
        case BW_RULES_TOK_NE:
        case BW_RULES_TOK_LT:
        case BW_RULES_TOK_LE:
        case BW_RULES_TOK_GT:
        case BW_RULES_TOK_GE:
        case BW_RULES_TOK_CONTAINS:
        case BW_RULES_TOK_MATCHES:
        case BW_RULES_TOK_IN:
        case BW_RULES_TOK_NOT:
        case BW_RULES_TOK_AND:
        case BW_RULES_TOK_OR:
        case BW_RULES_TOK_XOR:
        case BW_RULES_TOK_TRUE:
        case BW_RULES_TOK_FALSE:
        case BW_RULES_TOK__COUNT:
            return unexpected(p, "a set element (a string, an integer, a range, an address or "
                                 "a CIDR) or \"}\"");
        }
        if (advance(p) != BW_OK)
            return BW_ERR;
        if (p->tok.kind == BW_RULES_TOK_DOTDOT) {
            struct bw_rules_token dd = p->tok;
            if (t.kind == BW_RULES_TOK_IP)
                return bw__rules_fail(p->diag, dd.off, dd.len,
                                      "address ranges (a..b) are not supported: write the range "
                                      "as CIDRs, as in {192.0.2.0/29 192.0.2.8}");
            if (t.kind != BW_RULES_TOK_INT)
                return bw__rules_fail(p->diag, dd.off, dd.len,
                                      "a range needs Int bounds, as in 1..10");
            if (advance(p) != BW_OK)
                return BW_ERR;
            if (p->tok.kind != BW_RULES_TOK_INT)
                return unexpected(p, "an integer after \"..\"");
            e.u.range.hi = p->tok.u.integer;
            e.span = join(e.span, tok_span(&p->tok));
            if (e.u.range.lo > e.u.range.hi)
                return bw__rules_fail(p->diag, e.span.off, e.span.len,
                                      "the range %" PRId64 "..%" PRId64
                                      " is empty: its start is past its end",
                                      e.u.range.lo, e.u.range.hi);
            if (advance(p) != BW_OK)
                return BW_ERR;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct bw_rules_set_elem *ne = bw_arena_alloc(p->arena, ncap * sizeof *ne);
            if (!ne)
                return oom(p);
            if (n)
                memcpy(ne, elems, n * sizeof *ne);
            elems = ne;
            cap = ncap;
        }
        elems[n++] = e;
    }
    if (n == 0)
        return bw__rules_fail(p->diag, open.off, p->tok.off + p->tok.len - open.off,
                              "a set needs at least one element");
    struct bw_rules_node *node = new_node(p, BW_RULES_N_IN, join(lhs->span, tok_span(&p->tok)));
    if (!node)
        return oom(p);
    (void)in_span;
    node->u.in.lhs = lhs;
    node->u.in.n = n;
    node->u.in.elems = elems;
    *ret = node;
    return advance(p);
}

static bool cmp_op(enum bw_rules_tok k, enum bw_rules_cmp_op *ret)
{
    switch (k) {
    case BW_RULES_TOK_EQ:
        *ret = BW_RULES_EQ;
        return true;
    case BW_RULES_TOK_NE:
        *ret = BW_RULES_NE;
        return true;
    case BW_RULES_TOK_LT:
        *ret = BW_RULES_LT;
        return true;
    case BW_RULES_TOK_LE:
        *ret = BW_RULES_LE;
        return true;
    case BW_RULES_TOK_GT:
        *ret = BW_RULES_GT;
        return true;
    case BW_RULES_TOK_GE:
        *ret = BW_RULES_GE;
        return true;
    case BW_RULES_TOK_CONTAINS:
        *ret = BW_RULES_CONTAINS;
        return true;
    case BW_RULES_TOK_EOF:
    case BW_RULES_TOK_IDENT:
    case BW_RULES_TOK_INT:
    case BW_RULES_TOK_STRING:
    case BW_RULES_TOK_IP:
    case BW_RULES_TOK_LPAREN:
    case BW_RULES_TOK_RPAREN:
    case BW_RULES_TOK_LBRACE:
    case BW_RULES_TOK_RBRACE:
    case BW_RULES_TOK_LBRACKET:
    case BW_RULES_TOK_RBRACKET:
    case BW_RULES_TOK_COMMA:
    case BW_RULES_TOK_STAR:
    case BW_RULES_TOK_DOTDOT:
    case BW_RULES_TOK_MATCHES:
    case BW_RULES_TOK_IN:
    case BW_RULES_TOK_NOT:
    case BW_RULES_TOK_AND:
    case BW_RULES_TOK_OR:
    case BW_RULES_TOK_XOR:
    case BW_RULES_TOK_TRUE:
    case BW_RULES_TOK_FALSE:
    case BW_RULES_TOK__COUNT:
        break;
    }
    return false;
}

static bool is_comparison_tok(enum bw_rules_tok k)
{
    enum bw_rules_cmp_op op;
    return cmp_op(k, &op) || k == BW_RULES_TOK_MATCHES || k == BW_RULES_TOK_IN;
}

static bw_status parse_compare(struct parser *p, struct bw_rules_node **ret)
{
    struct bw_rules_node *lhs, *n = NULL;
    if (parse_value(p, &lhs) != BW_OK)
        return BW_ERR;
    struct bw_rules_token op = p->tok;
    enum bw_rules_cmp_op cop;
    if (cmp_op(op.kind, &cop)) {
        if (advance(p) != BW_OK)
            return BW_ERR;
        struct bw_rules_node *rhs;
        if (parse_value(p, &rhs) != BW_OK)
            return BW_ERR;
        n = new_node(p, BW_RULES_N_COMPARE, join(lhs->span, rhs->span));
        if (!n)
            return oom(p);
        n->u.compare.op = cop;
        n->u.compare.op_span = tok_span(&op);
        n->u.compare.lhs = lhs;
        n->u.compare.rhs = rhs;
    } else if (op.kind == BW_RULES_TOK_MATCHES) {
        p->lx.regex_next = true;
        if (advance(p) != BW_OK)
            return BW_ERR;
        if (p->tok.kind != BW_RULES_TOK_STRING)
            return unexpected(p, "a string pattern after \"matches\"");
        n = new_node(p, BW_RULES_N_MATCHES, join(lhs->span, tok_span(&p->tok)));
        if (!n)
            return oom(p);
        n->u.matches.lhs = lhs;
        n->u.matches.pattern = p->tok.u.str;
        n->u.matches.pattern_span = tok_span(&p->tok);
        if (advance(p) != BW_OK)
            return BW_ERR;
    } else if (op.kind == BW_RULES_TOK_IN) {
        if (advance(p) != BW_OK)
            return BW_ERR;
        if (parse_set(p, lhs, tok_span(&op), &n) != BW_OK)
            return BW_ERR;
    } else {
        *ret = lhs;
        return BW_OK;
    }
    if (is_comparison_tok(p->tok.kind))
        return bw__rules_fail(p->diag, p->tok.off, p->tok.len,
                              "comparisons do not chain: join them with \"and\"");
    *ret = n;
    return BW_OK;
}

static bw_status parse_unary(struct parser *p, struct bw_rules_node **ret)
{
    if (p->tok.kind != BW_RULES_TOK_NOT)
        return parse_compare(p, ret);
    struct bw_rules_token t = p->tok;
    if (enter(p) != BW_OK)
        return BW_ERR;
    if (advance(p) != BW_OK)
        return BW_ERR;
    struct bw_rules_node *operand;
    if (parse_unary(p, &operand) != BW_OK)
        return BW_ERR;
    p->depth--;
    struct bw_rules_node *n = new_node(p, BW_RULES_N_NOT, join(tok_span(&t), operand->span));
    if (!n)
        return oom(p);
    n->u.not_.operand = operand;
    *ret = n;
    return BW_OK;
}

/* Levels of the binary logical operators, loosest first. */
static const struct {
    enum bw_rules_tok tok;
    enum bw_rules_logic_op op;
} levels[] = {
    {BW_RULES_TOK_OR, BW_RULES_OR},
    {BW_RULES_TOK_XOR, BW_RULES_XOR},
    {BW_RULES_TOK_AND, BW_RULES_AND},
};

static bw_status parse_level(struct parser *p, size_t level, struct bw_rules_node **ret)
{
    struct bw_rules_node *first;
    bw_status st = level + 1 < sizeof levels / sizeof levels[0] ? parse_level(p, level + 1, &first)
                                                                : parse_unary(p, &first);
    if (st != BW_OK)
        return BW_ERR;
    if (p->tok.kind != levels[level].tok) {
        *ret = first;
        return BW_OK;
    }
    struct vec ops = {0};
    if (vec_push(p, &ops, first) != BW_OK)
        return BW_ERR;
    while (p->tok.kind == levels[level].tok) {
        if (advance(p) != BW_OK)
            return BW_ERR;
        struct bw_rules_node *next;
        st = level + 1 < sizeof levels / sizeof levels[0] ? parse_level(p, level + 1, &next)
                                                          : parse_unary(p, &next);
        if (st != BW_OK)
            return BW_ERR;
        if (vec_push(p, &ops, next) != BW_OK)
            return BW_ERR;
    }
    struct bw_rules_node *n =
        new_node(p, BW_RULES_N_LOGIC, join(first->span, ops.items[ops.n - 1]->span));
    if (!n)
        return oom(p);
    n->u.logic.op = levels[level].op;
    n->u.logic.n = ops.n;
    n->u.logic.operands = ops.items;
    *ret = n;
    return BW_OK;
}

static bw_status parse_expr(struct parser *p, struct bw_rules_node **ret)
{
    return parse_level(p, 0, ret);
}

/* Renders diag->text from diag->off/len/msg. */
static void render(struct bw_rules_diag *d, bw_slice text, const struct bw_rules_srcpos *where)
{
    uint32_t off = d->off <= text.len ? d->off : (uint32_t)text.len;
    /* "found the end of the expression" in a text that ends with a line
     * break (a YAML block scalar): shown after the last line, not on an
     * empty one below it. */
    if (off == text.len)
        while (off > 0 && (text.ptr[off - 1] == '\n' || text.ptr[off - 1] == '\r'))
            off--;
    uint32_t line = 1, ls = 0;
    for (uint32_t i = 0; i < off; i++)
        if (text.ptr[i] == '\n') {
            line++;
            ls = i + 1;
        }
    d->line = where->line + line - 1;
    d->col = (line == 1 ? where->col : where->cont_col) + (off - ls);
    char excerpt[256];
    bw_rules_excerpt(text, off, (size_t)off + d->len, excerpt, sizeof excerpt);
    snprintf(d->text, sizeof d->text, "%.*s:%u:%u: error: %s\n%s",
             where->file.len > 256 ? 256 : (int)where->file.len, where->file.ptr, d->line, d->col,
             d->msg, excerpt);
}

void bw_rules_excerpt(bw_slice text, size_t off, size_t end, char *out, size_t cap)
{
    if (off > text.len)
        off = text.len;
    size_t ls = off, le = off;
    while (ls > 0 && text.ptr[ls - 1] != '\n')
        ls--;
    while (le < text.len && text.ptr[le] != '\n')
        le++;
    if (le > ls && text.ptr[le - 1] == '\r')
        le--;
    /* Show at most 100 bytes of the line, keeping the caret in view. */
    size_t ws = ls, we = le;
    if (we - ws > 100) {
        ws = off > ls + 60 ? off - 60 : ls;
        we = ws + 100 < le ? ws + 100 : le;
    }
    char src[128], caret[128];
    size_t si = 0, ci = 0;
    for (size_t i = ws; i < we; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        src[si++] = (c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80) ? (char)c : '?';
    }
    src[si] = '\0';
    for (size_t i = ws; i < off && i < we; i++)
        caret[ci++] = text.ptr[i] == '\t' ? '\t' : ' ';
    caret[ci++] = '^';
    for (size_t i = off + 1; i < end && i < we && ci < sizeof caret - 1; i++)
        caret[ci++] = '~';
    caret[ci] = '\0';
    if (cap)
        snprintf(out, cap, "    %s\n    %s\n", src, caret);
}

bw_status bw_rules_parse(bw_arena *a, bw_slice text, enum bw_rules_phase phase,
                         const struct bw_rules_srcpos *where, struct bw_rules_expr **ret,
                         struct bw_rules_diag *diag)
{
    memset(diag, 0, sizeof *diag);
    if (text.len > BW_RULES_MAX_EXPR_LEN) {
        (void)bw__rules_fail(diag, BW_RULES_MAX_EXPR_LEN, 1,
                             "the expression is %zu bytes long; the limit is %d bytes", text.len,
                             BW_RULES_MAX_EXPR_LEN);
        render(diag, text, where);
        return BW_ERR;
    }
    struct bw_rules_expr *e = bw_arena_alloc(a, sizeof *e);
    bw_slice copy = bw_arena_slice_dup(a, text);
    if (!e || !copy.ptr) {
        (void)bw__rules_fail(diag, 0, 0, "out of memory");
        render(diag, text, where);
        return BW_ERR;
    }
    struct parser p = {.arena = a, .diag = diag};
    bw_rules_lexer_init(&p.lx, a, copy);
    struct bw_rules_node *root;
    bw_status st = advance(&p);
    if (st == BW_OK)
        st = parse_expr(&p, &root);
    if (st == BW_OK && p.tok.kind != BW_RULES_TOK_EOF) {
        if (p.tok.kind == BW_RULES_TOK_RPAREN)
            st = bw__rules_fail(diag, p.tok.off, p.tok.len, "unbalanced \")\": no \"(\" opens it");
        else
            st = unexpected(&p, "\"and\", \"or\", \"xor\" or the end of the expression");
    }
    if (st == BW_OK)
        st = bw__rules_check(root, copy, phase, diag);
    if (st != BW_OK) {
        render(diag, text, where);
        return BW_ERR;
    }
    e->root = root;
    e->phase = phase;
    e->text = copy;
    *ret = e;
    return BW_OK;
}

/* --- S-expression rendering --- */

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) BW_PRINTF(2, 3);
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = o->len < o->cap ? o->buf + o->len : NULL;
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void put_bytes(struct out *o, bw_slice s)
{
    put(o, "\"");
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\')
            put(o, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            put(o, "%c", c);
        else
            put(o, "\\x%02x", c);
    }
    put(o, "\"");
}

static void put_ip(struct out *o, const struct bw_rules_ip *ip, bool with_prefix)
{
    char b[INET6_ADDRSTRLEN];
    bool v6 = ip->family == BW_RULES_IPV6;
    if (!inet_ntop(v6 ? AF_INET6 : AF_INET, ip->addr, b, sizeof b))
        b[0] = '\0';
    put(o, "%s", b);
    if (with_prefix && ip->prefix != (v6 ? 128 : 32))
        put(o, "/%u", ip->prefix);
}

const char *bw_rules_cmp_op_name(enum bw_rules_cmp_op op)
{
    switch (op) {
    case BW_RULES_EQ:
        return "eq";
    case BW_RULES_NE:
        return "ne";
    case BW_RULES_LT:
        return "lt";
    case BW_RULES_LE:
        return "le";
    case BW_RULES_GT:
        return "gt";
    case BW_RULES_GE:
        return "ge";
    case BW_RULES_CONTAINS:
        return "contains";
    case BW_RULES_CMP__COUNT:
        break;
    }
    return "?";
}

const char *bw_rules_logic_op_name(enum bw_rules_logic_op op)
{
    switch (op) {
    case BW_RULES_AND:
        return "and";
    case BW_RULES_OR:
        return "or";
    case BW_RULES_XOR:
        return "xor";
    case BW_RULES_LOGIC__COUNT:
        break;
    }
    return "?";
}

static void fmt_node(struct out *o, const struct bw_rules_node *n)
{
    switch (n->kind) {
    case BW_RULES_N_BOOL:
        put(o, "%s", n->u.boolean ? "true" : "false");
        return;
    case BW_RULES_N_INT:
        put(o, "%" PRId64, n->u.integer);
        return;
    case BW_RULES_N_BYTES:
        put_bytes(o, n->u.bytes);
        return;
    case BW_RULES_N_IP:
        put_ip(o, &n->u.ip, false);
        return;
    case BW_RULES_N_FIELD:
        put(o, "%s", bw_rules_field_info(n->u.field)->name);
        return;
    case BW_RULES_N_MAP_GET:
        fmt_node(o, n->u.map_get.map);
        put(o, "[");
        put_bytes(o, n->u.map_get.key);
        put(o, "]");
        return;
    case BW_RULES_N_INDEX:
        fmt_node(o, n->u.index.array);
        put(o, "[%" PRId64 "]", n->u.index.index);
        return;
    case BW_RULES_N_EACH:
        fmt_node(o, n->u.each.array);
        put(o, "[*]");
        return;
    case BW_RULES_N_CALL:
        put(o, "(%s", bw_rules_func_info(n->u.call.fn)->name);
        for (size_t i = 0; i < n->u.call.nargs; i++) {
            put(o, " ");
            fmt_node(o, n->u.call.args[i]);
        }
        put(o, ")");
        return;
    case BW_RULES_N_NOT:
        put(o, "(not ");
        fmt_node(o, n->u.not_.operand);
        put(o, ")");
        return;
    case BW_RULES_N_LOGIC:
        put(o, "(%s", bw_rules_logic_op_name(n->u.logic.op));
        for (size_t i = 0; i < n->u.logic.n; i++) {
            put(o, " ");
            fmt_node(o, n->u.logic.operands[i]);
        }
        put(o, ")");
        return;
    case BW_RULES_N_COMPARE:
        put(o, "(%s ", bw_rules_cmp_op_name(n->u.compare.op));
        fmt_node(o, n->u.compare.lhs);
        put(o, " ");
        fmt_node(o, n->u.compare.rhs);
        put(o, ")");
        return;
    case BW_RULES_N_MATCHES:
        put(o, "(matches ");
        fmt_node(o, n->u.matches.lhs);
        put(o, " ");
        put_bytes(o, n->u.matches.pattern);
        put(o, ")");
        return;
    case BW_RULES_N_IN:
        put(o, "(in ");
        fmt_node(o, n->u.in.lhs);
        put(o, " {");
        for (size_t i = 0; i < n->u.in.n; i++) {
            const struct bw_rules_set_elem *e = &n->u.in.elems[i];
            if (i)
                put(o, " ");
            switch (e->kind) {
            case BW_RULES_SET_BYTES:
                put_bytes(o, e->u.bytes);
                break;
            case BW_RULES_SET_INT_RANGE:
                if (e->u.range.lo == e->u.range.hi)
                    put(o, "%" PRId64, e->u.range.lo);
                else
                    put(o, "%" PRId64 "..%" PRId64, e->u.range.lo, e->u.range.hi);
                break;
            case BW_RULES_SET_IP:
                put_ip(o, &e->u.ip, true);
                break;
            case BW_RULES_SET__COUNT:
                break;
            }
        }
        put(o, "})");
        return;
    case BW_RULES_N__COUNT:
        break;
    }
    put(o, "?");
}

size_t bw_rules_format(const struct bw_rules_node *n, char *buf, size_t cap)
{
    struct out o = {.buf = buf, .cap = cap, .len = 0};
    if (cap)
        buf[0] = '\0';
    fmt_node(&o, n);
    return o.len;
}
