/* The admin bearer token: loading it from its file and checking a request's
 * Authorization field against it in constant time. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"

void bw_admin_init(struct bw_admin *a, const struct bw_admin_ops *ops)
{
    memset(a, 0, sizeof *a);
    a->ops = *ops;
}

static bool token_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

bw_status bw_admin_set_token(struct bw_admin *a, bw_slice token, bw_error *err)
{
    if (token.len == 0)
        return bw_error_set(err, "the admin token is empty");
    if (token.len > BW_ADMIN_TOKEN_MAX)
        return bw_error_set(err, "the admin token is longer than %d bytes", BW_ADMIN_TOKEN_MAX);
    for (size_t i = 0; i < token.len; i++)
        if (!token_char((unsigned char)token.ptr[i]))
            return bw_error_set(err,
                                "the admin token has a byte outside visible ASCII at offset %zu "
                                "(spaces and control characters cannot be sent in a header)",
                                i);
    memset(a->token, 0, sizeof a->token);
    memcpy(a->token, token.ptr, token.len);
    a->token_len = token.len;
    a->has_token = true;
    return BW_OK;
}

bw_status bw_admin_load_token(struct bw_admin *a, const char *path, bw_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return bw_error_set(err, "admin token file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return bw_error_set(err, "admin token file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bw_error_set(err, "admin token file %s: not a regular file", path);
    }
    /* A secret: nobody but its owner (and a group that may read it, for
     * deployments that hand secrets to a service group) may see it, and
     * only its owner may change it. */
    if (st.st_mode & 027) {
        close(fd);
        return bw_error_set(err,
                            "admin token file %s: mode %03o lets others read or change it; "
                            "chmod 600 it",
                            path, (unsigned)(st.st_mode & 0777));
    }
    /* The token, a CRLF, and one byte more to tell "too long" apart. */
    char buf[BW_ADMIN_TOKEN_MAX + 3];
    size_t len = 0;
    while (len < sizeof buf) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return bw_error_set(err, "admin token file %s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    bw_status st_set = bw_admin_set_token(a, bw_slice_make(buf, len), err);
    memset(buf, 0, sizeof buf);
    if (st_set != BW_OK) {
        bw_error inner = *err;
        return bw_error_set(err, "admin token file %s: %s", path, inner.msg);
    }
    return BW_OK;
}

/* Reads all BW_ADMIN_TOKEN_MAX bytes whatever the lengths, and never exits
 * early: its time depends only on nothing secret (the presented length
 * decides only which bytes are read as zero). */
static bool token_equal(const struct bw_admin *a, bw_slice given)
{
    volatile unsigned char diff = (unsigned char)(given.len != a->token_len);
    for (size_t i = 0; i < BW_ADMIN_TOKEN_MAX; i++) {
        unsigned char g = i < given.len ? (unsigned char)given.ptr[i] : 0;
        diff |= (unsigned char)(g ^ a->token[i]);
    }
    return diff == 0;
}

bool bw_admin_authorized(const struct bw_admin *a, bw_slice authorization)
{
    if (!a->has_token)
        return true;
    /* credentials = auth-scheme 1*SP token68 (RFC 9110 §11.4, RFC 6750 §2.1) */
    static const char scheme[] = "bearer";
    size_t n = sizeof scheme - 1;
    if (authorization.len <= n ||
        !bw_slice_eq_nocase(bw_slice_sub(authorization, 0, n), bw_slice_make(scheme, n)) ||
        authorization.ptr[n] != ' ')
        return false; /* the scheme is no secret: no need for constant time */
    size_t i = n;
    while (i < authorization.len && authorization.ptr[i] == ' ')
        i++;
    return token_equal(a, bw_slice_sub(authorization, i, authorization.len - i));
}
