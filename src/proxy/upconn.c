/* Upstream connections: creation, the per-worker keepalive pools (most
 * recently used first, capped by the upstream's `keepalive`), and closing.
 * A pooled connection is closed as soon as the upstream closes it or sends
 * anything, so a request is rarely handed a dead connection; it is closed by
 * bulwark after the upstream's keepalive_timeout idle, and once it has
 * carried keepalive_requests requests. */
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "net/tls.h"
#include "proxy/session-t.h"
#include "proxy/session.h"

static void upconn_free_cb(struct bw_deferred *d)
{
    struct bw_upconn *u = (struct bw_upconn *)((char *)d - offsetof(struct bw_upconn, dfr));
    free(u);
}

void bw__pool_unlink(struct bw_upconn *u)
{
    struct bw_upstream_local *l = &u->ws->ups[u->upstream];
    if (u->pool_prev)
        u->pool_prev->pool_next = u->pool_next;
    else
        l->idle[u->server] = u->pool_next;
    if (u->pool_next)
        u->pool_next->pool_prev = u->pool_prev;
    u->pool_next = u->pool_prev = NULL;
    l->nidle--;
}

void bw__upconn_close(struct bw_upconn *u)
{
    if (u->closed)
        return;
    u->closed = true;
    if (!u->owner && (u->pool_prev || u->ws->ups[u->upstream].idle[u->server] == u))
        bw__pool_unlink(u);
    bw_timer_cancel(&u->pw->w->loop, &u->timer);
    if (u->tls) {
        if (u->tls_up && !u->tls_broken)
            bw_tls_close_notify(u->ssl);
        bw_tls_conn_free(u->ssl);
        u->tls = false;
    }
    bw_io_close(&u->pw->w->loop, &u->io);
    bw_loop_defer(&u->pw->w->loop, &u->dfr);
    /* Last: this may free the view (and its pools) if it was retired. */
    bw_wsnap_unpin(u->pw, u->ws);
}

static void upconn_idle_timeout(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct bw_upconn *u = (struct bw_upconn *)((char *)t - offsetof(struct bw_upconn, timer));
    bw__upconn_close(u);
}

static void upconn_io(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    (void)loop;
    struct bw_upconn *u = (struct bw_upconn *)io;
    if (!u->owner) {
        /* Pooled: the upstream closing (or sending anything) ends it. */
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            bw__upconn_close(u);
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->rd = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->hup = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        u->wr = true;
    if (u->tls_rd_wants_wr && (ev & EPOLLOUT)) {
        u->tls_rd_wants_wr = false;
        u->rd = true;
    }
    if (u->tls_wr_wants_rd && (ev & EPOLLIN)) {
        u->tls_wr_wants_rd = false;
        u->wr = true;
    }
    bw__session_pump(u->owner);
}

/* Returns the connection to its pool, or closes it when the pool is full. */
void bw__upconn_release(struct bw_upconn *u, bool reusable)
{
    struct bw_proxy_worker *pw = u->pw;
    struct bw_upstream_local *l = &u->ws->ups[u->upstream];
    const struct bw_config_upstream *cu = l->rt->cfg;
    u->owner = NULL;
    /* A connection whose upstream already hung up gives no further event
     * while pooled: it would be handed to the next request dead. Nor is one
     * of a configuration being replaced pooled again. */
    if (!reusable || u->hup || u->eof || l->nidle >= cu->keepalive ||
        u->requests >= cu->keepalive_requests || u->pw->w->draining || u->ws != pw->cur ||
        bw_io_buffered(&pw->w->loop, &u->io)) {
        bw__upconn_close(u);
        return;
    }
    u->rd = u->wr = false;
    u->reused = false;
    u->pool_prev = NULL;
    u->pool_next = l->idle[u->server];
    if (u->pool_next)
        u->pool_next->pool_prev = u;
    l->idle[u->server] = u;
    l->nidle++;
    if (bw_timer_set(&pw->w->loop, &u->timer, cu->keepalive_timeout_ms) != BW_OK)
        bw__upconn_close(u);
}

void bw_upconn_close_idle(struct bw_wsnap *ws)
{
    /* Pin while closing: the last close would otherwise free ws under us. */
    ws->pins++;
    for (size_t i = 0; i < ws->snap->cfg->nupstreams; i++) {
        struct bw_upstream_local *l = &ws->ups[i];
        for (size_t k = 0; k < l->rt->nservers; k++)
            while (l->idle[k])
                bw__upconn_close(l->idle[k]);
    }
    ws->pins--;
}

void bw_upconn_close_idle_all(struct bw_proxy_worker *pw)
{
    bw_upconn_close_idle(pw->cur);
    for (struct bw_wsnap *ws = pw->retired; ws;) {
        struct bw_wsnap *next = ws->next_retired;
        bw_upconn_close_idle(ws);
        ws = next;
    }
}

struct bw_upconn *bw__upconn_new(struct bw_session *s, size_t upstream, size_t server, int fd)
{
    struct bw_upconn *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->io.fd = fd;
    u->io.cb = upconn_io;
    u->dfr.fn = upconn_free_cb;
    u->pw = s->pw;
    u->ws = bw_wsnap_pin(s->ws);
    u->upstream = upstream;
    u->server = server;
    bw_timer_init(&u->timer, upconn_idle_timeout);
    return u;
}
