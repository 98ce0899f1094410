/* The main config: the schema walk from a YAML tree to struct bw_config,
 * the defaults, the checks across keys, the bounded file read, and the
 * diagnostics.
 *
 * Every problem becomes one diagnostic "path: what was expected, got what"
 * at the position of the offending key or value, and the walk goes on, so a
 * user sees every problem at once. A config is returned only when there is
 * none. YAML syntax and the YAML features bulwark refuses are yaml_tree.c's;
 * the value syntaxes (10s, 32KiB, addresses, CIDRs) are values.c's; a route's
 * match is match.c's. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/internal.h"
#include "http/http1.h"

/* Bytes the loaded config itself may take (servers, CIDRs, strings). */
#define CONFIG_ARENA_CAP ((size_t)128 * 1024 * 1024)
/* Longest file path accepted as a value (state_dir, access_log, ...). */
#define MAX_PATH_BYTES 4096
/* Longest upstream name. */
#define MAX_UPSTREAM_NAME 64

struct ld {
    struct bw_config *cfg;
    bw_arena *a;         /* the config's arena */
    struct bw__ysrc src; /* the file, for positions inside expressions */
    struct bw_config_diags *d;
    bool oom;
};

/* ---- diagnostics ------------------------------------------------------ */

BW_PRINTF(4, 5)
static void diag_at(struct ld *ld, uint32_t line, uint32_t col, const char *fmt, ...)
{
    struct bw_config_diags *d = ld->d;
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

#define DIAG(ld, node, ...) diag_at((ld), (node)->line, (node)->col, __VA_ARGS__)

/* Diagnostics in file order (stable: equal positions keep their order). */
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

static void *ld_alloc(struct ld *ld, size_t n)
{
    void *p = bw_arena_alloc(ld->a, n ? n : 1);
    if (!p && !ld->oom) {
        ld->oom = true;
        diag_at(ld, 0, 0, "the config is too large to load (out of memory)");
    }
    return p;
}

static bw_slice ld_dup(struct ld *ld, bw_slice s)
{
    bw_slice r = bw_arena_slice_dup(ld->a, s);
    if (!r.ptr) {
        if (!ld->oom) {
            ld->oom = true;
            diag_at(ld, 0, 0, "the config is too large to load (out of memory)");
        }
        return BW_SLICE_EMPTY;
    }
    return r;
}

/* Text for "got ...": a quoted, escaped, shortened scalar, or what kind of
 * node it is. User text never reaches a message unescaped. */
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
        /* Room for the widest form of this byte (\xNN) and the tail ("..."
         * and the closing quote and NUL). */
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
        /* Do not cut a UTF-8 sequence in half: drop a trailing incomplete
         * one (the text was validated as UTF-8 by libyaml). */
        size_t k = 0;
        while (o - k > 1 && ((unsigned char)out[o - 1 - k] & 0xC0) == 0x80)
            k++;
        unsigned char lead = (unsigned char)out[o - 1 - k];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (o - k > 1 && lead >= 0xC0 && k + 1 < need)
            o -= k + 1;
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

/* ---- key paths -------------------------------------------------------- */

struct path {
    char s[192];
};

static struct path path_key(const char *parent, const char *key)
{
    struct path p;
    if (snprintf(p.s, sizeof p.s, "%s%s%s", parent, parent[0] ? "." : "", key) < 0)
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
    return path[0] ? path : "the top level";
}

/* ---- shapes ----------------------------------------------------------- */

static bool want_kind(struct ld *ld, const struct bw__ynode *n, const char *path,
                      enum bw__ynode_kind kind, const char *what)
{
    if (n->kind == kind && !bw__ynode_is_null(n))
        return true;
    DIAG(ld, n, "%s: expected %s, got %s", path[0] ? path : "the config", what, got(n).s);
    return false;
}

/* A non-null scalar; `what` says what was expected. */
static bool want_scalar(struct ld *ld, const struct bw__ynode *n, const char *path,
                        const char *what)
{
    return want_kind(ld, n, path, BW__YNODE_SCALAR, what);
}

/* ---- suggestions ------------------------------------------------------ */

/* Case-insensitive edit distance (insert, delete, replace, swap of two
 * neighbours), or SIZE_MAX past 64 bytes: enough to catch a typo. */
static size_t edit_distance(bw_slice a, bw_slice b)
{
    enum { MAXW = 64 };
    if (a.len > MAXW || b.len > MAXW)
        return SIZE_MAX;
    size_t d[MAXW + 1][MAXW + 1];
    for (size_t i = 0; i <= a.len; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= b.len; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= a.len; i++) {
        for (size_t j = 1; j <= b.len; j++) {
            size_t cost = bw_ascii_lower(a.ptr[i - 1]) != bw_ascii_lower(b.ptr[j - 1]);
            size_t v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && bw_ascii_lower(a.ptr[i - 1]) == bw_ascii_lower(b.ptr[j - 2]) &&
                bw_ascii_lower(a.ptr[i - 2]) == bw_ascii_lower(b.ptr[j - 1]) &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[a.len][b.len];
}

/* The candidate closest to `word`, if close enough to be a typo of it
 * (at most one edit in three characters). */
static bool close_to(bw_slice word, bw_slice cand, size_t *best)
{
    size_t limit = word.len / 3 > 1 ? word.len / 3 : 1;
    size_t dist = edit_distance(word, cand);
    if (dist > limit || dist >= *best)
        return false;
    *best = dist;
    return true;
}

/* What nginx and HAProxy call some keys: an operator's first guess. */
static const struct {
    const char *theirs, *ours;
} KEY_ALIASES[] = {
    {"client_max_body_size", "body_bytes"},
    {"max_body_size", "body_bytes"},
    {"large_client_header_buffers", "header_bytes"},
    {"client_header_buffer_size", "header_bytes"},
    {"worker_processes", "workers"},
    {"nbthread", "workers"},
    {"worker_connections", "max_connections"},
    {"maxconn", "max_connections"},
    {"proxy_connect_timeout", "connect_timeout"},
    {"proxy_read_timeout", "read_timeout"},
    {"proxy_send_timeout", "write_timeout"},
    {"backend", "upstreams"},
    {"backends", "upstreams"},
    {"frontend", "listen"},
    {"bind", "listen"},
    {"location", "routes"},
    {"locations", "routes"},
    {"server_name", "match"},
};

struct field {
    const char *name;
    bool required;
    bool has;
    const struct bw__ynode *key;
    const struct bw__ynode *val;
};

/* Matches the keys of a mapping to `f`, reporting keys that are unknown,
 * repeated or not strings, and required keys that are missing (at `owner`,
 * the key or item that holds this mapping). False when `n` is not a
 * mapping at all. */
static bool walk_map(struct ld *ld, const struct bw__ynode *n, const struct bw__ynode *owner,
                     const char *path, const char *what, struct field *f, size_t nf)
{
    if (!want_kind(ld, n, path, BW__YNODE_MAP, what))
        return false;
    for (const struct bw__ynode *k = n->child; k && k->next; k = k->next->next) {
        const struct bw__ynode *v = k->next;
        if (k->kind != BW__YNODE_SCALAR) {
            DIAG(ld, k, "%s: keys must be strings, got %s", where(path), got(k).s);
            continue;
        }
        if (k->is_dup) {
            DIAG(ld, k, "duplicate key %s in %s (first at line %u)", got(k).s, where(path),
                 k->dup_line);
            continue;
        }
        size_t i = 0;
        while (i < nf && !bw_slice_eq(k->text, bw_slice_make(f[i].name, strlen(f[i].name))))
            i++;
        if (i == nf) {
            char names[200];
            size_t o = 0;
            names[0] = '\0';
            for (size_t j = 0; j < nf && o < sizeof names; j++) {
                int w = snprintf(names + o, sizeof names - o, "%s%s", j ? ", " : "", f[j].name);
                if (w < 0)
                    break;
                o += (size_t)w;
            }
            const char *guess = NULL;
            size_t best = SIZE_MAX;
            for (size_t j = 0; j < nf; j++)
                if (close_to(k->text, bw_slice_make(f[j].name, strlen(f[j].name)), &best))
                    guess = f[j].name;
            for (size_t a = 0; !guess && a < sizeof KEY_ALIASES / sizeof KEY_ALIASES[0]; a++) {
                if (!bw_slice_eq(k->text, bw_slice_make(KEY_ALIASES[a].theirs,
                                                        strlen(KEY_ALIASES[a].theirs))))
                    continue;
                for (size_t j = 0; j < nf; j++)
                    if (strcmp(f[j].name, KEY_ALIASES[a].ours) == 0)
                        guess = f[j].name;
            }
            /* A route only picks an upstream; what nginx does in a
             * location (return 403, rewrite) is a rule here. */
            bool route = nf == 2 && strcmp(f[0].name, "match") == 0;
            if (route && !guess)
                DIAG(ld, k,
                     "unknown key %s in %s (expected one of: %s): a route only picks an "
                     "upstream; to block, redirect or rewrite, write a rule in a ruleset "
                     "(docs/rules.md)",
                     got(k).s, where(path), names);
            else if (guess)
                DIAG(ld, k, "unknown key %s in %s; did you mean \"%s\"? (expected one of: %s)",
                     got(k).s, where(path), guess, names);
            else
                DIAG(ld, k, "unknown key %s in %s (expected one of: %s)", got(k).s, where(path),
                     names);
            continue;
        }
        f[i].has = true;
        f[i].key = k;
        f[i].val = v;
    }
    for (size_t i = 0; i < nf; i++)
        if (f[i].required && !f[i].has)
            DIAG(ld, owner, "missing required key \"%s\" in %s", f[i].name, where(path));
    return true;
}

/* ---- scalar values ---------------------------------------------------- */

static bool all_digits(bw_slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
    return true;
}

/* The digits of a plain integer, for leading_zero_hint. */
static bw_status parse_digits(bw_slice t, uint64_t *ret)
{
    if (!all_digits(t) || t.len > 19)
        return BW_ERR;
    uint64_t v = 0;
    for (size_t i = 0; i < t.len; i++)
        v = v * 10 + (uint64_t)(t.ptr[i] - '0');
    *ret = v;
    return BW_OK;
}

/* ", which has a leading zero; write 10s" when t is a number (with its
 * unit) that `parse` reads once its leading zeros are gone. 010 is 10 to
 * some readers and octal 8 to others (YAML 1.1), so every number in the
 * config refuses it, as ports do (values.c); "" otherwise. */
static void leading_zero_hint(bw_slice t, bw_status (*parse)(bw_slice, uint64_t *), char *out,
                              size_t cap)
{
    out[0] = '\0';
    if (t.len < 2 || t.ptr[0] != '0' || t.ptr[1] < '0' || t.ptr[1] > '9')
        return;
    size_t z = 0;
    while (z + 1 < t.len && t.ptr[z] == '0' && t.ptr[z + 1] >= '0' && t.ptr[z + 1] <= '9')
        z++;
    bw_slice fixed = bw_slice_sub(t, z, t.len - z);
    uint64_t v;
    if (parse(fixed, &v) == BW_OK)
        snprintf(out, cap, ", which has a leading zero; write %.*s", (int)fixed.len, fixed.ptr);
}

/* A decimal integer min..max. No sign, no leading zeros (YAML 1.1 would read
 * 010 as octal elsewhere; here it is simply refused). */
static bool get_uint(struct ld *ld, const struct bw__ynode *n, const char *path, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    char what[96];
    snprintf(what, sizeof what, "an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    if (!want_scalar(ld, n, path, what))
        return false;
    bw_slice t = n->text;
    uint64_t v = 0;
    bool ok = all_digits(t) && t.len <= 19 && !(t.len > 1 && t.ptr[0] == '0');
    for (size_t i = 0; ok && i < t.len; i++)
        v = v * 10 + (uint64_t)(t.ptr[i] - '0');
    if (!ok || v < min || v > max) {
        char hint[96];
        leading_zero_hint(t, parse_digits, hint, sizeof hint);
        DIAG(ld, n, "%s: expected %s, got %s%s", path, what, got(n).s, hint);
        return false;
    }
    *out = v;
    return true;
}

static bool get_u32(struct ld *ld, const struct bw__ynode *n, const char *path, uint32_t min,
                    uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!get_uint(ld, n, path, min, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* The number and unit of a value written with spaces or the wrong case
 * ("16 mb"): false when it is not one number and one word. */
static bool split_value(bw_slice t, char *num, size_t ncap, char *unit, size_t ucap)
{
    size_t i = 0, o = 0;
    /* The hint is what to write: without a leading zero ("010sec": 10s). */
    while (i + 1 < t.len && t.ptr[i] == '0' && t.ptr[i + 1] >= '0' && t.ptr[i + 1] <= '9')
        i++;
    while (i < t.len && t.ptr[i] >= '0' && t.ptr[i] <= '9' && o + 1 < ncap)
        num[o++] = t.ptr[i++];
    num[o] = '\0';
    if (o == 0 || o > 19)
        return false;
    while (i < t.len && t.ptr[i] == ' ')
        i++;
    o = 0;
    while (i < t.len && o + 1 < ucap) {
        char c = t.ptr[i++];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
        unit[o++] = bw_ascii_lower(c);
    }
    unit[o] = '\0';
    return i == t.len;
}

/* "; did you mean ...?" for a size bulwark refuses but can guess: nginx's
 * 16m (powers of 1024), a unit in the wrong case, a space. */
static void size_hint(bw_slice t, char *out, size_t cap)
{
    static const struct {
        const char *unit, *hint;
    } units[] = {
        {"b", "B"},     {"k", "KiB"},   {"m", "MiB"},   {"g", "GiB"},   {"t", "TiB"},
        {"kib", "KiB"}, {"mib", "MiB"}, {"gib", "GiB"}, {"tib", "TiB"}, {"kb", "KB"},
        {"mb", "MB"},   {"gb", "GB"},   {"tb", "TB"},
    };
    char num[24], unit[8];
    out[0] = '\0';
    if (!split_value(t, num, sizeof num, unit, sizeof unit))
        return;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) != 0)
            continue;
        /* 16mb: MB is powers of 1000, MiB of 1024; say both. */
        if (strlen(unit) == 2 && unit[0] != 'b')
            snprintf(out, cap, "; did you mean \"%s%s\" or \"%s%ciB\"? Units are case-sensitive",
                     num, units[i].hint, num, units[i].hint[0]);
        else
            snprintf(out, cap, "; did you mean \"%s%s\"?", num, units[i].hint);
        return;
    }
}

/* "; did you mean 30s?" for a duration bulwark refuses but can guess; a
 * bare number is refused because nginx reads it as seconds and HAProxy as
 * milliseconds, so both readings are offered. */
static void duration_hint(bw_slice t, bool micro, char *out, size_t cap)
{
    static const struct {
        const char *unit, *ours;
    } units[] = {
        {"us", "us"},
        {"usec", "us"},
        {"ms", "ms"},
        {"msec", "ms"},
        {"s", "s"},
        {"sec", "s"},
        {"secs", "s"},
        {"second", "s"},
        {"seconds", "s"},
        {"m", "m"},
        {"min", "m"},
        {"mins", "m"},
        {"minute", "m"},
        {"minutes", "m"},
        {"h", "h"},
        {"hr", "h"},
        {"hour", "h"},
        {"hours", "h"},
        {"millisecond", "ms"},
        {"milliseconds", "ms"},
    };
    char num[24], unit[16];
    out[0] = '\0';
    if (!split_value(t, num, sizeof num, unit, sizeof unit))
        return;
    if (unit[0] == '\0') {
        if (micro)
            snprintf(out, cap, "; a duration needs a unit: \"%sus\" or \"%sms\"?", num, num);
        else
            snprintf(out, cap,
                     "; a duration needs a unit: \"%ss\" or \"%sms\"? (a bare number is seconds "
                     "to nginx, milliseconds to HAProxy)",
                     num, num);
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) != 0)
            continue;
        bool is_us = strcmp(units[i].ours, "us") == 0;
        bool is_long = strcmp(units[i].ours, "m") == 0 || strcmp(units[i].ours, "h") == 0;
        if ((micro && is_long) || (!micro && is_us))
            return;
        snprintf(out, cap, "; did you mean \"%s%s\"?", num, units[i].ours);
        return;
    }
}

/* `range` is how the limits read to a user, e.g. "1KiB to 1MiB". */
static bool get_size(struct ld *ld, const struct bw__ynode *n, const char *path, uint64_t min,
                     uint64_t max, const char *range, uint64_t *out)
{
    if (!want_scalar(ld, n, path, "a size like 32KiB"))
        return false;
    uint64_t v;
    if (bw_parse_size(n->text, &v) != BW_OK) {
        char hint[160];
        leading_zero_hint(n->text, bw_parse_size, hint, sizeof hint);
        if (!hint[0])
            size_hint(n->text, hint, sizeof hint);
        DIAG(ld, n, "%s: expected a size like 32KiB, got %s%s", path, got(n).s, hint);
        return false;
    }
    if (v < min || v > max) {
        DIAG(ld, n, "%s: expected a size from %s, got %s", path, range, got(n).s);
        return false;
    }
    *out = v;
    return true;
}

/* Every duration in the config is 1ms..1h. */
static bool get_duration(struct ld *ld, const struct bw__ynode *n, const char *path, uint64_t *out)
{
    if (!want_scalar(ld, n, path, "a duration like 10s or 500ms"))
        return false;
    uint64_t v;
    if (bw_parse_duration_ms(n->text, &v) != BW_OK) {
        char hint[160];
        leading_zero_hint(n->text, bw_parse_duration_ms, hint, sizeof hint);
        if (!hint[0])
            duration_hint(n->text, false, hint, sizeof hint);
        DIAG(ld, n, "%s: expected a duration like 10s or 500ms, got %s%s", path, got(n).s, hint);
        return false;
    }
    if (v < 1 || v > 60 * 60 * 1000) {
        DIAG(ld, n, "%s: expected a duration from 1ms to 1h, got %s", path, got(n).s);
        return false;
    }
    *out = v;
    return true;
}

static bool has_ctl(bw_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] < 0x20 || s.ptr[i] == 0x7f)
            return true;
    return false;
}

/* A file path: non-empty, no control characters, bounded. */
static bool get_path(struct ld *ld, const struct bw__ynode *n, const char *path, bw_slice *out)
{
    if (!want_scalar(ld, n, path, "a file path"))
        return false;
    if (n->text.len == 0 || has_ctl(n->text) || n->text.len > MAX_PATH_BYTES) {
        DIAG(ld, n, "%s: expected a file path (1 to %d bytes, no control characters), got %s", path,
             MAX_PATH_BYTES, got(n).s);
        return false;
    }
    *out = ld_dup(ld, n->text);
    return true;
}

static bool get_sockaddr(struct ld *ld, const struct bw__ynode *n, const char *path,
                         struct bw_sockaddr *out)
{
    if (!want_scalar(ld, n, path, "an address like 127.0.0.1:8080 or [::1]:8080"))
        return false;
    bw_error err;
    if (bw_parse_sockaddr_err(n->text, out, &err) != BW_OK) {
        DIAG(ld, n, "%s: invalid address %s: %s", path, got(n).s, err.msg);
        return false;
    }
    return true;
}

static bool is_word(const struct bw__ynode *n, const char *w)
{
    return n->kind == BW__YNODE_SCALAR && bw_slice_eq(n->text, bw_slice_make(w, strlen(w)));
}

static uint16_t sockaddr_port(const struct bw_sockaddr *sa)
{
    if (sa->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
}

/* ---- sections --------------------------------------------------------- */

static bw_slice resolve_path(struct ld *ld, bw_slice p);

/* A path the process opens itself, resolved like every other: under
 * systemd the working directory is /, so a path relative to it would land
 * in the root file system rather than next to the config. Bounded once
 * resolved, since the server copies some of them into fixed buffers. */
static struct bw_config_pos pos_of(const struct bw__ynode *n)
{
    return (struct bw_config_pos){.line = n->line, .col = n->col};
}

static bool get_resolved_path(struct ld *ld, const struct bw__ynode *n, const char *path,
                              bw_slice *out)
{
    if (!get_path(ld, n, path, out))
        return false;
    *out = resolve_path(ld, *out);
    if (out->len > MAX_PATH_BYTES) {
        DIAG(ld, n, "%s: longer than %d bytes once resolved against the config file's directory",
             path, MAX_PATH_BYTES);
        return false;
    }
    return true;
}

/* listen[].tls: {certificates: [{cert, key}, ...], protocols: [TLSv1.2, TLSv1.3]} */
static void parse_tls(struct ld *ld, const struct bw__ynode *n, const char *path,
                      struct bw_config_tls *t)
{
    t->protocols = BW_CONFIG_TLS_V12 | BW_CONFIG_TLS_V13;
    struct field f[] = {{.name = "certificates", .required = true}, {.name = "protocols"}};
    if (!walk_map(ld, n, n, path, "a mapping like {certificates: [{cert: a.pem, key: a.key}]}", f,
                  2) ||
        !f[0].has)
        return;
    struct path pc = path_key(path, "certificates");
    const struct bw__ynode *cl = f[0].val;
    if (!want_kind(ld, cl, pc.s, BW__YNODE_SEQ, "a list like [{cert: a.pem, key: a.key}]"))
        return;
    if (cl->n == 0 || cl->n > BW_CONFIG_MAX_TLS_CERTS) {
        DIAG(ld, cl, "%s: expected 1 to %d certificates, got %zu", pc.s, BW_CONFIG_MAX_TLS_CERTS,
             cl->n);
        return;
    }
    t->certs = ld_alloc(ld, cl->n * sizeof *t->certs);
    if (!t->certs)
        return;
    size_t i = 0;
    for (const struct bw__ynode *item = cl->child; item; item = item->next, i++) {
        struct path pi = path_index(pc.s, i);
        struct field cf[] = {{.name = "cert", .required = true}, {.name = "key", .required = true}};
        t->certs[i] = (struct bw_config_tls_cert){.line = item->line, .col = item->col};
        if (!walk_map(ld, item, item, pi.s, "a mapping like {cert: a.pem, key: a.key}", cf, 2) ||
            !cf[0].has || !cf[1].has)
            continue;
        bw_slice v;
        if (get_path(ld, cf[0].val, path_key(pi.s, "cert").s, &v))
            t->certs[i].cert = resolve_path(ld, v);
        if (get_path(ld, cf[1].val, path_key(pi.s, "key").s, &v))
            t->certs[i].key = resolve_path(ld, v);
        /* The same file twice serves nothing more, and would be two
         * identical series of bulwark_tls_certificate_expiry_seconds (a
         * scrape Prometheus refuses whole). */
        for (size_t k = 0; k < i && t->certs[i].cert.len; k++) {
            if (bw_slice_eq(t->certs[k].cert, t->certs[i].cert)) {
                DIAG(ld, cf[0].val,
                     "%s: %.*s is listed already, as %s[%zu]: list each certificate once",
                     path_key(pi.s, "cert").s, (int)t->certs[i].cert.len, t->certs[i].cert.ptr,
                     pc.s, k);
                break;
            }
        }
    }
    t->ncerts = cl->n;
    if (f[1].has) {
        struct path pp = path_key(path, "protocols");
        const struct bw__ynode *pl = f[1].val;
        if (!want_kind(ld, pl, pp.s, BW__YNODE_SEQ, "a list like [TLSv1.2, TLSv1.3]"))
            return;
        unsigned got_protos = 0;
        for (const struct bw__ynode *it = pl->child; it; it = it->next) {
            if (!want_scalar(ld, it, pp.s, "TLSv1.2 or TLSv1.3"))
                continue;
            if (is_word(it, "TLSv1.2"))
                got_protos |= BW_CONFIG_TLS_V12;
            else if (is_word(it, "TLSv1.3"))
                got_protos |= BW_CONFIG_TLS_V13;
            else
                DIAG(ld, it,
                     "%s: expected TLSv1.2 or TLSv1.3 (older versions are not offered), "
                     "got %s",
                     pp.s, got(it).s);
        }
        if (pl->n == 0)
            DIAG(ld, pl, "%s: expected at least one of TLSv1.2, TLSv1.3", pp.s);
        else if (got_protos)
            t->protocols = got_protos;
    }
}

static void parse_listen(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    const char *path = "listen";
    if (!want_kind(ld, n, path, BW__YNODE_SEQ, "a list like [{address: 127.0.0.1:8080}]"))
        return;
    (void)key;
    if (n->n == 0 || n->n > BW_CONFIG_MAX_LISTEN) {
        DIAG(ld, n, "listen: expected 1 to %d addresses, got %zu", BW_CONFIG_MAX_LISTEN, n->n);
        return;
    }
    struct bw_config_listen *ls = ld_alloc(ld, n->n * sizeof *ls);
    if (!ls)
        return;
    size_t i = 0;
    for (const struct bw__ynode *item = n->child; item; item = item->next, i++) {
        struct path p = path_index(path, i);
        struct field f[] = {{.name = "address", .required = true}, {.name = "tls"}};
        if (!walk_map(ld, item, item, p.s, "a mapping like {address: 127.0.0.1:8080}", f, 2) ||
            !f[0].has)
            continue;
        if (f[1].has) {
            ls[i].has_tls = true;
            parse_tls(ld, f[1].val, path_key(p.s, "tls").s, &ls[i].tls);
        }
        struct path pa = path_key(p.s, "address");
        if (!get_sockaddr(ld, f[0].val, pa.s, &ls[i].addr))
            continue;
        ls[i].addr_pos = pos_of(f[0].val);
        for (size_t j = 0; j < i; j++) {
            if (sockaddr_port(&ls[i].addr) != 0 && strcmp(ls[j].addr.text, ls[i].addr.text) == 0) {
                DIAG(ld, f[0].val, "%s: %s is already listed in listen[%zu]", pa.s, ls[i].addr.text,
                     j);
                break;
            }
        }
    }
    ld->cfg->listen = ls;
    ld->cfg->nlisten = n->n;
}

static void parse_workers(struct ld *ld, const struct bw__ynode *n)
{
    if (is_word(n, "auto"))
        return; /* the default, resolved in set_defaults */
    const char *what = "auto or an integer from 1 to 256";
    if (!want_scalar(ld, n, "workers", what))
        return;
    uint64_t v = 0;
    bw_slice t = n->text;
    bool ok = all_digits(t) && t.len <= 3 && t.ptr[0] != '0';
    for (size_t i = 0; ok && i < t.len; i++)
        v = v * 10 + (uint64_t)(t.ptr[i] - '0');
    if (!ok || v < 1 || v > BW_CONFIG_MAX_WORKERS) {
        char hint[96];
        leading_zero_hint(t, parse_digits, hint, sizeof hint);
        DIAG(ld, n, "workers: expected %s, got %s%s", what, got(n).s, hint);
        return;
    }
    ld->cfg->workers = (uint32_t)v;
}

static void parse_io_engine(struct ld *ld, const struct bw__ynode *n)
{
    const char *what = "auto, epoll or io_uring";
    if (!want_scalar(ld, n, "io_engine", what))
        return;
    if (is_word(n, "auto"))
        ld->cfg->io_engine = BW_CONFIG_IO_AUTO;
    else if (is_word(n, "epoll"))
        ld->cfg->io_engine = BW_CONFIG_IO_EPOLL;
    else if (is_word(n, "io_uring"))
        ld->cfg->io_engine = BW_CONFIG_IO_IO_URING;
    else
        DIAG(ld, n, "io_engine: expected %s, got %s", what, got(n).s);
}

static void parse_io_batch_wait(struct ld *ld, const struct bw__ynode *n)
{
    const char *what = "a duration from 0us to 1ms, like 50us";
    if (!want_scalar(ld, n, "io_batch_wait", what))
        return;
    uint64_t v;
    if (bw_parse_duration_us(n->text, &v) != BW_OK || v > BW_CONFIG_MAX_BATCH_WAIT_US) {
        char hint[160] = "";
        if (bw_parse_duration_us(n->text, &v) != BW_OK)
            leading_zero_hint(n->text, bw_parse_duration_us, hint, sizeof hint);
        if (!hint[0] && bw_parse_duration_us(n->text, &v) != BW_OK)
            duration_hint(n->text, true, hint, sizeof hint);
        DIAG(ld, n, "io_batch_wait: expected %s, got %s%s", what, got(n).s, hint);
        return;
    }
    ld->cfg->io_batch_wait_us = (uint32_t)v;
}

static void parse_admin(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    struct field f[] = {{.name = "address", .required = true}, {.name = "token_file"}};
    if (!walk_map(ld, n, key, "admin", "a mapping like {address: 127.0.0.1:9901}", f, 2))
        return;
    struct bw_config_admin *ad = &ld->cfg->admin;
    if (f[0].has && get_sockaddr(ld, f[0].val, "admin.address", &ad->addr)) {
        ad->enabled = true;
        ad->addr_pos = pos_of(f[0].val);
    }
    if (f[1].has && get_resolved_path(ld, f[1].val, "admin.token_file", &ad->token_file)) {
        ad->has_token_file = true;
        ad->token_file_pos = pos_of(f[1].val);
    }
}

static void parse_client_ip(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    struct field f[] = {{.name = "trusted", .required = true}, {.name = "from", .required = true}};
    if (!walk_map(ld, n, key, "client_ip",
                  "a mapping like {trusted: [10.0.0.0/8], from: x_forwarded_for}", f, 2))
        return;
    struct bw_config_client_ip *ci = &ld->cfg->client_ip;
    if (f[0].has) {
        const struct bw__ynode *l = f[0].val;
        if (want_kind(ld, l, "client_ip.trusted", BW__YNODE_SEQ,
                      "a list of CIDRs like [10.0.0.0/8]")) {
            if (l->n == 0 || l->n > BW_CONFIG_MAX_TRUSTED) {
                DIAG(ld, l, "client_ip.trusted: expected 1 to %d CIDRs, got %zu",
                     BW_CONFIG_MAX_TRUSTED, l->n);
            } else if ((ci->trusted = ld_alloc(ld, l->n * sizeof *ci->trusted))) {
                size_t i = 0;
                for (const struct bw__ynode *c = l->child; c; c = c->next, i++) {
                    struct path p = path_index("client_ip.trusted", i);
                    if (!want_scalar(ld, c, p.s, "a CIDR like 10.0.0.0/8"))
                        continue;
                    bw_error err;
                    if (bw_parse_cidr_err(c->text, &ci->trusted[i], &err) != BW_OK)
                        DIAG(ld, c, "%s: invalid CIDR %s: %s", p.s, got(c).s, err.msg);
                }
                ci->ntrusted = l->n;
            }
        }
    }
    if (f[1].has) {
        const struct bw__ynode *v = f[1].val;
        if (is_word(v, "x_forwarded_for"))
            ci->from = BW_CLIENT_IP_X_FORWARDED_FOR;
        else if (is_word(v, "x_real_ip"))
            ci->from = BW_CLIENT_IP_X_REAL_IP;
        else if (is_word(v, "proxy_protocol"))
            ci->from = BW_CLIENT_IP_PROXY_PROTOCOL;
        else
            DIAG(ld, v,
                 "client_ip.from: expected x_forwarded_for, x_real_ip or proxy_protocol, got %s",
                 got(v).s);
    }
}

static void parse_limits(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    enum {
        F_REQUEST_LINE,
        F_HEADER_BYTES,
        F_HEADERS,
        F_BODY,
        F_CLIENT_HEADER_TO,
        F_CLIENT_BODY_TO,
        F_KEEPALIVE_TO,
        F_SEND_TO,
        F_DRAIN_TO,
        F_MAX_CONN,
        F_BODY_BUFFER,
        F_READ_AHEAD,
        F__COUNT
    };
    struct field f[F__COUNT] = {
        [F_REQUEST_LINE] = {.name = "request_line_bytes"},
        [F_HEADER_BYTES] = {.name = "header_bytes"},
        [F_HEADERS] = {.name = "headers"},
        [F_BODY] = {.name = "body_bytes"},
        [F_CLIENT_HEADER_TO] = {.name = "client_header_timeout"},
        [F_CLIENT_BODY_TO] = {.name = "client_body_timeout"},
        [F_KEEPALIVE_TO] = {.name = "keepalive_timeout"},
        [F_SEND_TO] = {.name = "send_timeout"},
        [F_DRAIN_TO] = {.name = "drain_timeout"},
        [F_MAX_CONN] = {.name = "max_connections"},
        [F_BODY_BUFFER] = {.name = "body_buffer_bytes"},
        [F_READ_AHEAD] = {.name = "read_ahead_bytes"},
    };
    if (!walk_map(ld, n, key, "limits", "a mapping like {header_bytes: 32KiB}", f, F__COUNT))
        return;
    struct bw_config_limits *l = &ld->cfg->limits;
    const uint64_t KiB = 1024, MiB = 1024 * 1024, TiB = (uint64_t)1 << 40;
    bool rl_ok = true, hb_ok = true;
    if (f[F_REQUEST_LINE].has)
        rl_ok = get_size(ld, f[F_REQUEST_LINE].val, "limits.request_line_bytes", 256, 64 * KiB,
                         "256B to 64KiB", &l->request_line_bytes);
    if (f[F_HEADER_BYTES].has)
        hb_ok = get_size(ld, f[F_HEADER_BYTES].val, "limits.header_bytes", KiB, MiB, "1KiB to 1MiB",
                         &l->header_bytes);
    if (f[F_HEADERS].has)
        (void)get_uint(ld, f[F_HEADERS].val, "limits.headers", 1, BW_HTTP_MAX_HEADERS, &l->headers);
    if (f[F_BODY].has)
        (void)get_size(ld, f[F_BODY].val, "limits.body_bytes", 0, TiB, "0 (unlimited) to 1TiB",
                       &l->body_bytes);
    /* At most half a small buffer, so the whole body always fits beside
     * what is left of the head (proxy.h BW_SMALL_BUF). */
    if (f[F_BODY_BUFFER].has)
        (void)get_size(ld, f[F_BODY_BUFFER].val, "limits.body_buffer_bytes", 0,
                       BW_CONFIG_BODY_BUFFER_MAX, "0 (stream every body) to 8KiB",
                       &l->body_buffer_bytes);
    if (f[F_READ_AHEAD].has)
        (void)get_size(ld, f[F_READ_AHEAD].val, "limits.read_ahead_bytes", 0, TiB, "0 to 1TiB",
                       &l->read_ahead_bytes);
    static const struct {
        int field;
        const char *path;
        size_t off;
    } durs[] = {
        {F_CLIENT_HEADER_TO, "limits.client_header_timeout",
         offsetof(struct bw_config_limits, client_header_timeout_ms)},
        {F_CLIENT_BODY_TO, "limits.client_body_timeout",
         offsetof(struct bw_config_limits, client_body_timeout_ms)},
        {F_KEEPALIVE_TO, "limits.keepalive_timeout",
         offsetof(struct bw_config_limits, keepalive_timeout_ms)},
        {F_SEND_TO, "limits.send_timeout", offsetof(struct bw_config_limits, send_timeout_ms)},
        {F_DRAIN_TO, "limits.drain_timeout", offsetof(struct bw_config_limits, drain_timeout_ms)},
    };
    for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++)
        if (f[durs[i].field].has)
            (void)get_duration(ld, f[durs[i].field].val, durs[i].path,
                               (uint64_t *)((char *)l + durs[i].off));
    if (f[F_MAX_CONN].has)
        (void)get_uint(ld, f[F_MAX_CONN].val, "limits.max_connections", 1, 1000000,
                       &l->max_connections);

    /* The request line is part of the header block, so it cannot be longer. */
    if (rl_ok && hb_ok && l->header_bytes < l->request_line_bytes) {
        if (f[F_HEADER_BYTES].has)
            DIAG(ld, f[F_HEADER_BYTES].val,
                 "limits.header_bytes: must be at least request_line_bytes (%llu bytes), got %s",
                 (unsigned long long)l->request_line_bytes, got(f[F_HEADER_BYTES].val).s);
        else
            DIAG(ld, f[F_REQUEST_LINE].val,
                 "limits.request_line_bytes: must not exceed header_bytes (%llu bytes), got %s",
                 (unsigned long long)l->header_bytes, got(f[F_REQUEST_LINE].val).s);
    }
}

static bool valid_upstream_name(bw_slice s)
{
    if (s.len == 0 || s.len > MAX_UPSTREAM_NAME)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* RFC 9110 §5.6.2 tchar: what a header field name is made of. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void parse_balance(struct ld *ld, const struct bw__ynode *n, const char *path,
                          struct bw_config_upstream *u)
{
    if (!want_scalar(ld, n, path, "round_robin, least_conn or hash(<field>)"))
        return;
    bw_slice t = n->text;
    if (bw_slice_eq(t, BW_SLICE_LIT("round_robin"))) {
        u->balance = BW_BALANCE_ROUND_ROBIN;
        return;
    }
    if (bw_slice_eq(t, BW_SLICE_LIT("least_conn"))) {
        u->balance = BW_BALANCE_LEAST_CONN;
        return;
    }
    if (!bw_slice_starts_with(t, BW_SLICE_LIT("hash(")) || t.ptr[t.len - 1] != ')') {
        DIAG(ld, n, "%s: expected round_robin, least_conn or hash(<field>), got %s", path,
             got(n).s);
        return;
    }
    bw_slice in = bw_slice_sub(t, 5, t.len - 6);
    static const struct {
        const char *name;
        enum bw_hash_field field;
    } fields[] = {
        {"ip.src", BW_HASH_IP_SRC},
        {"http.host", BW_HASH_HOST},
        {"http.request.uri.path", BW_HASH_URI_PATH},
        {"http.request.uri", BW_HASH_URI},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (bw_slice_eq(in, bw_slice_make(fields[i].name, strlen(fields[i].name)))) {
            u->balance = BW_BALANCE_HASH;
            u->hash_field = fields[i].field;
            return;
        }
    }
    const bw_slice pre = BW_SLICE_LIT("http.request.headers[\"");
    const bw_slice post = BW_SLICE_LIT("\"]");
    if (in.len > pre.len + post.len && bw_slice_starts_with(in, pre) &&
        memcmp(in.ptr + in.len - post.len, post.ptr, post.len) == 0) {
        bw_slice name = bw_slice_sub(in, pre.len, in.len - pre.len - post.len);
        bool ok = name.len <= 256;
        for (size_t i = 0; ok && i < name.len; i++)
            ok = is_tchar(name.ptr[i]);
        if (ok) {
            char *lower = ld_alloc(ld, name.len + 1);
            if (!lower)
                return;
            for (size_t i = 0; i < name.len; i++)
                lower[i] = bw_ascii_lower(name.ptr[i]);
            u->balance = BW_BALANCE_HASH;
            u->hash_field = BW_HASH_HEADER;
            u->hash_header = bw_slice_make(lower, name.len);
            return;
        }
    }
    DIAG(ld, n,
         "%s: expected hash(ip.src), hash(http.host), hash(http.request.uri.path), "
         "hash(http.request.uri) or hash(http.request.headers[\"<name>\"]), got %s",
         path, got(n).s);
}

static void parse_health_check(struct ld *ld, const struct bw__ynode *key,
                               const struct bw__ynode *n, const char *path,
                               struct bw_config_health_check *h)
{
    struct field f[] = {
        {.name = "path"}, {.name = "interval"}, {.name = "timeout"},
        {.name = "rise"}, {.name = "fall"},
    };
    if (!walk_map(ld, n, key, path, "a mapping like {path: /healthz, interval: 2s}", f, 5))
        return;
    h->enabled = true;
    if (f[0].has) {
        struct path p = path_key(path, "path");
        const struct bw__ynode *v = f[0].val;
        if (want_scalar(ld, v, p.s, "a path like /healthz")) {
            bool ok = v->text.len > 0 && v->text.ptr[0] == '/' && v->text.len <= MAX_PATH_BYTES;
            for (size_t i = 0; ok && i < v->text.len; i++)
                ok = (unsigned char)v->text.ptr[i] > 0x20 && v->text.ptr[i] != 0x7f;
            if (ok)
                h->path = ld_dup(ld, v->text);
            else
                DIAG(ld, v,
                     "%s: expected a path starting with / without spaces or control "
                     "characters, like /healthz, got %s",
                     p.s, got(v).s);
        }
    }
    struct path p;
    if (f[1].has)
        (void)get_duration(ld, f[1].val, (p = path_key(path, "interval")).s, &h->interval_ms);
    if (f[2].has)
        (void)get_duration(ld, f[2].val, (p = path_key(path, "timeout")).s, &h->timeout_ms);
    if (f[3].has)
        (void)get_u32(ld, f[3].val, (p = path_key(path, "rise")).s, 1, 100, &h->rise);
    if (f[4].has)
        (void)get_u32(ld, f[4].val, (p = path_key(path, "fall")).s, 1, 100, &h->fall);
}

static void parse_servers(struct ld *ld, const struct bw__ynode *n, const char *path,
                          struct bw_config_upstream *u)
{
    if (!want_kind(ld, n, path, BW__YNODE_SEQ, "a list like [{address: 127.0.0.1:9000}]"))
        return;
    if (n->n == 0 || n->n > BW_CONFIG_MAX_SERVERS) {
        DIAG(ld, n, "%s: expected 1 to %d servers, got %zu", path, BW_CONFIG_MAX_SERVERS, n->n);
        return;
    }
    struct bw_config_server *s = ld_alloc(ld, n->n * sizeof *s);
    if (!s)
        return;
    bool *ok = ld_alloc(ld, n->n * sizeof *ok);
    if (!ok)
        return;
    size_t i = 0;
    for (const struct bw__ynode *item = n->child; item; item = item->next, i++) {
        s[i].weight = 1;
        struct path p = path_index(path, i);
        struct field f[] = {
            {.name = "address", .required = true}, {.name = "weight"}, {.name = "max_conns"}};
        if (!walk_map(ld, item, item, p.s, "a mapping like {address: 127.0.0.1:9000}", f, 3))
            continue;
        struct path pw = path_key(p.s, "weight");
        if (f[1].has)
            (void)get_u32(ld, f[1].val, pw.s, 1, 1000, &s[i].weight);
        struct path pm = path_key(p.s, "max_conns");
        if (f[2].has)
            (void)get_u32(ld, f[2].val, pm.s, 0, BW_CONFIG_MAX_CONNS_MAX, &s[i].max_conns);
        if (!f[0].has)
            continue;
        struct path pa = path_key(p.s, "address");
        if (!get_sockaddr(ld, f[0].val, pa.s, &s[i].addr))
            continue;
        if (sockaddr_port(&s[i].addr) == 0) {
            DIAG(ld, f[0].val, "%s: an upstream server needs a port from 1 to 65535, got %s", pa.s,
                 got(f[0].val).s);
            continue;
        }
        ok[i] = true;
        for (size_t j = 0; j < i; j++) {
            if (ok[j] && strcmp(s[j].addr.text, s[i].addr.text) == 0) {
                DIAG(ld, f[0].val, "%s: duplicate server %s (also %s[%zu])", pa.s, s[i].addr.text,
                     path, j);
                break;
            }
        }
    }
    u->servers = s;
    u->nservers = n->n;
}

static void upstream_defaults(struct ld *ld, struct bw_config_upstream *u)
{
    u->balance = BW_BALANCE_ROUND_ROBIN;
    u->hash_field = BW_HASH_IP_SRC;
    u->hash_header = BW_SLICE_EMPTY;
    u->keepalive = 64;
    u->keepalive_timeout_ms = 60000;
    u->keepalive_requests = 1000;
    u->connect_timeout_ms = 1000;
    u->read_timeout_ms = 30000;
    u->write_timeout_ms = 30000;
    u->max_fails = 3;
    u->fail_timeout_ms = 10000;
    u->health.enabled = false;
    u->health.path = ld_dup(ld, BW_SLICE_LIT("/healthz"));
    u->health.interval_ms = 2000;
    u->health.timeout_ms = 1000;
    u->health.rise = 2;
    u->health.fall = 3;
}

static bool get_bool(struct ld *ld, const struct bw__ynode *n, const char *path, bool *out);

/* A DNS name for SNI: letters, digits, '-' and '.', 1..253 bytes. */
static bool is_dns_name(bw_slice s)
{
    if (s.len == 0 || s.len > 253 || s.ptr[0] == '.' || s.ptr[0] == '-')
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* upstreams.<name>.tls: {verify, ca_file, sni}; `tls: {}` is TLS with the
 * defaults. */
static void parse_upstream_tls(struct ld *ld, const struct bw__ynode *n, const char *path,
                               struct bw_config_upstream_tls *t)
{
    t->verify = true;
    struct field f[] = {{.name = "verify"}, {.name = "ca_file"}, {.name = "sni"}};
    if (!walk_map(ld, n, n, path,
                  "a mapping like {verify: true, ca_file: ca.pem, sni: app.internal}", f, 3))
        return;
    struct path p;
    if (f[0].has)
        (void)get_bool(ld, f[0].val, (p = path_key(path, "verify")).s, &t->verify);
    bw_slice v;
    if (f[1].has && get_path(ld, f[1].val, (p = path_key(path, "ca_file")).s, &v)) {
        t->has_ca_file = true;
        t->ca_file = resolve_path(ld, v);
    }
    if (f[2].has && want_scalar(ld, f[2].val, (p = path_key(path, "sni")).s, "a DNS name")) {
        if (!is_dns_name(f[2].val->text))
            DIAG(ld, f[2].val, "%s: expected a DNS name like app.internal, got %s", p.s,
                 got(f[2].val).s);
        else {
            t->has_sni = true;
            t->sni = ld_dup(ld, f[2].val->text);
        }
    }
    if (f[1].has && f[0].has && !t->verify)
        DIAG(ld, f[1].val, "%s: ca_file is only used with verify: true", path);
}

static void parse_upstream(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n,
                           const char *path, struct bw_config_upstream *u)
{
    enum {
        F_SERVERS,
        F_BALANCE,
        F_KEEPALIVE,
        F_KEEPALIVE_TIMEOUT,
        F_KEEPALIVE_REQUESTS,
        F_CONNECT,
        F_READ,
        F_WRITE,
        F_MAX_FAILS,
        F_FAIL_TIMEOUT,
        F_HEALTH,
        F_TLS,
        F__COUNT
    };
    struct field f[F__COUNT] = {
        [F_SERVERS] = {.name = "servers", .required = true},
        [F_BALANCE] = {.name = "balance"},
        [F_KEEPALIVE] = {.name = "keepalive"},
        [F_KEEPALIVE_TIMEOUT] = {.name = "keepalive_timeout"},
        [F_KEEPALIVE_REQUESTS] = {.name = "keepalive_requests"},
        [F_CONNECT] = {.name = "connect_timeout"},
        [F_READ] = {.name = "read_timeout"},
        [F_WRITE] = {.name = "write_timeout"},
        [F_MAX_FAILS] = {.name = "max_fails"},
        [F_FAIL_TIMEOUT] = {.name = "fail_timeout"},
        [F_HEALTH] = {.name = "health_check"},
        [F_TLS] = {.name = "tls"},
    };
    if (!walk_map(ld, n, key, path, "a mapping like {servers: [{address: 127.0.0.1:9000}]}", f,
                  F__COUNT))
        return;
    struct path p;
    if (f[F_SERVERS].has)
        parse_servers(ld, f[F_SERVERS].val, (p = path_key(path, "servers")).s, u);
    if (f[F_BALANCE].has)
        parse_balance(ld, f[F_BALANCE].val, (p = path_key(path, "balance")).s, u);
    if (f[F_KEEPALIVE].has)
        (void)get_u32(ld, f[F_KEEPALIVE].val, (p = path_key(path, "keepalive")).s, 0, 10000,
                      &u->keepalive);
    if (f[F_KEEPALIVE_TIMEOUT].has)
        (void)get_duration(ld, f[F_KEEPALIVE_TIMEOUT].val,
                           (p = path_key(path, "keepalive_timeout")).s, &u->keepalive_timeout_ms);
    if (f[F_KEEPALIVE_REQUESTS].has)
        (void)get_u32(ld, f[F_KEEPALIVE_REQUESTS].val, (p = path_key(path, "keepalive_requests")).s,
                      1, 1000000, &u->keepalive_requests);
    if (f[F_CONNECT].has)
        (void)get_duration(ld, f[F_CONNECT].val, (p = path_key(path, "connect_timeout")).s,
                           &u->connect_timeout_ms);
    if (f[F_READ].has)
        (void)get_duration(ld, f[F_READ].val, (p = path_key(path, "read_timeout")).s,
                           &u->read_timeout_ms);
    if (f[F_WRITE].has)
        (void)get_duration(ld, f[F_WRITE].val, (p = path_key(path, "write_timeout")).s,
                           &u->write_timeout_ms);
    if (f[F_MAX_FAILS].has)
        (void)get_u32(ld, f[F_MAX_FAILS].val, (p = path_key(path, "max_fails")).s, 0, 1000,
                      &u->max_fails);
    if (f[F_FAIL_TIMEOUT].has)
        (void)get_duration(ld, f[F_FAIL_TIMEOUT].val, (p = path_key(path, "fail_timeout")).s,
                           &u->fail_timeout_ms);
    if (f[F_HEALTH].has)
        parse_health_check(ld, f[F_HEALTH].key, f[F_HEALTH].val,
                           (p = path_key(path, "health_check")).s, &u->health);
    if (f[F_TLS].has) {
        u->has_tls = true;
        parse_upstream_tls(ld, f[F_TLS].val, (p = path_key(path, "tls")).s, &u->tls);
    }
}

/* Returns whether the upstream names are known (the section was a mapping),
 * so that routes can be checked against them. */
static bool parse_upstreams(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    const char *path = "upstreams";
    if (!want_kind(ld, n, path, BW__YNODE_MAP,
                   "a mapping of names to upstreams, like {app: {servers: [...]}}"))
        return false;
    (void)key;
    size_t npairs = n->n / 2;
    if (npairs == 0 || npairs > BW_CONFIG_MAX_UPSTREAMS) {
        DIAG(ld, n, "upstreams: expected 1 to %d upstreams, got %zu", BW_CONFIG_MAX_UPSTREAMS,
             npairs);
        return false;
    }
    struct bw_config_upstream *us = ld_alloc(ld, npairs * sizeof *us);
    if (!us)
        return false;
    size_t nu = 0;
    for (const struct bw__ynode *k = n->child; k && k->next; k = k->next->next) {
        const struct bw__ynode *v = k->next;
        if (k->kind != BW__YNODE_SCALAR) {
            DIAG(ld, k, "upstreams: keys must be upstream names, got %s", got(k).s);
            continue;
        }
        if (k->is_dup) {
            DIAG(ld, k, "duplicate key %s in upstreams (first at line %u)", got(k).s, k->dup_line);
            continue;
        }
        if (!valid_upstream_name(k->text)) {
            DIAG(ld, k, "upstreams: invalid upstream name %s (expected 1 to %d of A-Z a-z 0-9 _ -)",
                 got(k).s, MAX_UPSTREAM_NAME);
            continue;
        }
        struct bw_config_upstream *u = &us[nu++];
        upstream_defaults(ld, u);
        u->name = ld_dup(ld, k->text);
        struct path p = path_key(path, u->name.ptr);
        parse_upstream(ld, k, v, p.s, u);
    }
    ld->cfg->upstreams = us;
    ld->cfg->nupstreams = nu;
    return true;
}

/* A route's match: a request-phase rules expression. An error inside it is
 * reported where it is, with the rules front end's caret under the token. */
static void parse_match(struct ld *ld, const struct bw__ynode *v, const char *path,
                        struct bw_config_route *r)
{
    struct bw_rules_srcpos where = {.file = ld->cfg->path};
    bw__ynode_text_pos(&ld->src, v, &where.line, &where.col, &where.cont_col);
    struct bw_rules_expr *e;
    struct bw_rules_diag d;
    if (bw_rules_parse(ld->a, v->text, BW_RULES_PHASE_REQUEST, &where, &e, &d) != BW_OK) {
        /* The front end counts lines and columns in the value; YAML folds
         * lines and decodes escapes, so the file position of the token comes
         * from the scalar's source. */
        uint32_t line, col;
        if (bw__ynode_value_pos(&ld->src, v, d.off, &line, &col)) {
            d.line = line;
            d.col = col;
        }
        /* d.text is "file:line:col: error: msg\n    <line>\n    ^~~\n": keep
         * the source excerpt, the diagnostic printer writes the prefix. */
        char mine[320];
        const char *excerpt = memchr(d.text, '\n', strnlen(d.text, sizeof d.text));
        if (bw__ynode_excerpt(&ld->src, v, d.off, d.len, mine + 1, sizeof mine - 1)) {
            mine[0] = '\n';
            excerpt = mine;
        }
        int elen = excerpt ? (int)strnlen(excerpt + 1, sizeof d.text) : 0;
        while (elen > 0 && excerpt[elen] == '\n')
            elen--;
        diag_at(ld, d.line, d.col, "%s: %s%s%.*s", path, d.msg, elen ? "\n" : "", elen,
                excerpt ? excerpt + 1 : "");
        return;
    }
    r->has_match = true;
    r->match = e;
    r->match_text = ld_dup(ld, v->text);
}

static void parse_routes(struct ld *ld, const struct bw__ynode *n, bool upstreams_known)
{
    const char *path = "routes";
    if (!want_kind(ld, n, path, BW__YNODE_SEQ, "a list like [{upstream: app}]"))
        return;
    if (n->n == 0 || n->n > BW_CONFIG_MAX_ROUTES) {
        DIAG(ld, n, "routes: expected 1 to %d routes, got %zu", BW_CONFIG_MAX_ROUTES, n->n);
        return;
    }
    struct bw_config_route *rs = ld_alloc(ld, n->n * sizeof *rs);
    if (!rs)
        return;
    const struct bw_config *cfg = ld->cfg;
    size_t i = 0;
    for (const struct bw__ynode *item = n->child; item; item = item->next, i++) {
        struct bw_config_route *r = &rs[i];
        r->has_match = false;
        r->match_text = BW_SLICE_EMPTY;
        struct path p = path_index(path, i);
        struct field f[] = {{.name = "match"}, {.name = "upstream", .required = true}};
        if (!walk_map(ld, item, item, p.s, "a mapping like {match: '...', upstream: app}", f, 2))
            continue;
        if (f[0].has) {
            struct path pm = path_key(p.s, "match");
            const struct bw__ynode *v = f[0].val;
            if (want_scalar(ld, v, pm.s, "a rules expression like 'http.host eq \"a.example\"'"))
                parse_match(ld, v, pm.s, r);
        }
        if (f[1].has) {
            struct path pu = path_key(p.s, "upstream");
            const struct bw__ynode *v = f[1].val;
            if (!want_scalar(ld, v, pu.s, "the name of an upstream") || !upstreams_known)
                continue;
            size_t u = 0;
            while (u < cfg->nupstreams && !bw_slice_eq(cfg->upstreams[u].name, v->text))
                u++;
            if (u < cfg->nupstreams) {
                r->upstream = u;
                continue;
            }
            char names[120];
            size_t o = 0;
            names[0] = '\0';
            for (size_t j = 0; j < cfg->nupstreams; j++) {
                const bw_slice nm = cfg->upstreams[j].name;
                if (o + nm.len + 8 >= sizeof names) {
                    snprintf(names + o, sizeof names - o, ", ...");
                    break;
                }
                o += (size_t)snprintf(names + o, sizeof names - o, "%s%.*s", j ? ", " : "",
                                      (int)nm.len, nm.ptr);
            }
            const char *guess = NULL;
            size_t best = SIZE_MAX, glen = 0;
            for (size_t j = 0; j < cfg->nupstreams; j++) {
                if (close_to(v->text, cfg->upstreams[j].name, &best)) {
                    guess = cfg->upstreams[j].name.ptr;
                    glen = cfg->upstreams[j].name.len;
                }
            }
            if (guess)
                DIAG(ld, v, "%s: no upstream named %s; did you mean \"%.*s\"? (defined: %s)", pu.s,
                     got(v).s, (int)glen, guess, names);
            else if (memchr(v->text.ptr, ':', v->text.len))
                DIAG(ld, v,
                     "%s: no upstream named %s (defined: %s): a route names an upstream; its "
                     "servers' addresses go under upstreams.<name>.servers",
                     pu.s, got(v).s, names);
            else
                DIAG(ld, v, "%s: no upstream named %s (defined: %s)", pu.s, got(v).s, names);
        }
    }
    ld->cfg->routes = rs;
    ld->cfg->nroutes = n->n;
}

static void parse_access_log(struct ld *ld, const struct bw__ynode *n)
{
    const char *what = "a file path, \"-\" (stdout) or off";
    if (!want_scalar(ld, n, "access_log", what))
        return;
    struct bw_config_log *lg = &ld->cfg->log;
    if (is_word(n, "-"))
        return; /* the default */
    if (is_word(n, "off")) {
        lg->access_enabled = false;
        lg->access_path = BW_SLICE_EMPTY;
        return;
    }
    /* A YAML boolean here is a mistake, not a file named "false". */
    static const char *const bools[] = {"true", "false", "yes", "no", "on",
                                        "True", "False", "Yes", "No", "On"};
    for (size_t i = 0; n->plain && i < sizeof bools / sizeof bools[0]; i++) {
        if (is_word(n, bools[i])) {
            DIAG(ld, n, "access_log: expected %s, got %s", what, got(n).s);
            return;
        }
    }
    if (get_resolved_path(ld, n, "access_log", &lg->access_path))
        lg->access_pos = pos_of(n);
}

/* ---- the whole config -------------------------------------------------- */

static uint32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    if (n > BW_CONFIG_MAX_WORKERS)
        return BW_CONFIG_MAX_WORKERS;
    return (uint32_t)n;
}

static void set_defaults(struct ld *ld)
{
    struct bw_config *cfg = ld->cfg;
    cfg->workers = online_cpus();
    cfg->io_batch_wait_us = BW_CONFIG_DEFAULT_BATCH_WAIT_US;
    cfg->admin.enabled = false;
    cfg->admin.has_token_file = false;
    cfg->admin.token_file = BW_SLICE_EMPTY;
    cfg->has_state_dir = false;
    cfg->state_dir = BW_SLICE_EMPTY;
    cfg->client_ip.from = BW_CLIENT_IP_PEER;
    cfg->client_ip.ntrusted = 0;
    struct bw_config_limits *l = &cfg->limits;
    l->request_line_bytes = 8 * 1024;
    l->header_bytes = 32 * 1024;
    l->headers = 100;
    l->body_bytes = 16 * 1024 * 1024;
    l->body_buffer_bytes = BW_CONFIG_BODY_BUFFER_MAX;
    l->read_ahead_bytes = 16 * 1024 * 1024;
    l->client_header_timeout_ms = 10 * 1000;
    l->client_body_timeout_ms = 60 * 1000;
    l->keepalive_timeout_ms = 60 * 1000;
    l->send_timeout_ms = 60 * 1000;
    l->drain_timeout_ms = 30 * 1000;
    l->max_connections = 10000;
    cfg->watch = false;
    cfg->watch_debounce_ms = 500;
    cfg->modules.rules.enabled = false;
    cfg->modules.rules.on_error = BW_ON_ERROR_OPEN;
    cfg->modules.rules.error_status = 503;
    cfg->modules.rules.rate_limit_entries = 65536;
    cfg->modules.bot_score.enabled = false;
    cfg->modules.bot_score.features = BW_SLICE_EMPTY;
    cfg->modules.bot_score.on_error = BW_ON_ERROR_OPEN;
    cfg->modules.bot_score.error_status = 503;
    cfg->modules.bot_score.max_features = BW_CONFIG_BOT_DEFAULT_MAX_FEATURES;
    cfg->log.access_enabled = true;
    cfg->log.access_path = ld_dup(ld, BW_SLICE_LIT("-"));
}

/* A path relative to the config file's directory, as nginx resolves its
 * includes: the config can move with everything it names, and every path
 * means the same whatever directory the process was started from. */
static bw_slice resolve_path(struct ld *ld, bw_slice p)
{
    bw_slice cfgp = ld->cfg->path;
    if ((p.len > 0 && p.ptr[0] == '/') || cfgp.len == 0)
        return p;
    size_t dir = cfgp.len;
    while (dir > 0 && cfgp.ptr[dir - 1] != '/')
        dir--;
    if (dir == 0)
        return p;
    char *buf = ld_alloc(ld, dir + p.len + 1);
    if (!buf)
        return p;
    memcpy(buf, cfgp.ptr, dir);
    memcpy(buf + dir, p.ptr, p.len);
    return bw_slice_make(buf, dir + p.len);
}

/* open | closed: a module's failure policy. */
static void get_on_error(struct ld *ld, const struct bw__ynode *n, const char *path,
                         enum bw_on_error *out)
{
    if (!want_scalar(ld, n, path, "open or closed"))
        return;
    if (is_word(n, "open"))
        *out = BW_ON_ERROR_OPEN;
    else if (is_word(n, "closed"))
        *out = BW_ON_ERROR_CLOSED;
    else
        DIAG(ld, n, "%s: expected open or closed, got %s", path, got(n).s);
}

static void parse_rules_module(struct ld *ld, const struct bw__ynode *key,
                               const struct bw__ynode *n)
{
    const char *path = "modules.rules";
    struct bw_config_rules_module *m = &ld->cfg->modules.rules;
    struct field f[] = {
        {.name = "rulesets", .required = true},
        {.name = "on_error"},
        {.name = "error_status"},
        {.name = "rate_limit_entries"},
    };
    if (!walk_map(ld, n, key, path, "a mapping like {rulesets: [rules/entry.yaml], on_error: open}",
                  f, 4))
        return;
    m->enabled = true;
    if (f[0].has) {
        const struct bw__ynode *l = f[0].val;
        if (want_kind(ld, l, "modules.rules.rulesets", BW__YNODE_SEQ,
                      "a list of ruleset files like [rules/entry.yaml]")) {
            if (l->n == 0 || l->n > BW_CONFIG_MAX_RULESET_FILES) {
                DIAG(ld, l, "modules.rules.rulesets: expected 1 to %d files, got %zu",
                     BW_CONFIG_MAX_RULESET_FILES, l->n);
            } else {
                m->rulesets = ld_alloc(ld, l->n * sizeof *m->rulesets);
                m->ruleset_pos = ld_alloc(ld, l->n * sizeof *m->ruleset_pos);
                size_t i = 0;
                for (const struct bw__ynode *it = l->child; m->rulesets && m->ruleset_pos && it;
                     it = it->next) {
                    struct path pi = path_index("modules.rules.rulesets", i);
                    bw_slice p;
                    if (!get_path(ld, it, pi.s, &p))
                        continue;
                    for (size_t j = 0; j < i; j++)
                        if (bw_slice_eq(m->rulesets[j], resolve_path(ld, p)))
                            DIAG(ld, it, "%s: %s is listed twice", pi.s, got(it).s);
                    m->ruleset_pos[i] = pos_of(it);
                    m->rulesets[i++] = resolve_path(ld, p);
                }
                m->nrulesets = i;
            }
        }
    }
    if (f[1].has)
        get_on_error(ld, f[1].val, "modules.rules.on_error", &m->on_error);
    uint32_t st;
    if (f[2].has && get_u32(ld, f[2].val, "modules.rules.error_status", 500, 599, &st))
        m->error_status = (uint16_t)st;
    if (f[3].has)
        (void)get_uint(ld, f[3].val, "modules.rules.rate_limit_entries", 4, 1u << 24,
                       &m->rate_limit_entries);
}

static void parse_bot_module(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    struct bw_config_bot_module *m = &ld->cfg->modules.bot_score;
    struct field f[] = {
        {.name = "features", .required = true},
        {.name = "on_error"},
        {.name = "error_status"},
        {.name = "max_features"},
    };
    if (!walk_map(ld, n, key, "modules.bot_score",
                  "a mapping like {features: features.json, on_error: open}", f, 4))
        return;
    m->enabled = true;
    bw_slice p;
    if (f[0].has && get_path(ld, f[0].val, "modules.bot_score.features", &p)) {
        m->features = resolve_path(ld, p);
        m->features_pos = pos_of(f[0].val);
    }
    if (f[1].has)
        get_on_error(ld, f[1].val, "modules.bot_score.on_error", &m->on_error);
    uint32_t st;
    if (f[2].has && get_u32(ld, f[2].val, "modules.bot_score.error_status", 500, 599, &st))
        m->error_status = (uint16_t)st;
    /* Past the hard cap is a config error, not a silent clamp: the operator
     * asked for something the proxy will not do. */
    if (f[3].has)
        (void)get_u32(ld, f[3].val, "modules.bot_score.max_features", 1,
                      BW_CONFIG_BOT_MAX_FEATURES_CAP, &m->max_features);
}

/* true or false, spelled so: YAML 1.1's yes/no/on/off are refused, as they
 * surprise people. */
static bool get_bool(struct ld *ld, const struct bw__ynode *n, const char *path, bool *out)
{
    if (!want_scalar(ld, n, path, "true or false"))
        return false;
    if (n->plain && is_word(n, "true")) {
        *out = true;
        return true;
    }
    if (n->plain && is_word(n, "false")) {
        *out = false;
        return true;
    }
    DIAG(ld, n, "%s: expected true or false, got %s", path, got(n).s);
    return false;
}

static void parse_reload(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    struct field f[] = {{.name = "watch"}, {.name = "debounce"}};
    if (!walk_map(ld, n, key, "reload", "a mapping like {watch: true, debounce: 500ms}", f, 2))
        return;
    if (f[0].has)
        (void)get_bool(ld, f[0].val, "reload.watch", &ld->cfg->watch);
    if (f[1].has)
        (void)get_duration(ld, f[1].val, "reload.debounce", &ld->cfg->watch_debounce_ms);
}

static void parse_modules(struct ld *ld, const struct bw__ynode *key, const struct bw__ynode *n)
{
    struct field f[] = {{.name = "rules"}, {.name = "bot_score"}};
    if (!walk_map(ld, n, key, "modules", "a mapping like {rules: {rulesets: [...]}}", f, 2))
        return;
    if (f[0].has)
        parse_rules_module(ld, f[0].key, f[0].val);
    if (f[1].has)
        parse_bot_module(ld, f[1].key, f[1].val);
}

static void parse_root(struct ld *ld, const struct bw__ynode *root)
{
    enum {
        F_LISTEN,
        F_WORKERS,
        F_IO_ENGINE,
        F_IO_BATCH_WAIT,
        F_ADMIN,
        F_STATE_DIR,
        F_CLIENT_IP,
        F_LIMITS,
        F_UPSTREAMS,
        F_ROUTES,
        F_ACCESS_LOG,
        F_MODULES,
        F_RELOAD,
        F__COUNT
    };
    struct field f[F__COUNT] = {
        [F_LISTEN] = {.name = "listen", .required = true},
        [F_WORKERS] = {.name = "workers"},
        [F_IO_ENGINE] = {.name = "io_engine"},
        [F_IO_BATCH_WAIT] = {.name = "io_batch_wait"},
        [F_ADMIN] = {.name = "admin"},
        [F_STATE_DIR] = {.name = "state_dir"},
        [F_CLIENT_IP] = {.name = "client_ip"},
        [F_LIMITS] = {.name = "limits"},
        [F_UPSTREAMS] = {.name = "upstreams", .required = true},
        [F_ROUTES] = {.name = "routes", .required = true},
        [F_ACCESS_LOG] = {.name = "access_log"},
        [F_MODULES] = {.name = "modules"},
        [F_RELOAD] = {.name = "reload"},
    };
    if (bw__ynode_is_null(root)) {
        diag_at(ld, 0, 0, "the config is empty; it needs at least listen, upstreams and routes");
        return;
    }
    if (!walk_map(ld, root, root, "", "a mapping of keys like listen: and upstreams:", f,
                  F__COUNT)) {
        /* want_kind said "the config: expected ..." with an empty path. */
        return;
    }
    struct bw_config *cfg = ld->cfg;
    if (f[F_LISTEN].has)
        parse_listen(ld, f[F_LISTEN].key, f[F_LISTEN].val);
    if (f[F_WORKERS].has)
        parse_workers(ld, f[F_WORKERS].val);
    if (f[F_IO_ENGINE].has)
        parse_io_engine(ld, f[F_IO_ENGINE].val);
    if (f[F_IO_BATCH_WAIT].has)
        parse_io_batch_wait(ld, f[F_IO_BATCH_WAIT].val);
    if (f[F_ADMIN].has)
        parse_admin(ld, f[F_ADMIN].key, f[F_ADMIN].val);
    if (f[F_STATE_DIR].has &&
        get_resolved_path(ld, f[F_STATE_DIR].val, "state_dir", &cfg->state_dir)) {
        cfg->has_state_dir = true;
        cfg->state_dir_pos = pos_of(f[F_STATE_DIR].val);
    }
    if (f[F_CLIENT_IP].has)
        parse_client_ip(ld, f[F_CLIENT_IP].key, f[F_CLIENT_IP].val);
    if (f[F_LIMITS].has)
        parse_limits(ld, f[F_LIMITS].key, f[F_LIMITS].val);
    bool upstreams_known = false;
    if (f[F_UPSTREAMS].has)
        upstreams_known = parse_upstreams(ld, f[F_UPSTREAMS].key, f[F_UPSTREAMS].val);
    if (f[F_ROUTES].has)
        parse_routes(ld, f[F_ROUTES].val, upstreams_known);
    if (f[F_ACCESS_LOG].has)
        parse_access_log(ld, f[F_ACCESS_LOG].val);
    if (f[F_MODULES].has)
        parse_modules(ld, f[F_MODULES].key, f[F_MODULES].val);
    if (f[F_RELOAD].has)
        parse_reload(ld, f[F_RELOAD].key, f[F_RELOAD].val);
}

static void diags_reset(struct bw_config_diags *d, const char *path)
{
    d->file = path;
    d->n = 0;
    d->dropped = 0;
}

bw_status bw_config_parse(const char *path, const char *text, size_t len,
                          struct bw_config **ret_cfg, struct bw_config_diags *diags)
{
    diags_reset(diags, path);
    struct bw_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        diags->items[0] = (struct bw_config_diag){.line = 0, .col = 0};
        snprintf(diags->items[0].msg, sizeof diags->items[0].msg, "out of memory");
        diags->n = 1;
        return BW_ERR;
    }
    bw_arena_init(&cfg->arena, 16 * 1024, CONFIG_ARENA_CAP);
    struct ld ld = {.cfg = cfg, .a = &cfg->arena, .d = diags};
    bw__ysrc_init(&ld.src, text, len);
    set_defaults(&ld);
    cfg->path = ld_dup(&ld, bw_slice_make(path, strlen(path)));
    cfg->hash = bw_file_hash(text, len);

    if (len > BW_CONFIG_MAX_FILE_BYTES) {
        diag_at(&ld, 0, 0, "the config is %zu bytes, over the limit of %zu bytes", len,
                BW_CONFIG_MAX_FILE_BYTES);
    } else {
        bw_arena tree;
        bw_arena_init(&tree, 64 * 1024, BW__YAML_ARENA_CAP);
        struct bw__yerr yerr;
        bool has_root = false;
        struct bw__ynode *root;
        if (bw__yaml_tree(&tree, text, len, &has_root, &root, &yerr) != BW_OK)
            diag_at(&ld, yerr.line, yerr.col, "%s", yerr.msg);
        else if (!has_root)
            diag_at(&ld, 0, 0,
                    "the config is empty; it needs at least listen, upstreams and routes");
        else
            parse_root(&ld, root);
        bw_arena_reset(&tree);
    }

    if (diags->n > 0 || diags->dropped > 0) {
        sort_diags(diags);
        bw_config_free(cfg);
        return BW_ERR;
    }
    *ret_cfg = cfg;
    return BW_OK;
}

struct bw_config *bw_config_free(struct bw_config *cfg)
{
    if (!cfg)
        return NULL;
    bw_file_bytes_release(&cfg->source);
    bw_arena_reset(&cfg->arena);
    free(cfg);
    return NULL;
}

/* One whole-file problem as the only diagnostic. */
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

bw_status bw_config_load_file(const char *path, struct bw_config **ret_cfg,
                              struct bw_config_diags *diags)
{
    static const struct bw_file_what what = {
        .noun = "the config", .kind = "config file", .max_bytes = BW_CONFIG_MAX_FILE_BYTES};
    char *buf;
    size_t len;
    char err[sizeof diags->items[0].msg];
    if (bw_read_file(path, &what, &buf, &len, err, sizeof err) != BW_OK)
        return file_fail(diags, path, "%s", err);
    bw_status st = bw_config_parse(path, buf, len, ret_cfg, diags);
    uint32_t line, col;
    size_t which;
    if (st != BW_OK && bw__truncation_hint(buf, len, diags, &line, &col, &which))
        bw__truncation_note(diags, line, col, which);
    if (st == BW_OK)
        (*ret_cfg)->source = bw_file_bytes_take(buf, len);
    else
        free(buf);
    return st;
}

void bw_config_where(const struct bw_config *cfg, struct bw_config_pos pos, const char *key,
                     char *out, size_t cap)
{
    if (pos.line)
        snprintf(out, cap, "%.*s:%u:%u: error: %.200s", (int)cfg->path.len, cfg->path.ptr, pos.line,
                 pos.col, key);
    else
        snprintf(out, cap, "%.*s: error: %.200s", (int)cfg->path.len, cfg->path.ptr, key);
}

void bw_config_diags_print(const struct bw_config_diags *diags, void *file_stream)
{
    FILE *out = file_stream;
    const char *file = diags->file ? diags->file : "<config>";
    for (size_t i = 0; i < diags->n; i++) {
        const struct bw_config_diag *g = &diags->items[i];
        if (g->line == 0)
            fprintf(out, "%s: error: %s\n", file, g->msg);
        else
            fprintf(out, "%s:%u:%u: error: %s\n", file, g->line, g->col, g->msg);
    }
    if (diags->dropped)
        fprintf(out, "%s: error: %zu more errors not shown\n", file, diags->dropped);
}
