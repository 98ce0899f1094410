/* Reading an artifact file (the config, a ruleset, the feature file) whole,
 * bounded, with one sentence for whatever is wrong with the file itself:
 * missing, a symlink to nowhere, a directory, a FIFO or device (refused
 * before opening, so it cannot hang), unreadable, empty, over its limit.
 * The one reader every artifact goes through. */
#ifndef BW_CONFIG_FILE_H
#define BW_CONFIG_FILE_H

#include <stddef.h>

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

#endif
