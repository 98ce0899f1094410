/* Public API of the rules-language front end: text in, typed AST out, or a
 * precise error. Pure: no I/O, all memory from the caller's arena.
 *
 *   struct bw_rules_srcpos where = {.file = BW_SLICE_LIT("rules/entry.yaml"),
 *                                   .line = 5, .col = 17, .cont_col = 1};
 *   struct bw_rules_expr *e;
 *   struct bw_rules_diag d;
 *   if (bw_rules_parse(&arena, text, BW_RULES_PHASE_REQUEST, &where, &e, &d) != BW_OK)
 *       report(d.text);   // "rules/entry.yaml:5:24: error: ...\n    <line>\n    ^~~~\n"
 *
 * The first error stops parsing (one precise error per expression; a loader
 * collects one per rule). */
#ifndef BW_RULES_RULES_H
#define BW_RULES_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "rules/ast.h"
#include "rules/fields.h"

/* Named limits, each tested at and past the limit. */
enum {
    BW_RULES_MAX_EXPR_LEN = 16 * 1024, /* bytes of expression text */
    BW_RULES_MAX_DEPTH = 64,           /* nesting: parentheses, not, calls */
    BW_RULES_DIAG_MSG_MAX = 256,
    BW_RULES_DIAG_TEXT_MAX = 1024,
};

/* Where the expression text starts in its file (expressions are embedded in
 * YAML). line and col are 1-based; col counts bytes. Lines of the text after
 * its first start at column cont_col (the block-scalar indentation + 1; 1
 * when unknown). */
struct bw_rules_srcpos {
    bw_slice file;
    uint32_t line;
    uint32_t col;
    uint32_t cont_col;
};

/* One error. off/len is the offending token's span in the expression text
 * (off <= text length); line/col its position in the file; msg the sentence
 * alone; text the full rendering:
 *   file:line:col: error: msg
 *       <the expression line holding the error>
 *       ^~~~
 * (four spaces of indent; tabs kept, other control bytes shown as '?'). */
struct bw_rules_diag {
    uint32_t off;
    uint32_t len;
    uint32_t line;
    uint32_t col;
    char msg[BW_RULES_DIAG_MSG_MAX];
    char text[BW_RULES_DIAG_TEXT_MAX];
};

/* A parsed, type-checked expression. root->type is Bool. */
struct bw_rules_expr {
    struct bw_rules_node *root;
    enum bw_rules_phase phase;
    bw_slice text; /* copy of the expression text, in the arena */
};

/* Parses and type-checks text as an expression of the given phase. On
 * success *ret points to an expression allocated in a (which must outlive
 * it); on failure *ret is untouched, diag is filled and the arena may hold
 * partial garbage (free it with the snapshot). */
bw_status bw_rules_parse(bw_arena *a, bw_slice text, enum bw_rules_phase phase,
                         const struct bw_rules_srcpos *where, struct bw_rules_expr **ret,
                         struct bw_rules_diag *diag) BW_MUST_CHECK;

/* The excerpt lines of a diagnostic, "    <line>\n    ^~~~\n", into out
 * (truncated to cap): the line of text holding byte off (at most 100 bytes
 * of it, the caret kept in view), '^' under off and '~' under the rest of
 * [off, end) on that line. Callers that know where an expression sits in
 * its file (YAML, JSON) show the file's own line with it, not the decoded
 * expression: text is then the whole file. */
void bw_rules_excerpt(bw_slice text, size_t off, size_t end, char *out, size_t cap);

/* Writes the AST as an S-expression, e.g.
 *   (or (and (eq http.host "a") ssl) (not (in ip.src {10.0.0.0/8})))
 * for tests and `bulwark eval`. Truncates to cap - 1 bytes; returns the
 * length it would have had. */
size_t bw_rules_format(const struct bw_rules_node *n, char *buf, size_t cap);

#endif
