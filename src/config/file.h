/* Reading an artifact file (the config, a ruleset, the feature file) whole,
 * bounded, with one sentence for whatever is wrong with the file itself:
 * missing, a symlink to nowhere, a directory, a FIFO or device (refused
 * before opening, so it cannot hang), unreadable, empty, over its limit.
 * The one reader every artifact goes through. */
#ifndef BW_CONFIG_FILE_H
#define BW_CONFIG_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* How one kind of artifact file is named in messages, and its size limit. */
struct bw_file_what {
    const char *noun; /* "the config": "cannot open the config: ..." */
    const char *kind; /* "config file": "is a directory, expected a config file" */
    size_t max_bytes;
};

/* Reads the whole regular file at path into a new malloc'd buffer
 * (*ret_buf, *ret_len > 0; the caller frees it). On failure err holds the
 * sentence. */
bw_status bw_read_file(const char *path, const struct bw_file_what *w, char **ret_buf,
                       size_t *ret_len, char *err, size_t errcap) BW_MUST_CHECK;

/* FNV-1a 64 of an artifact's bytes: its identity for /status and the
 * bulwark_artifact_version metric, not a MAC. */
uint64_t bw_file_hash(const char *buf, size_t len);

/* The bytes of one artifact as bw_read_file returned them, kept from the
 * moment they are parsed until the snapshot built from them has saved them
 * as last-known-good: the copy and the hash /status shows are of the bytes
 * that were checked, never of a file read again later (which may have been
 * replaced in between). hash and len outlive the bytes. */
struct bw_file_bytes {
    char *ptr; /* malloc'd; NULL once released (or when never kept) */
    size_t len;
    uint64_t hash; /* bw_file_hash of the bytes */
};

/* Takes over buf (from bw_read_file) and hashes it. */
struct bw_file_bytes bw_file_bytes_take(char *buf, size_t len);
/* Frees the bytes, keeping len and hash. Accepts a zeroed struct. */
void bw_file_bytes_release(struct bw_file_bytes *b);

/* For tests only: when set, called with the path each time bw_read_file
 * has read a file whole, before it returns. A test replaces the file there
 * to show that nothing downstream reads it again. NULL otherwise. */
extern void (*bw__read_file_hook)(const char *path);

#endif
