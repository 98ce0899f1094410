/* Shared by the request and response fuzzers: what docs/http.md says an
 * accepted head never holds, written apart from the parser (its own tables
 * are what is being checked), and how an input is fed in pieces. */
#ifndef BW_FUZZ_HTTP_ORACLE_H
#define BW_FUZZ_HTTP_ORACLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

static inline bool oracle_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Every line of head[0..len) ends in CRLF: no bare LF, no lone CR. */
static inline void oracle_check_line_ends(const char *head, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r'))
            abort();
        if (head[i] == '\r' && (i + 1 == len || head[i + 1] != '\n'))
            abort();
    }
}

/* Names are tokens; values hold no control byte but HTAB. */
static inline void oracle_check_fields(const struct bw_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < h[i].name.len; j++)
            if (!oracle_tchar(h[i].name.ptr[j]))
                abort();
        for (size_t j = 0; j < h[i].value.len; j++) {
            unsigned char c = (unsigned char)h[i].value.ptr[j];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                abort();
        }
    }
}

/* The next prefix of a size-byte input to parse, after k: split in two, or
 * (odd h) grown by 1..64 bytes at a time, as reads arrive. *s is the
 * generator's state, seeded with h. */
static inline size_t oracle_next_prefix(uint64_t *s, uint64_t h, size_t k, size_t size)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    if (h & 1)
        k += 1 + (size_t)((*s >> 33) % 64);
    else
        k = k ? size : (size_t)((*s >> 33) % (size + 1));
    return k < size ? k : size;
}

#endif
