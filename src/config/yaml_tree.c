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

#include "base/slice.h"
#include "config/internal.h"
#include "rules/rules.h"

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

/* Characters in valid UTF-8 text: libyaml's marks count characters. */
static size_t count_chars(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            n++;
    return n;
}

BW_PRINTF(5, 6)
static bw_status fail_off(struct bw__yerr *err, const char *text, size_t len, size_t off,
                          const char *fmt, ...)
{
    offset_to_pos(text, len, off, &err->line, &err->col);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return BW_ERR;
}

/* A file in another Unicode encoding, told by its byte-order mark or, for
 * UTF-16 without one, by ASCII text with a NUL byte after (LE) or before
 * (BE) every character. */
static bw_status check_not_utf16(const char *text, size_t len, struct bw__yerr *err)
{
    const unsigned char *u = (const unsigned char *)text;
    if (len >= 4 && ((u[0] == 0xFF && u[1] == 0xFE && u[2] == 0 && u[3] == 0) ||
                     (u[0] == 0 && u[1] == 0 && u[2] == 0xFE && u[3] == 0xFF)))
        return fail_at(err, 1, 1,
                       "the file is UTF-32 (it starts with a UTF-32 byte-order mark); "
                       "save it as UTF-8");
    if (len >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF)))
        return fail_at(err, 1, 1,
                       "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it "
                       "as UTF-8");
    if (len >= 4 && ((u[0] && u[0] < 0x80 && !u[1] && u[2] && u[2] < 0x80 && !u[3]) ||
                     (!u[0] && u[1] && u[1] < 0x80 && !u[2] && u[3] && u[3] < 0x80)))
        return fail_at(err, 1, 1,
                       "the file looks like UTF-16 (a NUL byte next to every character); save "
                       "it as UTF-8");
    return BW_OK;
}

/* One UTF-8 sequence at text[i]: its code point and length, or BW_ERR with
 * the error set at its first byte. */
static bw_status decode_utf8(const char *text, size_t len, size_t i, uint32_t *ret_cp,
                             size_t *ret_n, struct bw__yerr *err)
{
    const unsigned char *u = (const unsigned char *)text;
    unsigned char b = u[i];
    size_t n;
    uint32_t cp, min;
    if (b < 0x80) {
        *ret_cp = b;
        *ret_n = 1;
        return BW_OK;
    } else if (b >= 0xC2 && b <= 0xDF) {
        n = 2, cp = b & 0x1Fu, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3, cp = b & 0x0Fu, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4, cp = b & 0x07u, min = 0x10000;
    } else if (b >= 0x80 && b <= 0xBF) {
        return fail_off(err, text, len, i,
                        "not valid UTF-8: byte 0x%02X cannot start a character (Latin-1 or "
                        "Windows-1252 text?); save the file as UTF-8",
                        b);
    } else {
        return fail_off(err, text, len, i,
                        "not valid UTF-8: byte 0x%02X never appears in UTF-8 (Latin-1 or "
                        "Windows-1252 text?); save the file as UTF-8",
                        b);
    }
    for (size_t k = 1; k < n; k++) {
        if (i + k >= len)
            return fail_off(err, text, len, i,
                            "truncated: the file ends in the middle of a UTF-8 character (byte "
                            "0x%02X needs %zu more)",
                            b, n - k);
        if ((u[i + k] & 0xC0) != 0x80)
            return fail_off(err, text, len, i,
                            "not valid UTF-8: byte 0x%02X is not followed by the %zu "
                            "continuation bytes it needs (Latin-1 or Windows-1252 text?); save "
                            "the file as UTF-8",
                            b, n - 1);
        cp = (cp << 6) | (u[i + k] & 0x3Fu);
    }
    if (cp < min)
        return fail_off(err, text, len, i,
                        "not valid UTF-8: U+%04X written in %zu bytes (an overlong encoding)",
                        (unsigned)cp, n);
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return fail_off(err, text, len, i,
                        "not valid UTF-8: U+%04X is a UTF-16 surrogate, not a character (was "
                        "this converted from UTF-16 by hand?)",
                        (unsigned)cp);
    if (cp > 0x10FFFF)
        return fail_off(err, text, len, i, "not valid UTF-8: U+%X is past the last character",
                        (unsigned)cp);
    *ret_cp = cp;
    *ret_n = n;
    return BW_OK;
}

/* Everything libyaml's reader would refuse, with a sentence saying what and
 * where: another encoding, a NUL byte (checked over the whole file first:
 * it is what a binary file looks like), bytes that are not UTF-8, and the
 * control characters YAML does not allow (YAML 1.1 c-printable). */
static bw_status check_text(const char *text, size_t len, struct bw__yerr *err)
{
    if (check_not_utf16(text, len, err) != BW_OK)
        return BW_ERR;
    const char *nul = memchr(text, '\0', len);
    if (nul)
        return fail_off(err, text, len, (size_t)(nul - text),
                        "contains a NUL byte: YAML must be text (a binary or corrupted file?)");
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = 1;
        if (decode_utf8(text, len, i, &cp, &n, err) != BW_OK)
            return BW_ERR;
        bool ok = cp == 0x09 || cp == 0x0A || cp == 0x0D || (cp >= 0x20 && cp <= 0x7E) ||
                  cp == 0x85 || (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
                  cp >= 0x10000;
        if (!ok)
            return fail_off(err, text, len, i,
                            "contains the %s U+%04X, which YAML does not allow (a binary or "
                            "corrupted file?)",
                            cp < 0xA0 ? "control character" : "non-character", (unsigned)cp);
        i += n;
    }
    return BW_OK;
}

/* What the YAML was in when the text ended, from libyaml's context. */
static const char *eof_context(const char *context)
{
    static const struct {
        const char *libyaml, *says;
    } map[] = {
        {"while scanning a quoted scalar", "the quoted string"},
        {"while scanning a simple key", "the key"},
        {"while parsing a flow mapping", "the { } mapping"},
        {"while parsing a flow sequence", "the [ ] list"},
        {"while parsing a block mapping", "the mapping"},
        {"while parsing a block collection", "the list"},
        {"while scanning a block scalar", "the block scalar"},
        {"while scanning a directive", "the directive"},
        {"while scanning a tag", "the tag"},
        {"while scanning an anchor", "the anchor"},
        {"while scanning an alias", "the alias"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(context, map[i].libyaml) == 0)
            return map[i].says;
    return NULL;
}

/* The column (from 1) of the first tab among the leading blanks of line
 * `line` (from 1), or 0. A tab there is the usual cause of a YAML error an
 * editor does not show. */
static uint32_t leading_tab_col(const char *text, size_t len, uint32_t line)
{
    size_t i = 0;
    for (uint32_t l = 1; l < line && i < len; i++)
        if (text[i] == '\n')
            l++;
    for (uint32_t col = 1; i < len && (text[i] == ' ' || text[i] == '\t'); i++, col++)
        if (text[i] == '\t')
            return col;
    return 0;
}

/* libyaml's words for a line indented unlike the lines it belongs with. */
static bool indentation_problem(const char *problem)
{
    static const char *const said[] = {
        "did not find expected key",
        "did not find expected '-' indicator",
        "mapping values are not allowed in this context",
        "block sequence entries are not allowed in this context",
    };
    for (size_t i = 0; i < sizeof said / sizeof said[0]; i++)
        if (strcmp(problem, said[i]) == 0)
            return true;
    return false;
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
        /* check_text refuses all of these first; kept for safety. */
        uint32_t line, col;
        offset_to_pos(text, len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            return fail_at(err, line, col, "not valid UTF-8 text: %s (#%X)", problem,
                           (unsigned)p->problem_value);
        return fail_at(err, line, col, "not valid UTF-8 text: %s", problem);
    }
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
    case YAML_COMPOSER_ERROR:
        /* The text ended while something was open: say so, and what. */
        if (p->problem_mark.index >= count_chars(text, len) && p->context) {
            /* Where the text really ends (libyaml may count a line past it). */
            uint32_t eline, ecol;
            offset_to_pos(text, len, len, &eline, &ecol);
            const char *what = eof_context(p->context);
            if (what && strcmp(what, "the quoted string") == 0)
                return fail_at(err, eline, ecol,
                               "truncated: the file ends inside the quoted string that starts "
                               "at line %u, column %u (or its closing quote is missing)",
                               mark_line(p->context_mark), mark_col(p->context_mark));
            if (what)
                return fail_at(err, eline, ecol,
                               "truncated: the file ends inside %s that starts at line %u, "
                               "column %u (%s)",
                               what, mark_line(p->context_mark), mark_col(p->context_mark),
                               problem);
            return fail_at(err, eline, ecol, "truncated: the file ends too early (%s)", problem);
        }
        /* libyaml says "cannot start any token" or "did not find expected
         * key"; the fix is to replace a tab nobody sees. */
        for (uint32_t l = mark_line(p->problem_mark), k = 0; k < 2 && l > 0; k++, l--) {
            uint32_t tab = leading_tab_col(text, len, l);
            if (tab)
                return fail_at(err, l, tab,
                               "invalid YAML: a tab character indents this line; YAML indents "
                               "with spaces only: replace the tab with spaces");
        }
        if (p->context && indentation_problem(problem))
            return fail_at(err, mark_line(p->problem_mark), mark_col(p->problem_mark),
                           "invalid YAML: %s (%s at line %u, column %u): is this line indented "
                           "like the keys or list items it belongs with? Keys of one mapping, "
                           "and items of one list, start in the same column",
                           problem, p->context, mark_line(p->context_mark),
                           mark_col(p->context_mark));
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
    /* A UTF-8 byte-order mark (some editors write one) is not content, and
     * libyaml refuses it when told the encoding: skip it. Positions are then
     * what an editor shows. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    if (check_text(text, len, err) != BW_OK)
        return BW_ERR;
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

/* ---- where a scalar's bytes are in the file ------------------------------------- */

void bw__ysrc_init(struct bw__ysrc *s, const char *text, size_t len)
{
    /* Positions are counted without the byte-order mark, as bw__yaml_tree's. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    *s = (struct bw__ysrc){.text = text, .len = len, .cur_line = 1, .cur_off = 0};
}

/* Byte offset of the start of 1-based line `line` (len past the last). A
 * walk of the tree asks in file order, so the cursor only moves forward. */
static size_t ysrc_line(struct bw__ysrc *s, uint32_t line)
{
    if (line < s->cur_line) {
        s->cur_line = 1;
        s->cur_off = 0;
    }
    while (s->cur_line < line && s->cur_off < s->len) {
        const char *nl = memchr(s->text + s->cur_off, '\n', s->len - s->cur_off);
        s->cur_off = nl ? (size_t)(nl - s->text) + 1 : s->len;
        s->cur_line++;
    }
    return s->cur_off;
}

/* Byte offset of a node's first character: libyaml's column counts
 * characters. */
static size_t node_offset(struct bw__ysrc *s, const struct bw__ynode *n)
{
    size_t off = ysrc_line(s, n->line);
    for (uint32_t c = 1; c < n->col && off < s->len && s->text[off] != '\n'; c++) {
        off++;
        while (off < s->len && ((unsigned char)s->text[off] & 0xC0) == 0x80)
            off++;
    }
    return off;
}

/* Replays how YAML turns a scalar's source into its value, one value byte at
 * a time with the file offset it comes from, checking each byte against the
 * value libyaml produced. Stops at the byte asked for, or as soon as the
 * replay and the value disagree (a construct this replay does not know):
 * then the caller falls back to the scalar's start. */
struct trace {
    const char *t;
    size_t len;
    bw_slice want;
    size_t produced;
    size_t target;
    size_t found;
    bool ok;
};

static bool emit(struct trace *tr, char c, size_t src)
{
    if (tr->produced >= tr->want.len || tr->want.ptr[tr->produced] != c)
        return false;
    if (tr->produced == tr->target) {
        tr->found = src;
        tr->ok = true;
        return false;
    }
    tr->produced++;
    return true;
}

static bool emit_n(struct trace *tr, char c, size_t n, size_t src)
{
    for (size_t i = 0; i < n; i++)
        if (!emit(tr, c, src))
            return false;
    return true;
}

/* Length of the line break at i: 2 for CR LF, 1 for LF or CR, 0 for none. */
static size_t brk(const struct trace *tr, size_t i)
{
    if (i >= tr->len)
        return 0;
    if (tr->t[i] == '\r')
        return i + 1 < tr->len && tr->t[i + 1] == '\n' ? 2 : 1;
    return tr->t[i] == '\n' ? 1 : 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Flow folding at the break at i (YAML 1.2 §6.5, §7.3): the break and the
 * indentation after it go; no empty line gives a space, k empty lines give
 * k newlines. Returns the offset of the next content, or len. */
static size_t fold(struct trace *tr, size_t i, bool *go)
{
    size_t at = i, k = 0;
    i += brk(tr, i);
    for (;;) {
        size_t j = i;
        while (j < tr->len && is_blank(tr->t[j]))
            j++;
        if (brk(tr, j) == 0) {
            *go = k == 0 ? emit(tr, ' ', at) : emit_n(tr, '\n', k, at);
            return j;
        }
        k++;
        i = j + brk(tr, j);
    }
}

/* After blanks at i: whether a line break follows them (then they are
 * trailing, and dropped) and where they end. */
static bool trailing_blanks(const struct trace *tr, size_t i, size_t *end)
{
    size_t j = i;
    while (j < tr->len && is_blank(tr->t[j]))
        j++;
    *end = j;
    return brk(tr, j) > 0;
}

static void trace_plain(struct trace *tr, size_t i)
{
    bool go = true;
    while (go && i < tr->len) {
        char c = tr->t[i];
        size_t end;
        if (brk(tr, i)) {
            i = fold(tr, i, &go);
        } else if (is_blank(c) && trailing_blanks(tr, i, &end)) {
            i = end;
        } else {
            go = emit(tr, c, i);
            i++;
        }
    }
}

static void trace_single(struct trace *tr, size_t i)
{
    bool go = true;
    i++; /* the opening quote */
    while (go && i < tr->len) {
        char c = tr->t[i];
        size_t end;
        if (c == '\'') {
            if (i + 1 >= tr->len || tr->t[i + 1] != '\'')
                return; /* the closing quote */
            go = emit(tr, '\'', i);
            i += 2;
        } else if (brk(tr, i)) {
            i = fold(tr, i, &go);
        } else if (is_blank(c) && trailing_blanks(tr, i, &end)) {
            i = end;
        } else {
            go = emit(tr, c, i);
            i++;
        }
    }
}

/* The bytes of one escape after the backslash at i (YAML 1.2 §5.7); 0 when
 * it is not one this replay knows. *used: source bytes after the backslash. */
static size_t unescape(const struct trace *tr, size_t i, char out[4], size_t *used)
{
    static const char simple_in[] = "0abt\tnvfre \"/\\";
    static const char simple_out[] = "\0\a\b\t\t\n\v\f\r\x1b \"/\\";
    if (i + 1 >= tr->len)
        return 0;
    char e = tr->t[i + 1];
    const char *p = memchr(simple_in, e, sizeof simple_in - 1);
    if (p) {
        out[0] = simple_out[p - simple_in];
        *used = 1;
        return 1;
    }
    uint32_t cp;
    size_t digits;
    switch (e) {
    case 'N':
        cp = 0x85;
        digits = 0;
        break;
    case '_':
        cp = 0xA0;
        digits = 0;
        break;
    case 'L':
        cp = 0x2028;
        digits = 0;
        break;
    case 'P':
        cp = 0x2029;
        digits = 0;
        break;
    case 'x':
        digits = 2;
        cp = 0;
        break;
    case 'u':
        digits = 4;
        cp = 0;
        break;
    case 'U':
        digits = 8;
        cp = 0;
        break;
    default:
        return 0;
    }
    for (size_t d = 0; d < digits; d++) {
        int v = i + 2 + d < tr->len ? bw_hex_value(tr->t[i + 2 + d]) : -1;
        if (v < 0)
            return 0;
        cp = cp << 4 | (uint32_t)v;
    }
    *used = 1 + digits;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF)
        return 0;
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static void trace_double(struct trace *tr, size_t i)
{
    bool go = true;
    i++; /* the opening quote */
    while (go && i < tr->len) {
        char c = tr->t[i];
        size_t end;
        if (c == '"')
            return;
        if (c == '\\' && brk(tr, i + 1)) {
            /* An escaped line break: it and the next line's indentation go;
             * empty lines after it are kept, one newline each. */
            size_t at = i;
            i += 1 + brk(tr, i + 1);
            for (;;) {
                size_t j = i;
                while (j < tr->len && is_blank(tr->t[j]))
                    j++;
                i = j;
                if (!brk(tr, j))
                    break;
                go = emit(tr, '\n', at);
                if (!go)
                    return;
                i = j + brk(tr, j);
            }
        } else if (c == '\\') {
            char out[4];
            size_t used;
            size_t n = unescape(tr, i, out, &used);
            if (n == 0)
                return;
            for (size_t k = 0; k < n && go; k++)
                go = emit(tr, out[k], i);
            i += 1 + used;
        } else if (brk(tr, i)) {
            i = fold(tr, i, &go);
        } else if (is_blank(c) && trailing_blanks(tr, i, &end)) {
            i = end;
        } else {
            go = emit(tr, c, i);
            i++;
        }
    }
}

/* | and > (YAML 1.2 §8.1): the header line, then the content lines. Their
 * indentation is that of the first one holding more than spaces, less the
 * spaces the value keeps at its start: right also with an explicit
 * indentation indicator (|2), which the header alone cannot tell. */
static void trace_block(struct trace *tr, size_t i, bool folded)
{
    while (i < tr->len && !brk(tr, i))
        i++;
    i += brk(tr, i);
    size_t first_sp = 0;
    for (size_t j = i;;) {
        size_t sp = 0;
        while (j + sp < tr->len && tr->t[j + sp] == ' ')
            sp++;
        if (j + sp >= tr->len)
            return;
        if (!brk(tr, j + sp)) {
            first_sp = sp;
            break;
        }
        j += sp + brk(tr, j + sp);
    }
    size_t v = 0, kept = 0;
    while (v < tr->want.len && tr->want.ptr[v] == '\n')
        v++;
    while (v + kept < tr->want.len && tr->want.ptr[v + kept] == ' ')
        kept++;
    if (kept >= first_sp)
        return;
    size_t indent = first_sp - kept;
    bool go = true, first = true, prev_more = false;
    size_t empties = 0, prev_eol = i;
    while (go && i < tr->len) {
        size_t sp = 0;
        while (i + sp < tr->len && tr->t[i + sp] == ' ' && sp < indent)
            sp++;
        size_t eol = i + sp;
        while (eol < tr->len && !brk(tr, eol))
            eol++;
        if (sp < indent && eol > i + sp)
            return;          /* less indented: the scalar has ended */
        if (eol == i + sp) { /* an empty line */
            if (!folded)
                go = emit(tr, '\n', i + sp);
            else
                empties++;
            i = eol + brk(tr, eol);
            if (eol >= tr->len)
                return;
            continue;
        }
        size_t c0 = i + indent;
        if (folded) {
            bool more = is_blank(tr->t[c0]);
            if (first)
                go = emit_n(tr, '\n', empties, c0);
            else if (!prev_more && !more)
                go = empties == 0 ? emit(tr, ' ', prev_eol) : emit_n(tr, '\n', empties, prev_eol);
            else
                go = emit_n(tr, '\n', empties + 1, prev_eol);
            prev_more = more;
            empties = 0;
        }
        first = false;
        for (size_t k = c0; go && k < eol; k++)
            go = emit(tr, tr->t[k], k);
        if (go && !folded)
            go = emit(tr, '\n', eol);
        prev_eol = eol;
        if (eol >= tr->len)
            return;
        i = eol + brk(tr, eol);
    }
}

void bw__ynode_text_pos(struct bw__ysrc *s, const struct bw__ynode *n, uint32_t *line,
                        uint32_t *col, uint32_t *cont_col)
{
    size_t start = node_offset(s, n);
    size_t ls = ysrc_line(s, n->line);
    *line = n->line;
    *col = (uint32_t)(start - ls + 1);
    *cont_col = 1;
    if (n->kind != BW__YNODE_SCALAR || n->plain || start >= s->len)
        return;
    if (!n->block) {
        *col += 1; /* past the opening quote */
        return;
    }
    /* The block's content starts on the line after the indicator, at the
     * indentation of its first line that holds more than spaces. */
    size_t i = start;
    uint32_t ln = n->line;
    for (;;) {
        while (i < s->len && s->text[i] != '\n')
            i++;
        if (i >= s->len)
            return;
        i++;
        ln++;
        size_t ind = 0;
        while (i + ind < s->len && s->text[i + ind] == ' ')
            ind++;
        if (i + ind < s->len && s->text[i + ind] != '\n' && s->text[i + ind] != '\r') {
            *line = ln;
            *col = (uint32_t)ind + 1;
            *cont_col = *col;
            return;
        }
    }
}

bool bw__ynode_value_off(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, size_t *ret)
{
    size_t start = node_offset(s, n);
    if (n->kind != BW__YNODE_SCALAR || start >= s->len || n->text.len == 0)
        return false;
    /* Past the end (an error "at the end of the expression"): just after the
     * last byte that is not white space (a block's final newline is not
     * where the expression ends for its reader). */
    bool past = off >= n->text.len;
    size_t target = off;
    if (past) {
        target = n->text.len;
        while (target > 0 && (n->text.ptr[target - 1] == '\n' || n->text.ptr[target - 1] == ' ' ||
                              n->text.ptr[target - 1] == '\t' || n->text.ptr[target - 1] == '\r'))
            target--;
        if (target == 0)
            return false;
        target--;
    }
    struct trace tr = {.t = s->text, .len = s->len, .want = n->text, .target = target};
    char c = s->text[start];
    if (n->block)
        trace_block(&tr, start, c == '>');
    else if (n->plain)
        trace_plain(&tr, start);
    else if (c == '\'')
        trace_single(&tr, start);
    else if (c == '"')
        trace_double(&tr, start);
    if (!tr.ok)
        return false;
    *ret = tr.found + (past ? 1 : 0);
    return true;
}

bool bw__ynode_excerpt(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, size_t len,
                       char *out, size_t cap)
{
    size_t start, end;
    if (!bw__ynode_value_off(s, n, off, &start))
        return false;
    /* The end is where the byte after the span is: the span's last byte
     * may be spelled with several (an escape). */
    if (len == 0 || !bw__ynode_value_off(s, n, off + len, &end) || end < start)
        end = start;
    bw_rules_excerpt(bw_slice_make(s->text, s->len), start, end, out, cap);
    return true;
}

bool bw__ynode_value_pos(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, uint32_t *line,
                         uint32_t *col)
{
    uint32_t cont;
    bw__ynode_text_pos(s, n, line, col, &cont);
    size_t at;
    if (!bw__ynode_value_off(s, n, off, &at))
        return false;
    size_t ls = ysrc_line(s, n->line);
    uint32_t ln = n->line;
    size_t lstart = ls;
    for (size_t i = ls; i < at && i < s->len; i++)
        if (s->text[i] == '\n') {
            ln++;
            lstart = i + 1;
        }
    *line = ln;
    *col = (uint32_t)(at - lstart + 1);
    return true;
}
