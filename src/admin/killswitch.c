/* The POST /killswitch body: JSON decoding (jansson), its schema and the
 * target grammar. Applying a killswitch is the proxy's (bw_admin_ops). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"

/* How much of a client's string an error sentence quotes. */
enum { QUOTE_MAX = 80 };

struct bw_killswitch_body {
    json_t *root;
};

static int quote_len(size_t n)
{
    return n > QUOTE_MAX ? QUOTE_MAX : (int)n;
}

static const char *ellipsis(size_t n)
{
    return n > QUOTE_MAX ? "..." : "";
}

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static bw_status check_id(bw_slice target, bw_slice id, const char *what, bw_error *err)
{
    bool ok = id.len >= 1 && id.len <= BW_ADMIN_ID_MAX;
    for (size_t i = 0; ok && i < id.len; i++)
        ok = id_char(id.ptr[i]);
    if (ok)
        return BW_OK;
    return bw_error_set(err,
                        "target \"%.*s%s\": the %s id must be 1 to %d characters of A-Z a-z 0-9 "
                        "_ . -",
                        quote_len(target.len), target.ptr, ellipsis(target.len), what,
                        BW_ADMIN_ID_MAX);
}

bw_status bw_killswitch_parse_target(bw_slice target, struct bw_killswitch_req *ret, bw_error *err)
{
    static const struct {
        const char *prefix;
        enum bw_killswitch_kind kind;
    } kinds[] = {
        {"rule:", BW_KILLSWITCH_RULE},
        {"ruleset:", BW_KILLSWITCH_RULESET},
        {"module:", BW_KILLSWITCH_MODULE},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        bw_slice prefix = bw_slice_make(kinds[k].prefix, strlen(kinds[k].prefix));
        if (!bw_slice_starts_with(target, prefix))
            continue;
        bw_slice rest = bw_slice_sub(target, prefix.len, target.len - prefix.len);
        struct bw_killswitch_req r = {.kind = kinds[k].kind, .target = target};
        switch (kinds[k].kind) {
        case BW_KILLSWITCH_RULE: {
            const char *slash = memchr(rest.ptr, '/', rest.len);
            if (!slash)
                return bw_error_set(err, "target \"%.*s%s\": a rule is named rule:<ruleset>/<rule>",
                                    quote_len(target.len), target.ptr, ellipsis(target.len));
            size_t at = (size_t)(slash - rest.ptr);
            r.u.rule.ruleset = bw_slice_sub(rest, 0, at);
            r.u.rule.rule = bw_slice_sub(rest, at + 1, rest.len - at - 1);
            if (check_id(target, r.u.rule.ruleset, "ruleset", err) != BW_OK ||
                check_id(target, r.u.rule.rule, "rule", err) != BW_OK)
                return BW_ERR;
            break;
        }
        case BW_KILLSWITCH_RULESET:
            r.u.ruleset.ruleset = rest;
            if (check_id(target, rest, "ruleset", err) != BW_OK)
                return BW_ERR;
            break;
        case BW_KILLSWITCH_MODULE:
            r.u.module.module = rest;
            if (check_id(target, rest, "module", err) != BW_OK)
                return BW_ERR;
            break;
        case BW_KILLSWITCH__COUNT:
            return bw_error_set(err, "internal error: killswitch kind");
        }
        *ret = r;
        return BW_OK;
    }
    return bw_error_set(err,
                        "target \"%.*s%s\" must be rule:<ruleset>/<rule>, ruleset:<ruleset> or "
                        "module:<module>",
                        quote_len(target.len), target.ptr, ellipsis(target.len));
}

static bw_status check_body(json_t *root, struct bw_killswitch_req *ret, bw_error *err)
{
    if (!json_is_object(root))
        return bw_error_set(err, "request body must be a JSON object with \"target\" and "
                                 "\"enabled\"");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "target") != 0 && strcmp(key, "enabled") != 0) {
            /* Keys are NUL-free: the decoder refuses \u0000 without
             * JSON_ALLOW_NUL, so strlen is the key's length. */
            size_t n = strlen(key);
            return bw_error_set(err,
                                "unknown key \"%.*s%s\": the body takes only \"target\" and "
                                "\"enabled\"",
                                quote_len(n), key, ellipsis(n));
        }
    }
    json_t *target = json_object_get(root, "target");
    json_t *enabled = json_object_get(root, "enabled");
    if (!target)
        return bw_error_set(err, "missing key \"target\"");
    if (!enabled)
        return bw_error_set(err, "missing key \"enabled\"");
    if (!json_is_string(target))
        return bw_error_set(err, "\"target\" must be a string");
    if (!json_is_boolean(enabled))
        return bw_error_set(err, "\"enabled\" must be true or false");
    bw_slice t = bw_slice_make(json_string_value(target), json_string_length(target));
    if (bw_killswitch_parse_target(t, ret, err) != BW_OK)
        return BW_ERR;
    ret->enabled = json_is_true(enabled);
    return BW_OK;
}

bw_status bw_killswitch_parse_body(bw_slice body, struct bw_killswitch_req *ret,
                                   struct bw_killswitch_body **ret_json, bw_error *err)
{
    if (body.len == 0)
        return bw_error_set(err, "request body is empty: expected a JSON object with \"target\" "
                                 "and \"enabled\"");
    if (body.len > BW_ADMIN_MAX_BODY)
        return bw_error_set(err, "request body larger than %zu bytes", BW_ADMIN_MAX_BODY);
    /* Duplicate keys are refused: {"enabled": true, "enabled": false} must
     * not mean whichever one a parser happens to keep. */
    json_error_t je;
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return bw_error_set(err, "request body is not valid JSON: %s (line %d, column %d)", je.text,
                            je.line, je.column);
    struct bw_killswitch_req r;
    if (check_body(root, &r, err) != BW_OK) {
        json_decref(root);
        return BW_ERR;
    }
    struct bw_killswitch_body *b = malloc(sizeof *b);
    if (!b) {
        json_decref(root);
        return bw_error_set(err, "out of memory");
    }
    b->root = root;
    *ret = r;
    *ret_json = b;
    return BW_OK;
}

void bw_killswitch_body_free(struct bw_killswitch_body *b)
{
    if (!b)
        return;
    json_decref(b->root);
    free(b);
}
