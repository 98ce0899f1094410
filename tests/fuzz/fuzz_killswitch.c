/* Fuzz target for the killswitch state file parser (a file an operator may
 * edit by hand, read at every start). Beyond "no crash, no out-of-bounds
 * read", it checks what a restart relies on:
 *   - at most BW_MAX_KILLSWITCHES are loaded, none twice, and every one
 *     formats to a target that parses back to itself;
 *   - a skipped line is said (err names the file and a line);
 *   - the parse is the same whatever the text's line ends: CRLF or LF.
 * The text is parsed from an exact-size heap copy so ASan sees a read one
 * byte past what the parser was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modules/killswitch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bw_killswitches ks, again;

static size_t parse_copy(const uint8_t *data, size_t n, struct bw_killswitches *out, bw_error *err)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    if (n)
        memcpy(copy, data, n);
    size_t skipped = 0;
    err->msg[0] = '\0';
    bw_kills_parse(out, bw_slice_make(copy, n), "fuzz", &skipped, err);
    free(copy);
    return skipped;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        size = 64 * 1024;
    bw_error err;
    size_t skipped = parse_copy(data, size, &ks, &err);
    if (ks.n > BW_MAX_KILLSWITCHES)
        abort();
    if (skipped && strncmp(err.msg, "fuzz:", 5) != 0)
        abort();
    char text[BW_KILL_TARGET_MAX + 1];
    for (size_t i = 0; i < ks.n; i++) {
        bw_kill_format(&ks.items[i], text, sizeof text);
        struct bw_kill back;
        bw_error e2;
        if (bw_kill_parse(bw_slice_make(text, strlen(text)), &back, &e2) != BW_OK)
            abort();
        bw_kill_format(&back, text + 0, sizeof text); /* formats the same again */
        char first[BW_KILL_TARGET_MAX + 1];
        bw_kill_format(&ks.items[i], first, sizeof first);
        if (strcmp(first, text) != 0)
            abort();
        for (size_t j = 0; j < i; j++) {
            char other[BW_KILL_TARGET_MAX + 1];
            bw_kill_format(&ks.items[j], other, sizeof other);
            if (strcmp(first, other) == 0)
                abort(); /* a repeated line must be one killswitch */
        }
    }
    /* The same text with every LF as CRLF: the same set, when no line gets
     * too long by it. */
    size_t nl = 0;
    for (size_t i = 0; i < size; i++)
        nl += data[i] == '\n';
    uint8_t *crlf = malloc(size + nl + 1);
    if (!crlf)
        abort();
    size_t w = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n')
            crlf[w++] = '\r';
        crlf[w++] = data[i];
    }
    bool near_limit = false;
    for (size_t i = 0, start = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            near_limit |= i - start >= BW_KILL_LINE_MAX;
            start = i + 1;
        }
    }
    (void)parse_copy(crlf, w, &again, &err);
    free(crlf);
    if (!near_limit) {
        if (again.n != ks.n)
            abort();
        for (size_t i = 0; i < ks.n; i++) {
            char a[BW_KILL_TARGET_MAX + 1], b[BW_KILL_TARGET_MAX + 1];
            bw_kill_format(&ks.items[i], a, sizeof a);
            bw_kill_format(&again.items[i], b, sizeof b);
            if (strcmp(a, b) != 0)
                abort();
        }
    }
    return 0;
}
