/* Ruleset files: the schema walk from a YAML tree (yaml_tree.c) to struct
 * bw_ruleset, each rule's expression through the rules front end, each
 * action's parameters, the embedded tests' requests and expectations, and
 * the bounded file read.
 *
 * Like load.c, every problem becomes one diagnostic at the position of the
 * offending key or value and the walk goes on, so a user sees every problem
 * of a file at once. Checks that need several files (execute targets,
 * cycles, unique ruleset ids) are bw_rulebook_build's; the few that one
 * file can answer alone (an action in the wrong phase, a repeated rule id)
 * are also made here, where they can be reported together with the rest. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/internal.h"
#include "config/rulesets.h"
#include "http/uri.h"

/* Headers of one embedded test's request (or response). */
#define TEST_MAX_HEADERS 64
/* Bytes of a header value set by a rule or sent by a test. */
#define MAX_HEADER_VALUE 8192
/* Bytes of a header name. */
#define MAX_HEADER_NAME 256
/* Bytes of a redirect location or a rewritten path. */
#define MAX_LOCATION 4096

struct rl {
    bw_arena *a; /* the caller's arena: everything returned lives here */
    struct bw_config_diags *d;
    bool oom;
    bw_slice file;
    struct bw__ysrc src; /* the YAML, to find where a token of an expression is */
    enum bw_rules_phase phase;
    bool phase_ok;
};

/* ---- diagnostics ------------------------------------------------------------ */

BW_PRINTF(4, 5)
static void diag_at(struct rl *rl, uint32_t line, uint32_t col, const char *fmt, ...)
{
    struct bw_config_diags *d = rl->d;
    if (d->n >= BW_CONFIG_MAX_DIAGS) {
        d->dropped++;
        return;
    }
    struct bw_config_diag *g = &d->items[d->n++];
    g->line = line;
    g->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
}

#define DIAG(rl, node, ...) diag_at((rl), (node)->line, (node)->col, __VA_ARGS__)

static void sort_diags(struct bw_config_diags *d)
{
    for (size_t i = 1; i < d->n; i++) {
        struct bw_config_diag t = d->items[i];
        size_t j = i;
        while (j > 0 && (d->items[j - 1].line > t.line ||
                         (d->items[j - 1].line == t.line && d->items[j - 1].col > t.col))) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = t;
    }
}

static void oom(struct rl *rl)
{
    if (!rl->oom) {
        rl->oom = true;
        diag_at(rl, 0, 0, "the ruleset is too large to load (out of memory)");
    }
}

static void *rl_alloc(struct rl *rl, size_t n)
{
    void *p = bw_arena_alloc(rl->a, n ? n : 1);
    if (!p)
        oom(rl);
    return p;
}

static bw_slice rl_dup(struct rl *rl, bw_slice s)
{
    if (s.len == 0)
        return BW_SLICE_EMPTY;
    bw_slice r = bw_arena_slice_dup(rl->a, s);
    if (!r.ptr) {
        oom(rl);
        return BW_SLICE_EMPTY;
    }
    return r;
}

/* "got ...": a quoted, escaped, shortened scalar, or the kind of node.
 * User text never reaches a message unescaped. */
struct got {
    char s[80];
};

static void quote_into(char *out, size_t cap, bw_slice t)
{
    enum { SHOW = 40 };
    size_t o = 0;
    out[o++] = '"';
    size_t i = 0;
    for (; i < t.len && i < SHOW; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if (o + 4 + 5 > cap)
            break;
        if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
        } else if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < t.len) {
        /* Drop a UTF-8 sequence cut in half. */
        while (o > 1 && ((unsigned char)out[o - 1] & 0x80))
            if (((unsigned char)out[--o] & 0xC0) == 0xC0)
                break;
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o++] = '"';
    out[o] = '\0';
}

static struct got got(const struct bw__ynode *n)
{
    struct got g;
    switch (n->kind) {
    case BW__YNODE_MAP:
        snprintf(g.s, sizeof g.s, "a mapping");
        return g;
    case BW__YNODE_SEQ:
        snprintf(g.s, sizeof g.s, "a list");
        return g;
    case BW__YNODE_SCALAR:
        if (bw__ynode_is_null(n))
            snprintf(g.s, sizeof g.s, "nothing");
        else
            quote_into(g.s, sizeof g.s, n->text);
        return g;
    case BW__YNODE__COUNT:
        break;
    }
    snprintf(g.s, sizeof g.s, "something else");
    return g;
}

struct path {
    char s[128];
};

static struct path path_key(const char *parent, const char *key)
{
    struct path p;
    if (snprintf(p.s, sizeof p.s, "%s%s%s", parent, parent[0] ? "." : "", key) < 0)
        p.s[0] = '\0';
    return p;
}

static struct path path_key_n(const char *parent, bw_slice key)
{
    struct path p;
    int n = key.len > 60 ? 60 : (int)key.len;
    if (snprintf(p.s, sizeof p.s, "%s.%.*s", parent, n, key.ptr) < 0)
        p.s[0] = '\0';
    return p;
}

static struct path path_index(const char *parent, size_t i)
{
    struct path p;
    if (snprintf(p.s, sizeof p.s, "%s[%zu]", parent, i) < 0)
        p.s[0] = '\0';
    return p;
}

static const char *where(const char *path)
{
    return path[0] ? path : "the ruleset";
}

/* ---- shapes -------------------------------------------------------------------- */

static bool want_kind(struct rl *rl, const struct bw__ynode *n, const char *path,
                      enum bw__ynode_kind kind, const char *what)
{
    if (n->kind == kind && !bw__ynode_is_null(n))
        return true;
    DIAG(rl, n, "%s: expected %s, got %s", where(path), what, got(n).s);
    return false;
}

struct field {
    const char *name;
    bool required;
    bool has;
    const struct bw__ynode *key;
    const struct bw__ynode *val;
};

static bool is_text(bw_slice s, const char *w)
{
    return bw_slice_eq(s, bw_slice_make(w, strlen(w)));
}

/* Matches a mapping's keys to f; reports unknown, repeated and non-string
 * keys and missing required ones (at `owner`). False when n is not a
 * mapping. */
static bool walk_map(struct rl *rl, const struct bw__ynode *n, const struct bw__ynode *owner,
                     const char *path, const char *what, struct field *f, size_t nf)
{
    if (!want_kind(rl, n, path, BW__YNODE_MAP, what))
        return false;
    for (const struct bw__ynode *k = n->child; k && k->next; k = k->next->next) {
        if (k->kind != BW__YNODE_SCALAR) {
            DIAG(rl, k, "%s: keys must be strings, got %s", where(path), got(k).s);
            continue;
        }
        if (k->is_dup) {
            DIAG(rl, k, "duplicate key %s in %s (first at line %u)", got(k).s, where(path),
                 k->dup_line);
            continue;
        }
        size_t i = 0;
        while (i < nf && !is_text(k->text, f[i].name))
            i++;
        if (i == nf) {
            char names[400];
            size_t o = 0;
            names[0] = '\0';
            for (size_t j = 0; j < nf && o < sizeof names; j++) {
                int w = snprintf(names + o, sizeof names - o, "%s%s", j ? ", " : "", f[j].name);
                if (w < 0)
                    break;
                o += (size_t)w;
            }
            DIAG(rl, k, "unknown key %s in %s (expected one of: %s)", got(k).s, where(path), names);
            continue;
        }
        f[i].has = true;
        f[i].key = k;
        f[i].val = k->next;
    }
    for (size_t i = 0; i < nf; i++)
        if (f[i].required && !f[i].has)
            DIAG(rl, owner, "missing required key \"%s\" in %s", f[i].name, where(path));
    return true;
}

/* ---- scalar values ----------------------------------------------------------------- */

static bool get_uint(struct rl *rl, const struct bw__ynode *n, const char *path, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    char what[96];
    snprintf(what, sizeof what, "an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, what))
        return false;
    bw_slice t = n->text;
    bool ok = t.len > 0 && t.len <= 19 && !(t.len > 1 && t.ptr[0] == '0');
    uint64_t v = 0;
    for (size_t i = 0; ok && i < t.len; i++) {
        if (t.ptr[i] < '0' || t.ptr[i] > '9')
            ok = false;
        else
            v = v * 10 + (uint64_t)(t.ptr[i] - '0');
    }
    if (!ok || v < min || v > max) {
        DIAG(rl, n, "%s: expected %s, got %s", path, what, got(n).s);
        return false;
    }
    *out = v;
    return true;
}

static bool get_bool(struct rl *rl, const struct bw__ynode *n, const char *path, bool *out)
{
    if (n->kind == BW__YNODE_SCALAR && n->plain && is_text(n->text, "true")) {
        *out = true;
        return true;
    }
    if (n->kind == BW__YNODE_SCALAR && n->plain && is_text(n->text, "false")) {
        *out = false;
        return true;
    }
    DIAG(rl, n, "%s: expected true or false, got %s", path, got(n).s);
    return false;
}

/* A string scalar of at most max bytes, copied into the arena. */
static bool get_string(struct rl *rl, const struct bw__ynode *n, const char *path, size_t max,
                       bw_slice *out)
{
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, "a string"))
        return false;
    if (n->text.len > max) {
        DIAG(rl, n, "%s: expected at most %zu bytes, got %zu", path, max, n->text.len);
        return false;
    }
    *out = rl_dup(rl, n->text);
    return true;
}

static bool valid_id(bw_slice s)
{
    if (s.len == 0 || s.len > BW_RULES_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool get_id(struct rl *rl, const struct bw__ynode *n, const char *path, bw_slice *out)
{
    if (n->kind != BW__YNODE_SCALAR || bw__ynode_is_null(n) || !valid_id(n->text)) {
        DIAG(rl, n, "%s: expected an id of 1 to %d letters, digits, '_', '.' or '-', got %s", path,
             BW_RULES_MAX_ID_LEN, got(n).s);
        return false;
    }
    *out = rl_dup(rl, n->text);
    return true;
}

static bool is_tchar(char c)
{
    /* RFC 9110 §5.6.2 */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

/* Who a header name is for: a test's request or response, or a rule's edit
 * of the message going upstream or to the downstream. */
enum header_use { HEADER_OF_TEST, HEADER_TO_UPSTREAM, HEADER_TO_DOWNSTREAM };

/* Fields the proxy writes itself (src/proxy/headers.c): a rule that set or
 * removed one would frame the message apart from its body (smuggling) or
 * break the hop. */
static const struct {
    const char *name;
    bool upstream_only; /* only the request going upstream is affected */
    const char *why;
} managed_headers[] = {
    {"connection", false, "the proxy manages it"},
    {"keep-alive", false, "the proxy manages it"},
    {"te", false, "the proxy manages it"},
    {"trailer", false, "the proxy manages it"},
    {"transfer-encoding", false, "the proxy manages it"},
    {"upgrade", false, "the proxy manages it"},
    {"proxy-connection", false, "the proxy manages it"},
    {"host", false, "the proxy manages it"},
    {"content-length", false, "the proxy manages it"},
    /* Written after the edits: a rule's would go up as a second field, and
     * an application that reads the first would believe the rule's. */
    {"x-forwarded-for", true, "the proxy writes it for the upstream (see client_ip)"},
    {"x-forwarded-proto", true, "the proxy writes it for the upstream"},
    /* The proxy answers 100-continue itself and never forwards Expect: an
     * upstream asked for it would wait for a go-ahead nobody relays. */
    {"expect", true, "the proxy answers 100-continue itself"},
};

/* A header name a rule may set or remove: a token, lowercased; never one
 * that frames the message or belongs to one hop (RFC 9110 §7.6.1). Going
 * upstream, '_' counts as '-': CGI, PHP, WSGI and Rack read both as the same
 * variable, so "content_length" would stand in for Content-Length (the
 * proxy drops such names from downstream requests for the same reason). */
static bool get_header_name(struct rl *rl, const struct bw__ynode *n, const char *path,
                            enum header_use use, bw_slice *out)
{
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, "a header name"))
        return false;
    bw_slice t = n->text;
    bool ok = t.len > 0 && t.len <= MAX_HEADER_NAME;
    for (size_t i = 0; ok && i < t.len; i++)
        ok = is_tchar(t.ptr[i]);
    if (!ok) {
        DIAG(rl, n, "%s: expected a header name (letters, digits and !#$%%&'*+-.^_`|~), got %s",
             path, got(n).s);
        return false;
    }
    char *low = rl_alloc(rl, t.len);
    if (!low)
        return false;
    for (size_t i = 0; i < t.len; i++)
        low[i] = bw_ascii_lower(t.ptr[i]);
    *out = bw_slice_make(low, t.len);
    switch (use) {
    case HEADER_OF_TEST:
        return true; /* a test's request may hold anything a downstream sends */
    case HEADER_TO_UPSTREAM:
    case HEADER_TO_DOWNSTREAM:
        break;
    }
    bool upstream = use == HEADER_TO_UPSTREAM;
    char folded[MAX_HEADER_NAME];
    for (size_t i = 0; i < t.len; i++)
        folded[i] = upstream && low[i] == '_' ? '-' : low[i];
    bw_slice f = bw_slice_make(folded, t.len);
    for (size_t i = 0; i < sizeof managed_headers / sizeof managed_headers[0]; i++) {
        if (!is_text(f, managed_headers[i].name) || (managed_headers[i].upstream_only && !upstream))
            continue;
        if (memchr(low, '_', t.len))
            DIAG(rl, n,
                 "%s: rules cannot set or remove %s: upstreams that read '_' as '-' (CGI, PHP, "
                 "WSGI) would take it for %s, and %s",
                 path, got(n).s, managed_headers[i].name, managed_headers[i].why);
        else
            DIAG(rl, n, "%s: rules cannot set or remove %s: %s", path, got(n).s,
                 managed_headers[i].why);
        return false;
    }
    return true;
}

static bool get_header_value(struct rl *rl, const struct bw__ynode *n, const char *path,
                             bw_slice *out)
{
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, "a header value"))
        return false;
    bw_slice t = n->text;
    if (t.len > MAX_HEADER_VALUE) {
        DIAG(rl, n, "%s: expected at most %d bytes, got %zu", path, MAX_HEADER_VALUE, t.len);
        return false;
    }
    /* RFC 9110 §5.5: field-vchar, SP and HTAB. A control byte is refused
     * by bulwark's own parser (and by strict upstreams), and CR or LF would
     * end the field. */
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            DIAG(rl, n,
                 "%s: a header value cannot hold CR, LF, NUL or another control character "
                 "(tab aside), got %s",
                 path, got(n).s);
            return false;
        }
    }
    /* Whitespace at either end is not part of a field value: a recipient
     * strips it, so the value would not arrive as written. */
    if (t.len && (t.ptr[0] == ' ' || t.ptr[0] == '\t' || t.ptr[t.len - 1] == ' ' ||
                  t.ptr[t.len - 1] == '\t')) {
        DIAG(rl, n, "%s: a header value cannot start or end with a space or tab, got %s", path,
             got(n).s);
        return false;
    }
    *out = rl_dup(rl, t);
    return true;
}

static bool visible(bw_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] <= 0x20 || s.ptr[i] == 0x7f)
            return false;
    return true;
}

/* Is s made of RFC 3986 path characters (§3.3: unreserved, sub-delims, ':',
 * '@', '/', and '%' with two hex digits), plus the bytes in extra? Spaces,
 * control bytes, '\' (which browsers read as '/'), '"', '<', '{' and bytes
 * over 0x7F are not: a target or Location holding them is read differently
 * by different parsers, and bulwark's own refuses some of them. */
static bool uri_chars(bw_slice s, const char *extra)
{
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '%') {
            if (s.len - i < 3 || bw_hex_value(s.ptr[i + 1]) < 0 || bw_hex_value(s.ptr[i + 2]) < 0)
                return false;
            i += 2;
            continue;
        }
        if (c == '\0' || (!strchr("-._~!$&'()*+,;=:@/", c) && !strchr(extra, c)))
            return false;
    }
    return true;
}

/* An absolute path ("/x", not "//host": that is another site) or an http(s)
 * URL with a host, in RFC 3986 characters. */
static bool get_location(struct rl *rl, const struct bw__ynode *n, const char *path, bw_slice *out)
{
    const char *what = "an absolute path like /new or a URL like https://a.example/new";
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, what))
        return false;
    bw_slice t = n->text;
    bool ok = t.len > 0 && t.len <= MAX_LOCATION;
    if (ok) {
        size_t host = 0;
        if (t.ptr[0] == '/')
            ok = !(t.len > 1 && t.ptr[1] == '/');
        else if (bw_slice_starts_with(t, BW_SLICE_LIT("https://")))
            host = 8;
        else if (bw_slice_starts_with(t, BW_SLICE_LIT("http://")))
            host = 7;
        else
            ok = false;
        /* An empty authority ("https:///x", "https://?q") is no site. */
        if (host)
            ok = t.len > host && !strchr("/?#", t.ptr[host]);
    }
    if (ok && !uri_chars(t, "?#[]")) {
        DIAG(rl, n,
             "%s: expected %s in URI characters (letters, digits, -._~!$&'()*+,;=:@/?#[] and "
             "%%XX; percent-encode others), got %s",
             path, what, got(n).s);
        return false;
    }
    if (!ok) {
        DIAG(rl, n, "%s: expected %s, got %s", path, what, got(n).s);
        return false;
    }
    *out = rl_dup(rl, t);
    return true;
}

static bool get_expr(struct rl *rl, const struct bw__ynode *n, const char *path,
                     const struct bw_rules_expr **out)
{
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, "an expression"))
        return false;
    struct bw_rules_srcpos at = {.file = rl->file};
    bw__ynode_text_pos(&rl->src, n, &at.line, &at.col, &at.cont_col);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    if (bw_rules_parse(rl->a, n->text, rl->phase, &at, &e, &d) != BW_OK) {
        /* The front end counts lines and columns in the value; YAML folds
         * lines and decodes escapes, so the file position of the token comes
         * from the scalar's source. */
        uint32_t line, col;
        if (!bw__ynode_value_pos(&rl->src, n, d.off, &line, &col)) {
            line = d.line;
            col = d.col;
        }
        /* d.text is "file:line:col: error: msg\n    <line>\n    ^~~\n": the
         * diag printer writes the first line's prefix itself. The excerpt is
         * the file's line when the token can be traced to it (the front
         * end's is the decoded, unfolded value). */
        char excerpt[320];
        const char *rest = strchr(d.text, '\n');
        if (bw__ynode_excerpt(&rl->src, n, d.off, d.len, excerpt + 1, sizeof excerpt - 1)) {
            excerpt[0] = '\n';
            rest = excerpt;
        }
        int rlen = rest ? (int)strlen(rest) : 0;
        if (rlen > 0 && rest[rlen - 1] == '\n')
            rlen--;
        diag_at(rl, line, col, "%s: %s%.*s", path, d.msg, rlen, rest ? rest : "");
        return false;
    }
    *out = e;
    return true;
}

/* ---- actions ---------------------------------------------------------------------------- */

enum param {
    P_STATUS,
    P_BODY,
    P_RULESETS,
    P_MODULES,
    P_RULESET,
    P_CHARACTERISTICS,
    P_REQUESTS,
    P_PERIOD,
    P_LOCATION,
    P_PRESERVE_QUERY,
    P_HEADERS,
    P_PATH,
    P_NAME,
    P_VALUE,
    P__COUNT
};

static const char *const param_names[P__COUNT] = {
    "status",          "body",     "rulesets", "modules",  "ruleset",
    "characteristics", "requests", "period",   "location", "preserve_query",
    "headers",         "path",     "name",     "value",
};

/* Which action takes which parameter. */
static bool takes(enum bw_action_kind k, enum param p)
{
    switch (k) {
    case BW_ACTION_BLOCK:
        return p == P_STATUS || p == P_BODY;
    case BW_ACTION_LOG:
        return false;
    case BW_ACTION_SKIP:
        return p == P_RULESETS || p == P_MODULES;
    case BW_ACTION_EXECUTE:
        return p == P_RULESET;
    case BW_ACTION_RATE_LIMIT:
        return p == P_CHARACTERISTICS || p == P_REQUESTS || p == P_PERIOD || p == P_STATUS;
    case BW_ACTION_REDIRECT:
        return p == P_LOCATION || p == P_STATUS || p == P_PRESERVE_QUERY;
    case BW_ACTION_REWRITE:
        return p == P_HEADERS || p == P_PATH;
    case BW_ACTION_SET_HEADER:
        return p == P_NAME || p == P_VALUE;
    case BW_ACTION_REMOVE_HEADER:
        return p == P_NAME;
    case BW_ACTION__COUNT:
        break;
    }
    return false;
}

static bool action_of(bw_slice s, enum bw_action_kind *ret)
{
    for (int k = 0; k < BW_ACTION__COUNT; k++)
        if (is_text(s, bw_action_name((enum bw_action_kind)k))) {
            *ret = (enum bw_action_kind)k;
            return true;
        }
    return false;
}

struct params {
    struct field *f; /* P__COUNT entries, indexed by enum param */
    const struct bw__ynode *rule;
    const char *path;
};

static bool need(struct rl *rl, const struct params *p, enum param which, enum bw_action_kind k)
{
    if (p->f[which].has)
        return true;
    DIAG(rl, p->rule, "%s: missing required key \"%s\" for action %s", p->path, param_names[which],
         bw_action_name(k));
    return false;
}

static bool parse_block(struct rl *rl, const struct params *p, struct bw_action_block *b)
{
    b->status = 403;
    bool ok = true;
    uint64_t v;
    if (p->f[P_STATUS].has) {
        if (get_uint(rl, p->f[P_STATUS].val, path_key(p->path, "status").s, 400, 599, &v))
            b->status = (uint16_t)v;
        else
            ok = false;
    }
    if (p->f[P_BODY].has) {
        if (get_string(rl, p->f[P_BODY].val, path_key(p->path, "body").s, BW_RULES_MAX_BODY_LEN,
                       &b->body))
            b->has_body = true;
        else
            ok = false;
    }
    return ok;
}

static bool parse_skip(struct rl *rl, const struct params *p, struct bw_action_skip *s)
{
    s->scope = BW_SKIP_REST;
    bool ok = true;
    if (p->f[P_RULESETS].has) {
        s->scope = BW_SKIP_TARGETS;
        const struct bw__ynode *n = p->f[P_RULESETS].val;
        struct path path = path_key(p->path, "rulesets");
        if (!want_kind(rl, n, path.s, BW__YNODE_SEQ, "a list of ruleset ids") || n->n == 0) {
            if (n->kind == BW__YNODE_SEQ)
                DIAG(rl, n, "%s: expected a list of ruleset ids, got an empty list", path.s);
            return false;
        }
        if (n->n > BW_RULES_MAX_RULESETS) {
            DIAG(rl, n, "%s: %zu rulesets, over the limit of %d", path.s, n->n,
                 BW_RULES_MAX_RULESETS);
            return false;
        }
        s->ruleset_ids = rl_alloc(rl, n->n * sizeof *s->ruleset_ids);
        if (!s->ruleset_ids)
            return false;
        size_t i = 0;
        for (const struct bw__ynode *c = n->child; c; c = c->next, i++) {
            if (!get_id(rl, c, path_index(path.s, i).s, &s->ruleset_ids[i]))
                ok = false;
        }
        s->nrulesets = n->n;
    }
    if (p->f[P_MODULES].has) {
        s->scope = BW_SKIP_TARGETS;
        const struct bw__ynode *n = p->f[P_MODULES].val;
        struct path path = path_key(p->path, "modules");
        if (!want_kind(rl, n, path.s, BW__YNODE_SEQ, "a list of modules (bot_score, rules)"))
            return false;
        if (n->n == 0) {
            DIAG(rl, n, "%s: expected a list of modules (bot_score, rules), got an empty list",
                 path.s);
            return false;
        }
        size_t i = 0;
        for (const struct bw__ynode *c = n->child; c; c = c->next, i++) {
            uint32_t bit;
            if (c->kind == BW__YNODE_SCALAR && is_text(c->text, "bot_score")) {
                bit = 1u << BW_MODULE_BOT_SCORE;
            } else if (c->kind == BW__YNODE_SCALAR && is_text(c->text, "rules")) {
                bit = 1u << BW_MODULE_RULES;
            } else {
                DIAG(rl, c, "%s: expected bot_score or rules, got %s", path_index(path.s, i).s,
                     got(c).s);
                ok = false;
                continue;
            }
            if (s->modules & bit) {
                DIAG(rl, c, "%s: module %s is listed twice", path_index(path.s, i).s, got(c).s);
                ok = false;
            }
            s->modules |= bit;
        }
    }
    return ok;
}

static bool parse_characteristic(struct rl *rl, const struct bw__ynode *n, const char *path,
                                 struct bw_rl_characteristic *c)
{
    static const struct {
        const char *name;
        enum bw_rl_characteristic_kind kind;
    } simple[] = {{"ip.src", BW_RL_IP_SRC},
                  {"http.host", BW_RL_HOST},
                  {"http.request.method", BW_RL_METHOD},
                  {"http.request.uri.path", BW_RL_PATH},
                  {"http.user_agent", BW_RL_USER_AGENT}};
    const char *what = "one of ip.src, http.host, http.request.method, http.request.uri.path, "
                       "http.user_agent, http.request.headers[\"name\"]";
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, what))
        return false;
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (is_text(n->text, simple[i].name)) {
            c->kind = simple[i].kind;
            return true;
        }
    bw_slice pre = BW_SLICE_LIT("http.request.headers[\""), t = n->text;
    if (bw_slice_starts_with(t, pre) && t.len > pre.len + 2 && t.ptr[t.len - 2] == '"' &&
        t.ptr[t.len - 1] == ']') {
        bw_slice name = bw_slice_make(t.ptr + pre.len, t.len - pre.len - 2);
        bool ok = name.len <= MAX_HEADER_NAME;
        for (size_t i = 0; ok && i < name.len; i++)
            ok = is_tchar(name.ptr[i]);
        if (ok) {
            char *low = rl_alloc(rl, name.len);
            if (!low)
                return false;
            for (size_t i = 0; i < name.len; i++)
                low[i] = bw_ascii_lower(name.ptr[i]);
            c->kind = BW_RL_HEADER;
            c->header = bw_slice_make(low, name.len);
            return true;
        }
    }
    DIAG(rl, n, "%s: expected %s, got %s", path, what, got(n).s);
    return false;
}

static bool parse_rate_limit(struct rl *rl, const struct params *p, struct bw_action_rate_limit *r)
{
    r->status = 429;
    bool ok = need(rl, p, P_CHARACTERISTICS, BW_ACTION_RATE_LIMIT);
    ok = need(rl, p, P_REQUESTS, BW_ACTION_RATE_LIMIT) && ok;
    ok = need(rl, p, P_PERIOD, BW_ACTION_RATE_LIMIT) && ok;
    if (p->f[P_CHARACTERISTICS].has) {
        const struct bw__ynode *n = p->f[P_CHARACTERISTICS].val;
        struct path path = path_key(p->path, "characteristics");
        if (!want_kind(rl, n, path.s, BW__YNODE_SEQ, "a list like [ip.src]")) {
            ok = false;
        } else if (n->n < 1 || n->n > BW_RULES_MAX_CHARACTERISTICS) {
            DIAG(rl, n, "%s: expected 1 to %d characteristics, got %zu", path.s,
                 BW_RULES_MAX_CHARACTERISTICS, n->n);
            ok = false;
        } else {
            struct bw_rl_characteristic *cs = rl_alloc(rl, n->n * sizeof *cs);
            if (!cs)
                return false;
            size_t i = 0;
            for (const struct bw__ynode *c = n->child; c; c = c->next, i++) {
                struct path pi = path_index(path.s, i);
                if (!parse_characteristic(rl, c, pi.s, &cs[i])) {
                    ok = false;
                    continue;
                }
                for (size_t j = 0; j < i; j++)
                    if (cs[j].kind == cs[i].kind && bw_slice_eq(cs[j].header, cs[i].header)) {
                        DIAG(rl, c, "%s: %s is listed twice", pi.s, got(c).s);
                        ok = false;
                        break;
                    }
            }
            r->chars = cs;
            r->nchars = n->n;
        }
    }
    if (p->f[P_REQUESTS].has && !get_uint(rl, p->f[P_REQUESTS].val, path_key(p->path, "requests").s,
                                          1, BW_RULES_MAX_RATE_REQUESTS, &r->requests))
        ok = false;
    if (p->f[P_PERIOD].has) {
        const struct bw__ynode *n = p->f[P_PERIOD].val;
        struct path path = path_key(p->path, "period");
        uint64_t ms;
        if (!want_kind(rl, n, path.s, BW__YNODE_SCALAR, "a duration like 60s")) {
            ok = false;
        } else if (bw_parse_duration_ms(n->text, &ms) != BW_OK ||
                   ms < BW_RULES_MIN_RATE_PERIOD_MS || ms > BW_RULES_MAX_RATE_PERIOD_MS ||
                   ms % 1000 != 0) {
            DIAG(rl, n, "%s: expected a whole number of seconds from 1s to 24h, like 60s, got %s",
                 path.s, got(n).s);
            ok = false;
        } else {
            r->period_ms = ms;
        }
    }
    uint64_t v;
    if (p->f[P_STATUS].has) {
        if (get_uint(rl, p->f[P_STATUS].val, path_key(p->path, "status").s, 400, 599, &v))
            r->status = (uint16_t)v;
        else
            ok = false;
    }
    return ok;
}

static bool parse_redirect(struct rl *rl, const struct params *p, struct bw_action_redirect *r)
{
    r->status = 302;
    bool ok = need(rl, p, P_LOCATION, BW_ACTION_REDIRECT);
    if (p->f[P_LOCATION].has &&
        !get_location(rl, p->f[P_LOCATION].val, path_key(p->path, "location").s, &r->location))
        ok = false;
    if (p->f[P_STATUS].has) {
        const struct bw__ynode *n = p->f[P_STATUS].val;
        bw_slice t = n->kind == BW__YNODE_SCALAR ? n->text : BW_SLICE_EMPTY;
        static const char *const codes[] = {"301", "302", "303", "307", "308"};
        size_t i = 0;
        while (i < 5 && !is_text(t, codes[i]))
            i++;
        if (i == 5) {
            DIAG(rl, n, "%s: expected 301, 302, 303, 307 or 308, got %s",
                 path_key(p->path, "status").s, got(n).s);
            ok = false;
        } else {
            r->status = (uint16_t)atoi(codes[i]);
        }
    }
    if (p->f[P_PRESERVE_QUERY].has &&
        !get_bool(rl, p->f[P_PRESERVE_QUERY].val, path_key(p->path, "preserve_query").s,
                  &r->preserve_query))
        ok = false;
    return ok;
}

static bool parse_rewrite(struct rl *rl, const struct params *p, struct bw_action_rewrite *r)
{
    bool ok = true;
    if (!p->f[P_HEADERS].has && !p->f[P_PATH].has) {
        DIAG(rl, p->rule, "%s: action rewrite needs headers, path or both", p->path);
        return false;
    }
    if (p->f[P_PATH].has) {
        const struct bw__ynode *n = p->f[P_PATH].val;
        struct path path = path_key(p->path, "path");
        const char *what = "a path starting with / in URI path characters (letters, digits, "
                           "-._~!$&'()*+,;=:@/ and %XX; no query)";
        if (!want_kind(rl, n, path.s, BW__YNODE_SCALAR, what))
            return false;
        bw_slice t = n->text;
        if (t.len == 0 || t.ptr[0] != '/' || t.len > MAX_LOCATION || !uri_chars(t, "")) {
            DIAG(rl, n, "%s: expected %s, got %s", path.s, what, got(n).s);
            return false;
        }
        /* In the form rules and routes see a path (RFC 3986 §6.2.2): the
         * upstream then serves the path as written, where "/a/../admin" or
         * "/%61dmin" would reach a resource no rule was written for. */
        char *norm = rl_alloc(rl, t.len + 1);
        if (!norm)
            return false;
        bw_slice nt = bw_uri_normalize_path(t, norm, t.len + 1);
        if (!bw_slice_eq(nt, t)) {
            char want[80];
            quote_into(want, sizeof want, nt);
            DIAG(rl, n,
                 "%s: expected a normalised path (no \".\" or \"..\" segment, no \"//\", no %%XX "
                 "for a letter, digit or -._~, hex digits in upper case), got %s (did you mean "
                 "%s?)",
                 path.s, got(n).s, want);
            return false;
        }
        r->has_path = true;
        r->path = rl_dup(rl, t);
    }
    if (!p->f[P_HEADERS].has)
        return ok;
    struct path hpath = path_key(p->path, "headers");
    struct field f[] = {{.name = "set"}, {.name = "remove"}};
    const struct bw__ynode *hn = p->f[P_HEADERS].val;
    if (!walk_map(rl, hn, p->f[P_HEADERS].key, hpath.s, "a mapping like {set: {x-a: b}}", f, 2))
        return false;
    size_t nops = 0;
    for (int i = 0; i < 2; i++)
        if (f[i].has && (f[i].val->kind == BW__YNODE_MAP || f[i].val->kind == BW__YNODE_SEQ))
            nops += f[i].val->kind == BW__YNODE_MAP ? f[i].val->n / 2 : f[i].val->n;
    if (nops == 0) {
        /* Unknown keys were reported by walk_map; say more only when
         * nothing else was said. */
        if (hn->n == 0 || f[0].has || f[1].has)
            DIAG(rl, hn, "%s: expected at least one header to set or remove", hpath.s);
        return false;
    }
    if (nops > BW_RULES_MAX_HEADER_OPS) {
        DIAG(rl, hn, "%s: %zu header operations, over the limit of %d", hpath.s, nops,
             BW_RULES_MAX_HEADER_OPS);
        return false;
    }
    struct bw_header_op *ops = rl_alloc(rl, nops * sizeof *ops);
    if (!ops)
        return false;
    size_t o = 0;
    /* In the order the keys were written: that is the order they apply. */
    for (const struct bw__ynode *k = hn->child; k && k->next; k = k->next->next) {
        if (k->is_dup || k->kind != BW__YNODE_SCALAR)
            continue;
        const struct bw__ynode *v = k->next;
        if (is_text(k->text, "set")) {
            struct path sp = path_key(hpath.s, "set");
            if (!want_kind(rl, v, sp.s, BW__YNODE_MAP, "a mapping of header names to values")) {
                ok = false;
                continue;
            }
            for (const struct bw__ynode *hk = v->child; hk && hk->next; hk = hk->next->next) {
                struct bw_header_op *op = &ops[o++];
                op->kind = BW_HEADER_SET;
                if (hk->is_dup) {
                    DIAG(rl, hk, "duplicate key %s in %s (first at line %u)", got(hk).s, sp.s,
                         hk->dup_line);
                    ok = false;
                    continue;
                }
                if (!get_header_name(rl, hk, sp.s, HEADER_TO_UPSTREAM, &op->name))
                    ok = false;
                else if (!get_header_value(rl, hk->next, path_key_n(sp.s, op->name).s, &op->value))
                    ok = false;
            }
        } else if (is_text(k->text, "remove")) {
            struct path rp = path_key(hpath.s, "remove");
            if (!want_kind(rl, v, rp.s, BW__YNODE_SEQ, "a list of header names")) {
                ok = false;
                continue;
            }
            size_t i = 0;
            for (const struct bw__ynode *c = v->child; c; c = c->next, i++) {
                struct bw_header_op *op = &ops[o++];
                op->kind = BW_HEADER_REMOVE;
                if (!get_header_name(rl, c, path_index(rp.s, i).s, HEADER_TO_UPSTREAM, &op->name))
                    ok = false;
            }
        }
    }
    r->ops = ops;
    r->nops = o;
    return ok;
}

static bool parse_action(struct rl *rl, const struct params *p, struct bw_rule *r)
{
    enum bw_action_kind k = r->action.kind;
    struct bw_action *a = &r->action;
    switch (k) {
    case BW_ACTION_BLOCK:
        return parse_block(rl, p, &a->u.block);
    case BW_ACTION_LOG:
        return true;
    case BW_ACTION_SKIP:
        if (p->f[P_RULESETS].has)
            r->action_pos =
                (struct bw_rules_pos){p->f[P_RULESETS].val->line, p->f[P_RULESETS].val->col};
        return parse_skip(rl, p, &a->u.skip);
    case BW_ACTION_EXECUTE:
        if (!need(rl, p, P_RULESET, k))
            return false;
        r->action_pos = (struct bw_rules_pos){p->f[P_RULESET].val->line, p->f[P_RULESET].val->col};
        return get_id(rl, p->f[P_RULESET].val, path_key(p->path, "ruleset").s,
                      &a->u.execute.ruleset_id);
    case BW_ACTION_RATE_LIMIT:
        return parse_rate_limit(rl, p, &a->u.rate_limit);
    case BW_ACTION_REDIRECT:
        return parse_redirect(rl, p, &a->u.redirect);
    case BW_ACTION_REWRITE:
        return parse_rewrite(rl, p, &a->u.rewrite);
    case BW_ACTION_SET_HEADER: {
        a->u.set_header.kind = BW_HEADER_SET;
        bool ok = need(rl, p, P_NAME, k);
        ok = need(rl, p, P_VALUE, k) && ok;
        if (p->f[P_NAME].has && !get_header_name(rl, p->f[P_NAME].val, path_key(p->path, "name").s,
                                                 HEADER_TO_DOWNSTREAM, &a->u.set_header.name))
            ok = false;
        if (p->f[P_VALUE].has &&
            !get_header_value(rl, p->f[P_VALUE].val, path_key(p->path, "value").s,
                              &a->u.set_header.value))
            ok = false;
        return ok;
    }
    case BW_ACTION_REMOVE_HEADER:
        a->u.remove_header.kind = BW_HEADER_REMOVE;
        if (!need(rl, p, P_NAME, k))
            return false;
        return get_header_name(rl, p->f[P_NAME].val, path_key(p->path, "name").s,
                               HEADER_TO_DOWNSTREAM, &a->u.remove_header.name);
    case BW_ACTION__COUNT:
        break;
    }
    return false;
}

static const char *action_phase(enum bw_action_kind k, enum bw_rules_phase *ret)
{
    switch (k) {
    case BW_ACTION_REWRITE:
        *ret = BW_RULES_PHASE_REQUEST;
        return "request";
    case BW_ACTION_SET_HEADER:
    case BW_ACTION_REMOVE_HEADER:
        *ret = BW_RULES_PHASE_RESPONSE;
        return "response";
    case BW_ACTION_BLOCK:
    case BW_ACTION_LOG:
    case BW_ACTION_SKIP:
    case BW_ACTION_EXECUTE:
    case BW_ACTION_RATE_LIMIT:
    case BW_ACTION_REDIRECT:
    case BW_ACTION__COUNT:
        break;
    }
    return NULL;
}

/* ---- rules ---------------------------------------------------------------------------- */

enum { R_ID, R_ENABLED, R_EXPRESSION, R_ACTION, R__COUNT };

static bool parse_rule(struct rl *rl, const struct bw__ynode *n, size_t idx, struct bw_rule *r)
{
    struct path path = path_index("rules", idx);
    struct field f[R__COUNT + P__COUNT] = {
        [R_ID] = {.name = "id", .required = true},
        [R_ENABLED] = {.name = "enabled"},
        [R_EXPRESSION] = {.name = "expression", .required = true},
        [R_ACTION] = {.name = "action", .required = true},
    };
    for (int i = 0; i < P__COUNT; i++)
        f[R__COUNT + i].name = param_names[i];
    /* Until the action and its parameters are read: the cross-file checks
     * of a file that failed (bw_rulebook_check_links) pass over the rule. */
    r->action.kind = BW_ACTION__COUNT;
    if (!walk_map(rl, n, n, path.s, "a mapping with id, expression and action", f,
                  R__COUNT + P__COUNT))
        return false;
    bool ok = f[R_ID].has && f[R_EXPRESSION].has && f[R_ACTION].has;
    r->enabled = true;
    r->pos = (struct bw_rules_pos){n->line, n->col};
    if (f[R_ID].has) {
        r->pos = (struct bw_rules_pos){f[R_ID].val->line, f[R_ID].val->col};
        ok = get_id(rl, f[R_ID].val, path_key(path.s, "id").s, &r->id) && ok;
    }
    if (f[R_ENABLED].has)
        ok = get_bool(rl, f[R_ENABLED].val, path_key(path.s, "enabled").s, &r->enabled) && ok;
    if (f[R_EXPRESSION].has && rl->phase_ok)
        ok = get_expr(rl, f[R_EXPRESSION].val, path_key(path.s, "expression").s, &r->expr) && ok;
    if (!f[R_ACTION].has)
        return false;
    const struct bw__ynode *an = f[R_ACTION].val;
    r->action_pos = (struct bw_rules_pos){an->line, an->col};
    if (an->kind != BW__YNODE_SCALAR || !action_of(an->text, &r->action.kind)) {
        DIAG(rl, an,
             "%s.action: expected one of block, log, skip, execute, rate_limit, redirect, "
             "rewrite, set_header, remove_header, got %s",
             path.s, got(an).s);
        return false;
    }
    enum bw_action_kind k = r->action.kind;
    enum bw_rules_phase need_phase;
    const char *pn = action_phase(k, &need_phase);
    if (pn && rl->phase_ok && need_phase != rl->phase) {
        DIAG(rl, an, "%s.action: %s is a %s-phase action, but this ruleset is %s phase", path.s,
             bw_action_name(k), pn, bw_rules_phase_name(rl->phase));
        ok = false;
    }
    bool params_ok = true;
    for (int i = 0; i < P__COUNT; i++) {
        struct field *pf = &f[R__COUNT + i];
        if (pf->has && !takes(k, (enum param)i)) {
            DIAG(rl, pf->key, "%s: %s is not a parameter of %s", path.s, param_names[i],
                 bw_action_name(k));
            params_ok = false;
        }
    }
    struct params p = {.f = &f[R__COUNT], .rule = n, .path = path.s};
    if (!params_ok || !parse_action(rl, &p, r)) {
        r->action.kind = BW_ACTION__COUNT;
        return false;
    }
    return ok;
}

/* ---- embedded tests ----------------------------------------------------------------------- */

static bool parse_headers(struct rl *rl, const struct bw__ynode *n, const char *path,
                          struct bw_rv_headers *out)
{
    if (!want_kind(rl, n, path, BW__YNODE_MAP, "a mapping of header names to values"))
        return false;
    size_t count = 0;
    for (const struct bw__ynode *k = n->child; k && k->next; k = k->next->next)
        count += k->next->kind == BW__YNODE_SEQ ? k->next->n : 1;
    if (count > TEST_MAX_HEADERS) {
        DIAG(rl, n, "%s: %zu headers, over the limit of %d", path, count, TEST_MAX_HEADERS);
        return false;
    }
    struct bw_rv_header *h = rl_alloc(rl, count * sizeof *h);
    if (!h)
        return false;
    size_t o = 0;
    bool ok = true;
    for (const struct bw__ynode *k = n->child; k && k->next; k = k->next->next) {
        bw_slice name;
        if (k->is_dup) {
            DIAG(rl, k, "duplicate key %s in %s (first at line %u); list repeated values", got(k).s,
                 path, k->dup_line);
            ok = false;
            continue;
        }
        if (!get_header_name(rl, k, path, HEADER_OF_TEST, &name)) {
            ok = false;
            continue;
        }
        struct path hp = path_key_n(path, name);
        const struct bw__ynode *v = k->next;
        if (v->kind == BW__YNODE_SEQ) {
            size_t i = 0;
            for (const struct bw__ynode *c = v->child; c; c = c->next, i++) {
                h[o].name = name;
                if (get_header_value(rl, c, path_index(hp.s, i).s, &h[o].value))
                    o++;
                else
                    ok = false;
            }
        } else {
            h[o].name = name;
            if (get_header_value(rl, v, hp.s, &h[o].value))
                o++;
            else
                ok = false;
        }
    }
    out->items = h;
    out->n = o;
    return ok;
}

static bool parse_ip(struct rl *rl, const struct bw__ynode *n, const char *path,
                     struct bw_rv_opt_addr *out)
{
    const char *what = "an IPv4 or IPv6 address like 203.0.113.9";
    if (!want_kind(rl, n, path, BW__YNODE_SCALAR, what))
        return false;
    char buf[64];
    if (n->text.len >= sizeof buf) {
        DIAG(rl, n, "%s: expected %s, got %s", path, what, got(n).s);
        return false;
    }
    memcpy(buf, n->text.ptr, n->text.len);
    buf[n->text.len] = '\0';
    memset(&out->addr, 0, sizeof out->addr);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
    } else {
        DIAG(rl, n, "%s: expected %s, got %s", path, what, got(n).s);
        return false;
    }
    out->known = true;
    return true;
}

static bool parse_request(struct rl *rl, const struct bw__ynode *key, const struct bw__ynode *n,
                          const char *path, struct bw_request_view *v)
{
    enum { Q_METHOD, Q_PATH, Q_HEADERS, Q_IP, Q_SSL, Q_BOT_SCORE, Q__COUNT };
    struct field f[Q__COUNT] = {{.name = "method"}, {.name = "path"}, {.name = "headers"},
                                {.name = "ip"},     {.name = "ssl"},  {.name = "bot_score"}};
    v->method = BW_SLICE_LIT("GET");
    v->uri = BW_SLICE_LIT("/");
    v->raw_path = v->uri;
    v->query = BW_SLICE_EMPTY;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&v->src.addr;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1, TEST-NET-1 */
    v->src.known = true;
    if (!walk_map(rl, n, key, path, "a mapping like {method: GET, path: /}", f, Q__COUNT))
        return false;
    bool ok = true;
    if (f[Q_METHOD].has) {
        const struct bw__ynode *m = f[Q_METHOD].val;
        bool good = m->kind == BW__YNODE_SCALAR && m->text.len > 0 && m->text.len <= 32;
        for (size_t i = 0; good && i < m->text.len; i++)
            good = is_tchar(m->text.ptr[i]);
        if (good) {
            v->method = rl_dup(rl, m->text);
        } else {
            DIAG(rl, m, "%s.method: expected a method like GET, got %s", path, got(m).s);
            ok = false;
        }
    }
    if (f[Q_PATH].has) {
        const struct bw__ynode *p = f[Q_PATH].val;
        const char *what = "a path like /a/b?q=1 (no spaces or control characters)";
        if (p->kind != BW__YNODE_SCALAR || p->text.len == 0 || p->text.ptr[0] != '/' ||
            p->text.len > MAX_LOCATION || !visible(p->text)) {
            DIAG(rl, p, "%s.path: expected %s, got %s", path, what, got(p).s);
            ok = false;
        } else {
            bw_slice u = rl_dup(rl, p->text);
            const char *q = memchr(u.ptr, '?', u.len);
            size_t plen = q ? (size_t)(q - u.ptr) : u.len;
            v->uri = u;
            v->raw_path = bw_slice_make(u.ptr, plen);
            v->query = q ? bw_slice_make(q + 1, u.len - plen - 1) : BW_SLICE_EMPTY;
        }
    }
    if (f[Q_HEADERS].has) {
        struct path hp = path_key(path, "headers");
        if (parse_headers(rl, f[Q_HEADERS].val, hp.s, &v->headers)) {
            for (size_t i = 0; i < v->headers.n; i++)
                if (is_text(v->headers.items[i].name, "host")) {
                    v->host =
                        (struct bw_rv_opt_bytes){.known = true, .value = v->headers.items[i].value};
                    break;
                }
        } else {
            ok = false;
        }
    }
    if (f[Q_IP].has)
        ok = parse_ip(rl, f[Q_IP].val, path_key(path, "ip").s, &v->src) && ok;
    if (f[Q_SSL].has)
        ok = get_bool(rl, f[Q_SSL].val, path_key(path, "ssl").s, &v->ssl) && ok;
    if (f[Q_BOT_SCORE].has) {
        uint64_t s;
        if (get_uint(rl, f[Q_BOT_SCORE].val, path_key(path, "bot_score").s, 1, 99, &s))
            v->bot_score = (struct bw_rv_opt_int){.known = true, .value = (int64_t)s};
        else
            ok = false;
    }
    return ok;
}

static bool parse_response(struct rl *rl, const struct bw__ynode *key, const struct bw__ynode *n,
                           const char *path, struct bw_request_view *v)
{
    struct field f[] = {{.name = "status"}, {.name = "headers"}};
    v->has_response = true;
    v->response_code = 200;
    if (!walk_map(rl, n, key, path, "a mapping like {status: 200}", f, 2))
        return false;
    bool ok = true;
    uint64_t s;
    if (f[0].has) {
        if (get_uint(rl, f[0].val, path_key(path, "status").s, 100, 599, &s))
            v->response_code = (int64_t)s;
        else
            ok = false;
    }
    if (f[1].has)
        ok = parse_headers(rl, f[1].val, path_key(path, "headers").s, &v->response_headers) && ok;
    return ok;
}

/* `rule: bots` (of the test's own ruleset) or `rule: managed/bots` (of a
 * ruleset it executes), as killswitch targets name rules. */
static bool get_rule_ref(struct rl *rl, const struct bw__ynode *n, const char *path,
                         struct bw_ruleset_test *t)
{
    t->rule_pos = (struct bw_rules_pos){n->line, n->col};
    bw_slice v = n->text;
    const char *slash = n->kind == BW__YNODE_SCALAR ? memchr(v.ptr, '/', v.len) : NULL;
    bw_slice set = BW_SLICE_EMPTY, rule = v;
    if (slash) {
        size_t k = (size_t)(slash - v.ptr);
        set = bw_slice_sub(v, 0, k);
        rule = bw_slice_sub(v, k + 1, v.len - k - 1);
    }
    if (n->kind != BW__YNODE_SCALAR || bw__ynode_is_null(n) || !valid_id(rule) ||
        (slash && !valid_id(set))) {
        DIAG(rl, n,
             "%s: expected a rule id, or <ruleset>/<rule> for a rule of an executed ruleset, got "
             "%s",
             path, got(n).s);
        return false;
    }
    t->rule = rl_dup(rl, rule);
    t->rule_set = rl_dup(rl, set);
    return true;
}

static bool parse_expect(struct rl *rl, const struct bw__ynode *key, const struct bw__ynode *n,
                         const char *path, struct bw_ruleset_test *t)
{
    struct field f[] = {{.name = "action", .required = true}, {.name = "rule"}, {.name = "status"}};
    if (!walk_map(rl, n, key, path, "a mapping like {action: block, rule: r1}", f, 3))
        return false;
    if (!f[0].has)
        return false;
    bool ok = true;
    const struct bw__ynode *an = f[0].val;
    if (an->kind == BW__YNODE_SCALAR && is_text(an->text, "none")) {
        t->expect = BW_EXPECT_NONE;
    } else if (an->kind == BW__YNODE_SCALAR && action_of(an->text, &t->action)) {
        t->expect = BW_EXPECT_ACTION;
    } else {
        DIAG(rl, an,
             "%s.action: expected none or one of block, log, skip, execute, rate_limit, "
             "redirect, rewrite, set_header, remove_header, got %s",
             path, got(an).s);
        return false;
    }
    if (f[1].has) {
        if (t->expect == BW_EXPECT_NONE) {
            DIAG(rl, f[1].key, "%s: rule does not go with action none", path);
            ok = false;
        } else if (get_rule_ref(rl, f[1].val, path_key(path, "rule").s, t)) {
            t->has_rule = true;
        } else {
            ok = false;
        }
    }
    bool has_status_kind = t->expect == BW_EXPECT_ACTION &&
                           (t->action == BW_ACTION_BLOCK || t->action == BW_ACTION_REDIRECT ||
                            t->action == BW_ACTION_RATE_LIMIT);
    if (f[2].has) {
        uint64_t s;
        if (!has_status_kind) {
            DIAG(rl, f[2].key, "%s: status goes only with block, redirect and rate_limit", path);
            ok = false;
        } else if (get_uint(rl, f[2].val, path_key(path, "status").s, 100, 599, &s)) {
            t->has_status = true;
            t->status = (uint16_t)s;
        } else {
            ok = false;
        }
    }
    if (t->expect == BW_EXPECT_ACTION && !has_status_kind && !f[1].has) {
        DIAG(rl, n, "%s: rule is required for action %s (which rule must fire)", path,
             bw_action_name(t->action));
        ok = false;
    }
    return ok;
}

static bool parse_test(struct rl *rl, const struct bw__ynode *n, size_t idx,
                       struct bw_ruleset_test *t)
{
    struct path path = path_index("tests", idx);
    enum { T_NAME, T_REQUEST, T_RESPONSE, T_EXPECT, T__COUNT };
    struct field f[T__COUNT] = {{.name = "name"},
                                {.name = "request", .required = true},
                                {.name = "response"},
                                {.name = "expect", .required = true}};
    t->pos = (struct bw_rules_pos){n->line, n->col};
    char dflt[32];
    snprintf(dflt, sizeof dflt, "test %zu", idx + 1);
    t->name = rl_dup(rl, bw_slice_make(dflt, strlen(dflt)));
    if (!walk_map(rl, n, n, path.s, "a mapping with request and expect", f, T__COUNT))
        return false;
    bool ok = f[T_REQUEST].has && f[T_EXPECT].has;
    if (f[T_NAME].has)
        ok = get_string(rl, f[T_NAME].val, path_key(path.s, "name").s, 256, &t->name) && ok;
    if (f[T_REQUEST].has)
        ok = parse_request(rl, f[T_REQUEST].key, f[T_REQUEST].val, path_key(path.s, "request").s,
                           &t->request) &&
             ok;
    if (f[T_RESPONSE].has) {
        if (rl->phase_ok && rl->phase != BW_RULES_PHASE_RESPONSE) {
            DIAG(rl, f[T_RESPONSE].key,
                 "%s: response goes only in tests of response-phase rulesets", path.s);
            ok = false;
        } else {
            ok = parse_response(rl, f[T_RESPONSE].key, f[T_RESPONSE].val,
                                path_key(path.s, "response").s, &t->request) &&
                 ok;
        }
    } else if (rl->phase == BW_RULES_PHASE_RESPONSE) {
        t->request.has_response = true;
        t->request.response_code = 200;
    }
    if (f[T_EXPECT].has)
        ok = parse_expect(rl, f[T_EXPECT].key, f[T_EXPECT].val, path_key(path.s, "expect").s, t) &&
             ok;
    return ok;
}

/* ---- the file ------------------------------------------------------------------------ */

static void parse_root(struct rl *rl, const struct bw__ynode *root, struct bw_ruleset *s)
{
    enum { F_ID, F_PHASE, F_ENABLED, F_RULES, F_TESTS, F__COUNT };
    struct field f[F__COUNT] = {{.name = "id", .required = true},
                                {.name = "phase"},
                                {.name = "enabled"},
                                {.name = "rules", .required = true},
                                {.name = "tests"}};
    s->enabled = true;
    s->phase = BW_RULES_PHASE_REQUEST;
    s->pos = (struct bw_rules_pos){root->line, root->col};
    if (!walk_map(rl, root, root, "", "a mapping with id and rules", f, F__COUNT))
        return;
    if (f[F_ID].has) {
        s->pos = (struct bw_rules_pos){f[F_ID].val->line, f[F_ID].val->col};
        (void)get_id(rl, f[F_ID].val, "id", &s->id);
    }
    rl->phase_ok = true;
    if (f[F_PHASE].has) {
        const struct bw__ynode *p = f[F_PHASE].val;
        if (p->kind == BW__YNODE_SCALAR && is_text(p->text, "request")) {
            s->phase = BW_RULES_PHASE_REQUEST;
        } else if (p->kind == BW__YNODE_SCALAR && is_text(p->text, "response")) {
            s->phase = BW_RULES_PHASE_RESPONSE;
        } else {
            DIAG(rl, p, "phase: expected request or response, got %s", got(p).s);
            rl->phase_ok = false;
        }
    }
    rl->phase = s->phase;
    if (f[F_ENABLED].has)
        (void)get_bool(rl, f[F_ENABLED].val, "enabled", &s->enabled);
    if (f[F_RULES].has) {
        const struct bw__ynode *n = f[F_RULES].val;
        if (n->kind == BW__YNODE_SEQ && n->n > BW_RULES_MAX_RULES) {
            DIAG(rl, n, "rules: %zu rules, over the limit of %d", n->n, BW_RULES_MAX_RULES);
        } else if (want_kind(rl, n, "rules", BW__YNODE_SEQ, "a list of rules")) {
            s->rules = rl_alloc(rl, n->n * sizeof *s->rules);
            if (!s->rules)
                return;
            size_t i = 0;
            for (const struct bw__ynode *c = n->child; c; c = c->next, i++) {
                struct bw_rule *r = &s->rules[i];
                if (!parse_rule(rl, c, i, r) || r->id.len == 0)
                    continue;
                for (size_t j = 0; j < i; j++)
                    if (bw_slice_eq(s->rules[j].id, r->id)) {
                        diag_at(rl, r->pos.line, r->pos.col,
                                "rules[%zu].id: duplicate rule id \"%.*s\" (first at line %u)", i,
                                (int)r->id.len, r->id.ptr, s->rules[j].pos.line);
                        break;
                    }
            }
            s->nrules = n->n;
        }
    }
    if (f[F_TESTS].has) {
        const struct bw__ynode *n = f[F_TESTS].val;
        if (n->kind == BW__YNODE_SEQ && n->n > BW_RULES_MAX_TESTS) {
            DIAG(rl, n, "tests: %zu tests, over the limit of %d", n->n, BW_RULES_MAX_TESTS);
        } else if (want_kind(rl, n, "tests", BW__YNODE_SEQ, "a list of tests")) {
            s->tests = rl_alloc(rl, n->n * sizeof *s->tests);
            if (!s->tests)
                return;
            size_t i = 0;
            for (const struct bw__ynode *c = n->child; c; c = c->next, i++)
                (void)parse_test(rl, c, i, &s->tests[i]);
            s->ntests = n->n;
        }
    }
}

static void diags_reset(struct bw_config_diags *d, const char *path)
{
    d->file = path;
    d->n = 0;
    d->dropped = 0;
}

bw_status bw_ruleset_parse(bw_arena *a, const char *path, const char *text, size_t len,
                           struct bw_ruleset *ret, struct bw_config_diags *diags)
{
    diags_reset(diags, path);
    struct rl rl = {.a = a, .d = diags};
    bw__ysrc_init(&rl.src, text, len);
    rl.file = rl_dup(&rl, bw_slice_make(path, strlen(path)));
    struct bw_ruleset s = {.file = rl.file};
    if (len > BW_RULESET_MAX_FILE_BYTES) {
        diag_at(&rl, 0, 0, "the ruleset file is %zu bytes, over the limit of %zu bytes", len,
                BW_RULESET_MAX_FILE_BYTES);
    } else {
        bw_arena tree;
        bw_arena_init(&tree, 64 * 1024, BW__YAML_ARENA_CAP);
        struct bw__yerr yerr;
        bool has_root = false;
        struct bw__ynode *root;
        if (bw__yaml_tree(&tree, text, len, &has_root, &root, &yerr) != BW_OK)
            diag_at(&rl, yerr.line, yerr.col, "%s", yerr.msg);
        else if (!has_root)
            diag_at(&rl, 0, 0, "the ruleset file is empty; it needs at least id and rules");
        else
            parse_root(&rl, root, &s);
        bw_arena_reset(&tree);
    }
    *ret = s;
    if (diags->n > 0 || diags->dropped > 0) {
        sort_diags(diags);
        if (!rl.phase_ok)
            ret->phase = BW_RULES_PHASE__COUNT;
        return BW_ERR;
    }
    return BW_OK;
}

BW_PRINTF(3, 4)
static bw_status file_fail(struct bw_config_diags *d, const char *path, const char *fmt, ...)
{
    diags_reset(d, path);
    struct bw_config_diag *g = &d->items[0];
    g->line = 0;
    g->col = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    d->n = 1;
    return BW_ERR;
}

bw_status bw_ruleset_load_file(bw_arena *a, const char *path, struct bw_ruleset *ret,
                               struct bw_config_diags *diags, struct bw_file_bytes *ret_bytes)
{
    static const struct bw_file_what what = {
        .noun = "the ruleset file", .kind = "ruleset file", .max_bytes = BW_RULESET_MAX_FILE_BYTES};
    char *buf;
    size_t len;
    char err[sizeof diags->items[0].msg];
    if (bw_read_file(path, &what, &buf, &len, err, sizeof err) != BW_OK)
        return file_fail(diags, path, "%s", err);
    bw_status st = bw_ruleset_parse(a, path, buf, len, ret, diags);
    uint32_t line, col;
    size_t which;
    if (st != BW_OK && bw__truncation_hint(buf, len, diags, &line, &col, &which))
        bw__truncation_note(diags, line, col, which);
    if (st == BW_OK && ret_bytes)
        *ret_bytes = bw_file_bytes_take(buf, len);
    else
        free(buf);
    return st;
}
