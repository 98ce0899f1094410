/* The bot_score module's core (bot_score.h): the feature file's validation
 * and compilation, and scoring.
 *
 * Validation runs in three passes over a file that is never trusted: the
 * bytes (size, NUL, UTF-8), the JSON (jansson, duplicate keys refused), then
 * the model's shape and every feature. jansson keeps no positions for the
 * values it returns, so a small locator re-walks the (by then valid) JSON
 * text to put a line:col on an error, only for the errors that are shown. */
#include "modules/bot_score.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/file.h"
#include "rules/rules.h"

/* ---- where an error is -------------------------------------------------------- */

/* A place in the file, resolved to a byte offset only when an error there is
 * shown (resolving walks the text). */
enum where_kind {
    W_FILE,          /* the file as a whole: no line:col */
    W_OFFSET,        /* a byte offset */
    W_TOP,           /* the top-level value */
    W_TOP_KEY,       /* the value of top-level key `key` */
    W_TOP_KEYNAME,   /* the top-level key `key` itself */
    W_ELEM,          /* features[index] */
    W_ELEM_KEY,      /* the value of features[index].key */
    W_ELEM_KEYNAME,  /* the key features[index].key itself */
    W_ELEM_KEY_EXPR, /* features[index].key is a string; `off` bytes into its decoded text */
    W__COUNT
};

struct where {
    enum where_kind kind;
    const char *key;
    size_t index;
    size_t off;
};

static struct where at_file(void)
{
    return (struct where){.kind = W_FILE};
}
static struct where at_off(size_t off)
{
    return (struct where){.kind = W_OFFSET, .off = off};
}
static struct where at_top_key(const char *key)
{
    return (struct where){.kind = W_TOP_KEY, .key = key};
}
static struct where at_elem(size_t i)
{
    return (struct where){.kind = W_ELEM, .index = i};
}
static struct where at_elem_key(size_t i, const char *key)
{
    return (struct where){.kind = W_ELEM_KEY, .index = i, .key = key};
}

/* ---- the locator: positions in text jansson has already accepted ------------- */

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

/* i at an opening quote; returns the offset just past the closing one. */
static size_t skip_string(const char *t, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (t[i] == '\\')
            i++;
        else if (t[i] == '"')
            return i + 1;
    }
    return len;
}

/* i at a value; returns the offset just past it. Iterative, so nesting depth
 * costs no stack. */
static size_t skip_value(const char *t, size_t len, size_t i)
{
    size_t depth = 0;
    while (i < len) {
        char c = t[i];
        if (c == '"') {
            i = skip_string(t, len, i);
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of the container holding a scalar */
            depth--;
            i++;
        } else if (depth > 0) {
            i++;
            continue;
        } else {
            /* A number or a literal: up to a delimiter. */
            while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' &&
                   t[i] != '\t' && t[i] != '\n' && t[i] != '\r')
                i++;
            return i;
        }
        if (depth == 0)
            return i;
    }
    return len;
}

/* The member of the object at obj whose key is spelled exactly key in the
 * file (an escaped spelling is not found: the caller falls back to the
 * object). */
static bool obj_member(const char *t, size_t len, size_t obj, const char *key, size_t *ret_key,
                       size_t *ret_val)
{
    if (obj >= len || t[obj] != '{')
        return false;
    size_t klen = strlen(key);
    size_t i = skip_ws(t, len, obj + 1);
    while (i < len && t[i] == '"') {
        size_t kend = skip_string(t, len, i);
        size_t v = skip_ws(t, len, skip_ws(t, len, kend) + 1); /* past ':' */
        if (kend - i == klen + 2 && memcmp(t + i + 1, key, klen) == 0) {
            *ret_key = i;
            *ret_val = v;
            return true;
        }
        i = skip_ws(t, len, skip_value(t, len, v));
        if (i < len && t[i] == ',')
            i = skip_ws(t, len, i + 1);
        else
            break;
    }
    return false;
}

static bool arr_elem(const char *t, size_t len, size_t arr, size_t index, size_t *ret)
{
    if (arr >= len || t[arr] != '[')
        return false;
    size_t i = skip_ws(t, len, arr + 1);
    for (size_t k = 0; i < len && t[i] != ']'; k++) {
        if (k == index) {
            *ret = i;
            return true;
        }
        i = skip_ws(t, len, skip_value(t, len, i));
        if (i < len && t[i] == ',')
            i = skip_ws(t, len, i + 1);
        else
            break;
    }
    return false;
}

static unsigned hexval(char c)
{
    return c >= '0' && c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* i at a string's opening quote: the offset in the file of the byte that is
 * `dec` bytes into its decoded value (an escape stands for 1 to 4 bytes). */
static size_t string_raw_offset(const char *t, size_t len, size_t i, size_t dec)
{
    size_t d = 0;
    for (i++; i < len && t[i] != '"';) {
        size_t step = 1, bytes = 1;
        if (t[i] == '\\' && i + 1 < len) {
            step = 2;
            if (t[i + 1] == 'u' && i + 5 < len) {
                unsigned u = 0;
                for (int k = 2; k < 6; k++)
                    u = u << 4 | hexval(t[i + k]);
                step = 6;
                bytes = u < 0x80 ? 1 : u < 0x800 ? 2 : 3;
                if (u >= 0xD800 && u < 0xDC00 && i + 7 < len && t[i + 6] == '\\') {
                    step = 12; /* a surrogate pair: one 4-byte character */
                    bytes = 4;
                }
            }
        }
        if (d + bytes > dec)
            return i;
        d += bytes;
        i += step;
    }
    return i;
}

/* ---- the load: state and report ----------------------------------------------- */

/* An error kept for the report: the first BW_BOT_MAX_ERRORS found are
 * shown, sorted into file order (checks run top level first, then feature
 * by feature, key by key). */
struct shown {
    bool has_pos;
    size_t off;
    char text[BW_RULES_DIAG_TEXT_MAX + 512];
};

struct ld {
    const char *path;
    const char *text;
    size_t len;
    char *buf;
    size_t cap, blen;
    struct shown items[BW_BOT_MAX_ERRORS];
    size_t nerr, dropped;
    bool parsed; /* the text is valid JSON: the locator may walk it */
};

static void put(struct ld *ld, const char *fmt, ...) BW_PRINTF(2, 3);
static void put(struct ld *ld, const char *fmt, ...)
{
    if (ld->cap == 0 || ld->blen >= ld->cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ld->buf + ld->blen, ld->cap - ld->blen, fmt, ap);
    va_end(ap);
    if (n > 0)
        ld->blen = (size_t)n < ld->cap - ld->blen ? ld->blen + (size_t)n : ld->cap - 1;
}

/* The byte offset of w, when it has one. */
static bool resolve(const struct ld *ld, struct where w, size_t *ret)
{
    const char *t = ld->text;
    size_t len = ld->len, top, k, v, e;
    switch (w.kind) {
    case W_FILE:
        return false;
    case W_OFFSET:
        *ret = w.off;
        return true;
    case W_TOP:
    case W_TOP_KEY:
    case W_TOP_KEYNAME:
    case W_ELEM:
    case W_ELEM_KEY:
    case W_ELEM_KEYNAME:
    case W_ELEM_KEY_EXPR:
        break;
    case W__COUNT:
        return false;
    }
    if (!ld->parsed)
        return false;
    top = skip_ws(t, len, 0);
    *ret = top;
    switch (w.kind) {
    case W_TOP_KEY:
    case W_TOP_KEYNAME:
        if (obj_member(t, len, top, w.key, &k, &v))
            *ret = w.kind == W_TOP_KEY ? v : k;
        return true;
    case W_ELEM:
    case W_ELEM_KEY:
    case W_ELEM_KEYNAME:
    case W_ELEM_KEY_EXPR:
        if (!obj_member(t, len, top, "features", &k, &v))
            return true;
        *ret = v;
        if (!arr_elem(t, len, v, w.index, &e))
            return true;
        *ret = e;
        if (w.kind == W_ELEM || !obj_member(t, len, e, w.key, &k, &v))
            return true;
        *ret = w.kind == W_ELEM_KEYNAME ? k : v;
        if (w.kind == W_ELEM_KEY_EXPR && v < len && t[v] == '"')
            *ret = string_raw_offset(t, len, v, w.off);
        return true;
    case W_FILE:
    case W_OFFSET:
    case W_TOP:
    case W__COUNT:
        break;
    }
    return true;
}

/* One error line ("path:line:col: error: msg"), then tail (caret lines)
 * as given. Past BW_BOT_MAX_ERRORS the error is only counted. */
static void verr(struct ld *ld, struct where w, const char *tail, const char *fmt, va_list ap)
{
    if (ld->nerr >= BW_BOT_MAX_ERRORS) {
        ld->dropped++;
        return;
    }
    struct shown *e = &ld->items[ld->nerr++];
    e->has_pos = resolve(ld, w, &e->off);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (e->has_pos) {
        uint32_t line = 1;
        size_t ls = 0;
        for (size_t i = 0; i < e->off && i < ld->len; i++)
            if (ld->text[i] == '\n') {
                line++;
                ls = i + 1;
            }
        snprintf(e->text, sizeof e->text, "%s:%u:%zu: error: %s\n%s", ld->path, line,
                 e->off - ls + 1, msg, tail);
    } else {
        snprintf(e->text, sizeof e->text, "%s: error: %s\n%s", ld->path, msg, tail);
    }
}

/* Writes the kept errors into the report: the file as a whole first, then
 * by position (a stable sort: equal positions keep the order found). */
static void flush(struct ld *ld)
{
    size_t order[BW_BOT_MAX_ERRORS];
    for (size_t i = 0; i < ld->nerr; i++) {
        size_t k = i;
        const struct shown *e = &ld->items[i];
        for (; k > 0; k--) {
            const struct shown *p = &ld->items[order[k - 1]];
            bool before = p->has_pos && (!e->has_pos || e->off < p->off);
            if (!before)
                break;
            order[k] = order[k - 1];
        }
        order[k] = i;
    }
    for (size_t i = 0; i < ld->nerr; i++)
        put(ld, "%s", ld->items[order[i]].text);
    if (ld->dropped)
        put(ld, "%s: error: %zu more errors not shown\n", ld->path, ld->dropped);
}

static void err(struct ld *ld, struct where w, const char *fmt, ...) BW_PRINTF(3, 4);
static void err(struct ld *ld, struct where w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(ld, w, "", fmt, ap);
    va_end(ap);
}

static void err_tail(struct ld *ld, struct where w, const char *tail, const char *fmt, ...)
    BW_PRINTF(4, 5);
static void err_tail(struct ld *ld, struct where w, const char *tail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(ld, w, tail, fmt, ap);
    va_end(ap);
}

/* A value from the file, quoted for a message: printable ASCII kept, the
 * rest as \xNN, at most 40 bytes shown. */
static const char *echo(const char *s, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* The shortest decimal that reads back as v: 1000.0000001 must not show as
 * "1000" in "1000 is outside -1000 to 1000". */
static const char *num(double v, char *buf, size_t cap)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static const char *kind_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* ---- pass 1: the bytes ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (RFC 3629 §4: no overlongs, no
 * surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t k;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return k;
}

static bool check_bytes(struct ld *ld)
{
    if (ld->len > BW_BOT_MAX_FILE_BYTES) {
        err(ld, at_file(), "the feature file is %zu bytes, over the limit of %zu bytes", ld->len,
            BW_BOT_MAX_FILE_BYTES);
        return false;
    }
    if (skip_ws(ld->text, ld->len, 0) == ld->len) {
        err(ld, at_file(), "the feature file is empty");
        return false;
    }
    const unsigned char *s = (const unsigned char *)ld->text;
    if (ld->len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) {
        err(ld, at_off(0),
            "the file starts with a byte order mark; JSON text has none (RFC 8259 "
            "§8.1): save it as UTF-8 without a BOM");
        return false;
    }
    for (size_t i = 0; i < ld->len;) {
        if (s[i] == 0) {
            err(ld, at_off(i), "a NUL byte: a feature file is UTF-8 JSON text");
            return false;
        }
        size_t k = utf8_seq(s + i, ld->len - i);
        if (k == 0) {
            err(ld, at_off(i), "invalid UTF-8 (byte 0x%02x): a feature file is UTF-8 JSON text",
                s[i]);
            return false;
        }
        i += k;
    }
    return true;
}

/* ---- pass 3: the model ---------------------------------------------------------- */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Does the expression read field f? *ret_at is the first place it does. */
static bool reads_field(const struct bw_rules_node *n, enum bw_rules_field f,
                        struct bw_rules_span *ret_at)
{
    switch (n->kind) {
    case BW_RULES_N_BOOL:
    case BW_RULES_N_INT:
    case BW_RULES_N_BYTES:
    case BW_RULES_N_IP:
        return false;
    case BW_RULES_N_FIELD:
        if (n->u.field == f)
            *ret_at = n->span;
        return n->u.field == f;
    case BW_RULES_N_MAP_GET:
        return reads_field(n->u.map_get.map, f, ret_at);
    case BW_RULES_N_INDEX:
        return reads_field(n->u.index.array, f, ret_at);
    case BW_RULES_N_EACH:
        return reads_field(n->u.each.array, f, ret_at);
    case BW_RULES_N_CALL:
        for (size_t i = 0; i < n->u.call.nargs; i++)
            if (reads_field(n->u.call.args[i], f, ret_at))
                return true;
        return false;
    case BW_RULES_N_NOT:
        return reads_field(n->u.not_.operand, f, ret_at);
    case BW_RULES_N_LOGIC:
        for (size_t i = 0; i < n->u.logic.n; i++)
            if (reads_field(n->u.logic.operands[i], f, ret_at))
                return true;
        return false;
    case BW_RULES_N_COMPARE:
        return reads_field(n->u.compare.lhs, f, ret_at) || reads_field(n->u.compare.rhs, f, ret_at);
    case BW_RULES_N_MATCHES:
        return reads_field(n->u.matches.lhs, f, ret_at);
    case BW_RULES_N_IN:
        return reads_field(n->u.in.lhs, f, ret_at);
    case BW_RULES_N__COUNT:
        break;
    }
    return false;
}

/* The excerpt under an error in features[i]'s expression: the file's own
 * line, with the caret under the span's bytes as the JSON string spells
 * them (escapes and all); the decoded expression only when the string
 * cannot be found. */
static void expr_excerpt(const struct ld *ld, size_t i, bw_slice expr, struct bw_rules_span span,
                         char *out, size_t cap)
{
    struct where w = {.kind = W_ELEM_KEY_EXPR, .index = i, .key = "expression", .off = span.off};
    size_t start, end;
    if (!resolve(ld, w, &start)) {
        bw_rules_excerpt(expr, span.off, (size_t)span.off + span.len, out, cap);
        return;
    }
    w.off = (size_t)span.off + span.len;
    if (!resolve(ld, w, &end) || end < start)
        end = start;
    bw_rules_excerpt(bw_slice_make(ld->text, ld->len), start, end, out, cap);
}

enum { LABEL_MAX = BW_BOT_MAX_NAME_LEN + 48 };

/* Validates features[i]; on success fills *ret_f and *ret_e. prev[k] for
 * k < i holds a name where named[k] (the duplicate check); named[i] is set
 * here when features[i]'s name is valid and new. */
static bool load_feature(struct ld *ld, bw_arena *a, size_t i, const json_t *f,
                         const struct bw_bot_feature *prev, bool *named,
                         struct bw_bot_feature *ret_f, const struct bw_rules_expr **ret_e)
{
    char q[256];
    if (!json_is_object(f)) {
        err(ld, at_elem(i),
            "features[%zu]: expected an object like {\"name\": \"ua_curl\", \"expression\": "
            "\"...\", \"weight\": 3.0}, got %s",
            i, kind_name(f));
        return false;
    }
    bool ok = true;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)f, key, val)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "expression") != 0 &&
            strcmp(key, "weight") != 0) {
            err(ld, (struct where){.kind = W_ELEM_KEYNAME, .index = i, .key = key},
                "features[%zu]: unknown key %s (expected one of: name, expression, weight)", i,
                echo(key, strlen(key), q, sizeof q));
            ok = false;
        }
    }
    static const char *const required[] = {"name", "expression", "weight"};
    for (size_t k = 0; k < 3; k++)
        if (!json_object_get(f, required[k])) {
            err(ld, at_elem(i), "features[%zu]: missing required key \"%s\"", i, required[k]);
            ok = false;
        }

    /* The name first: later messages say which feature by it. */
    char label[LABEL_MAX];
    snprintf(label, sizeof label, "features[%zu]", i);
    const json_t *jn = json_object_get(f, "name");
    bool name_ok = false;
    if (jn && !json_is_string(jn)) {
        err(ld, at_elem_key(i, "name"), "%s: name: expected a string, got %s", label,
            kind_name(jn));
    } else if (jn) {
        const char *s = json_string_value(jn);
        size_t n = json_string_length(jn);
        size_t bad = n;
        for (size_t k = 0; k < n && bad == n; k++)
            if (!name_char(s[k]))
                bad = k;
        if (n == 0)
            err(ld, at_elem_key(i, "name"),
                "%s: name is empty; a name is 1 to %d bytes of [A-Za-z0-9_.-]", label,
                BW_BOT_MAX_NAME_LEN);
        else if (n > BW_BOT_MAX_NAME_LEN)
            err(ld, at_elem_key(i, "name"), "%s: name is %zu bytes, over the limit of %d", label, n,
                BW_BOT_MAX_NAME_LEN);
        else if (bad < n)
            err(ld, at_elem_key(i, "name"),
                "%s: name %s has a character outside [A-Za-z0-9_.-] at byte %zu", label,
                echo(s, n, q, sizeof q), bad + 1);
        else {
            name_ok = true;
            ret_f->name = bw_arena_slice_dup(a, bw_slice_make(s, n));
            if (!ret_f->name.ptr) {
                err(ld, at_file(), "out of memory loading the feature file");
                return false;
            }
            snprintf(label, sizeof label, "features[%zu] \"%.*s\"", i, (int)n, s);
            for (size_t k = 0; k < i; k++)
                if (named[k] && bw_slice_eq(prev[k].name, ret_f->name)) {
                    err(ld, at_elem_key(i, "name"),
                        "%s: duplicate name, first used by features[%zu]", label, k);
                    name_ok = false;
                    break;
                }
        }
    }
    named[i] = name_ok;
    ok = ok && name_ok;

    const json_t *jw = json_object_get(f, "weight");
    if (jw && !json_is_number(jw)) {
        err(ld, at_elem_key(i, "weight"), "%s: weight: expected a number, got %s", label,
            kind_name(jw));
        ok = false;
    } else if (jw) {
        double w = json_number_value(jw);
        if (!isfinite(w) || w < -BW_BOT_MAX_WEIGHT || w > BW_BOT_MAX_WEIGHT) {
            err(ld, at_elem_key(i, "weight"), "%s: weight %s is outside %g to %g", label,
                num(w, q, sizeof q), -BW_BOT_MAX_WEIGHT, BW_BOT_MAX_WEIGHT);
            ok = false;
        }
        ret_f->weight = w;
    }

    const json_t *jx = json_object_get(f, "expression");
    if (jx && !json_is_string(jx)) {
        err(ld, at_elem_key(i, "expression"), "%s: expression: expected a string, got %s", label,
            kind_name(jx));
        return false;
    }
    if (!jx)
        return false;
    bw_slice text = bw_slice_make(json_string_value(jx), json_string_length(jx));
    const struct bw_rules_srcpos where = {
        .file = bw_slice_make(ld->path, strlen(ld->path)), .line = 1, .col = 1, .cont_col = 1};
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    if (bw_rules_parse(a, text, BW_RULES_PHASE_REQUEST, &where, &e, &d) != BW_OK) {
        /* Ours names the feature, and shows the token where it is in this
         * file: the front end only knows the decoded string. */
        char tail[320];
        expr_excerpt(ld, i, text, (struct bw_rules_span){.off = d.off, .len = d.len}, tail,
                     sizeof tail);
        err_tail(
            ld,
            (struct where){.kind = W_ELEM_KEY_EXPR, .index = i, .key = "expression", .off = d.off},
            tail, "%s: expression: %s", label, d.msg);
        return false;
    }
    struct bw_rules_span at;
    if (reads_field(e->root, BW_RULES_F_BOT_SCORE, &at)) {
        char tail[320];
        expr_excerpt(ld, i, e->text, at, tail, sizeof tail);
        err_tail(
            ld,
            (struct where){.kind = W_ELEM_KEY_EXPR, .index = i, .key = "expression", .off = at.off},
            tail, "%s: expression reads bot.score: a feature cannot depend on the score it feeds",
            label);
        return false;
    }
    ret_f->expression = e->text;
    *ret_e = e;
    return ok;
}

static bool get_weightlike(struct ld *ld, const json_t *j, const char *key, double *out)
{
    if (!json_is_number(j)) {
        err(ld, at_top_key(key), "%s: expected a number, got %s", key, kind_name(j));
        return false;
    }
    double v = json_number_value(j);
    if (!isfinite(v) || v < -BW_BOT_MAX_WEIGHT || v > BW_BOT_MAX_WEIGHT) {
        char q[64];
        err(ld, at_top_key(key), "%s %s is outside %g to %g", key, num(v, q, sizeof q),
            -BW_BOT_MAX_WEIGHT, BW_BOT_MAX_WEIGHT);
        return false;
    }
    *out = v;
    return true;
}

static bool load_model(struct ld *ld, const json_t *root, const struct bw_bot_load_opts *opts,
                       struct bw_bot_model *m)
{
    if (!json_is_object(root)) {
        err(ld, (struct where){.kind = W_TOP},
            "the top level: expected an object like {\"version\": 1, \"bias\": 0.0, "
            "\"features\": [...]}, got %s",
            kind_name(root));
        return false;
    }
    char q[256];
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)root, key, val)
    {
        if (strcmp(key, "version") != 0 && strcmp(key, "bias") != 0 && strcmp(key, "features") != 0)
            err(ld, (struct where){.kind = W_TOP_KEYNAME, .key = key},
                "unknown key %s in the top level (expected one of: version, bias, features)",
                echo(key, strlen(key), q, sizeof q));
    }
    static const char *const required[] = {"version", "bias", "features"};
    for (size_t k = 0; k < 3; k++)
        if (!json_object_get(root, required[k]))
            err(ld, (struct where){.kind = W_TOP}, "missing required key \"%s\" in the top level",
                required[k]);

    const json_t *jv = json_object_get(root, "version");
    if (jv && (!json_is_integer(jv) || json_integer_value(jv) < 0)) {
        if (json_is_integer(jv))
            err(ld, at_top_key("version"), "version: expected a non-negative integer, got %lld",
                (long long)json_integer_value(jv));
        else
            err(ld, at_top_key("version"), "version: expected a non-negative integer, got %s",
                kind_name(jv));
    } else if (jv) {
        m->version = (uint64_t)json_integer_value(jv);
        if (opts->running.known && m->version < opts->running.version)
            err(ld, at_top_key("version"),
                "version %llu is lower than the %s's version %llu: a feature file's "
                "version must not go backwards",
                (unsigned long long)m->version,
                opts->running.is_lkg ? "last-known-good copy" : "running model",
                (unsigned long long)opts->running.version);
    }
    const json_t *jb = json_object_get(root, "bias");
    if (jb)
        (void)get_weightlike(ld, jb, "bias", &m->bias);

    const json_t *jf = json_object_get(root, "features");
    if (!jf)
        return false;
    if (!json_is_array(jf)) {
        err(ld, at_top_key("features"), "features: expected an array of features, got %s",
            kind_name(jf));
        return false;
    }
    size_t n = json_array_size(jf);
    if (n > opts->max_features) {
        /* Stop here: the count alone rejects the file, and a file this long
         * is not worth compiling feature by feature (outage 1). */
        err(ld, at_elem(opts->max_features), "features[%u]: %zu features, over max_features %u",
            opts->max_features, n, opts->max_features);
        return false;
    }
    if (n < BW_BOT_MIN_FEATURES) {
        err(ld, at_top_key("features"),
            "features: the list is empty; a model needs at least %d feature (an empty model would "
            "score every request alike)",
            BW_BOT_MIN_FEATURES);
        return false;
    }
    struct bw_bot_feature *fs = bw_arena_alloc(&m->arena, n * sizeof *fs);
    const struct bw_rules_expr **es = bw_arena_alloc(&m->arena, n * sizeof *es);
    bool *named = bw_arena_alloc(&m->arena, n * sizeof *named);
    if (!fs || !es || !named) {
        err(ld, at_file(), "out of memory loading the feature file");
        return false;
    }
    bool all = true;
    for (size_t i = 0; i < n; i++)
        all &= load_feature(ld, &m->arena, i, json_array_get(jf, i), fs, named, &fs[i], &es[i]);
    if (!all || ld->nerr > 0)
        return false;
    bw_error e;
    if (bw_rules_compile(&m->arena, es, n, &m->prog, &e) != BW_OK) {
        err(ld, at_file(), "the features do not compile: %s", e.msg);
        return false;
    }
    m->features = fs;
    m->nfeatures = n;
    return true;
}

struct bw_bot_model *bw_bot_model_free(struct bw_bot_model *m)
{
    if (!m)
        return NULL;
    m->prog = bw_rules_prog_free(m->prog);
    bw_arena_reset(&m->arena);
    free(m);
    return NULL;
}

/* Parses and validates into a new model; false with ld holding why. */
static bool parse(struct ld *ld, const struct bw_bot_load_opts *opts, struct bw_bot_model **ret)
{
    if (opts->max_features < 1 || opts->max_features > BW_CONFIG_BOT_MAX_FEATURES_CAP) {
        err(ld, at_file(), "max_features %u is outside 1 to %d", opts->max_features,
            BW_CONFIG_BOT_MAX_FEATURES_CAP);
        return false;
    }
    if (!check_bytes(ld))
        return false;
    json_error_t je;
    json_t *root = json_loadb(ld->text, ld->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        /* jansson's line:column (in characters, at the end of the offending
         * token). A file cut short is the likeliest cause of a generated
         * file's syntax error: say so. */
        struct shown *e = &ld->items[ld->nerr++];
        e->has_pos = false;
        snprintf(e->text, sizeof e->text, "%s:%d:%d: error: %s: %s\n", ld->path, je.line, je.column,
                 json_error_code(&je) == json_error_premature_end_of_input
                     ? "the JSON ends early (is the file truncated?)"
                     : "invalid JSON",
                 je.text);
        return false;
    }
    ld->parsed = true;
    struct bw_bot_model *m = calloc(1, sizeof *m);
    if (!m) {
        json_decref(root);
        err(ld, at_file(), "out of memory loading the feature file");
        return false;
    }
    bw_arena_init(&m->arena, 64 * 1024, 0);
    bool ok = load_model(ld, root, opts, m);
    json_decref(root);
    if (ok) {
        m->path = bw_arena_slice_dup(&m->arena, bw_slice_make(ld->path, strlen(ld->path)));
        ok = m->path.ptr != NULL;
        if (!ok)
            err(ld, at_file(), "out of memory loading the feature file");
    }
    if (!ok) {
        m = bw_bot_model_free(m);
        return false;
    }
    m->hash = bw_file_hash(ld->text, ld->len);
    m->file_bytes = ld->len;
    *ret = m;
    return true;
}

bw_status bw_bot_model_parse(const char *path, const char *text, size_t len,
                             const struct bw_bot_load_opts *opts, struct bw_bot_model **ret,
                             char *report, size_t cap)
{
    /* About 25 KiB of kept errors: on the heap, not the control thread's
     * stack. */
    struct ld *ld = calloc(1, sizeof *ld);
    if (cap)
        report[0] = '\0';
    if (!ld) {
        snprintf(report, cap, "%s: error: out of memory loading the feature file\n", path);
        return BW_ERR;
    }
    *ld = (struct ld){.path = path, .text = text, .len = len, .buf = report, .cap = cap};
    bool ok = parse(ld, opts, ret);
    flush(ld);
    free(ld);
    return ok ? BW_OK : BW_ERR;
}

BW_PRINTF(4, 5)
static bw_status file_fail(const char *path, char *report, size_t cap, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(report, cap, "%s: error: %s\n", path, msg);
    return BW_ERR;
}

bw_status bw_bot_model_load_file(const char *path, const struct bw_bot_load_opts *opts,
                                 struct bw_bot_model **ret, struct bw_file_bytes *ret_bytes,
                                 char *report, size_t cap)
{
    static const struct bw_file_what what = {
        .noun = "the feature file", .kind = "feature file", .max_bytes = BW_BOT_MAX_FILE_BYTES};
    char *buf;
    size_t len;
    char err[512];
    if (bw_read_file(path, &what, &buf, &len, err, sizeof err) != BW_OK) {
        if (opts->named_at) {
            snprintf(report, cap, "%s: %s: %s\n", opts->named_at, path, err);
            return BW_ERR;
        }
        return file_fail(path, report, cap, "%s", err);
    }
    bw_status s = bw_bot_model_parse(path, buf, len, opts, ret, report, cap);
    if (s == BW_OK && ret_bytes)
        *ret_bytes = bw_file_bytes_take(buf, len);
    else
        free(buf);
    return s;
}

/* ---- per worker ------------------------------------------------------------------ */

bw_status bw_bot_worker_init(struct bw_bot_worker *w, const struct bw_bot_model *m, bw_error *err)
{
    w->model = m;
    bw_regex_scratch_init(&w->scratch);
    if (bw_rules_prog_reserve(m->prog, &w->scratch, err) != BW_OK) {
        bw_regex_scratch_done(&w->scratch);
        return BW_ERR;
    }
    return BW_OK;
}

void bw_bot_worker_done(struct bw_bot_worker *w)
{
    bw_regex_scratch_done(&w->scratch);
}

/* ---- per request ----------------------------------------------------------------- */

int64_t bw_bot_score_of(double x)
{
    double sigmoid = 1.0 / (1.0 + exp(-x)); /* exp overflows to inf: sigmoid 0, no NaN */
    double y = 98.0 * (1.0 - sigmoid);      /* 0..98 */
    if (!(y >= 0.0)) /* NaN (x was NaN): the model's bounds make it impossible */
        y = 49.0;
    if (y > 98.0)
        y = 98.0;
    /* round() half away from zero, for y >= 0, without libm's round. */
    return 1 + (int64_t)(y + 0.5);
}

static struct bw_bot_result failed(enum bw_bot_failure why, const struct bw_rules_ctx *cx)
{
    return (struct bw_bot_result){
        .outcome = BW_BOT_FAILED, .u.failed = {.reason = why}, .stats = cx->stats};
}

struct bw_bot_result bw_bot_score(const struct bw_bot_model *m, const struct bw_request_view *v,
                                  bw_arena *arena, bw_regex_scratch *scratch)
{
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, m->prog, v, arena, scratch);
    double sum = 0.0;
    uint32_t ntrue = 0, nunknown = 0;
    for (size_t i = 0; i < m->nfeatures; i++) {
        enum bw_tri t = bw_rules_eval(&cx, i);
        /* A value the evaluator could not compute reads as unknown; in a
         * score that would silently drop a feature, so it fails instead. */
        if (cx.stats.arena_failures)
            return failed(BW_BOT_FAIL_ARENA, &cx);
        if (cx.stats.regex_failures)
            return failed(BW_BOT_FAIL_REGEX, &cx);
        switch (t) {
        case BW_TRI_TRUE:
            sum += m->features[i].weight;
            ntrue++;
            break;
        case BW_TRI_FALSE:
            break;
        case BW_TRI_UNKNOWN:
            nunknown++; /* missing is not zero: it adds nothing either way */
            break;
        case BW_TRI__COUNT:
            break;
        }
    }
    return (struct bw_bot_result){
        .outcome = BW_BOT_SCORED,
        .u.scored = {.score = bw_bot_score_of(m->bias + sum), .ntrue = ntrue, .nunknown = nunknown},
        .stats = cx.stats};
}
