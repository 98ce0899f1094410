#include "base/arena.h"
#include "test.h"

TEST(arena_alloc_is_zeroed_and_aligned)
{
    bw_arena a;
    bw_arena_init(&a, 256, 0);
    for (int i = 0; i < 100; i++) {
        unsigned char *p = bw_arena_alloc(&a, (size_t)i + 1);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 15u) == 0);
        for (int j = 0; j <= i; j++)
            CHECK(p[j] == 0);
        memset(p, 0xAB, (size_t)i + 1);
    }
    bw_arena_reset(&a);
}

TEST(arena_big_object_gets_own_block)
{
    bw_arena a;
    bw_arena_init(&a, 128, 0);
    char *small = bw_arena_alloc(&a, 16);
    char *big = bw_arena_alloc(&a, 10000);
    char *small2 = bw_arena_alloc(&a, 16);
    CHECK(small && big && small2);
    /* The small allocations share the first block despite the big one. */
    CHECK(small2 == small + 16);
    bw_arena_reset(&a);
}

TEST(arena_cap_refuses_past_limit)
{
    bw_arena a;
    bw_arena_init(&a, 1024, 4096);
    int got = 0;
    while (bw_arena_alloc(&a, 512) != NULL && got < 100)
        got++;
    CHECK(got > 0);
    CHECK(got < 8); /* 4096 bytes including block overhead */
    CHECK(a.used <= 4096);
    bw_arena_reset(&a);
    CHECK(bw_arena_alloc(&a, 512) != NULL); /* usable again after reset */
    bw_arena_reset(&a);
}

TEST(arena_clear_keeps_one_block_and_the_cap)
{
    bw_arena a;
    bw_arena_init(&a, 256, 1024);
    char *p1 = bw_arena_alloc(&a, 100);
    CHECK(p1 != NULL);
    p1[0] = 'x';
    CHECK(bw_arena_alloc(&a, 600) != NULL); /* its own block */
    bw_arena_clear(&a);
    /* The regular block is reused from its start, zeroed for the caller. */
    char *p2 = bw_arena_alloc(&a, 100);
    CHECK(p2 == p1);
    CHECK(p2[0] == 0);
    /* The cap still counts the kept block: 1024 holds it and one more. */
    int got = 0;
    while (bw_arena_alloc(&a, 200) != NULL && got < 100)
        got++;
    CHECK(got > 0 && got < 6);
    CHECK(a.used <= 1024);
    bw_arena_reset(&a);
    bw_arena_clear(&a); /* an empty arena stays empty */
    CHECK(a.head == NULL && a.used == 0);
}

TEST(arena_strndup_copies_and_terminates)
{
    bw_arena a;
    bw_arena_init(&a, 64, 0);
    const char src[] = {'a', 'b', 'c', 'd'};
    char *s = bw_arena_strndup(&a, src, 3);
    CHECK_STR_EQ(s, "abc");
    bw_slice sl = bw_arena_slice_dup(&a, bw_slice_make(src, 4));
    CHECK_SLICE_EQ(sl, "abcd");
    CHECK(sl.ptr != src);
    bw_arena_reset(&a);
}

TEST(slice_helpers)
{
    CHECK(bw_slice_eq_nocase(BW_SLICE_LIT("Content-Length"), BW_SLICE_LIT("content-length")));
    CHECK(!bw_slice_eq_nocase(BW_SLICE_LIT("Content-Length"), BW_SLICE_LIT("content-lengtx")));
    CHECK(bw_slice_starts_with(BW_SLICE_LIT("/api/x"), BW_SLICE_LIT("/api/")));
    CHECK(!bw_slice_starts_with(BW_SLICE_LIT("/ap"), BW_SLICE_LIT("/api/")));
    CHECK_SLICE_EQ(bw_slice_trim_ows(BW_SLICE_LIT(" \t x y \t")), "x y");
    CHECK_SLICE_EQ(bw_slice_trim_ows(BW_SLICE_LIT(" \t ")), "");
}

int main(void)
{
    RUN(arena_alloc_is_zeroed_and_aligned);
    RUN(arena_big_object_gets_own_block);
    RUN(arena_cap_refuses_past_limit);
    RUN(arena_clear_keeps_one_block_and_the_cap);
    RUN(arena_strndup_copies_and_terminates);
    RUN(slice_helpers);
    return t_done();
}
