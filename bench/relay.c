/* relay: the least work a TCP proxy can do per request, for `make bench`'s
 * "relay" target. Each client connection gets its own upstream connection
 * and bytes are copied both ways as they arrive: no parsing, no headers, no
 * pooling, no rules. What it costs per request is the kernel's loopback TCP
 * work (two receives and two sends) plus an epoll wait shared by a batch of
 * events, which every real proxy pays too: on a given host no proxy's CPU
 * per request can go much below it, and the report shows each target
 * against it.
 *
 * Not a proxy anyone should run: sends are blocking (a slow reader stalls
 * everything), errors close the pair, and nothing is bounded but the fd
 * table. It exists to measure the floor.
 *
 * usage: relay LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_FD = 65536, MAX_EVENTS = 256, BUF_SIZE = 65536 };

static int peer_of[MAX_FD]; /* -1: no peer (listener or unused) */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int parse_port(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v > 0 && v < 65536) ? (int)v : -1;
}

static void close_pair(int fd)
{
    int peer = peer_of[fd];
    peer_of[fd] = -1;
    close(fd);
    if (peer >= 0) {
        peer_of[peer] = -1;
        close(peer);
    }
}

/* A blocking send of all of buf: on loopback with the peer reading, this
 * returns at once for the bench's responses. */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int add(int ep, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void accept_one(int ep, int lfd, int upstream_port)
{
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in ua = loopback(upstream_port);
    if (u < 0 || c >= MAX_FD || u >= MAX_FD || connect(u, (struct sockaddr *)&ua, sizeof ua) < 0) {
        if (u >= 0)
            close(u);
        close(c);
        return;
    }
    int one = 1;
    (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_of[c] = u;
    peer_of[u] = c;
    if (add(ep, c) < 0 || add(ep, u) < 0)
        close_pair(c);
}

int main(int argc, char **argv)
{
    int port = argc == 3 ? parse_port(argv[1]) : -1;
    int upstream_port = argc == 3 ? parse_port(argv[2]) : -1;
    if (port < 0 || upstream_port < 0) {
        fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_FD; i++)
        peer_of[i] = -1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in la = loopback(port);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "relay: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || add(ep, lfd) < 0) {
        fprintf(stderr, "relay: epoll: %s\n", strerror(errno));
        return 1;
    }
    fprintf(stderr, "relay: listening on 127.0.0.1:%d, upstream 127.0.0.1:%d\n", port,
            upstream_port);
    static char buf[BUF_SIZE];
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "relay: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                accept_one(ep, lfd, upstream_port);
                continue;
            }
            if (peer_of[fd] < 0)
                continue; /* closed earlier in this batch */
            ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0 || send_all(peer_of[fd], buf, (size_t)got) < 0)
                close_pair(fd);
        }
    }
}
