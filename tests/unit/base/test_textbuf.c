/* The bounded text buffer (src/base/textbuf.c): growth, the ceiling at and
 * past it, failures leaving the content as it was, reset and reuse. */
#include <string.h>

#include "base/textbuf.h"
#include "test.h"

TEST(append_and_grow)
{
    struct bw_textbuf b;
    bw_textbuf_init(&b, 1 << 20);
    CHECK_INT_EQ(b.len, 0);
    CHECK_INT_EQ(bw_textbuf_slice(&b).len, 0);
    for (int i = 0; i < 1000; i++)
        CHECK(bw_textbuf_printf(&b, "%04d,", i) == BW_OK);
    CHECK_INT_EQ(b.len, 5000);
    CHECK(memcmp(b.ptr, "0000,0001,", 10) == 0);
    CHECK(memcmp(b.ptr + 4995, "0999,", 5) == 0);
    CHECK(bw_textbuf_append(&b, NULL, 0) == BW_OK);
    CHECK(bw_textbuf_printf(&b, "%s", "") == BW_OK);
    CHECK_INT_EQ(b.len, 5000);
    bw_textbuf_done(&b);
    CHECK_INT_EQ(b.len, 0);
    CHECK(bw_textbuf_append_str(&b, "again") == BW_OK);
    CHECK_SLICE_EQ(bw_textbuf_slice(&b), "again");
    bw_textbuf_done(&b);
}

TEST(ceiling_at_and_past)
{
    struct bw_textbuf b;
    bw_textbuf_init(&b, 10);
    CHECK(bw_textbuf_append_str(&b, "12345") == BW_OK);
    CHECK(bw_textbuf_append_str(&b, "678901") == BW_ERR);
    CHECK_SLICE_EQ(bw_textbuf_slice(&b), "12345");
    CHECK_INT_EQ(b.fault, BW_TEXTBUF_FAULT_FULL);
    CHECK(bw_textbuf_printf(&b, "%d", 678901) == BW_ERR);
    CHECK_SLICE_EQ(bw_textbuf_slice(&b), "12345");
    /* A later append that fits still works: exactly at the ceiling. */
    CHECK(bw_textbuf_printf(&b, "%d", 67890) == BW_OK);
    CHECK_SLICE_EQ(bw_textbuf_slice(&b), "1234567890");
    CHECK(bw_textbuf_append(&b, "x", 1) == BW_ERR);
    CHECK(b.cap <= 11); /* never allocated past what the ceiling can use */
    bw_error err;
    CHECK(bw_textbuf_error(&b, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "output would exceed its limit of 10 bytes");
    bw_textbuf_reset(&b);
    CHECK_INT_EQ(b.len, 0);
    CHECK_INT_EQ(b.fault, BW_TEXTBUF_FAULT_NONE);
    CHECK(bw_textbuf_error(&b, &err) == BW_ERR);
    CHECK_STR_EQ(err.msg, "internal error: output buffer reported no failure");
    bw_textbuf_done(&b);
}

TEST(zero_ceiling)
{
    struct bw_textbuf b;
    bw_textbuf_init(&b, 0);
    CHECK(bw_textbuf_append_str(&b, "") == BW_OK);
    CHECK(bw_textbuf_append_str(&b, "a") == BW_ERR);
    bw_textbuf_done(&b);
}

int main(void)
{
    RUN(append_and_grow);
    RUN(ceiling_at_and_past);
    RUN(zero_ceiling);
    return t_done();
}
