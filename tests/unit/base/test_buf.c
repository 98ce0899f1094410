/* I/O buffer pools (src/base/buf.c): reuse through the free list, the
 * max_free bound, and consume/compact. Leaks show under ASan. */
#include <stdlib.h>

#include "base/buf.h"
#include "base/slice.h"
#include "test.h"

TEST(get_gives_empty_buffer_of_pool_size)
{
    struct bw_buf_pool p;
    bw_buf_pool_init(&p, 4096, 4);
    struct bw_buf *b = bw_buf_get(&p);
    CHECK(b != NULL);
    CHECK_INT_EQ(b->cap, 4096);
    CHECK_INT_EQ(bw_buf_len(b), 0);
    CHECK_INT_EQ(bw_buf_room(b), 4096);
    CHECK_INT_EQ(p.allocated, 1);
    memset(b->data, 'x', b->cap); /* all of it is usable */
    CHECK(bw_buf_put(&p, b) == NULL);
    CHECK_INT_EQ(p.allocated, 0);
    bw_buf_pool_done(&p);
}

TEST(put_then_get_reuses_and_resets)
{
    struct bw_buf_pool p;
    bw_buf_pool_init(&p, 256, 4);
    struct bw_buf *a = bw_buf_get(&p);
    memcpy(bw_buf_tail(a), "hello", 5);
    a->end += 5;
    bw_buf_consume(a, 2);
    bw_buf_put(&p, a);
    CHECK_INT_EQ(p.nfree, 1);
    struct bw_buf *b = bw_buf_get(&p);
    CHECK(b == a); /* most recently returned first: warm in cache */
    CHECK_INT_EQ(p.nfree, 0);
    CHECK_INT_EQ(b->start, 0);
    CHECK_INT_EQ(b->end, 0);
    CHECK_INT_EQ(b->cap, 256);
    CHECK(b->next_free == NULL);
    bw_buf_put(&p, b);
    bw_buf_pool_done(&p);
    CHECK_INT_EQ(p.nfree, 0);
}

TEST(max_free_honoured)
{
    struct bw_buf_pool p;
    bw_buf_pool_init(&p, 64, 2);
    struct bw_buf *b[5];
    for (int i = 0; i < 5; i++)
        b[i] = bw_buf_get(&p);
    CHECK_INT_EQ(p.allocated, 5);
    for (int i = 0; i < 5; i++)
        bw_buf_put(&p, b[i]);
    CHECK_INT_EQ(p.nfree, 2);
    CHECK_INT_EQ(p.allocated, 0);
    /* The two kept are handed out again before anything new is malloced. */
    struct bw_buf *x = bw_buf_get(&p), *y = bw_buf_get(&p);
    CHECK((x == b[0] && y == b[1]) || (x == b[1] && y == b[0]));
    CHECK_INT_EQ(p.nfree, 0);
    bw_buf_put(&p, x);
    bw_buf_put(&p, y);
    bw_buf_pool_done(&p);

    /* max_free 0: nothing is kept. */
    bw_buf_pool_init(&p, 64, 0);
    bw_buf_put(&p, bw_buf_get(&p));
    CHECK_INT_EQ(p.nfree, 0);
    CHECK(p.free == NULL);
    bw_buf_pool_done(&p);
}

TEST(put_null_is_fine)
{
    struct bw_buf_pool p;
    bw_buf_pool_init(&p, 64, 2);
    CHECK(bw_buf_put(&p, NULL) == NULL);
    CHECK_INT_EQ(p.allocated, 0);
    CHECK_INT_EQ(p.nfree, 0);
    bw_buf_pool_done(&p);
}

TEST(consume_and_compact)
{
    struct bw_buf_pool p;
    bw_buf_pool_init(&p, 16, 1);
    struct bw_buf *b = bw_buf_get(&p);
    memcpy(bw_buf_tail(b), "0123456789", 10);
    b->end += 10;
    bw_buf_consume(b, 4);
    CHECK_INT_EQ(bw_buf_len(b), 6);
    CHECK_SLICE_EQ(bw_slice_make(bw_buf_head(b), bw_buf_len(b)), "456789");
    CHECK_INT_EQ(bw_buf_room(b), 6);
    bw_buf_compact(b);
    CHECK_INT_EQ(b->start, 0);
    CHECK_INT_EQ(bw_buf_len(b), 6);
    CHECK_INT_EQ(bw_buf_room(b), 10);
    CHECK_SLICE_EQ(bw_slice_make(bw_buf_head(b), bw_buf_len(b)), "456789");
    /* Compacting a buffer already at the front changes nothing. */
    bw_buf_compact(b);
    CHECK_SLICE_EQ(bw_slice_make(bw_buf_head(b), bw_buf_len(b)), "456789");
    /* Consuming everything rewinds, so the whole buffer is room again. */
    bw_buf_consume(b, 6);
    CHECK_INT_EQ(b->start, 0);
    CHECK_INT_EQ(b->end, 0);
    CHECK_INT_EQ(bw_buf_room(b), 16);
    /* Overlapping move: more held than was consumed. */
    memcpy(bw_buf_tail(b), "abcdefghijklmnop", 16);
    b->end = 16;
    bw_buf_consume(b, 1);
    bw_buf_compact(b);
    CHECK_SLICE_EQ(bw_slice_make(bw_buf_head(b), bw_buf_len(b)), "bcdefghijklmnop");
    bw_buf_put(&p, b);
    bw_buf_pool_done(&p);
}

int main(void)
{
    RUN(get_gives_empty_buffer_of_pool_size);
    RUN(put_then_get_reuses_and_resets);
    RUN(max_free_honoured);
    RUN(put_null_is_fine);
    RUN(consume_and_compact);
    return t_done();
}
