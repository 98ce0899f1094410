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

enum probe_state { P_IDLE, P_SENDING, P_READING };

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
};

struct bw_health {
    struct probe *probes;
    size_t nprobes;
};

static void probe_close(struct probe *p)
{
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

/* Status line "HTTP/1.x NNN ...": 2xx and 3xx pass. */
static void check_status(struct probe *p)
{
    const char *eol = memchr(p->resp, '\r', p->resp_len);
    if (!eol) {
        if (p->resp_len == sizeof p->resp)
            probe_result(p, false, "status line too long");
        return;
    }
    if (eol - p->resp < 12 || memcmp(p->resp, "HTTP/1.", 7) != 0 || p->resp[8] != ' ') {
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

static void probe_io(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    (void)loop;
    struct probe *p = (struct probe *)io;
    if (p->state == P_SENDING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        ssize_t w = send(p->io.fd, p->req + p->req_off, p->req_len - p->req_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN)
                probe_result(p, false, strerror(errno));
            return;
        }
        p->req_off += (size_t)w;
        if (p->req_off == p->req_len)
            p->state = P_READING;
    }
    if (p->state == P_READING && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        for (;;) {
            ssize_t n = recv(p->io.fd, p->resp + p->resp_len, sizeof p->resp - p->resp_len, 0);
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
            if (errno != EAGAIN)
                probe_result(p, false, strerror(errno));
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
    if (bw_loop_add(loop, &p->io, &err) != BW_OK) {
        probe_result(p, false, err.msg);
        return;
    }
    p->state = P_SENDING;
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
            int len =
                snprintf(p->req, sizeof p->req,
                         "GET %.*s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bulwark-health-check\r\n"
                         "Connection: close\r\n\r\n",
                         (int)cu->health.path.len, cu->health.path.ptr, cu->servers[k].addr.text);
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
        if (p->io.fd >= 0)
            close(p->io.fd);
        bw_timer_cancel(p->loop, &p->interval);
        bw_timer_cancel(p->loop, &p->timeout);
    }
    free(h->probes);
    free(h);
}
