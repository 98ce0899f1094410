/* Tokens of the rules language. The lexer is pulled one token at a time by
 * the parser; it decodes literals (string escapes, integers, addresses) and
 * refuses bad ones with a precise message. Every token carries its byte
 * offset and its line and column in the expression text (1-based). */
#ifndef BW_RULES_LEXER_H
#define BW_RULES_LEXER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "rules/ast.h"
#include "rules/rules.h"

enum bw_rules_tok {
    BW_RULES_TOK_EOF,
    BW_RULES_TOK_IDENT,  /* field or function name: [A-Za-z_][A-Za-z0-9_.]* */
    BW_RULES_TOK_INT,    /* decimal, optional '-', fits int64 */
    BW_RULES_TOK_STRING, /* "..." or r"..." / r#"..."# */
    BW_RULES_TOK_IP,     /* address, optional /prefix (is_cidr) */
    BW_RULES_TOK_LPAREN,
    BW_RULES_TOK_RPAREN,
    BW_RULES_TOK_LBRACE,
    BW_RULES_TOK_RBRACE,
    BW_RULES_TOK_LBRACKET,
    BW_RULES_TOK_RBRACKET,
    BW_RULES_TOK_COMMA,
    BW_RULES_TOK_STAR,
    BW_RULES_TOK_DOTDOT,
    BW_RULES_TOK_EQ, /* eq == */
    BW_RULES_TOK_NE, /* ne != */
    BW_RULES_TOK_LT, /* lt < */
    BW_RULES_TOK_LE, /* le <= */
    BW_RULES_TOK_GT, /* gt > */
    BW_RULES_TOK_GE, /* ge >= */
    BW_RULES_TOK_CONTAINS,
    BW_RULES_TOK_MATCHES, /* matches ~ */
    BW_RULES_TOK_IN,
    BW_RULES_TOK_NOT, /* not ! */
    BW_RULES_TOK_AND, /* and && */
    BW_RULES_TOK_OR,  /* or || */
    BW_RULES_TOK_XOR, /* xor ^^ */
    BW_RULES_TOK_TRUE,
    BW_RULES_TOK_FALSE,
    BW_RULES_TOK__COUNT
};

struct bw_rules_token {
    enum bw_rules_tok kind;
    uint32_t off, len; /* bytes of the text */
    uint32_t line, col;
    bool is_cidr; /* IP written with a /prefix */
    bool raw;     /* STRING written r"..." */
    union {
        int64_t integer;
        bw_slice str; /* decoded; in the arena or the text */
        struct bw_rules_ip ip;
    } u;
};

struct bw_rules_lexer {
    bw_arena *arena;
    bw_slice text;
    uint32_t pos;
    uint32_t line;
    uint32_t line_start;
    /* Set by the parser before it reads the operand of "matches": a quoted
     * string there follows Cloudflare's regex escaping (every escape but \"
     * is kept for the regex engine). Cleared by each bw_rules_lex_next. */
    bool regex_next;
};

void bw_rules_lexer_init(struct bw_rules_lexer *lx, bw_arena *a, bw_slice text);
bw_status bw_rules_lex_next(struct bw_rules_lexer *lx, struct bw_rules_token *ret,
                            struct bw_rules_diag *diag) BW_MUST_CHECK;

/* How a token kind is named in messages: "\"and\"", "a string", "end of expression". */
const char *bw_rules_tok_name(enum bw_rules_tok k);

/* Internal to src/rules: records an error (span and sentence) in diag and
 * returns BW_ERR; bw_rules_parse renders the positions and the caret. */
bw_status bw__rules_fail(struct bw_rules_diag *diag, uint32_t off, uint32_t len, const char *fmt,
                         ...) BW_PRINTF(4, 5);

/* Internal: type-checks a parsed tree in place (check.c). */
bw_status bw__rules_check(struct bw_rules_node *root, bw_slice text, enum bw_rules_phase phase,
                          struct bw_rules_diag *diag) BW_MUST_CHECK;

#endif
