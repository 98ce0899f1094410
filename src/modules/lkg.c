/* Last-known-good copies (lkg.h). */
#include "modules/lkg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bw_status bw_lkg_path(bw_slice state_dir, bw_slice path, char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < path.len; i++)
        h = (h ^ (unsigned char)path.ptr[i]) * 0x100000001b3ull;
    size_t cut = path.len;
    while (cut > 0 && path.ptr[cut - 1] != '/')
        cut--;
    int n = snprintf(out, cap, "%.*s/" BW_LKG_DIR "/%016llx-%.*s", (int)state_dir.len,
                     state_dir.ptr, (unsigned long long)h, (int)(path.len - cut), path.ptr + cut);
    return n > 0 && (size_t)n < cap ? BW_OK : BW_ERR;
}

bool bw_lkg_exists(bw_slice state_dir, bw_slice path)
{
    char p[4400];
    struct stat st;
    return bw_lkg_path(state_dir, path, p, sizeof p) == BW_OK && stat(p, &st) == 0 &&
           S_ISREG(st.st_mode);
}

bw_status bw_lkg_save(bw_slice state_dir, bw_slice path, const char *bytes, size_t len,
                      bw_error *err)
{
    char dir[4200], dst[4400], tmp[4420];
    snprintf(dir, sizeof dir, "%.*s/" BW_LKG_DIR, (int)state_dir.len, state_dir.ptr);
    if (bw_lkg_path(state_dir, path, dst, sizeof dst) != BW_OK)
        return bw_error_set(err, "state_dir path too long");
    if (len > BW_LKG_MAX_BYTES)
        return bw_error_set(err, "cannot save the last-known-good copy of %.*s: %zu bytes",
                            (int)path.len, path.ptr, len);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return bw_error_set(err, "cannot create %s: %s", dir, strerror(errno));
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        return bw_error_set(err, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = true;
    int e = 0;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(out, bytes + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ok = false;
            e = n < 0 ? errno : EIO;
            break;
        }
        off += (size_t)n;
    }
    if (ok && fsync(out) != 0) {
        ok = false;
        e = errno;
    }
    close(out);
    if (ok && rename(tmp, dst) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        return bw_error_set(err, "cannot save the last-known-good copy of %.*s: %s", (int)path.len,
                            path.ptr, strerror(e));
    }
    /* The rename is durable once the directory is. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return BW_OK;
}
