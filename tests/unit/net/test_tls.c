/* TLS contexts (src/net/tls.c): what a certificate must be to load, which
 * certificate a server name selects, and real handshakes over a socket pair
 * (ALPN, SNI, ticket resumption), with certificates made here in memory. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"
#include "test.h"

/* ---- certificates made for the tests ------------------------------------ */

struct made {
    EVP_PKEY *key;
    X509 *cert;
    char *cert_pem, *key_pem;
};

static char *to_pem_cert(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

static char *to_pem_key(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

/* A certificate for cn with the given subjectAltName DNS names (a
 * comma-separated list, or NULL for none), valid from now+from_s to
 * now+to_s, signed by issuer (NULL: self-signed). */
static struct made make_cert(const char *cn, const char *dns, long from_s, long to_s,
                             const struct made *issuer, bool ca)
{
    struct made m = {0};
    m.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    m.cert = X509_new();
    X509_set_version(m.cert, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(m.cert), serial++);
    X509_gmtime_adj(X509_getm_notBefore(m.cert), from_s);
    X509_gmtime_adj(X509_getm_notAfter(m.cert), to_s);
    X509_set_pubkey(m.cert, m.key);
    X509_NAME *name = X509_get_subject_name(m.cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(m.cert, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer->cert : m.cert, m.cert, NULL, NULL, 0);
    if (dns) {
        char san[1024] = "";
        size_t o = 0;
        const char *p = dns;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            o += (size_t)snprintf(san + o, sizeof san - o, "%sDNS:%.*s", o ? "," : "", (int)len, p);
            p += len + (e ? 1 : 0);
        }
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(m.cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (ca) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "CA:TRUE");
        X509_add_ext(m.cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(m.cert, issuer ? issuer->key : m.key, EVP_sha256());
    m.cert_pem = to_pem_cert(m.cert);
    m.key_pem = to_pem_key(m.key);
    return m;
}

static void made_free(struct made *m)
{
    EVP_PKEY_free(m->key);
    X509_free(m->cert);
    free(m->cert_pem);
    free(m->key_pem);
}

static struct bw_tls_pem pem_of(const struct made *m, const char *name)
{
    return (struct bw_tls_pem){.cert_path = name,
                               .key_path = "key.pem",
                               .cert = bw_slice_make(m->cert_pem, strlen(m->cert_pem)),
                               .key = bw_slice_make(m->key_pem, strlen(m->key_pem))};
}

static size_t bad_ix; /* which certificate a refusal was about */

static const struct bw_tls_options BOTH = {.protocols = BW_TLS_V12 | BW_TLS_V13};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* Loads one pem and returns the error text ("" when it loaded). */
static const char *load_err(const struct bw_tls_pem *p, size_t n, bw_error *err)
{
    struct bw_tls_ctx *c = NULL;
    err->msg[0] = '\0';
    if (bw_tls_ctx_new(p, n, &BOTH, now_s(), &c, &bad_ix, err) == BW_OK) {
        bw_tls_ctx_free(c);
        return "";
    }
    return err->msg;
}

/* ---- loading --------------------------------------------------------------- */

TEST(good_certificate_loads_with_its_names_and_dates)
{
    struct made a = make_cert("a.example", "a.example,www.a.example", -60, 86400 * 30, NULL, false);
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    struct bw_tls_ctx *c = NULL;
    bw_error err;
    if (bw_tls_ctx_new(&p, 1, &BOTH, now_s(), &c, &bad_ix, &err) != BW_OK) {
        T_FAILF("refused: %s", err.msg);
        made_free(&a);
        return;
    }
    CHECK_INT_EQ(bw_tls_ctx_ncerts(c), 1);
    struct bw_tls_cert_info info = bw_tls_ctx_cert(c, 0);
    CHECK_STR_EQ(info.names, "a.example, www.a.example");
    CHECK_STR_EQ(info.cert_path, "a.pem");
    CHECK(strstr(info.subject, "CN=a.example") != NULL);
    CHECK(info.not_after - now_s() > 86400 * 29 && info.not_after - now_s() <= 86400 * 30 + 5);
    bw_tls_ctx_free(c);
    made_free(&a);
}

TEST(key_that_does_not_match_is_refused)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    struct made b = make_cert("b.example", "b.example", -60, 86400, NULL, false);
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    p.key = bw_slice_make(b.key_pem, strlen(b.key_pem));
    p.key_path = "b.key";
    bw_error err;
    CHECK_STR_EQ(load_err(&p, 1, &err), "b.key: the key does not match the certificate in a.pem");
    /* In a list, the refusal says which entry. */
    struct bw_tls_pem two[] = {pem_of(&b, "b.pem"), p};
    CHECK_STR_EQ(load_err(two, 2, &err), "b.key: the key does not match the certificate in a.pem");
    CHECK_INT_EQ(bad_ix, 1);
    made_free(&a);
    made_free(&b);
}

TEST(expired_and_future_certificates_are_refused)
{
    struct made old = make_cert("a.example", "a.example", -86400 * 10, -86400, NULL, false);
    struct made future = make_cert("a.example", "a.example", 86400, 86400 * 10, NULL, false);
    bw_error err;
    struct bw_tls_pem p = pem_of(&old, "old.pem");
    CHECK(strstr(load_err(&p, 1, &err), "old.pem: certificate 1 is expired") == err.msg);
    p = pem_of(&future, "future.pem");
    CHECK(strstr(load_err(&p, 1, &err), "future.pem: certificate 1 is not valid yet") == err.msg);
    made_free(&old);
    made_free(&future);
}

TEST(certificates_outside_validity_load_at_start_or_when_already_serving)
{
    struct made good = make_cert("a.example", "a.example", -86400, 86400 * 10, NULL, false);
    struct made old = make_cert("b.example", "b.example", -86400 * 10, -86400, NULL, false);
    struct made other = make_cert("b.example", "b.example", -86400 * 10, -86400, NULL, false);
    struct bw_tls_pem pems[] = {pem_of(&good, "a.pem"), pem_of(&old, "old.pem")};
    bw_error err = {{0}};
    size_t bad = 0;
    /* At start: loaded, with the reason kept for the caller's warning. */
    struct bw_tls_options start = BOTH;
    start.allow_outside_validity = true;
    struct bw_tls_ctx *running = NULL;
    CHECK(bw_tls_ctx_new(pems, 2, &start, now_s(), &running, &bad, &err) == BW_OK);
    CHECK(bw_tls_ctx_cert(running, 0).validity_warning == NULL);
    const char *w = bw_tls_ctx_cert(running, 1).validity_warning;
    CHECK(w && strstr(w, "old.pem: certificate 1 is expired") == w);
    /* At a reload: the very file the running context serves loads. */
    const struct bw_tls_ctx *const run_list[] = {NULL, running};
    struct bw_tls_options reload = BOTH;
    reload.running = run_list;
    reload.nrunning = 2;
    struct bw_tls_ctx *next = NULL;
    CHECK(bw_tls_ctx_new(pems, 2, &reload, now_s(), &next, &bad, &err) == BW_OK);
    CHECK(bw_tls_ctx_cert(next, 1).validity_warning != NULL);
    bw_tls_ctx_free(next);
    /* Another expired certificate in its place does not. */
    pems[1] = pem_of(&other, "other.pem");
    CHECK(bw_tls_ctx_new(pems, 2, &reload, now_s(), &next, &bad, &err) == BW_ERR);
    CHECK(strstr(err.msg, "other.pem: certificate 1 is expired") == err.msg);
    CHECK_INT_EQ(bad, 1);
    bw_tls_ctx_free(running);
    made_free(&good);
    made_free(&old);
    made_free(&other);
}

TEST(garbage_and_truncated_pem_are_refused)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    bw_error err;
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    p.cert = BW_SLICE_LIT("not a certificate\n");
    CHECK(strstr(load_err(&p, 1, &err), "a.pem: no PEM certificate could be read") == err.msg);
    p = pem_of(&a, "a.pem");
    p.cert.len /= 2; /* cut in the middle of the base64 */
    CHECK(strstr(load_err(&p, 1, &err), "a.pem: no PEM certificate could be read") == err.msg);
    p = pem_of(&a, "a.pem");
    p.key = BW_SLICE_LIT("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    CHECK(strstr(load_err(&p, 1, &err), "key.pem: no unencrypted PEM private key could be read") ==
          err.msg);
    p = pem_of(&a, "a.pem");
    p.key = BW_SLICE_EMPTY;
    CHECK(strstr(load_err(&p, 1, &err), "key.pem: no unencrypted PEM private key") == err.msg);
    made_free(&a);
}

TEST(certificate_without_dns_name_is_refused)
{
    /* No subjectAltName and a common name that is no host name. */
    struct made a = make_cert("Example Corp", NULL, -60, 86400, NULL, false);
    bw_error err;
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    CHECK(strstr(load_err(&p, 1, &err), "a.pem: the certificate names no DNS host") == err.msg);
    made_free(&a);
    /* An old certificate with only a common name is served under it. */
    struct made b = make_cert("old.example", NULL, -60, 86400, NULL, false);
    p = pem_of(&b, "b.pem");
    CHECK_STR_EQ(load_err(&p, 1, &err), "");
    made_free(&b);
}

TEST(chain_must_be_in_issuing_order)
{
    struct made root = make_cert("Root", NULL, -60, 86400 * 2, NULL, true);
    struct made mid = make_cert("Mid", NULL, -60, 86400 * 2, &root, true);
    struct made leaf = make_cert("a.example", "a.example", -60, 86400, &mid, false);
    char good[16384], bad[16384];
    snprintf(good, sizeof good, "%s%s", leaf.cert_pem, mid.cert_pem);
    snprintf(bad, sizeof bad, "%s%s", leaf.cert_pem, root.cert_pem);
    struct bw_tls_pem p = pem_of(&leaf, "chain.pem");
    p.cert = bw_slice_make(good, strlen(good));
    bw_error err;
    CHECK_STR_EQ(load_err(&p, 1, &err), "");
    p.cert = bw_slice_make(bad, strlen(bad));
    CHECK(strstr(load_err(&p, 1, &err), "chain.pem: certificate 2 of the file did not issue "
                                        "certificate 1") == err.msg);
    made_free(&root);
    made_free(&mid);
    made_free(&leaf);
}

TEST(limits_on_count_and_size)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    bw_error err;
    struct bw_tls_ctx *c = NULL;
    CHECK(bw_tls_ctx_new(NULL, 0, &BOTH, now_s(), &c, &bad_ix, &err) == BW_ERR);
    CHECK(strstr(err.msg, "1 to 256 certificates, got 0") != NULL);
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    p.cert.len = BW_TLS_PEM_MAX + 1;
    CHECK(strstr(load_err(&p, 1, &err), "a.pem: larger than 1048576 bytes") == err.msg);
    struct bw_tls_options none = {0};
    p = pem_of(&a, "a.pem");
    CHECK(bw_tls_ctx_new(&p, 1, &none, now_s(), &c, &bad_ix, &err) == BW_ERR);
    made_free(&a);
}

/* ---- selection by server name ------------------------------------------- */

TEST(server_name_selects_exact_then_wildcard_then_default)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    struct made b = make_cert("b.example", "b.example,*.w.example", -60, 86400, NULL, false);
    struct made c2 =
        make_cert("c.example", "c.example,b.example,x.w.example", -60, 86400, NULL, false);
    struct bw_tls_pem p[] = {pem_of(&a, "a.pem"), pem_of(&b, "b.pem"), pem_of(&c2, "c.pem")};
    struct bw_tls_ctx *c = NULL;
    bw_error err;
    if (bw_tls_ctx_new(p, 3, &BOTH, now_s(), &c, &bad_ix, &err) != BW_OK) {
        T_FAILF("refused: %s", err.msg);
        return;
    }
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("a.example")), 0);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("B.Example")), 1); /* case-insensitive */
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("c.example")), 2);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("y.w.example")), 1); /* wildcard */
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("x.w.example")), 2); /* exact beats it */
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("w.example")), 0);   /* not one label */
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("a.b.w.example")), 0);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("unknown.example")), 0);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("")), 0);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("a.example\0x")), 0);
    /* The absolute form: one trailing dot is dropped, as nginx does. */
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("c.example.")), 2);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("y.w.example.")), 1);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT("c.example..")), 0);
    CHECK_INT_EQ(bw_tls_ctx_select(c, BW_SLICE_LIT(".")), 0);
    bw_tls_ctx_free(c);
    made_free(&a);
    made_free(&b);
    made_free(&c2);
}

/* ---- handshakes ---------------------------------------------------------- */

/* Drives a client SSL and a server connection over a socket pair until
 * both finish or one fails; returns the server's last result. */
static enum bw_tls_result drive(SSL *cl, struct ssl_st *sv, int *client_rc)
{
    enum bw_tls_result sr = BW_TLS_WANT_READ;
    int cr = -1;
    for (int i = 0; i < 200; i++) {
        if (cr != 1) {
            cr = SSL_do_handshake(cl);
            if (cr != 1) {
                int e = SSL_get_error(cl, cr);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    break;
            }
        }
        if (sr != BW_TLS_OK) {
            sr = bw_tls_handshake(sv);
            if (sr == BW_TLS_FAILED || sr == BW_TLS_CLOSED)
                break;
        }
        if (cr == 1 && sr == BW_TLS_OK)
            break;
    }
    *client_rc = cr;
    return sr;
}

struct pair {
    int fds[2];
    SSL *cl;
    struct ssl_st *sv;
};

static bool pair_open(struct pair *p, SSL_CTX *cctx, struct bw_tls_ctx *c, const char *sni)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds) != 0)
        return false;
    p->cl = SSL_new(cctx);
    SSL_set_fd(p->cl, p->fds[0]);
    SSL_set_connect_state(p->cl);
    if (sni)
        SSL_set_tlsext_host_name(p->cl, sni);
    bw_error err;
    return bw_tls_conn_new(c, p->fds[1], &p->sv, &err) == BW_OK;
}

static void pair_close(struct pair *p)
{
    /* Without a close_notify of its own, OpenSSL marks the client's session
     * unresumable when it is freed. */
    (void)SSL_shutdown(p->cl);
    SSL_free(p->cl);
    bw_tls_conn_free(p->sv);
    close(p->fds[0]);
    close(p->fds[1]);
}

static SSL_CTX *client_ctx(const char *alpn, size_t alpn_len)
{
    SSL_CTX *x = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
    if (alpn)
        SSL_CTX_set_alpn_protos(x, (const unsigned char *)alpn, (unsigned)alpn_len);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT);
    return x;
}

static const char *peer_cn(SSL *cl, char *buf, size_t cap)
{
    X509 *x = SSL_get1_peer_certificate(cl);
    buf[0] = '\0';
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)cap);
        X509_free(x);
    }
    return buf;
}

TEST(handshake_sni_alpn_and_resumption)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    struct made b = make_cert("b.example", "*.b.example", -60, 86400, NULL, false);
    struct bw_tls_pem p[] = {pem_of(&a, "a.pem"), pem_of(&b, "b.pem")};
    struct bw_tls_ctx *c = NULL;
    bw_error err;
    CHECK(bw_tls_ctx_new(p, 2, &BOTH, now_s(), &c, &bad_ix, &err) == BW_OK);
    SSL_CTX *cctx = client_ctx("\x02h2\x08http/1.1", 12);
    char cn[64];
    struct pair x;
    int crc;

    /* SNI picks the wildcard certificate; ALPN settles on http/1.1. */
    CHECK(pair_open(&x, cctx, c, "www.b.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK_INT_EQ(crc, 1);
    CHECK_STR_EQ(peer_cn(x.cl, cn, sizeof cn), "b.example");
    const unsigned char *proto;
    unsigned plen;
    SSL_get0_alpn_selected(x.cl, &proto, &plen);
    CHECK(plen == 8 && memcmp(proto, "http/1.1", 8) == 0);
    CHECK_STR_EQ(bw_tls_server_name(x.sv), "www.b.example");
    CHECK_STR_EQ(bw_tls_version(x.sv), "TLSv1.3");
    CHECK(!bw_tls_resumed(x.sv));
    /* Data both ways, then the ticket the server sent with it. */
    size_t n = 0;
    CHECK(SSL_write(x.cl, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
    char buf[64];
    CHECK_INT_EQ(bw_tls_read(x.sv, buf, sizeof buf, &n), BW_TLS_OK);
    CHECK_INT_EQ(n, 18);
    CHECK_INT_EQ(bw_tls_read(x.sv, buf, sizeof buf, &n), BW_TLS_WANT_READ);
    CHECK_INT_EQ(bw_tls_write(x.sv, "HTTP/1.1 200 OK\r\n", 17, &n), BW_TLS_OK);
    CHECK_INT_EQ(n, 17);
    CHECK(SSL_read(x.cl, buf, sizeof buf) == 17);
    SSL_SESSION *sess = SSL_get1_session(x.cl);
    CHECK(sess != NULL && SSL_SESSION_is_resumable(sess));
    bw_tls_close_notify(x.sv);
    CHECK(SSL_read(x.cl, buf, sizeof buf) == 0); /* close_notify seen */
    CHECK_INT_EQ(SSL_get_error(x.cl, 0), SSL_ERROR_ZERO_RETURN);
    pair_close(&x);

    /* The ticket resumes on a new connection. */
    CHECK(pair_open(&x, cctx, c, "www.b.example"));
    SSL_set_session(x.cl, sess);
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK(bw_tls_resumed(x.sv));
    pair_close(&x);

    /* A context built later (a reload) takes a ticket from the one before.
     * (A TLS 1.3 client uses each ticket once: a fresh one.) */
    SSL_SESSION_free(sess);
    CHECK(pair_open(&x, cctx, c, "www.b.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK_INT_EQ(bw_tls_write(x.sv, "x", 1, &n), BW_TLS_OK);
    CHECK(SSL_read(x.cl, buf, sizeof buf) == 1);
    sess = SSL_get1_session(x.cl);
    pair_close(&x);
    struct bw_tls_ctx *c2 = NULL;
    CHECK(bw_tls_ctx_new(p, 2, &BOTH, now_s(), &c2, &bad_ix, &err) == BW_OK);
    CHECK(pair_open(&x, cctx, c2, "www.b.example"));
    SSL_set_session(x.cl, sess);
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK(bw_tls_resumed(x.sv));
    pair_close(&x);
    SSL_SESSION_free(sess);
    bw_tls_ctx_free(c2);

    /* No SNI: the default (first) certificate. */
    CHECK(pair_open(&x, cctx, c, NULL));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK_STR_EQ(peer_cn(x.cl, cn, sizeof cn), "a.example");
    CHECK_STR_EQ(bw_tls_server_name(x.sv), "");
    pair_close(&x);
    SSL_CTX_free(cctx);

    /* ALPN offered without http/1.1: no_application_protocol. */
    cctx = client_ctx("\x02h2", 3);
    CHECK(pair_open(&x, cctx, c, "a.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_FAILED);
    CHECK(crc != 1);
    pair_close(&x);
    SSL_CTX_free(cctx);

    /* TLS 1.2 when asked, and with it a TLS 1.2 ticket. */
    cctx = client_ctx(NULL, 0);
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    CHECK(pair_open(&x, cctx, c, "a.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK_STR_EQ(bw_tls_version(x.sv), "TLSv1.2");
    sess = SSL_get1_session(x.cl);
    pair_close(&x);
    CHECK(pair_open(&x, cctx, c, "a.example"));
    SSL_set_session(x.cl, sess);
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    CHECK(bw_tls_resumed(x.sv));
    pair_close(&x);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);

    /* TLS 1.1 is not offered. */
    cctx = client_ctx(NULL, 0);
    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION);
    SSL_CTX_set_security_level(cctx, 0);
    CHECK(pair_open(&x, cctx, c, "a.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_FAILED);
    pair_close(&x);
    SSL_CTX_free(cctx);

    bw_tls_ctx_free(c);
    made_free(&a);
    made_free(&b);
}

/* Ticket keys rotate on schedule: a ticket is taken while its key is
 * current and for one more period after, then it is not (a full
 * handshake). Periods of 2 s, with margins of a second or more. */
TEST(ticket_keys_rotate_on_schedule)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    struct bw_tls_ctx *c = NULL;
    bw_error err;
    CHECK(bw_tls_ctx_new(&p, 1, &BOTH, now_s(), &c, &bad_ix, &err) == BW_OK);
    SSL_CTX *cctx = client_ctx(NULL, 0);
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION); /* a ticket may be reused */
    bw_tls_set_ticket_rotation(2);
    bw_tls_rotate_ticket_keys(); /* the schedule starts now */
    struct pair x;
    int crc;
    CHECK(pair_open(&x, cctx, c, "a.example"));
    CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
    SSL_SESSION *sess = SSL_get1_session(x.cl);
    pair_close(&x);
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 300 * 1000000L};
    bool resumed[3];
    for (int step = 0; step < 3; step++) {
        /* At ~0.3 s (current key), ~2.6 s (previous key), ~4.9 s (gone). */
        nanosleep(&pause, NULL);
        pause = (struct timespec){.tv_sec = 2, .tv_nsec = 0};
        CHECK(pair_open(&x, cctx, c, "a.example"));
        SSL_set_session(x.cl, sess);
        CHECK_INT_EQ(drive(x.cl, x.sv, &crc), BW_TLS_OK);
        resumed[step] = bw_tls_resumed(x.sv);
        pair_close(&x);
    }
    bw_tls_set_ticket_rotation(3600);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    bw_tls_ctx_free(c);
    made_free(&a);
    CHECK(resumed[0]);
    CHECK(resumed[1]);
    CHECK(!resumed[2]);
}

TEST(garbage_from_a_client_fails_the_handshake)
{
    struct made a = make_cert("a.example", "a.example", -60, 86400, NULL, false);
    struct bw_tls_pem p = pem_of(&a, "a.pem");
    struct bw_tls_ctx *c = NULL;
    bw_error err;
    CHECK(bw_tls_ctx_new(&p, 1, &BOTH, now_s(), &c, &bad_ix, &err) == BW_OK);
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    struct ssl_st *sv;
    CHECK(bw_tls_conn_new(c, fds[1], &sv, &err) == BW_OK);
    CHECK_INT_EQ(bw_tls_handshake(sv), BW_TLS_WANT_READ);
    static const char junk[] = "\x16\x03\x01\x00\x05hello-not-a-client-hello";
    CHECK(write(fds[0], junk, sizeof junk - 1) == (ssize_t)(sizeof junk - 1));
    CHECK_INT_EQ(bw_tls_handshake(sv), BW_TLS_FAILED);
    char why[160];
    CHECK(strlen(bw_tls_last_error(why, sizeof why)) > 0);
    bw_tls_conn_free(sv);
    /* EOF before any handshake byte: closed, not failed. */
    CHECK(bw_tls_conn_new(c, fds[1], &sv, &err) == BW_OK);
    close(fds[0]);
    enum bw_tls_result r = bw_tls_handshake(sv);
    CHECK(r == BW_TLS_CLOSED || r == BW_TLS_FAILED);
    bw_tls_conn_free(sv);
    close(fds[1]);
    bw_tls_ctx_free(c);
    made_free(&a);
}

int main(void)
{
    bw_error err;
    if (bw_tls_global_init(3600, &err) != BW_OK) {
        printf("FAIL init: %s\n", err.msg);
        return 1;
    }
    RUN(good_certificate_loads_with_its_names_and_dates);
    RUN(key_that_does_not_match_is_refused);
    RUN(expired_and_future_certificates_are_refused);
    RUN(certificates_outside_validity_load_at_start_or_when_already_serving);
    RUN(garbage_and_truncated_pem_are_refused);
    RUN(certificate_without_dns_name_is_refused);
    RUN(chain_must_be_in_issuing_order);
    RUN(limits_on_count_and_size);
    RUN(server_name_selects_exact_then_wildcard_then_default);
    RUN(handshake_sni_alpn_and_resumption);
    RUN(ticket_keys_rotate_on_schedule);
    RUN(garbage_from_a_client_fails_the_handshake);
    return t_done();
}
