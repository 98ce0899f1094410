/* A growable text buffer with a hard size ceiling, for output that is built
 * piece by piece and sent as a whole: admin API responses, the metrics
 * exposition, error bodies. Not for the request path, where fixed buffers
 * from per-worker pools are used (base/buf.h).
 *
 * Every append reports failure (out of memory, or the ceiling reached) and
 * leaves the buffer as it was before that append. The first failure is also
 * remembered, so a caller that gave up can still say why
 * (bw_textbuf_error). The bytes are not NUL-terminated. */
#ifndef BW_BASE_TEXTBUF_H
#define BW_BASE_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "base/slice.h"

enum bw_textbuf_fault {
    BW_TEXTBUF_FAULT_NONE,
    BW_TEXTBUF_FAULT_FULL,  /* an append would have passed max */
    BW_TEXTBUF_FAULT_NOMEM, /* malloc failed */
    BW_TEXTBUF_FAULT__COUNT
};

struct bw_textbuf {
    char *ptr;                   /* owned; may be NULL while cap == 0 */
    size_t len;                  /* bytes held */
    size_t cap;                  /* bytes allocated */
    size_t max;                  /* len never exceeds this */
    enum bw_textbuf_fault fault; /* first failure since init or reset */
};

/* An empty buffer that will hold at most max bytes; allocates nothing yet. */
void bw_textbuf_init(struct bw_textbuf *b, size_t max);
/* Frees the bytes; the buffer is empty (and usable) again. */
void bw_textbuf_done(struct bw_textbuf *b);
/* Empties the buffer, keeping its allocation, and forgets any failure. */
void bw_textbuf_reset(struct bw_textbuf *b);

bw_status bw_textbuf_append(struct bw_textbuf *b, const void *p, size_t n) BW_MUST_CHECK;
bw_status bw_textbuf_append_str(struct bw_textbuf *b, const char *s) BW_MUST_CHECK;
bw_status bw_textbuf_append_slice(struct bw_textbuf *b, bw_slice s) BW_MUST_CHECK;
bw_status bw_textbuf_printf(struct bw_textbuf *b, const char *fmt, ...)
    BW_PRINTF(2, 3) BW_MUST_CHECK;

/* Fills err with why the first failed append failed and returns BW_ERR; a
 * buffer that never failed reports an internal error (a caller bug). */
bw_status bw_textbuf_error(const struct bw_textbuf *b, bw_error *err);

static inline bw_slice bw_textbuf_slice(const struct bw_textbuf *b)
{
    return b->len ? bw_slice_make(b->ptr, b->len) : BW_SLICE_EMPTY;
}

#endif
