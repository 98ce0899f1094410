/* Last-known-good copies (DESIGN.md §1): every artifact of an accepted
 * configuration is copied into state_dir/lkg/ (written to a temporary file,
 * fsynced, renamed), so that at the next start an artifact that no longer
 * validates can be replaced by the last copy that did, loudly. Only at
 * start: a reload never falls back, it is rejected and the running
 * configuration stays. The copy is validated again before it is used. */
#ifndef BW_MODULES_LKG_H
#define BW_MODULES_LKG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "base/slice.h"

#define BW_LKG_DIR "lkg"
/* No artifact may be larger (the largest limit is a ruleset's 8 MiB). */
#define BW_LKG_MAX_BYTES ((size_t)16 * 1024 * 1024)

/* Where the copy of the artifact at `path` lives: state_dir/lkg/<16 hex
 * digits of a hash of path>-<file name>, so that two files of the same name
 * in different directories do not collide. */
bw_status bw_lkg_path(bw_slice state_dir, bw_slice path, char *out, size_t cap) BW_MUST_CHECK;

/* Saves bytes as the last-known-good copy of the artifact at path
 * (creating state_dir/lkg/ if needed). bytes are the ones that were read,
 * parsed and checked (struct bw_file_bytes), never the file read again:
 * it may have been replaced since. */
bw_status bw_lkg_save(bw_slice state_dir, bw_slice path, const char *bytes, size_t len,
                      bw_error *err) BW_MUST_CHECK;

/* Is there a copy for path? */
bool bw_lkg_exists(bw_slice state_dir, bw_slice path);

#endif
