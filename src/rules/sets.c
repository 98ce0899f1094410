/* Value sets for `in { ... }`: built once into the snapshot's arena, looked
 * up with no allocation. See sets.h for the contracts. */
#include "rules/sets.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ---- IP sets ------------------------------------------------------------ */

static const bw_u128 U128_MAX = ~(bw_u128)0;

/* ::ffff:0:0/96 as numbers */
#define MAPPED_LO (((bw_u128)0xffffu) << 32)
#define MAPPED_HI (MAPPED_LO | 0xffffffffu)

static bw_u128 load_u128(const uint8_t b[16])
{
    bw_u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | b[i];
    return v;
}

static uint32_t load_u32(const uint8_t b[4])
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static int cmp_r4(const void *a, const void *b)
{
    const struct bw_ip_range4 *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

static int cmp_r6(const void *a, const void *b)
{
    const struct bw_ip_range6 *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts and merges overlapping or adjacent ranges in place; returns the count. */
static size_t merge4(struct bw_ip_range4 *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof *r, cmp_r4);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        if (r[o].hi == UINT32_MAX || r[i].lo <= r[o].hi + 1) {
            if (r[i].hi > r[o].hi)
                r[o].hi = r[i].hi;
        } else {
            r[++o] = r[i];
        }
    }
    return o + 1;
}

static size_t merge6(struct bw_ip_range6 *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof *r, cmp_r6);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        if (r[o].hi == U128_MAX || r[i].lo <= r[o].hi + 1) {
            if (r[i].hi > r[o].hi)
                r[o].hi = r[i].hi;
        } else {
            r[++o] = r[i];
        }
    }
    return o + 1;
}

bw_status bw_ip_set_build(bw_arena *a, const struct bw_cidr *cidrs, size_t n, struct bw_ip_set *ret,
                          bw_error *err)
{
    if (n > BW_SET_MAX_ELEMENTS)
        return bw_error_set(err, "a set of %zu addresses is over the limit of %u elements", n,
                            BW_SET_MAX_ELEMENTS);
    for (size_t i = 0; i < n; i++) {
        const struct bw_cidr *c = &cidrs[i];
        if (!(c->family == AF_INET && c->prefix <= 32) &&
            !(c->family == AF_INET6 && c->prefix <= 128))
            return bw_error_set(err, "set element %zu is not an IPv4 or IPv6 CIDR", i);
    }
    /* An IPv6 CIDR may land in either family: sized for n in each. */
    struct bw_ip_range4 *r4 = bw_arena_alloc(a, (n ? n : 1) * sizeof *r4);
    struct bw_ip_range6 *r6 = bw_arena_alloc(a, (n ? n : 1) * sizeof *r6);
    if (!r4 || !r6)
        return bw_error_set(err, "out of memory building an address set");
    size_t k4 = 0, k6 = 0;
    for (size_t i = 0; i < n; i++) {
        const struct bw_cidr *c = &cidrs[i];
        if (c->family == AF_INET) {
            uint32_t base = load_u32(c->addr);
            uint32_t host = c->prefix >= 32 ? 0 : (UINT32_MAX >> c->prefix); /* no shift by 32 */
            r4[k4++] = (struct bw_ip_range4){.lo = base & ~host, .hi = (base & ~host) | host};
            continue;
        }
        bw_u128 base = load_u128(c->addr);
        bw_u128 host = c->prefix >= 128 ? 0 : (U128_MAX >> c->prefix);
        bw_u128 lo = base & ~host, hi = lo | host;
        if (lo >= MAPPED_LO && hi <= MAPPED_HI) {
            /* ::ffff:a.b.c.d/96+ is an IPv4 network, as the rules lexer
             * stores it; a wider IPv6 network (::/0, ::/80) holds no IPv4
             * address, so it adds no IPv4 range (see sets.h). */
            r4[k4++] = (struct bw_ip_range4){.lo = (uint32_t)(lo & 0xffffffffu),
                                             .hi = (uint32_t)(hi & 0xffffffffu)};
        } else {
            r6[k6++] = (struct bw_ip_range6){.lo = lo, .hi = hi};
        }
    }
    ret->v4 = r4;
    ret->n4 = merge4(r4, k4);
    ret->v6 = r6;
    ret->n6 = merge6(r6, k6);
    return BW_OK;
}

static bool contains4(const struct bw_ip_set *s, uint32_t v)
{
    size_t lo = 0, hi = s->n4; /* first range with .hi >= v, in [lo, hi) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v4[mid].hi < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n4 && s->v4[lo].lo <= v;
}

static bool contains6(const struct bw_ip_set *s, bw_u128 v)
{
    size_t lo = 0, hi = s->n6;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v6[mid].hi < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n6 && s->v6[lo].lo <= v;
}

bool bw_ip_set_contains_v4(const struct bw_ip_set *s, const uint8_t addr[4])
{
    return contains4(s, load_u32(addr));
}

bool bw_ip_set_contains_v6(const struct bw_ip_set *s, const uint8_t addr[16])
{
    bw_u128 v = load_u128(addr);
    if (v >= MAPPED_LO && v <= MAPPED_HI)
        return contains4(s, (uint32_t)(v & 0xffffffffu));
    return contains6(s, v);
}

bool bw_ip_set_contains_sockaddr(const struct bw_ip_set *s, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return bw_ip_set_contains_v4(s, (const uint8_t *)&in->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return bw_ip_set_contains_v6(s, in6->sin6_addr.s6_addr);
    }
    return false;
}

/* ---- Int sets ------------------------------------------------------------ */

static int cmp_int(const void *a, const void *b)
{
    const struct bw_int_range *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

bw_status bw_int_set_build(bw_arena *a, const struct bw_int_range *items, size_t n,
                           struct bw_int_set *ret, bw_error *err)
{
    if (n > BW_SET_MAX_ELEMENTS)
        return bw_error_set(err, "a set of %zu integers is over the limit of %u elements", n,
                            BW_SET_MAX_ELEMENTS);
    for (size_t i = 0; i < n; i++)
        if (items[i].lo > items[i].hi)
            return bw_error_set(err, "the range %lld..%lld is empty: its start is after its end",
                                (long long)items[i].lo, (long long)items[i].hi);
    struct bw_int_range *r = bw_arena_alloc(a, (n ? n : 1) * sizeof *r);
    if (!r)
        return bw_error_set(err, "out of memory building an integer set");
    if (n)
        memcpy(r, items, n * sizeof *r);
    size_t o = 0;
    if (n) {
        qsort(r, n, sizeof *r, cmp_int);
        for (size_t i = 1; i < n; i++) {
            if (r[o].hi == INT64_MAX || r[i].lo <= r[o].hi + 1) {
                if (r[i].hi > r[o].hi)
                    r[o].hi = r[i].hi;
            } else {
                r[++o] = r[i];
            }
        }
        o++;
    }
    ret->r = r;
    ret->n = o;
    return BW_OK;
}

bool bw_int_set_contains(const struct bw_int_set *s, int64_t v)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].hi < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->r[lo].lo <= v;
}

/* ---- Bytes sets ---------------------------------------------------------- */

/* FNV-1a over the bytes, then a 64-bit finaliser (MurmurHash3 fmix64) so the
 * low bits used for the slot index depend on every byte. Elements come from
 * the operator's config; looked-up values come from requests, and a lookup's
 * cost is bounded by max_probe whatever they hash to. */
static uint64_t len_bit(size_t len)
{
    return (uint64_t)1 << (len < 63 ? len : 63);
}

/* Eight bytes a step (the last word overlapping the one before), so a
 * lookup costs a few multiplies rather than one per byte: the byte-wise
 * FNV-1a this replaced was a chain of |v| dependent multiplies, ~20 ns for
 * a path. Set elements come from the configuration, not from requests, so
 * no one can aim collisions at a set; lookups are bounded by max_probe. */
static inline uint64_t hash_step(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* w with m applied to each of its bytes. */
__attribute__((always_inline)) static inline uint64_t map_word(uint64_t w, enum bw_bytes_map m)
{
    switch (m) {
    case BW_BYTES_MAP_NONE:
        return w;
    case BW_BYTES_MAP_LOWER:
        return bw_ascii_lower64(w);
    case BW_BYTES_MAP_UPPER:
        return bw_ascii_upper64(w);
    case BW_BYTES_MAP__COUNT:
        break;
    }
    return w;
}

/* The hash of m(v): every word is mapped as it is loaded, so the hash of
 * "ABC" under BW_BYTES_MAP_LOWER is the hash of "abc". */
__attribute__((always_inline)) static inline uint64_t hash_mapped(bw_slice v, enum bw_bytes_map m)
{
    const char *p = v.ptr;
    size_t n = v.len;
    uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    if (n >= 8) {
        uint64_t w;
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&w, p + i, 8);
            h = hash_step(h, map_word(w, m));
        }
        memcpy(&w, p + n - 8, 8);
        h = hash_step(h, map_word(w, m));
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        h = hash_step(h, map_word((uint64_t)a << 32 | b, m));
    } else if (n > 0) { /* with n, these three bytes are all of v */
        uint64_t w = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n / 2] << 8 |
                     (unsigned char)p[n - 1];
        h = hash_step(h, map_word(w, m));
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(bw_slice v)
{
    return hash_mapped(v, BW_BYTES_MAP_NONE);
}

bw_status bw__bytes_set_build_masked(bw_arena *a, const bw_slice *items, size_t n,
                                     uint64_t hash_mask, struct bw_bytes_set *ret, bw_error *err)
{
    if (n > BW_SET_MAX_ELEMENTS)
        return bw_error_set(err, "a set of %zu strings is over the limit of %u elements", n,
                            BW_SET_MAX_ELEMENTS);
    for (size_t i = 0; i < n; i++)
        if (items[i].len > BW_SET_MAX_BYTES_ELEMENT)
            return bw_error_set(err,
                                "set element %zu is %zu bytes long, over the limit of %u bytes", i,
                                items[i].len, BW_SET_MAX_BYTES_ELEMENT);
    size_t cap = 2;
    while (cap < 2 * n) /* load factor <= 1/2; n <= 2^18, so no overflow */
        cap *= 2;
    struct bw_bytes_slot *slots = bw_arena_alloc(a, cap * sizeof *slots);
    if (!slots)
        return bw_error_set(err, "out of memory building a string set");
    size_t mask = cap - 1, count = 0, max_probe = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_bytes(items[i]) & hash_mask;
        size_t at = (size_t)h & mask, dist = 0;
        bool dup = false;
        while (slots[at].used) {
            if (slots[at].hash == h && bw_slice_eq(slots[at].key, items[i])) {
                dup = true;
                break;
            }
            at = (at + 1) & mask;
            dist++;
        }
        if (dup)
            continue;
        bw_slice key = BW_SLICE_EMPTY;
        if (items[i].len) {
            key = bw_arena_slice_dup(a, items[i]);
            if (!key.ptr)
                return bw_error_set(err, "out of memory building a string set");
        }
        slots[at] = (struct bw_bytes_slot){.hash = h, .key = key, .used = true};
        count++;
        if (dist + 1 > max_probe)
            max_probe = dist + 1;
    }
    ret->slots = slots;
    ret->mask = mask;
    ret->count = count;
    ret->max_probe = max_probe;
    ret->hash_mask = hash_mask;
    ret->len_bits = 0;
    for (size_t i = 0; i < n; i++)
        ret->len_bits |= len_bit(items[i].len);
    return BW_OK;
}

bw_status bw_bytes_set_build(bw_arena *a, const bw_slice *items, size_t n, struct bw_bytes_set *ret,
                             bw_error *err)
{
    return bw__bytes_set_build_masked(a, items, n, ~(uint64_t)0, ret, err);
}

/* m(v) equals key (same length): whole words, the last one overlapping
 * the one before. */
static bool mapped_eq(bw_slice v, bw_slice key, enum bw_bytes_map m)
{
    size_t n = v.len;
    uint64_t a, b;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&a, v.ptr + i, 8);
            memcpy(&b, key.ptr + i, 8);
            if (map_word(a, m) != b)
                return false;
        }
        memcpy(&a, v.ptr + n - 8, 8);
        memcpy(&b, key.ptr + n - 8, 8);
        return map_word(a, m) == b;
    }
    a = b = 0; /* shorter: one zero-padded word each (a zero byte maps to itself) */
    if (n) {
        memcpy(&a, v.ptr, n);
        memcpy(&b, key.ptr, n);
    }
    return map_word(a, m) == b;
}

bool bw_bytes_set_contains_mapped(const struct bw_bytes_set *s, bw_slice v, enum bw_bytes_map m)
{
    if (!bw_bytes_set_has_len(s, v.len))
        return false;
    uint64_t h = hash_mapped(v, m) & s->hash_mask;
    size_t at = (size_t)h & s->mask;
    for (size_t i = 0; i < s->max_probe; i++) {
        const struct bw_bytes_slot *slot = &s->slots[at];
        if (!slot->used)
            return false;
        if (slot->hash == h && slot->key.len == v.len && mapped_eq(v, slot->key, m))
            return true;
        at = (at + 1) & s->mask;
    }
    return false;
}

bool bw_bytes_set_contains(const struct bw_bytes_set *s, bw_slice v)
{
    if (!bw_bytes_set_has_len(s, v.len))
        return false;
    uint64_t h = hash_bytes(v) & s->hash_mask;
    size_t at = (size_t)h & s->mask;
    for (size_t i = 0; i < s->max_probe; i++) {
        const struct bw_bytes_slot *slot = &s->slots[at];
        if (!slot->used)
            return false;
        if (slot->hash == h && bw_slice_eq(slot->key, v))
            return true;
        at = (at + 1) & s->mask;
    }
    return false;
}
