/* The rules language's vocabulary: value types, the field table and the
 * function table. Each field declares its type and the phases where it
 * exists (DESIGN.md §2), so a response field in a request-phase rule is
 * refused at load. Pure data and lookups: no I/O, no allocation.
 *
 * What this file does not own: how a field's value is extracted from a
 * request (the evaluator), nor how a function is computed. */
#ifndef BW_RULES_FIELDS_H
#define BW_RULES_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/slice.h"

/* Kinds of values. Scalars are BYTES, INT, BOOL and IP. */
enum bw_rules_kind {
    BW_RULES_T_BYTES, /* a byte string (no encoding assumed) */
    BW_RULES_T_INT,   /* int64 */
    BW_RULES_T_BOOL,  /* true / false (and, at run time, unknown) */
    BW_RULES_T_IP,    /* an IPv4 or IPv6 address */
    BW_RULES_T_ARRAY, /* Array<elem>, elem a scalar kind */
    BW_RULES_T_MAP,   /* Map<Array<elem>>: string keys, each an array of elem */
    BW_RULES_T__COUNT
};

/* A value type. elem is meaningful for ARRAY (the element kind) and MAP (the
 * element kind of each value's array); for scalars it equals kind. */
struct bw_rules_type {
    enum bw_rules_kind kind;
    enum bw_rules_kind elem;
};

/* Evaluation phases. A request-phase expression sees request fields; a
 * response-phase expression sees request and response fields. */
enum bw_rules_phase { BW_RULES_PHASE_REQUEST, BW_RULES_PHASE_RESPONSE, BW_RULES_PHASE__COUNT };

#define BW_RULES_PHASE_BIT(p) (1u << (unsigned)(p))

enum bw_rules_field {
    BW_RULES_F_HTTP_REQUEST_METHOD,
    BW_RULES_F_HTTP_HOST,
    BW_RULES_F_HTTP_REQUEST_URI,
    BW_RULES_F_HTTP_REQUEST_URI_PATH,     /* normalised, RFC 3986 §6.2.2 */
    BW_RULES_F_RAW_HTTP_REQUEST_URI_PATH, /* as received */
    BW_RULES_F_HTTP_REQUEST_URI_QUERY,
    BW_RULES_F_HTTP_USER_AGENT,
    BW_RULES_F_HTTP_REFERER,
    BW_RULES_F_HTTP_COOKIE,          /* repeated headers joined by "; " */
    BW_RULES_F_HTTP_X_FORWARDED_FOR, /* repeated headers joined by ", " */
    BW_RULES_F_HTTP_REQUEST_HEADERS, /* Map<Array<Bytes>>, keys lowercased */
    BW_RULES_F_IP_SRC,
    BW_RULES_F_SSL,
    BW_RULES_F_BOT_SCORE, /* Int 1..99; unknown without a valid model */
    BW_RULES_F_HTTP_RESPONSE_CODE,
    BW_RULES_F_HTTP_RESPONSE_HEADERS,
    BW_RULES_F__COUNT
};

struct bw_rules_field_info {
    const char *name;
    struct bw_rules_type type;
    unsigned phases; /* BW_RULES_PHASE_BIT() of each phase where it exists */
};

enum bw_rules_func {
    BW_RULES_FN_LOWER,       /* lower(Bytes) -> Bytes (ASCII only) */
    BW_RULES_FN_UPPER,       /* upper(Bytes) -> Bytes (ASCII only) */
    BW_RULES_FN_LEN,         /* len(Bytes) -> Int bytes; len(Array<T>) -> Int elements */
    BW_RULES_FN_STARTS_WITH, /* starts_with(Bytes, Bytes) -> Bool */
    BW_RULES_FN_ENDS_WITH,   /* ends_with(Bytes, Bytes) -> Bool */
    BW_RULES_FN_URL_DECODE,  /* url_decode(Bytes) -> Bytes */
    BW_RULES_FN_CONCAT,      /* concat(Bytes, Bytes, ...) -> Bytes, 2..16 args */
    BW_RULES_FN_ANY,         /* any(Array<Bool>) -> Bool */
    BW_RULES_FN_ALL,         /* all(Array<Bool>) -> Bool */
    BW_RULES_FN_HAS,         /* has(field) -> Bool: presence, never unknown */
    BW_RULES_FN__COUNT
};

struct bw_rules_func_info {
    const char *name;
    uint8_t min_args;
    uint8_t max_args;
    const char *signature; /* for messages and docs, e.g. "starts_with(Bytes, Bytes) -> Bool" */
};

const struct bw_rules_field_info *bw_rules_field_info(enum bw_rules_field f);
const struct bw_rules_func_info *bw_rules_func_info(enum bw_rules_func fn);

/* Exact, case-sensitive lookups. */
bw_status bw_rules_field_lookup(bw_slice name, enum bw_rules_field *ret) BW_MUST_CHECK;
bw_status bw_rules_func_lookup(bw_slice name, enum bw_rules_func *ret) BW_MUST_CHECK;

/* The field (or, with funcs, function) name closest to name by edit
 * distance, for "did you mean" hints; BW_ERR when none is close enough. */
bw_status bw_rules_suggest(bw_slice name, bool funcs, const char **ret) BW_MUST_CHECK;

/* "Bytes", "Int", "Array<Bytes>", "Map<Array<Bytes>>": a static string. */
const char *bw_rules_type_name(struct bw_rules_type t);
const char *bw_rules_phase_name(enum bw_rules_phase p);

static inline struct bw_rules_type bw_rules_scalar(enum bw_rules_kind k)
{
    return (struct bw_rules_type){.kind = k, .elem = k};
}

static inline struct bw_rules_type bw_rules_array_of(enum bw_rules_kind k)
{
    return (struct bw_rules_type){.kind = BW_RULES_T_ARRAY, .elem = k};
}

static inline bool bw_rules_type_eq(struct bw_rules_type a, struct bw_rules_type b)
{
    return a.kind == b.kind && a.elem == b.elem;
}

#endif
