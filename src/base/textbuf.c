#include "base/textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation; later ones double, so appends are amortised O(1). */
enum { TEXTBUF_MIN_CAP = 256 };

void bw_textbuf_init(struct bw_textbuf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->fault = BW_TEXTBUF_FAULT_NONE;
}

void bw_textbuf_done(struct bw_textbuf *b)
{
    free(b->ptr);
    bw_textbuf_init(b, b->max);
}

void bw_textbuf_reset(struct bw_textbuf *b)
{
    b->len = 0;
    b->fault = BW_TEXTBUF_FAULT_NONE;
}

static bw_status fail(struct bw_textbuf *b, enum bw_textbuf_fault f)
{
    if (b->fault == BW_TEXTBUF_FAULT_NONE)
        b->fault = f;
    return BW_ERR;
}

/* Makes room for n more bytes (plus one, so vsnprintf can write its NUL). */
static bw_status reserve(struct bw_textbuf *b, size_t n)
{
    if (n > b->max - b->len)
        return fail(b, BW_TEXTBUF_FAULT_FULL);
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return BW_OK;
    size_t cap = b->cap ? b->cap : TEXTBUF_MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* Never allocate far past the ceiling for a buffer that cannot use it. */
    if (cap > b->max + 1 && need <= b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->ptr, cap);
    if (!p)
        return fail(b, BW_TEXTBUF_FAULT_NOMEM);
    b->ptr = p;
    b->cap = cap;
    return BW_OK;
}

bw_status bw_textbuf_append(struct bw_textbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return BW_OK;
    if (reserve(b, n) != BW_OK)
        return BW_ERR;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return BW_OK;
}

bw_status bw_textbuf_append_str(struct bw_textbuf *b, const char *s)
{
    return bw_textbuf_append(b, s, strlen(s));
}

bw_status bw_textbuf_append_slice(struct bw_textbuf *b, bw_slice s)
{
    return bw_textbuf_append(b, s.ptr, s.len);
}

bw_status bw_textbuf_printf(struct bw_textbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return fail(b, BW_TEXTBUF_FAULT_NOMEM);
    if (n == 0)
        return BW_OK;
    if (reserve(b, (size_t)n) != BW_OK)
        return BW_ERR;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return BW_OK;
}

bw_status bw_textbuf_error(const struct bw_textbuf *b, bw_error *err)
{
    switch (b->fault) {
    case BW_TEXTBUF_FAULT_FULL:
        return bw_error_set(err, "output would exceed its limit of %zu bytes", b->max);
    case BW_TEXTBUF_FAULT_NOMEM:
        return bw_error_set(err, "out of memory");
    case BW_TEXTBUF_FAULT_NONE:
    case BW_TEXTBUF_FAULT__COUNT:
        break;
    }
    return bw_error_set(err, "internal error: output buffer reported no failure");
}
