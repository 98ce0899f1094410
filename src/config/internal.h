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
    char msg[200];
};

/* Parses YAML text into a tree allocated in `a`. An empty stream (only
 * comments or nothing) gives BW_OK with *ret_has_root false. */
bw_status bw__yaml_tree(bw_arena *a, const char *text, size_t len, bool *ret_has_root,
                        struct bw__ynode **ret_root, struct bw__yerr *err) BW_MUST_CHECK;

/* A plain scalar that YAML reads as null: empty, "~" or null/Null/NULL. */
bool bw__ynode_is_null(const struct bw__ynode *n);

/* Where a scalar's text starts in its file, for error positions inside it
 * (rules expressions): after the quote of a quoted scalar; on the next line,
 * at the block's indentation, for | and > scalars (then only lines and
 * columns of the first line are exact when the block is folded). */
void bw__ynode_text_pos(const struct bw__ynode *n, const char *file_text, size_t file_len,
                        uint32_t *line, uint32_t *col, uint32_t *cont_col);

/* After a failed parse: true when the text does not end with a newline and
 * some diagnostic is on its last line (a file cut short that still parses
 * as YAML), with the position just past its last character for a note. */
bool bw__truncation_hint(const char *text, size_t len, const struct bw_config_diags *d,
                         uint32_t *ret_line, uint32_t *ret_col);

#endif
