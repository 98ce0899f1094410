#include "proxy/health.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/tls.h"

enum probe_state { P_IDLE, P_HANDSHAKE, P_SENDING, P_READING };

struct probe {
    struct bw_io io;
    struct bw_timer interval;
    struct bw_timer timeout;
    struct bw_loop *loop;
    struct bw_upstream_rt *u;
    size_t server;
    enum probe_state state;
    uint32_t ok_run, fail_run;
    char req[512];
    size_t req_len, req_off;
    char resp[256];
    size_t resp_len;
    bool tls;           /* the upstream has `tls:`; probes go over TLS too */
    struct ssl_st *ssl; /* while a TLS probe runs */
};

struct bw_health {
    struct probe *probes;
    size_t nprobes;
};

static void probe_close(struct probe *p)
{
    if (p->ssl) {
        bw_tls_conn_free(p->ssl);
        p->ssl = NULL;
    }
    if (p->io.fd >= 0)
        close(p->io.fd);
    p->io.fd = -1;
    p->state = P_IDLE;
    bw_timer_stop(p->loop, &p->timeout);
}

static void probe_result(struct probe *p, bool ok, const char *why)
{
    probe_close(p);
    const struct bw_config_upstream *cu = p->u->cfg;
    struct bw_server_rt *s = &p->u->servers[p->server];
    bool down = atomic_load(&s->hc_down);
    if (ok) {
        p->fail_run = 0;
        p->ok_run++;
        if (down && p->ok_run >= cu->health.rise) {
            atomic_store(&s->hc_down, false);
            BW_INFOF("upstream %.*s server %s is up: %u consecutive health checks passed",
                     (int)cu->name.len, cu->name.ptr, s->cfg->addr.text, p->ok_run);
        }
    } else {
        p->ok_run = 0;
        p->fail_run++;
        if (!down && p->fail_run >= cu->health.fall) {
            atomic_store(&s->hc_down, true);
            BW_WARNF("upstream %.*s server %s is down: %u consecutive health checks failed "
                     "(last: %s)",
                     (int)cu->name.len, cu->name.ptr, s->cfg->addr.text, p->fail_run, why);
        }
    }
}

/* Status line "HTTP/1.0 NNN ..." or "HTTP/1.1 NNN ...", ended by CRLF or a
 * bare LF (HAProxy and nginx read both): 2xx and 3xx pass. The code is
 * exactly three digits, so "2000" is no 200. */
static void check_status(struct probe *p)
{
    const char *cr = memchr(p->resp, '\r', p->resp_len);
    const char *lf = memchr(p->resp, '\n', p->resp_len);
    const char *eol = cr && (!lf || cr < lf) ? cr : lf;
    if (!eol) {
        if (p->resp_len == sizeof p->resp)
            probe_result(p, false, "status line too long");
        return;
    }
    if (eol - p->resp < 12 || memcmp(p->resp, "HTTP/1.", 7) != 0 ||
        (p->resp[7] != '0' && p->resp[7] != '1') || p->resp[8] != ' ' ||
        (eol - p->resp > 12 && p->resp[12] != ' ')) {
        probe_result(p, false, "not an HTTP/1.x response");
        return;
    }
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (p->resp[i] < '0' || p->resp[i] > '9') {
            probe_result(p, false, "bad status code");
            return;
        }
        code = code * 10 + (p->resp[i] - '0');
    }
    char why[64];
    snprintf(why, sizeof why, "status %d", code);
    probe_result(p, code >= 200 && code < 400, why);
}

/* One step of sending or receiving, plain or TLS: bytes moved, 0 at EOF,
 * -1 to wait, -2 on error (why set). */
static long probe_send(struct probe *p, const char **why)
{
    if (p->tls) {
        size_t n = 0;
        switch (bw_tls_write(p->ssl, p->req + p->req_off, p->req_len - p->req_off, &n)) {
        case BW_TLS_OK:
            return (long)n;
        case BW_TLS_WANT_READ:
        case BW_TLS_WANT_WRITE:
            return -1;
        case BW_TLS_CLOSED:
        case BW_TLS_FAILED:
            *why = "TLS error while sending";
            return -2;
        }
        return -2;
    }
    ssize_t w = send(p->io.fd, p->req + p->req_off, p->req_len - p->req_off, MSG_NOSIGNAL);
    if (w >= 0)
        return (long)w;
    if (errno == EAGAIN || errno == EINTR)
        return -1;
    *why = strerror(errno);
    return -2;
}

static long probe_recv(struct probe *p, const char **why)
{
    if (p->tls) {
        size_t n = 0;
        switch (bw_tls_read(p->ssl, p->resp + p->resp_len, sizeof p->resp - p->resp_len, &n)) {
        case BW_TLS_OK:
            return (long)n;
        case BW_TLS_WANT_READ:
        case BW_TLS_WANT_WRITE:
            return -1;
        case BW_TLS_CLOSED:
            return 0;
        case BW_TLS_FAILED:
            *why = "TLS error while reading";
            return -2;
        }
        return -2;
    }
    ssize_t n = recv(p->io.fd, p->resp + p->resp_len, sizeof p->resp - p->resp_len, 0);
    if (n >= 0)
        return (long)n;
    if (errno == EAGAIN || errno == EINTR)
        return -1;
    *why = strerror(errno);
    return -2;
}

static void probe_io(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    (void)loop;
    struct probe *p = (struct probe *)io;
    const char *why = "error";
    if (p->state == P_HANDSHAKE) {
        if (!(ev & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        errno = 0;
        enum bw_tls_result tr = bw_tls_handshake(p->ssl);
        switch (tr) {
        case BW_TLS_OK:
            p->state = P_SENDING;
            break;
        case BW_TLS_WANT_READ:
        case BW_TLS_WANT_WRITE:
            return;
        case BW_TLS_CLOSED:
        case BW_TLS_FAILED: {
            char buf[200], msg[260];
            const char *verr = bw_tls_verify_error(p->ssl);
            if (verr[0])
                snprintf(msg, sizeof msg, "TLS: certificate refused: %s", verr);
            else if (!bw_tls_has_error() && errno)
                snprintf(msg, sizeof msg, "%s", strerror(errno));
            else
                snprintf(msg, sizeof msg, "TLS handshake failed: %s",
                         bw_tls_last_error(buf, sizeof buf));
            probe_result(p, false, msg);
            return;
        }
        }
    }
    if (p->state == P_SENDING) {
        /* Plain: once the connect completes; TLS: right after the handshake. */
        if (!p->tls && !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        long w = probe_send(p, &why);
        if (w == -2) {
            probe_result(p, false, why);
            return;
        }
        if (w < 0)
            return;
        p->req_off += (size_t)w;
        if (p->req_off < p->req_len)
            return;
        p->state = P_READING;
    }
    if (p->state == P_READING) {
        for (;;) {
            long n = probe_recv(p, &why);
            if (n > 0) {
                p->resp_len += (size_t)n;
                check_status(p);
                if (p->state != P_READING || p->resp_len == sizeof p->resp)
                    return;
                continue;
            }
            if (n == 0) {
                probe_result(p, false, "connection closed before a status line");
                return;
            }
            if (n == -2)
                probe_result(p, false, why);
            return;
        }
    }
}

static void probe_timeout(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct probe *p = (struct probe *)((char *)t - offsetof(struct probe, timeout));
    if (p->state != P_IDLE)
        probe_result(p, false, "timeout");
}

static void probe_start(struct bw_loop *loop, struct bw_timer *t)
{
    struct probe *p = (struct probe *)((char *)t - offsetof(struct probe, interval));
    const struct bw_config_upstream *cu = p->u->cfg;
    if (bw_timer_set(loop, &p->interval, cu->health.interval_ms) != BW_OK)
        BW_ERRORF("health check: cannot re-arm the interval timer");
    if (p->state != P_IDLE)
        return; /* previous probe still running (its own timeout ends it) */
    const struct bw_sockaddr *a = &p->u->servers[p->server].cfg->addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_result(p, false, strerror(errno));
        return;
    }
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        probe_result(p, false, strerror(e));
        return;
    }
    p->io.fd = fd;
    bw_error err;
    if (p->tls) {
        const struct bw_server_rt *sv = &p->u->servers[p->server];
        struct bw_tls_peer peer = {
            .has_sni = cu->tls.has_sni, .sni = cu->tls.sni.ptr, .ip = sv->ip};
        if (bw_tls_client_conn_new(p->u->tls, fd, &peer, &p->ssl, &err) != BW_OK) {
            probe_result(p, false, err.msg);
            return;
        }
    }
    if (bw_loop_add(loop, &p->io, &err) != BW_OK) {
        probe_result(p, false, err.msg);
        return;
    }
    p->state = p->tls ? P_HANDSHAKE : P_SENDING;
    p->req_off = 0;
    p->resp_len = 0;
    if (bw_timer_set(loop, &p->timeout, cu->health.timeout_ms) != BW_OK)
        probe_result(p, false, "cannot arm the timeout");
}

bw_status bw_health_start(struct bw_health **ret, struct bw_loop *loop, struct bw_snapshot *snap,
                          bw_error *err)
{
    const struct bw_config *cfg = snap->cfg;
    struct bw_health *h = calloc(1, sizeof *h);
    if (!h)
        return bw_error_set(err, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].health.enabled)
            n += cfg->upstreams[i].nservers;
    h->probes = calloc(n ? n : 1, sizeof *h->probes);
    if (!h->probes) {
        free(h);
        return bw_error_set(err, "out of memory");
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct bw_config_upstream *cu = &cfg->upstreams[i];
        if (!cu->health.enabled)
            continue;
        for (size_t k = 0; k < cu->nservers; k++) {
            struct probe *p = &h->probes[h->nprobes++];
            p->io.fd = -1;
            p->io.cb = probe_io;
            p->loop = loop;
            p->u = &snap->upstreams[i];
            p->server = k;
            p->tls = cu->has_tls;
            int len = snprintf(
                p->req, sizeof p->req,
                "GET %.*s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bulwark-health-check\r\n"
                "Connection: close\r\n\r\n",
                (int)cu->health.path.len, cu->health.path.ptr,
                cu->has_tls && cu->tls.has_sni ? cu->tls.sni.ptr : cu->servers[k].addr.text);
            if (len < 0 || (size_t)len >= sizeof p->req) {
                bw_health_stop(h);
                return bw_error_set(err, "upstream %.*s: health_check.path too long",
                                    (int)cu->name.len, cu->name.ptr);
            }
            p->req_len = (size_t)len;
            bw_timer_init(&p->interval, probe_start);
            bw_timer_init(&p->timeout, probe_timeout);
            /* First probe at once, so a server that is down at startup is
             * found within one timeout, not one interval. */
            if (bw_timer_set(loop, &p->interval, 0) != BW_OK) {
                bw_health_stop(h);
                return bw_error_set(err, "out of memory");
            }
        }
    }
    *ret = h;
    return BW_OK;
}

void bw_health_stop(struct bw_health *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nprobes; i++) {
        struct probe *p = &h->probes[i];
        if (p->ssl)
            bw_tls_conn_free(p->ssl);
        if (p->io.fd >= 0)
            close(p->io.fd);
        bw_timer_cancel(p->loop, &p->interval);
        bw_timer_cancel(p->loop, &p->timeout);
    }
    free(h->probes);
    free(h);
}
