/* Lexer of the rules language: bytes to tokens, literals decoded and checked.
 * Whitespace is space, tab, CR and LF. Keywords are lowercase only. */
#include "rules/lexer.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bw_status bw__rules_fail(struct bw_rules_diag *diag, uint32_t off, uint32_t len, const char *fmt,
                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
    va_end(ap);
    diag->off = off;
    diag->len = len;
    return BW_ERR;
}

void bw_rules_lexer_init(struct bw_rules_lexer *lx, bw_arena *a, bw_slice text)
{
    lx->arena = a;
    lx->text = text;
    lx->pos = 0;
    lx->line = 1;
    lx->line_start = 0;
    lx->regex_next = false;
}

const char *bw_rules_tok_name(enum bw_rules_tok k)
{
    switch (k) {
    case BW_RULES_TOK_EOF:
        return "the end of the expression";
    case BW_RULES_TOK_IDENT:
        return "a name";
    case BW_RULES_TOK_INT:
        return "an integer";
    case BW_RULES_TOK_STRING:
        return "a string";
    case BW_RULES_TOK_IP:
        return "an IP address";
    case BW_RULES_TOK_LPAREN:
        return "\"(\"";
    case BW_RULES_TOK_RPAREN:
        return "\")\"";
    case BW_RULES_TOK_LBRACE:
        return "\"{\"";
    case BW_RULES_TOK_RBRACE:
        return "\"}\"";
    case BW_RULES_TOK_LBRACKET:
        return "\"[\"";
    case BW_RULES_TOK_RBRACKET:
        return "\"]\"";
    case BW_RULES_TOK_COMMA:
        return "\",\"";
    case BW_RULES_TOK_STAR:
        return "\"*\"";
    case BW_RULES_TOK_DOTDOT:
        return "\"..\"";
    case BW_RULES_TOK_EQ:
        return "\"eq\"";
    case BW_RULES_TOK_NE:
        return "\"ne\"";
    case BW_RULES_TOK_LT:
        return "\"lt\"";
    case BW_RULES_TOK_LE:
        return "\"le\"";
    case BW_RULES_TOK_GT:
        return "\"gt\"";
    case BW_RULES_TOK_GE:
        return "\"ge\"";
    case BW_RULES_TOK_CONTAINS:
        return "\"contains\"";
    case BW_RULES_TOK_MATCHES:
        return "\"matches\"";
    case BW_RULES_TOK_IN:
        return "\"in\"";
    case BW_RULES_TOK_NOT:
        return "\"not\"";
    case BW_RULES_TOK_AND:
        return "\"and\"";
    case BW_RULES_TOK_OR:
        return "\"or\"";
    case BW_RULES_TOK_XOR:
        return "\"xor\"";
    case BW_RULES_TOK_TRUE:
        return "\"true\"";
    case BW_RULES_TOK_FALSE:
        return "\"false\"";
    case BW_RULES_TOK__COUNT:
        break;
    }
    return "?";
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_ident_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '.';
}

static const struct {
    const char *word;
    enum bw_rules_tok kind;
} keywords[] = {
    {"eq", BW_RULES_TOK_EQ},
    {"ne", BW_RULES_TOK_NE},
    {"lt", BW_RULES_TOK_LT},
    {"le", BW_RULES_TOK_LE},
    {"gt", BW_RULES_TOK_GT},
    {"ge", BW_RULES_TOK_GE},
    {"contains", BW_RULES_TOK_CONTAINS},
    {"matches", BW_RULES_TOK_MATCHES},
    {"in", BW_RULES_TOK_IN},
    {"not", BW_RULES_TOK_NOT},
    {"and", BW_RULES_TOK_AND},
    {"or", BW_RULES_TOK_OR},
    {"xor", BW_RULES_TOK_XOR},
    {"true", BW_RULES_TOK_TRUE},
    {"false", BW_RULES_TOK_FALSE},
};

static bool is_octal(char c)
{
    return c >= '0' && c <= '7';
}

static bw_status unterminated(struct bw_rules_diag *diag, uint32_t start, bool in_class)
{
    if (in_class)
        return bw__rules_fail(diag, start, 1,
                              "unterminated string: a closing '\"' is missing (in a \"matches\" "
                              "pattern, a '\"' inside [...] does not end it)");
    return bw__rules_fail(diag, start, 1, "unterminated string: a closing '\"' is missing");
}

/* The escape at s[i] == '\\' of a quoted string that is not a regex: the
 * escapes Cloudflare's quoted strings have (wirefilter's lexer), \" \\ \xHH
 * and \ooo (three octal digits). Its byte in *ret, its length in *ret_len. */
static bw_status basic_escape(const struct bw_rules_lexer *lx, uint32_t start, uint32_t i,
                              unsigned char *ret, uint32_t *ret_len, struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t n = (uint32_t)lx->text.len;
    if (i + 1 >= n)
        return unterminated(diag, start, false);
    char e = s[i + 1];
    *ret_len = 4;
    if (e == '"' || e == '\\') {
        *ret = (unsigned char)e;
        *ret_len = 2;
        return BW_OK;
    }
    if (e == 'x') {
        if (i + 3 < n && bw_hex_value(s[i + 2]) >= 0 && bw_hex_value(s[i + 3]) >= 0) {
            *ret = (unsigned char)(bw_hex_value(s[i + 2]) << 4 | bw_hex_value(s[i + 3]));
            return BW_OK;
        }
        return bw__rules_fail(diag, i, 2,
                              "\"\\x\" in a string takes two hex digits, as in \"\\x2e\"");
    }
    if (is_octal(e)) {
        if (i + 3 < n && is_octal(s[i + 2]) && is_octal(s[i + 3])) {
            unsigned v = (unsigned)(e - '0') << 6 | (unsigned)(s[i + 2] - '0') << 3 |
                         (unsigned)(s[i + 3] - '0');
            if (v <= 0xff) {
                *ret = (unsigned char)v;
                return BW_OK;
            }
            return bw__rules_fail(diag, i, 4, "octal escape \"\\%.3s\" is over \\377 (255)",
                                  s + i + 1);
        }
        return bw__rules_fail(diag, i, 2,
                              "an octal escape in a string is three digits 0-7, as in \"\\056\"");
    }
    unsigned char ec = (unsigned char)e;
    if (ec >= 0x21 && ec < 0x7f)
        return bw__rules_fail(diag, i, 2,
                              "unknown escape \"\\%c\" in a string: the escapes are \\\", \\\\, "
                              "\\xHH and \\ooo (octal); a \"matches\" pattern keeps any other",
                              e);
    return bw__rules_fail(diag, i, 1,
                          "unknown escape in a string: the escapes are \\\", \\\\, \\xHH and "
                          "\\ooo (octal)");
}

/* A quoted string "...", decoded as Cloudflare decodes it. No raw control
 * bytes in either form.
 * - Elsewhere than after "matches": basic_escape's escapes, nothing else.
 * - After "matches" (lx->regex_next): the text is the regex, escapes and
 *   all, but for \" outside a [...] class, which is a '"'; and a '"' inside
 *   a class does not end the string. A rule copied from Cloudflare then
 *   means the same here: "a\\.b" is the regex a\\.b (a backslash, any byte,
 *   b), not a\.b, and "\d+" is \d+. */
static bw_status lex_string(struct bw_rules_lexer *lx, struct bw_rules_token *t,
                            struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t start = lx->pos, i = lx->pos + 1, n = (uint32_t)lx->text.len;
    bool regex = lx->regex_next, in_class = false, escapes = false;
    uint32_t out_len = 0;
    for (;; i++) {
        if (i >= n)
            return unterminated(diag, start, in_class);
        unsigned char c = (unsigned char)s[i];
        if (c == '"' && !in_class)
            break;
        if (c < 0x20 || c == 0x7f)
            return bw__rules_fail(diag, i, 1,
                                  "control byte 0x%02x in a string; strings hold printable "
                                  "bytes only",
                                  c);
        if (c == '\\' && regex) {
            if (i + 1 >= n)
                return unterminated(diag, start, in_class);
            unsigned char ec = (unsigned char)s[i + 1];
            if (ec < 0x20 || ec == 0x7f)
                return bw__rules_fail(diag, i + 1, 1,
                                      "control byte 0x%02x in a string; strings hold printable "
                                      "bytes only",
                                      ec);
            bool quote = ec == '"' && !in_class;
            escapes |= quote;
            out_len += quote ? 1 : 2;
            i++;
            continue;
        }
        if (c == '\\') {
            unsigned char b;
            uint32_t elen;
            if (basic_escape(lx, start, i, &b, &elen, diag) != BW_OK)
                return BW_ERR;
            escapes = true;
            out_len++;
            i += elen - 1;
            continue;
        }
        if (regex && c == '[' && !in_class)
            in_class = true;
        else if (regex && c == ']' && in_class)
            in_class = false;
        out_len++;
    }
    t->kind = BW_RULES_TOK_STRING;
    t->len = i + 1 - start;
    lx->pos = i + 1;
    if (!escapes) {
        t->u.str = bw_slice_make(s + start + 1, out_len);
        return BW_OK;
    }
    char *out = bw_arena_alloc(lx->arena, out_len ? out_len : 1);
    if (!out)
        return bw__rules_fail(diag, start, t->len, "out of memory");
    uint32_t o = 0;
    in_class = false;
    for (uint32_t j = start + 1; j < i;) {
        char c = s[j];
        if (c == '\\' && regex) {
            if (s[j + 1] != '"' || in_class)
                out[o++] = '\\';
            out[o++] = s[j + 1];
            j += 2;
            continue;
        }
        if (c == '\\') {
            unsigned char b = 0;
            uint32_t elen = 2;
            /* Checked by the loop above: cannot fail. */
            if (basic_escape(lx, start, j, &b, &elen, diag) != BW_OK)
                return BW_ERR;
            out[o++] = (char)b;
            j += elen;
            continue;
        }
        if (regex && c == '[' && !in_class)
            in_class = true;
        else if (regex && c == ']' && in_class)
            in_class = false;
        out[o++] = c;
        j++;
    }
    t->u.str = bw_slice_make(out, o);
    return BW_OK;
}

enum { RAW_MAX_HASHES = 255 };

/* A raw string r"..." or r#"..."# (as in wirefilter): no escapes; it ends at
 * the first '"' followed by as many '#' as opened it. */
static bw_status lex_raw_string(struct bw_rules_lexer *lx, struct bw_rules_token *t,
                                struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t start = lx->pos, i = lx->pos + 1, n = (uint32_t)lx->text.len;
    uint32_t hashes = 0;
    while (i < n && s[i] == '#') {
        hashes++;
        i++;
    }
    if (hashes > RAW_MAX_HASHES)
        return bw__rules_fail(diag, start, i - start, "a raw string opens with at most %d '#'",
                              RAW_MAX_HASHES);
    if (i >= n || s[i] != '"')
        return bw__rules_fail(diag, start, i - start, "a raw string starts r\"  or r#\"");
    i++;
    uint32_t body = i;
    for (;; i++) {
        if (i >= n)
            return bw__rules_fail(diag, start, body - start,
                                  "unterminated raw string: a closing '\"%.*s' is missing",
                                  (int)hashes, "################################");
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return bw__rules_fail(diag, i, 1,
                                  "control byte 0x%02x in a string; strings hold printable "
                                  "bytes only",
                                  c);
        if (c != '"')
            continue;
        uint32_t k = 0;
        while (k < hashes && i + 1 + k < n && s[i + 1 + k] == '#')
            k++;
        if (k == hashes)
            break;
    }
    t->kind = BW_RULES_TOK_STRING;
    t->raw = true;
    t->u.str = bw_slice_make(s + body, i - body);
    lx->pos = i + 1 + hashes;
    t->len = lx->pos - start;
    return BW_OK;
}

/* Decimal integer with optional leading '-', bounded to int64. */
static bw_status lex_int(struct bw_rules_lexer *lx, struct bw_rules_token *t,
                         struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t start = lx->pos, i = lx->pos, n = (uint32_t)lx->text.len;
    bool neg = false;
    if (s[i] == '-') {
        neg = true;
        i++;
    }
    uint64_t v = 0;
    bool overflow = false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (i < n && is_digit(s[i])) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
        i++;
    }
    if (i < n && is_alpha(s[i])) {
        uint32_t e = i;
        while (e < n && (is_alpha(s[e]) || is_digit(s[e])))
            e++;
        return bw__rules_fail(diag, start, e - start,
                              "invalid number \"%.*s\": integers are decimal digits",
                              (int)(e - start), s + start);
    }
    if (overflow)
        return bw__rules_fail(diag, start, i - start, "integer %.*s does not fit in 64 bits (%s)",
                              (int)(i - start), s + start,
                              neg ? "min -9223372036854775808" : "max 9223372036854775807");
    t->kind = BW_RULES_TOK_INT;
    t->len = i - start;
    t->u.integer = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    lx->pos = i;
    return BW_OK;
}

enum { ADDR_TEXT_MAX = 63 };

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An address run [0-9A-Fa-f:.]+ with optional /prefix, starting at lx->pos
 * and ending at end (the run) and pend (with the prefix). */
static bw_status lex_ip(struct bw_rules_lexer *lx, struct bw_rules_token *t, uint32_t end, bool v6,
                        struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t start = lx->pos, n = (uint32_t)lx->text.len;
    uint32_t pend = end;
    bool cidr = false;
    unsigned prefix = v6 ? 128 : 32;
    if (pend < n && s[pend] == '/') {
        cidr = true;
        pend++;
        uint32_t ds = pend;
        unsigned p = 0;
        while (pend < n && is_digit(s[pend]) && pend - ds < 3) {
            p = p * 10 + (unsigned)(s[pend] - '0');
            pend++;
        }
        if (pend == ds || (pend < n && (is_digit(s[pend]) || is_alpha(s[pend]))) ||
            p > (v6 ? 128u : 32u)) {
            while (pend < n && (is_digit(s[pend]) || is_alpha(s[pend])))
                pend++;
            return bw__rules_fail(diag, start, pend - start,
                                  "invalid CIDR \"%.*s\": the prefix length must be 0..%d",
                                  (int)(pend - start), s + start, v6 ? 128 : 32);
        }
        prefix = p;
    }
    const char *what = v6 ? "IPv6" : "IPv4";
    char buf[ADDR_TEXT_MAX + 1];
    uint32_t alen = end - start;
    uint8_t addr[16] = {0};
    if (alen > ADDR_TEXT_MAX)
        return bw__rules_fail(diag, start, alen, "invalid %s address: too long", what);
    memcpy(buf, s + start, alen);
    buf[alen] = '\0';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
        return bw__rules_fail(diag, start, alen, "invalid %s address \"%s\"", what, buf);
    struct bw_rules_ip ip = {.family = v6 ? BW_RULES_IPV6 : BW_RULES_IPV4,
                             .prefix = (uint8_t)prefix};
    memcpy(ip.addr, addr, v6 ? 16 : 4);
    /* Host bits must be zero: "10.0.0.1/8" is most likely a typo. */
    unsigned bits = v6 ? 128 : 32;
    for (unsigned b = prefix; b < bits; b++)
        if (ip.addr[b / 8] & (0x80u >> (b % 8))) {
            uint8_t net[16];
            memcpy(net, ip.addr, 16);
            for (unsigned c = prefix; c < bits; c++)
                net[c / 8] &= (uint8_t) ~(0x80u >> (c % 8));
            char nbuf[INET6_ADDRSTRLEN];
            if (!inet_ntop(v6 ? AF_INET6 : AF_INET, net, nbuf, sizeof nbuf))
                nbuf[0] = '\0';
            return bw__rules_fail(diag, start, pend - start,
                                  "CIDR \"%.*s\" has host bits set (did you mean \"%s/%u\"?)",
                                  (int)(pend - start), s + start, nbuf, prefix);
        }
    if (v6 && memcmp(ip.addr, v4mapped, 12) == 0 && prefix >= 96) {
        ip.family = BW_RULES_IPV4;
        memmove(ip.addr, ip.addr + 12, 4);
        memset(ip.addr + 4, 0, 12);
        ip.prefix = (uint8_t)(prefix - 96);
    }
    t->kind = BW_RULES_TOK_IP;
    t->is_cidr = cidr;
    t->u.ip = ip;
    t->len = pend - start;
    lx->pos = pend;
    return BW_OK;
}

bw_status bw_rules_lex_next(struct bw_rules_lexer *lx, struct bw_rules_token *ret,
                            struct bw_rules_diag *diag)
{
    const char *s = lx->text.ptr;
    uint32_t n = (uint32_t)lx->text.len;
    while (lx->pos < n) {
        char c = s[lx->pos];
        if (c == '\n') {
            lx->line++;
            lx->line_start = lx->pos + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            break;
        }
        lx->pos++;
    }
    struct bw_rules_token t = {
        .off = lx->pos, .line = lx->line, .col = lx->pos - lx->line_start + 1};
    bool regex = lx->regex_next;
    lx->regex_next = false;
    if (lx->pos >= n) {
        t.kind = BW_RULES_TOK_EOF;
        *ret = t;
        return BW_OK;
    }
    uint32_t p = lx->pos;
    char c = s[p];
    char c1 = p + 1 < n ? s[p + 1] : '\0';
    bw_status st = BW_OK;

    /* Addresses first: a run of [0-9A-Fa-f:.] holding ':' is IPv6; digits
     * followed by '.' and a digit are IPv4 ("1..10" is a range). */
    if (is_hex(c) || c == ':') {
        uint32_t e = p;
        bool colon = false;
        /* A ".." ends the address: Cloudflare's a..b range syntax, refused
         * by the parser with its own message. */
        while (e < n &&
               (is_hex(s[e]) || s[e] == ':' || (s[e] == '.' && !(e + 1 < n && s[e + 1] == '.')))) {
            colon |= s[e] == ':';
            e++;
        }
        if (colon) {
            st = lex_ip(lx, &t, e, true, diag);
            goto done;
        }
        if (is_digit(c)) {
            uint32_t d = p;
            while (d < n && is_digit(s[d]))
                d++;
            if (d + 1 < n && s[d] == '.' && is_digit(s[d + 1])) {
                uint32_t e4 = d;
                /* "1.2.3.4..": stop before a range operator. */
                while (e4 < n &&
                       (is_digit(s[e4]) || (s[e4] == '.' && !(e4 + 1 < n && s[e4 + 1] == '.'))))
                    e4++;
                st = lex_ip(lx, &t, e4, false, diag);
                goto done;
            }
            st = lex_int(lx, &t, diag);
            goto done;
        }
    }
    if (c == '-' && is_digit(c1)) {
        st = lex_int(lx, &t, diag);
        goto done;
    }
    if (c == 'r' && (c1 == '"' || c1 == '#')) {
        st = lex_raw_string(lx, &t, diag);
        goto done;
    }
    if (is_alpha(c)) {
        uint32_t e = p;
        while (e < n && is_ident_char(s[e]))
            e++;
        t.kind = BW_RULES_TOK_IDENT;
        t.len = e - p;
        t.u.str = bw_slice_make(s + p, t.len);
        for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
            if (strlen(keywords[k].word) == t.len && memcmp(keywords[k].word, s + p, t.len) == 0)
                t.kind = keywords[k].kind;
        lx->pos = e;
        goto done;
    }
    if (c == '"') {
        lx->regex_next = regex;
        st = lex_string(lx, &t, diag);
        lx->regex_next = false;
        goto done;
    }

    uint32_t len = 1;
    switch (c) {
    case '(':
        t.kind = BW_RULES_TOK_LPAREN;
        break;
    case ')':
        t.kind = BW_RULES_TOK_RPAREN;
        break;
    case '{':
        t.kind = BW_RULES_TOK_LBRACE;
        break;
    case '}':
        t.kind = BW_RULES_TOK_RBRACE;
        break;
    case '[':
        t.kind = BW_RULES_TOK_LBRACKET;
        break;
    case ']':
        t.kind = BW_RULES_TOK_RBRACKET;
        break;
    case ',':
        t.kind = BW_RULES_TOK_COMMA;
        break;
    case '*':
        t.kind = BW_RULES_TOK_STAR;
        break;
    case '~':
        t.kind = BW_RULES_TOK_MATCHES;
        break;
    case '$':
        return bw__rules_fail(diag, p, 1,
                              "lists ($name) are not supported: write the values in a set, as "
                              "in ip.src in {192.0.2.0/24 198.51.100.7}");
    case '.':
        if (c1 != '.')
            return bw__rules_fail(diag, p, 1, "unexpected '.'");
        t.kind = BW_RULES_TOK_DOTDOT;
        len = 2;
        break;
    case '=':
        if (c1 != '=')
            return bw__rules_fail(diag, p, 1,
                                  "'=' is not an operator: compare with \"eq\" or \"==\"");
        t.kind = BW_RULES_TOK_EQ;
        len = 2;
        break;
    case '!':
        if (c1 == '=') {
            t.kind = BW_RULES_TOK_NE;
            len = 2;
        } else {
            t.kind = BW_RULES_TOK_NOT;
        }
        break;
    case '<':
        t.kind = c1 == '=' ? BW_RULES_TOK_LE : BW_RULES_TOK_LT;
        len = c1 == '=' ? 2 : 1;
        break;
    case '>':
        t.kind = c1 == '=' ? BW_RULES_TOK_GE : BW_RULES_TOK_GT;
        len = c1 == '=' ? 2 : 1;
        break;
    case '&':
        if (c1 != '&')
            return bw__rules_fail(diag, p, 1, "'&' is not an operator: use \"and\" or \"&&\"");
        t.kind = BW_RULES_TOK_AND;
        len = 2;
        break;
    case '|':
        if (c1 != '|')
            return bw__rules_fail(diag, p, 1, "'|' is not an operator: use \"or\" or \"||\"");
        t.kind = BW_RULES_TOK_OR;
        len = 2;
        break;
    case '^':
        if (c1 != '^')
            return bw__rules_fail(diag, p, 1, "'^' is not an operator: use \"xor\" or \"^^\"");
        t.kind = BW_RULES_TOK_XOR;
        len = 2;
        break;
    default:
        if ((unsigned char)c >= 0x21 && (unsigned char)c < 0x7f)
            return bw__rules_fail(diag, p, 1, "unexpected character '%c'", c);
        return bw__rules_fail(diag, p, 1, "unexpected byte 0x%02x", (unsigned char)c);
    }
    t.len = len;
    lx->pos = p + len;
done:
    if (st != BW_OK)
        return st;
    *ret = t;
    return BW_OK;
}
