#include "base/buf.h"

#include <stdlib.h>

void bw_buf_pool_init(struct bw_buf_pool *p, size_t buf_size, size_t max_free)
{
    p->free = NULL;
    p->buf_size = buf_size;
    p->nfree = 0;
    p->max_free = max_free;
    p->allocated = 0;
}

void bw_buf_pool_done(struct bw_buf_pool *p)
{
    while (p->free) {
        struct bw_buf *b = p->free;
        p->free = b->next_free;
        free(b);
    }
    p->nfree = 0;
}

struct bw_buf *bw_buf_get(struct bw_buf_pool *p)
{
    struct bw_buf *b = p->free;
    if (b) {
        p->free = b->next_free;
        p->nfree--;
    } else {
        b = malloc(sizeof *b + p->buf_size);
        if (!b)
            return NULL;
        b->cap = p->buf_size;
    }
    b->next_free = NULL;
    b->start = b->end = 0;
    p->allocated++;
    return b;
}

struct bw_buf *bw_buf_put(struct bw_buf_pool *p, struct bw_buf *b)
{
    if (!b)
        return NULL;
    p->allocated--;
    if (p->nfree >= p->max_free) {
        free(b);
        return NULL;
    }
    b->next_free = p->free;
    p->free = b;
    p->nfree++;
    return NULL;
}
