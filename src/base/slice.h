/* Length-carrying byte views. Everything read from the network or a file is
 * handled through these: nothing on input relies on NUL termination. A slice
 * never owns its bytes; its lifetime is that of the buffer it points into. */
#ifndef BW_BASE_SLICE_H
#define BW_BASE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct bw_slice {
    const char *ptr;
    size_t len;
} bw_slice;

#define BW_SLICE_LIT(s) ((bw_slice){.ptr = (s), .len = sizeof(s) - 1})
#define BW_SLICE_EMPTY ((bw_slice){.ptr = "", .len = 0})

static inline bw_slice bw_slice_make(const char *p, size_t len)
{
    return (bw_slice){.ptr = p, .len = len};
}

static inline bool bw_slice_eq(bw_slice a, bw_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline char bw_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* bw_ascii_lower of each of the eight bytes of x (bytes over 0x7f are left
 * as they are): a byte is a capital when its low seven bits are in A..Z and
 * its high bit is clear; 0x80 >> 2 is the 0x20 that lowers it. */
static inline uint64_t bw_ascii_lower64(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80u;
    uint64_t low7 = x & ~highs;
    uint64_t ge_a = low7 + ones * (0x80u - 'A');
    uint64_t gt_z = low7 + ones * (0x80u - 'Z' - 1u);
    return x | ((ge_a & ~gt_z & ~x & highs) >> 2);
}

static inline char bw_ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - ('a' - 'A')) : c;
}

/* bw_ascii_upper of each of the eight bytes of x, as bw_ascii_lower64 does
 * for lower case. */
static inline uint64_t bw_ascii_upper64(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80u;
    uint64_t low7 = x & ~highs;
    uint64_t ge_a = low7 + ones * (0x80u - 'a');
    uint64_t gt_z = low7 + ones * (0x80u - 'z' - 1u);
    return x & ~((ge_a & ~gt_z & ~x & highs) >> 2);
}

/* The value of a hex digit (either case), or -1. */
static inline int bw_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ASCII case-insensitive comparison: header names and tokens (RFC 9110 §5.1). */
static inline bool bw_slice_eq_nocase(bw_slice a, bw_slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (bw_ascii_lower(a.ptr[i]) != bw_ascii_lower(b.ptr[i]))
            return false;
    return true;
}

static inline bool bw_slice_starts_with(bw_slice s, bw_slice prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

static inline bw_slice bw_slice_sub(bw_slice s, size_t off, size_t len)
{
    return (bw_slice){.ptr = s.ptr + off, .len = len};
}

/* Optional whitespace (SP / HTAB, RFC 9110 §5.6.3) trimmed on both ends. */
static inline bw_slice bw_slice_trim_ows(bw_slice s)
{
    while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

#endif
