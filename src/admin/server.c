/* The admin API on a socket: listener, per-connection state machine
 * (reading -> writing -> lingering -> closed), deadlines and the connection
 * cap. Request handling itself is admin_http.c (bw_admin_feed). */
#include "admin/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/listener.h"

/* First read buffer; it doubles up to what the request needs (head limit,
 * then head + Content-Length), so a typical request costs 2 KiB. */
enum { CONN_BUF_INITIAL = 2048 };
/* Connections accepted per listener event: the listener is
 * level-triggered, so the rest come next round, after the connections
 * already open have had their turn. */
enum { ACCEPT_BATCH = 16 };
/* Accepting paused after running out of descriptors or memory. */
enum { ACCEPT_RETRY_MS = 100 };
/* Room for the reply head around the largest body. */
#define WIRE_MAX (BW_ADMIN_MAX_REPLY_BODY + 4096)

enum conn_state { C_READING, C_WRITING, C_LINGERING, C_CLOSED };

struct conn {
    struct bw_io io; /* first: the io callback gets &conn->io */
    struct bw_timer timer;
    struct bw_deferred dfr;
    struct bw_admin_server *srv;
    struct conn *prev, *next;
    enum conn_state state;
    char *buf;
    size_t len, cap;
    struct bw_admin_parse parse;
    struct bw_textbuf wire; /* 100 Continue and/or the reply */
    size_t woff;            /* bytes of wire sent */
    size_t lingered;        /* bytes dropped while lingering */
    char peer[64];
};

struct bw_admin_server {
    struct bw_io listen_io; /* first */
    struct bw_loop *loop;
    const struct bw_admin *admin;
    struct bw_admin_server_limits limits;
    struct bw_sockaddr addr;
    struct bw_timer accept_retry;
    bool paused;
    struct conn *conns;
    size_t nconns;
    struct bw_deferred dfr;
};

struct bw_admin_server_limits bw_admin_server_default_limits(void)
{
    return (struct bw_admin_server_limits){
        .read_timeout_ms = BW_ADMIN_READ_TIMEOUT_MS,
        .write_timeout_ms = BW_ADMIN_WRITE_TIMEOUT_MS,
        .linger_ms = BW_ADMIN_LINGER_MS,
        .linger_bytes = BW_ADMIN_LINGER_BYTES,
        .max_conns = BW_ADMIN_MAX_CONNS,
    };
}

/* ---- connections --------------------------------------------------------- */

static void conn_free(struct bw_deferred *d)
{
    struct conn *c = (struct conn *)((char *)d - offsetof(struct conn, dfr));
    free(c->buf);
    bw_textbuf_done(&c->wire);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSED)
        return;
    struct bw_admin_server *s = c->srv;
    c->state = C_CLOSED;
    close(c->io.fd);
    c->io.fd = -1; /* later events of this batch are ignored by the loop */
    bw_timer_cancel(s->loop, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    bw_loop_defer(s->loop, &c->dfr);
}

static void conn_timeout(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    switch (c->state) {
    case C_READING:
        BW_DEBUGF("admin: %s: no complete request within %llu ms; closing", c->peer,
                  (unsigned long long)c->srv->limits.read_timeout_ms);
        break;
    case C_WRITING:
        BW_WARNF("admin: %s: reply not taken within %llu ms; closing", c->peer,
                 (unsigned long long)c->srv->limits.write_timeout_ms);
        break;
    case C_LINGERING:
    case C_CLOSED:
        break;
    }
    conn_close(c);
}

static void linger_read(struct conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = recv(c->io.fd, scratch, sizeof scratch, 0);
        if (n > 0) {
            c->lingered += (size_t)n;
            if (c->lingered > c->srv->limits.linger_bytes) {
                conn_close(c);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(c); /* the client closed (0) or the connection broke */
        return;
    }
}

static void start_linger(struct conn *c)
{
    /* Our reply is complete: a FIN tells the client, and reading on lets
     * its unread request bytes drain instead of turning into a reset that
     * could destroy the reply in flight. */
    if (shutdown(c->io.fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    c->state = C_LINGERING;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    bw_textbuf_done(&c->wire);
    if (bw_timer_set(c->srv->loop, &c->timer, c->srv->limits.linger_ms) != BW_OK) {
        conn_close(c);
        return;
    }
    linger_read(c);
}

/* Sends what wire holds. Returns false if the connection was closed. */
static bool flush(struct conn *c)
{
    while (c->woff < c->wire.len) {
        ssize_t n = send(c->io.fd, c->wire.ptr + c->woff, c->wire.len - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true; /* EPOLLOUT will call again */
        conn_close(c);
        return false;
    }
    if (c->state == C_WRITING)
        start_linger(c);
    return c->state != C_CLOSED;
}

static void log_reply(const struct conn *c, const struct bw_admin_reply *r)
{
    if (!c->parse.head_done)
        return;
    const struct bw_http_request *q = &c->parse.req;
    /* Mutating calls and refused credentials are an audit trail. */
    if (r->status == 401)
        BW_WARNF("admin: %s: %.*s %.*s refused: missing or wrong token", c->peer,
                 (int)q->method.len, q->method.ptr, (int)q->path.len, q->path.ptr);
    else if (q->method_id == BW_METHOD_POST)
        BW_INFOF("admin: %s: %.*s %.*s -> %u", c->peer, (int)q->method.len, q->method.ptr,
                 (int)q->path.len, q->path.ptr, (unsigned)r->status);
}

/* Switches to writing the reply. Returns false if the connection closed. */
static bool start_reply(struct conn *c, struct bw_admin_reply *r)
{
    log_reply(c, r);
    bw_status st = bw_admin_reply_serialize(r, &c->wire);
    bw_admin_reply_done(r);
    if (st != BW_OK) {
        BW_ERRORF("admin: %s: cannot build the reply (out of memory)", c->peer);
        conn_close(c);
        return false;
    }
    c->state = C_WRITING;
    if (bw_timer_set(c->srv->loop, &c->timer, c->srv->limits.write_timeout_ms) != BW_OK) {
        conn_close(c);
        return false;
    }
    return flush(c);
}

/* Makes room for at least one more byte, up to want. */
static bool grow(struct conn *c, size_t want)
{
    if (c->cap > c->len)
        return true;
    size_t cap = c->cap ? c->cap * 2 : CONN_BUF_INITIAL;
    if (cap > want)
        cap = want;
    char *nb = realloc(c->buf, cap);
    if (!nb)
        return false;
    c->buf = nb;
    c->cap = cap;
    return true;
}

static void conn_read(struct conn *c)
{
    const struct bw_admin *a = c->srv->admin;
    for (;;) {
        size_t want = bw_admin_feed_want(&c->parse);
        /* want > len always holds here: bw_admin_feed answers as soon as
         * len reaches it (431 for a head, the reply for a body). */
        if (!grow(c, want)) {
            BW_ERRORF("admin: %s: out of memory for the request", c->peer);
            conn_close(c);
            return;
        }
        size_t room = (c->cap < want ? c->cap : want) - c->len;
        ssize_t n = recv(c->io.fd, c->buf + c->len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* The client went away before a whole request: nobody to answer. */
            conn_close(c);
            return;
        }
        c->len += (size_t)n;
        struct bw_admin_reply reply;
        bw_admin_reply_init(&reply);
        enum bw_admin_feed_result r = bw_admin_feed(a, &c->parse, c->buf, c->len, &reply);
        switch (r) {
        case BW_ADMIN_FEED_MORE:
            bw_admin_reply_done(&reply);
            continue;
        case BW_ADMIN_FEED_CONTINUE:
            bw_admin_reply_done(&reply);
            if (bw_textbuf_append_str(&c->wire, "HTTP/1.1 100 Continue\r\n\r\n") != BW_OK) {
                conn_close(c);
                return;
            }
            if (!flush(c))
                return;
            continue;
        case BW_ADMIN_FEED_REPLY:
            start_reply(c, &reply);
            return;
        case BW_ADMIN_FEED__COUNT:
            break;
        }
        bw_admin_reply_done(&reply);
        conn_close(c);
        return;
    }
}

static void conn_io(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    /* Edge-triggered: every event is a hint to try both directions of the
     * current state until EAGAIN; errors show up as failed calls. */
    struct conn *c = (struct conn *)io;
    switch (c->state) {
    case C_READING:
        if (c->woff < c->wire.len && !flush(c))
            return;
        conn_read(c);
        return;
    case C_WRITING:
        flush(c);
        return;
    case C_LINGERING:
        linger_read(c);
        return;
    case C_CLOSED:
        return;
    }
}

static void peer_text(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t cap)
{
    struct bw_sockaddr a;
    memset(&a, 0, sizeof a);
    memcpy(&a.ss, ss, len < sizeof a.ss ? len : sizeof a.ss);
    a.len = len;
    bw_sockaddr_format(&a);
    snprintf(out, cap, "%s", a.text[0] ? a.text : "?");
}

static void conn_open(struct bw_admin_server *s, int fd, const struct sockaddr_storage *peer,
                      socklen_t plen)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        BW_ERRORF("admin: out of memory for a connection");
        close(fd);
        return;
    }
    c->io.fd = fd;
    c->io.cb = conn_io;
    c->srv = s;
    c->state = C_READING;
    c->dfr.fn = conn_free;
    bw_timer_init(&c->timer, conn_timeout);
    bw_admin_parse_init(&c->parse);
    bw_textbuf_init(&c->wire, WIRE_MAX);
    peer_text(peer, plen, c->peer, sizeof c->peer);
    bw_error err;
    if (bw_loop_add(s->loop, &c->io, &err) != BW_OK ||
        bw_timer_set(s->loop, &c->timer, s->limits.read_timeout_ms) != BW_OK) {
        BW_ERRORF("admin: cannot register a connection");
        close(fd);
        bw_timer_cancel(s->loop, &c->timer);
        bw_textbuf_done(&c->wire);
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    /* The request may be here already; its edge may have come before the
     * registration. */
    conn_read(c);
}

/* ---- listener ------------------------------------------------------------ */

static void accept_retry_cb(struct bw_loop *loop, struct bw_timer *t)
{
    struct bw_admin_server *s =
        (struct bw_admin_server *)((char *)t - offsetof(struct bw_admin_server, accept_retry));
    bw_error err;
    if (bw_loop_add_level_in(loop, &s->listen_io, &err) == BW_OK) {
        s->paused = false;
        return;
    }
    BW_ERRORF("admin: %s", err.msg);
    if (bw_timer_set(loop, &s->accept_retry, ACCEPT_RETRY_MS) != BW_OK)
        BW_ERRORF("admin: cannot arm the accept retry timer; the admin API stops accepting");
}

static void pause_accept(struct bw_admin_server *s)
{
    if (s->paused)
        return;
    bw_loop_del(s->loop, &s->listen_io);
    s->paused = true;
    if (bw_timer_set(s->loop, &s->accept_retry, ACCEPT_RETRY_MS) != BW_OK)
        BW_ERRORF("admin: cannot arm the accept retry timer; the admin API stops accepting");
}

static void listener_cb(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    struct bw_admin_server *s = (struct bw_admin_server *)io;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
            case EINTR:
            case ECONNABORTED:
                return;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                /* The listener stays readable: without a pause this would
                 * spin. */
                BW_ERRORF("admin: accept: %s; pausing accept for %d ms", strerror(errno),
                          ACCEPT_RETRY_MS);
                pause_accept(s);
                return;
            default:
                BW_ERRORF("admin: accept: %s", strerror(errno));
                return;
            }
        }
        if (s->nconns >= s->limits.max_conns) {
            BW_WARNF("admin: %zu connections open (the most allowed); closing a new one",
                     s->nconns);
            close(fd);
            continue;
        }
        conn_open(s, fd, &peer, plen);
    }
}

/* Not bw_listener_open: no SO_REUSEPORT here. One process owns the admin
 * port, and a second bulwark started by mistake must fail on "address in
 * use" instead of silently sharing the admin API with the first. */
static bw_status open_listener(const struct bw_sockaddr *addr, int *ret_fd,
                               struct bw_sockaddr *ret_bound, bw_error *err)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bw_error_set(err, "admin listen %s: socket: %s", addr->text, strerror(errno));
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        bw_error_set(err, "admin listen %s: setsockopt: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    if (addr->ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 ||
        listen(fd, BW_ADMIN_BACKLOG) != 0) {
        bw_error_set(err, "admin listen %s: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    memset(ret_bound, 0, sizeof *ret_bound);
    ret_bound->len = sizeof ret_bound->ss;
    if (getsockname(fd, (struct sockaddr *)&ret_bound->ss, &ret_bound->len) != 0) {
        bw_error_set(err, "admin listen %s: getsockname: %s", addr->text, strerror(errno));
        close(fd);
        return BW_ERR;
    }
    bw_sockaddr_format(ret_bound);
    *ret_fd = fd;
    return BW_OK;
}

static void server_free(struct bw_deferred *d)
{
    free((char *)d - offsetof(struct bw_admin_server, dfr));
}

bw_status bw_admin_server_start_with(struct bw_loop *loop, const struct bw_sockaddr *addr,
                                     const struct bw_admin *a,
                                     const struct bw_admin_server_limits *limits,
                                     struct bw_admin_server **ret, bw_error *err)
{
    if (limits->max_conns == 0)
        return bw_error_set(err, "admin: max_conns must be at least 1");
    struct bw_admin_server *s = calloc(1, sizeof *s);
    if (!s)
        return bw_error_set(err, "out of memory");
    s->loop = loop;
    s->admin = a;
    s->limits = *limits;
    s->dfr.fn = server_free;
    bw_timer_init(&s->accept_retry, accept_retry_cb);
    int fd = -1;
    if (open_listener(addr, &fd, &s->addr, err) != BW_OK) {
        free(s);
        return BW_ERR;
    }
    s->listen_io.fd = fd;
    s->listen_io.cb = listener_cb;
    if (bw_loop_add_level_in(loop, &s->listen_io, err) != BW_OK) {
        close(fd);
        free(s);
        return BW_ERR;
    }
    BW_INFOF("admin listening on %s", s->addr.text);
    *ret = s;
    return BW_OK;
}

bw_status bw_admin_server_start(struct bw_loop *loop, const struct bw_sockaddr *addr,
                                const struct bw_admin *a, struct bw_admin_server **ret,
                                bw_error *err)
{
    struct bw_admin_server_limits l = bw_admin_server_default_limits();
    return bw_admin_server_start_with(loop, addr, a, &l, ret, err);
}

const struct bw_sockaddr *bw_admin_server_address(const struct bw_admin_server *s)
{
    return &s->addr;
}

size_t bw_admin_server_connections(const struct bw_admin_server *s)
{
    return s->nconns;
}

void bw_admin_server_stop(struct bw_admin_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    if (s->listen_io.fd >= 0)
        close(s->listen_io.fd);
    s->listen_io.fd = -1;
    bw_timer_cancel(s->loop, &s->accept_retry);
    bw_loop_defer(s->loop, &s->dfr);
}
