/* Fixed-size I/O buffers from per-worker free lists. A connection holds a
 * buffer only while it has bytes to hold and gives it back when idle, so an
 * idle keepalive connection costs its small struct and nothing more.
 *
 * Two size classes: small buffers serve almost every request; a head that
 * outgrows one moves to a large buffer (sized for the configured header
 * limit). Not thread-safe: each worker owns its pools. */
#ifndef BW_BASE_BUF_H
#define BW_BASE_BUF_H

#include <stddef.h>
#include <string.h>

struct bw_buf {
    struct bw_buf *next_free;
    size_t cap;   /* bytes in data[] */
    size_t start; /* first unconsumed byte */
    size_t end;   /* one past the last byte held */
    char data[];
};

struct bw_buf_pool {
    struct bw_buf *free;
    size_t buf_size;
    size_t nfree;
    size_t max_free;  /* free buffers kept for reuse; the rest go back to malloc */
    size_t allocated; /* buffers currently handed out, for tests and metrics */
};

void bw_buf_pool_init(struct bw_buf_pool *p, size_t buf_size, size_t max_free);
void bw_buf_pool_done(struct bw_buf_pool *p);

/* An empty buffer, or NULL when out of memory. */
struct bw_buf *bw_buf_get(struct bw_buf_pool *p);
/* Returns b to its pool; NULL is fine. Always returns NULL. */
struct bw_buf *bw_buf_put(struct bw_buf_pool *p, struct bw_buf *b);

static inline size_t bw_buf_len(const struct bw_buf *b)
{
    return b->end - b->start;
}
static inline size_t bw_buf_room(const struct bw_buf *b)
{
    return b->cap - b->end;
}
static inline char *bw_buf_head(struct bw_buf *b)
{
    return b->data + b->start;
}
static inline char *bw_buf_tail(struct bw_buf *b)
{
    return b->data + b->end;
}

static inline void bw_buf_consume(struct bw_buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

/* Moves the held bytes to the front to make room at the tail. */
static inline void bw_buf_compact(struct bw_buf *b)
{
    if (b->start == 0)
        return;
    size_t n = b->end - b->start;
    memmove(b->data, b->data + b->start, n);
    b->start = 0;
    b->end = n;
}

#endif
