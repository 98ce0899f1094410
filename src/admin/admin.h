/* The admin API (DESIGN.md §2 "Admin API"): GET /status, GET /metrics,
 * POST /reload, POST /killswitch. This header is the request handling, pure
 * (no I/O, no logging): bytes or a parsed request in, a complete HTTP reply
 * out. src/admin/server.h puts it on a socket.
 *
 * What this component owns: routing, methods, the bearer token, body
 * limits, the killswitch body (JSON, its schema and the target grammar),
 * the error bodies and the HTTP framing of replies. What it does not own:
 * the data. The proxy (the lead) supplies that through bw_admin_ops: the
 * status document, the metrics exposition, what a reload does and what a
 * killswitch switches.
 *
 * Every reply is one HTTP/1.1 response with Content-Length and
 * "Connection: close": one request per connection keeps the server's state
 * bounded and simple, and admin traffic is a few calls a minute. Every
 * error reply has a JSON body {"error": "<sentence>"}. */
#ifndef BW_ADMIN_ADMIN_H
#define BW_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/slice.h"
#include "base/textbuf.h"
#include "http/http1.h"

/* ---- limits ---------------------------------------------------------------
 * Request heads are small (a request line, Host, Authorization, a few
 * more); the admin listener uses limits far below the proxy's. */
#define BW_ADMIN_REQUEST_LINE_BYTES ((size_t)2048) /* over it: 414 */
#define BW_ADMIN_HEAD_BYTES ((size_t)8192)         /* over it: 431 */
#define BW_ADMIN_HEADERS ((size_t)32)              /* over it: 431 */
/* A killswitch body is under 300 bytes; 64 KiB leaves room for any sane
 * client and bounds what an unauthenticated peer can make us hold. */
#define BW_ADMIN_MAX_BODY ((size_t)64 * 1024) /* over it: 413 */
/* Status documents and metrics expositions grow with routes and rules. A
 * reply that would pass this fails with 500 instead of eating memory. */
#define BW_ADMIN_MAX_REPLY_BODY ((size_t)16 * 1024 * 1024)
/* Killswitch ids (ruleset, rule, module): [A-Za-z0-9_.-]{1,128}. */
#define BW_ADMIN_ID_MAX 128
/* Bearer token: 1..256 bytes of visible ASCII (0x21-0x7e). */
#define BW_ADMIN_TOKEN_MAX 256

/* ---- killswitches -------------------------------------------------------- */

enum bw_killswitch_kind {
    BW_KILLSWITCH_RULE,    /* "rule:<ruleset>/<rule>" */
    BW_KILLSWITCH_RULESET, /* "ruleset:<ruleset>" */
    BW_KILLSWITCH_MODULE,  /* "module:<module>" */
    BW_KILLSWITCH__COUNT
};

/* A validated POST /killswitch body. The id slices point into the decoded
 * JSON and are valid only during the ops->killswitch call; copy what must
 * outlive it. Each id matches [A-Za-z0-9_.-]{1,BW_ADMIN_ID_MAX}. */
struct bw_killswitch_req {
    enum bw_killswitch_kind kind;
    union {
        struct {
            bw_slice ruleset, rule;
        } rule;
        struct {
            bw_slice ruleset;
        } ruleset;
        struct {
            bw_slice module;
        } module;
    } u;
    bool enabled;    /* the new state: false switches the target off */
    bw_slice target; /* the target string as given, for logs and answers */
};

/* Parses and validates a target string. On failure err holds the sentence
 * the client gets with 400. The slices in *ret point into target. */
bw_status bw_killswitch_parse_target(bw_slice target, struct bw_killswitch_req *ret,
                                     bw_error *err) BW_MUST_CHECK;

/* Parses a whole POST /killswitch body: a JSON object with exactly the
 * keys "target" (a string, see above) and "enabled" (true or false). On
 * success *ret_json owns the decoded document (release it with
 * bw_killswitch_body_free) and ret's slices point into it. On failure err
 * holds the 400 sentence and *ret_json is untouched. */
struct bw_killswitch_body;
bw_status bw_killswitch_parse_body(bw_slice body, struct bw_killswitch_req *ret,
                                   struct bw_killswitch_body **ret_json,
                                   bw_error *err) BW_MUST_CHECK;
void bw_killswitch_body_free(struct bw_killswitch_body *b);

/* ---- what the proxy provides -------------------------------------------- */

enum bw_reload_outcome {
    BW_RELOAD_ALL_ACCEPTED,  /* 200 */
    BW_RELOAD_SOME_REJECTED, /* 422: the rejected ones keep their last-known-good */
    BW_RELOAD__COUNT
};

/* Why a killswitch could not be applied. */
enum bw_killswitch_fault {
    BW_KILLSWITCH_FAULT_UNKNOWN_TARGET, /* 400: no such rule, ruleset or module */
    BW_KILLSWITCH_FAULT_INTERNAL,       /* 500: e.g. the state could not be persisted */
    BW_KILLSWITCH_FAULT__COUNT
};

/* Hooks called on the admin server's thread (the control loop), one at a
 * time. Each appends a whole document to out and returns BW_OK, or returns
 * BW_ERR with a sentence in err; then whatever it appended is discarded and
 * the client gets 500 with that sentence (400 for an unknown killswitch
 * target). A hook that fills out past BW_ADMIN_MAX_REPLY_BODY gets its
 * append refused; returning that failure (bw_textbuf_error) gives a 500. */
struct bw_admin_ops {
    void *self;
    /* GET /status: a JSON document (build, uptime, artifacts, killswitches). */
    bw_status (*status_json)(void *self, struct bw_textbuf *out, bw_error *err);
    /* GET /metrics: the exposition text (src/admin/metrics.h writes it). */
    bw_status (*metrics_text)(void *self, struct bw_textbuf *out, bw_error *err);
    /* POST /reload: re-reads every artifact; appends a JSON document saying
     * what was accepted and what was rejected and why. */
    bw_status (*reload)(void *self, struct bw_textbuf *out, enum bw_reload_outcome *ret_outcome,
                        bw_error *err);
    /* POST /killswitch: applies k at once and persists it. The admin layer
     * answers 200 {"target": ..., "enabled": ...} on BW_OK. */
    bw_status (*killswitch)(void *self, const struct bw_killswitch_req *k,
                            enum bw_killswitch_fault *ret_fault, bw_error *err);
};

/* The admin component's configuration. Build it with bw_admin_init, then
 * optionally bw_admin_set_token. Read-only while a server uses it. */
struct bw_admin {
    struct bw_admin_ops ops;
    bool has_token; /* then POST needs "Authorization: Bearer <token>" */
    size_t token_len;
    /* Zero-padded to the full size: the comparison always reads all of it,
     * so its time does not depend on the token's length or content. */
    unsigned char token[BW_ADMIN_TOKEN_MAX];
};

void bw_admin_init(struct bw_admin *a, const struct bw_admin_ops *ops);
/* Sets the token (1..BW_ADMIN_TOKEN_MAX bytes of 0x21-0x7e). */
bw_status bw_admin_set_token(struct bw_admin *a, bw_slice token, bw_error *err) BW_MUST_CHECK;
/* Reads a token file: at most BW_ADMIN_TOKEN_MAX bytes plus one trailing
 * "\n" or "\r\n", which is removed. Refused: an empty token, a longer one,
 * bytes outside 0x21-0x7e, a file that is not a regular file, and a file
 * that others can read or write or its group can write (mode & 027: a
 * secret; `chmod 600` or 640 fixes it). */
bw_status bw_admin_load_token(struct bw_admin *a, const char *path, bw_error *err) BW_MUST_CHECK;

/* Constant-time bearer check of an Authorization field value: true when it
 * is "Bearer <token>" (scheme case-insensitive, RFC 9110 §11.1). */
bool bw_admin_authorized(const struct bw_admin *a, bw_slice authorization);

/* ---- replies ------------------------------------------------------------- */

enum bw_admin_content {
    BW_ADMIN_CONTENT_JSON,       /* application/json */
    BW_ADMIN_CONTENT_PROMETHEUS, /* text/plain; version=0.0.4; charset=utf-8 */
    BW_ADMIN_CONTENT__COUNT
};

/* Which Allow value a 405 carries. */
enum bw_admin_allow { BW_ADMIN_ALLOW_GET_HEAD, BW_ADMIN_ALLOW_POST, BW_ADMIN_ALLOW__COUNT };

struct bw_admin_reply {
    uint16_t status;
    enum bw_admin_content content;
    bool has_allow; /* 405: the Allow field */
    enum bw_admin_allow allow;
    bool auth_challenge; /* 401: WWW-Authenticate: Bearer */
    bool head_only;      /* answer to HEAD: Content-Length of the body, no body */
    struct bw_textbuf body;
};

/* An empty reply (status 0) whose body may grow to BW_ADMIN_MAX_REPLY_BODY. */
void bw_admin_reply_init(struct bw_admin_reply *r);
void bw_admin_reply_done(struct bw_admin_reply *r);
/* Makes r the error reply status + {"error": "<sentence>"}. Never fails:
 * a sentence that does not fit is cut. */
void bw_admin_reply_error(struct bw_admin_reply *r, uint16_t status, const char *sentence);
/* Appends the whole response (status line, fields, body) to wire. */
bw_status bw_admin_reply_serialize(const struct bw_admin_reply *r,
                                   struct bw_textbuf *wire) BW_MUST_CHECK;

/* ---- handling ------------------------------------------------------------ */

/* Decides what can be decided from the head alone: 404 unknown path, 405
 * wrong method, 401 missing or wrong token, 411 a chunked body, 413 a body
 * over BW_ADMIN_MAX_BODY. Returns true with *out filled when the request is
 * answered already (its body need not, and should not, be read). */
bool bw_admin_precheck(const struct bw_admin *a, const struct bw_http_request *req,
                       struct bw_admin_reply *out);

/* Handles a request whose body (req->content_length bytes, or none) has
 * been read in full. Runs bw_admin_precheck first. Calls at most one ops
 * hook. *out must have been initialised and be empty. */
void bw_admin_handle(const struct bw_admin *a, const struct bw_http_request *req, bw_slice body,
                     struct bw_admin_reply *out);

/* ---- from bytes ---------------------------------------------------------- */

/* Per-connection parsing state for bw_admin_feed. bw_admin_parse_init it
 * for each connection; it points into itself, so it must not be moved or
 * copied afterwards. */
struct bw_admin_parse {
    struct bw_http_scan scan;
    struct bw_http_request req;
    struct bw_http_header headers[BW_ADMIN_HEADERS];
    bool head_done;
    bool continue_sent; /* the 100 Continue has been asked for once */
    const char *base;   /* the buffer req's slices point into */
};

enum bw_admin_feed_result {
    BW_ADMIN_FEED_MORE,     /* need more bytes */
    BW_ADMIN_FEED_CONTINUE, /* send "HTTP/1.1 100 Continue" once, then feed more */
    BW_ADMIN_FEED_REPLY,    /* *out is the reply: send it and close */
    BW_ADMIN_FEED__COUNT
};

void bw_admin_parse_init(struct bw_admin_parse *p);
/* Feeds the bytes received so far, buf[0..len) (the whole of it each time;
 * more than bw_admin_feed_want() asks for is allowed and ignored). The
 * buffer may move between calls (the caller grows it): the head is then
 * parsed again in its new place. Parses the head with the admin limits,
 * prechecks it, waits for the body and handles the request. Bytes past the
 * request are ignored (one request per connection). */
enum bw_admin_feed_result bw_admin_feed(const struct bw_admin *a, struct bw_admin_parse *p,
                                        const char *buf, size_t len, struct bw_admin_reply *out);
/* How many bytes the caller's buffer must be able to hold to make
 * progress: the head limit until the head is parsed, then head + body. */
size_t bw_admin_feed_want(const struct bw_admin_parse *p);

#endif
