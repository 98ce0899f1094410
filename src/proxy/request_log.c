/* The access log line of a request: one JSON object (DESIGN.md §3), pushed
 * to the worker's ring; see access_log.h for how it reaches the file. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "net/tls.h"
#include "proxy/session-t.h"

static size_t json_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (o + 2 > cap)
                break;
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            if (o + 6 > cap)
                break;
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            if (o + 1 > cap)
                break;
            out[o++] = (char)c;
        }
    }
    return o;
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* Counts the finished request for /metrics. */
static void count(struct bw_session *s, struct request *r)
{
    struct bw_proxy_worker *pw = s->pw;
    struct bw_worker_stats *st = &pw->stats;
    size_t cls = r->status >= 100 && r->status < 600 ? r->status / 100 : 0;
    bw_stat_inc(&st->responses[cls]);
    uint64_t now = pw->w->loop.now_ms;
    uint64_t ms = now > r->start_ms ? now - r->start_ms : 0;
    size_t b = 0;
    while (b < BW_LATENCY_BUCKETS && ms > bw_latency_le_ms[b])
        b++;
    bw_stat_inc(&st->latency[b]);
    atomic_store_explicit(&st->latency_sum_ms,
                          atomic_load_explicit(&st->latency_sum_ms, memory_order_relaxed) + ms,
                          memory_order_relaxed);
    const struct bw_snapshot *snap = s->ws->snap;
    size_t route = r->routed ? r->route : snap->cfg->nroutes;
    size_t row = pw->w->id < snap->nworkers ? pw->w->id : 0;
    bw_stat_inc(&snap->route_counts[row * snap->route_stride + route * 6 + cls]);
}

/* Cut at the buffer: a log line stays bounded whatever a client sends. */
static uint16_t keep_text(char *dst, size_t cap, bw_slice v)
{
    size_t n = v.len < cap ? v.len : cap;
    memcpy(dst, v.ptr, n);
    return (uint16_t)n;
}

void bw__request_log_head(struct request *r, const struct bw_http_request *hq)
{
    /* hq->host is also the authority of an absolute-form target: the host
     * the request was routed for. */
    r->log_has_host = hq->host.len > 0;
    if (r->log_has_host)
        r->host_len = keep_text(r->host_text, sizeof r->host_text, hq->host);
    r->log_has_user_agent = false;
    for (size_t i = 0; i < hq->nheaders; i++) {
        if (bw_slice_eq_nocase(hq->headers[i].name, BW_SLICE_LIT("user-agent"))) {
            r->log_has_user_agent = true;
            r->user_agent_len =
                keep_text(r->user_agent_text, sizeof r->user_agent_text, hq->headers[i].value);
            break; /* the first, when repeated */
        }
    }
}

/* ,"key":"escaped value" appended to buf (of cap bytes, holding *len). */
static void add_text(char *buf, size_t cap, size_t *len, const char *key, const char *v, size_t n)
{
    char esc[600];
    size_t el = json_escape(esc, sizeof esc, v, n);
    int w = snprintf(buf + *len, cap - *len, ",\"%s\":\"%.*s\"", key, (int)el, esc);
    if (w > 0 && (size_t)w < cap - *len)
        *len += (size_t)w;
    else
        buf[*len] = '\0'; /* whole fields or none: the line stays JSON */
}

void bw__request_log(struct bw_session *s)
{
    struct bw_proxy_worker *pw = s->pw;
    struct request *r = s->req;
    if (!r || r->status == 0)
        return;
    count(s, r);
    if (!pw->log_ring)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != pw->log_time_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(pw->log_time, sizeof pw->log_time, "%Y-%m-%dT%H:%M:%S", &tm);
        pw->log_time_sec = now.tv_sec;
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    char path[600];
    size_t plen =
        json_escape(path, sizeof path, r->path_text, strnlen(r->path_text, sizeof r->path_text));
    char method[64];
    size_t mlen = json_escape(method, sizeof method, r->method_text,
                              strnlen(r->method_text, sizeof r->method_text));
    char up[80] = "-";
    double up_ms = 0;
    if (r->server >= 0) {
        snprintf(up, sizeof up, "%s",
                 s->ws->snap->cfg->upstreams[r->upstream].servers[r->server].addr.text);
        if (r->have_upstream_time)
            up_ms = ms_between(&r->t_upstream, &r->t_resp);
    }
    /* The rule that ended the request's rules (or the last that fired). */
    char rule[1000] = "";
    if (r->log_has_rule) {
        char id[300];
        size_t rs = json_escape(id, 140, r->log_ruleset->id.ptr, r->log_ruleset->id.len);
        id[rs++] = '/';
        size_t rl = json_escape(id + rs, 140, r->log_rule->id.ptr, r->log_rule->id.len);
        snprintf(rule, sizeof rule, ",\"rule\":\"%.*s\",\"action\":\"%s\"", (int)(rs + rl), id,
                 bw_action_name(r->log_action));
    }
    if (r->has_bot_score) {
        size_t rl = strlen(rule);
        snprintf(rule + rl, sizeof rule - rl, ",\"bot_score\":%u", (unsigned)r->bot_score);
    }
    /* The request's head, when it parsed: a request refused by the parser
     * has no protocol version to show. Its method and path are logged as
     * "-", which no parsed request target can be (it starts with '/', is
     * '*', or holds a ':'). */
    char head[2000];
    size_t hl = 0;
    head[0] = '\0';
    if (r->method_text[0] && strcmp(r->path_text, "-") != 0) {
        const char *proto = r->http10 ? "HTTP/1.0" : "HTTP/1.1";
        add_text(head, sizeof head, &hl, "protocol", proto, strlen(proto));
    }
    if (r->log_has_host)
        add_text(head, sizeof head, &hl, "host", r->host_text, r->host_len);
    if (r->log_has_user_agent)
        add_text(head, sizeof head, &hl, "user_agent", r->user_agent_text, r->user_agent_len);
    if (r->cut_by_shutdown)
        add_text(head, sizeof head, &hl, "cut", "shutdown", 8);
    if (s->tls && s->tls_up) {
        /* The server name is the client's; it passed OpenSSL's checks but
         * is escaped like anything else a client sends. */
        const char *sni = bw_tls_server_name(s->ssl);
        char esc[600];
        size_t el = json_escape(esc, sizeof esc, sni, strnlen(sni, 256));
        size_t rl = strlen(rule);
        snprintf(rule + rl, sizeof rule - rl, ",\"tls\":\"%s\",\"sni\":\"%.*s\"",
                 bw_tls_version(s->ssl), (int)el, esc);
    }
    /* Why the request failed, when it did: the status alone does not tell
     * a refused connect from a timeout, nor a cut body from a whole one. */
    char error[1000];
    size_t errl = 0;
    error[0] = '\0';
    if (r->error_len)
        add_text(error, sizeof error, &errl, "error", r->error_text, r->error_len);
    char line[5600];
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s.%03ldZ\",\"client\":\"%s\",\"method\":\"%.*s\","
                     "\"path\":\"%.*s\"%s,\"status\":%u,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                     "\"upstream\":\"%s\",\"upstream_ms\":%.3f,\"total_ms\":%.3f%s%s}\n",
                     pw->log_time, now.tv_nsec / 1000000L, r->client_text, (int)mlen, method,
                     (int)plen, path, head, (unsigned)r->status, (unsigned long long)r->bytes_in,
                     (unsigned long long)r->bytes_out, up, up_ms, ms_between(&r->t_start, &end),
                     rule, error);
    if (n > 0 && (size_t)n < sizeof line)
        bw_access_ring_push(pw->log_ring, line, (size_t)n);
}
