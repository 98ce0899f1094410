/* Fuzz target for what bulwark itself parses of TLS material: certificate
 * and key files (bw_tls_ctx_new: PEM, chain order, validity, DNS names into
 * the SNI table) and server names (bw_tls_ctx_select).
 *
 * Input: one flags byte, then a certificate file and a key file separated by
 * the first NUL. Bit 0 of the flags picks the protocols (TLS 1.3 only, or
 * 1.2 and 1.3); when the context loads, the key bytes are also looked up as
 * server names, cut every (flags >> 1) + 1 bytes.
 *
 * Invariants: nothing crashes or leaks; a refusal always says why; an
 * accepted context has 1 certificate with at least one name, and selecting
 * any name gives an index inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        bw_error e;
        if (bw_tls_global_init(3600, &e) != BW_OK)
            abort();
        ready = true;
    }
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(p, '\0', n);
    size_t cert_len = nul ? (size_t)(nul - p) : n;
    bw_slice cert = bw_slice_make(p, cert_len);
    bw_slice rest = nul ? bw_slice_make(nul + 1, n - cert_len - 1) : BW_SLICE_EMPTY;
    struct bw_tls_pem pem = {
        .cert_path = "fuzz.pem", .key_path = "fuzz.key", .cert = cert, .key = rest};
    struct bw_tls_options o = {.protocols = (data[0] & 1) ? BW_TLS_V13 : BW_TLS_V12 | BW_TLS_V13};
    struct bw_tls_ctx *c = NULL;
    size_t failed = 0;
    bw_error err;
    err.msg[0] = '\0';
    /* A fixed "now" inside the seeds' validity, so runs repeat. */
    if (bw_tls_ctx_new(&pem, 1, &o, 1800000000, &c, &failed, &err) != BW_OK) {
        if (err.msg[0] == '\0' || failed != 0)
            abort();
        return 0;
    }
    if (bw_tls_ctx_ncerts(c) != 1)
        abort();
    struct bw_tls_cert_info ci = bw_tls_ctx_cert(c, 0);
    if (!ci.names || !ci.names[0] || ci.not_after <= ci.not_before)
        abort();
    /* Server names: the key bytes, cut in every way the first byte says. */
    size_t step = (size_t)(data[0] >> 1) + 1;
    for (size_t off = 0; off < rest.len; off += step) {
        size_t len = rest.len - off < 300 ? rest.len - off : 300;
        if (bw_tls_ctx_select(c, bw_slice_make(rest.ptr + off, len)) != 0)
            abort();
    }
    bw_tls_ctx_free(c);
    return 0;
}
