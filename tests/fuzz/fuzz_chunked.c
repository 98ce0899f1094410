/* Fuzzes the chunked decoder: decoding the input in one piece and in pieces
 * (cut points derived from the input, each piece an exact-size copy) must
 * give the same payload, the same number of bytes consumed and the same end
 * (done, needs more, or the same error). Every reported payload span lies in
 * the bytes that call consumed, and nothing past the end of the message is
 * consumed, then or by a further call once done. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

enum outcome { O_DONE, O_MORE, O_ERROR };

struct result {
    enum outcome o;
    uint8_t *data;
    size_t data_len;
    size_t consumed;
    const char *reason;
    struct bw_chunked c;
};

/* pieces: cut ends, ascending, the last == n */
static void decode(const uint8_t *in, size_t n, const size_t *cut, size_t ncut, struct result *res)
{
    memset(res, 0, sizeof *res);
    res->o = O_MORE;
    res->data = malloc(n + 1);
    bw_chunked_init(&res->c);
    size_t from = 0;
    for (size_t ci = 0; ci < ncut && res->o == O_MORE; ci++) {
        size_t len = cut[ci] - from;
        char *piece = malloc(len ? len : 1);
        memcpy(piece, in + from, len);
        size_t at = 0;
        for (;;) {
            bw_slice data;
            bool done;
            struct bw_http_error err = {0};
            long r = bw_chunked_decode(&res->c, piece + at, len - at, &data, &done, &err);
            if (r < 0) {
                if (r != -1 || err.status != 400 || !err.reason || err.offset >= len - at)
                    abort();
                res->o = O_ERROR;
                res->reason = err.reason;
                break;
            }
            if ((size_t)r > len - at)
                abort();
            if (data.len) {
                if (data.ptr < piece + at || data.ptr + data.len > piece + at + (size_t)r)
                    abort();
                memcpy(res->data + res->data_len, data.ptr, data.len);
                res->data_len += data.len;
            }
            at += (size_t)r;
            res->consumed += (size_t)r;
            if (done) {
                if (res->c.state != BW_CHUNKED_DONE || data.len)
                    abort();
                res->o = O_DONE;
                /* Called again once done (pipelined bytes after the
                 * message): still done, nothing consumed, no payload. */
                bw_slice d2;
                bool done2 = false;
                long r2 = bw_chunked_decode(&res->c, piece + at, len - at, &d2, &done2, &err);
                if (r2 != 0 || !done2 || d2.len != 0)
                    abort();
                break;
            }
            if (r == 0) {
                if (at != len) /* 0 only when there is nothing to consume */
                    abort();
                break;
            }
            if (at == len)
                break;
        }
        free(piece);
        from = cut[ci];
    }
    if (res->data_len > res->consumed)
        abort();
}

static void check_same(const struct result *a, const struct result *b)
{
    if (a->o != b->o || a->data_len != b->data_len || memcmp(a->data, b->data, a->data_len) != 0)
        abort();
    if (a->o == O_ERROR) {
        if (strcmp(a->reason, b->reason) != 0)
            abort();
        return;
    }
    if (a->consumed != b->consumed || a->c.state != b->c.state ||
        a->c.remaining != b->c.remaining || a->c.size_digits != b->c.size_digits ||
        a->c.trailer_bytes != b->c.trailer_bytes)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;

    struct result whole, pieces;
    size_t one = size;
    decode(data, size, &one, 1, &whole);

    /* pseudo-random cuts: pieces of 1..16 bytes, or two pieces */
    size_t *cuts = malloc((size + 1) * sizeof *cuts);
    size_t nc = 0;
    if (h & 1) {
        uint64_t s = h;
        for (size_t at = 0; at < size;) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            at += 1 + (size_t)((s >> 33) % 16);
            cuts[nc++] = at < size ? at : size;
        }
    } else {
        size_t k = size ? (size_t)((h >> 1) % (size + 1)) : 0;
        if (k < size)
            cuts[nc++] = k;
    }
    if (nc == 0 || cuts[nc - 1] != size)
        cuts[nc++] = size;
    decode(data, size, cuts, nc, &pieces);
    check_same(&whole, &pieces);
    free(pieces.data);

    /* byte at a time, for short inputs */
    if (size <= 512) {
        for (size_t i = 0; i < size; i++)
            cuts[i] = i + 1;
        decode(data, size, cuts, size, &pieces);
        check_same(&whole, &pieces);
        free(pieces.data);
    }
    free(cuts);
    free(whole.data);
    return 0;
}
