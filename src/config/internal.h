/* Shared between the files of src/config only; nothing outside includes it.
 *
 * yaml_tree.c turns YAML text into a small tree of nodes (scalars, mappings,
 * lists) with their 1-based positions, refusing what bulwark does not accept
 * from YAML (aliases, anchors, tags, several documents, deep nesting).
 * load.c walks that tree against the schema; match.c parses a route's match
 * expression. */
#ifndef BW_CONFIG_INTERNAL_H
#define BW_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "config/config.h"
#include "config/file.h"

/* Bytes of tree the YAML of one config may build; with BW_CONFIG_MAX_NODES
 * this bounds the memory a hostile 4 MiB file can make the loader use. */
#define BW__YAML_ARENA_CAP ((size_t)128 * 1024 * 1024)

enum bw__ynode_kind { BW__YNODE_SCALAR, BW__YNODE_MAP, BW__YNODE_SEQ, BW__YNODE__COUNT };

struct bw__ynode {
    enum bw__ynode_kind kind;
    uint32_t line, col; /* 1-based start of the node */
    bool plain;         /* scalar written without quotes */
    bool block;         /* scalar written as a block (| or >): text starts on the next line */
    bool is_dup;        /* a mapping key equal to an earlier key of the same mapping */
    uint32_t dup_line;  /* when is_dup: line of the first one */
    bw_slice text;      /* scalar: its value (may hold NUL from "\0" escapes) */
    /* Children in order; for a mapping: key, value, key, value, ... */
    struct bw__ynode *child;
    struct bw__ynode *last; /* last child, while building */
    struct bw__ynode *next;
    size_t n;
};

/* The one error that stops the YAML stage. line/col 0 = whole file. */
struct bw__yerr {
    uint32_t line, col;
    char msg[512];
};

/* Parses YAML text into a tree allocated in `a`. An empty stream (only
 * comments or nothing) gives BW_OK with *ret_has_root false. */
bw_status bw__yaml_tree(bw_arena *a, const char *text, size_t len, bool *ret_has_root,
                        struct bw__ynode **ret_root, struct bw__yerr *err) BW_MUST_CHECK;

/* A plain scalar that YAML reads as null: empty, "~" or null/Null/NULL. */
bool bw__ynode_is_null(const struct bw__ynode *n);

/* A YAML file's text, to find where a scalar's bytes are in it. Lines are
 * found with a cursor: cheap when asked in file order, as a walk of the
 * tree asks. */
struct bw__ysrc {
    const char *text; /* without a UTF-8 byte-order mark, as bw__yaml_tree reads it */
    size_t len;
    uint32_t cur_line;
    size_t cur_off; /* where cur_line starts */
};

void bw__ysrc_init(struct bw__ysrc *s, const char *text, size_t len);

/* Where a scalar's value starts in the file, as well as can be told without
 * replaying it: after the quote of a quoted scalar; on the first content
 * line, at the block's indentation, for | and > (cont_col: that
 * indentation + 1, else 1). Columns count bytes. */
void bw__ynode_text_pos(struct bw__ysrc *s, const struct bw__ynode *n, uint32_t *line,
                        uint32_t *col, uint32_t *cont_col);

/* Where byte `off` of scalar n's value (off == its length: just past the
 * end) is in the file: 1-based line, and column in bytes (as the rules front
 * end counts them), for any scalar style: plain and quoted ones folded over
 * several lines, escapes ("\"", "\t", '') and | and > blocks. Rules errors
 * point at the token in the file with it. False, with bw__ynode_text_pos's
 * line and col, when the value cannot be traced back to the text (a
 * construct the replay does not know, such as an explicit block
 * indentation). */
bool bw__ynode_value_pos(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, uint32_t *line,
                         uint32_t *col);

/* The same place as a byte offset in s->text (bw__ynode_value_pos's line
 * and column come from it). False when it cannot be told. */
bool bw__ynode_value_off(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, size_t *ret);

/* The excerpt lines under an error in scalar n's expression at [off,
 * off + len) of its value: the file's own line, the caret under the bytes
 * that spell the span (quotes, escapes and folding as written). False when
 * the value cannot be traced back to the text. */
bool bw__ynode_excerpt(struct bw__ysrc *s, const struct bw__ynode *n, size_t off, size_t len,
                       char *out, size_t cap);

/* After a failed parse: true when the text does not end with a newline and
 * a diagnostic is at its very end, on a token the end of the file cuts (a
 * file cut short that still parses as YAML), with the position just past
 * its last character for a note and which diagnostic (d->items index) it
 * would explain. */
bool bw__truncation_hint(const char *text, size_t len, const struct bw_config_diags *d,
                         uint32_t *ret_line, uint32_t *ret_col, size_t *ret_which);

/* The note bw__truncation_hint calls for, as the last diagnostic of d. */
void bw__truncation_note(struct bw_config_diags *d, uint32_t line, uint32_t col, size_t which);

#endif
