/* A route's `match`, until the rules engine lands.
 *
 * Accepted, with any spacing between tokens:
 *   http.host eq "a.example"           (or ==)
 *   starts_with(http.request.uri.path, "/api/")
 *   either of them `and` the other, in either order
 * Strings are double-quoted, with \" and \\ as the only escapes, as in the
 * rules language. Everything else is refused with one message, so nobody
 * writes a rule today that would silently mean something else tomorrow.
 *
 * It does not evaluate anything: the proxy compares the stored host and
 * prefix. When src/rules lands this file goes away. */
#include <string.h>

#include "config/internal.h"

enum tok_kind {
    TOK_END,
    TOK_IDENT,
    TOK_STRING,
    TOK_LPAREN,
    TOK_RPAREN,
    TOK_COMMA,
    TOK_EQEQ,
    TOK_BAD,
    TOK__COUNT
};

struct tok {
    enum tok_kind kind;
    bw_slice text; /* IDENT: the word; STRING: raw text between the quotes */
};

struct lexer {
    bw_slice in;
    size_t pos;
};

static bool is_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.';
}

static struct tok next_tok(struct lexer *lx)
{
    bw_slice in = lx->in;
    while (lx->pos < in.len && (in.ptr[lx->pos] == ' ' || in.ptr[lx->pos] == '\t' ||
                                in.ptr[lx->pos] == '\n' || in.ptr[lx->pos] == '\r'))
        lx->pos++;
    struct tok t = {.kind = TOK_END, .text = BW_SLICE_EMPTY};
    if (lx->pos >= in.len)
        return t;
    size_t start = lx->pos;
    char c = in.ptr[lx->pos];
    if (is_ident_char(c)) {
        while (lx->pos < in.len && is_ident_char(in.ptr[lx->pos]))
            lx->pos++;
        t.kind = TOK_IDENT;
        t.text = bw_slice_sub(in, start, lx->pos - start);
        return t;
    }
    lx->pos++;
    switch (c) {
    case '(':
        t.kind = TOK_LPAREN;
        return t;
    case ')':
        t.kind = TOK_RPAREN;
        return t;
    case ',':
        t.kind = TOK_COMMA;
        return t;
    case '=':
        if (lx->pos < in.len && in.ptr[lx->pos] == '=') {
            lx->pos++;
            t.kind = TOK_EQEQ;
            return t;
        }
        t.kind = TOK_BAD;
        return t;
    case '"':
        while (lx->pos < in.len && in.ptr[lx->pos] != '"') {
            if (in.ptr[lx->pos] == '\\') {
                if (lx->pos + 1 >= in.len ||
                    (in.ptr[lx->pos + 1] != '"' && in.ptr[lx->pos + 1] != '\\')) {
                    t.kind = TOK_BAD;
                    return t;
                }
                lx->pos++;
            }
            lx->pos++;
        }
        if (lx->pos >= in.len) {
            t.kind = TOK_BAD;
            return t;
        }
        t.kind = TOK_STRING;
        t.text = bw_slice_sub(in, start + 1, lx->pos - start - 1);
        lx->pos++;
        return t;
    default:
        t.kind = TOK_BAD;
        return t;
    }
}

static bool is_word(struct tok t, const char *w)
{
    return t.kind == TOK_IDENT && bw_slice_eq(t.text, bw_slice_make(w, strlen(w)));
}

/* Unescapes a string token into the arena, lowercased when asked. Refuses
 * empty strings and ones holding spaces or control characters: neither a
 * host nor a path contains them. */
static bw_status copy_string(bw_arena *a, bw_slice raw, bool lower, bw_slice *ret)
{
    char *out = bw_arena_alloc(a, raw.len + 1);
    if (!out)
        return BW_ERR;
    size_t n = 0;
    for (size_t i = 0; i < raw.len; i++) {
        char c = raw.ptr[i];
        if (c == '\\')
            c = raw.ptr[++i]; /* the lexer checked an escaped char follows */
        if ((unsigned char)c <= 0x20 || c == 0x7f)
            return BW_ERR;
        out[n++] = lower ? bw_ascii_lower(c) : c;
    }
    if (n == 0)
        return BW_ERR;
    out[n] = '\0';
    *ret = bw_slice_make(out, n);
    return BW_OK;
}

static const char *const UNSUPPORTED =
    "only host equality and a path prefix are supported until the rules engine lands: "
    "expected http.host eq \"<host>\", starts_with(http.request.uri.path, \"<prefix>\"), "
    "or both joined by and";

/* One term; fills the route's host or prefix, refusing a second of a kind. */
static bw_status parse_term(struct lexer *lx, bw_arena *a, struct bw_config_route *r, bw_error *err)
{
    struct tok t = next_tok(lx);
    if (is_word(t, "http.host")) {
        struct tok op = next_tok(lx);
        if (!(is_word(op, "eq") || op.kind == TOK_EQEQ))
            return bw_error_set(err, "%s", UNSUPPORTED);
        struct tok v = next_tok(lx);
        if (v.kind != TOK_STRING || r->has_host)
            return bw_error_set(err, "%s", UNSUPPORTED);
        if (copy_string(a, v.text, true, &r->host) != BW_OK)
            return bw_error_set(err, "the host must be non-empty, without spaces or "
                                     "control characters");
        r->has_host = true;
        return BW_OK;
    }
    if (is_word(t, "starts_with")) {
        if (next_tok(lx).kind != TOK_LPAREN || !is_word(next_tok(lx), "http.request.uri.path") ||
            next_tok(lx).kind != TOK_COMMA)
            return bw_error_set(err, "%s", UNSUPPORTED);
        struct tok v = next_tok(lx);
        if (v.kind != TOK_STRING || next_tok(lx).kind != TOK_RPAREN || r->has_path_prefix)
            return bw_error_set(err, "%s", UNSUPPORTED);
        if (copy_string(a, v.text, false, &r->path_prefix) != BW_OK || r->path_prefix.ptr[0] != '/')
            return bw_error_set(err, "the path prefix must start with \"/\" and have no "
                                     "spaces or control characters");
        r->has_path_prefix = true;
        return BW_OK;
    }
    return bw_error_set(err, "%s", UNSUPPORTED);
}

bw_status bw__route_match_parse(bw_slice text, bw_arena *a, struct bw_config_route *r,
                                bw_error *err)
{
    struct lexer lx = {.in = text, .pos = 0};
    r->has_host = false;
    r->has_path_prefix = false;
    if (parse_term(&lx, a, r, err) != BW_OK)
        return BW_ERR;
    struct tok t = next_tok(&lx);
    if (t.kind == TOK_END)
        return BW_OK;
    if (!is_word(t, "and"))
        return bw_error_set(err, "%s", UNSUPPORTED);
    if (parse_term(&lx, a, r, err) != BW_OK)
        return BW_ERR;
    if (next_tok(&lx).kind != TOK_END)
        return bw_error_set(err, "%s", UNSUPPORTED);
    return BW_OK;
}
