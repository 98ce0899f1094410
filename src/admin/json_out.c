#include "admin/json_out.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at p[0..n) (RFC 3629 §4: no
 * overlongs, no surrogates, nothing past U+10FFFF), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bw_status bw__admin_json_string(struct bw_textbuf *out, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    if (bw_textbuf_append(out, "\"", 1) != BW_OK)
        return BW_ERR;
    size_t run = 0, i = 0;
    while (i < n) {
        char esc[8];
        const char *e = NULL;
        size_t elen = 0;
        size_t adv = 1;
        if (u[i] == '"') {
            e = "\\\"";
            elen = 2;
        } else if (u[i] == '\\') {
            e = "\\\\";
            elen = 2;
        } else if (u[i] == '\n') {
            e = "\\n";
            elen = 2;
        } else if (u[i] < 0x20 || u[i] == 0x7F) {
            snprintf(esc, sizeof esc, "\\u%04x", u[i]);
            e = esc;
            elen = 6;
        } else if (u[i] >= 0x80) {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                e = "\\ufffd";
                elen = 6;
            } else {
                i += l; /* valid: stays in the run */
                continue;
            }
        }
        if (e) {
            if (bw_textbuf_append(out, p + run, i - run) != BW_OK ||
                bw_textbuf_append(out, e, elen) != BW_OK)
                return BW_ERR;
            run = i + adv;
        }
        i += adv;
    }
    if (bw_textbuf_append(out, p + run, n - run) != BW_OK ||
        bw_textbuf_append(out, "\"", 1) != BW_OK)
        return BW_ERR;
    return BW_OK;
}
