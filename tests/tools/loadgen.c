/* loadgen: a small, bounded HTTP/1.1 load client for the integration tests.
 *
 * N keep-alive connections to 127.0.0.1:PORT, one request in flight on each
 * (no pipelining), paced to a target rate over all of them, until a
 * duration cap or a request-count cap is reached (both always apply). Every
 * response is parsed (status line, Content-Length or chunked body) and
 * counted by status class; a status other than --expect counts as
 * unexpected. Connection trouble is counted by kind: refused or failed
 * connects, resets (ECONNRESET/EPIPE), a close in the middle of a response
 * or with a request outstanding, and requests over --timeout. A close by
 * the server between requests (after a response that said
 * "Connection: close", or on an idle connection) is not a failure: the
 * connection is opened again and counted.
 *
 * At the end one JSON object goes to stdout: the counts, the elapsed time,
 * the rate achieved, and latency percentiles (from writing the request to
 * the last byte of its response; microseconds, ~1.5 % resolution). Exit
 * status 0 when it ran (whatever it counted), 2 on bad arguments.
 *
 * This is a test tool, not the product: it is built without sanitizers in
 * every variant so that it loads the proxy, not itself. Only the loopback
 * address is used. SIGINT/SIGTERM end the run early, with the report. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNS = 4096, RBUF = 65536, REQ_MAX = 8192, MAX_EVENTS = 256 };

/* Latency histogram: values below 64 us exactly, then 64 sub-buckets per
 * power of two (relative error under 1/64). */
enum { SUB_BITS = 6, SUB = 1 << SUB_BITS, HIST_SLOTS = SUB + (40 - SUB_BITS) * SUB };

static uint64_t hist[HIST_SLOTS];

static size_t hist_slot(uint64_t us)
{
    if (us < SUB)
        return (size_t)us;
    int e = 63 - __builtin_clzll(us);
    if (e >= 40)
        return HIST_SLOTS - 1;
    uint64_t sub = (us >> (e - SUB_BITS)) & (SUB - 1);
    return SUB + (size_t)(e - SUB_BITS) * SUB + (size_t)sub;
}

/* The upper bound of a slot, in microseconds. */
static uint64_t hist_upper(size_t slot)
{
    if (slot < SUB)
        return slot;
    size_t e = (slot - SUB) / SUB + SUB_BITS, sub = (slot - SUB) % SUB;
    return ((SUB + sub + 1) << (e - SUB_BITS)) - 1;
}

static uint64_t hist_pct(uint64_t total, double p)
{
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)total + 0.999999);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_SLOTS; i++) {
        seen += hist[i];
        if (seen >= want)
            return hist_upper(i);
    }
    return hist_upper(HIST_SLOTS - 1);
}

enum conn_state { C_CLOSED, C_CONNECTING, C_IDLE, C_WRITING, C_READING };

enum body_kind { B_NONE, B_LENGTH, B_CHUNKED, B_EOF };

struct conn {
    int fd;
    enum conn_state state;
    size_t wrote;     /* bytes of the request written */
    uint64_t sent_ns; /* when the request's first byte went out */
    uint64_t on_this; /* requests completed on this connection */
    char buf[RBUF];
    size_t len; /* bytes in buf */
    bool head_done;
    int status;
    bool close_after; /* the response said Connection: close (or HTTP/1.0) */
    enum body_kind body;
    uint64_t remaining; /* B_LENGTH: body bytes left; B_CHUNKED: of this chunk */
    int chunk_state;    /* 0 size line, 1 data, 2 CRLF after data, 3 trailers */
};

static struct {
    int port;
    int conns;
    double rate;     /* requests/s over all connections; 0: as fast as possible */
    double duration; /* seconds */
    uint64_t max_requests;
    double timeout;    /* seconds per request */
    int expect;        /* expected status; 0: any */
    uint64_t per_conn; /* close and reopen after this many; 0: never */
    char req[REQ_MAX];
    size_t req_len;
} opt = {
    .conns = 8, .rate = 1000, .duration = 10, .max_requests = 1000000, .timeout = 5, .expect = 200};

static struct {
    uint64_t sent, completed, classes[6], unexpected;
    uint64_t connects, connect_errors, resets, premature_closes, timeouts, server_closes;
    uint64_t protocol_errors, reconnects_per_conn;
    uint64_t max_behind; /* most requests ever due but not yet sent (pacing lag) */
    int first_unexpected;
    char first_error[160];
} st;

static volatile sig_atomic_t stop_flag;
static int ep;
static struct conn *conns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_error(const char *what, int e)
{
    if (st.first_error[0])
        return;
    snprintf(st.first_error, sizeof st.first_error, "%s%s%s", what, e ? ": " : "",
             e ? strerror(e) : "");
}

static void on_sig(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_CLOSED;
    c->len = 0;
}

static bool conn_open(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        st.connect_errors++;
        note_error("socket", errno);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)opt.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    st.connects++;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        st.connect_errors++;
        note_error("connect", errno);
        close(fd);
        return false;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->len = 0;
    c->on_this = 0;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        st.connect_errors++;
        note_error("epoll_ctl", errno);
        close(fd);
        c->fd = -1;
        c->state = C_CLOSED;
        return false;
    }
    return true;
}

static void set_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A failure while a request is outstanding: counted once, by kind. */
static void conn_fail(struct conn *c, int e)
{
    if (e == ECONNRESET || e == EPIPE) {
        st.resets++;
        note_error("reset with a request outstanding", e);
    } else if (e == ECONNREFUSED) {
        st.connect_errors++;
        note_error("connect", e);
    } else if (e == 0) {
        st.premature_closes++;
        note_error("closed with a request outstanding", 0);
    } else {
        st.connect_errors++;
        note_error("socket error", e);
    }
    conn_close(c);
}

static bool try_write(struct conn *c)
{
    while (c->wrote < opt.req_len) {
        ssize_t n = send(c->fd, opt.req + c->wrote, opt.req_len - c->wrote, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return true;
            }
            if (errno == EINTR)
                continue;
            conn_fail(c, errno);
            return false;
        }
        c->wrote += (size_t)n;
    }
    c->state = C_READING;
    set_events(c, EPOLLIN);
    return true;
}

static void start_request(struct conn *c, uint64_t t)
{
    c->wrote = 0;
    c->sent_ns = t;
    c->head_done = false;
    c->state = C_WRITING;
    st.sent++;
    (void)try_write(c);
}

/* Finds "\r\n\r\n" in the buffer; the head's length including it, or 0. */
static size_t head_end(const char *b, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r')
            return i + 1;
    return 0;
}

static bool token_in(const char *v, size_t n, const char *tok)
{
    size_t t = strlen(tok);
    for (size_t i = 0; i + t <= n; i++)
        if (strncasecmp(v + i, tok, t) == 0)
            return true;
    return false;
}

/* Parses the response head in c->buf[0..hl). false: not HTTP. */
static bool parse_head(struct conn *c, size_t hl)
{
    const char *b = c->buf;
    if (hl < 12 || memcmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return false;
    c->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (c->status < 100 || c->status > 599)
        return false;
    c->close_after = b[7] == '0';
    c->body = B_EOF;
    c->remaining = 0;
    bool has_len = false;
    const char *p = (const char *)memchr(b, '\n', hl) + 1;
    while (p < b + hl - 2) {
        const char *eol = memchr(p, '\n', (size_t)(b + hl - p));
        if (!eol)
            return false;
        size_t ln = (size_t)(eol - p);
        if (ln && p[ln - 1] == '\r')
            ln--;
        const char *colon = memchr(p, ':', ln);
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            size_t vl = ln - nl - 1;
            if (nl == 14 && strncasecmp(p, "content-length", 14) == 0) {
                has_len = true;
                c->remaining = strtoull(v, NULL, 10);
            } else if (nl == 17 && strncasecmp(p, "transfer-encoding", 17) == 0 &&
                       token_in(v, vl, "chunked")) {
                c->body = B_CHUNKED;
            } else if (nl == 10 && strncasecmp(p, "connection", 10) == 0) {
                if (token_in(v, vl, "close"))
                    c->close_after = true;
                else if (token_in(v, vl, "keep-alive"))
                    c->close_after = false;
            }
        }
        p = eol + 1;
    }
    if (c->body != B_CHUNKED && has_len)
        c->body = B_LENGTH;
    if (c->status / 100 == 1 || c->status == 204 || c->status == 304)
        c->body = B_NONE;
    c->chunk_state = 0;
    return true;
}

static void complete(struct conn *c, uint64_t t)
{
    uint64_t us = (t - c->sent_ns) / 1000;
    hist[hist_slot(us)]++;
    st.completed++;
    st.classes[c->status / 100]++;
    if (opt.expect && c->status != opt.expect) {
        st.unexpected++;
        if (!st.first_unexpected)
            st.first_unexpected = c->status;
    }
    c->on_this++;
    c->state = C_IDLE;
    if (c->close_after || (opt.per_conn && c->on_this >= opt.per_conn)) {
        if (c->close_after)
            st.server_closes++;
        conn_close(c);
    }
}

/* Consumes body bytes in c->buf; true when the response is complete. false
 * with c->state C_CLOSED on a protocol error. */
static bool eat_body(struct conn *c)
{
    size_t off = 0;
    bool done = false;
    while (!done && off < c->len) {
        switch (c->body) {
        case B_NONE:
            done = true;
            break;
        case B_EOF:
            off = c->len; /* until the server closes */
            break;
        case B_LENGTH: {
            uint64_t take = c->len - off < c->remaining ? c->len - off : c->remaining;
            off += take;
            c->remaining -= take;
            done = c->remaining == 0;
            break;
        }
        case B_CHUNKED:
            if (c->chunk_state == 1) {
                uint64_t take = c->len - off < c->remaining ? c->len - off : c->remaining;
                off += take;
                c->remaining -= take;
                if (c->remaining == 0)
                    c->chunk_state = 2;
                break;
            }
            {
                char *nl = memchr(c->buf + off, '\n', c->len - off);
                if (!nl)
                    goto need_more;
                size_t ll = (size_t)(nl - (c->buf + off)) + 1;
                if (c->chunk_state == 0) {
                    uint64_t sz = strtoull(c->buf + off, NULL, 16);
                    c->remaining = sz;
                    c->chunk_state = sz ? 1 : 3;
                } else if (c->chunk_state == 2) {
                    c->chunk_state = 0;
                } else { /* trailers: an empty line ends the message */
                    if (ll <= 2)
                        done = true;
                }
                off += ll;
            }
            break;
        }
    }
    if (c->body == B_NONE || (c->body == B_LENGTH && c->remaining == 0))
        done = true;
need_more:
    if (done && off < c->len) {
        st.protocol_errors++;
        note_error("bytes after a complete response", 0);
        conn_close(c);
        return false;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return done;
}

static void on_readable(struct conn *c, uint64_t t)
{
    for (;;) {
        if (c->len == sizeof c->buf) { /* a head, or a chunk-size line, over 64 KiB */
            st.protocol_errors++;
            note_error(c->head_done ? "chunk line too long" : "response head too large", 0);
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            if (c->state == C_IDLE) { /* a reset between requests */
                st.resets++;
                note_error("reset on an idle connection", errno);
                conn_close(c);
            } else {
                conn_fail(c, errno);
            }
            return;
        }
        if (n == 0) {
            if (c->state == C_READING && c->head_done && c->body == B_EOF) {
                complete(c, t);
                conn_close(c);
            } else if (c->state == C_IDLE) {
                st.server_closes++;
                conn_close(c);
            } else {
                conn_fail(c, 0);
            }
            return;
        }
        if (c->state != C_READING && c->state != C_WRITING) {
            st.protocol_errors++;
            note_error("bytes with no request outstanding", 0);
            conn_close(c);
            return;
        }
        c->len += (size_t)n;
        if (!c->head_done) {
            size_t hl = head_end(c->buf, c->len);
            if (!hl)
                continue;
            if (!parse_head(c, hl)) {
                st.protocol_errors++;
                note_error("not an HTTP/1.x response", 0);
                conn_close(c);
                return;
            }
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            if (c->status / 100 == 1) { /* interim: the real head follows */
                continue;
            }
            c->head_done = true;
        }
        if (eat_body(c)) {
            complete(c, t);
            return;
        }
        if (c->state == C_CLOSED)
            return;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --port P [--conns N] [--rate R] [--duration S] [--requests M]\n"
                    "               [--timeout S] [--expect STATUS|0] [--per-conn K] [--path /p]\n"
                    "               [--host H] [--header 'Name: value']...\n");
}

int main(int argc, char **argv)
{
    const char *path = "/", *host = "loadgen";
    char extra[REQ_MAX / 2] = "";
    size_t extra_len = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--port") == 0)
            opt.port = atoi(v);
        else if (strcmp(a, "--conns") == 0)
            opt.conns = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            opt.rate = atof(v);
        else if (strcmp(a, "--duration") == 0)
            opt.duration = atof(v);
        else if (strcmp(a, "--requests") == 0)
            opt.max_requests = strtoull(v, NULL, 10);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout = atof(v);
        else if (strcmp(a, "--expect") == 0)
            opt.expect = atoi(v);
        else if (strcmp(a, "--per-conn") == 0)
            opt.per_conn = strtoull(v, NULL, 10);
        else if (strcmp(a, "--path") == 0)
            path = v;
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--header") == 0) {
            int n = snprintf(extra + extra_len, sizeof extra - extra_len, "%s\r\n", v);
            if (n < 0 || (size_t)n >= sizeof extra - extra_len) {
                fprintf(stderr, "loadgen: headers too long\n");
                return 2;
            }
            extra_len += (size_t)n;
        } else {
            usage();
            return 2;
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.conns < 1 || opt.conns > MAX_CONNS ||
        opt.rate < 0 || opt.duration <= 0 || opt.duration > 3600 || opt.timeout <= 0) {
        usage();
        return 2;
    }
    int n = snprintf(opt.req, sizeof opt.req, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host,
                     extra);
    if (n < 0 || (size_t)n >= sizeof opt.req) {
        fprintf(stderr, "loadgen: request too long\n");
        return 2;
    }
    opt.req_len = (size_t)n;

    struct sigaction sa = {.sa_handler = on_sig};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.conns, sizeof *conns);
    if (ep < 0 || !conns) {
        perror("loadgen");
        return 1;
    }
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        conns[i].state = C_CLOSED;
    }

    const uint64_t start = now_ns();
    const uint64_t end = start + (uint64_t)(opt.duration * 1e9);
    const uint64_t tmo = (uint64_t)(opt.timeout * 1e9);
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_open_try = 0;
    for (;;) {
        uint64_t t = now_ns();
        bool sending = !stop_flag && t < end && st.sent < opt.max_requests;
        /* Requests due by now under the target rate. */
        uint64_t due = opt.max_requests;
        if (opt.rate > 0) {
            double d = opt.rate * (double)(t - start) / 1e9 + 1;
            due = d < (double)opt.max_requests ? (uint64_t)d : opt.max_requests;
        }
        bool outstanding = false;
        bool can_open = t - last_open_try >= 10 * 1000000ull; /* a failed connect: retry in 10 ms */
        for (int i = 0; i < opt.conns; i++) {
            struct conn *c = &conns[i];
            if ((c->state == C_WRITING || c->state == C_READING) && t - c->sent_ns > tmo) {
                st.timeouts++;
                note_error("request timed out", 0);
                conn_close(c);
            }
            if (c->state == C_CLOSED && sending && can_open) {
                if (!conn_open(c))
                    last_open_try = t;
            }
            if (c->state == C_IDLE && sending && st.sent < due)
                start_request(c, t);
            outstanding |= c->state == C_WRITING || c->state == C_READING;
        }
        if (opt.rate > 0 && sending && due > st.sent && due - st.sent > st.max_behind)
            st.max_behind = due - st.sent;
        if (!sending && !outstanding)
            break;
        if (t > end + tmo + 1000000000ull)
            break; /* a hard stop, whatever is outstanding */
        int wait_ms = 1;
        if (opt.rate > 0 && sending && st.sent >= due) {
            double next = ((double)st.sent) / opt.rate * 1e9 + (double)start;
            double ms = (next - (double)t) / 1e6;
            wait_ms = ms < 1 ? 1 : ms > 50 ? 50 : (int)ms;
        }
        int k = epoll_wait(ep, evs, MAX_EVENTS, wait_ms);
        if (k < 0 && errno != EINTR) {
            perror("epoll_wait");
            break;
        }
        t = now_ns();
        for (int j = 0; j < k; j++) {
            struct conn *c = evs[j].data.ptr;
            uint32_t e = evs[j].events;
            if (c->fd < 0)
                continue;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (e & (EPOLLERR | EPOLLHUP))) {
                    st.connect_errors++;
                    note_error("connect", err);
                    conn_close(c);
                    last_open_try = t;
                    continue;
                }
                c->state = C_IDLE;
                set_events(c, EPOLLIN);
                continue;
            }
            if (c->state == C_WRITING && (e & EPOLLOUT))
                if (!try_write(c))
                    continue;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                on_readable(c, t);
        }
        /* A request just completed frees its connection for the next one:
         * loop to send without waiting. */
    }
    for (int i = 0; i < opt.conns; i++)
        if (conns[i].state == C_WRITING || conns[i].state == C_READING) {
            st.timeouts++;
            note_error("request outstanding at the hard stop", 0);
        }
    double elapsed = (double)(now_ns() - start) / 1e9;
    for (int i = 0; i < opt.conns; i++)
        conn_close(&conns[i]);
    uint64_t failed =
        st.connect_errors + st.resets + st.premature_closes + st.timeouts + st.protocol_errors;
    printf("{\"sent\":%llu,\"completed\":%llu,\"failed\":%llu,\"unexpected_status\":%llu,"
           "\"first_unexpected_status\":%d,"
           "\"status\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},"
           "\"connects\":%llu,\"connect_errors\":%llu,\"resets\":%llu,"
           "\"premature_closes\":%llu,\"timeouts\":%llu,\"protocol_errors\":%llu,"
           "\"server_closes\":%llu,\"max_behind\":%llu,"
           "\"elapsed_s\":%.3f,\"rate\":%.1f,\"target_rate\":%.1f,\"conns\":%d,"
           "\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu},"
           "\"first_error\":\"%s\"}\n",
           (unsigned long long)st.sent, (unsigned long long)st.completed,
           (unsigned long long)failed, (unsigned long long)st.unexpected, st.first_unexpected,
           (unsigned long long)st.classes[1], (unsigned long long)st.classes[2],
           (unsigned long long)st.classes[3], (unsigned long long)st.classes[4],
           (unsigned long long)st.classes[5], (unsigned long long)st.connects,
           (unsigned long long)st.connect_errors, (unsigned long long)st.resets,
           (unsigned long long)st.premature_closes, (unsigned long long)st.timeouts,
           (unsigned long long)st.protocol_errors, (unsigned long long)st.server_closes,
           (unsigned long long)st.max_behind, elapsed,
           elapsed > 0 ? (double)st.completed / elapsed : 0.0, opt.rate, opt.conns,
           (unsigned long long)hist_pct(st.completed, 50),
           (unsigned long long)hist_pct(st.completed, 90),
           (unsigned long long)hist_pct(st.completed, 99),
           (unsigned long long)hist_pct(st.completed, 99.9),
           (unsigned long long)hist_pct(st.completed, 100), st.first_error);
    free(conns);
    close(ep);
    return 0;
}
