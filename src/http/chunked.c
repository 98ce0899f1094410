/* The chunked transfer coding (RFC 9112 §7.1), decoded as a byte-driven state
 * machine so input may be split anywhere: all state lives in struct
 * bw_chunked, nothing is buffered. Chunk extensions and trailer fields are
 * validated, bounded and dropped. */
#include <limits.h>

#include "http/internal.h"

/* Sizes above this are refused: no real body is that large, and keeping the
 * value well under 2^63 means it never overflows a signed offset later. */
#define CHUNK_SIZE_MAX ((uint64_t)1 << 62)
#define CHUNK_SIZE_DIGITS 16

/* clang-format off */
static const int8_t hexval[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
    ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16,
}; /* value + 1; 0 means not a hex digit */
/* clang-format on */

void bw_chunked_init(struct bw_chunked *c)
{
    *c = (struct bw_chunked){.state = BW_CHUNKED_SIZE};
}

static long fail(struct bw_http_error *err, const char *reason, size_t offset)
{
    bw__http_set_err(err, 400, reason, offset);
    return -1;
}

static inline bool is_ctl(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

long bw_chunked_decode(struct bw_chunked *c, const char *buf, size_t len, bw_slice *data,
                       bool *done, struct bw_http_error *err)
{
    if (len > (size_t)LONG_MAX)
        len = (size_t)LONG_MAX;
    *data = bw_slice_make(buf, 0);
    *done = false;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)buf[i];
        switch (c->state) {
        case BW_CHUNKED_SIZE: {
            int h = hexval[ch];
            if (h) {
                if (c->size_digits == CHUNK_SIZE_DIGITS)
                    return fail(err, "chunk size too long", i);
                uint64_t d = (uint64_t)(h - 1);
                if (c->remaining > (CHUNK_SIZE_MAX - d) >> 4)
                    return fail(err, "chunk size too large", i);
                c->remaining = c->remaining << 4 | d;
                c->size_digits++;
                i++;
                break;
            }
            if (c->size_digits == 0)
                return fail(err, "missing chunk size", i);
            if (ch == '\r') {
                c->state = BW_CHUNKED_SIZE_LF;
                i++;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = BW_CHUNKED_EXT;
                c->ext_bytes = 0;
                c->ext_named = false;
            } else {
                return fail(err, ch == '\n' ? "bare LF" : "invalid character in chunk size", i);
            }
            break;
        }
        case BW_CHUNKED_EXT:
            /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ):
             * whitespace may only lead up to a ';' (so "5 junk" is refused),
             * after that any non-control byte until CR. */
            while (i < len) {
                ch = (unsigned char)buf[i];
                if (ch == '\r') {
                    c->state = BW_CHUNKED_SIZE_LF;
                    i++;
                    break;
                }
                if (ch == '\n')
                    return fail(err, "bare LF", i);
                if (is_ctl(ch))
                    return fail(err, "invalid character in chunk extension", i);
                if (!c->ext_named) {
                    if (ch == ';')
                        c->ext_named = true;
                    else if (ch != ' ' && ch != '\t')
                        return fail(err, "invalid chunk extension", i);
                }
                if (++c->ext_bytes > BW_CHUNKED_MAX_EXT_BYTES)
                    return fail(err, "chunk extension too long", i);
                i++;
            }
            break;
        case BW_CHUNKED_SIZE_LF:
            if (ch != '\n')
                return fail(err, "CR without LF in chunk size line", i);
            i++;
            if (c->ext_bytes && !c->ext_named)
                return fail(err, "invalid chunk extension", i - 1);
            c->ext_bytes = 0;
            c->ext_named = false;
            if (c->remaining == 0) {
                c->state = BW_CHUNKED_TRAILER;
                c->trailer_bytes = 0;
                c->trailer_line_len = 0;
                c->trailer_in_value = false;
                c->saw_cr = false;
            } else {
                c->state = BW_CHUNKED_DATA;
            }
            break;
        case BW_CHUNKED_DATA: {
            /* One payload span per call: report it and return. */
            size_t n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            *data = bw_slice_make(buf + i, n);
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = BW_CHUNKED_DATA_CR;
            return (long)(i + n);
        }
        case BW_CHUNKED_DATA_CR:
            if (ch != '\r')
                return fail(err, "chunk data not followed by CRLF", i);
            c->state = BW_CHUNKED_DATA_LF;
            i++;
            break;
        case BW_CHUNKED_DATA_LF:
            if (ch != '\n')
                return fail(err, "chunk data not followed by CRLF", i);
            c->state = BW_CHUNKED_SIZE;
            c->size_digits = 0;
            i++;
            break;
        case BW_CHUNKED_TRAILER:
            /* trailer-section = *( field-line CRLF ) CRLF; the bound counts
             * every byte after the last-chunk line, final CRLF included. */
            if (++c->trailer_bytes > BW_CHUNKED_MAX_TRAILER_BYTES)
                return fail(err, "trailer section too large", i);
            i++;
            if (c->saw_cr) {
                if (ch != '\n')
                    return fail(err, "CR without LF in trailer", i - 1);
                c->saw_cr = false;
                if (c->trailer_line_len == 0) {
                    c->state = BW_CHUNKED_DONE;
                    *done = true;
                    return (long)i;
                }
                c->trailer_line_len = 0;
                c->trailer_in_value = false;
                break;
            }
            if (ch == '\r') {
                if (c->trailer_line_len && !c->trailer_in_value)
                    return fail(err, "trailer line without colon", i - 1);
                c->saw_cr = true;
                break;
            }
            if (ch == '\n')
                return fail(err, "bare LF", i - 1);
            if (c->trailer_in_value) {
                if (!BW__CC(ch, BW__CC_VALUE))
                    return fail(err, "invalid character in trailer value", i - 1);
            } else if (ch == ':') {
                if (c->trailer_line_len == 0)
                    return fail(err, "empty trailer field name", i - 1);
                c->trailer_in_value = true;
            } else if (!BW__CC(ch, BW__CC_TCHAR)) {
                return fail(err,
                            c->trailer_line_len == 0 && BW__CC(ch, BW__CC_OWS)
                                ? "obs-fold in trailer"
                                : "invalid character in trailer name",
                            i - 1);
            }
            c->trailer_line_len++;
            break;
        case BW_CHUNKED_DONE:
            *done = true;
            return (long)i;
        case BW_CHUNKED__COUNT:
            return fail(err, "invalid decoder state", i);
        }
    }
    if (c->state == BW_CHUNKED_DONE)
        *done = true;
    return (long)i;
}
