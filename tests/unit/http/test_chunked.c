/* Chunked decoder: valid bodies decoded in one piece, in two pieces split at
 * every byte and in fixed-size pieces of every size, each compared with the
 * expected payload; extensions; trailers; every framing error; the extension
 * and trailer limits at and one past their bound. Each piece is an exact-size
 * heap copy so ASan sees reads past it. */
#include <stdlib.h>

#include "http/http1.h"
#include "test.h"

enum outcome { O_DONE, O_MORE, O_ERROR };

struct decoded {
    enum outcome o;
    char *data;
    size_t data_len;
    size_t consumed;
    const char *reason;
};

static void decoded_free(struct decoded *d)
{
    free(d->data);
    d->data = NULL;
}

/* Feeds in[0..n) in pieces: cut[] lists the piece ends (ascending, last ==
 * n). Collects payload and the total consumed. */
static struct decoded decode_cuts(const char *in, size_t n, const size_t *cut, size_t ncut)
{
    struct decoded d = {.o = O_MORE, .data = malloc(n + 1)};
    struct bw_chunked c;
    bw_chunked_init(&c);
    size_t from = 0;
    for (size_t ci = 0; ci < ncut && d.o == O_MORE; ci++) {
        size_t len = cut[ci] - from;
        char *piece = malloc(len ? len : 1);
        memcpy(piece, in + from, len);
        size_t at = 0;
        for (;;) {
            bw_slice data;
            bool done;
            struct bw_http_error err = {0};
            long r = bw_chunked_decode(&c, piece + at, len - at, &data, &done, &err);
            if (r < 0) {
                d.o = O_ERROR;
                d.reason = err.reason;
                if (err.status != 400 || err.reason == NULL)
                    abort();
                break;
            }
            if (data.len) {
                /* the payload lies inside what this call consumed */
                if (data.ptr < piece + at || data.ptr + data.len > piece + at + (size_t)r)
                    abort();
                memcpy(d.data + d.data_len, data.ptr, data.len);
                d.data_len += data.len;
            }
            at += (size_t)r;
            d.consumed += (size_t)r;
            if (done) {
                d.o = O_DONE;
                break;
            }
            if (r == 0 || at == len)
                break;
        }
        free(piece);
        from = cut[ci];
        if (d.o == O_DONE && from < n) /* bytes after the message stay unconsumed */
            break;
    }
    return d;
}

static bool same_decoded(const struct decoded *a, const struct decoded *b)
{
    if (a->o != b->o || a->data_len != b->data_len || memcmp(a->data, b->data, a->data_len) != 0)
        return false;
    if (a->o == O_ERROR)
        return strcmp(a->reason, b->reason) == 0;
    return a->consumed == b->consumed;
}

/* Decodes in one piece, then in two pieces at every split, then in
 * fixed-size pieces of every size; all must agree. Returns the one-piece
 * result (caller frees) and sets *ret_ok. */
static struct decoded decode_all_ways(const char *in, size_t n, bool *ret_ok)
{
    size_t one = n;
    struct decoded whole = decode_cuts(in, n, &one, 1);
    *ret_ok = true;
    size_t *cuts = malloc((n + 2) * sizeof *cuts);
    /* Long inputs (the limit tests): every split near either end, and a
     * stride through the middle, to keep the test quick under ASan. */
    bool long_input = n > 512;
    for (size_t k = 0; k <= n && *ret_ok; k++) {
        if (long_input && k > 64 && k + 64 < n && k % 61 != 0)
            continue;
        size_t two[2] = {k, n};
        struct decoded d = decode_cuts(in, n, two, 2);
        if (!same_decoded(&whole, &d)) {
            printf("     split at %zu differs\n", k);
            *ret_ok = false;
        }
        decoded_free(&d);
    }
    for (size_t size = 1; size <= n && *ret_ok; size++) {
        if (long_input && size > 16 && size % 97 != 0)
            continue;
        size_t nc = 0;
        for (size_t e = size; e < n; e += size)
            cuts[nc++] = e;
        cuts[nc++] = n;
        struct decoded d = decode_cuts(in, n, cuts, nc);
        if (!same_decoded(&whole, &d)) {
            printf("     pieces of %zu differ\n", size);
            *ret_ok = false;
        }
        decoded_free(&d);
    }
    free(cuts);
    return whole;
}

#define DECODES_TO(lit, want, want_consumed)                                                       \
    do {                                                                                           \
        bool t_ok;                                                                                 \
        struct decoded t_d = decode_all_ways((lit), sizeof(lit) - 1, &t_ok);                       \
        enum outcome t_o = t_d.o;                                                                  \
        bool t_data_ok =                                                                           \
            t_d.data_len == sizeof(want) - 1 && memcmp(t_d.data, (want), t_d.data_len) == 0;       \
        size_t t_consumed = t_d.consumed;                                                          \
        const char *t_reason = t_d.reason ? t_d.reason : "";                                       \
        decoded_free(&t_d);                                                                        \
        if (t_o != O_DONE) {                                                                       \
            T_FAILF("%s: want DONE, got %d (%s)", #lit, t_o, t_reason);                            \
            return;                                                                                \
        }                                                                                          \
        CHECK(t_ok);                                                                               \
        CHECK(t_data_ok);                                                                          \
        CHECK_INT_EQ(t_consumed, (want_consumed));                                                 \
    } while (0)

#define REFUSED(lit, want_reason)                                                                  \
    do {                                                                                           \
        bool t_ok;                                                                                 \
        struct decoded t_d = decode_all_ways((lit), sizeof(lit) - 1, &t_ok);                       \
        enum outcome t_o = t_d.o;                                                                  \
        const char *t_reason = t_d.reason ? t_d.reason : "";                                       \
        decoded_free(&t_d);                                                                        \
        if (t_o != O_ERROR) {                                                                      \
            T_FAILF("%s: want ERROR, got %d", #lit, t_o);                                          \
            return;                                                                                \
        }                                                                                          \
        CHECK(t_ok);                                                                               \
        CHECK_STR_EQ(t_reason, (want_reason));                                                     \
    } while (0)

#define NEEDS_MORE(lit)                                                                            \
    do {                                                                                           \
        bool t_ok;                                                                                 \
        struct decoded t_d = decode_all_ways((lit), sizeof(lit) - 1, &t_ok);                       \
        enum outcome t_o = t_d.o;                                                                  \
        decoded_free(&t_d);                                                                        \
        CHECK_INT_EQ(t_o, O_MORE);                                                                 \
        CHECK(t_ok);                                                                               \
    } while (0)

#define BODY "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

TEST(valid_bodies)
{
    DECODES_TO("0\r\n\r\n", "", 5);
    DECODES_TO("5\r\nhello\r\n0\r\n\r\n", "hello", 15);
    DECODES_TO(BODY, "hello world", 26);
    DECODES_TO("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 35);
    DECODES_TO("0000000000000005\r\nhello\r\n0\r\n\r\n", "hello", 30);
    DECODES_TO("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n", 17);
    DECODES_TO("3\r\n\0\xff\x01\r\n0\r\n\r\n", "\0\xff\x01", 13);
}

TEST(stops_at_end_of_message)
{
    /* a pipelined next request is not consumed */
    DECODES_TO(BODY "GET / HTTP/1.1\r\n", "hello world", 26);
    DECODES_TO("0\r\n\r\n0\r\n\r\n", "", 5);
    /* after the end, nothing more is consumed and done stays set */
    struct bw_chunked c;
    bw_chunked_init(&c);
    bw_slice data;
    bool done;
    struct bw_http_error err;
    CHECK_INT_EQ(bw_chunked_decode(&c, "0\r\n\r\nXYZ", 8, &data, &done, &err), 5);
    CHECK(done);
    CHECK_INT_EQ(c.state, BW_CHUNKED_DONE);
    CHECK_INT_EQ(bw_chunked_decode(&c, "XYZ", 3, &data, &done, &err), 0);
    CHECK(done);
    CHECK_INT_EQ(data.len, 0);
}

TEST(one_span_per_call)
{
    struct bw_chunked c;
    bw_chunked_init(&c);
    bw_slice data;
    bool done;
    struct bw_http_error err;
    const char *in = BODY;
    long r = bw_chunked_decode(&c, in, strlen(in), &data, &done, &err);
    CHECK_INT_EQ(r, 8);
    CHECK_SLICE_EQ(data, "hello");
    CHECK(!done);
    r = bw_chunked_decode(&c, in + 8, strlen(in) - 8, &data, &done, &err);
    CHECK_INT_EQ(r, 11);
    CHECK_SLICE_EQ(data, " world");
    r = bw_chunked_decode(&c, in + 19, strlen(in) - 19, &data, &done, &err);
    CHECK_INT_EQ(r, 7);
    CHECK_INT_EQ(data.len, 0);
    CHECK(done);
    /* empty input: nothing consumed, not done */
    bw_chunked_init(&c);
    CHECK_INT_EQ(bw_chunked_decode(&c, in, 0, &data, &done, &err), 0);
    CHECK(!done);
}

TEST(extensions)
{
    DECODES_TO("5;name\r\nhello\r\n0\r\n\r\n", "hello", 20);
    DECODES_TO("5;name=value\r\nhello\r\n0\r\n\r\n", "hello", 26);
    DECODES_TO("5 ; a=1 ;b = \"q s\"\r\nhello\r\n0\r\n\r\n", "hello", 32);
    DECODES_TO("5\t;a\r\nhello\r\n0;last=yes\r\n\r\n", "hello", 27);
    DECODES_TO("5;caf\xc3\xa9\r\nhello\r\n0\r\n\r\n", "hello", 21);
}

TEST(trailers)
{
    DECODES_TO("5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n", "hello", 27);
    DECODES_TO("5\r\nhello\r\n0\r\nA: 1\r\nB:\r\nc-d:  x y \t\r\n\r\n", "hello", 38);
    DECODES_TO("0\r\nX: caf\xc3\xa9\r\n\r\n", "", 15);
}

TEST(chunk_size_errors)
{
    REFUSED("\r\n", "missing chunk size");
    REFUSED(";a\r\n", "missing chunk size");
    REFUSED("g\r\n", "missing chunk size");
    REFUSED("-5\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    REFUSED(" 5\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    REFUSED("+5\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    REFUSED("0x5\r\nhello\r\n0\r\n\r\n", "invalid character in chunk size");
    REFUSED("5g\r\nhello\r\n0\r\n\r\n", "invalid character in chunk size");
    REFUSED("5,5\r\nhello\r\n0\r\n\r\n", "invalid character in chunk size");
    REFUSED("00000000000000005\r\nhello\r\n0\r\n\r\n", "chunk size too long");
    REFUSED("4000000000000001\r\n", "chunk size too large");
    REFUSED("ffffffffffffffff\r\n", "chunk size too large");
    NEEDS_MORE("4000000000000000\r\nxyz"); /* 2^62 itself is allowed */
}

TEST(line_end_errors)
{
    REFUSED("5\nhello\r\n0\r\n\r\n", "bare LF");
    REFUSED("5;a\nhello\r\n0\r\n\r\n", "bare LF");
    REFUSED("5\r\rhello\r\n0\r\n\r\n", "CR without LF in chunk size line");
    REFUSED("5\r\nhelloX\r\n0\r\n\r\n", "chunk data not followed by CRLF");
    REFUSED("5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF");
    REFUSED("5\r\nhello\rX0\r\n\r\n", "chunk data not followed by CRLF");
    REFUSED("5\r\nhello\r\n0\r\n\n", "bare LF");
    REFUSED("5\r\nhello\r\n0\r\n\rX", "CR without LF in trailer");
    REFUSED("5\r\nhello\r\n0\r\nX: y\n\r\n", "bare LF");
}

TEST(extension_errors)
{
    REFUSED("5 \r\nhello\r\n0\r\n\r\n", "invalid chunk extension");
    REFUSED("5 x\r\nhello\r\n0\r\n\r\n", "invalid chunk extension");
    REFUSED("5;a\x01\r\nhello\r\n0\r\n\r\n", "invalid character in chunk extension");
    REFUSED("5;a\x7f\r\nhello\r\n0\r\n\r\n", "invalid character in chunk extension");
    REFUSED("5;a\0\r\nhello\r\n0\r\n\r\n", "invalid character in chunk extension");
    REFUSED("5;a\rb\r\nhello\r\n0\r\n\r\n", "CR without LF in chunk size line");
}

TEST(trailer_errors)
{
    REFUSED("0\r\n X: y\r\n\r\n", "obs-fold in trailer");
    REFUSED("0\r\nX: y\r\n\tz\r\n\r\n", "obs-fold in trailer");
    REFUSED("0\r\nX y: z\r\n\r\n", "invalid character in trailer name");
    REFUSED("0\r\nX : z\r\n\r\n", "invalid character in trailer name");
    REFUSED("0\r\n: z\r\n\r\n", "empty trailer field name");
    REFUSED("0\r\nNoColon\r\n\r\n", "trailer line without colon");
    REFUSED("0\r\nX: a\x01\r\n\r\n", "invalid character in trailer value");
    REFUSED("0\r\nX: a\x7f\r\n\r\n", "invalid character in trailer value");
}

TEST(incomplete_bodies_need_more)
{
    NEEDS_MORE("");
    NEEDS_MORE("5");
    NEEDS_MORE("5\r");
    NEEDS_MORE("5\r\nhel");
    NEEDS_MORE("5\r\nhello");
    NEEDS_MORE("5\r\nhello\r");
    NEEDS_MORE("5\r\nhello\r\n0\r\n");
    NEEDS_MORE("5\r\nhello\r\n0\r\nX: y\r\n");
    NEEDS_MORE("5\r\nhello\r\n0\r\n\r");
    NEEDS_MORE("5;ext");
}

/* Runs "<size>;<ext of n bytes after the size digits>\r\n...". */
static struct decoded with_ext(size_t ext_len)
{
    size_t n = 1 + ext_len + 2 + 5 + 2 + 5;
    char *in = malloc(n);
    in[0] = '5';
    in[1] = ';';
    memset(in + 2, 'e', ext_len - 1);
    memcpy(in + 1 + ext_len, "\r\nhello\r\n0\r\n\r\n", 14);
    bool ok;
    struct decoded d = decode_all_ways(in, n, &ok);
    free(in);
    if (!ok)
        d.o = O_MORE; /* splits disagreed: fail the caller's check */
    return d;
}

TEST(extension_limit)
{
    struct decoded d = with_ext(BW_CHUNKED_MAX_EXT_BYTES);
    enum outcome o = d.o;
    decoded_free(&d);
    CHECK_INT_EQ(o, O_DONE);
    d = with_ext(BW_CHUNKED_MAX_EXT_BYTES + 1);
    o = d.o;
    const char *reason = d.reason;
    decoded_free(&d);
    CHECK_INT_EQ(o, O_ERROR);
    CHECK_STR_EQ(reason, "chunk extension too long");
}

/* "0\r\n" then a trailer section of exactly n bytes (final CRLF included). */
static struct decoded with_trailers(size_t n)
{
    size_t len = 3 + n;
    char *in = malloc(len);
    memcpy(in, "0\r\n", 3);
    size_t at = 3, left = n - 2;
    while (left > 0) {
        /* lines "X: vvv\r\n" of at least 5 bytes; the last takes the rest */
        size_t line = left >= 200 + 5 ? 200 : left;
        memcpy(in + at, "X:", 2);
        memset(in + at + 2, 'v', line - 4);
        memcpy(in + at + line - 2, "\r\n", 2);
        at += line;
        left -= line;
    }
    memcpy(in + at, "\r\n", 2);
    bool ok;
    struct decoded d = decode_all_ways(in, len, &ok);
    free(in);
    if (!ok)
        d.o = O_MORE;
    return d;
}

TEST(trailer_limit)
{
    struct decoded d = with_trailers(BW_CHUNKED_MAX_TRAILER_BYTES);
    enum outcome o = d.o;
    size_t consumed = d.consumed;
    decoded_free(&d);
    CHECK_INT_EQ(o, O_DONE);
    CHECK_INT_EQ(consumed, 3 + BW_CHUNKED_MAX_TRAILER_BYTES);
    d = with_trailers(BW_CHUNKED_MAX_TRAILER_BYTES + 1);
    o = d.o;
    const char *reason = d.reason;
    decoded_free(&d);
    CHECK_INT_EQ(o, O_ERROR);
    CHECK_STR_EQ(reason, "trailer section too large");
}

TEST(large_chunk_in_small_pieces)
{
    /* 0x1000 bytes of data, fed 7 bytes at a time */
    size_t n = 6 + 4096 + 2 + 5;
    char *in = malloc(n);
    memcpy(in, "1000\r\n", 6);
    for (size_t i = 0; i < 4096; i++)
        in[6 + i] = (char)('a' + i % 26);
    memcpy(in + 6 + 4096, "\r\n0\r\n\r\n", 7);
    size_t cuts[1024], nc = 0;
    for (size_t e = 7; e < n; e += 7)
        cuts[nc++] = e;
    cuts[nc++] = n;
    struct decoded d = decode_cuts(in, n, cuts, nc);
    bool same_data = d.data_len == 4096 && memcmp(d.data, in + 6, 4096) == 0;
    enum outcome o = d.o;
    decoded_free(&d);
    free(in);
    CHECK_INT_EQ(o, O_DONE);
    CHECK(same_data);
}

TEST(corrupt_state_is_an_error_not_a_crash)
{
    struct bw_chunked c;
    bw_chunked_init(&c);
    c.state = BW_CHUNKED__COUNT;
    bw_slice data;
    bool done;
    struct bw_http_error err;
    CHECK_INT_EQ(bw_chunked_decode(&c, "0\r\n\r\n", 5, &data, &done, &err), -1);
    CHECK_STR_EQ(err.reason, "invalid decoder state");
}

int main(void)
{
    RUN(valid_bodies);
    RUN(stops_at_end_of_message);
    RUN(one_span_per_call);
    RUN(extensions);
    RUN(trailers);
    RUN(chunk_size_errors);
    RUN(line_end_errors);
    RUN(extension_errors);
    RUN(trailer_errors);
    RUN(incomplete_bodies_need_more);
    RUN(extension_limit);
    RUN(trailer_limit);
    RUN(large_chunk_in_small_pieces);
    RUN(corrupt_state_is_an_error_not_a_crash);
    return t_done();
}
