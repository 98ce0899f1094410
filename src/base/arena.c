#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bw_arena_block {
    struct bw_arena_block *next;
    size_t size;
    size_t off;
    _Alignas(16) unsigned char data[];
};

void bw_arena_init(bw_arena *a, size_t block_size, size_t cap)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 4096;
    a->cap = cap;
    a->used = 0;
}

void bw_arena_reset(bw_arena *a)
{
    struct bw_arena_block *b = a->head;
    while (b) {
        struct bw_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

void bw_arena_clear(bw_arena *a)
{
    struct bw_arena_block *keep = NULL;
    struct bw_arena_block *b = a->head;
    while (b) {
        struct bw_arena_block *next = b->next;
        if (!keep && b->size == a->block_size)
            keep = b;
        else
            free(b);
        b = next;
    }
    a->head = keep;
    a->used = 0;
    if (keep) {
        keep->next = NULL;
        keep->off = 0;
        a->used = keep->size + sizeof *keep;
    }
}

void *bw_arena_alloc(bw_arena *a, size_t n)
{
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need < n)
        return NULL;
    struct bw_arena_block *b = a->head;
    if (!b || b->size - b->off < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        if (size > SIZE_MAX - sizeof *b)
            return NULL;
        if (a->cap && (a->used + size + sizeof *b > a->cap || a->used + size < a->used))
            return NULL;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->size = size;
        b->off = 0;
        /* A big object gets its own block behind the current one, so the
         * free space of the current block is not wasted. */
        if (need > a->block_size && a->head) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
        a->used += size + sizeof *b;
    }
    void *p = b->data + b->off;
    b->off += need;
    memset(p, 0, n);
    return p;
}

char *bw_arena_strndup(bw_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = bw_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

bw_slice bw_arena_slice_dup(bw_arena *a, bw_slice s)
{
    char *p = bw_arena_strndup(a, s.ptr, s.len);
    return (bw_slice){.ptr = p, .len = p ? s.len : 0};
}
