/* The admin server (src/admin/server.c) on a real bw_loop in a thread,
 * bound to 127.0.0.1:0, driven with blocking sockets from the test thread:
 * a good request, 100-continue, a body at and over the limit, a slowloris
 * and a silent client cut at the read deadline while others are served, a
 * client that never reads cut at the write deadline, and the connection cap
 * (64 open, the 65th closed at once, a slot freed and reused).
 *
 * Timeouts are shortened through bw_admin_server_limits so the file runs
 * in a couple of seconds; the deadline checks allow generous slack (a
 * loaded CI machine) but fail if a deadline is not enforced at all. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin/server.h"
#include "net/loop.h"
#include "test.h"

/* ---- fake ops ------------------------------------------------------------ */

static size_t status_size; /* 0: a short document; else this many bytes */
static int ks_calls;

static bw_status f_status(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    if (status_size == 0) {
        if (bw_textbuf_append_str(out, "{\"ok\": true}\n") != BW_OK)
            return bw_textbuf_error(out, err);
        return BW_OK;
    }
    char chunk[4096];
    memset(chunk, ' ', sizeof chunk);
    for (size_t n = 0; n < status_size; n += sizeof chunk)
        if (bw_textbuf_append(out, chunk, sizeof chunk) != BW_OK)
            return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_metrics(void *self, struct bw_textbuf *out, bw_error *err)
{
    (void)self;
    if (bw_textbuf_append_str(out, "bulwark_up 1\n") != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_reload(void *self, struct bw_textbuf *out, enum bw_reload_outcome *ret,
                          bw_error *err)
{
    (void)self;
    *ret = BW_RELOAD_ALL_ACCEPTED;
    if (bw_textbuf_append_str(out, "{}\n") != BW_OK)
        return bw_textbuf_error(out, err);
    return BW_OK;
}

static bw_status f_killswitch(void *self, const struct bw_killswitch_req *k,
                              enum bw_killswitch_fault *ret_fault, bw_error *err)
{
    (void)self;
    (void)k;
    (void)ret_fault;
    (void)err;
    ks_calls++; /* only ever touched on the loop thread */
    return BW_OK;
}

static const struct bw_admin_ops ops = {
    .status_json = f_status,
    .metrics_text = f_metrics,
    .reload = f_reload,
    .killswitch = f_killswitch,
};

/* ---- the server in a thread ---------------------------------------------- */

struct fixture {
    struct bw_loop loop;
    struct bw_admin admin;
    struct bw_admin_server *srv;
    pthread_t thread;
    uint16_t port;
};

static void on_wake(struct bw_loop *loop)
{
    loop->stop = true;
}

static void *loop_main(void *arg)
{
    struct fixture *f = arg;
    bw_loop_run(&f->loop);
    return NULL;
}

static bool fx_start(struct fixture *f, const struct bw_admin_server_limits *limits)
{
    memset(f, 0, sizeof *f);
    bw_error err;
    bw_admin_init(&f->admin, &ops);
    if (bw_loop_init(&f->loop, &err) != BW_OK)
        return false;
    f->loop.on_wake = on_wake;
    struct bw_sockaddr addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *in = (struct sockaddr_in *)&addr.ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = 0;
    addr.len = sizeof *in;
    snprintf(addr.text, sizeof addr.text, "127.0.0.1:0");
    if (bw_admin_server_start_with(&f->loop, &addr, &f->admin, limits, &f->srv, &err) != BW_OK) {
        printf("     start: %s\n", err.msg);
        return false;
    }
    const struct bw_sockaddr *bound = bw_admin_server_address(f->srv);
    f->port = ntohs(((const struct sockaddr_in *)&bound->ss)->sin_port);
    return f->port != 0 && pthread_create(&f->thread, NULL, loop_main, f) == 0;
}

static void fx_stop(struct fixture *f)
{
    bw_loop_wake(&f->loop);
    pthread_join(f->thread, NULL);
    bw_admin_server_stop(f->srv);
    bw_loop_run_deferred(&f->loop);
    bw_loop_done(&f->loop);
}

static struct bw_admin_server_limits short_limits(void)
{
    struct bw_admin_server_limits l = bw_admin_server_default_limits();
    l.read_timeout_ms = 300;
    l.write_timeout_ms = 300;
    l.linger_ms = 300;
    return l;
}

/* ---- client helpers ------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    /* Never hang the suite: a read that waits this long has failed. */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads until EOF (true) or an error or timeout (false). */
static bool read_all(int fd, char *buf, size_t cap, size_t *ret_len)
{
    size_t len = 0;
    for (;;) {
        if (len == cap - 1) {
            char sink[4096];
            ssize_t n = recv(fd, sink, sizeof sink, 0);
            if (n == 0)
                break;
            if (n < 0) {
                buf[len] = '\0';
                *ret_len = len;
                return false;
            }
            continue;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n == 0)
            break;
        if (n < 0) {
            buf[len] = '\0';
            *ret_len = len;
            return false;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret_len = len;
    return true;
}

static char rbuf[1 << 17];

/* One request on a fresh connection; the whole answer in rbuf. */
static bool exchange(uint16_t port, const char *req, size_t len)
{
    int fd = dial(port, 0);
    if (fd < 0)
        return false;
    size_t n;
    bool ok = send_all(fd, req, len) && read_all(fd, rbuf, sizeof rbuf, &n);
    close(fd);
    return ok;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

#define GET_STATUS "GET /status HTTP/1.1\r\nHost: a\r\n\r\n"

/* ---- tests --------------------------------------------------------------- */

TEST(good_request_and_log_line)
{
    /* stderr to a file while the server starts: it says where it listens. */
    fflush(stderr);
    FILE *cap = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(cap), STDERR_FILENO);
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    bool started = fx_start(&f, &l);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char log[1024];
    rewind(cap);
    size_t n = fread(log, 1, sizeof log - 1, cap);
    log[n] = '\0';
    fclose(cap);
    CHECK(started);
    char want[64];
    snprintf(want, sizeof want, "admin listening on 127.0.0.1:%u\n", f.port);
    if (!strstr(log, want))
        T_FAILF("log: %s", log);
    CHECK(strstr(log, want) != NULL);

    CHECK(exchange(f.port, GET_STATUS, strlen(GET_STATUS)));
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK_STR_EQ(body_of(rbuf), "{\"ok\": true}\n");
    const char *ks = "POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: 46\r\n\r\n"
                     "{\"target\": \"ruleset:managed\", \"enabled\": true}";
    CHECK(exchange(f.port, ks, strlen(ks)));
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK_STR_EQ(body_of(rbuf), "{\"target\": \"ruleset:managed\", \"enabled\": true}\n");
    /* Garbage gets its 400 and a close. */
    CHECK(exchange(f.port, "\x16\x03\x01\x02\x00\r\n\r\n", 9));
    CHECK(strncmp(rbuf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    fx_stop(&f);
}

TEST(expect_continue)
{
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    CHECK(fx_start(&f, &l));
    int fd = dial(f.port, 0);
    CHECK(fd >= 0);
    const char *head = "POST /reload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\n";
    CHECK(send_all(fd, head, strlen(head)));
    char got[26] = {0};
    size_t have = 0;
    while (have < 25) {
        ssize_t n = recv(fd, got + have, 25 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    CHECK_STR_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
    CHECK(send_all(fd, "{}", 2));
    size_t n;
    CHECK(read_all(fd, rbuf, sizeof rbuf, &n));
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    close(fd);
    fx_stop(&f);
}

/* A killswitch body padded with spaces to exactly len bytes. */
static char *ks_request(size_t len, size_t *ret_n)
{
    const char *json = "{\"target\": \"module:bot_score\", \"enabled\": false}";
    char head[128];
    int hn = snprintf(head, sizeof head,
                      "POST /killswitch HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", len);
    char *r = malloc((size_t)hn + len);
    memcpy(r, head, (size_t)hn);
    memset(r + hn, ' ', len);
    memcpy(r + hn, json, strlen(json));
    *ret_n = (size_t)hn + len;
    return r;
}

TEST(body_at_and_over_limit)
{
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    CHECK(fx_start(&f, &l));
    size_t n;
    char *r = ks_request(BW_ADMIN_MAX_BODY, &n);
    CHECK(exchange(f.port, r, n));
    free(r);
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* Over: the 413 comes from the head while the client is still sending
     * its body; the lingering close lets the client read the whole reply
     * instead of a reset. */
    r = ks_request(BW_ADMIN_MAX_BODY + 1, &n);
    CHECK(exchange(f.port, r, n));
    free(r);
    CHECK(strncmp(rbuf, "HTTP/1.1 413 Content Too Large\r\n", 32) == 0);
    CHECK_STR_EQ(body_of(rbuf), "{\"error\": \"request body larger than 65536 bytes\"}\n");
    fx_stop(&f);
}

/* Waits for the server to close fd; returns how long it took, or
 * UINT64_MAX if it did not within 5 s. Trickles a byte every 50 ms when
 * trickle is set. */
static uint64_t time_to_close(int fd, uint64_t start, bool trickle)
{
    for (;;) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return now_ms() - start;
        if (now_ms() - start > 5000)
            return UINT64_MAX;
        if (trickle)
            (void)send(fd, "X", 1, MSG_NOSIGNAL);
        usleep(50 * 1000);
    }
}

TEST(slowloris_and_silent_cut_others_served)
{
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    l.read_timeout_ms = 1000; /* room for the normal request on a loaded machine */
    CHECK(fx_start(&f, &l));
    uint64_t t0 = now_ms();
    int silent = dial(f.port, 0);
    int slow = dial(f.port, 0);
    CHECK(silent >= 0 && slow >= 0);
    CHECK(send_all(slow, "GET /status HTTP/1.1\r\nX-Slow: ", 30));
    /* While both hang on, a normal request is answered at once. */
    CHECK(exchange(f.port, GET_STATUS, strlen(GET_STATUS)));
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(now_ms() - t0 < 900);
    uint64_t slow_ms = time_to_close(slow, t0, true);
    uint64_t silent_ms = time_to_close(silent, t0, false);
    if (slow_ms < 950 || slow_ms > 4000 || silent_ms < 950 || silent_ms > 4000)
        T_FAILF("closed after %llu ms (slow) and %llu ms (silent), deadline 1000 ms",
                (unsigned long long)slow_ms, (unsigned long long)silent_ms);
    CHECK(slow_ms >= 950 && slow_ms <= 4000);
    close(slow);
    close(silent);
    fx_stop(&f);
}

TEST(write_timeout_for_a_client_that_never_reads)
{
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    status_size = (size_t)8 << 20;
    CHECK(fx_start(&f, &l));
    int fd = dial(f.port, 4096);
    CHECK(fd >= 0);
    CHECK(send_all(fd, GET_STATUS, strlen(GET_STATUS)));
    /* Not reading: the server's send buffer fills and its write deadline
     * passes; it closes with most of the 8 MiB unsent. */
    usleep(1200 * 1000);
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    status_size = 0;
    if (total >= ((size_t)8 << 20))
        T_FAILF("read %zu bytes: the whole reply", total);
    CHECK(total < ((size_t)8 << 20));
    CHECK(total > 0);
    close(fd);
    /* And the server still serves. */
    CHECK(exchange(f.port, GET_STATUS, strlen(GET_STATUS)));
    CHECK(strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    fx_stop(&f);
}

TEST(connection_cap_64_then_65th_closed)
{
    struct fixture f;
    struct bw_admin_server_limits l = bw_admin_server_default_limits();
    CHECK_INT_EQ(l.max_conns, 64);
    l.read_timeout_ms = 20000; /* the 64 must stay open through the test */
    CHECK(fx_start(&f, &l));
    int fds[BW_ADMIN_MAX_CONNS];
    for (int i = 0; i < BW_ADMIN_MAX_CONNS; i++) {
        fds[i] = dial(f.port, 0);
        CHECK(fds[i] >= 0);
    }
    /* Let the loop accept them all, so the next one is the 65th. */
    usleep(200 * 1000);
    int extra = dial(f.port, 0);
    CHECK(extra >= 0);
    uint64_t t0 = now_ms();
    uint64_t ms = time_to_close(extra, t0, false);
    CHECK(ms < 1000);
    close(extra);
    /* All 64 are still open. */
    for (int i = 0; i < BW_ADMIN_MAX_CONNS; i++) {
        char c;
        ssize_t n = recv(fds[i], &c, 1, MSG_DONTWAIT);
        if (!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
            T_FAILF("connection %d: closed", i);
        CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    /* One of them leaves; its slot serves a new client. */
    close(fds[0]);
    bool served = false;
    for (int tries = 0; tries < 50 && !served; tries++) {
        usleep(20 * 1000);
        served = exchange(f.port, GET_STATUS, strlen(GET_STATUS)) &&
                 strncmp(rbuf, "HTTP/1.1 200 OK\r\n", 17) == 0;
    }
    CHECK(served);
    /* Stopping with connections open releases them all (ASan checks). */
    fx_stop(&f);
    for (int i = 1; i < BW_ADMIN_MAX_CONNS; i++)
        close(fds[i]);
}

TEST(address_in_use_is_an_error)
{
    struct fixture f;
    struct bw_admin_server_limits l = short_limits();
    CHECK(fx_start(&f, &l));
    struct bw_loop loop2;
    bw_error err;
    CHECK(bw_loop_init(&loop2, &err) == BW_OK);
    struct bw_sockaddr addr = *bw_admin_server_address(f.srv);
    struct bw_admin_server *s2;
    CHECK(bw_admin_server_start(&loop2, &addr, &f.admin, &s2, &err) == BW_ERR);
    CHECK(strstr(err.msg, "Address already in use") != NULL);
    bw_loop_done(&loop2);
    fx_stop(&f);
}

int main(void)
{
    RUN(good_request_and_log_line);
    RUN(expect_continue);
    RUN(body_at_and_over_limit);
    RUN(slowloris_and_silent_cut_others_served);
    RUN(write_timeout_for_a_client_that_never_reads);
    RUN(connection_cap_64_then_65th_closed);
    RUN(address_in_use_is_an_error);
    return t_done();
}
