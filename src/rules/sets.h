/* Value sets for the Rules language's `in { ... }`: IP sets (addresses and
 * CIDRs), Int sets (values and ranges) and Bytes sets (strings).
 *
 * This file owns building each set once, at load, into the caller's arena,
 * and membership tests on the request path with no allocation. It does not
 * own parsing the set literal (the rules parser does, with bw_parse_cidr for
 * addresses) or three-valued logic (an absent value never reaches a set).
 *
 * Every set is immutable once built and may be read by any number of threads
 * at once. Its memory lives in the arena passed to the build function (the
 * snapshot's): nothing to free separately. A failed build may leave unused
 * bytes in the arena, never a half-built set in *ret.
 *
 * Limits: BW_SET_MAX_ELEMENTS elements per set literal (before merging), so a
 * generated rule file cannot make a set without bound. */
#ifndef BW_RULES_SETS_H
#define BW_RULES_SETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "base/cidr.h"

#define BW_SET_MAX_ELEMENTS 262144u    /* elements in one set literal */
#define BW_SET_MAX_BYTES_ELEMENT 4096u /* bytes in one string of a Bytes set */

/* ---- IP sets ------------------------------------------------------------
 * Sorted, merged, disjoint ranges per family, looked up by binary search.
 * The families are disjoint, as in Cloudflare's engine: an IPv6 network never
 * holds an IPv4 address and an IPv4 network never an IPv6 one, so `::/0`
 * holds no IPv4 client and `0.0.0.0/0` no IPv6 client. An IPv4 address
 * written IPv4-mapped is IPv4: a lookup of ::ffff:a.b.c.d is a lookup of
 * a.b.c.d, and a CIDR inside ::ffff:0:0/96 (prefix 96 or more, such as
 * ::ffff:10.0.0.0/104) is the IPv4 CIDR it maps (10.0.0.0/8). An IPv6 CIDR
 * with a shorter prefix that covers the mapped block (::/80) holds only the
 * IPv6 addresses outside it. */

struct bw_ip_range4 {
    uint32_t lo, hi; /* host byte order, inclusive */
};

__extension__ typedef unsigned __int128 bw_u128;

struct bw_ip_range6 {
    bw_u128 lo, hi; /* address as a big-endian number, inclusive */
};

struct bw_ip_set {
    const struct bw_ip_range4 *v4; /* n4 ranges, ascending, disjoint, not adjacent */
    size_t n4;
    const struct bw_ip_range6 *v6;
    size_t n6;
};

/* Builds from n CIDRs (bw_parse_cidr's output; a bare address is a /32 or
 * /128). Overlapping and adjacent CIDRs merge. n == 0 is an empty set. */
bw_status bw_ip_set_build(bw_arena *a, const struct bw_cidr *cidrs, size_t n, struct bw_ip_set *ret,
                          bw_error *err) BW_MUST_CHECK;

/* addr: 4 bytes, network byte order. */
bool bw_ip_set_contains_v4(const struct bw_ip_set *s, const uint8_t addr[4]);
/* addr: 16 bytes, network byte order; mapped addresses go to the IPv4 ranges. */
bool bw_ip_set_contains_v6(const struct bw_ip_set *s, const uint8_t addr[16]);
/* AF_INET or AF_INET6; any other family is not in the set. */
bool bw_ip_set_contains_sockaddr(const struct bw_ip_set *s, const struct sockaddr *sa);

/* ---- Int sets -------------------------------------------------------------
 * `{ 80 443 8000..8999 }`: sorted, merged ranges, binary search. */

struct bw_int_range {
    int64_t lo, hi; /* inclusive; a single value v is {v, v} */
};

struct bw_int_set {
    const struct bw_int_range *r; /* n ranges, ascending, disjoint, not adjacent */
    size_t n;
};

/* Fails on a range with lo > hi (`9..1`), naming it. */
bw_status bw_int_set_build(bw_arena *a, const struct bw_int_range *items, size_t n,
                           struct bw_int_set *ret, bw_error *err) BW_MUST_CHECK;
bool bw_int_set_contains(const struct bw_int_set *s, int64_t v);

/* ---- Bytes sets -----------------------------------------------------------
 * `{"GET" "HEAD"}`: an immutable open-addressing hash table (linear probing,
 * load factor at most 1/2), exact byte comparison (case-sensitive, as the
 * Rules language is). A lookup probes at most max_probe slots: the longest
 * distance any stored element sits from its home slot, plus one, so the cost
 * of a lookup is bounded by the set's build, whatever the value looked up. */

struct bw_bytes_slot {
    uint64_t hash;
    bw_slice key; /* copy in the arena */
    bool used;
};

struct bw_bytes_set {
    const struct bw_bytes_slot *slots; /* mask + 1 slots, a power of two */
    size_t mask;
    size_t count;       /* distinct elements */
    size_t max_probe;   /* slots a lookup examines at most */
    uint64_t hash_mask; /* ~0; the collision tests build with 0 */
    /* Bit l (l < 63) set when some element is l bytes long, bit 63 when one
     * is 63 or longer: most values looked up are rejected by length alone,
     * without hashing them. */
    uint64_t len_bits;
};

/* Duplicates are kept once. Fails on an element over BW_SET_MAX_BYTES_ELEMENT. */
bw_status bw_bytes_set_build(bw_arena *a, const bw_slice *items, size_t n, struct bw_bytes_set *ret,
                             bw_error *err) BW_MUST_CHECK;
bool bw_bytes_set_contains(const struct bw_bytes_set *s, bw_slice v);

/* A mapping of the value before a lookup: what lower() and upper() do to
 * it (ASCII letters only, as the Rules language's functions). */
enum bw_bytes_map {
    BW_BYTES_MAP_NONE,
    BW_BYTES_MAP_LOWER,
    BW_BYTES_MAP_UPPER,
    BW_BYTES_MAP__COUNT
};

/* bw_bytes_set_contains(s, m(v)), without building m(v): `lower(x) in
 * {...}` needs no lowered copy of x. */
bool bw_bytes_set_contains_mapped(const struct bw_bytes_set *s, bw_slice v, enum bw_bytes_map m);

/* Whether some element of s is len bytes long (false: no value of that
 * length is in s, whatever its bytes). Exact below 63, "maybe" from 63 on. */
static inline bool bw_bytes_set_has_len(const struct bw_bytes_set *s, size_t len)
{
    return (s->len_bits >> (len < 63 ? len : 63)) & 1u;
}

/* For tests: the same build with every hash ANDed with hash_mask (0 puts
 * every element in one probe chain). */
bw_status bw__bytes_set_build_masked(bw_arena *a, const bw_slice *items, size_t n,
                                     uint64_t hash_mask, struct bw_bytes_set *ret,
                                     bw_error *err) BW_MUST_CHECK;

#endif
