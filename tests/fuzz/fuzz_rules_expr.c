/* Fuzzes the rules-language front end: the input is parsed and type-checked
 * as an expression of both phases, from an exact-size copy. Invariants:
 *   - an error has a non-empty message, a position inside the input
 *     (off <= len, off + len <= input + 1), and a rendering that starts with
 *     "f.yaml:<line>:<col>: error: ";
 *   - success means the root is Bool and not lifted, every node is typed,
 *     and the AST formats without overrun;
 *   - a request-phase success is also a response-phase success (request
 *     fields exist in both phases). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules.h"

static void check_node(const struct bw_rules_node *n, unsigned depth)
{
    if (depth > 4 * BW_RULES_MAX_DEPTH + 8)
        abort();
    if (n->type.kind >= BW_RULES_T__COUNT)
        abort();
    switch (n->kind) {
    case BW_RULES_N_BOOL:
    case BW_RULES_N_INT:
    case BW_RULES_N_BYTES:
    case BW_RULES_N_IP:
    case BW_RULES_N_FIELD:
        return;
    case BW_RULES_N_MAP_GET:
        check_node(n->u.map_get.map, depth + 1);
        return;
    case BW_RULES_N_INDEX:
        check_node(n->u.index.array, depth + 1);
        return;
    case BW_RULES_N_EACH:
        if (!n->lifted)
            abort();
        check_node(n->u.each.array, depth + 1);
        return;
    case BW_RULES_N_CALL:
        for (size_t i = 0; i < n->u.call.nargs; i++)
            check_node(n->u.call.args[i], depth + 1);
        return;
    case BW_RULES_N_NOT:
        check_node(n->u.not_.operand, depth + 1);
        return;
    case BW_RULES_N_LOGIC:
        if (n->u.logic.n < 2)
            abort();
        for (size_t i = 0; i < n->u.logic.n; i++) {
            const struct bw_rules_node *o = n->u.logic.operands[i];
            if (o->type.kind != BW_RULES_T_BOOL || o->lifted)
                abort();
            check_node(o, depth + 1);
        }
        return;
    case BW_RULES_N_COMPARE:
        check_node(n->u.compare.lhs, depth + 1);
        check_node(n->u.compare.rhs, depth + 1);
        return;
    case BW_RULES_N_MATCHES:
        check_node(n->u.matches.lhs, depth + 1);
        return;
    case BW_RULES_N_IN:
        if (n->u.in.n < 1)
            abort();
        check_node(n->u.in.lhs, depth + 1);
        return;
    case BW_RULES_N__COUNT:
        break;
    }
    abort();
}

static bool one(const char *text, size_t size, enum bw_rules_phase phase)
{
    bw_arena a;
    bw_arena_init(&a, 4096, 0);
    struct bw_rules_srcpos where = {
        .file = BW_SLICE_LIT("f.yaml"), .line = 3, .col = 14, .cont_col = 5};
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    bool ok = bw_rules_parse(&a, bw_slice_make(text, size), phase, &where, &e, &d) == BW_OK;
    if (ok) {
        if (e->root->type.kind != BW_RULES_T_BOOL || e->root->lifted || e->phase != phase)
            abort();
        check_node(e->root, 0);
        char buf[256];
        size_t n = bw_rules_format(e->root, buf, sizeof buf);
        if (n < sizeof buf && strlen(buf) != n)
            abort();
    } else {
        if (d.msg[0] == '\0' || d.off > size || (size_t)d.off + d.len > size + 1 || d.line < 3)
            abort();
        char head[64];
        int hn = snprintf(head, sizeof head, "f.yaml:%u:%u: error: ", d.line, d.col);
        if (strncmp(d.text, head, (size_t)hn) != 0)
            abort();
    }
    bw_arena_reset(&a);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    bool req = one(text, size, BW_RULES_PHASE_REQUEST);
    bool resp = one(text, size, BW_RULES_PHASE_RESPONSE);
    if (req && !resp)
        abort();
    free(text);
    return 0;
}
