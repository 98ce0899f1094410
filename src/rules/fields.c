/* Field and function tables of the rules language (DESIGN.md §2). Adding a
 * field is one enum value and one row here; -Wswitch-enum then points at
 * every switch (evaluator, docs generator) that must learn about it. */
#include "rules/fields.h"

#include <string.h>

#define REQ BW_RULES_PHASE_BIT(BW_RULES_PHASE_REQUEST)
#define RESP BW_RULES_PHASE_BIT(BW_RULES_PHASE_RESPONSE)
#define BYTES                                                                                      \
    {                                                                                              \
        .kind = BW_RULES_T_BYTES, .elem = BW_RULES_T_BYTES                                         \
    }

static const struct bw_rules_field_info fields[BW_RULES_F__COUNT] = {
    [BW_RULES_F_HTTP_REQUEST_METHOD] = {"http.request.method", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_HOST] = {"http.host", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_REQUEST_URI] = {"http.request.uri", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_REQUEST_URI_PATH] = {"http.request.uri.path", BYTES, REQ | RESP},
    [BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH] = {"raw.http.request.uri.path", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_REQUEST_URI_QUERY] = {"http.request.uri.query", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_USER_AGENT] = {"http.user_agent", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_REFERER] = {"http.referer", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_COOKIE] = {"http.cookie", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_X_FORWARDED_FOR] = {"http.x_forwarded_for", BYTES, REQ | RESP},
    [BW_RULES_F_HTTP_REQUEST_HEADERS] = {"http.request.headers",
                                         {.kind = BW_RULES_T_MAP, .elem = BW_RULES_T_BYTES},
                                         REQ | RESP},
    [BW_RULES_F_IP_SRC] = {"ip.src", {.kind = BW_RULES_T_IP, .elem = BW_RULES_T_IP}, REQ | RESP},
    [BW_RULES_F_SSL] = {"ssl", {.kind = BW_RULES_T_BOOL, .elem = BW_RULES_T_BOOL}, REQ | RESP},
    [BW_RULES_F_BOT_SCORE] = {"bot.score",
                              {.kind = BW_RULES_T_INT, .elem = BW_RULES_T_INT},
                              REQ | RESP},
    [BW_RULES_F_HTTP_RESPONSE_CODE] = {"http.response.code",
                                       {.kind = BW_RULES_T_INT, .elem = BW_RULES_T_INT},
                                       RESP},
    [BW_RULES_F_HTTP_RESPONSE_HEADERS] = {"http.response.headers",
                                          {.kind = BW_RULES_T_MAP, .elem = BW_RULES_T_BYTES},
                                          RESP},
};

static const struct bw_rules_func_info funcs[BW_RULES_FN__COUNT] = {
    [BW_RULES_FN_LOWER] = {"lower", 1, 1, "lower(Bytes) -> Bytes"},
    [BW_RULES_FN_UPPER] = {"upper", 1, 1, "upper(Bytes) -> Bytes"},
    [BW_RULES_FN_LEN] = {"len", 1, 1, "len(Bytes or Array) -> Int"},
    [BW_RULES_FN_STARTS_WITH] = {"starts_with", 2, 2, "starts_with(Bytes, Bytes) -> Bool"},
    [BW_RULES_FN_ENDS_WITH] = {"ends_with", 2, 2, "ends_with(Bytes, Bytes) -> Bool"},
    [BW_RULES_FN_URL_DECODE] = {"url_decode", 1, 1, "url_decode(Bytes) -> Bytes"},
    [BW_RULES_FN_CONCAT] = {"concat", 2, 16, "concat(Bytes, Bytes, ...) -> Bytes"},
    [BW_RULES_FN_ANY] = {"any", 1, 1, "any(Array<Bool>) -> Bool"},
    [BW_RULES_FN_ALL] = {"all", 1, 1, "all(Array<Bool>) -> Bool"},
    [BW_RULES_FN_HAS] = {"has", 1, 1, "has(field) -> Bool"},
};

const struct bw_rules_field_info *bw_rules_field_info(enum bw_rules_field f)
{
    return &fields[f];
}

const struct bw_rules_func_info *bw_rules_func_info(enum bw_rules_func fn)
{
    return &funcs[fn];
}

static bool name_is(bw_slice s, const char *name)
{
    size_t n = strlen(name);
    return s.len == n && memcmp(s.ptr, name, n) == 0;
}

bw_status bw_rules_field_lookup(bw_slice name, enum bw_rules_field *ret)
{
    for (int i = 0; i < BW_RULES_F__COUNT; i++)
        if (name_is(name, fields[i].name)) {
            *ret = (enum bw_rules_field)i;
            return BW_OK;
        }
    return BW_ERR;
}

bw_status bw_rules_func_lookup(bw_slice name, enum bw_rules_func *ret)
{
    for (int i = 0; i < BW_RULES_FN__COUNT; i++)
        if (name_is(name, funcs[i].name)) {
            *ret = (enum bw_rules_func)i;
            return BW_OK;
        }
    return BW_ERR;
}

enum { SUGGEST_MAX = 64 };

/* Levenshtein distance with both strings at most SUGGEST_MAX bytes. */
static size_t edit_distance(bw_slice a, const char *b)
{
    size_t bn = strlen(b);
    size_t row[SUGGEST_MAX + 1];
    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= a.len; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t cost = a.ptr[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

bw_status bw_rules_suggest(bw_slice name, bool want_funcs, const char **ret)
{
    if (name.len == 0 || name.len > SUGGEST_MAX)
        return BW_ERR;
    /* Close enough: at most a third of the name's length, and at most 3. */
    size_t limit = name.len / 3;
    if (limit > 3)
        limit = 3;
    if (limit == 0)
        limit = 1;
    const char *best = NULL;
    size_t best_d = limit + 1;
    int n = want_funcs ? BW_RULES_FN__COUNT : BW_RULES_F__COUNT;
    for (int i = 0; i < n; i++) {
        const char *cand = want_funcs ? funcs[i].name : fields[i].name;
        size_t d = edit_distance(name, cand);
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    if (best_d > limit)
        return BW_ERR;
    *ret = best;
    return BW_OK;
}

const char *bw_rules_type_name(struct bw_rules_type t)
{
    switch (t.kind) {
    case BW_RULES_T_BYTES:
        return "Bytes";
    case BW_RULES_T_INT:
        return "Int";
    case BW_RULES_T_BOOL:
        return "Bool";
    case BW_RULES_T_IP:
        return "Ip";
    case BW_RULES_T_ARRAY:
        switch (t.elem) {
        case BW_RULES_T_BYTES:
            return "Array<Bytes>";
        case BW_RULES_T_INT:
            return "Array<Int>";
        case BW_RULES_T_BOOL:
            return "Array<Bool>";
        case BW_RULES_T_IP:
            return "Array<Ip>";
        case BW_RULES_T_ARRAY:
        case BW_RULES_T_MAP:
        case BW_RULES_T__COUNT:
            break;
        }
        return "Array<?>";
    case BW_RULES_T_MAP:
        switch (t.elem) {
        case BW_RULES_T_BYTES:
            return "Map<Array<Bytes>>";
        case BW_RULES_T_INT:
        case BW_RULES_T_BOOL:
        case BW_RULES_T_IP:
        case BW_RULES_T_ARRAY:
        case BW_RULES_T_MAP:
        case BW_RULES_T__COUNT:
            break;
        }
        return "Map<?>";
    case BW_RULES_T__COUNT:
        break;
    }
    return "?";
}

const char *bw_rules_phase_name(enum bw_rules_phase p)
{
    switch (p) {
    case BW_RULES_PHASE_REQUEST:
        return "request";
    case BW_RULES_PHASE_RESPONSE:
        return "response";
    case BW_RULES_PHASE__COUNT:
        break;
    }
    return "?";
}
