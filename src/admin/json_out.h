/* JSON string output for the admin API's own documents (error bodies, the
 * killswitch answer). Internal to src/admin/. */
#ifndef BW_ADMIN_JSON_OUT_H
#define BW_ADMIN_JSON_OUT_H

#include "base/error.h"
#include "base/textbuf.h"

/* Appends p[0..n) as a JSON string, quotes included (RFC 8259 §7): '"',
 * '\\' and control characters are escaped; valid UTF-8 is copied; each
 * byte of an invalid UTF-8 sequence becomes U+FFFD, so the output is valid
 * JSON whatever bytes came in (an error sentence may quote client input,
 * and bw_error_set may have cut a character in half). */
bw_status bw__admin_json_string(struct bw_textbuf *out, const char *p, size_t n) BW_MUST_CHECK;

#endif
