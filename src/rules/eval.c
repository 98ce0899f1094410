/* The rules evaluator: runs a compiled program (eval_internal.h) against one
 * request view with three-valued logic. No I/O; no allocation except from
 * the per-request arena, and a refused allocation makes the value being
 * computed unknown (never a crash, never a wrong true).
 *
 * This file owns: field extraction (lazily, once per context), header
 * lookups (case-insensitive; repeated headers joined; through a per-request
 * index of the names the program reads), the normalised path,
 * function and operator semantics, [*] lifting, and running each scan
 * group's regex database at most once per context. It does not own building
 * anything (compile.c). */
#include <netinet/in.h>
#include <string.h>

#include "http/uri.h"
#include "rules/eval_internal.h"

/* One scan group's outcome for this request. Lifted groups scan each
 * element of the array once; a plain group is one element. */
struct bw__scan_cache {
    enum bw__cache_state state;
    bool known;       /* the left side was known and every allocation worked */
    size_t n;         /* elements */
    size_t words;     /* bitset words per element */
    bool *elem_known; /* n: element known and scanned */
    uint64_t *bits;   /* n * words */
    /* elem_known and bits of the usual scan, one value and at most 64
     * patterns: no allocation. */
    bool elem_known1;
    uint64_t bits1;
};

static const struct bw_val unknown_val = {.kind = BW_VAL_UNKNOWN};
static const struct bw_val empty_items[1] = {{.kind = BW_VAL_UNKNOWN}};

const char *bw_tri_name(enum bw_tri t)
{
    switch (t) {
    case BW_TRI_FALSE:
        return "false";
    case BW_TRI_TRUE:
        return "true";
    case BW_TRI_UNKNOWN:
    case BW_TRI__COUNT:
        break;
    }
    return "unknown";
}

/* Values are built member by member, not as compound literals: a compound
 * literal zeroes the whole 32-byte union first, and the partial stores
 * then make the copy that follows wait (store forwarding). Only the member
 * of kind is ever read. */
static struct bw_val v_bool(bool b)
{
    struct bw_val v;
    v.kind = BW_VAL_BOOL;
    v.u.boolean = b;
    return v;
}
static struct bw_val v_tri(enum bw_tri t)
{
    return t == BW_TRI_UNKNOWN ? unknown_val : v_bool(t == BW_TRI_TRUE);
}
static struct bw_val v_int(int64_t i)
{
    struct bw_val v;
    v.kind = BW_VAL_INT;
    v.u.integer = i;
    return v;
}
static struct bw_val v_bytes(bw_slice s)
{
    struct bw_val v;
    v.kind = BW_VAL_BYTES;
    v.u.bytes = s;
    return v;
}
static struct bw_val v_array(const struct bw_val *items, size_t n)
{
    struct bw_val v;
    v.kind = BW_VAL_ARRAY;
    v.u.array.items = n ? items : empty_items;
    v.u.array.n = n;
    return v;
}
static enum bw_tri tri_of_val(struct bw_val v)
{
    return v.kind == BW_VAL_BOOL ? bw_tri_of(v.u.boolean) : BW_TRI_UNKNOWN;
}

static void *ralloc(struct bw_rules_ctx *cx, size_t n)
{
    void *p = bw_arena_alloc(cx->arena, n ? n : 1);
    if (!p)
        cx->stats.arena_failures++;
    return p;
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t load32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- eight bytes at a time ------------------------------------------------------
 *
 * Byte tests on a uint64_t (little or big endian alike: each byte is tested
 * on its own). Each returns 0x80 in every byte that passes and 0 in the
 * others, exactly: a byte is masked to 7 bits before a constant below 128
 * is added, so no carry crosses into the next byte, and bytes of 0x80 and
 * above are excluded by & ~x. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define LOWS7 0x7f7f7f7f7f7f7f7full

static inline uint64_t swar_between(uint64_t x, unsigned char lo, unsigned char hi)
{
    uint64_t t = x & LOWS7;
    return (t + ONES * (128u - lo)) & ~(t + ONES * (127u - hi)) & ~x & HIGHS;
}
static inline uint64_t swar_upper(uint64_t x)
{
    return swar_between(x, 'A', 'Z');
}
static inline uint64_t swar_lower(uint64_t x)
{
    return swar_between(x, 'a', 'z');
}
static inline uint64_t swar_eq(uint64_t x, unsigned char c)
{
    return swar_between(x, c, c);
}
/* The index of the first passing byte of a nonzero test result. */
static inline size_t swar_first(uint64_t m)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) / 8;
#else
    return (size_t)__builtin_clzll(m) / 8;
#endif
}
static inline void store64(char *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

/* a equals the lowercased name b, ASCII case folded (header names): whole
 * words, the last one overlapping the one before (every load stays inside
 * both names). */
static inline bool eq_nocase_lowered(bw_slice a, bw_slice b)
{
    size_t n = a.len;
    if (n != b.len)
        return false;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (bw_ascii_lower64(load64(a.ptr + i)) != load64(b.ptr + i))
                return false;
        return bw_ascii_lower64(load64(a.ptr + n - 8)) == load64(b.ptr + n - 8);
    }
    if (n >= 4) {
        uint64_t x = (uint64_t)load32(a.ptr) | (uint64_t)load32(a.ptr + n - 4) << 32;
        uint64_t y = (uint64_t)load32(b.ptr) | (uint64_t)load32(b.ptr + n - 4) << 32;
        return bw_ascii_lower64(x) == y;
    }
    for (size_t i = 0; i < n; i++)
        if (bw_ascii_lower(a.ptr[i]) != b.ptr[i])
            return false;
    return true;
}
/* ---- headers --------------------------------------------------------------- */

/* The header map of field map; false when it does not exist (response
 * headers before there is a response). */
static bool map_of(const struct bw_rules_ctx *cx, enum bw_rules_field map,
                   const struct bw_rv_headers **ret)
{
    if (map == BW_RULES_F_HTTP_RESPONSE_HEADERS) {
        if (!cx->view->has_response)
            return false;
        *ret = &cx->view->response_headers;
        return true;
    }
    *ret = &cx->view->headers;
    return true;
}

/* Indexes the request's headers by the program's header names, once per
 * context, in one pass: each header is compared with the names of its
 * length only. False when the index could not be
 * allocated (the callers then scan the headers instead: presence never depends on the arena). */
__attribute__((noinline)) static bool hindex_build(struct bw_rules_ctx *cx)
{
    const struct bw_rules_prog *p = cx->prog;
    struct bw__hidx *ix = bw_arena_alloc(cx->arena, p->nhnames * sizeof *ix); /* zeroed */
    if (!ix)
        return false; /* not counted: nothing is unknown because of it */
    const struct bw_rv_headers *h = &cx->view->headers;
    uint64_t present = 0;
    for (size_t i = 0; i < h->n; i++) {
        bw_slice nm = h->items[i].name;
        size_t b = nm.len < BW__HLEN_BUCKETS - 1 ? nm.len : BW__HLEN_BUCKETS - 1;
        for (uint32_t j = p->hlen_first[b]; j < p->hlen_first[b + 1]; j++) {
            uint32_t id = p->hby_len[j];
            if (eq_nocase_lowered(nm, p->hnames[id])) {
                if (ix[id].count++ == 0)
                    ix[id].first = i;
                if (id < BW__ABSENT_NAMES)
                    present |= (uint64_t)1 << id;
                break;
            }
        }
    }
    cx->present = present;
    cx->hidx = ix;
    cx->hidx_done = true;
    return true;
}

static inline bool hindex(struct bw_rules_ctx *cx)
{
    return __builtin_expect(cx->hidx_done, 1) || hindex_build(cx);
}

/* How many request headers are called name (id in prog->hnames), and the
 * index of the first; through the index, or a scan when it could not be
 * allocated. */
static inline size_t header_find(struct bw_rules_ctx *cx, uint32_t id, bw_slice name, size_t *first)
{
    if (hindex(cx)) {
        *first = cx->hidx[id].first;
        return cx->hidx[id].count;
    }
    const struct bw_rv_headers *h = &cx->view->headers;
    size_t k = 0;
    *first = 0;
    for (size_t i = 0; i < h->n; i++)
        if (eq_nocase_lowered(h->items[i].name, name) && k++ == 0)
            *first = i;
    return k;
}

/* Every value of request header name (id in prog->hnames), joined by sep,
 * into *out; false when there is none (or no arena for the joined copy):
 * the field is then unknown. */
static bool header_join(struct bw_rules_ctx *cx, uint32_t id, bw_slice sep, bw_slice *out)
{
    const struct bw_rv_headers *h = &cx->view->headers;
    bw_slice name = cx->prog->hnames[id];
    size_t first, k = header_find(cx, id, name, &first);
    if (k == 0)
        return false;
    if (k == 1) {
        *out = h->items[first].value;
        return true;
    }
    size_t total = 0;
    for (size_t i = first; i < h->n; i++)
        if (eq_nocase_lowered(h->items[i].name, name))
            total += h->items[i].value.len + (i > first ? sep.len : 0);
    char *buf = ralloc(cx, total);
    if (!buf)
        return false;
    size_t o = 0;
    for (size_t i = first; i < h->n; i++)
        if (eq_nocase_lowered(h->items[i].name, name)) {
            if (i > first) {
                memcpy(buf + o, sep.ptr, sep.len);
                o += sep.len;
            }
            memcpy(buf + o, h->items[i].value.ptr, h->items[i].value.len);
            o += h->items[i].value.len;
        }
    *out = bw_slice_make(buf, o);
    return true;
}

/* How many headers of slot s's map are called its name (first: the index of
 * the first); false when the map does not exist (response headers before
 * there is a response). */
static bool slot_find(struct bw_rules_ctx *cx, const struct bw__slot *s, size_t *count,
                      size_t *first)
{
    const struct bw_rv_headers *h;
    if (!map_of(cx, s->map, &h))
        return false;
    if (s->map == BW_RULES_F_HTTP_REQUEST_HEADERS) {
        *count = header_find(cx, s->hname, s->name, first);
        return true;
    }
    *count = 0;
    *first = 0;
    for (size_t i = 0; i < h->n; i++)
        if (eq_nocase_lowered(h->items[i].name, s->name) && (*count)++ == 0)
            *first = i;
    return true;
}

/* map["name"] as Array<Bytes>: empty when the header is absent, unknown when
 * the map itself is (response headers before there is a response). */
static struct bw_val header_array(struct bw_rules_ctx *cx, const struct bw__slot *s)
{
    const struct bw_rv_headers *h;
    size_t k, first;
    if (!slot_find(cx, s, &k, &first) || !map_of(cx, s->map, &h))
        return unknown_val;
    if (k == 0)
        return v_array(NULL, 0);
    struct bw_val *items = ralloc(cx, k * sizeof *items);
    if (!items)
        return unknown_val;
    size_t j = 0;
    for (size_t i = first; i < h->n && j < k; i++)
        if (eq_nocase_lowered(h->items[i].name, s->name))
            items[j++] = v_bytes(h->items[i].value);
    return v_array(items, k);
}

/* ---- fields ---------------------------------------------------------------- */

/* The address as a value, into *v (its kind written last: UNKNOWN when the
 * address is unknown or of another family). */
static void ip_of_sockaddr(const struct bw_rv_opt_addr *a, struct bw_val *v)
{
    v->kind = BW_VAL_UNKNOWN;
    if (!a->known)
        return;
    memset(&v->u.ip, 0, sizeof v->u.ip);
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->addr;
        v->u.ip.family = BW_RULES_IPV4;
        memcpy(v->u.ip.addr, &s4->sin_addr, 4);
        v->kind = BW_VAL_IP;
        return;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->addr;
        const uint8_t *b = s6->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, sizeof mapped) == 0) {
            v->u.ip.family = BW_RULES_IPV4; /* ::ffff:a.b.c.d is a.b.c.d, as literals are */
            memcpy(v->u.ip.addr, b + 12, 4);
        } else {
            v->u.ip.family = BW_RULES_IPV6;
            memcpy(v->u.ip.addr, b, 16);
        }
        v->kind = BW_VAL_IP;
    }
}

/* Whether bw_uri_normalize_path would return path unchanged: it starts with
 * '/' and has no '%' (no escape to decode or uppercase), no "//" (no run of
 * slashes) and no "/." (no dot segment; conservative: "/.env" takes the slow
 * path). Most paths are, and then need no copy. */
static bool path_is_normal(bw_slice path)
{
    if (path.len == 0 || path.ptr[0] != '/')
        return false;
    const char *p = path.ptr;
    for (size_t i = 0; i < path.len; i++) {
        if (p[i] == '%')
            return false;
        if (p[i] == '/' && i + 1 < path.len && (p[i + 1] == '/' || p[i + 1] == '.'))
            return false;
    }
    return true;
}

/* Values are written member by member into their cache entry: building a
 * bw_val and copying it made the copy's wide loads wait for the narrow
 * stores that built it (store forwarding), about 6 % of the time of a
 * 100-rule evaluation. */
static inline void put_bytes(struct bw_val *v, bw_slice s)
{
    v->kind = BW_VAL_BYTES;
    v->u.bytes = s;
}

static inline void put_joined(struct bw_rules_ctx *cx, uint32_t id, bw_slice sep, struct bw_val *v)
{
    if (header_join(cx, id, sep, &v->u.bytes))
        v->kind = BW_VAL_BYTES;
    else
        v->kind = BW_VAL_UNKNOWN;
}

static void extract(struct bw_rules_ctx *cx, enum bw_rules_field f, struct bw_val *v)
{
    const struct bw_request_view *rv = cx->view;
    v->kind = BW_VAL_UNKNOWN;
    switch (f) {
    case BW_RULES_F_HTTP_REQUEST_METHOD:
        put_bytes(v, rv->method);
        return;
    case BW_RULES_F_HTTP_HOST:
        if (rv->host.known)
            put_bytes(v, rv->host.value);
        return;
    case BW_RULES_F_HTTP_REQUEST_URI:
        put_bytes(v, rv->uri);
        return;
    case BW_RULES_F_HTTP_REQUEST_URI_PATH: {
        if (path_is_normal(rv->raw_path)) {
            put_bytes(v, rv->raw_path);
            return;
        }
        char *buf = ralloc(cx, rv->raw_path.len + 1);
        if (buf)
            put_bytes(v, bw_uri_normalize_path(rv->raw_path, buf, rv->raw_path.len + 1));
        return;
    }
    case BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH:
        put_bytes(v, rv->raw_path);
        return;
    case BW_RULES_F_HTTP_REQUEST_URI_QUERY:
        put_bytes(v, rv->query);
        return;
    case BW_RULES_F_HTTP_USER_AGENT:
        put_joined(cx, BW__H_USER_AGENT, BW_SLICE_LIT(", "), v);
        return;
    case BW_RULES_F_HTTP_REFERER:
        put_joined(cx, BW__H_REFERER, BW_SLICE_LIT(", "), v);
        return;
    case BW_RULES_F_HTTP_COOKIE:
        put_joined(cx, BW__H_COOKIE, BW_SLICE_LIT("; "), v);
        return;
    case BW_RULES_F_HTTP_X_FORWARDED_FOR:
        put_joined(cx, BW__H_X_FORWARDED_FOR, BW_SLICE_LIT(", "), v);
        return;
    case BW_RULES_F_IP_SRC:
        ip_of_sockaddr(&rv->src, v);
        return;
    case BW_RULES_F_SSL:
        v->kind = BW_VAL_BOOL;
        v->u.boolean = rv->ssl;
        return;
    case BW_RULES_F_BOT_SCORE:
        if (rv->bot_score.known) {
            v->kind = BW_VAL_INT;
            v->u.integer = rv->bot_score.value;
        }
        return;
    case BW_RULES_F_HTTP_RESPONSE_CODE:
        if (rv->has_response) {
            v->kind = BW_VAL_INT;
            v->u.integer = rv->response_code;
        }
        return;
    case BW_RULES_F_HTTP_REQUEST_HEADERS:
    case BW_RULES_F_HTTP_RESPONSE_HEADERS:
        /* A whole map is only ever an argument of has() or of ["..."]. */
        return;
    case BW_RULES_F__COUNT:
        break;
    }
}

__attribute__((noinline)) static const struct bw_val *field_fill(struct bw_rules_ctx *cx,
                                                                 enum bw_rules_field f)
{
    cx->stats.extractions++;
    extract(cx, f, &cx->field_vals[f]);
    cx->fields_done |= (uint32_t)1 << f;
    return &cx->field_vals[f];
}

static inline const struct bw_val *field_ref(struct bw_rules_ctx *cx, enum bw_rules_field f)
{
    _Static_assert(BW_RULES_F__COUNT <= 32, "fields_done has a bit per field");
    if ((size_t)f >= BW_RULES_F__COUNT)
        return &unknown_val;
    if (__builtin_expect(!(cx->fields_done >> f & 1u), 0))
        return field_fill(cx, f);
    return &cx->field_vals[f];
}

static struct bw_val field(struct bw_rules_ctx *cx, enum bw_rules_field f)
{
    return *field_ref(cx, f);
}

static bool header_present(struct bw_rules_ctx *cx, uint32_t id)
{
    size_t first;
    return header_find(cx, id, cx->prog->hnames[id], &first) > 0;
}

/* has(field): presence, never unknown, independent of the arena. */
static bool field_present(struct bw_rules_ctx *cx, enum bw_rules_field f)
{
    const struct bw_request_view *rv = cx->view;
    switch (f) {
    case BW_RULES_F_HTTP_REQUEST_METHOD:
    case BW_RULES_F_HTTP_REQUEST_URI:
    case BW_RULES_F_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH:
    case BW_RULES_F_HTTP_REQUEST_URI_QUERY:
    case BW_RULES_F_SSL:
    case BW_RULES_F_HTTP_REQUEST_HEADERS:
        return true;
    case BW_RULES_F_HTTP_HOST:
        return rv->host.known;
    case BW_RULES_F_HTTP_USER_AGENT:
        return header_present(cx, BW__H_USER_AGENT);
    case BW_RULES_F_HTTP_REFERER:
        return header_present(cx, BW__H_REFERER);
    case BW_RULES_F_HTTP_COOKIE:
        return header_present(cx, BW__H_COOKIE);
    case BW_RULES_F_HTTP_X_FORWARDED_FOR:
        return header_present(cx, BW__H_X_FORWARDED_FOR);
    case BW_RULES_F_IP_SRC: {
        struct bw_val ip;
        ip_of_sockaddr(&rv->src, &ip);
        return ip.kind == BW_VAL_IP;
    }
    case BW_RULES_F_BOT_SCORE:
        return rv->bot_score.known;
    case BW_RULES_F_HTTP_RESPONSE_CODE:
    case BW_RULES_F_HTTP_RESPONSE_HEADERS:
        return rv->has_response;
    case BW_RULES_F__COUNT:
        break;
    }
    return false;
}

/* The per-request caches of the program's header slots, scan groups and
 * shared calls: one zeroed (EMPTY) allocation, on the first evaluation. */
static void lit_group(struct bw_rules_ctx *cx, uint32_t g);

__attribute__((noinline)) static bool make_ready(struct bw_rules_ctx *cx)
{
    cx->ready = true;
    const struct bw_rules_prog *p = cx->prog;
    size_t n_slots = p->nslots * sizeof *cx->slots, n_scans = p->ngroups * sizeof *cx->scans,
           n_memos = p->nmemos * sizeof *cx->memos;
    if (n_slots + n_scans + n_memos > 0) {
        char *m = ralloc(cx, n_slots + n_scans + n_memos);
        if (!m) {
            cx->broken = true;
            return false;
        }
        /* Each part is a multiple of its element size; all three element
         * types have the same (pointer and uint64_t) alignment. */
        _Static_assert(_Alignof(struct bw__field_cache) == _Alignof(struct bw__scan_cache),
                       "one allocation for every cache");
        cx->slots = (struct bw__field_cache *)m;
        cx->scans = (struct bw__scan_cache *)(m + n_slots);
        cx->memos = (struct bw__field_cache *)(m + n_slots + n_scans);
    }
    /* + 1: the byte of "not a single atom" (eval.h), never computed. */
    if (p->natoms < BW__ATOMS_INLINE) {
        memset(cx->atoms_inline, 0, p->natoms + 1);
        cx->atoms = cx->atoms_inline;
    } else {
        cx->atoms = ralloc(cx, p->natoms + 1); /* NULL: each atom alone (atom_alone) */
    }
    cx->fast_n = cx->atoms ? (uint32_t)p->n : 0;
    if (cx->atoms)
        for (uint32_t i = 0; i < p->neager; i++)
            lit_group(cx, p->eager[i]);
    return true;
}

static inline bool ensure_ready(struct bw_rules_ctx *cx)
{
    if (__builtin_expect(cx->ready, 1))
        return !cx->broken;
    return make_ready(cx);
}

static const struct bw_val *slot_ref(struct bw_rules_ctx *cx, size_t i)
{
    struct bw__field_cache *c = &cx->slots[i];
    if (c->state == BW__CACHE_EMPTY) {
        cx->stats.extractions++;
        c->v = header_array(cx, &cx->prog->slots[i]);
        c->state = BW__CACHE_DONE;
    }
    return &c->v;
}

/* ---- operators and functions -------------------------------------------- */

static enum bw_tri ip_eq(const struct bw_val_ip *a, const struct bw_val_ip *b)
{
    if (a->family != b->family)
        return BW_TRI_FALSE; /* an IPv4 value never equals an IPv6 one */
    return bw_tri_of(memcmp(a->addr, b->addr, a->family == BW_RULES_IPV4 ? 4 : 16) == 0);
}

static enum bw_tri eq(struct bw_val l, struct bw_val r)
{
    if (l.kind == BW_VAL_UNKNOWN || r.kind == BW_VAL_UNKNOWN || l.kind != r.kind)
        return BW_TRI_UNKNOWN;
    switch (l.kind) {
    case BW_VAL_BOOL:
        return bw_tri_of(l.u.boolean == r.u.boolean);
    case BW_VAL_INT:
        return bw_tri_of(l.u.integer == r.u.integer);
    case BW_VAL_BYTES:
        return bw_tri_of(bw_slice_eq(l.u.bytes, r.u.bytes));
    case BW_VAL_IP:
        return ip_eq(&l.u.ip, &r.u.ip);
    case BW_VAL_UNKNOWN:
    case BW_VAL_ARRAY:
    case BW_VAL__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

/* memcmp(a, b, n) == 0 without a library call for the short constants
 * rules compare with (libc's memcmp costs more to reach than to run): two
 * overlapping loads cover 4..8 and 8..16 bytes. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        if (n > 16)
            return memcmp(a, b, n) == 0;
        return ((load64(a) ^ load64(b)) | (load64(a + n - 8) ^ load64(b + n - 8))) == 0;
    }
    if (n >= 4)
        return ((load32(a) ^ load32(b)) | (load32(a + n - 4) ^ load32(b + n - 4))) == 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* Whether k occurs in s. glibc's memmem sets up a two-way search on every
 * call, which costs more than the search itself for the short needles rules
 * use; a needle of up to SHORT_NEEDLE bytes is found with memchr on one of
 * its bytes (the rarest in request text by byte_rank, so that "/etc/passwd"
 * is not looked for at every '/' of a path) and a compare, O(SHORT_NEEDLE *
 * |s|) at worst. Longer needles keep memmem's linear bound. */
#define SHORT_NEEDLE 32
static bool has_substring_at(bw_slice s, bw_slice k, size_t j)
{
    if (k.len == 0)
        return true;
    if (k.len > s.len)
        return false;
    if (k.len > SHORT_NEEDLE || j >= k.len)
        return memmem(s.ptr, s.len, k.ptr, k.len) != NULL;
    /* The anchor byte k[j] can be at s[j .. s.len - k.len + j]. */
    const char *p = s.ptr + j, *last = s.ptr + (s.len - k.len) + j;
    char anchor = k.ptr[j];
    while (p <= last) {
        p = memchr(p, anchor, (size_t)(last - p) + 1);
        if (!p)
            return false;
        if (same_bytes(p - j, k.ptr, k.len))
            return true;
        p++;
    }
    return false;
}

static bool has_substring(bw_slice s, bw_slice k)
{
    return has_substring_at(s, k, bw__needle_anchor(k));
}

static enum bw_tri compare(enum bw_rules_cmp_op op, const struct bw_val *lp,
                           const struct bw_val *rp)
{
    const struct bw_val l = *lp, r = *rp;
    switch (op) {
    case BW_RULES_EQ:
        return eq(l, r);
    case BW_RULES_NE:
        return bw_tri_not(eq(l, r));
    case BW_RULES_LT:
    case BW_RULES_LE:
    case BW_RULES_GT:
    case BW_RULES_GE: {
        if (l.kind != BW_VAL_INT || r.kind != BW_VAL_INT)
            return BW_TRI_UNKNOWN;
        int64_t a = l.u.integer, b = r.u.integer;
        return bw_tri_of(op == BW_RULES_LT   ? a < b
                         : op == BW_RULES_LE ? a <= b
                         : op == BW_RULES_GT ? a > b
                                             : a >= b);
    }
    case BW_RULES_CONTAINS:
        if (l.kind != BW_VAL_BYTES || r.kind != BW_VAL_BYTES)
            return BW_TRI_UNKNOWN;
        return bw_tri_of(has_substring(l.u.bytes, r.u.bytes));
    case BW_RULES_CMP__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

static enum bw_tri set_has(const struct bw__set *set, const struct bw_val *v)
{
    switch (set->kind) {
    case BW_RULES_SET_BYTES:
        if (v->kind != BW_VAL_BYTES)
            return BW_TRI_UNKNOWN;
        return bw_tri_of(bw_bytes_set_contains(&set->bytes, v->u.bytes));
    case BW_RULES_SET_INT_RANGE:
        if (v->kind != BW_VAL_INT)
            return BW_TRI_UNKNOWN;
        return bw_tri_of(bw_int_set_contains(&set->ints, v->u.integer));
    case BW_RULES_SET_IP:
        if (v->kind != BW_VAL_IP)
            return BW_TRI_UNKNOWN;
        if (v->u.ip.family == BW_RULES_IPV4)
            return bw_tri_of(bw_ip_set_contains_v4(&set->ips, v->u.ip.addr));
        return bw_tri_of(bw_ip_set_contains_v6(&set->ips, v->u.ip.addr));
    case BW_RULES_SET__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

static enum bw_tri in_set(const struct bw__cnode *n, const struct bw_val *v)
{
    return set_has(n->u.in.set, v);
}

/* The offset of the first byte fn would change in s (s.len when none):
 * most values have no upper-case letter to lower, no escape to decode, and
 * are then their own result (no copy); the unchanged prefix is copied as is. */
static size_t map_first_change(enum bw_rules_func fn, bw_slice s)
{
    size_t i = 0;
    for (; i + 8 <= s.len; i += 8) {
        uint64_t x = load64(s.ptr + i);
        uint64_t m = fn == BW_RULES_FN_LOWER   ? swar_upper(x)
                     : fn == BW_RULES_FN_UPPER ? swar_lower(x)
                                               : swar_eq(x, '%') | swar_eq(x, '+');
        if (m)
            return i + swar_first(m);
    }
    const unsigned char *p = (const unsigned char *)s.ptr;
    if (fn == BW_RULES_FN_LOWER)
        while (i < s.len && (unsigned char)(p[i] - 'A') >= 26u)
            i++;
    else if (fn == BW_RULES_FN_UPPER)
        while (i < s.len && (unsigned char)(p[i] - 'a') >= 26u)
            i++;
    else
        while (i < s.len && p[i] != '%' && p[i] != '+')
            i++;
    return i;
}

/* fn (lower, upper, url_decode) of s into *ret; false when the arena
 * refuses the copy (the value is then unknown). */
static bool map_slice(struct bw_rules_ctx *cx, enum bw_rules_func fn, bw_slice s, bw_slice *ret)
{
    if (s.len == 0) {
        *ret = BW_SLICE_EMPTY;
        return true;
    }
    size_t first = map_first_change(fn, s);
    if (first == s.len) {
        *ret = s;
        return true;
    }
    char *out = ralloc(cx, s.len);
    if (!out)
        return false;
    memcpy(out, s.ptr, first);
    size_t o = first;
    if (fn == BW_RULES_FN_LOWER || fn == BW_RULES_FN_UPPER) {
        bool up = fn == BW_RULES_FN_UPPER;
        size_t i = first;
        for (; i + 8 <= s.len; i += 8) {
            uint64_t x = load64(s.ptr + i);
            store64(out + i, up ? bw_ascii_upper64(x) : bw_ascii_lower64(x));
        }
        for (; i < s.len; i++)
            out[i] = up ? bw_ascii_upper(s.ptr[i]) : bw_ascii_lower(s.ptr[i]);
        o = s.len;
    } else { /* url_decode: %XX decoded, '+' is a space; bad escapes kept */
        size_t i = first;
        while (i < s.len) {
            char c = s.ptr[i];
            int h, l;
            if (c == '%' && i + 2 < s.len && (h = bw_hex_value(s.ptr[i + 1])) >= 0 &&
                (l = bw_hex_value(s.ptr[i + 2])) >= 0) {
                out[o++] = (char)(h * 16 + l);
                i += 3;
            } else if (c == '+') {
                out[o++] = ' ';
                i++;
            } else if (c == '%') {
                out[o++] = c;
                i++;
            } else {
                /* A run with nothing to decode, copied whole. */
                size_t run = map_first_change(fn, bw_slice_make(s.ptr + i, s.len - i));
                memcpy(out + o, s.ptr + i, run);
                o += run;
                i += run;
            }
        }
    }
    *ret = bw_slice_make(out, o);
    return true;
}

static struct bw_val map_bytes(struct bw_rules_ctx *cx, enum bw_rules_func fn, bw_slice s)
{
    bw_slice r;
    return map_slice(cx, fn, s, &r) ? v_bytes(r) : unknown_val;
}

/* lower(), upper() or url_decode() of one value (n not lifted), written into
 * *out member by member (a value built elsewhere and copied made the copy
 * wait on store forwarding), without eval_call's generic argument handling:
 * the same value eval_call computes. False when n is another call. */
static inline bool map_call(struct bw_rules_ctx *cx, const struct bw__cnode *n, struct bw_val *out);

/* A function of one value (the first argument, or one element of it when
 * lifted) and the other arguments, already evaluated. */
static struct bw_val apply(struct bw_rules_ctx *cx, enum bw_rules_func fn, struct bw_val a,
                           const struct bw_val *rest, size_t nrest)
{
    if (a.kind == BW_VAL_UNKNOWN)
        return unknown_val;
    switch (fn) {
    case BW_RULES_FN_LOWER:
    case BW_RULES_FN_UPPER:
    case BW_RULES_FN_URL_DECODE:
        if (a.kind != BW_VAL_BYTES)
            return unknown_val;
        return map_bytes(cx, fn, a.u.bytes);
    case BW_RULES_FN_LEN:
        if (a.kind == BW_VAL_BYTES)
            return v_int((int64_t)a.u.bytes.len);
        if (a.kind == BW_VAL_ARRAY)
            return v_int((int64_t)a.u.array.n);
        return unknown_val;
    case BW_RULES_FN_STARTS_WITH:
    case BW_RULES_FN_ENDS_WITH: {
        if (nrest != 1 || a.kind != BW_VAL_BYTES || rest[0].kind != BW_VAL_BYTES)
            return unknown_val;
        bw_slice s = a.u.bytes, x = rest[0].u.bytes;
        if (x.len > s.len)
            return v_bool(false);
        size_t off = fn == BW_RULES_FN_STARTS_WITH ? 0 : s.len - x.len;
        return v_bool(x.len == 0 || memcmp(s.ptr + off, x.ptr, x.len) == 0);
    }
    case BW_RULES_FN_CONCAT: {
        if (a.kind != BW_VAL_BYTES)
            return unknown_val;
        size_t total = a.u.bytes.len;
        for (size_t i = 0; i < nrest; i++) {
            if (rest[i].kind != BW_VAL_BYTES)
                return unknown_val;
            total += rest[i].u.bytes.len;
        }
        char *out = ralloc(cx, total);
        if (!out)
            return unknown_val;
        memcpy(out, a.u.bytes.ptr, a.u.bytes.len);
        size_t o = a.u.bytes.len;
        for (size_t i = 0; i < nrest; i++) {
            memcpy(out + o, rest[i].u.bytes.ptr, rest[i].u.bytes.len);
            o += rest[i].u.bytes.len;
        }
        return v_bytes(bw_slice_make(out, o));
    }
    case BW_RULES_FN_ANY:
    case BW_RULES_FN_ALL:
    case BW_RULES_FN_HAS:
    case BW_RULES_FN__COUNT:
        break;
    }
    return unknown_val;
}

/* ---- evaluation ------------------------------------------------------------ */

static struct bw_val eval(struct bw_rules_ctx *cx, const struct bw__cnode *n);
static const struct bw_val *memo_ref(struct bw_rules_ctx *cx, const struct bw__cnode *n);

/* concat() takes at most 16 arguments (fields.c). */
#define BW__MAX_ARGS 16

/* Not inlined: its argument array would make every eval() frame large. */
__attribute__((noinline)) static struct bw_val eval_call(struct bw_rules_ctx *cx,
                                                         const struct bw__cnode *n)
{
    enum bw_rules_func fn = n->u.call.fn;
    const struct bw__cnode *a0 = n->u.call.args[0];
    switch (fn) {
    case BW_RULES_FN_HAS:
        if (a0->kind == BW__C_FIELD)
            return v_bool(field_present(cx, a0->u.field));
        if (a0->kind == BW__C_HEADER) {
            size_t k, first;
            return v_bool(slot_find(cx, &cx->prog->slots[a0->u.header.slot], &k, &first) && k > 0);
        }
        return v_bool(eval(cx, a0).kind != BW_VAL_UNKNOWN);
    case BW_RULES_FN_ANY:
    case BW_RULES_FN_ALL: {
        struct bw_val arr = eval(cx, a0);
        if (arr.kind != BW_VAL_ARRAY)
            return unknown_val;
        bool is_any = fn == BW_RULES_FN_ANY;
        enum bw_tri acc = is_any ? BW_TRI_FALSE : BW_TRI_TRUE;
        for (size_t i = 0; i < arr.u.array.n; i++) {
            enum bw_tri t = tri_of_val(arr.u.array.items[i]);
            acc = is_any ? bw_tri_or(acc, t) : bw_tri_and(acc, t);
        }
        return v_tri(acc);
    }
    case BW_RULES_FN_LEN:
        if (a0->kind == BW__C_HEADER && !n->lifted) {
            /* The number of values, without building the array of them. */
            size_t k, first;
            if (!slot_find(cx, &cx->prog->slots[a0->u.header.slot], &k, &first))
                return unknown_val;
            return v_int((int64_t)k);
        }
        break;
    case BW_RULES_FN_LOWER:
    case BW_RULES_FN_UPPER:
    case BW_RULES_FN_STARTS_WITH:
    case BW_RULES_FN_ENDS_WITH:
    case BW_RULES_FN_URL_DECODE:
    case BW_RULES_FN_CONCAT:
    case BW_RULES_FN__COUNT:
        break;
    }
    size_t nrest = n->u.call.nargs - 1;
    if (nrest >= BW__MAX_ARGS)
        return unknown_val;
    struct bw_val rest[BW__MAX_ARGS];
    for (size_t i = 0; i < nrest; i++)
        rest[i] = eval(cx, n->u.call.args[i + 1]);
    struct bw_val a = eval(cx, a0);
    if (!n->lifted)
        return apply(cx, fn, a, rest, nrest);
    if (a.kind != BW_VAL_ARRAY)
        return unknown_val;
    if (a.u.array.n == 0)
        return v_array(NULL, 0); /* absent header: nothing to map, nothing to allocate */
    struct bw_val *out = ralloc(cx, a.u.array.n * sizeof *out);
    if (!out)
        return unknown_val;
    for (size_t i = 0; i < a.u.array.n; i++)
        out[i] = apply(cx, fn, a.u.array.items[i], rest, nrest);
    return v_array(out, a.u.array.n);
}

static inline const struct bw_val *ref(struct bw_rules_ctx *cx, const struct bw__cnode *n,
                                       struct bw_val *tmp);

/* Scans group g's left side once for this context. */
__attribute__((noinline)) static struct bw__scan_cache *scan(struct bw_rules_ctx *cx, size_t g)
{
    struct bw__scan_cache *sc = &cx->scans[g];
    if (sc->state == BW__CACHE_DONE)
        return sc;
    sc->state = BW__CACHE_DONE;
    sc->known = false;
    const struct bw__group *grp = &cx->prog->groups[g];
    struct bw_val tmp;
    const struct bw_val *v = ref(cx, grp->lhs, &tmp); /* a field: read in place */
    const struct bw_val *elems;
    size_t n;
    if (grp->lhs->lifted) {
        if (v->kind != BW_VAL_ARRAY)
            return sc;
        elems = v->u.array.items;
        n = v->u.array.n;
    } else {
        elems = v;
        n = 1;
    }
    sc->n = n;
    sc->words = BW_REGEX_BITSET_WORDS(grp->npatterns);
    if (sc->words == 0)
        sc->words = 1;
    if (n == 1 && sc->words == 1) {
        sc->elem_known1 = false;
        sc->elem_known = &sc->elem_known1;
        sc->bits = &sc->bits1;
    } else {
        sc->elem_known = ralloc(cx, n * sizeof *sc->elem_known);
        sc->bits = ralloc(cx, n * sc->words * sizeof *sc->bits);
    }
    if (!sc->elem_known || !sc->bits)
        return sc;
    for (size_t i = 0; i < n; i++) {
        if (elems[i].kind != BW_VAL_BYTES)
            continue;
        bw_error err;
        cx->stats.regex_scans++;
        if (bw_regex_scan(grp->db, cx->scratch, elems[i].u.bytes, sc->bits + i * sc->words,
                          sc->words, &err) != BW_OK) {
            cx->stats.regex_failures++;
            continue;
        }
        sc->elem_known[i] = true;
    }
    sc->known = true;
    return sc;
}

static struct bw_val eval_matches(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    struct bw__scan_cache *sc = scan(cx, n->u.matches.group);
    if (!sc->known)
        return unknown_val;
    size_t id = n->u.matches.id;
    if (!n->lifted) {
        if (!sc->elem_known[0])
            return unknown_val;
        return v_bool(bw_regex_bit(sc->bits, id));
    }
    struct bw_val *out = ralloc(cx, sc->n * sizeof *out);
    if (!out)
        return unknown_val;
    for (size_t i = 0; i < sc->n; i++)
        out[i] =
            sc->elem_known[i] ? v_bool(bw_regex_bit(sc->bits + i * sc->words, id)) : unknown_val;
    return v_array(out, sc->n);
}

/* A lifted comparison or `in`: per element of the left side. */
static struct bw_val lift(struct bw_rules_ctx *cx, const struct bw__cnode *n, struct bw_val l,
                          struct bw_val r)
{
    if (l.kind != BW_VAL_ARRAY)
        return unknown_val;
    if (l.u.array.n == 0)
        return v_array(NULL, 0);
    struct bw_val *out = ralloc(cx, l.u.array.n * sizeof *out);
    if (!out)
        return unknown_val;
    for (size_t i = 0; i < l.u.array.n; i++)
        out[i] = v_tri(n->kind == BW__C_IN ? in_set(n, &l.u.array.items[i])
                                           : compare(n->u.compare.op, &l.u.array.items[i], &r));
    return v_array(out, l.u.array.n);
}

static enum bw_tri tri(struct bw_rules_ctx *cx, const struct bw__cnode *n);

/* and / or stop at the first operand that decides (false and U is false,
 * true or U is true, so skipping the rest changes nothing); xor at the
 * first unknown. */
static enum bw_tri eval_logic(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    enum bw_rules_logic_op op = n->u.logic.op;
    enum bw_tri acc = op == BW_RULES_AND ? BW_TRI_TRUE : BW_TRI_FALSE;
    for (size_t i = 0; i < n->u.logic.n; i++) {
        enum bw_tri t = tri(cx, n->u.logic.operands[i]);
        switch (op) {
        case BW_RULES_AND:
            acc = bw_tri_and(acc, t);
            if (acc == BW_TRI_FALSE)
                return BW_TRI_FALSE;
            break;
        case BW_RULES_OR:
            acc = bw_tri_or(acc, t);
            if (acc == BW_TRI_TRUE)
                return BW_TRI_TRUE;
            break;
        case BW_RULES_XOR:
            acc = bw_tri_xor(acc, t);
            if (acc == BW_TRI_UNKNOWN)
                return BW_TRI_UNKNOWN;
            break;
        case BW_RULES_LOGIC__COUNT:
            return BW_TRI_UNKNOWN;
        }
    }
    return acc;
}

static enum bw_tri tri(struct bw_rules_ctx *cx, const struct bw__cnode *n);

/* A node's value by reference: fields, header slots, constants and shared
 * calls are read where they are kept (no 32-byte copy per use); anything
 * else is computed into *tmp. */
static inline const struct bw_val *ref(struct bw_rules_ctx *cx, const struct bw__cnode *n,
                                       struct bw_val *tmp)
{
    if (n->kind == BW__C_FIELD)
        return field_ref(cx, n->u.field);
    if (n->kind == BW__C_CONST)
        return &n->u.konst;
    if (n->kind == BW__C_HEADER)
        return slot_ref(cx, n->u.header.slot);
    if (n->kind == BW__C_CALL && n->u.call.memo)
        return memo_ref(cx, n);
    if (n->kind == BW__C_CALL && map_call(cx, n, tmp))
        return tmp;
    *tmp = eval(cx, n);
    return tmp;
}

/* s op k, both known. */
__attribute__((always_inline)) static inline enum bw_tri bytes_op(enum bw__bytes_op op, bw_slice s,
                                                                  bw_slice k)
{
    switch (op) {
    case BW__BK_EQ:
        return bw_tri_of(s.len == k.len && same_bytes(s.ptr, k.ptr, k.len));
    case BW__BK_NE:
        return bw_tri_of(!(s.len == k.len && same_bytes(s.ptr, k.ptr, k.len)));
    case BW__BK_CONTAINS:
        return bw_tri_of(has_substring(s, k));
    case BW__BK_STARTS_WITH:
        return bw_tri_of(s.len >= k.len && same_bytes(s.ptr, k.ptr, k.len));
    case BW__BK_ENDS_WITH:
        return bw_tri_of(s.len >= k.len && same_bytes(s.ptr + s.len - k.len, k.ptr, k.len));
    case BW__BK__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

__attribute__((always_inline)) static inline enum bw_tri bytes_k(struct bw_rules_ctx *cx,
                                                                 const struct bw__cnode *n)
{
    struct bw_val tmp;
    const struct bw_val *l = ref(cx, n->u.bytes_k.lhs, &tmp);
    if (l->kind != BW_VAL_BYTES)
        return BW_TRI_UNKNOWN;
    return bytes_op(n->u.bytes_k.op, l->u.bytes, n->u.bytes_k.k);
}

/* Pattern id of scan group g (not lifted). */
static inline enum bw_tri match_tri(struct bw_rules_ctx *cx, size_t g, size_t id)
{
    struct bw__scan_cache *sc = &cx->scans[g];
    if (sc->state != BW__CACHE_DONE)
        sc = scan(cx, g);
    if (!sc->known || !sc->elem_known[0])
        return BW_TRI_UNKNOWN;
    return bw_tri_of(bw_regex_bit(sc->bits, id));
}

static inline enum bw_tri matches_tri(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    return match_tri(cx, n->u.matches.group, n->u.matches.id);
}

static enum bw_tri compare_refs(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    struct bw_val lt, rt;
    const struct bw_val *l = ref(cx, n->u.compare.lhs, &lt);
    const struct bw_val *r = ref(cx, n->u.compare.rhs, &rt);
    return compare(n->u.compare.op, l, r);
}

/* `x in {...}` (not lifted). lower(y) and upper(y) have y's length, so
 * when no element has that length the answer is false without computing
 * (or allocating) the mapped copy: User-Agents are longer than the tokens
 * of a `lower(http.user_agent) in {...}` set. */
static enum bw_tri in_bytes_k(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    const struct bw__cnode *l = n->u.in.lhs;
    struct bw_val tmp;
    if (n->u.in.set->kind == BW_RULES_SET_BYTES && l->kind == BW__C_CALL && !l->lifted &&
        l->u.call.nargs == 1 &&
        (l->u.call.fn == BW_RULES_FN_LOWER || l->u.call.fn == BW_RULES_FN_UPPER)) {
        const struct bw_val *y = ref(cx, l->u.call.args[0], &tmp);
        if (y->kind != BW_VAL_BYTES)
            return BW_TRI_UNKNOWN; /* lower() of it is unknown */
        if (!bw_bytes_set_has_len(&n->u.in.set->bytes, y->u.bytes.len))
            return BW_TRI_FALSE;
    }
    return in_set(n, ref(cx, l, &tmp));
}

/* The truth value of a Bool node, without building a bw_val where the node
 * computes one directly (the logic layer of every expression). */
static enum bw_tri tri(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    switch (n->kind) {
    case BW__C_NOT:
        return bw_tri_not(tri(cx, n->u.not_.operand));
    case BW__C_LOGIC:
        return eval_logic(cx, n);
    case BW__C_BYTES_K:
        return bytes_k(cx, n);
    case BW__C_COMPARE:
        if (n->lifted)
            break;
        return compare_refs(cx, n);
    case BW__C_MATCHES:
        if (n->lifted)
            break;
        return matches_tri(cx, n);
    case BW__C_IN:
        if (n->lifted)
            break;
        return in_bytes_k(cx, n);
    case BW__C_CONST:
    case BW__C_FIELD:
    case BW__C_HEADER:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C_CALL:
    case BW__C__COUNT:
        break;
    }
    return tri_of_val(eval(cx, n));
}

/* A shared call's value, computed on first use. */
static const struct bw_val *memo_ref(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    struct bw__field_cache *c = &cx->memos[n->u.call.memo_slot];
    if (c->state == BW__CACHE_EMPTY) {
        if (!map_call(cx, n, &c->v))
            c->v = eval_call(cx, n);
        c->state = BW__CACHE_DONE;
    }
    return &c->v;
}

static inline bool map_call(struct bw_rules_ctx *cx, const struct bw__cnode *n, struct bw_val *out)
{
    enum bw_rules_func fn = n->u.call.fn;
    if (n->lifted || n->u.call.nargs != 1 ||
        (fn != BW_RULES_FN_LOWER && fn != BW_RULES_FN_UPPER && fn != BW_RULES_FN_URL_DECODE))
        return false;
    struct bw_val tmp;
    const struct bw_val *y = ref(cx, n->u.call.args[0], &tmp);
    out->kind = BW_VAL_UNKNOWN;
    if (y->kind == BW_VAL_BYTES && map_slice(cx, fn, y->u.bytes, &out->u.bytes))
        out->kind = BW_VAL_BYTES;
    return true;
}

static struct bw_val eval(struct bw_rules_ctx *cx, const struct bw__cnode *n)
{
    switch (n->kind) {
    case BW__C_CONST:
        return n->u.konst;
    case BW__C_FIELD:
        return field(cx, n->u.field);
    case BW__C_HEADER:
        return *slot_ref(cx, n->u.header.slot);
    case BW__C_INDEX: {
        struct bw_val a = eval(cx, n->u.index.array);
        if (a.kind != BW_VAL_ARRAY || n->u.index.index < 0 ||
            (uint64_t)n->u.index.index >= a.u.array.n)
            return unknown_val;
        return a.u.array.items[n->u.index.index];
    }
    case BW__C_EACH:
        return eval(cx, n->u.each.array);
    case BW__C_CALL:
        if (!n->u.call.memo)
            return eval_call(cx, n);
        return *memo_ref(cx, n);
    case BW__C_NOT:
        return v_tri(bw_tri_not(tri(cx, n->u.not_.operand)));
    case BW__C_LOGIC:
        return v_tri(eval_logic(cx, n));
    case BW__C_BYTES_K:
        return v_tri(bytes_k(cx, n));
    case BW__C_COMPARE: {
        struct bw_val l = eval(cx, n->u.compare.lhs);
        struct bw_val r = eval(cx, n->u.compare.rhs);
        if (n->lifted)
            return lift(cx, n, l, r);
        return v_tri(compare(n->u.compare.op, &l, &r));
    }
    case BW__C_MATCHES:
        return eval_matches(cx, n);
    case BW__C_IN: {
        struct bw_val l = eval(cx, n->u.in.lhs);
        if (n->lifted)
            return lift(cx, n, l, unknown_val);
        return v_tri(in_set(n, &l));
    }
    case BW__C__COUNT:
        break;
    }
    return unknown_val;
}

void bw_rules_ctx_init(struct bw_rules_ctx *cx, const struct bw_rules_prog *p,
                       const struct bw_request_view *view, bw_arena *arena,
                       bw_regex_scratch *scratch)
{
    /* Everything but the field values, which are read only once their bit
     * in fields_done is set (most of the context: not worth zeroing per
     * request). */
    cx->prog = p;
    cx->view = view;
    cx->arena = arena;
    cx->scratch = scratch;
    cx->ready = false;
    cx->broken = false;
    cx->fast_n = 0;
    cx->single = p->single;
    cx->fields_done = 0;
    cx->slots = NULL; /* the caches: set by make_ready, read only once ready */
    cx->scans = NULL;
    cx->memos = NULL;
    cx->atoms = NULL;
    cx->hidx = NULL; /* read only once hidx_done */
    cx->hidx_done = false;
    cx->stats = (struct bw_rules_eval_stats){0};
}

/* ---- the flattened logic layer (eval_internal.h) ------------------------- */

/* Literal test lit of the value v. */
__attribute__((always_inline)) static inline enum bw_tri lit_test(const struct bw__lit *lit,
                                                                  const struct bw_val *v)
{
    switch ((enum bw__lit_op)lit->op) {
    case BW__L_EQ:
    case BW__L_NE:
    case BW__L_CONTAINS:
    case BW__L_STARTS_WITH:
    case BW__L_ENDS_WITH:
        if (v->kind != BW_VAL_BYTES)
            return BW_TRI_UNKNOWN;
        if (lit->op == BW__L_CONTAINS)
            return bw_tri_of(has_substring_at(v->u.bytes, lit->k, lit->anchor));
        return bytes_op((enum bw__bytes_op)lit->op, v->u.bytes, lit->k);
    case BW__L_IN:
        return set_has(lit->set, v);
    case BW__L_IN_MAPPED:
        if (v->kind != BW_VAL_BYTES)
            return BW_TRI_UNKNOWN;
        return bw_tri_of(bw_bytes_set_contains_mapped(&lit->set->bytes, v->u.bytes,
                                                      (enum bw_bytes_map)lit->map));
    case BW__L_LT:
    case BW__L_LE:
    case BW__L_GT:
    case BW__L_GE:
    case BW__L_IEQ:
    case BW__L_INE:
        if (v->kind != BW_VAL_INT)
            return BW_TRI_UNKNOWN;
        int64_t a = v->u.integer, b = lit->i;
        switch ((enum bw__lit_op)lit->op) {
        case BW__L_LT:
            return bw_tri_of(a < b);
        case BW__L_LE:
            return bw_tri_of(a <= b);
        case BW__L_GT:
            return bw_tri_of(a > b);
        case BW__L_GE:
            return bw_tri_of(a >= b);
        case BW__L_IEQ:
            return bw_tri_of(a == b);
        case BW__L_INE:
            return bw_tri_of(a != b);
        case BW__L_EQ:
        case BW__L_NE:
        case BW__L_CONTAINS:
        case BW__L_STARTS_WITH:
        case BW__L_ENDS_WITH:
        case BW__L_IN:
        case BW__L_IN_MAPPED:
        case BW__L__COUNT:
            break;
        }
        break;
    case BW__L__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

/* A literal group's left side. len() of a header slot or of a field, the
 * usual Int left sides, without a call through the tree (same value:
 * eval_call's len() of a slot is its count; of a Bytes field its length). */
static const struct bw_val *group_lhs(struct bw_rules_ctx *cx, const struct bw__cnode *lhs,
                                      struct bw_val *tmp)
{
    if (lhs->kind == BW__C_CALL && lhs->u.call.fn == BW_RULES_FN_LEN && !lhs->lifted &&
        lhs->u.call.nargs == 1) {
        const struct bw__cnode *a0 = lhs->u.call.args[0];
        if (a0->kind == BW__C_HEADER) {
            size_t k, first;
            *tmp = slot_find(cx, &cx->prog->slots[a0->u.header.slot], &k, &first)
                       ? v_int((int64_t)k)
                       : unknown_val;
            return tmp;
        }
        if (a0->kind == BW__C_FIELD) {
            const struct bw_val *f = field_ref(cx, a0->u.field);
            *tmp = f->kind == BW_VAL_BYTES ? v_int((int64_t)f->u.bytes.len) : unknown_val;
            return tmp;
        }
    }
    return ref(cx, lhs, tmp);
}

_Static_assert(BW__L_EQ < BW__L_IN && BW__L_NE < BW__L_IN && BW__L_CONTAINS < BW__L_IN &&
                   BW__L_STARTS_WITH < BW__L_IN && BW__L_ENDS_WITH < BW__L_IN &&
                   BW__L_IN < BW__L_LT,
               "lit_group runs the Bytes tests, sorted first, with words");

/* A Bytes test of lit on s, whose first 8 bytes (zero past its end) are
 * head and last 8 (zero before its start) tail: the words settle most
 * tests; the bytes past them are compared only when the words agree. */
__attribute__((always_inline)) static inline bool word_test(const struct bw__lit *lit, bw_slice s,
                                                            uint64_t head, uint64_t tail)
{
    size_t kl = lit->k.len;
    switch ((enum bw__lit_op)lit->op) {
    case BW__L_EQ:
    case BW__L_NE: {
        bool eq = s.len == kl && (head & lit->km) == lit->kw &&
                  (kl <= 8 || same_bytes(s.ptr + 8, lit->k.ptr + 8, kl - 8));
        return lit->op == BW__L_EQ ? eq : !eq;
    }
    case BW__L_STARTS_WITH:
        return s.len >= kl && (head & lit->km) == lit->kw &&
               (kl <= 8 || same_bytes(s.ptr + 8, lit->k.ptr + 8, kl - 8));
    case BW__L_ENDS_WITH:
        return s.len >= kl && (tail & lit->km) == lit->kw &&
               (kl <= 8 || same_bytes(s.ptr + s.len - kl, lit->k.ptr, kl - 8));
    case BW__L_CONTAINS:
        return has_substring_at(s, lit->k, lit->anchor);
    case BW__L_IN:
    case BW__L_IN_MAPPED:
    case BW__L_LT:
    case BW__L_LE:
    case BW__L_GT:
    case BW__L_GE:
    case BW__L_IEQ:
    case BW__L_INE:
    case BW__L__COUNT:
        break;
    }
    return false;
}

/* s's first 8 bytes in memory order, zero past its end (head), and its
 * last 8, zero before its start (tail), as bw__lit_words lays out a
 * literal's. Built in registers: bytes copied to the stack and read back
 * as a word stall on store forwarding (perf: a fifth of lit_group). */
static inline void value_words(bw_slice s, uint64_t *head, uint64_t *tail)
{
    size_t n = s.len;
    if (n >= 8) {
        *head = load64(s.ptr);
        *tail = load64(s.ptr + n - 8);
        return;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t h = 0;
    if (n >= 4) { /* two overlapping loads; the shared bytes are equal */
        h = (uint64_t)load32(s.ptr) | (uint64_t)load32(s.ptr + n - 4) << (8 * (n - 4));
    } else {
        for (size_t i = 0; i < n; i++)
            h |= (uint64_t)(unsigned char)s.ptr[i] << (8 * i);
    }
    *head = h;
    *tail = n ? h << (8 * (8 - n)) : 0;
#else
    unsigned char hb[8] = {0}, tb[8] = {0};
    if (n) {
        memcpy(hb, s.ptr, n);
        memcpy(tb + 8 - n, s.ptr, n);
    }
    memcpy(head, hb, 8);
    memcpy(tail, tb, 8);
#endif
}

/* The length of n, a left side flatten.c found length_known, without
 * computing n: false when n is unknown (a field is, or is not Bytes), as
 * lower(), upper() and concat() of it are. */
static bool len_of(struct bw_rules_ctx *cx, const struct bw__cnode *n, size_t *len)
{
    switch (n->kind) {
    case BW__C_FIELD: {
        const struct bw_val *v = field_ref(cx, n->u.field);
        if (v->kind != BW_VAL_BYTES)
            return false;
        *len = v->u.bytes.len;
        return true;
    }
    case BW__C_CONST:
        if (n->u.konst.kind != BW_VAL_BYTES)
            return false;
        *len = n->u.konst.u.bytes.len;
        return true;
    case BW__C_CALL: { /* lower / upper: the argument's; concat: the sum */
        size_t total = 0;
        for (size_t i = 0; i < n->u.call.nargs; i++) {
            size_t l;
            if (!len_of(cx, n->u.call.args[i], &l))
                return false;
            total += l;
        }
        *len = total;
        return true;
    }
    case BW__C_HEADER:
    case BW__C_INDEX:
    case BW__C_EACH:
    case BW__C_NOT:
    case BW__C_LOGIC:
    case BW__C_COMPARE:
    case BW__C_MATCHES:
    case BW__C_IN:
    case BW__C_BYTES_K:
    case BW__C__COUNT:
        break;
    }
    return false;
}

/* Test lit of a value len bytes long, from the length alone: 1 + its
 * value, or 0 when the bytes are needed. */
static unsigned len_test(const struct bw__lit *lit, size_t len)
{
    size_t kl = lit->k.len;
    switch ((enum bw__lit_op)lit->op) {
    case BW__L_EQ:
        return len != kl ? 1 + BW_TRI_FALSE : 0;
    case BW__L_NE:
        return len != kl ? 1 + BW_TRI_TRUE : 0;
    case BW__L_IN:
    case BW__L_IN_MAPPED:
        return bw_bytes_set_has_len(&lit->set->bytes, len) ? 0 : 1 + BW_TRI_FALSE;
    case BW__L_CONTAINS: /* never in a by_len group (flatten.c, settled_by_length) */
    case BW__L_STARTS_WITH:
    case BW__L_ENDS_WITH:
    case BW__L_LT:
    case BW__L_LE:
    case BW__L_GT:
    case BW__L_GE:
    case BW__L_IEQ:
    case BW__L_INE:
    case BW__L__COUNT:
        break;
    }
    return 0;
}

/* The tests of filter f (eval_internal.h) on s: all false but those the
 * filter lets through, which are run. Returns the index past them. */
static uint32_t filtered(const struct bw__lit_filter *f, const struct bw__lit *lit, uint8_t *out,
                         bw_slice s, uint64_t head, uint64_t tail)
{
    uint64_t cand = ~(uint64_t)0 >> (64u - (f->hi - f->lo));
    if (s.len > f->at)
        cand = f->always | f->masks[(unsigned char)s.ptr[f->from_end ? s.len - 1 - f->at : f->at]];
    memset(out + f->lo, 1 + BW_TRI_FALSE, f->hi - f->lo);
    while (cand) {
        uint32_t j = f->lo + (uint32_t)__builtin_ctzll(cand);
        cand &= cand - 1;
        out[j] = (uint8_t)(1 + word_test(&lit[j], s, head, tail));
    }
    return f->hi;
}

/* Literal group g: its left side once, then each of its tests, into their
 * atoms. The tests allocate nothing and have no other effect, so running
 * those of rules that are never evaluated changes nothing but time. */
__attribute__((noinline)) static void lit_group(struct bw_rules_ctx *cx, uint32_t g)
{
    const struct bw__lit_group *lg = &cx->prog->lit_groups[g];
    const struct bw__lit *lit = &cx->prog->lits[lg->first];
    uint8_t *out = &cx->atoms[lg->first];
    if (lg->by_len) {
        /* concat(lower(http.host), http.request.uri.path) in {...}: most
         * values are ruled out by their length, with no copy made. */
        size_t len;
        if (!len_of(cx, lg->lhs, &len)) {
            memset(out, 1 + BW_TRI_UNKNOWN, lg->n);
            return;
        }
        uint32_t k = 0;
        for (; k < lg->n && (out[k] = (uint8_t)len_test(&lit[k], len)) != 0; k++)
            ;
        if (k == lg->n)
            return;
    }
    struct bw_val tmp;
    const struct bw_val *v = group_lhs(cx, lg->lhs, &tmp);
    uint32_t j = 0;
    if (v->kind == BW_VAL_BYTES) {
        /* The tests are sorted by operation: the Bytes ones come first. */
        bw_slice s = v->u.bytes;
        uint64_t head, tail;
        value_words(s, &head, &tail);
        uint32_t fi = 0; /* the next filter (they are sorted by lo) */
        for (; j < lg->n && lit[j].op < BW__L_IN; j++) {
            if (fi < lg->nfilters && j == lg->filters[fi].lo) {
                j = filtered(&lg->filters[fi], lit, out, s, head, tail) - 1;
                fi++;
                continue;
            }
            out[j] = (uint8_t)(1 + word_test(&lit[j], s, head, tail));
        }
    }
    for (; j < lg->n; j++)
        out[j] = (uint8_t)(1 + lit_test(&lit[j], v));
}

/* lower() / upper() of values up to this long are computed on the stack by
 * HEADERS atoms; longer ones go through the tree. */
#define HMAP_BUF 256

/* A HEADERS atom (eval_internal.h): what the tree computes for
 * any(t(m(h["name"][*]))), all(...) and has(h["name"]), from the header
 * lines directly. any() stops at the first true, all() at the first false:
 * the rest cannot change the value. */
static enum bw_tri headers_atom(struct bw_rules_ctx *cx, const struct bw__atom *at)
{
    const struct bw__slot *s = &cx->prog->slots[at->group];
    size_t k, first;
    bool exists = slot_find(cx, s, &k, &first);
    enum bw__hq hq = (enum bw__hq)at->hq;
    switch (hq) {
    case BW__HQ_HAS:
        return bw_tri_of(exists && k > 0);
    case BW__HQ_ANY:
    case BW__HQ_ALL:
        break;
    case BW__HQ__COUNT:
        return BW_TRI_UNKNOWN;
    }
    if (!exists)
        return BW_TRI_UNKNOWN; /* the map itself is unknown */
    const struct bw_rv_headers *h;
    if (!map_of(cx, s->map, &h))
        return BW_TRI_UNKNOWN;
    bool any = hq == BW__HQ_ANY;
    enum bw_tri acc = any ? BW_TRI_FALSE : BW_TRI_TRUE;
    const struct bw__lit *lit = &cx->prog->hlits[at->id];
    char buf[HMAP_BUF];
    for (size_t i = first, j = 0; j < k && i < h->n; i++) {
        if (j > 0 && !eq_nocase_lowered(h->items[i].name, s->name))
            continue;
        j++;
        struct bw_val v = v_bytes(h->items[i].value);
        if (at->hmap != BW_RULES_FN__COUNT) {
            bw_slice x = v.u.bytes;
            if (x.len > sizeof buf)
                return tri(cx, at->node);
            bool up = at->hmap == BW_RULES_FN_UPPER;
            size_t b = 0;
            for (; b + 8 <= x.len; b += 8) {
                uint64_t w = load64(x.ptr + b);
                store64(buf + b, up ? bw_ascii_upper64(w) : bw_ascii_lower64(w));
            }
            for (; b < x.len; b++)
                buf[b] = up ? bw_ascii_upper(x.ptr[b]) : bw_ascii_lower(x.ptr[b]);
            v.u.bytes = bw_slice_make(x.len ? buf : "", x.len);
        }
        enum bw_tri t = lit_test(lit, &v);
        acc = any ? bw_tri_or(acc, t) : bw_tri_and(acc, t);
        if (acc == (any ? BW_TRI_TRUE : BW_TRI_FALSE))
            break;
    }
    return acc;
}

/* Scan group g (scanned now unless it was already), into the atoms of all
 * its patterns. */
__attribute__((noinline)) static void scan_atoms(struct bw_rules_ctx *cx, uint32_t g)
{
    const struct bw__group *grp = &cx->prog->groups[g];
    uint8_t *out = &cx->atoms[cx->prog->scan_atoms[g]];
    struct bw__scan_cache *sc = &cx->scans[g];
    if (sc->state != BW__CACHE_DONE)
        sc = scan(cx, g);
    if (!sc->known || !sc->elem_known[0]) {
        memset(out, 1 + BW_TRI_UNKNOWN, grp->npatterns);
        return;
    }
    /* Eight patterns at a time: bit j of a byte of the bitset becomes byte
     * j of a word, 1 (false) or 2 (true). */
    size_t np = grp->npatterns, id = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; id + 8 <= np; id += 8) {
        uint64_t b = (sc->bits[id / 64u] >> (id % 64u)) & 0xffu;
        /* Byte j keeps bit j of b (at most 0x80: adding 0x7f carries into
         * no other byte), then bit 7 of byte j says whether it was set. */
        uint64_t spread = ((b * ONES) & 0x8040201008040201ull) + LOWS7;
        uint64_t bytes = ONES + ((spread >> 7) & ONES);
        memcpy(out + id, &bytes, 8); /* byte j, the (j+1)th in memory: pattern id + j */
    }
#endif
    for (; id < np; id++)
        out[id] = (uint8_t)(1 + bw_regex_bit(sc->bits, id));
}

/* Atom a's value, computed without the atom results (they have no room). */
static enum bw_tri atom_alone(struct bw_rules_ctx *cx, const struct bw__atom *at)
{
    switch ((enum bw__atom_kind)at->kind) {
    case BW__A_MATCH:
        return match_tri(cx, at->group, at->id);
    case BW__A_HEADERS:
        return headers_atom(cx, at);
    case BW__A_LIT:
    case BW__A_NODE:
        return tri(cx, at->node);
    case BW__A__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

/* Computes atom a's group; a is not computed yet. */
__attribute__((noinline)) static enum bw_tri atom_fill(struct bw_rules_ctx *cx, uint32_t a)
{
    const struct bw__atom *at = &cx->prog->atoms[a];
    if (!cx->atoms)
        return atom_alone(cx, at);
    switch ((enum bw__atom_kind)at->kind) {
    case BW__A_LIT:
        lit_group(cx, at->group);
        break;
    case BW__A_MATCH:
        scan_atoms(cx, at->group);
        break;
    case BW__A_HEADERS:
        cx->atoms[a] = (uint8_t)(1 + headers_atom(cx, at));
        break;
    case BW__A_NODE:
        cx->atoms[a] = (uint8_t)(1 + tri(cx, at->node));
        break;
    case BW__A__COUNT:
        return BW_TRI_UNKNOWN;
    }
    return (enum bw_tri)(cx->atoms[a] - 1);
}

static inline enum bw_tri atom(struct bw_rules_ctx *cx, uint32_t a)
{
    if (__builtin_expect(cx->atoms != NULL && cx->atoms[a] != 0, 1))
        return (enum bw_tri)(cx->atoms[a] - 1);
    return atom_fill(cx, a);
}

/* Whether acc decides a logic node: and at false, or at true, xor at
 * unknown (the remaining operands cannot change it). */
static inline bool decided(enum bw_rules_logic_op op, enum bw_tri acc)
{
    return acc == (op == BW_RULES_AND  ? BW_TRI_FALSE
                   : op == BW_RULES_OR ? BW_TRI_TRUE
                                       : BW_TRI_UNKNOWN);
}

static inline enum bw_tri combine(enum bw_rules_logic_op op, enum bw_tri a, enum bw_tri b)
{
    switch (op) {
    case BW_RULES_AND:
        return bw_tri_and(a, b);
    case BW_RULES_OR:
        return bw_tri_or(a, b);
    case BW_RULES_XOR:
        return bw_tri_xor(a, b);
    case BW_RULES_LOGIC__COUNT:
        break;
    }
    return BW_TRI_UNKNOWN;
}

_Static_assert(BW_TRI_FALSE == 0 && BW_TRI_TRUE == 1 && BW_TRI_UNKNOWN == 2,
               "bw_rules_eval (eval.h) negates with bit operations");

/* A FLAT instruction (eval_internal.h): and / or of the atoms that follow
 * it, stopping at the first operand that decides, as run_code would. */
static inline enum bw_tri run_flat(struct bw_rules_ctx *cx, const struct bw__insn *h)
{
    bool is_and = h->logic == BW_RULES_AND;
    enum bw_tri acc = is_and ? BW_TRI_TRUE : BW_TRI_FALSE;
    for (uint32_t k = 1; k <= h->a; k++) {
        const struct bw__insn *in = &h[k];
        unsigned t = (unsigned)atom(cx, in->a);
        t ^= in->depth & ~(t >> 1); /* not, unless unknown (as in eval.h) */
        acc = is_and ? bw_tri_and(acc, (enum bw_tri)t) : bw_tri_or(acc, (enum bw_tri)t);
        if (acc == (is_and ? BW_TRI_FALSE : BW_TRI_TRUE))
            break;
    }
    return acc;
}

/* Runs the instructions of an expression that is not a single atom. */
__attribute__((noinline)) static enum bw_tri run_code(struct bw_rules_ctx *cx, uint32_t pc)
{
    const struct bw__insn *code = cx->prog->code;
    enum bw_tri r = BW_TRI_UNKNOWN;
    uint8_t acc[BW__MAX_LOGIC_DEPTH]; /* written by FIRST before any read */
    for (;;) {
        const struct bw__insn *in = &code[pc++];
        switch ((enum bw__op)in->op) {
        case BW__OP_ATOM:
            r = atom(cx, in->a);
            break;
        case BW__OP_NOT:
            r = bw_tri_not(r);
            break;
        case BW__OP_FIRST:
            acc[in->depth] = (uint8_t)r;
            if (decided((enum bw_rules_logic_op)in->logic, r))
                pc = in->a;
            break;
        case BW__OP_STEP:
            r = combine((enum bw_rules_logic_op)in->logic, (enum bw_tri)acc[in->depth], r);
            acc[in->depth] = (uint8_t)r;
            if (decided((enum bw_rules_logic_op)in->logic, r))
                pc = in->a;
            break;
        case BW__OP_END:
            return r;
        case BW__OP_FLAT:
            r = run_flat(cx, in);
            pc += in->a;
            break;
        case BW__OP__COUNT:
            return BW_TRI_UNKNOWN;
        }
    }
}

enum bw_tri bw__rules_eval(struct bw_rules_ctx *cx, size_t i)
{
    if (i >= cx->prog->n || !ensure_ready(cx))
        return BW_TRI_UNKNOWN;
    uint32_t single = cx->prog->single[i];
    if (single >> 1 == cx->prog->natoms)
        return run_code(cx, cx->prog->entry[i]);
    unsigned t = (unsigned)atom(cx, single >> 1);
    return (enum bw_tri)(t ^ ((single & 1u) & ~(t >> 1))); /* as in eval.h */
}

/* The absence bits of the bound request (eval_internal.h, struct
 * bw__skip); 0, so that nothing is skipped, when the header index could
 * not be built. */
__attribute__((noinline)) static uint64_t absent_bits(struct bw_rules_ctx *cx)
{
    if (!hindex(cx))
        return 0;
    uint64_t a = ~cx->present & (((uint64_t)1 << BW__ABSENT_NAMES) - 1);
    if (!cx->view->host.known)
        a |= (uint64_t)1 << BW__ABSENT_HOST;
    if (!cx->view->bot_score.known)
        a |= (uint64_t)1 << BW__ABSENT_BOT;
    return a;
}

static inline bool skipped(const struct bw__skip *k, uint64_t absent)
{
    return (absent & k->any) || (k->all && (absent & k->all) == k->all);
}

bool bw__rules_skipped(struct bw_rules_ctx *cx, size_t i)
{
    const struct bw_rules_prog *p = cx->prog;
    return p->any_skips && i < p->n && skipped(&p->skips[i], absent_bits(cx));
}

size_t bw_rules_eval_first_true(struct bw_rules_ctx *cx, size_t from, size_t to)
{
    const struct bw_rules_prog *p = cx->prog;
    if (to > p->n)
        to = p->n;
    if (from >= to || !ensure_ready(cx))
        return to; /* not ready: every expression is unknown */
    const uint32_t *single = p->single;
    const uint8_t *atoms = cx->atoms;
    if (!atoms) {
        for (size_t i = from; i < to; i++)
            if (bw__rules_eval(cx, i) == BW_TRI_TRUE)
                return i;
        return to;
    }
    /* A single atom's byte is 1 + its value (0: not computed; the byte of an
     * expression that is not a single atom stays 0): the expression is TRUE
     * when the byte is 2 (true), or 1 (false) under a `not`. */
    uint32_t natoms = p->natoms;
    const uint32_t *fast = p->fast;
    const struct bw__skip *skips = p->skips;
    bool any_skips = p->any_skips;
    uint64_t absent = 0;
    bool have_absent = false;
    for (size_t i = from; i < to; i++) {
        uint32_t w = fast[i];
        unsigned v = atoms[w >> 2];
        if (v == (w & 3u))
            return i;
        if (__builtin_expect(v != 0, 1))
            continue;
        /* Not computed yet. Passed over when something it needs is absent;
         * else what bw__rules_eval does once ready, without its checks. */
        if (any_skips && (skips[i].any | skips[i].all)) {
            if (!have_absent) {
                absent = absent_bits(cx);
                have_absent = true;
            }
            if (skipped(&skips[i], absent))
                continue;
        }
        uint32_t s = single[i];
        if (s >> 1 == natoms) {
            const struct bw__insn *in = &p->code[p->entry[i]];
            if ((in->op == BW__OP_FLAT ? run_flat(cx, in) : run_code(cx, p->entry[i])) ==
                BW_TRI_TRUE)
                return i;
        } else if (atom_fill(cx, s >> 1) == (enum bw_tri)(1u - (s & 1u))) {
            return i;
        }
    }
    return to;
}

enum bw_tri bw__rules_eval_tree(struct bw_rules_ctx *cx, size_t i)
{
    if (i >= cx->prog->n || !ensure_ready(cx))
        return BW_TRI_UNKNOWN;
    return tri(cx, cx->prog->roots[i]);
}

struct bw_val bw_rules_field_value(struct bw_rules_ctx *cx, enum bw_rules_field f)
{
    return field(cx, f);
}
