/* The byte helpers of base/slice.h that the parsers and the rules engine
 * share: every byte value, in every lane of a word. */
#include <stdint.h>

#include "base/slice.h"
#include "test.h"

TEST(ascii_lower64_is_ascii_lower_in_each_byte)
{
    for (unsigned b = 0; b < 256; b++)
        for (unsigned lane = 0; lane < 8; lane++) {
            /* b in one lane, its neighbours 'Z'+1 and '@' (just past the
             * capitals on each side), so no carry may leak between lanes */
            unsigned char in[8], want[8], got[8];
            for (unsigned i = 0; i < 8; i++)
                in[i] = i == lane ? (unsigned char)b : (i % 2 ? '[' : '@');
            for (unsigned i = 0; i < 8; i++)
                want[i] = (unsigned char)bw_ascii_lower((char)in[i]);
            uint64_t w;
            memcpy(&w, in, 8);
            w = bw_ascii_lower64(w);
            memcpy(got, &w, 8);
            if (memcmp(got, want, 8) != 0) {
                T_FAILF("byte 0x%02x in lane %u", b, lane);
                return;
            }
        }
}

TEST(ascii_upper64_is_ascii_upper_in_each_byte)
{
    for (unsigned b = 0; b < 256; b++)
        for (unsigned lane = 0; lane < 8; lane++) {
            /* neighbours '{' and '`', just past the small letters */
            unsigned char in[8], want[8], got[8];
            for (unsigned i = 0; i < 8; i++)
                in[i] = i == lane ? (unsigned char)b : (i % 2 ? '{' : '`');
            for (unsigned i = 0; i < 8; i++)
                want[i] = (unsigned char)bw_ascii_upper((char)in[i]);
            uint64_t w;
            memcpy(&w, in, 8);
            w = bw_ascii_upper64(w);
            memcpy(got, &w, 8);
            if (memcmp(got, want, 8) != 0) {
                T_FAILF("byte 0x%02x in lane %u", b, lane);
                return;
            }
        }
}

TEST(ascii_upper_is_the_inverse_of_lower_on_letters_only)
{
    for (unsigned b = 0; b < 256; b++) {
        char c = (char)b;
        bool small = b >= 'a' && b <= 'z';
        CHECK_INT_EQ((unsigned char)bw_ascii_upper(c), small ? b - 32 : b);
        if (small)
            CHECK_INT_EQ((unsigned char)bw_ascii_lower(bw_ascii_upper(c)), b);
    }
}

TEST(hex_value_of_every_byte)
{
    for (unsigned b = 0; b < 256; b++) {
        int want = b >= '0' && b <= '9'   ? (int)(b - '0')
                   : b >= 'a' && b <= 'f' ? (int)(b - 'a' + 10)
                   : b >= 'A' && b <= 'F' ? (int)(b - 'A' + 10)
                                          : -1;
        CHECK_INT_EQ(bw_hex_value((char)b), want);
    }
}

int main(void)
{
    RUN(ascii_lower64_is_ascii_lower_in_each_byte);
    RUN(ascii_upper64_is_ascii_upper_in_each_byte);
    RUN(ascii_upper_is_the_inverse_of_lower_on_letters_only);
    RUN(hex_value_of_every_byte);
    return t_done();
}
