#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void bw_sockaddr_format(struct bw_sockaddr *a)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(a->text, sizeof a->text, "%s:%u", ip, port);
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(a->text, sizeof a->text, "[%s]:%u", ip, port);
    }
}

bw_status bw_listener_probe(const struct bw_sockaddr *addr, bw_error *err)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&addr->ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr->ss;
    if ((addr->ss.ss_family == AF_INET && in->sin_port == 0) ||
        (addr->ss.ss_family == AF_INET6 && in6->sin6_port == 0))
        return BW_OK;
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bw_error_set(err, "listen %s: socket: %s", addr->text, strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)&addr->ss, addr->len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return BW_OK;
    if (e == EADDRINUSE)
        return bw_error_set(err,
                            "listen %s: address already in use by another process (another "
                            "bulwark? stop it, or start this one with --takeover to replace it "
                            "without downtime)",
                            addr->text);
    return bw_error_set(err, "listen %s: bind: %s", addr->text, strerror(e));
}

bw_status bw_listener_open(const struct bw_sockaddr *addr, int *ret_fd,
                           struct bw_sockaddr *ret_bound, bw_error *err)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bw_error_set(err, "listen %s: socket: %s", addr->text, strerror(errno));
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        bw_error_set(err, "listen %s: setsockopt: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    if (addr->ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        bw_error_set(err, "listen %s: bind: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    if (listen(fd, BW_LISTEN_BACKLOG) != 0) {
        bw_error_set(err, "listen %s: listen: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    memset(ret_bound, 0, sizeof *ret_bound);
    ret_bound->len = sizeof ret_bound->ss;
    if (getsockname(fd, (struct sockaddr *)&ret_bound->ss, &ret_bound->len) != 0) {
        bw_error_set(err, "listen %s: getsockname: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    bw_sockaddr_format(ret_bound);
    *ret_fd = fd;
    return BW_OK;
}
