/* Fuzzes the regex wrapper (src/rules/regex.c). Input layout:
 *   byte 0: number of patterns, 1 + b % 4
 *   then per pattern: a length byte (mod 161: at most 160 bytes) and the pattern
 *   the rest: the subject scanned.
 * Building must succeed or fail cleanly (a bad index in range and a message);
 * scanning must never crash, never set a bit past the pattern count, and a
 * pattern must match in the multi-pattern database exactly when it matches
 * in a database of its own (a differential check of vectorscan's engines).
 * The literal prefilter (regex_prefilter.h) must never change an answer:
 * the scan through it gives the same bits as the scan without it; when it
 * answers alone, its bits are the scan's; its SIMD and scalar passes
 * agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/regex.h"
#include "rules/regex_prefilter.h"

enum { MAX_PATS = 4, MAX_PAT_LEN = 160 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    size_t npat = 1 + data[0] % MAX_PATS, at = 1;
    bw_slice pats[MAX_PATS];
    for (size_t i = 0; i < npat; i++) {
        size_t len = at < size ? data[at] % (MAX_PAT_LEN + 1) : 0;
        at = at < size ? at + 1 : at;
        if (len > size - at)
            len = size - at;
        pats[i] = bw_slice_make((const char *)data + at, len);
        at += len;
    }
    /* exact-size copy so ASan sees an overread of the subject */
    size_t slen = size - at;
    char *subject = malloc(slen ? slen : 1);
    memcpy(subject, data + at, slen);
    bw_slice in = bw_slice_make(subject, slen);

    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    bw_regex_db *all;
    size_t bad = 12345;
    bw_error err;
    err.msg[0] = '\0';
    if (bw_regex_db_build(pats, npat, &all, &bad, &err) != BW_OK) {
        if (bad > npat || err.msg[0] == '\0')
            abort();
        if (bad < npat && strncmp(err.msg, "regex \"", 7) != 0)
            abort();
        /* the bad pattern fails alone too, with the same message */
        if (bad < npat) {
            bw_error err1;
            if (bw_regex_check(pats[bad], &err1) == BW_OK || strcmp(err.msg, err1.msg) != 0)
                abort();
        }
        goto out;
    }
    if (bw_regex_db_count(all) != npat)
        abort();
    if (bw_regex_scratch_reserve(&s, all, &err) != BW_OK)
        abort();
    uint64_t bits[2] = {~(uint64_t)0, ~(uint64_t)0};
    if (bw_regex_scan(all, &s, in, bits, 2, &err) != BW_OK)
        abort();
    if (bits[1] != 0 || (bits[0] >> npat) != 0)
        abort();
    uint64_t raw[2] = {0, 0};
    if (bw__regex_scan_unfiltered(all, &s, in, raw, 2, &err) != BW_OK || raw[0] != bits[0])
        abort();
    struct bw_prefilter pf;
    bw_prefilter_build(&pf, pats, npat);
    uint64_t fb[1] = {0}, sb[1] = {0};
    bool scan = bw_prefilter_run(&pf, in, fb);
    if (scan != bw__prefilter_run_scalar(&pf, in, sb) ||
        (!scan && (fb[0] != raw[0] || sb[0] != raw[0])))
        abort();
    for (size_t i = 0; i < npat; i++) {
        bw_regex_db *one;
        if (bw_regex_db_build(&pats[i], 1, &one, &bad, &err) != BW_OK)
            abort(); /* compiled together, so it compiles alone */
        if (bw_regex_scratch_reserve(&s, one, &err) != BW_OK)
            abort();
        uint64_t b1[1];
        if (bw_regex_scan(one, &s, in, b1, 1, &err) != BW_OK)
            abort();
        if (b1[0] != ((bits[0] >> i) & 1u))
            abort();
        bw_regex_db_free(one);
    }
    bw_regex_db_free(all);
out:
    bw_regex_scratch_done(&s);
    free(subject);
    return 0;
}
