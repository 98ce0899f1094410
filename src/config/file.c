/* Reading one artifact file (the main config, a ruleset) into memory, with
 * one sentence for every way that can fail before the text is even looked
 * at: missing, a symlink to nowhere, a directory, a FIFO or other special
 * file, unreadable, over its size limit, empty. What the text holds
 * (encoding, NUL bytes, YAML syntax) is yaml_tree.c's business.
 *
 * The file is opened once and read through that descriptor: a file replaced
 * by rename while it is read is read whole, as it was when opened. A file
 * that grows while it is read is cut one byte past the limit and refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/file.h"
#include "config/internal.h"

void (*bw__read_file_hook)(const char *path);

BW_PRINTF(3, 4)
static bw_status fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return BW_ERR;
}

/* What a non-regular file is, for "is a FIFO, expected a regular file". */
static const char *file_type_name(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO (named pipe)";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    return "not a regular file";
}

static bw_status special_file(mode_t m, const struct bw_file_what *w, char *err, size_t cap)
{
    if (S_ISDIR(m))
        return fail(err, cap, "is a directory, expected a %s", w->kind);
    return fail(err, cap, "is %s, expected a regular file", file_type_name(m));
}

/* open() failed with e: say why, in the operator's terms. */
static bw_status open_failed(const char *path, int e, const struct bw_file_what *w, char *err,
                             size_t cap)
{
    struct stat lst;
    if (e == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        char target[256];
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            return fail(err, cap, "is a symlink to a file that does not exist");
        target[n] = '\0';
        return fail(err, cap, "is a symlink to \"%.200s\"%s, which does not exist", target,
                    (size_t)n == sizeof target - 1 ? "..." : "");
    }
    if (e == ELOOP)
        return fail(err, cap, "cannot open %s: a loop of symlinks", w->noun);
    if (e == EACCES)
        return fail(err, cap, "cannot open %s: Permission denied (bulwark runs as uid %u)", w->noun,
                    (unsigned)geteuid());
    return fail(err, cap, "cannot open %s: %s", w->noun, strerror(e));
}

bw_status bw_read_file(const char *path, const struct bw_file_what *w, char **ret_buf,
                       size_t *ret_len, char *err, size_t errcap)
{
    /* Special files are refused before they are opened: opening a FIFO or a
     * device can block or have side effects. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return special_file(st.st_mode, w, err, errcap);
    /* O_NONBLOCK: a FIFO swapped in since the stat must not hang the open;
     * it is refused by the fstat below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return open_failed(path, errno, w, err, errcap);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, errcap, "cannot read %s: %s", w->noun, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return special_file(st.st_mode, w, err, errcap);
    }
    if ((uint64_t)st.st_size > w->max_bytes) {
        close(fd);
        return fail(err, errcap, "%s is %lld bytes, over the limit of %zu bytes", w->noun,
                    (long long)st.st_size, w->max_bytes);
    }
    /* Read at most one byte past the limit: the file may grow after fstat. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return fail(err, errcap, "out of memory reading %s", w->noun);
    }
    for (;;) {
        if (len == cap) {
            if (cap > w->max_bytes)
                break;
            size_t ncap = cap * 2 > w->max_bytes + 1 ? w->max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                return fail(err, errcap, "out of memory reading %s", w->noun);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return fail(err, errcap, "cannot read %s: %s", w->noun, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return fail(err, errcap, "the %s is empty", w->kind);
    }
    if (len > w->max_bytes) {
        free(buf);
        return fail(err, errcap, "%s grew past the limit of %zu bytes while it was read", w->noun,
                    w->max_bytes);
    }
    if (bw__read_file_hook)
        bw__read_file_hook(path);
    *ret_buf = buf;
    *ret_len = len;
    return BW_OK;
}

uint64_t bw_file_hash(const char *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
    return h;
}

struct bw_file_bytes bw_file_bytes_take(char *buf, size_t len)
{
    return (struct bw_file_bytes){.ptr = buf, .len = len, .hash = bw_file_hash(buf, len)};
}

void bw_file_bytes_release(struct bw_file_bytes *b)
{
    free(b->ptr);
    b->ptr = NULL;
}

/* Whether the text from byte off to the end is one token cut off at the end
 * of the file ("header_by", "ap"): nothing after it (a closing "}]", a
 * quote, a value after "key: ") that shows the line was written whole. */
static bool runs_to_the_end(const char *text, size_t off, size_t len)
{
    for (size_t i = off; i < len; i++)
        if (strchr(" \t,[]{}#\"'", text[i]))
            return false;
    return true;
}

bool bw__truncation_hint(const char *text, size_t len, const struct bw_config_diags *d,
                         uint32_t *ret_line, uint32_t *ret_col, size_t *ret_which)
{
    if (len == 0 || text[len - 1] == '\n')
        return false;
    uint32_t line = 1, col = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            line++;
            col = 1;
            line_start = i + 1;
        } else if ((c & 0xC0) != 0x80) {
            col++;
        }
    }
    /* Not on top of a message that already says what is wrong with the
     * text as a whole. */
    static const char *const whole[] = {"truncated", "not valid UTF-8", "contains ", "the file "};
    for (size_t i = 0; i < d->n; i++)
        for (size_t k = 0; k < sizeof whole / sizeof whole[0]; k++)
            if (strncmp(d->items[i].msg, whole[k], strlen(whole[k])) == 0)
                return false;
    /* Only an error at the very end of the file can be explained by a cut:
     * one earlier on the last line ("routes: [{upstream: ap}]", the line is
     * whole), or elsewhere, cannot. */
    for (size_t i = 0; i < d->n; i++) {
        const struct bw_config_diag *g = &d->items[i];
        if (g->line != line || g->col == 0)
            continue;
        size_t off = line_start;
        for (uint32_t c = 1; off < len && c < g->col; c++) {
            off++;
            while (off < len && ((unsigned char)text[off] & 0xC0) == 0x80)
                off++;
        }
        if (!runs_to_the_end(text, off, len))
            continue;
        *ret_line = line;
        *ret_col = col;
        *ret_which = i;
        return true;
    }
    return false;
}

void bw__truncation_note(struct bw_config_diags *d, uint32_t line, uint32_t col, size_t which)
{
    if (d->n >= BW_CONFIG_MAX_DIAGS)
        return;
    const struct bw_config_diag *e = &d->items[which];
    struct bw_config_diag *g = &d->items[d->n++];
    g->line = line;
    g->col = col;
    snprintf(g->msg, sizeof g->msg,
             "the file ends here, in the middle of a line: was it truncated? (that would explain "
             "the error at %u:%u)",
             e->line, e->col);
}
