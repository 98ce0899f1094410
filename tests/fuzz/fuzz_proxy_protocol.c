/* Fuzz target for the PROXY protocol parser (v1 text, v2 binary). Beyond "no
 * crash, no out-of-bounds read", it checks what the session relies on:
 *   - DONE means the header is len bytes, len <= the input, and those len
 *     bytes alone parse to the same header (it is self-delimiting);
 *   - every strict prefix of a DONE or PARTIAL input is PARTIAL (bytes that
 *     arrive one at a time are never refused or accepted early);
 *   - ERROR always carries a reason; a source is IPv4 or IPv6.
 * Each prefix is parsed from an exact-size heap copy so ASan sees a read one
 * byte past what the parser was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum bw_pp_result parse_copy(const uint8_t *data, size_t n, struct bw_pp_header *h,
                                    const char **why)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    if (n)
        memcpy(copy, data, n);
    *why = NULL;
    enum bw_pp_result r = bw_proxy_protocol_parse(copy, n, h, why);
    free(copy);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Nothing longer than a header and a bit can matter; keep runs fast. */
    if (size > 2 * BW_PROXY_PROTOCOL_MAX_BYTES)
        size = 2 * BW_PROXY_PROTOCOL_MAX_BYTES;
    struct bw_pp_header h;
    const char *why;
    enum bw_pp_result r = parse_copy(data, size, &h, &why);
    size_t check_prefixes = 0;
    switch (r) {
    case BW_PP_DONE: {
        if (h.len == 0 || h.len > size || h.len > BW_PROXY_PROTOCOL_MAX_BYTES)
            abort();
        if (h.has_source && h.source.ss_family != AF_INET && h.source.ss_family != AF_INET6)
            abort();
        struct bw_pp_header again;
        if (parse_copy(data, h.len, &again, &why) != BW_PP_DONE || again.len != h.len ||
            again.has_source != h.has_source ||
            (h.has_source && memcmp(&again.source, &h.source, sizeof h.source) != 0))
            abort();
        check_prefixes = h.len;
        break;
    }
    case BW_PP_PARTIAL:
        check_prefixes = size;
        break;
    case BW_PP_ERROR:
        if (!why || !why[0])
            abort();
        break;
    }
    for (size_t n = 0; n < check_prefixes; n++) {
        struct bw_pp_header p;
        if (parse_copy(data, n, &p, &why) != BW_PP_PARTIAL)
            abort();
    }
    return 0;
}
