/* Connected sockets through the loop (src/net/ring.c): the same behaviour
 * in both engines, io_uring and epoll. Each test runs once per engine
 * (io_uring only where this kernel allows it; the run says when it does
 * not). Sockets are socketpairs or loopback TCP pairs; the loop runs until a
 * callback stops it, with a 10 s timer as a guard against a hang (a stop by
 * the guard fails the test; nothing is timed). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/loop.h"
#include "test.h"

static bool ring_mode;

struct conn {
    struct bw_io io; /* first: callbacks get &conn->io */
    uint32_t events; /* every event bit seen */
    int nevents;
    char got[8192];
    size_t ngot;
    bool eof;
    int err;
    bool read_on_event;
    int id;
};

static bool guard_fired;
static void guard_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    guard_fired = true;
    loop->stop = true;
}

static void stop_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    loop->stop = true;
}

/* Runs the loop for a moment: in ring mode a closed socket goes away only
 * once the loop has submitted, and completed, the cancel of its read. */
static void settle(struct bw_loop *loop)
{
    struct bw_timer t;
    bw_timer_init(&t, stop_cb);
    if (bw_timer_set(loop, &t, 5) != BW_OK)
        return;
    loop->stop = false;
    bw_loop_run(loop);
    bw_timer_cancel(loop, &t);
}

static bool setup(struct bw_loop *loop, struct bw_timer *guard)
{
    bw_error err;
    if (bw_loop_init(loop, &err) != BW_OK)
        return false;
    if (ring_mode && bw_loop_ring_init(loop, &err) != BW_OK) {
        printf("     ring init: %s\n", err.msg);
        bw_loop_done(loop);
        return false;
    }
    guard_fired = false;
    bw_timer_init(guard, guard_cb);
    return bw_timer_set(loop, guard, 10000) == BW_OK;
}

static void teardown(struct bw_loop *loop, struct bw_timer *guard)
{
    bw_timer_cancel(loop, guard);
    bw_loop_run_deferred(loop);
    bw_loop_done(loop);
}

static void nonblock(int fd)
{
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static bool pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    nonblock(sv[0]);
    return true;
}

/* Reads what is there into c; notes EOF and errors. */
static void drain(struct bw_loop *loop, struct conn *c)
{
    for (;;) {
        if (c->ngot == sizeof c->got)
            return;
        ssize_t n = bw_io_recv(loop, &c->io, c->got + c->ngot, sizeof c->got - c->ngot);
        if (n > 0) {
            c->ngot += (size_t)n;
            continue;
        }
        if (n == 0)
            c->eof = true;
        else if (errno != EAGAIN)
            c->err = errno;
        return;
    }
}

static void record_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    struct conn *c = (struct conn *)io;
    c->events |= ev;
    c->nevents++;
    if (c->read_on_event && (ev & EPOLLIN))
        drain(loop, c);
}

/* Stops the loop once the connection has seen want bytes (or EOF/error). */
static size_t stop_at_bytes;
static void stop_when_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    record_cb(loop, io, ev);
    struct conn *c = (struct conn *)io;
    if (c->ngot >= stop_at_bytes || c->eof || c->err)
        loop->stop = true;
}

static void conn_init(struct conn *c, int fd, bw_io_cb cb)
{
    memset(c, 0, sizeof *c);
    c->io.fd = fd;
    c->io.cb = cb;
    c->read_on_event = true;
}

/* Blocking read of exactly n bytes from fd, at most 5 s per wait. */
static bool read_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            return false;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static bool peer_sees_eof(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return false;
    char c;
    return read(fd, &c, 1) == 0;
}

/* A socketpair whose first end is attached to a fresh loop as c. */
static bool start_pair(struct bw_loop *loop, struct bw_timer *guard, int sv[2], struct conn *c,
                       bw_io_cb cb)
{
    bw_error err;
    if (!pair(sv) || !setup(loop, guard))
        return false;
    conn_init(c, sv[0], cb);
    return bw_loop_attach(loop, &c->io, false, &err) == BW_OK;
}

TEST(recv_then_send_both_ways)
{
    struct bw_loop loop;
    struct bw_timer guard;
    int sv[2];
    struct conn c;
    CHECK(start_pair(&loop, &guard, sv, &c, stop_when_cb));
    stop_at_bytes = 4;
    CHECK(c.io.ring == ring_mode);
    CHECK(write(sv[1], "ping", 4) == 4);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK_INT_EQ(c.ngot, 4);
    CHECK(memcmp(c.got, "ping", 4) == 0);
    CHECK(c.events & EPOLLIN);
    /* Two pieces, as a head and a body go out. */
    struct iovec iov[2] = {{(void *)"po", 2}, {(void *)"ng!", 3}};
    CHECK_INT_EQ(bw_io_sendv(&loop, &c.io, iov, 2), 5);
    loop.stop = false;
    stop_at_bytes = 8;
    CHECK(write(sv[1], "more", 4) == 4);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK(memcmp(c.got, "pingmore", 8) == 0);
    char out[5];
    CHECK(read_exact(sv[1], out, 5));
    CHECK(memcmp(out, "pong!", 5) == 0);
    bw_io_close(&loop, &c.io);
    CHECK_INT_EQ(c.io.fd, -1);
    settle(&loop);
    CHECK(peer_sees_eof(sv[1]));
    close(sv[1]);
    teardown(&loop, &guard);
}

TEST(eof_after_data)
{
    struct bw_loop loop;
    struct bw_timer guard;
    int sv[2];
    struct conn c;
    CHECK(start_pair(&loop, &guard, sv, &c, stop_when_cb));
    stop_at_bytes = SIZE_MAX; /* until EOF */
    CHECK(write(sv[1], "last words", 10) == 10);
    CHECK(shutdown(sv[1], SHUT_WR) == 0);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK_INT_EQ(c.ngot, 10);
    CHECK(c.eof);
    CHECK_INT_EQ(c.err, 0);
    CHECK(c.events & (EPOLLRDHUP | EPOLLIN));
    /* EOF stays EOF. */
    char b;
    CHECK_INT_EQ(bw_io_recv(&loop, &c.io, &b, 1), 0);
    bw_io_close(&loop, &c.io);
    close(sv[1]);
    teardown(&loop, &guard);
}

/* Input the owner does not read when told stays readable later, and
 * connections that leave theirs unread do not starve the others of the
 * shared receive buffers (more connections here than buffers). */
enum { MANY = 300 };
static struct conn many[MANY];
static int many_peer[MANY];
static int many_seen;
static void count_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    struct conn *c = (struct conn *)io;
    if ((ev & EPOLLIN) && c->nevents++ == 0 && ++many_seen == MANY)
        loop->stop = true;
}

TEST(unread_input_is_kept_and_starves_no_one)
{
    struct bw_loop loop;
    struct bw_timer guard;
    CHECK(setup(&loop, &guard));
    bw_error err;
    many_seen = 0;
    int opened = 0;
    for (int i = 0; i < MANY; i++) {
        int sv[2];
        if (!pair(sv))
            break;
        conn_init(&many[i], sv[0], count_cb);
        many[i].read_on_event = false;
        many[i].id = i;
        many_peer[i] = sv[1];
        opened++;
        CHECK(bw_loop_attach(&loop, &many[i].io, false, &err) == BW_OK);
        char msg[64];
        int len = snprintf(msg, sizeof msg, "message %d", i);
        CHECK(write(sv[1], msg, (size_t)len) == len);
    }
    CHECK_INT_EQ(opened, MANY);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK_INT_EQ(many_seen, MANY);
    for (int i = 0; i < MANY; i++) {
        char want[64];
        int len = snprintf(want, sizeof want, "message %d", i);
        drain(&loop, &many[i]);
        CHECK_INT_EQ(many[i].ngot, len);
        CHECK(memcmp(many[i].got, want, (size_t)len) == 0);
    }
    for (int i = 0; i < MANY; i++) {
        bw_io_close(&loop, &many[i].io);
        close(many_peer[i]);
    }
    loop.stop = true;
    bw_loop_run(&loop);
    teardown(&loop, &guard);
}

/* An owner that stops reading stops the reading: the sender's socket fills
 * up and the sender is told to wait, instead of the loop buffering without
 * bound; once the owner reads again every byte arrives, once and in order.
 * (The ring's receive stays armed between reads: this is what pauses it.) */
enum { PUSH_CAP = 32 << 20, PUSH_HELD_MAX = 1 << 20 };
static uint8_t push_byte(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

TEST(an_owner_that_stops_reading_pushes_back)
{
    struct bw_loop loop;
    struct bw_timer guard;
    int sv[2];
    struct conn c;
    CHECK(start_pair(&loop, &guard, sv, &c, record_cb));
    c.read_on_event = false;
    nonblock(sv[1]);
    static uint8_t chunk[65536];
    size_t written = 0;
    bool blocked = false;
    while (!blocked && written < PUSH_CAP) {
        for (size_t k = 0; k < sizeof chunk; k++)
            chunk[k] = push_byte(written + k);
        ssize_t w = write(sv[1], chunk, sizeof chunk);
        if (w < 0 && errno == EAGAIN) {
            settle(&loop); /* the loop's chance to read: it must not */
            w = write(sv[1], chunk, sizeof chunk);
            blocked = w < 0 && errno == EAGAIN;
        }
        if (w > 0)
            written += (size_t)w;
        else if (!blocked)
            break;
    }
    CHECK(blocked);
    CHECK(c.events & EPOLLIN);
    /* What the loop took off the socket and holds: what one receive round
     * drained before the pause took effect, not all the sender had. */
    int queued = 0;
    CHECK(ioctl(sv[0], SIOCINQ, &queued) == 0);
    CHECK(written - (size_t)queued <= PUSH_HELD_MAX);
    size_t got = 0;
    bool in_order = true;
    for (int rounds = 0; got < written && rounds < 20000; rounds++) {
        ssize_t n = bw_io_recv(&loop, &c.io, chunk, sizeof chunk);
        if (n > 0) {
            for (ssize_t k = 0; k < n; k++)
                in_order &= chunk[k] == push_byte(got + (size_t)k);
            got += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN)
            break;
        settle(&loop);
    }
    CHECK_INT_EQ(got, written);
    CHECK(in_order);
    bw_io_close(&loop, &c.io);
    close(sv[1]);
    settle(&loop);
    teardown(&loop, &guard);
}

/* Writes 3 MiB in pieces of both kinds (copied ones up to the copy limit,
 * direct ones above it) into a peer that reads slowly: every byte arrives
 * once and in order, and "would block" is always followed by EPOLLOUT. */
enum { BIG = 3 << 20 };
static char *big_src;
static size_t big_sent, big_got;
static int big_peer;
static bool big_bad;
static char *big_dst;
static struct bw_timer reader;

static void big_write(struct bw_loop *loop, struct conn *c)
{
    static const size_t pieces[] = {700, BW_RING_COPY_MAX, BW_RING_COPY_MAX + 1, 65536, 5};
    for (size_t k = 0; big_sent < BIG; k++) {
        size_t want = pieces[k % 5];
        if (want > BIG - big_sent)
            want = BIG - big_sent;
        struct iovec iov[2] = {{big_src + big_sent, want / 2},
                               {big_src + big_sent + want / 2, want - want / 2}};
        ssize_t w = bw_io_sendv(loop, &c->io, iov, 2);
        if (w < 0) {
            if (errno != EAGAIN)
                big_bad = true;
            return;
        }
        big_sent += (size_t)w;
        if ((size_t)w < want)
            return;
    }
}

static void big_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    if (ev & EPOLLOUT)
        big_write(loop, (struct conn *)io);
}

static void reader_cb(struct bw_loop *loop, struct bw_timer *t)
{
    ssize_t r = read(big_peer, big_dst + big_got, 100000);
    if (r > 0)
        big_got += (size_t)r;
    if (big_got == BIG) {
        loop->stop = true;
        return;
    }
    if (bw_timer_set(loop, t, 1) != BW_OK)
        big_bad = true;
}

TEST(big_writes_with_back_pressure)
{
    struct bw_loop loop;
    struct bw_timer guard;
    int sv[2];
    CHECK(pair(sv));
    nonblock(sv[1]);
    int small = 16384;
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    CHECK(setup(&loop, &guard));
    big_src = malloc(BIG);
    big_dst = malloc(BIG);
    CHECK(big_src && big_dst);
    for (size_t i = 0; i < BIG; i++)
        big_src[i] = (char)(i * 7 + i / 251);
    big_sent = big_got = 0;
    big_bad = false;
    big_peer = sv[1];
    struct conn c;
    conn_init(&c, sv[0], big_cb);
    bw_error err;
    CHECK(bw_loop_attach(&loop, &c.io, false, &err) == BW_OK);
    big_write(&loop, &c);
    bw_timer_init(&reader, reader_cb);
    CHECK(bw_timer_set(&loop, &reader, 1) == BW_OK);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK(!big_bad);
    CHECK_INT_EQ(big_sent, BIG);
    CHECK_INT_EQ(big_got, BIG);
    CHECK(memcmp(big_src, big_dst, BIG) == 0);
    bw_timer_cancel(&loop, &reader);
    bw_io_close(&loop, &c.io);
    close(sv[1]);
    free(big_src);
    free(big_dst);
    teardown(&loop, &guard);
}

static void stop_on_out_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    record_cb(loop, io, ev);
    if (ev & EPOLLOUT)
        loop->stop = true;
}

/* What was written before a shutdown or a close still arrives, then EOF. */
TEST(shutdown_and_close_deliver_what_was_written)
{
    struct bw_loop loop;
    struct bw_timer guard;
    int a[2], b[2];
    CHECK(pair(a));
    CHECK(pair(b));
    CHECK(setup(&loop, &guard));
    struct conn ca, cb;
    conn_init(&ca, a[0], stop_on_out_cb);
    conn_init(&cb, b[0], record_cb);
    bw_error err;
    CHECK(bw_loop_attach(&loop, &ca.io, false, &err) == BW_OK);
    CHECK(bw_loop_attach(&loop, &cb.io, false, &err) == BW_OK);
    static char payload[12000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)('a' + i % 26);
    struct iovec iov = {payload, sizeof payload};
    CHECK_INT_EQ(bw_io_sendv(&loop, &ca.io, &iov, 1), sizeof payload);
    CHECK_INT_EQ(bw_io_shutdown_wr(&loop, &ca.io), 0);
    CHECK_INT_EQ(bw_io_sendv(&loop, &cb.io, &iov, 1), sizeof payload);
    bw_io_close(&loop, &cb.io);
    /* Until the write to a completed (EPOLLOUT; epoll: its first edge). */
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    static char got[sizeof payload];
    CHECK(read_exact(a[1], got, sizeof got));
    CHECK(memcmp(got, payload, sizeof got) == 0);
    CHECK(peer_sees_eof(a[1]));
    memset(got, 0, sizeof got);
    CHECK(read_exact(b[1], got, sizeof got));
    CHECK(memcmp(got, payload, sizeof got) == 0);
    CHECK(peer_sees_eof(b[1]));
    /* The shut socket still reads. */
    CHECK(write(a[1], "after", 5) == 5);
    ca.read_on_event = true;
    ca.io.cb = stop_when_cb;
    stop_at_bytes = 5;
    loop.stop = false;
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK_INT_EQ(ca.ngot, 5);
    bw_io_close(&loop, &ca.io);
    close(a[1]);
    close(b[1]);
    teardown(&loop, &guard);
}

static int tcp_listener(struct sockaddr_in *addr)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *addr;
    if (l < 0 || bind(l, (struct sockaddr *)addr, sizeof *addr) != 0 || listen(l, 8) != 0 ||
        getsockname(l, (struct sockaddr *)addr, &len) != 0)
        return -1;
    return l;
}

/* A reset by the peer is an error event, and reads and writes say why. */
TEST(reset_by_peer)
{
    struct bw_loop loop;
    struct bw_timer guard;
    struct sockaddr_in addr;
    int l = tcp_listener(&addr);
    CHECK(l >= 0);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(connect(cfd, (struct sockaddr *)&addr, sizeof addr) == 0);
    int sfd = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(sfd >= 0);
    CHECK(setup(&loop, &guard));
    struct conn c;
    conn_init(&c, sfd, stop_when_cb);
    stop_at_bytes = SIZE_MAX;
    bw_error err;
    CHECK(bw_loop_attach(&loop, &c.io, false, &err) == BW_OK);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(cfd); /* RST */
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK(c.events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP));
    CHECK(c.err == ECONNRESET || c.eof);
    struct iovec iov = {(void *)"x", 1};
    ssize_t w = bw_io_sendv(&loop, &c.io, &iov, 1);
    /* A write into a reset connection fails, at once or at the next call. */
    if (w == 1) {
        loop.stop = true;
        bw_loop_run(&loop);
        w = bw_io_sendv(&loop, &c.io, &iov, 1);
        if (w == 1) {
            loop.stop = true;
            bw_loop_run(&loop);
            w = bw_io_sendv(&loop, &c.io, &iov, 1);
        }
    }
    CHECK(w < 0 && (errno == EPIPE || errno == ECONNRESET));
    bw_io_close(&loop, &c.io);
    close(l);
    teardown(&loop, &guard);
}

/* connect: EPOLLOUT when it is up; refused: an error event and the reason
 * on the first write. */
TEST(connect_up_and_refused)
{
    struct bw_loop loop;
    struct bw_timer guard;
    struct sockaddr_in addr;
    int l = tcp_listener(&addr);
    CHECK(l >= 0);
    CHECK(setup(&loop, &guard));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    CHECK(rc == 0 || errno == EINPROGRESS);
    struct conn c;
    conn_init(&c, fd, stop_when_cb);
    stop_at_bytes = 3;
    bw_error err;
    CHECK(bw_loop_attach(&loop, &c.io, rc != 0, &err) == BW_OK);
    int sfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(sfd >= 0);
    CHECK(write(sfd, "hey", 3) == 3);
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK(c.events & EPOLLOUT);
    CHECK(!(c.events & EPOLLERR));
    CHECK_INT_EQ(c.ngot, 3);
    struct iovec iov = {(void *)"yo", 2};
    CHECK_INT_EQ(bw_io_sendv(&loop, &c.io, &iov, 1), 2);
    loop.stop = true;
    bw_loop_run(&loop);
    char out[2];
    CHECK(read_exact(sfd, out, 2));
    bw_io_close(&loop, &c.io);
    close(sfd);
    close(l); /* nothing listens there now */

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc != 0 && errno != EINPROGRESS) {
        /* Refused at once: nothing for the loop to report. */
        CHECK(errno == ECONNREFUSED);
        close(fd);
    } else {
        struct conn d;
        conn_init(&d, fd, stop_when_cb);
        d.read_on_event = false;
        stop_at_bytes = 0;
        CHECK(bw_loop_attach(&loop, &d.io, true, &err) == BW_OK);
        loop.stop = false;
        bw_loop_run(&loop);
        CHECK(!guard_fired);
        CHECK(d.events & EPOLLERR);
        ssize_t w = bw_io_sendv(&loop, &d.io, &iov, 1);
        CHECK(w < 0 && errno == ECONNREFUSED);
        bw_io_close(&loop, &d.io);
    }
    teardown(&loop, &guard);
}

/* Fds that stay on epoll (listeners, eventfds) still get their events when
 * the ring drives the loop, and a level-triggered one left ready (a
 * listener with more connections than one batch accepts) is reported again
 * without a new edge. */
static int level_calls;
static void level_cb(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    (void)ev;
    /* Takes one unit per event, as accept takes one batch: stays ready. */
    uint64_t v;
    if (read(io->fd, &v, sizeof v) == sizeof v)
        level_calls++;
    if (level_calls == 5)
        loop->stop = true;
}

TEST(level_triggered_epoll_fds_behind_the_ring)
{
    struct bw_loop loop;
    struct bw_timer guard;
    CHECK(setup(&loop, &guard));
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | EFD_SEMAPHORE);
    CHECK(efd >= 0);
    struct bw_io io = {.fd = efd, .cb = level_cb};
    bw_error err;
    CHECK(bw_loop_add_level_in(&loop, &io, &err) == BW_OK);
    uint64_t five = 5;
    CHECK(write(efd, &five, sizeof five) == sizeof five);
    level_calls = 0;
    bw_loop_run(&loop);
    CHECK(!guard_fired);
    CHECK_INT_EQ(level_calls, 5);
    close(efd);
    teardown(&loop, &guard);
}

int main(void)
{
    for (int mode = 0; mode < 2; mode++) {
        ring_mode = mode == 1;
        if (ring_mode) {
            bw_error err;
            if (!bw_ring_supported(&err)) {
                printf("# io_uring variants not run here: %s\n", err.msg);
                break;
            }
        }
        printf("# engine: %s\n", ring_mode ? "io_uring" : "epoll");
        RUN(recv_then_send_both_ways);
        RUN(eof_after_data);
        RUN(unread_input_is_kept_and_starves_no_one);
        RUN(an_owner_that_stops_reading_pushes_back);
        RUN(big_writes_with_back_pressure);
        RUN(shutdown_and_close_deliver_what_was_written);
        RUN(reset_by_peer);
        RUN(connect_up_and_refused);
        RUN(level_triggered_epoll_fds_behind_the_ring);
    }
    return t_done();
}
