/* TLS termination on the worker event loops, with OpenSSL 3.
 *
 * A bw_tls_ctx is one TLS listener's certificates and settings, built from
 * PEM bytes the caller has read (so building does no file I/O of its own and
 * a certificate is checked completely before anything serves with it): each
 * certificate gets an SSL_CTX, chosen per connection by SNI (exact names
 * first, then one-label wildcards), the first being the default. Contexts are
 * immutable once built and shared by every worker; a connection keeps the
 * context it started with across a reload.
 *
 * Session tickets (TLS 1.2 tickets and TLS 1.3 resumption) are encrypted
 * with process-wide keys shared by every context and worker, so a ticket
 * stays good across reloads and whichever worker accepts the next
 * connection. The keys are random, live only in memory, and rotate on
 * schedule: a ticket is issued under the current key and accepted for one
 * more rotation period after it stops being current.
 *
 * Connections: the bw_tls_* I/O calls are non-blocking and report what
 * they wait for, so the caller's edge-triggered loop resumes them. */
#ifndef BW_NET_TLS_H
#define BW_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/slice.h"

struct ssl_st; /* OpenSSL's SSL */

enum {
    BW_TLS_V12 = 1u << 0,
    BW_TLS_V13 = 1u << 1,
    BW_TLS_MAX_CERTS = 256,       /* certificates per listener */
    BW_TLS_MAX_CHAIN = 16,        /* intermediates after a leaf certificate */
    BW_TLS_MAX_NAMES = 1024,      /* DNS names per certificate */
    BW_TLS_NAME_MAX = 253,        /* a DNS name, RFC 1035 */
    BW_TLS_PEM_MAX = 1024 * 1024, /* bytes of one certificate or key file */
    BW_TLS_TICKET_ROTATE_S = 3600 /* default ticket key rotation period */
};

/* One certificate and its key, as read from their files. */
struct bw_tls_pem {
    const char *cert_path; /* for messages */
    const char *key_path;
    bw_slice cert; /* PEM: the leaf first, then its intermediates */
    bw_slice key;  /* PEM private key matching the leaf */
};

struct bw_tls_options {
    unsigned protocols; /* BW_TLS_V12 | BW_TLS_V13, contiguous */
    /* A certificate outside its validity period is refused unless one of
     * these holds (then it loads; the caller warns). At start there is
     * nothing else to serve, and nginx, HAProxy and Envoy all serve it:
     * refusing would take every other name and listener down with it. */
    bool allow_outside_validity;
    /* The running contexts (NULL entries skipped): a certificate file whose
     * bytes one of them already serves is the same certificate, serving
     * either way; refusing it would refuse every reload until it is
     * renewed. */
    const struct bw_tls_ctx *const *running;
    size_t nrunning;
};

/* What /status and /metrics show of a loaded certificate. */
struct bw_tls_cert_info {
    const char *cert_path;
    const char *subject; /* the leaf's subject, one line */
    const char *names;   /* its DNS names joined by ", " */
    int64_t not_before;  /* unix seconds */
    int64_t not_after;
    /* Loaded although a certificate of its file was outside its validity
     * period (bw_tls_options): which one and when it is valid; else NULL. */
    const char *validity_warning;
};

struct bw_tls_ctx;

/* Once per process, before any other call; idempotent. */
bw_status bw_tls_global_init(uint64_t ticket_rotate_s, bw_error *err) BW_MUST_CHECK;
/* The ticket key rotation period (seconds, > 0). */
void bw_tls_set_ticket_rotation(uint64_t ticket_rotate_s);
/* Rotates now: a new current key; the one before stays accepted for one
 * period. */
void bw_tls_rotate_ticket_keys(void);

/* Builds a listener's context. Refused, with which file and why: PEM that
 * does not parse, a key that does not match its certificate, a chain whose
 * certificates do not each issue the one before, a certificate outside its
 * validity period at now (unix seconds; but see bw_tls_options), a
 * certificate with no DNS name. */
bw_status bw_tls_ctx_new(const struct bw_tls_pem *certs, size_t ncerts,
                         const struct bw_tls_options *opt, int64_t now, struct bw_tls_ctx **ret,
                         size_t *failed, bw_error *err) BW_MUST_CHECK;
void bw_tls_ctx_free(struct bw_tls_ctx *c);
size_t bw_tls_ctx_ncerts(const struct bw_tls_ctx *c);
struct bw_tls_cert_info bw_tls_ctx_cert(const struct bw_tls_ctx *c, size_t i);
/* Which certificate a server name selects (exact, then wildcard, then the
 * default, 0). For tests and `bulwark check`. */
size_t bw_tls_ctx_select(const struct bw_tls_ctx *c, bw_slice server_name);

/* ---- client contexts (TLS to upstreams) ------------------------------------ */

struct bw_tls_client_options {
    bool verify;         /* check the server's chain and name (default on) */
    bool has_ca;         /* ca: trusted certificates; else the system's store */
    bw_slice ca;         /* PEM, one or more certificates */
    const char *ca_path; /* for messages */
};

struct bw_tls_client;

/* Refused when the CA bundle holds no certificate that parses, or the
 * system store cannot be loaded. */
bw_status bw_tls_client_new(const struct bw_tls_client_options *o, struct bw_tls_client **ret,
                            bw_error *err) BW_MUST_CHECK;
void bw_tls_client_free(struct bw_tls_client *c);

/* What one upstream connection presents and verifies. */
struct bw_tls_peer {
    bool has_sni;
    const char *sni; /* sent as SNI and verified, when has_sni */
    const char *ip;  /* the server's address, verified when there is no SNI */
};

/* A client connection on fd (connecting or connected). */
bw_status bw_tls_client_conn_new(struct bw_tls_client *c, int fd, const struct bw_tls_peer *peer,
                                 struct ssl_st **ret, bw_error *err) BW_MUST_CHECK;
/* After a failed handshake: why the server's certificate was refused, or
 * "" when verification was not the problem. */
const char *bw_tls_verify_error(const struct ssl_st *ssl);

/* ---- connections -------------------------------------------------------- */

enum bw_tls_result {
    BW_TLS_OK,         /* done: the handshake finished, or *n bytes moved */
    BW_TLS_WANT_READ,  /* retry once the socket is readable */
    BW_TLS_WANT_WRITE, /* retry once the socket is writable */
    BW_TLS_CLOSED,     /* the peer closed (close_notify or EOF) */
    BW_TLS_FAILED,     /* protocol error or reset: close the connection */
};

/* A server connection on fd, starting with the default certificate. */
bw_status bw_tls_conn_new(struct bw_tls_ctx *c, int fd, struct ssl_st **ret,
                          bw_error *err) BW_MUST_CHECK;
void bw_tls_conn_free(struct ssl_st *ssl);
enum bw_tls_result bw_tls_handshake(struct ssl_st *ssl);
enum bw_tls_result bw_tls_read(struct ssl_st *ssl, char *buf, size_t cap, size_t *n);
/* With partial writes: *n may be less than len. After WANT_*, call again
 * with at least the same bytes first. */
enum bw_tls_result bw_tls_write(struct ssl_st *ssl, const char *buf, size_t len, size_t *n);
/* Whether OpenSSL holds bytes read from the socket but not yet returned
 * (a record, or read-ahead). */
bool bw_tls_pending(const struct ssl_st *ssl);
/* Sends close_notify if the socket takes it now; never waits. */
void bw_tls_close_notify(struct ssl_st *ssl);
/* After a handshake: "TLSv1.3", the SNI sent ("" if none), whether the
 * session was resumed. Why the last call failed, for a debug log. */
const char *bw_tls_version(const struct ssl_st *ssl);
const char *bw_tls_server_name(const struct ssl_st *ssl);
bool bw_tls_resumed(const struct ssl_st *ssl);
const char *bw_tls_last_error(char *buf, size_t cap);
/* Whether OpenSSL said why the last call failed (else the cause was the
 * socket: errno). */
bool bw_tls_has_error(void);

#endif
