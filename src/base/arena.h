/* Region allocator: many small allocations freed at once. A config snapshot
 * lives in one arena; a request gets one with a hard cap so that no input can
 * make a request allocate without bound. Allocation failure (out of memory or
 * over the cap) returns NULL and is always checked by the caller. */
#ifndef BW_BASE_ARENA_H
#define BW_BASE_ARENA_H

#include <stddef.h>

#include "base/slice.h"

struct bw_arena_block;

typedef struct bw_arena {
    struct bw_arena_block *head;
    size_t block_size; /* bytes per block, beyond which big objects get their own */
    size_t cap;        /* total bytes this arena may hold; 0 = unbounded */
    size_t used;       /* bytes handed out plus block overhead */
} bw_arena;

void bw_arena_init(bw_arena *a, size_t block_size, size_t cap);
/* Frees every block; the arena can be reused afterwards. */
void bw_arena_reset(bw_arena *a);
/* Forgets every allocation but keeps one regular block for the next user:
 * a per-request arena reused request after request costs no malloc/free
 * when a request fits in one block. */
void bw_arena_clear(bw_arena *a);

/* 16-byte aligned, zeroed memory; NULL when over the cap or out of memory. */
void *bw_arena_alloc(bw_arena *a, size_t n);
/* Copy of s, NUL-terminated for convenience at the boundary to libc. */
char *bw_arena_strndup(bw_arena *a, const char *s, size_t n);
/* Copy of a slice into the arena; .ptr NULL on failure. */
bw_slice bw_arena_slice_dup(bw_arena *a, bw_slice s);

#endif
