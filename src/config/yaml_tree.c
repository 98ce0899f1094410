/* YAML text -> a tree of positioned nodes, through libyaml's event parser.
 *
 * This file owns everything about YAML as a syntax: what libyaml reports as
 * invalid (bad UTF-8, control characters, syntax errors) and what bulwark
 * refuses on top of it:
 *   - anchors and aliases (an alias expands a subtree by reference: the
 *     "billion laughs" attack, and confusing in a config anyway);
 *   - explicit tags (!!str, !foo): values get their meaning from the key;
 *   - more than one document;
 *   - nesting deeper than BW_CONFIG_MAX_DEPTH, more than BW_CONFIG_MAX_NODES
 *     nodes, or a tree larger than BW__YAML_ARENA_CAP.
 * The first such problem stops the parse with one message and the position
 * libyaml reports. Duplicate keys are not an error here: they are marked
 * (is_dup) so that the schema walk in load.c can report each one and go on.
 *
 * It does not know the schema: whether a key is known or a value valid is
 * load.c's business. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/internal.h"

struct builder {
    bw_arena *a;
    struct bw__ynode *stack[BW_CONFIG_MAX_DEPTH];
    size_t depth;
    size_t nodes;
    size_t documents;
    bool has_root;
    struct bw__ynode *root;
    struct bw__yerr *err;
};

static uint32_t clamp32(size_t v)
{
    return v >= UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

BW_PRINTF(4, 5)
static bw_status fail_at(struct bw__yerr *err, uint32_t line, uint32_t col, const char *fmt, ...)
{
    err->line = line;
    err->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return BW_ERR;
}

static uint32_t mark_line(yaml_mark_t m)
{
    return clamp32(m.line + 1);
}

static uint32_t mark_col(yaml_mark_t m)
{
    return clamp32(m.column + 1);
}

bool bw__ynode_is_null(const struct bw__ynode *n)
{
    if (n->kind != BW__YNODE_SCALAR || !n->plain)
        return false;
    bw_slice t = n->text;
    return t.len == 0 || bw_slice_eq(t, BW_SLICE_LIT("~")) ||
           bw_slice_eq(t, BW_SLICE_LIT("null")) || bw_slice_eq(t, BW_SLICE_LIT("Null")) ||
           bw_slice_eq(t, BW_SLICE_LIT("NULL"));
}

/* Refuses the YAML features bulwark does not take (see the file header). */
static bw_status check_props(struct builder *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                             const yaml_char_t *tag)
{
    if (anchor)
        return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                       "YAML anchors (&%.40s) are not supported; write the value out in full",
                       (const char *)anchor);
    if (tag)
        return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                       "YAML tags (like !!str) are not supported; the key decides the type");
    return BW_OK;
}

static bw_status add_node(struct builder *b, const yaml_event_t *ev, enum bw__ynode_kind kind,
                          struct bw__ynode **ret)
{
    if (b->nodes >= BW_CONFIG_MAX_NODES)
        return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                       "too many YAML values (limit %d)", BW_CONFIG_MAX_NODES);
    struct bw__ynode *n = bw_arena_alloc(b->a, sizeof *n);
    if (!n)
        return fail_at(b->err, 0, 0, "the config is too large to load (out of memory)");
    b->nodes++;
    n->kind = kind;
    n->line = mark_line(ev->start_mark);
    n->col = mark_col(ev->start_mark);
    if (b->depth == 0) {
        /* A second root can only come from a second document, refused
         * before this; keep the first regardless. */
        if (!b->has_root) {
            b->root = n;
            b->has_root = true;
        }
    } else {
        struct bw__ynode *parent = b->stack[b->depth - 1];
        if (parent->last)
            parent->last->next = n;
        else
            parent->child = n;
        parent->last = n;
        parent->n++;
    }
    *ret = n;
    return BW_OK;
}

static bw_status push(struct builder *b, const yaml_event_t *ev, enum bw__ynode_kind kind)
{
    if (b->depth >= BW_CONFIG_MAX_DEPTH)
        return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                       "YAML nested deeper than %d levels", BW_CONFIG_MAX_DEPTH);
    struct bw__ynode *n;
    if (add_node(b, ev, kind, &n) != BW_OK)
        return BW_ERR;
    b->stack[b->depth++] = n;
    return BW_OK;
}

static int cmp_keys(const void *pa, const void *pb)
{
    const struct bw__ynode *a = *(const struct bw__ynode *const *)pa;
    const struct bw__ynode *b = *(const struct bw__ynode *const *)pb;
    size_t n = a->text.len < b->text.len ? a->text.len : b->text.len;
    int c = n ? memcmp(a->text.ptr, b->text.ptr, n) : 0;
    if (c)
        return c;
    if (a->text.len != b->text.len)
        return a->text.len < b->text.len ? -1 : 1;
    /* Equal keys in document order, so the first stays the original. */
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return 0;
}

/* Marks every scalar key of a mapping that repeats an earlier one. Sorting
 * keeps this O(n log n) for a mapping with very many keys. */
static bw_status mark_duplicates(struct builder *b, struct bw__ynode *map)
{
    size_t nkeys = 0;
    for (struct bw__ynode *k = map->child; k; k = k->next ? k->next->next : NULL)
        if (k->kind == BW__YNODE_SCALAR)
            nkeys++;
    if (nkeys < 2)
        return BW_OK;
    struct bw__ynode **keys = bw_arena_alloc(b->a, nkeys * sizeof *keys);
    if (!keys)
        return fail_at(b->err, 0, 0, "the config is too large to load (out of memory)");
    size_t i = 0;
    for (struct bw__ynode *k = map->child; k; k = k->next ? k->next->next : NULL)
        if (k->kind == BW__YNODE_SCALAR)
            keys[i++] = k;
    qsort(keys, nkeys, sizeof *keys, cmp_keys);
    for (i = 1; i < nkeys; i++) {
        struct bw__ynode *prev = keys[i - 1];
        if (bw_slice_eq(prev->text, keys[i]->text)) {
            keys[i]->is_dup = true;
            keys[i]->dup_line = prev->is_dup ? prev->dup_line : prev->line;
        }
    }
    return BW_OK;
}

static bw_status on_event(struct builder *b, const yaml_event_t *ev, bool *ret_done)
{
    struct bw__ynode *n;
    switch (ev->type) {
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return BW_OK;
    case YAML_STREAM_END_EVENT:
        *ret_done = true;
        return BW_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (b->documents++ > 0)
            return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                           "a second YAML document; the config must be a single document");
        return BW_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(b->err, mark_line(ev->start_mark), mark_col(ev->start_mark),
                       "YAML aliases (*%.40s) are not supported; write the value out in full",
                       (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT:
        if (check_props(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag) != BW_OK)
            return BW_ERR;
        if (add_node(b, ev, BW__YNODE_SCALAR, &n) != BW_OK)
            return BW_ERR;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->block = ev->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                   ev->data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
        n->text = bw_arena_slice_dup(
            b->a, bw_slice_make((const char *)ev->data.scalar.value, ev->data.scalar.length));
        if (!n->text.ptr)
            return fail_at(b->err, 0, 0, "the config is too large to load (out of memory)");
        return BW_OK;
    case YAML_SEQUENCE_START_EVENT:
        if (check_props(b, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag) !=
            BW_OK)
            return BW_ERR;
        return push(b, ev, BW__YNODE_SEQ);
    case YAML_MAPPING_START_EVENT:
        if (check_props(b, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag) != BW_OK)
            return BW_ERR;
        return push(b, ev, BW__YNODE_MAP);
    case YAML_SEQUENCE_END_EVENT:
        if (b->depth > 0)
            b->depth--;
        return BW_OK;
    case YAML_MAPPING_END_EVENT:
        if (b->depth == 0)
            return BW_OK;
        n = b->stack[--b->depth];
        return mark_duplicates(b, n);
    }
    return BW_OK;
}

/* 1-based line and column of a byte offset, for reader errors, which libyaml
 * reports as an offset rather than a mark. The column counts characters,
 * as libyaml's marks do. */
static void offset_to_pos(const char *text, size_t len, size_t off, uint32_t *line, uint32_t *col)
{
    size_t l = 1, c = 1;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = clamp32(l);
    *col = clamp32(c);
}

static bw_status parser_error(const yaml_parser_t *p, const char *text, size_t len,
                              struct bw__yerr *err)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_NO_ERROR:
    case YAML_MEMORY_ERROR:
    case YAML_WRITER_ERROR:
    case YAML_EMITTER_ERROR:
        return fail_at(err, 0, 0, "could not parse the YAML (out of memory)");
    case YAML_READER_ERROR: {
        uint32_t line, col;
        offset_to_pos(text, len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            return fail_at(err, line, col, "not UTF-8 text: %s (#%X)", problem,
                           (unsigned)p->problem_value);
        return fail_at(err, line, col, "not UTF-8 text: %s", problem);
    }
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
    case YAML_COMPOSER_ERROR:
        if (p->context)
            return fail_at(err, mark_line(p->problem_mark), mark_col(p->problem_mark),
                           "invalid YAML: %s (%s at line %u, column %u)", problem, p->context,
                           mark_line(p->context_mark), mark_col(p->context_mark));
        return fail_at(err, mark_line(p->problem_mark), mark_col(p->problem_mark),
                       "invalid YAML: %s", problem);
    }
    return fail_at(err, 0, 0, "invalid YAML");
}

bw_status bw__yaml_tree(bw_arena *a, const char *text, size_t len, bool *ret_has_root,
                        struct bw__ynode **ret_root, struct bw__yerr *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return fail_at(err, 0, 0, "could not parse the YAML (out of memory)");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    /* UTF-8 only: no guessing UTF-16 from a byte-order mark. */
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    struct builder b = {.a = a, .err = err};
    bw_status st = BW_OK;
    bool done = false;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = parser_error(&parser, text, len, err);
            break;
        }
        st = on_event(&b, &ev, &done);
        yaml_event_delete(&ev);
        if (st != BW_OK)
            break;
    }
    yaml_parser_delete(&parser);
    if (st != BW_OK)
        return st;
    *ret_has_root = b.has_root;
    if (b.has_root)
        *ret_root = b.root;
    return BW_OK;
}

void bw__ynode_text_pos(const struct bw__ynode *n, const char *file_text, size_t file_len,
                        uint32_t *line, uint32_t *col, uint32_t *cont_col)
{
    *line = n->line;
    *col = n->col;
    *cont_col = 1;
    if (n->kind != BW__YNODE_SCALAR || n->plain)
        return;
    if (!n->block) {
        *col = n->col + 1; /* past the opening quote */
        return;
    }
    /* The block's content starts on the line after the indicator, at the
     * indentation of its first non-empty line. */
    size_t off = 0;
    uint32_t ln = 1;
    while (off < file_len && ln < n->line + 1) {
        if (file_text[off] == '\n')
            ln++;
        off++;
    }
    for (;;) {
        uint32_t indent = 0;
        while (off + indent < file_len && file_text[off + indent] == ' ')
            indent++;
        if (off + indent < file_len && file_text[off + indent] == '\n') {
            off += indent + 1; /* an empty line: the content starts later */
            ln++;
            continue;
        }
        *line = ln;
        *col = indent + 1;
        *cont_col = indent + 1;
        return;
    }
}
