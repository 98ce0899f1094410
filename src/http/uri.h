/* Request-target paths as rules see them (DESIGN.md §2): normalised per
 * RFC 3986 §6.2.2 so that one resource has one spelling, and a rule on
 * "/admin" cannot be slipped past with "/a/../admin", "/%61dmin" or
 * "//admin". Pure: no I/O, no allocation. */
#ifndef BW_HTTP_URI_H
#define BW_HTTP_URI_H

#include <stddef.h>

#include "base/slice.h"

/* Normalises path into out (which needs path.len + 1 bytes; with less, or
 * when path does not start with '/', path is returned as it is):
 *   - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
 *     decoded; other percent-encodings are kept, their hex digits uppercased;
 *   - '\' becomes '/' (Cloudflare's normalisation; Windows servers split
 *     paths there too);
 *   - runs of '/' become one;
 *   - "." and ".." segments are removed (RFC 3986 §5.2.4); ".." never climbs
 *     above the root.
 * The result starts with '/' when path does (an empty path gives "/").
 * Returns the normalised slice (pointing into out). */
bw_slice bw_uri_normalize_path(bw_slice path, char *out, size_t cap);

#endif
