/* Downstream sessions and the upstream connections serving them. See
 * session.h for the flow. Everything here runs on the session's worker.
 *
 * Readiness is edge-triggered (net/loop.h): c_rd/c_wr (client) and rd/wr on
 * the upstream connection remember what epoll last reported, and are cleared
 * when a read or write comes back short. bw__session_pump() then makes all the
 * progress the current readiness allows, in every direction, and returns.
 * Each I/O callback only records readiness and calls the pump. */
#include "proxy/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "net/proxy_protocol.h"
#include "net/tls.h"
#include "proxy/client_ip.h"
#include "http/uri.h"
#include "proxy/headers.h"

/* Bytes a lingering close reads and discards before giving up, and for how
 * long: enough for a client to receive an error response before our close
 * turns into a reset that could destroy it. */
enum { LINGER_BYTES = 64 * 1024, LINGER_MS = 2000 };

/* Forwarding rounds (each up to a buffer each way) a session may run for
 * one event before yielding to the other connections of its worker. */
enum { MAX_ROUNDS = 16 };

#include "proxy/session-t.h"

/* A body held back by limits.body_buffer_bytes must fit beside the head. */
_Static_assert(BW_CONFIG_BODY_BUFFER_MAX * 2 <= BW_SMALL_BUF,
               "limits.body_buffer_bytes must fit in half a small buffer");

static void session_close(struct bw_session *s);

static struct bw_loop *LOOP(struct bw_session *s)
{
    return &s->pw->w->loop;
}

static const struct bw_config *CFG(struct bw_session *s)
{
    return s->ws->snap->cfg;
}

/* ---- idle sessions ------------------------------------------------------- */

/* A session that holds no request: waiting for its first request (before
 * any byte of it, or of a TLS handshake) or its next one, or lingering
 * after its last response. At limits.max_connections the one idle longest
 * is closed to make room for a new connection, as nginx reuses such
 * connections. A session with a request, or a partial head, is never
 * closed for that. */
static bool reclaimable(const struct bw_session *s)
{
    switch (s->state) {
    case S_IDLE:
    case S_LINGER:
        return true;
    case S_TLS_HANDSHAKE:
        return !s->tls_hello;
    case S_PROXY_HEADER:
    case S_HEAD:
    case S_EXCHANGE:
    case S_TUNNEL:
    case S_RESPOND:
        return false;
    }
    return false;
}

/* Puts the session on its worker's idle list, or takes it off, after its
 * state changed. A session joins at the head: the tail is idle longest. */
static void idle_update(struct bw_session *s)
{
    struct bw_proxy_worker *pw = s->pw;
    bool want = !s->closed && reclaimable(s);
    if (want == s->in_idle)
        return;
    s->in_idle = want;
    if (want) {
        s->idle_prev = NULL;
        s->idle_next = pw->idle_head;
        if (pw->idle_head)
            pw->idle_head->idle_prev = s;
        else
            pw->idle_tail = s;
        pw->idle_head = s;
        return;
    }
    if (s->idle_prev)
        s->idle_prev->idle_next = s->idle_next;
    else
        pw->idle_head = s->idle_next;
    if (s->idle_next)
        s->idle_next->idle_prev = s->idle_prev;
    else
        pw->idle_tail = s->idle_prev;
    s->idle_next = s->idle_prev = NULL;
}

static void set_state(struct bw_session *s, enum sess_state st)
{
    s->state = st;
    idle_update(s);
}

/* ---- buffers ------------------------------------------------------------ */

static struct bw_buf *buf_get(struct bw_proxy_worker *pw)
{
    return bw_buf_get(&pw->small);
}

static struct bw_buf *buf_put(struct bw_proxy_worker *pw, struct bw_buf *b)
{
    if (!b)
        return NULL;
    return bw_buf_put(b->cap == pw->small.buf_size ? &pw->small : &pw->large, b);
}

/* Moves a full small buffer's bytes into a large one. false: already large,
 * or out of memory. */
static bool buf_grow(struct bw_proxy_worker *pw, struct bw_buf **bp)
{
    struct bw_buf *b = *bp;
    if (b->cap >= pw->large.buf_size)
        return false;
    struct bw_buf *nb = bw_buf_get(&pw->large);
    if (!nb)
        return false;
    size_t n = bw_buf_len(b);
    memcpy(nb->data, bw_buf_head(b), n);
    nb->end = n;
    buf_put(pw, b);
    *bp = nb;
    return true;
}

/* ---- timers ------------------------------------------------------------- */

static void arm(struct bw_session *s, enum timeout_kind k, uint64_t ms)
{
    s->tkind = k;
    if (bw_timer_set(LOOP(s), &s->timer, ms) != BW_OK) {
        BW_ERRORF("out of memory arming a timer; closing a connection");
        session_close(s);
    }
}

/* ---- requests ----------------------------------------------------------- */

/* Request timings feed only the access log: without one, no clock reads. */
static void stamp(struct bw_session *s, struct timespec *ts)
{
    if (s->pw->log_ring)
        clock_gettime(CLOCK_MONOTONIC, ts);
}

/* Per-request state comes from a per-worker free list: no malloc per
 * request in steady state, and none held by idle connections. */
enum { MAX_FREE_REQUESTS = 1024 };

static struct request *request_get(struct bw_proxy_worker *pw)
{
    struct request *r = pw->free_requests;
    if (r) {
        pw->free_requests = r->next_free;
        pw->nfree_requests--;
    } else {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
    }
    /* 1.2 KiB, half of it text buffers and the response-phase copy of the
     * request: those are written before they are read, so they are not
     * cleared here, only emptied. */
    memset(r, 0, offsetof(struct request, client_text));
    r->client_text[0] = r->peer_text[0] = r->method_text[0] = r->path_text[0] = '\0';
    r->server = -1;
    r->start_ms = pw->w->loop.now_ms;
    return r;
}

static void request_put(struct bw_proxy_worker *pw, struct request *r)
{
    if (!r)
        return;
    bw_arena_reset(&r->rarena);
    if (pw->nfree_requests >= MAX_FREE_REQUESTS) {
        free(r);
        return;
    }
    r->next_free = pw->free_requests;
    pw->free_requests = r;
    pw->nfree_requests++;
}

static void free_request_cache(struct bw_proxy_worker *pw)
{
    while (pw->free_requests) {
        struct request *r = pw->free_requests;
        pw->free_requests = r->next_free;
        free(r);
    }
    pw->nfree_requests = 0;
}

/* ---- closing ------------------------------------------------------------ */

/* Lets go of the session's upstream connection: back to its pool when
 * reusable, else closed. Attaching one (connect_upstream) counted a request
 * in flight on its server for least_conn; this is the one place that
 * uncounts it. */
static void detach_upstream(struct bw_session *s, bool reusable)
{
    struct bw_upconn *u = s->up;
    if (!u)
        return;
    s->up = NULL;
    u->ws->ups[u->upstream].active[u->server]--;
    bw__upconn_release(u, reusable);
}

static void session_free_cb(struct bw_deferred *d)
{
    struct bw_session *s = (struct bw_session *)((char *)d - offsetof(struct bw_session, dfr));
    free(s);
}

static void session_close(struct bw_session *s)
{
    if (s->closed)
        return;
    s->closed = true;
    struct bw_proxy_worker *pw = s->pw;
    /* A response cut short (the upstream failed or timed out mid-body, a
     * send timeout) must not end with close_notify: that says "this is
     * all", and a response delimited by the close would then look whole
     * (RFC 8446 §6.1; nginx closes such connections without it too). A
     * finished response has already let go of its request. */
    bool cut = s->req && s->req->resp_started && s->state != S_TUNNEL;
    /* A body the client reads until the close (HTTP/1.0 or an upstream's
     * close-delimited one) would look whole if cut short with a FIN: a
     * reset says it is not (the client reads what arrived, then the
     * error), where Content-Length and chunked framing say it already. */
    if (cut && !s->req->rbody.framed &&
        (s->req->rbody.kind == BW_BODY_UNTIL_CLOSE || s->req->rbody.dechunk)) {
        struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(s->io.fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    }
    idle_update(s);
    detach_upstream(s, false);
    if (s->req) {
        /* Nothing sent: nginx's codes, "client closed request", or (the
         * drain's deadline passed) "closed without a response". */
        if (s->req->status == 0 && s->req->method_text[0])
            s->req->status = s->req->cut_by_shutdown ? 444 : 499;
        bw__request_log(s);
        request_put(pw, s->req);
        s->req = NULL;
    }
    s->cbuf = buf_put(pw, s->cbuf);
    s->hbuf = buf_put(pw, s->hbuf);
    s->ubuf = buf_put(pw, s->ubuf);
    bw_timer_cancel(LOOP(s), &s->timer);
    bw_loop_unpost(LOOP(s), &s->task);
    if (s->tls) {
        if (s->tls_up && !s->tls_broken && !cut && s->state != S_LINGER)
            bw_tls_close_notify(s->ssl);
        bw_tls_conn_free(s->ssl);
        s->tls = false;
    }
    bw_io_close(LOOP(s), &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        pw->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    bw_loop_defer(LOOP(s), &s->dfr);
    bw_stat_inc(&pw->stats.closed);
    bw_worker_conn_closed(pw->w);
    bw_wsnap_unpin(pw, s->ws);
}

/* Stops sending, then reads and discards what the client still sends for a
 * short while, so that closing does not reset the connection under a
 * response the client has not read yet. Not needed when the whole request
 * was read and nothing more is waiting (as nginx decides): then it closes
 * at once, without the extra shutdown, read and wakeup. */
static void session_linger(struct bw_session *s, bool request_read)
{
    if (request_read && !(s->tls && bw_tls_pending(s->ssl)) && !bw_io_buffered(LOOP(s), &s->io)) {
        char c;
        ssize_t n = recv(s->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            session_close(s); /* sends close_notify on TLS */
            return;
        }
    }
    /* TLS: close_notify first, so the client knows the response is whole. */
    if (s->tls && s->tls_up && !s->tls_broken)
        bw_tls_close_notify(s->ssl);
    if (bw_io_shutdown_wr(LOOP(s), &s->io) != 0) {
        session_close(s);
        return;
    }
    set_state(s, S_LINGER);
    s->linger_read = 0;
    s->hbuf = buf_put(s->pw, s->hbuf);
    s->ubuf = buf_put(s->pw, s->ubuf);
    arm(s, T_LINGER, LINGER_MS);
    bw__session_pump(s);
}

static void linger_step(struct bw_session *s)
{
    char sink[4096];
    while (s->c_rd) {
        ssize_t n = bw_io_recv(LOOP(s), &s->io, sink, sizeof sink);
        if (n > 0) {
            s->linger_read += (size_t)n;
            if (s->linger_read > LINGER_BYTES) {
                session_close(s);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EAGAIN)
                s->c_rd = false;
            continue;
        }
        session_close(s); /* EOF or error: the client is done */
        return;
    }
}

/* ---- responses of our own ----------------------------------------------- */

/* Keeps why the request failed for its access log line (`error`); the
 * latest reason wins. */
static void note_error(struct request *r, const char *why)
{
    if (!r || !why)
        return;
    size_t n = strnlen(why, sizeof r->error_text);
    memcpy(r->error_text, why, n);
    r->error_len = (uint8_t)n;
}

/* Answers the current request with status and closes the connection after.
 * Only valid while no byte of a final response has gone to the client, and
 * no interim one is half written: after a whole 1xx a final response may
 * still follow (RFC 9110 §15.2), and a bare close would read as the
 * client's own failure (a 499 in the access log). */
static void respond_error(struct bw_session *s, uint16_t status, const char *why)
{
    struct request *r = s->req;
    if (r && r->resp_started && (r->resp_head_done || s->h_dest == H_CLIENT)) {
        note_error(r, why);
        session_close(s);
        return;
    }
    detach_upstream(s, false);
    if (why)
        BW_DEBUGF("responding %u: %s", (unsigned)status, why);
    note_error(r, why);
    s->ubuf = buf_put(s->pw, s->ubuf);
    if (!s->hbuf)
        s->hbuf = buf_get(s->pw);
    if (!s->hbuf) {
        session_close(s);
        return;
    }
    s->hbuf->start = s->hbuf->end = 0;
    s->respond_keep = false;
    const char *extra = status == 503 ? "Retry-After: 1\r\n" : NULL;
    size_t n =
        bw_build_error_response(s->hbuf->data, s->hbuf->cap, status, true, r && r->is_head, extra);
    if (n == 0) {
        session_close(s);
        return;
    }
    s->hbuf->end = n;
    s->h_off = 0;
    s->h_dest = H_CLIENT;
    if (r) {
        r->status = status;
        r->resp_started = true;
        r->cont = NULL;
        r->cont_len = 0;
        r->rfwd.active = false;
    }
    set_state(s, S_RESPOND);
    arm(s, T_SEND, CFG(s)->limits.send_timeout_ms);
    bw__session_pump(s);
}

/* Answers the current request with a response of our own chosen by a rule
 * (block, redirect, rate limit) or a module's failure policy, and closes the
 * connection after it, as for errors: the request body, if any, is never
 * read, so nothing of it can be taken for a next request. */
static void respond_own(struct bw_session *s, uint16_t status, bw_slice extra, bool has_body,
                        bw_slice body)
{
    struct request *r = s->req;
    detach_upstream(s, false);
    /* A rule's answer (a block, a 429, a redirect) keeps the connection when
     * nothing of the request is left unread: a rate-limited client is not
     * made to reconnect for every refusal. HTTP/1.0 clients are closed. */
    s->respond_keep = r->keep_alive && r->body.framed && !r->qfwd.active && !r->http10 &&
                      !r->upgrade && !s->draining;
    s->ubuf = buf_put(s->pw, s->ubuf);
    if (!s->hbuf)
        s->hbuf = buf_get(s->pw);
    if (!s->hbuf) {
        session_close(s);
        return;
    }
    s->hbuf->start = s->hbuf->end = 0;
    bool close = !s->respond_keep;
    size_t n = bw_build_own_response(s->hbuf->data, s->hbuf->cap, status, close, r->is_head, extra,
                                     has_body, body);
    if (n == 0 && buf_grow(s->pw, &s->hbuf))
        n = bw_build_own_response(s->hbuf->data, s->hbuf->cap, status, close, r->is_head, extra,
                                  has_body, body);
    if (n == 0) {
        s->respond_keep = false;
        respond_error(s, 500, "rule response does not fit a head buffer");
        return;
    }
    s->hbuf->end = n;
    s->h_off = 0;
    s->h_dest = H_CLIENT;
    r->status = status;
    r->resp_started = true;
    r->cont = NULL;
    r->cont_len = 0;
    r->rfwd.active = false;
    set_state(s, S_RESPOND);
    arm(s, T_SEND, CFG(s)->limits.send_timeout_ms);
    bw__session_pump(s);
}

static void note_rule(struct request *r, const struct bw_rules_hook *h)
{
    if (!h->has_rule)
        return;
    r->log_has_rule = true;
    r->log_ruleset = h->ruleset;
    r->log_rule = h->rule;
    r->log_action = h->action;
}

/* The bot_score module: bot.score for the rules, or the module's failure
 * policy. False when the policy is to refuse the request (fail-closed). A
 * killed module is not a failure: the score is unknown and the request goes
 * on. */
static bool run_bot(struct bw_session *s, struct bw_request_view *view)
{
    const struct bw_bot_rt *b = &s->ws->snap->bot;
    struct bw_worker_stats *st = &s->pw->stats;
    if (atomic_load_explicit(&b->killed, memory_order_relaxed)) {
        bw_stat_inc(&st->bot_killed);
        return true;
    }
    if (s->ws->has_bot) {
        struct bw_bot_result res =
            bw_bot_score(b->model, view, &s->ws->rules.arena, &s->ws->bot.scratch);
        switch (res.outcome) {
        case BW_BOT_SCORED:
            view->bot_score = (struct bw_rv_opt_int){.known = true, .value = res.u.scored.score};
            s->req->has_bot_score = true;
            s->req->bot_score = (uint8_t)res.u.scored.score;
            bw_stat_inc(&st->bot_scored);
            return true;
        case BW_BOT_FAILED:
        case BW_BOT_OUTCOME__COUNT:
            break;
        }
    }
    bw_stat_inc(&st->bot_failures[b->on_error]);
    switch (b->on_error) {
    case BW_ON_ERROR_OPEN:
        return true;
    case BW_ON_ERROR_CLOSED:
    case BW_ON_ERROR__COUNT:
        break;
    }
    return false;
}

/* ---- request start ------------------------------------------------------- */

static bool is_idempotent(enum bw_http_method m)
{
    switch (m) {
    case BW_METHOD_GET:
    case BW_METHOD_HEAD:
    case BW_METHOD_PUT:
    case BW_METHOD_DELETE:
    case BW_METHOD_OPTIONS:
    case BW_METHOD_TRACE:
        return true;
    case BW_METHOD_POST:
    case BW_METHOD_CONNECT:
    case BW_METHOD_PATCH:
    case BW_METHOD_OTHER:
    case BW_METHOD__COUNT:
        return false;
    }
    return false;
}

static uint32_t request_hash_key(const struct bw_config_upstream *cu,
                                 const struct bw_http_request *req, bw_slice path,
                                 const struct request *r)
{
    switch (cu->hash_field) {
    case BW_HASH_IP_SRC:
        return bw_hash32(r->client_text, strnlen(r->client_text, sizeof r->client_text));
    case BW_HASH_HOST: {
        /* The name http.host sees, so every spelling of a host (case, port,
         * trailing dot) goes to the same server. */
        bw_slice h = bw_http_host_name(req->host);
        char lower[256];
        if (h.len > sizeof lower)
            return bw_hash32(h.ptr, h.len);
        for (size_t i = 0; i < h.len; i++)
            lower[i] = bw_ascii_lower(h.ptr[i]);
        return bw_hash32(lower, h.len);
    }
    case BW_HASH_URI_PATH:
        return bw_hash32(path.ptr, path.len);
    case BW_HASH_URI:
        return bw_hash32(req->target.ptr, req->target.len);
    case BW_HASH_HEADER: {
        const struct bw_http_header *h =
            bw_http_find_header(req->headers, req->nheaders, cu->hash_header);
        return h ? bw_hash32(h->value.ptr, h->value.len) : 0;
    }
    case BW_HASH__COUNT:
        break;
    }
    return 0;
}

/* Dotted-quad text of an IPv4 address, NUL-terminated (at most 16 bytes). */
static void format_ipv4(const unsigned char *b, char *out)
{
    char *p = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

/* Every request formats its peer: inet_ntop goes through sprintf, so the
 * common IPv4 case is done here (same text as inet_ntop). */
static void format_addr(const struct sockaddr_storage *ss, char *out)
{
    if (ss->ss_family == AF_INET) {
        format_ipv4((const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr, out);
        return;
    }
    struct bw_client_addr a;
    memcpy(&a.ss, ss, sizeof a.ss);
    bw_client_addr_format(&a);
    memcpy(out, a.text, sizeof a.text);
}

static bool connect_upstream(struct bw_session *s, const char *last_why);

/* The head of a request is complete and valid: decide where it goes and
 * build what the upstream will receive. */
static void start_request(struct bw_session *s, struct bw_http_request *hq)
{
    const struct bw_config *cfg = CFG(s);
    struct request *r = s->req;
    r->method = hq->method_id;
    r->http10 = hq->version_minor == 0;
    r->keep_alive = hq->keep_alive && !s->draining;
    r->idempotent = is_idempotent(hq->method_id);
    r->is_head = hq->method_id == BW_METHOD_HEAD;
    r->upgrade = hq->upgrade;
    r->client_ended = s->c_hup;
    r->bytes_in = hq->head_len;
    size_t ml =
        hq->method.len < sizeof r->method_text - 1 ? hq->method.len : sizeof r->method_text - 1;
    memcpy(r->method_text, hq->method.ptr, ml);
    r->method_text[ml] = '\0';
    size_t pl = hq->target.len < sizeof r->path_text - 1 ? hq->target.len : sizeof r->path_text - 1;
    memcpy(r->path_text, hq->target.ptr, pl);
    r->path_text[pl] = '\0';
    if (s->pw->log_ring)
        bw__request_log_head(r, hq);

    /* Who the client is. */
    format_addr(&s->peer, r->peer_text);
    struct bw_client_addr client;
    memcpy(&client.ss, &s->peer, sizeof client.ss);
    memcpy(client.text, r->peer_text, sizeof client.text);
    bw_client_ip_from_headers(&cfg->client_ip, s->peer_trusted, hq->headers, hq->nheaders, &client);
    memcpy(r->client_text, client.text, sizeof r->client_text);

    r->body.kind = hq->body_kind;
    r->body.remaining = hq->content_length;
    if (r->body.kind == BW_BODY_LENGTH && r->body.remaining == 0)
        r->body.kind = BW_BODY_NONE;
    bw_chunked_init(&r->body.ch);
    /* A chunked body goes upstream in framing of our own: only the data the
     * decoder accepted, in plain hex sizes, without extensions or trailers,
     * so the upstream cannot read the client's framing another way. */
    r->body.rechunk = r->body.kind == BW_BODY_CHUNKED;
    r->body.framed = r->body.kind == BW_BODY_NONE;

    /* A reverse proxy does not open tunnels: an origin that accepted a
     * CONNECT would turn a pooled connection into one, and the next
     * client's request would go down it. Refused before the rules see it;
     * the connection is closed since tunnel bytes may follow. */
    if (hq->method_id == BW_METHOD_CONNECT) {
        bw_buf_consume(s->cbuf, hq->head_len);
        respond_error(s, 501, "CONNECT is not proxied");
        return;
    }
    if (cfg->limits.body_bytes && r->body.kind == BW_BODY_LENGTH &&
        hq->content_length > cfg->limits.body_bytes) {
        bw_buf_consume(s->cbuf, hq->head_len);
        respond_error(s, 413, "Content-Length over limits.body_bytes");
        return;
    }

    /* Request-phase rules, then the route: one evaluation context, so each
     * field is extracted once for both. */
    struct bw_proxy_worker *pw = s->pw;
    /* Not zero-initialised: its 2 KiB of header text would be cleared on
     * every request; the trivial path sets the two fields read below. */
    struct bw_rules_hook hook;
    if (s->ws->snap->rules.trivial) {
        hook.route = 0;
        hook.edits = (struct bw_head_edits){.nops = 0, .has_path = false};
    } else {
        struct bw_request_view view;
        bw_rules_view_request(&s->ws->rules, &view, hq, &client.ss, s->tls);
        if (s->ws->snap->bot.enabled && !run_bot(s, &view)) {
            bw_buf_consume(s->cbuf, hq->head_len);
            respond_own(s, s->ws->snap->bot.error_status, BW_SLICE_EMPTY, true,
                        BW_SLICE_LIT("the bot_score module failed for this request\n"));
            return;
        }
        bw_rules_request_init(&r->rules_st);
        bw_rules_on_request(&s->ws->rules, &view, LOOP(s)->now_ms, &r->rules_st, &hook);
        note_rule(r, &hook);
        switch (hook.kind) {
        case BW_RULES_HOOK_CONTINUE:
            break;
        case BW_RULES_HOOK_RESPOND:
            bw_buf_consume(s->cbuf, hq->head_len);
            respond_own(s, hook.status, bw_slice_make(hook.extra, hook.extra_len), hook.has_body,
                        hook.body);
            return;
        case BW_RULES_HOOK_NO_ROUTE:
            bw_buf_consume(s->cbuf, hq->head_len);
            respond_error(s, 404, "no route matched");
            return;
        case BW_RULES_HOOK__COUNT:
            break;
        }
        if (s->ws->snap->rules.has_response_rules) {
            bw_arena_init(&r->rarena, BW_RULES_REQUEST_ARENA_BLOCK, BW_RULES_REQUEST_ARENA_CAP);
            r->has_rview = bw_rules_view_copy(&r->rarena, &view, &r->rview) == BW_OK;
        }
    }
    /* Normalised only when a hash reads the path. */
    bw_slice path = s->ws->snap->needs_path
                        ? bw_uri_normalize_path(hq->path, pw->scratch_path, pw->scratch_path_cap)
                        : hq->path;
    r->routed = true;
    r->route = hook.route;
    r->upstream = cfg->routes[hook.route].upstream;
    const struct bw_config_upstream *cu = &cfg->upstreams[r->upstream];
    if (cu->balance == BW_BALANCE_HASH)
        r->hash_key = request_hash_key(cu, hq, path, r);

    /* Build the upstream head now, while the parsed header views are valid. */
    char xffbuf[1024];
    struct bw_upstream_head_params hp = {
        .xff_prefix = s->peer_trusted ? bw_join_xff(hq, xffbuf, sizeof xffbuf) : BW_SLICE_EMPTY,
        .peer_trusted = s->peer_trusted,
        .peer_text = bw_slice_make(r->peer_text, strnlen(r->peer_text, sizeof r->peer_text)),
        .proto = s->tls ? BW_SLICE_LIT("https") : BW_SLICE_LIT("http"),
        .default_host = cu->name,
        .edits = hook.edits,
    };
    if (!s->hbuf)
        s->hbuf = buf_get(s->pw);
    if (!s->hbuf) {
        session_close(s);
        return;
    }
    struct bw_head_out out = {.buf = s->hbuf->data, .cap = s->hbuf->cap};
    if (!bw_build_upstream_request(&out, hq, &hp)) {
        if (!buf_grow(s->pw, &s->hbuf)) {
            bw_buf_consume(s->cbuf, hq->head_len);
            respond_error(s, 431, "upstream request head too large");
            return;
        }
        out = (struct bw_head_out){.buf = s->hbuf->data, .cap = s->hbuf->cap};
        if (!bw_build_upstream_request(&out, hq, &hp)) {
            bw_buf_consume(s->cbuf, hq->head_len);
            respond_error(s, 431, "upstream request head too large");
            return;
        }
    }
    s->hbuf->start = 0;
    s->hbuf->end = out.len;
    s->h_off = 0;
    s->h_dest = H_UP;
    bw_buf_consume(s->cbuf, hq->head_len);
    memset(&s->scan, 0, sizeof s->scan);

    if (hq->expect_continue && r->body.kind != BW_BODY_NONE && bw_buf_len(s->cbuf) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        r->cont = cont;
        r->cont_len = sizeof cont - 1;
        r->cont_sent = true;
    }

    stamp(s, &r->t_upstream);
    set_state(s, S_EXCHANGE);
    /* limits.body_buffer_bytes (config.h): a larger body, or a chunked
     * one, is streamed. */
    if (r->body.kind == BW_BODY_LENGTH && r->body.remaining <= cfg->limits.body_buffer_bytes &&
        bw_buf_len(s->cbuf) < r->body.remaining) {
        /* A small body is read whole before an upstream connection is
         * taken, as nginx buffers bodies: streamed, a client sending one
         * byte per client_body_timeout held an upstream connection (and a
         * worker of the application behind it) for hours, and a few hundred
         * such clients took all of them. */
        r->body_wait = true;
        arm(s, T_CLIENT_BODY, cfg->limits.client_body_timeout_ms);
        if (!s->closed)
            bw__session_pump(s);
        return;
    }
    if (!connect_upstream(s, NULL))
        return;
    bw__session_pump(s);
}

/* ---- upstream connect and retry ----------------------------------------- */

/* Picks a server and attaches a pooled or new connection to the session
 * (always a new one once the request met a stale pooled one, skip_pool).
 * last_why: how the previous attempt failed (NULL for the first). Returns
 * false when the session has already been answered or closed. */
static bool connect_upstream(struct bw_session *s, const char *last_why)
{
    struct request *r = s->req;
    struct bw_upstream_local *l = &s->ws->ups[r->upstream];
    const struct bw_config_upstream *cu = l->rt->cfg;
    char why_buf[128];
    for (;;) {
        bool ejected = false;
        long idx = bw_balance_pick(l, LOOP(s)->now_ms, r->hash_key, &r->tried, &ejected);
        if (idx < 0) {
            if (!r->attempts) {
                respond_error(s, 503,
                              bw_balance_any_full(l)
                                  ? "every upstream server is down or at its max_conns"
                                  : "no healthy upstream server");
                return false;
            }
            /* nginx says "no live upstreams"; the reason of the last
             * attempt comes first, since it is what the operator fixes. */
            const char *left = r->tried.ejected ? "no live upstream server left (one attempt on "
                                                  "an ejected server per request)"
                                                : "no upstream server left to try";
            char why[sizeof r->error_text];
            if (snprintf(why, sizeof why, "%s; %s", last_why ? last_why : "upstream failed", left) <
                0)
                why[0] = '\0'; /* encoding error only: a long reason is just cut */
            respond_error(s, r->fail_status ? r->fail_status : 502, why);
            return false;
        }
        r->server = idx;
        r->picked_ejected = ejected;
        if (ejected)
            r->tried.ejected = true;
        if (r->attempts++)
            bw_stat_inc(&s->pw->stats.upstream_retries);
        bw_tried_add(&r->tried, (size_t)idx);
        l->active[idx]++;
        struct bw_upconn *u = r->skip_pool ? NULL : l->idle[idx];
        if (u) {
            bw__pool_unlink(u);
            bw_timer_stop(LOOP(s), &u->timer);
            u->owner = s;
            u->requests++;
            u->reused = true;
            u->rd = false;
            u->wr = true;
            s->up = u;
            arm(s, T_UP_WRITE, cu->write_timeout_ms);
            return true;
        }
        const struct bw_sockaddr *a = &cu->servers[idx].addr;
        int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            l->active[idx]--;
            BW_ERRORF("upstream socket: %s", strerror(errno));
            respond_error(s, 502, "socket() failed");
            return false;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
        if (rc != 0 && errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            l->active[idx]--;
            bw_server_report_failure(l->rt, (size_t)idx, LOOP(s)->now_ms, strerror(e));
            BW_ERRORF("upstream %.*s server %s: connect: %s", (int)cu->name.len, cu->name.ptr,
                      a->text, strerror(e));
            snprintf(why_buf, sizeof why_buf, "connect: %s", strerror(e));
            last_why = why_buf;
            /* Nothing was sent: any method may go to the next server. */
            continue;
        }
        u = bw__upconn_new(s, r->upstream, (size_t)idx, fd);
        bw_error err;
        /* Plain connections go through the ring (when the loop has one);
         * TLS ones stay on epoll, where OpenSSL reads the socket itself. */
        bw_status added = !u            ? BW_ERR
                          : cu->has_tls ? bw_loop_add(LOOP(s), &u->io, &err)
                                        : bw_loop_attach(LOOP(s), &u->io, rc != 0, &err);
        if (added != BW_OK) {
            close(fd);
            if (u)
                bw_wsnap_unpin(s->pw, u->ws);
            free(u);
            l->active[idx]--;
            respond_error(s, 502, "out of memory");
            return false;
        }
        u->owner = s;
        u->requests = 1;
        u->connected = rc == 0;
        u->wr = rc == 0;
        s->up = u;
        if (cu->has_tls) {
            const struct bw_server_rt *sv = &l->rt->servers[idx];
            struct bw_tls_peer peer = {
                .has_sni = cu->tls.has_sni, .sni = cu->tls.sni.ptr, .ip = sv->ip};
            bw_error terr;
            if (bw_tls_client_conn_new(l->rt->tls, fd, &peer, &u->ssl, &terr) != BW_OK) {
                BW_ERRORF("%s", terr.msg);
                detach_upstream(s, false);
                respond_error(s, 502, "out of memory for upstream TLS");
                return false;
            }
            u->tls = true;
            /* The handshake is not under way yet: until the connect completes
             * nothing is "connected", whatever connect() said. */
            u->connected = false;
        }
        arm(s, T_CONNECT, cu->connect_timeout_ms);
        return true;
    }
}

/* How far a failed attempt got, which decides whether the request may be
 * sent again (docs/config.md, "Retries"). */
enum up_failure {
    /* It reached no server: connect refused or timed out, TLS handshake
     * failed. Retried whatever the method, as nginx and HAProxy do. */
    UF_UNSENT,
    /* A pooled connection the upstream had closed between requests, found
     * so before any response byte: not the server's fault. Retried, if
     * idempotent, on a new connection. */
    UF_STALE,
    /* The server may have seen the request (closed or reset before a
     * whole response head, an invalid head): retried only when
     * idempotent and no body byte was written. */
    UF_SEEN,
    /* A read or write timeout: the server may still be working on it, and
     * a slow server would get every request twice. Never retried, as in
     * HAProxy and Envoy (nginx's default proxy_next_upstream retries it). */
    UF_TIMEOUT,
};

/* The upstream connection failed before a final response head went to the
 * client. Retries on another server (or the same one on a new connection)
 * if `kind` and the request allow it; otherwise answers status. count: a
 * failure of the server (passive health, the error log). */
static void upstream_failed(struct bw_session *s, uint16_t status, const char *why,
                            enum up_failure kind, bool count)
{
    struct request *r = s->req;
    struct bw_upstream_local *l = &s->ws->ups[r->upstream];
    const struct bw_config_upstream *cu = l->rt->cfg;
    r->fail_status = status;
    detach_upstream(s, false);
    if (count && r->server >= 0) {
        bw_server_report_failure(l->rt, (size_t)r->server, LOOP(s)->now_ms, why);
        BW_ERRORF("upstream %.*s server %s: %s", (int)cu->name.len, cu->name.ptr,
                  cu->servers[r->server].addr.text, why);
    }
    /* Body bytes not yet written are still in the client buffer and go out
     * again on the next connection; once any was written, no retry. */
    bool resendable = !r->resp_started && r->body_sent == 0;
    bool can_retry = false;
    switch (kind) {
    case UF_UNSENT:
        can_retry = resendable;
        break;
    case UF_STALE:
        can_retry = resendable && r->idempotent;
        if (can_retry) {
            /* The server may be picked again (which does not use up the
             * request's attempt on an ejected one), and on a new
             * connection: its other pooled ones were likely closed by the
             * same idle timeout. */
            r->tried.bits[r->server / 64] &= ~(1ull << (r->server % 64));
            if (r->picked_ejected)
                r->tried.ejected = false;
            r->skip_pool = true;
        }
        break;
    case UF_SEEN:
        can_retry = resendable && r->idempotent;
        break;
    case UF_TIMEOUT:
        break;
    }
    if (!can_retry || r->attempts >= 1 + cu->nservers) {
        respond_error(s, status, why);
        return;
    }
    s->h_off = 0;
    s->h_dest = H_UP;
    if (!connect_upstream(s, why))
        return;
    bw__session_pump(s);
}

/* The upstream failed after the response head went to the client. The
 * client connection is cut, so that it cannot take a short body for a whole
 * one; the failure is logged, counted for the server (passive health and
 * bulwark_upstream_failures_total, as one before the head is) and kept for
 * the access log line, whose status is the one already sent. */
static void upstream_cut(struct bw_session *s, const char *why)
{
    struct request *r = s->req;
    struct bw_upstream_local *l = &s->ws->ups[r->upstream];
    const struct bw_config_upstream *cu = l->rt->cfg;
    if (r->server >= 0) {
        bw_server_report_failure(l->rt, (size_t)r->server, LOOP(s)->now_ms, why);
        BW_ERRORF("upstream %.*s server %s: %s", (int)cu->name.len, cu->name.ptr,
                  cu->servers[r->server].addr.text, why);
    }
    note_error(r, why);
    session_close(s);
}

/* ---- writing -------------------------------------------------------------- */

enum io_result { IO_PROGRESS, IO_BLOCKED, IO_ERROR };

/* writev of up to five pieces; advances nothing itself. */
static ssize_t send_iov(struct bw_loop *loop, struct bw_io *io, struct iovec *iov, int n)
{
    for (;;) {
        ssize_t w = bw_io_sendv(loop, io, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        return w;
    }
}

static size_t take(size_t *have, size_t *want)
{
    size_t n = *have < *want ? *have : *want;
    *have -= n;
    *want -= n;
    return n;
}

/* Frames the region of f as one chunk of its own, and ends the body after it
 * when last (RFC 9112 §7.1): "<hex>\r\n" data "\r\n", then "0\r\n\r\n". */
static void frame_chunk(struct fwd *f, size_t len, bool last)
{
    static const char hex[] = "0123456789abcdef";
    f->pre_len = f->post_len = 0;
    if (len) {
        char digits[16];
        int n = 0;
        for (size_t v = len; v; v >>= 4)
            digits[n++] = hex[v & 15];
        while (n)
            f->pre[f->pre_len++] = digits[--n];
        f->pre[f->pre_len++] = '\r';
        f->pre[f->pre_len++] = '\n';
        memcpy(f->post, "\r\n", 2);
        f->post_len = 2;
    }
    if (last) {
        memcpy(f->post + f->post_len, "0\r\n\r\n", 5);
        f->post_len += 5;
    }
}

/* Bytes of f still to write: framing of our own included. */
static size_t fwd_left(const struct fwd *f)
{
    return f->pre_len + f->len + f->post_len;
}

/* Drops the first n (<= *len) bytes of a small framing array. */
static size_t take_framing(size_t *have, char *a, uint8_t *len)
{
    size_t n = *have < *len ? *have : *len;
    memmove(a, a + n, *len - n);
    *len = (uint8_t)(*len - n);
    *have -= n;
    return n;
}

/* Computes the next region of src to forward for a body. false on a framing
 * error (err filled). */
static bool body_next(struct body *b, struct bw_buf *src, struct fwd *f, struct bw_http_error *err)
{
    size_t avail = bw_buf_len(src);
    const char *p = bw_buf_head(src);
    *f = (struct fwd){0};
    switch (b->kind) {
    case BW_BODY_NONE:
        b->framed = true;
        return true;
    case BW_BODY_LENGTH: {
        size_t n = avail;
        if ((uint64_t)n > b->remaining)
            n = (size_t)b->remaining;
        b->remaining -= n;
        b->bytes += n;
        if (b->remaining == 0)
            b->framed = true;
        *f = (struct fwd){.off = 0, .len = n, .consume = n, .active = n > 0};
        return true;
    }
    case BW_BODY_CHUNKED: {
        if (b->dechunk || b->rechunk) {
            /* Everything the buffer holds is decoded at once, and the data
             * of its chunks is moved together (over framing already read)
             * to go out as one region: one write, and with rechunk one chunk
             * of our own, per buffer. Forwarded chunk by chunk, a body of
             * 1-byte chunks cost a system call and a packet upstream per 6
             * bytes the client sent. The first span stays where it is, so
             * a body of large chunks is not copied. */
            char *w = bw_buf_head(src);
            size_t used = 0, off = 0, len = 0;
            while (used < avail && !b->framed) {
                bw_slice data = BW_SLICE_EMPTY;
                bool done = false;
                long c = bw_chunked_decode(&b->ch, p + used, avail - used, &data, &done, err);
                if (c < 0)
                    return false;
                if (data.len) {
                    size_t at = (size_t)(data.ptr - p);
                    if (len == 0)
                        off = at;
                    else if (at != off + len)
                        memmove(w + off + len, data.ptr, data.len);
                    len += data.len;
                }
                b->bytes += data.len;
                used += (size_t)c;
                b->framed = done;
                if (c == 0)
                    break;
            }
            *f = (struct fwd){.off = off, .len = len, .consume = used, .active = used > 0};
            if (b->rechunk)
                frame_chunk(f, len, b->framed);
            return true;
        }
        size_t total = 0;
        while (total < avail && !b->framed) {
            bw_slice data = BW_SLICE_EMPTY;
            bool done = false;
            long c = bw_chunked_decode(&b->ch, p + total, avail - total, &data, &done, err);
            if (c < 0)
                return false;
            b->bytes += data.len;
            total += (size_t)c;
            if (done)
                b->framed = true;
            if (c == 0)
                break;
        }
        *f = (struct fwd){.off = 0, .len = total, .consume = total, .active = total > 0};
        return true;
    }
    case BW_BODY_UNTIL_CLOSE:
        b->bytes += avail;
        *f = (struct fwd){.off = 0, .len = avail, .consume = avail, .active = avail > 0};
        return true;
    case BW_BODY__COUNT:
        break;
    }
    return true;
}

/* Largest TLS record payload: what one SSL_write may send. */
enum { TLS_RECORD = 16384 };

/* send_iov's contract over TLS: bytes written from the front of iov, or -1
 * with errno EAGAIN when nothing could be. Writes whole records until the
 * socket pushes back, so a short count means the socket is full, as for
 * sendmsg. Each SSL_write gets the first min(left, 16 KiB) bytes of what is
 * pending: when one has to be repeated (WANT_*), the next call passes the
 * same bytes again, as OpenSSL requires, since nothing advanced. */
static ssize_t tls_send_iov(struct ssl_st *ssl, bool *wr_wants_rd, bool *broken,
                            const struct iovec *iov, int n, size_t total)
{
    char tmp[TLS_RECORD];
    size_t done = 0;
    int i = 0;
    size_t ioff = 0; /* into iov[i] */
    while (done < total) {
        while (i < n && ioff == iov[i].iov_len) {
            i++;
            ioff = 0;
        }
        size_t want = total - done < TLS_RECORD ? total - done : TLS_RECORD;
        const char *src;
        if (iov[i].iov_len - ioff >= want) {
            src = (const char *)iov[i].iov_base + ioff;
        } else {
            size_t got = 0;
            for (int k = i; k < n && got < want; k++) {
                size_t from = k == i ? ioff : 0;
                size_t m = iov[k].iov_len - from;
                if (m > want - got)
                    m = want - got;
                memcpy(tmp + got, (const char *)iov[k].iov_base + from, m);
                got += m;
            }
            src = tmp;
        }
        size_t w = 0;
        enum bw_tls_result tr = bw_tls_write(ssl, src, want, &w);
        switch (tr) {
        case BW_TLS_OK:
            done += w;
            /* Advance the cursor by w. */
            for (size_t left = w; left;) {
                size_t m = iov[i].iov_len - ioff;
                if (m > left)
                    m = left;
                ioff += m;
                left -= m;
                if (ioff == iov[i].iov_len && left) {
                    i++;
                    ioff = 0;
                }
            }
            continue;
        case BW_TLS_WANT_READ:
            *wr_wants_rd = true;
            break;
        case BW_TLS_WANT_WRITE:
            break;
        case BW_TLS_CLOSED:
        case BW_TLS_FAILED:
            *broken = true;
            if (done)
                return (ssize_t)done;
            errno = EPIPE;
            return -1;
        }
        break;
    }
    if (done)
        return (ssize_t)done;
    errno = EAGAIN;
    return -1;
}

/* Writes pending bytes towards the upstream: the request head, then body
 * bytes from the client buffer. */
static enum io_result write_upstream(struct bw_session *s)
{
    struct request *r = s->req;
    struct bw_upconn *u = s->up;
    struct fwd *q = &r->qfwd;
    struct iovec iov[4];
    int n = 0;
    size_t hlen = 0;
    if (s->h_dest == H_UP) {
        hlen = bw_buf_len(s->hbuf) - s->h_off;
        iov[n++] = (struct iovec){bw_buf_head(s->hbuf) + s->h_off, hlen};
    }
    if (q->active && q->pre_len)
        iov[n++] = (struct iovec){q->pre, q->pre_len};
    if (q->active && q->len)
        iov[n++] = (struct iovec){bw_buf_head(s->cbuf) + q->off, q->len};
    if (q->active && q->post_len)
        iov[n++] = (struct iovec){q->post, q->post_len};
    if (n == 0)
        return IO_BLOCKED;
    size_t total = hlen + (q->active ? fwd_left(q) : 0);
    ssize_t w = u->tls ? tls_send_iov(u->ssl, &u->tls_wr_wants_rd, &u->tls_broken, iov, n, total)
                       : send_iov(LOOP(s), &u->io, iov, n);
    if (w < 0) {
        if (errno == EAGAIN) {
            u->wr = false;
            return IO_BLOCKED;
        }
        return IO_ERROR;
    }
    u->connected = true;
    size_t left = (size_t)w;
    if (s->h_dest == H_UP) {
        s->h_off += take(&left, &hlen);
        if (hlen == 0) {
            /* The head stays in hbuf until a response arrives: a retry on
             * another connection sends it again. */
            s->h_dest = H_NONE;
            s->h_off = 0;
        }
    }
    if (left && q->active) {
        /* Framing counts as body sent: once any is written, no retry. */
        r->body_sent += take_framing(&left, q->pre, &q->pre_len);
        size_t x = take(&left, &q->len);
        q->off += x;
        r->body_sent += x;
        r->body_sent += take_framing(&left, q->post, &q->post_len);
    }
    if (q->active && fwd_left(q) == 0) {
        bw_buf_consume(s->cbuf, q->consume);
        r->bytes_in += q->consume; /* what the client sent, framing included */
        q->active = false;
    }
    if ((size_t)w < total)
        u->wr = false;
    return IO_PROGRESS;
}

/* Writes pending bytes towards the client: our 100 Continue, a response
 * head, then body bytes from the upstream buffer. */
static enum io_result write_client(struct bw_session *s)
{
    struct request *r = s->req;
    struct fwd *f = r ? &r->rfwd : NULL;
    struct iovec iov[5];
    int n = 0;
    size_t clen = 0, hlen = 0, blen = 0;
    if (r && r->cont_len) {
        clen = r->cont_len;
        iov[n++] = (struct iovec){(void *)r->cont, clen};
    }
    if (s->h_dest == H_CLIENT) {
        hlen = bw_buf_len(s->hbuf) - s->h_off;
        iov[n++] = (struct iovec){bw_buf_head(s->hbuf) + s->h_off, hlen};
    }
    if (f && f->active) {
        if (f->pre_len)
            iov[n++] = (struct iovec){f->pre, f->pre_len};
        if (f->len)
            iov[n++] = (struct iovec){bw_buf_head(s->ubuf) + f->off, f->len};
        if (f->post_len)
            iov[n++] = (struct iovec){f->post, f->post_len};
        blen = fwd_left(f);
    }
    if (n == 0)
        return IO_BLOCKED;
    size_t total = clen + hlen + blen;
    ssize_t w = s->tls ? tls_send_iov(s->ssl, &s->tls_wr_wants_rd, &s->tls_broken, iov, n, total)
                       : send_iov(LOOP(s), &s->io, iov, n);
    if (w < 0) {
        if (errno == EAGAIN) {
            s->c_wr = false;
            return IO_BLOCKED;
        }
        return IO_ERROR;
    }
    size_t left = (size_t)w;
    if (r && r->bytes_out + left > r->bytes_out)
        r->bytes_out += left;
    if (clen) {
        size_t x = take(&left, &r->cont_len);
        r->cont += x;
    }
    if (hlen) {
        s->h_off += take(&left, &hlen);
        if (hlen == 0) {
            s->h_dest = H_NONE;
            s->h_off = 0;
            s->hbuf->start = s->hbuf->end = 0;
        }
    }
    if (left && f && f->active) {
        take_framing(&left, f->pre, &f->pre_len);
        size_t x = take(&left, &f->len);
        f->off += x;
        take_framing(&left, f->post, &f->post_len);
    }
    if (f && f->active && fwd_left(f) == 0) {
        bw_buf_consume(s->ubuf, f->consume);
        f->active = false;
    }
    if ((size_t)w < total)
        s->c_wr = false;
    return IO_PROGRESS;
}

/* Reads from fd into *bp (taking a buffer if needed). Returns >0 bytes, 0 on
 * EOF, -1 blocked (ready flag cleared), -2 error, -3 buffer full. */
/* A buffer in *bp with room to read into: 0, or -2 (out of memory) or -3
 * (full) as read_into returns them. */
/* write_client, closing the session on an error: false when it did.
 * *progress is set when bytes went out. */
static bool flush_client(struct bw_session *s, bool *progress)
{
    switch (write_client(s)) {
    case IO_PROGRESS:
        *progress = true;
        return true;
    case IO_BLOCKED:
        return true;
    case IO_ERROR:
        session_close(s);
        return false;
    }
    return false;
}

static long read_room(struct bw_proxy_worker *pw, struct bw_buf **bp)
{
    if (!*bp) {
        *bp = buf_get(pw);
        if (!*bp)
            return -2;
    }
    if (bw_buf_room(*bp) == 0) {
        bw_buf_compact(*bp);
        if (bw_buf_room(*bp) == 0)
            return -3;
    }
    return 0;
}

static long read_into(struct bw_proxy_worker *pw, struct bw_io *io, struct bw_buf **bp, bool *ready,
                      bool hup)
{
    long rr = read_room(pw, bp);
    if (rr < 0)
        return rr;
    struct bw_buf *b = *bp;
    size_t room = bw_buf_room(b);
    for (;;) {
        ssize_t n = bw_io_recv(&pw->w->loop, io, bw_buf_tail(b), room);
        if (n > 0) {
            b->end += (size_t)n;
            /* A short read drained the socket: wait for the next edge. Not
             * after a hangup, which sends no further edge: the EOF behind
             * the data must still be read. */
            if ((size_t)n < room && !hup)
                *ready = false;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            *ready = false;
            return -1;
        }
        return -2;
    }
}

/* read_into through TLS: reads until the buffer is full or TLS has nothing
 * more, since a record already taken off the socket raises no new edge.
 * Same results as read_into. */
static long tls_read_into(struct bw_proxy_worker *pw, struct ssl_st *ssl, struct bw_buf **bp,
                          bool *ready, bool *rd_wants_wr, bool *broken)
{
    long rr = read_room(pw, bp);
    if (rr < 0)
        return rr;
    struct bw_buf *b = *bp;
    long total = 0;
    while (bw_buf_room(b) > 0) {
        size_t n = 0;
        enum bw_tls_result tr = bw_tls_read(ssl, bw_buf_tail(b), bw_buf_room(b), &n);
        switch (tr) {
        case BW_TLS_OK:
            b->end += n;
            total += (long)n;
            continue;
        case BW_TLS_WANT_WRITE:
            *rd_wants_wr = true;
            *ready = false;
            return total ? total : -1;
        case BW_TLS_WANT_READ:
            *ready = false;
            return total ? total : -1;
        case BW_TLS_CLOSED:
            return total;
        case BW_TLS_FAILED:
            *broken = true;
            return total ? total : -2;
        }
    }
    return total;
}

/* read_into for the client connection: through TLS on a TLS listener. */
static long read_client(struct bw_session *s)
{
    if (!s->tls)
        return read_into(s->pw, &s->io, &s->cbuf, &s->c_rd, s->c_hup);
    return tls_read_into(s->pw, s->ssl, &s->cbuf, &s->c_rd, &s->tls_rd_wants_wr, &s->tls_broken);
}

/* read_into for the upstream connection, through TLS when it has it. */
static long read_upstream(struct bw_session *s, struct bw_upconn *u)
{
    if (!u->tls)
        return read_into(s->pw, &u->io, &s->ubuf, &u->rd, u->hup);
    return tls_read_into(s->pw, u->ssl, &s->ubuf, &u->rd, &u->tls_rd_wants_wr, &u->tls_broken);
}

/* ---- the request head ------------------------------------------------------ */

static void next_request(struct bw_session *s);

/* A request record for an answer to something that is no request (bad
 * bytes, plain HTTP to a TLS port): the access log and the status counts
 * see it, with "-" for method and path. */
static void unparsed_request(struct bw_session *s)
{
    if (!s->req)
        s->req = request_get(s->pw);
    if (!s->req)
        return;
    stamp(s, &s->req->t_start);
    format_addr(&s->peer, s->req->peer_text);
    memcpy(s->req->client_text, s->req->peer_text, sizeof s->req->client_text);
    memcpy(s->req->method_text, "-", 2);
    memcpy(s->req->path_text, "-", 2);
}

static void head_step(struct bw_session *s)
{
    struct bw_proxy_worker *pw = s->pw;
    const struct bw_config *cfg = CFG(s);
    for (;;) {
        if (s->cbuf && bw_buf_len(s->cbuf) > 0) {
            if (s->state == S_IDLE) {
                set_state(s, S_HEAD);
                if (s->fresh) {
                    /* First request: the deadline set at accept stands, so
                     * a byte sent just before it cannot buy a second one. */
                    s->tkind = T_HEADER;
                } else {
                    arm(s, T_HEADER, cfg->limits.client_header_timeout_ms);
                    if (s->closed)
                        return;
                }
            }
            if (s->scan.scanned == 0 && s->cbuf->start > 0 &&
                bw_buf_room(s->cbuf) < s->cbuf->cap / 2)
                bw_buf_compact(s->cbuf);
            struct bw_http_request hq = {.headers = pw->scratch_headers,
                                         .headers_cap = cfg->limits.headers};
            struct bw_http_error herr = {0};
            enum bw_http_parse_result pr =
                bw_http_parse_request(bw_buf_head(s->cbuf), bw_buf_len(s->cbuf),
                                      &s->ws->snap->limits, &s->scan, &hq, &herr);
            switch (pr) {
            case BW_HTTP_DONE:
                if (!s->req) {
                    s->req = request_get(pw);
                    if (!s->req) {
                        session_close(s);
                        return;
                    }
                }
                /* Between requests the session moves to the configuration
                 * new requests use (the head limits it was parsed with are
                 * restart-only, so they are the same). */
                if (!s->up) {
                    struct bw_wsnap *cur = bw_proxy_current(pw);
                    if (s->ws != cur) {
                        struct bw_wsnap *old = s->ws;
                        s->ws = bw_wsnap_pin(cur);
                        bw_wsnap_unpin(pw, old);
                    }
                }
                stamp(s, &s->req->t_start);
                start_request(s, &hq);
                return;
            case BW_HTTP_ERROR:
                unparsed_request(s);
                BW_DEBUGF("bad request: %u %s", (unsigned)herr.status,
                          herr.reason ? herr.reason : "");
                respond_error(s, herr.status, herr.reason);
                return;
            case BW_HTTP_PARTIAL:
                break;
            }
            if (bw_buf_room(s->cbuf) == 0) {
                bw_buf_compact(s->cbuf);
                if (bw_buf_room(s->cbuf) == 0 && !buf_grow(pw, &s->cbuf)) {
                    /* The parser enforces header_bytes, which fits a large
                     * buffer; reaching here means out of memory. */
                    session_close(s);
                    return;
                }
                memset(&s->scan, 0, sizeof s->scan); /* offsets moved */
            }
        }
        if (!s->c_rd)
            break;
        long n = read_client(s);
        if (n > 0)
            continue;
        if (n == -1)
            break;
        /* EOF or error between requests, or inside a head: just close (there
         * is nobody left to answer). */
        session_close(s);
        return;
    }
    if (s->state == S_IDLE && s->cbuf && bw_buf_len(s->cbuf) == 0)
        s->cbuf = buf_put(pw, s->cbuf);
}

/* ---- the exchange ------------------------------------------------------- */

static void finish_request(struct bw_session *s);

/* The upstream answered, but the head for the client does not fit. Not a
 * failure of the server, and never retried on another: building the client
 * head has overwritten the request head in hbuf, so a retry would send
 * another server the start of this response as its request; and another
 * server would answer the same. */
static void head_unrelayable(struct bw_session *s, const char *why)
{
    respond_error(s, 502, why);
}

/* Parses the response head in ubuf and prepares the client head. Returns
 * true on progress. */
static bool response_head_step(struct bw_session *s)
{
    struct bw_proxy_worker *pw = s->pw;
    struct request *r = s->req;
    const struct bw_config *cfg = CFG(s);
    if (s->h_dest != H_NONE)
        return false; /* our request head or a previous 1xx still going out */
    if (!s->ubuf || bw_buf_len(s->ubuf) == 0)
        return false;
    struct bw_http_response hr = {.headers = pw->scratch_headers,
                                  .headers_cap = cfg->limits.headers};
    struct bw_http_error herr = {0};
    enum bw_http_parse_result pr =
        bw_http_parse_response(bw_buf_head(s->ubuf), bw_buf_len(s->ubuf), &s->ws->snap->limits,
                               r->method, &s->scan, &hr, &herr);
    switch (pr) {
    case BW_HTTP_PARTIAL:
        if (bw_buf_room(s->ubuf) == 0) {
            bw_buf_compact(s->ubuf);
            if (bw_buf_room(s->ubuf) == 0) {
                if (!buf_grow(pw, &s->ubuf)) {
                    upstream_failed(s, 502, "response head too large", UF_SEEN, false);
                    return false;
                }
            }
            memset(&s->scan, 0, sizeof s->scan);
            return true;
        }
        return false;
    case BW_HTTP_ERROR:
        BW_ERRORF("upstream %s sent an invalid response: %s",
                  cfg->upstreams[r->upstream].servers[r->server].addr.text,
                  herr.reason ? herr.reason : "?");
        upstream_failed(s, 502, "invalid response", UF_SEEN, true);
        return false;
    case BW_HTTP_DONE:
        break;
    }
    if (!s->hbuf)
        s->hbuf = buf_get(pw);
    if (!s->hbuf) {
        session_close(s);
        return false;
    }
    /* A 101 is never interim: it ends HTTP on the connection. */
    bool interim = hr.status >= 100 && hr.status < 200 && hr.status != 101;
    if (interim) {
        /* RFC 9110 §15.2: no 1xx to an HTTP/1.0 client, which would take
         * it for the final response. */
        if (!(hr.status == 100 && r->cont_sent) && !r->http10) {
            struct bw_head_out out = {.buf = s->hbuf->data, .cap = s->hbuf->cap};
            if (!bw_build_client_response(&out, &hr, r->http10, true, false)) {
                head_unrelayable(s, "interim response head too large");
                return false;
            }
            s->hbuf->start = 0;
            s->hbuf->end = out.len;
            s->h_off = 0;
            s->h_dest = H_CLIENT;
            r->resp_started = true;
        }
        bw_buf_consume(s->ubuf, hr.head_len);
        memset(&s->scan, 0, sizeof s->scan);
        return true;
    }
    if (hr.status == 101 && (!r->upgrade || !hr.upgrade)) {
        /* One to a request that asked for none, or one that does not name
         * its protocol in Upgrade (RFC 9110 §15.2.2): passed on, the client
         * would tunnel what we still parse as HTTP. */
        upstream_failed(s, 502,
                        r->upgrade ? "101 Switching Protocols without an Upgrade header"
                                   : "101 Switching Protocols without an upgrade request",
                        UF_SEEN, true);
        return false;
    }
    stamp(s, &r->t_resp);
    r->have_upstream_time = true;
    bw_server_report_success(s->ws->ups[r->upstream].rt, (size_t)r->server);
    struct bw_head_edits redits = {.nops = 0, .has_path = false};
    if (s->ws->snap->rules.has_response_rules && hr.status != 101) {
        struct bw_rules_hook hook;
        if (r->has_rview) {
            bw_rules_on_response(&s->ws->rules, &r->rview, &hr, &r->rarena, LOOP(s)->now_ms,
                                 &r->rules_st, &hook);
        } else {
            /* The request could not be kept for this phase: a module failure. */
            hook = (struct bw_rules_hook){.kind = BW_RULES_HOOK_CONTINUE};
            bw_stat_inc(&s->ws->rules.stats->failures[s->ws->snap->rules.on_error]);
            if (s->ws->snap->rules.on_error == BW_ON_ERROR_CLOSED) {
                hook.kind = BW_RULES_HOOK_RESPOND;
                hook.status = s->ws->snap->rules.error_status;
            }
        }
        if (hook.has_rule && (hook.kind == BW_RULES_HOOK_RESPOND || !r->log_has_rule))
            note_rule(r, &hook);
        switch (hook.kind) {
        case BW_RULES_HOOK_CONTINUE:
        case BW_RULES_HOOK_NO_ROUTE: /* request phase only */
        case BW_RULES_HOOK__COUNT:
            redits = hook.edits;
            break;
        case BW_RULES_HOOK_RESPOND:
            /* The upstream's response is replaced: its connection, with the
             * body still on it, cannot be reused. */
            if (s->up)
                s->up->reused = false;
            r->keep_alive = false;
            respond_own(s, hook.status, bw_slice_make(hook.extra, hook.extra_len), hook.has_body,
                        hook.body);
            return false;
        }
    }
    if (r->http10 && hr.body_kind == BW_BODY_CHUNKED && hr.te_other) {
        /* Taking chunked off would leave the other coding (gzip) on the
         * bytes with nothing to say so: an HTTP/1.0 client has no
         * Transfer-Encoding. nginx refuses such a response as well. */
        upstream_failed(s, 502, "a transfer coding besides chunked, to an HTTP/1.0 client", UF_SEEN,
                        true);
        return false;
    }
    r->status = hr.status;
    r->rbody.kind = hr.body_kind;
    r->rbody.remaining = hr.content_length;
    bw_chunked_init(&r->rbody.ch);
    r->rbody.dechunk = hr.body_kind == BW_BODY_CHUNKED && r->http10;
    /* Chunked responses go on in framing of our own, as request bodies do:
     * extensions, trailers and odd size lines from the upstream stop here,
     * and a client (or a cache in front) parses what we checked. */
    r->rbody.rechunk = hr.body_kind == BW_BODY_CHUNKED && !r->http10;
    r->rbody.framed =
        hr.body_kind == BW_BODY_NONE || (hr.body_kind == BW_BODY_LENGTH && hr.content_length == 0);
    r->upstream_keep = hr.keep_alive;
    bool upgrading = hr.status == 101;
    if (hr.body_kind == BW_BODY_UNTIL_CLOSE || r->rbody.dechunk)
        r->keep_alive = false;
    if (!r->body.framed || r->qfwd.active)
        r->keep_alive = false; /* the request body is still arriving */
    struct bw_head_out out = {.buf = s->hbuf->data, .cap = s->hbuf->cap};
    if (!bw_build_client_response_ed(&out, &hr, r->http10, r->keep_alive || upgrading,
                                     r->rbody.dechunk, &redits)) {
        const char *why = redits.nops ? "response head too large with the response rules' fields"
                                      : "response head too large";
        if (!buf_grow(pw, &s->hbuf)) {
            head_unrelayable(s, why);
            return false;
        }
        out = (struct bw_head_out){.buf = s->hbuf->data, .cap = s->hbuf->cap};
        if (!bw_build_client_response_ed(&out, &hr, r->http10, r->keep_alive || upgrading,
                                         r->rbody.dechunk, &redits)) {
            head_unrelayable(s, why);
            return false;
        }
    }
    s->hbuf->start = 0;
    s->hbuf->end = out.len;
    s->h_off = 0;
    s->h_dest = H_CLIENT;
    r->resp_started = true;
    r->resp_head_done = true;
    bw_buf_consume(s->ubuf, hr.head_len);
    memset(&s->scan, 0, sizeof s->scan);
    if (upgrading) {
        set_state(s, S_TUNNEL);
        r->keep_alive = false;
    }
    return true;
}

/* Drives the TLS handshake of a new upstream connection. true once it is
 * up; false while it waits (flags cleared) or after it failed (the request
 * then went to upstream_failed: another server, or 502). */
static bool upstream_tls_up(struct bw_session *s, struct bw_upconn *u)
{
    u->tls_rd_wants_wr = u->tls_wr_wants_rd = false;
    errno = 0;
    enum bw_tls_result tr = bw_tls_handshake(u->ssl);
    int sys_errno = errno; /* a failed connect shows here, SO_ERROR is taken */
    switch (tr) {
    case BW_TLS_OK:
        u->tls_up = true;
        u->connected = true;
        return true;
    case BW_TLS_WANT_READ:
        u->rd = false;
        return false;
    case BW_TLS_WANT_WRITE:
        u->wr = false;
        return false;
    case BW_TLS_CLOSED:
    case BW_TLS_FAILED:
        break;
    }
    /* upstream_failed logs the reason before it returns: a local buffer does. */
    char msg[320], why[200];
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    const char *verr = bw_tls_verify_error(u->ssl);
    if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
        snprintf(msg, sizeof msg, "%s", strerror(soerr));
    else if (verr[0])
        snprintf(msg, sizeof msg, "TLS: the upstream's certificate was refused: %s", verr);
    else if (tr == BW_TLS_CLOSED)
        snprintf(msg, sizeof msg, "TLS handshake with the upstream failed: closed by the upstream");
    else if (!bw_tls_has_error() && sys_errno)
        snprintf(msg, sizeof msg, "%s", strerror(sys_errno));
    else
        snprintf(msg, sizeof msg, "TLS handshake with the upstream failed: %s",
                 bw_tls_last_error(why, sizeof why));
    u->tls_broken = true;
    upstream_failed(s, 502, msg, UF_UNSENT, true);
    return false;
}

/* Reads the rest of a small body (body_wait), answering Expect meanwhile,
 * then goes to the upstream with all of it. */
static void body_wait_step(struct bw_session *s)
{
    struct request *r = s->req;
    bool progress = false;
    if (r->cont_len && s->c_wr && !flush_client(s, &progress))
        return;
    while (bw_buf_len(s->cbuf) < r->body.remaining && s->c_rd) {
        long n = read_client(s);
        if (n > 0) {
            progress = true;
            continue;
        }
        if (n == -1)
            break;
        session_close(s); /* the client left in the middle of its body */
        return;
    }
    if (bw_buf_len(s->cbuf) >= r->body.remaining) {
        r->body_wait = false;
        stamp(s, &r->t_upstream); /* the wait was the client's, not the upstream's */
        if (connect_upstream(s, NULL))
            bw__session_pump(s);
        return;
    }
    if (progress)
        arm(s, T_CLIENT_BODY, CFG(s)->limits.client_body_timeout_ms);
}

static void exchange_step(struct bw_session *s)
{
    struct request *r = s->req;
    if (r->body_wait) {
        body_wait_step(s);
        return;
    }
    const struct bw_config *cfg = CFG(s);
    const struct bw_config_upstream *cu = &cfg->upstreams[r->upstream];
    bool any_progress = false;
    for (int rounds = 0;; rounds++) {
        if (rounds == MAX_ROUNDS) {
            /* Plenty done for one event: let other connections run, and
             * continue after this batch (no new edge would come). */
            bw_loop_post(LOOP(s), &s->task);
            break;
        }
        bool progress = false;
        struct bw_upconn *u = s->up;
        if (!u)
            return;
        if (u->tls && !u->tls_up) {
            /* Connecting: no event yet says how it went. */
            if (!u->wr && !u->rd)
                return;
            if (!upstream_tls_up(s, u))
                return;
            progress = true;
        }

        /* 1. Request head and body towards the upstream. */
        if (!r->qfwd.active && !r->body.framed && !r->resp_done && s->cbuf &&
            bw_buf_len(s->cbuf) > 0) {
            struct bw_http_error herr = {0};
            if (!body_next(&r->body, s->cbuf, &r->qfwd, &herr)) {
                respond_error(s, 400, herr.reason);
                return;
            }
            /* A chunk's size line already says how much is coming: refused
             * as soon as it is read (as nginx does), not once the data has
             * gone upstream. */
            uint64_t limit = cfg->limits.body_bytes;
            if (limit &&
                (r->body.bytes > limit || (r->body.kind == BW_BODY_CHUNKED &&
                                           r->body.ch.remaining > limit - r->body.bytes))) {
                respond_error(s, 413, "request body over limits.body_bytes");
                return;
            }
            if (r->qfwd.active && fwd_left(&r->qfwd) == 0) {
                bw_buf_consume(s->cbuf, r->qfwd.consume);
                r->bytes_in += r->qfwd.consume; /* framing only */
                r->qfwd.active = false;
            }
            progress = true;
        }
        /* Not after the upstream's end: the request has nowhere to go, and
         * a failed write must not cost the response already read. */
        if (u->wr && !u->eof && (s->h_dest == H_UP || r->qfwd.active)) {
            switch (write_upstream(s)) {
            case IO_PROGRESS:
                progress = true;
                break;
            case IO_BLOCKED:
                break;
            case IO_ERROR:
                if (!u->connected) {
                    upstream_failed(s, 502, strerror(errno), UF_UNSENT, true);
                } else if (u->reused && r->body_sent == 0) {
                    upstream_failed(s, 502, "pooled connection closed", UF_STALE, false);
                } else if (r->resp_started) {
                    session_close(s);
                } else {
                    upstream_failed(s, 502, strerror(errno), UF_SEEN, true);
                }
                return;
            }
            if (s->closed || s->state != S_EXCHANGE)
                return;
        }

        /* 2. More request body from the client. */
        if (!r->body.framed && !r->qfwd.active && s->c_rd && !r->resp_done) {
            long n = read_client(s);
            if (n > 0) {
                progress = true;
            } else if (n == 0 || n == -2) {
                /* The client left in the middle of its body. */
                session_close(s);
                return;
            }
        }

        /* 3. Response from the upstream. Its end of stream is acted on
         * only once what was read before it is parsed and forwarded: a
         * final head may still wait behind a 1xx going out to the client,
         * and a whole response behind its own head. */
        if (!r->resp_done && u->rd && !r->rfwd.active && !u->eof) {
            long n = read_upstream(s, u);
            if (n > 0) {
                progress = true;
                u->connected = true;
            } else if (n == 0 || n == -2) {
                bool nothing = !s->ubuf || bw_buf_len(s->ubuf) == 0;
                if (!r->resp_head_done && nothing) {
                    if (u->reused && r->body_sent == 0 && !r->qfwd.active) {
                        upstream_failed(s, 502, "pooled connection closed", UF_STALE, false);
                    } else if (!u->connected && n == -2) {
                        upstream_failed(s, 502, strerror(errno), UF_UNSENT, true);
                    } else {
                        upstream_failed(s, 502, "upstream closed before a complete response head",
                                        UF_SEEN, true);
                    }
                    return;
                }
                u->eof = true;
                u->eof_error = n == -2;
                r->upstream_keep = false;
                progress = true;
            }
        }
        if (!r->resp_head_done) {
            bool head_progress = response_head_step(s);
            if (head_progress)
                progress = true;
            if (s->closed || s->state == S_RESPOND)
                return;
            if (s->state == S_TUNNEL)
                return;
            if (!head_progress && !r->resp_head_done && s->h_dest == H_NONE && s->up &&
                s->up->eof) {
                /* Everything read before the end is parsed: the head is cut. */
                upstream_failed(s, 502, "upstream closed before a complete response head", UF_SEEN,
                                true);
                return;
            }
            if (r->resp_head_done && s->up && s->up->eof)
                r->upstream_keep = false;
        }

        /* 4. Response body towards the client. */
        if (r->resp_head_done && !r->rfwd.active && !r->rbody.framed &&
            (!s->ubuf || bw_buf_len(s->ubuf) == 0) && s->up && s->up->eof) {
            /* The upstream's end, with every byte before it forwarded. */
            if (r->rbody.kind == BW_BODY_UNTIL_CLOSE && !s->up->eof_error) {
                r->rbody.framed = true;
                progress = true;
            } else {
                upstream_cut(s, s->up->eof_error ? "reset in the middle of a response body"
                                                 : "closed in the middle of a response body");
                return;
            }
        }
        if (r->resp_head_done && !r->rfwd.active && !r->rbody.framed && s->ubuf &&
            bw_buf_len(s->ubuf) > 0) {
            struct bw_http_error herr = {0};
            if (!body_next(&r->rbody, s->ubuf, &r->rfwd, &herr)) {
                char why[sizeof r->error_text];
                if (snprintf(why, sizeof why, "malformed chunked body: %s",
                             herr.reason ? herr.reason : "?") < 0)
                    why[0] = '\0';
                if (r->bytes_out == 0) {
                    /* Not a byte of the response has gone out (its head is
                     * still queued): the client gets a 502, not a bare close. */
                    bw_server_report_failure(s->ws->ups[r->upstream].rt, (size_t)r->server,
                                             LOOP(s)->now_ms, why);
                    BW_ERRORF("upstream %s sent a %s", cu->servers[r->server].addr.text, why);
                    r->resp_started = false;
                    s->h_dest = H_NONE;
                    respond_error(s, 502, why);
                } else {
                    upstream_cut(s, why);
                }
                return;
            }
            if (r->rfwd.active && fwd_left(&r->rfwd) == 0) {
                bw_buf_consume(s->ubuf, r->rfwd.consume);
                r->rfwd.active = false;
            }
            progress = true;
        }
        if (s->c_wr && (r->cont_len || s->h_dest == H_CLIENT || r->rfwd.active)) {
            if (!flush_client(s, &progress) || s->closed)
                return;
        }

        /* 5. Done? */
        if (r->resp_head_done && r->rbody.framed && !r->rfwd.active && s->h_dest == H_NONE &&
            r->cont_len == 0) {
            r->resp_done = true;
            finish_request(s);
            return;
        }
        any_progress |= progress;
        if (!progress)
            break;
    }
    if (s->closed || s->state != S_EXCHANGE || !s->up)
        return;
    /* One timer, for whatever the exchange now waits on. It restarts on
     * progress: these are inactivity timeouts, as in nginx. */
    enum timeout_kind k;
    uint64_t ms;
    if (r->cont_len || s->h_dest == H_CLIENT || r->rfwd.active) {
        k = T_SEND;
        ms = cfg->limits.send_timeout_ms;
    } else if (!s->up->connected) {
        k = T_CONNECT;
        ms = cu->connect_timeout_ms;
    } else if (s->h_dest == H_UP || r->qfwd.active) {
        k = T_UP_WRITE;
        ms = cu->write_timeout_ms;
    } else if (!r->body.framed && !r->resp_head_done) {
        k = T_CLIENT_BODY;
        ms = cfg->limits.client_body_timeout_ms;
    } else {
        k = T_UP_READ;
        ms = cu->read_timeout_ms;
    }
    if (k != s->tkind || (any_progress && k != T_CONNECT))
        arm(s, k, ms);
}

/* The response is complete: log, return the upstream connection, and go on
 * with the next request or close. */
static void finish_request(struct bw_session *s)
{
    struct bw_proxy_worker *pw = s->pw;
    struct request *r = s->req;
    /* Bytes past the response (in ubuf, or read ahead by TLS) would be
     * taken for the next request's answer: such a connection is closed. */
    detach_upstream(s, r->upstream_keep && r->body.framed && !r->qfwd.active &&
                           (!s->ubuf || bw_buf_len(s->ubuf) == 0) &&
                           !(s->up && s->up->tls && bw_tls_pending(s->up->ssl)));
    bw__request_log(s);
    bool keep = r->keep_alive && r->body.framed && !r->qfwd.active && !s->draining;
    bool request_read = r->body.framed && !r->qfwd.active && (!s->cbuf || bw_buf_len(s->cbuf) == 0);
    s->fresh = false;
    request_put(pw, r);
    s->req = NULL;
    s->ubuf = buf_put(pw, s->ubuf);
    s->hbuf = buf_put(pw, s->hbuf);
    s->h_dest = H_NONE;
    memset(&s->scan, 0, sizeof s->scan);
    if (!keep) {
        s->cbuf = buf_put(pw, s->cbuf);
        session_linger(s, request_read);
        return;
    }
    next_request(s);
}

/* Back to waiting for a request; false when arming its timer closed the
 * session. */
static bool await_request(struct bw_session *s)
{
    set_state(s, S_IDLE);
    arm(s, T_IDLE, CFG(s)->limits.keepalive_timeout_ms);
    return !s->closed;
}

static void next_request(struct bw_session *s)
{
    /* Pipelined bytes already buffered are parsed at once. */
    if (await_request(s))
        head_step(s);
}

/* ---- tunnel (after 101) -------------------------------------------------- */

static void tunnel_step(struct bw_session *s)
{
    struct request *r = s->req;
    struct bw_upconn *u = s->up;
    const struct bw_config_upstream *cu = &CFG(s)->upstreams[r->upstream];
    for (int rounds = 0;; rounds++) {
        if (rounds == MAX_ROUNDS) {
            bw_loop_post(LOOP(s), &s->task);
            break;
        }
        bool progress = false;
        /* client -> upstream */
        if (!r->qfwd.active && s->cbuf && bw_buf_len(s->cbuf)) {
            size_t n = bw_buf_len(s->cbuf);
            r->qfwd = (struct fwd){.off = 0, .len = n, .consume = n, .active = true};
        }
        if (r->qfwd.active && u->wr) {
            enum io_result ir = write_upstream(s);
            if (ir == IO_ERROR) {
                session_close(s);
                return;
            }
            progress |= ir == IO_PROGRESS;
        }
        if (!r->qfwd.active && s->c_rd) {
            long n = read_client(s);
            if (n == 0 || n == -2) {
                session_close(s);
                return;
            }
            progress |= n > 0;
        }
        /* upstream -> client */
        if (!r->rfwd.active && s->ubuf && bw_buf_len(s->ubuf)) {
            size_t n = bw_buf_len(s->ubuf);
            r->rfwd = (struct fwd){.off = 0, .len = n, .consume = n, .active = true};
        }
        if ((r->rfwd.active || s->h_dest == H_CLIENT) && s->c_wr) {
            enum io_result ir = write_client(s);
            if (ir == IO_ERROR) {
                session_close(s);
                return;
            }
            progress |= ir == IO_PROGRESS;
        }
        if (!r->rfwd.active && u->rd) {
            long n = read_upstream(s, u);
            if (n == 0 || n == -2) {
                /* Flush what is left, then close. */
                if (!r->rfwd.active && s->h_dest == H_NONE) {
                    session_close(s);
                    return;
                }
            }
            progress |= n > 0;
        }
        if (progress)
            arm(s, T_TUNNEL, cu->read_timeout_ms);
        if (!progress || s->closed)
            break;
    }
}

/* ---- pump and events ----------------------------------------------------- */

static void tls_handshake_step(struct bw_session *s);

/* Sends a plain-HTTP 400 to a client that spoke HTTP to a TLS port, as
 * nginx does, instead of dropping it with an opaque handshake error. */
static void plain_http_on_tls(struct bw_session *s)
{
    bw_stat_inc(&s->pw->stats.tls_plain_http);
    bw_tls_conn_free(s->ssl);
    s->tls = false;
    unparsed_request(s);
    respond_error(s, 400, "plain HTTP sent to a TLS port");
}

/* The PROXY protocol header in front of a TLS handshake: peeked, then
 * exactly its bytes consumed, so none of the ClientHello behind it is
 * taken out of the socket where OpenSSL will read it. */
static void proxy_header_tls_step(struct bw_session *s)
{
    char pk[BW_PROXY_PROTOCOL_MAX_BYTES];
    ssize_t n = recv(s->io.fd, pk, sizeof pk, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        s->c_rd = false;
        return;
    }
    if (n <= 0) {
        session_close(s);
        return;
    }
    struct bw_pp_header pp;
    const char *why;
    enum bw_pp_result pr = bw_proxy_protocol_parse(pk, (size_t)n, &pp, &why);
    switch (pr) {
    case BW_PP_DONE:
        if (recv(s->io.fd, pk, pp.len, 0) != (ssize_t)pp.len) {
            session_close(s);
            return;
        }
        if (pp.has_source)
            memcpy(&s->peer, &pp.source, sizeof s->peer);
        set_state(s, S_TLS_HANDSHAKE);
        tls_handshake_step(s);
        return;
    case BW_PP_ERROR: {
        char peer[BW_IP_TEXT_MAX];
        format_addr(&s->peer, peer);
        BW_WARNF("closing connection from %s: %s", peer, why);
        session_close(s);
        return;
    }
    case BW_PP_PARTIAL:
        if ((size_t)n >= sizeof pk)
            session_close(s);
        else
            s->c_rd = false; /* the rest raises a new edge when it comes */
        return;
    }
}

static void tls_handshake_step(struct bw_session *s)
{
    if (!s->tls_hello) {
        /* A TLS connection opens with a handshake record (0x16). Looked at
         * before OpenSSL reads anything, whatever event brought us here. */
        unsigned char first;
        ssize_t n = recv(s->io.fd, &first, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            s->c_rd = false;
            return;
        }
        if (n <= 0) {
            session_close(s); /* closed (or reset) before saying anything */
            return;
        }
        if (first != 0x16) {
            plain_http_on_tls(s);
            return;
        }
        s->tls_hello = true;
        idle_update(s);
    }
    s->tls_rd_wants_wr = false;
    s->tls_wr_wants_rd = false;
    enum bw_tls_result tr = bw_tls_handshake(s->ssl);
    switch (tr) {
    case BW_TLS_OK:
        s->tls_up = true;
        bw_stat_inc(&s->pw->stats.tls_handshakes);
        if (bw_tls_resumed(s->ssl))
            bw_stat_inc(&s->pw->stats.tls_resumed);
        set_state(s, S_IDLE); /* the accept-time header deadline still runs */
        s->c_rd = true;       /* a request may have come with the last flight */
        head_step(s);
        return;
    case BW_TLS_WANT_READ:
        s->c_rd = false;
        return;
    case BW_TLS_WANT_WRITE:
        s->c_wr = false;
        return;
    case BW_TLS_CLOSED:
    case BW_TLS_FAILED: {
        char why[160];
        bw_stat_inc(&s->pw->stats.tls_failures);
        s->tls_broken = true;
        BW_DEBUGF("TLS handshake failed: %s", bw_tls_last_error(why, sizeof why));
        session_close(s);
        return;
    }
    }
}

static void proxy_header_step(struct bw_session *s)
{
    if (s->tls) {
        proxy_header_tls_step(s);
        return;
    }
    for (;;) {
        if (s->cbuf && bw_buf_len(s->cbuf)) {
            struct bw_pp_header pp;
            const char *why;
            enum bw_pp_result pr =
                bw_proxy_protocol_parse(bw_buf_head(s->cbuf), bw_buf_len(s->cbuf), &pp, &why);
            if (pr == BW_PP_DONE) {
                if (pp.has_source)
                    memcpy(&s->peer, &pp.source, sizeof s->peer);
                bw_buf_consume(s->cbuf, pp.len);
                set_state(s, S_IDLE); /* the accept-time header deadline still runs */
                head_step(s);
                return;
            }
            if (pr == BW_PP_ERROR) {
                char peer[BW_IP_TEXT_MAX];
                format_addr(&s->peer, peer);
                BW_WARNF("closing connection from %s: %s", peer, why);
                session_close(s);
                return;
            }
            if (bw_buf_len(s->cbuf) >= BW_PROXY_PROTOCOL_MAX_BYTES) {
                session_close(s);
                return;
            }
        }
        if (!s->c_rd)
            return;
        long n = read_client(s);
        if (n > 0)
            continue;
        if (n == -1)
            return;
        session_close(s);
        return;
    }
}

void bw__session_pump(struct bw_session *s)
{
    if (s->closed)
        return;
    switch (s->state) {
    case S_PROXY_HEADER:
        proxy_header_step(s);
        return;
    case S_TLS_HANDSHAKE:
        tls_handshake_step(s);
        return;
    case S_IDLE:
    case S_HEAD:
        head_step(s);
        return;
    case S_EXCHANGE:
        exchange_step(s);
        if (!s->closed && s->state == S_TUNNEL)
            tunnel_step(s);
        return;
    case S_TUNNEL:
        tunnel_step(s);
        return;
    case S_RESPOND: {
        bool wrote = false;
        if (s->c_wr && !flush_client(s, &wrote))
            return;
        if (s->h_dest == H_NONE) {
            struct request *r = s->req;
            bool request_read =
                r && r->body.framed && !r->qfwd.active && (!s->cbuf || bw_buf_len(s->cbuf) == 0);
            bw__request_log(s);
            request_put(s->pw, s->req);
            s->req = NULL;
            if (s->respond_keep) {
                s->respond_keep = false;
                s->fresh = false;
                s->hbuf = buf_put(s->pw, s->hbuf);
                memset(&s->scan, 0, sizeof s->scan);
                /* The next request is parsed from the loop, not from here:
                 * an answer of our own needs no I/O, so pipelined requests
                 * answered this way would otherwise recurse once each
                 * (head_step -> respond_own -> pump) until the stack
                 * overflowed. It also lets other connections run between
                 * them. */
                if (await_request(s))
                    bw_loop_post(LOOP(s), &s->task);
                return;
            }
            s->cbuf = buf_put(s->pw, s->cbuf);
            session_linger(s, request_read);
        }
        return;
    }
    case S_LINGER:
        linger_step(s);
        return;
    }
}

/* The client ended its side (FIN) while its request, all sent upstream,
 * waits for the response head. With nothing before the end, it is taken as
 * gone, as nginx does, so that a slow upstream's work for nobody is dropped
 * at once instead of at read_timeout; a client that half-closes right after
 * one request and still reads is the rare cost. A client that had ended
 * its side before this request began, or pipelined more requests before
 * its FIN (kept in cbuf), said all it had to say and is answered. Once the
 * response has started, a closed client is found by the next write. */
static bool client_gone(struct bw_session *s)
{
    const struct request *r = s->req;
    if (!r || r->client_ended || r->body_wait || !r->body.framed || r->qfwd.active ||
        r->resp_started)
        return false;
    bool more = s->cbuf && bw_buf_len(s->cbuf) > 0;
    for (;;) {
        long n = read_client(s);
        if (n > 0) {
            more = true;
            continue;
        }
        /* An error (a reset, a TLS connection cut without close_notify)
         * is as gone; no buffer to read into (-2 with none) says nothing. */
        return (n == 0 || (n == -2 && s->cbuf)) && !more;
    }
}

static void client_io(struct bw_loop *loop, struct bw_io *io, uint32_t ev)
{
    (void)loop;
    struct bw_session *s = (struct bw_session *)io;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->c_rd = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->c_hup = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->c_wr = true;
    /* TLS: a read that waited to write, or a write that waited to read. */
    if (s->tls_rd_wants_wr && (ev & EPOLLOUT)) {
        s->tls_rd_wants_wr = false;
        s->c_rd = true;
    }
    if (s->tls_wr_wants_rd && (ev & EPOLLIN)) {
        s->tls_wr_wants_rd = false;
        s->c_wr = true;
    }
    if ((ev & (EPOLLHUP | EPOLLERR)) && (s->state == S_EXCHANGE || s->state == S_TUNNEL)) {
        /* The client is gone (reset): nobody will read the response. */
        session_close(s);
        return;
    }
    if (s->c_hup && s->state == S_EXCHANGE && client_gone(s)) {
        session_close(s); /* logged 499; the upstream connection is closed */
        return;
    }
    bw__session_pump(s);
}

static void session_resume(struct bw_task *t)
{
    struct bw_session *s = (struct bw_session *)((char *)t - offsetof(struct bw_session, task));
    bw__session_pump(s);
}

static void session_timeout(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct bw_session *s = (struct bw_session *)((char *)t - offsetof(struct bw_session, timer));
    struct request *r = s->req;
    switch (s->tkind) {
    case T_NONE:
        return;
    case T_IDLE:
        if (s->state == S_TLS_HANDSHAKE) {
            bw_stat_inc(&s->pw->stats.tls_failures);
            bw_stat_inc(&s->pw->stats.tls_timeouts);
        }
        session_close(s);
        return;
    case T_LINGER:
    case T_DRAIN:
    case T_TUNNEL:
    case T_SEND:
        session_close(s);
        return;
    case T_HEADER:
        respond_error(s, 408, "client header timeout");
        return;
    case T_CLIENT_BODY:
        if (r && r->resp_started) {
            session_close(s);
            return;
        }
        respond_error(s, 408, "client body timeout");
        return;
    case T_CONNECT:
        upstream_failed(s, 504, "connect timeout", UF_UNSENT, true);
        return;
    case T_UP_WRITE:
    case T_UP_READ:
        if (r && !r->resp_head_done) {
            upstream_failed(
                s, 504, s->tkind == T_UP_WRITE ? "upstream write timeout" : "upstream read timeout",
                UF_TIMEOUT, true);
            return;
        }
        if (r && s->up) {
            upstream_cut(s, s->tkind == T_UP_WRITE
                                ? "upstream write timeout in the middle of a response body"
                                : "upstream read timeout in the middle of a response body");
            return;
        }
        session_close(s);
        return;
    }
}

void bw_session_accept(struct bw_proxy_worker *pw, size_t listener, int fd,
                       const struct sockaddr_storage *peer, socklen_t peer_len)
{
    (void)peer_len;
    struct bw_session *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        bw_worker_conn_closed(pw->w);
        return;
    }
    s->io.fd = fd;
    s->io.cb = client_io;
    s->dfr.fn = session_free_cb;
    s->task.fn = session_resume;
    s->fresh = true;
    s->pw = pw;
    s->ws = bw_wsnap_pin(bw_proxy_current(pw));
    bw_stat_inc(&pw->stats.accepted);
    memcpy(&s->peer, peer, sizeof s->peer);
    bw_timer_init(&s->timer, session_timeout);
    const struct bw_config *cfg = CFG(s);
    s->peer_trusted = cfg->client_ip.from != BW_CLIENT_IP_PEER &&
                      bw_client_ip_is_trusted(&cfg->client_ip, (const struct sockaddr *)peer);
    s->tls = listener < cfg->nlisten && cfg->listen[listener].has_tls;
    enum sess_state first = (cfg->client_ip.from == BW_CLIENT_IP_PROXY_PROTOCOL && s->peer_trusted)
                                ? S_PROXY_HEADER
                            : s->tls ? S_TLS_HANDSHAKE
                                     : S_IDLE;
    s->state = first;
    if (s->tls) {
        bw_error terr;
        if (bw_tls_conn_new(s->ws->snap->tls[listener], fd, &s->ssl, &terr) != BW_OK) {
            BW_ERRORF("%s; closing a connection", terr.msg);
            s->tls = false;
            close(fd);
            bw_stat_inc(&pw->stats.closed);
            bw_worker_conn_closed(pw->w);
            bw_wsnap_unpin(pw, s->ws);
            free(s);
            return;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->next = pw->sessions;
    if (s->next)
        s->next->prev = s;
    pw->sessions = s;
    idle_update(s);
    bw_error err;
    /* Plain HTTP goes through the ring (when the loop has one); TLS and the
     * PROXY protocol header, which peek at the socket, stay on epoll. */
    bw_status added = (s->tls || s->state != S_IDLE)
                          ? bw_loop_add(&pw->w->loop, &s->io, &err)
                          : bw_loop_attach(&pw->w->loop, &s->io, false, &err);
    if (added != BW_OK) {
        BW_ERRORF("%s", err.msg);
        session_close(s);
        return;
    }
    arm(s, T_IDLE, cfg->limits.client_header_timeout_ms);
    /* Edge-triggered: data that arrived with the connection reports no new
     * edge once registered, so start by reading. */
    s->c_rd = true;
    s->c_wr = true;
    bw__session_pump(s);
}

/* How far from the tail of the idle list to look for a session with no
 * request waiting: one whose request has arrived is only idle until the
 * loop parses it. */
enum { RECLAIM_LOOK = 8 };

/* Whether the bytes of a request wait on an idle session: buffered by us,
 * by TLS or by the ring, or in the socket with their event not handled yet.
 * Closing it would drop a request that has arrived. */
static bool request_waiting(struct bw_session *s)
{
    if (s->state == S_LINGER)
        return false; /* what arrives now is discarded anyway */
    if ((s->cbuf && bw_buf_len(s->cbuf)) || bw_io_buffered(LOOP(s), &s->io))
        return true;
    if (s->tls && s->tls_up && bw_tls_pending(s->ssl))
        return true;
    char c;
    return recv(s->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

bool bw_session_reclaim_idle(struct bw_proxy_worker *pw)
{
    struct bw_session *s = pw->idle_tail;
    for (int i = 0; s && i < RECLAIM_LOOK; i++, s = s->idle_prev) {
        if (request_waiting(s))
            continue;
        BW_WARNF("worker %u: limits.max_connections (%llu) reached; closing the connection idle "
                 "longest to make room",
                 pw->w->id, (unsigned long long)pw->w->max_conns);
        bw_stat_inc(&pw->stats.reclaimed);
        session_close(s);
        return true;
    }
    return false;
}

void bw_session_drain_all(struct bw_proxy_worker *pw)
{
    struct bw_session *s = pw->sessions;
    while (s) {
        struct bw_session *next = s->next;
        s->draining = true;
        if (s->state == S_IDLE || s->state == S_PROXY_HEADER || s->state == S_TLS_HANDSHAKE)
            session_close(s);
        else if (s->req)
            s->req->keep_alive = false;
        s = next;
    }
    bw_upconn_close_idle_all(pw);
}

void bw_session_close_all(struct bw_proxy_worker *pw)
{
    while (pw->sessions) {
        if (pw->sessions->req)
            pw->sessions->req->cut_by_shutdown = true;
        session_close(pw->sessions);
    }
    bw_upconn_close_idle_all(pw);
    free_request_cache(pw);
}
