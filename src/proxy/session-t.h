/* Types shared by the files that make up downstream sessions (session.c,
 * upconn.c, request_log.c). Not for use outside src/proxy/. */
#ifndef BW_PROXY_SESSION_T_H
#define BW_PROXY_SESSION_T_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "http/http1.h"
#include "net/loop.h"
#include "proxy/client_ip.h"
#include "proxy/proxy.h"
#include "proxy/upstream.h"

enum sess_state {
    S_PROXY_HEADER,  /* waiting for the PROXY protocol header */
    S_TLS_HANDSHAKE, /* TLS listener: before the first request byte */
    S_IDLE,          /* between requests: no request byte yet */
    S_HEAD,          /* reading a request head */
    S_EXCHANGE,      /* a request is being proxied */
    S_TUNNEL,        /* after 101 Switching Protocols: raw bytes both ways */
    S_RESPOND,       /* writing a response of our own, then closing */
    S_LINGER,        /* response written, write side shut: discarding input */
};

enum timeout_kind {
    T_NONE,
    T_IDLE,        /* keepalive or first request: close quietly */
    T_HEADER,      /* partial head: 408 */
    T_CONNECT,     /* upstream connect */
    T_UP_READ,     /* upstream response (head or body) */
    T_UP_WRITE,    /* upstream not reading our request */
    T_CLIENT_BODY, /* client not sending its body: 408 */
    T_SEND,        /* client not reading our response */
    T_TUNNEL,
    T_LINGER,
    T_DRAIN,
};

/* How one message body is delimited, and how far we are into it. */
struct body {
    enum bw_http_body_kind kind;
    uint64_t remaining; /* BW_BODY_LENGTH */
    struct bw_chunked ch;
    bool dechunk;   /* forward only the data (HTTP/1.0 client, chunked upstream) */
    bool rechunk;   /* forward the data in chunk framing of our own (request bodies) */
    bool framed;    /* every framing byte has been assigned to a forward region */
    uint64_t bytes; /* payload bytes so far, for limits */
};

/* A region of a source buffer waiting to be written, relative to its start,
 * and how much of the buffer to consume once it is. */
struct fwd {
    size_t off, len, consume;
    bool active;
    /* With body.rechunk: chunk framing of our own written before and after
     * the region; what is left of each is kept at the front of the array. */
    uint8_t pre_len, post_len;
    char pre[20]; /* "<hex size>\r\n" */
    char post[8]; /* "\r\n", then "0\r\n\r\n" after the last data */
};

struct bw_upconn {
    struct bw_io io;
    struct bw_deferred dfr;
    struct bw_timer timer; /* idle timeout while pooled */
    struct bw_proxy_worker *pw;
    struct bw_wsnap *ws;      /* the view whose pools it belongs to (pinned) */
    struct bw_session *owner; /* NULL while pooled */
    struct bw_upconn *pool_next, *pool_prev;
    size_t upstream;
    size_t server;
    uint32_t requests; /* attached to this many requests, for keepalive_requests */
    bool connected;    /* connect() known to have completed */
    bool reused;       /* came from the pool for the current request */
    bool rd, wr;
    bool hup;       /* the upstream closed its side: read until EOF is seen */
    bool eof;       /* EOF (or an error) was read: nothing more comes, none goes */
    bool eof_error; /* it was an error (a reset), not an orderly close */
    bool closed;
    /* Upstream TLS (`tls:` on the upstream): as on bw_session. */
    bool tls;
    bool tls_up;
    bool tls_broken;
    bool tls_rd_wants_wr, tls_wr_wants_rd;
    struct ssl_st *ssl; /* when tls */
};

/* What lives only while a request is in flight; from a per-worker free list,
 * so an idle keepalive connection does not carry it. */
struct request {
    struct request *next_free;
    enum bw_http_method method;
    bool http10;
    bool keep_alive; /* the client connection may carry another request */
    bool idempotent;
    bool upgrade;
    bool is_head;
    struct body body;
    struct fwd qfwd;    /* client buffer -> upstream */
    uint64_t body_sent; /* request payload bytes written upstream */
    const char *cont;   /* "100 Continue" bytes left to write, if any */
    size_t cont_len;
    bool cont_sent;
    bool body_wait;    /* a small body is read whole before the upstream is chosen */
    bool client_ended; /* the client had ended its side (FIN) when this request began */

    size_t upstream;
    long server;
    struct bw_tried tried;
    bool picked_ejected; /* the current attempt's server was passively ejected */
    /* A pooled connection failed this request as stale: its further
     * attempts connect anew. The upstream's other idle connections were
     * likely closed by the same idle timeout, and each taken in turn would
     * use up an attempt (one server: a 502 after the second). */
    bool skip_pool;
    uint32_t hash_key;
    unsigned attempts;
    uint16_t fail_status; /* answer if no server is left: 502, or 504 after a timeout */

    bool resp_head_done; /* the final response head has been built */
    bool resp_started;   /* bytes of a response went to the client */
    bool resp_done;
    bool upstream_keep; /* the upstream connection may be reused after */
    struct body rbody;
    struct fwd rfwd; /* upstream buffer -> client */
    uint16_t status;
    uint64_t bytes_in, bytes_out;
    struct timespec t_start, t_upstream, t_resp;
    bool have_upstream_time;

    /* Rules: skips carried from the request phase to the response phase,
     * the rule the access log names, and (only with response-phase
     * rulesets) a copy of the request as the rules saw it. */
    bool routed;
    size_t route;
    bool has_bot_score;
    uint8_t bot_score;
    uint64_t start_ms; /* loop clock, for the latency histogram */
    struct bw_rules_request rules_st;
    bool log_has_rule;
    const struct bw_ruleset *log_ruleset;
    const struct bw_rule *log_rule;
    enum bw_action_kind log_action;
    bool has_rview;
    bw_arena rarena;
    /* For the access log, set by bw__request_log_head. */
    bool log_has_host;
    bool log_has_user_agent;
    bool cut_by_shutdown; /* closed by the drain's deadline, not by either peer */
    uint8_t error_len;    /* of error_text; 0: the request met no error */

    /* Not cleared for each request (request_get clears what comes before
     * client_text): the texts are written when a request starts, and rview
     * only when has_rview is set. */
    char client_text[BW_IP_TEXT_MAX];
    char peer_text[BW_IP_TEXT_MAX];
    char method_text[24];
    char path_text[256];
    char host_text[256];       /* raw bytes, cut; valid when log_has_host */
    char user_agent_text[256]; /* raw bytes, cut; valid when log_has_user_agent */
    uint16_t host_len, user_agent_len;
    char error_text[160];         /* why the request failed, for the access log (error_len) */
    struct bw_request_view rview; /* valid when has_rview */
};

struct bw_session {
    struct bw_io io;
    struct bw_deferred dfr;
    struct bw_timer timer;
    enum timeout_kind tkind;
    struct bw_proxy_worker *pw;
    struct bw_wsnap *ws; /* the configuration it uses (pinned); moves to the
                          * worker's current one between requests */
    struct bw_session *next, *prev;
    struct bw_session *idle_next, *idle_prev; /* on the worker's idle list */
    bool in_idle;
    enum sess_state state;
    struct bw_task task; /* continues a pump that stopped to be fair */
    bool c_rd, c_wr;
    bool c_hup; /* the client closed its side: read until EOF is seen */
    bool fresh; /* no request finished yet: the accept-time header deadline holds */
    bool closed;
    bool draining;
    bool peer_trusted;
    bool respond_keep;            /* S_RESPOND: our own answer keeps the connection */
    struct sockaddr_storage peer; /* TCP peer, or the PROXY protocol source */
    struct bw_buf *cbuf;          /* client input */
    struct bw_buf *hbuf;          /* outgoing head */
    size_t h_off;                 /* bytes of hbuf written */
    enum { H_NONE, H_UP, H_CLIENT } h_dest;
    struct bw_buf *ubuf; /* upstream input */
    struct bw_http_scan scan;
    struct bw_upconn *up;
    struct request *req;
    size_t linger_read;
    /* TLS listeners: the connection's TLS state. What a TLS read or write
     * waits for may be the other direction (a read that must send, a
     * write that must receive first): the flags carry that to the event. */
    bool tls;
    bool tls_up;     /* the handshake finished */
    bool tls_hello;  /* the first byte was a TLS handshake record */
    bool tls_broken; /* a fatal error: no close_notify */
    bool tls_rd_wants_wr, tls_wr_wants_rd;
    struct ssl_st *ssl; /* when tls */
};

/* session.c */
void bw__session_pump(struct bw_session *s);

/* upconn.c: upstream connections and the per-worker keepalive pools. */
struct bw_upconn *bw__upconn_new(struct bw_session *s, size_t upstream, size_t server, int fd);
void bw__upconn_close(struct bw_upconn *u);
/* Back to the pool (when reusable and the pool has room), else closed. */
void bw__upconn_release(struct bw_upconn *u, bool reusable);
void bw__pool_unlink(struct bw_upconn *u);

/* request_log.c: the access log line of a finished request. */
void bw__request_log(struct bw_session *s);
/* Keeps what the access log shows of a request's head (Host, User-Agent),
 * which is gone by the time the line is written. Called once the head has
 * parsed (start_request). */
void bw__request_log_head(struct request *r, const struct bw_http_request *hq);

#endif
